// Scalar dequantization of every supported GGUF block format. Layouts (ggml's, little-endian):
//   Q4_0  {f16 d; u8 qs[16]}                   x = (q - 8) d, q_j = qs[j]&15, q_{j+16} = qs[j]>>4
//   Q4_1  {f16 d, m; u8 qs[16]}                x = q d + m
//   Q5_0  {f16 d; u32 qh; u8 qs[16]}           5th bit of element j is bit j of qh; x = (q - 16) d
//   Q5_1  {f16 d, m; u32 qh; u8 qs[16]}        x = q d + m
//   Q8_0  {f16 d; i8 qs[32]}                   x = q d
//   Q2_K  {u8 scales[16]; u8 qs[64]; f16 d, dmin}             16 groups of 16, 4-bit scale/min
//   Q3_K  {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}     16 groups of 16, 6-bit signed scale
//   Q4_K  {f16 d, dmin; u8 scales[12]; u8 qs[128]}            8 groups of 32, 6-bit scale/min
//   Q5_K  {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]} as Q4_K plus a 5th bit
//   Q6_K  {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}       16 groups of 16, x = (q - 32) d s
//   IQ4_NL {f16 d; u8 qs[16]}                  x = kIQ4Values[q] d, q as Q4_0's
//   IQ4_XS {f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}  8 groups of 32, x = kIQ4Values[q] d (s - 32)
//   IQ3_XXS {f16 d; u8 qs[64]; u8 aux[32]}    8 groups of 32, x = +-grid d (2s + 1) / 4 (quant_blocks.h)
//   IQ3_S  {f16 d; u8 qs[64]; u8 qh[8]; u8 signs[32]; u8 scales[4]}  8 groups of 32, x = +-grid d (2s + 1)
//   IQ2_XXS {f16 d; u8 qs[64]}                 8 groups of 32, x = +-grid d (2s + 1) / 8 (quant_blocks.h)
//   IQ2_XS {f16 d; u8 qs[64]; u8 scales[8]}    16 values a scale, x = +-grid d (2s + 1) / 8
//   IQ2_S  {f16 d; u8 qs[32]; u8 signs[32]; u8 qh[8]; u8 scales[8]}  as IQ2_XS, 10-bit grid indices
//   IQ1_S  {f16 d; u8 qs[32]; u16 qh[8]}       8 groups of 32, x = d (2s + 1) (grid + delta), grid -1/0/1
//   IQ1_M  {u8 qs[32]; u8 qh[16]; u8 scales[8]}  16 values a scale, delta per 8, d in the scales' top nibbles
//   TQ1_0  {u8 qs[48]; u8 qh[4]; f16 d}        x = (t - 1) d, five base-3 digits t a byte (quant_blocks.h)
//   TQ2_0  {u8 qs[64]; f16 d}                  x = (q - 1) d, 2-bit q
#include <cstring>

#include <fmt/format.h>

#include "engine/error.h"
#include "engine/half.h"
#include "engine/quantize.h"
#include "quant_blocks.h"

namespace engine {
namespace {

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = float((b[i].qs[j] & 15) - 8) * d;
      y[j + 16] = float((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequant_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = float(b[i].qs[j] & 15) * d + m;
      y[j + 16] = float(b[i].qs[j] >> 4) * d + m;
    }
  }
}

void dequant_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const float d = fp16_to_fp32(b[i].d);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      int lo = (b[i].qs[j] & 15) | (((qh >> j) & 1) << 4);
      int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = float(lo - 16) * d;
      y[j + 16] = float(hi - 16) * d;
    }
  }
}

void dequant_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      int lo = (b[i].qs[j] & 15) | (((qh >> j) & 1) << 4);
      int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = float(lo) * d + m;
      y[j + 16] = float(hi) * d + m;
    }
  }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 32; ++j) y[j] = float(b[i].qs[j]) * d;
  }
}

void dequant_q2_k(const BlockQ2_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int e = 0; e < kQK_K; ++e) {
      const int half = e / 128, r = e % 128;
      const int q = (b[i].qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
      const uint8_t sc = b[i].scales[e / 16];
      y[e] = d * float(sc & 15) * float(q) - dmin * float(sc >> 4);
    }
  }
}

