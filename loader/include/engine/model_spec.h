// A validated model description: architecture, typed hyperparameters, tokenizer summary and the
// tensor table grouped by scope (input, each layer, output), with exact byte counts.
//
// ModelSpec::from checks everything a forward pass relies on (required keys and tensors, shapes
// against the hyperparameters, special-token ids against the vocabulary) and throws engine::Error
// naming the file, the key or tensor, and the problem.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/architecture.h"
#include "engine/model_file.h"

namespace engine {

enum class RopeScalingType { none, linear, yarn };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::none;
  float factor = 1.0f;              // context extension factor
  uint32_t original_ctx = 0;        // training context before extension (YaRN)
  float yarn_beta_fast = 32.0f;     // YaRN ramp, as llama.cpp defaults
  float yarn_beta_slow = 1.0f;
};

struct HyperParams {
  uint32_t n_layer = 0;
  uint32_t n_embd = 0;
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t head_dim = 0;  // attention.key_length, default n_embd / n_head
  uint32_t n_ff = 0;
  uint32_t n_vocab = 0;
  uint32_t n_ctx_train = 0;
  uint32_t n_rot = 0;  // rope.dimension_count, default head_dim
  float rope_freq_base = 10000.0f;
  RopeScaling rope_scaling;
  float norm_eps = 1e-5f;
  bool qkv_bias = false;
  bool qk_norm = false;
  bool tied_output = false;

  uint32_t q_dim() const { return n_head * head_dim; }
  uint32_t kv_dim() const { return n_head_kv * head_dim; }
};

struct SpecialToken {
  std::string key;  // "bos", "eos", "unknown", ...
  int64_t id = -1;
  std::string_view text;
};

struct TokenizerSummary {
  std::string model;  // tokenizer.ggml.model ("llama", "gpt2"); empty when the file has none
  std::string pre;    // tokenizer.ggml.pre
  uint64_t n_tokens = 0;
  uint64_t n_merges = 0;
  bool has_chat_template = false;
  std::vector<SpecialToken> specials;
};

// Holds a ModelFile handle, so its tensor pointers and token texts stay valid as long as it lives.
class ModelSpec {
 public:
  static ModelSpec from(const ModelFile& file);

  ModelFile file;
  ArchSpec arch;
  HyperParams hp;
  TokenizerSummary tokenizer;
  std::vector<const TensorInfo*> input_tensors;               // token embeddings, rope factors
  std::vector<const TensorInfo*> output_tensors;              // final norm, output head
  std::vector<std::vector<const TensorInfo*>> layer_tensors;  // [n_layer]

  uint64_t input_bytes() const;
  uint64_t output_bytes() const;
  uint64_t layer_bytes(uint32_t layer) const;
};

// Resolves a symbolic dimension against hyperparameters.
int64_t resolve_dim(Dim dim, const HyperParams& hp);

}  // namespace engine
