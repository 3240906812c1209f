// GPU decode and prefill attention against a double-precision reference (softmax of scaled dot
// products, weighted sum of values) on fresh random queries and f16 caches, grouped-query heads,
// key counts below, at and across the kernels' chunk and tile sizes, prefill queries each over its
// own causal keys; outputs poisoned with NaN first. Skips (visibly) where no CUDA device exists.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/error.h"
#include "engine/half.h"
#include "engine/memory_model.h"
#include "scheduler/cuda_runtime.h"

#if ENGINE_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/attention.h"
#endif

namespace engine {
namespace {

#if ENGINE_HAVE_CUDA
// out[b][h] for query b over keys 0 .. pos0 + b, in double: the reference for both kernels.
std::vector<double> attention_reference(const std::vector<float>& q, const std::vector<uint16_t>& k,
                                        const std::vector<uint16_t>& v, int64_t pos0, int64_t n_queries, int n_head,
                                        int n_head_kv, int hd, float scale) {
  const int group = n_head / n_head_kv;
  std::vector<double> want(n_queries * n_head * hd, 0.0);
  for (int64_t b = 0; b < n_queries; ++b) {
    const int64_t n_keys = pos0 + b + 1;
    for (int h = 0; h < n_head; ++h) {
      const int kvh = h / group;
      const float* qh = q.data() + (b * n_head + h) * hd;
      std::vector<double> s(n_keys);
      double m = -INFINITY, l = 0;
      for (int64_t t = 0; t < n_keys; ++t) {
        double dot = 0;
        for (int d = 0; d < hd; ++d) dot += double(qh[d]) * fp16_to_fp32(k[(t * n_head_kv + kvh) * hd + d]);
        s[t] = dot * scale;
        m = std::max(m, s[t]);
      }
      for (int64_t t = 0; t < n_keys; ++t) l += std::exp(s[t] - m);
      double* o = want.data() + (b * n_head + h) * hd;
      for (int64_t t = 0; t < n_keys; ++t) {
        const double p = std::exp(s[t] - m) / l;
        for (int d = 0; d < hd; ++d) o[d] += p * fp16_to_fp32(v[(t * n_head_kv + kvh) * hd + d]);
      }
    }
  }
  return want;
}

// Copies q and the caches to the device, poisons the output with NaN, runs `kernel(dq, dk, dv,
// dout)` and returns the output.
template <typename Kernel>
std::vector<float> run_on_device(const std::vector<float>& q, const std::vector<uint16_t>& k,
                                 const std::vector<uint16_t>& v, Kernel kernel) {
  float *dq = nullptr, *dout = nullptr;
  uint16_t *dk = nullptr, *dv = nullptr;
  std::vector<float> out(q.size());
  EXPECT_EQ(cudaMalloc(&dq, q.size() * 4), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&dout, q.size() * 4), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&dk, k.size() * 2), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&dv, v.size() * 2), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(dq, q.data(), q.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(dk, k.data(), k.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(dv, v.data(), v.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemset(dout, 0xff, q.size() * 4), cudaSuccess);
  kernel(dq, dk, dv, dout);
  EXPECT_EQ(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  for (void* p : {static_cast<void*>(dq), static_cast<void*>(dout), static_cast<void*>(dk), static_cast<void*>(dv)}) {
    cudaFree(p);
  }
  return out;
}
#endif

TEST(CudaAttention, DecodeMatchesDoubleReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  // Groups of 4, 5 (QwQ-32B: 40 query heads on 8 KV heads), 1, 12 (two blocks of 6 per KV head)
  // and 8; head sizes 128, 64, 96 (three halves per lane) and 256.
  for (const auto& [n_head, n_head_kv, hd] :
       {std::tuple{8, 2, 128}, std::tuple{40, 8, 128}, std::tuple{4, 4, 96}, std::tuple{12, 1, 64},
        std::tuple{16, 2, 256}}) {
    const float scale = 1.0f / std::sqrt(float(hd));
    for (const int64_t n_keys : {int64_t(1), int64_t(63), int64_t(64), int64_t(200), int64_t(1000)}) {
      std::vector<float> q(n_head * hd);
      std::vector<uint16_t> k(n_keys * n_head_kv * hd), v(k.size());
      for (auto& x : q) x = normal(rng);
      for (auto& x : k) x = fp32_to_fp16(normal(rng));
      for (auto& x : v) x = fp32_to_fp16(normal(rng));
      const auto want = attention_reference(q, k, v, n_keys - 1, 1, n_head, n_head_kv, hd, scale);
      float* dws = nullptr;
      ASSERT_EQ(cudaMalloc(&dws, cuda_attention_decode_workspace(n_head, hd, n_keys) * 4), cudaSuccess);
      const auto out = run_on_device(q, k, v, [&](float* dq, uint16_t* dk, uint16_t* dv, float* dout) {
        cuda_attention_decode(dq, dk, dv, n_keys, n_head, n_head_kv, hd, scale, dout, dws, nullptr);
      });
      cudaFree(dws);
      double err = 0, norm = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_TRUE(std::isfinite(out[i])) << "keys " << n_keys << " element " << i;
        err += (out[i] - want[i]) * (out[i] - want[i]);
        norm += want[i] * want[i];
      }
      EXPECT_LE(err / norm, 1e-10) << "normalised MSE, heads " << n_head << "/" << n_head_kv << ", head_dim " << hd
                                   << ", keys " << n_keys;  // f32 sums: ~1e-12
    }
  }
#endif
}

TEST(CudaAttention, PrefillMatchesDoubleReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int n_head = 8, n_head_kv = 2;
  for (const int hd : {64, 128, 256}) {
    const float scale = 1.0f / std::sqrt(float(hd));
    // A first batch, one ending just past a 128-key tile, one deep in the context, and batches of
    // several 64-query tiles (the last partial) starting at 0 and mid-tile.
    for (const auto& [pos0, n_queries] :
         {std::pair<int64_t, int64_t>{0, 7}, {120, 13}, {700, 5}, {0, 150}, {190, 70}}) {
      const int64_t n_keys = pos0 + n_queries;
      std::vector<float> q(n_queries * n_head * hd);
      std::vector<uint16_t> k(n_keys * n_head_kv * hd), v(k.size());
      for (auto& x : q) x = normal(rng);
      for (auto& x : k) x = fp32_to_fp16(normal(rng));
      for (auto& x : v) x = fp32_to_fp16(normal(rng));
      const auto want = attention_reference(q, k, v, pos0, n_queries, n_head, n_head_kv, hd, scale);
      const auto out = run_on_device(q, k, v, [&](float* dq, uint16_t* dk, uint16_t* dv, float* dout) {
        cuda_attention_prefill(dq, dk, dv, pos0, n_queries, n_head, n_head_kv, hd, scale, dout, nullptr);
      });
      double err = 0, norm = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_TRUE(std::isfinite(out[i])) << "head_dim " << hd << " pos0 " << pos0 << " element " << i;
        err += (out[i] - want[i]) * (out[i] - want[i]);
        norm += want[i] * want[i];
      }
      // head_dim 64 and 128 run on tensor cores: queries and probabilities rounded to fp16
      // (relative 2^-11 each, about 1e-7 in normalised MSE); 256: f32 throughout.
      const double bound = hd == 256 ? 1e-10 : 1e-5;
      EXPECT_LE(err / norm, bound) << "normalised MSE, head_dim " << hd << " pos0 " << pos0 << " queries "
                                   << n_queries;
    }
  }
#endif
}

TEST(CudaAttention, RefusesBadShapes) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  // Checked before any CUDA call, so this runs wherever the backend is built.
  EXPECT_THROW(cuda_attention_decode(nullptr, nullptr, nullptr, 4, 8, 2, 100, 1.0f, nullptr, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_attention_decode(nullptr, nullptr, nullptr, 4, 8, 3, 128, 1.0f, nullptr, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_attention_decode(nullptr, nullptr, nullptr, 0, 8, 2, 128, 1.0f, nullptr, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_attention_prefill(nullptr, nullptr, nullptr, 0, 4, 8, 2, 100, 1.0f, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_attention_prefill(nullptr, nullptr, nullptr, -1, 4, 8, 2, 128, 1.0f, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_attention_prefill(nullptr, nullptr, nullptr, 0, 70000, 8, 2, 128, 1.0f, nullptr, nullptr), Error);
#endif
}

// The planner counts the GPU stage's attention workspace with the memory model's formula; the
// kernel's own must be the same (a host function: runs wherever the backend is built).
TEST(CudaAttention, WorkspaceIsWhatThePlannerCounts) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  for (const auto& [n_head, head_dim, n_ctx] : {std::tuple{40, 128, 4096u}, std::tuple{32, 64, 1000u},
                                                std::tuple{8, 256, 1u}}) {
    HyperParams hp;
    hp.n_embd = n_head * head_dim;
    hp.n_head = n_head;
    hp.n_head_kv = n_head;
    hp.head_dim = head_dim;
    hp.n_ff = 4 * hp.n_embd;
    hp.n_vocab = 1000;
    uint64_t planned = 0;
    for (const BufferSpec& b : stage_buffers(hp, {16, n_ctx, 1, true, false, true})) {
      if (b.name == "attention_partials") planned = b.bytes;
    }
    EXPECT_EQ(planned, 4 * cuda_attention_decode_workspace(n_head, head_dim, n_ctx)) << n_head << " " << head_dim;
  }
#endif
}

}  // namespace
}  // namespace engine
