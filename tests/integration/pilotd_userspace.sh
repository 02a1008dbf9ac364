#!/bin/bash
# pilotd -tun=userspace in a container-shaped node, in network namespaces.
# Topology: an "internet" bridge 198.18.0.0/24; the rendezvous namespace has the
# registry over TLS on 198.18.0.1:443 and the compat WebSocket bridge on
# 198.18.0.2:443. Node "alpha" (a) is an ordinary TUN node on UDP; "charlie" (c)
# is private and trusts nobody; "uniform" (u) is the container: pilotd runs as
# nobody with no capabilities at all (setpriv), no TUN device, and nftables in its
# namespace drops every packet leaving it except TCP to port 443, so it joins with
# -transport=compat. It serves:
#   SOCKS5 on 127.0.0.1:1080, an HTTP proxy on 127.0.0.1:8080, a forward
#   127.0.0.1:7000 -> alpha.pilot:80, and exposes Pilot port 80 -> 127.0.0.1:8081.
# Checks: 16 MiB both ways with SHA-256 (u downloads from alpha's unmodified
# server through SOCKS5 and the forward, uploads through the HTTP proxy; alpha
# downloads from u's exposed local server with plain curl over its TUN); SOCKS5
# CONNECT by name, Pilot address and mapped IP; UDP ASSOCIATE round trip; a
# private untrusted node refused with "connection not allowed" (0x02) at once;
# HTTP CONNECT and absolute-form requests; ssh over SOCKS5 (nc -X 5) to sshd on
# alpha's TUN IP; malformed SOCKS / HTTP proxy requests answered cleanly while
# the daemon keeps serving; counters in pilotctl info; a restart keeps the
# forward and the exposed port; 50 connections to one name cost the registry a
# couple of requests (the resolver's cache), and a revoked trust is refused at
# once although "allowed" was cached. Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init usr
trap pt_cleanup EXIT
TOOL=tests/integration/userspace_tool.py
HTTPD=tests/integration/tun_tool.py
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
for t in curl ssh /usr/sbin/sshd ssh-keygen nc setpriv nft; do
	command -v "$t" >/dev/null || { pt_fail "tool_present ($t missing: scripts/install-deps.sh)"; exit 1; }
done

# ---- topology ----
pt_bridge net
pt_ns rdv
pt_attach rdv net 198.18.0.1/24
pt_exec "$PT-rdv" ip addr add 198.18.0.2/24 dev eth0
i=10
for n in a u c; do
	pt_ns "$n"
	pt_attach "$n" net "198.18.0.$i/24"
	i=$((i + 1))
done
pt_exec "$PT-u" ip link set lo up
pt_egress_443 u

CA=$PT_DIR/ca
mkdir -p "$CA"
"$PD_RDV" ca init-root "$CA" >/dev/null && "$PD_RDV" ca issue "$CA" 198.18.0.1 >/dev/null \
	&& "$PD_RDV" ca issue "$CA" 198.18.0.2 >/dev/null || { pt_fail ca_certificates; exit 1; }
pt_spawn rdv "$PT_DIR/rdv.log" "$PD_RDV" -store "$PT_DIR/rdv.db" \
	-registry-addr 198.18.0.1:443 -tls -tls-cert "$CA/198.18.0.1.crt" -tls-key "$CA/198.18.0.1.key" \
	-beacon-addr 198.18.0.1:9001 \
	-wss-addr 198.18.0.2:443 -wss-tls-cert "$CA/198.18.0.2.crt" -wss-tls-key "$CA/198.18.0.2.key" \
	-wss-rate 0 -no-rate-limit -log-level debug
pd_wait 10 pt_exec "$PT-rdv" bash -c "exec 3<>/dev/tcp/198.18.0.2/443" || { pt_fail rendezvous_started; exit 1; }
PD_REGISTRY=198.18.0.1:443
PD_BEACON=198.18.0.1:9001
TLS=(-registry-tls -tls-trust=pinned -tls-root "$CA/root.crt")
chmod 755 "$PT_DIR" "$CA"
chmod 644 "$CA/root.crt"

