// Stop strings for generated text, as llama.cpp's --reverse-prompt and the OpenAI API's `stop`:
// the text is fed piece by piece as it is generated; what may be shown comes back, holding back
// an end that could be the start of a stop string; once a stop string appears, the text before
// it comes back and the rest, the stop string included, is dropped.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace engine {

class StopStrings {
 public:
  // Throws engine::Error for an empty stop string (it would match before any text).
  explicit StopStrings(std::vector<std::string> stops);

  // Takes the next piece of text; returns what can be shown now.
  std::string push(std::string_view piece);
  // Whether a stop string has appeared (then push returns nothing more).
  bool matched() const { return matched_; }
  // At the end of generation: the text held back (nothing after a match).
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string pending_;  // text not shown yet: at most the longest stop string less one byte
  bool matched_ = false;
};

}  // namespace engine
