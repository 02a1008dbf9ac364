/* SOCKS5 / HTTP proxy / forward listeners (see proxy.h). One client record per
 * connection in its request phase, with one fixed buffer; after the hand-over
 * to the bridge the record waits for the dial's answer and is freed. */
#include "daemon/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <json-c/json.h>
#include <sodium.h>

#include "lib/hostport.h"
#include "lib/log.h"

#define BUF_CAP       (PX_HTTP_HEAD_MAX + 1024)
#define MAX_LISTENERS 80
#define RATE_SLOTS    256

typedef struct px_listener {
	proxy *p;
	enum proxy_kind kind;
	int fd;
	char listen[128];
	char target[300];
	px_dest fwd; /* PROXY_FORWARD: parsed target */
	unsigned pending;
} px_listener;

enum cl_phase {
	CL_GREETING,
	CL_AUTH,
	CL_REQUEST,
	CL_HTTP,
	CL_RESOLVING,
	CL_DIALING,
	CL_UDP
};

/* A SOCKS5 UDP association (RFC 1928 §7): a local UDP socket the client sends
 * its datagrams to and a Pilot datagram port the answers come back to; it
 * lives as long as the client's TCP connection. One datagram waits while a
 * name is resolved (the last name is remembered). */
typedef struct px_udp {
	int fd;
	uint16_t pport;
	tunbridge *b;
	struct sockaddr_storage client;
	socklen_t client_len;
	bool client_known;
	bool resolving;
	char name[PX_HOST_MAX + 1];
	pilot_addr addr; /* of name, once resolved (node 0 = none) */
	uint8_t *held;
	size_t held_len;
	uint16_t held_port;
} px_udp;

typedef struct px_client {
	proxy *p;
	struct px_client *next, *prev;
	px_listener *ls; /* NULL once its listener is gone */
	int fd;
	enum cl_phase phase;
	bool gone;    /* closed while a resolve was out: free on its answer */
	bool fd_lent; /* fd belongs to the bridge (the dial is out) */
	px_udp *udp;  /* CL_UDP */
	uint64_t timer;
	px_dest dest;
	pilot_addr target; /* as resolved, once dialling */
	px_http_req http;
	size_t len;
	uint8_t buf[BUF_CAP];
} px_client;

typedef struct rate_slot {
	uint32_t key;
	double tokens;
	uint64_t at_ms;
} rate_slot;

struct proxy {
	proxy_config cfg;
	px_listener *ls[MAX_LISTENERS];
	rate_slot rate[RATE_SLOTS];
	px_client *clients;
	bool closing;
	proxy_stats st;
	uint8_t udpbuf[65536 + 16]; /* one datagram with its SOCKS header */
};

static void on_client(pilot_loop *l, int fd, int events, void *arg);
static void udp_free(px_client *c);

/* ---- life of a client ------------------------------------------------------------------ */

static void client_free(px_client *c)
{
	udp_free(c);
	if (c->timer)
		pilot_loop_del_timer(c->p->cfg.loop, c->timer);
	if (c->fd >= 0 && !c->fd_lent) {
		pilot_loop_del_fd(c->p->cfg.loop, c->fd);
		close(c->fd);
	}
	if (c->ls)
		c->ls->pending--;
	if (c->prev)
		c->prev->next = c->next;
	else
		c->p->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->p->st.pending--;
	free(c);
}

/* Drop the client now, or (a resolve is out) once it answers. */
static void client_close(px_client *c)
{
	if (c->phase != CL_RESOLVING && !(c->udp && c->udp->resolving)) {
		client_free(c);
		return;
	}
	c->gone = true;
	if (c->fd >= 0) {
		pilot_loop_del_fd(c->p->cfg.loop, c->fd);
		close(c->fd);
		c->fd = -1;
	}
}

static void reply(px_client *c, const void *buf, size_t len)
{
	if (c->fd >= 0)
		(void)send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT); /* a fresh socket takes it */
}

