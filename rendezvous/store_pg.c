/* The PostgreSQL back end of the registry store (store_be.h), through libpq:
 * -store postgres://user@host/db (or -store-url). The schema is created and
 * migrated by the program under an advisory lock (several instances may start
 * at once), versioned in schema_version like the SQLite one. The writer thread
 * sends a batch as one libpq pipeline without BEGIN: every statement up to the
 * Sync forms one implicit transaction, committed at the Sync (all or nothing),
 * so a batch costs one round trip and one commit (one WAL flush) on the server.
 * Parameters travel in binary (int8 big-endian, text and bytea as bytes).
 *
 * Constraints the database enforces for every writer: primary keys on every
 * table (a new node is INSERTed without ON CONFLICT, so two instances cannot
 * both create one ID), and one live owner per hostname (unique partial index
 * nodes_live_hostname), so two instances cannot both commit the same name.
 * A batch refused by a constraint returns -EEXIST (the request is answered
 * `busy`) and the rows it touched are re-read and handed to the loop thread
 * as a repair, so the local state matches the database again.
 *
 * Active-active (STORE.md "Several instances"): every batch also appends its
 * encoded operations to the `changes` table and NOTIFYs pilot_changes, under
 * a transaction-scoped advisory lock so change IDs are in commit order. A
 * listener thread per instance (its own connection, LISTEN, and a poll every
 * second as a backstop) reads the rows after the last one it saw and hands
 * other instances' bodies to the loop thread. Rows older than 10 minutes are
 * pruned; an instance loads the tables at start after noting the newest
 * change, so it misses nothing in between. */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <libpq-fe.h>

#include "lib/log.h"
#include "rendezvous/store_be.h"

#define OID_INT8  20
#define OID_TEXT  25
#define OID_BYTEA 17

/* Advisory lock key held while creating or migrating the schema: "pilo". */
#define SCHEMA_LOCK 0x70696c6fLL
/* Advisory lock every batch holds until its commit: change IDs in commit order. */
#define CHANGE_LOCK    0x70696c63LL
#define CHANGE_KEEP    "10 minutes"
#define LISTEN_POLL_MS 1000

static const char *const schema[] = {
	"CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)",
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
	"CREATE TABLE IF NOT EXISTS nodes(id BIGINT PRIMARY KEY, public_key BYTEA NOT NULL,"
	" owner TEXT, live BIGINT NOT NULL, real_addr TEXT, src_ip TEXT, public BIGINT NOT NULL,"
	" hostname TEXT, tags TEXT, polo_score BIGINT NOT NULL, task_exec BIGINT NOT NULL,"
	" relay_only BIGINT NOT NULL DEFAULT 0, flags BIGINT NOT NULL DEFAULT 0)",
	"CREATE UNIQUE INDEX IF NOT EXISTS nodes_live_hostname ON nodes(hostname)"
	" WHERE live <> 0 AND hostname IS NOT NULL AND hostname <> ''",
	"CREATE TABLE IF NOT EXISTS owners(owner TEXT PRIMARY KEY, node BIGINT NOT NULL)",
	"CREATE TABLE IF NOT EXISTS networks(id BIGINT PRIMARY KEY, name TEXT NOT NULL,"
	" join_rule TEXT NOT NULL, token TEXT, created BIGINT NOT NULL, creator BIGINT NOT NULL)",
	"CREATE UNIQUE INDEX IF NOT EXISTS networks_name ON networks(name)",
	"CREATE TABLE IF NOT EXISTS members(net BIGINT NOT NULL, node BIGINT NOT NULL,"
	" PRIMARY KEY(net, node))",
	"CREATE TABLE IF NOT EXISTS trust_pairs(a BIGINT NOT NULL, b BIGINT NOT NULL, PRIMARY KEY(a, b))",
	"CREATE TABLE IF NOT EXISTS trust_halves(src BIGINT NOT NULL, dst BIGINT NOT NULL,"
	" ts BIGINT NOT NULL, PRIMARY KEY(src, dst))",
	"CREATE TABLE IF NOT EXISTS hs_requests(src BIGINT NOT NULL, dst BIGINT NOT NULL,"
	" ts BIGINT NOT NULL, PRIMARY KEY(src, dst))",
	/* seq orders each inbox; a replaced row takes a new number (moves to the end). */
	"CREATE SEQUENCE IF NOT EXISTS hs_seq",
	"CREATE TABLE IF NOT EXISTS hs_inbox(seq BIGINT NOT NULL DEFAULT nextval('hs_seq') PRIMARY KEY,"
	" dst BIGINT NOT NULL, src BIGINT NOT NULL, justification TEXT NOT NULL, ts BIGINT NOT NULL,"
	" UNIQUE(dst, src))",
	"CREATE TABLE IF NOT EXISTS hs_responses(seq BIGINT NOT NULL DEFAULT nextval('hs_seq') PRIMARY KEY,"
	" dst BIGINT NOT NULL, src BIGINT NOT NULL, accept BIGINT NOT NULL, ts BIGINT NOT NULL,"
	" UNIQUE(dst, src))",
	"CREATE TABLE IF NOT EXISTS invites(dst BIGINT NOT NULL, net BIGINT NOT NULL,"
	" inviter BIGINT NOT NULL, ts BIGINT NOT NULL, PRIMARY KEY(dst, net))",
	/* Node IDs: an instance reserves block n = nextval, IDs n*256 .. n*256+255
	 * (ID 0 is not used). Created past every ID already there (create_schema). */
	"CREATE SEQUENCE IF NOT EXISTS node_id_blocks MINVALUE 0 START 0",
	/* The feed between instances: each committed batch's operations. */
	"CREATE SEQUENCE IF NOT EXISTS change_ids",
	"CREATE TABLE IF NOT EXISTS changes(id BIGINT PRIMARY KEY, instance TEXT NOT NULL,"
	" ts TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), body BYTEA NOT NULL)",
	/* v2 signatures used by writes, until their sig_ts leaves the window: a
	 * replay of a signed write to any instance violates the key (ST_Q_SIG).
	 * Created on every open (IF NOT EXISTS): no schema version needed. */
	"CREATE TABLE IF NOT EXISTS sig_seen(sig BYTEA PRIMARY KEY, expires BIGINT NOT NULL)",
};

