// Decode rows of the grid i-quants (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M) against
// 256-value activation blocks (BlockQ8x256, one scale, as the K-quants' decode rows and llama.cpp's
// Q8_K): per 32-value group the unsigned grid magnitudes (dot_iq3_impl.h, dot_iq2_impl.h) meet the
// activations with the group's signs applied in maddubs (pairs at most 2 * 62 * 127; IQ1's grid
// bytes, dot_iq1_impl.h, meet them as they are), whose int16 pairs take the group's integer scales
// 2s + 1 in madd (one per group, or IQ2_XS's, IQ2_S's and IQ1_M's one per 16-value half), summed
// in int32 over the super-block (IQ1's offsets added once from the activations' sums): one float
// step per super-block, d * d_x times the scales' unit (IQ3_XXS 1/4, IQ3_S 1, IQ2 and IQ1 1/8).
// The activations and one-per-group scales are broadcast from memory (a register broadcast would
// take the shuffle port the grid inserts keep busy); the half scales sit in one vector a
// super-block and reach their lanes by one byte shuffle a group.
// Bound: building the grid vectors (table loads and inserts), which a batch below the panel size
// shares between up to four activation rows. On the 2-core AVX-512 machine of docs/benchmarks.md,
// one thread, a decode step: IQ3_XXS 5.2 GB/s, IQ2_XXS 4.4, IQ2_XS 4.6, IQ2_S 5.7, IQ1_S 3.7,
// IQ1_M 3.9. Included by
// quant_dot_impl.h after the grid types' files; internal linkage like everything there.
#pragma once

#include <array>
#include <type_traits>

