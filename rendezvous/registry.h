/* The registry: node records, keys, hostnames, networks, trust pairs, handshake
 * inboxes (registry.md §4-§10), request handlers, and crash-safe persistence.
 * It knows nothing about sockets: the TCP server (server.c) feeds it decoded
 * requests and writes back what it returns; the beacon (beacon.c) asks it who a
 * node is and who may talk to whom. */
#ifndef RDV_REGISTRY_H
#define RDV_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

typedef struct registry registry;

typedef struct reg_config {
	const char *store_path;     /* SQLite file or postgres:// URL; NULL/"" = in memory only */
	const char *admin_token;    /* gates network admin operations; NULL/"" = none */
	const char *replication_token;
	bool standby;               /* read-only replica: refuse writes */
	bool strict_signatures;     /* refuse reference-format (replayable) signatures */
	int64_t stale_ms;           /* reap nodes silent for longer (default 180000) */
	bool ratelimit_disabled;    /* benchmarks/tests only: no per-source limits */
	long store_queue_max;       /* writes queued for the disk before `busy` (0 = default) */
	bool store_sync_full;       /* synchronous=FULL: fsync every commit (else NORMAL: survive
				     * a crash of the process, not a power cut) */
	int64_t store_fsync_delay_ms; /* tests only: every fsync of the store sleeps this long */
} reg_config;

#define REG_STORE_QUEUE_DEFAULT 4096

/* Who sent a request: the TCP peer as seen by the server. */
typedef struct reg_ctx {
	const char *src_ip;         /* numeric, no brackets (e.g. "198.18.0.2", "::1") */
	uint16_t src_port;
	uint64_t now_ms;            /* wall clock, ms since the epoch */
	/* The connection the request came on: values of an unsigned register of a
	 * known key wait for a request signed by that key on the same connection
	 * (SIGNATURES.md "Proof of possession"). The server gives every TCP
	 * connection its own non-zero id; in-process callers may leave it 0. */
	uint64_t conn;
} reg_ctx;

/* Open (and create or migrate) the store and load it. NULL on failure with a
 * message naming the file in err. */
registry *reg_open(const reg_config *cfg, char *err, size_t errlen);
void reg_close(registry *r); /* NULL-safe; flushes and closes the store */
/* For -n: can reg_open use this store? An existing file must be a readable and
 * writable SQLite database of a schema this program knows (opened read-only,
 * nothing is changed); a missing one needs a writable directory. A postgres://
 * URL must connect, and a schema already there must not be newer than ours.
 * NULL/"" is fine. 0, or -errno with a message naming the store in err. */
int reg_store_check(const char *path, char *err, size_t errlen);
/* "memory", "sqlite" or "postgres": the back end reg_open picks for path. */
const char *reg_store_backend(const char *path);

/* Handle one request object; always returns a response object (an error
 * response for anything invalid) that the caller must json_object_put.
 * subscribe_replication is not handled here (the server owns that stream). */
json_object *reg_handle(registry *r, json_object *req, const reg_ctx *ctx);

/* The connection conn closed: forget what waited for its proof. */
void reg_conn_closed(registry *r, uint64_t conn);

/* Periodic work: reap stale nodes, drop idle rate-limit buckets, expire beacon
 * registrations. Call about once a second. */
void reg_tick(registry *r, uint64_t now_ms);

/* ---- questions the beacon asks ---- */
/* Copy the Ed25519 key of a registered (live or reaped-but-known) node: 0 or -ENOENT. */
int reg_node_key(registry *r, uint32_t node, uint8_t pk[32]);
/* Is the node live (registered and not reaped)? */
bool reg_node_live(registry *r, uint32_t node);
/* The IP the node last registered or heartbeated from (numeric string), or NULL. */
const char *reg_node_src_ip(registry *r, uint32_t node);
/* May a and b exchange traffic/endpoints under the privacy rules: either is
 * public, a trust pair exists, or they share a network other than 0. */
bool reg_may_talk(registry *r, uint32_t a, uint32_t b);
/* Is a request_handshake between a and b (either direction) recorded, not yet
 * answered by respond_handshake and not expired (30 days, the record's lifetime;
 * judged by the wall clock)? The beacon's fourth way to allow a relay. */
