// The float tile kernels of quant_dot.h (gemm_f32), included by quant_dot_impl.h in each
// instruction-set translation unit; same rules: internal linkage, no inline library templates.
//
// gemm_f32 (F32, F16, BF16 and Q8_0 weights x f32 activations), up to kF32PanelRows weight rows
// a call: with AVX-512 or AVX2 and batches of kF32OuterMinCols or more, the outer-product panels
// of gemm_f32_outer_impl.h; otherwise weight rows are decoded to float a chunk at a time into a
// stack buffer and multiplied with every activation row of the tile, summed in float lanes per
// (row, column) plus a tail: register tiles of 4 rows x 4 columns with AVX-512 (16 lanes), 4 x 2
// with AVX2 (8 lanes), portable 1 x 4. Bound: compute, for prompts.
#pragma once

#include <cstdint>
#include <cstring>

#include "engine/quantize.h"
#include "gemm_f32_outer_impl.h"

namespace engine {
namespace {

// ---- gemm_f32, portable ----

// Weight row decoders for gemm_f32: the float values k0 .. k0 + len of a row, either in `buf` or,
// for F32, straight from the row.
struct DecodeF32 {
  static const float* run(const uint8_t* row, int64_t k0, int64_t, float*) {
    return reinterpret_cast<const float*>(row) + k0;
  }
};
struct DecodeF16 {
  static const float* run(const uint8_t* row, int64_t k0, int64_t len, float* buf) {
    const auto* h = reinterpret_cast<const uint16_t*>(row) + k0;
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= len; i += 16) {
      _mm512_store_ps(buf + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
    }
#elif defined(__F16C__) && defined(__AVX2__)
    for (; i + 8 <= len; i += 8) {
      _mm256_store_ps(buf + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
    }
#endif
    for (; i < len; ++i) buf[i] = h2f(h[i]);
    return buf;
  }
};
struct DecodeQ8_0 {  // k0 and len are multiples of 32
  static const float* run(const uint8_t* row, int64_t k0, int64_t len, float* buf) {
    const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row) + k0 / 32;
    for (int64_t i = 0; i < len / 32; ++i) {
      const float d = h2f(b[i].d);
#if defined(__AVX512F__)
      const __m512 dv = _mm512_set1_ps(d);
      for (int h = 0; h < 2; ++h) {
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].qs + 16 * h));
        _mm512_store_ps(buf + 32 * i + 16 * h, _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
      }
#elif defined(__AVX2__)
      const __m256 dv = _mm256_set1_ps(d);
      for (int h = 0; h < 4; ++h) {
        const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[i].qs + 8 * h));
        _mm256_store_ps(buf + 32 * i + 8 * h, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
      }
#else
      for (int l = 0; l < 32; ++l) buf[32 * i + l] = d * float(b[i].qs[l]);
#endif
    }
    return buf;
  }
};
// BF16: the 16 bits are a float's high half.
struct DecodeBF16 {
  static const float* run(const uint8_t* row, int64_t k0, int64_t len, float* buf) {
    int64_t i = 0;
#if defined(__AVX512F__)
    const auto* h = reinterpret_cast<const uint16_t*>(row) + k0;
    for (; i + 16 <= len; i += 16) {
      const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i)));
      _mm512_store_ps(buf + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
    }
#elif defined(__AVX2__)
    const auto* h = reinterpret_cast<const uint16_t*>(row) + k0;
    for (; i + 8 <= len; i += 8) {
      const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
      _mm256_store_ps(buf + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
#endif
    if (i < len) dequantize_row(GgmlType::BF16, row + 2 * (k0 + i), buf + i, len - i);
    return buf;
  }
};

constexpr int64_t kF32Chunk = 256;

template <typename Decode>
void gemm_f32_generic(const void* w, uint64_t row_bytes, int n_rows, const float* x, int64_t ldx,
                      int n_cols, int64_t k, float* y, int64_t ldy) {
  alignas(64) float buf[kF32Chunk];
  for (int r = 0; r < n_rows; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(w) + r * row_bytes;
    for (int c0 = 0; c0 < n_cols; c0 += kF32TileCols) {
      const int nc = n_cols - c0 < kF32TileCols ? n_cols - c0 : kF32TileCols;
      float lanes[kF32TileCols][16] = {}, tail[kF32TileCols] = {};
      for (int64_t k0 = 0; k0 < k; k0 += kF32Chunk) {
        const int64_t len = k - k0 < kF32Chunk ? k - k0 : kF32Chunk;
        const float* wf = Decode::run(row, k0, len, buf);
        for (int c = 0; c < nc; ++c) {
          const float* xc = x + (c0 + c) * ldx + k0;
          int64_t l = 0;
          for (; l + 16 <= len; l += 16) {
            for (int j = 0; j < 16; ++j) lanes[c][j] += wf[l + j] * xc[l + j];
          }
          for (; l < len; ++l) tail[c] += wf[l] * xc[l];
        }
      }
      for (int c = 0; c < nc; ++c) {
        float sum = tail[c];
        for (int j = 0; j < 16; ++j) sum += lanes[c][j];
        y[(c0 + c) * ldy + r] = sum;
      }
    }
  }
}

