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
struct BlockIQ3_XXS { uint16_t d; uint8_t qs[64]; uint8_t aux[32]; };
struct BlockIQ3_S { uint16_t d; uint8_t qs[64]; uint8_t qh[8]; uint8_t signs[32]; uint8_t scales[4]; };
struct BlockIQ2_XXS { uint16_t d; uint8_t qs[64]; };
struct BlockIQ2_XS { uint16_t d; uint8_t qs[64]; uint8_t scales[8]; };
struct BlockIQ2_S { uint16_t d; uint8_t qs[32]; uint8_t signs[32]; uint8_t qh[8]; uint8_t scales[8]; };
struct BlockIQ1_S { uint16_t d; uint8_t qs[32]; uint16_t qh[8]; };
struct BlockIQ1_M { uint8_t qs[32]; uint8_t qh[16]; uint8_t scales[8]; };  // d in the scales' top nibbles
struct BlockTQ1_0 { uint8_t qs[48]; uint8_t qh[4]; uint16_t d; };
struct BlockTQ2_0 { uint8_t qs[64]; uint16_t d; };

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ2_K) == 84 &&
              sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 &&
              sizeof(BlockQ6_K) == 210 && sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136 &&
              sizeof(BlockIQ3_XXS) == 98 && sizeof(BlockIQ3_S) == 110 && sizeof(BlockIQ2_XXS) == 66 &&
              sizeof(BlockIQ2_XS) == 74 && sizeof(BlockIQ2_S) == 82 && sizeof(BlockIQ1_S) == 50 &&
              sizeof(BlockIQ1_M) == 56 && sizeof(BlockTQ1_0) == 54 && sizeof(BlockTQ2_0) == 66,
              "block structs must match ggml's byte layout");

// Four (eight) bytes as a little-endian word, from any address.
ENGINE_HOST_DEVICE static inline uint32_t load_le32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
ENGINE_HOST_DEVICE static inline uint64_t load_le64(const uint8_t* p) {
  return uint64_t(load_le32(p)) | (uint64_t(load_le32(p + 4)) << 32);
}

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
  return int(iq4_xs_scale_bits(load_le32(b.scales_l), b.scales_h, g)) - 32;
}

// IQ3_XXS and IQ3_S: eight 32-value groups per super-block, each value a grid value (1..62) with
// a sign, times the group's scale. A grid entry is four values (iq_grids.inc: value j in byte j),
// so group g is eight entries, chunk c = values 4c .. 4c + 3:
//   IQ3_XXS: entry qs[8g + c]; the group's word aux[g] (little-endian) holds four 7-bit sign
//            indices (bits 7l: chunks 2l and 2l + 1, its 8 signs the index plus an even-parity
//            eighth bit) and in bits 28-31 the scale s: d (2s + 1) / 4.
//   IQ3_S:   entry qs[8g + c] | bit c of qh[g] << 8; the sign of value 8l + j is bit j of
//            signs[4g + l]; the scale nibble g % 2 of scales[g / 2], s: d (2s + 1).
// A set sign bit negates the value.
#include "iq_grids.inc"
constexpr uint32_t kIQ3XXSGrid[256] = {ENGINE_IQ3XXS_GRID};
constexpr uint32_t kIQ3SGrid[512] = {ENGINE_IQ3S_GRID};
#if defined(__CUDACC__)
// The same tables for the kernels (global memory, cached in L1: lanes index them at random).
static __device__ const uint32_t kIQ3XXSGridDevice[256] = {ENGINE_IQ3XXS_GRID};
static __device__ const uint32_t kIQ3SGridDevice[512] = {ENGINE_IQ3S_GRID};
#endif
// A grid table by name: the device copy in device code, the host one elsewhere.
#if defined(__CUDA_ARCH__)
#define ENGINE_IQ_GRID(table) table##Device
#else
#define ENGINE_IQ_GRID(table) table
#endif
ENGINE_HOST_DEVICE static inline uint32_t iq3xxs_grid(uint32_t i) { return ENGINE_IQ_GRID(kIQ3XXSGrid)[i]; }
ENGINE_HOST_DEVICE static inline uint32_t iq3s_grid(uint32_t i) { return ENGINE_IQ_GRID(kIQ3SGrid)[i]; }
// Four grid values (bytes, each 1..255) with the low four bits of `signs` applied: bit j set
// negates byte j, as two's complement (~v + 1 never carries out of a byte when v > 0).
ENGINE_HOST_DEVICE static inline uint32_t iq_signed4(uint32_t grid, uint32_t signs) {
  const uint32_t negate = (((signs & 15u) * 0x00204081u) & 0x01010101u) * 0xffu;  // bit j to byte j
  return (grid ^ negate) + (negate & 0x01010101u);
}
// Eight signs from a 7-bit index: the index plus an eighth bit that keeps their parity even
// (IQ3_XXS, IQ2_XXS and IQ2_XS).
ENGINE_HOST_DEVICE static inline uint32_t iq_even_signs8(uint32_t index) {
#if defined(__CUDA_ARCH__)
  return index | (uint32_t(__popc(index) & 1) << 7);
#else
  return index | (uint32_t(__builtin_popcount(index) & 1) << 7);
#endif
}
// IQ3_XXS and IQ2_XXS: the eight signs of run l (values 8l .. 8l + 7) from the group's aux word.
ENGINE_HOST_DEVICE static inline uint32_t iq_aux_signs8(uint32_t aux, int l) {
  return iq_even_signs8((aux >> (7 * l)) & 127u);
}
// Chunk c of an IQ3_XXS group (qs: its eight entries, aux: its word) as four signed bytes.
ENGINE_HOST_DEVICE static inline uint32_t iq3xxs_values4(const uint8_t* qs, uint32_t aux, int c) {
  return iq_signed4(iq3xxs_grid(qs[c]), iq_aux_signs8(aux, c / 2) >> (4 * (c % 2)));
}
// Chunk c of an IQ3_S group (qs: its eight entries, qh: its high-bit byte, signs: its four sign
// bytes read as one little-endian word) as four signed bytes.
ENGINE_HOST_DEVICE static inline uint32_t iq3s_values4(const uint8_t* qs, uint32_t qh, uint32_t signs, int c) {
  return iq_signed4(iq3s_grid(qs[c] | (((qh >> c) & 1u) << 8)), signs >> (4 * c));
}
// The group scales in units of d: (2s + 1) / 4 and 2s + 1.
ENGINE_HOST_DEVICE static inline float iq3xxs_scale(uint32_t aux) { return float(2 * (aux >> 28) + 1) * 0.25f; }
ENGINE_HOST_DEVICE static inline float iq3s_scale(uint32_t scales, int g) {  // scales[4] as one word
  return float(2 * ((scales >> (4 * g)) & 15u) + 1);
}

