// IQ3_XXS and IQ3_S rows against 8-bit activations in blocks of 32 (BlockQ8x32). A 32-value
// group (quant_blocks.h) is eight grid entries of four magnitudes (1..62, one byte each) and 32
// sign bits; its product is
//   d * scale_g * d_x * (grid . (q_x with the group's signs applied))
// so the unsigned grid bytes meet signed activations in a u8 x s8 multiply-add (vpdpbusd with
// AVX-512 VNNI, else maddubs: pairs at most 2 * 62 * 127 < 32767), no bias. The grid entries are
// eight table loads a group (inserts or a gather); the signs, with AVX-512, a mask register
// negating the activations in one masked subtract (the XXS types' 7-bit indices deposited by pdep
// and given their parity bits; shared with dot_iq2_impl.h), else psignb with sign bytes from four
// loads of a 128-entry table (IQ3_XXS) or one byte shuffle and compare (IQ3_S). Bound: the table
// loads and the multiply-adds (a group is 12.25 or 13.75 bytes). The vectorised decode rows take
// 256-value activation blocks (dot_grid_q8x256_impl.h), prompt batches the panels
// (gemm_q8x256_impl.h) with the same values; the portable rows here take 32-value ones. Included
// by quant_dot_impl.h; internal linkage like everything there.
#pragma once

#include <array>
#include <bit>

namespace engine {
namespace {

// Chunk c (values 4c .. 4c + 3) of group g as four signed bytes (quant_blocks.h), and the group's
// scale in units of d.
inline uint32_t iq3_values4(const BlockIQ3_XXS& b, int g, int c) {
  return iq3xxs_values4(b.qs + 8 * g, load_le32(b.aux + 4 * g), c);
}
inline uint32_t iq3_values4(const BlockIQ3_S& b, int g, int c) {
  return iq3s_values4(b.qs + 8 * g, b.qh[g], load_le32(b.signs + 4 * g), c);
}
inline float iq_scale(const BlockIQ3_XXS& b, int g) { return iq3xxs_scale(load_le32(b.aux + 4 * g)); }
inline float iq_scale(const BlockIQ3_S& b, int g) { return iq3s_scale(load_le32(b.scales), g); }

// Portable rows: the signed values four at a time, an int32 dot product per group.
template <typename Block>
float dot_iq3(const void* row, const BlockQ8x32* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  float s = 0;
  for (int64_t i = 0; i < k / 256; ++i) {
    const float d = h2f(b[i].d);
    for (int g = 0; g < 8; ++g) {
      const int8_t* q = x[8 * i + g].q;
      int32_t sum = 0;
      for (int c = 0; c < 8; ++c) {
        const uint32_t v = iq3_values4(b[i], g, c);
        for (int j = 0; j < 4; ++j) sum += int32_t(int8_t(uint8_t(v >> (8 * j)))) * q[4 * c + j];
      }
      s += d * iq_scale(b[i], g) * x[8 * i + g].d * float(sum);
    }
  }
  return s;
}

#if defined(__AVX2__) && defined(__FMA__)
// 0xff in byte i where bit i of `signs` is set.
inline __m256i iq_sign_mask(uint32_t signs) {
  const __m256i select = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(signs)), select);
  return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

// Each group's vectors are built straight from the block (eight words stored and read back as
// one vector would stall on store forwarding). The grid entries as one vector, value i at byte i: IQ3_XXS's by eight loads and inserts (on the 2-core AVX-512
// machine of docs/benchmarks.md 6.8 GB/s at batch 1, a gather 5.4), IQ3_S's nine-bit indices by
// one gather (7.4 GB/s; inserts, each index put together from qs and qh, 5.9).
inline __m256i iq3_grid32(const BlockIQ3_XXS& b, int g) {
  const uint8_t* q = b.qs + 8 * g;
  const uint32_t* t = kIQ3XXSGrid;
  return _mm256_set_epi32(int(t[q[7]]), int(t[q[6]]), int(t[q[5]]), int(t[q[4]]), int(t[q[3]]), int(t[q[2]]),
                          int(t[q[1]]), int(t[q[0]]));
}
inline __m256i iq3_grid32(const BlockIQ3_S& b, int g) {
  const __m256i low = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * g)));
  // Bit c of qh to bit 8 of lane c.
  const __m256i high = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(uint32_t(b.qh[g]) << 8)),
                                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                                        _mm256_set1_epi32(256));
  return _mm256_i32gather_epi32(reinterpret_cast<const int*>(kIQ3SGrid), _mm256_or_si256(low, high), 4);
}

