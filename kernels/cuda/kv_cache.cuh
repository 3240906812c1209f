// Device side of the KV cache formats (kv_cache.h): the one writer of a q8_0 block, and the lane
// readers the decode attention loads keys and values through, so that the layout is written down
// once for both.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "activations.cuh"
#include "block_loads.cuh"
#include "kv_cache.h"

namespace engine {

// Called by all 32 lanes of a warp, lane j holding value j of a 32-value block: the block as Q8_0
// with the CPU's arithmetic (quantize_q8_0: d = max|x| / 127, code = round-to-nearest-even of
// x * (1 / d), the scale stored as fp16 of d), so that a GPU cache holds the codes a CPU cache
// would for the same values. codes[j] and *scale (lane 0) are written.
__device__ __forceinline__ void store_q8_0_block(float x, int lane, int8_t* codes, uint16_t* scale) {
  const float d = warp_amax(x) / 127.0f;
  const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
  codes[lane] = static_cast<int8_t>(__float2int_rn(x * inverse));
  if (lane == 0) *scale = __half_as_ushort(__float2half_rn(d));
}

// N bytes (2, 4, 8 or 16) from an N-byte aligned address, as (N + 3) / 4 little-endian words.
template <int N>
__device__ __forceinline__ void load_aligned(const void* p, uint32_t* w) {
  if constexpr (N == 16) {
    const uint4 v = *static_cast<const uint4*>(p);
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
  } else if constexpr (N == 8) {
    const uint2 v = *static_cast<const uint2*>(p);
    w[0] = v.x, w[1] = v.y;
  } else if constexpr (N == 4) {
    w[0] = *static_cast<const uint32_t*>(p);
  } else {
    static_assert(N == 2);
    w[0] = *static_cast<const uint16_t*>(p);
  }
}

// Whether a lane's P values load as one aligned run (P = 2, 4 or 8: head_dim 64, 128, 256).
template <int P>
constexpr bool kAlignedRun = P == 2 || P == 4 || P == 8;

// A lane's P consecutive values of one cached key or value row (P <= 8), loaded into registers by
// load() and turned into floats only where they are used (to_floats), so that the loads of a whole
// chunk of keys can go out before any is used. `at` is the index of the lane's first value in the
// cache ([position][n_head_kv][head_dim] flattened), `scales` the q8_0 scale plane.
template <KvType kType, int P>
struct KvLane;

// f16: (P + 1) / 2 words, one aligned load where P is 2, 4 or 8.
template <int P>
struct KvLane<KvType::f16, P> {
  uint32_t w[(P + 1) / 2];

  __device__ __forceinline__ void load(const void* values, const uint16_t* /*scales*/, int64_t at) {
    const uint16_t* p = static_cast<const uint16_t*>(values) + at;
    if constexpr (kAlignedRun<P>) {
      load_aligned<2 * P>(p, w);
    } else {
#pragma unroll
      for (int i = 0; i < (P + 1) / 2; ++i) w[i] = 0;
#pragma unroll
      for (int i = 0; i < P; ++i) w[i / 2] |= uint32_t(p[i]) << (16 * (i % 2));
    }
  }

  __device__ __forceinline__ void to_floats(int64_t /*at*/, float* out) const {
#pragma unroll
    for (int i = 0; i < P; ++i) out[i] = h2f(uint16_t(w[i / 2] >> (16 * (i % 2))));
  }
};

// q8_0: P codes in (P + 3) / 4 words (one aligned load where P is 2, 4 or 8), and the fp16 scale
// of the block holding the first; where the lane's values run into the next block (P does not
// divide 32: head_dim 96, 160, ...), that block's scale in the high half.
template <int P>
struct KvLane<KvType::q8_0, P> {
  static constexpr bool kOneBlock = 32 % P == 0;  // then P * lane never crosses a block
  uint32_t w[(P + 3) / 4];
  uint32_t scales;

  __device__ __forceinline__ void load(const void* values, const uint16_t* scale_plane, int64_t at) {
    const uint8_t* p = static_cast<const uint8_t*>(values) + at;
    if constexpr (kAlignedRun<P>) {
      load_aligned<P>(p, w);
    } else {
#pragma unroll
      for (int i = 0; i < (P + 3) / 4; ++i) w[i] = 0;
#pragma unroll
      for (int i = 0; i < P; ++i) w[i / 4] |= uint32_t(p[i]) << (8 * (i % 4));
    }
    scales = scale_plane[at / 32];
    if constexpr (!kOneBlock) scales |= uint32_t(scale_plane[(at + P - 1) / 32]) << 16;
  }

  __device__ __forceinline__ void to_floats(int64_t at, float* out) const {
    const float first = h2f(uint16_t(scales & 0xffffu));
    const float second = kOneBlock ? first : h2f(uint16_t(scales >> 16));
    const int in_first = 32 - int(at % 32);  // of the lane's values, those in the first block
#pragma unroll
    for (int i = 0; i < P; ++i) {
      // int8 code + 128 in each byte, to float without a conversion instruction (block_loads.cuh)
      const float code = byte_plus_2p23(w[i / 4] ^ 0x80808080u, i % 4) - (kTwo23 + 128.0f);
      out[i] = code * (kOneBlock || i < in_first ? first : second);
    }
  }
};

}  // namespace engine
