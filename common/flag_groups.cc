#include "common/flag_groups.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pm {
namespace {

// "a", "a and b", "a, b and c".
std::string Enumerate(const std::vector<absl::string_view>& names) {
  if (names.size() <= 1) return absl::StrJoin(names, "");
  std::vector<absl::string_view> head(names.begin(), names.end() - 1);
  return absl::StrCat(absl::StrJoin(head, ", "), " and ", names.back());
}

}  // namespace

absl::Status CheckAllOrNone(std::initializer_list<FlagValue> group,
                            absl::string_view purpose) {
  std::vector<absl::string_view> all;
  std::vector<absl::string_view> missing;
  for (const FlagValue& flag : group) {
    all.push_back(flag.flag);
    if (flag.value.empty()) missing.push_back(flag.flag);
  }
  if (missing.empty() || missing.size() == all.size()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      Enumerate(missing), missing.size() == 1 ? " is" : " are", " missing: ", purpose,
      " takes ", Enumerate(all), " together (or none of them)"));
}

}  // namespace pm
