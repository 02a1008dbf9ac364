#!/bin/bash
# Failover under load with real pilotd nodes (issue 18, Tests "Failover under
# load"). Two pilot-rendezvous instances (registry + beacon each) on one
# PostgreSQL (a throw-away cluster, tests/lib/pgtmp.bash), their beacons
# clustered (-beacon-peers + -beacon-peer-secret). 20 pilotd (-tun=off): 18 on
# the "internet" bridge, half with -registry inst1,inst2 and half the other way
# round, and two (sx, sy) behind symmetric NATs, sx on beacon 1 and sy on
# beacon 2, so their traffic is relayed beacon 1 <-> beacon 2 (the beacon
# cluster scenario of pilotd_beacon_cluster.sh, here on the PostgreSQL pair: no
# double start, the key is in the shared database at once). Under load
# (heartbeats every 2 s, hostname writes by the nodes, registrations by a
# loader, handshakes fired just before, a relayed 6 MiB stream sx -> sy slowed
# to ~1.5 MB/s), kill -9 of instance 1:
#   - every node is served by instance 2 within 10 s (measured and printed),
#   - no acknowledged write is lost (registrations, hostnames, trust pairs),
#   - the handshakes complete, the relayed stream completes with the right
#     SHA-256.
# Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash
source tests/lib/pgtmp.bash

pd_init pgf
trap 'pg_tmp_stop; pt_cleanup' EXIT
if ! pg_tmp_start "$PT_DIR/pg"; then
	echo "SKIP: pilotd_pg_failover ($PG_WHY)"
	exit 0
fi
ST=tests/integration/pilotd_streams.py
I1=198.18.0.1
I2=198.18.0.2
SECRET=pg-cluster-secret
NLAN=18

pt_bridge net
pt_ns rdv && pt_attach rdv net $I1/24 && pt_ns rdv2 && pt_attach rdv2 net $I2/24 &&
	pt_ns ld && pt_attach ld net 198.18.0.5/24 || { pt_fail namespaces_created; exit 1; }
for ((i = 1; i <= NLAN; i++)); do
	pt_ns "n$i" && pt_attach "n$i" net "198.18.0.$((9 + i))/24" || { pt_fail namespaces_created; exit 1; }
done
pt_router X net 198.18.0.40 198.19.1 symmetric && pt_router Y net 198.18.0.41 198.19.2 symmetric ||
	{ pt_fail namespaces_created; exit 1; }
# the relayed stream stays in flight for a few seconds: sx's uplink at 12 Mbit/s
pt_exec "$PT-rX" tc qdisc add dev eth0 root tbf rate 12mbit burst 32kb latency 400ms ||
	{ pt_fail shaping; exit 1; }

inst() { # NS IP PEER-IP
	pt_spawn "$1" "$PT_DIR/$1.log" "$PD_RDV" -registry-addr "$2:9000" -beacon-addr "$2:9001" \
		-store "$PG_URL" -http "$2:8080" -beacon-peers "$3:9001" -beacon-peer-secret $SECRET \
		-no-rate-limit -log-level debug
}
inst rdv $I1 $I2
INST1=$PT_PID
pd_wait 20 pt_exec "$PT-rdv" bash -c "exec 3<>/dev/tcp/$I1/9000" || { pt_fail instances_started; exit 1; }
inst rdv2 $I2 $I1
pd_wait 20 pt_exec "$PT-rdv2" bash -c "exec 3<>/dev/tcp/$I2/9000" || { pt_fail instances_started; exit 1; }
pt_pass instances_started

# ---- 20 nodes, started together ----
spawn() { # NAME NS REGISTRY BEACON [flags]
	local name=$1 ns=$2 reg=$3 bcn=$4
	shift 4
	mkdir -p "$PT_DIR/$name"
	PD_NS[$name]=$ns
	pt_spawn "$ns" "$PT_DIR/$name.log" "$PD_BIN" -registry "$reg" -beacon "$bcn" -tun=off \
		-identity "$PT_DIR/$name/identity.json" -socket "$PT_DIR/$name/ctl.sock" \
		-keepalive 2s -log-level debug "$@"
	PD_PID[$name]=$PT_PID
}
ORDER1="$I1:9000,$I2:9000"
ORDER2="$I2:9000,$I1:9000"
B1="$I1:9001,$I2:9001"
B2="$I2:9001,$I1:9001"
NODES=()
for ((i = 1; i <= NLAN; i++)); do
	if ((i % 2)); then spawn "n$i" "n$i" $ORDER1 $B1 -hostname "host$i"; else spawn "n$i" "n$i" $ORDER2 $B2 -hostname "host$i"; fi
	NODES+=("n$i")
done
spawn sx nX $ORDER1 $B1
spawn sy nY $ORDER2 $B2
NODES+=(sx sy)
ok=1
for n in "${NODES[@]}"; do
	if pd_wait 30 pd_registered "$n"; then
		PD_ID[$n]=$(pd_ctl "$n" info | pd_json 'd["node_id"]')
	else
		ok=0
		echo "# $n did not register: $(tail -3 "$PT_DIR/$n.log")"
	fi
