// Parsing of --split and --reserve.
#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "engine/byte_size.h"
#include "engine/error.h"
#include "engine/planner.h"

namespace engine {
namespace {

std::vector<std::string_view> split_commas(std::string_view text) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    parts.push_back(text.substr(start, comma == std::string_view::npos ? comma : comma - start));
    if (comma == std::string_view::npos) return parts;
    start = comma + 1;
  }
}

std::optional<uint32_t> parse_u32(std::string_view s) {
  uint32_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

SplitStrategy parse_split(std::string_view text) {
  SplitStrategy s;
  s.text = std::string(text);
  if (text == "auto") return s;
  if (text == "even") { s.kind = SplitKind::even; return s; }
  if (text == "proportional") { s.kind = SplitKind::proportional; return s; }
  if (text == "none") { s.kind = SplitKind::single; return s; }
  if (text == "cpu") { s.kind = SplitKind::cpu; return s; }
  const auto parts = split_commas(text);
  const bool ranges = text.find('-') != std::string_view::npos;
  s.kind = ranges ? SplitKind::ranges : SplitKind::counts;
  for (std::string_view p : parts) {
    if (ranges) {
      const size_t dash = p.find('-');
      auto a = dash == std::string_view::npos ? std::nullopt : parse_u32(p.substr(0, dash));
      auto b = dash == std::string_view::npos ? std::nullopt : parse_u32(p.substr(dash + 1));
      if (!a || !b || *a > *b) {
        throw Error(fmt::format("--split: '{}' is not a layer range FIRST-LAST (in '{}')", p, text));
      }
      s.ranges.emplace_back(*a, *b);
    } else {
      auto n = parse_u32(p);
      if (!n) {
        throw Error(fmt::format("--split: '{}' is neither auto, even, proportional, none, cpu, "
                                "layer counts (30,34) nor ranges (0-29,30-63)",
                                text));
      }
      s.counts.push_back(*n);
    }
  }
  return s;
}

ReserveSpec parse_reserve(std::string_view text) {
  ReserveSpec spec;
  for (std::string_view p : split_commas(text)) {
    ReserveSpec::Entry e;
    if (!p.empty() && p.back() == '%') {
      double v = -1;
      auto [end, ec] = std::from_chars(p.data(), p.data() + p.size() - 1, v);
      if (ec != std::errc() || end != p.data() + p.size() - 1 || !(v >= 0 && v < 100)) {
        throw Error(fmt::format("--reserve: '{}' is not a percentage below 100%", p));
      }
      e.percent = v;
    } else {
      auto bytes = parse_byte_size(p);
      if (!bytes) throw Error(fmt::format("--reserve: '{}' is not a size such as 1GiB or 5%", p));
      e.bytes = *bytes;
    }
    spec.entries.push_back(e);
  }
  return spec;
}

uint64_t reserve_bytes(const ReserveSpec& spec, size_t gpu_index, uint64_t total_bytes) {
  if (spec.entries.empty()) {
    return std::max<uint64_t>(512ull << 20, total_bytes / 50);
  }
  const auto& e = spec.entries.size() == 1 ? spec.entries[0]
                                           : spec.entries[std::min(gpu_index, spec.entries.size() - 1)];
  if (e.percent > 0) return static_cast<uint64_t>(std::llround(double(total_bytes) * e.percent / 100.0));
  return e.bytes;
}

}  // namespace engine
