// TQ1_0 and TQ2_0 rows against 8-bit activations (layouts: quant_blocks.h). A value is d (t - 1)
// for a code t, so a super-block's product is d * d_x * (sum t q_x - sum q_x): the codes (0..3)
// meet the activations in maddubs as they are, eight maddubs summed in int16 (pairs at most
// 2 * 3 * 127, eight of them 6096), the activations' 16-value sums subtracted there, then one
// madd into int32 and one float step per super-block. TQ2_0's codes are 2-bit fields (a shift and
// a mask); TQ1_0's are base-3 digits: digit n of byte q is 3 (q 3^n mod 256) / 256 rounded down,
// so each step multiplies the bytes by 3 (two byte adds, wrapping) and the digit is
// [q >= 86] + [q >= 171] (saturating subtracts and a min). Batches from the panel size on
// (quant_dot.h) take the 8-bit panels (gemm_q8_impl.h) with the signed values t - 1 and d as every
// group's scale. Included by quant_dot_impl.h; internal linkage like everything there.
#pragma once

#include <array>
#include <cstdint>

namespace engine {
namespace {

// The block's code bytes (TQ1_0: qs then qh, contiguous) and value v's code.
inline uint32_t tq_code(const BlockTQ1_0& b, int v) { return tq1_code(reinterpret_cast<const uint8_t*>(&b), v); }
inline uint32_t tq_code(const BlockTQ2_0& b, int v) { return tq2_code(b.qs, v); }

// Portable: sum (t - 1) q_x over the super-block in int32, one float step.
template <typename Block>
float dot_tq_q8x256(const void* row, const BlockQ8x256* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  float s = 0;
  for (int64_t i = 0; i < k / 256; ++i) {
    int32_t sum = 0;
    for (int v = 0; v < 256; ++v) sum += (int32_t(tq_code(b[i], v)) - 1) * x[i].q[v];
    s += h2f(b[i].d) * x[i].d * float(sum);
  }
  return s;
}

#if defined(__AVX2__) && defined(__FMA__)
inline __m256i tq_times3(__m256i q) { return _mm256_add_epi8(q, _mm256_add_epi8(q, q)); }
// Each byte's leading base-3 digit, 3 q / 256 rounded down.
inline __m256i tq_digits(__m256i q) {
  const __m256i one = _mm256_set1_epi8(1);
  return _mm256_add_epi8(_mm256_min_epu8(_mm256_subs_epu8(q, _mm256_set1_epi8(85)), one),
                         _mm256_min_epu8(_mm256_subs_epu8(q, _mm256_set1_epi8(char(170))), one));
}

// Group g's 32 codes (values 32g .. 32g + 31), value i at byte i.
inline __m256i tq_codes32(const BlockTQ2_0& b, int g) {
  const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * (g / 4)));
  return _mm256_and_si256(_mm256_srli_epi16(q, 2 * (g % 4)), _mm256_set1_epi8(3));
}
// TQ1_0: groups 0..4 are digit g of qs[0..31]; group 5 digits 0 and 1 of qs[32..47] (one 128-bit
// lane each), group 6 digits 2 and 3, group 7 digit 4 of qs[32..47] and then the 16 values of
// qh: digit n of qh[m] at byte 4n + m.
inline __m256i tq1_qh_bytes(const BlockTQ1_0& b) {  // qh[m] 3^n at byte 4n + m
  const __m128i z = _mm_set1_epi32(int32_t(load_le32(b.qh)));
  const __m128i z1 = _mm256_castsi256_si128(tq_times3(_mm256_castsi128_si256(z)));
  const __m128i z2 = _mm256_castsi256_si128(tq_times3(_mm256_castsi128_si256(z1)));
  const __m128i z3 = _mm256_castsi256_si128(tq_times3(_mm256_castsi128_si256(z2)));
  return _mm256_castsi128_si256(_mm_blend_epi32(_mm_blend_epi32(_mm_blend_epi32(z, z1, 2), z2, 4), z3, 8));
}
inline __m256i tq_codes32(const BlockTQ1_0& b, int g) {
  if (g < 5) {
    __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
    for (int n = 0; n < g; ++n) q = tq_times3(q);
    return tq_digits(q);
  }
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 32));
  __m256i w = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), _mm256_castsi256_si128(tq_times3(_mm256_castsi128_si256(lo))), 1);
  for (int n = 5; n < g; ++n) w = tq_times3(tq_times3(w));  // digits 2g - 10 and 2g - 9
  if (g == 7) w = _mm256_inserti128_si256(w, _mm256_castsi256_si128(tq1_qh_bytes(b)), 1);
  return tq_digits(w);
}

