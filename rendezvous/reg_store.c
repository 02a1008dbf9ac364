/* Crash-safe persistence in SQLite: WAL journal, synchronous=NORMAL (a committed
 * transaction survives kill -9 of the process; the WAL is fsynced at
 * checkpoints) or, with -store-sync full, FULL (every commit batch is fsynced:
 * survives a power cut too), database, -wal and -shm files mode 0600.
 *
 * Asynchronous, group-committed: every mutating handler still writes only the
 * rows it changed as one transaction (st_begin .. st_commit), but st_commit
 * only encodes them and queues them under a sequence number; a writer thread,
 * the only user of the SQLite connection after load, commits whatever is queued
 * as one SQLite transaction (one fsync for the whole batch), then publishes the
 * highest committed sequence number and signals an eventfd. The server holds
 * each write's reply (and that connection's later replies) until its number is
 * durable, so "acknowledged = on disk" holds while the event loop never waits
 * for the disk. The queue is bounded (-store-queue); registry.c refuses writes
 * with `busy` while it is full. A transaction that fails inside a batch is
 * retried alone so it cannot fail its neighbours; its reply becomes an
 * `internal` error. Another back end (PostgreSQL, issue 18) plugs in at the
 * writer: the queue, sequence numbers and completion signal stay as they are.
 *
 * Heartbeats (last_seen) stay in memory; live nodes restart with last_seen =
 * load time, so they are reaped only if they stay silent for the stale period
 * after a restart. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
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

#define Q_WIPE 255 /* not a prepared statement: st_save_all's wipe (sqlite3_exec) */

static const char wipe_sql[] =
	"DELETE FROM meta; DELETE FROM nodes; DELETE FROM owners; DELETE FROM networks;"
	" DELETE FROM members; DELETE FROM trust_pairs; DELETE FROM trust_halves;"
	" DELETE FROM hs_requests; DELETE FROM hs_inbox; DELETE FROM hs_responses;"
	" DELETE FROM invites;";

/* One request's changes, encoded on the loop thread and applied by the writer:
 * a sequence of [statement:u8][nparams:u8] then per parameter [kind:u8] and
 * an int64 (kind 1) or a u32 length and bytes (2 text, 3 blob); kind 0 is NULL.
 * The encoding is ours (never from the network) and back-end neutral: a
 * PostgreSQL back end would run the same operations with its own SQL. */
typedef struct st_txn {
	struct st_txn *next;
	uint64_t seq;
	uint64_t submit_ns;
	uint8_t *buf;
	size_t len, cap;
	bool failed;
} st_txn;

enum { P_NULL = 0, P_INT, P_TEXT, P_BLOB };

#define ST_BATCH_MAX 8192   /* transactions per commit */
#define ST_FAILED_MAX 4096  /* failed sequence numbers remembered until collected */
/* Commit-latency histogram bounds, ms (Prometheus le=). */
const double reg_commit_le_ms[ST_LAT_BUCKETS] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000 };

struct reg_store {
	sqlite3 *db;                 /* the writer thread's once the store is loaded */
	sqlite3_stmt *q[Q_COUNT];
	char *path;
	size_t queue_max;
	int efd;                     /* eventfd: the writer moved `durable` */

	/* loop thread only */
	st_txn *cur;                 /* being built between st_begin and st_commit */
	uint64_t next_seq;           /* last sequence number handed out */
	bool oom;                    /* building cur ran out of memory */

	/* shared, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv, done_cv;
	st_txn *qhead, *qtail;
	size_t qlen;                 /* submitted, not yet durable (incl. the batch in flight) */
	uint64_t durable;            /* every seq <= durable is committed or failed */
	uint64_t *failed;            /* failed seqs > the last st_failed_forget */
	size_t nfailed;
	bool stop, thread_up;
	pthread_t th;
	reg_store_stats st;
};

