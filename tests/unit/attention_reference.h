// Attention in double precision from the keys and values a cache holds: the reference for the
// CPU and GPU attention kernels. q, k and v are row-major: q[b][h][d] for the n_queries tokens,
// k and v [t][kv head][d] for every position t.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace engine::test {

// out[b][h] for query b over keys 0 .. pos0 + b, in double, from the values the cache holds: the
// reference for every kernel.
inline std::vector<double> attention_reference(const std::vector<float>& q, const std::vector<float>& k,
                                        const std::vector<float>& v, int64_t pos0, int64_t n_queries, int n_head,
                                        int n_head_kv, int hd, float scale) {
  const int group = n_head / n_head_kv;
  std::vector<double> want(n_queries * n_head * hd, 0.0);
  for (int64_t b = 0; b < n_queries; ++b) {
    const int64_t n_keys = pos0 + b + 1;
    for (int h = 0; h < n_head; ++h) {
      const int kvh = h / group;
      const float* qh = q.data() + (b * n_head + h) * hd;
      std::vector<double> s(n_keys);
      double m = -INFINITY, l = 0;
      for (int64_t t = 0; t < n_keys; ++t) {
        double dot = 0;
        for (int d = 0; d < hd; ++d) dot += double(qh[d]) * k[(t * n_head_kv + kvh) * hd + d];
        s[t] = dot * scale;
        m = std::max(m, s[t]);
      }
      for (int64_t t = 0; t < n_keys; ++t) l += std::exp(s[t] - m);
      double* o = want.data() + (b * n_head + h) * hd;
      for (int64_t t = 0; t < n_keys; ++t) {
        const double p = std::exp(s[t] - m) / l;
        for (int d = 0; d < hd; ++d) o[d] += p * v[(t * n_head_kv + kvh) * hd + d];
      }
    }
  }
  return want;
}

}  // namespace engine::test
