// Attention over the KV cache: decode split over the key sequence (flash-decoding), and causal
// prefill for a batch of queries.
//
// Layout: caches [position][n_head_kv][head_dim], f16 or (decode only) q8_0 codes with a plane
// of scales (kv_cache.h), read through KvLane (kv_cache.cuh); q, out [n_head][head_dim] f32.
// Pass 1, grid (n_head_kv, ceil(n_keys / kChunk), group / G), kThreads threads: a block takes one
//   KV head, kChunk consecutive keys, and G of the query heads that share them (G, at most
//   kMaxGroup, divides the group), so each key and value is read once for all of them. Warp w
//   takes keys w, w + kWarps, ...; lane l holds dimensions P l .. P l + P - 1 (P = head_dim / 32)
//   of the G queries in registers and reads the same dimensions of a key in one load (a
//   128-dimension key is one 256-byte warp load in f16, 128 bytes of codes and the lanes' scales
//   in q8_0); shuffles sum the G dot products. Each warp then takes whole heads for the softmax
//   over the chunk (max m, sum l of exp(score - m)), and the values are read like the keys, each
//   warp summing its keys' weighted values for all G heads; the kWarps partial vectors meet in
//   shared memory. Writes m, l and the unnormalised vector per head to the workspace.
// Pass 2, grid n_head, head_dim threads: rescales the chunks to their common max and divides; it
//   may also write the result as 8-bit blocks for the next matrix (the output projection).
// Prefill (cuda_attention_prefill): on tensor cores for head_dim 64 and 128 (flash_prefill.cu);
//   for other sizes, grid (n_head, n_queries), kThreads threads: a block takes one query and
//   walks its causal keys in tiles of kThreads with an online softmax (running max, sum and
//   unnormalised output, rescaled per tile); thread d keeps output dimensions d and d + kThreads.
//   No workspace: a batch of queries already fills the GPU without splitting keys.
// Graph replay (cuda_attention_decode_at): the key count comes from device memory, the grid covers
// the largest count, and blocks past the keys return before touching anything.
// Bound: memory. Decode reads K and V of n_keys positions once per KV head (latency-bound at short
// contexts: a 64-key chunk of one KV head is 16 KB at head_dim 128, 8.5 KB in q8_0); prefill
// reads them once per query head (GQA heads re-read their group's K/V from L2).
#include <cuda_fp16.h>

#include <cmath>
#include <string>

#include "attention.h"
#include "../cpu/with_count.h"
#include "activations.cuh"
#include "block_loads.cuh"
#include "launch.cuh"
#include "engine/memory_model.h"
#include "flash_prefill.h"
#include "kv_cache.cuh"
#include "scheduler/cuda_check.h"

namespace engine {
namespace {

constexpr int kChunk = kGpuAttentionChunk;  // the planner counts the workspace with it
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxHeadDim = 256;
constexpr int kMaxGroup = 8;  // query heads per decode block


__device__ float block_reduce(float v, bool is_max, float* shared) {
  for (int off = 16; off > 0; off /= 2) {
    const float o = __shfl_xor_sync(0xffffffffu, v, off);
    v = is_max ? fmaxf(v, o) : v + o;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // `shared` may still be read from a previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = shared[0];
  for (int w = 1; w < kWarps; ++w) r = is_max ? fmaxf(r, shared[w]) : r + shared[w];
  return r;
}

// Eight, four or two halves from one aligned load, as floats.
template <int P>
__device__ __forceinline__ void load_halves(const uint16_t* p, float* out) {
  static_assert(P == 2 || P == 4 || P == 8);
  KvLane<KvType::f16, P> lane;
  lane.load(p, nullptr, 0);
  lane.to_floats(0, out);
}

// scores[j] = scale * q . K[j] for the n keys from `keys` (row halves apart): warp w takes keys
// w, w + kWarps, ...; lane l holds q's dimensions P l .. P l + P - 1 in registers and reads the
// same dimensions of each key in one load (P = head_dim / 32: a 128-dimension key is one 256-byte
// warp load); the warp sums by shuffles.
template <int P>
__device__ void key_scores_lanes(const float* __restrict__ q, const uint16_t* __restrict__ keys, int64_t row,
                                 int n, float scale, float* scores) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float qv[P];
#pragma unroll
  for (int i = 0; i < P; ++i) qv[i] = q[P * lane + i];
  for (int j = warp; j < n; j += kWarps) {
    float kv[P];
    load_halves<P>(keys + int64_t(j) * row + P * lane, kv);
    float s = 0;
#pragma unroll
    for (int i = 0; i < P; ++i) s += qv[i] * kv[i];
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) scores[j] = s * scale;
  }
}

// The same for any head_dim that is a multiple of 32: lanes take every 32nd dimension.
__device__ void key_scores_strided(const float* __restrict__ q, const uint16_t* __restrict__ keys, int64_t row,
                                   int n, int head_dim, float scale, float* scores) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int j = warp; j < n; j += kWarps) {
    const uint16_t* kr = keys + int64_t(j) * row;
    float s = 0;
    for (int d = lane; d < head_dim; d += 32) s += q[d] * h2f(kr[d]);
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) scores[j] = s * scale;
  }
}

