#include "ops.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "engine/quantize.h"
#include "quant_dot.h"
#include "rope_math.h"

namespace engine {
namespace {

// Dimension at which a rotation completes n_ctx_orig / (2 pi beta) turns.
float yarn_corr_dim(int n_dims, uint32_t n_ctx_orig, float n_rot, float base) {
  return float(n_dims) * std::log(float(n_ctx_orig) / (n_rot * 2 * std::numbers::pi_v<float>)) /
         (2 * std::log(base));
}

// Decode rows of the K-quants: each activation row quantized once to 256-value blocks, then
// weight rows split across the pool, each against every activation row.
void matmul_q8x256_rows(DotQ8x256 dot, const uint8_t* rows, uint64_t row_bytes, int64_t K, int64_t N,
                        const float* x, int64_t n_batch, float* y, ThreadPool& pool) {
  const DotKernels& kern = dot_kernels();
  std::vector<BlockQ8x256> xq(static_cast<size_t>(n_batch * K / 256));
  pool.for_each(n_batch, [&](int64_t b) { kern.quantize_q8x256(x + b * K, xq.data() + b * K / 256, K); });
  pool.parallel_for(N, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t b = 0; b < n_batch; ++b) y[b * N + n] = dot(rows + n * row_bytes, xq.data() + b * K / 256, K);
    }
  });
}

}  // namespace

void matmul(GgmlType type, const void* w, int64_t K, int64_t N, const float* x, int64_t n_batch,
            float* y, ThreadPool& pool) {
  const uint64_t row_bytes = type_bytes(type, K);
  const DotKernels& kern = dot_kernels();
  const auto* rows = static_cast<const uint8_t*>(w);
  const auto t = static_cast<uint32_t>(type);
  switch (dot_regime(type)) {
    case DotRegime::q16_activations: {
      // Prompt batches go through panels of kQ16PanelRows weight rows against 12-bit activations
      // where the instruction set has them; decode steps (and every batch elsewhere) through rows
      // against 8-bit activations, for a memory-bound pass.
      const GemmQ16 panel = kern.gemm_q16_panel[t];
      if (panel == nullptr || n_batch < kPanelMinBatch) {
        matmul_q8x256_rows(kern.dot_q8x256[t], rows, row_bytes, K, N, x, n_batch, y, pool);
        return;
      }
      const int64_t blocks = K / 256;
      std::vector<BlockQ16x256> xq(static_cast<size_t>(n_batch * blocks));
      pool.for_each(n_batch, [&](int64_t b) { kern.quantize_q16(x + b * K, xq.data() + b * blocks, K); });
      pool.parallel_for((N + kQ16PanelRows - 1) / kQ16PanelRows, [&](int64_t p0, int64_t p1) {
        for (int64_t n = p0 * kQ16PanelRows; n < std::min(N, p1 * kQ16PanelRows); n += kQ16PanelRows) {
          const int n_rows = static_cast<int>(std::min<int64_t>(kQ16PanelRows, N - n));
          panel(rows + n * row_bytes, row_bytes, n_rows, xq.data(), blocks, static_cast<int>(n_batch), K, y + n, N);
        }
      });
      return;
    }
    case DotRegime::q8_activations: {
      // Prompt batches go through panels where the type has them; decode rows of the K-quants
      // through 256-value activation blocks; everything else through integer dot products row by
      // row. Each activation row is quantized once.
      const GemmQ8 panel = kern.gemm_q8_panel[t];
      const bool panels = panel != nullptr && n_batch >= kPanelMinBatch;
      if (const DotQ8x256 dot = kern.dot_q8x256[t]; dot != nullptr && !panels) {
        matmul_q8x256_rows(dot, rows, row_bytes, K, N, x, n_batch, y, pool);
        return;
      }
      const int64_t blocks = K / 32;
      std::vector<BlockQ8x32> xq(static_cast<size_t>(n_batch * blocks));
      pool.for_each(n_batch, [&](int64_t b) { kern.quantize_q8(x + b * K, xq.data() + b * blocks, K); });
      if (panels) {
        pool.parallel_for((N + kQ8PanelRows - 1) / kQ8PanelRows, [&](int64_t p0, int64_t p1) {
          for (int64_t n = p0 * kQ8PanelRows; n < std::min(N, p1 * kQ8PanelRows); n += kQ8PanelRows) {
            const int n_rows = static_cast<int>(std::min<int64_t>(kQ8PanelRows, N - n));
            panel(rows + n * row_bytes, row_bytes, n_rows, xq.data(), blocks, static_cast<int>(n_batch), K, y + n, N);
          }
        });
        return;
      }
      const DotQ8 dot = kern.dot_q8[t];
      pool.parallel_for(N, [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
          for (int64_t b = 0; b < n_batch; ++b) y[b * N + n] = dot(rows + n * row_bytes, xq.data() + b * blocks, K);
        }
      });
      return;
    }
    case DotRegime::f32_activations:
      if (n_batch == 1) {  // decode: one pass over the weights, nothing to reuse
        const DotF32 dot = kern.dot_f32[t];
        pool.parallel_for(N, [&](int64_t n0, int64_t n1) {
          for (int64_t n = n0; n < n1; ++n) y[n] = dot(rows + n * row_bytes, x, K);
        });
        return;
      }
      break;
  }
  // Float tiles: panels of weight rows, each decoded once per chunk of K for a block of batch
  // rows. Batches that the outer-product panels take are handed out kF32PanelRows rows at a time;
  // smaller ones, which go through kF32TileRows-row tiles, a tile at a time, so that small
  // matrices still keep every thread busy.
  const GemmF32 gemm = kern.gemm_f32[t];
  const int64_t step = n_batch >= kF32OuterMinCols ? kF32PanelRows : kF32TileRows;
  pool.parallel_for((N + step - 1) / step, [&](int64_t t0, int64_t t1) {
    for (int64_t n = t0 * step; n < std::min(N, t1 * step); n += step) {
      const int n_rows = static_cast<int>(std::min<int64_t>(step, N - n));
      gemm(rows + n * row_bytes, row_bytes, n_rows, x, K, static_cast<int>(n_batch), K, y + n, N);
    }
  });
}

