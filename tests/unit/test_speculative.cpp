// Speculative decoding against plain generation: SpeculativeGenerator must give the tokens
// Context::generate gives on the target alone (greedy, and sampling with the same seed), stop
// for the same reasons with the same cache, and take several tokens from one target evaluation
// when the draft agrees (a draft that is the target itself agrees everywhere); a draft from
// another tokenizer, or bad draft parameters, are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/engine.h"
#include "engine/error.h"
#include "engine/sampling.h"
#include "engine/speculative.h"
#include "model_helpers.h"

namespace engine {
namespace {

ContextOptions cpu_context(uint32_t n_ctx) {
  ContextOptions o;
  o.n_ctx = n_ctx;
  o.n_threads = 2;
  o.kv_type = KvType::f32;
  return o;
}

SamplingParams greedy_params() {
  SamplingParams p;
  p.greedy = true;
  return p;
}

std::shared_ptr<const Model> model_with_vocab(WeightMix mix, uint32_t n_vocab, uint32_t n_layer = 2) {
  SyntheticModelOptions o;
  o.mix = mix;
  o.n_layer = n_layer;
  o.n_vocab = n_vocab;
  return test::random_model(o);
}

// Greedy: the draft being the target itself, every drafted token is the target's (the prompts
// are drawn so that no greedy decision is a near-tie that a batch's rounding could flip), so a
// step yields up to n_max + 1 tokens; an unrelated draft rarely agrees, and the tokens are the
// same still.
TEST(Speculative, GreedyGivesTheTargetsTokens) {
  const auto target = test::random_model(WeightMix::f32, Arch::llama, 2);
  const auto unrelated = test::random_model(WeightMix::q4_0, Arch::llama, 2);
  constexpr int kSteps = 40;
  Context plain(target, cpu_context(128));
  std::vector<int32_t> prompt(6), want;
  for (int draw = 0; draw < 20 && want.empty(); ++draw) {  // a path without near-ties or end tokens
    want = test::tie_free_greedy(plain, prompt, kSteps, 1e-3);
    if (std::any_of(want.begin(), want.end(), [&](int32_t t) { return target->is_end_of_generation(t); })) want.clear();
  }
  ASSERT_EQ(want.size(), size_t(kSteps)) << "no prompt found whose greedy path has no near-tie and no end token";

  for (const bool self : {true, false}) {
    Context t(target, cpu_context(128)), d(self ? target : unrelated, cpu_context(128));
    DraftParams dp;
    dp.n_max = 5;
    dp.p_min = 0.0f;  // draft whatever the draft's confidence
    SpeculativeGenerator spec(t, d, dp);
    const std::vector<int32_t> got = spec.generate(prompt, kSteps, greedy_params());
    EXPECT_EQ(got, want) << (self ? "self draft" : "unrelated draft");
    EXPECT_EQ(spec.last_stop(), StopReason::n_predict);
    EXPECT_EQ(t.n_past(), prompt.size() + kSteps - 1);  // as generate leaves it: all but the newest
    EXPECT_EQ(d.n_past(), t.n_past());
    const SpeculativeStats& st = spec.stats();
    // Every step but the prompt's yields its kept drafts and one token of its own.
    EXPECT_EQ(st.target_steps + st.accepted, kSteps - 1);
    if (self) {
      EXPECT_EQ(st.accepted, st.drafted) << "a draft identical to the target was rejected";
      EXPECT_LE(st.target_steps, (kSteps - 1 + 5) / 6);
    } else {
      EXPECT_GT(st.drafted, st.accepted);
    }
  }
}

// Sampling: with the same seed, the same draws in the same order, so the same tokens as generate,
// whatever the draft keeps.
TEST(Speculative, SamplingDrawsWhatGenerateDraws) {
  const auto target = test::random_model(WeightMix::f32, Arch::qwen2, 2);
  std::mt19937 rng(std::random_device{}());
  SamplingParams p;
  p.temperature = 0.1f;
  p.top_k = 20;
  p.top_p = 0.9f;
  p.min_p = 0.02f;
  p.repeat_penalty = 1.1f;
  std::vector<int32_t> prompt(7), want;
  for (int draw = 0; draw < 50 && want.size() != 48; ++draw) {  // a run that meets no end token
    for (auto& t : prompt) t = int32_t(rng() % 512);
    p.seed = rng();
    Context plain(target, cpu_context(128));
    want = plain.generate(prompt, 48, p);
  }
  ASSERT_EQ(want.size(), 48u) << "every run met an end token";

  Context t(target, cpu_context(128)), d(target, cpu_context(128));
  DraftParams dp;
  dp.n_max = 4;
  dp.p_min = 0.0f;
  SpeculativeGenerator spec(t, d, dp);
  EXPECT_EQ(spec.generate(prompt, 48, p), want);
  EXPECT_EQ(spec.last_stop(), StopReason::n_predict);
  EXPECT_EQ(t.n_past(), prompt.size() + 47);
  EXPECT_GT(spec.stats().accepted, 0) << "the target's own greedy draft never matched a sample";
  EXPECT_LT(spec.stats().target_steps, int64_t(want.size()) - 1);
}

// The stops: a full context (each position filled, then one token more from the last logits), a
// callback that declines, and a second call continuing the sequence, each as generate does.
TEST(Speculative, StopsWhereGenerateStops) {
  const auto target = test::random_model(WeightMix::f32, Arch::llama, 2);
  std::mt19937 rng(std::random_device{}());
  SamplingParams p;
  p.temperature = 0.5f;
  p.seed = rng();
  std::vector<int32_t> prompt(5);
  for (auto& t : prompt) t = int32_t(rng() % 512);
  DraftParams dp;
  dp.n_max = 3;
  dp.p_min = 0.0f;

  {  // the context fills
    Context plain(target, cpu_context(16));
    const auto want = plain.generate(prompt, 100, p);
    Context t(target, cpu_context(16)), d(target, cpu_context(16));
    SpeculativeGenerator spec(t, d, dp);
    EXPECT_EQ(spec.generate(prompt, 100, p), want);
    EXPECT_EQ(spec.last_stop(), plain.last_stop());
    EXPECT_EQ(t.n_past(), plain.n_past());
  }
  {  // the callback declines the fifth token; then a second call goes on from there
    int seen = 0;
    auto five = [&](int32_t) { return ++seen < 5; };
    Context plain(target, cpu_context(128));
    const auto want = plain.generate(prompt, 30, p, five);
    const StopReason want_stop = plain.last_stop();  // the callback's, unless an end token came first
    const uint32_t want_past = plain.n_past();
    const std::vector<int32_t> more{int32_t(rng() % 512), int32_t(rng() % 512)};
    const auto want_more = plain.generate(more, 12, p);

    seen = 0;
    Context t(target, cpu_context(128)), d(target, cpu_context(128));
    SpeculativeGenerator spec(t, d, dp);
    EXPECT_EQ(spec.generate(prompt, 30, p, five), want);
    EXPECT_EQ(spec.last_stop(), want_stop);
    EXPECT_EQ(t.n_past(), want_past);
    EXPECT_EQ(d.n_past(), t.n_past());
    EXPECT_EQ(spec.generate(more, 12, p), want_more);
    EXPECT_EQ(spec.last_stop(), plain.last_stop());
    EXPECT_EQ(t.n_past(), plain.n_past());
  }
}

// Vocabularies: a draft with more output rows over the same tokens proposes ids the target
// cannot take (those drafts end there); a target with more rows samples ids the draft cannot
// evaluate (drafting ends for the call). Either way the tokens are the target's.
TEST(Speculative, DraftAndTargetOfDifferentVocabularySizes) {
  const auto small = model_with_vocab(WeightMix::f32, 512), large = model_with_vocab(WeightMix::f32, 640);
  std::mt19937 rng(std::random_device{}());
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  DraftParams dp;
  dp.n_max = 4;
  dp.p_min = 0.0f;
  for (const bool large_target : {false, true}) {
    const auto& target = large_target ? large : small;
    const auto& draft = large_target ? small : large;
    std::vector<int32_t> prompt(4);
    for (auto& t : prompt) t = int32_t(rng() % 512);
    p.seed = rng();
    Context plain(target, cpu_context(128));
    const auto want = plain.generate(prompt, 40, p);
    Context t(target, cpu_context(128)), d(draft, cpu_context(128));
    SpeculativeGenerator spec(t, d, dp);
    EXPECT_EQ(spec.generate(prompt, 40, p), want) << (large_target ? "target 640, draft 512" : "target 512, draft 640");
    EXPECT_EQ(t.n_past(), plain.n_past());
  }
}

TEST(Speculative, RefusesAnotherTokenizerAndBadParameters) {
  SyntheticModelOptions o;
  o.arch = Arch::qwen2;
  const auto plain = test::random_model(o);
  o.thinking = true;  // <think> and </think> where the other has filler pieces
  const auto thinking = test::random_model(o);
  Context t(plain, cpu_context(64)), d(thinking, cpu_context(64));
  try {
    SpeculativeGenerator spec(t, d);
    FAIL() << "a draft with other token texts was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("draft model: token"), std::string::npos) << e.what();
  }
  Context same(plain, cpu_context(64));
  const std::tuple<int, int, float> bad[] = {
      {0, 0, 0.5f}, {4, 5, 0.5f}, {4, -1, 0.5f}, {4, 0, 1.5f}, {4, 0, std::numeric_limits<float>::quiet_NaN()}};
  for (const auto& [n_max, n_min, p_min] : bad) {
    DraftParams dp;
    dp.n_max = n_max;
    dp.n_min = n_min;
    dp.p_min = p_min;
    EXPECT_THROW((void)SpeculativeGenerator(t, same, dp), Error) << n_max << " " << n_min << " " << p_min;
  }
  // Contexts out of step: the draft holds a token the target does not.
  const std::vector<int32_t> one{7};
  same.eval(one);
  SpeculativeGenerator spec(t, same);
  EXPECT_THROW(spec.generate(one, 4, greedy_params()), Error);
}

// p_min: where the draft's best token is less likely, drafting stops (a random model is never
// certain: every draft is empty, every step one token); n_min: a draft shorter than it is dropped
// (with n_max 4, only drafts of exactly 4 reach the target, though the last steps allow fewer).
TEST(Speculative, DraftsStopBelowTheMinimumProbabilityAndLength) {
  const auto target = test::random_model(WeightMix::f32, Arch::llama, 2);
  const std::vector<int32_t> prompt{3, 40, 200, 77};
  Context plain(target, cpu_context(128));
  const auto want = plain.generate(prompt, 20, greedy_params());
  for (const bool by_probability : {true, false}) {
    Context t(target, cpu_context(128)), d(target, cpu_context(128));
    DraftParams dp;
    dp.n_max = 4;
    dp.n_min = by_probability ? 0 : 4;
    dp.p_min = by_probability ? 1.0f : 0.0f;
    SpeculativeGenerator spec(t, d, dp);
    EXPECT_EQ(spec.generate(prompt, 20, greedy_params()), want);
    if (by_probability) {
      EXPECT_EQ(spec.stats().drafted, 0);
      EXPECT_EQ(spec.stats().target_steps, int64_t(want.size()) - 1);
    } else {
      EXPECT_EQ(spec.stats().drafted % 4, 0) << spec.stats().drafted;
      EXPECT_EQ(spec.stats().drafted > 0, want.size() > 1);  // the first step after the first token drafts 4
    }
  }
}

}  // namespace
}  // namespace engine
