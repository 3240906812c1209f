// Reads from GGUF blocks shared by the CUDA kernels, on the device and on the host (the lane and
// tile-loader tests run the same code): fp16 fields, and words from blocks that are only 2-byte
// aligned (Q4_0, Q5_0 and Q8_0's 18, 22 and 34 bytes).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

namespace engine {

__host__ __device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// Integer codes to float without a conversion instruction: I2F issues at a quarter of the FMA
// rate or less, so a decoder converting every code spends more issue slots on it than on all the
// rest. 2^23 + v (v < 2^23) is the float with v as its mantissa bits, and subtracting 2^23 (plus
// a decoder's offset, such as Q6_K's 32) is exact: the same values as float(v) - offset.
constexpr float kTwo23 = 8388608.0f;

__host__ __device__ __forceinline__ float float_of_bits(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

// float(v) for v < 2^23: one OR and one FADD.
__host__ __device__ __forceinline__ float u23_to_float(uint32_t v) { return float_of_bits(0x4B000000u | v) - kTwo23; }

// 2^23 + byte j (0..3) of word, exactly (one byte permute on the device); the caller subtracts
// 2^23 + its offset.
__host__ __device__ __forceinline__ float byte_plus_2p23(uint32_t word, int j) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(__byte_perm(word, 0x4B000000u, 0x7440u | unsigned(j)));
#else
  return float_of_bits(0x4B000000u | ((word >> (8 * j)) & 255u));
#endif
}

__host__ __device__ __forceinline__ uint16_t load2(const uint8_t* p) {
  return *reinterpret_cast<const uint16_t*>(p);
}

// Weight bytes, which a decode kernel reads once: on the device through the read-only path
// without a place in L1 (.nc.L1::no_allocate), so the activations every warp of an SM reads stay
// in L1 instead of being pushed out by the weight stream, and with L2 fetching 256-byte runs
// (each warp reads its row front to back). On the host (the lane tests), plain loads. p is
// aligned to the size read.
__host__ __device__ __forceinline__ uint4 stream16(const void* p) {
#if defined(__CUDA_ARCH__)
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
#else
  return *static_cast<const uint4*>(p);
#endif
}

__host__ __device__ __forceinline__ uint2 stream8(const void* p) {
#if defined(__CUDA_ARCH__)
  uint2 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
#else
  return *static_cast<const uint2*>(p);
#endif
}

__host__ __device__ __forceinline__ uint16_t stream2(const void* p) {
#if defined(__CUDA_ARCH__)
  uint16_t v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.u16 %0, [%1];\n" : "=h"(v) : "l"(p));
  return v;
#else
  return *static_cast<const uint16_t*>(p);
#endif
}

__host__ __device__ __forceinline__ uint32_t stream4(const void* p) {
#if defined(__CUDA_ARCH__)
  uint32_t v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.u32 %0, [%1];\n" : "=r"(v) : "l"(p));
  return v;
#else
  return *static_cast<const uint32_t*>(p);
#endif
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
  *scale = u23_to_float(g < 4 ? b0 & 63u : (b2 & 15u) | ((b0 >> 6) << 4));
  *min = u23_to_float(g < 4 ? b1 & 63u : (b2 >> 4) | ((b1 >> 6) << 4));
}

// The 6-bit scale of 16-value group t (0..15) of a Q3_K super-block from its 12 scale bytes as
// three words (before its bias of 32): the low four bits in nibble t / 8 of byte t % 8, the high
// two at bits 2 (t / 4) of byte 8 + t % 4.
__host__ __device__ __forceinline__ uint32_t q3k_scale(uint32_t w0, uint32_t w1, uint32_t w2, int t) {
  const uint32_t lo = (byte_of(t % 8 < 4 ? w0 : w1, t % 4) >> (4 * (t / 8))) & 15u;
  const uint32_t hi = (byte_of(w2, t % 4) >> (2 * (t / 4))) & 3u;
  return lo | (hi << 4);
}

// __byte_perm(x, y, s) for selectors whose nibbles are 0..7 (byte j of the result is byte
// s_j of the eight bytes y:x), the same on the host.
__host__ __device__ __forceinline__ uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(x, y, s);
#else
  const uint64_t both = uint64_t(x) | (uint64_t(y) << 32);
  uint32_t r = 0;
  for (int j = 0; j < 4; ++j) r |= uint32_t((both >> (8 * ((s >> (4 * j)) & 7))) & 255u) << (8 * j);
  return r;
#endif
}

// Four IQ4 codes (one a byte, 0..15) to their grid values (kIQ4Values, one int8 a byte): two
// byte permutes of the 16-byte grid by the codes' low three bits, then a byte select by the
// fourth.
__host__ __device__ __forceinline__ uint32_t iq4_grid4(uint32_t codes) {
  constexpr uint32_t kGrid[4] = {0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u};  // codes 0-3 .. 12-15
  const uint32_t low3 = codes & 0x07070707u;
  const uint32_t pairs = low3 | (low3 >> 4);  // byte 0: c0 | c1 << 4, byte 2: c2 | c3 << 4
  const uint32_t sel = (pairs & 0xffu) | ((pairs >> 8) & 0xff00u);
  const uint32_t lo = byte_perm(kGrid[0], kGrid[1], sel), hi = byte_perm(kGrid[2], kGrid[3], sel);
  const uint32_t high = ((codes >> 3) & 0x01010101u) * 0xffu;  // 0xff in bytes whose code is 8..15
  return (lo & ~high) | (hi & high);
}

}  // namespace engine
