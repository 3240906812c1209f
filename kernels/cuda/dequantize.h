// GPU dequantization of GGUF blocks to f32 (weights upload path, dequantize-then-matmul path and
// embedding lookups). No CUDA types: pointers are device pointers, `stream` a cudaStream_t.
#pragma once

#include <cstdint>

#include "engine/ggml_type.h"

namespace engine {

// dst[0..n) = dequantized src; n a multiple of the type's block size. Asynchronous on `stream`.
void cuda_dequantize(GgmlType type, const void* src, float* dst, int64_t n, void* stream);

}  // namespace engine
