#!/bin/bash
# pilot-rendezvous on PostgreSQL (issue 18), loopback only: a throw-away
# cluster (initdb + pg_ctl as an unprivileged user, Unix socket in a temporary
# directory, stopped at the end, also on failure). The registry's protocol
# scenarios run against both back ends (SQLite file and PostgreSQL); then
# -n, /healthz and /metrics, kill -9 durability, and two instances on one
# database: cross-instance lookups, privacy, handshakes, invites, key rotation
# and deregistration within 1 s, races decided by the database (node and
# network IDs, hostnames, network names), failover of 20 nodes after kill -9
# of one instance, and what happens while the database is down.
set -u
cd "$(dirname "$0")/../.."
TMP_PREFIX=pilot-rdv-pg
source tests/integration/rdv_common.bash
source tests/lib/pgtmp.bash
MULTI=tests/integration/regmulti.py

trap 'pg_tmp_stop; cleanup' EXIT
if ! pg_tmp_start "$TMP/pg"; then
	echo "SKIP: rendezvous_pg ($PG_WHY)"
	exit 0
fi
pass pg_cluster_started

multi() { $PY $MULTI "$@"; }
ADMIN=admin-$RANDOM$RANDOM

# ---- -n, option checks -------------------------------------------------------------------------
"$BIN" -n -no-beacon -registry-addr 127.0.0.1:1 -store "$PG_URL" >"$TMP/out" 2>&1
expect pg_check_ok $([ $? = 0 ] && grep -q "configuration OK" "$TMP/out"; echo $?) "$(cat "$TMP/out")"
"$BIN" -n -no-beacon -registry-addr 127.0.0.1:1 -store-url "postgres://pilot@/pilot?host=$TMP/nowhere" >"$TMP/out" 2>&1
expect pg_check_unreachable_refused $([ $? = 1 ] && grep -q "cannot connect to store" "$TMP/out"; echo $?) "$(cat "$TMP/out")"
"$BIN" -n -no-beacon -registry-addr 127.0.0.1:1 -store "$PG_URL" -standby 127.0.0.1:9 >"$TMP/out" 2>&1
expect pg_standby_refused $([ $? = 2 ]; echo $?) "$(cat "$TMP/out")"
"$BIN" -n -no-beacon -registry-addr 127.0.0.1:1 -store-url "mysql://x" >"$TMP/out" 2>&1
expect pg_store_url_scheme_checked $([ $? = 2 ]; echo $?) "$(cat "$TMP/out")"

# ---- the protocol scenarios on both back ends -------------------------------------------------------
for be in sqlite postgres; do
	if [ $be = sqlite ]; then STORE=$TMP/proto.db; else STORE=$PG_URL; fi
	P=$(free_port)
	H=$(free_port)
	start "proto_$be" -no-beacon -registry-addr 127.0.0.1:$P -http :$H -admin-token "$ADMIN" -store "$STORE"
	PP=$LAST_PID
	if ! wait_ready "$P"; then
		fail "proto_${be}_started" "$(tail -5 "$TMP/proto_$be.log")"
		continue
	fi
	for sc in "roundtrip $P $ADMIN" "privacy $P $ADMIN" "netrules $P $ADMIN" "replay $P" "pop $P" "malformed $P"; do
		client $sc 2>&1 | sed "s/^\(PASS\|FAIL\): /\1: ${be}_/"
	done
	HZ=$(curl -s "http://127.0.0.1:$H/healthz")
	expect "${be}_healthz_names_store" $(grep -q "store=$be" <<<"$HZ" && grep -q "db=up" <<<"$HZ"; echo $?) "$HZ"
	stop_term "$PP"
	expect "${be}_proto_sigterm_exit_0" $([ "$RC" = 0 ]; echo $?) "exit $RC"
	sanitizer_clean "${be}_proto_sanitizer_clean" "$TMP/proto_$be.log"
done
N=$(pg_tmp_psql "SELECT version FROM schema_version")
expect pg_schema_created_versioned $([ "$N" = 3 ]; echo $?) "$N"

