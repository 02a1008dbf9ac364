# Helpers shared by the rendezvous*.sh integration tests (loopback only). Source
# from the top of the tree after setting TMP_PREFIX; sets BUILD (default build)
# and BIN (the sanitizer pilot-rendezvous under test) and provides $TMP, the PIDS
# list that cleanup stops (kill -9, by PID), pass/fail/expect, free_port,
# stop_term, start/wait_ready/client, kill9_under_load and sanitizer_clean.
PY=/usr/bin/python3
BUILD=${BUILD:-build}
BIN=$BUILD/san/bin/pilot-rendezvous
CLIENT=tests/integration/regclient.py
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}

if [ ! -x "$BIN" ]; then
	echo "FAIL: binary_present ($BIN missing; run make BUILD=$BUILD test-build)"
	exit 1
fi

TMP=$(mktemp -d "/tmp/$TMP_PREFIX.XXXXXX")
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1${2:+ ($2)}"; }
expect() { if [ "$2" = 0 ]; then pass "$1"; else fail "$1" "${3:-}"; fi; }

# A free TCP port in the dynamic range (the kernel picks, we release it).
free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# stop_term PID: SIGTERM, wait at most 10 s; sets RC to the exit status (255 if
# it had to be killed). Not in a subshell: only the parent shell can wait.
stop_term() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		RC=255
		return
	fi
	wait "$pid"
	RC=$?
}

# start NAME ARGS...: $BIN in the background with RDV_FLAGS (default -log-level
# debug) and ARGS, its output in $TMP/NAME.log; sets LAST_PID (stopped by cleanup).
start() {
	local name=$1
	shift
	# shellcheck disable=SC2086
	"$BIN" ${RDV_FLAGS:--log-level debug} "$@" >"$TMP/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# wait_ready PORT [TRIES]: 0 once the registry on PORT answers (every 0.1 s,
# 100 tries unless given).
wait_ready() {
	local i
	for ((i = 0; i < ${2:-100}; i++)); do
		$PY $CLIENT ping "$1" && return 0
		sleep 0.1
	done
	return 1
}

client() { $PY $CLIENT "$@"; }

# kill9_under_load PID PORT COUNT MIN ACKED: a loader registers up to COUNT
# nodes at PORT (the acknowledged IDs in the file ACKED, its log in ACKED.log);
# once MIN are acknowledged (or 10 s have passed) PID is killed with SIGKILL.
# Waits for both and prints how many were acknowledged.
kill9_under_load() {
	local pid=$1 port=$2 count=$3 min=$4 acked=$5 loader i
	: >"$acked"
	client load "$port" "$count" "$acked" >"$acked.log" 2>&1 &
	loader=$!
	PIDS+=("$loader")
	for ((i = 0; i < 200; i++)); do
		[ "$(wc -l <"$acked")" -ge "$min" ] && break
		sleep 0.05
	done
	kill -9 "$pid"
	wait "$pid" 2>/dev/null
	wait "$loader" 2>/dev/null
	echo "# acked before kill -9 of $pid: $(wc -l <"$acked")"
}

# sanitizer_clean NAME LOG...: PASS unless a log holds a sanitizer report.
sanitizer_clean() {
	local name=$1
	shift
	if grep -q 'Sanitizer\|runtime error' "$@"; then
		fail "$name" "$(grep -h -m3 'Sanitizer\|runtime error' "$@")"
	else
		pass "$name"
	fi
}
