#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <fmt/format.h>

#include "engine/error.h"
#include "engine/sampling.h"
#include "kernels/cpu/ops.h"

namespace engine {

namespace {

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// A logit as the chain orders it: NaN as -infinity.
float ordered(float v) { return std::isnan(v) ? kMinusInf : v; }

// a before b: the higher logit, or the same logit and the lower id.
template <typename C>
bool better(const C& a, const C& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

constexpr size_t kBlock = 64;  // logits a block of the selection's first pass

// The largest of the kBlock logits at x, NaN ignored (-infinity if all are NaN).
float block_max(const float* x) {
#if defined(__SSE2__)
  // maxps returns its second operand where either is NaN: the running maximum, never the NaN.
  __m128 m0 = _mm_set1_ps(kMinusInf), m1 = m0, m2 = m0, m3 = m0;
  for (size_t j = 0; j < kBlock; j += 16) {
    m0 = _mm_max_ps(_mm_loadu_ps(x + j), m0);
    m1 = _mm_max_ps(_mm_loadu_ps(x + j + 4), m1);
    m2 = _mm_max_ps(_mm_loadu_ps(x + j + 8), m2);
    m3 = _mm_max_ps(_mm_loadu_ps(x + j + 12), m3);
  }
  __m128 m = _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3));
  m = _mm_max_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
  m = _mm_max_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtss_f32(m);
#else
  float m = kMinusInf;
  for (size_t j = 0; j < kBlock; ++j) m = x[j] > m ? x[j] : m;
  return m;
#endif
}

// The m best tokens of `logits`, best first, into `out`. First pass: the largest logit of each
// block of 64 (vectorized; the only pass over the whole row). The m-th largest of those block
// maxima is a bound no token of the best m is below (m distinct tokens reach it), so the second
// pass looks only into the blocks whose maximum reaches it, keeping the tokens that do; the
// buffer is compacted to the best m when it fills, and from then on a token must be above the
// m-th kept (a later token equal to it loses on its id). `maxima` and `ranked` are scratch.
template <typename C>
void select_best(std::span<const float> logits, size_t m, std::vector<C>& out, std::vector<float>& maxima,
                 std::vector<float>& ranked) {
  out.clear();
  const size_t n = logits.size();
  m = std::min(m, n);
  if (m == 0) return;
  const size_t blocks = (n + kBlock - 1) / kBlock;
  maxima.resize(blocks);
  for (size_t b = 0; b + 1 < blocks; ++b) maxima[b] = block_max(logits.data() + b * kBlock);
  float last = kMinusInf;
  for (size_t i = (blocks - 1) * kBlock; i < n; ++i) last = logits[i] > last ? logits[i] : last;
  maxima[blocks - 1] = last;
  float bound = kMinusInf;
  if (blocks > m) {
    ranked.assign(maxima.begin(), maxima.end());
    std::nth_element(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(m - 1), ranked.end(),
                     std::greater<float>());
    bound = ranked[m - 1];
  }
  const size_t cap = std::max<size_t>(2 * m, 512);
  out.reserve(cap);
  bool compacted = false;
  for (size_t b = 0; b < blocks; ++b) {
    if (maxima[b] < bound) continue;
    const size_t end = std::min(n, (b + 1) * kBlock);
    for (size_t i = b * kBlock; i < end; ++i) {
      const float v = ordered(logits[i]);
      if (!(v > bound || (v == bound && !compacted))) continue;
      out.push_back({v, static_cast<int32_t>(i)});
      if (out.size() == cap) {
        std::nth_element(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(m - 1), out.end(), better<C>);
        out.resize(m);
        bound = out[m - 1].logit;
        compacted = true;
      }
    }
  }
  std::sort(out.begin(), out.end(), better<C>);
  out.resize(m);
}

}  // namespace

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
    : p_(params), n_vocab_(n_vocab), greedy_(params.greedy || params.temperature == 0.0f), rng_(params.seed) {
  validate(params);
  if (n_vocab <= 0) throw Error(fmt::format("sampling: a vocabulary of {} tokens", n_vocab));
}

