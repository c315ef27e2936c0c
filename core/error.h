#pragma once
// lra::Error — the one exception type of lra. It carries a readable message with
// context (file, line, key, shapes); `main` catches it, prints one line, exits 1.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace lra {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws lra::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace lra

// Checks a condition and throws lra::Error with the formatted message when it fails.
#define LRA_CHECK(cond, ...)       \
  do {                             \
    if (!(cond)) ::lra::fail(__VA_ARGS__); \
  } while (0)
