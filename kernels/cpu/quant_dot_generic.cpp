// Baseline x86-64 build of the dot kernels.
#include "quant_dot_impl.h"

namespace engine {
const DotKernels& dot_kernels_generic() {
  static const DotKernels kernels = make_kernels("generic");
  return kernels;
}
}  // namespace engine
