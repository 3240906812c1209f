// DotKernels::attend_tile (attention.h's AttentionTile), included by quant_dot_impl.h in each
// instruction-set translation unit.
//
// Layout: the tile's query rows are lanes. The queries are transposed once, qt[d][lane] (times
// the scale), so one key's scores for every row are a single vector, s_j = sum_d qt[d] * k_j[d]
// with k_j[d] broadcast; the output is transposed too, ot[d][lane] += p_j * v_j[d]. Keys and
// values are widened to f32 kAttnKeys at a time (f16 by F16C where the set has it), the softmax
// kept online per lane (running max m, sum l; ot and l rescaled by e^(m_old - m_new) when the max
// grows). Unused lanes have limit 0 and see nothing.
// Bound: FMAs, 2 * head_dim a key and lane (AVX-512: 16 lanes, AVX2: 8, portable: 4), from L1.
#pragma once

namespace engine {
namespace {

#if defined(__AVX512F__)
struct AttnLanes {
  static constexpr int n = 16;
  using V = __m512;
  using I = __m512i;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static I load_int(const int32_t* p) { return _mm512_load_si512(p); }
  // s where position t < limit, -infinity elsewhere.
  static V seen(V s, I limit, int32_t t) {
    const __mmask16 m = _mm512_cmpgt_epi32_mask(limit, _mm512_set1_epi32(t));
    return _mm512_mask_blend_ps(m, _mm512_set1_ps(-__builtin_inff()), s);
  }
  static V round(V x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V pow2(V n) {  // 2^n for integral n in [-126, 127]
    const I bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_castsi512_ps(bits);
  }
  static V zero_below(V value, V x, float floor) {
    const __mmask16 m = _mm512_cmp_ps_mask(x, _mm512_set1_ps(floor), _CMP_NLT_UQ);
    return _mm512_maskz_mov_ps(m, value);
  }
};
#elif defined(__AVX2__) && defined(__FMA__)
struct AttnLanes {
  static constexpr int n = 8;
  using V = __m256;
  using I = __m256i;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
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
};
#else
struct AttnLanes {  // portable: four floats, loops the compiler may vectorize
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
  static V add(V a, V b) { return map([&](int i) { return a.x[i] + b.x[i]; }); }
  static V sub(V a, V b) { return map([&](int i) { return a.x[i] - b.x[i]; }); }
  static V mul(V a, V b) { return map([&](int i) { return a.x[i] * b.x[i]; }); }
  static V max(V a, V b) { return map([&](int i) { return a.x[i] > b.x[i] ? a.x[i] : b.x[i]; }); }
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
};
#endif

// e^x for x <= 88 (larger gives infinity); 0 below -87.3 (where e^x is no longer a normal float),
// -infinity included. n = round(x / ln 2), r = x - n ln 2 in two parts (|r| <= ln 2 / 2), e^r by
// its Taylor series to r^7 (truncation below 6e-9 relative), times 2^n from the exponent bits:
// within 2 ulp of e^x.
inline AttnLanes::V attn_exp(AttnLanes::V x) {
  using L = AttnLanes;
  constexpr float kFloor = -87.3f;
  const L::V xc = L::max(L::set1(kFloor), x);  // x where x is NaN
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

// Rows t0 .. t0 + count - 1 of one head (head_dim values, row_bytes apart) as f32 rows.
inline void attn_widen(const uint8_t* src, uint64_t row_bytes, GgmlType type, int count, int64_t hd, float* dst) {
  for (int j = 0; j < count; ++j, src += row_bytes, dst += hd) {
    if (type == GgmlType::F32) {
      std::memcpy(dst, src, size_t(hd) * sizeof(float));
    } else if (type == GgmlType::F16) {
      const uint16_t* h = reinterpret_cast<const uint16_t*>(src);
      int64_t i = 0;
#if defined(__F16C__)
      for (; i + 8 <= hd; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
      }
#endif
      for (; i < hd; ++i) dst[i] = h2f(h[i]);
    } else {  // Q8_0
      const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(src);
      for (int64_t i = 0; i < hd; i += 32, ++b) {
        const float d = h2f(b->d);
        for (int e = 0; e < 32; ++e) dst[i + e] = d * float(b->qs[e]);
      }
    }
  }
}

// Scores of keys j .. j + kKeys - 1 (f32 rows in kf) for every lane, masked, into s[j'][lane].
template <int kKeys>
inline void attn_scores(const float* qt, const float* kf, int64_t hd, int j, int32_t t, AttnLanes::I limit,
                        float* s) {
  using L = AttnLanes;
  constexpr int R = L::n;
  L::V acc[kKeys];
  _Pragma("GCC unroll 8") for (int i = 0; i < kKeys; ++i) acc[i] = L::zero();
  const float* k = kf + int64_t(j) * hd;
  for (int64_t d = 0; d < hd; ++d) {
    const L::V q = L::load(qt + d * R);
    _Pragma("GCC unroll 8") for (int i = 0; i < kKeys; ++i) acc[i] = L::fmadd(q, L::set1(k[i * hd + d]), acc[i]);
  }
  _Pragma("GCC unroll 8") for (int i = 0; i < kKeys; ++i) {
    L::store(s + (j + i) * R, L::seen(acc[i], limit, t + j + i));
  }
}

// ot[d] = ot[d] * corr + sum_j p_j * v_j[d] for kDims dims from d on.
template <int kDims>
inline void attn_values(float* ot, const float* s, const float* vf, int64_t hd, int count, int64_t d,
                        AttnLanes::V corr) {
  using L = AttnLanes;
  constexpr int R = L::n;
  L::V acc[kDims];
  _Pragma("GCC unroll 16") for (int c = 0; c < kDims; ++c) acc[c] = L::mul(L::load(ot + (d + c) * R), corr);
  for (int j = 0; j < count; ++j) {
    const L::V p = L::load(s + j * R);
    const float* v = vf + j * hd + d;
    _Pragma("GCC unroll 16") for (int c = 0; c < kDims; ++c) acc[c] = L::fmadd(p, L::set1(v[c]), acc[c]);
  }
  _Pragma("GCC unroll 16") for (int c = 0; c < kDims; ++c) L::store(ot + (d + c) * R, acc[c]);
}

void attend_tile(const AttentionTile& tile, float* scratch) {
  using L = AttnLanes;
  constexpr int R = L::n;
  constexpr int kScoreKeys = R == 16 ? 8 : 4;  // accumulators: keys a pass (plus one query vector)
  constexpr int kValueDims = R == 16 ? 16 : 8;
  const int64_t hd = tile.head_dim;
  float* qt = scratch;
  float* ot = qt + hd * R;
  float* s = ot + hd * R;
  float* kf = s + kAttnKeys * R;
  float* vf = kf + kAttnKeys * hd;
  alignas(64) int32_t limit[R] = {};
  for (int r = 0; r < R; ++r) {
    if (r < tile.rows) limit[r] = tile.limit[r];
    for (int64_t d = 0; d < hd; ++d) qt[d * R + r] = r < tile.rows ? tile.q[r][d] * tile.scale : 0.0f;
  }
  for (int64_t i = 0; i < hd * R; ++i) ot[i] = 0.0f;
  const L::I lim = L::load_int(limit);
  const int64_t head_bytes =
      tile.type == GgmlType::F32 ? hd * 4 : tile.type == GgmlType::F16 ? hd * 2 : hd / 32 * int64_t(sizeof(BlockQ8_0));
  L::V m = L::set1(-1e30f), l = L::zero();
  for (int64_t t0 = tile.t0; t0 < tile.t1; t0 += kAttnKeys) {
    const int count = int(tile.t1 - t0 < kAttnKeys ? tile.t1 - t0 : kAttnKeys);
    // The next block's keys and values from the cache (rows far apart: the hardware prefetchers
    // see too little of such a stream) while this one computes.
    const int64_t next = tile.t1 - (t0 + count) < kAttnKeys ? tile.t1 - (t0 + count) : kAttnKeys;
    for (int64_t j = 0; j < next; ++j) {
      const uint64_t at = uint64_t(t0 + count + j) * tile.row_bytes;
      for (int64_t b = 0; b < head_bytes; b += 64) {
        __builtin_prefetch(tile.k + at + b);
        __builtin_prefetch(tile.v + at + b);
      }
    }
    attn_widen(tile.k + t0 * tile.row_bytes, tile.row_bytes, tile.type, count, hd, kf);
    int j = 0;
    for (; j + kScoreKeys <= count; j += kScoreKeys) attn_scores<kScoreKeys>(qt, kf, hd, j, int32_t(t0), lim, s);
    for (; j < count; ++j) attn_scores<1>(qt, kf, hd, j, int32_t(t0), lim, s);
    L::V block_max = L::load(s);
    for (j = 1; j < count; ++j) block_max = L::max(block_max, L::load(s + j * R));
    const L::V m_new = L::max(m, block_max);
    const L::V corr = attn_exp(L::sub(m, m_new));
    m = m_new;
    L::V sum = L::zero();
    for (j = 0; j < count; ++j) {
      const L::V p = attn_exp(L::sub(L::load(s + j * R), m_new));
      L::store(s + j * R, p);
      sum = L::add(sum, p);
    }
    l = L::fmadd(l, corr, sum);
    attn_widen(tile.v + t0 * tile.row_bytes, tile.row_bytes, tile.type, count, hd, vf);
    int64_t d = 0;
    for (; d + kValueDims <= hd; d += kValueDims) attn_values<kValueDims>(ot, s, vf, hd, count, d, corr);
    for (; d < hd; ++d) attn_values<1>(ot, s, vf, hd, count, d, corr);
  }
  alignas(64) float m_out[R], l_out[R];
  L::store(m_out, m);
  L::store(l_out, l);
  for (int r = 0; r < tile.rows; ++r) {
    tile.m[r] = m_out[r];
    tile.l[r] = l_out[r];
    for (int64_t d = 0; d < hd; ++d) tile.o[r * hd + d] = ot[d * R + r];
  }
}

}  // namespace
}  // namespace engine
