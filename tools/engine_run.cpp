// engine-run: plan a model's placement (--plan), complete a prompt, or chat.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <optional>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/byte_size.h"
#include "engine/chat_session.h"
#include "engine/devices.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/planner.h"
#include "engine/speculative.h"
#include "engine/stop_strings.h"
#include "placement_flags.h"
#include "tool_errors.h"

namespace {

struct Flags {
  std::string model, ctx, kv_type = "f16";
  engine::tools::PlacementFlags place;
  uint32_t batch = 512;
  bool plan_only = false, json = false, chat = false, no_special = false, no_think = false;
  std::string prompt, file, prompt_ids, system;
  std::vector<std::string> stop;
  int n_predict = 256, threads = 0;
  engine::SamplingParams sampling;
  int64_t seed = -1;  // -1: from the clock
  std::string draft_model;
  engine::DraftParams draft;
};

// A speculative decoding draft: its model and the context options of its plan.
struct Draft {
  std::shared_ptr<const engine::Model> model;
  engine::ContextOptions options;
};

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string item;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && text[i] != ',') {
      item += text[i];
      continue;
    }
    try {
      size_t used = 0;
      const long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::out_of_range(item);
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      throw engine::Error(fmt::format("--prompt-ids: '{}' is not a token id", item));
    }
    item.clear();
  }
  return ids;
}

engine::PlanOptions plan_options(const Flags& f) {
  engine::PlanOptions o = engine::tools::placement_options(f.place);
  o.kv_type = *engine::parse_kv_type(f.kv_type);
  o.n_batch = f.batch;
  if (f.ctx == "max") {
    o.ctx_max = true;
  } else if (!f.ctx.empty()) {
    size_t used = 0;
    long v = -1;
    try {
      v = std::stol(f.ctx, &used);
    } catch (const std::exception&) {
    }
    if (used != f.ctx.size() || v < 1 || v > (1l << 31)) {
      throw engine::Error(fmt::format("--ctx: '{}' is neither a positive number nor max", f.ctx));
    }
    o.n_ctx = static_cast<uint32_t>(v);
  }
  return o;
}

int chat(const Flags& f, std::shared_ptr<const engine::Model> model,
         const engine::ContextOptions& copts, const std::optional<Draft>& draft) {
  engine::ChatSession session(model, copts, f.system);
  if (draft) session.set_draft(draft->model, draft->options, f.draft);
  if (f.no_think) session.set_thinking(false);
  session.set_stop_strings(f.stop);
  if (!session.warning().empty()) fmt::print(stderr, "engine-run: warning: {}\n", session.warning());
  fmt::print(stderr, "chat template: {}\n", engine::chat_template_name(session.template_kind()));
  auto turn = [&](const std::string& user) {
    engine::ChatSession::TurnStats st;
    session.send(user, f.sampling, f.n_predict, [](std::string_view text) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      return true;
    }, &st);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    std::string notes;
    if (st.dropped_turns > 0) {
      notes += fmt::format("; the context was full: {} earlier turn{} left out", st.dropped_turns,
                           st.dropped_turns == 1 ? "" : "s");
    }
    if (st.stop == engine::StopReason::context_full) notes += "; the reply filled the context";
    if (st.stop_string) notes += "; stopped at a --stop string";
    if (st.reasoning_dropped) notes += "; its reasoning left out of the history";
    if (draft) notes += fmt::format("; draft: {} of {} drafted tokens accepted", st.accepted, st.drafted);
    fmt::print(stderr, "[{} new prompt tokens, {} generated, context {}/{}; {:.1f} tokens/s{}]\n",
               st.prompt_tokens, st.generated_tokens, session.context().n_past(),
               session.context().n_ctx(),
               st.generation_seconds > 0 ? double(st.generated_tokens) / st.generation_seconds : 0.0, notes);
  };
  if (!f.prompt.empty()) {
    turn(f.prompt);
    return 0;
  }
  const bool tty = isatty(fileno(stdin)) != 0;
  for (std::string line;;) {
    if (tty) fmt::print(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    turn(line);
  }
  return 0;
}

