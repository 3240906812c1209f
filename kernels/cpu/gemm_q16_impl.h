// The prompt kernels of quant_dot.h for Q2_K, Q3_K, Q6_K, IQ2_XS, IQ2_S and IQ1_M with AVX2 and
// without AVX-512 VNNI (quantize_q16 and the gemm_q16 panels; with AVX-512 VNNI these types take
// gemm_q8x256_impl.h's panels), included by quant_dot_impl.h in each instruction-set translation
// unit; same rules: internal linkage, no inline library templates. Decode steps take the row
// kernels of dot_q8x256_impl.h and dot_q23k_impl.h.
//
// Arithmetic: per super-block of 256 values a weight row becomes int16 products (exact: Q6_K
// (q - 32) * scale, |w| <= 4096; Q3_K (u - 4) * scale, <= 128; Q2_K q * scale, <= 45; IQ2_XS and
// IQ2_S +-grid * (2s + 1), <= 43 * 31 = 1333, IQ1_M (8 grid +- 1) (2s + 1), <= 9 * 15 = 135; their
// d / 8 the float) and a float d; per (row, activation row) and super-block
//   idot = sum(w * q_x)  int32, exact (see kQ16Max);   acc = fma(idot, d * d_x, acc)
// and for Q2_K, whose groups also have mins, imin = sum_j m_j * sum(q_x over group j) (int32,
// exact) and acc = fma(-imin, dmin * d_x, acc), so every panel shape gives bit-identical results
// for a (row, column).
//
// Panels (kQ16PanelRows x any): 16 rows decoded and transposed per super-block, 8 rows per 256-bit
// vector (a 16-row panel is two of them), so that one vector holds the same two values of 8 rows;
// each activation pair is broadcast to it (vpmaddwd, then an add). Bound: integer multiply-adds
// (compute), the decode and transpose amortised over the batch.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace engine {
namespace {

#if defined(__AVX2__) && defined(__FMA__) && !(defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__))
#define ENGINE_Q16_PANELS 1
#else
#define ENGINE_Q16_PANELS 0
#endif

void quantize_q16(const float* x, BlockQ16x256* out, int64_t k) {
  for (int64_t b = 0; b < k / 256; ++b, x += 256) {
    const float d = abs_max<256, 16>(x) / float(kQ16Max);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int l = 0; l < 256; ++l) out[b].q[l] = static_cast<int16_t>(__builtin_rintf(x[l] * id));
    for (int j = 0; j < 16; ++j) {
      int32_t sum = 0;
      for (int l = 0; l < 16; ++l) sum += out[b].q[16 * j + l];
      out[b].sums[j] = static_cast<int16_t>(sum);
    }
    out[b].d = d;
  }
}

#if ENGINE_Q16_PANELS
// ---- Row decoders ----
// A super-block of one row as 256 exact int16 weight products (value e at out[e]) and its float
// scales; Q2_K also its sixteen mins (w = d * out - dmin * m[e / 16]).
struct Q16RowScales {
  float d = 0, dmin = 0;
  int16_t m[16] = {};
};
template <typename Block>
constexpr bool kQ16Mins = requires(const Block& b) { b.dmin; };  // Q2_K

// Codes u (bytes, values 32 * step .. + 31) times their groups' scales: the low 16 values take
// scale s_lo, the high 16 s_hi, each code minus `offset` first.
inline void store_scaled(__m256i u, int offset, int16_t s_lo, int16_t s_hi, int16_t* out) {
  const __m256i off = _mm256_set1_epi16(int16_t(offset));
  const __m256i lo = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(u)), off);
  const __m256i hi = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(u, 1)), off);
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), _mm256_mullo_epi16(lo, _mm256_set1_epi16(s_lo)));
  _mm256_store_si256(reinterpret_cast<__m256i*>(out + 16), _mm256_mullo_epi16(hi, _mm256_set1_epi16(s_hi)));
}

// Q6_K: (q - 32) * scale. Values 64j .. 64j + 63 lie in half h = j / 2: ql bytes 64h .. 64h + 63,
// low nibbles for even j and high for odd, with 2 bits each of qh bytes 32h .. 32h + 31 (shift
// 4 * (j % 2) and 2 more).
inline void decode_int16(const BlockQ6_K& b, int16_t* out, Q16RowScales& s) {
  const __m256i low4 = _mm256_set1_epi8(15), three = _mm256_set1_epi8(3);
  for (int j = 0; j < 4; ++j) {
    const int h = j / 2, nib = 4 * (j % 2);
    const __m256i la = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h));
    const __m256i lb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32));
    const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
    const __m256i v0 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, nib), low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, nib), three), 4));
    const __m256i v1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, nib), low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, nib + 2), three), 4));
    // Values 64j + 32 half + 16 g .. + 15 take scales[4j + 2 half + g].
    store_scaled(v0, 32, b.scales[4 * j], b.scales[4 * j + 1], out + 64 * j);
    store_scaled(v1, 32, b.scales[4 * j + 2], b.scales[4 * j + 3], out + 64 * j + 32);
  }
  s.d = h2f(b.d);
}

