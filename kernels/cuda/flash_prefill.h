// The tensor-core causal prefill behind cuda_attention_prefill (attention.h) for the head sizes
// it has fragments for; the arguments are cuda_attention_prefill's, already checked.
#pragma once

#include <cstdint>

namespace engine {

bool flash_prefill_supports(int head_dim);

void cuda_flash_prefill(const float* q, const uint16_t* k_cache, const uint16_t* v_cache, int64_t pos0,
                        int64_t n_queries, int n_head, int n_head_kv, int head_dim, float scale, float* out,
                        void* stream);

}  // namespace engine
