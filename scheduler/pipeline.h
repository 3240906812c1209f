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
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "stage.h"

namespace engine {

// Moves a micro-batch's hidden state ([n][n_embd] floats) from one stage to the next. Built for
// one boundary, knowing both stages. Where the stages order their work on device streams, send()
// only enqueues the move, ordered after the sender's last forward and before the receiver's next
// one; it never makes the host wait.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;
  virtual void send(int64_t n_floats) = 0;
  // Called after anything in the pipeline failed: release whatever could leave a device waiting
  // for a transfer that will not come (NCCL aborts its communicators). Default: nothing.
  virtual void abort() noexcept {}
};

// Between stages whose hidden states live in host memory (CPU stages, simulated devices, and GPU
// stages that stage through pinned host buffers): a copy.
class HostTransport final : public Transport {
 public:
  HostTransport(Stage& from, Stage& to) : from_(from), to_(to) {}
  const char* name() const override { return "host"; }
  void send(int64_t n_floats) override;

 private:
  Stage& from_;
  Stage& to_;
};

// Checks that the ranges cover layers 0 .. n_layer - 1 in order, each once; throws engine::Error
// "pipeline: ..." naming the first stage that does not.
void check_stage_ranges(const std::vector<StageLayers>& ranges, uint32_t n_layer);

class Pipeline {
 public:
  // The stages in layer order (the first embeds, the last has the head), built for micro-batches
  // of up to n_ubatch tokens, and transports[s] from stage s to s + 1 (empty: host transports).
  Pipeline(std::vector<std::unique_ptr<Stage>> stages, std::vector<std::unique_ptr<Transport>> transports,
           int64_t n_embd, int64_t n_vocab, uint32_t n_ubatch);

  // As Stage::forward for the whole model: n <= n_batch tokens at positions [pos, pos + n).
  // On failure every transport is aborted before the error propagates.
  void forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits);

  // As forward with the last token's logits wanted, returning only their greedy token, which the
  // output stage reduces where its head runs (Stage::forward_greedy).
  int32_t forward_greedy(const int32_t* tokens, int64_t n, int64_t pos);

  size_t n_stages() const { return stages_.size(); }
  const Transport* transport(size_t s) const { return transports_.at(s).get(); }

 private:
  int64_t n_embd_, n_vocab_;
  uint32_t n_ubatch_;
  std::vector<std::unique_ptr<Stage>> stages_;
  std::vector<std::unique_ptr<Transport>> transports_;  // transports_[s]: stage s -> s + 1

  // Runs work; if it throws, aborts every transport first (no stage is left waiting for a copy).
  void aborting_on_failure(const std::function<void()>& work);

  // greedy: the output stage's last micro-batch returns its greedy token there instead of logits.
  void run_steps(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits, int32_t* greedy);
};

}  // namespace engine
