// Error reporting used across the engine: one exception type carrying a one-line message.
#pragma once
#include <sstream>
#include <string>

#include "moshi/error.h"

namespace moshi {

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  throw Error(os.str());
}

}  // namespace moshi

// Checks an invariant that bad input can break; throws moshi::Error with the message.
#define MOSHI_CHECK(cond, ...)            \
  do {                                    \
    if (!(cond)) ::moshi::fail(__VA_ARGS__); \
  } while (0)
