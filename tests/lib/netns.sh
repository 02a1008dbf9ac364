# Shared helpers for the network-namespace integration tests (source it from bash).
#
# Every namespace, veth and process a test creates is recorded and removed by the EXIT
# trap, also when the test fails. Underlay addresses come from 198.18.0.0/15 only; the
# TUN subnet (10.4.0.0/16) is only ever configured inside these namespaces.
#
#   pt_init NAME            unique prefix, EXIT trap; call first
#   pt_ns NAME              create namespace $PT-NAME (lo up)
#   pt_bridge NAME          a namespace holding bridge br0 (the "internet")
#   pt_attach NS BR ADDR    veth from NS to BR's br0, ADDR (cidr) on the NS side
#   pt_link NS1 A1 NS2 A2   veth pair between two namespaces with addresses (cidr)
#   pt_nat ROUTER WAN LAN MODE   nftables masquerade on ROUTER (MODE cone|symmetric;
#                           cone also drops unsolicited WAN packets to the router itself)
#   pt_router NAME BR WAN LAN MODE  router namespace rNAME on BR's bridge at WAN (/24), and
#                           nNAME behind it at LAN.2/24 (LAN like 198.19.1, default route
#                           via LAN.1), pt_nat MODE on the router; non-zero if a step fails
#   pt_egress_443 NS        NS sends nothing out but TCP to port 443 (other TCP and all
#                           UDP dropped and counted: nft table inet ptfw, chain out)
#   pt_sshd NS ADDR         sshd on ADDR:22 in NS, key authentication only, no PAM; host
#                           key, user key (user) and config in PT_SSH_DIR ($PT_DIR/ssh)
#   pt_loss NS IF PERCENT   drop PERCENT % of packets arriving on IF, and of packets
#                           NS forwards out of IF (nftables numgen). On arrival, not on
#                           output: an output drop is an EPERM the sender sees, and
#                           sendmmsg sends such a datagram again (a second chance no
#                           real path gives)
#   pt_loss_clear NS        remove every pt_loss rule from NS
#   pt_spawn NS LOG CMD...  run CMD in NS in the background; sets PT_PID
#   pt_stop PID             SIGTERM, wait up to 5 s, then SIGKILL
#   pt_wait SECS CMD...     poll CMD every 0.1 s until it succeeds or SECS pass
#   pt_pass NAME / pt_fail NAME [why]   record a result line (PASS:/FAIL:)
#   pt_check NAME CMD...    run CMD; PASS or FAIL
#   pt_exec NS CMD...       run CMD in NS
set -u

PT_NS_LIST=()
PT_PIDS=()
PT_FAILED=0

pt_init() {
	PT=pt$$${1:0:3}
	PT_DIR=$(mktemp -d "/tmp/$PT.XXXXXX")
	trap pt_cleanup EXIT
	trap 'exit 130' INT TERM
}

pt_cleanup() {
	local pid ns
	for pid in "${PT_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${PT_PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	for ns in "${PT_NS_LIST[@]}"; do
		ip netns del "$ns" 2>/dev/null
	done
	[ -n "${PT_KEEP_LOGS:-}" ] || rm -rf "$PT_DIR"
}

# Not to be called in a subshell: the namespace list must persist for cleanup.
pt_ns() {
	local ns=$PT-$1
	ip netns add "$ns" || return 1
	PT_NS_LIST+=("$ns")
	ip -n "$ns" link set lo up
}

pt_exec() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

pt_bridge() {
	local ns=$PT-$1
	pt_ns "$1" || return 1
	ip -n "$ns" link add br0 type bridge
	ip -n "$ns" link set br0 up
}

# veth names must fit IFNAMSIZ: keep them short and unique per test.
PT_VETH_SEQ=0
# Sets PT_VETH (not a subshell: the counter must persist).
pt_veth_name() {
	PT_VETH_SEQ=$((PT_VETH_SEQ + 1))
	PT_VETH="v$$x$PT_VETH_SEQ"
	PT_VETH=${PT_VETH:0:15}
}

pt_attach() {
	local ns=$PT-$1 br=$PT-$2 addr=$3 a b
	pt_veth_name; a=$PT_VETH
	pt_veth_name; b=$PT_VETH
	ip link add "$a" type veth peer name "$b" || return 1
	ip link set "$a" netns "$ns"
	ip link set "$b" netns "$br"
	ip -n "$ns" link set "$a" name eth0 2>/dev/null && a=eth0
	ip -n "$ns" addr add "$addr" dev "$a"
	ip -n "$ns" link set "$a" up
	ip -n "$br" link set "$b" master br0
	ip -n "$br" link set "$b" up
}

