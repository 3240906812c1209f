// What the CUDA runtime reports, usable from code compiled without CUDA headers. Builds without
// the CUDA backend link the stub in cuda_runtime_stub.cpp, which reports no device.
#pragma once

#include <string>

namespace engine {

// Number of usable CUDA devices; 0 when the backend is not built, no driver is loaded or the
// runtime fails in any way (this machine has the toolkit but no GPU).
int cuda_device_count() noexcept;

// Why there is no device ("built without CUDA", the runtime's error string), or "" when there is.
std::string cuda_unavailable_reason();

}  // namespace engine
