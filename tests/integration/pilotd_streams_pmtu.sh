#!/bin/bash
# Stream segments sized to the underlay path MTU (issue 5): two pilotd nodes and a
# rendezvous on a bridge whose every link has MTU 1280. An 8 MiB stream each way
# and a 4 MiB echo (the accepting side sends too) arrive intact while neither
# node's namespace creates a single IP fragment (/proc/net/snmp Ip: FragCreates);
# the connections report MSS 1173 (1280 - 20 IP - 8 UDP - 9 relay - 36 PILS - 34).
# Control: a datagram larger than the MTU does fragment (the counter is live).
# Then -underlay-mtu 1100 on one node caps its MSS at 993.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash
ST=tests/integration/pilotd_streams.py
MTU=1280
WANT_MSS=$((MTU - 20 - 8 - 9 - 36 - 34))

pd_init pmtu

pd_lan a b || { pt_fail namespaces_created; exit 1; }
for ns in rdv a b; do
	ip -n "$PT-$ns" link set eth0 mtu $MTU
done
for ifc in $(ip -n "$PT-net" -o link show master br0 | awk -F': ' '{print $2}' | cut -d@ -f1); do
	ip -n "$PT-net" link set "$ifc" mtu $MTU
done
pt_check underlay_mtu_is_$MTU bash -c \
	"ip -n $PT-a -o link show eth0 | grep -q 'mtu $MTU ' && ip -n $PT-net -o link show br0 | grep -q 'mtu $MTU '"

pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
pd_start a a && pd_start b b || { pt_fail nodes_registered; exit 1; }
pt_check trust_pair pd_trust_pair a b
pt_check first_ping pd_wait 10 pd_ping_ok a b

call() { # node cmd args_json [secs]
	python3 "$ST" call "$PT_DIR/$1/ctl.sock" "$2" "$3" "${4:-60}"
}
frags() { # IP fragments created in namespace NS so far
	pt_exec "$PT-$1" cat /proc/net/snmp | awk '
		$1 == "Ip:" && !h { for (i = 2; i <= NF; i++) if ($i == "FragCreates") c = i; h = 1; next }
		$1 == "Ip:" && h { print $c; exit }'
}
A=${PD_ID[a]}
B=${PD_ID[b]}

# transfer FROM TO PORT BYTES: test-source on FROM (it dials), test-sink on TO;
# prints the source's JSON; PASS when the sink's SHA-256 matches the pattern
transfer() {
	local from=$1 to=$2 port=$3 bytes=$4 dst sink src want
	dst=${PD_ID[$to]}
	call "$to" test-sink "{\"port\":$port,\"timeout_ms\":60000}" > "$PT_DIR/sink$port.json" &
	sink=$!
	sleep 0.5
	src=$(call "$from" test-source "{\"target\":\"$dst\",\"port\":$port,\"bytes\":$bytes,\"timeout_ms\":60000}")
	wait $sink
	want=$(python3 "$ST" pattern-sha "$bytes")
	echo "$src" > "$PT_DIR/src$port.json"
	[ "$(pd_json 'd["sha256"]' < "$PT_DIR/sink$port.json")" = "$want" ]
}
mss_of() { pd_json 'd["stats"]["mss"]' < "$1"; }

# ---- 8 MiB a -> b, then b -> a: intact, no fragment on either side ----
fa0=$(frags a) fb0=$(frags b)
N=$((8 << 20))
if transfer a b 5000 $N; then pt_pass "a_to_b_8MiB_sha256_matches"; else
	pt_fail a_to_b_8MiB_sha256_matches "src=$(cat "$PT_DIR/src5000.json") sink=$(cat "$PT_DIR/sink5000.json")"; fi
if transfer b a 5001 $N; then pt_pass "b_to_a_8MiB_sha256_matches"; else
	pt_fail b_to_a_8MiB_sha256_matches "src=$(cat "$PT_DIR/src5001.json") sink=$(cat "$PT_DIR/sink5001.json")"; fi
m1=$(mss_of "$PT_DIR/src5000.json") m2=$(mss_of "$PT_DIR/src5001.json")
if [ "$m1" = "$WANT_MSS" ] && [ "$m2" = "$WANT_MSS" ]; then pt_pass "dialer_mss_$WANT_MSS"; else
	pt_fail "dialer_mss_$WANT_MSS" "a->b $m1, b->a $m2"; fi

# ---- echo: the accepting side (b) sends 4 MiB back on its connection ----
r=$(pd_ctl a bench "$B" 4 --timeout 60s)
if echo "$r" | pd_json "d['recv_bytes'] == 4 << 20 and d['stats']['mss'] == $WANT_MSS" >/dev/null; then
	pt_pass "echo_4MiB_both_ways"
else
	pt_fail echo_4MiB_both_ways "$r"
fi
fa1=$(frags a) fb1=$(frags b)
if [ "$fa1" = "$fa0" ] && [ "$fb1" = "$fb0" ]; then
	pt_pass "no_ip_fragments_a_${fa0}_to_${fa1}_b_${fb0}_to_${fb1}"
else
	pt_fail no_ip_fragments "a FragCreates $fa0 -> $fa1, b $fb0 -> $fb1"
fi

# ---- control: a 3000-byte datagram cannot fit 1280 and is fragmented ----
big=$(head -c 3000 /dev/zero | tr '\0' x)
call a dgram-send "{\"target\":\"$B\",\"port\":5555,\"data\":\"$big\"}" >/dev/null
fa2=$(frags a)
if [ "$fa2" -gt "$fa1" ]; then pt_pass "control_big_datagram_fragments_$((fa2 - fa1))"; else
	pt_fail control_big_datagram_fragments "FragCreates $fa1 -> $fa2"; fi

# ---- -underlay-mtu caps the path MTU: 1100 -> MSS 993 ----
pd_stop a
pd_start a a -underlay-mtu 1100 || { pt_fail restart_with_underlay_mtu; exit 1; }
pd_wait 10 pd_ping_ok a b
fa3=$(frags a)
if transfer a b 5002 $((1 << 20)) && [ "$(mss_of "$PT_DIR/src5002.json")" = $((1100 - 20 - 8 - 9 - 36 - 34)) ] \
	&& [ "$(frags a)" = "$fa3" ]; then
	pt_pass underlay_mtu_1100_mss_993
else
	pt_fail underlay_mtu_1100_mss_993 "src=$(cat "$PT_DIR/src5002.json")"
fi

pt_check ping_after_all pd_ping_ok a b 2
pd_stop a
pd_stop b
pt_check no_sanitizer_reports bash -c "! grep -q -E 'ERROR: (Address|Leak)Sanitizer|runtime error' $PT_DIR/a.log $PT_DIR/b.log"
[ "$PT_FAILED" -eq 0 ]
