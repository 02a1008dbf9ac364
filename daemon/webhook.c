/* Webhooks on the loop; see webhook.h. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "daemon/ctlsrv_args.h"
#include "daemon/ctlsrv_op.h"
#include "daemon/node.h"
#include "daemon/peer.h"
#include "daemon/regclient.h"
#include "daemon/webhook.h"
#include "lib/hostport.h"
#include "lib/log.h"
#include "stream/conn.h"

#define MAX_ROOTS 8

enum wh_pkt_class {
	WH_PKT_DATAGRAM,
	WH_PKT_SYN_RATE,
	WH_PKT_REPLAY,
	WH_PKT_CLASSES
};

enum wh_state { WH_IDLE, WH_CONNECTING, WH_HANDSHAKE, WH_SENDING, WH_READING, WH_BACKOFF };

struct webhook {
	struct node *n;
	char *url;
	bool tls;
	char host[300], port[8], path[1024];
	struct sockaddr_storage addr;
	socklen_t alen;
	const regclient_transport *tp;
	regclient_tls_config *tlscfg;
	char *q[WEBHOOK_QUEUE]; /* JSON bodies */
	size_t qhead, qlen;
	enum wh_state state;
	int fd;
	void *tctx;
	char *req;
	size_t reqlen, reqoff;
	char resp[512];
	size_t resplen;
	int tries;
	uint64_t timer, deadline;
	webhook_stats st;
	struct wh_bucket {
		uint64_t last_us;
		uint32_t tokens;
		uint64_t suppressed;
	} pkt[WH_PKT_CLASSES];
};

static void attempt(webhook *w);

webhook *webhook_new(struct node *n)
{
	webhook *w = calloc(1, sizeof(*w));

	if (w) {
		w->n = n;
		w->fd = -1;
	}
	return w;
}

static void conn_drop(webhook *w)
{
	if (w->tctx)
		w->tp->close(w->tctx);
	w->tctx = NULL;
	if (w->fd >= 0) {
		pilot_loop_del_fd(w->n->loop, w->fd);
		close(w->fd);
	}
	w->fd = -1;
	if (w->deadline)
		pilot_loop_del_timer(w->n->loop, w->deadline);
	w->deadline = 0;
	free(w->req);
	w->req = NULL;
}

static void pop(webhook *w)
{
	free(w->q[w->qhead]);
	w->q[w->qhead] = NULL;
	w->qhead = (w->qhead + 1) % WEBHOOK_QUEUE;
	w->qlen--;
	w->tries = 0;
}

static void clear_queue(webhook *w)
{
	while (w->qlen)
		pop(w);
}

static void stop(webhook *w)
{
	conn_drop(w);
	if (w->timer)
		pilot_loop_del_timer(w->n->loop, w->timer);
	w->timer = 0;
	w->state = WH_IDLE;
}

void webhook_free(webhook *w)
{
	if (!w)
		return;
	stop(w);
	clear_queue(w);
	regclient_tls_config_free(w->tlscfg);
	free(w->url);
	free(w);
}

static int64_t backoff_done(pilot_loop *l, uint64_t id, void *arg)
{
	webhook *w = arg;

	(void)l;
	(void)id;
	w->timer = 0;
	w->state = WH_IDLE;
	attempt(w);
	return 0;
}

/* The attempt at the head of the queue ended: status (> 0) or -errno. */
static void done(webhook *w, int status)
{
	bool retry = status <= 0 || status >= 500 || status == 408 || status == 429;

	conn_drop(w);
	w->state = WH_IDLE;
	if (status >= 200 && status < 300) {
		w->st.delivered++;
		pop(w);
	} else if (!retry || ++w->tries >= WEBHOOK_TRIES) {
		if (status > 0)
			w->st.http_errors++;
		w->st.failed++;
		log_warn("webhook: %s: event dropped after %d attempt(s): %s%d", w->url, w->tries ? w->tries : 1,
			 status > 0 ? "HTTP " : "errno ", status > 0 ? status : -status);
		pop(w);
	} else {
		if (status > 0)
			w->st.http_errors++;
		w->st.retries++;
		w->state = WH_BACKOFF;
		w->timer = pilot_loop_add_timer(w->n->loop, 500LL << (w->tries - 1), backoff_done, w);
		return;
	}
	attempt(w);
}

