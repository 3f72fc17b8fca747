#!/usr/bin/env bash
# peers/sweep.py kills exactly the processes that carry the run's marker,
# wherever they are in the tree, and leaves every other process alone.
set -euo pipefail
sweep="$TEST_SRCDIR/pm/testing/bench/peers/sweep.py"
marker="PM_BENCH_PEERS=$TEST_TMPDIR/run"

env "$marker" sleep 1000 &
marked=$!
# A grandchild whose parent exits: what a daemon's program looks like.
env "$marker" sh -c 'sleep 1000 & echo $! >"$1"' sh "$TEST_TMPDIR/orphan"
orphan=$(cat "$TEST_TMPDIR/orphan")
env PM_BENCH_PEERS="$TEST_TMPDIR/other" sleep 1000 &
other=$!
sleep 1000 &
plain=$!
trap 'kill -KILL $marked $orphan $other $plain 2>/dev/null || true' EXIT

# The marker is visible once env has exec'd sleep.
is_sleep() { [ "$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)" = "sleep 1000 " ]; }
for _ in $(seq 1000); do
  is_sleep "$marked" && is_sleep "$orphan" && is_sleep "$other" && is_sleep "$plain" && break
  sleep 0.01
done

/usr/bin/python3 "$sweep" "$marker" 2>"$TEST_TMPDIR/sweep.err"
cat "$TEST_TMPDIR/sweep.err"

# Dead: gone, or a zombie its parent (this shell) has not reaped yet.
dead() { [ ! -d "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
for _ in $(seq 1000); do dead "$marked" && dead "$orphan" && break; sleep 0.01; done
dead "$marked" || { echo "marked child $marked not killed" >&2; exit 1; }
dead "$orphan" || { echo "marked orphan $orphan not killed" >&2; exit 1; }
for pid in "$other" "$plain"; do
  ! dead "$pid" || { echo "unmarked process $pid was killed" >&2; exit 1; }
done
grep -q "killing pid $marked: sleep 1000" "$TEST_TMPDIR/sweep.err"
grep -q "killing pid $orphan: sleep 1000" "$TEST_TMPDIR/sweep.err"
echo "sweep: PASS"