/* Each operation's SQL and parameter types (I int8, T text, B bytea). */
static const struct {
	const char *sql, *types;
} ops[ST_Q_COUNT] = {
	/* counters only grow: two instances may each write theirs */
	[ST_Q_META] = { "INSERT INTO meta(key, value) VALUES($1, $2)"
			" ON CONFLICT(key) DO UPDATE SET value = GREATEST(meta.value, EXCLUDED.value)",
			"TI" },
	[ST_Q_NODE_NEW] = { "INSERT INTO nodes(id, public_key, owner, live, real_addr, src_ip, public, "
			    "hostname,"
			    " tags, polo_score, task_exec, relay_only, flags)"
			    " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
			    "IBTITTITTIIII" },
	[ST_Q_SEEN] = { NULL, "BI" },
	[ST_Q_NODE_DEL] = { NULL, "I" },
	[ST_Q_NET_NEW] = { "INSERT INTO networks(id, name, join_rule, token, created, creator)"
			   " VALUES($1, $2, $3, $4, $5, $6)",
			   "ITTTII" },
	[ST_Q_NET_DEL] = { NULL, "I" },
	[ST_Q_SIG] = { "INSERT INTO sig_seen(sig, expires) VALUES($1, $2)", "BI" },
	[ST_Q_RL] = { NULL, "B" },
	[ST_Q_NODE] = { "INSERT INTO nodes(id, public_key, owner, live, real_addr, src_ip, public, hostname,"
			" tags, polo_score, task_exec, relay_only, flags)"
			" VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
			" ON CONFLICT(id) DO UPDATE SET public_key = EXCLUDED.public_key, owner = "
			"EXCLUDED.owner,"
			" live = EXCLUDED.live, real_addr = EXCLUDED.real_addr, src_ip = EXCLUDED.src_ip,"
			" public = EXCLUDED.public, hostname = EXCLUDED.hostname, tags = EXCLUDED.tags,"
			" polo_score = EXCLUDED.polo_score, task_exec = EXCLUDED.task_exec,"
			" relay_only = EXCLUDED.relay_only, flags = EXCLUDED.flags",
			"IBTITTITTIIII" },
	[ST_Q_OWNER] = { "INSERT INTO owners(owner, node) VALUES($1, $2)"
			 " ON CONFLICT(owner) DO UPDATE SET node = EXCLUDED.node",
			 "TI" },
	[ST_Q_NET] = { "INSERT INTO networks(id, name, join_rule, token, created, creator)"
		       " VALUES($1, $2, $3, $4, $5, $6) ON CONFLICT(id) DO UPDATE SET name = EXCLUDED.name,"
		       " join_rule = EXCLUDED.join_rule, token = EXCLUDED.token, created = EXCLUDED.created,"
		       " creator = EXCLUDED.creator",
		       "ITTTII" },
	[ST_Q_MEM_ADD] = { "INSERT INTO members(net, node) VALUES($1, $2) ON CONFLICT DO NOTHING", "II" },
	[ST_Q_MEM_DEL] = { "DELETE FROM members WHERE net = $1 AND node = $2", "II" },
	[ST_Q_PAIR_ADD] = { "INSERT INTO trust_pairs(a, b) VALUES($1, $2) ON CONFLICT DO NOTHING", "II" },
	[ST_Q_PAIR_DEL] = { "DELETE FROM trust_pairs WHERE a = $1 AND b = $2", "II" },
	[ST_Q_HALF_ADD] = { "INSERT INTO trust_halves(src, dst, ts) VALUES($1, $2, $3)"
			    " ON CONFLICT(src, dst) DO UPDATE SET ts = EXCLUDED.ts",
			    "III" },
	[ST_Q_HALF_DEL] = { "DELETE FROM trust_halves WHERE src = $1 AND dst = $2", "II" },
	[ST_Q_REQ_ADD] = { "INSERT INTO hs_requests(src, dst, ts) VALUES($1, $2, $3)"
			   " ON CONFLICT(src, dst) DO UPDATE SET ts = EXCLUDED.ts",
			   "III" },
	[ST_Q_REQ_DEL] = { "DELETE FROM hs_requests WHERE src = $1 AND dst = $2", "II" },
	[ST_Q_INBOX_ADD] = { "INSERT INTO hs_inbox(dst, src, justification, ts) VALUES($1, $2, $3, $4)"
			     " ON CONFLICT(dst, src) DO UPDATE SET justification = EXCLUDED.justification,"
			     " ts = EXCLUDED.ts, seq = nextval('hs_seq')",
			     "IITI" },
	[ST_Q_INBOX_CLEAR] = { "DELETE FROM hs_inbox WHERE dst = $1 AND $2::int8 IS NOT NULL", "II" },
	[ST_Q_INBOX_DEL] = { "DELETE FROM hs_inbox WHERE dst = $1 AND src = $2", "II" },
	[ST_Q_RESP_ADD] = { "INSERT INTO hs_responses(dst, src, accept, ts) VALUES($1, $2, $3, $4)"
			    " ON CONFLICT(dst, src) DO UPDATE SET accept = EXCLUDED.accept,"
			    " ts = EXCLUDED.ts, seq = nextval('hs_seq')",
			    "IIII" },
	[ST_Q_RESP_DEL] = { "DELETE FROM hs_responses WHERE dst = $1 AND src = $2", "II" },
	[ST_Q_RESP_CLEAR] = { "DELETE FROM hs_responses WHERE dst = $1 AND $2::int8 IS NOT NULL", "II" },
	[ST_Q_INV_ADD] = { "INSERT INTO invites(dst, net, inviter, ts) VALUES($1, $2, $3, $4)"
			   " ON CONFLICT(dst, net) DO UPDATE SET inviter = EXCLUDED.inviter, ts = "
			   "EXCLUDED.ts",
			   "IIII" },
	[ST_Q_INV_DEL] = { "DELETE FROM invites WHERE dst = $1 AND net = $2", "II" },
};

