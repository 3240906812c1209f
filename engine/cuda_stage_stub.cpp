// Builds without the CUDA backend: no stage can run on a GPU.
#include <fmt/format.h>

#include "cuda_stage.h"
#include "engine/error.h"

namespace engine {

std::unique_ptr<Stage> make_cuda_stage(const CpuModel&, StageLayers layers, const Device& device, uint32_t,
                                       uint32_t, KvType, const std::function<void(uint64_t)>&) {
  throw Error(fmt::format("stage with layers {}-{} on {}: this build has no CUDA backend", layers.first,
                          layers.last, device.name));
}

}  // namespace engine
