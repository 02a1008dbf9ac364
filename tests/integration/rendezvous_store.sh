#!/bin/bash
# pilot-rendezvous with its store on a deliberately slow disk (issue 21): the
# -store-fsync-delay test hook makes every fsync of the SQLite store sleep 500 ms
# first (a VFS shim around SQLite's own sync, so the commit path is the real one),
# with -store-sync full so that every commit fsyncs.
#   - 100 lookups from another client all answer in < 50 ms while a commit is in
#     flight; a register is acknowledged only after its commit returned; a later
#     reply on the same connection waits and keeps its order;
#   - a burst of 40 registers shares fsyncs (group commit), seen in /metrics;
#   - kill -9 right after the acknowledgements loses none of them;
#   - with a small -store-queue, a burst gets prompt `busy` replies with a retry
#     hint instead of timing out, and retrying after the hint succeeds.
# Loopback only; every daemon is started here and stopped by PID in cleanup.
set -u
cd "$(dirname "$0")/../.."
TMP_PREFIX=pilot-rdvstore-test
source tests/integration/rdv_common.bash
RDV_FLAGS="-log-level info -no-beacon"

"$BIN" -no-beacon -store-sync sometimes >/dev/null 2>"$TMP/err"
RC=$?
expect cli_store_sync_bad_value_exit_2 $([ $RC = 2 ] && grep -q 'store-sync' "$TMP/err"; echo $?) "exit $RC"

# ---- slow disk: reads never wait, writes acknowledged after their commit ----------------
P=$(free_port)
H=$(free_port)
STORE=$TMP/store/registry.db
mkdir -p "$TMP/store"
start slow -registry-addr 127.0.0.1:$P -http 127.0.0.1:$H -store "$STORE" -no-rate-limit \
	-store-sync full -store-fsync-delay 500ms
SLOW=$LAST_PID
if wait_ready "$P" 150; then
	$PY tests/integration/regstore.py slowdisk "$P" "$H" 500 "$TMP/acked"
	# kill -9 right after the last acknowledgement: nothing acknowledged is lost
	kill -9 "$SLOW"
	wait "$SLOW" 2>/dev/null
	echo "# acked before kill -9: $(wc -l <"$TMP/acked")"
	start slow2 -registry-addr 127.0.0.1:$P -store "$STORE" -no-rate-limit
	SLOW=$LAST_PID
	if wait_ready "$P" 150; then
		client checkids "$P" "$TMP/acked"
	else
		fail killed_acked_registrations_survive "restart failed: $(tail -3 "$TMP/slow2.log")"
	fi
	stop_term "$SLOW"
	expect slow_store_sigterm_exit_0 $([ "$RC" = 0 ]; echo $?) "exit $RC"
else
	fail slow_store_started "$(tail -3 "$TMP/slow.log")"
fi

# ---- back-pressure: a full write queue answers busy at once -------------------------------
P=$(free_port)
H=$(free_port)
start busy -registry-addr 127.0.0.1:$P -http 127.0.0.1:$H -store "$TMP/store/busy.db" -no-rate-limit \
	-store-sync full -store-fsync-delay 300ms -store-queue 4
BUSY=$LAST_PID
if wait_ready "$P" 150; then
	$PY tests/integration/regstore.py busy "$P" "$H" 30
	stop_term "$BUSY"
	expect busy_store_sigterm_exit_0 $([ "$RC" = 0 ]; echo $?) "exit $RC"
	sanitizer_clean store_sanitizer_clean "$TMP/busy.log" "$TMP/slow.log" "$TMP/slow2.log"
else
	fail busy_store_started "$(tail -3 "$TMP/busy.log")"
fi
exit 0
