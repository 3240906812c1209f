// Tensor-core matmul for prompt batches: Y[M][N] = X[M][K] . W[N][K]^T, W in its GGUF blocks.
//
// Layout: W is N rows of K values (GPU layout, engine/gpu_layout.h: rows 8-byte aligned, K a
// multiple of the loader's window); X is M rows of K fp16 values (16-byte aligned rows); Y is M
// rows of N floats.
// Launch: a block of 256 threads (8 warps) per tile of 128 weight rows x 128 tokens, grid
// (ceil(N / 128), ceil(M / 128), splits of K), dynamic shared memory shared_bytes<Loader, 128>()
// (64-96 KiB: two blocks per SM on sm_90); or, where that grid is under two blocks per SM, 128
// threads per 128 x 64 tile (twice the blocks, each with half the X tiles). Split z of K (whole
// windows; matmul_splits.h) writes its partial sums, which add_splits_kernel adds in split order.
// Every global read is a cp.async issued kAhead steps (of 32 values of K) before its step: each step's X tile (128 tokens x 32), and, when a step opens one, every
// weight row's next window (a super-block, four legacy blocks, or 32 float values) as raw bytes.
// A step then decodes its 128 x 32 weights from the raw window to an fp16 tile, and warp w
// computes 64 weight rows (w % 2) x 32 tokens (w / 2) as 4 x 4 mma.m16n8k16 tiles (fp16 in, f32
// accumulators) from ldmatrix fragments. fp16 tiles are padded to 40 halves (80 bytes) a row, so
// the 8 row addresses of an ldmatrix fall in distinct banks.
// Bound: compute (tensor cores, and the shared memory the fragments come through) at prompt
// sizes: each weight byte is read ceil(M / 128) times and each X value ceil(N / 128) times, both
// from L2 mostly, with no load latency on the step's critical path.
// Precision: weights rounded once to fp16 (relative 2^-11), activations as given (fp16), f32 sums.
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <span>

#include "activations.cuh"
#include "launch.cuh"
#include "matmul.h"
#include "matmul_splits.h"
#include "matmul_tiles.cuh"
#include "matmul_wgmma.h"
#include "scheduler/cuda_check.h"
#include "tensor_core.cuh"

