// The prompt panels of quant_dot.h for every 256-value type: the K-quants and the types whose
// scales cover 16 values (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ2_XS, IQ2_S and IQ1_M) and those with a
// scale per 32 values (IQ4_XS, IQ3_XXS, IQ3_S, IQ2_XXS, IQ1_S; TQ1_0 and TQ2_0, d alone), against
// the decode rows' 8-bit activations with one scale per 256 values (BlockQ8x256, as llama.cpp's
// Q8_K), included by quant_dot_impl.h in each instruction-set translation unit; same rules:
// internal linkage, no inline library templates.
//
// Arithmetic: per super-block a weight row is 256 unsigned byte codes u and per group g of 16
// values (32 for Q4_K, Q5_K and the 32-value-scale types) an int16 scale s_g, and per 16 values an
// int16 offset o; its values are w = s_g (u - c) with the type's code offset c (Q6_K 32, Q3_K 4,
// IQ1_M 9, the grid and ternary types 128; o = c s_g), or for Q2_K, Q4_K and Q5_K
// w = d s_g u - dmin m_g (o = m_g). Per (row, activation row) and super-block, all in int32 and
// exact:
//   idot = sum_g s_g * sum(u * q_x over group g)      (vpdpbusd, then one vpmulld a group)
//   ioff = sum over 16-value runs j of o_j * sum(q_x over run j)   (vpdpwssd on the activations' sums)
// and then acc = fma(idot - ioff, d * d_x, acc), or with mins acc = fma(idot, d * d_x, acc) -
// ioff * dmin * d_x, so every panel shape gives the same bits for a (row, column). Largest idot:
// Q6_K's 16 * 128 * (63 * 127 * 16) and IQ4_XS's 8 * 32 * (241 * 127 * 32), both < 2^28.
//
// Panels (kQ8x256PanelRows x any): 16 rows decoded and transposed per super-block so that one
// vector holds four consecutive codes of every row (dword lane r = row r); each activation dword is
// broadcast against it. A group of 16 values is four multiply-adds of 64 products and one integer
// multiply by the rows' scales, where exact int16 products (scale times value) against 12-bit
// activations took eight multiply-adds of 32, and a float step per group of 32 (on 32-value
// activation blocks) four: 1.1-1.5x (docs/benchmarks.md). Bound: the multiply-adds (compute), the
// decode and transpose amortised over the batch.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace engine {
namespace {

#if defined(__AVX2__) && defined(__FMA__)
// A super-block of one row: 256 codes (value e at byte e), per group g its scale and per 16-value
// run its offset (above); d and (with mins) dmin.
struct Q8x256RowScales {
  float d = 0, dmin = 0;
  int16_t sc[16] = {}, off[16] = {};
};
template <typename Block>
constexpr bool kQ8x256Mins = std::is_same_v<Block, BlockQ2_K> || std::is_same_v<Block, BlockQ4_K> ||
                             std::is_same_v<Block, BlockQ5_K>;
// The grid and ternary types whose groups of 32 values carry a scale each (IQ4_XS its own 6-bit
// ones), and their scales' unit: iq_scale(b, g) * kGridScaleUnits is the integer 2s + 1 (IQ3_XXS
// (2s + 1) / 4, IQ2_XXS and IQ1_S (2s + 1) / 8; the ternary types 1).
template <typename Block>
constexpr int kGridScaleUnits = std::is_same_v<Block, BlockIQ3_XXS> ? 4
                                : std::is_same_v<Block, BlockIQ2_XXS> || std::is_same_v<Block, BlockIQ1_S> ? 8
                                : std::is_same_v<Block, BlockIQ3_S> || std::is_same_v<Block, BlockTQ1_0> ||
                                        std::is_same_v<Block, BlockTQ2_0>
                                    ? 1
                                    : 0;
// Values a scale covers: 32 for Q4_K, Q5_K, IQ4_XS and the grid types (sc[0..7]; off[2g] =
// off[2g + 1]), else 16.
template <typename Block>
constexpr int kQ8x256Group = std::is_same_v<Block, BlockQ4_K> || std::is_same_v<Block, BlockQ5_K> ||
                                     std::is_same_v<Block, BlockIQ4_XS> || kGridScaleUnits<Block> != 0
                                 ? 32
                                 : 16;

inline void set_group_scales(Q8x256RowScales& s, const int8_t* sc, int code_offset) {
  for (int g = 0; g < 16; ++g) {
    s.sc[g] = sc[g];
    s.off[g] = int16_t(code_offset * sc[g]);
  }
}

// Q6_K: codes 0..63, offset 32. Values 64j .. 64j + 63 lie in half h = j / 2: ql bytes 64h ..
// 64h + 63, low nibbles for even j and high for odd, with 2 bits each of qh bytes 32h .. 32h + 31
// (shift 4 * (j % 2) and 2 more).
inline void decode_codes(const BlockQ6_K& b, uint8_t* out, Q8x256RowScales& s) {
  const __m256i low4 = _mm256_set1_epi8(15), three = _mm256_set1_epi8(3);
  for (int j = 0; j < 4; ++j) {
    const int h = j / 2, nib = 4 * (j % 2);
    const __m256i la = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h));
    const __m256i lb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32));
    const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * j),
                       _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, nib), low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, nib), three), 4)));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * j + 32),
                       _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, nib), low4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, nib + 2), three), 4)));
  }
  set_group_scales(s, b.scales, 32);
  s.d = h2f(b.d);
}

