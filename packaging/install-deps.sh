#!/bin/sh
# Installs the Debian packages ssepush needs, from packaging/deps.list: "build" for
# make/make run, "test" for make test (build, unit, deb and test groups), "bench" for
# make bench (nginx + nchan, the server we compare against), "deb" for make deb. As
# root it runs apt-get; otherwise it prints the exact command and fails.
#   --check            lists what make test needs and is missing (exit 1 if anything)
#   --list GROUP...    prints the packages of these groups of deps.list, one a line
#   --field FIELD      prints debian/control's Build-Depends or Suggests value
set -eu
list_file=$(dirname "$0")/deps.list

# The packages of the groups named in $1 (blank separated); with $2 = control, the
# build-essential ones are left out.
pkgs() {
	awk -v want=" $1 " -v mode="${2:-}" '
		{ sub(/#.*/, "") }
		NF == 0 { next }
		/^\[/ { g = $1; gsub(/[][]/, "", g); next }
		index(want, " " g " ") == 0 { next }
		mode == "control" && $2 == "essential" { next }
		!seen[$1]++ { print $1 }
	' "$list_file"
}

# One control field from the list: the packages joined with ", ".
field() {
	case "$1" in
	Build-Depends)
		{ echo "debhelper-compat (= 13)"; pkgs build control; pkgs unit control | sed 's/$/ <!nocheck>/'; } ;;
	Suggests)
		pkgs suggests control ;;
	*)
		echo "unknown field $1 (Build-Depends or Suggests)" >&2; exit 2 ;;
	esac | awk 'NR > 1 { printf ", " } { printf "%s", $0 } END { print "" }'
}

case "${1:-build}" in
	--list) shift; pkgs "$*"; exit 0 ;;
	--field) field "${2:-}"; exit 0 ;;
	--check) want=$(pkgs "build unit deb test"); check_only=1 ;;
	build) want=$(pkgs build); check_only=0 ;;
	test) want=$(pkgs "build unit deb test"); check_only=0 ;;
	bench) want=$(pkgs "build bench"); check_only=0 ;;
	deb) want=$(pkgs "build unit deb"); check_only=0 ;;
	*) echo "usage: $0 [build|test|bench|deb|--check|--list GROUP...|--field FIELD]" >&2; exit 2 ;;
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
