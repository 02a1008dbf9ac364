/* The compat-mode WebSocket bridge (tunnel.md §11, server side).
 *
 * libwebsockets on the pilot_loop. Debian's lws 4.1 is built without
 * LWS_WITH_EXTERNAL_POLL (the ADD/DEL/CHANGE_MODE_POLL_FD callbacks are compiled
 * out) and predates the custom event-loop API (4.3), so lws keeps its own poll()
 * set and we drive it without blocking:
 *   - we own the listening socket: accept4 here (per-IP rate limit first), then
 *     lws_adopt_descriptor_vhost_via_info hands the socket to lws (HTTP, TLS if
 *     configured), so every lws fd is one we know;
 *   - each such fd is watched by the pilot_loop for READ, plus WRITE while we have
 *     queued output, a close pending, or lws holds a partial write;
 *   - any event schedules one zero-delay loop timer that runs lws_service(ctx, -1),
 *     which in this lws version polls its set with a 0 ms timeout (never blocks)
 *     and services every ready wsi, its scheduled events and forced (buffered TLS)
 *     reads; events of one loop iteration coalesce into one call;
 *   - a 100 ms tick calls it too (lws-internal timers, writes lws queued itself)
 *     and runs the auth/idle deadlines.
 * The cost is a poll() over all connections per serviced iteration: fine for
 * thousands of compat peers, not for hundreds of thousands (a custom event lib
 * with a newer lws would remove it).
 *
 * Authentication checks the reply against the REGISTRY's key for the node (the
 * reply's public_key is ignored). After it every binary message enters the beacon
 * as that node (beacon_inject): a Relay naming another sender is dropped there. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libwebsockets.h>
#include <sodium.h>

#include "lib/crypto.h"
#include "lib/log.h"
#include "lib/lwsloop.h"
#include "rendezvous/server.h"
#include "rendezvous/wss.h"

#define WSS_QN          256                /* messages queued per peer */
#define WSS_QBYTES      (4u << 20)         /* bytes queued per peer */
#define WSS_MAP_N       4096
#define WSS_RATE_N      1024
#define WSS_TICK_MS     100
#define WSS_FRESH_S     30
#define WSS_SMALL       2048               /* message buffers up to this are recycled */
#define WSS_SPARE_N     1024               /* recycled buffers kept (shared by all peers) */
#define WSS_BATCH       16000              /* framed messages per raw write: one TLS record */
#define WSS_EXTRA_CONNS 256                /* TCP connections beyond max_peers (HTTP, handshakes) */
#define WSS_PENDING     16                 /* services per event while TLS holds decrypted bytes */
#define WSS_INJ         (256u << 10)       /* injected datagrams held for one sendmmsg batch */
#define WSS_FLUSH_MAX   4096               /* connection writes per flush round */

typedef struct wmsg {
	uint8_t *buf;      /* LWS_PRE bytes of headroom, then len bytes */
	size_t len;
	bool text;
	bool small;        /* a WSS_SMALL buffer: back to the spare stack when sent */
} wmsg;

enum sstate { S_HTTP = 0, S_AUTH, S_READY, S_CLOSING };

typedef struct wsess {
	rdv_wss *w;
	struct lws *wsi;
	int fd, mask;
	enum sstate st;
	bool upgraded, mapped, adopting;
	uint32_t node;
	char nonce[RDV_WSS_NONCE_HEX + 1];
	uint64_t ts, deadline_ms, last_data_ms;
	uint64_t ping_ms; /* when the last ping went out (a live idle peer answers it) */
	bool ping_due;    /* send a ping at the next writeable */
	uint8_t *rx;
	size_t rx_len;
	bool rx_bin;
	wmsg q[WSS_QN];
	unsigned qh, qn;
	size_t qbytes;
	int close_code;
	const char *close_reason;
	bool dirty;    /* on the rdv_wss's dirty list: its queue goes out in flush_cb */
	bool wwait;    /* a flush made no progress: wait for POLLOUT (lws's state) */
	uint64_t npop; /* messages taken off the queue, ever */
	struct wsess *prev, *next, *hnext;
	struct wsess *dprev, *dnext;
} wsess;

typedef struct rate_ent {
	uint8_t ip[16];
	double tokens;
	uint64_t ms;
} rate_ent;

struct rdv_wss {
	pilot_loop *loop;
	registry *reg;
	beacon *bcn;
	pilot_lws lw;             /* lw.ctx: the lws context (lib/lwsloop.h) */
	struct lws_vhost *vh;
	int lfd, port;
	bool tls;
	long max_peers, rate_burst, rate_per_min;
	uint64_t max_queued;  /* st.queued_bytes may not pass it (issue 12 §5) */
	int64_t auth_ms, idle_ms, skew_s;
	uint64_t tick_timer;
	wsess *all;
	wsess *map[WSS_MAP_N];
	long nconns, nws;
	rate_ent rate[WSS_RATE_N];
	uint8_t rkey[crypto_shorthash_KEYBYTES];
	wsess *dirty;                       /* sessions with queued output to write in flush_cb */
	wsess *cur;                         /* the session being serviced; NULL once it is freed */
	uint64_t flush_timer;               /* zero-delay: after this loop iteration's events */
	bool flushing;                      /* inside flush_cb */
	size_t inj_len;                     /* bytes of inj queued in the beacon's send batch */
	uint8_t inj[WSS_INJ];               /* datagrams injected into the beacon, until beacon_flush */
	uint8_t batch[LWS_PRE + WSS_BATCH]; /* queued messages framed for one write */
	uint8_t *spare[WSS_SPARE_N]; /* free LWS_PRE + WSS_SMALL buffers: no malloc per packet */
	unsigned nspare;
	rdv_wss_stats st;
};

