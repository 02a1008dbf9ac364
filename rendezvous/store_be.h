/* The registry store's back-end interface (STORE.md "Back ends").
 *
 * reg_store.c owns everything back-end neutral: encoding a request's rows into
 * a transaction, the bounded queue, sequence numbers, the writer thread, the
 * completion signal, loading rows into the in-memory registry. A back end only
 * opens its database (creating and migrating the schema), runs SELECTs at load
 * and commits batches of transactions on the writer thread:
 *   sqlite  -store FILE                       (store_sqlite.c)
 *   pg      -store postgres://... / -store-url (store_pg.c, libpq)
 * Operations are identified by ST_Q_* ids; each back end maps them to its SQL. */
#ifndef PILOT_RENDEZVOUS_STORE_BE_H
#define PILOT_RENDEZVOUS_STORE_BE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rendezvous/registry.h"

enum {
	ST_Q_META,
	ST_Q_NODE,
	ST_Q_OWNER,
	ST_Q_NET,
	ST_Q_MEM_ADD,
	ST_Q_MEM_DEL,
	ST_Q_PAIR_ADD,
	ST_Q_PAIR_DEL,
	ST_Q_HALF_ADD,
	ST_Q_HALF_DEL,
	ST_Q_REQ_ADD,
	ST_Q_REQ_DEL,
	ST_Q_INBOX_ADD,
	ST_Q_INBOX_CLEAR,
	ST_Q_INBOX_DEL,
	ST_Q_RESP_ADD,
	ST_Q_RESP_DEL,
	ST_Q_RESP_CLEAR,
	ST_Q_INV_ADD,
	ST_Q_INV_DEL,
	ST_Q_NODE_NEW, /* as ST_Q_NODE, for an ID just allocated: must not exist yet */
	ST_Q_SEEN,     /* (ids blob of u32, ms): heartbeats heard; no SQL, other instances only */
	ST_Q_NODE_DEL, /* (id): in memory only, from a repair (the row is not in the database) */
	ST_Q_NET_NEW,  /* as ST_Q_NET, for an ID just allocated: must not exist yet */
	ST_Q_NET_DEL,  /* (id): in memory only, from a repair: forget the network and its members */
	ST_Q_SIG,      /* (signature blob, expiry unix s): a v2 signature a write used; shared back
			* ends insert it under a unique key (a replay to another instance conflicts)
			* and other instances add it to their replay cache; no SQL in SQLite */
	ST_Q_RL,       /* (blob, reg_rl_spent): rate-limit tokens this instance charged; no SQL,
			* other instances charge the same sources (shared budgets) */
	ST_Q_COUNT,
	ST_Q_WIPE = 255 /* delete every row of every table (st_save_all) */
};

/* The schema version both back ends create or migrate to. 1: initial;
 * 2: nodes.relay_only; 3: nodes.flags. */
#define ST_SCHEMA_VERSION 3

enum {
	ST_P_NULL = 0,
	ST_P_INT,
	ST_P_TEXT,
	ST_P_BLOB
};
#define ST_MAX_PARAMS 16

/* One request's changes: [op:u8][nparams:u8] then per parameter [kind:u8] and
 * an int64 (ST_P_INT) or a u32 length and bytes (text, blob); kind 0 is NULL.
 * The encoding is ours (never from the network). */
typedef struct st_txn {
	struct st_txn *next;
	uint64_t seq;
	uint64_t submit_ns;
	uint8_t *buf;
	size_t len, cap;
	bool failed;   /* its commit failed (or, while encoding, out of memory) */
	bool conflict; /* ... because another instance wrote first (-EEXIST) */
	uint64_t dep;  /* a later write of the request whose v2 signature txn `dep` carries
			* (ST_Q_SIG): not committed when that one failed (0 = none) */
} st_txn;

typedef struct st_param {
	int kind;
	int64_t i;
	const void *p; /* text (not NUL-terminated) or blob */
	uint32_t len;
} st_param;

typedef struct st_op {
	int q;
	int n;
	st_param p[ST_MAX_PARAMS];
} st_op;

/* Decode the next operation of t at *off: 1 (decoded, *off advanced), 0 at the
 * end, -1 when malformed. */
int st_txn_next(const st_txn *t, size_t *off, st_op *op);

/* One row of a SELECT at load: column accessors (NULL text/blob = SQL NULL). */
typedef struct st_row st_row;
struct st_row {
	int64_t (*i64)(st_row *row, int col);
	const char *(*text)(st_row *row, int col);
	const void *(*blob)(st_row *row, int col, size_t *len);
	void *impl;
};
typedef int (*st_row_fn)(registry *r, st_row *row, uint64_t now_ms);

/* Changes other instances committed (or a repair after a conflict: the rows
 * this instance failed to write, as the database has them), delivered on a
 * back-end thread: body is an encoded operation list as in st_txn; lag_ms the
 * time from its commit to its delivery. */
typedef void (*st_change_cb)(void *arg, const uint8_t *body, size_t len, double lag_ms);

typedef struct st_backend {
	const char *name;
	bool shared; /* several instances may use one database (changes travel between them) */
	/* Connect, create or migrate the schema, prepare: 0 or -errno with err set. */
	int (*open)(void **be, const char *where, const reg_config *c, char *err, size_t errlen);
	/* Run a SELECT, calling fn per row: 0, -ENOMEM (fn failed) or -EIO. */
	int (*each_row)(void *be, registry *r, const char *sql, st_row_fn fn, uint64_t now_ms);
	/* Writer thread: apply n transactions from t as one database transaction,
	 * all or nothing: 0, -EEXIST (a constraint refused it: another instance
	 * wrote first) or -EIO (rolled back either way). */
	int (*commit)(void *be, const st_txn *t, size_t n);
	const char *(*errmsg)(void *be);
	/* -n: can open() use this database? Reads only. */
	int (*check)(const char *where, char *err, size_t errlen);
	void (*close)(void *be);
	/* shared back ends: start delivering other instances' changes to cb. */
	int (*listen)(void *be, st_change_cb cb, void *arg, char *err, size_t errlen);
	/* 1 when the database answered the last attempt, 0 when not. */
	int (*up)(void *be);
	/* shared back ends: reserve ST_ID_BLOCK node IDs nobody else will use;
	 * *first is the first. 0 or -EIO. Before st_start or on the writer thread. */
	int (*id_block)(void *be, uint32_t *first);
} st_backend;

/* Node IDs come in blocks per instance with a shared back end, so instances
 * that register at the same moment never pick the same ID. */
#define ST_ID_BLOCK 256u

/* Encoding helpers for back ends building bodies (repairs). */
void st_buf_op(st_txn *t, int q, int nparams);
void st_buf_int(st_txn *t, int64_t v);
void st_buf_bytes(st_txn *t, int kind, const void *p, size_t n);

extern const st_backend st_sqlite_backend;
extern const st_backend st_pg_backend;

/* Is `where` a PostgreSQL connection URI (postgres:// or postgresql://)? */
bool st_is_pg_url(const char *where);

#endif
