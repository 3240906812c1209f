// engine-mkmodel: writes a GGUF model with random weights (tests and benchmarks).
#include <chrono>
#include <unistd.h>

#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "engine/error.h"
#include "engine/synthetic_model.h"
#include "tool_errors.h"

int main(int argc, char** argv) {
  CLI::App app{"Write a GGUF model with random weights"};
  engine::tools::report_flag_errors_in_one_line(app, "engine-mkmodel");
  std::string arch_name = "llama", preset = "tiny", type = "f16", out;
  std::optional<uint32_t> layers, embd, heads, heads_kv, head_dim, ff, vocab, ctx;
  engine::SyntheticModelOptions o;
  std::string vocab_file;
  app.add_option("--arch", arch_name, "llama | qwen2 | qwen3")->check(CLI::IsMember({"llama", "qwen2", "qwen3"}));
  app.add_option("--preset", preset, "tiny | small | qwq32 (QwQ-32B's exact shape)")
      ->check(CLI::IsMember({"tiny", "small", "qwq32"}));
  const std::vector<std::string_view> mixes = engine::weight_mix_names();
  app.add_option("--type", type,
                 fmt::format("{} (llama.cpp's mixes: output and some layers' attn_v, ffn_down, attn_output in "
                             "more bits)",
                             fmt::join(mixes, " | ")))
      ->check(CLI::IsMember(std::vector<std::string>(mixes.begin(), mixes.end())));
  app.add_option("--layers", layers, "number of layers");
  app.add_option("--embd", embd, "embedding width");
  app.add_option("--heads", heads, "attention heads");
  app.add_option("--heads-kv", heads_kv, "key/value heads");
  app.add_option("--head-dim", head_dim, "dimension of one head");
  app.add_option("--ff", ff, "feed-forward width");
  std::string vocab_arg;
  app.add_option("--vocab", vocab_arg,
                 "N: vocabulary size of the synthetic tokenizer; FILE: copy the tokenizer (and "
                 "vocabulary size) of this GGUF file");
  app.add_option("--ctx", ctx, "trained context length");
  std::string chat_template;  // qwen2/qwen3 default: chatml
  app.add_option("--chat-template", chat_template,
                 "qwen2/qwen3: chatml | qwq (replies open with <think>) | qwen3 (the model opens them; "
                 "enable_thinking)")
      ->check(CLI::IsMember({"chatml", "qwq", "qwen3"}));
  app.add_flag("--tied", o.tied_output, "tie the output head to the token embeddings");
  app.add_flag("--sparse", o.sparse, "leave tensor data as file holes (instant, for planning)");
  app.add_option("--seed", o.seed, "random seed");
  app.add_option("--out", out, "output file")->required();
  CLI11_PARSE(app, argc, argv);
  if (!vocab_arg.empty()) {
    if (vocab_arg.find_first_not_of("0123456789") == std::string::npos && vocab_arg.size() < 10) {
      vocab = static_cast<uint32_t>(std::stoul(vocab_arg));
    } else {
      vocab_file = vocab_arg;  // a missing or bad file is reported by name when it is read
    }
  }

  const engine::Arch arch = engine::find_arch(arch_name)->arch;
  const bool tied = o.tied_output, sparse = o.sparse;
  const uint64_t seed = o.seed;
  o = *engine::preset_options(preset, arch);
  o.tied_output = tied;
  o.sparse = sparse;
  o.seed = seed;
  o.mix = *engine::parse_weight_mix(type);
  o.vocab_from = vocab_file;
  if (o.arch == engine::Arch::llama && !chat_template.empty()) {
    fmt::print(stderr, "engine-mkmodel: --chat-template: llama models are written without a chat template\n");
    return 2;
  }
  o.thinking = chat_template == "qwq";
  o.thinking_by_model = chat_template == "qwen3";
  if (layers) o.n_layer = *layers;
  if (embd) o.n_embd = *embd;
  if (heads) o.n_head = *heads;
  if (heads_kv) o.n_head_kv = *heads_kv;
  if (head_dim) o.head_dim = *head_dim;
  if (ff) o.n_ff = *ff;
  if (vocab) o.n_vocab = *vocab;
  if (ctx) o.n_ctx_train = *ctx;

  const auto start = std::chrono::steady_clock::now();
  int last_percent = -1;
  const bool tty = isatty(fileno(stderr)) != 0;
  const int step = tty ? 1 : 25;  // a log file gets a line per quarter
  auto progress = [&](uint64_t done, uint64_t total) {
    int percent = total ? static_cast<int>(100 * done / total) : 100;
    if (percent / step != last_percent / step || last_percent < 0) {
      fmt::print(stderr, "{}writing {}: {:3d}% ({:.2f} / {:.2f} GiB){}", tty ? "\r" : "", out,
                 percent, double(done) / (1 << 30), double(total) / (1 << 30), tty ? "" : "\n");
      last_percent = percent;
    }
  };
  try {
    engine::write_synthetic_model(o, out, progress);
  } catch (const std::exception& e) {
    if (tty && last_percent >= 0) fmt::print(stderr, "\n");  // after the progress line
    return engine::tools::report_failure("engine-mkmodel", e);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print(stderr, "{}wrote {} ({} {} {} layers{}) in {:.1f} s\n", tty && last_percent >= 0 ? "\n" : "",
             out, engine::arch_spec(o.arch).name, type, o.n_layer, o.sparse ? ", sparse" : "",
             seconds);
  return 0;
}
