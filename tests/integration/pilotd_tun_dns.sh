#!/bin/bash
# The DNS responder answers only through the TUN (issue 12 §4): a neighbour on
# the underlay that routes a query to the node's TUN address gets no answer (the
# drop is counted), the node itself still gets answers; a flood of lookups for
# random names from one client is rate limited, and a missing name is asked of
# the registry once and then answered from the negative cache. Prints PASS:/FAIL:.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init tdns
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
DNS=$PT_DIR/dns.py
cat >"$DNS" <<'PY'
# dns.py SERVER NAME [COUNT]: COUNT queries (A) for NAME ("%d" = the index),
# one at a time, 0.5 s each; prints one rcode per answer or "none".
import random, socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 1
s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
for i in range(count):
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in (name % i if "%d" in name else name).split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    s.sendto(q, (server, 53))
    try:
        r, _ = s.recvfrom(4096)
        print(r[3] & 0xF if r[:2] == q[:2] else "mismatch")
    except socket.timeout:
        print("none")
PY

pd_lan a c || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
if pd_start a a -hostname alpha -dns-neg-cache 60s; then
	pt_pass node_registered
else
	pt_fail node_registered
	exit 1
fi
own=$(pd_ctl a info | pd_json "d['tun']['ipv4']")
dnsc() { pd_ctl a info | pd_json "d['tun']['$1']"; }

# ---- from the node itself: answered ----
eq() { if [ "$2" = "$3" ]; then pt_pass "$1"; else pt_fail "$1" "got '$2', want '$3'"; fi; }
eq local_query_answered "$(pt_exec "$PT-a" "$PY" "$DNS" "$own" 0-0000-0000-0007.pilot)" 0
own6=$(pd_ctl a info | pd_json "d['tun']['ipv6']")
eq local_query_ula_answered "$(pt_exec "$PT-a" "$PY" "$DNS" "$own6" 0-0000-0000-0007.pilot)" 0

# ---- from a neighbour routing to the TUN address over the LAN: nothing ----
ip -n "$PT-c" route add 10.4.0.0/16 via 198.18.0.10
before=$(dnsc dns_not_tun)
got=$(pt_exec "$PT-c" "$PY" "$DNS" "$own" 0-0000-0000-0007.pilot 3 | sort -u | tr '\n' ' ')
eq foreign_query_not_answered "$got" "none "
after=$(dnsc dns_not_tun)
# the datagrams did reach the responder (so the routing worked) and were refused
eq foreign_query_counted "$((after - before))" 3
got=$(pt_exec "$PT-c" "$PY" "$DNS" "$own" alpha.pilot 2 | sort -u | tr '\n' ' ')
eq foreign_hostname_not_answered "$got" "none "

# ---- the negative cache: a missing name costs one registry lookup ----
l0=$(dnsc dns_lookups)
got=$(pt_exec "$PT-a" "$PY" "$DNS" "$own" ghost.pilot 20 | sort -u | tr '\n' ' ')
eq missing_name_nxdomain "$got" "3 "
eq missing_name_one_lookup "$(($(dnsc dns_lookups) - l0))" 1
pt_check missing_name_neg_cached test "$(dnsc dns_neg_cache_hits)" -ge 19

# ---- a flood of random names from one client: rate limited ----
l0=$(dnsc dns_lookups)
pt_exec "$PT-a" "$PY" "$DNS" "$own" "rnd%d.pilot" 200 >"$PT_DIR/flood.out"
looked=$(($(dnsc dns_lookups) - l0))
echo "# flood of 200 random names: $looked registry lookups, $(grep -c '^2$' "$PT_DIR/flood.out") SERVFAIL"
# burst 10 at -dns-rate 2, plus 2/s for the few seconds the flood takes
pt_check flood_lookups_bounded test "$looked" -le 40
pt_check flood_rate_limited_counted test "$(dnsc dns_rate_limited)" -ge 150
pt_check flood_answers_servfail test "$(grep -c '^2$' "$PT_DIR/flood.out")" -ge 150
eq local_query_still_answered "$(pt_exec "$PT-a" "$PY" "$DNS" "$own" 0-0000-0000-0007.pilot)" 0
pt_check node_alive kill -0 "${PD_PID[a]}"
# issue 12 §6: the registry at 198.18.0.1 is reached in plaintext: say so at start
pt_check plaintext_registry_warned grep -q "WARN.*198.18.0.1:9000 is reached in plaintext.*-registry-tls" "$PT_DIR/a.log"
