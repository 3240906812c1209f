// Built instead of cuda_runtime.cpp when the CUDA backend is off.
#include "scheduler/cuda_runtime.h"

#include <fmt/format.h>

#include "engine/error.h"

namespace engine {

int cuda_device_count() noexcept { return 0; }

std::string cuda_unavailable_reason() { return "no CUDA device: engine built without CUDA"; }

CudaDeviceInfo cuda_device_info(int index) {
  throw Error(fmt::format("cuda device {}: engine built without CUDA", index));
}

double cuda_copy_bandwidth(int index) {
  throw Error(fmt::format("cuda device {}: engine built without CUDA", index));
}

bool cuda_can_access_peer(int, int) noexcept { return false; }

}  // namespace engine
