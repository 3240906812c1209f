#include "engine/benchmark.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "engine/byte_size.h"
#include "engine/devices.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/model_report.h"
#include "engine/planner.h"
#include "engine/quantize.h"
#include "engine/speculative.h"
#include "kernels/cpu/cpu_threads.h"
#include "scheduler/cuda_runtime.h"

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
    // A real GPU multiplying the CPU layers' prompt batches (a simulated one cannot).
    const int offload = plan.prompt_offload_gpu;
    if (d.device.kind == DeviceKind::cpu && offload >= 0 && plan.devices[offload].device.cuda_index >= 0) {
      s += fmt::format(" (prompts on {})", plan.devices[offload].device.name);
    }
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

// Bytes one decode step reads on each device of the plan, keyed "cuda<i>" for a real GPU and
// "cpu" for the CPU and simulated devices (which run there): the weights of its layers (as stored),
// the output head where it is, the token's embedding row on the CPU, and the KV cache of its
// layers over `positions` positions, in the plan's KV type.
std::map<std::string, uint64_t> decode_bytes(const ModelSpec& spec, const Plan& plan, double positions) {
  std::map<std::string, uint64_t> bytes;
  const uint64_t kv_per_position = kv_bytes_per_layer(spec.hp, plan.kv_type, 1);
  for (const DevicePlan& d : plan.devices) {
    const std::string key = d.device.kind == DeviceKind::gpu && d.device.cuda_index >= 0
                                ? fmt::format("cuda{}", d.device.cuda_index) : "cpu";
    uint64_t b = 0;
    if (d.layers) {
      for (uint32_t l = d.layers->first; l <= d.layers->second; ++l) b += spec.layer_bytes(l);
      b += static_cast<uint64_t>(double(d.layers->second - d.layers->first + 1) * positions * double(kv_per_position));
    }
    if (d.output) {
      b += spec.output_bytes();
      if (spec.hp.tied_output) b += spec.file.find_tensor("token_embd.weight")->n_bytes;
    }
    if (d.input) {
      const TensorInfo* e = spec.file.find_tensor("token_embd.weight");
      b += type_bytes(e->type, uint64_t(e->ne[0]));
    }
    if (b > 0) bytes[key] += b;
  }
  return bytes;
}

}  // namespace

