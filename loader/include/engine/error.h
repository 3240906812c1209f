// engine::Error: the one error mechanism of the library.
//
// Every failure inside libengine is thrown as engine::Error (never abort()/exit()).
// what() is one line naming the file or device, the field or call, and the problem.
#pragma once

#include <stdexcept>
#include <string>

namespace engine {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace engine
