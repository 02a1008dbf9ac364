/* Crash-safe persistence of the registry, back-end neutral (store_be.h has the
 * back-end interface, STORE.md the design): SQLite (store_sqlite.c) or
 * PostgreSQL (store_pg.c).
 *
 * Asynchronous, group-committed: every mutating handler still writes only the
 * rows it changed as one transaction (st_begin .. st_commit), but st_commit
 * only encodes them and queues them under a sequence number; a writer thread,
 * the only user of the database connection after load, commits whatever is
 * queued as one database transaction (one fsync for the whole batch), then
 * publishes the highest committed sequence number and signals an eventfd. The
 * server holds each write's reply (and that connection's later replies) until
 * its number is durable, so "acknowledged = committed" holds while the event
 * loop never waits for the database. The queue is bounded (-store-queue);
 * registry.c refuses writes with `busy` while it is full. A transaction that
 * fails inside a batch is retried alone so it cannot fail its neighbours; its
 * reply becomes an `internal` error.
 *
 * Heartbeats (last_seen) stay in memory; live nodes restart with last_seen =
 * load time, so they are reaped only if they stay silent for the stale period
 * after a restart. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "rendezvous/reg_internal.h"
#include "rendezvous/store_be.h"

#define NODE_F_SIG_V2       1 /* has signed with v2: no v1 (SIGNATURES.md) */
#define NODE_F_OWNER_PROVEN 2 /* owner set by a request the node's key signed */

#define ST_BATCH_MAX 8192   /* transactions per commit */
/* Shared back ends: heartbeats heard go to the other instances this often. */
#define ST_SEEN_EVERY_MS(r) ((uint64_t)((r)->cfg.stale_ms > 0 ? (r)->cfg.stale_ms : 180000) / 6)
#define ST_CONFLICT         (1ull << 63) /* in failed[]: the database refused it, another instance won */
#define ST_FAILED_MAX 4096  /* failed sequence numbers remembered until collected */
/* Commit-latency histogram bounds, ms (Prometheus le=). */
const double reg_commit_le_ms[ST_LAT_BUCKETS] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000 };

struct reg_store {
	const st_backend *be;
	void *bes;  /* the back end's state; the writer thread's once loaded */
	char *path; /* file or URL with the password hidden, for messages */
	size_t queue_max;
	int efd;                     /* eventfd: the writer moved `durable` */

	/* loop thread only */
	st_txn *cur;                 /* being built between st_begin and st_commit */
	uint32_t new_id;             /* node created by the transaction being built (0 = none) */
	uint32_t new_net;            /* 1 + the network created by it (0 = none) */
	uint64_t last_seen_flush_ms; /* shared: heartbeats heard since then go to the others */
	bool shared;                 /* the back end is shared by several instances */
	uint32_t id_next, id_end;    /* shared: node IDs of this instance's block left */
	uint64_t next_seq;           /* last sequence number handed out */
	bool oom;                    /* building cur ran out of memory */
	bool loading;                /* st_load is running (not a change from another instance) */
	uint64_t refused;            /* rows refused or repaired (rows_refused) */

	/* shared, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv, done_cv;
	st_txn *qhead, *qtail;
	st_txn *chead, *ctail; /* changes from other instances, for the loop thread */
	size_t clen;
	size_t qlen;                 /* submitted, not yet durable (incl. the batch in flight) */
	uint64_t durable;            /* every seq <= durable is committed or failed */
	uint64_t *failed;            /* failed seqs > the last st_failed_forget */
	size_t nfailed;
	bool stop, thread_up;
	bool want_block;      /* the loop asks the writer for another ID block */
	uint32_t block_ready; /* first ID of a block the writer reserved (0 = none) */
	pthread_t th;
	reg_store_stats st;
};

static void on_change(void *arg, const uint8_t *body, size_t len, double lag_ms);

/* ---- encoding (loop thread) ---- */
static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Append to t: 0, or -1 (out of memory; t->failed marks it unusable). */
static int tput(st_txn *t, const void *p, size_t n)
{
	if (t->failed)
		return -1;
	if (t->len + n > t->cap) {
		size_t cap = t->cap ? t->cap : 256;
		uint8_t *b;

		while (cap < t->len + n)
			cap *= 2;
		if (!(b = realloc(t->buf, cap))) {
			t->failed = true;
			return -1;
		}
		t->buf = b;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
	return 0;
}

void st_buf_op(st_txn *t, int q, int nparams)
{
	uint8_t h[2] = { (uint8_t)q, (uint8_t)nparams };

	tput(t, h, 2);
}

void st_buf_int(st_txn *t, int64_t v)
{
	uint8_t k = ST_P_INT;

	tput(t, &k, 1);
	tput(t, &v, sizeof(v));
}

void st_buf_bytes(st_txn *t, int kind, const void *p, size_t n)
{
	uint8_t k = (uint8_t)kind;
	uint32_t l = (uint32_t)n;

	if (!p) {
		k = ST_P_NULL;
		tput(t, &k, 1);
		return;
	}
	tput(t, &k, 1);
	tput(t, &l, sizeof(l));
	tput(t, p, n);
}

static void put(registry *r, const void *p, size_t n)
{
	reg_store *st = r->db;

	if (st->oom)
		return;
	if (!st->cur && !(st->cur = calloc(1, sizeof(*st->cur)))) {
		st->oom = true;
		return;
	}
	if (tput(st->cur, p, n) < 0)
		st->oom = true;
}

static void op(registry *r, int q, int nparams)
{
	uint8_t h[2] = { (uint8_t)q, (uint8_t)nparams };

	put(r, h, 2);
}

static void p_int(registry *r, int64_t v)
{
	uint8_t k = ST_P_INT;

	put(r, &k, 1);
	put(r, &v, sizeof(v));
}

static void p_bytes(registry *r, int kind, const void *p, size_t n)
{
	uint8_t k = (uint8_t)kind;
	uint32_t l = (uint32_t)n;

	if (!p) {
		k = ST_P_NULL;
		put(r, &k, 1);
		return;
	}
	put(r, &k, 1);
	put(r, &l, sizeof(l));
	put(r, p, n);
}

static void p_text(registry *r, const char *t)
{
	p_bytes(r, ST_P_TEXT, t, t ? strlen(t) : 0);
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
	r->db->new_id = 0;
	r->db->new_net = 0;
}

void st_node_created(registry *r, uint32_t id)
{
	if (r->db)
		r->db->new_id = id;
}

/* Shared back ends: the next node ID of this instance's block, 0 and *id; or
 * -EAGAIN (the next block is being reserved: answer busy), -ENOTSUP (one
 * instance: the caller counts next_node as always). */
int st_alloc_node_id(registry *r, uint32_t *id)
{
	reg_store *st = r->db;

	if (!st || !st->shared)
		return -ENOTSUP;
	if (st->id_next == st->id_end) {
		pthread_mutex_lock(&st->mu);
		if (st->block_ready) {
			st->id_next = st->block_ready;
			st->id_end = st->block_ready + ST_ID_BLOCK;
			st->block_ready = 0;
		}
		pthread_mutex_unlock(&st->mu);
	}
	if (st->id_end - st->id_next < ST_ID_BLOCK / 4) {
		pthread_mutex_lock(&st->mu);
		if (!st->want_block && !st->block_ready) {
			st->want_block = true;
			pthread_cond_signal(&st->cv);
		}
		pthread_mutex_unlock(&st->mu);
	}
	if (st->id_next == 0) /* block 0: ID 0 is not a node */
		st->id_next++;
	if (st->id_next == st->id_end)
		return -EAGAIN;
	*id = st->id_next++;
	return 0;
}

void st_net_created(registry *r, uint16_t id)
{
	if (r->db)
		r->db->new_net = (uint32_t)id + 1;
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
	if (st->cur && st->shared && r->sig_pend) {
		/* the request's v2 signature, once: see ST_Q_SIG */
		r->sig_pend = false;
		r->sig_dep = st->next_seq + 1; /* this txn's seq (below) */
		op(r, ST_Q_SIG, 2);
		p_bytes(r, ST_P_BLOB, r->sig_pend_sig, 64);
		p_int(r, r->sig_pend_exp);
	} else if (st->cur && r->sig_dep) {
		st->cur->dep = r->sig_dep; /* e.g. reg_after_signed's: not without the first */
	}
	t = st->cur;
	st->cur = NULL;
	st->new_id = 0;
	st->new_net = 0;
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
		f = (r->db->failed[i] & ~ST_CONFLICT) == seq;
	pthread_mutex_unlock(&r->db->mu);
	return f;
}

bool st_failed_conflict(registry *r, uint64_t seq)
{
	bool f = false;

	if (!r->db)
		return false;
	pthread_mutex_lock(&r->db->mu);
	for (size_t i = 0; i < r->db->nfailed && !f; i++)
		f = r->db->failed[i] == (seq | ST_CONFLICT);
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
		if ((st->failed[i] & ~ST_CONFLICT) > upto)
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
		f = (st->failed[i] & ~ST_CONFLICT) == seq;
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
	out->shared = r->db->shared;
	out->db_up = st_db_up(r);
	out->rows_refused = r->db->refused;
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
	op(r, n->id == r->db->new_id ? ST_Q_NODE_NEW : ST_Q_NODE, 13);
	p_int(r, n->id);
	p_bytes(r, ST_P_BLOB, n->pk, 32);
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
		op(r, ST_Q_OWNER, 2);
		p_text(r, n->owner);
		p_int(r, n->id);
	}
}

