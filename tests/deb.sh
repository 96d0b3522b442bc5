#!/bin/sh
# The Debian package end to end. Needs root (it installs and purges the package
# "ssepush"); without root it says so and skips. Steps: build the .deb with
# packaging/build-deb.sh (dpkg-buildpackage), lintian (no error, no warning), check
# debian/control against packaging/deps.list, apt-get install ./the.deb, the man pages
# against the installed binaries, systemd-analyze verify of the installed units, the
# units' ExecStartPre (-n) lines, the broker started with its unit's ExecStart line (as
# an unprivileged user, on a free port) with a subscribe and a publish through curl, the
# installed pusher's /metrics and /healthz, an edited conffile kept across a reinstall
# and an upgrade that changes it, and a purge that leaves nothing behind.
# Usage: tests/deb.sh (from the top of the tree)
set -eu
if [ "$(id -u)" != 0 ]; then
	echo "skip: tests/deb.sh needs root (it installs and purges the ssepush package)"
	exit 0
fi
if dpkg-query -W -f='${db:Status-Abbrev}' ssepush 2>/dev/null | grep -q '^[a-z][a-z]'; then
	echo "FAIL: dpkg already knows a package ssepush ($(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' ssepush));"
	echo "      this test installs and purges its own: run dpkg --purge ssepush first"
	exit 1
fi
top=$(pwd)
tmp=$(mktemp -d)
chmod 755 "$tmp"	# apt's _apt user reads the .deb from here
pids=""
installed=0
export DEBIAN_FRONTEND=noninteractive

cleanup() {
	for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
	[ $installed = 1 ] && dpkg --purge ssepush >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

# Polls until the command succeeds, at most $1 seconds (a readiness wait, not a sleep).
wait_for() {
	limit=$1; shift
	end=$(($(date +%s) + limit))
	until "$@" 2>/dev/null; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.05
	done
}

# Everything the package could leave behind, before and after it lived here.
snapshot() {
	find /etc /usr /var/lib /opt /srv -xdev 2>/dev/null | grep -Ev '^/var/lib/(apt|dpkg|ucf)(/|$)' | sort
}

# The value of one Key= of a unit file, with ExecStart*'s leading modifiers.
unit_key() {
	sed -n "s/^$2=//p" "$1" | head -1
}

# --- build, lintian, control ---------------------------------------------------
snapshot >"$tmp/before"
packaging/build-deb.sh "$tmp/deb" >/dev/null || fail "packaging/build-deb.sh"
deb=$(ls "$tmp"/deb/ssepush_*_*.deb)
ok "built $(basename "$deb")"

lintian -I -E --pedantic --fail-on error,warning "$tmp"/deb/ssepush_*.changes >"$tmp/lintian" 2>&1 ||
	{ cat "$tmp/lintian"; fail "lintian found errors or warnings"; }
grep -v '^running with root privileges' "$tmp/lintian" | sed 's/^/  lintian: /' || true
ok "lintian: no error, no warning ($(grep -c '^[IPX]:' "$tmp/lintian" || true) info/pedantic tags above)"

src=$(ls -d "$tmp"/deb/ssepush-*/)
bd=$(sed -n 's/^Build-Depends: //p' "$src/debian/control")
[ "$bd" = "$(packaging/install-deps.sh --field Build-Depends)" ] ||
	fail "debian/control Build-Depends ($bd) differs from packaging/deps.list"
sg=$(dpkg-deb -f "$deb" Suggests)
[ "$sg" = "$(packaging/install-deps.sh --field Suggests)" ] || fail "Suggests ($sg) differs from packaging/deps.list"
for p in $(packaging/install-deps.sh --list build); do
	case $p in gcc | make | pkgconf) continue ;; esac
	case " $bd," in *" $p,"* | *" $p <"*) ;; *) fail "build package $p of deps.list is not in Build-Depends" ;; esac
done
(cd "$src" && dpkg-checkbuilddeps) || fail "dpkg-checkbuilddeps: packaging/install-deps.sh deb does not install the Build-Depends"
# Depends (from dh_shlibdeps) names the library package behind each -dev of the build list.
dep=$(dpkg-deb -f "$deb" Depends)
for dev in $(packaging/install-deps.sh --list build | grep -- '-dev$'); do
	lib=$(dpkg-query -W -f='${Depends}' "$dev" | tr ',' '\n' | sed -n 's/^ *\(lib[^ (|]*\).*/\1/p' | grep -v -- '-dev$' | head -1)
	case "$dep" in *"$lib "* | *"$lib,"* | *"$lib") ;; *) fail "Depends ($dep) lacks $lib, the library of $dev" ;; esac
done
ok "debian/control agrees with packaging/deps.list (Build-Depends, Suggests, the libraries in Depends)"

