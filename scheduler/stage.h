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

class Stage {
 public:
  virtual ~Stage() = default;

  // Runs tokens at positions [pos, pos + n) through the stage's layers. The input stage embeds
  // `tokens`; any other reads the hidden state that the previous stage's transport wrote into
  // hidden(). The output stage writes logits: the last token's (n_vocab floats), or every
  // token's ([n][n_vocab]) when all_logits, unless `logits` is null; other stages leave theirs
  // in hidden().
  virtual void forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) = 0;

  virtual float* hidden() = 0;  // [n_batch][n_embd] host floats
};

}  // namespace engine