/* ---- encoding (loop thread) ---- */
static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void put(registry *r, const void *p, size_t n)
{
	reg_store *st = r->db;
	st_txn *t;

	if (st->oom)
		return;
	if (!st->cur && !(st->cur = calloc(1, sizeof(*st->cur)))) {
		st->oom = true;
		return;
	}
	t = st->cur;
	if (t->len + n > t->cap) {
		size_t cap = t->cap ? t->cap : 256;
		uint8_t *b;

		while (cap < t->len + n)
			cap *= 2;
		if (!(b = realloc(t->buf, cap))) {
			st->oom = true;
			return;
		}
		t->buf = b;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
}

static void op(registry *r, int q, int nparams)
{
	uint8_t h[2] = { (uint8_t)q, (uint8_t)nparams };

	put(r, h, 2);
}

static void p_int(registry *r, int64_t v)
{
	uint8_t k = P_INT;

	put(r, &k, 1);
	put(r, &v, sizeof(v));
}

static void p_bytes(registry *r, int kind, const void *p, size_t n)
{
	uint8_t k = (uint8_t)kind;
	uint32_t l = (uint32_t)n;

	if (!p) {
		k = P_NULL;
		put(r, &k, 1);
		return;
	}
	put(r, &k, 1);
	put(r, &l, sizeof(l));
	put(r, p, n);
}

static void p_text(registry *r, const char *t)
{
	p_bytes(r, P_TEXT, t, t ? strlen(t) : 0);
}

static void exec2(registry *r, int q, int64_t a, int64_t b)
{
	if (!r->db)
		return;
	op(r, q, 2);
	p_int(r, a);
	p_int(r, b);
}

static void exec3(registry *r, int q, int64_t a, int64_t b, int64_t c)
{
	if (!r->db)
		return;
	op(r, q, 3);
	p_int(r, a);
	p_int(r, b);
	p_int(r, c);
}

static void txn_free(st_txn *t)
{
	if (t) {
		free(t->buf);
		free(t);
	}
}

/* ---- transactions (loop thread) ----
 * st_begin .. st_commit collect one request's rows; st_commit hands them to the
 * writer thread under the next sequence number and returns at once. The reply
 * that depends on them waits until st_durable() reaches that number (server.c).
 * st_rollback drops what was collected. */
void st_begin(registry *r)
{
	if (!r->db)
		return;
	txn_free(r->db->cur);
	r->db->cur = NULL;
	r->db->oom = false;
}

void st_rollback(registry *r)
{
	st_begin(r);
}

int st_commit(registry *r)
{
	reg_store *st = r->db;
	st_txn *t;

	r->generation++;
	if (!st)
		return 0;
	t = st->cur;
	st->cur = NULL;
	if (st->oom) {
		st->oom = false;
		txn_free(t);
		log_warn("registry: store write failed file=%s error=\"out of memory\"", st->path);
		return -EIO;
	}
	if (!t)
		return 0; /* nothing to write */
	t->seq = ++st->next_seq;
	t->submit_ns = mono_ns();
	pthread_mutex_lock(&st->mu);
	if (st->qtail)
		st->qtail->next = t;
	else
		st->qhead = t;
	st->qtail = t;
	st->qlen++;
	if (st->qlen > st->st.queue_max_seen)
		st->st.queue_max_seen = st->qlen;
	pthread_cond_signal(&st->cv);
	pthread_mutex_unlock(&st->mu);
	return 0;
}

uint64_t st_submitted(registry *r)
{
	return r->db ? r->db->next_seq : 0;
}

uint64_t st_durable(registry *r)
{
	uint64_t d;

	if (!r->db)
		return 0;
	pthread_mutex_lock(&r->db->mu);
	d = r->db->durable;
	pthread_mutex_unlock(&r->db->mu);
	return d;
}

size_t st_pending(registry *r)
{
	size_t n;

	if (!r->db)
		return 0;
	pthread_mutex_lock(&r->db->mu);
	n = r->db->qlen;
	pthread_mutex_unlock(&r->db->mu);
	return n;
}

bool st_full(registry *r)
{
	return r->db && st_pending(r) >= r->db->queue_max;
}

bool st_failed(registry *r, uint64_t seq)
{
	bool f = false;

	if (!r->db)
		return false;
	pthread_mutex_lock(&r->db->mu);
	for (size_t i = 0; i < r->db->nfailed && !f; i++)
		f = r->db->failed[i] == seq;
	pthread_mutex_unlock(&r->db->mu);
	return f;
}

void st_failed_forget(registry *r, uint64_t upto)
{
	reg_store *st = r->db;
	size_t k = 0;

	if (!st)
		return;
	pthread_mutex_lock(&st->mu);
	for (size_t i = 0; i < st->nfailed; i++)
		if (st->failed[i] > upto)
			st->failed[k++] = st->failed[i];
	st->nfailed = k;
	pthread_mutex_unlock(&st->mu);
}

int st_fd(registry *r)
{
	return r->db ? r->db->efd : -1;
}

void st_fd_clear(registry *r)
{
	uint64_t v;

	if (r->db && read(r->db->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing new */
	}
}

int st_wait(registry *r, uint64_t seq)
{
	reg_store *st = r->db;
	bool f = false;

	if (!st)
		return 0;
	pthread_mutex_lock(&st->mu);
	while (st->durable < seq && st->thread_up)
		pthread_cond_wait(&st->done_cv, &st->mu);
	for (size_t i = 0; i < st->nfailed && !f; i++)
		f = st->failed[i] == seq;
	pthread_mutex_unlock(&st->mu);
	return f ? -EIO : 0;
}

void st_get_stats(registry *r, reg_store_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!r->db)
		return;
	pthread_mutex_lock(&r->db->mu);
	*out = r->db->st;
	out->queue_depth = r->db->qlen;
	out->queue_max = r->db->queue_max;
	pthread_mutex_unlock(&r->db->mu);
}

/* ---- row writers (loop thread) ---- */
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
	char *tags;

	if (!r->db)
		return;
	tags = join_tags(n);
	if (n->ntags && !tags)
		r->db->oom = true;
	op(r, Q_NODE, 13);
	p_int(r, n->id);
	p_bytes(r, P_BLOB, n->pk, 32);
	p_text(r, n->owner);
	p_int(r, n->live);
	p_text(r, n->real_addr[0] ? n->real_addr : NULL);
	p_text(r, n->src_ip[0] ? n->src_ip : NULL);
	p_int(r, n->pub);
	p_text(r, n->hostname);
	p_text(r, tags);
	p_int(r, n->polo);
	p_int(r, n->task_exec);
	p_int(r, n->relay_only);
	p_int(r, (n->sig_v2 ? NODE_F_SIG_V2 : 0) | (n->owner_proven ? NODE_F_OWNER_PROVEN : 0));
	free(tags);
	if (n->owner && reg_node_by_owner(r, n->owner) == n) {
		op(r, Q_OWNER, 2);
		p_text(r, n->owner);
		p_int(r, n->id);
	}
}