void dequant_q3_k(const BlockQ3_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const float d = fp16_to_fp32(b[i].d);
    int scales[16];
    for (int s = 0; s < 16; ++s) {
      int lo = (b[i].scales[s % 8] >> (4 * (s / 8))) & 15;
      int hi = (b[i].scales[8 + s % 4] >> (2 * (s / 4))) & 3;
      scales[s] = (lo | (hi << 4)) - 32;
    }
    for (int e = 0; e < kQK_K; ++e) {
      const int half = e / 128, r = e % 128;
      const int low = (b[i].qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
      const int high_set = (b[i].hmask[e % 32] >> (e / 32)) & 1;
      y[e] = d * float(scales[e / 16]) * float(low - (high_set ? 0 : 4));
    }
  }
}

void dequant_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int g = 0; g < 8; ++g) {
      uint8_t sc, m;
      unpack_scale_min_k4(b[i].scales, g, &sc, &m);
      const float scale = d * sc, offset = dmin * m;
      const uint8_t* qs = b[i].qs + (g / 2) * 32;
      const int shift = 4 * (g % 2);
      for (int l = 0; l < 32; ++l) y[g * 32 + l] = scale * float((qs[l] >> shift) & 15) - offset;
    }
  }
}

void dequant_q5_k(const BlockQ5_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int g = 0; g < 8; ++g) {
      uint8_t sc, m;
      unpack_scale_min_k4(b[i].scales, g, &sc, &m);
      const float scale = d * sc, offset = dmin * m;
      const uint8_t* qs = b[i].qs + (g / 2) * 32;
      const int shift = 4 * (g % 2);
      for (int l = 0; l < 32; ++l) {
        int q = ((qs[l] >> shift) & 15) | (((b[i].qh[l] >> g) & 1) << 4);
        y[g * 32 + l] = scale * float(q) - offset;
      }
    }
  }
}

void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const float d = fp16_to_fp32(b[i].d);
    for (int e = 0; e < kQK_K; ++e) {
      const int half = e / 128, r = e % 128;
      const int low = (b[i].ql[half * 64 + r % 64] >> (4 * (r / 64))) & 15;
      const int high = (b[i].qh[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
      y[e] = d * float(b[i].scales[e / 16]) * float((low | (high << 4)) - 32);
    }
  }
}

void dequant_iq4_nl(const BlockIQ4_NL* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * float(kIQ4Values[b[i].qs[j] & 15]);
      y[j + 16] = d * float(kIQ4Values[b[i].qs[j] >> 4]);
    }
  }
}

void dequant_iq4_xs(const BlockIQ4_XS* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int g = 0; g < 8; ++g, y += 32) {
      const float dl = d * float(iq4_xs_scale(b[i], g));
      const uint8_t* qs = b[i].qs + 16 * g;
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * float(kIQ4Values[qs[j] & 15]);
        y[j + 16] = dl * float(kIQ4Values[qs[j] >> 4]);
      }
    }
  }
}

// Value j of a grid entry (four or eight values, byte j), negated where bit j of `signs` is set.
float signed_grid_value(uint64_t entry, uint32_t signs, int j) {
  const float v = float((entry >> (8 * j)) & 255u);
  return (signs >> j) & 1u ? -v : v;
}

// The eight signs of a 7-bit index: an eighth makes their count even.
uint32_t even_signs(uint32_t index) { return __builtin_popcount(index) % 2 == 1 ? index | 128u : index; }

void dequant_iq3_xxs(const BlockIQ3_XXS* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int g = 0; g < 8; ++g, y += 32) {
      uint32_t aux;
      std::memcpy(&aux, b[i].aux + 4 * g, 4);
      const float dl = d * float(2 * (aux >> 28) + 1) / 4.0f;
      for (int l = 0; l < 4; ++l) {
        const uint32_t signs = even_signs((aux >> (7 * l)) & 127u);
        for (int half = 0; half < 2; ++half) {
          const uint32_t entry = kIQ3XXSGrid[b[i].qs[8 * g + 2 * l + half]];
          for (int j = 0; j < 4; ++j) y[8 * l + 4 * half + j] = dl * signed_grid_value(entry, signs >> (4 * half), j);
        }
      }
    }
  }
}

void dequant_iq3_s(const BlockIQ3_S* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int g = 0; g < 8; ++g, y += 32) {
      const float dl = d * float(2 * ((b[i].scales[g / 2] >> (4 * (g % 2))) & 15) + 1);
      for (int c = 0; c < 8; ++c) {
        const uint32_t entry = kIQ3SGrid[b[i].qs[8 * g + c] | (((b[i].qh[g] >> c) & 1u) << 8)];
        const uint32_t signs = b[i].signs[4 * g + c / 2] >> (4 * (c % 2));
        for (int j = 0; j < 4; ++j) y[4 * c + j] = dl * signed_grid_value(entry, signs, j);
      }
    }
  }
}

