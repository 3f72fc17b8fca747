#!/usr/bin/env bash
# The launcher behind `make up`, run as a user would: it brings the stack
# up and prints where things run; Ctrl+C (SIGINT) stops everything in order
# and leaves nothing behind; a service that dies is named with its exit
# status and the rest are stopped. Waits on the launcher's own output and
# exit, never on time.
set -euo pipefail
stack="$TEST_SRCDIR/pm/stack/stack"
dir=$(mktemp -d /tmp/pm_stack_test.XXXXXX)
trap 'rm -rf "$dir"' EXIT

# The soft RLIMIT_NOFILE the launcher starts with, as a login shell's: each
# service raises its own to the hard limit, and starts from this one.
soft=1024
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -le "$soft" ]; then soft=""; fi

# Starts the launcher; sets $pid and reads its stdout until the banner ends.
start() {
  local log=$1
  coproc LAUNCHER {
    if [ -n "$soft" ]; then ulimit -Sn "$soft"; fi
    exec "$stack" --runtime_dir="$dir/run" --state_dir="$dir/state" --nogateway 2>"$log"
  }
  pid=$LAUNCHER_PID
  banner=""
  while IFS= read -r line <&"${LAUNCHER[0]}"; do
    banner+="$line"$'\n'
    [[ $line == "Ctrl+C stops everything." ]] && break
  done
  grep -q "pm stack is up" <<<"$banner" || { echo "no banner: $banner" >&2; exit 1; }
}

service_pid() { sed -n "s/^  $1 *pid \([0-9]*\).*/\1/p" <<<"$banner"; }

# 1. Ctrl+C: everything stops, in order, nothing left.
start "$dir/first.log"
pids="$(service_pid registry) $(service_pid log_store) $(service_pid supervisor)"
# Each service raised its file limit from the launcher's original (not from
# the launcher's raised one), so the supervisor hands 1024 to its processes.
if [ -n "$soft" ]; then
  supervisor_soft=$(awk '/^Max open files/ {print $4}' "/proc/$(service_pid supervisor)/limits")
  [ "$supervisor_soft" = "$hard" ] || {
    echo "the supervisor's soft RLIMIT_NOFILE is $supervisor_soft, not $hard" >&2; exit 1; }
fi
kill -INT "$pid"
status=0; wait "$pid" || status=$?
[ "$status" -eq 0 ] || { echo "exit $status after SIGINT" >&2; cat "$dir/first.log" >&2; exit 1; }
grep -q "stack stopped" "$dir/first.log"
if [ -n "$soft" ]; then
  for who in stack registry log_store supervisor; do
    grep -q " $who .*RLIMIT_NOFILE: soft limit raised from $soft to $hard" "$dir/first.log" || {
      echo "$who did not raise its file limit from $soft:" >&2; cat "$dir/first.log" >&2; exit 1; }
  done
  grep -q " supervisor .*processes started get $soft" "$dir/first.log"
fi
for p in $pids; do
  if kill -0 "$p" 2>/dev/null; then echo "service $p left running" >&2; exit 1; fi
done
leftover=$(ls -A "$dir/run")
[ -z "$leftover" ] || { echo "left in the runtime dir: $leftover" >&2; exit 1; }

# 2. A service dies: named, with its status; the rest are stopped.
start "$dir/second.log"
others="$(service_pid registry) $(service_pid supervisor)"
kill -KILL "$(service_pid log_store)"
status=0; wait "$pid" || status=$?
[ "$status" -eq 1 ] || { echo "exit $status after a service died" >&2; exit 1; }
grep -q "log_store killed by signal 9 (SIGKILL) unexpectedly; stopping the rest" "$dir/second.log" || {
  cat "$dir/second.log" >&2; exit 1; }
for p in $others; do
  if kill -0 "$p" 2>/dev/null; then echo "service $p left running" >&2; exit 1; fi
done
echo PASS
