#!/bin/bash
# Client failover between registries and beacons (issue 18 part B, Deliver 4).
# Two pilot-rendezvous: a primary (198.18.0.1) and its hot standby (198.18.0.2,
# -standby: the registry state, keys, hostnames and trust pairs replicated at
# most 1 s behind; it serves heartbeats, lookups and resolves, and refuses
# writes as read_only). Two nodes with -registry P,S and -beacon P,S register
# on the primary, take hostnames and trust each other; kill -9 of the primary:
# within 10 s both use the standby (pilotctl info/status say so), with the same
# node ID, hostname and trust (a private node is found by hostname only by a
# peer the registry knows it trusts), use the standby's beacon, and still ping.
# A compat node (-compat-beacon with both bridges' ws:// URLs) redials the
# standby's bridge and pings a through that beacon's relay.
# The standby is what shares state today (two independent registries would give
# the node another ID); PostgreSQL instances (part A) share it the same way.
# Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init failover

P=198.18.0.1
S=198.18.0.2
TOKEN=failover-test-token
pd_lan a b c w || { pt_fail namespaces_created; exit 1; }
pt_ns rdv2 && pt_attach rdv2 net $S/24 || { pt_fail namespaces_created; exit 1; }

pt_spawn rdv "$PT_DIR/rdv.log" "$PD_RDV" -registry-addr $P:9000 -beacon-addr $P:9001 \
	-store "$PT_DIR/primary.db" -wss-addr $P:8080 -wss-rate 0 -replication-token $TOKEN -no-rate-limit -log-level debug
PRIMARY=$PT_PID
pt_spawn rdv2 "$PT_DIR/rdv2.log" "$PD_RDV" -registry-addr $S:9000 -beacon-addr $S:9001 \
	-store "$PT_DIR/standby.db" -wss-addr $S:8080 -wss-rate 0 -standby $P:9000 -replication-token $TOKEN -no-rate-limit \
	-log-level debug
pt_wait 10 pt_exec "$PT-rdv" bash -c "exec 3<>/dev/tcp/$P/9000" &&
	pt_wait 10 pt_exec "$PT-rdv2" bash -c "exec 3<>/dev/tcp/$S/9000" ||
	{ pt_fail rendezvous_started; exit 1; }

WS_P=ws://$P:8080/v1/compat
WS_S=ws://$S:8080/v1/compat
PD_REGISTRY="$P:9000,$S:9000"
PD_BEACON="$P:9001,$S:9001"
pd_start a a -hostname alpha -keepalive 2s && pd_start b b -hostname beta -keepalive 2s &&
	pd_start c c -keepalive 2s &&
	pd_start w w -keepalive 2s -transport=compat -compat-beacon "$WS_P,$WS_S" ||
	{ pt_fail nodes_registered; exit 1; }
pt_pass nodes_registered

eq() { # NAME GOT WANT
	if [ -n "$2" ] && [ "$2" = "$3" ]; then pt_pass "$1"; else pt_fail "$1" "got '$2' want '$3'"; fi
}
info() { pd_ctl "$1" info | pd_json "d$2"; }
registry_is() { [ "$(info "$1" '["registry"]')" = "$2" ]; }
beacon_is() { [ "$(info "$1" '["beacon"]')" = "$2" ]; }
# NAME asks the registry at ADDR (signed with NAME's identity, as pilotd does)
# for the endpoint of node ID; prints the reply type or error code. a is
# private: only a node the registry knows it trusts gets resolve_ok.
resolve_as() {
	pt_exec "$PT-${PD_NS[$1]}" /usr/bin/python3 - "$PT_DIR/$1/identity.json" "${PD_ID[$1]}" "$2" "$3" <<'PY'
import base64, json, socket, struct, sys, time
from nacl.signing import SigningKey
ident, me, target, addr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
key = SigningKey(base64.b64decode(json.load(open(ident))["private_key"])[:32])
ts = int(time.time())  # v2 signature (rendezvous/SIGNATURES.md), as pilotd sends
sig = base64.b64encode(key.sign(("pilot2:resolve:%d:%d:%d" % (ts, me, target)).encode()).signature).decode()
host, port = addr.rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=5)
body = json.dumps({"type": "resolve", "node_id": target, "requester_id": me, "signature": sig,
                   "sig_ts": ts}).encode()
