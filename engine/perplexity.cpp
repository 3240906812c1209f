#include "engine/perplexity.h"

#include <cmath>

#include <fmt/format.h>

#include "engine/error.h"
#include "kernels/cpu/ops.h"

namespace engine {

PerplexityResult perplexity(Context& ctx, std::span<const int32_t> tokens, uint32_t n, uint32_t max_chunks,
                            const std::function<void(uint32_t, double)>& progress) {
  if (n < 16) throw Error(fmt::format("perplexity: chunk size {} is below 16 tokens", n));
  if (n > ctx.n_ctx()) {
    throw Error(fmt::format("perplexity: chunk size {} exceeds the context of {}", n, ctx.n_ctx()));
  }
  uint32_t chunks = static_cast<uint32_t>(tokens.size() / n);
  if (max_chunks > 0) chunks = std::min(chunks, max_chunks);
  if (chunks == 0) {
    throw Error(fmt::format("perplexity: the text has {} tokens, fewer than one chunk of {}",
                            tokens.size(), n));
  }
  const int32_t bos = ctx.model().tokenizer() && ctx.model().tokenizer()->add_bos()
                          ? ctx.model().tokenizer()->bos()
                          : -1;
  const size_t n_vocab = static_cast<size_t>(ctx.model().n_vocab());
  PerplexityResult r;
  double sum = 0, sum2 = 0;
  std::vector<int32_t> chunk(n);
  for (uint32_t c = 0; c < chunks; ++c) {
    std::copy(tokens.begin() + size_t(c) * n, tokens.begin() + size_t(c + 1) * n, chunk.begin());
    if (bos >= 0) chunk[0] = bos;
    ctx.reset();
    const std::span<const float> logits = ctx.eval_all(chunk);
    // Score each token of the second half from the logits one position earlier.
    for (uint32_t j = n / 2; j + 1 < n; ++j) {
      const float* row = logits.data() + size_t(j) * n_vocab;
      double mx = double(row[0]);
      for (size_t v = 1; v < n_vocab; ++v) mx = std::max(mx, double(row[v]));
      const double z = exp_shifted(row, sizeof(float), int64_t(n_vocab), mx, 1.0);
      const double nll = -(double(row[tokens[size_t(c) * n + j + 1]]) - mx - std::log(z));
      sum += nll;
      sum2 += nll * nll;
      ++r.scored_tokens;
    }
    r.chunk_ppl.push_back(std::exp(sum / double(r.scored_tokens)));
    if (progress) progress(c, r.chunk_ppl.back());
  }
  const double count = double(r.scored_tokens);
  const double mean = sum / count;
  r.ppl = std::exp(mean);
  const double var = count > 1 ? (sum2 / count - mean * mean) * count / (count - 1) : 0.0;
  r.ppl_error = r.ppl * std::sqrt(std::max(0.0, var) / count);
  return r;
}

}  // namespace engine
