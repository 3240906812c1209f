// GPU matrix-vector kernels against a double-precision reference built from the CPU dequantizer
// (itself checked against the gguf package), fresh random weights and activations, outputs
// poisoned with NaN first. Skips (visibly) where no CUDA device exists.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/quantize.h"
#include "random_blocks.h"
#include "scheduler/cuda_runtime.h"

#if ENGINE_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/matvec.h"
#endif

namespace engine {
namespace {

#if ENGINE_HAVE_CUDA
// Relative error of y ([B][N]) against the double-precision product of the dequantized weights wf
// ([N][K]) with x ([B][K]).
double rel_to_reference(const std::vector<float>& wf, const std::vector<float>& x, const std::vector<float>& y,
                        int B, int64_t N, int64_t K) {
  double err = 0, norm = 0;
  for (int b = 0; b < B; ++b) {
    for (int64_t n = 0; n < N; ++n) {
      double want = 0;
      for (int64_t k = 0; k < K; ++k) want += double(wf[n * K + k]) * double(x[b * K + k]);
      err += (y[b * N + n] - want) * (y[b * N + n] - want);
      norm += want * want;
    }
  }
  return std::sqrt(err / norm);
}
#endif

TEST(CudaMatvec, EverySupportedTypeAndBatchAgainstDoubleReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t N = 37;  // not a multiple of the warps per block
  for (const TypeTraits& tr : all_type_traits()) {
    if (!cuda_matvec_supports(tr.type)) continue;
    // An odd number of super-blocks; plain floats also get a tail beyond the vector loop.
    const int64_t K = tr.block_size == 1 ? 9 * 256 + 8 : 9 * 256;
    const uint64_t row_bytes = type_bytes(tr.type, K);
    const auto w = test::random_blocks(tr.type, K * N, rng);
    std::vector<float> wf(K * N);
    for (int64_t n = 0; n < N; ++n) dequantize_row(tr.type, w.data() + n * row_bytes, wf.data() + n * K, K);
    for (const int B : {1, 3, 8}) {
      std::vector<float> x(B * K);
      for (auto& v : x) v = normal(rng);
      void* d_w = nullptr;
      float *d_x = nullptr, *d_y = nullptr;
      ASSERT_EQ(cudaMalloc(&d_w, w.size()), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&d_x, x.size() * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&d_y, B * N * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(d_w, w.data(), w.size(), cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(d_x, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_EQ(cudaMemset(d_y, 0xff, B * N * sizeof(float)), cudaSuccess);  // NaN poison
      cuda_matvec(tr.type, d_w, K, N, d_x, B, d_y, nullptr);
      std::vector<float> y(B * N);
      ASSERT_EQ(cudaMemcpy(y.data(), d_y, y.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
      cudaFree(d_w);
      cudaFree(d_x);
      cudaFree(d_y);
      for (int64_t i = 0; i < B * N; ++i) {
        ASSERT_TRUE(std::isfinite(y[i])) << tr.name << " batch " << B << " row " << i % N;
      }
      // f32 products and sums over K ~ 2300 values: rounding well below 1e-5.
      EXPECT_LE(rel_to_reference(wf, x, y, B, N, K), 1e-5) << tr.name << " batch " << B;
    }
  }
#endif
}

// Argument checks happen before any CUDA call, so this runs wherever the backend is built.
TEST(CudaMatvec, RefusesBadBatchAndUnsupportedType) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  EXPECT_THROW(cuda_matvec(GgmlType::Q4_K, nullptr, 256, 4, nullptr, 0, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_matvec(GgmlType::Q4_K, nullptr, 256, 4, nullptr, kCudaMatvecMaxBatch + 1, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_matvec(GgmlType::Q2_K, nullptr, 256, 4, nullptr, 1, nullptr, nullptr), Error);
#endif
}

// The kernels' lane arithmetic (which bytes and activations each lane takes) on the host, against
// the same double-precision reference: runs wherever the backend is built, GPU or not.
TEST(CudaMatvec, LaneArithmeticOnTheHostAgainstDoubleReference) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t N = 5;
  for (const TypeTraits& tr : all_type_traits()) {
    if (!cuda_matvec_supports(tr.type)) continue;
    const int64_t K = tr.block_size == 1 ? 9 * 256 + 8 : 9 * 256;
    const uint64_t row_bytes = type_bytes(tr.type, K);
    const auto w = test::random_blocks(tr.type, K * N, rng);
    std::vector<float> wf(K * N);
    for (int64_t n = 0; n < N; ++n) dequantize_row(tr.type, w.data() + n * row_bytes, wf.data() + n * K, K);
    for (const int B : {1, 3, 8}) {
      std::vector<float> x(B * K), y(B * N, std::nanf(""));
      for (auto& v : x) v = normal(rng);
      cuda_matvec_lanes_on_host(tr.type, w.data(), K, N, x.data(), B, y.data());
      EXPECT_LE(rel_to_reference(wf, x, y, B, N, K), 1e-5) << tr.name << " batch " << B;
    }
  }
#endif
}

}  // namespace
}  // namespace engine
