#!/usr/bin/env bash
# The launcher behind `make up`, run as a user would: it brings the stack
# up and prints where things run; Ctrl+C (SIGINT) stops everything in order
# and leaves nothing behind; a service killed with SIGKILL is restarted,
# logged, and answers again; an orphan reparented to the launcher is reaped;
# `stack --upgrade` restarts every service in order; with --norestart a
# service that dies is named with its exit status and the rest are stopped.
# Waits on the launcher's own output, its log (tail -f: inotify) and its
# exit, never on time.
set -euo pipefail
stack="$TEST_SRCDIR/pm/stack/stack"
pm="$TEST_SRCDIR/pm/cli/pm"
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
  shift
  coproc LAUNCHER {
    if [ -n "$soft" ]; then ulimit -Sn "$soft"; fi
    exec "$stack" --runtime_dir="$dir/run" --state_dir="$dir/state" --nogateway \
      --metrics_listen=127.0.0.1:0 "$@" 2>"$log"
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

# The launcher's /metrics (every service's metrics), its body only, checked
# by Prometheus's own promtool; saved in $dir/metrics.txt.
scrape() {
  local port
  port=$(sed -n 's|^Metrics (Prometheus): http://127.0.0.1:\([0-9]*\)/metrics$|\1|p' <<<"$banner")
  [ -n "$port" ] || { echo "no metrics address in the banner: $banner" >&2; exit 1; }
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  sed '1,/^\r$/d' <&3 >"$dir/metrics.txt"
  exec 3<&-
  promtool check metrics <"$dir/metrics.txt" || {
    echo "promtool refuses the metrics:" >&2; cat "$dir/metrics.txt" >&2; exit 1; }
}
# Fails unless the last scrape has the line "$1 $2" (a series and its value).
has_metric() {
  grep -qxF -- "$1 $2" "$dir/metrics.txt" || {
    echo "no \"$1 $2\" in the metrics:" >&2; grep -F -- "${1%%\{*}" "$dir/metrics.txt" >&2; exit 1; }
}

# Waits until the log has a line matching the extended regex $2, and prints
# that line. Gives up after 60 s (a safety net, not a measure).
wait_log() {
  local line
  line=$(grep -E -m1 -- "$2" <(timeout 60 tail -n +1 -f "$1")) || {
    echo "never logged: $2" >&2; cat "$1" >&2; exit 1; }
  printf '%s\n' "$line"
}
# The pid in "NAME (pid N) is healthy again" once NAME is back after its
# first restart.
healthy_pid() {
  local line
  line=$(wait_log "$1" "$2 \(pid [0-9]+\) is healthy again")
  sed -n 's/.*(pid \([0-9]*\)) is healthy again.*/\1/p' <<<"$line"
}
pmc() { "$pm" --runtime_dir="$dir/run" "$@"; }

# 1. Ctrl+C: everything stops, in order, nothing left.
start "$dir/first.log" --norestart
pids="$(service_pid registry) $(service_pid log_store) $(service_pid supervisor)"
# A second launcher on the same runtime dir says so and starts nothing.
code=0
second=$("$stack" --runtime_dir="$dir/run" --state_dir="$dir/state2" --nogateway 2>&1) || code=$?
[ "$code" -eq 1 ] || { echo "a second launcher exited $code: $second" >&2; exit 1; }
grep -q "a pm stack already runs on $dir/run (launcher pid $pid)" <<<"$second" || {
  echo "a second launcher said: $second" >&2; exit 1; }
[ ! -e "$dir/state2" ] || { echo "the second launcher started something" >&2; exit 1; }
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

# 2. --norestart: a service that dies is named, with its status; the rest
# are stopped.
start "$dir/second.log" --norestart
others="$(service_pid registry) $(service_pid supervisor)"
kill -KILL "$(service_pid log_store)"
status=0; wait "$pid" || status=$?
[ "$status" -eq 1 ] || { echo "exit $status after a service died" >&2; exit 1; }
grep -q "log_store killed by signal 9 (SIGKILL) unexpectedly; stopping the rest" "$dir/second.log" || {
  cat "$dir/second.log" >&2; exit 1; }
for p in $others; do
  if kill -0 "$p" 2>/dev/null; then echo "service $p left running" >&2; exit 1; fi
done
# 3. Restart on death (the default): each service killed with SIGKILL is
# logged, restarted after 100 ms and healthy again, and the stack answers.
start "$dir/third.log"
launcher=$pid
for name in registry log_store supervisor; do
  # The first healthy line of each is its restart's: a new log per service.
  victim=$(service_pid "$name")
  kill -KILL "$victim"
  wait_log "$dir/third.log" "$name \(pid $victim\) killed by signal 9 \(SIGKILL\) unexpectedly" >/dev/null
  wait_log "$dir/third.log" "restarting $name in 100ms" >/dev/null
  wait_log "$dir/third.log" "$name \(pid [0-9]+\) restarted; waiting for it to be healthy" >/dev/null
  back=$(healthy_pid "$dir/third.log" "$name")
  if [ "$back" = "$victim" ] || ! kill -0 "$back"; then echo "$name not back: $back" >&2; exit 1; fi
  pmc list >/dev/null || { echo "the stack does not answer after $name came back" >&2; exit 1; }
done
# The launcher counted each death and restart, and every service answers
# its part of the scrape again.
scrape
for name in registry log_store supervisor; do
  has_metric "pm_stack_service_deaths_total{service=\"$name\"}" 1
  has_metric "pm_stack_service_restarts_total{service=\"$name\"}" 1
  has_metric "pm_stack_service_up{service=\"$name\"}" 1
done

# 4. An orphan: a managed process runs under its pm-shim; when the
# supervisor dies the shim (and the process under it) carries on, reparented
# to the launcher (a subreaper); when the process ends, the shim reaps it and
# exits, and the launcher reaps the shim: no zombie.
mkfifo "$dir/fifo"
id=$(pmc start -- sh -c "read x < $dir/fifo; exit 3")
process=$(pmc status "$id" | sed -n 's/^pid: *\([0-9]*\)/\1/p')
orphan=$(awk '{print $4}' "/proc/$process/stat")
grep -qx pm-shim "/proc/$orphan/comm" || {
  echo "process $process has parent $orphan, $(cat "/proc/$orphan/comm"), not its pm-shim" >&2; exit 1; }
supervisor=$(sed -n 's/.*supervisor (pid \([0-9]*\)) is healthy again.*/\1/p' "$dir/third.log" | tail -1)
kill -KILL "$supervisor"
wait_log "$dir/third.log" "supervisor \(pid $supervisor\) killed by signal 9" >/dev/null
parent=$(awk '{print $4}' "/proc/$orphan/stat")
[ "$parent" = "$launcher" ] || { echo "shim $orphan has parent $parent, not the launcher $launcher" >&2; exit 1; }
kill -0 "$process" || { echo "process $process died with its supervisor" >&2; exit 1; }
echo done >"$dir/fifo"
wait_log "$dir/third.log" "reaped orphan pid $orphan: exited with code 0" >/dev/null
for gone in "$orphan" "$process"; do
  if [ -e "/proc/$gone" ]; then echo "$gone left as a zombie" >&2; exit 1; fi
done

# 5. Upgrade: every service restarted in start order, each healthy before
# the next, and the stack answers.
# The supervisor killed in 4 must be back first: its second "healthy again"
# line (the first is from 3), not the earlier one.
grep -E -m2 "supervisor \(pid [0-9]+\) is healthy again" \
  <(timeout 60 tail -n +1 -f "$dir/third.log") | sed -n 2p | grep -q . || {
  echo "the supervisor killed in 4 never came back" >&2; cat "$dir/third.log" >&2; exit 1; }
# The process of 4 ended while no supervisor ran: the new one found its
# exit file, and the record has its true exit code.
code=0; pmc wait "$id" >/dev/null || code=$?
[ "$code" -eq 3 ] || { echo "the process that ended between supervisors: pm wait exited $code, not 3" >&2; exit 1; }
# A process running across the upgrade is not touched by it: the
# supervisor hands it off (SIGUSR2) and the new one re-adopts it.
kept=$(pmc start -- sleep 1000)
kept_pid=$(pmc status "$kept" | sed -n 's/^pid: *\([0-9]*\)/\1/p')
"$stack" --runtime_dir="$dir/run" --upgrade
wait_log "$dir/third.log" "upgrade: every service restarted and healthy" >/dev/null
order=$(grep -oE "upgrade: sent SIG[A-Z0-9]+ to [a-z_]+" "$dir/third.log" | awk '{print $5}' | paste -sd' ')
[ "$order" = "registry log_store supervisor" ] || { echo "upgrade order: $order" >&2; exit 1; }
grep -q "upgrade: sent SIGUSR2 to supervisor" "$dir/third.log" || {
  echo "the supervisor was not handed SIGUSR2" >&2; exit 1; }
pmc list >/dev/null
kill -0 "$kept_pid" || { echo "the upgrade ended process $kept_pid" >&2; exit 1; }
pmc status "$kept" | grep -q "^state: *running" || { echo "after the upgrade:" >&2; pmc status "$kept" >&2; exit 1; }
pmc stop "$kept" >/dev/null
code=0; pmc wait "$kept" >/dev/null || code=$?
[ "$code" -eq 143 ] || { echo "the re-adopted process: pm wait exited $code, not 143 (SIGTERM)" >&2; exit 1; }
# The new supervisor's counts (a restarted service starts from zero, as
# Prometheus expects of counters): one Stop, one end by a signal; and the
# registry's records by state.
scrape
has_metric "pm_supervisor_stops_total" 1
has_metric "pm_supervisor_exits_total{reason=\"signal\"}" 1
has_metric "pm_registry_processes{state=\"running\"}" 0
has_metric "pm_registry_processes{state=\"exited\"}" 1
has_metric "pm_registry_processes{state=\"signaled\"}" 1

# 6. Ctrl+C still stops everything, and the pid file goes.
kill -INT "$pid"
status=0; wait "$pid" || status=$?
[ "$status" -eq 0 ] || { echo "exit $status after SIGINT" >&2; cat "$dir/third.log" >&2; exit 1; }
grep -q "stack stopped" "$dir/third.log"
[ ! -e "$dir/run/stack.pid" ] || { echo "stack.pid left behind" >&2; exit 1; }
echo PASS
