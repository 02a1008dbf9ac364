#!/bin/bash
# Mixed networks with reference daemons (issue 15), reproduced without the
# reference: node "r" runs pilotd -test-ref-peer, which behaves like the reference
# on the wire (no window update when its reader drains, no answer to a pure ACK,
# no key exchange in answer to a frame it cannot decrypt, and, as every pilotd,
# a new tunnel key after a restart).
#   uploads: 10 x 64 MiB from "a" to readers on "r" that pause first (the window
#     closes; only a zero-window probe carrying data gets an answer), all at once,
#     every one complete with the right SHA-256;
#   restart: "r" restarts with the same identity and port while "a" still holds
#     the old session; a's next connect succeeds within 3 s (a silent peer gets
#     a fresh key exchange);
#   the zero-window probe against our own reader (which does send updates);
#   error hints: the registry's refusal (why, what to do) for an untrusted node,
#   a stall in mid-transfer, a trusted peer that does not answer.
# Prints PASS:/FAIL: lines and figures.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash
ST=tests/integration/pilotd_streams.py

pd_init interop

pd_lan a r c || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
pd_start a a && pd_start r r -test-ref-peer -listen :4100 && pd_start c c || { pt_fail nodes_registered; exit 1; }
pt_check trust_pair pd_trust_pair a r
pt_check first_ping pd_wait 10 pd_ping_ok a r

call() { # node cmd args_json [secs]
	python3 "$ST" call "$PT_DIR/$1/ctl.sock" "$2" "$3" "${4:-60}"
}
R=${PD_ID[r]}

# ---- 10 x 64 MiB uploads, in parallel, to ref-like readers that pause 3 s first ----
UP=$((64 << 20))
want=$(python3 "$ST" pattern-sha $UP)
ok=0 probed=0 zwp=0 t0=$SECONDS pids=() p0=$(pd_ports r)
for i in $(seq 0 9); do
	call r test-sink "{\"port\":$((5100 + i)),\"pause_ms\":3000,\"timeout_ms\":85000}" 90 \
		>"$PT_DIR/sink$i.json" &
	pids+=($!)
done
pd_wait 20 pd_ports_at_least r $((p0 + 10)) || pt_fail sinks_listening "$(pd_ports r) ports, want $((p0 + 10))"
for i in $(seq 0 9); do
	call a test-source "{\"target\":\"$R\",\"port\":$((5100 + i)),\"bytes\":$UP,\"timeout_ms\":85000}" 90 \
		>"$PT_DIR/src$i.json" &
	pids+=($!)
done
wait "${pids[@]}"
for i in $(seq 0 9); do
	got=$(pd_json 'd["sha256"]' <"$PT_DIR/sink$i.json" 2>/dev/null)
	n=$(pd_json 'd["bytes"]' <"$PT_DIR/sink$i.json" 2>/dev/null)
	z=$(pd_json 'd["stats"]["zwp_sent"]' <"$PT_DIR/src$i.json" 2>/dev/null)
	zwp=$((zwp + ${z:-0}))
	[ "${z:-0}" -gt 0 ] && probed=$((probed + 1))
	if [ "$got" = "$want" ] && [ "$n" = "$UP" ]; then
		ok=$((ok + 1))
	else
		echo "upload $i: src=$(head -c 600 "$PT_DIR/src$i.json") sink=$(head -c 600 "$PT_DIR/sink$i.json")"
	fi
done
if [ "$ok" = 10 ]; then
	pt_pass "upload_64MiB_x10_to_ref_like_reader_sha256_in_$((SECONDS - t0))s"
else
	pt_fail upload_64MiB_x10_to_ref_like_reader "$ok of 10 complete"
fi
# every upload met the closed window and got past it by probing
if [ "$probed" = 10 ]; then
	pt_pass "uploads_probed_closed_window_${zwp}_probes"
else
	pt_fail uploads_probed_closed_window "$probed of 10 probed"
