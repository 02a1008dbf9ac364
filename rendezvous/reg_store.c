/* Crash-safe persistence in SQLite: WAL journal, synchronous=NORMAL (a committed
 * transaction survives kill -9 of the process), database, -wal and -shm files
 * mode 0600. Every mutating handler writes only the rows it changed, in one
 * transaction, before its response is sent. Heartbeats (last_seen) stay in
 * memory; live nodes restart with last_seen = load time, so they are reaped
 * only if they stay silent for the stale period after a restart. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "lib/fileutil.h"
#include "lib/log.h"
#include "rendezvous/reg_internal.h"

/* 1: initial; 2: nodes.relay_only; 3: nodes.flags (NODE_F_*). Older stores
 * are upgraded in place at open. */
#define SCHEMA_VERSION 3
#define NODE_F_SIG_V2       1 /* has signed with v2: no v1 (SIGNATURES.md) */
#define NODE_F_OWNER_PROVEN 2 /* owner set by a request the node's key signed */

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS nodes(id INTEGER PRIMARY KEY, public_key BLOB NOT NULL,"
	" owner TEXT, live INTEGER NOT NULL, real_addr TEXT, src_ip TEXT, public INTEGER NOT NULL,"
	" hostname TEXT, tags TEXT, polo_score INTEGER NOT NULL, task_exec INTEGER NOT NULL,"
	" relay_only INTEGER NOT NULL DEFAULT 0, flags INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS owners(owner TEXT PRIMARY KEY, node INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS networks(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
	" join_rule TEXT NOT NULL, token TEXT, created INTEGER NOT NULL, creator INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS members(net INTEGER NOT NULL, node INTEGER NOT NULL,"
	" PRIMARY KEY(net, node)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS trust_pairs(a INTEGER NOT NULL, b INTEGER NOT NULL,"
	" PRIMARY KEY(a, b)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS trust_halves(src INTEGER NOT NULL, dst INTEGER NOT NULL,"
	" ts INTEGER NOT NULL, PRIMARY KEY(src, dst)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS hs_requests(src INTEGER NOT NULL, dst INTEGER NOT NULL,"
	" ts INTEGER NOT NULL, PRIMARY KEY(src, dst)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS hs_inbox(seq INTEGER PRIMARY KEY, dst INTEGER NOT NULL,"
	" src INTEGER NOT NULL, justification TEXT NOT NULL, ts INTEGER NOT NULL, UNIQUE(dst, src));"
	"CREATE TABLE IF NOT EXISTS hs_responses(seq INTEGER PRIMARY KEY, dst INTEGER NOT NULL,"
	" src INTEGER NOT NULL, accept INTEGER NOT NULL, ts INTEGER NOT NULL, UNIQUE(dst, src));"
	"CREATE TABLE IF NOT EXISTS invites(dst INTEGER NOT NULL, net INTEGER NOT NULL,"
	" inviter INTEGER NOT NULL, ts INTEGER NOT NULL, PRIMARY KEY(dst, net)) WITHOUT ROWID;";

enum {
	Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_META, Q_NODE, Q_OWNER, Q_NET, Q_MEM_ADD, Q_MEM_DEL,
	Q_PAIR_ADD, Q_PAIR_DEL, Q_HALF_ADD, Q_HALF_DEL, Q_REQ_ADD, Q_REQ_DEL, Q_INBOX_ADD,
	Q_INBOX_CLEAR, Q_INBOX_DEL, Q_RESP_ADD, Q_RESP_DEL, Q_RESP_CLEAR, Q_INV_ADD, Q_INV_DEL,
	Q_COUNT
};

static const char *const sql[Q_COUNT] = {
	[Q_BEGIN] = ("BEGIN IMMEDIATE"),
	[Q_COMMIT] = ("COMMIT"),
	[Q_ROLLBACK] = ("ROLLBACK"),
	[Q_META] = ("INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)"),
	[Q_NODE] = ("INSERT OR REPLACE INTO nodes(id, public_key, owner, live, real_addr, src_ip,"
		   " public, hostname, tags, polo_score, task_exec, relay_only, flags)"
		   " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
	[Q_OWNER] = ("INSERT OR REPLACE INTO owners(owner, node) VALUES(?1, ?2)"),
	[Q_NET] = ("INSERT OR REPLACE INTO networks(id, name, join_rule, token, created, creator)"
		  " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"),
	[Q_MEM_ADD] = ("INSERT OR IGNORE INTO members(net, node) VALUES(?1, ?2)"),
	[Q_MEM_DEL] = ("DELETE FROM members WHERE net = ?1 AND node = ?2"),
	[Q_PAIR_ADD] = ("INSERT OR IGNORE INTO trust_pairs(a, b) VALUES(?1, ?2)"),
	[Q_PAIR_DEL] = ("DELETE FROM trust_pairs WHERE a = ?1 AND b = ?2"),
	[Q_HALF_ADD] = ("INSERT OR REPLACE INTO trust_halves(src, dst, ts) VALUES(?1, ?2, ?3)"),
	[Q_HALF_DEL] = ("DELETE FROM trust_halves WHERE src = ?1 AND dst = ?2"),
	[Q_REQ_ADD] = ("INSERT OR REPLACE INTO hs_requests(src, dst, ts) VALUES(?1, ?2, ?3)"),
	[Q_REQ_DEL] = ("DELETE FROM hs_requests WHERE src = ?1 AND dst = ?2"),
	[Q_INBOX_ADD] = ("INSERT OR REPLACE INTO hs_inbox(dst, src, justification, ts) VALUES(?1, ?2, ?3, ?4)"),
	[Q_INBOX_CLEAR] = ("DELETE FROM hs_inbox WHERE dst = ?1"),
	[Q_INBOX_DEL] = ("DELETE FROM hs_inbox WHERE dst = ?1 AND src = ?2"),
	[Q_RESP_ADD] = ("INSERT OR REPLACE INTO hs_responses(dst, src, accept, ts) VALUES(?1, ?2, ?3, ?4)"),
	[Q_RESP_DEL] = ("DELETE FROM hs_responses WHERE dst = ?1 AND src = ?2"),
	[Q_RESP_CLEAR] = ("DELETE FROM hs_responses WHERE dst = ?1"),
	[Q_INV_ADD] = ("INSERT OR REPLACE INTO invites(dst, net, inviter, ts) VALUES(?1, ?2, ?3, ?4)"),
	[Q_INV_DEL] = ("DELETE FROM invites WHERE dst = ?1 AND net = ?2"),
};

struct reg_store {
	sqlite3 *db;
	sqlite3_stmt *q[Q_COUNT];
	char *path;
	bool in_txn, failed;
};

/* ---- statement helpers ---- */
static sqlite3_stmt *prep(registry *r, int q)
{
	sqlite3_stmt *s = r->db->q[q];

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

static void run(registry *r, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_warn("registry: store write failed file=%s error=\"%s\"", r->db->path,
			 sqlite3_errmsg(r->db->db));
		r->db->failed = true;
	}
	sqlite3_reset(s);
}

static void exec2(registry *r, int q, int64_t a, int64_t b)
{
	sqlite3_stmt *s;

	if (!r->db)
		return;
	s = prep(r, q);
	sqlite3_bind_int64(s, 1, a);
	sqlite3_bind_int64(s, 2, b);
	run(r, s);
}

static void exec3(registry *r, int q, int64_t a, int64_t b, int64_t c)
{
	sqlite3_stmt *s;

	if (!r->db)
		return;
	s = prep(r, q);
	sqlite3_bind_int64(s, 1, a);
	sqlite3_bind_int64(s, 2, b);
	sqlite3_bind_int64(s, 3, c);
	run(r, s);
}

static void bind_text(sqlite3_stmt *s, int i, const char *t)
{
	if (t)
		sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, i);
}

/* ---- transactions ---- */
void st_begin(registry *r)
{
	if (!r->db || r->db->in_txn)
		return;
	r->db->failed = false;
	run(r, prep(r, Q_BEGIN));
	r->db->in_txn = !r->db->failed;
}

void st_rollback(registry *r)
{
	if (!r->db || !r->db->in_txn)
		return;
	run(r, prep(r, Q_ROLLBACK));
	r->db->in_txn = false;
	r->db->failed = false;
}

int st_commit(registry *r)
{
	r->generation++;
	if (!r->db)
		return 0;
	if (!r->db->in_txn)
		return r->db->failed ? (r->db->failed = false, -EIO) : 0;
	if (!r->db->failed)
		run(r, prep(r, Q_COMMIT));
	if (r->db->failed) {
		st_rollback(r);
		return -EIO;
	}
	r->db->in_txn = false;
	return 0;
}

/* ---- row writers ---- */
static char *join_tags(const reg_node *n)
{
	size_t len = 1;
	char *s;

	if (!n->ntags)
		return NULL;
	for (size_t i = 0; i < n->ntags; i++)
		len += strlen(n->tags[i]) + 1;
	s = calloc(1, len);
	for (size_t i = 0; s && i < n->ntags; i++) {
		if (i)
			strcat(s, ",");
		strcat(s, n->tags[i]);
	}
	return s;
}

void st_node(registry *r, const reg_node *n)
{
	sqlite3_stmt *s;
	char *tags;

	if (!r->db)
		return;
	tags = join_tags(n);
	s = prep(r, Q_NODE);
	sqlite3_bind_int64(s, 1, n->id);
	sqlite3_bind_blob(s, 2, n->pk, 32, SQLITE_TRANSIENT);
	bind_text(s, 3, n->owner);
	sqlite3_bind_int(s, 4, n->live);
	bind_text(s, 5, n->real_addr[0] ? n->real_addr : NULL);
	bind_text(s, 6, n->src_ip[0] ? n->src_ip : NULL);
	sqlite3_bind_int(s, 7, n->pub);
	bind_text(s, 8, n->hostname);
	bind_text(s, 9, tags);
	sqlite3_bind_int64(s, 10, n->polo);
	sqlite3_bind_int(s, 11, n->task_exec);
	sqlite3_bind_int(s, 12, n->relay_only);
	sqlite3_bind_int(s, 13, (n->sig_v2 ? NODE_F_SIG_V2 : 0) | (n->owner_proven ? NODE_F_OWNER_PROVEN : 0));
	run(r, s);
	free(tags);
	if (n->owner && reg_node_by_owner(r, n->owner) == n) {
		s = prep(r, Q_OWNER);
		bind_text(s, 1, n->owner);
		sqlite3_bind_int64(s, 2, n->id);
		run(r, s);
	}
}

static void meta(registry *r, const char *k, int64_t v)
{
	sqlite3_stmt *s = prep(r, Q_META);

	bind_text(s, 1, k);
	sqlite3_bind_int64(s, 2, v);
	run(r, s);
}

void st_counters(registry *r)
{
	if (!r->db)
		return;
	meta(r, "next_node", r->next_node);
	meta(r, "next_net", r->next_net);
}

void st_net(registry *r, const reg_net *nt)
{
	sqlite3_stmt *s;

	if (!r->db)
		return;
	s = prep(r, Q_NET);
	sqlite3_bind_int64(s, 1, nt->id);
	bind_text(s, 2, nt->name);
	bind_text(s, 3, nt->join_rule);
	bind_text(s, 4, nt->token);
	sqlite3_bind_int64(s, 5, nt->created);
	sqlite3_bind_int64(s, 6, nt->creator);
	run(r, s);
}

void st_member(registry *r, uint16_t net, uint32_t node, bool add)
{
	exec2(r, add ? Q_MEM_ADD : Q_MEM_DEL, net, node);
}

void st_pair(registry *r, uint32_t a, uint32_t b, bool add)
{
	exec2(r, add ? Q_PAIR_ADD : Q_PAIR_DEL, a < b ? a : b, a < b ? b : a);
}

void st_half(registry *r, uint32_t from, uint32_t to, int64_t ts, bool add)
{
	if (add)
		exec3(r, Q_HALF_ADD, from, to, ts);
	else
		exec2(r, Q_HALF_DEL, from, to);
}

void st_hsrec(registry *r, uint32_t from, uint32_t to, int64_t ts, bool add)
{
	if (add)
		exec3(r, Q_REQ_ADD, from, to, ts);
	else
		exec2(r, Q_REQ_DEL, from, to);
}

void st_inbox_add(registry *r, uint32_t to, const reg_hsreq *q)
{
	sqlite3_stmt *s;

	if (!r->db)
		return;
	s = prep(r, Q_INBOX_ADD);
	sqlite3_bind_int64(s, 1, to);
	sqlite3_bind_int64(s, 2, q->from);
	bind_text(s, 3, q->justification);
	sqlite3_bind_int64(s, 4, q->ts);
	run(r, s);
}

void st_inbox_clear(registry *r, uint32_t to)
{
	exec2(r, Q_INBOX_CLEAR, to, 0); /* ?2 unused */
}

void st_inbox_del(registry *r, uint32_t to, uint32_t from)
{
	exec2(r, Q_INBOX_DEL, to, from);
}

void st_resp_add(registry *r, uint32_t to, const reg_hsresp *p)
{
	sqlite3_stmt *s;

	if (!r->db)
		return;
	/* REPLACE deletes then inserts, so the row moves to the end (newest). */
	s = prep(r, Q_RESP_ADD);
	sqlite3_bind_int64(s, 1, to);
	sqlite3_bind_int64(s, 2, p->from);
	sqlite3_bind_int(s, 3, p->accept);
	sqlite3_bind_int64(s, 4, p->ts);
	run(r, s);
}

void st_resp_del(registry *r, uint32_t to, uint32_t from)
{
	exec2(r, Q_RESP_DEL, to, from);
}

void st_resp_clear(registry *r, uint32_t to)
{
	exec2(r, Q_RESP_CLEAR, to, 0);
}

void st_invite(registry *r, uint32_t target, const reg_invite *iv, bool add)
{
	sqlite3_stmt *s;

	if (!r->db)
		return;
	if (!add) {
		exec2(r, Q_INV_DEL, target, iv->net);
		return;
	}
	s = prep(r, Q_INV_ADD);
	sqlite3_bind_int64(s, 1, target);
	sqlite3_bind_int64(s, 2, iv->net);
	sqlite3_bind_int64(s, 3, iv->inviter);
	sqlite3_bind_int64(s, 4, iv->ts);
	run(r, s);
}

/* ---- open ---- */
static int create_0600(const char *path, char *err, size_t errlen)
{
	char *dup = strdup(path), *dir;
	int fd, rc = 0;

	if (!dup)
		return -ENOMEM;
	dir = dirname(dup);
	if (strcmp(dir, ".") && (rc = pilot_mkdirs(dir, 0700)) < 0)
		snprintf(err, errlen, "cannot create directory %s: %s", dir, strerror(-rc));
	free(dup);
	if (rc < 0)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open store %s: %s", path, strerror(errno));
		return rc;
	}
	if (fchmod(fd, 0600) < 0)
		log_warn("registry: cannot chmod store file=%s", path);
	close(fd);
	return 0;
}

