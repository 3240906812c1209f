// The split planner on simulated devices and a sparse QwQ-32B-shaped Q4_K_M model: placements
// checked against hand computations from the tensor table.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/byte_size.h"
#include "engine/devices.h"
#include "engine/memory_model.h"
#include "engine/model_file.h"
#include "engine/model_spec.h"
#include "engine/planner.h"
#include "engine/synthetic_model.h"
#include "scheduler/cuda_runtime.h"
#include "scheduler/device_arena.h"
#include "test_support.h"

namespace engine {
namespace {

constexpr uint64_t GiB = 1ull << 30;

uint32_t count_layers(const DevicePlan& d) {
  return d.layers ? d.layers->second - d.layers->first + 1 : 0;
}

int cuda_device_count_for_tests() { return cuda_device_count(); }

class PlannerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    SyntheticModelOptions o = *preset_options("qwq32", Arch::qwen2);
    o.mix = WeightMix::q4_k_m;
    o.sparse = true;
    write_synthetic_model(o, dir_->file("qwq32.gguf"));
    spec_ = new ModelSpec(ModelSpec::from(ModelFile::open(dir_->file("qwq32.gguf"))));
  }
  static void TearDownTestSuite() {
    delete spec_;
    delete dir_;
  }

  static Inventory sims(std::vector<uint64_t> gib, uint64_t cpu_gib = 64) {
    std::string list;
    for (uint64_t g : gib) list += fmt::format("sim:{}GiB,", g);
    list += fmt::format("cpu:{}GiB", cpu_gib);
    return resolve_devices(parse_device_list(list));
  }
  static Plan plan(const Inventory& inv, const std::string& split, uint32_t ctx, bool ctx_max = false,
                   bool prompt_offload = true) {
    PlanOptions o;
    o.split = parse_split(split);
    o.n_ctx = ctx;
    o.ctx_max = ctx_max;
    o.prompt_offload = prompt_offload;
    return make_plan(*spec_, inv, o);
  }
  // What a GPU stage allocates for a tensor, from the tensor table: vectors as f32, matrices as
  // stored (Q6_K rows padded to 16 bytes: engine/gpu_layout.h), each rounded up to the 256-byte
  // allocation granularity.
  static uint64_t gpu_bytes_by_hand(const TensorInfo& t) {
    uint64_t bytes = t.n_dims == 1 ? 4 * t.n_elements : t.n_bytes;
    if (t.n_dims > 1 && t.type == GgmlType::Q6_K) {  // rows of 210-byte blocks, padded to 16 bytes
      bytes = (uint64_t(t.ne[0]) / 256 * 210 + 15) / 16 * 16 * uint64_t(t.rows());
    }
    return (bytes + 255) / 256 * 256;
  }
  // Exact GPU bytes of layer l, summed here from the tensor table.
  static uint64_t layer_bytes_by_hand(uint32_t l) {
    uint64_t total = 0;
    const std::string prefix = fmt::format("blk.{}.", l);
    for (const auto& t : spec_->file.tensors()) {
      if (t.name.substr(0, prefix.size()) == prefix) total += gpu_bytes_by_hand(t);
    }
    return total;
  }
  static uint64_t kv_by_hand(uint32_t ctx) { return 2ull * ctx * 8 * 128 * 2; }  // K+V, f16

  // The prompt offload of CPU layers first..last at `batch` tokens, from the tensor table: on the GPU the
  // largest matrix (as a GPU stage holds it), the batch in fp16 at the widest input, and an f32
  // buffer for the batch or a product, whichever is wider; on the CPU two 8 MiB pinned chunks
  // and that f32 buffer's pinned copy.
  struct OffloadByHand {
    uint64_t gpu = 0, cpu = 0;
  };
  static OffloadByHand offload_by_hand(uint32_t first, uint32_t last, uint64_t batch = 512) {
    uint64_t matrix = 0, max_k = 0, max_n = 0;
    for (uint32_t l = first; l <= last; ++l) {
      const std::string prefix = fmt::format("blk.{}.", l);
      for (const auto& t : spec_->file.tensors()) {
        if (t.name.substr(0, prefix.size()) != prefix || t.n_dims != 2) continue;
        matrix = std::max(matrix, gpu_bytes_by_hand(t));
        max_k = std::max<uint64_t>(max_k, t.ne[0]);
        max_n = std::max<uint64_t>(max_n, t.ne[1]);
      }
    }
    auto aligned = [](uint64_t b) { return (b + 255) / 256 * 256; };
    const uint64_t rows = 4 * batch * std::max(max_k, max_n);
    return {matrix + aligned(2 * batch * max_k) + aligned(rows), 2 * (8ull << 20) + rows};
  }