// Key rows start 64-byte aligned (a cache position is n_head_kv * head_dim halves, head_dim a
// multiple of 32), so the P-wide loads are aligned.
__device__ void key_scores(const float* __restrict__ q, const uint16_t* __restrict__ keys, int64_t row, int n,
                           int head_dim, float scale, float* scores) {
  switch (head_dim) {
    case 64: key_scores_lanes<2>(q, keys, row, n, scale, scores); return;
    case 128: key_scores_lanes<4>(q, keys, row, n, scale, scores); return;
    case 256: key_scores_lanes<8>(q, keys, row, n, scale, scores); return;
    default: key_scores_strided(q, keys, row, n, head_dim, scale, scores); return;
  }
}

// n_keys is *pos + 1 when pos is given (graph replay; blocks past the keys return at once).
template <KvType kType, int P, int G>
__global__ void __launch_bounds__(kThreads)
    attention_chunks(const float* __restrict__ q, KvLayer cache, int64_t n_keys, const int64_t* __restrict__ pos,
                     int n_head_kv, int group, float scale, float* __restrict__ partial) {
  constexpr int D = 32 * P;
  __shared__ float probs[G][kChunk];
  __shared__ float sums[kWarps][G][D];
  // The position comes from a copy made before the step's kernels (not from one of them).
  if (pos != nullptr) n_keys = *pos + 1;
  const int kvh = blockIdx.x, chunk = blockIdx.y, h0 = kvh * group + int(blockIdx.z) * G;
  const int64_t t0 = int64_t(chunk) * kChunk;
  // Blocks past the keys (the graph's grid covers the whole context) leave at once, without
  // waiting: they touch nothing, and the grid still finishes only after the blocks that wait.
  if (t0 >= n_keys) return;  // the whole block: no __syncthreads has been reached
  const int n = static_cast<int>(n_keys - t0 < kChunk ? n_keys - t0 : kChunk);
  const int newest = static_cast<int>(n_keys - 1 - t0);  // this step's key, if in the chunk
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = int64_t(n_head_kv) * D;  // values per cache position
  const int64_t first = t0 * row + int64_t(kvh) * D + P * lane;  // the lane's first value of the chunk
  // Warp w takes keys w, w + kWarps, ...: all their key and value loads go out at once, so a
  // block costs one memory round trip rather than one per few keys. The keys before this step's
  // were stored by earlier steps (complete before the previous kernel could let this one start),
  // so they load before the wait for that kernel (the RoPE that stores this step's key and value),
  // overlapping it; this step's key and value, q, and every write come after.
  constexpr int kPerWarp = kChunk / kWarps;
  KvLane<kType, P> keys[kPerWarp], values[kPerWarp];
#pragma unroll
  for (int i = 0; i < kPerWarp; ++i) {
    const int j = warp + kWarps * i;
    if (j < n && j != newest) {
      keys[i].load(cache.k, cache.k_scale, first + int64_t(j) * row);
      values[i].load(cache.v, cache.v_scale, first + int64_t(j) * row);
    }
  }
  wait_for_previous_kernel();
  allow_next_kernel();
#pragma unroll
  for (int i = 0; i < kPerWarp; ++i) {
    const int j = warp + kWarps * i;
    if (j == newest) {
      keys[i].load(cache.k, cache.k_scale, first + int64_t(j) * row);
      values[i].load(cache.v, cache.v_scale, first + int64_t(j) * row);
    }
  }
  float qv[G][P];
#pragma unroll
  for (int g = 0; g < G; ++g) {
#pragma unroll
    for (int i = 0; i < P; ++i) qv[g][i] = q[int64_t(h0 + g) * D + P * lane + i] * scale;
  }
#pragma unroll
  for (int i = 0; i < kPerWarp; ++i) {
    const int j = warp + kWarps * i;
    if (j >= n) continue;  // the same for the whole warp
    float kv[P];
    keys[i].to_floats(first, kv);
    float s[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      s[g] = 0;
#pragma unroll
      for (int d = 0; d < P; ++d) s[g] += qv[g][d] * kv[d];
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
#pragma unroll
      for (int g = 0; g < G; ++g) s[g] += __shfl_xor_sync(0xffffffffu, s[g], off);
    }
    if (lane == 0) {
#pragma unroll
      for (int g = 0; g < G; ++g) probs[g][j] = s[g];
    }
  }
  __syncthreads();
  const int chunks = gridDim.y;
  for (int g = warp; g < G; g += kWarps) {
    float m = -INFINITY;
    for (int j = lane; j < n; j += 32) m = fmaxf(m, probs[g][j]);
    for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    float l = 0;
    for (int j = lane; j < n; j += 32) {
      const float e = expf(probs[g][j] - m);
      probs[g][j] = e;
      l += e;
    }
    for (int off = 16; off > 0; off /= 2) l += __shfl_xor_sync(0xffffffffu, l, off);
    if (lane == 0) {
      float* out = partial + (int64_t(h0 + g) * chunks + chunk) * (D + 2);
      out[0] = m;
      out[1] = l;
    }
  }
  __syncthreads();
  float acc[G][P] = {};
#pragma unroll
  for (int i = 0; i < kPerWarp; ++i) {
    const int j = warp + kWarps * i;
    if (j >= n) continue;
    float vv[P];
    values[i].to_floats(first, vv);
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float p = probs[g][j];
#pragma unroll
      for (int d = 0; d < P; ++d) acc[g][d] += p * vv[d];
    }
  }
