// Test helper for tests/python/test_tokenizer_vs_llama_cpp.py: many texts through one tokenizer
// in one process.
//   engine-tokenize-tool MODEL tokenize 0|1   stdin: texts separated by NUL bytes; stdout: a line
//                                             of space-separated ids per text (no BOS/EOS; 1:
//                                             control tokens written in the text are parsed)
//   engine-tokenize-tool MODEL detokenize     stdin: a line of space-separated ids per sequence;
//                                             stdout: a line per sequence, its text in hex (a
//                                             text may hold any byte, NUL and newline included)
#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/model_file.h"
#include "engine/tokenizer.h"

int main(int argc, char** argv) {
  const std::string op = argc > 2 ? argv[2] : "";
  if (!((argc == 4 && op == "tokenize") || (argc == 3 && op == "detokenize"))) {
    std::fprintf(stderr, "usage: %s MODEL tokenize 0|1 | MODEL detokenize\n", argv[0]);
    return 2;
  }
  try {
    const auto tok = engine::Tokenizer::from_file(engine::ModelFile::open(argv[1]));
    if (op == "tokenize") {
      const bool special = std::string(argv[3]) == "1";
      const std::string all(std::istreambuf_iterator<char>(std::cin), {});
      for (size_t start = 0; start <= all.size();) {
        size_t end = all.find('\0', start);
        if (end == std::string::npos) end = all.size();
        std::string line;
        for (int32_t id : tok->tokenize(std::string_view(all).substr(start, end - start), false, special)) {
          if (!line.empty()) line += ' ';
          line += std::to_string(id);
        }
        std::printf("%s\n", line.c_str());
        start = end + 1;
      }
    } else {
      for (std::string line; std::getline(std::cin, line);) {
        std::vector<int32_t> ids;
        std::istringstream in(line);
        for (int32_t id; in >> id;) ids.push_back(id);
        for (unsigned char c : tok->detokenize(ids)) std::printf("%02x", c);
        std::printf("\n");
      }
    }
  } catch (const engine::Error& e) {
    std::fprintf(stderr, "engine-tokenize-tool: %s\n", e.what());
    return 1;
  }
  return 0;
}
