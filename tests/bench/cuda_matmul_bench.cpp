// The tensor-core prompt matmul on QwQ-32B's matrix shapes at 512 tokens, against cuBLAS's fp16
// GEMM on the same shapes (the peer: what a dequantize-then-cuBLAS path would get at best, its
// dequantization not counted); then a pp512's products as the GPU stage launches them (q/k/v and
// gate/up fused), the prefill attention and the layer's small kernels (norms, RoPE and the cache
// store, SwiGLU, conversions), and what they and cuBLAS imply for a pp512 of QwQ-32B Q4_K_M (run
// by tools/device-check). The stage's choice (wgmma on Hopper, K split where the grid would
// leave SMs idle) is timed against each part left out: no split, either tile size, the mma.sync
// kernel every GPU runs; and, with ENGINE_CUDA_WGMMA=specialized on Hopper, against the
// warp-specialized wgmma kernel (which the stage then takes too). Prints a table, or one JSON
// object with --json.
//
// Weights are filled with a constant byte pattern (0x3C: valid fp16 scales), activations with
// fp16 1.06; the mean of 10 launches after a warm-up, timed with CUDA events. TFLOPS counts
// 2 M N K. cuBLAS is loaded at run time (libcublas.so.13, .12 or .so); without it the comparison
// columns are empty and the run still succeeds.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/ggml_type.h"
#include "engine/gpu_layout.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/kv_cache.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/matmul_splits.h"
#include "kernels/cuda/ops.h"
#include "scheduler/cuda_check.h"
#include "qwq32_shapes.h"

