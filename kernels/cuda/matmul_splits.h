// How many ways the prompt matmul splits K when its grid would leave SMs idle. Plain C++ (the
// host tests check the choice on QwQ-32B's shapes).
//
// A product whose blocks come to a wave and a bit (QwQ-32B's attn_output and ffn_down at 512
// tokens: 160 blocks of 128 x 128 on 132 SMs) runs two waves, the second one mostly idle. Split
// in S parts along K, it has S times as many blocks, each 1/S as long: ceil(blocks S / slots) / S
// of the time, plus the partial sums' traffic (S x M x N floats written and read once by the
// reduction) and each block's pipeline fill, about 3% a split.
#pragma once

#include <cstdint>

namespace engine {

constexpr int kMatmulMaxSplits = 4;
// The least K a split keeps: 16 steps of 64 values, so its pipeline fill stays small.
constexpr int64_t kMatmulMinSplitValues = 1024;

// The split count (1 .. max_splits, at most kMatmulMaxSplits) with the least estimated time for
// `blocks` blocks on `slots` resident ones (SMs x blocks per SM), where K is `windows` windows of
// the weight loader: a split takes whole windows and at least kMatmulMinSplitValues values, and
// is taken only if it saves at least 5% of the unsplit estimate (a 13-wave grid's small tail is
// left alone).
inline int choose_matmul_splits(int64_t blocks, int64_t slots, int64_t windows, int64_t window_values,
                                int max_splits) {
  const auto cost = [&](int s) {
    const int64_t waves = (blocks * s + slots - 1) / slots;
    return double(waves) / s * (1.0 + 0.03 * (s - 1));
  };
  int best = 1;
  double best_cost = 0.95 * cost(1);
  for (int s = 2; s <= max_splits && s <= kMatmulMaxSplits; ++s) {
    if (windows % s != 0 || windows / s * window_values < kMatmulMinSplitValues) continue;
    if (cost(s) <= best_cost) {
      best = s;
      best_cost = cost(s);
    }
  }
  return best;
}

}  // namespace engine