static void meta(registry *r, const char *k, int64_t v)
{
	op(r, Q_META, 2);
	p_text(r, k);
	p_int(r, v);
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
	if (!r->db)
		return;
	op(r, Q_NET, 6);
	p_int(r, nt->id);
	p_text(r, nt->name);
	p_text(r, nt->join_rule);
	p_text(r, nt->token);
	p_int(r, nt->created);
	p_int(r, nt->creator);
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
	if (!r->db)
		return;
	op(r, Q_INBOX_ADD, 4);
	p_int(r, to);
	p_int(r, q->from);
	p_text(r, q->justification);
	p_int(r, q->ts);
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
	/* REPLACE deletes then inserts, so the row moves to the end (newest). */
	if (!r->db)
		return;
	op(r, Q_RESP_ADD, 4);
	p_int(r, to);
	p_int(r, p->from);
	p_int(r, p->accept);
	p_int(r, p->ts);
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
	if (!r->db)
		return;
	if (!add) {
		exec2(r, Q_INV_DEL, target, iv->net);
		return;
	}
	op(r, Q_INV_ADD, 4);
	p_int(r, target);
	p_int(r, iv->net);
	p_int(r, iv->inviter);
	p_int(r, iv->ts);
}

/* ---- the writer thread: the only user of the SQLite connection after load ---- */
static int step_one(reg_store *st, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_warn("registry: store write failed file=%s error=\"%s\"", st->path, sqlite3_errmsg(st->db));
		return -EIO;
	}
	return 0;
}

