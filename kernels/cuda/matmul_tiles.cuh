// The weight tile loaders the prompt matmul kernels share (matmul.cu's mma.sync kernel,
// matmul_wgmma.cu's for Hopper), on the device and on the host (cuda_matmul_decode_row_on_host
// runs them in the tests): how a type's raw blocks are copied to shared memory, window by window,
// and decoded from there to fp16, eight values at a time. Also the fused launch's matrices.
#pragma once

#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../cpu/quant_blocks.h"
#include "block_loads.cuh"
#include "engine/ggml_type.h"
#include "engine/gpu_layout.h"
#include "matvec.h"
#include "tensor_core.cuh"

#if defined(__CUDA_ARCH__)
#define MATMUL_UNROLL _Pragma("unroll")
#else
#define MATMUL_UNROLL
#endif

namespace engine::matmul_tiles {

// Weight rows per block, in both kernels: the fused launch's row tiles (MatmulOutputs).
constexpr int kTileRows = 128;

// Eight values rounded to fp16, two per conversion (cvt.rn.f16x2.f32), as a tile's 16 bytes.
__host__ __device__ __forceinline__ uint4 pack8(const float v[8]) {
  uint32_t w[4];
MATMUL_UNROLL
  for (int j = 0; j < 4; ++j) {
    const __half2 h = __floats2half2_rn(v[2 * j], v[2 * j + 1]);  // v[2j] in the low half
    memcpy(&w[j], &h, sizeof w[j]);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// Byte j (0..7) of two little-endian words.
__host__ __device__ __forceinline__ uint32_t byte8(const uint32_t q[2], int j) {
  return (q[j / 4] >> (8 * (j % 4))) & 255u;
}

// Eight bytes from a 2-byte aligned address.
__host__ __device__ __forceinline__ void ld8_aligned2(const uint8_t* p, uint32_t q[2]) {
  q[0] = load4_aligned2(p);
  q[1] = load4_aligned2(p + 4);
}

// Every loader reads the weights through windows: window w of a row is the bytes its values
// w * kWindowValues .. + kWindowValues - 1 need, kWindowBytes of them, which the kernel copies to
// shared memory in chunks of kChunkBytes (16, or 8 for the legacy blocks, whose runs of four are
// only 8-byte aligned); chunk(row, K, w, c) is the address of chunk c (rows of K values in the
// GPU layout, engine/gpu_layout.h). Raw holds the words
// a group of eight values (e .. e + 7 of the window, e % 8 == 0) needs: fetch(window, e, w) reads
// them from the copy, decode(raw, e) turns them into eight fp16 values (a uint4).

// Windows that are a run of the row: whole blocks, kWindowBytes apart.
template <int kValues, int kBytes, int kChunk = 16>
struct ContiguousWindows {
  static constexpr int kWindowValues = kValues;
  static constexpr int kWindowBytes = kBytes;
  static constexpr int kChunkBytes = kChunk;
  static_assert(kBytes % kChunk == 0, "windows are whole chunks");
  __host__ __device__ static const uint8_t* chunk(const uint8_t* row, int64_t, int64_t w, int c) {
    return row + w * kBytes + kChunk * c;
  }
};

// Windows of a regrouped row (engine/gpu_layout.h: the blocks' records, kRecordBytes each, then
// their fp16 d values): window w is record w and the chunk of d values holding d[w] (kChunk bytes:
// 16, or 8 where records are only 8-byte aligned), which d() reads from the window's copy.
template <int kRecordBytes, int kChunk = 16>
struct RecordWindows {
  static constexpr int kRecord = kRecordBytes;
  static constexpr int kWindowValues = 256;
  static constexpr int kWindowBytes = kRecordBytes + kChunk;
  static constexpr int kChunkBytes = kChunk;
  static constexpr int kDPerChunk = kChunk / 2;
  static_assert(kRecordBytes % kChunk == 0, "records are copied in whole chunks");
  __host__ __device__ static const uint8_t* chunk(const uint8_t* row, int64_t K, int64_t w, int c) {
    if (c < kRecordBytes / kChunk) return row + w * kRecordBytes + kChunk * c;
    return row + (K / 256) * int64_t(kRecordBytes) + kChunk * (w / kDPerChunk);
  }
  __host__ __device__ static float d(const uint8_t* window, int64_t w) {
    return h2f(reinterpret_cast<const uint16_t*>(window + kRecordBytes)[w % kDPerChunk]);
  }
};

// Q4_K and Q5_K (a window is one super-block): value e is in group g = e / 32 (6-bit scale and
// min, packed as unpack_scale_min_k4 reads them), nibble g % 2 of qs byte 32 (g / 2) + e % 32;
// Q5_K adds bit g of qh byte e % 32 as bit 4. The scales are unpacked in decode, from the three
// words fetch read, by scale_min_k4 (selects, as the matvec) rather than unpack_scale_min_k4's
// branches and byte loads.
template <typename Block, bool kFiveBit>
struct Q45KTile : ContiguousWindows<256, sizeof(Block)> {
  struct Raw {
    uint32_t dm, s[3], q[2], h[2];
  };
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t) {
    const Block& b = *reinterpret_cast<const Block*>(window);
    const int g = e / 32, l = e % 32;
    Raw r;
    r.dm = uint32_t(b.d) | (uint32_t(b.dmin) << 16);
    const auto* s = reinterpret_cast<const uint32_t*>(b.scales);
    r.s[0] = s[0];
    r.s[1] = s[1];
    r.s[2] = s[2];
    const uint2 q = *reinterpret_cast<const uint2*>(b.qs + 32 * (g / 2) + l);
    r.q[0] = q.x;
    r.q[1] = q.y;
    r.h[0] = r.h[1] = 0;
    if constexpr (kFiveBit) {
      const uint2 h = *reinterpret_cast<const uint2*>(b.qh + l);
      r.h[0] = h.x;
      r.h[1] = h.y;
    }
    return r;
  }
  __host__ __device__ static uint4 decode(const Raw& r, int e) {
    const int g = e / 32;
    float sc, mn;
    scale_min_k4(r.s[0], r.s[1], r.s[2], g, &sc, &mn);
    const float scale = h2f(uint16_t(r.dm & 0xffff)) * sc;
    const float offset = h2f(uint16_t(r.dm >> 16)) * mn;
    const int shift = 4 * (g % 2);
    uint32_t q[2];  // the eight codes, a byte each
MATMUL_UNROLL
    for (int k = 0; k < 2; ++k) {
      q[k] = (r.q[k] >> shift) & 0x0F0F0F0Fu;
      if constexpr (kFiveBit) q[k] |= ((r.h[k] >> g) & 0x01010101u) << 4;
    }
    float v[8];
MATMUL_UNROLL
    for (int j = 0; j < 8; ++j) v[j] = fmaf(byte_plus_2p23(q[j / 4], j % 4) - kTwo23, scale, -offset);
    return pack8(v);
  }

  // Values e .. e + 31 (e % 32 == 0: one group, one scale and min) to out[0..3], the same bits as
  // four decode() calls, from one read of the header and of the group's 32 code bytes (16-byte
  // aligned in the window, as the window is in shared memory).
  static constexpr int kRunValues = 32;
  __host__ __device__ static void decode_run(const uint8_t* window, int e, int64_t, uint4 (&out)[4]) {
    const Block& b = *reinterpret_cast<const Block*>(window);
    const uint4 head = *reinterpret_cast<const uint4*>(window);  // d, dmin | scales 0-3, 4-7, 8-11
    const int g = e / 32;
    float sc, mn;
    scale_min_k4(head.y, head.z, head.w, g, &sc, &mn);
    const float scale = h2f(uint16_t(head.x & 0xffff)) * sc;
    const float offset = h2f(uint16_t(head.x >> 16)) * mn;
    const uint4 lo = *reinterpret_cast<const uint4*>(b.qs + 32 * (g / 2));
    const uint4 hi = *reinterpret_cast<const uint4*>(b.qs + 32 * (g / 2) + 16);
    uint32_t q[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    uint32_t h[8] = {};
    if constexpr (kFiveBit) {
      const uint4 h0 = *reinterpret_cast<const uint4*>(b.qh), h1 = *reinterpret_cast<const uint4*>(b.qh + 16);
      const uint32_t hw[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
MATMUL_UNROLL
      for (int k = 0; k < 8; ++k) h[k] = ((hw[k] >> g) & 0x01010101u) << 4;
    }
    const int shift = 4 * (g % 2);
MATMUL_UNROLL
    for (int k = 0; k < 8; ++k) q[k] = ((q[k] >> shift) & 0x0F0F0F0Fu) | h[k];
MATMUL_UNROLL
    for (int c = 0; c < 4; ++c) {
      float v[8];
MATMUL_UNROLL
      for (int j = 0; j < 8; ++j) v[j] = fmaf(byte_plus_2p23(q[2 * c + j / 4], j % 4) - kTwo23, scale, -offset);
      out[c] = pack8(v);
    }
  }
};

// Q6_K in the GPU layout (a row's 208-byte records ql, qh, scales, then its d values): window w is
// record w (13 chunks) and the 16-byte chunk of d values holding d[w] (the row is padded to 16
// bytes, so that chunk is inside it). Value e in half h = e / 128, quarter s = (e % 128) / 32,
// l = e % 32: nibble s / 2 of ql byte 64 h + 32 (s % 2) + l, bits 2s of qh byte 32 h + l, minus
// 32, times d and scales[e / 16].
struct Q6KTile {
  static constexpr int kWindowValues = 256;
  static constexpr int kWindowBytes = kGpuQ6KRecordBytes + 16;
  static constexpr int kChunkBytes = 16;
  static_assert(kGpuQ6KRecordBytes % 16 == 0, "records are copied in 16-byte chunks");
  __host__ __device__ static const uint8_t* chunk(const uint8_t* row, int64_t K, int64_t w, int c) {
    constexpr int kRecordChunks = kGpuQ6KRecordBytes / 16;
    if (c < kRecordChunks) return row + w * kGpuQ6KRecordBytes + 16 * c;
    return row + (K / 256) * int64_t(kGpuQ6KRecordBytes) + 16 * (w / 8);
  }
  struct Raw {
    uint32_t ql[2], qh[2];
    int32_t scale;
    uint16_t d;
  };
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t w) {
    const int h = e / 128, s = (e % 128) / 32, l = e % 32;
    Raw r;
    const uint2 ql = *reinterpret_cast<const uint2*>(window + 64 * h + 32 * (s % 2) + l);  // l % 8 == 0
    const uint2 qh = *reinterpret_cast<const uint2*>(window + 128 + 32 * h + l);
    r.ql[0] = ql.x, r.ql[1] = ql.y, r.qh[0] = qh.x, r.qh[1] = qh.y;
    r.scale = int8_t(window[192 + e / 16]);
    r.d = reinterpret_cast<const uint16_t*>(window + kGpuQ6KRecordBytes)[w % 8];
    return r;
  }
  __host__ __device__ static uint4 decode(const Raw& r, int e) {
    const int s = (e % 128) / 32;
    const float scale = h2f(r.d) * float(r.scale);
    uint32_t q[2];  // the eight 6-bit codes, a byte each
MATMUL_UNROLL
    for (int k = 0; k < 2; ++k) {
      q[k] = ((r.ql[k] >> (4 * (s / 2))) & 0x0F0F0F0Fu) | (((r.qh[k] >> (2 * s)) & 0x03030303u) << 4);
    }
    float v[8];
MATMUL_UNROLL
    for (int j = 0; j < 8; ++j) v[j] = scale * (byte_plus_2p23(q[j / 4], j % 4) - (kTwo23 + 32.0f));
    return pack8(v);
  }

  // Values e .. e + 31 (e % 32 == 0: one quarter s of one half h, two scales) to out[0..3], the
  // same bits as four decode() calls, from one read of their 32 ql and 32 qh bytes.
  static constexpr int kRunValues = 32;
  __host__ __device__ static void decode_run(const uint8_t* window, int e, int64_t w, uint4 (&out)[4]) {
    const int h = e / 128, s = (e % 128) / 32;
    const uint4 l0 = *reinterpret_cast<const uint4*>(window + 64 * h + 32 * (s % 2));
    const uint4 l1 = *reinterpret_cast<const uint4*>(window + 64 * h + 32 * (s % 2) + 16);
    const uint4 h0 = *reinterpret_cast<const uint4*>(window + 128 + 32 * h);
    const uint4 h1 = *reinterpret_cast<const uint4*>(window + 128 + 32 * h + 16);
    const uint32_t ql[8] = {l0.x, l0.y, l0.z, l0.w, l1.x, l1.y, l1.z, l1.w};
    const uint32_t qh[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
    const float d = h2f(reinterpret_cast<const uint16_t*>(window + kGpuQ6KRecordBytes)[w % 8]);
    const float scales[2] = {d * float(int8_t(window[192 + e / 16])), d * float(int8_t(window[192 + e / 16 + 1]))};
MATMUL_UNROLL
    for (int c = 0; c < 4; ++c) {
      uint32_t q[2];
MATMUL_UNROLL
      for (int k = 0; k < 2; ++k) {
        const int word = 2 * c + k;
        q[k] = ((ql[word] >> (4 * (s / 2))) & 0x0F0F0F0Fu) | (((qh[word] >> (2 * s)) & 0x03030303u) << 4);
      }
      float v[8];
MATMUL_UNROLL
      for (int j = 0; j < 8; ++j) v[j] = scales[c / 2] * (byte_plus_2p23(q[j / 4], j % 4) - (kTwo23 + 32.0f));
      out[c] = pack8(v);
    }
  }
};

// Q2_K and Q3_K (a window is one super-block, in the GPU layout: Q2_K's 80-byte record and the
// 16-byte chunk of the row's (d, dmin) pairs holding pair w; Q3_K's 112-byte padded block): value
// e = 128h + 32g + l has its low two bits at bits 2g of qs byte 32h + l (Q3_K: its third at bit
// 4h + g of hmask byte l) and the scale of 16-value group t = e / 16.
//   Q2_K: d * (sc & 15) * q - dmin * (sc >> 4), sc = scales[t];
//   Q3_K: d * (s - 32) * (q - 4), s the 6-bit scale t (q3k_scale).
template <bool kThreeBit>
struct Q23KTile {
  static constexpr int kWindowValues = 256;
  static constexpr int kWindowBytes = kThreeBit ? int(kGpuQ3KBlockBytes) : int(kGpuQ2KRecordBytes) + 16;
  static constexpr int kChunkBytes = 16;
  static constexpr int kQs = kThreeBit ? int(offsetof(BlockQ3_K, qs)) : int(offsetof(BlockQ2_K, qs));
  __host__ __device__ static const uint8_t* chunk(const uint8_t* row, int64_t K, int64_t w, int c) {
    if constexpr (kThreeBit) {
      return row + w * int64_t(kGpuQ3KBlockBytes) + 16 * c;
    } else {
      constexpr int kRecordChunks = kGpuQ2KRecordBytes / 16;
      if (c < kRecordChunks) return row + w * int64_t(kGpuQ2KRecordBytes) + 16 * c;
      return row + (K / 256) * int64_t(kGpuQ2KRecordBytes) + 16 * (w / 4);
    }
  }
  // Group t's scale and offset: w = scale * (q - kBias) - offset, q the code (Q3_K's 0..7).
  static constexpr float kBias = kThreeBit ? 4.0f : 0.0f;
  __host__ __device__ static void group(const uint8_t* window, int64_t w, int t, float* scale, float* offset) {
    if constexpr (kThreeBit) {
      // The 12 scale bytes and d in one 16-byte load (offset 96 of a 112-byte block).
      const uint4 sd = *reinterpret_cast<const uint4*>(window + offsetof(BlockQ3_K, scales));
      *scale = h2f(uint16_t(sd.w & 0xffffu)) * (u23_to_float(q3k_scale(sd.x, sd.y, sd.z, t)) - 32.0f);
      *offset = 0.0f;
    } else {
      const uint32_t s = window[offsetof(BlockQ2_K, scales) + t];
      const uint32_t dd = *reinterpret_cast<const uint32_t*>(window + kGpuQ2KRecordBytes + 4 * (w % 4));
      *scale = h2f(uint16_t(dd & 0xffffu)) * u23_to_float(s & 15u);
      *offset = h2f(uint16_t(dd >> 16)) * u23_to_float(s >> 4);
    }
  }
  // The eight codes of bytes q (qs) and hm (hmask) at shift g, half h, a byte each.
  __host__ __device__ static void codes(const uint32_t q[2], const uint32_t hm[2], int h, int g, uint32_t c[2]) {
MATMUL_UNROLL
    for (int k = 0; k < 2; ++k) {
      c[k] = (q[k] >> (2 * g)) & 0x03030303u;
      if constexpr (kThreeBit) c[k] |= ((hm[k] >> (4 * h + g)) & 0x01010101u) << 2;
    }
  }
  __host__ __device__ static uint4 eight(const uint32_t c[2], float scale, float offset) {
    float v[8];
MATMUL_UNROLL
    for (int j = 0; j < 8; ++j) v[j] = fmaf(byte_plus_2p23(c[j / 4], j % 4) - (kTwo23 + kBias), scale, -offset);
    return pack8(v);
  }

  struct Raw {
    uint32_t q[2], hm[2];
    float scale, offset;
  };
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t w) {
    const int h = e / 128, l = e % 32;
    Raw r;
    const uint2 q = *reinterpret_cast<const uint2*>(window + kQs + 32 * h + l);  // l % 8 == 0
    r.q[0] = q.x, r.q[1] = q.y;
    r.hm[0] = r.hm[1] = 0;
    if constexpr (kThreeBit) {
      const uint2 hm = *reinterpret_cast<const uint2*>(window + offsetof(BlockQ3_K, hmask) + l);
      r.hm[0] = hm.x, r.hm[1] = hm.y;
    }
    group(window, w, e / 16, &r.scale, &r.offset);
    return r;
  }
  __host__ __device__ static uint4 decode(const Raw& r, int e) {
    uint32_t c[2];
    codes(r.q, r.hm, e / 128, (e % 128) / 32, c);
    return eight(c, r.scale, r.offset);
  }

  // Values e .. e + 31 (e % 32 == 0: shift g of half h, groups 2 (e / 32) and that + 1) to
  // out[0..3], the same bits as four decode() calls, from one read of their 32 qs (and hmask)
  // bytes.
  static constexpr int kRunValues = 32;
  __host__ __device__ static void decode_run(const uint8_t* window, int e, int64_t w, uint4 (&out)[4]) {
    const int h = e / 128, g = (e % 128) / 32;
    const uint4 q0 = *reinterpret_cast<const uint4*>(window + kQs + 32 * h);
    const uint4 q1 = *reinterpret_cast<const uint4*>(window + kQs + 32 * h + 16);
    const uint32_t q[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
    uint32_t hm[8] = {};
    if constexpr (kThreeBit) {
      const uint4 h0 = *reinterpret_cast<const uint4*>(window + offsetof(BlockQ3_K, hmask));
      const uint4 h1 = *reinterpret_cast<const uint4*>(window + offsetof(BlockQ3_K, hmask) + 16);
      const uint32_t hw[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
MATMUL_UNROLL
      for (int k = 0; k < 8; ++k) hm[k] = hw[k];
    }
    float scale[2], offset[2];
    group(window, w, e / 16, &scale[0], &offset[0]);
    group(window, w, e / 16 + 1, &scale[1], &offset[1]);
MATMUL_UNROLL
    for (int c = 0; c < 4; ++c) {
      uint32_t codes8[2];
      codes(q + 2 * c, hm + 2 * c, h, g, codes8);
      out[c] = eight(codes8, scale[c / 2], offset[c / 2]);
    }
  }
};

// Q8_0 (a window is four blocks, 136 bytes, in 8-byte chunks): value e is qs[e % 32] * d of
// block e / 32.
struct Q8_0Tile : ContiguousWindows<128, 4 * sizeof(BlockQ8_0), 8> {
  struct Raw {
    uint32_t q[2];
    uint16_t d;
  };
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t) {
    const BlockQ8_0& b = reinterpret_cast<const BlockQ8_0*>(window)[e / 32];
    Raw r;
    ld8_aligned2(reinterpret_cast<const uint8_t*>(b.qs) + e % 32, r.q);
    r.d = b.d;
    return r;
  }
  __host__ __device__ static uint4 decode(const Raw& r, int) {
    const float d = h2f(r.d);
    float v[8];
MATMUL_UNROLL
    for (int j = 0; j < 8; ++j) {
      // b ^ 0x80 is int8(b) + 128, 0..255
      v[j] = d * (byte_plus_2p23(r.q[j / 4] ^ 0x80808080u, j % 4) - (kTwo23 + 128.0f));
    }
    return pack8(v);
  }
};

// Q4_0, Q4_1, Q5_0, Q5_1 (a window is four blocks, a multiple of 8 bytes): value e is in block
// e / 32, nibble (e % 32) / 16 of qs[e % 16]; the 5-bit types add bit e % 32 of qh as bit 4.
// value = (q - offset) d (Q4_0: 8, Q5_0: 16) or q d + m (Q4_1, Q5_1); IQ4_NL, Q4_0's layout,
// grid[q] d (iq4_grid4).
template <typename Block, bool kFiveBit, bool kMin>
struct LegacyTile : ContiguousWindows<128, 4 * sizeof(Block), 8> {
  struct Raw {
    uint32_t q[2], qh, dm;
  };
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t) {
    const Block& b = reinterpret_cast<const Block*>(window)[e / 32];
    Raw r;
    ld8_aligned2(b.qs + e % 16, r.q);
    r.qh = 0;
    if constexpr (kFiveBit) r.qh = load4_aligned2(b.qh);
    r.dm = b.d;
    if constexpr (kMin) r.dm |= uint32_t(b.m) << 16;
    return r;
  }
  __host__ __device__ static uint4 decode(const Raw& r, int e) {
    e %= 32;
    const int shift = 4 * (e / 16);
    const float d = h2f(uint16_t(r.dm & 0xffff)), m = h2f(uint16_t(r.dm >> 16));
    float v[8];
    if constexpr (std::is_same_v<Block, BlockIQ4_NL>) {  // d * grid[q]
MATMUL_UNROLL
      for (int k = 0; k < 2; ++k) {
        const uint32_t grid = iq4_grid4((r.q[k] >> shift) & 0x0F0F0F0Fu) ^ 0x80808080u;  // int8 + 128 a byte
MATMUL_UNROLL
        for (int j = 0; j < 4; ++j) v[4 * k + j] = (byte_plus_2p23(grid, j) - (kTwo23 + 128.0f)) * d;
      }
    } else {
MATMUL_UNROLL
      for (int j = 0; j < 8; ++j) {
        uint32_t q = (byte8(r.q, j) >> shift) & 15;
        if constexpr (kFiveBit) q |= ((r.qh >> (e + j)) & 1) << 4;
        if constexpr (kMin) {
          v[j] = u23_to_float(q) * d + m;
        } else {
          v[j] = (u23_to_float(q) - (kFiveBit ? 16.0f : 8.0f)) * d;
        }
      }
    }
    return pack8(v);
  }
};

// IQ4_XS (a window is one super-block, 136 bytes, in 8-byte chunks): value e is in group
// g = e / 32, nibble (e % 32) / 16 of qs byte 16 g + e % 16; value = grid[q] d (s_g - 32), the
// group's 6-bit scale from scales_l and scales_h (iq4_xs_scale_bits).
struct IQ4XSTile : ContiguousWindows<256, sizeof(BlockIQ4_XS), 8> {
  struct Raw {
    uint32_t head[2], q[2];  // d, scales_h | scales_l; the eight codes' bytes
  };
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t) {
    const BlockIQ4_XS& b = *reinterpret_cast<const BlockIQ4_XS*>(window);
    const uint2 head = *reinterpret_cast<const uint2*>(window);
    const uint2 q = *reinterpret_cast<const uint2*>(b.qs + 16 * (e / 32) + e % 16);
    return Raw{{head.x, head.y}, {q.x, q.y}};
  }
  __host__ __device__ static uint4 decode(const Raw& r, int e) {
    const int g = e / 32, shift = 4 * ((e % 32) / 16);
    const uint32_t bits = iq4_xs_scale_bits(r.head[1], r.head[0] >> 16, g);
    const float scale = h2f(uint16_t(r.head[0] & 0xffffu)) * (u23_to_float(bits) - 32.0f);
    float v[8];
MATMUL_UNROLL
    for (int k = 0; k < 2; ++k) {
      const uint32_t grid = iq4_grid4((r.q[k] >> shift) & 0x0F0F0F0Fu) ^ 0x80808080u;
MATMUL_UNROLL
      for (int j = 0; j < 4; ++j) v[4 * k + j] = (byte_plus_2p23(grid, j) - (kTwo23 + 128.0f)) * scale;
    }
    return pack8(v);
  }
};

// IQ3_XXS and IQ3_S in the GPU layout (a row's records, 96 or 112 bytes, then its d values):
// window w is record w and the 16-byte chunk of d values holding d[w], as Q6KTile's. Values
// e .. e + 7 are chunks c and c + 1 (c = (e % 32) / 4, even) of group g = e / 32: two grid
// entries, their eight signs and the group's scale (quant_blocks.h), the fields at their block
// offsets less the 2 bytes of d.
template <typename Block>
struct IQ3Tile : RecordWindows<std::is_same_v<Block, BlockIQ3_XXS> ? int(kGpuIQ3XXSRecordBytes) : int(kGpuIQ3SRecordBytes)> {
  using Windows = RecordWindows<std::is_same_v<Block, BlockIQ3_XXS> ? int(kGpuIQ3XXSRecordBytes) : int(kGpuIQ3SRecordBytes)>;
  static constexpr bool kXXS = std::is_same_v<Block, BlockIQ3_XXS>;
  struct Raw {
    uint32_t entry[2], signs;  // grid indices of the two chunks, their eight sign bits
    float scale;               // d * the group's scale
  };
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t w) {
    const int g = e / 32, c = (e % 32) / 4;
    const float d = Windows::d(window, w);
    Raw r;
    r.entry[0] = window[8 * g + c];
    r.entry[1] = window[8 * g + c + 1];
    if constexpr (kXXS) {
      const uint32_t aux = *reinterpret_cast<const uint32_t*>(window + offsetof(BlockIQ3_XXS, aux) - 2 + 4 * g);
      r.signs = iq_aux_signs8(aux, c / 2);
      r.scale = d * iq3xxs_scale(aux);
    } else {
      const uint32_t qh = window[offsetof(BlockIQ3_S, qh) - 2 + g];
      r.entry[0] |= ((qh >> c) & 1u) << 8;
      r.entry[1] |= ((qh >> (c + 1)) & 1u) << 8;
      r.signs = window[offsetof(BlockIQ3_S, signs) - 2 + 4 * g + c / 2];
      r.scale = d * iq3s_scale(*reinterpret_cast<const uint32_t*>(window + offsetof(BlockIQ3_S, scales) - 2), g);
    }
    return r;
  }
  __host__ __device__ static uint4 decode(const Raw& r, int) {
    float v[8];
MATMUL_UNROLL
    for (int k = 0; k < 2; ++k) {
      const uint32_t entry = kXXS ? iq3xxs_grid(r.entry[k]) : iq3s_grid(r.entry[k]);
      const uint32_t values = iq_signed4(entry, r.signs >> (4 * k)) ^ 0x80808080u;  // int8 + 128 a byte
MATMUL_UNROLL
      for (int j = 0; j < 4; ++j) v[4 * k + j] = (byte_plus_2p23(values, j) - (kTwo23 + 128.0f)) * r.scale;
    }
    return pack8(v);
  }
};

// IQ2_XXS, IQ2_XS and IQ2_S in the GPU layout (a row's records, 64, 72 or 80 bytes, then its d
// values): window w is record w and the chunk of d values holding d[w] (16-byte chunks; IQ2_XS's
// records are only 8-byte aligned, so its chunks are 8 bytes). Values e .. e + 7 are entry
// l = (e % 32) / 8 of group g = e / 32 (quant_blocks.h): its grid index, eight signs and the
// scale of its half l / 2, the fields at their block offsets less the 2 bytes of d.
template <typename Block>
constexpr int kIQ2Record = std::is_same_v<Block, BlockIQ2_XXS> ? int(kGpuIQ2XXSRecordBytes)
                           : std::is_same_v<Block, BlockIQ2_XS> ? int(kGpuIQ2XSRecordBytes)
                                                                 : int(kGpuIQ2SRecordBytes);
template <typename Block>
struct IQ2Tile : RecordWindows<kIQ2Record<Block>, std::is_same_v<Block, BlockIQ2_XS> ? 8 : 16> {
  using Windows = RecordWindows<kIQ2Record<Block>, std::is_same_v<Block, BlockIQ2_XS> ? 8 : 16>;
  static constexpr bool kXXS = std::is_same_v<Block, BlockIQ2_XXS>, kXS = std::is_same_v<Block, BlockIQ2_XS>;
  struct Raw {
    uint32_t index, signs;  // the entry's grid index and eight sign bits
    float scale;            // d * its half's scale
  };
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t w) {
    const int g = e / 32, l = (e % 32) / 8;
    const float d = Windows::d(window, w) * 0.125f;
    if constexpr (kXXS) {
      const uint32_t aux = *reinterpret_cast<const uint32_t*>(window + 8 * g + 4);
      return Raw{window[8 * g + l], iq_aux_signs8(aux, l), d * float(iq2xxs_scale(aux))};
    } else if constexpr (kXS) {
      const uint32_t code = *reinterpret_cast<const uint16_t*>(window + 2 * (4 * g + l));
      const uint32_t scales = window[offsetof(BlockIQ2_XS, scales) - 2 + g];
      return Raw{code & 511u, iq_even_signs8(code >> 9), d * float(iq2_half_scale(scales, l / 2))};
    } else {
      const uint32_t qh = window[offsetof(BlockIQ2_S, qh) - 2 + g];
      const uint32_t scales = window[offsetof(BlockIQ2_S, scales) - 2 + g];
      return Raw{window[4 * g + l] | (((qh >> (2 * l)) & 3u) << 8), window[offsetof(BlockIQ2_S, signs) - 2 + 4 * g + l],
                 d * float(iq2_half_scale(scales, l / 2))};
    }
  }
  __host__ __device__ static uint4 decode(const Raw& r, int) {
    const IQ2Entry entry{kXXS ? iq2xxs_grid(r.index) : kXS ? iq2xs_grid(r.index) : iq2s_grid(r.index), r.signs};
    float v[8];
MATMUL_UNROLL
    for (int h = 0; h < 2; ++h) {
      const uint32_t values = iq2_values4(entry, h) ^ 0x80808080u;  // int8 + 128 a byte
MATMUL_UNROLL
      for (int j = 0; j < 4; ++j) v[4 * h + j] = (byte_plus_2p23(values, j) - (kTwo23 + 128.0f)) * r.scale;
    }
    return pack8(v);
  }
};

