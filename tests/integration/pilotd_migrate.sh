#!/bin/bash
# Connection migration (issue 20): a node's underlay address changes while a
# stream transfer runs, once as the receiver and once as the sender; both
# transfers complete with a matching SHA-256. After the move the node notices
# the change, re-registers its new endpoint (info listen_addr), the peer's path
# follows it, and a node started after the move reaches it directly at the new
# address. Spoofed sources cannot steal the path: captured frames of the moved
# node replayed from another address, and forged frames naming it, leave the
# peer's endpoint where the authenticated frames put it.
# Topology: one bridge, rendezvous 198.18.0.1, a .10, b .11 (moves to .21, then
# .31), attacker x .13, late node d .14. The underlay is rate-limited (tbf on the
# sender's eth0) so that each transfer lasts several seconds.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash
TOOL=tests/integration/pilotd_tool.py
ST=tests/integration/pilotd_streams.py

pd_init migrate

pd_lan a b x d || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
pd_start a a && pd_start b b || { pt_fail nodes_registered; exit 1; }
pt_check trust_pair pd_trust_pair a b
pt_check first_ping pd_wait 10 pd_ping_ok a b

call() { # node cmd args_json [secs]
	python3 "$ST" call "$PT_DIR/$1/ctl.sock" "$2" "$3" "${4:-60}"
}
endpoint() { # endpoint of B in A's peer table
	pd_ctl "$1" peers | pd_json "[p['endpoint'] for p in d['peers'] if p['node_id'] == ${PD_ID[$2]}][0]"
}
listen_addr() { pd_ctl "$1" info | pd_json 'd["listen_addr"]'; }
readdress() { # ns old new (like a DHCP change: the old address goes, the new one comes)
	pt_exec "$PT-$1" ip addr del "$2/24" dev eth0
	pt_exec "$PT-$1" ip addr add "$3/24" dev eth0
}
# transfer FROM TO PORT BYTES MOVE_OLD MOVE_NEW: b moves while FROM streams to TO
transfer() {
	local from=$1 to=$2 port=$3 bytes=$4 old=$5 new=$6 want got src
	call "$to" test-sink "{\"port\":$port,\"timeout_ms\":90000}" 95 > "$PT_DIR/sink$port.json" &
	local sink=$!
	sleep 0.5
	call "$from" test-source "{\"target\":\"${PD_ID[$to]}\",\"port\":$port,\"bytes\":$bytes,\"timeout_ms\":90000}" 95 \
		> "$PT_DIR/src$port.json" &
	local srcp=$!
	sleep 2.5
	readdress b "$old" "$new"
	echo "moved b $old -> $new at $(date +%T.%N | cut -c1-12)"
	wait $srcp
	wait $sink
	want=$(python3 "$ST" pattern-sha "$bytes")
	got=$(pd_json 'd["sha256"]' < "$PT_DIR/sink$port.json")
	src=$(cat "$PT_DIR/src$port.json")
	if [ "$got" = "$want" ] && [ "$(pd_json 'd["bytes"]' < "$PT_DIR/sink$port.json")" = "$bytes" ]; then
		pt_pass "transfer_${from}_to_${to}_across_move_sha256_matches"
	else
		pt_fail "transfer_${from}_to_${to}_across_move_sha256_matches" \
			"src=${src:0:300} sink=$(head -c 300 "$PT_DIR/sink$port.json")"
	fi
}

# ~4 MB/s on the sender's underlay: a 16 MiB transfer lasts about 4 s.
rate() { pt_exec "$PT-$1" tc qdisc replace dev eth0 root tbf rate 32mbit burst 64kb latency 400ms; }
rate a
rate b

# Capture on the bridge: frames of b to a are replayed from x later.
pt_spawn net "$PT_DIR/cap.log" python3 "$TOOL" capture any 60 "$PT_DIR/cap"
CAP=$PT_PID
pd_wait 5 test -e "$PT_DIR/cap.ready"

# ---- 1: b receives, and moves mid-transfer ----
transfer a b 5000 $((16 << 20)) 198.18.0.11 198.18.0.21
if pd_wait 10 bash -c "$PD_CTL --json --socket $PT_DIR/a/ctl.sock peers | grep -q '\"endpoint\":\"198.18.0.21:'"; then
	pt_pass path_follows_receiver_move
else
	pt_fail path_follows_receiver_move "a sees b at $(endpoint a b)"
fi
if pd_wait 10 bash -c "$PD_CTL --json --socket $PT_DIR/b/ctl.sock info | grep -q '\"listen_addr\":\"198.18.0.21:'"; then
	pt_pass reregistered_new_endpoint
else
	pt_fail reregistered_new_endpoint "listen_addr $(listen_addr b)"
fi

# ---- 2: b sends, and moves mid-transfer ----
transfer b a 5001 $((16 << 20)) 198.18.0.21 198.18.0.31
if pd_wait 10 bash -c "$PD_CTL --json --socket $PT_DIR/a/ctl.sock peers | grep -q '\"endpoint\":\"198.18.0.31:'"; then
	pt_pass path_follows_sender_move
else
	pt_fail path_follows_sender_move "a sees b at $(endpoint a b)"
fi
pt_check moves_noticed bash -c "$PD_CTL --json --socket $PT_DIR/b/ctl.sock info | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get(\"data\", d); sys.exit(d[\"counters\"][\"underlay_moves\"] < 2)'"
kill "$CAP" 2>/dev/null
wait "$CAP" 2>/dev/null

# ---- 3: a node that never met b reaches it at the new address ----
pd_start d d || pt_fail node_d_registered
pd_trust_pair d b || pt_fail trust_pair_d_b
# (d's first resolve, before the trust, is refused for the private b: d starts on
# the relay and resolves again at its first relay probe, 15 s later)
d_direct() { pd_ping_ok d b 1 && [[ "$(endpoint d b)" == 198.18.0.31:* ]] && [ "$(pd_path d b)" != relay ]; }
if pd_wait 35 d_direct; then
	pt_pass late_node_reaches_moved_node_at_new_address
else
	pt_fail late_node_reaches_moved_node_at_new_address "d sees b at $(endpoint d b) path $(pd_path d b)"
fi

# ---- 4: spoofed sources do not move the path ----
PORT_A=$(pd_ctl a info | pd_json "d['listen_addr'].rsplit(':', 1)[1]")
replays() { pd_ctl a info | pd_json 'd["counters"]["tunnel_drop_replay"]'; }
r0=$(replays)
n=$(pt_exec "$PT-x" python3 "$TOOL" replay "$PT_DIR/cap" 198.18.0.10 "$PORT_A")
pt_exec "$PT-x" python3 "$TOOL" forge 198.18.0.10 "$PORT_A" "${PD_ID[b]}" 50
sleep 1
ep=$(endpoint a b)
if [[ "$ep" == 198.18.0.31:* ]] && [ "${n:-0}" -gt 100 ]; then
	pt_pass "replayed_${n}_frames_did_not_move_path"
else
	pt_fail replayed_frames_did_not_move_path "replayed ${n:-0}; a sees b at $ep"
fi
r1=$(replays)
if [ "${r1:-0}" -gt "${r0:-0}" ]; then pt_pass replays_counted; else pt_fail replays_counted "$r0 -> $r1"; fi
pt_check ping_after_spoofing pd_wait 10 pd_ping_ok a b
pt_check ping_back_after_spoofing pd_wait 10 pd_ping_ok b a

for n in a b d; do pd_stop "$n"; done
exit 0
