// CPU flash attention (kernels/cpu/attention.h) against the double-precision reference, from the
// values the cache holds, for every kernel set this CPU runs, every cache type, GQA groups below,
// at and above a tile's lanes, head sizes that are and are not a multiple of a vector, prompts and
// decode steps (split along the positions and merged), caches position-major, head-major and
// head-major with keys in blocks, on fresh random data, outputs poisoned with NaN first.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "attention_reference.h"
#include "engine/quantize.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/quant_dot.h"
#include "kernel_sets.h"
#include "test_support.h"

namespace engine {
namespace {

using test::every_kernel_set;

struct Shape {
  int n_head, n_head_kv, hd;
};

// Where the cache keeps a head's position: [t][kv_dim], [kv head][t][head_dim], or that with the
// keys in blocks of kAttnKeyBlock positions, dimension-major (AttentionBatch::keys_blocked).
enum class Layout { positions, heads, heads_blocked_keys };

const char* layout_name(Layout l) {
  return l == Layout::positions ? "position-major" : l == Layout::heads ? "head-major" : "head-major, keys blocked";
}

struct Cache {
  std::vector<uint8_t> k, v;  // in the cache type, as the layout says
  std::vector<float> k_held, v_held;  // the values those bytes hold, [t][kv_dim]
  uint64_t row_bytes = 0, head_stride = 0;  // as AttentionBatch's
};

// Positions of keys and values drawn around `spread` (larger: sharper softmax rows), stored in
// `type` in the given layout. `drift` adds t * drift to every key, so scores grow along the
// positions and the running maximum changes block after block.
Cache random_cache(GgmlType type, Layout layout, int64_t positions, int64_t n_head_kv, int64_t hd, float spread,
                   float drift, std::mt19937& rng) {
  const int64_t kv_dim = n_head_kv * hd;
  std::normal_distribution<float> normal(0.0f, spread);
  Cache c;
  c.row_bytes = type_bytes(type, uint64_t(kv_dim));
  c.k.resize(positions * c.row_bytes);
  c.v.resize(c.k.size());
  c.k_held.resize(positions * kv_dim);
  c.v_held.resize(c.k_held.size());
  std::vector<float> row(kv_dim);
  for (int64_t t = 0; t < positions; ++t) {
    for (auto& x : row) x = normal(rng) + float(t) * drift;
    quantize_row(type, row.data(), c.k.data() + t * c.row_bytes, kv_dim);
    for (auto& x : row) x = normal(rng);
    quantize_row(type, row.data(), c.v.data() + t * c.row_bytes, kv_dim);
    dequantize_row(type, c.k.data() + t * c.row_bytes, c.k_held.data() + t * kv_dim, kv_dim);
    dequantize_row(type, c.v.data() + t * c.row_bytes, c.v_held.data() + t * kv_dim, kv_dim);
  }
  const uint64_t head_bytes = type_bytes(type, uint64_t(hd));
  c.head_stride = head_bytes;
  if (layout != Layout::positions) {  // the same rows, regrouped by head (in whole key blocks)
    const int64_t stride = layout == Layout::heads ? positions : attention_key_block_positions(positions);
    auto regroup = [&](const std::vector<uint8_t>& rows) {
      std::vector<uint8_t> heads(uint64_t(n_head_kv * stride) * head_bytes);
      for (int64_t t = 0; t < positions; ++t) {
        for (int64_t h = 0; h < n_head_kv; ++h) {
          std::memcpy(heads.data() + (h * stride + t) * head_bytes, rows.data() + t * c.row_bytes + h * head_bytes,
                      head_bytes);
        }
      }
      return heads;
    };
    // Within a head, f32 and f16: dim d of the key at t to (t / B) * B * hd + d * B + t % B, value
    // by value. q8_0: in block t / B, group g of 32 dims (B * 34 bytes): the scale to 2 * (t % B),
    // the code of dim d to 2 * B + (d % 32) * B + t % B.
    auto block_keys = [&](const std::vector<uint8_t>& heads) {
      constexpr int64_t B = kAttnKeyBlock;
      std::vector<uint8_t> blocked(heads.size());
      for (int64_t h = 0; h < n_head_kv; ++h) {
        for (int64_t t = 0; t < positions; ++t) {
          const uint8_t* key = heads.data() + (h * stride + t) * head_bytes;
          uint8_t* block = blocked.data() + (h * stride + t / B * B) * head_bytes;
          if (type == GgmlType::Q8_0) {
            for (int64_t g = 0; g < hd / 32; ++g) {
              uint8_t* group = block + g * B * 34;
              std::memcpy(group + 2 * (t % B), key + g * 34, 2);
              for (int64_t d = 0; d < 32; ++d) group[2 * B + d * B + t % B] = key[g * 34 + 2 + d];
            }
          } else {
            const uint64_t bytes = head_bytes / uint64_t(hd);  // a value's
            for (int64_t d = 0; d < hd; ++d) std::memcpy(block + (d * B + t % B) * bytes, key + d * bytes, bytes);
          }
        }
      }
      return blocked;
    };
    c.k = regroup(c.k);
    c.v = regroup(c.v);
    if (layout == Layout::heads_blocked_keys) c.k = block_keys(c.k);
    c.row_bytes = head_bytes;
    c.head_stride = head_bytes * uint64_t(stride);
  }
  return c;
}

// ||out - want|| / ||want||; every output must be finite (it was NaN before the call).
double rel_error(const std::vector<float>& out, const std::vector<double>& want) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) {
      ADD_FAILURE() << "element " << i << " is " << out[i];
      return INFINITY;
    }
    err += (out[i] - want[i]) * (out[i] - want[i]);
    norm += want[i] * want[i];
  }
  return std::sqrt(err / norm);
}

