// The sampler against a plain reference of llama.cpp's default chain (penalties, top-k, top-p,
// min-p, temperature), written here with a full sort and nothing else: the distribution it
// draws from, on random logits with ties, NaN and -infinity; hand-worked cases for the order of
// temperature and the cuts; and its draws against that distribution.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "engine/error.h"
#include "engine/sampling.h"

namespace engine {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// id -> probability, by the chain as sampling.h states it.
std::map<int32_t, double> reference(const SamplingParams& p, const std::vector<float>& raw,
                                    const std::vector<int32_t>& history) {
  const size_t n = raw.size();
  std::vector<float> l(n);
  for (size_t i = 0; i < n; ++i) l[i] = std::isnan(raw[i]) ? -kInf : raw[i];
  if (p.repeat_penalty != 1.0f) {
    std::set<int32_t> seen;
    const size_t from = history.size() > size_t(p.repeat_last_n) ? history.size() - size_t(p.repeat_last_n) : 0;
    for (size_t i = from; i < history.size(); ++i) seen.insert(history[i]);
    for (int32_t t : seen) l[size_t(t)] = l[size_t(t)] > 0 ? l[size_t(t)] / p.repeat_penalty : l[size_t(t)] * p.repeat_penalty;
  }
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  const double top = l[size_t(order[0])];
  if (p.greedy || p.temperature == 0.0f || !std::isfinite(top)) return {{order[0], 1.0}};
  if (p.top_k > 0 && size_t(p.top_k) < n) order.resize(size_t(p.top_k));
  if (p.top_p < 1.0f) {
    double total = 0;
    for (int32_t t : order) total += std::exp(l[size_t(t)] - top);
    double cum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cum += std::exp(l[size_t(order[i])] - top) / total;
      if (cum >= p.top_p) {
        order.resize(i + 1);
        break;
      }
    }
  }
  if (p.min_p > 0.0f) {
    std::vector<int32_t> kept;
    for (int32_t t : order) {
      if (std::exp(l[size_t(t)] - top) >= p.min_p) kept.push_back(t);
    }
    order = kept;
  }
  std::map<int32_t, double> dist;
  double sum = 0;
  for (int32_t t : order) sum += dist[t] = std::exp((l[size_t(t)] - top) / p.temperature);
  for (auto& [t, q] : dist) q /= sum;
  return dist;
}

// Checks `got` against the reference: the same tokens in id order, probabilities within 1e-12.
void expect_matches(const SamplingParams& p, const std::vector<float>& logits, const std::vector<int32_t>& history,
                    const std::string& what) {
  Sampler sampler(p, int32_t(logits.size()));
  const auto got = sampler.distribution(logits, history);
  const auto want = reference(p, logits, history);
  ASSERT_EQ(got.size(), want.size()) << what;
  double sum = 0;
  auto it = want.begin();
  for (size_t i = 0; i < got.size(); ++i, ++it) {
    ASSERT_EQ(got[i].id, it->first) << what << ", candidate " << i;
    ASSERT_NEAR(got[i].p, it->second, 1e-12) << what << ", token " << got[i].id;
    sum += got[i].p;
  }
  // Summing n rounded probabilities in double is exact to n rounding steps at most (the
  // recursive-summation bound, each term's own rounding included): 3.4e-11 for a 152064-token
  // row, where a fixed 1e-12 failed a CI run (off by 1.15e-12 over 152064 tokens).
  EXPECT_NEAR(sum, 1.0, double(got.size() + 1) * std::numeric_limits<double>::epsilon()) << what;
}

TEST(SamplerDistribution, MatchesAPlainChainOnRandomLogits) {
  std::mt19937 rng(std::random_device{}());
  const int32_t top_ks[] = {0, 1, 5, 40, 300};
  const float top_ps[] = {1.0f, 0.5f, 0.9f, 0.95f};
  const float min_ps[] = {0.0f, 0.05f, 0.3f};
  const float temps[] = {0.0f, 0.3f, 0.8f, 1.5f};
  const float penalties[] = {1.0f, 1.1f, 0.8f};
  for (int trial = 0; trial < 600; ++trial) {
    // Sizes around the 16-value blocks and the 512-candidate buffer, and a real vocabulary's.
    const size_t sizes[] = {1, 15, 16, 17, 300, 513, 4099, 152064};
    const size_t n = trial % 50 == 0 ? 152064 : sizes[rng() % 7];
    std::vector<float> logits(n);
    const int pattern = int(rng() % 4);
    for (size_t i = 0; i < n; ++i) {
      switch (pattern) {
        case 0: logits[i] = std::normal_distribution<float>(0.0f, 3.0f)(rng); break;
        case 1: logits[i] = float(int(rng() % 21) - 10) * 0.5f; break;             // many ties
        case 2: logits[i] = float(i) * 0.001f + float(rng() % 5) * 0.01f; break;  // rising: every token a new best
        default: logits[i] = std::normal_distribution<float>(0.0f, 1.0f)(rng) - float(i % 7); break;
      }
    }
    if (rng() % 3 == 0) logits[rng() % n] = std::nanf("");
    if (rng() % 3 == 0) logits[rng() % n] = -kInf;
    SamplingParams p;
    p.top_k = top_ks[rng() % 5];
    p.top_p = top_ps[rng() % 4];
    p.min_p = min_ps[rng() % 3];
    p.temperature = temps[rng() % 4];
    p.repeat_penalty = penalties[rng() % 3];
    p.repeat_last_n = int32_t(rng() % 3) * 32;
    std::vector<int32_t> history(rng() % 100);
    for (auto& t : history) t = int32_t(rng() % n);
    const std::string what = "trial " + std::to_string(trial) + ", n " + std::to_string(n) + ", pattern " +
                             std::to_string(pattern) + ", top_k " + std::to_string(p.top_k) + ", top_p " +
                             std::to_string(p.top_p) + ", min_p " + std::to_string(p.min_p) + ", temp " +
                             std::to_string(p.temperature) + ", penalty " + std::to_string(p.repeat_penalty) +
                             " over " + std::to_string(p.repeat_last_n);
    expect_matches(p, logits, history, what);
    if (HasFatalFailure()) return;
  }
}