# --- install ------------------------------------------------------------------
installed=1
apt-get install -y -qq "$deb" >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log"; fail "apt-get install ./$(basename "$deb")"; }
[ "$(dpkg-query -W -f='${Version}' ssepush)" = "$(dpkg-deb -f "$deb" Version)" ] || fail "not installed"
version=$(/usr/sbin/ssepush-broker -V | awk '{ print $2 }')
[ "$version" = "$(dpkg-deb -f "$deb" Version)" ] || fail "package version $(dpkg-deb -f "$deb" Version) is not the broker's $version"
[ "$(/usr/sbin/ssepush-pusher -V | awk '{ print $2 }')" = "$version" ] || fail "the pusher's version is not $version"
for f in /usr/sbin/ssepush-broker /usr/sbin/ssepush-pusher /etc/ssepush/ssepush-broker.conf \
	/etc/ssepush/ssepush-pusher.conf /lib/systemd/system/ssepush-broker.service \
	/lib/systemd/system/ssepush-pusher.service /usr/share/ssepush/ssepush.js /usr/share/ssepush/ssepush.mjs \
	/usr/share/ssepush/demo.html /usr/share/doc/ssepush/copyright /usr/share/doc/ssepush/examples/nginx/auth_request.conf \
	/usr/share/doc/ssepush/examples/nginx/x_accel_redirect.conf /usr/share/doc/ssepush/examples/cyrus/cyrus.conf \
	/usr/share/doc/ssepush/examples/cyrus/imapd.conf; do
	[ -f "$f" ] || fail "$f is not installed"
done
cmp -s /etc/ssepush/ssepush-broker.conf packaging/ssepush-broker.conf || fail "the installed broker config is not the shipped one"
conffiles=$(dpkg-query -W -f='${Conffiles}' ssepush | awk '{ print $1 }' | sort | tr '\n' ' ')
[ "$conffiles" = "/etc/ssepush/ssepush-broker.conf /etc/ssepush/ssepush-pusher.conf " ] || fail "conffiles are: $conffiles"
grep -q '/usr/sbin/ssepush-pusher ' /usr/share/doc/ssepush/examples/cyrus/cyrus.conf || fail "the Cyrus example does not name /usr/sbin/ssepush-pusher"
ok "apt-get install: binaries in /usr/sbin, both configs conffiles, units, ssepush.js and examples in place"

tests/man.sh /usr/share/man /usr/sbin/ssepush-broker /usr/sbin/ssepush-pusher >"$tmp/man" 2>&1 ||
	{ cat "$tmp/man"; fail "tests/man.sh on the installed pages"; }
sed 's/^/  /' "$tmp/man"
[ "$(man -w ssepush-broker.conf)" = /usr/share/man/man5/ssepush-broker.conf.5.gz ] || fail "man -w ssepush-broker.conf"
ok "installed man pages: man finds them, and they match the installed binaries"

out=$(systemd-analyze verify /lib/systemd/system/ssepush-broker.service /lib/systemd/system/ssepush-pusher.service 2>&1) ||
	fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warned: $out"
[ -L /etc/systemd/system/multi-user.target.wants/ssepush-broker.service ] || fail "the broker unit is not enabled"
[ ! -e /etc/systemd/system/multi-user.target.wants/ssepush-pusher.service ] || fail "the pusher unit is enabled"
ok "systemd-analyze verify: both installed units clean; the broker enabled, the pusher not"

# --- the installed binaries with the installed configs, as the units run them ---
# DynamicUser: an unprivileged user and group (nobody:nogroup; the pusher also in mail).
asuser="setpriv --reuid=65534 --regid=65534 --clear-groups --"
for u in broker pusher; do
	pre=$(unit_key /lib/systemd/system/ssepush-$u.service ExecStartPre)
	out=$($asuser $pre 2>&1) || fail "ExecStartPre of ssepush-$u.service: $out"
	[ "$out" = "configuration OK" ] || fail "ExecStartPre of ssepush-$u.service printed: $out"
	start=$(unit_key /lib/systemd/system/ssepush-$u.service ExecStart)
	out=$($asuser $start -n 2>&1) || fail "ExecStart -n of ssepush-$u.service: $out"
done
ok "the units' ExecStartPre and ExecStart (with -n) accept the installed configs"

start=$(unit_key /lib/systemd/system/ssepush-broker.service ExecStart)
$asuser $start --listen 127.0.0.1:0 >"$tmp/broker.log" 2>&1 &
bpid=$!
pids="$pids $bpid"
wait_for 10 grep -q 'ready: listening on' "$tmp/broker.log" || { cat "$tmp/broker.log"; fail "the broker did not get ready"; }
port=$(sed -n 's/.*ready: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/broker.log")
url=http://127.0.0.1:$port
curl -sN --max-time 20 "$url/events/alice@example.com" >"$tmp/stream" &
cpid=$!
pids="$pids $cpid"
wait_for 10 grep -q '^retry:' "$tmp/stream" || fail "no stream preamble from $url/events/alice@example.com"
ans=$(curl -s -d '{"folder":"INBOX"}' "$url/publish/alice@example.com?event=change")
case $ans in *'"subscribers":1}') ;; *) fail "publish answered: $ans" ;; esac
wait_for 10 grep -q '^data: {"folder":"INBOX"}' "$tmp/stream" || { cat "$tmp/stream"; fail "the event did not arrive"; }
grep -q '^event: change' "$tmp/stream" || fail "the event has no type change"
kill "$cpid" 2>/dev/null || true
curl -s "$url/ssepush.js" | cmp -s - /usr/share/ssepush/ssepush.js || fail "/usr/share/ssepush/ssepush.js is not what the broker serves"
curl -s "$url/metrics" | promtool check metrics >"$tmp/promtool" 2>&1 || { cat "$tmp/promtool"; fail "promtool: the installed broker's /metrics"; }
kill -TERM "$bpid"
wait "$bpid" || fail "the broker exited $? after SIGTERM: $(cat "$tmp/broker.log")"
grep -q terminating "$tmp/broker.log" || fail "no terminating line"
ok "the broker from its unit's ExecStart line (as nobody, port $port): subscribe, publish, event received, clean stop"

