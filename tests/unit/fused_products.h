// What the fused-launch tests of the matvec and the matmul share: three matrices of one type, each
// product's output twice (for the fused launch and for separate launches), and the check that
// both launches wrote the same bits.
#pragma once

#if ENGINE_HAVE_CUDA
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "device_buffer.h"
#include "engine/ggml_type.h"
#include "kernels/cuda/matvec.h"
#include "random_blocks.h"

namespace engine::test {

struct FusedProducts {
  std::vector<DeviceBuffer> w, fused_y, separate_y;
  DeviceBuffer bias;
  ProductEpilogue eps[3];
  std::vector<MatvecOutput> fused;  // the fused launch's outputs
};

// Three random matrices of `type` (K wide, rows[s] rows, GPU layout) for `batch` input rows, with
// the epilogues the stage uses: a bias on the first, none on the second, the third accumulating.
// Outputs are NaN-poisoned, except the accumulating one, which starts from the same random
// values in both sets.
inline FusedProducts make_fused_products(GgmlType type, int64_t K, const int64_t (&rows)[3], int64_t batch,
                                         std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> bias(rows[0]), start(batch * rows[2]);
  for (auto* v : {&bias, &start}) {
    for (auto& f : *v) f = normal(rng);
  }
  FusedProducts f{{}, {}, {}, DeviceBuffer(bias), {}, {}};
  for (int s = 0; s < 3; ++s) {
    f.w.emplace_back(in_gpu_layout(type, K, rows[s], random_blocks(type, K * rows[s], rng)));
    std::vector<float> init(batch * rows[s], std::nanf(""));
    if (s == 2) init = start;
    f.fused_y.emplace_back(init);
    f.separate_y.emplace_back(init);
  }
  f.eps[0] = {f.bias.as<float>(), false};
  f.eps[1] = {};
  f.eps[2] = {nullptr, true};
  for (int s = 0; s < 3; ++s) f.fused.push_back({f.w[s].get(), rows[s], f.fused_y[s].as<float>(), f.eps[s]});
  return f;
}

// Every output of the fused launch finite and bit for bit what the separate launches wrote.
inline void expect_fused_matches_separate(const FusedProducts& f, GgmlType type, int64_t batch) {
  for (int s = 0; s < 3; ++s) {
    const auto fused = f.fused_y[s].to_host<float>(), separate = f.separate_y[s].to_host<float>();
    for (const float v : fused) ASSERT_TRUE(std::isfinite(v)) << traits(type).name << " matrix " << s;
    EXPECT_EQ(fused, separate) << traits(type).name << " batch " << batch << " matrix " << s;
  }
}

}  // namespace engine::test
#endif
