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

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ2_K) == 84 &&
              sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 &&
              sizeof(BlockQ6_K) == 210,
              "block structs must match ggml's byte layout");

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
