/* The compat tunnel transport: one WebSocket to the beacon (tunnel.md §11).
 *
 * libwebsockets on the pilot_loop. Debian's lws 4.1 has neither external-poll
 * callbacks (LWS_WITH_EXTERNAL_POLL is off, ADD/DEL/CHANGE_MODE_POLL_FD compiled
 * out) nor the custom event-loop API (lws 4.3), so lws keeps its own poll() set and
 * we drive it without blocking: the one connection's socket (lws_get_socket_fd,
 * re-read after every service) is watched by the pilot_loop for READ, plus WRITE
 * while the TCP connect is in progress or output/ping/close is pending; any event
 * schedules a zero-delay loop timer that runs lws_service(ctx, -1) — in this lws
 * version a poll() with a 0 ms timeout over its own set, never blocking — and a
 * 100 ms tick services lws's own timers. One caveat: lws resolves the beacon's
 * host name with a blocking getaddrinfo inside lws_client_connect_via_info (no
 * async DNS in this build), once per dial; use a numeric address or /etc/hosts
 * where that matters.
 *
 * State: IDLE (backing off) → DIAL (TCP/proxy/TLS/upgrade) → AUTH (challenge,
 * reply) → READY (auth_ok). A lost connection or failed dial re-dials after the
 * backoff: 250 ms, doubling per failure up to 30 s, ±25 % jitter, back to 250 ms
 * after an authenticated connection. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "daemon/wss.h"
#include "lib/crypto.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/lwsloop.h"
#include "lib/proto.h"

#define WSS_QN       256
#define WSS_QBYTES   (4u << 20)
#define WSS_TICK_MS  100
#define WSS_RXSLOT   (TRANSPORT_HEADROOM + WSS_MAX_MSG + 64)
#define WSS_SMALL    2048 /* queued messages up to this reuse buffers: no malloc per packet */
#define WSS_RXBUF    16384 /* lws reads this much at a time */
#define WSS_BATCH    16000 /* framed messages per raw write: one TLS record (<= 16384) */
#define WSS_PENDING  16    /* services per event while TLS holds decrypted bytes */
#define WSS_MASKPOOL 512   /* mask-key bytes drawn at a time (128 frames) */
#define WSS_RB       (WSS_MAX_MSG + PILOT_WS_HDR_MAX + WSS_RXBUF) /* own reads: a whole frame + a read */
#define WSS_READS    16 /* own reads per event (then the loop's other fds) */

enum cstate { C_IDLE = 0, C_DIAL, C_AUTH, C_READY };

typedef struct cmsg {
	uint8_t *buf;   /* LWS_PRE headroom, then len bytes */
	size_t len;
	bool text;
	bool small;     /* a WSS_SMALL buffer: back to the spare stack when sent */
} cmsg;

typedef struct wss {
	transport base;
	pilot_loop *loop;
	pilot_lws lw;             /* lw.ctx: the lws context (lib/lwsloop.h) */
	struct lws *wsi;
	enum cstate state;
	bool tls, closing, ping_due, pong_wait;
	int fd, mask;
	char host[256], hosthdr[272], path[256];
	int port;
	char urls[WSS_URLS_MAX][512]; /* several: failover in turn (issue 16/18) */
	unsigned nurls, url_i;
	uint32_t node;
	pilot_identity id;
	int64_t ping_ms, pong_ms, bo_min, bo_max, dial_ms, backoff;
	uint64_t tick_timer, redial_timer, dial_timer, ping_timer, pong_timer;
	int close_code;
	const char *close_reason;
	uint8_t *rx;           /* WSS_RXSLOT: headroom, message, tail room */
	size_t rx_len;
	bool rx_bin, rx_over;
	cmsg q[WSS_QN];
	unsigned qh, qn;
	uint8_t *spare[WSS_QN]; /* free LWS_PRE + WSS_SMALL buffers */
	unsigned nspare;
	uint8_t *batch; /* LWS_PRE + WSS_BATCH: queued messages framed for one write */
	size_t qbytes;
	bool wwait;           /* a flush made no progress: wait for POLLOUT (lws's state) */
	bool in_service;      /* inside service_fd: on_fd flushes after it */
	uint64_t flush_timer; /* zero-delay flush of what was sent outside a service */
	uint64_t npop;        /* messages taken off the queue, ever */
	/* RFC 6455 §5.3 mask keys: a ChaCha20 keystream under a random key (no
	 * getrandom per write) */
	uint8_t mkey[crypto_stream_chacha20_KEYBYTES];
	uint64_t mctr;
	uint8_t mpool[WSS_MASKPOOL];
	unsigned mpos;
	/* Own reads (see own_read): once the WebSocket is up and lws holds no bytes
	 * of it, frames are read (SSL_read / recv) and parsed here, not by lws 4.1's
	 * client parser, which takes every byte through a function call. */
	bool own_rx;
	bool own_later;  /* lws held bytes at the upgrade: try again after the challenge */
	bool challenged; /* the challenge was answered (this connection) */
	bool rx_open;    /* a fragmented message is in progress */
	uint8_t *rb;     /* WSS_RB: stream bytes read, not yet parsed */
	size_t rb_len;
	uint64_t rb_skip;    /* payload bytes of an oversize frame still to discard */
	uint64_t read_timer; /* zero-delay: own_read again (TLS bytes pending, read cap) */
	transport_stats st;
	wss_stats ws;
} wss;

static void dial(wss *c);

/* ---- authentication (pure) ------------------------------------------------------- */

