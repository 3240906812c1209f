// A GPU stage's KV cache: the two formats it keeps keys and values in, where each layer's lie in
// the stage's K and V arrays, and the conversion the prompt attention reads a q8_0 cache through.
// No CUDA types: pointers are device pointers, `stream` a cudaStream_t.
#pragma once

#include <cstdint>

#include "engine/memory_model.h"

namespace engine {

// One layer's keys and values for every position of the context.
//   f16:  k and v are [position][n_head_kv][head_dim] fp16 (as the CPU's f16 cache).
//   q8_0: k and v are [position][n_head_kv][head_dim] int8 codes, and k_scale and v_scale
//         [position][n_head_kv][head_dim / 32] fp16 scales, value = scale * code: the CPU's Q8_0
//         blocks (the same 34 bytes per 32 values, the same quantization) with the codes and the
//         scales in two planes, so that a head's codes are as aligned as the head (head_dim is a
//         multiple of 32) and a lane's codes are one aligned load.
struct KvLayer {
  KvType type = KvType::f16;
  void* k = nullptr;
  void* v = nullptr;
  uint16_t* k_scale = nullptr;  // q8_0 only
  uint16_t* v_scale = nullptr;
};

// Whether a GPU stage keeps a cache of this type: f16, and q8_0 where it fits the heads.
inline bool gpu_kv_supported(KvType type, int64_t head_dim) {
  return type != KvType::f32 && kv_type_fits(type, head_dim);
}

// Layer `layer` of a stage's cache of n_layers layers: k_array and v_array are the stage's K and V
// arrays (stage_kv_bytes / 2 each). f16: layer after layer. q8_0: every layer's codes, then every
// layer's scales, in each array (n_ctx * kv_dim * 34 / 32 bytes a layer, as the memory model
// counts).
inline KvLayer kv_layer(KvType type, void* k_array, void* v_array, int64_t n_layers, int64_t n_ctx, int64_t kv_dim,
                        int64_t layer) {
  const int64_t values = n_ctx * kv_dim;  // per layer, in K or in V
  KvLayer l;
  l.type = type;
  if (type == KvType::q8_0) {
    auto codes = [&](void* a) { return static_cast<void*>(static_cast<int8_t*>(a) + layer * values); };
    auto scales = [&](void* a) {
      return reinterpret_cast<uint16_t*>(static_cast<int8_t*>(a) + n_layers * values) + layer * (values / 32);
    };
    l.k = codes(k_array);
    l.v = codes(v_array);
    l.k_scale = scales(k_array);
    l.v_scale = scales(v_array);
  } else {
    l.k = static_cast<uint16_t*>(k_array) + layer * values;
    l.v = static_cast<uint16_t*>(v_array) + layer * values;
  }
  return l;
}

// k16 and v16 ([position][kv_dim] fp16) = the q8_0 cache's keys and values at positions
// 0 .. n_positions - 1, fp16 of scale * code (exact in f32, then rounded to nearest): what the
// tensor-core prefill reads, which takes f16 caches only. Asynchronous on `stream`; throws
// engine::Error for a cache that is not q8_0, a bad size or a failed launch.
void cuda_kv_to_f16(const KvLayer& cache, int64_t n_positions, int64_t kv_dim, uint16_t* k16, uint16_t* v16,
                    void* stream);

}  // namespace engine
