// The prompt offload on a CUDA device (engine/prompt_offload.h). Host code on one stream:
//   the batch: its f32 rows through the pinned buffer into the device's f32 buffer, then to fp16
//     (cuda_to_f16_saturated), which every product of the group reads;
//   each matrix: streamed from the mmap in chunks of whole rows through two pinned chunk buffers
//     (the host fills one, in the GPU layout, with the stage's threads while the copy engine sends
//     the other) into the weight slot; the matmul writes its f32 product into the f32 buffer
//     (free once the fp16 batch exists); the product comes back through the pinned buffer while
//     the next matrix streams in.
// Memory: one cudaMalloc of exactly prompt_offload_device_bytes, carved by a DeviceArena, and
// prompt_offload_host_bytes of pinned host memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "engine/error.h"
#include "engine/gpu_layout.h"
#include "engine/memory_model.h"
#include "kernels/cuda/matmul.h"
#include "prompt_offload.h"
#include "scheduler/cuda_check.h"
#include "scheduler/device_arena.h"

namespace engine {
namespace {

// What the offload holds, released even when the constructor fails halfway.
struct OffloadResources {
  int device = -1;
  cudaStream_t stream = nullptr;
  cudaEvent_t chunk_sent[2] = {nullptr, nullptr};  // a pinned chunk's copy to the device is done
  cudaEvent_t product_back = nullptr;              // a product is in the pinned buffer
  void* arena = nullptr;
  uint8_t* pinned_chunks = nullptr;  // two chunks of kPromptOffloadChunkBytes
  float* pinned_rows = nullptr;      // the batch's input, then each product
  ~OffloadResources() {
    if (device < 0) return;
    cudaSetDevice(device);
    if (stream != nullptr) cudaStreamSynchronize(stream);  // nothing may still use what is freed
    for (cudaEvent_t e : chunk_sent) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    if (product_back != nullptr) cudaEventDestroy(product_back);
    if (arena != nullptr) cudaFree(arena);
    if (pinned_chunks != nullptr) cudaFreeHost(pinned_chunks);
    if (pinned_rows != nullptr) cudaFreeHost(pinned_rows);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

class CudaPromptOffload final : public PromptOffload {
 public:
  CudaPromptOffload(const CpuModel& model, std::pair<uint32_t, uint32_t> layers, const Device& device,
                    uint32_t n_batch)
      : device_(device.cuda_index), n_batch_(n_batch), shapes_(prompt_offload_shapes(model.spec, layers)),
        arena_(fmt::format("{}, prompt offload of layers {}-{}", device.name, layers.first, layers.second),
               prompt_offload_device_bytes(model.spec, layers, n_batch)) {
    ENGINE_CUDA_CHECK(cudaSetDevice(device_));
    res_.device = device_;
    ENGINE_CUDA_CHECK(cudaStreamCreateWithFlags(&res_.stream, cudaStreamNonBlocking));
    for (cudaEvent_t& e : res_.chunk_sent) ENGINE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    ENGINE_CUDA_CHECK(cudaEventCreateWithFlags(&res_.product_back, cudaEventDisableTiming));
    const cudaError_t status = cudaMalloc(&res_.arena, arena_.capacity());
    if (status != cudaSuccess) {
      size_t free_bytes = 0, total = 0;
      cudaMemGetInfo(&free_bytes, &total);
      throw Error(fmt::format("cuda{}: allocating the prompt offload's {} bytes failed: {} ({} bytes free of {})",
                              device_, arena_.capacity(), cudaGetErrorString(status), free_bytes, total));
    }
    auto* base = static_cast<uint8_t*>(res_.arena);
    weights_ = base + arena_.take(shapes_.max_matrix, "offload weights");
    x16_ = reinterpret_cast<uint16_t*>(base + arena_.take(2 * uint64_t(n_batch) * shapes_.max_k, "offload x16"));
    rows_ = reinterpret_cast<float*>(base + arena_.take(row_buffer_bytes(), "offload rows"));
    arena_.expect_full();
    ENGINE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&res_.pinned_chunks), 2 * kPromptOffloadChunkBytes));
    ENGINE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&res_.pinned_rows), row_buffer_bytes()));
  }

  bool accepts(GgmlType type, int64_t K) const override {
    return cuda_matmul_supports(type, K) && gpu_row_bytes(type, K) <= kPromptOffloadChunkBytes &&
           uint64_t(K) <= shapes_.max_k;
  }

  void multiply(std::span<const MatmulProduct> products, int64_t K, const float* x, int64_t n,
                ThreadPool& pool) override {
    if (n > int64_t(n_batch_)) {
      throw Error(fmt::format("cuda{}: prompt offload of {} tokens, sized for {}", device_, n, n_batch_));
    }
    ENGINE_CUDA_CHECK(cudaSetDevice(device_));
    cudaStream_t stream = res_.stream;
    pool.parallel_for(n, [&](int64_t begin, int64_t end) {
      std::memcpy(res_.pinned_rows + begin * K, x + begin * K, sizeof(float) * uint64_t((end - begin) * K));
    });
    ENGINE_CUDA_CHECK(cudaMemcpyAsync(rows_, res_.pinned_rows, sizeof(float) * uint64_t(n * K),
                                      cudaMemcpyHostToDevice, stream));
    cuda_to_f16_saturated(rows_, x16_, n * K, stream);
    const MatmulProduct* waiting = nullptr;  // a product on its way back through pinned_rows
    for (const MatmulProduct& p : products) {
      if (uint64_t(p.N) > shapes_.max_n) {
        throw Error(fmt::format("cuda{}: prompt offload of a {}-row matrix, sized for {}", device_, p.N, shapes_.max_n));
      }
      stream_weights(p, K, pool);
      cuda_matmul(p.type, weights_, K, p.N, x16_, n, rows_, stream);
      if (waiting != nullptr) take_product(*waiting, n, pool);
      ENGINE_CUDA_CHECK(cudaMemcpyAsync(res_.pinned_rows, rows_, sizeof(float) * uint64_t(n * p.N),
                                        cudaMemcpyDeviceToHost, stream));
      ENGINE_CUDA_CHECK(cudaEventRecord(res_.product_back, stream));
      waiting = &p;
    }
    if (waiting != nullptr) take_product(*waiting, n, pool);
  }

 private:
  uint64_t row_buffer_bytes() const { return 4 * uint64_t(n_batch_) * std::max(shapes_.max_k, shapes_.max_n); }

  // The matrix's rows into the weight slot, a chunk at a time through the two pinned chunks; the
  // copies queue behind the stream's previous matmul, which reads the slot.
  void stream_weights(const MatmulProduct& p, int64_t K, ThreadPool& pool) {
    const uint64_t file_row = type_bytes(p.type, uint64_t(K));
    const uint64_t gpu_row = gpu_row_bytes(p.type, K);
    const bool regroup = gpu_layout_differs(p.type);
    const int64_t rows_per_chunk = int64_t(kPromptOffloadChunkBytes / gpu_row);
    const auto* src = static_cast<const uint8_t*>(p.w);
    for (int64_t r0 = 0; r0 < p.N; r0 += rows_per_chunk) {
      const int64_t rows = std::min(rows_per_chunk, p.N - r0);
      const int slot = next_chunk_;
      next_chunk_ ^= 1;
      ENGINE_CUDA_CHECK(cudaEventSynchronize(res_.chunk_sent[slot]));  // its last copy has left
      uint8_t* chunk = res_.pinned_chunks + uint64_t(slot) * kPromptOffloadChunkBytes;
      pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
        const uint8_t* from = src + uint64_t(r0 + begin) * file_row;
        uint8_t* to = chunk + uint64_t(begin) * gpu_row;
        if (regroup) {
          to_gpu_layout(p.type, K, end - begin, from, to);
        } else {
          std::memcpy(to, from, uint64_t(end - begin) * gpu_row);
        }
      });
      ENGINE_CUDA_CHECK(cudaMemcpyAsync(weights_ + uint64_t(r0) * gpu_row, chunk, uint64_t(rows) * gpu_row,
                                        cudaMemcpyHostToDevice, res_.stream));
      ENGINE_CUDA_CHECK(cudaEventRecord(res_.chunk_sent[slot], res_.stream));
    }
  }

  // The product in pinned_rows, once it has arrived, into its y.
  void take_product(const MatmulProduct& p, int64_t n, ThreadPool& pool) {
    ENGINE_CUDA_CHECK(cudaEventSynchronize(res_.product_back));
    pool.parallel_for(n, [&](int64_t begin, int64_t end) {
      std::memcpy(p.y + begin * p.N, res_.pinned_rows + begin * p.N, sizeof(float) * uint64_t((end - begin) * p.N));
    });
  }

  int device_;
  uint32_t n_batch_;
  PromptOffloadShapes shapes_;
  DeviceArena arena_;
  OffloadResources res_;
  uint8_t* weights_ = nullptr;
  uint16_t* x16_ = nullptr;
  float* rows_ = nullptr;
  int next_chunk_ = 0;
};

}  // namespace

std::unique_ptr<PromptOffload> make_cuda_prompt_offload(const CpuModel& model, std::pair<uint32_t, uint32_t> layers,
                                                        const Device& device, uint32_t n_batch) {
  return std::make_unique<CudaPromptOffload>(model, layers, device, n_batch);
}

}  // namespace engine
