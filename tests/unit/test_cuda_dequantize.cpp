// GPU dequantization against the CPU reference, every supported type, on fresh random blocks with
// the output poisoned with NaN first. Skips (visibly) where no CUDA device exists.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/quantize.h"
#include "scheduler/cuda_runtime.h"
#include "random_blocks.h"

#if ENGINE_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/dequantize.h"
#endif

namespace engine {
namespace {

TEST(CudaDequantize, MatchesCpuReferenceForEveryType) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  for (const TypeTraits& tr : all_type_traits()) {
    const int64_t n = 256 * 1000 + (tr.block_size == 256 ? 0 : 32 * 3);  // not a multiple of the grid
    const auto blocks = test::random_blocks(tr.type, n, rng);
    std::vector<float> ref(n);
    dequantize_row(tr.type, blocks.data(), ref.data(), n);
    void* d_src = nullptr;
    float* d_dst = nullptr;
    ASSERT_EQ(cudaMalloc(&d_src, blocks.size()), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&d_dst, n * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d_src, blocks.data(), blocks.size(), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemset(d_dst, 0xff, n * sizeof(float)), cudaSuccess);  // NaN poison
    cuda_dequantize(tr.type, d_src, d_dst, n, nullptr);
    std::vector<float> out(n);
    ASSERT_EQ(cudaMemcpy(out.data(), d_dst, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(d_src);
    cudaFree(d_dst);
    double err = 0, norm = 0;
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(std::isfinite(out[i])) << tr.name << " element " << i;
      const double d = double(out[i]) - double(ref[i]);
      err += d * d;
      norm += double(ref[i]) * double(ref[i]);
    }
    // Same formulas; only FMA contraction may differ (~1 ulp).
    EXPECT_LE(std::sqrt(err / norm), 1e-6) << tr.name;
  }
#endif
}

}  // namespace
}  // namespace engine