// IQ2_XXS, IQ2_XS and IQ2_S: eight 32-value groups per super-block, each value a grid value (8,
// 25 or 43) with a sign, times a scale. A grid entry is eight values (iq_grids.inc: value j in
// byte j of a 64-bit word), so group g is four entries, entry l = values 8l .. 8l + 7 with the
// eight signs of sign run l:
//   IQ2_XXS: group g is bytes 8g .. 8g + 7 of qs: entry l is byte l, then the group's aux word
//            (little-endian) as IQ3_XXS's: four 7-bit sign indices and the scale s in bits 28-31,
//            d (2s + 1) / 8 for the whole group;
//   IQ2_XS:  entry l is the little-endian 16-bit code at qs byte 2 (4g + l): grid index in bits
//            0-8, 7-bit sign index in bits 9-15; scales[g] holds a scale for values 0..15 (low
//            nibble) and 16..31 (high), each d (2s + 1) / 8;
//   IQ2_S:   entry l is qs[4g + l] | bits 2l, 2l + 1 of qh[g] << 8; its signs are the byte
//            signs[4g + l] (bit j: value 8l + j); scales as IQ2_XS's.
constexpr uint64_t kIQ2XXSGrid[256] = {ENGINE_IQ2XXS_GRID};
constexpr uint64_t kIQ2XSGrid[512] = {ENGINE_IQ2XS_GRID};
constexpr uint64_t kIQ2SGrid[1024] = {ENGINE_IQ2S_GRID};
#if defined(__CUDACC__)
static __device__ const uint64_t kIQ2XXSGridDevice[256] = {ENGINE_IQ2XXS_GRID};
static __device__ const uint64_t kIQ2XSGridDevice[512] = {ENGINE_IQ2XS_GRID};
static __device__ const uint64_t kIQ2SGridDevice[1024] = {ENGINE_IQ2S_GRID};
#endif
ENGINE_HOST_DEVICE static inline uint64_t iq2xxs_grid(uint32_t i) { return ENGINE_IQ_GRID(kIQ2XXSGrid)[i]; }
ENGINE_HOST_DEVICE static inline uint64_t iq2xs_grid(uint32_t i) { return ENGINE_IQ_GRID(kIQ2XSGrid)[i]; }
ENGINE_HOST_DEVICE static inline uint64_t iq2s_grid(uint32_t i) { return ENGINE_IQ_GRID(kIQ2SGrid)[i]; }
// Entry l of a group as its 64-bit grid word and its eight sign bits, from the fields as the
// kernels load them.
struct IQ2Entry {
  uint64_t grid;
  uint32_t signs;
};
// IQ2_XXS: g is the group's eight bytes as two little-endian words (indices, aux).
ENGINE_HOST_DEVICE static inline IQ2Entry iq2xxs_entry(uint32_t indices, uint32_t aux, int l) {
  return {iq2xxs_grid((indices >> (8 * l)) & 255u), iq_aux_signs8(aux, l)};
}
// IQ2_XS: the entry's 16-bit code.
ENGINE_HOST_DEVICE static inline IQ2Entry iq2xs_entry(uint32_t code) {
  return {iq2xs_grid(code & 511u), iq_even_signs8(code >> 9)};
}
// IQ2_S: the entry's low index byte, the group's qh byte and the entry's sign byte.
ENGINE_HOST_DEVICE static inline IQ2Entry iq2s_entry(uint32_t low, uint32_t qh, uint32_t signs, int l) {
  return {iq2s_grid(low | (((qh >> (2 * l)) & 3u) << 8)), signs};
}
// Values 4c .. 4c + 3 (c = 0, 1) of an entry as four signed bytes.
ENGINE_HOST_DEVICE static inline uint32_t iq2_values4(const IQ2Entry& e, int c) {
  return iq_signed4(uint32_t(e.grid >> (32 * c)), e.signs >> (4 * c));
}
// The scales as odd integers 2s + 1 (the scale is d times this over 8): IQ2_XXS's from the aux
// word; IQ2_XS's and IQ2_S's for half h of a group from its scale byte.
ENGINE_HOST_DEVICE static inline int iq2xxs_scale(uint32_t aux) { return int(2 * (aux >> 28) + 1); }
ENGINE_HOST_DEVICE static inline int iq2_half_scale(uint32_t scale_byte, int h) {
  return int(2 * ((scale_byte >> (4 * h)) & 15u) + 1);
}