// IQ1_S in the GPU layout (a row's 48-byte records, then its d values: window w is record w and
// the 16-byte chunk of d values holding d[w], as IQ2Tile's) and IQ1_M as in the file (a window is
// one 56-byte block in 8-byte chunks). Values e .. e + 7 are entry l = (e % 32) / 8 of group
// g = e / 32 (quant_blocks.h): its grid index, delta sign and the scale of its half l / 2 (IQ1_M;
// IQ1_S's one scale a group), as signed bytes w = 8 grid +- 1 times d (2s + 1) / 8.
template <typename Block>
struct IQ1Tile : std::conditional_t<std::is_same_v<Block, BlockIQ1_S>, RecordWindows<int(kGpuIQ1SRecordBytes)>,
                                    ContiguousWindows<256, int(sizeof(BlockIQ1_M)), 8>> {
  static constexpr bool kS = std::is_same_v<Block, BlockIQ1_S>;
  static constexpr int kRecord = kS ? int(kGpuIQ1SRecordBytes) : int(sizeof(BlockIQ1_M));
  struct Raw {
    uint32_t index;
    bool negative;  // delta -1/8
    float scale;    // d (2s + 1) / 8
  };
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t w) {
    const int g = e / 32, l = (e % 32) / 8;
    if constexpr (kS) {
      const uint32_t qh = *reinterpret_cast<const uint16_t*>(window + offsetof(BlockIQ1_S, qh) - 2 + 2 * g);
      const float d = RecordWindows<kRecord>::d(window, w);
      return Raw{iq1s_index(window[4 * g + l], qh, l), iq1s_delta_negative(qh), d * float(iq1s_scale(qh)) * 0.125f};
    } else {
      const uint2 sc = *reinterpret_cast<const uint2*>(window + offsetof(BlockIQ1_M, scales));
      const uint64_t scales = uint64_t(sc.x) | (uint64_t(sc.y) << 32);
      const int entry = 4 * g + l;
      const uint32_t qh = window[offsetof(BlockIQ1_M, qh) + entry / 2];
      return Raw{iq1m_index(window[entry], qh, entry), iq1m_delta_negative(qh, entry),
                 h2f(iq1m_d_bits(scales)) * float(iq1m_scale(scales, 2 * g + l / 2)) * 0.125f};
    }
  }
  __host__ __device__ static uint4 decode(const Raw& r, int) {
    const uint64_t grid = iq1s_grid(r.index);
    float v[8];
MATMUL_UNROLL
    for (int h = 0; h < 2; ++h) {
      const uint32_t values = iq1_values4(uint32_t(grid >> (32 * h)), r.negative) ^ 0x80808080u;  // int8 + 128 a byte
MATMUL_UNROLL
      for (int j = 0; j < 4; ++j) v[4 * h + j] = (byte_plus_2p23(values, j) - (kTwo23 + 128.0f)) * r.scale;
    }
    return pack8(v);
  }
};

