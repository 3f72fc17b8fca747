// RLIMIT_NOFILE for the services: each raises its soft limit to the hard one
// at startup, as systemd does for itself, because the supervisor holds
// about four fds per managed process (two pipes, a pidfd, its cgroup's
// events) and the usual soft limit of 1024 would run out at some 250
// processes. The processes it starts get the original soft limit back
// (SpawnOptions::file_limit): select() cannot watch an fd above 1023
// (FD_SETSIZE), so programs expect 1024, and systemd gives its services
// that too.
//
//   const absl::StatusOr<rlimit> original = pm::RaiseFileLimit();
//   pm::LogFileLimitRaise(original);   // one line: from what to what
//   ...
//   // a call that still runs out of fds:
//   return pm::ExplainFileExhaustion(ErrnoError("pipe2"), "the supervisor");
//   // RESOURCE_EXHAUSTED "pipe2(): Too many open files (EMFILE): the
//   // supervisor's RLIMIT_NOFILE is 1024 (hard limit 1024)"
#ifndef PM_COMMON_FILE_LIMIT_H_
#define PM_COMMON_FILE_LIMIT_H_

#include <sys/resource.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pm {

// Raises this process's soft RLIMIT_NOFILE to its hard limit (a no-op when
// they are equal) and returns the limits it had before: what the processes
// it starts should get. Errors name the call: getrlimit or setrlimit (e.g.
// EPERM under a seccomp policy); the limit is then left as it was.
absl::StatusOr<rlimit> RaiseFileLimit();

// Logs what RaiseFileLimit did: "RLIMIT_NOFILE: soft limit raised from 1024
// to 524288 (the hard limit); processes started get 1024", "... already at
// the hard limit, 1024", or a warning with its error.
void LogFileLimitRaise(const absl::StatusOr<rlimit>& original);

// "1024", or "unlimited".
std::string FormatFileLimit(rlim_t limit);

// For the status of a call that ran out of file descriptors (its errno,
// see ErrnoOf, is EMFILE: this process's limit; or ENFILE: the system's):
// RESOURCE_EXHAUSTED, with the limit that was hit appended, so the message
// says what to raise: `...: the supervisor's RLIMIT_NOFILE is 1024 (hard
// limit 4096)` (`whose` is "the supervisor"), or `...: the system's
// open-file table is full (fs.file-max)`. Any other status is returned as it
// is.
absl::Status ExplainFileExhaustion(const absl::Status& status,
                                   absl::string_view whose);

}  // namespace pm

#endif  // PM_COMMON_FILE_LIMIT_H_
