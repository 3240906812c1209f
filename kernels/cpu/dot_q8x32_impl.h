// The 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1) against 8-bit activations in blocks of 32
// (BlockQ8x32): each weight block as 32 unsigned bytes (its codes, 0..15 or 0..31) and a scale
// and offset, w = d * q + min, so that one block's product is
//   d * d_x * (q . q_x) + min * d_x * sum(q_x)
// where min is -8d (Q4_0), -16d (Q5_0) or the block's m (Q4_1, Q5_1). Here: the byte decoders
// (shared with the prompt panels of gemm_q8_impl.h) and the vectorised decode rows, two blocks per
// step in u8 x s8 multiply-adds (vpdpbusd with AVX-512 VNNI, maddubs + madd with AVX2), the float
// step per pair of blocks into two independent accumulators. Bound: the instructions per block
// (about 17.5 GB/s a thread on the 2-core AVX-512 machine of docs/benchmarks.md), then memory
// (18-24 bytes a block). With AVX-512 VNNI the IQ4_NL rows are these too, its codes' grid values +
// 128 (a byte shuffle) and the bias 128 as each block's offset.
// Included by quant_dot_impl.h; internal linkage like everything there.
#pragma once

#include <type_traits>

namespace engine {
namespace {

// The additive constant of a block's values, w = d * q + block_min.
inline float block_min(const BlockQ4_0&, float d) { return -8.0f * d; }
inline float block_min(const BlockQ4_1& b, float) { return h2f(b.m); }
inline float block_min(const BlockQ5_0&, float d) { return -16.0f * d; }
inline float block_min(const BlockQ5_1& b, float) { return h2f(b.m); }
// IQ4_NL and IQ4_XS groups, for the AVX-512 VNNI panels only: a grid value v as the code v + 128
// (1 .. 241), which vpdpbusd multiplies exactly and AVX2's maddubs would saturate (their rows and
// the AVX2 path: dot_iq4_impl.h).
inline float block_min(const BlockIQ4_NL&, float d) { return -128.0f * d; }
// Q8_0, for the prompt panels only (its rows take float activations): its int8 values v as the
// codes v + 128 (0 .. 255), the bias 128 as the block's offset, as IQ4_NL's.
inline float block_min(const BlockQ8_0&, float d) { return -128.0f * d; }

#if defined(__AVX2__) && defined(__FMA__)
// The block's 32 codes as bytes, value j at byte j: value j < 16 is the low nibble of qs[j],
// value j + 16 its high nibble; Q5's fifth bit of value j is bit j of qh.
inline __m256i nibbles32(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i low4 = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), low4), _mm_and_si128(q, low4));
}

// 16 in byte j where bit j of `bits` is set, else 0 (a Q5 block's fifth bits from its qh word).
inline __m256i fifth_bits_of(uint32_t bits) {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  return _mm256_maskz_mov_epi8(bits, _mm256_set1_epi8(16));
#else
  const __m256i which = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(bits)), which);
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
#endif
}
inline __m256i fifth_bits32(const uint8_t* qh) { return fifth_bits_of(load_le32(qh)); }

inline __m256i codes32(const BlockQ4_0& b) { return nibbles32(b.qs); }
inline __m256i codes32(const BlockQ8_0& b) {
  return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)), _mm256_set1_epi8(int8_t(0x80)));
}
inline __m256i iq4_codes32(const uint8_t* qs) {
  const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4Values)));
  return _mm256_xor_si256(_mm256_shuffle_epi8(grid, nibbles32(qs)), _mm256_set1_epi8(int8_t(0x80)));
}
inline __m256i codes32(const BlockIQ4_NL& b) { return iq4_codes32(b.qs); }
inline __m256i codes32(const BlockQ4_1& b) { return nibbles32(b.qs); }
inline __m256i codes32(const BlockQ5_0& b) { return _mm256_or_si256(nibbles32(b.qs), fifth_bits32(b.qh)); }
inline __m256i codes32(const BlockQ5_1& b) { return _mm256_or_si256(nibbles32(b.qs), fifth_bits32(b.qh)); }

// The four-byte sums of w (u8) times x (s8), as eight int32.
inline __m256i dot_u8_s8_lanes(__m256i w, __m256i x) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
#else
  // maddubs sums byte pairs to int16 without saturating: 31 * 127 * 2 < 32767.
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
#endif
}

