// Dequantization kernels, one thread per output element.
// Layout: src is n/block_size consecutive ggml blocks of the type, dst is n contiguous floats.
// Launch: 1-D grid of 256-thread blocks covering n. Bound: memory, reads bytes(n) + writes 4n.
// Precision: identical formulas to kernels/cpu/dequantize.cpp; results may differ from it by
// FMA contraction only (about 1 ulp).
#include <cuda_fp16.h>

#include "../cpu/quant_blocks.h"
#include "block_loads.cuh"
#include "dequantize.h"
#include "scheduler/cuda_check.h"

namespace engine {
namespace {


template <typename Block>
struct Dequant;

template <>
struct Dequant<BlockQ4_0> {
  static constexpr int kBlock = 32;
  __device__ static float at(const BlockQ4_0& b, int e) {
    const int q = e < 16 ? (b.qs[e] & 15) : (b.qs[e - 16] >> 4);
    return float(q - 8) * h2f(b.d);
  }
};

template <>
struct Dequant<BlockQ4_1> {
  static constexpr int kBlock = 32;
  __device__ static float at(const BlockQ4_1& b, int e) {
    const int q = e < 16 ? (b.qs[e] & 15) : (b.qs[e - 16] >> 4);
    return float(q) * h2f(b.d) + h2f(b.m);
  }
};

__device__ int q5_value(const uint8_t* qs, const uint8_t* qh_bytes, int e) {
  const uint32_t qh = qh_bytes[0] | (qh_bytes[1] << 8) | (qh_bytes[2] << 16) |
                      (uint32_t(qh_bytes[3]) << 24);
  const int low = e < 16 ? (qs[e] & 15) : (qs[e - 16] >> 4);
  return low | (((qh >> e) & 1) << 4);
}

template <>
struct Dequant<BlockQ5_0> {
  static constexpr int kBlock = 32;
  __device__ static float at(const BlockQ5_0& b, int e) {
    return float(q5_value(b.qs, b.qh, e) - 16) * h2f(b.d);
  }
};

template <>
struct Dequant<BlockQ5_1> {
  static constexpr int kBlock = 32;
  __device__ static float at(const BlockQ5_1& b, int e) {
    return float(q5_value(b.qs, b.qh, e)) * h2f(b.d) + h2f(b.m);
  }
};

template <>
struct Dequant<BlockQ8_0> {
  static constexpr int kBlock = 32;
  __device__ static float at(const BlockQ8_0& b, int e) { return float(b.qs[e]) * h2f(b.d); }
};

template <>
struct Dequant<BlockQ2_K> {
  static constexpr int kBlock = kQK_K;
  __device__ static float at(const BlockQ2_K& b, int e) {
    const int r = e % 128;
    const int q = (b.qs[(e / 128) * 32 + r % 32] >> (2 * (r / 32))) & 3;
    const uint8_t sc = b.scales[e / 16];
    return h2f(b.d) * float(sc & 15) * float(q) - h2f(b.dmin) * float(sc >> 4);
  }
};

template <>
struct Dequant<BlockQ3_K> {
  static constexpr int kBlock = kQK_K;
  __device__ static float at(const BlockQ3_K& b, int e) {
    const int s = e / 16;
    const int lo = (b.scales[s % 8] >> (4 * (s / 8))) & 15;
    const int hi = (b.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
    const int r = e % 128;
    const int low = (b.qs[(e / 128) * 32 + r % 32] >> (2 * (r / 32))) & 3;
    const int high_set = (b.hmask[e % 32] >> (e / 32)) & 1;
    return h2f(b.d) * float((lo | (hi << 4)) - 32) * float(low - (high_set ? 0 : 4));
  }
};

template <>
struct Dequant<BlockQ4_K> {
  static constexpr int kBlock = kQK_K;
  __device__ static float at(const BlockQ4_K& b, int e) {
    const int g = e / 32;
    uint8_t sc, m;
    unpack_scale_min_k4(b.scales, g, &sc, &m);
    const int q = (b.qs[(g / 2) * 32 + e % 32] >> (4 * (g % 2))) & 15;
    return h2f(b.d) * sc * float(q) - h2f(b.dmin) * m;
  }
};

template <>
struct Dequant<BlockQ5_K> {
  static constexpr int kBlock = kQK_K;
  __device__ static float at(const BlockQ5_K& b, int e) {
    const int g = e / 32;
    uint8_t sc, m;
    unpack_scale_min_k4(b.scales, g, &sc, &m);
    const int q = ((b.qs[(g / 2) * 32 + e % 32] >> (4 * (g % 2))) & 15) |
                  (((b.qh[e % 32] >> g) & 1) << 4);
    return h2f(b.d) * sc * float(q) - h2f(b.dmin) * m;
  }
};

template <>
struct Dequant<BlockQ6_K> {
  static constexpr int kBlock = kQK_K;
  __device__ static float at(const BlockQ6_K& b, int e) {
    const int r = e % 128;
    const int low = (b.ql[(e / 128) * 64 + r % 64] >> (4 * (r / 64))) & 15;
    const int high = (b.qh[(e / 128) * 32 + r % 32] >> (2 * (r / 32))) & 3;
    return h2f(b.d) * float(b.scales[e / 16]) * float((low | (high << 4)) - 32);
  }
};

template <typename Block>
__global__ void dequantize_blocks(const Block* __restrict__ src, float* __restrict__ dst,
                                  int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  constexpr int kBlock = Dequant<Block>::kBlock;
  dst[i] = Dequant<Block>::at(src[i / kBlock], static_cast<int>(i % kBlock));
}

__global__ void convert_f16(const uint16_t* __restrict__ src, float* __restrict__ dst, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = h2f(src[i]);
}

__global__ void convert_bf16(const uint16_t* __restrict__ src, float* __restrict__ dst, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __uint_as_float(uint32_t(src[i]) << 16);
}

template <typename Block>
void launch(const void* src, float* dst, int64_t n, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const auto grid = static_cast<unsigned>((n + kThreads - 1) / kThreads);
  dequantize_blocks<Block><<<grid, kThreads, 0, stream>>>(static_cast<const Block*>(src), dst, n);
}

}  // namespace

void cuda_dequantize(GgmlType type, const void* src, float* dst, int64_t n, void* stream_ptr) {
  if (n <= 0) return;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  constexpr int kThreads = 256;
  const auto grid = static_cast<unsigned>((n + kThreads - 1) / kThreads);
  switch (type) {
    case GgmlType::F32:
      ENGINE_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice,
                                        stream));
      return;
    case GgmlType::F16:
      convert_f16<<<grid, kThreads, 0, stream>>>(static_cast<const uint16_t*>(src), dst, n);
      break;
    case GgmlType::BF16:
      convert_bf16<<<grid, kThreads, 0, stream>>>(static_cast<const uint16_t*>(src), dst, n);
      break;
    case GgmlType::Q4_0: launch<BlockQ4_0>(src, dst, n, stream); break;
    case GgmlType::Q4_1: launch<BlockQ4_1>(src, dst, n, stream); break;
    case GgmlType::Q5_0: launch<BlockQ5_0>(src, dst, n, stream); break;
    case GgmlType::Q5_1: launch<BlockQ5_1>(src, dst, n, stream); break;
    case GgmlType::Q8_0: launch<BlockQ8_0>(src, dst, n, stream); break;
    case GgmlType::Q2_K: launch<BlockQ2_K>(src, dst, n, stream); break;
    case GgmlType::Q3_K: launch<BlockQ3_K>(src, dst, n, stream); break;
    case GgmlType::Q4_K: launch<BlockQ4_K>(src, dst, n, stream); break;
    case GgmlType::Q5_K: launch<BlockQ5_K>(src, dst, n, stream); break;
    case GgmlType::Q6_K: launch<BlockQ6_K>(src, dst, n, stream); break;
    default:
      throw_unsupported_type("cuda_dequantize", type);
  }
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace engine
