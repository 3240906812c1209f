// What engine-inspect prints: a model's architecture, hyperparameters, tokenizer, tensor type
// mix and exact bytes per layer, as text or as one JSON object.
#pragma once

#include <string>

#include "engine/model_file.h"
#include "engine/model_spec.h"

namespace engine {

// "321 F32, 385 Q4_K, 65 Q6_K": how many tensors of each type, by type name.
std::string tensor_type_mix(const ModelFile& file);

std::string model_report_text(const ModelFile& file, const ModelSpec& spec);

// Keys: architecture, n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx_train,
// rope_freq_base, rope_scaling, norm_eps, qkv_bias, qk_norm, tied_output, n_tensors, file_bytes,
// split_files, tensor_types (type -> count), layers ([{index, bytes}]), input_bytes,
// output_bytes, tokenizer ({model, pre, n_tokens, n_merges, chat_template, special}).
std::string model_report_json(const ModelFile& file, const ModelSpec& spec);

}  // namespace engine