static int apply_txn(reg_store *st, const st_txn *t)
{
	size_t off = 0;

	while (off + 2 <= t->len) {
		uint8_t q = t->buf[off], n = t->buf[off + 1];
		sqlite3_stmt *s;

		off += 2;
		if (q == Q_WIPE) {
			if (sqlite3_exec(st->db, wipe_sql, NULL, NULL, NULL) != SQLITE_OK)
				return -EIO;
			continue;
		}
		if (q >= Q_COUNT)
			return -EIO;
		s = st->q[q];
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		for (int i = 1; i <= n; i++) {
			uint8_t kind = t->buf[off++];
			int64_t v;
			uint32_t l;

			if (kind == P_NULL) {
				sqlite3_bind_null(s, i);
			} else if (kind == P_INT) {
				memcpy(&v, t->buf + off, sizeof(v));
				off += sizeof(v);
				sqlite3_bind_int64(s, i, v);
			} else {
				memcpy(&l, t->buf + off, sizeof(l));
				off += sizeof(l);
				if (kind == P_TEXT)
					sqlite3_bind_text(s, i, (const char *)t->buf + off, (int)l, SQLITE_STATIC);
				else
					sqlite3_bind_blob(s, i, t->buf + off, (int)l, SQLITE_STATIC);
				off += l;
			}
		}
		if (step_one(st, s) < 0)
			return -EIO;
		sqlite3_clear_bindings(s);
	}
	return 0;
}

/* Apply n transactions starting at t in one SQLite transaction: 0 or -EIO
 * (then rolled back). */
static int commit_txns(reg_store *st, const st_txn *t, size_t n)
{
	if (step_one(st, st->q[Q_BEGIN]) < 0)
		return -EIO;
	for (size_t i = 0; i < n; i++, t = t->next)
		if (apply_txn(st, t) < 0)
			goto fail;
	if (step_one(st, st->q[Q_COMMIT]) == 0)
		return 0;
fail:
	step_one(st, st->q[Q_ROLLBACK]);
	return -EIO;
}