// Q3_K: codes u = 0..7 (the value u - 4), value e = 128h + 32g + l as in dot_q23k_impl.h.
inline void decode_codes(const BlockQ3_K& b, uint8_t* out, Q8x256RowScales& s) {
  alignas(16) int8_t sc[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(sc), q3k_scales_epi8(b.scales));
  const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.hmask));
  for (int h = 0; h < 2; ++h) {
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * h));
    for (int g = 0; g < 4; ++g) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(out + 128 * h + 32 * g),
                         _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qv, 2 * g), three),
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + g), one), 2)));
    }
  }
  set_group_scales(s, sc, 4);
  s.d = h2f(b.d);
}

// Q2_K: codes 0..3 times the low scale nibble, less dmin times the high one.
inline void decode_codes(const BlockQ2_K& b, uint8_t* out, Q8x256RowScales& s) {
  const __m256i three = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; ++h) {
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * h));
    for (int g = 0; g < 4; ++g) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(out + 128 * h + 32 * g),
                         _mm256_and_si256(_mm256_srli_epi16(qv, 2 * g), three));
    }
  }
  for (int g = 0; g < 16; ++g) {
    s.sc[g] = int16_t(b.scales[g] & 15);
    s.off[g] = int16_t(b.scales[g] >> 4);
  }
  s.d = h2f(b.d);
  s.dmin = h2f(b.dmin);
}

// A super-block of one row as 256 bytes (value i at byte i).
inline void decode_bytes(const BlockQ4_K& b, uint8_t* out) {
  const __m256i low4 = _mm256_set1_epi8(15);
  for (int c = 0; c < 4; ++c) {  // byte 32c + l: value 64c + l (low nibble), 64c + 32 + l (high)
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * c), _mm256_and_si256(q, low4));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * c + 32), _mm256_and_si256(_mm256_srli_epi16(q, 4), low4));
  }
}

inline void decode_bytes(const BlockQ5_K& b, uint8_t* out) {
  const __m256i low4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
  for (int c = 0; c < 4; ++c) {  // as Q4_K, plus bit 2c (low) or 2c + 1 (high) of qh[l] as bit 4
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
    // The 16-bit shifts move neighbouring bytes' bits only into bits that the mask clears.
    const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c), one), 4);
    const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c + 1), one), 4);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * c), _mm256_or_si256(_mm256_and_si256(q, low4), h0));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 64 * c + 32),
                       _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4), h1));
  }
}

