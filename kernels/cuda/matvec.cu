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

#include <cstring>

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

// Q4_K and Q5_K: half a warp per super-block, two super-blocks per step. Lane t (0..15) of a half
// reads bytes 8t .. 8t + 7 of qs: chunk c = t / 4 holds groups 2c (low nibbles) and 2c + 1 (high)
// at values 64c + 8(t % 4) .. +7 and 64c + 32 + 8(t % 4) .. +7. Q5_K adds a fifth bit per value:
// bit g of qh byte l is bit 4 of value l of group g, so its lanes also read qh bytes
// 8(t % 4) .. +7, the same value positions within their groups.
template <typename Block, bool kFiveBit>
struct Q45KRows {
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, const float* x, int lane, float* acc) {
    const auto* blocks = reinterpret_cast<const Block*>(row);
    const int half = lane / 16, t = lane % 16, c = t / 4, l8 = 8 * (t % 4);
MATVEC_UNROLL2
    for (int64_t i = half; i < K / 256; i += 2) {
      const Block& b = blocks[i];
      const uint2 q = *reinterpret_cast<const uint2*>(b.qs + 32 * c + l8);
      uint2 h = {0, 0};
      if constexpr (kFiveBit) h = *reinterpret_cast<const uint2*>(b.qh + l8);
      uint8_t sc0, m0, sc1, m1;
      unpack_scale_min_k4(b.scales, 2 * c, &sc0, &m0);
      unpack_scale_min_k4(b.scales, 2 * c + 1, &sc1, &m1);
      const float d = h2f(b.d), dmin = h2f(b.dmin);
      const float d0 = d * float(sc0), d1 = d * float(sc1), n0 = dmin * float(m0), n1 = dmin * float(m1);
      float lo[8], hi[8];
MATVEC_UNROLL
      for (int j = 0; j < 8; ++j) {
        const uint32_t qw = j < 4 ? q.x : q.y, hw = j < 4 ? h.x : h.y;
        const int sh = 8 * (j % 4);
        const uint32_t qb = (qw >> sh) & 255, hb = (hw >> sh) & 255;
        lo[j] = float((qb & 15) | (((hb >> (2 * c)) & 1) << 4));
        hi[j] = float((qb >> 4) | (((hb >> (2 * c + 1)) & 1) << 4));
      }
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) {
        const float* xv = x + bb * K + i * 256 + 64 * c + l8;
        const float4 a0 = *reinterpret_cast<const float4*>(xv), a1 = *reinterpret_cast<const float4*>(xv + 4);
        const float4 b0 = *reinterpret_cast<const float4*>(xv + 32), b1 = *reinterpret_cast<const float4*>(xv + 36);
        const float l = dot4(a0, lo[0], lo[1], lo[2], lo[3]) + dot4(a1, lo[4], lo[5], lo[6], lo[7]);
        const float u = dot4(b0, hi[0], hi[1], hi[2], hi[3]) + dot4(b1, hi[4], hi[5], hi[6], hi[7]);
        acc[bb] += d0 * l - n0 * (sum4(a0) + sum4(a1)) + d1 * u - n1 * (sum4(b0) + sum4(b1));
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

// Q4_0, Q4_1, Q5_0, Q5_1: 32 values per block, eight lanes per block and four blocks per step.
// Lane l8 = l % 8 takes qs bytes 2 l8 and 2 l8 + 1: values 2 l8, 2 l8 + 1 (low nibbles) and
// 16 + 2 l8, 17 + 2 l8 (high nibbles); the 5-bit types add bit v of qh as bit 4 of value v.
// value = d * (q - offset) (Q4_0: 8, Q5_0: 16) or d * q + m (Q4_1, Q5_1).
template <typename Block, bool kFiveBit, bool kMin>
struct LegacyRows {
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, const float* x, int lane, float* acc) {
    const auto* blocks = reinterpret_cast<const Block*>(row);
    const int sub = lane / 8, l8 = lane % 8;
    for (int64_t i = sub; i < K / 32; i += 4) {
      const Block& b = blocks[i];
      const uint16_t qq = *reinterpret_cast<const uint16_t*>(b.qs + 2 * l8);
      int v[4] = {qq & 15, (qq >> 8) & 15, (qq >> 4) & 15, qq >> 12};  // values 2l8, 2l8+1, 16+2l8, 17+2l8
      if constexpr (kFiveBit) {
        const uint32_t qh = uint32_t(*reinterpret_cast<const uint16_t*>(b.qh)) |
                            (uint32_t(*reinterpret_cast<const uint16_t*>(b.qh + 2)) << 16);
        const int e[4] = {2 * l8, 2 * l8 + 1, 16 + 2 * l8, 17 + 2 * l8};
MATVEC_UNROLL
        for (int j = 0; j < 4; ++j) v[j] |= int((qh >> e[j]) & 1) << 4;
      }
      const float d = h2f(b.d);
      float w[4], m = 0;
      if constexpr (kMin) m = h2f(b.m);
MATVEC_UNROLL
      for (int j = 0; j < 4; ++j) w[j] = kMin ? d * float(v[j]) + m : d * float(v[j] - (kFiveBit ? 16 : 8));
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) {
        const float* xv = x + bb * K + i * 32 + 2 * l8;
        const float2 lo = *reinterpret_cast<const float2*>(xv), hi = *reinterpret_cast<const float2*>(xv + 16);
        acc[bb] += w[0] * lo.x + w[1] * lo.y + w[2] * hi.x + w[3] * hi.y;
      }
    }
  }
};

