// Tensor-core matmul for prompt batches on Hopper (sm_90a): Y[M][N] = X[M][K] . W[N][K]^T, W in
// its GGUF blocks, by warpgroup matrix multiplies (wgmma) from shared memory.
//
// Layout: as matmul.cu's kernel (W: N rows of K values in the GPU layout, 16-byte aligned; X: M
// rows of K fp16 values, 16-byte aligned rows; Y: M rows of N floats).
// Launch: 128 weight rows x 128 tokens per block of 256 threads (two warpgroups of 64 rows), or
// x 64 tokens per block of 128 threads (one warpgroup, both 64-row halves); grid (ceil(M /
// tokens), row tiles, splits of K: as matmul.cu's); dynamic shared memory wgmma_shared_bytes
// (100-225 KiB: one or two blocks per SM). K goes in steps of 64 values. Every global read is a
// cp.async issued kAhead steps ahead: the step's X tile, stored straight into its swizzled place
// (swizzle.h), and, when a step opens
// one, every weight row's next window of raw blocks (matmul_tiles.cuh). A step's weights are
// decoded from the raw window into one of two swizzled fp16 tiles while the wgmma of the step
// before runs on the other: the tensor cores wait on neither the loads nor the decoding, only
// on the two barriers of a step.
// Bound: compute (tensor cores; the decoding's instruction issue, about five instructions per
// weight, shares the SM with them) at prompt sizes; each weight byte is read from memory about
// once (the token tiles of a weight tile run side by side) and from L2 ceil(M / tokens) times.
// Precision: as matmul.cu: weights rounded once to fp16, activations as given, f32 sums.
#include <cuda_fp16.h>

#include <atomic>

#include "launch.cuh"
#include "matmul_wgmma.h"
#include "scheduler/cuda_check.h"
#include "tensor_core.cuh"
#include "wgmma.cuh"

#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "matmul_wgmma.cu is built for sm_90a only (its target in CMakeLists.txt)"
#endif

