// Token sampling: repetition penalty, top-k, temperature, top-p, min-p, in llama.cpp's order, or
// greedy. The same seed and inputs give the same tokens.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace engine {

struct SamplingParams {
  bool greedy = false;          // argmax; also when temperature == 0
  float temperature = 0.8f;     // >= 0
  int32_t top_k = 40;           // 0: off
  float top_p = 0.95f;          // (0, 1]; 1: off
  float min_p = 0.05f;          // [0, 1); 0: off
  float repeat_penalty = 1.0f;  // > 0; 1: off
  int32_t repeat_last_n = 64;   // >= 0 tokens of history the penalty looks at
  uint64_t seed = 0;
};

// Throws engine::Error naming the first invalid parameter (NaN, out of range).
void validate(const SamplingParams& params);

// Whether `params` make Sampler::sample the argmax of the logits as they come (greedy, and no
// repetition penalty to apply first): then the argmax may be taken where the logits are made.
bool is_plain_greedy(const SamplingParams& params);

// The greedy token of one row of logits: the highest logit, the lowest index among equal ones; a
// NaN counts as -infinity. What Sampler::sample returns for plain greedy parameters (for logits
// without NaN), and what the GPU head's argmax computes.
int32_t argmax_token(std::span<const float> logits);

class Sampler {
 public:
  Sampler(const SamplingParams& params, int32_t n_vocab);  // validates
  // Picks the next token from one row of logits; `history` are the tokens so far.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

 private:
  SamplingParams p_;
  int32_t n_vocab_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace engine