namespace engine {
namespace {

// A block's d: its fp16 field, or IQ1_M's (dot_iq1_impl.h).
template <typename Block>
inline float block_d(const Block& b) {
  return h2f(b.d);
}

// Portable (the IQ2 and IQ1 types): each half's integer dot product of the group's signed values
// (grid_chunk4: dot_iq2_impl.h, dot_iq1_impl.h) with the activations, times its 2s + 1, summed in
// int32 over the super-block; one float step, d / 8 * d_x, per super-block.
template <typename Block>
float dot_grid_q8x256(const void* row, const BlockQ8x256* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  float s = 0;
  for (int64_t i = 0; i < k / 256; ++i) {
    int32_t sum = 0;
    for (int g = 0; g < 8; ++g) {
      for (int h = 0; h < 2; ++h) {
        int32_t dot = 0;
        for (int c = 4 * h; c < 4 * h + 4; ++c) {
          const uint32_t v = grid_chunk4(b[i], g, c);
          for (int j = 0; j < 4; ++j) dot += int32_t(int8_t(uint8_t(v >> (8 * j)))) * x[i].q[32 * g + 4 * c + j];
        }
        sum += grid_half_scale(b[i], g, h) * dot;
      }
    }
    s += block_d(b[i]) * 0.125f * x[i].d * float(sum);
  }
  return s;
}

#if defined(__AVX2__) && defined(__FMA__)
// The group's grid magnitudes (value i at byte i) and its activations with its signs applied.
inline __m256i grid_magnitudes(const BlockIQ3_XXS& b, int g) { return iq3_grid32(b, g); }
inline __m256i grid_magnitudes(const BlockIQ3_S& b, int g) { return iq3_grid32(b, g); }
template <typename Block>
inline __m256i grid_magnitudes(const Block& b, int g) { return iq2_grid32(b, g); }
inline __m256i grid_signed_activations(const BlockIQ3_XXS& b, int g, __m256i q) { return iq3_signed_activations(b, g, q); }
inline __m256i grid_signed_activations(const BlockIQ3_S& b, int g, __m256i q) { return iq3_signed_activations(b, g, q); }
template <typename Block>
inline __m256i grid_signed_activations(const Block& b, int g, __m256i q) { return iq2_signed_activations(b, g, q); }
// IQ1 (dot_iq1_impl.h): the grid bytes (values plus one, unsigned) meet the activations as they
// are; their scales' correction adds the rest of w.
inline __m256i grid_magnitudes(const BlockIQ1_S& b, int g) { return iq1_grid32(b, g); }
inline __m256i grid_magnitudes(const BlockIQ1_M& b, int g) { return iq1_grid32(b, g); }
inline __m256i grid_signed_activations(const BlockIQ1_S&, int, __m256i q) { return q; }
inline __m256i grid_signed_activations(const BlockIQ1_M&, int, __m256i q) { return q; }

// The integer scale 2s + 1 of a group with one scale.
inline int group_scale(const BlockIQ3_XXS& b, int g) { return int(2 * (load_le32(b.aux + 4 * g) >> 28) + 1); }
inline int group_scale(const BlockIQ3_S& b, int g) { return int(2 * ((load_le32(b.scales) >> (4 * g)) & 15u) + 1); }
inline int group_scale(const BlockIQ2_XXS& b, int g) { return iq2_scale(b, g, 0); }

// One scale a group (IQ3_XXS, IQ3_S, IQ2_XXS): 2s + 1 in both int16 halves of each group's int32, whose
// broadcast from memory meets the madd's pairs.
template <typename Block>
struct GroupScales {
  static constexpr float kUnit =
      std::is_same_v<Block, BlockIQ3_XXS> ? 0.25f : std::is_same_v<Block, BlockIQ3_S> ? 1.0f : 0.125f;
  alignas(32) int32_t odd[8];
  explicit GroupScales(const Block& b) {
    for (int g = 0; g < 8; ++g) odd[g] = int32_t(group_scale(b, g)) * 0x10001;
  }
  __m256i pairs(int g) const { return _mm256_broadcastd_epi32(_mm_loadu_si32(&odd[g])); }
};

// A scale per 16-value half (IQ2_XS, IQ2_S; IQ1_M below): the sixteen half scales 2s + 1 as bytes
// (half h of group g at byte 2g + h) in both 128-bit lanes, from the eight scale bytes' nibbles;
// group g's pair by one byte shuffle, half 0 (values 0..15) in the low 128 bits of a maddubs
// result, half 1 in the high.
constexpr std::array<std::array<int8_t, 32>, 8> kHalfScaleSelect = [] {
  std::array<std::array<int8_t, 32>, 8> t{};
  for (int g = 0; g < 8; ++g) {
    for (int j = 0; j < 32; ++j) t[g][j] = j % 2 == 1 ? int8_t(-128) : int8_t(2 * g + j / 16);  // zero-extended
  }
  return t;
}();
struct HalfScales {
  static constexpr float kUnit = 0.125f;
  __m256i bytes;
  template <typename Block>
  explicit HalfScales(const Block& b) {
    const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.scales));
    const __m128i low4 = _mm_set1_epi8(15);
    const __m128i s = _mm_unpacklo_epi8(_mm_and_si128(raw, low4), _mm_and_si128(_mm_srli_epi16(raw, 4), low4));
    bytes = _mm256_broadcastsi128_si256(_mm_add_epi8(_mm_add_epi8(s, s), _mm_set1_epi8(1)));
  }
  explicit HalfScales(__m128i odd) : bytes(_mm256_broadcastsi128_si256(odd)) {}
  __m256i pairs(int g) const {
    return _mm256_shuffle_epi8(bytes, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kHalfScaleSelect[g].data())));
  }
};

