// Decode row kernels for the K-quants against BlockQ8x256 activations (one scale per 256
// values, quant_dot.h). With one activation scale per super-block, a super-block's eight group
// products can be weighted by the groups' integer scales and summed in int32 before a single
// float step, where per-32 activation scales need a float step (or a horizontal reduction) per
// group. Included by quant_dot_impl.h; internal linkage like everything there.
#pragma once

#include <array>

namespace engine {
namespace {

void quantize_q8x256(const float* x, BlockQ8x256* out, int64_t k) {
  for (int64_t b = 0; b < k / 256; ++b, x += 256) {
    const float d = abs_max<256, 16>(x) / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < 256; ++i) out[b].q[i] = static_cast<int8_t>(__builtin_rintf(x[i] * id));
    for (int j = 0; j < 32; ++j) {
      int32_t s = 0;
      for (int i = 0; i < 8; ++i) s += out[b].q[8 * j + i];
      out[b].sums8[j] = static_cast<int16_t>(s);
    }
    for (int j = 0; j < 16; ++j) out[b].sums[j] = static_cast<int16_t>(out[b].sums8[2 * j] + out[b].sums8[2 * j + 1]);
    out[b].d = d;
  }
}

// Q4_K/Q5_K, portable: per super-block, d * sum_g sc[g] (q_g . x_g) - dmin * sum_g m[g] sum(x_g),
// both sums in int32, times the activations' scale.
template <bool kFiveBit, typename Block>
float dot_q45_k_q8x256(const void* row, const BlockQ8x256* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  float s = 0;
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    int32_t scaled = 0, offset = 0;
    for (int g = 0; g < 8; ++g) {
      uint8_t sc, m;
      unpack_scale_min_k4(b[i].scales, g, &sc, &m);
      const uint8_t* qs = b[i].qs + (g / 2) * 32;
      const int8_t* xq = x[i].q + 32 * g;
      const int shift = 4 * (g % 2);
      int32_t dot = 0;
      for (int l = 0; l < 32; ++l) {
        int32_t w = (qs[l] >> shift) & 15;
        if constexpr (kFiveBit) w |= ((b[i].qh[l] >> g) & 1) << 4;
        dot += w * xq[l];
      }
      scaled += int32_t(sc) * dot;
      offset += int32_t(m) * (x[i].sums[2 * g] + x[i].sums[2 * g + 1]);
    }
    s += x[i].d * (h2f(b[i].d) * float(scaled) - h2f(b[i].dmin) * float(offset));
  }
  return s;
}

// Q6_K, portable: d * sum_j scale[j] (q_j . x_j - 32 sum(x_j)) over its sixteen 16-value groups j.
float dot_q6_k_q8x256(const void* row, const BlockQ8x256* x, int64_t k) {
  const BlockQ6_K* b = static_cast<const BlockQ6_K*>(row);
  float s = 0;
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    int32_t dots[16] = {};
    for (int h = 0; h < 2; ++h) {  // values 128h + 32s + l: ql/qh bits as in dequantize_row
      const uint8_t* ql = b[i].ql + 64 * h;
      const uint8_t* qh = b[i].qh + 32 * h;
      const int8_t* xq = x[i].q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int32_t q[4] = {(ql[l] & 15) | ((qh[l] & 3) << 4), (ql[32 + l] & 15) | (((qh[l] >> 2) & 3) << 4),
                              (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4), (ql[32 + l] >> 4) | (((qh[l] >> 6) & 3) << 4)};
        for (int g = 0; g < 4; ++g) dots[8 * h + 2 * g + l / 16] += q[g] * xq[32 * g + l];
      }
    }
    int32_t sum = 0;
    for (int j = 0; j < 16; ++j) sum += int32_t(b[i].scales[j]) * (dots[j] - 32 * x[i].sums[j]);
    s += h2f(b[i].d) * x[i].d * float(sum);
  }
  return s;
}

#if defined(__AVX2__) && defined(__FMA__)
// acc + sum over pairs of a[i] * b[i] (s16 x s16 -> s32), one VNNI instruction where it exists.
inline __m256i madd_add(__m256i acc, __m256i a, __m256i b) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpwssd_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

