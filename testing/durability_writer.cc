// durability_writer: a managed process for testing/durability_test.cc that
// writes a deterministic, self-checking stream until it is told to stop.
//
//   durability_writer TAG PERIOD_US
//
// Writes "TAG out 1\n" to stdout and "TAG err 1\n" to stderr, then 2, 3, ...
// each line in one write(2) (well under PIPE_BUF, so never torn), one pair
// every PERIOD_US microseconds. SIGPIPE keeps its default action: a writer
// whose pipe was torn down dies of it, which the test sees. SIGUSR1 makes
// it finish the pair it is writing and exit with code 7.
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

volatile sig_atomic_t exit_asked = 0;

void OnUsr1(int) { exit_asked = 1; }

// One whole line in one write; a short write or an error other than EINTR
// ends the writer (exit 3) so the test sees it.
void WriteLine(int fd, const std::string& line) {
  for (;;) {
    const ssize_t n = write(fd, line.data(), line.size());
    if (n == static_cast<ssize_t>(line.size())) return;
    if (n < 0 && errno == EINTR) continue;
    _exit(3);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: durability_writer TAG PERIOD_US\n");
    return 2;
  }
  const std::string tag = argv[1];
  const long period_us = strtol(argv[2], nullptr, 10);
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = OnUsr1;
  sigaction(SIGUSR1, &action, nullptr);
  for (unsigned long n = 1; !exit_asked; ++n) {
    const std::string number = std::to_string(n);
    WriteLine(1, tag + " out " + number + "\n");
    WriteLine(2, tag + " err " + number + "\n");
    // A rate, not a wait for anything.
    timespec period = {period_us / 1000000, (period_us % 1000000) * 1000};
    while (nanosleep(&period, &period) != 0 && errno == EINTR && !exit_asked) {
    }
  }
  return 7;
}
