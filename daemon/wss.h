/* The compat tunnel transport (tunnel.md §11): one WebSocket (wss:// or ws://) to
 * the beacon's bridge carries the whole tunnel when UDP is blocked. Implements the
 * transport vtable of transport.h; libwebsockets driven from the pilot_loop.
 *
 * What the node must know (see also transport_is_relay_only):
 *  - every datagram sent must be a beacon-protocol message (first byte < 0x10):
 *    normally Relay `05 ‖ own ‖ dest ‖ frame`, plus Discover/PunchRequest; the
 *    destination endpoint is ignored for those. A bare tunnel frame (PILT/PILS/
 *    PILK/PILA) is wrapped in Relay here only if its destination is a synthetic
 *    peer endpoint from wss_peer_ep(node); otherwise it is refused (tx_errors);
 *  - every received datagram (normally RelayDeliver `06 ‖ sender ‖ frame`) comes
 *    from the synthetic beacon endpoint wss_beacon_ep() = 192.0.2.2:0, so the peer
 *    layer must use that as "the beacon" in compat mode; local_ep is 192.0.2.1:0;
 *  - while the connection is down (dialling, authenticating, backing off) send
 *    queues nothing and counts tx_notconn: upper layers retransmit. */
#ifndef PILOT_WSS_H
#define PILOT_WSS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/transport.h"

struct pilot_loop;
struct pilot_identity;

#define WSS_DEFAULT_URL   "wss://beacon.pilotprotocol.network/v1/compat"
#define WSS_PROTOCOL      "pilot.v1"
#define WSS_MAX_MSG       65536
#define WSS_URLS_MAX      8

typedef struct wss_config {
	const char *url;                 /* wss://host[:port]/path or ws://...; NULL = default;
					  * several separated by commas: a dial that fails
					  * moves on to the next (one that was up is dialled
					  * again first) */
	uint32_t node;                   /* own node ID (authenticated) */
	const struct pilot_identity *id; /* own Ed25519 identity (copied) */
	const char *tls_root;            /* NULL/"" = system trust; else pinned CA bundle (PEM) */
	const char *proxy;               /* NULL = $HTTPS_PROXY/$https_proxy; "" = none;
					    else "http://[user:pass@]host:port" (HTTP CONNECT) */
	int64_t ping_ms, pong_ms;        /* 0 = 30 s / 10 s */
	int64_t backoff_min_ms, backoff_max_ms; /* 0 = 250 ms / 30 s */
	int64_t dial_ms;                 /* TCP+proxy+TLS+upgrade+auth budget (0 = 20 s) */
} wss_config;

/* NULL on failure (bad URL, unreadable -tls-root, lws set-up) with the reason in
 * err. Dialling starts at once and never stops until transport_close. */
transport *wss_transport_new(struct pilot_loop *loop, const wss_config *cfg,
			     transport_recv_cb cb, void *ctx, char *err, size_t errlen);

typedef struct wss_stats {
	uint64_t dials, auth_ok, auth_failed, disconnects;
	uint64_t tx_notconn;     /* sends refused while not connected (-ENOTCONN) */
	uint64_t tx_oversize;    /* datagrams over WSS_MAX_MSG refused */
	uint64_t ping_timeouts;
	bool connected;          /* authenticated now */
	int64_t backoff_ms;      /* the next re-dial delay */
	uint64_t url_failovers;  /* moves to the next of several URLs */
	bool own_reader;         /* this connection's frames are read and parsed by us, not lws */
	uint64_t own_reader_conns; /* connections that were (the rest: lws held bytes at the upgrade) */
} wss_stats;

/* t must come from wss_transport_new. */
void wss_transport_get_stats(transport *t, wss_stats *st);
bool wss_transport_connected(transport *t);
/* The URL in use (or being dialled). */
const char *wss_transport_url(transport *t);
/* A new own identity (copied) for the next authentication (key rotation); the
 * current connection stays up. */
void wss_transport_set_identity(transport *t, const struct pilot_identity *id);

/* The synthetic endpoints (TEST-NET-1, never routed). */
void wss_beacon_ep(transport_ep *ep);                  /* 192.0.2.2:0 */
void wss_peer_ep(uint32_t node, transport_ep *ep);     /* [2001:db8::<node>]:0 */
/* The node of a wss_peer_ep, or 0. */
uint32_t wss_peer_ep_node(const transport_ep *ep);

/* ---- authentication (pure, tests and fuzzers) ---- */
/* Parse an auth_challenge: nonce = 64 lowercase hex chars, ts a non-negative
 * integer. 0 or -EINVAL. */
int wss_parse_challenge(const char *json, size_t len, char nonce[65], uint64_t *ts);
/* "compat_auth:<node>:<ts>:<nonce>" into out; returns its length or -ENOSPC. */
int wss_auth_string(char *out, size_t cap, uint32_t node, uint64_t ts, const char *nonce);
/* The auth_reply text for the challenge; returns its length or -ENOSPC. */
int wss_auth_reply(char *out, size_t cap, const struct pilot_identity *id, uint32_t node,
		   uint64_t ts, const char *nonce);

/* ---- message reassembly (pure; also the fuzz target) ---- */
/* One received fragment (first/fin as lws reports them) into buf (WSS_MAX_MSG
 * bytes) holding *rx_len bytes: 1 when fin completes a message (*mlen bytes in
 * buf), 0 for more (or a fragment of an oversize message), -1 when fin ends a
 * message over WSS_MAX_MSG (dropped whole, counted; the connection stays). */
int wss_rx_fragment(uint8_t *buf, size_t *rx_len, bool *over, bool first, bool fin,
		    const uint8_t *in, size_t len, size_t *mlen);

/* ---- frames from the server (pure; also the fuzz target) ---- */
typedef struct wss_frame {
	uint8_t opcode; /* 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong */
	bool fin;
	uint64_t len; /* payload bytes after the header */
} wss_frame;
/* The header of one server frame at p (n bytes there, RFC 6455 §5.2): its length
 * (2, 4 or 10) with *f filled, 0 when more bytes are needed, -1 for what a server
 * may not send: RSV bits (no extension is negotiated), a mask, a reserved opcode, a
 * control frame fragmented or over 125 bytes, a 64-bit length with its top bit. */
int wss_frame_parse(const uint8_t *p, size_t n, wss_frame *f);

#endif
