/* The registry TCP/TLS server: accept, frame, hand each request to reg_handle,
 * queue the reply. One buffer in and one bounded queue out per client; a client
 * whose replies back up is not read until they drain, so nothing a client does
 * makes us allocate without bound or wait on it (registry.md §2-§3, §12). */
#include "rendezvous/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "lib/jsonwire.h"
#include "lib/log.h"
#include "rendezvous/tls.h"

#define IN_INITIAL      4096
#define IN_MAX          (JW_MAX_BODY + 4)
#define OUT_HIGH        (256 * 1024)  /* stop reading a client above this backlog */
#define FRAMES_PER_PUMP 64            /* then yield to other clients */
#define WRITE_STALL_MS  30000         /* replies not accepted for this long: close */
#define REPL_PERIOD_MS  1000          /* snapshot pushes at most once a second */
#define REPL_HB_MS      15000         /* replication heartbeat (registry.md §12) */
#define ACCEPT_BACKOFF_MS 100

struct obuf {
	struct obuf *next;
	size_t len;
	uint8_t *data;
	uint64_t release;          /* held: send once reg_durable_seq >= this */
	uint64_t wseq;             /* held: this reply's own write (0 = a read) */
};

struct conn {
	rdv_server *srv;
	struct conn *prev, *next;
	int fd;
	int mask;                  /* events registered with the loop */
	rdv_tls_conn *tls;
	char ip[INET6_ADDRSTRLEN];
	uint16_t port;
	uint8_t key[16];           /* rdv_conn_key: what the per-source cap counts */

	uint8_t *in;
	size_t in_len, in_cap;
	struct obuf *out_head, *out_tail;
	size_t out_off, out_bytes;
	/* Replies waiting for their write to be durable, in request order; while
	 * any wait, every later reply of this connection waits behind them. */
	struct obuf *held_head, *held_tail;
	size_t held_bytes;

	uint64_t last_req_ms;      /* idle timeout */
	uint64_t frame_start_ms;   /* first byte of an incomplete frame; 0 = none */
	uint64_t last_write_ms;    /* last write progress while output was queued */
	uint64_t kick_timer;       /* re-pump after yielding with work left */
	bool closing;              /* close once the output is flushed */
	bool subscriber;           /* replication stream */
	uint8_t sent_hash[crypto_generichash_BYTES];
	uint64_t last_hb_ms;
	uint64_t id;               /* reg_ctx.conn: unique for the server's lifetime */
};

struct rdv_server {
	pilot_loop *loop;
	registry *reg;
	rdv_tls *tls;
	char *repl_token;
	int lfd;
	char bound[INET6_ADDRSTRLEN + 8];
	long max_conns, max_conns_per_ip, max_conns_per_v6net, max_partial;
	int64_t idle_ms, frame_ms;
	struct conn *conns;
	uint64_t sweep_timer, repl_timer, accept_timer;
	int commit_fd;                 /* the registry's durability eventfd, -1 = none */
	uint64_t durable;              /* last reg_commit_poll */
	/* The newest snapshot frame, rebuilt only when reg_generation moves. */
	uint8_t *snap;
	size_t snap_len;
	uint64_t snap_gen;
	uint8_t snap_hash[crypto_generichash_BYTES];
	unsigned accept_errors;
	uint64_t next_conn_id;
	rdv_server_stats st;
};

static void conn_pump(struct conn *c);

/* ---- addresses ------------------------------------------------------------- */

static void format_sockaddr(const struct sockaddr *sa, char *ip, size_t iplen, uint16_t *port)
{
	const struct sockaddr_in6 *s6 = (const void *)sa;
	const struct sockaddr_in *s4 = (const void *)sa;

	if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		/* A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; the registry
		 * keys rate limits and real_addr on the plain IPv4 form. */
		inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, (socklen_t)iplen);
		*port = ntohs(s6->sin6_port);
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, (socklen_t)iplen);
		*port = ntohs(s6->sin6_port);
	} else {
		inet_ntop(AF_INET, &s4->sin_addr, ip, (socklen_t)iplen);
		*port = ntohs(s4->sin_port);
	}
}

