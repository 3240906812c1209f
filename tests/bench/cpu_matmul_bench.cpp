// The CPU matmul (kernels/cpu/ops.h) per weight type on a TinyLlama-1.1B layer's shapes: GFLOP/s
// at a prompt batch (compute-bound tiles and panels) and GB/s of weights at batch 1 (a memory-bound
// pass: it cycles through copies of the matrix, 256 MiB in all, so the weights come from memory
// as a model's do, not from the cache), best of a few runs; a table, or JSON lines with --json.
// Weights are random valid blocks (every type, also those engine-mkmodel cannot write).
//   cpu-matmul-bench [--json] [--threads N] [--batch B] [--types q8_0,f16,...]
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/ggml_type.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant_dot.h"
#include "tests/bench/best_seconds.h"
#include "tests/unit/random_blocks.h"

namespace {

struct Shape {
  const char* name;
  int64_t k, n;  // n rows of k values
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("CPU matmul per weight type: GFLOP/s at a prompt batch, GB/s at batch 1");
  bool json = false;
  int threads = 0, batch = 128, reps = 3;
  std::string types = "f32,f16,bf16,q8_0,q4_0,q4_1,q5_0,q5_1,q4_k,q5_k,q6_k";
  app.add_flag("--json", json, "JSON lines instead of a table");
  app.add_option("--threads,-t", threads, "threads (default: one per physical core)");
  app.add_option("--batch,-b", batch, "activation rows of the prompt run")->check(CLI::Range(2, 4096));
  app.add_option("--reps,-r", reps, "timed runs (best is reported)")->check(CLI::Range(1, 100));
  app.add_option("--types", types, "weight types, comma-separated");
  CLI11_PARSE(app, argc, argv);

  engine::ThreadPool pool(threads);
  const Shape shapes[] = {{"attn_q 2048x2048", 2048, 2048}, {"ffn_up 2048x5632", 2048, 5632},
                          {"ffn_down 5632x2048", 5632, 2048}};
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  if (!json) {
    fmt::print("CPU matmul, {} threads, ISA {}; prompt batch {}, best of {}\n\n", pool.size(),
               engine::dot_kernels().isa, batch, reps);
    fmt::print("| type | matrix | batch {} GFLOP/s | batch 1 GB/s |\n|---|---|---|---|\n", batch);
  }
  for (size_t at = 0; at < types.size();) {
    const size_t comma = std::min(types.find(',', at), types.size());
    const std::string name = types.substr(at, comma - at);
    at = comma + 1;
    const auto type = engine::parse_type_name(name);
    if (!type) {
      fmt::print(stderr, "cpu-matmul-bench: --types: '{}' is not a GGUF type name\n", name);
      return 2;
    }
    for (const Shape& s : shapes) {
      std::vector<float> x(size_t(s.k * batch)), y(size_t(s.n * batch));
      for (auto& v : x) v = normal(rng);
      const std::vector<uint8_t> w = engine::test::random_blocks(*type, s.k * s.n, rng);
      std::vector<std::vector<uint8_t>> copies(std::max<size_t>(1, (size_t(256) << 20) / w.size()), w);
      const double prompt = bench::best_seconds(reps, [&] {
        engine::matmul(*type, w.data(), s.k, s.n, x.data(), batch, y.data(), pool);
      });
      size_t next = 0;  // each decode run reads a copy the previous runs have not brought into the cache
      const double decode = bench::best_seconds(std::max<int>(reps, int(copies.size()) - 1), [&] {
        engine::matmul(*type, copies[next++ % copies.size()].data(), s.k, s.n, x.data(), 1, y.data(), pool);
      });
      const double gflops = 2.0 * double(s.k) * double(s.n) * batch / prompt / 1e9;
      const double gbps = double(w.size()) / decode / 1e9;
      if (json) {
        std::puts(nlohmann::json{{"type", name}, {"matrix", s.name}, {"threads", pool.size()}, {"batch", batch},
                                 {"prompt_gflops", gflops}, {"decode_gb_per_s", gbps}}
                      .dump()
                      .c_str());
      } else {
        fmt::print("| {} | {} | {:.1f} | {:.2f} |\n", name, s.name, gflops, gbps);
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
