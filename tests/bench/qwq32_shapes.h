// The matrices of QwQ-32B Q4_K_M, for the GPU kernel benchmarks: each shape and type, and how
// often one token reads it.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "engine/ggml_type.h"

namespace engine::bench {

struct MatrixShape {
  const char* name;
  GgmlType type;
  int64_t K, N;
  int per_token;     // how often a token's forward pass multiplies this matrix (64 layers)
  bool output_head;  // the output head: a prompt batch runs it for its last token only
};

// QwQ-32B: n_embd 5120, 40 heads of 128, 8 KV heads, n_ff 27648, vocab 152064. Q4_K_M gives
// attn_v and ffn_down Q6_K in 32 of the 64 layers (use_more_bits) and Q4_K in the others. The
// last rows are for comparison (other weight formats at the same shapes: the IQ4, IQ3, IQ2 and IQ1 files'
// bulk types and the ternary TQ types at ffn_gate/up's), not in the model.
inline constexpr MatrixShape kQwq32Shapes[] = {
    {"attn_q/attn_output 5120x5120", GgmlType::Q4_K, 5120, 5120, 128, false},
    {"attn_k 5120->1024", GgmlType::Q4_K, 5120, 1024, 64, false},
    {"attn_v 5120->1024 (Q4_K)", GgmlType::Q4_K, 5120, 1024, 32, false},
    {"attn_v 5120->1024 (Q6_K)", GgmlType::Q6_K, 5120, 1024, 32, false},
    {"ffn_gate/up 5120->27648", GgmlType::Q4_K, 5120, 27648, 128, false},
    {"ffn_down 27648->5120 (Q4_K)", GgmlType::Q4_K, 27648, 5120, 32, false},
    {"ffn_down 27648->5120 (Q6_K)", GgmlType::Q6_K, 27648, 5120, 32, false},
    {"output 5120->152064", GgmlType::Q6_K, 5120, 152064, 1, true},
    {"5120x5120 Q8_0", GgmlType::Q8_0, 5120, 5120, 0, false},
    {"5120x5120 F16", GgmlType::F16, 5120, 5120, 0, false},
    {"5120->27648 IQ4_XS", GgmlType::IQ4_XS, 5120, 27648, 0, false},
    {"5120->27648 IQ4_NL", GgmlType::IQ4_NL, 5120, 27648, 0, false},
    {"5120->27648 IQ3_S", GgmlType::IQ3_S, 5120, 27648, 0, false},
    {"5120->27648 IQ3_XXS", GgmlType::IQ3_XXS, 5120, 27648, 0, false},
    {"5120->27648 IQ2_S", GgmlType::IQ2_S, 5120, 27648, 0, false},
    {"5120->27648 IQ2_XS", GgmlType::IQ2_XS, 5120, 27648, 0, false},
    {"5120->27648 IQ2_XXS", GgmlType::IQ2_XXS, 5120, 27648, 0, false},
    {"5120->27648 IQ1_M", GgmlType::IQ1_M, 5120, 27648, 0, false},
    {"5120->27648 IQ1_S", GgmlType::IQ1_S, 5120, 27648, 0, false},
    {"5120->27648 TQ2_0", GgmlType::TQ2_0, 5120, 27648, 0, false},
    {"5120->27648 TQ1_0", GgmlType::TQ1_0, 5120, 27648, 0, false},
};

// A forward pass's products as the GPU stage launches them: q, k and v in one launch where their
// types agree (Q4_K in 32 layers; in the other 32, v is Q6_K and alone), gate and up in one, the
// others alone.
struct StageLaunch {
  const char* name;
  GgmlType type;
  int64_t K;
  std::initializer_list<int64_t> rows;  // of each matrix in the launch
  int per_token;
  bool output_head;
  const char* qkv = nullptr;  // the q/k/v launches: each matrix's role, 'q', 'k' or 'v'
};

inline const StageLaunch kQwq32Launches[] = {
    {"q+k+v fused (Q4_K)", GgmlType::Q4_K, 5120, {5120, 1024, 1024}, 32, false, "qkv"},
    {"q+k fused (Q4_K)", GgmlType::Q4_K, 5120, {5120, 1024}, 32, false, "qk"},
    {"v (Q6_K)", GgmlType::Q6_K, 5120, {1024}, 32, false, "v"},
    {"attn_output (Q4_K)", GgmlType::Q4_K, 5120, {5120}, 64, false},
    {"gate+up fused (Q4_K)", GgmlType::Q4_K, 5120, {27648, 27648}, 64, false},
    {"down (Q4_K)", GgmlType::Q4_K, 27648, {5120}, 32, false},
    {"down (Q6_K)", GgmlType::Q6_K, 27648, {5120}, 32, false},
    {"output (Q6_K)", GgmlType::Q6_K, 5120, {152064}, 1, true},
};

}  // namespace engine::bench
