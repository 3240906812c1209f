// GPU matvec bandwidth against the card's measured copy bandwidth, on QwQ-32B's matrix shapes
// (run by tools/device-check). Prints a table, or one JSON object with --json.
//
// For each shape: weights filled with a constant byte pattern (0x3C: valid fp16 scales; the
// values do not change the time), a warm-up, then the mean of 20 launches timed with CUDA events.
// GB/s counts the bytes a launch must read (weights + activations: f32, or 8-bit blocks of 40
// bytes per 32 values for the Q4_K/Q5_K/Q6_K kernels, which also cost a quantization launch per
// input, listed with the small kernels). The copy bandwidth is a
// 1 GiB device-to-device cudaMemcpy, counted as bytes read plus bytes written.
// Then a decode step's matrix products as the GPU stage launches them (q/k/v and gate/up fused;
// each also by the staged kernel, which ENGINE_CUDA_MATVEC=staged gives the stage),
// and the share of a QwQ-32B Q4_K_M decode step per kernel: those products, the small kernels and
// attention (at 512 and 8192 keys, over f16 and q8_0 caches) as the stage launches them (norms,
// SwiGLU and attention writing the 8-bit blocks, RoPE with the KV store; biases and residual adds
// are in the matvecs), each timed alone at the model's shapes and multiplied by its launches per
// token. Launch gaps are not in it (a graph replay hides most).
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/ggml_type.h"
#include "engine/gpu_layout.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/kv_cache.h"
#include "kernels/cuda/matvec.h"
#include "kernels/cuda/ops.h"
#include "scheduler/cuda_check.h"
#include "qwq32_shapes.h"

namespace {

double time_ms(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0;
  ENGINE_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  return double(ms);
}

}  // namespace

