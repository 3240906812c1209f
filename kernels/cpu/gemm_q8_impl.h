// The 8-bit activation panels of quant_dot.h (gemm_q8_panel: the 32-value block formats Q4_0,
// Q4_1, Q5_0, Q5_1, IQ4_NL and, with AVX-512 VNNI, Q8_0, its codes v + 128; the 256-value types
// take gemm_q8x256_impl.h's panels), included by quant_dot_impl.h in each instruction-set
// translation unit; same rules: internal linkage, no inline library templates.
//
// A panel is kQ8PanelRows = 16 weight rows against any number of activation rows (Q8 blocks of
// 32, as dot_q8 uses, so a prompt batch and token-by-token decoding see the same activations).
// Per 256 values (8 consecutive blocks, the row's last run possibly fewer) the 16 rows' 4/5-bit
// values are decoded to bytes and transposed so that one vector holds four consecutive values of
// every row (dword lane r = row r); each activation dword is broadcast against it in a u8 x s8
// multiply-add (vpdpbusd). Per block of 32 values (one activation block) and row:
//   acc += d * (d_x * sum(q * q_x))  -  o * (d_x * sum(q_x))
// (its d, and minus its offset, dot_q8x32_impl.h, for o; IQ4_NL's and Q8_0's codes are their
// values + 128 with AVX-512 VNNI, o = 128 d).
// Bound: the multiply-adds (compute); decode and transpose are amortised over the batch.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace engine {
namespace {

#if defined(__AVX2__)
// The first n_rows of kRows weight rows' blocks 8i .. 8i + 7 as bytes (rows[r], value j at byte
// j) and block scales (dsc[g][r] = d, dmn[g][r] = the offset o); rows past n_rows are zero. A
// row's last run may hold only `groups` blocks (the rest are zero, as are their scales).
template <int kRows, typename Block>
void decode_panel_rows(const uint8_t* w, uint64_t row_bytes, int n_rows, int64_t i, int groups, uint8_t (*rows)[256],
                       float (*dsc)[kRows], float (*dmn)[kRows]) {
  for (int r = 0; r < kRows; ++r) {
    if (r >= n_rows) {
      std::memset(rows[r], 0, 256);
      for (int g = 0; g < 8; ++g) dsc[g][r] = dmn[g][r] = 0;
      continue;
    }
    const Block* b = reinterpret_cast<const Block*>(w + r * row_bytes) + 8 * i;
    for (int g = 0; g < groups; ++g) decode_q8x32_group(b[g], rows[r] + 32 * g, &dsc[g][r], &dmn[g][r]);
    if (groups < 8) std::memset(rows[r] + 32 * groups, 0, size_t(32 * (8 - groups)));
    for (int g = groups; g < 8; ++g) dsc[g][r] = dmn[g][r] = 0;
  }
}

// Super-blocks of 256 values in a row of k (the last one partial for the 32-value formats) and
// the 32-value groups of super-block i.
inline int64_t panel_super_blocks(int64_t k) { return (k + 255) / 256; }
inline int panel_groups(int64_t k, int64_t i) { return k - 256 * i >= 256 ? 8 : int((k - 256 * i) / 32); }
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)

// One super-block's panel: wt[p] = values 4p .. 4p + 3 of each of the 16 rows in its dword lanes
// (group g = p / 8); dsc[g] and dmn[g] = d * sc_g and dmin * m_g per row.
struct Q8Panel {
  __m512i wt[64];
  __m512 dsc[8], dmn[8];
};

