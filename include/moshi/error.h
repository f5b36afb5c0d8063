// moshi-rt public error type. Every failure of the library (bad input, bad checkpoint,
// backend error) is reported as a moshi::Error whose what() is one human-readable line.
#pragma once
#include <stdexcept>
#include <string>

namespace moshi {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace moshi
