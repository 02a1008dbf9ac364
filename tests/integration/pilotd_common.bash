# Helpers shared by the pilotd_*.sh integration tests (source after netns.sh).
# Not a test itself (run.sh runs *.sh only).
#
#   pd_init NAME                 pt_init + binaries; sets PD_BIN, PD_CTL, PD_RDV
#   pd_rendezvous NS IP          registry :9000 + beacon :9001 at IP inside NS
#   pd_start NAME NS [flags]     pilotd in NS with an identity and socket under $PT_DIR/NAME;
#                                waits until it is registered; sets PD_ID[NAME], PD_PID[NAME]
#   pd_stop NAME                 SIGTERM it by PID
#   pd_ctl NAME args...          pilotctl --json against NAME's socket (stdout; errors to stdout too)
#   pd_json EXPR                 read JSON on stdin, print the python expression EXPR of it (d = data)
#   pd_trust_pair A B            mutual handshake; waits until both trust each other

PD_REGISTRY=""
PD_BEACON=""
declare -A PD_ID PD_PID PD_NS PD_ARGS

pd_init() {
	pt_init "$1"
	BUILD=${BUILD:-build}
	PD_BIN=$BUILD/san/bin/pilotd
	PD_CTL=$BUILD/san/bin/pilotctl
	PD_RDV=$BUILD/san/bin/pilot-rendezvous
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
	local b
	for b in "$PD_BIN" "$PD_CTL" "$PD_RDV"; do
		if [ ! -x "$b" ]; then
			echo "FAIL: binaries_present ($b missing; run make BUILD=$BUILD test-build)"
			exit 1
		fi
	done
}

# One LAN on bridge "net": namespace rdv at 198.18.0.1, then each NAME at
# 198.18.0.10, .11, ... in the order given. Not in a subshell (pt_ns records
# the namespaces for cleanup).
pd_lan() {
	local i=10 n
	pt_bridge net || return 1
	pt_ns rdv && pt_attach rdv net 198.18.0.1/24 || return 1
	for n in "$@"; do
		pt_ns "$n" && pt_attach "$n" net "198.18.0.$i/24" || return 1
		i=$((i + 1))
	done
}

pd_rendezvous() { # NS IP [extra rendezvous flags]
	local ns=$1 ip=$2
	shift 2
	PD_REGISTRY=$ip:9000
	PD_BEACON=$ip:9001
	pt_spawn "$ns" "$PT_DIR/rdv.log" "$PD_RDV" -registry-addr "$ip:9000" -beacon-addr "$ip:9001" \
		-no-rate-limit -log-level debug "$@"
	PD_RDV_PID=$PT_PID
	pt_wait 10 pt_exec "$PT-$ns" bash -c "exec 3<>/dev/tcp/$ip/9000"
}

# Poll CMD every 0.2 s until it succeeds or SECS of wall time pass (pt_wait counts
# iterations, which is too long when CMD itself takes seconds).
pd_wait() {
	local end=$((SECONDS + $1))
	shift
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		[ $SECONDS -ge $end ] && return 1
		sleep 0.2
	done
}

pd_json() {
	python3 -c '
import json, sys
try:
    o = json.load(sys.stdin)
except Exception:
    sys.exit(1)
d = o.get("data", o)
try:
    v = eval(sys.argv[1])
except Exception:
    sys.exit(1)
if v is None or v is False:
    sys.exit(1)
print(v if not isinstance(v, (dict, list)) else json.dumps(v))
' "$1"
}

pd_ctl() {
	local name=$1
	shift
	"$PD_CTL" --json --socket "$PT_DIR/$name/ctl.sock" "$@" 2>&1
}

# listening Pilot ports of a node (pilotctl info "ports"); wait for a count with
# pd_wait SECS pd_ports_at_least NODE N (a listener started in the background)
pd_ports() { pd_ctl "$1" info | pd_json 'd["ports"]'; }
pd_ports_at_least() { [ "$(pd_ports "$1")" -ge "$2" ] 2>/dev/null; }

pd_registered() {
	pd_ctl "$1" info | pd_json 'd["registered"] and d["node_id"]' >/dev/null
}

pd_start() {
	local name=$1 ns=$2
	shift 2
	mkdir -p "$PT_DIR/$name"
	PD_NS[$name]=$ns
	PD_ARGS[$name]="$*"
	pt_spawn "$ns" "$PT_DIR/$name.log" "$PD_BIN" -registry "$PD_REGISTRY" -beacon "$PD_BEACON" \
		-identity "$PT_DIR/$name/identity.json" -socket "$PT_DIR/$name/ctl.sock" \
		-log-level debug "$@"
	PD_PID[$name]=$PT_PID
	if ! pd_wait 15 pd_registered "$name"; then
		echo "pilotd $name did not register; log:"
		tail -n 20 "$PT_DIR/$name.log"
		return 1
	fi
	PD_ID[$name]=$(pd_ctl "$name" info | pd_json 'd["node_id"]')
}

# Restart with the same flags (and the same identity and trust.json).
pd_restart() {
	local name=$1
	pd_stop "$name"
	# shellcheck disable=SC2086
	pd_start "$name" "${PD_NS[$name]}" ${PD_ARGS[$name]}
}

pd_stop() {
	pt_stop "${PD_PID[$1]}"
}

pd_trusts() { # A trusts B
	pd_ctl "$1" trust | pd_json "any(t['node_id'] == ${PD_ID[$2]} for t in d['trusted'])" >/dev/null
}

pd_trust_pair() {
	local a=$1 b=$2
	pd_ctl "$a" handshake "${PD_ID[$b]}" "test $a-$b" >/dev/null
	pd_ctl "$b" handshake "${PD_ID[$a]}" "test $b-$a" >/dev/null
	pd_wait 20 pd_trusts "$a" "$b" && pd_wait 20 pd_trusts "$b" "$a"
}

pd_ping_ok() { # A pings B: every sample answered
	pd_ctl "$1" ping "${PD_ID[$2]}" --count "${3:-2}" --timeout 4s \
		| pd_json 'all("rtt_ms" in r for r in d["results"]) and len(d["results"]) > 0' >/dev/null
}

pd_path() { # path of B in A's peer table
	pd_ctl "$1" peers | pd_json "[p['path'] for p in d['peers'] if p['node_id'] == ${PD_ID[$2]}][0]"
}
