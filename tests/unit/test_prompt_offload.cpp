// The CPU stage's prompt offload (engine/prompt_offload.h) on the CPU: a stand-in offload that
// records each call and multiplies with the CPU's own matmul_group, so a stage that sends its
// products there must give the plain stage's logits bit for bit; it must send every product of a
// layer's prompt batch (32 tokens or more), in the stage's groups, with their widths and rows,
// none of a shorter batch or of a decode step, and no group holding a matrix it refuses. Also the
// plan's offload reaching the CPU stage's options. The CUDA offload itself: test_cuda_stage.cpp.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/cpu_model.h"
#include "engine/engine.h"
#include "engine/memory_model.h"
#include "engine/prompt_offload.h"
#include "model_helpers.h"

namespace engine {
namespace {

struct Call {
  std::vector<GgmlType> types;
  std::vector<int64_t> rows;
  int64_t K = 0, n = 0;
};

class RecordingOffload final : public PromptOffload {
 public:
  RecordingOffload(std::vector<Call>* calls, std::set<GgmlType> refused) : calls_(calls), refused_(std::move(refused)) {}
  bool accepts(GgmlType type, int64_t) const override { return !refused_.count(type); }
  void multiply(std::span<const MatmulProduct> products, int64_t K, const float* x, int64_t n,
                ThreadPool& pool) override {
    Call c{{}, {}, K, n};
    for (const MatmulProduct& p : products) {
      c.types.push_back(p.type);
      c.rows.push_back(p.N);
    }
    calls_->push_back(c);
    matmul_group(products, K, x, n, pool);
  }

 private:
  std::vector<Call>* calls_;
  std::set<GgmlType> refused_;
};

// Logits of every token of `ids`, fed in batches of `batch`.
std::vector<float> run(CpuStage& stage, const std::vector<int32_t>& ids, int64_t batch, int64_t n_vocab) {
  std::vector<float> all(ids.size() * size_t(n_vocab));
  for (size_t at = 0; at < ids.size(); at += size_t(batch)) {
    const int64_t n = std::min<int64_t>(batch, int64_t(ids.size() - at));
    stage.forward(ids.data() + at, n, int64_t(at), all.data() + at * size_t(n_vocab), true);
  }
  return all;
}

TEST(PromptOffload, CpuStageSendsEveryProductOfAPromptBatch) {
  const auto model = test::random_model(WeightMix::q4_k_m, Arch::qwen2, 3);  // Q6_K in some layers' v
  const ModelSpec& spec = model->spec();
  const HyperParams& hp = spec.hp;
  const CpuModel weights(spec);
  std::mt19937 rng(std::random_device{}());
  std::vector<int32_t> ids(72);
  for (auto& t : ids) t = static_cast<int32_t>(rng() % hp.n_vocab);
  const StageLayers all{0, hp.n_layer - 1, true, true};
  CpuStage plain(weights, all, 128, 64, KvType::f16, 2);
  // 40 tokens (sent), then 31 (kept), then one (decode: kept).
  auto feed = [&](CpuStage& stage) {
    std::vector<float> out = run(stage, {ids.begin(), ids.begin() + 40}, 40, hp.n_vocab);
    const std::vector<float> rest = run(stage, {ids.begin() + 40, ids.end()}, 31, hp.n_vocab);
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
  };
  const std::vector<float> want = feed(plain);
  for (const std::set<GgmlType>& refused : {std::set<GgmlType>{}, std::set<GgmlType>{GgmlType::Q6_K}}) {
    std::vector<Call> calls;
    CpuStage stage(weights, all, 128, 64, KvType::f16, 2);
    stage.set_prompt_offload(std::make_unique<RecordingOffload>(&calls, refused));
    EXPECT_EQ(feed(stage), want) << refused.size() << " types refused";
    // What the stage should have sent: per layer q/k/v, attn_output, gate/up, ffn_down, each
    // group unless it holds a refused type; all of the 40-token batch, nothing after it.
    std::vector<Call> expected;
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
      const LayerWeights& w = weights.layers[l];
      for (const std::vector<const Matrix*>& group :
           {std::vector<const Matrix*>{&w.wq, &w.wk, &w.wv}, {&w.wo}, {&w.w_gate, &w.w_up}, {&w.w_down}}) {
        Call c{{}, {}, group[0]->cols, 40};
        bool sent = true;
        for (const Matrix* m : group) {
          c.types.push_back(m->type);
          c.rows.push_back(m->rows);
          sent = sent && !refused.count(m->type);
        }
        if (sent) expected.push_back(c);
      }
    }
    ASSERT_EQ(calls.size(), expected.size()) << refused.size() << " types refused";
    for (size_t i = 0; i < calls.size(); ++i) {
      EXPECT_EQ(calls[i].types, expected[i].types) << i;
      EXPECT_EQ(calls[i].rows, expected[i].rows) << i;
      EXPECT_EQ(calls[i].K, expected[i].K) << i;
      EXPECT_EQ(calls[i].n, 40) << i;
    }
    if (!refused.empty()) {
      ASSERT_LT(expected.size(), 4u * hp.n_layer) << "the model should have a Q6_K matrix to refuse";
    }
  }
}

// A plan with layers on the CPU names its offload GPU in the CPU stage's options; without CPU
// layers, or with the offload turned off, no stage has one. A simulated GPU cannot multiply, so a
// context built from such a plan keeps the products on the CPU, and runs.
TEST(PromptOffload, ThePlanGivesTheCpuStageItsGpu) {
  const auto model = test::random_model(WeightMix::q8_0, Arch::llama, 4);
  const Inventory inv = resolve_devices(parse_device_list("sim:24GiB,cpu:8GiB"));
  for (const bool offload : {true, false}) {
    PlanOptions po;
    po.split = parse_split("2");
    po.prompt_offload = offload;
    const std::vector<StageOptions> stages = stages_from_plan(make_plan(model->spec(), inv, po));
    ASSERT_EQ(stages.size(), 2u);
    EXPECT_EQ(stages[0].device.kind, DeviceKind::cpu);
    EXPECT_EQ(stages[0].prompt_offload.has_value(), offload);
    if (offload) {
      EXPECT_EQ(stages[0].prompt_offload->name, "sim0");
    }
    EXPECT_FALSE(stages[1].prompt_offload.has_value());
    ContextOptions co;
    co.n_threads = 2;
    co.n_ctx = 128;
    co.stages = stages;
    Context ctx(model, co);
    EXPECT_EQ(ctx.eval(std::vector<int32_t>(40, 7)).size(), size_t(model->n_vocab()));
  }
  PlanOptions all_gpu;
  all_gpu.split = parse_split("4");
  for (const StageOptions& s : stages_from_plan(make_plan(model->spec(), inv, all_gpu))) {
    EXPECT_FALSE(s.prompt_offload.has_value());
  }
}

}  // namespace
}  // namespace engine
