// Dot products of one weight row (GGUF blocks, straight from the mmap) with activations, the
// inner loop of every CPU matmul. Compiled three times (baseline x86-64, AVX2+FMA+F16C,
// AVX-512 VNNI) from quant_dot_impl.h; dot_kernels() picks the best set for this CPU once.
//
// Regimes, chosen per weight type in one place (dot_regime):
//   float activations for F32, F16, BF16 and Q8_0 weights (exact to f32 rounding), except Q8_0's
//   prompt batches where AVX-512 VNNI panels exist: those take 8-bit ones (gemm_q8_panel);
//   8-bit activations for every other type: Q8 blocks of 32 (one float scale each) for Q4_0,
//   Q4_1, Q5_0, Q5_1 and IQ4_NL, and for the decode rows of IQ4_XS (and the portable rows of the
//   IQ3 types), whose 4-5 bit values (or grid values) meet them in 8-bit multiply-adds;
//   prompt batches of every 256-value type (the K-quants, the IQ4_XS, IQ3, IQ2, IQ1 and TQ types):
//   the decode rows' BlockQ8x256 activations, the weights' codes in vpdpbusd (AVX2: maddubs) and
//   each group's sum times its scale in int32 (gemm_q8x256_panel), so a whole 256-value dot
//   product is integer arithmetic with one float step (with mins: two, the mins against the
//   activations' 16-value sums);
//   decode rows of the K-quants (Q2_K .. Q6_K) and of IQ3_XXS, the IQ2, IQ1 and TQ types take 8-bit
//   activations with one scale per 256 values (BlockQ8x256), whose group scales then apply in
//   int32: a memory-bound pass.
// Prompt batches go through tiles and panels (gemm_*): several weight rows against several
// activation rows, so each weight block is decoded once for many activation rows.
#pragma once

#include <cstddef>
#include <cstdint>

#include "attention.h"
#include "engine/ggml_type.h"

