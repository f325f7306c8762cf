// The one exception hierarchy of cmaformer-dist and its check macros.
//
// Every error a user can meet names where it happened and what was expected:
//   InputError   bad input: a file, option or field that is not what it must be
//                ("<file>: <field>: <what was found>, expected <what>").
//   IoError      the system or a library failed on a file that looked right.
//   UsageError   the command line itself is wrong.
//   InternalError a broken invariant (a bug): CMAF_CHECK* failures, with source location.
// Messages are prefixed by a process-wide context (set by the cluster layer to "[rank 3] ").
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace cmaf {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message);
};

class InputError : public Error {
 public:
  // `subject` is usually a file path; `field` the dataset, attribute, key or option inside it.
  InputError(std::string subject, std::string field, const std::string& detail);
  const std::string& subject() const { return subject_; }
  const std::string& field() const { return field_; }

 private:
  std::string subject_;
  std::string field_;
};

class IoError : public Error {
 public:
  using Error::Error;
};

class UsageError : public Error {
 public:
  using Error::Error;
};

class InternalError : public Error {
 public:
  using Error::Error;
};

// Prefix put before every message built from now on in this process, e.g. "[rank 3] ".
void set_error_prefix(std::string prefix);
const std::string& error_prefix();

// Concatenates anything printable with operator<<.
template <typename... Args>
std::string str(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

namespace detail {
[[noreturn]] void check_failed(const char* file, int line, const char* condition,
                               const std::string& values, const std::string& context);

template <typename A, typename B>
std::string both_values(const A& a, const B& b) {
  return str("(", a, " vs ", b, ")");
}
}  // namespace detail

}  // namespace cmaf

// CMAF_CHECK(cond, context...): throws InternalError "file:line cond: context".
#define CMAF_CHECK(cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      ::cmaf::detail::check_failed(__FILE__, __LINE__, #cond, "", ::cmaf::str(__VA_ARGS__)); \
    }                                                                                      \
  } while (false)

#define CMAF_CHECK_OP_(op, a, b, ...)                                                   \
  do {                                                                                  \
    const auto& cmaf_a_ = (a);                                                          \
    const auto& cmaf_b_ = (b);                                                          \
    if (!(cmaf_a_ op cmaf_b_)) {                                                        \
      ::cmaf::detail::check_failed(__FILE__, __LINE__, #a " " #op " " #b,               \
                                   ::cmaf::detail::both_values(cmaf_a_, cmaf_b_),       \
                                   ::cmaf::str(__VA_ARGS__));                           \
    }                                                                                   \
  } while (false)

// CMAF_CHECK_EQ(a, b, context...): "file:line a == b (96 vs 95): context".
#define CMAF_CHECK_EQ(a, b, ...) CMAF_CHECK_OP_(==, a, b, __VA_ARGS__)
#define CMAF_CHECK_NE(a, b, ...) CMAF_CHECK_OP_(!=, a, b, __VA_ARGS__)
#define CMAF_CHECK_LT(a, b, ...) CMAF_CHECK_OP_(<, a, b, __VA_ARGS__)
#define CMAF_CHECK_LE(a, b, ...) CMAF_CHECK_OP_(<=, a, b, __VA_ARGS__)
#define CMAF_CHECK_GE(a, b, ...) CMAF_CHECK_OP_(>=, a, b, __VA_ARGS__)