  // Every layer exactly once, contiguous per device, in pipeline (layer) order.
  static void expect_partition(const Plan& p) {
    std::vector<int> owner(p.n_layer, -1);
    for (size_t i = 0; i < p.devices.size(); ++i) {
      const auto& d = p.devices[i];
      if (!d.layers) continue;
      ASSERT_LE(d.layers->first, d.layers->second);
      for (uint32_t l = d.layers->first; l <= d.layers->second; ++l) {
        ASSERT_LT(l, p.n_layer);
        EXPECT_EQ(owner[l], -1) << "layer " << l << " placed twice";
        owner[l] = static_cast<int>(i);
      }
    }
    for (uint32_t l = 0; l < p.n_layer; ++l) EXPECT_GE(owner[l], 0) << "layer " << l << " unplaced";
    int outputs = 0;
    for (const auto& d : p.devices) {
      outputs += d.output;
      if (d.used()) {
        EXPECT_LE(d.needed_bytes(), d.device.free_bytes) << d.device.name;
        EXPECT_GE(d.free_after_bytes(), 0) << d.device.name;
      }
    }
    EXPECT_EQ(outputs, 1);
  }

  static test::TempDir* dir_;
  static ModelSpec* spec_;
};

test::TempDir* PlannerTest::dir_ = nullptr;
ModelSpec* PlannerTest::spec_ = nullptr;

TEST_F(PlannerTest, TwoGpusOf24GiBHoldEverythingAtShortAndLongContext) {
  for (uint32_t ctx : {4096u, 32768u}) {
    const Plan p = plan(sims({24, 24}), "auto", ctx);
    expect_partition(p);
    EXPECT_EQ(p.n_layer_gpu, 64u) << ctx;
    EXPECT_EQ(p.n_layer_cpu, 0u) << ctx;
    EXPECT_TRUE(p.output_on_gpu());
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(p.devices[i].reserve_bytes, 512ull << 20);  // max(512 MiB, 2% of 24 GiB)
      EXPECT_LE(p.devices[i].needed_bytes(), 24 * GiB);
    }
    EXPECT_EQ(p.devices[0].kv_bytes, count_layers(p.devices[0]) * kv_by_hand(ctx));
  }
  // At 32768 tokens the KV cache (8 GiB) no longer fits one GPU: both are used.
  EXPECT_TRUE(plan(sims({24, 24}), "auto", 32768).devices[1].layers.has_value());
}

// The CPU stage keeps each KV head's keys in blocks of 16 positions, so its cache holds the
// context rounded up to whole blocks; a GPU's holds the context itself.
TEST_F(PlannerTest, CpuKvCountsWholeBlocksOfSixteenPositions) {
  for (uint32_t ctx : {4096u, 4097u, 4111u, 1u}) {
    const Plan p = plan(sims({8}), "10", ctx);  // the other 54 layers on the CPU
    const DevicePlan& gpu = p.devices[0];
    const DevicePlan& cpu = p.devices[1];
    ASSERT_EQ(cpu.device.kind, DeviceKind::cpu);
    ASSERT_EQ(count_layers(gpu), 10u);
    ASSERT_EQ(count_layers(cpu), 54u);
    const uint32_t whole_blocks = (ctx + 15) / 16 * 16;
    EXPECT_EQ(cpu.kv_bytes, 54 * kv_by_hand(whole_blocks)) << ctx;
    EXPECT_EQ(gpu.kv_bytes, stage_kv_bytes(spec_->hp, KvType::f16, ctx, 10)) << ctx;
  }
}

