#include "engine/synthetic_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/model_file.h"
#include "engine/model_spec.h"
#include "engine/quantize.h"

namespace engine {
namespace {

constexpr std::array<std::pair<std::string_view, WeightMix>, 24> kMixNames{{
    {"f32", WeightMix::f32},       {"f16", WeightMix::f16},       {"bf16", WeightMix::bf16},
    {"q8_0", WeightMix::q8_0},     {"q4_0", WeightMix::q4_0},     {"q4_1", WeightMix::q4_1},
    {"q5_0", WeightMix::q5_0},     {"q5_1", WeightMix::q5_1},     {"q2_k", WeightMix::q2_k},
    {"q3_k_m", WeightMix::q3_k_m}, {"q4_k_m", WeightMix::q4_k_m}, {"q5_k_m", WeightMix::q5_k_m},
    {"q6_k", WeightMix::q6_k},     {"iq4_nl", WeightMix::iq4_nl}, {"iq4_xs", WeightMix::iq4_xs},
    {"iq3_xxs", WeightMix::iq3_xxs}, {"iq3_m", WeightMix::iq3_m},   {"iq2_xxs", WeightMix::iq2_xxs},
    {"iq2_xs", WeightMix::iq2_xs}, {"iq2_m", WeightMix::iq2_m},     {"iq1_s", WeightMix::iq1_s},
    {"iq1_m", WeightMix::iq1_m},     {"tq1_0", WeightMix::tq1_0},   {"tq2_0", WeightMix::tq2_0},
}};

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third layer in
// between get more bits in the _M mixes.
bool use_more_bits(uint32_t layer, uint32_t n_layer) {
  return layer < n_layer / 8 || layer >= 7 * n_layer / 8 ||
         (layer >= n_layer / 8 && (layer - n_layer / 8) % 3 == 2);
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash_name(std::string_view s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  return h;
}

// How the values of a tensor are drawn: uniform in [center - spread, center + spread].
struct Distribution {
  float center;
  float spread;
};

Distribution distribution_for(std::string_view name, int64_t row_length, uint32_t n_dims) {
  if (name.find("norm") != std::string_view::npos) return {1.0f, 0.1f};
  if (name.find(".bias") != std::string_view::npos) return {0.0f, 0.02f};
  if (n_dims == 1) return {0.0f, 0.1f};
  // Variance 1/row_length keeps activations O(1) through the layers, like trained weights.
  return {0.0f, std::sqrt(3.0f / float(row_length))};
}

// Row r of a tensor depends only on (seed, name, r): the same file for any chunking or threads.
void fill_rows(uint64_t seed, std::string_view name, GgmlType type, int64_t row_length,
               Distribution dist, int64_t row_begin, int64_t n_rows, uint8_t* out) {
  const uint64_t row_bytes = type_bytes(type, row_length);
  const unsigned n_threads = std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(),
                                                             static_cast<unsigned>(n_rows)));
  const uint64_t base = seed ^ hash_name(name);
  auto work = [&](unsigned t) {
    std::vector<float> row(row_length);
    for (int64_t r = t; r < n_rows; r += n_threads) {
      uint64_t state = splitmix64(base + static_cast<uint64_t>(row_begin + r) * 0x632be59bd9b4e019ull);
      for (auto& v : row) {
        state = splitmix64(state);
        const float u = float(state >> 40) * (1.0f / float(1 << 24));  // [0, 1)
        v = dist.center + dist.spread * (2.0f * u - 1.0f);
      }
      quantize_row(type, row.data(), out + r * row_bytes, row_length);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < n_threads; ++t) threads.emplace_back(work, t);
  work(0);
  for (auto& th : threads) th.join();
}

// ChatML, as Qwen2/Qwen2.5/QwQ and Qwen3 ship it (reduced to the message loop).
constexpr std::string_view kChatMlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

// QwQ's way of opening a reply, for SyntheticModelOptions::thinking.
constexpr std::string_view kThinkingTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}";

// Qwen3's way, for SyntheticModelOptions::thinking_by_model: the generation prompt is the plain
// assistant tag (with an empty reasoning block for enable_thinking=false), and a past reply is
// written from what follows its last </think>.
constexpr std::string_view kThinkingByModelTemplate =
    "{% for message in messages %}{% if message['role'] == 'assistant' %}"
    "{% set content = message['content'].split('</think>')[-1].lstrip('\\n') %}"
    "{{'<|im_start|>assistant\\n' + content + '<|im_end|>\\n'}}{% else %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}";

// A SentencePiece-style vocabulary: <unk> <s> </s>, 256 byte tokens, the ChatML control tokens
// (and <think>, </think> with SyntheticModelOptions::thinking), then filler pieces. Enough for
// the tokenizer to round-trip any text through byte fallback.
void add_synthetic_vocab(GgufWriter& w, const SyntheticModelOptions& o) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};  // llama.cpp token types: 1 normal, 2 unknown,
                                           // 3 control, 6 byte
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(fmt::format("<0x{:02X}>", b));
    types.push_back(6);
  }
  const uint32_t im_start = static_cast<uint32_t>(tokens.size());
  for (const char* t : {"<|im_start|>", "<|im_end|>", "<|endoftext|>"}) {
    tokens.emplace_back(t);
    types.push_back(3);
  }
  if (o.thinking || o.thinking_by_model) {
    for (const char* t : {"<think>", "</think>"}) {
      tokens.emplace_back(t);
      types.push_back(4);
    }
  }
  for (uint32_t i = 0; tokens.size() < o.n_vocab; ++i) {
    std::string piece = (i % 2 == 0) ? "\xE2\x96\x81" : "";  // U+2581, SentencePiece's space
    for (uint32_t v = i / 2;; v /= 26) {
      piece += static_cast<char>('a' + v % 26);
      if (v < 26) break;
    }
    tokens.push_back(std::move(piece));
    types.push_back(1);
  }
  std::vector<float> scores(tokens.size());
  for (size_t i = 0; i < scores.size(); ++i) scores[i] = types[i] == 1 ? -float(i) : 0.0f;
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_string_array("tokenizer.ggml.tokens", tokens);
  w.add_f32_array("tokenizer.ggml.scores", scores);
  w.add_i32_array("tokenizer.ggml.token_type", types);
  w.add_u32("tokenizer.ggml.unknown_token_id", 0);
  if (o.arch == Arch::llama) {
    w.add_u32("tokenizer.ggml.bos_token_id", 1);
    w.add_u32("tokenizer.ggml.eos_token_id", 2);
    w.add_bool("tokenizer.ggml.add_bos_token", true);
  } else {
    w.add_u32("tokenizer.ggml.bos_token_id", im_start + 2);  // <|endoftext|>
    w.add_u32("tokenizer.ggml.eos_token_id", im_start + 1);  // <|im_end|>
    w.add_bool("tokenizer.ggml.add_bos_token", false);
    w.add_string("tokenizer.chat_template", std::string(o.thinking            ? kThinkingTemplate
                                                        : o.thinking_by_model ? kThinkingByModelTemplate
                                                                              : kChatMlTemplate));
  }
}

