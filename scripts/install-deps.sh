#!/bin/sh
# Install every Debian package that building, testing and running the demo need.
# Idempotent: when everything is present it only asks dpkg and exits.
# Usage: scripts/install-deps.sh [--check] [--bench] [--packaging]
#   --check  exit 1 if something is missing instead of installing it
#   --packaging  what make deb / make check-packaging need (Debian's packaging
#            tools); make check runs the packaging test only when these are present
#   --bench  the packages scripts/bench needs on top (iperf3 and the overlays it compares
#            pilot with); scripts/bench runs this itself, CI never does
set -eu

PACKAGES="
make gcc clang libclang-rt-14-dev pkg-config clang-format clang-tidy cppcheck
libsodium-dev libjson-c-dev libcmocka-dev
libnl-3-dev libnl-route-3-dev libsqlite3-dev libssl-dev libwebsockets-dev
libpq-dev postgresql
iproute2 iputils-ping nftables conntrack procps psmisc curl python3 python3-nacl python3-cryptography valgrind
openssh-server openssh-client iperf3 netcat-openbsd
nginx libnginx-mod-stream
python3-prometheus-client
"

# Only with --packaging: building the .debs, lintian, the completion check in zsh.
PACKAGING_PACKAGES="
dpkg-dev debhelper fakeroot lintian pkgconf zsh python3-prometheus-client
"

# Only with --bench: benchmark-only tools stay out of the default list (CI speed).
BENCH_PACKAGES="
iperf3 wireguard-go wireguard-tools nebula ethtool
"

check=0
for arg in "$@"; do
	case $arg in
	--check) check=1 ;;
	--bench) PACKAGES=$BENCH_PACKAGES ;;
	--packaging) PACKAGES=$PACKAGING_PACKAGES ;;
	*) echo "usage: scripts/install-deps.sh [--check] [--bench] [--packaging]" >&2; exit 2 ;;
	esac
done

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = "installed" ] || missing="$missing $p"
done

if [ -z "$missing" ]; then
	exit 0
fi
if [ "$check" = 1 ]; then
	echo "missing packages:$missing" >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages:$missing" >&2
	echo "install-deps: run this script as root (or with sudo) to install them" >&2
	exit 1
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# Servers we install only for the namespace tests (nginx, sshd) must not start in the
# root namespace: deny service starts for the duration of the install, unless the
# machine already has its own policy.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 0755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing </dev/null
