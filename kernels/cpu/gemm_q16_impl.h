// The Q6_K prompt kernels of quant_dot.h (quantize_q16 and the gemm_q16 panels), included by
// quant_dot_impl.h in each instruction-set translation unit; same rules: internal linkage, no
// inline library templates. Decode steps take the row kernels of dot_q8x256_impl.h.
//
// Arithmetic: per super-block of 256 values a weight row becomes int16 products
// w = (q - 32) * scale (exact, |w| <= 4096) and a float d; per (row, activation row) and
// super-block
//   idot = sum(w * q_x)  int32, exact (see kQ16Max);   acc = fma(idot, d * d_x, acc)
// so every panel shape gives bit-identical results for a (row, column).
//
// Panels (kQ16PanelRows x any): 16 rows decoded and transposed per super-block so that one vector
// holds the same two values of all 16 rows; each activation pair is broadcast to it. Bound:
// integer multiply-adds (compute), the decode and transpose amortised over the batch.
#pragma once

#include <cstdint>
#include <cstring>

namespace engine {
namespace {

void quantize_q16(const float* x, BlockQ16x256* out, int64_t k) {
  for (int64_t b = 0; b < k / 256; ++b, x += 256) {
    const float d = abs_max<256, 16>(x) / float(kQ16Max);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int l = 0; l < 256; ++l) out[b].q[l] = static_cast<int16_t>(__builtin_rintf(x[l] * id));
    out[b].d = d;
  }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
// ---- AVX-512 VNNI ----
// Super-block decoder: pair(j) gives the int16 weights of values 64j .. 64j + 31 (w0) and
// 64j + 32 .. 64j + 63 (w1), in the order of BlockQ16x256::q.

struct Q6KDecoder {
  using Block = BlockQ6_K;
  const uint8_t* ql;
  const uint8_t* qh;
  __m512i scales;  // the 16 int8 scales as int16 in lanes 0-15
  float d;
  void load(const BlockQ6_K& b) {
    ql = b.ql;
    qh = b.qh;
    scales = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales))));
    d = h2f(b.d);
  }
  // Values 64j .. 64j + 63 lie in half h = j / 2: ql bytes 64h .. 64h + 63, low nibbles for even
  // j and high for odd, with 2 bits each of qh bytes 32h .. 32h + 31 (shift 4 * (j % 2) and 2 more).
  void pair(int j, __m512i& w0, __m512i& w1) const {
    const int h = j / 2, nib = 4 * (j % 2);
    const __m256i low4 = _mm256_set1_epi8(15), three = _mm256_set1_epi8(3);
    const __m256i la = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 64 * h));
    const __m256i lb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 64 * h + 32));
    const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh + 32 * h));
    const __m256i v0 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, nib), low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, nib), three), 4));
    const __m256i v1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, nib), low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, nib + 2), three), 4));
    // Scale of value e is scales[e / 16]: lanes 0-15 of w0 take 4j, lanes 16-31 take 4j + 1.
    const __m512i halves = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(1), 1);
    const __m512i s0 = _mm512_permutexvar_epi16(_mm512_add_epi16(halves, _mm512_set1_epi16(short(4 * j))), scales);
    const __m512i s1 = _mm512_permutexvar_epi16(_mm512_add_epi16(halves, _mm512_set1_epi16(short(4 * j + 2))), scales);
    const __m512i thirty_two = _mm512_set1_epi16(32);
    w0 = _mm512_mullo_epi16(_mm512_sub_epi16(_mm512_cvtepu8_epi16(v0), thirty_two), s0);
    w1 = _mm512_mullo_epi16(_mm512_sub_epi16(_mm512_cvtepu8_epi16(v1), thirty_two), s1);
  }
};

// One super-block's panel: wt[p] = value pair p (values 2p, 2p + 1) of each of the 16 rows in its
// dword lanes; d per row.
struct Q16Panel {
  __m512i wt[128];
  __m512 d;
};

template <typename Decoder>
void decode_panel(const uint8_t* w, uint64_t row_bytes, int n_rows, int64_t i, Q16Panel& p) {
  using Block = typename Decoder::Block;
  alignas(64) int16_t rows[kQ16PanelRows][256];
  alignas(64) float d[kQ16PanelRows];
  for (int r = 0; r < kQ16PanelRows; ++r) {
    if (r >= n_rows) {
      std::memset(rows[r], 0, sizeof(rows[r]));
      d[r] = 0;
      continue;
    }
    Decoder dec;
    dec.load(reinterpret_cast<const Block*>(w + r * row_bytes)[i]);
    for (int j = 0; j < 4; ++j) {
      __m512i w0, w1;
      dec.pair(j, w0, w1);
      _mm512_store_si512(rows[r] + 64 * j, w0);
      _mm512_store_si512(rows[r] + 64 * j + 32, w1);
    }
    d[r] = dec.d;
  }
  for (int v = 0; v < 8; ++v) {  // pairs 16v .. 16v + 15
    __m512i t[16];
    for (int r = 0; r < kQ16PanelRows; ++r) t[r] = _mm512_load_si512(rows[r] + 32 * v);
    transpose16x16_epi32(t);
    for (int q = 0; q < 16; ++q) p.wt[16 * v + q] = t[q];
  }
  p.d = _mm512_load_ps(d);
}

