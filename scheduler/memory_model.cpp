#include "engine/memory_model.h"

#include <algorithm>

#include "engine/gpu_layout.h"

namespace engine {
namespace {

uint64_t f32(uint64_t n) { return 4 * n; }
uint64_t q8_blocks(uint64_t n) { return (n + 31) / 32 * 34; }  // Q8_0: 34 bytes per 32 values

}  // namespace

std::optional<KvType> parse_kv_type(std::string_view name) {
  if (name == "f16") return KvType::f16;
  if (name == "q8_0") return KvType::q8_0;
  if (name == "f32") return KvType::f32;
  return std::nullopt;
}

std::string_view kv_type_name(KvType type) {
  switch (type) {
    case KvType::f16: return "f16";
    case KvType::q8_0: return "q8_0";
    case KvType::f32: return "f32";
  }
  return "?";
}

bool kv_type_fits(KvType type, int64_t head_dim) { return type != KvType::q8_0 || head_dim % 32 == 0; }

uint64_t kv_bytes_per_layer(const HyperParams& hp, KvType type, uint64_t positions) {
  const uint64_t values = positions * hp.kv_dim();  // per K or V
  switch (type) {
    case KvType::f16: return 2 * 2 * values;
    case KvType::f32: return 2 * 4 * values;
    case KvType::q8_0: return 2 * q8_blocks(values);
  }
  return 0;
}

uint64_t stage_kv_bytes(const HyperParams& hp, KvType type, uint32_t n_ctx, uint32_t n_layers) {
  return 2 * align_device(uint64_t(n_layers) * kv_bytes_per_layer(hp, type, n_ctx) / 2);
}

uint64_t cpu_stage_kv_bytes(const HyperParams& hp, KvType type, uint32_t n_ctx, uint32_t n_layers) {
  return uint64_t(n_layers) * kv_bytes_per_layer(hp, type, cpu_kv_positions(n_ctx));
}

uint64_t gpu_tensor_bytes(const TensorInfo& t) {
  return align_device(t.n_dims == 1 ? 4 * t.n_elements : gpu_row_bytes(t.type, t.ne[0]) * uint64_t(t.rows()));
}

uint64_t gpu_layer_bytes(const ModelSpec& m, uint32_t layer) {
  uint64_t total = 0;
  for (const TensorInfo* t : m.layer_tensors.at(layer)) total += gpu_tensor_bytes(*t);
  return total;
}

uint64_t gpu_rope_bytes(const ModelSpec& m) {
  const TensorInfo* f = m.file.find_tensor("rope_freqs.weight");
  return f != nullptr ? gpu_tensor_bytes(*f) : 0;
}

uint64_t gpu_output_bytes(const ModelSpec& m) {
  uint64_t total = 0;
  for (const TensorInfo* t : m.output_tensors) total += gpu_tensor_bytes(*t);
  if (m.hp.tied_output) total += gpu_tensor_bytes(*m.file.find_tensor("token_embd.weight"));
  return total;
}

uint64_t gpu_weight_bytes(const ModelSpec& m, std::optional<std::pair<uint32_t, uint32_t>> layers, bool output) {
  uint64_t total = output ? gpu_output_bytes(m) : 0;
  if (layers) {
    for (uint32_t l = layers->first; l <= layers->second; ++l) total += gpu_layer_bytes(m, l);
    total += gpu_rope_bytes(m);
  }
  return total;
}

PromptOffloadShapes prompt_offload_shapes(const ModelSpec& m, std::pair<uint32_t, uint32_t> layers) {
  PromptOffloadShapes s;
  for (uint32_t l = layers.first; l <= layers.second; ++l) {
    for (const TensorInfo* t : m.layer_tensors.at(l)) {
      if (t->n_dims != 2) continue;
      s.max_k = std::max<uint64_t>(s.max_k, uint64_t(t->ne[0]));
      s.max_n = std::max<uint64_t>(s.max_n, uint64_t(t->rows()));
      s.max_matrix = std::max(s.max_matrix, gpu_row_bytes(t->type, t->ne[0]) * uint64_t(t->rows()));
    }
  }
  return s;
}

uint64_t prompt_offload_device_bytes(const ModelSpec& m, std::pair<uint32_t, uint32_t> layers, uint32_t n_batch) {
  const PromptOffloadShapes s = prompt_offload_shapes(m, layers);
  return align_device(s.max_matrix) + align_device(2 * uint64_t(n_batch) * s.max_k) +
         align_device(f32(uint64_t(n_batch) * std::max(s.max_k, s.max_n)));
}

uint64_t prompt_offload_host_bytes(const ModelSpec& m, std::pair<uint32_t, uint32_t> layers, uint32_t n_batch) {
  const PromptOffloadShapes s = prompt_offload_shapes(m, layers);
  return 2 * kPromptOffloadChunkBytes + f32(uint64_t(n_batch) * std::max(s.max_k, s.max_n));
}

std::vector<BufferSpec> stage_buffers(const HyperParams& hp, const StageShape& s) {
  const uint64_t b = s.n_batch;
  std::vector<BufferSpec> buffers;
  // The hidden state arrives here (from the embedding lookup or the previous stage) and leaves.
  buffers.push_back({"hidden", f32(b * hp.n_embd)});
  if (s.has_layers) {
    buffers.push_back({"normed", f32(b * hp.n_embd)});
    buffers.push_back({"q", f32(b * hp.q_dim())});
    buffers.push_back({"k", f32(b * hp.kv_dim())});
    buffers.push_back({"v", f32(b * hp.kv_dim())});
    buffers.push_back({"attn_out", f32(b * hp.q_dim())});
    if (!s.gpu) {  // a sublayer's output before the add (GPU products add into the hidden state)
      buffers.push_back({"residual", f32(b * hp.n_embd)});
    }
    if (s.gpu) {
      // Split-key decode attention: per head and chunk of keys a max, a sum and head_dim outputs.
      const uint64_t chunks = (uint64_t(s.n_ctx) + kGpuAttentionChunk - 1) / kGpuAttentionChunk;
      buffers.push_back({"attention_partials", f32(uint64_t(hp.n_head) * chunks * (hp.head_dim + 2))});
      // The decode position in device memory, read by the kernels of a replayed CUDA graph.
      buffers.push_back({"position", 8});
      // A q8_0 cache's keys and values of one layer as fp16, which the prompt attention reads
      // (kernels/cuda/kv_cache.h): K and V for the whole context.
      if (s.kv_type == KvType::q8_0) buffers.push_back({"kv_f16", 2 * 2 * uint64_t(s.n_ctx) * hp.kv_dim()});
    } else {
      // One row of scores per head and query in flight: n_head rows of n_ctx.
      buffers.push_back({"scores", f32(uint64_t(hp.n_head) * s.n_ctx)});
    }
    buffers.push_back({"ffn_gate", f32(b * hp.n_ff)});
    buffers.push_back({"ffn_up", f32(b * hp.n_ff)});
    if (s.gpu) {
      // A matrix input in the forms the kernels read (widest input: n_ff): a prompt batch in fp16
      // for the tensor-core matmuls, up to kGpuMatvecMaxBatch rows in 8-bit blocks for the
      // integer matrix-vector kernels.
      const uint64_t widest = std::max({uint64_t(hp.n_embd), uint64_t(hp.q_dim()), uint64_t(hp.n_ff)});
      buffers.push_back({"act_f16", 2 * b * widest});
      buffers.push_back({"act_q8", std::min<uint64_t>(b, kGpuMatvecMaxBatch) * (widest / 32) * kGpuActivationBlockBytes});
    } else {
      // Activations quantized to Q8_0 blocks for the integer dot products (widest input: n_ff).
      buffers.push_back({"act_q8", q8_blocks(b * std::max(hp.n_embd, hp.n_ff))});
    }
  }
  if (s.has_output_head) {
    buffers.push_back({"logits", f32(uint64_t(s.n_outputs) * hp.n_vocab)});
    // Greedy decoding's token, reduced from the logits on the device (only it is copied back).
    if (s.gpu) buffers.push_back({"greedy_token", 4});
  }
  return buffers;
}

uint64_t stage_buffer_bytes(const HyperParams& hp, const StageShape& shape) {
  uint64_t total = 0;
  for (const auto& buf : stage_buffers(hp, shape)) {
    total += align_device(buf.bytes);
  }
  return total;
}

}  // namespace engine