/* ---- authentication (pure) ----------------------------------------------------- */

int rdv_wss_challenge(char *out, size_t cap, const char *nonce_hex, uint64_t ts)
{
	return snprintf(out, cap, "{\"type\":\"auth_challenge\",\"nonce\":\"%s\",\"ts\":%" PRIu64 "}",
			nonce_hex, ts);
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

bool rdv_wss_is_bye(const char *json, size_t len)
{
	json_tokener *tok;
	json_object *o;
	const char *type;
	bool bye;

	if (len == 0 || len > 4096 || !(tok = json_tokener_new()))
		return false;
	o = json_tokener_parse_ex(tok, json, (int)len);
	json_tokener_free(tok);
	bye = o && json_object_is_type(o, json_type_object) && (type = jstr(o, "type")) &&
		!strcmp(type, "bye");
	json_object_put(o);
	return bye;
}

int rdv_wss_parse_reply(const char *json, size_t len, uint32_t *node, uint8_t sig[64])
{
	json_tokener *tok;
	json_object *o, *v;
	const char *type, *s;
	int64_t id;
	int rc = -EINVAL;

	if (len == 0 || len > 4096 || !(tok = json_tokener_new()))
		return -EINVAL;
	o = json_tokener_parse_ex(tok, json, (int)len);
	json_tokener_free(tok);
	if (!o || !json_object_is_type(o, json_type_object))
		goto out;
	type = jstr(o, "type");
	if (!type || strcmp(type, "auth_reply") != 0)
		goto out;
	if (!json_object_object_get_ex(o, "node_id", &v) || !json_object_is_type(v, json_type_int))
		goto out;
	id = json_object_get_int64(v);
	if (id <= 0 || id > (int64_t)UINT32_MAX)
		goto out;
	if (!(s = jstr(o, "sig")) || pilot_b64_decode(s, strlen(s), sig, 64) != 64)
		goto out;
	*node = (uint32_t)id;
	rc = 0;
out:
	json_object_put(o);
	return rc;
}

int rdv_wss_check_reply(const char *json, size_t len, const char *nonce_hex, uint64_t ts,
			uint64_t now_s, rdv_wss_keyfn keyfn, void *kctx, uint32_t *node)
{
	uint8_t sig[64], pk[32];
	char msg[128];
	uint32_t id;
	int n;

	if (rdv_wss_parse_reply(json, len, &id, sig) < 0)
		return -EINVAL;
	if (keyfn(kctx, id, pk) < 0)
		return -ENOENT;
	if (now_s < ts || now_s - ts > WSS_FRESH_S)
		return -ESTALE;
	n = snprintf(msg, sizeof(msg), "compat_auth:%" PRIu32 ":%" PRIu64 ":%s", id, ts, nonce_hex);
	if (n < 0 || (size_t)n >= sizeof(msg) || pilot_ed25519_verify(pk, msg, (size_t)n, sig) < 0)
		return -EBADMSG;
	*node = id;
	return 0;
}

static int reg_key(void *ctx, uint32_t node, uint8_t pk[32])
{
	return reg_node_key(ctx, node, pk);
}

/* ---- helpers ---------------------------------------------------------------------- */

static uint64_t wall_s(const rdv_wss *w)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)((int64_t)ts.tv_sec + w->skew_s);
}

static uint64_t now_ms(const rdv_wss *w)
{
	return pilot_loop_now_ms(w->loop);
}

static void kick(rdv_wss *w)
{
	pilot_lws_kick(&w->lw);
}

static void service(rdv_wss *w)
{
	pilot_lws_service(&w->lw);
}

/* The WebSocket is up: its own events drive it directly (service_sess). */
static bool sess_direct(const wsess *s)
{
	return s->wsi && !s->adopting && (s->st == S_AUTH || s->st == S_READY);
}

static void sess_sync(wsess *s)
{
	int want = PILOT_EV_READ;

	if (s->fd < 0)
		return;
	/* An up connection's queue needs no WRITE interest: flush_cb writes it after
	 * the loop's events; only a write lws could not finish (or a flush that made
	 * no progress), a ping or a close waits for the socket. */
	if (!s->qn)
		s->wwait = false;
	if ((s->qn && (s->wwait || !sess_direct(s))) || s->close_code || s->ping_due ||
	    (s->wsi && !s->adopting && lws_partial_buffered(s->wsi)))
		want |= PILOT_EV_WRITE;
	if (want != s->mask && pilot_loop_mod_fd(s->w->loop, s->fd, want) == 0)
		s->mask = want;
}

