// Pre-tokenizers of byte-level BPE vocabularies: each splits text the way its regex (from the
// model's tokenizer.json, as llama.cpp names them in tokenizer.ggml.pre) would, implemented as a
// hand-written scanner with the regex's exact alternation order.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace engine {

enum class PreTokenizer {
  gpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  llama3,  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
           //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  qwen2,   // as llama3 with \p{N} (one digit at a time)
  smollm,  // \p{N} first, then gpt2 on the rest
};

// "default", "gpt-2", "gpt2" -> gpt2; "llama-bpe", "llama3" -> llama3; "qwen2",
// "deepseek-r1-qwen" -> qwen2; "smollm" -> smollm.
std::optional<PreTokenizer> find_pre_tokenizer(std::string_view name);

// Pieces of `text` (views into it) that cover it exactly, in order.
std::vector<std::string_view> pre_tokenize(PreTokenizer pre, std::string_view text);

}  // namespace engine
