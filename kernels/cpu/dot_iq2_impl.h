// The pieces of IQ2_XXS, IQ2_XS and IQ2_S rows against 8-bit activations. A 32-value group
// (quant_blocks.h) is four grid entries of eight magnitudes (8, 25 or 43, one byte each) and 32
// sign bits; its product is
//   d / 8 * d_x * sum_h (2 s_h + 1) * (grid_h . (q_x with the group's signs applied)_h)
// over its halves h (values 16h .. 16h + 15: IQ2_XS and IQ2_S have a scale per half, IQ2_XXS one
// for both). Here: each group's values four at a time for the portable rows and, for the
// vectorised ones (both in dot_grid_q8x256_impl.h, against BlockQ8x256 activations), its grid magnitudes as one vector (four 64-bit table loads)
// and its signs applied to the activations: with AVX-512 a mask register and a masked subtract
// (dot_iq3_impl.h; IQ2_XS's 7-bit indices pext'ed from its codes first), else psignb with sign
// bytes from four loads of the even-parity sign-byte table (IQ2_XXS, IQ2_XS) or one shuffle and
// compare (IQ2_S). Prompt batches take the panels: IQ2_XXS the 8-bit ones (gemm_q8_impl.h, one
// scale a group), IQ2_XS and IQ2_S the K-quants' (gemm_q8x256_impl.h, a scale per 16
// values; the codes v + 128 with AVX-512 VNNI, the signed values with AVX2). Included by quant_dot_impl.h after dot_iq3_impl.h; internal
// linkage like everything there.
#pragma once

#include <cstring>
#include <type_traits>