// IQ1 (its grid bytes against the activations, above): value w = 8 grid + 8 delta =
// 8 (grid + 1) + (8 delta - 8), so the scales pair as 8 (2s + 1), and per super-block the
// correction adds sum_j offset_j * (the activations' sum over entry or half j) in int32 (madd,
// exact): offset = (8 delta - 8) (2s + 1), -7 or -9 times 2s + 1, per 16 values for IQ1_S (its
// delta is the group's) and per 8 for IQ1_M (the entry's). Both are built in registers: a scalar
// loop's small stores would stall the vector loads after them.
struct IQ1SScales {
  static constexpr float kUnit = 0.125f;
  alignas(32) int32_t odd[8];
  __m256i offset;
  explicit IQ1SScales(const BlockIQ1_S& b) {
    const __m128i qh = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qh));  // group g: int16 lane g
    const __m128i s = _mm_add_epi16(_mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh, 12), _mm_set1_epi16(7)), 1),
                                    _mm_set1_epi16(1));
    const __m128i minus8 = _mm_add_epi16(_mm_set1_epi16(-7), _mm_slli_epi16(_mm_srai_epi16(qh, 15), 1));  // -7 or -9
    const __m128i off = _mm_mullo_epi16(s, minus8);
    offset = _mm256_set_m128i(_mm_unpackhi_epi16(off, off), _mm_unpacklo_epi16(off, off));
    const __m256i s8 = _mm256_cvtepi16_epi32(_mm_slli_epi16(s, 3));
    _mm256_store_si256(reinterpret_cast<__m256i*>(odd), _mm256_or_si256(s8, _mm256_slli_epi32(s8, 16)));
  }
  __m256i pairs(int g) const { return _mm256_broadcastd_epi32(_mm_loadu_si32(&odd[g])); }
  __m256i correction(const BlockQ8x256& x) const {
    return _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(x.sums)), offset);
  }
};
// IQ1_M's sixteen 2s + 1 (field h: bits 3(h % 4) of scale word h / 4) as int16 lane h: each word
// copied to four lanes, shifted left by 9 - 3(h % 4) (a multiply), field h in bits 9-11.
inline __m256i iq1m_odd_scales16(const BlockIQ1_M& b) {
  const __m256i words = _mm256_shuffle_epi8(_mm256_set1_epi64x(int64_t(load_le64(b.scales))),
                                            _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 4, 5, 4,
                                                             5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7));
  const __m256i fields = _mm256_and_si256(
      _mm256_srli_epi16(_mm256_mullo_epi16(words, _mm256_setr_epi16(512, 64, 8, 1, 512, 64, 8, 1, 512, 64, 8, 1, 512,
                                                                     64, 8, 1)),
                        9),
      _mm256_set1_epi16(7));
  return _mm256_add_epi16(_mm256_add_epi16(fields, fields), _mm256_set1_epi16(1));
}
struct IQ1MScales : HalfScales {
  __m256i offset[2];  // entries 0..15 and 16..31 (entries 2h and 2h + 1 are half h)
  explicit IQ1MScales(const BlockIQ1_M& b) : IQ1MScales(b, iq1m_odd_scales16(b)) {}
  IQ1MScales(const BlockIQ1_M& b, __m256i odd)
      // 8 (2s + 1) as bytes (each 2s + 1 at most 15: the 16-bit shift moves nothing across bytes).
      : HalfScales(_mm_slli_epi16(_mm_packus_epi16(_mm256_castsi256_si128(odd), _mm256_extracti128_si256(odd, 1)), 3)) {
    // Entry 2h's delta sign is bit 3 of qh[h], entry 2h + 1's bit 7: -7 or -9 times half h's 2s + 1.
    const __m256i qh = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qh)));
    const __m256i one = _mm256_set1_epi16(1), minus7 = _mm256_set1_epi16(-7);
    const __m256i even_neg = _mm256_and_si256(_mm256_srli_epi16(qh, 3), one), odd_neg = _mm256_and_si256(_mm256_srli_epi16(qh, 7), one);
    const __m256i even = _mm256_mullo_epi16(_mm256_sub_epi16(minus7, _mm256_add_epi16(even_neg, even_neg)), odd);
    const __m256i odd_entries = _mm256_mullo_epi16(_mm256_sub_epi16(minus7, _mm256_add_epi16(odd_neg, odd_neg)), odd);
    // Unpacking interleaves within 128-bit lanes: halves 0-3 and 8-11, then 4-7 and 12-15.
    const __m256i lo = _mm256_unpacklo_epi16(even, odd_entries), hi = _mm256_unpackhi_epi16(even, odd_entries);
    offset[0] = _mm256_permute2x128_si256(lo, hi, 0x20);
    offset[1] = _mm256_permute2x128_si256(lo, hi, 0x31);
  }
  __m256i correction(const BlockQ8x256& x) const {
    const auto* s = reinterpret_cast<const __m256i*>(x.sums8);
    return _mm256_add_epi32(_mm256_madd_epi16(_mm256_load_si256(s), offset[0]),
                            _mm256_madd_epi16(_mm256_load_si256(s + 1), offset[1]));
  }
};