static int64_t flush_cb(pilot_loop *l, uint64_t id, void *arg);

static void flush_soon(rdv_wss *w)
{
	if (!w->flush_timer && !w->flushing)
		w->flush_timer = pilot_loop_add_timer(w->loop, 0, flush_cb, w);
}

static void dirty_add(wsess *s)
{
	rdv_wss *w = s->w;

	if (s->dirty)
		return;
	s->dirty = true;
	s->dprev = NULL;
	s->dnext = w->dirty;
	if (w->dirty)
		w->dirty->dprev = s;
	w->dirty = s;
	flush_soon(w);
}

static void dirty_del(wsess *s)
{
	if (!s->dirty)
		return;
	if (s->dprev)
		s->dprev->dnext = s->dnext;
	else
		s->w->dirty = s->dnext;
	if (s->dnext)
		s->dnext->dprev = s->dprev;
	s->dirty = false;
	s->dprev = s->dnext = NULL;
}

/* One event on an up connection: lws services just that socket with the events
 * epoll saw (no poll() over every connection, no zero-delay timer), and again
 * while TLS holds decrypted bytes (lws reads 4096 at a time) no fd event will
 * announce. s may be freed inside (its wsi closed). */
static bool service_sess(wsess *s, int events)
{
	rdv_wss *w = s->w;

	w->cur = s;
	for (int i = 0; i < WSS_PENDING; i++) {
		if (pilot_lws_service_fd(w->lw.ctx, s->fd, events) || w->cur != s || !s->wsi ||
		    !pilot_lws_tls_pending(s->wsi))
			break;
		events = PILOT_EV_READ;
	}
	if (w->cur != s)
		return false; /* freed */
	w->cur = NULL;
	if (s->wsi && pilot_lws_tls_pending(s->wsi))
		kick(w);
	if (s->qn && sess_direct(s) && !s->wwait && !lws_partial_buffered(s->wsi))
		dirty_add(s);
	sess_sync(s);
	return true;
}

static void on_fd(pilot_loop *l, int fd, int events, void *arg)
{
	wsess *s = arg;

	if (sess_direct(s) && fd == s->fd)
		service_sess(s, events);
	else
		kick(s->w);
}

/* The datagrams injected since the last flush go out in one sendmmsg. */
static void inject_flush(rdv_wss *w)
{
	beacon_flush(w->bcn);
	w->inj_len = 0;
}

/* After the loop iteration's events: what the connections sent into the beacon
 * goes out (one sendmmsg), then every connection with queued output writes it
 * (as many messages per TLS record as fit) by being serviced as if writable —
 * the WRITEABLE callback runs without POLLOUT having been asked for. */
static int64_t flush_cb(pilot_loop *l, uint64_t id, void *arg)
{
	rdv_wss *w = arg;
	unsigned n = 0;
	wsess *s;

	w->flush_timer = 0;
	w->flushing = true;
	inject_flush(w);
	while ((s = w->dirty) && n++ < WSS_FLUSH_MAX) {
		uint64_t before = s->npop;

		dirty_del(s);
		if (!s->qn || !sess_direct(s) || s->wwait || lws_partial_buffered(s->wsi)) {
			sess_sync(s);
			continue;
		}
		if (!service_sess(s, PILOT_EV_WRITE))
			continue; /* closed and freed */
		if (s->wsi && s->npop == before && !lws_partial_buffered(s->wsi)) {
			s->wwait = true; /* lws busy (a pong, a close): wait for POLLOUT */
			dirty_del(s);
			sess_sync(s);
		}
	}
	w->flushing = false;
	inject_flush(w); /* what reads during the writes injected */
	if (w->dirty)
		flush_soon(w);
	return 0;
}

/* ---- node map (authenticated connections) ---------------------------------------- */

static wsess **map_slot(rdv_wss *w, uint32_t node)
{
	return &w->map[node % WSS_MAP_N];
}

static wsess *map_find(rdv_wss *w, uint32_t node)
{
	for (wsess *s = *map_slot(w, node); s; s = s->hnext)
		if (s->node == node)
			return s;
	return NULL;
}

static void map_remove(wsess *s)
{
	wsess **pp = map_slot(s->w, s->node);

	if (!s->mapped)
		return;
	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == s) {
			*pp = s->hnext;
			break;
		}
	}
	s->mapped = false;
	s->w->st.peers--;
}

static void map_add(wsess *s)
{
	wsess **pp = map_slot(s->w, s->node);

	s->hnext = *pp;
	*pp = s;
	s->mapped = true;
	s->w->st.peers++;
}

/* ---- per-peer send queue ------------------------------------------------------------ */

/* Memory a queued message holds (what the global cap counts). */
static size_t q_cost(size_t len)
{
	return LWS_PRE + (len <= WSS_SMALL ? WSS_SMALL : len);
}

