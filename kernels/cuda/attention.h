// GPU attention: decode steps over an f16 or q8_0 KV cache, prompt batches over an f16 one. No
// CUDA types: pointers are device pointers, `stream` a cudaStream_t.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/activations.h"
#include "kernels/cuda/kv_cache.h"

namespace engine {

// Floats of workspace cuda_attention_decode needs for a context of n_ctx positions.
size_t cuda_attention_decode_workspace(int n_head, int head_dim, int64_t n_ctx);

// out[h] = softmax(scale * q[h] . K[t][h / group]) . V[t][h / group] over positions t < n_keys,
// for every query head h (group = n_head / n_head_kv, grouped-query attention). q and out are
// n_head x head_dim floats; the cache is f16 or q8_0 (kv_cache.h), its values read as stored.
// head_dim <= 256 and a multiple of 32. With q8, out is also written as 8-bit blocks (the next
// matrix's input, as cuda_quantize_activations would make them). Asynchronous on `stream`;
// throws engine::Error for bad shapes or a failed launch. Where launches overlap
// (kernels/cuda/launch.cuh), the keys and values before the newest (positions < n_keys - 1) are
// read before the previous kernel in the stream has finished: that kernel may write the newest
// position (as the stage's RoPE does), not the older ones.
void cuda_attention_decode(const float* q, const KvLayer& cache, int64_t n_keys, int n_head, int n_head_kv,
                           int head_dim, float scale, float* out, float* workspace, void* stream,
                           ActQ8Block* q8 = nullptr);

// The same with the key count read on the device, n_keys = *pos + 1 (a decode step at position
// *pos), for launches captured once in a CUDA graph and replayed at every position: the grid
// covers max_keys and the blocks past n_keys return at once. *pos, too, is read before the
// previous kernel has finished: it must come from a copy, not from that kernel.
void cuda_attention_decode_at(const float* q, const KvLayer& cache, const int64_t* pos, int64_t max_keys,
                              int n_head, int n_head_kv, int head_dim, float scale, float* out, float* workspace,
                              void* stream, ActQ8Block* q8 = nullptr);

// Causal attention for a prompt batch: query b (b < n_queries) at position pos0 + b attends the
// keys at positions 0 .. pos0 + b. q and out are [n_queries][n_head][head_dim] floats; the cache
// is f16 (a q8_0 cache goes through cuda_kv_to_f16 first), already holding the batch's own keys
// and values. One launch for the whole batch, no workspace. Asynchronous on `stream`; throws
// engine::Error for bad shapes, a q8_0 cache or a failed launch.
void cuda_attention_prefill(const float* q, const KvLayer& cache, int64_t pos0, int64_t n_queries, int n_head,
                            int n_head_kv, int head_dim, float scale, float* out, void* stream);

}  // namespace engine