static const char wipe_sql[] =
	"TRUNCATE meta, nodes, owners, networks, members, trust_pairs, trust_halves, hs_requests,"
	" hs_inbox, hs_responses, invites";

typedef struct pg {
	PGconn *c; /* the writer's */
	char *url;
	bool prepared, pipeline;
	bool conflict;  /* the last drain saw a constraint violation */
	time_t sig_gc;  /* next removal of expired sig_seen rows (writer thread) */
	atomic_int writer_pid; /* the writer's server process: its own NOTIFYs wake no fetch */
	bool sync_full; /* -store-sync full: the server's synchronous_commit */
	char msg[256];
	char instance[33]; /* random, names this process in `changes` */
	atomic_int up;
	/* listener */
	pthread_t lth;
	bool lth_up;
	int stop_fd;
	st_change_cb cb;
	void *cb_arg;
	int64_t last_change;
	char lmsg[256];
} pg;

static void set_up(pg *b, bool up)
{
	atomic_store(&b->up, up ? 1 : 0);
}

static void set_msg(pg *b, const char *m)
{
	size_t n;

	snprintf(b->msg, sizeof(b->msg), "%s", m ? m : "unknown error");
	n = strlen(b->msg);
	while (n && (b->msg[n - 1] == '\n' || b->msg[n - 1] == ' '))
		b->msg[--n] = 0;
}

static int exec_ok(pg *b, const char *q)
{
	PGresult *res = PQexec(b->c, q);
	int st = PQresultStatus(res);
	int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -EIO;

	if (rc < 0)
		set_msg(b, PQerrorMessage(b->c));
	PQclear(res);
	return rc;
}

/* Connect with a short timeout unless the URL sets one; quiet notices. */
static void no_notice(void *arg, const char *m)
{
	(void)arg;
	(void)m;
}

static PGconn *connect_url(const char *url)
{
	const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
	const char *vals[] = { url, strstr(url, "connect_timeout=") ? NULL : "5", "pilot-rendezvous", NULL };
	PGconn *c;

	if (!vals[1]) { /* the URL's own timeout wins: drop ours */
		keys[1] = "application_name";
		vals[1] = "pilot-rendezvous";
		keys[2] = NULL;
		vals[2] = NULL;
	}
	c = PQconnectdbParams(keys, vals, 1);
	if (c && PQstatus(c) == CONNECTION_OK)
		PQsetNoticeProcessor(c, no_notice, NULL);
	return c;
}

static int schema_version(pg *b)
{
	PGresult *res = PQexec(b->c, "SELECT max(version) FROM schema_version");
	int v = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		v = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return v;
}