# ---- the container node: nobody, no capabilities, compat, userspace ----
U_ARGS=("${TLS[@]}" -transport=compat -compat-beacon wss://198.18.0.2:443/v1/compat -tun=userspace
	-hostname uniform -socks5 127.0.0.1:1080 -http-proxy 127.0.0.1:8080
	-forward 127.0.0.1:7000=alpha.pilot:80 -expose 80=127.0.0.1:8081)
mkdir -p "$PT_DIR/u"
chown 65534:65534 "$PT_DIR/u"
start_u() {
	# its own mount namespace (private propagation: nothing reaches the host's) with
	# /dev/null over /dev/net/tun, then nobody without any capability
	pt_spawn u "$PT_DIR/u.log" unshare -m --propagation private sh -c \
		'mount --bind /dev/null /dev/net/tun && exec "$@"' sh setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
		--bounding-set=-all --no-new-privs "$PD_BIN" -registry "$PD_REGISTRY" -beacon "$PD_BEACON" \
		-identity "$PT_DIR/u/identity.json" -socket "$PT_DIR/u/ctl.sock" -log-level debug "${U_ARGS[@]}"
	PD_PID[u]=$PT_PID
	pd_wait 20 pd_registered u || { tail -n 20 "$PT_DIR/u.log"; return 1; }
	PD_ID[u]=$(pd_ctl u info | pd_json 'd["node_id"]')
}
ok=1
pd_start a a "${TLS[@]}" -hostname alpha || ok=0
pd_start c c "${TLS[@]}" -hostname charlie -tun=off || ok=0
start_u || ok=0
if [ $ok = 1 ]; then pt_pass three_nodes_registered; else pt_fail three_nodes_registered; exit 1; fi
pt_check u_runs_without_capabilities bash -c "grep -q '^CapEff:[[:space:]]*0000000000000000' /proc/${PD_PID[u]}/status \
	&& grep -q '^Uid:[[:space:]]*65534' /proc/${PD_PID[u]}/status"
pt_check u_has_no_tun_device bash -c "! ip -n $PT-u link show | grep -q pilot0 && [ -c /dev/net/tun ] \
	&& nsenter -t ${PD_PID[u]} -m stat -c %t:%T /dev/net/tun | grep -q '^1:3$'"
pt_check u_info_userspace bash -c "$PD_CTL --json --socket $PT_DIR/u/ctl.sock info | grep -q '\"device\":\"userspace\"'"
pt_check u_on_compat bash -c "$PD_CTL --json --socket $PT_DIR/u/ctl.sock info | grep -q '\"transport\":\"compat\"'"
pt_check trust_pair_a_u pd_trust_pair a u

# ---- servers: alpha on its TUN IP, uniform on its loopback ----
own_a=$(pd_ctl a info | pd_json "d['tun']['ipv4']")
mkdir -p "$PT_DIR/www-a" "$PT_DIR/www-u"
head -c $((16 << 20)) /dev/urandom >"$PT_DIR/www-a/big.bin"
head -c $((16 << 20)) /dev/urandom >"$PT_DIR/www-u/big.bin"
echo "hello from alpha" >"$PT_DIR/www-a/index.html"
sum_a=$(sha256sum "$PT_DIR/www-a/big.bin" | cut -d' ' -f1)
sum_u=$(sha256sum "$PT_DIR/www-u/big.bin" | cut -d' ' -f1)
pt_spawn a "$PT_DIR/http-a.log" "$PY" "$HTTPD" serve "$own_a" 80 "$PT_DIR/www-a"
pt_spawn u "$PT_DIR/http-u.log" "$PY" "$HTTPD" serve 127.0.0.1 8081 "$PT_DIR/www-u"
pt_spawn a "$PT_DIR/udp-a.log" "$PY" "$TOOL" udp-echo "$own_a" 5353
pd_wait 10 pt_exec "$PT-a" bash -c "exec 3<>/dev/tcp/$own_a/80" || pt_fail server_a_started
pd_wait 10 pt_exec "$PT-u" bash -c "exec 3<>/dev/tcp/127.0.0.1/8081" || pt_fail server_u_started

