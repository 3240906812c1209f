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
#include "quantize_iq.h"

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

// Values 32 apart share a byte: q[j] in the low nibble of qs[j], q[j + 16] in the high one; the
// fifth bits (Q5) in qh, bit j for value j.
template <typename Block>
void pack_nibbles(const int* q, Block& b) {
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
  if constexpr (requires { b.qh; }) {
    uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) qh |= uint32_t(q[j] >> 4) << j;
    std::memcpy(b.qh, &qh, 4);
  }
}

// Q4_0 and Q5_0: x ~ d * (q - half) with q in 0 .. 2 * half - 1.
template <int kHalf, typename Block>
void quantize_symmetric(const float* x, Block* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    // The extreme value maps to -half, the one end of the asymmetric range [-half, half - 1].
    const float d = signed_absmax(x, 32) / float(-kHalf);
    b[i].d = fp32_to_fp16(d);
    const float id = d != 0 ? 1.0f / fp16_to_fp32(b[i].d) : 0.0f;
    int q[32];
    for (int j = 0; j < 32; ++j) q[j] = std::clamp(nearest(x[j] * id) + kHalf, 0, 2 * kHalf - 1);
    pack_nibbles(q, b[i]);
  }
}

// Q4_1 and Q5_1: x ~ d * q + m with q in 0 .. levels - 1 and m the block's minimum.
template <int kLevels, typename Block>
void quantize_with_min(const float* x, Block* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    const float lo = *std::min_element(x, x + 32), hi = *std::max_element(x, x + 32);
    b[i].d = fp32_to_fp16((hi - lo) / float(kLevels - 1));
    b[i].m = fp32_to_fp16(lo);
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    int q[32];
    for (int j = 0; j < 32; ++j) q[j] = d > 0 ? std::clamp(nearest((x[j] - m) / d), 0, kLevels - 1) : 0;
    pack_nibbles(q, b[i]);
  }
}

// Q2_K, Q4_K and Q5_K: per group of kGroup values x ~ scale * q - offset with q in 0 .. levels - 1
// and offset >= 0; scales and offsets quantized to kScaleLevels steps of d and dmin. Returns the
// codes in q and the groups' scale and offset codes in sc and mn.
template <int kGroups, int kLevels, int kScaleLevels>
void quantize_scale_min(const float* x, uint16_t& d16, uint16_t& dmin16, uint8_t* sc, uint8_t* mn, uint8_t* q) {
  constexpr int kGroup = kQK_K / kGroups;
  float scale[kGroups], offset[kGroups];
  for (int g = 0; g < kGroups; ++g) {
    const float* xg = x + kGroup * g;
    const float lo = std::min(0.0f, *std::min_element(xg, xg + kGroup));
    const float hi = *std::max_element(xg, xg + kGroup);
    scale[g] = (hi - lo) / float(kLevels - 1);
    offset[g] = -lo;
  }
  d16 = fp32_to_fp16(*std::max_element(scale, scale + kGroups) / float(kScaleLevels - 1));
  dmin16 = fp32_to_fp16(*std::max_element(offset, offset + kGroups) / float(kScaleLevels - 1));
  const float d = fp16_to_fp32(d16), dmin = fp16_to_fp32(dmin16);
  for (int g = 0; g < kGroups; ++g) {
    sc[g] = static_cast<uint8_t>(d > 0 ? std::clamp(nearest(scale[g] / d), 0, kScaleLevels - 1) : 0);
    mn[g] = static_cast<uint8_t>(dmin > 0 ? std::clamp(nearest(offset[g] / dmin), 0, kScaleLevels - 1) : 0);
    const float s = d * sc[g], m = dmin * mn[g];
    for (int l = 0; l < kGroup; ++l) {
      const int e = kGroup * g + l;
      q[e] = static_cast<uint8_t>(s > 0 ? std::clamp(nearest((x[e] + m) / s), 0, kLevels - 1) : 0);
    }
  }
}

