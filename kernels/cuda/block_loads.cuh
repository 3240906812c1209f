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

}  // namespace engine