int wss_auth_string(char *out, size_t cap, uint32_t node, uint64_t ts, const char *nonce)
{
	int n = snprintf(out, cap, "compat_auth:%" PRIu32 ":%" PRIu64 ":%s", node, ts, nonce);

	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int wss_auth_reply(char *out, size_t cap, const pilot_identity *id, uint32_t node,
		   uint64_t ts, const char *nonce)
{
	char msg[128], pk64[64], sig64[96];
	uint8_t sig[PROTO_SIG_LEN];
	int n = wss_auth_string(msg, sizeof(msg), node, ts, nonce);

	if (n < 0)
		return n;
	pilot_ed25519_sign(id, msg, (size_t)n, sig);
	pilot_b64_encode(id->pk, PROTO_ED25519_LEN, pk64, sizeof(pk64));
	pilot_b64_encode(sig, sizeof(sig), sig64, sizeof(sig64));
	n = snprintf(out, cap, "{\"type\":\"auth_reply\",\"node_id\":%" PRIu32
		     ",\"public_key\":\"%s\",\"sig\":\"%s\"}", node, pk64, sig64);
	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int wss_parse_challenge(const char *json, size_t len, char nonce[65], uint64_t *ts)
{
	json_tokener *tok;
	json_object *o, *v;
	const char *s;
	int rc = -EINVAL;

	if (len == 0 || len > 4096 || !(tok = json_tokener_new()))
		return -EINVAL;
	o = json_tokener_parse_ex(tok, json, (int)len);
	json_tokener_free(tok);
	if (!o || !json_object_is_type(o, json_type_object))
		goto out;
	if (!json_object_object_get_ex(o, "type", &v) || !json_object_is_type(v, json_type_string)
	    || strcmp(json_object_get_string(v), "auth_challenge") != 0)
		goto out;
	if (!json_object_object_get_ex(o, "nonce", &v) || !json_object_is_type(v, json_type_string)
	    || strlen(s = json_object_get_string(v)) != 64 || strspn(s, "0123456789abcdef") != 64)
		goto out;
	memcpy(nonce, s, 65);
	if (!json_object_object_get_ex(o, "ts", &v) || !json_object_is_type(v, json_type_int)
	    || json_object_get_int64(v) < 0)
		goto out;
	*ts = (uint64_t)json_object_get_int64(v);
	rc = 0;
out:
	json_object_put(o);
	return rc;
}

static bool is_auth_ok(const uint8_t *msg, size_t len)
{
	json_tokener *tok = len <= 4096 ? json_tokener_new() : NULL;
	json_object *o, *v;
	bool ok;

	if (!tok)
		return false;
	o = json_tokener_parse_ex(tok, (const char *)msg, (int)len);
	json_tokener_free(tok);
	ok = o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "type", &v)
	     && json_object_is_type(v, json_type_string) && !strcmp(json_object_get_string(v), "auth_ok");
	json_object_put(o);
	return ok;
}

/* ---- synthetic endpoints ------------------------------------------------------------ */

void wss_beacon_ep(transport_ep *ep)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ep->ss;

	memset(ep, 0, sizeof(*ep));
	v4->sin_family = AF_INET;
	v4->sin_addr.s_addr = htonl(0xC0000202); /* 192.0.2.2 */
	ep->len = sizeof(*v4);
}

static void local_ep_of(transport_ep *ep)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ep->ss;

	memset(ep, 0, sizeof(*ep));
	v4->sin_family = AF_INET;
	v4->sin_addr.s_addr = htonl(0xC0000201); /* 192.0.2.1 */
	ep->len = sizeof(*v4);
}

static const uint8_t peer_prefix[12] = { 0x20, 0x01, 0x0d, 0xb8 };

void wss_peer_ep(uint32_t node, transport_ep *ep)
{
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ep->ss;

	memset(ep, 0, sizeof(*ep));
	v6->sin6_family = AF_INET6;
	memcpy(v6->sin6_addr.s6_addr, peer_prefix, sizeof(peer_prefix));
	proto_put32(v6->sin6_addr.s6_addr + 12, node);
	ep->len = sizeof(*v6);
}

uint32_t wss_peer_ep_node(const transport_ep *ep)
{
	const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&ep->ss;

	if (ep->ss.ss_family != AF_INET6 || v6->sin6_port != 0
	    || memcmp(v6->sin6_addr.s6_addr, peer_prefix, sizeof(peer_prefix)) != 0)
		return 0;
	return proto_get32(v6->sin6_addr.s6_addr + 12);
}

/* ---- loop plumbing ---------------------------------------------------------------------- */

static void kick(wss *c)
{
	pilot_lws_kick(&c->lw);
}

static void fd_sync(wss *c);
static void own_read(wss *c);
static void own_retry(wss *c);

/* Once the WebSocket is up (auth or ready) an event services just its socket
 * with the events epoll saw (no poll() over lws's set, no zero-delay timer), and
 * again while TLS holds decrypted bytes no fd event will announce. Before that
 * (TCP connect, proxy, TLS and HTTP upgrade) lws is serviced as a whole. */
static void service_fd(wss *c, int events)
{
	bool was = c->in_service;

	c->in_service = true;
	for (int i = 0; i < WSS_PENDING; i++) {
		if (pilot_lws_service_fd(c->lw.ctx, c->fd, events) || !c->wsi || c->own_rx ||
		    !pilot_lws_tls_pending(c->wsi))
			break;
		events = PILOT_EV_READ;
	}
	c->in_service = was;
	own_retry(c);
	fd_sync(c);
	if (c->wsi && !c->own_rx && pilot_lws_tls_pending(c->wsi))
		kick(c);
}

static void wss_flush(transport *t);

static void on_fd(pilot_loop *l, int fd, int events, void *arg)
{
	wss *c = arg;

	if (fd == c->fd && c->wsi && c->state >= C_AUTH) {
		if (c->own_rx && (events & (PILOT_EV_READ | PILOT_EV_ERROR)))
			own_read(c);
		if (c->wsi && (!c->own_rx || (events & PILOT_EV_WRITE)))
			service_fd(c, c->own_rx ? PILOT_EV_WRITE : events);
		wss_flush(&c->base); /* what the received messages' handling sent */
	} else {
		kick(c);
	}
}

static int64_t flush_timer_cb(pilot_loop *l, uint64_t id, void *arg)
{
	wss *c = arg;

	c->flush_timer = 0;
	wss_flush(&c->base);
	return 0;
}

/* Queued outside a service: written from a zero-delay timer (after this loop
 * iteration's events) or the owner's flush before the loop sleeps, whichever
 * comes first; inside one, on_fd flushes after it. */
