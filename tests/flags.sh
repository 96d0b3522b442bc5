#!/bin/sh
# The project's flags are appended to the user's, never replaced by them: a real
# `make CFLAGS=-O0 CPPFLAGS=... LDFLAGS=... WERROR=1 V=1` in a private build directory
# must show, on every compile line, the user's flags first and then -std=c11,
# -D_GNU_SOURCE, -pthread, every warning flag, -Werror and the include paths; on every
# link line the user's LDFLAGS. One of those compile lines, run on a file with a
# warning, must fail (the warnings are in force). A dry run checks that SANITIZER=address
# keeps its flags next to a user's CFLAGS and LDFLAGS.
# Usage: tests/flags.sh (from the top of the tree)
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The make that runs this test must not hand its own variables (SANITIZER, BUILD, ...) on.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES || true
want="-std=c11 -D_GNU_SOURCE -pthread -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes
	-Wmissing-prototypes -Wpointer-arith -Wwrite-strings -Wundef -Werror -Iinclude -Ibroker -Ipusher"
rc=0

if ! make -j2 BUILD="$tmp/b" CFLAGS="-O0 -g0" CPPFLAGS=-DSSEPUSH_USER_CPPFLAG LDFLAGS=-Wl,-O1 \
	WERROR=1 V=1 all >"$tmp/log" 2>&1; then
	echo "FAIL: make CFLAGS=-O0 WERROR=1 does not build:"
	tail -30 "$tmp/log"
	exit 1
fi
grep -E '^(cc|gcc|clang|\S*-gcc) .* -c ' "$tmp/log" >"$tmp/cc" || true
grep -E '^(cc|gcc|clang|\S*-gcc) ' "$tmp/log" | grep -v ' -c ' >"$tmp/ld" || true
ncc=$(wc -l <"$tmp/cc")
nld=$(wc -l <"$tmp/ld")
if [ "$ncc" -lt 20 ] || [ "$nld" -lt 2 ]; then
	echo "FAIL: V=1 showed $ncc compile and $nld link lines; expected the full command lines"
	head -20 "$tmp/log"
	exit 1
fi
while IFS= read -r line; do
	for f in -O0 -DSSEPUSH_USER_CPPFLAG $want; do
		case " $line " in *" $f "*) ;; *) echo "FAIL: $f missing from: $line"; rc=1 ;; esac
	done
	# The user's flags come first: -O0 before the project's -std=c11.
	case "$line" in *" -O0 "*"-std=c11"*) ;; *) echo "FAIL: the user's -O0 is not before -std=c11: $line"; rc=1 ;; esac
done <"$tmp/cc"
while IFS= read -r line; do
	case " $line " in *" -Wl,-O1 "*) ;; *) echo "FAIL: the user's LDFLAGS missing from: $line"; rc=1 ;; esac
done <"$tmp/ld"
[ $rc = 0 ] && echo "ok: $ncc compile lines and $nld link lines carry the user's flags and all of the project's"

# The same flags, on a file with an unused variable and no prototype: it must not compile.
printf 'int ssepush_flags_probe(void) { int unused; return 0; }\n' >"$tmp/probe.c"
line=$(sed -n 1p "$tmp/cc" | sed "s| -c [^ ]* -o [^ ]*| -c $tmp/probe.c -o $tmp/probe.o|")
if sh -c "$line" >"$tmp/probe.log" 2>&1; then
	echo "FAIL: a file with warnings compiled with the project's flags: $line"
	rc=1
elif ! grep -q 'error: unused variable' "$tmp/probe.log"; then
	echo "FAIL: the probe failed, but not on its warning:"
	cat "$tmp/probe.log"
	rc=1
else
	echo "ok: with WERROR=1 a warning fails the compile"
fi

# SANITIZER=address beside a user's CFLAGS/LDFLAGS (dry run: nothing is built).
make -n BUILD="$tmp/asan" SANITIZER=address CFLAGS=-O1 LDFLAGS=-Wl,-O1 V=1 "$tmp/asan/ssepush-pusher" >"$tmp/asan.log" 2>&1 || true
if ! grep -q -- '-O1 .*-fsanitize=address,undefined.* -c ' "$tmp/asan.log" ||
	! grep -v ' -c ' "$tmp/asan.log" | grep -q -- '-Wl,-O1 -fsanitize=address,undefined'; then
	echo "FAIL: SANITIZER=address lost its flags next to the user's CFLAGS/LDFLAGS:"
	grep -E '^(cc|gcc) ' "$tmp/asan.log" | head -3
	rc=1
else
	echo "ok: SANITIZER=address keeps -fsanitize next to the user's CFLAGS and LDFLAGS"
fi
exit $rc