// Q3_K: (u - 4) * s_j and Q2_K: q * (sc_j & 15), value e = 128h + 32g + l as in dot_q23k_impl.h.
inline void decode_int16(const BlockQ3_K& b, int16_t* out, Q16RowScales& s) {
  alignas(16) int8_t sc[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(sc), q3k_scales_epi8(b.scales));
  const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.hmask));
  for (int h = 0; h < 2; ++h) {
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * h));
    for (int g = 0; g < 4; ++g) {
      const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qv, 2 * g), three),
                                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + g), one), 2));
      store_scaled(u, 4, sc[8 * h + 2 * g], sc[8 * h + 2 * g + 1], out + 128 * h + 32 * g);
    }
  }
  s.d = h2f(b.d);
}

// IQ2_XS and IQ2_S: each group's signed grid values (dot_iq2_impl.h) times its halves' 2s + 1.
template <typename Block>
  requires std::is_same_v<Block, BlockIQ2_XS> || std::is_same_v<Block, BlockIQ2_S>
inline void decode_int16(const Block& b, int16_t* out, Q16RowScales& s) {
  for (int g = 0; g < 8; ++g) {
    const __m256i v = iq2_values32(b, g);
    const __m256i lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)), hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * g),
                       _mm256_mullo_epi16(lo, _mm256_set1_epi16(int16_t(iq2_scale(b, g, 0)))));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * g + 16),
                       _mm256_mullo_epi16(hi, _mm256_set1_epi16(int16_t(iq2_scale(b, g, 1)))));
  }
  s.d = h2f(b.d) * 0.125f;
}

// IQ1_M: each group's values w = 8 grid +- 1 (dot_iq1_impl.h) times its halves' 2s + 1.
inline void decode_int16(const BlockIQ1_M& b, int16_t* out, Q16RowScales& s) {
  const uint64_t scales = load_le64(b.scales);
  for (int g = 0; g < 8; ++g) {
    const __m256i v = iq1_values32(b, g);
    const __m256i lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)), hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * g),
                       _mm256_mullo_epi16(lo, _mm256_set1_epi16(int16_t(iq1m_scale(scales, 2 * g)))));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * g + 16),
                       _mm256_mullo_epi16(hi, _mm256_set1_epi16(int16_t(iq1m_scale(scales, 2 * g + 1)))));
  }
  s.d = h2f(iq1m_d_bits(scales)) * 0.125f;
}

inline void decode_int16(const BlockQ2_K& b, int16_t* out, Q16RowScales& s) {
  const __m256i three = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; ++h) {
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * h));
    for (int g = 0; g < 4; ++g) {
      const int j = 8 * h + 2 * g;
      store_scaled(_mm256_and_si256(_mm256_srli_epi16(qv, 2 * g), three), 0, int16_t(b.scales[j] & 15),
                   int16_t(b.scales[j + 1] & 15), out + 128 * h + 32 * g);
    }
  }
  for (int j = 0; j < 16; ++j) s.m[j] = int16_t(b.scales[j] >> 4);
  s.d = h2f(b.d);
  s.dmin = h2f(b.dmin);
}

// The mins of kRows rows as int16 pairs: mt[p][r] = m[2p] | m[2p + 1] << 16 of row r, the
// layout the activations' 16-value sums meet in pair multiply-adds.
template <int kRows>
void pack_mins(const Q16RowScales (&s)[kRows], int32_t (*mt)[kRows]) {
  for (int p = 0; p < 8; ++p) {
    for (int r = 0; r < kRows; ++r) {
      mt[p][r] = int32_t(uint32_t(uint16_t(s[r].m[2 * p])) | (uint32_t(uint16_t(s[r].m[2 * p + 1])) << 16));
    }
  }
}

// One super-block of 8 rows: wt[p] = value pair p of each row in its dword lanes; d per row; for
// Q2_K the mins' pairs and dmin per row.
struct Q16Panel8 {
  __m256i wt[128];
  __m256i mt[8];
  __m256 d, dmin;
};