// TQ1_0 and TQ2_0 in the GPU layout (a row's records, 56 or 64 bytes, then its d values): window w
// is record w and the chunk of d values holding d[w] (TQ1_0's records, 8-byte aligned, in 8-byte
// chunks; TQ2_0's in 16). Values e .. e + 7 (quant_blocks.h): TQ2_0's 2-bit field (e % 128) / 32
// of bytes 32 (e / 128) + e % 32 .. + 7; TQ1_0's digit e / 32 of bytes e % 32 .., digit
// (e - 160) / 16 of bytes 32 + e % 16 .. (e < 240), or digits (e - 240) / 4 and the next of qh.
template <typename Block>
struct TQTile : std::conditional_t<std::is_same_v<Block, BlockTQ1_0>, RecordWindows<int(kGpuTQ1RecordBytes), 8>,
                                   RecordWindows<int(kGpuTQ2RecordBytes)>> {
  using Windows = std::conditional_t<std::is_same_v<Block, BlockTQ1_0>, RecordWindows<int(kGpuTQ1RecordBytes), 8>,
                                     RecordWindows<int(kGpuTQ2RecordBytes)>>;
  static constexpr bool kOne = std::is_same_v<Block, BlockTQ1_0>;
  struct Raw {
    uint32_t codes[2];  // the eight values' codes, a byte each
    float d;
  };
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t w) {
    const float d = Windows::d(window, w);
    if constexpr (kOne) {
      if (e >= 240) {
        const uint32_t qh = *reinterpret_cast<const uint32_t*>(window + 48);
        const int n = (e - 240) / 4;
        return Raw{{tq1_digits4(qh, n), tq1_digits4(qh, n + 1)}, d};
      }
      const int at = e < 160 ? e % 32 : 32 + e % 16, n = e < 160 ? e / 32 : (e - 160) / 16;
      const uint2 q = *reinterpret_cast<const uint2*>(window + at);
      return Raw{{tq1_digits4(q.x, n), tq1_digits4(q.y, n)}, d};
    } else {
      const uint2 q = *reinterpret_cast<const uint2*>(window + 32 * (e / 128) + e % 32);
      const int shift = 2 * ((e % 128) / 32);
      return Raw{{(q.x >> shift) & 0x03030303u, (q.y >> shift) & 0x03030303u}, d};
    }
  }
  __host__ __device__ static uint4 decode(const Raw& r, int) {
    float v[8];
MATMUL_UNROLL
    for (int h = 0; h < 2; ++h) {
      const uint32_t values = tq_values4(r.codes[h]) ^ 0x80808080u;  // int8 + 128 a byte
MATMUL_UNROLL
      for (int j = 0; j < 4; ++j) v[4 * h + j] = (byte_plus_2p23(values, j) - (kTwo23 + 128.0f)) * r.d;
    }
    return pack8(v);
  }
};

