// The float panels of gemm_f32 for prompt batches with AVX-512 or AVX2 (included by
// gemm_f32_impl.h; same rules: internal linkage, no library templates).
//
// Outer products: a panel of up to 32 weight rows is decoded kOuterChunk values of K at a time
// and transposed to panel[k][32] (16 x 16 or 8 x 8 blocks in registers), then every few
// activation rows (columns) meet it in a register tile: AVX-512 32 rows x 12 columns, per value
// of K two loads of weights, twelve broadcasts of activations, 24 FMAs; AVX2 16 rows x 6 columns
// (12 accumulators of 16 registers), each half of the panel in turn. The panel (32 KiB, or 16 KiB
// with AVX2 for CPUs whose L1 is 32 KiB) stays in L1 across the columns; the activations are read
// once per panel, half and chunk, a broadcast per 2 FMAs, so they may come from L2 or L3 without
// starving the FMAs, where the dot-product tiles read a vector of them per 4 FMAs. Each chunk's
// sums start at zero and are added to y (y = the first chunk's), so K is summed in runs of
// kOuterChunk as the tiles' lanes sum runs of K / 16.
// Bound: compute (the FMAs), from batches of kF32OuterMinCols on; the decode and transpose of a
// chunk (some 100 instructions per 256 values) are spread over the batch's columns.
#pragma once

#include <cstdint>
#include <cstring>

namespace engine {
namespace {

// Values k0 .. k0 + len of kBlock weight rows, decoded to buf + i * stride for the first `rows`
// of them, zero past len (up to len rounded up to kBlock) and in the rows past `rows`: the
// rows a packer transposes kBlock x kBlock at a time. Returns len rounded up to kBlock.
template <typename Decode, int kBlock>
int64_t decode_block_rows(const uint8_t* w, uint64_t row_bytes, int rows, int64_t k0, int64_t len, float* buf,
                          int64_t stride) {
  const int64_t padded = (len + kBlock - 1) / kBlock * kBlock;
  for (int i = 0; i < kBlock; ++i) {
    float* out = buf + i * stride;
    if (i < rows) {
      const float* v = Decode::run(w + i * row_bytes, k0, len, out);
      if (v != out) std::memcpy(out, v, sizeof(float) * size_t(len));
      std::memset(out + len, 0, sizeof(float) * size_t(padded - len));
    } else {
      std::memset(out, 0, sizeof(float) * size_t(padded));
    }
  }
  return padded;
}

#if defined(__AVX512F__)
constexpr int kOuterRows = 32, kOuterCols = 12;
constexpr int64_t kOuterChunk = 256;

// r[i] = row i of a 16 x 16 block in, column i of it out: unpack pairs, shuffle quads within
// 128-bit lanes, then the lanes among four registers (the 4 x 4 transpose of lanes).
inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);      // per lane: a0 b0 a1 b1
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);  // a2 b2 a3 b3
  }
  __m512 u[16];  // u[4g + j], lane l: rows 4g .. 4g + 3 of column 4l + j
  for (int g = 0; g < 4; ++g) {
    u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x44), v1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x44);
    const __m512 v3 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xEE);
    r[j] = _mm512_shuffle_f32x4(v0, v2, 0x88);       // lane 0 of each: column j
    r[4 + j] = _mm512_shuffle_f32x4(v0, v2, 0xDD);   // lane 1: column 4 + j
    r[8 + j] = _mm512_shuffle_f32x4(v1, v3, 0x88);   // lane 2: column 8 + j
    r[12 + j] = _mm512_shuffle_f32x4(v1, v3, 0xDD);  // lane 3: column 12 + j
  }
}

