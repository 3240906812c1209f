#include "engine/model_report.h"

#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace engine {
namespace {

std::map<std::string, int> type_counts(const ModelFile& file) {
  std::map<std::string, int> counts;
  for (const auto& t : file.tensors()) ++counts[std::string(traits(t.type).name)];
  return counts;
}

std::string_view scaling_name(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::linear: return "linear";
    case RopeScalingType::yarn: return "yarn";
    default: return "none";
  }
}

template <typename... Args>
void append_line(std::string& out, fmt::format_string<Args...> format, Args&&... args) {
  out += fmt::format(format, std::forward<Args>(args)...);
  out += '\n';
}

std::string gib(uint64_t bytes) { return fmt::format("{:.3f} GiB", double(bytes) / (1ull << 30)); }

}  // namespace

std::string tensor_type_mix(const ModelFile& file) {
  std::string mix;
  for (const auto& [type, count] : type_counts(file)) {
    mix += fmt::format("{}{} {}", mix.empty() ? "" : ", ", count, type);
  }
  return mix;
}

std::string model_report_json(const ModelFile& file, const ModelSpec& spec) {
  const HyperParams& hp = spec.hp;
  nlohmann::ordered_json j;
  j["file"] = file.path();
  j["architecture"] = spec.arch.name;
  j["n_layer"] = hp.n_layer;
  j["n_embd"] = hp.n_embd;
  j["n_head"] = hp.n_head;
  j["n_head_kv"] = hp.n_head_kv;
  j["head_dim"] = hp.head_dim;
  j["n_ff"] = hp.n_ff;
  j["n_vocab"] = hp.n_vocab;
  j["n_ctx_train"] = hp.n_ctx_train;
  j["rope_freq_base"] = hp.rope_freq_base;
  j["rope_scaling"] = {{"type", scaling_name(hp.rope_scaling.type)},
                       {"factor", hp.rope_scaling.factor},
                       {"original_ctx", hp.rope_scaling.original_ctx}};
  j["norm_eps"] = hp.norm_eps;
  j["qkv_bias"] = hp.qkv_bias;
  j["qk_norm"] = hp.qk_norm;
  j["tied_output"] = hp.tied_output;
  j["n_tensors"] = file.tensors().size();
  j["file_bytes"] = file.total_bytes();
  j["split_files"] = file.files().size();
  j["tensor_types"] = type_counts(file);
  auto layers = nlohmann::ordered_json::array();
  for (uint32_t l = 0; l < hp.n_layer; ++l) {
    layers.push_back({{"index", l}, {"bytes", spec.layer_bytes(l)}});
  }
  j["layers"] = std::move(layers);
  j["input_bytes"] = spec.input_bytes();
  j["output_bytes"] = spec.output_bytes();
  const TokenizerSummary& tok = spec.tokenizer;
  auto special = nlohmann::ordered_json::object();
  for (const auto& s : tok.specials) {
    special[s.key] = {{"id", s.id}, {"text", std::string(s.text)}};
  }
  j["tokenizer"] = {{"model", tok.model},
                    {"pre", tok.pre},
                    {"n_tokens", tok.n_tokens},
                    {"n_merges", tok.n_merges},
                    {"chat_template", tok.has_chat_template},
                    {"special", std::move(special)}};
  // Token texts come from the file and need not be valid UTF-8: replace rather than throw.
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string model_report_text(const ModelFile& file, const ModelSpec& spec) {
  const HyperParams& hp = spec.hp;
  std::string out;
  append_line(out, "file          {} ({} bytes, {}{})", file.path(), file.total_bytes(),
       gib(file.total_bytes()),
       file.files().size() > 1 ? fmt::format(", {} split files", file.files().size()) : "");
  append_line(out, "architecture  {} (GGUF v{})", spec.arch.name, file.first().version());
  append_line(out, "layers        {}", hp.n_layer);
  append_line(out, "embedding     {}   feed-forward {}", hp.n_embd, hp.n_ff);
  append_line(out, "heads         {} (kv {}, head dim {})", hp.n_head, hp.n_head_kv, hp.head_dim);
  append_line(out, "vocabulary    {}   trained context {}", hp.n_vocab, hp.n_ctx_train);
  append_line(out, "rope          base {}, {} dims, scaling {} x{}", hp.rope_freq_base, hp.n_rot,
       scaling_name(hp.rope_scaling.type), hp.rope_scaling.factor);
  append_line(out, "norm eps      {}   qkv bias {}   qk norm {}   tied output {}", hp.norm_eps,
       hp.qkv_bias ? "yes" : "no", hp.qk_norm ? "yes" : "no", hp.tied_output ? "yes" : "no");
  const TokenizerSummary& tok = spec.tokenizer;
  if (tok.model.empty()) {
    append_line(out, "tokenizer     none");
  } else {
    append_line(out, "tokenizer     {} (pre '{}'), {} tokens, {} merges, chat template {}", tok.model, tok.pre,
         tok.n_tokens, tok.n_merges, tok.has_chat_template ? "yes" : "no");
    for (const auto& s : tok.specials) append_line(out, "  {:<12}{} '{}'", s.key, s.id, s.text);
  }
  append_line(out, "tensors       {} ({})", file.tensors().size(), tensor_type_mix(file));
  append_line(out, "input         {:>14} bytes  {}", spec.input_bytes(), gib(spec.input_bytes()));
  append_line(out, "output        {:>14} bytes  {}", spec.output_bytes(), gib(spec.output_bytes()));
  uint64_t total_layers = 0;
  for (uint32_t l = 0; l < hp.n_layer; ++l) {
    append_line(out, "layer {:<7} {:>14} bytes  {}", l, spec.layer_bytes(l), gib(spec.layer_bytes(l)));
    total_layers += spec.layer_bytes(l);
  }
  append_line(out, "all layers    {:>14} bytes  {}", total_layers, gib(total_layers));
  return out;
}

}  // namespace engine
