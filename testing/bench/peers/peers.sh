#!/usr/bin/env bash
# Runs supervisord and PM2 through pm's benchmark measures (start, start +
# stop of sleep, capture until retained, RSS and CPU at rest), each on its
# own socket and home under one temp dir. The driver runs it for --peers:
#
#   peers.sh --rounds=50 --capture_bytes=1073741824 --capture_rounds=5 \
#       --idle_seconds=5
#
# Prints the rows of supervisord_bench.py and pm2_bench.js on stdout
# (tab-separated: see those files), progress on stderr. Installs what is
# missing: Debian's supervisor (and node, npm) with apt-get, needing root;
# the pm2 that package-lock.json pins with `npm ci` into the temp dir.
#
# Cleans up by PID, however it ends: each bench script stops the daemon it
# started, then sweep.py kills any process still carrying this run's marker
# in its environment; the temp dir goes last. Exits 1 if a peer failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

dir=$(mktemp -d /tmp/pm_bench_peers.XXXXXX)
# Only the peers' processes get the marker, not this shell or its helpers.
marker="PM_BENCH_PEERS=$dir"
sweep() { /usr/bin/python3 "$here/sweep.py" "$marker" || true; }
cleanup() {
  sweep
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The Debian packages given that are not installed yet.
install_debs() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "peers: installing Debian packages: ${missing[*]}" >&2
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "peers: need root to install ${missing[*]}" >&2; return 1; }
    sudo=(sudo)
  fi
  # The package may start a system supervisord; the bench never uses it.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

failed=0

run_supervisord() {
  install_debs supervisor || return 1
  env "$marker" /usr/bin/python3 "$here/supervisord_bench.py" --dir="$dir/supervisord" "$@"
}

run_pm2() {
  install_debs nodejs || return 1
  # Some nodejs packages bring npm, Debian's needs its own package.
  command -v npm >/dev/null || install_debs npm || return 1
  local work="$dir/pm2"
  mkdir -p "$work"
  cp "$here/package.json" "$here/package-lock.json" "$here/pm2_bench.js" "$work/"
  echo "peers: npm ci (pm2, as package-lock.json pins it)" >&2
  (cd "$work" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || return 1
  env "$marker" /usr/bin/node "$work/pm2_bench.js" --dir="$work/run" "$@"
}

for peer in supervisord pm2; do
  if ! "run_$peer" "$@"; then
    echo "peers: $peer failed" >&2
    failed=1
  fi
  sweep  # nothing of one peer may run during the next one
done
exit "$failed"