#pragma unroll
  for (int g = 0; g < G; ++g) {
#pragma unroll
    for (int i = 0; i < P; ++i) sums[warp][g][P * lane + i] = acc[g][i];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < G * D; e += kThreads) {
    const int g = e / D, d = e % D;
    float v = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) v += sums[w][g][d];
    partial[(int64_t(h0 + g) * chunks + chunk) * (D + 2) + 2 + d] = v;
  }
}

// Chunks are laid out with stride grid_chunks (the pass-1 grid); n_chunks of them hold keys
// (from *pos when given). With q8, each warp (32 consecutive dimensions of a head: one block of
// the flattened output) also writes its values as an 8-bit block.
__global__ void attention_combine(const float* __restrict__ partial, int grid_chunks, int n_chunks,
                                  const int64_t* __restrict__ pos, int head_dim, float* __restrict__ out,
                                  ActQ8Block* __restrict__ q8) {
  const int h = blockIdx.x, d = threadIdx.x;
  wait_for_previous_kernel();
  allow_next_kernel();
  if (pos != nullptr) n_chunks = static_cast<int>((*pos + 1 + kChunk - 1) / kChunk);
  const float* p = partial + int64_t(h) * grid_chunks * (head_dim + 2);
  float m = -INFINITY;
  for (int c = 0; c < n_chunks; ++c) m = fmaxf(m, p[c * (head_dim + 2)]);
  float l = 0, acc = 0;
  for (int c = 0; c < n_chunks; ++c) {
    const float* pc = p + c * (head_dim + 2);
    const float w = expf(pc[0] - m);
    l += pc[1] * w;
    acc += pc[2 + d] * w;
  }
  const int64_t i = int64_t(h) * head_dim + d;
  const float v = acc / l;
  out[i] = v;
  if (q8 != nullptr) warp_quantize_block(v, d % 32, q8[i / 32]);  // head_dim % 32 == 0: whole warps
}

