// How much memory each part of a model needs on a device: KV cache bytes per layer for a context
// and KV type, and the scratch buffers a pipeline stage allocates. The backends allocate exactly
// the buffers stage_buffers() lists, so the planner's count is the allocation, not an estimate.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/model_spec.h"

namespace engine {

enum class KvType { f16, q8_0, f32 };

std::optional<KvType> parse_kv_type(std::string_view name);
std::string_view kv_type_name(KvType type);

// Whether a cache of this type holds heads of head_dim values: q8_0 needs whole 32-value blocks
// in every head (its blocks never straddle two heads).
bool kv_type_fits(KvType type, int64_t head_dim);

// K and V of one layer for this many positions.
uint64_t kv_bytes_per_layer(const HyperParams& hp, KvType type, uint64_t positions);

// Device buffers start on this granularity (cudaMalloc's); a GPU stage carves every buffer from
// one allocation at it, so every count below rounds each buffer up to it.
constexpr uint64_t kDeviceAlignment = 256;
constexpr uint64_t align_device(uint64_t bytes) {
  return (bytes + kDeviceAlignment - 1) / kDeviceAlignment * kDeviceAlignment;
}

// The KV cache of a GPU stage with n_layers layers: one K and one V array for all of them.
uint64_t stage_kv_bytes(const HyperParams& hp, KvType type, uint32_t n_ctx, uint32_t n_layers);

// A CPU stage keeps each KV head's keys in blocks of this many positions (kernels/cpu/attention.h:
// kAttnKeyBlock), so each head holds the context rounded up to whole blocks.
constexpr uint32_t kCpuKvPositionBlock = 16;
constexpr uint64_t cpu_kv_positions(uint32_t n_ctx) {
  return (uint64_t(n_ctx) + kCpuKvPositionBlock - 1) / kCpuKvPositionBlock * kCpuKvPositionBlock;
}

// The KV cache of a CPU stage with n_layers layers: its K and V arrays over cpu_kv_positions.
uint64_t cpu_stage_kv_bytes(const HyperParams& hp, KvType type, uint32_t n_ctx, uint32_t n_layers);

// What a GPU stage uploads for a tensor: a matrix in the GPU layout (engine/gpu_layout.h: as
// stored in the file, Q6_K rows regrouped and padded to 16 bytes), a vector (norm, bias, RoPE
// factors) as f32, aligned.
uint64_t gpu_tensor_bytes(const TensorInfo& t);

// The weights a GPU stage uploads: the tensors of `layers` (inclusive; none if empty) and the
// model's RoPE frequency factors if it has layers and the model has them; with the output head,
// the output norm and matrix (the token embeddings when the output is tied).
uint64_t gpu_weight_bytes(const ModelSpec& m, std::optional<std::pair<uint32_t, uint32_t>> layers, bool output);
// Its parts: one layer; the RoPE factors (0 without them); the output norm and head.
uint64_t gpu_layer_bytes(const ModelSpec& m, uint32_t layer);
uint64_t gpu_rope_bytes(const ModelSpec& m);
uint64_t gpu_output_bytes(const ModelSpec& m);

// The prompt micro-batch the stages are built for: n_ubatch (0: n_batch), never more than n_batch
// or the context. The planner counts every stage's buffers at it; Context builds them at it.
inline uint32_t stage_micro_batch(uint32_t n_batch, uint32_t n_ubatch, uint32_t n_ctx) {
  const uint32_t batch = n_ctx ? std::min(n_batch, n_ctx) : n_batch;
  return n_ubatch ? std::min(n_ubatch, batch) : batch;
}

// What one stage (a device's contiguous layer range) processes at once.
struct StageShape {
  uint32_t n_batch = 512;  // tokens per forward call (prompt micro-batch)
  uint32_t n_ctx = 4096;
  uint32_t n_outputs = 1;  // rows of logits kept per call (1 for generation)
  bool has_layers = true;
  bool has_output_head = false;
  bool gpu = false;  // a CUDA stage: its attention workspace, no CPU activation blocks
  KvType kv_type = KvType::f16;  // a CUDA stage's q8_0 cache adds the prompt attention's fp16 copy
};

// Tokens per chunk of the GPU's split-key decode attention (kernels/cuda/attention.cu); its
// workspace holds, per head and chunk, a max, a sum and head_dim partial outputs.
constexpr uint32_t kGpuAttentionChunk = 64;

// Decode-sized batches on the GPU: at most this many rows per matrix-vector launch
// (kernels/cuda/matvec.h), their activations quantized in blocks of 32 values of this many bytes
// (a scale, a sum and 32 codes) for the integer kernels.
constexpr uint32_t kGpuMatvecMaxBatch = 8;
constexpr uint64_t kGpuActivationBlockBytes = 40;

// Prompt offload: a CPU stage's layers multiply their prompt batches (at least
// kPromptOffloadMinBatch tokens) on a GPU, as llama.cpp does for the layers it leaves on the CPU.
// Each matrix is streamed to the GPU for the product (through pinned chunks of
// kPromptOffloadChunkBytes), so its weights are read once per batch over PCIe instead of the
// batch's flops running on the CPU. Below the threshold (decode), the CPU multiplies.
constexpr int64_t kPromptOffloadMinBatch = 32;
constexpr uint64_t kPromptOffloadChunkBytes = 8ull << 20;

// The matrices of `layers` (inclusive) the offload may multiply: the widest input (K), the most
// rows (N) and the largest matrix in the GPU layout (bytes).
struct PromptOffloadShapes {
  uint64_t max_k = 0, max_n = 0, max_matrix = 0;
};
PromptOffloadShapes prompt_offload_shapes(const ModelSpec& m, std::pair<uint32_t, uint32_t> layers);

// The device memory of the offload for `layers` at n_batch tokens: one slot for the largest
// matrix, the batch in fp16 (widest input), and one f32 buffer for the batch's input and then
// each product's output (the wider of the two); each 256-byte aligned.
uint64_t prompt_offload_device_bytes(const ModelSpec& m, std::pair<uint32_t, uint32_t> layers, uint32_t n_batch);
// The pinned host memory it takes: two chunks of the weight stream and the f32 buffer's copy.
uint64_t prompt_offload_host_bytes(const ModelSpec& m, std::pair<uint32_t, uint32_t> layers, uint32_t n_batch);

struct BufferSpec {
  std::string_view name;
  uint64_t bytes;
};

// Every scratch buffer of a stage, f32 activations unless noted.
std::vector<BufferSpec> stage_buffers(const HyperParams& hp, const StageShape& shape);

// Sum of stage_buffers, each rounded up to the 256-byte allocation granularity.
uint64_t stage_buffer_bytes(const HyperParams& hp, const StageShape& shape);

}  // namespace engine
