#!/bin/bash
# The compat WebSocket bridge keeps a quiet but live peer (issue 16, Deliver 6). A
# reference daemon sends no data for minutes when it has nothing to say; its WS
# library answers pings. With -wss-idle-timeout 3s (the default is 90 s; short for
# the test) three authenticated peers stay silent for 8 s:
#   - one answers the bridge's pings with pongs: still open, and it was pinged;
#   - one reads nothing and answers nothing: closed (1008 "idle timeout"), so a
#     dead peer is still found;
#   - one says {"type":"bye"}: closed at once with 1000 "bye".
# Loopback only; the rendezvous is started here and stopped by PID in cleanup.
set -u
cd "$(dirname "$0")/../.." || exit 1
TMP_PREFIX=pilot-wssidle-test
# shellcheck source=tests/integration/rdv_common.bash
source tests/integration/rdv_common.bash

RP=$(free_port)
BP=$(free_port)
WP=$(free_port)
start rdv -registry-addr "127.0.0.1:$RP" -beacon-addr "127.0.0.1:$BP" -wss-addr "127.0.0.1:$WP" \
	-wss-rate 0 -no-rate-limit -wss-idle-timeout 3s
wait_ready "$RP"
timeout 60 $PY - "$RP" "$WP" <<'EOF'
import base64, json, select, socket, struct, sys, time
sys.path.insert(0, "tests/integration")
import pilotd_compat as pc

rp, wp = int(sys.argv[1]), int(sys.argv[2])
failed = 0


def check(name, ok, detail=""):
    global failed
    print(("PASS: %s" if ok else "FAIL: %s " + str(detail)) % name, flush=True)
    failed += 0 if ok else 1


gen = pc._signer()
reg = socket.create_connection(("127.0.0.1", rp), timeout=10)


def peer():
    pk, sign = gen()
    body = json.dumps({"type": "register", "public_key": base64.b64encode(pk).decode(),
                       "listen_addr": "0.0.0.0:0", "relay_only": True}).encode()
    reg.sendall(struct.pack(">I", len(body)) + body)
    (n,) = struct.unpack(">I", reg.recv(4, socket.MSG_WAITALL))
    node = int(json.loads(reg.recv(n, socket.MSG_WAITALL))["node_id"])
    s = socket.create_connection(("127.0.0.1", wp), timeout=10)
    _, rest = pc.upgrade(s, "127.0.0.1")
    _, payload, rest = pc.read_frame(s, rest)
    ch = json.loads(payload)
    sig = sign(f"compat_auth:{node}:{ch['ts']}:{ch['nonce']}".encode())
    s.sendall(pc.frame(1, json.dumps({"type": "auth_reply", "node_id": node, "public_key": "",
                                      "sig": base64.b64encode(sig).decode()}).encode()))
    _, payload, rest = pc.read_frame(s, rest)
    assert b"auth_ok" in payload, payload
    return s, rest


def close_of(s, rest, secs):
    """(code, reason) of the bridge's close frame within secs, or None."""
    s.settimeout(secs)
    try:
        while True:
            op, payload, rest = pc.read_frame(s, rest)
            if op == 8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 0
                return code, payload[2:].decode(errors="replace")
    except (OSError, ConnectionError):
        return None


live, live_rest = peer()
dead, dead_rest = peer()
bye, bye_rest = peer()
t0 = time.time()
bye.sendall(pc.frame(1, b'{"type":"bye"}'))
got = close_of(bye, bye_rest, 2.0)
check("bye_closes_at_once", got == (1000, "bye") and time.time() - t0 < 2.0, got)

# the live peer: answer every ping for 8 s (more than twice the limit), send no data
pings, closed, buf = 0, None, live_rest
live.setblocking(False)
end = time.time() + 8.0
while time.time() < end and closed is None:
    select.select([live], [], [], 0.2)
    try:
        b = live.recv(65536)
        if not b:
            closed = "eof"
        buf += b
    except BlockingIOError:
        pass
    while len(buf) >= 2 and (buf[1] & 0x7F) < 126 and len(buf) >= 2 + (buf[1] & 0x7F):
        op, n = buf[0] & 0x0F, buf[1] & 0x7F
        payload, buf = buf[2:2 + n], buf[2 + n:]
        if op == 9:
            pings += 1
            live.sendall(pc.frame(10, payload))
        elif op == 8:
            closed = payload[2:].decode(errors="replace")
check("quiet_live_peer_kept", closed is None, closed)
check("quiet_live_peer_pinged", pings >= 2, pings)

got = close_of(dead, dead_rest, 0.5)
check("silent_dead_peer_closed", got == (1008, "idle timeout"), got)
sys.exit(1 if failed else 0)
EOF
grep -q 'wss: node authenticated' "$TMP/rdv.log" && pass bridge_log_ok || fail bridge_log_ok
exit 0