// Q4_K and Q5_K, vectorised, for C activation rows at once (C = 1: a decode step; up to kRowCols:
// a batch below the panel size, quant_dot.h). Per 32 weight bytes (groups 2q and 2q+1 in the low
// and high nibbles; Q5_K adds bit g of each qh byte as bit 4 of group g), decoded once for the C
// columns: maddubs multiplies the 4-5 bit values with a column's 8-bit activations and sums pairs
// to s16 (|31 * 127 * 2| < 2^15), a multiply-add with the group's scale (s16, broadcast by a byte
// shuffle) sums pairs again into the super-block's eight int32 lanes, in two chains a column (low
// and high nibbles). One float multiply-add per super-block and column; the mins meet the
// activations' 16-value sums in one more multiply-add. The integer sums are exact in any order and
// each column's float steps do not depend on C, so a column has the same bits in any batch. Bound:
// memory at one column with two threads (docs/benchmarks.md), the multiply-adds from two columns on.
template <int C, bool kFiveBit, typename Block>
std::array<float, C> q45_k_q8x256_cols_avx2(const Block* b, const BlockQ8x256* x, int64_t x_stride,
                                            int64_t k) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc[C], acc_min[C];
  for (int c = 0; c < C; ++c) acc[c] = acc_min[c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    for (int line = 0; line < int(sizeof(Block) + 63) / 64; ++line) prefetch_ahead(reinterpret_cast<const char*>(b + i) + 64 * line);
    alignas(8) uint8_t sc[8], m[8];
    unpack_k4_scales(b[i].scales, sc, m);
    const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc))));
    __m256i lo[C], hi[C];
    for (int c = 0; c < C; ++c) lo[c] = hi[c] = _mm256_setzero_si256();
    for (int q = 0; q < 4; ++q) {
      const __m256i q4 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * q));
      __m256i wl = _mm256_and_si256(q4, low4), wh = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low4);
      if constexpr (kFiveBit) {
        const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qh));
        const __m256i bl = _mm256_set1_epi8(char(1 << (2 * q))), bh = _mm256_set1_epi8(char(2 << (2 * q)));
        const __m256i sixteen = _mm256_set1_epi8(16);
        wl = _mm256_or_si256(wl, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bl), bl), sixteen));
        wh = _mm256_or_si256(wh, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bh), bh), sixteen));
      }
      const __m256i sl = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16(int16_t(((4 * q + 1) << 8) | (4 * q))));
      const __m256i sh = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16(int16_t(((4 * q + 3) << 8) | (4 * q + 2))));
      for (int c = 0; c < C; ++c) {
        const int8_t* xq = x[c * x_stride + i].q + 64 * q;
        const __m256i xl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
        const __m256i xh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32));
        lo[c] = madd_add(lo[c], _mm256_maddubs_epi16(wl, xl), sl);
        hi[c] = madd_add(hi[c], _mm256_maddubs_epi16(wh, xh), sh);
      }
    }
    const __m256i m16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m)), _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)));
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int c = 0; c < C; ++c) {
      const BlockQ8x256& xb = x[c * x_stride + i];
      const __m256i msum = _mm256_madd_epi16(m16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.sums)));
      acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(_mm256_add_epi32(lo[c], hi[c])), acc[c]);
      acc_min[c] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * xb.d), _mm256_cvtepi32_ps(msum), acc_min[c]);
    }
  }
  std::array<float, C> sums;
  for (int c = 0; c < C; ++c) sums[c] = hsum(_mm256_sub_ps(acc[c], acc_min[c]));
  return sums;
}

template <bool kFiveBit, typename Block>
void dot_q45_k_q8x256_cols_avx2(const void* row, const BlockQ8x256* x, int64_t x_stride, int n_cols, int64_t k,
                                float* out, int64_t out_stride) {
  store_columns(n_cols, out, out_stride, [&]<int C>() {
    return q45_k_q8x256_cols_avx2<C, kFiveBit>(static_cast<const Block*>(row), x, x_stride, k);
  });
}

template <bool kFiveBit, typename Block>
float dot_q45_k_q8x256_avx2(const void* row, const BlockQ8x256* x, int64_t k) {
  return q45_k_q8x256_cols_avx2<1, kFiveBit>(static_cast<const Block*>(row), x, 0, k)[0];
}

