// GPU matrix-vector kernels against a double-precision reference built from the CPU dequantizer
// (itself checked against the gguf package), fresh random weights and activations, outputs
// poisoned with NaN first. For the types whose kernels multiply 8-bit activations (Q4_K, Q5_K,
// Q6_K) the reference takes the activations those blocks hold, so the bound is the same 1e-5;
// the blocks themselves are checked against the f32 activations, and the GPU's quantization
// against the host's bit for bit. Skips (visibly) where no CUDA device exists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/quantize.h"
#include "device_buffer.h"
#include "double_reference.h"
#include "fused_products.h"
#include "random_blocks.h"
#include "scheduler/cuda_runtime.h"
#include "test_support.h"

#if ENGINE_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/kv_cache.h"
#include "kernels/cuda/matvec.h"
#include "kernels/cuda/ops.h"
#endif

namespace engine {
namespace {

#if ENGINE_HAVE_CUDA
using test::rel_to_reference;

// The activations a kernel of `type` multiplies: x itself, or what its 8-bit blocks hold.
std::vector<float> effective_activations(GgmlType type, const std::vector<float>& x,
                                         const std::vector<ActQ8Block>& blocks) {
  if (!cuda_matvec_wants_q8(type)) return x;
  std::vector<float> out(x.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = blocks[i / 32].d * float(blocks[i / 32].q[i % 32]);
  return out;
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
    const auto w = test::random_blocks(tr.type, K * N, rng);
    const std::vector<float> wf = test::dequantized(tr.type, w.data(), K, N);
    const auto wg = test::in_gpu_layout(tr.type, K, N, w);
    for (const int B : {1, 3, 8}) {
      std::vector<float> x(B * K);
      for (auto& v : x) v = normal(rng);
      // Blocks only for the 8-bit kernels (the float types' K need not be a multiple of 32).
      std::vector<ActQ8Block> blocks(x.size() / 32 + 1);
      if (cuda_matvec_wants_q8(tr.type)) quantize_activations_on_host(x.data(), int64_t(x.size()), blocks.data());
      void* d_w = nullptr;
      float *d_x = nullptr, *d_y = nullptr;
      ActQ8Block* d_q = nullptr;
      ASSERT_EQ(cudaMalloc(&d_w, wg.size()), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&d_x, x.size() * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&d_q, blocks.size() * sizeof(ActQ8Block)), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&d_y, B * N * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(d_w, wg.data(), wg.size(), cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(d_x, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_EQ(cudaMemset(d_q, 0xff, blocks.size() * sizeof(ActQ8Block)), cudaSuccess);
      ASSERT_EQ(cudaMemset(d_y, 0xff, B * N * sizeof(float)), cudaSuccess);  // NaN poison
      if (cuda_matvec_wants_q8(tr.type)) cuda_quantize_activations(d_x, int64_t(x.size()), d_q, nullptr);
      cuda_matvec(tr.type, d_w, K, N, MatvecInput{d_x, d_q}, B, d_y, nullptr);
      std::vector<float> y(B * N);
      std::vector<ActQ8Block> gpu_blocks(blocks.size());
      ASSERT_EQ(cudaMemcpy(y.data(), d_y, y.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(gpu_blocks.data(), d_q, gpu_blocks.size() * sizeof(ActQ8Block), cudaMemcpyDeviceToHost),
                cudaSuccess);
      cudaFree(d_w);
      cudaFree(d_x);
      cudaFree(d_q);
      cudaFree(d_y);
      if (cuda_matvec_wants_q8(tr.type)) {  // the GPU's blocks are the host's, bit for bit
        ASSERT_EQ(std::memcmp(gpu_blocks.data(), blocks.data(), x.size() / 32 * sizeof(ActQ8Block)), 0) << tr.name;
      }
      for (int64_t i = 0; i < B * N; ++i) {
        ASSERT_TRUE(std::isfinite(y[i])) << tr.name << " batch " << B << " row " << i % N;
      }
      // f32 products and sums over K ~ 2300 values: rounding well below 1e-5.
      EXPECT_LE(rel_to_reference(wf, effective_activations(tr.type, x, blocks), y, B, N, K), 1e-5)
          << tr.name << " batch " << B;
    }
  }
#endif
}

// A fused launch of three matrices (a layer's q, k and v: 300, 64 and 64 rows, one with a bias,
// one adding to what its output held) writes exactly what three separate launches write, for
// float and 8-bit kernels and batches 1 and 3.
TEST(CudaMatvec, FusedLaunchMatchesSeparateLaunches) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t K = 512, rows[3] = {300, 64, 64};
  for (const GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::F16}) {
    for (const int B : {1, 3}) {
      std::vector<float> x(B * K);
      for (auto& v : x) v = normal(rng);
      const test::DeviceBuffer d_x(x);
      const test::DeviceBuffer d_q(std::vector<ActQ8Block>(B * K / 32));
      cuda_quantize_activations(d_x.as<float>(), B * K, d_q.as<ActQ8Block>(), nullptr);
      const MatvecInput in{d_x.as<float>(), d_q.as<ActQ8Block>()};
      const test::FusedProducts f = test::make_fused_products(type, K, rows, B, rng);
      for (int s = 0; s < 3; ++s) {
        cuda_matvec(type, f.w[s].get(), K, rows[s], in, B, f.separate_y[s].as<float>(), nullptr, f.eps[s]);
      }
      cuda_matvec_fused(type, K, in, B, f.fused, nullptr);
      test::expect_fused_matches_separate(f, type, B);
    }
  }
#endif
}

// Argument checks happen before any CUDA call, so this runs wherever the backend is built.
// The staged kernel (weights copied ahead into shared memory) writes the direct kernel's bits: the
// same lanes sum the same products in the same order. K of one super-block (a partial step), of
// five (one full step and a partial one), of twenty (five steps: the short rows' ring, whole),
// and of 42 (eleven steps: the long rows' ring of eight slots wraps), three matrices in one
// launch with the stage's epilogues.
TEST(CudaMatvec, StagedKernelGivesTheDirectKernelsBits) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t rows[3] = {300, 64, 70};
  for (const GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    ASSERT_TRUE(cuda_matvec_has_staged(type, 1)) << traits(type).name;
    for (const int64_t K : {int64_t(256), int64_t(5 * 256), int64_t(20 * 256), int64_t(42 * 256)}) {
      std::vector<float> x(K);
      for (auto& v : x) v = normal(rng);
      const test::DeviceBuffer d_x(x);
      const test::DeviceBuffer d_q(std::vector<ActQ8Block>(K / 32));
      cuda_quantize_activations(d_x.as<float>(), K, d_q.as<ActQ8Block>(), nullptr);
      const MatvecInput in{d_x.as<float>(), d_q.as<ActQ8Block>()};
      test::FusedProducts f = test::make_fused_products(type, K, rows, 1, rng);
      std::vector<MatvecOutput> direct = f.fused;
      for (int s = 0; s < 3; ++s) direct[size_t(s)].y = f.separate_y[s].as<float>();
      cuda_matvec_fused(type, K, in, 1, direct, nullptr, MatvecKernel::direct);
      cuda_matvec_fused(type, K, in, 1, f.fused, nullptr, MatvecKernel::staged);
      SCOPED_TRACE("K " + std::to_string(K));
      test::expect_fused_matches_separate(f, type, 1);
    }
  }
#endif
}

// A decode step's q/k/v products with RoPE and the KV store in their epilogue
// (cuda_matvec_fused_rope) write what the products and then the RoPE kernel write, bit for bit:
// q and k rotated, v as it is, the cache rows of the position. NeoX and normal order, all dims
// rotated and half of them, q/k/v in one launch and v (another type, as Q4_K_M's) in its own,
// the position given and read from device memory, both matvec kernels.
TEST(CudaMatvec, RopeEpilogueGivesTheRopeKernelsBits) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t K = 512, hd = 128, n_head = 4, n_head_kv = 2, kv_dim = n_head_kv * hd, n_ctx = 48, pos = 37;
  std::vector<float> x(K);
  for (auto& v : x) v = normal(rng);
  const test::DeviceBuffer d_x(x), d_q(std::vector<ActQ8Block>(K / 32)), d_pos(std::vector<int64_t>{pos});
  cuda_quantize_activations(d_x.as<float>(), K, d_q.as<ActQ8Block>(), nullptr);
  const MatvecInput in{d_x.as<float>(), d_q.as<ActQ8Block>()};
  const int64_t rows[3] = {n_head * hd, kv_dim, kv_dim};
  for (const GgmlType v_type : {GgmlType::Q4_K, GgmlType::Q6_K}) {
    const GgmlType types[3] = {GgmlType::Q4_K, GgmlType::Q4_K, v_type};
    std::vector<test::DeviceBuffer> w, bias;
    for (int s = 0; s < 3; ++s) {
      w.emplace_back(test::in_gpu_layout(types[s], K, rows[s], test::random_blocks(types[s], K * rows[s], rng)));
      std::vector<float> b(rows[s]);
      for (auto& v : b) v = normal(rng);
      bias.emplace_back(b);
    }
    for (const bool neox : {true, false}) {
      for (const int n_rot : {int(hd), int(hd / 2)}) {
        for (const bool on_device : {false, true}) {
          for (const MatvecKernel kernel : {MatvecKernel::direct, MatvecKernel::staged}) {
            RopeParams p;
            p.n_rot = n_rot;
            p.neox = neox;
            p.freq_base = 1e6f;
            const std::vector<float> poison(n_head * hd, std::nanf(""));
            const std::vector<uint16_t> cache_poison(2 * n_ctx * kv_dim, 0x7e01);  // an fp16 NaN
            // The products, then the RoPE kernel.
            std::vector<test::DeviceBuffer> y_ref, y;
            for (int s = 0; s < 3; ++s) {
              y_ref.emplace_back(std::vector<float>(poison.begin(), poison.begin() + rows[s]));
              y.emplace_back(std::vector<float>(poison.begin(), poison.begin() + rows[s]));
            }
            const test::DeviceBuffer cache_ref(cache_poison), cache(cache_poison);
            const auto outputs = [&](std::vector<test::DeviceBuffer>& ys, int first, int count) {
              std::vector<MatvecOutput> outs;
              for (int s = first; s < first + count; ++s) outs.push_back({w[s].get(), rows[s], ys[s].as<float>(), {bias[s].as<float>()}});
              return outs;
            };
            const int together = v_type == GgmlType::Q4_K ? 3 : 2;
            cuda_matvec_fused(GgmlType::Q4_K, K, in, 1, outputs(y_ref, 0, together), nullptr, MatvecKernel::direct);
            if (together == 2) cuda_matvec_fused(v_type, K, in, 1, outputs(y_ref, 2, 1), nullptr, MatvecKernel::direct);
            KvLayer ref_layer;  // f16
            ref_layer.k = cache_ref.as<uint16_t>();
            ref_layer.v = cache_ref.as<uint16_t>() + n_ctx * kv_dim;
            cuda_rope_store_kv(y_ref[0].as<float>(), y_ref[1].as<float>(), y_ref[2].as<float>(), 1, n_head, n_head_kv,
                               hd, pos, p, ref_layer, nullptr);
            // The products with the epilogue.
            MatvecRope rope;
            rope.p = p;
            rope.head_dim = hd;
            rope.pos = on_device ? 0 : pos;
            rope.pos_dev = on_device ? d_pos.as<int64_t>() : nullptr;
            rope.k_cache = cache.as<uint16_t>();
            rope.v_cache = cache.as<uint16_t>() + n_ctx * kv_dim;
            rope.kv_dim = kv_dim;
            cuda_matvec_fused_rope(GgmlType::Q4_K, K, in, outputs(y, 0, together), rope, nullptr, kernel);
            if (together == 2) {
              rope.roles[0] = QkvRole::v;
              cuda_matvec_fused_rope(v_type, K, in, outputs(y, 2, 1), rope, nullptr, kernel);
            }
            const std::string what = std::string(neox ? "NeoX" : "normal") + ", n_rot " + std::to_string(n_rot) +
                                     ", v " + std::string(traits(v_type).name) +
                                     (on_device ? ", position on the device" : "") +
                                     (kernel == MatvecKernel::staged ? ", staged" : ", direct");
            for (int s = 0; s < 3; ++s) {
              const auto got = y[s].to_host<float>(), want = y_ref[s].to_host<float>();
              for (const float v : got) ASSERT_TRUE(std::isfinite(v)) << what << ", output " << s;
              EXPECT_EQ(got, want) << what << ", output " << s;
            }
            EXPECT_EQ(cache.to_host<uint16_t>(), cache_ref.to_host<uint16_t>()) << what << ": the cache";
          }
        }
      }
    }
  }
#endif
}

TEST(CudaMatvec, RefusesBadBatchAndUnsupportedType) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  EXPECT_THROW(cuda_matvec(GgmlType::Q4_K, nullptr, 256, 4, {}, 0, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_matvec(GgmlType::Q4_K, nullptr, 256, 4, {}, kCudaMatvecMaxBatch + 1, nullptr, nullptr), Error);
  test::expect_error([] { cuda_matvec(static_cast<GgmlType>(4), nullptr, 256, 4, {}, 1, nullptr, nullptr); },
                     {"cuda_matvec", "unsupported type"});  // ggml's removed Q4_2: every GGUF type has lanes
  const float x = 0;
  test::expect_error([&] { cuda_matvec(GgmlType::Q4_K, nullptr, 256, 4, MatvecInput{&x, nullptr}, 1, nullptr, nullptr); },
                     {"cuda_matvec", "Q4_K needs 8-bit"});
  test::expect_error([] { cuda_quantize_activations(nullptr, 40, nullptr, nullptr); },
                     {"cuda_quantize_activations", "n 40"});
  const MatvecOutput four[4] = {};
  test::expect_error([&] { cuda_matvec_fused(GgmlType::F16, 256, MatvecInput{&x, nullptr}, 1, four, nullptr); },
                     {"cuda_matvec_fused", "matrices 4"});
  // The staged kernel: the K-quants at batch 1 only.
  EXPECT_TRUE(cuda_matvec_has_staged(GgmlType::Q6_K, 1));
  EXPECT_FALSE(cuda_matvec_has_staged(GgmlType::Q4_K, 2));
  EXPECT_FALSE(cuda_matvec_has_staged(GgmlType::Q8_0, 1));
  test::expect_error(
      [&] {
        cuda_matvec(GgmlType::Q8_0, nullptr, 256, 4, MatvecInput{&x, nullptr}, 1, nullptr, nullptr, {},
                    MatvecKernel::staged);
      },
      {"cuda_matvec", "staged kernel for Q8_0 at batch 1"});
  test::expect_error(
      [&] { cuda_matvec(GgmlType::Q4_K, nullptr, 256, 4, {}, 2, nullptr, nullptr, {}, MatvecKernel::staged); },
      {"cuda_matvec", "staged kernel for Q4_K at batch 2"});
  // RoPE's epilogue: K-quants, whole heads, no accumulating output, a cache.
  {
    uint16_t cache_cell = 0;
    MatvecRope rope;
    rope.p.n_rot = 128;
    rope.head_dim = 128;
    rope.k_cache = rope.v_cache = &cache_cell;
    rope.kv_dim = 128;
    const MatvecOutput q{nullptr, 100, nullptr, {}}, acc{nullptr, 128, nullptr, {nullptr, true}};
    test::expect_error([&] { cuda_matvec_fused_rope(GgmlType::F16, 128, {}, {&q, 1}, rope, nullptr); },
                       {"cuda_matvec_fused_rope", "F16"});
    test::expect_error([&] { cuda_matvec_fused_rope(GgmlType::Q4_K, 256, {}, {&q, 1}, rope, nullptr); },
                       {"cuda_matvec_fused_rope", "rows of a rotated output", "100"});
    test::expect_error([&] { cuda_matvec_fused_rope(GgmlType::Q4_K, 256, {}, {&acc, 1}, rope, nullptr); },
                       {"cuda_matvec_fused_rope", "accumulating"});
    rope.head_dim = 127;
    test::expect_error([&] { cuda_matvec_fused_rope(GgmlType::Q4_K, 256, {}, {&q, 1}, rope, nullptr); },
                       {"cuda_matvec_fused_rope", "head_dim", "127"});
  }
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
    ASSERT_TRUE(cuda_matvec_supports(tr.type)) << tr.name;  // every type the loader takes
    const int64_t K = tr.block_size == 1 ? 9 * 256 + 8 : 9 * 256;
    const auto w = test::random_blocks(tr.type, K * N, rng);
    const std::vector<float> wf = test::dequantized(tr.type, w.data(), K, N);
    const auto wg = test::in_gpu_layout(tr.type, K, N, w);
    for (const int B : {1, 3, 8}) {
      std::vector<float> x(B * K), y(B * N, std::nanf(""));
      for (auto& v : x) v = normal(rng);
      std::vector<ActQ8Block> blocks(x.size() / 32 + 1);
      if (cuda_matvec_wants_q8(tr.type)) quantize_activations_on_host(x.data(), int64_t(x.size()), blocks.data());
      cuda_matvec_lanes_on_host(tr.type, wg.data(), K, N, MatvecInput{x.data(), blocks.data()}, B, y.data());
      EXPECT_LE(rel_to_reference(wf, effective_activations(tr.type, x, blocks), y, B, N, K), 1e-5)
          << tr.name << " batch " << B;
    }
  }
#endif
}

