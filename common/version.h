// What pm is and what it was built from, for every binary's --version:
// "pm 0.14.0 (commit 413bc7ee06c9)". The commit comes from Bazel's
// workspace status (bazel/workspace_status.sh, a stamped genrule);
// "unknown" outside a git checkout, "-dirty" with uncommitted changes.
#ifndef PM_COMMON_VERSION_H_
#define PM_COMMON_VERSION_H_

#include <string>

namespace pm {

// pm's release number, raised with each issue that changes the public API.
inline constexpr char kVersion[] = "0.14.0";

// The commit the binary was built from.
const char* BuildCommit();

// "pm 0.14.0 (commit 413bc7ee06c9)".
std::string VersionLine();

}  // namespace pm

#endif  // PM_COMMON_VERSION_H_