namespace engine {

struct BlockQ8x32 {  // 32 activations: x ~ d * q
  float d;
  int32_t sum;  // sum of q, for the offset terms of Q4_1, Q5_1 and the K-quants
  int8_t q[32];
  float dsum;   // d * sum
};

// 256 activations with one scale, for the K-quants' decode rows: x ~ d * q, |q| <= 127;
// sums[j] = sum of q over values 16j..16j+15, for the weights' per-group offsets (mins), and
// sums8[j] over values 8j..8j+7 (IQ1_M's offsets, one per grid entry).
struct alignas(64) BlockQ8x256 {
  int8_t q[256];
  int16_t sums[16];
  int16_t sums8[32];
  float d;
};

enum class DotRegime { f32_activations, q8_activations };
DotRegime dot_regime(GgmlType type);

using DotF32 = float (*)(const void* row, const float* x, int64_t k);
using DotQ8 = float (*)(const void* row, const BlockQ8x32* x, int64_t k);
using DotQ8x256 = float (*)(const void* row, const BlockQ8x256* x, int64_t k);
// One weight row against n_cols (1 .. kRowCols) activation rows x_stride blocks apart:
// out[c * out_stride] is the product with row c, the bits the DotQ8x256 of the type gives it.
using DotQ8x256Cols = void (*)(const void* row, const BlockQ8x256* x, int64_t x_stride, int n_cols, int64_t k,
                               float* out, int64_t out_stride);
constexpr int kRowCols = 4;

// Batches from this size on take the type's panels where it has them; smaller ones take the decode
// rows (a weight row stays in L1 for the batch; the 256-value types but IQ4_XS decode it once for
// up to kRowCols activation rows, dot_q8x256_cols). A 256-value panel decodes and
// transposes 16 rows per super-block for however few columns there are, so where a type's rows are
// fast the rows win the small batches: at two rows Q6_K's 1.7-3.4x, Q2_K's 2.2-2.5x. The sizes
// are where the two cross (2 threads, docs/benchmarks.md, "CPU small batches"), measured for each
// set's panels: the AVX2 panels are slower than the AVX-512 VNNI ones where the rows are not, so on
// AVX2 the rows win longer (the grid and ternary types, Q2_K). The 32-value panels win from two
// rows on.
constexpr int64_t panel_min_batch(GgmlType type, bool avx512) {
  switch (type) {
    case GgmlType::Q6_K: return 16;
    case GgmlType::Q2_K: return avx512 ? 12 : 16;
    case GgmlType::Q3_K:
    case GgmlType::Q4_K: return 8;
    case GgmlType::Q5_K: return 6;
    case GgmlType::TQ2_0: return avx512 ? 10 : 32;
    case GgmlType::TQ1_0: return avx512 ? 10 : 24;
    case GgmlType::IQ1_M: return avx512 ? 10 : 12;
    case GgmlType::IQ1_S:
    case GgmlType::IQ2_S:
    case GgmlType::IQ2_XS: return avx512 ? 8 : 12;
    case GgmlType::IQ2_XXS: return avx512 ? 5 : 12;
    case GgmlType::IQ3_XXS: return avx512 ? 5 : 8;
    case GgmlType::IQ3_S: return 6;
    case GgmlType::IQ4_XS: return 3;
    default: return 2;  // the 32-value panels
  }
}

// Tiles: y[c * ldy + r] = sum_k W[r][k] * x_c[k] for r < n_rows, c < n_cols, where W's rows are
// row_bytes apart from w and x_c is activation row c (x_stride blocks or ldx floats apart).
// Panels: kQ8PanelRows weight rows decoded and transposed once per super-block for any number of
// columns (Q4_0..Q5_1 eight blocks at a time, any k that is a multiple of 32).
constexpr int kQ8PanelRows = 16;
// The same for 256-value 8-bit activations (BlockQ8x256: every 256-value type),
// kQ8x256PanelRows rows x any number of columns.
constexpr int kQ8x256PanelRows = 16;
// Float tiles (gemm_f32) take up to kF32PanelRows rows and any number of columns: kF32TileRows x
// kF32TileCols at a time in registers, or with AVX-512 or AVX2 from kF32OuterMinCols columns on,
// outer products of 32 rows x 12 columns (AVX2: 16 x 6).
constexpr int kF32PanelRows = 32, kF32TileRows = 4, kF32TileCols = 4;
constexpr int kF32OuterMinCols = 16;
using GemmQ8 = void (*)(const void* w, uint64_t row_bytes, int n_rows, const BlockQ8x32* x,
                        int64_t x_stride, int n_cols, int64_t k, float* y, int64_t ldy);
using GemmQ8x256 = void (*)(const void* w, uint64_t row_bytes, int n_rows, const BlockQ8x256* x,
                            int64_t x_stride, int n_cols, int64_t k, float* y, int64_t ldy);
using GemmF32 = void (*)(const void* w, uint64_t row_bytes, int n_rows, const float* x, int64_t ldx,
                         int n_cols, int64_t k, float* y, int64_t ldy);

// The kernel tables' size: every GGUF type id the engine reads (TQ2_0, 35, the largest) indexes them.
constexpr int kTypeIds = 36;

struct DotKernels {
  const char* isa;  // "avx512-vnni", "avx2", "generic"
  void (*quantize_q8)(const float* x, BlockQ8x32* out, int64_t k);     // k % 32 == 0
  void (*quantize_q8x256)(const float* x, BlockQ8x256* out, int64_t k);  // k % 256 == 0
  DotF32 dot_f32[kTypeIds];  // indexed by GGUF type id; null where the regime differs
  DotQ8 dot_q8[kTypeIds];
  // The K-quants, the IQ3, IQ2, IQ1 and TQ types: decode rows (batches below the panels' minimum,
  // or any batch where no panel exists) against BlockQ8x256 activations.
  DotQ8x256 dot_q8x256[kTypeIds];
  // The same rows for a small batch, each weight decoded once for up to kRowCols activation rows
  // (AVX2, AVX-512: the K-quants, the grid i-quants, the TQ types); null where none exists.
  DotQ8x256Cols dot_q8x256_cols[kTypeIds];
  GemmQ8x256 gemm_q8x256_panel[kTypeIds];  // the 256-value types (AVX2, AVX-512): up to kQ8x256PanelRows x any
  GemmQ8 gemm_q8_panel[kTypeIds];    // Q4_0..Q5_1, IQ4_NL, Q8_0 (AVX-512): up to kQ8PanelRows x any; null where none exists
  GemmF32 gemm_f32[kTypeIds];  // F32, F16, BF16, Q8_0
  // Batches from this size on take the type's panel (above) where it has one: panel_min_batch
  // for this set's panels.
  int64_t panel_min_batch[kTypeIds];
  // out[i] = e^((v_i - shift) / divisor) in double for the n floats v_i, stride_bytes apart from
  // `values` (v_i <= shift, divisor > 0; out may be null); returns their sum (exp_impl.h).
  double (*exp_shifted)(const void* values, size_t stride_bytes, int64_t n, double shift, double divisor,
                        double* out);
  // One tile of flash attention (attention.h): up to 2 * attn_lanes query rows of one KV head
  // over a range of cached positions; scratch holds attention_scratch_floats(head_dim), 64-byte
  // aligned.
  void (*attend_tile)(const AttentionTile& tile, float* scratch);
  int attn_lanes;  // floats a vector
  // out[i] = silu(gate[i]) * up[i] (ops.h's swiglu).
  void (*swiglu)(const float* gate, const float* up, float* out, int64_t n);
};

const DotKernels& dot_kernels();          // the best for this CPU
const DotKernels& dot_kernels_generic();  // baseline x86-64, for tests
const DotKernels* dot_kernels_avx2();     // null when the CPU lacks AVX2/FMA/F16C
const DotKernels* dot_kernels_avx512();   // null when the CPU lacks AVX-512 VNNI

}  // namespace engine
