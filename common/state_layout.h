// Where things live in pm's state dir (common/state_dir.h resolves the dir
// itself). No gRPC, so pm-shim uses it too: the shim writes, the log_store
// and the supervisor read, all from these paths.
//
//   <state_dir>/procs/<id>/          ProcessDir: the exit file, shim.log
//   <state_dir>/procs/<id>/output/   ProcessOutputDir: the segment files
//
// `id` is used as given: callers pass the canonical lower-case form.
#ifndef PM_COMMON_STATE_LAYOUT_H_
#define PM_COMMON_STATE_LAYOUT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace pm {

std::string ProcsDir(absl::string_view state_dir);
std::string ProcessDir(absl::string_view state_dir, absl::string_view id);
std::string ProcessOutputDir(absl::string_view state_dir, absl::string_view id);

}  // namespace pm

#endif  // PM_COMMON_STATE_LAYOUT_H_