ucurl() { ip netns exec "$PT-u" curl -sS -m 60 "$@"; }
sha_is() { # WANT CMD...: the SHA-256 of CMD's stdout
	local want=$1
	shift
	[ "$("$@" | sha256sum | cut -d' ' -f1)" = "$want" ]
}
addr_a=$(pd_ctl a info | pd_json "d['address']")

# ---- u as a client: SOCKS5 ----
pt_check socks5_by_name_16mib_sha256 sha_is "$sum_a" ucurl --socks5-hostname 127.0.0.1:1080 http://alpha.pilot/big.bin
pt_check socks5_by_pilot_address bash -c "ip netns exec $PT-u $PY $TOOL socks-get 1080 '$addr_a' 80 /big.bin \
	| grep -q '^200 $sum_a'"
ip_a=$(pd_ctl u map "${PD_ID[a]}" | pd_json 'd["local_ip"]')
pt_check socks5_by_mapped_ip bash -c "ip netns exec $PT-u curl -sS -m 20 --socks5 127.0.0.1:1080 http://$ip_a/ \
	| grep -q 'hello from alpha'"
pt_check socks5_udp_associate_round_trip bash -c "ip netns exec $PT-u $PY $TOOL socks-udp 1080 alpha.pilot 5353 ping \
	| grep -q '^echo:ping'"
out=$(ip netns exec "$PT-u" "$PY" "$TOOL" socks-code 1080 charlie.pilot 80)
if [ "${out%% *}" = 2 ] && "$PY" -c "import sys; sys.exit(0 if float('${out##* }') < 3 else 1)"; then
	pt_pass "socks5_private_untrusted_not_allowed ($out)"
else
	pt_fail "socks5_private_untrusted_not_allowed (got '$out', want reply 2 within 3 s)"
fi
out=$(ip netns exec "$PT-u" "$PY" "$TOOL" socks-code 1080 nosuchname.pilot 80)
pt_check "socks5_unknown_name_host_unreachable ($out)" test "${out%% *}" = 4

# ---- the resolver's cache: 50 connections to one name, not 100 registry requests ----
regreqs() { pd_ctl u status | pd_json "d['registry']['requests']"; }
r0=$(regreqs)
t0=$(date +%s%N)
n_ok=0
for ((i = 0; i < 50; i++)); do
	ucurl -o /dev/null --socks5-hostname 127.0.0.1:1080 http://alpha.pilot/ && n_ok=$((n_ok + 1))
done
t1=$(date +%s%N)
r1=$(regreqs)
echo "# 50 sequential curl --socks5-hostname: $(((t1 - t0) / 1000000)) ms, registry requests ${r0:-?} -> ${r1:-?}"
pt_check "socks5_resolves_cached ($n_ok/50 ok, registry requests ${r0:-?} -> ${r1:-?})" \
	test "$n_ok" = 50 -a -n "$r0" -a -n "$r1" -a $((${r1:-0} - ${r0:-0})) -lt 10

# ---- HTTP proxy ----
pt_check http_proxy_absolute_form bash -c "ip netns exec $PT-u curl -sS -m 20 -x http://127.0.0.1:8080 http://alpha.pilot/ \
	| grep -q 'hello from alpha'"
pt_check http_proxy_connect_16mib_sha256 sha_is "$sum_a" ucurl -p -x http://127.0.0.1:8080 http://alpha.pilot/big.bin
pt_check http_proxy_upload_16mib_sha256 bash -c "ip netns exec $PT-u curl -sS -m 60 -p -x http://127.0.0.1:8080 \
	--data-binary @$PT_DIR/www-u/big.bin http://alpha.pilot/upload | grep -q '^$sum_u'"