// Q4_K and Q5_K: codes 0..15 or 0..31, d * sc_g - dmin * m_g.
template <typename Block>
  requires std::is_same_v<Block, BlockQ4_K> || std::is_same_v<Block, BlockQ5_K>
inline void decode_codes(const Block& b, uint8_t* out, Q8x256RowScales& s) {
  decode_bytes(b, out);
  uint8_t sc[8], m[8];
  unpack_k4_scales(b.scales, sc, m);
  for (int g = 0; g < 8; ++g) {
    s.sc[g] = sc[g];
    s.off[2 * g] = s.off[2 * g + 1] = m[g];
  }
  s.d = h2f(b.d);
  s.dmin = h2f(b.dmin);
}

// IQ2_XS and IQ2_S: the signed grid values v + 128 (at most 43 + 128), each half's 2s + 1.
template <typename Block>
  requires std::is_same_v<Block, BlockIQ2_XS> || std::is_same_v<Block, BlockIQ2_S>
inline void decode_codes(const Block& b, uint8_t* out, Q8x256RowScales& s) {
  alignas(16) int8_t sc[16];
  for (int g = 0; g < 8; ++g) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * g),
                       _mm256_xor_si256(iq2_values32(b, g), _mm256_set1_epi8(int8_t(0x80))));
    sc[2 * g] = int8_t(iq2_scale(b, g, 0));
    sc[2 * g + 1] = int8_t(iq2_scale(b, g, 1));
  }
  set_group_scales(s, sc, 128);
  s.d = h2f(b.d) * 0.125f;
}

// IQ4_XS: the grid values v + 128 (1 .. 241), its 6-bit scales less 32.
inline void decode_codes(const BlockIQ4_XS& b, uint8_t* out, Q8x256RowScales& s) {
  for (int g = 0; g < 8; ++g) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * g), iq4_codes32(b.qs + 16 * g));
    s.sc[g] = int16_t(iq4_xs_scale(b, g));
    s.off[2 * g] = s.off[2 * g + 1] = int16_t(128 * s.sc[g]);
  }
  s.d = h2f(b.d);
}

// The IQ3, IQ2_XXS, IQ1_S and ternary types: their values v + 128 (dot_iq3_impl.h,
// dot_iq2_impl.h, dot_iq1_impl.h, dot_tq_impl.h), a group's scale in the units above.
template <typename Block>
  requires(kGridScaleUnits<Block> != 0)
inline void decode_codes(const Block& b, uint8_t* out, Q8x256RowScales& s) {
  for (int g = 0; g < 8; ++g) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * g),
                       _mm256_xor_si256(iq_values32(b, g), _mm256_set1_epi8(int8_t(0x80))));
    s.sc[g] = int16_t(iq_scale(b, g) * float(kGridScaleUnits<Block>));
    s.off[2 * g] = s.off[2 * g + 1] = int16_t(128 * s.sc[g]);
  }
  s.d = h2f(b.d) / float(kGridScaleUnits<Block>);
}

// IQ1_M: codes 8 grid + 9 +- 1 (the value w = 8 grid +- 1 plus 9), each half's 2s + 1.
inline void decode_codes(const BlockIQ1_M& b, uint8_t* out, Q8x256RowScales& s) {
  const uint64_t scales = load_le64(b.scales);
  alignas(16) int8_t sc[16];
  for (int g = 0; g < 8; ++g) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * g), iq1m_codes32(b, g));
    sc[2 * g] = int8_t(iq1m_scale(scales, 2 * g));
    sc[2 * g + 1] = int8_t(iq1m_scale(scales, 2 * g + 1));
  }
  set_group_scales(s, sc, 9);
  s.d = h2f(iq1m_d_bits(scales)) * 0.125f;
}

