// DotKernels::attend_tile (attention.h's AttentionTile), included by quant_dot_impl.h in each
// instruction-set translation unit.
//
// Layout: the tile's query rows are lanes of one or two vectors. The queries are transposed
// once, qt[d][lane] (times the scale), so one key's scores for every row are a vector or two,
// s_j = sum_d qt[d] * k_j[d] with k_j[d] broadcast; the output is transposed too,
// ot[d][lane] += p_j * v_j[d]. Keys and values are widened to f32 kAttnKeys at a time (f16 by
// F16C where the set has it), the softmax kept online per lane (running max m, sum l; ot and l
// rescaled by e^(m_old - m_new) when the max grows). Unused lanes have limit 0 and see nothing.
// Bound: FMAs, 2 * head_dim a key and lane (AVX-512: 16 lanes a vector, AVX2: 8, portable: 4),
// from L1.
#pragma once

#include "engine/quantize.h"
#include "lanes_impl.h"

namespace engine {
namespace {

// Rows t0 .. t0 + count - 1 of one head (head_dim values, row_bytes apart) as f32 rows: f16 by
// F16C where the set has it, q8_0 eight codes an instruction with AVX2 (the same products as its
// decoder: code times scale, each rounded once), f32 (and q8_0 elsewhere) by their decoders.
inline void attn_widen(const uint8_t* src, uint64_t row_bytes, GgmlType type, int count, int64_t hd, float* dst) {
  for (int j = 0; j < count; ++j, src += row_bytes, dst += hd) {
#if defined(__AVX2__)
    if (type == GgmlType::Q8_0) {
      const auto* blocks = reinterpret_cast<const BlockQ8_0*>(src);
      for (int64_t b = 0; b < hd / 32; ++b) {
        const __m256 d = _mm256_set1_ps(h2f(blocks[b].d));
        _Pragma("GCC unroll 4") for (int i = 0; i < 32; i += 8) {
          const __m128i codes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blocks[b].qs + i));
          _mm256_storeu_ps(dst + b * 32 + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes)), d));
        }
      }
      continue;
    }
#endif
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

// Scores of keys j .. j + kKeys - 1 (f32 rows in kf) for every lane of kVecs vectors, masked, into
// s[j'][lane] (W = kVecs * L::n floats a key).
template <int kKeys, int kVecs>
inline void attn_scores(const float* qt, const float* kf, int64_t hd, int j, int32_t t, const Lanes::I* limit,
                        float* s) {
  using L = Lanes;
  constexpr int R = L::n, W = R * kVecs;
  L::V acc[kKeys][kVecs];
  _Pragma("GCC unroll 8") for (int i = 0; i < kKeys; ++i) {
    _Pragma("GCC unroll 2") for (int v = 0; v < kVecs; ++v) acc[i][v] = L::zero();
  }
  const float* k = kf + int64_t(j) * hd;
  for (int64_t d = 0; d < hd; ++d) {
    L::V q[kVecs];
    _Pragma("GCC unroll 2") for (int v = 0; v < kVecs; ++v) q[v] = L::load(qt + d * W + v * R);
    _Pragma("GCC unroll 8") for (int i = 0; i < kKeys; ++i) {
      const L::V key = L::set1(k[i * hd + d]);
      _Pragma("GCC unroll 2") for (int v = 0; v < kVecs; ++v) acc[i][v] = L::fmadd(q[v], key, acc[i][v]);
    }
  }
  _Pragma("GCC unroll 8") for (int i = 0; i < kKeys; ++i) {
    _Pragma("GCC unroll 2") for (int v = 0; v < kVecs; ++v) {
      L::store(s + (j + i) * W + v * R, L::seen(acc[i][v], limit[v], t + j + i));
    }
  }
}

// ot[d] = ot[d] * corr + sum_j p_j * v_j[d] for kDims dims from d on, every lane of kVecs vectors.
template <int kDims, int kVecs>
inline void attn_values(float* ot, const float* s, const float* vf, int64_t hd, int count, int64_t d,
                        const Lanes::V* corr) {
  using L = Lanes;
  constexpr int R = L::n, W = R * kVecs;
  L::V acc[kDims][kVecs];
  _Pragma("GCC unroll 16") for (int c = 0; c < kDims; ++c) {
    _Pragma("GCC unroll 2") for (int v = 0; v < kVecs; ++v) {
      acc[c][v] = L::mul(L::load(ot + (d + c) * W + v * R), corr[v]);
    }
  }
  for (int j = 0; j < count; ++j) {
    L::V p[kVecs];
    _Pragma("GCC unroll 2") for (int v = 0; v < kVecs; ++v) p[v] = L::load(s + j * W + v * R);
    const float* val = vf + j * hd + d;
    _Pragma("GCC unroll 16") for (int c = 0; c < kDims; ++c) {
      const L::V x = L::set1(val[c]);
      _Pragma("GCC unroll 2") for (int v = 0; v < kVecs; ++v) acc[c][v] = L::fmadd(p[v], x, acc[c][v]);
    }
  }
  _Pragma("GCC unroll 16") for (int c = 0; c < kDims; ++c) {
    _Pragma("GCC unroll 2") for (int v = 0; v < kVecs; ++v) L::store(ot + (d + c) * W + v * R, acc[c][v]);
  }
}

