"""supervisord through the measures of pm's benchmark driver.

Run by peers.sh with Debian's /usr/bin/python3 (supervisor's own modules are
not needed: the client is the standard library's xmlrpc.client):

  /usr/bin/python3 supervisord_bench.py --dir=DIR --rounds=50 \
      --capture_bytes=1073741824 --capture_rounds=5 --idle_seconds=5

Starts a private supervisord (`-n`, so the pid spawned here is the daemon)
with its config, unix socket, pidfile and logs under DIR, talks to it over
that socket with one persistent XML-RPC client (supervisorctl would start a
new python per call and so measure python's startup), and prints one row per
measure on stdout, tab-separated:

  row <TAB> peer <TAB> key <TAB> measure <TAB> unit <TAB> median <TAB> p99 <TAB> note

where key names pm's measure the row compares with (start, start_stop,
capture, rss, cpu, per_process), after one `version <TAB> peer <TAB> version` line.
Progress and errors go to stderr. The daemon is stopped through its pidfd
(SIGTERM, then SIGKILL after a deadline) however the script ends.
"""

import argparse
import http.client
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
import xmlrpc.client

# supervisord's process states (supervisor/states.py).
STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL = 0, 10, 20, 30, 40, 100, 200
DONE_STATES = (STOPPED, EXITED, FATAL)


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.connect(self._path)
        self.sock = sock


class UnixTransport(xmlrpc.client.Transport):
    """HTTP/1.1 over a unix socket; xmlrpc.client keeps the connection open
    between calls (supervisord's medusa server keeps it alive)."""

    def __init__(self, path):
        super().__init__()
        self._path = path

    def make_connection(self, host):
        if self._connection and self._connection[0] == host:
            return self._connection[1]
        self._connection = host, UnixConnection(self._path)
        return self._connection[1]


def log(*args):
    print("supervisord:", *args, file=sys.stderr, flush=True)


def row(key, measure, unit, median, p99, note=""):
    print("\t".join(["row", "supervisord", key, measure, unit, "%.4f" % median, "%.4f" % p99, note]),
          flush=True)


def summarize(values):
    values = sorted(values)
    if not values:
        return 0.0, 0.0
    return values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.99))]


def write_config(d, capture_bytes, capture_rounds):
    sections = [
        f"""[unix_http_server]
file={d}/supervisor.sock
chmod=0700

[supervisord]
nodaemon=true
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}/log

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
""",
        # startsecs=0: startProcess returns once forked (RUNNING at once)
        # instead of polling until the program has stayed up a second.
        """[program:true]
command=/bin/true
autostart=false
autorestart=false
startsecs=0
""",
        # supervisord's defaults otherwise: SIGTERM to the leader, SIGKILL
        # after stopwaitsecs=10.
        """[program:sleep]
command=/bin/sleep 100
autostart=false
autorestart=false
startsecs=0
""",
    ]
    for i in range(capture_rounds):
        sections.append(f"""[program:capture{i}]
command=/usr/bin/head -c {capture_bytes} /dev/zero
autostart=false
autorestart=false
startsecs=0
stdout_logfile={d}/capture{i}.log
stdout_logfile_maxbytes=0
stdout_logfile_backups=0
""")
    os.makedirs(f"{d}/log", exist_ok=True)
    path = f"{d}/supervisord.conf"
    with open(path, "w") as f:
        f.write("\n".join(sections))
    return path


class Daemon:
    """The private supervisord: a child of this script, held by its pidfd."""

    def __init__(self, conf):
        self.proc = subprocess.Popen(
            ["/usr/bin/supervisord", "-n", "-c", conf],
            # -n also logs to stdout: the log file has it.
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sys.stderr,
            start_new_session=True)
        self.pidfd = os.pidfd_open(self.proc.pid)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, grace=20.0):
        """SIGTERM (supervisord then stops its programs), SIGKILL at the
        deadline; reaps the daemon."""
        if self.proc.returncode is not None:
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGTERM)
            if not select.select([self.pidfd], [], [], grace)[0]:
                log("did not exit on SIGTERM; SIGKILL")
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        os.close(self.pidfd)


