#include "attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "engine/error.h"
#include "engine/half.h"
#include "engine/quantize.h"
#include "quant_dot.h"

namespace engine {
namespace {

// A split along the positions covers at least this many of them: below, the tile's fixed work
// (transposing its queries, writing its partial sums) would be a visible share.
constexpr int64_t kMinSplitPositions = 256;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The tile kernel's scratch (64-byte aligned) comes in whole cache lines.
struct alignas(64) Line {
  float f[16];
};

}  // namespace

void attention(const AttentionBatch& b, ThreadPool& pool) { attention(b, pool, dot_kernels()); }

void attention(const AttentionBatch& b, ThreadPool& pool, const DotKernels& kern) {
  if (b.kv_type != GgmlType::F32 && b.kv_type != GgmlType::F16 && b.kv_type != GgmlType::Q8_0) {
    throw Error(fmt::format("attention: KV cache type {} is not supported (f32, f16 or q8_0)",
                            type_id_name(uint32_t(b.kv_type))));
  }
  if (b.n_tokens <= 0) return;
  // A tile's rows: up to two vectors of the kernel's lanes (one where the rows fill only one).
  const int64_t max_rows = 2 * kern.attn_lanes, hd = b.head_dim;
  const int64_t group = b.n_head / b.n_head_kv;
  // A tile: `heads` query heads of one KV head times `tokens` neighbouring tokens, at most 2 x
  // the kernel's lanes (GQA's group of 8 with AVX-512: 4 tokens of 8 heads; with AVX2, 2 tokens;
  // QwQ-32B's group of 5: 6 and 3 tokens).
  const int64_t heads = std::min(group, max_rows);
  const int64_t head_chunks = ceil_div(group, heads);
  const int64_t tokens = std::max<int64_t>(1, max_rows / heads);
  const int64_t token_tiles = ceil_div(b.n_tokens, tokens);
  const int64_t tiles = b.n_head_kv * head_chunks * token_tiles;
  // Few tiles over many positions (decode at a depth, a short turn after a long chat): split the
  // positions too, so every thread has work, and merge the partial sums afterwards.
  const int64_t positions = b.pos + b.n_tokens;
  int64_t splits = 1;
  if (tiles < 2 * pool.size()) {
    splits = std::clamp<int64_t>(ceil_div(2 * pool.size(), tiles), 1, std::max<int64_t>(1, positions / kMinSplitPositions));
  }
  const int64_t split_len = ceil_div(ceil_div(positions, splits), kAttnKeys) * kAttnKeys;
  // Partial sums (o, m, l per row) of every task, when the positions are split.
  const int64_t part_floats = max_rows * (hd + 2);
  std::vector<float> parts(splits > 1 ? size_t(tiles * splits * part_floats) : 0);

  auto tile_rows = [&](int64_t tile, int64_t* first_token, int64_t* n_tokens, int64_t* first_head, int64_t* n_heads) {
    // The last tokens first: they see the most positions, and a late long task would idle the rest.
    const int64_t token_tile = token_tiles - 1 - tile % token_tiles;
    const int64_t head_tile = tile / token_tiles;  // kv head * head_chunks + chunk
    *first_token = token_tile * tokens;
    *n_tokens = std::min(tokens, b.n_tokens - *first_token);
    const int64_t kvh = head_tile / head_chunks, chunk = head_tile % head_chunks;
    *first_head = kvh * group + chunk * heads;
    *n_heads = std::min(heads, group - chunk * heads);
  };

  pool.parallel_for(tiles * splits, [&](int64_t begin, int64_t end) {
    std::vector<Line> scratch(static_cast<size_t>(ceil_div(attention_scratch_floats(hd), 16)));
    std::vector<float> own(static_cast<size_t>(part_floats));
    const float* q_rows[kAttnMaxRows];
    int32_t limit[kAttnMaxRows];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t tile = task / splits, split = task % splits;
      int64_t t0, nt, h0, nh;
      tile_rows(tile, &t0, &nt, &h0, &nh);
      AttentionTile at;
      at.rows = int(nt * nh);
      for (int64_t i = 0; i < nt; ++i) {
        for (int64_t j = 0; j < nh; ++j) {
          q_rows[i * nh + j] = b.q + (t0 + i) * b.q_stride + (h0 + j) * hd;
          limit[i * nh + j] = int32_t(b.pos + t0 + i + 1);
        }
      }
      const int64_t kvh = h0 / group;
      at.q = q_rows;
      at.limit = limit;
      at.k = b.k_cache + kvh * b.head_stride;
      at.v = b.v_cache + kvh * b.head_stride;
      at.row_bytes = b.row_bytes;
      at.type = b.kv_type;
      at.k_blocked = b.keys_blocked;
      at.head_dim = hd;
      at.t0 = split * split_len;
      at.t1 = std::min(b.pos + t0 + nt, (split + 1) * split_len);  // the tile's last token's limit
      at.scale = b.scale;
      float* part = splits > 1 ? parts.data() + task * part_floats : own.data();
      at.o = part;
      at.m = part + max_rows * hd;
      at.l = at.m + max_rows;
      if (at.t1 <= at.t0) {  // this split lies beyond every row's positions
        std::fill(at.o, at.o + at.rows * hd, 0.0f);
        std::fill(at.m, at.m + at.rows, -1e30f);
        std::fill(at.l, at.l + at.rows, 0.0f);
        continue;
      }
      kern.attend_tile(at, scratch.data()->f);
      if (splits > 1) continue;
      for (int64_t r = 0; r < at.rows; ++r) {
        float* out = b.out + (t0 + r / nh) * b.q_stride + (h0 + r % nh) * hd;
        const float inv = 1.0f / at.l[r];
        for (int64_t d = 0; d < hd; ++d) out[d] = at.o[r * hd + d] * inv;
      }
    }
  });
  if (splits == 1) return;
  // Merge: out = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s, M the largest m_s.
  pool.for_each(tiles, [&](int64_t tile) {
    int64_t t0, nt, h0, nh;
    tile_rows(tile, &t0, &nt, &h0, &nh);
    const float* first = parts.data() + tile * splits * part_floats;
    for (int64_t r = 0; r < nt * nh; ++r) {
      float top = -1e30f;
      for (int64_t s = 0; s < splits; ++s) top = std::max(top, first[s * part_floats + max_rows * hd + r]);
      float* out = b.out + (t0 + r / nh) * b.q_stride + (h0 + r % nh) * hd;
      std::fill(out, out + hd, 0.0f);
      double sum = 0;
      for (int64_t s = 0; s < splits; ++s) {
        const float* part = first + s * part_floats;
        const float w = std::exp(part[max_rows * hd + r] - top);
        sum += double(w) * double(part[max_rows * hd + max_rows + r]);
        for (int64_t d = 0; d < hd; ++d) out[d] += w * part[r * hd + d];
      }
      const float inv = sum > 0 ? float(1.0 / sum) : 0.0f;
      for (int64_t d = 0; d < hd; ++d) out[d] *= inv;
    }
  });
}