static void flush_soon(wss *c)
{
	if (!c->in_service && !c->flush_timer)
		c->flush_timer = pilot_loop_add_timer(c->loop, 0, flush_timer_cb, c);
}

static bool tcp_connecting(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	return getpeername(fd, (struct sockaddr *)&ss, &sl) < 0;
}

/* Follow the connection's socket and what we need from it. */
static void fd_sync(wss *c)
{
	int fd = c->wsi ? lws_get_socket_fd(c->wsi) : -1, want = PILOT_EV_READ;

	if (fd != c->fd) {
		if (c->fd >= 0)
			pilot_loop_del_fd(c->loop, c->fd);
		c->fd = -1;
		c->mask = 0;
		if (fd >= 0 && pilot_loop_add_fd(c->loop, fd, PILOT_EV_READ, on_fd, c) == 0) {
			c->fd = fd;
			c->mask = PILOT_EV_READ;
			/* small packets, one per message: no Nagle (also behind a proxy) */
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
		}
	}
	if (c->fd < 0)
		return;
	/* The queue itself needs no WRITE interest: wss_flush writes it before the
	 * loop sleeps; only a write lws could not finish (or a flush that made no
	 * progress), a ping or a close waits for the socket. */
	if (!c->qn)
		c->wwait = false;
	if ((c->qn && (c->wwait || c->state < C_AUTH)) || c->close_code || c->ping_due ||
	    lws_partial_buffered(c->wsi) || (c->state == C_DIAL && tcp_connecting(c->fd)))
		want |= PILOT_EV_WRITE;
	if (want != c->mask && pilot_loop_mod_fd(c->loop, c->fd, want) == 0)
		c->mask = want;
}

static void service(wss *c)
{
	pilot_lws_service(&c->lw); /* then fd_sync */
}

static void after_service(void *arg)
{
	own_retry(arg);
	fd_sync(arg);
}

static void del_timer(wss *c, uint64_t *t)
{
	if (*t)
		pilot_loop_del_timer(c->loop, *t);
	*t = 0;
}

/* ---- queue ------------------------------------------------------------------------------- */

static int q_push(wss *c, const uint8_t *hdr, size_t hlen, const uint8_t *data, size_t len, bool text)
{
	cmsg *m;

	if (c->qn == WSS_QN || c->qbytes + hlen + len > WSS_QBYTES)
		return -ENOBUFS;
	m = &c->q[(c->qh + c->qn) % WSS_QN];
	m->small = hlen + len <= WSS_SMALL;
	if (m->small && c->nspare)
		m->buf = c->spare[--c->nspare];
	else if (!(m->buf = malloc(LWS_PRE + (m->small ? WSS_SMALL : hlen + len))))
		return -ENOMEM;
	if (hlen)
		memcpy(m->buf + LWS_PRE, hdr, hlen);
	memcpy(m->buf + LWS_PRE + hlen, data, len);
	m->len = hlen + len;
	m->text = text;
	c->qn++;
	c->qbytes += m->len;
	return 0;
}

static void q_pop(wss *c)
{
	cmsg *m = &c->q[c->qh];

	c->qbytes -= m->len;
	if (m->small && c->nspare < WSS_QN)
		c->spare[c->nspare++] = m->buf;
	else
		free(m->buf);
	m->buf = NULL;
	c->qh = (c->qh + 1) % WSS_QN;
	c->qn--;
	c->npop++;
}

static void q_clear(wss *c)
{
	while (c->qn)
		q_pop(c);
}

static void want_write(wss *c)
{
	if (c->wsi)
		lws_callback_on_writable(c->wsi);
	if (c->qn)
		flush_soon(c);
	fd_sync(c);
}

/* ---- connection life ---------------------------------------------------------------------- */

static int64_t redial_cb(pilot_loop *l, uint64_t id, void *arg)
{
	wss *c = arg;

	c->redial_timer = 0;
	dial(c);
	return 0;
}

static int64_t jitter(int64_t ms)
{
	return ms * (750 + (int64_t)randombytes_uniform(501)) / 1000;
}

/* The connection is gone (or never came): schedule the next dial. Idempotent. */
static int parse_url(wss *c, const char *url);

/* A dial that failed (not a connection that was up and dropped: that one is
 * dialled again first, it may only have restarted) moves on to the next URL. */
static void next_url(wss *c, const char *why)
{
	unsigned from = c->url_i;

	if (c->nurls < 2)
		return;
	c->url_i = (c->url_i + 1) % c->nurls;
	if (parse_url(c, c->urls[c->url_i]) < 0) /* checked at start */
		return;
	c->ws.url_failovers++;
	log_warn("compat: beacon failover from=%s to=%s reason=\"%s\"", c->urls[from], c->urls[c->url_i],
		 why);
}

static void lost(wss *c, const char *why)
{
	int64_t delay;

	if (c->state == C_IDLE)
		return;
	if (c->state == C_READY)
		c->ws.disconnects++;
	else
		next_url(c, why);
	log_info("compat: connection to the beacon lost host=%s reason=\"%s\"", c->host, why);
	c->state = C_IDLE;
	c->ws.connected = false;
	c->ping_due = c->pong_wait = false;
	c->close_code = 0;
	c->rx_len = 0;
	c->own_rx = c->rx_open = c->own_later = c->challenged = false;
	c->rb_len = 0;
	c->rb_skip = 0;
	q_clear(c);
	del_timer(c, &c->dial_timer);
	del_timer(c, &c->ping_timer);
	del_timer(c, &c->pong_timer);
	if (c->closing)
		return;
	delay = jitter(c->backoff);
	c->backoff = c->backoff * 2 > c->bo_max ? c->bo_max : c->backoff * 2;
	c->ws.backoff_ms = c->backoff;
	c->redial_timer = pilot_loop_add_timer(c->loop, delay, redial_cb, c);
}

/* Ask lws to close: a close frame from the next WRITEABLE, and a hard kill 2 s
 * later in case the peer never lets us write. */
