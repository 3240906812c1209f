// The tensor-core prompt matmul against a double-precision reference built from the CPU
// dequantizer (itself checked against the gguf package) and the f32 activations, fresh random
// data, output poisoned with NaN first; its weight tile loader on the host against the CPU
// dequantizer rounded to fp16. The GPU cases skip (visibly) where no CUDA device exists; the
// loader and argument checks run in every CUDA build.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/half.h"
#include "engine/quantize.h"
#include "device_buffer.h"
#include "double_reference.h"
#include "fused_products.h"
#include "random_blocks.h"
#include "scheduler/cuda_runtime.h"
#include "test_support.h"

#if ENGINE_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/matmul.h"
#include "kernels/cuda/matmul_splits.h"
#include "kernels/cuda/swizzle.h"
#endif

namespace engine {
namespace {

#if ENGINE_HAVE_CUDA
// K for a type: three super-blocks (a multiple of every block size and of the 32-value step).
constexpr int64_t kK = 3 * 256;
// K for the host loader test: nine windows, so Q6_K's d values come from two 16-byte chunks.
constexpr int64_t kLoaderK = 9 * 256;

// Whether the tests also run the warp-specialized wgmma kernel: with ENGINE_CUDA_WGMMA=specialized
// (on Hopper), the setting that has the stage take it. tools/device-check runs the matmul and
// stage tests a second time so, in a process of their own: a fault in that kernel (a barrier wait
// that traps) would leave the process's CUDA context unusable for every test after it.
bool test_specialized_kernel() {
  const char* v = std::getenv("ENGINE_CUDA_WGMMA");
  return v != nullptr && std::string(v) == "specialized" && cuda_matmul_has_wgmma();
}

// The kernels the current device runs: mma.sync everywhere, wgmma on Hopper (and its
// warp-specialized variant, as test_specialized_kernel says).
std::vector<MatmulKernel> device_kernels() {
  std::vector<MatmulKernel> kernels = {MatmulKernel::mma_sync};
  if (cuda_matmul_has_wgmma()) kernels.push_back(MatmulKernel::wgmma);
  if (test_specialized_kernel()) kernels.push_back(MatmulKernel::wgmma_specialized);
  return kernels;
}

const char* kernel_name(MatmulKernel kernel) {
  switch (kernel) {
    case MatmulKernel::wgmma: return "wgmma";
    case MatmulKernel::wgmma_specialized: return "wgmma (warp-specialized)";
    default: return "mma.sync";
  }
}

// The tile sizes a kernel has: the warp-specialized one only 128 tokens.
std::vector<MatmulTokens> kernel_tiles(MatmulKernel kernel) {
  if (kernel == MatmulKernel::wgmma_specialized) return {MatmulTokens::tiles_of_128};
  return {MatmulTokens::tiles_of_128, MatmulTokens::tiles_of_64};
}

// want[m * N + n] = sum_k wf[n * K + k] * x[m * K + k], in double: the products' reference.
std::vector<double> double_product(const std::vector<float>& wf, const std::vector<float>& x, int64_t K, int64_t N,
                                   int64_t M) {
  std::vector<double> want(M * N);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) want[m * N + n] += double(wf[n * K + k]) * double(x[m * K + k]);
    }
  }
  return want;
}

#endif

