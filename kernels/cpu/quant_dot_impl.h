// The dot-product kernels of quant_dot.h, included by one translation unit per instruction set
// (quant_dot_generic.cpp, quant_dot_avx2.cpp, quant_dot_avx512.cpp) that is compiled with that
// set's flags. Everything here has internal linkage and calls no inline library templates, so no
// code compiled for a wider instruction set can leak into another unit. Loops are written for
// the auto-vectoriser: fixed trip counts over contiguous bytes.
#pragma once

// GCC 12's AVX-512 headers fill don't-care lanes with _mm512_undefined_*(), which its own
// -W(maybe-)uninitialized then reports at every inlined call (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cstdint>
#include <cstring>

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "../cpu/quant_blocks.h"
#include "quant_dot.h"
#include "with_count.h"
#include "exp_impl.h"

namespace engine {
namespace {

// fp16 -> f32. Without F16C this repeats engine::fp16_to_fp32 (half.h) on purpose: that one is an
// inline function with external linkage, and a copy compiled here with AVX-512 flags could be the
// one the linker keeps for every caller.
inline float h2f(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000 | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    exp = 113;
    while ((mant & 0x400) == 0) {
      mant <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

inline int32_t dot_u8_s8_32(const uint8_t* w, const int8_t* x) {
  int32_t s = 0;
  for (int i = 0; i < 32; ++i) s += int32_t(w[i]) * int32_t(x[i]);
  return s;
}

// Largest |x[i]| of n values, in `lanes` independent maxima so that it vectorises.
template <int n, int lanes>
inline float abs_max(const float* x) {
  float lane_max[lanes] = {};
  for (int i = 0; i < n; i += lanes) {
    for (int l = 0; l < lanes; ++l) {
      const float a = x[i + l] < 0 ? -x[i + l] : x[i + l];
      lane_max[l] = a > lane_max[l] ? a : lane_max[l];
    }
  }
  float amax = 0;
  for (int l = 0; l < lanes; ++l) amax = lane_max[l] > amax ? lane_max[l] : amax;
  return amax;
}

void quantize_q8(const float* x, BlockQ8x32* out, int64_t k) {
  for (int64_t b = 0; b < k / 32; ++b, x += 32) {
    const float d = abs_max<32, 8>(x) / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < 32; ++i) {
      const int8_t q = static_cast<int8_t>(__builtin_rintf(x[i] * id));
      out[b].q[i] = q;
      sum += q;
    }
    out[b].d = d;
    out[b].sum = sum;
    out[b].dsum = d * float(sum);
  }
}

// ---- float activations ----

// Decode streams every weight once: one thread's hardware prefetchers keep too few cache-line
// fetches in flight to reach its share of the memory bandwidth, so the row kernels also ask for
// the bytes kPrefetchAhead past what they read (measured on a 2-core Xeon VM: a Q8_0 row stream
// from 7.0 to 10.1 GB/s per thread; 1 KiB gave 9.2, 4 KiB 7.8). Rows are contiguous and a thread
// takes consecutive rows, so the window runs on into the thread's next row. The F16 rows too
// (15-16 to 21-25 GB/s with two threads) and the BF16 rows (18-20 to 23-26); the F32 rows, a
// loop left to the vectorizer, go without (measured no faster there).
constexpr int kPrefetchAhead = 2048;
inline void prefetch_ahead(const void* p) {
  __builtin_prefetch(static_cast<const char*>(p) + kPrefetchAhead, 0, 3);
}

// The DotQ8x256Cols entry of a column kernel: cols.template operator()<C>() returns the sums of
// C = n_cols (1 .. kRowCols) activation rows as std::array<float, C>; column c goes to
// out[c * out_stride].
template <typename Cols>
inline void store_columns(int n_cols, float* out, int64_t out_stride, Cols&& cols) {
  with_count<kRowCols>(n_cols, [&]<int C>() {
    const auto sums = cols.template operator()<C>();
    for (int c = 0; c < C; ++c) out[c * out_stride] = sums[c];
  });
}

#if defined(__AVX2__)
// All ones in the dword lanes below n (n clamped to 0..8): the mask of a partial row of 8 floats
// for _mm256_maskload_ps and _mm256_maskstore_ps.
inline __m256i lanes_below(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

float dot_f32(const void* row, const float* x, int64_t k) {
  const float* w = static_cast<const float*>(row);
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += w[i + j] * x[i + j];
  }
  float s = 0;
  for (int j = 0; j < 16; ++j) s += acc[j];
  for (; i < k; ++i) s += w[i] * x[i];
  return s;
}

float dot_f16(const void* row, const float* x, int64_t k) {
  const uint16_t* w = static_cast<const uint16_t*>(row);
  int64_t i = 0;
  float s = 0;
#if defined(__AVX512F__)
  {  // 64 values a step, four accumulators (the AVX2 loop below takes the rest)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  for (; i + 64 <= k; i += 64) {
    prefetch_ahead(w + i);  // 128 bytes a step
    prefetch_ahead(w + i + 32);
    const __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i)));
    const __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i + 16)));
    const __m512 w2 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i + 32)));
    const __m512 w3 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i + 48)));
    a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + i + 16), a1);
    a2 = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x + i + 32), a2);
    a3 = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x + i + 48), a3);
  }
  s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  }
