// DotKernels::attend_tile (attention.h's AttentionTile), included by quant_dot_impl.h in each
// instruction-set translation unit.
//
// Two layouts. A tile of a vector's rows or more (prompts): attend_tile_vecs below. Fewer rows
// (a decode step's GQA group) would leave lanes idle there: attend_tile_few_rows, further down.
//
// attend_tile_vecs: the tile's query rows are lanes of one or two vectors. The queries are
// transposed once, qt[d][lane] (times the scale), so one key's scores for every row are a vector
// or two, s_j = sum_d qt[d] * k_j[d] with k_j[d] broadcast; the output is transposed too,
// ot[d][lane] += p_j * v_j[d]. Keys and values are widened to f32 kAttnKeys at a time (f16 by
// F16C where the set has it), the softmax kept online per lane (running max m, sum l; ot and l
// rescaled by e^(m_old - m_new) when the max grows). Unused lanes have limit 0 and see nothing.
// Bound: FMAs, 2 * head_dim a key and lane (AVX-512: 16 lanes a vector, AVX2: 8, portable: 4),
// from L1.
#pragma once

#include "engine/quantize.h"
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "lanes_impl.h"

namespace engine {
namespace {

// Lanes::n int8 codes from p, as f32.
inline Lanes::V attn_load_codes(const uint8_t* p) {
#if defined(__AVX512F__)
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(__AVX2__)
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  return Lanes::map([&](int i) { return float(int8_t(p[i])); });
#endif
}

// Lanes::n values of a row from value d on, as f32: an f16 row converted in registers, a q8_0
// row's codes converted and times their block's scale (the decoder's one rounding; the lanes
// never straddle two blocks, as Lanes::n divides 32 and d is a multiple of it), an f32 row (a
// widened block, or an f32 cache) loaded.
template <GgmlType kType>
inline Lanes::V attn_load_values(const uint8_t* row, int64_t d) {
  if constexpr (kType == GgmlType::Q8_0) {
    const BlockQ8_0& block = reinterpret_cast<const BlockQ8_0*>(row)[d / 32];
    return Lanes::mul(attn_load_codes(reinterpret_cast<const uint8_t*>(block.qs) + d % 32), Lanes::set1(h2f(block.d)));
  } else if constexpr (kType == GgmlType::F16) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(row) + d;
#if defined(__AVX512F__)
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)));
#elif defined(__F16C__)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
#else
    return Lanes::map([&](int i) { return h2f(h[i]); });
#endif
  } else {
    static_assert(kType == GgmlType::F32);
    return Lanes::loadu(reinterpret_cast<const float*>(row) + d);
  }
}

// One head's row of hd values as f32: f16 and q8_0 a vector at a time by the loader above, the
// rest of an f16 row (hd not a multiple of a vector; a q8_0 row is whole blocks) and f32 by
// their decoders.
template <GgmlType kType>
inline void attn_widen_row(const uint8_t* src, int64_t hd, float* dst) {
  constexpr int N = Lanes::n;
  if constexpr (kType == GgmlType::F16 || kType == GgmlType::Q8_0) {
    int64_t i = 0;
    for (; i + N <= hd; i += N) Lanes::storeu(dst + i, attn_load_values<kType>(src, i));
    if constexpr (kType == GgmlType::F16) {
      if (i < hd) dequantize_row(kType, src + 2 * i, dst + i, hd - i);
    }
  } else {
    dequantize_row(kType, src, dst, hd);
  }
}

// One group of dims of a key-blocked block (AttentionBatch::keys_blocked): f32 and f16 keys
// are one group of every dim, q8_0 keys a group of 32 dims after its positions' scales.
template <GgmlType kType>
struct KeyBlockGroup {
  static constexpr bool kScaled = kType == GgmlType::Q8_0;
  static constexpr int64_t kValueBytes = kType == GgmlType::F32 ? 4 : kType == GgmlType::F16 ? 2 : 1;
  static int64_t dims(int64_t hd) { return kScaled ? 32 : hd; }
  static int64_t bytes(int64_t hd) { return kAttnKeyBlock * (kScaled ? int64_t(sizeof(BlockQ8_0)) : hd * kValueBytes); }
  static constexpr int64_t kCodesAt = kScaled ? kAttnKeyBlock * 2 : 0;  // after the scales
  // The N keys from lane0 at dim d of the group (codes, unscaled, for q8_0).
  static Lanes::V keys(const uint8_t* group, int64_t d, int lane0) {
    const uint8_t* at = group + kCodesAt + d * kAttnKeyBlock * kValueBytes;
    if constexpr (kScaled) {
      return attn_load_codes(at + lane0);
    } else {
      return attn_load_values<kType>(at, lane0);
    }
  }
  // The N keys' scales from lane0 (q8_0 only).
  static Lanes::V scales(const uint8_t* group, int lane0) { return attn_load_values<GgmlType::F16>(group, lane0); }
};

