/* The hot standby's side of replication (registry.md §12): one client connection
 * on the loop that subscribes and applies every snapshot. Unlike the reference it
 * reconnects with backoff (1 s doubling to 30 s), the primary keeps the stream
 * open, so a standby is not re-sent the whole state every 60 s, and it can run
 * over TLS to a -tls primary whose certificate it verifies (CA and/or pinned
 * fingerprint), so the replication token and the state are not sent in the clear. */
#include "rendezvous/server.h"

#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "rendezvous/tls.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define READ_DEADLINE_MS 45000  /* the primary sends a heartbeat every 15 s */
#define WATCH_MS 1000
/* Snapshots are the whole registry and may exceed the 1 MiB request cap. */
#define FRAME_MAX (256u << 20)

struct rdv_standby {
	pilot_loop *loop;
	registry *reg;
	char host[256], port[8];
	char *token;
	rdv_tls *tls;          /* client context, NULL = plain TCP */
	rdv_tls_conn *tc;
	int fd;
	bool connecting;
	uint8_t *out;
	size_t out_len, out_off;
	uint8_t *in;
	size_t in_len, in_cap;
	uint64_t last_rx_ms;
	int64_t backoff_ms;
	uint64_t retry_timer, watch_timer;
	rdv_standby_stats st;
};

static void sb_event(pilot_loop *l, int fd, int events, void *arg);
static int64_t sb_retry(pilot_loop *l, uint64_t id, void *arg);

static void sb_disconnect(rdv_standby *s, const char *why)
{
	if (s->fd >= 0) {
		log_warn("standby: connection to primary lost primary=%s:%s reason=\"%s\" retry_ms=%lld",
			 s->host, s->port, why, (long long)s->backoff_ms);
		pilot_loop_del_fd(s->loop, s->fd);
		rdv_tls_conn_free(s->tc);
		s->tc = NULL;
		close(s->fd);
		s->fd = -1;
	}
	s->st.connected = 0;
	s->connecting = false;
	free(s->out);
	s->out = NULL;
	s->in_len = 0;
	if (!s->retry_timer)
		s->retry_timer = pilot_loop_add_timer(s->loop, s->backoff_ms, sb_retry, s);
	s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

static int sb_subscribe_frame(rdv_standby *s)
{
	json_object *o = json_object_new_object();
	const char *txt;
	size_t n;

	json_object_object_add(o, "type", json_object_new_string("subscribe_replication"));
	if (s->token && s->token[0])
		json_object_object_add(o, "token", json_object_new_string(s->token));
	txt = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	n = strlen(txt);
	s->out = malloc(4 + n);
	if (s->out) {
		s->out[0] = (uint8_t)(n >> 24);
		s->out[1] = (uint8_t)(n >> 16);
		s->out[2] = (uint8_t)(n >> 8);
		s->out[3] = (uint8_t)n;
		memcpy(s->out + 4, txt, n);
		s->out_len = 4 + n;
		s->out_off = 0;
	}
	json_object_put(o);
	return s->out ? 0 : -ENOMEM;
}

static void sb_connect(rdv_standby *s)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int r;

	s->st.connects++;
	/* Blocking name resolution: rare (at most every backoff), usually numeric. */
	if ((r = getaddrinfo(s->host, s->port, &hints, &res)) != 0) {
		log_warn("standby: cannot resolve primary \"%s\": %s", s->host, gai_strerror(r));
		sb_disconnect(s, "resolve failed");
		return;
	}
	s->fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || (connect(s->fd, res->ai_addr, res->ai_addrlen) < 0 && errno != EINPROGRESS)
	    || sb_subscribe_frame(s) < 0
	    || (s->tls && !(s->tc = rdv_tls_client_conn_new(s->tls, s->fd, s->host)))
	    || pilot_loop_add_fd(s->loop, s->fd, PILOT_EV_WRITE, sb_event, s) < 0) {
		freeaddrinfo(res);
		sb_disconnect(s, strerror(errno));
		return;
	}
	freeaddrinfo(res);
	s->connecting = true;
	s->last_rx_ms = pilot_loop_now_ms(s->loop);
}

