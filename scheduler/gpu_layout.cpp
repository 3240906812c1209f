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

}  // namespace

bool gpu_layout_differs(GgmlType type) { return type == GgmlType::Q6_K; }

uint64_t gpu_row_bytes(GgmlType type, int64_t K) {
  if (type == GgmlType::Q6_K) return align16(uint64_t(K / 256) * sizeof(BlockQ6_K));
  return type_bytes(type, uint64_t(K));
}

void to_gpu_layout(GgmlType type, int64_t K, int64_t rows, const uint8_t* src, uint8_t* dst) {
  const uint64_t src_row = type_bytes(type, uint64_t(K)), dst_row = gpu_row_bytes(type, K);
  if (!gpu_layout_differs(type)) {
    std::memcpy(dst, src, src_row * uint64_t(rows));
    return;
  }
  const int64_t nb = K / 256;
  for (int64_t r = 0; r < rows; ++r) {
    const auto* blocks = reinterpret_cast<const BlockQ6_K*>(src + uint64_t(r) * src_row);
    uint8_t* out = dst + uint64_t(r) * dst_row;
    uint8_t* scales = out + uint64_t(nb) * kGpuQ6KRecordBytes;
    for (int64_t i = 0; i < nb; ++i) {
      std::memcpy(out + uint64_t(i) * kGpuQ6KRecordBytes, &blocks[i], kGpuQ6KRecordBytes);
      std::memcpy(scales + 2 * i, &blocks[i].d, 2);
    }
    const uint64_t used = uint64_t(nb) * sizeof(BlockQ6_K);
    std::memset(out + used, 0, dst_row - used);
  }
}

}  // namespace engine