// The epilogue: y = y0 + (W x + bias) when accumulating, W x + bias otherwise, per row and batch
// row, on the host lanes (the kernels share apply_epilogue with them).
TEST(CudaMatvec, EpilogueAddsTheBiasAndTheResidual) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t K = 256, N = 6;
  const int B = 3;
  const auto w = test::random_blocks(GgmlType::F16, K * N, rng);
  std::vector<float> x(B * K), bias(N), y0(B * N);
  for (auto& v : x) v = normal(rng);
  for (auto& v : bias) v = normal(rng);
  for (auto& v : y0) v = normal(rng);
  std::vector<float> plain(B * N), biased(B * N), summed = y0;
  cuda_matvec_lanes_on_host(GgmlType::F16, w.data(), K, N, MatvecInput{x.data(), nullptr}, B, plain.data());
  cuda_matvec_lanes_on_host(GgmlType::F16, w.data(), K, N, MatvecInput{x.data(), nullptr}, B, biased.data(),
                            {bias.data(), false});
  cuda_matvec_lanes_on_host(GgmlType::F16, w.data(), K, N, MatvecInput{x.data(), nullptr}, B, summed.data(),
                            {bias.data(), true});
  for (int64_t i = 0; i < B * N; ++i) {
    EXPECT_FLOAT_EQ(biased[i], plain[i] + bias[i % N]) << i;
    EXPECT_FLOAT_EQ(summed[i], y0[i] + (plain[i] + bias[i % N])) << i;
  }
