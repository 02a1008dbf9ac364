#!/bin/bash
# pilotd tunnel crypto on the wire: a capture on the underlay bridge (AF_PACKET,
# python3) while a marker travels over an echo stream and in ping payloads shows
# encrypted PILS frames and never the marker; forged, truncated and replayed
# frames at a node's tunnel port are dropped and counted (pilotctl --json info
# counters) while the tunnel keeps working; a restarted peer re-keys and pings
# again within seconds. Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash
TOOL=tests/integration/pilotd_tool.py

pd_init crypto

pd_lan a b || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
pd_start a a && pd_start b b || { pt_fail nodes_registered; exit 1; }
pt_check trust_pair pd_trust_pair a b
pt_check first_ping pd_wait 10 pd_ping_ok a b

counter() { # node name
	pd_ctl "$1" info | pd_json "d['counters']['$2']"
}
tunnel_port() {
	pd_ctl "$1" info | pd_json "d['listen_addr'].rsplit(':', 1)[1]"
}

# ---- no plaintext on the wire ----
# Switched frames never reach br0 itself: capture on every bridge port.
MARK="plaintext-marker-$$-$RANDOM"
CAP=$PT_DIR/cap.bin
pt_spawn net "$PT_DIR/cap.log" python3 "$TOOL" capture any 30 "$CAP"
CAP_PID=$PT_PID
pd_wait 5 test -e "$CAP.ready"
r=$(pd_ctl a connect "${PD_ID[b]}" 7 --message "$MARK-stream" --timeout 5s)
pt_check marker_stream_echoed bash -c "echo '$r' | grep -q '$MARK-stream'"
pd_ctl a ping "${PD_ID[b]}" --count 3 --timeout 5s >/dev/null
"$BUILD/san/bin/pilotctl" --json --socket "$PT_DIR/a/ctl.sock" ping "${PD_ID[b]}" --count 1 >/dev/null 2>&1
pt_stop "$CAP_PID"
pils=$(python3 "$TOOL" count "$CAP" PILS)
if [ "${pils:-0}" -gt 0 ]; then pt_pass "capture_sees_pils_frames_$pils"; else pt_fail capture_sees_pils_frames; fi
pt_check no_plaintext_marker_on_wire bash -c "! python3 $TOOL grep $CAP '$MARK'"
pt_check no_plaintext_pilt_frames bash -c "[ \"\$(python3 $TOOL count $CAP PILT)\" = 0 ]"

# ---- forged and truncated frames ----
PORT_B=$(tunnel_port b)
auth0=$(counter b tunnel_drop_auth)
mal0=$(counter b tunnel_drop_malformed)
pt_exec "$PT-a" python3 "$TOOL" forge 198.18.0.11 "$PORT_B" "${PD_ID[a]}" 50
pt_check forged_frames_counted pd_wait 5 bash -c "[ \$($PD_CTL --json --socket $PT_DIR/b/ctl.sock info | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"data\"][\"counters\"][\"tunnel_drop_auth\"])') -ge $((auth0 + 50)) ]"
mal1=$(counter b tunnel_drop_malformed)
if [ "${mal1:-0}" -gt "${mal0:-0}" ]; then pt_pass truncated_frames_counted; else pt_fail truncated_frames_counted "$mal0 -> $mal1"; fi

# ---- replayed frames ----
rp0=$(counter b tunnel_drop_replay)
sent=$(pt_exec "$PT-a" python3 "$TOOL" replay "$CAP" 198.18.0.11 "$PORT_B")
rp1=$(counter b tunnel_drop_replay)
if [ "${sent:-0}" -gt 0 ] && [ "$rp1" -gt "$rp0" ]; then
	pt_pass "replayed_frames_dropped_${sent}_sent"
else
	pt_fail replayed_frames_dropped "sent ${sent:-0}, drop_replay $rp0 -> $rp1"
fi
pt_check tunnel_works_after_attack pd_ping_ok a b 3

# ---- restart one side: re-key ----
pd_restart b || pt_fail restart_registered
start=$SECONDS
if pd_wait 15 pd_ping_ok a b 1; then
	pt_pass "rekey_after_restart_in_$((SECONDS - start))s"
else
	pt_fail rekey_after_restart
fi
pt_check ping_back_after_restart pd_wait 10 pd_ping_ok b a 1

for n in a b; do
	pd_stop "$n"
	rc=$?
	if [ $rc = 0 ]; then pt_pass "sigterm_exit_0_$n"; else pt_fail "sigterm_exit_0_$n" "rc $rc"; fi
done
exit 0
