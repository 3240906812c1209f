// Greedy decoding's token taken where the head runs: argmax_token against std::max_element and
// the sampler, eval_greedy against the argmax of eval's logits (one stage, batches, and a
// pipeline of micro-batches), and generate's plain greedy path against a loop over eval, with
// why it stopped (an end token, n_predict, a full context, the callback).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/error.h"
#include "engine/sampling.h"
#include "model_helpers.h"

namespace engine {
namespace {

// The reference: the first of the largest values, NaN as -infinity, by std::max_element.
int32_t first_max(std::vector<float> logits) {
  for (auto& v : logits) {
    if (std::isnan(v)) v = -std::numeric_limits<float>::infinity();
  }
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

TEST(ArgmaxToken, HighestValueLowestIndexNanAsMinusInfinity) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  EXPECT_EQ(argmax_token(std::vector<float>{1, 3, 2}), 1);
  EXPECT_EQ(argmax_token(std::vector<float>{5, 1, 5}), 0);           // ties: the lowest index
  EXPECT_EQ(argmax_token(std::vector<float>{nan, -1, nan}), 1);      // NaN never wins over a number
  EXPECT_EQ(argmax_token(std::vector<float>{-inf, -inf, -inf}), 0);  // nothing better than the first
  EXPECT_EQ(argmax_token(std::vector<float>{nan, nan}), 0);
  EXPECT_EQ(argmax_token(std::vector<float>{-inf, inf, inf}), 1);
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> logits(1 + rng() % 3000);
    for (auto& v : logits) v = float(int(rng() % 41) - 20) * 0.5f;  // coarse values: many ties
    if (trial % 3 == 0) logits[rng() % logits.size()] = std::nanf("");
    ASSERT_EQ(argmax_token(logits), first_max(logits)) << "trial " << trial;
  }
}

TEST(ArgmaxToken, IsWhatThePlainGreedySamplerPicks) {
  SamplingParams p;
  p.greedy = true;
  EXPECT_TRUE(is_plain_greedy(p));
  p.repeat_penalty = 1.1f;
  EXPECT_FALSE(is_plain_greedy(p));  // the penalty changes the logits first
  p.repeat_last_n = 0;
  EXPECT_TRUE(is_plain_greedy(p));  // ... unless it looks at no history
  SamplingParams hot;
  EXPECT_FALSE(is_plain_greedy(hot));  // temperature 0.8: sampling
  hot.temperature = 0.0f;
  EXPECT_TRUE(is_plain_greedy(hot));

  std::mt19937 rng(std::random_device{}());
  SamplingParams greedy;
  greedy.greedy = true;
  const int32_t n_vocab = 1000;
  Sampler sampler(greedy, n_vocab);
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<float> logits(n_vocab);
    for (auto& v : logits) v = float(int(rng() % 21) - 10);
    const std::vector<int32_t> history = {int32_t(rng() % n_vocab)};
    ASSERT_EQ(argmax_token(logits), sampler.sample(logits, history)) << "trial " << trial;
  }
}

ContextOptions cpu_options(uint32_t n_batch, bool split) {
  ContextOptions o;
  o.n_ctx = 128;
  o.n_threads = 2;
  o.kv_type = KvType::f32;
  o.n_batch = n_batch;
  if (split) {  // two stages, micro-batches of 3: the head runs on the second's last one
    o.n_ubatch = 3;
    o.stages.push_back({Device{"cpu", DeviceKind::cpu}, 0, 1});
    o.stages.push_back({Device{"sim1", DeviceKind::gpu}, 2, 3});
  }
  return o;
}