#endif
#if defined(__F16C__) && defined(__FMA__)
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; i + 16 <= k; i += 16) {
    prefetch_ahead(w + i);  // 32 bytes a step: every other one asks for a line already asked for
    const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i + 8)));
    a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, _mm256_add_ps(a0, a1));
  for (int j = 0; j < 8; ++j) s += lanes[j];
#endif
  for (; i < k; ++i) s += h2f(w[i]) * x[i];
  return s;
}

float dot_bf16(const void* row, const float* x, int64_t k) {
  const uint16_t* w = static_cast<const uint16_t*>(row);
  float acc[16] = {};
  int64_t i = 0;
#if defined(__AVX512F__)
  {  // as the F16 rows: 64 values a step (bf16 -> f32 is a 16-bit shift), four accumulators
    __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (; i + 64 <= k; i += 64) {
      prefetch_ahead(w + i);
      prefetch_ahead(w + i + 32);
      for (int c = 0; c < 4; ++c) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i + 16 * c));
        const __m512 wf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        a[c] = _mm512_fmadd_ps(wf, _mm512_loadu_ps(x + i + 16 * c), a[c]);
      }
    }
    _mm512_storeu_ps(acc, _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
  }
#elif defined(__AVX2__) && defined(__FMA__)
  {  // 32 values a step, four accumulators
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (; i + 32 <= k; i += 32) {
      prefetch_ahead(w + i);
      for (int c = 0; c < 4; ++c) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i + 8 * c));
        const __m256 wf = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        a[c] = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + i + 8 * c), a[c]);
      }
    }
    _mm256_storeu_ps(acc, _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
  }
#endif
  for (; i + 16 <= k; i += 16) {
    for (int j = 0; j < 16; ++j) {
      const uint32_t bits = uint32_t(w[i + j]) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      acc[j] += f * x[i + j];
    }
  }
  float s = 0;
  for (int j = 0; j < 16; ++j) s += acc[j];
  for (; i < k; ++i) {
    const uint32_t bits = uint32_t(w[i]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    s += f * x[i];
  }
  return s;
}

float dot_q8_0_f32(const void* row, const float* x, int64_t k) {
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(row);
  float s = 0;
  float lanes[8] = {};
  for (int64_t i = 0; i < k / 32; ++i, x += 32) {
    // Eight independent lanes: float sums are not reassociated, so one accumulator would not
    // vectorise.
    float acc[8] = {};
    for (int j = 0; j < 32; j += 8) {
      for (int l = 0; l < 8; ++l) acc[l] += float(b[i].qs[j + l]) * x[j + l];
    }
    const float d = h2f(b[i].d);
    for (int l = 0; l < 8; ++l) lanes[l] += d * acc[l];
  }
  for (int l = 0; l < 8; ++l) s += lanes[l];
  return s;
}

