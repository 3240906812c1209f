// Quantizers of IQ1_S and IQ1_M (layouts: quant_blocks.h). A value is d (2s + 1) (grid + delta):
// grid -1, 0 or 1 from an entry of eight (2048 of the 6561 patterns), delta +-1/8 for a whole
// IQ1_S group or a single IQ1_M entry. For a scale S each entry rounds x / S - delta to the nearest
// of -1, 0, 1, then a table maps that pattern to the grid entry nearest to it; both deltas are
// tried. Each scale group's S (32 values for IQ1_S, 16 for IQ1_M) is the best of a few candidates
// (its largest magnitude on the top level, 1 +- 1/8, or a little above it) and their least-squares
// refits; the super-block's d puts the largest at the top 3-bit step, and each group then takes
// the best of the three steps nearest to its S. Simpler than llama.cpp's search (no importance
// weights), for test and benchmark models.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/half.h"
#include "quantize_iq.h"

namespace engine {
namespace {

constexpr int kPatterns = 6561;  // 3^8

float grid_value(uint64_t entry, int j) { return float(int((entry >> (8 * j)) & 255u) - 1); }
float delta(bool negative) { return negative ? -0.125f : 0.125f; }

// For each pattern of eight values -1, 0, 1 (key: sum_j (v_j + 1) 3^j), the nearest grid entry.
const uint16_t* nearest_entries() {
  static const std::vector<uint16_t> table = [] {
    std::vector<uint16_t> t(kPatterns);
    for (int key = 0; key < kPatterns; ++key) {
      int want[8];
      for (int j = 0, k = key; j < 8; ++j, k /= 3) want[j] = k % 3 - 1;
      int best = 1 << 30;
      for (uint32_t e = 0; e < 2048; ++e) {
        int dist = 0;
        for (int j = 0; j < 8; ++j) {
          const int diff = want[j] - int(grid_value(kIQ1SGrid[e], j));
          dist += diff * diff;
        }
        if (dist < best) {
          best = dist;
          t[key] = uint16_t(e);
        }
      }
    }
    return t;
  }();
  return table.data();
}

struct EntryCode {
  uint16_t index = 0;
  bool negative = false;  // delta -1/8
};

// The grid entry for eight values x at scale S with the given delta, and its squared error.
double pick_entry(const float* x, float scale, bool negative, EntryCode& out) {
  const float inv = scale > 0 ? 1.0f / scale : 0.0f, dl = delta(negative);
  int key = 0;
  for (int j = 7; j >= 0; --j) key = 3 * key + std::clamp(int(std::lrint(x[j] * inv - dl)), -1, 1) + 1;
  out = {nearest_entries()[key], negative};
  double err = 0;
  for (int j = 0; j < 8; ++j) {
    const double diff = double(x[j]) - double(scale) * double(grid_value(kIQ1SGrid[out.index], j) + dl);
    err += diff * diff;
  }
  return err;
}

// A scale group: `entries` entries of eight values, with one delta for all (IQ1_S) or one each.
struct GroupShape {
  int entries;          // 4 (IQ1_S) or 2 (IQ1_M)
  bool shared_delta;
};

// The codes of a group's values x at scale S (the better delta for each entry, or for the whole
// group) and their squared error.
double pick_group(const GroupShape& f, const float* x, float scale, EntryCode* out) {
  if (!f.shared_delta) {
    double err = 0;
    for (int e = 0; e < f.entries; ++e) {
      EntryCode minus;
      const double plus_err = pick_entry(x + 8 * e, scale, false, out[e]);
      const double minus_err = pick_entry(x + 8 * e, scale, true, minus);
      if (minus_err < plus_err) out[e] = minus;
      err += std::min(plus_err, minus_err);
    }
    return err;
  }
  double best = INFINITY;
  for (const bool negative : {false, true}) {
    EntryCode codes[4];
    double err = 0;
    for (int e = 0; e < f.entries; ++e) err += pick_entry(x + 8 * e, scale, negative, codes[e]);
    if (err < best) {
      best = err;
      std::copy(codes, codes + f.entries, out);
    }
  }
  return best;
}

// The least-squares scale for x against the values the codes stand for.
float refit_scale(const GroupShape& f, const float* x, const EntryCode* codes) {
  double xv = 0, vv = 0;
  for (int e = 0; e < f.entries; ++e) {
    for (int j = 0; j < 8; ++j) {
      const double v = grid_value(kIQ1SGrid[codes[e].index], j) + delta(codes[e].negative);
      xv += double(x[8 * e + j]) * v;
      vv += v * v;
    }
  }
  return vv > 0 && xv > 0 ? float(xv / vv) : 0.0f;
}

// The best scale found for a group (0 for a group of zeros).
float group_scale(const GroupShape& f, const float* x) {
  float amax = 0;
  for (int i = 0; i < 8 * f.entries; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (amax == 0) return 0;
  EntryCode codes[4];
  float best_scale = 0;
  double best = INFINITY;
  for (const float top : {1.125f, 0.875f, 1.5f}) {
    for (float scale : {amax / top, 0.0f}) {
      if (scale == 0) {  // the least-squares refit of the candidate before it
        scale = refit_scale(f, x, codes);
        if (scale == 0) continue;
      }
      const double err = pick_group(f, x, scale, codes);
      if (err < best) {
        best = err;
        best_scale = scale;
      }
    }
  }
  return best_scale;
}

// A super-block's d and its groups' 3-bit steps and codes (256 / (8 entries) groups).
void quantize_super_block(const GroupShape& f, const float* x, uint16_t& d_out, int steps[16], EntryCode codes[32]) {
  const int values = 8 * f.entries, groups = kQK_K / values;
  float scale[16], top = 0;
  for (int g = 0; g < groups; ++g) {
    scale[g] = group_scale(f, x + values * g);
    top = std::max(top, scale[g]);
  }
  d_out = fp32_to_fp16(top / 15.0f);
  const float d = fp16_to_fp32(d_out);
  for (int g = 0; g < groups; ++g) {
    const float* xg = x + values * g;
    EntryCode* cg = codes + f.entries * g;
    steps[g] = 0;
    if (d == 0) {
      pick_group(f, xg, 0.0f, cg);
      continue;
    }
    const int nearest = std::clamp(int(std::lrint((scale[g] / d - 1.0f) / 2.0f)), 0, 7);
    double best = INFINITY;
    for (int s = std::max(nearest - 1, 0); s <= std::min(nearest + 1, 7); ++s) {
      EntryCode candidate[4];
      const double err = pick_group(f, xg, d * float(2 * s + 1), candidate);
      if (err < best) {
        best = err;
        steps[g] = s;
        std::copy(candidate, candidate + f.entries, cg);
      }
    }
  }
}

}  // namespace

void quantize_iq1_s(const float* x, BlockIQ1_S* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    int steps[16];
    EntryCode codes[32];
    quantize_super_block({4, true}, x, b[i].d, steps, codes);
    for (int g = 0; g < 8; ++g) {
      uint32_t qh = uint32_t(steps[g]) << 12 | uint32_t(codes[4 * g].negative) << 15;
      for (int l = 0; l < 4; ++l) {
        const uint32_t index = codes[4 * g + l].index;
        b[i].qs[4 * g + l] = uint8_t(index & 255u);
        qh |= (index >> 8) << (3 * l);
      }
      b[i].qh[g] = uint16_t(qh);
    }
  }
}

void quantize_iq1_m(const float* x, BlockIQ1_M* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    int steps[16];
    EntryCode codes[32];
    uint16_t d;
    quantize_super_block({2, false}, x, d, steps, codes);
    uint16_t words[4] = {};
    for (int h = 0; h < 16; ++h) words[h / 4] = uint16_t(words[h / 4] | (steps[h] << (3 * (h % 4))));
    for (int w = 0; w < 4; ++w) words[w] = uint16_t(words[w] | (((d >> (4 * w)) & 15u) << 12));
    std::memcpy(b[i].scales, words, 8);
    std::memset(b[i].qh, 0, sizeof b[i].qh);
    for (int e = 0; e < 32; ++e) {
      b[i].qs[e] = uint8_t(codes[e].index & 255u);
      const uint32_t nibble = (codes[e].index >> 8) | uint32_t(codes[e].negative) << 3;
      b[i].qh[e / 2] = uint8_t(b[i].qh[e / 2] | (nibble << (4 * (e % 2))));
    }
  }
}

}  // namespace engine