// F16: eight values as they are; BF16 and F32: converted (values past fp16's range saturate to
// infinity, as any fp16 conversion of such weights would). A window is one step of the kernel's
// K (kValues: 32 for the mma.sync kernel, 64 for wgmma's).
template <int kValues>
struct F16Tile : ContiguousWindows<kValues, 2 * kValues> {
  using Raw = uint4;
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t) {
    return *reinterpret_cast<const uint4*>(window + 2 * e);
  }
  __host__ __device__ static uint4 decode(const Raw& r, int) { return r; }
};

template <int kValues>
struct BF16Tile : ContiguousWindows<kValues, 2 * kValues> {
  using Raw = uint4;
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t) {
    return *reinterpret_cast<const uint4*>(window + 2 * e);
  }
  __host__ __device__ static uint4 decode(const Raw& r, int) {
    const uint32_t words[4] = {r.x, r.y, r.z, r.w};
    float v[8];
MATMUL_UNROLL
    for (int j = 0; j < 4; ++j) {
      const uint32_t lo = words[j] << 16, hi = words[j] & 0xffff0000u;
      memcpy(&v[2 * j], &lo, 4);
      memcpy(&v[2 * j + 1], &hi, 4);
    }
    return pack8(v);
  }
};

template <int kValues>
struct F32Tile : ContiguousWindows<kValues, 4 * kValues> {
  struct Raw {
    float4 a, b;
  };
  __host__ __device__ static Raw fetch(const uint8_t* window, int e, int64_t) {
    const auto* p = reinterpret_cast<const float4*>(window + 4 * e);
    return Raw{p[0], p[1]};
  }
  __host__ __device__ static uint4 decode(const Raw& r, int) {
    const float v[8] = {r.a.x, r.a.y, r.a.z, r.a.w, r.b.x, r.b.y, r.b.z, r.b.w};
    return pack8(v);
  }
};

