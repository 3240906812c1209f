// CPU kernels against double-precision scalar references on fresh random data, outputs poisoned
// with NaN first. The weights' reference values come from dequantize_row, itself checked against
// the gguf package (tests/python/test_quant_vs_gguf.py).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <numbers>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/quantize.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant_dot.h"
#include "kernel_sets.h"
#include "random_blocks.h"

namespace engine {
namespace {

double rel_error(const std::vector<float>& got, const std::vector<double>& want) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = double(got[i]) - want[i];
    err += d * d;
    ref += want[i] * want[i];
  }
  return std::sqrt(err / ref);
}

// Error bounds per regime: f32 accumulation for float activations; quantized activations add
// their quantization error, uniform within half a step of 1/127 of the block's largest value (8
// bits, per 32 or 256 values). On normal data that predicts a relative error of about 5e-3;
// measured over 300 products: mean 5.3e-3 (max 9.6e-3). The bound is about four times the mean.
double bound(DotRegime regime) {
  switch (regime) {
    case DotRegime::f32_activations: return 1e-5;
    case DotRegime::q8_activations: return 2e-2;
  }
  return 0;
}
double bound(GgmlType t) { return bound(dot_regime(t)); }

// What matmul does with `type` at batch B (ops.cpp's plan_product): Q8_0's prompt batches take
// 8-bit activations where it has 8-bit panels (AVX-512 VNNI); every other type keeps its regime.
double matmul_bound(GgmlType type, int64_t B) {
  const auto t = static_cast<uint32_t>(type);
  const DotKernels& kern = dot_kernels();
  if (B >= kern.panel_min_batch[t] && kern.gemm_q8_panel[t] != nullptr) return bound(DotRegime::q8_activations);
  return bound(type);
}

// sum_k w[k] x[k] in double, and sum_k |w[k] x[k]|, which bounds the accumulated rounding.
struct DotReference {
  double value = 0, scale = 0;
};
DotReference dot_reference(const float* w, const float* x, int64_t K) {
  DotReference d;
  for (int64_t k = 0; k < K; ++k) {
    d.value += double(w[k]) * double(x[k]);
    d.scale += std::fabs(double(w[k]) * double(x[k]));
  }
  return d;
}

using test::every_kernel_set;

TEST(CpuOps, MatmulEveryTypeAgainstDoubleReference) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  ThreadPool pool(2);
  const int64_t N = 37;
  for (const TypeTraits& tr : all_type_traits()) {
   // Rows of 32-value blocks also end in a partial 256-value panel step (Q4_0..Q5_1 panels).
   for (const int64_t K : {int64_t(512), tr.block_size == 256 ? int64_t(512) : int64_t(512 + 96)}) {
   for (const int64_t B : {1, 3, 7, 17}) {  // 17: the float types' outer-product panels
    const auto w = test::random_blocks(tr.type, K * N, rng);
    std::vector<float> x(B * K), wf(K);
    for (auto& v : x) v = normal(rng);
    // The error is measured against the size a product of these rows has when they point in
    // unrelated directions, |w_n| |x_b| / sqrt(K), not against the product itself: a random row
    // whose block offsets (dmin * min) nearly cancel its scaled codes makes a small product whose
    // activation rounding is as large as any other's (it failed the 8-bit bound in about 1% of
    // runs, at a median error of a third of it).
    std::vector<double> want(B * N, 0.0), typical(B * N, 0.0);
    for (int64_t n = 0; n < N; ++n) {
      dequantize_row(tr.type, w.data() + n * type_bytes(tr.type, K), wf.data(), K);
      double w2 = 0;
      for (int64_t k = 0; k < K; ++k) w2 += double(wf[k]) * double(wf[k]);
      for (int64_t b = 0; b < B; ++b) {
        double x2 = 0;
        for (int64_t k = 0; k < K; ++k) {
          want[b * N + n] += double(wf[k]) * double(x[b * K + k]);
          x2 += double(x[b * K + k]) * double(x[b * K + k]);
        }
        typical[b * N + n] = std::sqrt(w2 * x2 / double(K));
      }
    }
    std::vector<float> y(B * N, std::nanf(""));
    matmul(tr.type, w.data(), K, N, x.data(), B, y.data(), pool);
    double err = 0, size = 0;
    for (int64_t i = 0; i < B * N; ++i) {
      ASSERT_TRUE(std::isfinite(y[i])) << tr.name << " batch " << B << " output " << i;
      err += (double(y[i]) - want[i]) * (double(y[i]) - want[i]);
      size += typical[i] * typical[i];
    }
    EXPECT_LE(std::sqrt(err / size), matmul_bound(tr.type, B)) << tr.name << " K " << K << " batch " << B;
   }
   }
  }
}