double host_read_bandwidth(int threads) {
  const size_t n = (size_t(1) << 30) / sizeof(uint64_t);  // 1 GiB: beyond any last-level cache
  const int t = threads > 0 ? threads : default_thread_count();
  // Uninitialised, so that each thread's first pass places its own slice's pages (first touch):
  // on a multi-socket host a buffer filled by one thread sits on one socket's memory, and the
  // probe would measure that socket's channels while the model's pages are spread over all.
  std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
  std::vector<uint64_t> sums(static_cast<size_t>(t));
  double best = 0;
  for (int pass = 0; pass < 4; ++pass) {  // the first writes the buffer (and warms up)
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int i = 0; i < t; ++i) {
      pool.emplace_back([&, i, pass] {
        const size_t a = n * size_t(i) / size_t(t), b = n * size_t(i + 1) / size_t(t);
        if (pass == 0) {
          for (size_t k = a; k < b; ++k) buf[k] = 1;
          return;
        }
        uint64_t s[8] = {};
        for (size_t k = a; k + 8 <= b; k += 8) {
          for (int j = 0; j < 8; ++j) s[j] += buf[k + size_t(j)];
        }
        sums[size_t(i)] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
      });
    }
    for (auto& th : pool) th.join();
    const double sec = seconds_since(t0);
    if (pass > 0) best = std::max(best, double(n * sizeof(uint64_t)) / sec);
  }
  uint64_t total = 0;
  for (uint64_t v : sums) total += v;
  if (total == 0) throw Error("host_read_bandwidth: the buffer read back as zeros");  // keeps the reads
  return best;
}

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
  std::vector<std::map<std::string, uint64_t>> row_bytes;  // per result: decode bytes per device
  const auto bench_start = Clock::now();
  // One load per combination of model, split, transport and KV type; its tests share it.
  struct Setup {
    std::string path, split, transport, kv_name;
  };
  std::vector<Setup> setups;
  for (const std::string& path : o.models) {
    for (const std::string& split : o.splits) {
      for (const std::string& transport : o.transports) {
        for (const std::string& kv_name : o.kv_types) setups.push_back({path, split, transport, kv_name});
      }
    }
  }
  const std::string cpu_isa = cpu_kernels_isa();  // the same for every row; throws for a bad ENGINE_CPU_ISA
  for (const Setup& setup : setups) {
    // Plain references, not structured bindings: lambdas below capture them (clang 14 cannot).
    const std::string &path = setup.path, &split = setup.split, &transport = setup.transport,
                      &kv_name = setup.kv_name;
    BenchResult base;
    base.model = std::filesystem::path(path).filename().string();
    base.split = split;
    base.transport = transport;
    base.kv_type = kv_name;
    base.devices = o.devices.empty() ? "cpu" : o.devices;
    base.cpu_isa = cpu_isa;
    base.threads = o.n_threads > 0 ? o.n_threads : default_thread_count();
    std::vector<BenchResult> rows;
    std::vector<std::map<std::string, uint64_t>> bytes;
    for (const auto& [kind, sizes] : {std::pair{"pp", &o.n_prompt}, std::pair{"tg", &o.n_gen}}) {
      for (uint32_t n : *sizes) {
        for (uint32_t d : o.depths) {
          for (int k : std::string_view(kind) == "tg" ? o.draft_max : std::vector<int>{0}) {
            BenchResult r = base;
            r.test = fmt::format("{}{}", kind, n);
            r.depth = d;
            r.draft_max = k;
            if (k > 0) r.draft = std::filesystem::path(o.draft_model).filename().string();
            rows.push_back(r);
            bytes.emplace_back();
          }
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
      const std::optional<KvType> kv_type = parse_kv_type(kv_name);
      if (!kv_type) throw Error(fmt::format("KV type '{}' is not one of f16, q8_0, f32", kv_name));
      PlanOptions po;
      po.split = parse_split(split);
      po.n_batch = o.n_batch;
      po.n_ubatch = o.n_ubatch;
      po.kv_type = *kv_type;
      po.prompt_offload = o.prompt_offload;
      uint32_t max_tokens = 0;
      for (uint32_t d : o.depths) {
        for (uint32_t np : o.n_prompt) max_tokens = std::max(max_tokens, d + np);
        for (uint32_t ng : o.n_gen) max_tokens = std::max(max_tokens, d + ng);
      }
      po.n_ctx = max_tokens + 1;
      const auto inv = resolve_devices(o.devices.empty() ? std::vector<DeviceSpec>{}
                                                         : parse_device_list(o.devices));
      const Plan plan = make_plan(model->spec(), inv, po);
      // Stages on the CPU and simulated devices run on the CPU, stages on real GPUs there.
      const std::vector<StageOptions> stages = stages_from_plan(plan);
      if (transport != "auto" && transport != "none" && transport != "host" && transport != "nccl" &&
          transport != "peer") {
        throw Error(fmt::format("transport '{}' is not one of auto, none, host, nccl, peer", transport));
      }
      if (transport != "auto" && (transport == "none") != (stages.size() == 1)) {
        throw Error(fmt::format("transport {} with {} stage(s)", transport, stages.size()));
      }
      std::map<int, uint64_t> free_before;  // per CUDA device used
      for (const StageOptions& st : stages) {
        if (st.device.kind == DeviceKind::gpu && st.device.cuda_index >= 0 && !free_before.count(st.device.cuda_index)) {
          free_before[st.device.cuda_index] = cuda_device_info(st.device.cuda_index).free_bytes;
        }
      }
      ContextOptions co;
      co.transport = transport == "none" ? "auto" : transport;
      co.n_ctx = po.n_ctx;
      co.n_batch = o.n_batch;
      co.n_ubatch = o.n_ubatch;
      co.n_threads = o.n_threads;
      co.kv_type = *kv_type;
      co.stages = stages;
      co.load_progress = [&, last = -1](uint64_t done, uint64_t total) mutable {
        const int quarter = total > 0 ? static_cast<int>(4 * done / total) : 4;
        if (quarter == last) return;
        last = quarter;
        say(fmt::format("[{:.0f}s] {} split {}: uploading weights to the GPUs, {}%", seconds_since(bench_start),
                        base.model, split, 25 * quarter));
      };
      Context ctx(model, co);
      // A row names the transports that ran; one that was asked for by name must have run.
      const std::string used = ctx.transports();
      if ((transport == "nccl" || transport == "peer") && used.find(transport) == std::string::npos) {
        throw Error(fmt::format("transport {}: no boundary between two GPU stages here (they connect through "
                                "host memory: {})", transport, used));
      }
      for (BenchResult& r : rows) r.transport = used;
      // The draft, where a row asks for one: planned where the model's plan leaves room.
      std::optional<Context> draft;
      if (std::any_of(rows.begin(), rows.end(), [](const BenchResult& r) { return r.draft_max > 0; })) {
        if (o.draft_model.empty()) throw Error("a draft length without a draft model");
        const auto draft_model = Model::load(o.draft_model);
        check_draft_compatible(*model, *draft_model);
        PlanOptions dpo = po;
        dpo.split = parse_split("auto");
        const Plan draft_plan = make_plan(draft_model->spec(), inventory_after(inv, plan), dpo);
        ContextOptions dco = co;
        dco.stages = stages_from_plan(draft_plan);
        dco.transport = "auto";
        draft.emplace(draft_model, dco);
        draft->eval(token_ids(std::min<uint32_t>(8, po.n_ctx - 1), draft_model->n_vocab(), 1));
      }
      // Warm-up (pages, threads, caches): eight tokens, or as many as the context sized for the
      // rows holds.
      ctx.eval(token_ids(std::min<uint32_t>(8, po.n_ctx - 1), model->n_vocab(), 1));
      for (size_t row = 0; row < rows.size(); ++row) {
        BenchResult& r = rows[row];
        r.layers = layer_map(plan);
        r.load_s = load_s;
        const bool pp = r.test[0] == 'p';
        const uint32_t n = static_cast<uint32_t>(std::stoul(r.test.substr(2)));
        std::vector<double> tps;
        int64_t drafted = 0, accepted = 0;
        for (int rep = 0; rep < o.repetitions; ++rep) {
          say(fmt::format("[{:.0f}s] {} split {} {}{} depth {} rep {}/{}", seconds_since(bench_start), r.model, split,
                          r.test, r.draft_max > 0 ? fmt::format(" draft {}", r.draft_max) : "", r.depth, rep + 1,
                          o.repetitions));
          ctx.reset();
          // A draft row's tokens are in both vocabularies: both caches must hold the same ones.
          const int32_t n_vocab = r.draft_max > 0 ? std::min(model->n_vocab(), draft->model().n_vocab()) : model->n_vocab();
          if (r.depth > 0) ctx.eval(token_ids(r.depth, n_vocab, 2));
          const auto ids = token_ids(n, n_vocab, 3 + rep);
          if (r.draft_max > 0) {
            // Greedy generation of n tokens after the first (which comes with the prompt token).
            draft->reset();
            if (r.depth > 0) draft->eval(token_ids(r.depth, n_vocab, 2));
            SpeculativeGenerator spec(ctx, *draft, {.n_max = r.draft_max, .n_min = 0, .p_min = o.draft_p_min});
            SamplingParams greedy;
            greedy.greedy = true;
            auto t_first = Clock::now();
            const auto out = spec.generate(std::span<const int32_t>(ids.data(), 1), int(n) + 1, greedy, [&](int32_t) {
              if (spec.stats().target_steps == 0) t_first = Clock::now();
              return true;
            });
            tps.push_back(double(out.size() - 1) / seconds_since(t_first));
            drafted += spec.stats().drafted;
            accepted += spec.stats().accepted;
            continue;
          }
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
        r.acceptance = drafted > 0 ? double(accepted) / double(drafted) : 0.0;
        r.peak_bytes = peak_rss_bytes();
        std::vector<std::string> taken;
        for (const auto& [index, before] : free_before) {
          const uint64_t after = cuda_device_info(index).free_bytes;
          taken.push_back(fmt::format("cuda{} {}", index, format_gib(before > after ? before - after : 0)));
        }
        r.gpu_memory = fmt::format("{}", fmt::join(taken, "|"));
        if (!pp && r.draft_max == 0) {  // token i of the test attends depth + i + 1 positions
          bytes[row] = decode_bytes(model->spec(), plan, double(r.depth) + double(n + 1) / 2);
          for (const auto& [key, b] : bytes[row]) r.bytes_per_token += b;
          r.gb_per_s = double(r.bytes_per_token) * r.tokens_per_s / 1e9;
        }
      }
    } catch (const Error& e) {
      for (BenchResult& r : rows) r.error = e.what();
      say(fmt::format("{} split {} transport {} KV {}: {}", base.model, split, transport, kv_name, e.what()));
    }
    results.insert(results.end(), rows.begin(), rows.end());
    row_bytes.insert(row_bytes.end(), bytes.begin(), bytes.end());
  }
  // Rooflines last, so their buffers do not count in the rows' peak memory.
  std::map<std::string, double> bandwidth;
  for (size_t i = 0; i < results.size(); ++i) {
    double seconds = 0;  // per token at each device's bandwidth
    bool measured = !row_bytes[i].empty();
    for (const auto& [key, b] : row_bytes[i]) {
      if (!bandwidth.count(key)) {
        say(fmt::format("[{:.0f}s] measuring the memory bandwidth of {}", seconds_since(bench_start), key));
        try {
          bandwidth[key] = key == "cpu" ? host_read_bandwidth(o.n_threads) : cuda_copy_bandwidth(std::stoi(key.substr(4)));
        } catch (const Error& e) {
          say(fmt::format("{}: {}", key, e.what()));
          bandwidth[key] = 0;
        }
      }
      if (bandwidth[key] > 0) {
        seconds += double(b) / bandwidth[key];
      } else {
        measured = false;
      }
    }
    if (measured) results[i].roofline_fraction = results[i].tokens_per_s * seconds;
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
    j["cpu_isa"] = r.cpu_isa;
    j["threads"] = r.threads;
    j["transport"] = r.transport;
    j["kv_type"] = r.kv_type;
    j["layers"] = r.layers;
    j["test"] = r.test;
    j["depth"] = r.depth;
    j["draft"] = r.draft;
    j["draft_max"] = r.draft_max;
    j["acceptance"] = r.acceptance;
    j["repetitions"] = r.repetitions;
    j["tokens_per_s"] = r.tokens_per_s;
    j["stddev"] = r.stddev;
    j["load_s"] = r.load_s;
    j["peak_bytes"] = r.peak_bytes;
    j["gpu_memory"] = r.gpu_memory;
    j["bytes_per_token"] = r.bytes_per_token;
    j["gb_per_s"] = r.gb_per_s;
    j["roofline_fraction"] = r.roofline_fraction;
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
      out = "model,model_bytes,types,split,devices,cpu_isa,threads,transport,kv_type,layers,test,depth,draft,draft_max,"
            "acceptance,repetitions,tokens_per_s,stddev,load_s,peak_bytes,gpu_memory,bytes_per_token,gb_per_s,"
            "roofline_fraction,error\n";
      for (const auto& r : results) {
        out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.4f},{},{:.3f},{:.3f},{:.3f},{},{},{},{:.3f},{:.4f},{}\n",
                           quote(r.model), r.model_bytes, quote(r.types), quote(r.split), quote(r.devices), r.cpu_isa,
                           r.threads, quote(r.transport), r.kv_type, quote(r.layers), r.test, r.depth, quote(r.draft),
                           r.draft_max, r.acceptance, r.repetitions,
                           r.tokens_per_s, r.stddev, r.load_s, r.peak_bytes, quote(r.gpu_memory), r.bytes_per_token, r.gb_per_s,
                           r.roofline_fraction, quote(r.error));
      }
      return out;
    }
    case BenchFormat::markdown:
      out = "| model | size | split | devices | CPU | threads | transport | KV | layers | test | depth | draft | t/s | "
            "GB/s | roofline | load s | peak GiB | GPU memory |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
      for (const auto& r : results) {
        const std::string tps = r.error.empty() ? fmt::format("{:.2f} ± {:.2f}", r.tokens_per_s, r.stddev)
                                                : "cannot run: " + r.error;
        const std::string gbs = r.gb_per_s > 0 ? fmt::format("{:.2f}", r.gb_per_s) : "";
        const std::string roof = r.roofline_fraction > 0 ? fmt::format("{:.0f}%", 100 * r.roofline_fraction) : "";
        const std::string draft =
            r.draft_max > 0 ? fmt::format("{} x{} ({:.0f}% kept)", r.draft, r.draft_max, 100 * r.acceptance) : "";
        out += fmt::format("| {} | {:.2f} GiB | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2f} | {:.2f} | {} |\n",
                           r.model, double(r.model_bytes) / (1ull << 30), r.split, r.devices, r.cpu_isa, r.threads, r.transport,
                           r.kv_type,
                           r.layers,
                           r.test, r.depth, draft, tps, gbs, roof, r.load_s, double(r.peak_bytes) / (1ull << 30),
                           r.gpu_memory);
      }
      return out;
  }
  return out;
}

}  // namespace engine
