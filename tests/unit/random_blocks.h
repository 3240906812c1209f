// Random but valid quantized blocks: random bytes with every fp16 scale field replaced by a finite
// value, so dequantization never sees inf/nan scales.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/ggml_type.h"
#include "engine/gpu_layout.h"
#include "engine/half.h"

namespace engine::test {

// Byte offsets of the fp16 fields inside one block of each type (IQ1_M's d, spread over the top
// nibbles of its scale words, put_iq1m_d sets).
inline std::vector<int> fp16_fields(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q8_0:
    case GgmlType::IQ4_NL:
    case GgmlType::IQ4_XS:
    case GgmlType::IQ3_XXS:
    case GgmlType::IQ3_S:
    case GgmlType::IQ2_XXS:
    case GgmlType::IQ2_XS:
    case GgmlType::IQ2_S:
    case GgmlType::IQ1_S: return {0};
    case GgmlType::Q4_1:
    case GgmlType::Q5_1:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: return {0, 2};
    case GgmlType::Q2_K: return {80, 82};
    case GgmlType::Q3_K: return {108};
    case GgmlType::Q6_K: return {208};
    case GgmlType::TQ1_0: return {52};
    case GgmlType::TQ2_0: return {64};
    default: return {};
  }
}

// IQ1_M's d into one block: nibble w is the top nibble of scale word w (bytes 48 ..).
inline void put_iq1m_d(uint8_t* block, uint16_t d) {
  for (int w = 0; w < 4; ++w) {
    uint8_t& top = block[48 + 2 * w + 1];
    top = static_cast<uint8_t>((top & 0x0f) | (((d >> (4 * w)) & 15) << 4));
  }
}

// Every fp16 field of one block (IQ1_M's d included) set to h.
inline void put_fp16_fields(GgmlType type, uint8_t* block, uint16_t h) {
  for (int at : fp16_fields(type)) {
    block[at] = static_cast<uint8_t>(h & 0xff);
    block[at + 1] = static_cast<uint8_t>(h >> 8);
  }
  if (type == GgmlType::IQ1_M) put_iq1m_d(block, h);
}

inline std::vector<uint8_t> random_blocks(GgmlType type, int64_t n_elements, std::mt19937& rng) {
  const TypeTraits& tr = traits(type);
  std::vector<uint8_t> bytes(type_bytes(type, n_elements));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f), value(-4.0f, 4.0f);
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  auto put16 = [&](size_t at, uint16_t v) {
    bytes[at] = static_cast<uint8_t>(v & 0xff);
    bytes[at + 1] = static_cast<uint8_t>(v >> 8);
  };
  if (type == GgmlType::F32) {
    for (size_t i = 0; i < bytes.size(); i += 4) {
      float f = value(rng);
      std::memcpy(&bytes[i], &f, 4);
    }
  } else if (type == GgmlType::F16 || type == GgmlType::BF16) {
    for (size_t i = 0; i < bytes.size(); i += 2) {
      float f = value(rng);
      put16(i, type == GgmlType::F16 ? fp32_to_fp16(f) : fp32_to_bf16(f));
    }
  } else {
    for (size_t b = 0; b < bytes.size(); b += tr.block_bytes) {
      for (int at : fp16_fields(type)) put16(b + at, fp32_to_fp16(scale(rng)));
      if (type == GgmlType::IQ1_M) put_iq1m_d(&bytes[b], fp32_to_fp16(scale(rng)));
    }
  }
  return bytes;
}

// `rows` rows of K values in GGUF layout (as random_blocks makes them) in the layout GPU stages
// upload (engine/gpu_layout.h), for tests that hand weights to the CUDA kernels directly.
inline std::vector<uint8_t> in_gpu_layout(GgmlType type, int64_t K, int64_t rows, const std::vector<uint8_t>& gguf) {
  std::vector<uint8_t> out(gpu_row_bytes(type, K) * uint64_t(rows));
  to_gpu_layout(type, K, rows, gguf.data(), out.data());
  return out;
}

}  // namespace engine::test