# ---- unmodified clients: git over SOCKS5, Python's urllib through HTTP_PROXY ----
repo=$PT_DIR/www-a/repo.git
(
	export HOME=$PT_DIR GIT_CONFIG_NOSYSTEM=1
	git init -q --bare "$repo" && git init -q "$PT_DIR/src" && cd "$PT_DIR/src" \
		&& echo "over the overlay" >README && git add README \
		&& git -c user.name=t -c user.email=t@example.org commit -qm one && git push -q "$repo" HEAD:refs/heads/main \
		&& git -C "$repo" symbolic-ref HEAD refs/heads/main && git -C "$repo" update-server-info
) || pt_fail git_repo_prepared
pt_check git_clone_over_socks5 bash -c "HOME=$PT_DIR GIT_CONFIG_NOSYSTEM=1 ip netns exec $PT-u \
	git -c http.proxy=socks5h://127.0.0.1:1080 clone -q http://alpha.pilot/repo.git $PT_DIR/clone \
	&& grep -q 'over the overlay' $PT_DIR/clone/README"
pt_check python_urllib_through_http_proxy bash -c "ip netns exec $PT-u env HTTP_PROXY=http://127.0.0.1:8080 \
	$PY -c 'import urllib.request; print(urllib.request.urlopen(\"http://alpha.pilot/\", timeout=20).read().decode())' \
	| grep -q 'hello from alpha'"

# ---- forward and expose ----
pt_check forward_16mib_sha256 sha_is "$sum_a" ucurl http://127.0.0.1:7000/big.bin
ip_u=$(pd_ctl a map "${PD_ID[u]}" | pd_json 'd["local_ip"]')
pt_check expose_reached_by_tun_node_16mib_sha256 sha_is "$sum_u" ip netns exec "$PT-a" curl -sS -m 60 "http://$ip_u/big.bin"
pt_check expose_port_closed_for_unexposed bash -c "! ip netns exec $PT-a curl -sS -m 10 http://$ip_u:81/ >/dev/null 2>&1"

# ---- ssh over SOCKS5 ----
pt_sshd a "$own_a"
pd_wait 10 pt_exec "$PT-a" bash -c "exec 3<>/dev/tcp/$own_a/22" || pt_fail sshd_started
pt_check ssh_over_socks5_runs_command bash -c "ip netns exec $PT-u ssh -i $PT_SSH_DIR/user -o StrictHostKeyChecking=no \
	-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=20 \
	-o ProxyCommand='nc -X 5 -x 127.0.0.1:1080 %h %p' root@alpha.pilot 'echo ssh-over-socks' 2>>$PT_DIR/ssh.err \
	| grep -q ssh-over-socks"

# ---- malformed requests: clean answers, still serving ----
if ip netns exec "$PT-u" "$PY" "$TOOL" junk 1080 8080 >"$PT_DIR/junk.out" 2>&1; then
	pt_pass malformed_requests_answered
else
	pt_fail "malformed_requests_answered ($(grep HANG "$PT_DIR/junk.out" | head -3 | tr '\n' ' '))"
fi
pt_check daemon_alive_after_junk kill -0 "${PD_PID[u]}"
pt_check still_serving_after_junk bash -c "ip netns exec $PT-u curl -sS -m 20 --socks5-hostname 127.0.0.1:1080 \
	http://alpha.pilot/ | grep -q 'hello from alpha'"
uinfo() { pd_ctl u info | pd_json "$1" >/dev/null; }
pt_check info_counts_proxy uinfo "d['tun']['proxy']['connected'] >= 8 and d['tun']['proxy']['malformed'] >= 5 \
	and d['tun']['proxy']['not_allowed'] >= 1 and d['tun']['sock_outbound'] >= 8 and d['tun']['sock_inbound'] >= 1"

# ---- pilotctl forward / expose, saved ----
pt_check pilotctl_forward_add_by_node_id bash -c "$PD_CTL --json --socket $PT_DIR/u/ctl.sock forward add 127.0.0.1:7001 \
	${PD_ID[a]}:80 | grep -q '\"status\":\"ok\"'"
pt_check pilotctl_expose_add bash -c "$PD_CTL --json --socket $PT_DIR/u/ctl.sock expose add 81 127.0.0.1:8081 \
	| grep -q '\"status\":\"ok\"'"
pt_check pilotctl_forward_add_duplicate_refused bash -c "$PD_CTL --json --socket $PT_DIR/u/ctl.sock forward add \
	127.0.0.1:7001 alpha:80 2>&1 | grep -q already_exists"
