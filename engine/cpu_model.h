// The forward pass on the CPU: one parameterised transformer for every architecture of the
// tables (llama, qwen2, qwen3), weights used in place from the mmap.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/memory_model.h"
#include "engine/model_spec.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/thread_pool.h"
#include "scheduler/stage.h"

namespace engine {

struct Matrix {  // a 2-D weight: rows of `cols` values of `type`
  GgmlType type = GgmlType::F32;
  const void* data = nullptr;
  int64_t cols = 0;
  int64_t rows = 0;
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm, q_norm, k_norm;  // f32 copies of the small tensors
  std::vector<float> bq, bk, bv, bo;                       // empty when absent
  Matrix wq, wk, wv, wo, w_gate, w_up, w_down;
};

class CpuModel {
 public:
  explicit CpuModel(const ModelSpec& spec);

  const ModelSpec& spec;
  Matrix token_embd, output;  // output aliases token_embd when tied
  std::vector<float> output_norm, rope_freqs;
  std::vector<LayerWeights> layers;
  RopeParams rope;  // per-model part (no position)
};

// One pipeline stage on the CPU, with its own worker threads; scratch buffers sized by the
// memory model's stage_buffers list.
class PromptOffload;

class CpuStage final : public Stage {
 public:
  CpuStage(const CpuModel& model, StageLayers layers, uint32_t n_ctx, uint32_t n_batch,
           KvType kv_type, int n_threads);
  ~CpuStage() override;

  // From now on, the layers' products with batches of kPromptOffloadMinBatch tokens or more go to
  // `offload` where it accepts every matrix of a product group (engine/prompt_offload.h).
  void set_prompt_offload(std::unique_ptr<PromptOffload> offload);

  void forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) override;
  int32_t forward_greedy(const int32_t* tokens, int64_t n, int64_t pos) override;
  float* hidden() override { return x_.data(); }
  // Both caches' bytes, as allocated (the planner's cpu_stage_kv_bytes).
  uint64_t kv_cache_bytes() const { return k_cache_.size() + v_cache_.size(); }

 private:
  void attention(int layer, int64_t n, int64_t pos);
  // Where a layer's KV head keeps position pos in k_cache_ or v_cache_.
  uint8_t* kv_at(std::vector<uint8_t>& cache, int layer, int64_t head, int64_t pos);

  const CpuModel& m_;
  const HyperParams& hp_;
  StageLayers layers_;
  uint32_t n_ctx_, n_batch_;
  GgmlType kv_type_;
  uint64_t kv_head_bytes_;  // one head's head_dim values in kv_type_
  int64_t cache_positions_;  // a head's positions in either cache: n_ctx, in whole key blocks
  ThreadPool pool_;
  std::unique_ptr<PromptOffload> offload_;
  // [layer - first][kv head][position][head_dim] in kv_type_: head-major, so that attention reads
  // each head's positions as one stream, which the hardware prefetchers follow (position-major
  // rows, one head's slice of each, ran decode attention at about 2/3 the speed). The keys are
  // in blocks of kAttnKeyBlock positions, each dimension-major (AttentionBatch::keys_blocked), so
  // that a decode step's scores need no sums across a vector's lanes.
  std::vector<uint8_t> k_cache_, v_cache_;
  std::vector<float> x_, xb_, q_, k_, v_, attn_out_, tmp_, gate_, up_, logits_;
  std::vector<float> rope_angles_;  // per token of a batch: n_rot / 2 cosines, then n_rot / 2 sines
};

}  // namespace engine