pt_link() {
	local ns1=$PT-$1 a1=$2 ns2=$PT-$3 a2=$4 x y
	pt_veth_name; x=$PT_VETH
	pt_veth_name; y=$PT_VETH
	ip link add "$x" type veth peer name "$y" || return 1
	ip link set "$x" netns "$ns1"
	ip link set "$y" netns "$ns2"
	ip -n "$ns1" addr add "$a1" dev "$x"
	ip -n "$ns2" addr add "$a2" dev "$y"
	ip -n "$ns1" link set "$x" up
	ip -n "$ns2" link set "$y" up
	PT_LAST_IF1=$x
	PT_LAST_IF2=$y
}

# Masquerade everything leaving WAN. "cone": Linux keeps the source port when it can,
# which gives endpoint-independent mapping; "symmetric": fully-random ports per
# destination, which defeats hole punching.
# "cone" also drops unsolicited packets from WAN addressed to the router itself, like
# a home router. Without that, a hole-punch packet that reaches the router before
# our own outgoing one is delivered locally (no socket: ICMP), its conntrack entry
# (peer:port -> router:port) is confirmed, and masquerade must then give our outgoing
# flow to that peer another source port, so the "cone" would behave symmetric and
# simultaneous punching would fail depending on who sends first.
pt_nat() {
	local ns=$PT-$1 wan=$2 mode=$4 flags=""
	[ "$mode" = symmetric ] && flags="fully-random"
	pt_exec "$ns" sysctl -qw net.ipv4.ip_forward=1
	pt_exec "$ns" nft -f - <<NFT
table ip ptnat {
	chain post {
		type nat hook postrouting priority srcnat;
		oifname "$wan" masquerade $flags
	}
}
NFT
	[ "$mode" = cone ] || return 0
	pt_exec "$ns" nft -f - <<NFT
table inet ptfw {
	chain in {
		type filter hook input priority 0;
		iifname "$wan" ct state new drop
	}
}
NFT
}

pt_router() {
	local r=r$1 n=n$1
	pt_ns "$r" && pt_attach "$r" "$2" "$3/24" && pt_ns "$n" &&
		pt_link "$r" "$4.1/24" "$n" "$4.2/24" &&
		pt_exec "$PT-$n" ip route add default via "$4.1" &&
		pt_nat "$r" eth0 "$4.0/24" "$5"
}

pt_egress_443() {
	pt_exec "$PT-$1" nft -f - <<NFT
table inet ptfw {
	chain out {
		type filter hook output priority 0; policy accept;
		oifname "lo" accept
		meta l4proto udp counter drop
		tcp dport != 443 counter drop
	}
}
NFT
}

pt_sshd() {
	PT_SSH_DIR=$PT_DIR/ssh
	mkdir -p "$PT_SSH_DIR" /run/sshd
	ssh-keygen -q -t ed25519 -N '' -f "$PT_SSH_DIR/host" &&
		ssh-keygen -q -t ed25519 -N '' -f "$PT_SSH_DIR/user" || return 1
	cp "$PT_SSH_DIR/user.pub" "$PT_SSH_DIR/authorized_keys"
	cat >"$PT_SSH_DIR/sshd_config" <<EOF
ListenAddress $2:22
HostKey $PT_SSH_DIR/host
AuthorizedKeysFile $PT_SSH_DIR/authorized_keys
PidFile $PT_SSH_DIR/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
EOF
	pt_spawn "$1" "$PT_DIR/sshd.log" /usr/sbin/sshd -D -e -f "$PT_SSH_DIR/sshd_config"
}

pt_loss() {
	local ns=$PT-$1 ifname=$2 pct=$3
	pt_exec "$ns" nft -f - <<NFT
table inet ptloss {
	chain lossin {
		type filter hook prerouting priority 0;
		iifname "$ifname" numgen random mod 100 < $pct drop
	}
	chain lossfwd {
		type filter hook forward priority 0;
		oifname "$ifname" numgen random mod 100 < $pct drop
	}
}
NFT
}

pt_loss_clear() {
	pt_exec "$PT-$1" nft delete table inet ptloss 2>/dev/null
	return 0
}

pt_spawn() {
	local ns=$PT-$1 log=$2
	shift 2
	ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
	PT_PID=$!
	PT_PIDS+=("$PT_PID")
}

pt_stop() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return $?; }
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 137
}

pt_wait() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 10; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

pt_pass() { echo "PASS: $1"; }
pt_fail() {
	echo "FAIL: $1${2:+ ($2)}"
	PT_FAILED=$((PT_FAILED + 1))
}
pt_check() {
	local name=$1
	shift
	if "$@"; then pt_pass "$name"; else pt_fail "$name"; fi
}
