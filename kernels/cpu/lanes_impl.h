// Float vectors of each instruction set behind one interface (Lanes: 16 floats with AVX-512, 8
// with AVX2, 4 portable) and an exponential on them, for the kernels written once for every set
// (attention_impl.h, swiglu). Included by quant_dot_impl.h's translation units.
#pragma once

#include <cstdint>
#include <cstring>

namespace engine {
namespace {

#if defined(__AVX512F__)
struct Lanes {
  static constexpr int n = 16;
  using V = __m512;
  using I = __m512i;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static I load_int(const int32_t* p) { return _mm512_load_si512(p); }
  // s where position t < limit, -infinity elsewhere.
  static V seen(V s, I limit, int32_t t) {
    const __mmask16 m = _mm512_cmpgt_epi32_mask(limit, _mm512_set1_epi32(t));
    return _mm512_mask_blend_ps(m, _mm512_set1_ps(-__builtin_inff()), s);
  }
  static V round(V x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V pow2(V n) {  // 2^n for integral n in [-126, 127]; 128 gives infinity
    const I bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_castsi512_ps(bits);
  }
  static V zero_below(V value, V x, float floor) {
    const __mmask16 m = _mm512_cmp_ps_mask(x, _mm512_set1_ps(floor), _CMP_NLT_UQ);
    return _mm512_maskz_mov_ps(m, value);
  }
  // s in lanes 0 .. k - 1, -infinity in the rest (k in [0, n]).
  static V first(V s, int k) {
    return _mm512_mask_blend_ps(__mmask16((1u << k) - 1), _mm512_set1_ps(-__builtin_inff()), s);
  }
  static float reduce_add(V x) { return _mm512_reduce_add_ps(x); }
  static float reduce_max(V x) { return _mm512_reduce_max_ps(x); }
  // Lane i: the sum of a[i]'s lanes (a transpose and add: 45 shuffles and adds for 16 sums).
  static V sums(const V a[16]) {
    V t[8], u[4];
    for (int i = 0; i < 8; ++i) {  // 128-bit lane: a2i 0+2, a2i+1 0+2, a2i 1+3, a2i+1 1+3
      t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    }
    for (int g = 0; g < 4; ++g) {  // 128-bit lane: a4g .. a4g+3, each over that lane's four
      const __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(t[2 * g]), _mm512_castps_pd(t[2 * g + 1]));
      const __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(t[2 * g]), _mm512_castps_pd(t[2 * g + 1]));
      u[g] = _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
    }
    // Fold the four 128-bit lanes: w0 = [u0 L0+L1, u0 L2+L3, u1 L0+L1, u1 L2+L3], w1 likewise.
    const V w0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
    const V w1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w0, w1, 0x88), _mm512_shuffle_f32x4(w0, w1, 0xDD));
  }
};
#elif defined(__AVX2__) && defined(__FMA__)
struct Lanes {
  static constexpr int n = 8;
  using V = __m256;
  using I = __m256i;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static I load_int(const int32_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
  static V seen(V s, I limit, int32_t t) {
    const V m = _mm256_castsi256_ps(_mm256_cmpgt_epi32(limit, _mm256_set1_epi32(t)));
    return _mm256_blendv_ps(_mm256_set1_ps(-__builtin_inff()), s, m);
  }
  static V round(V x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V pow2(V n) {
    const I bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_castsi256_ps(bits);
  }
  static V zero_below(V value, V x, float floor) {
    return _mm256_and_ps(value, _mm256_cmp_ps(x, _mm256_set1_ps(floor), _CMP_NLT_UQ));
  }
  static V first(V s, int k) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const V m = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(k), lane));
    return _mm256_blendv_ps(_mm256_set1_ps(-__builtin_inff()), s, m);
  }
  static float reduce_add(V x) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
  }
  static float reduce_max(V x) {
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_max_ss(r, _mm_movehdup_ps(r)));
  }
  // Lane i: the sum of a[i]'s lanes.
  static V sums(const V a[8]) {
    V t[4];
    for (int i = 0; i < 4; ++i) {  // 128-bit lane: a2i 0+2, a2i+1 0+2, a2i 1+3, a2i+1 1+3
      t[i] = _mm256_add_ps(_mm256_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm256_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    }
    V u[2];
    for (int g = 0; g < 2; ++g) {  // 128-bit lane: a4g .. a4g+3, each over that lane's four
      const __m256d lo = _mm256_unpacklo_pd(_mm256_castps_pd(t[2 * g]), _mm256_castps_pd(t[2 * g + 1]));
      const __m256d hi = _mm256_unpackhi_pd(_mm256_castps_pd(t[2 * g]), _mm256_castps_pd(t[2 * g + 1]));
      u[g] = _mm256_add_ps(_mm256_castpd_ps(lo), _mm256_castpd_ps(hi));
    }
    return _mm256_add_ps(_mm256_permute2f128_ps(u[0], u[1], 0x20), _mm256_permute2f128_ps(u[0], u[1], 0x31));
  }
};
#else
struct Lanes {  // portable: four floats, loops the compiler may vectorize
  static constexpr int n = 4;
  struct V {
    float x[4];
  };
  struct I {
    int32_t x[4];
  };
  template <typename F>
  static V map(F f) {
    V r;
    for (int i = 0; i < 4; ++i) r.x[i] = f(i);
    return r;
  }
  static V zero() { return set1(0.0f); }
  static V set1(float v) { return map([&](int) { return v; }); }
  static V load(const float* p) { return map([&](int i) { return p[i]; }); }
  static void store(float* p, V v) { std::memcpy(p, v.x, sizeof v.x); }
  static V loadu(const float* p) { return load(p); }
  static void storeu(float* p, V v) { store(p, v); }
  static V div(V a, V b) { return map([&](int i) { return a.x[i] / b.x[i]; }); }
  static V add(V a, V b) { return map([&](int i) { return a.x[i] + b.x[i]; }); }
  static V sub(V a, V b) { return map([&](int i) { return a.x[i] - b.x[i]; }); }
  static V mul(V a, V b) { return map([&](int i) { return a.x[i] * b.x[i]; }); }
  // As the x86 instructions: b where either is NaN.
  static V max(V a, V b) { return map([&](int i) { return a.x[i] > b.x[i] ? a.x[i] : b.x[i]; }); }
  static V min(V a, V b) { return map([&](int i) { return a.x[i] < b.x[i] ? a.x[i] : b.x[i]; }); }
  static V fmadd(V a, V b, V c) { return map([&](int i) { return a.x[i] * b.x[i] + c.x[i]; }); }
  static I load_int(const int32_t* p) {
    I r;
    std::memcpy(r.x, p, sizeof r.x);
    return r;
  }
  static V seen(V s, I limit, int32_t t) {
    return map([&](int i) { return t < limit.x[i] ? s.x[i] : -__builtin_inff(); });
  }
  static V round(V x) { return map([&](int i) { return __builtin_nearbyintf(x.x[i]); }); }
  static V pow2(V n) {
    return map([&](int i) {
      const uint32_t bits = uint32_t(int32_t(n.x[i]) + 127) << 23;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    });
  }
  static V zero_below(V value, V x, float floor) {
    return map([&](int i) { return x.x[i] >= floor || x.x[i] != x.x[i] ? value.x[i] : 0.0f; });
  }
  static V first(V s, int k) { return map([&](int i) { return i < k ? s.x[i] : -__builtin_inff(); }); }
  static float reduce_add(V x) { return (x.x[0] + x.x[2]) + (x.x[1] + x.x[3]); }
  static float reduce_max(V x) {
    const float a = x.x[0] > x.x[1] ? x.x[0] : x.x[1], b = x.x[2] > x.x[3] ? x.x[2] : x.x[3];
    return a > b ? a : b;
  }
  static V sums(const V a[4]) { return map([&](int i) { return reduce_add(a[i]); }); }
};
#endif