bool reg_handshake_pending(registry *r, uint32_t a, uint32_t b);

/* ---- pushing to nodes ---- */
/* Runs after a handshake request or response was committed to node's inbox, so
 * the beacon can tell the node to poll now instead of at its next heartbeat
 * (BEACON.md "Notify"). Never from inside reg_open/reg_apply_snapshot. */
typedef void (*reg_inbox_cb)(void *arg, uint32_t node);
void reg_set_inbox_cb(registry *r, reg_inbox_cb cb, void *arg); /* cb NULL = none */

/* ---- replication (primary → standby) ---- */
/* Full state as a snapshot object in the registry.md §7 schema (caller puts). */
json_object *reg_snapshot(registry *r);
/* Replace the whole state from a snapshot (standby). 0 or -EINVAL. */
int reg_apply_snapshot(registry *r, json_object *snap);
/* Bumped by every persisted change (register, setters, trust, networks, reaping,
 * apply_snapshot; not heartbeats): the server need not rebuild and push a
 * snapshot while it is unchanged (a 100k-node snapshot takes ~1 s to build). */
uint64_t reg_generation(registry *r);

/* ---- durability (asynchronous store) ----
 * A request that changed persistent state leaves reg_write_seq() higher than
 * before reg_handle; its reply must not reach the client before
 * reg_durable_seq() >= that number (and becomes an `internal` error if
 * reg_write_failed()). Without a store both stay 0. A registry without a store
 * never waits; with one, only reg_sync/reg_close wait. */
uint64_t reg_write_seq(registry *r);
uint64_t reg_durable_seq(registry *r);
bool reg_write_failed(registry *r, uint64_t seq);
/* Readable when reg_durable_seq moved (-1 without a store): read it with
 * reg_commit_poll, which returns reg_durable_seq. After handling every reply up
 * to that number, call reg_commit_forget(r, it) to drop remembered failures. */
int reg_commit_fd(registry *r);
uint64_t reg_commit_poll(registry *r);
void reg_commit_forget(registry *r, uint64_t upto);
/* Block until every write handed to the store so far is done: 0, or -EIO if
 * the newest one failed. For tests, benchmarks and shutdown. */
int reg_sync(registry *r);

#define ST_LAT_BUCKETS 12
typedef struct reg_store_stats {
	uint64_t batches, txns, failed;   /* commits, writes in them, writes that failed */
	uint64_t last_batch, max_batch;   /* writes per commit */
	uint64_t queue_depth, queue_max, queue_max_seen, busy;
	double commit_seconds;            /* sum over batches (BEGIN..COMMIT incl. fsync) */
	double last_commit_ms, max_commit_ms;
	double wait_seconds;              /* sum over batches: oldest write queued -> durable */
	uint64_t commit_le[ST_LAT_BUCKETS]; /* cumulative: batches with commit <= bound */
	uint64_t changes;                   /* change batches received from other instances */
	uint64_t conflicts;                 /* writes another instance won (answered busy) */
	double change_lag_last_ms, change_lag_max_ms, change_lag_seconds; /* commit -> delivered */
	bool shared, db_up; /* several instances possible; database answering */
	uint64_t rows_refused; /* rows at load or in others' changes refused or repaired (reg_store.c) */
} reg_store_stats;
extern const double reg_commit_le_ms[ST_LAT_BUCKETS];
void reg_get_store_stats(registry *r, reg_store_stats *st);
/* The failed write seq lost to another instance's (retry: the state has been
 * repaired from the database), rather than failed in the database. */
bool reg_write_conflict(registry *r, uint64_t seq);
/* For /healthz: the back end's name and whether its database answers. */
const char *reg_store_kind(registry *r);
bool reg_store_up(registry *r);

/* ---- metrics ---- */
typedef struct reg_stats {
	uint64_t nodes_total, nodes_online, trust_links, networks;
	uint64_t requests, errors, rate_limited, registrations, deregistrations;
} reg_stats;
void reg_get_stats(registry *r, uint64_t now_ms, reg_stats *st);

#endif
