// The GPU's small kernels against the CPU ones (themselves checked against double-precision
// references in test_cpu_ops.cpp) on fresh random data, outputs poisoned with NaN first: RMSNorm
// within 1e-6 relative, RoPE (normal, NeoX, YaRN with frequency factors) within 1e-5 (device and
// host sinf/cosf/powf may differ by an ulp, at positions up to 4096), SwiGLU and the adds within
// 1e-6. Skips (visibly) where no CUDA device exists.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "scheduler/cuda_runtime.h"

#if ENGINE_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/ops.h"
#endif

namespace engine {
namespace {

#if ENGINE_HAVE_CUDA
// A device copy of host floats, freed with the object.
struct DeviceFloats {
  float* p = nullptr;
  size_t n = 0;
  explicit DeviceFloats(const std::vector<float>& v) : n(v.size()) {
    EXPECT_EQ(cudaMalloc(&p, n * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, v.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  }
  explicit DeviceFloats(size_t count) : n(count) {
    EXPECT_EQ(cudaMalloc(&p, n * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemset(p, 0xff, n * sizeof(float)), cudaSuccess);  // NaN poison
  }
  ~DeviceFloats() { cudaFree(p); }
  std::vector<float> get() const {
    std::vector<float> v(n);
    EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
};

double rel(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    err += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    norm += double(want[i]) * want[i];
  }
  return std::sqrt(err / norm);
}

std::vector<float> random_floats(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}
#endif

TEST(CudaOps, RmsNormSwigluAndAddsMatchTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  const int64_t rows = 3, n = 5120;
  const auto x = random_floats(rows * n, rng), w = random_floats(n, rng), up = random_floats(rows * n, rng);
  std::vector<float> want(rows * n);
  for (int64_t r = 0; r < rows; ++r) rms_norm(x.data() + r * n, w.data(), want.data() + r * n, n, 1e-6f);
  DeviceFloats dx(x), dw(w), dout(rows * n), dup(up);
  cuda_rms_norm(dx.p, dw.p, dout.p, rows, n, 1e-6f, nullptr);
  EXPECT_LE(rel(dout.get(), want), 1e-6);
  {  // in place, as the per-head q/k norms run
    DeviceFloats inplace(x);
    cuda_rms_norm(inplace.p, dw.p, inplace.p, rows, n, 1e-6f, nullptr);
    EXPECT_LE(rel(inplace.get(), want), 1e-6);
  }

  swiglu(x.data(), up.data(), want.data(), rows * n);
  cuda_swiglu(dx.p, dup.p, dout.p, rows * n, nullptr);
  EXPECT_LE(rel(dout.get(), want), 1e-6);
  {  // in place into the gate, as the stage runs it
    DeviceFloats inplace(x);
    cuda_swiglu(inplace.p, dup.p, inplace.p, rows * n, nullptr);
    EXPECT_LE(rel(inplace.get(), want), 1e-6);
  }

  for (int64_t i = 0; i < rows * n; ++i) want[i] = x[i] + up[i];
  cuda_add(dx.p, dup.p, rows * n, nullptr);
  EXPECT_LE(rel(dx.get(), want), 1e-6);

  for (int64_t i = 0; i < rows * n; ++i) want[i] = up[i] + w[i % n];
  cuda_add_bias(dup.p, dw.p, rows, n, nullptr);
  EXPECT_LE(rel(dup.get(), want), 1e-6);
#endif
}

TEST(CudaOps, RopeNormalNeoxAndYarnMatchTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  const int64_t rows = 5, heads = 8, hd = 128, pos0 = 4091;
  std::vector<float> factors(hd / 2);
  for (auto& f : factors) f = 1.0f + float(rng() % 8);
  DeviceFloats dfactors(factors);
  for (int variant = 0; variant < 3; ++variant) {
    RopeParams p;
    p.n_rot = hd;
    p.freq_base = 1e6f;
    p.neox = variant != 0;
    if (variant == 2) {  // YaRN x4 on a 32k model, with Llama 3.1-style frequency divisors
      p.freq_scale = 0.25f;
      p.ext_factor = 1.0f;
      p.n_ctx_orig = 32768;
    }
    const auto x = random_floats(rows * heads * hd, rng);
    std::vector<float> want = x;
    RopeParams host = p;
    if (variant == 2) host.freq_factors = factors.data();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t h = 0; h < heads; ++h) rope(want.data() + (r * heads + h) * hd, pos0 + r, host);
    }
    DeviceFloats dx(x);
    if (variant == 2) p.freq_factors = dfactors.p;
    cuda_rope(dx.p, rows, heads, hd, pos0, p, nullptr);
    EXPECT_LE(rel(dx.get(), want), 1e-5) << "variant " << variant;
  }
#endif
}

}  // namespace
}  // namespace engine
