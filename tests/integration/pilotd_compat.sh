#!/bin/bash
# pilotd compat mode (tunnel over WebSocket/TLS on TCP 443, tunnel.md §11) in network
# namespaces. An "internet" bridge 198.18.0.0/24; the rendezvous namespace has two
# addresses: 198.18.0.1 (registry over TLS on 443, UDP beacon on 9001) and 198.18.0.2
# (the beacon's compat WebSocket bridge on 443). A private CA from
# `pilot-rendezvous ca` signs both; every daemon pins it (-tls-trust=pinned).
# UDP nodes u1, u2 sit in open namespaces; compat nodes c1, c2 and the auto node a1
# in namespaces whose nftables output rules drop all UDP and all TCP except to 443.
#
#  1. pilot-rendezvous terminates TLS itself (-tls, -wss-tls-cert): every pair of
#     {UDP, compat} streams 4 MiB each way at once (SHA-256 checked at both sinks);
#     -transport=auto in the firewalled namespace falls back to compat within the
#     documented bound, in an open one it stays on UDP;
#  2. reconnect: the rendezvous restarts while an echo is in flight; the compat
#     nodes re-dial and the echo completes;
#  3. junk to the WebSocket port (raw bytes, upgrades without auth, a bad
#     signature, oversize/unmasked frames, a slow client): the beacon stays up;
#  4. behind nginx: TLS terminated by nginx (stream block for the registry,
#     http block with the WebSocket upgrade for /v1/compat), the rendezvous in
#     plain text behind it, same store and certificates: the running compat nodes
#     reconnect through nginx and stream 4 MiB each way (SHA-256 checked); a new
#     auto node joins through it.
# Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init cmp
TOOL=tests/integration/pilotd_compat.py
AUTO_BOUND_S=2 # -transport=auto: 3 Discovers over 2 s (pilotd(8))

# ---- topology ----
pt_bridge net
pt_ns rdv
pt_attach rdv net 198.18.0.1/24
pt_exec "$PT-rdv" ip addr add 198.18.0.2/24 dev eth0
i=10
for n in u1 u2 ua c1 c2 a1 a2; do
	pt_ns "$n"
	pt_attach "$n" net "198.18.0.$i/24"
	case $n in c* | a*) pt_egress_443 "$n" ;; esac
	i=$((i + 1))
done

# ---- certificates ----
CA=$PT_DIR/ca
mkdir -p "$CA"
if "$PD_RDV" ca init-root "$CA" >/dev/null && "$PD_RDV" ca issue "$CA" 198.18.0.1 >/dev/null \
	&& "$PD_RDV" ca issue "$CA" 198.18.0.2 >/dev/null; then
	pt_pass ca_root_and_certificates
else
	pt_fail ca_root_and_certificates
	exit 1
fi

STORE=$PT_DIR/rdv.db
rdv_self_tls() {
	pt_spawn rdv "$PT_DIR/rdv.log" "$PD_RDV" -store "$STORE" \
		-registry-addr 198.18.0.1:443 -tls -tls-cert "$CA/198.18.0.1.crt" -tls-key "$CA/198.18.0.1.key" \
		-beacon-addr 198.18.0.1:9001 \
		-wss-addr 198.18.0.2:443 -wss-tls-cert "$CA/198.18.0.2.crt" -wss-tls-key "$CA/198.18.0.2.key" \
		-wss-rate 0 -no-rate-limit -log-level debug
	PD_RDV_PID=$PT_PID
	pd_wait 10 pt_exec "$PT-rdv" bash -c "exec 3<>/dev/tcp/198.18.0.2/443"
}
rdv_self_tls || { pt_fail rendezvous_started; exit 1; }

PD_REGISTRY=198.18.0.1:443
PD_BEACON=198.18.0.1:9001
URL=wss://198.18.0.2:443/v1/compat
TLS=(-registry-tls -tls-trust=pinned -tls-root "$CA/root.crt" -tun=off -public)
COMPAT=("${TLS[@]}" -transport=compat -compat-beacon "$URL")

