#!/bin/bash
# The short form of scripts/soak for make check (issue 20): 8 sanitizer-build
# nodes (public, cone NAT, symmetric NAT), 2 minutes of workload with faults on
# a fixed seed (6: kill -9 of a node and of the rendezvous, NAT router
# restarts, a slow reader, an address change, a loss burst), about 3.5 minutes
# in all. One FAIL: line per broken invariant (the soak's report is printed
# below the results).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
for t in conntrack nft tc curl; do
	command -v $t >/dev/null || { echo "SKIP: soak_short ($t not installed: scripts/install-deps.sh)"; exit 0; }
done
out=$(mktemp /tmp/soak_short.XXXXXX)
trap 'rm -f "$out"' EXIT
scripts/soak --short --san --build "$BUILD" --minutes 2 --nodes 8 --seed "${SOAK_SEED:-6}" >"$out" 2>&1
rc=$?
if [ $rc = 0 ]; then
	echo "PASS: soak_invariants_held"
else
	n=0
	while IFS= read -r line; do
		echo "FAIL: soak ($line)"
		n=$((n + 1))
	done < <(sed -n '/^INVARIANTS BROKEN/,/^first failed/p' "$out" | grep '^  ' | head -10)
	[ $n -gt 0 ] || echo "FAIL: soak (exit $rc)"
fi
bytes=$(sed -n 's/^bytes verified (SHA-256 at the far end): //p' "$out")
if [ "${bytes:-0}" -gt 0 ]; then echo "PASS: soak_bytes_verified_$bytes"; else echo "FAIL: soak_bytes_verified (none)"; fi
faults=$(sed -n 's/^faults injected: //p' "$out")
if [ "${faults:-0}" -ge 3 ]; then echo "PASS: soak_faults_injected_$faults"; else echo "FAIL: soak_faults_injected (${faults:-0})"; fi
echo "---- soak output ----"
cat "$out"
