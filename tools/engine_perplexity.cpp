// engine-perplexity: perplexity of a model on a text file, as llama.cpp's perplexity tool
// computes it (non-overlapping chunks, second half of each scored).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "engine/memory_model.h"
#include "engine/error.h"
#include "engine/perplexity.h"
#include "engine/planner.h"
#include "placement_flags.h"
#include "tool_errors.h"

int main(int argc, char** argv) {
  CLI::App app{"Perplexity of a GGUF model on a text file"};
  engine::tools::report_flag_errors_in_one_line(app, "engine-perplexity");
  std::string model, file, kv_type = "f16";
  uint32_t ctx = 512, chunks = 0, batch = 512;
  int threads = 0;
  bool json = false;
  engine::tools::PlacementFlags place;
  app.add_option("--model,-m", model, "GGUF model")->required();
  engine::tools::add_placement_flags(app, place);
  app.add_option("--file,-f", file, "text file")->required()->check(CLI::ExistingFile);
  app.add_option("--ctx,-c", ctx, "tokens per chunk")->check(CLI::Range(16u, 1u << 20));
  app.add_option("--chunks", chunks, "at most this many chunks (0: all)");
  app.add_option("--batch,-b", batch, "tokens per forward call")->check(CLI::Range(1u, 65536u));
  app.add_option("--threads,-t", threads, "CPU threads (default: one per physical core)")->check(CLI::Range(0, 4096));
  app.add_option("--kv-type", kv_type, "f16 | q8_0 | f32")->check(CLI::IsMember({"f16", "q8_0", "f32"}));
  app.add_flag("--json", json, "print one JSON object");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto m = engine::Model::load(model);
    if (!m->tokenizer()) throw engine::Error(fmt::format("{}: the model has no tokenizer", model));
    std::ifstream in(file, std::ios::binary);
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const auto tokens = m->tokenizer()->tokenize(text, true, false);
    // The layers placed as engine-run places them, for a context of one chunk.
    engine::PlanOptions po = engine::tools::placement_options(place);
    po.n_ctx = ctx;
    po.n_batch = batch;  // the planner counts at the micro-batch, never wider than the chunk
    po.kv_type = *engine::parse_kv_type(kv_type);
    const engine::Plan plan = engine::make_plan(m->spec(), engine::tools::placement_inventory(place), po);
    engine::ContextOptions o;
    o.n_ctx = ctx;
    o.n_batch = batch;
    o.n_ubatch = place.ubatch;
    o.transport = place.transport;
    o.n_threads = threads;
    o.kv_type = po.kv_type;
    o.stages = engine::stages_from_plan(plan);
    engine::Context context(m, o);
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = engine::perplexity(context, tokens, ctx, chunks, [&](uint32_t c, double ppl) {
      // The plan and the header once the text is known to fill a chunk (else the one line is the
      // error).
      if (c == 0) {
        fmt::print(stderr, "{}{} tokens, chunks of {}, {} stage{}", engine::plan_report_text(plan), tokens.size(), ctx,
                   context.n_stages(), context.n_stages() == 1 ? "" : "s");
        if (context.n_stages() > 1) {
          fmt::print(stderr, " (transport {}, micro-batch {})", context.transports(),
                     engine::stage_micro_batch(batch, place.ubatch, ctx));
        }
        fmt::print(stderr, "\n");
      }
      fmt::print(stderr, "[{}]{:.4f} ", c + 1, ppl);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print(stderr, "\n{:.1f} s, {:.1f} tokens/s\n", s, double(r.chunk_ppl.size()) * ctx / s);
    if (json) {
      nlohmann::ordered_json j;
      j["ppl"] = r.ppl;
      j["ppl_error"] = r.ppl_error;
      j["chunks"] = r.chunk_ppl.size();
      j["scored_tokens"] = r.scored_tokens;
      std::puts(j.dump().c_str());
    } else {
      fmt::print("Final estimate: PPL = {:.4f} +/- {:.5f}\n", r.ppl, r.ppl_error);
    }
  } catch (const std::exception& e) {
    return engine::tools::report_failure("engine-perplexity", e);
  }
  return 0;
}