// The next super-block of a panel's rows into the cache while the columns take this one: the
// rows are row_bytes apart, a stride the hardware prefetchers do not follow far enough (without
// it, two thirds of a Q6_K panel's decode time waited on its first loads).
template <size_t kBytes>
inline void prefetch_panel_rows(const uint8_t* block, uint64_t row_bytes, int n_rows) {
  for (int r = 0; r < n_rows; ++r) {
    for (size_t at = 0; at < kBytes; at += 64) __builtin_prefetch(block + r * row_bytes + at, 0, 3);
    __builtin_prefetch(block + r * row_bytes + kBytes - 1, 0, 3);
  }
}

// The first n_rows of kRows rows' super-block i: codes (rows[r], value e at byte e), group scales
// sc[g][r], offsets as int16 pairs off[p][r] (runs 2p, 2p + 1), d and dmin; rows past n_rows zero.
template <int kRows, typename Block>
void decode_q8x256_rows(const uint8_t* w, uint64_t row_bytes, int n_rows, int64_t i, uint8_t (*rows)[256],
                        int32_t (*sc)[kRows], int32_t (*off)[kRows], float* d, float* dmin) {
  for (int r = 0; r < kRows; ++r) {
    Q8x256RowScales s;  // zero for rows past n_rows
    if (r >= n_rows) {
      std::memset(rows[r], 0, 256);
    } else {
      decode_codes(reinterpret_cast<const Block*>(w + r * row_bytes)[i], rows[r], s);
    }
    for (int g = 0; g < 16; ++g) sc[g][r] = s.sc[g];
    for (int q = 0; q < 8; ++q) {
      off[q][r] = int32_t(uint32_t(uint16_t(s.off[2 * q])) | (uint32_t(uint16_t(s.off[2 * q + 1])) << 16));
    }
    d[r] = s.d;
    dmin[r] = s.dmin;
  }
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
// One super-block's panel: wt[p] = codes 4p .. 4p + 3 of each of the 16 rows in its dword lanes
// (16-value run p / 4); sc[g] the rows' group scales; off[p] their offsets for runs 2p, 2p + 1 as
// int16 pairs; d and dmin per row.
struct Q8x256Panel {
  __m512i wt[64];
  __m512i sc[16];
  __m512i off[8];
  __m512 d, dmin;
};

template <typename Block>
void decode_q8x256_panel(const uint8_t* w, uint64_t row_bytes, int n_rows, int64_t i, Q8x256Panel& p) {
  alignas(64) uint8_t rows[kQ8x256PanelRows][256];
  alignas(64) int32_t sc[16][kQ8x256PanelRows], off[8][kQ8x256PanelRows];
  alignas(64) float d[kQ8x256PanelRows], dmin[kQ8x256PanelRows];
  decode_q8x256_rows<kQ8x256PanelRows, Block>(w, row_bytes, n_rows, i, rows, sc, off, d, dmin);
  for (int v = 0; v < 4; ++v) {  // dwords 16v .. 16v + 15
    __m512i t[16];
    for (int r = 0; r < kQ8x256PanelRows; ++r) t[r] = _mm512_load_si512(rows[r] + 64 * v);
    transpose16x16_epi32(t);
    for (int q = 0; q < 16; ++q) p.wt[16 * v + q] = t[q];
  }
  for (int g = 0; g < 16; ++g) p.sc[g] = _mm512_load_si512(sc[g]);
  for (int q = 0; q < 8; ++q) p.off[q] = _mm512_load_si512(off[q]);
  p.d = _mm512_load_ps(d);
  p.dmin = _mm512_load_ps(dmin);
}

// acc += pairwise products of w's int16 lanes with the pair at q (two int16) in every dword lane,
// as one instruction with an embedded broadcast. Written in assembly because GCC 12 copies the
// accumulator of the _mm512_dpwssd_epi32 intrinsic to a new register and back at every use.
inline void dpwssd_broadcast(__m512i& acc, __m512i w, const int16_t* q) {
  asm("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(q)));
}

// C activation rows against one super-block's panel; y (16 floats per column, rows in lanes) is
// the running sum: zero before the first super-block. Never inlined: inlined into the panel loop,
// GCC 12 kept such accumulators in memory (a loop over c instead of the unrolled one; 40% slower
// in the int16 panels these replaced).
template <int C, bool kMins, int kGroup>
__attribute__((noinline)) void q8x256_panel_cols(const Q8x256Panel& p, const BlockQ8x256* x, int64_t x_stride,
                                                 int64_t i, bool first, __mmask16 rows, float* y, int64_t ldy) {
  const BlockQ8x256* xb[C];
  __m512i idot[C];
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) {
    xb[c] = x + c * x_stride + i;
    idot[c] = _mm512_setzero_si512();
  }
  constexpr int kSteps = kGroup / 4;  // dwords a group
  for (int g = 0; g < 256 / kGroup; ++g) {
    __m512i t[C];
    _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) t[c] = _mm512_setzero_si512();
    _Pragma("GCC unroll 8") for (int q = 0; q < kSteps; ++q) {
      const __m512i wv = p.wt[kSteps * g + q];
      _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) dpbusd_broadcast(t[c], wv, xb[c]->q + kGroup * g + 4 * q);
    }
    const __m512i sc = p.sc[g];
    _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) idot[c] = _mm512_add_epi32(idot[c], _mm512_mullo_epi32(t[c], sc));
  }
  __m512i ioff[C];  // after the products, so that their accumulators have every register
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) ioff[c] = _mm512_setzero_si512();
  for (int q = 0; q < 8; ++q) {
    _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) dpwssd_broadcast(ioff[c], p.off[q], xb[c]->sums + 2 * q);
  }
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) {
    const __m512 xd = _mm512_set1_ps(xb[c]->d);
    const __m512 y0 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rows, y + c * ldy);
    __m512 out;
    if constexpr (kMins) {
      out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(idot[c]), _mm512_mul_ps(p.d, xd), y0);
      out = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ioff[c]), _mm512_mul_ps(p.dmin, xd), out);
    } else {
      out = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(idot[c], ioff[c])), _mm512_mul_ps(p.d, xd), y0);
    }
    _mm512_mask_storeu_ps(y + c * ldy, rows, out);
  }
}