static int q_push(wsess *s, const void *data, size_t len, bool text)
{
	wmsg *m;

	if (s->qn == WSS_QN || s->qbytes + len > WSS_QBYTES)
		return -ENOBUFS;
	if (s->w->st.queued_bytes + q_cost(len) > s->w->max_queued) {
		s->w->st.queue_dropped_total++; /* many slow peers together */
		return -ENOSPC;
	}
	m = &s->q[(s->qh + s->qn) % WSS_QN];
	m->small = len <= WSS_SMALL;
	if (m->small && s->w->nspare)
		m->buf = s->w->spare[--s->w->nspare];
	else if (!(m->buf = malloc(LWS_PRE + (m->small ? WSS_SMALL : len))))
		return -ENOMEM;
	memcpy(m->buf + LWS_PRE, data, len);
	m->len = len;
	m->text = text;
	s->qn++;
	s->qbytes += len;
	s->w->st.queued_bytes += q_cost(len);
	return 0;
}

static void q_pop(wsess *s)
{
	wmsg *m = &s->q[s->qh];

	s->qbytes -= m->len;
	s->w->st.queued_bytes -= q_cost(m->len);
	if (m->small && s->w->nspare < WSS_SPARE_N)
		s->w->spare[s->w->nspare++] = m->buf;
	else
		free(m->buf);
	m->buf = NULL;
	s->qh = (s->qh + 1) % WSS_QN;
	s->qn--;
	s->npop++;
}

static void send_text(wsess *s, const char *txt)
{
	if (q_push(s, txt, strlen(txt), true) == 0) {
		if (sess_direct(s))
			dirty_add(s);
		else if (s->wsi)
			lws_callback_on_writable(s->wsi);
	}
	sess_sync(s);
}

/* Close from outside the wsi's own callback: done in its next WRITEABLE. */
static void sess_close(wsess *s, int code, const char *reason)
{
	if (s->close_code)
		return;
	s->close_code = code;
	s->close_reason = reason;
	if (s->st == S_READY)
		map_remove(s);
	s->st = S_CLOSING;
	if (s->wsi)
		lws_callback_on_writable(s->wsi);
	sess_sync(s);
	kick(s->w);
}

static int close_now(struct lws *wsi, int code, const char *reason)
{
	lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
	return -1;
}

static void sess_free(wsess *s)
{
	rdv_wss *w = s->w;

	map_remove(s);
	if (s->upgraded)
		w->nws--;
	if (s->prev)
		s->prev->next = s->next;
	else
		w->all = s->next;
	if (s->next)
		s->next->prev = s->prev;
	w->nconns--;
	w->st.conns = (uint64_t)w->nconns;
	dirty_del(s);
	if (w->cur == s)
		w->cur = NULL; /* service_sess: gone */
	if (s->fd >= 0)
		pilot_loop_del_fd(w->loop, s->fd);
	while (s->qn)
		q_pop(s);
	free(s->rx);
	free(s);
}

/* ---- sink for the beacon: tier 0 of the relay ------------------------------------------ */

static bool sink_has(void *ctx, uint32_t node)
{
	wsess *s = map_find(ctx, node);

	return s && s->st == S_READY;
}

static void sink_deliver(void *ctx, uint32_t node, const uint8_t *msg, size_t len)
{
	rdv_wss *w = ctx;
	wsess *s = map_find(w, node);
	int r;

	if (!s || s->st != S_READY)
		return;
	if ((r = q_push(s, msg, len, false)) < 0) {
		if (r == -ENOBUFS)
			w->st.queue_dropped++;
		return;
	}
	dirty_add(s); /* written after this loop iteration's events (flush_cb) */
}

/* ---- lws callbacks ----------------------------------------------------------------------- */

static int on_http(wsess *s, struct lws *wsi, const char *uri)
{
	if (uri && (!strcmp(uri, "/health") || !strcmp(uri, "/healthz")))
		lws_return_http_status(wsi, HTTP_STATUS_OK, "ok");
	else
		lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Before the 101: the path, then the peer cap (503 as the reference's max peers). */
static int on_confirm_upgrade(wsess *s, struct lws *wsi)
{
	rdv_wss *w = s->w;
	char uri[64];

	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, RDV_WSS_PATH)) {
		w->st.refused_other++;
		lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
		return 1;
	}
	if (w->nws >= w->max_peers) {
		w->st.refused_full++;
		lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "too many peers");
		return 1;
	}
	return 0;
}

static void on_established(wsess *s)
{
	rdv_wss *w = s->w;
	uint8_t nonce[32];
	char txt[160];

	s->upgraded = true;
	w->nws++;
	w->st.upgrades++;
	s->st = S_AUTH;
	randombytes_buf(nonce, sizeof(nonce));
	sodium_bin2hex(s->nonce, sizeof(s->nonce), nonce, sizeof(nonce));
	s->ts = wall_s(w);
	s->deadline_ms = now_ms(w) + (uint64_t)w->auth_ms;
	rdv_wss_challenge(txt, sizeof(txt), s->nonce, s->ts);
	send_text(s, txt);
}

