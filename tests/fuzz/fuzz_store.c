/* libFuzzer: loading the registry store (rendezvous/reg_store.c st_load and the
 * row decoders). The input is a list of rows, each inserted with bound values of
 * any type (SQLite's column affinity lets a TEXT sit in an INTEGER column, a blob
 * of any length in public_key); then reg_open loads the database and the loaded
 * state is queried, snapshotted and re-applied.
 *
 * The database never touches the disk: SQLite's "memdb" VFS is made the default,
 * and a name starting with '/' is shared by every connection of the process, so
 * the builder connection here and the registry's own see the same database.
 *
 * Row encoding: one byte table (mod the number of tables: known[] in that order,
 * then any other table of the schema), one byte n = how many leading columns
 * are given (the rest take their defaults, so seeds survive added columns),
 * then per column one type byte (mod 6): 0 NULL; 1 int64 (8 bytes big-endian);
 * 2 small int (1 byte, signed); 3 text (1 length byte + bytes); 4 blob (1
 * length byte + bytes); 5 a valid 32-byte key (1 byte picks it). Missing bytes
 * read as zero. Column names come from the schema the registry created. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sqlite3.h>

#include "lib/log.h"
#include "rendezvous/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const known[] = {
	"meta", "networks", "nodes", "owners", "members", "trust_pairs", "trust_halves", "hs_requests",
	"hs_inbox", "hs_responses", "invites",
};
#define MAXT 32
#define MAXC 24

static struct {
	char name[64];
	char col[MAXC][64];
	int ncol;
	sqlite3_stmt *ins[MAXC + 1]; /* by number of leading columns given */
} tabs[MAXT];
static int ntabs;

static char path[64];
static sqlite3 *db;
static registry *reg2;

typedef struct rd {
	const uint8_t *p;
	size_t n;
} rd;

static uint8_t u8(rd *r)
{
	uint8_t v = r->n ? *r->p : 0;

	if (r->n) {
		r->p++;
		r->n--;
	}
	return v;
}

