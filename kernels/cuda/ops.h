// The forward pass's small GPU kernels: RMSNorm, RoPE, SwiGLU, residual and bias adds. No CUDA
// types: pointers are device pointers, `stream` a cudaStream_t; every call is asynchronous and
// checks its launch (engine::Error naming the call and device). Same formulas as kernels/cpu/ops.h.
#pragma once

#include <cstdint>

#include "kernels/cpu/ops.h"

namespace engine {

// out[r][i] = x[r][i] / sqrt(mean(x[r]^2) + eps) * weight[i] for r < rows, i < n; out may be x.
void cuda_rms_norm(const float* x, const float* weight, float* out, int64_t rows, int64_t n, float eps,
                   void* stream);

// Rotary embedding in place of rows x n_heads heads of head_dim values; row r is at position
// pos0 + r, or *pos_dev + r when pos_dev (device memory) is given, for launches captured in a CUDA
// graph and replayed at every position. p.freq_factors, when set, must point to device memory
// (n_rot / 2 floats).
void cuda_rope(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t pos0, const RopeParams& p,
               void* stream, const int64_t* pos_dev = nullptr);

// out[i] = silu(gate[i]) * up[i]; out may be gate.
void cuda_swiglu(const float* gate, const float* up, float* out, int64_t n, void* stream);

// x[i] += y[i]
void cuda_add(float* x, const float* y, int64_t n, void* stream);

// y[r][c] += bias[c] for r < rows, c < cols
void cuda_add_bias(float* y, const float* bias, int64_t rows, int64_t cols, void* stream);

}  // namespace engine
