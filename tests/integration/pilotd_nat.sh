#!/bin/bash
# pilotd NAT traversal matrix in network namespaces. An "internet" bridge
# 198.18.0.0/24 with the rendezvous (registry + beacon) at 198.18.0.1, a public
# node, two cone-NAT routers with one node each (LANs 198.19.1.0/24 and
# 198.19.2.0/24) and one symmetric-NAT router with a node (198.19.3.0/24).
# Every pair handshakes (mutual), trusts, and pings over the control protocol;
# `pilotctl --json peers` must show direct/punched for pairs without the
# symmetric NAT and relay for pairs involving it. Prints PASS:/FAIL: lines.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init nat

# ---- topology ----
pt_bridge net
pt_ns rdv
pt_attach rdv net 198.18.0.1/24
pt_ns pub
pt_attach pub net 198.18.0.10/24

pt_router A net 198.18.0.11 198.19.1 cone
pt_router B net 198.18.0.12 198.19.2 cone
pt_router S net 198.18.0.13 198.19.3 symmetric

if pd_wait 5 pt_exec "$PT-nA" ping -c1 -W1 198.18.0.1; then
	pt_pass topology_nat_reaches_internet
else
	pt_fail topology_nat_reaches_internet
	exit 1
fi

pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }

# ---- daemons ----
ok=1
pd_start pub pub -public || ok=0
pd_start coneA nA || ok=0
pd_start coneB nB || ok=0
pd_start sym nS || ok=0
if [ $ok = 1 ]; then pt_pass four_nodes_registered; else pt_fail four_nodes_registered; exit 1; fi

# The registered endpoint of a NATed node is its router's public address.
# (discovered from the beacon over the tunnel socket itself).
pt_check coneA_endpoint_is_public \
	bash -c "$PD_CTL --json --socket $PT_DIR/coneA/ctl.sock info | grep -q '\"listen_addr\":\"198.18.0.11:'"

nodes=(pub coneA coneB sym)
pairs=()
for ((i = 0; i < ${#nodes[@]}; i++)); do
	for ((j = i + 1; j < ${#nodes[@]}; j++)); do
		pairs+=("${nodes[i]}:${nodes[j]}")
	done
done

# ---- handshakes, one pair at a time ----
for p in "${pairs[@]}"; do
	a=${p%:*} b=${p#*:}
	if pd_trust_pair "$a" "$b"; then
		pt_pass "trust_mutual_${a}_${b}"
	else
		pt_fail "trust_mutual_${a}_${b}"
	fi
done

# ---- pings both ways ----
for p in "${pairs[@]}"; do
	a=${p%:*} b=${p#*:}
	if pd_wait 15 pd_ping_ok "$a" "$b" && pd_wait 10 pd_ping_ok "$b" "$a"; then
		pt_pass "ping_${a}_${b}"
	else
		pt_fail "ping_${a}_${b}"
	fi
done

# ---- paths: relay peers probe for a direct path every 15 s, so allow for that ----
# Two NATed nodes of which one is behind the symmetric NAT can only use the relay.
# The public node reaches the symmetric one directly (its replies go to the
# mapping the symmetric NAT made for it), so that pair may be direct as well.
want_path() { # a b regex
	pd_ping_ok "$1" "$2" 1
	[[ "$(pd_path "$1" "$2")" =~ $3 ]]
}
matrix=""
for p in "${pairs[@]}"; do
	a=${p%:*} b=${p#*:}
	case "$a:$b" in
	pub:sym) want='^(direct|punched|relay)$' ;;
	*sym*) want='^relay$' ;;
	*) want='^(direct|punched)$' ;;
	esac
	if pd_wait 35 want_path "$a" "$b" "$want" && pd_wait 10 want_path "$b" "$a" "$want"; then
		pt_pass "path_${a}_${b}_$(pd_path "$a" "$b")"
	else
		pt_fail "path_${a}_${b}" "want $want, got $(pd_path "$a" "$b") / $(pd_path "$b" "$a")"
	fi
	matrix+="  $a -> $b: $(pd_path "$a" "$b"); $b -> $a: $(pd_path "$b" "$a")"$'\n'
done
echo "path matrix:"
printf '%s' "$matrix"
# Relay pairs stay relay: a ping over them still works.
pt_check ping_over_relay_coneA_sym pd_ping_ok coneA sym 3

# ---- clean shutdown ----
for n in "${nodes[@]}"; do
	pd_stop "$n"
	rc=$?
	if [ $rc = 0 ]; then pt_pass "sigterm_exit_0_$n"; else pt_fail "sigterm_exit_0_$n" "rc $rc"; fi
done
[ -e "$PT_DIR/pub/ctl.sock" ] && pt_fail socket_removed_on_exit || pt_pass socket_removed_on_exit
exit 0