static int create_schema(pg *b, char *err, size_t errlen)
{
	char lock[80];
	PGresult *res;
	bool fresh_seq;
	int v;

	snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%lld)", SCHEMA_LOCK);
	if (exec_ok(b, "BEGIN") < 0 || exec_ok(b, lock) < 0)
		goto fail;
	res = PQexec(b->c, "SELECT to_regclass('node_id_blocks') IS NULL");
	fresh_seq = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	for (size_t i = 0; i < sizeof(schema) / sizeof(schema[0]); i++)
		if (exec_ok(b, schema[i]) < 0)
			goto fail;
	if (fresh_seq) {
		/* Nobody can have drawn from a sequence created under this lock. */
		char q[200];

		snprintf(q, sizeof(q),
			 "SELECT setval('node_id_blocks', (SELECT COALESCE(max(id), 0) FROM nodes) / %u + 1,"
			 " false) WHERE EXISTS (SELECT 1 FROM nodes)",
			 ST_ID_BLOCK);
		if (exec_ok(b, q) < 0)
			goto fail;
	}
	v = schema_version(b);
	if (v > ST_SCHEMA_VERSION) {
		exec_ok(b, "ROLLBACK");
		snprintf(err, errlen, "store has schema version %d, newer than this program (%d)", v,
			 ST_SCHEMA_VERSION);
		return -EPROTO;
	}
	/* Migrations from older PostgreSQL schema versions go here, in order
	 * (there are none yet: version 3 is the first this back end created). */
	if (v < 0) {
		char ins[80];

		snprintf(ins, sizeof(ins), "INSERT INTO schema_version(version) VALUES(%d)",
			 ST_SCHEMA_VERSION);
		if (exec_ok(b, ins) < 0)
			goto fail;
		log_info("store postgres: created schema version %d", ST_SCHEMA_VERSION);
	}
	if (exec_ok(b, "COMMIT") < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "store: %s", b->msg);
	PQexec(b->c, "ROLLBACK");
	return -EIO;
}

static int prepare_all(pg *b)
{
	static const Oid ctypes[2] = { OID_TEXT, OID_BYTEA };
	PGresult *cres;

	cres = PQprepare(b->c, "qc",
			 "INSERT INTO changes(id, instance, body)"
			 " VALUES(nextval('change_ids'), $1, $2)",
			 2, ctypes);
	if (PQresultStatus(cres) != PGRES_COMMAND_OK) {
		set_msg(b, PQerrorMessage(b->c));
		PQclear(cres);
		return -EIO;
	}
	PQclear(cres);
	for (int q = 0; q < ST_Q_COUNT; q++) {
		Oid types[ST_MAX_PARAMS];
		char name[16];
		int n = (int)strlen(ops[q].types);
		PGresult *res;

		if (!ops[q].sql)
			continue;
		for (int i = 0; i < n; i++)
			types[i] = ops[q].types[i] == 'I' ? OID_INT8
				: ops[q].types[i] == 'T'  ? OID_TEXT
							  : OID_BYTEA;
		snprintf(name, sizeof(name), "q%d", q);
		res = PQprepare(b->c, name, ops[q].sql, n, types);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			set_msg(b, PQerrorMessage(b->c));
			PQclear(res);
			return -EIO;
		}
		PQclear(res);
	}
	b->prepared = true;
	return 0;
}

/* -store-sync normal (the default): synchronous_commit off for the writer's
 * session. A commit is then acknowledged once it is in PostgreSQL's WAL
 * buffers: it survives a crash of this process and is visible to every
 * instance at once, but the newest ~0.6 s (3 x wal_writer_delay) could be lost
 * if the PostgreSQL server itself crashes, like SQLite's synchronous=NORMAL and
 * a power cut. full: the server's own setting (default on: flushed, and with
 * synchronous standbys replicated, before the reply). */
static int session_setup(pg *b)
{
	atomic_store(&b->writer_pid, PQbackendPID(b->c));
	return b->sync_full ? 0 : exec_ok(b, "SET synchronous_commit = off");
}

/* (Re)connect: after a lost connection the writer tries once per batch. */
static int ensure_conn(pg *b)
{
	if (b->c && PQstatus(b->c) == CONNECTION_OK)
		return 0;
	if (b->c) {
		PQfinish(b->c);
		b->c = NULL;
	}
	b->prepared = b->pipeline = false;
	b->c = connect_url(b->url);
	if (!b->c || PQstatus(b->c) != CONNECTION_OK) {
		set_msg(b, b->c ? PQerrorMessage(b->c) : "out of memory");
		return -EIO;
	}
	return session_setup(b) < 0 ? -EIO : prepare_all(b);
}

static int pg_open(void **be, const char *url, const reg_config *c, char *err, size_t errlen)
{
	pg *b;
	int rc;

	uint8_t rnd[16];

	if (!(b = calloc(1, sizeof(*b))) || !(b->url = strdup(url))) {
		free(b);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*be = b;
	b->stop_fd = -1;
	b->sync_full = c->store_sync_full;
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(b->instance, sizeof(b->instance), rnd, sizeof(rnd));
	set_up(b, true);
	b->c = connect_url(url);
	if (!b->c || PQstatus(b->c) != CONNECTION_OK) {
		set_msg(b, b->c ? PQerrorMessage(b->c) : "out of memory");
		snprintf(err, errlen, "cannot connect to store: %s", b->msg);
		return -EIO;
	}
	if ((rc = create_schema(b, err, errlen)) < 0)
		return rc;
	if (session_setup(b) < 0) {
		snprintf(err, errlen, "store: %s", b->msg);
		return -EIO;
	}
	{
		/* Load (next) sees every change up to this one; the feed starts after it. */
		PGresult *res = PQexec(b->c, "SELECT COALESCE(max(id), 0) FROM changes");

		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			set_msg(b, PQerrorMessage(b->c));
			PQclear(res);
			snprintf(err, errlen, "store: %s", b->msg);
			return -EIO;
		}
		b->last_change = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
	}
	if (prepare_all(b) < 0) {
		snprintf(err, errlen, "store: %s", b->msg);
		return -EIO;
	}
	return 0;
}

