#include "common/version.h"

#include "absl/strings/str_cat.h"
#include "common/version_stamp.h"

namespace pm {

const char* BuildCommit() { return PM_BUILD_COMMIT; }

std::string VersionLine() {
  return absl::StrCat("pm ", kVersion, " (commit ", BuildCommit(), ")");
}

}  // namespace pm