// acc += pairwise products of w's int16 lanes with the pair at q (two int16) in every dword lane,
// as one instruction with an embedded broadcast. Written in assembly because GCC 12 copies the
// accumulator of the _mm512_dpwssd_epi32 intrinsic to a new register and back at every use,
// which made the panel loop twice as long as its multiply-adds.
inline void dpwssd_broadcast(__m512i& acc, __m512i w, const int16_t* q) {
  asm("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(q)));
}

// C activation rows against one super-block's panel; y (16 floats per column, rows in lanes) is
// the running sum: zero before the first super-block.
template <int C>
void q16_panel_cols(const Q16Panel& p, const BlockQ16x256* x, int64_t x_stride, int64_t i, bool first,
                    __mmask16 rows, float* y, int64_t ldy) {
  __m512i iacc[C];
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) iacc[c] = _mm512_setzero_si512();
  const BlockQ16x256* xb[C];
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) xb[c] = x + c * x_stride + i;
  for (int q = 0; q < 128; ++q) {
    const __m512i wv = p.wt[q];
    _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) dpwssd_broadcast(iacc[c], wv, xb[c]->q + 2 * q);
  }
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) {
    const __m512 xd = _mm512_set1_ps(xb[c]->d);
    const __m512 f = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rows, y + c * ldy);
    _mm512_mask_storeu_ps(y + c * ldy, rows, _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[c]), _mm512_mul_ps(p.d, xd), f));
  }
}

template <typename Decoder>
void gemm_q16_panel_avx512(const void* w, uint64_t row_bytes, int n_rows, const BlockQ16x256* x,
                           int64_t x_stride, int n_cols, int64_t k, float* y, int64_t ldy) {
  static_assert(kQ16PanelRows == 16);
  constexpr int kCols = 8;  // 2 * 8 accumulators
  Q16Panel p;
  const auto rows = static_cast<__mmask16>((1u << n_rows) - 1);
  for (int64_t i = 0; i < k / 256; ++i) {
    decode_panel<Decoder>(static_cast<const uint8_t*>(w), row_bytes, n_rows, i, p);
    for (int c0 = 0; c0 < n_cols; c0 += kCols) {
      const BlockQ16x256* xc = x + c0 * x_stride;
      float* yc = y + c0 * ldy;
      with_count<kCols>(n_cols - c0, [&]<int C>() { q16_panel_cols<C>(p, xc, x_stride, i, i == 0, rows, yc, ldy); });
    }
  }
}
#elif defined(__AVX2__) && defined(__FMA__)
// ---- AVX2 ----
// The same panels, 8 rows per 256-bit vector (a 16-row panel is two of them): vpmaddwd takes the
// place of vpdpwssd (the int16 pair products summed to int32, then added: the same exact integer
// sums), so results are bit for bit the AVX-512 panels'.

// Row r of a super-block as int16 products (q - 32) * scale, value e at rows[e].
inline void decode_q6k_int16(const BlockQ6_K& b, int16_t* out) {
  const __m256i low4 = _mm256_set1_epi8(15), three = _mm256_set1_epi8(3), thirty_two = _mm256_set1_epi16(32);
  for (int j = 0; j < 4; ++j) {  // values 64j .. 64j + 63: as Q6KDecoder::pair
    const int h = j / 2, nib = 4 * (j % 2);
    const __m256i la = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h));
    const __m256i lb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32));
    const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
    const __m256i v[2] = {
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, nib), low4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, nib), three), 4)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, nib), low4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, nib + 2), three), 4))};
    for (int half = 0; half < 2; ++half) {  // values 64j + 32 half + 16 g .. + 15 take scales[4j + 2 half + g]
      const __m256i lo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(v[half]));
      const __m256i hi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(v[half], 1));
      const __m256i s_lo = _mm256_set1_epi16(b.scales[4 * j + 2 * half]);
      const __m256i s_hi = _mm256_set1_epi16(b.scales[4 * j + 2 * half + 1]);
      int16_t* o = out + 64 * j + 32 * half;
      _mm256_store_si256(reinterpret_cast<__m256i*>(o), _mm256_mullo_epi16(_mm256_sub_epi16(lo, thirty_two), s_lo));
      _mm256_store_si256(reinterpret_cast<__m256i*>(o + 16),
                         _mm256_mullo_epi16(_mm256_sub_epi16(hi, thirty_two), s_hi));
    }
  }
}