static int64_t sb_retry(pilot_loop *l, uint64_t id, void *arg)
{
	rdv_standby *s = arg;

	s->retry_timer = 0;
	sb_connect(s);
	return 0;
}

static int sb_message(rdv_standby *s, json_object *m)
{
	json_object *t = NULL, *snap = NULL;
	const char *type = json_object_object_get_ex(m, "type", &t) ? json_object_get_string(t) : "";

	if (strcmp(type, "replication_snapshot") == 0) {
		if (!json_object_object_get_ex(m, "snapshot", &snap) || reg_apply_snapshot(s->reg, snap) < 0) {
			log_warn("standby: snapshot from primary refused (invalid)");
			return 0;
		}
		if (s->st.snapshots++ == 0 || s->backoff_ms > BACKOFF_MIN_MS)
			log_info("standby: following primary primary=%s:%s", s->host, s->port);
		s->backoff_ms = BACKOFF_MIN_MS;
		return 0;
	}
	if (strcmp(type, "error") == 0) {
		json_object *e = NULL;

		json_object_object_get_ex(m, "error", &e);
		log_error("standby: primary refused replication error=\"%s\"",
			  e ? json_object_get_string(e) : "?");
		return -1;
	}
	return 0; /* heartbeat, or something newer: ignore */
}

static int sb_parse(rdv_standby *s)
{
	size_t off = 0;
	int r = 0;

	while (r == 0 && s->in_len - off >= 4) {
		const uint8_t *p = s->in + off;
		uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		json_tokener *tok;
		json_object *m;

		if (n > FRAME_MAX)
			return -1;
		if (s->in_len - off - 4 < n)
			break;
		tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
		m = tok ? json_tokener_parse_ex(tok, (const char *)p + 4, (int)n) : NULL;
		json_tokener_free(tok);
		if (!m || !json_object_is_type(m, json_type_object))
			r = -1;
		else
			r = sb_message(s, m);
		json_object_put(m);
		off += 4 + n;
	}
	memmove(s->in, s->in + off, s->in_len - off);
	s->in_len -= off;
	return r;
}

/* > 0 bytes, 0 on close, -errno (-EAGAIN: wait for the socket). */
static ssize_t sb_recv(rdv_standby *s, void *buf, size_t len)
{
	ssize_t n;

	if (s->tc)
		return rdv_tls_conn_read(s->tc, buf, len);
	n = read(s->fd, buf, len);
	return n < 0 ? -errno : n;
}

static ssize_t sb_send(rdv_standby *s, const void *buf, size_t len)
{
	ssize_t n;

	if (s->tc)
		return rdv_tls_conn_write(s->tc, buf, len);
	n = send(s->fd, buf, len, MSG_NOSIGNAL);
	return n < 0 ? -errno : n;
}

/* Why the connection failed, naming a refused certificate. */
static const char *sb_why(rdv_standby *s, const char *what)
{
	static char buf[256];
	const char *v = s->tc ? rdv_tls_conn_verify_error(s->tc) : "";

	if (!*v)
		return what;
	snprintf(buf, sizeof(buf), "TLS: primary's certificate refused: %s", v);
	return buf;
}

static int sb_read(rdv_standby *s)
{
	for (;;) {
		ssize_t n;

		if (s->in_cap - s->in_len < 65536) {
			size_t cap = s->in_cap ? s->in_cap * 2 : 131072;
			uint8_t *p;

			if (cap > FRAME_MAX + 4 + 65536)
				return -1;
			if (!(p = realloc(s->in, cap)))
				return -1;
			s->in = p;
			s->in_cap = cap;
		}
		n = sb_recv(s, s->in + s->in_len, s->in_cap - s->in_len);
		if (n == -EAGAIN || n == -EINTR)
			return 0;
		if (n <= 0)
			return -1;
		s->in_len += (size_t)n;
		s->last_rx_ms = pilot_loop_now_ms(s->loop);
		if (sb_parse(s) < 0)
			return -1;
	}
}

