#include "engine/speculative.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <fmt/format.h>

#include "engine/error.h"

namespace engine {

void validate(const DraftParams& p) {
  if (p.n_max < 1) throw Error(fmt::format("draft: n_max {} is not a positive token count", p.n_max));
  if (p.n_min < 0 || p.n_min > p.n_max) {
    throw Error(fmt::format("draft: n_min {} is outside 0..n_max ({})", p.n_min, p.n_max));
  }
  if (!(p.p_min >= 0.0f && p.p_min <= 1.0f)) throw Error(fmt::format("draft: p_min {} is outside [0, 1]", p.p_min));
}

void check_draft_compatible(const Model& target, const Model& draft) {
  const std::string& file = draft.spec().file.path();
  const Tokenizer* t = target.tokenizer().get();
  const Tokenizer* d = draft.tokenizer().get();
  if (t == nullptr || d == nullptr) {
    if (t != d) {
      throw Error(fmt::format("{}: draft model: {} a tokenizer and the target {}", file, d ? "has" : "has no",
                              t ? "has" : "has none"));
    }
    if (target.n_vocab() != draft.n_vocab()) {
      throw Error(fmt::format("{}: draft model: {} tokens in its vocabulary, the target has {}", file, draft.n_vocab(),
                              target.n_vocab()));
    }
    return;
  }
  if (t->model() != d->model()) {
    throw Error(fmt::format("{}: draft model: tokenizer.ggml.model is '{}', the target's is '{}'", file, d->model(),
                            t->model()));
  }
  if (t->bos() != d->bos() || t->eos() != d->eos() || t->add_bos() != d->add_bos()) {
    throw Error(fmt::format("{}: draft model: its BOS/EOS tokens ({}, {}, add BOS {}) differ from the target's "
                            "({}, {}, add BOS {})",
                            file, d->bos(), d->eos(), d->add_bos(), t->bos(), t->eos(), t->add_bos()));
  }
  // Models of one family often pad their output rows differently (Qwen2.5-0.5B 151936, QwQ-32B
  // 152064) over the same tokens: the tokens both have must be the same text.
  const int32_t n = std::min(t->n_tokens(), d->n_tokens());
  for (int32_t id = 0; id < n; ++id) {
    if (t->token_to_piece(id, true) != d->token_to_piece(id, true)) {
      throw Error(fmt::format("{}: draft model: token {} is '{}', the target's is '{}'", file, id,
                              d->token_to_piece(id, true), t->token_to_piece(id, true)));
    }
  }
}

SpeculativeGenerator::SpeculativeGenerator(Context& target, Context& draft, const DraftParams& params)
    : target_(target), draft_(draft), params_(params) {
  validate(params_);
  check_draft_compatible(target.model(), draft.model());
}

namespace {

// The draft's choice at one position: its most likely token, and whether that is likely enough.
struct DraftChoice {
  int32_t token;
  bool confident;
};

DraftChoice draft_choice(std::span<const float> logits, float p_min) {
  const int32_t best = argmax_token(logits);
  const float top = logits[size_t(best)];
  if (!std::isfinite(top)) return {best, false};
  // p(best) = 1 / sum exp(l - top); NaN logits count as -infinity, as in argmax_token.
  double sum = 0;
  for (float l : logits) {
    if (l == l) sum += std::exp(double(l) - double(top));
  }
  return {best, 1.0 / sum >= double(p_min)};
}

}  // namespace

std::vector<int32_t> SpeculativeGenerator::draft_after(int limit) {
  // What the draft's cache lacks of the sequence: at least its newest token.
  const std::span<const int32_t> pending = std::span<const int32_t>(sequence_).subspan(draft_tokens_.size());
  for (int32_t id : pending) {
    if (id >= draft_.model().n_vocab()) {  // a target token past the draft's vocabulary
      drafting_ = false;
      return {};
    }
  }
  // The pending tokens, then a position for each draft token but the last, which is not evaluated.
  const int64_t room = int64_t(draft_.n_ctx()) - int64_t(draft_.n_past()) - int64_t(pending.size());
  if (room < 0) {
    drafting_ = false;
    return {};
  }
  limit = int(std::min<int64_t>(limit, room + 1));
  std::vector<int32_t> drafts;
  if (limit <= 0) return drafts;
  std::span<const float> logits = draft_.eval(pending);
  draft_tokens_.insert(draft_tokens_.end(), pending.begin(), pending.end());
  while (true) {
    const DraftChoice c = draft_choice(logits, params_.p_min);
    if (!c.confident || c.token >= target_.model().n_vocab()) break;
    drafts.push_back(c.token);
    if (int(drafts.size()) == limit) break;
    logits = draft_.eval(std::span<const int32_t>(&c.token, 1));
    draft_tokens_.push_back(c.token);
  }
  return drafts;
}

std::vector<int32_t> SpeculativeGenerator::generate(std::span<const int32_t> prompt, int n_predict,
                                                    const SamplingParams& sampling,
                                                    const std::function<bool(int32_t)>& on_token) {
  if (target_.n_past() != draft_.n_past()) {
    throw Error(fmt::format("speculative generate: the draft's context holds {} tokens, the target's {}",
                            draft_.n_past(), target_.n_past()));
  }
  if (target_.n_past() + prompt.size() > target_.n_ctx()) {
    throw Error(fmt::format("generate: the prompt has {} tokens, the context holds {} ({} used)", prompt.size(),
                            target_.n_ctx(), target_.n_past()));
  }
  Sampler sampler(sampling, target_.model().n_vocab());
  const int32_t n_vocab = target_.model().n_vocab();
  base_ = target_.n_past();
  sequence_.assign(prompt.begin(), prompt.end());
  draft_tokens_.clear();
  drafting_ = true;
  std::vector<int32_t> history(prompt.begin(), prompt.end());  // what the repetition penalty sees
  std::vector<int32_t> generated;
  last_stop_ = StopReason::n_predict;

  std::span<const float> rows = target_.eval(prompt);
  int n_rows = 1;
  std::vector<int32_t> drafts;
  bool done = n_predict <= 0;
  while (!done) {
    // Cache positions P .. P + n_rows - 1 hold the step's last token and its drafts; the tokens
    // sampled from rows 0 .. i - 1 were drafts[0 .. i - 1].
    const uint32_t first_position = target_.n_past() - uint32_t(n_rows);
    int kept = 0;  // the drafts sampled before the newest token
    for (int i = 0; i < n_rows; ++i) {
      const int32_t token = sampler.sample(rows.subspan(size_t(i) * size_t(n_vocab), size_t(n_vocab)), history);
      generated.push_back(token);
      history.push_back(token);
      sequence_.push_back(token);
      const bool agrees = i < int(drafts.size()) && token == drafts[size_t(i)];
      stats_.accepted += agrees ? 1 : 0;
      kept = i;
      if (on_token && !on_token(token)) {
        last_stop_ = StopReason::callback;
      } else if (target_.model().is_end_of_generation(token)) {
        last_stop_ = StopReason::end_of_generation;
      } else if (int(generated.size()) == n_predict) {
        last_stop_ = StopReason::n_predict;
      } else if (first_position + uint32_t(i) + 1 == target_.n_ctx()) {  // no position left for this token
        last_stop_ = StopReason::context_full;
      } else if (agrees) {
        continue;
      } else {
        break;
      }
      done = true;
      break;
    }
    // The cache keeps the step's last token and the drafts that were sampled before the newest
    // token, which is in no cache yet.
    target_.truncate(first_position + 1 + uint32_t(kept));
    // The draft keeps what it shares with the sequence, short of the newest token (which the next
    // draft starts from).
    const auto shared = std::mismatch(draft_tokens_.begin(), draft_tokens_.end(), sequence_.begin(), sequence_.end());
    const size_t consistent = std::min(sequence_.size() - 1, size_t(shared.first - draft_tokens_.begin()));
    draft_tokens_.resize(consistent);
    draft_.truncate(base_ + uint32_t(consistent));
    if (done) break;

    // The next step: the newest token and what the draft makes of it, in one target evaluation.
    const int remaining = n_predict - int(generated.size());
    const int room = int(target_.n_ctx() - target_.n_past()) - 1;  // positions after the newest token's
    const int limit = std::min({params_.n_max, remaining - 1, room});
    drafts.clear();
    if (drafting_ && limit > 0) drafts = draft_after(limit);
    if (int(drafts.size()) < params_.n_min) drafts.clear();
    std::vector<int32_t> batch{sequence_.back()};
    batch.insert(batch.end(), drafts.begin(), drafts.end());
    rows = target_.eval_all(batch);
    n_rows = int(batch.size());
    ++stats_.target_steps;
    stats_.drafted += int64_t(drafts.size());
  }
  // Both caches as Context::generate leaves the target's: every token but the newest. The draft
  // catches up where it lags (it drafted nothing in the last step, or stopped drafting).
  const size_t in_target = target_.n_past() - base_;
  if (draft_tokens_.size() < in_target && drafting_) {
    const std::span<const int32_t> missing =
        std::span<const int32_t>(sequence_).subspan(draft_tokens_.size(), in_target - draft_tokens_.size());
    if (std::all_of(missing.begin(), missing.end(), [&](int32_t id) { return id < draft_.model().n_vocab(); }) &&
        draft_.n_past() + missing.size() <= draft_.n_ctx()) {
      draft_.eval(missing);
      draft_tokens_.insert(draft_tokens_.end(), missing.begin(), missing.end());
    }
  }
  return generated;
}

}  // namespace engine
