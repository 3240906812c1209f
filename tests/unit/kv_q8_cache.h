// q8_0 KV caches as a GPU stage keeps them (kernels/cuda/kv_cache.h: codes in one plane, fp16
// scales in another), made on the host by the CPU's own Q8_0 quantizer and read back by its
// dequantizer (engine/quantize.h): the GPU tests' references.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/quantize.h"
#include "kernels/cpu/quant_blocks.h"

namespace engine::test {

struct HostQ8Cache {
  std::vector<int8_t> codes;     // [row][kv_dim]
  std::vector<uint16_t> scales;  // [row][kv_dim / 32]
  std::vector<float> values;     // what they stand for: dequantize_row of the CPU's blocks
};

// Rows of kv_dim values (kv_dim % 32 == 0), each quantized as the CPU's q8_0 cache stores a row.
inline HostQ8Cache host_q8_cache(const std::vector<float>& x, int64_t kv_dim) {
  const int64_t rows = static_cast<int64_t>(x.size()) / kv_dim, nb = kv_dim / 32;
  HostQ8Cache c;
  c.codes.resize(x.size());
  c.scales.resize(size_t(rows * nb));
  c.values.resize(x.size());
  std::vector<BlockQ8_0> blocks(static_cast<size_t>(nb));
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(GgmlType::Q8_0, x.data() + r * kv_dim, blocks.data(), kv_dim);
    dequantize_row(GgmlType::Q8_0, blocks.data(), c.values.data() + r * kv_dim, kv_dim);
    for (int64_t b = 0; b < nb; ++b) {
      c.scales[size_t(r * nb + b)] = blocks[size_t(b)].d;
      std::memcpy(c.codes.data() + r * kv_dim + 32 * b, blocks[size_t(b)].qs, 32);
    }
  }
  return c;
}

}  // namespace engine::test