void dequant_iq2_xxs(const BlockIQ2_XXS* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int g = 0; g < 8; ++g, y += 32) {
      uint32_t aux;
      std::memcpy(&aux, b[i].qs + 8 * g + 4, 4);
      const float dl = d * float(2 * (aux >> 28) + 1) / 8.0f;
      for (int l = 0; l < 4; ++l) {
        const uint64_t entry = kIQ2XXSGrid[b[i].qs[8 * g + l]];
        const uint32_t signs = even_signs((aux >> (7 * l)) & 127u);
        for (int j = 0; j < 8; ++j) y[8 * l + j] = dl * signed_grid_value(entry, signs, j);
      }
    }
  }
}

// IQ2_XS and IQ2_S: a 4-bit scale per 16 values (nibble h of scales[g] for entries 2h, 2h + 1);
// entry(block, g, l) gives entry l of group g as its grid word and eight signs.
template <typename Block, typename Entry>
void dequant_iq2_half_scales(const Block* b, float* y, int64_t nb, Entry entry) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int g = 0; g < 8; ++g, y += 32) {
      for (int l = 0; l < 4; ++l) {
        const int scale = (b[i].scales[g] >> (4 * (l / 2))) & 15;
        const float dl = d * float(2 * scale + 1) / 8.0f;
        const auto [grid, signs] = entry(b[i], g, l);
        for (int j = 0; j < 8; ++j) y[8 * l + j] = dl * signed_grid_value(grid, signs, j);
      }
    }
  }
}

struct GridEntry {
  uint64_t grid;
  uint32_t signs;
};

void dequant_iq2_xs(const BlockIQ2_XS* b, float* y, int64_t nb) {
  dequant_iq2_half_scales(b, y, nb, [](const BlockIQ2_XS& x, int g, int l) {
    const uint32_t code = x.qs[2 * (4 * g + l)] | (uint32_t(x.qs[2 * (4 * g + l) + 1]) << 8);
    return GridEntry{kIQ2XSGrid[code & 511u], even_signs(code >> 9)};
  });
}

void dequant_iq2_s(const BlockIQ2_S* b, float* y, int64_t nb) {
  dequant_iq2_half_scales(b, y, nb, [](const BlockIQ2_S& x, int g, int l) {
    const uint32_t index = x.qs[4 * g + l] | (((uint32_t(x.qh[g]) >> (2 * l)) & 3u) << 8);
    return GridEntry{kIQ2SGrid[index], uint32_t(x.signs[4 * g + l])};
  });
}

// IQ1_S and IQ1_M: grid value j of an entry (stored plus one) and an entry's shift, +-1/8.
float iq1_grid_value(uint64_t entry, int j) { return float(int((entry >> (8 * j)) & 255u) - 1); }
float iq1_delta(bool negative) { return negative ? -0.125f : 0.125f; }

void dequant_iq1_s(const BlockIQ1_S* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int g = 0; g < 8; ++g, y += 32) {
      const uint32_t qh = b[i].qh[g];
      const float dl = d * float(2 * ((qh >> 12) & 7u) + 1);
      const float delta = iq1_delta(qh & 0x8000u);
      for (int l = 0; l < 4; ++l) {
        const uint64_t entry = kIQ1SGrid[b[i].qs[4 * g + l] | (((qh >> (3 * l)) & 7u) << 8)];
        for (int j = 0; j < 8; ++j) y[8 * l + j] = dl * (iq1_grid_value(entry, j) + delta);
      }
    }
  }
}

void dequant_iq1_m(const BlockIQ1_M* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    uint16_t sc[4];
    std::memcpy(sc, b[i].scales, 8);
    const uint16_t d_bits = uint16_t((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0u) | ((sc[2] >> 4) & 0x0f00u) | (sc[3] & 0xf000u));
    const float d = fp16_to_fp32(d_bits);
    for (int e = 0; e < 32; ++e, y += 8) {  // entry e: values 8e .. 8e + 7, scale of values 16 (e / 2) ..
      const int h = e / 2;
      const float dl = d * float(2 * ((sc[h / 4] >> (3 * (h % 4))) & 7u) + 1);
      const uint32_t qh = b[i].qh[e / 2] >> (4 * (e % 2));
      const uint64_t entry = kIQ1SGrid[b[i].qs[e] | ((qh & 7u) << 8)];
      const float delta = iq1_delta(qh & 8u);
      for (int j = 0; j < 8; ++j) y[j] = dl * (iq1_grid_value(entry, j) + delta);
    }
  }
}

