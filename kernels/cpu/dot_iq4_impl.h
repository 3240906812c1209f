// IQ4_NL and IQ4_XS rows against 8-bit activations in blocks of 32 (BlockQ8x32): a 4-bit code
// stands for a signed grid value kIQ4Values[q] (-127 .. 113), so a 32-value group's product is
//   scale * d_x * (v . q_x)
// with scale the block's d (IQ4_NL) or d * (s_g - 32) (IQ4_XS's group g). The grid values come
// from the codes by a byte shuffle of the 16-entry table. u8 x s8 multiply-adds need one side
// unsigned: with AVX-512 VNNI, vpdpbusd takes v + 128 (1 .. 241) and the product loses 128 sum(q_x)
// again in the float step; AVX2's maddubs, which would saturate there, takes |v| against q_x with
// v's sign (pairs at most 2 * 127 * 127 < 32767). IQ4_XS's vectorised rows take two groups a step
// (IQ4_NL's with AVX-512 VNNI too, as Q4_0's: dot_q8x32_impl.h). Bound: the instructions per
// group (12-16 GB/s a thread on the 2-core AVX-512 machine of docs/benchmarks.md), then memory (18
// or 17 bytes a 32-value group). Prompt batches take the AVX-512 VNNI panels (gemm_q8_impl.h, the
// codes v + 128), and these rows elsewhere. Included by quant_dot_impl.h; internal linkage like everything there.
#pragma once

namespace engine {
namespace {

// Portable rows: the grid values by table, an int32 dot product per group.
inline int32_t iq4_group_dot(const uint8_t* qs, const int8_t* x) {
  int32_t s = 0;
  for (int j = 0; j < 16; ++j) {
    s += int32_t(kIQ4Values[qs[j] & 15]) * x[j] + int32_t(kIQ4Values[qs[j] >> 4]) * x[j + 16];
  }
  return s;
}

float dot_iq4_nl(const void* row, const BlockQ8x32* x, int64_t k) {
  const BlockIQ4_NL* b = static_cast<const BlockIQ4_NL*>(row);
  float s = 0;
  for (int64_t i = 0; i < k / 32; ++i) s += h2f(b[i].d) * x[i].d * float(iq4_group_dot(b[i].qs, x[i].q));
  return s;
}

float dot_iq4_xs(const void* row, const BlockQ8x32* x, int64_t k) {
  const BlockIQ4_XS* b = static_cast<const BlockIQ4_XS*>(row);
  float s = 0;
  for (int64_t i = 0; i < k / 256; ++i) {
    const float d = h2f(b[i].d);
    for (int g = 0; g < 8; ++g) {
      const BlockQ8x32& xg = x[8 * i + g];
      s += d * float(iq4_xs_scale(b[i], g)) * xg.d * float(iq4_group_dot(b[i].qs + 16 * g, xg.q));
    }
  }
  return s;
}

#if defined(__AVX2__) && defined(__FMA__)
// A group's 32 grid values as signed bytes, value j at byte j (iq4_codes32, dot_q8x32_impl.h,
// has them + 128).
inline __m256i iq4_values32(const uint8_t* qs) {
  return _mm256_xor_si256(iq4_codes32(qs), _mm256_set1_epi8(int8_t(0x80)));
}

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
constexpr float kIQ4Bias = 128.0f;  // the lanes hold (v + 128) . q_x
inline __m256i iq4_lanes(__m256i v, __m256i x) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_xor_si256(v, _mm256_set1_epi8(int8_t(0x80))), x);
}
#else
constexpr float kIQ4Bias = 0.0f;  // the lanes hold v . q_x
inline __m256i iq4_lanes(__m256i v, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(v), _mm256_sign_epi8(x, v)), _mm256_set1_epi16(1));
}
#endif

// One group into the accumulators: scale * d_x * (v . q_x), the bias taken out in the float step.
inline void iq4_group(const uint8_t* qs, float scale, const BlockQ8x32& x, __m256& acc, float& offset) {
  const __m256i p = iq4_lanes(iq4_values32(qs), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q)));
  acc = _mm256_fmadd_ps(_mm256_set1_ps(scale * x.d), _mm256_cvtepi32_ps(p), acc);
  if constexpr (kIQ4Bias != 0.0f) offset -= kIQ4Bias * scale * x.dsum;
}

float dot_iq4_nl_vec(const void* row, const BlockQ8x32* x, int64_t k) {
  const BlockIQ4_NL* b = static_cast<const BlockIQ4_NL*>(row);
  // Two chains (a block's step is shorter than an add's latency) in two variables: an array indexed
  // by the block's parity in a rolled loop lives on the stack.
  __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps();
  float even_offset = 0, odd_offset = 0;
  const int64_t nb = k / 32;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    prefetch_ahead(b + i);
    iq4_group(b[i].qs, h2f(b[i].d), x[i], even, even_offset);
    iq4_group(b[i + 1].qs, h2f(b[i + 1].d), x[i + 1], odd, odd_offset);
  }
  if (i < nb) iq4_group(b[i].qs, h2f(b[i].d), x[i], even, even_offset);
  return hsum(_mm256_add_ps(even, odd)) + (even_offset + odd_offset);
}