template <typename Block>
void gemm_q8x256_panel_avx512(const void* w, uint64_t row_bytes, int n_rows, const BlockQ8x256* x,
                              int64_t x_stride, int n_cols, int64_t k, float* y, int64_t ldy) {
  static_assert(kQ8x256PanelRows == 16);
  constexpr int kCols = 8;  // 2 * 8 accumulators
  Q8x256Panel p;
  const auto rows = static_cast<__mmask16>((1u << n_rows) - 1);
  for (int64_t i = 0; i < k / 256; ++i) {
    decode_q8x256_panel<Block>(static_cast<const uint8_t*>(w), row_bytes, n_rows, i, p);
    if (i + 1 < k / 256) prefetch_panel_rows<sizeof(Block)>(static_cast<const uint8_t*>(w) + (i + 1) * sizeof(Block), row_bytes, n_rows);
    for (int c0 = 0; c0 < n_cols; c0 += kCols) {
      const BlockQ8x256* xc = x + c0 * x_stride;
      float* yc = y + c0 * ldy;
      with_count<kCols>(n_cols - c0, [&]<int C>() {
        q8x256_panel_cols<C, kQ8x256Mins<Block>, kQ8x256Group<Block>>(p, xc, x_stride, i, i == 0, rows, yc, ldy);
      });
    }
  }
}
#elif defined(__AVX2__) && defined(__FMA__)
// AVX2 without VNNI: the same arithmetic, 8 rows per 256-bit vector (a 16-row panel is two of
// them, one after the other). A step's u8 x s8 pair products are summed to int16 by maddubs and
// kInt16Steps such steps summed in int16 (a lane is at most 2 * 127 * u_max: Q6_K's 63 allow two
// steps, Q5_K's 31 four, Q4_K's 15, Q3_K's 7, Q2_K's 3 and IQ1_M's 18 a whole group's), then one
// madd against the group scale as an int16 pair (s, s) takes them to int32: where exact int16
// products took eight madd and eight adds per 16 values and row vector, Q6_K takes four maddubs,
// two madd and four adds. The grid and ternary types' codes v + 128 would saturate maddubs: their
// panels hold the signed values v, and each step multiplies |v| by the broadcast activations
// carrying v's sign (as gemm_q8_impl.h's IQ4_NL), with no offsets to take out; a lane is at most
// 2 * 127 * |v|_max, so IQ4_XS's 127 allows one step in int16, the IQ3 types' 62 and the IQ2
// types' 43 two, IQ1_S's 9 and the ternary types' 1 a whole group's. The integer sums and float
// steps are the AVX-512 panels': the same bits.
template <typename Block>
constexpr bool kQ8x256Signed = std::is_same_v<Block, BlockIQ2_XS> || std::is_same_v<Block, BlockIQ2_S> ||
                               std::is_same_v<Block, BlockIQ4_XS> || kGridScaleUnits<Block> != 0;
