// endless_writer: writes to stdout as fast as it can, forever, through a
// pipe grown to 1 MiB (the most an unprivileged process may ask for), so a
// reader that reads until the pipe is empty never gets there: the stand-in
// for a child that outlives its leader and never stops writing.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

int main() {
  fcntl(1, F_SETPIPE_SZ, 1 << 20);  // best effort: a smaller pipe still works
  static char buffer[1 << 16];
  memset(buffer, 'y', sizeof(buffer));
  for (;;) {
    if (write(1, buffer, sizeof(buffer)) < 0) return 1;
  }
}