// ---- 8-bit activations ----

// Q4_0/Q4_1 nibbles: element j in the low nibble of byte j, element j + 16 in its high nibble.
inline void unpack_q4(const uint8_t* qs, uint8_t* w) {
  for (int j = 0; j < 16; ++j) {
    w[j] = qs[j] & 15;
    w[j + 16] = qs[j] >> 4;
  }
}

float dot_q4_0(const void* row, const BlockQ8x32* x, int64_t k) {
  const BlockQ4_0* b = static_cast<const BlockQ4_0*>(row);
  float s = 0;
  uint8_t w[32];
  for (int64_t i = 0; i < k / 32; ++i) {
    unpack_q4(b[i].qs, w);
    // (q - 8) . x = q . x - 8 sum(x)
    s += h2f(b[i].d) * x[i].d * float(dot_u8_s8_32(w, x[i].q) - 8 * x[i].sum);
  }
  return s;
}

float dot_q4_1(const void* row, const BlockQ8x32* x, int64_t k) {
  const BlockQ4_1* b = static_cast<const BlockQ4_1*>(row);
  float s = 0;
  uint8_t w[32];
  for (int64_t i = 0; i < k / 32; ++i) {
    unpack_q4(b[i].qs, w);
    s += x[i].d * (h2f(b[i].d) * float(dot_u8_s8_32(w, x[i].q)) + h2f(b[i].m) * float(x[i].sum));
  }
  return s;
}

template <typename Block>
void unpack_q5(const Block& b, uint8_t* w) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    w[j] = uint8_t((b.qs[j] & 15) | (((qh >> j) & 1) << 4));
    w[j + 16] = uint8_t((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
  }
}

float dot_q5_0(const void* row, const BlockQ8x32* x, int64_t k) {
  const BlockQ5_0* b = static_cast<const BlockQ5_0*>(row);
  float s = 0;
  uint8_t w[32];
  for (int64_t i = 0; i < k / 32; ++i) {
    unpack_q5(b[i], w);
    s += h2f(b[i].d) * x[i].d * float(dot_u8_s8_32(w, x[i].q) - 16 * x[i].sum);
  }
  return s;
}

float dot_q5_1(const void* row, const BlockQ8x32* x, int64_t k) {
  const BlockQ5_1* b = static_cast<const BlockQ5_1*>(row);
  float s = 0;
  uint8_t w[32];
  for (int64_t i = 0; i < k / 32; ++i) {
    unpack_q5(b[i], w);
    s += x[i].d * (h2f(b[i].d) * float(dot_u8_s8_32(w, x[i].q)) + h2f(b[i].m) * float(x[i].sum));
  }
  return s;
}

// Q4_K/Q5_K's twelve scale bytes to eight 6-bit scales and mins, four bytes at a time (the layout
// is described at unpack_scale_min_k4).
inline void unpack_k4_scales(const uint8_t* s, uint8_t sc[8], uint8_t m[8]) {
  uint32_t u0, u1, u2;
  std::memcpy(&u0, s, 4);
  std::memcpy(&u1, s + 4, 4);
  std::memcpy(&u2, s + 8, 4);
  const uint32_t sc_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
  const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
  const uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
  std::memcpy(sc, &sc_lo, 4);
  std::memcpy(sc + 4, &sc_hi, 4);
  std::memcpy(m, &m_lo, 4);
  std::memcpy(m + 4, &m_hi, 4);
}

