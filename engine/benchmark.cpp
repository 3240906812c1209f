#include "engine/benchmark.h"

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/devices.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/model_report.h"
#include "engine/planner.h"

namespace engine {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

uint64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<uint64_t>(u.ru_maxrss) * 1024;
}

std::string layer_map(const Plan& plan) {
  std::string s;
  for (const auto& d : plan.devices) {
    if (!s.empty()) s += "|";
    if (d.device.kind == DeviceKind::cpu) s += "cpu:";
    s += d.layers ? fmt::format("{}-{}", d.layers->first, d.layers->second) : "-";
  }
  return s;
}

// Deterministic token ids spread over the vocabulary (avoiding the first special-ish ids).
std::vector<int32_t> token_ids(uint32_t n, int32_t n_vocab, uint32_t salt) {
  std::vector<int32_t> ids(n);
  for (uint32_t i = 0; i < n; ++i) {
    ids[i] = static_cast<int32_t>((uint64_t(i + salt) * 7919 + 300) % uint64_t(std::max(1, n_vocab - 300)) + 300) %
             n_vocab;
  }
  return ids;
}

void mean_stddev(const std::vector<double>& v, double* mean, double* sd) {
  double s = 0;
  for (double x : v) s += x;
  *mean = s / double(v.size());
  double q = 0;
  for (double x : v) q += (x - *mean) * (x - *mean);
  *sd = v.size() > 1 ? std::sqrt(q / double(v.size() - 1)) : 0.0;
}

}  // namespace

std::vector<std::string> parse_split_list(const std::string& text) {
  std::vector<std::string> out;
  bool last_manual = false;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? text.size() + 1 : comma + 1;
    if (item.empty()) continue;
    for (char& c : item) {
      if (c == '/') c = ',';
    }
    const bool manual = item.find_first_not_of("0123456789-,") == std::string::npos;
    if (manual && last_manual) {
      out.back() += "," + item;
    } else {
      out.push_back(item);
    }
    last_manual = manual;
  }
  return out;
}

std::vector<BenchResult> run_benchmarks(const BenchOptions& o,
                                        const std::function<void(const std::string&)>& progress) {
  auto say = [&](const std::string& s) {
    if (progress) progress(s);
  };
  std::vector<BenchResult> results;
  const auto bench_start = Clock::now();
  for (const std::string& path : o.models) {
    for (const std::string& split : o.splits) {
      for (const std::string& transport : o.transports) {
        // One load per (model, split, transport); the tests below share it.
        BenchResult base;
        base.model = std::filesystem::path(path).filename().string();
        base.split = split;
        base.transport = transport;
        base.devices = o.devices.empty() ? "cpu" : o.devices;
        std::vector<BenchResult> rows;
        for (const auto& [kind, sizes] : {std::pair{"pp", &o.n_prompt}, std::pair{"tg", &o.n_gen}}) {
          for (uint32_t n : *sizes) {
            for (uint32_t d : o.depths) {
              BenchResult r = base;
              r.test = fmt::format("{}{}", kind, n);
              r.depth = d;
              rows.push_back(r);
            }
          }
        }
        try {
          const auto t0 = Clock::now();
          const auto model = Model::load(path);
          const double load_s = seconds_since(t0);
          for (BenchResult& r : rows) {
            r.model_bytes = model->spec().file.total_bytes();
            r.types = tensor_type_mix(model->spec().file);
          }
          PlanOptions po;
          po.split = parse_split(split);
          po.n_batch = o.n_batch;
          uint32_t max_tokens = 0;
          for (uint32_t d : o.depths) {
            for (uint32_t np : o.n_prompt) max_tokens = std::max(max_tokens, d + np);
            for (uint32_t ng : o.n_gen) max_tokens = std::max(max_tokens, d + ng);
          }
          po.n_ctx = max_tokens + 1;
          const auto inv = resolve_devices(o.devices.empty() ? std::vector<DeviceSpec>{}
                                                             : parse_device_list(o.devices));
          const Plan plan = make_plan(model->spec(), inv, po);
          // Stages on the CPU and simulated devices run on the CPU; CUDA stages are refused by
          // the context with the reason.
          const std::vector<StageOptions> stages = stages_from_plan(plan);
          std::string used = transport;
          if (transport == "auto") {
            used = stages.size() > 1 ? "host" : "none";
          } else if (transport == "nccl" || transport == "peer") {
            throw Error(fmt::format("transport {} is not built yet (issue 7): stages connect through host buffers", transport));
          } else if (transport != "none" && transport != "host") {
            throw Error(fmt::format("transport '{}' is not one of auto, none, host, nccl, peer", transport));
          } else if ((transport == "none") != (stages.size() == 1)) {
            throw Error(fmt::format("transport {} with {} stage(s)", transport, stages.size()));
          }
          for (BenchResult& r : rows) r.transport = used;
          ContextOptions co;
          co.n_ctx = po.n_ctx;
          co.n_batch = o.n_batch;
          co.n_ubatch = o.n_ubatch;
          co.n_threads = o.n_threads;
          co.stages = stages;
          Context ctx(model, co);
          ctx.eval(token_ids(8, model->n_vocab(), 1));  // warm-up: pages, threads, caches
          for (BenchResult& r : rows) {
            r.layers = layer_map(plan);
            r.load_s = load_s;
            const bool pp = r.test[0] == 'p';
            const uint32_t n = static_cast<uint32_t>(std::stoul(r.test.substr(2)));
            std::vector<double> tps;
            for (int rep = 0; rep < o.repetitions; ++rep) {
              say(fmt::format("[{:.0f}s] {} split {} {} depth {} rep {}/{}", seconds_since(bench_start),
                              r.model, split, r.test, r.depth, rep + 1, o.repetitions));
              ctx.reset();
              if (r.depth > 0) ctx.eval(token_ids(r.depth, model->n_vocab(), 2));
              const auto ids = token_ids(n, model->n_vocab(), 3 + rep);
              const auto t = Clock::now();
              if (pp) {
                ctx.eval(ids);
              } else {
                for (uint32_t i = 0; i < n; ++i) ctx.eval(std::span<const int32_t>(&ids[i], 1));
              }
              tps.push_back(double(n) / seconds_since(t));
            }
            r.repetitions = o.repetitions;
            mean_stddev(tps, &r.tokens_per_s, &r.stddev);
            r.peak_bytes = peak_rss_bytes();
          }
        } catch (const Error& e) {
          for (BenchResult& r : rows) r.error = e.what();
          say(fmt::format("{} split {} transport {}: {}", base.model, split, transport, e.what()));
        }
        results.insert(results.end(), rows.begin(), rows.end());
      }
    }
  }
  return results;
}

