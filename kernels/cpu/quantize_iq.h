// Reference quantizers of the grid i-quants, IQ3, IQ2 (quantize_iq.cpp) and IQ1 (quantize_iq1.cpp),
// quantize_row's (engine/quantize.h).
#pragma once

#include <cstdint>

#include "quant_blocks.h"

namespace engine {

void quantize_iq3_xxs(const float* x, BlockIQ3_XXS* b, int64_t nb);
void quantize_iq3_s(const float* x, BlockIQ3_S* b, int64_t nb);
void quantize_iq2_xxs(const float* x, BlockIQ2_XXS* b, int64_t nb);
void quantize_iq2_xs(const float* x, BlockIQ2_XS* b, int64_t nb);
void quantize_iq2_s(const float* x, BlockIQ2_S* b, int64_t nb);
void quantize_iq1_s(const float* x, BlockIQ1_S* b, int64_t nb);
void quantize_iq1_m(const float* x, BlockIQ1_M* b, int64_t nb);

}  // namespace engine
