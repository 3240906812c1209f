// Prompt offload (engine/memory_model.h): a CPU stage's products with prompt batches of at least
// kPromptOffloadMinBatch tokens, multiplied on a GPU. Each matrix is streamed from the mmap to the
// GPU for the product, so a batch reads the layer's weights once over PCIe instead of running its
// flops on the CPU (a 512-token batch through a QwQ-32B layer: about 500 GFLOP). Decode stays on
// the CPU, where it is bound by the same weight bytes read from RAM.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "cpu_model.h"
#include "engine/devices.h"

namespace engine {

class PromptOffload {
 public:
  virtual ~PromptOffload() = default;
  // Whether it multiplies matrices of this type and width (K).
  virtual bool accepts(GgmlType type, int64_t K) const = 0;
  // Every product's y[b][n] = sum_k W[n][k] * x[b][k] for b < n_batch, as matmul_group gives it
  // (kernels/cpu/ops.h) up to the GPU's fp16 activations; every W accepted at width K. The CPU
  // stage's pool is lent for staging the weights; the call returns with every y written.
  virtual void multiply(std::span<const MatmulProduct> products, int64_t K, const float* x, int64_t n_batch,
                        ThreadPool& pool) = 0;
};

// The offload of `layers` (inclusive) of a CPU stage onto a CUDA device, for batches of up to
// n_batch tokens: it allocates exactly prompt_offload_device_bytes on the device and
// prompt_offload_host_bytes of pinned host memory. Throws engine::Error naming the device (built
// without CUDA, out of memory with the numbers).
std::unique_ptr<PromptOffload> make_cuda_prompt_offload(const CpuModel& model, std::pair<uint32_t, uint32_t> layers,
                                                        const Device& device, uint32_t n_batch);

}  // namespace engine
