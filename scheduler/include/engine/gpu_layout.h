// How a GPU stage keeps a weight matrix in device memory. GGUF rows as they are, except Q6_K: its
// 210-byte blocks are only 2-byte aligned, which costs the kernels four load instructions where
// one would do, so each row is regrouped into 16-byte aligned runs: the row's blocks without their
// fp16 scale d (208 bytes each: ql, qh, scales), then the row's d values, then padding to 16
// bytes. The memory model counts matrices with gpu_row_bytes, so the planner's figures are the
// bytes the stage allocates.
#pragma once

#include <cstdint>

#include "engine/ggml_type.h"

namespace engine {

// Bytes of one row of K values of `type` on the GPU.
uint64_t gpu_row_bytes(GgmlType type, int64_t K);

// Whether the GPU layout of `type` differs from GGUF's (then to_gpu_layout must convert it).
bool gpu_layout_differs(GgmlType type);

// `rows` rows of K values in GGUF layout (src) to the GPU layout (dst: rows * gpu_row_bytes bytes;
// padding zeroed).
void to_gpu_layout(GgmlType type, int64_t K, int64_t rows, const uint8_t* src, uint8_t* dst);

// Bytes of the Q6_K part of a GPU row: the blocks without d (208 bytes each) come first.
constexpr uint64_t kGpuQ6KRecordBytes = 208;

}  // namespace engine
