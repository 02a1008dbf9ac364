/* The daemon's registry connection: one long-lived TCP connection on the event
 * loop carrying strictly sequential request/response pairs (registry.md §2-3),
 * a bounded FIFO of requests, per-request timeouts, reconnect with jittered
 * backoff (0.5 s doubling to 2 s) and one resend of the in-flight request after
 * a connection-level failure (§2.2); an attempt unanswered for
 * attempt_timeout_ms is sent again at once on a fresh connection (until the
 * request's timeout), and a `busy` reply (the registry's write queue is full)
 * is retried after its retry_after_ms plus up to 50 % jitter; and request signing in the reference (v1) or the bound,
 * timestamped v2 format (rendezvous/SIGNATURES.md).
 *
 * Several registries ("a:9000,b:9000", at most REGCLIENT_ADDR_MAX) are tried
 * in turn: a failed connect, an attempt unanswered for attempt_timeout_ms, or a
 * `read_only` reply (a standby, registry.md §12) moves on to the next address,
 * with the same jittered backoff once a whole round has failed. The first
 * reconnect after a lost connection goes to the same address (it may only have
 * restarted). The address stays in use until it fails.
 *
 * Every callback runs from the loop, never from inside regclient_request.
 * NOTE: the host name is resolved with a blocking getaddrinfo() each time a
 * connection is opened (start-up and reconnects only); pass a numeric address
 * where a stall of the loop during DNS resolution matters. */
#ifndef PILOT_REGCLIENT_H
#define PILOT_REGCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "lib/crypto.h"
#include "lib/loop.h"

typedef struct regclient regclient;

#define REGCLIENT_ADDR_MAX 8

/* reply is the response object (borrowed: valid during the call; take a
 * reference to keep it) or NULL on failure. err is 0 for a success response,
 * -EREMOTEIO for an error response (reply has "error", and from our registry
 * "code" and "message"), or with reply NULL: -ETIMEDOUT, -ECONNRESET (or the
 * connect errno) after the one resend also failed, -EPROTO for a bad frame,
 * -EBADMSG for a success reply that lacks what it must carry
 * (regclient_reply_problem; counted in malformed, logged), -ECANCELED when the
 * client is freed. */
typedef void (*regclient_cb)(void *arg, json_object *reply, int err);

/* Transport seam: plain TCP now, TLS later. The client owns the socket (connect,
 * close); a transport wraps an already connected fd. read/write return bytes,
 * 0 for EOF (read), -EAGAIN when the socket would block, or -errno. */
typedef struct regclient_transport {
	const char *name;
	/* Per-connection state for fd; host is the name we dialled (for SNI). */
	int (*open)(void *cfg, int fd, const char *host, void **ctx);
	/* 0 when the handshake is done, -EAGAIN with *want = PILOT_EV_READ/WRITE
	 * to be called again, or -errno. */
	int (*handshake)(void *ctx, int fd, int *want);
	ssize_t (*read)(void *ctx, int fd, void *buf, size_t len);
	ssize_t (*write)(void *ctx, int fd, const void *buf, size_t len);
	void (*close)(void *ctx); /* frees ctx; never closes fd */
} regclient_transport;

extern const regclient_transport regclient_tcp;

/* TLS (regclient_tls.c, OpenSSL; registry.md §2.1). transport_cfg is a
 * regclient_tls_config. roots: NULL-terminated PEM CA files (pinned trust) or
 * NULL; system_roots: the OS store when no roots are given; fingerprint:
 * lowercase hex SHA-256 of the leaf certificate's DER (the reference's pinning:
 * no chain or name check of its own), NULL/"" = none. With neither roots nor a
 * fingerprint the system store is used. The host name (or IP) dialled is checked
 * against the certificate whenever a chain is verified. */
typedef struct regclient_tls_config regclient_tls_config;
extern const regclient_transport regclient_tls;
regclient_tls_config *regclient_tls_config_new(const char *const *roots, bool system_roots,
					       const char *fingerprint, char *err, size_t errlen);
/* A -registry-fingerprint value: 64 lower-case hex digits (SHA-256). */
bool regclient_tls_fingerprint_ok(const char *s);
void regclient_tls_config_free(regclient_tls_config *c); /* NULL-safe; after the client */

typedef struct regclient_config {
	const char *addr;               /* "host:port", "[v6]:port", comma-separated list */
	const pilot_identity *id;       /* signing key; NULL = no signed requests */
	size_t queue_max;               /* requests queued + in flight (default 256) */
	int64_t timeout_ms;             /* from submission to reply (default 10000) */
	int64_t attempt_timeout_ms;     /* one send unanswered this long: resend on a
					 * fresh connection (default 2000, <= timeout_ms) */
	int64_t backoff_min_ms;         /* reconnect delay, doubling (default 500) */
	int64_t backoff_max_ms;         /* cap (default 2000) */
	const regclient_transport *transport; /* NULL = regclient_tcp */
	void *transport_cfg;
	int64_t clock_skew_s;           /* tests: pretend the wall clock is off by this */
	/* Debug/test hook: every request object just before it is written. */
	void (*on_send)(void *arg, json_object *req);
	void *on_send_arg;
	/* Called when a connection comes up again after one was lost (the registry,
	 * and often its beacon, may have restarted). */
	void (*on_reconnect)(void *arg);
	void *on_reconnect_arg;
	/* Called when a connection comes up on another address than the last
	 * one that was up (after on_reconnect); addr is that address. */
	void (*on_switch)(void *arg, const char *addr);
	void *on_switch_arg;
} regclient_config;

