// Host time of one Sampler::sample call on a row of random logits (what a GPU decode step adds
// when it samples on the host), for real vocabulary sizes and common settings; a table, or JSON
// lines with --json.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/sampling.h"

int main(int argc, char** argv) {
  const bool json = argc > 1 && std::strcmp(argv[1], "--json") == 0;
  struct Setting {
    const char* name;
    engine::SamplingParams p;
  };
  std::vector<Setting> settings;
  settings.push_back({"defaults (top-k 40, top-p 0.95, min-p 0.05, temp 0.8)", {}});
  engine::SamplingParams penalty;
  penalty.repeat_penalty = 1.1f;
  settings.push_back({"defaults + repeat penalty 1.1 over 64", penalty});
  engine::SamplingParams greedy;
  greedy.greedy = true;
  greedy.repeat_penalty = 1.1f;
  settings.push_back({"greedy + repeat penalty 1.1 over 64", greedy});
  engine::SamplingParams no_top_k;
  no_top_k.top_k = 0;
  settings.push_back({"top-k off (top-p 0.95, min-p 0.05)", no_top_k});
  engine::SamplingParams temp_only;
  temp_only.top_k = 0;
  temp_only.top_p = 1.0f;
  temp_only.min_p = 0.0f;
  settings.push_back({"temperature only", temp_only});
  if (!json) {
    fmt::print("| vocabulary | setting | us per token |\n|---|---|---|\n");
  }
  std::mt19937 rng(7);
  for (const int32_t n_vocab : {32000, 128256, 152064}) {
    // Logits shaped like a model's: most of the mass on a few tokens, a long tail.
    std::vector<std::vector<float>> rows(8, std::vector<float>(size_t(n_vocab)));
    for (auto& row : rows) {
      for (auto& v : row) v = std::normal_distribution<float>(0.0f, 2.0f)(rng);
      for (int i = 0; i < 5; ++i) row[rng() % row.size()] = 14.0f + float(i);
    }
    std::vector<int32_t> history(64);
    for (auto& t : history) t = int32_t(rng() % uint32_t(n_vocab));
    for (const Setting& s : settings) {
      engine::Sampler sampler(s.p, n_vocab);
      for (int i = 0; i < 8; ++i) sampler.sample(rows[size_t(i)], history);  // warm-up
      const int reps = 200;
      int64_t checksum = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) checksum += sampler.sample(rows[size_t(i % 8)], history);
      const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
      if (json) {
        std::puts(nlohmann::json{{"vocab", n_vocab}, {"setting", s.name}, {"us_per_token", us}, {"checksum", checksum}}
                      .dump()
                      .c_str());
      } else {
        fmt::print("| {} | {} | {:.1f} |\n", n_vocab, s.name, us);
      }
    }
  }
  return 0;
}