// Q4_K and Q5_K: 8 groups of 32 with 6-bit scale and min; x arrives as 8 Q8 blocks per 256.
template <bool kFiveBit, typename Block>
float dot_q45_k(const void* row, const BlockQ8x32* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  float s = 0;
  uint8_t w[32];
  for (int64_t i = 0; i < k / kQK_K; ++i, x += 8) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    float scaled = 0, offset = 0;
    for (int g = 0; g < 8; ++g) {
      uint8_t sc, m;
      unpack_scale_min_k4(b[i].scales, g, &sc, &m);
      const uint8_t* qs = b[i].qs + (g / 2) * 32;
      const int shift = 4 * (g % 2);
      for (int l = 0; l < 32; ++l) w[l] = (qs[l] >> shift) & 15;
      if constexpr (kFiveBit) {
        for (int l = 0; l < 32; ++l) w[l] |= uint8_t(((b[i].qh[l] >> g) & 1) << 4);
      }
      scaled += x[g].d * float(sc) * float(dot_u8_s8_32(w, x[g].q));
      offset += x[g].d * float(m) * float(x[g].sum);
    }
    s += d * scaled - dmin * offset;
  }
  return s;
}

#if defined(__AVX2__) && defined(__FMA__)
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#if defined(__AVX512F__)
inline float hsum512(__m512 v) {
  return hsum(_mm512_castps512_ps256(_mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, 0xFFFF, v, v, 0xEE))));
}
#endif

// Q8_0 weights with float activations: int8 -> int32 -> float, 32 values per block, two blocks
// per step into independent accumulators (one would chain every multiply-add of the row).
#if defined(__AVX512F__)
// A block's 32 products with x, before its d.
inline __m512 q8_0_block(const BlockQ8_0& b, const float* x) {
  const __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs))));
  const __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16))));
  return _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16), _mm512_mul_ps(w0, _mm512_loadu_ps(x)));
}
// The accumulators are two variables (even and odd blocks): an array indexed by the block's
// parity in a rolled loop lives on the stack, a store and a load on each chain.
float dot_q8_0_f32_vec(const void* row, const float* x, int64_t k) {
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(row);
  const int64_t nb = k / 32;
  __m512 even = _mm512_setzero_ps(), odd = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2, x += 64) {
    prefetch_ahead(b + i);  // 68 bytes per two blocks: two lines cover them
    prefetch_ahead(reinterpret_cast<const char*>(b + i) + 64);
    even = _mm512_fmadd_ps(_mm512_set1_ps(h2f(b[i].d)), q8_0_block(b[i], x), even);
    odd = _mm512_fmadd_ps(_mm512_set1_ps(h2f(b[i + 1].d)), q8_0_block(b[i + 1], x + 32), odd);
  }
  if (i < nb) even = _mm512_fmadd_ps(_mm512_set1_ps(h2f(b[i].d)), q8_0_block(b[i], x), even);
  return hsum512(_mm512_add_ps(even, odd));
}
#else
inline __m256 q8_0_products(const BlockQ8_0& b, const float* x, int half) {
  const __m128i q16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * half));
  const __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q16)), _mm256_loadu_ps(x + 16 * half));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q16, 8))), _mm256_loadu_ps(x + 16 * half + 8), p);
}

float dot_q8_0_f32_vec(const void* row, const float* x, int64_t k) {
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(row);
  const int64_t nb = k / 32;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  const auto block = [&](int64_t j, const float* xj, __m256& lo, __m256& hi) {
    const __m256 d = _mm256_set1_ps(h2f(b[j].d));
    lo = _mm256_fmadd_ps(d, q8_0_products(b[j], xj, 0), lo);
    hi = _mm256_fmadd_ps(d, q8_0_products(b[j], xj, 1), hi);
  };
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2, x += 64) {  // even blocks into acc 0, 1; odd ones into acc 2, 3
    prefetch_ahead(b + i);
    prefetch_ahead(reinterpret_cast<const char*>(b + i) + 64);
    block(i, x, acc[0], acc[1]);
    block(i + 1, x + 32, acc[2], acc[3]);
  }
  if (i < nb) block(i, x, acc[0], acc[1]);
  return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}