// A group of products over one input (q, k and v; gate and up) shares the input's quantization
// and one pool loop, whose chunks cross from one product into the next: each output must be what
// matmul gives for its product alone (itself checked against the double reference above).
TEST(CpuOps, MatmulGroupGivesEveryProductItsOwnBits) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t K = 512;
  // Every activation format and path: 256-value panels and rows (Q4_K, Q6_K, Q2_K), 32-value
  // panels and rows (Q4_0), float rows and tiles (F16, Q8_0); sizes that end in a partial panel or
  // tile, and one type twice.
  const std::vector<std::pair<GgmlType, int64_t>> shapes = {
      {GgmlType::Q4_K, 37}, {GgmlType::Q6_K, 16}, {GgmlType::F16, 45}, {GgmlType::Q4_0, 9},
      {GgmlType::Q8_0, 70}, {GgmlType::Q2_K, 33}, {GgmlType::Q4_K, 5}};
  for (const int threads : {1, 3}) {
    ThreadPool pool(threads);
    for (const int64_t B : {1, 3, 17}) {
      std::vector<float> x(B * K);
      for (auto& v : x) v = normal(rng);
      std::vector<std::vector<uint8_t>> weights;
      std::vector<std::vector<float>> alone, grouped;
      std::vector<MatmulProduct> products;
      for (const auto& [type, N] : shapes) {
        weights.push_back(test::random_blocks(type, K * N, rng));
        alone.emplace_back(B * N, std::nanf(""));
        grouped.emplace_back(B * N, std::nanf(""));
        matmul(type, weights.back().data(), K, N, x.data(), B, alone.back().data(), pool);
      }
      for (size_t i = 0; i < shapes.size(); ++i) {
        products.push_back({shapes[i].first, weights[i].data(), shapes[i].second, grouped[i].data()});
      }
      matmul_group(products, K, x.data(), B, pool);
      for (size_t i = 0; i < shapes.size(); ++i) {
        for (int64_t j = 0; j < B * shapes[i].second; ++j) {
          ASSERT_TRUE(std::isfinite(grouped[i][j])) << "product " << i << " batch " << B << " output " << j;
          ASSERT_EQ(std::bit_cast<uint32_t>(grouped[i][j]), std::bit_cast<uint32_t>(alone[i][j]))
              << "product " << i << " (" << traits(shapes[i].first).name << ") batch " << B << " output " << j
              << " threads " << threads;
        }
      }
    }
  }
}

// Batches smaller than a type's panel_min_batch take the decode rows (quant_dot.h; four columns at
// a time where the type has such rows): each of their outputs must be the bits that a decode step
// of that activation row alone gives. The panels agree with the rows within 1e-5, not bit for bit,
// so a dispatch that sent such a batch to them fails this too.
TEST(CpuOps, BatchesBelowThePanelSizeGiveTheDecodeStepsBits) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  ThreadPool pool(2);
  const int64_t K = 512, N = 19;
  int checked = 0;
  for (const TypeTraits& tr : all_type_traits()) {
    const int64_t B = dot_kernels().panel_min_batch[static_cast<uint32_t>(tr.type)] - 1;
    if (dot_regime(tr.type) != DotRegime::q8_activations || B < 2) continue;
    const auto w = test::random_blocks(tr.type, K * N, rng);
    std::vector<float> x(B * K), batch(B * N, std::nanf("")), step(N);
    for (auto& v : x) v = normal(rng);
    matmul(tr.type, w.data(), K, N, x.data(), B, batch.data(), pool);
    for (int64_t b = 0; b < B; ++b) {
      std::fill(step.begin(), step.end(), std::nanf(""));
      matmul(tr.type, w.data(), K, N, x.data() + b * K, 1, step.data(), pool);
      for (int64_t n = 0; n < N; ++n) {
        ASSERT_TRUE(std::isfinite(step[n])) << tr.name << " row " << b << " output " << n;
        ASSERT_EQ(std::bit_cast<uint32_t>(batch[b * N + n]), std::bit_cast<uint32_t>(step[n]))
            << tr.name << " batch " << B << " row " << b << " output " << n;
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 14);  // the K-quants, the 256-value i-quants but IQ3_S, the ternary types
}

TEST(CpuOps, EveryInstructionSetAgreesPerType) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t K = 1024;
  std::vector<float> x(K), wf(K);
  for (auto& v : x) v = normal(rng);
  std::vector<BlockQ8x32> xq(K / 32);
  std::vector<BlockQ8x256> x256(K / 256);
  for (const DotKernels* kern : every_kernel_set()) {
    kern->quantize_q8(x.data(), xq.data(), K);
    kern->quantize_q8x256(x.data(), x256.data(), K);
    for (const TypeTraits& tr : all_type_traits()) {
      const auto t = static_cast<uint32_t>(tr.type);
      const auto w = test::random_blocks(tr.type, K, rng);
      dequantize_row(tr.type, w.data(), wf.data(), K);
      double want = 0, scale = 0;
      for (int64_t k = 0; k < K; ++k) {
        want += double(wf[k]) * double(x[k]);
        scale += std::fabs(double(wf[k]) * double(x[k]));
      }
      std::vector<std::pair<const char*, float>> got;
      if (kern->dot_q8[t] != nullptr) got.emplace_back("q8 rows", kern->dot_q8[t](w.data(), xq.data(), K));
      if (kern->dot_q8x256[t] != nullptr) got.emplace_back("q8x256 rows", kern->dot_q8x256[t](w.data(), x256.data(), K));
      if (kern->dot_f32[t] != nullptr) got.emplace_back("f32 rows", kern->dot_f32[t](w.data(), x.data(), K));
      // Types without row kernels have tiles (TilesAndPanelsOfEveryShapeAgainstDoubleReference).
      for (const auto& [kind, value] : got) {
        // Relative to the sum of |products|, which bounds the accumulated rounding.
        const double limit = std::string(kind) == "q8x256 rows" ? bound(DotRegime::q8_activations) : bound(tr.type);
        EXPECT_LE(std::fabs(value - want) / scale, limit) << kern->isa << " " << tr.name << " " << kind;
      }
    }
  }
}

