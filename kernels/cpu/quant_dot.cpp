// Run-time choice of the dot kernels' instruction set.
#include "quant_dot.h"

#include <cstdlib>
#include <string_view>

#include <fmt/format.h>

#include "engine/error.h"

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
    case GgmlType::Q5_K:
    case GgmlType::IQ4_NL:
    case GgmlType::IQ4_XS:
    case GgmlType::IQ3_XXS:
    case GgmlType::IQ3_S:
    case GgmlType::IQ2_XXS:
    case GgmlType::IQ1_S:
    case GgmlType::TQ1_0:
    case GgmlType::TQ2_0:
    case GgmlType::IQ2_XS:
    case GgmlType::IQ1_M:
    case GgmlType::IQ2_S:
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q6_K: return DotRegime::q8_activations;
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
                  __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
  return ok ? &dot_kernels_avx512_build() : nullptr;
}
#else
const DotKernels* dot_kernels_avx2() { return nullptr; }
const DotKernels* dot_kernels_avx512() { return nullptr; }
#endif

// ENGINE_CPU_ISA=avx2 or generic caps the choice below the best this CPU has: for measuring, on a
// CPU with AVX-512, the kernels a CPU without it runs, and for telling whether one instruction
// set's kernels are what changed a result. Read once per process; an unknown name, or a set this
// CPU lacks, is an error at every call (CpuStage asks at construction, so a model fails to load).
const DotKernels& dot_kernels() {
  static const DotKernels* chosen = [] {
    const char* cap = std::getenv("ENGINE_CPU_ISA");
    const std::string_view want = cap != nullptr ? cap : "";
    const DotKernels* avx512 = dot_kernels_avx512();
    const DotKernels* avx2 = dot_kernels_avx2();
    if (want.empty()) return avx512 ? avx512 : avx2 ? avx2 : &dot_kernels_generic();
    if (want == "generic") return &dot_kernels_generic();
    const DotKernels* k = want == "avx512" ? avx512 : want == "avx2" ? avx2 : nullptr;
    if (k == nullptr) {
      throw Error(fmt::format("ENGINE_CPU_ISA={}: {} (the choices are avx512, avx2 and generic)", want,
                              want == "avx512" || want == "avx2" ? "this CPU lacks that instruction set"
                                                                 : "unknown instruction set"));
    }
    return k;
  }();
  return *chosen;
}

}  // namespace engine
