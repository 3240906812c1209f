// The 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1) against 8-bit activations in blocks of 32
// (BlockQ8x32): each weight block as 32 unsigned bytes (its codes, 0..15 or 0..31) and a scale
// and offset, w = d * q + min, so that one block's product is
//   d * d_x * (q . q_x) + min * d_x * sum(q_x)
// where min is -8d (Q4_0), -16d (Q5_0) or the block's m (Q4_1, Q5_1). Here: the byte decoders
// (shared with the prompt panels of gemm_q8_impl.h) and the vectorised decode rows, one block per
// step in a u8 x s8 multiply-add (vpdpbusd with AVX-512 VNNI, maddubs + madd with AVX2), the
// float step per block into two independent accumulators. Bound: memory (18-24 bytes a block).
// Included by quant_dot_impl.h; internal linkage like everything there.
#pragma once

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

#if defined(__AVX2__) && defined(__FMA__)
// The block's 32 codes as bytes, value j at byte j: value j < 16 is the low nibble of qs[j],
// value j + 16 its high nibble; Q5's fifth bit of value j is bit j of qh.
inline __m256i nibbles32(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i low4 = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), low4), _mm_and_si128(q, low4));
}

// 16 in byte j where bit j of the 32 bits at qh is set, else 0.
inline __m256i fifth_bits32(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  return _mm256_maskz_mov_epi8(bits, _mm256_set1_epi8(16));
#else
  // Byte j takes byte j / 8 of the bits (each 128-bit lane holds all four), then tests bit j % 8.
  const __m256i which = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(bits)), which);
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
#endif
}

inline __m256i codes32(const BlockQ4_0& b) { return nibbles32(b.qs); }
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

template <typename Block>
float dot_q8x32_vec(const void* row, const BlockQ8x32* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  float offset[2] = {0, 0};  // two chains, as the vector sums: a block's step is shorter than an add's latency
  for (int64_t i = 0; i < k / 32; ++i) {
    if (i % 2 == 0) prefetch_ahead(b + i);  // two blocks are 36-48 bytes
    const __m256i p = dot_u8_s8_lanes(codes32(b[i]), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].q)));
    const float d = h2f(b[i].d);
    acc[i % 2] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[i].d), _mm256_cvtepi32_ps(p), acc[i % 2]);
    offset[i % 2] += block_min(b[i], d) * x[i].dsum;
  }
  return hsum(_mm256_add_ps(acc[0], acc[1])) + (offset[0] + offset[1]);
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
  k.dot_q8[uint32_t(GgmlType::Q4_0)] = dot_q8x32_vec<BlockQ4_0>;
  k.dot_q8[uint32_t(GgmlType::Q4_1)] = dot_q8x32_vec<BlockQ4_1>;
  k.dot_q8[uint32_t(GgmlType::Q5_0)] = dot_q8x32_vec<BlockQ5_0>;
  k.dot_q8[uint32_t(GgmlType::Q5_1)] = dot_q8x32_vec<BlockQ5_1>;
#endif
}

}  // namespace
}  // namespace engine