// The column rows (dot_q8x256_cols): a weight row against 1 .. kRowCols activation rows at once
// must give column c the bits that the type's decode row gives that activation row alone, read
// x_stride blocks apart and written out_stride floats apart, nothing between those outputs
// touched. (The decode row is itself checked against the double reference above.)
TEST(CpuOps, ColumnRowsGiveEachColumnTheDecodeRowsBits) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t K = 768, x_stride = K / 256 + 1, out_stride = 3;
  std::vector<float> x(kRowCols * x_stride * 256);
  for (auto& v : x) v = normal(rng);
  for (const DotKernels* kern : every_kernel_set()) {
    std::vector<BlockQ8x256> xq(kRowCols * x_stride);
    kern->quantize_q8x256(x.data(), xq.data(), kRowCols * x_stride * 256);
    int checked = 0;
    for (const TypeTraits& tr : all_type_traits()) {
      const auto t = static_cast<uint32_t>(tr.type);
      if (kern->dot_q8x256_cols[t] == nullptr) continue;
      ASSERT_NE(kern->dot_q8x256[t], nullptr) << kern->isa << " " << tr.name;
      const auto w = test::random_blocks(tr.type, K, rng);
      for (int n_cols = 1; n_cols <= kRowCols; ++n_cols) {
        std::vector<float> out(kRowCols * out_stride, std::nanf(""));
        kern->dot_q8x256_cols[t](w.data(), xq.data(), x_stride, n_cols, K, out.data(), out_stride);
        for (int i = 0; i < kRowCols * out_stride; ++i) {
          if (i % out_stride != 0 || i / out_stride >= n_cols) {
            EXPECT_TRUE(std::isnan(out[i])) << kern->isa << " " << tr.name << " wrote slot " << i;
            continue;
          }
          const float alone = kern->dot_q8x256[t](w.data(), xq.data() + (i / out_stride) * x_stride, K);
          ASSERT_TRUE(std::isfinite(alone)) << kern->isa << " " << tr.name;
          EXPECT_EQ(std::bit_cast<uint32_t>(out[i]), std::bit_cast<uint32_t>(alone))
              << kern->isa << " " << tr.name << " column " << i / out_stride << " of " << n_cols;
        }
      }
      ++checked;
    }
    // The vectorised sets: the K-quants, the grid i-quants and the ternary types.
    if (std::string(kern->isa) != "generic") {
      EXPECT_GE(checked, 13) << kern->isa;
    }
  }
}

// Each value of a 256-value activation block within half a step of its input, within the block's
// range, and its 16-value (and 8-value) sums. Inputs with an outlier, as real hidden states have.
template <typename Block>
void expect_rounded(const std::vector<float>& x, const std::vector<Block>& xq, int max_q, const char* isa) {
  for (size_t i = 0; i < x.size(); ++i) {
    const Block& b = xq[i / 256];
    ASSERT_LE(std::abs(b.q[i % 256]), max_q) << isa;
    EXPECT_LE(std::fabs(b.d * b.q[i % 256] - x[i]), 0.5001f * b.d) << isa << " value " << i;
  }
  for (const Block& b : xq) {
    if constexpr (requires { b.sums; }) {
      for (int j = 0; j < 16; ++j) {
        int sum = 0;
        for (int i = 0; i < 16; ++i) sum += b.q[16 * j + i];
        EXPECT_EQ(b.sums[j], sum) << isa << " group " << j;
      }
    }
    if constexpr (requires { b.sums8; }) {
      for (int j = 0; j < 32; ++j) {
        int sum = 0;
        for (int i = 0; i < 8; ++i) sum += b.q[8 * j + i];
        EXPECT_EQ(b.sums8[j], sum) << isa << " entry " << j;
      }
    }
  }
}

TEST(CpuOps, ActivationBlocksStayInRange) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t K = 512;
  std::vector<float> x(K);
  for (auto& v : x) v = normal(rng);
  x[100] = 40.0f;
  x[300] = -40.0f;
  for (const DotKernels* kern : every_kernel_set()) {
    std::vector<BlockQ8x256> x8(K / 256);
    kern->quantize_q8x256(x.data(), x8.data(), K);
    expect_rounded(x, x8, 127, kern->isa);
  }
}