static void close_conn(wss *c, int code, const char *reason)
{
	if (!c->wsi || c->close_code)
		return;
	c->close_code = code;
	c->close_reason = reason;
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 2);
	want_write(c);
	kick(c);
}

static int64_t dial_timeout_cb(pilot_loop *l, uint64_t id, void *arg)
{
	wss *c = arg;

	c->dial_timer = 0;
	if (c->state == C_READY)
		return 0;
	log_info("compat: dial budget exceeded host=%s", c->host);
	if (c->wsi)
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	else
		lost(c, "dial timeout");
	kick(c);
	return 0;
}

static int64_t pong_timeout_cb(pilot_loop *l, uint64_t id, void *arg)
{
	wss *c = arg;

	c->pong_timer = 0;
	if (c->pong_wait) {
		c->ws.ping_timeouts++;
		close_conn(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "idle ping timeout");
	}
	return 0;
}

static int64_t ping_cb(pilot_loop *l, uint64_t id, void *arg)
{
	wss *c = arg;

	if (c->state != C_READY) {
		c->ping_timer = 0;
		return 0;
	}
	c->ping_due = true;
	want_write(c);
	return c->ping_ms;
}

static void dial(wss *c)
{
	struct lws_client_connect_info ci;

	memset(&ci, 0, sizeof(ci));
	ci.context = c->lw.ctx;
	ci.address = c->host;
	ci.port = c->port;
	ci.path = c->path;
	ci.host = c->hosthdr;
	ci.origin = NULL; /* no Origin header: the reference client sends none */
	ci.protocol = WSS_PROTOCOL;
	ci.ssl_connection = c->tls ? LCCSCF_USE_SSL : 0;
	ci.opaque_user_data = c;
	ci.pwsi = &c->wsi;
	c->state = C_DIAL;
	c->ws.dials++;
	c->dial_timer = pilot_loop_add_timer(c->loop, c->dial_ms, dial_timeout_cb, c);
	if (!lws_client_connect_via_info(&ci)) {
		c->wsi = NULL;
		lost(c, "cannot start the connection");
		return;
	}
	fd_sync(c);
	kick(c);
}

static void on_auth_done(wss *c)
{
	c->state = C_READY;
	c->ws.auth_ok++;
	c->ws.connected = true;
	c->backoff = c->bo_min;
	c->ws.backoff_ms = c->backoff;
	del_timer(c, &c->dial_timer);
	c->ping_timer = pilot_loop_add_timer(c->loop, c->ping_ms, ping_cb, c);
	log_info("compat: connected to the beacon host=%s node=%" PRIu32, c->host, c->node);
}

static int auth_fail(wss *c, struct lws *wsi, const char *why)
{
	c->ws.auth_failed++;
	log_warn("compat: beacon authentication failed host=%s reason=\"%s\"", c->host, why);
	lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)"auth failed", 11);
	return -1;
}

static int on_message(wss *c, struct lws *wsi, uint8_t *msg, size_t len, bool bin)
{
	char reply[512], nonce[65];
	uint64_t ts;
	transport_dgram d;
	int n;

	if (c->state == C_AUTH) {
		if (!bin && is_auth_ok(msg, len)) {
			on_auth_done(c);
			return 0;
		}
		if (bin || wss_parse_challenge((const char *)msg, len, nonce, &ts) < 0)
			return auth_fail(c, wsi, bin ? "binary message before auth_ok" : "unexpected auth message");
		if ((n = wss_auth_reply(reply, sizeof(reply), &c->id, c->node, ts, nonce)) < 0
		    || q_push(c, NULL, 0, (const uint8_t *)reply, (size_t)n, true) < 0)
			return auth_fail(c, wsi, "cannot build the reply");
		c->challenged = true;
		want_write(c);
		return 0;
	}
	if (c->state != C_READY || !bin)
		return 0; /* text after auth: reserved, ignored */
	d.data = msg;
	d.len = len;
	d.cap = WSS_RXSLOT - TRANSPORT_HEADROOM;
	wss_beacon_ep(&d.ep);
	c->st.rx_dgrams++;
	c->st.rx_bytes += len;
	if (c->base.on_recv)
		c->base.on_recv(c->base.ctx, &d, 1);
	return 0;
}

int wss_rx_fragment(uint8_t *buf, size_t *rx_len, bool *over, bool first, bool fin,
		    const uint8_t *in, size_t len, size_t *mlen)
{
	if (first) {
		*rx_len = 0;
		*over = false;
	}
	if (*over || *rx_len + len > WSS_MAX_MSG) {
		*over = true; /* drop the whole message, keep the connection */
		return fin ? -1 : 0;
	}
	if (len)
		memcpy(buf + *rx_len, in, len);
	*rx_len += len;
	if (!fin)
		return 0;
	*mlen = *rx_len;
	*rx_len = 0;
	return 1;
}

static int on_receive(wss *c, struct lws *wsi, const uint8_t *in, size_t len)
{
	uint8_t *buf = c->rx + TRANSPORT_HEADROOM;
	size_t mlen = 0;
	int r;

	if (lws_is_first_fragment(wsi))
		c->rx_bin = lws_frame_is_binary(wsi);
	r = wss_rx_fragment(buf, &c->rx_len, &c->rx_over, lws_is_first_fragment(wsi),
			    lws_is_final_fragment(wsi), in, len, &mlen);
	if (r < 0)
		c->st.rx_errors++;
	if (r <= 0)
		return 0;
	return on_message(c, wsi, buf, mlen, c->rx_bin);
}

int wss_frame_parse(const uint8_t *p, size_t n, wss_frame *f)
{
	uint64_t len;
	int h = 2;

	if (n < 2)
		return 0;
	f->fin = p[0] & 0x80;
	f->opcode = p[0] & 0x0f;
	if ((p[0] & 0x70) || (p[1] & 0x80) || (f->opcode > 2 && f->opcode < 8) || f->opcode > 10)
		return -1;
	len = p[1] & 0x7f;
	if ((f->opcode & 8) && (!f->fin || len > 125))
		return -1;
	if (len == 126) {
		if (n < 4)
			return 0;
		len = (uint64_t)p[2] << 8 | p[3];
		h = 4;
	} else if (len == 127) {
		if (n < 10)
			return 0;
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | p[2 + i];
		if (len >> 63)
			return -1;
		h = 10;
	}
	f->len = len;
	return h;
}

