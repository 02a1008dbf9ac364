#!/bin/bash
# pilot-nameserver -attach (pilot-nameserver(8)): node xray runs pilotd with
# -tun=off, so the nameserver cannot listen on a TUN address; it serves Pilot
# port 53 through pilotd's control socket (the serve / serve-send verbs). yankee
# registers its name and zulu resolves it, through pilotctl over Pilot port 53;
# the caller is the stream's source node as pilotd reports it, so yankee cannot
# register a name for zulu's address; a second nameserver cannot take the port;
# serve-send writes only on a stream that the port's serve accepted; after a
# pilotd restart (with -tun=userspace) the nameserver serves the port again by
# itself. Prints PASS:/FAIL:.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init nsat
NS_BIN=$BUILD/san/bin/pilot-nameserver
[ -x "$NS_BIN" ] || { echo "FAIL: binaries_present ($NS_BIN missing)"; exit 1; }

pd_lan x y z || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
pd_start x x -hostname xray -tun=off || { pt_fail node_xray_registered; exit 1; }
pd_start y y -hostname yankee -tun=off || { pt_fail node_yankee_registered; exit 1; }
pd_start z z -hostname zulu -tun=off || { pt_fail node_zulu_registered; exit 1; }
pt_check trust_xy pd_trust_pair x y
pt_check trust_xz pd_trust_pair x z
pt_check no_tun_on_xray bash -c "! ip -n $PT-x link show pilot0 >/dev/null 2>&1"

NS=${PD_ID[x]}
ask() { # NODE verb args...: pilotctl on NODE with --nameserver xray
	local n=$1
	shift
	pd_ctl "$n" "$@" --nameserver "$NS"
}
eq() { if [ "$2" = "$3" ]; then pt_pass "$1"; else pt_fail "$1" "got '$2', want '$3'"; fi; }
Y_ADDR=$(pd_ctl y info | pd_json 'd["address"]')
Z_ADDR=$(pd_ctl z info | pd_json 'd["address"]')

pt_spawn x "$PT_DIR/ns.log" "$NS_BIN" -attach -socket "$PT_DIR/x/ctl.sock" -log-level debug
NS_PID=$PT_PID
pt_check nameserver_attached pd_wait 10 grep -q 'serving Pilot port 53 through' "$PT_DIR/ns.log"

# ---- queries from other nodes over Pilot port 53 ----
eq register_own_name "$(ask y name-register yankee-svc | pd_json 'd["address"]')" "$Y_ADDR"
eq resolve_from_other_node "$(ask z resolve yankee-svc | pd_json 'd["address"]')" "$Y_ADDR"
got=$(ask y name-register evil "$Z_ADDR")
pt_check caller_is_stream_source grep -q 'cannot register address for another node' <<<"$got"
ask z service-register api 0 8080 >/dev/null
eq services_listed "$(ask y services 0 8080 | pd_json '" ".join(s["name"] for s in d["services"])')" "api"
eq bootstrap_from_registry "$(ask y resolve zulu | pd_json 'd["address"]')" "$Z_ADDR"
pt_check request_logged_with_caller grep -q "request from node ${PD_ID[y]}: REGISTER A yankee-svc" "$PT_DIR/ns.log"

# ---- the port is the nameserver's; serve-send only on its own streams ----
pt_spawn x "$PT_DIR/ns2.log" "$NS_BIN" -attach -socket "$PT_DIR/x/ctl.sock" -wait 5s
NS2_PID=$PT_PID
wait_exit() { ! kill -0 "$NS2_PID" 2>/dev/null; }
pt_check second_nameserver_refused pd_wait 10 wait_exit
pt_check second_nameserver_says_why grep -q 'already has a listener' "$PT_DIR/ns2.log"
ctl_raw() { # SOCKET JSON: one request, print the reply
	python3 - "$1" "$2" <<'PY'
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
body = sys.argv[2].encode()
s.sendall(struct.pack(">I", len(body)) + body)
buf = b""
while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
    buf += s.recv(65536)
print(buf[4:].decode())
PY
}
# an open stream of zulu's on xray (an event-stream subscription, port 1002),
# then serve-send aimed at its ID: not a stream of the port-53 serve
pt_spawn z "$PT_DIR/sub.log" "$PD_CTL" --socket "$PT_DIR/z/ctl.sock" subscribe xray t --count 1 --timeout 10s
SUB_PID=$PT_PID
sub_id() { pd_ctl x connections | pd_json '[c["id"] for c in d["connections"] if c["local_port"] == 1002][0]'; }
pd_wait 10 sub_id
SUB=$(sub_id)
got=$(ctl_raw "$PT_DIR/x/ctl.sock" "{\"cmd\":\"serve-send\",\"args\":{\"port\":53,\"id\":${SUB:-0},\"data\":\"x\"}}")
pt_check serve_send_foreign_stream_refused grep -q '"not_found"' <<<"$got"
pt_check foreign_stream_found bash -c "[ -n '$SUB' ]"
pt_stop "$SUB_PID"
got=$(ctl_raw "$PT_DIR/x/ctl.sock" '{"cmd":"serve-send","args":{"port":54,"id":1,"data":"x"}}')
pt_check serve_send_unserved_port_refused grep -q '"no serve request on this port"' <<<"$got"

# ---- pilotd restarts (now -tun=userspace, the other TUN-less mode): the
# nameserver binds the port again by itself ----
PD_ARGS[x]="-hostname xray -tun=userspace"
pd_restart x || pt_fail xray_restarted
pt_check reattached_after_restart pd_wait 15 bash -c \
	"[ \$(grep -c 'serving Pilot port 53 through' '$PT_DIR/ns.log') -ge 2 ]"
pt_check trust_kept_after_restart pd_wait 20 pd_trusts x z
resolve_again() { ask z resolve yankee-svc | pd_json 'd["address"]' | grep -qx "$Y_ADDR"; }
pt_check records_answered_after_restart pd_wait 20 resolve_again
pt_stop "$NS_PID"
pt_check nameserver_exit_clean grep -q 'served [0-9]* requests' "$PT_DIR/ns.log"
exit "$PT_FAILED"