// Steps (4 values a lane each) summed in int16 before one madd, by the largest |code| (above).
template <typename Block>
constexpr int q8x256_int16_steps() {
  if constexpr (std::is_same_v<Block, BlockIQ4_XS>) return 1;  // |v| 127
  if constexpr (std::is_same_v<Block, BlockQ6_K> || std::is_same_v<Block, BlockIQ3_XXS> ||
                std::is_same_v<Block, BlockIQ3_S> || std::is_same_v<Block, BlockIQ2_XXS> ||
                std::is_same_v<Block, BlockIQ2_XS> || std::is_same_v<Block, BlockIQ2_S>) {
    return 2;  // 63, 62, 43
  }
  if constexpr (std::is_same_v<Block, BlockQ5_K>) return 4;  // 31
  return 8;  // Q4_K 15, Q3_K 7, Q2_K 3, IQ1_M 18, IQ1_S 9, the ternary types 1: a whole group
}

// One super-block of 8 rows: wt[p] = codes 4p .. 4p + 3 of each row in its dword lanes; sc[g] the
// rows' group scales as int16 pairs (s, s); off[p] their offsets for runs 2p, 2p + 1; d and dmin.
struct Q8x256Panel8 {
  __m256i wt[64];
  __m256i sc[16];
  __m256i off[8];
  __m256 d, dmin;
};

template <typename Block>
void decode_q8x256_panel8(const uint8_t* w, uint64_t row_bytes, int n_rows, int64_t i, Q8x256Panel8& p) {
  alignas(32) uint8_t rows[8][256];
  alignas(32) int32_t sc[16][8], off[8][8];
  alignas(32) float d[8], dmin[8];
  decode_q8x256_rows<8, Block>(w, row_bytes, n_rows, i, rows, sc, off, d, dmin);
  for (int v = 0; v < 8; ++v) {  // dwords 8v .. 8v + 7
    __m256i t[8];
    for (int r = 0; r < 8; ++r) t[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(rows[r] + 32 * v));
    transpose8x8_epi32(t);
    for (int q = 0; q < 8; ++q) p.wt[8 * v + q] = t[q];
  }
  for (int g = 0; g < 16; ++g) {
    const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(sc[g]));
    p.sc[g] = _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(v, 16));
  }
  for (int q = 0; q < 8; ++q) p.off[q] = _mm256_load_si256(reinterpret_cast<const __m256i*>(off[q]));
  p.d = _mm256_load_ps(d);
  p.dmin = _mm256_load_ps(dmin);
  if constexpr (kQ8x256Signed<Block>) {  // the codes v + 128 back to the values v
    for (auto& v : p.wt) v = _mm256_xor_si256(v, _mm256_set1_epi8(int8_t(0x80)));
  }
}

