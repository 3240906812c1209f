// IQ3_XXS and IQ3_S rows against 8-bit activations in blocks of 32 (BlockQ8x32). A 32-value
// group (quant_blocks.h) is eight grid entries of four magnitudes (1..62, one byte each) and 32
// sign bits; its product is
//   d * scale_g * d_x * (grid . (q_x with the group's signs applied))
// so the unsigned grid bytes meet signed activations in a u8 x s8 multiply-add (vpdpbusd with
// AVX-512 VNNI, else maddubs: pairs at most 2 * 62 * 127 < 32767), no bias. The grid entries are
// eight table loads a group, the signs one byte shuffle and compare. Bound: the table loads and
// the multiply-adds (a group is 12.25 or 13.75 bytes). Prompt batches take the panels
// (gemm_q8_impl.h) with the same values. Included by quant_dot_impl.h; internal linkage like
// everything there.
#pragma once

namespace engine {
namespace {

// Group g of a super-block: its grid entries, its 32 sign bits (bit i: value i negative) and
// its scale in units of d.
struct Iq3GroupCodes {
  uint32_t grid[8];
  uint32_t signs;
  float scale;
};

inline Iq3GroupCodes iq3_group_codes(const BlockIQ3_XXS& b, int g) {
  Iq3GroupCodes c;
  const uint32_t aux = load_le32(b.aux + 4 * g);
  for (int k = 0; k < 8; ++k) c.grid[k] = kIQ3XXSGrid[b.qs[8 * g + k]];
  c.signs = 0;
  for (int l = 0; l < 4; ++l) c.signs |= iq3xxs_signs8(aux, l) << (8 * l);
  c.scale = iq3xxs_scale(aux);
  return c;
}

inline Iq3GroupCodes iq3_group_codes(const BlockIQ3_S& b, int g) {
  Iq3GroupCodes c;
  for (int k = 0; k < 8; ++k) c.grid[k] = kIQ3SGrid[b.qs[8 * g + k] | (((b.qh[g] >> k) & 1u) << 8)];
  c.signs = load_le32(b.signs + 4 * g);
  c.scale = iq3s_scale(load_le32(b.scales), g);
  return c;
}

// Portable rows: the signed values four at a time (iq_signed4), an int32 dot product per group.
template <typename Block>
float dot_iq3(const void* row, const BlockQ8x32* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  float s = 0;
  for (int64_t i = 0; i < k / 256; ++i) {
    const float d = h2f(b[i].d);
    for (int g = 0; g < 8; ++g) {
      const Iq3GroupCodes c = iq3_group_codes(b[i], g);
      const int8_t* q = x[8 * i + g].q;
      int32_t sum = 0;
      for (int k4 = 0; k4 < 8; ++k4) {
        const uint32_t v = iq_signed4(c.grid[k4], c.signs >> (4 * k4));
        for (int j = 0; j < 4; ++j) sum += int32_t(int8_t(uint8_t(v >> (8 * j)))) * q[4 * k4 + j];
      }
      s += d * c.scale * x[8 * i + g].d * float(sum);
    }
  }
  return s;
}

#if defined(__AVX2__) && defined(__FMA__)
// 0xff in byte i where bit i of `signs` is set.
inline __m256i iq3_sign_mask(uint32_t signs) {
  const __m256i select = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(signs)), select);
  return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

// The group's 32 values as signed bytes, value i at byte i (for the panels).
inline __m256i iq3_values32(const Iq3GroupCodes& c) {
  const __m256i grid = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.grid));
  const __m256i negate = iq3_sign_mask(c.signs);
  return _mm256_sub_epi8(_mm256_xor_si256(grid, negate), negate);
}

// grid . (q_x with the signs applied), in eight int32 lanes.
inline __m256i iq3_lanes(const Iq3GroupCodes& c, const BlockQ8x32& x) {
  const __m256i grid = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.grid));
  const __m256i negate = iq3_sign_mask(c.signs);
  const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q));
  const __m256i signed_q = _mm256_sub_epi8(_mm256_xor_si256(q, negate), negate);  // -128 stays: q_x > -128
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), grid, signed_q);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(grid, signed_q), _mm256_set1_epi16(1));
#endif
}

template <typename Block>
float dot_iq3_vec(const void* row, const BlockQ8x32* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};  // two chains
  for (int64_t i = 0; i < k / 256; ++i) {
    prefetch_ahead(b + i);
    prefetch_ahead(reinterpret_cast<const char*>(b + i) + 64);
    const float d = h2f(b[i].d);
    for (int g = 0; g < 8; ++g) {
      const Iq3GroupCodes c = iq3_group_codes(b[i], g);
      const BlockQ8x32& xg = x[8 * i + g];
      acc[g % 2] = _mm256_fmadd_ps(_mm256_set1_ps(d * c.scale * xg.d), _mm256_cvtepi32_ps(iq3_lanes(c, xg)), acc[g % 2]);
    }
  }
  return hsum(_mm256_add_ps(acc[0], acc[1]));
}
#endif

void add_iq3_rows(DotKernels& k) {
  k.dot_q8[uint32_t(GgmlType::IQ3_XXS)] = dot_iq3<BlockIQ3_XXS>;
  k.dot_q8[uint32_t(GgmlType::IQ3_S)] = dot_iq3<BlockIQ3_S>;
#if defined(__AVX2__) && defined(__FMA__)
  k.dot_q8[uint32_t(GgmlType::IQ3_XXS)] = dot_iq3_vec<BlockIQ3_XXS>;
  k.dot_q8[uint32_t(GgmlType::IQ3_S)] = dot_iq3_vec<BlockIQ3_S>;
#endif
}

}  // namespace
}  // namespace engine