/* ---- writer thread ---- */
typedef struct sendbuf {
	const char *vals[ST_MAX_PARAMS];
	int lens[ST_MAX_PARAMS], fmts[ST_MAX_PARAMS];
	uint64_t ints[ST_MAX_PARAMS];
} sendbuf;

static int send_op(pg *b, const st_op *o, sendbuf *sb)
{
	char name[16];
	int n;

	if (o->q == ST_Q_WIPE)
		return PQsendQueryParams(b->c, wipe_sql, 0, NULL, NULL, NULL, NULL, 0) ? 0 : -EIO;
	if (!ops[o->q].sql)
		return 0; /* travels in the change feed only */
	n = (int)strlen(ops[o->q].types);
	if (o->n != n)
		return -EIO;
	for (int i = 0; i < n; i++) {
		const st_param *p = &o->p[i];

		sb->fmts[i] = 1;
		if (p->kind == ST_P_NULL) {
			sb->vals[i] = NULL;
			sb->lens[i] = 0;
		} else if (p->kind == ST_P_INT) {
			sb->ints[i] = htobe64((uint64_t)p->i);
			sb->vals[i] = (const char *)&sb->ints[i];
			sb->lens[i] = 8;
		} else {
			sb->vals[i] = p->len ? p->p : "";
			sb->lens[i] = (int)p->len;
		}
	}
	snprintf(name, sizeof(name), "q%d", o->q);
	return PQsendQueryPrepared(b->c, name, n, sb->vals, sb->lens, sb->fmts, 0) ? 0 : -EIO;
}

/* Read every result up to the pipeline's Sync: 0 if all succeeded. */
static int drain(pg *b)
{
	int rc = 0;

	for (;;) {
		PGresult *res = PQgetResult(b->c);
		int st;

		if (!res) {
			if (PQstatus(b->c) != CONNECTION_OK) {
				set_msg(b, PQerrorMessage(b->c));
				return -EIO;
			}
			continue; /* end of one query's results */
		}
		st = PQresultStatus(res);
		if (st == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			return rc;
		}
		if (st == PGRES_FATAL_ERROR) {
			const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);

			if (code && !strncmp(code, "23", 2)) /* integrity constraint violation */
				b->conflict = true;
			if (!rc) {
				set_msg(b, PQresultErrorMessage(res));
				log_warn("registry: store write failed store=postgres error=\"%s\"", b->msg);
			}
			rc = -EIO;
		} else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_ABORTED) {
			rc = -EIO;
		} else if (st == PGRES_PIPELINE_ABORTED) {
			rc = -EIO;
		}
		PQclear(res);
	}
}

static int send_sql(pg *b, const char *q)
{
	return PQsendQueryParams(b->c, q, 0, NULL, NULL, NULL, NULL, 0) ? 0 : -EIO;
}

static int sync_drain(pg *b)
{
	if (!PQpipelineSync(b->c)) {
		set_msg(b, PQerrorMessage(b->c));
		return -EIO;
	}
	return drain(b);
}

#define PG_CHUNK 512 /* statements sent before reading their results (no pipeline deadlock) */

/* The change feed row for the batch: every operation, as encoded. */
static int send_change(pg *b, const st_txn *t, size_t n)
{
	const char *vals[2];
	int lens[2], fmts[2] = { 1, 1 };
	size_t total = 0, off = 0;
	uint8_t *body;
	const st_txn *u = t;
	int rc;

	for (size_t i = 0; i < n; i++, u = u->next)
		total += u->len;
	if (!total)
		return 0;
	if (!(body = malloc(total)))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++, t = t->next) {
		memcpy(body + off, t->buf, t->len);
		off += t->len;
	}
	vals[0] = b->instance;
	lens[0] = (int)strlen(b->instance);
	vals[1] = (const char *)body;
	lens[1] = (int)total;
	rc = PQsendQueryPrepared(b->c, "qc", 2, vals, lens, fmts, 0) ? 0 : -EIO;
	free(body);
	return rc;
}

/* Re-encode row `row` of res as operation q: column kinds in `kinds` (I int8,
 * T text, B bytea), as the load SELECTs return them (text format). */
static void encode_row(st_txn *out, int q, const char *kinds, PGresult *res, int row)
{
	int n = (int)strlen(kinds);

	st_buf_op(out, q, n);
	for (int c = 0; c < n; c++) {
		const char *v = PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);

		if (kinds[c] == 'B') {
			size_t len = 0;
			unsigned char *p = v ? PQunescapeBytea((const unsigned char *)v, &len) : NULL;

			st_buf_bytes(out, ST_P_BLOB, p, len);
			PQfreemem(p);
		} else if (kinds[c] == 'T') {
			st_buf_bytes(out, ST_P_TEXT, v, v ? strlen(v) : 0);
		} else {
			st_buf_int(out, v ? strtoll(v, NULL, 10) : 0);
		}
	}
}

