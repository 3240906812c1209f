// The warp-level pieces the tensor-core kernels (prompt matmul, prefill attention) share:
// asynchronous global -> shared copies, ldmatrix fragment loads and the m16n8k16 fp16 mma.
//
// Fragments of mma.m16n8k16 (g = lane / 4, t = lane % 4): A (16 x 16, row-major) a0 = row g,
// columns 2t and 2t + 1; a1 = row g + 8, same columns; a2, a3 = the same rows at columns 2t + 8,
// 2t + 9. B (16 x 8, element (k, n)) b0 = k 2t and 2t + 1 at n = g; b1 = k 2t + 8, 2t + 9. C
// (16 x 8, f32) c0, c1 = row g, columns 2t and 2t + 1; c2, c3 = row g + 8. Each 32-bit register
// holds two fp16 values, the lower index in the low half.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace engine {

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared without passing through registers; zero-filled when !valid (then
// nothing is read from gmem, which must still be a valid address).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(smem)), "l"(gmem),
               "r"(valid ? 16 : 0));
}

// 8 bytes, through L1 (cp.async.cg takes only 16): for rows of blocks that are 8-byte aligned.
__device__ __forceinline__ void cp_async8(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_address(smem)), "l"(gmem),
               "r"(valid ? 8 : 0));
}

// kBytes (16 or 8) global -> shared, zero-filled when !valid.
template <int kBytes>
__device__ __forceinline__ void cp_async(void* smem, const void* gmem, bool valid) {
  static_assert(kBytes == 16 || kBytes == 8);
  if constexpr (kBytes == 16) {
    cp_async16(smem, gmem, valid);
  } else {
    cp_async8(smem, gmem, valid);
  }
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most kPending of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Four 8 x 8 fp16 matrices from shared memory: lanes 8i .. 8i + 7 give the row addresses of
// matrix i (16 bytes each), and each lane receives row g, columns 2t and 2t + 1 of every matrix.
__device__ __forceinline__ void ldmatrix_x4(const void* smem, uint32_t r[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(smem)));
}

// The same, transposed: each lane receives rows 2t and 2t + 1 of column g of every matrix.
__device__ __forceinline__ void ldmatrix_x4_trans(const void* smem, uint32_t r[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(smem)));
}

// c (16 x 8, f32) += a (16 x 16 fp16, row) . b (16 x 8 fp16, col)
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as one register of fp16 values (lo in the low half), rounded to nearest.
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

}  // namespace engine
