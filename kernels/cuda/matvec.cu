// Matrix-vector kernels for decode steps: weights read once, straight in their GGUF blocks.
//
// Layout: W is N rows of K values (ggml blocks, row n contiguous); x is n_batch rows of K floats;
// y is n_batch rows of N floats. Launch: blocks of kWarps warps, one warp per output row (grid
// ceil(N / kWarps)); each lane decodes its share of every super-block of the row in registers,
// multiplies with the B activation rows in f32 and the warp sums by shuffles.
// Bound: memory (decode reads every weight byte once; the activations, K * B floats, stay in
// L1/L2). Loads per lane are 4-16 bytes and consecutive lanes read consecutive bytes of a block.
// Precision: f32 products and sums of the exact dequantized weights (as the CPU reference).
#include <cuda_fp16.h>

#include "../cpu/quant_blocks.h"
#include "../cpu/with_count.h"
#include "matvec.h"
#include "scheduler/cuda_check.h"

// Loop unrolling for the device passes only: the lane code is also compiled for the host.
#if defined(__CUDA_ARCH__)
#define MATVEC_UNROLL _Pragma("unroll")
#define MATVEC_UNROLL2 _Pragma("unroll 2")
#else
#define MATVEC_UNROLL
#define MATVEC_UNROLL2
#endif

namespace engine {
namespace {

constexpr int kWarps = 4;

__host__ __device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

__host__ __device__ __forceinline__ float dot4(float4 a, float b0, float b1, float b2, float b3) {
  return a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
}

__host__ __device__ __forceinline__ float sum4(float4 a) { return (a.x + a.y) + (a.z + a.w); }

// Q4_K: half a warp per super-block, two super-blocks per step. Lane t (0..15) of a half reads
// bytes 8t .. 8t + 7 of qs: chunk c = t / 4 holds groups 2c (low nibbles) and 2c + 1 (high) at
// values 64c + 8(t % 4) .. +7 and 64c + 32 + 8(t % 4) .. +7.
struct Q4KRows {
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, const float* x, int lane, float* acc) {
    const auto* blocks = reinterpret_cast<const BlockQ4_K*>(row);
    const int half = lane / 16, t = lane % 16, c = t / 4, l8 = 8 * (t % 4);
MATVEC_UNROLL2
    for (int64_t i = half; i < K / 256; i += 2) {
      const BlockQ4_K& b = blocks[i];
      const uint2 q = *reinterpret_cast<const uint2*>(b.qs + 32 * c + l8);
      uint8_t sc0, m0, sc1, m1;
      unpack_scale_min_k4(b.scales, 2 * c, &sc0, &m0);
      unpack_scale_min_k4(b.scales, 2 * c + 1, &sc1, &m1);
      const float d = h2f(b.d), dmin = h2f(b.dmin);
      const float d0 = d * float(sc0), d1 = d * float(sc1), n0 = dmin * float(m0), n1 = dmin * float(m1);
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) {
        const float* xv = x + bb * K + i * 256 + 64 * c + l8;
        const float4 a0 = *reinterpret_cast<const float4*>(xv), a1 = *reinterpret_cast<const float4*>(xv + 4);
        const float4 b0 = *reinterpret_cast<const float4*>(xv + 32), b1 = *reinterpret_cast<const float4*>(xv + 36);
        const float lo = dot4(a0, q.x & 15, (q.x >> 8) & 15, (q.x >> 16) & 15, (q.x >> 24) & 15) +
                         dot4(a1, q.y & 15, (q.y >> 8) & 15, (q.y >> 16) & 15, (q.y >> 24) & 15);
        const float hi = dot4(b0, (q.x >> 4) & 15, (q.x >> 12) & 15, (q.x >> 20) & 15, q.x >> 28) +
                         dot4(b1, (q.y >> 4) & 15, (q.y >> 12) & 15, (q.y >> 20) & 15, q.y >> 28);
        acc[bb] += d0 * lo - n0 * (sum4(a0) + sum4(a1)) + d1 * hi - n1 * (sum4(b0) + sum4(b1));
      }
    }
  }
};

