// Reads from GGUF blocks shared by the CUDA kernels, on the device and on the host (the lane and
// tile-loader tests run the same code): fp16 fields, and words from blocks that are only 2-byte
// aligned (Q4_0, Q5_0 and Q8_0's 18, 22 and 34 bytes).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace engine {

__host__ __device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

__host__ __device__ __forceinline__ uint16_t load2(const uint8_t* p) {
  return *reinterpret_cast<const uint16_t*>(p);
}

// Four bytes from a 2-byte aligned address, little-endian.
__host__ __device__ __forceinline__ uint32_t load4_aligned2(const uint8_t* p) {
  return uint32_t(load2(p)) | (uint32_t(load2(p + 2)) << 16);
}

// Byte idx (0..3, may vary by lane) of a word, without an indexed register array (which would
// go to local memory).
__host__ __device__ __forceinline__ uint32_t byte_of(uint32_t word, int idx) { return (word >> (8 * idx)) & 255u; }

// Scale and min of group g (0..7) of a Q4_K/Q5_K super-block from its 12 scale bytes as three
// words: groups 0-3 keep the low six bits of bytes g and g + 4; groups 4-7 take their low four
// bits from byte g + 4 and the top two from the top bits of bytes g - 4 and g.
__host__ __device__ __forceinline__ void scale_min_k4(uint32_t w0, uint32_t w1, uint32_t w2, int g, float* scale,
                                                      float* min) {
  const int idx = g & 3;
  const uint32_t b0 = byte_of(w0, idx), b1 = byte_of(w1, idx), b2 = byte_of(w2, idx);
  *scale = float(g < 4 ? b0 & 63u : (b2 & 15u) | ((b0 >> 6) << 4));
  *min = float(g < 4 ? b1 & 63u : (b2 >> 4) | ((b1 >> 6) << 4));
}

}  // namespace engine
