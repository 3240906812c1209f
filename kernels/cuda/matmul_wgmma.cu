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
  constexpr int kRun = run_values<Loader>(), kRunsPerRow = kStep / kRun;
  constexpr int kRuns = kTileRows * kRunsPerRow / kThreads;            // runs of weights per thread and step
  constexpr int kXGroups = kTokens * (kStep / 8) / kThreads;          // 16-byte X chunks per thread and step
  static_assert(Loader::kWindowValues % kStep == 0, "a step lies in one window");
  static_assert(kStep % kRun == 0 && kTileRows * kRunsPerRow % kThreads == 0, "a step's runs fill the threads");

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

  // Step t's copies, one cp.async group (empty past the split's last step): its X tile (chunk i =
  // tid + kThreads j is token i / 8, values 8 (i % 8) .. + 7), and the window of every weight row
  // when t opens one. Tokens past M and rows past N copy nothing and are zero-filled.
  auto issue = [&](int64_t t) {
    if (t < end) {
      uint8_t* xt = xs + (t % kXStages) * kTokens * kRowBytes;
#pragma unroll
      for (int j = 0; j < kXGroups; ++j) {
        const int i = tid + kThreads * j, r = i / 8, c = i % 8;
        const bool valid = tok0 + r < M;
        const uint16_t* src = x + (valid ? tok0 + r : 0) * K + t * kStep + 8 * c;
        cp_async16(xt + swizzled_offset(r, 8 * c), src, valid);
      }
      if (t % kStepsPerWindow == 0) {
        const int64_t window = t / kStepsPerWindow;
        copy_window<Loader, kThreads>(raw + (window % kRawBuffers) * kTileRows * Loader::kWindowBytes, mine(), row0,
                                      row_bytes, K, window, tid);
      }
    }
    cp_async_commit();
  };

  // Step t's weights from the raw window to weight tile t % 2, in runs of kRun values (a K-quant
  // group, decoded from one read of its header and codes, or eight): run i = tid + kThreads j is
  // row i / kRunsPerRow, values kRun (i % kRunsPerRow) .. + kRun - 1 of the step, kRun / 8 16-byte
  // chunks of the swizzled tile (a quarter warp's stores fall in distinct banks either way).
  auto decode = [&](int64_t t) {
    const int64_t window = t / kStepsPerWindow;
    const uint8_t* win = raw + (window % kRawBuffers) * kTileRows * Loader::kWindowBytes;
    uint8_t* wt = ws + (t % 2) * kTileRows * kRowBytes;
    const int e0 = int(t % kStepsPerWindow) * kStep;
#pragma unroll
    for (int j = 0; j < kRuns; ++j) {
      const int i = tid + kThreads * j, r = i / kRunsPerRow, u = i % kRunsPerRow;
      uint4 v[kRun / 8];
      decode_run<Loader>(win + r * Loader::kWindowBytes, e0 + kRun * u, window, v);
#pragma unroll
      for (int c = 0; c < kRun / 8; ++c) *reinterpret_cast<uint4*>(wt + swizzled_offset(r, kRun * u + 8 * c)) = v[c];
    }
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

  // Accumulator 4j + r of product m: weight row 16 (warp % 4) + g + 8 (r / 2) of the product's 64,
  // token 8j + 2 t4 + r % 2 (g = lane / 4, t4 = lane % 4; wgmma.cuh).
  const int g = lane / 4, t4 = lane % 4;
  const MatvecOutput& o = mine();
#pragma unroll
  for (int m = 0; m < kMmas; ++m) {
    const int64_t n = row0 + group * kGroupRows + m * 64 + 16 * (warp % 4) + g;
#pragma unroll
    for (int j = 0; j < kTokens / 8; ++j) {
      const int64_t tok = tok0 + 8 * j + 2 * t4;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t nn = n + (r / 2) * 8, mm = tok + r % 2;
        if (nn < o.N && mm < M) store_product(o, partials, int(blockIdx.z), M, nn, mm, acc[m][4 * j + r]);
      }
    }
  }
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

// Calls f.template operator()<Loader, kTokens>() for the type and tile, after opting the kernel in
// to its shared memory on the current device.
template <typename F>
void with_kernel(GgmlType type, bool tiles_of_64, F&& f) {
  const bool known = with_loader<kStep>(type, [&]<typename Loader>() {
    const auto opted = [&]<int kTokens>() {
      constexpr size_t smem = wgmma_shared_bytes<Loader, kTokens>();
      static_assert(smem <= kHopperOptInSharedBytes, "a block's shared memory must fit an H100");
      static std::atomic<uint64_t> opted_in;  // devices where this kernel may take smem bytes
      opt_in_shared_bytes(matmul_wgmma_kernel<Loader, kTokens>, smem, opted_in);
      f.template operator()<Loader, kTokens>();
    };
    if (tiles_of_64) {
      opted.template operator()<64>();
    } else {
      opted.template operator()<128>();
    }
  });
  if (!known) throw_unsupported_type("cuda_matmul (wgmma)", type);
}

int matmul_wgmma_blocks_per_sm(GgmlType type, bool tiles_of_64) {
  int blocks = 0;
  with_kernel(type, tiles_of_64, [&]<typename Loader, int kTokens>() {
    static std::atomic<int> known[kCachedDevices];
    blocks = resident_blocks_per_sm(matmul_wgmma_kernel<Loader, kTokens>, 2 * kTokens,
                                    wgmma_shared_bytes<Loader, kTokens>(), known);
  });
  return blocks;
}

void launch_matmul_wgmma(GgmlType type, const MatmulOutputs& outs, int row_tiles, int64_t K, const uint16_t* x16,
                         int64_t M, bool tiles_of_64, int splits, float* partials, void* stream) {
  with_kernel(type, tiles_of_64, [&]<typename Loader, int kTokens>() {
    const dim3 grid(static_cast<unsigned>((M + kTokens - 1) / kTokens), static_cast<unsigned>(row_tiles),
                    static_cast<unsigned>(splits));
    matmul_wgmma_kernel<Loader, kTokens><<<grid, 2 * kTokens, wgmma_shared_bytes<Loader, kTokens>(),
                                           static_cast<cudaStream_t>(stream)>>>(
        outs, gpu_row_bytes(type, K), K, x16, M, K / kStep / splits, splits > 1 ? partials : nullptr);
  });
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace engine
