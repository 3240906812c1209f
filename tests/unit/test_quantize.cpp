// Round-trip error of the reference quantizers against the original data, in double precision.
// (Bit-level agreement of the block layouts with ggml is checked against the gguf Python package
// in tests/python/test_quant_vs_gguf.py.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/error.h"
#include "engine/ggml_type.h"
#include "engine/half.h"
#include "engine/quantize.h"
#include "test_support.h"

namespace engine {
namespace {

// ||dequant(quant(x)) - x|| / ||x|| on fresh Gaussian data, for rows of `row` elements.
double round_trip_error(GgmlType type, int64_t row, int rows, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(row), y(row, std::nanf(""));
  std::vector<uint8_t> q(type_bytes(type, row));
  double err = 0, ref = 0;
  for (int r = 0; r < rows; ++r) {
    for (auto& v : x) v = normal(rng) * (r + 1) * 0.37f;  // rows of different magnitudes
    quantize_row(type, x.data(), q.data(), row);
    std::fill(y.begin(), y.end(), std::nanf(""));
    dequantize_row(type, q.data(), y.data(), row);
    for (int64_t i = 0; i < row; ++i) {
      const double d = double(y[i]) - double(x[i]);
      err += d * d;
      ref += double(x[i]) * double(x[i]);
    }
  }
  return std::sqrt(err / ref);
}

struct Bound {
  GgmlType type;
  double max_error;  // measured on this data with ~1.5x margin; 4-bit is ~2^-4 of the range
};

TEST(Quantize, RoundTripErrorWithinPerTypeBound) {
  const Bound bounds[] = {
      {GgmlType::F32, 0.0},    {GgmlType::F16, 3e-4},   {GgmlType::BF16, 2.5e-3}, {GgmlType::Q8_0, 0.008},
      {GgmlType::Q6_K, 0.028}, {GgmlType::Q5_K, 0.055}, {GgmlType::Q4_K, 0.11},   {GgmlType::Q3_K, 0.22},
      {GgmlType::Q2_K, 0.45},  {GgmlType::Q5_1, 0.055}, {GgmlType::Q5_0, 0.06},   {GgmlType::Q4_1, 0.11},
      {GgmlType::Q4_0, 0.12},  {GgmlType::IQ4_NL, 0.11}, {GgmlType::IQ4_XS, 0.11}, {GgmlType::IQ3_S, 0.23},
      {GgmlType::IQ3_XXS, 0.30}, {GgmlType::IQ2_S, 0.30},  {GgmlType::IQ2_XS, 0.35},  {GgmlType::IQ2_XXS, 0.41},
      {GgmlType::IQ1_M, 0.47},   {GgmlType::IQ1_S, 0.52},   {GgmlType::TQ1_0, 0.85},   {GgmlType::TQ2_0, 0.85},
  };
  std::mt19937 rng(std::random_device{}());
  for (const auto& b : bounds) {
    const double e = round_trip_error(b.type, 4096, 16, rng);
    EXPECT_LE(e, b.max_error) << traits(b.type).name;
    EXPECT_TRUE(std::isfinite(e)) << traits(b.type).name;
    if (b.type != GgmlType::F32) {
      EXPECT_GT(e, 0.0) << traits(b.type).name;
    }
    RecordProperty(std::string(traits(b.type).name), std::to_string(e));
  }
}

TEST(Quantize, ZeroAndConstantBlocks) {
  for (const TypeTraits& tr : all_type_traits()) {
    const GgmlType t = tr.type;
    std::vector<float> x(256, 0.0f), y(256, 1.0f);
    std::vector<uint8_t> q(type_bytes(t, 256));
    quantize_row(t, x.data(), q.data(), 256);
    dequantize_row(t, q.data(), y.data(), 256);
    for (float v : y) EXPECT_EQ(v, 0.0f) << traits(t).name;
    std::fill(x.begin(), x.end(), 0.75f);
    quantize_row(t, x.data(), q.data(), 256);
    dequantize_row(t, q.data(), y.data(), 256);
    for (float v : y) EXPECT_NEAR(v, 0.75f, 0.75f / 64) << traits(t).name;
  }
}

TEST(Quantize, UnknownTypeIsAnError) {
  std::vector<float> x(256);
  std::vector<uint8_t> q(1024);
  test::expect_error([&] { quantize_row(static_cast<GgmlType>(4), x.data(), q.data(), 256); },  // ggml's removed Q4_2
                     {"quantize_row", "type 4"});
}

TEST(Half, EveryFp16RoundTripsThroughFp32) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(f))));
      continue;
    }
    EXPECT_EQ(fp32_to_fp16(f), h) << h;
  }
}

TEST(Half, Fp32ToFp16MatchesTheCompiler) {
  // The compiler's _Float16 conversion is IEEE round-to-nearest-even: an independent reference.
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 1000000; ++i) {
    uint32_t b = bits(rng);
    if (i % 2) b = (b & 0x8fffffff) | 0x30000000;  // many values near the fp16 range
    float f;
    std::memcpy(&f, &b, 4);
    if (std::isnan(f)) continue;
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t ref;
    std::memcpy(&ref, &h, 2);
    ASSERT_EQ(fp32_to_fp16(f), ref) << "bits " << b;
    ASSERT_EQ(fp16_to_fp32(ref), static_cast<float>(h));
  }
}

TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
  uint32_t halfway = 0x3f808000;  // exactly between 0x3f80 and 0x3f81: rounds to even 0x3f80
  float f;
  std::memcpy(&f, &halfway, 4);
  EXPECT_EQ(fp32_to_bf16(f), 0x3f80);
  halfway = 0x3f818000;  // between 0x3f81 and 0x3f82: rounds to even 0x3f82
  std::memcpy(&f, &halfway, 4);
  EXPECT_EQ(fp32_to_bf16(f), 0x3f82);
}

}  // namespace
}  // namespace engine