namespace engine {
namespace {

using namespace matmul_tiles;

constexpr int kStep = 64;   // values of K per step: one 128-byte swizzled row of fp16
constexpr int kRowBytes = kStep * 2;
constexpr int kAhead = 3;   // steps whose copies are in flight while one is computed
constexpr int kXStages = kAhead + 1;
constexpr size_t kHopperOptInSharedBytes = 227 * 1024;

// kXStages X tiles, two weight tiles and raw_buffers() windows of every row, after up to 1023
// bytes that align the tiles to 1024.
template <typename Loader, int kTokens>
constexpr size_t wgmma_shared_bytes() {
  return 1024 + size_t(kXStages) * kTokens * kRowBytes + 2 * size_t(kTileRows) * kRowBytes +
         size_t(raw_buffers<Loader, kStep, kAhead>()) * kTileRows * Loader::kWindowBytes;
}

// fence_operand on every accumulator of a block's products.
template <int kMmas, int kAcc>
__device__ __forceinline__ void fence_accumulators(float (&acc)[kMmas][kAcc]) {
#pragma unroll
  for (int m = 0; m < kMmas; ++m) {
#pragma unroll
    for (int i = 0; i < kAcc; ++i) fence_operand(acc[m][i]);
  }
}

// d (+)= A . B for one k16 slice: 64 weight rows by kTokens tokens.
template <int kTokens>
__device__ __forceinline__ void wgmma_slice(float (&d)[kTokens / 2], uint64_t a, uint64_t b, bool accumulate) {
  if constexpr (kTokens == 128) {
    wgmma_m64n128k16(d, a, b, accumulate);
  } else {
    static_assert(kTokens == 64, "tiles of 64 or 128 tokens");
    wgmma_m64n64k16(d, a, b, accumulate);
  }
}

// Step t's X tile (kTokens tokens x kStep values) into xt by cp.async from kThreads threads:
// chunk i = tid + kThreads j is token i / 8, values 8 (i % 8) .. + 7, stored straight into its
// swizzled place; tokens past M copy nothing and are zero-filled.
template <int kTokens, int kThreads>
__device__ __forceinline__ void copy_x_step(uint8_t* xt, const uint16_t* __restrict__ x, int64_t K, int64_t M,
                                            int64_t tok0, int64_t t, int tid) {
#pragma unroll
  for (int j = 0; j < kTokens * (kStep / 8) / kThreads; ++j) {
    const int i = tid + kThreads * j, r = i / 8, c = i % 8;
    const bool valid = tok0 + r < M;
    const uint16_t* src = x + (valid ? tok0 + r : 0) * K + t * kStep + 8 * c;
    cp_async16(xt + swizzled_offset(r, 8 * c), src, valid);
  }
}

// A step's weights (values e0 .. e0 + kStep - 1 of window `window`, its rows' copies at win) into
// the swizzled tile wt from kThreads threads, in runs of kRun values (a K-quant group, decoded
// from one read of its header and codes, or eight): run i = tid + kThreads j is row
// i / kRunsPerRow, values kRun (i % kRunsPerRow) .. + kRun - 1 of the step, kRun / 8 16-byte
// chunks of the tile (a quarter warp's stores fall in distinct banks either way).
template <typename Loader, int kThreads>
__device__ __forceinline__ void decode_step(uint8_t* wt, const uint8_t* win, int64_t window, int e0, int tid) {
  constexpr int kRun = run_values<Loader>(), kRunsPerRow = kStep / kRun;
  static_assert(kStep % kRun == 0 && kTileRows * kRunsPerRow % kThreads == 0, "a step's runs fill the threads");
#pragma unroll
  for (int j = 0; j < kTileRows * kRunsPerRow / kThreads; ++j) {
    const int i = tid + kThreads * j, r = i / kRunsPerRow, u = i % kRunsPerRow;
    uint4 v[kRun / 8];
    decode_run<Loader>(win + r * Loader::kWindowBytes, e0 + kRun * u, window, v);
#pragma unroll
    for (int c = 0; c < kRun / 8; ++c) *reinterpret_cast<uint4*>(wt + swizzled_offset(r, kRun * u + 8 * c)) = v[c];
  }
}

// One 64-row product's sums from a warp of its warpgroup (warp_in_group 0..3) to matrix o: weight
// rows n0 + 16 warp_in_group .. + 15, tokens tok0 .. tok0 + kTokens - 1. Accumulator 4j + r is
// row 16 warp_in_group + g + 8 (r / 2), token 8j + 2 t4 + r % 2 (g = lane / 4, t4 = lane % 4;
// wgmma.cuh); rows past N and tokens past M are left alone.
template <int kTokens>
__device__ __forceinline__ void store_product_tile(const float (&acc)[kTokens / 2], const MatvecOutput& o,
                                                   float* __restrict__ partials, int split, int64_t M, int64_t n0,
                                                   int64_t tok0, int warp_in_group, int lane) {
  const int g = lane / 4, t4 = lane % 4;
  const int64_t n = n0 + 16 * warp_in_group + g;
#pragma unroll
  for (int j = 0; j < kTokens / 8; ++j) {
    const int64_t tok = tok0 + 8 * j + 2 * t4;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t nn = n + (r / 2) * 8, mm = tok + r % 2;
      if (nn < o.N && mm < M) store_product(o, partials, split, M, nn, mm, acc[4 * j + r]);
    }
  }
}

template <typename Loader, int kTokens>
__global__ void __launch_bounds__(2 * kTokens, 1)
    matmul_wgmma_kernel(MatmulOutputs outs, uint64_t row_bytes, int64_t K, const uint16_t* __restrict__ x, int64_t M,
                        int64_t split_steps, float* __restrict__ partials) {
  constexpr int kThreads = 2 * kTokens;
  constexpr int kGroupRows = kTileRows / (kThreads / 128);  // weight rows per warpgroup: 64 or 128
  constexpr int kMmas = kGroupRows / 64;                    // 64-row products per k16 slice
  constexpr int kAcc = kTokens / 2;                         // accumulators per product and thread
  constexpr int kStepsPerWindow = Loader::kWindowValues / kStep;
  constexpr int kRawBuffers = raw_buffers<Loader, kStep, kAhead>();
  static_assert(Loader::kWindowValues % kStep == 0, "a step lies in one window");

  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_raw + (1024 - smem_address(smem_raw) % 1024) % 1024;
  uint8_t* xs = smem;                                        // [kXStages][kTokens][128 bytes], swizzled
  uint8_t* ws = xs + kXStages * kTokens * kRowBytes;         // [2][kTileRows][128 bytes], swizzled
  uint8_t* raw = ws + 2 * kTileRows * kRowBytes;             // [kRawBuffers][kTileRows][kWindowBytes]

  // Token tiles along x: the blocks that run together share weight tiles, read from memory once
  // and from L2 by the other token tiles (X, a few MB, stays in L2 throughout).
  const TileMatrix tm = tile_matrix(outs, int(blockIdx.y));
  const auto mine = [&]() -> const MatvecOutput& { return output(outs, tm.which); };
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, group = tid / 128;
  const int64_t row0 = int64_t(int(blockIdx.y) - tm.tile_begin) * kTileRows, tok0 = int64_t(blockIdx.x) * kTokens;
  // This block's steps: split blockIdx.z of K (whole windows; all of K without a split).
  const int64_t first = int64_t(blockIdx.z) * split_steps, end = first + split_steps;

  // Step t's copies, one cp.async group (empty past the split's last step): its X tile, and the
  // window of every weight row when t opens one (rows past N copy nothing and are zero-filled).
  auto issue = [&](int64_t t) {
    if (t < end) {
      copy_x_step<kTokens, kThreads>(xs + (t % kXStages) * kTokens * kRowBytes, x, K, M, tok0, t, tid);
      if (t % kStepsPerWindow == 0) {
        const int64_t window = t / kStepsPerWindow;
        copy_window<Loader, kThreads>(raw + (window % kRawBuffers) * kTileRows * Loader::kWindowBytes, mine(), row0,
                                      row_bytes, K, window, tid);
      }
    }
    cp_async_commit();
  };

  // Step t's weights from the raw window to weight tile t % 2.
  auto decode = [&](int64_t t) {
    const int64_t window = t / kStepsPerWindow;
    decode_step<Loader, kThreads>(ws + (t % 2) * kTileRows * kRowBytes,
                                  raw + (window % kRawBuffers) * kTileRows * Loader::kWindowBytes, window,
                                  int(t % kStepsPerWindow) * kStep, tid);
  };

  float acc[kMmas][kAcc];  // set by the first step's first slice (a split has at least one step)

#pragma unroll
  for (int t = 0; t < kAhead; ++t) issue(first + t);
  cp_async_wait<kAhead - 1>();
  fence_proxy_async();
  __syncthreads();
  decode(first);
  fence_proxy_async();
  __syncthreads();
  for (int64_t t = first; t < end; ++t) {
    // Step t: its X tile and weight tile are in place and visible to the async proxy.
    const uint32_t a_tile = smem_address(ws + (t % 2) * kTileRows * kRowBytes) + group * kGroupRows * kRowBytes;
    const uint32_t b_tile = smem_address(xs + (t % kXStages) * kTokens * kRowBytes);
    fence_accumulators(acc);
    wgmma_fence();
#pragma unroll
    for (int s = 0; s < kStep / 16; ++s) {
#pragma unroll
      for (int m = 0; m < kMmas; ++m) {
        wgmma_slice<kTokens>(acc[m], wgmma_descriptor(a_tile + m * 64 * kRowBytes + 32 * s),
                             wgmma_descriptor(b_tile + 32 * s), t > first || s > 0);
      }
    }
    wgmma_commit();
    // Step t - 1's products are done in this warpgroup, and step t + 1's copies have landed for
    // this thread; after the barrier, for the block: the tiles step t - 1 read may be refilled.
    wgmma_wait<1>();
    fence_accumulators(acc);
    cp_async_wait<kAhead - 2>();
    fence_proxy_async();
    __syncthreads();
    issue(t + kAhead);
    if (t + 1 < end) decode(t + 1);
    fence_proxy_async();
    __syncthreads();
  }
  wgmma_wait<0>();
  fence_accumulators(acc);

#pragma unroll
  for (int m = 0; m < kMmas; ++m) {
    store_product_tile<kTokens>(acc[m], mine(), partials, int(blockIdx.z), M, row0 + group * kGroupRows + m * 64,
                                tok0, warp % 4, lane);
  }
}

// The warp-specialized variant, 128 weight rows x 128 tokens per block of 512 threads: warps
// 0-7 produce (the copies and the decoding, as the kernel above does with its 256 threads) and
// warps 8-15, two warpgroups of 64 rows, only multiply. Stages of one X tile and one weight tile
// (kSpecStages of them) pass between the two through shared-memory barriers: full[s] when the
// 256 producer threads have put a step in stage s, empty[s] when the 8 consumer warps' products
// of it are done. So the consumers wait on no copy, no decoding and no block barrier, only on
// the step they need; the producers wait for a stage only kSpecStages - kSpecAhead steps behind.
// Copies are issued kSpecAhead steps ahead of the decoding. kSpecStages >= kSpecAhead + 2: the
// producers refill a stage for step t + kSpecAhead once the consumers have released step
// t + kSpecAhead - kSpecStages <= t - 2, which they do while running step t - 1, before they
// need step t.
constexpr int kSpecStages = 4;
constexpr int kSpecAhead = 2;
constexpr int kProducers = 256;  // threads: warps 0-7
constexpr int kConsumerWarps = 8;
static_assert(kSpecStages >= kSpecAhead + 2, "no wait on a step the producers have not made");

template <typename Loader>
constexpr size_t specialized_shared_bytes() {
  return 1024 + size_t(kSpecStages) * 2 * kTileRows * kRowBytes +
         size_t(raw_buffers<Loader, kStep, kSpecAhead>()) * kTileRows * Loader::kWindowBytes +
         2 * kSpecStages * sizeof(uint64_t);
}

template <typename Loader>
__global__ void __launch_bounds__(kProducers + 32 * kConsumerWarps, 1)
    matmul_wgmma_specialized_kernel(MatmulOutputs outs, uint64_t row_bytes, int64_t K, const uint16_t* __restrict__ x,
                                    int64_t M, int64_t split_steps, float* __restrict__ partials) {
  constexpr int kTokens = 128;
  constexpr int kTileBytes = kTileRows * kRowBytes;  // an X tile (128 tokens) and a weight tile alike
  constexpr int kStepsPerWindow = Loader::kWindowValues / kStep;
  constexpr int kRawBuffers = raw_buffers<Loader, kStep, kSpecAhead>();
  static_assert(Loader::kWindowValues % kStep == 0, "a step lies in one window");
  static_assert(kRawBuffers * kTileRows * Loader::kWindowBytes % 8 == 0, "the barriers are 8-byte aligned");

  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = smem_raw + (1024 - smem_address(smem_raw) % 1024) % 1024;
  uint8_t* stages = smem;                                  // [kSpecStages][X, weights][128][128 bytes], swizzled
  uint8_t* raw = stages + kSpecStages * 2 * kTileBytes;    // [kRawBuffers][kTileRows][kWindowBytes]
  const uint32_t full = smem_address(raw + kRawBuffers * kTileRows * Loader::kWindowBytes);  // [kSpecStages]
  const uint32_t empty = full + 8 * kSpecStages;                                             // [kSpecStages]

  const TileMatrix tm = tile_matrix(outs, int(blockIdx.y));
  const auto mine = [&]() -> const MatvecOutput& { return output(outs, tm.which); };
  const int tid = threadIdx.x;
  const int64_t row0 = int64_t(int(blockIdx.y) - tm.tile_begin) * kTileRows, tok0 = int64_t(blockIdx.x) * kTokens;
  const int64_t first = int64_t(blockIdx.z) * split_steps, end = first + split_steps;
  // Step t (of this split) sits in stage (t - first) % kSpecStages, the (t - first) / kSpecStages-th
  // use of that stage's barriers.
  const auto stage = [&](int64_t t) { return int((t - first) % kSpecStages); };
  const auto use = [&](int64_t t) { return uint32_t((t - first) / kSpecStages); };
  const auto x_tile = [&](int64_t t) { return stages + stage(t) * 2 * kTileBytes; };
  const auto w_tile = [&](int64_t t) { return stages + stage(t) * 2 * kTileBytes + kTileBytes; };

  if (tid == 0) {
    for (int st = 0; st < kSpecStages; ++st) {
      mbarrier_init(full + 8 * st, kProducers);
      mbarrier_init(empty + 8 * st, kConsumerWarps);
    }
  }
  __syncthreads();  // the barriers are initialized before anyone arrives or waits; the last block-wide barrier

  if (tid < kProducers) {
    // Step t's copies, one cp.async group (empty past the split's last step), into its stage once
    // the consumers have released the step that used it before: as the kernel above's issue.
    auto issue = [&](int64_t t) {
      if (t < end) {
        if (t - first >= kSpecStages) mbarrier_wait(empty + 8 * stage(t), (use(t) - 1) & 1);
        copy_x_step<kTokens, kProducers>(x_tile(t), x, K, M, tok0, t, tid);
        if (t % kStepsPerWindow == 0) {
          const int64_t window = t / kStepsPerWindow;
          copy_window<Loader, kProducers>(raw + (window % kRawBuffers) * kTileRows * Loader::kWindowBytes, mine(),
                                          row0, row_bytes, K, window, tid);
        }
      }
      cp_async_commit();
    };
    // Step t's weights into its stage's weight tile.
    auto decode = [&](int64_t t) {
      const int64_t window = t / kStepsPerWindow;
      decode_step<Loader, kProducers>(w_tile(t), raw + (window % kRawBuffers) * kTileRows * Loader::kWindowBytes,
                                      window, int(t % kStepsPerWindow) * kStep, tid);
    };
#pragma unroll
    for (int t = 0; t < kSpecAhead; ++t) issue(first + t);
    for (int64_t t = first; t < end; ++t) {
      cp_async_wait<kSpecAhead - 1>();               // this thread's copies of step t have landed
      named_barrier<1, kProducers>();                // every producer's; and all are done decoding step t - 1
      issue(t + kSpecAhead);                         // so the raw windows step t - 1 read may be refilled
      decode(t);
      fence_proxy_async();                           // this thread's weights and X chunks, to wgmma
      mbarrier_arrive(full + 8 * stage(t));
    }
    return;
  }

  // Consumers: warpgroup cg multiplies weight rows 64 cg .. + 63 of each step with its 128 tokens.
  const int ctid = tid - kProducers, cg = ctid / 128, warp = ctid / 32, lane = ctid % 32;
  float acc[1][kTokens / 2];  // one 64-row product; set by the first step's first slice
  for (int64_t t = first; t < end; ++t) {
    mbarrier_wait(full + 8 * stage(t), use(t) & 1);
    const uint32_t a_tile = smem_address(w_tile(t)) + cg * 64 * kRowBytes;
    const uint32_t b_tile = smem_address(x_tile(t));
    fence_accumulators(acc);
    wgmma_fence();
#pragma unroll
    for (int sl = 0; sl < kStep / 16; ++sl) {
      wgmma_m64n128k16(acc[0], wgmma_descriptor(a_tile + 32 * sl), wgmma_descriptor(b_tile + 32 * sl),
                       t > first || sl > 0);
    }
    wgmma_commit();
    wgmma_wait<1>();  // this warp's products of step t - 1 are done: its stage may be refilled
    fence_accumulators(acc);
    if (t > first && lane == 0) mbarrier_arrive(empty + 8 * stage(t - 1));
  }
  wgmma_wait<0>();
  fence_accumulators(acc);

  store_product_tile<kTokens>(acc[0], mine(), partials, int(blockIdx.z), M, row0 + cg * 64, tok0, warp % 4, lane);
}

}  // namespace