// Runs `n` query tokens at positions pos .. pos + n - 1 and returns the relative error.
double run_case(const DotKernels& kern, ThreadPool& pool, GgmlType type, Layout layout, Shape s, int64_t pos,
                int64_t n, float spread, float drift, std::mt19937& rng) {
  const int64_t q_dim = int64_t(s.n_head) * s.hd;
  const Cache cache = random_cache(type, layout, pos + n, s.n_head_kv, s.hd, spread, drift, rng);
  std::normal_distribution<float> normal;
  std::vector<float> q(n * q_dim), out(q.size(), NAN);
  for (auto& x : q) x = normal(rng);
  AttentionBatch b;
  b.q = q.data();
  b.out = out.data();
  b.q_stride = q_dim;
  b.n_tokens = n;
  b.pos = pos;
  b.n_head = s.n_head;
  b.n_head_kv = s.n_head_kv;
  b.head_dim = s.hd;
  b.scale = 1.0f / std::sqrt(float(s.hd));
  b.k_cache = cache.k.data();
  b.v_cache = cache.v.data();
  b.row_bytes = cache.row_bytes;
  b.head_stride = cache.head_stride;
  b.kv_type = type;
  b.keys_blocked = layout == Layout::heads_blocked_keys;
  attention(b, pool, kern);
  const auto want =
      test::attention_reference(q, cache.k_held, cache.v_held, pos, n, s.n_head, s.n_head_kv, s.hd, b.scale);
  return rel_error(out, want);
}

// f32 sums of up to ~1000 terms and an exponential within 2 ulp: measured up to 7e-7 here.
constexpr double kBound = 3e-6;
// A float score s carries a rounding of |s| * 2^-24, and so does its weight e^s: with scores in
// the hundreds (below) that is 1e-5 of a weight. Measured up to 3.4e-6.
constexpr double kSharpBound = 2e-5;

TEST(CpuAttention, EveryKernelSetCacheTypeAndShapeAgainstDoubleReference) {
  std::mt19937 rng(std::random_device{}());
  ThreadPool pool(3);
  // MHA; QwQ's 40/8 (groups of 5); llama's 32/4 (8); a group of 20, more than a tile's lanes;
  // head sizes 64, 128, 80 (not a multiple of 32: no q8_0 there) and 72 (not a multiple of 16:
  // AVX-512 takes a decode step's few rows as lanes of rows, the other sets as keys and dims).
  const Shape shapes[] = {{4, 4, 64}, {10, 2, 128}, {16, 2, 64}, {20, 1, 80}, {6, 3, 72}};
  // (pos, n): a first decode step, decode deep enough to split along the positions, a prompt, a
  // prompt after a prefix whose token count fits no tile evenly, a short turn at a depth.
  const std::pair<int64_t, int64_t> batches[] = {{0, 1}, {900, 1}, {0, 9}, {45, 37}, {600, 3}};
  for (const DotKernels* kern : every_kernel_set()) {
    for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0}) {
      for (const Shape& s : shapes) {
        if (type == GgmlType::Q8_0 && s.hd % 32 != 0) continue;
        for (auto [pos, n] : batches) {
          for (Layout layout : {Layout::positions, Layout::heads, Layout::heads_blocked_keys}) {
            const double err = run_case(*kern, pool, type, layout, s, pos, n, 1.0f, 0.0f, rng);
            EXPECT_LT(err, kBound) << fmt::format("{} {} {} heads {}/{} hd {} pos {} n {}", kern->isa,
                                                  type_id_name(uint32_t(type)), layout_name(layout), s.n_head,
                                                  s.n_head_kv, s.hd, pos, n);
          }
        }
      }
    }
  }
}

