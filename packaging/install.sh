#!/bin/bash
# Installs pm: the binaries, the systemd units, the default flag files and
# the bash completion, under DESTDIR with the paths of PREFIX written into
# the units and flag files (README, "Running pm as a system service").
#
#   packaging/install.sh DESTDIR PREFIX SYSCONFDIR UNITDIR \
#       PM PM_USERS REGISTRY LOG_STORE SUPERVISOR GATEWAY PM_SHIM README
#
# `make install` calls it with the binaries Bazel built; the packaging test
# with a scratch root. RUNTIMEDIR and STATEDIR (/run/pm, /var/lib/pm, as the
# units' RuntimeDirectory= and StateDirectory= make them) can be changed
# through the environment.
set -euo pipefail
if [ "$#" -ne 12 ]; then
  echo "usage: $0 DESTDIR PREFIX SYSCONFDIR UNITDIR PM PM_USERS REGISTRY LOG_STORE SUPERVISOR GATEWAY PM_SHIM README" >&2
  exit 2
fi
destdir=$1 prefix=$2 sysconfdir=$3 unitdir=$4
pm=$5 pm_users=$6 registry=$7 log_store=$8 supervisor=$9 gateway=${10} shim=${11} readme=${12}
here=$(cd "$(dirname "$0")" && pwd)
libexecdir=$prefix/libexec/pm
docdir=$prefix/share/doc/pm
runtimedir=${RUNTIMEDIR:-/run/pm}
statedir=${STATEDIR:-/var/lib/pm}

# Writes template $1 to $2 (mode $3) with the install's paths in it.
subst() {
  sed -e "s|@LIBEXECDIR@|$libexecdir|g" -e "s|@SYSCONFDIR@|$sysconfdir|g" \
      -e "s|@DOCDIR@|$docdir|g" -e "s|@RUNTIMEDIR@|$runtimedir|g" \
      -e "s|@STATEDIR@|$statedir|g" "$1" > "$2.tmp"
  chmod "$3" "$2.tmp"
  mv "$2.tmp" "$2"
}

install -d -m 0755 "$destdir$prefix/bin" "$destdir$libexecdir" "$destdir$unitdir" \
    "$destdir$docdir" "$destdir$prefix/share/bash-completion/completions"
install -d -m 0755 "$destdir$sysconfdir"
install -m 0755 "$pm" "$destdir$prefix/bin/pm"
install -m 0755 "$pm_users" "$destdir$prefix/bin/pm_users"
install -m 0755 "$registry" "$destdir$libexecdir/registry"
install -m 0755 "$log_store" "$destdir$libexecdir/log_store"
install -m 0755 "$supervisor" "$destdir$libexecdir/supervisor"
install -m 0755 "$gateway" "$destdir$libexecdir/gateway"
install -m 0755 "$shim" "$destdir$libexecdir/pm-shim"
install -m 0644 "$readme" "$destdir$docdir/README.md"
for unit in "$here"/systemd/*; do
  subst "$unit" "$destdir$unitdir/$(basename "$unit")" 0644
done
# A configuration the administrator has changed stays as it is.
for flags in "$here"/etc/*.flags; do
  target=$destdir$sysconfdir/$(basename "$flags")
  [ -e "$target" ] || subst "$flags" "$target" 0644
done
"$pm" completion bash > "$destdir$prefix/share/bash-completion/completions/pm"