static void chmod_sidecars(const char *path)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s-wal", path);
	chmod(buf, 0600);
	snprintf(buf, sizeof(buf), "%s-shm", path);
	chmod(buf, 0600);
}

static int check_version(registry *r, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int v = -1;

	if (sqlite3_prepare_v2(r->db->db, "SELECT version FROM schema_version", -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (v < 0) /* new store: the schema above is the current one */
		return sqlite3_exec(r->db->db, "INSERT INTO schema_version(version) VALUES(3)", NULL, NULL,
				    NULL) == SQLITE_OK ? 0 : -EIO;
	if (v > SCHEMA_VERSION) {
		snprintf(err, errlen, "store %s has schema version %d, newer than this program (%d)",
			 r->db->path, v, SCHEMA_VERSION);
		return -EPROTO;
	}
	/* CREATE TABLE IF NOT EXISTS kept the old nodes table: add the columns. */
	if (v == 1) {
		if (sqlite3_exec(r->db->db, "BEGIN IMMEDIATE;"
				 " ALTER TABLE nodes ADD COLUMN relay_only INTEGER NOT NULL DEFAULT 0;"
				 " UPDATE schema_version SET version = 2; COMMIT;", NULL, NULL, NULL) != SQLITE_OK) {
			sqlite3_exec(r->db->db, "ROLLBACK", NULL, NULL, NULL);
			return -EIO;
		}
		log_info("store %s: schema version 1 -> 2 (nodes.relay_only)", r->db->path);
		v = 2;
	}
	if (v == 2) {
		/* Owners stored before are not known to be proven by their key: 0. */
		if (sqlite3_exec(r->db->db, "BEGIN IMMEDIATE;"
				 " ALTER TABLE nodes ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;"
				 " UPDATE schema_version SET version = 3; COMMIT;", NULL, NULL, NULL) != SQLITE_OK) {
			sqlite3_exec(r->db->db, "ROLLBACK", NULL, NULL, NULL);
			return -EIO;
		}
		log_info("store %s: schema version 2 -> 3 (nodes.flags)", r->db->path);
	}
	return 0;
}

int reg_store_check(const char *path, char *err, size_t errlen)
{
	char dir[4096];
	struct stat st;
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	int rc = 0, v = -1;

	if (!path || !*path)
		return 0;
	if (stat(path, &st) < 0) {
		if (errno != ENOENT) {
			snprintf(err, errlen, "store %s: %s", path, strerror(errno));
			return -errno;
		}
		/* Created at start: its directory must exist and be writable. */
		char tmp[4096];

		snprintf(tmp, sizeof(tmp), "%s", path);
		snprintf(dir, sizeof(dir), "%s", dirname(tmp));
		if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "store directory %s does not exist", dir);
			return -ENOENT;
		}
		if (access(dir, W_OK | X_OK) < 0) {
			snprintf(err, errlen, "store directory %s is not writable: %s", dir, strerror(errno));
			return -EACCES;
		}
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "store %s is not a regular file", path);
		return -EINVAL;
	}
	if (access(path, R_OK | W_OK) < 0) {
		snprintf(err, errlen, "store %s is not readable and writable: %s", path, strerror(errno));
		return -EACCES;
	}
	/* Read-only: a check changes nothing (no WAL switch, no schema). */
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK
	    || sqlite3_exec(db, "PRAGMA busy_timeout=2000; SELECT count(*) FROM sqlite_master", NULL, NULL,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open store %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
		rc = -EIO;
	} else if (sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &q, NULL) == SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			v = sqlite3_column_int(q, 0);
		if (v > SCHEMA_VERSION) {
			snprintf(err, errlen, "store %s has schema version %d, newer than this program (%d)",
				 path, v, SCHEMA_VERSION);
			rc = -EPROTO;
		}
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	return rc;
}