#endif
#endif

void add_f32_tiles(DotKernels& k);  // gemm_f32_impl.h
void add_q8_panels(DotKernels& k);  // gemm_q8_impl.h
void add_q8x256_panels(DotKernels& k);  // gemm_q8x256_impl.h
void add_q8x256_rows(DotKernels& k);  // dot_q8x256_impl.h
void add_q8x32_rows(DotKernels& k);  // dot_q8x32_impl.h
void add_q23k_rows(DotKernels& k);  // dot_q23k_impl.h
void add_iq4_rows(DotKernels& k);  // dot_iq4_impl.h
void add_iq3_rows(DotKernels& k);  // dot_iq3_impl.h
void add_iq2_rows(DotKernels& k);  // dot_iq2_impl.h
void add_tq_rows(DotKernels& k);  // dot_tq_impl.h
void add_grid_q8x256_rows(DotKernels& k);  // dot_grid_q8x256_impl.h

}  // namespace
}  // namespace engine

#include "attention_impl.h"

namespace engine {
namespace {

DotKernels make_kernels(const char* isa) {
  DotKernels k{};
  k.isa = isa;
  k.quantize_q8 = quantize_q8;
  k.exp_shifted = exp_shifted;
  k.attend_tile = attend_tile;
  k.attn_lanes = Lanes::n;
  k.swiglu = swiglu_lanes;
  k.dot_f32[uint32_t(GgmlType::F32)] = dot_f32;
  k.dot_f32[uint32_t(GgmlType::F16)] = dot_f16;
  k.dot_f32[uint32_t(GgmlType::BF16)] = dot_bf16;
  k.dot_f32[uint32_t(GgmlType::Q8_0)] = dot_q8_0_f32;
  k.dot_q8[uint32_t(GgmlType::Q4_0)] = dot_q4_0;
  k.dot_q8[uint32_t(GgmlType::Q4_1)] = dot_q4_1;
  k.dot_q8[uint32_t(GgmlType::Q5_0)] = dot_q5_0;
  k.dot_q8[uint32_t(GgmlType::Q5_1)] = dot_q5_1;
  k.dot_q8[uint32_t(GgmlType::Q4_K)] = dot_q45_k<false, BlockQ4_K>;
  k.dot_q8[uint32_t(GgmlType::Q5_K)] = dot_q45_k<true, BlockQ5_K>;
#if defined(__AVX2__) && defined(__FMA__)
  k.dot_f32[uint32_t(GgmlType::Q8_0)] = dot_q8_0_f32_vec;
#endif
  add_f32_tiles(k);
  add_q8_panels(k);
  add_q8x256_panels(k);
  add_q8x256_rows(k);
  add_q8x32_rows(k);
  add_q23k_rows(k);
  add_iq4_rows(k);
  add_iq3_rows(k);
  add_iq2_rows(k);
  add_tq_rows(k);
  add_grid_q8x256_rows(k);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  constexpr bool avx512_panels = true;
#else
  constexpr bool avx512_panels = false;
#endif
  for (uint32_t t = 0; t < kTypeIds; ++t) k.panel_min_batch[t] = panel_min_batch(GgmlType(t), avx512_panels);
  return k;
}

}  // namespace
}  // namespace engine

#include "dot_q8x256_impl.h"
#include "dot_q8x32_impl.h"
#include "dot_iq4_impl.h"
#include "dot_iq3_impl.h"
#include "dot_iq2_impl.h"
#include "dot_iq1_impl.h"
#include "dot_tq_impl.h"
#include "dot_grid_q8x256_impl.h"
#include "dot_q23k_impl.h"
#include "gemm_f32_impl.h"
#include "transpose_impl.h"
#include "gemm_q8_impl.h"
#include "gemm_q8x256_impl.h"