// Q4_K and Q5_K: groups of 32, 6-bit scales and offsets; group 2c in the low nibbles of qs bytes
// 32c .. 32c + 31, group 2c + 1 in the high ones; Q5_K's fifth bit of value 32g + l at bit g of
// qh[l].
template <bool kFiveBit, typename Block>
void quantize_q45_k(const float* x, Block* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    uint8_t sc[8], mn[8], q[kQK_K];
    quantize_scale_min<8, kFiveBit ? 32 : 16, 64>(x, b[i].d, b[i].dmin, sc, mn, q);
    pack_scale_min_k4(sc, mn, b[i].scales);
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        b[i].qs[32 * c + l] = static_cast<uint8_t>((q[64 * c + l] & 15) | ((q[64 * c + 32 + l] & 15) << 4));
      }
    }
    if constexpr (kFiveBit) {
      for (int l = 0; l < 32; ++l) {
        uint8_t h = 0;
        for (int g = 0; g < 8; ++g) h = static_cast<uint8_t>(h | ((q[32 * g + l] >> 4) << g));
        b[i].qh[l] = h;
      }
    }
  }
}

// Q2_K and Q3_K put value e = 128h + 32g + l's low two bits at bits 2g of qs[32h + l].
void pack_two_bits(const uint8_t* q, uint8_t* qs) {
  std::memset(qs, 0, 64);
  for (int e = 0; e < kQK_K; ++e) qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>((q[e] & 3) << (2 * ((e % 128) / 32)));
}

// Q2_K: groups of 16, 4-bit scales and offsets (scales[j] = sc | mn << 4), 2-bit codes.
void quantize_q2_k(const float* x, BlockQ2_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    uint8_t sc[16], mn[16], q[kQK_K];
    quantize_scale_min<16, 4, 16>(x, b[i].d, b[i].dmin, sc, mn, q);
    for (int j = 0; j < 16; ++j) b[i].scales[j] = static_cast<uint8_t>(sc[j] | (mn[j] << 4));
    pack_two_bits(q, b[i].qs);
  }
}

// Q3_K: groups of 16, x ~ d * s_j * (u - 4) with u in 0..7 and s_j a signed 6-bit scale (stored
// plus 32: its low four bits in nibble j / 8 of byte j % 8, its high two at bits 2 (j / 4) of
// byte 8 + j % 4); u's low two bits in qs, its third in hmask (bit e / 32 of byte e % 32).
void quantize_q3_k(const float* x, BlockQ3_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    // Per group the extreme value maps to -4, the one end of [-4, 3].
    float scale[16], max_scale = 0;
    for (int j = 0; j < 16; ++j) {
      scale[j] = signed_absmax(x + 16 * j, 16) / -4.0f;
      max_scale = std::max(max_scale, std::fabs(scale[j]));
    }
    b[i].d = fp32_to_fp16(max_scale / 31.0f);
    const float d = fp16_to_fp32(b[i].d);
    uint8_t q[kQK_K];
    std::memset(b[i].scales, 0, sizeof b[i].scales);
    std::memset(b[i].hmask, 0, sizeof b[i].hmask);
    for (int j = 0; j < 16; ++j) {
      const int s = d > 0 ? std::clamp(nearest(scale[j] / d), -32, 31) : 0;
      const int stored = s + 32;
      b[i].scales[j % 8] |= static_cast<uint8_t>((stored & 15) << (4 * (j / 8)));
      b[i].scales[8 + j % 4] |= static_cast<uint8_t>((stored >> 4) << (2 * (j / 4)));
      const float step = d * float(s);
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * j + l;
        q[e] = static_cast<uint8_t>((step != 0 ? std::clamp(nearest(x[e] / step), -4, 3) : 0) + 4);
        b[i].hmask[e % 32] |= static_cast<uint8_t>((q[e] >> 2) << (e / 32));
      }
    }
    pack_two_bits(q, b[i].qs);
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