namespace engine {
namespace {

// Entry l of group g (quant_blocks.h) and the integer scale 2s + 1 of half h of group g.
inline IQ2Entry iq2_entry(const BlockIQ2_XXS& b, int g, int l) {
  return iq2xxs_entry(load_le32(b.qs + 8 * g), load_le32(b.qs + 8 * g + 4), l);
}
inline IQ2Entry iq2_entry(const BlockIQ2_XS& b, int g, int l) {
  return iq2xs_entry(uint32_t(b.qs[2 * (4 * g + l)]) | (uint32_t(b.qs[2 * (4 * g + l) + 1]) << 8));
}
inline IQ2Entry iq2_entry(const BlockIQ2_S& b, int g, int l) {
  return iq2s_entry(b.qs[4 * g + l], b.qh[g], b.signs[4 * g + l], l);
}
inline int iq2_scale(const BlockIQ2_XXS& b, int g, int) { return iq2xxs_scale(load_le32(b.qs + 8 * g + 4)); }
inline int iq2_scale(const BlockIQ2_XS& b, int g, int h) { return iq2_half_scale(b.scales[g], h); }
inline int iq2_scale(const BlockIQ2_S& b, int g, int h) { return iq2_half_scale(b.scales[g], h); }

// IQ2_XXS's group scale in units of d, as the 8-bit panels take it.
inline float iq_scale(const BlockIQ2_XXS& b, int g) { return float(iq2_scale(b, g, 0)) * 0.125f; }

// Values 4c .. 4c + 3 of group g as signed bytes and the integer scale 2s + 1 of half h of group g,
// for the portable rows of dot_grid_q8x256_impl.h.
template <typename Block>
inline uint32_t grid_chunk4(const Block& b, int g, int c) {
  return iq2_values4(iq2_entry(b, g, c / 2), c % 2);
}
template <typename Block>
inline int grid_half_scale(const Block& b, int g, int h) {
  return iq2_scale(b, g, h);
}

// IQ2_XXS against 32-value activation blocks (the 8-bit regime's rows), portable.
float dot_iq2_xxs_q8(const void* row, const BlockQ8x32* x, int64_t k) {
  const auto* b = static_cast<const BlockIQ2_XXS*>(row);
  float s = 0;
  for (int64_t i = 0; i < k / 256; ++i) {
    const float d = h2f(b[i].d);
    for (int g = 0; g < 8; ++g) {
      const int8_t* q = x[8 * i + g].q;
      int32_t dot = 0;
      for (int l = 0; l < 4; ++l) {
        const IQ2Entry e = iq2_entry(b[i], g, l);
        for (int c = 0; c < 2; ++c) {
          const uint32_t v = iq2_values4(e, c);
          for (int j = 0; j < 4; ++j) dot += int32_t(int8_t(uint8_t(v >> (8 * j)))) * q[8 * l + 4 * c + j];
        }
      }
      s += d * iq_scale(b[i], g) * x[8 * i + g].d * float(dot);
    }
  }
  return s;
}

#if defined(__AVX2__) && defined(__FMA__)
// The group's four grid entries as one vector, value i at byte i.
inline __m256i iq2_grid32(const BlockIQ2_XXS& b, int g) {
  const uint8_t* q = b.qs + 8 * g;
  const uint64_t* t = kIQ2XXSGrid;
  return _mm256_set_epi64x(int64_t(t[q[3]]), int64_t(t[q[2]]), int64_t(t[q[1]]), int64_t(t[q[0]]));
}
inline __m256i iq2_grid32(const BlockIQ2_XS& b, int g) {
  uint16_t c[4];
  std::memcpy(c, b.qs + 8 * g, 8);
  const uint64_t* t = kIQ2XSGrid;
  return _mm256_set_epi64x(int64_t(t[c[3] & 511]), int64_t(t[c[2] & 511]), int64_t(t[c[1] & 511]),
                           int64_t(t[c[0] & 511]));
}
inline __m256i iq2_grid32(const BlockIQ2_S& b, int g) {
  const uint8_t* q = b.qs + 4 * g;
  const uint32_t qh = b.qh[g];
  const uint64_t* t = kIQ2SGrid;
  return _mm256_set_epi64x(int64_t(t[q[3] | ((qh << 2) & 0x300)]), int64_t(t[q[2] | ((qh << 4) & 0x300)]),
                           int64_t(t[q[1] | ((qh << 6) & 0x300)]), int64_t(t[q[0] | ((qh << 8) & 0x300)]));
}

// The group's signs as bytes +1 / -1, value i at byte i.
inline __m256i iq2_sign_bytes(const BlockIQ2_XXS& b, int g) {
  const uint32_t aux = load_le32(b.qs + 8 * g + 4);
  const uint64_t* t = kEvenSignBytes.data();
  return _mm256_set_epi64x(int64_t(t[(aux >> 21) & 127u]), int64_t(t[(aux >> 14) & 127u]),
                           int64_t(t[(aux >> 7) & 127u]), int64_t(t[aux & 127u]));
}
inline __m256i iq2_sign_bytes(const BlockIQ2_XS& b, int g) {
  uint16_t c[4];
  std::memcpy(c, b.qs + 8 * g, 8);
  const uint64_t* t = kEvenSignBytes.data();
  return _mm256_set_epi64x(int64_t(t[c[3] >> 9]), int64_t(t[c[2] >> 9]), int64_t(t[c[1] >> 9]), int64_t(t[c[0] >> 9]));
}
inline __m256i iq2_sign_bytes(const BlockIQ2_S& b, int g) {
  return _mm256_or_si256(iq_sign_mask(load_le32(b.signs + 4 * g)), _mm256_set1_epi8(1));
}

#if defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__BMI2__)
// With AVX-512 the signs as a mask register (dot_iq3_impl.h): IQ2_XS's 7-bit indices first
// extracted from bits 9-15 of its codes by pext.
inline uint32_t iq2_sign_bits(const BlockIQ2_XXS& b, int g) { return iq_aux_sign_bits(load_le32(b.qs + 8 * g + 4)); }
inline uint32_t iq2_sign_bits(const BlockIQ2_XS& b, int g) {
  uint64_t codes;
  std::memcpy(&codes, b.qs + 8 * g, 8);
  return iq_aux_sign_bits(uint32_t(_pext_u64(codes, 0xfe00fe00fe00fe00ull)));
}
inline uint32_t iq2_sign_bits(const BlockIQ2_S& b, int g) { return load_le32(b.signs + 4 * g); }
#endif

// The activations q of group g with the group's signs applied.
template <typename Block>
inline __m256i iq2_signed_activations(const Block& b, int g, __m256i q) {
#if defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__BMI2__)
  return negate_where(q, iq2_sign_bits(b, g));
#else
  return _mm256_sign_epi8(q, iq2_sign_bytes(b, g));
#endif
}

// The group's 32 values as signed bytes, value i at byte i.
template <typename Block>
inline __m256i iq2_values32(const Block& b, int g) {
  return _mm256_sign_epi8(iq2_grid32(b, g), iq2_sign_bytes(b, g));  // the grid bytes are 8..43
}
// As the 8-bit panels take IQ2_XXS (gemm_q8_impl.h; a better match than dot_iq3_impl.h's template).
inline __m256i iq_values32(const BlockIQ2_XXS& b, int g) { return iq2_values32(b, g); }
#endif

void add_iq2_rows(DotKernels& k) {
  k.dot_q8[uint32_t(GgmlType::IQ2_XXS)] = dot_iq2_xxs_q8;
  // Against BlockQ8x256, portable and vectorised: dot_grid_q8x256_impl.h.
}

}  // namespace
}  // namespace engine
