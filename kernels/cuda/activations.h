// Activations quantized to 8 bits for the integer matrix-vector kernels (kernels/cuda/matvec.h).
// No CUDA types: pointers are device pointers, `stream` a cudaStream_t.
#pragma once

#include <cstdint>

namespace engine {

// 32 activations: q = round(x / d) (ties to even) with d = max|x| / 127, and sum = d * (sum of q),
// the block's dequantized sum. Rows of K values (K % 32 == 0) are K / 32 consecutive blocks.
struct alignas(8) ActQ8Block {
  float d, sum;
  int8_t q[32];
};
static_assert(sizeof(ActQ8Block) == 40);

// xq[i] = the block of x[32 i .. 32 i + 31], for n values (a multiple of 32). Asynchronous on
// `stream`; throws engine::Error for a bad n or a failed launch.
void cuda_quantize_activations(const float* x, int64_t n, ActQ8Block* xq, void* stream);

// The same on the host with the kernels' arithmetic: bit for bit what every GPU quantizer
// (this one, and those fused into RMSNorm and SwiGLU) makes.
void quantize_activations_on_host(const float* x, int64_t n, ActQ8Block* xq);

}  // namespace engine