// Every float tile and panel shape of every kernel set against the double-precision reference,
// with the output poisoned and its stride wider than the tile; a (row, column) must come out the
// same whatever shape computed it (to float rounding), so a prompt's result does not depend on how
// its batch was cut. (The integer panels: the Q8 and Q8x256 tests below.)
TEST(CpuOps, FloatTilesAndPanelsOfEveryShapeAgainstDoubleReference) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  // AVX-512's float outer products take 12 + 7 columns (AVX2's 6 + 6 + 6 + 1).
  const int kRows = kF32PanelRows, kCols = 19;
  static_assert(kCols >= kF32OuterMinCols);
  for (const DotKernels* kern : every_kernel_set()) {
    for (const TypeTraits& tr : all_type_traits()) {
      const auto t = static_cast<uint32_t>(tr.type);
      if (kern->gemm_f32[t] == nullptr) continue;
      // Three chunks of 256 values, plus a ragged tail where the type allows one.
      const int64_t K = tr.block_size == 1 ? 3 * 256 + 21 : 3 * 256;
      const uint64_t row_bytes = type_bytes(tr.type, K);
      const auto w = test::random_blocks(tr.type, K * kRows, rng);
      std::vector<float> x(kCols * K), wf(kRows * K);
      for (auto& v : x) v = normal(rng);
      for (int r = 0; r < kRows; ++r) dequantize_row(tr.type, w.data() + r * row_bytes, wf.data() + r * K, K);
      const int64_t ldy = kRows + 3;
      auto run = [&](int n_rows, int n_cols, int r0, int c0, std::vector<float>& y) {
        kern->gemm_f32[t](w.data() + r0 * row_bytes, row_bytes, n_rows, x.data() + c0 * K, K, n_cols, K,
                          y.data() + c0 * ldy + r0, ldy);
      };
      std::vector<float> single(kCols * ldy, std::nanf(""));
      for (int r = 0; r < kRows; ++r) {
        for (int c = 0; c < kCols; ++c) run(1, 1, r, c, single);
      }
      struct Shape {
        int rows, cols;
      };
      std::vector<Shape> shapes;
      for (int n_rows = 1; n_rows <= kF32TileRows; ++n_rows) {
        for (int n_cols = 1; n_cols <= kF32TileCols; ++n_cols) shapes.push_back({n_rows, n_cols});
        shapes.push_back({n_rows, kCols});  // float tiles take any column count
      }
      // Whole and partial panels of rows, from the outer products' batch size on.
      for (const int n_rows : {7, 16, 17, kF32PanelRows}) {
        for (const int n_cols : {kF32OuterMinCols, kCols}) shapes.push_back({n_rows, n_cols});
      }
      for (const Shape& sh : shapes) {
        std::vector<float> y(kCols * ldy, std::nanf(""));
        run(sh.rows, sh.cols, 0, 0, y);
        for (int c = 0; c < kCols; ++c) {
          for (int r = 0; r < ldy; ++r) {
            const float got = y[c * ldy + r];
            const std::string where = std::string(kern->isa) + " " + std::string(tr.name) +
                                      " tile " + std::to_string(sh.rows) + "x" +
                                      std::to_string(sh.cols) + " at " + std::to_string(r) + "," + std::to_string(c);
            if (r >= sh.rows || c >= sh.cols) {
              EXPECT_TRUE(std::isnan(got)) << where << ": written outside the tile";
              continue;
            }
            const auto [want, scale] = dot_reference(wf.data() + r * K, x.data() + c * K, K);
            EXPECT_LE(std::fabs(got - want) / scale, bound(tr.type)) << where;
            // Float sums whose tail the compiler may contract differently per shape.
            EXPECT_LE(std::fabs(got - single[c * ldy + r]) / scale, 1e-6) << where << ": differs from the 1x1 tile";
          }
        }
      }
    }
  }
}