template <typename Block>
void decode_q8_panel(const uint8_t* w, uint64_t row_bytes, int n_rows, int64_t i, int groups, Q8Panel& p) {
  alignas(64) uint8_t rows[kQ8PanelRows][256];
  alignas(64) float dsc[8][kQ8PanelRows], dmn[8][kQ8PanelRows];
  decode_panel_rows<kQ8PanelRows, Block>(w, row_bytes, n_rows, i, groups, rows, dsc, dmn);
  for (int v = 0; v < 4; ++v) {  // dwords 16v .. 16v + 15
    __m512i t[16];
    for (int r = 0; r < kQ8PanelRows; ++r) t[r] = _mm512_load_si512(rows[r] + 64 * v);
    transpose16x16_epi32(t);
    for (int q = 0; q < 16; ++q) p.wt[16 * v + q] = t[q];
  }
  for (int g = 0; g < 8; ++g) {
    p.dsc[g] = _mm512_load_ps(dsc[g]);
    p.dmn[g] = _mm512_load_ps(dmn[g]);
  }
}

// acc += u8 lanes of w times the four s8 at q, broadcast to every dword lane, summed per dword.
// Assembly for the same reason as dpwssd_broadcast.
inline void dpbusd_broadcast(__m512i& acc, __m512i w, const int8_t* q) {
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(q)));
}

// C activation rows against one super-block's panel (its first `groups` groups); y (16 floats per
// column, rows in lanes) is the running sum: zero before the first super-block.
template <int C>
void q8_panel_cols(const Q8Panel& p, const BlockQ8x32* x, int64_t x_stride, int64_t i, int groups, bool first,
                   __mmask16 rows, float* y, int64_t ldy) {
  const BlockQ8x32* xb[C];
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) xb[c] = x + c * x_stride + 8 * i;
  __m512 acc[C];
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) {
    acc[c] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(rows, y + c * ldy);
  }
  for (int g = 0; g < groups; ++g) {
    __m512i iacc[C];
    _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) iacc[c] = _mm512_setzero_si512();
    _Pragma("GCC unroll 8") for (int q = 0; q < 8; ++q) {
      const __m512i wv = p.wt[8 * g + q];
      _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) dpbusd_broadcast(iacc[c], wv, xb[c][g].q + 4 * q);
    }
    _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) {
      const __m512 dot = _mm512_mul_ps(_mm512_cvtepi32_ps(iacc[c]), _mm512_set1_ps(xb[c][g].d));
      acc[c] = _mm512_fmadd_ps(dot, p.dsc[g], acc[c]);
      acc[c] = _mm512_fnmadd_ps(p.dmn[g], _mm512_set1_ps(xb[c][g].dsum), acc[c]);
    }
  }
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) _mm512_mask_storeu_ps(y + c * ldy, rows, acc[c]);
}

template <typename Block>
void gemm_q8_panel_avx512(const void* w, uint64_t row_bytes, int n_rows, const BlockQ8x32* x,
                          int64_t x_stride, int n_cols, int64_t k, float* y, int64_t ldy) {
  static_assert(kQ8PanelRows == 16);
  constexpr int kCols = 8;  // 2 * 8 accumulators
  Q8Panel p;
  const auto rows = static_cast<__mmask16>((1u << n_rows) - 1);
  for (int64_t i = 0; i < panel_super_blocks(k); ++i) {
    const int groups = panel_groups(k, i);
    decode_q8_panel<Block>(static_cast<const uint8_t*>(w), row_bytes, n_rows, i, groups, p);
    for (int c0 = 0; c0 < n_cols; c0 += kCols) {
      const BlockQ8x32* xc = x + c0 * x_stride;
      float* yc = y + c0 * ldy;
      with_count<kCols>(n_cols - c0,
                        [&]<int C>() { q8_panel_cols<C>(p, xc, x_stride, i, groups, i == 0, rows, yc, ldy); });
    }
  }
}
#elif defined(__AVX2__) && defined(__FMA__)
// AVX2 without VNNI: the same panels, 8 rows per 256-bit vector (a 16-row panel is two of them),
// each u8 x s8 product pair summed to int16 by maddubs, several of those summed in int16 before
// one madd takes them to int32: a maddubs lane is at most 2 * 15 * 127 = 3810 for 4-bit codes, so
// a group's eight steps fit (30480), and 2 * 31 * 127 = 7874 for 5-bit ones, so four do (31496).
// That leaves about one multiply-port instruction per 32 products, where a madd per maddubs took
// two (ggml's repacked AVX2 gemms sum their maddubs the same way).

