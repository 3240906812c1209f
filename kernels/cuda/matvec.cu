// Matrix-vector kernels for decode steps: weights read once, straight in their blocks.
//
// Layout: W is N rows of K values (ggml blocks in the GPU layout, engine/gpu_layout.h: Q2_K, Q3_K
// and Q6_K regrouped or padded for aligned loads; row n contiguous); x is n_batch rows of K
// floats, or for the K-quants the same rows as 8-bit blocks (ActQ8Block, K / 32 per row); y is n_batch
// rows of N floats. Launch: blocks of kWarps warps, one warp per output row (grid
// ceil(N / kWarps); a fused launch spreads the rows of up to three matrices of one type over one
// grid); each lane decodes its share of every super-block of the row in registers, multiplies
// with the B activation rows and the warp sums by shuffles.
// Bound: memory (decode reads every weight byte once; the activations stay in L1/L2). Loads per
// lane are 4-16 bytes and consecutive lanes read consecutive bytes of a block. The 4- to 6-bit
// K-quants multiply their integer codes with 8-bit activations by dp4a (four products per
// instruction): decoding each value to f32 for an FMA costs about six instructions per value,
// which at HBM3 rates (5-6e12 values/s for Q4_K) is the SMs' whole issue rate; dp4a brings it
// near two.
// Precision: float types and Q4_0..Q8_0: f32 products and sums of the exact dequantized weights
// (as the CPU reference); K-quants: exact integer dot products of the codes with the activations'
// 8-bit codes (relative rounding up to 1/254 of a block's largest value, as the CPU's kernels).
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "../cpu/quant_blocks.h"
#include "../cpu/rope_math.h"
#include "../cpu/with_count.h"
#include "block_loads.cuh"
#include "launch.cuh"
#include "engine/gpu_layout.h"
#include "matvec.h"
#include "scheduler/cuda_check.h"
#include "rope_pair.cuh"
#include "tensor_core.cuh"

// Loop unrolling for the device passes only: the lane code is also compiled for the host.
#if defined(__CUDA_ARCH__)
#define MATVEC_UNROLL _Pragma("unroll")
#define MATVEC_UNROLL4 _Pragma("unroll 4")
#else
#define MATVEC_UNROLL
#define MATVEC_UNROLL4
#endif

namespace engine {
namespace {

constexpr int kWarps = 4;


// y = (y +) v (+ bias[n]), as ProductEpilogue says.
__host__ __device__ __forceinline__ void apply_epilogue(const ProductEpilogue& ep, int64_t n, float v, float& y) {
  if (ep.bias != nullptr) v += ep.bias[n];
  y = ep.accumulate ? y + v : v;
}

__host__ __device__ __forceinline__ float dot4(float4 a, float b0, float b1, float b2, float b3) {
  return a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
}


// Byte-wise helpers of the integer kernels, the same on the host (for the lane tests).
__host__ __device__ __forceinline__ int dp4a(uint32_t a, int b, int c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(int(a), b, c);
#else
  for (int j = 0; j < 4; ++j) c += int(int8_t(uint8_t(a >> (8 * j)))) * int(int8_t(uint8_t(uint32_t(b) >> (8 * j))));
  return c;
#endif
}

// a - b in each byte, wrapping (no borrow between bytes).
__host__ __device__ __forceinline__ uint32_t sub_bytes(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __vsub4(a, b);
#else
  uint32_t r = 0;
  for (int j = 0; j < 4; ++j) r |= (((a >> (8 * j)) - (b >> (8 * j))) & 255u) << (8 * j);
  return r;
#endif
}

// Where a lane's weight loads come from: global memory by the streaming path (the direct
// kernel, and the host), or the shared-memory copy the staged kernel made of the row.
struct GlobalWeights {
  __host__ __device__ static uint4 load16(const void* p) { return stream16(p); }
  __host__ __device__ static uint2 load8(const void* p) { return stream8(p); }
};
struct SharedWeights {
  __host__ __device__ static uint4 load16(const void* p) { return *static_cast<const uint4*>(p); }
  __host__ __device__ static uint2 load8(const void* p) { return *static_cast<const uint2*>(p); }
};

// Q4_K and Q5_K on 8-bit activations: a quarter warp per super-block, four super-blocks per
// step, every weight byte in 16-byte loads (the blocks, 144 and 176 bytes, keep rows 16-byte
// aligned). Lane j (0..7) of a quarter takes qs bytes 16j .. 16j + 15: chunk c = j / 2 holds
// groups 2c (low nibbles) and 2c + 1 (high), and the lane has values 16h .. 16h + 15 (h = j % 2)
// of both, against the same bytes of activation blocks 2c and 2c + 1. The header (d, dmin, the
// 12 scale bytes) is one 16-byte load, the same address for the whole quarter. Per lane and
// super-block: eight dp4a, d * scale * dx * sum(q * xq), minus dmin * min * the block's
// activation sum, added by the h = 0 lane of the pair. Q5_K adds a fifth bit: bit g of qh byte l
// is bit 4 of value l of group g, so its lanes also load qh bytes 16h .. 16h + 15.
template <typename Block, bool kFiveBit>
struct Q45KRows {
  static constexpr bool kQ8 = true;
  static constexpr int kBlockBytes = sizeof(Block);  // a super-block, in the row as in the staged copy

  // The lane's share of super-block i (its bytes at `block`, read through Loads) added to acc;
  // `row` is the row in global memory (Q6_K reads its d values there).
  template <int B, typename Loads>
  __host__ __device__ static void accumulate_block(const uint8_t* block, const uint8_t* /*row*/, int64_t i,
                                                   int64_t K, MatvecInput in, int lane, float* acc) {
    const int j = lane % 8, c = j / 2, h16 = 16 * (j % 2);
    const float first = j % 2 == 0 ? 1.0f : 0.0f;
    const int64_t row_blocks = K / 32;
    {
      const Block& b = *reinterpret_cast<const Block*>(block);
      const uint4 head = Loads::load16(&b);  // d, dmin | scales 0-3, 4-7, 8-11
      const uint4 q = Loads::load16(b.qs + 32 * c + h16);
      const uint32_t words[4] = {q.x, q.y, q.z, q.w};
      uint32_t lo[4], hi[4];
MATVEC_UNROLL
      for (int k = 0; k < 4; ++k) {
        lo[k] = words[k] & 0x0F0F0F0Fu;
        hi[k] = (words[k] >> 4) & 0x0F0F0F0Fu;
      }
      if constexpr (kFiveBit) {
        const uint4 qh = Loads::load16(b.qh + h16);
        const uint32_t hw[4] = {qh.x, qh.y, qh.z, qh.w};
MATVEC_UNROLL
        for (int k = 0; k < 4; ++k) {
          lo[k] |= ((hw[k] >> (2 * c)) & 0x01010101u) << 4;
          hi[k] |= ((hw[k] >> (2 * c + 1)) & 0x01010101u) << 4;
        }
      }
      float sc0, m0, sc1, m1;
      scale_min_k4(head.y, head.z, head.w, 2 * c, &sc0, &m0);
      scale_min_k4(head.y, head.z, head.w, 2 * c + 1, &sc1, &m1);
      const float d = h2f(uint16_t(head.x & 0xffffu)), dmin = h2f(uint16_t(head.x >> 16));
      const float d0 = d * sc0, d1 = d * sc1;
      const float n0 = first * dmin * m0, n1 = first * dmin * m1;
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) {
        const ActQ8Block& a0 = in.xq[bb * row_blocks + i * 8 + 2 * c];
        const ActQ8Block& a1 = in.xq[bb * row_blocks + i * 8 + 2 * c + 1];
        const int2 xa0 = *reinterpret_cast<const int2*>(a0.q + h16), xa1 = *reinterpret_cast<const int2*>(a0.q + h16 + 8);
        const int2 xb0 = *reinterpret_cast<const int2*>(a1.q + h16), xb1 = *reinterpret_cast<const int2*>(a1.q + h16 + 8);
        const int s0 = dp4a(lo[3], xa1.y, dp4a(lo[2], xa1.x, dp4a(lo[1], xa0.y, dp4a(lo[0], xa0.x, 0))));
        const int s1 = dp4a(hi[3], xb1.y, dp4a(hi[2], xb1.x, dp4a(hi[1], xb0.y, dp4a(hi[0], xb0.x, 0))));
        acc[bb] += d0 * a0.d * float(s0) - n0 * a0.sum + d1 * a1.d * float(s1) - n1 * a1.sum;
      }
    }
  }

  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
MATVEC_UNROLL4
    for (int64_t i = lane / 8; i < K / 256; i += 4) {
      accumulate_block<B, GlobalWeights>(row + i * kBlockBytes, row, i, K, in, lane, acc);
    }
  }
};

