// Where the wgmma kernels keep a value in a shared-memory tile (K-major fp16, 128-byte swizzle):
// row r (of A's M or B's N) holds 64 values of K, 128 bytes, at r * 128, its 16-byte chunk c
// (values 8c .. 8c + 7) at chunk c ^ (r % 8) of the row, so that one chunk column of 8 rows
// falls in 8 distinct groups of banks. Plain C++: the host tests check it against PTX's definition.
#pragma once

#include <cstdint>

#include "../host_device.h"

namespace engine {

// Byte offset of value k (0..63) of row r in a swizzled tile.
ENGINE_HOST_DEVICE inline uint32_t swizzled_offset(int r, int k) {
  return uint32_t(r) * 128u + ((uint32_t(k / 8) ^ uint32_t(r % 8)) << 4) + uint32_t(k % 8) * 2u;
}

}  // namespace engine
