// Device side of the forms a matrix product reads its activations in, shared by every kernel that
// writes them: the 8-bit blocks (activations.h) of the quantizer and of RMSNorm and SwiGLU when
// they also write their output quantized, and the saturated fp16 of the prompt matmul's input.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "activations.h"

namespace engine {

// An activation's 8-bit code in a block whose largest magnitude is amax: round(127 x / amax), ties
// to even. The host quantizer uses it too, so both make the same codes.
__host__ __device__ __forceinline__ int activation_code(float x, float amax) {
  const float scale = amax > 0.0f ? 127.0f / amax : 0.0f;
  return int(rintf(x * scale));
}

// The largest |v| over the 32 lanes of a warp (all of them call it), by shuffles.
__device__ __forceinline__ float warp_amax(float v) {
  float amax = fabsf(v);
  for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  return amax;
}

// Called by all 32 lanes of a warp, lane j holding value j of block b: amax and the code sum by
// shuffles, then the codes, the scale and the sum written to b.
__device__ __forceinline__ void warp_quantize_block(float v, int lane, ActQ8Block& b) {
  const float amax = warp_amax(v);
  const int q = activation_code(v, amax);
  int sum = q;
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  b.q[lane] = static_cast<int8_t>(q);
  if (lane == 0) {
    b.d = amax / 127.0f;
    b.sum = b.d * float(sum);
  }
}

// fp16 bits of x, clamped to the largest finite fp16 (65504) so that an outlier activation is
// large, never infinite (NaN becomes -65504).
__device__ __forceinline__ uint16_t saturated_f16(float x) {
  return __half_as_ushort(__float2half_rn(fminf(fmaxf(x, -65504.0f), 65504.0f)));
}

}  // namespace engine