// The keys of positions t0 .. t0 + count - 1 of a key-blocked head (kb: the block holding t0, a
// multiple of kAttnKeyBlock) as f32, dim-major: kt[d * kAttnKeys + i] (whole blocks, so past
// count up to the block's end too); meanwhile the next kAttnKeys positions' bytes are prefetched
// where next says there are any.
template <GgmlType kType>
inline void attn_widen_keys_blocked(const uint8_t* kb, uint64_t row_bytes, int count, int next, int64_t hd,
                                    float* kt) {
  using G = KeyBlockGroup<kType>;
  constexpr int B = kAttnKeyBlock;
  const uint64_t block_bytes = B * row_bytes, ahead = uint64_t(kAttnKeys) * row_bytes;
  for (int b = 0; b * B < count; ++b, kb += block_bytes) {
    if (next > 0) {
      for (uint64_t i = 0; i < block_bytes; i += 64) __builtin_prefetch(kb + ahead + i);
    }
    const uint8_t* group = kb;
    for (int64_t g0 = 0; g0 < hd; g0 += G::dims(hd), group += G::bytes(hd)) {
      for (int64_t d = 0; d < G::dims(hd); ++d) {
        _Pragma("GCC unroll 4") for (int c = 0; c < B; c += Lanes::n) {
          Lanes::V x = G::keys(group, d, c);
          if constexpr (G::kScaled) x = Lanes::mul(x, G::scales(group, c));  // the decoder's one rounding
          Lanes::storeu(kt + (g0 + d) * kAttnKeys + b * B + c, x);
        }
      }
    }
  }
}

// Rows t0 .. t0 + count - 1 of one head (hd values, row_bytes apart from src) as f32 rows in dst;
// meanwhile the same head's first `next` rows of the block after (kAttnKeys rows on) are
// prefetched: rows far apart are a stream the hardware prefetchers see too little of.
template <GgmlType kType>
inline void attn_widen_rows(const uint8_t* src, uint64_t row_bytes, int count, int next, int64_t hd, float* dst) {
  const uint64_t head_bytes = type_bytes(kType, uint64_t(hd)), ahead = uint64_t(kAttnKeys) * row_bytes;
  for (int j = 0; j < count; ++j, src += row_bytes, dst += hd) {
    if (j < next) {
      for (uint64_t b = 0; b < head_bytes; b += 64) __builtin_prefetch(src + ahead + b);
    }
    attn_widen_row<kType>(src, hd, dst);
  }
}

inline void attn_widen(const uint8_t* src, uint64_t row_bytes, GgmlType type, int count, int next, int64_t hd,
                       float* dst) {
  switch (type) {
    case GgmlType::F16: attn_widen_rows<GgmlType::F16>(src, row_bytes, count, next, hd, dst); break;
    case GgmlType::Q8_0: attn_widen_rows<GgmlType::Q8_0>(src, row_bytes, count, next, hd, dst); break;
    default: attn_widen_rows<GgmlType::F32>(src, row_bytes, count, next, hd, dst); break;
  }
}

// Keys of the block that starts at position `from` in a tile ending at t1: up to kAttnKeys (0
// past the end).
inline int attn_block_keys(int64_t from, int64_t t1) {
  return int(std::clamp<int64_t>(t1 - from, 0, kAttnKeys));
}

