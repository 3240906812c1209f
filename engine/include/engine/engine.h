// The engine's public API: load a GGUF model, evaluate tokens, read logits, generate.
//
// Errors: every failure throws engine::Error (see <engine/error.h>) with a one-line message; the
// library never aborts or exits.
// Threads: a Model is immutable after load and may be shared by any number of Contexts on any
// threads. A Context (one sequence: its KV cache, scratch buffers and worker threads) must be
// used by one thread at a time.
// Placement: a context runs the model as pipeline stages, contiguous layer ranges in layer order
// (ContextOptions::stages, normally stages_from_plan() of the split planner's plan), each with its
// own part of the KV cache. Stages on the CPU and on simulated devices ("sim:24GiB") run on the
// CPU with their own threads; stages on CUDA devices run the CUDA kernels (builds with the CUDA
// backend; f16 KV cache; every weight type, Q2_K and Q3_K prompts through the decode kernels).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/memory_model.h"
#include "engine/model_file.h"
#include "engine/model_spec.h"
#include "engine/planner.h"
#include "engine/sampling.h"
#include "engine/tokenizer.h"

namespace engine {

class CpuModel;
class Pipeline;

class Model {
 public:
  // Maps and validates the model; weights stay in the mapping (no copy).
  static std::shared_ptr<const Model> load(const std::string& path);
  ~Model();

  const ModelSpec& spec() const { return spec_; }
  int32_t n_vocab() const { return static_cast<int32_t>(spec_.hp.n_vocab); }
  // The file's tokenizer; null when the file has none (then prompts are token ids).
  const std::shared_ptr<const Tokenizer>& tokenizer() const { return tokenizer_; }
  // tokenizer.chat_template, or "".
  std::string_view chat_template() const;
  bool is_end_of_generation(int32_t token) const;

 private:
  Model() = default;
  friend class Context;
  ModelSpec spec_;
  std::unique_ptr<CpuModel> cpu_;
  std::shared_ptr<const Tokenizer> tokenizer_;
};

struct StageOptions {
  Device device;  // where the stage runs (kind cpu, or a GPU: simulated ones run on the CPU)
  uint32_t first_layer = 0, last_layer = 0;  // inclusive
  // A CPU stage: the GPU that multiplies its prompt batches of kPromptOffloadMinBatch tokens or
  // more (engine/memory_model.h: prompt offload); none, or a simulated GPU, keeps them on the CPU.
  std::optional<Device> prompt_offload = std::nullopt;
};

// The plan's devices that hold layers, as stages in layer order (the CPU stage's prompt offload
// as the plan places it).
std::vector<StageOptions> stages_from_plan(const Plan& plan);

// The instruction set of the CPU kernels this process runs ("avx512-vnni", "avx2" or
// "generic"): the best this CPU has, or at most what ENGINE_CPU_ISA names (docs/engine.md).
// Throws Error for an ENGINE_CPU_ISA this CPU cannot run.
std::string cpu_kernels_isa();

// The CPU threads a context starts when ContextOptions::n_threads is 0: one per physical core
// this process may run on (its affinity mask, SMT siblings once, a hybrid Intel CPU's performance
// cores only, at most its cgroup's CPU quota), as llama.cpp's default.
int default_thread_count();
// The CPUs this process may run on (its affinity mask; SMT siblings each counted). More threads
// than this take turns on the CPUs, which costs the spinning workers far more than it gains.
int available_cpu_count();

struct ContextOptions {
  uint32_t n_ctx = 0;       // 0: min(trained context, 4096)
  uint32_t n_batch = 512;   // prompt tokens per forward call
  uint32_t n_ubatch = 0;    // prompt micro-batch that flows through the stages; 0: n_batch
  int n_threads = 0;        // 0: one per physical core this process may use; shared out evenly between CPU-run stages
  KvType kv_type = KvType::f16;
  std::vector<StageOptions> stages;  // empty: one CPU stage with every layer
  // Between two stages on CUDA devices: "peer" (cudaMemcpyPeerAsync; also between slices of one
  // GPU), "nccl" (send/recv over one communicator, one rank per GPU) or "host" (through pinned
  // host buffers); "auto" is peer. A boundary with a CPU-run stage on either side always goes
  // through host memory.
  std::string transport = "auto";
  // Called while GPU stages upload their weights (stage by stage, after each tensor): bytes
  // uploaded so far and in all (every GPU stage's weights as the memory model counts them);
  // the last call has done == total. Never called when no stage runs on a GPU.
  std::function<void(uint64_t done, uint64_t total)> load_progress;
};

// Why a generate() call stopped: an end-of-generation token was sampled, n_predict tokens were
// generated, the context was full (every position holds a token; the last token sampled is not
// in the cache), or on_token returned false.
enum class StopReason { end_of_generation, n_predict, context_full, callback };
// "eos", "length", "context" or "callback".
std::string_view stop_reason_name(StopReason reason);

class Context {
 public:
  Context(std::shared_ptr<const Model> model, const ContextOptions& options = {});
  ~Context();

  const Model& model() const { return *model_; }
  size_t n_stages() const;
  std::string transports() const;  // per boundary, '|'-separated ("peer|host"); "none" for one stage
  uint32_t n_ctx() const { return n_ctx_; }
  uint32_t n_past() const { return n_past_; }  // tokens in the KV cache
  void reset() { n_past_ = 0; }
  // Keeps the first n tokens of the sequence: the next eval continues from position n, writing
  // over what the cache held past it. Throws engine::Error for n > n_past().
  void truncate(uint32_t n);

  // Appends tokens to the sequence (in batches of n_batch) and returns the logits after the last
  // one (n_vocab values, valid until the next call). Throws if the context would overflow or a
  // token id is outside the vocabulary.
  std::span<const float> eval(std::span<const int32_t> tokens);

  // As eval, but returns the logits after every token: tokens.size() rows of n_vocab.
  std::span<const float> eval_all(std::span<const int32_t> tokens);

  // As eval, but returns only the greedy token of the last logits (argmax_token in
  // engine/sampling.h), reduced where the output head runs: a GPU head copies one int to the
  // host, not a row of logits. generate() takes it for plain greedy sampling.
  int32_t eval_greedy(std::span<const int32_t> tokens);

  // Evaluates the prompt, then samples up to n_predict tokens, calling on_token after each; it
  // stops early when on_token returns false, an end-of-generation token is sampled or the context
  // is full (the logits of its last position still give one token). Returns the generated
  // tokens; last_stop() says why it stopped.
  std::vector<int32_t> generate(std::span<const int32_t> prompt, int n_predict,
                                const SamplingParams& sampling,
                                const std::function<bool(int32_t)>& on_token = {});
  StopReason last_stop() const { return last_stop_; }

 private:
  std::shared_ptr<const Model> model_;
  std::unique_ptr<Pipeline> pipeline_;
  uint32_t n_ctx_ = 0;
  uint32_t n_batch_ = 0;
  uint32_t n_past_ = 0;
  StopReason last_stop_ = StopReason::n_predict;
  std::vector<float> logits_;
  std::span<const float> run(std::span<const int32_t> tokens, bool all_logits);
  // Throws unless tokens is non-empty, fits the context and holds vocabulary ids.
  void check_appendable(std::span<const int32_t> tokens) const;
};

}  // namespace engine
