// Reference quantizers: deterministic round-to-nearest with per-block scales chosen from the
// block's range, then one re-quantization against the rounded scales. Not llama.cpp's search-based
// quantizers (their error is a little lower); good enough for test and benchmark models.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "engine/error.h"
#include "engine/half.h"
#include "engine/quantize.h"
#include "quant_blocks.h"

namespace engine {
namespace {

int nearest(float x) { return static_cast<int>(std::lrintf(x)); }

// Returns the element of largest magnitude, with its sign.
float signed_absmax(const float* x, int n) {
  float best = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(best)) best = x[i];
  }
  return best;
}

void quantize_q8_0(const float* x, BlockQ8_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    const float amax = std::fabs(signed_absmax(x, 32));
    const float d = amax / 127.0f;
    b[i].d = fp32_to_fp16(d);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; ++j) b[i].qs[j] = static_cast<int8_t>(nearest(x[j] * id));
  }
}

void quantize_q4_0(const float* x, BlockQ4_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    // The extreme value maps to -8, the one end of the asymmetric range [-8, 7].
    const float d = signed_absmax(x, 32) / -8.0f;
    b[i].d = fp32_to_fp16(d);
    const float id = d != 0 ? 1.0f / fp16_to_fp32(b[i].d) : 0.0f;
    for (int j = 0; j < 16; ++j) {
      const int lo = std::clamp(nearest(x[j] * id) + 8, 0, 15);
      const int hi = std::clamp(nearest(x[j + 16] * id) + 8, 0, 15);
      b[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void quantize_q4_k(const float* x, BlockQ4_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    // Per group of 32: x ~ scale * q - offset with q in 0..15 and offset >= 0.
    float scale[8], offset[8];
    for (int g = 0; g < 8; ++g) {
      const float* xg = x + 32 * g;
      const float lo = std::min(0.0f, *std::min_element(xg, xg + 32));
      const float hi = *std::max_element(xg, xg + 32);
      scale[g] = (hi - lo) / 15.0f;
      offset[g] = -lo;
    }
    const float max_scale = *std::max_element(scale, scale + 8);
    const float max_offset = *std::max_element(offset, offset + 8);
    b[i].d = fp32_to_fp16(max_scale / 63.0f);
    b[i].dmin = fp32_to_fp16(max_offset / 63.0f);
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    uint8_t sc[8], mn[8];
    for (int g = 0; g < 8; ++g) {
      sc[g] = static_cast<uint8_t>(d > 0 ? std::clamp(nearest(scale[g] / d), 0, 63) : 0);
      mn[g] = static_cast<uint8_t>(dmin > 0 ? std::clamp(nearest(offset[g] / dmin), 0, 63) : 0);
    }
    pack_scale_min_k4(sc, mn, b[i].scales);
    uint8_t q[kQK_K];
    for (int g = 0; g < 8; ++g) {
      const float s = d * sc[g], m = dmin * mn[g];
      for (int l = 0; l < 32; ++l) {
        q[32 * g + l] = static_cast<uint8_t>(s > 0 ? std::clamp(nearest((x[32 * g + l] + m) / s), 0, 15) : 0);
      }
    }
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        b[i].qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
      }
    }
  }
}

void quantize_q6_k(const float* x, BlockQ6_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    // Per group of 16: the extreme value maps to -32, the one end of [-32, 31].
    float scale[16];
    float max_scale = 0;
    for (int g = 0; g < 16; ++g) {
      scale[g] = signed_absmax(x + 16 * g, 16) / -32.0f;
      if (std::fabs(scale[g]) > std::fabs(max_scale)) max_scale = scale[g];
    }
    b[i].d = fp32_to_fp16(std::fabs(max_scale) / 127.0f);
    const float d = fp16_to_fp32(b[i].d);
    uint8_t q[kQK_K];
    for (int g = 0; g < 16; ++g) {
      const int sc = d > 0 ? std::clamp(nearest(scale[g] / d), -128, 127) : 0;
      b[i].scales[g] = static_cast<int8_t>(sc);
      const float s = d * float(sc);
      for (int l = 0; l < 16; ++l) {
        const int v = s != 0 ? std::clamp(nearest(x[16 * g + l] / s), -32, 31) : 0;
        q[16 * g + l] = static_cast<uint8_t>(v + 32);
      }
    }
    std::memset(b[i].ql, 0, sizeof b[i].ql);
    std::memset(b[i].qh, 0, sizeof b[i].qh);
    for (int e = 0; e < kQK_K; ++e) {
      const int half = e / 128, r = e % 128;
      b[i].ql[half * 64 + r % 64] |= static_cast<uint8_t>((q[e] & 15) << (4 * (r / 64)));
      b[i].qh[half * 32 + r % 32] |= static_cast<uint8_t>((q[e] >> 4) << (2 * (r / 32)));
    }
  }
}

}  // namespace

bool can_quantize(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_K:
    case GgmlType::Q6_K: return true;
    default: return false;
  }
}

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
  const int64_t nb = n / traits(type).block_size;
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, n * sizeof(float)); return;
    case GgmlType::F16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(src[i]);
      return;
    }
    case GgmlType::BF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(src[i]);
      return;
    }
    case GgmlType::Q8_0: return quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), nb);
    case GgmlType::Q4_0: return quantize_q4_0(src, static_cast<BlockQ4_0*>(dst), nb);
    case GgmlType::Q4_K: return quantize_q4_k(src, static_cast<BlockQ4_K*>(dst), nb);
    case GgmlType::Q6_K: return quantize_q6_k(src, static_cast<BlockQ6_K*>(dst), nb);
    default: break;
  }
  throw Error(fmt::format("quantize_row: no quantizer for {}", traits(type).name));
}

}  // namespace engine
