// The forward pass of a layer range on one CUDA device (see cuda_stage.h). Host code: it calls the
// kernels of kernels/cuda/ on one stream, with every CUDA status checked. Decode steps run the
// matrix-vector kernels, captured at the first step as one CUDA graph and replayed (the position
// reaches the kernels through device memory; ENGINE_CUDA_GRAPHS=0 launches them directly);
// prompt batches (more than kCudaMatvecMaxBatch tokens) run the tensor-core matmul on fp16
// activations and causal attention in one launch per layer.
//
// Memory: one cudaMalloc of exactly what the memory model counts for the stage (the planner's
// weights + KV + compute for it), every buffer carved from it by a DeviceArena; a stage whose
// count exceeds its device's budget (a slice's, or the free memory the plan saw) is refused
// before anything is allocated.
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <span>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cuda_stage.h"
#include "engine/byte_size.h"
#include "engine/error.h"
#include "engine/gpu_layout.h"
#include "engine/memory_model.h"
#include "engine/quantize.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/kv_cache.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/matvec.h"
#include "kernels/cuda/ops.h"
#include "scheduler/cuda_check.h"
#include "scheduler/device_arena.h"

namespace engine {
namespace {

static_assert(kCudaMatvecMaxBatch == kGpuMatvecMaxBatch && sizeof(ActQ8Block) == kGpuActivationBlockBytes,
              "the memory model counts the matvec's activation blocks");

struct DeviceMatrix {
  GgmlType type = GgmlType::F32;
  void* data = nullptr;
  int64_t cols = 0, rows = 0;
};

struct DeviceLayer {
  float *attn_norm = nullptr, *ffn_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr;
  float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
  DeviceMatrix wq, wk, wv, wo, w_gate, w_up, w_down;
};

// What a stage holds on its device, released even when the constructor fails halfway.
struct DeviceResources {
  int device = -1;
  cudaStream_t stream = nullptr;
  cudaStream_t side = nullptr;  // decode products that run beside the stream's (CudaStage::SideRuns)
  cudaEvent_t done = nullptr, input_copied = nullptr, fork = nullptr, join = nullptr;
  cudaGraphExec_t decode_graph = nullptr;
  void* arena = nullptr;
  float* pinned = nullptr;
  int64_t* pinned_pos = nullptr;
  int32_t* pinned_token = nullptr;
  ~DeviceResources() {
    if (device < 0) return;
    cudaSetDevice(device);
    if (stream != nullptr) cudaStreamSynchronize(stream);  // nothing may still use what is freed
    if (side != nullptr) cudaStreamSynchronize(side);
    if (decode_graph != nullptr) cudaGraphExecDestroy(decode_graph);
    if (pinned_pos != nullptr) cudaFreeHost(pinned_pos);
    if (pinned_token != nullptr) cudaFreeHost(pinned_token);
    if (done != nullptr) cudaEventDestroy(done);
    if (input_copied != nullptr) cudaEventDestroy(input_copied);
    if (fork != nullptr) cudaEventDestroy(fork);
    if (join != nullptr) cudaEventDestroy(join);
    if (arena != nullptr) cudaFree(arena);
    if (pinned != nullptr) cudaFreeHost(pinned);
    if (side != nullptr) cudaStreamDestroy(side);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

// How long the host waits for a stage's stream before it gives up: far beyond any micro-batch's
// work, so only a transfer that will never arrive (a failed peer) reaches it.
constexpr std::chrono::seconds kStageDeadline{300};

class CudaStage final : public Stage, public CudaStageLink {
 public:
  CudaStage(const CpuModel& model, StageLayers layers, const Device& device, uint32_t n_ctx, uint32_t n_batch,
            KvType kv_type, const std::function<void(uint64_t)>& uploaded)
      : uploaded_(uploaded), m_(model), hp_(model.spec.hp), layers_(layers), device_(device.cuda_index),
        n_ctx_(n_ctx), n_batch_(n_batch), kv_type_(kv_type),
        arena_(fmt::format("{}, layers {}-{}", device.name, layers.first, layers.last),
               stage_bytes(model, layers, n_ctx, n_batch, kv_type, device)) {
    ENGINE_CUDA_CHECK(cudaSetDevice(device_));
    res_.device = device_;
    ENGINE_CUDA_CHECK(cudaStreamCreateWithFlags(&res_.stream, cudaStreamNonBlocking));
    ENGINE_CUDA_CHECK(cudaEventCreateWithFlags(&res_.done, cudaEventDisableTiming));
    ENGINE_CUDA_CHECK(cudaEventCreateWithFlags(&res_.input_copied, cudaEventDisableTiming));
    ENGINE_CUDA_CHECK(cudaStreamCreateWithFlags(&res_.side, cudaStreamNonBlocking));
    ENGINE_CUDA_CHECK(cudaEventCreateWithFlags(&res_.fork, cudaEventDisableTiming));
    ENGINE_CUDA_CHECK(cudaEventCreateWithFlags(&res_.join, cudaEventDisableTiming));
    stream_ = res_.stream;
    {
      const cudaError_t status = cudaMalloc(&res_.arena, arena_.capacity());
      if (status != cudaSuccess) {
        size_t free_bytes = 0, total = 0;
        cudaMemGetInfo(&free_bytes, &total);
        throw Error(fmt::format("cuda{}: allocating the stage's {} bytes (layers {}-{}) failed: {} ({} bytes free of {})",
                                device_, arena_.capacity(), layers_.first, layers_.last, cudaGetErrorString(status),
                                free_bytes, total));
      }
    }
    rope_ = device_rope();
    const int64_t E = hp_.n_embd, KV = hp_.kv_dim();
    for (uint32_t l = layers_.first; l <= layers_.last; ++l) {
      const LayerWeights& w = m_.layers[l];
      DeviceLayer d;
      d.attn_norm = upload(w.attn_norm, "attn_norm");
      d.ffn_norm = upload(w.ffn_norm, "ffn_norm");
      d.q_norm = upload(w.q_norm, "attn_q_norm");
      d.k_norm = upload(w.k_norm, "attn_k_norm");
      d.bq = upload(w.bq, "attn_q.bias");
      d.bk = upload(w.bk, "attn_k.bias");
      d.bv = upload(w.bv, "attn_v.bias");
      d.bo = upload(w.bo, "attn_output.bias");
      d.wq = upload(w.wq, l, "attn_q");
      d.wk = upload(w.wk, l, "attn_k");
      d.wv = upload(w.wv, l, "attn_v");
      d.wo = upload(w.wo, l, "attn_output");
      d.w_gate = upload(w.w_gate, l, "ffn_gate");
      d.w_up = upload(w.w_up, l, "ffn_up");
      d.w_down = upload(w.w_down, l, "ffn_down");
      dev_layers_.push_back(d);
    }
    if (layers_.output) {
      output_norm_ = upload(m_.output_norm, "output_norm");
      output_ = upload(m_.output, hp_.n_layer, "output");
    }
    for (const DeviceLayer& d : dev_layers_) {
      for (const DeviceMatrix* m : {&d.wq, &d.wk, &d.wv, &d.wo, &d.w_gate, &d.w_up, &d.w_down}) {
        any_q8_ = any_q8_ || cuda_matvec_wants_q8(m->type);
      }
    }
    any_q8_ = any_q8_ || (layers_.output && cuda_matvec_wants_q8(output_.type));
    // One K and one V array for all layers, as the memory model counts them (kv_layer says where
    // each layer's lie).
    const uint64_t kv_array = kv_bytes_per_layer(hp_, kv_type_, n_ctx_) / 2 * n_stage_layers();
    k_cache_ = alloc<uint8_t>(static_cast<int64_t>(kv_array), "K cache");
    v_cache_ = alloc<uint8_t>(static_cast<int64_t>(kv_array), "V cache");
    // Scratch buffers: exactly the memory model's list, which the planner counted.
    for (const BufferSpec& b : stage_buffers(hp_, shape(layers_, n_ctx_, n_batch_, kv_type_))) {
      float* p = alloc<float>(static_cast<int64_t>((b.bytes + 3) / 4), b.name);
      if (b.name == "hidden") x_ = p;
      if (b.name == "normed") xb_ = p;
      if (b.name == "q") q_ = p;
      if (b.name == "k") k_ = p;
      if (b.name == "v") v_ = p;
      if (b.name == "attn_out") attn_ = p;
      if (b.name == "attention_partials") {
        workspace_ = p;
        if (b.bytes < 4 * cuda_attention_decode_workspace(hp_.n_head, hp_.head_dim, n_ctx_)) {
          throw Error(fmt::format("cuda{}: the memory model's attention workspace ({} bytes) is smaller than the "
                                  "kernel's", device_, b.bytes));
        }
      }
      if (b.name == "ffn_gate") gate_ = p;
      if (b.name == "ffn_up") up_ = p;
      if (b.name == "logits") logits_ = p;
      if (b.name == "position") pos_dev_ = reinterpret_cast<int64_t*>(p);
      if (b.name == "greedy_token") token_dev_ = reinterpret_cast<int32_t*>(p);
      if (b.name == "act_f16") x16_ = reinterpret_cast<uint16_t*>(p);
      if (b.name == "act_q8") xq_ = reinterpret_cast<ActQ8Block*>(p);
      if (b.name == "kv_f16") {
        k16_ = reinterpret_cast<uint16_t*>(p);
        v16_ = k16_ + int64_t(n_ctx_) * KV;
      }
    }
    arena_.expect_full();
    ENGINE_CUDA_CHECK(cudaMallocHost(&res_.pinned, sizeof(float) * n_batch_ * E));
    ENGINE_CUDA_CHECK(cudaMallocHost(&res_.pinned_pos, sizeof(int64_t)));
    ENGINE_CUDA_CHECK(cudaMallocHost(&res_.pinned_token, sizeof(int32_t)));
    host_hidden_ = res_.pinned;
    const char* graphs = std::getenv("ENGINE_CUDA_GRAPHS");
    use_graphs_ = graphs == nullptr || std::string_view(graphs) != "0";
    const char* side = std::getenv("ENGINE_CUDA_SIDE_STREAM");
    use_side_ = side == nullptr || std::string_view(side) != "0";
  }

  // The pinned host buffer, once the previous micro-batch's copy from it to the device is done, so
  // that a writer (the host transport) never overwrites what is still being read.
  float* hidden() override {
    ENGINE_CUDA_CHECK(cudaEventSynchronize(res_.input_copied));
    return host_hidden_;
  }

  CudaStageLink* cuda_link() override { return this; }
  int device() const override { return device_; }
  float* device_hidden() override { return x_; }
  void* stream() override { return stream_; }
  void* forward_done() override { return res_.done; }
  void take_input_on_device() override { device_in_ = !layers_.input; }
  void leave_output_on_device() override { device_out_ = !layers_.output; }
  void wait_before_next_forward(void* event) override { wait_for_ = static_cast<cudaEvent_t>(event); }

  void forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) override {
    run(tokens, n, pos, logits, all_logits, false);
  }

  int32_t forward_greedy(const int32_t* tokens, int64_t n, int64_t pos) override {
    if (!layers_.output) throw Error(fmt::format("cuda{}: forward_greedy on a stage without the head", device_));
    run(tokens, n, pos, nullptr, false, true);
    return *res_.pinned_token;
  }

 private:
  // forward's work; with greedy, the head's last row is reduced to its argmax on the device and
  // only that token is copied back (to res_.pinned_token), not the logits.
  void run(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits, bool greedy) {
    check_batch(layers_, n, pos, n_batch_, n_ctx_);
    ENGINE_CUDA_CHECK(cudaSetDevice(device_));
    if (wait_for_ != nullptr) {  // an incoming copy enqueued on another stream
      ENGINE_CUDA_CHECK(cudaStreamWaitEvent(stream_, wait_for_, 0));
      wait_for_ = nullptr;
    }
    const int64_t E = hp_.n_embd;
    if (layers_.input) {  // embeddings looked up on the host, straight from the mmap
      float* host = hidden();
      const uint64_t row = type_bytes(m_.token_embd.type, E);
      for (int64_t b = 0; b < n; ++b) {
        dequantize_row(m_.token_embd.type, static_cast<const uint8_t*>(m_.token_embd.data) + tokens[b] * row,
                       host + b * E, E);
      }
    }
    const bool head = layers_.output && (logits != nullptr || greedy);
    if (n == 1 && use_graphs_) {
      // A decode step: one replay of the graph captured at the first one; the position reaches
      // the kernels through pinned memory that the graph copies to the device. The input copy
      // stays outside the graph: its event (input_copied) must be recorded as an ordinary event,
      // which the host can wait for (an event recorded during a capture cannot be).
      ENGINE_CUDA_CHECK(cudaEventSynchronize(res_.done));  // the previous step has read the position
      *res_.pinned_pos = pos;
      if (res_.decode_graph == nullptr) capture_decode_step();
      enqueue_input(1);
      ENGINE_CUDA_CHECK(cudaGraphLaunch(res_.decode_graph, stream_));
      if (head && !greedy) {
        ENGINE_CUDA_CHECK(cudaMemcpyAsync(logits, logits_, sizeof(float) * output_.rows, cudaMemcpyDeviceToHost,
                                          stream_));
      }
    } else {
      enqueue_input(n);
      enqueue_layers(n, pos, nullptr);
      if (head) {
        const int64_t first = all_logits ? 0 : n - 1;
        enqueue_head(first, n - first, logits);  // null for greedy: the logits stay on the device
      }
    }
    if (greedy) {
      cuda_argmax(logits_, output_.rows, token_dev_, stream_);
      ENGINE_CUDA_CHECK(
          cudaMemcpyAsync(res_.pinned_token, token_dev_, sizeof(int32_t), cudaMemcpyDeviceToHost, stream_));
    }
    if (!head && !device_out_) {
      ENGINE_CUDA_CHECK(cudaMemcpyAsync(host_hidden_, x_, sizeof(float) * n * E, cudaMemcpyDeviceToHost, stream_));
    }
    ENGINE_CUDA_CHECK(cudaEventRecord(res_.done, stream_));
    if (!device_out_) wait_for_stream();  // the host reads the logits or the hidden state next
  }

  // cudaStreamSynchronize with a deadline: a stream that waits for a transfer from a failed peer
  // would otherwise block forever.
  void wait_for_stream() {
    const auto deadline = std::chrono::steady_clock::now() + kStageDeadline;
    for (int polls = 0;; ++polls) {
      const cudaError_t status = cudaStreamQuery(stream_);
      if (status == cudaSuccess) return;
      if (status != cudaErrorNotReady) ENGINE_CUDA_CHECK(status);
      if (std::chrono::steady_clock::now() > deadline) {
        throw Error(fmt::format("cuda{}: layers {}-{} did not finish within {} s (waiting for a transfer that "
                                "never came?)", device_, layers_.first, layers_.last, kStageDeadline.count()));
      }
      if (polls > 10000) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  // The hidden state in from the pinned host buffer, unless a device transport delivers it.
  void enqueue_input(int64_t n) {
    if (layers_.input || !device_in_) {
      ENGINE_CUDA_CHECK(cudaMemcpyAsync(x_, host_hidden_, sizeof(float) * n * hp_.n_embd, cudaMemcpyHostToDevice,
                                        stream_));
      ENGINE_CUDA_CHECK(cudaEventRecord(res_.input_copied, stream_));
    }
  }

  // A matrix product's input: n f32 rows, and the forms the kernels read, each made at most once
  // for all the matrices that read this input: fp16 rows for the tensor-core matmul (prompt
  // batches), 8-bit blocks for the integer matrix-vector kernels (up to kCudaMatvecMaxBatch rows).
  struct Activations {
    const float* x;
    int64_t n;
    bool f16 = false, q8 = false;
  };

  // Every layer for n tokens at positions pos.. (or, for one token, at *pos_dev: the kernels read
  // the position on the device, so the launches can be captured once and replayed).
  void enqueue_layers(int64_t n, int64_t pos, const int64_t* pos_dev) {
    const int64_t KV = hp_.kv_dim(), F = hp_.n_ff, hd = hp_.head_dim;
    const float eps = hp_.norm_eps;
    const float scale = 1.0f / std::sqrt(float(hd));
    for (uint32_t l = layers_.first; l <= layers_.last; ++l) {
      const DeviceLayer& w = dev_layers_[l - layers_.first];
      const KvLayer kv = kv_layer(kv_type_, k_cache_, v_cache_, n_stage_layers(), n_ctx_, KV, l - layers_.first);
      // Launches per layer at decode (10, 11 where v's type differs from q's and k's): the norms
      // and the attention write the 8-bit blocks the products read, the products add their bias
      // and the residual, q/k/v and gate/up are fused launches, RoPE and the KV store are one
      // kernel.
      Activations normed = normalized(x_, w.attn_norm, n, {&w.wq, &w.wk, &w.wv});
      if (rope_in_products(w, n)) {  // a decode step: RoPE and the KV store in the q/k/v products
        project_qkv_rotated(w, normed, kv, pos, pos_dev);
      } else {
        project_all({{w.wq, q_, {w.bq}}, {w.wk, k_, {w.bk}}, {w.wv, v_, {w.bv}}}, normed);
        if (w.q_norm) cuda_rms_norm(q_, w.q_norm, q_, n * hp_.n_head, hd, eps, stream_);
        if (w.k_norm) cuda_rms_norm(k_, w.k_norm, k_, n * hp_.n_head_kv, hd, eps, stream_);
        cuda_rope_store_kv(q_, k_, v_, n, hp_.n_head, hp_.n_head_kv, hd, pos, rope_, kv, stream_, pos_dev);
      }
      // One query: the decode attention also writes its output's 8-bit blocks for attn_output.
      ActQ8Block* attn_q8 = n == 1 ? q8_output(n, hp_.n_head * hd) : nullptr;
      if (pos_dev != nullptr) {
        cuda_attention_decode_at(q_, kv, pos_dev, n_ctx_, int(hp_.n_head), int(hp_.n_head_kv), int(hd), scale,
                                 attn_, workspace_, stream_, attn_q8);
      } else if (n == 1) {  // one query: keys split across blocks
        cuda_attention_decode(q_, kv, pos + 1, int(hp_.n_head), int(hp_.n_head_kv), int(hd), scale, attn_,
                              workspace_, stream_, attn_q8);
      } else {  // causal: token b sees positions up to pos + b
        cuda_attention_prefill(q_, prompt_view(kv, pos + n), pos, n, int(hp_.n_head), int(hp_.n_head_kv), int(hd),
                               scale, attn_, stream_);
      }
      Activations attn{attn_, n};
      attn.q8 = attn_q8 != nullptr;
      project(w.wo, attn, x_, {w.bo, true});
      Activations ffn_in = normalized(x_, w.ffn_norm, n, {&w.w_gate, &w.w_up});
      project_all({{w.w_gate, gate_, {}}, {w.w_up, up_, {}}}, ffn_in);
      ActQ8Block* hidden_q8 = q8_output(n, F);
      uint16_t* hidden_f16 = f16_output(n);
      float* hidden = only_fp16_read(n, {&w.w_down}) ? nullptr : gate_;  // in place, where it is read
      cuda_swiglu(gate_, up_, hidden, n * F, stream_, hidden_q8, hidden_f16);
      Activations ffn_hidden{hidden, n};
      ffn_hidden.q8 = hidden_q8 != nullptr;
      ffn_hidden.f16 = hidden_f16 != nullptr;
      project(w.w_down, ffn_hidden, x_, {nullptr, true});
    }
  }

  // Layers in the stage.
  int64_t n_stage_layers() const { return int64_t(layers_.last - layers_.first + 1); }

  // Whether a layer's q/k/v products of n tokens rotate q and k and store k and v themselves
  // (cuda_matvec_fused_rope): one token, an f16 cache, no q/k norms between the products and RoPE,
  // 8-bit-activation types, unless ENGINE_CUDA_ROPE_IN_MATVEC=0.
  bool rope_in_products(const DeviceLayer& w, int64_t n) const {
    static const bool allowed = [] {
      const char* v = std::getenv("ENGINE_CUDA_ROPE_IN_MATVEC");
      return v == nullptr || std::strcmp(v, "0") != 0;
    }();
    if (!allowed || n != 1 || kv_type_ != KvType::f16 || w.q_norm != nullptr || w.k_norm != nullptr) return false;
    for (const DeviceMatrix* m : {&w.wq, &w.wk, &w.wv}) {
      if (!cuda_matvec_wants_q8(m->type)) return false;
    }
    return hp_.head_dim % 2 == 0 && rope_.n_rot > 0 && rope_.n_rot <= int(hp_.head_dim);
  }

  // A decode step's q, k and v with RoPE and the KV store in the products' epilogue: in one launch
  // where the three types agree, else one launch per run of one type (Q4_K_M: q and k, then v).
  void project_qkv_rotated(const DeviceLayer& w, Activations& in, const KvLayer& kv, int64_t pos,
                           const int64_t* pos_dev) {
    const int64_t K = hp_.n_embd;
    with_q8_blocks(in, K);
    MatvecRope rope;
    rope.p = rope_;
    rope.head_dim = hp_.head_dim;
    rope.pos = pos;
    rope.pos_dev = pos_dev;
    rope.k_cache = static_cast<uint16_t*>(kv.k);
    rope.v_cache = static_cast<uint16_t*>(kv.v);
    rope.kv_dim = hp_.kv_dim();
    const Product parts[3] = {{w.wq, q_, {w.bq}}, {w.wk, k_, {w.bk}}, {w.wv, v_, {w.bv}}};
    const QkvRole roles[3] = {QkvRole::q, QkvRole::k, QkvRole::v};
    SideRuns runs(*this, parts, parts + 3);
    for (int r = 0; r < runs.count; ++r) {
      const Product* it = runs.begin[r];
      const int count = static_cast<int>(runs.begin[r + 1] - it);
      MatvecOutput outs[kCudaMatvecMaxFused];
      for (int i = 0; i < count; ++i) {
        outs[i] = MatvecOutput{it[i].w.data, it[i].w.rows, it[i].y, it[i].ep};
        rope.roles[i] = roles[it + i - parts];
      }
      cuda_matvec_fused_rope(it->w.type, K, MatvecInput{in.x, xq_}, std::span<const MatvecOutput>(outs, size_t(count)),
                             rope, runs.stream(r));
    }
    runs.join();
  }

  // The cache a prompt batch's attention reads, which takes f16: the layer's own, or for q8_0 its
  // positions 0 .. n_positions - 1 converted into the stage's fp16 copy.
  KvLayer prompt_view(const KvLayer& kv, int64_t n_positions) {
    if (kv.type == KvType::f16) return kv;
    cuda_kv_to_f16(kv, n_positions, hp_.kv_dim(), k16_, v16_, stream_);
    KvLayer f16;
    f16.k = k16_;
    f16.v = v16_;
    return f16;
  }

  // Where a kernel producing n rows of K values also writes them as 8-bit blocks: the stage's
  // block buffer for a decode-sized batch when some matrix of the stage multiplies 8-bit
  // activations; otherwise nowhere (null).
  ActQ8Block* q8_output(int64_t n, int64_t K) const {
    return any_q8_ && n <= kCudaMatvecMaxBatch && K % 32 == 0 ? xq_ : nullptr;
  }

  // Where a kernel producing a prompt batch's rows also writes them in fp16 for the matmul (so no
  // conversion pass follows): the stage's fp16 buffer; null for decode-sized batches.
  uint16_t* f16_output(int64_t n) const { return n > kCudaMatvecMaxBatch ? x16_ : nullptr; }

  // Whether the products of a batch's input read only its fp16 rows (a prompt batch whose matrices
  // the matmul takes), so that the kernel making the input need not write its f32 rows.
  bool only_fp16_read(int64_t n, std::initializer_list<const DeviceMatrix*> readers) const {
    if (f16_output(n) == nullptr) return false;
    for (const DeviceMatrix* w : readers) {
      if (!cuda_matmul_supports(w->type, w->cols)) return false;
    }
    return true;
  }

  // xb_ = RMSNorm(x) of n rows of n_embd, with its 8-bit blocks where q8_output says and its fp16
  // rows where f16_output does; without the f32 rows where the readers read only the fp16 ones.
  Activations normalized(const float* x, const float* weight, int64_t n,
                         std::initializer_list<const DeviceMatrix*> readers) {
    const int64_t E = hp_.n_embd;
    ActQ8Block* q8 = q8_output(n, E);
    uint16_t* f16 = f16_output(n);
    float* out = only_fp16_read(n, readers) ? nullptr : xb_;
    cuda_rms_norm(x, weight, out, n, E, hp_.norm_eps, stream_, q8, f16);
    Activations a{out, n};
    a.q8 = q8 != nullptr;
    a.f16 = f16 != nullptr;
    return a;
  }

  // Output norm and head for `rows` tokens from row `first`, one row of logits at a time (the
  // logits buffer holds one); each row copied to logits[] when it is given.
  void enqueue_head(int64_t first, int64_t rows, float* logits) {
    const int64_t E = hp_.n_embd, vocab = output_.rows;
    if (rows == 1) {  // a decode step's head: the norm also writes the row's 8-bit blocks
      Activations row = normalized(x_ + first * E, output_norm_, 1, {&output_});
      project(output_, row, logits_);
      if (logits != nullptr) {
        ENGINE_CUDA_CHECK(cudaMemcpyAsync(logits, logits_, sizeof(float) * vocab, cudaMemcpyDeviceToHost, stream_));
      }
      return;
    }
    cuda_rms_norm(x_ + first * E, output_norm_, xb_, rows, E, hp_.norm_eps, stream_);
    for (int64_t b = 0; b < rows; ++b) {
      Activations row{xb_ + b * E, 1};
      project(output_, row, logits_);
      if (logits != nullptr) {
        ENGINE_CUDA_CHECK(cudaMemcpyAsync(logits + b * vocab, logits_, sizeof(float) * vocab,
                                          cudaMemcpyDeviceToHost, stream_));
      }
    }
  }

  // A decode step's device work (position, layers, the head's one row) as one CUDA graph,
  // captured at the first step: a step is then one launch instead of ~15 per layer.
  void capture_decode_step() {
    cudaGraph_t graph = nullptr;
    ENGINE_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      ENGINE_CUDA_CHECK(cudaMemcpyAsync(pos_dev_, res_.pinned_pos, sizeof(int64_t), cudaMemcpyHostToDevice, stream_));
      enqueue_layers(1, 0, pos_dev_);
      if (layers_.output) enqueue_head(0, 1, nullptr);
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph != nullptr) cudaGraphDestroy(graph);
      throw;
    }
    ENGINE_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    const cudaError_t status = cudaGraphInstantiate(&res_.decode_graph, graph, 0);
    cudaGraphDestroy(graph);
    ENGINE_CUDA_CHECK(status);
  }

  static StageShape shape(StageLayers layers, uint32_t n_ctx, uint32_t n_batch, KvType kv_type) {
    return StageShape{n_batch, n_ctx, 1, true, layers.output, true, kv_type};
  }

  // What the memory model counts for this stage (the planner's count for its device), refused if
  // it exceeds the device's budget: a slice's, or the free memory the plan was made for.
  static uint64_t stage_bytes(const CpuModel& m, StageLayers layers, uint32_t n_ctx, uint32_t n_batch,
                              KvType kv_type, const Device& device) {
    const HyperParams& hp = m.spec.hp;
    const uint64_t weights = gpu_weight_bytes(m.spec, std::pair{layers.first, layers.last}, layers.output);
    const uint64_t kv = stage_kv_bytes(hp, kv_type, n_ctx, layers.last - layers.first + 1);
    const uint64_t scratch = stage_buffer_bytes(hp, shape(layers, n_ctx, n_batch, kv_type));
    const uint64_t total = weights + kv + scratch;
    if (device.free_bytes > 0 && total > device.free_bytes) {
      throw Error(fmt::format("{} needs {} for layers {}-{} (weights {}, KV {}, scratch {}), more than its budget {}",
                              device.name, format_gib(total), layers.first, layers.last, format_gib(weights),
                              format_gib(kv), format_gib(scratch), format_gib(device.free_bytes)));
    }
    return total;
  }

  template <typename T>
  T* alloc(int64_t count, std::string_view what) {
    const uint64_t bytes = sizeof(T) * static_cast<uint64_t>(count > 0 ? count : 1);
    return reinterpret_cast<T*>(static_cast<uint8_t*>(res_.arena) + arena_.take(bytes, what));
  }

  float* upload(const std::vector<float>& v, std::string_view what) {
    if (v.empty()) return nullptr;
    float* d = alloc<float>(static_cast<int64_t>(v.size()), what);
    ENGINE_CUDA_CHECK(cudaMemcpy(d, v.data(), sizeof(float) * v.size(), cudaMemcpyHostToDevice));
    if (uploaded_) uploaded_(align_device(sizeof(float) * v.size()));
    return d;
  }

  DeviceMatrix upload(const Matrix& w, uint32_t layer, const char* name) {
    if (!cuda_matvec_supports(w.type)) {
      throw Error(fmt::format("cuda{}: blk.{}.{} is {}, which has no CUDA kernel yet; the CPU runs every type "
                              "(engine-run --split cpu)",
                              device_, layer, name, traits(w.type).name));
    }
    const uint64_t bytes = gpu_row_bytes(w.type, w.cols) * uint64_t(w.rows);
    DeviceMatrix d{w.type, alloc<uint8_t>(static_cast<int64_t>(bytes), name), w.cols, w.rows};
    if (gpu_layout_differs(w.type)) {  // Q2_K, Q3_K, Q6_K: regrouped for aligned loads on the way (gpu_layout.h)
      std::vector<uint8_t> regrouped(bytes);
      to_gpu_layout(w.type, w.cols, w.rows, static_cast<const uint8_t*>(w.data), regrouped.data());
      ENGINE_CUDA_CHECK(cudaMemcpy(d.data, regrouped.data(), bytes, cudaMemcpyHostToDevice));
    } else {
      ENGINE_CUDA_CHECK(cudaMemcpy(d.data, w.data, bytes, cudaMemcpyHostToDevice));
    }
    if (uploaded_) uploaded_(align_device(bytes));
    return d;
  }

  // One matrix product of a layer: W, where its rows go, and how.
  struct Product {
    const DeviceMatrix& w;
    float* y;
    ProductEpilogue ep;
  };

  // The end of the run of products from `begin` that one fused launch takes: consecutive matrices
  // of the first one's type and width, at most kCudaMatvecMaxFused.
  static const Product* fused_run_end(const Product* begin, const Product* end) {
    const Product* it = begin;
    while (it != end && it - begin < kCudaMatvecMaxFused && it->w.type == begin->w.type && it->w.cols == begin->w.cols) {
      ++it;
    }
    return it;
  }

  // One input's decode products in runs of one type (fused_run_end), the first on the stage's
  // stream and the others on its side stream, beside it: Q4_K_M's v, whose type differs from q's
  // and k's, alone read 4.3 MB at 18% of the copy bandwidth (ad58b07), a launch's ramp and tail
  // with most SMs idle; beside q and k it fills them. The side stream starts after everything
  // before (the input: its 8-bit blocks are made before the runs), and the stage's stream waits
  // for it after the runs (join), so what follows sees every product. Runs share only their
  // input. In a captured decode step this is a fork and a join of the graph.
  struct SideRuns {
    CudaStage& stage;
    const Product* begin[kCudaMatvecMaxFused + 1];
    int count = 0;
    bool forked = false;
    SideRuns(CudaStage& s, const Product* first, const Product* end) : stage(s) {
      for (const Product* it = first; it != end; it = fused_run_end(it, end)) begin[count++] = it;
      begin[count] = end;
      if (count > 1 && stage.use_side_) {
        ENGINE_CUDA_CHECK(cudaEventRecord(stage.res_.fork, stage.stream_));
        ENGINE_CUDA_CHECK(cudaStreamWaitEvent(stage.res_.side, stage.res_.fork, 0));
        forked = true;
      }
    }
    cudaStream_t stream(int run) const { return run > 0 && forked ? stage.res_.side : stage.stream_; }
    void join() {
      if (!forked) return;
      ENGINE_CUDA_CHECK(cudaEventRecord(stage.res_.join, stage.res_.side));
      ENGINE_CUDA_CHECK(cudaStreamWaitEvent(stage.stream_, stage.res_.join, 0));
      forked = false;
    }
  };

  // The input's 8-bit blocks in xq_ (its rows of K values), made once: a norm or the attention may
  // have written them already.
  void with_q8_blocks(Activations& in, int64_t K) {
    if (in.q8) return;
    cuda_quantize_activations(in.x, in.n * K, xq_, stream_);
    in.q8 = true;
  }

  // Several products of the same input: consecutive matrices of one type multiply in one fused
  // launch (q, k and v where their types agree; gate and up), the matrix-vector kernels' for a
  // decode-sized batch, the matmul's for a prompt batch. A prompt batch for a type the matmul
  // lacks runs them one by one.
  void project_all(std::initializer_list<Product> products, Activations& in) {
    if (in.n <= kCudaMatvecMaxBatch) {  // decode: runs beside each other (SideRuns), 8-bit blocks first
      if (in.x == nullptr || products.size() > size_t(kCudaMatvecMaxFused)) {
        throw Error(fmt::format("cuda{}: a decode product without f32 rows, or of more than {} matrices", device_,
                                kCudaMatvecMaxFused));
      }
      for (const Product& p : products) {
        if (cuda_matvec_wants_q8(p.w.type)) with_q8_blocks(in, p.w.cols);
      }
      SideRuns runs(*this, products.begin(), products.end());
      for (int r = 0; r < runs.count; ++r) {
        MatvecOutput outs[kCudaMatvecMaxFused];
        int count = 0;
        for (const Product* it = runs.begin[r]; it != runs.begin[r + 1]; ++it) {
          outs[count++] = MatvecOutput{it->w.data, it->w.rows, it->y, it->ep};
        }
        const DeviceMatrix& first = runs.begin[r]->w;
        const bool q8 = cuda_matvec_wants_q8(first.type);
        cuda_matvec_fused(first.type, first.cols, MatvecInput{in.x, q8 ? xq_ : nullptr}, static_cast<int>(in.n),
                          std::span<const MatvecOutput>(outs, size_t(count)), runs.stream(r));
      }
      runs.join();
      return;
    }
    const Product* it = products.begin();
    while (it != products.end()) {
      const DeviceMatrix& first = it->w;
      const int64_t K = first.cols;
      if (!cuda_matmul_supports(first.type, K)) {
        if (in.x == nullptr) {
          throw Error(fmt::format("cuda{}: a product reads the f32 rows of an input written only in fp16", device_));
        }
        matvec_in_batches(it->w, in, it->y, it->ep);
        ++it;
        continue;
      }
      MatvecOutput outs[kCudaMatvecMaxFused];
      int count = 0;
      for (const Product* run_end = fused_run_end(it, products.end()); it != run_end; ++it) {
        outs[count++] = MatvecOutput{it->w.data, it->w.rows, it->y, it->ep};
      }
      const std::span<const MatvecOutput> fused(outs, size_t(count));
      if (!in.f16) cuda_to_f16_saturated(in.x, x16_, in.n * K, stream_);
      in.f16 = true;
      // A single product may split K, its partial sums in ffn_up's buffer: no product but up's
      // writes it, and SwiGLU has read it before down and the next layer's products run.
      MatmulOptions options;
      if (count == 1 && outs[0].y != gate_ && outs[0].y != up_) {
        options.workspace = {up_, int64_t(n_batch_) * hp_.n_ff};
      }
      cuda_matmul_fused(first.type, K, x16_, in.n, fused, stream_, options);
    }
  }

  // y = W x (with the epilogue's bias and residual add).
  void project(const DeviceMatrix& w, Activations& in, float* y, ProductEpilogue ep = {}) {
    project_all({Product{w, y, ep}}, in);
  }

  // A prompt batch for a type the matmul lacks: the matrix-vector kernels, kCudaMatvecMaxBatch
  // rows at a time.
  void matvec_in_batches(const DeviceMatrix& w, Activations& in, float* y, ProductEpilogue ep) {
    const int64_t K = w.cols;
    const bool q8 = cuda_matvec_wants_q8(w.type);
    for (int64_t b = 0; b < in.n; b += kCudaMatvecMaxBatch) {
      const int nb = static_cast<int>(std::min<int64_t>(kCudaMatvecMaxBatch, in.n - b));
      const float* x = in.x + b * K;
      if (q8) cuda_quantize_activations(x, nb * K, xq_, stream_);
      cuda_matvec(w.type, w.data, K, w.rows, MatvecInput{x, q8 ? xq_ : nullptr}, nb, y + b * w.rows, stream_, ep);
    }
  }

  std::function<void(uint64_t)> uploaded_;
  const CpuModel& m_;
  const HyperParams& hp_;
  StageLayers layers_;
  int device_;
  uint32_t n_ctx_, n_batch_;
  KvType kv_type_;
  DeviceArena arena_;
  DeviceResources res_;
  cudaStream_t stream_ = nullptr;
  std::vector<DeviceLayer> dev_layers_;
  float* output_norm_ = nullptr;
  DeviceMatrix output_;
  RopeParams rope_;
  uint8_t *k_cache_ = nullptr, *v_cache_ = nullptr;  // the K and V arrays (kv_layer carves the layers)
  uint16_t *k16_ = nullptr, *v16_ = nullptr;         // q8_0: the prompt attention's fp16 copy of a layer
  float *x_ = nullptr, *xb_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *attn_ = nullptr;
  float *gate_ = nullptr, *up_ = nullptr, *logits_ = nullptr, *workspace_ = nullptr;
  int64_t* pos_dev_ = nullptr;
  int32_t* token_dev_ = nullptr;  // greedy decoding's token (output stages)
  uint16_t* x16_ = nullptr;    // a prompt batch's activations in fp16
  ActQ8Block* xq_ = nullptr;  // up to kCudaMatvecMaxBatch rows of activations in 8-bit blocks
  bool any_q8_ = false;       // some matrix of the stage multiplies 8-bit activations
  bool use_graphs_ = true;  // decode steps through a CUDA graph (ENGINE_CUDA_GRAPHS=0: direct launches)
  bool use_side_ = true;    // later runs of a decode input's products beside the first (ENGINE_CUDA_SIDE_STREAM=0: not)
  float* host_hidden_ = nullptr;
  bool device_in_ = false, device_out_ = false;  // see CudaStageLink
  cudaEvent_t wait_for_ = nullptr;

  // The model's RoPE parameters with the frequency factors (if any) in device memory.
  RopeParams device_rope() {
    RopeParams p = m_.rope;
    if (!m_.rope_freqs.empty()) p.freq_factors = upload(m_.rope_freqs, "rope_freqs");
    return p;
  }
};

}  // namespace

std::unique_ptr<Stage> make_cuda_stage(const CpuModel& model, StageLayers layers, const Device& device,
                                       uint32_t n_ctx, uint32_t n_batch, KvType kv_type,
                                       const std::function<void(uint64_t)>& uploaded) {
  if (!gpu_kv_supported(kv_type, model.spec.hp.head_dim)) {
    throw Error(fmt::format("stage with layers {}-{} on {}: --kv-type {}: a GPU keeps its KV cache in f16, or in "
                            "q8_0 where head_dim ({}) is a multiple of 32", layers.first, layers.last, device.name,
                            kv_type_name(kv_type), model.spec.hp.head_dim));
  }
  return std::make_unique<CudaStage>(model, layers, device, n_ctx, n_batch, kv_type, uploaded);
}

}  // namespace engine