// Q6_K on 8-bit activations, in the GPU layout (engine/gpu_layout.h: per row, the super-blocks'
// 208-byte records ql, qh, scales, 16-byte aligned, then the row's fp16 d values): a quarter warp
// per super-block, four super-blocks per step. Lane j (0..7) of a quarter: half h = j / 4,
// u = (j / 2) % 2, p = j % 2; it takes values 16u .. 16u + 15 of groups s = p and p + 2 of half
// h (value 128h + 32s + l: nibble s / 2 of ql byte 64h + 32(s % 2) + l, bits 2s of qh byte
// 32h + l, minus 32 by a byte-wise subtraction, times d * scales[8h + 2s + l / 16]): ql bytes
// 64h + 32p + 16u .. +15 and qh bytes 32h + 16u .. +15 (both nibbles of the first serve its two
// groups), and the half's 8 scale bytes, each in one load; against bytes 16u .. 16u + 15 of
// activation blocks 4h + s.
struct Q6KRows {
  static constexpr bool kQ8 = true;
  static constexpr int kBlockBytes = kGpuQ6KRecordBytes;  // a super-block's record (its d is at the row's end)

  // As Q45KRows::accumulate_block: record i at `rec`, its d from the row's d values in global memory.
  template <int B, typename Loads>
  __host__ __device__ static void accumulate_block(const uint8_t* rec, const uint8_t* row, int64_t i, int64_t K,
                                                   MatvecInput in, int lane, float* acc) {
    const int64_t nb = K / 256;
    const uint16_t* d_values = reinterpret_cast<const uint16_t*>(row + nb * kGpuQ6KRecordBytes);
    const int j = lane % 8, h = j / 4, u = (j / 2) % 2, p = j % 2, u16 = 16 * u;
    const int64_t row_blocks = K / 32;
    {
      const uint4 ql = Loads::load16(rec + 64 * h + 32 * p + u16);
      const uint4 qh = Loads::load16(rec + 128 + 32 * h + u16);
      const uint2 sc = Loads::load8(rec + 192 + 8 * h);
      const float d = h2f(stream2(d_values + i));
      const uint32_t qlw[4] = {ql.x, ql.y, ql.z, ql.w}, qhw[4] = {qh.x, qh.y, qh.z, qh.w};
      uint32_t w[2][4];
      float scale[2];
MATVEC_UNROLL
      for (int g = 0; g < 2; ++g) {
        const int s = p + 2 * g;
MATVEC_UNROLL
        for (int k = 0; k < 4; ++k) {
          const uint32_t low = (qlw[k] >> (4 * g)) & 0x0F0F0F0Fu;
          const uint32_t high = ((qhw[k] >> (2 * s)) & 0x03030303u) << 4;
          w[g][k] = sub_bytes(low | high, 0x20202020u);
        }
        // scales[8h + 2s + u]: byte 2p + u of the half's first (g = 0) or second (g = 1) word
        scale[g] = d * float(int8_t(uint8_t(byte_of(g == 0 ? sc.x : sc.y, 2 * p + u))));
      }
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) {
        float sum = 0;
MATVEC_UNROLL
        for (int g = 0; g < 2; ++g) {
          const ActQ8Block& a = in.xq[bb * row_blocks + i * 8 + 4 * h + p + 2 * g];
          const int2 x0 = *reinterpret_cast<const int2*>(a.q + u16), x1 = *reinterpret_cast<const int2*>(a.q + u16 + 8);
          const int dot = dp4a(w[g][3], x1.y, dp4a(w[g][2], x1.x, dp4a(w[g][1], x0.y, dp4a(w[g][0], x0.x, 0))));
          sum += scale[g] * a.d * float(dot);
        }
        acc[bb] += sum;
      }
    }
  }

  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
MATVEC_UNROLL4
    for (int64_t i = lane / 8; i < K / 256; i += 4) {
      accumulate_block<B, GlobalWeights>(row + i * kGpuQ6KRecordBytes, row, i, K, in, lane, acc);
    }
  }
};

// Q2_K and Q3_K on 8-bit activations, in the GPU layout (engine/gpu_layout.h: Q2_K rows are the
// super-blocks' 80-byte records scales, qs, then their (d, dmin) pairs; Q3_K blocks are padded
// to 112 bytes: hmask, qs, then scales and d in the last 16), a quarter warp per super-block,
// four super-blocks per step. Value e = 128h + 32g + l (h < 2, g < 4, l < 32) has its low two
// bits at bits 2g of qs byte 32h + l (Q3_K: its third at bit 4h + g of hmask byte l) and lies in
// 16-value group 8h + 2g + l / 16 and activation block 4h + g. Lane j (0..7) of a quarter takes
// qs bytes 8j .. 8j + 7 (h = j / 4, l from 8 (j % 4)) in one 8-byte load: per step g eight
// values of group 8h + 2g + u, u = (j % 4) / 2, against bytes 8 (j % 4) .. + 7 of activation
// block 4h + g, two dp4a for the codes and two for the activations' sum (the groups' offsets:
// Q2_K's mins, Q3_K's -4).
//   Q2_K: d * (sc & 15) * dot - dmin * (sc >> 4) * sum, sc = scales[group]: the half's 8 scale
//         bytes in one 8-byte load, (d, dmin) in one 4-byte load;
//   Q3_K: d * (s - 32) * (dot - 4 sum), s the group's 6-bit scale: hmask bytes l .. l + 7 in one
//         8-byte load, the 12 scale bytes and d in one 16-byte load.
template <bool kThreeBit>
struct Q23KRows {
  static constexpr bool kQ8 = true;

  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
    const int j = lane % 8, h = j / 4, l0 = 8 * (j % 4), u = (j % 4) / 2;
    const int64_t row_blocks = K / 32;
MATVEC_UNROLL4
    for (int64_t i = lane / 8; i < K / 256; i += 4) {
      uint2 q, hm = {0, 0};
      float scale[4], offset[4];
      if constexpr (kThreeBit) {
        const uint8_t* b = row + i * kGpuQ3KBlockBytes;
        q = stream8(b + offsetof(BlockQ3_K, qs) + 32 * h + l0);
        hm = stream8(b + offsetof(BlockQ3_K, hmask) + l0);
        const uint4 sd = stream16(b + offsetof(BlockQ3_K, scales));  // scales 0-3, 4-7, 8-11 | d
        const float d = h2f(uint16_t(sd.w & 0xffffu));
MATVEC_UNROLL
        for (int g = 0; g < 4; ++g) {
          scale[g] = d * (u23_to_float(q3k_scale(sd.x, sd.y, sd.z, 8 * h + 2 * g + u)) - 32.0f);
          offset[g] = 4.0f * scale[g];
        }
      } else {
        const uint8_t* rec = row + i * kGpuQ2KRecordBytes;
        q = stream8(rec + offsetof(BlockQ2_K, qs) + 32 * h + l0);
        const uint2 sc = stream8(rec + offsetof(BlockQ2_K, scales) + 8 * h);
        const uint32_t dd = stream4(row + (K / 256) * kGpuQ2KRecordBytes + 4 * i);  // d, dmin
        const float d = h2f(uint16_t(dd & 0xffffu)), dmin = h2f(uint16_t(dd >> 16));
MATVEC_UNROLL
        for (int g = 0; g < 4; ++g) {
          const uint32_t s = byte_of(g < 2 ? sc.x : sc.y, (2 * g + u) % 4);  // scales[8h + 2g + u]
          scale[g] = d * u23_to_float(s & 15u);
          offset[g] = dmin * u23_to_float(s >> 4);
        }
      }
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) {
        float sum = 0;
MATVEC_UNROLL
        for (int g = 0; g < 4; ++g) {
          uint32_t c0 = (q.x >> (2 * g)) & 0x03030303u, c1 = (q.y >> (2 * g)) & 0x03030303u;
          if constexpr (kThreeBit) {
            c0 |= ((hm.x >> (4 * h + g)) & 0x01010101u) << 2;
            c1 |= ((hm.y >> (4 * h + g)) & 0x01010101u) << 2;
          }
          const ActQ8Block& a = in.xq[bb * row_blocks + i * 8 + 4 * h + g];
          const int2 x = *reinterpret_cast<const int2*>(a.q + l0);
          const int dot = dp4a(c1, x.y, dp4a(c0, x.x, 0));
          const int xsum = dp4a(0x01010101u, x.y, dp4a(0x01010101u, x.x, 0));
          sum += a.d * (scale[g] * float(dot) - offset[g] * float(xsum));
        }
        acc[bb] += sum;
      }
    }
  }
};

