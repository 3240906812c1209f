// Split runs against the single-stage run: 2 and 3 stages (CPU and simulated devices, which run on
// the CPU through the same stage and transport code), split points right after the first layer
// and right before the last, prompt micro-batches that do and do not divide the prompt. Asserted:
// every prompt position's logits the bits of the single stage's at the same micro-batch, F32's
// within 1e-5 of the whole prompt in one batch, and the same greedy tokens afterwards.
#include <gtest/gtest.h>

#include <bit>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/devices.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/planner.h"
#include "engine/synthetic_model.h"
#include "scheduler/stage.h"
#include "model_helpers.h"
#include "test_support.h"

namespace engine {
namespace {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

class PipelineTest : public ::testing::Test {
 protected:
  static std::shared_ptr<const Model> make(WeightMix mix, Arch arch) { return test::random_model(mix, arch, 4); }

  static ContextOptions options(const Ranges& ranges, uint32_t n_ubatch) {
    ContextOptions o;
    o.kv_type = KvType::f32;
    o.n_threads = 2;
    o.n_ubatch = n_ubatch;
    for (size_t s = 0; s < ranges.size(); ++s) {
      // Alternate the CPU and simulated GPUs: both run on the CPU through the same stages.
      Device d = s % 2 ? Device{"sim" + std::to_string(s), DeviceKind::gpu} : Device{"cpu", DeviceKind::cpu};
      o.stages.push_back({d, ranges[s].first, ranges[s].second});
    }
    return o;
  }

