// Quantized matrix-vector products on the GPU, the decode step's matmuls. No CUDA types: pointers
// are device pointers, `stream` a cudaStream_t.
#pragma once

#include <cstdint>
#include <span>

#include "engine/ggml_type.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/activations.h"

namespace engine {

constexpr int kCudaMatvecMaxBatch = 8;

// The activations of a matvec: f32 rows, and for the types whose kernel takes 8-bit activations
// (cuda_matvec_wants_q8) the same rows as ActQ8Blocks from cuda_quantize_activations.
struct MatvecInput {
  const float* x = nullptr;
  const ActQ8Block* xq = nullptr;
};

// What a matrix product does with its result row: v = (W x)[n] + bias[n] (when bias is given),
// then y[n] = y[n] + v when accumulating (a residual add), y[n] = v otherwise.
struct ProductEpilogue {
  const float* bias = nullptr;
  bool accumulate = false;
};

// Whether cuda_matvec has a kernel for the type.
bool cuda_matvec_supports(GgmlType type);

// Whether the type's kernel multiplies 8-bit activations (Q4_K, Q5_K, Q6_K: dp4a on the weights'
// integer codes, as llama.cpp's and our CPU kernels do) rather than f32 ones (the rest).
bool cuda_matvec_wants_q8(GgmlType type);

// Which kernel: direct (weights loaded into registers, every type and batch), or staged (Q4_K,
// Q5_K and Q6_K at batch 1: the same arithmetic and bits, the weights copied ahead into shared
// memory by cp.async so that more of them are in flight than registers hold). automatic takes
// direct, or staged where it runs with ENGINE_CUDA_MATVEC=staged. Tests and the bench ask for each.
enum class MatvecKernel { automatic, direct, staged };

// Whether the staged kernel runs the type at this batch.
bool cuda_matvec_has_staged(GgmlType type, int n_batch);

// y[b * N + n] = sum_k W[n][k] * x[b * K + k] for b < n_batch (1 .. kCudaMatvecMaxBatch), n < N.
// W: N rows of K values of `type` in the GPU layout (engine/gpu_layout.h: GGUF blocks, Q6_K rows
// regrouped), row n at w + n * gpu_row_bytes (K a multiple
// of 256 for the K-quants, of 32 for Q4_0..Q8_0, of 8 for F16/BF16/F32); in.x f32 rows, in.xq
// their blocks where the type wants them (row b at in.xq + b * K / 32); y f32, written as `ep`
// says. Asynchronous on `stream`; throws engine::Error for an unsupported type or batch, missing
// activation blocks, or a failed launch.
void cuda_matvec(GgmlType type, const void* w, int64_t K, int64_t N, MatvecInput in, int n_batch, float* y,
                 void* stream, ProductEpilogue ep = {}, MatvecKernel kernel = MatvecKernel::automatic);

// One matrix of a fused launch: N rows at w (GPU layout, as cuda_matvec's W), its results to y
// as ep says.
struct MatvecOutput {
  const void* w = nullptr;
  int64_t N = 0;
  float* y = nullptr;
  ProductEpilogue ep = {};
};

constexpr int kCudaMatvecMaxFused = 3;

// cuda_matvec for up to kCudaMatvecMaxFused matrices of one type and width K that multiply the
// same activations (a layer's q, k and v; its gate and up) in one launch: their rows share one
// grid, so the small ones (k and v are a fifth of q in grouped-query models) no longer pay a
// launch and a tail of their own. Each output is exactly what cuda_matvec would write.
void cuda_matvec_fused(GgmlType type, int64_t K, MatvecInput in, int n_batch, std::span<const MatvecOutput> outs,
                       void* stream, MatvecKernel kernel = MatvecKernel::automatic);

// RoPE and the KV cache store in the epilogue of a decode step's q/k/v products (batch 1, an f16
// cache): the rows of each q and k head are taken in pairs by neighbouring warps of a block, and
// the pair's first warp rotates both results (the RoPE kernel's angles and arithmetic:
// cuda_rope_store_kv gives the same bits) and writes them to y, and k's also to the cache row of
// the position; v's results go to y and the cache as they are. roles[s] says what output s of
// the launch is; q and k outputs must be whole heads, and no output accumulates.
enum class QkvRole { q, k, v };

struct MatvecRope {
  RopeParams p;                       // n_rot, NeoX order, frequencies (kernels/cpu/ops.h)
  int64_t head_dim = 0;
  int64_t pos = 0;                    // the token's position, unless pos_dev is given
  const int64_t* pos_dev = nullptr;   // device memory (a decode graph replayed at every position)
  uint16_t* k_cache = nullptr;        // the layer's f16 K and V rows: [position][kv_dim]
  uint16_t* v_cache = nullptr;
  int64_t kv_dim = 0;
  QkvRole roles[kCudaMatvecMaxFused] = {QkvRole::q, QkvRole::k, QkvRole::v};
};

// cuda_matvec_fused at batch 1 with the RoPE epilogue above (K-quant types: the 8-bit
// activations in in.xq).
void cuda_matvec_fused_rope(GgmlType type, int64_t K, MatvecInput in, std::span<const MatvecOutput> outs,
                            const MatvecRope& rope, void* stream, MatvecKernel kernel = MatvecKernel::automatic);

// The same arithmetic on the host: every lane's share of every row computed in turn by the code
// the kernels run, summed per row. For tests without a GPU: it checks which bytes and activations
// each lane takes, which is everything but the launch and the warp's shuffles.
void cuda_matvec_lanes_on_host(GgmlType type, const void* w, int64_t K, int64_t N, MatvecInput in, int n_batch,
                               float* y, ProductEpilogue ep = {});

}  // namespace engine
