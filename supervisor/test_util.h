// Test helpers shared by the supervisor package's tests.
#ifndef PM_SUPERVISOR_TEST_UTIL_H_
#define PM_SUPERVISOR_TEST_UTIL_H_

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <string>

namespace pm::supervisor {

// Reads a non-blocking pipe up to EOF, or (stop >= 0) up to the byte
// `stop`, which is consumed but not returned; nothing past it is read.
// Waits with poll, 10 s at most for each read, so a broken test fails
// instead of hanging.
inline std::string ReadUntil(int fd, int stop) {
  std::string out;
  char buf[4096];
  // One byte at a time when stopping at a byte, so the rest stays unread.
  const size_t size = stop >= 0 ? 1 : sizeof(buf);
  for (;;) {
    ssize_t n = read(fd, buf, size);
    if (n > 0) {
      if (stop >= 0 && buf[0] == static_cast<char>(stop)) return out;
      out.append(buf, n);
    } else if (n == 0) {
      return out;
    } else if (errno == EAGAIN) {
      struct pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, 10000) == 0) return out;
    } else if (errno != EINTR) {
      return out;
    }
  }
}

// The rest of a non-blocking pipe, to EOF.
inline std::string ReadAll(int fd) { return ReadUntil(fd, -1); }

// The next line of a non-blocking pipe, without its newline.
inline std::string ReadLine(int fd) { return ReadUntil(fd, '\n'); }

// How many fds this process has open (folly's checkFdLeak): compare before
// and after a failing spawn or Start. -1 if /proc/self/fd cannot be read.
inline int OpenFdCount() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (struct dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;  // the directory's own fd
}

// The lowest fd number a new open would get now; with the soft
// RLIMIT_NOFILE set to it, the next open fails with EMFILE.
inline int LowestFreeFd() {
  const int fd = dup(0);
  if (fd >= 0) close(fd);
  return fd;
}

// Sets this process's soft RLIMIT_NOFILE for the life of a test, and puts
// back what it was when it goes.
class ScopedFileLimit {
 public:
  explicit ScopedFileLimit(rlim_t soft) {
    getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit limit = saved_;
    limit.rlim_cur = soft;
    ok_ = setrlimit(RLIMIT_NOFILE, &limit) == 0;
  }
  ~ScopedFileLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }
  ScopedFileLimit(const ScopedFileLimit&) = delete;
  ScopedFileLimit& operator=(const ScopedFileLimit&) = delete;
  bool ok() const { return ok_; }
  const rlimit& saved() const { return saved_; }

 private:
  rlimit saved_ = {};
  bool ok_ = false;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_TEST_UTIL_H_
