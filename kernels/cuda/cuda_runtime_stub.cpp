// Built instead of cuda_runtime_info.cu when the CUDA backend is off.
#include "cuda_runtime_info.h"

namespace engine {

int cuda_device_count() noexcept { return 0; }

std::string cuda_unavailable_reason() { return "no CUDA device: engine built without CUDA"; }

}  // namespace engine
