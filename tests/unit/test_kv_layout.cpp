// Where a GPU stage's layers keep their keys and values (kernels/cuda/kv_cache.h) against what the
// memory model counts: for f16 and q8_0 caches, every layer's code (or half) rows and scale rows
// tile the stage's K and V arrays exactly, without overlap or gap, and each lies aligned as the
// kernels load it. Host arithmetic only: runs in every build.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/memory_model.h"
#include "kernels/cuda/kv_cache.h"

namespace engine {
namespace {

TEST(KvLayout, LayersTileTheArraysTheMemoryModelCounts) {
  for (const KvType type : {KvType::f16, KvType::q8_0}) {
    for (const auto& [n_head_kv, head_dim, n_ctx, n_layers] :
         {std::tuple{8, 128, 4096, 5}, std::tuple{2, 64, 37, 3}, std::tuple{1, 96, 1, 1}}) {
      HyperParams hp;
      hp.n_head_kv = n_head_kv;
      hp.head_dim = head_dim;
      const int64_t kv_dim = hp.kv_dim();
      const uint64_t array = kv_bytes_per_layer(hp, type, n_ctx) / 2 * n_layers;  // K (or V) of the stage
      EXPECT_EQ(align_device(array), stage_kv_bytes(hp, type, n_ctx, n_layers) / 2);
      // Fake device addresses: the arrays start 256-byte aligned, as the arena carves them.
      auto* k = reinterpret_cast<uint8_t*>(uintptr_t(1) << 20);
      uint8_t* v = k + align_device(array);
      std::vector<std::pair<uint64_t, uint64_t>> k_spans, v_spans;  // [begin, end) offsets in each array
      const uint64_t values = uint64_t(n_ctx) * kv_dim;
      for (int64_t l = 0; l < n_layers; ++l) {
        const KvLayer layer = kv_layer(type, k, v, n_layers, n_ctx, kv_dim, l);
        ASSERT_EQ(layer.type, type);
        const uint64_t elem = type == KvType::f16 ? 2 : 1;
        const uint64_t kb = uint64_t(static_cast<uint8_t*>(layer.k) - k);
        const uint64_t vb = uint64_t(static_cast<uint8_t*>(layer.v) - v);
        EXPECT_EQ(kb, vb) << "K and V lie alike";
        k_spans.push_back({kb, kb + values * elem});
        v_spans.push_back({vb, vb + values * elem});
        EXPECT_EQ(kb % 32, 0u) << "a head's values start 32-byte aligned";
        if (type == KvType::q8_0) {
          const uint64_t ks = uint64_t(reinterpret_cast<uint8_t*>(layer.k_scale) - k);
          const uint64_t vs = uint64_t(reinterpret_cast<uint8_t*>(layer.v_scale) - v);
          EXPECT_EQ(ks, vs);
          EXPECT_EQ(ks % 2, 0u);
          k_spans.push_back({ks, ks + values / 32 * 2});
          v_spans.push_back({vs, vs + values / 32 * 2});
        } else {
          EXPECT_EQ(layer.k_scale, nullptr);
        }
      }
      for (auto* spans : {&k_spans, &v_spans}) {
        std::sort(spans->begin(), spans->end());
        uint64_t at = 0;
        for (const auto& [begin, end] : *spans) {
          EXPECT_EQ(begin, at) << kv_type_name(type) << ": a gap or an overlap at byte " << at;
          at = end;
        }
        EXPECT_EQ(at, array) << kv_type_name(type) << " " << n_head_kv << "x" << head_dim << " ctx " << n_ctx;
      }
    }
  }
}

TEST(KvLayout, GpuKeepsF16AndQ8CachesOnly) {
  EXPECT_TRUE(gpu_kv_supported(KvType::f16, 80));
  EXPECT_TRUE(gpu_kv_supported(KvType::q8_0, 128));
  EXPECT_FALSE(gpu_kv_supported(KvType::q8_0, 80));  // Q8_0 blocks of 32 values within a head
  EXPECT_FALSE(gpu_kv_supported(KvType::f32, 128));
}

}  // namespace
}  // namespace engine
