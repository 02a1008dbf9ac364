#!/bin/bash
# The Pilot demo (make demo): two nodes in their own network namespaces reach
# each other through the TUN virtual NIC. An unmodified HTTP server on node
# "bravo" serves a page on its TUN IP; plain curl on node "alpha" fetches
# http://bravo.pilot/ — the name is answered by alpha's pilotd, the TCP
# connection is carried as an encrypted Pilot stream.
#
# Needs root (namespaces, TUN devices) and the release binaries (make all).
# Everything it creates — namespaces on the 198.18.0.0/15 underlay, processes,
# /etc/netns/<ns>/ — is removed on exit, also on failure or Ctrl-C.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/rel/bin
PY=/usr/bin/python3 # the system one: shims (pyenv) cost most of a second per start
[ -x "$PY" ] || PY=python3

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: needs root (network namespaces and TUN devices): sudo make demo" >&2
	exit 1
fi
for b in pilotd pilotctl pilot-rendezvous; do
	if [ ! -x "$BIN/$b" ]; then
		echo "demo: $BIN/$b missing; run: make all" >&2
		exit 1
	fi
done

source tests/lib/netns.sh
pt_init demo
demo_cleanup() {
	rm -rf "/etc/netns/$PT-a"
	pt_cleanup
}
trap demo_cleanup EXIT

step=0
say() {
	step=$((step + 1))
	printf "\n[%d] %s   (t=%s)\n" "$step" "$*" "$SECONDS"
}
show() { # show a command, then run it
	printf '    $ %s\n' "$*"
	"$@" 2>&1 | sed 's/^/      /'
	return "${PIPESTATUS[0]}"
}
die() {
	printf '\nDEMO FAILED: %s\n' "$*"
	for f in "$PT_DIR"/*.log; do
		printf -- '--- %s (last lines)\n' "${f##*/}"
		tail -n 8 "$f"
	done
	exit 1
}
ctl() { # ctl NODE args...
	local node=$1
	shift
	"$BIN/pilotctl" --socket "$PT_DIR/$node/ctl.sock" "$@"
}
json() { # json NODE EXPR args...: a value from pilotctl --json
	local node=$1 expr=$2
	shift 2
	ctl "$node" --json "$@" | "$PY" -c "import json,sys; d=json.load(sys.stdin)['data']; print($expr)"
}
start_node() { # start_node NAME HOSTNAME
	mkdir -p "$PT_DIR/$1"
	pt_spawn "$1" "$PT_DIR/$1.log" "$BIN/pilotd" -registry 198.18.0.1:9000 -beacon 198.18.0.1:9001 \
		-identity "$PT_DIR/$1/identity.json" -socket "$PT_DIR/$1/ctl.sock" -hostname "$2"
	pt_wait 15 json "$1" 'd["registered"] or exit(1)' info || die "pilotd $2 did not register"
	echo "    (t=$SECONDS) $2 registered"
}
trusts() { json "$1" "[t for t in d['trusted'] if t['node_id'] == $2] or exit(1)" trust; }

t0=$SECONDS
say "Underlay: a rendezvous and two nodes in network namespaces (198.18.0.0/15)"
pt_bridge net && pt_ns rdv && pt_ns a && pt_ns b || die "cannot create namespaces"
pt_attach rdv net 198.18.0.1/24
pt_attach a net 198.18.0.10/24
pt_attach b net 198.18.0.11/24
echo "    rendezvous 198.18.0.1   alpha 198.18.0.10   bravo 198.18.0.11"

say "Start the rendezvous (registry :9000, beacon :9001) and pilotd on alpha and bravo"
pt_spawn rdv "$PT_DIR/rdv.log" "$BIN/pilot-rendezvous" -registry-addr 198.18.0.1:9000 \
	-beacon-addr 198.18.0.1:9001
pt_wait 10 pt_exec "$PT-a" bash -c "exec 3<>/dev/tcp/198.18.0.1/9000" || die "rendezvous did not start"
echo "    (t=$SECONDS) rendezvous up"
start_node a alpha
start_node b bravo
fields='d["node_id"], d["address"], d["tun"]["device"], d["tun"]["ipv4"], d["tun"]["ipv6"]'
read -r id_a addr_a dev_a ip_a ip6_a <<<"$(json a "$fields" info | tr -d "(),'")"
read -r id_b addr_b dev_b ip_b ip6_b <<<"$(json b "$fields" info | tr -d "(),'")"
echo "    alpha: node $id_a, address $addr_a, TUN $dev_a $ip_a $ip6_a"
echo "    bravo: node $id_b, address $addr_b, TUN $dev_b $ip_b $ip6_b"
show ip netns exec "$PT-b" ip -brief addr show dev pilot0

say "Nodes are private by default: they trust each other after a handshake both ways"
show ctl a handshake bravo "demo" || die "handshake alpha -> bravo failed"
show ctl b handshake alpha "demo" || die "handshake bravo -> alpha failed"
pt_wait 20 trusts a "$id_b" && pt_wait 20 trusts b "$id_a" || die "trust was not established"
echo "    alpha and bravo trust each other"

say "An unmodified HTTP server on bravo, bound to its TUN IP $ip_b"
echo "    (every node is the subnet's first host to itself; alpha will see bravo under its own mapped IP)"
mkdir -p "$PT_DIR/www"
cat >"$PT_DIR/www/index.html" <<HTML
<!doctype html>
<title>Hello from bravo</title>
<h1>Hello from bravo over Pilot</h1>
<p>Served by python3 -m http.server on $ip_b, node $id_b.</p>
HTML
echo "    $ python3 -m http.server --bind $ip_b 80   (in bravo's namespace)"
pt_spawn b "$PT_DIR/http.log" "$PY" -m http.server --bind "$ip_b" 80 --directory "$PT_DIR/www"
pt_wait 10 pt_exec "$PT-b" bash -c "exec 3<>/dev/tcp/$ip_b/80" || die "HTTP server did not start"

say "alpha's resolver uses its pilotd (nameserver 10.4.0.1, via /etc/netns/$PT-a/resolv.conf)"
mkdir -p "/etc/netns/$PT-a"
echo "nameserver 10.4.0.1" >"/etc/netns/$PT-a/resolv.conf"
show ip netns exec "$PT-a" getent hosts bravo.pilot || die "bravo.pilot did not resolve"

say "curl on alpha fetches http://bravo.pilot/"
out=$(pt_exec "$PT-a" curl -sS -m 10 -w '\n%{http_code} %{remote_ip} %{time_total}s' http://bravo.pilot/ 2>&1)
echo "    $ curl http://bravo.pilot/"
printf '%s\n' "$out" | sed '$d' | sed 's/^/      /'
read -r code rip secs <<<"$(printf '%s\n' "$out" | tail -n 1)"
[ "${code:-}" = 200 ] && printf '%s' "$out" | grep -q "Hello from bravo over Pilot" \
	|| die "curl did not get the page ($out)"
echo "    HTTP $code from $rip in $secs"

say "What carried it: alpha's mapped IPs and bravo's Pilot connections"
show ctl a maps
show ctl b connections

printf '\nDEMO OK: curl on alpha fetched http://bravo.pilot/ from an unmodified HTTP server on bravo over Pilot (%ss)\n' \
	"$((SECONDS - t0))"
