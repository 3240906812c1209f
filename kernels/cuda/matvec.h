// Quantized matrix-vector products on the GPU, the decode step's matmuls. No CUDA types: pointers
// are device pointers, `stream` a cudaStream_t.
#pragma once

#include <cstdint>

#include "engine/ggml_type.h"

namespace engine {

constexpr int kCudaMatvecMaxBatch = 8;

// Whether cuda_matvec has a kernel for the type.
bool cuda_matvec_supports(GgmlType type);

// y[b * N + n] = sum_k W[n][k] * x[b * K + k] for b < n_batch (1 .. kCudaMatvecMaxBatch), n < N.
// W: N rows of K values of `type` in GGUF block layout, row n at w + n * row bytes (K a multiple
// of 256 for the K-quants, of 32 for Q4_0..Q8_0, of 8 for F16/BF16/F32); x and y f32. Asynchronous on
// `stream`; throws engine::Error for an unsupported type or batch, or a failed launch.
void cuda_matvec(GgmlType type, const void* w, int64_t K, int64_t N, const float* x, int n_batch,
                 float* y, void* stream);

// The same arithmetic on the host: every lane's share of every row computed in turn by the code
// the kernels run, summed per row. For tests without a GPU: it checks which bytes and activations
// each lane takes, which is everything but the launch and the warp's shuffles.
void cuda_matvec_lanes_on_host(GgmlType type, const void* w, int64_t K, int64_t N, const float* x,
                               int n_batch, float* y);

}  // namespace engine
