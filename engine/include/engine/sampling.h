// Token sampling: repetition penalty, top-k, top-p, min-p, temperature, in llama.cpp's default
// order (its sampler chain "penalties; top_k; top_p; min_p; temperature; dist"), or greedy. The
// same seed and inputs give the same tokens.
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

// A token the sampler may pick and its probability.
struct TokenProbability {
  int32_t id;
  double p;
};

class Sampler {
 public:
  Sampler(const SamplingParams& params, int32_t n_vocab);  // validates

  // Picks the next token from one row of logits; `history` are the tokens so far: a draw from
  // distribution(logits, history).
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

  // What sample draws from, in order of token id, probabilities summing to 1. The chain, with a
  // NaN logit counted as -infinity and ties ordered by lower id:
  //   1. the repetition penalty: each distinct token among the last repeat_last_n of `history`
  //      has its logit divided by repeat_penalty where positive, multiplied where not;
  //   2. top-k: the top_k highest logits;
  //   3. top-p: the smallest run of them, highest first, whose softmax (at temperature 1, over
  //      the survivors of 2) reaches top_p;
  //   4. min-p: those whose probability is at least min_p times the highest's;
  //   5. temperature: the survivors' softmax of logit / temperature.
  // Greedy (or temperature 0), or logits whose highest survivor is not finite: the highest alone.
  // Valid until the next call.
  std::span<const TokenProbability> distribution(std::span<const float> logits, std::span<const int32_t> history);

 private:
  struct Candidate {
    float logit;
    int32_t id;
  };
  void penalize(std::span<const int32_t> history, std::span<const float> logits);
  void best_after_penalty(std::span<const float> logits, size_t k, std::vector<Candidate>& out);
  bool select_candidates(std::span<const float> logits);

  SamplingParams p_;
  int32_t n_vocab_;
  bool greedy_;  // greedy, or temperature 0
  std::mt19937_64 rng_;
  std::vector<Candidate> penalized_;   // the penalized tokens' logits after the penalty
  std::vector<Candidate> candidates_;  // the survivors so far
  std::vector<Candidate> prefix_;      // top-p's best few hundred, where top-k is off
  std::vector<float> maxima_, ranked_;  // the candidate selection's scratch
  std::vector<double> weights_;        // the survivors' softmax weights
  std::vector<TokenProbability> result_;
};

}  // namespace engine
