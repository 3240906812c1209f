// Causal prefill attention on tensor cores (flash attention) for head_dim 64 and 128.
//
// Layout: q, out [n_queries][n_head][D] f32; caches [position][n_head_kv][D] f16, already holding
// the batch's keys and values; query b sits at position pos0 + b and attends keys 0 .. pos0 + b.
// Launch: grid (n_head, ceil(n_queries / 64)), the last query tiles (the longest) first; 4 warps,
// 16 queries each. A warp keeps its queries, times scale * log2(e), as fp16 A fragments, then
// walks the keys in tiles of 64: S = Q K^T by mma.m16n8k16 from ldmatrix fragments of the K tile,
// the causal mask, an online softmax in base 2 on the accumulators (row max and sum over the four
// lanes of a row), and O += P V with P's accumulators reused as the A fragments (rounded to fp16)
// and V's by ldmatrix.trans. K and V tiles are double-buffered in shared memory (cp.async, rows
// padded by 16 bytes so an ldmatrix's 8 rows fall in distinct banks; keys past the batch are
// zero-filled and masked).
// Bound: tensor cores at prompt sizes (2 * 2 * D flops per query-key pair; each K/V tile is read
// once per block, i.e. once per query head and 64 queries, from L2 mostly).
// Precision: queries and probabilities rounded to fp16 (relative 2^-11), keys and values as
// cached, f32 sums and softmax statistics.
#include "flash_prefill.h"

#include <cuda_fp16.h>

#include <atomic>
#include <cmath>

#include "launch.cuh"
#include "scheduler/cuda_check.h"
#include "tensor_core.cuh"

namespace engine {
namespace {

constexpr int kWarps = 4;
constexpr int kQueries = 16 * kWarps;  // per block
constexpr int kKeys = 64;              // per tile

template <int D>
__host__ __device__ constexpr int pitch() {
  return D + 8;  // halves per shared row
}

template <int D>
__host__ __device__ constexpr size_t shared_bytes() {
  return size_t(2) * 2 * kKeys * pitch<D>() * sizeof(uint16_t);  // two stages of K and V
}

template <int D>
__global__ void __launch_bounds__(32 * kWarps)
    flash_prefill(const float* __restrict__ q, const uint16_t* __restrict__ k_cache,
                  const uint16_t* __restrict__ v_cache, int64_t pos0, int n_queries, int n_head_kv, int group,
                  float scale_log2, float* __restrict__ out) {
  constexpr int kPitch = pitch<D>(), kChunks = D / 8;  // 16-byte chunks per key row
  extern __shared__ __align__(16) uint16_t tiles[];     // [stage][K, V][kKeys][kPitch]
  const int h = blockIdx.x, n_head = gridDim.x, kvh = h / group;
  const int q0 = (int(gridDim.y) - 1 - int(blockIdx.y)) * kQueries;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int64_t row = int64_t(n_head_kv) * D;  // halves per cache position
  const int64_t n_keys = pos0 + n_queries;     // positions the cache holds
  const int last_query = min(q0 + kQueries, n_queries) - 1;
  const int key_tiles = int((pos0 + last_query) / kKeys) + 1;

  auto k_tile = [&](int stage) { return tiles + (2 * stage) * kKeys * kPitch; };
  auto v_tile = [&](int stage) { return tiles + (2 * stage + 1) * kKeys * kPitch; };
  auto load = [&](int tile, int stage) {
    const int64_t t0 = int64_t(tile) * kKeys;
    for (int i = threadIdx.x; i < kKeys * kChunks; i += 32 * kWarps) {
      const int key = i / kChunks, c = i % kChunks;
      const bool valid = t0 + key < n_keys;
      const int64_t at = (valid ? (t0 + key) * row : 0) + int64_t(kvh) * D + 8 * c;
      cp_async16(k_tile(stage) + key * kPitch + 8 * c, k_cache + at, valid);
      cp_async16(v_tile(stage) + key * kPitch + 8 * c, v_cache + at, valid);
    }
    cp_async_commit();
  };
  load(0, 0);

  // This warp's queries qa (fragment rows g) and qb (rows g + 8), as A fragments; queries past
  // the batch are zeros (their rows are computed, never written).
  const int qa = q0 + 16 * warp + g, qb = qa + 8;
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kd = 0; kd < D / 16; ++kd) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int query = r % 2 == 0 ? qa : qb, dim = 16 * kd + 2 * t + 8 * (r / 2);
      float2 v = make_float2(0.0f, 0.0f);
      if (query < n_queries) v = *reinterpret_cast<const float2*>(q + (int64_t(query) * n_head + h) * D + dim);
      qf[kd][r] = pack_half2(v.x * scale_log2, v.y * scale_log2);
    }
  }

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows qa, qb (base-2 scores)

  for (int tile = 0; tile < key_tiles; ++tile) {
    if (tile + 1 < key_tiles) {
      load(tile + 1, (tile + 1) % 2);
    } else {
      cp_async_commit();  // an empty group: the wait below counts the same at the last tile
    }
    cp_async_wait<1>();
    __syncthreads();
    const uint16_t* ks = k_tile(tile % 2);
    const uint16_t* vs = v_tile(tile % 2);

    // S (16 queries x 64 keys): B fragments for two 8-key tiles per ldmatrix x4, matrices
    // (keys 0-7, dims 0-7), (0-7, 8-15), (8-15, 0-7), (8-15, 8-15) of the 16 x 16 step.
    float s[kKeys / 8][4];
#pragma unroll
    for (int i = 0; i < kKeys / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
    for (int kd = 0; kd < D / 16; ++kd) {
#pragma unroll
      for (int jj = 0; jj < kKeys / 16; ++jj) {
        uint32_t r[4];
        ldmatrix_x4(ks + (jj * 16 + lane % 8 + (lane / 16) * 8) * kPitch + kd * 16 + ((lane / 8) % 2) * 8, r);
        mma_16816(s[2 * jj], qf[kd], r[0], r[1]);
        mma_16816(s[2 * jj + 1], qf[kd], r[2], r[3]);
      }
    }

    // Causal mask, where some key of the tile lies past this warp's first query.
    const int64_t t0 = int64_t(tile) * kKeys;
    if (t0 + kKeys - 1 > pos0 + q0 + 16 * warp) {
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int64_t key = t0 + 8 * nt + 2 * t + r % 2;
          if (key > pos0 + (r < 2 ? qa : qb)) s[nt][r] = -INFINITY;
        }
      }
    }

    // Online softmax per row: the new max over the tile, the old sums and outputs rescaled.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * half], s[nt][2 * half + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[half], mx);
      const float ref = m_new == -INFINITY ? 0.0f : m_new;  // a row with no key yet stays all zero
      const float rescale = exp2f(m[half] - ref);
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) {
        s[nt][2 * half] = exp2f(s[nt][2 * half] - ref);
        s[nt][2 * half + 1] = exp2f(s[nt][2 * half + 1] - ref);
        sum += s[nt][2 * half] + s[nt][2 * half + 1];
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      l[half] = l[half] * rescale + sum;
      m[half] = m_new;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        o[dt][2 * half] *= rescale;
        o[dt][2 * half + 1] *= rescale;
      }
    }

    // O += P V over the tile's four 16-key steps: P's accumulators of 8-key tiles 2kk and
    // 2kk + 1 are the step's A fragment; V's B fragments for two 8-dimension tiles per
    // ldmatrix x4.trans, matrices (keys 0-7, dims 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15).
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const uint32_t p[4] = {pack_half2(s[2 * kk][0], s[2 * kk][1]), pack_half2(s[2 * kk][2], s[2 * kk][3]),
                             pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dd = 0; dd < D / 16; ++dd) {
        uint32_t r[4];
        ldmatrix_x4_trans(vs + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kPitch + dd * 16 + (lane / 16) * 8, r);
        mma_16816(o[2 * dd], p, r[0], r[1]);
        mma_16816(o[2 * dd + 1], p, r[2], r[3]);
      }
    }
    __syncthreads();  // the next iteration's copies overwrite the other stage's tiles
  }

