// Device memory for GPU tests: a copy of a host vector, freed with the buffer, read back whole.
// Allocation and copy failures fail the test with the call's status (ADD_FAILURE), and the buffer
// is then empty.
#pragma once

#if ENGINE_HAVE_CUDA
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <utility>
#include <vector>

namespace engine::test {

class DeviceBuffer {
 public:
  template <typename T>
  explicit DeviceBuffer(const std::vector<T>& host) : bytes_(host.size() * sizeof(T)) {
    if (bytes_ == 0) return;
    if (const cudaError_t s = cudaMalloc(&p_, bytes_); s != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc(" << bytes_ << "): " << cudaGetErrorString(s);
      p_ = nullptr;
      bytes_ = 0;
      return;
    }
    if (const cudaError_t s = cudaMemcpy(p_, host.data(), bytes_, cudaMemcpyHostToDevice); s != cudaSuccess) {
      ADD_FAILURE() << "cudaMemcpy to the device: " << cudaGetErrorString(s);
    }
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  ~DeviceBuffer() {
    if (p_ != nullptr) cudaFree(p_);
  }

  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

  // The whole buffer back on the host (after the default stream's work so far).
  template <typename T>
  std::vector<T> to_host() const {
    std::vector<T> out(bytes_ / sizeof(T));
    if (const cudaError_t s = cudaMemcpy(out.data(), p_, out.size() * sizeof(T), cudaMemcpyDeviceToHost);
        s != cudaSuccess) {
      ADD_FAILURE() << "cudaMemcpy to the host: " << cudaGetErrorString(s);
    }
    return out;
  }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace engine::test
#endif