// Q8_0: 34-byte blocks (2-byte aligned), eight lanes per block and four blocks per step; lane
// l8 = l % 8 takes values 4 l8 .. 4 l8 + 3 as two 2-byte loads.
struct Q8_0Rows {
  static constexpr bool kQ8 = false;
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
    const float* x = in.x;
    const auto* blocks = reinterpret_cast<const BlockQ8_0*>(row);
    const int sub = lane / 8, l8 = lane % 8;
    for (int64_t i = sub; i < K / 32; i += 4) {
      const BlockQ8_0& b = blocks[i];
      const uint16_t v01 = stream2(b.qs + 4 * l8);
      const uint16_t v23 = stream2(b.qs + 4 * l8 + 2);
      const float d = h2f(stream2(&b.d));
      const uint32_t biased = (uint32_t(v01) | (uint32_t(v23) << 16)) ^ 0x80808080u;  // int8 + 128 a byte
      const float w0 = byte_plus_2p23(biased, 0) - (kTwo23 + 128.0f), w1 = byte_plus_2p23(biased, 1) - (kTwo23 + 128.0f);
      const float w2 = byte_plus_2p23(biased, 2) - (kTwo23 + 128.0f), w3 = byte_plus_2p23(biased, 3) - (kTwo23 + 128.0f);
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
// value = d * (q - offset) (Q4_0: 8, Q5_0: 16) or d * q + m (Q4_1, Q5_1); IQ4_NL, Q4_0's layout,
// d * grid[q] (iq4_grid4).
template <typename Block, bool kFiveBit, bool kMin>
struct LegacyRows {
  static constexpr bool kGrid = std::is_same_v<Block, BlockIQ4_NL>;
  static constexpr bool kQ8 = false;
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
    const float* x = in.x;
    const auto* blocks = reinterpret_cast<const Block*>(row);
    const int sub = lane / 8, l8 = lane % 8;
    for (int64_t i = sub; i < K / 32; i += 4) {
      const Block& b = blocks[i];
      const uint16_t qq = stream2(b.qs + 2 * l8);
      uint32_t v[4] = {qq & 15u, (qq >> 8) & 15u, (qq >> 4) & 15u, uint32_t(qq) >> 12};  // values 2l8, 2l8+1, 16+2l8, 17+2l8
      if constexpr (kFiveBit) {
        const uint32_t qh = uint32_t(stream2(b.qh)) | (uint32_t(stream2(b.qh + 2)) << 16);
        const int e[4] = {2 * l8, 2 * l8 + 1, 16 + 2 * l8, 17 + 2 * l8};
MATVEC_UNROLL
        for (int j = 0; j < 4; ++j) v[j] |= ((qh >> e[j]) & 1) << 4;
      }
      const float d = h2f(stream2(&b.d));
      float w[4], m = 0;
      if constexpr (kMin) m = h2f(stream2(&b.m));
      if constexpr (kGrid) {
        const uint32_t grid = iq4_grid4(v[0] | (v[1] << 8) | (v[2] << 16) | (v[3] << 24)) ^ 0x80808080u;  // + 128 a byte
MATVEC_UNROLL
        for (int j = 0; j < 4; ++j) w[j] = d * (byte_plus_2p23(grid, j) - (kTwo23 + 128.0f));
      } else {
MATVEC_UNROLL
        for (int j = 0; j < 4; ++j) {
          const float q = u23_to_float(v[j]);
          w[j] = kMin ? d * q + m : d * (q - (kFiveBit ? 16.0f : 8.0f));
        }
      }
MATVEC_UNROLL
      for (int bb = 0; bb < B; ++bb) {
        const float* xv = x + bb * K + i * 32 + 2 * l8;
        const float2 lo = *reinterpret_cast<const float2*>(xv), hi = *reinterpret_cast<const float2*>(xv + 16);
        acc[bb] += w[0] * lo.x + w[1] * lo.y + w[2] * hi.x + w[3] * hi.y;
      }
    }
  }
};

// Half a group's integer dot product: four words of four signed values (value 4k + j in byte j
// of v[k]) against 16 activation codes, in four dp4a.
__host__ __device__ __forceinline__ int dp4a_half(const uint32_t* v, const int8_t* q) {
  const int2 x0 = *reinterpret_cast<const int2*>(q), x1 = *reinterpret_cast<const int2*>(q + 8);
  return dp4a(v[0], x0.x, dp4a(v[1], x0.y, dp4a(v[2], x1.x, dp4a(v[3], x1.y, 0))));
}
// A 32-value group's: eight words against an activation block's codes, in two chains of four.
__host__ __device__ __forceinline__ int dp4a_group(const uint32_t (&v)[8], const ActQ8Block& a) {
  return dp4a_half(v, a.q) + dp4a_half(v + 4, a.q + 16);
}
// acc[bb] += scale * dx * (v . xq) of group j of super-block i against each batch row's activation
// block (the IQ4_XS, IQ3 and TQ lanes, a scale per group).
template <int B>
__host__ __device__ __forceinline__ void add_group_scaled(float* acc, MatvecInput in, int64_t K, int64_t i, int j,
                                                          const uint32_t (&v)[8], float scale) {
MATVEC_UNROLL
  for (int bb = 0; bb < B; ++bb) {
    const ActQ8Block& a = in.xq[bb * (K / 32) + i * 8 + j];
    acc[bb] += scale * a.d * float(dp4a_group(v, a));
  }
}
// acc[bb] += d * dx * (s0 * first half + s1 * second half) of group j of super-block i against
// each batch row's activation block (the IQ2 and IQ1 lanes, a scale per 16 values).
template <int B>
__host__ __device__ __forceinline__ void add_half_scaled(float* acc, MatvecInput in, int64_t K, int64_t i, int j,
                                                         const uint32_t (&v)[8], int s0, int s1, float d) {
MATVEC_UNROLL
  for (int bb = 0; bb < B; ++bb) {
    const ActQ8Block& a = in.xq[bb * (K / 32) + i * 8 + j];
    acc[bb] += d * a.d * float(s0 * dp4a_half(v, a.q) + s1 * dp4a_half(v + 4, a.q + 16));
  }
}

// IQ4_XS on 8-bit activations: a quarter warp per super-block (136 bytes: rows only 8-byte
// aligned), four super-blocks per step. Lane j (0..7) of a quarter takes group j: qs bytes
// 16j .. 16j + 15 in two 8-byte loads (the low nibbles are values 0..15, the high ones 16..31),
// whose grid values (iq4_grid4) meet activation block j in eight dp4a; the header (d, scales_h,
// scales_l) is one 8-byte load, the same address for the whole quarter. Per lane and super-block:
// d * (s_j - 32) * dx * sum(grid * xq).
struct IQ4XSRows {
  static constexpr bool kQ8 = true;
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
    const int j = lane % 8;
MATVEC_UNROLL4
    for (int64_t i = lane / 8; i < K / 256; i += 4) {
      const uint8_t* b = row + i * sizeof(BlockIQ4_XS);
      const uint2 head = stream8(b);  // d, scales_h | scales_l[0..3]
      const uint2 q0 = stream8(b + offsetof(BlockIQ4_XS, qs) + 16 * j), q1 = stream8(b + offsetof(BlockIQ4_XS, qs) + 16 * j + 8);
      const uint32_t words[4] = {q0.x, q0.y, q1.x, q1.y};
      uint32_t v[8];  // values 0..15 from the low nibbles, 16..31 from the high ones
MATVEC_UNROLL
      for (int k = 0; k < 4; ++k) {
        v[k] = iq4_grid4(words[k] & 0x0F0F0F0Fu);
        v[k + 4] = iq4_grid4((words[k] >> 4) & 0x0F0F0F0Fu);
      }
      const uint32_t scale_bits = iq4_xs_scale_bits(head.y, head.x >> 16, j);
      const float scale = h2f(uint16_t(head.x & 0xffffu)) * (u23_to_float(scale_bits) - 32.0f);
      add_group_scaled<B>(acc, in, K, i, j, v, scale);
    }
  }
};

