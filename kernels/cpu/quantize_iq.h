// Reference quantizers of the grid i-quants, IQ3 and IQ2 (quantize_row's, engine/quantize.h).
#pragma once

#include <cstdint>

#include "quant_blocks.h"

namespace engine {

void quantize_iq3_xxs(const float* x, BlockIQ3_XXS* b, int64_t nb);
void quantize_iq3_s(const float* x, BlockIQ3_S* b, int64_t nb);
void quantize_iq2_xxs(const float* x, BlockIQ2_XXS* b, int64_t nb);
void quantize_iq2_xs(const float* x, BlockIQ2_XS* b, int64_t nb);
void quantize_iq2_s(const float* x, BlockIQ2_S* b, int64_t nb);

}  // namespace engine
