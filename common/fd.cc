#include "common/fd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/status_core.h"

namespace pm {

absl::StatusOr<Fd> Fd::Open(const std::string& path, int flags, int mode) {
  int fd = open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError("open", path);
  return Fd(fd);
}

void Fd::reset(int fd) {
  if (fd_ >= 0) {
    // close() may report EINTR after the fd is gone on Linux; never retry.
    ::close(fd_);
  }
  fd_ = fd;
}

absl::StatusOr<Pipe> MakePipe(int extra_flags) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | extra_flags) != 0) return ErrnoError("pipe2");
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

absl::StatusOr<std::string> ReadToEnd(int fd, const std::string& path) {
  std::string text;
  char buffer[8192];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read", path);
    if (n == 0) return text;
    text.append(buffer, static_cast<size_t>(n));
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  PM_ASSIGN_OR_RETURN(Fd fd, Fd::Open(path, O_RDONLY));
  return ReadToEnd(fd.get(), path);
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view text,
                                 mode_t mode) {
  // A name of its own (O_EXCL, never through a symlink planted at a fixed
  // name), in the same directory, so the rename is atomic.
  std::string temp = path + ".XXXXXX";
  Fd fd(mkostemp(temp.data(), O_CLOEXEC));
  if (!fd) return ErrnoError("mkostemp", temp);
  absl::Status status = [&]() -> absl::Status {
    for (size_t written = 0; written < text.size();) {
      ssize_t n = write(fd.get(), text.data() + written, text.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError("write", temp);
      written += static_cast<size_t>(n);
    }
    if (fchmod(fd.get(), mode) != 0) return ErrnoError("fchmod", temp);
    fd.reset();
    if (rename(temp.c_str(), path.c_str()) != 0) return ErrnoError("rename", path);
    return absl::OkStatus();
  }();
  if (!status.ok()) unlink(temp.c_str());
  return status;
}

absl::Status SetNonBlocking(int fd, bool on) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoError("fcntl(F_GETFL)");
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (fcntl(fd, F_SETFL, flags) != 0) return ErrnoError("fcntl(F_SETFL)");
  return absl::OkStatus();
}

}  // namespace pm