int main(int argc, char** argv) {
  const bool json = argc > 1 && std::strcmp(argv[1], "--json") == 0;
  // --profile: each decode kernel once (after no warm-up, untimed) and nothing else, for a
  // profiler such as ncu to look inside (tools/device-check runs it so).
  const bool profile = argc > 1 && std::strcmp(argv[1], "--profile") == 0;
  const int reps = 20;
  const bool quiet = json || profile;  // no table
  try {
    cudaDeviceProp prop{};
    ENGINE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    cudaEvent_t start, stop;
    ENGINE_CUDA_CHECK(cudaEventCreate(&start));
    ENGINE_CUDA_CHECK(cudaEventCreate(&stop));

    // The mean time of `n` launches after a warm-up one, by CUDA events (0 with --profile, which
    // wants each kernel once).
    const auto mean_us = [&](int n, auto&& launch) {
      launch();
      if (profile) return 0.0;
      ENGINE_CUDA_CHECK(cudaEventRecord(start));
      for (int r = 0; r < n; ++r) launch();
      ENGINE_CUDA_CHECK(cudaEventRecord(stop));
      ENGINE_CUDA_CHECK(cudaEventSynchronize(stop));
      return time_ms(start, stop) * 1e3 / n;
    };

    const size_t copy_bytes = size_t(1) << 30;
    void *a = nullptr, *b = nullptr;
    ENGINE_CUDA_CHECK(cudaMalloc(&a, copy_bytes));
    ENGINE_CUDA_CHECK(cudaMalloc(&b, copy_bytes));
    ENGINE_CUDA_CHECK(cudaMemset(a, 1, copy_bytes));
    ENGINE_CUDA_CHECK(cudaMemcpy(b, a, copy_bytes, cudaMemcpyDeviceToDevice));
    ENGINE_CUDA_CHECK(cudaEventRecord(start));
    for (int i = 0; i < 10; ++i) ENGINE_CUDA_CHECK(cudaMemcpyAsync(b, a, copy_bytes, cudaMemcpyDeviceToDevice));
    ENGINE_CUDA_CHECK(cudaEventRecord(stop));
    ENGINE_CUDA_CHECK(cudaEventSynchronize(stop));
    const double copy_gbs = 2.0 * copy_bytes * 10 / (time_ms(start, stop) * 1e-3) / 1e9;
    ENGINE_CUDA_CHECK(cudaFree(a));
    ENGINE_CUDA_CHECK(cudaFree(b));

    nlohmann::json out;
    out["device"] = prop.name;
    out["copy_gb_per_s"] = copy_gbs;
    out["kernels"] = nlohmann::json::array();
    out["qkv_with_rope"] = nlohmann::json::array();
    if (!quiet) {
      fmt::print("device {}: copy bandwidth {:.0f} GB/s (read + write)\n", prop.name, copy_gbs);
      fmt::print("{:32} {:>5} {:>9} {:>9} {:>7}\n", "matvec", "batch", "us", "GB/s", "% copy");
    }
    double token_us = 0, token_bytes = 0;
    for (const engine::bench::MatrixShape& s : profile ? std::span<const engine::bench::MatrixShape>()
                                                        : std::span(engine::bench::kQwq32Shapes)) {
      const uint64_t w_bytes = engine::gpu_row_bytes(s.type, s.K) * uint64_t(s.N);  // as a GPU stage stores it
      void* w = nullptr;
      float *x = nullptr, *y = nullptr;
      engine::ActQ8Block* xq = nullptr;
      ENGINE_CUDA_CHECK(cudaMalloc(&xq, sizeof(engine::ActQ8Block) * (s.K / 32) * engine::kCudaMatvecMaxBatch));
      ENGINE_CUDA_CHECK(cudaMalloc(&w, w_bytes));
      ENGINE_CUDA_CHECK(cudaMalloc(&x, sizeof(float) * s.K * engine::kCudaMatvecMaxBatch));
      ENGINE_CUDA_CHECK(cudaMalloc(&y, sizeof(float) * s.N * engine::kCudaMatvecMaxBatch));
      ENGINE_CUDA_CHECK(cudaMemset(w, 0x3C, w_bytes));
      ENGINE_CUDA_CHECK(cudaMemset(x, 0, sizeof(float) * s.K * engine::kCudaMatvecMaxBatch));
      const bool q8 = engine::cuda_matvec_wants_q8(s.type);
      if (q8) engine::cuda_quantize_activations(x, s.K * engine::kCudaMatvecMaxBatch, xq, nullptr);
      const engine::MatvecInput in{x, q8 ? xq : nullptr};
      for (const int batch : {1, 4}) {
        const double us = mean_us(reps, [&] { engine::cuda_matvec(s.type, w, s.K, s.N, in, batch, y, nullptr); });
        const double bytes = double(w_bytes) + (q8 ? 40.0 / 32.0 : 4.0) * s.K * batch;
        const double gbs = bytes / (us * 1e-6) / 1e9;
        out["kernels"].push_back({{"name", s.name}, {"type", engine::traits(s.type).name}, {"K", s.K},
                                  {"N", s.N}, {"batch", batch}, {"us", us}, {"gb_per_s", gbs},
                                  {"fraction_of_copy", gbs / copy_gbs}});
        if (!quiet) fmt::print("{:32} {:>5} {:>9.1f} {:>9.0f} {:>6.0f}%\n", s.name, batch, us, gbs, 100 * gbs / copy_gbs);
      }
      ENGINE_CUDA_CHECK(cudaFree(w));
      ENGINE_CUDA_CHECK(cudaFree(x));
      ENGINE_CUDA_CHECK(cudaFree(xq));
      ENGINE_CUDA_CHECK(cudaFree(y));
    }
    // A decode step's matrix products as the GPU stage launches them.
    out["decode_launches"] = nlohmann::json::array();
    // staged: the same launch by the staged kernel (weights copied ahead into shared memory).
    if (!quiet) {
      fmt::print("\n{:32} {:>9} {:>9} {:>9} {:>7} {:>10} {:>9}\n", "decode launch", "per token", "us", "GB/s", "% copy",
                 "staged us", "% copy");
    }
    double staged_token_us = 0;
    // The q/k/v launches again with RoPE and the KV store in their epilogue (what the stage runs
    // at decode with an f16 cache): their time per token, against the products alone.
    double rope_launches_us = 0, plain_qkv_us = 0;
    uint16_t* rope_cache = nullptr;  // one position's K and V rows
    ENGINE_CUDA_CHECK(cudaMalloc(&rope_cache, sizeof(uint16_t) * 2 * 1024));
    for (const engine::bench::StageLaunch& l : engine::bench::kQwq32Launches) {
      float* x = nullptr;
      engine::ActQ8Block* xq = nullptr;
      ENGINE_CUDA_CHECK(cudaMalloc(&x, sizeof(float) * l.K));
      ENGINE_CUDA_CHECK(cudaMalloc(&xq, sizeof(engine::ActQ8Block) * (l.K / 32)));
      ENGINE_CUDA_CHECK(cudaMemset(x, 0, sizeof(float) * l.K));
      engine::cuda_quantize_activations(x, l.K, xq, nullptr);
      std::vector<engine::MatvecOutput> outs;
      double bytes = 40.0 / 32.0 * double(l.K);
      for (const int64_t n : l.rows) {
        const uint64_t w_bytes = engine::gpu_row_bytes(l.type, l.K) * uint64_t(n);
        void* w = nullptr;
        float* y = nullptr;
        ENGINE_CUDA_CHECK(cudaMalloc(&w, w_bytes));
        ENGINE_CUDA_CHECK(cudaMalloc(&y, sizeof(float) * n));
        ENGINE_CUDA_CHECK(cudaMemset(w, 0x3C, w_bytes));
        outs.push_back({w, n, y, {}});
        bytes += double(w_bytes);
      }
      const engine::MatvecInput in{x, xq};
      const double us = mean_us(reps, [&] { engine::cuda_matvec_fused(l.type, l.K, in, 1, outs, nullptr); });
      const double gbs = bytes / (us * 1e-6) / 1e9;
      // The staged kernel, where it runs the type (the K-quants; every launch of QwQ-32B Q4_K_M).
      double staged_us = us;
      const bool staged = engine::cuda_matvec_has_staged(l.type, 1);
      if (staged) {
        staged_us = mean_us(reps, [&] {
          engine::cuda_matvec_fused(l.type, l.K, in, 1, outs, nullptr, engine::MatvecKernel::staged);
        });
      }
      const double staged_gbs = bytes / (staged_us * 1e-6) / 1e9;
      if (l.qkv != nullptr) {
        engine::MatvecRope rope;
        rope.p.n_rot = 128;
        rope.p.neox = true;
        rope.p.freq_base = 1e6f;
        rope.head_dim = 128;
        rope.k_cache = rope_cache;
        rope.v_cache = rope_cache + 1024;
        rope.kv_dim = 1024;
        for (size_t i = 0; i < std::strlen(l.qkv); ++i) {
          rope.roles[i] = l.qkv[i] == 'q' ? engine::QkvRole::q : l.qkv[i] == 'k' ? engine::QkvRole::k : engine::QkvRole::v;
        }
        const double rope_us = mean_us(reps, [&] { engine::cuda_matvec_fused_rope(l.type, l.K, in, outs, rope, nullptr); });
        rope_launches_us += rope_us * l.per_token;
        plain_qkv_us += us * l.per_token;
        out["qkv_with_rope"].push_back({{"name", l.name}, {"us", rope_us}, {"us_without", us}});
      }
      token_us += us * l.per_token;
      staged_token_us += staged_us * l.per_token;
      token_bytes += bytes * l.per_token;
      out["decode_launches"].push_back({{"name", l.name}, {"per_token", l.per_token}, {"us", us},
                                        {"gb_per_s", gbs}, {"fraction_of_copy", gbs / copy_gbs},
                                        {"staged_us", staged ? nlohmann::json(staged_us) : nlohmann::json()},
                                        {"staged_fraction_of_copy",
                                         staged ? nlohmann::json(staged_gbs / copy_gbs) : nlohmann::json()}});
      if (!quiet) {
        fmt::print("{:32} {:>9} {:>9.1f} {:>9.0f} {:>6.0f}% {:>10} {:>9}\n", l.name, l.per_token, us, gbs,
                   100 * gbs / copy_gbs, staged ? fmt::format("{:.1f}", staged_us) : "",
                   staged ? fmt::format("{:.0f}%", 100 * staged_gbs / copy_gbs) : "");
      }
      for (const engine::MatvecOutput& o : outs) {
        ENGINE_CUDA_CHECK(cudaFree(const_cast<void*>(o.w)));
        ENGINE_CUDA_CHECK(cudaFree(o.y));
      }
      ENGINE_CUDA_CHECK(cudaFree(x));
      ENGINE_CUDA_CHECK(cudaFree(xq));
    }

    ENGINE_CUDA_CHECK(cudaFree(rope_cache));
    out["qkv_rope_in_epilogue_us_per_token"] = rope_launches_us;
    out["qkv_products_alone_us_per_token"] = plain_qkv_us;
    if (!quiet) {
      fmt::print("q/k/v with RoPE and the KV store in the epilogue: {:.0f} us per token ({:.0f} for the products alone)\n",
                 rope_launches_us, plain_qkv_us);
    }

    // The rest of a decode step at QwQ-32B's shapes (64 layers, qwen2: q/k/v biases).
    constexpr int64_t E = 5120, Q = 5120, KV = 1024, F = 27648, kHeads = 40, kKvHeads = 8, kHd = 128;
    float* buf = nullptr;
    uint8_t* cache = nullptr;  // one layer's K and V, room for f16 (q8_0 takes 34/64 of it)
    const int64_t kCtx = 8192;
    const int64_t cache_bytes = 2 * 2 * kCtx * KV;
    ENGINE_CUDA_CHECK(cudaMalloc(&buf, sizeof(float) * (4 * F + 4 * E)));
    ENGINE_CUDA_CHECK(cudaMalloc(&cache, cache_bytes));
    ENGINE_CUDA_CHECK(cudaMemset(buf, 0, sizeof(float) * (4 * F + 4 * E)));
    ENGINE_CUDA_CHECK(cudaMemset(cache, 0x11, cache_bytes));  // small finite fp16 values and codes
    const engine::KvLayer f16_cache = engine::kv_layer(engine::KvType::f16, cache, cache + cache_bytes / 2, 1, kCtx,
                                                       KV, 0);
    const engine::KvLayer q8_cache = engine::kv_layer(engine::KvType::q8_0, cache, cache + kCtx * KV * 34 / 32, 1,
                                                      kCtx, KV, 0);
    int64_t* pos = nullptr;  // a decode step's position in device memory, as the graph reads it
    ENGINE_CUDA_CHECK(cudaMalloc(&pos, sizeof(int64_t)));
    const int64_t at = 100;
    ENGINE_CUDA_CHECK(cudaMemcpy(pos, &at, sizeof at, cudaMemcpyHostToDevice));
    float* ws = nullptr;
    ENGINE_CUDA_CHECK(cudaMalloc(&ws, sizeof(float) * engine::cuda_attention_decode_workspace(kHeads, kHd, kCtx)));
    engine::RopeParams rope;
    rope.n_rot = kHd;
    rope.neox = true;
    rope.freq_base = 1e6f;
    auto time_us = [&](auto&& launch) { return mean_us(50, launch); };
    float *u = buf, *v = buf + F, *o = buf + 2 * F;
    struct Part {
      std::string name;
      double per_token, us;
      bool in_step = true;  // part of the step at 512 keys with an f16 cache (the sum below)
    };
    std::vector<Part> parts = {
        {"matvecs (decode launches above)", 1, token_us},
        {"rms_norm 5120 (+ 8-bit blocks)", 2 * 64 + 1, time_us([&] {
           engine::cuda_rms_norm(u, v, o, 1, E, 1e-6f, nullptr, reinterpret_cast<engine::ActQ8Block*>(o + E));
         })},
        {"swiglu 27648 (+ 8-bit blocks)", 64, time_us([&] {
           engine::cuda_swiglu(u, v, u, F, nullptr, reinterpret_cast<engine::ActQ8Block*>(o));
         })},
    };
    // With an f16 cache the stage rotates and stores in the q/k/v products' epilogue (the launches
    // above): the step counts their extra time, not the RoPE kernel, which a q8_0 cache still runs.
    parts.push_back({"rope + kv store in the q/k/v epilogue", 1, rope_launches_us - plain_qkv_us, true});
    for (const auto& [cache_view, name] : {std::pair{f16_cache, "f16"}, std::pair{q8_cache, "q8_0"}}) {
      const bool f16 = cache_view.type == engine::KvType::f16;
      parts.push_back({fmt::format("rope q + k, kv store ({})", name), 64, time_us([&] {
                         engine::cuda_rope_store_kv(u, v, o, 1, kHeads, kKvHeads, kHd, 0, rope, cache_view, nullptr,
                                                    pos);
                       }), false});
      for (const int64_t keys : {int64_t(512), kCtx}) {
        parts.push_back({fmt::format("attention at {} keys ({})", keys, name), 64, time_us([&] {
                           engine::cuda_attention_decode(u, cache_view, keys, kHeads, kKvHeads, kHd, 0.088f, o, ws,
                                                         nullptr, reinterpret_cast<engine::ActQ8Block*>(o + Q));
                         }), f16 && keys == 512});
      }
    }
    ENGINE_CUDA_CHECK(cudaFree(buf));
    ENGINE_CUDA_CHECK(cudaFree(cache));
    ENGINE_CUDA_CHECK(cudaFree(pos));
    ENGINE_CUDA_CHECK(cudaFree(ws));
    double step_512 = 0;  // a step at 512 keys with an f16 cache: the parts marked in_step
    for (const Part& p : parts) {
      if (p.in_step) step_512 += p.per_token * p.us;
    }
    out["decode_step_parts"] = nlohmann::json::array();
    if (!quiet) fmt::print("\n{:32} {:>9} {:>9} {:>12} {:>8}\n", "decode step part", "per token", "us each", "us per token", "share");
    for (const Part& p : parts) {
      const double total = p.per_token * p.us;
      out["decode_step_parts"].push_back({{"name", p.name}, {"per_token", p.per_token}, {"us", p.us},
                                          {"us_per_token", total}, {"in_step_at_512_keys", p.in_step},
                                          {"share_at_512_keys", total / step_512}});
      if (!quiet) {
        fmt::print("{:32} {:>9.0f} {:>9.2f} {:>12.0f} {:>7.1f}%\n", p.name, p.per_token, p.us, total,
                   100 * total / step_512);
      }
    }
    out["qwq32_q4_k_m_step_us_at_512_keys"] = step_512;
    if (!quiet) fmt::print("decode step at 512 keys (kernels back to back, no gaps): {:.0f} us = {:.1f} tokens/s\n",
                          step_512, 1e6 / step_512);

    // A decode step's matrix-vector products alone (no attention, norms or launches between).
    out["qwq32_q4_k_m_matvec_us_per_token"] = token_us;
    out["qwq32_q4_k_m_matvec_tokens_per_s"] = 1e6 / token_us;
    out["qwq32_q4_k_m_matvec_gb_per_s"] = token_bytes / (token_us * 1e-6) / 1e9;
    out["qwq32_q4_k_m_staged_matvec_us_per_token"] = staged_token_us;
    out["qwq32_q4_k_m_staged_matvec_gb_per_s"] = token_bytes / (staged_token_us * 1e-6) / 1e9;
    if (profile) {
      std::puts("cuda-matvec-bench --profile: each decode kernel launched once");
    } else if (json) {
      std::puts(out.dump().c_str());
    } else {
      fmt::print("QwQ-32B Q4_K_M decode, matvecs only: {:.0f} us/token = {:.1f} tokens/s, {:.0f} GB/s ({:.0f}% of copy)\n",
                 token_us, 1e6 / token_us, token_bytes / (token_us * 1e-6) / 1e9,
                 100 * token_bytes / (token_us * 1e-6) / 1e9 / copy_gbs);
      fmt::print("  by the staged kernel: {:.0f} us/token, {:.0f}% of copy\n", staged_token_us,
                 100 * token_bytes / (staged_token_us * 1e-6) / 1e9 / copy_gbs);
    }
  } catch (const engine::Error& e) {
    std::fprintf(stderr, "cuda-matvec-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