info() { pd_ctl "$1" info | pd_json "$2"; }
log_span() { # LOG PATTERN1 PATTERN2: seconds from the auto probe's start to the first lines matching them
	python3 - "$@" <<'PY'
import datetime, re, sys
lines = open(sys.argv[1], errors="replace").read().splitlines()
def ts(l):
    return datetime.datetime.strptime(l[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
t0 = ts(([l for l in lines if "transport=auto: probing" in l] or lines)[0])
out = []
for pat in sys.argv[2:]:
    m = [l for l in lines if re.search(pat, l)]
    out.append(f"{ts(m[0]) - t0:.2f}" if m else "999")
print(" ".join(out))
PY
}

# ---- 1. the matrix ----
ok=1
pd_start u1 u1 "${TLS[@]}" || ok=0
pd_start u2 u2 "${TLS[@]}" || ok=0
pd_start c1 c1 "${COMPAT[@]}" || ok=0
pd_start c2 c2 "${COMPAT[@]}" || ok=0
if [ $ok = 1 ]; then pt_pass four_nodes_registered_registry_tls_pinned; else pt_fail four_nodes_registered; exit 1; fi
is_compat() { info "$1" 'd["transport"] == "compat" and d["compat"]["connected"]' >/dev/null; }
is_udp() { [ "$(info "$1" 'd["transport"]')" = udp ]; }
pt_check c1_transport_compat is_compat c1
pt_check u1_transport_udp is_udp u1

xfer() { # name from to [timeout]
	local out
	if out=$(python3 "$TOOL" echo "$PT_DIR/$2/ctl.sock" "${PD_ID[$3]}" 8 1300 "${4:-15}" 2>&1); then
		pt_pass "$1 (${out#ok })"
	else
		pt_fail "$1" "$out"
	fi
}
# The matrix: in each cell A and B stream MATRIX_MIB MiB to each other at the same
# time (one stream each way: test-source -> test-sink, pattern bytes), and each
# sink's SHA-256 and byte count must equal the sender's. Bounded: each call times
# out after MATRIX_S seconds.
MATRIX_MIB=4
MATRIX_S=90
ST=tests/integration/pilotd_streams.py
bulk() { # name A B: A -> B and B -> A at once
	local name=$1 a=$2 b=$3 bytes=$((MATRIX_MIB << 20)) port=$((5100 + RANDOM % 800)) want t0 ms ok=1 d
	want=$(python3 "$ST" pattern-sha "$bytes")
	t0=$(date +%s%N)
	python3 "$ST" call "$PT_DIR/$b/ctl.sock" test-sink "{\"port\":$port,\"timeout_ms\":$((MATRIX_S * 1000))}" \
		$((MATRIX_S + 5)) >"$PT_DIR/$name.sink_b" 2>&1 &
	local sb=$!
	python3 "$ST" call "$PT_DIR/$a/ctl.sock" test-sink "{\"port\":$((port + 1)),\"timeout_ms\":$((MATRIX_S * 1000))}" \
		$((MATRIX_S + 5)) >"$PT_DIR/$name.sink_a" 2>&1 &
	local sa=$!
	sleep 1 # both sinks listening
	python3 "$ST" call "$PT_DIR/$a/ctl.sock" test-source \
		"{\"target\":\"${PD_ID[$b]}\",\"port\":$port,\"bytes\":$bytes,\"timeout_ms\":$((MATRIX_S * 1000))}" \
		$((MATRIX_S + 5)) >"$PT_DIR/$name.src_a" 2>&1 &
	local xa=$!
	python3 "$ST" call "$PT_DIR/$b/ctl.sock" test-source \
		"{\"target\":\"${PD_ID[$a]}\",\"port\":$((port + 1)),\"bytes\":$bytes,\"timeout_ms\":$((MATRIX_S * 1000))}" \
		$((MATRIX_S + 5)) >"$PT_DIR/$name.src_b" 2>&1 &
	local xb=$!
	wait $xa $xb $sa $sb
	ms=$((($(date +%s%N) - t0) / 1000000))
	for d in a b; do
		if ! pd_json "d['sha256'] == '$want' and d['bytes'] == $bytes" <"$PT_DIR/$name.sink_$d" >/dev/null; then
			ok=0
			echo "$name: sink on $d: $(head -c 300 "$PT_DIR/$name.sink_$d"); source: $(head -c 300 "$PT_DIR/$name.src_$([ $d = a ] && echo b || echo a)")"
		fi
	done
	if [ $ok = 1 ]; then
		pt_pass "$name (${MATRIX_MIB} MiB each way, SHA-256 ${want:0:12}.. both sinks, ${ms} ms)"
	else
		pt_fail "$name"
	fi
}
bulk matrix_udp_to_udp u1 u2
bulk matrix_udp_to_compat u1 c1
bulk matrix_compat_to_udp c1 u2
bulk matrix_compat_to_compat c1 c2
all_relay() { pd_ctl "$1" peers | pd_json 'd["peers"] and all(p["path"] == "relay" for p in d["peers"])' >/dev/null; }
pt_check compat_peers_all_relay all_relay c1
# The registry says relay_only for compat nodes (tunnel.md §10): a UDP node pins
# them to the relay at once (no punch, no direct attempt), whoever dialled first.
relay_only_pinned() {
	pd_ctl "$1" peers | pd_json "[p for p in d['peers'] if p['node_id'] == ${PD_ID[$2]}][0]['path_reason'] == 'registry: relay_only'" >/dev/null
}
pt_check udp_node_pins_compat_peer_relay_only relay_only_pinned u1 c1
pt_check udp_node_pins_compat_peer_relay_only_2 relay_only_pinned u2 c1

# ---- auto ----
mkdir -p "$PT_DIR/a1"
pt_spawn a1 "$PT_DIR/a1.log" "$PD_BIN" -registry "$PD_REGISTRY" -beacon "$PD_BEACON" \
	-identity "$PT_DIR/a1/identity.json" -socket "$PT_DIR/a1/ctl.sock" -log-level debug \
	"${TLS[@]}" -transport=auto -compat-beacon "$URL"
PD_PID[a1]=$PT_PID
PD_NS[a1]=a1
a1_up() { info a1 'd["registered"] and d["transport"] == "compat" and d["compat"]["connected"]' >/dev/null; }
if pd_wait 20 a1_up; then
	PD_ID[a1]=$(info a1 'd["node_id"]')
	pt_pass auto_falls_back_to_compat
	# From the daemon's own log: probe start -> decision (the documented 2 s bound;
	# 1 s of slack for a loaded machine) -> joined.
	times=$(log_span "$PT_DIR/a1.log" 'transport=compat' 'compat: connected to the beacon')
	if python3 -c "import sys; d, j = map(float, sys.argv[1:3]); sys.exit(0 if d <= $AUTO_BOUND_S + 1 and j <= d + 5 else 1)" $times; then
		pt_pass "auto_fallback_within_bound (decided after ${times% *} s, joined after ${times#* } s)"
	else
		pt_fail auto_fallback_within_bound "$times"
	fi
	pt_check auto_reason_logged grep -q 'transport=compat.*auto: no DiscoverReply' "$PT_DIR/a1.log"
	pt_check auto_reason_in_info bash -c "$PD_CTL --json --socket $PT_DIR/a1/ctl.sock info | grep -q 'no DiscoverReply'"
	xfer auto_node_to_udp a1 u1
else
	pt_fail auto_falls_back_to_compat
	tail -n 20 "$PT_DIR/a1.log"
fi
if pt_exec "$PT-a1" nft list chain inet ptfw out | grep 'l4proto udp' | grep -q 'counter packets [1-9]'; then
	pt_pass firewall_dropped_the_udp_probes
else
	pt_fail firewall_dropped_the_udp_probes
fi
pd_start ua ua "${TLS[@]}" -transport=auto -compat-beacon "$URL" || pt_fail ua_registered
ua_udp() { is_udp ua && info ua 'd["transport_reason"]' | grep -q answered; }
pt_check auto_open_network_stays_udp ua_udp

# ---- 2. reconnect: restart the rendezvous while an echo is in flight ----
pt_stop "$PD_RDV_PID"
python3 "$TOOL" echo "$PT_DIR/c1/ctl.sock" "${PD_ID[c2]}" 1 1300 25 >"$PT_DIR/inflight.out" 2>&1 &
inflight=$!
sleep 2
rdv_self_tls || pt_fail rendezvous_restarted
if wait "$inflight"; then
	pt_pass echo_in_flight_across_beacon_restart
else
	pt_fail echo_in_flight_across_beacon_restart "$(cat "$PT_DIR/inflight.out")"
fi
redialled() { [ "$(info c1 'd["compat"]["auth_ok"]')" -ge "$1" ]; }
pt_check compat_redialled redialled 2
xfer after_restart_compat_to_compat c2 c1 20
xfer after_restart_udp_to_compat u2 c2 30

# ---- 3. junk to the WebSocket port ----
if pt_exec "$PT-u1" python3 "$TOOL" junk 198.18.0.2 443 >"$PT_DIR/junk.out" 2>&1; then
	pt_pass junk_client_ran
else
	pt_fail junk_client_ran "$(tail -n 3 "$PT_DIR/junk.out")"
fi
pt_check beacon_alive_after_junk kill -0 "$PD_RDV_PID"
xfer after_junk_compat_to_compat c1 c2

# ---- 4. behind nginx ----
if ! command -v nginx >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
	pt_fail nginx_present "install nginx and libnginx-mod-stream (scripts/install-deps.sh)"
	exit 1
fi
NGX=$PT_DIR/nginx
mkdir -p "$NGX"
cat >"$NGX/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process off;
worker_processes 1;
pid $NGX/nginx.pid;
error_log $NGX/error.log info;
events { worker_connections 256; }
stream {
	server { # the registry: TLS here, its plain protocol behind
		listen 198.18.0.1:443 ssl;
		ssl_certificate $CA/198.18.0.1.crt;
		ssl_certificate_key $CA/198.18.0.1.key;
		proxy_pass 127.0.0.1:9000;
	}
}
http {
	access_log $NGX/access.log;
	client_body_temp_path $NGX; proxy_temp_path $NGX; fastcgi_temp_path $NGX;
	uwsgi_temp_path $NGX; scgi_temp_path $NGX;
	map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
	server { # the beacon's compat bridge: TLS and the WebSocket upgrade
		listen 198.18.0.2:443 ssl;
		ssl_certificate $CA/198.18.0.2.crt;
		ssl_certificate_key $CA/198.18.0.2.key;
		location /v1/compat {
			proxy_pass http://127.0.0.1:18443;
			proxy_http_version 1.1;
			proxy_set_header Upgrade \$http_upgrade;
			proxy_set_header Connection \$connection_upgrade;
			proxy_read_timeout 120s;
		}
	}
}
EOF
pt_stop "$PD_RDV_PID"
pt_spawn rdv "$PT_DIR/rdv2.log" "$PD_RDV" -store "$STORE" -registry-addr 127.0.0.1:9000 \
	-beacon-addr 198.18.0.1:9001 -wss-addr 127.0.0.1:18443 -wss-rate 0 -no-rate-limit -log-level debug
PD_RDV_PID=$PT_PID
pt_spawn rdv "$PT_DIR/nginx.log" nginx -c "$NGX/nginx.conf" -p "$NGX" -e "$NGX/error.log"
NGX_PID=$PT_PID
if pd_wait 10 pt_exec "$PT-rdv" bash -c "exec 3<>/dev/tcp/198.18.0.2/443" \
	&& pd_wait 10 pt_exec "$PT-rdv" bash -c "exec 3<>/dev/tcp/127.0.0.1/9000"; then
	pt_pass nginx_and_plain_rendezvous_up
else
	pt_fail nginx_and_plain_rendezvous_up "$(tail -n 5 "$NGX/error.log")"
fi
c1_back() { redialled 3 && is_compat c1; }
pt_check compat_reconnects_through_nginx pd_wait 40 c1_back
bulk nginx_compat_to_compat c1 c2
# The bridge listens on loopback only: an authenticated node came through nginx.
pt_check bridge_reached_through_nginx grep -q 'wss: node authenticated' "$PT_DIR/rdv2.log"
mkdir -p "$PT_DIR/a2"
pt_spawn a2 "$PT_DIR/a2.log" "$PD_BIN" -registry "$PD_REGISTRY" -beacon "$PD_BEACON" \
	-identity "$PT_DIR/a2/identity.json" -socket "$PT_DIR/a2/ctl.sock" -log-level debug \
	"${TLS[@]}" -transport=auto -compat-beacon "$URL"
a2_up() { info a2 'd["registered"] and d["transport"] == "compat" and d["compat"]["connected"]' >/dev/null; }
if pd_wait 20 a2_up; then
	PD_ID[a2]=$(info a2 'd["node_id"]')
	pt_pass "nginx_auto_node_joins (decided, joined after: $(log_span "$PT_DIR/a2.log" 'transport=compat' 'compat: connected to the beacon') s)"
	xfer nginx_auto_to_compat a2 c2 20
else
	pt_fail nginx_auto_node_joins "$(tail -n 5 "$PT_DIR/a2.log")"
fi
# The reference's pinning: SHA-256 of the registry's leaf certificate (DER).
FPR=$(python3 -c "import ssl,hashlib,sys; print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())).hexdigest())" "$CA/198.18.0.1.crt")
pd_start fp ua -registry-tls -registry-fingerprint "$FPR" -tun=off -public \
	&& pt_pass registry_fingerprint_pinned_ok || pt_fail registry_fingerprint_pinned_ok
pd_stop fp
mkdir -p "$PT_DIR/fpbad"
pt_spawn ua "$PT_DIR/fpbad.log" "$PD_BIN" -registry "$PD_REGISTRY" -registry-tls \
	-registry-fingerprint "$(printf '0%.0s' $(seq 64))" -tun=off -identity= -socket "$PT_DIR/fpbad/ctl.sock" -log-level debug
pt_check registry_fingerprint_mismatch_refused pd_wait 10 grep -q 'fingerprint mismatch' "$PT_DIR/fpbad.log"
pt_stop "$PT_PID"
pt_check beacon_alive_at_end kill -0 "$PD_RDV_PID"
exit 0
