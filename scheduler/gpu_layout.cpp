#include "engine/gpu_layout.h"

#include <cstddef>
#include <cstring>
#include <optional>

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

static_assert(kGpuIQ3XXSRecordBytes == sizeof(BlockIQ3_XXS) - 2 && offsetof(BlockIQ3_XXS, qs) == 2,
              "an IQ3_XXS block is d followed by its 96-byte record");
static_assert(kGpuIQ3SRecordBytes >= sizeof(BlockIQ3_S) - 2 && kGpuIQ3SRecordBytes % 16 == 0 &&
                  offsetof(BlockIQ3_S, qs) == 2,
              "an IQ3_S block is d followed by what its padded record holds");
static_assert(kGpuIQ2XXSRecordBytes == sizeof(BlockIQ2_XXS) - 2 && kGpuIQ2XSRecordBytes == sizeof(BlockIQ2_XS) - 2 &&
                  kGpuIQ2SRecordBytes == sizeof(BlockIQ2_S) - 2 && offsetof(BlockIQ2_XXS, qs) == 2 &&
                  offsetof(BlockIQ2_XS, qs) == 2 && offsetof(BlockIQ2_S, qs) == 2,
              "an IQ2 block is d followed by its record");
static_assert(kGpuIQ1SRecordBytes == sizeof(BlockIQ1_S) - 2 && offsetof(BlockIQ1_S, qs) == 2,
              "an IQ1_S block is d followed by its 48-byte record");
static_assert(offsetof(BlockTQ1_0, d) == 52 && kGpuTQ1RecordBytes >= 52 && kGpuTQ1RecordBytes % 8 == 0 &&
                  offsetof(BlockTQ2_0, d) == kGpuTQ2RecordBytes,
              "a TQ block is its record followed by d");

// A regrouped type's record: bytes [begin, begin + length) of each block, in a slot of `slot`
// bytes (zeros after them); the block's other bytes (its fp16 scales: those before the record,
// then those after it) go after the row's records.
struct Regrouping {
  uint64_t begin, length, slot;
};

std::optional<Regrouping> regrouping(GgmlType type) {
  switch (type) {
    case GgmlType::Q2_K: return Regrouping{0, kGpuQ2KRecordBytes, kGpuQ2KRecordBytes};
    case GgmlType::Q6_K: return Regrouping{0, kGpuQ6KRecordBytes, kGpuQ6KRecordBytes};
    case GgmlType::IQ3_XXS: return Regrouping{2, sizeof(BlockIQ3_XXS) - 2, kGpuIQ3XXSRecordBytes};
    case GgmlType::IQ3_S: return Regrouping{2, sizeof(BlockIQ3_S) - 2, kGpuIQ3SRecordBytes};
    case GgmlType::IQ2_XXS: return Regrouping{2, kGpuIQ2XXSRecordBytes, kGpuIQ2XXSRecordBytes};
    case GgmlType::IQ2_XS: return Regrouping{2, kGpuIQ2XSRecordBytes, kGpuIQ2XSRecordBytes};
    case GgmlType::IQ2_S: return Regrouping{2, kGpuIQ2SRecordBytes, kGpuIQ2SRecordBytes};
    case GgmlType::IQ1_S: return Regrouping{2, kGpuIQ1SRecordBytes, kGpuIQ1SRecordBytes};
    case GgmlType::TQ1_0: return Regrouping{0, offsetof(BlockTQ1_0, d), kGpuTQ1RecordBytes};
    case GgmlType::TQ2_0: return Regrouping{0, kGpuTQ2RecordBytes, kGpuTQ2RecordBytes};
    default: return std::nullopt;
  }
}

// Rows of nb blocks as records, then the blocks' remaining bytes, then zeros up to dst_row.
void regroup_rows(int64_t nb, int64_t rows, uint64_t block_bytes, const Regrouping& g, const uint8_t* src,
                  uint8_t* dst, uint64_t dst_row) {
  const uint64_t tail = block_bytes - g.length, after = tail - g.begin;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* blocks = src + uint64_t(r) * uint64_t(nb) * block_bytes;
    uint8_t* out = dst + uint64_t(r) * dst_row;
    uint8_t* tails = out + uint64_t(nb) * g.slot;
    for (int64_t i = 0; i < nb; ++i) {
      const uint8_t* block = blocks + uint64_t(i) * block_bytes;
      std::memcpy(out + uint64_t(i) * g.slot, block + g.begin, g.length);
      std::memset(out + uint64_t(i) * g.slot + g.length, 0, g.slot - g.length);
      std::memcpy(tails + uint64_t(i) * tail, block, g.begin);
      std::memcpy(tails + uint64_t(i) * tail + g.begin, block + g.begin + g.length, after);
    }
    const uint64_t used = uint64_t(nb) * (g.slot + tail);
    std::memset(out + used, 0, dst_row - used);
  }
}

}  // namespace

bool gpu_layout_differs(GgmlType type) { return type == GgmlType::Q3_K || regrouping(type).has_value(); }

uint64_t gpu_row_bytes(GgmlType type, int64_t K) {
  const uint64_t nb = uint64_t(K / 256);
  if (type == GgmlType::Q3_K) return nb * kGpuQ3KBlockBytes;
  if (const auto g = regrouping(type)) return align16(nb * (g->slot + traits(type).block_bytes - g->length));
  return type_bytes(type, uint64_t(K));
}

void to_gpu_layout(GgmlType type, int64_t K, int64_t rows, const uint8_t* src, uint8_t* dst) {
  const uint64_t dst_row = gpu_row_bytes(type, K);
  const int64_t nb = K / 256;
  if (const auto g = regrouping(type)) {
    regroup_rows(nb, rows, traits(type).block_bytes, *g, src, dst, dst_row);
    return;
  }
  switch (type) {
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