# The pusher as its unit runs it (group mail), on a private socket, with no Redis there.
mkdir "$tmp/run" && chown 65534:65534 "$tmp/run"
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start=$(unit_key /lib/systemd/system/ssepush-pusher.service ExecStart)
setpriv --reuid=65534 --regid=65534 --groups=mail -- $start --notify_socket "$tmp/run/notify" \
	--redis "redis://127.0.0.1:$rport" --metrics_listen 127.0.0.1:0 >"$tmp/pusher.log" 2>&1 &
ppid=$!
pids="$pids $ppid"
wait_for 10 grep -q 'ready: listening on' "$tmp/pusher.log" || { cat "$tmp/pusher.log"; fail "the pusher did not get ready"; }
[ "$(stat -c %G "$tmp/run/notify")" = mail ] || fail "the notify socket is not in group mail"
mport=$(sed -n 's/.*metrics: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/pusher.log")
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mport/healthz")" = 503 ] || fail "pusher /healthz is not 503 without Redis"
python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"mailpush\0MAIL\0\0alice\0INBOX\x000\0Subject: hi\n\0", sys.argv[1])' "$tmp/run/notify"
wait_for 10 sh -c "curl -s http://127.0.0.1:$mport/metrics | grep -qx 'ssepush_pusher_datagrams_total 1'" || fail "the datagram is not counted"
curl -s "http://127.0.0.1:$mport/metrics" | promtool check metrics >"$tmp/promtool" 2>&1 || { cat "$tmp/promtool"; fail "promtool: the installed pusher's /metrics"; }
kill -TERM "$ppid"
wait "$ppid" || fail "the pusher exited $? after SIGTERM: $(cat "$tmp/pusher.log")"
ok "the pusher from its unit's ExecStart line (as nobody in group mail): datagram counted, /healthz 503 without Redis, promtool clean"

# --- an edited conffile survives a reinstall and an upgrade that changes it --------
sed -i 's/^ping_interval 300$/ping_interval 120/' /etc/ssepush/ssepush-broker.conf
grep -qx 'ping_interval 120' /etc/ssepush/ssepush-broker.conf || fail "could not edit the conffile"
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i (reinstall)"; }
grep -qx 'ping_interval 120' /etc/ssepush/ssepush-broker.conf || fail "a reinstall lost the edit of the conffile"
# A later version whose shipped broker config changed: dpkg keeps the operator's file.
dpkg-deb -R "$deb" "$tmp/next"
sed -i "s/^Version: .*/Version: $version+test1/" "$tmp/next/DEBIAN/control"
echo '# a line the next version adds' >>"$tmp/next/etc/ssepush/ssepush-broker.conf"
dpkg-deb -b "$tmp/next" "$tmp/next.deb" >/dev/null
dpkg -i --force-confdef --force-confold "$tmp/next.deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i (upgrade)"; }
[ "$(dpkg-query -W -f='${Version}' ssepush)" = "$version+test1" ] || fail "the upgrade did not install"
grep -qx 'ping_interval 120' /etc/ssepush/ssepush-broker.conf || fail "the upgrade lost the edit of the conffile"
grep -q 'a line the next version adds' /etc/ssepush/ssepush-broker.conf.dpkg-dist || fail "no .dpkg-dist with the new version's config"
out=$(/usr/sbin/ssepush-broker -n -f /etc/ssepush/ssepush-broker.conf) || fail "the edited config: $out"
ok "an edited conffile survives a reinstall and an upgrade (the new one is beside it as .dpkg-dist)"

# --- purge: nothing left ------------------------------------------------------------
dpkg --purge ssepush >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg --purge"; }
installed=0
dpkg-query -W ssepush >/dev/null 2>&1 && fail "dpkg still knows ssepush after the purge"
snapshot >"$tmp/after"
if ! cmp -s "$tmp/before" "$tmp/after"; then
	diff "$tmp/before" "$tmp/after" | sed 's/^/  /' | head -40
	fail "the purge left the system different from before the install (> left behind, < gone)"
fi
ok "dpkg --purge: nothing left behind (/etc, /usr, /var/lib, /opt, /srv as before the install)"
