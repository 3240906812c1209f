// A pipeline stage on one CUDA device: its layers' weights uploaded once from the mmap, its part
// of the KV cache (f16) and its buffers in device memory, the forward pass through the kernels of
// kernels/cuda/. The hidden state enters and leaves through a pinned host buffer (hidden()), so
// stages connect through the host transport; device-to-device transports come later.
#pragma once

#include <memory>

#include "cpu_model.h"

namespace engine {

// Throws engine::Error naming the device and the reason (built without CUDA, a tensor type
// without a CUDA kernel, a KV type other than f16, out of device memory).
std::unique_ptr<Stage> make_cuda_stage(const CpuModel& model, StageLayers layers, int device,
                                       uint32_t n_ctx, uint32_t n_batch, KvType kv_type);

}  // namespace engine
