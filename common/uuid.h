// Process ids: RFC 4122 version 4 UUIDs from the kernel's CSPRNG.
//
//   PM_ASSIGN_OR_RETURN(std::string id, pm::NewUuidV4());
//   PM_RETURN_IF_ERROR(pm::ValidateProcessId(request.id()));
#ifndef PM_COMMON_UUID_H_
#define PM_COMMON_UUID_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace pm {

// A random version 4 UUID, lower-case "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx",
// from getrandom(2). Fails only if getrandom does.
absl::StatusOr<std::string> NewUuidV4();

// OK for a well-formed UUID in the canonical 8-4-4-4-12 hex form (either
// case); INVALID_ARGUMENT naming the bad value otherwise.
absl::Status ValidateProcessId(absl::string_view id);

}  // namespace pm

#endif  // PM_COMMON_UUID_H_
