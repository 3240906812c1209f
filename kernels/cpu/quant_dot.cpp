// Run-time choice of the dot kernels' instruction set.
#include "quant_dot.h"

namespace engine {

const DotKernels& dot_kernels_avx2_build();
const DotKernels& dot_kernels_avx512_build();

DotRegime dot_regime(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0: return DotRegime::f32_activations;
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: return DotRegime::q8_activations;
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q6_K: return DotRegime::q16_activations;
  }
  return DotRegime::f32_activations;
}

#if defined(__x86_64__)
// F16C is not testable by name here; every CPU with AVX2 and FMA has it (Haswell and later).
const DotKernels* dot_kernels_avx2() {
  __builtin_cpu_init();
  const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok ? &dot_kernels_avx2_build() : nullptr;
}

const DotKernels* dot_kernels_avx512() {
  __builtin_cpu_init();
  const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
                  __builtin_cpu_supports("fma");
  return ok ? &dot_kernels_avx512_build() : nullptr;
}
#else
const DotKernels* dot_kernels_avx2() { return nullptr; }
const DotKernels* dot_kernels_avx512() { return nullptr; }
#endif

const DotKernels& dot_kernels() {
  static const DotKernels* best = [] {
    if (const DotKernels* k = dot_kernels_avx512()) return k;
    if (const DotKernels* k = dot_kernels_avx2()) return k;
    return &dot_kernels_generic();
  }();
  return *best;
}

}  // namespace engine
