// Timing for the CPU benches: the best of a few runs after a warm-up.
#pragma once

#include <algorithm>
#include <chrono>

namespace bench {

// Seconds of the best of `reps` runs of fn (after one warm-up).
template <typename Fn>
double best_seconds(int reps, Fn&& fn) {
  fn();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace bench
