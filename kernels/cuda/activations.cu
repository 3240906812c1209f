// The activation quantizer (see activations.h). Launch: one thread per value in 256-thread
// blocks, so each warp holds one 32-value block. Bound: memory (reads 4 bytes, writes 1.25 per
// value).
#include <algorithm>
#include <cmath>

#include "activations.cuh"
#include "launch.cuh"
#include "scheduler/cuda_check.h"

namespace engine {
namespace {

__global__ void quantize_activations_kernel(const float* __restrict__ x, int64_t n, ActQ8Block* __restrict__ xq) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  wait_for_previous_kernel();
  allow_next_kernel();
  if (i >= n) return;  // n is a multiple of 32: whole warps leave together
  warp_quantize_block(x[i], int(i % 32), xq[i / 32]);
}

}  // namespace

void cuda_quantize_activations(const float* x, int64_t n, ActQ8Block* xq, void* stream) {
  if (n < 0 || n % 32 != 0) throw_bad_argument("cuda_quantize_activations", "n", n);
  if (n == 0) return;
  const auto blocks = static_cast<unsigned>((n + 255) / 256);
  launch_dependent(quantize_activations_kernel, blocks, 256, 0, static_cast<cudaStream_t>(stream), x, n, xq);
}

void quantize_activations_on_host(const float* x, int64_t n, ActQ8Block* xq) {
  if (n < 0 || n % 32 != 0) throw_bad_argument("quantize_activations_on_host", "n", n);
  for (int64_t i = 0; i < n / 32; ++i) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * i + j]));
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int q = activation_code(x[32 * i + j], amax);
      xq[i].q[j] = static_cast<int8_t>(q);
      sum += q;
    }
    xq[i].d = amax / 127.0f;
    xq[i].sum = xq[i].d * float(sum);
  }
}

}  // namespace engine
