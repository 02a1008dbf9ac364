/* Webhooks (services.md §9): each event is POSTed as JSON
 * {"event", "node_id", "timestamp" (RFC 3339 with nanoseconds, UTC), "data"} to
 * the configured URL, one event per request, in order.
 *
 * Never blocks the daemon: the HTTP client runs on the loop, non-blocking
 * (connect, TLS handshake, write, read of the status line), one request at a
 * time with a 5 s deadline. The host name is resolved when the URL is set, not
 * per event. Bounded: at most WEBHOOK_QUEUE events wait (newer ones are
 * dropped and counted when full). Retries: a failed delivery (connection
 * error, timeout, status 5xx, 408, 429) is tried again after 0.5, 1, 2, 4 s
 * (WEBHOOK_TRIES attempts), other statuses >= 400 are not retried.
 * -webhook-secret: header X-Pilot-Signature: sha256=<hex HMAC-SHA256(secret,
 * body)>. https:// uses the registry's trust options (-tls-trust, -tls-root;
 * the system store by default).
 *
 * Per-packet events (data.datagram, security.syn_rate_limited,
 * security.nonce_replay) are rate-limited per event before any work is done
 * (WEBHOOK_PKT_RATE per second, burst as many): the ones over the limit are
 * counted (stats suppressed) and the next one delivered carries
 * "suppressed": <how many of that event were not sent since the last one>. So
 * a datagram flood costs a token-bucket check per packet and never fills the
 * queue. */
#ifndef PILOT_DAEMON_WEBHOOK_H
#define PILOT_DAEMON_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "daemon/ctlsrv.h"
#include "daemon/peer.h"
#include "stream/conn.h"

#define WEBHOOK_QUEUE   1024
#define WEBHOOK_TRIES   5
#define WEBHOOK_TIMEOUT_MS 5000
#define WEBHOOK_PKT_RATE   10

struct node;
typedef struct webhook webhook;

webhook *webhook_new(struct node *n);
void webhook_free(webhook *w); /* NULL-safe */
/* url NULL or "" = off (queued events are dropped). 0 or -EINVAL with err. */
int webhook_set(webhook *w, const char *url, char *err, size_t errlen);
/* Queue an event (data consumed, may be NULL). No-op when off. */
void webhook_emit(webhook *w, const char *event, json_object *data);
/* The node's webhook (n->svc), NULL-safe on every level. */
void node_webhook(struct node *n, const char *event, json_object *data);

/* The observers registered with the connection and tunnel tables (ctx = the
 * node): conn.*, data.datagram, security.syn_rate_limited (stream/conn.h
 * events) and tunnel.*, security.nonce_replay (daemon/peer.h events). */
void webhook_conn_event(void *ctx, enum conn_event ev, const conn_event_info *e);
void webhook_peer_event(void *ctx, enum peer_event ev, uint32_t peer_node, const peer_event_info *e);

typedef struct webhook_stats {
	uint64_t queued, delivered, failed, dropped, retries, http_errors;
	uint64_t suppressed; /* per-packet events over their rate limit */
	size_t waiting;
} webhook_stats;
void webhook_get_stats(const webhook *w, webhook_stats *st);

void verb_set_webhook(ctlsrv_reply *r, json_object *args, void *arg);
void verb_clear_webhook(ctlsrv_reply *r, json_object *args, void *arg);

#endif
