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

// How one product of a group runs: the activation format its kernel reads, and the weight rows
// a unit of the pool's work takes.
enum class Path { q8x256_panels, q8x256_rows, q8_panels, q8_rows, f32_rows, f32_tiles };

struct ProductPlan {
  Path path;
  int64_t unit_rows;  // weight rows a unit of work (the last unit may take fewer)
  int64_t units;
};

ProductPlan plan_product(const DotKernels& kern, const MatmulProduct& p, int64_t n_batch) {
  const auto t = static_cast<uint32_t>(p.type);
  Path path = Path::f32_tiles;
  int64_t rows = 1;
  switch (dot_regime(p.type)) {
    case DotRegime::q8_activations:
      // Prompt batches: panels where the instruction set has them for the type (the 256-value
      // types' on the decode rows' 256-value activation blocks, the others' on 32-value ones); decode
      // steps, batches below the set's panel_min_batch and batches without panels: rows on
      // 256-value activation blocks where the type has them, else integer dot products row by row
      // on 32-value ones.
      if (kern.gemm_q8x256_panel[t] != nullptr && n_batch >= kern.panel_min_batch[t]) {
        path = Path::q8x256_panels;
        rows = kQ8x256PanelRows;
      } else if (kern.gemm_q8_panel[t] != nullptr && n_batch >= kern.panel_min_batch[t]) {
        path = Path::q8_panels;
        rows = kQ8PanelRows;
      } else {
        path = kern.dot_q8x256[t] != nullptr ? Path::q8x256_rows : Path::q8_rows;
      }
      break;
    case DotRegime::f32_activations:
      // Q8_0's prompt batches with AVX-512 VNNI: the 8-bit panels, at 8-bit activations as the
      // other quantized types' (2.1-2.4x the float outer products' speed). Decode steps keep the
      // float rows.
      if (kern.gemm_q8_panel[t] != nullptr && n_batch >= kern.panel_min_batch[t]) {
        path = Path::q8_panels;
        rows = kQ8PanelRows;
      } else if (n_batch == 1) {  // decode: one pass over the weights, nothing to reuse
        path = Path::f32_rows;
      } else {
        // Float tiles: each weight row decoded once per chunk of K for a block of batch rows.
        // Batches that the outer-product panels take go kF32PanelRows rows a unit; smaller
        // ones, through kF32TileRows-row tiles, a tile a unit, so that small matrices still keep
        // every thread busy.
        rows = n_batch >= kF32OuterMinCols ? kF32PanelRows : kF32TileRows;
      }
      break;
  }
  return {path, rows, (p.N + rows - 1) / rows};
}

// The group's input in each format its products read, each activation row quantized once.
struct Activations {
  const float* x;
  std::vector<BlockQ8x256> q8x256;  // 256-value blocks, 8 bits (K / 256 a row)
  std::vector<BlockQ8x32> q8;       // 32-value blocks (K / 32 a row)
};

