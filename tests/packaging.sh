#!/bin/sh
# Checks that each shipped config parses and lists exactly its daemon's directives
# with their defaults (each is generated from the same table as "<daemon> -h").
# Usage: tests/packaging.sh [broker-binary [pusher-binary]]
set -eu
broker=${1:-build/ssepush-broker}
pusher=${2:-$(dirname "$broker")/ssepush-pusher}

check() {
	bin=$1 conf=$2
	out=$("$bin" -n -f "$conf")
	[ "$out" = "configuration OK" ] || { echo "FAIL: $conf does not parse: $out"; return 1; }
	want=$("$bin" -h | grep -E '^[a-z_]+ ')
	have=$(grep -E '^[a-z_]+ ' "$conf")
	if [ "$want" != "$have" ]; then
		echo "FAIL: $conf is out of date with the directive table; regenerate it:"
		printf '%s\n' "$want" > /tmp/want.$$; printf '%s\n' "$have" | diff /tmp/want.$$ - || true
		rm -f /tmp/want.$$
		return 1
	fi
	echo "ok: $conf matches the directive table"
}

rc=0
check "$broker" packaging/ssepush-broker.conf || rc=1
check "$pusher" packaging/ssepush-pusher.conf || rc=1
exit $rc