__global__ void __launch_bounds__(kThreads)
    attention_prefill(const float* __restrict__ q, const uint16_t* __restrict__ k_cache,
                      const uint16_t* __restrict__ v_cache, int64_t pos0, int n_head_kv, int head_dim, int group,
                      float scale, float* __restrict__ out) {
  __shared__ float scores[kThreads];
  __shared__ float reduce[kWarps];
  const int h = blockIdx.x, b = blockIdx.y, kvh = h / group, n_head = gridDim.x;
  const int64_t n_keys = pos0 + b + 1;
  const int64_t row = int64_t(n_head_kv) * head_dim;
  const float* qh = q + (int64_t(b) * n_head + h) * head_dim;
  const int d0 = threadIdx.x, d1 = threadIdx.x + kThreads;
  float m = -INFINITY, l = 0, o0 = 0, o1 = 0;
  for (int64_t t0 = 0; t0 < n_keys; t0 += kThreads) {
    const int n = static_cast<int>(n_keys - t0 < kThreads ? n_keys - t0 : kThreads);
    key_scores(qh, k_cache + t0 * row + int64_t(kvh) * head_dim, row, n, head_dim, scale, scores);
    __syncthreads();
    const float tile_max = block_reduce(threadIdx.x < n ? scores[threadIdx.x] : -INFINITY, true, reduce);
    const float m_new = fmaxf(m, tile_max);
    const float rescale = expf(m - m_new);  // 0 at the first tile, where m is -inf
    float e = 0;
    if (threadIdx.x < n) {
      e = expf(scores[threadIdx.x] - m_new);
      scores[threadIdx.x] = e;
    }
    l = l * rescale + block_reduce(e, false, reduce);  // its __syncthreads publishes the exponentials
    o0 *= rescale;
    o1 *= rescale;
    const uint16_t* vr = v_cache + t0 * row + int64_t(kvh) * head_dim;
    for (int j = 0; j < n; ++j) {
      const float p = scores[j];
      if (d0 < head_dim) o0 += p * h2f(vr[int64_t(j) * row + d0]);
      if (d1 < head_dim) o1 += p * h2f(vr[int64_t(j) * row + d1]);
    }
    m = m_new;
    __syncthreads();  // the next tile rewrites the scores
  }
  float* oh = out + (int64_t(b) * n_head + h) * head_dim;
  if (d0 < head_dim) oh[d0] = o0 / l;
  if (d1 < head_dim) oh[d1] = o1 / l;
}

}  // namespace

size_t cuda_attention_decode_workspace(int n_head, int head_dim, int64_t n_ctx) {
  return size_t(n_head) * size_t((n_ctx + kChunk - 1) / kChunk) * size_t(head_dim + 2);
}