static PGresult *by_id(pg *b, const char *q, int64_t id)
{
	char idtxt[24];
	const char *vals[1] = { idtxt };
	PGresult *res;

	snprintf(idtxt, sizeof(idtxt), "%lld", (long long)id);
	res = PQexecParams(b->c, q, 1, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		PQclear(res);
		return NULL;
	}
	return res;
}

/* After a conflict: the nodes and networks txn wrote, as the database has
 * them now, to the loop thread. A record txn created is forgotten first
 * (ST_Q_*_DEL) and rebuilt from its rows, if another instance's exist. */
static void repair(pg *b, const st_txn *t)
{
	static const char qn[] = "SELECT id, public_key, owner, live, real_addr, src_ip, public, hostname,"
				 " tags, polo_score, task_exec, relay_only, flags FROM nodes WHERE id = $1";
	static const char qt[] =
		"SELECT id, name, join_rule, token, created, creator FROM networks WHERE id = $1";
	static const char qm[] = "SELECT net, node FROM members WHERE net = $1";
	st_txn out = { 0 };
	size_t off = 0;
	st_op o;

	if (!b->cb || (b->pipeline && !PQexitPipelineMode(b->c)))
		return;
	b->pipeline = false;
	while (st_txn_next(t, &off, &o) > 0) {
		bool node = o.q == ST_Q_NODE || o.q == ST_Q_NODE_NEW,
		     created = o.q == ST_Q_NODE_NEW || o.q == ST_Q_NET_NEW;
		PGresult *res;

		if (!node && o.q != ST_Q_NET && o.q != ST_Q_NET_NEW)
			continue;
		if (!(res = by_id(b, node ? qn : qt, o.p[0].i)))
			break;
		if (created || PQntuples(res) == 0) {
			st_buf_op(&out, node ? ST_Q_NODE_DEL : ST_Q_NET_DEL, 1);
			st_buf_int(&out, o.p[0].i);
		}
		if (PQntuples(res) == 1)
			encode_row(&out, node ? ST_Q_NODE : ST_Q_NET, node ? "IBTITTITTIIII" : "ITTTII", res,
				   0);
		PQclear(res);
		if (!node && (res = by_id(b, qm, o.p[0].i))) {
			for (int i = 0; i < PQntuples(res); i++)
				encode_row(&out, ST_Q_MEM_ADD, "II", res, i);
			PQclear(res);
		}
	}
	if (!out.failed && out.len)
		b->cb(b->cb_arg, out.buf, out.len, 0);
	free(out.buf);
}

/* One explicit transaction, pipelined: BEGIN, the change lock, the statements
 * in chunks (a Sync inside a transaction block does not commit), the change
 * row and NOTIFY, COMMIT. A statement that fails aborts the rest; the block
 * is then rolled back. */
static int commit_once(pg *b, const st_txn *t, size_t n);

/* A connection found dead at the first statement is replaced and the batch
 * sent once more (ambiguous only if it died during COMMIT: then the retry's
 * upserts are idempotent and a created row conflicts with itself, -EEXIST). */
static int pg_commit(void *be, const st_txn *t, size_t n)
{
	pg *b = be;
	int rc = commit_once(b, t, n);

	if (rc == -EIO && !b->conflict && b->c && PQstatus(b->c) != CONNECTION_OK)
		rc = commit_once(b, t, n);
	return rc;
}

static int commit_once(pg *b, const st_txn *t, size_t n)
{
	const st_txn *first = t;
	sendbuf sb;
	char lock[64];
	int rc = 0, k = 0, sent;

	if (ensure_conn(b) < 0) {
		set_up(b, false);
		log_warn("registry: store unreachable store=postgres error=\"%s\"", b->msg);
		return -EIO;
	}
	if (!b->pipeline) {
		if (!PQenterPipelineMode(b->c))
			return -EIO;
		b->pipeline = true;
	}
	b->conflict = false;
	snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%lld)", CHANGE_LOCK);
	rc = send_sql(b, "BEGIN");
	if (!rc)
		rc = send_sql(b, lock);
	sent = 2;
	if (!rc && time(NULL) >= b->sig_gc) { /* at most every 30 s, by whichever instance writes */
		b->sig_gc = time(NULL) + 30;
		rc = send_sql(b, "DELETE FROM sig_seen WHERE expires < EXTRACT(EPOCH FROM now())::bigint");
		sent++;
	}
	for (size_t i = 0; i < n && !rc; i++, t = t->next) {
		size_t off = 0;
		st_op o;

		while (!rc && (k = st_txn_next(t, &off, &o)) > 0) {
			rc = send_op(b, &o, &sb);
			if (!rc && ++sent >= PG_CHUNK) {
				rc = sync_drain(b);
				sent = 0;
			}
		}
		if (k < 0)
			rc = -EIO;
	}
	if (!rc)
		rc = send_change(b, first, n);
	if (!rc)
		rc = send_sql(b, "NOTIFY pilot_changes");
	if (PQstatus(b->c) != CONNECTION_OK) {
		set_up(b, false);
		return -EIO;
	}
	if (!rc) {
		rc = send_sql(b, "COMMIT");
		if (!rc)
			rc = sync_drain(b);
	}
	if (rc < 0 && PQstatus(b->c) == CONNECTION_OK) {
		/* Discard what the Sync left open (a failed or unfinished block). */
		if (send_sql(b, "ROLLBACK") == 0)
			sync_drain(b);
	}
	set_up(b, PQstatus(b->c) == CONNECTION_OK);
	if (rc < 0 && b->conflict) {
		if (n == 1)
			repair(b, first);
		return -EEXIST;
	}
	return rc;
}

