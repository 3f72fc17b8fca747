// Status helpers shared by every pm service, and by pm-shim, which links
// no gRPC (common/status.h adds the gRPC conversions to these).
//
// Debian's abseil (20220623) predates absl's own status macros, so the two
// we use are defined here, once:
//
//   absl::StatusOr<Fd> OpenConfig(const std::string& path) {
//     int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
//     if (fd < 0) return pm::ErrnoError("open", path);
//     return Fd(fd);
//   }
//   absl::Status Load() {
//     PM_ASSIGN_OR_RETURN(Fd fd, OpenConfig("/etc/pm.conf"));
//     PM_RETURN_IF_ERROR(Parse(fd));
//     return absl::OkStatus();
//   }
#ifndef PM_COMMON_STATUS_CORE_H_
#define PM_COMMON_STATUS_CORE_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/optional.h"

namespace pm {

// "ENOENT" for ENOENT; "errno 4242" for a number glibc does not name.
std::string ErrnoName(int errnum);

// A status for a failed system call, naming the call, its argument and the
// OS reason: `call("arg"): No such file or directory (ENOENT)`. The code
// follows absl::ErrnoToStatus (ENOENT -> NOT_FOUND, EACCES ->
// PERMISSION_DENIED, ...), and the errno travels with it (ErrnoOf). Reads
// errno when `errnum` is omitted, so call it straight after the failing
// call.
absl::Status ErrnoError(absl::string_view call, absl::string_view arg);
absl::Status ErrnoError(absl::string_view call, absl::string_view arg,
                        int errnum);
// As above without an argument: `call(): reason (ENAME)`.
absl::Status ErrnoError(absl::string_view call);
// As above for a call whose arguments `call("arg")` cannot show: `what`
// as given, e.g. `clone3(CLONE_VM|CLONE_PIDFD): reason (ENAME)`.
absl::Status ErrnoStatus(absl::string_view what, int errnum);

// The errno of a status made by ErrnoError or ErrnoStatus (kept through
// Annotate), so a caller can tell EMFILE from the other RESOURCE_EXHAUSTED
// errors without reading the message; nullopt for any other status.
absl::optional<int> ErrnoOf(const absl::Status& status);

// The same status with `context: ` in front of its message (its errno kept).
absl::Status Annotate(const absl::Status& status, absl::string_view context);

// UNAVAILABLE because a cluster's etcd or another host cannot be reached
// (issue 17): meant for the caller wherever it called from, so its message
// names no socket or file of this host. It starts with "cluster
// unavailable: ", which the gateway passes on to remote callers (every
// other UNAVAILABLE detail, a local service's socket, it keeps to its log).
absl::Status ClusterUnavailableError(absl::string_view message);
// Whether `message` is one of those (its lead kept).
bool IsClusterUnavailableMessage(absl::string_view message);

}  // namespace pm

#define PM_STATUS_CONCAT_INNER_(a, b) a##b
#define PM_STATUS_CONCAT_(a, b) PM_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function with the status of `expr` if not OK.
#define PM_RETURN_IF_ERROR(expr)                  \
  do {                                            \
    ::absl::Status pm_status_ = (expr);           \
    if (!pm_status_.ok()) return pm_status_;      \
  } while (false)

// `lhs = std::move(value)` of the StatusOr `rexpr`, or returns its status.
#define PM_ASSIGN_OR_RETURN(lhs, rexpr)                                    \
  PM_ASSIGN_OR_RETURN_IMPL_(PM_STATUS_CONCAT_(pm_statusor_, __LINE__), lhs, \
                            rexpr)
#define PM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                              \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // PM_COMMON_STATUS_CORE_H_
