// Every CPU kernel set this machine can run (quant_dot.h): the portable one, and AVX2 and
// AVX-512 where the CPU has them, for tests that compare each against a reference.
#pragma once

#include <vector>

#include "kernels/cpu/quant_dot.h"

namespace engine::test {

inline std::vector<const DotKernels*> every_kernel_set() {
  std::vector<const DotKernels*> sets = {&dot_kernels_generic()};
  if (auto* k = dot_kernels_avx2()) sets.push_back(k);
  if (auto* k = dot_kernels_avx512()) sets.push_back(k);
  return sets;
}

}  // namespace engine::test
