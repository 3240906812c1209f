// GPU decode and prefill attention against a double-precision reference (softmax of scaled dot
// products, weighted sum of values) on fresh random queries and caches (f16, and for decode q8_0
// made by the CPU's quantizer), grouped-query heads, key counts below, at and across the kernels'
// chunk and tile sizes, prefill queries each over its own causal keys; outputs poisoned with NaN
// first. Skips (visibly) where no CUDA device exists.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/error.h"
#include "engine/half.h"
#include "engine/memory_model.h"
#include "kernels/cuda/kv_cache.h"
#include "scheduler/cuda_runtime.h"
#include "test_support.h"

#if ENGINE_HAVE_CUDA
#include <cuda_runtime.h>

#include "device_buffer.h"
#include "attention_reference.h"
#include "kernels/cuda/attention.h"
#include "kv_q8_cache.h"
#endif

namespace engine {
namespace {

#if ENGINE_HAVE_CUDA
using test::attention_reference;

// A cache of `rows` positions of fresh random keys and values on the device, in `type`, and the
// values it holds (fp16-rounded, or the CPU's dequantization of its Q8_0 blocks).
struct TestCache {
  std::vector<float> k, v;
  std::vector<test::DeviceBuffer> buffers;
  KvLayer layer;
};

TestCache random_cache(KvType type, int64_t rows, int64_t kv_dim, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> k(rows * kv_dim), v(k.size());
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);
  TestCache c;
  c.layer.type = type;
  if (type == KvType::q8_0) {
    const test::HostQ8Cache hk = test::host_q8_cache(k, kv_dim), hv = test::host_q8_cache(v, kv_dim);
    for (const auto* planes : {&hk, &hv}) {
      c.buffers.emplace_back(planes->codes);
      c.buffers.emplace_back(planes->scales);
    }
    c.layer.k = c.buffers[0].get();
    c.layer.k_scale = c.buffers[1].as<uint16_t>();
    c.layer.v = c.buffers[2].get();
    c.layer.v_scale = c.buffers[3].as<uint16_t>();
    c.k = hk.values;
    c.v = hv.values;
    return c;
  }
  auto upload_f16 = [&](const std::vector<float>& x, std::vector<float>& held) {
    std::vector<uint16_t> halves(x.size());
    held.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      halves[i] = fp32_to_fp16(x[i]);
      held[i] = fp16_to_fp32(halves[i]);
    }
    c.buffers.emplace_back(halves);
  };
  upload_f16(k, c.k);
  upload_f16(v, c.v);
  c.layer.k = c.buffers[0].get();
  c.layer.v = c.buffers[1].get();
  return c;
}

// Copies q to the device, poisons the output with NaN, runs `kernel(dq, dout)` and returns the
// output.
template <typename Kernel>
std::vector<float> run_on_device(const std::vector<float>& q, Kernel kernel) {
  const test::DeviceBuffer dq(q), dout(std::vector<float>(q.size(), NAN));
  kernel(dq.as<float>(), dout.as<float>());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return dout.to_host<float>();
}

// Normalised MSE of out against want; fails the test on a non-finite element.
double normalised_mse(const std::vector<float>& out, const std::vector<double>& want) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_TRUE(std::isfinite(out[i])) << "element " << i;
    if (!std::isfinite(out[i])) return INFINITY;
    err += (out[i] - want[i]) * (out[i] - want[i]);
    norm += want[i] * want[i];
  }
  return err / norm;
}
#endif

TEST(CudaAttention, DecodeMatchesDoubleReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  // Groups of 4, 5 (QwQ-32B: 40 query heads on 8 KV heads), 1, 12 (two blocks of 6 per KV head)
  // and 8; head sizes 128, 64, 96 (three values per lane: in q8_0, some lanes' values span two
  // blocks) and 256; f16 and q8_0 caches.
  for (const KvType type : {KvType::f16, KvType::q8_0}) {
    for (const auto& [n_head, n_head_kv, hd] :
         {std::tuple{8, 2, 128}, std::tuple{40, 8, 128}, std::tuple{4, 4, 96}, std::tuple{12, 1, 64},
          std::tuple{16, 2, 256}}) {
      const float scale = 1.0f / std::sqrt(float(hd));
      for (const int64_t n_keys : {int64_t(1), int64_t(63), int64_t(64), int64_t(200), int64_t(1000)}) {
        std::vector<float> q(n_head * hd);
        for (auto& x : q) x = normal(rng);
        const TestCache cache = random_cache(type, n_keys, int64_t(n_head_kv) * hd, rng);
        const auto want = attention_reference(q, cache.k, cache.v, n_keys - 1, 1, n_head, n_head_kv, hd, scale);
        const test::DeviceBuffer ws(std::vector<float>(cuda_attention_decode_workspace(n_head, hd, n_keys)));
        const auto out = run_on_device(q, [&](float* dq, float* dout) {
          cuda_attention_decode(dq, cache.layer, n_keys, n_head, n_head_kv, hd, scale, dout, ws.as<float>(), nullptr);
        });
        // f32 sums of the cached values (exact in f32 for q8_0 too: an 8-bit code times an fp16
        // scale): ~1e-12.
        EXPECT_LE(normalised_mse(out, want), 1e-10) << "KV " << kv_type_name(type) << ", heads " << n_head << "/"
                                                    << n_head_kv << ", head_dim " << hd << ", keys " << n_keys;
      }
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
      for (auto& x : q) x = normal(rng);
      const TestCache cache = random_cache(KvType::f16, n_keys, int64_t(n_head_kv) * hd, rng);
      const auto want = attention_reference(q, cache.k, cache.v, pos0, n_queries, n_head, n_head_kv, hd, scale);
      const auto out = run_on_device(q, [&](float* dq, float* dout) {
        cuda_attention_prefill(dq, cache.layer, pos0, n_queries, n_head, n_head_kv, hd, scale, dout, nullptr);
      });
      // head_dim 64 and 128 run on tensor cores: queries and probabilities rounded to fp16
      // (relative 2^-11 each, about 1e-7 in normalised MSE); 256: f32 throughout.
      const double bound = hd == 256 ? 1e-10 : 1e-5;
      EXPECT_LE(normalised_mse(out, want), bound) << "head_dim " << hd << " pos0 " << pos0 << " queries "
                                                  << n_queries;
    }
  }
#endif
}