static void socks_fail(px_client *c, uint8_t rep)
{
	uint8_t out[10];

	reply(c, out, socks5_reply(rep, 0, 0, out));
	client_close(c);
}

static void http_fail(px_client *c, int code, const char *why)
{
	char out[256];
	int n = snprintf(out, sizeof(out),
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n%s\r\n%s\n",
			 code, why, strlen(why) + 1,
			 code == 407 ? "Proxy-Authenticate: Basic realm=\"pilot\"\r\n" : "", why);

	reply(c, out, (size_t)n);
	client_close(c);
}

static void fail(px_client *c, int err)
{
	uint8_t rep = SOCKS5_REP_FAILURE;
	int code = 502;
	const char *why = "Bad Gateway";

	if (err == -EACCES) {
		c->p->st.not_allowed++;
		rep = SOCKS5_REP_NOT_ALLOWED, code = 403,
		why = "Forbidden: the node is private and does not trust this one";
	} else if (err == -ENOENT || err == -EHOSTUNREACH) {
		c->p->st.unreachable++;
		rep = SOCKS5_REP_HOST_UNREACH, code = 502, why = "Bad Gateway: no such node or name";
	} else if (err == -ECONNREFUSED || err == -ECONNRESET) {
		c->p->st.refused++;
		rep = SOCKS5_REP_REFUSED, why = "Bad Gateway: connection refused";
	} else if (err == -ETIMEDOUT) {
		c->p->st.unreachable++;
		rep = SOCKS5_REP_TTL_EXPIRED, code = 504, why = "Gateway Timeout";
	}
	if (!c->ls || c->ls->kind == PROXY_FORWARD)
		client_close(c);
	else if (c->ls->kind == PROXY_SOCKS5)
		socks_fail(c, rep);
	else
		http_fail(c, code, why);
}

/* ---- hand-over to the bridge ------------------------------------------------------------- */

static void dialed(void *arg, int err, int fd)
{
	px_client *c = arg;
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	uint8_t out[10];

	c->fd = fd;
	if (err) {
		if (c->p->cfg.dial_failed)
			c->p->cfg.dial_failed(c->p->cfg.ctx, c->target, err);
		fail(c, err); /* frees c; the bridge closes fd after this */
		return;
	}
	c->p->st.connected++;
	if (c->ls && c->ls->kind == PROXY_SOCKS5)
		reply(c, out, socks5_reply(SOCKS5_REP_OK, 0, 0, out));
	else if (c->ls && c->ls->kind == PROXY_HTTP && c->http.connect)
		reply(c, ok, sizeof(ok) - 1);
	client_free(c);
}

/* The bytes to send ahead (the request itself is already cut off the buffer):
 * what followed a CONNECT / SOCKS request, or the whole absolute-form HTTP
 * request rewritten to origin form (px_http_origin_form). */
static size_t early_bytes(px_client *c, uint8_t *out, size_t cap)
{
	if (!c->ls || c->ls->kind != PROXY_HTTP || c->http.connect) {
		memcpy(out, c->buf, c->len);
		return c->len;
	}
	return px_http_origin_form((const char *)c->buf, c->len, &c->http, (char *)out, cap);
}

static void dial(px_client *c, pilot_addr a)
{
	tunbridge *b = c->p->cfg.bridge ? c->p->cfg.bridge(c->p->cfg.ctx) : NULL;
	uint8_t early[BUF_CAP + 64];
	size_t el = early_bytes(c, early, sizeof(early));
	int r;

	if (!b) {
		fail(c, -EAGAIN);
		return;
	}
	c->phase = CL_DIALING;
	c->target = a;
	r = tunbridge_sock_dial(b, c->fd, a, c->dest.port, early, el, dialed, c);
	if (r < 0)
		fail(c, r);
	else
		c->fd_lent = true;
}

