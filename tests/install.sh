#!/bin/sh
# make install and make uninstall into private DESTDIRs (no root needed): the layout
# under PREFIX and SYSCONFDIR, the units and the Cyrus example rewritten to the
# installed paths, the installed binaries accepting the installed configs; an edited
# config kept by a second install (the new one beside it as .dist, an unedited one
# left alone); uninstall removing everything but the edited config, then that too
# once it is the shipped one again.
# Usage: tests/install.sh [BUILD]   (from the top of the tree; runs make BUILD=BUILD)
set -eu
build=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
m() { make --no-print-directory BUILD="$build" "$@" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; fail "make $*"; }; }

# Default prefix /usr/local, configs in /etc/ssepush.
d=$tmp/root
m install DESTDIR="$d"
for f in usr/local/sbin/ssepush-broker usr/local/sbin/ssepush-pusher etc/ssepush/ssepush-broker.conf \
	etc/ssepush/ssepush-pusher.conf usr/local/lib/systemd/system/ssepush-broker.service \
	usr/local/lib/systemd/system/ssepush-pusher.service usr/local/share/ssepush/ssepush.js \
	usr/local/share/ssepush/ssepush.mjs usr/local/share/ssepush/demo.html \
	usr/local/share/man/man8/ssepush-broker.8 usr/local/share/man/man8/ssepush-pusher.8 \
	usr/local/share/man/man5/ssepush-broker.conf.5 usr/local/share/man/man5/ssepush-pusher.conf.5 \
	usr/local/share/doc/ssepush/README.md usr/local/share/doc/ssepush/examples/nginx/auth_request.conf \
	usr/local/share/doc/ssepush/examples/cyrus/cyrus.conf usr/local/share/doc/ssepush/examples/cyrus/imapd.conf; do
	[ -f "$d/$f" ] || fail "make install did not install /$f"
done
[ -x "$d/usr/local/sbin/ssepush-broker" ] || fail "the broker is not executable"
u=$d/usr/local/lib/systemd/system/ssepush-broker.service
grep -qx 'ExecStart=/usr/local/sbin/ssepush-broker -f /etc/ssepush/ssepush-broker.conf' "$u" ||
	fail "the broker unit does not start /usr/local/sbin/ssepush-broker: $(grep ^ExecStart= "$u")"
grep -q 'cmd="/usr/local/sbin/ssepush-pusher -f /etc/ssepush/ssepush-pusher.conf' \
	"$d/usr/local/share/doc/ssepush/examples/cyrus/cyrus.conf" || fail "the Cyrus example does not name the installed pusher"
for b in broker pusher; do
	out=$("$d/usr/local/sbin/ssepush-$b" -n -f "$d/etc/ssepush/ssepush-$b.conf") || fail "installed $b -n: $out"
done
echo "ok: make install: binaries in PREFIX/sbin, configs in /etc/ssepush, units with the installed paths, man pages, docs"

# PREFIX and SYSCONFDIR elsewhere.
d2=$tmp/opt
m install DESTDIR="$d2" PREFIX=/opt/ssepush SYSCONFDIR=/etc/opt/ssepush
[ -f "$d2/etc/opt/ssepush/ssepush/ssepush-pusher.conf" ] || fail "SYSCONFDIR is not honoured"
grep -qx 'ExecStart=/opt/ssepush/sbin/ssepush-pusher -f /etc/opt/ssepush/ssepush/ssepush-pusher.conf --notify_socket_group mail' \
	"$d2/opt/ssepush/lib/systemd/system/ssepush-pusher.service" || fail "the pusher unit does not use PREFIX and SYSCONFDIR"
[ -z "$(find "$d2" -path "$d2/etc" -prune -o -path "$d2/opt" -prune -o -print | grep -v "^$d2\$")" ] ||
	fail "PREFIX=/opt/ssepush installed outside /opt and /etc: $(find "$d2" -mindepth 1 -maxdepth 1)"
echo "ok: make install PREFIX=/opt/ssepush SYSCONFDIR=/etc/opt/ssepush"

# An edited config survives a second install; the new one goes beside it as .dist.
conf=$d/etc/ssepush/ssepush-broker.conf
sed -i 's/^ping_interval 300$/ping_interval 120/' "$conf"
m install DESTDIR="$d"
grep -qx 'ping_interval 120' "$conf" || fail "make install overwrote an edited config"
cmp -s packaging/ssepush-broker.conf "$conf.dist" || fail "no $conf.dist with the shipped config"
grep -q "ssepush-broker.conf: kept" "$tmp/make.log" || fail "make install did not say it kept the edited config"
[ ! -e "$d/etc/ssepush/ssepush-pusher.conf.dist" ] || fail "a .dist beside an unedited config"
echo "ok: make install keeps an edited config and puts the new one beside it as .dist"

# Uninstall: everything goes but the edited config; then that too once it is restored.
m uninstall DESTDIR="$d"
left=$(find "$d" -type f -o -type l)
[ "$left" = "$conf" ] || fail "make uninstall left: $left"
grep -q "ssepush-broker.conf: kept" "$tmp/make.log" || fail "make uninstall did not say it kept the edited config"
cp packaging/ssepush-broker.conf "$conf"
m uninstall DESTDIR="$d"
[ -z "$(find "$d" -type f -o -type l)" ] || fail "make uninstall left: $(find "$d" -type f)"
[ ! -e "$d/etc/ssepush" ] && [ ! -e "$d/usr/local/share/ssepush" ] && [ ! -e "$d/usr/local/share/doc/ssepush" ] ||
	fail "make uninstall left the project's directories"
echo "ok: make uninstall removes everything, keeping an edited config until it is the shipped one again"