struct Q8Panel8 {
  __m256i wt[64];
  __m256 dsc[8], dmn[8];
};

// IQ4_NL: its codes v + 128 (up to 241) would saturate maddubs, so its panels hold the signed
// values and each step multiplies |v| by the broadcast activations carrying v's sign (pairs at
// most 2 * 127 * 127 = 32258), taken to int32 at once: no bias, no offset term.
template <typename Block>
constexpr bool kSignedGrid = std::is_same_v<Block, BlockIQ4_NL>;

template <typename Block>
void decode_q8_panel8(const uint8_t* w, uint64_t row_bytes, int n_rows, int64_t i, int groups, Q8Panel8& p) {
  alignas(32) uint8_t rows[8][256];
  alignas(32) float dsc[8][8], dmn[8][8];
  decode_panel_rows<8, Block>(w, row_bytes, n_rows, i, groups, rows, dsc, dmn);
  for (int v = 0; v < 8; ++v) {  // dwords 8v .. 8v + 7
    __m256i t[8];
    for (int r = 0; r < 8; ++r) t[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(rows[r] + 32 * v));
    transpose8x8_epi32(t);
    for (int q = 0; q < 8; ++q) p.wt[8 * v + q] = t[q];
  }
  for (int g = 0; g < 8; ++g) {
    p.dsc[g] = _mm256_load_ps(dsc[g]);
    p.dmn[g] = _mm256_load_ps(dmn[g]);
  }
  if constexpr (kSignedGrid<Block>) {  // the codes v + 128 back to the grid values v
    for (auto& v : p.wt) v = _mm256_xor_si256(v, _mm256_set1_epi8(int8_t(0x80)));
  }
}

inline __m256i broadcast_dword(const void* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return _mm256_set1_epi32(v);
}

template <typename Block, int C>
void q8_panel8_cols(const Q8Panel8& p, const BlockQ8x32* x, int64_t x_stride, int64_t i, int groups, bool first,
                    int n_rows, float* y, int64_t ldy) {
  constexpr int kInt16Steps = requires(const Block& b) { b.qh; } ? 4 : 8;  // 5-bit codes : 4-bit
  const BlockQ8x32* xb[C];
  for (int c = 0; c < C; ++c) xb[c] = x + c * x_stride + 8 * i;
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i rows = lanes_below(n_rows);
  __m256 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = first ? _mm256_setzero_ps() : _mm256_maskload_ps(y + c * ldy, rows);
  for (int g = 0; g < groups; ++g) {
    __m256i iacc[C];
    for (int c = 0; c < C; ++c) iacc[c] = _mm256_setzero_si256();
    if constexpr (kSignedGrid<Block>) {
      for (int q = 0; q < 8; ++q) {
        const __m256i wv = p.wt[8 * g + q], magnitude = _mm256_abs_epi8(wv);
        for (int c = 0; c < C; ++c) {
          const __m256i xs = _mm256_sign_epi8(broadcast_dword(xb[c][g].q + 4 * q), wv);
          iacc[c] = _mm256_add_epi32(iacc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, xs), ones));
        }
      }
    } else {
      for (int q0 = 0; q0 < 8; q0 += kInt16Steps) {
        __m256i sum16[C];
        for (int c = 0; c < C; ++c) sum16[c] = _mm256_setzero_si256();
        for (int q = q0; q < q0 + kInt16Steps; ++q) {
          const __m256i wv = p.wt[8 * g + q];
          for (int c = 0; c < C; ++c) {
            sum16[c] = _mm256_add_epi16(sum16[c], _mm256_maddubs_epi16(wv, broadcast_dword(xb[c][g].q + 4 * q)));
            // Keeps each sum in its register in this order: left free, GCC 12 regroups the additions
            // into a tree over every step's product and spills the products to the stack.
            asm("" : "+x"(sum16[c]));
          }
        }
        for (int c = 0; c < C; ++c) iacc[c] = _mm256_add_epi32(iacc[c], _mm256_madd_epi16(sum16[c], ones));
      }
    }
    for (int c = 0; c < C; ++c) {
      const __m256 dot = _mm256_mul_ps(_mm256_cvtepi32_ps(iacc[c]), _mm256_set1_ps(xb[c][g].d));
      acc[c] = _mm256_fmadd_ps(dot, p.dsc[g], acc[c]);
      if constexpr (!kSignedGrid<Block>) acc[c] = _mm256_fnmadd_ps(p.dmn[g], _mm256_set1_ps(xb[c][g].dsum), acc[c]);
    }
  }
  for (int c = 0; c < C; ++c) _mm256_maskstore_ps(y + c * ldy, rows, acc[c]);
}

