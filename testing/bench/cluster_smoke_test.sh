#!/usr/bin/env bash
# The cluster benchmark in smoke mode: tiny sizes, proves it brings up etcd
# and three hosts and prints every measure beside its baseline. Speeds are
# not checked.
set -euo pipefail
out=$("$TEST_SRCDIR/pm/testing/bench/cluster" --smoke)
echo "$out"
for lost in 'STARTS FAILED' 'EVENTS LOST' 'never listed'; do
  if grep -q "$lost" <<<"$out"; then echo "the benchmark reported: $lost" >&2; exit 1; fi
done
for measure in 'Start /bin/true on host b through a' 'List of .* processes on 3 hosts' \
    'Exit on host c -> a'; do
  grep -q "$measure.*ratio [0-9]" <<<"$out" || { echo "missing measure: $measure" >&2; exit 1; }
done