static void *writer_main(void *arg)
{
	reg_store *st = arg;

	pthread_mutex_lock(&st->mu);
	for (;;) {
		st_txn *batch, *last, *t;
		uint64_t t0, t1, one = 1;
		size_t n = 1, nfail = 0;
		double ms;

		while (!st->qhead && !st->stop)
			pthread_cond_wait(&st->cv, &st->mu);
		if (!st->qhead)
			break;
		batch = last = st->qhead;
		while (last->next && n < ST_BATCH_MAX) {
			last = last->next;
			n++;
		}
		st->qhead = last->next;
		if (!st->qhead)
			st->qtail = NULL;
		last->next = NULL;
		pthread_mutex_unlock(&st->mu);

		t0 = mono_ns();
		if (commit_txns(st, batch, n) < 0) {
			/* One bad transaction must not fail its neighbours: retry alone. */
			for (t = batch; t; t = t->next)
				if ((t->failed = commit_txns(st, t, 1) < 0))
					nfail++;
		}
		t1 = mono_ns();
		ms = (double)(t1 - t0) / 1e6;

		pthread_mutex_lock(&st->mu);
		for (t = batch; t && nfail; t = t->next) {
			if (!t->failed)
				continue;
			if (st->nfailed == ST_FAILED_MAX) /* nobody collects: forget the oldest */
				memmove(st->failed, st->failed + 1, (ST_FAILED_MAX - 1) * sizeof(*st->failed));
			else
				st->nfailed++;
			st->failed[st->nfailed - 1] = t->seq;
			st->st.failed++;
		}
		st->durable = last->seq;
		st->qlen -= n;
		st->st.batches++;
		st->st.txns += n;
		st->st.last_batch = n;
		if (n > st->st.max_batch)
			st->st.max_batch = n;
		st->st.commit_seconds += ms / 1000.0;
		st->st.last_commit_ms = ms;
		if (ms > st->st.max_commit_ms)
			st->st.max_commit_ms = ms;
		for (int b = 0; b < ST_LAT_BUCKETS; b++)
			if (ms <= reg_commit_le_ms[b])
				st->st.commit_le[b]++;
		st->st.wait_seconds += (double)(t1 - batch->submit_ns) / 1e9;
		pthread_cond_broadcast(&st->done_cv);
		pthread_mutex_unlock(&st->mu);
		if (write(st->efd, &one, sizeof(one)) < 0) {
			/* the counter cannot overflow in practice; the loop reads it */
		}
		while (batch) {
			t = batch->next;
			txn_free(batch);
			batch = t;
		}
		pthread_mutex_lock(&st->mu);
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
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

/* ---- test hook: a slow disk (-store-fsync-delay) ----
 * A VFS that forwards everything to the default one but sleeps before every
 * xSync, so tests can put the store on a "disk" whose every fsync takes as long
 * as they say, honestly, through SQLite's own sync path. */
static sqlite3_vfs slow_vfs;
static sqlite3_io_methods slow_io;
static int64_t slow_ms;
static pthread_once_t slow_once = PTHREAD_ONCE_INIT;

typedef struct slow_file {
	sqlite3_file base;
	sqlite3_file *real; /* follows this struct */
} slow_file;

#define REAL(f) (((slow_file *)(f))->real)
static int sf_close(sqlite3_file *f) { return REAL(f)->pMethods->xClose(REAL(f)); }
static int sf_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o) { return REAL(f)->pMethods->xRead(REAL(f), b, n, o); }
static int sf_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o) { return REAL(f)->pMethods->xWrite(REAL(f), b, n, o); }
static int sf_truncate(sqlite3_file *f, sqlite3_int64 s) { return REAL(f)->pMethods->xTruncate(REAL(f), s); }
static int sf_size(sqlite3_file *f, sqlite3_int64 *s) { return REAL(f)->pMethods->xFileSize(REAL(f), s); }
static int sf_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int sf_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }
static int sf_reserved(sqlite3_file *f, int *o) { return REAL(f)->pMethods->xCheckReservedLock(REAL(f), o); }
static int sf_fctl(sqlite3_file *f, int op, void *a) { return REAL(f)->pMethods->xFileControl(REAL(f), op, a); }
static int sf_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int sf_devchar(sqlite3_file *f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
static int sf_shmmap(sqlite3_file *f, int i, int sz, int ext, void volatile **p) { return REAL(f)->pMethods->xShmMap(REAL(f), i, sz, ext, p); }
static int sf_shmlock(sqlite3_file *f, int o, int n, int fl) { return REAL(f)->pMethods->xShmLock(REAL(f), o, n, fl); }
static void sf_shmbarrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int sf_shmunmap(sqlite3_file *f, int d) { return REAL(f)->pMethods->xShmUnmap(REAL(f), d); }
static int sf_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **p) { return REAL(f)->pMethods->xFetch(REAL(f), o, n, p); }
static int sf_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p) { return REAL(f)->pMethods->xUnfetch(REAL(f), o, p); }

static int sf_sync(sqlite3_file *f, int flags)
{
	struct timespec d = { (time_t)(slow_ms / 1000), (long)(slow_ms % 1000) * 1000000L };

	while (nanosleep(&d, &d) < 0 && errno == EINTR)
		;
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}
#undef REAL

static int sf_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out)
{
	sqlite3_vfs *def = v->pAppData;
	slow_file *sf = (slow_file *)f;
	int rc;

	sf->real = (sqlite3_file *)(sf + 1);
	rc = def->xOpen(def, name, sf->real, flags, out);
	sf->base.pMethods = rc == SQLITE_OK && sf->real->pMethods ? &slow_io : NULL;
	return rc;
}

