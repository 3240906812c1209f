// Device transports on one GPU: a model split over two and three stages on slices of the GPU (and
// the CPU between them) through peer copies and through host buffers, micro-batched or not, gives
// the logits of the single GPU stage run the same way bit for bit (the same kernels on the same
// data; a transport only moves it) and the same greedy tokens. NCCL as far as one GPU allows: a one-rank communicator
// sends a buffer to itself, and two stages on one GPU are refused (one rank per GPU). What needs two
// GPUs (peer copies between devices, NCCL between ranks) is untested until such a machine exists.
// Skips (visibly) where no CUDA device exists.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "model_helpers.h"
#include "scheduler/cuda_runtime.h"
#include "scheduler/cuda_transport.h"
#include "test_support.h"

#if ENGINE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace engine {
namespace {

// Stages (cuda index or -1 for the CPU, layer range) on GPU slices named like the planner's.
ContextOptions stages(std::vector<std::pair<int, std::pair<uint32_t, uint32_t>>> list, const char* transport,
                      uint32_t n_ubatch) {
  ContextOptions o;
  o.n_ctx = 256;
  o.n_threads = 2;
  o.n_ubatch = n_ubatch;
  o.transport = transport;
  for (size_t s = 0; s < list.size(); ++s) {
    const auto& [cuda, range] = list[s];
    Device d = cuda >= 0 ? Device{"cuda0 slice " + std::to_string(s), DeviceKind::gpu, cuda}
                         : Device{"cpu", DeviceKind::cpu};
    o.stages.push_back({d, range.first, range.second});
  }
  return o;
}

TEST(CudaTransport, SlicesMatchOneStageThroughEveryTransport) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
  const auto model = test::random_model(WeightMix::q8_0, Arch::qwen2, 4);
  Context one(model, stages({{0, {0, 3}}}, "auto", 0));
  // A prompt whose greedy path has no near-tie, so that the split with a CPU stage (whose kernels
  // round differently) must follow it too.
  std::vector<int32_t> ids(20);
  const std::vector<int32_t> want_tokens = test::tie_free_greedy(one, ids, 16, 1e-2);
  ASSERT_FALSE(want_tokens.empty()) << "no prompt without a near-tie in " << test::kTieFreeDraws << " draws";
  struct Case {
    std::vector<std::pair<int, std::pair<uint32_t, uint32_t>>> split;
    const char* transport;
    const char* expect;  // Context::transports()
    bool cpu;            // with a CPU stage, whose kernels round differently
  };
  const std::vector<Case> cases = {
      {{{0, {0, 0}}, {0, {1, 3}}}, "peer", "peer", false},
      {{{0, {0, 2}}, {0, {3, 3}}}, "auto", "peer", false},
      {{{0, {0, 1}}, {0, {2, 3}}}, "host", "host", false},
      {{{0, {0, 0}}, {0, {1, 1}}, {0, {2, 3}}}, "peer", "peer|peer", false},
      {{{0, {0, 0}}, {-1, {1, 2}}, {0, {3, 3}}}, "peer", "host|host", true},
  };
  // Unpipelined (20-token batches: the tensor-core matmul on fp16 activations), and micro-batches
  // of 3 through the stages (the matvec kernels on f32 activations): each against the single GPU
  // stage run the same way, which runs the same kernels on the same data.
  for (const uint32_t ubatch : {0u, 3u}) {
    Context one_way(model, stages({{0, {0, 3}}}, "auto", ubatch));
    const auto want_span = one_way.eval_all(ids);
    const std::vector<float> want(want_span.begin(), want_span.end());
    for (const Case& c : cases) {
      // Bit for bit between GPU stages; a CPU stage's f32 products against the GPU's fp16 prompt
      // products (1e-2), or against its f32 matvecs (1e-4).
      const double tol = !c.cpu ? 0.0 : ubatch == 0 ? 1e-2 : 1e-4;
      Context split(model, stages(c.split, c.transport, ubatch));
      EXPECT_EQ(split.transports(), c.expect);
      EXPECT_LE(test::rel(split.eval_all(ids), want), tol) << c.transport << " " << c.expect << " ubatch " << ubatch;
      split.reset();
      EXPECT_EQ(test::greedy(split, ids, 16).first, want_tokens) << c.transport << " " << c.expect;
    }
  }
}

TEST(CudaTransport, NcclIsOneRankPerGpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
  const auto model = test::random_model(WeightMix::f16, Arch::llama, 2);
  test::expect_error([&] { Context c(model, stages({{0, {0, 0}}, {0, {1, 1}}}, "nccl", 0)); },
                     {"transport nccl", "stages 0 and 1 are both on cuda0", "one rank per GPU", "--transport peer"});
}

TEST(CudaTransport, NcclOneRankSendsToItself) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  const size_t n = 5 * 4096 + 3;  // a hidden state of a few tokens, not a round size
  std::vector<float> x(n), back(n);
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  float *from = nullptr, *to = nullptr;
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&from, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&to, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(from, x.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(to, 0xff, n * sizeof(float)), cudaSuccess);  // NaN poison
  try {
    nccl_self_send(0, from, to, n);
  } catch (const Error& e) {
    cudaFree(from);
    cudaFree(to);
    if (std::string(e.what()).find("cannot load") != std::string::npos) GTEST_SKIP() << e.what();
    FAIL() << e.what();
  }
  ASSERT_EQ(cudaMemcpy(back.data(), to, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(from);
  cudaFree(to);
  EXPECT_EQ(back, x);
#endif
}

}  // namespace
}  // namespace engine
