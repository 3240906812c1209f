// Text to token ids and back, from a GGUF file's tokenizer.ggml.* metadata.
//
//   model "llama": SentencePiece-style BPE over scores, byte fallback (<0xNN>), a space prefix;
//   model "gpt2":  byte-level BPE over merges, after the pre-tokenizer tokenizer.ggml.pre names
//                  (default/gpt-2, llama-bpe, qwen2, deepseek-r1-qwen, smollm).
// Control tokens (<|im_start|>, <|endoftext|>) and the unknown token (<unk>) are matched whole
// only when the caller allows special-token parsing; user-defined tokens always are, as in
// llama.cpp. Unknown models and
// pre-tokenizers are refused by name.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/model_file.h"

namespace engine {

class Tokenizer {
 public:
  // Throws engine::Error naming the file and key when the tokenizer is missing or unsupported.
  static std::shared_ptr<const Tokenizer> from_file(const ModelFile& file);
  ~Tokenizer();

  // add_special: BOS/EOS as the file's add_bos_token/add_eos_token say.
  // parse_special: control tokens written in the text become their ids.
  std::vector<int32_t> tokenize(std::string_view text, bool add_special, bool parse_special) const;

  // One piece of text per segment, each with its own special-token rule (chat templates: the
  // template's tags with parsing on, user content with it off). add_special applies once.
  struct Segment {
    std::string_view text;
    bool parse_special;
  };
  std::vector<int32_t> tokenize(std::span<const Segment> segments, bool add_special) const;

  // The bytes of one token (control tokens are "" unless render_special).
  std::string token_to_piece(int32_t token, bool render_special = false) const;
  // All tokens' bytes; drops the leading space the tokenizer added (SentencePiece): the first
  // token's, as llama.cpp's llama_detokenize does (after a leading BOS the space stays).
  std::string detokenize(std::span<const int32_t> tokens, bool render_special = false) const;

  int32_t n_tokens() const;
  int32_t bos() const;  // -1 if none
  int32_t eos() const;
  bool add_bos() const;
  bool is_end_of_generation(int32_t token) const;  // eos, eot, eom and turn-end control tokens
  int32_t find(std::string_view token_text) const;  // -1 if not a token
  std::string_view model() const;  // "llama" or "gpt2"

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Streams text token by token without ever cutting a UTF-8 sequence: bytes of an incomplete
// character are held until the token that completes it arrives.
class TokenStreamer {
 public:
  explicit TokenStreamer(std::shared_ptr<const Tokenizer> tokenizer, bool strip_leading_space);
  std::string push(int32_t token);  // the text that is complete so far
  std::string flush();              // whatever is held back, at the end

 private:
  std::shared_ptr<const Tokenizer> tok_;
  std::string pending_;
  bool strip_;
};

}  // namespace engine