# ---- rows the loader must not trust, both back ends (written by hand with the CLIs) ----------------
# A node ID past 32 bits (it truncated to another node's), the broadcast ID, a
# 2-byte key, a member row of network 65537 (truncated to network 1), a trust
# pair with node 0, next_node -1 (the next node would have been broadcast), and a
# node whose endpoint, source IP and tags are garbage: 6 rows refused, 3 columns
# left out; the store still loads, the instance serves, nothing was crashed into.
KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for be in sqlite postgres; do
	if [ $be = sqlite ]; then
		STORE=$TMP/proto.db
		k() { echo "x'$1'"; }
		sqlx() { sqlite3 "$STORE" "$1"; }
	else
		STORE=$PG_URL
		k() { echo "decode('$1','hex')"; }
		sqlx() { pg_tmp_psql "$1"; }
	fi
	cols="id, public_key, owner, live, real_addr, src_ip, public, hostname, tags, polo_score, task_exec, relay_only, flags"
	sqlx "INSERT INTO nodes($cols) VALUES(4294967297, $(k "$KEY"), NULL, 1, '198.18.0.9:4000', '198.18.0.9', 1, NULL, NULL, 0, 0, 0, 0);
		INSERT INTO nodes($cols) VALUES(4294967295, $(k "${KEY/a/b}"), NULL, 1, NULL, NULL, 0, NULL, NULL, 0, 0, 0, 0);
		INSERT INTO nodes($cols) VALUES(900001, $(k 0102), NULL, 1, NULL, NULL, 0, NULL, NULL, 0, 0, 0, 0);
		INSERT INTO nodes($cols) VALUES(900002, $(k "${KEY:0:62}ee"), NULL, 1, 'garbage', 'nope', 1, NULL, 'Bad Tag!', 0, 0, 0, 0);
		INSERT INTO members(net, node) VALUES(65537, 900002);
		INSERT INTO trust_pairs(a, b) VALUES(0, 900002);
		UPDATE meta SET value = -1 WHERE key = 'next_node';" >"$TMP/sqlx_$be.log" 2>&1 ||
		fail "${be}_bad_rows_written" "$(cat "$TMP/sqlx_$be.log")"
	P=$(free_port)
	H=$(free_port)
	start "bad_$be" -no-beacon -registry-addr 127.0.0.1:$P -http 127.0.0.1:$H -store "$STORE"
	BP=$LAST_PID
	if ! wait_ready "$P"; then
		fail "${be}_bad_rows_start" "$(tail -5 "$TMP/bad_$be.log")"
		continue
	fi
	M=$(curl -s "http://127.0.0.1:$H/metrics")
	expect "${be}_bad_rows_counted" $(grep -q '^pilot_store_rows_refused_total 9$' <<<"$M"; echo $?) \
		"$(grep rows_refused <<<"$M")"
	expect "${be}_bad_rows_logged" $(grep -q 'store row refused: node ID out of range' "$TMP/bad_$be.log" &&
		grep -q 'had bad rows: refused or repaired=9' "$TMP/bad_$be.log"; echo $?) \
		"$(grep -m5 'store row\|bad rows' "$TMP/bad_$be.log")"
	R=$($PY - "$P" <<-'EOF'
		import sys
		sys.path.insert(0, "tests/integration")
		from regclient import Conn, Node
		c = Conn(int(sys.argv[1]))
		out = []
		for i in (4294967295, 900001):
		    out.append(c.call({"type": "lookup", "node_id": i}).get("code"))
		l = c.call({"type": "lookup", "node_id": 900002})
		out.append("%s:%s:%s:%s" % (l.get("type"), l.get("real_addr"), l.get("tags"), l.get("networks")))
		r = Node(c).register()
		out.append(str(0 < r.get("node_id", 0) < 4294967295))
		print(" ".join(str(x) for x in out))
	EOF
	)
	expect "${be}_bad_rows_not_loaded_as_is" \
		$([ "$R" = "not_found not_found lookup_ok::None:[0] True" ]; echo $?) "$R"
	stop_term "$BP"
	expect "${be}_bad_rows_sigterm_exit_0" $([ "$RC" = 0 ]; echo $?) "exit $RC"
	grep -q "ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer" "$TMP/bad_$be.log"
	expect "${be}_bad_rows_sanitizer_clean" $([ $? != 0 ]; echo $?)
	# put the store back for what follows
	sqlx "DELETE FROM nodes WHERE id IN (4294967297, 4294967295, 900001, 900002);
		DELETE FROM members WHERE net = 65537; DELETE FROM trust_pairs WHERE a = 0;
		UPDATE meta SET value = 1 WHERE key = 'next_node' AND value < 1;" >/dev/null 2>&1
done