// IQ3_XXS and IQ3_S on 8-bit activations, in the GPU layout (engine/gpu_layout.h: each row's
// records, 96 or 112 bytes, then its d values): a quarter warp per super-block, four super-blocks
// per step. Lane j (0..7) of a quarter takes group j: its eight grid indices in one 8-byte load,
// its signs and scale (IQ3_XXS: the aux word; IQ3_S: four sign bytes, the qh byte and the scale
// byte) in 4-byte loads, d in a 2-byte one; the grid entries come from the table in global memory
// (L1-resident, quant_blocks.h) and meet activation block j, signs applied (iq_signed4), in eight
// dp4a. Per lane and super-block: d * scale_j * dx * sum(v * xq).
template <typename Block>
struct IQ3Rows {
  static constexpr bool kQ8 = true;
  static constexpr bool kXXS = std::is_same_v<Block, BlockIQ3_XXS>;
  static constexpr int64_t kRecord = kXXS ? int64_t(kGpuIQ3XXSRecordBytes) : int64_t(kGpuIQ3SRecordBytes);
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
    const int j = lane % 8;
MATVEC_UNROLL4
    for (int64_t i = lane / 8; i < K / 256; i += 4) {
      const uint8_t* r = row + i * kRecord;  // the record: the block's fields less 2 bytes of offset
      const uint2 idx = stream8(r + 8 * j);
      const uint8_t indices[8] = {uint8_t(idx.x), uint8_t(idx.x >> 8), uint8_t(idx.x >> 16), uint8_t(idx.x >> 24),
                                  uint8_t(idx.y), uint8_t(idx.y >> 8), uint8_t(idx.y >> 16), uint8_t(idx.y >> 24)};
      uint32_t v[8];
      float scale;
      if constexpr (kXXS) {
        const uint32_t aux = stream4(r + offsetof(BlockIQ3_XXS, aux) - 2 + 4 * j);
MATVEC_UNROLL
        for (int c = 0; c < 8; ++c) v[c] = iq3xxs_values4(indices, aux, c);
        scale = iq3xxs_scale(aux);
      } else {
        const uint32_t signs = stream4(r + offsetof(BlockIQ3_S, signs) - 2 + 4 * j);
        const uint32_t qh = stream4(r + offsetof(BlockIQ3_S, qh) - 2 + 4 * (j / 4)) >> (8 * (j % 4));
MATVEC_UNROLL
        for (int c = 0; c < 8; ++c) v[c] = iq3s_values4(indices, qh, signs, c);
        scale = iq3s_scale(stream4(r + offsetof(BlockIQ3_S, scales) - 2), j);
      }
      scale *= h2f(stream2(row + (K / 256) * kRecord + 2 * i));
      add_group_scaled<B>(acc, in, K, i, j, v, scale);
    }
  }
};

// IQ2_XXS, IQ2_XS and IQ2_S on 8-bit activations, in the GPU layout (engine/gpu_layout.h: each
// row's records, 64, 72 or 80 bytes, then its d values): a quarter warp per super-block, four
// super-blocks per step. Lane j (0..7) of a quarter takes group j, four grid entries
// (quant_blocks.h): IQ2_XXS's eight bytes (indices, aux word) and IQ2_XS's four 16-bit codes in
// one 8-byte load, IQ2_XS's scale byte from a 4-byte load; IQ2_S's index and sign bytes in two
// 4-byte loads, its qh and scale bytes from two more; d in a 2-byte load. The entries come from
// the tables in global memory (L1-resident), signs applied (iq_signed4), and meet activation
// block j in eight dp4a, a half (16 values) at a time for the halves' scales. Per lane and
// super-block: d / 8 * dx * sum_h (2 s_h + 1) * sum(v * xq)_h.
template <typename Block>
struct IQ2Rows {
  static constexpr bool kQ8 = true;
  static constexpr bool kXXS = std::is_same_v<Block, BlockIQ2_XXS>, kXS = std::is_same_v<Block, BlockIQ2_XS>;
  static constexpr int64_t kRecord = kXXS  ? int64_t(kGpuIQ2XXSRecordBytes)
                                     : kXS ? int64_t(kGpuIQ2XSRecordBytes)
                                           : int64_t(kGpuIQ2SRecordBytes);
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
    const int j = lane % 8;
MATVEC_UNROLL4
    for (int64_t i = lane / 8; i < K / 256; i += 4) {
      const uint8_t* r = row + i * kRecord;  // the record: the block's fields less 2 bytes of offset
      IQ2Entry e[4];
      uint32_t scales;  // the halves' 4-bit steps in bits 0-3 and 4-7
      if constexpr (kXXS) {
        const uint2 w = stream8(r + 8 * j);
MATVEC_UNROLL
        for (int l = 0; l < 4; ++l) e[l] = iq2xxs_entry(w.x, w.y, l);
        scales = (w.y >> 28) * 0x11u;
      } else if constexpr (kXS) {
        const uint2 w = stream8(r + 8 * j);
        const uint32_t codes[4] = {w.x & 0xffffu, w.x >> 16, w.y & 0xffffu, w.y >> 16};
MATVEC_UNROLL
        for (int l = 0; l < 4; ++l) e[l] = iq2xs_entry(codes[l]);
        scales = stream4(r + offsetof(BlockIQ2_XS, scales) - 2 + 4 * (j / 4)) >> (8 * (j % 4));
      } else {
        const uint32_t low = stream4(r + 4 * j), signs = stream4(r + offsetof(BlockIQ2_S, signs) - 2 + 4 * j);
        const uint32_t qh = stream4(r + offsetof(BlockIQ2_S, qh) - 2 + 4 * (j / 4)) >> (8 * (j % 4));
MATVEC_UNROLL
        for (int l = 0; l < 4; ++l) e[l] = iq2s_entry((low >> (8 * l)) & 255u, qh, (signs >> (8 * l)) & 255u, l);
        scales = stream4(r + offsetof(BlockIQ2_S, scales) - 2 + 4 * (j / 4)) >> (8 * (j % 4));
      }
      uint32_t v[8];
MATVEC_UNROLL
      for (int c = 0; c < 8; ++c) v[c] = iq2_values4(e[c / 2], c % 2);
      const float d = h2f(stream2(row + (K / 256) * kRecord + 2 * i)) * 0.125f;
      add_half_scaled<B>(acc, in, K, i, j, v, iq2_half_scale(scales, 0), iq2_half_scale(scales, 1), d);
    }
  }
};

