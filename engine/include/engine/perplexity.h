// Perplexity over non-overlapping chunks of a token stream, scoring the second half of each
// chunk, as llama.cpp's perplexity tool does (so the figures are comparable).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "engine/engine.h"

namespace engine {

struct PerplexityResult {
  double ppl = 0;
  double ppl_error = 0;            // standard error (delta method on the mean log-likelihood)
  uint64_t scored_tokens = 0;
  std::vector<double> chunk_ppl;   // running estimate after each chunk
};

// tokens: the text tokenized with BOS handling as the model wants it. Each chunk of n_chunk_ctx
// tokens is evaluated from an empty cache (its first token replaced by BOS when the model adds
// one); the tokens of its second half are scored. progress(chunk, running_ppl) after each chunk.
// Throws engine::Error when the text is shorter than one chunk or a chunk exceeds the context.
PerplexityResult perplexity(Context& ctx, std::span<const int32_t> tokens, uint32_t n_chunk_ctx,
                            uint32_t max_chunks,
                            const std::function<void(uint32_t, double)>& progress = {});

}  // namespace engine