// C activation rows at once (C = 1: a decode step; up to kRowCols: a batch below the panel size,
// quant_dot.h): each group's grid vector, signs and scales built once for the C columns, which
// is where these rows spend their time. One column keeps two chains (even and odd groups); from
// two columns on each column is a chain. The integer sums are exact in any order and a column's
// float step does not depend on C, so a column has the same bits in any batch.
// Inlined into the decode row (C = 1): a call there measured up to 2% slower.
template <int C, typename Block, typename Scales>
[[gnu::always_inline]] inline std::array<float, C> grid_q8x256_cols(const Block* b, const BlockQ8x256* x,
                                                                    int64_t x_stride, int64_t k) {
  constexpr int kChains = C == 1 ? 2 : 1;
  __m256 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k / 256; ++i) {
    prefetch_ahead(b + i);
    prefetch_ahead(reinterpret_cast<const char*>(b + i) + 64);
    const Scales scales(b[i]);
    __m256i sum[C][kChains];
    for (int c = 0; c < C; ++c) {
      for (int h = 0; h < kChains; ++h) sum[c][h] = _mm256_setzero_si256();
    }
    // The eight groups unrolled, so that each column's chains stay in registers; but a decode
    // step (one column) of the one-scale-a-group types (GroupScales) takes two groups a step of a
    // loop, whose scales are broadcast from memory: unrolled, the compiler takes them from
    // registers, on the shuffle port the grid inserts keep busy. One thread, against the other
    // choice: IQ2_XXS and IQ3_XXS 8% faster rolled (IQ3_S level); IQ1_S 15%, IQ1_M 25%, IQ2_S 10%,
    // IQ2_XS 6% faster unrolled.
    constexpr int kStep = C == 1 && std::is_same_v<Scales, GroupScales<Block>> ? 2 : 8;
    for (int g0 = 0; g0 < 8; g0 += kStep) {
#pragma GCC unroll 8
      for (int h = 0; h < kStep; ++h) {
        const int g = g0 + h;
        const __m256i magnitudes = grid_magnitudes(b[i], g);
        const __m256i pairs = scales.pairs(g);
        for (int c = 0; c < C; ++c) {
          const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(x[c * x_stride + i].q + 32 * g));
          const __m256i products = _mm256_maddubs_epi16(magnitudes, grid_signed_activations(b[i], g, q));
          sum[c][h % kChains] = _mm256_add_epi32(sum[c][h % kChains], _mm256_madd_epi16(products, pairs));
        }
      }
    }
    const float d = block_d(b[i]);
    for (int c = 0; c < C; ++c) {
      const BlockQ8x256& xb = x[c * x_stride + i];
      __m256i total = kChains == 2 ? _mm256_add_epi32(sum[c][0], sum[c][kChains - 1]) : sum[c][0];
      if constexpr (requires { scales.correction(xb); }) total = _mm256_add_epi32(total, scales.correction(xb));
      acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d * Scales::kUnit), _mm256_cvtepi32_ps(total), acc[c]);
    }
  }
  std::array<float, C> sums;
  for (int c = 0; c < C; ++c) sums[c] = hsum(acc[c]);
  return sums;
}