#endif
}

// The 8-bit activation blocks: codes within +-127, the largest magnitude of each block coded as
// +-127, every value within half a step of its code, the sum the codes' sum; an all-zero block
// codes as zeros. Runs wherever the backend is built.
TEST(CudaMatvec, ActivationBlocksHoldTheActivations) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> x(32 * 64);
  for (auto& v : x) v = normal(rng);
  std::fill(x.begin() + 32, x.begin() + 64, 0.0f);
  std::vector<ActQ8Block> blocks(x.size() / 32);
  quantize_activations_on_host(x.data(), int64_t(x.size()), blocks.data());
  for (size_t i = 0; i < blocks.size(); ++i) {
    const ActQ8Block& b = blocks[i];
    float amax = 0;
    int sum = 0, top = 0;
    for (int j = 0; j < 32; ++j) {
      amax = std::max(amax, std::fabs(x[32 * i + j]));
      sum += b.q[j];
      top = std::max(top, std::abs(int(b.q[j])));
      ASSERT_LE(std::fabs(b.d * b.q[j] - x[32 * i + j]), 0.5f * b.d * 1.0001f + 1e-30f) << "block " << i << " value " << j;
    }
    EXPECT_EQ(top, amax > 0 ? 127 : 0) << "block " << i;
    EXPECT_FLOAT_EQ(b.d, amax / 127.0f) << "block " << i;
    EXPECT_FLOAT_EQ(b.sum, b.d * float(sum)) << "block " << i;
  }
  EXPECT_EQ(blocks[1].d, 0.0f);
#endif
}

}  // namespace
}  // namespace engine