# ---- kill -9 mid-load: acknowledged registrations survive (PostgreSQL) ------------------------------
P=$(free_port)
start durable -no-beacon -registry-addr 127.0.0.1:$P -store "$PG_URL"
DUR=$LAST_PID
wait_ready "$P" || fail pg_durable_started
kill9_under_load "$DUR" "$P" 1000 100 "$TMP/acked"
start durable2 -no-beacon -registry-addr 127.0.0.1:$P -store "$PG_URL"
DUR=$LAST_PID
if wait_ready "$P"; then
	client checkids "$P" "$TMP/acked" | sed 's/^\(PASS\|FAIL\): /\1: pg_/'
else
	fail pg_killed_acked_registrations_survive "restart failed: $(tail -3 "$TMP/durable2.log")"
fi
stop_term "$DUR"

# ---- two instances, one database -------------------------------------------------------------------
P1=$(free_port)
P2=$(free_port)
H1=$(free_port)
start inst1 -no-beacon -registry-addr 127.0.0.1:$P1 -http :$H1 -admin-token "$ADMIN" -store "$PG_URL"
I1=$LAST_PID
B2=$(free_port)
start inst2 -beacon-addr 127.0.0.1:$B2 -registry-addr 127.0.0.1:$P2 -admin-token "$ADMIN" -store-url "$PG_URL"
I2=$LAST_PID
if wait_ready "$P1" && wait_ready "$P2"; then
	pass two_instances_started
	multi cross "$P1" "$P2" "$ADMIN"
	multi races "$P1" "$P2" 8 "$ADMIN"
	multi notify "$P1" "$P2" "$B2"
	multi replay "$P1" "$P2"
	multi ratelimit "$P1" "$P2"
	M=$(curl -s "http://127.0.0.1:$H1/metrics")
	expect metrics_change_feed $(grep -q '^pilot_store_changes_total [1-9]' <<<"$M" &&
		grep -q '^pilot_store_change_lag_seconds_max ' <<<"$M" && grep -q '^pilot_store_up 1' <<<"$M"; echo $?) \
		"$(grep pilot_store_ <<<"$M" | head -20)"

	# failover: 20 nodes with heartbeats on instance 2, kill -9 it under load; they
	# re-register by key with instance 1 (a node given one -registry restarts
	# pointed at the other): same IDs, within 10 s, no acknowledged write lost.
	multi nodes_on "$P2" 20 "$TMP/fo_nodes"
	kill9_under_load "$I2" "$P2" 2000 100 "$TMP/fo_acked"
	multi failover "$P2" "$P1" 20 "$TMP/fo_nodes"
	sleep 1
	client checkids "$P1" "$TMP/fo_acked" | sed 's/^\(PASS\|FAIL\): /\1: failover_/'

	# the database goes away: writes are refused with `unavailable`, reads go on
	# from memory; once it is back, writes work again.
	pg_tmp_pause
	sleep 0.5
	R=$($PY - "$P1" <<-'EOF'
		import sys
		sys.path.insert(0, "tests/integration")
		from regclient import Conn, Node
		c = Conn(int(sys.argv[1]), "127.0.7.1")
		first = Node(c).register()   # may find the dead connection first
		r = Node(c).register()
		l = c.call({"type": "lookup", "node_id": 1})
		print(r.get("code"), r.get("retry_after_ms"), l.get("type"))
	EOF
	)
	expect db_down_write_unavailable $([[ "$R" == "unavailable 1000 lookup_ok" ]]; echo $?) "$R"
	HZ=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$H1/healthz")
	expect db_down_healthz_503 $([ "$HZ" = 503 ]; echo $?) "$HZ"
	pg_tmp_resume
	R=""
	for ((i = 0; i < 30; i++)); do
		R=$($PY - "$P1" <<-'EOF'
			import sys
			sys.path.insert(0, "tests/integration")
			from regclient import Conn, Node
			print(Node(Conn(int(sys.argv[1]), "127.0.7.2")).register().get("type"))
		EOF
		)
		[ "$R" = register_ok ] && break
		sleep 0.2
	done
	expect db_back_writes_resume $([ "$R" = register_ok ]; echo $?) "$R"
else
	fail two_instances_started "$(tail -3 "$TMP/inst1.log" "$TMP/inst2.log")"
fi
stop_term "$I1"
expect inst1_sigterm_exit_0 $([ "$RC" = 0 ]; echo $?) "exit $RC"
sanitizer_clean instances_sanitizer_clean "$TMP/inst1.log" "$TMP/inst2.log"
