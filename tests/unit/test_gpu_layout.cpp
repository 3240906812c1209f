// The layout GPU stages upload weights in (engine/gpu_layout.h): every type but Q2_K, Q3_K, Q6_K,
// the IQ3 and IQ2 types, IQ1_S and the TQ types as in the file; Q6_K and Q2_K rows as the blocks'
// records (208 and 80 bytes), then their d values (Q2_K: d and dmin), then zeros up to 16 bytes;
// Q3_K blocks padded with zeros to 112 bytes; IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S and IQ1_S
// rows as the blocks after their leading d (records of 96, 112, 64, 72, 80 and 48 bytes), TQ1_0
// and TQ2_0 rows as the blocks before their trailing d (56 with padding, 64), then the d values,
// then zeros up to 16 bytes; checked byte by byte against the GGUF blocks; and the memory model counts what the stage
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

TEST(GpuLayout, EveryOtherTypeIsTheFileLayout) {
  std::mt19937 rng(std::random_device{}());
  int same = 0;
  for (const TypeTraits& tr : all_type_traits()) {
    if (tr.type == GgmlType::Q2_K || tr.type == GgmlType::Q3_K || tr.type == GgmlType::Q6_K ||
        tr.type == GgmlType::IQ3_XXS || tr.type == GgmlType::IQ3_S || tr.type == GgmlType::IQ2_XXS ||
        tr.type == GgmlType::IQ2_XS || tr.type == GgmlType::IQ2_S || tr.type == GgmlType::IQ1_S ||
        tr.type == GgmlType::TQ1_0 || tr.type == GgmlType::TQ2_0) {
      EXPECT_TRUE(gpu_layout_differs(tr.type)) << tr.name;
      continue;
    }
    ++same;
    const int64_t K = 2 * 256, rows = 3;
    EXPECT_FALSE(gpu_layout_differs(tr.type)) << tr.name;
    EXPECT_EQ(gpu_row_bytes(tr.type, K), type_bytes(tr.type, K)) << tr.name;
    const auto w = test::random_blocks(tr.type, K * rows, rng);
    EXPECT_EQ(test::in_gpu_layout(tr.type, K, rows, w), w) << tr.name;
  }
  EXPECT_EQ(same, 13);  // IQ1_M among them
}

// Rows of records (each block's bytes [begin, begin + length) in a slot of `slot` bytes, zeros
// after them), then the rest of each block (its fp16 scales: the bytes before `begin`, then
// those after the record), then zeros up to 16 bytes. Q6_K and Q2_K: the record is the first 208
// and 80 bytes; the IQ3 and IQ2 types: all but the leading d, in slots of 96 and 112 (IQ3_XXS,
// IQ3_S) or of its own size (IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S: 64, 72, 80, 48).
void expect_records_then_scales(GgmlType type, uint64_t begin, uint64_t length, uint64_t slot) {
  std::mt19937 rng(std::random_device{}());
  const uint64_t block = traits(type).block_bytes, tail = block - length;
  for (const int64_t nb : {1, 2, 3, 20, 108}) {  // 5120 and 27648 wide: QwQ-32B's attn_v and ffn_down
    const int64_t K = 256 * nb, rows = 3;
    const uint64_t row = gpu_row_bytes(type, K), used = uint64_t(nb) * (slot + tail);
    EXPECT_EQ(row % 16, 0u) << nb;
    EXPECT_GE(row, used) << nb;
    EXPECT_LT(row, used + 16) << nb;
    const auto w = test::random_blocks(type, K * rows, rng);
    auto out = std::vector<uint8_t>(row * rows, 0xAB);
    to_gpu_layout(type, K, rows, w.data(), out.data());
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* blocks = w.data() + r * nb * block;
      const uint8_t* g = out.data() + r * row;
      for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* src = blocks + i * block;
        const uint8_t* rest = g + nb * slot + i * tail;
        EXPECT_EQ(std::memcmp(g + i * slot, src + begin, length), 0) << r << " " << i;
        for (uint64_t b = length; b < slot; ++b) EXPECT_EQ(g[i * slot + b], 0) << r << " " << i;
        EXPECT_EQ(std::memcmp(rest, src, begin), 0) << r << " " << i;
        EXPECT_EQ(std::memcmp(rest + begin, src + begin + length, tail - begin), 0) << r << " " << i;
      }
      for (uint64_t b = used; b < row; ++b) EXPECT_EQ(g[b], 0) << "padding byte " << b;
    }
  }
}