static int64_t deadline_hit(pilot_loop *l, uint64_t id, void *arg)
{
	webhook *w = arg;

	(void)l;
	(void)id;
	w->deadline = 0;
	done(w, -ETIMEDOUT);
	return 0;
}

static void step(webhook *w, int events);

static void fd_cb(pilot_loop *l, int fd, int events, void *arg)
{
	(void)l;
	(void)fd;
	step(arg, events);
}

static void step(webhook *w, int events)
{
	int rc, want = 0;
	ssize_t n;

	if (w->state == WH_CONNECTING) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (!(events & (PILOT_EV_WRITE | PILOT_EV_ERROR)))
			return;
		if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
			done(w, -(soerr ? soerr : errno));
			return;
		}
		if ((rc = w->tp->open(w->tlscfg, w->fd, w->host, &w->tctx)) < 0) {
			done(w, rc);
			return;
		}
		w->state = WH_HANDSHAKE;
	}
	if (w->state == WH_HANDSHAKE) {
		rc = w->tp->handshake(w->tctx, w->fd, &want);
		if (rc == -EAGAIN) {
			pilot_loop_mod_fd(w->n->loop, w->fd, want);
			return;
		}
		if (rc < 0) {
			done(w, rc);
			return;
		}
		w->state = WH_SENDING;
	}
	if (w->state == WH_SENDING) {
		while (w->reqoff < w->reqlen) {
			n = w->tp->write(w->tctx, w->fd, w->req + w->reqoff, w->reqlen - w->reqoff);
			if (n == -EAGAIN) {
				pilot_loop_mod_fd(w->n->loop, w->fd, PILOT_EV_WRITE);
				return;
			}
			if (n <= 0) {
				done(w, n < 0 ? (int)n : -EPIPE);
				return;
			}
			w->reqoff += (size_t)n;
		}
		w->state = WH_READING;
		pilot_loop_mod_fd(w->n->loop, w->fd, PILOT_EV_READ);
	}
	if (w->state == WH_READING) {
		for (;;) {
			char *eol;
			int status;

			n = w->tp->read(w->tctx, w->fd, w->resp + w->resplen, sizeof(w->resp) - 1 - w->resplen);
			if (n == -EAGAIN)
				return;
			if (n <= 0) {
				done(w, n < 0 ? (int)n : -ECONNRESET);
				return;
			}
			w->resplen += (size_t)n;
			w->resp[w->resplen] = '\0';
			if ((eol = strstr(w->resp, "\r\n")) || w->resplen == sizeof(w->resp) - 1) {
				/* "HTTP/1.1 200 OK": three digits after the first space */
				{
					const char *sp = strchr(w->resp, ' ');

					status = -EPROTO;
					if (!strncmp(w->resp, "HTTP/", 5) && sp && sp[1] >= '1' && sp[1] <= '9' &&
					    sp[2] >= '0' && sp[2] <= '9' && sp[3] >= '0' && sp[3] <= '9')
						status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
				}
				done(w, status);
				return;
			}
		}
	}
}