// Calls f.template operator()<Loader>() with the type's tile loader (float types in windows of
// kFloatValues); false if it has none.
template <int kFloatValues, typename F>
bool with_loader(GgmlType type, F&& f) {
  switch (type) {
    case GgmlType::F32: f.template operator()<F32Tile<kFloatValues>>(); return true;
    case GgmlType::F16: f.template operator()<F16Tile<kFloatValues>>(); return true;
    case GgmlType::BF16: f.template operator()<BF16Tile<kFloatValues>>(); return true;
    case GgmlType::Q8_0: f.template operator()<Q8_0Tile>(); return true;
    case GgmlType::Q4_0: f.template operator()<LegacyTile<BlockQ4_0, false, false>>(); return true;
    case GgmlType::Q4_1: f.template operator()<LegacyTile<BlockQ4_1, false, true>>(); return true;
    case GgmlType::Q5_0: f.template operator()<LegacyTile<BlockQ5_0, true, false>>(); return true;
    case GgmlType::Q5_1: f.template operator()<LegacyTile<BlockQ5_1, true, true>>(); return true;
    case GgmlType::Q2_K: f.template operator()<Q23KTile<false>>(); return true;
    case GgmlType::Q3_K: f.template operator()<Q23KTile<true>>(); return true;
    case GgmlType::Q4_K: f.template operator()<Q45KTile<BlockQ4_K, false>>(); return true;
    case GgmlType::Q5_K: f.template operator()<Q45KTile<BlockQ5_K, true>>(); return true;
    case GgmlType::Q6_K: f.template operator()<Q6KTile>(); return true;
    case GgmlType::IQ4_NL: f.template operator()<LegacyTile<BlockIQ4_NL, false, false>>(); return true;
    case GgmlType::IQ4_XS: f.template operator()<IQ4XSTile>(); return true;
    case GgmlType::IQ3_XXS: f.template operator()<IQ3Tile<BlockIQ3_XXS>>(); return true;
    case GgmlType::IQ3_S: f.template operator()<IQ3Tile<BlockIQ3_S>>(); return true;
    case GgmlType::IQ2_XXS: f.template operator()<IQ2Tile<BlockIQ2_XXS>>(); return true;
    case GgmlType::IQ2_XS: f.template operator()<IQ2Tile<BlockIQ2_XS>>(); return true;
    case GgmlType::IQ2_S: f.template operator()<IQ2Tile<BlockIQ2_S>>(); return true;
    case GgmlType::IQ1_S: f.template operator()<IQ1Tile<BlockIQ1_S>>(); return true;
    case GgmlType::IQ1_M: f.template operator()<IQ1Tile<BlockIQ1_M>>(); return true;
    case GgmlType::TQ1_0: f.template operator()<TQTile<BlockTQ1_0>>(); return true;
    case GgmlType::TQ2_0: f.template operator()<TQTile<BlockTQ2_0>>(); return true;
    default: return false;
  }
}