// Q6_K: a warp per super-block. Lane l: half h = l / 16 and l2 = 2(l % 16); its 8 values are
// 128h + 32s + l2 + u (s < 4, u < 2), from ql bytes 64h + l2 + u (s = 0, 2: low, high nibble) and
// 64h + 32 + l2 + u (s = 1, 3), with 2 bits each of qh byte 32h + l2 + u (shift 2s), minus 32.
struct Q6KRows {
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, const float* x, int lane, float* acc) {
    const auto* blocks = reinterpret_cast<const BlockQ6_K*>(row);
    const int h = lane / 16, l2 = 2 * (lane % 16);
MATVEC_UNROLL2
    for (int64_t i = 0; i < K / 256; ++i) {
      const BlockQ6_K& b = blocks[i];
      const uint16_t qa = *reinterpret_cast<const uint16_t*>(b.ql + 64 * h + l2);
      const uint16_t qb = *reinterpret_cast<const uint16_t*>(b.ql + 64 * h + 32 + l2);
      const uint16_t qh = *reinterpret_cast<const uint16_t*>(b.qh + 32 * h + l2);
      const float d = h2f(b.d);
      float w[4][2];
MATVEC_UNROLL
      for (int u = 0; u < 2; ++u) {
        const int a = (qa >> (8 * u)) & 255, bq = (qb >> (8 * u)) & 255, hb = (qh >> (8 * u)) & 255;
        const int q[4] = {(a & 15) | ((hb & 3) << 4), (bq & 15) | (((hb >> 2) & 3) << 4),
                          (a >> 4) | (((hb >> 4) & 3) << 4), (bq >> 4) | (((hb >> 6) & 3) << 4)};
MATVEC_UNROLL
        for (int s = 0; s < 4; ++s) w[s][u] = float(q[s] - 32);
      }
      float scale[4];
MATVEC_UNROLL
      for (int s = 0; s < 4; ++s) scale[s] = d * float(b.scales[(128 * h + 32 * s + l2) / 16]);
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) {
        const float* xv = x + bb * K + i * 256 + 128 * h + l2;
        float sum = 0;
MATVEC_UNROLL
        for (int s = 0; s < 4; ++s) {
          const float2 xs = *reinterpret_cast<const float2*>(xv + 32 * s);
          sum += scale[s] * (w[s][0] * xs.x + w[s][1] * xs.y);
        }
        acc[bb] += sum;
      }
    }
  }
};

// Q8_0: 34-byte blocks (2-byte aligned), eight lanes per block and four blocks per step; lane
// l8 = l % 8 takes values 4 l8 .. 4 l8 + 3 as two 2-byte loads.
struct Q8_0Rows {
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, const float* x, int lane, float* acc) {
    const auto* blocks = reinterpret_cast<const BlockQ8_0*>(row);
    const int sub = lane / 8, l8 = lane % 8;
    for (int64_t i = sub; i < K / 32; i += 4) {
      const BlockQ8_0& b = blocks[i];
      const uint16_t v01 = *reinterpret_cast<const uint16_t*>(b.qs + 4 * l8);
      const uint16_t v23 = *reinterpret_cast<const uint16_t*>(b.qs + 4 * l8 + 2);
      const float d = h2f(b.d);
      const float w0 = float(int8_t(v01 & 255)), w1 = float(int8_t(v01 >> 8));
      const float w2 = float(int8_t(v23 & 255)), w3 = float(int8_t(v23 >> 8));
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) {
        const float4 a = *reinterpret_cast<const float4*>(x + bb * K + i * 32 + 4 * l8);
        acc[bb] += d * dot4(a, w0, w1, w2, w3);
      }
    }
  }
};

// F16 and F32: eight values per lane per step (16 or 32 bytes), then a scalar tail.
struct F16Rows {
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, const float* x, int lane, float* acc) {
    const auto* w = reinterpret_cast<const uint16_t*>(row);
    const int64_t body = K / 256 * 256;
    for (int64_t k = 8 * lane; k < body; k += 256) {
      const uint4 raw = *reinterpret_cast<const uint4*>(w + k);
      const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
      float wf[8];
MATVEC_UNROLL
      for (int j = 0; j < 4; ++j) {
        wf[2 * j] = h2f(uint16_t(words[j] & 0xffffu));
        wf[2 * j + 1] = h2f(uint16_t(words[j] >> 16));
      }
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) {
        const float4 a0 = *reinterpret_cast<const float4*>(x + bb * K + k);
        const float4 a1 = *reinterpret_cast<const float4*>(x + bb * K + k + 4);
        acc[bb] += dot4(a0, wf[0], wf[1], wf[2], wf[3]) + dot4(a1, wf[4], wf[5], wf[6], wf[7]);
      }
    }
    for (int64_t k = body + lane; k < K; k += 32) {
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) acc[bb] += h2f(w[k]) * x[bb * K + k];
    }
  }
};

struct F32Rows {
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, const float* x, int lane, float* acc) {
    const auto* w = reinterpret_cast<const float*>(row);
    const int64_t body = K / 128 * 128;
    for (int64_t k = 4 * lane; k < body; k += 128) {
      const float4 wv = *reinterpret_cast<const float4*>(w + k);
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) {
        acc[bb] += dot4(*reinterpret_cast<const float4*>(x + bb * K + k), wv.x, wv.y, wv.z, wv.w);
      }
    }
    for (int64_t k = body + lane; k < K; k += 32) {
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) acc[bb] += w[k] * x[bb * K + k];
    }
  }
};

