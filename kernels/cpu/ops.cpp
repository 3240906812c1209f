#include "ops.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "engine/quantize.h"
#include "quant_dot.h"

namespace engine {
namespace {

constexpr int64_t kChunk = 256;  // values decoded at a time; a multiple of every block size

// YaRN ramp between interpolated and extrapolated frequencies (llama.cpp's rope_yarn_ramp).
float yarn_ramp(float low, float high, int i0) {
  const float y = (float(i0) / 2 - low) / std::max(0.001f, high - low);
  return 1.0f - std::clamp(y, 0.0f, 1.0f);
}

// Dimension at which a rotation completes n_ctx_orig / (2 pi beta) turns.
float yarn_corr_dim(int n_dims, uint32_t n_ctx_orig, float n_rot, float base) {
  return float(n_dims) * std::log(float(n_ctx_orig) / (n_rot * 2 * std::numbers::pi_v<float>)) /
         (2 * std::log(base));
}

}  // namespace

void matmul(GgmlType type, const void* w, int64_t K, int64_t N, const float* x, int64_t n_batch,
            float* y, ThreadPool& pool) {
  const uint64_t row_bytes = type_bytes(type, K);
  const DotKernels& kern = dot_kernels();
  const auto* rows = static_cast<const uint8_t*>(w);
  switch (dot_regime(type)) {
    case DotRegime::q8_activations: {
      // Quantize each activation row once; every weight row then uses integer dot products.
      std::vector<BlockQ8x32> xq(static_cast<size_t>(n_batch * K / 32));
      for (int64_t b = 0; b < n_batch; ++b) kern.quantize_q8(x + b * K, xq.data() + b * K / 32, K);
      const DotQ8 dot = kern.dot_q8[static_cast<uint32_t>(type)];
      const DotQ8x4 dot4 = kern.dot_q8_x4[static_cast<uint32_t>(type)];
      pool.parallel_for(N, [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
          const uint8_t* row = rows + n * row_bytes;
          int64_t b = 0;
          if (dot4 != nullptr) {
            for (; b + 4 <= n_batch; b += 4) {
              const BlockQ8x32* xs[4];
              float out[4];
              for (int r = 0; r < 4; ++r) xs[r] = xq.data() + (b + r) * K / 32;
              dot4(row, xs, K, out);
              for (int r = 0; r < 4; ++r) y[(b + r) * N + n] = out[r];
            }
          }
          for (; b < n_batch; ++b) y[b * N + n] = dot(row, xq.data() + b * K / 32, K);
        }
      });
      return;
    }
    case DotRegime::f32_activations: {
      if (n_batch == 1 || type == GgmlType::F32) {
        const DotF32 dot = kern.dot_f32[static_cast<uint32_t>(type)];
        pool.parallel_for(N, [&](int64_t n0, int64_t n1) {
          for (int64_t n = n0; n < n1; ++n) {
            for (int64_t b = 0; b < n_batch; ++b) y[b * N + n] = dot(rows + n * row_bytes, x + b * K, K);
          }
        });
        return;
      }
      // Batches: decode each weight row to float once and reuse it for every batch row.
      const DotF32 dot = kern.dot_f32[static_cast<uint32_t>(GgmlType::F32)];
      pool.parallel_for(N, [&](int64_t n0, int64_t n1) {
        std::vector<float> wf(K);
        for (int64_t n = n0; n < n1; ++n) {
          dequantize_row(type, rows + n * row_bytes, wf.data(), K);
          for (int64_t b = 0; b < n_batch; ++b) y[b * N + n] = dot(wf.data(), x + b * K, K);
        }
      });
      return;
    }
    case DotRegime::dequantize: break;
  }
  // Q2_K, Q3_K: decode a chunk of the row to float once and use it for every batch row.
  const DotF32 dot = kern.dot_f32[static_cast<uint32_t>(GgmlType::F32)];
  pool.parallel_for(N, [&](int64_t n0, int64_t n1) {
    float tmp[kChunk];
    std::vector<float> sums(n_batch);
    for (int64_t n = n0; n < n1; ++n) {
      std::fill(sums.begin(), sums.end(), 0.0f);
      for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
        const int64_t len = std::min(kChunk, K - k0);
        dequantize_row(type, rows + n * row_bytes + type_bytes(type, k0), tmp, len);
        for (int64_t b = 0; b < n_batch; ++b) sums[b] += dot(tmp, x + b * K + k0, len);
      }
      for (int64_t b = 0; b < n_batch; ++b) y[b * N + n] = sums[b];
    }
  });
}

void rms_norm(const float* x, const float* weight, float* out, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void rope(float* head, int64_t pos, const RopeParams& p) {
  const int half = p.n_rot / 2;
  float corr_low = 0, corr_high = 0;
  if (p.ext_factor != 0.0f) {
    corr_low = std::max(0.0f, std::floor(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_fast, p.freq_base)));
    corr_high = std::min(float(p.n_rot - 1),
                         std::ceil(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_slow, p.freq_base)));
  }
  for (int i = 0; i < half; ++i) {
    const int i0 = 2 * i;
    float theta_extrap = float(pos) * std::pow(p.freq_base, -float(i0) / float(p.n_rot));
    if (p.freq_factors != nullptr) theta_extrap /= p.freq_factors[i];
    float theta = p.freq_scale * theta_extrap;
    float mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
      const float mix = yarn_ramp(corr_low, corr_high, i0) * p.ext_factor;
      theta = theta * (1 - mix) + theta_extrap * mix;
      mscale *= 1.0f + 0.1f * std::log(1.0f / p.freq_scale);
    }
    const float c = std::cos(theta) * mscale, s = std::sin(theta) * mscale;
    const int a = p.neox ? i : i0;
    const int b = p.neox ? i + half : i0 + 1;
    const float x0 = head[a], x1 = head[b];
    head[a] = x0 * c - x1 * s;
    head[b] = x0 * s + x1 * c;
  }
}

void softmax(float* x, int64_t n) {
  const float mx = *std::max_element(x, x + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += double(x[i]);
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace engine