def connect(sock_path, daemon, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        if not daemon.alive():
            raise RuntimeError("supervisord exited at startup (see above)")
        try:
            server = xmlrpc.client.ServerProxy("http://localhost/RPC2",
                                               transport=UnixTransport(sock_path))
            if server.supervisor.getState()["statename"] == "RUNNING":
                return server
        except (OSError, xmlrpc.client.Error):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("supervisord did not answer on " + sock_path)
        time.sleep(0.01)


def wait_state(server, name, states, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        info = server.supervisor.getProcessInfo(name)
        if info["state"] in states:
            return info
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} stuck in {info['statename']}")
        time.sleep(0.001)


def usage(pid):
    """(RSS in KiB, CPU ticks) of one process."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return rss, int(fields[11]) + int(fields[12])


def measure_idle(pid, seconds):
    _, ticks0 = usage(pid)
    time.sleep(seconds)  # idle means nobody calls
    rss, ticks1 = usage(pid)
    cpu = 100.0 * (ticks1 - ticks0) / os.sysconf("SC_CLK_TCK") / seconds
    row("rss", "supervisord: RSS at rest", "MiB", rss / 1024, rss / 1024)
    row("cpu", f"supervisord: CPU at rest over {seconds} s", "%core", cpu, cpu)


def measure_start(server, rounds):
    start, start_stop = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        # wait=False: with startsecs=0 the call returns after fork either
        # way, but wait=True faults (ABNORMAL_TERMINATION) when /bin/true
        # has already exited by the time supervisord looks.
        server.supervisor.startProcess("true", False)
        start.append((time.perf_counter() - t0) * 1000)
        wait_state(server, "true", DONE_STATES)
    for _ in range(rounds):
        t0 = time.perf_counter()
        server.supervisor.startProcess("sleep")
        server.supervisor.stopProcess("sleep")
        start_stop.append((time.perf_counter() - t0) * 1000)
    row("start", "supervisord: start /bin/true (XML-RPC, unix socket)", "ms",
        *summarize(start), "fork returned, exec not confirmed (startsecs=0)")
    # startProcess returns once forked; a SIGTERM that lands before the
    # child's exec hits the forked python's handler (a flag nobody reads),
    # sleep never gets it, and supervisord SIGKILLs it stopwaitsecs later.
    lost = [ms for ms in start_stop if ms > 5000]
    kept = [ms for ms in start_stop if ms <= 5000]
    note = ""
    if lost:
        note = (f"{len(lost)} of {rounds} stops waited stopwaitsecs (SIGTERM lost before exec);"
                f" median of the others {summarize(kept)[0]:.1f} ms")
    row("start_stop", "supervisord: start + stop of sleep", "ms",
        *summarize(start_stop), note)


def capture_round(server, d, i, capture_bytes):
    """GB/s from startProcess until the log file holds every byte (or, if
    some never arrive, until it last grew), and the bytes it never got."""
    path = f"{d}/capture{i}.log"
    name = f"capture{i}"
    t0 = time.perf_counter()
    server.supervisor.startProcess(name)
    size, last_size, grown_at, exited, next_check = 0, -1, t0, False, 0.0
    while True:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = 0
        now = time.perf_counter()
        if size != last_size:
            last_size, grown_at = size, now
        if size >= capture_bytes:
            break
        # The program may have exited with bytes still on their way; give up
        # once it has and the file stopped growing for 3 s.
        if now >= next_check:
            next_check = now + 0.2
            if not exited:
                exited = server.supervisor.getProcessInfo(name)["state"] in DONE_STATES
            elif now - grown_at > 3:
                break
        if now - t0 > 600:
            log(f"capture round {i}: still {size} bytes after 600 s")
            break
        time.sleep(0.002)
    wait_state(server, name, DONE_STATES, timeout=600)
    # Free the GiB now: the daemon may hold the file open.
    os.truncate(path, 0)
    return size / (grown_at - t0) / 1e9, capture_bytes - size


def measure_capture(server, d, capture_bytes, rounds):
    rates, lost = [], []
    for i in range(rounds):
        rate, missing = capture_round(server, d, i, capture_bytes)
        log(f"capture round {i}: {rate:.3f} GB/s, {missing} bytes missing")
        rates.append(rate)
        lost.append(missing)
    losing = [m for m in lost if m]
    note = (f"lost bytes in {len(losing)} of {rounds} rounds (up to {max(losing)} B)"
            if losing else f"no byte lost in {rounds} rounds")
    row("capture", f"supervisord: capture {capture_bytes >> 20} MiB to its log file",
        "GB/s", *summarize(rates), note)


def write_sleepers_config(d, count):
    """A second daemon's config: `count` sleeps as one group of programs."""
    os.makedirs(f"{d}/log", exist_ok=True)
    path = f"{d}/supervisord.conf"
    with open(path, "w") as f:
        f.write(f"""[unix_http_server]
file={d}/supervisor.sock
chmod=0700

[supervisord]
nodaemon=true
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}/log
minfds={1024 + 8 * count}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:sleepers]
command=/bin/sleep 1000
process_name=%(program_name)s_%(process_num)d
numprocs={count}
autostart=false
autorestart=false
startsecs=0
""")
    return path


def measure_sleepers(d, count):
    """The daemon's RSS growth per sleeping program (RSS with `count`
    running minus RSS with the same config and none running), on a daemon
    of its own so that the other measures' config stays small. supervisord
    has no helper process per program: the daemon is the whole cost."""
    daemon = Daemon(write_sleepers_config(d, count))
    try:
        server = connect(f"{d}/supervisor.sock", daemon)
        before, _ = usage(daemon.proc.pid)
        server.supervisor.startProcessGroup("sleepers", False)
        deadline = time.monotonic() + 300
        while True:
            infos = server.supervisor.getAllProcessInfo()
            running = sum(1 for i in infos if i["state"] == RUNNING)
            if running == count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(0.5)  # as pm's measure: let the last starts settle
        after, _ = usage(daemon.proc.pid)
        per = (after - before) / max(1, count)
        row("per_process", f"supervisord: daemon RSS per sleeping process ({running})", "KiB",
            per, per, f"daemon RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, no helper process")
        server.supervisor.stopProcessGroup("sleepers", True)
    finally:
        daemon.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--capture_bytes", type=int, default=1 << 30)
    parser.add_argument("--capture_rounds", type=int, default=3)
    parser.add_argument("--idle_seconds", type=int, default=5)
    parser.add_argument("--sleepers", type=int, default=0,
                        help="sleeping programs for the memory per process measure (0: skip)")
    parser.add_argument("--only", default="",
                        help="comma-separated measures of pm's driver to run (idle, start, "
                             "capture, sleepers; others ignored); empty: all")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    run = lambda measure: not only or measure in only
    # SIGTERM unwinds like Ctrl-C does, through the finally that stops the
    # daemon.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    d = os.path.abspath(args.dir)
    os.makedirs(d, exist_ok=True)
    conf = write_config(d, args.capture_bytes, args.capture_rounds)
    daemon = Daemon(conf)
    try:
        server = connect(f"{d}/supervisor.sock", daemon)
        version = server.supervisor.getSupervisorVersion()
        print(f"version\tsupervisord\t{version}", flush=True)
        log("version", version, "pid", daemon.proc.pid)
        if run("idle"):
            measure_idle(daemon.proc.pid, args.idle_seconds)
        if run("start"):
            measure_start(server, args.rounds)
        if run("capture"):
            measure_capture(server, d, args.capture_bytes, args.capture_rounds)
    finally:
        daemon.stop()
    if run("sleepers") and args.sleepers > 0:
        measure_sleepers(f"{d}/sleepers", args.sleepers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