TEST_F(PlannerTest, OneGpuOf24GiBTakesExactlyWhatFitsTheCpuTheRest) {
  const uint32_t ctx = 32768;
  for (bool prompt_offload : {true, false}) {
    SCOPED_TRACE(prompt_offload ? "with the prompt offload" : "without the prompt offload");
    const Plan p = plan(sims({24}), "auto", ctx, false, prompt_offload);
    expect_partition(p);
    // By hand: the GPU takes the last k layers plus the output head, as many as fit under
    // 24 GiB minus the 512 MiB reserve, its scratch buffers and (when asked) the prompt offload
    // of the layers left to the CPU.
    uint64_t output = 0;
    for (const char* name : {"output.weight", "output_norm.weight"}) {
      output += gpu_bytes_by_hand(*spec_->file.find_tensor(name));
    }
    const uint64_t compute = stage_buffer_bytes(spec_->hp, {512, ctx, 1, true, true, true});
    const uint64_t budget = 24 * GiB - (512ull << 20) - compute - output;
    auto offload = [&](uint32_t gpu_layers) {
      return prompt_offload && gpu_layers < 64 ? offload_by_hand(0, 63 - gpu_layers).gpu : 0;
    };
    uint32_t k = 0;
    uint64_t used = 0;
    while (k < 64 && used + layer_bytes_by_hand(63 - k) + kv_by_hand(ctx) + offload(k + 1) <= budget) {
      used += layer_bytes_by_hand(63 - k) + kv_by_hand(ctx);
      ++k;
    }
    ASSERT_GT(k, 0u);
    ASSERT_LT(k, 64u);
    ASSERT_TRUE(p.devices[0].layers.has_value());
    EXPECT_EQ(p.devices[0].layers->first, 64 - k);
    EXPECT_EQ(p.devices[0].layers->second, 63u);
    EXPECT_TRUE(p.devices[0].output);
    ASSERT_TRUE(p.devices[1].layers.has_value());
    EXPECT_EQ(p.devices[1].layers->first, 0u);
    EXPECT_EQ(p.devices[1].layers->second, 63 - k);
    EXPECT_EQ(p.n_layer_cpu, 64 - k);
    EXPECT_EQ(p.devices[0].weight_bytes, used - k * kv_by_hand(ctx) + output);
    EXPECT_EQ(p.devices[0].offload_bytes, offload(k));
    EXPECT_EQ(p.devices[1].offload_bytes, prompt_offload ? offload_by_hand(0, 63 - k).cpu : 0);
    EXPECT_EQ(p.prompt_offload_gpu, prompt_offload ? 0 : -1);
  }
  // The offload's 0.2 GiB cost the GPU one layer here.
  EXPECT_EQ(plan(sims({24}), "auto", ctx, false, true).n_layer_cpu,
            plan(sims({24}), "auto", ctx, false, false).n_layer_cpu + 1);
}

// What a plan leaves: each device's free bytes less what the plan puts there (weights, KV,
// buffers, offload), its reserve not taken (a second plan keeps its own); unused devices whole.
// A second model planned on what is left fits beside the first: the two never over-commit a device.
TEST_F(PlannerTest, InventoryAfterAPlanLeavesWhatItDoesNotUse) {
  const Inventory inv = sims({24, 24}, 64);
  const Plan p = plan(inv, "20,44", 4096);
  const Inventory left = inventory_after(inv, p);
  ASSERT_EQ(left.gpus.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const DevicePlan& d = p.devices[i];
    EXPECT_EQ(left.gpus[i].free_bytes,
              inv.gpus[i].free_bytes - d.weight_bytes - d.kv_bytes - d.compute_bytes - d.offload_bytes)
        << i;
  }
  const DevicePlan& cpu = p.devices.back();
  EXPECT_EQ(left.cpu.free_bytes, inv.cpu.free_bytes - (cpu.used() ? cpu.needed_bytes() - cpu.reserve_bytes : 0));
  // The same model again on what is left: the two plans' needs together stay within each GPU.
  const Plan second = plan(left, "auto", 4096);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_LE(p.devices[i].needed_bytes() - p.devices[i].reserve_bytes + second.devices[i].needed_bytes(),
              inv.gpus[i].free_bytes)
        << i;
  }
  EXPECT_GT(second.n_layer_gpu, 0u);
  // An unused GPU is left whole.
  const Plan one = plan(inv, "none", 4096);
  EXPECT_EQ(inventory_after(inv, one).gpus[1].free_bytes, inv.gpus[1].free_bytes);
  EXPECT_LT(inventory_after(inv, one).gpus[0].free_bytes, inv.gpus[0].free_bytes);
}

// A manual split gets the prompt offload on the GPU that follows the CPU's layers (or precedes
// them) when the GPU has room for it, and goes without when it has not; every layer on the GPUs
// needs none.
TEST_F(PlannerTest, ManualSplitsTakeThePromptOffloadWhereItFits) {
  const uint32_t ctx = 4096;
  const Plan two = plan(sims({24, 24}), "0-19,40-63", ctx);  // the CPU between the GPUs
  EXPECT_EQ(two.prompt_offload_gpu, 1);
  EXPECT_EQ(two.devices[0].offload_bytes, 0u);
  EXPECT_EQ(two.devices[1].offload_bytes, offload_by_hand(20, 39).gpu);
  EXPECT_EQ(two.devices[2].offload_bytes, offload_by_hand(20, 39).cpu);
  const Plan last = plan(sims({24}), "0-49", ctx);  // the CPU after the GPU
  EXPECT_EQ(last.prompt_offload_gpu, 0);
  EXPECT_EQ(last.devices[0].offload_bytes, offload_by_hand(50, 63).gpu);
  EXPECT_EQ(plan(sims({24, 24}), "30,34", ctx).prompt_offload_gpu, -1);  // nothing on the CPU
  // A GPU with room for its 10 layers and less than the offload's bytes to spare: the split
  // stands without the offload; with room for both, it takes it.
  const uint64_t ten = plan(sims({24}), "10", ctx, false, false).devices[0].needed_bytes();
  const uint64_t offload = offload_by_hand(0, 53).gpu;
  for (const uint64_t spare : {uint64_t(offload - (1ull << 20)), offload}) {
    const Inventory inv = resolve_devices(parse_device_list(fmt::format("sim:{}B,cpu:64GiB", ten + spare)));
    PlanOptions o;
    o.split = parse_split("10");
    o.n_ctx = ctx;
    const Plan p = make_plan(*spec_, inv, o);
    EXPECT_EQ(count_layers(p.devices[0]), 10u);
    EXPECT_EQ(p.prompt_offload_gpu, spare >= offload ? 0 : -1) << spare;
    EXPECT_EQ(p.devices[0].offload_bytes, spare >= offload ? offload : 0) << spare;
  }
}