TEST(GpuLayout, Q6KRowsAreRecordsThenScalesThenPadding) {
  EXPECT_EQ(kGpuQ6KRecordBytes, 208u);
  expect_records_then_scales(GgmlType::Q6_K, 0, kGpuQ6KRecordBytes, kGpuQ6KRecordBytes);
}

TEST(GpuLayout, Q2KRowsAreRecordsThenScalesThenPadding) {
  EXPECT_EQ(kGpuQ2KRecordBytes, 80u);
  expect_records_then_scales(GgmlType::Q2_K, 0, kGpuQ2KRecordBytes, kGpuQ2KRecordBytes);
}

TEST(GpuLayout, Q3KBlocksArePaddedTo112Bytes) {
  std::mt19937 rng(std::random_device{}());
  for (const int64_t nb : {1, 3, 20}) {
    const int64_t K = 256 * nb, rows = 3;
    EXPECT_EQ(gpu_row_bytes(GgmlType::Q3_K, K), uint64_t(nb) * 112) << nb;
    const auto w = test::random_blocks(GgmlType::Q3_K, K * rows, rng);
    auto out = std::vector<uint8_t>(gpu_row_bytes(GgmlType::Q3_K, K) * rows, 0xAB);
    to_gpu_layout(GgmlType::Q3_K, K, rows, w.data(), out.data());
    for (int64_t i = 0; i < nb * rows; ++i) {
      EXPECT_EQ(std::memcmp(out.data() + i * 112, w.data() + i * 110, 110), 0) << "block " << i;
      EXPECT_EQ(out[i * 112 + 110], 0) << "block " << i;
      EXPECT_EQ(out[i * 112 + 111], 0) << "block " << i;
    }
  }
}

TEST(GpuLayout, IQ3RowsAreRecordsThenScalesThenPadding) {
  EXPECT_EQ(kGpuIQ3XXSRecordBytes, 96u);
  expect_records_then_scales(GgmlType::IQ3_XXS, 2, sizeof(BlockIQ3_XXS) - 2, kGpuIQ3XXSRecordBytes);
  EXPECT_EQ(kGpuIQ3SRecordBytes, 112u);
  expect_records_then_scales(GgmlType::IQ3_S, 2, sizeof(BlockIQ3_S) - 2, kGpuIQ3SRecordBytes);
}

TEST(GpuLayout, IQ2RowsAreRecordsThenScalesThenPadding) {
  EXPECT_EQ(kGpuIQ2XXSRecordBytes, 64u);
  expect_records_then_scales(GgmlType::IQ2_XXS, 2, kGpuIQ2XXSRecordBytes, kGpuIQ2XXSRecordBytes);
  EXPECT_EQ(kGpuIQ2XSRecordBytes, 72u);
  expect_records_then_scales(GgmlType::IQ2_XS, 2, kGpuIQ2XSRecordBytes, kGpuIQ2XSRecordBytes);
  EXPECT_EQ(kGpuIQ2SRecordBytes, 80u);
  expect_records_then_scales(GgmlType::IQ2_S, 2, kGpuIQ2SRecordBytes, kGpuIQ2SRecordBytes);
}

TEST(GpuLayout, TQRowsAreRecordsThenScalesThenPadding) {
  EXPECT_EQ(kGpuTQ1RecordBytes, 56u);  // the 52 bytes before d, four zeros
  expect_records_then_scales(GgmlType::TQ1_0, 0, 52, kGpuTQ1RecordBytes);
  EXPECT_EQ(kGpuTQ2RecordBytes, 64u);
  expect_records_then_scales(GgmlType::TQ2_0, 0, 64, kGpuTQ2RecordBytes);
}

TEST(GpuLayout, IQ1SRowsAreRecordsThenScalesThenPadding) {
  EXPECT_EQ(kGpuIQ1SRecordBytes, 48u);
  expect_records_then_scales(GgmlType::IQ1_S, 2, kGpuIQ1SRecordBytes, kGpuIQ1SRecordBytes);
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
  t.type = GgmlType::Q3_K;
  t.n_bytes = type_bytes(t.type, t.n_elements);
  EXPECT_EQ(gpu_tensor_bytes(t), align_device(uint64_t(108) * 112 * 5120));  // two bytes a block more
  t.type = GgmlType::Q4_K;
  t.n_bytes = type_bytes(t.type, t.n_elements);
  EXPECT_EQ(gpu_tensor_bytes(t), align_device(t.n_bytes));
}

}  // namespace
}  // namespace engine
