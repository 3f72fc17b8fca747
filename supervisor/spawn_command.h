// Spawning a process from its command as bytes: vfork-style, with a pidfd,
// exec confirmed. No protos: the supervisor (spawn.h, from a StartRequest)
// and pm-shim (from its Spawn message) both start processes through here.
//
//   pm::CommandLine command{"sh", {"-c", "echo hi"}, {}, ""};
//   PM_ASSIGN_OR_RETURN(SpawnedChild child,
//                       SpawnCommand(command, SpawnIsolation{}, {}));
//   // child.pidfd, child.stdout_read, child.stderr_read (non-blocking)
//
// The child is created with clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD): no
// page tables are copied (fork() from a parent holding 1 GiB costs ~45 ms;
// this ~0.8 ms), the parent resumes only once the child has exec'd or
// failed, and the pidfd is born with the child, so no reaper can race it and
// a recycled pid can never be signalled. Between clone and exec the child
// makes only async-signal-safe calls: reset signal dispositions and mask,
// write "0" to its cgroups' cgroup.procs, setsid(), mount (a private "/", a
// new /proc) and ioctl (`lo` up) when isolated, dup2 /dev/null and the pipes
// onto 0/1/2, close_range(3, ~0), setrlimit(RLIMIT_NOFILE) to what the
// caller gives, chdir, execve. A failure there is written into memory the
// parent shares (CLONE_VM) and the child _exit(127)s; SpawnCommand reaps it
// and returns the error.
#ifndef PM_SUPERVISOR_SPAWN_COMMAND_H_
#define PM_SUPERVISOR_SPAWN_COMMAND_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/command_line_core.h"
#include "common/fd.h"

namespace pm::supervisor {

// The PATH used when the command's env has none.
inline constexpr char kDefaultPath[] =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// A cgroup.procs file the child writes "0" to, joining that cgroup.
struct CgroupJoin {
  int fd = -1;       // opened O_WRONLY by the parent
  std::string path;  // for error messages
};

// Where the child lives from its first instruction on.
struct SpawnOptions {
  // The cgroup2 directory the child is born in (clone3 with
  // CLONE_INTO_CGROUP), or -1. Where clone3 cannot be used, the child joins
  // it through `cgroup2_join` instead, still before anything else.
  int cgroup2_dir_fd = -1;
  CgroupJoin cgroup2_join;
  // Other cgroups (the v1 hierarchies) the child joins first thing.
  std::vector<CgroupJoin> joins;
  // The RLIMIT_NOFILE the child gets, before exec: the supervisor's own
  // before it raised it (common/file_limit.h). Unset: the supervisor's.
  std::optional<rlimit> file_limit;
};

struct SpawnedChild {
  pid_t pid = -1;
  Fd pidfd;
  Fd stdout_read;  // O_NONBLOCK | O_CLOEXEC
  Fd stderr_read;  // O_NONBLOCK | O_CLOEXEC
  // The path that was exec'd (after the PATH lookup).
  std::string executable;
  // What was run.
  CommandLine command;
};


// The namespaces of its own a process gets.
struct SpawnIsolation {
  // CLONE_NEWPID (+ CLONE_NEWNS): a fresh /proc is mounted over /proc, so
  // the process sees itself as PID 1 there.
  bool pid = false;
  // CLONE_NEWNET: `lo` is brought up, nothing else exists.
  bool net = false;
  // CLONE_NEWNS: "/" is made recursively private first, so no mount made
  // inside propagates out.
  bool mount = false;
};

// Starts `command` as the leader of a new session and process group, stdin
// /dev/null, stdout and stderr on pipes, in the cgroups of `options` and the
// namespaces of `isolation`. Its argv, environment, working directory and
// PATH lookup are bytes; an executable without a slash is looked up on the
// command's own PATH (kDefaultPath when its env has none). Returns once the
// new program runs. Errors:
//   FAILED_PRECONDITION  the child could not exec, join its cgroup, set its
//                        file limit or set up its namespaces: the message
//                        names the call, the path and the OS error, e.g.
//                        execve("/nope"): No such file or directory (ENOENT);
//                        or the namespaces need a privilege we lack (EPERM)
//   other codes          the parent's own setup failed (pipe2, clone, ...;
//                        RESOURCE_EXHAUSTED for EMFILE, with the errno in
//                        the status: ErrnoOf)
absl::StatusOr<SpawnedChild> SpawnCommand(CommandLine command,
                                          const SpawnIsolation& isolation,
                                          const SpawnOptions& options = {});

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_SPAWN_COMMAND_H_