namespace engine {
namespace {

using namespace matmul_tiles;

// Tokens per block: 128 (8 warps), or 64 (4 warps) where 128-token tiles would leave SMs idle.
constexpr int kTileK = 32;        // values of K per step
constexpr int kPitch = kTileK + 8;
constexpr int kAhead = 2;  // steps whose copies are in flight while one is computed
// The most shared memory a block may opt in to on every card we build for (sm_86 and sm_89; sm_80:
// 163 KiB, sm_90: 227 KiB): every loader's footprint is checked against it.
constexpr size_t kSmallestOptInSharedBytes = 99 * 1024;

// Shared memory of one block: kAhead + 1 tiles of X, one fp16 tile of weights, and
// raw_buffers() windows of every row of the tile.
template <typename Loader, int kTileTokens>
__host__ __device__ constexpr size_t shared_bytes() {
  return sizeof(uint16_t) * ((kAhead + 1) * kTileTokens + kTileRows) * kPitch +
         size_t(raw_buffers<Loader, kTileK, kAhead>()) * kTileRows * Loader::kWindowBytes;
}

template <typename Loader, int kTileTokens>
__global__ void __launch_bounds__(2 * kTileTokens, 512 / (2 * kTileTokens))
    matmul_kernel(MatmulOutputs outs, uint64_t row_bytes, int64_t K, const uint16_t* __restrict__ x, int64_t M,
                  int64_t split_steps, float* __restrict__ partials) {
  constexpr int kStepsPerWindow = Loader::kWindowValues / kTileK;
  constexpr int kXStages = kAhead + 1;
  constexpr int kRawBuffers = raw_buffers<Loader, kTileK, kAhead>();
  constexpr int kThreads = 2 * kTileTokens;                 // 2 warps of 64 weight rows per 32 tokens
  constexpr int kWeightGroups = kTileRows * 4 / kThreads;  // groups of 8 weights a thread decodes per step
  extern __shared__ __align__(16) uint8_t smem[];
  uint16_t* xs = reinterpret_cast<uint16_t*>(smem);       // [kXStages][kTileTokens][kPitch]
  uint16_t* ws = xs + kXStages * kTileTokens * kPitch;    // [kTileRows][kPitch]
  uint8_t* raw = reinterpret_cast<uint8_t*>(ws + kTileRows * kPitch);  // [kRawBuffers][kTileRows][kWindowBytes]

  // This block's matrix (its fields read where used: matmul_tiles::output).
  const TileMatrix tm = tile_matrix(outs, int(blockIdx.x));
  const int which = tm.which, tile_begin = tm.tile_begin;
  const auto mine = [&]() -> const MatvecOutput& { return output(outs, which); };

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t row0 = int64_t(int(blockIdx.x) - tile_begin) * kTileRows, tok0 = int64_t(blockIdx.y) * kTileTokens;

  // This thread's groups of 8 values in each tile: group i = tid + kThreads j is row (or token)
  // i / 4, values 8 (i % 4) .. + 7 of the step; kWeightGroups of the weight tile, the first two
  // of the X tile (kTileTokens x 4 groups: two a thread at either size).
  int rows[kWeightGroups], cols[kWeightGroups];
  const uint16_t* xrow[2];
  bool xvalid[2];
MATMUL_UNROLL
  for (int j = 0; j < kWeightGroups; ++j) {
    const int i = tid + kThreads * j;
    rows[j] = i / 4;
    cols[j] = 8 * (i % 4);
  }
MATMUL_UNROLL
  for (int j = 0; j < 2; ++j) {
    xvalid[j] = tok0 + rows[j] < M;
    xrow[j] = x + (xvalid[j] ? tok0 + rows[j] : 0) * K;
  }

  // This block's steps: split blockIdx.z of K (whole windows; all of K without a split).
  const int64_t first = int64_t(blockIdx.z) * split_steps, end = first + split_steps;

  // Step t's copies, one cp.async group (empty past the split's last step): its X tile, and the
  // window of every weight row when t opens one. Rows past N copy nothing and are zero-filled.
  auto issue = [&](int64_t t) {
    if (t < end) {
      uint16_t* xt = xs + (t % kXStages) * kTileTokens * kPitch;
MATMUL_UNROLL
      for (int j = 0; j < 2; ++j) cp_async16(xt + rows[j] * kPitch + cols[j], xrow[j] + t * kTileK + cols[j], xvalid[j]);
      if (t % kStepsPerWindow == 0) {
        const int64_t window = t / kStepsPerWindow;
        copy_window<Loader, kThreads>(raw + (window % kRawBuffers) * kTileRows * Loader::kWindowBytes, mine(), row0,
                                      row_bytes, K, window, tid);
      }
    }
    cp_async_commit();
  };

  const int wr = warp % 2, wt = warp / 2;  // this warp's 64 weight rows and 32 tokens
  float acc[4][4][4];
MATMUL_UNROLL
  for (int i = 0; i < 4; ++i) {
MATMUL_UNROLL
    for (int j = 0; j < 4; ++j) {
MATMUL_UNROLL
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;
    }
  }

MATMUL_UNROLL
  for (int t = 0; t < kAhead; ++t) issue(first + t);
  for (int64_t t = first; t < end; ++t) {
    // Step t's group has landed (kAhead - 1 younger ones may be in flight) for this thread; the
    // barrier makes every thread's copies visible and frees the buffers step t - 1 read, which
    // the copies for step t + kAhead reuse.
    cp_async_wait<kAhead - 1>();
    __syncthreads();
    issue(t + kAhead);
    {
      const int64_t window = t / kStepsPerWindow;
      const uint8_t* win = raw + (window % kRawBuffers) * kTileRows * Loader::kWindowBytes;
      const int e0 = int(t % kStepsPerWindow) * kTileK;
MATMUL_UNROLL
      for (int j = 0; j < kWeightGroups; ++j) {
        const int e = e0 + cols[j];
        const uint4 v = Loader::decode(Loader::fetch(win + rows[j] * Loader::kWindowBytes, e, window), e);
        *reinterpret_cast<uint4*>(&ws[rows[j] * kPitch + cols[j]]) = v;
      }
    }
    __syncthreads();
    const uint16_t* xt = xs + (t % kXStages) * kTileTokens * kPitch;
MATMUL_UNROLL
    for (int ks = 0; ks < kTileK; ks += 16) {
      // A fragments (ldmatrix x4 of a 16 x 16 tile): lanes 0-15 address rows 0-15 at column ks,
      // lanes 16-31 the same rows at ks + 8.
      uint32_t a[4][4];
MATMUL_UNROLL
      for (int i = 0; i < 4; ++i) {
        ldmatrix_x4(&ws[(wr * 64 + i * 16 + lane % 16) * kPitch + ks + (lane / 16) * 8], a[i]);
      }
      // B fragments for two 8-token tiles per ldmatrix x4: matrices (tokens 0-7, k 0-7),
      // (0-7, 8-15), (8-15, 0-7), (8-15, 8-15), addressed by lanes 0-7, 8-15, 16-23, 24-31.
      uint32_t b[4][2];
MATMUL_UNROLL
      for (int jj = 0; jj < 2; ++jj) {
        uint32_t r[4];
        ldmatrix_x4(&xt[(wt * 32 + jj * 16 + lane % 8 + (lane / 16) * 8) * kPitch + ks + ((lane / 8) % 2) * 8], r);
        b[2 * jj][0] = r[0];
        b[2 * jj][1] = r[1];
        b[2 * jj + 1][0] = r[2];
        b[2 * jj + 1][1] = r[3];
      }
MATMUL_UNROLL
      for (int i = 0; i < 4; ++i) {
MATMUL_UNROLL
        for (int j = 0; j < 4; ++j) mma_16816(acc[i][j], a[i], b[j][0], b[j][1]);
      }
    }
  }

  // Accumulator c of tile (i, j): rows g and g + 8, tokens 2 t4 and 2 t4 + 1 (g = lane / 4,
  // t4 = lane % 4), as the mma's C fragment lays them out.
  const int g = lane / 4, t4 = lane % 4;
  const MatvecOutput& o = mine();
MATMUL_UNROLL
  for (int i = 0; i < 4; ++i) {
MATMUL_UNROLL
    for (int j = 0; j < 4; ++j) {
      const int64_t n = row0 + wr * 64 + i * 16 + g;
      const int64_t m = tok0 + wt * 32 + j * 8 + 2 * t4;
MATMUL_UNROLL
      for (int r = 0; r < 4; ++r) {
        const int64_t nn = n + (r / 2) * 8, mm = m + r % 2;
        if (nn < o.N && mm < M) store_product(o, partials, int(blockIdx.z), M, nn, mm, acc[i][j][r]);
      }
    }
  }
}

// y[i] = (y[i] if the epilogue accumulates) + (sum of the splits' partials[s][i], in split order)
// + bias[i % N], for i < M N: a split product's result, the same from run to run.
// Launch: a thread per value. Bound: memory, (splits + 2) x 4 bytes a value.
__global__ void add_splits_kernel(const float* __restrict__ partials, int splits, int64_t count, MatvecOutput o) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  float sum = partials[i];
  for (int s = 1; s < splits; ++s) sum += partials[int64_t(s) * count + i];
  const float v = sum + (o.ep.bias != nullptr ? o.ep.bias[i % o.N] : 0.0f);
  o.y[i] = o.ep.accumulate ? o.y[i] + v : v;
}

__global__ void to_f16_saturated_kernel(const float* __restrict__ x, uint16_t* __restrict__ x16, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x16[i] = saturated_f16(x[i]);
}

}  // namespace

