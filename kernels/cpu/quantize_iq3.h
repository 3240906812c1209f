// Reference quantizers of the IQ3 formats (quantize_row's, engine/quantize.h).
#pragma once

#include <cstdint>

#include "quant_blocks.h"

namespace engine {

void quantize_iq3_xxs(const float* x, BlockIQ3_XXS* b, int64_t nb);
void quantize_iq3_s(const float* x, BlockIQ3_S* b, int64_t nb);

}  // namespace engine
