// The Unicode the pre-tokenizers need: UTF-8 decoding that keeps byte offsets (invalid bytes
// become one-byte units, so no input byte is ever lost) and the categories behind \p{L}, \p{N}
// and \s.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace engine {

struct Codepoint {
  uint32_t cp;      // 0xFFFFFFFF for an invalid byte
  uint32_t offset;  // byte offset in the text
  uint32_t length;  // bytes
};

std::vector<Codepoint> decode_utf8(std::string_view text);

bool is_letter(uint32_t cp);      // general category L*
bool is_number(uint32_t cp);      // general category N*
bool is_whitespace(uint32_t cp);  // White_Space property

// Length of the UTF-8 sequence a lead byte starts (1 for continuation or invalid bytes).
int utf8_sequence_length(uint8_t lead);

void append_utf8(std::string& out, uint32_t cp);

}  // namespace engine