/* Upper bounds (microseconds) of the reply-latency histogram buckets; the
 * last bucket of regclient_stats.rtt_le is everything above. */
#define REGCLIENT_RTT_BOUNDS_US { 1000, 2500, 5000, 10000, 25000, 50000, 100000, \
				  250000, 500000, 1000000, 2500000, 5000000, 10000000 }
#define REGCLIENT_RTT_NB 13

typedef struct regclient_stats {
	uint64_t connects;      /* connections established */
	uint64_t connect_fails; /* attempts that did not connect */
	uint64_t sent, replies, errors; /* frames written, replies read, error replies */
	uint64_t resends;       /* in-flight requests sent again after a reconnect */
	uint64_t timeouts;
	uint64_t retries;       /* attempts unanswered in attempt_timeout_ms, sent again */
	uint64_t busy;          /* busy replies, sent again after the registry's hint */
	uint64_t resigned;      /* signed requests sent again after replayed_signature */
	uint64_t failovers;     /* moves to the next configured address */
	uint64_t malformed;     /* success replies refused (regclient_reply_problem) */
	size_t in_use;          /* index of the address last connected */
	int connected;
	size_t queued;          /* pending requests, including the one in flight */
	/* request written -> reply read, per bucket (not cumulative), + over the last bound */
	uint64_t rtt_le[REGCLIENT_RTT_NB + 1];
	uint64_t rtt_sum_us;
} regclient_stats;

/* Copies cfg (strings too; id is borrowed and must outlive the client). Does
 * not connect until the first request. NULL with a message in err. */
regclient *regclient_new(pilot_loop *l, const regclient_config *cfg, char *err, size_t errlen);
/* NULL-safe. Pending callbacks get (NULL, -ECANCELED) first. Safe to call from
 * inside a callback (the free completes when the callback returns). */
void regclient_free(regclient *c);

/* Queue req (the client takes the caller's reference, also on failure).
 * 0, or -ENOBUFS when the queue is full, -EINVAL, -ESHUTDOWN while freeing. */
int regclient_request(regclient *c, json_object *req, regclient_cb cb, void *arg);
/* Like regclient_request, but the request is signed (regclient_sign with
 * fields) each time it is written, so a resend carries a fresh v2 signature
 * (the registry refuses a replayed one). -ENOKEY without an identity. */
int regclient_request_signed(regclient *c, json_object *req, const char *fields,
			     regclient_cb cb, void *arg);

/* Add "signature" (and "sig_ts" for v2) to req now. fields are the v2 fields of
 * SIGNATURES.md for req's "type" (e.g. "7:true" for set_visibility); the v1
 * reference challenge is derived from the type and the same fields (e.g.
 * request_handshake -> "handshake:<from>:<to>"). v2 is used once the server
 * advertised "sig_v2" in register_ok (or regclient_set_sig_v2). 0, -ENOKEY,
 * -EINVAL (no type, or a type with no v1 form while v1 is in use), -ENOMEM. */
int regclient_sign(regclient *c, json_object *req, const char *fields);

/* v2 signing switch; register_ok sets it from "sig_v2" automatically. */
void regclient_set_sig_v2(regclient *c, bool on);
bool regclient_sig_v2(const regclient *c);
/* Server clock minus ours in seconds, learnt from the "time" of register_ok and
 * heartbeat_ok (and a stale_signature message); added to every sig_ts. */
int64_t regclient_clock_offset(const regclient *c);
/* Our estimate of the server's Unix time in seconds. */
int64_t regclient_server_now(const regclient *c);

void regclient_get_stats(const regclient *c, regclient_stats *st);
/* The address in use (or being tried) as configured, and how many there are. */
const char *regclient_addr(const regclient *c);
size_t regclient_naddr(const regclient *c);

/* Why reply cannot be the success answer to req, or NULL when it can: its
 * "type" must be req's type + "_ok", and what callers take from it must be
 * there (register_ok: a node_id other than 0 and broadcast, and if it names
 * an address or a key, that node's address and our key; lookup_ok / resolve_ok / rotate_key_ok:
 * the node_id asked about, with public_key / real_addr; resolve_hostname_ok:
 * a valid node_id; poll_handshakes_ok: arrays). */
const char *regclient_reply_problem(json_object *req, json_object *reply);

/* The v1 challenge keyword for a request type ("request_handshake" ->
 * "handshake"), or NULL when the type has no v1 signature (register). */
const char *regclient_v1_keyword(const char *type);

#endif