static void resolved(void *arg, int err, pilot_addr a)
{
	px_client *c = arg;

	if (c->gone) {
		c->phase = CL_DIALING; /* any phase but RESOLVING: free now */
		client_free(c);
		return;
	}
	c->phase = CL_DIALING;
	if (err || c->p->closing)
		fail(c, err ? err : -ESHUTDOWN);
	else
		dial(c, a);
}

/* Resolve the destination; the request bytes (used) are cut off the buffer
 * first so what remains is the early data. */
static void go(px_client *c, size_t used)
{
	px_target t;

	if (c->timer)
		pilot_loop_del_timer(c->p->cfg.loop, c->timer);
	c->timer = 0;
	if (px_target_parse(&c->dest, &t) < 0) {
		fail(c, -ENOENT);
		return;
	}
	if (!c->ls || c->ls->kind != PROXY_HTTP || c->http.connect) {
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
	}
	pilot_loop_del_fd(c->p->cfg.loop, c->fd); /* nothing more until the dial settles */
	c->phase = CL_RESOLVING;
	c->p->cfg.resolve(c->p->cfg.ctx, &t, resolved, c);
}

/* ---- SOCKS5 UDP ASSOCIATE ------------------------------------------------------------------ */

static void udp_free(px_client *c)
{
	px_udp *u = c->udp;

	if (!u)
		return;
	if (u->fd >= 0) {
		pilot_loop_del_fd(c->p->cfg.loop, u->fd);
		close(u->fd);
	}
	if (u->pport && u->b && c->p->cfg.bridge && c->p->cfg.bridge(c->p->cfg.ctx) == u->b)
		tunbridge_udp_unbind(u->b, u->pport);
	free(u->held);
	free(u);
	c->udp = NULL;
}

/* A Pilot datagram to the association's port: to the client, with the
 * source's mapped IPv4 in the header. */
static void udp_from_pilot(void *arg, pilot_addr src, uint16_t sport, uint16_t dport, const uint8_t *data,
			   size_t len)
{
	px_client *c = arg;
	px_udp *u = c->udp;
	uint32_t ip4 = 0;

	(void)dport;
	if (!u || !u->client_known || len > sizeof(c->p->udpbuf) - 10)
		return;
	(void)tunbridge_ip_of(u->b, src, &ip4);
	socks5_udp_header(ip4, sport, c->p->udpbuf);
	memcpy(c->p->udpbuf + 10, data, len);
	(void)sendto(u->fd, c->p->udpbuf, len + 10, MSG_DONTWAIT, (struct sockaddr *)&u->client,
		     u->client_len);
	c->p->st.udp_in++;
}

static void udp_send(px_client *c, pilot_addr a, uint16_t port, const uint8_t *data, size_t len)
{
	if (tunbridge_udp_send(c->udp->b, c->udp->pport, a, port, data, len) == 0)
		c->p->st.udp_out++;
	else
		c->p->st.udp_dropped++;
}

static void udp_resolved(void *arg, int err, pilot_addr a)
{
	px_client *c = arg;
	px_udp *u = c->udp;

	u->resolving = false;
	if (c->gone) {
		client_free(c);
		return;
	}
	u->addr = err ? pilot_addr_make(0, 0) : a;
	if (!err && u->held_len)
		udp_send(c, a, u->held_port, u->held, u->held_len);
	else if (u->held_len)
		c->p->st.udp_dropped++;
	u->held_len = 0;
}