namespace {

void check_shape(int n_head, int n_head_kv, int head_dim) {
  if (head_dim <= 0 || head_dim > kMaxHeadDim || head_dim % 32 != 0) {
    throw_bad_argument("cuda_attention_decode", "head_dim", head_dim);
  }
  if (n_head_kv <= 0 || n_head % n_head_kv != 0) throw_bad_argument("cuda_attention_decode", "n_head_kv", n_head_kv);
}

// The largest divisor of the group that is at most kMaxGroup: query heads per block.
int heads_per_block(int group) {
  for (int g = kMaxGroup; g > 1; --g) {
    if (group % g == 0) return g;
  }
  return 1;
}

// The cache's format as the kernel's template argument: f16 or q8_0 (anything else refused).
template <typename F>
void with_kv_type(const char* op, const KvLayer& cache, int head_dim, F&& f) {
  if (!gpu_kv_supported(cache.type, head_dim)) {
    throw_unsupported(op, (std::string("a ") + std::string(kv_type_name(cache.type)) + " KV cache").c_str());
  }
  if (cache.type == KvType::q8_0) {
    f.template operator()<KvType::q8_0>();
  } else {
    f.template operator()<KvType::f16>();
  }
}

void launch(const char* op, const float* q, const KvLayer& cache, int64_t n_keys, const int64_t* pos,
            int64_t grid_keys, int n_head, int n_head_kv, int head_dim, float scale, float* out, float* workspace,
            void* stream_ptr, ActQ8Block* q8) {
  check_shape(n_head, n_head_kv, head_dim);
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  const int group = n_head / n_head_kv, per_block = heads_per_block(group);
  const auto grid_chunks = static_cast<unsigned>((grid_keys + kChunk - 1) / kChunk);
  const dim3 grid(static_cast<unsigned>(n_head_kv), grid_chunks, static_cast<unsigned>(group / per_block));
  with_kv_type(op, cache, head_dim, [&]<KvType kType>() {
    with_count<kMaxHeadDim / 32>(head_dim / 32, [&]<int P>() {
      with_count<kMaxGroup>(per_block, [&]<int G>() {
        launch_dependent(attention_chunks<kType, P, G>, grid, kThreads, 0, stream, q, cache, n_keys, pos, n_head_kv,
                         group, scale, workspace);
      });
    });
  });
  launch_dependent(attention_combine, static_cast<unsigned>(n_head), static_cast<unsigned>(head_dim), 0, stream,
                   workspace, static_cast<int>(grid_chunks), static_cast<int>(grid_chunks), pos, head_dim, out, q8);
}

}  // namespace

void cuda_attention_decode(const float* q, const KvLayer& cache, int64_t n_keys, int n_head, int n_head_kv,
                           int head_dim, float scale, float* out, float* workspace, void* stream, ActQ8Block* q8) {
  if (n_keys <= 0) throw_bad_argument("cuda_attention_decode", "n_keys", n_keys);
  launch("cuda_attention_decode", q, cache, n_keys, nullptr, n_keys, n_head, n_head_kv, head_dim, scale, out,
         workspace, stream, q8);
}

void cuda_attention_decode_at(const float* q, const KvLayer& cache, const int64_t* pos, int64_t max_keys,
                              int n_head, int n_head_kv, int head_dim, float scale, float* out, float* workspace,
                              void* stream, ActQ8Block* q8) {
  if (max_keys <= 0) throw_bad_argument("cuda_attention_decode_at", "max_keys", max_keys);
  launch("cuda_attention_decode_at", q, cache, max_keys, pos, max_keys, n_head, n_head_kv, head_dim, scale, out,
         workspace, stream, q8);
}

void cuda_attention_prefill(const float* q, const KvLayer& cache, int64_t pos0, int64_t n_queries, int n_head,
                            int n_head_kv, int head_dim, float scale, float* out, void* stream) {
  check_shape(n_head, n_head_kv, head_dim);
  if (cache.type != KvType::f16) {
    throw_unsupported("cuda_attention_prefill", "a KV cache other than f16 (cuda_kv_to_f16 converts q8_0)");
  }
  if (pos0 < 0) throw_bad_argument("cuda_attention_prefill", "pos0", pos0);
  if (n_queries <= 0) return;
  if (n_queries > 65535) throw_bad_argument("cuda_attention_prefill", "n_queries", n_queries);
  const auto* k = static_cast<const uint16_t*>(cache.k);
  const auto* v = static_cast<const uint16_t*>(cache.v);
  if (flash_prefill_supports(head_dim)) {
    cuda_flash_prefill(q, k, v, pos0, n_queries, n_head, n_head_kv, head_dim, scale, out, stream);
    return;
  }
  attention_prefill<<<dim3(static_cast<unsigned>(n_head), static_cast<unsigned>(n_queries)), kThreads, 0,
                      static_cast<cudaStream_t>(stream)>>>(q, k, v, pos0, n_head_kv, head_dim, n_head / n_head_kv,
                                                           scale, out);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace engine
