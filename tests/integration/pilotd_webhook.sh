#!/bin/bash
# Webhooks (services.md §9) in namespaces: pilotd -webhook to a local HTTP
# receiver with -webhook-secret delivers node.registered and, after B sends a
# message, message.received, each with a valid X-Pilot-Signature HMAC-SHA256;
# a receiver answering 503 once gets the event again (retry with backoff); a
# dead receiver (accepts TCP, never answers) never blocks the daemon: control
# verbs and pings stay fast while deliveries time out; clear-webhook stops
# deliveries; the trust events (handshake approval, trust.revoked on
# untrust) and node.deregistered are delivered; one event of each per-connection,
# tunnel, datagram and security group arrives signed (conn.*, tunnel.*,
# data.datagram rate-limited under a datagram burst with the rest counted as
# suppressed, security.syn_rate_limited under a SYN burst past
# -syn-rate-limit, security.nonce_replay for replayed captured frames).
# Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

TOOL=tests/integration/pilotd_tool.py

pd_init webhook

pd_lan a b || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }

# Receiver on A's loopback: every POST as one JSON line; /flaky answers 503 the
# first time; port 8090 accepts connections and never answers.
pt_spawn a "$PT_DIR/recv.log" python3 -c '
import json, socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
out = open(sys.argv[1], "a")
flaky = [0]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        code = 200
        if self.path == "/flaky":
            flaky[0] += 1
            code = 503 if flaky[0] == 1 else 200
        out.write(json.dumps({"path": self.path, "sig": self.headers.get("X-Pilot-Signature", ""),
                              "ctype": self.headers.get("Content-Type", ""), "code": code,
                              "body": body.decode()}) + "\n")
        out.flush()
        self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
dead = socket.socket(); dead.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
dead.bind(("127.0.0.1", 8090)); dead.listen(64)
ThreadingHTTPServer(("127.0.0.1", 8089), H).serve_forever()
' "$PT_DIR/hooks.jsonl"
sleep 0.5

ok=1
pd_start a a -webhook http://127.0.0.1:8089/hook -webhook-secret s3cret -syn-rate-limit 5 || ok=0
pd_start b b || ok=0
if [ $ok = 1 ]; then pt_pass nodes_registered; else pt_fail nodes_registered; exit 1; fi
pt_check trust_a_b pd_trust_pair a b

# hook EVENT [PATH]: a delivered event with a valid signature (prints its data)
hook() {
	python3 - "$PT_DIR/hooks.jsonl" "$1" "${2:-/hook}" <<'PY'
import hashlib, hmac, json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    b = json.loads(r["body"])
    if b["event"] != sys.argv[2] or r["path"] != sys.argv[3] or r["code"] != 200:
        continue
    want = "sha256=" + hmac.new(b"s3cret", r["body"].encode(), hashlib.sha256).hexdigest()
    if r["sig"] == want and r["ctype"] == "application/json" and b["timestamp"].endswith("Z"):
        print(json.dumps(b.get("data", {})))
        sys.exit(0)
sys.exit(1)
PY
}
count() { grep -c "$1" "$PT_DIR/hooks.jsonl" 2>/dev/null; }
# the one /flaky request answered 503 was sent again and answered 200
flaky_retried() {
	python3 - "$PT_DIR/hooks.jsonl" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
rs = [r for r in rs if r["path"] == "/flaky"]
bad = [r["body"] for r in rs if r["code"] == 503]
sys.exit(0 if len(bad) == 1 and any(r["code"] == 200 and r["body"] == bad[0] for r in rs) else 1)
PY
}

pt_check node_registered_signed pd_wait 10 hook node.registered
if hook node.registered | pd_json "d['address'] == '$(pd_ctl a info | pd_json 'd["address"]')'" >/dev/null; then
	pt_pass node_registered_address
else
	pt_fail node_registered_address "$(hook node.registered)"
