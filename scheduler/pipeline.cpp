#include "pipeline.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <thread>

#include <fmt/format.h>

#include "engine/error.h"

namespace engine {

void HostTransport::send(int64_t n_floats) {
  std::memcpy(to_.hidden(), from_.hidden(), static_cast<size_t>(n_floats) * sizeof(float));
}

void check_stage_ranges(const std::vector<StageLayers>& ranges, uint32_t n_layer) {
  if (ranges.empty()) throw Error("pipeline: no stages");
  uint32_t next = 0;
  for (size_t s = 0; s < ranges.size(); ++s) {
    const StageLayers& l = ranges[s];
    if (l.first != next || l.last < l.first || l.last >= n_layer) {
      throw Error(fmt::format("pipeline: stage {} has layers {}-{}, expected a range starting at {} "
                              "within 0-{} (stages must cover the layers in order)",
                              s, l.first, l.last, next, n_layer - 1));
    }
    next = l.last + 1;
  }
  if (next != n_layer) {
    throw Error(fmt::format("pipeline: the stages end at layer {}, the model has {} layers", next - 1, n_layer));
  }
}

Pipeline::Pipeline(std::vector<std::unique_ptr<Stage>> stages, std::vector<std::unique_ptr<Transport>> transports,
                   int64_t n_embd, int64_t n_vocab, uint32_t n_ubatch)
    : n_embd_(n_embd), n_vocab_(n_vocab), n_ubatch_(n_ubatch), stages_(std::move(stages)),
      transports_(std::move(transports)) {
  if (stages_.empty()) throw Error("pipeline: no stages");
  if (transports_.empty()) {
    for (size_t s = 0; s + 1 < stages_.size(); ++s) {
      transports_.push_back(std::make_unique<HostTransport>(*stages_[s], *stages_[s + 1]));
    }
  }
  if (transports_.size() + 1 != stages_.size()) {
    throw Error(fmt::format("pipeline: {} transports for {} stages", transports_.size(), stages_.size()));
  }
}

void Pipeline::forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) {
  aborting_on_failure([&] { run_steps(tokens, n, pos, logits, all_logits, nullptr); });
}

int32_t Pipeline::forward_greedy(const int32_t* tokens, int64_t n, int64_t pos) {
  int32_t token = -1;
  aborting_on_failure([&] { run_steps(tokens, n, pos, nullptr, false, &token); });
  return token;
}

void Pipeline::aborting_on_failure(const std::function<void()>& work) {
  try {
    work();
  } catch (...) {
    for (auto& t : transports_) t->abort();
    throw;
  }
}

void Pipeline::run_steps(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits,
                         int32_t* greedy) {
  const int64_t ub = n_ubatch_, n_micro = (n + ub - 1) / ub;
  const int64_t n_stages = static_cast<int64_t>(stages_.size());
  const int64_t E = n_embd_, n_vocab = n_vocab_;
  auto length = [&](int64_t j) { return std::min(ub, n - j * ub); };
  auto run = [&](int64_t s, int64_t j) {
    if (greedy != nullptr && s + 1 == n_stages && j + 1 == n_micro) {
      *greedy = stages_[s]->forward_greedy(tokens + j * ub, length(j), pos + j * ub);
      return;
    }
    float* out = nullptr;  // the head runs for every micro-batch or only for the last one
    if (s + 1 == n_stages && (all_logits || j + 1 == n_micro)) out = all_logits ? logits + j * ub * n_vocab : logits;
    stages_[s]->forward(tokens + j * ub, length(j), pos + j * ub, out, all_logits);
  };
  for (int64_t t = 0; t < n_micro + n_stages - 1; ++t) {
    std::vector<std::pair<int64_t, int64_t>> active;  // (stage, micro-batch)
    for (int64_t s = 0; s < n_stages; ++s) {
      if (t - s >= 0 && t - s < n_micro) active.emplace_back(s, t - s);
    }
    if (active.size() == 1) {
      run(active[0].first, active[0].second);
    } else {
      std::vector<std::exception_ptr> errors(active.size());
      std::vector<std::thread> threads;
      for (size_t a = 1; a < active.size(); ++a) {
        threads.emplace_back([&, a] {
          try {
            run(active[a].first, active[a].second);
          } catch (...) {
            errors[a] = std::current_exception();
          }
        });
      }
      try {
        run(active[0].first, active[0].second);
      } catch (...) {
        errors[0] = std::current_exception();
      }
      for (auto& th : threads) th.join();
      for (auto& e : errors) {
        if (e) std::rethrow_exception(e);
      }
    }
    // Each finished micro-batch moves one stage on, the last stages first so that no stage's
    // output is overwritten before it has been passed along.
    for (int64_t s = n_stages - 2; s >= 0; --s) {
      const int64_t j = t - s;
      if (j >= 0 && j < n_micro) transports_[s]->send(length(j) * E);
    }
  }
}

void check_batch(const StageLayers& layers, int64_t n, int64_t pos, uint32_t n_batch, uint32_t n_ctx) {
  if (n < 1 || n > n_batch || pos < 0 || pos + n > n_ctx) {
    throw Error(fmt::format("stage with layers {}-{}: a batch of {} tokens at position {} is outside its {} rows "
                            "and {} positions", layers.first, layers.last, n, pos, n_batch, n_ctx));
  }
}

}  // namespace engine
