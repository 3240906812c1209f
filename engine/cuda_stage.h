// A pipeline stage on one CUDA device: its layers' weights uploaded once from the mmap, its part
// of the KV cache (f16) and its buffers in device memory, the forward pass through the kernels of
// kernels/cuda/. The hidden state enters and leaves through a pinned host buffer (hidden()), or
// stays on the device where a device transport connects the stage (Stage::cuda_link()).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "cpu_model.h"
#include "engine/devices.h"

namespace engine {

// The stage runs on device.cuda_index and allocates exactly what the memory model counts for it,
// in one block; device.free_bytes, when not 0, is its budget (a slice's, or the free memory the
// plan saw), and a stage that would need more is refused before anything is allocated.
// Throws engine::Error naming the device and the reason (built without CUDA, a tensor type
// without a CUDA kernel, a KV type other than f16, over budget, out of device memory).
// uploaded(bytes), when set, is called after each tensor's upload with its size in bytes (the
// weights' sum is gpu_weight_bytes for the stage's layers and head).
std::unique_ptr<Stage> make_cuda_stage(const CpuModel& model, StageLayers layers, const Device& device,
                                       uint32_t n_ctx, uint32_t n_batch, KvType kv_type,
                                       const std::function<void(uint64_t)>& uploaded = {});

}  // namespace engine
