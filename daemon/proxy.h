/* The userspace front ends of pilotd -tun=userspace: a SOCKS5 server (RFC 1928
 * CONNECT, RFC 1929 username/password optional), an HTTP proxy (CONNECT and
 * absolute-form http:// requests) and local port forwards. Each reads its
 * client's request, resolves the target through the node (names, Pilot
 * addresses, mapped IPs; the registry says whether the node may reach it) and
 * hands the socket to the TUN bridge's flow layer (tunbridge_sock_dial).
 *
 * Limits per listener: clients still in their request phase (max_pending),
 * new connections per second per client IP (token bucket), a request-phase
 * deadline; established connections count against the bridge's max_flows. */
#ifndef PILOT_PROXY_H
#define PILOT_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/proxy_parse.h"
#include "daemon/tunbridge.h"
#include "lib/loop.h"

typedef struct proxy proxy;
struct json_object;

enum proxy_kind {
	PROXY_SOCKS5,
	PROXY_HTTP,
	PROXY_FORWARD
};

/* Resolution result: 0 and addr, -EACCES (the node may not reach it: private
 * and untrusted), -ENOENT (no such node or name), or another -errno. */
typedef void (*proxy_resolved_fn)(void *arg, int err, pilot_addr addr);
/* The resolver must call done exactly once; it may do so synchronously. */
typedef void (*proxy_resolve_fn)(void *ctx, const px_target *t, proxy_resolved_fn done, void *arg);

typedef struct proxy_config {
	pilot_loop *loop;
	proxy_resolve_fn resolve;
	/* A dial to a target resolve answered failed (err < 0); NULL = no one cares. */
	void (*dial_failed)(void *ctx, pilot_addr a, int err);
	void *ctx;
	tunbridge *(*bridge)(void *ctx); /* NULL until the node is registered */
	const char *user, *pass;         /* SOCKS5 / HTTP proxy authentication; NULL = none */
	unsigned max_pending;            /* clients in their request phase per listener (64) */
	unsigned rate;                   /* new connections/s per client IP (100; burst 2x) */
	unsigned timeout_ms;             /* request phase (10000) */
} proxy_config;

typedef struct proxy_stats {
	uint64_t accepted, limited, rate_limited, malformed, auth_failed;
	uint64_t not_allowed, unreachable, refused, connected, timeouts;
	uint64_t udp_associations, udp_out, udp_in, udp_dropped;
	uint64_t pending;
} proxy_stats;

proxy *proxy_new(const proxy_config *cfg);
/* Shutdown, first step: close the listeners and the clients still talking;
 * clients whose dial is out end with the bridge (free the bridge, then the
 * registration, then proxy_free). NULL-safe. */
void proxy_close(proxy *p);
void proxy_free(proxy *p); /* NULL-safe */

/* Listen on "host:port" (":port" = loopback). target is the forward's
 * destination ("name:port", "0:0000.0000.0002:port", "10.4.0.2:port") for
 * PROXY_FORWARD, NULL otherwise. Warns when not on loopback without auth.
 * Returns 0 or -errno with err filled. */
int proxy_listen(proxy *p, enum proxy_kind kind, const char *hostport, const char *target, char *err,
		 size_t errlen);
/* Stop the listener on hostport of that kind (established connections stay).
 * 0 or -ENOENT. */
int proxy_unlisten(proxy *p, enum proxy_kind kind, const char *hostport);

void proxy_get_stats(const proxy *p, proxy_stats *st);
/* {"listeners":[{"kind","listen","target"}...], counters...} */
struct json_object *proxy_json(const proxy *p);

#endif
