// exp_shifted (quant_dot.h): the softmax weights e^((v - shift) / divisor) in double over a
// vocabulary row, for the sampler and perplexity. Included by quant_dot_impl.h in each
// instruction-set translation unit, where the compiler vectorizes the exponential (2, 4 or 8
// doubles a vector).
//
// Each value y <= 0: n = round(y / ln 2) (by the 1.5 * 2^52 shifter: the sum's low mantissa bits
// hold n), r = y - n ln 2 with ln 2 in two parts (n * kLn2Hi is exact), |r| <= ln 2 / 2; e^r by
// its Taylor series to r^13 (truncation error below 5e-18 relative), times 2^n built in the
// exponent bits. y below -708, where e^y < 3.3e-308, gives 0 (so does -infinity); NaN gives NaN.
// Bound: the arithmetic, about 20 flops a value (a vocabulary row is 0.1-0.6 MB, read once).
#pragma once

#include <cstdint>
#include <cstring>

namespace engine {
namespace {

// The vectorizer turns the selects below into blends only where FP compares may not trap (GCC
// keeps -ftrapping-math's control flow otherwise, and the loop stays scalar without AVX-512's
// masks); no exception flags are read anywhere.
#if defined(__GNUC__) && !defined(__clang__)
#define ENGINE_EXP_NO_TRAPS __attribute__((optimize("no-trapping-math")))
#else
#define ENGINE_EXP_NO_TRAPS
#endif

// a * b + c, fused where the build has FMA.
ENGINE_EXP_NO_TRAPS inline double madd(double a, double b, double c) {
#if defined(__FMA__)
  return __builtin_fma(a, b, c);
#else
  return a * b + c;
#endif
}

ENGINE_EXP_NO_TRAPS inline double exp_nonpositive(double y) {
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // ln 2's leading 32 bits
  constexpr double kLn2Lo = 1.90821492927058770002e-10;  // the rest
  constexpr double kShifter = 6755399441055744.0;        // 1.5 * 2^52
  const bool zero = y < -708.0;
  const double yc = zero ? -708.0 : y;
  const double t = madd(yc, kLog2e, kShifter);
  const double n = t - kShifter;
  const double r = madd(-n, kLn2Lo, madd(-n, kLn2Hi, yc));
  double p = 1.0 / 6227020800.0;  // 1 / 13!
  p = madd(p, r, 1.0 / 479001600.0);
  p = madd(p, r, 1.0 / 39916800.0);
  p = madd(p, r, 1.0 / 3628800.0);
  p = madd(p, r, 1.0 / 362880.0);
  p = madd(p, r, 1.0 / 40320.0);
  p = madd(p, r, 1.0 / 5040.0);
  p = madd(p, r, 1.0 / 720.0);
  p = madd(p, r, 1.0 / 120.0);
  p = madd(p, r, 1.0 / 24.0);
  p = madd(p, r, 1.0 / 6.0);
  p = madd(p, r, 0.5);
  p = madd(p, r, 1.0);
  p = madd(p, r, 1.0);
  int64_t t_bits, shifter_bits;
  std::memcpy(&t_bits, &t, sizeof t);
  std::memcpy(&shifter_bits, &kShifter, sizeof kShifter);
  const uint64_t scale_bits = uint64_t(t_bits - shifter_bits + 1023) << 52;  // 2^n, n >= -1021
  double scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  const double value = p * scale;  // computed on both sides of the select, so that it is a blend
  return zero ? 0.0 : value;
}

// Chunks of 64: the strided floats gathered into y (a scalar loop), e^y over the whole chunk (the
// vectorized loop; the tail's lanes are -infinity, which give 0), the sum in eight partial sums.
// The division (2 cycles a value with AVX-512) only where the divisor is not 1.
template <bool kDivide>
ENGINE_EXP_NO_TRAPS double exp_shifted_chunks(const unsigned char* bytes, size_t stride_bytes, int64_t n,
                                              double shift, double divisor, double* out) {
  constexpr int kChunk = 64, kSums = 8;
  double sums[kSums] = {};
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int m = n - i0 < kChunk ? int(n - i0) : kChunk;
    double y[kChunk], e[kChunk];
    for (int j = 0; j < m; ++j) {
      float v;
      std::memcpy(&v, bytes + size_t(i0 + j) * stride_bytes, sizeof v);
      y[j] = double(v);
    }
    for (int j = m; j < kChunk; ++j) y[j] = -__builtin_inf();
    for (int j = 0; j < kChunk; ++j) e[j] = exp_nonpositive(kDivide ? (y[j] - shift) / divisor : y[j] - shift);
    for (int j = 0; j < kChunk; j += kSums) {
      for (int s = 0; s < kSums; ++s) sums[s] += e[j + s];
    }
    if (out != nullptr) std::memcpy(out + i0, e, size_t(m) * sizeof(double));
  }
  return ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]));
}

double exp_shifted(const void* values, size_t stride_bytes, int64_t n, double shift, double divisor, double* out) {
  const auto* bytes = static_cast<const unsigned char*>(values);
  return divisor == 1.0 ? exp_shifted_chunks<false>(bytes, stride_bytes, n, shift, divisor, out)
                        : exp_shifted_chunks<true>(bytes, stride_bytes, n, shift, divisor, out);
}

}  // namespace
}  // namespace engine

#undef ENGINE_EXP_NO_TRAPS