template <typename Rows, int B>
__global__ void __launch_bounds__(32 * kWarps)
    matvec_kernel(const uint8_t* __restrict__ w, uint64_t row_bytes, int64_t K, int64_t N,
                  const float* __restrict__ x, float* __restrict__ y) {
  const int64_t n = int64_t(blockIdx.x) * kWarps + threadIdx.y;
  if (n >= N) return;  // whole warps leave together: threadIdx.y is the warp
  const int lane = threadIdx.x;
  float acc[B];
MATVEC_UNROLL
  for (int bb = 0; bb < B; ++bb) acc[bb] = 0;
  Rows::template accumulate<B>(w + n * row_bytes, K, x, lane, acc);
MATVEC_UNROLL
  for (int bb = 0; bb < B; ++bb) {
    float v = acc[bb];
MATVEC_UNROLL
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) y[bb * N + n] = v;
  }
}

template <typename Rows>
void launch(const void* w, uint64_t row_bytes, int64_t K, int64_t N, const float* x, int n_batch,
            float* y, cudaStream_t stream) {
  const dim3 block(32, kWarps);
  const auto grid = static_cast<unsigned>((N + kWarps - 1) / kWarps);
  const auto* wb = static_cast<const uint8_t*>(w);
  with_count<kCudaMatvecMaxBatch>(n_batch, [&]<int B>() {
    matvec_kernel<Rows, B><<<grid, block, 0, stream>>>(wb, row_bytes, K, N, x, y);
  });
}

// The kernels' lane arithmetic run on the host, lane by lane (see matvec.h).
template <typename Rows, int B>
void rows_on_host(const uint8_t* w, uint64_t row_bytes, int64_t K, int64_t N, const float* x, float* y) {
  for (int64_t n = 0; n < N; ++n) {
    float total[B] = {};
    for (int lane = 0; lane < 32; ++lane) {
      float acc[B] = {};
      Rows::template accumulate<B>(w + n * row_bytes, K, x, lane, acc);
      for (int bb = 0; bb < B; ++bb) total[bb] += acc[bb];
    }
    for (int bb = 0; bb < B; ++bb) y[bb * N + n] = total[bb];
  }
}

template <typename Rows>
void on_host(const void* w, uint64_t row_bytes, int64_t K, int64_t N, const float* x, int n_batch, float* y) {
  const auto* wb = static_cast<const uint8_t*>(w);
  with_count<kCudaMatvecMaxBatch>(n_batch, [&]<int B>() { rows_on_host<Rows, B>(wb, row_bytes, K, N, x, y); });
}

}  // namespace

void cuda_matvec_lanes_on_host(GgmlType type, const void* w, int64_t K, int64_t N, const float* x,
                               int n_batch, float* y) {
  if (n_batch < 1 || n_batch > kCudaMatvecMaxBatch) throw_bad_argument("cuda_matvec_lanes_on_host", "batch", n_batch);
  switch (type) {
    case GgmlType::F32: on_host<F32Rows>(w, uint64_t(K) * 4, K, N, x, n_batch, y); break;
    case GgmlType::F16: on_host<F16Rows>(w, uint64_t(K) * 2, K, N, x, n_batch, y); break;
    case GgmlType::Q8_0: on_host<Q8_0Rows>(w, uint64_t(K) / 32 * sizeof(BlockQ8_0), K, N, x, n_batch, y); break;
    case GgmlType::Q4_K: on_host<Q4KRows>(w, uint64_t(K) / 256 * sizeof(BlockQ4_K), K, N, x, n_batch, y); break;
    case GgmlType::Q6_K: on_host<Q6KRows>(w, uint64_t(K) / 256 * sizeof(BlockQ6_K), K, N, x, n_batch, y); break;
    default: throw_unsupported_type("cuda_matvec_lanes_on_host", type);
  }
}

bool cuda_matvec_supports(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_K:
    case GgmlType::Q6_K: return true;
    default: return false;
  }
}

void cuda_matvec(GgmlType type, const void* w, int64_t K, int64_t N, const float* x, int n_batch,
                 float* y, void* stream_ptr) {
  if (n_batch < 1 || n_batch > kCudaMatvecMaxBatch) throw_bad_argument("cuda_matvec", "batch", n_batch);
  if (N <= 0) return;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  switch (type) {
    case GgmlType::F32: launch<F32Rows>(w, uint64_t(K) * 4, K, N, x, n_batch, y, stream); break;
    case GgmlType::F16: launch<F16Rows>(w, uint64_t(K) * 2, K, N, x, n_batch, y, stream); break;
    case GgmlType::Q8_0: launch<Q8_0Rows>(w, uint64_t(K) / 32 * sizeof(BlockQ8_0), K, N, x, n_batch, y, stream); break;
    case GgmlType::Q4_K: launch<Q4KRows>(w, uint64_t(K) / 256 * sizeof(BlockQ4_K), K, N, x, n_batch, y, stream); break;
    case GgmlType::Q6_K: launch<Q6KRows>(w, uint64_t(K) / 256 * sizeof(BlockQ6_K), K, N, x, n_batch, y, stream); break;
    default: throw_unsupported_type("cuda_matvec", type);
  }
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace engine