// Two blocks a vector (the decode rows below): the codes of blocks a and b, lo = values 0..15 of a
// (low 128 bits) and of b (high), hi = values 16..31 of each (a Q5 block's fifth bits: bit j of
// its qh word is value j's).
template <typename Block>
inline void codes_pair(const Block& a, const Block& b, __m256i& lo, __m256i& hi) {
  const __m256i q = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(b.qs), reinterpret_cast<const __m128i*>(a.qs));
  const __m256i low4 = _mm256_set1_epi8(15);
  lo = _mm256_and_si256(q, low4);
  hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
  if constexpr (std::is_same_v<Block, BlockIQ4_NL>) {  // the grid values + 128 (AVX-512 VNNI only)
    const __m256i grid = _mm256_xor_si256(
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4Values))),
        _mm256_set1_epi8(int8_t(0x80)));
    lo = _mm256_shuffle_epi8(grid, lo);
    hi = _mm256_shuffle_epi8(grid, hi);
  }
  if constexpr (requires { a.qh; }) {
    const uint32_t ha = load_le32(a.qh), hb = load_le32(b.qh);
    lo = _mm256_or_si256(lo, fifth_bits_of((ha & 0xffffu) | (hb << 16)));
    hi = _mm256_or_si256(hi, fifth_bits_of((ha >> 16) | (hb & 0xffff0000u)));
  }
}
// The two blocks' offsets w = d * q + min as a pair (lanes 0, 1), given their scales d.
inline __m128 min_pair(const BlockQ4_0&, const BlockQ4_0&, __m128 d) { return _mm_mul_ps(d, _mm_set1_ps(-8.0f)); }
inline __m128 min_pair(const BlockQ5_0&, const BlockQ5_0&, __m128 d) { return _mm_mul_ps(d, _mm_set1_ps(-16.0f)); }
inline __m128 min_pair(const BlockIQ4_NL&, const BlockIQ4_NL&, __m128 d) { return _mm_mul_ps(d, _mm_set1_ps(-128.0f)); }
template <typename Block>
inline __m128 min_pair(const Block& a, const Block& b, __m128) {  // Q4_1, Q5_1: their m
  return _mm_cvtph_ps(_mm_cvtsi32_si128(int(uint32_t(a.m) | (uint32_t(b.m) << 16))));
}

// Decode rows two blocks a step: each block's product in four int32 lanes (its low and high
// halves' multiply-adds summed), the pair's scales d * d_x converted and multiplied as a pair and
// spread to their lanes by one permute, the offsets min * d_x * sum(q_x) as a pair in a second
// accumulator. A 32-value block cost about 18 instructions one at a time (codes, an fp16 scale
// converted, broadcast, the offset's scalar steps), more than its 18-24 bytes take to stream.
template <typename Block>
float dot_q8x32_pairs(const void* row, const BlockQ8x32* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  const int64_t nb = k / 32;
  const __m256i spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  __m128 offsets = _mm_setzero_ps();
  // Blocks i and i + 1 into acc. Consecutive pairs alternate between two accumulators held in two
  // variables: an array indexed by the pair's parity in a rolled loop lives on the stack.
  const auto pair = [&](int64_t i, __m256& acc) {
    prefetch_ahead(b + i);
    __m256i lo, hi;
    codes_pair(b[i], b[i + 1], lo, hi);
    const __m256i xlo = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(x[i + 1].q),
                                            reinterpret_cast<const __m128i*>(x[i].q));
    const __m256i xhi = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(x[i + 1].q + 16),
                                            reinterpret_cast<const __m128i*>(x[i].q + 16));
    const __m256i p = _mm256_add_epi32(dot_u8_s8_lanes(lo, xlo), dot_u8_s8_lanes(hi, xhi));
    const __m128 d = _mm_cvtph_ps(_mm_cvtsi32_si128(int(uint32_t(b[i].d) | (uint32_t(b[i + 1].d) << 16))));
    const __m128 dx = _mm_setr_ps(x[i].d, x[i + 1].d, 0.0f, 0.0f);
    const __m256 scale = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_mul_ps(d, dx)), spread);
    acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(p), acc);
    offsets = _mm_fmadd_ps(min_pair(b[i], b[i + 1], d), _mm_setr_ps(x[i].dsum, x[i + 1].dsum, 0.0f, 0.0f), offsets);
  };
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 4 <= nb; i += 4) {
    pair(i, acc0);
    pair(i + 2, acc1);
  }
  if (i + 2 <= nb) {
    pair(i, acc0);
    i += 2;
  }
  float s = hsum(_mm256_add_ps(acc0, acc1)) + _mm_cvtss_f32(_mm_add_ss(offsets, _mm_movehdup_ps(offsets)));
  for (; i < nb; ++i) {  // an odd block at the end
    const float d = h2f(b[i].d);
    const __m256i p = dot_u8_s8_lanes(codes32(b[i]), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].q)));
    s += d * x[i].d * hsum(_mm256_cvtepi32_ps(p)) + block_min(b[i], d) * x[i].dsum;
  }
  return s;
}

// Block j of a row's 32-value blocks for a prompt panel (gemm_q8_impl.h, AVX2 and AVX-512 only):
// its codes at out[0..31] (value l at byte l, as activation block j holds its values) and its
// scale and minus its offset, so that w = dsc * q - dmn as for the K-quants' groups.
template <typename Block>
void decode_q8x32_group(const Block& b, uint8_t* out, float* dsc, float* dmn) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), codes32(b));
  const float d = h2f(b.d);
  *dsc = d;
  *dmn = -block_min(b, d);
}
#endif

void add_q8x32_rows([[maybe_unused]] DotKernels& k) {
#if defined(__AVX2__) && defined(__FMA__)
  k.dot_q8[uint32_t(GgmlType::Q4_0)] = dot_q8x32_pairs<BlockQ4_0>;
  k.dot_q8[uint32_t(GgmlType::Q4_1)] = dot_q8x32_pairs<BlockQ4_1>;
  k.dot_q8[uint32_t(GgmlType::Q5_0)] = dot_q8x32_pairs<BlockQ5_0>;
  k.dot_q8[uint32_t(GgmlType::Q5_1)] = dot_q8x32_pairs<BlockQ5_1>;
#endif
}

}  // namespace
}  // namespace engine
