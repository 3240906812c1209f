// Boundary transfer time per transport (run by tools/device-check): moving the hidden state of 1,
// 8 and 128 tokens of a QwQ-32B-wide model (5120 floats a token) from one stage's device buffer
// to the next one's, the way each transport does it:
//   peer: one cudaMemcpyPeerAsync on device 0 (slices of one GPU), and from device 0 to device 1
//         where a second GPU exists; timed with events, mean of 200 after a warm-up.
//   host: device to pinned host buffer, wait, host copy to the next stage's pinned buffer, host to
//         device, wait (a GPU stage, the host transport, the next GPU stage); host clock, mean of 200.
// NCCL needs two GPUs to time a real transfer (a one-rank self-send is only tested for
// correctness). Prints a table, or one JSON object with --json.
#include <cuda_runtime.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "scheduler/cuda_check.h"

namespace {

constexpr int64_t kEmbd = 5120;
constexpr int kReps = 200;

double peer_us(int from, int to, size_t bytes) {
  float *src = nullptr, *dst = nullptr;
  ENGINE_CUDA_CHECK(cudaSetDevice(to));
  ENGINE_CUDA_CHECK(cudaMalloc(&dst, bytes));
  ENGINE_CUDA_CHECK(cudaSetDevice(from));
  ENGINE_CUDA_CHECK(cudaMalloc(&src, bytes));
  if (from != to) {
    int can = 0;
    ENGINE_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, to, from));
    if (can != 0) {
      ENGINE_CUDA_CHECK(cudaSetDevice(to));
      const cudaError_t status = cudaDeviceEnablePeerAccess(from, 0);
      if (status != cudaErrorPeerAccessAlreadyEnabled) ENGINE_CUDA_CHECK(status);
      cudaGetLastError();
      ENGINE_CUDA_CHECK(cudaSetDevice(from));
    }
  }
  cudaStream_t stream = nullptr;
  cudaEvent_t a = nullptr, b = nullptr;
  ENGINE_CUDA_CHECK(cudaStreamCreate(&stream));
  ENGINE_CUDA_CHECK(cudaEventCreate(&a));
  ENGINE_CUDA_CHECK(cudaEventCreate(&b));
  ENGINE_CUDA_CHECK(cudaMemcpyPeerAsync(dst, to, src, from, bytes, stream));  // warm-up
  ENGINE_CUDA_CHECK(cudaEventRecord(a, stream));
  for (int r = 0; r < kReps; ++r) ENGINE_CUDA_CHECK(cudaMemcpyPeerAsync(dst, to, src, from, bytes, stream));
  ENGINE_CUDA_CHECK(cudaEventRecord(b, stream));
  ENGINE_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  ENGINE_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaStreamDestroy(stream);
  cudaFree(src);
  cudaSetDevice(to);
  cudaFree(dst);
  return double(ms) * 1e3 / kReps;
}

double host_us(size_t bytes) {
  float *src = nullptr, *dst = nullptr, *pinned_out = nullptr, *pinned_in = nullptr;
  ENGINE_CUDA_CHECK(cudaSetDevice(0));
  ENGINE_CUDA_CHECK(cudaMalloc(&src, bytes));
  ENGINE_CUDA_CHECK(cudaMalloc(&dst, bytes));
  ENGINE_CUDA_CHECK(cudaMallocHost(&pinned_out, bytes));
  ENGINE_CUDA_CHECK(cudaMallocHost(&pinned_in, bytes));
  cudaStream_t stream = nullptr;
  ENGINE_CUDA_CHECK(cudaStreamCreate(&stream));
  auto once = [&] {
    ENGINE_CUDA_CHECK(cudaMemcpyAsync(pinned_out, src, bytes, cudaMemcpyDeviceToHost, stream));
    ENGINE_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::memcpy(pinned_in, pinned_out, bytes);
    ENGINE_CUDA_CHECK(cudaMemcpyAsync(dst, pinned_in, bytes, cudaMemcpyHostToDevice, stream));
    ENGINE_CUDA_CHECK(cudaStreamSynchronize(stream));
  };
  once();
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < kReps; ++r) once();
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / kReps;
  cudaStreamDestroy(stream);
  cudaFreeHost(pinned_out);
  cudaFreeHost(pinned_in);
  cudaFree(src);
  cudaFree(dst);
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  const bool json = argc > 1 && std::strcmp(argv[1], "--json") == 0;
  try {
    int n_devices = 0;
    ENGINE_CUDA_CHECK(cudaGetDeviceCount(&n_devices));
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    if (!json) fmt::print("{:<28} {:>7} {:>10} {:>10}\n", "transport", "tokens", "us", "GB/s");
    for (const int64_t tokens : {1, 8, 128}) {
      const size_t bytes = size_t(tokens * kEmbd) * sizeof(float);
      std::vector<std::pair<std::string, double>> results = {{"peer cuda0 -> cuda0", peer_us(0, 0, bytes)},
                                                             {"host (pinned, 2 copies)", host_us(bytes)}};
      if (n_devices > 1) results.emplace_back("peer cuda0 -> cuda1", peer_us(0, 1, bytes));
      for (const auto& [name, us] : results) {
        const double gbs = double(bytes) / (us * 1e-6) / 1e9;
        if (json) {
          rows.push_back({{"transport", name}, {"tokens", tokens}, {"bytes", bytes}, {"us", us}, {"gb_per_s", gbs}});
        } else {
          fmt::print("{:<28} {:>7} {:>10.2f} {:>10.2f}\n", name, tokens, us, gbs);
        }
      }
    }
    if (json) fmt::print("{}\n", rows.dump());
  } catch (const engine::Error& e) {
    fmt::print(stderr, "cuda-transport-bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
