// One rotated pair of a q or k head, with the arithmetic every GPU path that applies RoPE shares
// (the RoPE kernel in ops.cu and the q/k/v matvec's epilogue in matvec.cu give the same bits):
// x0 = r0 c - r1 s, x1 = r0 s + r1 c, each product and sum rounded as written, so that no compiler
// contraction into FMAs makes the two differ.
#pragma once

namespace engine {

__device__ __forceinline__ void rotate_pair(float r0, float r1, float c, float s, float* x0, float* x1) {
  *x0 = __fsub_rn(__fmul_rn(r0, c), __fmul_rn(r1, s));
  *x1 = __fadd_rn(__fmul_rn(r0, s), __fmul_rn(r1, c));
}

// Where permuted row r (0 .. head_dim - 1) of a rotated head lies in the head, so that rows 2i and
// 2i + 1 are the pair RoPE rotates together: for i < n_rot / 2 in NeoX order dims i and
// i + n_rot / 2, otherwise (normal order, and the unrotated dims past n_rot) dims 2i and 2i + 1
// already.
__host__ __device__ __forceinline__ int rope_pair_dim(int r, int n_rot, bool neox) {
  const int i = r / 2, half = n_rot / 2;
  if (neox && i < half) return r % 2 == 0 ? i : i + half;
  return r;
}

}  // namespace engine