// IQ1_S and IQ1_M: eight 32-value groups per super-block, each four grid entries of eight values
// -1, 0 or 1 (iq_grids.inc holds them plus one: 0, 1, 2), each entry shifted by delta = +-1/8 and
// times a scale: x = d (2s + 1) (grid + delta). Entry l of group g (e = 4g + l over the block):
//   IQ1_S: grid index qs[e] | bits 3l .. 3l + 2 of qh[g] << 8; qh[g] (16 bits) also holds the
//          group's scale s in bits 12-14 and delta's sign in bit 15 (set: -1/8), for all four;
//   IQ1_M: grid index qs[e] | bits 4(e % 2) .. 4(e % 2) + 2 of qh[e / 2] << 8, delta's sign in
//          bit 4(e % 2) + 3; a 3-bit scale per 16 values (values 16h .. 16h + 15: bits 3(h % 4)
//          of the little-endian 16-bit scale word h / 4), and d, an fp16 whose nibble w is the top
//          nibble (bits 12-15) of scale word w.
// In units of d / 8 a value is (2s + 1) (8 grid +- 1), and 8 grid +- 1 (-9, -7, -1, 1, 7 or 9)
// is the signed byte the CUDA lanes and the CPU panels multiply (the CPU decode rows take the grid
// bytes and add the rest from the activations' sums, dot_iq1_impl.h).
constexpr uint64_t kIQ1SGrid[2048] = {ENGINE_IQ1S_GRID};
#if defined(__CUDACC__)
static __device__ const uint64_t kIQ1SGridDevice[2048] = {ENGINE_IQ1S_GRID};
#endif
ENGINE_HOST_DEVICE static inline uint64_t iq1s_grid(uint32_t i) { return ENGINE_IQ_GRID(kIQ1SGrid)[i]; }
// Four values of an entry (four bytes of its grid word, each value plus one) as signed bytes
// 8 grid + 1 (delta positive) or 8 grid - 1: 8 (grid + 1) + (1 + 8 delta) - 9 a byte at a time,
// the subtraction without borrows since every byte is below 128 before it.
ENGINE_HOST_DEVICE static inline uint32_t iq1_values4(uint32_t grid4, bool delta_negative) {
  const uint32_t u = (grid4 << 3) + (delta_negative ? 0u : 0x02020202u);  // 0 .. 18 a byte
  return ((u | 0x80808080u) - 0x09090909u) ^ 0x80808080u;
}
// IQ1_S: entry l's grid index from its qs byte and the group's qh word; the group's 2s + 1 and
// whether its delta is negative.
ENGINE_HOST_DEVICE static inline uint32_t iq1s_index(uint32_t qs, uint32_t qh, int l) {
  return qs | (((qh >> (3 * l)) & 7u) << 8);
}
ENGINE_HOST_DEVICE static inline int iq1s_scale(uint32_t qh) { return int(2 * ((qh >> 12) & 7u) + 1); }
ENGINE_HOST_DEVICE static inline bool iq1s_delta_negative(uint32_t qh) { return (qh >> 15) & 1u; }
// IQ1_M: entry e's grid index and delta sign from its qs byte and qh byte e / 2; from the eight
// scale bytes as one little-endian word, the 2s + 1 of values 16h .. 16h + 15 and d's fp16 bits.
ENGINE_HOST_DEVICE static inline uint32_t iq1m_index(uint32_t qs, uint32_t qh, int e) {
  return qs | (((qh >> (4 * (e % 2))) & 7u) << 8);
}
ENGINE_HOST_DEVICE static inline bool iq1m_delta_negative(uint32_t qh, int e) { return (qh >> (4 * (e % 2) + 3)) & 1u; }
ENGINE_HOST_DEVICE static inline int iq1m_scale(uint64_t scales, int h) {
  return int(2 * ((scales >> (16 * (h / 4) + 3 * (h % 4))) & 7u) + 1);
}
ENGINE_HOST_DEVICE static inline uint16_t iq1m_d_bits(uint64_t scales) {
  return uint16_t(((scales >> 12) & 0x000fu) | ((scales >> 24) & 0x00f0u) | ((scales >> 36) & 0x0f00u) |
                  ((scales >> 48) & 0xf000u));
}