// The tile on kVecs vectors of lanes (W = kVecs * L::n rows at most): two where the rows fill
// more than one, so that each widened key and value serves twice the rows.
template <int kVecs>
void attend_tile_vecs(const AttentionTile& tile, float* scratch) {
  using L = Lanes;
  constexpr int R = L::n, W = R * kVecs;
  // Accumulators a pass: keys (scores) or dims (values) times kVecs, within the register file
  // with the loaded vectors and a broadcast (32 registers with AVX-512, 16 otherwise).
  constexpr int kScoreKeys = R == 16 ? 8 : 4;
  constexpr int kValueDims = (R == 16 ? 16 : 8) / kVecs;
  const int64_t hd = tile.head_dim;
  float* qt = scratch;
  float* ot = qt + hd * W;
  float* s = ot + hd * W;
  float* kf = s + kAttnKeys * W;
  float* vf = kf + kAttnKeys * hd;
  alignas(64) int32_t limit[W] = {};
  for (int r = 0; r < W; ++r) {
    if (r < tile.rows) limit[r] = tile.limit[r];
    for (int64_t d = 0; d < hd; ++d) qt[d * W + r] = r < tile.rows ? tile.q[r][d] * tile.scale : 0.0f;
  }
  for (int64_t i = 0; i < hd * W; ++i) ot[i] = 0.0f;
  L::I lim[kVecs];
  L::V m[kVecs], l[kVecs];
  for (int v = 0; v < kVecs; ++v) {
    lim[v] = L::load_int(limit + v * R);
    m[v] = L::set1(-1e30f);
    l[v] = L::zero();
  }
  const uint64_t head_bytes = type_bytes(tile.type, uint64_t(hd));
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
    for (; j + kScoreKeys <= count; j += kScoreKeys) {
      attn_scores<kScoreKeys, kVecs>(qt, kf, hd, j, int32_t(t0), lim, s);
    }
    for (; j < count; ++j) attn_scores<1, kVecs>(qt, kf, hd, j, int32_t(t0), lim, s);
    L::V corr[kVecs];
    for (int v = 0; v < kVecs; ++v) {
      L::V block_max = L::load(s + v * R);
      for (j = 1; j < count; ++j) block_max = L::max(block_max, L::load(s + j * W + v * R));
      const L::V m_new = L::max(m[v], block_max);
      corr[v] = lanes_exp(L::sub(m[v], m_new));
      m[v] = m_new;
      L::V sum = L::zero();
      for (j = 0; j < count; ++j) {
        const L::V p = lanes_exp(L::sub(L::load(s + j * W + v * R), m_new));
        L::store(s + j * W + v * R, p);
        sum = L::add(sum, p);
      }
      l[v] = L::fmadd(l[v], corr[v], sum);
    }
    attn_widen(tile.v + t0 * tile.row_bytes, tile.row_bytes, tile.type, count, hd, vf);
    int64_t d = 0;
    for (; d + kValueDims <= hd; d += kValueDims) attn_values<kValueDims, kVecs>(ot, s, vf, hd, count, d, corr);
    for (; d < hd; ++d) attn_values<1, kVecs>(ot, s, vf, hd, count, d, corr);
  }
  alignas(64) float m_out[W], l_out[W];
  for (int v = 0; v < kVecs; ++v) {
    L::store(m_out + v * R, m[v]);
    L::store(l_out + v * R, l[v]);
  }
  for (int r = 0; r < tile.rows; ++r) {
    tile.m[r] = m_out[r];
    tile.l[r] = l_out[r];
    for (int64_t d = 0; d < hd; ++d) tile.o[r * hd + d] = ot[d * W + r];
  }
}

void attend_tile(const AttentionTile& tile, float* scratch) {
  if (tile.rows <= Lanes::n) {
    attend_tile_vecs<1>(tile, scratch);
  } else {
    attend_tile_vecs<2>(tile, scratch);
  }
}

}  // namespace
}  // namespace engine