void rms_norm(const float* x, const float* weight, float* out, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void rope_yarn_corr(const RopeParams& p, float* low, float* high) {
  *low = *high = 0;
  if (p.ext_factor == 0.0f) return;
  *low = std::max(0.0f, std::floor(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_fast, p.freq_base)));
  *high = std::min(float(p.n_rot - 1), std::ceil(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_slow, p.freq_base)));
}

void rope_table(int64_t pos, const RopeParams& p, float* cos_out, float* sin_out) {
  float corr_low, corr_high;
  rope_yarn_corr(p, &corr_low, &corr_high);
  for (int i = 0; i < p.n_rot / 2; ++i) rope_rotation(p, pos, i, corr_low, corr_high, &cos_out[i], &sin_out[i]);
}

void rope_apply(float* head, const float* cos, const float* sin, const RopeParams& p) {
  const int half = p.n_rot / 2;
  for (int i = 0; i < half; ++i) {
    const int a = p.neox ? i : 2 * i;
    const int b = p.neox ? i + half : 2 * i + 1;
    const float x0 = head[a], x1 = head[b];
    head[a] = x0 * cos[i] - x1 * sin[i];
    head[b] = x0 * sin[i] + x1 * cos[i];
  }
}

void rope(float* head, int64_t pos, const RopeParams& p) {
  std::vector<float> cos(size_t(p.n_rot / 2)), sin(size_t(p.n_rot / 2));
  rope_table(pos, p, cos.data(), sin.data());
  rope_apply(head, cos.data(), sin.data(), p);
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

double exp_shifted(const void* values, size_t stride_bytes, int64_t n, double shift, double divisor, double* out) {
  return dot_kernels().exp_shifted(values, stride_bytes, n, shift, divisor, out);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) { dot_kernels().swiglu(gate, up, out, n); }

}  // namespace engine