// e^x: 0 below -87.3 (where e^x is no longer a normal float), -infinity included; infinity from
// 88.38 on (2^128 is no float; e^x itself overflows at 88.72); NaN for NaN. n = round(x / ln 2),
// r = x - n ln 2 in two parts (|r| <= ln 2 / 2), e^r by its Taylor series to r^7 (truncation
// below 6e-9 relative), times 2^n from the exponent bits. Within 2 ulp of e^x in between.
inline Lanes::V lanes_exp(Lanes::V x) {
  using L = Lanes;
  constexpr float kFloor = -87.3f;
  const L::V xc = L::max(L::set1(kFloor), L::min(L::set1(89.0f), x));  // NaN stays NaN
  const L::V n = L::round(L::mul(xc, L::set1(1.44269504088896341f)));
  L::V r = L::fmadd(n, L::set1(-0.693359375f), xc);  // ln 2's leading bits: n * them is exact
  r = L::fmadd(n, L::set1(2.12194440e-4f), r);
  L::V p = L::set1(1.0f / 5040);
  p = L::fmadd(p, r, L::set1(1.0f / 720));
  p = L::fmadd(p, r, L::set1(1.0f / 120));
  p = L::fmadd(p, r, L::set1(1.0f / 24));
  p = L::fmadd(p, r, L::set1(1.0f / 6));
  p = L::fmadd(p, r, L::set1(0.5f));
  p = L::fmadd(p, r, L::set1(1.0f));
  p = L::fmadd(p, r, L::set1(1.0f));
  return L::zero_below(L::mul(p, L::pow2(n)), x, kFloor);
}

// silu(gate) * up = gate / (1 + e^-gate) * up, a vector at a time. Below gate = -88.38 the
// exponential's infinity gives -0, where the true value is below 1e-36 * |up| (std::exp's
// overflow at -88.72 does the same).
void swiglu_lanes(const float* gate, const float* up, float* out, int64_t n) {
  using L = Lanes;
  int64_t i = 0;
  for (; i + L::n <= n; i += L::n) {
    const L::V g = L::loadu(gate + i);
    const L::V e = lanes_exp(L::sub(L::zero(), g));
    L::storeu(out + i, L::mul(L::div(g, L::add(L::set1(1.0f), e)), L::loadu(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + __builtin_expf(-gate[i])) * up[i];
}

}  // namespace
}  // namespace engine
