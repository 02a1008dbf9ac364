# Helpers shared by the rendezvous*.sh integration tests (loopback only). Source
# after setting BIN (the pilot-rendezvous under test) and TMP_PREFIX; provides
# $TMP, the PIDS list that cleanup stops (kill -9, by PID), pass/fail/expect,
# free_port and stop_term.
PY=/usr/bin/python3
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
