// The CUDA prompt offload (engine/prompt_offload.h): a CPU stage's prompt products multiplied on
// the GPU from weights streamed out of the mmap. Each product group of a layer against a double-
// precision reference from the CPU dequantizer, outputs poisoned with NaN first, on matrices that
// take several 8 MiB chunks and on the types whose GPU layout regroups the rows (Q2_K, Q3_K,
// Q6_K); a CPU + GPU split whose CPU stage offloads against the CPU alone; and the device memory
// it takes against the memory model's count. Skips (visibly) where no CUDA device exists.
#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "engine/cpu_model.h"
#include "engine/engine.h"
#include "engine/memory_model.h"
#include "engine/prompt_offload.h"
#include "double_reference.h"
#include "model_helpers.h"
#include "scheduler/cuda_runtime.h"

namespace engine {
namespace {

const Device kCuda0{"cuda0", DeviceKind::gpu, 0};

// One layer 2048 wide with an 8192-wide feed-forward: F16's gate and up are 32 MiB (four
// chunks), Q4_K's 9 MiB (two, the second partial).
std::shared_ptr<const Model> wide_model(WeightMix mix) {
  SyntheticModelOptions o;
  o.arch = Arch::qwen2;
  o.n_layer = 1;
  o.n_embd = 2048;
  o.n_head = 16;
  o.n_head_kv = 8;
  o.head_dim = 128;
  o.n_ff = 8192;
  o.mix = mix;
  return test::random_model(o);
}

TEST(CudaPromptOffload, ProductsMatchTheDoubleReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  ThreadPool pool(2);
  // Two mixes on the wide model (matrices of several chunks; rows sampled for the reference),
  // every other on a small one.
  for (const auto& [mix, wide] : {std::pair{WeightMix::f16, true}, std::pair{WeightMix::q4_k_m, true},
                                  std::pair{WeightMix::bf16, false}, std::pair{WeightMix::q8_0, false},
                                  std::pair{WeightMix::q4_0, false}, std::pair{WeightMix::q5_1, false},
                                  std::pair{WeightMix::q2_k, false}, std::pair{WeightMix::q3_k_m, false},
                                  std::pair{WeightMix::q6_k, false}}) {
    const auto model = wide ? wide_model(mix) : test::random_model(mix, Arch::qwen2, 1);
    const int64_t row_step = wide ? 7 : 1;
    const CpuModel weights(model->spec());
    const auto offload = make_cuda_prompt_offload(weights, {0, 0}, kCuda0, 64);
    const LayerWeights& w = weights.layers[0];
    for (const int64_t n : {int64_t(40), int64_t(64)}) {  // a second call reuses the chunks and buffers
      for (const std::vector<const Matrix*>& group :
           {std::vector<const Matrix*>{&w.wq, &w.wk, &w.wv}, {&w.wo}, {&w.w_gate, &w.w_up}, {&w.w_down}}) {
        const int64_t K = group[0]->cols;
        const std::string what = fmt::format("{}, {} x {} {}, {} tokens", weight_mix_name(mix), group[0]->rows, K,
                                             traits(group[0]->type).name, n);
        std::vector<float> x(size_t(n * K));
        for (float& v : x) v = value(rng);
        std::vector<std::vector<float>> ys;
        ys.reserve(group.size());
        std::vector<MatmulProduct> products;
        for (const Matrix* m : group) {
          ASSERT_TRUE(offload->accepts(m->type, K)) << what;
          ys.emplace_back(size_t(n * m->rows), std::numeric_limits<float>::quiet_NaN());
          products.push_back({m->type, m->data, m->rows, ys.back().data()});
        }
        offload->multiply(products, K, x.data(), n, pool);
        for (size_t i = 0; i < group.size(); ++i) {
          const Matrix& m = *group[i];
          const double rel = test::rel_to_reference(test::dequantized(m.type, m.data, K, m.rows), x, ys[i], n,
                                                    m.rows, K, row_step);
          // fp16 activations and weights tiles, f32 sums: as the matmul's own tests (2e-3).
          EXPECT_LE(rel, 2e-3) << what << ", product " << i;
        }
      }
    }
  }
}

// A CPU stage that offloads its prompt products, then a GPU stage: the logits of a 40-token prompt
// and of 8 decode steps after it (whose keys and values the offloaded products wrote) against the
// CPU alone, within the GPU stage's own bounds (1e-2 on F16, 5e-2 where the CPU quantizes
// activations); the offload's products differ from the CPU's by fp16 rounding only.
TEST(CudaPromptOffload, SplitModelMatchesTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
  std::mt19937 rng(std::random_device{}());
  for (const auto& [mix, tol] : {std::pair{WeightMix::f16, 1e-2}, std::pair{WeightMix::q4_k_m, 5e-2}}) {
    const auto model = test::random_model(mix, Arch::qwen2, 4);
    ContextOptions cpu_only;
    cpu_only.n_ctx = 256;
    cpu_only.n_threads = 2;
    ContextOptions split = cpu_only;
    split.stages = {{Device{"cpu", DeviceKind::cpu}, 0, 1, kCuda0}, {kCuda0, 2, 3}};
    ContextOptions plain = split;
    plain.stages[0].prompt_offload.reset();
    Context want(model, cpu_only), have(model, split), without(model, plain);
    std::vector<int32_t> ids(48);
    for (auto& t : ids) t = static_cast<int32_t>(rng() % 512);
    const std::span<const int32_t> prompt(ids.data(), 40);
    const auto ref = want.eval_all(prompt);
    const std::vector<float> ref_copy(ref.begin(), ref.end());
    EXPECT_LE(test::rel(have.eval_all(prompt), ref_copy), tol) << weight_mix_name(mix);
    (void)without.eval_all(prompt);
    for (size_t i = 40; i < ids.size(); ++i) {
      const std::span<const int32_t> one(&ids[i], 1);
      const auto r = want.eval(one);
      const std::vector<float> r_copy(r.begin(), r.end());
      EXPECT_LE(test::rel(have.eval(one), r_copy), tol) << weight_mix_name(mix) << ", step " << i;
      // The same split without the offload: the offloaded run is no further from the CPU.
      EXPECT_LE(test::rel(without.eval(one), r_copy), tol) << weight_mix_name(mix) << ", step " << i;
    }
  }
}

TEST(CudaPromptOffload, AllocatesWhatTheMemoryModelCounts) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
  const auto model = wide_model(WeightMix::q4_k_m);
  const CpuModel weights(model->spec());
  const uint64_t planned = prompt_offload_device_bytes(model->spec(), {0, 0}, 512);
  const uint64_t before = cuda_device_info(0).free_bytes;
  const auto offload = make_cuda_prompt_offload(weights, {0, 0}, kCuda0, 512);
  const uint64_t taken = before - cuda_device_info(0).free_bytes;
  EXPECT_GE(taken, planned);
  EXPECT_LE(taken, planned + (4ull << 20)) << "planned " << planned;
}

}  // namespace
}  // namespace engine