// Scores of keys j .. j + kKeys - 1 (f32 in kf: rows of hd values, or with kDimMajor kAttnKeys
// keys a dim) for every lane of kVecs vectors, masked, into s[j'][lane] (W = kVecs * L::n floats
// a key).
template <int kKeys, int kVecs, bool kDimMajor>
inline void attn_scores(const float* qt, const float* kf, int64_t hd, int j, int32_t t, const Lanes::I* limit,
                        float* s) {
  using L = Lanes;
  constexpr int R = L::n, W = R * kVecs;
  L::V acc[kKeys][kVecs];
  _Pragma("GCC unroll 8") for (int i = 0; i < kKeys; ++i) {
    _Pragma("GCC unroll 2") for (int v = 0; v < kVecs; ++v) acc[i][v] = L::zero();
  }
  const float* k = kDimMajor ? kf + j : kf + int64_t(j) * hd;
  for (int64_t d = 0; d < hd; ++d) {
    L::V q[kVecs];
    _Pragma("GCC unroll 2") for (int v = 0; v < kVecs; ++v) q[v] = L::load(qt + d * W + v * R);
    _Pragma("GCC unroll 8") for (int i = 0; i < kKeys; ++i) {
      const L::V key = L::set1(kDimMajor ? k[d * kAttnKeys + i] : k[i * hd + d]);
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
  for (int64_t t0 = tile.t0; t0 < tile.t1; t0 += kAttnKeys) {
    const int count = attn_block_keys(t0, tile.t1);
    const int next = attn_block_keys(t0 + count, tile.t1);  // prefetched while these are widened
    // The block's keys as f32 (dim-major from a blocked cache, rows otherwise), then their scores.
    auto scores = [&](auto dim_major) {
      constexpr bool kDimMajor = decltype(dim_major)::value;
      int j = 0;
      for (; j + kScoreKeys <= count; j += kScoreKeys) {
        attn_scores<kScoreKeys, kVecs, kDimMajor>(qt, kf, hd, j, int32_t(t0), lim, s);
      }
      for (; j < count; ++j) attn_scores<1, kVecs, kDimMajor>(qt, kf, hd, j, int32_t(t0), lim, s);
    };
    const uint8_t* k = tile.k + t0 * tile.row_bytes;
    if (tile.k_blocked) {
      if (tile.type == GgmlType::F16) {
        attn_widen_keys_blocked<GgmlType::F16>(k, tile.row_bytes, count, next, hd, kf);
      } else if (tile.type == GgmlType::Q8_0) {
        attn_widen_keys_blocked<GgmlType::Q8_0>(k, tile.row_bytes, count, next, hd, kf);
      } else {
        attn_widen_keys_blocked<GgmlType::F32>(k, tile.row_bytes, count, next, hd, kf);
      }
      scores(std::true_type{});
    } else {
      attn_widen(k, tile.row_bytes, tile.type, count, next, hd, kf);
      scores(std::false_type{});
    }
    L::V corr[kVecs];
    for (int v = 0; v < kVecs; ++v) {
      L::V block_max = L::load(s + v * R);
      for (int j = 1; j < count; ++j) block_max = L::max(block_max, L::load(s + j * W + v * R));
      const L::V m_new = L::max(m[v], block_max);
      corr[v] = lanes_exp(L::sub(m[v], m_new));
      m[v] = m_new;
      L::V sum = L::zero();
      for (int j = 0; j < count; ++j) {
        const L::V p = lanes_exp(L::sub(L::load(s + j * W + v * R), m_new));
        L::store(s + j * W + v * R, p);
        sum = L::add(sum, p);
      }
      l[v] = L::fmadd(l[v], corr[v], sum);
    }
    attn_widen(tile.v + t0 * tile.row_bytes, tile.row_bytes, tile.type, count, next, hd, vf);
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

// Few rows (a decode step's GQA group: fewer than a vector's lanes), where lanes of rows would
// idle: the tile on keys and dims as lanes instead. Row r's scores for N keys are N vectors
// sum_d q_r[d] k_j[d] over d, summed across their lanes into one vector of keys (Lanes::sums);
// its softmax runs along those lanes; its output o_r[d] += p_rj v_j[d] with d as lanes. Every
// lane works whatever the row count. head_dim % N == 0.
// Work: FMAs, 2 * head_dim / N a key and row (AVX-512: N = 16, AVX2: 8, portable: 4), the
// scores' one load each from L1, and the sums (45 shuffles and adds for 16 keys of a row). Bound:
// at a depth, reading the cache (a head-major cache streams; docs/benchmarks.md).
inline Lanes::V attn_row_scores(const float* q, const float* kf, int64_t hd, int j0) {
  using L = Lanes;
  constexpr int N = L::n;
  L::V acc[N];
  _Pragma("GCC unroll 16") for (int i = 0; i < N; ++i) acc[i] = L::zero();
  for (int64_t d = 0; d < hd; d += N) {
    const L::V qv = L::load(q + d);
    _Pragma("GCC unroll 16") for (int i = 0; i < N; ++i) {
      acc[i] = L::fmadd(qv, L::load(kf + (j0 + i) * hd + d), acc[i]);
    }
  }
  return L::sums(acc);
}

// o_r[d .. d + kChunks * N) = o_r * corr_r + sum_j p_rj v_j for kRows rows from r0 (p: kAttnKeys
// a row); v_j at v + j * v_stride, of type kType, each of its values loaded once.
template <GgmlType kType, int kRows, int kChunks>
inline void attn_row_values(float* o, const float* p, const uint8_t* v, uint64_t v_stride, int64_t hd, int count,
                            int r0, int64_t d, const float* corr) {
  using L = Lanes;
  constexpr int N = L::n;
  L::V acc[kRows][kChunks];
  _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r) {
    const L::V c = L::set1(corr[r0 + r]);
    _Pragma("GCC unroll 4") for (int k = 0; k < kChunks; ++k) {
      acc[r][k] = L::mul(L::load(o + (r0 + r) * hd + d + k * N), c);
    }
  }
  for (int j = 0; j < count; ++j, v += v_stride) {
    L::V x[kChunks];
    _Pragma("GCC unroll 4") for (int k = 0; k < kChunks; ++k) x[k] = attn_load_values<kType>(v, d + k * N);
    _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r) {
      const L::V w = L::set1(p[(r0 + r) * kAttnKeys + j]);
      _Pragma("GCC unroll 4") for (int k = 0; k < kChunks; ++k) acc[r][k] = L::fmadd(w, x[k], acc[r][k]);
    }
  }
  _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r) {
    _Pragma("GCC unroll 4") for (int k = 0; k < kChunks; ++k) L::store(o + (r0 + r) * hd + d + k * N, acc[r][k]);
  }
}

// Vectors of dims a pass for kRows rows: the most (1, 2 or 4) whose accumulators, loaded values
// and broadcast fit the register file (32 with AVX-512, 16 otherwise) with two to spare.
template <int kRows>
constexpr int attn_value_chunks() {
  constexpr int regs = Lanes::n == 16 ? 32 : 16;
  for (int c = 4; c > 1; c /= 2) {
    if (kRows * c + c + 1 <= regs - 2) return c;
  }
  return 1;
}

// Rows r0 .. r0 + kRows - 1 over every dim.
template <GgmlType kType, int kRows>
inline void attn_rows_values(float* o, const float* p, const uint8_t* v, uint64_t v_stride, int64_t hd, int count,
                             int r0, const float* corr) {
  constexpr int kChunks = attn_value_chunks<kRows>();
  int64_t d = 0;
  for (; d + kChunks * Lanes::n <= hd; d += kChunks * Lanes::n) {
    attn_row_values<kType, kRows, kChunks>(o, p, v, v_stride, hd, count, r0, d, corr);
  }
  for (; d < hd; d += Lanes::n) attn_row_values<kType, kRows, 1>(o, p, v, v_stride, hd, count, r0, d, corr);
}

// The few-row kernel's passes take up to kAttnRowGroup rows at once (their accumulators in
// registers): f(r0, std::integral_constant<int, n>) for each group of n rows from r0.
constexpr int kAttnRowGroup = 8;
template <typename F>
inline void attn_for_row_groups(int rows, F&& f) {
  for (int r0 = 0; r0 < rows; r0 += kAttnRowGroup) {
    switch (std::min(rows - r0, kAttnRowGroup)) {
      case 8: f(r0, std::integral_constant<int, 8>{}); break;
      case 7: f(r0, std::integral_constant<int, 7>{}); break;
      case 6: f(r0, std::integral_constant<int, 6>{}); break;
      case 5: f(r0, std::integral_constant<int, 5>{}); break;
      case 4: f(r0, std::integral_constant<int, 4>{}); break;
      case 3: f(r0, std::integral_constant<int, 3>{}); break;
      case 2: f(r0, std::integral_constant<int, 2>{}); break;
      default: f(r0, std::integral_constant<int, 1>{}); break;
    }
  }
}

// Every row of the tile, a group at a time: a value is loaded (converted) once per group.
template <GgmlType kType>
inline void attn_all_rows_values(float* o, const float* p, const uint8_t* v, uint64_t v_stride, int64_t hd,
                                 int count, int rows, const float* corr) {
  attn_for_row_groups(rows, [&](int r0, auto n) {
    attn_rows_values<kType, decltype(n)::value>(o, p, v, v_stride, hd, count, r0, corr);
  });
}

// Bytes ahead of a decode step's reads that its key-blocked scores prefetch, in both the keys'
// and the values' streams (measured on the 2-core Xeon: 1024 and 2048 best, 4096 and 8192 worse).
constexpr uint64_t kAttnPrefetchAhead = 1024;

// Scores of the N keys from lane0 of a key-blocked head's block kb (dim-major, kAttnKeyBlock
// keys a dim; q8_0 a group of 32 dims at a time, its scales applied once a group) for kRows
// query rows q (hd floats each, scaled): out[r] lane i = q_r . k_i. A dim's N keys are one
// vector, loaded (converted) once for every row; no sums across lanes. Where lane0 is 0 the bytes
// kAttnPrefetchAhead past the block, and past the values' block vb, are prefetched as the block is
// read. Work: kRows FMAs a dim and N keys, plus one load (and a conversion).
template <GgmlType kType, int kRows>
inline void attn_block_scores(const float* q, int64_t hd, const uint8_t* kb, int lane0, const uint8_t* vb,
                              Lanes::V* out) {
  using L = Lanes;
  using G = KeyBlockGroup<kType>;
  constexpr int64_t kStep = kAttnKeyBlock * G::kValueBytes;  // a dim's bytes in a block
  // Even and odd dims in chains of their own where the register file (32 with AVX-512, 16
  // otherwise) holds both with the two keys, a broadcast (and q8_0's sums and scales); else one
  // chain a row.
  constexpr bool kTwoChains = (G::kScaled ? 3 : 2) * kRows + 4 <= (L::n == 16 ? 32 : 16);
  _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r) out[r] = L::zero();
  for (int64_t g0 = 0; g0 < hd; g0 += G::dims(hd), kb += G::bytes(hd), vb += G::bytes(hd)) {
    L::V a[kRows], b[kRows];
    _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r) a[r] = b[r] = L::zero();
    for (int64_t d = 0; d < G::dims(hd); d += 2) {
      if (lane0 == 0) {  // prefetch a line a step, two for f32 (64 or 128 bytes a step; q8_0: 32)
        _Pragma("GCC unroll 2") for (int64_t i = 0; i < 2 * kStep; i += 64) {
          __builtin_prefetch(kb + d * kStep + i + kAttnPrefetchAhead);
          __builtin_prefetch(vb + d * kStep + i + kAttnPrefetchAhead);
        }
      }
      const L::V k0 = G::keys(kb, d, lane0);
      const L::V k1 = G::keys(kb, d + 1, lane0);
      const float* qd = q + g0 + d;
      _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r) {
        a[r] = L::fmadd(L::set1(qd[r * hd]), k0, a[r]);
        if constexpr (kTwoChains) {
          b[r] = L::fmadd(L::set1(qd[r * hd + 1]), k1, b[r]);
        } else {
          a[r] = L::fmadd(L::set1(qd[r * hd + 1]), k1, a[r]);
        }
      }
    }
    if constexpr (kTwoChains) {
      _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r) a[r] = L::add(a[r], b[r]);
    }
    if constexpr (G::kScaled) {
      const L::V scale = G::scales(kb, lane0);
      _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r) out[r] = L::fmadd(a[r], scale, out[r]);
    } else {
      _Pragma("GCC unroll 8") for (int r = 0; r < kRows; ++r) out[r] = a[r];
    }
  }
}

