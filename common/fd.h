// Fd: the owner of one file descriptor (folly's File, reduced).
//
//   PM_ASSIGN_OR_RETURN(pm::Fd fd, pm::Fd::Open("/dev/null", O_RDONLY));
//   read(fd.get(), ...);   // closed when `fd` goes out of scope
//
// Every fd pm creates is born close-on-exec (O_CLOEXEC, SOCK_CLOEXEC,
// pipe2(O_CLOEXEC)) so nothing leaks into managed processes.
#ifndef PM_COMMON_FD_H_
#define PM_COMMON_FD_H_

#include <sys/types.h>

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pm {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  // open(path, flags | O_CLOEXEC, mode). Errors name the call and the path.
  static absl::StatusOr<Fd> Open(const std::string& path, int flags,
                                 int mode = 0);

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  // Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }
  // Closes the current fd (if any) and owns `fd`.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Both ends of a pipe2(O_CLOEXEC | extra_flags).
struct Pipe {
  Fd read;
  Fd write;
};
absl::StatusOr<Pipe> MakePipe(int extra_flags = 0);

// Everything `fd` yields until EOF (files in /proc and cgroupfs have no
// size, so they are read to the end). Errors name the read and `path`.
absl::StatusOr<std::string> ReadToEnd(int fd, const std::string& path);
// The whole file at `path`. Errors name the call (open, read) and the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);
// Replaces the file at `path` with `text` so that a reader sees the old
// file or the new one, never half of either: writes a new PATH.XXXXXX
// (mode `mode`), then renames it over `path`. Errors name the call and
// the file; the temp file is removed on failure.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view text,
                                 mode_t mode);

// Sets or clears O_NONBLOCK.
absl::Status SetNonBlocking(int fd, bool on);

}  // namespace pm

#endif  // PM_COMMON_FD_H_
