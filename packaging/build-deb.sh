#!/bin/sh
# Builds the Debian package with Debian's own tools: copies the source tree into
# OUTDIR/ssepush-VERSION, puts packaging/debian at its top (dpkg-buildpackage wants
# debian/ there) with debian/control generated from packaging/deps.list (through
# install-deps.sh --field, the list make deps installs from), and runs
# dpkg-buildpackage -b. Leaves OUTDIR/ssepush_VERSION_ARCH.deb (and the .buildinfo,
# .changes and -dbgsym package beside it).
# Usage: packaging/build-deb.sh OUTDIR   (from the top of the tree; make deb runs it)
set -eu
out=${1:?usage: packaging/build-deb.sh OUTDIR}
top=$(pwd)
[ -f packaging/debian/changelog ] || { echo "run from the top of the ssepush tree" >&2; exit 2; }
case $out in "" | / | .) echo "build-deb.sh: refusing OUTDIR '$out'" >&2; exit 2 ;; esac
version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
src=$out/ssepush-$version
mkdir "$src"
# The tree as a release tarball would hold it: no build output, no node_modules.
tar -cf - --exclude=node_modules Makefile README.md broker common include man packaging pusher tests | tar -xf - -C "$src"
cp -R packaging/debian "$src/debian"
rm "$src/debian/control.in"
sed -e "s/@BUILD_DEPENDS@/$(packaging/install-deps.sh --field Build-Depends)/" \
	-e "s/@SUGGESTS@/$(packaging/install-deps.sh --field Suggests)/" \
	packaging/debian/control.in >"$src/debian/control"

# A make that runs this must not hand its own variables (BUILD, SANITIZER, WERROR) on
# to the package's build: that one builds with dpkg-buildflags only.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES || true
cd "$src"
jobs=$(nproc 2>/dev/null || echo 1)
if ! dpkg-buildpackage -us -uc -b -j"$jobs" >"$out/build.log" 2>&1; then
	tail -40 "$top/$out/build.log"
	echo "dpkg-buildpackage failed; the whole log is in $out/build.log" >&2
	exit 1
fi
cd "$top"
ls "$out"/ssepush_"$version"_*.deb
