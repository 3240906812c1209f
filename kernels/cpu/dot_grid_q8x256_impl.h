// Decode rows of the grid i-quants (IQ3_XXS, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M) against
// 256-value activation blocks (BlockQ8x256, one scale, as the K-quants' decode rows and llama.cpp's
// Q8_K): per 32-value group the unsigned grid magnitudes (dot_iq3_impl.h, dot_iq2_impl.h; for IQ1
// |w|, dot_iq1_impl.h) meet the activations with the group's signs applied in maddubs (pairs at
// most 2 * 62 * 127), whose int16 pairs take the group's integer scales 2s + 1 in madd (one per
// group, or IQ2_XS's, IQ2_S's and IQ1_M's one per 16-value half), summed in int32 over the
// super-block: one float step per super-block, d * d_x times the scales' unit (IQ3_XXS 1/4, IQ2
// and IQ1 1/8). The activations and one-per-group scales are broadcast from memory (a register
// broadcast would take the shuffle port the grid inserts keep busy); the half scales sit in one
// vector a super-block and reach their lanes by one byte shuffle a group.
// Bound: building the grid vectors (table loads and inserts). On the 2-core AVX-512 machine of
// docs/benchmarks.md, one thread: IQ3_XXS 4.4 GB/s, IQ2_XXS 3.6, IQ2_XS 3.7, IQ2_S 4.8. Included by
// quant_dot_impl.h after the grid types' files; internal linkage like everything there.
#pragma once

#include <array>
#include <type_traits>

namespace engine {
namespace {

#if defined(__AVX2__) && defined(__FMA__)
// The group's grid magnitudes (value i at byte i) and its activations with its signs applied.
inline __m256i grid_magnitudes(const BlockIQ3_XXS& b, int g) { return iq3_grid32(b, g); }
template <typename Block>
inline __m256i grid_magnitudes(const Block& b, int g) { return iq2_grid32(b, g); }
inline __m256i grid_signed_activations(const BlockIQ3_XXS& b, int g, __m256i q) { return iq3_signed_activations(b, g, q); }
template <typename Block>
inline __m256i grid_signed_activations(const Block& b, int g, __m256i q) { return iq2_signed_activations(b, g, q); }
// IQ1: its signed values w (both calls build the same vector, which the compiler computes once).
inline __m256i grid_magnitudes(const BlockIQ1_S& b, int g) { return _mm256_abs_epi8(iq1_values32(b, g)); }
inline __m256i grid_magnitudes(const BlockIQ1_M& b, int g) { return _mm256_abs_epi8(iq1_values32(b, g)); }
inline __m256i grid_signed_activations(const BlockIQ1_S& b, int g, __m256i q) { return _mm256_sign_epi8(q, iq1_values32(b, g)); }
inline __m256i grid_signed_activations(const BlockIQ1_M& b, int g, __m256i q) { return _mm256_sign_epi8(q, iq1_values32(b, g)); }

// The integer scale 2s + 1 of a group with one scale.
inline int group_scale(const BlockIQ3_XXS& b, int g) { return int(2 * (load_le32(b.aux + 4 * g) >> 28) + 1); }
inline int group_scale(const BlockIQ2_XXS& b, int g) { return iq2_scale(b, g, 0); }
inline int group_scale(const BlockIQ1_S& b, int g) { return iq1s_scale(b.qh[g]); }

// One scale a group (IQ3_XXS, IQ2_XXS, IQ1_S): 2s + 1 in both int16 halves of each group's int32,
// whose broadcast from memory meets the madd's pairs.
template <typename Block>
struct GroupScales {
  static constexpr float kUnit = std::is_same_v<Block, BlockIQ3_XXS> ? 0.25f : 0.125f;
  alignas(32) int32_t odd[8];
  explicit GroupScales(const Block& b) {
    for (int g = 0; g < 8; ++g) odd[g] = int32_t(group_scale(b, g)) * 0x10001;
  }
  __m256i pairs(int g) const { return _mm256_broadcastd_epi32(_mm_loadu_si32(&odd[g])); }
};

// A scale per 16-value half (IQ2_XS, IQ2_S, IQ1_M): the sixteen half scales 2s + 1 as bytes (half
// h of group g at byte 2g + h) in both 128-bit lanes, from the eight scale bytes' nibbles (IQ1_M:
// their 3-bit fields); group g's
// pair by one byte shuffle, half 0 (values 0..15) in the low 128 bits of a maddubs result, half 1
// in the high.
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
  explicit HalfScales(const BlockIQ1_M& b) {
    alignas(16) int8_t s[16];
    const uint64_t scales = load_le64(b.scales);
    for (int h = 0; h < 16; ++h) s[h] = int8_t(iq1m_scale(scales, h));
    bytes = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(s)));
  }
  __m256i pairs(int g) const {
    return _mm256_shuffle_epi8(bytes, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kHalfScaleSelect[g].data())));
  }
};

template <typename Block, typename Scales>
float dot_grid_q8x256_vec(const void* row, const BlockQ8x256* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < k / 256; ++i) {
    prefetch_ahead(b + i);
    prefetch_ahead(reinterpret_cast<const char*>(b + i) + 64);
    const Scales scales(b[i]);
    __m256i sums[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};  // two chains
    for (int g = 0; g < 8; ++g) {
      const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(x[i].q + 32 * g));
      const __m256i pairs = _mm256_maddubs_epi16(grid_magnitudes(b[i], g), grid_signed_activations(b[i], g, q));
      sums[g % 2] = _mm256_add_epi32(sums[g % 2], _mm256_madd_epi16(pairs, scales.pairs(g)));
    }
    const __m256 total = _mm256_cvtepi32_ps(_mm256_add_epi32(sums[0], sums[1]));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(block_d(b[i]) * x[i].d * Scales::kUnit), total, acc);
  }
  return hsum(acc);
}
#endif

void add_grid_q8x256_rows([[maybe_unused]] DotKernels& k) {
#if defined(__AVX2__) && defined(__FMA__)
  k.dot_q8x256[uint32_t(GgmlType::IQ3_XXS)] = dot_grid_q8x256_vec<BlockIQ3_XXS, GroupScales<BlockIQ3_XXS>>;
  // Not IQ3_S: its gathered rows on 32-value blocks (dot_iq3_impl.h) measured 5-6% faster.
  k.dot_q8x256[uint32_t(GgmlType::IQ2_XXS)] = dot_grid_q8x256_vec<BlockIQ2_XXS, GroupScales<BlockIQ2_XXS>>;
  k.dot_q8x256[uint32_t(GgmlType::IQ2_XS)] = dot_grid_q8x256_vec<BlockIQ2_XS, HalfScales>;
  k.dot_q8x256[uint32_t(GgmlType::IQ2_S)] = dot_grid_q8x256_vec<BlockIQ2_S, HalfScales>;
  k.dot_q8x256[uint32_t(GgmlType::IQ1_S)] = dot_grid_q8x256_vec<BlockIQ1_S, GroupScales<BlockIQ1_S>>;
  k.dot_q8x256[uint32_t(GgmlType::IQ1_M)] = dot_grid_q8x256_vec<BlockIQ1_M, HalfScales>;
#endif
}

}  // namespace
}  // namespace engine
