// Synthetic GGUF models with random weights, for tests and benchmarks (what engine-mkmodel
// writes). Shapes come from a preset or explicit values; the weight type mix follows llama.cpp's
// rules for the named file type, so a "q4_k_m" model has the same bytes per layer as a real one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/architecture.h"
#include "engine/ggml_type.h"
#include "engine/gguf_writer.h"

namespace engine {

// A whole-model file type, as llama.cpp's quantize names them.
enum class WeightMix { f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k, iq4_nl, iq4_xs, iq3_xxs, iq3_m,
                       iq2_xxs, iq2_xs, iq2_m, iq1_s, iq1_m, tq1_0, tq2_0 };

std::optional<WeightMix> parse_weight_mix(std::string_view name);
std::string_view weight_mix_name(WeightMix mix);
// Every mix's name, in the enum's order ("f32" .. "tq2_0").
std::vector<std::string_view> weight_mix_names();

struct SyntheticModelOptions {
  Arch arch = Arch::llama;
  uint32_t n_layer = 2;
  uint32_t n_embd = 256;
  uint32_t n_head = 4;
  uint32_t n_head_kv = 2;
  uint32_t head_dim = 64;
  uint32_t n_ff = 512;
  uint32_t n_vocab = 512;
  uint32_t n_ctx_train = 2048;
  float rope_freq_base = 10000.0f;
  float norm_eps = 1e-6f;
  bool tied_output = false;
  WeightMix mix = WeightMix::f16;
  uint64_t seed = 1;
  bool sparse = false;     // leave tensor data as file holes
  std::string vocab_from;  // copy tokenizer.* metadata (and n_vocab) from this GGUF file
  // qwen2/qwen3: a QwQ-style chat template whose replies open with "<think>\n", and <think> and
  // </think> as user-defined tokens (type 4, shown as text), as QwQ's GGUF has them.
  bool thinking = false;
  // qwen2/qwen3: a Qwen3-style template instead, whose replies the model opens with <think>
  // itself and whose history keeps only what follows a reply's last </think>; the same tokens.
  bool thinking_by_model = false;
};

// "tiny" (tests: 2 layers, 256 wide), "small" (~150M parameters), "qwq32" (QwQ-32B's exact
// shape). qwq32 is qwen2 whatever `arch` says; other presets take `arch` as given.
std::optional<SyntheticModelOptions> preset_options(std::string_view preset, Arch arch);

// The tensor type llama.cpp's quantizer would choose for `name` in a model of the given mix
// (n_gqa: query heads per key/value head, which Q2_K's attn_v rule reads).
GgmlType tensor_type_for(WeightMix mix, std::string_view name, uint32_t layer, uint32_t n_layer,
                         bool tied_output, uint32_t n_gqa = 1);

// Validates the options and writes the model. Throws engine::Error naming the problem.
void write_synthetic_model(const SyntheticModelOptions& options, const std::string& path,
                           const GgufWriter::Progress& progress = {});

}  // namespace engine
