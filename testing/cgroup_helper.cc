// A managed process for the containment tests, doing one misbehaviour:
//
//   cgroup_helper alloc MIB   touch MIB MiB, one MiB at a time, printing
//                             "allocated N" after each; then "done"
//   cgroup_helper busy        spin on the CPU forever, printing "tick" after
//                             each 10 ms of its own CPU time
//   cgroup_helper forkbomb    every process forks again, forever; a failed
//                             fork is retried at once
//   cgroup_helper daemon      double-forks a daemon that calls setsid() and
//                             ignores SIGTERM, prints its pid, and waits
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace {

int Alloc(long mib) {
  std::vector<char*> blocks;
  for (long i = 1; i <= mib; ++i) {
    char* block = static_cast<char*>(malloc(1 << 20));
    if (block == nullptr) return 1;
    memset(block, static_cast<int>(i), 1 << 20);  // touch every page
    blocks.push_back(block);
    printf("allocated %ld\n", i);
    fflush(stdout);
  }
  printf("done\n");
  return 0;
}

int64_t CpuNanos() {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int Busy() {
  int64_t next = CpuNanos() + 10000000;
  for (volatile uint64_t n = 0;; ++n) {
    if ((n & 0xffff) == 0 && CpuNanos() >= next) {
      next += 10000000;
      if (write(1, "tick\n", 5) != 5) return 1;
    }
  }
}

int ForkBomb() {
  for (;;) fork();
}

int Daemon() {
  pid_t child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    // The middle process: a session of its own, then out of the way.
    setsid();
    pid_t daemon = fork();
    if (daemon != 0) _exit(daemon < 0 ? 1 : 0);
    signal(SIGTERM, SIG_IGN);
    printf("%d\n", getpid());
    fflush(stdout);
    for (;;) pause();
  }
  waitpid(child, nullptr, 0);
  for (;;) pause();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "alloc") == 0) return Alloc(atol(argv[2]));
  if (argc == 2 && strcmp(argv[1], "busy") == 0) return Busy();
  if (argc == 2 && strcmp(argv[1], "forkbomb") == 0) return ForkBomb();
  if (argc == 2 && strcmp(argv[1], "daemon") == 0) return Daemon();
  fprintf(stderr, "usage: cgroup_helper alloc MIB | busy | forkbomb | daemon\n");
  return 2;
}