fi
pd_ctl b send-message "${PD_ID[a]}" --data "hello-hook" >/dev/null
pt_check message_received_signed pd_wait 10 hook message.received
if hook message.received | pd_json "d['from'] == '$(pd_ctl b info | pd_json 'd["address"]')' and d['size'] == 10" >/dev/null; then
	pt_pass message_received_data
else
	pt_fail message_received_data "$(hook message.received)"
fi

# ---- conn.* and tunnel.* (B dialled A for the handshake and the message) ----
for e in conn.syn_received conn.established conn.fin tunnel.peer_added tunnel.established; do
	pt_check "${e}_signed" pd_wait 10 hook $e
done
BADDR=$(pd_ctl b info | pd_json 'd["address"]')
if hook conn.established | pd_json "d['src_addr'] == '$BADDR' and d['conn_id'] > 0 and d['dst_port'] > 0" >/dev/null; then
	pt_pass conn_established_data
else
	pt_fail conn_established_data "$(hook conn.established)"
fi
if hook tunnel.established | pd_json "d['peer_node_id'] == ${PD_ID[b]} and d['authenticated'] is True" >/dev/null; then
	pt_pass tunnel_established_data
else
	pt_fail tunnel_established_data "$(hook tunnel.established)"
fi

# ---- data.datagram: a burst of 200 is rate-limited, the rest counted ----
pd_ctl a listen 5555 --count 200 --timeout 30s >/dev/null &
L=$!
sleep 0.5
t0=$SECONDS
python3 - "$PT_DIR/b/ctl.sock" "${PD_ID[a]}" <<'PY'
import sys
sys.path.insert(0, "tests/integration")
from pilotd_streams import call
for i in range(200):
    call(sys.argv[1], "dgram-send", '{"target":"%s","port":5555,"data":"dg%03d"}' % (sys.argv[2], i), 5)
PY
pt_check data_datagram_signed pd_wait 10 hook data.datagram
if hook data.datagram | pd_json "d['src_addr'] == '$BADDR' and d['dst_port'] == 5555 and d['size'] == 5" >/dev/null; then
	pt_pass data_datagram_data
else
	pt_fail data_datagram_data "$(hook data.datagram)"
fi
wait $L
el=$((SECONDS - t0 + 1))
sleep 1
ndg=$(count data.datagram)
st=$(pd_ctl a set-webhook)
# at most 10 at once and 10 per second; every datagram either sent or counted
if [ "${ndg:-0}" -le $((10 + 10 * el)) ] && echo "$st" | pd_json "d['suppressed'] + $ndg >= 200 and d['suppressed'] > 0 and d['dropped'] == 0" >/dev/null; then
	pt_pass "data_datagram_rate_limited_${ndg}_sent"
else
	pt_fail data_datagram_rate_limited "$ndg events, $st"
fi

# ---- security.syn_rate_limited: 12 SYNs at once past -syn-rate-limit 5 ----
pids=()
for i in $(seq 12); do
	pd_ctl b connect "${PD_ID[a]}" 7 --message "syn-$i" --timeout 15s >/dev/null 2>&1 &
	pids+=($!)
done
wait "${pids[@]}"
pt_check syn_rate_limited_signed pd_wait 10 hook security.syn_rate_limited
if hook security.syn_rate_limited | pd_json "d['src_addr'] == '$BADDR' and d['src_port'] > 0" >/dev/null; then
	pt_pass syn_rate_limited_data
else
	pt_fail syn_rate_limited_data "$(hook security.syn_rate_limited)"
fi

# ---- security.nonce_replay: B's captured frames sent to A again ----
CAP=$PT_DIR/cap.bin
pt_spawn net "$PT_DIR/cap.log" python3 "$TOOL" capture any 20 "$CAP"
CAP_PID=$PT_PID
pd_wait 5 test -e "$CAP.ready"
pd_ctl b ping "${PD_ID[a]}" --count 3 --timeout 5s >/dev/null
pt_stop "$CAP_PID"
PORT_A=$(pd_ctl a info | pd_json "d['listen_addr'].rsplit(':', 1)[1]")
sent=$(pt_exec "$PT-b" python3 "$TOOL" replay "$CAP" 198.18.0.10 "$PORT_A")
pt_check "nonce_replay_signed_${sent:-0}_replayed" pd_wait 10 hook security.nonce_replay
if hook security.nonce_replay | pd_json "d['peer_node_id'] == ${PD_ID[b]} and d['counter'] >= 0" >/dev/null; then
	pt_pass nonce_replay_data
