// What the CUDA runtime reports, usable from code compiled without CUDA headers. Builds without
// the CUDA backend link the stub in cuda_runtime_stub.cpp, which reports no device.
#pragma once

#include <cstdint>
#include <string>

namespace engine {

// Number of usable CUDA devices; 0 when the backend is not built, no driver is loaded or the
// runtime fails in any way (this machine has the toolkit but no GPU).
int cuda_device_count() noexcept;

// Why there is no device ("built without CUDA", the runtime's error string), or "" when there is.
std::string cuda_unavailable_reason();

struct CudaDeviceInfo {
  int index = -1;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  // measured after this process's context exists on the device
};

// Queries device `index`, creating its context first so the context's own memory is already
// taken out of free_bytes. Throws engine::Error naming the device and call on failure.
CudaDeviceInfo cuda_device_info(int index);

// The device's copy bandwidth in bytes/s, the roofline of a memory-bound kernel: the best of a few
// device-to-device copies of 256 MiB, counting the bytes read and the bytes written (the
// convention of bandwidth tests and of the targets). Throws engine::Error on failure.
double cuda_copy_bandwidth(int index);

// Whether device a can read device b's memory directly (false on any error).
bool cuda_can_access_peer(int a, int b) noexcept;

}  // namespace engine