// IQ1_S and IQ1_M on 8-bit activations: IQ1_S in the GPU layout (engine/gpu_layout.h: each row's
// 48-byte records, then its d values), IQ1_M as in the file (56-byte blocks, 8-byte aligned): a
// quarter warp per super-block, four super-blocks per step. Lane j (0..7) of a quarter takes group
// j, four grid entries (quant_blocks.h): its four index bytes in a 4-byte load, IQ1_S's qh word or
// IQ1_M's two qh bytes in a 2-byte one; IQ1_M's scale words (which hold d) in one 8-byte load, the
// same address for the whole quarter, IQ1_S's d in a 2-byte one. The entries come from the table
// in global memory (16 KiB, L1-resident) as signed bytes w = 8 grid +- 1 (iq1_values4) and meet
// activation block j in eight dp4a, a half (16 values) at a time for IQ1_M's half scales. Per lane
// and super-block: d / 8 * dx * sum_h (2 s_h + 1) * sum(w * xq)_h.
template <typename Block>
struct IQ1Rows {
  static constexpr bool kQ8 = true;
  static constexpr bool kS = std::is_same_v<Block, BlockIQ1_S>;
  static constexpr int64_t kRecord = kS ? int64_t(kGpuIQ1SRecordBytes) : int64_t(sizeof(BlockIQ1_M));
  static constexpr int64_t kQh = kS ? int64_t(offsetof(BlockIQ1_S, qh)) - 2 : int64_t(offsetof(BlockIQ1_M, qh));
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
    const int j = lane % 8;
MATVEC_UNROLL4
    for (int64_t i = lane / 8; i < K / 256; i += 4) {
      const uint8_t* r = row + i * kRecord;  // IQ1_S: the record, the block's fields less 2 bytes of offset
      const uint32_t indices = stream4(r + 4 * j);
      const uint32_t qh = stream2(r + kQh + 2 * j);  // IQ1_S: the group's word; IQ1_M: entry l's nibble l
      uint32_t v[8];
      int s0, s1;
      float d;
      if constexpr (kS) {
        const bool negative = iq1s_delta_negative(qh);
MATVEC_UNROLL
        for (int l = 0; l < 4; ++l) {
          const uint64_t grid = iq1s_grid(iq1s_index((indices >> (8 * l)) & 255u, qh, l));
          v[2 * l] = iq1_values4(uint32_t(grid), negative);
          v[2 * l + 1] = iq1_values4(uint32_t(grid >> 32), negative);
        }
        s0 = s1 = iq1s_scale(qh);
        d = h2f(stream2(row + (K / 256) * kRecord + 2 * i));
      } else {
MATVEC_UNROLL
        for (int l = 0; l < 4; ++l) {
          const uint32_t qh_byte = qh >> (8 * (l / 2));  // entry 4j + l: nibble l % 2 of byte l / 2
          const uint64_t grid = iq1s_grid(iq1m_index((indices >> (8 * l)) & 255u, qh_byte, l));
          v[2 * l] = iq1_values4(uint32_t(grid), iq1m_delta_negative(qh_byte, l));
          v[2 * l + 1] = iq1_values4(uint32_t(grid >> 32), iq1m_delta_negative(qh_byte, l));
        }
        const uint2 sc = stream8(r + offsetof(BlockIQ1_M, scales));
        const uint64_t scales = uint64_t(sc.x) | (uint64_t(sc.y) << 32);
        s0 = iq1m_scale(scales, 2 * j);
        s1 = iq1m_scale(scales, 2 * j + 1);
        d = h2f(iq1m_d_bits(scales));
      }
      add_half_scaled<B>(acc, in, K, i, j, v, s0, s1, d * 0.125f);
    }
  }
};

