#!/usr/bin/env bash
# Runs every libFuzzer harness of the repo (the cc_binary targets tagged
# pm_fuzzer; see bazel/fuzz.bzl) for a bounded time each, one after the
# other, and fails when one finds a crash, a leak, a sanitizer report or a
# broken invariant. `make test` runs it.
#
#   testing/fuzz/run_fuzzers.sh [SECONDS_PER_FUZZER]   # default 20
#
# Each fuzzer starts from a copy of its seed corpus (<package>/X_corpus/ for
# X_fuzzer) in a temporary directory, so the repo is never written; the
# inputs it finds are thrown away with that directory. On a failure the
# directory is kept and the crashing input's path printed: reproduce with
# `bazel-bin/<package>/X_fuzzer CRASH_FILE` (after a --config=fuzz build),
# fix the bug with a unit test, and add the input to X_corpus/ as a
# regression seed.
set -euo pipefail
cd "$(dirname "$0")/../.."

BAZEL="${BAZEL:-bazel}"
seconds="${1:-${PM_FUZZ_SECONDS:-20}}"

mapfile -t targets < <("$BAZEL" query --noshow_progress \
  'attr(tags, "\bpm_fuzzer\b", kind(cc_binary, //...))' 2>/dev/null)
[ "${#targets[@]}" -gt 0 ] || { echo "run_fuzzers: no pm_fuzzer targets" >&2; exit 1; }
"$BAZEL" build --config=fuzz "${targets[@]}"
bin="$("$BAZEL" info --config=fuzz bazel-bin 2>/dev/null)"

work="$(mktemp -d "${TMPDIR:-/tmp}/pm-fuzz.XXXXXX")"
keep=0
trap '[ "$keep" = 1 ] || rm -rf "$work"' EXIT

passed=0
failed=0
for target in "${targets[@]}"; do
  package="${target#//}"
  package="${package%%:*}"
  name="${target##*:}"
  dir="$work/$name"
  mkdir -p "$dir/tmp"
  cp -R "$package/${name%_fuzzer}_corpus" "$dir/corpus"
  chmod -R u+w "$dir/corpus"
  # -rss_limit_mb: a harness that balloons is a bug too. -timeout: one
  # input running 10 s is a hang. New inputs go to the copied corpus;
  # crashes (crash-*, leak-*, timeout-*, oom-*) beside it.
  if TMPDIR="$dir/tmp" "$bin/$package/$name" \
       -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
       -print_final_stats=1 -artifact_prefix="$dir/" \
       "$dir/corpus" > "$dir/log" 2>&1; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")"
    found="$(ls "$dir/corpus" | wc -l)"
    echo "fuzz: $target passed: ${runs:-?} inputs in ${seconds}s, corpus $found"
    passed=$((passed + 1))
  else
    keep=1
    failed=$((failed + 1))
    echo "fuzz: $target FAILED; its log ends:" >&2
    tail -n 60 "$dir/log" >&2
    for crash in "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-*; do
      [ -e "$crash" ] && echo "fuzz: the input is $crash" >&2
    done
  fi
done
echo "fuzzers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
