// The prompt matmul's Hopper kernel (matmul_wgmma.cu, compiled for sm_90a only): what
// cuda_matmul_fused (matmul.cu) calls on a compute capability 9.0 device. Internal to the CUDA
// backend; cuda_matmul is the interface.
#pragma once

#include <cstdint>

#include "engine/ggml_type.h"
#include "matmul_tiles.cuh"

namespace engine {

// Whether the wgmma kernel has a tile loader for the type and K: as cuda_matmul_supports, but the
// float types' windows are 64 values (K a multiple of 64).
bool matmul_wgmma_supports(GgmlType type, int64_t K);

// Whether the kernels' sm_90a code loads on the current device; asked once per process, so only
// on a compute capability 9.0 device (cuda_matmul_has_wgmma asks nothing else).
bool matmul_wgmma_loadable();

// Which of the file's kernels: 128 weight rows by 128 or 64 tokens, every warp copying, decoding
// and multiplying; or by 128 tokens, warp-specialized (producer warps copy and decode, consumer
// warpgroups only multiply).
enum class WgmmaShape { tiles_of_128, tiles_of_64, specialized };

// Blocks of the kernel for the type and shape that one SM of the current device holds at once.
int matmul_wgmma_blocks_per_sm(GgmlType type, WgmmaShape shape);

// The products of `outs` (its tile_end in row tiles of 128) on x16's M tokens, by the kernel of
// `shape`, K in `splits` parts (whole windows), asynchronously on `stream` (a cudaStream_t):
// with one part, y as each output's epilogue says; with more, each part's partial sums in
// partials[split][m][n] (one output), which the caller adds. The caller has checked the type,
// K, the splits, the addresses and that the device is compute capability 9.0.
void launch_matmul_wgmma(GgmlType type, const matmul_tiles::MatmulOutputs& outs, int row_tiles, int64_t K,
                         const uint16_t* x16, int64_t M, WgmmaShape shape, int splits, float* partials, void* stream);

}  // namespace engine