bool cuda_matmul_supports(GgmlType type, int64_t K) {
  int64_t window = 0;
  with_loader<kTileK>(type, [&]<typename Loader>() { window = Loader::kWindowValues; });
  return window > 0 && K > 0 && K % window == 0;
}

void cuda_matmul_decode_row_on_host(GgmlType type, const void* row, int64_t K, uint16_t* out, bool runs) {
  if (!cuda_matmul_supports(type, K)) throw_unsupported_type("cuda_matmul_decode_row_on_host", type);
  with_loader<kTileK>(type, [&]<typename Loader>() {
    const auto* bytes = static_cast<const uint8_t*>(row);
    alignas(16) uint8_t window[Loader::kWindowBytes];
    for (int64_t w = 0; w < K / Loader::kWindowValues; ++w) {
      for (int c = 0; c < Loader::kWindowBytes / Loader::kChunkBytes; ++c) {
        std::memcpy(window + Loader::kChunkBytes * c, Loader::chunk(bytes, K, w, c), Loader::kChunkBytes);
      }
      const int step = runs ? run_values<Loader>() : 8;
      for (int e = 0; e < Loader::kWindowValues; e += step) {
        uint4 v[run_values<Loader>() / 8];
        if (runs) {
          decode_run<Loader>(window, e, w, v);
        } else {
          v[0] = Loader::decode(Loader::fetch(window, e, w), e);
        }
        std::memcpy(out + w * Loader::kWindowValues + e, v, sizeof(uint16_t) * step);
      }
    }
  });
}

