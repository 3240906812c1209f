// RoPE's per-pair rotation, shared by the CPU (ops.cpp) and CUDA (cuda/ops.cu) kernels so both
// compute the same angles: the base frequency, linear or YaRN scaling (llama.cpp's rope_yarn) and
// optional per-pair frequency divisors (Llama 3.1's rope_freqs).
#pragma once

#include <cmath>
#include <cstdint>

#include "ops.h"
#include "quant_blocks.h"  // ENGINE_HOST_DEVICE

namespace engine {

// cos and sin of pair i's angle at `pos`, times the YaRN magnitude scale. corr_low/corr_high come
// from rope_yarn_corr (ignored without YaRN); freq_factors, when set, must be readable where this
// runs (host or device memory).
ENGINE_HOST_DEVICE inline void rope_rotation(const RopeParams& p, int64_t pos, int i, float corr_low,
                                             float corr_high, float* cos_out, float* sin_out) {
  const int i0 = 2 * i;
  float theta_extrap = float(pos) * powf(p.freq_base, -float(i0) / float(p.n_rot));
  if (p.freq_factors != nullptr) theta_extrap /= p.freq_factors[i];
  float theta = p.freq_scale * theta_extrap;
  float mscale = p.attn_factor;
  if (p.ext_factor != 0.0f) {
    const float y = (float(i0) / 2 - corr_low) / fmaxf(0.001f, corr_high - corr_low);
    const float mix = (1.0f - fminf(fmaxf(y, 0.0f), 1.0f)) * p.ext_factor;
    theta = theta * (1 - mix) + theta_extrap * mix;
    mscale *= 1.0f + 0.1f * logf(1.0f / p.freq_scale);
  }
  *cos_out = cosf(theta) * mscale;
  *sin_out = sinf(theta) * mscale;
}

}  // namespace engine