/* ---- listener thread: other instances' changes ---- */
static void lmsg(pg *b, PGconn *c, const char *what)
{
	char m[256];

	snprintf(m, sizeof(m), "%s", c ? PQerrorMessage(c) : "out of memory");
	m[strcspn(m, "\n")] = 0;
	if (strcmp(m, b->lmsg)) {
		log_warn("registry: store change feed %s store=postgres error=\"%s\"", what, m);
		snprintf(b->lmsg, sizeof(b->lmsg), "%s", m);
	}
}

/* Read every change after last_change; deliver those of other instances. */
static int fetch_changes(pg *b, PGconn *c)
{
	static const char q[] =
		"SELECT id, instance, body, (extract(epoch FROM clock_timestamp() - ts) * 1000)::float8"
		" FROM changes WHERE id > $1 ORDER BY id LIMIT 1000";

	for (;;) {
		char last[24];
		const char *vals[1] = { last };
		int fmts[4] = { 0 };
		PGresult *res;
		int rows;

		snprintf(last, sizeof(last), "%lld", (long long)b->last_change);
		res = PQexecParams(c, q, 1, NULL, vals, NULL, fmts, 1); /* binary results */
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			PQclear(res);
			return -EIO;
		}
		rows = PQntuples(res);
		for (int i = 0; i < rows; i++) {
			uint64_t id;
			double lag;
			uint64_t lagbits;

			if (PQgetlength(res, i, 0) != 8 || PQgetlength(res, i, 3) != 8)
				continue;
			memcpy(&id, PQgetvalue(res, i, 0), 8);
			b->last_change = (int64_t)be64toh(id);
			if ((size_t)PQgetlength(res, i, 1) == strlen(b->instance) &&
			    !memcmp(PQgetvalue(res, i, 1), b->instance, strlen(b->instance)))
				continue; /* ours: already in memory */
			memcpy(&lagbits, PQgetvalue(res, i, 3), 8);
			lagbits = be64toh(lagbits);
			memcpy(&lag, &lagbits, 8);
			b->cb(b->cb_arg, (const uint8_t *)PQgetvalue(res, i, 2),
			      (size_t)PQgetlength(res, i, 2), lag < 0 ? 0 : lag);
		}
		PQclear(res);
		if (rows < 1000)
			return 0;
	}
}

static void *listen_main(void *arg)
{
	pg *b = arg;
	PGconn *c = NULL;
	uint64_t last_prune = 0, last_fetch = 0;
	bool fetch = true;
	int rc;

	/* A fetch when another instance notified, after a reconnect, and on every
	 * second at least (a missed notification); not for the NOTIFY of this
	 * instance's own writer (be_pid), whose rows are in memory already: a
	 * SELECT of its own bodies per batch was database work that a single
	 * instance does for nothing. Own rows are skipped at the next fetch. */
	for (;;) {
		struct pollfd pf[2] = { { b->stop_fd, POLLIN, 0 }, { -1, POLLIN, 0 } };
		struct timespec ts;
		uint64_t now;
		PGnotify *nf;

		if (!c || PQstatus(c) != CONNECTION_OK) {
			PGresult *res;

			if (c)
				PQfinish(c);
			c = connect_url(b->url);
			res = c && PQstatus(c) == CONNECTION_OK ? PQexec(c, "LISTEN pilot_changes") : NULL;
			if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
				lmsg(b, c, "cannot connect");
				PQclear(res);
				set_up(b, false);
				if (poll(pf, 1, LISTEN_POLL_MS) > 0)
					break;
				continue;
			}
			PQclear(res);
			if (b->lmsg[0])
				log_info("registry: store change feed reconnected store=postgres");
			b->lmsg[0] = 0;
			set_up(b, true);
			fetch = true;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
		if (fetch || now >= last_fetch + LISTEN_POLL_MS) {
			if (fetch_changes(b, c) < 0) {
				lmsg(b, c, "read failed");
				continue;
			}
			last_fetch = now;
		}
		fetch = false;
		now /= 1000;
		if (now >= last_prune + 60) {
			PQclear(PQexec(
				c,
				"DELETE FROM changes WHERE ts < clock_timestamp() - interval '" CHANGE_KEEP
				"'"));
			last_prune = now;
		}
		pf[1].fd = PQsocket(c);
		if ((rc = poll(pf, 2, LISTEN_POLL_MS)) < 0 && errno != EINTR)
			break;
		if (pf[0].revents)
			break;
		fetch = rc == 0; /* timed out; else only on another's NOTIFY (below) */
		if (pf[1].revents && !PQconsumeInput(c)) {
			fetch = true;
			continue; /* reconnect above */
		}
		while ((nf = PQnotifies(c))) {
			if (nf->be_pid != atomic_load(&b->writer_pid))
				fetch = true;
			PQfreemem(nf);
		}
	}
	if (c)
		PQfinish(c);
	return NULL;
}