static int on_auth(wsess *s, struct lws *wsi, const uint8_t *msg, size_t len, bool bin)
{
	rdv_wss *w = s->w;
	uint32_t node = 0;
	wsess *old;
	int r = bin ? -EINVAL : rdv_wss_check_reply((const char *)msg, len, s->nonce, s->ts,
						     wall_s(w), reg_key, w->reg, &node);

	if (r < 0) {
		w->st.auth_failed++;
		log_info("wss: authentication failed node=%" PRIu32 " err=\"%s\"", node,
			 r == -ENOENT ? "unknown node" : r == -ESTALE ? "stale challenge" :
			 r == -EBADMSG ? "bad signature" : "malformed reply");
		s->st = S_CLOSING;
		return close_now(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, "auth failed");
	}
	w->st.auth_ok++;
	if ((old = map_find(w, node))) {
		w->st.replaced++;
		sess_close(old, LWS_CLOSE_STATUS_NORMAL, "replaced");
	}
	s->node = node;
	s->st = S_READY;
	s->last_data_ms = now_ms(w);
	map_add(s);
	log_debug("wss: node authenticated node=%" PRIu32, node);
	send_text(s, "{\"type\":\"auth_ok\"}");
	return 0;
}

static int on_message(wsess *s, struct lws *wsi, const uint8_t *msg, size_t len, bool bin)
{
	rdv_wss *w = s->w;

	if (s->st == S_AUTH)
		return on_auth(s, wsi, msg, len, bin);
	if (s->st != S_READY)
		return 0; /* replaced or closing: dropped */
	if (!bin) {
		if (rdv_wss_is_bye((const char *)msg, len)) { /* an orderly goodbye: gone at once */
			w->st.byes++;
			sess_close(s, LWS_CLOSE_STATUS_NORMAL, "bye");
			return 0;
		}
		w->st.text_ignored++;
		return 0;
	}
	w->st.frames_in++;
	w->st.bytes_in += len;
	s->last_data_ms = now_ms(w);
	/* The beacon rewrites a Relay in place and sends it from there: the copy
	 * stays until flush_cb's beacon_flush, one sendmmsg for the batch. */
	if (w->inj_len + len > sizeof(w->inj))
		inject_flush(w);
	memcpy(w->inj + w->inj_len, msg, len);
	beacon_inject_queued(w->bcn, s->node, w->inj + w->inj_len, len);
	w->inj_len += len;
	flush_soon(w);
	return 0;
}

int rdv_wss_rx(uint8_t **rx, size_t *rx_len, bool first, bool fin, const uint8_t *in, size_t len,
	       const uint8_t **msg, size_t *mlen)
{
	if (first)
		*rx_len = 0;
	if (*rx_len + len > RDV_WSS_MAX_MSG)
		return RDV_WSS_RX_TOO_BIG;
	if (first && fin) {
		*msg = in;
		*mlen = len;
		return RDV_WSS_RX_MSG;
	}
	if (!*rx && !(*rx = malloc(RDV_WSS_MAX_MSG)))
		return -ENOMEM;
	if (len)
		memcpy(*rx + *rx_len, in, len);
	*rx_len += len;
	if (!fin)
		return RDV_WSS_RX_MORE;
	*msg = *rx;
	*mlen = *rx_len;
	return RDV_WSS_RX_MSG;
}