static int listen_one(const struct sockaddr *sa, socklen_t len, int dual)
{
	int fd, one = 1, zero = 0;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual ? &zero : &one, sizeof(one));
	if (bind(fd, sa, len) < 0 || listen(fd, 512) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static int listen_any(const char *port)
{
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
	int fd;

	s6.sin6_port = htons((uint16_t)strtoul(port, NULL, 10)); /* checked by the parser */
	s4.sin_port = s6.sin6_port;
	fd = listen_one((struct sockaddr *)&s6, sizeof(s6), 1);
	if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL)
		fd = listen_one((struct sockaddr *)&s4, sizeof(s4), 0);
	return fd;
}

static void bound_text(int fd, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN];
	uint16_t port;

	if (!out || !outlen)
		return;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		snprintf(out, outlen, "?");
		return;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(out, outlen, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		format_sockaddr((struct sockaddr *)&ss, ip, sizeof(ip), &port);
		snprintf(out, outlen, "%s:%u", ip, port);
	}
}

int rdv_listen_tcp(const char *addr, const char *default_host, char *bound, size_t boundlen,
		   char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	char host[256], port[8];
	int fd = -EADDRNOTAVAIL, r;

	if (pilot_split_hostport(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "invalid listen address \"%s\" (want host:port, :port or [v6]:port)",
			 addr ? addr : "");
		return -EINVAL;
	}
	if (!host[0] && default_host)
		snprintf(host, sizeof(host), "%s", default_host);
	if (!host[0]) {
		fd = listen_any(port);
	} else if ((r = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "listen address \"%s\": %s", addr, gai_strerror(r));
		return -EINVAL;
	} else {
		for (ai = res; ai; ai = ai->ai_next) {
			fd = listen_one(ai->ai_addr, ai->ai_addrlen, 0);
			if (fd >= 0)
				break;
		}
		freeaddrinfo(res);
	}
	if (fd < 0) {
		snprintf(err, errlen, "listen on \"%s\": %s", addr, strerror(-fd));
		return fd;
	}
	bound_text(fd, bound, boundlen);
	return fd;
}

/* ---- connection I/O (plain or TLS) ------------------------------------------ */

static ssize_t io_read(struct conn *c, void *buf, size_t len)
{
	ssize_t n;

	if (c->tls)
		return rdv_tls_conn_read(c->tls, buf, len);
	n = read(c->fd, buf, len);
	if (n < 0)
		return errno == EINTR ? -EAGAIN : -errno;
	return n;
}