// Every group of eight values the kernels decode, on the host: the fp16 nearest to the CPU
// dequantizer's value (a tie or FMA contraction may land one fp16 step away, never more); and
// the wgmma kernel's runs of a K-quant group, the same bits.
TEST(CudaMatmul, TileLoaderOnTheHostMatchesTheDequantizer) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  std::mt19937 rng(std::random_device{}());
  int types = 0;
  for (const TypeTraits& tr : all_type_traits()) {
    if (!cuda_matmul_supports(tr.type, kLoaderK)) continue;
    ++types;
    const int64_t N = 4;
    const auto w = test::random_blocks(tr.type, kLoaderK * N, rng);
    const auto wf = test::dequantized(tr.type, w.data(), kLoaderK, N);
    const auto wg = test::in_gpu_layout(tr.type, kLoaderK, N, w);
    std::vector<uint16_t> got(kLoaderK), in_runs(kLoaderK, 0xFFFF);
    for (int64_t n = 0; n < N; ++n) {
      const uint8_t* row = wg.data() + n * gpu_row_bytes(tr.type, kLoaderK);
      cuda_matmul_decode_row_on_host(tr.type, row, kLoaderK, got.data());
      // The wgmma kernel's runs (a K-quant group from one read) decode to the same bits.
      cuda_matmul_decode_row_on_host(tr.type, row, kLoaderK, in_runs.data(), true);
      ASSERT_EQ(in_runs, got) << tr.name << " row " << n << ": runs and groups of eight differ";
      for (int64_t k = 0; k < kLoaderK; ++k) {
        const float want = wf[n * kLoaderK + k], have = fp16_to_fp32(got[k]);
        if (std::fabs(want) > 65504.0f) {  // past fp16's range (BF16/F32 only): saturates
          EXPECT_TRUE(std::isinf(have)) << tr.name << " row " << n << " value " << k;
          continue;
        }
        const float step = std::max(std::ldexp(std::fabs(want), -10), std::ldexp(1.0f, -24));
        ASSERT_LE(std::fabs(have - want), step) << tr.name << " row " << n << " value " << k << ": " << have
                                                << " for " << want;
      }
    }
  }
  EXPECT_EQ(types, 24);  // every type: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS
                        // IQ3_XXS IQ3_S IQ2_XXS IQ2_XS IQ2_S IQ1_S IQ1_M TQ1_0 TQ2_0
#endif
}

TEST(CudaMatmul, EverySupportedTypeAgainstDoubleReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t N = 200;  // one full tile of weight rows and a partial one
  // Three super-blocks; and five windows of four legacy blocks, whose Q8_0 rows (680 bytes) are
  // only 8-byte aligned.
  for (const int64_t K : {kK, int64_t(5 * 128)}) {
    for (const TypeTraits& tr : all_type_traits()) {
      if (!cuda_matmul_supports(tr.type, K)) continue;
      const auto w = test::random_blocks(tr.type, K * N, rng);
      const auto wf = test::dequantized(tr.type, w.data(), K, N);
      const test::DeviceBuffer d_w(test::in_gpu_layout(tr.type, K, N, w));
      for (const int64_t M : {9, 128, 300}) {  // below one tile of tokens, exactly one, a partial third
        std::vector<float> x(M * K), bias(N);
        for (auto* v : {&x, &bias}) {
          for (auto& f : *v) f = normal(rng);
        }
        const std::vector<double> want = double_product(wf, x, K, N, M);
        const test::DeviceBuffer d_x(x), d_bias(bias), d_x16(std::vector<uint16_t>(M * K));
        cuda_to_f16_saturated(d_x.as<float>(), d_x16.as<uint16_t>(), M * K, nullptr);
        for (const MatmulKernel kernel : device_kernels()) {
        for (const MatmulTokens tiles : kernel_tiles(kernel)) {
          const std::string what = std::string(tr.name) + " K " + std::to_string(K) + " M " + std::to_string(M) +
                                   " " + kernel_name(kernel) +
                                   (tiles == MatmulTokens::tiles_of_64 ? " (64-token tiles)" : " (128-token tiles)");
          const test::DeviceBuffer d_y(std::vector<float>(M * N, std::nanf("")));  // NaN poison
          float* y_dev = d_y.as<float>();
          cuda_matmul(tr.type, d_w.get(), K, N, d_x16.as<uint16_t>(), M, y_dev, nullptr, {},
                      {.tokens = tiles, .kernel = kernel});
          const auto y = d_y.to_host<float>();
          if (M == 128) {  // the epilogue, as the stage's output products use it: y += W x + bias
            cuda_matmul(tr.type, d_w.get(), K, N, d_x16.as<uint16_t>(), M, y_dev, nullptr, {d_bias.as<float>(), true},
                        {.tokens = tiles, .kernel = kernel});
            const auto twice = d_y.to_host<float>();
            for (int64_t i = 0; i < M * N; ++i) {
              ASSERT_NEAR(twice[i], 2 * y[i] + bias[i % N], 1e-4f * (std::fabs(y[i]) + 1)) << what << " " << i;
            }
          }
          double err = 0, norm = 0;
          for (int64_t i = 0; i < M * N; ++i) {
            ASSERT_TRUE(std::isfinite(y[i])) << what << " token " << i / N << " row " << i % N;
            err += (y[i] - want[i]) * (y[i] - want[i]);
            norm += want[i] * want[i];
          }
          // Weights and activations each rounded once to fp16 (relative 2^-11 at most, about 3e-4
          // in norm for sums of independent roundings); f32 sums. 2e-3 is a normalised MSE of 4e-6.
          EXPECT_LE(std::sqrt(err / norm), 2e-3) << what;
        }
        }
      }
    }
  }
#endif
}

