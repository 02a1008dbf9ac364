#!/bin/bash
# pilot-nameserver (services.md §2, pilot-nameserver(8)) on node alpha's TUN
# address: bravo and charlie register and query through pilotctl over Pilot
# port 53; a name for another node's address is refused; a name missing from
# the store is bootstrapped from the registry; charlie's DNS responder
# (-nameserver alpha) answers the names, and S records as SRV
# _port._pilot.<network>.pilot, to getent and to a DNS client on its TUN; a
# restart keeps the records; records expire after -ttl. Prints PASS:/FAIL:.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init nsrv
# getent in charlie's namespace reads /etc/netns/<ns>/resolv.conf (ip netns exec)
trap 'rm -rf "/etc/netns/$PT-c"; pt_cleanup' EXIT
NS_BIN=$BUILD/san/bin/pilot-nameserver
[ -x "$NS_BIN" ] || { echo "FAIL: binaries_present ($NS_BIN missing)"; exit 1; }

pd_lan a b c || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
pd_start a a -hostname alpha || { pt_fail node_alpha_registered; exit 1; }
pd_start b b -hostname bravo || { pt_fail node_bravo_registered; exit 1; }
pd_start c c -hostname charlie -nameserver "${PD_ID[a]}" || { pt_fail node_charlie_registered; exit 1; }
pt_check trust_ab pd_trust_pair a b
pt_check trust_ac pd_trust_pair a c

NS=${PD_ID[a]}
STORE=$PT_DIR/ns.json
ns_start() {
	pt_spawn a "$PT_DIR/ns$1.log" "$NS_BIN" -socket "$PT_DIR/a/ctl.sock" -store "$STORE" -log-level debug "${@:2}"
	NS_PID=$PT_PID
	pd_wait 10 grep -q 'listening on' "$PT_DIR/ns$1.log"
}
ask() { # NODE verb args...: pilotctl in NODE's namespace with --nameserver alpha
	local n=$1
	shift
	# alpha itself reaches its nameserver over local TCP, so in its namespace
	pt_exec "$PT-$n" "$PD_CTL" --json --socket "$PT_DIR/$n/ctl.sock" "$@" --nameserver "$NS" 2>&1
}
eq() { if [ "$2" = "$3" ]; then pt_pass "$1"; else pt_fail "$1" "got '$2', want '$3'"; fi; }
addr_of() { pd_ctl "$1" info | pd_json 'd["address"]'; }
B_ADDR=$(addr_of b)
C_ADDR=$(addr_of c)

pt_check nameserver_started ns_start 1 -ttl 60s

# ---- A records through pilotctl over Pilot port 53 ----
eq register_own_name "$(ask b name-register bravo-svc | pd_json 'd["address"]')" "$B_ADDR"
eq resolve_from_other_node "$(ask c resolve bravo-svc | pd_json 'd["address"]')" "$B_ADDR"
got=$(ask c name-register evil "$B_ADDR")
eq foreign_address_refused "$(echo "$got" | pd_json 'o["code"]')" refused
pt_check foreign_address_message grep -q 'cannot register address for another node' <<<"$got"
eq foreign_name_not_stored "$(ask b resolve evil | pd_json 'o["code"]')" refused
got=$(ask c name-register bravo-svc)
pt_check name_takeover_refused grep -q 'registered by another node' <<<"$got"
eq bootstrap_from_registry "$(ask b resolve charlie | pd_json 'd["address"]')" "$C_ADDR"

# ---- S and N records ----
ask b service-register web 0 80 >/dev/null
ask c service-register web-c 0 80 >/dev/null
eq services_listed "$(ask a services 0 80 | pd_json '" ".join(sorted(s["name"] for s in d["services"]))')" "web web-c"
got=$(ask c service-register web 0 80 "$B_ADDR")
pt_check foreign_service_refused grep -q 'cannot register service for another node' <<<"$got"
eq network_name_by_member "$(ask b name-register backbone --network 0 | pd_json 'd["network_id"]')" 0
eq network_name_resolved "$(ask c services backbone 80 | pd_json 'd["total"]')" 2

