/* The registry's TCP (or TLS) server on the event loop, the replication stream it
 * pushes to hot standbys, and the standby's client side of that stream
 * (registry.md §2, §3, §12). The registry itself (registry.h) never sees a socket. */
#ifndef RDV_SERVER_H
#define RDV_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/hostport.h"
#include "lib/loop.h"
#include "rendezvous/registry.h"

typedef struct rdv_server rdv_server;
typedef struct rdv_tls rdv_tls;

typedef struct rdv_server_config {
	const char *addr;              /* "host:port", ":port", "[v6]:port" */
	registry *reg;
	rdv_tls *tls;                  /* NULL = plain TCP */
	const char *replication_token; /* NULL/"" = replication not configured */
	long max_conns;                /* total connections (default 4096) */
	long max_conns_per_ip;         /* per source IPv4 address (default 64) */
	long max_conns_per_v6net;      /* per source IPv6 /64 (default max_conns_per_ip) */
	long max_partial_bytes;        /* input buffers of all connections (default 64 MiB):
	                                * a frame that would grow them past it closes its
	                                * connection */
	int64_t idle_ms;               /* close after this long without a request (5 min) */
	int64_t frame_ms;              /* a started frame must complete within this (10 s) */
} rdv_server_config;

typedef struct rdv_server_stats {
	uint64_t connections;          /* open now */
	uint64_t subscribers;          /* replication streams open now */
	uint64_t accepted, refused;    /* since start; refused = over a connection cap */
	uint64_t refused_per_source;   /* of those: over the per-IPv4 or per-/64 cap */
	uint64_t partial_closed;       /* closed: a partial frame over max_partial_bytes */
	uint64_t in_bytes;             /* input buffer memory held now */
	uint64_t timeouts;             /* closed for idleness or a stalled frame */
	uint64_t bad_frames;           /* oversize length, invalid JSON, not an object */
} rdv_server_stats;

/* Bind and listen on cfg->addr. NULL on failure with a message naming the address. */
rdv_server *rdv_server_new(pilot_loop *l, const rdv_server_config *cfg, char *err, size_t errlen);
/* NULL-safe: closes the listener and every connection. */
void rdv_server_free(rdv_server *s);
void rdv_server_get_stats(const rdv_server *s, rdv_server_stats *st);
/* The bound address as text ("[::]:9000", "127.0.0.1:9000"). */
const char *rdv_server_addr(const rdv_server *s);
/* Tests and the fuzzer: serve fd (connected, non-blocking, e.g. one end of a
 * socketpair) as a client accepted from sa, caps included; fd is the server's now. */
struct sockaddr;
void rdv_server_adopt(rdv_server *s, int fd, const struct sockaddr *sa);

/* The key connections are counted under (issue 12): an IPv4 address (also
 * IPv4-mapped) as ::ffff:a.b.c.d, an IPv6 address as its /64 (the rest zero),
 * as one host usually holds a whole /64. Returns true for an IPv6 /64. */
bool rdv_conn_key(const struct sockaddr *sa, uint8_t key[16]);

/* Listening socket helper shared with the HTTP listener: parses "host:port",
 * ":port" or "[v6]:port"; an empty host binds default_host ("" = every address,
 * IPv6 dual-stack when available). Non-blocking, CLOEXEC, SO_REUSEADDR.
 * Returns the fd, or -errno with a message in err; the bound address text goes
 * to bound (may be NULL). */
int rdv_listen_tcp(const char *addr, const char *default_host, char *bound, size_t boundlen,
		   char *err, size_t errlen);
/* Splitting "host:port": pilot_split_hostport (lib/hostport.h). */

/* ---- standby: follow a primary (registry.md §12) ---- */
typedef struct rdv_standby rdv_standby;

typedef struct rdv_standby_stats {
	uint64_t snapshots;            /* snapshots applied */
	uint64_t connects;             /* connection attempts */
	int connected;                 /* subscribed right now */
} rdv_standby_stats;

/* Connect to primary ("host:port") in the background, subscribe with token, and
 * apply every snapshot to reg; reconnect with backoff 1 s doubling to 30 s.
 * tls (rdv_tls_client_new; borrowed, outlives the standby) = over TLS to a -tls
 * primary, refusing any certificate the context does not trust; NULL = plain TCP. */
rdv_standby *rdv_standby_new(pilot_loop *l, const char *primary, const char *token,
			     rdv_tls *tls, registry *reg, char *err, size_t errlen);
void rdv_standby_free(rdv_standby *s); /* NULL-safe */
void rdv_standby_get_stats(const rdv_standby *s, rdv_standby_stats *st);
/* Tests and the fuzzer: take len bytes as if read from the primary (frames are
 * decoded and applied at once, partial ones kept). 0, or -1 where the reader
 * would drop the connection (bad frame, primary's error, over the size cap). */
int rdv_standby_feed(rdv_standby *s, const uint8_t *buf, size_t len);

#endif