static void udp_target(px_client *c, const px_dest *d, const uint8_t *data, size_t len)
{
	px_udp *u = c->udp;
	px_target t;

	if (px_target_parse(d, &t) < 0 || t.kind == PX_TARGET_IP6) {
		c->p->st.udp_dropped++;
		return;
	}
	if (t.kind == PX_TARGET_ADDR) {
		udp_send(c, t.addr, d->port, data, len);
		return;
	}
	if (t.kind == PX_TARGET_IP4) {
		uint8_t ip[4] = { (uint8_t)(t.ip4 >> 24), (uint8_t)(t.ip4 >> 16), (uint8_t)(t.ip4 >> 8),
				  (uint8_t)t.ip4 };
		pilot_addr a;
		if (tunbridge_peer_of_ip(u->b, 4, ip, &a) == 0)
			udp_send(c, a, d->port, data, len);
		else
			c->p->st.udp_dropped++;
		return;
	}
	if (u->addr.node && !strcmp(u->name, t.name)) {
		udp_send(c, u->addr, d->port, data, len);
		return;
	}
	if (u->resolving || (!u->held && !(u->held = malloc(65536)))) {
		c->p->st.udp_dropped++;
		return;
	}
	memcpy(u->held, data, len);
	u->held_len = len;
	u->held_port = d->port;
	snprintf(u->name, sizeof(u->name), "%s", t.name);
	u->addr = pilot_addr_make(0, 0);
	u->resolving = true;
	c->p->cfg.resolve(c->p->cfg.ctx, &t, udp_resolved, c);
}

static bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
			((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		       &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
}

static void on_udp(pilot_loop *l, int fd, int events, void *arg)
{
	px_client *c = arg;
	struct sockaddr_storage from, tcp_peer;
	socklen_t fl, tl = sizeof(tcp_peer);
	uint8_t frag;
	px_dest d;
	ssize_t n;
	int h;

	(void)l;
	(void)events;
	if (getpeername(c->fd, (struct sockaddr *)&tcp_peer, &tl) < 0)
		return;
	for (int i = 0; i < 64 && c->udp; i++) {
		fl = sizeof(from);
		n = recvfrom(fd, c->p->udpbuf, sizeof(c->p->udpbuf), MSG_DONTWAIT, (struct sockaddr *)&from,
			     &fl);
		if (n < 0)
			return;
		if (!same_host(&from, &tcp_peer)) { /* only the client that asked (§7) */
			c->p->st.udp_dropped++;
			continue;
		}
		c->udp->client = from;
		c->udp->client_len = fl;
		c->udp->client_known = true;
		h = socks5_parse_udp(c->p->udpbuf, (size_t)n, &frag, &d);
		if (h < 0 || frag) { /* no fragmentation: dropped, as §7 allows */
			c->p->st.udp_dropped++;
			continue;
		}
		udp_target(c, &d, c->p->udpbuf + h, (size_t)n - (size_t)h);
	}
}

/* The relay socket on the address the client reached us on. */
static int udp_open(px_client *c, uint32_t *ip, uint16_t *port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	socklen_t sl = sizeof(ss);
	tunbridge *b = c->p->cfg.bridge ? c->p->cfg.bridge(c->p->cfg.ctx) : NULL;
	px_udp *u;

	if (!b || getsockname(c->fd, (struct sockaddr *)&ss, &sl) < 0 || ss.ss_family != AF_INET)
		return -EAFNOSUPPORT;
	if (!(u = calloc(1, sizeof(*u))))
		return -ENOMEM;
	u->b = b;
	c->udp = u;
	s4->sin_port = 0;
	u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd < 0 || bind(u->fd, (struct sockaddr *)s4, sizeof(*s4)) < 0 ||
	    getsockname(u->fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    pilot_loop_add_fd(c->p->cfg.loop, u->fd, PILOT_EV_READ, on_udp, c) < 0 ||
	    tunbridge_udp_bind(b, udp_from_pilot, c, &u->pport) < 0) {
		udp_free(c);
		return -EIO;
	}
	*ip = ntohl(s4->sin_addr.s_addr);
	*port = ntohs(s4->sin_port);
	return 0;
}

static void udp_associate(px_client *c)
{
	uint8_t out[10];
	uint32_t ip;
	uint16_t port;

	if (c->timer)
		pilot_loop_del_timer(c->p->cfg.loop, c->timer);
	c->timer = 0;
	if (udp_open(c, &ip, &port) < 0) {
		socks_fail(c, SOCKS5_REP_FAILURE);
		return;
	}
	c->phase = CL_UDP;
	c->p->st.udp_associations++;
	reply(c, out, socks5_reply(SOCKS5_REP_OK, ip, port, out));
}

/* ---- SOCKS5 ------------------------------------------------------------------------------- */

static bool auth_ok(const proxy *p, const char *user, const char *pass)
{
	size_t ul = strlen(user), pl = strlen(pass);

	return ul == strlen(p->cfg.user) && pl == strlen(p->cfg.pass) &&
		sodium_memcmp(user, p->cfg.user, ul) == 0 && sodium_memcmp(pass, p->cfg.pass, pl) == 0;
}

static int socks_step(px_client *c)
{
	char user[256], pass[256];
	uint8_t out[10], cmd = 0;
	unsigned offered;
	int n;

	switch (c->phase) {
	case CL_GREETING:
		if ((n = socks5_parse_greeting(c->buf, c->len, &offered)) <= 0)
			return n;
		out[0] = SOCKS5_VER;
		out[1] = c->p->cfg.user ? (offered & 2 ? SOCKS5_AUTH_USERPASS : SOCKS5_AUTH_NO_ACCEPTABLE)
					: (offered & 1 ? SOCKS5_AUTH_NONE : SOCKS5_AUTH_NO_ACCEPTABLE);
		reply(c, out, 2);
		if (out[1] == SOCKS5_AUTH_NO_ACCEPTABLE) {
			c->p->st.auth_failed++;
			return -EACCES;
		}
		c->phase = c->p->cfg.user ? CL_AUTH : CL_REQUEST;
		return n;
	case CL_AUTH:
		if ((n = socks5_parse_userpass(c->buf, c->len, user, pass)) <= 0)
			return n;
		out[0] = 1;
		out[1] = auth_ok(c->p, user, pass) ? 0 : 1;
		sodium_memzero(pass, sizeof(pass));
		reply(c, out, 2);
		if (out[1]) {
			c->p->st.auth_failed++;
			return -EACCES;
		}
		c->phase = CL_REQUEST;
		return n;
	default:
		n = socks5_parse_request(c->buf, c->len, &cmd, &c->dest);
		if (n == -EINVAL) {
			socks_fail(c, SOCKS5_REP_ATYP_UNSUPPORTED);
			return -EALREADY;
		}
		if (n <= 0)
			return n;
		if (cmd == SOCKS5_CMD_UDP_ASSOCIATE) {
			udp_associate(c);
			return -EALREADY;
		}
		if (cmd != SOCKS5_CMD_CONNECT) {
			socks_fail(c, SOCKS5_REP_CMD_UNSUPPORTED);
			return -EALREADY;
		}
		go(c, (size_t)n);
		return -EALREADY;
	}
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

static bool http_auth_ok(const proxy *p, const px_http_req *r)
{
	char want[600], cred[520];
	size_t wl;

	if (!p->cfg.user)
		return true;
	if (!r->proxy_auth || r->proxy_auth_len < 6 || strncasecmp(r->proxy_auth, "Basic ", 6) != 0)
		return false;
	snprintf(cred, sizeof(cred), "%s:%s", p->cfg.user, p->cfg.pass);
	sodium_bin2base64(want, sizeof(want), (const unsigned char *)cred, strlen(cred),
			  sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(cred, sizeof(cred));
	wl = strlen(want);
	return r->proxy_auth_len - 6 == wl && sodium_memcmp(r->proxy_auth + 6, want, wl) == 0;
}

static int http_step(px_client *c)
{
	int n = px_http_parse((const char *)c->buf, c->len, &c->http);

	if (n <= 0)
		return n;
	if (!http_auth_ok(c->p, &c->http)) {
		c->p->st.auth_failed++;
		http_fail(c, 407, "Proxy Authentication Required");
		return -EALREADY;
	}
	c->dest = c->http.dest;
	go(c, (size_t)n);
	return -EALREADY;
}

/* ---- reading ------------------------------------------------------------------------------------ */

static void client_input(px_client *c)
{
	int n;

	for (;;) {
		n = c->ls->kind == PROXY_SOCKS5 ? socks_step(c) : http_step(c);
		if (n == -EALREADY)
			return; /* handed on or answered */
		if (n < 0) {
			c->p->st.malformed += n != -EACCES;
			if (c->ls->kind == PROXY_HTTP)
				http_fail(c, 400, "Bad Request");
			else if (n == -EACCES)
				client_close(c);
			else
				socks_fail(c, SOCKS5_REP_FAILURE);
			return;
		}
		if (n == 0)
			return;
		memmove(c->buf, c->buf + n, c->len - (size_t)n);
		c->len -= (size_t)n;
	}
}

static void on_client(pilot_loop *l, int fd, int events, void *arg)
{
	px_client *c = arg;
	ssize_t n;

	(void)l;
	(void)events;
	if (c->phase == CL_RESOLVING || c->phase == CL_DIALING)
		return;
	if (c->phase == CL_UDP) { /* the association lasts while the TCP connection does */
		n = recv(fd, c->buf, sizeof(c->buf), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			client_close(c);
		return;
	}
	if (!c->ls) {
		client_close(c);
		return;
	}
	if (c->len == sizeof(c->buf)) {
		c->p->st.malformed++;
		if (c->ls->kind == PROXY_HTTP)
			http_fail(c, 431, "Request Header Fields Too Large");
		else
			client_close(c);
		return;
	}
	n = recv(fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(c);
		return;
	}
	c->len += (size_t)n;
	client_input(c);
}

static int64_t client_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	px_client *c = arg;

	(void)l;
	(void)id;
	c->timer = 0;
	c->p->st.timeouts++;
	client_close(c);
	return 0;
}

/* ---- accepting ------------------------------------------------------------------------------------ */

static uint32_t ip_key(const struct sockaddr_storage *ss)
{
	const uint8_t *b = ss->ss_family == AF_INET
		? (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr
		: ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
	size_t n = ss->ss_family == AF_INET ? 4 : 16;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

/* Token bucket per client IP (slots shared on collision: stricter, never looser). */
static bool rate_ok(proxy *p, const struct sockaddr_storage *ss)
{
	uint32_t k = ip_key(ss);
	rate_slot *s = &p->rate[k % RATE_SLOTS];
	uint64_t now = pilot_loop_now_ms(p->cfg.loop);
	double burst = 2.0 * p->cfg.rate;

	if (s->key != k || !s->at_ms) {
		s->key = k;
		s->tokens = burst;
	} else {
		s->tokens += (double)(now - s->at_ms) * p->cfg.rate / 1000.0;
		if (s->tokens > burst)
			s->tokens = burst;
	}
	s->at_ms = now;
	if (s->tokens < 1.0)
		return false;
	s->tokens -= 1.0;
	return true;
}

static void start_client(px_listener *ls, int fd)
{
	proxy *p = ls->p;
	px_client *c = calloc(1, offsetof(px_client, buf) + (ls->kind == PROXY_FORWARD ? 0 : BUF_CAP));

	if (!c) {
		close(fd);
		return;
	}
	c->p = p;
	c->ls = ls;
	c->fd = fd;
	c->phase = ls->kind == PROXY_SOCKS5 ? CL_GREETING : CL_HTTP;
	c->next = p->clients;
	if (c->next)
		c->next->prev = c;
	p->clients = c;
	ls->pending++;
	p->st.pending++;
	p->st.accepted++;
	if (pilot_loop_add_fd(p->cfg.loop, fd, PILOT_EV_READ, on_client, c) < 0) {
		client_free(c);
		return;
	}
	if (ls->kind == PROXY_FORWARD) {
		c->dest = ls->fwd;
		go(c, 0);
		return;
	}
	c->timer = pilot_loop_add_timer(p->cfg.loop, p->cfg.timeout_ms, client_timeout, c);
}

static void on_accept(pilot_loop *l, int lfd, int events, void *arg)
{
	px_listener *ls = arg;
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1;

	(void)l;
	(void)events;
	for (int i = 0; i < 64; i++) {
		sl = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (ls->pending >= ls->p->cfg.max_pending) {
			ls->p->st.limited++;
			close(fd);
			continue;
		}
		if (!rate_ok(ls->p, &ss)) {
			ls->p->st.rate_limited++;
			close(fd);
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		start_client(ls, fd);
	}
}

/* ---- listeners ------------------------------------------------------------------------------------ */

static const char *kind_name(enum proxy_kind k)
{
	return k == PROXY_SOCKS5 ? "socks5" : k == PROXY_HTTP ? "http-proxy" : "forward";
}

static int open_listener(const char *hostport, char *err, size_t errlen, bool *loopback)
{
	char host[256], port[8];
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	socklen_t sl;
	uint16_t pnum;
	int fd, one = 1;

	if (pilot_split_hostport(hostport, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "%s: want host:port", hostport);
		return -EINVAL;
	}
	if (!host[0])
		snprintf(host, sizeof(host), "127.0.0.1");
	pnum = (uint16_t)strtoul(port, NULL, 10); /* decimal, at most 65535 (checked above) */
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(pnum);
		sl = sizeof(*s4);
		*loopback = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(pnum);
		sl = sizeof(*s6);
		*loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
	} else {
		snprintf(err, errlen, "%s: the listen host must be an IP address", hostport);
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 128) < 0) {
		int e = -errno;
		snprintf(err, errlen, "%s: %s", hostport, strerror(-e));
		close(fd);
		return e;
	}
	return fd;
}

int proxy_listen(proxy *p, enum proxy_kind kind, const char *hostport, const char *target, char *err,
		 size_t errlen)
{
	px_listener *ls;
	size_t slot = MAX_LISTENERS;
	bool loopback = false;
	int fd, r;

	for (size_t i = 0; i < MAX_LISTENERS; i++)
		if (!p->ls[i] && slot == MAX_LISTENERS)
			slot = i;
	if (slot == MAX_LISTENERS) {
		snprintf(err, errlen, "%s: too many listeners (%d)", hostport, MAX_LISTENERS);
		return -ENOSPC;
	}
	if (!(ls = calloc(1, sizeof(*ls))))
		return -ENOMEM;
	ls->p = p;
	ls->kind = kind;
	snprintf(ls->listen, sizeof(ls->listen), "%s", hostport);
	if (kind == PROXY_FORWARD) {
		snprintf(ls->target, sizeof(ls->target), "%s", target ? target : "");
		if (!target || px_parse_authority(target, strlen(target), 0, &ls->fwd) < 0) {
			snprintf(err, errlen, "%s: want a destination name:port, address:port or IP:port",
				 target ? target : "(none)");
			free(ls);
			return -EINVAL;
		}
	}
	if ((fd = open_listener(hostport, err, errlen, &loopback)) < 0) {
		free(ls);
		return fd;
	}
	ls->fd = fd;
	if ((r = pilot_loop_add_fd(p->cfg.loop, fd, PILOT_EV_READ, on_accept, ls)) < 0) {
		snprintf(err, errlen, "%s: %s", hostport, strerror(-r));
		close(fd);
		free(ls);
		return r;
	}
	p->ls[slot] = ls;
	if (!loopback && (kind == PROXY_FORWARD || !p->cfg.user))
		log_warn("%s listening on %s, not loopback, without authentication: anyone who reaches it "
			 "uses this node's trust",
			 kind_name(kind), hostport);
	log_info("%s listening on %s%s%s", kind_name(kind), hostport, target ? " -> " : "",
		 target ? target : "");
	return 0;
}

static void drop_listener(proxy *p, size_t i)
{
	px_listener *ls = p->ls[i];

	pilot_loop_del_fd(p->cfg.loop, ls->fd);
	close(ls->fd);
	p->ls[i] = NULL;
	for (px_client *c = p->clients; c; c = c->next)
		if (c->ls == ls)
			c->ls = NULL; /* answered with a plain close from now on */
	free(ls);
}

int proxy_unlisten(proxy *p, enum proxy_kind kind, const char *hostport)
{
	for (size_t i = 0; i < MAX_LISTENERS; i++)
		if (p->ls[i] && p->ls[i]->kind == kind && !strcmp(p->ls[i]->listen, hostport)) {
			drop_listener(p, i);
			return 0;
		}
	return -ENOENT;
}

proxy *proxy_new(const proxy_config *cfg)
{
	proxy *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->cfg = *cfg;
	if (!p->cfg.max_pending)
		p->cfg.max_pending = 64;
	if (!p->cfg.rate)
		p->cfg.rate = 100;
	if (!p->cfg.timeout_ms)
		p->cfg.timeout_ms = 10000;
	return p;
}

void proxy_close(proxy *p)
{
	px_client *c, *next;

	if (!p || p->closing)
		return;
	p->closing = true;
	for (size_t i = 0; i < MAX_LISTENERS; i++)
		if (p->ls[i])
			drop_listener(p, i);
	for (c = p->clients; c; c = next) {
		next = c->next;
		if (c->phase != CL_DIALING) /* dialing ones end with the bridge's answer */
			client_close(c);
	}
}

void proxy_free(proxy *p)
{
	px_client *c, *next;

	if (!p)
		return;
	proxy_close(p);
	for (c = p->clients; c; c = next) { /* resolves that never answered */
		next = c->next;
		c->phase = CL_DIALING;
		client_free(c);
	}
	free(p);
}

void proxy_get_stats(const proxy *p, proxy_stats *st)
{
	*st = p->st;
}

static void add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

struct json_object *proxy_json(const proxy *p)
{
	struct json_object *o = json_object_new_object(), *a = json_object_new_array();

	for (size_t i = 0; i < MAX_LISTENERS; i++) {
		struct json_object *e;
		if (!p->ls[i])
			continue;
		e = json_object_new_object();
		json_object_object_add(e, "kind", json_object_new_string(kind_name(p->ls[i]->kind)));
		json_object_object_add(e, "listen", json_object_new_string(p->ls[i]->listen));
		if (p->ls[i]->kind == PROXY_FORWARD)
			json_object_object_add(e, "target", json_object_new_string(p->ls[i]->target));
		json_object_array_add(a, e);
	}
	json_object_object_add(o, "listeners", a);
	add_u64(o, "accepted", p->st.accepted);
	add_u64(o, "connected", p->st.connected);
	add_u64(o, "pending", p->st.pending);
	add_u64(o, "limited", p->st.limited);
	add_u64(o, "rate_limited", p->st.rate_limited);
	add_u64(o, "malformed", p->st.malformed);
	add_u64(o, "auth_failed", p->st.auth_failed);
	add_u64(o, "not_allowed", p->st.not_allowed);
	add_u64(o, "unreachable", p->st.unreachable);
	add_u64(o, "refused", p->st.refused);
	add_u64(o, "timeouts", p->st.timeouts);
	add_u64(o, "udp_associations", p->st.udp_associations);
	add_u64(o, "udp_out", p->st.udp_out);
	add_u64(o, "udp_in", p->st.udp_in);
	add_u64(o, "udp_dropped", p->st.udp_dropped);
	return o;
}
