// The layout GPU stages upload weights in (engine/gpu_layout.h): every type but Q6_K as in the
// file; Q6_K rows as the blocks' 208-byte records, then the d values, then zeros up to 16 bytes,
// checked byte by byte against the GGUF blocks; and the memory model counts what the stage
// uploads. Runs everywhere (no GPU needed).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "engine/gpu_layout.h"
#include "engine/memory_model.h"
#include "kernels/cpu/quant_blocks.h"
#include "random_blocks.h"

namespace engine {
namespace {

TEST(GpuLayout, EveryTypeButQ6KIsTheFileLayout) {
  std::mt19937 rng(std::random_device{}());
  for (const TypeTraits& tr : all_type_traits()) {
    if (tr.type == GgmlType::Q6_K) continue;
    const int64_t K = 2 * 256, rows = 3;
    EXPECT_FALSE(gpu_layout_differs(tr.type)) << tr.name;
    EXPECT_EQ(gpu_row_bytes(tr.type, K), type_bytes(tr.type, K)) << tr.name;
    const auto w = test::random_blocks(tr.type, K * rows, rng);
    EXPECT_EQ(test::in_gpu_layout(tr.type, K, rows, w), w) << tr.name;
  }
}

TEST(GpuLayout, Q6KRowsAreRecordsThenScalesThenPadding) {
  std::mt19937 rng(std::random_device{}());
  EXPECT_TRUE(gpu_layout_differs(GgmlType::Q6_K));
  for (const int64_t nb : {1, 2, 20, 108}) {  // 5120 and 27648 wide: QwQ-32B's attn_v and ffn_down
    const int64_t K = 256 * nb, rows = 3;
    const uint64_t row = gpu_row_bytes(GgmlType::Q6_K, K);
    EXPECT_EQ(row % 16, 0u) << nb;
    EXPECT_GE(row, uint64_t(nb) * 210) << nb;
    EXPECT_LT(row, uint64_t(nb) * 210 + 16) << nb;
    const auto w = test::random_blocks(GgmlType::Q6_K, K * rows, rng);
    auto out = std::vector<uint8_t>(row * rows, 0xAB);
    to_gpu_layout(GgmlType::Q6_K, K, rows, w.data(), out.data());
    for (int64_t r = 0; r < rows; ++r) {
      const auto* blocks = reinterpret_cast<const BlockQ6_K*>(w.data() + r * nb * 210);
      const uint8_t* g = out.data() + r * row;
      for (int64_t i = 0; i < nb; ++i) {
        EXPECT_EQ(std::memcmp(g + i * kGpuQ6KRecordBytes, &blocks[i], kGpuQ6KRecordBytes), 0) << r << " " << i;
        uint16_t d = 0;
        std::memcpy(&d, g + nb * kGpuQ6KRecordBytes + 2 * i, 2);
        EXPECT_EQ(d, blocks[i].d) << r << " " << i;
      }
      for (uint64_t b = uint64_t(nb) * 210; b < row; ++b) EXPECT_EQ(g[b], 0) << "padding byte " << b;
    }
  }
}

TEST(GpuLayout, TheMemoryModelCountsTheUploadedRows) {
  TensorInfo t;
  t.type = GgmlType::Q6_K;
  t.n_dims = 2;
  t.ne = {27648, 5120, 1, 1};
  t.n_elements = 27648ull * 5120;
  t.n_bytes = type_bytes(t.type, t.n_elements);
  EXPECT_EQ(gpu_tensor_bytes(t), align_device(gpu_row_bytes(GgmlType::Q6_K, 27648) * 5120));
  EXPECT_GT(gpu_tensor_bytes(t), t.n_bytes);  // 22680-byte rows padded to 22688
  t.type = GgmlType::Q4_K;
  t.n_bytes = type_bytes(t.type, t.n_elements);
  EXPECT_EQ(gpu_tensor_bytes(t), align_device(t.n_bytes));
}

}  // namespace
}  // namespace engine
