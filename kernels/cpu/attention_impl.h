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

#include "engine/quantize.h"
#include "lanes_impl.h"

namespace engine {
namespace {

// Rows t0 .. t0 + count - 1 of one head (head_dim values, row_bytes apart) as f32 rows: f16 by
// F16C where the set has it, f32 and q8_0 by their decoders.
inline void attn_widen(const uint8_t* src, uint64_t row_bytes, GgmlType type, int count, int64_t hd, float* dst) {
  for (int j = 0; j < count; ++j, src += row_bytes, dst += hd) {
    if (type != GgmlType::F16) {
      dequantize_row(type, src, dst, hd);
      continue;
    }
    const uint16_t* h = reinterpret_cast<const uint16_t*>(src);
    int64_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= hd; i += 8) {
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
    }
#endif
    for (; i < hd; ++i) dst[i] = h2f(h[i]);
  }
}

// Scores of keys j .. j + kKeys - 1 (f32 rows in kf) for every lane, masked, into s[j'][lane].
template <int kKeys>
inline void attn_scores(const float* qt, const float* kf, int64_t hd, int j, int32_t t, Lanes::I limit,
                        float* s) {
  using L = Lanes;
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
                        Lanes::V corr) {
  using L = Lanes;
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
  using L = Lanes;
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
  const uint64_t head_bytes = type_bytes(tile.type, uint64_t(hd));
  L::V m = L::set1(-1e30f), l = L::zero();
  for (int64_t t0 = tile.t0; t0 < tile.t1; t0 += kAttnKeys) {
    const int count = int(tile.t1 - t0 < kAttnKeys ? tile.t1 - t0 : kAttnKeys);
    // The next block's keys and values from the cache (rows far apart: the hardware prefetchers
    // see too little of such a stream) while this one computes.
    const int64_t next = tile.t1 - (t0 + count) < kAttnKeys ? tile.t1 - (t0 + count) : kAttnKeys;
    for (int64_t j = 0; j < next; ++j) {
      const uint64_t at = uint64_t(t0 + count + j) * tile.row_bytes;
      for (uint64_t b = 0; b < head_bytes; b += 64) {
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
    const L::V corr = lanes_exp(L::sub(m, m_new));
    m = m_new;
    L::V sum = L::zero();
    for (j = 0; j < count; ++j) {
      const L::V p = lanes_exp(L::sub(L::load(s + j * R), m_new));
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
