// The double-precision reference the GPU product tests check against: weights dequantized by the
// CPU dequantizer (itself checked against the gguf package), multiplied in double.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/ggml_type.h"
#include "engine/quantize.h"

namespace engine::test {

// N rows of K values of `type` (GGUF layout, rows back to back at w) as floats, [N][K].
inline std::vector<float> dequantized(GgmlType type, const void* w, int64_t K, int64_t N) {
  std::vector<float> wf(static_cast<size_t>(K * N));
  const uint64_t row_bytes = type_bytes(type, uint64_t(K));
  for (int64_t n = 0; n < N; ++n) {
    dequantize_row(type, static_cast<const uint8_t*>(w) + uint64_t(n) * row_bytes, wf.data() + n * K, K);
  }
  return wf;
}

// Relative error of y ([B][N]) against the double-precision product of the dequantized weights wf
// ([N][K]) with x ([B][K]), over rows 0, row_step, 2 * row_step, ... (a sample of a large matrix).
inline double rel_to_reference(const std::vector<float>& wf, const std::vector<float>& x, const std::vector<float>& y,
                               int64_t B, int64_t N, int64_t K, int64_t row_step = 1) {
  double err = 0, norm = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t n = 0; n < N; n += row_step) {
      double want = 0;
      for (int64_t k = 0; k < K; ++k) want += double(wf[n * K + k]) * double(x[b * K + k]);
      err += (y[b * N + n] - want) * (y[b * N + n] - want);
      norm += want * want;
    }
  }
  return std::sqrt(err / norm);
}

}  // namespace engine::test