std::string format_bench(const std::vector<BenchResult>& results, BenchFormat format) {
  auto as_json = [](const BenchResult& r) {
    nlohmann::ordered_json j;
    j["model"] = r.model;
    j["model_bytes"] = r.model_bytes;
    j["types"] = r.types;
    j["split"] = r.split;
    j["devices"] = r.devices;
    j["transport"] = r.transport;
    j["layers"] = r.layers;
    j["test"] = r.test;
    j["depth"] = r.depth;
    j["repetitions"] = r.repetitions;
    j["tokens_per_s"] = r.tokens_per_s;
    j["stddev"] = r.stddev;
    j["load_s"] = r.load_s;
    j["peak_bytes"] = r.peak_bytes;
    j["error"] = r.error;
    return j;
  };
  std::string out;
  switch (format) {
    case BenchFormat::json: {
      auto arr = nlohmann::ordered_json::array();
      for (const auto& r : results) arr.push_back(as_json(r));
      return arr.dump(2) + "\n";
    }
    case BenchFormat::jsonl:
      for (const auto& r : results) out += as_json(r).dump() + "\n";
      return out;
    case BenchFormat::csv: {
      auto quote = [](const std::string& s) {
        std::string q = "\"";
        for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
        return q + "\"";
      };
      out = "model,model_bytes,types,split,devices,transport,layers,test,depth,repetitions,"
            "tokens_per_s,stddev,load_s,peak_bytes,error\n";
      for (const auto& r : results) {
        out += fmt::format("{},{},{},{},{},{},{},{},{},{},{:.3f},{:.3f},{:.3f},{},{}\n", quote(r.model),
                           r.model_bytes, quote(r.types), quote(r.split), quote(r.devices),
                           quote(r.transport), quote(r.layers), r.test, r.depth, r.repetitions,
                           r.tokens_per_s, r.stddev, r.load_s, r.peak_bytes, quote(r.error));
      }
      return out;
    }
    case BenchFormat::markdown:
      out = "| model | size | split | devices | transport | layers | test | depth | t/s | load s | peak GiB |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n";
      for (const auto& r : results) {
        const std::string tps = r.error.empty() ? fmt::format("{:.2f} ± {:.2f}", r.tokens_per_s, r.stddev)
                                                : "cannot run: " + r.error;
        out += fmt::format("| {} | {:.2f} GiB | {} | {} | {} | {} | {} | {} | {} | {:.2f} | {:.2f} |\n", r.model,
                           double(r.model_bytes) / (1ull << 30), r.split, r.devices, r.transport, r.layers,
                           r.test, r.depth, tps, r.load_s, double(r.peak_bytes) / (1ull << 30));
      }
      return out;
  }
  return out;
}

}  // namespace engine