TEST(CudaMatmul, ActivationsSaturateAtTheLargestHalf) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal(0.0f, 100.0f);
  std::vector<float> x(1000);
  for (auto& v : x) v = normal(rng);
  x[3] = 1e6f;
  x[700] = -7e4f;
  float* d_x = nullptr;
  uint16_t* d_h = nullptr;
  ASSERT_EQ(cudaMalloc(&d_x, x.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_h, x.size() * sizeof(uint16_t)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_x, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(d_h, 0xff, x.size() * sizeof(uint16_t)), cudaSuccess);
  cuda_to_f16_saturated(d_x, d_h, int64_t(x.size()), nullptr);
  std::vector<uint16_t> h(x.size());
  ASSERT_EQ(cudaMemcpy(h.data(), d_h, h.size() * sizeof(uint16_t), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_x);
  cudaFree(d_h);
  EXPECT_EQ(fp16_to_fp32(h[3]), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(h[700]), -65504.0f);
  for (size_t i = 0; i < x.size(); ++i) {
    if (i == 3 || i == 700) continue;
    EXPECT_EQ(h[i], fp32_to_fp16(x[i])) << "value " << i << " = " << x[i];  // round to nearest even
  }
#endif
}

// Three matrices in one grid (a full and a partial row tile, one partial tile, two and a bit)
// write exactly what three launches write, epilogues included; the separate launch is the one
// checked against the double reference above.
TEST(CudaMatmul, FusedLaunchMatchesSeparateLaunches) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t K = 512, M = 150, rows[3] = {200, 64, 300};
  for (const GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::F16}) {
    for (const MatmulKernel kernel : device_kernels()) {
    for (const MatmulTokens tiles : kernel_tiles(kernel)) {
      SCOPED_TRACE(kernel_name(kernel));
      std::vector<float> x(M * K);
      for (auto& v : x) v = normal(rng);
      const test::DeviceBuffer d_x(x), d_x16(std::vector<uint16_t>(M * K));
      cuda_to_f16_saturated(d_x.as<float>(), d_x16.as<uint16_t>(), M * K, nullptr);
      const test::FusedProducts f = test::make_fused_products(type, K, rows, M, rng);
      for (int s = 0; s < 3; ++s) {
        cuda_matmul(type, f.w[s].get(), K, rows[s], d_x16.as<uint16_t>(), M, f.separate_y[s].as<float>(), nullptr,
                    f.eps[s], {.tokens = tiles, .kernel = kernel});
      }
      cuda_matmul_fused(type, K, d_x16.as<uint16_t>(), M, f.fused, nullptr, {.tokens = tiles, .kernel = kernel});
      test::expect_fused_matches_separate(f, type, M);
    }
    }
  }
#endif
}

