#!/bin/bash
# Recovery after outages (issue 20, the 60-minute soak's broken reachability
# "23:0"): every trusted pair is reachable again within a bound well under the
# soak's 30 s once the fault ends.
#   1. A NAT flow stuck without its mapping. A router whose NAT rules come back
#      after its WAN link (the soak's NAT router restart; a real router whose
#      firewall reloads does the same) forwards a node's packets to a peer with
#      their private source; conntrack keeps that flow un-NATed for as long as
#      the node keeps sending on it (30 s UDP timeout), so the node's frames
#      still reach the peer but no answer ever comes back. The node must go to
#      the relay instead of re-keying on the dead direct path for ever (old
#      code: a silent re-key left an unauthenticated session, which the silence
#      check skips, and the exchange was retransmitted direct only).
#   2. A node's link fully down for 50 s (nftables drops all in and out), then
#      back, while its peers keep trying to reach it.
# Topology: bridge 198.18.0.0/24: rendezvous .1, public a .10, public c .11,
# symmetric NAT router r .2 with b behind it (198.19.1.10). Trust: a-b, b-c, a-c.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

for t in conntrack nft; do
	command -v $t >/dev/null || { echo "SKIP: pilotd_outage ($t not installed: scripts/install-deps.sh)"; exit 0; }
done
pd_init outage

pt_bridge net || { pt_fail namespaces_created; exit 1; }
pt_ns rdv && pt_attach rdv net 198.18.0.1/24 || { pt_fail namespaces_created; exit 1; }
pt_ns a && pt_attach a net 198.18.0.10/24 || { pt_fail namespaces_created; exit 1; }
pt_ns c && pt_attach c net 198.18.0.11/24 || { pt_fail namespaces_created; exit 1; }
pt_ns r && pt_attach r net 198.18.0.2/24 || { pt_fail namespaces_created; exit 1; }
pt_ns b && pt_link r 198.19.1.1/24 b 198.19.1.10/24 || { pt_fail namespaces_created; exit 1; }
pt_exec "$PT-b" ip route add default via 198.19.1.1
pt_nat r eth0 198.19.1.0/24 symmetric

pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
pd_start a a && pd_start b b && pd_start c c || { pt_fail nodes_registered; exit 1; }
for p in a:b b:c a:c; do
	pt_check "trust_${p%:*}_${p#*:}" pd_trust_pair "${p%:*}" "${p#*:}"
done
for p in b:a a:b b:c c:b a:c c:a; do
	pt_check "first_ping_${p%:*}_${p#*:}" pd_wait 15 pd_ping_ok "${p%:*}" "${p#*:}" 1
done

# within SECS: "A B" pairs each reach the other with one ping; prints the seconds
# it took for all of them (an unreached pair is pinged again at once)
reach_all() { # SECS pair...
	local end=$((SECONDS + $1)) t0=$SECONDS p left
	shift
	left=("$@")
	while [ ${#left[@]} -gt 0 ] && [ $SECONDS -lt "$end" ]; do
		local still=()
		for p in "${left[@]}"; do
			pd_ping_ok "${p%:*}" "${p#*:}" 1 || still+=("$p")
		done
		left=("${still[@]}")
		[ ${#left[@]} = 0 ] || sleep 0.5
	done
	echo $((SECONDS - t0))
	[ ${#left[@]} = 0 ] || { echo "unreached: ${left[*]}" >&2; return 1; }
}

# ---- 2 starts now: c's link fully down for 50 s; its peers keep trying ----
OUT_S=50
pt_exec "$PT-c" nft -f - <<NFT
table inet ptout {
	chain in { type filter hook prerouting priority 0; iifname "eth0" drop; }
	chain out { type filter hook output priority 0; oifname "eth0" drop; }
}
NFT
OUT_T0=$SECONDS
echo "c down at $(date -u +%T)"
(
	# pings that expect an answer, every 2-3 s from each (bounded: 48 s)
	while [ $((SECONDS - OUT_T0)) -lt $((OUT_S - 2)) ]; do
		pd_ctl a ping "${PD_ID[c]}" --count 1 --timeout 1s >/dev/null
		pd_ctl b ping "${PD_ID[c]}" --count 1 --timeout 1s >/dev/null
		sleep 1
	done
) &
TRY_PID=$!
PT_PIDS+=("$TRY_PID")

# ---- 1: b's flow to a stuck without its NAT mapping ----
# The router "restarts": its NAT misses packets to a for a moment and b's
# existing mapping is gone; b sends to a meanwhile (the flow gets no NAT).
# (a ping from a first: b has just heard from a, so b's silence check, 8 s
# without a frame, is not what notices; the silent re-key comes first, as in
# the soak)
pd_ping_ok a b 1 || echo "a did not reach b just before"
pt_exec "$PT-r" nft insert rule ip ptnat post ip daddr 198.18.0.10 accept
pt_exec "$PT-r" conntrack -D -d 198.18.0.10 >/dev/null 2>&1
pt_exec "$PT-r" conntrack -D -s 198.18.0.10 >/dev/null 2>&1
pd_ctl b ping "${PD_ID[a]}" --count 2 --timeout 1s >/dev/null
pt_exec "$PT-r" nft delete table ip ptnat
pt_nat r eth0 198.19.1.0/24 symmetric
stuck() { # b's flow to a leaves the router with b's private source
	pt_exec "$PT-r" conntrack -L -p udp -d 198.18.0.10 2>/dev/null | grep -q 'dst=198.19.1.10 '
}
if stuck; then
	pt_pass stuck_flow_made
else
	pt_fail stuck_flow_made "$(pt_exec "$PT-r" conntrack -L -p udp 2>&1 | head -5)"
fi
echo "flow stuck at $(date -u +%T)"
# b keeps sending to a (each ping refreshes the stuck flow): b must find the relay
if s=$(reach_all 20 b:a a:b); then
	pt_pass "stuck_flow_b_a_reachable_again_after_${s}s"
else
	pt_fail stuck_flow_b_a_reachable_again_within_20s "b sees a: path $(pd_path b a); a sees b: path $(pd_path a b)"
fi
# reached around it (the flow is still stuck: the answer did not come from its expiry)
if stuck; then pt_pass stuck_flow_still_stuck; else pt_fail stuck_flow_still_stuck; fi
pt_check stuck_flow_b_a_still_reachable pd_wait 10 pd_ping_ok b a 3

# ---- 2: c back after 50 s ----
while [ $((SECONDS - OUT_T0)) -lt $OUT_S ]; do sleep 0.5; done
kill "$TRY_PID" 2>/dev/null
wait "$TRY_PID" 2>/dev/null
pt_exec "$PT-c" nft delete table inet ptout
echo "c up at $(date -u +%T) after $((SECONDS - OUT_T0)) s"
if s=$(reach_all 20 a:c c:a b:c c:b); then
	pt_pass "outage_${OUT_S}s_peers_reachable_again_after_${s}s"
else
	pt_fail "outage_${OUT_S}s_peers_reachable_again_within_20s" \
		"a-c: $(pd_path a c)/$(pd_path c a) b-c: $(pd_path b c)/$(pd_path c b)"
fi

for n in a b c; do pd_stop "$n"; done
exit 0