#if defined(__AVX2__) && defined(__FMA__)
// The float vector of the build: 16 lanes with AVX-512, 8 with AVX2. Partial sums keep 16 lanes
// per (row, column) either way (AVX2 leaves the upper 8 at zero).
#if defined(__AVX512F__)
struct F32Vec {
  using V = __m512;
  static constexpr int kLanes = 16;
  static constexpr int kCols = kF32TileCols;  // 4 x 4 accumulators of 32 registers
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
};
#else
struct F32Vec {
  using V = __m256;
  static constexpr int kLanes = 8;
  static constexpr int kCols = 2;  // 4 x 2 accumulators of 16 registers
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
};
#endif

// R decoded rows (chunk values each, 16-multiple prefix only) times C activation rows, adding into
// the partial sums part[c][r].
template <int R, int C>
void f32_tile_vec(const float* const wf[R], const float* x, int64_t ldx, int64_t len16,
                  float (*part)[kF32TileRows][16]) {
  using V = F32Vec::V;
  V acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = F32Vec::load(part[c][r]);
  }
  for (int64_t l = 0; l < len16; l += F32Vec::kLanes) {
    V xv[C];
    for (int c = 0; c < C; ++c) xv[c] = F32Vec::load(x + c * ldx + l);
    for (int r = 0; r < R; ++r) {
      const V wv = F32Vec::load(wf[r] + l);
      for (int c = 0; c < C; ++c) acc[r][c] = F32Vec::fmadd(wv, xv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) F32Vec::store(part[c][r], acc[r][c]);
  }
}

// R weight rows against any number of activation rows: each chunk of the rows is decoded once per
// kBlockCols activation rows, whose partial sums wait in a stack buffer.
template <typename Decode, int R>
void f32_rows_vec(const uint8_t* w, uint64_t row_bytes, const float* x, int64_t ldx, int n_cols, int64_t k,
                  float* y, int64_t ldy) {
  constexpr int kBlockCols = 64;
  constexpr int64_t kChunk = 1024;  // a multiple of every block size
  constexpr int kCols = F32Vec::kCols;
  alignas(64) float buf[R][kChunk];
  alignas(64) float part[kBlockCols][kF32TileRows][16];
  float tail[kBlockCols][R];
  for (int c0 = 0; c0 < n_cols; c0 += kBlockCols) {
    const int nc = n_cols - c0 < kBlockCols ? n_cols - c0 : kBlockCols;
    std::memset(part, 0, sizeof(part));
    std::memset(tail, 0, sizeof(tail));
    const float* xc = x + c0 * ldx;
    for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
      const int64_t len = k - k0 < kChunk ? k - k0 : kChunk, len16 = len & ~int64_t(15);
      const float* wf[R];
      for (int r = 0; r < R; ++r) wf[r] = Decode::run(w + r * row_bytes, k0, len, buf[r]);
      int c = 0;
      for (; c + kCols <= nc; c += kCols) f32_tile_vec<R, kCols>(wf, xc + c * ldx + k0, ldx, len16, part + c);
      for (; c < nc; ++c) f32_tile_vec<R, 1>(wf, xc + c * ldx + k0, ldx, len16, part + c);
      for (int64_t l = len16; l < len; ++l) {
        for (int cc = 0; cc < nc; ++cc) {
          for (int r = 0; r < R; ++r) tail[cc][r] += wf[r][l] * xc[cc * ldx + k0 + l];
        }
      }
    }
    for (int c = 0; c < nc; ++c) {
      for (int r = 0; r < R; ++r) {
        float sum = tail[c][r];
        for (int j = 0; j < 16; ++j) sum += part[c][r][j];
        y[(c0 + c) * ldy + r] = sum;
      }
    }
  }
}

template <typename Decode>
void gemm_f32_vec(const void* w, uint64_t row_bytes, int n_rows, const float* x, int64_t ldx, int n_cols,
                  int64_t k, float* y, int64_t ldy) {
  const auto* wb = static_cast<const uint8_t*>(w);
  if (n_cols >= kF32OuterMinCols) {
    for (int r = 0; r < n_rows; r += kOuterRows) {
      const int rows = n_rows - r < kOuterRows ? n_rows - r : kOuterRows;
      f32_outer_panel<Decode>(wb + r * row_bytes, row_bytes, rows, x, ldx, n_cols, k, y + r, ldy);
    }
    return;
  }
  for (int r = 0; r < n_rows; r += kF32TileRows) {
    with_count<kF32TileRows>(n_rows - r, [&]<int R>() {
      f32_rows_vec<Decode, R>(wb + r * row_bytes, row_bytes, x, ldx, n_cols, k, y + r, ldy);
    });
  }
}
#endif

void add_f32_tiles(DotKernels& k) {
  k.gemm_f32[uint32_t(GgmlType::F32)] = gemm_f32_generic<DecodeF32>;
  k.gemm_f32[uint32_t(GgmlType::F16)] = gemm_f32_generic<DecodeF16>;
  k.gemm_f32[uint32_t(GgmlType::BF16)] = gemm_f32_generic<DecodeBF16>;
  k.gemm_f32[uint32_t(GgmlType::Q8_0)] = gemm_f32_generic<DecodeQ8_0>;
#if defined(__AVX2__) && defined(__FMA__)
  k.gemm_f32[uint32_t(GgmlType::F32)] = gemm_f32_vec<DecodeF32>;
  k.gemm_f32[uint32_t(GgmlType::F16)] = gemm_f32_vec<DecodeF16>;
  k.gemm_f32[uint32_t(GgmlType::BF16)] = gemm_f32_vec<DecodeBF16>;
  k.gemm_f32[uint32_t(GgmlType::Q8_0)] = gemm_f32_vec<DecodeQ8_0>;
#endif
}

}  // namespace
}  // namespace engine
