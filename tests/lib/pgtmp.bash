# A throw-away PostgreSQL cluster for tests: initdb + pg_ctl in a temporary
# directory, listening on a Unix socket only (no TCP), run as an unprivileged
# user (initdb refuses root: `nobody` when we are root). Source it, then:
#   pg_tmp_start DIR   -> sets PG_URL (postgres://...); 0, or 1 (see PG_WHY)
#   pg_tmp_psql SQL    -> runs SQL in the test database, prints unaligned rows
#   pg_tmp_stop        -> stops the cluster (fast), also safe when not started
# The caller removes DIR; pg_tmp_stop must run in its cleanup (also on failure).
PG_BIN=""
PG_DIR=""
PG_URL=""
PG_WHY=""

pg_tmp_find() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			PG_BIN=$d
			return 0
		fi
	done
	command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 &&
		PG_BIN=$(dirname "$(command -v initdb)") && return 0
	PG_WHY="PostgreSQL server binaries (initdb, pg_ctl) not installed"
	return 1
}

# as_pg CMD...: run as the cluster's owner.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		setpriv --reuid=nobody --regid=nogroup --clear-groups --reset-env -- "$@"
	else
		"$@"
	fi
}

pg_tmp_start() {
	local dir=$1 user
	pg_tmp_find || return 1
	PG_DIR=$dir
	mkdir -p "$dir/data" "$dir/sock"
	if [ "$(id -u)" = 0 ]; then
		chown -R nobody:nogroup "$dir"
		chmod 755 "$(dirname "$dir")" 2>/dev/null
		user=nobody
	else
		user=$(id -un)
	fi
	chmod 700 "$dir/data"
	if ! as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U pilot -E UTF8 --no-sync \
		>"$dir/initdb.log" 2>&1; then
		PG_WHY="initdb failed: $(tail -2 "$dir/initdb.log" | tr '\n' ' ')"
		PG_DIR=""
		return 1
	fi
	# No TCP; the socket in our directory; small and quick (fsync stays on:
	# the store's durability is what some tests check).
	if ! as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
		-o "-c listen_addresses='' -c unix_socket_directories='$dir/sock' -c max_connections=50 -c shared_buffers=16MB" \
		start >"$dir/pg_ctl.log" 2>&1; then
		PG_WHY="pg_ctl start failed: $(tail -3 "$dir/server.log" 2>/dev/null | tr '\n' ' ')"
		PG_DIR=""
		return 1
	fi
	as_pg "$PG_BIN/psql" -h "$dir/sock" -U pilot -d postgres -qAt -c "CREATE DATABASE pilot" >/dev/null 2>&1
	PG_URL="postgres://pilot@/pilot?host=$dir/sock"
	return 0
}

pg_tmp_psql() {
	as_pg "$PG_BIN/psql" -h "$PG_DIR/sock" -U pilot -d pilot -qAt -c "$1"
}

pg_tmp_stop() {
	[ -n "$PG_DIR" ] || return 0
	as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 20 stop >/dev/null 2>&1
	PG_DIR=""
}

# The database becomes unreachable (server stopped, connections dropped) and
# comes back on the same socket.
pg_tmp_pause() {
	as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 20 stop >/dev/null 2>&1
}

pg_tmp_resume() {
	as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
		-o "-c listen_addresses='' -c unix_socket_directories='$PG_DIR/sock' -c max_connections=50 -c shared_buffers=16MB" \
		start >/dev/null 2>&1
}
