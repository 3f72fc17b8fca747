// Test helpers shared by the supervisor package's tests.
#ifndef PM_SUPERVISOR_TEST_UTIL_H_
#define PM_SUPERVISOR_TEST_UTIL_H_

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include <string>

namespace pm::supervisor {

// Reads a non-blocking pipe to EOF, waiting with poll (10 s at most for each
// read, so a broken test fails instead of hanging).
inline std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
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

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_TEST_UTIL_H_
