#!/bin/bash
# Cone NATs and reference-like peers (issue 15): our node "b" behind one
# endpoint-independent NAT, two pilotd -test-ref-peer nodes "r1" and "r2" behind
# two others (LANs 198.19.1-3.0/24, the rendezvous on the "internet" bridge).
# r1 starts the trust with b, b starts it with r2; both pairs must end on a
# punched (or direct) path, in both directions, within the relay probe period.
# -test-ref-peer keeps a peer on the relay for good once anything came through
# it (as the reference does), so this fails if either side sends a tunnel frame
# through the relay before the trust exists (issue 15 item 3).
# Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init inat

pt_bridge net
pt_ns rdv
pt_attach rdv net 198.18.0.1/24
pt_router B net 198.18.0.11 198.19.1 cone
pt_router R1 net 198.18.0.12 198.19.2 cone
pt_router R2 net 198.18.0.13 198.19.3 cone
pd_wait 5 pt_exec "$PT-nB" ping -c1 -W1 198.18.0.1 || { pt_fail topology; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }

ok=1
pd_start b nB || ok=0
pd_start r1 nR1 -test-ref-peer || ok=0
pd_start r2 nR2 -test-ref-peer || ok=0
if [ $ok = 1 ]; then pt_pass three_nodes_registered; else pt_fail three_nodes_registered; exit 1; fi

# r1 starts, then b answers; b starts, then r2 answers
pt_check trust_r1_starts pd_trust_pair r1 b
pt_check trust_b_starts pd_trust_pair b r2

want_path() { # a b
	pd_ping_ok "$1" "$2" 1
	[[ "$(pd_path "$1" "$2")" =~ ^(direct|punched)$ ]]
}
for p in r1:b b:r2; do
	a=${p%:*} z=${p#*:}
	if pd_wait 35 want_path "$a" "$z" && pd_wait 10 want_path "$z" "$a"; then
		pt_pass "path_${a}_${z}_$(pd_path "$a" "$z")_$(pd_path "$z" "$a")"
	else
		pt_fail "path_${a}_${z}" "got $(pd_path "$a" "$z") / $(pd_path "$z" "$a")"
	fi
done

for n in b r1 r2; do pd_stop "$n"; done
pt_check no_sanitizer_reports bash -c "! grep -q -E 'ERROR: (Address|Leak)Sanitizer|runtime error' $PT_DIR/b.log $PT_DIR/r1.log $PT_DIR/r2.log"