template <typename Block>
void decode_q16_panel8(const uint8_t* w, uint64_t row_bytes, int n_rows, int64_t i, Q16Panel8& p) {
  alignas(32) int16_t rows[8][256];
  alignas(32) float d[8], dmin[8];
  Q16RowScales s[8];
  for (int r = 0; r < 8; ++r) {
    if (r >= n_rows) {
      std::memset(rows[r], 0, sizeof(rows[r]));
    } else {
      decode_int16(reinterpret_cast<const Block*>(w + r * row_bytes)[i], rows[r], s[r]);
    }
    d[r] = s[r].d;
    dmin[r] = s[r].dmin;
  }
  for (int v = 0; v < 16; ++v) {  // pairs 8v .. 8v + 7
    __m256i t[8];
    for (int r = 0; r < 8; ++r) t[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(rows[r] + 16 * v));
    transpose8x8_epi32(t);
    for (int q = 0; q < 8; ++q) p.wt[8 * v + q] = t[q];
  }
  p.d = _mm256_load_ps(d);
  if constexpr (kQ16Mins<Block>) {
    alignas(32) int32_t mt[8][8];
    pack_mins<8>(s, mt);
    for (int q = 0; q < 8; ++q) p.mt[q] = _mm256_load_si256(reinterpret_cast<const __m256i*>(mt[q]));
    p.dmin = _mm256_load_ps(dmin);
  }
}

inline __m256i broadcast_pair(const int16_t* q) {
  int32_t pair;
  std::memcpy(&pair, q, 4);
  return _mm256_set1_epi32(pair);
}

// C activation rows against one super-block's panel of up to 8 rows; y is the running sum: zero
// before the first super-block. Never inlined: inlined into the panel loop GCC 12 kept the
// accumulators in memory (a loop over c instead of the unrolled one), 40% slower.
template <int C, bool kMins>
__attribute__((noinline)) void q16_panel8_cols(const Q16Panel8& p, const BlockQ16x256* x, int64_t x_stride, int64_t i, bool first,
                     int n_rows, float* y, int64_t ldy) {
  __m256i iacc[C];
  const BlockQ16x256* xb[C];
  for (int c = 0; c < C; ++c) {
    iacc[c] = _mm256_setzero_si256();
    xb[c] = x + c * x_stride + i;
  }
  for (int q = 0; q < 128; ++q) {
    const __m256i wv = p.wt[q];
    for (int c = 0; c < C; ++c) iacc[c] = _mm256_add_epi32(iacc[c], _mm256_madd_epi16(wv, broadcast_pair(xb[c]->q + 2 * q)));
  }
  const __m256i rows = lanes_below(n_rows);
  for (int c = 0; c < C; ++c) {
    const __m256 xd = _mm256_set1_ps(xb[c]->d);
    const __m256 y0 = first ? _mm256_setzero_ps() : _mm256_maskload_ps(y + c * ldy, rows);
    __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[c]), _mm256_mul_ps(p.d, xd), y0);
    if constexpr (kMins) {
      __m256i imin = _mm256_setzero_si256();
      for (int q = 0; q < 8; ++q) imin = _mm256_add_epi32(imin, _mm256_madd_epi16(p.mt[q], broadcast_pair(xb[c]->sums + 2 * q)));
      f = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_mul_ps(p.dmin, xd), f);
    }
    _mm256_maskstore_ps(y + c * ldy, rows, f);
  }
}