// C activation rows against one super-block's panel of up to 8 rows; y is the running sum: zero
// before the first super-block. Never inlined, as q8x256_panel_cols.
template <int C, bool kMins, int kGroup, int kInt16Steps, bool kSigned>
__attribute__((noinline)) void q8x256_panel8_cols(const Q8x256Panel8& p, const BlockQ8x256* x, int64_t x_stride,
                                                  int64_t i, bool first, int n_rows, float* y, int64_t ldy) {
  constexpr int kSteps = kGroup / 4;  // dwords a group
  constexpr int kRun = kInt16Steps < kSteps ? kInt16Steps : kSteps;
  const BlockQ8x256* xb[C];
  __m256i idot[C];
  for (int c = 0; c < C; ++c) {
    xb[c] = x + c * x_stride + i;
    idot[c] = _mm256_setzero_si256();
  }
  for (int g = 0; g < 256 / kGroup; ++g) {
    const __m256i sc = p.sc[g];
    for (int q0 = 0; q0 < kSteps; q0 += kRun) {
      __m256i sum16[C];
      for (int c = 0; c < C; ++c) sum16[c] = _mm256_setzero_si256();
      for (int q = q0; q < q0 + kRun; ++q) {
        const __m256i wv = p.wt[kSteps * g + q];
        const __m256i wu = kSigned ? _mm256_abs_epi8(wv) : wv;
        for (int c = 0; c < C; ++c) {
          __m256i xq = broadcast_dword(xb[c]->q + kGroup * g + 4 * q);
          if constexpr (kSigned) xq = _mm256_sign_epi8(xq, wv);
          sum16[c] = _mm256_add_epi16(sum16[c], _mm256_maddubs_epi16(wu, xq));
          asm("" : "+x"(sum16[c]));  // as in q8_panel8_cols: each sum in its register, in this order
        }
      }
      for (int c = 0; c < C; ++c) idot[c] = _mm256_add_epi32(idot[c], _mm256_madd_epi16(sum16[c], sc));
    }
  }
  const __m256i rows = lanes_below(n_rows);
  for (int c = 0; c < C; ++c) {
    __m256i ioff = _mm256_setzero_si256();
    if constexpr (!kSigned) {
      for (int q = 0; q < 8; ++q) ioff = _mm256_add_epi32(ioff, _mm256_madd_epi16(p.off[q], broadcast_dword(xb[c]->sums + 2 * q)));
    }
    const __m256 xd = _mm256_set1_ps(xb[c]->d);
    const __m256 y0 = first ? _mm256_setzero_ps() : _mm256_maskload_ps(y + c * ldy, rows);
    __m256 out;
    if constexpr (kMins) {
      out = _mm256_fmadd_ps(_mm256_cvtepi32_ps(idot[c]), _mm256_mul_ps(p.d, xd), y0);
      out = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ioff), _mm256_mul_ps(p.dmin, xd), out);
    } else {
      out = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(idot[c], ioff)), _mm256_mul_ps(p.d, xd), y0);
    }
    _mm256_maskstore_ps(y + c * ldy, rows, out);
  }
}