static ssize_t io_write(struct conn *c, const void *buf, size_t len)
{
	ssize_t n;

	if (c->tls)
		return rdv_tls_conn_write(c->tls, buf, len);
	n = send(c->fd, buf, len, MSG_NOSIGNAL);
	if (n < 0)
		return errno == EINTR ? -EAGAIN : -errno;
	return n;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- connection lifetime ---------------------------------------------------- */

static void conn_close(struct conn *c, const char *why)
{
	rdv_server *s = c->srv;

	log_debug("registry connection closed peer=%s:%u reason=\"%s\"", c->ip, c->port, why);
	pilot_loop_del_fd(s->loop, c->fd);
	pilot_loop_del_timer(s->loop, c->kick_timer);
	reg_conn_closed(s->reg, c->id);
	rdv_tls_conn_free(c->tls);
	close(c->fd);
	while (c->out_head) {
		struct obuf *b = c->out_head;

		c->out_head = b->next;
		free(b->data);
		free(b);
	}
	while (c->held_head) {
		struct obuf *b = c->held_head;

		c->held_head = b->next;
		free(b->data);
		free(b);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->st.connections--;
	if (c->subscriber)
		s->st.subscribers--;
	s->st.in_bytes -= c->in_cap;
	free(c->in);
	free(c);
}

/* Takes ownership of data (malloc'd). */
static int conn_queue(struct conn *c, uint8_t *data, size_t len)
{
	struct obuf *b = malloc(sizeof(*b));

	if (!b) {
		free(data);
		return -ENOMEM;
	}
	*b = (struct obuf){ .len = len, .data = data };
	if (c->out_tail)
		c->out_tail->next = b;
	else
		c->out_head = b;
	c->out_tail = b;
	if (c->out_bytes == 0)
		c->last_write_ms = pilot_loop_now_ms(c->srv->loop);
	c->out_bytes += len;
	return 0;
}

/* A reply that must wait: for its own write wseq (0 = none) and for every
 * earlier held reply of this connection. Takes ownership of data. */
static int conn_hold(struct conn *c, uint8_t *data, size_t len, uint64_t wseq)
{
	struct obuf *b = malloc(sizeof(*b));

	if (!b) {
		free(data);
		return -ENOMEM;
	}
	*b = (struct obuf){ .len = len, .data = data, .wseq = wseq, .release = wseq };
	if (c->held_tail && c->held_tail->release > b->release)
		b->release = c->held_tail->release;
	if (c->held_tail)
		c->held_tail->next = b;
	else
		c->held_head = b;
	c->held_tail = b;
	c->held_bytes += len;
	return 0;
}

/* A reply to a request: sent now, or held until its write (wseq, 0 = none) is
 * durable and every earlier held reply of this connection has gone. */
static uint8_t *store_fail_frame(bool conflict, size_t *len);

static int conn_reply(struct conn *c, uint8_t *data, size_t len, uint64_t wseq)
{
	uint8_t *err;

	if (c->held_head || (wseq && wseq > c->srv->durable && wseq > reg_durable_seq(c->srv->reg)))
		return conn_hold(c, data, len, wseq);
	if (wseq && reg_write_failed(c->srv->reg, wseq) &&
	    (err = store_fail_frame(reg_write_conflict(c->srv->reg, wseq), &len))) {
		free(data); /* committed (failed) before we even looked */
		data = err;
	}
	return conn_queue(c, data, len);
}

static int conn_reply_obj(struct conn *c, json_object *o, uint64_t wseq)
{
	uint8_t *buf = NULL;
	int n = jw_encode(o, &buf);

	if (n < 0) {
		log_warn("registry reply not encodable peer=%s err=\"%s\"", c->ip, strerror(-n));
		return n;
	}
	return conn_reply(c, buf, (size_t)n, wseq);
}

static int conn_queue_obj(struct conn *c, json_object *o)
{
	return conn_reply_obj(c, o, 0);
}

static void conn_queue_error(struct conn *c, const char *text)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "type", json_object_new_string("error"));
	json_object_object_add(o, "error", json_object_new_string(text));
	conn_queue_obj(c, o);
	json_object_put(o);
}

/* Write what the socket takes. 0, or -errno on a dead connection. */
static int conn_flush(struct conn *c)
{
	while (c->out_head) {
		struct obuf *b = c->out_head;
		ssize_t n = io_write(c, b->data + c->out_off, b->len - c->out_off);

		if (n == -EAGAIN)
			return 0;
		if (n <= 0)
			return n < 0 ? (int)n : -EPIPE;
		c->last_write_ms = pilot_loop_now_ms(c->srv->loop);
		c->out_off += (size_t)n;
		c->out_bytes -= (size_t)n;
		if (c->out_off == b->len) {
			c->out_head = b->next;
			if (!c->out_head)
				c->out_tail = NULL;
			c->out_off = 0;
			free(b->data);
			free(b);
		}
	}
	return 0;
}

static bool conn_backed_up(const struct conn *c)
{
	return c->out_bytes + c->held_bytes >= OUT_HIGH;
}

static void conn_update_mask(struct conn *c)
{
	int mask = 0;

	if (!conn_backed_up(c) && !c->closing)
		mask |= PILOT_EV_READ;
	if (c->out_head || (c->tls && rdv_tls_conn_wants_write(c->tls)))
		mask |= PILOT_EV_WRITE;
	if (mask != c->mask && pilot_loop_mod_fd(c->srv->loop, c->fd, mask) == 0)
		c->mask = mask;
}

/* ---- replication (primary side) ---------------------------------------------- */

static bool token_equal(const char *a, const char *b)
{
	uint8_t ha[crypto_generichash_BYTES], hb[crypto_generichash_BYTES];

	/* Hash first so the comparison is constant-time regardless of lengths. */
	crypto_generichash(ha, sizeof(ha), (const uint8_t *)a, strlen(a), NULL, 0);
	crypto_generichash(hb, sizeof(hb), (const uint8_t *)b, strlen(b), NULL, 0);
	return sodium_memcmp(ha, hb, sizeof(ha)) == 0;
}