// One super-block of 8 rows: wt[p] = value pair p of each row in its dword lanes; d per row.
struct Q16Panel8 {
  __m256i wt[128];
  __m256 d;
};

void decode_q16_panel8(const uint8_t* w, uint64_t row_bytes, int n_rows, int64_t i, Q16Panel8& p) {
  alignas(32) int16_t rows[8][256];
  alignas(32) float d[8];
  for (int r = 0; r < 8; ++r) {
    if (r >= n_rows) {
      std::memset(rows[r], 0, sizeof(rows[r]));
      d[r] = 0;
      continue;
    }
    const BlockQ6_K& b = reinterpret_cast<const BlockQ6_K*>(w + r * row_bytes)[i];
    decode_q6k_int16(b, rows[r]);
    d[r] = h2f(b.d);
  }
  for (int v = 0; v < 16; ++v) {  // pairs 8v .. 8v + 7
    __m256i t[8];
    for (int r = 0; r < 8; ++r) t[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(rows[r] + 16 * v));
    transpose8x8_epi32(t);
    for (int q = 0; q < 8; ++q) p.wt[8 * v + q] = t[q];
  }
  p.d = _mm256_load_ps(d);
}

template <int C>
void q16_panel8_cols(const Q16Panel8& p, const BlockQ16x256* x, int64_t x_stride, int64_t i, bool first,
                     int n_rows, float* y, int64_t ldy) {
  __m256i iacc[C];
  const BlockQ16x256* xb[C];
  for (int c = 0; c < C; ++c) {
    iacc[c] = _mm256_setzero_si256();
    xb[c] = x + c * x_stride + i;
  }
  for (int q = 0; q < 128; ++q) {
    const __m256i wv = p.wt[q];
    for (int c = 0; c < C; ++c) {
      int32_t pair;
      std::memcpy(&pair, xb[c]->q + 2 * q, 4);
      iacc[c] = _mm256_add_epi32(iacc[c], _mm256_madd_epi16(wv, _mm256_set1_epi32(pair)));
    }
  }
  for (int c = 0; c < C; ++c) {
    alignas(32) float out[8];
    for (int r = 0; r < 8; ++r) out[r] = first || r >= n_rows ? 0.0f : y[c * ldy + r];
    const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[c]), _mm256_mul_ps(p.d, _mm256_set1_ps(xb[c]->d)),
                                     _mm256_load_ps(out));
    _mm256_store_ps(out, f);
    for (int r = 0; r < n_rows; ++r) y[c * ldy + r] = out[r];
  }
}

void gemm_q16_panel_avx2(const void* w, uint64_t row_bytes, int n_rows, const BlockQ16x256* x, int64_t x_stride,
                         int n_cols, int64_t k, float* y, int64_t ldy) {
  static_assert(kQ16PanelRows == 16);
  constexpr int kCols = 4;  // 4 accumulators, the weight vector and a broadcast in 16 registers
  Q16Panel8 p;
  for (int h = 0; h * 8 < n_rows; ++h) {  // two 8-row halves
    const int rows = n_rows - 8 * h < 8 ? n_rows - 8 * h : 8;
    const uint8_t* wh = static_cast<const uint8_t*>(w) + 8 * h * row_bytes;
    for (int64_t i = 0; i < k / 256; ++i) {
      decode_q16_panel8(wh, row_bytes, rows, i, p);
      for (int c0 = 0; c0 < n_cols; c0 += kCols) {
        const BlockQ16x256* xc = x + c0 * x_stride;
        float* yc = y + c0 * ldy + 8 * h;
        with_count<kCols>(n_cols - c0, [&]<int C>() { q16_panel8_cols<C>(p, xc, x_stride, i, i == 0, rows, yc, ldy); });
      }
    }
  }
}
#endif

void add_q16_panels(DotKernels& k) {
  k.quantize_q16 = quantize_q16;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  k.gemm_q16_panel[uint32_t(GgmlType::Q6_K)] = gemm_q16_panel_avx512<Q6KDecoder>;
#elif defined(__AVX2__) && defined(__FMA__)
  k.gemm_q16_panel[uint32_t(GgmlType::Q6_K)] = gemm_q16_panel_avx2;
#endif
}

}  // namespace
}  // namespace engine