// A q8_0 cache's positions 0 .. n - 1 as fp16 (what a GPU stage's prompt attention reads): every
// value is fp16 of the CPU's dequantization of its Q8_0 block, and nothing past n is written.
// Then a prompt batch's attention over the converted cache, as the stage runs it.
TEST(CudaAttention, Q8CacheConvertsToFp16ForPrompts) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int n_head = 8, n_head_kv = 2, hd = 128;
  const int64_t kv_dim = n_head_kv * hd, rows = 300, pos0 = 190, n_queries = 70;
  const TestCache cache = random_cache(KvType::q8_0, rows, kv_dim, rng);
  const int64_t n = pos0 + n_queries;
  const std::vector<uint16_t> poison(rows * kv_dim, 0x7e7e);  // fp16 NaN
  const test::DeviceBuffer k16(poison), v16(poison);
  cuda_kv_to_f16(cache.layer, n, kv_dim, k16.as<uint16_t>(), v16.as<uint16_t>(), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto kh = k16.to_host<uint16_t>(), vh = v16.to_host<uint16_t>();
  for (int64_t i = 0; i < rows * kv_dim; ++i) {
    const bool converted = i < n * kv_dim;
    ASSERT_EQ(kh[i], converted ? fp32_to_fp16(cache.k[i]) : uint16_t(0x7e7e)) << "K value " << i;
    ASSERT_EQ(vh[i], converted ? fp32_to_fp16(cache.v[i]) : uint16_t(0x7e7e)) << "V value " << i;
  }
  std::vector<float> q(n_queries * n_head * hd);
  for (auto& x : q) x = normal(rng);
  auto rounded = [&](const std::vector<float>& x) {
    std::vector<float> r(x.begin(), x.begin() + n * kv_dim);
    for (auto& e : r) e = fp16_to_fp32(fp32_to_fp16(e));
    return r;
  };
  const std::vector<float> k_rounded = rounded(cache.k), v_rounded = rounded(cache.v);
  const float scale = 1.0f / std::sqrt(float(hd));
  const auto want = attention_reference(q, k_rounded, v_rounded, pos0, n_queries, n_head, n_head_kv, hd, scale);
  KvLayer f16;
  f16.k = k16.get();
  f16.v = v16.get();
  const auto out = run_on_device(q, [&](float* dq, float* dout) {
    cuda_attention_prefill(dq, f16, pos0, n_queries, n_head, n_head_kv, hd, scale, dout, nullptr);
  });
  EXPECT_LE(normalised_mse(out, want), 1e-5);  // the tensor-core prefill's bound, as above
#endif
}

TEST(CudaAttention, RefusesBadShapes) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  // Checked before any CUDA call, so this runs wherever the backend is built.
  const KvLayer f16;
  KvLayer q8 = f16, f32 = f16;
  q8.type = KvType::q8_0;
  f32.type = KvType::f32;
  EXPECT_THROW(cuda_attention_decode(nullptr, f16, 4, 8, 2, 100, 1.0f, nullptr, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_attention_decode(nullptr, f16, 4, 8, 3, 128, 1.0f, nullptr, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_attention_decode(nullptr, f16, 0, 8, 2, 128, 1.0f, nullptr, nullptr, nullptr), Error);
  test::expect_error([&] { cuda_attention_decode(nullptr, f32, 4, 8, 2, 128, 1.0f, nullptr, nullptr, nullptr); },
                     {"cuda_attention_decode", "f32 KV cache is not supported"});
  EXPECT_THROW(cuda_attention_prefill(nullptr, f16, 0, 4, 8, 2, 100, 1.0f, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_attention_prefill(nullptr, f16, -1, 4, 8, 2, 128, 1.0f, nullptr, nullptr), Error);
  EXPECT_THROW(cuda_attention_prefill(nullptr, f16, 0, 70000, 8, 2, 128, 1.0f, nullptr, nullptr), Error);
  test::expect_error([&] { cuda_attention_prefill(nullptr, q8, 0, 4, 8, 2, 128, 1.0f, nullptr, nullptr); },
                     {"cuda_attention_prefill", "cuda_kv_to_f16 converts q8_0"});
  test::expect_error([&] { cuda_kv_to_f16(f16, 4, 256, nullptr, nullptr, nullptr); },
                     {"cuda_kv_to_f16", "a cache other than q8_0 is not supported"});
  EXPECT_THROW(cuda_kv_to_f16(q8, 4, 100, nullptr, nullptr, nullptr), Error);
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
