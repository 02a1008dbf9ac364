#!/bin/bash
# The registry's per-source connection cap counts an IPv4 address, and an IPv6
# /64 as one source (issue 12 §5): one host holding a /64 cannot open
# max-conns-per-prefix connections from every address of it. In one namespace:
# the registry on :9000 (dual-stack), clients from 8 addresses of fd00:198:18:1::/64, one
# from another /64, and from 8 IPv4 loopback addresses. Prints PASS:/FAIL:.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init rcap
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
pt_ns r || { pt_fail namespace_created; exit 1; }
for i in $(seq 1 8); do
	ip -n "$PT-r" -6 addr add "fd00:198:18:1::$i/64" dev lo nodad
done
ip -n "$PT-r" -6 addr add fd00:198:18:2::1/64 dev lo nodad
pt_spawn r "$PT_DIR/rdv.log" "$PD_RDV" -registry-addr ":9000" -no-beacon -http "127.0.0.1:9090" \
	-max-conns-per-ip 4 ${RCAP_V6_FLAG:--max-conns-per-prefix 4} -log-level debug
if pt_wait 50 pt_exec "$PT-r" bash -c "exec 3<>/dev/tcp/127.0.0.1/9000"; then
	pt_pass registry_started
else
	pt_fail registry_started "$(tail -3 "$PT_DIR/rdv.log")"
	exit 1
fi

# conns.py SRC...: one connection from each source address; prints how many the
# registry kept open after 0.5 s (a refused one is closed at once).
cat >"$PT_DIR/conns.py" <<'PY'
import socket, sys, time
socks = []
for src in sys.argv[1:]:
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.connect(("::1" if fam == socket.AF_INET6 else "127.0.0.1", 9000))
    socks.append(s)
time.sleep(0.5)
kept = 0
for s in socks:
    s.setblocking(False)
    try:
        kept += s.recv(1) != b""
    except BlockingIOError:
        kept += 1
    except OSError:
        pass
print(kept)
PY
conns() { pt_exec "$PT-r" "$PY" "$PT_DIR/conns.py" "$@"; }
eq() { if [ "$2" = "$3" ]; then pt_pass "$1"; else pt_fail "$1" "got '$2', want '$3'"; fi; }

v6=()
for i in $(seq 1 8); do v6+=("fd00:198:18:1::$i"); done
v4=()
for i in $(seq 1 8); do v4+=("127.0.1.$i"); done
eq ipv6_one_64_capped "$(conns "${v6[@]}")" 4
eq ipv6_other_64_separate "$(conns fd00:198:18:1::1 fd00:198:18:1::2 fd00:198:18:1::3 fd00:198:18:2::1)" 4
eq ipv4_per_address "$(conns "${v4[@]}")" 8
eq ipv4_same_address_capped "$(conns 127.0.0.5 127.0.0.5 127.0.0.5 127.0.0.5 127.0.0.5 127.0.0.5)" 4
metric() { pt_exec "$PT-r" curl -s "http://127.0.0.1:9090/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
pt_check refused_per_source_counted test "$(metric pilot_registry_connections_refused_per_source_total)" = 6
pt_check partial_frame_gauge_exported test -n "$(metric pilot_registry_partial_frame_bytes)"
pt_check registry_alive kill -0 "$PT_PID"
