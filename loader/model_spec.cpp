#include "engine/model_spec.h"

#include <charconv>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "engine/error.h"

namespace engine {
namespace {

constexpr int64_t kMaxLayers = 4096;       // far beyond any released model (Llama 405B: 126)
constexpr int64_t kMaxDimension = 1 << 24;  // n_embd, n_ff, n_vocab, head counts

// Typed access to "<arch>.<suffix>" keys with one-line errors.
class KeyReader {
 public:
  KeyReader(const ModelFile& file, std::string_view arch) : file_(file), arch_(arch) {}

  [[noreturn]] void fail(std::string_view key, std::string_view problem) const {
    throw Error(fmt::format("{}: metadata '{}': {}", file_.path(), key, problem));
  }

  std::string key(std::string_view suffix) const { return fmt::format("{}.{}", arch_, suffix); }

  std::optional<int64_t> integer(const std::string& key, int64_t lo, int64_t hi) const {
    const GgufValue* v = file_.find(key);
    if (v == nullptr) return std::nullopt;
    if (v->is_array()) fail(key, "per-layer arrays are not supported");
    auto i = v->as_int();
    if (!i) fail(key, fmt::format("has type {}, expected an integer", value_type_name(v->type())));
    if (*i < lo || *i > hi) fail(key, fmt::format("{} outside {}..{}", *i, lo, hi));
    return i;
  }

  int64_t required_integer(const std::string& key, int64_t lo, int64_t hi) const {
    auto i = integer(key, lo, hi);
    if (!i) fail(key, "required key is missing");
    return *i;
  }

  std::optional<double> real(const std::string& key, double lo, double hi) const {
    const GgufValue* v = file_.find(key);
    if (v == nullptr) return std::nullopt;
    auto f = v->as_float();
    if (!f) fail(key, fmt::format("has type {}, expected a float", value_type_name(v->type())));
    if (!std::isfinite(*f) || *f < lo || *f > hi) {
      fail(key, fmt::format("{} outside [{}, {}]", *f, lo, hi));
    }
    return f;
  }

  std::optional<std::string_view> string(const std::string& key) const {
    const GgufValue* v = file_.find(key);
    if (v == nullptr) return std::nullopt;
    auto s = v->as_string();
    if (!s) fail(key, fmt::format("has type {}, expected a string", value_type_name(v->type())));
    return s;
  }

