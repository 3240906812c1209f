// The forward pass's small kernels (see ops.h). All are memory-bound elementwise passes except
// RMSNorm's per-row reduction.
//   rms_norm: one 256-thread block per row; sum of squares in double (as the CPU reference), a
//             shared-memory tree, then one scaled write per element. Bound: memory (reads x once).
//   rope:     one thread per (row, head, rotated pair), angles from rope_rotation (shared with the
//             CPU). Bound: memory, plus one powf/cosf/sinf per pair.
//   swiglu, add, add_bias: one thread per element, grid-stride. Bound: memory.
#include "../cpu/rope_math.h"
#include "ops.h"
#include "scheduler/cuda_check.h"

namespace engine {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 * 64 ? b : 65535 * 64);  // grid-stride loops cover the rest
}

// x and out may be the same rows (per-head q/k norms run in place): no __restrict__ on them.
__global__ void rms_norm_kernel(const float* x, const float* __restrict__ w, float* out, int64_t n, float eps) {
  __shared__ double partial[kThreads];
  const float* xr = x + int64_t(blockIdx.x) * n;
  float* yr = out + int64_t(blockIdx.x) * n;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) ss += double(xr[i]) * double(xr[i]);
  partial[threadIdx.x] = ss;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  const float scale = static_cast<float>(1.0 / sqrt(partial[0] / double(n) + double(eps)));
  for (int64_t i = threadIdx.x; i < n; i += kThreads) yr[i] = xr[i] * scale * w[i];
}

__global__ void rope_kernel(float* __restrict__ x, int64_t rows, int64_t n_heads, int64_t head_dim,
                            int64_t pos0, const int64_t* __restrict__ pos_dev, RopeParams p, float corr_low,
                            float corr_high) {
  if (pos_dev != nullptr) pos0 = *pos_dev;
  const int half = p.n_rot / 2;
  const int64_t total = rows * n_heads * half;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(t % half);
    const int64_t head = t / half;  // row * n_heads + h
    const int64_t row = head / n_heads;
    float c, s;
    rope_rotation(p, pos0 + row, i, corr_low, corr_high, &c, &s);
    float* h = x + head * head_dim;
    const int a = p.neox ? i : 2 * i;
    const int b = p.neox ? i + half : 2 * i + 1;
    const float x0 = h[a], x1 = h[b];
    h[a] = x0 * c - x1 * s;
    h[b] = x0 * s + x1 * c;
  }
}

// out may be gate (the stage runs it in place): no __restrict__ on them.
__global__ void swiglu_kernel(const float* gate, const float* __restrict__ up, float* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void add_kernel(float* __restrict__ x, const float* __restrict__ y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    x[i] += y[i];
  }
}

__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    y[i] += bias[i % cols];
  }
}

}  // namespace

void cuda_rms_norm(const float* x, const float* weight, float* out, int64_t rows, int64_t n, float eps,
                   void* stream) {
  if (rows <= 0) return;
  if (rows > 0x7fffffff) throw_bad_argument("cuda_rms_norm", "rows", rows);
  rms_norm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, weight, out, n, eps);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

void cuda_rope(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t pos0, const RopeParams& p,
               void* stream, const int64_t* pos_dev) {
  const int64_t total = rows * n_heads * (p.n_rot / 2);
  if (total <= 0) return;
  float corr_low, corr_high;
  rope_yarn_corr(p, &corr_low, &corr_high);
  rope_kernel<<<blocks_for(total), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, rows, n_heads, head_dim, pos0, pos_dev, p, corr_low, corr_high);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

void cuda_swiglu(const float* gate, const float* up, float* out, int64_t n, void* stream) {
  if (n <= 0) return;
  swiglu_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(gate, up, out, n);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

void cuda_add(float* x, const float* y, int64_t n, void* stream) {
  if (n <= 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, y, n);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

void cuda_add_bias(float* y, const float* bias, int64_t rows, int64_t cols, void* stream) {
  if (rows * cols <= 0) return;
  add_bias_kernel<<<blocks_for(rows * cols), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(y, bias, rows, cols);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace engine
