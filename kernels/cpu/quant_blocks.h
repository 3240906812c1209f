// Block structs of the GGUF quantized formats (ggml's exact byte layout) and shared helpers.
#pragma once

#include <cstdint>

// Helpers below are shared by the CPU reference and the CUDA kernels.
#include "../host_device.h"

namespace engine {

constexpr int kQK_K = 256;

struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[16]; };
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };
struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; };
struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; };
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
struct BlockIQ4_NL { uint16_t d; uint8_t qs[16]; };
struct BlockIQ4_XS { uint16_t d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]; };

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ2_K) == 84 &&
              sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 &&
              sizeof(BlockQ6_K) == 210 && sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136,
              "block structs must match ggml's byte layout");

// IQ4_NL and IQ4_XS: a 4-bit code q stands for kIQ4Values[q] (a non-linear grid), times the
// block's scale. IQ4_XS's eight 32-value groups each have a 6-bit scale, minus 32: the low 4 bits
// in scales_l (group g: byte g / 2, nibble g % 2), the top 2 in bits 2g, 2g + 1 of scales_h.
// In a 32-value group, value j < 16 is the low nibble of qs[j], value 16 + j the high one.
constexpr int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
// The same grid as two words of eight bytes, for code that has no table to index (CUDA lanes).
ENGINE_HOST_DEVICE static inline int iq4_value(uint32_t q) {
  constexpr uint64_t kLow = 0xf6eaddcfbfad9881ull, kHigh = 0x7159453526190d01ull;  // codes 0-7, 8-15
  return int8_t(uint8_t((q < 8 ? kLow : kHigh) >> (8 * (q & 7))));
}
// Group g's 6-bit code from scales_l read as one little-endian word and scales_h (the kernels
// hold both in registers), then the scale itself.
ENGINE_HOST_DEVICE static inline uint32_t iq4_xs_scale_bits(uint32_t scales_l, uint32_t scales_h, int g) {
  return ((scales_l >> (4 * g)) & 15u) | (((scales_h >> (2 * g)) & 3u) << 4);
}
ENGINE_HOST_DEVICE static inline int iq4_xs_scale(const BlockIQ4_XS& b, int g) {
  const uint32_t scales_l = uint32_t(b.scales_l[0]) | (uint32_t(b.scales_l[1]) << 8) |
                            (uint32_t(b.scales_l[2]) << 16) | (uint32_t(b.scales_l[3]) << 24);
  return int(iq4_xs_scale_bits(scales_l, b.scales_h, g)) - 32;
}

// Q4_K/Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes: bytes 0-3 hold scales
// 0-3 (low 6 bits) and the top 2 bits of scales 4-7; bytes 4-7 the same for mins; bytes 8-11
// the low 4 bits of scales 4-7 (low nibble) and mins 4-7 (high nibble).
ENGINE_HOST_DEVICE static inline void unpack_scale_min_k4(const uint8_t* s, int g, uint8_t* scale, uint8_t* min) {
  if (g < 4) {
    *scale = s[g] & 63;
    *min = s[g + 4] & 63;
  } else {
    *scale = (s[g + 4] & 15) | ((s[g - 4] >> 6) << 4);
    *min = (s[g + 4] >> 4) | ((s[g] >> 6) << 4);
  }
}

static inline void pack_scale_min_k4(const uint8_t scale[8], const uint8_t min[8], uint8_t* s) {
  for (int g = 0; g < 4; ++g) {
    s[g] = uint8_t((scale[g] & 63) | ((scale[g + 4] >> 4) << 6));
    s[g + 4] = uint8_t((min[g] & 63) | ((min[g + 4] >> 4) << 6));
    s[g + 8] = uint8_t((scale[g + 4] & 15) | ((min[g + 4] & 15) << 4));
  }
}

}  // namespace engine
