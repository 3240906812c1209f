// The forward pass's small kernels (see ops.h). All are memory-bound elementwise passes except
// RMSNorm's per-row reduction.
//   rms_norm: one block per row, about four values per thread (up to 1024 threads); sum of
//             squares in double (as the CPU reference) by shuffles, then one scaled write per
//             element. Bound: latency for one row (a 5120-wide row is 20 KB: each thread's values
//             of x and w load together into registers, the weights before the previous kernel
//             ends), memory for many.
//   swiglu: one thread per element, grid-stride. Bound: memory.
//   rms_norm and swiglu may also write their output as saturated fp16 (the prompt matmul's input).
//   rms_norm and swiglu with 8-bit output: each warp's 32 values (threads step by the block's
//             size, a multiple of 32, so a warp holds one whole 32-value block) quantized by
//             shuffles.
//   argmax: one block of 1024 threads, each scanning every 1024th value in order, then a
//             (value, index) reduction by shuffles and shared memory. Bound: latency (a
//             152064-entry vocabulary is 600 KB, 149 independent loads a thread).
//   rope_store_kv: one warp per (row, q, k or v head), a lane per pair of dimensions, angles from
//             rope_rotation (shared with the CPU); k and v heads stored as fp16 or as q8_0 blocks
//             (a block's amax by shuffles). Bound: memory, plus one powf/cosf/sinf per pair.
#include <cuda_fp16.h>

#include <algorithm>
#include <string>

#include "../cpu/rope_math.h"
#include "activations.cuh"
#include "kv_cache.cuh"
#include "launch.cuh"
#include "ops.h"
#include "rope_pair.cuh"
#include "scheduler/cuda_check.h"

namespace engine {
namespace {

constexpr int kThreads = 256;
constexpr int kRopeWarps = 4;           // per block of rope_store_kv: one (row, head) each
constexpr int kMaxRopeHeadDim = 1024;   // the warps' shared slots: 16 KiB at most

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 * 64 ? b : 65535 * 64);  // grid-stride loops cover the rest
}

// Threads per RMSNorm block: about four values per thread, whole warps, at most 1024 (a 5120-wide
// row: 1024 threads, five values each; a 128-wide head: 32).
unsigned rms_norm_threads(int64_t n) {
  const int64_t warps = std::clamp<int64_t>((n / 4 + 31) / 32, 1, 32);
  return static_cast<unsigned>(32 * warps);
}

// x and out may be the same rows (per-head q/k norms run in place): no __restrict__ on them; each
// element is read and written by the same thread. A thread keeps its first kNormCached values of x
// and w in registers; the weights load before the wait for the previous kernel (no kernel writes
// them), so after it only x's loads are on the row's path.
constexpr int kNormCached = 8;

__global__ void __launch_bounds__(1024)
    rms_norm_kernel(const float* x, const float* __restrict__ w, float* out, int64_t n, float eps,
                    ActQ8Block* __restrict__ q8, uint16_t* __restrict__ f16) {
  __shared__ double warp_sums[32];
  __shared__ float row_scale;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, threads = blockDim.x;
  float wv[kNormCached], xv[kNormCached];
#pragma unroll
  for (int c = 0; c < kNormCached; ++c) {
    const int64_t i = threadIdx.x + int64_t(c) * threads;
    wv[c] = i < n ? w[i] : 0.0f;
  }
  wait_for_previous_kernel();
  allow_next_kernel();
  const float* xr = x + int64_t(blockIdx.x) * n;
  float* yr = out != nullptr ? out + int64_t(blockIdx.x) * n : nullptr;
  double ss = 0;
#pragma unroll
  for (int c = 0; c < kNormCached; ++c) {
    const int64_t i = threadIdx.x + int64_t(c) * threads;
    xv[c] = i < n ? xr[i] : 0.0f;
    ss += double(xv[c]) * double(xv[c]);
  }
  for (int64_t i = threadIdx.x + int64_t(kNormCached) * threads; i < n; i += threads) {  // rows past 8 a thread
    ss += double(xr[i]) * double(xr[i]);
  }
  for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  if (lane == 0) warp_sums[warp] = ss;
  __syncthreads();
  if (warp == 0) {
    ss = lane < threads / 32 ? warp_sums[lane] : 0.0;
    for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (lane == 0) row_scale = static_cast<float>(1.0 / sqrt(ss / double(n) + double(eps)));
  }
  __syncthreads();
  const float scale = row_scale;
  ActQ8Block* qr = q8 != nullptr ? q8 + int64_t(blockIdx.x) * (n / 32) : nullptr;
  uint16_t* hr = f16 != nullptr ? f16 + int64_t(blockIdx.x) * n : nullptr;
  // With q8, n % 32 == 0 and threads step by a multiple of 32: whole warps take each branch.
#pragma unroll
  for (int c = 0; c < kNormCached; ++c) {
    const int64_t i = threadIdx.x + int64_t(c) * threads;
    if (i >= n) break;
    const float v = xv[c] * scale * wv[c];
    if (yr != nullptr) yr[i] = v;
    if (qr != nullptr) warp_quantize_block(v, int(i % 32), qr[i / 32]);
    if (hr != nullptr) hr[i] = saturated_f16(v);
  }
  for (int64_t i = threadIdx.x + int64_t(kNormCached) * threads; i < n; i += threads) {
    const float v = xr[i] * scale * w[i];
    if (yr != nullptr) yr[i] = v;
    if (qr != nullptr) warp_quantize_block(v, int(i % 32), qr[i / 32]);
    if (hr != nullptr) hr[i] = saturated_f16(v);
  }
}

