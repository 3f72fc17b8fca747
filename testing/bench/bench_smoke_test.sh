#!/usr/bin/env bash
# The benchmark driver in smoke mode: tiny sizes, proves it runs end to end
# and reports every measure without losing bytes. Speeds are not checked.
set -euo pipefail
out=$("$TEST_SRCDIR/pm/testing/bench/all" --smoke --json="$TEST_TMPDIR/bench.json")
echo "$out"
if grep -q 'LOST BYTES' <<<"$out"; then echo "bytes lost" >&2; exit 1; fi
if grep -q 'LOST PROCESSES' <<<"$out"; then echo "processes not stopped after re-adoption" >&2; exit 1; fi
for measure in 'through the gateway' 'Start /bin/true' 'Start + Stop' 'Starts/s' 'Capture' 'Follow latency' 'RSS at rest' 'CPU at rest' 'per sleeping process' 'pm-shim PSS per sleeping process' 'shim + services' 'List with' 'restart -> healthy' 'answered status + stop'; do
  grep -q "$measure" <<<"$out" || { echo "missing measure: $measure" >&2; exit 1; }
done
grep -q '"rows"' "$TEST_TMPDIR/bench.json"