namespace {

constexpr int64_t kTokens = 512;

// cuBLAS through dlopen: the bench runs (without the comparison) where the library is missing.
class Cublas {
 public:
  Cublas() {
    for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
      lib_ = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib_ != nullptr) break;
    }
    if (lib_ == nullptr) return;
    create_ = reinterpret_cast<Create>(dlsym(lib_, "cublasCreate_v2"));
    destroy_ = reinterpret_cast<Destroy>(dlsym(lib_, "cublasDestroy_v2"));
    gemm_ = reinterpret_cast<GemmEx>(dlsym(lib_, "cublasGemmEx"));
    if (create_ == nullptr || destroy_ == nullptr || gemm_ == nullptr || create_(&handle_) != CUBLAS_STATUS_SUCCESS) {
      handle_ = nullptr;
    }
  }
  ~Cublas() {
    if (handle_ != nullptr) destroy_(handle_);
    if (lib_ != nullptr) dlclose(lib_);
  }
  bool available() const { return handle_ != nullptr; }

  // y (M rows of N floats) = x (M rows of K halves) . w (N rows of K halves)^T
  void gemm(const void* w, int64_t K, int64_t N, const void* x, int64_t M, float* y) const {
    const float one = 1.0f, zero = 0.0f;
    const cublasStatus_t status = gemm_(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &one, w, CUDA_R_16F,
                                        int(K), x, CUDA_R_16F, int(K), &zero, y, CUDA_R_32F, int(N),
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (status != CUBLAS_STATUS_SUCCESS) {
      throw engine::Error(fmt::format("cublasGemmEx failed with status {}", int(status)));
    }
  }

 private:
  using Create = cublasStatus_t (*)(cublasHandle_t*);
  using Destroy = cublasStatus_t (*)(cublasHandle_t);
  using GemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                                    const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                                    cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
  void* lib_ = nullptr;
  cublasHandle_t handle_ = nullptr;
  Create create_ = nullptr;
  Destroy destroy_ = nullptr;
  GemmEx gemm_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  const bool json = argc > 1 && std::strcmp(argv[1], "--json") == 0;
  // --profile: each of the stage's prompt launches once with each kernel, the prefill attention
  // and the cache conversion once, untimed and without the per-matrix table: for a profiler such
  // as ncu to look inside (tools/device-check runs it so).
  const bool profile = argc > 1 && std::strcmp(argv[1], "--profile") == 0;
  const bool quiet = json || profile;  // no table
  try {
    cudaDeviceProp prop{};
    ENGINE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    cudaEvent_t start, stop;
    ENGINE_CUDA_CHECK(cudaEventCreate(&start));
    ENGINE_CUDA_CHECK(cudaEventCreate(&stop));
    auto time_us = [&](auto&& launch) {
      launch();
      if (profile) {
        ENGINE_CUDA_CHECK(cudaDeviceSynchronize());
        return 0.0;
      }
      constexpr int kReps = 10;
      ENGINE_CUDA_CHECK(cudaEventRecord(start));
      for (int r = 0; r < kReps; ++r) launch();
      ENGINE_CUDA_CHECK(cudaEventRecord(stop));
      ENGINE_CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      ENGINE_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      return double(ms) * 1e3 / kReps;
    };
    const Cublas cublas;
    // The warp-specialized wgmma kernel's columns: only with ENGINE_CUDA_WGMMA=specialized (which
    // also makes it the stage's choice for 128-token tiles), so that tools/device-check times it
    // in a run of its own, where a fault in it cannot take the other columns with it.
    const char* wgmma_env = std::getenv("ENGINE_CUDA_WGMMA");
    const bool specialized =
        engine::cuda_matmul_has_wgmma() && wgmma_env != nullptr && std::strcmp(wgmma_env, "specialized") == 0;

    nlohmann::json out;
    out["device"] = prop.name;
    out["tokens"] = kTokens;
    out["cublas"] = cublas.available();
    out["kernel"] = engine::cuda_matmul_has_wgmma() ? "wgmma" : "mma.sync";
    out["kernels"] = nlohmann::json::array();
    if (!quiet) {
      fmt::print("device {}: prompt matmul at {} tokens, {} kernel{}\n", prop.name, kTokens,
                 engine::cuda_matmul_has_wgmma() ? "wgmma" : "mma.sync",
                 cublas.available() ? "" : " (cuBLAS not found: no comparison)");
      // us: the stage's choice (tile tokens x splits); unsplit: no workspace; 128/64-tok: that tile,
      // splits chosen; mma.sync: the portable kernel, the stage's choice otherwise; specialized: the
      // warp-specialized wgmma kernel (Hopper), splits chosen.
      fmt::print("{:32} {:>9} {:>8} {:>7} {:>10} {:>10} {:>10} {:>11} {:>14} {:>12} {:>12} {:>8}\n", "matmul", "us",
                 "TFLOPS", "tile", "unsplit us", "128-tok us", "64-tok us", "mma.sync us", "specialized us",
                 "cuBLAS f16 us", "cuBLAS TFLOPS", "ratio");
    }
    double prompt_cublas_us = 0;
    for (const engine::bench::MatrixShape& s : engine::bench::kQwq32Shapes) {
      if (s.output_head || profile) continue;  // a prompt runs the head for its last token only
      const uint64_t w_bytes = engine::gpu_row_bytes(s.type, s.K) * uint64_t(s.N);  // as a GPU stage stores it
      void *w = nullptr, *w16 = nullptr;
      uint16_t* x = nullptr;
      float* y = nullptr;
      ENGINE_CUDA_CHECK(cudaMalloc(&w, w_bytes));
      ENGINE_CUDA_CHECK(cudaMalloc(&w16, 2 * s.K * s.N));
      ENGINE_CUDA_CHECK(cudaMalloc(&x, 2 * s.K * kTokens));
      ENGINE_CUDA_CHECK(cudaMalloc(&y, sizeof(float) * s.N * kTokens));
      ENGINE_CUDA_CHECK(cudaMemset(w, 0x3C, w_bytes));
      ENGINE_CUDA_CHECK(cudaMemset(w16, 0x3C, 2 * s.K * s.N));
      ENGINE_CUDA_CHECK(cudaMemset(x, 0x3C, 2 * s.K * kTokens));
      const double flops = 2.0 * double(kTokens) * double(s.N) * double(s.K);
      // Room for the most splits, as the stage's ffn_up buffer gives its single products.
      float* partials = nullptr;
      const int64_t partial_floats = int64_t(engine::kMatmulMaxSplits) * kTokens * s.N;
      ENGINE_CUDA_CHECK(cudaMalloc(&partials, sizeof(float) * partial_floats));
      using engine::MatmulKernel, engine::MatmulOptions, engine::MatmulTokens;
      const engine::MatmulWorkspace room{partials, partial_floats};
      const auto timed = [&](const MatmulOptions& options) {
        return time_us([&] { engine::cuda_matmul(s.type, w, s.K, s.N, x, kTokens, y, nullptr, {}, options); });
      };
      const double us = timed({.workspace = room});  // what the stage gets
      const engine::MatvecOutput shape{w, s.N, y, {}};
      const engine::MatmulLaunch chosen = engine::cuda_matmul_launch(s.type, s.K, kTokens, {&shape, 1}, {.workspace = room});
      const std::string tile = fmt::format("{}x{}", chosen.tokens == MatmulTokens::tiles_of_64 ? 64 : 128, chosen.splits);
      const double us_unsplit = timed({});
      const double us128 = timed({.tokens = MatmulTokens::tiles_of_128, .workspace = room});  // splits chosen
      const double us64 = timed({.tokens = MatmulTokens::tiles_of_64, .workspace = room});
      const double us_mma = timed({.kernel = MatmulKernel::mma_sync, .workspace = room});  // every GPU's kernel
      std::optional<double> us_spec;  // Hopper's warp-specialized kernel
      if (specialized) us_spec = timed({.kernel = MatmulKernel::wgmma_specialized, .workspace = room});
      std::optional<double> ref_us;
      if (cublas.available()) ref_us = time_us([&] { cublas.gemm(w16, s.K, s.N, x, kTokens, y); });
      if (ref_us) prompt_cublas_us += *ref_us * s.per_token;
      nlohmann::json row = {{"name", s.name}, {"type", engine::traits(s.type).name}, {"K", s.K}, {"N", s.N},
                            {"us", us},       {"tflops", flops / us * 1e-6}, {"us_tiles_128", us128},
                            {"us_tiles_64", us64}, {"us_mma_sync", us_mma}, {"splits", chosen.splits},
                            {"tile_tokens", chosen.tokens == MatmulTokens::tiles_of_64 ? 64 : 128},
                            {"us_unsplit", us_unsplit}};
      row["us_wgmma_specialized"] = us_spec ? nlohmann::json(*us_spec) : nlohmann::json();
      row["cublas_f16_us"] = ref_us ? nlohmann::json(*ref_us) : nlohmann::json();
      row["ratio_to_cublas"] = ref_us ? nlohmann::json(*ref_us / us) : nlohmann::json();
      out["kernels"].push_back(row);
      if (!json) {
        fmt::print("{:32} {:>9.1f} {:>8.1f} {:>7} {:>10.1f} {:>10.1f} {:>10.1f} {:>11.1f} {:>14} {:>12} {:>12} {:>8}\n",
                   s.name, us, flops / us * 1e-6, tile, us_unsplit, us128, us64, us_mma,
                   us_spec ? fmt::format("{:.1f}", *us_spec) : "",
                   ref_us ? fmt::format("{:.1f}", *ref_us) : "", ref_us ? fmt::format("{:.1f}", flops / *ref_us * 1e-6) : "",
                   ref_us ? fmt::format("{:.2f}x", *ref_us / us) : "");
      }
      ENGINE_CUDA_CHECK(cudaFree(partials));
      ENGINE_CUDA_CHECK(cudaFree(w));
      ENGINE_CUDA_CHECK(cudaFree(w16));
      ENGINE_CUDA_CHECK(cudaFree(x));
      ENGINE_CUDA_CHECK(cudaFree(y));
    }
    // A pp512's matrix products as the GPU stage launches them (q/k/v where their types agree
    // and gate/up fused, the others alone), and its attention; no norms or conversions.
    out["prompt_launches"] = nlohmann::json::array();
    if (!quiet) {
      fmt::print("\n{:32} {:>9} {:>9} {:>8} {:>11} {:>14}\n", "prompt launch", "per token", "us", "TFLOPS",
                 "mma.sync us", "specialized us");
    }
    // The products by the stage's kernel, by mma.sync's, and by the warp-specialized one (Hopper).
    double launches_us = 0, launches_mma_us = 0, launches_spec_us = 0;
    for (const engine::bench::StageLaunch& l : engine::bench::kQwq32Launches) {
      if (l.output_head) continue;  // a prompt runs the head for its last token only
      uint16_t* x = nullptr;
      ENGINE_CUDA_CHECK(cudaMalloc(&x, 2 * l.K * kTokens));
      ENGINE_CUDA_CHECK(cudaMemset(x, 0x3C, 2 * l.K * kTokens));
      std::vector<engine::MatvecOutput> outs;
      double flops = 0;
      for (const int64_t n : l.rows) {
        const uint64_t w_bytes = engine::gpu_row_bytes(l.type, l.K) * uint64_t(n);
        void* w = nullptr;
        float* y = nullptr;
        ENGINE_CUDA_CHECK(cudaMalloc(&w, w_bytes));
        ENGINE_CUDA_CHECK(cudaMalloc(&y, sizeof(float) * n * kTokens));
        ENGINE_CUDA_CHECK(cudaMemset(w, 0x3C, w_bytes));
        outs.push_back({w, n, y, {}});
        flops += 2.0 * double(kTokens) * double(n) * double(l.K);
      }
      // A single product gets room for its splits, as in the stage; fused ones never split.
      float* partials = nullptr;
      const int64_t partial_floats = int64_t(engine::kMatmulMaxSplits) * kTokens * *l.rows.begin();
      ENGINE_CUDA_CHECK(cudaMalloc(&partials, sizeof(float) * partial_floats));
      const engine::MatmulWorkspace room =
          outs.size() == 1 ? engine::MatmulWorkspace{partials, partial_floats} : engine::MatmulWorkspace{};
      const double us = time_us([&] {
        engine::cuda_matmul_fused(l.type, l.K, x, kTokens, outs, nullptr, {.workspace = room});
      });
      const double us_mma = time_us([&] {
        engine::cuda_matmul_fused(l.type, l.K, x, kTokens, outs, nullptr,
                                  {.kernel = engine::MatmulKernel::mma_sync, .workspace = room});
      });
      std::optional<double> us_spec;
      if (specialized) {
        us_spec = time_us([&] {
          engine::cuda_matmul_fused(l.type, l.K, x, kTokens, outs, nullptr,
                                    {.kernel = engine::MatmulKernel::wgmma_specialized, .workspace = room});
        });
      }
      ENGINE_CUDA_CHECK(cudaFree(partials));
      launches_us += us * l.per_token;
      launches_mma_us += us_mma * l.per_token;
      launches_spec_us += us_spec.value_or(0) * l.per_token;
      out["prompt_launches"].push_back({{"name", l.name}, {"per_token", l.per_token}, {"us", us},
                                        {"tflops", flops / us * 1e-6}, {"us_mma_sync", us_mma},
                                        {"us_wgmma_specialized", us_spec ? nlohmann::json(*us_spec) : nlohmann::json()}});
      if (!quiet) {
        fmt::print("{:32} {:>9} {:>9.1f} {:>8.1f} {:>11.1f} {:>14}\n", l.name, l.per_token, us, flops / us * 1e-6, us_mma,
                   us_spec ? fmt::format("{:.1f}", *us_spec) : "");
      }
      for (const engine::MatvecOutput& o : outs) {
        ENGINE_CUDA_CHECK(cudaFree(const_cast<void*>(o.w)));
        ENGINE_CUDA_CHECK(cudaFree(o.y));
      }
      ENGINE_CUDA_CHECK(cudaFree(x));
    }
    // The prompt's causal attention at QwQ-32B's shapes (40 query heads of 128 over 8 KV heads),
    // once per layer.
    {
      constexpr int kHeads = 40, kKvHeads = 8, kHd = 128, kLayers = 64;
      float *q = nullptr, *o = nullptr;
      uint16_t *k = nullptr, *v = nullptr;
      ENGINE_CUDA_CHECK(cudaMalloc(&q, sizeof(float) * kTokens * kHeads * kHd));
      ENGINE_CUDA_CHECK(cudaMalloc(&o, sizeof(float) * kTokens * kHeads * kHd));
      ENGINE_CUDA_CHECK(cudaMalloc(&k, sizeof(uint16_t) * kTokens * kKvHeads * kHd));
      ENGINE_CUDA_CHECK(cudaMalloc(&v, sizeof(uint16_t) * kTokens * kKvHeads * kHd));
      ENGINE_CUDA_CHECK(cudaMemset(q, 0, sizeof(float) * kTokens * kHeads * kHd));
      ENGINE_CUDA_CHECK(cudaMemset(k, 0x3C, sizeof(uint16_t) * kTokens * kKvHeads * kHd));
      ENGINE_CUDA_CHECK(cudaMemset(v, 0x3C, sizeof(uint16_t) * kTokens * kKvHeads * kHd));
      const double us = time_us([&] {
        engine::KvLayer cache;  // f16
        cache.k = k;
        cache.v = v;
        engine::cuda_attention_prefill(q, cache, 0, kTokens, kHeads, kKvHeads, kHd, 0.088f, o, nullptr);
      });
      // Causal: 2 * 2 * head_dim flops per query-key pair, about half the pairs.
      const double flops = 4.0 * kHd * kHeads * double(kTokens) * double(kTokens + 1) / 2;
      launches_us += us * kLayers;
      launches_mma_us += us * kLayers;
      launches_spec_us += us * kLayers;
      out["prompt_launches"].push_back(
          {{"name", "prefill attention"}, {"per_token", kLayers}, {"us", us}, {"tflops", flops / us * 1e-6}});
      if (!quiet) fmt::print("{:32} {:>9} {:>9.1f} {:>8.1f}\n", "prefill attention (40/8 x 128)", kLayers, us, flops / us * 1e-6);
      ENGINE_CUDA_CHECK(cudaFree(q));
      ENGINE_CUDA_CHECK(cudaFree(o));
      ENGINE_CUDA_CHECK(cudaFree(k));
      ENGINE_CUDA_CHECK(cudaFree(v));
    }
    // A q8_0 cache's conversion to the fp16 rows the prefill reads (once per layer and prompt
    // batch, over the positions it attends): at this batch alone and after 8192 cached tokens.
    {
      constexpr int64_t KV = 8 * 128, kMaxPositions = 8192 + kTokens;
      uint8_t* planes = nullptr;  // K then V: codes and scales
      uint16_t* f16 = nullptr;
      const int64_t array = kMaxPositions * KV * 34 / 32;
      ENGINE_CUDA_CHECK(cudaMalloc(&planes, 2 * array));
      ENGINE_CUDA_CHECK(cudaMalloc(&f16, sizeof(uint16_t) * 2 * kMaxPositions * KV));
      ENGINE_CUDA_CHECK(cudaMemset(planes, 0x11, 2 * array));
      const engine::KvLayer cache = engine::kv_layer(engine::KvType::q8_0, planes, planes + array, 1, kMaxPositions,
                                                     KV, 0);
      out["q8_cache_to_f16"] = nlohmann::json::array();
      for (const int64_t positions : {int64_t(kTokens), kMaxPositions}) {
        const double us = time_us([&] {
          engine::cuda_kv_to_f16(cache, positions, KV, f16, f16 + kMaxPositions * KV, nullptr);
        });
        const double gbs = double(positions * KV * 2) * (34.0 / 32 + 2) / (us * 1e-6) / 1e9;
        out["q8_cache_to_f16"].push_back({{"positions", positions}, {"us", us}, {"gb_per_s", gbs}});
        if (!quiet) {
          fmt::print("{:32} {:>9} {:>9.1f} {:>8} ({:.0f} GB/s)\n", fmt::format("q8_0 cache to fp16, {} pos", positions),
                     "", us, "", gbs);
        }
      }
      ENGINE_CUDA_CHECK(cudaFree(planes));
      ENGINE_CUDA_CHECK(cudaFree(f16));
    }
    // The rest of a prompt layer at 512 tokens (f16 cache): the two RMSNorms and SwiGLU (which also
    // write the matmul's fp16 input), RoPE with the cache store, and the attention output's
    // conversion to fp16; with the launches above, a pp512's whole device step but the head's one row.
    double small_us = 0;
    out["prompt_small_kernels"] = nlohmann::json::array();
    {
      constexpr int64_t E = 5120, F = 27648, kHeads = 40, kKvHeads = 8, kHd = 128, kLayers = 64;
      float *a = nullptr, *b = nullptr;
      uint16_t *x16 = nullptr, *cache = nullptr;
      ENGINE_CUDA_CHECK(cudaMalloc(&a, sizeof(float) * kTokens * F));
      ENGINE_CUDA_CHECK(cudaMalloc(&b, sizeof(float) * kTokens * F));
      ENGINE_CUDA_CHECK(cudaMalloc(&x16, sizeof(uint16_t) * kTokens * F));
      ENGINE_CUDA_CHECK(cudaMalloc(&cache, sizeof(uint16_t) * 2 * kTokens * kKvHeads * kHd));
      ENGINE_CUDA_CHECK(cudaMemset(a, 0, sizeof(float) * kTokens * F));
      ENGINE_CUDA_CHECK(cudaMemset(b, 0, sizeof(float) * kTokens * F));
      const engine::KvLayer f16_cache = engine::kv_layer(engine::KvType::f16, cache, cache + kTokens * kKvHeads * kHd,
                                                         1, kTokens, kKvHeads * kHd, 0);
      engine::RopeParams rope;
      rope.n_rot = kHd;
      rope.neox = true;
      rope.freq_base = 1e6f;
      float* q = a;
      float* k = a + kTokens * kHeads * kHd;
      float* v = k + kTokens * kKvHeads * kHd;
      struct Small {
        const char* name;
        int per_layer;
        double us;
      };
      const Small parts[] = {
          {"rms_norm 512x5120 (+ fp16)", 2,
           time_us([&] { engine::cuda_rms_norm(a, b, b, kTokens, E, 1e-6f, nullptr, nullptr, x16); })},
          {"rope q + k, kv store (512)", 1, time_us([&] {
             engine::cuda_rope_store_kv(q, k, v, kTokens, kHeads, kKvHeads, kHd, 0, rope, f16_cache, nullptr);
           })},
          {"attention output to fp16", 1, time_us([&] { engine::cuda_to_f16_saturated(a, x16, kTokens * E, nullptr); })},
          {"swiglu 512x27648 (+ fp16)", 1,
           time_us([&] { engine::cuda_swiglu(a, b, a, kTokens * F, nullptr, nullptr, x16); })},
      };
      for (const Small& part : parts) {
        small_us += part.us * part.per_layer * kLayers;
        out["prompt_small_kernels"].push_back(
            {{"name", part.name}, {"per_token", part.per_layer * kLayers}, {"us", part.us}});
        if (!quiet) fmt::print("{:32} {:>9} {:>9.1f}\n", part.name, part.per_layer * kLayers, part.us);
      }
      ENGINE_CUDA_CHECK(cudaFree(a));
      ENGINE_CUDA_CHECK(cudaFree(b));
      ENGINE_CUDA_CHECK(cudaFree(x16));
      ENGINE_CUDA_CHECK(cudaFree(cache));
    }
    out["qwq32_q4_k_m_pp512_small_kernels_us"] = small_us;
    out["qwq32_q4_k_m_pp512_step_tokens_per_s"] = kTokens / ((launches_us + small_us) * 1e-6);
    out["qwq32_q4_k_m_pp512_products_attention_us"] = launches_us;
    out["qwq32_q4_k_m_pp512_products_attention_tokens_per_s"] = kTokens / (launches_us * 1e-6);
    out["qwq32_q4_k_m_pp512_mma_sync_products_attention_tokens_per_s"] = kTokens / (launches_mma_us * 1e-6);
    if (specialized) {
      out["qwq32_q4_k_m_pp512_specialized_products_attention_tokens_per_s"] = kTokens / (launches_spec_us * 1e-6);
    }
    if (cublas.available()) out["qwq32_pp512_cublas_f16_products_tokens_per_s"] = kTokens / (prompt_cublas_us * 1e-6);
    if (profile) {
      std::puts("cuda-matmul-bench --profile: each prompt launch once with each kernel");
    } else if (json) {
      std::puts(out.dump().c_str());
    } else {
      fmt::print("QwQ-32B Q4_K_M pp512, matmuls and attention only: {:.1f} ms = {:.0f} tokens/s (mma.sync: {:.0f})",
                 launches_us * 1e-3, kTokens / (launches_us * 1e-6), kTokens / (launches_mma_us * 1e-6));
      if (specialized) fmt::print(" (warp-specialized: {:.0f})", kTokens / (launches_spec_us * 1e-6));
      fmt::print("; with the small kernels ({:.1f} ms): {:.0f} tokens/s", small_us * 1e-3,
                 kTokens / ((launches_us + small_us) * 1e-6));
      if (cublas.available()) {
        fmt::print(" (cuBLAS on f16 weights, products alone: {:.0f} tokens/s)", kTokens / (prompt_cublas_us * 1e-6));
      }
      fmt::print("\n");
    }
  } catch (const engine::Error& e) {
    std::fprintf(stderr, "cuda-matmul-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