// The values a thread decodes at once: a loader's kRunValues where it has decode_run (the
// K-quants: a group that shares its header and scales), else eight.
template <typename Loader>
__host__ __device__ constexpr int run_values() {
  if constexpr (requires { Loader::kRunValues; }) {
    return Loader::kRunValues;
  } else {
    return 8;
  }
}

// Values e .. e + run_values<Loader>() - 1 of window w (its copy at `window`) as fp16, eight
// values an element of out.
template <typename Loader>
__host__ __device__ __forceinline__ void decode_run(const uint8_t* window, int e, int64_t w,
                                                    uint4 (&out)[run_values<Loader>() / 8]) {
  if constexpr (requires { Loader::kRunValues; }) {
    Loader::decode_run(window, e, w, out);
  } else {
    out[0] = Loader::decode(Loader::fetch(window, e, w), e);
  }
}

// Raw window buffers a block needs per weight row: the window a step decodes and those the
// kAhead steps in flight (of kStepValues values of K each) reach into.
template <typename Loader, int kStepValues, int kAhead>
__host__ __device__ constexpr int raw_buffers() {
  constexpr int steps_per_window = Loader::kWindowValues / kStepValues;
  return (kAhead + steps_per_window - 1) / steps_per_window + 1;
}

// Up to kCudaMatvecMaxFused matrices in one grid: output i takes the row tiles from
// tile_end[i - 1] (0 for the first) to tile_end[i].
struct MatmulOutputs {
  MatvecOutput out[kCudaMatvecMaxFused];
  int tile_end[kCudaMatvecMaxFused];
  int count;
};

