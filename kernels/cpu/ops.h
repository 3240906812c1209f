// CPU compute kernels of the forward pass. Activations are row-major f32 [rows x cols];
// weights are GGUF tensors used in place (quantized blocks straight from the mmap).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/ggml_type.h"
#include "thread_pool.h"

namespace engine {

// y[b][n] = sum_k W[n][k] * x[b][k] for b < n_batch, n < N: W is N rows of K values of `type`
// (ggml layout: row n is contiguous). Works on W's blocks directly: each block is decoded once
// into registers/stack and used for every batch row. Rows of W are split across the pool.
void matmul(GgmlType type, const void* w, int64_t K, int64_t N, const float* x, int64_t n_batch,
            float* y, ThreadPool& pool);

// One product of a group that shares its input: y[b][n] = sum_k W[n][k] * x[b][k], W N rows of
// `type` (as matmul's).
struct MatmulProduct {
  GgmlType type;
  const void* w;
  int64_t N;
  float* y;
};
// Every product of the group (q, k and v of a layer; gate and up) over the same input x (n_batch
// rows of K): the input is quantized once for each activation format the products read, and all
// their weight rows go to the pool in one loop. Each y is what matmul alone gives, bit for bit.
void matmul_group(std::span<const MatmulProduct> products, int64_t K, const float* x, int64_t n_batch,
                  ThreadPool& pool);

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i], for one row of n.
void rms_norm(const float* x, const float* weight, float* out, int64_t n, float eps);

// Rotary embedding of one head vector (head_dim values, the first n_rot rotated) at `pos`.
struct RopeParams {
  int n_rot = 0;
  bool neox = false;            // pairs (i, i + n_rot/2) instead of (2i, 2i+1)
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;      // 1 / linear or YaRN factor
  float ext_factor = 0.0f;      // YaRN: 1 enables the ramp between extrapolation and interpolation
  float attn_factor = 1.0f;
  float beta_fast = 32.0f, beta_slow = 1.0f;
  uint32_t n_ctx_orig = 0;      // YaRN: the context the model was trained with
  const float* freq_factors = nullptr;  // n_rot/2 divisors of the frequencies (Llama 3.1), or null
};
void rope(float* head, int64_t pos, const RopeParams& p);
// rope in two steps, for a token's heads, which all turn by the same angles: the cos and sin of
// each rotated pair's angle at pos (n_rot / 2 each), then one head turned by them; the same
// values as rope.
void rope_table(int64_t pos, const RopeParams& p, float* cos_out, float* sin_out);
void rope_apply(float* head, const float* cos, const float* sin, const RopeParams& p);

// YaRN's correction range (the dimensions between which it ramps from extrapolation to
// interpolation); both 0 without YaRN. The per-pair arithmetic is rope_rotation (rope_math.h).
void rope_yarn_corr(const RopeParams& p, float* low, float* high);

// Softmax weights in double: out[i] = e^((v_i - shift) / divisor) for the n floats v_i, each
// stride_bytes after the last from `values` (v_i <= shift, divisor > 0; out may be null), and
// their sum as the return value. Within a few ulp of std::exp; 0 where that is below 3.3e-308
// (-infinity included), NaN for NaN. Vectorized: a vocabulary row in a fraction of the time of
// std::exp value by value.
double exp_shifted(const void* values, size_t stride_bytes, int64_t n, double shift, double divisor,
                   double* out = nullptr);

// out[i] = silu(gate[i]) * up[i]
void swiglu(const float* gate, const float* up, float* out, int64_t n);

}  // namespace engine
