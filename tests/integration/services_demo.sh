#!/bin/bash
# The closing demonstration in make check: scripts/services-demo with the
# sanitizer build (a rendezvous, three nodes, pilot-nameserver; one user-facing
# command per well-known port, then broadcast and webhooks). One PASS/FAIL line
# per port, one each for broadcast and webhooks, and one for the run's last line
# (SERVICES OK: N/N ports answered).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
LOG=$(mktemp /tmp/svcdemo.XXXXXX)
trap 'rm -f "$LOG"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
BIN=$BUILD/san/bin SERVICES_DEMO_LIMIT=150 scripts/services-demo >"$LOG" 2>&1
rc=$?
cat "$LOG"
echo
grep -o '^   -> port [0-9]* ([^)]*): .*' "$LOG" | while read -r _ _ port rest; do
	name=$(sed 's/^(\([^)]*\)).*/\1/; s/ /_/g' <<<"$rest")
	case $rest in
	*": answered") echo "PASS: port_${port}_$name" ;;
	*) echo "FAIL: port_${port}_$name" ;;
	esac
done
for what in broadcast webhooks; do
	if grep -q "^   -> $what: delivered" "$LOG"; then echo "PASS: $what"; else echo "FAIL: $what"; fi
done
if [ $rc -eq 0 ] && tail -n 1 "$LOG" | grep -q '^SERVICES OK: \([0-9]*\)/\1 ports answered'; then
	echo "PASS: services_ok"
else
	echo "FAIL: services_ok (exit $rc: $(tail -n 1 "$LOG"))"
fi
