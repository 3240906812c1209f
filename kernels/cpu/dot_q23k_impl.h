// Decode rows of Q2_K and Q3_K against BlockQ8x256 activations (one scale per 256 values,
// 16-value sums), as dot_q8x256_impl.h does for the other K-quants. Both formats hold sixteen
// 16-value groups a super-block; value e = 128h + 32g + l (h < 2, g < 4, l < 32) has its low two
// bits at bits 2g of qs[32h + l] and lies in group e / 16 = 8h + 2g + l / 16.
//   Q2_K: w = d * (sc_j & 15) * q - dmin * (sc_j >> 4), q in 0..3: per super-block
//         d * sum_j sc_j (q_j . x_j) - dmin * sum_j m_j sum(x_j), both in int32.
//   Q3_K: w = d * s_j * (u - 4), u = q + 4 * (bit 4h + g of hmask[l]) in 0..7, s_j a 6-bit scale
//         minus 32: d * sum_j s_j (u_j . x_j - 4 sum(x_j)).
// Bound: memory (84 and 110 bytes a super-block) at one activation row, the multiply-adds from two
// on (the four-column rows below). Included by quant_dot_impl.h; internal linkage like everything
// there.
#pragma once

#include <array>

namespace engine {
namespace {

// Q3_K's sixteen 6-bit scales minus 32: scale j has its low four bits in the low (j < 8) or high
// nibble of byte j % 8, its high two at bits 2 * (j / 4) of byte 8 + j % 4.
inline void unpack_q3k_scales(const uint8_t* s, int8_t out[16]) {
  uint32_t a0, a1, a2;
  std::memcpy(&a0, s, 4);
  std::memcpy(&a1, s + 4, 4);
  std::memcpy(&a2, s + 8, 4);
  const uint32_t words[4] = {(a0 & 0x0f0f0f0fu) | ((a2 & 0x03030303u) << 4),
                             (a1 & 0x0f0f0f0fu) | (((a2 >> 2) & 0x03030303u) << 4),
                             ((a0 >> 4) & 0x0f0f0f0fu) | (((a2 >> 4) & 0x03030303u) << 4),
                             ((a1 >> 4) & 0x0f0f0f0fu) | (((a2 >> 6) & 0x03030303u) << 4)};
  uint8_t bytes[16];
  std::memcpy(bytes, words, 16);
  for (int j = 0; j < 16; ++j) out[j] = static_cast<int8_t>(int(bytes[j]) - 32);
}

// Q2_K and Q3_K, portable: the sixteen groups' integer dots, then the formulas above.
template <bool kThreeBit, typename Block>
float dot_q23_k_q8x256(const void* row, const BlockQ8x256* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  float s = 0;
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    int32_t dots[16] = {};
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, g = (e % 128) / 32, l = e % 32;
      int32_t q = (b[i].qs[32 * h + l] >> (2 * g)) & 3;
      if constexpr (kThreeBit) q |= ((b[i].hmask[l] >> (4 * h + g)) & 1) << 2;
      dots[e / 16] += q * x[i].q[e];
    }
    if constexpr (kThreeBit) {
      int8_t sc[16];
      unpack_q3k_scales(b[i].scales, sc);
      int32_t sum = 0;
      for (int j = 0; j < 16; ++j) sum += int32_t(sc[j]) * (dots[j] - 4 * x[i].sums[j]);
      s += h2f(b[i].d) * x[i].d * float(sum);
    } else {
      int32_t scaled = 0, offset = 0;
      for (int j = 0; j < 16; ++j) {
        scaled += int32_t(b[i].scales[j] & 15) * dots[j];
        offset += int32_t(b[i].scales[j] >> 4) * x[i].sums[j];
      }
      s += x[i].d * (h2f(b[i].d) * float(scaled) - h2f(b[i].dmin) * float(offset));
    }
  }
  return s;
}

#if defined(__AVX2__) && defined(__FMA__)
// unpack_q3k_scales in one vector: byte j = scale j minus 32.
inline __m128i q3k_scales_epi8(const uint8_t* s) {
  uint32_t a0, a1, a2;
  std::memcpy(&a0, s, 4);
  std::memcpy(&a1, s + 4, 4);
  std::memcpy(&a2, s + 8, 4);
  const __m128i low = _mm_and_si128(_mm_set_epi32(int32_t(a1 >> 4), int32_t(a0 >> 4), int32_t(a1), int32_t(a0)),
                                    _mm_set1_epi8(0x0f));
  const __m128i high = _mm_and_si128(_mm_set_epi32(int32_t(a2 >> 6), int32_t(a2 >> 4), int32_t(a2 >> 2), int32_t(a2)),
                                     _mm_set1_epi8(0x03));
  return _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi8(32));
}

