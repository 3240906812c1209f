// engine-bench: tokens/s across models, split strategies, transports, prompt sizes and context
// depths. Results on stdout (markdown, csv, json, jsonl); progress on stderr.
#include <cstdio>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "engine/benchmark.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/memory_model.h"
#include "tool_errors.h"

namespace {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::vector<uint32_t> numbers(const std::string& flag, const std::string& s) {
  std::vector<uint32_t> out;
  for (const auto& item : split_commas(s)) {
    size_t used = 0;
    long v = -1;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
    }
    if (used != item.size() || v < 0 || v > (1l << 24)) {
      throw engine::Error(fmt::format("{}: '{}' is not a token count", flag, item));
    }
    out.push_back(static_cast<uint32_t>(v));
  }
  if (out.empty()) throw engine::Error(fmt::format("{}: empty list", flag));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Benchmark prompt and generation speed across placements"};
  engine::tools::report_flag_errors_in_one_line(app, "engine-bench");
  std::string models, splits = "auto", transports = "auto", kv_types = "f16", devices, prompts = "512",
              gens = "128", depths = "0", output = "md";
  engine::BenchOptions o;
  app.add_option("--model,-m", models, "GGUF file(s), comma-separated")->required();
  app.add_option("--split", splits, "split strategies, comma-separated (auto,even,none,cpu,30/34,0-29/30-63)");
  app.add_option("--transport", transports,
                 "transports, comma-separated (auto,none,host,nccl,peer; auto: none for one stage, host between CPU-run stages)");
  app.add_option("--kv-type", kv_types, "KV cache types, comma-separated (f16,q8_0,f32)");
  app.add_option("--devices", o.devices, "as engine-run --devices");
  app.add_option("-p,--n-prompt", prompts, "prompt sizes (0: skip)");
  app.add_option("-n,--n-gen", gens, "generation lengths (0: skip)");
  app.add_option("-d,--depth", depths, "KV cache depths before each test");
  app.add_option("-r,--repetitions", o.repetitions, "repetitions per test")->check(CLI::Range(1, 1000));
  app.add_option("-t,--threads", o.n_threads, "CPU threads (default: one per physical core)")->check(CLI::Range(0, 4096));
  app.add_option("-b,--batch", o.n_batch, "prompt tokens per forward call")->check(CLI::Range(1u, 65536u));
  app.add_option("--ubatch", o.n_ubatch, "prompt micro-batch through the stages (default: --batch)")
      ->check(CLI::Range(1u, 65536u));
  bool no_prompt_offload = false;
  app.add_flag("--no-prompt-offload", no_prompt_offload, "as engine-run --no-prompt-offload");
  std::string draft_max;
  auto* md = app.add_option("--model-draft,--md", o.draft_model, "draft model for speculative generation rows");
  app.add_option("--draft-max", draft_max,
                 "draft lengths of the generation rows, comma-separated (0: without the draft; default 0,16)")
      ->needs(md);
  app.add_option("--draft-p-min", o.draft_p_min, "as engine-run --draft-p-min (default 0.75)")
      ->check(CLI::Range(0.0f, 1.0f))
      ->needs(md);
  app.add_option("-o,--output", output, "md | csv | json | jsonl")->check(CLI::IsMember({"md", "csv", "json", "jsonl"}));
  CLI11_PARSE(app, argc, argv);
  o.prompt_offload = !no_prompt_offload;
  try {
    o.models = split_commas(models);
    o.splits = engine::parse_split_list(splits);
    o.transports = split_commas(transports);
    o.kv_types = split_commas(kv_types);
    for (const std::string& t : o.kv_types) {
      if (!engine::parse_kv_type(t)) {
        throw engine::Error(fmt::format("--kv-type: '{}' is not one of f16, q8_0, f32", t));
      }
    }
    o.n_prompt.clear();
    for (uint32_t n : numbers("-p", prompts)) {
      if (n > 0) o.n_prompt.push_back(n);
    }
    o.n_gen.clear();
    for (uint32_t n : numbers("-n", gens)) {
      if (n > 0) o.n_gen.push_back(n);
    }
    o.depths = numbers("-d", depths);
    if (!o.draft_model.empty()) {
      engine::Model::load(o.draft_model);  // a bad file fails here, once, not in every row
      o.draft_max.clear();
      for (uint32_t n : numbers("--draft-max", draft_max.empty() ? "0,16" : draft_max)) {
        if (n > 1024) throw engine::Error(fmt::format("--draft-max: {} tokens is more than 1024", n));
        o.draft_max.push_back(static_cast<int>(n));
      }
    }
    const int threads = o.n_threads > 0 ? o.n_threads : engine::default_thread_count();
    engine::tools::warn_if_threads_exceed_cpus("engine-bench", threads);
    const auto results = engine::run_benchmarks(o, [](const std::string& s) {
      fmt::print(stderr, "{}\n", s);
    });
    const engine::BenchFormat format = output == "csv"    ? engine::BenchFormat::csv
                                       : output == "json"  ? engine::BenchFormat::json
                                       : output == "jsonl" ? engine::BenchFormat::jsonl
                                                           : engine::BenchFormat::markdown;
    std::fputs(engine::format_bench(results, format).c_str(), stdout);
  } catch (const std::exception& e) {
    return engine::tools::report_failure("engine-bench", e);
  }
  return 0;
}