// TQ1_0 and TQ2_0 on 8-bit activations, in the GPU layout (engine/gpu_layout.h: each row's 56 or
// 64-byte records, the bytes before d, then its d values): a quarter warp per super-block, four
// super-blocks per step. Lane j (0..7) of a quarter takes values 32j .. 32j + 31 (quant_blocks.h):
// TQ2_0's 2-bit field j % 4 of record bytes 32 (j / 4) .. + 31 (two 16-byte loads); TQ1_0's digit
// j of bytes 0..31 (j < 5, four 8-byte loads), or digits 2j - 10 and 2j - 9 of bytes 32..47 (the
// last lane: digit 4, then the four digits of qh). The codes t become signed bytes t - 1
// (tq_values4) and meet activation block j in eight dp4a. Per lane and super-block:
// d * dx * sum((t - 1) * xq).
template <typename Block>
struct TQRows {
  static constexpr bool kQ8 = true;
  static constexpr bool kOne = std::is_same_v<Block, BlockTQ1_0>;
  static constexpr int64_t kRecord = kOne ? int64_t(kGpuTQ1RecordBytes) : int64_t(kGpuTQ2RecordBytes);
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
    const int j = lane % 8;
MATVEC_UNROLL4
    for (int64_t i = lane / 8; i < K / 256; i += 4) {
      const uint8_t* r = row + i * kRecord;
      uint32_t v[8];
      if constexpr (kOne) {
        if (j < 5) {
MATVEC_UNROLL
          for (int k = 0; k < 4; ++k) {
            const uint2 w = stream8(r + 8 * k);
            v[2 * k] = tq_values4(tq1_digits4(w.x, j));
            v[2 * k + 1] = tq_values4(tq1_digits4(w.y, j));
          }
        } else {
          const uint2 a = stream8(r + 32), b = stream8(r + 40);
          const uint32_t words[4] = {a.x, a.y, b.x, b.y};
          const int n = 2 * (j - 5);
          const uint32_t qh = j == 7 ? stream4(r + 48) : 0u;
MATVEC_UNROLL
          for (int k = 0; k < 4; ++k) {
            v[k] = tq_values4(tq1_digits4(words[k], n));
            v[4 + k] = tq_values4(j == 7 ? tq1_digits4(qh, k) : tq1_digits4(words[k], n + 1));
          }
        }
      } else {
        const uint4 a = stream16(r + 32 * (j / 4)), b = stream16(r + 32 * (j / 4) + 16);
        const uint32_t words[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
MATVEC_UNROLL
        for (int k = 0; k < 8; ++k) v[k] = tq_values4((words[k] >> (2 * (j % 4))) & 0x03030303u);
      }
      const float d = h2f(stream2(row + (K / 256) * kRecord + 2 * i));
      add_group_scaled<B>(acc, in, K, i, j, v, d);
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

  static constexpr bool kQ8 = false;
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
    const float* x = in.x;
    const auto* w = reinterpret_cast<const uint16_t*>(row);
    const int64_t body = K / 256 * 256;
    for (int64_t k = 8 * lane; k < body; k += 256) {
      const uint4 raw = stream16(w + k);
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
  static constexpr bool kQ8 = false;
  template <int B>
  __host__ __device__ static void accumulate(const uint8_t* row, int64_t K, MatvecInput in, int lane, float* acc) {
    const float* x = in.x;
    const auto* w = reinterpret_cast<const float*>(row);
    const int64_t body = K / 128 * 128;
    for (int64_t k = 4 * lane; k < body; k += 128) {
      const uint4 raw = stream16(w + k);
      float4 wv;
      memcpy(&wv, &raw, sizeof(wv));
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

// The matrices of one launch (cuda_matvec_fused): rows[s] rows of matrix s, global row r of the
// grid is row r - (rows of the matrices before it) of the first matrix it falls in.
struct Matrices {
  const uint8_t* w[kCudaMatvecMaxFused];
  float* y[kCudaMatvecMaxFused];
  ProductEpilogue ep[kCudaMatvecMaxFused];
  int64_t rows[kCudaMatvecMaxFused];
  int count;
};

// A launch's RoPE epilogue (MatvecRope, matvec.h), with YaRN's correction range and the roles as
// ints; unused by the plain launches.
struct RopeArgs {
  RopeParams p;
  float corr_low, corr_high;
  int head_dim;
  int64_t pos;
  const int64_t* pos_dev;
  uint16_t* k_cache;
  uint16_t* v_cache;
  int64_t kv_dim;
  int roles[kCudaMatvecMaxFused];  // QkvRole values
};

// Row `slot` of the launch's matrix `matrix` (global row n of the grid over its matrices): the
// matrix selected with constant indices so that the parameters stay out of local memory. n is
// the row the warp computes: slot, or for a q or k matrix under RoPE, the dim rope_pair_dim puts
// there (so that neighbouring warps hold a rotated pair).
struct GridRow {
  const uint8_t* w;
  float* y;
  ProductEpilogue ep;
  int64_t n, N, slot;
  int matrix;
};

template <bool kRope>
__device__ __forceinline__ GridRow grid_row(const Matrices& m, int64_t n, const RopeArgs& rope) {
  GridRow r{m.w[0], m.y[0], m.ep[0], n, m.rows[0], n, 0};
MATVEC_UNROLL
  for (int s = 1; s < kCudaMatvecMaxFused; ++s) {
    if (s < m.count && r.slot >= r.N) {
      r.slot -= r.N;
      r.w = m.w[s];
      r.y = m.y[s];
      r.ep = m.ep[s];
      r.N = m.rows[s];
      r.matrix = s;
    }
  }
  r.n = r.slot;
  if constexpr (kRope) {
    const int role = r.matrix == 0 ? rope.roles[0] : r.matrix == 1 ? rope.roles[1] : rope.roles[2];
    if (role != int(QkvRole::v)) {
      const int64_t within = r.slot % rope.head_dim;
      r.n = r.slot - within + rope_pair_dim(int(within), rope.p.n_rot, rope.p.neox);
    }
  }
  return r;
}

// The sum of every lane's v, in every lane.
__device__ __forceinline__ float warp_sum(float v) {
MATVEC_UNROLL
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// The warp's sums for its row (every lane's share in acc), and lane 0's epilogue.
template <int B>
__device__ __forceinline__ void finish_row(const float (&acc)[B], const GridRow& r, int lane) {
MATVEC_UNROLL
  for (int bb = 0; bb < B; ++bb) {
    const float v = warp_sum(acc[bb]);
    if (lane == 0) apply_epilogue(r.ep, r.n, v, r.y[bb * r.N + r.n]);
  }
}

// The RoPE epilogue (batch 1): every warp of the block reaches its barrier (inactive ones with
// nothing to write). A pair's first warp (even: the grid's matrices start at even rows, whole
// heads) rotates its sum and its neighbour's, as the RoPE kernel does (ops.cu), and writes both to
// y, and for k to the cache row of the position; v's sums go to y and the cache as they are.
__device__ __forceinline__ void finish_rope(float acc, const GridRow& r, bool active, int lane, int warp,
                                            const RopeArgs& a) {
  __shared__ float sums[kWarps];
  float v = warp_sum(acc);
  if (active && r.ep.bias != nullptr) v += r.ep.bias[r.n];
  if (lane == 0) sums[warp] = v;
  __syncthreads();
  if (!active || lane != 0) return;
  const int role = r.matrix == 0 ? a.roles[0] : r.matrix == 1 ? a.roles[1] : a.roles[2];
  const int64_t pos = a.pos_dev != nullptr ? *a.pos_dev : a.pos;
  if (role == int(QkvRole::v)) {
    r.y[r.n] = v;
    a.v_cache[pos * a.kv_dim + r.n] = __half_as_ushort(__float2half_rn(v));
    return;
  }
  if (warp % 2 != 0) return;  // the pair's first warp writes both
  const int within = int(r.slot % a.head_dim);  // even
  const int64_t head0 = r.slot - within;
  const int64_t n0 = head0 + rope_pair_dim(within, a.p.n_rot, a.p.neox);
  const int64_t n1 = head0 + rope_pair_dim(within + 1, a.p.n_rot, a.p.neox);
  float x0 = v, x1 = sums[warp + 1];
  if (within / 2 < a.p.n_rot / 2) {
    float c, s;
    rope_rotation(a.p, pos, within / 2, a.corr_low, a.corr_high, &c, &s);
    rotate_pair(v, sums[warp + 1], c, s, &x0, &x1);
  }
  r.y[n0] = x0;
  r.y[n1] = x1;
  if (role == int(QkvRole::k)) {
    a.k_cache[pos * a.kv_dim + n0] = __half_as_ushort(__float2half_rn(x0));
    a.k_cache[pos * a.kv_dim + n1] = __half_as_ushort(__float2half_rn(x1));
  }
}

template <typename Rows, int B, bool kRope>
__global__ void __launch_bounds__(32 * kWarps)
    matvec_kernel(Matrices m, uint64_t row_bytes, int64_t K, int64_t total_rows, MatvecInput in, RopeArgs rope) {
  const int64_t global_row = int64_t(blockIdx.x) * kWarps + threadIdx.y;
  const bool active = global_row < total_rows;
  // Whole warps leave together (threadIdx.y is the warp); under RoPE they stay for the barrier.
  if (!kRope && !active) return;
  const GridRow r = grid_row<kRope>(m, active ? global_row : 0, rope);
  const int lane = threadIdx.x;
  const uint8_t* row = r.w + r.n * row_bytes;
  // The row's first 2 KiB towards L2 while the previous kernel finishes (weights: no kernel
  // writes them); a prefix only, so that the lines of all resident rows fit in L2.
  if (active && lane < 16 && 128 * uint64_t(lane) < row_bytes) prefetch_l2(row + 128 * lane);
  wait_for_previous_kernel();
  allow_next_kernel();
  float acc[B];
MATVEC_UNROLL
  for (int bb = 0; bb < B; ++bb) acc[bb] = 0;
  if (active) Rows::template accumulate<B>(row, K, in, lane, acc);
  if constexpr (kRope) {
    static_assert(B == 1, "RoPE's epilogue is for a decode step");
    finish_rope(acc[0], r, active, lane, int(threadIdx.y), rope);
  } else {
    finish_row<B>(acc, r, lane);
  }
}

// The staged kernel (Q4_K, Q5_K, Q6_K at batch 1): the same lanes and arithmetic as matvec_kernel,
// the weights read from a copy in shared memory that cp.async makes kStagedRing - 1 steps (of four
// super-blocks, a step of the warp's loop) ahead, so that the loads in flight are bounded by
// shared memory rather than by the registers that hold them (the direct kernel keeps four steps
// in flight, 2.3 KB a warp for Q4_K). The first steps' copies go out before the wait for the
// previous kernel (no kernel writes weights). Ring: [kWarps][kStagedRing][4 super-blocks]: for
// long rows (ffn_down's 27 steps) eight slots, 18 KiB a block for Q4_K, 22 for Q5_K, 26 for Q6_K:
// with 48-64 registers a thread, 8-10 blocks an SM, up to 160-190 KB in flight an SM where the
// direct kernel keeps some 80; for rows of at most five steps (K <= 5120) five slots, the whole
// row in flight from the start, in less shared memory (more of the grid resident at once).
constexpr int kStagedShortSteps = 5;

template <typename Rows, int kStagedRing, bool kRope>
__global__ void __launch_bounds__(32 * kWarps)
    matvec_staged_kernel(Matrices m, uint64_t row_bytes, int64_t K, int64_t total_rows, MatvecInput in,
                         RopeArgs rope) {
  constexpr int kStepBytes = 4 * Rows::kBlockBytes;
  static_assert(kStepBytes % 16 == 0, "a step's super-blocks are whole 16-byte chunks");
  __shared__ __align__(16) uint8_t ring[kWarps][kStagedRing][kStepBytes];
  const int64_t global_row = int64_t(blockIdx.x) * kWarps + threadIdx.y;
  const bool active = global_row < total_rows;
  // Whole warps leave together; no barrier below spans warps but RoPE's, for which they stay.
  if (!kRope && !active) return;
  const GridRow r = grid_row<kRope>(m, active ? global_row : 0, rope);
  const int lane = threadIdx.x, warp = threadIdx.y;
  const uint8_t* row = r.w + r.n * row_bytes;
  const int64_t blocks = active ? K / 256 : 0, steps = (blocks + 3) / 4;
  // Step t's super-blocks 4t .. 4t + 3 (fewer in a last partial step) into slot t % kStagedRing,
  // one cp.async group (empty past the last step).
  auto copy = [&](int64_t t) {
    if (t < steps) {
      const int64_t chunks = (blocks - 4 * t < 4 ? blocks - 4 * t : 4) * Rows::kBlockBytes / 16;
      const uint8_t* src = row + 4 * t * Rows::kBlockBytes;
      uint8_t* dst = ring[warp][t % kStagedRing];
      for (int c = lane; c < chunks; c += 32) cp_async16(dst + 16 * c, src + 16 * c, true);
    }
    cp_async_commit();
  };
#pragma unroll
  for (int t = 0; t < kStagedRing - 1; ++t) copy(t);
  wait_for_previous_kernel();
  allow_next_kernel();
  float acc[1] = {0};
  for (int64_t t = 0; t < steps; ++t) {
    copy(t + kStagedRing - 1);      // into the slot step t - 1 read, which every lane has left
    cp_async_wait<kStagedRing - 1>();  // this lane's copies of step t have landed
    __syncwarp();                      // and every lane's
    const int64_t i = 4 * t + lane / 8;
    if (i < blocks) {
      Rows::template accumulate_block<1, SharedWeights>(ring[warp][t % kStagedRing] + (lane / 8) * Rows::kBlockBytes,
                                                        row, i, K, in, lane, acc);
    }
    __syncwarp();  // every lane is done with slot t % kStagedRing before it is refilled
  }
  if constexpr (kRope) {
    finish_rope(acc[0], r, active, lane, warp, rope);
  } else {
    finish_row<1>(acc, r, lane);
  }
}

// Whether Rows has a staged kernel (accumulate_block and its super-block size).
template <typename Rows>
constexpr bool kHasStaged = requires { Rows::kBlockBytes; };

// The launch of the type's kernel: staged or direct, with RoPE's epilogue where `rope` is given
// (batch 1: the caller checked).
template <typename Rows>
void launch(const Matrices& m, uint64_t row_bytes, int64_t K, MatvecInput in, int n_batch, bool staged,
            const RopeArgs* rope, cudaStream_t stream) {
  int64_t total = 0;
  for (int s = 0; s < m.count; ++s) total += m.rows[s];
  if (total <= 0) return;
  const dim3 block(32, kWarps);
  const auto grid = static_cast<unsigned>((total + kWarps - 1) / kWarps);
  const RopeArgs none{};
  const RopeArgs& args = rope != nullptr ? *rope : none;
  const auto go = [&]<bool kRope>() {
    if constexpr (kHasStaged<Rows>) {
      if (staged) {  // the staged kernels are the K-quants' already
        if ((K / 256 + 3) / 4 <= kStagedShortSteps) {
          launch_dependent(matvec_staged_kernel<Rows, kStagedShortSteps, kRope>, grid, block, 0, stream, m, row_bytes,
                           K, total, in, args);
        } else {
          launch_dependent(matvec_staged_kernel<Rows, 8, kRope>, grid, block, 0, stream, m, row_bytes, K, total, in,
                           args);
        }
        return;
      }
    }
    if constexpr (kRope) {
      // RoPE's epilogue takes the K-quants only (cuda_matvec_fused_rope checks): no other instances.
      if constexpr (Rows::kQ8) {
        launch_dependent(matvec_kernel<Rows, 1, true>, grid, block, 0, stream, m, row_bytes, K, total, in, args);
      }
    } else {
      with_count<kCudaMatvecMaxBatch>(n_batch, [&]<int B>() {
        launch_dependent(matvec_kernel<Rows, B, false>, grid, block, 0, stream, m, row_bytes, K, total, in, args);
      });
    }
  };
  if (rope != nullptr) {
    go.template operator()<true>();
  } else {
    go.template operator()<false>();
  }
}

// The kernels' lane arithmetic run on the host, lane by lane (see matvec.h).
template <typename Rows, int B>
void rows_on_host(const uint8_t* w, uint64_t row_bytes, int64_t K, int64_t N, MatvecInput in, float* y,
                  ProductEpilogue ep) {
  for (int64_t n = 0; n < N; ++n) {
    float total[B] = {};
    for (int lane = 0; lane < 32; ++lane) {
      float acc[B] = {};
      Rows::template accumulate<B>(w + n * row_bytes, K, in, lane, acc);
      for (int bb = 0; bb < B; ++bb) total[bb] += acc[bb];
    }
    for (int bb = 0; bb < B; ++bb) apply_epilogue(ep, n, total[bb], y[bb * N + n]);
  }
}

template <typename Rows>
void on_host(const void* w, uint64_t row_bytes, int64_t K, int64_t N, MatvecInput in, int n_batch, float* y,
             ProductEpilogue ep) {
  const auto* wb = static_cast<const uint8_t*>(w);
  with_count<kCudaMatvecMaxBatch>(n_batch, [&]<int B>() { rows_on_host<Rows, B>(wb, row_bytes, K, N, in, y, ep); });
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
    case GgmlType::Q2_K: f.template operator()<Q23KRows<false>>(gpu_row_bytes(GgmlType::Q2_K, K)); return true;
    case GgmlType::Q3_K: f.template operator()<Q23KRows<true>>(gpu_row_bytes(GgmlType::Q3_K, K)); return true;
    case GgmlType::Q4_K: f.template operator()<Q45KRows<BlockQ4_K, false>>(blocks(sizeof(BlockQ4_K), 256)); return true;
    case GgmlType::Q5_K: f.template operator()<Q45KRows<BlockQ5_K, true>>(blocks(sizeof(BlockQ5_K), 256)); return true;
    case GgmlType::Q6_K: f.template operator()<Q6KRows>(gpu_row_bytes(GgmlType::Q6_K, K)); return true;
    case GgmlType::IQ4_NL: f.template operator()<LegacyRows<BlockIQ4_NL, false, false>>(blocks(sizeof(BlockIQ4_NL), 32)); return true;
    case GgmlType::IQ4_XS: f.template operator()<IQ4XSRows>(blocks(sizeof(BlockIQ4_XS), 256)); return true;
    case GgmlType::IQ3_XXS: f.template operator()<IQ3Rows<BlockIQ3_XXS>>(gpu_row_bytes(GgmlType::IQ3_XXS, K)); return true;
    case GgmlType::IQ3_S: f.template operator()<IQ3Rows<BlockIQ3_S>>(gpu_row_bytes(GgmlType::IQ3_S, K)); return true;
    case GgmlType::IQ2_XXS: f.template operator()<IQ2Rows<BlockIQ2_XXS>>(gpu_row_bytes(GgmlType::IQ2_XXS, K)); return true;
    case GgmlType::IQ2_XS: f.template operator()<IQ2Rows<BlockIQ2_XS>>(gpu_row_bytes(GgmlType::IQ2_XS, K)); return true;
    case GgmlType::IQ2_S: f.template operator()<IQ2Rows<BlockIQ2_S>>(gpu_row_bytes(GgmlType::IQ2_S, K)); return true;
    case GgmlType::IQ1_S: f.template operator()<IQ1Rows<BlockIQ1_S>>(gpu_row_bytes(GgmlType::IQ1_S, K)); return true;
    case GgmlType::IQ1_M: f.template operator()<IQ1Rows<BlockIQ1_M>>(blocks(sizeof(BlockIQ1_M), 256)); return true;
    case GgmlType::TQ1_0: f.template operator()<TQRows<BlockTQ1_0>>(gpu_row_bytes(GgmlType::TQ1_0, K)); return true;
    case GgmlType::TQ2_0: f.template operator()<TQRows<BlockTQ2_0>>(gpu_row_bytes(GgmlType::TQ2_0, K)); return true;
    default: return false;
  }
}

// What cuda_matvec and its host twin check before running: batch, type and activation blocks.
template <typename F>
void checked(const char* op, GgmlType type, int64_t K, MatvecInput in, int n_batch, F&& f) {
  if (n_batch < 1 || n_batch > kCudaMatvecMaxBatch) throw_bad_argument(op, "batch", n_batch);
  const bool known = with_rows(type, K, [&]<typename Rows>(uint64_t row_bytes) {
    if (Rows::kQ8 ? in.xq == nullptr : in.x == nullptr) throw_missing_activations(op, type, Rows::kQ8 ? "8-bit (ActQ8Block)" : "f32");
    f.template operator()<Rows>(row_bytes);
  });
  if (!known) throw_unsupported_type(op, type);
}

}  // namespace

bool cuda_matvec_supports(GgmlType type) {
  return with_rows(type, 256, [&]<typename Rows>(uint64_t) {});
}

bool cuda_matvec_wants_q8(GgmlType type) {
  bool q8 = false;
  with_rows(type, 256, [&]<typename Rows>(uint64_t) { q8 = Rows::kQ8; });
  return q8;
}

void cuda_matvec_lanes_on_host(GgmlType type, const void* w, int64_t K, int64_t N, MatvecInput in, int n_batch,
                               float* y, ProductEpilogue ep) {
  checked("cuda_matvec_lanes_on_host", type, K, in, n_batch, [&]<typename Rows>(uint64_t row_bytes) {
    on_host<Rows>(w, row_bytes, K, N, in, n_batch, y, ep);
  });
}

bool cuda_matvec_has_staged(GgmlType type, int n_batch) {
  bool has = false;
  with_rows(type, 256, [&]<typename Rows>(uint64_t) { has = kHasStaged<Rows>; });
  return has && n_batch == 1;
}

namespace {

// cuda_matvec_fused's work, with RoPE's epilogue where rope is given.
void run_fused(const char* op, GgmlType type, int64_t K, MatvecInput in, int n_batch,
               std::span<const MatvecOutput> outs, void* stream_ptr, MatvecKernel kernel, const RopeArgs* rope) {
  if (outs.empty() || outs.size() > size_t(kCudaMatvecMaxFused)) throw_bad_argument(op, "matrices", int64_t(outs.size()));
  Matrices m{};
  m.count = static_cast<int>(outs.size());
  for (int s = 0; s < m.count; ++s) {
    if (outs[size_t(s)].N < 0) throw_bad_argument(op, "rows", outs[size_t(s)].N);
    m.w[s] = static_cast<const uint8_t*>(outs[size_t(s)].w);
    m.y[s] = outs[size_t(s)].y;
    m.ep[s] = outs[size_t(s)].ep;
    m.rows[s] = outs[size_t(s)].N;
  }
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  // ENGINE_CUDA_MATVEC=staged: the staged kernel wherever it runs (until a device's measurements
  // make it the default or drop it).
  static const bool staged_chosen = [] {
    const char* v = std::getenv("ENGINE_CUDA_MATVEC");
    return v != nullptr && std::strcmp(v, "staged") == 0;
  }();
  const bool has_staged = cuda_matvec_has_staged(type, n_batch);
  if (kernel == MatvecKernel::staged && !has_staged) {
    const std::string what =
        "the staged kernel for " + std::string(traits(type).name) + " at batch " + std::to_string(n_batch);
    throw_unsupported("cuda_matvec", what.c_str());
  }
  const bool staged = kernel == MatvecKernel::staged || (kernel == MatvecKernel::automatic && staged_chosen && has_staged);
  checked("cuda_matvec", type, K, in, n_batch, [&]<typename Rows>(uint64_t row_bytes) {
    launch<Rows>(m, row_bytes, K, in, n_batch, staged, rope, stream);
  });
  ENGINE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void cuda_matvec_fused(GgmlType type, int64_t K, MatvecInput in, int n_batch, std::span<const MatvecOutput> outs,
                       void* stream, MatvecKernel kernel) {
  run_fused("cuda_matvec_fused", type, K, in, n_batch, outs, stream, kernel, nullptr);
}

void cuda_matvec_fused_rope(GgmlType type, int64_t K, MatvecInput in, std::span<const MatvecOutput> outs,
                            const MatvecRope& rope, void* stream, MatvecKernel kernel) {
  const char* op = "cuda_matvec_fused_rope";
  if (!cuda_matvec_wants_q8(type)) throw_unsupported_type(op, type);
  const int64_t hd = rope.head_dim;
  if (hd <= 0 || hd % 2 != 0 || rope.p.n_rot <= 0 || rope.p.n_rot > hd || rope.p.n_rot % 2 != 0) {
    throw_bad_argument(op, "head_dim", hd);
  }
  if (rope.k_cache == nullptr || rope.v_cache == nullptr || rope.kv_dim <= 0) throw_bad_argument(op, "kv_dim", rope.kv_dim);
  RopeArgs args{};
  args.p = rope.p;
  rope_yarn_corr(rope.p, &args.corr_low, &args.corr_high);
  args.head_dim = int(hd);
  args.pos = rope.pos;
  args.pos_dev = rope.pos_dev;
  args.k_cache = rope.k_cache;
  args.v_cache = rope.v_cache;
  args.kv_dim = rope.kv_dim;
  for (size_t s = 0; s < outs.size() && s < size_t(kCudaMatvecMaxFused); ++s) {
    const QkvRole role = rope.roles[s];
    args.roles[s] = int(role);
    if (outs[s].ep.accumulate) throw_bad_argument(op, "an accumulating output", int64_t(s));
    if (role != QkvRole::v && outs[s].N % hd != 0) throw_bad_argument(op, "rows of a rotated output", outs[s].N);
  }
  run_fused(op, type, K, in, 1, outs, stream, kernel, &args);
}

void cuda_matvec(GgmlType type, const void* w, int64_t K, int64_t N, MatvecInput in, int n_batch, float* y,
                 void* stream, ProductEpilogue ep, MatvecKernel kernel) {
  if (N <= 0) return;
  const MatvecOutput out{w, N, y, ep};
  cuda_matvec_fused(type, K, in, n_batch, std::span(&out, 1), stream, kernel);
}

}  // namespace engine