// Raw scores of a key-blocked head's positions t0 .. t0 + count - 1 (t0 a multiple of
// kAttnKeyBlock) for every row, into p (kAttnKeys a row; whole vectors, so up to N - 1 past
// count), a group of rows at a time.
template <GgmlType kType>
inline void attn_blocked_scores(const float* q, int rows, int64_t hd, const uint8_t* k, const uint8_t* v,
                                uint64_t row_bytes, int count, float* p) {
  using L = Lanes;
  constexpr int N = L::n, B = kAttnKeyBlock;
  for (int g = 0; g * N < count; ++g) {
    const uint64_t block = uint64_t(g * N / B) * B * row_bytes;
    const int lane0 = g * N % B;
    attn_for_row_groups(rows, [&](int r0, auto n) {
      constexpr int kRows = decltype(n)::value;
      L::V sc[kRows];
      attn_block_scores<kType, kRows>(q + r0 * hd, hd, k + block, lane0, v + block, sc);
      for (int r = 0; r < kRows; ++r) L::storeu(p + (r0 + r) * kAttnKeys + g * N, sc[r]);
    });
  }
}

void attend_tile_few_rows(const AttentionTile& tile, float* scratch) {
  using L = Lanes;
  constexpr int N = L::n;
  const int64_t hd = tile.head_dim;
  const int rows = tile.rows;
  float* q = scratch;  // rows x hd, times the scale
  float* o = q + hd * kAttnMaxRows;  // rows x hd
  float* p = o + hd * kAttnMaxRows;  // rows x kAttnKeys: scores, then weights
  float* kf = p + kAttnKeys * kAttnMaxRows;  // widened keys, where they are not blocked
  float m[kAttnMaxRows], l[kAttnMaxRows], corr[kAttnMaxRows];
  for (int r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < hd; ++d) {
      q[r * hd + d] = tile.q[r][d] * tile.scale;
      o[r * hd + d] = 0.0f;
    }
    m[r] = -1e30f;
    l[r] = 0.0f;
  }
  for (int64_t t0 = tile.t0; t0 < tile.t1; t0 += kAttnKeys) {
    const int count = attn_block_keys(t0, tile.t1);
    const int next = attn_block_keys(t0 + count, tile.t1);  // prefetched while these are widened
    const int groups = (count + N - 1) / N;
    const uint8_t* k = tile.k + t0 * tile.row_bytes;
    const uint8_t* v = tile.v + t0 * tile.row_bytes;
    if (tile.k_blocked && tile.type == GgmlType::F16) {
      attn_blocked_scores<GgmlType::F16>(q, rows, hd, k, v, tile.row_bytes, count, p);
    } else if (tile.k_blocked && tile.type == GgmlType::Q8_0) {
      attn_blocked_scores<GgmlType::Q8_0>(q, rows, hd, k, v, tile.row_bytes, count, p);
    } else if (tile.k_blocked) {
      attn_blocked_scores<GgmlType::F32>(q, rows, hd, k, v, tile.row_bytes, count, p);
    } else {
      attn_widen(k, tile.row_bytes, tile.type, count, next, hd, kf);
      for (int r = 0; r < rows; ++r) {
        for (int g = 0; g < groups; ++g) L::store(p + r * kAttnKeys + g * N, attn_row_scores(q + r * hd, kf, hd, g * N));
      }
    }
    for (int r = 0; r < rows; ++r) {
      // The block's positions row r sees: a prefix of it (none where its limit lies before).
      const int seen = int(std::clamp<int64_t>(tile.limit[r] - t0, 0, count));
      float* pr = p + r * kAttnKeys;
      L::V best = L::set1(-__builtin_inff());
      for (int g = 0; g < groups; ++g) {
        const L::V x = L::first(L::load(pr + g * N), std::clamp(seen - g * N, 0, N));
        L::store(pr + g * N, x);
        best = L::max(best, x);
      }
      const float top = L::reduce_max(best);
      const float m_new = std::max(m[r], top);
      corr[r] = std::exp(m[r] - m_new);
      m[r] = m_new;
      L::V sum = L::zero();
      for (int g = 0; g < groups; ++g) {
        const L::V w = lanes_exp(L::sub(L::load(pr + g * N), L::set1(m_new)));
        L::store(pr + g * N, w);
        sum = L::add(sum, w);
      }
      l[r] = l[r] * corr[r] + L::reduce_add(sum);
    }
    // Values straight from the cache, converted in registers.
    if (tile.type == GgmlType::F16) {
      attn_all_rows_values<GgmlType::F16>(o, p, v, tile.row_bytes, hd, count, rows, corr);
    } else if (tile.type == GgmlType::Q8_0) {
      attn_all_rows_values<GgmlType::Q8_0>(o, p, v, tile.row_bytes, hd, count, rows, corr);
    } else {
      attn_all_rows_values<GgmlType::F32>(o, p, v, tile.row_bytes, hd, count, rows, corr);
    }
  }
  for (int r = 0; r < rows; ++r) {
    tile.m[r] = m[r];
    tile.l[r] = l[r];
    for (int64_t d = 0; d < hd; ++d) tile.o[r * hd + d] = o[r * hd + d];
  }
}

void attend_tile(const AttentionTile& tile, float* scratch) {
  if (tile.rows < Lanes::n && tile.head_dim % Lanes::n == 0) {
    attend_tile_few_rows(tile, scratch);
  } else if (tile.rows <= Lanes::n) {
    attend_tile_vecs<1>(tile, scratch);
  } else {
    attend_tile_vecs<2>(tile, scratch);
  }
}

}  // namespace
}  // namespace engine
