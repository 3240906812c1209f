// Dot products of one weight row (GGUF blocks, straight from the mmap) with activations, the
// inner loop of every CPU matmul. Compiled three times (baseline x86-64, AVX2+FMA+F16C,
// AVX-512 VNNI) from quant_dot_impl.h; dot_kernels() picks the best set for this CPU once.
//
// Two regimes, chosen per weight type in one place (dot_regime):
//   float activations for F32, F16, BF16 and Q8_0 weights (exact to f32 rounding);
//   8-bit activations (Q8 blocks of 32, one float scale each) for the 4- and 5-bit types, where
//   integer multiply-adds are several times faster than decoding to float.
// Q2_K and Q3_K have neither and are decoded to float a chunk at a time (ops.cpp).
#pragma once

#include <cstdint>

#include "engine/ggml_type.h"

namespace engine {

struct BlockQ8x32 {  // 32 activations: x ~ d * q
  float d;
  int32_t sum;  // sum of q, for the offset terms of Q4_1, Q5_1 and the K-quants
  int8_t q[32];
};

enum class DotRegime { f32_activations, q8_activations, dequantize };
DotRegime dot_regime(GgmlType type);

using DotF32 = float (*)(const void* row, const float* x, int64_t k);
using DotQ8 = float (*)(const void* row, const BlockQ8x32* x, int64_t k);
// One weight row against four activation rows at once (prompt batches): the row is unpacked once.
using DotQ8x4 = void (*)(const void* row, const BlockQ8x32* const x[4], int64_t k, float out[4]);

struct DotKernels {
  const char* isa;  // "avx512-vnni", "avx2", "generic"
  void (*quantize_q8)(const float* x, BlockQ8x32* out, int64_t k);  // k % 32 == 0
  DotF32 dot_f32[32];  // indexed by GGUF type id; null where the regime differs
  DotQ8 dot_q8[32];
  DotQ8x4 dot_q8_x4[32];  // null where only the single-row kernel exists
  // out[i] += a * v[i] for an f16 row (attention's weighted sum over an f16 V cache).
  void (*axpy_f16)(float a, const uint16_t* v, float* out, int64_t n);
};

const DotKernels& dot_kernels();          // the best for this CPU
const DotKernels& dot_kernels_generic();  // baseline x86-64, for tests
const DotKernels* dot_kernels_avx2();     // null when the CPU lacks AVX2/FMA/F16C
const DotKernels* dot_kernels_avx512();   // null when the CPU lacks AVX-512 VNNI

}  // namespace engine