static void meta(registry *r, const char *k, int64_t v)
{
	op(r, ST_Q_META, 2);
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
	op(r, (uint32_t)nt->id + 1 == r->db->new_net ? ST_Q_NET_NEW : ST_Q_NET, 6);
	p_int(r, nt->id);
	p_text(r, nt->name);
	p_text(r, nt->join_rule);
	p_text(r, nt->token);
	p_int(r, nt->created);
	p_int(r, nt->creator);
}

void st_member(registry *r, uint16_t net, uint32_t node, bool add)
{
	exec2(r, add ? ST_Q_MEM_ADD : ST_Q_MEM_DEL, net, node);
}

void st_pair(registry *r, uint32_t a, uint32_t b, bool add)
{
	exec2(r, add ? ST_Q_PAIR_ADD : ST_Q_PAIR_DEL, a < b ? a : b, a < b ? b : a);
}

void st_half(registry *r, uint32_t from, uint32_t to, int64_t ts, bool add)
{
	if (add)
		exec3(r, ST_Q_HALF_ADD, from, to, ts);
	else
		exec2(r, ST_Q_HALF_DEL, from, to);
}

void st_hsrec(registry *r, uint32_t from, uint32_t to, int64_t ts, bool add)
{
	if (add)
		exec3(r, ST_Q_REQ_ADD, from, to, ts);
	else
		exec2(r, ST_Q_REQ_DEL, from, to);
}

void st_inbox_add(registry *r, uint32_t to, const reg_hsreq *q)
{
	if (!r->db)
		return;
	op(r, ST_Q_INBOX_ADD, 4);
	p_int(r, to);
	p_int(r, q->from);
	p_text(r, q->justification);
	p_int(r, q->ts);
}

void st_inbox_clear(registry *r, uint32_t to)
{
	exec2(r, ST_Q_INBOX_CLEAR, to, 0); /* ?2 unused */
}

void st_inbox_del(registry *r, uint32_t to, uint32_t from)
{
	exec2(r, ST_Q_INBOX_DEL, to, from);
}

void st_resp_add(registry *r, uint32_t to, const reg_hsresp *p)
{
	/* REPLACE deletes then inserts, so the row moves to the end (newest). */
	if (!r->db)
		return;
	op(r, ST_Q_RESP_ADD, 4);
	p_int(r, to);
	p_int(r, p->from);
	p_int(r, p->accept);
	p_int(r, p->ts);
}

void st_resp_del(registry *r, uint32_t to, uint32_t from)
{
	exec2(r, ST_Q_RESP_DEL, to, from);
}

void st_resp_clear(registry *r, uint32_t to)
{
	exec2(r, ST_Q_RESP_CLEAR, to, 0);
}

void st_invite(registry *r, uint32_t target, const reg_invite *iv, bool add)
{
	if (!r->db)
		return;
	if (!add) {
		exec2(r, ST_Q_INV_DEL, target, iv->net);
		return;
	}
	op(r, ST_Q_INV_ADD, 4);
	p_int(r, target);
	p_int(r, iv->net);
	p_int(r, iv->inviter);
	p_int(r, iv->ts);
}

/* ---- decoding (writer thread, back ends) ---- */
int st_txn_next(const st_txn *t, size_t *off, st_op *o)
{
	size_t p = *off;

	if (p >= t->len)
		return 0;
	if (p + 2 > t->len)
		return -1;
	o->q = t->buf[p];
	o->n = t->buf[p + 1];
	p += 2;
	if ((o->q >= ST_Q_COUNT && o->q != ST_Q_WIPE) || o->n > ST_MAX_PARAMS)
		return -1;
	for (int i = 0; i < o->n; i++) {
		st_param *a = &o->p[i];

		if (p >= t->len)
			return -1;
		a->kind = t->buf[p++];
		a->p = NULL;
		a->len = 0;
		a->i = 0;
		if (a->kind == ST_P_NULL)
			continue;
		if (a->kind == ST_P_INT) {
			if (p + sizeof(a->i) > t->len)
				return -1;
			memcpy(&a->i, t->buf + p, sizeof(a->i));
			p += sizeof(a->i);
			continue;
		}
		if (a->kind != ST_P_TEXT && a->kind != ST_P_BLOB)
			return -1;
		if (p + sizeof(a->len) > t->len)
			return -1;
		memcpy(&a->len, t->buf + p, sizeof(a->len));
		p += sizeof(a->len);
		if (a->len > t->len - p)
			return -1;
		a->p = t->buf + p;
		p += a->len;
	}
	*off = p;
	return 1;
}