/* Reassemble fragmented messages up to RDV_WSS_MAX_MSG; larger closes (1009). */
static int on_receive(wsess *s, struct lws *wsi, const uint8_t *in, size_t len)
{
	bool first = lws_is_first_fragment(wsi), fin = lws_is_final_fragment(wsi);
	const uint8_t *msg = NULL;
	size_t mlen = 0;
	int r;

	if (first)
		s->rx_bin = lws_frame_is_binary(wsi);
	r = rdv_wss_rx(&s->rx, &s->rx_len, first, fin, in, len, &msg, &mlen);
	if (r == RDV_WSS_RX_TOO_BIG) {
		s->w->st.oversize++;
		s->st = S_CLOSING;
		return close_now(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
	}
	if (r != RDV_WSS_RX_MSG)
		return r == RDV_WSS_RX_MORE ? 0 : -1;
	r = on_message(s, wsi, msg, mlen, s->rx_bin);
	if (msg != in) {
		free(s->rx);
		s->rx = NULL;
		s->rx_len = 0;
	}
	return r;
}

/* Queued messages go out framed by us (server frames: unmasked), as many as fit
 * one TLS record per write (pilot_ws_frame), not one lws_write each. */
static int on_writeable(wsess *s, struct lws *wsi)
{
	rdv_wss *w = s->w;

	s->wwait = false;
	if (s->close_code)
		return close_now(wsi, s->close_code, s->close_reason);
	if (s->ping_due) {
		uint8_t ping[LWS_PRE + 8];

		s->ping_due = false;
		memcpy(ping + LWS_PRE, "pilot-ka", 8); /* lws 4.1 reports only pongs with a payload */
		if (lws_write(wsi, ping + LWS_PRE, 8, LWS_WRITE_PING) < 8)
			return -1;
		w->st.pings_sent++;
	}
	while (s->qn) {
		wmsg *m = &s->q[s->qh];
		uint8_t *out = w->batch + LWS_PRE;
		size_t off = 0;
		unsigned k = 0;

		while (k < s->qn && off + PILOT_WS_HDR_MAX + m->len <= WSS_BATCH) {
			off += pilot_ws_frame(out + off, m->buf + LWS_PRE, m->len, m->text, NULL);
			m = &s->q[(s->qh + ++k) % WSS_QN];
		}
		if (!k) { /* one message too big to batch: lws frames it */
			m = &s->q[s->qh];
			if (lws_write(wsi, m->buf + LWS_PRE, m->len,
				      m->text ? LWS_WRITE_TEXT : LWS_WRITE_BINARY) < (int)m->len)
				return -1;
			k = 1;
		} else if (lws_write(wsi, out, off, LWS_WRITE_RAW) < (int)off) {
			return -1;
		}
		while (k--) {
			m = &s->q[s->qh];
			if (!m->text) {
				w->st.frames_out++;
				w->st.bytes_out += m->len;
			}
			q_pop(s);
		}
		if (lws_partial_buffered(
			    wsi)) /* the socket is full (not lws_send_pipe_choked: a poll() each) */
			break;
	}
	if (s->qn)
		lws_callback_on_writable(wsi);
	sess_sync(s);
	return 0;
}

static int wss_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len)
{
	wsess *s = lws_get_opaque_user_data(wsi);

	if (!s)
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	switch (reason) {
	case LWS_CALLBACK_HTTP:
		return on_http(s, wsi, in);
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		return on_confirm_upgrade(s, wsi);
	case LWS_CALLBACK_ESTABLISHED:
		on_established(s);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		return on_receive(s, wsi, in, len);
	case LWS_CALLBACK_RECEIVE_PONG: /* the peer is alive though idle: keep it */
		if (s->st == S_READY) {
			s->last_data_ms = now_ms(s->w);
			s->w->st.pongs++;
		}
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return on_writeable(s, wsi);
	case LWS_CALLBACK_CLOSED:
		map_remove(s);
		s->st = S_CLOSING;
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		lws_set_opaque_user_data(wsi, NULL);
		s->wsi = NULL;
		if (!s->adopting)
			sess_free(s);
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static const struct lws_protocols wss_protocols[] = {
	/* rx 4096 per connection (its memory); writes of a whole batch at once: lws
	 * cuts a write at tx_packet_size (else rx_buffer_size) and buffers the rest */
	{ .name = RDV_WSS_PROTOCOL, .callback = wss_cb, .rx_buffer_size = 4096, .tx_packet_size = WSS_BATCH },
	{ .name = NULL },
};

/* ---- accepting ------------------------------------------------------------------------- */

/* Token bucket per source IP (a lossy direct-mapped table keyed with SipHash). */
static bool rate_ok(rdv_wss *w, const struct sockaddr_storage *ss)
{
	uint8_t ip[16] = { 0 }, h[crypto_shorthash_BYTES];
	rate_ent *e;
	uint64_t now = now_ms(w), idx;

	if (w->rate_burst < 0)
		return true;
	if (ss->ss_family == AF_INET) {
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else {
		memcpy(ip, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	}
	crypto_shorthash(h, ip, sizeof(ip), w->rkey);
	memcpy(&idx, h, sizeof(idx));
	e = &w->rate[idx % WSS_RATE_N];
	if (memcmp(e->ip, ip, 16) != 0 || !e->ms) {
		memcpy(e->ip, ip, 16);
		e->tokens = (double)w->rate_burst;
		e->ms = now;
	}
	e->tokens += (double)(now - e->ms) * (double)w->rate_per_min / 60000.0;
	if (e->tokens > (double)w->rate_burst)
		e->tokens = (double)w->rate_burst;
	e->ms = now;
	if (e->tokens < 1.0)
		return false;
	e->tokens -= 1.0;
	return true;
}

static void adopt(rdv_wss *w, int fd)
{
	wsess *s = calloc(1, sizeof(*s));
	lws_adopt_desc_t ad = { .vh = w->vh, .type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP };
	struct lws *wsi;

	if (!s || pilot_loop_add_fd(w->loop, fd, PILOT_EV_READ, on_fd, s) < 0) {
		free(s);
		close(fd);
		w->st.refused_other++;
		return;
	}
	s->w = w;
	s->fd = fd;
	s->mask = PILOT_EV_READ;
	s->next = w->all;
	if (w->all)
		w->all->prev = s;
	w->all = s;
	w->nconns++;
	w->st.conns = (uint64_t)w->nconns;
	if (w->tls)
		ad.type |= LWS_ADOPT_ALLOW_SSL;
	ad.fd.sockfd = fd;
	ad.opaque = s;
	s->adopting = true;
	wsi = lws_adopt_descriptor_vhost_via_info(&ad); /* on failure lws closed fd */
	s->adopting = false;
	if (!wsi) {
		w->st.refused_other++;
		sess_free(s);
		return;
	}
	s->wsi = wsi;
	kick(w);
}

static void on_accept(pilot_loop *l, int lfd, int events, void *arg)
{
	rdv_wss *w = arg;

	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		if (!rate_ok(w, &ss) || w->nconns >= w->max_peers + WSS_EXTRA_CONNS) {
			w->st.refused_rate++;
			close(fd);
			continue;
		}
		/* One Pilot packet per message, often small: no Nagle (lws sets it on
		 * the sockets it accepts itself, not on adopted ones). */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
		adopt(w, fd);
	}
}

/* ---- timers ---------------------------------------------------------------------------- */

static void sweep(rdv_wss *w)
{
	uint64_t now = now_ms(w);

	for (wsess *s = w->all; s; s = s->next) {
		if (s->st == S_AUTH && now >= s->deadline_ms) {
			w->st.auth_timeout++;
			sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "auth failed");
		} else if (s->st == S_READY && now >= s->last_data_ms + (uint64_t)w->idle_ms) {
			w->st.idle_closed++;
			sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "idle timeout");
		} else if (s->st == S_READY && s->wsi && !s->ping_due &&
			   now >= s->last_data_ms + (uint64_t)w->idle_ms / 3 &&
			   now >= s->ping_ms + (uint64_t)w->idle_ms / 3) {
			/* Quiet for a third of the limit: ping; the pong counts as data. */
			s->ping_due = true;
			s->ping_ms = now;
			lws_callback_on_writable(s->wsi);
			kick(w);
		}
		sess_sync(s);
	}
}

static int64_t tick_cb(pilot_loop *l, uint64_t id, void *arg)
{
	rdv_wss *w = arg;

	service(w);
	sweep(w);
	return WSS_TICK_MS;
}

/* ---- set-up ----------------------------------------------------------------------------- */

static int listen_on(const char *addr, int *port)
{
	char host[256], ps[16];
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd, one = 1, zero = 0, rc;

	if (pilot_split_hostport(addr, host, sizeof(host), ps, sizeof(ps)) < 0)
		return -EINVAL;
	if (!host[0])
		hints.ai_family = AF_INET6;
	rc = getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai);
	if (rc != 0 && !host[0]) {
		hints.ai_family = AF_INET;
		rc = getaddrinfo(NULL, ps, &hints, &ai);
	}
	if (rc != 0)
		return rc == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6 && !host[0])
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 512) < 0
	    || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		goto fail;
	freeaddrinfo(ai);
	*port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					       : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