// IQ4_NL and IQ4_XS: the grid code nearest to v (in units of the group's scale).
int nearest_iq4(float v) {
  int best = 0;
  for (int q = 1; q < 16; ++q) {
    if (std::fabs(v - kIQ4Values[q]) < std::fabs(v - kIQ4Values[best])) best = q;
  }
  return best;
}

// The scale of a 32-value group on the IQ4 grid: its extreme value on the grid's (-127), refined
// once by least squares over the codes it gives.
float iq4_group_scale(const float* x) {
  const float d = signed_absmax(x, 32) / float(kIQ4Values[0]);
  if (d == 0) return 0;
  double xv = 0, vv = 0;
  for (int j = 0; j < 32; ++j) {
    const double v = kIQ4Values[nearest_iq4(x[j] / d)];
    xv += double(x[j]) * v;
    vv += v * v;
  }
  return vv > 0 ? float(xv / vv) : d;
}

// Codes of 32 values against scale d, packed as Q4_0's nibbles.
void pack_iq4_group(const float* x, float d, uint8_t* qs) {
  const float id = d != 0 ? 1.0f / d : 0.0f;
  int q[32];
  for (int j = 0; j < 32; ++j) q[j] = nearest_iq4(x[j] * id);
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
}

void quantize_iq4_nl(const float* x, BlockIQ4_NL* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    b[i].d = fp32_to_fp16(iq4_group_scale(x));
    pack_iq4_group(x, fp16_to_fp32(b[i].d), b[i].qs);
  }
}

// IQ4_XS: the groups' scales as 6-bit multiples of d in -32 .. 31, the largest in magnitude at -32.
void quantize_iq4_xs(const float* x, BlockIQ4_XS* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float scale[8];
    for (int g = 0; g < 8; ++g) scale[g] = iq4_group_scale(x + 32 * g);
    b[i].d = fp32_to_fp16(signed_absmax(scale, 8) / -32.0f);
    const float d = fp16_to_fp32(b[i].d);
    b[i].scales_h = 0;
    std::memset(b[i].scales_l, 0, sizeof b[i].scales_l);
    for (int g = 0; g < 8; ++g) {
      const int l = d != 0 ? std::clamp(nearest(scale[g] / d), -32, 31) + 32 : 32;
      b[i].scales_l[g / 2] = static_cast<uint8_t>(b[i].scales_l[g / 2] | ((l & 15) << (4 * (g % 2))));
      b[i].scales_h = static_cast<uint16_t>(b[i].scales_h | ((l >> 4) << (2 * g)));
      pack_iq4_group(x + 32 * g, d * float(l - 32), b[i].qs + 16 * g);
    }
  }
}

// TQ1_0 and TQ2_0 as llama.cpp's reference quantizers: d = the block's largest magnitude, each
// value rounded to -1, 0 or 1 of it (made for ternary-trained weights; for others a coarse
// approximation).
void ternary_codes(const float* x, float& d, uint8_t codes[256]) {
  float amax = 0;
  for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(x[i]));
  d = amax;
  const float id = amax != 0 ? 1.0f / amax : 0.0f;
  // Halves away from zero (lroundf), as llama.cpp's.
  for (int i = 0; i < 256; ++i) codes[i] = static_cast<uint8_t>(std::clamp(int(std::lroundf(x[i] * id)), -1, 1) + 1);
}

void quantize_tq1_0(const float* x, BlockTQ1_0* b, int64_t nb) {
  // Five codes (or four, for qh) as one base-3 number, most significant first, then as a fraction
  // of 3^5 = 243 scaled to 256, rounded up: digit n reads back as 3 (q 3^n mod 256) / 256.
  auto pack = [](const uint8_t* codes, int count, int stride) {
    uint32_t q = 0;
    for (int n = 0; n < count; ++n) q = 3 * q + codes[n * stride];
    for (int n = count; n < 5; ++n) q *= 3;
    return static_cast<uint8_t>((q * 256 + 242) / 243);
  };
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float d;
    uint8_t codes[256];
    ternary_codes(x, d, codes);
    b[i].d = fp32_to_fp16(d);
    for (int m = 0; m < 32; ++m) b[i].qs[m] = pack(codes + m, 5, 32);
    for (int m = 0; m < 16; ++m) b[i].qs[32 + m] = pack(codes + 160 + m, 5, 16);
    for (int m = 0; m < 4; ++m) b[i].qh[m] = pack(codes + 240 + m, 4, 4);
  }
}