#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int query = half == 0 ? qa : qb;
    if (query >= n_queries) continue;
    const float inv = 1.0f / l[half];
    float* oq = out + (int64_t(query) * n_head + h) * D + 2 * t;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      *reinterpret_cast<float2*>(oq + 8 * dt) = make_float2(o[dt][2 * half] * inv, o[dt][2 * half + 1] * inv);
    }
  }
}

template <int D>
void launch(const float* q, const uint16_t* k_cache, const uint16_t* v_cache, int64_t pos0, int64_t n_queries,
            int n_head, int n_head_kv, float scale, float* out, cudaStream_t stream) {
  constexpr size_t smem = shared_bytes<D>();
  static std::atomic<uint64_t> opted_in;  // devices where this kernel may take smem bytes
  opt_in_shared_bytes(flash_prefill<D>, smem, opted_in);
  const dim3 grid(static_cast<unsigned>(n_head), static_cast<unsigned>((n_queries + kQueries - 1) / kQueries));
  constexpr float kLog2e = 1.4426950408889634f;
  flash_prefill<D><<<grid, 32 * kWarps, smem, stream>>>(q, k_cache, v_cache, pos0, static_cast<int>(n_queries),
                                                         n_head_kv, n_head / n_head_kv, scale * kLog2e, out);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

bool flash_prefill_supports(int head_dim) { return head_dim == 64 || head_dim == 128; }

void cuda_flash_prefill(const float* q, const uint16_t* k_cache, const uint16_t* v_cache, int64_t pos0,
                        int64_t n_queries, int n_head, int n_head_kv, int head_dim, float scale, float* out,
                        void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (head_dim) {
    case 64: launch<64>(q, k_cache, v_cache, pos0, n_queries, n_head, n_head_kv, scale, out, s); return;
    case 128: launch<128>(q, k_cache, v_cache, pos0, n_queries, n_head, n_head_kv, scale, out, s); return;
    default: throw_bad_argument("cuda_flash_prefill", "head_dim", head_dim);
  }
}

}  // namespace engine