static int pg_listen(void *be, st_change_cb cb, void *arg, char *err, size_t errlen)
{
	pg *b = be;
	int rc;

	b->cb = cb;
	b->cb_arg = arg;
	if ((b->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		snprintf(err, errlen, "store: eventfd: %s", strerror(errno));
		return -errno;
	}
	if ((rc = pthread_create(&b->lth, NULL, listen_main, b)) != 0) {
		snprintf(err, errlen, "store: cannot start the change listener: %s", strerror(rc));
		return -rc;
	}
	b->lth_up = true;
	return 0;
}

/* Reserve ST_ID_BLOCK node IDs: the sequence is first moved past every ID in
 * the table (nodes created before, e.g. imported), then advanced. */
static int pg_id_block(void *be, uint32_t *first)
{
	pg *b = be;
	PGresult *res;
	int64_t blk = -1;

	if (ensure_conn(b) < 0)
		return -EIO;
	if (b->pipeline) {
		if (!PQexitPipelineMode(b->c))
			return -EIO;
		b->pipeline = false;
	}
	res = PQexec(b->c, "SELECT nextval('node_id_blocks')");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		blk = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	else
		set_msg(b, PQerrorMessage(b->c));
	PQclear(res);
	if (blk < 0 || blk >= (int64_t)(0xFFFFFFFFu / ST_ID_BLOCK))
		return -EIO;
	*first = (uint32_t)blk * ST_ID_BLOCK;
	return 0;
}

static int pg_up(void *be)
{
	return atomic_load(&((pg *)be)->up);
}

/* ---- load (before the writer starts; not in pipeline mode) ---- */
typedef struct pgrow {
	PGresult *res;
	int row;
	unsigned char *blob;
} pgrow;

static int64_t pg_i64(st_row *row, int col)
{
	pgrow *p = row->impl;

	return PQgetisnull(p->res, p->row, col) ? 0 : strtoll(PQgetvalue(p->res, p->row, col), NULL, 10);
}

static const char *pg_text(st_row *row, int col)
{
	pgrow *p = row->impl;

	return PQgetisnull(p->res, p->row, col) ? NULL : PQgetvalue(p->res, p->row, col);
}

static const void *pg_blob(st_row *row, int col, size_t *len)
{
	pgrow *p = row->impl;

	*len = 0;
	if (PQgetisnull(p->res, p->row, col))
		return NULL;
	PQfreemem(p->blob);
	p->blob = PQunescapeBytea((const unsigned char *)PQgetvalue(p->res, p->row, col), len);
	return p->blob;
}

static int pg_each_row(void *be, registry *r, const char *q, st_row_fn fn, uint64_t now_ms)
{
	pg *b = be;
	pgrow p = { 0 };
	st_row row = { pg_i64, pg_text, pg_blob, &p };
	int rc = 0;

	p.res = PQexec(b->c, q);
	if (PQresultStatus(p.res) != PGRES_TUPLES_OK) {
		set_msg(b, PQerrorMessage(b->c));
		PQclear(p.res);
		return -EIO;
	}
	for (p.row = 0; p.row < PQntuples(p.res) && !rc; p.row++)
		if (fn(r, &row, now_ms) < 0)
			rc = -ENOMEM;
	PQfreemem(p.blob);
	PQclear(p.res);
	return rc;
}

static const char *pg_errmsg(void *be)
{
	pg *b = be;

	return b ? b->msg : "out of memory";
}

static void pg_close(void *be)
{
	pg *b = be;

	uint64_t one = 1;

	if (!b)
		return;
	if (b->lth_up) {
		if (write(b->stop_fd, &one, sizeof(one)) < 0) {
			/* cannot happen with a fresh eventfd */
		}
		pthread_join(b->lth, NULL);
	}
	if (b->stop_fd >= 0)
		close(b->stop_fd);
	if (b->c)
		PQfinish(b->c);
	free(b->url);
	free(b);
}

/* -n: connect, and if the schema is there it must not be newer than ours
 * (a missing schema is created at start). Reads only. */
static int pg_check(const char *url, char *err, size_t errlen)
{
	pg b = { 0 };
	PGresult *res;
	int rc = 0, v = -1;

	b.c = connect_url(url);
	if (!b.c || PQstatus(b.c) != CONNECTION_OK) {
		set_msg(&b, b.c ? PQerrorMessage(b.c) : "out of memory");
		snprintf(err, errlen, "cannot connect to store: %s", b.msg);
		PQfinish(b.c);
		return -EIO;
	}
	res = PQexec(b.c, "SELECT to_regclass('schema_version') IS NOT NULL");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't')
		v = schema_version(&b);
	PQclear(res);
	if (v > ST_SCHEMA_VERSION) {
		snprintf(err, errlen, "store has schema version %d, newer than this program (%d)", v,
			 ST_SCHEMA_VERSION);
		rc = -EPROTO;
	}
	PQfinish(b.c);
	return rc;
}

const st_backend st_pg_backend = {
	.name = "postgres",
	.shared = true,
	.listen = pg_listen,
	.up = pg_up,
	.id_block = pg_id_block,
	.open = pg_open,
	.each_row = pg_each_row,
	.commit = pg_commit,
	.errmsg = pg_errmsg,
	.check = pg_check,
	.close = pg_close,
};