// Every stage is built for the micro-batch (ContextOptions::n_ubatch, never more than the batch
// or the context), so the planner counts its buffers and the prompt offload at it: a batch of
// 2048 in micro-batches of 512 needs what a batch of 512 does, and a batch wider than the
// context what a batch of the context's width does.
TEST_F(PlannerTest, BuffersAreCountedAtTheMicroBatch) {
  const uint32_t ctx = 4096;
  auto plan_at = [&](uint32_t batch, uint32_t ubatch, uint32_t n_ctx) {
    PlanOptions o;
    o.split = parse_split("10");  // layers 10..63 on the CPU, their prompts on the GPU
    o.n_ctx = n_ctx;
    o.n_batch = batch;
    o.n_ubatch = ubatch;
    return make_plan(*spec_, sims({24}), o);
  };
  auto expect_counted_at = [&](const Plan& p, uint32_t b, uint32_t n_ctx) {
    ASSERT_EQ(p.prompt_offload_gpu, 0);
    EXPECT_EQ(p.n_ubatch, b);
    ASSERT_TRUE(p.devices[0].output);  // the head goes on the GPU
    EXPECT_EQ(p.devices[0].compute_bytes, stage_buffer_bytes(spec_->hp, {b, n_ctx, 1, true, true, true}));
    EXPECT_EQ(p.devices[1].compute_bytes, stage_buffer_bytes(spec_->hp, {b, n_ctx, 1, true, false, false}));
    EXPECT_EQ(p.devices[0].offload_bytes, offload_by_hand(10, 63, b).gpu);
    EXPECT_EQ(p.devices[1].offload_bytes, offload_by_hand(10, 63, b).cpu);
  };
  const Plan whole = plan_at(2048, 0, ctx);
  expect_counted_at(whole, 2048, ctx);
  const Plan micro = plan_at(2048, 512, ctx);
  expect_counted_at(micro, 512, ctx);
  EXPECT_EQ(micro.n_batch, 2048u);
  EXPECT_LT(micro.devices[0].needed_bytes(), whole.devices[0].needed_bytes());
  EXPECT_NE(plan_report_text(micro).find("batch 2048 (micro-batch 512)"), std::string::npos);
  expect_counted_at(plan_at(512, 4096, ctx), 512, ctx);  // a micro-batch wider than the batch
  expect_counted_at(plan_at(512, 0, 256), 256, 256);      // a batch wider than the context
}

// A q8_0 cache on one 24 GiB GPU at 32768 tokens: by hand as above, with KV of 34/32 bytes a
// value and the GPU's compute buffers including the prompt attention's fp16 copy of one layer's
// keys and values. With it the whole model fits the one card (with f16, 7 layers do not).
TEST_F(PlannerTest, Q8CacheOnTheGpuCountsItsPlanesAndItsFp16Copy) {
  const uint32_t ctx = 32768;
  PlanOptions o;
  o.split = parse_split("auto");
  o.n_ctx = ctx;
  o.kv_type = KvType::q8_0;
  const Plan q8 = make_plan(*spec_, sims({24}), o);
  const Plan f16 = plan(sims({24}), "auto", ctx);
  expect_partition(q8);
  uint64_t output = 0;
  for (const char* name : {"output.weight", "output_norm.weight"}) {
    output += gpu_bytes_by_hand(*spec_->file.find_tensor(name));
  }
  const uint64_t fp16_copy = 2ull * 2 * ctx * 8 * 128;
  EXPECT_EQ(q8.devices[0].compute_bytes, stage_buffer_bytes(spec_->hp, {512, ctx, 1, true, true, true}) + fp16_copy);
  const uint64_t kv_layer = 2ull * ctx * 8 * 128 / 32 * 34;
  const uint64_t budget = 24 * GiB - (512ull << 20) - q8.devices[0].compute_bytes - output;
  uint32_t k = 0;
  uint64_t used = 0;
  while (k < 64 && used + layer_bytes_by_hand(63 - k) + kv_layer <= budget) {
    used += layer_bytes_by_hand(63 - k) + kv_layer;
    ++k;
  }
  ASSERT_TRUE(q8.devices[0].layers.has_value());
  EXPECT_EQ(count_layers(q8.devices[0]), k);
  EXPECT_EQ(q8.devices[0].kv_bytes, k * kv_layer);  // 256-byte multiples already
  EXPECT_EQ(k, 64u);
  EXPECT_EQ(q8.n_layer_cpu, 0u);
  EXPECT_LT(count_layers(f16.devices[0]), 64u);
}

