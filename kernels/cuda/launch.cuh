// Launch helpers: per-device caches of what a launch asks the runtime (attributes, the shared
// memory opt-in), and programmatic dependent launch (sm_90 and later) for the decode step's
// kernels: a kernel launched
// by launch_dependent may start while the kernel before it in the stream is still running (from
// the moment every block of that one has called allow_next_kernel), so its launch, its blocks'
// placement and whatever it does before wait_for_previous_kernel (address arithmetic, prefetching
// weights that no kernel writes) overlap the previous kernel's tail instead of following it. On
// older GPUs, and with ENGINE_CUDA_PDL=0 (to measure what it gains), launches are ordinary.
//
// The contract for a kernel launched this way: it calls wait_for_previous_kernel before it reads
// or writes any memory another kernel of the stream writes or reads, and it waits even when it
// has no such memory, since the kernel after it relies on this one having finished only once all
// before it have (a block that touches nothing may leave without waiting: the grid finishes only
// after its blocks that wait). It calls allow_next_kernel after its wait (a no-op without a
// dependent launch).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "scheduler/cuda_check.h"

namespace engine {

// Blocks until the previous kernel in the stream has finished and its writes are visible.
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Lets the next kernel in the stream launch once every block of this one has called it.
__device__ __forceinline__ void allow_next_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::);
#endif
}

// Asks L2 for the 128-byte line at p (no register, no wait): for weights a kernel reads later.
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p)); }

// Devices the per-device caches below remember (others are asked every time).
constexpr int kCachedDevices = 64;

// A non-negative value of the current device, ask(device) the first time per device: `known` is
// the caller's static cache (value + 1; 0: not asked yet).
template <typename Ask>
int per_device(std::atomic<int> (&known)[kCachedDevices], Ask&& ask) {
  int device = 0;
  ENGINE_CUDA_CHECK(cudaGetDevice(&device));
  const bool cached = device >= 0 && device < kCachedDevices;
  if (cached) {
    const int v = known[device].load(std::memory_order_relaxed);
    if (v != 0) return v - 1;
  }
  const int value = ask(device);
  if (cached) known[device].store(value + 1, std::memory_order_relaxed);
  return value;
}

// kAttribute of the current device, asked once per device: launches call this on every prompt
// product and decode kernel.
template <cudaDeviceAttr kAttribute>
int device_attribute() {
  static std::atomic<int> known[kCachedDevices];
  return per_device(known, [](int device) {
    int value = 0;
    ENGINE_CUDA_CHECK(cudaDeviceGetAttribute(&value, kAttribute, device));
    return value;
  });
}

// Lets `kernel` take `bytes` of dynamic shared memory on the current device (past 48 KiB a
// kernel must opt in, per device), once per device: `opted_in` is the caller's static mask of
// devices done for this kernel.
template <typename... Params>
void opt_in_shared_bytes(void (*kernel)(Params...), size_t bytes, std::atomic<uint64_t>& opted_in) {
  int device = 0;
  ENGINE_CUDA_CHECK(cudaGetDevice(&device));
  const uint64_t bit = device >= 0 && device < kCachedDevices ? uint64_t(1) << device : 0;
  if (bit != 0 && (opted_in.load(std::memory_order_relaxed) & bit) != 0) return;
  ENGINE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  opted_in.fetch_or(bit, std::memory_order_relaxed);
}

// Blocks of `kernel` (`threads` threads, `smem` bytes of dynamic shared memory, opted in first)
// that one SM of the current device holds at once, asked once per device (`known`: as per_device).
template <typename... Params>
int resident_blocks_per_sm(void (*kernel)(Params...), int threads, size_t smem,
                           std::atomic<int> (&known)[kCachedDevices]) {
  return per_device(known, [&](int) {
    int blocks = 0;
    ENGINE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, smem));
    return blocks;
  });
}

// Whether launches on the current device may overlap (compute capability 9.0 or later, and
// ENGINE_CUDA_PDL is not 0).
inline bool dependent_launch_enabled() {
  static const bool allowed = [] {
    const char* v = std::getenv("ENGINE_CUDA_PDL");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return allowed && device_attribute<cudaDevAttrComputeCapabilityMajor>() >= 9;
}

// kernel<<<grid, block, shared_bytes, stream>>>(args...), overlapping the previous kernel where
// dependent_launch_enabled(); the launch's status is checked.
template <typename... Params, typename... Args>
void launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                      Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  cudaLaunchAttribute overlap = {};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  if (dependent_launch_enabled()) {
    config.attrs = &overlap;
    config.numAttrs = 1;
  }
  ENGINE_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

}  // namespace engine
