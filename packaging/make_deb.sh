#!/bin/bash
# Builds pm's Debian package with dpkg-deb (no network, no debhelper): the
# tree install.sh makes for /usr, its ELF files stripped, the package's
# documentation, and a control file whose Depends dpkg-shlibdeps computes
# from the binaries (README, "Running pm as a system service").
#
#   packaging/make_deb.sh OUTPUT_DIR VERSION \
#       PM PM_USERS REGISTRY LOG_STORE SUPERVISOR GATEWAY PM_SHIM README
#
# Prints the path of the .deb. `make deb` runs it with the binaries Bazel
# built (opt); the packaging test checks what it makes with lintian.
set -euo pipefail
if [ "$#" -ne 10 ]; then
  echo "usage: $0 OUTPUT_DIR VERSION PM PM_USERS REGISTRY LOG_STORE SUPERVISOR GATEWAY PM_SHIM README" >&2
  exit 2
fi
out=$1 version=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
arch=$(dpkg --print-architecture)
work=$(mktemp -d "${TMPDIR:-/tmp}/pm-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/pm_${version}_$arch
mkdir -m 0755 "$stage"
RUNTIMEDIR=/run/pm STATEDIR=/var/lib/pm \
  bash "$here/install.sh" "$stage" /usr /etc/pm /lib/systemd/system "$@" >/dev/null

# The binaries as Debian ships them: stripped of their debug symbols.
elves=()
for file in "$stage"/usr/bin/* "$stage"/usr/libexec/pm/*; do
  chmod u+w "$file"
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$file"
  elves+=("$file")
done

doc=$stage/usr/share/doc/pm
gzip -9n "$doc/README.md"
# Debian compresses documentation (policy 12.3): the units' Documentation=
# names the file the package holds.
sed -i 's|^Documentation=file:///usr/share/doc/pm/README\.md$|&.gz|' \
    "$stage"/lib/systemd/system/*
install -m 0644 "$here/debian/copyright" "$doc/copyright"
# A native package (no Debian revision): changelog.gz.
gzip -9nc "$here/debian/changelog" > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
install -d -m 0755 "$stage/usr/share/lintian/overrides"
install -m 0644 "$here/debian/lintian-overrides" "$stage/usr/share/lintian/overrides/pm"

# Depends: what the binaries link against, as dpkg-shlibdeps reads it.
mkdir "$work/debian"
printf 'Source: pm\n\nPackage: pm\nArchitecture: any\n' > "$work/debian/control"
depends=$(cd "$work" && dpkg-shlibdeps -O -e"${elves[0]}" "${elves[@]/#/-e}" 2>/dev/null |
          sed -n 's/^shlibs:Depends=//p')
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)

install -d -m 0755 "$stage/DEBIAN"
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@DEPENDS@|$depends|" \
    -e "s|@INSTALLED_SIZE@|$installed_size|" "$here/debian/control" > "$stage/DEBIAN/control"
(cd "$stage" && find etc -type f | sed 's|^|/|' | sort) > "$stage/DEBIAN/conffiles"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"
(cd "$stage" && find usr lib etc -type f -print0 | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/pm_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
