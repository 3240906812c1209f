// Checks CUDA runtime return codes; a failure throws engine::Error naming the call, the device and
// the source line. The throwing side lives in cuda_runtime.cpp (nvcc cannot compile fmt's
// compile-time format checks).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/ggml_type.h"

namespace engine {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file,
                                   int line);

[[noreturn]] void throw_unsupported_type(const char* op, GgmlType type);

// "op: TYPE needs which activations, none were given".
[[noreturn]] void throw_missing_activations(const char* op, GgmlType type, const char* which);

// "op: what is not supported".
[[noreturn]] void throw_unsupported(const char* op, const char* what);

// "op: what value is out of range".
[[noreturn]] void throw_bad_argument(const char* op, const char* what, int64_t value);

inline void cuda_check(cudaError_t status, const char* call, const char* file, int line) {
  if (status != cudaSuccess) throw_cuda_error(status, call, file, line);
}

}  // namespace engine

// Stringifies the call so the error names it.
#define ENGINE_CUDA_CHECK(call) ::engine::cuda_check((call), #call, __FILE__, __LINE__)