TEST_F(PlannerTest, ProportionalFollowsFreeMemory) {
  const Plan p = plan(sims({24, 12, 8}), "proportional", 4096);
  expect_partition(p);
  const double total = 24 + 12 + 8;
  const double free[] = {24, 12, 8};
  uint32_t sum = 0;
  for (size_t i = 0; i < 3; ++i) {
    const uint32_t n = count_layers(p.devices[i]);
    EXPECT_NEAR(double(n), 64 * free[i] / total, 1.0) << i;
    sum += n;
  }
  EXPECT_EQ(sum, 64u);
  EXPECT_TRUE(p.devices[2].output);
}

TEST_F(PlannerTest, AutoMovesWhatOverflowsTheFirstGpuToTheSecond) {
  const Plan p = plan(sims({24, 12, 8}), "auto", 40960);
  expect_partition(p);
  EXPECT_EQ(p.n_layer_cpu, 0u);
  ASSERT_TRUE(p.devices[0].layers && p.devices[1].layers);
  EXPECT_EQ(p.devices[0].layers->first, 0u);
  EXPECT_EQ(p.devices[1].layers->first, p.devices[0].layers->second + 1);
  // The first GPU is full: one more layer would not fit.
  const uint32_t next = p.devices[0].layers->second + 1;
  EXPECT_LT(p.devices[0].free_after_bytes(),
            static_cast<int64_t>(layer_bytes_by_hand(next) + kv_by_hand(40960)));
}

TEST_F(PlannerTest, EveryStrategyPartitionsTheLayers) {
  for (const char* split : {"auto", "even", "proportional", "none", "cpu", "20,30", "0-9,10-63",
                            "30-63,0-29", "10-20,21-63"}) {
    expect_partition(plan(sims({24, 24}), split, 2048));
  }
  const Plan manual = plan(sims({24, 24}), "20,30", 2048);
  EXPECT_EQ(manual.n_layer_cpu, 14u);  // the remainder, at the front
  EXPECT_EQ(manual.devices[2].layers->second, 13u);
  const Plan middle = plan(sims({24, 24}), "0-9,30-63", 2048);
  EXPECT_EQ(middle.devices[2].layers->first, 10u);
  EXPECT_EQ(middle.devices[2].layers->second, 29u);
  EXPECT_TRUE(middle.devices[1].output);
}

TEST_F(PlannerTest, OverCommitIsRefusedWithOneLinePerDevice) {
  const std::string msg = test::expect_error_lines(
      [] { plan(sims({24, 24}), "60,4", 32768); }, {"over-commits", "sim0: needed", "short by"});
  EXPECT_NE(msg.find("sim1: needed"), std::string::npos) << msg;
  test::expect_error_lines([] { plan(sims({8}, 4), "auto", 4096); },
                           {"does not fit the GPUs plus RAM", "cpu: needed", "short by"});
  test::expect_error_lines([] { plan(sims({24, 24}), "even", 40960 * 4); },
                           {"over-commits", "short by"});
}

TEST_F(PlannerTest, CtxMaxFitsAndOneMoreTokenDoesNot) {
  const Inventory inv = sims({20});
  const Plan p = plan(inv, "auto", 0, true);
  expect_partition(p);
  EXPECT_EQ(p.n_layer_cpu, 0u);
  EXPECT_GT(p.n_ctx, 1000u);
  EXPECT_LT(p.n_ctx, 40960u);
  EXPECT_EQ(p.max_ctx_full_offload, p.n_ctx);
  // The same placement one token longer over-commits the GPU.
  EXPECT_THROW(plan(inv, "64", p.n_ctx + 1), Error);
  EXPECT_NO_THROW(plan(inv, "64", p.n_ctx));
  // A manual placement gets its own maximum.
  const Plan half = plan(inv, "32", 0, true);
  EXPECT_EQ(half.n_ctx, 40960u);  // capped at the trained context
}

TEST_F(PlannerTest, PlanStatesMaxContextForFullOffload) {
  const Plan p = plan(sims({24}), "auto", 32768);
  EXPECT_GT(p.n_layer_cpu, 0u);
  EXPECT_GT(p.max_ctx_full_offload, 4096u);
  EXPECT_LT(p.max_ctx_full_offload, 32768u);
  EXPECT_EQ(plan(sims({24}), "auto", p.max_ctx_full_offload).n_layer_cpu, 0u);
  EXPECT_GT(plan(sims({24}), "auto", p.max_ctx_full_offload + 1).n_layer_cpu, 0u);
  EXPECT_NE(plan_report_text(p).find(fmt::format("max ctx {}", p.max_ctx_full_offload)),
            std::string::npos);
}

