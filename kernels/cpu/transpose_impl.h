// Dword transposes shared by the integer panels (gemm_q8_impl.h, gemm_q8x256_impl.h), included by
// quant_dot_impl.h in each instruction-set translation unit before them.
#pragma once

namespace engine {
namespace {

#if defined(__AVX512F__)
// In place: v[r] holds 16 dwords of row r; afterwards v[p] holds dword p of every row.
inline void transpose16x16_epi32(__m512i v[16]) {
  __m512i u[16];
  for (int g = 0; g < 4; ++g) {  // within each 128-bit lane, 4x4 blocks of rows 4g .. 4g + 3
    const __m512i t0 = _mm512_unpacklo_epi32(v[4 * g], v[4 * g + 1]);
    const __m512i t1 = _mm512_unpackhi_epi32(v[4 * g], v[4 * g + 1]);
    const __m512i t2 = _mm512_unpacklo_epi32(v[4 * g + 2], v[4 * g + 3]);
    const __m512i t3 = _mm512_unpackhi_epi32(v[4 * g + 2], v[4 * g + 3]);
    u[4 * g] = _mm512_unpacklo_epi64(t0, t2);      // lane k: dword 4k of the four rows
    u[4 * g + 1] = _mm512_unpackhi_epi64(t0, t2);  // dword 4k + 1
    u[4 * g + 2] = _mm512_unpacklo_epi64(t1, t3);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t1, t3);
  }
  for (int j = 0; j < 4; ++j) {  // gather lane k of the four row groups: dword 4k + j of all rows
    const __m512i a = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);       // u0.L0 u0.L2 u1.L0 u1.L2
    const __m512i b = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xDD);       // u0.L1 u0.L3 u1.L1 u1.L3
    const __m512i c = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);  // u2.L0 u2.L2 u3.L0 u3.L2
    const __m512i d = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xDD);
    v[j] = _mm512_shuffle_i32x4(a, c, 0x88);       // lane 0 of u0..u3
    v[8 + j] = _mm512_shuffle_i32x4(a, c, 0xDD);   // lane 2
    v[4 + j] = _mm512_shuffle_i32x4(b, d, 0x88);   // lane 1
    v[12 + j] = _mm512_shuffle_i32x4(b, d, 0xDD);  // lane 3
  }
}
#endif

#if defined(__AVX2__)
// In place: v[r] holds 8 dwords of row r; afterwards v[p] holds dword p of every row.
inline void transpose8x8_epi32(__m256i v[8]) {
  __m256i u[8];
  for (int g = 0; g < 2; ++g) {  // within each 128-bit lane, 4x4 blocks of rows 4g .. 4g + 3
    const __m256i t0 = _mm256_unpacklo_epi32(v[4 * g], v[4 * g + 1]);
    const __m256i t1 = _mm256_unpackhi_epi32(v[4 * g], v[4 * g + 1]);
    const __m256i t2 = _mm256_unpacklo_epi32(v[4 * g + 2], v[4 * g + 3]);
    const __m256i t3 = _mm256_unpackhi_epi32(v[4 * g + 2], v[4 * g + 3]);
    u[4 * g] = _mm256_unpacklo_epi64(t0, t2);      // lane k: dword 4k of the four rows
    u[4 * g + 1] = _mm256_unpackhi_epi64(t0, t2);  // dword 4k + 1
    u[4 * g + 2] = _mm256_unpacklo_epi64(t1, t3);
    u[4 * g + 3] = _mm256_unpackhi_epi64(t1, t3);
  }
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);      // dword j of rows 0-3, 4-7
    v[4 + j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);  // dword 4 + j
  }
}
#endif

}  // namespace
}  // namespace engine
