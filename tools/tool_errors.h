// How every engine tool reports a failure: one line on stderr, "engine-TOOL: what went wrong",
// nothing on stdout, and a non-zero exit status (1: the work failed; a bad flag: CLI11's
// own codes, 100 and up). Presentation only; the library throws engine::Error with the message.
#pragma once

#include <exception>
#include <new>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace engine::tools {

// CLI11's errors (unknown flag, bad value, missing option) as the tool's one line, without the
// "Run with --help" line CLI11 adds by default.
inline void report_flag_errors_in_one_line(CLI::App& app, std::string tool) {
  app.failure_message([tool = std::move(tool)](const CLI::App*, const CLI::Error& e) {
    return fmt::format("{}: {}\n", tool, e.what());
  });
}

// A failure that reached the tool's main (engine::Error, and also out of memory or a failed
// system call, which would otherwise abort) as the tool's one line; returns the exit status.
inline int report_failure(const char* tool, const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) {
    fmt::print(stderr, "{}: out of memory\n", tool);
  } else {
    fmt::print(stderr, "{}: {}\n", tool, e.what());
  }
  return 1;
}

}  // namespace engine::tools