// Q4_0..Q5_1 and the 32-value-scale i-quants' panels (8-bit activations) against the reference and against the
// row-by-row dot_q8 on the same activation blocks: the same integer products, summed in another
// float order. Rows of 32-value blocks end in a partial super-block (three blocks of eight).
TEST(CpuOps, Q8PanelsAgainstDoubleReferenceAndRowKernels) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int kRows = kQ8PanelRows, kCols = 19;
  const int64_t ldy = kRows + 3;
  for (const DotKernels* kern : every_kernel_set()) {
    for (const TypeTraits& tr : all_type_traits()) {
      const auto t = static_cast<uint32_t>(tr.type);
      if (kern->gemm_q8_panel[t] == nullptr) continue;
      const int64_t K = tr.block_size == 256 ? 3 * 256 : 3 * 256 + 96;
      const uint64_t row_bytes = type_bytes(tr.type, K);
      const auto w = test::random_blocks(tr.type, K * kRows, rng);
      std::vector<float> x(kCols * K), wf(kRows * K);
      for (auto& v : x) v = normal(rng);
      for (int r = 0; r < kRows; ++r) dequantize_row(tr.type, w.data() + r * row_bytes, wf.data() + r * K, K);
      std::vector<BlockQ8x32> xq(kCols * K / 32);
      kern->quantize_q8(x.data(), xq.data(), kCols * K);
      for (const int n_rows : {1, 7, kRows}) {
        for (const int n_cols : {1, 8, kCols}) {
          std::vector<float> y(kCols * ldy, std::nanf(""));
          kern->gemm_q8_panel[t](w.data(), row_bytes, n_rows, xq.data(), K / 32, n_cols, K, y.data(), ldy);
          for (int c = 0; c < kCols; ++c) {
            for (int r = 0; r < ldy; ++r) {
              const float got = y[c * ldy + r];
              const std::string where = std::string(kern->isa) + " " + std::string(tr.name) + " panel " +
                                        std::to_string(n_rows) + "x" + std::to_string(n_cols) + " at " +
                                        std::to_string(r) + "," + std::to_string(c);
              if (r >= n_rows || c >= n_cols) {
                EXPECT_TRUE(std::isnan(got)) << where << ": written outside the panel";
                continue;
              }
              const auto [want, scale] = dot_reference(wf.data() + r * K, x.data() + c * K, K);
              EXPECT_LE(std::fabs(got - want) / scale, bound(DotRegime::q8_activations)) << where;
              if (kern->dot_q8[t] != nullptr) {
                const float row = kern->dot_q8[t](w.data() + r * row_bytes, xq.data() + c * K / 32, K);
                EXPECT_LE(std::fabs(got - row) / scale, 1e-5) << where << ": differs from dot_q8";
              } else {  // Q8_0, whose rows take float activations: the same 8-bit activations in double
                double same = 0;
                for (int64_t k = 0; k < K; ++k) {
                  const BlockQ8x32& a = xq[(c * K + k) / 32];
                  same += double(wf[r * K + k]) * double(a.d) * double(a.q[k % 32]);
                }
                EXPECT_LE(std::fabs(got - same) / scale, 1e-5) << where << ": differs from its 8-bit activations";
              }
            }
          }
        }
      }
    }
  }
}

// The panels on 256-value 8-bit activations (every 256-value type, AVX2 and AVX-512 VNNI): every
// shape against the double reference, with the output poisoned and its stride wider than the panel; bit for bit what the
// 1x1 panel gives (integer sums, then the same float steps), and within float rounding of the
// decode rows (dot_q8x256) on the same activation blocks, or where a type has none, of those
// activations in double.
TEST(CpuOps, Q8x256PanelsAgainstDoubleReferenceAndRowKernels) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int kRows = kQ8x256PanelRows, kCols = 19;  // 8 + 8 + 3 columns
  const int64_t ldy = kRows + 3, K = 3 * 256;
  int panels = 0;
  for (const DotKernels* kern : every_kernel_set()) {
    for (const TypeTraits& tr : all_type_traits()) {
      const auto t = static_cast<uint32_t>(tr.type);
      if (kern->gemm_q8x256_panel[t] == nullptr) continue;
      ++panels;
      const uint64_t row_bytes = type_bytes(tr.type, K);
      const auto w = test::random_blocks(tr.type, K * kRows, rng);
      std::vector<float> x(kCols * K), wf(kRows * K);
      for (auto& v : x) v = normal(rng);
      for (int r = 0; r < kRows; ++r) dequantize_row(tr.type, w.data() + r * row_bytes, wf.data() + r * K, K);
      std::vector<BlockQ8x256> xq(kCols * K / 256);
      kern->quantize_q8x256(x.data(), xq.data(), kCols * K);
      auto run = [&](int n_rows, int n_cols, int r0, int c0, std::vector<float>& y) {
        kern->gemm_q8x256_panel[t](w.data() + r0 * row_bytes, row_bytes, n_rows, xq.data() + c0 * K / 256, K / 256,
                                   n_cols, K, y.data() + c0 * ldy + r0, ldy);
      };
      std::vector<float> single(kCols * ldy, std::nanf(""));
      for (int r = 0; r < kRows; ++r) {
        for (int c = 0; c < kCols; ++c) run(1, 1, r, c, single);
      }
      for (const int n_rows : {1, 7, 11, kRows}) {  // 11: AVX2's second 8-row half partial
        for (const int n_cols : {1, 8, kCols}) {
          std::vector<float> y(kCols * ldy, std::nanf(""));
          run(n_rows, n_cols, 0, 0, y);
          for (int c = 0; c < kCols; ++c) {
            for (int r = 0; r < ldy; ++r) {
              const float got = y[c * ldy + r];
              const std::string where = std::string(kern->isa) + " " + std::string(tr.name) + " panel " +
                                        std::to_string(n_rows) + "x" + std::to_string(n_cols) + " at " +
                                        std::to_string(r) + "," + std::to_string(c);
              if (r >= n_rows || c >= n_cols) {
                EXPECT_TRUE(std::isnan(got)) << where << ": written outside the panel";
                continue;
              }
              const auto [want, scale] = dot_reference(wf.data() + r * K, x.data() + c * K, K);
              EXPECT_LE(std::fabs(got - want) / scale, bound(DotRegime::q8_activations)) << where;
              EXPECT_EQ(got, single[c * ldy + r]) << where << ": differs from the 1x1 panel";
              if (kern->dot_q8x256[t] != nullptr) {
                const float row = kern->dot_q8x256[t](w.data() + r * row_bytes, xq.data() + c * K / 256, K);
                EXPECT_LE(std::fabs(got - row) / scale, 1e-5) << where << ": differs from dot_q8x256";
              } else {  // IQ4_XS, IQ3_S: decode rows on 32-value blocks; the same activations in double
                double same = 0;
                for (int64_t k = 0; k < K; ++k) {
                  const BlockQ8x256& a = xq[(c * K + k) / 256];
                  same += double(wf[r * K + k]) * double(a.d) * double(a.q[k % 256]);
                }
                EXPECT_LE(std::fabs(got - same) / scale, 1e-5) << where << ": differs from its 8-bit activations";
              }
            }
          }
        }
      }
    }
  }
  if (panels == 0) GTEST_SKIP() << "no instruction set with 256-value 8-bit panels on this CPU (AVX2 or AVX-512 VNNI)";
}