/* Did the write t depends on (t->dep, ST_Q_SIG) fail: earlier in this batch,
 * or in an earlier batch (st->failed)? Writer thread, st->mu not held. */
static bool dep_failed(reg_store *st, const st_txn *batch, const st_txn *t)
{
	bool f = false;

	if (!t->dep)
		return false;
	for (const st_txn *u = batch; u && u != t; u = u->next)
		if (u->seq == t->dep)
			return u->failed;
	pthread_mutex_lock(&st->mu);
	for (size_t i = 0; i < st->nfailed && !f; i++)
		f = (st->failed[i] & ~ST_CONFLICT) == t->dep;
	pthread_mutex_unlock(&st->mu);
	return f;
}

static bool batch_dep_failed(reg_store *st, const st_txn *batch)
{
	for (const st_txn *t = batch; t; t = t->next)
		if (t->dep && dep_failed(st, batch, t))
			return true;
	return false;
}

/* ---- the writer thread: the only user of the database connection after load ---- */
static void *writer_main(void *arg)
{
	reg_store *st = arg;

	pthread_mutex_lock(&st->mu);
	for (;;) {
		st_txn *batch, *last, *t;
		uint64_t t0, t1, one = 1;
		size_t n = 1, nfail = 0, nconf = 0;
		double ms;

		while (!st->qhead && !st->stop && !st->want_block)
			pthread_cond_wait(&st->cv, &st->mu);
		if (st->want_block && !st->stop) {
			uint32_t first = 0;

			pthread_mutex_unlock(&st->mu);
			if (st->be->id_block(st->bes, &first) < 0)
				first = 0;
			pthread_mutex_lock(&st->mu);
			st->want_block = false;
			st->block_ready = first;
			if (write(st->efd, &one, sizeof(one)) < 0) {
				/* the loop reads the counter */
			}
			continue;
		}
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
		if (batch_dep_failed(st, batch) || st->be->commit(st->bes, batch, n) < 0) {
			/* One bad transaction must not fail its neighbours: retry alone. */
			for (t = batch; t; t = t->next) {
				st_txn *nx = t->next;
				int rc;

				if (dep_failed(st, batch, t)) {
					t->failed = t->conflict = true; /* a replayed signature */
					nfail++;
					nconf++;
					continue;
				}
				t->next = NULL; /* commit exactly this one */
				rc = st->be->commit(st->bes, t, 1);
				t->next = nx;
				if ((t->failed = rc < 0))
					nfail++;
				t->conflict = rc == -EEXIST;
				nconf += t->conflict;
			}
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
			st->failed[st->nfailed - 1] = t->seq | (t->conflict ? ST_CONFLICT : 0);
			st->st.failed++;
		}
		st->st.conflicts += nconf;
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
bool st_is_pg_url(const char *where)
{
	return where && (!strncmp(where, "postgres://", 11) || !strncmp(where, "postgresql://", 13));
}

static const st_backend *backend_for(const char *where)
{
	return st_is_pg_url(where) ? &st_pg_backend : &st_sqlite_backend;
}

/* The store's name for messages: a URL without its password. */
static char *display_name(const char *where)
{
	const char *at, *colon, *auth;
	char *s;

	if (!st_is_pg_url(where) || !(at = strchr(where, '@')))
		return strdup(where);
	auth = strstr(where, "://") + 3;
	colon = memchr(auth, ':', (size_t)(at - auth));
	if (!colon)
		return strdup(where);
	if (!(s = malloc(strlen(where) + 4)))
		return NULL;
	snprintf(s, strlen(where) + 4, "%.*s:***%s", (int)(colon - where), where, at);
	return s;
}

int reg_store_check(const char *where, char *err, size_t errlen)
{
	if (!where || !*where)
		return 0;
	return backend_for(where)->check(where, err, errlen);
}

const char *reg_store_backend(const char *where)
{
	return !where || !*where ? "memory" : backend_for(where)->name;
}

int st_open(registry *r, const char *where, char *err, size_t errlen)
{
	const reg_config *c = &r->cfg;
	reg_store *st;

	st = calloc(1, sizeof(*st));
	if (!st || !(st->path = display_name(where)) ||
	    !(st->failed = calloc(ST_FAILED_MAX, sizeof(*st->failed)))) {
		if (st)
			free(st->path);
		free(st);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	st->be = backend_for(where);
	st->shared = st->be->shared;
	st->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->cv, NULL);
	pthread_cond_init(&st->done_cv, NULL);
	st->queue_max = c->store_queue_max > 0 ? (size_t)c->store_queue_max : REG_STORE_QUEUE_DEFAULT;
	r->db = st;
	if (st->efd < 0) {
		snprintf(err, errlen, "store %s: eventfd: %s", st->path, strerror(errno));
		return -EIO;
	}
	return st->be->open(&st->bes, where, c, err, errlen);
}

/* After st_load: from here on only the writer thread touches the connection. */
int st_start(registry *r, char *err, size_t errlen)
{
	reg_store *st = r->db;
	int rc;

	if (!st)
		return 0;
	if (st->shared && (rc = st->be->listen(st->bes, on_change, st, err, errlen)) < 0)
		return rc;
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
	if (st->bes) /* also stops a listener thread */
		st->be->close(st->bes);
	while (st->chead) {
		st_txn *t = st->chead;

		st->chead = t->next;
		txn_free(t);
	}
	while (st->qhead) { /* only if the thread never started */
		st_txn *t = st->qhead;

		st->qhead = t->next;
		txn_free(t);
	}
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

/* ---- load ----
 * The rows come from a file or a database someone else can write (an operator,
 * a restore, a bug, another instance): none is taken as it is. A row whose
 * identity is impossible (a node ID of 0, broadcast or past 32 bits, a key that
 * is not 32 bytes or is another node's already, a network ID past 16 bits, a
 * duplicate) is refused; a node row whose other columns are bad (an endpoint
 * that is not ip:port, a source that is not an IP, an owner too long, a
 * hostname that is invalid or taken, a bad tag) is loaded without them; lists
 * stop at the caps the handlers keep. Each is logged and counted
 * (rows_refused, pilot_store_rows_refused_total). The same checks apply to the
 * rows another instance's changes carry. */
#define C_I(i) (row->i64(row, (i)))
#define C_T(i) (row->text(row, (i)))
#define ST_REFUSED_LOG_MAX 64 /* warnings per process; later ones only count */

static void refused(registry *r, const char *table, int64_t key, const char *what)
{
	reg_store *st = r->db;

	if (++st->refused <= ST_REFUSED_LOG_MAX)
		log_warn("registry: store row %s table=%s key=%lld from=%s", what, table, (long long)key,
			 st->loading ? "load" : "another instance");
	if (st->refused == ST_REFUSED_LOG_MAX)
		log_warn("registry: more store rows refused are only counted "
			 "(pilot_store_rows_refused_total)");
}

/* A node ID: 1 .. 2^32-2 (0 is no node, 2^32-1 broadcast). */
static bool node_id_ok(int64_t v)
{
	return v > 0 && v < 0xFFFFFFFFll;
}

static bool net_id_ok(int64_t v)
{
	return v > 0 && v <= 65535;
}

static bool ip_ok(const char *s, size_t max)
{
	struct in6_addr a;

	return strlen(s) < max && (inet_pton(AF_INET, s, &a) == 1 || inet_pton(AF_INET6, s, &a) == 1);
}

/* "a.b.c.d:port" or "[v6]:port", port 0..65535 (a relay-only node's is 0), as
 * register stores it. */
static bool endpoint_ok(const char *s, size_t max)
{
	char host[64];
	const char *colon, *p;
	size_t hl;
	long port;
	char *end;

	if (strlen(s) >= max)
		return false;
	if (s[0] == '[') {
		if (!(p = strchr(s, ']')) || p[1] != ':')
			return false;
		hl = (size_t)(p - s - 1);
		colon = p + 1;
		if (hl >= sizeof(host))
			return false;
		memcpy(host, s + 1, hl);
		host[hl] = 0;
		if (!strchr(host, ':'))
			return false;
	} else {
		if (!(colon = strrchr(s, ':')) || (hl = (size_t)(colon - s)) >= sizeof(host))
			return false;
		memcpy(host, s, hl);
		host[hl] = 0;
		if (strchr(host, ':'))
			return false;
	}
	if (!ip_ok(host, sizeof(host)) || !colon[1] || colon[1] < '0' || colon[1] > '9')
		return false;
	port = strtol(colon + 1, &end, 10);
	return !*end && port >= 0 && port <= 65535;
}

static int row_meta(registry *r, st_row *row, uint64_t now_ms)
{
	const char *k = C_T(0);
	int64_t v = C_I(1);

	(void)now_ms;
	if (k && !strcmp(k, "next_node")) {
		if (v < 0 || v > 0xFFFFFFFFll)
			refused(r, "meta", v, "refused: next_node out of range");
		else
			r->next_node = (uint32_t)v;
	} else if (k && !strcmp(k, "next_net")) {
		if (v < 0 || v > 65536)
			refused(r, "meta", v, "refused: next_net out of range");
		else
			r->next_net = (uint32_t)v;
	}
	return 0;
}

static int row_net(registry *r, st_row *row, uint64_t now_ms)
{
	int64_t id = C_I(0), creator = C_I(5);
	const char *name = C_T(1), *rule = C_T(2), *tok = C_T(3);
	reg_net *nt;

	(void)now_ms;
	if (!net_id_ok(id) || !name || reg_validate_label(name, 63) || (rule && strlen(rule) >= 16) ||
	    (tok && strlen(tok) > 256) || creator < 0 || creator >= 0xFFFFFFFFll) {
		refused(r, "networks", id, "refused: bad id, name, join_rule, token or creator");
		return 0;
	}
	if (reg_net_get(r, (uint16_t)id) || reg_net_by_name(r, name)) {
		refused(r, "networks", id, "refused: its id or name is another network's");
		return 0;
	}
	if (!(nt = reg_net_new(r, (uint16_t)id, name, rule)))
		return -1;
	nt->token = tok ? strdup(tok) : NULL;
	nt->created = C_I(4);
	nt->creator = (uint32_t)creator;
	return 0;
}

/* Comma-separated tags as st_node writes them; NULL when t is not that (too
 * many, or one that set_tags would refuse). */
static int load_tags(reg_node *n, const char *t, bool *bad)
{
	char *dup, *tok, *save = NULL, **v;
	size_t k = 0;

	*bad = false;
	if (!t || !*t)
		return 0;
	if (!(dup = strdup(t)) || !(v = calloc(REG_MAX_TAGS + 1, sizeof(*v)))) {
		free(dup);
		return -1;
	}
	for (tok = strtok_r(dup, ",", &save); tok && !*bad; tok = strtok_r(NULL, ",", &save)) {
		if (k == REG_MAX_TAGS || reg_validate_label(tok, 32))
			*bad = true;
		else if (!(v[k++] = strdup(tok)))
			*bad = true;
	}
	free(dup);
	if (*bad) {
		while (k)
			free(v[--k]);
		free(v);
		return 0;
	}
	reg_tags_set(n, v, k);
	return 0;
}

/* The node row's columns 2, 4, 5 (owner, real_addr, src_ip) and 8 (tags) that
 * can be loaded; a bad one is left out (logged, counted). */
static const char *row_owner_ok(registry *r, st_row *row, int64_t id)
{
	const char *o = C_T(2);

	if (o && strlen(o) > REG_OWNER_MAX) {
		refused(r, "nodes", id, "repaired: owner too long, left out");
		return NULL;
	}
	return o && *o ? o : NULL;
}

static void row_endpoints(registry *r, st_row *row, reg_node *n)
{
	const char *t = C_T(4), *ip = C_T(5);

	if (t && *t && !endpoint_ok(t, sizeof(n->real_addr))) {
		refused(r, "nodes", n->id, "repaired: real_addr is not ip:port, left out");
		t = NULL;
	}
	snprintf(n->real_addr, sizeof(n->real_addr), "%s", t ? t : "");
	if (ip && *ip && !ip_ok(ip, sizeof(n->src_ip))) {
		refused(r, "nodes", n->id, "repaired: src_ip is not an IP address, left out");
		ip = NULL;
	}
	snprintf(n->src_ip, sizeof(n->src_ip), "%s", ip ? ip : "");
}

static int row_tags(registry *r, st_row *row, reg_node *n)
{
	bool bad;

	if (load_tags(n, C_T(8), &bad) < 0)
		return -1;
	if (bad)
		refused(r, "nodes", n->id, "repaired: tags not a list of valid tags, left out");
	return 0;
}

/* A hostname the node may hold here: valid, and no other live node's. */
static bool hostname_ok(registry *r, const reg_node *n, const char *h)
{
	const reg_node *holder;

	if (reg_validate_hostname(h)) {
		refused(r, "nodes", n->id, "repaired: hostname invalid, left out");
		return false;
	}
	if ((holder = reg_node_by_hostname(r, h)) && holder != n && r->db->loading) {
		refused(r, "nodes", n->id, "repaired: hostname is another node's, left out");
		return false;
	}
	return true;
}

static int row_node(registry *r, st_row *row, uint64_t now_ms)
{
	int64_t id = C_I(0);
	size_t pklen = 0;
	const void *pk = row->blob(row, 1, &pklen);
	const char *t, *owner;
	reg_node *n;

	if (!node_id_ok(id)) {
		refused(r, "nodes", id, "refused: node ID out of range");
		return 0;
	}
	if (!pk || pklen != 32) {
		refused(r, "nodes", id, "refused: public key not 32 bytes");
		return 0;
	}
	if (reg_node_get(r, (uint32_t)id)) {
		refused(r, "nodes", id, "refused: a node with this ID is loaded already");
		return 0;
	}
	/* A key binds one node (at load; other instances' changes may move it). */
	if (r->db->loading && reg_node_by_key(r, pk)) {
		refused(r, "nodes", id, "refused: its public key is another node's");
		return 0;
	}
	owner = row_owner_ok(r, row, id);
	if (!(n = reg_node_new(r, (uint32_t)id)) || reg_node_set_key(r, n, pk) < 0 ||
	    reg_node_set_owner(r, n, owner) < 0)
		return -1;
	n->live = C_I(3) != 0;
	if (n->live)
		r->live_count++;
	row_endpoints(r, row, n);
	n->pub = C_I(6) != 0;
	if ((t = C_T(7)) && *t && n->live && hostname_ok(r, n, t) && reg_node_set_hostname(r, n, t) < 0)
		return -1;
	if (row_tags(r, row, n) < 0)
		return -1;
	n->polo = C_I(9);
	n->task_exec = C_I(10) != 0;
	n->relay_only = C_I(11) != 0;
	n->sig_v2 = (C_I(12) & NODE_F_SIG_V2) != 0;
	n->owner_proven = n->owner && (C_I(12) & NODE_F_OWNER_PROVEN);
	n->last_seen_ms = now_ms;
	if ((uint32_t)id >= r->next_node)
		r->next_node = (uint32_t)id + 1;
	return 0;
}

static int row_owner(registry *r, st_row *row, uint64_t now_ms)
{
	const char *o = C_T(0);
	int64_t id = C_I(1);
	reg_node *n;

	(void)now_ms;
	if (!node_id_ok(id) || !o || !*o || strlen(o) > REG_OWNER_MAX) {
		refused(r, "owners", id, "refused: bad owner or node ID");
		return 0;
	}
	/* An owner row of a node whose owner changed since is stale, not bad. */
	n = reg_node_get(r, (uint32_t)id);
	if (n && n->owner && !strcmp(n->owner, o))
		return rmap_put(&r->owneridx, reg_hash_str(r, o), n->id);
	return 0;
}

static int row_member(registry *r, st_row *row, uint64_t now_ms)
{
	int64_t net = C_I(0), id = C_I(1);
	reg_net *nt;
	reg_node *n;

	(void)now_ms;
	if (!net_id_ok(net) || !node_id_ok(id)) {
		refused(r, "members", net, "refused: network or node ID out of range");
		return 0;
	}
	nt = reg_net_get(r, (uint16_t)net);
	n = reg_node_get(r, (uint32_t)id);
	if (!nt || !n || reg_node_in_net(n, nt->id))
		return 0;
	return reg_node_add_net(n, nt->id) < 0 || reg_net_add_member(nt, n->id) < 0 ? -1 : 0;
}

/* Two distinct node IDs in columns a, b (a trust pair, half or request). */
static bool two_ids(registry *r, st_row *row, const char *table)
{
	int64_t a = C_I(0), b = C_I(1);

	if (node_id_ok(a) && node_id_ok(b) && a != b)
		return true;
	refused(r, table, a, "refused: node IDs out of range or equal");
	return false;
}

static int row_pair(registry *r, st_row *row, uint64_t now_ms)
{
	(void)now_ms;
	if (!two_ids(r, row, "trust_pairs"))
		return 0;
	return rmap_put(&r->pairs, upair_key((uint32_t)C_I(0), (uint32_t)C_I(1)), 1);
}

static int row_half(registry *r, st_row *row, uint64_t now_ms)
{
	(void)now_ms;
	if (!two_ids(r, row, "trust_halves"))
		return 0;
	return rmap_put(&r->halves, pair_key((uint32_t)C_I(0), (uint32_t)C_I(1)), (uint64_t)C_I(2));
}

static int row_req(registry *r, st_row *row, uint64_t now_ms)
{
	uint32_t to = (uint32_t)C_I(1);
	reg_node *n;

	(void)now_ms;
	if (!two_ids(r, row, "hs_requests"))
		return 0;
	if ((n = reg_node_get(r, to)) && n->hsrec_in >= REG_HSREC_CAP) {
		refused(r, "hs_requests", to, "refused: more handshake records for the node than kept");
		return 0;
	}
	if (n)
		n->hsrec_in++;
	return rmap_put(&r->hsrec, pair_key((uint32_t)C_I(0), to), (uint64_t)C_I(2));
}

static int row_inbox(registry *r, st_row *row, uint64_t now_ms)
{
	reg_node *n;
	const char *j = C_T(2);
	reg_hsreq *g;

	(void)now_ms;
	if (!two_ids(r, row, "hs_inbox"))
		return 0;
	if (!(n = reg_node_get(r, (uint32_t)C_I(0))))
		return 0;
	if (n->ninbox >= REG_INBOX_CAP || (j && strlen(j) > REG_JUSTIFY_MAX)) {
		refused(r, "hs_inbox", n->id, "refused: inbox full or justification too long");
		return 0;
	}
	if (!(g = realloc(n->inbox, (n->ninbox + 1) * sizeof(*g))))
		return -1;
	n->inbox = g;
	g[n->ninbox].from = (uint32_t)C_I(1);
	g[n->ninbox].ts = C_I(3);
	if (!(g[n->ninbox].justification = strdup(j ? j : "")))
		return -1;
	n->ninbox++;
	return 0;
}

static int row_resp(registry *r, st_row *row, uint64_t now_ms)
{
	reg_node *n;
	reg_hsresp *g;

	(void)now_ms;
	if (!two_ids(r, row, "hs_responses"))
		return 0;
	if (!(n = reg_node_get(r, (uint32_t)C_I(0))))
		return 0;
	if (n->nresp >= REG_RESP_CAP) {
		refused(r, "hs_responses", n->id, "refused: more responses for the node than kept");
		return 0;
	}
	if (!(g = realloc(n->resp, (n->nresp + 1) * sizeof(*g))))
		return -1;
	n->resp = g;
	g[n->nresp].from = (uint32_t)C_I(1);
	g[n->nresp].accept = C_I(2) != 0;
	g[n->nresp].ts = C_I(3);
	n->nresp++;
	return 0;
}

static int row_invite(registry *r, st_row *row, uint64_t now_ms)
{
	int64_t dst = C_I(0), net = C_I(1), inviter = C_I(2);
	reg_node *n;
	reg_invite *g;

	(void)now_ms;
	if (!node_id_ok(dst) || !net_id_ok(net) || !node_id_ok(inviter)) {
		refused(r, "invites", dst, "refused: node or network ID out of range");
		return 0;
	}
	if (!(n = reg_node_get(r, (uint32_t)dst)))
		return 0;
	if (n->ninv >= REG_INVITE_CAP) {
		refused(r, "invites", dst, "refused: more invites for the node than kept");
		return 0;
	}
	if (!(g = realloc(n->inv, (n->ninv + 1) * sizeof(*g))))
		return -1;
	n->inv = g;
	g[n->ninv].net = (uint16_t)net;
	g[n->ninv].inviter = (uint32_t)inviter;
	g[n->ninv].ts = C_I(3);
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
		st_row_fn fn;
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
	r->db->loading = true;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		int rc = r->db->be->each_row(r->db->bes, r, steps[i].q, steps[i].fn, now_ms);

		if (rc < 0) {
			r->db->loading = false;
			snprintf(err, errlen, "cannot load store %s: %s", r->db->path,
				 rc == -ENOMEM ? "out of memory" : r->db->be->errmsg(r->db->bes));
			return rc;
		}
	}
	r->db->loading = false;
	if (r->db->refused)
		log_warn(
			"registry: store %s had bad rows: refused or repaired=%llu (not loaded as they were)",
			r->db->path, (unsigned long long)r->db->refused);
	if (r->next_node == 0)
		r->next_node = 1;
	if (r->next_net == 0)
		r->next_net = 1;
	recount_creators(r);
	if (r->db->shared) {
		uint32_t first;

		if (r->db->be->id_block(r->db->bes, &first) < 0) {
			snprintf(err, errlen, "store %s: cannot reserve node IDs: %s", r->db->path,
				 r->db->be->errmsg(r->db->bes));
			return -EIO;
		}
		r->db->id_next = first;
		r->db->id_end = first + ST_ID_BLOCK;
	}
	log_info("registry: loaded store %s=%s nodes=%zu live=%zu networks=%zu", r->db->be->name, r->db->path,
		 r->nodes.len, r->live_count, r->nets.len);
	return 0;
}

/* ---- changes from other instances (shared back ends) ----
 * The back end's listener thread hands over every batch another instance
 * committed (the same encoded operations its writer sent to the database);
 * the loop thread applies them to the in-memory registry in commit order
 * (st_apply_changes, run from reg_commit_poll: the same eventfd wakes it).
 * Applying is idempotent, so a change seen twice (at load and again from the
 * feed) does no harm. A repair (after this instance lost a conflict) carries
 * the rows as the database has them. */
static void on_change(void *arg, const uint8_t *body, size_t len, double lag_ms)
{
	reg_store *st = arg;
	st_txn *t = calloc(1, sizeof(*t));
	uint64_t one = 1;

	if (!t || !(t->buf = malloc(len ? len : 1))) {
		free(t);
		log_warn("registry: change from another instance dropped: out of memory");
		return;
	}
	memcpy(t->buf, body, len);
	t->len = len;
	pthread_mutex_lock(&st->mu);
	if (st->ctail)
		st->ctail->next = t;
	else
		st->chead = t;
	st->ctail = t;
	st->clen++;
	st->st.changes++;
	st->st.change_lag_last_ms = lag_ms;
	if (lag_ms > st->st.change_lag_max_ms)
		st->st.change_lag_max_ms = lag_ms;
	st->st.change_lag_seconds += lag_ms / 1000.0;
	pthread_mutex_unlock(&st->mu);
	if (write(st->efd, &one, sizeof(one)) < 0) {
		/* the loop reads the counter */
	}
}

typedef struct oprow {
	const st_op *o;
	char *tx[ST_MAX_PARAMS];
} oprow;

static int64_t op_i64(st_row *row, int col)
{
	const oprow *p = row->impl;

	return col < p->o->n && p->o->p[col].kind == ST_P_INT ? p->o->p[col].i : 0;
}

static const char *op_text(st_row *row, int col)
{
	oprow *p = row->impl;
	const st_param *a;

	if (col >= p->o->n || (a = &p->o->p[col])->kind != ST_P_TEXT)
		return NULL;
	if (!p->tx[col])
		p->tx[col] = strndup(a->p, a->len);
	return p->tx[col];
}

static const void *op_blob(st_row *row, int col, size_t *len)
{
	const oprow *p = row->impl;
	const st_param *a;

	*len = 0;
	if (col >= p->o->n || (a = &p->o->p[col])->kind != ST_P_BLOB)
		return NULL;
	*len = a->len;
	return a->p;
}

static void node_drop(registry *r, reg_node *n)
{
	reg_node_set_hostname(r, n, NULL);
	if (reg_node_by_key(r, n->pk) == n)
		rmap_del(&r->keyidx, reg_hash(r, n->pk, 32));
	if (n->owner && reg_node_by_owner(r, n->owner) == n)
		rmap_del(&r->owneridx, reg_hash_str(r, n->owner));
	if (n->live)
		r->live_count--;
	for (size_t i = 0; i < n->nnets; i++) {
		reg_net *nt = reg_net_get(r, n->nets[i]);

		if (nt)
			reg_net_del_member(nt, n->id);
	}
	rmap_del(&r->nodes, n->id);
	reg_node_free(n);
}

static void net_drop(registry *r, reg_net *nt)
{
	reg_node *n;

	for (size_t i = 0; i < nt->nmembers; i++)
		if ((n = reg_node_get(r, nt->members[i])))
			reg_node_del_net(n, nt->id);
	if (nt->creator && (n = reg_node_get(r, nt->creator)) && n->nets_created)
		n->nets_created--;
	if (reg_net_by_name(r, nt->name) == nt)
		rmap_del(&r->netnames, reg_hash_str(r, nt->name));
	rmap_del(&r->nets, nt->id);
	reg_net_free(nt);
}

/* A node row as the database has it: create or update n to match. */
static int apply_node(registry *r, st_row *row, uint64_t now_ms)
{
	uint32_t id = (uint32_t)C_I(0);
	size_t pklen = 0;
	const void *pk = row->blob(row, 1, &pklen);
	const char *owner, *h = C_T(7);
	reg_node *n = reg_node_get(r, id), *holder;
	bool live = C_I(3) != 0;

	if (!n || !node_id_ok(C_I(0)) || !pk || pklen != 32)
		return row_node(r, row, now_ms); /* as at load (refuses what is bad) */
	if (memcmp(n->pk, pk, 32) && reg_node_set_key(r, n, pk) < 0)
		return -1;
	owner = row_owner_ok(r, row, id);
	if ((owner ? !n->owner || strcmp(owner, n->owner) : n->owner != NULL) &&
	    reg_node_set_owner(r, n, owner) < 0)
		return -1;
	if (live && !n->live) {
		n->live = true;
		r->live_count++;
		n->last_seen_ms = now_ms;
	} else if (!live && n->live) {
		n->live = false;
		r->live_count--;
	}
	row_endpoints(r, row, n);
	n->pub = C_I(6) != 0;
	if (!live || !h || !*h || !hostname_ok(r, n, h)) {
		reg_node_set_hostname(r, n, NULL);
	} else if (!n->hostname || strcmp(n->hostname, h)) {
		/* The database says n owns h: whoever held it here lost a race. */
		if ((holder = reg_node_by_hostname(r, h)) && holder != n) {
			free(holder->hostname);
			holder->hostname = NULL;
		}
		if (reg_node_set_hostname(r, n, h) < 0)
			return -1;
	}
	reg_tags_set(n, NULL, 0);
	if (row_tags(r, row, n) < 0)
		return -1;
	n->polo = C_I(9);
	n->task_exec = C_I(10) != 0;
	n->relay_only = C_I(11) != 0;
	n->sig_v2 = (C_I(12) & NODE_F_SIG_V2) != 0;
	n->owner_proven = n->owner && (C_I(12) & NODE_F_OWNER_PROVEN);
	if (id >= r->next_node)
		r->next_node = id + 1;
	return 0;
}

static void inv_remove(reg_node *n, uint16_t net)
{
	for (size_t i = 0; i < n->ninv; i++)
		if (n->inv[i].net == net) {
			memmove(&n->inv[i], &n->inv[i + 1], (n->ninv - i - 1) * sizeof(*n->inv));
			n->ninv--;
			return;
		}
}

static void apply_seen(registry *r, const st_op *o)
{
	const uint8_t *p = o->p[0].p;
	uint64_t ms = (uint64_t)o->p[1].i;

	if (o->n != 2 || o->p[0].kind != ST_P_BLOB)
		return;
	for (uint32_t i = 0; i + 4 <= o->p[0].len; i += 4) {
		uint32_t id;
		reg_node *n;

		memcpy(&id, p + i, 4);
		if ((n = reg_node_get(r, id)) && n->last_seen_ms < ms)
			n->last_seen_ms = ms;
	}
}

static int apply_op(registry *r, const st_op *o, uint64_t now_ms)
{
	oprow p = { o, { 0 } };
	st_row rw = { op_i64, op_text, op_blob, &p }, *row = &rw;
	uint32_t a = (uint32_t)C_I(0), b = (uint32_t)C_I(1);
	reg_node *n = NULL;
	reg_net *nt;
	uint64_t v;
	int rc = 0;

	switch (o->q) {
	case ST_Q_META:
		if ((v = (uint64_t)C_I(1)) && C_T(0) && !strcmp(C_T(0), "next_node") && v > r->next_node)
			r->next_node = (uint32_t)v;
		else if (v && C_T(0) && !strcmp(C_T(0), "next_net") && v > r->next_net)
			r->next_net = (uint32_t)v;
		break;
	case ST_Q_NODE:
	case ST_Q_NODE_NEW:
		rc = apply_node(r, row, now_ms);
		break;
	case ST_Q_NODE_DEL:
		if ((n = reg_node_get(r, a)))
			node_drop(r, n);
		break;
	case ST_Q_OWNER:
		rc = row_owner(r, row, now_ms);
		break;
	case ST_Q_NET_DEL:
		if (a && a <= 65535 && (nt = reg_net_get(r, (uint16_t)a)))
			net_drop(r, nt);
		break;
	case ST_Q_NET:
	case ST_Q_NET_NEW:
		if (a == 0 || a > 65535 || !C_T(1))
			break;
		if (!(nt = reg_net_get(r, (uint16_t)a))) {
			rc = row_net(r, row, now_ms);
			if (!rc && (nt = reg_net_get(r, (uint16_t)a)) && nt->creator &&
			    (n = reg_node_get(r, nt->creator)))
				n->nets_created++;
			if (a >= r->next_net)
				r->next_net = a + 1;
			break;
		}
		if (strcmp(nt->name, C_T(1))) {
			if (reg_net_by_name(r, nt->name) == nt)
				rmap_del(&r->netnames, reg_hash_str(r, nt->name));
			snprintf(nt->name, sizeof(nt->name), "%s", C_T(1));
			rc = rmap_put(&r->netnames, reg_hash_str(r, nt->name), nt->id);
		}
		snprintf(nt->join_rule, sizeof(nt->join_rule), "%s", C_T(2) ? C_T(2) : "");
		free(nt->token);
		nt->token = C_T(3) ? strdup(C_T(3)) : NULL;
		nt->created = C_I(4);
		break;
	case ST_Q_MEM_ADD:
		rc = row_member(r, row, now_ms);
		break;
	case ST_Q_MEM_DEL:
		if ((nt = reg_net_get(r, (uint16_t)a)) && (n = reg_node_get(r, b)) &&
		    reg_node_in_net(n, nt->id)) {
			reg_node_del_net(n, nt->id);
			reg_net_del_member(nt, n->id);
		}
		break;
	case ST_Q_PAIR_ADD:
		rc = row_pair(r, row, now_ms);
		break;
	case ST_Q_PAIR_DEL:
		rmap_del(&r->pairs, upair_key(a, b));
		break;
	case ST_Q_HALF_ADD:
		if (rmap_get(&r->pairs, upair_key(a, b), NULL))
			break;
		if ((rc = row_half(r, row, now_ms)) < 0 || !rmap_get(&r->halves, pair_key(b, a), NULL))
			break;
		/* Both halves, reported on two instances at once: neither handler saw
		 * the other's, so the pair is formed here (idempotent if both do it). */
		st_begin(r);
		if ((rc = rmap_put(&r->pairs, upair_key(a, b), 1)) == 0) {
			st_pair(r, a, b, true);
			rmap_del(&r->halves, pair_key(a, b));
			rmap_del(&r->halves, pair_key(b, a));
			st_half(r, a, b, 0, false);
			st_half(r, b, a, 0, false);
		}
		st_commit(r);
		break;
	case ST_Q_HALF_DEL:
		rmap_del(&r->halves, pair_key(a, b));
		break;
	case ST_Q_REQ_ADD:
		if (rmap_get(&r->hsrec, pair_key(a, b), &v))
			rc = rmap_put(&r->hsrec, pair_key(a, b), (uint64_t)C_I(2));
		else
			rc = row_req(r, row, now_ms);
		break;
	case ST_Q_REQ_DEL:
		if (rmap_del(&r->hsrec, pair_key(a, b)) && (n = reg_node_get(r, b)) && n->hsrec_in)
			n->hsrec_in--;
		break;
	case ST_Q_INBOX_ADD:
		if ((n = reg_node_get(r, a))) {
			reg_inbox_remove(n, b);
			if (!(rc = row_inbox(r, row, now_ms)) && r->inbox_cb)
				r->inbox_cb(r->inbox_arg, a);
		}
		break;
	case ST_Q_INBOX_CLEAR:
		if ((n = reg_node_get(r, a)))
			while (n->ninbox)
				reg_inbox_remove(n, n->inbox[0].from);
		break;
	case ST_Q_INBOX_DEL:
		if ((n = reg_node_get(r, a)))
			reg_inbox_remove(n, b);
		break;
	case ST_Q_RESP_ADD:
		if ((n = reg_node_get(r, a))) {
			reg_resp_remove(n, b);
			if (!(rc = row_resp(r, row, now_ms)) && r->inbox_cb)
				r->inbox_cb(r->inbox_arg, a);
		}
		break;
	case ST_Q_RESP_DEL:
		if ((n = reg_node_get(r, a)))
			reg_resp_remove(n, b);
		break;
	case ST_Q_RESP_CLEAR:
		if ((n = reg_node_get(r, a)))
			n->nresp = 0;
		break;
	case ST_Q_INV_ADD:
		if ((n = reg_node_get(r, a))) {
			inv_remove(n, (uint16_t)b);
			rc = row_invite(r, row, now_ms);
		}
		break;
	case ST_Q_INV_DEL:
		if ((n = reg_node_get(r, a)))
			inv_remove(n, (uint16_t)b);
		break;
	case ST_Q_SEEN:
		apply_seen(r, o);
		break;
	case ST_Q_SIG:
		if (o->n == 2 && o->p[0].kind == ST_P_BLOB && o->p[0].len == 64)
			reg_replay_note(r, o->p[0].p, o->p[1].i);
		break;
	case ST_Q_RL:
		if (o->n == 1 && o->p[0].kind == ST_P_BLOB)
			reg_rl_charge(r, o->p[0].p, o->p[0].len, now_ms);
		break;
	default:
		break;
	}
	for (int i = 0; i < ST_MAX_PARAMS; i++)
		free(p.tx[i]);
	return rc;
}

void st_apply_changes(registry *r)
{
	reg_store *st = r->db;
	st_txn *t, *next;
	struct timespec ts;
	uint64_t now_ms;
	size_t k = 0;

	if (!st || !st->shared)
		return;
	pthread_mutex_lock(&st->mu);
	t = st->chead;
	st->chead = st->ctail = NULL;
	st->clen = 0;
	pthread_mutex_unlock(&st->mu);
	if (!t)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (; t; t = next) {
		size_t off = 0;
		st_op o;

		next = t->next;
		while (st_txn_next(t, &off, &o) > 0)
			if (apply_op(r, &o, now_ms) < 0)
				log_warn("registry: applying a change from another instance failed op=%d",
					 o.q);
		txn_free(t);
		k++;
	}
	r->generation++;
	log_debug("registry: applied changes from other instances batches=%zu", k);
}

/* Shared back ends: the heartbeats this instance heard since the last flush go
 * to the other instances (they reap only nodes silent everywhere). No table is
 * written: the operation travels in the change feed only. */
void st_flush_seen(registry *r, uint64_t now_ms)
{
	reg_store *st = r->db;
	uint32_t *ids = NULL;
	size_t n = 0, cap = 0;
	uint64_t since;

	if (!st || !st->shared || now_ms < st->last_seen_flush_ms + ST_SEEN_EVERY_MS(r))
		return;
	since = st->last_seen_flush_ms;
	st->last_seen_flush_ms = now_ms;
	for (size_t i = 0; i < r->nodes.cap; i++) {
		reg_node *nd;

		if (!r->nodes.e[i].used)
			continue;
		nd = (reg_node *)(uintptr_t)r->nodes.e[i].val;
		if (!nd->live || nd->last_seen_ms <= since)
			continue;
		if (n == cap) {
			uint32_t *x = realloc(ids, (cap = cap ? cap * 2 : 256) * sizeof(*ids));

			if (!x) {
				free(ids);
				return;
			}
			ids = x;
		}
		ids[n++] = nd->id;
	}
	if (n) {
		st_begin(r);
		op(r, ST_Q_SEEN, 2);
		p_bytes(r, ST_P_BLOB, ids, n * sizeof(*ids));
		p_int(r, (int64_t)now_ms);
		st_commit(r);
	}
	free(ids);
}

/* Shared back ends: the rate-limit tokens this instance took in the last
 * second go to the other instances, which take them too, so a client spreading
 * its requests over n instances gets one budget, not n (a burst can still reach
 * each instance before the feed does: at most n x the burst capacity, once).
 * Feed only, like ST_Q_SEEN: no table is written. At most ST_RL_FLUSH_MAX bytes
 * (about 1200 sources) a second; the rest go in the next. */
#define ST_RL_FLUSH_MAX (64 * 1024)

void st_flush_rl(registry *r)
{
	reg_store *st = r->db;
	uint64_t gen = r->generation;
	uint8_t *buf;
	size_t n;

	if (!st || !st->shared || r->cfg.ratelimit_disabled || !(buf = malloc(ST_RL_FLUSH_MAX)))
		return;
	if ((n = reg_rl_spent(r, buf, ST_RL_FLUSH_MAX))) {
		st_begin(r);
		op(r, ST_Q_RL, 1);
		p_bytes(r, ST_P_BLOB, buf, n);
		st_commit(r);
		r->generation = gen; /* no registry state changed (no snapshot push) */
	}
	free(buf);
}

bool st_db_up(registry *r)
{
	return !r->db || !r->db->be->up || r->db->be->up(r->db->bes);
}

const char *st_backend_name(registry *r)
{
	return r->db ? r->db->be->name : "memory";
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
	op(r, ST_Q_WIPE, 0);
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
