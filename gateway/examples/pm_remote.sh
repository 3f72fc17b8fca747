#!/usr/bin/env bash
# Runs pm_remote.py with Debian's Python (it has python3-grpcio) and the
# generated stubs from the runfiles.
set -euo pipefail
runfiles=${RUNFILES_DIR:-$0.runfiles}
export PYTHONPATH="$runfiles/pm/proto${PYTHONPATH:+:$PYTHONPATH}"
exec /usr/bin/python3 "$runfiles/pm/gateway/examples/pm_remote.py" "$@"
