#include "engine/engine.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <thread>

#include "cpu_model.h"
#include "cuda_stage.h"
#include "prompt_offload.h"
#include "scheduler/cuda_transport.h"
#include "scheduler/pipeline.h"
#include "engine/error.h"
#include "kernels/cpu/cpu_threads.h"
#include "kernels/cpu/quant_dot.h"

namespace engine {

std::shared_ptr<const Model> Model::load(const std::string& path) {
  std::shared_ptr<Model> m(new Model());
  m->spec_ = ModelSpec::from(ModelFile::open(path));
  m->cpu_ = std::make_unique<CpuModel>(m->spec_);
  if (m->spec_.file.find("tokenizer.ggml.model") != nullptr) {
    m->tokenizer_ = Tokenizer::from_file(m->spec_.file);
  }
  return m;
}

Model::~Model() = default;

std::string_view Model::chat_template() const {
  const GgufValue* v = spec_.file.find("tokenizer.chat_template");
  return v && v->as_string() ? *v->as_string() : std::string_view();
}

bool Model::is_end_of_generation(int32_t token) const {
  if (tokenizer_) return tokenizer_->is_end_of_generation(token);
  for (const auto& s : spec_.tokenizer.specials) {
    if (s.key == "eos" && s.id == token) return true;
  }
  return false;
}

namespace {

// The transport of every stage boundary (see ContextOptions::transport).
std::vector<std::unique_ptr<Transport>> connect_stages(std::vector<std::unique_ptr<Stage>>& stages,
                                                       const std::string& kind) {
  if (kind != "auto" && kind != "host" && kind != "peer" && kind != "nccl") {
    throw Error(fmt::format("transport '{}' is not one of auto, host, peer, nccl", kind));
  }
  std::shared_ptr<NcclGroup> nccl;
  if (kind == "nccl") {  // one communicator over the GPUs that meet another GPU at a boundary
    std::vector<int> devices;
    for (size_t s = 0; s + 1 < stages.size(); ++s) {
      CudaStageLink* a = stages[s]->cuda_link();
      CudaStageLink* b = stages[s + 1]->cuda_link();
      if (a == nullptr || b == nullptr) continue;
      if (a->device() == b->device()) {
        throw Error(fmt::format("transport nccl: stages {} and {} are both on cuda{} (slices); NCCL allows one "
                                "rank per GPU: use --transport peer", s, s + 1, a->device()));
      }
      for (int d : {a->device(), b->device()}) {
        if (std::find(devices.begin(), devices.end(), d) == devices.end()) devices.push_back(d);
      }
    }
    if (!devices.empty()) nccl = make_nccl_group(devices);
  }
  std::vector<std::unique_ptr<Transport>> transports;
  for (size_t s = 0; s + 1 < stages.size(); ++s) {
    Stage& from = *stages[s];
    Stage& to = *stages[s + 1];
    const bool gpus = from.cuda_link() != nullptr && to.cuda_link() != nullptr;
    if (!gpus || kind == "host") {
      transports.push_back(std::make_unique<HostTransport>(from, to));
    } else if (kind == "nccl") {
      transports.push_back(make_nccl_transport(from, to, nccl));
    } else {
      transports.push_back(make_peer_transport(from, to));
    }
  }
  return transports;
}

}  // namespace

std::string cpu_kernels_isa() { return dot_kernels().isa; }

std::vector<StageOptions> stages_from_plan(const Plan& plan) {
  std::vector<StageOptions> stages;
  for (const DevicePlan& d : plan.devices) {
    if (!d.layers) continue;
    stages.push_back({d.device, d.layers->first, d.layers->second});
    if (d.device.kind == DeviceKind::cpu && plan.prompt_offload_gpu >= 0) {
      stages.back().prompt_offload = plan.devices[plan.prompt_offload_gpu].device;
    }
  }
  std::sort(stages.begin(), stages.end(),
            [](const StageOptions& a, const StageOptions& b) { return a.first_layer < b.first_layer; });
  return stages;
}

Context::Context(std::shared_ptr<const Model> model, const ContextOptions& options)
    : model_(std::move(model)) {
  const HyperParams& hp = model_->spec().hp;
  n_ctx_ = options.n_ctx ? options.n_ctx : std::min<uint32_t>(hp.n_ctx_train, 4096);
  n_batch_ = std::min(options.n_batch, n_ctx_);
  if (n_batch_ == 0) throw Error("context: n_batch must be at least 1");
  std::vector<StageOptions> stages = options.stages;
  if (stages.empty()) stages.push_back({Device{"cpu", DeviceKind::cpu}, 0, hp.n_layer - 1});
  const int threads = options.n_threads > 0 ? options.n_threads : default_thread_count();
  // CPU-run stages share the threads; a stage on a CUDA device runs there (simulated devices,
  // cuda_index -1, run on the CPU).
  int cpu_stages = 0;
  for (const StageOptions& st : stages) cpu_stages += st.device.cuda_index < 0;
  const int share = std::max(1, threads / std::max(1, cpu_stages));
  std::vector<StageLayers> ranges;
  for (size_t s = 0; s < stages.size(); ++s) {
    ranges.push_back({stages[s].first_layer, stages[s].last_layer, s == 0, s + 1 == stages.size()});
  }
  check_stage_ranges(ranges, hp.n_layer);
  const uint32_t n_ubatch = stage_micro_batch(options.n_batch, options.n_ubatch, n_ctx_);  // as planned
  // What the GPU stages upload in all, for the load progress.
  uint64_t upload_total = 0, uploaded = 0;
  for (size_t s = 0; s < stages.size(); ++s) {
    if (stages[s].device.kind == DeviceKind::gpu && stages[s].device.cuda_index >= 0) {
      upload_total += gpu_weight_bytes(model_->spec(), std::pair{ranges[s].first, ranges[s].last}, ranges[s].output);
    }
  }
  std::function<void(uint64_t)> on_upload;
  if (options.load_progress) {
    on_upload = [&](uint64_t bytes) { options.load_progress(uploaded += bytes, upload_total); };
  }
  std::vector<std::unique_ptr<Stage>> built;
  for (size_t s = 0; s < stages.size(); ++s) {
    const Device& d = stages[s].device;
    const int cuda = d.kind == DeviceKind::gpu ? d.cuda_index : -1;
    try {
      if (cuda >= 0) {
        built.push_back(make_cuda_stage(*model_->cpu_, ranges[s], d, n_ctx_, n_ubatch, options.kv_type, on_upload));
      } else {
        built.push_back(std::make_unique<CpuStage>(*model_->cpu_, ranges[s], n_ctx_, n_ubatch, options.kv_type, share));
      }
    } catch (const Error& e) {
      throw Error(fmt::format("stage {} (layers {}-{}) on {}: {}", s, ranges[s].first, ranges[s].last,
                              cuda >= 0 ? fmt::format("cuda{}", cuda) : std::string("the CPU"), e.what()));
    }
  }
  // The CPU stages' prompt offloads, once every GPU stage holds its memory: a simulated GPU has
  // nothing to multiply on, so its CPU stage keeps its products.
  for (size_t s = 0; s < stages.size(); ++s) {
    const std::optional<Device>& gpu = stages[s].prompt_offload;
    if (stages[s].device.kind != DeviceKind::cpu || !gpu || gpu->kind != DeviceKind::gpu || gpu->cuda_index < 0) continue;
    try {
      static_cast<CpuStage&>(*built[s]).set_prompt_offload(
          make_cuda_prompt_offload(*model_->cpu_, {ranges[s].first, ranges[s].last}, *gpu, n_ubatch));
    } catch (const Error& e) {
      throw Error(fmt::format("stage {} (layers {}-{}) on the CPU, prompt offload to cuda{}: {}", s, ranges[s].first,
                              ranges[s].last, gpu->cuda_index, e.what()));
    }
  }
  auto transports = connect_stages(built, options.transport);
  pipeline_ = std::make_unique<Pipeline>(std::move(built), std::move(transports), hp.n_embd, hp.n_vocab, n_ubatch);
}

size_t Context::n_stages() const { return pipeline_->n_stages(); }

std::string Context::transports() const {
  std::vector<std::string> names;
  for (size_t i = 0; i + 1 < pipeline_->n_stages(); ++i) names.emplace_back(pipeline_->transport(i)->name());
  return names.empty() ? "none" : fmt::format("{}", fmt::join(names, "|"));
}

Context::~Context() = default;

std::span<const float> Context::eval(std::span<const int32_t> tokens) { return run(tokens, false); }

std::span<const float> Context::eval_all(std::span<const int32_t> tokens) { return run(tokens, true); }

std::span<const float> Context::run(std::span<const int32_t> tokens, bool all_logits) {
  check_appendable(tokens);
  const size_t n_vocab = static_cast<size_t>(model_->n_vocab());
  logits_.resize(n_vocab * (all_logits ? tokens.size() : 1));
  for (size_t i = 0; i < tokens.size(); i += n_batch_) {
    const size_t n = std::min<size_t>(n_batch_, tokens.size() - i);
    float* out = all_logits ? logits_.data() + i * n_vocab : logits_.data();
    pipeline_->forward(tokens.data() + i, static_cast<int64_t>(n), n_past_, out, all_logits);
    n_past_ += static_cast<uint32_t>(n);
  }
  return logits_;
}

int32_t Context::eval_greedy(std::span<const int32_t> tokens) {
  check_appendable(tokens);
  int32_t token = -1;
  for (size_t i = 0; i < tokens.size(); i += n_batch_) {
    const size_t n = std::min<size_t>(n_batch_, tokens.size() - i);
    if (i + n < tokens.size()) {  // an earlier batch: no head
      pipeline_->forward(tokens.data() + i, static_cast<int64_t>(n), n_past_, nullptr, false);
    } else {
      token = pipeline_->forward_greedy(tokens.data() + i, static_cast<int64_t>(n), n_past_);
    }
    n_past_ += static_cast<uint32_t>(n);
  }
  return token;
}

void Context::check_appendable(std::span<const int32_t> tokens) const {
  if (tokens.empty()) throw Error("eval: no tokens");
  if (n_past_ + tokens.size() > n_ctx_) {
    throw Error(fmt::format("eval: {} tokens after {} already in the context exceed its size {}",
                            tokens.size(), n_past_, n_ctx_));
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= model_->n_vocab()) {
      throw Error(fmt::format("eval: token id {} outside the vocabulary (0..{})", t, model_->n_vocab() - 1));
    }
  }
}