// Values k0 .. k0 + len of `rows` (<= 16) weight rows into panel[k][half + i] (i < 16; rows past
// `rows` are zeros), for k < len rounded up to 16.
template <typename Decode>
void pack_outer_half(const uint8_t* w, uint64_t row_bytes, int rows, int64_t k0, int64_t len, float* panel,
                     int half) {
  alignas(64) float buf[16][kOuterChunk];
  const int64_t len16 = decode_block_rows<Decode, 16>(w, row_bytes, rows, k0, len, buf[0], kOuterChunk);
  for (int64_t k = 0; k < len16; k += 16) {
    __m512 r[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_load_ps(buf[i] + k);
    transpose16x16(r);
    for (int j = 0; j < 16; ++j) _mm512_store_ps(panel + (k + j) * kOuterRows + half, r[j]);
  }
}

// y[c * ldy + r] (+)= sum_{k < len} panel[k][r] x[c * ldx + k] for c < C, r < 32 (rows masked
// by m0 and m1): first stores, later chunks add.
template <int C>
void outer_tile(const float* panel, const float* x, int64_t ldx, int64_t len, float* y, int64_t ldy, __mmask16 m0,
                __mmask16 m1, bool first) {
  __m512 a0[C], a1[C];
  for (int c = 0; c < C; ++c) a0[c] = a1[c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < len; ++k) {
    const __m512 w0 = _mm512_load_ps(panel + kOuterRows * k), w1 = _mm512_load_ps(panel + kOuterRows * k + 16);
    for (int c = 0; c < C; ++c) {
      const __m512 xb = _mm512_set1_ps(x[c * ldx + k]);
      a0[c] = _mm512_fmadd_ps(w0, xb, a0[c]);
      a1[c] = _mm512_fmadd_ps(w1, xb, a1[c]);
    }
  }
  for (int c = 0; c < C; ++c) {
    float* yc = y + c * ldy;
    if (!first) {
      a0[c] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, yc), a0[c]);
      a1[c] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, yc + 16), a1[c]);
    }
    _mm512_mask_storeu_ps(yc, m0, a0[c]);
    _mm512_mask_storeu_ps(yc + 16, m1, a1[c]);
  }
}

// Up to kOuterRows weight rows against n_cols activation rows (see the top of the file).
template <typename Decode>
void f32_outer_panel(const uint8_t* w, uint64_t row_bytes, int n_rows, const float* x, int64_t ldx, int n_cols,
                     int64_t k, float* y, int64_t ldy) {
  alignas(64) float panel[kOuterChunk * kOuterRows];
  const int low = n_rows < 16 ? n_rows : 16, high = n_rows - low;
  const auto mask = [](int rows) { return __mmask16(rows >= 16 ? 0xFFFF : (1u << rows) - 1); };
  const __mmask16 m0 = mask(low), m1 = mask(high);
  for (int64_t k0 = 0; k0 < k; k0 += kOuterChunk) {
    const int64_t len = k - k0 < kOuterChunk ? k - k0 : kOuterChunk;
    pack_outer_half<Decode>(w, row_bytes, low, k0, len, panel, 0);
    pack_outer_half<Decode>(high > 0 ? w + 16 * row_bytes : w, row_bytes, high, k0, len, panel, 16);
    const float* xk = x + k0;
    int c = 0;
    for (; c + kOuterCols <= n_cols; c += kOuterCols) {
      outer_tile<kOuterCols>(panel, xk + c * ldx, ldx, len, y + c * ldy, ldy, m0, m1, k0 == 0);
    }
    if (c < n_cols) {
      with_count<kOuterCols>(n_cols - c, [&]<int C>() {
        outer_tile<C>(panel, xk + c * ldx, ldx, len, y + c * ldy, ldy, m0, m1, k0 == 0);
      });
    }
  }
}
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kOuterRows = 32, kOuterCols = 6;
constexpr int64_t kOuterChunk = 128;