// A super-block's eight group scales d (s_g - 32) at once: nibble g of scales_l and bits 2g,
// 2g + 1 of scales_h (iq4_xs_scale_bits) in lane g (where eight scalar decodes cost about as
// much as a group's products).
inline void iq4_xs_scales(const BlockIQ4_XS& b, float* out) {
  const __m256i low = _mm256_srlv_epi32(_mm256_set1_epi32(int32_t(load_le32(b.scales_l))),
                                        _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
  const __m256i high = _mm256_srlv_epi32(_mm256_set1_epi32(int32_t(b.scales_h)), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
  const __m256i bits = _mm256_or_si256(_mm256_and_si256(low, _mm256_set1_epi32(15)),
                                       _mm256_slli_epi32(_mm256_and_si256(high, _mm256_set1_epi32(3)), 4));
  _mm256_store_ps(out, _mm256_mul_ps(_mm256_set1_ps(h2f(b.d)), _mm256_cvtepi32_ps(_mm256_sub_epi32(bits, _mm256_set1_epi32(32)))));
}

// IQ4_XS two groups a step, as the 32-value formats' pair rows (dot_q8x32_impl.h): groups 2p and
// 2p + 1 are one 32-byte load of qs (low nibbles values 0..15, high ones 16..31 of each), their
// grid values by byte shuffles (+ 128 with AVX-512 VNNI, for vpdpbusd; signed for AVX2's maddubs
// of |v| against the activations carrying v's sign: iq4_lanes) against the activations' halves,
// each group's sum in four int32 lanes; the pair's scales d (s - 32) d_x as a pair spread by one
// permute; the bias (VNNI) as the offsets' pair.
float dot_iq4_xs_pairs(const void* row, const BlockQ8x32* x, int64_t k) {
  const BlockIQ4_XS* b = static_cast<const BlockIQ4_XS*>(row);
  const __m256i grid = _mm256_xor_si256(
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4Values))),
      _mm256_set1_epi8(kIQ4Bias != 0.0f ? int8_t(0x80) : int8_t(0)));
  const __m256i low4 = _mm256_set1_epi8(15), spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  __m128 offsets = _mm_setzero_ps();
  for (int64_t i = 0; i < k / 256; ++i) {
    prefetch_ahead(b + i);
    prefetch_ahead(reinterpret_cast<const char*>(b + i) + 64);
    alignas(32) float scale[8];
    iq4_xs_scales(b[i], scale);
    const BlockQ8x32* xs = x + 8 * i;
    for (int p = 0; p < 4; ++p) {
      const BlockQ8x32 &x0 = xs[2 * p], &x1 = xs[2 * p + 1];
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * p));
      const __m256i lo = _mm256_shuffle_epi8(grid, _mm256_and_si256(q, low4));
      const __m256i hi = _mm256_shuffle_epi8(grid, _mm256_and_si256(_mm256_srli_epi16(q, 4), low4));
      const __m256i xlo = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(x1.q), reinterpret_cast<const __m128i*>(x0.q));
      const __m256i xhi = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(x1.q + 16),
                                              reinterpret_cast<const __m128i*>(x0.q + 16));
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
      const __m256i prod = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, xlo), hi, xhi);
#else
      const __m256i prod = _mm256_add_epi32(iq4_lanes(lo, xlo), iq4_lanes(hi, xhi));
#endif
      const __m128 s2 = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(scale + 2 * p)));
      const __m128 s2dx = _mm_mul_ps(s2, _mm_setr_ps(x0.d, x1.d, 0.0f, 0.0f));
      acc[p % 2] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(_mm256_castps128_ps256(s2dx), spread),
                                   _mm256_cvtepi32_ps(prod), acc[p % 2]);
      if constexpr (kIQ4Bias != 0.0f) {
        offsets = _mm_fmadd_ps(_mm_mul_ps(s2, _mm_set1_ps(-kIQ4Bias)), _mm_setr_ps(x0.dsum, x1.dsum, 0.0f, 0.0f), offsets);
      }
    }
  }
  return hsum(_mm256_add_ps(acc[0], acc[1])) + _mm_cvtss_f32(_mm_add_ss(offsets, _mm_movehdup_ps(offsets)));
}
#endif

void add_iq4_rows(DotKernels& k) {
  k.dot_q8[uint32_t(GgmlType::IQ4_NL)] = dot_iq4_nl;
  k.dot_q8[uint32_t(GgmlType::IQ4_XS)] = dot_iq4_xs;
#if defined(__AVX2__) && defined(__FMA__)
  k.dot_q8[uint32_t(GgmlType::IQ4_NL)] = dot_iq4_nl_vec;
  k.dot_q8[uint32_t(GgmlType::IQ4_XS)] = dot_iq4_xs_pairs;
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  // Two blocks a step as Q4_0's (dot_q8x32_impl.h), its grid values + 128 in vpdpbusd (AVX2's
  // maddubs would saturate on them).
  k.dot_q8[uint32_t(GgmlType::IQ4_NL)] = dot_q8x32_pairs<BlockIQ4_NL>;
#endif
}

}  // namespace
}  // namespace engine
