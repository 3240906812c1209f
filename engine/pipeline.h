// A sequence split into pipeline stages, each a contiguous range of layers, in layer order; the
// hidden state passes from stage to stage through a transport.
//
// Prompts are cut into micro-batches of n_ubatch tokens that flow through the stages as a
// wavefront: at step t stage s runs micro-batch t - s, all stages of a step at the same time on
// their own threads, then each finished micro-batch moves one stage on. A stage therefore sees its
// micro-batches in order (its KV cache grows in position order) and the result equals the
// unpipelined one. A decode step (one token) runs the stages one after the other on the caller's
// thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cpu_model.h"

namespace engine {

// Moves a micro-batch's hidden state ([n][n_embd] floats) from one stage to the next.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;
  virtual void send(const float* from, float* to, int64_t n_floats) = 0;
};

// Between stages whose hidden states live in host memory (CPU stages, simulated devices): a copy.
class HostTransport final : public Transport {
 public:
  const char* name() const override { return "host"; }
  void send(const float* from, float* to, int64_t n_floats) override;
};

struct PipelineStage {
  StageLayers layers;
  int n_threads = 1;     // CPU stages
  int cuda_device = -1;  // >= 0: the stage runs on this CUDA device
};

class Pipeline {
 public:
  Pipeline(const CpuModel& model, const std::vector<PipelineStage>& stages, uint32_t n_ctx,
           uint32_t n_batch, uint32_t n_ubatch, KvType kv_type);

  // As Stage::forward for the whole model: n <= n_batch tokens at positions [pos, pos + n).
  void forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits);

  size_t n_stages() const { return stages_.size(); }

 private:
  const CpuModel& model_;
  uint32_t n_ubatch_;
  std::vector<std::unique_ptr<Stage>> stages_;
  std::vector<std::unique_ptr<Transport>> transports_;  // transports_[s]: stage s -> s + 1
};

}  // namespace engine
