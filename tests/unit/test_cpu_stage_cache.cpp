// The CPU stage's KV cache at any context length: the keys sit in blocks of kAttnKeyBlock
// positions, so a head's keys take whole blocks; a context that is not a multiple of
// a block must give every position its own place (no head's last block running into the next
// head's first). The logits of a run that fills such a context are compared, bit for bit, with the
// same run in a context of whole blocks, where the layout has no partial block to get wrong.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "engine/cpu_model.h"
#include "engine/engine.h"
#include "engine/memory_model.h"
#include "kernels/cpu/attention.h"
#include "model_helpers.h"

namespace engine {
namespace {

std::vector<float> fill_context(const std::shared_ptr<const Model>& model, KvType kv, uint32_t n_ctx,
                                const std::vector<int32_t>& ids) {
  ContextOptions o;
  o.n_ctx = n_ctx;
  o.n_threads = 2;
  o.kv_type = kv;
  o.n_batch = 32;
  Context ctx(model, o);
  std::vector<float> all;
  // A prompt in batches, then one token at a time up to the context's last position.
  auto logits = ctx.eval(std::span<const int32_t>(ids.data(), 70));
  all.assign(logits.begin(), logits.end());
  for (size_t i = 70; i < ids.size(); ++i) {
    logits = ctx.eval(std::span<const int32_t>(&ids[i], 1));
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

TEST(CpuStageCache, ContextOfPartialKeyBlockGivesTheLogitsOfWholeBlocks) {
  const auto model = test::random_model(WeightMix::f32, Arch::qwen2, 2);
  std::mt19937 rng(std::random_device{}());
  const uint32_t n_ctx = 2 * kAttnKeyBlock * 3 + 5;  // 101: a partial last block
  std::vector<int32_t> ids(n_ctx);
  for (auto& t : ids) t = static_cast<int32_t>(rng() % 512);
  for (KvType kv : {KvType::f32, KvType::f16, KvType::q8_0}) {
    const auto partial = fill_context(model, kv, n_ctx, ids);
    const auto whole = fill_context(model, kv, uint32_t(attention_key_block_positions(n_ctx) + kAttnKeyBlock), ids);
    ASSERT_EQ(partial.size(), whole.size());
    for (size_t i = 0; i < whole.size(); ++i) {
      ASSERT_EQ(partial[i], whole[i]) << "kv " << kv_type_name(kv) << " logit " << i;
    }
  }
}

// The planner's count of a CPU stage's cache (cpu_stage_kv_bytes) is what the stage allocates.
TEST(CpuStageCache, AllocatesWhatThePlannerCounts) {
  const auto model = test::random_model(WeightMix::f32, Arch::qwen2, 3);
  const CpuModel cpu(model->spec());
  for (KvType kv : {KvType::f32, KvType::f16, KvType::q8_0}) {
    for (uint32_t n_ctx : {1u, 16u, 17u, 101u}) {
      const CpuStage stage(cpu, StageLayers{1, 2, false, true}, n_ctx, 8, kv, 1);
      // By hand: 2 layers x n_head_kv heads x whole blocks of 16 positions x one head's bytes.
      const HyperParams& hp = model->spec().hp;
      const uint64_t head_bytes = kv == KvType::f32 ? 4 * hp.head_dim : kv == KvType::f16 ? 2 * hp.head_dim
                                                                                           : hp.head_dim / 32 * 34;
      const uint64_t by_hand = 2 * 2 * uint64_t(hp.n_head_kv) * ((n_ctx + 15) / 16 * 16) * head_bytes;
      EXPECT_EQ(stage.kv_cache_bytes(), by_hand) << kv_type_name(kv) << " ctx " << n_ctx;
      EXPECT_EQ(cpu_stage_kv_bytes(hp, kv, n_ctx, 2), by_hand) << kv_type_name(kv) << " ctx " << n_ctx;
    }
  }
}

}  // namespace
}  // namespace engine