// A plan that leaves layers on the CPU with an f16 cache says whether a q8_0 cache would bring them
// onto the GPUs at its context, and up to which context; a q8_0 plan, a manual split or a plan with
// every layer on the GPUs says nothing of it.
TEST_F(PlannerTest, PlanSuggestsAQ8CacheWhereItBringsEveryLayerOntoTheGpus) {
  const Plan f16 = plan(sims({24}), "auto", 32768);
  ASSERT_GT(f16.n_layer_cpu, 0u);
  PlanOptions o;
  o.split = parse_split("auto");
  o.n_ctx = 32768;
  o.kv_type = KvType::q8_0;
  const Plan q8 = make_plan(*spec_, sims({24}), o);
  EXPECT_EQ(q8.n_layer_cpu, 0u);
  EXPECT_EQ(q8.max_ctx_full_offload_q8_0, 0u);  // its own cache is q8_0 already
  EXPECT_EQ(f16.max_ctx_full_offload_q8_0, q8.max_ctx_full_offload);
  EXPECT_GE(f16.max_ctx_full_offload_q8_0, 32768u);
  const std::string hint = fmt::format("with --kv-type q8_0 every layer fits on the GPUs at ctx 32768 (max ctx {})",
                                       q8.max_ctx_full_offload);
  EXPECT_NE(plan_report_text(f16).find(hint), std::string::npos) << plan_report_text(f16);
  EXPECT_EQ(nlohmann::json::parse(plan_report_json(f16))["max_ctx_full_offload_q8_0"], q8.max_ctx_full_offload);
  for (const Plan& quiet : {q8, plan(sims({24}), "40", 32768), plan(sims({24}), "auto", 4096),
                            plan(sims({24}), "auto", q8.max_ctx_full_offload + 1)}) {
    EXPECT_EQ(plan_report_text(quiet).find("--kv-type q8_0"), std::string::npos) << plan_report_text(quiet);
  }
}

TEST_F(PlannerTest, JsonReport) {
  const Plan p = plan(sims({24, 24}), "auto", 32768);
  const auto j = nlohmann::json::parse(plan_report_json(p));
  ASSERT_EQ(j["devices"].size(), 3u);
  EXPECT_EQ(j["devices"][0]["kind"], "gpu");
  EXPECT_EQ(j["devices"][2]["kind"], "cpu");
  EXPECT_TRUE(j["devices"][2]["first_layer"].is_null());
  EXPECT_EQ(j["devices"][0]["first_layer"], 0);
  EXPECT_EQ(j["n_layer_gpu"], 64);
  EXPECT_EQ(j["n_layer_cpu"], 0);
  EXPECT_EQ(j["max_ctx_full_offload"], p.max_ctx_full_offload);
  EXPECT_EQ(j["n_batch"], 512);
  EXPECT_EQ(j["n_ubatch"], 512);
  uint64_t weights = 0;
  for (const auto& d : j["devices"]) weights += d["weight_bytes"].get<uint64_t>();
  uint64_t stored = 0;  // as each device stores it: the token embeddings in the CPU's mmap
  for (const auto& t : spec_->file.tensors()) {
    stored += t.name == "token_embd.weight" ? t.n_bytes : gpu_bytes_by_hand(t);
  }
  EXPECT_EQ(weights, stored);  // every tensor counted exactly once
  EXPECT_NE(plan_report_text(p).find("65/65 layers (64 blocks + output) on 2 GPUs, 0 on CPU"),
            std::string::npos)
      << plan_report_text(p);
  EXPECT_TRUE(j["prompt_offload_gpu"].is_null());
  for (const auto& d : j["devices"]) EXPECT_EQ(d["offload_bytes"], 0);
  // With layers on the CPU: the offload's GPU by name, its bytes in each device's needed bytes,
  // and the plan's line saying so.
  const Plan one = plan(sims({24}), "auto", 32768);
  const auto j1 = nlohmann::json::parse(plan_report_json(one));
  EXPECT_EQ(j1["prompt_offload_gpu"], "sim0");
  for (const auto& d : j1["devices"]) {
    EXPECT_GT(d["offload_bytes"].get<uint64_t>(), 0u);
    EXPECT_EQ(d["needed_bytes"].get<uint64_t>(), d["weight_bytes"].get<uint64_t>() + d["kv_bytes"].get<uint64_t>() +
                                                     d["compute_bytes"].get<uint64_t>() +
                                                     d["offload_bytes"].get<uint64_t>() +
                                                     d["reserve_bytes"].get<uint64_t>());
  }
  EXPECT_NE(plan_report_text(one).find("through the CPU's layers are multiplied on sim0"), std::string::npos)
      << plan_report_text(one);
}

