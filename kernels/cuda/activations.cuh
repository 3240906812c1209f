// Device side of the 8-bit activation blocks (activations.h), shared by every kernel that writes
// them: the quantizer, and RMSNorm and SwiGLU when they also write their output quantized.
#pragma once

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

// Called by all 32 lanes of a warp, lane j holding value j of block b: amax and the code sum by
// shuffles, then the codes, the scale and the sum written to b.
__device__ __forceinline__ void warp_quantize_block(float v, int lane, ActQ8Block& b) {
  float amax = fabsf(v);
  for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  const int q = activation_code(v, amax);
  int sum = q;
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  b.q[lane] = static_cast<int8_t>(q);
  if (lane == 0) {
    b.d = amax / 127.0f;
    b.sum = b.d * float(sum);
  }
}

}  // namespace engine