/* The whole frame {"type":"replication_snapshot","snapshot":<snap>} and the hash
 * of the snapshot text. Built by concatenation so the snapshot is serialised once;
 * not capped at JW_MAX_BODY (a large registry outgrows it; our standby accepts it). */
static uint8_t *snapshot_frame(registry *reg, size_t *len, uint8_t hash[crypto_generichash_BYTES])
{
	static const char pre[] = "{\"type\":\"replication_snapshot\",\"snapshot\":";
	json_object *snap = reg_snapshot(reg);
	const char *txt;
	size_t tl, body;
	uint8_t *f;

	if (!snap)
		return NULL;
	txt = json_object_to_json_string_ext(snap, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	tl = strlen(txt);
	crypto_generichash(hash, crypto_generichash_BYTES, (const uint8_t *)txt, tl, NULL, 0);
	body = sizeof(pre) - 1 + tl + 1;
	f = body <= UINT32_MAX ? malloc(4 + body) : NULL;
	if (f) {
		f[0] = (uint8_t)(body >> 24);
		f[1] = (uint8_t)(body >> 16);
		f[2] = (uint8_t)(body >> 8);
		f[3] = (uint8_t)body;
		memcpy(f + 4, pre, sizeof(pre) - 1);
		memcpy(f + 4 + sizeof(pre) - 1, txt, tl);
		f[4 + body - 1] = '}';
		*len = 4 + body;
	}
	json_object_put(snap);
	return f;
}

/* 0 with s->snap current, or -ENOMEM. */
static int snapshot_current(rdv_server *s)
{
	uint64_t gen = reg_generation(s->reg);
	uint8_t *f;
	size_t len = 0;

	if (s->snap && gen == s->snap_gen)
		return 0;
	f = snapshot_frame(s->reg, &len, s->snap_hash);
	if (!f)
		return -ENOMEM;
	free(s->snap);
	s->snap = f;
	s->snap_len = len;
	s->snap_gen = gen;
	return 0;
}

static int conn_queue_snapshot(struct conn *c)
{
	rdv_server *s = c->srv;
	uint8_t *copy = malloc(s->snap_len);

	if (!copy)
		return -ENOMEM;
	memcpy(copy, s->snap, s->snap_len);
	memcpy(c->sent_hash, s->snap_hash, sizeof(c->sent_hash));
	return conn_queue(c, copy, s->snap_len);
}

static int64_t repl_tick(pilot_loop *l, uint64_t id, void *arg)
{
	rdv_server *s = arg;
	uint64_t now = pilot_loop_now_ms(l);
	struct conn *c, *next;
	int have;

	if (s->st.subscribers == 0) {
		s->repl_timer = 0;
		free(s->snap); /* nobody to push to: do not hold a copy of the state */
		s->snap = NULL;
		return 0;
	}
	have = snapshot_current(s) == 0;
	for (c = s->conns; c; c = next) {
		next = c->next;
		if (!c->subscriber || c->closing)
			continue;
		/* Only the newest state matters: a subscriber still sending an older
		 * snapshot gets the current one once it has drained. */
		if (have && c->out_bytes == 0 && memcmp(c->sent_hash, s->snap_hash, sizeof(s->snap_hash)))
			conn_queue_snapshot(c);
		if (now - c->last_hb_ms >= REPL_HB_MS) {
			json_object *hb = json_object_new_object();

			json_object_object_add(hb, "type", json_object_new_string("heartbeat"));
			conn_queue_obj(c, hb);
			json_object_put(hb);
			c->last_hb_ms = now;
		}
		conn_pump(c);
	}
	return REPL_PERIOD_MS;
}

static void handle_subscribe(struct conn *c, json_object *req)
{
	rdv_server *s = c->srv;
	const char *tok = jw_get_str(req, "token");

	if (!s->repl_token || !s->repl_token[0]) {
		log_warn("replication refused peer=%s reason=\"replication not configured\"", c->ip);
		conn_queue_error(c, "replication not configured");
		c->closing = true;
		return;
	}
	if (!token_equal(s->repl_token, tok ? tok : "")) {
		log_warn("replication refused peer=%s reason=\"invalid replication token\"", c->ip);
		conn_queue_error(c, "invalid replication token");
		c->closing = true;
		return;
	}
	if (snapshot_current(s) < 0 || conn_queue_snapshot(c) < 0) {
		conn_queue_error(c, "failed to generate snapshot");
		c->closing = true;
		return;
	}
	c->subscriber = true;
	c->last_hb_ms = pilot_loop_now_ms(s->loop);
	s->st.subscribers++;
	log_info("replication subscriber peer=%s:%u", c->ip, c->port);
	if (!s->repl_timer)
		s->repl_timer = pilot_loop_add_timer(s->loop, REPL_PERIOD_MS, repl_tick, s);
}

/* ---- requests ------------------------------------------------------------- */

static void handle_request(struct conn *c, json_object *req)
{
	const char *type = jw_get_str(req, "type");
	reg_ctx ctx = { .src_ip = c->ip, .src_port = c->port, .now_ms = wall_ms(), .conn = c->id };
	json_object *resp;

	if (type && strcmp(type, "subscribe_replication") == 0) {
		handle_subscribe(c, req);
		return;
	}
	uint64_t before = reg_write_seq(c->srv->reg), wseq;

	resp = reg_handle(c->srv->reg, req, &ctx);
	wseq = reg_write_seq(c->srv->reg);
	if (wseq == before)
		wseq = 0; /* answered from memory: no write to wait for */
	if (!resp) {
		conn_queue_error(c, "request failed");
		return;
	}
	if (conn_reply_obj(c, resp, wseq) < 0)
		conn_queue_error(c, "request failed");
	json_object_put(resp);
}

/* Input buffers are counted against max_partial (issue 12): give the memory of
 * a large frame back once it is handled. */
static void in_shrink(struct conn *c)
{
	uint8_t *p;

	if (c->in_cap <= IN_INITIAL || c->in_len > IN_INITIAL || !(p = realloc(c->in, IN_INITIAL)))
		return;
	c->srv->st.in_bytes -= c->in_cap - IN_INITIAL;
	c->in = p;
	c->in_cap = IN_INITIAL;
}

/* Decode and answer complete frames. Returns 1 if work is left (budget spent),
 * 0 when it needs more input, -1 when the connection must close. */
static int conn_process(struct conn *c)
{
	size_t off = 0;
	int frames = 0, more = 0;

	if (c->subscriber) {
		c->in_len = 0; /* a standby has nothing to say; ignore it */
		return 0;
	}
	while (off < c->in_len && !c->closing) {
		json_object *req = NULL;
		int n;

		if (conn_backed_up(c) || frames == FRAMES_PER_PUMP) {
			more = !conn_backed_up(c);
			break;
		}
		n = jw_decode(c->in + off, c->in_len - off, &req);
		if (n == 0)
			break;
		if (n < 0) {
			/* Oversize length or bad JSON: close without reply, like the reference. */
			c->srv->st.bad_frames++;
			log_info("registry bad frame peer=%s:%u err=\"%s\"", c->ip, c->port,
				 n == -EMSGSIZE ? "frame too large" : "invalid JSON");
			return -1;
		}
		off += (size_t)n;
		frames++;
		c->last_req_ms = pilot_loop_now_ms(c->srv->loop);
		handle_request(c, req);
		json_object_put(req);
	}
	if (off) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
		in_shrink(c);
	}
	if (c->in_len && !more && !conn_backed_up(c)) {
		if (!c->frame_start_ms || off)
			c->frame_start_ms = pilot_loop_now_ms(c->srv->loop);
	} else {
		c->frame_start_ms = 0;
	}
	return more;
}

