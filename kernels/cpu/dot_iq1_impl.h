// The pieces of IQ1_S and IQ1_M rows against 8-bit activations. A 32-value group (quant_blocks.h)
// is four grid entries of eight values -1, 0, 1, each entry shifted by delta = +-1/8; in units of
// d / 8 a value is (2s + 1) w with w = 8 grid +- 1, a signed byte (-9 .. 9). The group's product:
//   d / 8 * d_x * sum_h (2 s_h + 1) * (w . q_x)_h
// over its halves h (values 16h .. 16h + 15: IQ1_M has a scale per half, IQ1_S one for both).
// Here: the portable rows, and for the vectorised ones (dot_grid_q8x256_impl.h, against
// BlockQ8x256 activations) each group's w as one vector: four 64-bit table loads (the grid bytes
// are its values plus one), then 8 (grid + 1) + (1 + 8 delta) - 9 in a 16-bit shift and a byte
// add; they meet the activations as |w| and the activations with w's signs in maddubs. Prompt
// batches take the panels: IQ1_S the 8-bit ones (gemm_q8_impl.h, one scale a group), IQ1_M the
// 12-bit ones (gemm_q16_impl.h: w (2s + 1), at most 9 * 15 = 135, is exact in int16). Included by
// quant_dot_impl.h after dot_iq2_impl.h; internal linkage like everything there.
#pragma once

#include <cstdint>
#include <cstring>

namespace engine {
namespace {

inline uint64_t load_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);  // x86: little-endian
  return v;
}

// Values 4c .. 4c + 3 of group g as signed bytes w, the integer scale 2s + 1 of half h of group g,
// and the block's d.
inline uint32_t iq1_chunk4(const BlockIQ1_S& b, int g, int c) {
  const uint32_t qh = b.qh[g];
  const uint64_t entry = kIQ1SGrid[iq1s_index(b.qs[4 * g + c / 2], qh, c / 2)];
  return iq1_values4(uint32_t(entry >> (32 * (c % 2))), iq1s_delta_negative(qh));
}
inline uint32_t iq1_chunk4(const BlockIQ1_M& b, int g, int c) {
  const int e = 4 * g + c / 2;
  const uint32_t qh = b.qh[e / 2];
  const uint64_t entry = kIQ1SGrid[iq1m_index(b.qs[e], qh, e)];
  return iq1_values4(uint32_t(entry >> (32 * (c % 2))), iq1m_delta_negative(qh, e));
}
inline int iq1_scale(const BlockIQ1_S& b, int g, int) { return iq1s_scale(b.qh[g]); }
inline int iq1_scale(const BlockIQ1_M& b, int g, int h) { return iq1m_scale(load_le64(b.scales), 2 * g + h); }
template <typename Block>
inline float block_d(const Block& b) {
  return h2f(b.d);
}
inline float block_d(const BlockIQ1_M& b) { return h2f(iq1m_d_bits(load_le64(b.scales))); }

// Portable: each half's integer dot product, times its scale, summed over the super-block.
template <typename Block>
float dot_iq1_q8x256(const void* row, const BlockQ8x256* x, int64_t k) {
  const Block* b = static_cast<const Block*>(row);
  float s = 0;
  for (int64_t i = 0; i < k / 256; ++i) {
    int32_t sum = 0;
    for (int g = 0; g < 8; ++g) {
      for (int h = 0; h < 2; ++h) {
        int32_t dot = 0;
        for (int c = 4 * h; c < 4 * h + 4; ++c) {
          const uint32_t v = iq1_chunk4(b[i], g, c);
          for (int j = 0; j < 4; ++j) dot += int32_t(int8_t(uint8_t(v >> (8 * j)))) * x[i].q[32 * g + 4 * c + j];
        }
        sum += iq1_scale(b[i], g, h) * dot;
      }
    }
    s += block_d(b[i]) * 0.125f * x[i].d * float(sum);
  }
  return s;
}

#if defined(__AVX2__) && defined(__FMA__)
// The group's 32 values w as signed bytes, value i at byte i.
inline __m256i iq1_values32(const BlockIQ1_S& b, int g) {
  const uint8_t* q = b.qs + 4 * g;
  const uint32_t qh = b.qh[g];
  const uint64_t* t = kIQ1SGrid;
  const __m256i grid = _mm256_set_epi64x(int64_t(t[q[3] | ((qh >> 1) & 0x700)]), int64_t(t[q[2] | ((qh << 2) & 0x700)]),
                                         int64_t(t[q[1] | ((qh << 5) & 0x700)]), int64_t(t[q[0] | ((qh << 8) & 0x700)]));
  // The grid bytes are 0..2, so the 16-bit shift moves nothing across bytes.
  return _mm256_add_epi8(_mm256_slli_epi16(grid, 3), _mm256_set1_epi8(iq1s_delta_negative(qh) ? -9 : -7));
}
inline __m256i iq1_values32(const BlockIQ1_M& b, int g) {
  const uint8_t* q = b.qs + 4 * g;
  const uint32_t qh = uint32_t(b.qh[2 * g]) | (uint32_t(b.qh[2 * g + 1]) << 8);  // entry l: nibble l
  const uint64_t* t = kIQ1SGrid;
  const __m256i grid = _mm256_set_epi64x(int64_t(t[q[3] | ((qh >> 4) & 0x700)]), int64_t(t[q[2] | (qh & 0x700)]),
                                         int64_t(t[q[1] | ((qh << 4) & 0x700)]), int64_t(t[q[0] | ((qh << 8) & 0x700)]));
  // Entry l's delta sign, bit 4l + 3, as -1 in every byte of its 64-bit lane where set.
  const __m256i sel = _mm256_setr_epi16(8, 8, 8, 8, 0x80, 0x80, 0x80, 0x80, 0x800, 0x800, 0x800, 0x800, int16_t(0x8000),
                                        int16_t(0x8000), int16_t(0x8000), int16_t(0x8000));
  const __m256i negative = _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16(int16_t(qh)), sel), sel);
  const __m256i offset = _mm256_add_epi8(_mm256_set1_epi8(-7), _mm256_add_epi8(negative, negative));
  return _mm256_add_epi8(_mm256_slli_epi16(grid, 3), offset);
}

// As the 8-bit panels take IQ1_S (gemm_q8_impl.h): its values and its group scale in units of d.
inline __m256i iq_values32(const BlockIQ1_S& b, int g) { return iq1_values32(b, g); }
inline float iq_scale(const BlockIQ1_S& b, int g) { return float(iq1s_scale(b.qh[g])) * 0.125f; }
#endif

void add_iq1_rows(DotKernels& k) {
  k.dot_q8x256[uint32_t(GgmlType::IQ1_S)] = dot_iq1_q8x256<BlockIQ1_S>;
  k.dot_q8x256[uint32_t(GgmlType::IQ1_M)] = dot_iq1_q8x256<BlockIQ1_M>;
  // Vectorised: dot_grid_q8x256_impl.h.
}

}  // namespace
}  // namespace engine