 private:
  const ModelFile& file_;
  std::string_view arch_;
};

HyperParams read_hyperparams(const KeyReader& r) {
  HyperParams hp;
  hp.n_layer = r.required_integer(r.key("block_count"), 1, kMaxLayers);
  hp.n_embd = r.required_integer(r.key("embedding_length"), 1, kMaxDimension);
  hp.n_ff = r.required_integer(r.key("feed_forward_length"), 1, kMaxDimension);
  hp.n_head = r.required_integer(r.key("attention.head_count"), 1, kMaxDimension);
  hp.n_head_kv = r.integer(r.key("attention.head_count_kv"), 1, hp.n_head).value_or(hp.n_head);
  if (hp.n_head % hp.n_head_kv != 0) {
    r.fail(r.key("attention.head_count_kv"),
           fmt::format("{} does not divide head_count {}", hp.n_head_kv, hp.n_head));
  }
  auto key_length = r.integer(r.key("attention.key_length"), 2, kMaxDimension);
  if (!key_length && hp.n_embd % hp.n_head != 0) {
    r.fail(r.key("attention.head_count"),
           fmt::format("{} does not divide embedding_length {} and key_length is absent",
                       hp.n_head, hp.n_embd));
  }
  hp.head_dim = key_length.value_or(hp.n_embd / hp.n_head);
  if (hp.head_dim % 2 != 0) {
    r.fail(r.key("attention.key_length"), fmt::format("head dim {} is odd", hp.head_dim));
  }
  if (auto v = r.integer(r.key("attention.value_length"), 1, kMaxDimension)) {
    if (*v != hp.head_dim) {
      r.fail(r.key("attention.value_length"),
             fmt::format("{} differs from key_length {} (not supported)", *v, hp.head_dim));
    }
  }
  hp.n_ctx_train = r.required_integer(r.key("context_length"), 1, int64_t(1) << 31);
  hp.n_rot = r.integer(r.key("rope.dimension_count"), 2, hp.head_dim).value_or(hp.head_dim);
  if (hp.n_rot % 2 != 0) {
    r.fail(r.key("rope.dimension_count"), fmt::format("{} is odd", hp.n_rot));
  }
  hp.rope_freq_base = r.real(r.key("rope.freq_base"), 1.0, 1e12).value_or(10000.0);
  const auto eps = r.real(r.key("attention.layer_norm_rms_epsilon"), 1e-12, 1.0);
  if (!eps) r.fail(r.key("attention.layer_norm_rms_epsilon"), "required key is missing");
  hp.norm_eps = static_cast<float>(*eps);

  auto& rs = hp.rope_scaling;
  if (auto type = r.string(r.key("rope.scaling.type"))) {
    if (*type == "none") {
      rs.type = RopeScalingType::none;
    } else if (*type == "linear") {
      rs.type = RopeScalingType::linear;
    } else if (*type == "yarn") {
      rs.type = RopeScalingType::yarn;
    } else {
      r.fail(r.key("rope.scaling.type"),
             fmt::format("unsupported rope scaling '{}' (none, linear, yarn are)", *type));
    }
  }
  if (auto f = r.real(r.key("rope.scaling.factor"), 0.0, 1e6)) {
    rs.factor = *f > 0 ? static_cast<float>(*f) : 1.0f;  // 0 means "not set" in llama.cpp
  } else if (auto lin = r.real(r.key("rope.scale_linear"), 1e-6, 1e6)) {
    rs.type = RopeScalingType::linear;  // older conversions
    rs.factor = static_cast<float>(*lin);
  }
  rs.original_ctx = r.integer(r.key("rope.scaling.original_context_length"), 1, int64_t(1) << 31)
                        .value_or(hp.n_ctx_train);
  if (auto v = r.real(r.key("rope.scaling.yarn_beta_fast"), 0.0, 1e6)) rs.yarn_beta_fast = *v;
  if (auto v = r.real(r.key("rope.scaling.yarn_beta_slow"), 0.0, 1e6)) rs.yarn_beta_slow = *v;
  return hp;
}

// Splits "blk.<n>.<rest>" into n and rest; nullopt for other names.
std::optional<std::pair<int64_t, std::string_view>> split_layer_name(std::string_view name) {
  constexpr std::string_view kPrefix = "blk.";
  if (name.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  std::string_view rest = name.substr(kPrefix.size());
  size_t dot = rest.find('.');
  if (dot == 0 || dot == std::string_view::npos || dot > 9) return std::nullopt;
  int64_t layer = 0;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + dot, layer);
  if (ec != std::errc() || end != rest.data() + dot) return std::nullopt;
  return std::make_pair(layer, rest.substr(dot + 1));
}

void check_shape(const ModelFile& file, const TensorInfo& t, const TensorSpec& spec,
                 const HyperParams& hp) {
  int64_t want0 = resolve_dim(spec.shape[0], hp);
  int64_t want1 = spec.n_dims == 2 ? resolve_dim(spec.shape[1], hp) : 1;
  bool ok = (t.n_dims == static_cast<uint32_t>(spec.n_dims) ||
             (t.n_dims == 2 && spec.n_dims == 1 && t.ne[1] == 1)) &&
            t.ne[0] == want0 && t.ne[1] == want1 && t.ne[2] == 1 && t.ne[3] == 1;
  if (!ok) {
    std::string want = spec.n_dims == 2 ? fmt::format("[{}, {}]", want0, want1)
                                        : fmt::format("[{}]", want0);
    throw Error(fmt::format("{}: tensor '{}': shape {} does not match the hyperparameters "
                            "(expected {})",
                            file.path(), t.name, t.shape_string(), want));
  }
}

TokenizerSummary read_tokenizer(const ModelFile& file, const KeyReader& r, uint32_t n_vocab) {
  TokenizerSummary tok;
  tok.model = std::string(r.string("tokenizer.ggml.model").value_or(""));
  tok.pre = std::string(r.string("tokenizer.ggml.pre").value_or(""));
  tok.has_chat_template = file.find("tokenizer.chat_template") != nullptr;
  std::span<const std::string_view> texts;
  if (const GgufValue* tokens = file.find("tokenizer.ggml.tokens")) {
    if (!tokens->is_array() || tokens->elem_type() != GgufValueType::string) {
      r.fail("tokenizer.ggml.tokens", "expected an array of strings");
    }
    tok.n_tokens = tokens->size();
    texts = tokens->strings();
    if (tok.n_tokens != n_vocab) {
      r.fail("tokenizer.ggml.tokens",
             fmt::format("{} tokens but token_embd.weight has {} rows", tok.n_tokens, n_vocab));
    }
    for (const char* key : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"}) {
      const GgufValue* v = file.find(key);
      if (v != nullptr && (!v->is_array() || v->size() != tok.n_tokens)) {
        r.fail(key, fmt::format("expected an array of {} entries", tok.n_tokens));
      }
    }
  }
  if (const GgufValue* merges = file.find("tokenizer.ggml.merges")) {
    if (!merges->is_array() || merges->elem_type() != GgufValueType::string) {
      r.fail("tokenizer.ggml.merges", "expected an array of strings");
    }
    tok.n_merges = merges->size();
  }
  // Every *_token_id key must name a token of the vocabulary.
  constexpr std::string_view kPrefix = "tokenizer.ggml.", kSuffix = "_token_id";
  for (const auto& [key, value] : file.first().metadata()) {
    if (key.size() <= kPrefix.size() + kSuffix.size() || !key.starts_with(kPrefix) ||
        !key.ends_with(kSuffix)) {
      continue;
    }
    auto id = value.as_int();
    if (!id) {
      r.fail(key, fmt::format("has type {}, expected an integer", value_type_name(value.type())));
    }
    if (*id < 0 || *id >= n_vocab) {
      r.fail(key, fmt::format("token id {} outside the vocabulary (0..{})", *id, n_vocab - 1));
    }
    SpecialToken s;
    s.key = std::string(key.substr(kPrefix.size(), key.size() - kPrefix.size() - kSuffix.size()));
    s.id = *id;
    if (!texts.empty()) s.text = texts[*id];
    tok.specials.push_back(std::move(s));
  }
  return tok;
}

}  // namespace

int64_t resolve_dim(Dim dim, const HyperParams& hp) {
  switch (dim) {
    case Dim::embd: return hp.n_embd;
    case Dim::vocab: return hp.n_vocab;
    case Dim::q_dim: return hp.q_dim();
    case Dim::kv_dim: return hp.kv_dim();
    case Dim::ff: return hp.n_ff;
    case Dim::head_dim: return hp.head_dim;
    case Dim::rope_half: return hp.n_rot / 2;
  }
  return 0;
}

ModelSpec ModelSpec::from(const ModelFile& file) {
  const std::string& path = file.path();
  const GgufValue* arch_value = file.find("general.architecture");
  if (arch_value == nullptr) {
    throw Error(fmt::format("{}: metadata 'general.architecture': required key is missing", path));
  }
  auto arch_name = arch_value->as_string();
  if (!arch_name) {
    throw Error(fmt::format("{}: metadata 'general.architecture': has type {}, expected a string",
                            path, value_type_name(arch_value->type())));
  }
  auto arch = find_arch(*arch_name);
  if (!arch) {
    throw Error(fmt::format("{}: metadata 'general.architecture': unknown architecture '{}' "
                            "(supported: llama, qwen2, qwen3)",
                            path, *arch_name));
  }
  ModelSpec m;
  m.file = file;
  m.arch = *arch;
  KeyReader reader(file, arch->name);
  m.hp = read_hyperparams(reader);
  auto& hp = m.hp;
  if (hp.n_layer > file.tensors().size()) {
    reader.fail(reader.key("block_count"),
                fmt::format("{} layers but the file has only {} tensors", hp.n_layer,
                            file.tensors().size()));
  }

  const TensorInfo* embd = file.find_tensor("token_embd.weight");
  if (embd == nullptr) {
    throw Error(fmt::format("{}: tensor 'token_embd.weight': required tensor is missing", path));
  }
  if (embd->ne[1] > kMaxDimension) {
    throw Error(fmt::format("{}: tensor 'token_embd.weight': vocabulary of {} rows exceeds {}",
                            path, embd->ne[1], kMaxDimension));
  }
  hp.n_vocab = static_cast<uint32_t>(embd->ne[1]);
  if (auto v = reader.integer(reader.key("vocab_size"), 1, kMaxDimension); v && *v != hp.n_vocab) {
    reader.fail(reader.key("vocab_size"),
                fmt::format("{} but token_embd.weight has {} rows", *v, hp.n_vocab));
  }

  // Sort every tensor of the file into its scope; names the architecture does not know are refused.
  const std::vector<TensorSpec> specs = tensor_specs(m.arch);
  m.layer_tensors.resize(hp.n_layer);
  std::vector<std::vector<bool>> seen(hp.n_layer, std::vector<bool>(specs.size(), false));
  std::vector<bool> seen_global(specs.size(), false);
  for (const TensorInfo& t : file.tensors()) {
    auto layer_name = split_layer_name(t.name);
    std::string_view base = layer_name ? layer_name->second : t.name;
    size_t i = 0;
    for (; i < specs.size(); ++i) {
      bool scope_ok = layer_name ? specs[i].scope == TensorScope::per_layer
                                 : specs[i].scope != TensorScope::per_layer;
      if (scope_ok && specs[i].name == base) break;
    }
    if (i == specs.size()) {
      throw Error(fmt::format("{}: tensor '{}': not a tensor of the {} architecture", path, t.name,
                              m.arch.name));
    }
    check_shape(file, t, specs[i], hp);
    if (layer_name) {
      if (layer_name->first >= hp.n_layer) {
        throw Error(fmt::format("{}: tensor '{}': layer {} is beyond block_count {}", path, t.name,
                                layer_name->first, hp.n_layer));
      }
      m.layer_tensors[layer_name->first].push_back(&t);
      seen[layer_name->first][i] = true;
    } else {
      (specs[i].scope == TensorScope::input ? m.input_tensors : m.output_tensors).push_back(&t);
      seen_global[i] = true;
    }
  }

  // Required tensors present; optional per-layer tensors present in all layers or in none.
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    if (s.scope != TensorScope::per_layer) {
      if (s.need == Need::required && !seen_global[i]) {
        throw Error(fmt::format("{}: tensor '{}': required tensor is missing", path, s.name));
      }
      continue;
    }
    for (uint32_t l = 0; l < hp.n_layer; ++l) {
      if (seen[l][i] == (s.need == Need::required || seen[0][i])) continue;
      throw Error(fmt::format("{}: tensor 'blk.{}.{}': {}", path, l, s.name,
                              s.need == Need::required || seen[0][i]
                                  ? "required tensor is missing"
                                  : "present although layer 0 does not have it"));
    }
  }
  hp.qkv_bias = file.find_tensor("blk.0.attn_q.bias") != nullptr;
  hp.qk_norm = file.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  hp.tied_output = file.find_tensor("output.weight") == nullptr;
  m.tokenizer = read_tokenizer(file, reader, hp.n_vocab);
  return m;
}

namespace {
uint64_t sum_bytes(const std::vector<const TensorInfo*>& ts) {
  return std::accumulate(ts.begin(), ts.end(), uint64_t{0},
                         [](uint64_t s, const TensorInfo* t) { return s + t->n_bytes; });
}
}  // namespace

uint64_t ModelSpec::input_bytes() const { return sum_bytes(input_tensors); }
uint64_t ModelSpec::output_bytes() const { return sum_bytes(output_tensors); }
uint64_t ModelSpec::layer_bytes(uint32_t layer) const { return sum_bytes(layer_tensors.at(layer)); }

}  // namespace engine