/* Read until the socket is empty, the buffer is full of an incomplete frame (not
 * possible below the cap) or the client is backed up. 0, or -1 to close. */
static int conn_read(struct conn *c, bool *more)
{
	for (;;) {
		ssize_t n;
		int r;

		if (conn_backed_up(c) || c->closing || *more)
			return 0;
		if (c->in_len == c->in_cap) {
			size_t cap = c->in_cap ? c->in_cap * 2 : IN_INITIAL;
			uint8_t *p;

			if (cap > IN_MAX)
				cap = IN_MAX;
			if (cap == c->in_cap)
				return -1; /* cannot happen: jw_decode decides within IN_MAX */
			if (c->srv->st.in_bytes - c->in_cap + cap > (uint64_t)c->srv->max_partial) {
				/* many clients each holding a large unfinished frame */
				c->srv->st.partial_closed++;
				log_info("registry connection closed peer=%s:%u reason=\"partial frames "
					 "over the memory cap\"", c->ip, c->port);
				return -1;
			}
			p = realloc(c->in, cap);
			if (!p)
				return -1;
			c->srv->st.in_bytes += cap - c->in_cap;
			c->in = p;
			c->in_cap = cap;
		}
		n = io_read(c, c->in + c->in_len, c->in_cap - c->in_len);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		c->in_len += (size_t)n;
		r = conn_process(c);
		if (r < 0)
			return -1;
		*more = r > 0;
	}
}

