// Test helper for tests/python/test_pretokenize_vs_regex.py: splits each input with one of the
// engine's pre-tokenizers. Input: records separated by a NUL byte on stdin. Output: for each
// record, its pieces separated by 0x01 bytes, records separated by NUL.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "engine/tokenizer/pretokenize.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const auto pre = engine::find_pre_tokenizer(argv[1]);
  if (!pre) return 2;
  const std::string all(std::istreambuf_iterator<char>(std::cin), {});
  size_t start = 0;
  while (start <= all.size()) {
    size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    const std::string_view record(all.data() + start, end - start);
    bool first = true;
    for (std::string_view piece : engine::pre_tokenize(*pre, record)) {
      if (!first) std::fputc(1, stdout);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      first = false;
    }
    if (end == all.size()) break;
    std::fputc(0, stdout);
    start = end + 1;
  }
  return 0;
}
