// Reference (de)quantization of GGUF block formats, row at a time.
//
// These are the scalar definitions of every format: the test oracle for optimised CPU and CUDA
// kernels, and the quantizers engine-mkmodel writes models with. Block layouts follow ggml and
// are checked against the gguf Python package's dequantizer.
#pragma once

#include <cstdint>

#include "engine/ggml_type.h"

namespace engine {

// Dequantizes n elements (n a multiple of the type's block size) of any supported type.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

// Quantizes n floats (n a multiple of the block size) to any supported type.
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);

}  // namespace engine
