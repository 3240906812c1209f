// Builds without the CUDA backend: no prompt offload.
#include <fmt/format.h>

#include "engine/error.h"
#include "prompt_offload.h"

namespace engine {

std::unique_ptr<PromptOffload> make_cuda_prompt_offload(const CpuModel&, std::pair<uint32_t, uint32_t> layers,
                                                        const Device& device, uint32_t) {
  throw Error(fmt::format("prompt offload of layers {}-{} to {}: this build has no CUDA backend", layers.first,
                          layers.second, device.name));
}

}  // namespace engine