/* Up to len stream bytes into buf: > 0, 0 = nothing now, -1 = closed or failed. */
static ssize_t own_recv(wss *c, uint8_t *buf, size_t len)
{
	SSL *ssl = lws_get_ssl(c->wsi);
	ssize_t n;

	if (ssl) {
		int r;

		ERR_clear_error();
		r = SSL_read(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
		if (r > 0)
			return r;
		r = SSL_get_error(ssl, r);
		return r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE ? 0 : -1;
	}
	n = recv(c->fd, buf, len, 0);
	if (n > 0)
		return n;
	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
}

/* The connection is unusable: lws drops it now (its callbacks run lost()). */
static void own_kill(wss *c, const char *why)
{
	log_info("compat: beacon connection ended host=%s reason=\"%s\"", c->host, why);
	c->own_rx = false; /* nothing more is read */
	c->rb_len = 0;
	if (c->wsi)
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	kick(c);
}

/* One whole frame (payload at pl). 0, or -1 when the connection is to end. */
static int own_frame(wss *c, const wss_frame *f, const uint8_t *pl)
{
	uint8_t pong[LWS_PRE + 125];
	size_t mlen = 0;
	bool first = f->opcode != 0;
	int r;

	switch (f->opcode) {
	case 0:
	case 1:
	case 2:
		/* RFC 6455 §5.4: a continuation only inside a message, a new one only
		 * after the last ended */
		if (first == c->rx_open)
			return -1;
		c->rx_open = !f->fin;
		if (first)
			c->rx_bin = f->opcode == 2;
		r = wss_rx_fragment(c->rx + TRANSPORT_HEADROOM, &c->rx_len, &c->rx_over, first, f->fin, pl,
				    (size_t)f->len, &mlen);
		if (r < 0)
			c->st.rx_errors++;
		if (r <= 0)
			return 0;
		if (on_message(c, c->wsi, c->rx + TRANSPORT_HEADROOM, mlen, c->rx_bin) < 0) {
			close_conn(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "auth failed");
			c->own_rx = false;
		}
		return 0;
	case 8: /* close: answered with ours, then lws drops the connection */
		close_conn(c, LWS_CLOSE_STATUS_NORMAL, "");
		c->own_rx = false;
		return 0;
	case 9: /* ping: a pong with the same payload */
		memcpy(pong + LWS_PRE, pl, (size_t)f->len);
		if (lws_write(c->wsi, pong + LWS_PRE, (size_t)f->len, LWS_WRITE_PONG) < 0)
			return -1;
		return 0;
	default: /* 10, pong */
		c->pong_wait = false;
		del_timer(c, &c->pong_timer);
		return 0;
	}
}

/* Frames from the start of rb: whole ones are handled, a partial one stays (the
 * buffer holds any frame up to WSS_MAX_MSG), an oversize frame's payload is
 * discarded as it comes (its message is dropped, the connection stays, as
 * wss_rx_fragment does). 0, or -1 for a protocol error or an end. */
static int own_parse(wss *c)
{
	size_t off = 0;
	int rc = 0;

	while (off < c->rb_len && c->own_rx) {
		wss_frame f;
		int h;

		if (c->rb_skip) {
			size_t k = c->rb_len - off < c->rb_skip ? c->rb_len - off : (size_t)c->rb_skip;

			c->rb_skip -= k;
			off += k;
			continue;
		}
		if ((h = wss_frame_parse(c->rb + off, c->rb_len - off, &f)) <= 0) {
			rc = h;
			break;
		}
		if (f.len > WSS_MAX_MSG) { /* a data frame (control ones are <= 125) */
			if ((f.opcode != 0) == c->rx_open) {
				rc = -1;
				break;
			}
			c->rx_open = !f.fin;
			c->rx_over = true;
			c->rx_len = 0;
			if (f.fin)
				c->st.rx_errors++;
			c->rb_skip = f.len;
			off += (size_t)h;
			continue;
		}
		if (c->rb_len - off < (size_t)h + f.len)
			break;
		if (own_frame(c, &f, c->rb + off + h) < 0) {
			rc = -1;
			break;
		}
		off += (size_t)h + (size_t)f.len;
	}
	if (!c->own_rx || rc < 0) {
		c->rb_len = 0;
		return rc;
	}
	memmove(c->rb, c->rb + off, c->rb_len - off);
	c->rb_len -= off;
	return 0;
}

/* Readable (or TLS bytes pending): read and parse until nothing more comes now,
 * WSS_READS reads at most per event (the loop's level-triggered epoll calls again). */
static int64_t read_timer_cb(pilot_loop *l, uint64_t id, void *arg)
{
	wss *c = arg;

	c->read_timer = 0;
	if (c->own_rx && c->wsi) {
		own_read(c);
		wss_flush(&c->base);
	}
	return 0;
}

static void own_read(wss *c)
{
	bool was = c->in_service;
	int i;

	c->in_service = true;
	for (i = 0; i < WSS_READS && c->own_rx && c->wsi; i++) {
		ssize_t n = own_recv(c, c->rb + c->rb_len, WSS_RB - c->rb_len);

		if (n == 0)
			break;
		if (n < 0) {
			own_kill(c, "closed or read error");
			break;
		}
		c->rb_len += (size_t)n;
		if (own_parse(c) < 0) {
			c->st.rx_errors++;
			close_conn(c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "protocol error");
			c->own_rx = false;
			break;
		}
	}
	c->in_service = was;
	/* Decrypted bytes in SSL raise no fd event; the read cap left some: again
	 * after this loop round. */
	if (c->own_rx && c->wsi && (i == WSS_READS || pilot_lws_tls_pending(c->wsi)) && !c->read_timer)
		c->read_timer = pilot_loop_add_timer(c->loop, 0, read_timer_cb, c);
}

/* At CLIENT_ESTABLISHED: reads become ours unless lws already holds bytes of the
 * stream (that came with the 101 answer, e.g. the challenge: a plain ws:// bridge
 * or a proxy sends both at once). Then lws parses on, and the reads become ours
 * after the service that delivered the challenge (own_retry), when lws holds
 * nothing: a server sends nothing after its challenge before the reply, so lws's
 * parser stands between frames. If it still holds bytes, lws keeps reading this
 * connection, as it always did. lws stops reading (rx flow control); writes
 * stay lws_write. */
static void own_start(wss *c, struct lws *wsi)
{
	if (lws_service_adjust_timeout(c->lw.ctx, 1, 0) == 0) {
		c->own_later = true;
		return;
	}
	c->own_later = false;
	c->own_rx = true;
	c->ws.own_reader_conns++;
	c->rx_open = false;
	c->rb_len = 0;
	c->rb_skip = 0;
	c->rx_len = 0;
	lws_rx_flow_control(wsi, 0);
}

/* After a service by lws (see own_start). */
static void own_retry(wss *c)
{
	if (c->own_later && c->state == C_AUTH && c->challenged && c->wsi && !c->own_rx)
		own_start(c, c->wsi);
	if (c->own_later && c->challenged)
		c->own_later = false; /* once: lws keeps this connection */
}

/* n mask keys' bytes: a ChaCha20 keystream under the transport's random key, so
 * unpredictable (RFC 6455 §5.3) without a getrandom per batch. */
static void mask_keys(wss *c, uint8_t *out, size_t n)
{
	while (n) {
		size_t k;

		if (c->mpos == sizeof(c->mpool)) {
			uint8_t nonce[crypto_stream_chacha20_NONCEBYTES] = { 0 };

			for (unsigned i = 0; i < 8; i++)
				nonce[i] = (uint8_t)(c->mctr >> (8 * i));
			c->mctr++;
			crypto_stream_chacha20(c->mpool, sizeof(c->mpool), nonce, c->mkey);
			c->mpos = 0;
		}
		k = sizeof(c->mpool) - c->mpos < n ? sizeof(c->mpool) - c->mpos : n;
		memcpy(out, c->mpool + c->mpos, k);
		c->mpos += (unsigned)k;
		out += k;
		n -= k;
	}
}

/* How many queued messages, from the head, fit one batch (0: the head alone does not). */
static unsigned batch_count(const wss *c)
{
	size_t off = 0;
	unsigned k;

	for (k = 0; k < c->qn; k++) {
		const cmsg *m = &c->q[(c->qh + k) % WSS_QN];

		if (off + PILOT_WS_HDR_MAX + m->len > WSS_BATCH)
			break;
		off += PILOT_WS_HDR_MAX + m->len;
	}
	return k;
}

static void sent(wss *c, const cmsg *m)
{
	if (!m->text) {
		c->st.tx_dgrams++;
		c->st.tx_bytes += m->len;
	}
	q_pop(c);
}

/* Queued messages go out framed by us, as many as fit one TLS record per write
 * (pilot_ws_frame): one record and one send for up to ~11 full-size datagrams
 * where lws_write(LWS_WRITE_BINARY) costs one each. */
static int on_writeable(wss *c, struct lws *wsi)
{
	static uint8_t ping[LWS_PRE + 4];

	c->wwait = false;
	if (c->close_code) {
		lws_close_reason(wsi, (enum lws_close_status)c->close_code,
				 (unsigned char *)c->close_reason, strlen(c->close_reason));
		return -1;
	}
	if (c->ping_due) {
		c->ping_due = false;
		if (lws_write(wsi, ping + LWS_PRE, 0, LWS_WRITE_PING) < 0)
			return -1;
		if (!c->pong_wait) {
			c->pong_wait = true;
			c->pong_timer = pilot_loop_add_timer(c->loop, c->pong_ms, pong_timeout_cb, c);
		}
	}
	/* Until lws had to buffer part of a write (the socket is full); not
	 * lws_send_pipe_choked, which is a poll() per call. */
	while (c->qn && !lws_partial_buffered(wsi)) {
		unsigned k = batch_count(c);
		uint8_t key[4 * WSS_QN], *out = c->batch + LWS_PRE;
		size_t off = 0;
		cmsg *m = &c->q[c->qh];

		if (!k) { /* one message too big to batch: lws frames it */
			if (lws_write(wsi, m->buf + LWS_PRE, m->len,
				      m->text ? LWS_WRITE_TEXT : LWS_WRITE_BINARY) < (int)m->len) {
				c->st.tx_errors++;
				return -1;
			}
			sent(c, m);
			continue;
		}
		mask_keys(c, key, 4 * (size_t)k); /* RFC 6455 §5.3: a fresh key per frame */
		for (unsigned i = 0; i < k; i++) {
			m = &c->q[(c->qh + i) % WSS_QN];
			off += pilot_ws_frame(out + off, m->buf + LWS_PRE, m->len, m->text, key + 4 * i);
		}
		if (lws_write(wsi, out, off, LWS_WRITE_RAW) < (int)off) {
			c->st.tx_errors++;
			return -1;
		}
		while (k--)
			sent(c, &c->q[c->qh]);
	}
	if (c->qn)
		lws_callback_on_writable(wsi);
	fd_sync(c);
	return 0;
}

static int wss_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len)
{
	wss *c = lws_get_opaque_user_data(wsi);

	if (!c)
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	switch (reason) {
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		c->state = C_AUTH;
		own_start(c, wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return on_receive(c, wsi, in, len);
	case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
		c->pong_wait = false;
		del_timer(c, &c->pong_timer);
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return on_writeable(c, wsi);
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		lost(c, in && len ? (const char *)in : "connection error");
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
		lost(c, "closed");
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		if (c->wsi == wsi)
			c->wsi = NULL;
		lost(c, "closed");
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static const struct lws_protocols wss_protocols[] = {
	/* reads of up to a TLS record (with pt_serv_buf_size): one connection, so
	 * the memory is small; the beacon keeps 4096 per peer */
	{ .name = WSS_PROTOCOL, .callback = wss_cb, .rx_buffer_size = WSS_RXBUF },
	{ .name = NULL },
};

/* ---- vtable ---------------------------------------------------------------------------------- */

static size_t wss_send(transport *t, const transport_dgram *dg, size_t n)
{
	wss *c = (wss *)t;
	size_t i, queued = 0;

	for (i = 0; i < n; i++) {
		const transport_dgram *d = &dg[i];
		uint8_t hdr[BEACON_RELAY_HDR];
		size_t hlen = 0;
		uint32_t dest = 0;

		if (c->state != C_READY) {
			c->ws.tx_notconn += n - i;
			c->st.tx_errors += n - i;
			break;
		}
		if (!d->len || (d->data[0] >= 0x10 && !(dest = wss_peer_ep_node(&d->ep)))) {
			c->st.tx_errors++;
			continue;
		}
		if (d->data[0] >= 0x10) {
			proto_beacon_relay_hdr(c->node, dest, hdr);
			hlen = sizeof(hdr);
		}
		if (d->len + hlen > WSS_MAX_MSG) {
			c->ws.tx_oversize++;
			c->st.tx_errors++;
			continue;
		}
		if (q_push(c, hdr, hlen, d->data, d->len, false) < 0) {
			c->st.tx_dropped += n - i;
			break;
		}
		queued++;
	}
	if (queued)
		flush_soon(c);
	return queued;
}

/* After a service, from the zero-delay timer or the owner's flush (before the
 * loop sleeps): the queue goes out now, framed into as few TLS records as it takes, by servicing the
 * socket as if it were writable (lws runs the WRITEABLE callback). No WRITE
 * interest toggled per batch, no poll(): only a write lws could not finish
 * waits for POLLOUT. A pass that moved nothing (lws busy with a pong or a
 * close) also waits for POLLOUT rather than being retried here every loop. */
static void wss_flush(transport *t)
{
	wss *c = (wss *)t;

	/* a few passes: a pass may deliver received messages lws had buffered,
	 * whose answers queue more */
	for (int i = 0; i < 4; i++) {
		uint64_t before = c->npop;

		if (!c->qn || !c->wsi || c->fd < 0 || c->state < C_AUTH || c->wwait ||
		    lws_partial_buffered(c->wsi))
			return;
		service_fd(c, PILOT_EV_WRITE);
		if (c->wsi && c->npop == before && !lws_partial_buffered(c->wsi)) {
			c->wwait = true;
			fd_sync(c);
			return;
		}
	}
	if (c->qn && c->wsi && !c->wwait && !lws_partial_buffered(c->wsi))
		kick(c); /* more than a few passes' worth: do not sleep on it */
}

static int wss_local_ep(transport *t, transport_ep *ep)
{
	local_ep_of(ep);
	return 0;
}

static void wss_stats_cb(transport *t, transport_stats *st)
{
	*st = ((wss *)t)->st;
}

static bool wss_relay_only(transport *t)
{
	return true;
}

static void wss_close(transport *t)
{
	wss *c = (wss *)t;

	if (!c)
		return;
	c->closing = true;
	if (c->lw.ctx)
		lws_context_destroy(c->lw.ctx);
	c->lw.ctx = NULL;
	c->wsi = NULL;
	if (c->fd >= 0)
		pilot_loop_del_fd(c->loop, c->fd);
	pilot_lws_stop(&c->lw);
	del_timer(c, &c->tick_timer);
	del_timer(c, &c->redial_timer);
	del_timer(c, &c->dial_timer);
	del_timer(c, &c->ping_timer);
	del_timer(c, &c->pong_timer);
	del_timer(c, &c->flush_timer);
	del_timer(c, &c->read_timer);
	q_clear(c);
	while (c->nspare)
		free(c->spare[--c->nspare]);
	pilot_identity_wipe(&c->id);
	sodium_memzero(c->mkey, sizeof(c->mkey));
	free(c->rx);
	free(c->batch);
	free(c->rb);
	free(c);
}

static const struct transport_ops wss_ops = {
	.send = wss_send, .flush = wss_flush, .local_ep = wss_local_ep,
	.stats = wss_stats_cb, .close = wss_close, .relay_only = wss_relay_only,
};

void wss_transport_get_stats(transport *t, wss_stats *st)
{
	*st = ((wss *)t)->ws;
	st->own_reader = ((wss *)t)->own_rx;
}

void wss_transport_set_identity(transport *t, const pilot_identity *id)
{
	wss *c = (wss *)t;

	pilot_identity_wipe(&c->id);
	c->id = *id;
}

bool wss_transport_connected(transport *t)
{
	return ((wss *)t)->state == C_READY;
}

/* ---- set-up ------------------------------------------------------------------------------------ */

/* wss://host[:port][/path] or ws://...; [v6] in brackets. */
static int parse_url(wss *c, const char *url)
{
	const char *p, *h, *end;
	size_t hl;

	c->tls = false;
	if (!strncmp(url, "wss://", 6)) {
		c->tls = true;
		c->port = 443;
		p = url + 6;
	} else if (!strncmp(url, "ws://", 5)) {
		c->port = 80;
		p = url + 5;
	} else {
		return -EINVAL;
	}
	h = p;
	if (*p == '[') {
		if (!(end = strchr(p, ']')))
			return -EINVAL;
		h = p + 1;
		hl = (size_t)(end - h);
		p = end + 1;
	} else {
		hl = strcspn(p, ":/");
		p += hl;
	}
	if (!hl || hl >= sizeof(c->host))
		return -EINVAL;
	memcpy(c->host, h, hl);
	c->host[hl] = 0;
	if (*p == ':') {
		char *e;
		long v = strtol(p + 1, &e, 10);

		if (e == p + 1 || v < 1 || v > 65535 || (*e && *e != '/'))
			return -EINVAL;
		c->port = (int)v;
		p = e;
	}
	snprintf(c->path, sizeof(c->path), "%s", *p ? p : "/v1/compat");
	/* Host header; lws strips ":port" for TLS name checks, so keep v6 bare */
	if (strchr(c->host, ':') || c->port == (c->tls ? 443 : 80))
		snprintf(c->hosthdr, sizeof(c->hosthdr), "%s", c->host);
	else
		snprintf(c->hosthdr, sizeof(c->hosthdr), "%s:%d", c->host, c->port);
	return 0;
}

static const char *proxy_of(const wss_config *cfg)
{
	const char *p = cfg->proxy;

	if (!p && !(p = getenv("HTTPS_PROXY")))
		p = getenv("https_proxy");
	return p && *p ? p : NULL;
}

static int make_context(wss *c, const wss_config *cfg, char *err, size_t errlen)
{
	struct lws_context_creation_info ci;
	const char *proxy = proxy_of(cfg);

	pilot_lws_log_to_pilot();
	memset(&ci, 0, sizeof(ci));
	ci.port = CONTEXT_PORT_NO_LISTEN;
	ci.protocols = wss_protocols;
	ci.pt_serv_buf_size = WSS_RXBUF + LWS_PRE;
	ci.gid = (gid_t)-1;
	ci.uid = (uid_t)-1;
	ci.http_proxy_address = proxy; /* lws_set_proxy form; NULL: lws reads $http_proxy */
	if (c->tls) {
		ci.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		if (cfg->tls_root && cfg->tls_root[0]) {
			if (access(cfg->tls_root, R_OK) < 0) {
				snprintf(err, errlen, "compat -tls-root %s: %s", cfg->tls_root, strerror(errno));
				return -1;
			}
			ci.client_ssl_ca_filepath = cfg->tls_root;
			ci.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
		}
	}
	if (!(c->lw.ctx = lws_create_context(&ci))) {
		snprintf(err, errlen, "compat: cannot create the libwebsockets context");
		return -1;
	}
	if (proxy)
		log_info("compat: using HTTP CONNECT proxy proxy=%s", proxy);
	if (c->tls && !(cfg->tls_root && cfg->tls_root[0]))
		log_warn("compat: TLS trust is the system CA store: any public CA can issue a "
			 "certificate for %s and impersonate the beacon; pin the beacon's CA with "
			 "-tls-root", c->host);
	return 0;
}

static int64_t tick_cb(pilot_loop *l, uint64_t id, void *arg)
{
	service(arg);
	return WSS_TICK_MS;
}

/* "u1,u2,...": each into c->urls (checked); -EINVAL or 0. *any_tls: one is wss://. */
static int split_urls(wss *c, const char *list, bool *any_tls)
{
	*any_tls = false;
	do {
		const char *end = strchr(list, ',');
		size_t len = end ? (size_t)(end - list) : strlen(list);

		while (len && *list == ' ')
			list++, len--;
		while (len && list[len - 1] == ' ')
			len--;
		if (!len || len >= sizeof(c->urls[0]) || c->nurls == WSS_URLS_MAX)
			return -EINVAL;
		memcpy(c->urls[c->nurls], list, len);
		c->urls[c->nurls][len] = '\0';
		if (parse_url(c, c->urls[c->nurls]) < 0)
			return -EINVAL;
		*any_tls |= c->tls;
		c->nurls++;
		list = end ? end + 1 : NULL;
	} while (list);
	return 0;
}

const char *wss_transport_url(transport *t)
{
	wss *c = (wss *)t;

	return c->urls[c->url_i];
}

transport *wss_transport_new(pilot_loop *loop, const wss_config *cfg, transport_recv_cb cb,
			     void *ctx, char *err, size_t errlen)
{
	bool any_tls = false;
	wss *c = calloc(1, sizeof(*c));
	const char *url = cfg->url && cfg->url[0] ? cfg->url : WSS_DEFAULT_URL;

	if (c)
		c->fd = -1;
	if (!c || !(c->rx = malloc(WSS_RXSLOT)) || !(c->batch = malloc(LWS_PRE + WSS_BATCH)) ||
	    !(c->rb = malloc(WSS_RB))) {
		snprintf(err, errlen, "compat: out of memory");
		goto fail;
	}
	c->loop = loop;
	randombytes_buf(c->mkey, sizeof(c->mkey));
	c->mpos = sizeof(c->mpool); /* drawn at the first write */
	c->lw = (pilot_lws){ .loop = loop, .after = after_service, .arg = c };
	c->base = (transport){ .ops = &wss_ops, .on_recv = cb, .ctx = ctx };
	if (split_urls(c, url, &any_tls) < 0) {
		snprintf(err, errlen,
			 "compat URL %s: want wss://host[:port]/path or ws://... "
			 "(or up to %d separated by commas)",
			 url, WSS_URLS_MAX);
		goto fail;
	}
	(void)parse_url(c, c->urls[0]); /* checked above */
	if (!cfg->id || !cfg->node) {
		snprintf(err, errlen, "compat: needs the node ID and identity");
		goto fail;
	}
	c->node = cfg->node;
	c->id = *cfg->id;
	c->ping_ms = cfg->ping_ms > 0 ? cfg->ping_ms : 30000;
	c->pong_ms = cfg->pong_ms > 0 ? cfg->pong_ms : 10000;
	c->bo_min = cfg->backoff_min_ms > 0 ? cfg->backoff_min_ms : 250;
	c->bo_max = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 30000;
	c->dial_ms = cfg->dial_ms > 0 ? cfg->dial_ms : 20000;
	c->backoff = c->bo_min;
	c->ws.backoff_ms = c->backoff;
	{
		bool first_tls = c->tls;

		c->tls = any_tls; /* the context gets TLS if any URL needs it */
		if (make_context(c, cfg, err, errlen) < 0)
			goto fail;
		c->tls = first_tls;
	}
	if (!(c->tick_timer = pilot_loop_add_timer(loop, WSS_TICK_MS, tick_cb, c))) {
		snprintf(err, errlen, "compat: out of memory");
		goto fail;
	}
	dial(c);
	return &c->base;
fail:
	if (c)
		wss_close(&c->base);
	return NULL;
}