// llama.cpp's order: top-p and min-p cut on the softmax at temperature 1, the temperature only
// shapes what survives. Logits 2, 1, 0.5, -3: at temperature 1 the probabilities are
// 0.626, 0.230, 0.140, 0.004 (cumulative 0.856 after two), so top-p 0.9 keeps three; at 0.5 the
// first two alone would hold 0.958 and a temperature-first chain would keep two.
TEST(SamplerDistribution, TemperatureComesAfterTopPAndMinP) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, -3.0f};
  SamplingParams p;
  p.top_k = 0;
  p.min_p = 0.0f;
  p.top_p = 0.9f;
  p.temperature = 0.5f;
  {
    Sampler sampler(p, 4);
    const auto d = sampler.distribution(logits, {});
    ASSERT_EQ(d.size(), 3u);
    const double w[3] = {std::exp(4.0), std::exp(2.0), std::exp(1.0)};  // exp(logit / 0.5)
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(d[size_t(i)].id, i);
      EXPECT_NEAR(d[size_t(i)].p, w[i] / (w[0] + w[1] + w[2]), 1e-12);
    }
  }
  // min-p 0.2: at temperature 1 the third has 0.223 of the first's probability and stays; at 0.5
  // it would have 0.050.
  p.top_p = 1.0f;
  p.min_p = 0.2f;
  Sampler sampler(p, 4);
  const auto d = sampler.distribution(logits, {});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[2].id, 2);
}

// A repetition penalty below 1 raises a repeated token's positive logit: from outside the top 2
// into first place.
TEST(SamplerDistribution, APenaltyBelowOneCanBringATokenIntoTopK) {
  std::vector<float> logits(1000, 0.0f);
  logits[10] = 5.0f;
  logits[20] = 4.0f;
  logits[700] = 3.0f;  // 3 / 0.5 = 6
  SamplingParams p;
  p.greedy = true;
  p.repeat_penalty = 0.5f;
  Sampler greedy(p, 1000);
  EXPECT_EQ(greedy.sample(logits, std::vector<int32_t>{700}), 700);
  EXPECT_EQ(greedy.sample(logits, std::vector<int32_t>{}), 10);
  p.greedy = false;
  p.top_k = 2;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  Sampler top2(p, 1000);
  const auto d = top2.distribution(logits, std::vector<int32_t>{700, 700, 3});
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].id, 10);
  EXPECT_EQ(d[1].id, 700);
}

// Draws: only tokens of the distribution, each as often as its probability says (within 5
// standard deviations over 40000 draws), and the same sequence for the same seed.
TEST(Sampler, DrawsFollowTheDistribution) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.5f, -1.0f, 2.9f, 0.0f, 2.0f, -9.0f};
  SamplingParams p;
  p.seed = 12345;
  Sampler sampler(p, 8);
  const auto d = sampler.distribution(logits, {});
  std::map<int32_t, double> prob;
  for (const auto& t : d) prob[t.id] = t.p;
  ASSERT_GE(prob.size(), 3u);
  std::map<int32_t, int> count;
  const int draws = 40000;
  std::vector<int32_t> first;
  for (int i = 0; i < draws; ++i) {
    const int32_t t = sampler.sample(logits, {});
    ++count[t];
    if (i < 64) first.push_back(t);
  }
  for (const auto& [t, c] : count) ASSERT_TRUE(prob.count(t)) << "token " << t << " drawn but outside the distribution";
  for (const auto& [t, q] : prob) {
    const double sd = std::sqrt(draws * q * (1 - q));
    EXPECT_NEAR(count[t], draws * q, 5 * sd + 1) << "token " << t;
  }
  Sampler again(p, 8);
  for (size_t i = 0; i < first.size(); ++i) ASSERT_EQ(again.sample(logits, {}), first[i]) << "draw " << i;
}

TEST(Sampler, RefusesLogitsOfAnotherSizeAndAnEmptyVocabulary) {
  Sampler sampler(SamplingParams{}, 10);
  EXPECT_THROW(sampler.sample(std::vector<float>(9, 0.0f), {}), Error);
  EXPECT_THROW(Sampler(SamplingParams{}, 0), Error);
}

}  // namespace
}  // namespace engine