// out may be gate (the stage runs it in place): no __restrict__ on them.
__global__ void swiglu_kernel(const float* gate, const float* __restrict__ up, float* out, int64_t n,
                              ActQ8Block* __restrict__ q8, uint16_t* __restrict__ f16) {
  wait_for_previous_kernel();
  allow_next_kernel();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    const float v = g / (1.0f + expf(-g)) * up[i];
    if (out != nullptr) out[i] = v;
    if (q8 != nullptr) warp_quantize_block(v, int(i % 32), q8[i / 32]);  // n % 32 == 0: whole warps
    if (f16 != nullptr) f16[i] = saturated_f16(v);
  }
}

// One warp per (row, head), over q's heads, then k's, then v's. A q or k head rotates in place:
// lane l takes pairs j = l, l + 32, ... < head_dim / 2; pair j < n_rot / 2 rotates by
// rope_rotation (the CPU's angles), the rest are dimensions n_rot + 2 (j - n_rot / 2) and the next,
// copied. A k or v head then goes to the cache row of its position: through the warp's slot of
// shared memory, so that lane l stores dimensions l, l + 32, ...; in q8_0 each 32-value block is
// then one value per lane, quantized by shuffles (store_q8_0_block).
template <KvType kType>
__global__ void __launch_bounds__(kRopeWarps * 32)
    rope_store_kv_kernel(float* __restrict__ q, float* __restrict__ k, const float* __restrict__ v, int64_t rows,
                         int n_head, int n_head_kv, int head_dim, int64_t pos0, const int64_t* __restrict__ pos_dev,
                         RopeParams p, float corr_low, float corr_high, KvLayer cache) {
  extern __shared__ float head_values[];  // [warp][head_dim]
  wait_for_previous_kernel();
  allow_next_kernel();
  if (pos_dev != nullptr) pos0 = *pos_dev;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int heads = n_head + 2 * n_head_kv;
  const int64_t item = int64_t(blockIdx.x) * kRopeWarps + warp;
  if (item >= rows * heads) return;  // the whole warp; no block-wide barrier follows
  const int64_t row = item / heads;
  const int head = static_cast<int>(item % heads);
  const bool is_q = head < n_head, is_v = head >= n_head + n_head_kv;
  const int kv_head = is_q ? 0 : is_v ? head - n_head - n_head_kv : head - n_head;
  float* slot = head_values + warp * head_dim;
  if (is_v) {
    const float* h = v + (row * n_head_kv + kv_head) * head_dim;
    for (int d = lane; d < head_dim; d += 32) slot[d] = h[d];
  } else {
    float* h = is_q ? q + (row * n_head + head) * head_dim : k + (row * n_head_kv + kv_head) * head_dim;
    const int half = p.n_rot / 2;
    for (int j = lane; j < head_dim / 2; j += 32) {
      int a, b;
      float x0, x1;
      if (j < half) {
        a = p.neox ? j : 2 * j;
        b = p.neox ? j + half : 2 * j + 1;
        float c, s;
        rope_rotation(p, pos0 + row, j, corr_low, corr_high, &c, &s);
        rotate_pair(h[a], h[b], c, s, &x0, &x1);
        h[a] = x0;
        h[b] = x1;
      } else {
        a = p.n_rot + 2 * (j - half);
        b = a + 1;
        x0 = h[a];
        x1 = h[b];
      }
      if (!is_q) slot[a] = x0, slot[b] = x1;
    }
    if (is_q) return;
  }
  __syncwarp();
  const int64_t kv_dim = int64_t(n_head_kv) * head_dim;
  const int64_t at = (pos0 + row) * kv_dim + int64_t(kv_head) * head_dim;  // the head's first value in the cache
  void* values = is_v ? cache.v : cache.k;
  if constexpr (kType == KvType::q8_0) {
    uint16_t* scales = is_v ? cache.v_scale : cache.k_scale;
    for (int d0 = 0; d0 < head_dim; d0 += 32) {  // head_dim % 32 == 0
      store_q8_0_block(slot[d0 + lane], lane, static_cast<int8_t*>(values) + at + d0, scales + (at + d0) / 32);
    }
  } else {
    for (int d = lane; d < head_dim; d += 32) {
      static_cast<uint16_t*>(values)[at + d] = __half_as_ushort(__float2half_rn(slot[d]));
    }
  }
}

// Whether (v, i) beats (best, at): a higher value, or the same value at a lower index.
__device__ __forceinline__ bool beats(float v, int64_t i, float best, int64_t at) {
  return v > best || (v == best && i < at);
}