// Copies tokenizer.* metadata from another GGUF; returns its vocabulary size.
uint32_t copy_vocab(GgufWriter& w, const std::string& path) {
  GgufFile src = GgufFile::open(path);
  const GgufValue* tokens = src.find("tokenizer.ggml.tokens");
  if (tokens == nullptr || !tokens->is_array() || tokens->elem_type() != GgufValueType::string ||
      tokens->size() == 0) {
    throw Error(fmt::format("{}: metadata 'tokenizer.ggml.tokens': missing or not a string array "
                            "(--vocab needs a file with a tokenizer)",
                            path));
  }
  for (const auto& [key, value] : src.metadata()) {
    if (key.starts_with("tokenizer.")) w.add_value(std::string(key), value);
  }
  return static_cast<uint32_t>(tokens->size());
}

// llama.cpp's llama_ftype numbers, which general.file_type holds.
uint32_t llama_file_type(WeightMix mix) {
  switch (mix) {
    case WeightMix::f32: return 0;
    case WeightMix::f16: return 1;
    case WeightMix::q4_0: return 2;
    case WeightMix::q4_1: return 3;
    case WeightMix::q8_0: return 7;
    case WeightMix::q5_0: return 8;
    case WeightMix::q5_1: return 9;
    case WeightMix::q2_k: return 10;
    case WeightMix::q3_k_m: return 12;
    case WeightMix::q4_k_m: return 15;
    case WeightMix::q5_k_m: return 17;
    case WeightMix::q6_k: return 18;
    case WeightMix::iq4_nl: return 25;
    case WeightMix::iq4_xs: return 30;
    case WeightMix::iq3_xxs: return 23;
    case WeightMix::iq3_m: return 27;
    case WeightMix::iq2_xxs: return 19;
    case WeightMix::iq2_xs: return 20;
    case WeightMix::iq2_m: return 29;
    case WeightMix::iq1_s: return 24;
    case WeightMix::iq1_m: return 31;
    case WeightMix::tq1_0: return 36;
    case WeightMix::tq2_0: return 37;
    case WeightMix::bf16: return 32;
  }
  return 0;
}