void store_key_blocked(GgmlType type, const float* key, int64_t head_dim, uint8_t* head, int64_t t) {
  const int64_t first = t / kAttnKeyBlock * kAttnKeyBlock * head_dim + t % kAttnKeyBlock;  // value index of dim 0
  if (type == GgmlType::F16) {
    uint16_t* out = reinterpret_cast<uint16_t*>(head) + first;
    for (int64_t d = 0; d < head_dim; ++d) out[d * kAttnKeyBlock] = fp32_to_fp16(key[d]);
  } else if (type == GgmlType::F32) {
    float* out = reinterpret_cast<float*>(head) + first;
    for (int64_t d = 0; d < head_dim; ++d) out[d * kAttnKeyBlock] = key[d];
  } else if (type == GgmlType::Q8_0) {
    // Each group of 32 dims (one q8_0 block of the key: a scale, 32 codes): the 16 positions'
    // scales (f16), then their codes dim by dim.
    constexpr int64_t kGroup = 32;
    const int64_t block_bytes = int64_t(type_bytes(type, kGroup));  // 34
    const int64_t lane = t % kAttnKeyBlock;
    uint8_t* group = head + t / kAttnKeyBlock * kAttnKeyBlock * (head_dim / kGroup) * block_bytes;
    uint8_t quantized[64];
    for (int64_t g = 0; g < head_dim / kGroup; ++g, group += kAttnKeyBlock * block_bytes) {
      quantize_row(type, key + g * kGroup, quantized, kGroup);
      std::memcpy(group + lane * 2, quantized, 2);
      for (int64_t d = 0; d < kGroup; ++d) group[kAttnKeyBlock * 2 + d * kAttnKeyBlock + lane] = quantized[2 + d];
    }
  } else {
    throw Error(fmt::format("store_key_blocked: cache type {} is not f32, f16 or q8_0", type_id_name(uint32_t(type))));
  }
}

}  // namespace engine