// Exact one-hot products that say where a value went when it goes astray (a fragment or swizzle
// mistake shows as a pattern, not just a large error): weight row n is 1 at k = n (F16, exact),
// so y[m][n] = x[m][n]; with x[m][k] = k, a wrong y names the k that row n's 1 met; with x[m][k]
// = m + 1, the token whose activations it met. 300 rows, 200 tokens and K = 1024 take partial tiles
// and several steps; each kernel, tile size and one or two splits.
TEST(CudaMatmul, OneHotProductsLandWhereTheyShould) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  const int64_t K = 1024, N = 300, M = 200;
  std::vector<uint16_t> w(N * K, fp32_to_fp16(0.0f));
  for (int64_t n = 0; n < N; ++n) w[n * K + n] = fp32_to_fp16(1.0f);
  const test::DeviceBuffer d_w(w);
  for (const bool by_k : {true, false}) {
    std::vector<uint16_t> x(M * K);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) x[m * K + k] = fp32_to_fp16(float(by_k ? k : m + 1));
    }
    const test::DeviceBuffer d_x(x), ws(std::vector<float>(2 * M * N, std::nanf("")));
    for (const MatmulKernel kernel : device_kernels()) {
      for (const MatmulTokens tiles : kernel_tiles(kernel)) {
        for (const int splits : {1, 2}) {
          const test::DeviceBuffer d_y(std::vector<float>(M * N, std::nanf("")));
          cuda_matmul(GgmlType::F16, d_w.get(), K, N, d_x.as<uint16_t>(), M, d_y.as<float>(), nullptr, {},
                      {.tokens = tiles, .kernel = kernel, .splits = splits,
                       .workspace = {ws.as<float>(), int64_t(ws.bytes() / 4)}});
          const auto y = d_y.to_host<float>();
          int wrong = 0;
          for (int64_t m = 0; m < M && wrong < 8; ++m) {
            for (int64_t n = 0; n < N && wrong < 8; ++n) {
              const float want = float(by_k ? n : m + 1), got = y[m * N + n];
              if (got == want) continue;
              ++wrong;
              ADD_FAILURE() << kernel_name(kernel) << (tiles == MatmulTokens::tiles_of_64 ? ", 64" : ", 128")
                            << "-token tiles, " << splits << " split(s): y[token " << m << "][row " << n << "] = "
                            << got << ": row " << n << "'s one met "
                            << (by_k ? "value k " + std::to_string(int64_t(got)) + " (want k " + std::to_string(n) + ")"
                                     : "token " + std::to_string(int64_t(got) - 1) + "'s activations (want " +
                                           std::to_string(m) + ")");
            }
          }
        }
      }
    }
  }
#endif
}