static int sb_write(rdv_standby *s)
{
	while (s->out && s->out_off < s->out_len) {
		ssize_t n = sb_send(s, s->out + s->out_off, s->out_len - s->out_off);

		if (n == -EAGAIN || n == -EINTR)
			return 0;
		if (n <= 0)
			return -1;
		s->out_off += (size_t)n;
	}
	free(s->out);
	s->out = NULL;
	return 0;
}

static void sb_event(pilot_loop *l, int fd, int events, void *arg)
{
	rdv_standby *s = arg;

	if (s->connecting) {
		int e = 0;
		socklen_t el = sizeof(e);

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e) {
			sb_disconnect(s, strerror(e ? e : errno));
			return;
		}
		s->connecting = false;
		s->st.connected = 1;
	}
	if (sb_write(s) < 0) {
		sb_disconnect(s, sb_why(s, "write failed"));
		return;
	}
	/* TLS: a handshake may need reading before anything is written */
	if (((events & PILOT_EV_READ) || s->tc) && sb_read(s) < 0) {
		sb_disconnect(s, sb_why(s, "closed by primary or bad frame"));
		return;
	}
	pilot_loop_mod_fd(l, fd, PILOT_EV_READ |
			  ((s->out || (s->tc && rdv_tls_conn_wants_write(s->tc))) ? PILOT_EV_WRITE : 0));
}

static int64_t sb_watch(pilot_loop *l, uint64_t id, void *arg)
{
	rdv_standby *s = arg;

	if (s->fd >= 0 && pilot_loop_now_ms(l) - s->last_rx_ms > READ_DEADLINE_MS)
		sb_disconnect(s, "no data from primary for 45 s");
	return WATCH_MS;
}

rdv_standby *rdv_standby_new(pilot_loop *l, const char *primary, const char *token,
			     rdv_tls *tls, registry *reg, char *err, size_t errlen)
{
	rdv_standby *s = calloc(1, sizeof(*s));

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->loop = l;
	s->reg = reg;
	s->tls = tls;
	s->fd = -1;
	s->backoff_ms = BACKOFF_MIN_MS;
	if (pilot_split_hostport(primary, s->host, sizeof(s->host), s->port, sizeof(s->port)) < 0
	    || !s->host[0]) {
		snprintf(err, errlen, "invalid -standby primary \"%s\" (want host:port)", primary);
		free(s);
		return NULL;
	}
	s->token = token ? strdup(token) : NULL;
	if (!tls && token && *token && strcmp(s->host, "localhost") && strncmp(s->host, "127.", 4) &&
	    strcmp(s->host, "::1"))
		log_warn("standby: the replication token and the registry state travel in plaintext to "
			 "primary=%s:%s; run the primary with -tls and give -standby-tls-ca or "
			 "-standby-tls-fingerprint", s->host, s->port);
	s->retry_timer = pilot_loop_add_timer(l, 0, sb_retry, s);
	s->watch_timer = pilot_loop_add_timer(l, WATCH_MS, sb_watch, s);
	return s;
}

void rdv_standby_free(rdv_standby *s)
{
	if (!s)
		return;
	if (s->fd >= 0) {
		pilot_loop_del_fd(s->loop, s->fd);
		rdv_tls_conn_free(s->tc);
		close(s->fd);
	}
	pilot_loop_del_timer(s->loop, s->retry_timer);
	pilot_loop_del_timer(s->loop, s->watch_timer);
	free(s->out);
	free(s->in);
	free(s->token);
	free(s);
}

void rdv_standby_get_stats(const rdv_standby *s, rdv_standby_stats *st)
{
	*st = s->st;
}

int rdv_standby_feed(rdv_standby *s, const uint8_t *buf, size_t len)
{
	if (len > s->in_cap - s->in_len) {
		size_t cap = s->in_cap ? s->in_cap : 131072;
		uint8_t *p;

		while (cap - s->in_len < len && cap <= FRAME_MAX + 4)
			cap *= 2;
		if (cap - s->in_len < len || cap > FRAME_MAX + 4 + 65536 || !(p = realloc(s->in, cap)))
			return -1;
		s->in = p;
		s->in_cap = cap;
	}
	memcpy(s->in + s->in_len, buf, len);
	s->in_len += len;
	return sb_parse(s);
}