int st_open(registry *r, const char *path, char *err, size_t errlen)
{
	reg_store *st;
	int rc;

	if ((rc = create_0600(path, err, errlen)) < 0)
		return rc;
	st = calloc(1, sizeof(*st));
	if (!st || !(st->path = strdup(path))) {
		free(st);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	r->db = st;
	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
	    sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
				 " PRAGMA busy_timeout=5000;", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(st->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open store %s: %s", path,
			 st->db ? sqlite3_errmsg(st->db) : "out of memory");
		return -EIO;
	}
	if ((rc = check_version(r, err, errlen)) < 0) {
		if (rc == -EIO)
			snprintf(err, errlen, "store %s: %s", path, sqlite3_errmsg(st->db));
		return rc;
	}
	for (int i = 0; i < Q_COUNT; i++) {
		if (sqlite3_prepare_v2(st->db, sql[i], -1, &st->q[i], NULL) != SQLITE_OK) {
			snprintf(err, errlen, "store %s: %s", path, sqlite3_errmsg(st->db));
			return -EIO;
		}
	}
	chmod_sidecars(path);
	return 0;
}

void st_close(registry *r)
{
	reg_store *st = r->db;

	if (!st)
		return;
	if (st->in_txn)
		st_rollback(r);
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(st->q[i]);
	sqlite3_close(st->db);
	free(st->path);
	free(st);
	r->db = NULL;
}