TEST(PlanOptions, ParsingAndErrors) {
  EXPECT_EQ(parse_byte_size("24GiB"), 24 * GiB);
  EXPECT_EQ(parse_byte_size("512mib"), 512ull << 20);
  EXPECT_EQ(parse_byte_size("1.5GB"), 1500000000ull);
  EXPECT_EQ(parse_byte_size("4096"), 4096ull);
  EXPECT_FALSE(parse_byte_size("GiB"));
  EXPECT_FALSE(parse_byte_size("-1GiB"));
  EXPECT_FALSE(parse_byte_size("3 apples"));
  EXPECT_EQ(reserve_bytes(parse_reserve("5%"), 0, 100 * GiB), 5 * GiB);
  EXPECT_EQ(reserve_bytes(parse_reserve("1GiB,512MiB"), 1, 24 * GiB), 512ull << 20);
  EXPECT_EQ(reserve_bytes({}, 0, 80 * GiB), 80 * GiB / 50);  // 2% above 512 MiB
  test::expect_error([] { parse_reserve("lots"); }, {"--reserve", "'lots'"});
  test::expect_error([] { parse_reserve("150%"); }, {"--reserve", "150%"});
  test::expect_error([] { parse_split("5-3"); }, {"--split", "'5-3'"});
  test::expect_error([] { parse_split("fast"); }, {"--split", "'fast'"});
  test::expect_error([] { parse_device_list("gpu0"); }, {"--devices", "'gpu0'"});
  test::expect_error([] { parse_device_list("sim:"); }, {"--devices", "needs a size"});
  test::expect_error([] { parse_device_list("sim:0"); }, {"--devices", "not a size"});
  test::expect_error([] { parse_device_list("cpu,cpu"); }, {"--devices", "twice"});
  const auto specs = parse_device_list("0:20GiB,0:20GiB,sim:8GiB,cpu:32GiB");
  ASSERT_EQ(specs.size(), 4u);
  EXPECT_EQ(specs[1].cuda_index, 0);
  EXPECT_EQ(specs[1].bytes, 20 * GiB);
  EXPECT_EQ(specs[2].source, DeviceSpec::Source::simulated);
  EXPECT_EQ(specs[3].bytes, 32 * GiB);
}

TEST(Devices, MissingCudaDeviceIsAnError) {
  if (cuda_device_count_for_tests() > 0) GTEST_SKIP() << "a CUDA device exists here";
  test::expect_error([] { resolve_devices(parse_device_list("0")); },
                     {"--devices", "CUDA device 0 does not exist"});
}

TEST(MemoryModel, KvBytesPerType) {
  HyperParams hp;
  hp.n_head_kv = 8;
  hp.head_dim = 128;
  EXPECT_EQ(kv_bytes_per_layer(hp, KvType::f16, 4096), 2ull * 4096 * 1024 * 2);
  EXPECT_EQ(kv_bytes_per_layer(hp, KvType::f32, 4096), 2ull * 4096 * 1024 * 4);
  EXPECT_EQ(kv_bytes_per_layer(hp, KvType::q8_0, 4096), 2ull * 4096 * 1024 / 32 * 34);
}

TEST(MemoryModel, StageKvBytesAlignKAndV) {
  HyperParams hp;
  hp.n_head_kv = 1;
  hp.head_dim = 36;
  // K of 2 layers x 3 positions x 36 values in f16 = 432 bytes, aligned to 512; V the same.
  EXPECT_EQ(stage_kv_bytes(hp, KvType::f16, 3, 2), 2u * 512);
  EXPECT_EQ(stage_kv_bytes(hp, KvType::f16, 3, 0), 0u);
  EXPECT_EQ(stage_kv_bytes(hp, KvType::f32, 4096, 4), 2ull * 4 * 4096 * 36 * 4);  // already aligned
}