static void slow_init(void)
{
	sqlite3_vfs *def = sqlite3_vfs_find(NULL);

	slow_io = (sqlite3_io_methods){ 3, sf_close, sf_read, sf_write, sf_truncate, sf_sync, sf_size,
		sf_lock, sf_unlock, sf_reserved, sf_fctl, sf_sector, sf_devchar, sf_shmmap, sf_shmlock,
		sf_shmbarrier, sf_shmunmap, sf_fetch, sf_unfetch };
	slow_vfs = *def;
	slow_vfs.pNext = NULL;
	slow_vfs.zName = "pilot-slow-sync";
	slow_vfs.szOsFile = (int)sizeof(slow_file) + def->szOsFile;
	slow_vfs.pAppData = def;
	slow_vfs.xOpen = sf_open;
	sqlite3_vfs_register(&slow_vfs, 0);
}

int st_open(registry *r, const char *path, char *err, size_t errlen)
{
	const reg_config *c = &r->cfg;
	reg_store *st;
	const char *vfs = NULL;
	char pragmas[160];
	int rc;

	if ((rc = create_0600(path, err, errlen)) < 0)
		return rc;
	st = calloc(1, sizeof(*st));
	if (!st || !(st->path = strdup(path)) || !(st->failed = calloc(ST_FAILED_MAX, sizeof(*st->failed)))) {
		if (st)
			free(st->path);
		free(st);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	st->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->cv, NULL);
	pthread_cond_init(&st->done_cv, NULL);
	st->queue_max = c->store_queue_max > 0 ? (size_t)c->store_queue_max : REG_STORE_QUEUE_DEFAULT;
	r->db = st;
	if (st->efd < 0) {
		snprintf(err, errlen, "store %s: eventfd: %s", path, strerror(errno));
		return -EIO;
	}
	if (c->store_fsync_delay_ms > 0) {
		slow_ms = c->store_fsync_delay_ms;
		pthread_once(&slow_once, slow_init);
		vfs = slow_vfs.zName;
		log_warn("registry: test hook: every store fsync sleeps %lld ms first",
			 (long long)c->store_fsync_delay_ms);
	}
	snprintf(pragmas, sizeof(pragmas), "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;"
		 " PRAGMA busy_timeout=5000;", c->store_sync_full ? "FULL" : "NORMAL");
	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, vfs) != SQLITE_OK ||
	    sqlite3_exec(st->db, pragmas, NULL, NULL, NULL) != SQLITE_OK ||
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

/* After st_load: from here on only the writer thread touches the connection. */
int st_start(registry *r, char *err, size_t errlen)
{
	reg_store *st = r->db;
	int rc;

	if (!st)
		return 0;
	if ((rc = pthread_create(&st->th, NULL, writer_main, st)) != 0) {
		snprintf(err, errlen, "store %s: cannot start the writer thread: %s", st->path, strerror(rc));
		return -rc;
	}
	st->thread_up = true;
	return 0;
}

/* Commits everything submitted, stops the writer, closes the connection. */
void st_close(registry *r)
{
	reg_store *st = r->db;

	if (!st)
		return;
	txn_free(st->cur);
	if (st->thread_up) {
		pthread_mutex_lock(&st->mu);
		st->stop = true;
		pthread_cond_signal(&st->cv);
		pthread_mutex_unlock(&st->mu);
		pthread_join(st->th, NULL);
	}
	while (st->qhead) { /* only if the thread never started */
		st_txn *t = st->qhead;

		st->qhead = t->next;
		txn_free(t);
	}
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(st->q[i]);
	sqlite3_close(st->db);
	if (st->efd >= 0)
		close(st->efd);
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->cv);
	pthread_cond_destroy(&st->done_cv);
	free(st->failed);
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
	if (!r->db)
		return 0;
	st_begin(r);
	op(r, Q_WIPE, 0);
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