// penalized_: each distinct valid token among the last repeat_last_n of the history, with its
// logit after the penalty.
void Sampler::penalize(std::span<const int32_t> history, std::span<const float> logits) {
  penalized_.clear();
  if (p_.repeat_penalty == 1.0f || p_.repeat_last_n == 0) return;
  const size_t from = history.size() > size_t(p_.repeat_last_n) ? history.size() - size_t(p_.repeat_last_n) : 0;
  for (size_t i = from; i < history.size(); ++i) {
    if (history[i] >= 0 && history[i] < n_vocab_) penalized_.push_back({0.0f, history[i]});
  }
  std::sort(penalized_.begin(), penalized_.end(), [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
  penalized_.erase(std::unique(penalized_.begin(), penalized_.end(),
                               [](const Candidate& a, const Candidate& b) { return a.id == b.id; }),
                   penalized_.end());
  for (auto& c : penalized_) {
    const float l = ordered(logits[size_t(c.id)]);
    c.logit = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
  }
}

// The best k tokens after the penalty, best first, into `out` (k < the vocabulary). An
// unpenalized token among them has fewer than k unpenalized tokens above it before the penalty,
// and at most every penalized one: it is among the best k + (penalized tokens) of the raw logits.
// The penalized ones join with their new logits.
void Sampler::best_after_penalty(std::span<const float> logits, size_t k, std::vector<Candidate>& out) {
  select_best(logits, k + penalized_.size(), out, maxima_, ranked_);
  for (const Candidate& pen : penalized_) {
    auto it = std::find_if(out.begin(), out.end(), [&](const Candidate& c) { return c.id == pen.id; });
    if (it != out.end()) {
      it->logit = pen.logit;
    } else {
      out.push_back(pen);
    }
  }
  const size_t keep = std::min(k, out.size());
  std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(keep), out.end(), better<Candidate>);
  out.resize(keep);
}

// candidates_ after steps 1 and 2: with top-k (or greedy, k = 1), the best k after the penalty,
// best first (returns true); without it, every token in id order (false).
bool Sampler::select_candidates(std::span<const float> logits) {
  const size_t n = logits.size();
  const size_t k = greedy_ ? 1 : size_t(p_.top_k);
  if (k > 0 && k < n) {
    best_after_penalty(logits, k, candidates_);
    return true;
  }
  candidates_.resize(n);
  for (size_t i = 0; i < n; ++i) candidates_[i] = {ordered(logits[i]), static_cast<int32_t>(i)};
  for (const Candidate& pen : penalized_) candidates_[size_t(pen.id)].logit = pen.logit;
  return false;
}

std::span<const TokenProbability> Sampler::distribution(std::span<const float> logits,
                                                        std::span<const int32_t> history) {
  if (static_cast<int64_t>(logits.size()) != n_vocab_) {
    throw Error(fmt::format("sampling: {} logits for a vocabulary of {}", logits.size(), n_vocab_));
  }
  result_.clear();
  penalize(history, logits);
  const bool best_first = select_candidates(logits);
  // Without top-k, the best token by the selection's vectorized pass (best_after_penalty with k = 1)
  // rather than by a scalar pass over every candidate.
  Candidate best;
  if (best_first) {
    best = candidates_.front();
  } else {
    best_after_penalty(logits, 1, prefix_);
    best = prefix_.front();
  }
  const float max_logit = best.logit;
  if (greedy_ || !std::isfinite(max_logit)) {
    result_.push_back({best.id, 1.0});
    return result_;
  }
  bool id_order = !best_first;
  // 3. top-p on the softmax at temperature 1: the smallest best-first run whose mass reaches
  // top_p of the whole. Without top-k, the run is found in a sorted prefix of 256 (then 8 times
  // more) before sorting everything, as llama.cpp does.
  if (p_.top_p < 1.0f) {
    const double total = exp_shifted(&candidates_.front().logit, sizeof(Candidate), int64_t(candidates_.size()),
                                     double(max_logit), 1.0);
    const double target = double(p_.top_p) * total;
    size_t cut = 0;
    double mass = 0;
    auto take = [&](const std::vector<Candidate>& sorted) {  // the run of `sorted` that reaches the target
      for (; cut < sorted.size() && mass < target; ++cut) mass += std::exp(double(sorted[cut].logit) - double(max_logit));
    };
    if (best_first) {
      take(candidates_);
    } else {
      // Every token: the run is most often among the best few hundred, found in one pass over the
      // logits (best_after_penalty); 8 times more while it is not, then everything sorted.
      // Each longer prefix starts with the shorter one, so the run so far carries over.
      for (size_t m = 256; mass < target; m *= 8) {
        if (m >= candidates_.size()) {
          std::sort(candidates_.begin(), candidates_.end(), better<Candidate>);
          take(candidates_);
          break;
        }
        best_after_penalty(logits, m, prefix_);
        take(prefix_);
        if (mass >= target) candidates_.swap(prefix_);
      }
    }
    candidates_.resize(std::max<size_t>(cut, 1));
    id_order = false;
  }
  // 4. min-p: probability at least min_p of the highest's, i.e. logit - max >= log(min_p) (the
  // highest always stays).
  if (p_.min_p > 0.0f) {
    const double floor = std::log(double(p_.min_p));
    const auto last = std::remove_if(candidates_.begin(), candidates_.end(), [&](const Candidate& c) {
      return !(double(c.logit) - double(max_logit) >= floor);
    });
    candidates_.erase(last, candidates_.end());
  }
  // 5. temperature, over the survivors in id order.
  if (!id_order) {
    std::sort(candidates_.begin(), candidates_.end(), [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
  }
  weights_.resize(candidates_.size());
  const double sum = exp_shifted(&candidates_.front().logit, sizeof(Candidate), int64_t(candidates_.size()),
                                 double(max_logit), double(p_.temperature), weights_.data());
  result_.resize(candidates_.size());
  const double inv_sum = 1.0 / sum;
  for (size_t i = 0; i < candidates_.size(); ++i) result_[i] = {candidates_[i].id, weights_[i] * inv_sum};
  return result_;
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const std::span<const TokenProbability> dist = distribution(logits, history);
  if (dist.size() == 1) return dist.front().id;
  // Inverse transform: the first token whose running sum of probabilities passes u in [0, 1) (the
  // last one of nonzero probability if rounding leaves the sum short of u). One pass, nothing
  // allocated: what std::discrete_distribution draws with the same generator, without building it.
  const double u = std::generate_canonical<double, 53>(rng_);
  double run = 0;
  int32_t last = dist.front().id;
  for (const TokenProbability& t : dist) {
    if (t.p <= 0) continue;
    run += t.p;
    last = t.id;
    if (u < run) return t.id;
  }
  return last;
}

}  // namespace engine
