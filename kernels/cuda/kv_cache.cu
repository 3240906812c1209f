// The q8_0 cache's keys and values as fp16 rows for the prompt attention (kv_cache.h).
//
// Layout: codes and scales as kv_cache.h says; k16, v16 [position][kv_dim] fp16.
// Launch: grid (blocks, 2: K then V), kThreads threads, grid-stride; a thread takes 8 codes (one
//   8-byte load, and the scale its block shares with three other threads) and writes 8 halves
//   (one 16-byte store).
// Bound: memory (1.06 bytes read and 2 written per value). A prompt batch converts the positions
//   it attends, 0 .. pos0 + n - 1, once per layer: for 512 tokens after 8192 cached ones, 54 MB
//   of a QwQ-32B layer's traffic (about 13 us at 4 TB/s), against some 90 GFLOP of attention.
#include <cuda_fp16.h>

#include <cstring>

#include "block_loads.cuh"
#include "kv_cache.h"
#include "scheduler/cuda_check.h"

namespace engine {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    kv_to_f16_kernel(KvLayer cache, int64_t n_groups, uint16_t* __restrict__ k16, uint16_t* __restrict__ v16) {
  const bool is_v = blockIdx.y == 1;
  const auto* codes = static_cast<const int8_t*>(is_v ? cache.v : cache.k);
  const uint16_t* scales = is_v ? cache.v_scale : cache.k_scale;
  uint16_t* out = is_v ? v16 : k16;
  for (int64_t g = int64_t(blockIdx.x) * kThreads + threadIdx.x; g < n_groups; g += int64_t(gridDim.x) * kThreads) {
    const uint2 c = *reinterpret_cast<const uint2*>(codes + 8 * g);
    const float d = h2f(scales[g / 4]);  // 32 values a block: four groups of 8
    // int8 + 128 in each byte: codes to floats and pairs to fp16 without I2F or F2F (block_loads.cuh)
    const uint32_t words[2] = {c.x ^ 0x80808080u, c.y ^ 0x80808080u};
    uint32_t halves[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = words[i / 2];
      const float lo = (byte_plus_2p23(w, 2 * (i % 2)) - (kTwo23 + 128.0f)) * d;
      const float hi = (byte_plus_2p23(w, 2 * (i % 2) + 1) - (kTwo23 + 128.0f)) * d;
      const __half2 pair = __floats2half2_rn(lo, hi);
      memcpy(&halves[i], &pair, sizeof halves[i]);
    }
    *reinterpret_cast<uint4*>(out + 8 * g) = make_uint4(halves[0], halves[1], halves[2], halves[3]);
  }
}

}  // namespace

void cuda_kv_to_f16(const KvLayer& cache, int64_t n_positions, int64_t kv_dim, uint16_t* k16, uint16_t* v16,
                    void* stream) {
  if (cache.type != KvType::q8_0) throw_unsupported("cuda_kv_to_f16", "a cache other than q8_0");
  if (kv_dim <= 0 || kv_dim % 32 != 0) throw_bad_argument("cuda_kv_to_f16", "kv_dim", kv_dim);
  if (n_positions < 0) throw_bad_argument("cuda_kv_to_f16", "n_positions", n_positions);
  const int64_t groups = n_positions * kv_dim / 8;
  if (groups == 0) return;
  const int64_t blocks = (groups + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(blocks < 4096 ? blocks : 4096), 2);
  kv_to_f16_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(cache, groups, k16, v16);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace engine
