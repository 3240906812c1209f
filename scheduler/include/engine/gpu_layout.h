// How a GPU stage keeps a weight matrix in device memory. GGUF rows as they are, except the
// K-quants whose blocks leave rows or fields unaligned, which would cost the kernels several
// narrow loads where one wide load would do:
//   Q6_K (210-byte blocks, 2-byte aligned): each row regrouped into the blocks without their fp16
//        scale d (208-byte records: ql, qh, scales), then the row's d values, then zeros up to 16
//        bytes;
//   Q2_K (84-byte blocks, 4-byte aligned): the same with 80-byte records (scales, qs) and the
//        blocks' (d, dmin) pairs, 4 bytes each, after them;
//   Q3_K (110-byte blocks, 2-byte aligned): each block padded with two zero bytes to 112, so that
//        hmask, qs and (scales, d) each start 16-byte aligned (2/110 more bytes);
//   IQ3_XXS (98-byte blocks, d first): each row's blocks without d (96-byte records: qs, aux),
//        then the row's d values, then zeros up to 16 bytes;
//   IQ3_S (110-byte blocks, d first): the same with the 108 bytes after d padded to 112-byte
//        records (qs, qh, signs, scales, four zero bytes: 2/110 more bytes);
//   IQ2_XXS, IQ2_XS, IQ2_S (66, 74 and 82-byte blocks, d first): the same with 64, 72 and 80-byte
//        records (IQ2_XS's only 8-byte aligned: padding it to 80 would cost 6/74 more bytes);
//   IQ1_S (50-byte blocks, d first): the same with 48-byte records (qs, qh);
//   TQ1_0 and TQ2_0 (54 and 66-byte blocks, d last): records of the bytes before d (TQ1_0's 52
//        padded to 56, 8-byte aligned: 2/54 more bytes), then the d values.
// IQ1_M's 56-byte blocks (no separate d) stay as they are: 8-byte aligned.
// The memory model counts matrices with gpu_row_bytes, so the planner's figures are the bytes the
// stage allocates.
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
// Bytes of the Q2_K part of a GPU row: the blocks without (d, dmin) (80 bytes each) come first.
constexpr uint64_t kGpuQ2KRecordBytes = 80;
// Bytes of a Q3_K block on the GPU: the 110-byte block, then two zero bytes.
constexpr uint64_t kGpuQ3KBlockBytes = 112;
// Bytes of an IQ3_XXS and an IQ3_S record on the GPU: the block after its d (padded for IQ3_S);
// the fields keep their offsets less the two bytes of d.
constexpr uint64_t kGpuIQ3XXSRecordBytes = 96;
constexpr uint64_t kGpuIQ3SRecordBytes = 112;
// Bytes of an IQ2_XXS, IQ2_XS and IQ2_S record on the GPU: the block after its d.
constexpr uint64_t kGpuIQ2XXSRecordBytes = 64;
constexpr uint64_t kGpuIQ2XSRecordBytes = 72;
constexpr uint64_t kGpuIQ2SRecordBytes = 80;
// Bytes of an IQ1_S record on the GPU: the block after its d.
constexpr uint64_t kGpuIQ1SRecordBytes = 48;
// Bytes of a TQ1_0 and a TQ2_0 record on the GPU: the block before its d (TQ1_0's padded).
constexpr uint64_t kGpuTQ1RecordBytes = 56;
constexpr uint64_t kGpuTQ2RecordBytes = 64;

}  // namespace engine