// K in 2, 3 and 4 splits on each kernel: the result against the double reference (with the
// stage's epilogue, y += W x + bias), bit for bit the same when run again (the partial sums are
// added in split order), and within f32 rounding of the unsplit product. The workspace starts
// as NaN, so a partial sum left unwritten shows.
TEST(CudaMatmul, SplitKMatchesTheReferenceAndRepeatsExactly) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t K = 12 * 256, N = 200, M = 150;  // 12 super-blocks: 2, 3 and 4 splits of whole windows
  for (const GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::F16}) {
    const auto w = test::random_blocks(type, K * N, rng);
    const auto wf = test::dequantized(type, w.data(), K, N);
    std::vector<float> x(M * K), bias(N), residual(M * N);
    for (auto* v : {&x, &bias, &residual}) {
      for (auto& f : *v) f = normal(rng);
    }
    std::vector<double> want = double_product(wf, x, K, N, M);  // + the residual and the bias
    for (int64_t i = 0; i < M * N; ++i) want[i] += double(residual[i]) + double(bias[i % N]);
    const test::DeviceBuffer d_w(test::in_gpu_layout(type, K, N, w)), d_x(x), d_bias(bias),
        d_x16(std::vector<uint16_t>(M * K));
    cuda_to_f16_saturated(d_x.as<float>(), d_x16.as<uint16_t>(), M * K, nullptr);
    const ProductEpilogue ep{d_bias.as<float>(), true};
    for (const MatmulKernel kernel : device_kernels()) {
      const auto product = [&](int splits, const test::DeviceBuffer& ws) {
        const test::DeviceBuffer d_y(residual);
        cuda_matmul(type, d_w.get(), K, N, d_x16.as<uint16_t>(), M, d_y.as<float>(), nullptr, ep,
                    {.kernel = kernel, .splits = splits, .workspace = {ws.as<float>(), int64_t(ws.bytes() / 4)}});
        return d_y.to_host<float>();
      };
      const test::DeviceBuffer no_room(std::vector<float>(1));
      const std::vector<float> whole = product(1, no_room);
      for (const int splits : {2, 3, 4}) {
        const std::string what = std::string(traits(type).name) + " " + kernel_name(kernel) + ", " +
                                 std::to_string(splits) + " splits";
        const test::DeviceBuffer ws(std::vector<float>(splits * M * N, std::nanf("")));
        const std::vector<float> y = product(splits, ws), again = product(splits, ws);
        double err = 0, norm = 0, gap = 0, whole_norm = 0;
        for (int64_t i = 0; i < M * N; ++i) {
          ASSERT_TRUE(std::isfinite(y[i])) << what << ": token " << i / N << " row " << i % N;
          ASSERT_EQ(y[i], again[i]) << what << ": not repeated exactly at " << i;
          err += (y[i] - want[i]) * (y[i] - want[i]);
          norm += want[i] * want[i];
          gap += double(y[i] - whole[i]) * double(y[i] - whole[i]);
          whole_norm += double(whole[i]) * double(whole[i]);
        }
        EXPECT_LE(std::sqrt(err / norm), 2e-3) << what;  // as the unsplit products above
        // The same fp16 products summed in f32 in another order: a few ulps of the sum.
        EXPECT_LE(std::sqrt(gap / whole_norm), 1e-5) << what << " against one split";
      }
    }
  }
#endif
}

// What the stage's products launch on this device: QwQ-32B's ffn_down at 512 tokens in 128-token
// tiles (160 blocks: a wave and a fifth of a 132-SM card at one block per SM, under one wave at
// two) splits K when a workspace holds the partial sums, in whole super-blocks, and never without
// one or in a fused launch.
TEST(CudaMatmul, SplitsOnlyWhereTheGridLeavesSmsIdle) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  const int64_t M = 512;
  float* const far_away = reinterpret_cast<float*>(uintptr_t(1) << 40);  // the launch plan reads no memory
  const MatmulWorkspace room{far_away, int64_t(kMatmulMaxSplits) * M * 27648};
  const MatvecOutput down{nullptr, 5120, nullptr, {}};
  const MatvecOutput gate{nullptr, 27648, nullptr, {}}, up{nullptr, 27648, nullptr, {}};
  const MatvecOutput gate_up[2] = {gate, up};
  int sms = 0, device = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), cudaSuccess);
  for (const MatmulKernel kernel : device_kernels()) {
    SCOPED_TRACE(kernel_name(kernel));
    const MatmulOptions tiles_128{.tokens = MatmulTokens::tiles_of_128, .kernel = kernel, .workspace = room};
    const MatmulLaunch split = cuda_matmul_launch(GgmlType::Q4_K, 27648, M, {&down, 1}, tiles_128);
    EXPECT_EQ(split.kernel, kernel);
    if (sms >= 100 && sms < 160) {
      EXPECT_GT(split.splits, 1) << sms << " SMs";
    }
    EXPECT_EQ(27648 / 256 % split.splits, 0);
    EXPECT_EQ(cuda_matmul_launch(GgmlType::Q4_K, 27648, M, {&down, 1}, {.kernel = kernel}).splits, 1);
    EXPECT_EQ(cuda_matmul_launch(GgmlType::Q4_K, 5120, M, gate_up, tiles_128).splits, 1);
    const MatmulLaunch chosen = cuda_matmul_launch(GgmlType::Q4_K, 5120, M, {&gate, 1}, {.kernel = kernel, .workspace = room});
    EXPECT_EQ(5120 / 256 % chosen.splits, 0);
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
#endif
}

