#!/bin/bash
# Pilot streams, datagrams and the built-in services between two pilotd nodes
# (mutually trusted) and a rendezvous on one bridge, driven through pilotctl and
# the control socket (tests/integration/pilotd_streams.py for the hidden test
# verbs echo-rtt, echo-many, test-source, test-sink, dgram-send):
#   RST on a closed port (refused at once), half-close over echo, 200 sequential
#   100-byte echo round trips on one stream (no 40 ms stall), 200 concurrent echo
#   streams, a reader that pauses 3 s (zero window) and resumes losing nothing,
#   data exchange (message + file), pub/sub with a "*" subscriber, datagrams to a
#   listen port, junk injected at the tunnel port during a transfer. The lossy
#   transfers are in pilotd_streams_loss.sh. Prints PASS:/FAIL: lines and figures.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash
TOOL=tests/integration/pilotd_tool.py
ST=tests/integration/pilotd_streams.py

pd_init streams

pd_lan a b || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
pd_start a a && pd_start b b || { pt_fail nodes_registered; exit 1; }
pt_check trust_pair pd_trust_pair a b
pt_check first_ping pd_wait 10 pd_ping_ok a b

call() { # node cmd args_json [secs]
	python3 "$ST" call "$PT_DIR/$1/ctl.sock" "$2" "$3" "${4:-60}"
}
pd_ok() { pd_json "$1" >/dev/null; }
B=${PD_ID[b]}

# ---- RST on a closed port: refused at once, not a timeout ----
# (a first dial warms the path up: the timing below is the RST alone)
call a connect "{\"target\":\"$B\",\"port\":4443,\"message\":\"x\",\"timeout_ms\":10000}" >/dev/null
t0=$(date +%s%N)
r=$(pd_ctl a connect "$B" 4444 --message hello --timeout 10s)
ms=$((($(date +%s%N) - t0) / 1000000))
if echo "$r" | grep -q "refused" && [ "$ms" -lt 2000 ]; then
	pt_pass "closed_port_refused_in_${ms}ms"
else
	pt_fail closed_port_refused "$ms ms: $r"
fi

# ---- send / connect through echo; half-close: FIN after the message, echo drains and closes ----
r=$(pd_ctl a send "$B" 7 --data "hello-echo" --timeout 10s)
pt_check send_echo bash -c "echo '$r' | grep -q '\"response\": *\"hello-echo\"'"
r=$(call a connect "{\"target\":\"$B\",\"port\":7,\"message\":\"half-close-$$\",\"half_close\":true,\"timeout_ms\":10000}")
if echo "$r" | pd_json "d['response'] == 'half-close-$$' and d['eof']" >/dev/null; then
	pt_pass half_close_echo_then_eof
else
	pt_fail half_close_echo_then_eof "$r"
fi

# ---- 200 sequential request/response round trips on one stream ----
r=$(call a echo-rtt "{\"target\":\"$B\",\"count\":200,\"size\":100,\"timeout_ms\":30000}")
max=$(echo "$r" | pd_json 'd["max_ms"]')
mean=$(echo "$r" | pd_json 'round(d["mean_ms"], 3)')
if echo "$r" | pd_json 'd["count"] == 200 and d["max_ms"] < 40' >/dev/null; then
	pt_pass "echo_200_round_trips_max_${max}ms_mean_${mean}ms"
else
	pt_fail echo_200_round_trips "$r"
fi

# ---- 200 concurrent streams (dialled 50 at once, then one per 100 ms: the per-peer SYN rate) ----
r=$(call a echo-many "{\"target\":\"$B\",\"streams\":200,\"bytes\":16384,\"timeout_ms\":60000}" 70)
if echo "$r" | pd_json 'd["ok"] == 200 and d["max_open"] == 200' >/dev/null; then
	pt_pass "concurrent_200_streams_in_$(echo "$r" | pd_json 'int(d["duration_ms"])')ms"
else
	pt_fail concurrent_200_streams "$r"
fi

# ---- zero window: the reader stops for 3 s, then resumes; nothing lost ----
ZW=$((16 << 20))
call b test-sink '{"port":5000,"pause_ms":3000,"timeout_ms":60000}' > "$PT_DIR/sink.json" &
SINK=$!
sleep 0.5
src=$(call a test-source "{\"target\":\"$B\",\"port\":5000,\"bytes\":$ZW,\"timeout_ms\":60000}")
wait $SINK
want=$(python3 "$ST" pattern-sha $ZW)
got=$(pd_json 'd["sha256"]' < "$PT_DIR/sink.json")
zwp=$(echo "$src" | pd_json 'd["stats"]["zwp_sent"]')
if [ "$got" = "$want" ] && [ "$(pd_json 'd["bytes"]' < "$PT_DIR/sink.json")" = "$ZW" ]; then
	pt_pass "paused_reader_lost_nothing_16MiB_zero_window_probes_${zwp:-0}"