void check_options(const SyntheticModelOptions& o) {
  auto fail = [](std::string_view flag, std::string problem) {
    throw Error(fmt::format("synthetic model: {}: {}", flag, problem));
  };
  if (o.n_layer < 1 || o.n_layer > 4096) fail("layers", fmt::format("{} outside 1..4096", o.n_layer));
  if (o.n_head < 1 || o.n_head_kv < 1 || o.n_head % o.n_head_kv != 0) {
    fail("heads-kv", fmt::format("{} must be at least 1 and divide heads {}", o.n_head_kv, o.n_head));
  }
  if (o.head_dim < 2 || o.head_dim % 2 != 0) fail("head-dim", fmt::format("{} must be even", o.head_dim));
  if (o.n_embd < 1 || o.n_ff < 1) fail("embd/ff", "must be positive");
  if (o.vocab_from.empty() && o.n_vocab < 264) {
    fail("vocab", fmt::format("{} is below 264, the size of the synthetic base vocabulary",
                              o.n_vocab));
  }
  // Every matrix row length must be a whole number of blocks of its type.
  for (int64_t row : {int64_t(o.n_embd), int64_t(o.n_ff), int64_t(o.n_head) * o.head_dim}) {
    for (const char* name : {"blk.0.ffn_down.weight", "blk.1.ffn_up.weight", "output.weight"}) {
      GgmlType t = tensor_type_for(o.mix, name, 0, o.n_layer, o.tied_output, o.n_head / o.n_head_kv);
      if (row % traits(t).block_size != 0) {
        fail("shape", fmt::format("row length {} is not a multiple of {} (block size of {}, used by "
                                  "{})",
                                  row, traits(t).block_size, traits(t).name, weight_mix_name(o.mix)));
      }
    }
  }
}

}  // namespace

std::optional<WeightMix> parse_weight_mix(std::string_view name) {
  for (const auto& [n, mix] : kMixNames) {
    if (n == name) return mix;
  }
  return std::nullopt;
}

std::vector<std::string_view> weight_mix_names() {
  std::vector<std::string_view> names;
  for (const auto& [name, mix] : kMixNames) names.push_back(name);
  return names;
}

std::string_view weight_mix_name(WeightMix mix) {
  for (const auto& [n, m] : kMixNames) {
    if (m == mix) return n;
  }
  return "?";
}

std::optional<SyntheticModelOptions> preset_options(std::string_view preset, Arch arch) {
  SyntheticModelOptions o;
  o.arch = arch;
  if (preset == "tiny") return o;  // the defaults
  if (preset == "small") {
    o.n_layer = 8;
    o.n_embd = 1024;
    o.n_head = 16;
    o.n_head_kv = 4;
    o.head_dim = 64;
    o.n_ff = 2816;
    o.n_vocab = 32000;
    o.n_ctx_train = 4096;
    return o;
  }
  if (preset == "qwq32") {  // QwQ-32B
    o.arch = Arch::qwen2;
    o.n_layer = 64;
    o.n_embd = 5120;
    o.n_head = 40;
    o.n_head_kv = 8;
    o.head_dim = 128;
    o.n_ff = 27648;
    o.n_vocab = 152064;
    o.n_ctx_train = 40960;
    o.rope_freq_base = 1000000.0f;
    o.norm_eps = 1e-5f;
    return o;
  }
  return std::nullopt;
}