// Sharp rows (scores spread over hundreds, most weights underflowing to 0) and keys that grow
// along the positions (the running maximum rises in every block, so the partial sums are
// rescaled again and again), on one thread and on several.
TEST(CpuAttention, SharpRowsAndRisingMaximaAgainstDoubleReference) {
  std::mt19937 rng(std::random_device{}());
  for (int threads : {1, 4}) {
    ThreadPool pool(threads);
    for (const DotKernels* kern : every_kernel_set()) {
      for (auto [spread, drift] : {std::pair{12.0f, 0.0f}, std::pair{1.0f, 0.02f}}) {
        for (auto [pos, n] : {std::pair<int64_t, int64_t>{700, 1}, {100, 20}}) {
          for (Layout layout : {Layout::heads, Layout::heads_blocked_keys}) {
            const double err = run_case(*kern, pool, GgmlType::F16, layout, {8, 2, 64}, pos, n, spread, drift, rng);
            EXPECT_LT(err, kSharpBound) << fmt::format("{} threads {} spread {} drift {} pos {} n {} {}", kern->isa,
                                                       threads, spread, drift, pos, n, layout_name(layout));
          }
        }
      }
    }
  }
}

TEST(CpuAttention, UnsupportedCacheTypeIsAnError) {
  ThreadPool pool(1);
  AttentionBatch b;
  b.n_tokens = 1;
  b.kv_type = GgmlType::Q4_0;
  test::expect_error([&] { attention(b, pool); }, {"attention", "Q4_0", "not supported"});
  std::vector<uint8_t> head(kAttnKeyBlock * 34);
  const float key[32] = {};
  test::expect_error([&] { store_key_blocked(GgmlType::Q4_0, key, 32, head.data(), 0); },
                     {"store_key_blocked", "Q4_0"});
}

// store_key_blocked puts each key where the layout says (the test's own regrouping above): the
// bytes of every written position's values (q8_0: its scales and codes) match.
TEST(CpuAttention, StoreKeyBlockedWritesTheBlockedLayout) {
  std::mt19937 rng(std::random_device{}());
  constexpr int64_t B = kAttnKeyBlock;
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0}) {
    const int64_t positions = 45, hd = 64;  // a partial last block
    const Cache want = random_cache(type, Layout::heads_blocked_keys, positions, 1, hd, 1.0f, 0.0f, rng);
    std::vector<uint8_t> got(want.k.size(), 0xa5);
    for (int64_t t = 0; t < positions; ++t) store_key_blocked(type, want.k_held.data() + t * hd, hd, got.data(), t);
    // Only the written positions' bytes: the rest of the last block is free.
    std::vector<uint64_t> at;  // byte offsets of position t's values (q8_0: 2 scale bytes a group, then codes)
    for (int64_t t = 0; t < positions; ++t) {
      at.clear();
      const uint64_t block = uint64_t(t / B * B) * want.row_bytes;
      if (type == GgmlType::Q8_0) {
        for (int64_t g = 0; g < hd / 32; ++g) {
          const uint64_t group = block + uint64_t(g * B * 34);
          at.push_back(group + 2 * uint64_t(t % B));
          at.push_back(group + 2 * uint64_t(t % B) + 1);
          for (int64_t d = 0; d < 32; ++d) at.push_back(group + uint64_t(2 * B + d * B + t % B));
        }
      } else {
        const uint64_t value = want.row_bytes / uint64_t(hd);
        for (int64_t d = 0; d < hd; ++d) {
          for (uint64_t i = 0; i < value; ++i) at.push_back(block + uint64_t(d * B + t % B) * value + i);
        }
      }
      for (uint64_t i : at) {
        ASSERT_EQ(got[i], want.k[i]) << type_id_name(uint32_t(type)) << " position " << t << " byte " << i;
      }
    }
  }
}

}  // namespace
}  // namespace engine