// Which of the grid's matrices row tile `tile` (blockIdx.x) belongs to, and its first tile.
struct TileMatrix {
  int which = 0, tile_begin = 0;
};

__host__ __device__ __forceinline__ TileMatrix tile_matrix(const MatmulOutputs& outs, int tile) {
  TileMatrix m;
MATMUL_UNROLL
  for (int i = 1; i < kCudaMatvecMaxFused; ++i) {
    if (i < outs.count && tile >= outs.tile_end[i - 1]) {
      m.which = i;
      m.tile_begin = outs.tile_end[i - 1];
    }
  }
  return m;
}

// Output `which` of the grid by selects with constant indices: a dynamic index would copy the
// kernel's parameters to local memory, so only the index stays in a register through the loop.
__host__ __device__ __forceinline__ const MatvecOutput& output(const MatmulOutputs& outs, int which) {
  static_assert(kCudaMatvecMaxFused == 3, "output() selects among three");
  return which == 0 ? outs.out[0] : which == 1 ? outs.out[1] : outs.out[2];
}

// Window `window` of the block's weight rows row0 .. row0 + kTileRows - 1 of matrix o (rows of
// row_bytes, K values) to dst ([kTileRows][kWindowBytes]) by cp.async from kThreads threads; rows
// past N copy nothing and are zero-filled.
template <typename Loader, int kThreads>
__device__ __forceinline__ void copy_window(uint8_t* dst, const MatvecOutput& o, int64_t row0, uint64_t row_bytes,
                                            int64_t K, int64_t window, int tid) {
  constexpr int kChunks = Loader::kWindowBytes / Loader::kChunkBytes;  // per row and window
  for (int i = tid; i < kTileRows * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const bool valid = row0 + r < o.N;
    const uint8_t* row = static_cast<const uint8_t*>(o.w) + (valid ? row0 + r : 0) * row_bytes;
    cp_async<Loader::kChunkBytes>(dst + r * Loader::kWindowBytes + Loader::kChunkBytes * c,
                                  Loader::chunk(row, K, window, c), valid);
  }
}

// One sum of a block's tile, row n (< N) and token m (< M) of matrix o: without a split, y as
// the epilogue says; with one (partials not null), the split's partial sum, for add_splits.
__device__ __forceinline__ void store_product(const MatvecOutput& o, float* __restrict__ partials, int split,
                                              int64_t M, int64_t n, int64_t m, float sum) {
  if (partials != nullptr) {
    partials[(int64_t(split) * M + m) * o.N + n] = sum;
    return;
  }
  const float v = sum + (o.ep.bias != nullptr ? o.ep.bias[n] : 0.0f);
  float& out = o.y[m * o.N + n];
  out = o.ep.accumulate ? out + v : v;
}

}  // namespace engine::matmul_tiles
