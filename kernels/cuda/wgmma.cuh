// Hopper's warpgroup matrix multiply (wgmma, sm_90a only): a warpgroup (4 consecutive warps,
// 128 threads) multiplies a 64 x 16 tile of A by a 16 x N tile of B into a 64 x N f32
// accumulator spread over its registers, reading both tiles from shared memory through
// descriptors, asynchronously: issue (after wgmma_fence), commit, and wait for the group before
// the accumulators are read or the tiles overwritten.
//
// Shared-memory tiles here are K-major fp16 with the 128-byte swizzle (swizzle.h), starting
// 1024-byte aligned (the swizzle is a function of the address bits 4-9). The descriptor of the k16 slice s (values 16s .. 16s + 15) is the tile's address
// plus 32 s bytes; groups of 8 rows lie 1024 bytes apart (the stride byte offset).
//
// Accumulator layout (per warp w of the warpgroup, g = lane / 4, t = lane % 4): d[4j + 0, 1] =
// row 16w + g, columns 8j + 2t and 8j + 2t + 1; d[4j + 2, 3] = row 16w + g + 8, same columns.
#pragma once

#include <cstdint>

#include "swizzle.h"

namespace engine {

// The descriptor of a swizzled K-major tile at shared address `address`: start address, leading
// byte offset (unused by swizzled K-major layouts; 1 by convention), stride byte offset 1024,
// swizzle mode 1 (128 bytes) in bits 62-63. Addresses and offsets are in units of 16 bytes.
__device__ __forceinline__ uint64_t wgmma_descriptor(uint32_t address) {
  return uint64_t((address & 0x3FFFF) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) |
         (uint64_t(1) << 62);
}

// Orders this warpgroup's register and shared-memory accesses before the wgmma issued after it.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

// Closes the group of wgmma issued since the last commit.
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }

// Waits until at most kPending of this warpgroup's committed groups are still running.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// Makes this thread's earlier shared-memory writes (stores, landed cp.async) visible to the
// async proxy that wgmma reads through; a barrier after it extends that to the block.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Shared-memory barriers (mbarrier) for warp-specialized kernels: a barrier at shared address
// `bar` (8 bytes, 8-byte aligned) completes a phase when `count` arrivals have come, then starts
// the next; a waiter names the phase by its parity (0 for a barrier's first phase, 1 for its
// second, ...). Arrival releases and the completed wait acquires the arriving threads' memory
// operations, at the block's scope.
__device__ __forceinline__ void mbarrier_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(bar) : "memory");
}

// Waits until the phase of parity `parity` has completed. A wait past about ten seconds traps
// (the launch fails with an error) instead of hanging: it can only mean a missing arrival.
__device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t parity) {
  const long long start = clock64();
  for (;;) {
    uint32_t done = 0;
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
    if (done != 0) return;
    if (clock64() - start > 20'000'000'000LL) __trap();
  }
}

// A barrier among the first `threads` threads of the block (whole warps), id 1..15 (0 is
// __syncthreads'): the producer warps of a warp-specialized kernel, without the consumers.
template <int kId, int kThreads>
__device__ __forceinline__ void named_barrier() {
  asm volatile("bar.sync %0, %1;\n" ::"n"(kId), "n"(kThreads) : "memory");
}

// Keeps the compiler from moving reads or writes of v across this point (accumulators while a
// wgmma that writes them may be running).
__device__ __forceinline__ void fence_operand(float& v) { asm volatile("" : "+f"(v)::"memory"); }

// d (64 x 64, f32, the accumulator layout above) = A (64 x 16, descriptor a) . B (16 x 64,
// descriptor b; both K-major fp16 in shared memory), plus d where `accumulate`, issued
// asynchronously for the warpgroup. The first product of a sum sets d: accumulators need no
// zeroing, which would be instructions defining them while earlier products may still run (and
// make ptxas serialize every wgmma of the kernel).
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[32], uint64_t a, uint64_t b, bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
      "}, %32, %33, p, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(a), "l"(b), "r"(int(accumulate))
      : "memory");
}

// The same for 128 columns.
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t a, uint64_t b, bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, %64, %65, p, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(a), "l"(b), "r"(int(accumulate))
      : "memory");
}

}  // namespace engine