void quantize_tq2_0(const float* x, BlockTQ2_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float d;
    uint8_t codes[256];
    ternary_codes(x, d, codes);
    b[i].d = fp32_to_fp16(d);
    for (int j = 0; j < 64; ++j) {
      const int base = 128 * (j / 32) + j % 32;
      b[i].qs[j] = static_cast<uint8_t>(codes[base] | (codes[base + 32] << 2) | (codes[base + 64] << 4) |
                                        (codes[base + 96] << 6));
    }
  }
}

}  // namespace

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
    case GgmlType::Q4_0: return quantize_symmetric<8>(src, static_cast<BlockQ4_0*>(dst), nb);
    case GgmlType::Q5_0: return quantize_symmetric<16>(src, static_cast<BlockQ5_0*>(dst), nb);
    case GgmlType::Q4_1: return quantize_with_min<16>(src, static_cast<BlockQ4_1*>(dst), nb);
    case GgmlType::Q5_1: return quantize_with_min<32>(src, static_cast<BlockQ5_1*>(dst), nb);
    case GgmlType::Q2_K: return quantize_q2_k(src, static_cast<BlockQ2_K*>(dst), nb);
    case GgmlType::Q3_K: return quantize_q3_k(src, static_cast<BlockQ3_K*>(dst), nb);
    case GgmlType::Q4_K: return quantize_q45_k<false>(src, static_cast<BlockQ4_K*>(dst), nb);
    case GgmlType::Q5_K: return quantize_q45_k<true>(src, static_cast<BlockQ5_K*>(dst), nb);
    case GgmlType::Q6_K: return quantize_q6_k(src, static_cast<BlockQ6_K*>(dst), nb);
    case GgmlType::IQ4_NL: return quantize_iq4_nl(src, static_cast<BlockIQ4_NL*>(dst), nb);
    case GgmlType::IQ4_XS: return quantize_iq4_xs(src, static_cast<BlockIQ4_XS*>(dst), nb);
    case GgmlType::IQ3_XXS: return quantize_iq3_xxs(src, static_cast<BlockIQ3_XXS*>(dst), nb);
    case GgmlType::IQ3_S: return quantize_iq3_s(src, static_cast<BlockIQ3_S*>(dst), nb);
    case GgmlType::IQ2_XXS: return quantize_iq2_xxs(src, static_cast<BlockIQ2_XXS*>(dst), nb);
    case GgmlType::IQ2_XS: return quantize_iq2_xs(src, static_cast<BlockIQ2_XS*>(dst), nb);
    case GgmlType::IQ2_S: return quantize_iq2_s(src, static_cast<BlockIQ2_S*>(dst), nb);
    case GgmlType::IQ1_S: return quantize_iq1_s(src, static_cast<BlockIQ1_S*>(dst), nb);
    case GgmlType::IQ1_M: return quantize_iq1_m(src, static_cast<BlockIQ1_M*>(dst), nb);
    case GgmlType::TQ1_0: return quantize_tq1_0(src, static_cast<BlockTQ1_0*>(dst), nb);
    case GgmlType::TQ2_0: return quantize_tq2_0(src, static_cast<BlockTQ2_0*>(dst), nb);
  }
  throw Error(fmt::format("quantize_row: no quantizer for type {} ({})", static_cast<uint32_t>(type),
                          type_id_name(static_cast<uint32_t>(type))));
}

}  // namespace engine
