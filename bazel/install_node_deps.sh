#!/usr/bin/env bash
# Installs the npm packages of the Node client test (testing/gateway/node:
# @grpc/grpc-js, @grpc/proto-loader) exactly as package-lock.json pins them.
# Idempotent and quiet when they are installed already: `npm ci` runs only
# when node_modules is missing or older than the lock file. Tests never
# download anything themselves.
set -euo pipefail
cd "$(dirname "$0")/../testing/gateway/node"
stamp=node_modules/.pm-installed
if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "pm: npm is missing (Debian package npm)" >&2; exit 1; }
echo "pm: installing npm packages for testing/gateway/node" >&2
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch "$stamp"