done
[ $ok = 1 ] && pt_pass twenty_nodes_registered || { pt_fail twenty_nodes_registered; exit 1; }
beacon_is() { [ "$(pd_ctl "$1" info | pd_json 'd["beacon"]')" = "$2" ]; }
pt_check sx_on_beacon1_sy_on_beacon2 pd_wait 10 beacon_is sx $I1:9001 && pd_wait 10 beacon_is sy $I2:9001
on1=0
for n in "${NODES[@]}"; do
	[ "$(pd_ctl "$n" info | pd_json 'd["registry"]')" = $I1:9000 ] && on1=$((on1 + 1))
done
echo "# nodes on instance 1 before the kill: $on1 of ${#NODES[@]}"
pt_check both_instances_serve [ "$on1" -ge 5 ] && [ "$on1" -le 15 ]

# the beacon cluster on PostgreSQL: sx (beacon 1) and sy (beacon 2) behind
# symmetric NATs reach each other through the two beacons
pt_check relay_pair_trust pd_trust_pair sx sy
pt_check relay_pair_ping pd_wait 20 pd_ping_ok sx sy
pt_check relay_pair_path_is_relay [ "$(pd_path sx sy)" = relay ]

# ---- load ----
# registrations by a loader on instance 1 (paced to <= 200/s: it must not
# starve the nodes of CPU), each acknowledged ID appended at once
: >"$PT_DIR/acked"
pt_exec "$PT-ld" env REG_HOST=$I1 REG_LOAD_GAP=0.005 /usr/bin/python3 tests/integration/regclient.py load 9000 20000 "$PT_DIR/acked" \
	>"$PT_DIR/load.log" 2>&1 &
LOADER=$!
PT_PIDS+=("$LOADER")
# hostname writes by the nodes through their registry: "node name" per ack
: >"$PT_DIR/hn_acked"
(
	k=0
	end=$((SECONDS + 40))
	while [ $SECONDS -lt $end ] && [ ! -e "$PT_DIR/hn_stop" ]; do
		for ((i = 1; i <= NLAN; i++)); do
			name="h$i-$k"
			r=$("$PD_CTL" --json --socket "$PT_DIR/n$i/ctl.sock" set-hostname "$name" 2>&1)
			grep -q '"ok":true\|"status":"ok"' <<<"$r" && echo "n$i $name" >>"$PT_DIR/hn_acked"
		done
		k=$((k + 1))
	done
) &
HNW=$!
PT_PIDS+=("$HNW")

# the relayed stream sx -> sy
BYTES=$((6 << 20))
want=$(python3 "$ST" pattern-sha $BYTES)
python3 "$ST" call "$PT_DIR/sy/ctl.sock" test-sink '{"port":5100,"timeout_ms":60000}' 65 >"$PT_DIR/sink" 2>&1 &
SINK=$!
sleep 0.5
t_xfer=$(date +%s%N)
python3 "$ST" call "$PT_DIR/sx/ctl.sock" test-source \
	"{\"target\":\"${PD_ID[sy]}\",\"port\":5100,\"bytes\":$BYTES,\"timeout_ms\":60000}" 65 >"$PT_DIR/src" 2>&1 &
SRC=$!
PT_PIDS+=("$SINK" "$SRC")
sleep 1.5

# handshakes in flight: pairs (n1,n2) (n3,n4) ... (n9,n10), both ways, fired
# now; a request that was refused (not acknowledged) is sent again afterwards
HS=()
for ((i = 1; i <= 9; i += 2)); do
	a=n$i b=n$((i + 1))
	(pd_ctl $a handshake "${PD_ID[$b]}" "fo $a" >"$PT_DIR/hs_$a") &
	HS+=($!)
	(pd_ctl $b handshake "${PD_ID[$a]}" "fo $b" >"$PT_DIR/hs_$b") &
	HS+=($!)
done
sleep 0.3
lines=$(wc -l <"$PT_DIR/acked")
pt_check load_running [ "$lines" -ge 10 ]

# ---- kill -9 instance 1 ----
kill -KILL $INST1
wait $INST1 2>/dev/null
t0=$(date +%s%N)
echo "# kill -9 instance 1 with ${lines}+ registrations acknowledged, stream in flight"
wait "${HS[@]}" 2>/dev/null