/* ---- load ---- */
typedef int (*row_fn)(registry *r, sqlite3_stmt *s, uint64_t now_ms);

static int each_row(registry *r, const char *q, row_fn fn, uint64_t now_ms)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(r->db->db, q, -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		if (fn(r, s, now_ms) < 0) {
			sqlite3_finalize(s);
			return -ENOMEM;
		}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static const char *col_text(sqlite3_stmt *s, int i)
{
	return (const char *)sqlite3_column_text(s, i);
}

static int row_meta(registry *r, sqlite3_stmt *s, uint64_t now_ms)
{
	const char *k = col_text(s, 0);
	int64_t v = sqlite3_column_int64(s, 1);

	if (k && !strcmp(k, "next_node"))
		r->next_node = (uint32_t)v;
	else if (k && !strcmp(k, "next_net"))
		r->next_net = (uint32_t)v;
	return 0;
}

static int row_net(registry *r, sqlite3_stmt *s, uint64_t now_ms)
{
	int64_t id = sqlite3_column_int64(s, 0);
	const char *name = col_text(s, 1), *tok = col_text(s, 3);
	reg_net *nt;

	if (id <= 0 || id > 65535 || !name)
		return 0;
	if (!(nt = reg_net_new(r, (uint16_t)id, name, col_text(s, 2))))
		return -1;
	nt->token = tok ? strdup(tok) : NULL;
	nt->created = sqlite3_column_int64(s, 4);
	nt->creator = (uint32_t)sqlite3_column_int64(s, 5);
	return 0;
}

static int load_tags(reg_node *n, const char *t)
{
	char *dup, *tok, *save = NULL, **v;
	size_t k = 0;

	if (!t || !*t)
		return 0;
	if (!(dup = strdup(t)) || !(v = calloc(REG_MAX_TAGS + 1, sizeof(*v)))) {
		free(dup);
		return -1;
	}
	for (tok = strtok_r(dup, ",", &save); tok && k < REG_MAX_TAGS; tok = strtok_r(NULL, ",", &save))
		v[k++] = strdup(tok);
	free(dup);
	reg_tags_set(n, v, k);
	return 0;
}

static int row_node(registry *r, sqlite3_stmt *s, uint64_t now_ms)
{
	uint32_t id = (uint32_t)sqlite3_column_int64(s, 0);
	const void *pk = sqlite3_column_blob(s, 1);
	const char *t;
	reg_node *n;

	if (!id || !pk || sqlite3_column_bytes(s, 1) != 32)
		return 0;
	if (!(n = reg_node_new(r, id)) || reg_node_set_key(r, n, pk) < 0 ||
	    reg_node_set_owner(r, n, col_text(s, 2)) < 0)
		return -1;
	n->live = sqlite3_column_int(s, 3) != 0;
	if (n->live)
		r->live_count++;
	if ((t = col_text(s, 4)))
		snprintf(n->real_addr, sizeof(n->real_addr), "%s", t);
	if ((t = col_text(s, 5)))
		snprintf(n->src_ip, sizeof(n->src_ip), "%s", t);
	n->pub = sqlite3_column_int(s, 6) != 0;
	if ((t = col_text(s, 7)) && n->live && reg_node_set_hostname(r, n, t) < 0)
		return -1;
	if (load_tags(n, col_text(s, 8)) < 0)
		return -1;
	n->polo = sqlite3_column_int64(s, 9);
	n->task_exec = sqlite3_column_int(s, 10) != 0;
	n->relay_only = sqlite3_column_int(s, 11) != 0;
	n->sig_v2 = (sqlite3_column_int(s, 12) & NODE_F_SIG_V2) != 0;
	n->owner_proven = n->owner && (sqlite3_column_int(s, 12) & NODE_F_OWNER_PROVEN);
	n->last_seen_ms = now_ms;
	if (id >= r->next_node)
		r->next_node = id + 1;
	return 0;
}

static int row_owner(registry *r, sqlite3_stmt *s, uint64_t now_ms)
{
	const char *o = col_text(s, 0);
	reg_node *n = reg_node_get(r, (uint32_t)sqlite3_column_int64(s, 1));

	if (o && n && n->owner && !strcmp(n->owner, o))
		return rmap_put(&r->owneridx, reg_hash_str(r, o), n->id);
	return 0;
}

static int row_member(registry *r, sqlite3_stmt *s, uint64_t now_ms)
{
	reg_net *nt = reg_net_get(r, (uint16_t)sqlite3_column_int64(s, 0));
	reg_node *n = reg_node_get(r, (uint32_t)sqlite3_column_int64(s, 1));

	if (!nt || !n || nt->id == 0 || reg_node_in_net(n, nt->id))
		return 0;
	return reg_node_add_net(n, nt->id) < 0 || reg_net_add_member(nt, n->id) < 0 ? -1 : 0;
}

static int row_pair(registry *r, sqlite3_stmt *s, uint64_t now_ms)
{
	return rmap_put(&r->pairs, upair_key((uint32_t)sqlite3_column_int64(s, 0),
					     (uint32_t)sqlite3_column_int64(s, 1)), 1);
}

static int row_half(registry *r, sqlite3_stmt *s, uint64_t now_ms)
{
	return rmap_put(&r->halves, pair_key((uint32_t)sqlite3_column_int64(s, 0),
					     (uint32_t)sqlite3_column_int64(s, 1)),
			(uint64_t)sqlite3_column_int64(s, 2));
}

static int row_req(registry *r, sqlite3_stmt *s, uint64_t now_ms)
{
	uint32_t to = (uint32_t)sqlite3_column_int64(s, 1);
	reg_node *n = reg_node_get(r, to);

	if (n)
		n->hsrec_in++;
	return rmap_put(&r->hsrec, pair_key((uint32_t)sqlite3_column_int64(s, 0), to),
			(uint64_t)sqlite3_column_int64(s, 2));
}

static int row_inbox(registry *r, sqlite3_stmt *s, uint64_t now_ms)
{
	reg_node *n = reg_node_get(r, (uint32_t)sqlite3_column_int64(s, 0));
	const char *j = col_text(s, 2);
	reg_hsreq *g;

	if (!n)
		return 0;
	if (!(g = realloc(n->inbox, (n->ninbox + 1) * sizeof(*g))))
		return -1;
	n->inbox = g;
	g[n->ninbox].from = (uint32_t)sqlite3_column_int64(s, 1);
	g[n->ninbox].ts = sqlite3_column_int64(s, 3);
	if (!(g[n->ninbox].justification = strdup(j ? j : "")))
		return -1;
	n->ninbox++;
	return 0;
}

static int row_resp(registry *r, sqlite3_stmt *s, uint64_t now_ms)
{
	reg_node *n = reg_node_get(r, (uint32_t)sqlite3_column_int64(s, 0));
	reg_hsresp *g;

	if (!n)
		return 0;
	if (!(g = realloc(n->resp, (n->nresp + 1) * sizeof(*g))))
		return -1;
	n->resp = g;
	g[n->nresp].from = (uint32_t)sqlite3_column_int64(s, 1);
	g[n->nresp].accept = sqlite3_column_int(s, 2) != 0;
	g[n->nresp].ts = sqlite3_column_int64(s, 3);
	n->nresp++;
	return 0;
}

static int row_invite(registry *r, sqlite3_stmt *s, uint64_t now_ms)
{
	reg_node *n = reg_node_get(r, (uint32_t)sqlite3_column_int64(s, 0));
	reg_invite *g;

	if (!n)
		return 0;
	if (!(g = realloc(n->inv, (n->ninv + 1) * sizeof(*g))))
		return -1;
	n->inv = g;
	g[n->ninv].net = (uint16_t)sqlite3_column_int64(s, 1);
	g[n->ninv].inviter = (uint32_t)sqlite3_column_int64(s, 2);
	g[n->ninv].ts = sqlite3_column_int64(s, 3);
	n->ninv++;
	return 0;
}

static void recount_creators(registry *r)
{
	for (size_t i = 0; i < r->nets.cap; i++) {
		reg_net *nt;
		reg_node *n;

		if (!r->nets.e[i].used)
			continue;
		nt = (reg_net *)(uintptr_t)r->nets.e[i].val;
		if (nt->creator && (n = reg_node_get(r, nt->creator)))
			n->nets_created++;
		if (nt->id >= r->next_net && r->next_net <= 65535)
			r->next_net = nt->id + 1u;
	}
}

int st_load(registry *r, char *err, size_t errlen)
{
	static const struct {
		const char *q;
		row_fn fn;
	} steps[] = {
		{ "SELECT key, value FROM meta", row_meta },
		{ "SELECT id, name, join_rule, token, created, creator FROM networks", row_net },
		{ "SELECT id, public_key, owner, live, real_addr, src_ip, public, hostname, tags,"
		  " polo_score, task_exec, relay_only, flags FROM nodes ORDER BY id", row_node },
		{ "SELECT owner, node FROM owners", row_owner },
		{ "SELECT net, node FROM members", row_member },
		{ "SELECT a, b FROM trust_pairs", row_pair },
		{ "SELECT src, dst, ts FROM trust_halves", row_half },
		{ "SELECT src, dst, ts FROM hs_requests", row_req },
		{ "SELECT dst, src, justification, ts FROM hs_inbox ORDER BY seq", row_inbox },
		{ "SELECT dst, src, accept, ts FROM hs_responses ORDER BY seq", row_resp },
		{ "SELECT dst, net, inviter, ts FROM invites", row_invite },
	};
	struct timespec ts;
	uint64_t now_ms;

	clock_gettime(CLOCK_REALTIME, &ts);
	now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		int rc = each_row(r, steps[i].q, steps[i].fn, now_ms);

		if (rc < 0) {
			snprintf(err, errlen, "cannot load store %s: %s", r->db->path,
				 rc == -ENOMEM ? "out of memory" : sqlite3_errmsg(r->db->db));
			return rc;
		}
	}
	if (r->next_node == 0)
		r->next_node = 1;
	if (r->next_net == 0)
		r->next_net = 1;
	recount_creators(r);
	log_info("registry: loaded store file=%s nodes=%zu live=%zu networks=%zu", r->db->path,
		 r->nodes.len, r->live_count, r->nets.len);
	return 0;
}