__global__ void __launch_bounds__(1024) argmax_kernel(const float* __restrict__ x, int64_t n, int32_t* token) {
  __shared__ float best_values[32];
  __shared__ int64_t best_indices[32];
  wait_for_previous_kernel();
  allow_next_kernel();
  float best = -INFINITY;
  int64_t at = n;  // past the end: the first value wins even if every value is -inf
#pragma unroll 8
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = isnan(x[i]) ? -INFINITY : x[i];
    if (beats(v, i, best, at)) best = v, at = i;
  }
  for (int off = 16; off > 0; off /= 2) {
    const float v = __shfl_xor_sync(0xffffffffu, best, off);
    const int64_t i = __shfl_xor_sync(0xffffffffu, at, off);
    if (beats(v, i, best, at)) best = v, at = i;
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) best_values[warp] = best, best_indices[warp] = at;
  __syncthreads();
  if (warp == 0) {
    best = lane < int(blockDim.x / 32) ? best_values[lane] : -INFINITY;
    at = lane < int(blockDim.x / 32) ? best_indices[lane] : n;
    for (int off = 16; off > 0; off /= 2) {
      const float v = __shfl_xor_sync(0xffffffffu, best, off);
      const int64_t i = __shfl_xor_sync(0xffffffffu, at, off);
      if (beats(v, i, best, at)) best = v, at = i;
    }
    if (lane == 0) *token = static_cast<int32_t>(at);
  }
}

}  // namespace

void cuda_rms_norm(const float* x, const float* weight, float* out, int64_t rows, int64_t n, float eps,
                   void* stream, ActQ8Block* q8, uint16_t* f16) {
  if (rows <= 0) return;
  if (rows > 0x7fffffff) throw_bad_argument("cuda_rms_norm", "rows", rows);
  if (q8 != nullptr && n % 32 != 0) throw_bad_argument("cuda_rms_norm (8-bit output)", "n", n);
  if (out == nullptr && q8 == nullptr && f16 == nullptr) throw_bad_argument("cuda_rms_norm", "outputs", 0);
  launch_dependent(rms_norm_kernel, static_cast<unsigned>(rows), rms_norm_threads(n), 0,
                   static_cast<cudaStream_t>(stream), x, weight, out, n, eps, q8, f16);
}

void cuda_swiglu(const float* gate, const float* up, float* out, int64_t n, void* stream, ActQ8Block* q8,
                 uint16_t* f16) {
  if (n <= 0) return;
  if (q8 != nullptr && n % 32 != 0) throw_bad_argument("cuda_swiglu (8-bit output)", "n", n);
  if (out == nullptr && q8 == nullptr && f16 == nullptr) throw_bad_argument("cuda_swiglu", "outputs", 0);
  launch_dependent(swiglu_kernel, blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream), gate, up, out, n, q8,
                   f16);
}

void cuda_rope_store_kv(float* q, float* k, const float* v, int64_t rows, int64_t n_head, int64_t n_head_kv,
                        int64_t head_dim, int64_t pos0, const RopeParams& p, const KvLayer& cache, void* stream,
                        const int64_t* pos_dev) {
  if (head_dim % 2 != 0 || head_dim > kMaxRopeHeadDim || p.n_rot > head_dim || p.n_rot % 2 != 0) {
    throw_bad_argument("cuda_rope_store_kv", "head_dim", head_dim);
  }
  if (!gpu_kv_supported(cache.type, head_dim)) {
    throw_unsupported("cuda_rope_store_kv", (std::string("a ") + std::string(kv_type_name(cache.type)) +
                                             " KV cache at head_dim " + std::to_string(head_dim)).c_str());
  }
  if (n_head <= 0 || n_head_kv <= 0 || n_head + 2 * n_head_kv > 0x7fffffff) {
    throw_bad_argument("cuda_rope_store_kv", "heads", n_head + 2 * n_head_kv);
  }
  const int64_t items = rows * (n_head + 2 * n_head_kv);
  if (items <= 0) return;
  float corr_low, corr_high;
  rope_yarn_corr(p, &corr_low, &corr_high);
  const auto blocks = static_cast<unsigned>((items + kRopeWarps - 1) / kRopeWarps);
  const size_t shared = sizeof(float) * kRopeWarps * size_t(head_dim);
  const auto launch = [&](auto kernel) {
    launch_dependent(kernel, blocks, kRopeWarps * 32, shared, static_cast<cudaStream_t>(stream), q, k, v, rows,
                     int(n_head), int(n_head_kv), int(head_dim), pos0, pos_dev, p, corr_low, corr_high, cache);
  };
  if (cache.type == KvType::q8_0) {
    launch(rope_store_kv_kernel<KvType::q8_0>);
  } else {
    launch(rope_store_kv_kernel<KvType::f16>);
  }
}

void cuda_argmax(const float* x, int64_t n, int32_t* token, void* stream) {
  if (n < 1 || n > 0x7fffffff) throw_bad_argument("cuda_argmax", "n", n);
  launch_dependent(argmax_kernel, 1, 1024, 0, static_cast<cudaStream_t>(stream), x, n, token);
}

}  // namespace engine