s.sendall(struct.pack(">I", len(body)) + body)
def rd(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit(1)
        b += c
    return b
r = json.loads(rd(struct.unpack(">I", rd(4))[0]))
print(r.get("code") or r.get("type"))
PY
}
found() { # A finds B by hostname through the registry in use
	[ "$(pd_ctl "$1" find "$2" | pd_json 'd["node_id"]')" = "${PD_ID[$3]}" ]
}

eq info_registry_first "$(info a '["registry"]')" "$P:9000"
eq info_registries_listed "$(info a '["registries"]')" "$P:9000,$S:9000"
pt_check info_beacon_first pd_wait 10 beacon_is a $P:9001
pt_check trust_pair pd_trust_pair a b
pt_check trust_pair_compat pd_trust_pair w a
eq compat_url_first "$(info w '["beacon"]')" "$WS_P"
pt_check compat_ping_before pd_wait 10 pd_ping_ok w a
pt_check ping_before pd_ping_ok a b
pt_check find_private_before found b alpha a
# the standby has what the primary acknowledged (snapshots at most 1 s apart)
sleep 2.5

kill -KILL $PRIMARY
wait $PRIMARY 2>/dev/null
t0=$SECONDS
pt_check a_uses_standby pd_wait 10 registry_is a $S:9000
pt_check b_uses_standby pd_wait 10 registry_is b $S:9000
# served: a hostname lookup of the private node a (allowed only through the
# trust pair the registry holds) answered by the standby
pt_check served_by_standby_within_10s pd_wait $((10 - (SECONDS - t0))) found b alpha a
echo "# registry failover: served by the standby after $((SECONDS - t0)) s"
eq trust_pair_on_standby "$(resolve_as b "${PD_ID[a]}" $S:9000)" resolve_ok
eq untrusted_refused_by_standby "$(resolve_as c "${PD_ID[a]}" $S:9000)" forbidden
eq same_node_id "$(info a '["node_id"]')" "${PD_ID[a]}"
eq same_hostname "$(pd_ctl b lookup "${PD_ID[a]}" | pd_json 'd["hostname"]')" alpha
eq still_registered "$(pd_ctl a status | pd_json 'd["registry"]["registered"] and d["registry"]["connected"]')" True
pt_check status_counts_failover [ "$(pd_ctl a status | pd_json 'd["registry"]["failovers"]')" -ge 1 ]
pt_check status_registry_in_use [ "$(pd_ctl a status | pd_json 'd["registry"]["address"]')" = $S:9000 ]
pt_check a_uses_standby_beacon pd_wait 10 beacon_is a $S:9001
pt_check b_uses_standby_beacon pd_wait 10 beacon_is b $S:9001
echo "# beacon failover after $((SECONDS - t0)) s"
pt_check trust_kept pd_trusts a b
pt_check ping_after_failover pd_wait 10 pd_ping_ok a b
# the compat node dialled the next URL (the standby's bridge) and reaches a
# through that beacon's relay
pt_check compat_uses_second_url pd_wait 10 beacon_is w "$WS_S"
compat_state() { pd_ctl w info | pd_json "d['compat']$1"; }
pt_check compat_connected pd_wait 5 compat_state "['connected']"
pt_check compat_failover_counted pd_wait 2 compat_state "['failovers'] >= 1"
pt_check compat_ping_after_failover pd_wait 10 pd_ping_ok w a
echo "# compat failover: pinging through the standby's bridge after $((SECONDS - t0)) s"

pd_stop a
pd_stop b
pd_stop c
pd_stop w
pt_cleanup
exit $((PT_FAILED > 0))