// A compute capability 9.0 device runs the wgmma kernel (its sm_90a code is in the build and
// loads), so the cases above test it there; other devices report that they do not.
TEST(CudaMatmul, HopperRunsTheWgmmaKernel) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  int device = 0, major = 0, minor = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), cudaSuccess);
  EXPECT_EQ(cuda_matmul_has_wgmma(), major == 9 && minor == 0) << "compute capability " << major << "." << minor;
  if (!cuda_matmul_has_wgmma()) {
    test::expect_error(
        [] {
          cuda_matmul(GgmlType::F16, nullptr, 128, 4, nullptr, 16, nullptr, nullptr, {},
                      {.kernel = MatmulKernel::wgmma});
        },
        {"cuda_matmul", "wgmma"});
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // asking left no error behind
#endif
}

// The wgmma kernel's shared-memory tiles: the offset of value k of row r is the 128-byte swizzle
// the descriptor names, as PTX defines it on the plain row-major offset (address bits 4-6 XOR
// bits 7-9), and a 64-row tile fills its 8 KiB exactly once.
TEST(CudaMatmul, WgmmaTileOffsetsAreThe128ByteSwizzle) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  std::vector<int> used(64 * 128 / 2, 0);
  for (int r = 0; r < 64; ++r) {
    for (int k = 0; k < 64; ++k) {
      const uint32_t plain = uint32_t(r) * 128 + uint32_t(k) * 2;
      const uint32_t swizzled = plain ^ (((plain >> 7) & 7u) << 4);
      ASSERT_EQ(swizzled_offset(r, k), swizzled) << "row " << r << " value " << k;
      ASSERT_EQ(swizzled_offset(r, k) / 1024, uint32_t(r / 8)) << "row " << r << " leaves its 8-row atom";
      ++used[swizzled_offset(r, k) / 2];
    }
  }
  for (size_t i = 0; i < used.size(); ++i) ASSERT_EQ(used[i], 1) << "half " << i;
#endif
}

// The split count: more than one only where the last wave would leave slots idle, and only in
// whole windows of at least kMatmulMinSplitValues values; never more than asked.
TEST(CudaMatmul, SplitCountFillsTheLastWave) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  const auto idle = [](int64_t blocks, int64_t slots, int s) {  // fraction of slot time left idle
    const int64_t waves = (blocks * s + slots - 1) / slots;
    return 1.0 - double(blocks * s) / double(waves * slots);
  };
  // QwQ-32B's ffn_down at 512 tokens on a 132-SM card, one block per SM: 108 super-blocks of K.
  const int s = choose_matmul_splits(160, 132, 108, 256, kMatmulMaxSplits);
  EXPECT_GT(s, 1);
  EXPECT_EQ(108 % s, 0);
  EXPECT_LT(idle(160, 132, s), idle(160, 132, 1));
  EXPECT_EQ(choose_matmul_splits(160, 132, 108, 256, 1), 1);      // no room for partial sums
  EXPECT_EQ(choose_matmul_splits(132 * 8, 132, 108, 256, 4), 1);  // whole waves already
  EXPECT_EQ(choose_matmul_splits(1728, 132, 20, 256, 4), 1);      // 13.1 waves: the tail is small
  EXPECT_EQ(choose_matmul_splits(160, 132, 4, 256, 4), 1);        // K = 1024: no split keeps 1024 values
  EXPECT_EQ(choose_matmul_splits(32, 132, 7, 256, 4), 1);         // 7 windows: no split of 2, 3 or 4
  const int few = choose_matmul_splits(32, 132, 20, 256, 4);      // v alone: 32 blocks on 132 slots
  EXPECT_EQ(few, 4);
#endif
}

