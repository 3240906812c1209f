// Attention on the CPU over a KV cache (f16, f32 or q8_0 rows), as flash attention: each task
// takes the query rows of several heads that share one KV head (GQA) and of neighbouring
// tokens, so a key or value is widened once and used for every one of them, and keeps the
// softmax online (running max and sum) instead of a score row per query.
#pragma once

#include <cstdint>

#include "engine/ggml_type.h"
#include "thread_pool.h"

namespace engine {

// The most query rows one tile kernel call takes: two vectors' lanes (DotKernels::attn_lanes a
// vector: 16 floats with AVX-512, 8 with AVX2, 4 in the portable build), so this is two of the
// widest set's.
constexpr int kAttnMaxRows = 32;
// Keys (and values) widened to f32 at a time.
constexpr int kAttnKeys = 32;
// Positions of a block of a key-blocked cache (AttentionBatch::keys_blocked): the widest set's
// lanes, so that a decode step's scores for a block are one vector a query row.
constexpr int kAttnKeyBlock = 16;
static_assert(kAttnKeys % kAttnKeyBlock == 0);

// One call of the tile kernel (DotKernels::attend_tile): up to two vectors' lanes of query rows,
// all against the same KV head, over the cached positions [t0, t1).
struct AttentionTile {
  int rows = 0;
  const float* const* q = nullptr;  // rows pointers to head_dim floats
  const int32_t* limit = nullptr;   // row r sees position t only where t < limit[r]
  const uint8_t* k = nullptr;       // this KV head's key at position t: k + t * row_bytes (rows)
  const uint8_t* v = nullptr;       // and its value: v + t * row_bytes
  uint64_t row_bytes = 0;
  GgmlType type = GgmlType::F16;    // F32, F16 or Q8_0 (head_dim % 32 == 0)
  bool k_blocked = false;           // keys in blocks (AttentionBatch::keys_blocked); t0 % kAttnKeyBlock == 0
  int64_t head_dim = 0, t0 = 0, t1 = 0;
  float scale = 1.0f;               // applied to every score
  // Out: per row, o = sum_t e^(s_t - m) v_t over the seen positions (not divided), the largest
  // score m (-1e30 where the row saw none) and l = sum_t e^(s_t - m) (0 where none).
  float* o = nullptr;  // rows x head_dim
  float* m = nullptr;
  float* l = nullptr;
};

// Floats of scratch one tile kernel call needs (64-byte aligned).
inline int64_t attention_scratch_floats(int64_t head_dim) {
  return 2 * head_dim * kAttnMaxRows + kAttnKeys * kAttnMaxRows + 2 * kAttnKeys * head_dim;
}

// A batch of query tokens at positions pos .. pos + n_tokens - 1, whose keys and values are
// already in the cache: token b sees positions 0 .. pos + b. Head h of token b reads
// q[b * q_stride + h * head_dim ...] and writes out[...] at the same place; it uses KV head
// h / (n_head / n_head_kv), whose key at position t is at k_cache + kv_head * head_stride +
// t * row_bytes (head_dim values in the cache type), its value likewise. Position-major caches
// have head_stride = the type's bytes for head_dim values; head-major ones (each KV head's
// positions contiguous: a decode step reads them as one stream) row_bytes = those bytes.
//
// With keys_blocked, each KV head's keys are instead in blocks of kAttnKeyBlock positions, each
// block dimension-major: the key of position t, dim d at k_cache + kv_head * head_stride +
// (t / 16) * 16 * row_bytes + (d * 16 + t % 16) * (the type's bytes) for F32 and F16; for Q8_0
// a block is head_dim / 32 groups of 16 * 34 bytes, each the 16 positions' f16 scales, then
// their codes of the group's 32 dims, dim d's at 32 + (d % 32) * 16 + t % 16. So a decode step
// reads a block's 16 keys at dim d as one vector (store_key_blocked writes one). head_stride
// then holds whole blocks: attention_key_block_positions(positions) rows.
struct AttentionBatch {
  const float* q = nullptr;
  float* out = nullptr;
  int64_t q_stride = 0;
  int64_t n_tokens = 0, pos = 0;
  int64_t n_head = 0, n_head_kv = 0, head_dim = 0;
  float scale = 1.0f;
  const uint8_t* k_cache = nullptr;
  const uint8_t* v_cache = nullptr;
  uint64_t row_bytes = 0;    // from a KV head's position t to t + 1
  uint64_t head_stride = 0;  // from KV head h to h + 1
  GgmlType kv_type = GgmlType::F16;
  bool keys_blocked = false;
};

// Positions a KV head's keys take in a key-blocked cache: whole blocks.
constexpr int64_t attention_key_block_positions(int64_t positions) {
  return (positions + kAttnKeyBlock - 1) / kAttnKeyBlock * kAttnKeyBlock;
}

// Writes head_dim floats as the key of position t into one KV head's keys of a key-blocked cache
// (head: that head's first block), rounded to `type` (F32, F16, or Q8_0 as quantize_row does).
void store_key_blocked(GgmlType type, const float* key, int64_t head_dim, uint8_t* head, int64_t t);

// Splits the batch into tiles over the pool's threads; a few long rows (decode at a depth) are
// also split along the positions, their partial sums merged. Throws engine::Error on a cache
// type other than F32, F16 or Q8_0.
void attention(const AttentionBatch& batch, ThreadPool& pool);
// The same with a given kernel set (quant_dot.h's dot_kernels_*), for tests.
struct DotKernels;
void attention(const AttentionBatch& batch, ThreadPool& pool, const DotKernels& kernels);

}  // namespace engine