static void setup(void)
{
	reg_config c = { 0 };
	char err[256], sql[128];
	registry *r;

	pilot_log_init("fuzz", (enum pilot_log_level)(PILOT_LOG_ERROR + 1), PILOT_LOG_TEXT);
	/* The registry creates the (empty) file itself; SQLite keeps the data in memory. */
	snprintf(path, sizeof(path), "/tmp/fuzz-store-%d.db", (int)getpid());
	if (sqlite3_vfs_register(sqlite3_vfs_find("memdb"), 1) != SQLITE_OK
	    || sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
		abort();
	c.store_path = path;
	if (!(r = reg_open(&c, err, sizeof(err)))) { /* creates the schema in the shared db */
		fprintf(stderr, "reg_open: %s\n", err);
		abort();
	}
	reg_close(r);
	unlink(path);
	/* The tables: the known ones first (stable indices for the seeds), then any other. */
	for (size_t k = 0; k <= sizeof(known) / sizeof(known[0]); k++) {
		sqlite3_stmt *q;

		if (sqlite3_prepare_v2(db, k < sizeof(known) / sizeof(known[0])
				       ? "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1"
				       : "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
					 " AND name != 'schema_version' ORDER BY name", -1, &q, NULL) != SQLITE_OK)
			abort();
		if (k < sizeof(known) / sizeof(known[0]))
			sqlite3_bind_text(q, 1, known[k], -1, SQLITE_STATIC);
		while (sqlite3_step(q) == SQLITE_ROW && ntabs < MAXT) {
			const char *n = (const char *)sqlite3_column_text(q, 0);
			bool dup = false;

			for (int i = 0; i < ntabs; i++)
				dup |= !strcmp(tabs[i].name, n);
			if (!dup)
				snprintf(tabs[ntabs++].name, sizeof(tabs[0].name), "%s", n);
		}
		sqlite3_finalize(q);
	}
	for (int t = 0; t < ntabs; t++) {
		sqlite3_stmt *q;

		snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", tabs[t].name);
		if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
			abort();
		while (sqlite3_step(q) == SQLITE_ROW && tabs[t].ncol < MAXC)
			snprintf(tabs[t].col[tabs[t].ncol++], sizeof(tabs[0].col[0]), "%s", sqlite3_column_text(q, 1));
		sqlite3_finalize(q);
	}
	if (ntabs < (int)(sizeof(known) / sizeof(known[0])))
		abort(); /* a known table is gone: update known[] (and the seeds) */
	c.store_path = NULL;
	reg2 = reg_open(&c, err, sizeof(err));
}

/* INSERT OR REPLACE INTO t(c1..cn) VALUES(?..?), prepared once per (t, n). */
static sqlite3_stmt *insert(int t, int n)
{
	char q[2048];
	int o;

	if (tabs[t].ins[n])
		return tabs[t].ins[n];
	o = snprintf(q, sizeof(q), "INSERT OR REPLACE INTO %s", tabs[t].name);
	if (!n)
		snprintf(q + o, sizeof(q) - (size_t)o, " DEFAULT VALUES");
	for (int i = 0; i < n; i++)
		o += snprintf(q + o, sizeof(q) - (size_t)o, "%s%s", i ? "," : "(", tabs[t].col[i]);
	for (int i = 0; i < n; i++)
		o += snprintf(q + o, sizeof(q) - (size_t)o, "%s?", i ? "," : ") VALUES(");
	if (n)
		snprintf(q + o, sizeof(q) - (size_t)o, ")");
	if (sqlite3_prepare_v2(db, q, -1, &tabs[t].ins[n], NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", q, sqlite3_errmsg(db));
		abort();
	}
	return tabs[t].ins[n];
}

static void bind(sqlite3_stmt *s, int i, rd *r)
{
	uint8_t k[32], len, t = u8(r) % 6;
	uint64_t v = 0;

	switch (t) {
	case 0:
		sqlite3_bind_null(s, i);
		break;
	case 1:
		for (int j = 0; j < 8; j++)
			v = v << 8 | u8(r);
		sqlite3_bind_int64(s, i, (sqlite3_int64)v);
		break;
	case 2:
		sqlite3_bind_int64(s, i, (int8_t)u8(r));
		break;
	case 3:
	case 4:
		len = u8(r);
		if (len > r->n)
			len = (uint8_t)r->n;
		if (t == 3)
			sqlite3_bind_text(s, i, (const char *)r->p, len, SQLITE_TRANSIENT);
		else
			sqlite3_bind_blob(s, i, r->p, len, SQLITE_TRANSIENT);
		r->p += len;
		r->n -= len;
		break;
	default:
		memset(k, u8(r), sizeof(k));
		k[0] ^= 0x5a;
		sqlite3_bind_blob(s, i, k, sizeof(k), SQLITE_TRANSIENT);
		break;
	}
}

static void query(registry *r, const char *json)
{
	json_object *q = json_tokener_parse(json), *resp;
	reg_ctx ctx = { .src_ip = "198.18.0.9", .src_port = 1234, .now_ms = 1767225600000ULL };

	resp = reg_handle(r, q, &ctx);
	if (!resp)
		__builtin_trap();
	json_object_put(resp);
	json_object_put(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rd in = { data, size };
	reg_config c = { 0 };
	char err[256], q[128];
	registry *r;
	int rows = 0;

	if (!db)
		setup();
	if (size > 16384)
		return 0;
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (int t = 0; t < ntabs; t++) {
		char del[96];

		snprintf(del, sizeof(del), "DELETE FROM %s", tabs[t].name);
		sqlite3_exec(db, del, NULL, NULL, NULL);
	}
	while (in.n && rows++ < 512) {
		int t = u8(&in) % ntabs, n = u8(&in) % (tabs[t].ncol + 1);
		sqlite3_stmt *s = insert(t, n);

		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		for (int i = 1; i <= n; i++)
			bind(s, i, &in);
		sqlite3_step(s); /* a constraint violation just drops the row */
		sqlite3_reset(s);
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);

	c.store_path = path;
	r = reg_open(&c, err, sizeof(err));
	unlink(path);
	if (!r)
		return 0;
	{
		json_object *snap = reg_snapshot(r);

		for (uint32_t id = 0; id < 6; id++) {
			snprintf(q, sizeof(q), "{\"type\":\"lookup\",\"node_id\":%u}", id);
			query(r, q);
			snprintf(q, sizeof(q), "{\"type\":\"list_nodes\",\"network_id\":%u}", id);
			query(r, q);
			(void)reg_may_talk(r, id, id + 1);
			(void)reg_handshake_pending(r, id, id + 1);
		}
		query(r, "{\"type\":\"list_networks\"}");
		query(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"a\"}");
		if (reg2 && reg_apply_snapshot(reg2, snap) < 0)
			__builtin_trap();
		json_object_put(snap);
	}
	reg_tick(r, 1767225600000ULL + 3600 * 1000);
	reg_close(r);
	return 0;
}
