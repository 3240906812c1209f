// Helpers for tests that run whole models through the public API: a random synthetic model,
// relative error of logits, greedy decoding with its smallest decision margin.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "engine/synthetic_model.h"

namespace engine::test {

// The synthetic model `o` describes, with fresh random weights (o.seed is drawn); the file is
// removed at once, the mapping stays valid.
inline std::shared_ptr<const Model> random_model(SyntheticModelOptions o) {
  o.seed = std::random_device{}();
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("engine_test_" + std::to_string(::getpid()) + "_" + std::to_string(o.seed) + ".gguf"))
                               .string();
  write_synthetic_model(o, path);
  auto model = Model::load(path);
  std::filesystem::remove(path);
  return model;
}

// A small one: 256 wide, vocabulary 512, feed-forward n_ff wide.
inline std::shared_ptr<const Model> random_model(WeightMix mix, Arch arch, uint32_t n_layer, uint32_t n_ff = 512) {
  SyntheticModelOptions o;
  o.arch = arch;
  o.n_layer = n_layer;
  o.n_ff = n_ff;
  o.mix = mix;
  return random_model(o);
}

inline double rel(std::span<const float> a, std::span<const float> b) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    err += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    ref += double(b[i]) * b[i];
  }
  return std::sqrt(err / ref);
}

// Greedy decoding by hand; also the smallest gap between the best two logits over the steps, in
// units of the logits' standard deviation, so that a test can avoid prompts whose greedy path
// hinges on a near-tie that rounding may break either way.
inline std::pair<std::vector<int32_t>, double> greedy(Context& ctx, std::span<const int32_t> ids, int n) {
  std::vector<int32_t> out;
  double min_gap = 1e30;
  std::span<const float> logits = ctx.eval(ids);
  for (int i = 0; i < n; ++i) {
    std::vector<float> l(logits.begin(), logits.end());
    const auto best = std::max_element(l.begin(), l.end()) - l.begin();
    double mean = 0, var = 0;
    for (float v : l) mean += v;
    mean /= double(l.size());
    for (float v : l) var += (v - mean) * (v - mean);
    const float top = l[best];
    l[best] = -1e30f;
    const double gap = (top - *std::max_element(l.begin(), l.end())) / std::sqrt(var / double(l.size()));
    min_gap = std::min(min_gap, gap);
    out.push_back(static_cast<int32_t>(best));
    const int32_t t = out.back();
    logits = ctx.eval(std::span<const int32_t>(&t, 1));
  }
  return {out, min_gap};
}

// Draws prompts of ids.size() random ids (vocabulary 512) until ctx's greedy path over `steps`
// tokens has no decision closer than min_gap; leaves that prompt in ids and returns its tokens,
// or nothing after `draws` draws. Resets ctx before each draw.
// Random models have flat logits: over 64 steps a near-tie is common (an H200 run once drew 20
// prompts in a row with one), so the search draws up to this many.
constexpr int kTieFreeDraws = 200;

inline std::vector<int32_t> tie_free_greedy(Context& ctx, std::vector<int32_t>& ids, int steps, double min_gap,
                                            int draws = kTieFreeDraws) {
  std::mt19937 rng(std::random_device{}());
  for (int draw = 0; draw < draws; ++draw) {
    for (auto& t : ids) t = static_cast<int32_t>(rng() % 512);
    ctx.reset();
    auto [tokens, gap] = greedy(ctx, ids, steps);
    if (gap > min_gap) return tokens;
  }
  return {};
}

}  // namespace engine::test