fi

# ---- the same probe against our own reader (window updates on) ----
A=${PD_ID[a]}
p0=$(pd_ports a)
call a test-sink '{"port":5200,"pause_ms":1500,"timeout_ms":60000}' >"$PT_DIR/sinkA.json" &
SINK=$!
pd_wait 20 pd_ports_at_least a $((p0 + 1))
src=$(call r test-source "{\"target\":\"$A\",\"port\":5200,\"bytes\":$((16 << 20)),\"timeout_ms\":60000}")
wait $SINK
if [ "$(pd_json 'd["sha256"]' <"$PT_DIR/sinkA.json")" = "$(python3 "$ST" pattern-sha $((16 << 20)))" ]; then
	pt_pass "download_16MiB_from_ref_like_sender_paused_reader"
else
	pt_fail download_16MiB_from_ref_like_sender_paused_reader "src=$src sink=$(cat "$PT_DIR/sinkA.json")"
fi

# ---- restart with the same identity: a's next connect within 3 s ----
pd_stop r
pd_start r r -test-ref-peer -listen :4100 || { pt_fail ref_like_restarted; exit 1; }
t0=$(date +%s%N)
r=$(pd_ctl a connect "$R" 7 --message after-restart --timeout 10s)
ms=$((($(date +%s%N) - t0) / 1000000))
if echo "$r" | grep -q '"response": *"after-restart"' && [ "$ms" -le 3000 ]; then
	pt_pass "connect_after_ref_like_restart_in_${ms}ms"
else
	pt_fail connect_after_ref_like_restart "$ms ms: $r"
fi
rk=$(pd_ctl a info | pd_json 'd["counters"]["tunnel_silent_rekeys"]')
if [ "${rk:-0}" -ge 1 ]; then pt_pass "silent_peer_rekeyed_$rk"; else pt_fail silent_peer_rekeyed "$rk"; fi
pt_check ping_after_restart pd_wait 5 pd_ping_ok a r

# ---- error texts: what happened and what to do, only where it applies ----
# an untrusted node: the registry refused r's endpoint, and says why
r=$(pd_ctl c connect "$R" 7 --message x --timeout 5s)
if echo "$r" | grep -q "refused to disclose.*is private and shares no trust.*pilotctl handshake $R"; then
	pt_pass hint_resolve_refused_says_private_and_what_to_do
else
	pt_fail hint_resolve_refused_says_private_and_what_to_do "$r"
fi
# a stall in mid-transfer is not a trust problem
p0=$(pd_ports r)
call r test-sink '{"port":5300,"pause_ms":60000,"timeout_ms":30000}' >/dev/null &
SINK=$!
pd_wait 20 pd_ports_at_least r $((p0 + 1))
call a test-source "{\"target\":\"$R\",\"port\":5300,\"bytes\":$((64 << 20)),\"timeout_ms\":30000}" >"$PT_DIR/stall.json" &
SRC=$!
sleep 2
pd_stop r
wait $SRC $SINK
if grep -q '"hint": *"the connection was up, then' "$PT_DIR/stall.json" && ! grep -q "private node" "$PT_DIR/stall.json"; then
	pt_pass hint_stall_mid_transfer
else
	pt_fail hint_stall_mid_transfer "$(cat "$PT_DIR/stall.json")"
fi
# a trusted peer that does not answer
r=$(pd_ctl a connect "$R" 7 --message x --timeout 3s)
if echo "$r" | grep -q '"hint": *"[^"]* is trusted but did not answer'; then
	pt_pass hint_trusted_peer_silent
else
	pt_fail hint_trusted_peer_silent "$r"
fi

pd_stop a
pd_stop c
pt_check no_sanitizer_reports bash -c "! grep -q -E 'ERROR: (Address|Leak)Sanitizer|runtime error' $PT_DIR/a.log $PT_DIR/r.log $PT_DIR/c.log"
