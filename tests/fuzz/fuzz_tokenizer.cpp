// libFuzzer harness: arbitrary text through the two real tokenizers of ../shared/fixtures/vocab
// (SentencePiece and byte-level BPE). The first byte picks the tokenizer and whether control
// tokens are parsed; the rest is the text. Every input must tokenize to ids of the vocabulary,
// and, where the text is valid UTF-8 and control tokens are not parsed, detokenize back to the
// same text (SentencePiece writes U+2581 as a space, so it reads as one); the token streamer
// must emit exactly what detokenize gives. Any failure aborts, a crash report for the fuzzer.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "engine/error.h"
#include "engine/model_file.h"
#include "engine/tokenizer.h"

namespace {

std::shared_ptr<const engine::Tokenizer> spm, bpe;

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    const int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + size_t(len) > s.size()) return false;
    uint32_t cp = len == 1 ? c : c & (0x7Fu >> len);
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + size_t(k)]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += size_t(len);
  }
  return true;
}

void fail(const char* what, std::string_view text) {
  std::fprintf(stderr, "fuzz_tokenizer: %s for a %zu-byte text\n", what, text.size());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("ENGINE_FIXTURES_DIR");
  const std::string base = std::string(dir != nullptr ? dir : ENGINE_FIXTURES_DIR) + "/vocab/";
  spm = engine::Tokenizer::from_file(engine::ModelFile::open(base + "ggml-vocab-llama-spm.gguf"));
  bpe = engine::Tokenizer::from_file(engine::ModelFile::open(base + "ggml-vocab-gpt-2.gguf"));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const engine::Tokenizer& tok = (data[0] & 1) != 0 ? *spm : *bpe;
  const bool parse_special = (data[0] & 2) != 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<int32_t> ids;
  try {
    ids = tok.tokenize(text, false, parse_special);
  } catch (const engine::Error&) {
    return 0;  // a refusal with a message is an allowed outcome
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= tok.n_tokens()) fail("an id outside the vocabulary", text);
  }
  const std::string back = tok.detokenize(ids);
  if (!parse_special && valid_utf8(text)) {
    std::string want(text);
    if (tok.model() == "llama") {
      for (size_t at; (at = want.find("\xE2\x96\x81")) != std::string::npos;) want.replace(at, 3, " ");
    }
    if (back != want) fail("detokenize(tokenize(text)) differs from the text", text);
  }
  engine::TokenStreamer streamer(std::shared_ptr<const engine::Tokenizer>(&tok, [](const engine::Tokenizer*) {}),
                                 tok.model() == "llama");
  std::string streamed;
  for (int32_t id : ids) streamed += streamer.push(id);
  streamed += streamer.flush();
  if (streamed != back) fail("the streamed text differs from detokenize's", text);
  return 0;
}
