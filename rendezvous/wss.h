/* The beacon's compat-mode WebSocket bridge (tunnel.md §11): daemons that cannot use
 * UDP keep one WebSocket (behind a TLS-terminating proxy, or TLS here) to this
 * listener, authenticate with their registry Ed25519 key, and then exchange
 * beacon-protocol datagrams as binary messages. Each datagram enters the beacon as
 * coming from the authenticated node (beacon_inject), and the beacon relays to
 * WSS peers first (beacon_set_wss_sink), so UDP and WSS nodes reach each other in
 * all four directions. libwebsockets on the caller's pilot_loop; see wss.c for how. */
#ifndef RDV_WSS_H
#define RDV_WSS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/loop.h"
#include "rendezvous/beacon.h"
#include "rendezvous/registry.h"

#define RDV_WSS_PATH       "/v1/compat"
#define RDV_WSS_PROTOCOL   "pilot.v1"
#define RDV_WSS_MAX_MSG    65536   /* larger messages close the connection (1009) */
#define RDV_WSS_NONCE_HEX  64

typedef struct rdv_wss rdv_wss;

typedef struct rdv_wss_config {
	const char *addr;            /* "host:port", ":port" (all IPv4+IPv6), "[v6]:port" */
	const char *tls_cert;        /* PEM; NULL/"" = plain WS (TLS terminated in front) */
	const char *tls_key;
	registry *reg;               /* node keys for authentication (required) */
	beacon *bcn;                 /* where authenticated datagrams go (required) */
	long max_peers;              /* WebSocket connections; beyond: HTTP 503 (0 = 10000) */
	long rate_burst;             /* connections per source IP in a burst (0 = 20, <0 = off) */
	long rate_per_min;           /* sustained connections per source IP per minute (0 = 60) */
	int64_t auth_ms;             /* whole challenge/reply exchange (0 = 10 s) */
	int64_t idle_ms;             /* no data message and no pong for this long: closed (0 = 90 s);
	                              * a peer quiet for a third of it is pinged */
	long max_queued;             /* send-queue memory of all peers together (0 = 256 MiB);
	                              * each peer also has its own cap (4 MiB, 256 messages) */
} rdv_wss_config;

rdv_wss *rdv_wss_new(pilot_loop *loop, const rdv_wss_config *cfg, char *err, size_t errlen);
/* NULL-safe; closes every connection and detaches from the beacon. */
void rdv_wss_free(rdv_wss *w);
int rdv_wss_port(const rdv_wss *w);

typedef struct rdv_wss_stats {
	uint64_t upgrades;           /* WebSocket upgrades accepted */
	uint64_t refused_full;       /* upgrades answered 503 (max peers) */
	uint64_t refused_rate;       /* connections closed by the per-IP rate limit */
	uint64_t refused_other;      /* wrong path (404), accept/adopt failures */
	uint64_t auth_ok, auth_failed, auth_timeout;
	uint64_t replaced;           /* connections closed because the node reconnected */
	uint64_t idle_closed;        /* closed after idle_ms without a data message */
	uint64_t oversize;           /* closed for a message over RDV_WSS_MAX_MSG */
	uint64_t text_ignored;       /* text/other messages after authentication */
	uint64_t pings_sent, pongs;  /* liveness of quiet peers */
	uint64_t byes;               /* connections the peer ended with a bye message */
	uint64_t frames_in, frames_out, bytes_in, bytes_out;
	uint64_t queue_dropped;      /* messages to a peer whose send queue was full */
	uint64_t queue_dropped_total; /* messages dropped at the global cap (max_queued) */
	uint64_t queued_bytes;       /* send-queue memory of all peers now (gauge) */
	uint64_t peers;              /* authenticated connections now (gauge) */
	uint64_t conns;              /* TCP connections now, any state (gauge) */
} rdv_wss_stats;

void rdv_wss_get_stats(const rdv_wss *w, rdv_wss_stats *st);
/* Prometheus series for /metrics. */
void rdv_wss_metrics(const rdv_wss *w, FILE *out);
/* Tests: pretend s seconds more have passed on the wall clock used for auth ts. */
void rdv_wss_advance_clock(rdv_wss *w, int64_t s);

/* ---- authentication (pure; also the fuzz target) ---- */
/* Registry key of node: 0, or <0 if unknown. */
typedef int (*rdv_wss_keyfn)(void *ctx, uint32_t node, uint8_t pk[32]);
/* The challenge text for nonce (64 lowercase hex) and ts; returns its length. */
int rdv_wss_challenge(char *out, size_t cap, const char *nonce_hex, uint64_t ts);
/* Parse an auth_reply: type "auth_reply", node_id an integer in 1..2^32-1, sig the
 * std base64 of 64 bytes (public_key is ignored). 0 or -EINVAL. */
int rdv_wss_parse_reply(const char *json, size_t len, uint32_t *node, uint8_t sig[64]);
/* Parse, then check ts freshness (now_s - ts <= 30, ts not in the future) and the
 * signature over "compat_auth:<node>:<ts>:<nonce>" under keyfn's key for the node.
 * 0 with *node set, -EINVAL (malformed), -ENOENT (unknown node), -ESTALE, -EBADMSG. */
int rdv_wss_check_reply(const char *json, size_t len, const char *nonce_hex, uint64_t ts,
			uint64_t now_s, rdv_wss_keyfn keyfn, void *kctx, uint32_t *node);
/* A text message {"type":"bye",...} after authentication: the peer leaves (closed
 * with 1000 "bye" at once instead of at the idle limit). */
bool rdv_wss_is_bye(const char *json, size_t len);

/* ---- message reassembly (pure; also the fuzz target) ---- */
enum { RDV_WSS_RX_MORE = 0, RDV_WSS_RX_MSG = 1, RDV_WSS_RX_TOO_BIG = 2 };
/* One received fragment (first/fin as lws reports them) into the reassembly
 * buffer *rx (allocated here, RDV_WSS_MAX_MSG bytes) holding *rx_len bytes:
 * RDV_WSS_RX_MORE (kept), RDV_WSS_RX_MSG with the whole message in *msg, *mlen
 * (in itself for an unfragmented message, else *rx, which the caller frees once
 * done with it), RDV_WSS_RX_TOO_BIG (the message outgrows RDV_WSS_MAX_MSG: the
 * connection is closed), or -ENOMEM. */
int rdv_wss_rx(uint8_t **rx, size_t *rx_len, bool first, bool fin, const uint8_t *in, size_t len,
	       const uint8_t **msg, size_t *mlen);

#endif