static void attempt(webhook *w)
{
	const char *body;
	size_t blen;
	char sig[160] = "";
	int len;

	if (w->state != WH_IDLE || !w->qlen || !w->url)
		return;
	body = w->q[w->qhead];
	blen = strlen(body);
	if (w->n->o.webhook_secret && *w->n->o.webhook_secret) {
		uint8_t mac[crypto_auth_hmacsha256_BYTES];
		char hex[2 * sizeof(mac) + 1];
		crypto_auth_hmacsha256_state hs;

		crypto_auth_hmacsha256_init(&hs, (const uint8_t *)w->n->o.webhook_secret,
					    strlen(w->n->o.webhook_secret));
		crypto_auth_hmacsha256_update(&hs, (const uint8_t *)body, blen);
		crypto_auth_hmacsha256_final(&hs, mac);
		sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
		snprintf(sig, sizeof(sig), "X-Pilot-Signature: sha256=%s\r\n", hex);
	}
	len = snprintf(NULL, 0,
		       "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: pilotd\r\nContent-Type: application/json\r\n"
		       "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
		       w->path, w->host, w->port, blen, sig);
	if (len < 0 || !(w->req = malloc((size_t)len + blen + 1))) {
		done(w, -ENOMEM);
		return;
	}
	snprintf(w->req, (size_t)len + 1,
		 "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: pilotd\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
		 w->path, w->host, w->port, blen, sig);
	memcpy(w->req + len, body, blen);
	w->reqlen = (size_t)len + blen;
	w->reqoff = 0;
	w->resplen = 0;
	w->fd = socket(w->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (w->fd < 0) {
		done(w, -errno);
		return;
	}
	w->state = WH_CONNECTING;
	w->deadline = pilot_loop_add_timer(w->n->loop, WEBHOOK_TIMEOUT_MS, deadline_hit, w);
	if (connect(w->fd, (struct sockaddr *)&w->addr, w->alen) < 0 && errno != EINPROGRESS) {
		done(w, -errno);
		return;
	}
	if (pilot_loop_add_fd(w->n->loop, w->fd, PILOT_EV_WRITE, fd_cb, w) < 0)
		done(w, -EIO);
}

static int split_roots(const char *list, char **out, size_t max)
{
	char *dup = strdup(list ? list : ""), *save = NULL, *tok;
	size_t n = 0;

	if (!dup)
		return -1;
	for (tok = strtok_r(dup, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (*tok)
			out[n++] = strdup(tok);
	}
	out[n] = NULL;
	free(dup);
	return (int)n;
}

int webhook_set(webhook *w, const char *url, char *err, size_t errlen)
{
	const char *rest, *slash;
	char hp[300];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai = NULL;
	bool tls;
	size_t hl;

	stop(w);
	clear_queue(w);
	free(w->url);
	w->url = NULL;
	regclient_tls_config_free(w->tlscfg);
	w->tlscfg = NULL;
	if (!url || !*url)
		return 0;
	if (!strncmp(url, "http://", 7)) {
		tls = false;
		rest = url + 7;
	} else if (!strncmp(url, "https://", 8)) {
		tls = true;
		rest = url + 8;
	} else {
		snprintf(err, errlen, "the webhook URL must start with http:// or https://");
		return -EINVAL;
	}
	slash = strchr(rest, '/');
	hl = slash ? (size_t)(slash - rest) : strlen(rest);
	if (!hl || hl >= sizeof(hp)) {
		snprintf(err, errlen, "no host in the webhook URL");
		return -EINVAL;
	}
	memcpy(hp, rest, hl);
	hp[hl] = '\0';
	snprintf(w->path, sizeof(w->path), "%s", slash ? slash : "/");
	if (!strchr(hp, ':') || (hp[0] == '[' && !strstr(hp, "]:"))) {
		snprintf(w->host, sizeof(w->host), "%s", hp);
		snprintf(w->port, sizeof(w->port), "%s", tls ? "443" : "80");
		if (w->host[0] == '[') {
			memmove(w->host, w->host + 1, strlen(w->host));
			w->host[strcspn(w->host, "]")] = '\0';
		}
	} else if (pilot_split_hostport(hp, w->host, sizeof(w->host), w->port, sizeof(w->port)) < 0) {
		snprintf(err, errlen, "bad host:port in the webhook URL");
		return -EINVAL;
	}
	if (getaddrinfo(w->host, w->port, &hints, &ai) != 0 || !ai) {
		snprintf(err, errlen, "cannot resolve %s", w->host);
		return -EINVAL;
	}
	memcpy(&w->addr, ai->ai_addr, ai->ai_addrlen);
	w->alen = ai->ai_addrlen;
	freeaddrinfo(ai);
	w->tls = tls;
	w->tp = tls ? &regclient_tls : &regclient_tcp;
	if (tls) {
		const node_options *o = &w->n->o;
		bool pinned = o->tls_trust && !strcmp(o->tls_trust, "pinned");
		char *roots[MAX_ROOTS + 1] = { NULL };
		int nr = pinned ? split_roots(o->tls_root, roots, MAX_ROOTS) : 0;

		w->tlscfg = regclient_tls_config_new(nr > 0 ? (const char *const *)roots : NULL, !pinned, NULL, err,
						     errlen);
		for (int i = 0; i < nr; i++)
			free(roots[i]);
		if (!w->tlscfg)
			return -EINVAL;
	}
	if (!(w->url = strdup(url)))
		return -ENOMEM;
	log_info("webhook url=%s signed=%d", url, w->n->o.webhook_secret && *w->n->o.webhook_secret);
	return 0;
}

void webhook_emit(webhook *w, const char *event, json_object *data)
{
	json_object *o;
	struct timespec ts;
	struct tm tm;
	char t[64], ns[16];
	const char *s;

	if (!w || !w->url) {
		json_object_put(data);
		return;
	}
	if (w->qlen >= WEBHOOK_QUEUE) {
		w->st.dropped++;
		json_object_put(data);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ns, sizeof(ns), ".%09ldZ", ts.tv_nsec);
	strncat(t, ns, sizeof(t) - strlen(t) - 1);
	o = json_object_new_object();
	json_object_object_add(o, "event", json_object_new_string(event));
	json_object_object_add(o, "node_id", json_object_new_int64(w->n->node_id));
	json_object_object_add(o, "timestamp", json_object_new_string(t));
	if (data)
		json_object_object_add(o, "data", data);
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	w->q[(w->qhead + w->qlen) % WEBHOOK_QUEUE] = strdup(s);
	json_object_put(o);
	if (!w->q[(w->qhead + w->qlen) % WEBHOOK_QUEUE]) {
		w->st.dropped++;
		return;
	}
	w->qlen++;
	w->st.queued++;
	attempt(w);
}

void node_webhook(struct node *n, const char *event, json_object *data)
{
	webhook_emit(n && n->svc ? n->svc->wh : NULL, event, data);
}

/* ---- per-packet events: a token bucket per event, no allocation when over ---- */

static webhook *node_wh(void *ctx)
{
	node *n = ctx;
	webhook *w = n && n->svc ? n->svc->wh : NULL;

	return w && w->url ? w : NULL;
}

/* NULL when the event is over its rate (counted), else a new data object
 * (with "suppressed" when some were). */
static json_object *pkt_allow(webhook *w, enum wh_pkt_class c)
{
	struct wh_bucket *b = &w->pkt[c];
	struct timespec ts;
	uint64_t now, add;
	json_object *d;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	if (!b->last_us) {
		b->tokens = WEBHOOK_PKT_RATE;
		b->last_us = now;
	}
	add = (now - b->last_us) * WEBHOOK_PKT_RATE / 1000000u;
	if (add) {
		b->tokens = (uint32_t)(b->tokens + add > WEBHOOK_PKT_RATE ? WEBHOOK_PKT_RATE
									  : b->tokens + add);
		b->last_us += add * 1000000u / WEBHOOK_PKT_RATE;
	}
	if (!b->tokens) {
		b->suppressed++;
		w->st.suppressed++;
		return NULL;
	}
	b->tokens--;
	d = json_object_new_object();
	if (b->suppressed)
		json_object_object_add(d, "suppressed", json_object_new_int64((int64_t)b->suppressed));
	b->suppressed = 0;
	return d;
}

static void add_addr(json_object *d, const char *key, pilot_addr a)
{
	char s[PILOT_ADDR_STRLEN];

	json_object_object_add(d, key, json_object_new_string(pilot_addr_format(a, s)));
}

static void add_int(json_object *d, const char *key, int64_t v)
{
	json_object_object_add(d, key, json_object_new_int64(v));
}

void webhook_conn_event(void *ctx, enum conn_event ev, const conn_event_info *e)
{
	static const char *const names[] = {
		[CONN_EV_SYN_RECEIVED] = "conn.syn_received",
		[CONN_EV_ESTABLISHED] = "conn.established",
		[CONN_EV_FIN] = "conn.fin",
		[CONN_EV_RST] = "conn.rst",
		[CONN_EV_IDLE_TIMEOUT] = "conn.idle_timeout",
		[CONN_EV_SYN_RATE_LIMITED] = "security.syn_rate_limited",
		[CONN_EV_DATAGRAM] = "data.datagram",
	};
	webhook *w = node_wh(ctx);
	json_object *d;

	if (!w || (unsigned)ev >= sizeof(names) / sizeof(names[0]))
		return;
	switch (ev) {
	case CONN_EV_DATAGRAM:
		if (!(d = pkt_allow(w, WH_PKT_DATAGRAM)))
			return;
		add_addr(d, "src_addr", e->remote);
		add_int(d, "src_port", e->rport);
		add_int(d, "dst_port", e->lport);
		add_int(d, "size", (int64_t)e->len);
		break;
	case CONN_EV_SYN_RATE_LIMITED:
		if (!(d = pkt_allow(w, WH_PKT_SYN_RATE)))
			return;
		add_addr(d, "src_addr", e->remote);
		add_int(d, "src_port", e->rport);
		break;
	case CONN_EV_SYN_RECEIVED:
	case CONN_EV_ESTABLISHED:
		d = json_object_new_object();
		add_addr(d, "src_addr", e->remote);
		add_int(d, "src_port", e->rport);
		add_int(d, "dst_port", e->lport);
		add_int(d, "conn_id", e->conn_id);
		break;
	default:
		d = json_object_new_object();
		add_addr(d, "remote_addr", e->remote);
		add_int(d, "remote_port", e->rport);
		add_int(d, "local_port", e->lport);
		add_int(d, "conn_id", e->conn_id);
		break;
	}
	webhook_emit(w, names[ev], d);
}

void webhook_peer_event(void *ctx, enum peer_event ev, uint32_t peer_node, const peer_event_info *e)
{
	webhook *w = node_wh(ctx);
	char ep[TRANSPORT_EP_STRLEN];
	const char *name;
	json_object *d;

	if (!w)
		return;
	if (ev == PEER_EV_NONCE_REPLAY) {
		if (!(d = pkt_allow(w, WH_PKT_REPLAY)))
			return;
	} else {
		d = json_object_new_object();
	}
	add_int(d, "peer_node_id", peer_node);
	switch (ev) {
	case PEER_EV_ADDED:
		name = "tunnel.peer_added";
		json_object_object_add(
			d, "endpoint",
			json_object_new_string(e->ep ? transport_ep_format(e->ep, ep) : "relay"));
		break;
	case PEER_EV_ESTABLISHED:
		name = "tunnel.established";
		json_object_object_add(d, "authenticated", json_object_new_boolean(e->authenticated));
		json_object_object_add(d, "relay", json_object_new_boolean(e->relay));
		json_object_object_add(d, "rekeyed", json_object_new_boolean(e->rekeyed));
		break;
	case PEER_EV_RELAY:
		name = "tunnel.relay_activated";
		break;
	default:
		name = "security.nonce_replay";
		json_object_object_add(d, "counter", json_object_new_uint64(e->counter));
		break;
	}
	webhook_emit(w, name, d);
}

void webhook_get_stats(const webhook *w, webhook_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (w) {
		*st = w->st;
		st->waiting = w->qlen;
	}
}

/* ---- verbs ---- */

static json_object *stats_json(const webhook *w)
{
	webhook_stats st;
	json_object *o = json_object_new_object();

	webhook_get_stats(w, &st);
	json_object_object_add(o, "url", json_object_new_string(w && w->url ? w->url : ""));
	json_object_object_add(o, "queued", json_object_new_int64((int64_t)st.queued));
	json_object_object_add(o, "delivered", json_object_new_int64((int64_t)st.delivered));
	json_object_object_add(o, "failed", json_object_new_int64((int64_t)st.failed));
	json_object_object_add(o, "dropped", json_object_new_int64((int64_t)st.dropped));
	json_object_object_add(o, "retries", json_object_new_int64((int64_t)st.retries));
	json_object_object_add(o, "suppressed", json_object_new_int64((int64_t)st.suppressed));
	json_object_object_add(o, "waiting", json_object_new_int64((int64_t)st.waiting));
	return o;
}

void verb_set_webhook(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *url = ctlsrv_arg_str(args, "url");
	char err[256] = "";

	if (!cop_can_start(r, n))
		return;
	if (!n->svc->wh && !(n->svc->wh = webhook_new(n))) {
		ctlsrv_reply_err(r, "internal", "out of memory", NULL);
		return;
	}
	if (url && *url && webhook_set(n->svc->wh, url, err, sizeof(err)) < 0) {
		ctlsrv_reply_err(r, "invalid_argument", err[0] ? err : "bad webhook URL", NULL);
		return;
	}
	if (!url || !*url) {
		/* no url: show the state */
		ctlsrv_reply_ok(r, stats_json(n->svc->wh));
		return;
	}
	ctlsrv_reply_ok(r, stats_json(n->svc->wh));
}

void verb_clear_webhook(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	char err[64];

	(void)args;
	if (!cop_can_start(r, n))
		return;
	if (n->svc->wh)
		webhook_set(n->svc->wh, NULL, err, sizeof(err));
	ctlsrv_reply_ok(r, stats_json(n->svc->wh));
}
