// The pieces of IQ1_S and IQ1_M rows against 8-bit activations. A 32-value group (quant_blocks.h)
// is four grid entries of eight values -1, 0, 1, each entry shifted by delta = +-1/8; in units of
// d / 8 a value is (2s + 1) w with w = 8 grid +- 1, a signed byte (-9 .. 9). The group's product:
//   d / 8 * d_x * sum_h (2 s_h + 1) * (w . q_x)_h
// over its halves h (values 16h .. 16h + 15: IQ1_M has a scale per half, IQ1_S one for both).
// Here: each group's w four values at a time for the portable rows; for the vectorised ones (both in
// dot_grid_q8x256_impl.h, against BlockQ8x256 activations) its grid entries in one vector by four
// 64-bit table loads, the grid bytes (values plus one), which meet the activations in maddubs as
// they are; what w is beyond 8 times them (8 delta - 8 per entry), times the activations' 16-value
// (IQ1_S) or 8-value (IQ1_M) sums, goes in once per super-block. Prompt
// batches take the panels: IQ1_S the 8-bit ones (gemm_q8_impl.h, one scale a group), IQ1_M the K-quants'
// (gemm_q8x256_impl.h, the codes w + 9 and a scale per 16 values). Included by
// quant_dot_impl.h after dot_iq2_impl.h; internal linkage like everything there.
#pragma once

#include <array>
#include <cstdint>

namespace engine {
namespace {

// Values 4c .. 4c + 3 of group g as signed bytes w, the integer scale 2s + 1 of half h of group g
// (the portable rows of dot_grid_q8x256_impl.h), and IQ1_M's d.
inline uint32_t grid_chunk4(const BlockIQ1_S& b, int g, int c) {
  const uint32_t qh = b.qh[g];
  const uint64_t entry = kIQ1SGrid[iq1s_index(b.qs[4 * g + c / 2], qh, c / 2)];
  return iq1_values4(uint32_t(entry >> (32 * (c % 2))), iq1s_delta_negative(qh));
}
inline uint32_t grid_chunk4(const BlockIQ1_M& b, int g, int c) {
  const int e = 4 * g + c / 2;
  const uint32_t qh = b.qh[e / 2];
  const uint64_t entry = kIQ1SGrid[iq1m_index(b.qs[e], qh, e)];
  return iq1_values4(uint32_t(entry >> (32 * (c % 2))), iq1m_delta_negative(qh, e));
}
inline int grid_half_scale(const BlockIQ1_S& b, int g, int) { return iq1s_scale(b.qh[g]); }
inline int grid_half_scale(const BlockIQ1_M& b, int g, int h) { return iq1m_scale(load_le64(b.scales), 2 * g + h); }
inline float block_d(const BlockIQ1_M& b) { return h2f(iq1m_d_bits(load_le64(b.scales))); }

#if defined(__AVX2__) && defined(__FMA__)
// IQ1_S: the group's grid bytes (each value plus one: 0, 1, 2), value i at byte i.
inline __m256i iq1_grid32(const BlockIQ1_S& b, int g) {
  const uint8_t* q = b.qs + 4 * g;
  const uint32_t qh = b.qh[g];
  const uint64_t* t = kIQ1SGrid;
  return _mm256_set_epi64x(int64_t(t[q[3] | ((qh >> 1) & 0x700)]), int64_t(t[q[2] | ((qh << 2) & 0x700)]),
                           int64_t(t[q[1] | ((qh << 5) & 0x700)]), int64_t(t[q[0] | ((qh << 8) & 0x700)]));
}

// IQ1_M: the group's grid bytes, and (for the panels) its values as unsigned bytes
// u = 8 (grid + 1) + 1 + 8 delta = w + 9 (0 .. 18). The group's two qh bytes hold entry l's high
// index bits in nibble l and its delta's sign in bit 4l + 3; one multiply gathers those four sign
// bits into bits 15-18 (each product bit lands alone, so nothing carries), which pick the entries'
// 1 + 8 delta from a table.
inline __m256i iq1_grid32(const BlockIQ1_M& b, int g) {
  const uint8_t* q = b.qs + 4 * g;
  const uint32_t qh = uint32_t(b.qh[2 * g]) | (uint32_t(b.qh[2 * g + 1]) << 8);
  const uint64_t* t = kIQ1SGrid;
  return _mm256_set_epi64x(int64_t(t[q[3] | ((qh >> 4) & 0x700)]), int64_t(t[q[2] | (qh & 0x700)]),
                           int64_t(t[q[1] | ((qh << 4) & 0x700)]), int64_t(t[q[0] | ((qh << 8) & 0x700)]));
}
constexpr std::array<std::array<uint8_t, 32>, 16> kIQ1MDeltaBytes = [] {  // mask m: 0 or 2 in entry l's lane
  std::array<std::array<uint8_t, 32>, 16> t{};
  for (int m = 0; m < 16; ++m) {
    for (int j = 0; j < 32; ++j) t[m][j] = (m >> (j / 8)) & 1 ? 0 : 2;
  }
  return t;
}();
inline __m256i iq1m_codes32(const BlockIQ1_M& b, int g) {
  const uint32_t qh = uint32_t(b.qh[2 * g]) | (uint32_t(b.qh[2 * g + 1]) << 8);
  const uint32_t negative = (((qh & 0x8888u) * 0x1248u) >> 15) & 15u;
  // The grid bytes are 0..2, so the 16-bit shift moves nothing across bytes.
  return _mm256_add_epi8(_mm256_slli_epi16(iq1_grid32(b, g), 3),
                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kIQ1MDeltaBytes[negative].data())));
}

// The group's 32 values w as signed bytes, value i at byte i (the panels' operand).
inline __m256i iq1_values32(const BlockIQ1_S& b, int g) {
  return _mm256_add_epi8(_mm256_slli_epi16(iq1_grid32(b, g), 3), _mm256_set1_epi8(iq1s_delta_negative(b.qh[g]) ? -9 : -7));
}
inline __m256i iq1_values32(const BlockIQ1_M& b, int g) { return _mm256_sub_epi8(iq1m_codes32(b, g), _mm256_set1_epi8(9)); }

// As the 8-bit panels take IQ1_S (gemm_q8_impl.h): its values and its group scale in units of d.
inline __m256i iq_values32(const BlockIQ1_S& b, int g) { return iq1_values32(b, g); }
inline float iq_scale(const BlockIQ1_S& b, int g) { return float(iq1s_scale(b.qh[g])) * 0.125f; }
#endif

}  // namespace
}  // namespace engine
