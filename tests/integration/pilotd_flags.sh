#!/bin/bash
# pilotd -n accepts the command lines users copy from the reference's docs and
# refuses bad values of the flags issue 16 added (-registry-trust, -nameserver).
# No namespaces: -n opens nothing. Prints PASS:/FAIL:.
set -u
cd "$(dirname "$0")/../.."
BIN=${BUILD:-build}/san/bin/pilotd
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
FAILED=0
ok() { if "$BIN" -n -identity= "${@:2}" >/dev/null 2>&1; then echo "PASS: $1"; else echo "FAIL: $1"; FAILED=$((FAILED + 1)); fi; }
bad() { # NAME WANT-IN-MESSAGE flags...
	local out
	if out=$("$BIN" -n -identity= "${@:3}" 2>&1); then
		echo "FAIL: $1 (accepted)"; FAILED=$((FAILED + 1))
	elif ! grep -q -- "$2" <<<"$out"; then
		echo "FAIL: $1 ($out)"; FAILED=$((FAILED + 1))
	else
		echo "PASS: $1"
	fi
}
FPR=$(printf 'ab%.0s' $(seq 32))
# the newer reference's compat start (cli.md §12.2, registry.md: -registry-trust system)
ok compat_command_line -registry registry.pilotprotocol.network:443 -registry-trust system \
	-transport compat -compat-beacon wss://beacon.pilotprotocol.network/v1/compat
ok registry_trust_pinned -registry 198.18.0.1:443 -registry-trust pinned -registry-fingerprint "$FPR"
bad registry_trust_bogus "want system or pinned" -registry 198.18.0.1:443 -registry-trust maybe
bad registry_trust_pinned_needs_fpr "needs -registry-fingerprint" -registry 198.18.0.1:443 -registry-trust pinned
bad registry_trust_conflict "conflicts" -registry 198.18.0.1:443 -registry-trust system -tls-trust pinned \
	-tls-root /etc/hostname
ok nameserver_address -registry 198.18.0.1:9000 -nameserver 0:0000.0000.0007
ok nameserver_id -registry 198.18.0.1:9000 -nameserver 7
bad nameserver_hostname "invalid -nameserver" -registry 198.18.0.1:9000 -nameserver alpha
bad nameserver_broadcast "invalid -nameserver" -registry 198.18.0.1:9000 -nameserver 1:0001.FFFF.FFFF
exit "$FAILED"