// TQ1_0: the digits in the order the format lists them (not through tq1_code).
void dequant_tq1_0(const BlockTQ1_0* b, float* y, int64_t nb) {
  constexpr uint32_t kPow3[5] = {1, 3, 9, 27, 81};
  auto digit = [&](uint8_t q, int n) { return float(int((uint32_t(uint8_t(q * kPow3[n])) * 3u) >> 8) - 1); };
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int n = 0; n < 5; ++n) {
      for (int m = 0; m < 32; ++m) *y++ = digit(b[i].qs[m], n) * d;
    }
    for (int n = 0; n < 5; ++n) {
      for (int m = 0; m < 16; ++m) *y++ = digit(b[i].qs[32 + m], n) * d;
    }
    for (int n = 0; n < 4; ++n) {
      for (int m = 0; m < 4; ++m) *y++ = digit(b[i].qh[m], n) * d;
    }
  }
}

void dequant_tq2_0(const BlockTQ2_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 64; j += 32) {
      for (int l = 0; l < 4; ++l) {
        for (int m = 0; m < 32; ++m) *y++ = float(int((b[i].qs[j + m] >> (2 * l)) & 3) - 1) * d;
      }
    }
  }
}

}  // namespace

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  const int64_t nb = n / traits(type).block_size;
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, n * sizeof(float)); return;
    case GgmlType::F16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
      return;
    }
    case GgmlType::BF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
      return;
    }
    case GgmlType::Q4_0: return dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb);
    case GgmlType::Q4_1: return dequant_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb);
    case GgmlType::Q5_0: return dequant_q5_0(static_cast<const BlockQ5_0*>(src), dst, nb);
    case GgmlType::Q5_1: return dequant_q5_1(static_cast<const BlockQ5_1*>(src), dst, nb);
    case GgmlType::Q8_0: return dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb);
    case GgmlType::Q2_K: return dequant_q2_k(static_cast<const BlockQ2_K*>(src), dst, nb);
    case GgmlType::Q3_K: return dequant_q3_k(static_cast<const BlockQ3_K*>(src), dst, nb);
    case GgmlType::Q4_K: return dequant_q4_k(static_cast<const BlockQ4_K*>(src), dst, nb);
    case GgmlType::Q5_K: return dequant_q5_k(static_cast<const BlockQ5_K*>(src), dst, nb);
    case GgmlType::Q6_K: return dequant_q6_k(static_cast<const BlockQ6_K*>(src), dst, nb);
    case GgmlType::IQ4_NL: return dequant_iq4_nl(static_cast<const BlockIQ4_NL*>(src), dst, nb);
    case GgmlType::IQ4_XS: return dequant_iq4_xs(static_cast<const BlockIQ4_XS*>(src), dst, nb);
    case GgmlType::IQ3_XXS: return dequant_iq3_xxs(static_cast<const BlockIQ3_XXS*>(src), dst, nb);
    case GgmlType::IQ3_S: return dequant_iq3_s(static_cast<const BlockIQ3_S*>(src), dst, nb);
    case GgmlType::IQ2_XXS: return dequant_iq2_xxs(static_cast<const BlockIQ2_XXS*>(src), dst, nb);
    case GgmlType::IQ2_XS: return dequant_iq2_xs(static_cast<const BlockIQ2_XS*>(src), dst, nb);
    case GgmlType::IQ2_S: return dequant_iq2_s(static_cast<const BlockIQ2_S*>(src), dst, nb);
    case GgmlType::IQ1_S: return dequant_iq1_s(static_cast<const BlockIQ1_S*>(src), dst, nb);
    case GgmlType::IQ1_M: return dequant_iq1_m(static_cast<const BlockIQ1_M*>(src), dst, nb);
    case GgmlType::TQ1_0: return dequant_tq1_0(static_cast<const BlockTQ1_0*>(src), dst, nb);
    case GgmlType::TQ2_0: return dequant_tq2_0(static_cast<const BlockTQ2_0*>(src), dst, nb);
  }
  throw Error(fmt::format("dequantize_row: unsupported type id {}", static_cast<uint32_t>(type)));
}

}  // namespace engine