  static std::vector<int32_t> prompt(int n) {
    std::mt19937 rng(std::random_device{}());
    std::vector<int32_t> ids(n);
    for (auto& t : ids) t = static_cast<int32_t>(rng() % 512);
    return ids;
  }
};

TEST_F(PipelineTest, SplitRunsMatchTheSingleStage) {
  const std::vector<Ranges> splits = {
      {{0, 0}, {1, 3}},          // right after the first layer
      {{0, 2}, {3, 3}},          // right before the last
      {{0, 0}, {1, 2}, {3, 3}},  // three stages
  };
  // A split runs each micro-batch through the same kernels at the same batch sizes as one stage
  // with that micro-batch, so their logits must be the same bits. Against the whole prompt in one
  // batch, micro-batches change the kernels' summation order (F32: float rounding, and the
  // greedy tokens must agree) or, for quantized weights, which kernel runs (the rows below a
  // type's panel size, the panels above): their products differ by ~2e-7, but activations are
  // rounded to 8 bits, and a difference that moves one across a rounding boundary moves it by a
  // whole step (1/127 of its block's largest value), which the next layers carry on. That is
  // checked at a tolerance for F32 only; for Q4_K_M it is the activations' rounding, which the
  // kernel tests bound (CpuOps).
  for (const WeightMix mix : {WeightMix::f32, WeightMix::q4_k_m}) {
    for (const Arch arch : {Arch::llama, Arch::qwen2}) {
      const auto model = make(mix, arch);
      std::vector<int32_t> ids(16), want_tokens;
      std::vector<float> whole;
      if (mix == WeightMix::f32) {
        Context single(model, options({{0, 3}}, 0));
        // A prompt whose greedy path has no near-tie: 10x the logits' tolerance.
        want_tokens = test::tie_free_greedy(single, ids, 12, 1e-4);
        ASSERT_FALSE(want_tokens.empty()) << "no prompt without a near-tie in " << test::kTieFreeDraws << " draws";
        single.reset();
        const auto all = single.eval_all(ids);
        whole.assign(all.begin(), all.end());
      } else {
        ids = prompt(16);
      }
      for (const uint32_t ub : {0u, 3u, 8u}) {
        Context single(model, options({{0, 3}}, ub));
        const auto all = single.eval_all(ids);
        const std::vector<float> ref(all.begin(), all.end());
        if (mix == WeightMix::f32) {
          EXPECT_LE(test::rel(ref, whole), 1e-5) << "one stage, ubatch " << ub;
        }
        for (const Ranges& split : splits) {
          Context ctx(model, options(split, ub));
          EXPECT_EQ(ctx.n_stages(), split.size());
          const auto got = ctx.eval_all(ids);
          ASSERT_EQ(got.size(), ref.size());
          size_t differ = 0;
          for (size_t i = 0; i < ref.size(); ++i) differ += std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(ref[i]);
          EXPECT_EQ(differ, 0u) << split.size() << " stages, first split after layer " << split[0].second << ", ubatch "
                                << ub << ": logits that differ from one stage's";
          if (mix != WeightMix::f32) continue;
          ctx.reset();
          EXPECT_EQ(test::greedy(ctx, ids, 12).first, want_tokens) << split.size() << " stages, ubatch " << ub;
        }
      }
    }
  }
}

TEST_F(PipelineTest, StagesFromAPlanOnSimulatedDevicesRun) {
  const auto model = make(WeightMix::f16, Arch::llama);
  PlanOptions po;
  po.split = parse_split("1,3");
  po.n_ctx = 64;
  const Plan plan = make_plan(model->spec(), resolve_devices(parse_device_list("sim:1GiB,sim:1GiB")), po);
  const auto stages = stages_from_plan(plan);
  ASSERT_EQ(stages.size(), 2u);
  EXPECT_EQ(stages[0].first_layer, 0u);
  EXPECT_EQ(stages[0].last_layer, 0u);
  EXPECT_EQ(stages[1].first_layer, 1u);
  EXPECT_EQ(stages[1].last_layer, 3u);
  ContextOptions o;
  o.n_ctx = plan.n_ctx;
  o.stages = stages;
  o.kv_type = KvType::f32;
  Context split(model, o);
  ContextOptions one;
  one.n_ctx = plan.n_ctx;
  one.kv_type = KvType::f32;
  Context single(model, one);
  const auto ids = prompt(10);
  const auto a = split.eval(ids);
  const std::vector<float> got(a.begin(), a.end());
  EXPECT_LE(test::rel(got, single.eval(ids)), 1e-5);
}

TEST_F(PipelineTest, BadStagesAreRefusedWithTheReason) {
  const auto model = make(WeightMix::f16, Arch::llama);
  test::expect_error([&] { Context c(model, options({{0, 1}, {3, 3}}, 0)); }, {"stage 1", "layers 3-3", "starting at 2"});
  test::expect_error([&] { Context c(model, options({{0, 1}, {2, 2}}, 0)); }, {"end at layer 2", "4 layers"});
  ContextOptions o;
  o.stages.push_back({Device{"cuda0 (test)", DeviceKind::gpu, 0}, 0, 3});
  // No device here: the stage names itself and passes on the reason (no backend, or the runtime's).
  test::expect_error([&] { Context c(model, o); }, {"stage 0", "layers 0-3", "cuda0"});
}

// Stages that run on the CPU (the CPU, simulated devices) connect through host memory whatever
// transport is asked for; device transports only connect two GPU stages (CudaStage tests).
TEST_F(PipelineTest, TransportsPerBoundary) {
  const auto model = make(WeightMix::f32, Arch::llama);
  EXPECT_EQ(Context(model, options({{0, 3}}, 0)).transports(), "none");
  for (const char* kind : {"auto", "host", "peer", "nccl"}) {
    ContextOptions o = options({{0, 0}, {1, 2}, {3, 3}}, 0);
    o.transport = kind;
    EXPECT_EQ(Context(model, o).transports(), "host|host") << kind;
  }
  ContextOptions bad = options({{0, 1}, {2, 3}}, 0);
  bad.transport = "infiniband";
  test::expect_error([&] { Context c(model, bad); }, {"transport 'infiniband' is not one of auto, host, peer, nccl"});
}

// Every stage checks a forward's bounds before it touches a buffer: more tokens than its rows, or
// positions past its KV cache, are refused by name rather than written out of bounds.
TEST(StageBounds, BatchesBeyondRowsOrContextAreRefused) {
  const StageLayers layers{2, 5, false, true};
  EXPECT_NO_THROW(check_batch(layers, 4, 12, 4, 16));
  test::expect_error([&] { check_batch(layers, 5, 0, 4, 16); }, {"layers 2-5", "batch of 5 tokens", "4 rows"});
  test::expect_error([&] { check_batch(layers, 4, 13, 4, 16); }, {"position 13", "16 positions"});
  test::expect_error([&] { check_batch(layers, 0, 0, 4, 16); }, {"batch of 0 tokens"});
}

}  // namespace
}  // namespace engine
