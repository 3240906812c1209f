// Turns a run-time row or column count into the template argument of a register-blocked kernel:
// with_count<kMax>(n, f) calls f.template operator()<C>() with C = n for 1 <= n < kMax and
// C = kMax otherwise. Internal linkage, no library code: usable from the per-instruction-set
// translation units and from CUDA host code alike.
#pragma once

namespace engine {
namespace {

template <int kMax, int C = 1, typename F>
inline void with_count(int n, F&& f) {
  if constexpr (C == kMax) {
    f.template operator()<C>();
  } else if (n <= C) {
    f.template operator()<C>();
  } else {
    with_count<kMax, C + 1>(n, f);
  }
}

}  // namespace
}  // namespace engine
