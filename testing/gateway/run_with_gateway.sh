#!/usr/bin/env bash
# Runs gateway_harness with this test's arguments: COMMAND ARGS... (and
# optional harness flags first, e.g. --server_key=rsa).
set -euo pipefail
harness="$TEST_SRCDIR/pm/testing/gateway/gateway_harness"
flags=()
while [ $# -gt 0 ] && [[ $1 == --* ]]; do flags+=("$1"); shift; done
exec "$harness" "${flags[@]}" -- "$@"