// C activation rows at once (C = 1: a decode step; up to kRowCols: a batch below the panel size,
// quant_dot.h): each 32 codes decoded once for the C columns (TQ1_0's digits cost more than their
// multiply-adds). The int16 sums are exact in any order and a column's float step does not depend
// on C, so a column has the same bits in any batch. Bound: the vector instructions, at one column
// TQ2_0's 30-odd a super-block (18 GB/s on one thread of the AVX-512 machine of
// docs/benchmarks.md, the matrix in L3) and TQ1_0's digits (6.3 GB/s); the multiply-adds from two
// columns on.
// Inlined into the decode row (C = 1), whose rows are short (a TQ2_0 row of 2048 values is about
// 30 ns): a call there measured 1-2% slower.
template <int C, typename Block>
[[gnu::always_inline]] inline std::array<float, C> tq_q8x256_cols(const Block* b, const BlockQ8x256* x,
                                                                  int64_t x_stride, int64_t k) {
  __m256 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k / 256; ++i) {
    prefetch_ahead(b + i);
    __m256i sum16[C];
    for (int c = 0; c < C; ++c) {
      sum16[c] = _mm256_sub_epi16(_mm256_setzero_si256(),
                                  _mm256_load_si256(reinterpret_cast<const __m256i*>(x[c * x_stride + i].sums)));
    }
    // Codes of values 32g .. 32g + 31 against each column's activations there.
    const auto group = [&](int g, __m256i codes) {
      for (int c = 0; c < C; ++c) {
        const __m256i xv = _mm256_load_si256(reinterpret_cast<const __m256i*>(x[c * x_stride + i].q + 32 * g));
        sum16[c] = _mm256_add_epi16(sum16[c], _mm256_maddubs_epi16(codes, xv));
      }
    };
    if constexpr (std::is_same_v<Block, BlockTQ2_0>) {
      for (int h = 0; h < 2; ++h) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * h));
        for (int l = 0; l < 4; ++l) group(4 * h + l, _mm256_and_si256(_mm256_srli_epi16(q, 2 * l), _mm256_set1_epi8(3)));
      }
    } else {
      __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs));
      for (int n = 0; n < 5; ++n, q = tq_times3(q)) group(n, tq_digits(q));
      const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].qs + 32));
      __m256i w = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), _mm256_castsi256_si128(tq_times3(_mm256_castsi128_si256(lo))), 1);
      for (int p = 0; p < 3; ++p, w = tq_times3(tq_times3(w))) {
        const __m256i v = p < 2 ? w : _mm256_inserti128_si256(w, _mm256_castsi256_si128(tq1_qh_bytes(b[i])), 1);
        group(5 + p, tq_digits(v));
      }
    }
    const float d = h2f(b[i].d);
    for (int c = 0; c < C; ++c) {
      const __m256i sum = _mm256_madd_epi16(sum16[c], _mm256_set1_epi16(1));
      acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[c * x_stride + i].d), _mm256_cvtepi32_ps(sum), acc[c]);
    }
  }
  std::array<float, C> sums;
  for (int c = 0; c < C; ++c) sums[c] = hsum(acc[c]);
  return sums;
}

template <typename Block>
void dot_tq_q8x256_cols(const void* row, const BlockQ8x256* x, int64_t x_stride, int n_cols, int64_t k, float* out,
                        int64_t out_stride) {
  store_columns(n_cols, out, out_stride, [&]<int C>() {
    return tq_q8x256_cols<C>(static_cast<const Block*>(row), x, x_stride, k);
  });
}
template <typename Block>
float dot_tq_q8x256_vec(const void* row, const BlockQ8x256* x, int64_t k) {
  return tq_q8x256_cols<1>(static_cast<const Block*>(row), x, 0, k)[0];
}

// As the 8-bit panels take them (gemm_q8_impl.h): each group's values t - 1, and d for every group.
inline __m256i iq_values32(const BlockTQ1_0& b, int g) { return _mm256_sub_epi8(tq_codes32(b, g), _mm256_set1_epi8(1)); }
inline __m256i iq_values32(const BlockTQ2_0& b, int g) { return _mm256_sub_epi8(tq_codes32(b, g), _mm256_set1_epi8(1)); }
inline float iq_scale(const BlockTQ1_0&, int) { return 1.0f; }
inline float iq_scale(const BlockTQ2_0&, int) { return 1.0f; }
#endif

void add_tq_rows(DotKernels& k) {
  k.dot_q8x256[uint32_t(GgmlType::TQ1_0)] = dot_tq_q8x256<BlockTQ1_0>;
  k.dot_q8x256[uint32_t(GgmlType::TQ2_0)] = dot_tq_q8x256<BlockTQ2_0>;
#if defined(__AVX2__) && defined(__FMA__)
  k.dot_q8x256[uint32_t(GgmlType::TQ1_0)] = dot_tq_q8x256_vec<BlockTQ1_0>;
  k.dot_q8x256[uint32_t(GgmlType::TQ2_0)] = dot_tq_q8x256_vec<BlockTQ2_0>;
  k.dot_q8x256_cols[uint32_t(GgmlType::TQ1_0)] = dot_tq_q8x256_cols<BlockTQ1_0>;
  k.dot_q8x256_cols[uint32_t(GgmlType::TQ2_0)] = dot_tq_q8x256_cols<BlockTQ2_0>;
#endif
}

}  // namespace
}  // namespace engine
