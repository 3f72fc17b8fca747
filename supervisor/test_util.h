// Test helpers shared by the supervisor package's tests.
#ifndef PM_SUPERVISOR_TEST_UTIL_H_
#define PM_SUPERVISOR_TEST_UTIL_H_

#include <errno.h>
#include <poll.h>
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

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_TEST_UTIL_H_
