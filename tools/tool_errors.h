// How every engine tool reports a failure: one line on stderr, "engine-TOOL: what went wrong",
// nothing on stdout, and a non-zero exit status (1: the work failed; a bad flag: CLI11's
// own codes, 100 and up); and the warning the tools share. Presentation only; the library throws
// engine::Error with the message.
#pragma once

#include <exception>
#include <new>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "engine/engine.h"

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

// A warning (not a failure) where `threads` exceeds the CPUs the process may use: the pool's
// workers spin, so threads that take turns on a CPU make each step many times slower.
inline void warn_if_threads_exceed_cpus(const char* tool, int threads) {
  if (const int cpus = available_cpu_count(); threads > cpus) {
    fmt::print(stderr, "{}: warning: {} threads on the {} CPU{} this process may use: they take turns, "
               "which makes each step many times slower\n", tool, threads, cpus, cpus == 1 ? "" : "s");
  }
}

}  // namespace engine::tools