else
	pt_fail nonce_replay_data "$(hook security.nonce_replay)"
fi

# ---- trust: the mutual handshake above, then untrust ----
hs() { # an approval event naming B
	for e in handshake.auto_approved handshake.approved; do
		hook $e | pd_json "d['peer_node_id'] == ${PD_ID[b]}" && return 0
	done
	return 1
}
pt_check handshake_approved_event pd_wait 5 hs

# ---- retry after a 503 ----
pd_ctl a set-webhook http://127.0.0.1:8089/flaky >/dev/null
pd_ctl b send-message "${PD_ID[a]}" --data "flaky" >/dev/null
pt_check retried_after_503 pd_wait 10 hook message.received /flaky
if flaky_retried &&
	pd_ctl a set-webhook | pd_json "d['retries'] >= 1 and d['delivered'] >= 1" >/dev/null; then
	pt_pass retry_counted
else
	pt_fail retry_counted "$(grep -c flaky "$PT_DIR/hooks.jsonl") $(pd_ctl a set-webhook)"
fi

# ---- a dead receiver never blocks the daemon ----
pd_ctl a set-webhook http://127.0.0.1:8090/dead >/dev/null
for i in 1 2 3 4 5; do pd_ctl b send-message "${PD_ID[a]}" --data "dead-$i" >/dev/null; done
slow=0
t0=$SECONDS
for i in $(seq 20); do
	s=$(date +%s%N)
	pd_ctl a info >/dev/null
	e=$((($(date +%s%N) - s) / 1000000))
	[ $e -gt 1000 ] && slow=$((slow + 1))
	sleep 0.3
done
if [ $slow = 0 ]; then pt_pass dead_receiver_info_fast; else pt_fail dead_receiver_info_fast "$slow of 20 over 1 s"; fi
pt_check dead_receiver_ping pd_ping_ok a b
st=$(pd_ctl a set-webhook)
if echo "$st" | pd_json "d['waiting'] >= 1 and d['delivered'] >= 2" >/dev/null; then
	pt_pass dead_receiver_queued
else
	pt_fail dead_receiver_queued "$st"
fi
echo "waited $((SECONDS - t0)) s with a dead receiver: $st"

# ---- clear-webhook: nothing more is sent ----
pd_ctl a clear-webhook >/dev/null
n0=$(wc -l <"$PT_DIR/hooks.jsonl")
pd_ctl b send-message "${PD_ID[a]}" --data "after-clear" >/dev/null
sleep 1
if [ "$(wc -l <"$PT_DIR/hooks.jsonl")" = "$n0" ]; then pt_pass clear_webhook_stops; else pt_fail clear_webhook_stops; fi

# ---- untrust -> trust.revoked (back on the live receiver) ----
pd_ctl a set-webhook http://127.0.0.1:8089/hook >/dev/null
pd_ctl a untrust "${PD_ID[b]}" >/dev/null
pt_check trust_revoked_event pd_wait 10 bash -c "grep -q trust.revoked '$PT_DIR/hooks.jsonl'"
if hook trust.revoked | pd_json "d['peer_node_id'] == ${PD_ID[b]}" >/dev/null; then pt_pass trust_revoked_signed; else pt_fail trust_revoked_signed; fi

# ---- deregister -> node.deregistered (no data) ----
pd_ctl a deregister >/dev/null
pt_check node_deregistered_event pd_wait 10 hook node.deregistered

for n in a b; do
	pd_stop "$n"
	rc=$?
	if [ $rc = 0 ]; then pt_pass "sigterm_exit_0_$n"; else pt_fail "sigterm_exit_0_$n" "rc $rc"; fi
done
exit 0