/* ---- full rewrite (after a replication snapshot replaced everything) ---- */
static void save_node_all(registry *r, const reg_node *n)
{
	st_node(r, n);
	for (size_t i = 0; i < n->nnets; i++)
		st_member(r, n->nets[i], n->id, true);
	for (size_t i = 0; i < n->ninbox; i++)
		st_inbox_add(r, n->id, &n->inbox[i]);
	for (size_t i = 0; i < n->nresp; i++)
		st_resp_add(r, n->id, &n->resp[i]);
	for (size_t i = 0; i < n->ninv; i++)
		st_invite(r, n->id, &n->inv[i], true);
}

int st_save_all(registry *r)
{
	static const char wipe[] =
		"DELETE FROM meta; DELETE FROM nodes; DELETE FROM owners; DELETE FROM networks;"
		" DELETE FROM members; DELETE FROM trust_pairs; DELETE FROM trust_halves;"
		" DELETE FROM hs_requests; DELETE FROM hs_inbox; DELETE FROM hs_responses;"
		" DELETE FROM invites;";

	if (!r->db)
		return 0;
	st_begin(r);
	if (sqlite3_exec(r->db->db, wipe, NULL, NULL, NULL) != SQLITE_OK)
		r->db->failed = true;
	st_counters(r);
	for (size_t i = 0; i < r->nodes.cap; i++)
		if (r->nodes.e[i].used)
			save_node_all(r, (reg_node *)(uintptr_t)r->nodes.e[i].val);
	for (size_t i = 0; i < r->nets.cap; i++)
		if (r->nets.e[i].used && r->nets.e[i].key)
			st_net(r, (reg_net *)(uintptr_t)r->nets.e[i].val);
	for (size_t i = 0; i < r->pairs.cap; i++)
		if (r->pairs.e[i].used)
			st_pair(r, (uint32_t)(r->pairs.e[i].key >> 32), (uint32_t)r->pairs.e[i].key, true);
	for (size_t i = 0; i < r->halves.cap; i++)
		if (r->halves.e[i].used)
			st_half(r, (uint32_t)(r->halves.e[i].key >> 32), (uint32_t)r->halves.e[i].key,
				(int64_t)r->halves.e[i].val, true);
	for (size_t i = 0; i < r->hsrec.cap; i++)
		if (r->hsrec.e[i].used)
			st_hsrec(r, (uint32_t)(r->hsrec.e[i].key >> 32), (uint32_t)r->hsrec.e[i].key,
				 (int64_t)r->hsrec.e[i].val, true);
	return st_commit(r);
}