// Weight rows [n0, n1) of product p (whole units but for the last) against every activation row.
void run_rows(const DotKernels& kern, const MatmulProduct& p, const ProductPlan& plan, const Activations& a,
              int64_t K, int64_t n_batch, int64_t n0, int64_t n1) {
  const auto t = static_cast<uint32_t>(p.type);
  const uint64_t row_bytes = type_bytes(p.type, K);
  const auto* rows = static_cast<const uint8_t*>(p.w);
  float* y = p.y;
  const int64_t N = p.N;
  switch (plan.path) {
    case Path::q8x256_panels:
      for (int64_t n = n0; n < n1; n += kQ8x256PanelRows) {
        const int n_rows = static_cast<int>(std::min<int64_t>(kQ8x256PanelRows, n1 - n));
        kern.gemm_q8x256_panel[t](rows + n * row_bytes, row_bytes, n_rows, a.q8x256.data(), K / 256,
                                  static_cast<int>(n_batch), K, y + n, N);
      }
      return;
    case Path::q8_panels:
      for (int64_t n = n0; n < n1; n += kQ8PanelRows) {
        const int n_rows = static_cast<int>(std::min<int64_t>(kQ8PanelRows, n1 - n));
        kern.gemm_q8_panel[t](rows + n * row_bytes, row_bytes, n_rows, a.q8.data(), K / 32,
                              static_cast<int>(n_batch), K, y + n, N);
      }
      return;
    case Path::q8x256_rows: {
      // Rows that take up to kRowCols activation rows at once where the type has them (a decode
      // step is their one-column case); the others one at a time.
      if (const DotQ8x256Cols cols = kern.dot_q8x256_cols[t]; cols != nullptr) {
        for (int64_t n = n0; n < n1; ++n) {
          for (int64_t b = 0; b < n_batch; b += kRowCols) {
            cols(rows + n * row_bytes, a.q8x256.data() + b * K / 256, K / 256,
                 static_cast<int>(std::min<int64_t>(kRowCols, n_batch - b)), K, y + b * N + n, N);
          }
        }
        return;
      }
      const DotQ8x256 dot = kern.dot_q8x256[t];
      for (int64_t n = n0; n < n1; ++n) {
        for (int64_t b = 0; b < n_batch; ++b) y[b * N + n] = dot(rows + n * row_bytes, a.q8x256.data() + b * K / 256, K);
      }
      return;
    }
    case Path::q8_rows: {
      const DotQ8 dot = kern.dot_q8[t];
      for (int64_t n = n0; n < n1; ++n) {
        for (int64_t b = 0; b < n_batch; ++b) y[b * N + n] = dot(rows + n * row_bytes, a.q8.data() + b * K / 32, K);
      }
      return;
    }
    case Path::f32_rows: {
      const DotF32 dot = kern.dot_f32[t];
      for (int64_t n = n0; n < n1; ++n) y[n] = dot(rows + n * row_bytes, a.x, K);
      return;
    }
    case Path::f32_tiles:
      for (int64_t n = n0; n < n1; n += plan.unit_rows) {
        const int n_rows = static_cast<int>(std::min<int64_t>(plan.unit_rows, n1 - n));
        kern.gemm_f32[t](rows + n * row_bytes, row_bytes, n_rows, a.x, K, static_cast<int>(n_batch), K, y + n, N);
      }
      return;
  }
}

}  // namespace

void matmul_group(std::span<const MatmulProduct> products, int64_t K, const float* x, int64_t n_batch,
                  ThreadPool& pool) {
  const DotKernels& kern = dot_kernels();
  std::vector<ProductPlan> plans;
  std::vector<int64_t> first_unit;  // products' units, one after another, in one loop
  int64_t units = 0;
  bool q8x256 = false, q8 = false;
  for (const MatmulProduct& p : products) {
    plans.push_back(plan_product(kern, p, n_batch));
    first_unit.push_back(units);
    units += plans.back().units;
    q8x256 |= plans.back().path == Path::q8x256_rows || plans.back().path == Path::q8x256_panels;
    q8 |= plans.back().path == Path::q8_panels || plans.back().path == Path::q8_rows;
  }
  Activations a{x, {}, {}};
  if (q8x256) a.q8x256.resize(static_cast<size_t>(n_batch * K / 256));
  if (q8) a.q8.resize(static_cast<size_t>(n_batch * K / 32));
  if (q8x256 || q8) {
    pool.for_each(n_batch, [&](int64_t b) {
      if (q8x256) kern.quantize_q8x256(x + b * K, a.q8x256.data() + b * K / 256, K);
      if (q8) kern.quantize_q8(x + b * K, a.q8.data() + b * K / 32, K);
    });
  }
  pool.parallel_for(units, [&](int64_t u0, int64_t u1) {
    for (size_t i = 0; i < products.size(); ++i) {
      const int64_t begin = std::max(u0, first_unit[i]) - first_unit[i];
      const int64_t end = std::min(u1, first_unit[i] + plans[i].units) - first_unit[i];
      if (begin >= end) continue;
      run_rows(kern, products[i], plans[i], a, K, n_batch, begin * plans[i].unit_rows,
               std::min(products[i].N, end * plans[i].unit_rows));
    }
  });
}

void matmul(GgmlType type, const void* w, int64_t K, int64_t N, const float* x, int64_t n_batch,
            float* y, ThreadPool& pool) {
  const MatmulProduct product{type, w, N, y};
  matmul_group({&product, 1}, K, x, n_batch, pool);
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

double exp_shifted(const void* values, size_t stride_bytes, int64_t n, double shift, double divisor, double* out) {
  return dot_kernels().exp_shifted(values, stride_bytes, n, shift, divisor, out);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) { dot_kernels().swiglu(gate, up, out, n); }

}  // namespace engine
