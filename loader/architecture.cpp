#include "engine/architecture.h"

#include <array>
#include <iterator>

namespace engine {
namespace {

using enum TensorScope;
using enum Need;
using enum Dim;

// Tensors every llama-family decoder has. output.weight is optional everywhere: when absent the
// output head is tied to token_embd.
constexpr TensorSpec kCommon[] = {
    {"token_embd.weight", input, required, 2, {embd, vocab}},
    {"output_norm.weight", output, required, 1, {embd, embd}},
    {"output.weight", output, optional, 2, {embd, vocab}},
    {"attn_norm.weight", per_layer, required, 1, {embd, embd}},
    {"attn_q.weight", per_layer, required, 2, {embd, q_dim}},
    {"attn_k.weight", per_layer, required, 2, {embd, kv_dim}},
    {"attn_v.weight", per_layer, required, 2, {embd, kv_dim}},
    {"attn_output.weight", per_layer, required, 2, {q_dim, embd}},
    {"ffn_norm.weight", per_layer, required, 1, {embd, embd}},
    {"ffn_gate.weight", per_layer, required, 2, {embd, ff}},
    {"ffn_up.weight", per_layer, required, 2, {embd, ff}},
    {"ffn_down.weight", per_layer, required, 2, {ff, embd}},
};

// Llama 2/3, Mistral, SmolLM2: optional biases (some fine-tunes have them) and Llama 3.1's
// rope frequency factors.
constexpr TensorSpec kLlama[] = {
    {"rope_freqs.weight", input, optional, 1, {rope_half, rope_half}},
    {"attn_q.bias", per_layer, optional, 1, {q_dim, q_dim}},
    {"attn_k.bias", per_layer, optional, 1, {kv_dim, kv_dim}},
    {"attn_v.bias", per_layer, optional, 1, {kv_dim, kv_dim}},
    {"attn_output.bias", per_layer, optional, 1, {embd, embd}},
};

// Qwen2 / Qwen2.5 / QwQ: biases on q, k and v.
constexpr TensorSpec kQwen2[] = {
    {"attn_q.bias", per_layer, required, 1, {q_dim, q_dim}},
    {"attn_k.bias", per_layer, required, 1, {kv_dim, kv_dim}},
    {"attn_v.bias", per_layer, required, 1, {kv_dim, kv_dim}},
};

// Qwen3: RMSNorm over each q and k head, no biases.
constexpr TensorSpec kQwen3[] = {
    {"attn_q_norm.weight", per_layer, required, 1, {head_dim, head_dim}},
    {"attn_k_norm.weight", per_layer, required, 1, {head_dim, head_dim}},
};

constexpr std::array<ArchSpec, 3> kArchs{{
    {Arch::llama, "llama", RopeStyle::normal, kLlama},
    {Arch::qwen2, "qwen2", RopeStyle::neox, kQwen2},
    {Arch::qwen3, "qwen3", RopeStyle::neox, kQwen3},
}};

}  // namespace

std::optional<ArchSpec> find_arch(std::string_view name) {
  for (const auto& a : kArchs) {
    if (a.name == name) return a;
  }
  return std::nullopt;
}

const ArchSpec& arch_spec(Arch arch) { return kArchs[static_cast<size_t>(arch)]; }

std::vector<TensorSpec> tensor_specs(const ArchSpec& arch) {
  std::vector<TensorSpec> all(std::begin(kCommon), std::end(kCommon));
  all.insert(all.end(), arch.extra_tensors.begin(), arch.extra_tensors.end());
  return all;
}

std::span<const ArchSpec> all_archs() { return kArchs; }

}  // namespace engine
