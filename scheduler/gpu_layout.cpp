#include "engine/gpu_layout.h"

#include <cstddef>
#include <cstring>

#include "kernels/cpu/quant_blocks.h"

namespace engine {

namespace {

constexpr uint64_t align16(uint64_t n) { return (n + 15) / 16 * 16; }

static_assert(kGpuQ6KRecordBytes == sizeof(BlockQ6_K) - sizeof(uint16_t) &&
                  kGpuQ6KRecordBytes % 16 == 0 && offsetof(BlockQ6_K, d) == kGpuQ6KRecordBytes,
              "a Q6_K block is its 208-byte record followed by d");
static_assert(kGpuQ2KRecordBytes == sizeof(BlockQ2_K) - 2 * sizeof(uint16_t) && kGpuQ2KRecordBytes % 16 == 0 &&
                  offsetof(BlockQ2_K, d) == kGpuQ2KRecordBytes,
              "a Q2_K block is its 80-byte record followed by d and dmin");
static_assert(kGpuQ3KBlockBytes % 16 == 0 && kGpuQ3KBlockBytes >= sizeof(BlockQ3_K) &&
                  offsetof(BlockQ3_K, qs) % 16 == 0 && offsetof(BlockQ3_K, scales) % 16 == 0,
              "a padded Q3_K block keeps hmask, qs and scales 16-byte aligned");

// Rows of blocks split into their first record_bytes (the records, one after another) and the
// rest of each block (its fp16 scales, tail bytes each, after the records), zeros up to 16 bytes.
void regroup_rows(int64_t nb, int64_t rows, uint64_t block_bytes, uint64_t record_bytes, const uint8_t* src,
                  uint8_t* dst, uint64_t dst_row) {
  const uint64_t tail = block_bytes - record_bytes;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* blocks = src + uint64_t(r) * uint64_t(nb) * block_bytes;
    uint8_t* out = dst + uint64_t(r) * dst_row;
    uint8_t* tails = out + uint64_t(nb) * record_bytes;
    for (int64_t i = 0; i < nb; ++i) {
      std::memcpy(out + uint64_t(i) * record_bytes, blocks + uint64_t(i) * block_bytes, record_bytes);
      std::memcpy(tails + uint64_t(i) * tail, blocks + uint64_t(i) * block_bytes + record_bytes, tail);
    }
    const uint64_t used = uint64_t(nb) * block_bytes;
    std::memset(out + used, 0, dst_row - used);
  }
}

static_assert(kGpuIQ3XXSRecordBytes == sizeof(BlockIQ3_XXS) - 2 && offsetof(BlockIQ3_XXS, qs) == 2,
              "an IQ3_XXS block is d followed by its 96-byte record");
static_assert(kGpuIQ3SRecordBytes >= sizeof(BlockIQ3_S) - 2 && kGpuIQ3SRecordBytes % 16 == 0 &&
                  offsetof(BlockIQ3_S, qs) == 2,
              "an IQ3_S block is d followed by what its padded record holds");

// Rows of blocks that open with their fp16 d: the rest of each block in a record of
// record_bytes (zero-padded), the records one after another, then the row's d values, zeros up
// to 16 bytes.
void regroup_leading_d(int64_t nb, int64_t rows, uint64_t block_bytes, uint64_t record_bytes, const uint8_t* src,
                       uint8_t* dst, uint64_t dst_row) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* blocks = src + uint64_t(r) * uint64_t(nb) * block_bytes;
    uint8_t* out = dst + uint64_t(r) * dst_row;
    std::memset(out, 0, dst_row);
    uint8_t* ds = out + uint64_t(nb) * record_bytes;
    for (int64_t i = 0; i < nb; ++i) {
      std::memcpy(out + uint64_t(i) * record_bytes, blocks + uint64_t(i) * block_bytes + 2, block_bytes - 2);
      std::memcpy(ds + 2 * uint64_t(i), blocks + uint64_t(i) * block_bytes, 2);
    }
  }
}

}  // namespace

bool gpu_layout_differs(GgmlType type) {
  return type == GgmlType::Q2_K || type == GgmlType::Q3_K || type == GgmlType::Q6_K || type == GgmlType::IQ3_XXS ||
         type == GgmlType::IQ3_S;
}

uint64_t gpu_row_bytes(GgmlType type, int64_t K) {
  const uint64_t nb = uint64_t(K / 256);
  switch (type) {
    case GgmlType::Q2_K: return align16(nb * sizeof(BlockQ2_K));
    case GgmlType::Q3_K: return nb * kGpuQ3KBlockBytes;
    case GgmlType::Q6_K: return align16(nb * sizeof(BlockQ6_K));
    case GgmlType::IQ3_XXS: return align16(nb * (kGpuIQ3XXSRecordBytes + 2));
    case GgmlType::IQ3_S: return align16(nb * (kGpuIQ3SRecordBytes + 2));
    default: return type_bytes(type, uint64_t(K));
  }
}

void to_gpu_layout(GgmlType type, int64_t K, int64_t rows, const uint8_t* src, uint8_t* dst) {
  const uint64_t dst_row = gpu_row_bytes(type, K);
  const int64_t nb = K / 256;
  switch (type) {
    case GgmlType::Q2_K:
      regroup_rows(nb, rows, sizeof(BlockQ2_K), kGpuQ2KRecordBytes, src, dst, dst_row);
      return;
    case GgmlType::Q6_K:
      regroup_rows(nb, rows, sizeof(BlockQ6_K), kGpuQ6KRecordBytes, src, dst, dst_row);
      return;
    case GgmlType::IQ3_XXS:
      regroup_leading_d(nb, rows, sizeof(BlockIQ3_XXS), kGpuIQ3XXSRecordBytes, src, dst, dst_row);
      return;
    case GgmlType::IQ3_S:
      regroup_leading_d(nb, rows, sizeof(BlockIQ3_S), kGpuIQ3SRecordBytes, src, dst, dst_row);
      return;
    case GgmlType::Q3_K:
      for (int64_t i = 0; i < nb * rows; ++i) {
        std::memcpy(dst + uint64_t(i) * kGpuQ3KBlockBytes, src + uint64_t(i) * sizeof(BlockQ3_K), sizeof(BlockQ3_K));
        std::memset(dst + uint64_t(i) * kGpuQ3KBlockBytes + sizeof(BlockQ3_K), 0,
                    kGpuQ3KBlockBytes - sizeof(BlockQ3_K));
      }
      return;
    default: std::memcpy(dst, src, type_bytes(type, uint64_t(K)) * uint64_t(rows));
  }
}

}  // namespace engine
