// CPU kernels against double-precision scalar references on fresh random data, outputs poisoned
// with NaN first. The weights' reference values come from dequantize_row, itself checked against
// the gguf package (tests/python/test_quant_vs_gguf.py).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "engine/quantize.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant_dot.h"
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

// Error bounds per regime: f32 accumulation for float activations; 8-bit activations add
// their quantization error (half a step of 1/127 of each block's largest value).
double bound(GgmlType t) {
  switch (dot_regime(t)) {
    case DotRegime::f32_activations:
    case DotRegime::dequantize: return 1e-5;
    case DotRegime::q8_activations: return 1e-2;
  }
  return 0;
}

std::vector<const DotKernels*> every_kernel_set() {
  std::vector<const DotKernels*> sets = {&dot_kernels_generic()};
  if (auto* k = dot_kernels_avx2()) sets.push_back(k);
  if (auto* k = dot_kernels_avx512()) sets.push_back(k);
  return sets;
}

TEST(CpuOps, MatmulEveryTypeAgainstDoubleReference) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  ThreadPool pool(2);
  const int64_t K = 512, N = 37, B = 3;
  for (const TypeTraits& tr : all_type_traits()) {
    const auto w = test::random_blocks(tr.type, K * N, rng);
    std::vector<float> x(B * K), wf(K);
    for (auto& v : x) v = normal(rng);
    std::vector<double> want(B * N, 0.0);
    for (int64_t n = 0; n < N; ++n) {
      dequantize_row(tr.type, w.data() + n * type_bytes(tr.type, K), wf.data(), K);
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t k = 0; k < K; ++k) want[b * N + n] += double(wf[k]) * double(x[b * K + k]);
      }
    }
    std::vector<float> y(B * N, std::nanf(""));
    matmul(tr.type, w.data(), K, N, x.data(), B, y.data(), pool);
    EXPECT_LE(rel_error(y, want), bound(tr.type)) << tr.name;
  }
}

TEST(CpuOps, EveryInstructionSetAgreesPerType) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t K = 1024;
  std::vector<float> x(K), wf(K);
  for (auto& v : x) v = normal(rng);
  std::vector<BlockQ8x32> xq(K / 32);
  for (const DotKernels* kern : every_kernel_set()) {
    kern->quantize_q8(x.data(), xq.data(), K);
    for (const TypeTraits& tr : all_type_traits()) {
      const auto t = static_cast<uint32_t>(tr.type);
      const auto w = test::random_blocks(tr.type, K, rng);
      dequantize_row(tr.type, w.data(), wf.data(), K);
      double want = 0, scale = 0;
      for (int64_t k = 0; k < K; ++k) {
        want += double(wf[k]) * double(x[k]);
        scale += std::fabs(double(wf[k]) * double(x[k]));
      }
      float got;
      if (kern->dot_q8[t] != nullptr) {
        got = kern->dot_q8[t](w.data(), xq.data(), K);
      } else if (kern->dot_f32[t] != nullptr) {
        got = kern->dot_f32[t](w.data(), x.data(), K);
      } else {
        continue;  // decoded to float by matmul (covered above)
      }
      // Relative to the sum of |products|, which bounds the accumulated rounding.
      EXPECT_LE(std::fabs(got - want) / scale, bound(tr.type)) << kern->isa << " " << tr.name;
    }
  }
}

TEST(CpuOps, FourRowKernelsMatchTheSingleRowOnes) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> normal;
  const int64_t K = 1024;
  for (const DotKernels* kern : every_kernel_set()) {
    for (const TypeTraits& tr : all_type_traits()) {
      const auto t = static_cast<uint32_t>(tr.type);
      if (kern->dot_q8_x4[t] == nullptr) continue;
      const auto w = test::random_blocks(tr.type, K, rng);
      std::vector<std::vector<BlockQ8x32>> xq(4, std::vector<BlockQ8x32>(K / 32));
      const BlockQ8x32* xs[4];
      for (int r = 0; r < 4; ++r) {
        std::vector<float> x(K);
        for (auto& v : x) v = normal(rng);
        kern->quantize_q8(x.data(), xq[r].data(), K);
        xs[r] = xq[r].data();
      }
      float out[4] = {std::nanf(""), std::nanf(""), std::nanf(""), std::nanf("")};
      kern->dot_q8_x4[t](w.data(), xs, K, out);
      std::vector<float> wf(K);
      dequantize_row(tr.type, w.data(), wf.data(), K);
      for (int r = 0; r < 4; ++r) {
        const float one = kern->dot_q8[t](w.data(), xs[r], K);
        // Same products, summed in another order: compare relative to the sum of |products|.
        double scale = 0;
        for (int64_t i = 0; i < K; ++i) scale += std::fabs(wf[i] * xs[r][i / 32].d * xs[r][i / 32].q[i % 32]);
        EXPECT_LE(std::fabs(double(out[r]) - one) / scale, 1e-5) << kern->isa << " " << tr.name;
      }
    }
  }
}

TEST(CpuOps, RmsNormSoftmaxSwiglu) {
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

  std::vector<float> s = x;
  softmax(s.data(), n);
  double mx = -1e300, sum = 0;
  for (float v : x) mx = std::max(mx, double(v));
  for (int i = 0; i < n; ++i) sum += std::exp(double(x[i]) - mx);
  for (int i = 0; i < n; ++i) want[i] = std::exp(double(x[i]) - mx) / sum;
  EXPECT_LE(rel_error(s, want), 1e-6);

  std::fill(out.begin(), out.end(), std::nanf(""));
  swiglu(x.data(), w.data(), out.data(), n);
  for (int i = 0; i < n; ++i) want[i] = double(x[i]) / (1 + std::exp(-double(x[i]))) * w[i];
  EXPECT_LE(rel_error(out, want), 1e-6);
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