// The completion's prompt as token ids, checked against the model's vocabulary and the planned
// context, so that a bad prompt fails before anything is printed or allocated.
std::vector<int32_t> prompt_tokens(const Flags& f, const engine::Model& model, uint32_t n_ctx) {
  std::vector<int32_t> prompt;
  if (!f.prompt_ids.empty()) {
    prompt = parse_ids(f.prompt_ids);
    for (int32_t id : prompt) {
      if (id >= model.n_vocab()) {
        throw engine::Error(fmt::format("--prompt-ids: token id {} outside the vocabulary (0..{})", id,
                                        model.n_vocab() - 1));
      }
    }
  } else {
    if (!model.tokenizer()) throw engine::Error("--prompt: the model has no tokenizer; use --prompt-ids");
    std::string text = f.prompt;
    if (!f.file.empty()) {
      std::ifstream in(f.file, std::ios::binary);
      text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    prompt = model.tokenizer()->tokenize(text, true, !f.no_special);
  }
  if (prompt.empty()) throw engine::Error("--prompt: empty prompt");
  if (prompt.size() >= n_ctx) {
    throw engine::Error(fmt::format("prompt: {} tokens do not fit the context of {} (--ctx)", prompt.size(), n_ctx));
  }
  return prompt;
}

int complete(const Flags& f, std::shared_ptr<const engine::Model> model, const std::vector<int32_t>& prompt,
             const engine::ContextOptions& copts, const std::optional<Draft>& draft) {
  engine::Context context(model, copts);
  std::optional<engine::Context> draft_context;
  std::optional<engine::SpeculativeGenerator> speculative;
  if (draft) {
    draft_context.emplace(draft->model, draft->options);
    speculative.emplace(context, *draft_context, f.draft);
  }
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto t_first = t0;
  bool first = true;
  std::string text;
  std::unique_ptr<engine::TokenStreamer> stream;
  if (model->tokenizer()) stream = std::make_unique<engine::TokenStreamer>(model->tokenizer(), false);
  engine::StopStrings stops(f.stop);
  auto emit = [&](const std::string& piece) {
    text += piece;
    if (!f.json) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
  };
  auto on_token = [&](int32_t token) {
    if (first) {
      t_first = clock::now();
      first = false;
    }
    if (stream && !model->is_end_of_generation(token)) emit(stops.push(stream->push(token)));
    return !stops.matched();
  };
  const auto generated = speculative ? speculative->generate(prompt, f.n_predict, f.sampling, on_token)
                                     : context.generate(prompt, f.n_predict, f.sampling, on_token);
  const engine::StopReason stop = speculative ? speculative->last_stop() : context.last_stop();
  if (stream) emit(stops.push(stream->flush()));
  emit(stops.flush());
  const double prompt_s = std::chrono::duration<double>(t_first - t0).count();
  const double gen_s = std::chrono::duration<double>(clock::now() - t_first).count();
  const double prompt_tps = prompt_s > 0 ? double(prompt.size()) / prompt_s : 0;
  // The first generated token comes with the prompt; the rest each cost one decode step.
  const double gen_tps = generated.size() > 1 && gen_s > 0 ? double(generated.size() - 1) / gen_s : 0;
  if (f.json) {
    nlohmann::ordered_json j;
    j["text"] = text;
    j["tokens"] = generated;
    j["prompt_tokens"] = prompt;
    j["prompt_tokens_per_s"] = prompt_tps;
    j["gen_tokens_per_s"] = gen_tps;
    j["stop"] = stops.matched() ? "stop_string" : engine::stop_reason_name(stop);
    j["cpu_isa"] = engine::cpu_kernels_isa();
    j["threads"] = f.threads;
    if (speculative) {
      const engine::SpeculativeStats& st = speculative->stats();
      j["draft"] = {{"model", f.draft_model},   {"target_steps", st.target_steps}, {"drafted", st.drafted},
                    {"accepted", st.accepted},  {"acceptance", st.acceptance()}};
    }
    std::puts(j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  } else {
    std::fputc('\n', stdout);
  }
  std::fflush(stdout);  // the text ends before the stats line, also where both go to one pipe
  std::string draft_note;
  if (speculative) {
    const engine::SpeculativeStats& st = speculative->stats();
    draft_note = fmt::format("; draft: {} of {} drafted tokens accepted ({:.0f}%), {} target steps", st.accepted,
                             st.drafted, 100 * st.acceptance(), st.target_steps);
  }
  fmt::print(stderr, "prompt: {} tokens at {:.1f} tokens/s; generation: {} tokens at {:.1f} tokens/s{}{}\n",
             prompt.size(), prompt_tps, generated.size(), gen_tps, draft_note,
             stop == engine::StopReason::context_full
                 ? fmt::format(" (stopped: the context of {} is full; --ctx)", context.n_ctx())
                 : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Plan, complete or chat with a GGUF model"};
  engine::tools::report_flag_errors_in_one_line(app, "engine-run");
  Flags f;
  app.add_option("--model,-m", f.model, "GGUF model (any part of a split model)")->required();
  engine::tools::add_placement_flags(app, f.place);
  app.add_option("--ctx,-c", f.ctx, "context length, or max (default: min(trained, 4096))");
  app.add_option("--kv-type", f.kv_type, "f16 | q8_0 | f32")->check(CLI::IsMember({"f16", "q8_0", "f32"}));
  app.add_option("--batch,-b", f.batch, "prompt tokens per forward call")->check(CLI::Range(1u, 65536u));
  app.add_flag("--plan", f.plan_only, "print the placement plan and exit");
  app.add_flag("--json", f.json, "print one JSON object (the plan, or the completion and its speed)");
  auto* p = app.add_option("--prompt,-p", f.prompt, "prompt text (with --chat: one user turn)");
  auto* fl = app.add_option("--file,-f", f.file, "read the prompt from a file")->check(CLI::ExistingFile);
  auto* ids = app.add_option("--prompt-ids", f.prompt_ids, "prompt as comma-separated token ids");
  p->excludes(fl)->excludes(ids);
  fl->excludes(ids);
  auto* chat_flag = app.add_flag("--chat", f.chat, "chat with the model's template (interactive without --prompt)");
  app.add_option("--system", f.system, "system prompt for --chat")->needs(chat_flag);
  app.add_flag("--no-think", f.no_think, "answer without reasoning first (templates with enable_thinking: Qwen3)")
      ->needs(chat_flag);
  app.add_flag("--no-special", f.no_special, "do not turn control-token text in the prompt into tokens");
  app.add_option("--n-predict,-n", f.n_predict, "tokens to generate at most")->check(CLI::Range(0, 1 << 24));
  app.add_option("--threads,-t", f.threads, "CPU threads (default: one per physical core)")->check(CLI::Range(0, 4096));
  app.add_flag("--greedy", f.sampling.greedy, "always pick the most likely token");
  app.add_option("--temp", f.sampling.temperature, "sampling temperature");
  app.add_option("--top-k", f.sampling.top_k, "keep the k most likely tokens (0: off)");
  app.add_option("--top-p", f.sampling.top_p, "keep the smallest set with this probability mass");
  app.add_option("--min-p", f.sampling.min_p, "drop tokens below min-p times the most likely");
  app.add_option("--repeat-penalty", f.sampling.repeat_penalty, "penalty for repeated tokens (1: off)");
  app.add_option("--repeat-last-n", f.sampling.repeat_last_n,
                 "tokens of history the penalty looks at (default 64; 0: off)");
  app.add_option("--stop", f.stop, "stop generating where the text shows this string (repeatable; not printed)")
      ->allow_extra_args(false);
  app.add_option("--seed", f.seed, "random seed (-1, the default: from the clock)")
      ->check(CLI::Range(int64_t{-1}, std::numeric_limits<int64_t>::max()));
  auto* md = app.add_option("--model-draft,--md", f.draft_model,
                            "draft model for speculative decoding (the same tokenizer; placed after the model, "
                            "on what its plan leaves)");
  app.add_option("--draft-max,--draft", f.draft.n_max, "tokens drafted per step at most (default 16)")
      ->check(CLI::Range(1, 1024))
      ->needs(md);
  app.add_option("--draft-min", f.draft.n_min, "shorter drafts are not used (default 0)")
      ->check(CLI::Range(0, 1024))
      ->needs(md);
  app.add_option("--draft-p-min", f.draft.p_min,
                 "drafting stops where the draft's best token is less likely than this (default 0.75)")
      ->check(CLI::Range(0.0f, 1.0f))
      ->needs(md);
  CLI11_PARSE(app, argc, argv);

  try {
    engine::PlanOptions options = plan_options(f);
    const bool generating = !f.plan_only;
    if (generating) {
      if (f.prompt.empty() && f.file.empty() && f.prompt_ids.empty() && !f.chat) {
        throw engine::Error("nothing to do: give --prompt, --file, --prompt-ids or --chat (or --plan)");
      }
      f.sampling.seed = f.seed >= 0 ? static_cast<uint64_t>(f.seed)
                                    : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
      engine::validate(f.sampling);
      engine::StopStrings{f.stop};  // throws for an empty stop string
    }
    if (!f.draft_model.empty()) engine::validate(f.draft);
    const auto inventory = engine::tools::placement_inventory(f.place);
    const auto t0 = std::chrono::steady_clock::now();
    const auto model = engine::Model::load(f.model);
    const engine::Plan plan = engine::make_plan(model->spec(), inventory, options);
    // A draft model goes where the model's plan leaves room, at the same context length.
    std::optional<Draft> draft;
    std::optional<engine::Plan> draft_plan;
    if (!f.draft_model.empty()) {
      draft.emplace();
      draft->model = engine::Model::load(f.draft_model);
      engine::check_draft_compatible(*model, *draft->model);
      engine::PlanOptions o = options;
      o.split = engine::parse_split("auto");
      o.ctx_max = false;
      o.n_ctx = plan.n_ctx;
      draft_plan = engine::make_plan(draft->model->spec(), engine::inventory_after(inventory, plan), o);
    }
    if (f.plan_only) {
      if (f.json) {
        const std::string j = engine::plan_report_json(plan);
        std::puts(draft_plan ? fmt::format("{{\"plan\": {}, \"draft_plan\": {}}}", j, engine::plan_report_json(*draft_plan)).c_str()
                             : j.c_str());
      } else {
        std::fputs(engine::plan_report_text(plan).c_str(), stdout);
        if (draft_plan) std::fputs(("draft: " + engine::plan_report_text(*draft_plan)).c_str(), stdout);
      }
      return 0;
    }
    const std::vector<int32_t> prompt = f.chat ? std::vector<int32_t>{} : prompt_tokens(f, *model, plan.n_ctx);
    if (!f.stop.empty() && !model->tokenizer()) throw engine::Error("--stop: the model has no tokenizer to give text");
    if (f.no_think && !engine::ChatFormatter::for_template(model->chat_template(), nullptr).has_thinking_switch()) {
      throw engine::Error(fmt::format("--no-think: {}: tokenizer.chat_template has no enable_thinking switch "
                                      "(Qwen3's has one)", f.model));
    }
    if (f.threads == 0) f.threads = engine::default_thread_count();  // resolved once, for all below
    const int threads = f.threads;
    engine::tools::warn_if_threads_exceed_cpus("engine-run", threads);
    fmt::print(stderr, "{}loaded {} ({}, {} layers, {}) in {:.2f} s; CPU kernels {}, {} thread{}\n",
               engine::plan_report_text(plan), f.model, model->spec().arch.name, model->spec().hp.n_layer,
               engine::format_gib(model->spec().file.total_bytes()),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), engine::cpu_kernels_isa(),
               threads, threads == 1 ? "" : "s");
    engine::ContextOptions copts;
    copts.n_ctx = plan.n_ctx;
    copts.n_batch = f.batch;
    copts.n_ubatch = f.place.ubatch;
    copts.stages = engine::stages_from_plan(plan);
    if (copts.stages.size() > 1) {
      fmt::print(stderr, "{} stages, transport {}, micro-batch {}\n", copts.stages.size(), f.place.transport,
                 f.place.ubatch ? f.place.ubatch : f.batch);
    }
    copts.n_threads = f.threads;
    copts.kv_type = options.kv_type;
    copts.transport = f.place.transport;
    // GPU stages upload their weights: one updating line on a terminal, a line per quarter in a log.
    copts.load_progress = [tty = isatty(STDERR_FILENO) != 0, last = -1](uint64_t done, uint64_t total) mutable {
      const int percent = total > 0 ? static_cast<int>(100 * done / total) : 100;
      const int step = tty ? 1 : 25;
      if (percent / step == last / step) return;
      last = percent;
      fmt::print(stderr, "{}uploading weights to the GPU: {:3d}% ({} of {}){}", tty ? "\r" : "", percent,
                 engine::format_gib(done), engine::format_gib(total), tty && percent < 100 ? "" : "\n");
    };
    if (draft) {
      fmt::print(stderr, "draft: {}", engine::plan_report_text(*draft_plan));
      draft->options = copts;
      draft->options.n_ctx = draft_plan->n_ctx;
      draft->options.stages = engine::stages_from_plan(*draft_plan);
    }
    return f.chat ? chat(f, model, copts, draft) : complete(f, model, prompt, copts, draft);
  } catch (const std::exception& e) {
    return engine::tools::report_failure("engine-run", e);
  }
}
