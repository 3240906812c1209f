// engine-tokenize: text to token ids (or ids back to text) with a GGUF file's tokenizer. Works on
// vocab-only files.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "engine/error.h"
#include "engine/model_file.h"
#include "engine/tokenizer.h"
#include "tool_errors.h"

int main(int argc, char** argv) {
  CLI::App app{"Tokenize text (or detokenize ids) with a GGUF file's tokenizer"};
  engine::tools::report_flag_errors_in_one_line(app, "engine-tokenize");
  std::string model, text, file;
  bool from_stdin = false, no_bos = false, no_special = false, detokenize = false;
  app.add_option("--model,-m", model, "GGUF file with a tokenizer (vocab-only files work)")->required();
  auto* t = app.add_option("--text", text, "text to tokenize (or ids to detokenize)");
  auto* s = app.add_flag("--stdin", from_stdin, "read the text from standard input");
  auto* f = app.add_option("--file", file, "read the text from a file")->check(CLI::ExistingFile);
  t->excludes(s)->excludes(f);
  s->excludes(f);
  app.add_flag("--no-bos", no_bos, "do not add BOS/EOS tokens");
  app.add_flag("--no-special", no_special, "do not parse control tokens written in the text");
  app.add_flag("--detokenize", detokenize, "the input is token ids (space or comma separated): print the text");
  CLI11_PARSE(app, argc, argv);
  if (from_stdin) {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  try {
    const auto tok = engine::Tokenizer::from_file(engine::ModelFile::open(model));
    if (detokenize) {
      std::vector<int32_t> ids;
      for (char& c : text) if (c == ',') c = ' ';
      std::istringstream in(text);
      for (long v; in >> v;) {
        if (v < 0 || v >= tok->n_tokens()) {
          throw engine::Error(fmt::format("--detokenize: token id {} outside the vocabulary (0..{})", v, tok->n_tokens() - 1));
        }
        ids.push_back(static_cast<int32_t>(v));
      }
      if (!in.eof()) throw engine::Error("--detokenize: the input is not a list of token ids");
      std::fputs(tok->detokenize(ids).c_str(), stdout);
      std::fputc('\n', stdout);
      return 0;
    }
    const auto ids = tok->tokenize(text, !no_bos, !no_special);
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += fmt::format("{}{}", i ? " " : "", ids[i]);
    std::puts(line.c_str());
  } catch (const std::exception& e) {
    return engine::tools::report_failure("engine-tokenize", e);
  }
  return 0;
}
