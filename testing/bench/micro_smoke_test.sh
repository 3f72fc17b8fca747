#!/usr/bin/env bash
# The micro-benchmarks in smoke mode (a few iterations each): proves every
# benchmark runs without error and the ratios against the baselines are
# printed. Speeds are not checked.
set -euo pipefail
out=$("$TEST_SRCDIR/pm/testing/bench/micro" --benchmark_min_time=0.001 2>&1)
echo "$out"
if grep -q 'ERROR OCCURRED' <<<"$out"; then
  # Only the cgroup benchmark may skip, and only on a host without cgroups.
  if grep 'ERROR OCCURRED' <<<"$out" | grep -vq 'no cgroups here'; then
    echo "a benchmark failed" >&2; exit 1
  fi
fi
for ratio in 'pm Spawn + reap' \
    'registry create + end' 'segment append of 65536' \
    'segment read of 1048576'; do
  grep -q "$ratio" <<<"$out" || { echo "missing ratio: $ratio" >&2; exit 1; }
done
