#include "cpu_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>

#include <fmt/format.h>

#include "engine/error.h"
#include "engine/quantize.h"
#include "engine/sampling.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/quant_dot.h"
#include "prompt_offload.h"

namespace engine {
namespace {

const TensorInfo* find(const ModelSpec& spec, const std::string& name) {
  return spec.file.find_tensor(name);
}

std::string layer_name(uint32_t l, const char* base) { return fmt::format("blk.{}.{}", l, base); }

Matrix matrix(const TensorInfo* t) {
  return {t->type, t->data, t->ne[0], t->ne[1]};
}

std::vector<float> floats(const TensorInfo* t) {
  if (t == nullptr) return {};
  std::vector<float> out(t->n_elements);
  dequantize_row(t->type, t->data, out.data(), static_cast<int64_t>(t->n_elements));
  return out;
}

}  // namespace

CpuModel::CpuModel(const ModelSpec& s) : spec(s) {
  const HyperParams& hp = s.hp;
  token_embd = matrix(find(s, "token_embd.weight"));
  const TensorInfo* out = find(s, "output.weight");
  output = out ? matrix(out) : token_embd;
  output_norm = floats(find(s, "output_norm.weight"));
  rope_freqs = floats(find(s, "rope_freqs.weight"));
  layers.resize(hp.n_layer);
  for (uint32_t l = 0; l < hp.n_layer; ++l) {
    auto t = [&](const char* base) { return find(s, layer_name(l, base)); };
    LayerWeights& w = layers[l];
    w.attn_norm = floats(t("attn_norm.weight"));
    w.ffn_norm = floats(t("ffn_norm.weight"));
    w.q_norm = floats(t("attn_q_norm.weight"));
    w.k_norm = floats(t("attn_k_norm.weight"));
    w.bq = floats(t("attn_q.bias"));
    w.bk = floats(t("attn_k.bias"));
    w.bv = floats(t("attn_v.bias"));
    w.bo = floats(t("attn_output.bias"));
    w.wq = matrix(t("attn_q.weight"));
    w.wk = matrix(t("attn_k.weight"));
    w.wv = matrix(t("attn_v.weight"));
    w.wo = matrix(t("attn_output.weight"));
    w.w_gate = matrix(t("ffn_gate.weight"));
    w.w_up = matrix(t("ffn_up.weight"));
    w.w_down = matrix(t("ffn_down.weight"));
  }
  rope.n_rot = static_cast<int>(hp.n_rot);
  rope.neox = s.arch.rope_style == RopeStyle::neox;
  rope.freq_base = hp.rope_freq_base;
  const RopeScaling& rs = hp.rope_scaling;
  if (rs.type != RopeScalingType::none && rs.factor > 0) rope.freq_scale = 1.0f / rs.factor;
  if (rs.type == RopeScalingType::yarn) {
    rope.ext_factor = 1.0f;
    rope.beta_fast = rs.yarn_beta_fast;
    rope.beta_slow = rs.yarn_beta_slow;
    rope.n_ctx_orig = rs.original_ctx;
  }
  rope.freq_factors = rope_freqs.empty() ? nullptr : rope_freqs.data();
}

CpuStage::CpuStage(const CpuModel& model, StageLayers layers, uint32_t n_ctx, uint32_t n_batch,
                   KvType kv_type, int n_threads)
    : m_(model), hp_(model.spec.hp), layers_(layers), n_ctx_(n_ctx), n_batch_(n_batch), pool_(n_threads) {
  if (layers_.first > layers_.last || layers_.last >= hp_.n_layer) {
    throw Error(fmt::format("stage: layers {}-{} outside the model's 0-{}", layers_.first, layers_.last,
                            hp_.n_layer - 1));
  }
  dot_kernels();  // an unusable ENGINE_CPU_ISA fails the load, not the first product
  kv_type_ = kv_type == KvType::f16 ? GgmlType::F16 : kv_type == KvType::f32 ? GgmlType::F32 : GgmlType::Q8_0;
  if (!kv_type_fits(kv_type, hp_.head_dim)) {
    throw Error(fmt::format("--kv-type q8_0: head dim {} is not a multiple of 32", hp_.head_dim));
  }
  kv_head_bytes_ = type_bytes(kv_type_, hp_.head_dim);
  static_assert(kCpuKvPositionBlock == kAttnKeyBlock, "the planner counts the cache's blocks");
  cache_positions_ = attention_key_block_positions(n_ctx);
  const uint64_t cache =
      uint64_t(layers_.last - layers_.first + 1) * hp_.n_head_kv * uint64_t(cache_positions_) * kv_head_bytes_;
  k_cache_.resize(cache);
  v_cache_.resize(cache);
  const uint64_t b = n_batch;
  x_.resize(b * hp_.n_embd);
  xb_.resize(b * hp_.n_embd);
  q_.resize(b * hp_.q_dim());
  k_.resize(b * hp_.kv_dim());
  v_.resize(b * hp_.kv_dim());
  attn_out_.resize(b * hp_.q_dim());
  tmp_.resize(b * hp_.n_embd);
  gate_.resize(b * hp_.n_ff);
  up_.resize(b * hp_.n_ff);
  rope_angles_.resize(b * m_.rope.n_rot);
  if (layers_.output) logits_.resize(hp_.n_vocab);  // forward_greedy's row
}

CpuStage::~CpuStage() = default;

void CpuStage::set_prompt_offload(std::unique_ptr<PromptOffload> offload) { offload_ = std::move(offload); }

int32_t CpuStage::forward_greedy(const int32_t* tokens, int64_t n, int64_t pos) {
  if (!layers_.output) throw Error(fmt::format("stage: forward_greedy on layers {}-{}, which lack the head",
                                               layers_.first, layers_.last));
  forward(tokens, n, pos, logits_.data(), false);
  return argmax_token(logits_);
}

uint8_t* CpuStage::kv_at(std::vector<uint8_t>& cache, int layer, int64_t head, int64_t pos) {
  const uint64_t rows = (uint64_t(layer - int(layers_.first)) * hp_.n_head_kv + uint64_t(head)) * cache_positions_;
  return cache.data() + (rows + uint64_t(pos)) * kv_head_bytes_;
}

void CpuStage::attention(int layer, int64_t n, int64_t pos) {
  AttentionBatch batch;
  batch.q = q_.data();
  batch.out = attn_out_.data();
  batch.q_stride = hp_.q_dim();
  batch.n_tokens = n;
  batch.pos = pos;
  batch.n_head = hp_.n_head;
  batch.n_head_kv = hp_.n_head_kv;
  batch.head_dim = hp_.head_dim;
  batch.scale = 1.0f / std::sqrt(float(hp_.head_dim));
  batch.k_cache = kv_at(k_cache_, layer, 0, 0);
  batch.v_cache = kv_at(v_cache_, layer, 0, 0);
  batch.row_bytes = kv_head_bytes_;
  batch.head_stride = uint64_t(cache_positions_) * kv_head_bytes_;
  batch.kv_type = kv_type_;
  batch.keys_blocked = true;
  engine::attention(batch, pool_);
}

void CpuStage::forward(const int32_t* tokens, int64_t n, int64_t pos, float* logits, bool all_logits) {
  check_batch(layers_, n, pos, n_batch_, n_ctx_);
  const int64_t E = hp_.n_embd, Q = hp_.q_dim(), KV = hp_.kv_dim(), F = hp_.n_ff;
  const int64_t hd = hp_.head_dim;
  const float eps = hp_.norm_eps;
  const uint64_t embd_row = type_bytes(m_.token_embd.type, E);
  // The per-token work between the products, a token per task: in a prompt batch it would
  // otherwise run on one thread while the others wait (a tenth of a 2-thread prompt's time,
  // and a growing share with more threads). A single token runs inline.
  auto each_token = [&](int64_t count, const auto& fn) { pool_.for_each(count, fn); };
  if (layers_.input) {
    each_token(n, [&](int64_t b) {
      dequantize_row(m_.token_embd.type, static_cast<const uint8_t*>(m_.token_embd.data) + tokens[b] * embd_row,
                     x_.data() + b * E, E);
    });
  }
  auto add_bias = [](float* y, const std::vector<float>& bias, int64_t rows, int64_t cols) {
    if (bias.empty()) return;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) y[r * cols + c] += bias[c];
    }
  };
  auto add_residual = [&](int64_t b) {
    for (int64_t i = b * E; i < (b + 1) * E; ++i) x_[i] += tmp_[i];
  };
  // Products of one input (their matrices have its width): quantized once, one pool loop; or a
  // prompt batch's on the GPU of the offload, where it takes every matrix of the group.
  auto product = [](const Matrix& w, float* out) { return MatmulProduct{w.type, w.data, w.rows, out}; };
  auto mm_group = [&](std::initializer_list<MatmulProduct> products, int64_t width, const float* in) {
    const std::span<const MatmulProduct> group{products.begin(), products.size()};
    const bool offload = offload_ != nullptr && n >= kPromptOffloadMinBatch &&
                         std::all_of(group.begin(), group.end(),
                                     [&](const MatmulProduct& p) { return offload_->accepts(p.type, width); });
    if (offload) {
      offload_->multiply(group, width, in, n, pool_);
    } else {
      matmul_group(group, width, in, n, pool_);
    }
  };
  auto mm = [&](const Matrix& w, const float* in, float* out) { mm_group({product(w, out)}, w.cols, in); };
  for (uint32_t l = layers_.first; l <= layers_.last; ++l) {
    const LayerWeights& w = m_.layers[l];
    each_token(n, [&](int64_t b) { rms_norm(x_.data() + b * E, w.attn_norm.data(), xb_.data() + b * E, E, eps); });
    mm_group({product(w.wq, q_.data()), product(w.wk, k_.data()), product(w.wv, v_.data())}, E, xb_.data());
    add_bias(q_.data(), w.bq, n, Q);
    add_bias(k_.data(), w.bk, n, KV);
    add_bias(v_.data(), w.bv, n, KV);
    each_token(n, [&](int64_t b) {
      // Every head of the token turns by the same angles.
      float* cos = rope_angles_.data() + b * m_.rope.n_rot;
      float* sin = cos + m_.rope.n_rot / 2;
      rope_table(pos + b, m_.rope, cos, sin);
      for (int64_t h = 0; h < hp_.n_head; ++h) {
        float* head = q_.data() + b * Q + h * hd;
        if (!w.q_norm.empty()) rms_norm(head, w.q_norm.data(), head, hd, eps);
        rope_apply(head, cos, sin, m_.rope);
      }
      for (int64_t h = 0; h < hp_.n_head_kv; ++h) {
        float* head = k_.data() + b * KV + h * hd;
        if (!w.k_norm.empty()) rms_norm(head, w.k_norm.data(), head, hd, eps);
        rope_apply(head, cos, sin, m_.rope);
      }
      for (int64_t h = 0; h < hp_.n_head_kv; ++h) {
        const float* key = k_.data() + b * KV + h * hd;
        store_key_blocked(kv_type_, key, hd, kv_at(k_cache_, l, h, 0), pos + b);
        quantize_row(kv_type_, v_.data() + b * KV + h * hd, kv_at(v_cache_, l, h, pos + b), hd);
      }
    });
    attention(static_cast<int>(l), n, pos);
    mm(w.wo, attn_out_.data(), tmp_.data());
    add_bias(tmp_.data(), w.bo, n, E);
    each_token(n, [&](int64_t b) {
      add_residual(b);
      rms_norm(x_.data() + b * E, w.ffn_norm.data(), xb_.data() + b * E, E, eps);
    });
    mm_group({product(w.w_gate, gate_.data()), product(w.w_up, up_.data())}, E, xb_.data());
    each_token(n, [&](int64_t b) { swiglu(gate_.data() + b * F, up_.data() + b * F, gate_.data() + b * F, F); });
    mm(w.w_down, gate_.data(), tmp_.data());
    each_token(n, add_residual);
  }
  if (!layers_.output || logits == nullptr) return;
  // Generation needs only the last token's logits; scoring (perplexity) needs every row.
  const int64_t first = all_logits ? 0 : n - 1;
  each_token(n - first, [&](int64_t i) {
    rms_norm(x_.data() + (first + i) * E, m_.output_norm.data(), xb_.data() + i * E, E, eps);
  });
  matmul(m_.output.type, m_.output.data, E, m_.output.rows, xb_.data(), n - first, logits, pool_);
}

}  // namespace engine