// IQ3_XXS's eight signs of a 7-bit index (the eighth keeps the parity even) as bytes +1 / -1.
constexpr std::array<uint64_t, 128> kEvenSignBytes = [] {
  std::array<uint64_t, 128> t{};
  for (uint32_t i = 0; i < 128; ++i) {
    const uint32_t signs = i | (uint32_t(std::popcount(i) & 1) << 7);
    for (int j = 0; j < 8; ++j) t[i] |= uint64_t((signs >> j) & 1u ? 0xffu : 0x01u) << (8 * j);
  }
  return t;
}();

// The group's signs as bytes +1 / -1, value i at byte i.
inline __m256i iq3_sign_bytes(const BlockIQ3_XXS& b, int g) {
  const uint32_t aux = load_le32(b.aux + 4 * g);
  const uint64_t* t = kEvenSignBytes.data();
  return _mm256_set_epi64x(int64_t(t[(aux >> 21) & 127u]), int64_t(t[(aux >> 14) & 127u]),
                           int64_t(t[(aux >> 7) & 127u]), int64_t(t[aux & 127u]));
}
inline __m256i iq3_sign_bytes(const BlockIQ3_S& b, int g) {
  return _mm256_or_si256(iq_sign_mask(load_le32(b.signs + 4 * g)), _mm256_set1_epi8(1));
}

#if defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__BMI2__)
// With AVX-512 (and BMI2, which every AVX-512 CPU has, fast) a group's 32 sign bits become a mask
// register that negates the activations in one masked subtract, where the sign bytes took table
// loads and inserts or a shuffle. The XXS types' four 7-bit indices are deposited into the low 7
// bits of four bytes (pdep), and each byte's parity becomes its bit 7.
inline uint32_t iq_even_parity_bytes(uint32_t x) {  // bit 7 of each byte clear
  uint32_t p = x ^ (x >> 4);
  p ^= p >> 2;
  p ^= p >> 1;  // bit 0 of each byte: the parity of that byte (the shifts bring in only higher bits)
  return x | ((p & 0x01010101u) << 7);
}
inline uint32_t iq_aux_sign_bits(uint32_t aux) { return iq_even_parity_bytes(_pdep_u32(aux, 0x7f7f7f7fu)); }
inline uint32_t iq3_sign_bits(const BlockIQ3_XXS& b, int g) { return iq_aux_sign_bits(load_le32(b.aux + 4 * g)); }
inline uint32_t iq3_sign_bits(const BlockIQ3_S& b, int g) { return load_le32(b.signs + 4 * g); }
// q negated where `bits` has a bit set (q > -128: exactly).
inline __m256i negate_where(__m256i q, uint32_t bits) {
  return _mm256_mask_sub_epi8(q, __mmask32(bits), _mm256_setzero_si256(), q);
}
#endif

// The activations q of group g with the group's signs applied.
template <typename Block>
inline __m256i iq3_signed_activations(const Block& b, int g, __m256i q) {
#if defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__BMI2__)
  return negate_where(q, iq3_sign_bits(b, g));
#else
  return _mm256_sign_epi8(q, iq3_sign_bytes(b, g));
#endif
}

// The group's 32 values as signed bytes, value i at byte i (for the panels).
template <typename Block>
inline __m256i iq_values32(const Block& b, int g) {
  return _mm256_sign_epi8(iq3_grid32(b, g), iq3_sign_bytes(b, g));  // the grid bytes are 1..62
}

#endif

void add_iq3_rows(DotKernels& k) {
  k.dot_q8[uint32_t(GgmlType::IQ3_XXS)] = dot_iq3<BlockIQ3_XXS>;
  k.dot_q8[uint32_t(GgmlType::IQ3_S)] = dot_iq3<BlockIQ3_S>;
  // With AVX2 their decode rows take 256-value activation blocks (dot_grid_q8x256_impl.h).
}

}  // namespace
}  // namespace engine
