#include "common/command_line_core.h"

namespace pm {

const std::string* CommandLine::Getenv(absl::string_view name) const {
  for (const auto& [key, value] : env) {
    if (key == name) return &value;
  }
  return nullptr;
}

}  // namespace pm