template <typename Block>
void gemm_q8x256_panel_avx2(const void* w, uint64_t row_bytes, int n_rows, const BlockQ8x256* x, int64_t x_stride,
                            int n_cols, int64_t k, float* y, int64_t ldy) {
  static_assert(kQ8x256PanelRows == 16);
  constexpr int kCols = 4;  // 2 * 4 sums, the weights, a broadcast and the scales in 16 registers
  Q8x256Panel8 p;
  for (int h = 0; h * 8 < n_rows; ++h) {  // two 8-row halves
    const int rows = n_rows - 8 * h < 8 ? n_rows - 8 * h : 8;
    const uint8_t* wh = static_cast<const uint8_t*>(w) + 8 * h * row_bytes;
    for (int64_t i = 0; i < k / 256; ++i) {
      decode_q8x256_panel8<Block>(wh, row_bytes, rows, i, p);
      if (i + 1 < k / 256) prefetch_panel_rows<sizeof(Block)>(wh + (i + 1) * sizeof(Block), row_bytes, rows);
      for (int c0 = 0; c0 < n_cols; c0 += kCols) {
        with_count<kCols>(n_cols - c0, [&]<int C>() {
          q8x256_panel8_cols<C, kQ8x256Mins<Block>, kQ8x256Group<Block>, q8x256_int16_steps<Block>(), kQ8x256Signed<Block>>(
              p, x + c0 * x_stride, x_stride, i, i == 0, rows, y + c0 * ldy + 8 * h, ldy);
        });
      }
    }
  }
}
#endif

void add_q8x256_panels([[maybe_unused]] DotKernels& k) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  k.gemm_q8x256_panel[uint32_t(GgmlType::Q6_K)] = gemm_q8x256_panel_avx512<BlockQ6_K>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::Q3_K)] = gemm_q8x256_panel_avx512<BlockQ3_K>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::Q2_K)] = gemm_q8x256_panel_avx512<BlockQ2_K>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ2_XS)] = gemm_q8x256_panel_avx512<BlockIQ2_XS>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ2_S)] = gemm_q8x256_panel_avx512<BlockIQ2_S>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ1_M)] = gemm_q8x256_panel_avx512<BlockIQ1_M>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::Q4_K)] = gemm_q8x256_panel_avx512<BlockQ4_K>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::Q5_K)] = gemm_q8x256_panel_avx512<BlockQ5_K>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ4_XS)] = gemm_q8x256_panel_avx512<BlockIQ4_XS>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ3_XXS)] = gemm_q8x256_panel_avx512<BlockIQ3_XXS>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ3_S)] = gemm_q8x256_panel_avx512<BlockIQ3_S>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ2_XXS)] = gemm_q8x256_panel_avx512<BlockIQ2_XXS>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ1_S)] = gemm_q8x256_panel_avx512<BlockIQ1_S>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::TQ1_0)] = gemm_q8x256_panel_avx512<BlockTQ1_0>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::TQ2_0)] = gemm_q8x256_panel_avx512<BlockTQ2_0>;
#elif defined(__AVX2__) && defined(__FMA__)
  k.gemm_q8x256_panel[uint32_t(GgmlType::Q6_K)] = gemm_q8x256_panel_avx2<BlockQ6_K>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::Q3_K)] = gemm_q8x256_panel_avx2<BlockQ3_K>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::Q2_K)] = gemm_q8x256_panel_avx2<BlockQ2_K>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ1_M)] = gemm_q8x256_panel_avx2<BlockIQ1_M>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::Q4_K)] = gemm_q8x256_panel_avx2<BlockQ4_K>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::Q5_K)] = gemm_q8x256_panel_avx2<BlockQ5_K>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ2_XS)] = gemm_q8x256_panel_avx2<BlockIQ2_XS>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ2_S)] = gemm_q8x256_panel_avx2<BlockIQ2_S>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ4_XS)] = gemm_q8x256_panel_avx2<BlockIQ4_XS>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ3_XXS)] = gemm_q8x256_panel_avx2<BlockIQ3_XXS>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ3_S)] = gemm_q8x256_panel_avx2<BlockIQ3_S>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ2_XXS)] = gemm_q8x256_panel_avx2<BlockIQ2_XXS>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::IQ1_S)] = gemm_q8x256_panel_avx2<BlockIQ1_S>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::TQ1_0)] = gemm_q8x256_panel_avx2<BlockTQ1_0>;
  k.gemm_q8x256_panel[uint32_t(GgmlType::TQ2_0)] = gemm_q8x256_panel_avx2<BlockTQ2_0>;
#endif
}

}  // namespace
}  // namespace engine