// F16 and F32: eight values per lane per step (16 or 32 bytes), then a scalar tail.
__host__ __device__ __forceinline__ float bf2f(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

// F16 and BF16: the same lanes, another 16-bit decode.
template <bool kBrain>
struct Half16Rows {
  __host__ __device__ static float to_f32(uint16_t h) { return kBrain ? bf2f(h) : h2f(h); }

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
        wf[2 * j] = to_f32(uint16_t(words[j] & 0xffffu));
        wf[2 * j + 1] = to_f32(uint16_t(words[j] >> 16));
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
      for (int bb = 0; bb < B; ++bb) acc[bb] += to_f32(w[k]) * x[bb * K + k];
    }
  }
};
using F16Rows = Half16Rows<false>;
using BF16Rows = Half16Rows<true>;

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

// Calls f.template operator()<Rows>(row_bytes) with the type's lane code; false if it has none.
template <typename F>
bool with_rows(GgmlType type, int64_t K, F&& f) {
  const auto blocks = [&](uint64_t block_bytes, int64_t per) { return uint64_t(K / per) * block_bytes; };
  switch (type) {
    case GgmlType::F32: f.template operator()<F32Rows>(uint64_t(K) * 4); return true;
    case GgmlType::F16: f.template operator()<F16Rows>(uint64_t(K) * 2); return true;
    case GgmlType::BF16: f.template operator()<BF16Rows>(uint64_t(K) * 2); return true;
    case GgmlType::Q8_0: f.template operator()<Q8_0Rows>(blocks(sizeof(BlockQ8_0), 32)); return true;
    case GgmlType::Q4_0: f.template operator()<LegacyRows<BlockQ4_0, false, false>>(blocks(sizeof(BlockQ4_0), 32)); return true;
    case GgmlType::Q4_1: f.template operator()<LegacyRows<BlockQ4_1, false, true>>(blocks(sizeof(BlockQ4_1), 32)); return true;
    case GgmlType::Q5_0: f.template operator()<LegacyRows<BlockQ5_0, true, false>>(blocks(sizeof(BlockQ5_0), 32)); return true;
    case GgmlType::Q5_1: f.template operator()<LegacyRows<BlockQ5_1, true, true>>(blocks(sizeof(BlockQ5_1), 32)); return true;
    case GgmlType::Q4_K: f.template operator()<Q45KRows<BlockQ4_K, false>>(blocks(sizeof(BlockQ4_K), 256)); return true;
    case GgmlType::Q5_K: f.template operator()<Q45KRows<BlockQ5_K, true>>(blocks(sizeof(BlockQ5_K), 256)); return true;
    case GgmlType::Q6_K: f.template operator()<Q6KRows>(blocks(sizeof(BlockQ6_K), 256)); return true;
    default: return false;
  }
}

}  // namespace

void cuda_matvec_lanes_on_host(GgmlType type, const void* w, int64_t K, int64_t N, const float* x,
                               int n_batch, float* y) {
  if (n_batch < 1 || n_batch > kCudaMatvecMaxBatch) throw_bad_argument("cuda_matvec_lanes_on_host", "batch", n_batch);
  const bool known = with_rows(type, K, [&]<typename Rows>(uint64_t row_bytes) {
    on_host<Rows>(w, row_bytes, K, N, x, n_batch, y);
  });
  if (!known) throw_unsupported_type("cuda_matvec_lanes_on_host", type);
}

bool cuda_matvec_supports(GgmlType type) {
  return with_rows(type, 256, [&]<typename Rows>(uint64_t) {});
}

void cuda_matvec(GgmlType type, const void* w, int64_t K, int64_t N, const float* x, int n_batch,
                 float* y, void* stream_ptr) {
  if (n_batch < 1 || n_batch > kCudaMatvecMaxBatch) throw_bad_argument("cuda_matvec", "batch", n_batch);
  if (N <= 0) return;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  const bool known = with_rows(type, K, [&]<typename Rows>(uint64_t row_bytes) {
    launch<Rows>(w, row_bytes, K, N, x, n_batch, y, stream);
  });
  if (!known) throw_unsupported_type("cuda_matvec", type);
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace engine