void cuda_to_f16_saturated(const float* x, uint16_t* x16, int64_t n, void* stream) {
  if (n <= 0) return;
  const auto blocks = static_cast<unsigned>((n + 255) / 256);
  to_f16_saturated_kernel<<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(x, x16, n);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

bool cuda_matmul_has_wgmma() {
  return device_attribute<cudaDevAttrComputeCapabilityMajor>() == 9 &&
         device_attribute<cudaDevAttrComputeCapabilityMinor>() == 0 && matmul_wgmma_loadable();
}

namespace {

// The matrices as the kernels take them, and their row tiles; the checks every launch makes, all
// before any CUDA call.
MatmulOutputs grid_outputs(GgmlType type, int64_t K, std::span<const MatvecOutput> outs, int& tiles) {
  if (!with_loader<kTileK>(type, [&]<typename Loader>() {})) throw_unsupported_type("cuda_matmul", type);
  if (!cuda_matmul_supports(type, K)) throw_bad_argument("cuda_matmul", "K", K);
  if (outs.empty() || outs.size() > size_t(kCudaMatvecMaxFused)) {
    throw_bad_argument("cuda_matmul", "matrices", int64_t(outs.size()));
  }
  MatmulOutputs grid_outs{};
  tiles = 0;
  for (size_t i = 0; i < outs.size(); ++i) {
    const auto address = reinterpret_cast<uintptr_t>(outs[i].w);
    if (address % 16 != 0) throw_bad_argument("cuda_matmul", "weight address % 16", int64_t(address % 16));
    if (outs[i].N < 0) throw_bad_argument("cuda_matmul", "rows", outs[i].N);
    grid_outs.out[i] = outs[i];
    tiles += static_cast<int>((outs[i].N + kTileRows - 1) / kTileRows);
    grid_outs.tile_end[i] = tiles;
  }
  grid_outs.count = static_cast<int>(outs.size());
  return grid_outs;
}

bool is_wgmma(MatmulKernel kernel) {
  return kernel == MatmulKernel::wgmma || kernel == MatmulKernel::wgmma_specialized;
}

// Values in a window of the kernel's loader for the type (the float types' windows are a step of
// the kernel: 32 values for mma.sync, 64 for wgmma).
int64_t window_values(GgmlType type, MatmulKernel kernel) {
  int64_t values = 0;
  const auto get = [&]<typename Loader>() { values = Loader::kWindowValues; };
  if (is_wgmma(kernel)) {
    with_loader<64>(type, get);
  } else {
    with_loader<kTileK>(type, get);
  }
  return values;
}

// Calls f.template operator()<Loader, kTileTokens>() for the mma.sync kernel of the type and tile,
// after opting it in to its shared memory on the current device.
template <typename F>
void with_mma_kernel(GgmlType type, MatmulTokens tokens, F&& f) {
  with_loader<kTileK>(type, [&]<typename Loader>() {
    const auto opted = [&]<int kTileTokens>() {
      constexpr size_t smem = shared_bytes<Loader, kTileTokens>();
      static_assert(smem <= kSmallestOptInSharedBytes, "a block's shared memory must fit every card");
      static std::atomic<uint64_t> opted_in;  // devices where this kernel may take smem bytes
      opt_in_shared_bytes(matmul_kernel<Loader, kTileTokens>, smem, opted_in);
      f.template operator()<Loader, kTileTokens>();
    };
    if (tokens == MatmulTokens::tiles_of_64) {
      opted.template operator()<64>();
    } else {
      opted.template operator()<128>();
    }
  });
}

// Whether the workspace is there and apart from the output's M x N floats.
bool workspace_is_free(const MatmulWorkspace& ws, const MatvecOutput& out, int64_t M) {
  if (ws.partials == nullptr || ws.floats <= 0) return false;
  const auto begin = reinterpret_cast<uintptr_t>(ws.partials), end = begin + sizeof(float) * uint64_t(ws.floats);
  const auto y_begin = reinterpret_cast<uintptr_t>(out.y), y_end = y_begin + sizeof(float) * uint64_t(M * out.N);
  return end <= y_begin || y_end <= begin;
}

WgmmaShape wgmma_shape(MatmulKernel kernel, MatmulTokens tokens) {
  if (kernel == MatmulKernel::wgmma_specialized) return WgmmaShape::specialized;
  return tokens == MatmulTokens::tiles_of_64 ? WgmmaShape::tiles_of_64 : WgmmaShape::tiles_of_128;
}

int blocks_per_sm(GgmlType type, MatmulKernel kernel, MatmulTokens tokens) {
  if (is_wgmma(kernel)) return matmul_wgmma_blocks_per_sm(type, wgmma_shape(kernel, tokens));
  int blocks = 0;
  with_mma_kernel(type, tokens, [&]<typename Loader, int kTileTokens>() {
    static std::atomic<int> known[kCachedDevices];
    blocks = resident_blocks_per_sm(matmul_kernel<Loader, kTileTokens>, 2 * kTileTokens,
                                    shared_bytes<Loader, kTileTokens>(), known);
  });
  return blocks;
}

}  // namespace

MatmulLaunch cuda_matmul_launch(GgmlType type, int64_t K, int64_t M, std::span<const MatvecOutput> outs,
                                const MatmulOptions& options) {
  int tiles = 0;
  grid_outputs(type, K, outs, tiles);
  MatmulLaunch l{options.kernel, options.tokens, options.splits};
  if (is_wgmma(l.kernel) && !matmul_wgmma_supports(type, K)) throw_bad_argument("cuda_matmul (wgmma)", "K", K);
  if (l.kernel == MatmulKernel::wgmma_specialized && l.tokens == MatmulTokens::tiles_of_64) {
    throw_unsupported("cuda_matmul", "64-token tiles in the warp-specialized wgmma kernel");
  }
  // Asked-for splits: checked on the host first, with the windows every kernel shares (only the
  // float types' differ, checked again below).
  if (l.splits < 0 || l.splits > kMatmulMaxSplits) throw_bad_argument("cuda_matmul", "splits", l.splits);
  if (l.splits > 1) {
    if (outs.size() != 1) throw_bad_argument("cuda_matmul", "splits of a fused launch", l.splits);
    if (l.splits * M * outs[0].N > options.workspace.floats || !workspace_is_free(options.workspace, outs[0], M)) {
      throw_bad_argument("cuda_matmul", "splits for the workspace", l.splits);
    }
    if ((K / window_values(type, MatmulKernel::mma_sync)) % l.splits != 0) {
      throw_bad_argument("cuda_matmul", "splits of K's windows", l.splits);
    }
  }
  if (M <= 0 || tiles == 0) {  // nothing to launch
    if (l.kernel == MatmulKernel::automatic) l.kernel = MatmulKernel::mma_sync;
    if (l.tokens == MatmulTokens::automatic) l.tokens = MatmulTokens::tiles_of_128;
    l.splits = std::max(l.splits, 1);
    return l;
  }

  // ENGINE_CUDA_WGMMA: 0 keeps the mma.sync kernel, "specialized" takes the warp-specialized one
  // where the tiles are 128 tokens (decided below).
  static const char* const wgmma_env = std::getenv("ENGINE_CUDA_WGMMA");
  const bool chosen_kernel = l.kernel == MatmulKernel::automatic;
  if (chosen_kernel) {
    const bool wgmma_allowed = wgmma_env == nullptr || std::strcmp(wgmma_env, "0") != 0;
    l.kernel = wgmma_allowed && cuda_matmul_has_wgmma() && matmul_wgmma_supports(type, K) ? MatmulKernel::wgmma
                                                                                           : MatmulKernel::mma_sync;
    if (l.kernel == MatmulKernel::wgmma && wgmma_env != nullptr && std::strcmp(wgmma_env, "specialized") == 0 &&
        l.tokens != MatmulTokens::tiles_of_64) {
      l.kernel = MatmulKernel::wgmma_specialized;
    }
  }
  if (is_wgmma(l.kernel) && !cuda_matmul_has_wgmma()) {
    throw_unsupported("cuda_matmul", "wgmma on a device other than compute capability 9.0");
  }
  const int64_t values = window_values(type, l.kernel);
  if (l.splits > 1 && (K / values) % l.splits != 0) throw_bad_argument("cuda_matmul", "splits of K's windows", l.splits);
  const int sms = device_attribute<cudaDevAttrMultiProcessorCount>();
  // Splits the workspace holds (1: none), where the launch may choose them.
  const int64_t held = l.splits == 0 && outs.size() == 1 && outs[0].N > 0 &&
                               workspace_is_free(options.workspace, outs[0], M)
                           ? options.workspace.floats / (M * outs[0].N)
                           : 1;
  if (l.tokens == MatmulTokens::automatic) {
    // 128-token tiles, which decode each weight once per 128 tokens rather than 64 (half the
    // decoding a flop), except for prompts of 64 tokens or fewer, and where the grid would come to
    // less than two blocks per SM (QwQ-32B's 5120-row products at 512 tokens: 160 blocks on 132
    // SMs) with no split of K to fill the SMs: there twice as many half-size tiles do.
    const int64_t blocks = int64_t(tiles) * ((M + 127) / 128);
    const bool half = M <= 64 || (held < 2 && blocks < 2 * int64_t(sms));
    l.tokens = half ? MatmulTokens::tiles_of_64 : MatmulTokens::tiles_of_128;
    // The warp-specialized kernel has 128-token tiles only: asked for, it keeps them; chosen, it
    // gives way to the other wgmma kernel where the rule wants 64.
    if (l.kernel == MatmulKernel::wgmma_specialized) {
      if (chosen_kernel && half) {
        l.kernel = MatmulKernel::wgmma;
      } else {
        l.tokens = MatmulTokens::tiles_of_128;
      }
    }
  }
  if (l.splits == 0) {
    // Split where the grid would leave SMs idle and the workspace holds the partial sums.
    l.splits = 1;
    if (held >= 2) {
      const int64_t tile_tokens = l.tokens == MatmulTokens::tiles_of_64 ? 64 : 128;
      const int64_t blocks = int64_t(tiles) * ((M + tile_tokens - 1) / tile_tokens);
      const int64_t slots = int64_t(sms) * std::max(1, blocks_per_sm(type, l.kernel, l.tokens));
      l.splits = choose_matmul_splits(blocks, slots, K / values, values, int(std::min<int64_t>(held, kMatmulMaxSplits)));
    }
  }
  return l;
}

void cuda_matmul(GgmlType type, const void* w, int64_t K, int64_t N, const uint16_t* x16, int64_t M, float* y,
                 void* stream, ProductEpilogue ep, const MatmulOptions& options) {
  const MatvecOutput out{w, N, y, ep};
  cuda_matmul_fused(type, K, x16, M, std::span<const MatvecOutput>(&out, 1), stream, options);
}

void cuda_matmul_fused(GgmlType type, int64_t K, const uint16_t* x16, int64_t M, std::span<const MatvecOutput> outs,
                       void* stream, const MatmulOptions& options) {
  const MatmulLaunch l = cuda_matmul_launch(type, K, M, outs, options);
  int tiles = 0;
  const MatmulOutputs grid_outs = grid_outputs(type, K, outs, tiles);
  if (M <= 0 || tiles == 0) return;
  auto* s = static_cast<cudaStream_t>(stream);
  float* partials = l.splits > 1 ? options.workspace.partials : nullptr;
  if (is_wgmma(l.kernel)) {
    launch_matmul_wgmma(type, grid_outs, tiles, K, x16, M, wgmma_shape(l.kernel, l.tokens), l.splits, partials,
                        stream);
  } else {
    with_mma_kernel(type, l.tokens, [&]<typename Loader, int kTileTokens>() {
      const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>((M + kTileTokens - 1) / kTileTokens),
                      static_cast<unsigned>(l.splits));
      matmul_kernel<Loader, kTileTokens><<<grid, 2 * kTileTokens, shared_bytes<Loader, kTileTokens>(), s>>>(
          grid_outs, gpu_row_bytes(type, K), K, x16, M, K / kTileK / l.splits, partials);
    });
    ENGINE_CUDA_CHECK(cudaGetLastError());
  }
  if (l.splits > 1) {
    const int64_t count = M * outs[0].N;
    add_splits_kernel<<<static_cast<unsigned>((count + 255) / 256), 256, 0, s>>>(partials, l.splits, count, outs[0]);
    ENGINE_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace engine
