// engine-run: plans a model's placement (--plan) or generates from it on the CPU.
// Until the tokenizer lands (issue 4) prompts are token ids (--prompt-ids) and the output is the
// vocabulary's pieces with SentencePiece spaces and byte tokens decoded.
#include <chrono>
#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "engine/devices.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/model_file.h"
#include "engine/model_spec.h"
#include "engine/planner.h"

namespace {

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? comma : comma - start);
    try {
      size_t used = 0;
      const long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::out_of_range(item);
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      throw engine::Error(fmt::format("--prompt-ids: '{}' is not a token id", item));
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (ids.empty()) throw engine::Error("--prompt-ids: no token ids");
  return ids;
}

// A token's text: SentencePiece's U+2581 as a space, <0xNN> as the byte.
std::string piece_text(std::string_view piece) {
  if (piece.size() == 6 && piece.starts_with("<0x") && piece.ends_with(">")) {
    return std::string(1, static_cast<char>(std::stoi(std::string(piece.substr(3, 2)), nullptr, 16)));
  }
  std::string out;
  for (size_t i = 0; i < piece.size(); ++i) {
    if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {
      out += ' ';
      i += 2;
    } else {
      out += piece[i];
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Run a GGUF model (today: print its placement plan with --plan)"};
  std::string model, devices, split = "auto", ctx, kv_type = "f16", reserve;
  uint32_t batch = 512;
  bool plan_only = false, json = false;
  std::string prompt_ids;
  int n_predict = 64, threads = 0;
  engine::SamplingParams sampling;
  uint64_t seed = 0;
  bool seed_given = false;
  app.add_option("--model,-m", model, "GGUF model (any part of a split model)")->required();
  app.add_option("--devices", devices,
                 "0,1 | 0:20GiB,0:20GiB (slices) | sim:24GiB,sim:24GiB | cpu:64GiB (default: all GPUs)");
  app.add_option("--split", split, "auto | even | proportional | none | cpu | 30,34 | 0-29,30-63");
  app.add_option("--ctx", ctx, "context length, or max (default: min(trained, 4096))");
  app.add_option("--kv-type", kv_type, "f16 | q8_0 | f32")->check(CLI::IsMember({"f16", "q8_0", "f32"}));
  app.add_option("--batch", batch, "prompt tokens per forward call");
  app.add_option("--reserve", reserve, "GPU memory kept free: 1GiB, 5%, or one per GPU (1GiB,512MiB)");
  app.add_flag("--plan", plan_only, "print the placement plan and exit");
  app.add_flag("--json", json, "print one JSON object (the plan, or the generation and its speed)");
  app.add_option("--prompt-ids", prompt_ids, "prompt as comma-separated token ids");
  app.add_option("--n-predict,-n", n_predict, "tokens to generate");
  app.add_option("--threads,-t", threads, "CPU threads (default: all cores)");
  app.add_flag("--greedy", sampling.greedy, "always pick the most likely token");
  app.add_option("--temp", sampling.temperature, "sampling temperature");
  app.add_option("--top-k", sampling.top_k, "keep the k most likely tokens (0: off)");
  app.add_option("--top-p", sampling.top_p, "keep the smallest set with this probability mass");
  app.add_option("--min-p", sampling.min_p, "drop tokens below min-p times the most likely");
  app.add_option("--repeat-penalty", sampling.repeat_penalty, "penalty for repeated tokens (1: off)");
  app.add_option("--seed", seed, "random seed (default: from the clock)")->each([&](const std::string&) { seed_given = true; });
  CLI11_PARSE(app, argc, argv);

  try {
    engine::PlanOptions options;
    options.split = engine::parse_split(split);
    options.kv_type = *engine::parse_kv_type(kv_type);
    options.n_batch = batch;
    if (!reserve.empty()) options.reserve = engine::parse_reserve(reserve);
    if (ctx == "max") {
      options.ctx_max = true;
    } else if (!ctx.empty()) {
      try {
        const long v = std::stol(ctx);
        if (v < 1 || v > (1l << 31)) throw std::out_of_range("ctx");
        options.n_ctx = static_cast<uint32_t>(v);
      } catch (const std::exception&) {
        throw engine::Error(fmt::format("--ctx: '{}' is neither a positive number nor max", ctx));
      }
    }
    if (!plan_only) {
      if (prompt_ids.empty()) throw engine::Error("--prompt-ids: required to generate (or use --plan)");
      if (options.split.kind != engine::SplitKind::cpu && options.split.kind != engine::SplitKind::automatic) {
        throw engine::Error(fmt::format("--split {}: only the CPU runs layers so far (CUDA execution is issue 6)", split));
      }
      if (!devices.empty()) throw engine::Error("--devices: only the CPU runs layers so far (CUDA execution is issue 6)");
      options.split = engine::parse_split("cpu");
    }
    const auto inventory =
        engine::resolve_devices(devices.empty() ? std::vector<engine::DeviceSpec>{}
                                                : engine::parse_device_list(devices));
    const auto file = engine::ModelFile::open(model);
    const auto spec = engine::ModelSpec::from(file);
    const engine::Plan plan = engine::make_plan(spec, inventory, options);
    if (plan_only) {
      std::fputs((json ? engine::plan_report_json(plan) + "\n" : engine::plan_report_text(plan)).c_str(), stdout);
      return 0;
    }
    fmt::print(stderr, "{}", engine::plan_report_text(plan));
    const std::vector<int32_t> prompt = parse_ids(prompt_ids);
    sampling.seed = seed_given ? seed : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    engine::validate(sampling);
    auto loaded = engine::Model::load(model);
    engine::ContextOptions copts;
    copts.n_ctx = plan.n_ctx;
    copts.n_batch = batch;
    copts.n_threads = threads;
    copts.kv_type = options.kv_type;
    engine::Context context(loaded, copts);
    if (prompt.size() >= context.n_ctx()) {
      throw engine::Error(fmt::format("--prompt-ids: the prompt has {} tokens, the context holds {}",
                                      prompt.size(), context.n_ctx()));
    }
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto t_first = t0;
    std::string text;
    bool first = true;
    const auto generated = context.generate(prompt, n_predict, sampling, [&](int32_t token) {
      if (first) {
        t_first = clock::now();
        first = false;
      }
      const std::string piece = piece_text(loaded->token_text(token));
      text += piece;
      if (!json) {
        std::fputs(piece.c_str(), stdout);
        std::fflush(stdout);
      }
      return true;
    });
    const auto t1 = clock::now();
    const double prompt_s = std::chrono::duration<double>(t_first - t0).count();
    const double gen_s = std::chrono::duration<double>(t1 - t_first).count();
    const double prompt_tps = prompt_s > 0 ? double(prompt.size()) / prompt_s : 0;
    const double gen_tps = generated.size() > 1 && gen_s > 0 ? double(generated.size() - 1) / gen_s : 0;
    if (json) {
      nlohmann::ordered_json j;
      j["text"] = text;
      j["tokens"] = generated;
      j["prompt_tokens"] = prompt;
      j["prompt_tokens_per_s"] = prompt_tps;
      j["gen_tokens_per_s"] = gen_tps;
      std::puts(j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
    } else {
      std::fputc('\n', stdout);
    }
    fmt::print(stderr, "prompt: {} tokens, {:.1f} tokens/s; generation: {} tokens, {:.1f} tokens/s\n",
               prompt.size(), prompt_tps, generated.size(), gen_tps);
  } catch (const engine::Error& e) {
    fmt::print(stderr, "engine-run: {}\n", e.what());
    return 1;
  }
  return 0;
}
