// Quantized matrix-vector products on the GPU, the decode step's matmuls. No CUDA types: pointers
// are device pointers, `stream` a cudaStream_t.
#pragma once

#include <cstdint>

#include "engine/ggml_type.h"

namespace engine {

constexpr int kCudaMatvecMaxBatch = 8;

// 32 activations quantized for the integer (dp4a) kernels: q = round(x / d) with
// d = max|x| / 127, and sum = d * (sum of q), the block's dequantized sum.
struct alignas(8) ActQ8Block {
  float d, sum;
  int8_t q[32];
};
static_assert(sizeof(ActQ8Block) == 40);

// The activations of a matvec: f32 rows, and for the types whose kernel takes 8-bit activations
// (cuda_matvec_wants_q8) the same rows as ActQ8Blocks from cuda_quantize_activations.
struct MatvecInput {
  const float* x = nullptr;
  const ActQ8Block* xq = nullptr;
};

// Whether cuda_matvec has a kernel for the type.
bool cuda_matvec_supports(GgmlType type);

// Whether the type's kernel multiplies 8-bit activations (Q4_K, Q5_K, Q6_K: dp4a on the weights'
// integer codes, as llama.cpp's and our CPU kernels do) rather than f32 ones (the rest).
bool cuda_matvec_wants_q8(GgmlType type);

// xq[i] = the ActQ8Block of x[32 i .. 32 i + 31], for n values (a multiple of 32; rows of K
// values with K % 32 == 0 stay whole blocks). Asynchronous on `stream`.
void cuda_quantize_activations(const float* x, int64_t n, ActQ8Block* xq, void* stream);

// The same on the host, with the kernel's arithmetic (for tests: bit for bit what the kernel makes).
void quantize_activations_on_host(const float* x, int64_t n, ActQ8Block* xq);

// y[b * N + n] = sum_k W[n][k] * x[b * K + k] for b < n_batch (1 .. kCudaMatvecMaxBatch), n < N.
// W: N rows of K values of `type` in GGUF block layout, row n at w + n * row bytes (K a multiple
// of 256 for the K-quants, of 32 for Q4_0..Q8_0, of 8 for F16/BF16/F32); in.x f32 rows, in.xq
// their blocks where the type wants them (row b at in.xq + b * K / 32); y f32. Asynchronous on
// `stream`; throws engine::Error for an unsupported type or batch, missing activation blocks, or
// a failed launch.
void cuda_matvec(GgmlType type, const void* w, int64_t K, int64_t N, MatvecInput in, int n_batch, float* y,
                 void* stream);

// The same arithmetic on the host: every lane's share of every row computed in turn by the code
// the kernels run, summed per row. For tests without a GPU: it checks which bytes and activations
// each lane takes, which is everything but the launch and the warp's shuffles.
void cuda_matvec_lanes_on_host(GgmlType type, const void* w, int64_t K, int64_t N, MatvecInput in, int n_batch,
                               float* y);

}  // namespace engine
