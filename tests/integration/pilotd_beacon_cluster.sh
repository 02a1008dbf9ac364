#!/bin/bash
# Beacon cluster (issue 18 Deliver 3, rendezvous/BEACON.md "Several beacons").
# Two pilot-rendezvous on an "internet" bridge: the primary (registry + beacon
# B1, 198.18.0.1) and its standby (replicated registry + beacon B2, 198.18.0.2),
# the beacons configured as each other's -beacon-peers with a shared
# -beacon-peer-secret. Node a behind a symmetric NAT uses only B1, node b behind
# another symmetric NAT only B2: no punch can work and neither beacon sees both,
# so everything between them goes a -> B1 -> B2 -> b and back through the
# beacons' Sync (who holds which node) and forwarded Relays. They handshake,
# trust, ping, and move 4 MiB each way in a stream with matching SHA-256.
# (Forged peer messages without the secret's tag: tests/unit/test_beacon.c.)
# Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init bcl
ST=tests/integration/pilotd_streams.py
P=198.18.0.1
S=198.18.0.2
TOKEN=cluster-test-token
SECRET=cluster-test-secret

pt_bridge net
pt_ns rdv && pt_attach rdv net $P/24 && pt_ns rdv2 && pt_attach rdv2 net $S/24 ||
	{ pt_fail namespaces_created; exit 1; }
pt_router A net 198.18.0.11 198.19.1 symmetric && pt_router B net 198.18.0.12 198.19.2 symmetric ||
	{ pt_fail namespaces_created; exit 1; }

pt_spawn rdv "$PT_DIR/rdv.log" "$PD_RDV" -registry-addr $P:9000 -beacon-addr $P:9001 \
	-store "$PT_DIR/primary.db" -replication-token $TOKEN -http $P:8080 \
	-beacon-peers $S:9001 -beacon-peer-secret $SECRET -no-rate-limit -log-level debug
pt_spawn rdv2 "$PT_DIR/rdv2.log" "$PD_RDV" -registry-addr $S:9000 -beacon-addr $S:9001 \
	-store "$PT_DIR/standby.db" -standby $P:9000 -replication-token $TOKEN -http $S:8080 \
	-beacon-peers $P:9001 -beacon-peer-secret $SECRET -no-rate-limit -log-level debug
pd_wait 10 pt_exec "$PT-rdv" bash -c "exec 3<>/dev/tcp/$P/9000" &&
	pd_wait 10 pt_exec "$PT-rdv2" bash -c "exec 3<>/dev/tcp/$S/9000" ||
	{ pt_fail rendezvous_started; exit 1; }

metric() { # NS IP NAME: the value of a counter on that rendezvous
	pt_exec "$PT-$1" curl -s "http://$2:8080/metrics" | awk -v n="$3" '$1 == n { print $2 }'
}

PD_REGISTRY=$P:9000
PD_BEACON=$P:9001
pd_start a nA -keepalive 2s || { pt_fail nodes_registered; exit 1; }
PD_BEACON=$S:9001
# b's key must be on the standby before B2 can verify b's signed Discover: b
# registers once, and after replication (<= 1 s) starts again with the same
# identity (the usual case in a cluster: the node is known).
pd_start b nB -keepalive 2s && pd_stop b && sleep 2 && pd_start b nB -keepalive 2s ||
	{ pt_fail nodes_registered; exit 1; }
pt_pass nodes_registered
[ "$(pd_ctl a info | pd_json 'd["beacon"]')" = $P:9001 ] &&
	[ "$(pd_ctl b info | pd_json 'd["beacon"]')" = $S:9001 ] && pt_pass nodes_on_different_beacons ||
	pt_fail nodes_on_different_beacons

# each beacon learns the other's node from its Sync
synced() { [ "$(metric "$1" "$2" pilot_beacon_syncs_received_total)" -ge 1 ] 2>/dev/null; }
pt_check b1_received_sync pd_wait 15 synced rdv $P
pt_check b2_received_sync pd_wait 15 synced rdv2 $S

pt_check trust_pair pd_trust_pair a b
sleep 1.5 # the trust pair reaches the standby (its beacon's may-talk rule)
pt_check ping_a_to_b pd_wait 15 pd_ping_ok a b
pt_check ping_b_to_a pd_wait 15 pd_ping_ok b a
pt_check path_is_relay [ "$(pd_path a b)" = relay ]

BYTES=$((4 << 20))
want=$(python3 "$ST" pattern-sha $BYTES)
t0=$(date +%s%N)
python3 "$ST" call "$PT_DIR/b/ctl.sock" test-sink '{"port":5100,"timeout_ms":40000}' 45 >"$PT_DIR/sink_b" 2>&1 &
sb=$!
python3 "$ST" call "$PT_DIR/a/ctl.sock" test-sink '{"port":5101,"timeout_ms":40000}' 45 >"$PT_DIR/sink_a" 2>&1 &
sa=$!
sleep 1
python3 "$ST" call "$PT_DIR/a/ctl.sock" test-source \
	"{\"target\":\"${PD_ID[b]}\",\"port\":5100,\"bytes\":$BYTES,\"timeout_ms\":40000}" 45 >"$PT_DIR/src_a" 2>&1 &
xa=$!
python3 "$ST" call "$PT_DIR/b/ctl.sock" test-source \
	"{\"target\":\"${PD_ID[a]}\",\"port\":5101,\"bytes\":$BYTES,\"timeout_ms\":40000}" 45 >"$PT_DIR/src_b" 2>&1 &
xb=$!
wait $xa $xb $sa $sb
ms=$((($(date +%s%N) - t0) / 1000000))
ok=1
for d in a b; do
	pd_json "d['sha256'] == '$want' and d['bytes'] == $BYTES" <"$PT_DIR/sink_$d" >/dev/null ||
		{ ok=0; echo "sink on $d: $(head -c 300 "$PT_DIR/sink_$d")"; }
done
if [ $ok = 1 ]; then
	pt_pass "stream_4MiB_each_way_through_two_beacons_sha256_ok_${ms}ms"
else
	pt_fail stream_through_two_beacons
fi
fwd1=$(metric rdv $P pilot_beacon_relay_forwarded_total)
fwd2=$(metric rdv2 $S pilot_beacon_relay_forwarded_total)
got1=$(metric rdv $P pilot_beacon_relay_from_peer_total)
got2=$(metric rdv2 $S pilot_beacon_relay_from_peer_total)
echo "# forwarded B1->B2 $fwd1, B2->B1 $fwd2; delivered from peer at B1 $got1, at B2 $got2"
pt_check relays_forwarded_both_ways [ "${fwd1:-0}" -gt 100 ] && [ "${fwd2:-0}" -gt 100 ] &&
	[ "${got1:-0}" -gt 100 ] && [ "${got2:-0}" -gt 100 ]

pd_stop a
pd_stop b
pt_cleanup
exit $((PT_FAILED > 0))
