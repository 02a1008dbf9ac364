#!/bin/bash
# Regression for transfers through the TUN that moved nothing (iperf3 through the
# TUN stalled until killed in about one run in three to five, scripts/bench-ab): a
# restarted pilotd reuses its first Pilot ports, so the bridge of the other node
# opens kernel flows on the 4-tuples of the previous run's connections, which the
# kernel still holds (TIME_WAIT); a SYN whose ISN fell below that connection's
# sequence space got an ACK of the old one, which tcpep dropped, and every SYN
# retransmission met the same ACK. Here: a bounded loop of short iperf3 runs (TCP,
# and UDP, whose control connection is TCP too), pilotd A restarted before each, so
# each run reuses the ports of the one before; every run must move data. Then
# SIGTERM to both while a TCP flow through the TUN is open (it was a
# use-after-free). LOOP_RUNS / LOOP_SECS tune the loop, LOOP_REL=1 runs the release
# build. Prints PASS:/FAIL:.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

if [ "${LOOP_REL:-0}" = 1 ]; then # the release build (the stall showed there)
	pt_init tunloop
	PD_BIN=${BUILD:-build}/rel/bin/pilotd
	PD_CTL=${BUILD:-build}/rel/bin/pilotctl
	PD_RDV=${BUILD:-build}/rel/bin/pilot-rendezvous
else
	pd_init tunloop
fi
trap pt_cleanup EXIT
RUNS=${LOOP_RUNS:-6}
SECS=${LOOP_SECS:-1}
command -v iperf3 >/dev/null || { pt_fail "tool_present (iperf3 missing)"; exit 1; }

pd_lan a b || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }

ok=1
pd_start a a -public -hostname alpha || ok=0
pd_start b b -public -hostname bravo || ok=0
[ $ok = 1 ] || { pt_fail pair_started; exit 1; }
pt_check trust_pair_ab pd_trust_pair a b
own_b=$(pd_ctl b info | pd_json "d['tun']['ipv4']")
ip_b=$(pd_ctl a map "${PD_ID[b]}" | pd_json 'd["local_ip"]')
pt_spawn b "$PT_DIR/iperf.log" iperf3 -s -B "$own_b" -p 5201
pt_wait 10 pt_exec "$PT-b" bash -c "ss -Hltn 'sport = :5201' | grep -q ." || pt_fail iperf3_server_started

stalls=0
dump() {
	local n
	for n in a b; do
		echo "---- $n info/tun/connections/peers"
		pd_ctl "$n" info
		pd_ctl "$n" tun
		pd_ctl "$n" connections
		pd_ctl "$n" peers
	done
}
one_run() { # $1 = run number, $2 = tcp|udp
	local i=$1 kind=$2 out=$PT_DIR/run.$1.$2.json args=()
	[ "$kind" = udp ] && args=(-u -b 20M -l 1200)
	timeout -k 2 $((SECS + 15)) ip netns exec "$PT-a" iperf3 -c "$ip_b" -p 5201 -t "$SECS" -J \
		--connect-timeout 5000 "${args[@]}" >"$out" 2>&1
	python3 - "$out" "$kind" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("no result: %s" % e); sys.exit(1)
if "error" in d:
    print("iperf3 error: %s" % d["error"]); sys.exit(1)
e = d["end"]
s = e["sum_received"] if sys.argv[2] == "tcp" else e["sum"]
print("%s: %.0f Mbit/s %d bytes" % (sys.argv[2], s["bits_per_second"] / 1e6, s["bytes"]))
ivs = [iv["sum"]["bytes"] for iv in d["intervals"]]
print("intervals: %s" % ivs)
sys.exit(0 if s["bytes"] > 0 and ivs and ivs[0] > 0 else 1)
PY
}
for i in $(seq "$RUNS"); do
	kind=tcp
	[ $((i % 3)) = 0 ] && kind=udp
	if one_run "$i" "$kind"; then
		echo "run $i $kind ok"
	else
		stalls=$((stalls + 1))
		echo "run $i $kind STALLED"
		dump >"$PT_DIR/stall.$i.$kind.txt" 2>&1
		cp "$PT_DIR/a.log" "$PT_DIR/stall.$i.$kind.a.log"
		cp "$PT_DIR/b.log" "$PT_DIR/stall.$i.$kind.b.log"
		[ -n "${LOOP_KEEP:-}" ] && cp "$PT_DIR"/stall.* "$LOOP_KEEP"/ 2>/dev/null
	fi
	if [ "$i" -lt "$RUNS" ]; then
		pd_stop a
		pd_start a a -public -hostname alpha || { pt_fail "a_restarted_$i"; break; }
	fi
done
echo "b reset $(pd_ctl b tun | pd_json "d['stats']['tcp_stale_resets']") old kernel connections"
pt_check "no_stalled_transfer_in_${RUNS}_runs" test "$stalls" = 0

# SIGTERM while a TCP flow through the TUN is open: pilotd used to free the conn
# under the bridge's flow (use-after-free in node_free; ASan reports it).
ip netns exec "$PT-a" timeout -k 2 20 iperf3 -c "$ip_b" -p 5201 -t 10 >/dev/null 2>&1 &
IPERF_PID=$!
flow_open() { pd_ctl a info | pd_json "d['tun']['flows_active'] > 0" >/dev/null; }
pd_wait 10 flow_open ||
	pt_fail flow_open_before_stop
pd_stop a
rc_a=$?
pd_stop b
rc_b=$?
wait "$IPERF_PID" 2>/dev/null
pt_check stop_with_open_flow_exit_0 test "$rc_a/$rc_b" = 0/0
pt_check stop_with_open_flow_clean bash -c "! grep -l 'ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer\|Segmentation' $PT_DIR/a.log $PT_DIR/b.log"
[ "$PT_FAILED" = 0 ]
