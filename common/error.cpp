#include "common/error.h"

namespace cmaf {
namespace {
std::string& prefix_storage() {
  static std::string prefix;
  return prefix;
}
}  // namespace

void set_error_prefix(std::string prefix) { prefix_storage() = std::move(prefix); }
const std::string& error_prefix() { return prefix_storage(); }

Error::Error(const std::string& message) : std::runtime_error(error_prefix() + message) {}

InputError::InputError(std::string subject, std::string field, const std::string& detail)
    : Error(subject + ": " + (field.empty() ? std::string() : field + ": ") + detail),
      subject_(std::move(subject)),
      field_(std::move(field)) {}

namespace detail {
void check_failed(const char* file, int line, const char* condition, const std::string& values,
                  const std::string& context) {
  std::string message = str(file, ":", line, " ", condition);
  if (!values.empty()) message += " " + values;
  if (!context.empty()) message += ": " + context;
  throw InternalError(message);
}
}  // namespace detail

}  // namespace cmaf