# ---- charlie's DNS responder asks the nameserver (-nameserver), then the registry ----
DNS=$PT_DIR/dns.py
cat >"$DNS" <<'PY'
# dns.py SERVER NAME TYPE: one query; prints "rcode" then one line per answer
# (A: the IP; SRV: "priority weight port target").
import random, socket, struct, sys
server, name, qt = sys.argv[1], sys.argv[2], {"A": 1, "SRV": 33}[sys.argv[3]]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(4)
qid = random.randrange(65536)
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
for label in name.split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\0" + struct.pack(">HH", qt, 1)
s.sendto(q, (server, 53))
r, _ = s.recvfrom(4096)
print(r[3] & 0xF)
def skip_name(p):
    while r[p] and r[p] < 0xC0:
        p += r[p] + 1
    return p + (2 if r[p] >= 0xC0 else 1)
def read_name(p):
    out = []
    while r[p]:
        out.append(r[p + 1:p + 1 + r[p]].decode())
        p += r[p] + 1
    return ".".join(out)
p = skip_name(12) + 4
for _ in range(struct.unpack(">H", r[6:8])[0]):
    p = skip_name(p)
    t, _, _, n = struct.unpack(">HHIH", r[p:p + 10])
    d = r[p + 10:p + 10 + n]
    if t == 1:
        print(socket.inet_ntoa(d))
    elif t == 33:
        print(*struct.unpack(">HHH", d[:6]), read_name(p + 16))
    p += 10 + n
PY
C_IP=$(pd_ctl c info | pd_json "d['tun']['ipv4']")
dnsq() { pt_exec "$PT-c" python3 "$DNS" "$C_IP" "$@" 2>&1 | tr '\n' ' ' | sed 's/ $//'; }
B_IP=$(pd_ctl c map "${PD_ID[b]}" | pd_json 'd["local_ip"]')
eq dns_a_from_nameserver "$(dnsq bravo-svc.pilot A)" "0 $B_IP"
got=$(dnsq _80._pilot.0.pilot SRV)
pt_check dns_srv_lists_providers grep -q "^0 0 1 80 0-0000-[0-9a-f-]*\.pilot 0 1 80 0-0000-[0-9a-f-]*\.pilot$" <<<"$got"
pt_check dns_srv_targets_are_the_providers grep -q "0-0000-0000-$(printf %04x "${PD_ID[b]}").pilot" <<<"$got"
eq dns_srv_by_network_name "$(dnsq _80._pilot.backbone.pilot SRV | cut -d' ' -f1-4)" "0 0 1 80"
eq dns_srv_none "$(dnsq _81._pilot.0.pilot SRV)" 3
mkdir -p "/etc/netns/$PT-c" && echo "nameserver $C_IP" >"/etc/netns/$PT-c/resolv.conf"
eq getent_a "$(pt_exec "$PT-c" getent ahostsv4 bravo-svc.pilot | awk 'NR==1{print $1}')" "$B_IP"

# ---- restart keeps records; then they expire ----
pt_stop "$NS_PID"
pt_check store_written grep -q bravo-svc "$STORE"
pt_check nameserver_restarted ns_start 2 -ttl 4s -reap-interval 1s
eq restart_keeps_a "$(ask c resolve bravo-svc | pd_json 'd["address"]')" "$B_ADDR"
eq restart_keeps_s "$(ask a services 0 80 | pd_json 'd["total"]')" 2
sleep 5
eq ttl_expired_a "$(ask c resolve bravo-svc | pd_json 'o["code"]')" refused
eq ttl_expired_s "$(ask a services 0 80 | pd_json 'd["total"]')" 0
pt_check reaped_logged grep -q 'reaped' "$PT_DIR/ns2.log"
pt_stop "$NS_PID"
exit "$PT_FAILED"
