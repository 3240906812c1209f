// Host-only code (compiled by the C++ compiler so it can use fmt): runtime queries and errors.
#include <fmt/format.h>

#include "cuda_check.h"
#include "cuda_runtime_info.h"
#include "engine/error.h"

namespace engine {

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  int device = -1;
  cudaGetDevice(&device);  // best effort: the error already happened
  throw Error(fmt::format("cuda device {}: {} failed: {} ({}) at {}:{}", device, call,
                          cudaGetErrorString(status), static_cast<int>(status), file, line));
}

void throw_unsupported_type(const char* op, GgmlType type) {
  throw Error(fmt::format("{}: unsupported type {}", op, traits(type).name));
}

int cuda_device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

std::string cuda_unavailable_reason() {
  int n = 0;
  cudaError_t status = cudaGetDeviceCount(&n);
  if (status != cudaSuccess) {
    return fmt::format("no CUDA device: cudaGetDeviceCount failed: {}", cudaGetErrorString(status));
  }
  return n > 0 ? "" : "no CUDA device: cudaGetDeviceCount reports 0 devices";
}

}  // namespace engine