template <typename Block>
void gemm_q8_panel_avx2(const void* w, uint64_t row_bytes, int n_rows, const BlockQ8x32* x,
                        int64_t x_stride, int n_cols, int64_t k, float* y, int64_t ldy) {
  static_assert(kQ8PanelRows == 16);
  constexpr int kCols = 4;  // 2 * 4 accumulators
  Q8Panel8 p;
  for (int h = 0; h * 8 < n_rows; ++h) {  // two 8-row halves
    const int rows = n_rows - 8 * h < 8 ? n_rows - 8 * h : 8;
    const uint8_t* wh = static_cast<const uint8_t*>(w) + 8 * h * row_bytes;
    for (int64_t i = 0; i < panel_super_blocks(k); ++i) {
      const int groups = panel_groups(k, i);
      decode_q8_panel8<Block>(wh, row_bytes, rows, i, groups, p);
      for (int c0 = 0; c0 < n_cols; c0 += kCols) {
        const BlockQ8x32* xc = x + c0 * x_stride;
        float* yc = y + c0 * ldy + 8 * h;
        with_count<kCols>(n_cols - c0,
                          [&]<int C>() { q8_panel8_cols<Block, C>(p, xc, x_stride, i, groups, i == 0, rows, yc, ldy); });
      }
    }
  }
}
#endif

void add_q8_panels([[maybe_unused]] DotKernels& k) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  k.gemm_q8_panel[uint32_t(GgmlType::Q4_0)] = gemm_q8_panel_avx512<BlockQ4_0>;
  k.gemm_q8_panel[uint32_t(GgmlType::Q4_1)] = gemm_q8_panel_avx512<BlockQ4_1>;
  k.gemm_q8_panel[uint32_t(GgmlType::Q5_0)] = gemm_q8_panel_avx512<BlockQ5_0>;
  k.gemm_q8_panel[uint32_t(GgmlType::Q5_1)] = gemm_q8_panel_avx512<BlockQ5_1>;
  k.gemm_q8_panel[uint32_t(GgmlType::IQ4_NL)] = gemm_q8_panel_avx512<BlockIQ4_NL>;
  k.gemm_q8_panel[uint32_t(GgmlType::Q8_0)] = gemm_q8_panel_avx512<BlockQ8_0>;
#elif defined(__AVX2__) && defined(__FMA__)
  k.gemm_q8_panel[uint32_t(GgmlType::Q4_0)] = gemm_q8_panel_avx2<BlockQ4_0>;
  k.gemm_q8_panel[uint32_t(GgmlType::Q4_1)] = gemm_q8_panel_avx2<BlockQ4_1>;
  k.gemm_q8_panel[uint32_t(GgmlType::Q5_0)] = gemm_q8_panel_avx2<BlockQ5_0>;
  k.gemm_q8_panel[uint32_t(GgmlType::Q5_1)] = gemm_q8_panel_avx2<BlockQ5_1>;
  k.gemm_q8_panel[uint32_t(GgmlType::IQ4_NL)] = gemm_q8_panel_avx2<BlockIQ4_NL>;
  // Not Q8_0: its signed panels measured level with the float outer products (172-177 against
  // 166-177 GFLOP/s), which keep its prompts exact.
#endif
}

}  // namespace
}  // namespace engine