// A GPU stage with a q8_0 cache adds one buffer, the prompt attention's fp16 keys and values of a
// layer over the whole context; an f16 cache, or a CPU stage, none.
TEST(MemoryModel, GpuQ8CacheAddsAnFp16CopyOfOneLayer) {
  HyperParams hp;
  hp.n_embd = 512;
  hp.n_head = 8;
  hp.n_head_kv = 2;
  hp.head_dim = 64;
  hp.n_ff = 1024;
  hp.n_vocab = 1000;
  auto names = [&](const StageShape& shape) {
    std::vector<std::string> out;
    for (const BufferSpec& b : stage_buffers(hp, shape)) out.emplace_back(b.name);
    return out;
  };
  const StageShape gpu_f16{64, 1000, 1, true, true, true, KvType::f16};
  StageShape gpu_q8 = gpu_f16, cpu_q8 = gpu_f16;
  gpu_q8.kv_type = KvType::q8_0;
  cpu_q8.gpu = false;
  cpu_q8.kv_type = KvType::q8_0;
  std::vector<std::string> want = names(gpu_f16);
  const auto after = std::find(want.begin(), want.end(), "position");
  ASSERT_NE(after, want.end());
  want.insert(after + 1, "kv_f16");
  EXPECT_EQ(names(gpu_q8), want);
  for (const BufferSpec& b : stage_buffers(hp, gpu_q8)) {
    if (b.name == "kv_f16") {
      EXPECT_EQ(b.bytes, 2u * 2 * 1000 * 128);
    }
  }
  EXPECT_EQ(stage_buffer_bytes(hp, gpu_q8), stage_buffer_bytes(hp, gpu_f16) + align_device(2 * 2 * 1000 * 128));
  StageShape cpu_f16 = cpu_q8;
  cpu_f16.kv_type = KvType::f16;
  EXPECT_EQ(names(cpu_q8), names(cpu_f16));
}

// A model whose tensors are not multiples of 256 bytes (72 wide, f16): a GPU stage's weights are
// counted per tensor from the shapes, each rounded up to the allocation granularity, vectors as f32.
TEST(MemoryModel, GpuWeightBytesFromTheShapes) {
  test::TempDir dir;
  SyntheticModelOptions o;
  o.arch = Arch::qwen2;
  o.n_layer = 3;
  o.n_embd = 72;
  o.n_head = 2;
  o.n_head_kv = 1;
  o.head_dim = 36;
  o.n_ff = 100;
  o.n_vocab = 301;
  o.tied_output = true;
  o.mix = WeightMix::f16;
  write_synthetic_model(o, dir.file("odd.gguf"));
  const ModelSpec spec = ModelSpec::from(ModelFile::open(dir.file("odd.gguf")));
  auto al = [](uint64_t b) { return (b + 255) / 256 * 256; };
  auto matrix = [&](const char* name, uint32_t layer, uint64_t cols, uint64_t rows) {
    return al(type_bytes(tensor_type_for(o.mix, name, layer, o.n_layer, true), cols) * rows);
  };
  auto layer = [&](uint32_t l) {
    return al(4 * 72) * 2                                                  // attn_norm, ffn_norm
           + al(4 * 72) + al(4 * 36) * 2                                   // q, k, v biases
           + matrix("attn_q.weight", l, 72, 72) + matrix("attn_k.weight", l, 72, 36) +
           matrix("attn_v.weight", l, 72, 36) + matrix("attn_output.weight", l, 72, 72) +
           matrix("ffn_gate.weight", l, 72, 100) + matrix("ffn_up.weight", l, 72, 100) +
           matrix("ffn_down.weight", l, 100, 72);
  };
  ASSERT_NE(spec.layer_bytes(1), layer(1));  // the file's bytes differ: alignment matters here
  EXPECT_EQ(gpu_layer_bytes(spec, 1), layer(1));
  const uint64_t output = al(4 * 72) + matrix("token_embd.weight", 0, 72, 301);  // tied: the embeddings
  EXPECT_EQ(gpu_weight_bytes(spec, std::pair{0u, 2u}, true), layer(0) + layer(1) + layer(2) + output);
  EXPECT_EQ(gpu_weight_bytes(spec, std::pair{1u, 1u}, false), layer(1));
  EXPECT_EQ(gpu_weight_bytes(spec, std::nullopt, true), output);
}

TEST(DeviceArena, CarvesAlignedBuffersAndRefusesPastItsCapacity) {
  DeviceArena arena("cuda0 slice 1, layers 0-3", 1024);
  EXPECT_EQ(arena.take(1, "a"), 0u);
  EXPECT_EQ(arena.take(256, "b"), 256u);
  EXPECT_EQ(arena.take(300, "c"), 512u);  // 300 bytes take 512
  EXPECT_EQ(arena.used(), 1024u);
  arena.expect_full();
  test::expect_error([&] { arena.take(1, "blk.3.ffn_down"); },
                     {"cuda0 slice 1, layers 0-3", "blk.3.ffn_down", "256 bytes", "0 of the stage's 1024"});
  DeviceArena partial("cuda1, layers 4-7", 1024);
  partial.take(512, "weights");
  test::expect_error([&] { partial.take(513, "K cache"); }, {"K cache needs 768 bytes but 512"});
  test::expect_error([&] { partial.expect_full(); }, {"cuda1, layers 4-7", "carved 512 of the 1024 bytes"});
}

}  // namespace
}  // namespace engine