static int64_t kick_cb(pilot_loop *l, uint64_t id, void *arg)
{
	struct conn *c = arg;

	c->kick_timer = 0;
	conn_pump(c);
	return 0;
}

/* Write what is queued; close on a write error, or when a closing connection
 * has nothing left to send or hold. false = c is gone. */
static bool flush_or_close(struct conn *c)
{
	if (conn_flush(c) < 0) {
		conn_close(c, "write failed");
		return false;
	}
	if (c->closing && !c->out_head && !c->held_head) {
		conn_close(c, "done");
		return false;
	}
	return true;
}

/* Flush, read, answer; then register interest for what is still pending. */
static void conn_pump(struct conn *c)
{
	bool more = false;
	int r;

	if (!flush_or_close(c))
		return;
	/* Frames left from an earlier round (budget or backlog) go first. */
	r = c->in_len ? conn_process(c) : 0;
	if (r < 0) {
		conn_close(c, "bad frame");
		return;
	}
	more = r > 0;
	if (conn_read(c, &more) < 0) {
		conn_close(c, "read failed or closed by peer");
		return;
	}
	if (!flush_or_close(c))
		return;
	/* Yielded with frames still buffered, or TLS holds decrypted bytes epoll
	 * cannot see: come back on the next loop iteration. */
	if ((more || (c->tls && rdv_tls_conn_pending(c->tls) > 0 && !conn_backed_up(c)))
	    && !c->kick_timer)
		c->kick_timer = pilot_loop_add_timer(c->srv->loop, 0, kick_cb, c);
	conn_update_mask(c);
}

static void conn_event(pilot_loop *l, int fd, int events, void *arg)
{
	conn_pump(arg);
}

/* ---- durability: release held replies ------------------------------------------ */

/* A write the store could not commit: `internal`; one another instance won in
 * the database (the local state is repaired from it): `busy` with a short
 * retry_after_ms, so the client repeats it against the state the winner left. */
static uint8_t *store_fail_frame(bool conflict, size_t *len)
{
	json_object *o = json_object_new_object();
	uint8_t *buf = NULL;
	int n;

	json_object_object_add(o, "type", json_object_new_string("error"));
	json_object_object_add(o, "error", json_object_new_string("request failed"));
	json_object_object_add(o, "code", json_object_new_string(conflict ? "busy" : "internal"));
	json_object_object_add(
		o, "message",
		json_object_new_string(conflict ? "another registry instance changed the same "
						  "record first; try again"
						: "the registry could not save the change; try again"));
	if (conflict)
		json_object_object_add(o, "retry_after_ms", json_object_new_int(200));
	n = jw_encode(o, &buf);
	json_object_put(o);
	*len = n > 0 ? (size_t)n : 0;
	return n > 0 ? buf : NULL;
}

/* Move every held reply whose turn has come to the output queue. */
static void conn_release(struct conn *c, uint64_t durable)
{
	rdv_server *s = c->srv;

	while (c->held_head && c->held_head->release <= durable) {
		struct obuf *b = c->held_head;
		size_t len;
		uint8_t *err;

		c->held_head = b->next;
		if (!c->held_head)
			c->held_tail = NULL;
		c->held_bytes -= b->len;
		if (b->wseq && reg_write_failed(s->reg, b->wseq) &&
		    (err = store_fail_frame(reg_write_conflict(s->reg, b->wseq), &len))) {
			free(b->data);
			b->data = err;
			b->len = len;
		}
		conn_queue(c, b->data, b->len);
		free(b);
	}
}

static void commit_event(pilot_loop *l, int fd, int events, void *arg)
{
	rdv_server *s = arg;
	uint64_t d = reg_commit_poll(s->reg);
	struct conn *c, *next;

	s->durable = d;
	for (c = s->conns; c; c = next) {
		next = c->next;
		if (!c->held_head || c->held_head->release > d)
			continue;
		conn_release(c, d);
		conn_pump(c); /* send, and read again if holding had stopped it */
	}
	reg_commit_forget(s->reg, d);
}