template <typename Block, typename Scales>
void dot_grid_q8x256_cols(const void* row, const BlockQ8x256* x, int64_t x_stride, int n_cols, int64_t k, float* out,
                          int64_t out_stride) {
  store_columns(n_cols, out, out_stride, [&]<int C>() {
    return grid_q8x256_cols<C, Block, Scales>(static_cast<const Block*>(row), x, x_stride, k);
  });
}
template <typename Block, typename Scales>
float dot_grid_q8x256_vec(const void* row, const BlockQ8x256* x, int64_t k) {
  return grid_q8x256_cols<1, Block, Scales>(static_cast<const Block*>(row), x, 0, k)[0];
}
#endif

void add_grid_q8x256_rows(DotKernels& k) {
  k.dot_q8x256[uint32_t(GgmlType::IQ2_XXS)] = dot_grid_q8x256<BlockIQ2_XXS>;
  k.dot_q8x256[uint32_t(GgmlType::IQ2_XS)] = dot_grid_q8x256<BlockIQ2_XS>;
  k.dot_q8x256[uint32_t(GgmlType::IQ2_S)] = dot_grid_q8x256<BlockIQ2_S>;
  k.dot_q8x256[uint32_t(GgmlType::IQ1_S)] = dot_grid_q8x256<BlockIQ1_S>;
  k.dot_q8x256[uint32_t(GgmlType::IQ1_M)] = dot_grid_q8x256<BlockIQ1_M>;
#if defined(__AVX2__) && defined(__FMA__)
  k.dot_q8x256[uint32_t(GgmlType::IQ3_XXS)] = dot_grid_q8x256_vec<BlockIQ3_XXS, GroupScales<BlockIQ3_XXS>>;
  k.dot_q8x256[uint32_t(GgmlType::IQ2_XXS)] = dot_grid_q8x256_vec<BlockIQ2_XXS, GroupScales<BlockIQ2_XXS>>;
  k.dot_q8x256[uint32_t(GgmlType::IQ2_XS)] = dot_grid_q8x256_vec<BlockIQ2_XS, HalfScales>;
  k.dot_q8x256[uint32_t(GgmlType::IQ2_S)] = dot_grid_q8x256_vec<BlockIQ2_S, HalfScales>;
  k.dot_q8x256[uint32_t(GgmlType::IQ1_S)] = dot_grid_q8x256_vec<BlockIQ1_S, IQ1SScales>;
  k.dot_q8x256[uint32_t(GgmlType::IQ1_M)] = dot_grid_q8x256_vec<BlockIQ1_M, IQ1MScales>;
  k.dot_q8x256_cols[uint32_t(GgmlType::IQ3_XXS)] = dot_grid_q8x256_cols<BlockIQ3_XXS, GroupScales<BlockIQ3_XXS>>;
  k.dot_q8x256[uint32_t(GgmlType::IQ3_S)] = dot_grid_q8x256_vec<BlockIQ3_S, GroupScales<BlockIQ3_S>>;
  k.dot_q8x256_cols[uint32_t(GgmlType::IQ3_S)] = dot_grid_q8x256_cols<BlockIQ3_S, GroupScales<BlockIQ3_S>>;
  k.dot_q8x256_cols[uint32_t(GgmlType::IQ2_XXS)] = dot_grid_q8x256_cols<BlockIQ2_XXS, GroupScales<BlockIQ2_XXS>>;
  k.dot_q8x256_cols[uint32_t(GgmlType::IQ2_XS)] = dot_grid_q8x256_cols<BlockIQ2_XS, HalfScales>;
  k.dot_q8x256_cols[uint32_t(GgmlType::IQ2_S)] = dot_grid_q8x256_cols<BlockIQ2_S, HalfScales>;
  k.dot_q8x256_cols[uint32_t(GgmlType::IQ1_S)] = dot_grid_q8x256_cols<BlockIQ1_S, IQ1SScales>;
  k.dot_q8x256_cols[uint32_t(GgmlType::IQ1_M)] = dot_grid_q8x256_cols<BlockIQ1_M, IQ1MScales>;
#endif
}

}  // namespace
}  // namespace engine
