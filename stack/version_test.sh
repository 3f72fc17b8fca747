#!/usr/bin/env bash
# Every binary says what it is and the commit it was built from
# (`--version`, exit 0): the CLI, each service, the launcher and pm-shim.
set -euo pipefail
want='^pm [0-9]+\.[0-9]+\.[0-9]+ \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)$'
for binary in cli/pm registry/registry log_store/log_store supervisor/supervisor \
              gateway/gateway stack/stack shim/pm-shim; do
  out=$("$TEST_SRCDIR/pm/$binary" --version)
  # gflags prints "<program> version <the version line>".
  line=${out#* version }
  line=$(head -n1 <<<"$line")
  grep -Eq "$want" <<<"$line" || { echo "$binary --version: $out" >&2; exit 1; }
done
echo PASS