// The AVX2 and AVX-512 panels are the same integer sums and float steps: the same bits for the
// same activation blocks.
TEST(CpuOps, Q8x256PanelsAgreeAcrossInstructionSets) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int kRows = kQ8x256PanelRows, kCols = 5;
  const int64_t K = 4 * 256;
  std::vector<float> x(kCols * K);
  for (auto& v : x) v = normal(rng);
  std::vector<BlockQ8x256> xq(kCols * K / 256);
  dot_kernels_generic().quantize_q8x256(x.data(), xq.data(), kCols * K);
  int compared = 0;
  for (const TypeTraits& tr : all_type_traits()) {
    const uint64_t row_bytes = type_bytes(tr.type, K);
    const auto w = test::random_blocks(tr.type, K * kRows, rng);
    std::vector<std::pair<const char*, std::vector<float>>> results;
    for (const DotKernels* kern : every_kernel_set()) {
      const GemmQ8x256 panel = kern->gemm_q8x256_panel[uint32_t(tr.type)];
      if (panel == nullptr) continue;
      std::vector<float> y(kCols * kRows, std::nanf(""));
      panel(w.data(), row_bytes, kRows, xq.data(), K / 256, kCols, K, y.data(), kRows);
      results.emplace_back(kern->isa, y);
    }
    for (size_t i = 1; i < results.size(); ++i, ++compared) {
      EXPECT_EQ(results[i].second, results[0].second) << tr.name << ": " << results[i].first << " against " << results[0].first;
    }
  }
  if (compared == 0) GTEST_SKIP() << "fewer than two instruction sets with 256-value 8-bit panels on this CPU";
}

// The 8-bit panels' integer sums stay exact at the largest codes and activations: every byte of
// the weights at 0xFF (the largest codes, and for Q6_K the largest scale magnitude) with the fp16
// fields at 0.01, against activations all +1 or all -1 (every q at +-127, every 16-value sum at
// +-2032), which reaches the limits of the AVX2 panels' int16 sums (maddubs steps summed before
// widening, as many as each type's codes allow) and of every int32 sum; the panel must give the
// double reference of the same activation blocks.
template <typename Act>
void expect_exact_at_the_largest(const DotKernels& kern, const TypeTraits& tr,
                                 void (*quantize)(const float*, Act*, int64_t),
                                 void (*panel)(const void*, uint64_t, int, const Act*, int64_t, int, int64_t, float*, int64_t)) {
  constexpr int kRows = 16, kCols = 5, kValues = sizeof(Act::q);
  const int64_t K = 2 * 256;
  const uint64_t row_bytes = type_bytes(tr.type, K);
  std::vector<uint8_t> w(row_bytes * kRows, 0xFF);
  for (size_t b = 0; b < w.size(); b += tr.block_bytes) test::put_fp16_fields(tr.type, &w[b], fp32_to_fp16(0.01f));
  std::vector<float> wf(kRows * K);
  for (int r = 0; r < kRows; ++r) dequantize_row(tr.type, w.data() + r * row_bytes, wf.data() + r * K, K);
  for (const float sign : {1.0f, -1.0f}) {
    std::vector<float> x(kCols * K, sign);
    std::vector<Act> xq(kCols * K / kValues);
    quantize(x.data(), xq.data(), kCols * K);
    ASSERT_EQ(int(xq[0].q[0]), int(sign * 127));
    std::vector<float> y(kCols * kRows, std::nanf(""));
    panel(w.data(), row_bytes, kRows, xq.data(), K / kValues, kCols, K, y.data(), kRows);
    for (int c = 0; c < kCols; ++c) {
      for (int r = 0; r < kRows; ++r) {
        const auto [want, scale] = dot_reference(wf.data() + r * K, x.data() + c * K, K);
        EXPECT_LE(std::fabs(y[c * kRows + r] - want) / scale, 1e-5)
            << kern.isa << " " << tr.name << " sign " << sign << " at " << r << "," << c;
      }
    }
  }
}

