// Host-only code (compiled by the C++ compiler so it can use fmt): runtime queries and errors.
#include <algorithm>

#include <fmt/format.h>

#include "scheduler/cuda_check.h"
#include "scheduler/cuda_runtime.h"
#include "engine/error.h"

namespace engine {

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  int device = -1;
  cudaGetDevice(&device);  // best effort: the error already happened
  // A failed call also leaves its status as the thread's last error; clear it, or the next
  // launch's cudaGetLastError check (in other, healthy work) would report this failure again.
  // Sticky errors (a faulted context) stay: every later call reports them anyway.
  cudaGetLastError();
  throw Error(fmt::format("cuda device {}: {} failed: {} ({}) at {}:{}", device, call,
                          cudaGetErrorString(status), static_cast<int>(status), file, line));
}

void throw_unsupported_type(const char* op, GgmlType type) {
  throw Error(fmt::format("{}: unsupported type {}", op, type_id_name(static_cast<uint32_t>(type))));
}

void throw_missing_activations(const char* op, GgmlType type, const char* which) {
  throw Error(fmt::format("{}: {} needs {} activations, none were given", op, traits(type).name, which));
}

void throw_unsupported(const char* op, const char* what) {
  throw Error(fmt::format("{}: {} is not supported", op, what));
}

void throw_bad_argument(const char* op, const char* what, int64_t value) {
  throw Error(fmt::format("{}: {} {} is out of range", op, what, value));
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

CudaDeviceInfo cuda_device_info(int index) {
  CudaDeviceInfo info;
  info.index = index;
  cudaDeviceProp prop{};
  ENGINE_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  int previous = 0;
  ENGINE_CUDA_CHECK(cudaGetDevice(&previous));
  ENGINE_CUDA_CHECK(cudaSetDevice(index));
  ENGINE_CUDA_CHECK(cudaFree(nullptr));  // creates the primary context
  size_t free = 0, total = 0;
  ENGINE_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  ENGINE_CUDA_CHECK(cudaSetDevice(previous));
  info.free_bytes = free;
  info.total_bytes = total;
  return info;
}

double cuda_copy_bandwidth(int index) {
  constexpr size_t kBytes = size_t(256) << 20;
  int previous = 0;
  ENGINE_CUDA_CHECK(cudaGetDevice(&previous));
  ENGINE_CUDA_CHECK(cudaSetDevice(index));
  void *src = nullptr, *dst = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  double best = 0;
  auto release = [&] {
    if (src != nullptr) cudaFree(src);
    if (dst != nullptr) cudaFree(dst);
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
    cudaSetDevice(previous);
  };
  try {
    ENGINE_CUDA_CHECK(cudaMalloc(&src, kBytes));
    ENGINE_CUDA_CHECK(cudaMalloc(&dst, kBytes));
    ENGINE_CUDA_CHECK(cudaMemset(src, 1, kBytes));
    ENGINE_CUDA_CHECK(cudaEventCreate(&start));
    ENGINE_CUDA_CHECK(cudaEventCreate(&stop));
    for (int rep = 0; rep < 6; ++rep) {  // the first warms up
      ENGINE_CUDA_CHECK(cudaEventRecord(start));
      ENGINE_CUDA_CHECK(cudaMemcpyAsync(dst, src, kBytes, cudaMemcpyDeviceToDevice));
      ENGINE_CUDA_CHECK(cudaEventRecord(stop));
      ENGINE_CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      ENGINE_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      if (rep > 0 && ms > 0) best = std::max(best, 2.0 * double(kBytes) / (double(ms) * 1e-3));
    }
  } catch (...) {
    release();
    throw;
  }
  release();
  return best;
}

bool cuda_can_access_peer(int a, int b) noexcept {
  int ok = 0;
  return cudaDeviceCanAccessPeer(&ok, a, b) == cudaSuccess && ok != 0;
}

}  // namespace engine
