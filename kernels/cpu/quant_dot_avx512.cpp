// AVX-512 (F, BW, VL, VNNI) build of the dot kernels (compile flags set in CMakeLists.txt).
#include "quant_dot_impl.h"

namespace engine {
const DotKernels& dot_kernels_avx512_build() {
  static const DotKernels kernels = make_kernels("avx512-vnni");
  return kernels;
}
}  // namespace engine