TEST(CpuOps, PanelsAtTheLargestCodesAndActivations) {
  static_assert(kQ8PanelRows == 16 && kQ8x256PanelRows == 16);
  int panels = 0;
  for (const DotKernels* kern : every_kernel_set()) {
    for (const TypeTraits& tr : all_type_traits()) {
      const auto t = static_cast<uint32_t>(tr.type);
      if (kern->gemm_q8_panel[t] != nullptr) {
        ++panels;
        expect_exact_at_the_largest<BlockQ8x32>(*kern, tr, kern->quantize_q8, kern->gemm_q8_panel[t]);
      }
      if (kern->gemm_q8x256_panel[t] != nullptr) {
        ++panels;
        expect_exact_at_the_largest<BlockQ8x256>(*kern, tr, kern->quantize_q8x256, kern->gemm_q8x256_panel[t]);
      }
    }
  }
  if (panels == 0) GTEST_SKIP() << "no instruction set with 8-bit panels on this CPU (AVX2 or AVX-512 VNNI)";
}

TEST(CpuOps, RmsNormAndSwiglu) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int n = 1000;
  std::vector<float> x(n), w(n), out(n, std::nanf(""));
  for (int i = 0; i < n; ++i) {
    x[i] = normal(rng) * 3;
    w[i] = normal(rng);
  }
  rms_norm(x.data(), w.data(), out.data(), n, 1e-6f);
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  const double inv = 1.0 / std::sqrt(ss / n + 1e-6);
  std::vector<double> want(n);
  for (int i = 0; i < n; ++i) want[i] = double(x[i]) * inv * w[i];
  EXPECT_LE(rel_error(out, want), 1e-6);

  std::fill(out.begin(), out.end(), std::nanf(""));
  swiglu(x.data(), w.data(), out.data(), n);
  for (int i = 0; i < n; ++i) want[i] = double(x[i]) / (1 + std::exp(-double(x[i]))) * w[i];
  EXPECT_LE(rel_error(out, want), 1e-6);
}

// Every instruction set's SwiGLU (a vectorized exponential) against double, value by value:
// gates over the exponential's whole range and past it both ways (where e^-gate underflows to 0
// or overflows to infinity), lengths around the vector widths (the scalar tail), outputs
// poisoned first. Within 1e-6 relative, or 1e-35 absolute: below gate = -88.4 e^-gate overflows a
// float and the result is 0 where the true one is below 1e-36 * |up|.
TEST(CpuOps, SwigluEveryInstructionSetAgainstDoubleReference) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> wide(-120.0f, 120.0f);
  const std::vector<float> edges = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-3f, -1e-3f, 20.0f, -20.0f, 87.0f, -87.0f,
                                    87.4f, -87.4f, 88.5f, -88.5f, 88.8f, -88.8f, 100.0f, -100.0f, 1e30f, -1e30f};
  for (const DotKernels* kern : every_kernel_set()) {
    for (int n : {1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 1000}) {
      std::vector<float> gate(n), up(n), out(n, std::nanf(""));
      for (int i = 0; i < n; ++i) {
        gate[i] = i % 3 == 0 ? wide(rng) : normal(rng) * 4;
        up[i] = normal(rng);
      }
      for (size_t e = 0; e < edges.size() && int(e) < n; ++e) gate[(e * 7) % n] = edges[e];
      kern->swiglu(gate.data(), up.data(), out.data(), n);
      for (int i = 0; i < n; ++i) {
        const double g = gate[i], want = g / (1 + std::exp(-g)) * up[i];
        EXPECT_LE(std::fabs(out[i] - want), 1e-6 * std::fabs(want) + 1e-35)
            << kern->isa << " n " << n << " gate " << gate[i] << " up " << up[i] << ": " << out[i] << " want " << want;
      }
    }
  }
}

