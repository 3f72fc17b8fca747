#include "common/state_layout.h"

#include "absl/strings/str_cat.h"

namespace pm {

std::string ProcsDir(absl::string_view state_dir) {
  return absl::StrCat(state_dir, "/procs");
}

std::string ProcessDir(absl::string_view state_dir, absl::string_view id) {
  return absl::StrCat(ProcsDir(state_dir), "/", id);
}

std::string ProcessOutputDir(absl::string_view state_dir,
                             absl::string_view id) {
  return absl::StrCat(ProcessDir(state_dir, id), "/output");
}

}  // namespace pm