/* ---- accept ------------------------------------------------------------------ */

bool rdv_conn_key(const struct sockaddr *sa, uint8_t key[16])
{
	const struct sockaddr_in6 *s6 = (const void *)sa;
	const struct sockaddr_in *s4 = (const void *)sa;

	memset(key, 0, 16);
	if (sa->sa_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		memcpy(key, &s6->sin6_addr, 8);
		return true;
	}
	key[10] = key[11] = 0xff;
	memcpy(key + 12, sa->sa_family == AF_INET6 ? &s6->sin6_addr.s6_addr[12]
						     : (const uint8_t *)&s4->sin_addr, 4);
	return false;
}

static long conns_from(const rdv_server *s, const uint8_t key[16])
{
	long n = 0;

	for (const struct conn *c = s->conns; c; c = c->next)
		n += memcmp(c->key, key, 16) == 0;
	return n;
}

static void accept_one(rdv_server *s, int fd, const struct sockaddr *sa)
{
	struct conn *c;
	char ip[INET6_ADDRSTRLEN];
	uint16_t port;
	uint8_t key[16];
	bool v6net = rdv_conn_key(sa, key);
	long per_source = v6net ? s->max_conns_per_v6net : s->max_conns_per_ip;

	format_sockaddr(sa, ip, sizeof(ip), &port);
	if ((long)s->st.connections >= s->max_conns || conns_from(s, key) >= per_source) {
		s->st.refused++;
		if ((long)s->st.connections < s->max_conns)
			s->st.refused_per_source++;
		log_debug("registry connection refused peer=%s:%u reason=\"connection cap%s\"", ip, port,
			  (long)s->st.connections < s->max_conns ? (v6net ? " per /64" : " per IP") : "");
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || (s->tls && !(c->tls = rdv_tls_conn_new(s->tls, fd)))) {
		free(c);
		close(fd);
		return;
	}
	c->srv = s;
	c->id = ++s->next_conn_id;
	c->fd = fd;
	memcpy(c->ip, ip, sizeof(ip));
	memcpy(c->key, key, sizeof(key));
	c->port = port;
	c->last_req_ms = pilot_loop_now_ms(s->loop);
	c->mask = PILOT_EV_READ;
	if (pilot_loop_add_fd(s->loop, fd, c->mask, conn_event, c) < 0) {
		rdv_tls_conn_free(c->tls);
		free(c);
		close(fd);
		return;
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->st.connections++;
	s->st.accepted++;
}

static void listen_event(pilot_loop *l, int fd, int events, void *arg);

static int64_t accept_resume(pilot_loop *l, uint64_t id, void *arg)
{
	rdv_server *s = arg;

	s->accept_timer = 0;
	pilot_loop_add_fd(l, s->lfd, PILOT_EV_READ, listen_event, s);
	return 0;
}

static void listen_event(pilot_loop *l, int fd, int events, void *arg)
{
	rdv_server *s = arg;

	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (cfd >= 0) {
			s->accept_errors = 0;
			accept_one(s, cfd, (struct sockaddr *)&ss);
			continue;
		}
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			return;
		/* EMFILE and friends: pause accepting instead of spinning (backoff
		 * 100 ms × consecutive errors, capped at 2 s, as the reference). */
		s->accept_errors++;
		log_warn("registry accept failed err=\"%s\"", strerror(errno));
		pilot_loop_del_fd(l, fd);
		uint64_t ms = ACCEPT_BACKOFF_MS * (uint64_t)s->accept_errors;
		s->accept_timer = pilot_loop_add_timer(l, ms > 2000 ? 2000 : (int64_t)ms, accept_resume, s);
		return;
	}
}