// TQ1_0 and TQ2_0 (ternary): a value is d (t - 1), t a code 0, 1, 2 (TQ2_0's 2-bit codes may
// also be 3). TQ2_0: value v is bits 2l, 2l + 1 (l = (v % 128) / 32) of qs[32 (v / 128) + v % 32].
// TQ1_0 packs five codes a byte as a base-3 fraction of 256 (byte = ceil(256 * sum_n t_n 3^(4-n)
// / 243)); digit n of byte q is 3 (q 3^n mod 256) / 256, rounded down. Values 0..159 are digit
// v / 32 of qs[v % 32]; values 160..239 digit (v - 160) / 16 of qs[32 + v % 16]; values 240..255
// digit (v - 240) / 4 of qh[v % 4].
ENGINE_HOST_DEVICE static inline uint32_t tq1_pow3(int n) {  // 3^n, n = 0..4 (selects, not a table)
  return n == 0 ? 1u : n == 1 ? 3u : n == 2 ? 9u : n == 3 ? 27u : 81u;
}
ENGINE_HOST_DEVICE static inline uint32_t tq1_digit(uint32_t byte, int n) {
  return (((byte * tq1_pow3(n)) & 255u) * 3u) >> 8;
}
// TQ1_0's value v (0..255) as its code 0..2, from the block's 52 code bytes (qs then qh).
ENGINE_HOST_DEVICE static inline uint32_t tq1_code(const uint8_t* codes, int v) {
  if (v < 160) return tq1_digit(codes[v % 32], v / 32);
  if (v < 240) return tq1_digit(codes[32 + v % 16], (v - 160) / 16);
  return tq1_digit(codes[48 + v % 4], (v - 240) / 4);
}
// TQ2_0's value v as its code 0..3, from the block's 64 code bytes.
ENGINE_HOST_DEVICE static inline uint32_t tq2_code(const uint8_t* qs, int v) {
  return (qs[32 * (v / 128) + v % 32] >> (2 * ((v % 128) / 32))) & 3u;
}
// Digit n of four TQ1_0 code bytes, a byte each (the CUDA kernels' form): even and odd bytes in
// 16-bit lanes apart, so that neither multiply (by 3^n, at most 255 * 81, then by 3) carries
// into a neighbour.
ENGINE_HOST_DEVICE static inline uint32_t tq1_digits4(uint32_t bytes, int n) {
  const uint32_t pow3 = tq1_pow3(n);
  const uint32_t even = ((bytes & 0x00ff00ffu) * pow3) & 0x00ff00ffu;
  const uint32_t odd = (((bytes >> 8) & 0x00ff00ffu) * pow3) & 0x00ff00ffu;
  return (((even * 3u) >> 8) & 0x00ff00ffu) | ((((odd * 3u) >> 8) & 0x00ff00ffu) << 8);
}
// Four codes t (at most 3) as signed bytes t - 1: with each byte's top bit set first, the
// subtraction borrows across no byte.
ENGINE_HOST_DEVICE static inline uint32_t tq_values4(uint32_t codes) {
  return ((codes | 0x80808080u) - 0x01010101u) ^ 0x80808080u;
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
