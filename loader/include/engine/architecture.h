// Architecture tables: for each supported architecture, the GGUF tensor names it uses, the shape
// of each in terms of hyperparameters, and a scope tag (input / per layer / output). A model is
// this data plus one parameterised forward pass; nothing else in the engine switches on the name.
#pragma once

#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace engine {

enum class Arch { llama, qwen2, qwen3 };

enum class TensorScope { input, per_layer, output };

// Symbolic dimensions, resolved against a model's hyperparameters.
enum class Dim {
  embd,      // n_embd
  vocab,     // n_vocab
  q_dim,     // n_head * head_dim
  kv_dim,    // n_head_kv * head_dim
  ff,        // n_ff
  head_dim,  // head_dim (per-head q/k norms)
  rope_half  // n_rot / 2 (rope frequency factors)
};

// NeoX rotates pairs (i, i + n_rot/2); normal rotates adjacent pairs (2i, 2i+1).
enum class RopeStyle { normal, neox };

enum class Need { required, optional };

struct TensorSpec {
  std::string_view name;  // per-layer names omit the "blk.N." prefix
  TensorScope scope;
  Need need;
  int n_dims;
  Dim shape[2];  // ne[0], ne[1] (ne[1] unused when n_dims == 1)
};

struct ArchSpec {
  Arch arch;
  std::string_view name;  // general.architecture
  RopeStyle rope_style;
  std::span<const TensorSpec> extra_tensors;  // beyond the tensors all architectures share
};

std::optional<ArchSpec> find_arch(std::string_view name);
const ArchSpec& arch_spec(Arch arch);
std::span<const ArchSpec> all_archs();

// Every tensor the architecture knows: the shared ones, then its own.
std::vector<TensorSpec> tensor_specs(const ArchSpec& arch);

}  // namespace engine
