// The prompt kernels of quant_dot.h for IQ2_XS and IQ2_S with AVX2 and without AVX-512 VNNI
// (quantize_q16 and the gemm_q16 panels; with AVX-512 VNNI they take gemm_q8x256_impl.h's panels,
// as every other type with 16-value scales does on both), included by quant_dot_impl.h in each
// instruction-set translation unit; same rules: internal linkage, no inline library templates.
// Decode steps take the row kernels of dot_grid_q8x256_impl.h. (Their codes v + 128 would
// saturate AVX2's maddubs, which the 8-bit panels rest on.)
//
// Arithmetic: per super-block of 256 values a weight row becomes exact int16 products +-grid *
// (2s + 1), at most 43 * 31 = 1333, and a float d / 8; per (row, activation row) and super-block
//   idot = sum(w * q_x)  int32, exact (see kQ16Max);   acc = fma(idot, d * d_x, acc)
// so every panel shape gives bit-identical results for a (row, column).
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
    out[b].d = d;
  }
}

#if ENGINE_Q16_PANELS
// A super-block of one row as 256 exact int16 weight products (value e at out[e]) and its d.
struct Q16RowScales {
  float d = 0;
};

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

// One super-block of 8 rows: wt[p] = value pair p of each row in its dword lanes; d per row.
struct Q16Panel8 {
  __m256i wt[128];
  __m256 d;
};

template <typename Block>
void decode_q16_panel8(const uint8_t* w, uint64_t row_bytes, int n_rows, int64_t i, Q16Panel8& p) {
  alignas(32) int16_t rows[8][256];
  alignas(32) float d[8];
  for (int r = 0; r < 8; ++r) {
    Q16RowScales s;
    if (r >= n_rows) {
      std::memset(rows[r], 0, sizeof(rows[r]));
    } else {
      decode_int16(reinterpret_cast<const Block*>(w + r * row_bytes)[i], rows[r], s);
    }
    d[r] = s.d;
  }
  for (int v = 0; v < 16; ++v) {  // pairs 8v .. 8v + 7
    __m256i t[8];
    for (int r = 0; r < 8; ++r) t[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(rows[r] + 16 * v));
    transpose8x8_epi32(t);
    for (int q = 0; q < 8; ++q) p.wt[8 * v + q] = t[q];
  }
  p.d = _mm256_load_ps(d);
}

inline __m256i broadcast_pair(const int16_t* q) {
  int32_t pair;
  std::memcpy(&pair, q, 4);
  return _mm256_set1_epi32(pair);
}

// C activation rows against one super-block's panel of up to 8 rows; y is the running sum: zero
// before the first super-block. Never inlined: inlined into the panel loop GCC 12 kept the
// accumulators in memory (a loop over c instead of the unrolled one), 40% slower.
template <int C>
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
    _mm256_maskstore_ps(y + c * ldy, rows, _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[c]), _mm256_mul_ps(p.d, xd), y0));
  }
}

// Both halves of a panel of more than 8 rows against C activation rows, each activation pair
// broadcast once for the two weight vectors: a step is two loads, C broadcasts and 2C
// multiply-adds (C = 6: twelve accumulators in 16 registers), where a half at a time takes a
// broadcast per multiply-add. The same integer sums and float steps per (row, column) as
// q16_panel8_cols.
template <int C>  // never inlined, as q16_panel8_cols
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
      _mm256_maskstore_ps(yc, rows, _mm256_fmadd_ps(_mm256_cvtepi32_ps(h == 0 ? iacc0[c] : iacc1[c]),
                                                    _mm256_mul_ps(p[h].d, xd), y0));
    }
  }
}

template <typename Block>
void gemm_q16_panel_avx2(const void* w, uint64_t row_bytes, int n_rows, const BlockQ16x256* x, int64_t x_stride,
                         int n_cols, int64_t k, float* y, int64_t ldy) {
  static_assert(kQ16PanelRows == 16);
  const auto* wb = static_cast<const uint8_t*>(w);
  if (n_rows > 8) {
    constexpr int kCols = 6;
    Q16Panel8 p[2];
    for (int64_t i = 0; i < k / 256; ++i) {
      decode_q16_panel8<Block>(wb, row_bytes, 8, i, p[0]);
      decode_q16_panel8<Block>(wb + 8 * row_bytes, row_bytes, n_rows - 8, i, p[1]);
      for (int c0 = 0; c0 < n_cols; c0 += kCols) {
        with_count<kCols>(n_cols - c0, [&]<int C>() {
          q16_panel16_cols<C>(p, x + c0 * x_stride, x_stride, i, i == 0, n_rows, y + c0 * ldy, ldy);
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
        q16_panel8_cols<C>(p, x + c0 * x_stride, x_stride, i, i == 0, n_rows, y + c0 * ldy, ldy);
      });
    }
  }
}
#endif

void add_q16_panels(DotKernels& k) {
  k.quantize_q16 = quantize_q16;
#if ENGINE_Q16_PANELS
  k.gemm_q16_panel[uint32_t(GgmlType::IQ2_XS)] = gemm_q16_panel_avx2<BlockIQ2_XS>;
  k.gemm_q16_panel[uint32_t(GgmlType::IQ2_S)] = gemm_q16_panel_avx2<BlockIQ2_S>;
#endif
}

}  // namespace
}  // namespace engine