GgmlType tensor_type_for(WeightMix mix, std::string_view name, uint32_t layer, uint32_t n_layer,
                         bool tied_output, uint32_t n_gqa) {
  const bool is_matrix = name.ends_with(".weight") && name.find("norm") == std::string_view::npos &&
                         name.find("rope_freqs") == std::string_view::npos;
  if (!is_matrix || mix == WeightMix::f32) return GgmlType::F32;
  const bool is_output =
      name == "output.weight" || (tied_output && name == "token_embd.weight");
  const bool v = name.ends_with("attn_v.weight"), down = name.ends_with("ffn_down.weight");
  const bool attn_output = name.ends_with("attn_output.weight");
  switch (mix) {
    case WeightMix::f16: return GgmlType::F16;
    case WeightMix::bf16: return GgmlType::BF16;
    case WeightMix::q8_0: return GgmlType::Q8_0;
    case WeightMix::q4_0: return is_output ? GgmlType::Q6_K : GgmlType::Q4_0;
    case WeightMix::q4_1: return is_output ? GgmlType::Q6_K : GgmlType::Q4_1;
    case WeightMix::q5_0: return is_output ? GgmlType::Q6_K : GgmlType::Q5_0;
    case WeightMix::q5_1: return is_output ? GgmlType::Q6_K : GgmlType::Q5_1;
    case WeightMix::q6_k: return GgmlType::Q6_K;
    case WeightMix::q2_k:
      if (is_output) return GgmlType::Q6_K;
      if (v) return n_gqa >= 4 ? GgmlType::Q4_K : GgmlType::Q3_K;
      if (down || attn_output) return GgmlType::Q3_K;
      return GgmlType::Q2_K;
    case WeightMix::q3_k_m:
      if (is_output) return GgmlType::Q6_K;
      if (v) return layer < 2 ? GgmlType::Q5_K : GgmlType::Q4_K;
      if (down) return layer < n_layer / 16 ? GgmlType::Q5_K : GgmlType::Q4_K;
      if (attn_output) return GgmlType::Q4_K;
      return GgmlType::Q3_K;
    case WeightMix::q4_k_m:
    case WeightMix::q5_k_m:
      if (is_output || ((v || down) && use_more_bits(layer, n_layer))) return GgmlType::Q6_K;
      return mix == WeightMix::q4_k_m ? GgmlType::Q4_K : GgmlType::Q5_K;
    case WeightMix::iq4_nl:
    case WeightMix::iq4_xs:  // as llama.cpp mixes them: the head in Q6_K, attn_v in Q5_K under GQA
      if (is_output) return GgmlType::Q6_K;
      if (v && n_gqa >= 4) return GgmlType::Q5_K;
      return mix == WeightMix::iq4_nl ? GgmlType::IQ4_NL : GgmlType::IQ4_XS;
    case WeightMix::iq3_xxs:  // the head in Q6_K, attn_v in Q4_K under GQA (else IQ3_S), the rest IQ3_XXS
      if (is_output) return GgmlType::Q6_K;
      if (v) return n_gqa >= 4 ? GgmlType::Q4_K : GgmlType::IQ3_S;
      return GgmlType::IQ3_XXS;
    case WeightMix::iq3_m:  // IQ3_S with more bits where llama.cpp's IQ3_M has them: the head, attn_v, attn_output
      if (is_output) return GgmlType::Q6_K;
      if (v || attn_output) return GgmlType::Q4_K;
      return GgmlType::IQ3_S;
    case WeightMix::iq2_xxs:
    case WeightMix::iq2_xs:
    case WeightMix::iq2_m:
    case WeightMix::iq1_s:
    case WeightMix::iq1_m: {  // as llama.cpp mixes them
      const bool m = mix == WeightMix::iq2_m, one_bit = mix == WeightMix::iq1_s || mix == WeightMix::iq1_m;
      if (is_output) return GgmlType::Q5_K;
      if (name == "token_embd.weight") return m ? GgmlType::IQ3_S : GgmlType::Q2_K;
      if (v) return n_gqa >= 4 ? GgmlType::Q4_K : m ? GgmlType::IQ3_S : GgmlType::Q2_K;
      if (down && layer < n_layer / 8) return m ? GgmlType::IQ3_S : GgmlType::Q2_K;
      if (attn_output && m) return GgmlType::IQ3_S;
      if (attn_output && one_bit) return GgmlType::IQ2_XXS;
      switch (mix) {
        case WeightMix::iq2_xxs: return GgmlType::IQ2_XXS;
        case WeightMix::iq2_xs: return GgmlType::IQ2_XS;
        case WeightMix::iq1_s: return GgmlType::IQ1_S;
        case WeightMix::iq1_m: return GgmlType::IQ1_M;
        default: return GgmlType::IQ2_S;
      }
    }
    case WeightMix::tq1_0:
    case WeightMix::tq2_0:  // as llama.cpp mixes them: the head in Q6_K, token_embd Q4_K
      if (is_output) return GgmlType::Q6_K;
      if (name == "token_embd.weight") return GgmlType::Q4_K;
      return mix == WeightMix::tq1_0 ? GgmlType::TQ1_0 : GgmlType::TQ2_0;
    case WeightMix::f32: break;
  }
  return GgmlType::F32;
}