/* Idle clients, stalled frames (slowloris) and clients that stopped reading. */
static int64_t sweep(pilot_loop *l, uint64_t id, void *arg)
{
	rdv_server *s = arg;
	uint64_t now = pilot_loop_now_ms(l);
	struct conn *c, *next;

	for (c = s->conns; c; c = next) {
		const char *why = NULL;

		next = c->next;
		if (c->frame_start_ms && now - c->frame_start_ms > (uint64_t)s->frame_ms)
			why = "frame not completed in time";
		else if (!c->subscriber && now - c->last_req_ms > (uint64_t)s->idle_ms)
			why = "idle";
		else if (c->out_bytes && now - c->last_write_ms > WRITE_STALL_MS)
			why = "client stopped reading";
		if (why) {
			s->st.timeouts++;
			log_info("registry connection timed out peer=%s:%u reason=\"%s\"", c->ip, c->port, why);
			conn_close(c, why);
		}
	}
	return s->frame_ms < 2000 ? (s->frame_ms / 4 > 20 ? s->frame_ms / 4 : 20) : 500;
}

/* ---- public ------------------------------------------------------------------ */

rdv_server *rdv_server_new(pilot_loop *l, const rdv_server_config *cfg, char *err, size_t errlen)
{
	rdv_server *s = calloc(1, sizeof(*s));

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->loop = l;
	s->reg = cfg->reg;
	s->commit_fd = -1;
	s->tls = cfg->tls;
	s->max_conns = cfg->max_conns > 0 ? cfg->max_conns : 4096;
	s->max_conns_per_ip = cfg->max_conns_per_ip > 0 ? cfg->max_conns_per_ip : 64;
	s->max_conns_per_v6net = cfg->max_conns_per_v6net > 0 ? cfg->max_conns_per_v6net : s->max_conns_per_ip;
	s->max_partial = cfg->max_partial_bytes > 0 ? cfg->max_partial_bytes : 64l << 20;
	s->idle_ms = cfg->idle_ms > 0 ? cfg->idle_ms : 5 * 60 * 1000;
	s->frame_ms = cfg->frame_ms > 0 ? cfg->frame_ms : 10 * 1000;
	if (cfg->replication_token && cfg->replication_token[0]
	    && !(s->repl_token = strdup(cfg->replication_token))) {
		snprintf(err, errlen, "out of memory");
		free(s);
		return NULL;
	}
	s->lfd = rdv_listen_tcp(cfg->addr, NULL, s->bound, sizeof(s->bound), err, errlen);
	if (s->lfd < 0) {
		free(s->repl_token);
		free(s);
		return NULL;
	}
	s->commit_fd = reg_commit_fd(s->reg);
	if (pilot_loop_add_fd(l, s->lfd, PILOT_EV_READ, listen_event, s) < 0
	    || (s->commit_fd >= 0 && pilot_loop_add_fd(l, s->commit_fd, PILOT_EV_READ, commit_event, s) < 0)
	    || !(s->sweep_timer = pilot_loop_add_timer(l, 100, sweep, s))) {
		snprintf(err, errlen, "registry listener: cannot register with the event loop");
		rdv_server_free(s);
		return NULL;
	}
	return s;
}

void rdv_server_free(rdv_server *s)
{
	if (!s)
		return;
	if (s->commit_fd >= 0) {
		/* Replies already computed go out once their writes are on disk. */
		reg_sync(s->reg);
		s->durable = reg_commit_poll(s->reg);
		for (struct conn *c = s->conns; c; c = c->next)
			conn_release(c, s->durable);
		pilot_loop_del_fd(s->loop, s->commit_fd);
	}
	while (s->conns) {
		/* Hand over what is already queued (a last reply) if the socket takes it. */
		conn_flush(s->conns);
		conn_close(s->conns, "shutdown");
	}
	pilot_loop_del_timer(s->loop, s->sweep_timer);
	pilot_loop_del_timer(s->loop, s->repl_timer);
	pilot_loop_del_timer(s->loop, s->accept_timer);
	free(s->snap);
	if (s->lfd >= 0) {
		pilot_loop_del_fd(s->loop, s->lfd);
		close(s->lfd);
	}
	if (s->repl_token) {
		sodium_memzero(s->repl_token, strlen(s->repl_token));
		free(s->repl_token);
	}
	free(s);
}

void rdv_server_get_stats(const rdv_server *s, rdv_server_stats *st)
{
	*st = s->st;
}

const char *rdv_server_addr(const rdv_server *s)
{
	return s->bound;
}

void rdv_server_adopt(rdv_server *s, int fd, const struct sockaddr *sa)
{
	accept_one(s, fd, sa);
}
