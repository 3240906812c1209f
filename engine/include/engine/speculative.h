// Speculative decoding: a small draft model proposes the next few tokens, the target model
// evaluates them in one batch, and the target's own sampler keeps them while they agree.
//
// Each step the draft extends the sequence greedily by up to DraftParams::n_max tokens, stopping
// early where its most likely token has less than p_min probability. The target then evaluates
// the last sampled token and the draft in one batch (a batch of a few tokens reads each weight
// once, as a decode step does) and samples from its logits position by position, exactly as
// Context::generate samples: a drafted token is kept while it is the one the target sampled
// there, and the first token that differs is the target's and ends the step. The tokens, and with
// the same SamplingParams::seed the random draws, are those Context::generate gives (up to the
// rounding of a batch's sums against single steps'); the draft decides only how many come from
// one target evaluation. Both contexts keep the sequence in their caches and drop a rejected
// draft's positions (Context::truncate).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "engine/engine.h"
#include "engine/sampling.h"

namespace engine {

struct DraftParams {
  int n_max = 16;       // tokens drafted per step at most (>= 1)
  int n_min = 0;        // a shorter draft is not used: the step evaluates the last token alone
  float p_min = 0.75f;  // drafting stops where the draft's most likely token is less likely, [0, 1]
};

// Throws engine::Error naming the first invalid parameter.
void validate(const DraftParams& params);

// Throws engine::Error unless the two models read and write text the same way: the same
// tokenizer (kind, special tokens, and each token's text below the smaller vocabulary), or,
// without tokenizers, the same vocabulary size. The messages name the draft's file.
void check_draft_compatible(const Model& target, const Model& draft);

struct SpeculativeStats {
  int64_t target_steps = 0;  // target evaluations after the prompt's
  int64_t drafted = 0;       // draft tokens the target evaluated
  int64_t accepted = 0;      // of them, the ones the target sampled too
  double acceptance() const { return drafted > 0 ? double(accepted) / double(drafted) : 0.0; }
};

class SpeculativeGenerator {
 public:
  // Both contexts must hold the same tokens (empty, or the same earlier turns); they stay the
  // caller's. generate leaves them holding the same tokens again, unless the draft had to stop
  // drafting (a sampled token outside its vocabulary, or its context full): then the next
  // generate call throws, and the caller truncates both to a common length.
  SpeculativeGenerator(Context& target, Context& draft, const DraftParams& params = {});

  // As Context::generate on the target: evaluates the prompt in both contexts, then samples up to
  // n_predict tokens with the target's logits, calling on_token after each, and stops for the
  // same reasons (last_stop()).
  std::vector<int32_t> generate(std::span<const int32_t> prompt, int n_predict, const SamplingParams& sampling,
                                const std::function<bool(int32_t)>& on_token = {});
  StopReason last_stop() const { return last_stop_; }
  // Counts over every generate call so far.
  const SpeculativeStats& stats() const { return stats_; }

 private:
  // Up to `limit` tokens after the sequence's newest (which is in neither cache), evaluating what
  // the draft's cache lacks first.
  std::vector<int32_t> draft_after(int limit);

  Context& target_;
  Context& draft_;
  DraftParams params_;
  // The tokens the draft's cache holds past what both held at the start of generate().
  std::vector<int32_t> draft_tokens_;
  // The tokens so far (the prompt's and the generated ones) of the current generate call.
  std::vector<int32_t> sequence_;
  uint32_t base_ = 0;  // positions both caches held before the current generate call
  bool drafting_ = true;  // false once the sequence holds a token the draft cannot evaluate
  StopReason last_stop_ = StopReason::n_predict;
  SpeculativeStats stats_;
};

}  // namespace engine
