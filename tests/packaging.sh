#!/bin/sh
# Checks that the shipped config parses and lists exactly the broker's directives
# with their defaults (it is generated from the same table as "ssepush-broker -h").
set -eu
broker=${1:-build/ssepush-broker}
conf=packaging/ssepush-broker.conf
out=$("$broker" -n -f "$conf")
[ "$out" = "configuration OK" ] || { echo "FAIL: $conf does not parse: $out"; exit 1; }
want=$("$broker" -h | grep -E '^[a-z_]+ ')
have=$(grep -E '^[a-z_]+ ' "$conf")
if [ "$want" != "$have" ]; then
	echo "FAIL: $conf is out of date with the directive table; regenerate it:"
	printf '%s\n' "$want" > /tmp/want.$$; printf '%s\n' "$have" | diff /tmp/want.$$ - || true
	rm -f /tmp/want.$$
	exit 1
fi
echo "ok: $conf matches the directive table"