fail:
	rc = -errno;
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return rc;
}

static int lws_setup(rdv_wss *w, const rdv_wss_config *cfg, char *err, size_t errlen)
{
	struct lws_context_creation_info ci;

	pilot_lws_log_to_pilot();
	memset(&ci, 0, sizeof(ci));
	ci.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	if (w->tls)
		ci.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	ci.gid = (gid_t)-1;
	ci.uid = (uid_t)-1;
	if (!(w->lw.ctx = lws_create_context(&ci))) {
		snprintf(err, errlen, "wss %s: cannot create the libwebsockets context", cfg->addr);
		return -1;
	}
	memset(&ci, 0, sizeof(ci));
	ci.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	ci.vhost_name = "pilot-wss";
	ci.protocols = wss_protocols;
	if (w->tls) {
		ci.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		ci.ssl_cert_filepath = cfg->tls_cert;
		ci.ssl_private_key_filepath = cfg->tls_key;
	}
	if (!(w->vh = lws_create_vhost(w->lw.ctx, &ci))) {
		snprintf(err, errlen, "wss %s: cannot set up the listener%s", cfg->addr,
			 w->tls ? " (check -wss-tls-cert and -wss-tls-key)" : "");
		return -1;
	}
	return 0;
}

rdv_wss *rdv_wss_new(pilot_loop *loop, const rdv_wss_config *cfg, char *err, size_t errlen)
{
	rdv_wss *w = calloc(1, sizeof(*w));
	int fd;

	if (!w) {
		snprintf(err, errlen, "wss %s: out of memory", cfg->addr);
		return NULL;
	}
	w->loop = loop;
	w->lw = (pilot_lws){ .loop = loop };
	w->reg = cfg->reg;
	w->bcn = cfg->bcn;
	w->lfd = -1;
	w->tls = cfg->tls_cert && cfg->tls_cert[0];
	w->max_peers = cfg->max_peers > 0 ? cfg->max_peers : 10000;
	w->rate_burst = cfg->rate_burst ? cfg->rate_burst : 20;
	w->rate_per_min = cfg->rate_per_min > 0 ? cfg->rate_per_min : 60;
	w->auth_ms = cfg->auth_ms > 0 ? cfg->auth_ms : 10000;
	w->idle_ms = cfg->idle_ms > 0 ? cfg->idle_ms : 90000;
	w->max_queued = cfg->max_queued > 0 ? (uint64_t)cfg->max_queued : 256u << 20;
	randombytes_buf(w->rkey, sizeof(w->rkey));
	if (lws_setup(w, cfg, err, errlen) < 0)
		goto fail;
	if ((fd = listen_on(cfg->addr, &w->port)) < 0) {
		snprintf(err, errlen, "cannot listen on TCP %s: %s", cfg->addr,
			 fd == -EINVAL ? "want host:port, [v6]:port or :port" : strerror(-fd));
		goto fail;
	}
	w->lfd = fd;
	if (pilot_loop_add_fd(loop, fd, PILOT_EV_READ, on_accept, w) < 0
	    || !(w->tick_timer = pilot_loop_add_timer(loop, WSS_TICK_MS, tick_cb, w))) {
		snprintf(err, errlen, "wss %s: cannot watch the listener", cfg->addr);
		goto fail;
	}
	beacon_set_wss_sink(w->bcn, &(beacon_wss_sink){ .has = sink_has, .deliver = sink_deliver,
							 .ctx = w });
	return w;
fail:
	rdv_wss_free(w);
	return NULL;
}