TEST(EvalGreedy, IsTheArgmaxOfEvalsLogits) {
  const auto model = test::random_model(WeightMix::f32, Arch::qwen2, 4);
  std::mt19937 rng(std::random_device{}());
  for (const bool split : {false, true}) {
    for (const uint32_t n_batch : {8u, 64u}) {  // a 13-token prompt in two batches, and in one
      Context with_logits(model, cpu_options(n_batch, split));
      Context greedy(model, cpu_options(n_batch, split));
      std::vector<int32_t> ids(13);
      for (auto& t : ids) t = static_cast<int32_t>(rng() % 512);
      const std::string what = std::string(split ? "two stages" : "one stage") + ", batch " + std::to_string(n_batch);
      for (int step = 0; step < 4; ++step) {  // the prompt, then single tokens
        const auto logits = with_logits.eval(ids);
        const int32_t want = argmax_token(logits);
        ASSERT_EQ(greedy.eval_greedy(ids), want) << what << " step " << step;
        ASSERT_EQ(greedy.n_past(), with_logits.n_past()) << what;
        ids = {want};
      }
    }
  }
}

TEST(EvalGreedy, GenerateTakesTheTokensOfALoopOverEval) {
  const auto model = test::random_model(WeightMix::q8_0, Arch::llama, 4);
  std::mt19937 rng(std::random_device{}());
  std::vector<int32_t> prompt(9);
  for (auto& t : prompt) t = static_cast<int32_t>(rng() % 512);
  SamplingParams p;
  p.greedy = true;
  Context generated_ctx(model, cpu_options(64, false));
  const std::vector<int32_t> generated = generated_ctx.generate(prompt, 12, p);

  Context loop(model, cpu_options(64, false));
  std::vector<int32_t> want;
  auto logits = loop.eval(prompt);
  while (want.size() < 12) {
    const int32_t token = argmax_token(logits);
    want.push_back(token);
    if (model->is_end_of_generation(token)) break;
    logits = loop.eval(std::vector<int32_t>{token});
  }
  EXPECT_EQ(generated, want);
  EXPECT_EQ(generated_ctx.last_stop(),
            model->is_end_of_generation(want.back()) ? StopReason::end_of_generation : StopReason::n_predict);
  EXPECT_THROW(generated_ctx.eval_greedy(std::vector<int32_t>{}), Error);
  EXPECT_THROW(generated_ctx.eval_greedy(std::vector<int32_t>{100000}), Error);
}

// generate() at the end of the context: every position filled, then one more token from the
// last position's logits (nothing left to evaluate it into), and the stop named; a callback that
// declines stops it at once, with its reason. The tokens are a loop over eval's argmax.
TEST(EvalGreedy, GenerateStopsWhenTheContextIsFull) {
  const auto model = test::random_model(WeightMix::f16, Arch::qwen2, 2);
  std::mt19937 rng(std::random_device{}());
  SamplingParams p;
  p.greedy = true;
  ContextOptions o = cpu_options(8, false);
  o.n_ctx = 16;
  for (int attempt = 0; attempt < 20; ++attempt) {  // a prompt whose greedy run meets no end token
    std::vector<int32_t> prompt(5);
    for (auto& t : prompt) t = static_cast<int32_t>(rng() % 512);
    Context loop(model, o);
    std::vector<int32_t> want;
    auto logits = loop.eval(prompt);
    for (;;) {
      want.push_back(argmax_token(logits));
      if (model->is_end_of_generation(want.back()) || loop.n_past() == loop.n_ctx()) break;
      logits = loop.eval(std::vector<int32_t>{want.back()});
    }
    if (model->is_end_of_generation(want.back())) continue;
    ASSERT_EQ(want.size(), 16u - 5u + 1u);
    Context ctx(model, o);
    EXPECT_EQ(ctx.generate(prompt, 100, p), want);
    EXPECT_EQ(ctx.last_stop(), StopReason::context_full);
    EXPECT_EQ(ctx.n_past(), 16u);
    EXPECT_EQ(stop_reason_name(ctx.last_stop()), "context");

    ctx.reset();
    EXPECT_EQ(ctx.generate(prompt, 3, p), std::vector<int32_t>(want.begin(), want.begin() + 3));
    EXPECT_EQ(ctx.last_stop(), StopReason::n_predict);
    ctx.reset();
    int calls = 0;
    EXPECT_EQ(ctx.generate(prompt, 100, p, [&](int32_t) { return ++calls < 2; }).size(), 2u);
    EXPECT_EQ(ctx.last_stop(), StopReason::callback);
    return;
  }
  FAIL() << "every prompt's greedy run met an end-of-generation token";
}

}  // namespace
}  // namespace engine
