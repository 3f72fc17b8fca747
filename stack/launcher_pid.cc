#include "stack/launcher_pid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fd.h"
#include "common/proc.h"
#include "common/runtime_dir.h"
#include "common/status.h"

namespace pm::stack {
namespace {

struct PidFile {
  pid_t pid = 0;
  uint64_t start_ticks = 0;
};

absl::StatusOr<PidFile> ReadPidFile(const std::string& path) {
  PM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<std::string> fields =
      absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  PidFile file;
  if (fields.size() != 2 || !absl::SimpleAtoi(fields[0], &file.pid) ||
      !absl::SimpleAtoi(fields[1], &file.start_ticks) || file.pid <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed pid file ", path, ": \"", text, "\""));
  }
  return file;
}

}  // namespace

std::string LauncherPidFile(const std::string& runtime_dir) {
  return absl::StrCat(runtime_dir, "/stack.pid");
}

absl::StatusOr<Fd> LockRuntimeDir(const std::string& runtime_dir) {
  PM_RETURN_IF_ERROR(EnsureRuntimeDir(runtime_dir));
  // The directory itself: no lock file to leave behind or to race on.
  PM_ASSIGN_OR_RETURN(Fd lock, Fd::Open(runtime_dir, O_RDONLY | O_DIRECTORY));
  if (flock(lock.get(), LOCK_EX | LOCK_NB) == 0) return lock;
  if (errno != EWOULDBLOCK) return ErrnoError("flock", runtime_dir);
  absl::StatusOr<PidFile> running = ReadPidFile(LauncherPidFile(runtime_dir));
  return absl::FailedPreconditionError(absl::StrCat(
      "a pm stack already runs on ", runtime_dir,
      running.ok() ? absl::StrCat(" (launcher pid ", running->pid, ")") : std::string(),
      "; stop it first (Ctrl+C where it runs), or give this one another "
      "--runtime_dir and --state_dir"));
}

absl::Status WriteLauncherPidFile(const std::string& runtime_dir) {
  PM_ASSIGN_OR_RETURN(ProcStat self, ReadProcStat(getpid()));
  const std::string path = LauncherPidFile(runtime_dir);
  const std::string temp = path + ".tmp";
  {
    PM_ASSIGN_OR_RETURN(Fd fd, Fd::Open(temp, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    const std::string text = absl::StrCat(getpid(), " ", self.start_ticks, "\n");
    if (write(fd.get(), text.data(), text.size()) !=
        static_cast<ssize_t>(text.size())) {
      return ErrnoError("write", temp);
    }
  }
  if (rename(temp.c_str(), path.c_str()) != 0) return ErrnoError("rename", temp);
  return absl::OkStatus();
}

void RemoveLauncherPidFile(const std::string& runtime_dir) {
  const std::string path = LauncherPidFile(runtime_dir);
  absl::StatusOr<PidFile> file = ReadPidFile(path);
  absl::StatusOr<ProcStat> self = ReadProcStat(getpid());
  if (file.ok() && self.ok() && file->pid == getpid() &&
      file->start_ticks == self->start_ticks) {
    unlink(path.c_str());
  }
}

absl::Status SignalLauncher(const std::string& runtime_dir, int sig) {
  const std::string path = LauncherPidFile(runtime_dir);
  absl::StatusOr<PidFile> file = ReadPidFile(path);
  if (!file.ok()) {
    return Annotate(file.status(),
                    absl::StrCat("no launcher runs on ", runtime_dir));
  }
  // The pidfd first, then the check: once we hold it, the pid cannot name
  // another process for the signal below.
  Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, file->pid, 0)));
  if (!pidfd) {
    return ErrnoError("pidfd_open", absl::StrCat(file->pid, " (from ", path, ")"));
  }
  absl::StatusOr<ProcStat> stat = ReadProcStat(file->pid);
  if (!stat.ok()) return stat.status();
  if (stat->start_ticks != file->start_ticks) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pid ", file->pid, " in ", path,
        " is another process now (the launcher died without removing it)"));
  }
  if (syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0) != 0) {
    return ErrnoError("pidfd_send_signal", absl::StrCat(file->pid));
  }
  return absl::OkStatus();
}

}  // namespace pm::stack
