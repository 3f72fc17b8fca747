#!/usr/bin/env bash
# Runs a pm_cc_fuzzer binary (bazel/fuzz.bzl) once over its seed corpus:
#   fuzz_seeds_test.sh FUZZER CORPUS_DIR
# Under --config=fuzz the binary is libFuzzer, which -runs=0 makes run the
# corpus and stop; otherwise it is the replay main, which ignores flags.
set -euo pipefail
fuzzer="$1"
corpus="$2"
[ -d "$corpus" ] || { echo "no seed corpus at $corpus" >&2; exit 1; }
exec "$fuzzer" -runs=0 "$corpus"
