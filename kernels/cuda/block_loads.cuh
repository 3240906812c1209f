// Reads from GGUF blocks shared by the CUDA kernels, on the device and on the host (the lane and
// tile-loader tests run the same code): fp16 fields, and words from blocks that are only 2-byte
// aligned (Q4_0, Q5_0 and Q8_0's 18, 22 and 34 bytes, Q6_K's 210).
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

// Eight bytes from a 2-byte aligned address as two little-endian words, by three aligned 4-byte
// loads and funnel shifts (instead of four 2-byte loads). Reads the 4-byte words around the
// eight bytes: up to two bytes before p and four after p + 8, which callers keep inside the block.
__host__ __device__ __forceinline__ void load8_aligned2(const uint8_t* p, uint32_t* lo, uint32_t* hi) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  const auto* words = reinterpret_cast<const uint32_t*>(address & ~uintptr_t(3));
  const uint32_t w0 = words[0], w1 = words[1], w2 = words[2];
  const unsigned shift = unsigned(address & 2) * 8;  // 0 or 16
#if defined(__CUDA_ARCH__)
  *lo = __funnelshift_r(w0, w1, shift);
  *hi = __funnelshift_r(w1, w2, shift);
#else
  *lo = uint32_t(((uint64_t(w1) << 32) | w0) >> shift);
  *hi = uint32_t(((uint64_t(w2) << 32) | w1) >> shift);
#endif
}

}  // namespace engine