std::vector<int32_t> Context::generate(std::span<const int32_t> prompt, int n_predict,
                                       const SamplingParams& sampling,
                                       const std::function<bool(int32_t)>& on_token) {
  Sampler sampler(sampling, model_->n_vocab());
  if (n_past_ + prompt.size() > n_ctx_) {
    throw Error(fmt::format("generate: the prompt has {} tokens, the context holds {} ({} used)",
                            prompt.size(), n_ctx_, n_past_));
  }
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  std::vector<int32_t> generated;
  // Plain greedy sampling needs only the argmax, which the head's device computes.
  const bool on_device = is_plain_greedy(sampling);
  std::span<const float> logits;
  int32_t greedy = -1;
  auto append = [&](std::span<const int32_t> tokens) {
    if (on_device) {
      greedy = eval_greedy(tokens);
    } else {
      logits = eval(tokens);
    }
  };
  append(prompt);
  last_stop_ = StopReason::n_predict;
  for (int i = 0; i < n_predict; ++i) {
    const int32_t token = on_device ? greedy : sampler.sample(logits, history);
    generated.push_back(token);
    history.push_back(token);
    if (on_token && !on_token(token)) {
      last_stop_ = StopReason::callback;
      break;
    }
    if (model_->is_end_of_generation(token)) {
      last_stop_ = StopReason::end_of_generation;
      break;
    }
    if (i + 1 == n_predict) break;
    if (n_past_ == n_ctx_) {  // no position left for this token
      last_stop_ = StopReason::context_full;
      break;
    }
    append(std::span<const int32_t>(&token, 1));
  }
  return generated;
}

void Context::truncate(uint32_t n) {
  if (n > n_past_) throw Error(fmt::format("truncate: {} tokens asked to stay, the context holds {}", n, n_past_));
  n_past_ = n;
}

std::string_view stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::end_of_generation: return "eos";
    case StopReason::n_predict: return "length";
    case StopReason::context_full: return "context";
    case StopReason::callback: return "callback";
  }
  return "?";
}

}  // namespace engine