else
	pt_fail paused_reader_lost_nothing "src=$src sink=$(cat "$PT_DIR/sink.json")"
fi
if [ "${zwp:-0}" -gt 0 ]; then pt_pass sender_probed_zero_window; else pt_fail sender_probed_zero_window "$src"; fi

# ---- data exchange ----
r=$(pd_ctl a send-message "$B" --data "hi-inbox-$$" --type text)
if echo "$r" | pd_json 'd["ack"].startswith("ACK")' >/dev/null; then
	pt_pass send_message_acked
else
	pt_fail send_message_acked "$r"
fi
pt_check inbox_has_message bash -c "python3 $ST call $PT_DIR/b/ctl.sock inbox '{}' | grep -q 'hi-inbox-$$'"
# 16 MiB - 4 KiB: one data-exchange frame carries at most 16 MiB, name included
head -c $(((16 << 20) - 4096)) /dev/urandom > "$PT_DIR/small.bin"
r=$(pd_ctl a send-file "$B" "$PT_DIR/small.bin" --timeout 60s)
f=$(ls "$PT_DIR"/b/received/small-*.bin 2>/dev/null | head -n1)
if echo "$r" | pd_json 'd["ack"].startswith("ACK") and d["bytes"] == (16 << 20) - 4096' >/dev/null && [ -n "$f" ] \
	&& [ "$(sha256sum < "$f")" = "$(sha256sum < "$PT_DIR/small.bin")" ]; then
	pt_pass dataexchange_16MiB_file_sha256_matches
else
	pt_fail dataexchange_file_sha256_matches "$r $f"
fi

# ---- pub/sub: "*" gets both topics, "t1" only its own ----
pd_ctl a subscribe "$B" '*' --count 2 --timeout 20s > "$PT_DIR/sub_all.json" &
S1=$!
pd_ctl a subscribe "$B" t1 --count 2 --timeout 6s > "$PT_DIR/sub_t1.json" &
S2=$!
sleep 1.5
pd_ctl a publish "$B" t1 --data one >/dev/null
pd_ctl a publish "$B" t2 --data two >/dev/null
wait $S1 $S2
pt_check wildcard_subscriber_got_both pd_ok \
	'sorted((e["topic"], e["data"]) for e in d["events"]) == [("t1","one"),("t2","two")]' < "$PT_DIR/sub_all.json"
pt_check topic_subscriber_got_only_its_topic pd_ok \
	'[(e["topic"], e["data"]) for e in d["events"]] == [("t1","one")] and d["timeout"]' < "$PT_DIR/sub_t1.json"

# ---- datagrams: listen binds the port for the request ----
pd_ctl b listen 5555 --count 2 --timeout 10s > "$PT_DIR/listen.json" &
L=$!
sleep 0.5
call a dgram-send "{\"target\":\"$B\",\"port\":5555,\"data\":\"dg-1\"}" >/dev/null
call a dgram-send "{\"target\":\"$B\",\"port\":5555,\"data\":\"dg-2\"}" >/dev/null
wait $L
pt_check listen_got_datagrams pd_ok '[m["data"] for m in d["messages"]] == ["dg-1","dg-2"]' < "$PT_DIR/listen.json"

# ---- junk at the tunnel port during a transfer: dropped, counted, transfer intact ----
drops() {
	pd_ctl b info | pd_json 'sum(v for k, v in d["counters"].items() if k.startswith("tunnel_drop"))'
}
PORT_B=$(pd_ctl b info | pd_json "d['listen_addr'].rsplit(':', 1)[1]")
d0=$(drops)
JB=$((32 << 20))
call b test-sink '{"port":5001,"timeout_ms":60000}' > "$PT_DIR/sink2.json" &
SINK=$!
sleep 0.5
pt_exec "$PT-a" python3 "$TOOL" junk 198.18.0.11 "$PORT_B" 3000 7 &
J=$!
call a test-source "{\"target\":\"$B\",\"port\":5001,\"bytes\":$JB,\"timeout_ms\":60000}" >/dev/null
wait $SINK $J
d1=$(drops)
want=$(python3 "$ST" pattern-sha $JB)
if [ "$(pd_json 'd["sha256"]' < "$PT_DIR/sink2.json")" = "$want" ] && [ "$d1" -ge $((d0 + 1000)) ]; then
	pt_pass "junk_during_transfer_dropped_$((d1 - d0))_transfer_intact"
else
	pt_fail junk_during_transfer "drops $d0 -> $d1, sink $(cat "$PT_DIR/sink2.json")"
fi

pt_check ping_after_all pd_ping_ok a b 2
pd_stop a
pd_stop b
pt_check no_sanitizer_reports bash -c "! grep -q -E 'ERROR: (Address|Leak)Sanitizer|runtime error' $PT_DIR/a.log $PT_DIR/b.log"