void write_synthetic_model(const SyntheticModelOptions& opts, const std::string& path,
                           const GgufWriter::Progress& progress) {
  SyntheticModelOptions o = opts;
  GgufWriter w;
  const ArchSpec& arch = arch_spec(o.arch);
  const std::string a(arch.name);
  w.add_string("general.architecture", a);
  w.add_string("general.name", fmt::format("engine synthetic {} {}", a, weight_mix_name(o.mix)));
  w.add_u32("general.file_type", llama_file_type(o.mix));
  if (!o.vocab_from.empty()) {
    o.n_vocab = copy_vocab(w, o.vocab_from);
  }
  check_options(o);
  if (o.vocab_from.empty()) add_synthetic_vocab(w, o);
  w.add_u32(a + ".block_count", o.n_layer);
  w.add_u32(a + ".context_length", o.n_ctx_train);
  w.add_u32(a + ".embedding_length", o.n_embd);
  w.add_u32(a + ".feed_forward_length", o.n_ff);
  w.add_u32(a + ".attention.head_count", o.n_head);
  w.add_u32(a + ".attention.head_count_kv", o.n_head_kv);
  w.add_u32(a + ".attention.key_length", o.head_dim);
  w.add_u32(a + ".attention.value_length", o.head_dim);
  w.add_f32(a + ".rope.freq_base", o.rope_freq_base);
  w.add_f32(a + ".attention.layer_norm_rms_epsilon", o.norm_eps);

  HyperParams hp;
  hp.n_embd = o.n_embd;
  hp.n_head = o.n_head;
  hp.n_head_kv = o.n_head_kv;
  hp.head_dim = o.head_dim;
  hp.n_ff = o.n_ff;
  hp.n_vocab = o.n_vocab;
  hp.n_rot = o.head_dim;
  auto add = [&](const TensorSpec& spec, const std::string& name, uint32_t layer) {
    std::vector<int64_t> ne = {resolve_dim(spec.shape[0], hp)};
    if (spec.n_dims == 2) ne.push_back(resolve_dim(spec.shape[1], hp));
    const GgmlType type = tensor_type_for(o.mix, name, layer, o.n_layer, o.tied_output, o.n_head / o.n_head_kv);
    GgufWriter::Fill fill;
    if (!o.sparse) {
      const Distribution dist = distribution_for(name, ne[0], spec.n_dims);
      fill = [seed = o.seed, name, type, row = ne[0], dist](int64_t r0, int64_t n, uint8_t* out) {
        fill_rows(seed, name, type, row, dist, r0, n, out);
      };
    }
    w.add_tensor(name, type, std::move(ne), std::move(fill));
  };
  // Tensor order as llama.cpp's converter writes it: inputs, layers, output.
  const std::vector<TensorSpec> specs = tensor_specs(arch);
  auto wanted = [&](const TensorSpec& s) {
    if (s.name == "output.weight") return !o.tied_output;
    if (s.need == Need::required) return true;
    return false;  // optional extras (llama biases, rope factors) are left out
  };
  for (const auto& s : specs) {
    if (s.scope == TensorScope::input && wanted(s)) add(s, std::string(s.name), 0);
  }
  for (uint32_t l = 0; l < o.n_layer; ++l) {
    for (const auto& s : specs) {
      if (s.scope == TensorScope::per_layer && wanted(s)) {
        add(s, fmt::format("blk.{}.{}", l, s.name), l);
      }
    }
  }
  for (const auto& s : specs) {
    if (s.scope == TensorScope::output && wanted(s)) add(s, std::string(s.name), 0);
  }
  w.write(path, progress);
}

}  // namespace engine