// Both halves of a panel of more than 8 rows against C activation rows, each activation pair
// broadcast once for the two weight vectors: a step is two loads, C broadcasts and 2C
// multiply-adds (C = 6: twelve accumulators in 16 registers), where a half at a time takes a
// broadcast per multiply-add. The same integer sums and float steps per (row, column) as
// q16_panel8_cols.
template <int C, bool kMins>  // never inlined, as q16_panel8_cols
__attribute__((noinline)) void q16_panel16_cols(const Q16Panel8* p, const BlockQ16x256* x, int64_t x_stride, int64_t i,
                                                bool first, int n_rows, float* y, int64_t ldy) {
  // Two flat arrays, not one [2][C]: GCC 12 keeps the latter in memory.
  __m256i iacc0[C], iacc1[C];
  const BlockQ16x256* xb[C];
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) {
    iacc0[c] = _mm256_setzero_si256();
    iacc1[c] = _mm256_setzero_si256();
    xb[c] = x + c * x_stride + i;
  }
  for (int q = 0; q < 128; ++q) {
    const __m256i w0 = p[0].wt[q], w1 = p[1].wt[q];
    _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) {
      const __m256i pair = broadcast_pair(xb[c]->q + 2 * q);
      iacc0[c] = _mm256_add_epi32(iacc0[c], _mm256_madd_epi16(w0, pair));
      iacc1[c] = _mm256_add_epi32(iacc1[c], _mm256_madd_epi16(w1, pair));
      // Each sum stays in its register (as in q8_panel8_cols): left free, GCC 12 adds into a new
      // one and copies it back at every step.
      asm("" : "+x"(iacc0[c]), "+x"(iacc1[c]));
    }
  }
  for (int h = 0; h < 2; ++h) {
    const __m256i rows = lanes_below(n_rows - 8 * h);
    for (int c = 0; c < C; ++c) {
      float* yc = y + c * ldy + 8 * h;
      const __m256 xd = _mm256_set1_ps(xb[c]->d);
      const __m256 y0 = first ? _mm256_setzero_ps() : _mm256_maskload_ps(yc, rows);
      __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h == 0 ? iacc0[c] : iacc1[c]), _mm256_mul_ps(p[h].d, xd), y0);
      if constexpr (kMins) {
        __m256i imin = _mm256_setzero_si256();
        for (int q = 0; q < 8; ++q) {
          imin = _mm256_add_epi32(imin, _mm256_madd_epi16(p[h].mt[q], broadcast_pair(xb[c]->sums + 2 * q)));
        }
        f = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_mul_ps(p[h].dmin, xd), f);
      }
      _mm256_maskstore_ps(yc, rows, f);
    }
  }
}

template <typename Block>
void gemm_q16_panel_avx2(const void* w, uint64_t row_bytes, int n_rows, const BlockQ16x256* x, int64_t x_stride,
                         int n_cols, int64_t k, float* y, int64_t ldy) {
  static_assert(kQ16PanelRows == 16);
  const auto* wb = static_cast<const uint8_t*>(w);
  if (n_rows > 8) {
    constexpr int kCols = kQ16Mins<Block> ? 4 : 6;  // Q2_K's mins need registers too
    Q16Panel8 p[2];
    for (int64_t i = 0; i < k / 256; ++i) {
      decode_q16_panel8<Block>(wb, row_bytes, 8, i, p[0]);
      decode_q16_panel8<Block>(wb + 8 * row_bytes, row_bytes, n_rows - 8, i, p[1]);
      for (int c0 = 0; c0 < n_cols; c0 += kCols) {
        with_count<kCols>(n_cols - c0, [&]<int C>() {
          q16_panel16_cols<C, kQ16Mins<Block>>(p, x + c0 * x_stride, x_stride, i, i == 0, n_rows, y + c0 * ldy, ldy);
        });
      }
    }
    return;
  }
  constexpr int kCols = 8;  // 8 accumulators, the weight vector and a broadcast in 16 registers
  Q16Panel8 p;
  for (int64_t i = 0; i < k / 256; ++i) {
    decode_q16_panel8<Block>(wb, row_bytes, n_rows, i, p);
    for (int c0 = 0; c0 < n_cols; c0 += kCols) {
      with_count<kCols>(n_cols - c0, [&]<int C>() {
        q16_panel8_cols<C, kQ16Mins<Block>>(p, x + c0 * x_stride, x_stride, i, i == 0, n_rows, y + c0 * ldy, ldy);
      });
    }
  }
}
#endif

void add_q16_panels(DotKernels& k) {
  k.quantize_q16 = quantize_q16;
#if ENGINE_Q16_PANELS
  k.gemm_q16_panel[uint32_t(GgmlType::Q6_K)] = gemm_q16_panel_avx2<BlockQ6_K>;
  k.gemm_q16_panel[uint32_t(GgmlType::Q3_K)] = gemm_q16_panel_avx2<BlockQ3_K>;
  k.gemm_q16_panel[uint32_t(GgmlType::Q2_K)] = gemm_q16_panel_avx2<BlockQ2_K>;
  k.gemm_q16_panel[uint32_t(GgmlType::IQ2_XS)] = gemm_q16_panel_avx2<BlockIQ2_XS>;
  k.gemm_q16_panel[uint32_t(GgmlType::IQ2_S)] = gemm_q16_panel_avx2<BlockIQ2_S>;
  k.gemm_q16_panel[uint32_t(GgmlType::IQ1_M)] = gemm_q16_panel_avx2<BlockIQ1_M>;
#endif
}

}  // namespace
}  // namespace engine
