#!/bin/bash
# Broadcast to a network (issue 16; daemon/broadcast.h): alpha's broadcast on
# its network reaches the members bravo and charlie, never delta (trusted by
# alpha but not a member) nor echo (neither); through the TUN a UDP send to the
# network's broadcast ULA is the same broadcast; the backbone and non-members
# are refused; the fan-out is rate limited. Prints PASS:/FAIL:.
set -u
cd "$(dirname "$0")/../.."
source tests/lib/netns.sh
source tests/integration/pilotd_common.bash

pd_init bcst
pd_lan a b c d e || { pt_fail namespaces_created; exit 1; }
pd_rendezvous rdv 198.18.0.1 || { pt_fail rendezvous_started; exit 1; }
for n in a b c d e; do
	pd_start "$n" "$n" || { pt_fail "node_${n}_registered"; exit 1; }
done
for n in b c d; do
	pt_check "trust_a$n" pd_trust_pair a "$n"
done
net=$(pd_ctl a network create "bcast-$$" | pd_json 'd.get("network_id") or d.get("id")')
pt_check network_created [ -n "$net" ]
for n in b c; do
	pt_check "join_$n" bash -c "$PD_CTL --json --socket $PT_DIR/$n/ctl.sock network join $net | grep -q '\"ok\"'"
done
eq() { if [ "$2" = "$3" ]; then pt_pass "$1"; else pt_fail "$1" "got '$2', want '$3'"; fi; }

# listen PORT: every node but alpha waits for one datagram (in the background)
LISTENERS=()
listen_all() {
	local n
	LISTENERS=()
	for n in b c d e; do
		pd_ctl "$n" listen "$1" --count 1 --timeout "$2" >"$PT_DIR/$n.$1" &
		LISTENERS+=($!)
	done
	sleep 1
}
wait_listeners() { wait "${LISTENERS[@]}"; }
got() { pd_json '" ".join(m["data"] for m in d["messages"]) or "none"' <"$PT_DIR/$1.$2" || echo none; }

# ---- pilotctl broadcast ----
listen_all 5000 6s
out=$(pd_ctl a broadcast "$net" 5000 --data "hello-members")
eq broadcast_sent "$(echo "$out" | pd_json '"%d/%d" % (d["sent"], d["members"])')" "2/3"
wait_listeners
eq member_b_received "$(got b 5000)" hello-members
eq member_c_received "$(got c 5000)" hello-members
eq trusted_nonmember_d_nothing "$(got d 5000)" none
eq untrusted_nonmember_e_nothing "$(got e 5000)" none
eq source_is_alpha "$(pd_json 'd["messages"][0]["src_addr"].split(".", 1)[1]' <"$PT_DIR/b.5000")" \
	"$(printf '%04X.%04X' $((PD_ID[a] >> 16)) $((PD_ID[a] & 0xFFFF)))"

# ---- refusals ----
eq backbone_refused "$(pd_ctl a broadcast 0 5000 --data x | pd_json 'o["code"]')" invalid_argument
eq nonmember_refused "$(pd_ctl d broadcast "$net" 5000 --data x | pd_json 'o["code"]')" forbidden

# ---- through the TUN: UDP to fd50:494c:4f54:<net>::ffff:ffff ----
BIP=$(printf 'fd50:494c:4f54:%x::ffff:ffff' "$net")
listen_all 5001 6s
pt_exec "$PT-a" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.sendto(b"via-tun", (sys.argv[1], 5001))' "$BIP"
wait_listeners
eq tun_member_b_received "$(got b 5001)" via-tun
eq tun_member_c_received "$(got c 5001)" via-tun
eq tun_nonmember_d_nothing "$(got d 5001)" none

# ---- rate limit: 60 broadcasts at once through the TUN, at most the burst pass ----
pt_exec "$PT-a" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for i in range(60):
    s.sendto(b"flood", (sys.argv[1], 5002))' "$BIP"
sleep 0.5
tun() { pd_ctl a tun | pd_json "d['stats']['$1']"; }
passed=$(tun udp_broadcast)
echo "# 60 broadcasts in a burst: $passed fanned out (1 before), $(tun udp_errors) refused"
pt_check rate_limited test "$((passed - 1))" -le 22
pt_check rate_limit_lets_burst_through test "$((passed - 1))" -ge 10
exit "$PT_FAILED"