pt_check pilotctl_forward_works bash -c "ip netns exec $PT-u curl -sS -m 20 http://127.0.0.1:7001/ | grep -q 'hello from alpha'"
pt_check pilotctl_expose_works bash -c "ip netns exec $PT-a curl -sS -m 20 http://$ip_u:81/big.bin | sha256sum | grep -q $sum_u"
pt_check state_file_0600 bash -c "[ \"\$(stat -c %a $PT_DIR/u/forwards.json)\" = 600 ] && grep -q 7001 $PT_DIR/u/forwards.json \
	&& ! grep -q 7000 $PT_DIR/u/forwards.json"

# ---- restart: flag and pilotctl forwards and exposed ports come back ----
pt_stop "${PD_PID[u]}"
start_u || pt_fail u_restarted
pt_check forward_after_restart bash -c "ip netns exec $PT-u curl -sS -m 30 http://127.0.0.1:7000/ | grep -q 'hello from alpha'"
pt_check expose_after_restart sha_is "$sum_u" ip netns exec "$PT-a" curl -sS -m 60 "http://$ip_u/big.bin"
pt_check pilotctl_forward_after_restart bash -c "ip netns exec $PT-u curl -sS -m 30 http://127.0.0.1:7001/ | grep -q 'hello from alpha'"
pt_check pilotctl_expose_after_restart bash -c "ip netns exec $PT-a curl -sS -m 30 http://$ip_u:81/ >/dev/null"
pt_check forward_list_sources bash -c "$PD_CTL --json --socket $PT_DIR/u/ctl.sock forward list \
	| $PY -c 'import json,sys; d=json.load(sys.stdin)[\"data\"]; s={f[\"listen\"]: f[\"source\"] for f in d[\"forwards\"]}; \
	assert s == {\"127.0.0.1:7000\": \"flag\", \"127.0.0.1:7001\": \"pilotctl\"}, s'"
pt_check pilotctl_forward_remove bash -c "$PD_CTL --json --socket $PT_DIR/u/ctl.sock forward remove 127.0.0.1:7001 >/dev/null \
	&& ! ip netns exec $PT-u curl -sS -m 5 http://127.0.0.1:7001/ >/dev/null 2>&1 && ! grep -q 7001 $PT_DIR/u/forwards.json"
pt_check pilotctl_expose_remove bash -c "$PD_CTL --json --socket $PT_DIR/u/ctl.sock expose remove 81 >/dev/null \
	&& ! ip netns exec $PT-a curl -sS -m 10 http://$ip_u:81/ >/dev/null 2>&1"
# ---- a userspace node with no front-end flags: pilotctl adds them ----
pd_start v u "${TLS[@]}" -transport=compat -compat-beacon wss://198.18.0.2:443/v1/compat -tun=userspace \
	|| pt_fail bare_userspace_node_registered
pt_check bare_userspace_forward_added_at_run_time bash -c "$PD_CTL --json --socket $PT_DIR/v/ctl.sock forward add \
	127.0.0.1:7002 ${PD_ID[a]}:80 | grep -q '\"status\":\"ok\"'"
pd_stop v

# ---- alpha revokes trust: what u's resolver remembered about alpha goes with it ----
pt_check socks5_allowed_before_revoke bash -c "ip netns exec $PT-u curl -sS -m 20 --socks5-hostname 127.0.0.1:1080 \
	http://alpha.pilot/ | grep -q 'hello from alpha'"
pd_ctl a untrust "${PD_ID[u]}" >/dev/null
pd_wait 10 eval '! pd_trusts u a' || pt_fail u_saw_revocation
sleep 1 # alpha's revoke_trust reaches the registry; the cached "allowed" is < 10 s old
out=$(ip netns exec "$PT-u" "$PY" "$TOOL" socks-code 1080 alpha.pilot 80)
pt_check "socks5_not_allowed_at_once_after_revoke ($out)" test "${out%% *}" = 2
pt_check no_sanitizer_reports bash -c "! grep -q 'Sanitizer' $PT_DIR/u.log $PT_DIR/a.log $PT_DIR/v.log"