// r[i] = row i of an 8 x 8 block in, column i of it out.
inline void transpose8x8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);      // per lane: a0 b0 a1 b1
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);  // a2 b2 a3 b3
  }
  for (int g = 0; g < 2; ++g) {  // u[4g + j]: rows 4g .. 4g + 3 of column j (low lane), j + 4 (high)
    u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

// Values k0 .. k0 + len of `rows` (<= 8) weight rows into panel[k][at + i] (i < 8; rows past
// `rows` are zeros), for k < len rounded up to 8.
template <typename Decode>
void pack_outer_eighth(const uint8_t* w, uint64_t row_bytes, int rows, int64_t k0, int64_t len, float* panel,
                       int at) {
  alignas(32) float buf[8][kOuterChunk];
  const int64_t len8 = decode_block_rows<Decode, 8>(w, row_bytes, rows, k0, len, buf[0], kOuterChunk);
  for (int64_t k = 0; k < len8; k += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_load_ps(buf[i] + k);
    transpose8x8(r);
    for (int j = 0; j < 8; ++j) _mm256_store_ps(panel + (k + j) * kOuterRows + at, r[j]);
  }
}

// y[c * ldy + r] (+)= sum_{k < len} panel[k][r] x[c * ldx + k] for c < C and the 16 rows of
// `half` (panel columns 16 half ..; rows masked by m0 and m1): first stores, later chunks add.
// The loops over c are unrolled by pragma: left to itself GCC 12 keeps a stack copy of the
// accumulators and stores all twelve at every step (twice as slow).
template <int C>
void outer_tile(const float* panel, int half, const float* x, int64_t ldx, int64_t len, float* y, int64_t ldy,
                __m256i m0, __m256i m1, bool first) {
  __m256 a0[C], a1[C];
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) {
    a0[c] = _mm256_setzero_ps();
    a1[c] = _mm256_setzero_ps();
  }
  const float* p = panel + 16 * half;
  for (int64_t k = 0; k < len; ++k) {
    const __m256 w0 = _mm256_load_ps(p + kOuterRows * k), w1 = _mm256_load_ps(p + kOuterRows * k + 8);
    _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) {
      const __m256 xb = _mm256_broadcast_ss(x + c * ldx + k);
      a0[c] = _mm256_fmadd_ps(w0, xb, a0[c]);
      a1[c] = _mm256_fmadd_ps(w1, xb, a1[c]);
    }
  }
  _Pragma("GCC unroll 8") for (int c = 0; c < C; ++c) {
    float* yc = y + c * ldy + 16 * half;
    if (!first) {
      a0[c] = _mm256_add_ps(_mm256_maskload_ps(yc, m0), a0[c]);
      a1[c] = _mm256_add_ps(_mm256_maskload_ps(yc + 8, m1), a1[c]);
    }
    _mm256_maskstore_ps(yc, m0, a0[c]);
    _mm256_maskstore_ps(yc + 8, m1, a1[c]);
  }
}

// Up to kOuterRows weight rows against n_cols activation rows (see the top of the file); a
// panel of 16 rows or fewer packs and multiplies only its first half.
template <typename Decode>
void f32_outer_panel(const uint8_t* w, uint64_t row_bytes, int n_rows, const float* x, int64_t ldx, int n_cols,
                     int64_t k, float* y, int64_t ldy) {
  alignas(32) float panel[kOuterChunk * kOuterRows];
  const int halves = n_rows > 16 ? 2 : 1;
  for (int64_t k0 = 0; k0 < k; k0 += kOuterChunk) {
    const int64_t len = k - k0 < kOuterChunk ? k - k0 : kOuterChunk;
    for (int e = 0; e < 2 * halves; ++e) {
      const int rows = n_rows - 8 * e;
      pack_outer_eighth<Decode>(rows > 0 ? w + 8 * e * row_bytes : w, row_bytes, rows < 0 ? 0 : rows, k0, len,
                                panel, 8 * e);
    }
    const float* xk = x + k0;
    for (int h = 0; h < halves; ++h) {
      const __m256i m0 = lanes_below(n_rows - 16 * h), m1 = lanes_below(n_rows - 16 * h - 8);
      int c = 0;
      for (; c + kOuterCols <= n_cols; c += kOuterCols) {
        outer_tile<kOuterCols>(panel, h, xk + c * ldx, ldx, len, y + c * ldy, ldy, m0, m1, k0 == 0);
      }
      if (c < n_cols) {
        with_count<kOuterCols>(n_cols - c, [&]<int C>() {
          outer_tile<C>(panel, h, xk + c * ldx, ldx, len, y + c * ldy, ldy, m0, m1, k0 == 0);
        });
      }
    }
  }
}
#endif

}  // namespace
}  // namespace engine
