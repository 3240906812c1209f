// The GPU's small kernels against the CPU ones (themselves checked against double-precision
// references in test_cpu_ops.cpp) on fresh random data, outputs poisoned with NaN first: RMSNorm
// within 1e-6 relative, RoPE (normal, NeoX, YaRN with frequency factors) within 1e-4 at positions
// near 4096 (device and host sinf/cosf/powf may differ by an ulp of the angle), SwiGLU within 1e-6; the
// 8-bit blocks RMSNorm and SwiGLU also write are bit for bit the host quantizer's of their f32
// output; the fused RoPE + KV store rotates as the CPU and stores fp16 of the rotated k and of v,
// or their Q8_0 blocks bit for bit the CPU quantizer's, at the position's cache rows, leaving the
// rows around them alone; the greedy argmax is exactly
// argmax_token's. Skips (visibly) where no CUDA device exists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/half.h"
#include "engine/sampling.h"

#include "engine/memory_model.h"
#include "kernels/cpu/ops.h"
#include "scheduler/cuda_runtime.h"

#if ENGINE_HAVE_CUDA
#include <cuda_runtime.h>

#include "device_buffer.h"
#include "kernels/cuda/ops.h"
#include "kv_q8_cache.h"
#include "test_support.h"
#endif

namespace engine {
namespace {

#if ENGINE_HAVE_CUDA
// A device copy of host floats, freed with the object.
struct DeviceFloats {
  float* p = nullptr;
  size_t n = 0;
  explicit DeviceFloats(const std::vector<float>& v) : n(v.size()) {
    EXPECT_EQ(cudaMalloc(&p, n * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, v.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  }
  explicit DeviceFloats(size_t count) : n(count) {
    EXPECT_EQ(cudaMalloc(&p, n * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemset(p, 0xff, n * sizeof(float)), cudaSuccess);  // NaN poison
  }
  ~DeviceFloats() { cudaFree(p); }
  std::vector<float> get() const {
    std::vector<float> v(n);
    EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
};

double rel(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    err += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    norm += double(want[i]) * want[i];
  }
  return std::sqrt(err / norm);
}

std::vector<float> random_floats(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// The blocks a fused kernel wrote (n values' worth at d_q8) against the host quantizer's of the
// kernel's own f32 output: bit for bit.
// The fp16 copy a kernel wrote (d_f16) is bit for bit the host's rounding of its f32 output,
// clamped to the largest finite fp16 as cuda_to_f16_saturated clamps.
void expect_saturated_f16_of(const std::vector<float>& out, const test::DeviceBuffer& d_f16, const char* what) {
  const auto got = d_f16.to_host<uint16_t>();
  ASSERT_EQ(got.size(), out.size()) << what;
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_EQ(got[i], fp32_to_fp16(std::clamp(out[i], -65504.0f, 65504.0f))) << what << " value " << i;
  }
}

void expect_blocks_of(const std::vector<float>& out, const ActQ8Block* d_q8, const char* what) {
  std::vector<ActQ8Block> want(out.size() / 32), got(out.size() / 32);
  quantize_activations_on_host(out.data(), int64_t(out.size()), want.data());
  ASSERT_EQ(cudaMemcpy(got.data(), d_q8, got.size() * sizeof(ActQ8Block), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(ActQ8Block)), 0) << what;
}
#endif

// Widths that take every path of the kernel: a head (one warp), fewer values than threads, a
// hidden row (five a thread), and past the eight a thread keeps in registers; with 8-bit output
// where the width is whole blocks.
TEST(CudaOps, RmsNormAtEveryWidthMatchesTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  for (const int64_t n : {int64_t(128), int64_t(100), int64_t(5120), int64_t(12000)}) {
    const int64_t rows = 2;
    const auto x = random_floats(rows * n, rng), w = random_floats(n, rng);
    std::vector<float> want(rows * n);
    for (int64_t r = 0; r < rows; ++r) rms_norm(x.data() + r * n, w.data(), want.data() + r * n, n, 1e-6f);
    DeviceFloats dx(x), dw(w), dout(rows * n);
    ActQ8Block* dq = nullptr;
    if (n % 32 == 0) {
      ASSERT_EQ(cudaMalloc(&dq, rows * n / 32 * sizeof(ActQ8Block)), cudaSuccess);
      ASSERT_EQ(cudaMemset(dq, 0xff, rows * n / 32 * sizeof(ActQ8Block)), cudaSuccess);
    }
    const test::DeviceBuffer dh(std::vector<uint16_t>(rows * n, 0xffff));  // and the matmul's fp16 copy
    cuda_rms_norm(dx.p, dw.p, dout.p, rows, n, 1e-6f, nullptr, dq, dh.as<uint16_t>());
    const auto got = dout.get();
    EXPECT_LE(rel(got, want), 1e-6) << "n " << n;
    expect_saturated_f16_of(got, dh, "rms_norm");
    if (dq != nullptr) {
      expect_blocks_of(got, dq, "rms_norm");
      cudaFree(dq);
    }
  }
#endif
}

// Rows of one value, of fewer values than threads, and of a vocabulary; coarse values (many ties),
// NaNs, all -infinity: the token is exactly argmax_token's (the host reference against
// std::max_element in test_greedy.cpp).
TEST(CudaOps, ArgmaxIsTheHostsGreedyToken) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  for (const int64_t n : {int64_t(1), int64_t(700), int64_t(152064)}) {
    for (int trial = 0; trial < 6; ++trial) {
      std::vector<float> x(n);
      for (auto& v : x) v = float(int(rng() % 61) - 30) * 0.25f;
      if (trial == 1) x[rng() % n] = std::nanf("");
      if (trial == 2) std::fill(x.begin(), x.end(), -INFINITY);
      if (trial == 3) x[n - 1] = 100.0f;  // the maximum at the very end
      DeviceFloats dx(x);
      const test::DeviceBuffer d_token(std::vector<int32_t>{-2});
      cuda_argmax(dx.p, n, d_token.as<int32_t>(), nullptr);
      EXPECT_EQ(d_token.to_host<int32_t>()[0], argmax_token(x)) << "n " << n << " trial " << trial;
    }
  }
#endif
}

TEST(CudaOps, RmsNormAndSwigluMatchTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  const int64_t rows = 3, n = 5120;
  const auto x = random_floats(rows * n, rng), w = random_floats(n, rng), up = random_floats(rows * n, rng);
  std::vector<float> want(rows * n);
  for (int64_t r = 0; r < rows; ++r) rms_norm(x.data() + r * n, w.data(), want.data() + r * n, n, 1e-6f);
  DeviceFloats dx(x), dw(w), dout(rows * n), dup(up);
  cuda_rms_norm(dx.p, dw.p, dout.p, rows, n, 1e-6f, nullptr);
  EXPECT_LE(rel(dout.get(), want), 1e-6);
  {  // in place, as the per-head q/k norms run
    DeviceFloats inplace(x);
    cuda_rms_norm(inplace.p, dw.p, inplace.p, rows, n, 1e-6f, nullptr);
    EXPECT_LE(rel(inplace.get(), want), 1e-6);
  }

  swiglu(x.data(), up.data(), want.data(), rows * n);
  cuda_swiglu(dx.p, dup.p, dout.p, rows * n, nullptr);
  EXPECT_LE(rel(dout.get(), want), 1e-6);
  {  // in place into the gate, as the stage runs it
    DeviceFloats inplace(x);
    cuda_swiglu(inplace.p, dup.p, inplace.p, rows * n, nullptr);
    EXPECT_LE(rel(inplace.get(), want), 1e-6);
  }

  // With 8-bit output as well (the decode step's form): the same f32 output, and its blocks.
  ActQ8Block* dq = nullptr;
  ASSERT_EQ(cudaMalloc(&dq, rows * n / 32 * sizeof(ActQ8Block)), cudaSuccess);
  ASSERT_EQ(cudaMemset(dq, 0xff, rows * n / 32 * sizeof(ActQ8Block)), cudaSuccess);
  DeviceFloats normed(rows * n);
  cuda_rms_norm(dx.p, dw.p, normed.p, rows, n, 1e-6f, nullptr, dq);
  const auto normed_host = normed.get();
  for (int64_t r = 0; r < rows; ++r) rms_norm(x.data() + r * n, w.data(), want.data() + r * n, n, 1e-6f);
  EXPECT_LE(rel(normed_host, want), 1e-6);
  expect_blocks_of(normed_host, dq, "rms_norm");
  ASSERT_EQ(cudaMemset(dq, 0xff, rows * n / 32 * sizeof(ActQ8Block)), cudaSuccess);
  {
    DeviceFloats gate(x);
    const test::DeviceBuffer dh(std::vector<uint16_t>(rows * n, 0xffff));
    cuda_swiglu(gate.p, dup.p, gate.p, rows * n, nullptr, dq, dh.as<uint16_t>());
    const auto act = gate.get();
    swiglu(x.data(), up.data(), want.data(), rows * n);
    EXPECT_LE(rel(act, want), 1e-6);
    expect_blocks_of(act, dq, "swiglu");
    expect_saturated_f16_of(act, dh, "swiglu");
  }
  cudaFree(dq);

  // Without the f32 rows (a prompt batch whose products all read fp16): the same fp16 rows, and
  // the f32 buffer untouched.
  {
    const test::DeviceBuffer with(std::vector<uint16_t>(rows * n, 0xffff)), without(std::vector<uint16_t>(rows * n, 0xffff));
    cuda_rms_norm(dx.p, dw.p, dout.p, rows, n, 1e-6f, nullptr, nullptr, with.as<uint16_t>());
    cuda_rms_norm(dx.p, dw.p, nullptr, rows, n, 1e-6f, nullptr, nullptr, without.as<uint16_t>());
    EXPECT_EQ(without.to_host<uint16_t>(), with.to_host<uint16_t>()) << "rms_norm";
    DeviceFloats gate(x);
    cuda_swiglu(gate.p, dup.p, dout.p, rows * n, nullptr, nullptr, with.as<uint16_t>());
    cuda_swiglu(gate.p, dup.p, nullptr, rows * n, nullptr, nullptr, without.as<uint16_t>());
    EXPECT_EQ(without.to_host<uint16_t>(), with.to_host<uint16_t>()) << "swiglu";
    EXPECT_EQ(gate.get(), x) << "swiglu without an f32 output wrote its gate";
  }
#endif
}

// A norm or SwiGLU with no output at all is refused before anything runs.
TEST(CudaOps, RefusesAKernelWithNoOutput) {
#if !ENGINE_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  const float* const far_away = reinterpret_cast<const float*>(uintptr_t(1) << 40);  // never dereferenced
  test::expect_error([&] { cuda_rms_norm(far_away, far_away, nullptr, 2, 128, 1e-6f, nullptr); },
                     {"cuda_rms_norm", "outputs"});
  test::expect_error([&] { cuda_swiglu(far_away, far_away, nullptr, 256, nullptr); }, {"cuda_swiglu", "outputs"});
#endif
}

// RoPE of q and k in the fused kernel (its KV store is the next test's): normal, NeoX, and YaRN
// with Llama 3.1-style frequency divisors, at positions near 4096 (device and host
// sinf/cosf/powf may differ by an ulp of the angle: 1e-4).
TEST(CudaOps, RopeNormalNeoxAndYarnMatchTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  const int64_t rows = 5, heads = 8, kv_heads = 2, hd = 128, pos0 = 4091;
  std::vector<float> factors(hd / 2);
  for (auto& f : factors) f = 1.0f + float(rng() % 8);
  DeviceFloats dfactors(factors);
  uint16_t* cache = nullptr;  // room for the stores this test does not look at
  ASSERT_EQ(cudaMalloc(&cache, 2 * (pos0 + rows) * kv_heads * hd * sizeof(uint16_t)), cudaSuccess);
  for (int variant = 0; variant < 3; ++variant) {
    RopeParams p;
    p.n_rot = hd;
    p.freq_base = 1e6f;
    p.neox = variant != 0;
    if (variant == 2) {  // YaRN x4 on a 32k model, with Llama 3.1-style frequency divisors
      p.freq_scale = 0.25f;
      p.ext_factor = 1.0f;
      p.n_ctx_orig = 32768;
    }
    const auto q = random_floats(rows * heads * hd, rng), k = random_floats(rows * kv_heads * hd, rng),
               v = random_floats(rows * kv_heads * hd, rng);
    std::vector<float> want_q = q, want_k = k;
    RopeParams host = p;
    if (variant == 2) host.freq_factors = factors.data();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t h = 0; h < heads; ++h) rope(want_q.data() + (r * heads + h) * hd, pos0 + r, host);
      for (int64_t h = 0; h < kv_heads; ++h) rope(want_k.data() + (r * kv_heads + h) * hd, pos0 + r, host);
    }
    DeviceFloats dq(q), dk(k), dv(v);
    if (variant == 2) p.freq_factors = dfactors.p;
    KvLayer kv;  // f16
    kv.k = cache;
    kv.v = cache + (pos0 + rows) * kv_heads * hd;
    cuda_rope_store_kv(dq.p, dk.p, dv.p, rows, heads, kv_heads, hd, pos0, p, kv, nullptr);
    // At position 4091 an angle in float has a step of 2.4e-4 rad, and the GPU's powf/sincosf
    // may differ from the host's by an ulp: rows differ by ~3e-5 (H200). A wrong pair, sign or
    // frequency is off by O(1).
    EXPECT_LE(rel(dq.get(), want_q), 1e-4) << "variant " << variant;
    EXPECT_LE(rel(dk.get(), want_k), 1e-4) << "variant " << variant;
  }
  cudaFree(cache);
#endif
}

// The fused RoPE + KV store of a layer: q (4 heads) and k (2 heads) rotated as the CPU rotates
// them (normal and NeoX, the latter with only half of each head rotated), then the rotated k and
// v in the cache rows of positions pos .. pos + rows - 1 (read from device memory, as a replayed
// decode graph gives it): as fp16 of each value, or as the CPU's Q8_0 blocks of each row (codes
// and scales bit for bit those of quantize_row on the GPU's rotated k and on v); every other
// cache row untouched.
TEST(CudaOps, RopeAndKvStoreMatchTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << cuda_unavailable_reason();
#if ENGINE_HAVE_CUDA
  std::mt19937 rng(std::random_device{}());
  const int64_t rows = 3, heads = 4, kv_heads = 2, hd = 64, kv_dim = kv_heads * hd, pos = 37, ctx = 64;
  for (const KvType type : {KvType::f16, KvType::q8_0}) {
    for (const bool neox : {false, true}) {
      const std::string what = std::string(kv_type_name(type)) + (neox ? " neox" : " normal");
      RopeParams p;
      p.n_rot = neox ? hd / 2 : hd;
      p.neox = neox;
      p.freq_base = 1e4f;
      const auto q = random_floats(rows * heads * hd, rng), k = random_floats(rows * kv_dim, rng),
                 v = random_floats(rows * kv_dim, rng);
      std::vector<float> want_q = q, want_k = k;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t h = 0; h < heads; ++h) rope(want_q.data() + (r * heads + h) * hd, pos + r, p);
        for (int64_t h = 0; h < kv_heads; ++h) rope(want_k.data() + (r * kv_heads + h) * hd, pos + r, p);
      }
      DeviceFloats dq(q), dk(k), dv(v);
      // Poisoned caches: fp16 NaN halves, or codes of 0x7e and NaN scales.
      const test::DeviceBuffer kc(std::vector<uint16_t>(ctx * kv_dim, 0x7e7e)),
          vc(std::vector<uint16_t>(ctx * kv_dim, 0x7e7e)), ks(std::vector<uint16_t>(ctx * kv_dim / 32, 0x7e7e)),
          vs(std::vector<uint16_t>(ctx * kv_dim / 32, 0x7e7e)), dpos(std::vector<int64_t>{pos});
      KvLayer kv;
      kv.type = type;
      kv.k = kc.get();
      kv.v = vc.get();
      if (type == KvType::q8_0) {
        kv.k_scale = ks.as<uint16_t>();
        kv.v_scale = vs.as<uint16_t>();
      }
      cuda_rope_store_kv(dq.p, dk.p, dv.p, rows, heads, kv_heads, hd, 0, p, kv, nullptr, dpos.as<int64_t>());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> got_k = dk.get();
      EXPECT_LE(rel(dq.get(), want_q), 1e-5) << what;
      EXPECT_LE(rel(got_k, want_k), 1e-5) << what;
      const auto kh = kc.to_host<uint16_t>(), vh = vc.to_host<uint16_t>();
      const auto ksh = ks.to_host<uint16_t>(), vsh = vs.to_host<uint16_t>();
      const int64_t first = pos * kv_dim, last = (pos + rows) * kv_dim;  // the rows written, in values
      if (type == KvType::f16) {
        for (int64_t i = 0; i < rows * kv_dim; ++i) {
          ASSERT_EQ(kh[first + i], fp32_to_fp16(got_k[i])) << what << ": k value " << i;
          ASSERT_EQ(vh[first + i], fp32_to_fp16(v[i])) << what << ": v value " << i;
        }
      } else {
        const auto* kb = reinterpret_cast<const int8_t*>(kh.data());
        const auto* vb = reinterpret_cast<const int8_t*>(vh.data());
        const test::HostQ8Cache want_kq = test::host_q8_cache(got_k, kv_dim), want_vq = test::host_q8_cache(v, kv_dim);
        for (int64_t i = 0; i < rows * kv_dim; ++i) {
          ASSERT_EQ(kb[first + i], want_kq.codes[i]) << what << ": k code " << i;
          ASSERT_EQ(vb[first + i], want_vq.codes[i]) << what << ": v code " << i;
        }
        for (int64_t b = 0; b < rows * kv_dim / 32; ++b) {
          ASSERT_EQ(ksh[first / 32 + b], want_kq.scales[b]) << what << ": k scale " << b;
          ASSERT_EQ(vsh[first / 32 + b], want_vq.scales[b]) << what << ": v scale " << b;
        }
        for (int64_t b = 0; b < ctx * kv_dim / 32; ++b) {
          if (b >= first / 32 && b < last / 32) continue;
          ASSERT_EQ(ksh[b], 0x7e7e) << what << ": k scale " << b << " written";
          ASSERT_EQ(vsh[b], 0x7e7e) << what << ": v scale " << b << " written";
        }
      }
      // Bytes of the code or half planes outside the rows written are still the poison.
      const int64_t elem = type == KvType::f16 ? 2 : 1;
      const auto* kbytes = reinterpret_cast<const uint8_t*>(kh.data());
      const auto* vbytes = reinterpret_cast<const uint8_t*>(vh.data());
      for (int64_t i = 0; i < 2 * ctx * kv_dim; ++i) {
        if (i >= first * elem && i < last * elem) continue;
        ASSERT_EQ(kbytes[i], 0x7e) << what << ": k cache byte " << i << " written";
        ASSERT_EQ(vbytes[i], 0x7e) << what << ": v cache byte " << i << " written";
      }
    }
  }
#endif
}

}  // namespace
}  // namespace engine
