"""Kills every process that carries a marker in its environment.

  /usr/bin/python3 sweep.py PM_BENCH_PEERS=/tmp/pm_bench_peers.XXXXXX

peers.sh puts the marker in the environment of each peer's bench script;
the daemons those start, and the programs the daemons run, inherit it. So
this finds what a peer left behind, whoever its parent is now, and nothing
else (not a system supervisord, not another run). Each process is held by a
pidfd before its environment is read, so the signal cannot reach a process
that took a recycled pid. Prints what it had to kill on stderr; exits 0.
"""

import os
import signal
import sys


def marked(pid, marker):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:  # exited, a zombie, or a kernel thread
        return False


def command(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def sweep_once(marker):
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if marked(pid, marker):
                print(f"peers: left behind, killing pid {pid}: {command(pid)}",
                      file=sys.stderr, flush=True)
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                killed += 1
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)
    return killed


def main():
    marker = sys.argv[1].encode()
    # A process may fork while the sweep walks /proc: go again until a pass
    # finds nothing.
    for _ in range(10):
        if sweep_once(marker) == 0:
            return 0
    print("peers: processes keep appearing; giving up the sweep", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