// Q6_K, vectorised, for C activation rows at once (as above). Per 32 values (half h, group g),
// decoded once for the C columns: the 6-bit values 0..63 from ql/qh meet a column's 8-bit
// activations in maddubs (|63 * 127 * 2| < 2^15), then a multiply-add with the scales of the two
// 16-value groups (one per 128-bit lane) into int32, two chains a column. The -32 offset is the
// scales against the activations' 16-value sums, once per super-block.
template <int C>
std::array<float, C> q6_k_q8x256_cols_avx2(const BlockQ6_K* b, const BlockQ8x256* x, int64_t x_stride,
                                           int64_t k) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3);
  __m256 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    for (int line = 0; line < 4; ++line) prefetch_ahead(reinterpret_cast<const char*>(b + i) + 64 * line);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].scales)));
    __m256i even[C], odd[C];
    for (int c = 0; c < C; ++c) even[c] = odd[c] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i sch = h == 0 ? _mm256_permute4x64_epi64(sc16, 0x44) : _mm256_permute4x64_epi64(sc16, 0xEE);
      const __m256i la = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].ql + 64 * h));
      const __m256i lb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].ql + 64 * h + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qh + 32 * h));
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(la, low4), _mm256_slli_epi16(_mm256_and_si256(hb, three), 4)),
          _mm256_or_si256(_mm256_and_si256(lb, low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), three), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, 4), low4), _mm256_and_si256(hb, _mm256_set1_epi8(0x30))),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, 4), low4),
                          _mm256_and_si256(_mm256_srli_epi16(hb, 2), _mm256_set1_epi8(0x30)))};
      for (int g = 0; g < 4; ++g) {
        // Scale 8h + 2g for the low lane's 16 values, 8h + 2g + 1 for the high lane's.
        const __m256i s = _mm256_shuffle_epi8(sch, _mm256_setr_epi8(4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1,
                                                                    4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1,
                                                                    4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3,
                                                                    4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3));
        for (int c = 0; c < C; ++c) {
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[c * x_stride + i].q + 128 * h + 32 * g));
          __m256i& sum = g % 2 == 0 ? even[c] : odd[c];
          sum = madd_add(sum, _mm256_maddubs_epi16(q[g], xv), s);
        }
      }
    }
    const float d = h2f(b[i].d);
    for (int c = 0; c < C; ++c) {
      const BlockQ8x256& xb = x[c * x_stride + i];
      const __m256i offset = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.sums)));
      const __m256i isum = _mm256_sub_epi32(_mm256_add_epi32(even[c], odd[c]), _mm256_slli_epi32(offset, 5));
      acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), _mm256_cvtepi32_ps(isum), acc[c]);
    }
  }
  std::array<float, C> sums;
  for (int c = 0; c < C; ++c) sums[c] = hsum(acc[c]);
  return sums;
}

void dot_q6_k_q8x256_cols_avx2(const void* row, const BlockQ8x256* x, int64_t x_stride, int n_cols, int64_t k,
                               float* out, int64_t out_stride) {
  store_columns(n_cols, out, out_stride, [&]<int C>() {
    return q6_k_q8x256_cols_avx2<C>(static_cast<const BlockQ6_K*>(row), x, x_stride, k);
  });
}
float dot_q6_k_q8x256_avx2(const void* row, const BlockQ8x256* x, int64_t k) {
  return q6_k_q8x256_cols_avx2<1>(static_cast<const BlockQ6_K*>(row), x, 0, k)[0];
}

#endif

void add_q8x256_rows(DotKernels& k) {
  k.quantize_q8x256 = quantize_q8x256;
  k.dot_q8x256[uint32_t(GgmlType::Q4_K)] = dot_q45_k_q8x256<false, BlockQ4_K>;
  k.dot_q8x256[uint32_t(GgmlType::Q5_K)] = dot_q45_k_q8x256<true, BlockQ5_K>;
  k.dot_q8x256[uint32_t(GgmlType::Q6_K)] = dot_q6_k_q8x256;
#if defined(__AVX2__) && defined(__FMA__)
  k.dot_q8x256[uint32_t(GgmlType::Q4_K)] = dot_q45_k_q8x256_avx2<false, BlockQ4_K>;
  k.dot_q8x256[uint32_t(GgmlType::Q5_K)] = dot_q45_k_q8x256_avx2<true, BlockQ5_K>;
  k.dot_q8x256[uint32_t(GgmlType::Q6_K)] = dot_q6_k_q8x256_avx2;
  k.dot_q8x256_cols[uint32_t(GgmlType::Q4_K)] = dot_q45_k_q8x256_cols_avx2<false, BlockQ4_K>;
  k.dot_q8x256_cols[uint32_t(GgmlType::Q5_K)] = dot_q45_k_q8x256_cols_avx2<true, BlockQ5_K>;
  k.dot_q8x256_cols[uint32_t(GgmlType::Q6_K)] = dot_q6_k_q8x256_cols_avx2;
#endif
}

}  // namespace
}  // namespace engine
