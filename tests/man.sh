#!/bin/sh
# Checks the man pages against the binaries: ssepush-broker.conf(5) and
# ssepush-pusher.conf(5) list exactly the directives "-h" lists, in its order; the
# daemon pages (8) name every flag of the "-h" usage; every page renders without a
# warning (man --warnings, and groff -ww) and has a NAME line whatis can read.
# Usage: tests/man.sh MANDIR [broker-binary [pusher-binary]]
#   MANDIR holds the pages as built (build/man/NAME) or installed (MANDIR/manN/NAME.gz).
set -eu
mandir=${1:-build/man}
broker=${2:-build/ssepush-broker}
pusher=${3:-$(dirname "$broker")/ssepush-pusher}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rc=0

# The page NAME (e.g. ssepush-broker.8) as plain roff in $tmp/NAME.
page() {
	sect=${1##*.}
	for f in "$mandir/$1" "$mandir/$1.gz" "$mandir/man$sect/$1" "$mandir/man$sect/$1.gz"; do
		[ -f "$f" ] || continue
		case $f in *.gz) gzip -dc "$f" >"$tmp/$1" ;; *) cp "$f" "$tmp/$1" ;; esac
		echo "$f"
		return 0
	done
	echo "FAIL: man page $1 not found in $mandir" >&2
	return 1
}

# Directive names of a .conf(5) page: the .B line after each .TP in section DIRECTIVES.
man_directives() {
	awk '/^\.SH / { in_d = ($2 == "DIRECTIVES") } in_d && prev == ".TP" && /^\.B / { print $2 } { prev = $0 }' "$1" |
		sed 's/\\-/-/g'
}

check_directives() {
	bin=$1 name=$2
	page "$name" >/dev/null || return 1
	"$bin" -h | sed -n 's/^\([a-z_][a-z_]*\) .*/\1/p' >"$tmp/want"
	man_directives "$tmp/$name" >"$tmp/have"
	if ! cmp -s "$tmp/want" "$tmp/have"; then
		echo "FAIL: $name does not list exactly the directives of $bin -h (want < > have):"
		diff "$tmp/want" "$tmp/have" || true
		return 1
	fi
	echo "ok: $name lists the $(wc -l <"$tmp/want") directives of $(basename "$bin") -h, in order"
}

check_flags() {
	bin=$1 name=$2
	page "$name" >/dev/null || return 1
	missing=""
	for fl in $("$bin" -h | sed -n 's/^  \(--*[a-zA-Z][a-z-]*\).*/\1/p'); do
		esc=$(printf '%s' "$fl" | sed 's/-/\\\\-/g')
		grep -q -- "$esc" "$tmp/$name" || missing="$missing $fl"
	done
	if [ -n "$missing" ]; then
		echo "FAIL: $name does not describe the flags$missing of $bin -h"
		return 1
	fi
	echo "ok: $name describes every flag of $(basename "$bin") -h"
}

check_render() {
	f=$(page "$1") || return 1
	out=$(LC_ALL=C.UTF-8 man --warnings -E UTF-8 -l -Tutf8 -Z "$f" 2>&1 >/dev/null)
	out=$out$(groff -ww -z -man "$tmp/$1" 2>&1)
	if [ -n "$out" ]; then
		echo "FAIL: $1 renders with warnings:"
		echo "$out"
		return 1
	fi
	whatis=$(lexgrog "$f" 2>&1) || { echo "FAIL: $1: lexgrog: $whatis"; return 1; }
	echo "ok: $1 renders without warnings ($whatis)"
}

for b in broker pusher; do
	bin=$broker
	[ $b = pusher ] && bin=$pusher
	check_directives "$bin" "ssepush-$b.conf.5" || rc=1
	check_flags "$bin" "ssepush-$b.8" || rc=1
	check_render "ssepush-$b.8" || rc=1
	check_render "ssepush-$b.conf.5" || rc=1
done
exit $rc
