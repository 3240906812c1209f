#include <algorithm>
#include <cmath>
#include <unordered_set>

#include <fmt/format.h>

#include "engine/error.h"
#include "engine/sampling.h"

namespace engine {

void validate(const SamplingParams& p) {
  auto bad = [](const char* name, double value, const char* range) {
    throw Error(fmt::format("sampling: {} = {} is invalid ({})", name, value, range));
  };
  if (!std::isfinite(p.temperature) || p.temperature < 0) bad("temperature", double(p.temperature), "finite, >= 0");
  if (p.top_k < 0) bad("top_k", p.top_k, ">= 0");
  if (!(p.top_p > 0 && p.top_p <= 1)) bad("top_p", double(p.top_p), "in (0, 1]");
  if (!(p.min_p >= 0 && p.min_p < 1)) bad("min_p", double(p.min_p), "in [0, 1)");
  if (!std::isfinite(p.repeat_penalty) || p.repeat_penalty <= 0) {
    bad("repeat_penalty", double(p.repeat_penalty), "finite, > 0");
  }
  if (p.repeat_last_n < 0) bad("repeat_last_n", p.repeat_last_n, ">= 0");
}

bool is_plain_greedy(const SamplingParams& p) {
  return (p.greedy || p.temperature == 0.0f) && (p.repeat_penalty == 1.0f || p.repeat_last_n == 0);
}

int32_t argmax_token(std::span<const float> logits) {
  float best = -INFINITY;
  size_t at = logits.size();
  for (size_t i = 0; i < logits.size(); ++i) {
    const float v = std::isnan(logits[i]) ? -INFINITY : logits[i];
    if (v > best || (v == best && i < at)) {
      best = v;
      at = i;
    }
  }
  return static_cast<int32_t>(at);
}

Sampler::Sampler(const SamplingParams& params, int32_t n_vocab)
    : p_(params), n_vocab_(n_vocab), rng_(params.seed) {
  validate(params);
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  if (static_cast<int32_t>(logits.size()) != n_vocab_) {
    throw Error(fmt::format("sampling: {} logits for a vocabulary of {}", logits.size(), n_vocab_));
  }
  candidates_.resize(logits.size());
  for (int32_t i = 0; i < n_vocab_; ++i) candidates_[i] = {logits[i], i};
  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n > 0) {
    std::unordered_set<int32_t> seen;
    const size_t from = history.size() > size_t(p_.repeat_last_n) ? history.size() - p_.repeat_last_n : 0;
    for (size_t i = from; i < history.size(); ++i) {
      const int32_t t = history[i];
      if (t < 0 || t >= n_vocab_ || !seen.insert(t).second) continue;
      float& l = candidates_[t].first;
      l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    }
  }
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  if (p_.greedy || p_.temperature == 0.0f) {
    return std::min_element(candidates_.begin(), candidates_.end(), by_logit)->second;
  }
  size_t n = candidates_.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < n) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + p_.top_k, candidates_.end(), by_logit);
    n = p_.top_k;
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  // Softmax with temperature over the n survivors (sorted, highest first).
  const float max_logit = candidates_[0].first;
  double sum = 0;
  std::vector<double> probs(n);
  for (size_t i = 0; i < n; ++i) {
    probs[i] = std::exp(double(candidates_[i].first - max_logit) / double(p_.temperature));
    sum += probs[i];
  }
  for (auto& q : probs) q /= sum;
  // top-p: the smallest prefix whose mass reaches top_p; min-p: drop tokens below min_p * max.
  size_t keep = n;
  if (p_.top_p < 1.0f) {
    double mass = 0;
    for (size_t i = 0; i < n; ++i) {
      mass += probs[i];
      if (mass >= double(p_.top_p)) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p_.min_p > 0.0f) {
    size_t i = 1;
    while (i < keep && probs[i] >= double(p_.min_p) * probs[0]) ++i;
    keep = i;
  }
  std::discrete_distribution<size_t> pick(probs.begin(), probs.begin() + keep);
  return candidates_[pick(rng_)].second;
}

}  // namespace engine
