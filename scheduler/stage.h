// A pipeline stage as the scheduler sees it: a contiguous range of layers that takes a batch of
// tokens (or the previous stage's hidden state) and gives the next stage's hidden state or the
// logits. The backends implement it (engine/cpu_model.h: CpuStage, engine/cuda_stage.h).
#pragma once

#include <cstdint>

namespace engine {

// Which part of the model a stage runs: layers first..last (inclusive); the input stage looks
// the tokens up in the embeddings, the output stage applies the output norm and head.
struct StageLayers {
  uint32_t first = 0, last = 0;
  bool input = true, output = true;
};

// What device-to-device transports (cuda_transport.h) need of a stage that runs on a CUDA device.
// CUDA handles are passed as void* (cudaStream_t, cudaEvent_t) so that this header stays free of
// CUDA. Every forward of such a stage runs on stream() and records forward_done() at its end.
class CudaStageLink {
 public:
  virtual ~CudaStageLink() = default;
  virtual int device() const = 0;
  virtual float* device_hidden() = 0;  // [n_batch][n_embd] floats on device()
  virtual void* stream() = 0;
  virtual void* forward_done() = 0;
  // Where the hidden state comes from and goes to: the pinned host buffer hidden() by default;
  // where a device transport connects that side, device_hidden(), with no host copy and, on the
  // way out, no host wait. Each is called by the transport on that side.
  virtual void take_input_on_device() = 0;
  virtual void leave_output_on_device() = 0;
  // The next forward's stream first waits for this event (a copy enqueued on another stream).
  virtual void wait_before_next_forward(void* event) = 0;
};

// A forward's bounds, which every stage checks before it touches a buffer: 1 <= n <= n_batch (its
// buffers' rows) and pos + n <= n_ctx (its KV cache). Throws engine::Error naming the layers.
void check_batch(const StageLayers& layers, int64_t n, int64_t pos, uint32_t n_batch, uint32_t n_ctx);

class Stage {
 public:
  virtual ~Stage() = default;

  // Runs tokens at positions [pos, pos + n) through the stage's layers. The input stage embeds
  // `tokens`; any other reads the hidden state that the previous stage's transport wrote into
  // hidden(). The output stage writes logits: the last token's (n_vocab floats), or every
  // token's ([n][n_vocab]) when all_logits, unless `logits` is null; other stages leave theirs
  // in hidden().
  virtual void forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) = 0;

  // As forward for the output stage with the last token's logits wanted, but returns only their
  // greedy token (argmax_token, engine/sampling.h), reduced where the head ran: a GPU stage copies
  // one int to the host instead of a row of logits.
  virtual int32_t forward_greedy(const int32_t* tokens, int64_t n, int64_t pos) = 0;

  virtual float* hidden() = 0;  // [n_batch][n_embd] host floats

  // Non-null for stages that run on a CUDA device.
  virtual CudaStageLink* cuda_link() { return nullptr; }
};

}  // namespace engine