// Argument checks happen before any CUDA call, so this runs wherever the backend is built.
TEST(CudaMatmul, RefusesUnsupportedTypesAndShapes) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  const auto mxfp4 = static_cast<GgmlType>(39);  // a ggml type the engine does not read
  EXPECT_FALSE(cuda_matmul_supports(mxfp4, 256));
  EXPECT_TRUE(cuda_matmul_supports(GgmlType::Q3_K, 256));
  EXPECT_FALSE(cuda_matmul_supports(GgmlType::Q4_K, 288));  // not whole super-blocks
  EXPECT_FALSE(cuda_matmul_supports(GgmlType::F16, 72));    // not whole 32-value steps
  EXPECT_FALSE(cuda_matmul_supports(GgmlType::Q4_0, 96));  // not whole windows of four blocks
  EXPECT_TRUE(cuda_matmul_supports(GgmlType::Q4_0, 128));
  EXPECT_TRUE(cuda_matmul_supports(GgmlType::Q8_0, 896));  // Qwen2.5-0.5B's width
  EXPECT_TRUE(cuda_matmul_supports(GgmlType::F16, 96));
  test::expect_error([&] { cuda_matmul(mxfp4, nullptr, 256, 4, nullptr, 16, nullptr, nullptr); },
                     {"cuda_matmul", "unsupported type MXFP4"});
  test::expect_error([] { cuda_matmul(GgmlType::F16, nullptr, 72, 4, nullptr, 16, nullptr, nullptr); },
                     {"cuda_matmul", "K", "72"});
  test::expect_error([] { cuda_matmul(GgmlType::F16, reinterpret_cast<void*>(8), 96, 4, nullptr, 16, nullptr, nullptr); },
                     {"cuda_matmul", "weight address"});
  // The warp-specialized kernel has 128-token tiles only.
  test::expect_error(
      [] {
        cuda_matmul(GgmlType::F16, nullptr, 128, 4, nullptr, 16, nullptr, nullptr, {},
                    {.tokens = MatmulTokens::tiles_of_64, .kernel = MatmulKernel::wgmma_specialized});
      },
      {"cuda_matmul", "64-token tiles", "warp-specialized"});
  // wgmma's float windows are 64 values: K = 96 is the mma.sync kernel's only.
  test::expect_error(
      [] {
        cuda_matmul(GgmlType::F16, nullptr, 96, 4, nullptr, 16, nullptr, nullptr, {}, {.kernel = MatmulKernel::wgmma});
      },
      {"cuda_matmul (wgmma)", "K", "96"});
  // Splits: at most kMatmulMaxSplits, one matrix, a workspace that holds them, whole windows.
  float* const far_away = reinterpret_cast<float*>(uintptr_t(1) << 40);  // never dereferenced
  const MatmulWorkspace room{far_away, int64_t(1) << 30};
  test::expect_error([&] { cuda_matmul(GgmlType::Q4_K, nullptr, 1024, 4, nullptr, 16, nullptr, nullptr, {}, {.splits = 5, .workspace = room}); },
                     {"cuda_matmul", "splits 5"});
  test::expect_error([] { cuda_matmul(GgmlType::Q4_K, nullptr, 1024, 4, nullptr, 16, nullptr, nullptr, {}, {.splits = 2}); },
                     {"cuda_matmul", "splits for the workspace", "2"});
  test::expect_error([&] { cuda_matmul(GgmlType::Q4_K, nullptr, 1024, 4, nullptr, 16, nullptr, nullptr, {}, {.splits = 3, .workspace = room}); },
                     {"cuda_matmul", "splits of K's windows", "3"});
  const MatvecOutput two[2] = {};
  test::expect_error([&] { cuda_matmul_fused(GgmlType::Q4_K, 1024, nullptr, 16, two, nullptr, {.splits = 2, .workspace = room}); },
                     {"cuda_matmul", "splits of a fused launch", "2"});
  const MatvecOutput four[4] = {};
  test::expect_error([&] { cuda_matmul_fused(GgmlType::F16, 256, nullptr, 16, four, nullptr); },
                     {"cuda_matmul", "matrices 4"});
#endif
}

}  // namespace
}  // namespace engine