bool matmul_wgmma_supports(GgmlType type, int64_t K) {
  int64_t window = 0;
  with_loader<kStep>(type, [&]<typename Loader>() { window = Loader::kWindowValues; });
  return window > 0 && K > 0 && K % window == 0;
}

bool matmul_wgmma_loadable() {
  static const bool loadable = [] {
    cudaFuncAttributes attributes{};
    const cudaError_t status =
        cudaFuncGetAttributes(&attributes, matmul_wgmma_kernel<Q45KTile<BlockQ4_K, false>, 128>);
    if (status != cudaSuccess) (void)cudaGetLastError();  // not sticky: clear it for later checks
    return status == cudaSuccess;
  }();
  return loadable;
}

// Per device, for one kernel: whether it is opted in to its shared memory, and its resident
// blocks per SM (launch.cuh's caches).
struct KernelCache {
  std::atomic<uint64_t> opted_in{0};
  std::atomic<int> blocks_per_sm[kCachedDevices] = {};
};

// Calls f(kernel, threads, shared bytes, its cache) for the kernel of the type and shape
// (specialized: the warp-specialized kernel, 128 tokens; else the first kernel with 64 or 128
// tokens), after opting it in to its shared memory on the current device.
template <typename F>
void with_kernel(GgmlType type, WgmmaShape shape, F&& f) {
  const bool known = with_loader<kStep>(type, [&]<typename Loader>() {
    const auto opted = [&](auto kernel, int threads, size_t smem, KernelCache& cache) {
      opt_in_shared_bytes(kernel, smem, cache.opted_in);
      f(kernel, threads, smem, cache);
    };
    if (shape == WgmmaShape::specialized) {
      constexpr size_t smem = specialized_shared_bytes<Loader>();
      static_assert(smem <= kHopperOptInSharedBytes, "a block's shared memory must fit an H100");
      static KernelCache cache;
      opted(matmul_wgmma_specialized_kernel<Loader>, kProducers + 32 * kConsumerWarps, smem, cache);
    } else if (shape == WgmmaShape::tiles_of_64) {
      constexpr size_t smem = wgmma_shared_bytes<Loader, 64>();
      static_assert(smem <= kHopperOptInSharedBytes, "a block's shared memory must fit an H100");
      static KernelCache cache;
      opted(matmul_wgmma_kernel<Loader, 64>, 128, smem, cache);
    } else {
      constexpr size_t smem = wgmma_shared_bytes<Loader, 128>();
      static_assert(smem <= kHopperOptInSharedBytes, "a block's shared memory must fit an H100");
      static KernelCache cache;
      opted(matmul_wgmma_kernel<Loader, 128>, 256, smem, cache);
    }
  });
  if (!known) throw_unsupported_type("cuda_matmul (wgmma)", type);
}

int matmul_wgmma_blocks_per_sm(GgmlType type, WgmmaShape shape) {
  int blocks = 0;
  with_kernel(type, shape, [&](auto kernel, int threads, size_t smem, KernelCache& cache) {
    blocks = resident_blocks_per_sm(kernel, threads, smem, cache.blocks_per_sm);
  });
  return blocks;
}

void launch_matmul_wgmma(GgmlType type, const MatmulOutputs& outs, int row_tiles, int64_t K, const uint16_t* x16,
                         int64_t M, WgmmaShape shape, int splits, float* partials, void* stream) {
  const int64_t tokens = shape == WgmmaShape::tiles_of_64 ? 64 : 128;
  with_kernel(type, shape, [&](auto kernel, int threads, size_t smem, KernelCache&) {
    const dim3 grid(static_cast<unsigned>((M + tokens - 1) / tokens), static_cast<unsigned>(row_tiles),
                    static_cast<unsigned>(splits));
    kernel<<<grid, threads, smem, static_cast<cudaStream_t>(stream)>>>(
        outs, gpu_row_bytes(type, K), K, x16, M, K / kStep / splits, splits > 1 ? partials : nullptr);
  });
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace engine