void rdv_wss_free(rdv_wss *w)
{
	if (!w)
		return;
	if (w->bcn) {
		inject_flush(w); /* nothing queued may point into w->inj */
		beacon_set_wss_sink(w->bcn, NULL);
	}
	if (w->lfd >= 0) {
		pilot_loop_del_fd(w->loop, w->lfd);
		close(w->lfd);
	}
	if (w->lw.ctx)
		lws_context_destroy(w->lw.ctx); /* WSI_DESTROY frees every session */
	w->lw.ctx = NULL;
	while (w->all)
		sess_free(w->all);
	while (w->nspare)
		free(w->spare[--w->nspare]);
	pilot_lws_stop(&w->lw);
	if (w->tick_timer)
		pilot_loop_del_timer(w->loop, w->tick_timer);
	if (w->flush_timer)
		pilot_loop_del_timer(w->loop, w->flush_timer);
	free(w);
}

int rdv_wss_port(const rdv_wss *w)
{
	return w->port;
}

void rdv_wss_get_stats(const rdv_wss *w, rdv_wss_stats *st)
{
	*st = w->st;
}

void rdv_wss_advance_clock(rdv_wss *w, int64_t s)
{
	w->skew_s += s;
}

static void series(FILE *f, const char *name, const char *help, uint64_t v, bool gauge)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name,
		gauge ? "gauge" : "counter", name, (unsigned long long)v);
}

void rdv_wss_metrics(const rdv_wss *w, FILE *f)
{
	const rdv_wss_stats *s = &w->st;

	series(f, "pilot_wss_upgrades_total", "Compat WebSocket upgrades accepted.", s->upgrades, false);
	fprintf(f, "# HELP pilot_wss_refused_total Compat connections refused, by reason.\n"
		   "# TYPE pilot_wss_refused_total counter\n"
		   "pilot_wss_refused_total{reason=\"full\"} %llu\n"
		   "pilot_wss_refused_total{reason=\"rate\"} %llu\n"
		   "pilot_wss_refused_total{reason=\"other\"} %llu\n",
		(unsigned long long)s->refused_full, (unsigned long long)s->refused_rate,
		(unsigned long long)s->refused_other);
	fprintf(f, "# HELP pilot_wss_auth_total Compat authentications, by outcome.\n"
		   "# TYPE pilot_wss_auth_total counter\n"
		   "pilot_wss_auth_total{outcome=\"ok\"} %llu\n"
		   "pilot_wss_auth_total{outcome=\"failed\"} %llu\n"
		   "pilot_wss_auth_total{outcome=\"timeout\"} %llu\n",
		(unsigned long long)s->auth_ok, (unsigned long long)s->auth_failed,
		(unsigned long long)s->auth_timeout);
	series(f, "pilot_wss_peers", "Authenticated compat connections.", s->peers, true);
	series(f, "pilot_wss_frames_in_total", "Binary messages from compat peers.", s->frames_in, false);
	series(f, "pilot_wss_frames_out_total", "Binary messages to compat peers.", s->frames_out, false);
	series(f, "pilot_wss_replaced_total", "Connections replaced by a newer one of the same node.",
	       s->replaced, false);
	series(f, "pilot_wss_idle_disconnects_total", "Connections closed without data for the idle limit.",
	       s->idle_closed, false);
	series(f, "pilot_wss_oversize_total", "Connections closed for a message over 65536 bytes.",
	       s->oversize, false);
	series(f, "pilot_wss_text_ignored_total", "Text messages ignored after authentication.",
	       s->text_ignored, false);
	series(f, "pilot_wss_pings_total", "Pings sent to quiet compat peers.", s->pings_sent, false);
	series(f, "pilot_wss_pongs_total", "Pongs received (each keeps a quiet peer).", s->pongs, false);
	series(f, "pilot_wss_byes_total", "Compat connections ended by the peer's bye message.", s->byes,
	       false);
	series(f, "pilot_wss_queue_dropped_total", "Messages dropped at a full peer send queue.",
	       s->queue_dropped, false);
	series(f, "pilot_wss_queue_dropped_global_total",
	       "Messages dropped because all peers' send queues together reached -wss-max-queued.",
	       s->queue_dropped_total, false);
	series(f, "pilot_wss_queued_bytes", "Memory held by the send queues of all compat peers.",
	       s->queued_bytes, true);
}
