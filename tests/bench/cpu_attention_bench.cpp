// The CPU attention (kernels/cpu/attention.h) on a model's head layout: a decode step at a depth
// (GB/s of the keys and values it reads: a memory-bound pass) and a prompt batch after a depth
// (GFLOP/s: the score and value products, 4 * head_dim flops a query head and position seen).
// The cache cycles through copies of a layer's keys and values, 256 MiB in all, so that a decode
// step reads them from memory as a model's layers do (`--copies 1`: from the caches, the
// kernel's own rate); best of a few runs, a table or JSON lines.
//   cpu-attention-bench [--json] [--threads N] [--depths 512,2048,8192] [--kv-type f16|q8_0]
//                       [--kv-layout stage|blocked|heads|positions] [--copies N]
#include <algorithm>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/ggml_type.h"
#include "engine/quantize.h"
#include "kernels/cpu/attention.h"
#include "tests/bench/best_seconds.h"

namespace {

struct Layout {
  const char* name;
  int64_t n_head, n_head_kv, head_dim;
};

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("CPU attention: a decode step's GB/s and a prompt batch's GFLOP/s at a depth");
  bool json = false;
  int threads = 0, reps = 3;
  int64_t prompt = 512;
  std::string depths_text = "512,2048,8192", kv_name = "f16";
  app.add_flag("--json", json, "JSON lines instead of a table");
  app.add_option("--threads,-t", threads, "threads (default: one per physical core)");
  app.add_option("--reps,-r", reps, "timed runs (best is reported)")->check(CLI::Range(1, 100));
  app.add_option("--depths", depths_text, "cached positions before the step, comma-separated");
  app.add_option("--prompt,-p", prompt, "tokens of the prompt batch (0: decode only)")->check(CLI::Range(0, 8192));
  app.add_option("--kv-type", kv_name, "cache type: f16, q8_0 or f32");
  std::string kv_layout = "stage";
  app.add_option("--kv-layout", kv_layout,
                 "stage: the CPU stage's, blocked; blocked: heads, with the keys in blocks of 16 positions, "
                 "dimension-major; heads: each KV head's positions contiguous; positions: a position's heads "
                 "side by side");
  int copies_wanted = 0;
  app.add_option("--copies", copies_wanted, "copies of the cache cycled through (default: 256 MiB of them)")
      ->check(CLI::Range(1, 64));
  CLI11_PARSE(app, argc, argv);
  const auto kv_type = engine::parse_type_name(kv_name);
  if (!kv_type) {
    std::fprintf(stderr, "cpu-attention-bench: --kv-type %s is not a type name\n", kv_name.c_str());
    return 2;
  }
  if (kv_layout == "stage") kv_layout = "blocked";
  if (kv_layout != "blocked" && kv_layout != "heads" && kv_layout != "positions") {
    std::fprintf(stderr, "cpu-attention-bench: --kv-layout %s is not stage, blocked, heads or positions\n",
                 kv_layout.c_str());
    return 2;
  }
  const bool head_major = kv_layout != "positions", blocked = kv_layout == "blocked";
  std::vector<int64_t> depths;
  try {
    depths = parse_list(depths_text);
  } catch (const std::exception&) {
    std::fprintf(stderr, "cpu-attention-bench: --depths %s is not a list of numbers\n", depths_text.c_str());
    return 2;
  }

  engine::ThreadPool pool(threads);
  const Layout layouts[] = {{"TinyLlama 32/4 x 64", 32, 4, 64}, {"QwQ-32B 40/8 x 128", 40, 8, 128}};
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  if (!json) {
    std::printf("%-20s %-6s %6s %7s %10s %8s %10s\n", "layout", "test", "depth", "tokens", "us", "GB/s", "GFLOP/s");
  }
  for (const Layout& lay : layouts) {
    const int64_t kv_dim = lay.n_head_kv * lay.head_dim;
    const uint64_t row_bytes = engine::type_bytes(*kv_type, uint64_t(kv_dim));
    const uint64_t head_bytes = engine::type_bytes(*kv_type, uint64_t(lay.head_dim));
    for (const int64_t depth : depths) {
      for (const int64_t n_tokens : {int64_t(1), prompt}) {
        if (n_tokens == 0) continue;
        const int64_t positions = depth + n_tokens;
        // Blocked keys take whole blocks of positions (so do the values here, for one stride).
        const int64_t stride = blocked ? engine::attention_key_block_positions(positions) : positions;
        const uint64_t layer_bytes = 2 * row_bytes * uint64_t(stride);
        const int copies =
            copies_wanted ? copies_wanted : int(std::clamp<uint64_t>((256ull << 20) / layer_bytes, 1, 64));
        // Keys and values of every copy: random rows in the cache's type.
        std::vector<uint8_t> cache(layer_bytes * copies);
        std::vector<float> row(kv_dim);
        for (uint64_t at = 0; at < cache.size(); at += row_bytes) {
          for (auto& v : row) v = normal(rng);
          engine::quantize_row(*kv_type, row.data(), cache.data() + at, kv_dim);
        }
        const int64_t q_stride = lay.n_head * lay.head_dim;
        std::vector<float> q(n_tokens * q_stride), out(n_tokens * q_stride);
        for (auto& v : q) v = normal(rng);
        int copy = 0;
        const double s = bench::best_seconds(reps, [&] {
          // Each run a different copy (a decode step through the model's layers).
          for (int c = 0; c < copies; ++c, copy = (copy + 1) % copies) {
            engine::AttentionBatch b;
            b.q = q.data();
            b.out = out.data();
            b.q_stride = q_stride;
            b.n_tokens = n_tokens;
            b.pos = depth;
            b.n_head = lay.n_head;
            b.n_head_kv = lay.n_head_kv;
            b.head_dim = lay.head_dim;
            b.scale = 0.125f;
            b.k_cache = cache.data() + uint64_t(copy) * layer_bytes;
            b.v_cache = b.k_cache + row_bytes * uint64_t(stride);
            b.row_bytes = head_major ? head_bytes : row_bytes;
            b.head_stride = head_major ? head_bytes * uint64_t(stride) : head_bytes;
            b.kv_type = *kv_type;
            b.keys_blocked = blocked;
            engine::attention(b, pool);
          }
        }) / copies;
        // Positions seen: token i of the batch sees depth + i + 1.
        const double seen = double(n_tokens) * double(depth) + double(n_tokens) * double(n_tokens + 1) / 2;
        const double flops = 4.0 * double(lay.head_dim) * double(lay.n_head) * seen;
        const double gbs = double(2 * row_bytes * uint64_t(positions)) / s / 1e9;  // the bytes a step reads
        const char* test = n_tokens == 1 ? "decode" : "prompt";
        if (json) {
          std::printf("%s\n", nlohmann::json{{"layout", lay.name}, {"test", test}, {"depth", depth},
                                             {"tokens", n_tokens}, {"kv_type", kv_name}, {"kv_layout", kv_layout},
                                             {"threads", pool.size()},
                                             {"us", s * 1e6}, {"kv_gb_per_s", gbs}, {"gflop_per_s", flops / s / 1e9}}
                                  .dump()
                                  .c_str());
        } else {
          // (A prompt reads its keys and values once for many queries: its GB/s says nothing.)
          const std::string gb = n_tokens == 1 ? fmt::format("{:.2f}", gbs) : "-";
          std::printf("%-20s %-6s %6lld %7lld %10.1f %8s %10.2f\n", lay.name, test, (long long)depth,
                      (long long)n_tokens, s * 1e6, gb.c_str(), flops / s / 1e9);
        }
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
