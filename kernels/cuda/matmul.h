// Tensor-core matrix products for prompt batches: weights dequantized tile by tile to fp16 in
// shared memory, activations in fp16, products summed in f32 by mma.sync, or on Hopper by wgmma.
// No CUDA types: pointers are device pointers, `stream` a cudaStream_t.
#pragma once

#include <cstdint>
#include <span>

#include "engine/ggml_type.h"
#include "kernels/cuda/matvec.h"

namespace engine {

// Whether cuda_matmul has a tile loader for the type and K: K a multiple of 256 for the
// K-quants, of 128 for Q8_0 and Q4_0..Q5_1 (whole windows of a super-block or four blocks), of 32
// for F32, F16 and BF16.
bool cuda_matmul_supports(GgmlType type, int64_t K);

// Tokens per block of the matmul: chosen by the grid's size, or as asked (tests run both).
enum class MatmulTokens { automatic, tiles_of_128, tiles_of_64 };

// The kernel: automatic takes wgmma where the device has it (cuda_matmul_has_wgmma) and the type
// and K fit its 64-value steps (the K-quants, Q8_0..Q5_1, and float types with K % 64 == 0),
// unless ENGINE_CUDA_WGMMA=0; else mma.sync (every GPU we build for). wgmma_specialized is the
// warp-specialized wgmma kernel (producer warps copy and decode, consumer warpgroups multiply;
// 128-token tiles only), which automatic takes for 128-token tiles with
// ENGINE_CUDA_WGMMA=specialized. Tests and the bench ask for each.
enum class MatmulKernel { automatic, mma_sync, wgmma, wgmma_specialized };

// Whether the current device runs the wgmma kernel (built for sm_90a: compute capability 9.0,
// H100 and H200).
bool cuda_matmul_has_wgmma();

// A device buffer of `floats` floats where a product may keep the partial sums of a split K
// (splits x M x N of them); it must not overlap y or x16. Without one, K is never split.
struct MatmulWorkspace {
  float* partials = nullptr;
  int64_t floats = 0;
};

// How cuda_matmul runs, each part chosen unless a test or the bench asks.
struct MatmulOptions {
  MatmulTokens tokens = MatmulTokens::automatic;
  MatmulKernel kernel = MatmulKernel::automatic;
  // Ways to split K: 0 chooses (more than one only for a single matrix whose grid would leave
  // SMs idle, where the workspace holds the partial sums: matmul_splits.h); else exactly that
  // many, which must divide K into whole windows of the type's loader, fit the workspace, and
  // (above 1) be for a single matrix. The splits' partial sums are added in order by a second
  // kernel, so a split product is deterministic.
  int splits = 0;
  MatmulWorkspace workspace = {};
};

// What cuda_matmul_fused launches for these matrices and options on the current device.
struct MatmulLaunch {
  MatmulKernel kernel;
  MatmulTokens tokens;
  int splits;
};

// x16[i] = fp16(x[i]) for i < n, clamped to the largest finite fp16 (65504) so that an outlier
// activation is large, never infinite: the matmul's activation input.
void cuda_to_f16_saturated(const float* x, uint16_t* x16, int64_t n, void* stream);

// y[m * N + n] = sum_k W[n][k] * x16[m * K + k] for m < M (tokens), n < N (rows). W: N rows of K
// values of `type` in the GPU layout (engine/gpu_layout.h), row n at w + n * gpu_row_bytes, w
// 16-byte aligned; x16 from cuda_to_f16_saturated (16-byte aligned); y f32, written as `ep` says (bias, residual add).
// Asynchronous on `stream`; throws engine::Error for an unsupported type or K, a kernel the device
// lacks, splits that do not fit, or a failed launch.
void cuda_matmul(GgmlType type, const void* w, int64_t K, int64_t N, const uint16_t* x16, int64_t M, float* y,
                 void* stream, ProductEpilogue ep = {}, const MatmulOptions& options = {});

// cuda_matmul for up to kCudaMatvecMaxFused matrices of one type and width K that multiply the
// same activations (a layer's q, k and v; its gate and up) in one launch: their row tiles share
// one grid, so the narrow ones (k and v: 8 tiles of 128 rows in QwQ-32B, 32 blocks at 512 tokens
// on a 132-SM card) fill the SMs with the wide one. Each output is exactly what cuda_matmul writes.
void cuda_matmul_fused(GgmlType type, int64_t K, const uint16_t* x16, int64_t M, std::span<const MatvecOutput> outs,
                       void* stream, const MatmulOptions& options = {});

// The kernel, tile and splits cuda_matmul_fused would take (the same checks, no launch).
MatmulLaunch cuda_matmul_launch(GgmlType type, int64_t K, int64_t M, std::span<const MatvecOutput> outs,
                                const MatmulOptions& options = {});

// The weight tile loader on the host: row (K values of `type`, GPU layout) copied window by
// window in the kernel's 16-byte chunks and decoded by the kernel's code to fp16 bits in
// out[0..K): eight values at a time as the mma.sync kernel decodes, or with `runs` as the wgmma
// kernel does (a K-quant group at a time). For tests without a GPU: which bytes each window holds
// and how each group decodes them, which is all of the kernels but the copies' timing and the mma.
void cuda_matmul_decode_row_on_host(GgmlType type, const void* row, int64_t K, uint16_t* out, bool runs = false);

}  // namespace engine