// Q2_K and Q3_K, vectorised as Q6_K's rows (dot_q8x256_impl.h), for C activation rows at once (C =
// 1: a decode step; up to kRowCols: a batch below the panel size, quant_dot.h): per 32 values (half
// h, step g) the codes from qs (and hmask), decoded once for the C columns, meet a column's
// activations in maddubs (|7 * 127 * 2| < 2^15), then a multiply-add with the two 16-value groups'
// scales (one per 128-bit lane) sums into int32, two chains a column. The offsets are the mins
// (Q2_K) or scales (Q3_K) against the activations' 16-value sums. The integer sums are exact in any
// order and each column's float steps do not depend on C: a column has the same bits in any batch.
template <int C, bool kThreeBit, typename Block>
std::array<float, C> q23_k_q8x256_cols_avx2(const Block* b, const BlockQ8x256* x, int64_t x_stride,
                                            int64_t k) {
  const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  __m256 acc[C], acc_min[C];
  for (int c = 0; c < C; ++c) acc[c] = acc_min[c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    for (int line = 0; line < int(sizeof(Block) + 63) / 64; ++line) {
      prefetch_ahead(reinterpret_cast<const char*>(b + i) + 64 * line);
    }
    __m256i sc16, m16 = _mm256_setzero_si256();
    if constexpr (kThreeBit) {
      sc16 = _mm256_cvtepi8_epi16(q3k_scales_epi8(b[i].scales));
    } else {
      const __m256i packed = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].scales)));
      sc16 = _mm256_and_si256(packed, _mm256_set1_epi16(15));
      m16 = _mm256_srli_epi16(packed, 4);
    }
    __m256i hm = _mm256_setzero_si256();
    if constexpr (kThreeBit) hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].hmask));
    __m256i even[C], odd[C];
    for (int c = 0; c < C; ++c) even[c] = odd[c] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      // Scales 8h .. 8h + 7 in both lanes; step g takes word 2g in the low lane, 2g + 1 in the high.
      const __m256i sch = h == 0 ? _mm256_permute4x64_epi64(sc16, 0x44) : _mm256_permute4x64_epi64(sc16, 0xEE);
      const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * h));
      for (int g = 0; g < 4; ++g) {
        __m256i q = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * g), three);
        if constexpr (kThreeBit) {
          // The 16-bit shift brings each byte's own bit 4h + g to bit 0; the mask drops the rest.
          q = _mm256_or_si256(q, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + g), one), 2));
        }
        const __m256i s = _mm256_shuffle_epi8(sch, _mm256_setr_epi8(4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1,
                                                                    4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1,
                                                                    4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3,
                                                                    4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3));
        for (int c = 0; c < C; ++c) {
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[c * x_stride + i].q + 128 * h + 32 * g));
          __m256i& sum = g % 2 == 0 ? even[c] : odd[c];
          sum = madd_add(sum, _mm256_maddubs_epi16(q, xv), s);
        }
      }
    }
    const float d = h2f(b[i].d);
    float dmin = 0;
    if constexpr (!kThreeBit) dmin = h2f(b[i].dmin);
    for (int c = 0; c < C; ++c) {
      const BlockQ8x256& xb = x[c * x_stride + i];
      const __m256i sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.sums));
      __m256i isum = _mm256_add_epi32(even[c], odd[c]);
      if constexpr (kThreeBit) {
        isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(_mm256_madd_epi16(sc16, sums), 2));
      } else {
        acc_min[c] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * xb.d), _mm256_cvtepi32_ps(_mm256_madd_epi16(m16, sums)),
                                     acc_min[c]);
      }
      acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(isum), acc[c]);
    }
  }
  std::array<float, C> sums;
  for (int c = 0; c < C; ++c) sums[c] = hsum(_mm256_sub_ps(acc[c], acc_min[c]));
  return sums;
}

template <bool kThreeBit, typename Block>
void dot_q23_k_q8x256_cols_avx2(const void* row, const BlockQ8x256* x, int64_t x_stride, int n_cols, int64_t k,
                                float* out, int64_t out_stride) {
  store_columns(n_cols, out, out_stride, [&]<int C>() {
    return q23_k_q8x256_cols_avx2<C, kThreeBit>(static_cast<const Block*>(row), x, x_stride, k);
  });
}

template <bool kThreeBit, typename Block>
float dot_q23_k_q8x256_avx2(const void* row, const BlockQ8x256* x, int64_t k) {
  return q23_k_q8x256_cols_avx2<1, kThreeBit>(static_cast<const Block*>(row), x, 0, k)[0];
}
#endif

void add_q23k_rows(DotKernels& k) {
  k.dot_q8x256[uint32_t(GgmlType::Q2_K)] = dot_q23_k_q8x256<false, BlockQ2_K>;
  k.dot_q8x256[uint32_t(GgmlType::Q3_K)] = dot_q23_k_q8x256<true, BlockQ3_K>;
#if defined(__AVX2__) && defined(__FMA__)
  k.dot_q8x256[uint32_t(GgmlType::Q2_K)] = dot_q23_k_q8x256_avx2<false, BlockQ2_K>;
  k.dot_q8x256[uint32_t(GgmlType::Q3_K)] = dot_q23_k_q8x256_avx2<true, BlockQ3_K>;
  k.dot_q8x256_cols[uint32_t(GgmlType::Q2_K)] = dot_q23_k_q8x256_cols_avx2<false, BlockQ2_K>;
  k.dot_q8x256_cols[uint32_t(GgmlType::Q3_K)] = dot_q23_k_q8x256_cols_avx2<true, BlockQ3_K>;
#endif
}

}  // namespace
}  // namespace engine
