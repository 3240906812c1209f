// Quantizers of the grid i-quants, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS and IQ2_S (layouts:
// quant_blocks.h). Each grid entry covers four (IQ3) or eight (IQ2) values; a run of values takes
// the entry nearest to its magnitudes (each magnitude rounded to the nearest of the grid's levels,
// then a table maps those levels to the grid entry nearest to them). The signs are the values'
// own, except that IQ3_XXS, IQ2_XXS and IQ2_XS need an even number of them per eight values, so
// the value whose flip costs least is flipped where the count is odd. Each scale group's scale
// (32 values, or 16 for IQ2_XS and IQ2_S) is the best of a few candidates (its largest magnitude
// on one of the top levels or the lowest) and their least-squares refits; the super-block's d
// puts the largest group scale at the top 4-bit step, and each group then takes the best of the
// three steps nearest to its scale. Simpler than llama.cpp's search (no importance weights), for
// test and benchmark models.
#include "quantize_iq.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/half.h"

namespace engine {
namespace {

struct GridFormat {
  int id;                    // which of the five (kFormats' index)
  uint64_t (*entry)(int e);  // grid entry e: value j in byte j
  int entries;
  int entry_values;              // 4 or 8
  int n_levels;                  // the distinct values the entries' bytes take
  std::array<float, 8> levels;   // those values, ascending
  std::array<int, 4> top_levels;  // the levels a group's largest magnitude is tried on (-1: none)
  int scale_values;              // values one 4-bit scale covers
  float scale_unit;              // a group's scale is d * (2s + 1) * scale_unit
  bool even_signs;               // an even number of negative values per eight
};

constexpr GridFormat kIQ3XXS{0, [](int e) { return uint64_t(kIQ3XXSGrid[e]); }, 256, 4, 8, {4, 12, 20, 28, 36, 44, 52, 62},
                             {7, 6, 5, 0}, 32, 0.25f, true};
constexpr GridFormat kIQ3S{1, [](int e) { return uint64_t(kIQ3SGrid[e]); }, 512, 4, 8, {1, 3, 5, 7, 9, 11, 13, 15},
                           {7, 6, 5, 0}, 32, 1.0f, false};
constexpr GridFormat kIQ2XXS{2, [](int e) { return kIQ2XXSGrid[e]; }, 256, 8, 3, {8, 25, 43}, {2, 1, 0, -1}, 32, 0.125f, true};
constexpr GridFormat kIQ2XS{3, [](int e) { return kIQ2XSGrid[e]; }, 512, 8, 3, {8, 25, 43}, {2, 1, 0, -1}, 16, 0.125f, true};
constexpr GridFormat kIQ2S{4, [](int e) { return kIQ2SGrid[e]; }, 1024, 8, 3, {8, 25, 43}, {2, 1, 0, -1}, 16, 0.125f, false};
constexpr const GridFormat* kFormats[] = {&kIQ3XXS, &kIQ3S, &kIQ2XXS, &kIQ2XS, &kIQ2S};

float grid_value(uint64_t entry, int j) { return float((entry >> (8 * j)) & 255u); }

// Keys of entry_values levels: level index of value j times n_levels^j.
int key_count(const GridFormat& f) {
  int n = 1;
  for (int j = 0; j < f.entry_values; ++j) n *= f.n_levels;
  return n;
}

// For each key, the grid entry nearest to its levels.
std::vector<uint16_t> nearest_entries(const GridFormat& f) {
  std::vector<uint16_t> table(key_count(f));
  for (int key = 0; key < int(table.size()); ++key) {
    float want[8];
    for (int j = 0, k = key; j < f.entry_values; ++j, k /= f.n_levels) want[j] = f.levels[k % f.n_levels];
    double best = INFINITY;
    for (int e = 0; e < f.entries; ++e) {
      const uint64_t entry = f.entry(e);
      double dist = 0;
      for (int j = 0; j < f.entry_values; ++j) {
        const double diff = want[j] - grid_value(entry, j);
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

// All five built on the first call (a function-local static: thread-safe; about 0.1 s).
const uint16_t* nearest_entry_table(const GridFormat& f) {
  static const std::vector<uint16_t> tables[] = {nearest_entries(*kFormats[0]), nearest_entries(*kFormats[1]),
                                                 nearest_entries(*kFormats[2]), nearest_entries(*kFormats[3]),
                                                 nearest_entries(*kFormats[4])};
  return tables[f.id].data();
}

// The nearest level: the levels are evenly spaced but for a step or two (IQ3_XXS's last, 52 to
// 62; IQ2's 17 and 18), so the estimate from the first spacing is at most one step off.
int nearest_level(const GridFormat& f, float v) {
  const int last = f.n_levels - 1;
  const float step = f.levels[1] - f.levels[0];
  int k = std::clamp(int(std::lrint((v - f.levels[0]) / step)), 0, last);
  if (k > 0 && std::fabs(v - f.levels[k - 1]) < std::fabs(v - f.levels[k])) --k;
  if (k < last && std::fabs(v - f.levels[k + 1]) < std::fabs(v - f.levels[k])) ++k;
  return k;
}

// A scale group's codes: the grid entries of its runs of entry_values values and the sign bits of
// its runs of eight (bit j: value 8l + j negative).
struct GroupCodes {
  uint16_t entry[8];
  uint8_t signs[4];
};

// Value i's magnitude and its value (signed) in units of the scale.
float magnitude(const GridFormat& f, const GroupCodes& g, int i) {
  return grid_value(f.entry(g.entry[i / f.entry_values]), i % f.entry_values);
}
float signed_value(const GridFormat& f, const GroupCodes& g, int i) {
  return (g.signs[i / 8] >> (i % 8)) & 1u ? -magnitude(f, g, i) : magnitude(f, g, i);
}

// The codes of a scale group's values x at `scale` (value = scale * grid value) and their squared
// error.
double pick_codes(const GridFormat& f, const float* x, float scale, GroupCodes& out) {
  const uint16_t* table = nearest_entry_table(f);
  const float inv = scale > 0 ? 1.0f / scale : 0.0f;
  for (int c = 0; c < f.scale_values / f.entry_values; ++c) {
    int key = 0;
    for (int j = f.entry_values - 1; j >= 0; --j) {
      key = key * f.n_levels + nearest_level(f, std::fabs(x[f.entry_values * c + j]) * inv);
    }
    out.entry[c] = table[key];
  }
  for (int l = 0; l < f.scale_values / 8; ++l) {
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
  for (int i = 0; i < f.scale_values; ++i) {
    const double diff = double(x[i]) - double(scale) * double(signed_value(f, out, i));
    err += diff * diff;
  }
  return err;
}

// The least-squares scale for x against the values `codes` stand for.
float refit_scale(const GridFormat& f, const float* x, const GroupCodes& codes) {
  double xv = 0, vv = 0;
  for (int i = 0; i < f.scale_values; ++i) {
    const float v = signed_value(f, codes, i);
    xv += double(x[i]) * double(v);
    vv += double(v) * double(v);
  }
  return vv > 0 && xv > 0 ? float(xv / vv) : 0.0f;
}

// The best scale found for a scale group (0 for a group of zeros).
float group_scale(const GridFormat& f, const float* x) {
  float amax = 0;
  for (int i = 0; i < f.scale_values; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (amax == 0) return 0;
  GroupCodes codes;
  float best_scale = 0;
  double best = INFINITY;
  // Candidates: the largest magnitude on the top levels (where Gaussian-like groups do best; for
  // IQ3 the lower ones never won on such data) and on the lowest (a group of near-equal
  // magnitudes: the grids have entries of equal values only at their lowest level).
  for (const int top : f.top_levels) {
    if (top < 0) continue;
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

// A super-block's d and its scale groups' 4-bit steps and codes (256 / scale_values of each).
void quantize_super_block(const GridFormat& f, const float* x, uint16_t& d_out, int steps[16], GroupCodes codes[16]) {
  const int groups = kQK_K / f.scale_values;
  float scale[16], top = 0;
  for (int g = 0; g < groups; ++g) {
    scale[g] = group_scale(f, x + f.scale_values * g);
    top = std::max(top, scale[g]);
  }
  d_out = fp32_to_fp16(top / (31.0f * f.scale_unit));
  const float d = fp16_to_fp32(d_out);
  for (int g = 0; g < groups; ++g) {
    const float* xg = x + f.scale_values * g;
    steps[g] = 0;
    if (d == 0) {
      pick_codes(f, xg, 0.0f, codes[g]);
      continue;
    }
    const int nearest = std::clamp(int(std::lrint((scale[g] / (d * f.scale_unit) - 1.0f) / 2.0f)), 0, 15);
    double best = INFINITY;
    for (int s = std::max(nearest - 1, 0); s <= std::min(nearest + 1, 15); ++s) {
      GroupCodes candidate;
      const double err = pick_codes(f, xg, d * float(2 * s + 1) * f.scale_unit, candidate);
      if (err < best) {
        best = err;
        steps[g] = s;
        codes[g] = candidate;
      }
    }
  }
}

// IQ3_XXS's and IQ2_XXS's aux word: four 7-bit sign indices and the scale step in bits 28-31.
void store_aux(const GroupCodes& codes, int step, uint8_t* out) {
  uint32_t aux = uint32_t(step) << 28;
  for (int l = 0; l < 4; ++l) aux |= uint32_t(codes.signs[l] & 127u) << (7 * l);
  std::memcpy(out, &aux, 4);
}

}  // namespace

void quantize_iq3_xxs(const float* x, BlockIQ3_XXS* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    int steps[16];
    GroupCodes codes[16];
    quantize_super_block(kIQ3XXS, x, b[i].d, steps, codes);
    for (int g = 0; g < 8; ++g) {
      store_aux(codes[g], steps[g], b[i].aux + 4 * g);
      for (int c = 0; c < 8; ++c) b[i].qs[8 * g + c] = uint8_t(codes[g].entry[c]);
    }
  }
}

void quantize_iq3_s(const float* x, BlockIQ3_S* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    int steps[16];
    GroupCodes codes[16];
    quantize_super_block(kIQ3S, x, b[i].d, steps, codes);
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

void quantize_iq2_xxs(const float* x, BlockIQ2_XXS* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    int steps[16];
    GroupCodes codes[16];
    quantize_super_block(kIQ2XXS, x, b[i].d, steps, codes);
    for (int g = 0; g < 8; ++g) {
      for (int l = 0; l < 4; ++l) b[i].qs[8 * g + l] = uint8_t(codes[g].entry[l]);
      store_aux(codes[g], steps[g], b[i].qs + 8 * g + 4);
    }
  }
}

// IQ2_XS and IQ2_S: scale group 2g + h is half h of group g, entries 2h and 2h + 1.
void quantize_iq2_xs(const float* x, BlockIQ2_XS* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    int steps[16];
    GroupCodes codes[16];
    quantize_super_block(kIQ2XS, x, b[i].d, steps, codes);
    for (int g = 0; g < 8; ++g) {
      b[i].scales[g] = uint8_t(steps[2 * g] | (steps[2 * g + 1] << 4));
      for (int l = 0; l < 4; ++l) {
        const GroupCodes& half = codes[2 * g + l / 2];
        const uint32_t code = half.entry[l % 2] | (uint32_t(half.signs[l % 2] & 127u) << 9);
        b[i].qs[2 * (4 * g + l)] = uint8_t(code);
        b[i].qs[2 * (4 * g + l) + 1] = uint8_t(code >> 8);
      }
    }
  }
}

void quantize_iq2_s(const float* x, BlockIQ2_S* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    int steps[16];
    GroupCodes codes[16];
    quantize_super_block(kIQ2S, x, b[i].d, steps, codes);
    for (int g = 0; g < 8; ++g) {
      b[i].scales[g] = uint8_t(steps[2 * g] | (steps[2 * g + 1] << 4));
      b[i].qh[g] = 0;
      for (int l = 0; l < 4; ++l) {
        const GroupCodes& half = codes[2 * g + l / 2];
        const uint32_t entry = half.entry[l % 2];
        b[i].qs[4 * g + l] = uint8_t(entry & 255u);
        b[i].qh[g] = uint8_t(b[i].qh[g] | ((entry >> 8) << (2 * l)));
        b[i].signs[4 * g + l] = half.signs[l % 2];
      }
    }
  }
}

}  // namespace engine
