// The forward pass's small GPU kernels: RMSNorm, RoPE with the KV cache store, SwiGLU, and the
// greedy token of a row of logits. No CUDA
// types: pointers are device pointers, `stream` a cudaStream_t; every call is asynchronous and
// checks its launch (engine::Error naming the call and device). Same formulas as kernels/cpu/ops.h.
#pragma once

#include <cstdint>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/activations.h"
#include "kernels/cuda/kv_cache.h"

namespace engine {

// out[r][i] = x[r][i] / sqrt(mean(x[r]^2) + eps) * weight[i] for r < rows, i < n; out may be x.
// With q8, the output is also written as 8-bit blocks (n % 32 == 0; row r at q8 + r * n / 32),
// bit for bit what cuda_quantize_activations would make of it, saving that launch; with f16, as
// cuda_to_f16_saturated would make it (kernels/cuda/matmul.h), saving that pass. out may be null
// where q8 or f16 is given (a prompt batch whose products all read fp16): then only they are
// written.
void cuda_rms_norm(const float* x, const float* weight, float* out, int64_t rows, int64_t n, float eps,
                   void* stream, ActQ8Block* q8 = nullptr, uint16_t* f16 = nullptr);

// out[i] = silu(gate[i]) * up[i]; out may be gate. With q8, also as 8-bit blocks (n % 32 == 0);
// with f16, also as saturated fp16; out may be null where q8 or f16 is given.
void cuda_swiglu(const float* gate, const float* up, float* out, int64_t n, void* stream, ActQ8Block* q8 = nullptr,
                 uint16_t* f16 = nullptr);

// A layer's attention inputs in one launch: rotary embedding in place on q (rows x n_head heads
// of head_dim) and k (rows x n_head_kv heads), row r at position pos + r, then k and v (rows x
// kv_dim) into the cache's rows pos .. pos + rows - 1, as fp16 or as q8_0 blocks (kv_cache.h; the
// CPU's quantization of the same values). pos = *pos_dev (device memory) when given, for launches
// captured in a CUDA graph and replayed at every position; pos0 otherwise. Dimensions past p.n_rot
// are stored unrotated. p.freq_factors, when set, must point to device memory (n_rot / 2 floats).
// head_dim <= 1024, and a multiple of 32 for q8_0.
void cuda_rope_store_kv(float* q, float* k, const float* v, int64_t rows, int64_t n_head, int64_t n_head_kv,
                        int64_t head_dim, int64_t pos0, const RopeParams& p, const KvLayer& cache, void* stream,
                        const int64_t* pos_dev = nullptr);

// *token = argmax_token of x[0..n) (engine/sampling.h: the highest value, the lowest index among
// equal ones, NaN as -infinity), so that greedy decoding copies one int to the host, not a row
// of logits. n >= 1.
void cuda_argmax(const float* x, int64_t n, int32_t* token, void* stream);

}  // namespace engine
