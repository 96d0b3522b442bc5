#!/bin/sh
# Installs the Debian packages ssepush needs: "build" for make/make run, "test" for
# make test, "bench" for make bench (nginx + nchan, the server we compare against). As root it runs apt-get; otherwise it prints the exact command and fails.
# --check only lists what is missing.
set -eu

build_pkgs="gcc make pkg-config libmicrohttpd-dev libjansson-dev libhiredis-dev libevent-dev libjwt-dev"
test_pkgs="$build_pkgs libcmocka-dev curl iproute2 redis-server chromium nginx-light python3 cyrus-imapd sasl2-bin"
bench_pkgs="$build_pkgs curl procps nginx-light libnginx-mod-nchan redis-server"

case "${1:-build}" in
	--check) want="$test_pkgs"; check_only=1 ;;
	build) want="$build_pkgs"; check_only=0 ;;
	test) want="$test_pkgs"; check_only=0 ;;
	bench) want="$bench_pkgs"; check_only=0 ;;
	*) echo "usage: $0 [build|test|bench|--check]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
# Node.js may come from Debian or be preinstalled; only its commands matter.
if [ "${1:-build}" = test ] || [ "${1:-build}" = --check ]; then
	command -v node >/dev/null 2>&1 || missing="$missing nodejs"
	command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi

[ -z "$missing" ] && exit 0
if [ "$check_only" = 1 ]; then
	echo "missing:$missing"
	exit 1
fi
if [ "$(id -u)" != 0 ]; then
	echo "ssepush needs these Debian packages; run as root:" >&2
	echo "  apt-get install -y$missing" >&2
	exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || echo "apt-get update failed; trying the install anyway" >&2
apt-get install -y -qq $missing
