// AVX2 + FMA + F16C build of the dot kernels (compile flags set in CMakeLists.txt).
#include "quant_dot_impl.h"

namespace engine {
const DotKernels& dot_kernels_avx2_build() {
  static const DotKernels kernels = make_kernels("avx2");
  return kernels;
}
}  // namespace engine