// exp_shifted against std::exp in double, value by value, in every instruction set's build: random
// exponents over the whole range it handles (and the edges: 0, -708, just past it, -infinity,
// NaN), floats packed alone or inside larger records (stride), lengths around its 64-value chunks,
// outputs poisoned first.
TEST(CpuOps, ExpShiftedMatchesStdExpInEveryBuild) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<float> exponent(-760.0f, 0.0f), shift(-30.0f, 30.0f);
  for (const DotKernels* kern : every_kernel_set()) {
    for (const size_t stride : {size_t(1), size_t(2), size_t(3)}) {
      for (const int64_t n : {int64_t(1), int64_t(63), int64_t(64), int64_t(65), int64_t(1000)}) {
        for (const double divisor : {1.0, 0.37, 2.5}) {
          const double at = shift(rng);
          std::vector<float> v(size_t(n) * stride, std::nanf(""));
          for (int64_t i = 0; i < n; ++i) v[size_t(i) * stride] = float(at + double(exponent(rng)) * divisor);
          if (n >= 6) {
            v[0] = float(at);  // e^0
            v[stride] = -INFINITY;
            v[2 * stride] = float(at - 708.0 * divisor);
            v[3 * stride] = float(at - 709.0 * divisor);
            v[4 * stride] = std::nextafter(float(at), -INFINITY);
            v[5 * stride] = float(at - 1e-30);
          }
          std::vector<double> out(size_t(n), std::nan(""));
          const double sum = kern->exp_shifted(v.data(), stride * sizeof(float), n, at, divisor, out.data());
          double want_sum = 0;
          for (int64_t i = 0; i < n; ++i) {
            const double y = (double(v[size_t(i) * stride]) - at) / divisor;
            const double want = std::exp(y);
            const std::string what = std::string(kern->isa) + ", stride " + std::to_string(stride) + ", n " +
                                     std::to_string(n) + ", value " + std::to_string(i) + ": e^" + std::to_string(y);
            if (y < -708.0) {  // e^y < 3.3e-308
              EXPECT_EQ(out[size_t(i)], 0.0) << what;
            } else {
              want_sum += want;
              EXPECT_LE(std::fabs(out[size_t(i)] - want), 4e-16 * want) << what;
            }
          }
          // Summed in another order: within n rounding steps of the sum.
          EXPECT_LE(std::fabs(sum - want_sum), double(n) * 2.3e-16 * want_sum) << kern->isa << ", n " << n;
          // The sum alone, without out.
          EXPECT_EQ(kern->exp_shifted(v.data(), stride * sizeof(float), n, at, divisor, nullptr), sum);
        }
      }
    }
    const float nan = std::nanf("");
    double out = 0;
    EXPECT_TRUE(std::isnan(kern->exp_shifted(&nan, sizeof nan, 1, 0.0, 1.0, &out))) << kern->isa;
    EXPECT_TRUE(std::isnan(out)) << kern->isa;
  }
}

TEST(CpuOps, RopeNormalNeoxAndYarn) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int hd = 128;
  for (bool neox : {false, true}) {
    for (bool yarn : {false, true}) {
      RopeParams p;
      p.n_rot = hd;
      p.neox = neox;
      p.freq_base = 1e6f;
      if (yarn) {
        p.freq_scale = 0.25f;
        p.ext_factor = 1.0f;
        p.n_ctx_orig = 32768;
      }
      std::vector<float> head(hd);
      for (auto& v : head) v = normal(rng);
      const int64_t pos = 12345;
      std::vector<float> got = head;
      rope(got.data(), pos, p);
      // Reference, in double, from the definitions (llama.cpp's ggml_rope_yarn for YaRN).
      auto corr = [&](double beta) {
        return hd * std::log(p.n_ctx_orig / (beta * 2 * std::numbers::pi)) / (2 * std::log(double(p.freq_base)));
      };
      const double low = std::max(0.0, std::floor(corr(p.beta_fast)));
      const double high = std::min(hd - 1.0, std::ceil(corr(p.beta_slow)));
      std::vector<double> want(head.begin(), head.end());
      for (int i = 0; i < hd / 2; ++i) {
        const double extrap = pos * std::pow(double(p.freq_base), -2.0 * i / hd);
        double theta = p.freq_scale * extrap, mscale = 1;
        if (yarn) {
          const double ramp = 1 - std::clamp((i - low) / std::max(0.001, high - low), 0.0, 1.0);
          theta = theta * (1 - ramp) + extrap * ramp;
          mscale *= 1 + 0.1 * std::log(1.0 / p.freq_scale);
        }
        const int a = neox ? i : 2 * i, b = neox ? i + hd / 2 : 2 * i + 1;
        want[a] = (head[a] * std::cos(theta) - head[b] * std::sin(theta)) * mscale;
        want[b] = (head[a] * std::sin(theta) + head[b] * std::cos(theta)) * mscale;
      }
      // float trig at angles up to pos = 12345 radians: about 1e-3 absolute in the angle's
      // float representation, so the bound is loose by design.
      EXPECT_LE(rel_error(got, want), 2e-3) << "neox " << neox << " yarn " << yarn;
    }
  }
}

TEST(CpuOps, ThreadPoolCoversEveryIndexOnce) {
  ThreadPool pool(3);
  for (int64_t n : {1, 2, 3, 7, 1000}) {
    std::vector<int> hits(n, 0);
    pool.parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++hits[i];
    });
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i], 1) << n << " " << i;
  }
}

}  // namespace
}  // namespace engine
