// IQ3_XXS and IQ3_S quantizers (layouts: quant_blocks.h). Each chunk of four values takes the grid
// entry nearest to its magnitudes (each magnitude rounded to the nearest of the grid's eight
// levels, then a table maps the four levels to the grid entry nearest to them); the signs are
// the values' own, except that IQ3_XXS needs an even number of them per eight values, so the
// value whose flip costs least is flipped where the count is odd. A group's scale is the best of
// four candidates (its largest magnitude on one of four levels) and their least-squares refits; the
// super-block's d puts the largest group scale at the top 4-bit step, and each group then takes
// the best of the three steps nearest to its scale. Simpler than llama.cpp's search (no
// importance weights), for test and benchmark models.
#include "quantize_iq3.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/half.h"

namespace engine {
namespace {

struct Iq3Format {
  const uint32_t* grid;
  int entries;
  std::array<float, 8> levels;  // the values a grid entry's bytes take, ascending
  float scale_unit;             // a group's scale is d * (2s + 1) * scale_unit
  bool even_signs;              // IQ3_XXS: an even number of negative values per eight
};

constexpr Iq3Format kXXS{kIQ3XXSGrid, 256, {4, 12, 20, 28, 36, 44, 52, 62}, 0.25f, true};
constexpr Iq3Format kS{kIQ3SGrid, 512, {1, 3, 5, 7, 9, 11, 13, 15}, 1.0f, false};

float grid_value(uint32_t entry, int j) { return float((entry >> (8 * j)) & 255u); }

// For each four levels (level index of value j in bits 3j .. 3j + 2), the grid entry nearest to
// them.
std::vector<uint16_t> nearest_entries(const Iq3Format& f) {
  std::vector<uint16_t> table(4096);
  for (int key = 0; key < 4096; ++key) {
    double best = INFINITY;
    for (int e = 0; e < f.entries; ++e) {
      double dist = 0;
      for (int j = 0; j < 4; ++j) {
        const double diff = f.levels[(key >> (3 * j)) & 7] - grid_value(f.grid[e], j);
        dist += diff * diff;
      }
      if (dist < best) {
        best = dist;
        table[key] = uint16_t(e);
      }
    }
  }
  return table;
}

const uint16_t* nearest_entry_table(const Iq3Format& f) {
  static const std::vector<uint16_t> xxs = nearest_entries(kXXS), s = nearest_entries(kS);
  return f.grid == kXXS.grid ? xxs.data() : s.data();
}

// The nearest level: the levels are evenly spaced but for IQ3_XXS's last (52, 62), so the
// estimate from the spacing is at most one step off.
int nearest_level(const Iq3Format& f, float v) {
  const float step = f.levels[1] - f.levels[0];
  int k = std::clamp(int(std::lrint((v - f.levels[0]) / step)), 0, 7);
  if (k > 0 && std::fabs(v - f.levels[k - 1]) < std::fabs(v - f.levels[k])) --k;
  if (k < 7 && std::fabs(v - f.levels[k + 1]) < std::fabs(v - f.levels[k])) ++k;
  return k;
}

// A 32-value group's codes: grid entries of its eight chunks and the sign bits of its four runs
// of eight values (bit j: value 8l + j negative).
struct Iq3Group {
  uint16_t entry[8];
  uint8_t signs[4];
};

// Value i's magnitude and its value (signed) in units of the scale.
float magnitude(const Iq3Format& f, const Iq3Group& g, int i) { return grid_value(f.grid[g.entry[i / 4]], i % 4); }
float signed_value(const Iq3Format& f, const Iq3Group& g, int i) {
  return (g.signs[i / 8] >> (i % 8)) & 1u ? -magnitude(f, g, i) : magnitude(f, g, i);
}

// The codes of 32 values x at `scale` (value = scale * grid value) and their squared error.
double pick_codes(const Iq3Format& f, const float* x, float scale, Iq3Group& out) {
  const uint16_t* table = nearest_entry_table(f);
  const float inv = scale > 0 ? 1.0f / scale : 0.0f;
  for (int c = 0; c < 8; ++c) {
    int key = 0;
    for (int j = 0; j < 4; ++j) key |= nearest_level(f, std::fabs(x[4 * c + j]) * inv) << (3 * j);
    out.entry[c] = table[key];
  }
  for (int l = 0; l < 4; ++l) {
    uint32_t signs = 0;
    int cheapest = 0;
    float cheapest_cost = INFINITY;
    for (int j = 0; j < 8; ++j) {
      const float x_j = x[8 * l + j];
      if (x_j < 0) signs |= 1u << j;
      const float cost = std::fabs(x_j) * magnitude(f, out, 8 * l + j);
      if (cost < cheapest_cost) {
        cheapest_cost = cost;
        cheapest = j;
      }
    }
    if (f.even_signs && std::popcount(signs) % 2 == 1) signs ^= 1u << cheapest;
    out.signs[l] = uint8_t(signs);
  }
  double err = 0;
  for (int i = 0; i < 32; ++i) {
    const double diff = double(x[i]) - double(scale) * double(signed_value(f, out, i));
    err += diff * diff;
  }
  return err;
}

// The least-squares scale for x against the values `codes` stand for.
float refit_scale(const Iq3Format& f, const float* x, const Iq3Group& codes) {
  double xv = 0, vv = 0;
  for (int i = 0; i < 32; ++i) {
    const float v = signed_value(f, codes, i);
    xv += double(x[i]) * double(v);
    vv += double(v) * double(v);
  }
  return vv > 0 && xv > 0 ? float(xv / vv) : 0.0f;
}

// The best scale found for a 32-value group (0 for a group of zeros).
float group_scale(const Iq3Format& f, const float* x) {
  float amax = 0;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (amax == 0) return 0;
  Iq3Group codes;
  float best_scale = 0;
  double best = INFINITY;
  // Candidates: the largest magnitude on the three top levels (where Gaussian-like groups do
  // best; the lower ones never won on such data) and on the lowest (a group of near-equal
  // magnitudes: the grid has four equal values only at its lowest level).
  for (const int top : {7, 6, 5, 0}) {
    const float level = f.levels[top];
    for (float scale : {amax / level, 0.0f}) {
      if (scale == 0) {  // the least-squares refit of the candidate before it
        scale = refit_scale(f, x, codes);
        if (scale == 0) continue;
      }
      const double err = pick_codes(f, x, scale, codes);
      if (err < best) {
        best = err;
        best_scale = scale;
      }
    }
  }
  return best_scale;
}

// A super-block's d and its groups' 4-bit scale steps and codes.
void quantize_super_block(const Iq3Format& f, const float* x, uint16_t& d_out, int steps[8], Iq3Group codes[8]) {
  float scale[8], top = 0;
  for (int g = 0; g < 8; ++g) {
    scale[g] = group_scale(f, x + 32 * g);
    top = std::max(top, scale[g]);
  }
  d_out = fp32_to_fp16(top / (31.0f * f.scale_unit));
  const float d = fp16_to_fp32(d_out);
  for (int g = 0; g < 8; ++g) {
    steps[g] = 0;
    if (d == 0) {
      pick_codes(f, x + 32 * g, 0.0f, codes[g]);
      continue;
    }
    const int nearest = std::clamp(int(std::lrint((scale[g] / (d * f.scale_unit) - 1.0f) / 2.0f)), 0, 15);
    double best = INFINITY;
    for (int s = std::max(nearest - 1, 0); s <= std::min(nearest + 1, 15); ++s) {
      Iq3Group candidate;
      const double err = pick_codes(f, x + 32 * g, d * float(2 * s + 1) * f.scale_unit, candidate);
      if (err < best) {
        best = err;
        steps[g] = s;
        codes[g] = candidate;
      }
    }
  }
}

}  // namespace

void quantize_iq3_xxs(const float* x, BlockIQ3_XXS* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    int steps[8];
    Iq3Group codes[8];
    quantize_super_block(kXXS, x, b[i].d, steps, codes);
    for (int g = 0; g < 8; ++g) {
      uint32_t aux = uint32_t(steps[g]) << 28;
      for (int l = 0; l < 4; ++l) aux |= uint32_t(codes[g].signs[l] & 127u) << (7 * l);
      std::memcpy(b[i].aux + 4 * g, &aux, 4);
      for (int c = 0; c < 8; ++c) b[i].qs[8 * g + c] = uint8_t(codes[g].entry[c]);
    }
  }
}

void quantize_iq3_s(const float* x, BlockIQ3_S* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    int steps[8];
    Iq3Group codes[8];
    quantize_super_block(kS, x, b[i].d, steps, codes);
    std::memset(b[i].qh, 0, sizeof b[i].qh);
    std::memset(b[i].scales, 0, sizeof b[i].scales);
    for (int g = 0; g < 8; ++g) {
      b[i].scales[g / 2] = uint8_t(b[i].scales[g / 2] | (steps[g] << (4 * (g % 2))));
      for (int l = 0; l < 4; ++l) b[i].signs[4 * g + l] = codes[g].signs[l];
      for (int c = 0; c < 8; ++c) {
        b[i].qs[8 * g + c] = uint8_t(codes[g].entry[c] & 255u);
        b[i].qh[g] = uint8_t(b[i].qh[g] | ((codes[g].entry[c] >> 8) << c));
      }
    }
  }
}

}  // namespace engine
