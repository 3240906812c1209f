#include "engine/stop_strings.h"

#include <algorithm>

#include "engine/error.h"

namespace engine {

StopStrings::StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const auto& s : stops_) {
    if (s.empty()) throw Error("--stop: an empty stop string");
  }
}

std::string StopStrings::push(std::string_view piece) {
  if (matched_) return {};
  pending_ += piece;
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, pending_.find(s));
  if (first != std::string::npos) {
    matched_ = true;
    std::string shown = pending_.substr(0, first);
    pending_.clear();
    return shown;
  }
  // Hold back the longest end of the text that begins some stop string.
  size_t held = 0;
  for (const auto& s : stops_) {
    for (size_t k = std::min(s.size() - 1, pending_.size()); k > held; --k) {
      if (std::string_view(pending_).substr(pending_.size() - k) == std::string_view(s).substr(0, k)) {
        held = k;
        break;
      }
    }
  }
  std::string shown = pending_.substr(0, pending_.size() - held);
  pending_.erase(0, pending_.size() - held);
  return shown;
}

std::string StopStrings::flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace engine