# every node served by instance 2: status says registry $I2 registered and
# connected; the time each one got there is measured
SOCKS=()
for n in "${NODES[@]}"; do SOCKS+=("$PT_DIR/$n/ctl.sock"); done
python3 - "$I2:9000" 10 "${SOCKS[@]}" >"$PT_DIR/served" 2>&1 <<'PY'
import json, socket, struct, sys, time
sys.path.insert(0, "tests/integration")
from pilotd_streams import call
want, limit, socks = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
t0 = time.monotonic()
done = {}
while len(done) < len(socks) and time.monotonic() - t0 < limit + 2:
    for s in socks:
        if s in done:
            continue
        try:
            r = call(s, "status", "{}", 3).get("data", {}).get("registry", {})
        except Exception:
            continue
        if r.get("address") == want and r.get("registered") and r.get("connected"):
            done[s] = time.monotonic() - t0
    time.sleep(0.1)
worst = max(done.values()) if done else -1
print("served %d of %d, slowest after %.1f s" % (len(done), len(socks), worst))
for s in socks:
    if s not in done:
        print("not served: %s" % s)
sys.exit(0 if len(done) == len(socks) and worst <= limit else 1)
PY
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
echo "# $(head -1 "$PT_DIR/served") (poll ended ${ms} ms after the kill)"
if [ $rc = 0 ]; then
	pt_pass "every_node_served_by_instance2_within_10s"
else
	pt_fail every_node_served_by_instance2_within_10s "$(tail -n +2 "$PT_DIR/served" | head -5)"
fi
pt_check beacon_failover_sx pd_wait 15 beacon_is sx $I2:9001
echo "# sx on beacon 2 after $((($(date +%s%N) - t0) / 1000000)) ms"

# the relayed transfer completes with the right SHA-256
wait $SRC $SINK
xms=$((($(date +%s%N) - t_xfer) / 1000000))
if pd_json "d['sha256'] == '$want' and d['bytes'] == $BYTES" <"$PT_DIR/sink" >/dev/null; then
	pt_pass "relayed_stream_across_kill_sha256_ok_${xms}ms"
else
	pt_fail relayed_stream_across_kill "sink: $(head -c 300 "$PT_DIR/sink"); source: $(head -c 300 "$PT_DIR/src")"
fi

touch "$PT_DIR/hn_stop" # the writer ends after its current write
wait "$HNW" 2>/dev/null
kill "$LOADER" 2>/dev/null
wait "$LOADER" 2>/dev/null

# handshakes: the ones refused while instance 1 died are sent again; every pair
# ends mutually trusted
for ((i = 1; i <= 9; i += 2)); do
	a=n$i b=n$((i + 1))
	for x in "$a:$b" "$b:$a"; do
		p=${x%:*} q=${x#*:}
		pd_json 'True' <"$PT_DIR/hs_$p" >/dev/null && grep -q '"ok":true\|"status":"ok"' "$PT_DIR/hs_$p" ||
			{ echo "# handshake $p -> $q not acknowledged ($(head -c 120 "$PT_DIR/hs_$p")): again"; pd_ctl "$p" handshake "${PD_ID[$q]}" "fo again" >/dev/null; }
	done
done
hs_ok=1
for ((i = 1; i <= 9; i += 2)); do
	pd_wait 20 pd_trusts "n$i" "n$((i + 1))" && pd_wait 10 pd_trusts "n$((i + 1))" "n$i" || hs_ok=0
done
[ $hs_ok = 1 ] && pt_pass handshakes_in_flight_complete || pt_fail handshakes_in_flight_complete

# no acknowledged write lost: every acknowledged registration, the last
# acknowledged hostname of every node, and the trust pair sx-sy, on instance 2
echo "# acknowledged registrations: $(wc -l <"$PT_DIR/acked"); hostname writes: $(wc -l <"$PT_DIR/hn_acked")"
pt_exec "$PT-ld" env REG_HOST=$I2 /usr/bin/python3 tests/integration/regclient.py checkids 9000 "$PT_DIR/acked" |
	sed 's/^\(PASS\|FAIL\): /\1: failover_/'
bad=""
for ((i = 1; i <= NLAN; i++)); do
	last=$(awk -v n="n$i" '$1 == n { h = $2 } END { print h }' "$PT_DIR/hn_acked")
	[ -n "$last" ] || continue
	got=$(pd_ctl n$((i % NLAN + 1)) lookup "${PD_ID[n$i]}" | pd_json 'd["hostname"]')
	[ "$got" = "$last" ] || bad+=" n$i:$last/$got"
done
[ -z "$bad" ] && pt_pass acked_hostnames_kept || pt_fail acked_hostnames_kept "$bad"
pt_check trust_kept pd_trusts sx sy
pt_check ids_kept [ "$(pd_ctl n1 info | pd_json 'd["node_id"]')" = "${PD_ID[n1]}" ]
pt_check ping_after_failover pd_wait 15 pd_ping_ok sx sy

for n in "${NODES[@]}"; do pd_stop "$n"; done
if grep -q "ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer" "$PT_DIR"/*.log; then
	pt_fail sanitizer_clean "$(grep -h -m3 'Sanitizer\|runtime error' "$PT_DIR"/*.log)"
else
	pt_pass sanitizer_clean
fi
exit $((PT_FAILED > 0))
