// engine-inspect FILE [--json]: validates a GGUF model and prints what it holds.
#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "engine/error.h"
#include "engine/model_file.h"
#include "engine/model_report.h"
#include "engine/model_spec.h"
#include "tool_errors.h"

int main(int argc, char** argv) {
  CLI::App app{"Validate a GGUF model and print its architecture, tokenizer and bytes per layer"};
  engine::tools::report_flag_errors_in_one_line(app, "engine-inspect");
  std::string path;
  bool json = false;
  app.add_option("file", path, "GGUF model (any part of a split model)")->required();
  app.add_flag("--json", json, "print one JSON object instead of text");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto file = engine::ModelFile::open(path);
    const auto spec = engine::ModelSpec::from(file);
    const std::string report =
        json ? engine::model_report_json(file, spec) : engine::model_report_text(file, spec);
    std::fputs(report.c_str(), stdout);
    if (json) std::fputc('\n', stdout);
  } catch (const std::exception& e) {
    return engine::tools::report_failure("engine-inspect", e);
  }
  return 0;
}
