// Test helper for tests/python: the sampler's distribution for rows given as JSON lines on stdin,
//   {"temperature": T, "top_k": K, "top_p": P, "min_p": M, "repeat_penalty": R, "repeat_last_n": N,
//    "logits": [...] (null for -infinity), "history": [...]}
// one JSON line out per row: {"ids": [...], "p": [...]} (Sampler::distribution, in id order).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/sampling.h"

int main() {
  std::string line;
  try {
    while (std::getline(std::cin, line)) {
      if (line.empty()) continue;
      const auto row = nlohmann::json::parse(line);
      engine::SamplingParams p;
      p.temperature = row.value("temperature", p.temperature);
      p.top_k = row.value("top_k", p.top_k);
      p.top_p = row.value("top_p", p.top_p);
      p.min_p = row.value("min_p", p.min_p);
      p.repeat_penalty = row.value("repeat_penalty", p.repeat_penalty);
      p.repeat_last_n = row.value("repeat_last_n", p.repeat_last_n);
      std::vector<float> logits;
      for (const auto& v : row.at("logits")) {
        logits.push_back(v.is_null() ? -std::numeric_limits<float>::infinity() : v.get<float>());
      }
      const auto history = row.value("history", std::vector<int32_t>{});
      engine::Sampler sampler(p, static_cast<int32_t>(logits.size()));
      nlohmann::json out{{"ids", nlohmann::json::array()}, {"p", nlohmann::json::array()}};
      for (const auto& t : sampler.distribution(logits, history)) {
        out["ids"].push_back(t.id);
        out["p"].push_back(t.p);
      }
      std::cout << out.dump() << "\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "engine-sampler-tool: %s\n", e.what());
    return 1;
  }
  return 0;
}
