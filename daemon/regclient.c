/* Registry client: see regclient.h. One connection, one request in flight.
 *
 * States: IDLE (no socket, nothing to do) -> CONNECTING (non-blocking connect,
 * walking the getaddrinfo list) -> HANDSHAKE (transport, e.g. TLS) -> UP.
 * Any failure closes the socket; if requests remain, a reconnect is scheduled
 * after a jittered backoff (WAIT). The head of the FIFO is the request in
 * flight; it is written at most twice (the reference client's one resend after
 * a connection-level failure). Deadlines run from submission, so the head
 * always has the earliest one and a single timer covers the whole queue. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "daemon/regclient.h"
#include "lib/addr.h"
#include "lib/jsonwire.h"
#include "lib/log.h"

#define RC_QUEUE_DEFAULT 256
#define RC_TIMEOUT_DEFAULT 10000
#define RC_BACKOFF_MIN 500
#define RC_BACKOFF_MAX 2000     /* a node that lost its registry retries at least every 2 s */
#define RC_ATTEMPT_DEFAULT 2000
#define RC_MAX_SENDS 2
#define RC_RECENT 32
#define RC_ADDR_MAX        REGCLIENT_ADDR_MAX

enum rc_state { RC_IDLE, RC_WAIT, RC_CONNECTING, RC_HANDSHAKE, RC_UP };

struct rc_req {
	struct rc_req *next;
	json_object *req;
	char *fields;           /* v2 fields when signed at send time, else NULL */
	regclient_cb cb;
	void *arg;
	uint64_t deadline;      /* monotonic ms: the timer armed for this request */
	uint64_t expire;        /* monotonic ms: give up (-ETIMEDOUT) */
	uint64_t sent_us;       /* last written (reply latency) */
	int sends;
	int resigns; /* sent again after replayed_signature */
};

struct regclient {
	pilot_loop *loop;
	char *host, *port; /* the address in use: hosts[cur], ports[cur] */
	char *hosts[RC_ADDR_MAX], *ports[RC_ADDR_MAX], *addrs[RC_ADDR_MAX];
	size_t naddr, cur;
	bool leave_addr; /* a read_only reply: this one is a standby */
	void (*on_switch)(void *arg, const char *addr);
	void *on_switch_arg;
	const pilot_identity *id;
	size_t queue_max;
	int64_t timeout_ms, attempt_ms, bmin, bmax, backoff;
	const regclient_transport *tp;
	void *tp_cfg, *tp_ctx;
	int64_t skew_s, offset_s;
	bool sig_v2;
	void (*on_send)(void *arg, json_object *req);
	void *on_send_arg;
	void (*on_reconnect)(void *arg);
	void *on_reconnect_arg;

	enum rc_state state;
	int fd;
	struct addrinfo *ai, *ai_next;
	uint64_t retry_timer, kick_timer, dl_timer;
	uint64_t busy_timer;    /* the registry said busy: the head waits for this */

	struct rc_req *head, *tail;
	size_t n;
	bool inflight;
	uint8_t *wbuf;
	size_t wlen, woff;
	uint8_t *rbuf;
	size_t rlen, rcap;

	int depth;              /* > 0 while inside one of our loop callbacks */
	bool dying;
	struct { uint64_t h; int64_t ts; } recent[RC_RECENT];
	unsigned recent_i;
	regclient_stats st;
};

static void start_connect(regclient *c);
static void send_head(regclient *c);
static void conn_lost(regclient *c, int err);

/* ---- plain TCP transport ---- */
static int tcp_open(void *cfg, int fd, const char *host, void **ctx)
{
	(void)cfg, (void)fd, (void)host;
	*ctx = NULL;
	return 0;
}

static int tcp_handshake(void *ctx, int fd, int *want)
{
	(void)ctx, (void)fd, (void)want;
	return 0;
}

static ssize_t tcp_read(void *ctx, int fd, void *buf, size_t len)
{
	ssize_t n = recv(fd, buf, len, 0);

	(void)ctx;
	return n < 0 ? -errno : n;
}

static ssize_t tcp_write(void *ctx, int fd, const void *buf, size_t len)
{
	ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

	(void)ctx;
	return n < 0 ? -errno : n;
}

static void tcp_close(void *ctx)
{
	(void)ctx;
}

const regclient_transport regclient_tcp = {
	"tcp", tcp_open, tcp_handshake, tcp_read, tcp_write, tcp_close,
};

/* ---- clocks and signatures ---- */
static int64_t wall_s(const regclient *c)
{
	return (int64_t)time(NULL) + c->skew_s;
}

int64_t regclient_server_now(const regclient *c)
{
	return wall_s(c) + c->offset_s;
}

int64_t regclient_clock_offset(const regclient *c)
{
	return c->offset_s;
}

void regclient_set_sig_v2(regclient *c, bool on)
{
	c->sig_v2 = on;
}

bool regclient_sig_v2(const regclient *c)
{
	return c->sig_v2;
}

/* v1 challenge = keyword ":" fields[skip .. skip+take) (SIGNATURES.md, registry.md §8). */
static const struct v1_form {
	const char *type, *kw;
	int skip, take;
} v1_forms[] = {
	{ "heartbeat", "heartbeat", 0, 1 },
	{ "deregister", "deregister", 0, 1 },
	{ "set_visibility", "set_visibility", 0, 1 },
	{ "set_hostname", "set_hostname", 0, 1 },
	{ "set_tags", "set_tags", 0, 1 },
	{ "set_task_exec", "set_task_exec", 0, 1 },
	{ "poll_handshakes", "poll_handshakes", 0, 1 },
	{ "poll_invites", "poll_invites", 0, 1 },
	{ "resolve", "resolve", 0, 2 },
	{ "report_trust", "report_trust", 0, 2 },
	{ "revoke_trust", "revoke_trust", 0, 2 },
	{ "punch", "punch", 1, 2 },
	{ "request_handshake", "handshake", 0, 2 },
	{ "respond_handshake", "respond", 0, 2 },
	{ "rotate_key", "rotate", 0, 1 },
	{ "join_network", "join_network", 0, 2 },
	{ "leave_network", "leave_network", 0, 2 },
	{ "create_network", "create_network", 0, 2 },
	{ "invite_to_network", "invite", 0, 3 },
	{ "respond_invite", "respond_invite", 0, 2 },
};

static const struct v1_form *v1_form(const char *type)
{
	for (size_t i = 0; i < sizeof(v1_forms) / sizeof(v1_forms[0]); i++)
		if (!strcmp(v1_forms[i].type, type))
			return &v1_forms[i];
	return NULL;
}

const char *regclient_v1_keyword(const char *type)
{
	const struct v1_form *f = type ? v1_form(type) : NULL;

	return f ? f->kw : NULL;
}

static char *v1_challenge(const char *type, const char *fields)
{
	const struct v1_form *f = v1_form(type);
	const char *p = fields, *start, *end;
	char *out = NULL;
	int i;

	if (!f)
		return NULL;
	for (i = 0; i < f->skip && p; i++)
		p = (p = strchr(p, ':')) ? p + 1 : NULL;
	if (!p)
		return NULL;
	start = end = p;
	for (i = 0; i < f->take; i++) {
		const char *colon = strchr(end, ':');

		end = colon ? colon : end + strlen(end);
		if (i + 1 < f->take) {
			if (!colon)
				return NULL;
			end++;
		}
	}
	if (asprintf(&out, "%s:%.*s", f->kw, (int)(end - start), start) < 0)
		return NULL;
	return out;
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	return h;
}

/* Ed25519 is deterministic: the same type and fields in the same second give
 * the same signature, which the registry's replay cache refuses. Bump sig_ts
 * past any identical request we signed recently. */
static uint64_t req_hash(const char *type, const char *fields)
{
	return fnv1a(fnv1a(0xcbf29ce484222325ULL, type), fields) ^ 0x3a;
}

/* Remember that sig_ts values up to ts are taken for this request. */
static void ts_taken(regclient *c, uint64_t h, int64_t ts)
{
	c->recent[c->recent_i].h = h;
	c->recent[c->recent_i].ts = ts;
	c->recent_i = (c->recent_i + 1) % RC_RECENT;
}

static int64_t unique_ts(regclient *c, const char *type, const char *fields, int64_t ts)
{
	uint64_t h = req_hash(type, fields);

	for (int i = 0; i < RC_RECENT; i++)
		if (c->recent[i].h == h && c->recent[i].ts >= ts)
			ts = c->recent[i].ts + 1;
	ts_taken(c, h, ts);
	return ts;
}

int regclient_sign(regclient *c, json_object *req, const char *fields)
{
	const char *type = jw_get_str(req, "type");
	uint8_t sig[64];
	char b64[96], *msg = NULL;
	int64_t ts = 0;

	if (!c->id)
		return -ENOKEY;
	if (!type || !fields)
		return -EINVAL;
	json_object_object_del(req, "signature");
	json_object_object_del(req, "sig_ts");
	if (c->sig_v2) {
		ts = unique_ts(c, type, fields, regclient_server_now(c));
		if (asprintf(&msg, "pilot2:%s:%lld:%s", type, (long long)ts, fields) < 0)
			msg = NULL;
		if (!msg)
			return -ENOMEM;
	} else if (!(msg = v1_challenge(type, fields))) {
		return regclient_v1_keyword(type) ? -ENOMEM : -EINVAL;
	}
	pilot_ed25519_sign(c->id, msg, strlen(msg), sig);
	free(msg);
	pilot_b64_encode(sig, sizeof(sig), b64, sizeof(b64));
	if (c->sig_v2)
		json_object_object_add(req, "sig_ts", json_object_new_int64(ts));
	json_object_object_add(req, "signature", json_object_new_string(b64));
	return 0;
}

/* A server clock reading (Unix seconds) becomes our offset only if plausible:
 * a reply can carry any integer (and jw_get_i64 reads a non-integer or one out
 * of range as 0), and the offset is added to every sig_ts. */
#define RC_SERVER_TIME_MAX ((int64_t)1 << 40)

static void learn_time(regclient *c, int64_t server_s)
{
	int64_t now = wall_s(c);

	if (server_s <= 0 || server_s > RC_SERVER_TIME_MAX || now < 0 || now > RC_SERVER_TIME_MAX) {
		log_debug("registry: implausible server time ignored time=%lld", (long long)server_s);
		return;
	}
	c->offset_s = server_s - now;
}

/* Learn the server's clock and signature format from what it says. */
static void observe_reply(regclient *c, json_object *reply)
{
	const char *type = jw_get_str(reply, "type"), *code, *msg, *p;

	if (!type)
		return;
	if (!strcmp(type, "register_ok"))
		c->sig_v2 = jw_get_bool(reply, "sig_v2");
	if ((!strcmp(type, "register_ok") || !strcmp(type, "heartbeat_ok")) && jw_has(reply, "time"))
		learn_time(c, jw_get_i64(reply, "time"));
	code = jw_get_str(reply, "code");
	msg = jw_get_str(reply, "message");
	if (code && msg && !strcmp(code, "stale_signature") && (p = strstr(msg, "server time ")))
		learn_time(c, strtoll(p + 12, NULL, 10));
}

/* ---- what a success reply must carry ----
 * A reply is taken for the answer to the request in flight; its users take
 * node IDs, keys and endpoints from it. A registry that is broken, hostile or
 * out of step with us (a reply to another request) must not make this node
 * node 0, or hand a lookup the key of another node: such a reply is refused
 * whole (registry.md §5 lists what each reply always carries). */
static bool node_id_ok(uint32_t id)
{
	return id != 0 && id != PILOT_NODE_BROADCAST;
}

static bool same_key(const char *a, const char *b)
{
	uint8_t ka[32], kb[32];

	return a && b && pilot_b64_decode(a, strlen(a), ka, sizeof(ka)) == (int)sizeof(ka) &&
		pilot_b64_decode(b, strlen(b), kb, sizeof(kb)) == (int)sizeof(kb) && !memcmp(ka, kb, 32);
}

/* The node_id of reply is present and the one req asked about. */
static bool echoes_id(json_object *req, json_object *reply)
{
	return jw_has(reply, "node_id") && jw_get_u32(reply, "node_id") == jw_get_u32(req, "node_id");
}

static bool is_array_or_absent(json_object *reply, const char *k)
{
	json_object *v = NULL;

	return !json_object_object_get_ex(reply, k, &v) || json_object_is_type(v, json_type_array);
}

const char *regclient_reply_problem(json_object *req, json_object *reply)
{
	const char *rtype = jw_get_str(req, "type"), *type = jw_get_str(reply, "type"), *s;
	size_t n = rtype ? strlen(rtype) : 0;
	uint32_t id;
	pilot_addr a;

	if (!rtype || !type || strncmp(type, rtype, n) || strcmp(type + n, "_ok"))
		return "its type does not answer the request";
	if (!strcmp(rtype, "register")) {
		if (!node_id_ok(id = jw_get_u32(reply, "node_id")))
			return "no valid node_id";
		s = jw_get_str(reply, "address");
		if (jw_has(reply, "address") &&
		    (!s || pilot_addr_parse(s, strlen(s), &a) < 0 || a.node != id))
			return "its address is not the node_id's";
		if (jw_has(reply, "public_key") &&
		    !same_key(jw_get_str(reply, "public_key"), jw_get_str(req, "public_key")))
			return "public_key is not the key registered";
	} else if (!strcmp(rtype, "lookup")) {
		if (!echoes_id(req, reply))
			return "node_id is not the node asked about";
		if (!jw_get_str(reply, "public_key"))
			return "no public_key";
	} else if (!strcmp(rtype, "resolve")) {
		if (!echoes_id(req, reply))
			return "node_id is not the node asked about";
		if (!jw_get_str(reply, "real_addr"))
			return "no real_addr";
	} else if (!strcmp(rtype, "rotate_key")) {
		if (!echoes_id(req, reply))
			return "node_id is not ours";
	} else if (!strcmp(rtype, "resolve_hostname")) {
		if (!node_id_ok(jw_get_u32(reply, "node_id")))
			return "no valid node_id";
	} else if (!strcmp(rtype, "poll_handshakes")) {
		if (!is_array_or_absent(reply, "requests") || !is_array_or_absent(reply, "responses"))
			return "requests or responses is not an array";
	}
	return NULL;
}

/* ---- queue ---- */
static void req_free(struct rc_req *r)
{
	json_object_put(r->req);
	free(r->fields);
	free(r);
}

static int64_t deadline_fire(pilot_loop *l, uint64_t id, void *arg);

static void arm_deadline(regclient *c)
{
	uint64_t now = pilot_now_ms();

	pilot_loop_del_timer(c->loop, c->dl_timer);
	c->dl_timer = 0;
	if (c->head && !c->dying)
		c->dl_timer = pilot_loop_add_timer(c->loop, c->head->deadline > now ?
						   (int64_t)(c->head->deadline - now) : 0,
						   deadline_fire, c);
}

/* Unlink the head and hand it its result. */
static void complete_head(regclient *c, json_object *reply, int err)
{
	struct rc_req *r = c->head;

	c->head = r->next;
	if (!c->head)
		c->tail = NULL;
	c->n--;
	c->inflight = false;
	if (r->cb)
		r->cb(r->arg, reply, err);
	req_free(r);
}

static void destroy(regclient *c);

static void enter(regclient *c)
{
	c->depth++;
}

/* Returns true if c is gone. */
static bool leave(regclient *c)
{
	if (--c->depth == 0 && c->dying) {
		destroy(c);
		return true;
	}
	return false;
}

static int64_t kick_fire(pilot_loop *l, uint64_t id, void *arg)
{
	regclient *c = arg;

	(void)l, (void)id;
	c->kick_timer = 0;
	enter(c);
	if (c->head && c->state == RC_IDLE)
		start_connect(c);
	else if (c->state == RC_UP)
		send_head(c);
	leave(c);
	return 0;
}

/* Move things along from outside any callback of ours: on the next loop turn. */
static void kick(regclient *c)
{
	if (!c->kick_timer && !c->dying)
		c->kick_timer = pilot_loop_add_timer(c->loop, 0, kick_fire, c);
}

static int enqueue(regclient *c, json_object *req, char *fields, regclient_cb cb, void *arg)
{
	struct rc_req *r;

	if (c->dying) {
		json_object_put(req);
		free(fields);
		return -ESHUTDOWN;
	}
	if (c->n >= c->queue_max) {
		json_object_put(req);
		free(fields);
		return -ENOBUFS;
	}
	if (!(r = calloc(1, sizeof(*r)))) {
		json_object_put(req);
		free(fields);
		return -ENOMEM;
	}
	r->req = req;
	r->fields = fields;
	r->cb = cb;
	r->arg = arg;
	r->expire = r->deadline = pilot_now_ms() + (uint64_t)c->timeout_ms;
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	c->n++;
	if (c->head == r)
		arm_deadline(c);
	kick(c);
	return 0;
}

int regclient_request(regclient *c, json_object *req, regclient_cb cb, void *arg)
{
	if (!req || !json_object_is_type(req, json_type_object) || !jw_get_str(req, "type")) {
		json_object_put(req);
		return -EINVAL;
	}
	return enqueue(c, req, NULL, cb, arg);
}

int regclient_request_signed(regclient *c, json_object *req, const char *fields,
			     regclient_cb cb, void *arg)
{
	char *f;

	if (!c->id) {
		json_object_put(req);
		return -ENOKEY;
	}
	if (!fields || !req || !json_object_is_type(req, json_type_object) ||
	    !jw_get_str(req, "type") || (!c->sig_v2 && !regclient_v1_keyword(jw_get_str(req, "type")))) {
		json_object_put(req);
		return -EINVAL;
	}
	if (!(f = strdup(fields))) {
		json_object_put(req);
		return -ENOMEM;
	}
	return enqueue(c, req, f, cb, arg);
}

/* ---- connection ---- */
static void conn_close(regclient *c)
{
	if (c->fd >= 0) {
		pilot_loop_del_fd(c->loop, c->fd);
		if (c->tp_ctx || c->state >= RC_HANDSHAKE)
			c->tp->close(c->tp_ctx);
		c->tp_ctx = NULL;
		close(c->fd);
		c->fd = -1;
	}
	if (c->ai)
		freeaddrinfo(c->ai);
	c->ai = c->ai_next = NULL;
	free(c->wbuf);
	c->wbuf = NULL;
	c->wlen = c->woff = 0;
	c->rlen = 0;
	c->state = RC_IDLE;
	c->st.connected = 0;
}

/* Move on to the next configured address (failover, issue 18): after a
 * failed connect, an unanswered attempt, or a read_only reply. */
static void next_addr(regclient *c, const char *why)
{
	size_t from = c->cur;

	if (c->naddr < 2)
		return;
	c->cur = (c->cur + 1) % c->naddr;
	c->host = c->hosts[c->cur];
	c->port = c->ports[c->cur];
	c->st.failovers++;
	log_warn("registry failover from=%s:%s to=%s:%s reason=\"%s\"", c->hosts[from], c->ports[from],
		 c->host, c->port, why);
}

static int64_t retry_fire(pilot_loop *l, uint64_t id, void *arg)
{
	regclient *c = arg;

	(void)l, (void)id;
	c->retry_timer = 0;
	enter(c);
	c->state = RC_IDLE;
	if (c->head)
		start_connect(c);
	leave(c);
	return 0;
}

/* Wait before the next attempt: [b/2, b] with b doubling to the cap; the first
 * attempt after a healthy connection goes at once. */
static void schedule_retry(regclient *c)
{
	int64_t delay = 0;

	if (!c->head || c->dying)
		return;
	if (c->backoff > 0)
		delay = c->backoff / 2 + (int64_t)randombytes_uniform((uint32_t)(c->backoff / 2 + 1));
	c->backoff = c->backoff ? c->backoff * 2 : c->bmin;
	if (c->backoff > c->bmax)
		c->backoff = c->bmax;
	c->state = RC_WAIT;
	c->retry_timer = pilot_loop_add_timer(c->loop, delay, retry_fire, c);
}

static void connect_failed(regclient *c, int err)
{
	log_debug("registry connect failed addr=%s:%s err=\"%s\"", c->host, c->port, strerror(-err));
	c->st.connect_fails++;
	conn_close(c);
	next_addr(c, "connect failed");
	schedule_retry(c);
}

static void conn_event(pilot_loop *l, int fd, int events, void *arg);

static void conn_update(regclient *c)
{
	int ev = PILOT_EV_READ;

	if (c->woff < c->wlen)
		ev |= PILOT_EV_WRITE;
	pilot_loop_mod_fd(c->loop, c->fd, ev);
}

static void drive_handshake(regclient *c)
{
	int want = PILOT_EV_READ, r = c->tp->handshake(c->tp_ctx, c->fd, &want);

	if (r == -EAGAIN) {
		pilot_loop_mod_fd(c->loop, c->fd, want);
		return;
	}
	if (r < 0) {
		connect_failed(c, r);
		return;
	}
	bool switched = c->st.connects > 0 && c->cur != c->st.in_use;

	c->state = RC_UP;
	c->st.connects++;
	c->st.connected = 1;
	c->st.in_use = c->cur;
	log_debug("registry connected addr=%s:%s transport=%s", c->host, c->port, c->tp->name);
	if (switched)
		log_info("registry in use is now addr=%s:%s", c->host, c->port);
	pilot_loop_mod_fd(c->loop, c->fd, PILOT_EV_READ);
	send_head(c);
	if (c->st.connects > 1 && c->on_reconnect) {
		c->on_reconnect(c->on_reconnect_arg);
		if (c->dying || c->state != RC_UP)
			return;
	}
	if (switched && c->on_switch)
		c->on_switch(c->on_switch_arg, regclient_addr(c));
}

static void connected(regclient *c)
{
	int r;

	freeaddrinfo(c->ai);
	c->ai = c->ai_next = NULL;
	r = c->tp->open(c->tp_cfg, c->fd, c->host, &c->tp_ctx);
	if (r < 0) {
		connect_failed(c, r);
		return;
	}
	c->state = RC_HANDSHAKE;
	drive_handshake(c);
}

/* Try the remaining addresses; connect is non-blocking. */
static void try_next_addr(regclient *c)
{
	int err = -ECONNREFUSED;

	while (c->ai_next) {
		struct addrinfo *a = c->ai_next;
		int fd, rc;

		c->ai_next = a->ai_next;
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		rc = connect(fd, a->ai_addr, a->ai_addrlen);
		if (rc == 0 || errno == EINPROGRESS) {
			bool inprog = rc != 0;

			if ((err = pilot_loop_add_fd(c->loop, fd, PILOT_EV_WRITE, conn_event, c)) < 0) {
				close(fd);
				continue;
			}
			c->fd = fd;
			c->state = RC_CONNECTING;
			if (!inprog)
				connected(c);
			return;
		}
		err = -errno;
		close(fd);
	}
	connect_failed(c, err);
}

static void start_connect(regclient *c)
{
	/* No AI_ADDRCONFIG: it hides 127.0.0.1/::1 in a namespace with only lo up. */
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	int r;

	conn_close(c);
	/* Blocking resolution, accepted at connect time (see regclient.h). */
	r = getaddrinfo(c->host, c->port, &hints, &c->ai);
	if (r != 0) {
		log_warn("registry address cannot be resolved addr=%s:%s err=\"%s\"", c->host, c->port,
			 gai_strerror(r));
		c->ai = NULL;
		connect_failed(c, -EHOSTUNREACH);
		return;
	}
	c->ai_next = c->ai;
	c->state = RC_CONNECTING;
	try_next_addr(c);
}

/* The connection broke after it was up. The request in flight is kept for one
 * resend unless it has used that already. */
static void conn_lost(regclient *c, int err)
{
	bool was_inflight = c->inflight;

	log_debug("registry connection lost addr=%s:%s err=\"%s\"", c->host, c->port, strerror(-err));
	conn_close(c);
	c->inflight = false;
	if (was_inflight && c->head && c->head->sends >= RC_MAX_SENDS) {
		complete_head(c, NULL, err);
		if (c->dying)
			return;
		arm_deadline(c);
	}
	schedule_retry(c);
}

static int flush(regclient *c)
{
	while (c->woff < c->wlen) {
		ssize_t n = c->tp->write(c->tp_ctx, c->fd, c->wbuf + c->woff, c->wlen - c->woff);

		if (n == -EINTR)
			continue;
		if (n == -EAGAIN)
			break;
		if (n < 0) {
			conn_lost(c, (int)n);
			return -1;
		}
		c->woff += (size_t)n;
	}
	if (c->woff == c->wlen) {
		free(c->wbuf);
		c->wbuf = NULL;
		c->wlen = c->woff = 0;
	}
	conn_update(c);
	return 0;
}

static void send_head(regclient *c)
{
	struct rc_req *r = c->head;
	uint8_t *buf;
	int n;

	if (!r || c->inflight || c->state != RC_UP || c->busy_timer)
		return;
	if (r->fields && (n = regclient_sign(c, r->req, r->fields)) < 0) {
		complete_head(c, NULL, n);
		arm_deadline(c);
		kick(c);
		return;
	}
	if (c->on_send)
		c->on_send(c->on_send_arg, r->req);
	if ((n = jw_encode(r->req, &buf)) < 0) {
		complete_head(c, NULL, n);
		arm_deadline(c);
		kick(c);
		return;
	}
	if (r->sends++ > 0)
		c->st.resends++;
	c->st.sent++;
	r->sent_us = pilot_now_us();
	c->inflight = true;
	/* An attempt that gets no answer in attempt_ms is sent again on a fresh
	 * connection (deadline_fire), up to the request's own timeout. */
	{
		uint64_t now = pilot_now_ms();

		r->deadline = now + (uint64_t)c->attempt_ms < r->expire ? now + (uint64_t)c->attempt_ms : r->expire;
		arm_deadline(c);
	}
	c->wbuf = buf;
	c->wlen = (size_t)n;
	c->woff = 0;
	flush(c);
}

static void observe_rtt(regclient *c)
{
	static const uint64_t bounds[REGCLIENT_RTT_NB] = REGCLIENT_RTT_BOUNDS_US;
	uint64_t us = pilot_now_us() - c->head->sent_us;
	int i = 0;

	while (i < REGCLIENT_RTT_NB && us > bounds[i])
		i++;
	c->st.rtt_le[i]++;
	c->st.rtt_sum_us += us;
}

static int64_t busy_fire(pilot_loop *l, uint64_t id, void *arg)
{
	regclient *c = arg;

	(void)l, (void)id;
	c->busy_timer = 0;
	enter(c);
	if (c->head && c->state == RC_IDLE)
		start_connect(c);
	else
		send_head(c);
	leave(c);
	return 0;
}

/* The registry refused the head with code busy (its write queue is full; it
 * changed nothing) or unavailable (its database is unreachable): send it again after retry_after_ms plus up to 50 % jitter,
 * if that is still before the request's own timeout. true if so. */
static bool busy_retry(regclient *c, json_object *reply)
{
	const char *code = jw_get_str(reply, "code");
	struct rc_req *r = c->head;
	int64_t ms;

	if (!r || !code || (strcmp(code, "busy") && strcmp(code, "unavailable")))
		return false;
	ms = jw_get_i64(reply, "retry_after_ms");
	ms = ms < 20 ? 20 : ms > 5000 ? 5000 : ms;
	ms += (int64_t)randombytes_uniform((uint32_t)(ms / 2 + 1));
	if (pilot_now_ms() + (uint64_t)ms >= r->expire)
		return false;
	c->st.busy++;
	c->inflight = false;
	r->deadline = r->expire;
	log_debug("registry busy; retrying type=%s in_ms=%lld", jw_get_str(r->req, "type"), (long long)ms);
	c->busy_timer = pilot_loop_add_timer(c->loop, ms, busy_fire, c);
	return c->busy_timer != 0;
}

/* The registry refused a signed head as replayed_signature: the same type,
 * fields and second were signed before by this identity, in an earlier run of
 * this node (unique_ts only remembers this process's requests; a restart within
 * the same second repeats a deterministic Ed25519 signature). Sign it again:
 * unique_ts now moves sig_ts past the refused one.
 * An earlier run may have moved sig_ts many seconds ahead (one second per
 * identical request: a burst of 100 resolves of one peer moves it 100 s), so
 * the k-th re-sign moves sig_ts 2^(k-1) s past the refused one (1, 2, 4 ... 64
 * s): past a burst of n requests in about log2(n) tries. A step that would
 * leave the registry's window (|now - sig_ts| <= 120 s, SIGNATURES.md) picks a
 * random second in [now, now + 110] instead. Up to 32 tries. The registry
 * changed nothing for the refused one. true if resent. */
static bool resign_retry(regclient *c, json_object *reply)
{
	const char *code = jw_get_str(reply, "code");
	struct rc_req *r = c->head;

	if (!r || !r->fields || !code || strcmp(code, "replayed_signature") || r->resigns >= 32)
		return false;
	r->resigns++;
	c->st.resigned++;
	{
		const char *type = jw_get_str(r->req, "type");
		int64_t refused = jw_get_i64(r->req, "sig_ts"), now = regclient_server_now(c);
		int64_t next = refused + ((int64_t)1 << (r->resigns - 1 < 6 ? r->resigns - 1 : 6));

		uint64_t h = type ? req_hash(type, r->fields) : 0;

		if (next > now + 110 || next < now - 110) {
			next = now + (int64_t)randombytes_uniform(111);
			for (int i = 0; i < RC_RECENT; i++) /* else unique_ts climbs past them again */
				if (c->recent[i].h == h)
					c->recent[i].h = 0;
		}
		if (type)
			ts_taken(c, h, next - 1);
	}
	c->inflight = false;
	log_debug("registry refused a repeated signature; signing again type=%s", jw_get_str(r->req, "type"));
	c->busy_timer = pilot_loop_add_timer(c->loop, 0, busy_fire, c);
	return c->busy_timer != 0;
}

static void got_reply(regclient *c, json_object *reply)
{
	const char *why;
	int err = 0;

	c->st.replies++;
	observe_rtt(c);
	c->backoff = 0; /* the server answers: the next reconnect may go at once */
	if (json_object_is_type(json_object_object_get(reply, "error"), json_type_string)) {
		const char *code = jw_get_str(reply, "code");

		observe_reply(c, reply);
		if (busy_retry(c, reply) || resign_retry(c, reply))
			return;
		err = -EREMOTEIO;
		c->st.errors++;
		/* A read-only standby (registry.md §12) among several registries:
		 * look for the writable one for what comes next. */
		if (code && !strcmp(code, "read_only") && c->naddr > 1)
			c->leave_addr = true;
	} else if ((why = regclient_reply_problem(c->head->req, reply))) {
		/* Nothing of it is used, not even its clock or sig_v2. */
		c->st.malformed++;
		log_warn("registry reply refused addr=%s:%s request=%s reason=\"%s\"", c->host, c->port,
			 jw_get_str(c->head->req, "type"), why);
		complete_head(c, NULL, -EBADMSG);
		return;
	} else {
		observe_reply(c, reply);
	}
	complete_head(c, reply, err);
}

/* Decode and deliver every complete frame. -1 if the connection was dropped
 * (or the client freed inside a callback). */
static int process_frames(regclient *c)
{
	size_t off = 0;

	while (off < c->rlen) {
		json_object *o = NULL;
		int n = jw_decode(c->rbuf + off, c->rlen - off, &o);

		if (n == 0)
			break;
		if (n < 0 || !c->inflight) {
			json_object_put(o);
			conn_lost(c, -EPROTO);
			return -1;
		}
		off += (size_t)n;
		got_reply(c, o);
		json_object_put(o);
		if (c->dying)
			return -1;
		if (c->leave_addr) {
			c->leave_addr = false;
			conn_close(c);
			next_addr(c, "read-only standby");
			c->backoff = 0;
			arm_deadline(c);
			schedule_retry(c);
			return -1;
		}
		arm_deadline(c);
		send_head(c);
		if (c->state != RC_UP)
			return -1;
	}
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= off;
	return 0;
}

static int grow_rbuf(regclient *c)
{
	size_t cap = c->rcap ? c->rcap * 2 : 4096, lim = JW_MAX_BODY + 4;
	uint8_t *g;

	if (c->rcap >= lim)
		return -EMSGSIZE;
	if (cap > lim)
		cap = lim;
	if (!(g = realloc(c->rbuf, cap)))
		return -ENOMEM;
	c->rbuf = g;
	c->rcap = cap;
	return 0;
}

static void on_readable(regclient *c)
{
	for (;;) {
		ssize_t n;
		int r;

		if (c->rlen == c->rcap && (r = grow_rbuf(c)) < 0) {
			conn_lost(c, r == -EMSGSIZE ? -EPROTO : r);
			return;
		}
		n = c->tp->read(c->tp_ctx, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
		if (n == -EAGAIN)
			return;
		if (n == -EINTR)
			continue;
		if (n <= 0) {
			conn_lost(c, n == 0 ? -ECONNRESET : (int)n);
			return;
		}
		c->rlen += (size_t)n;
		if (process_frames(c) < 0)
			return;
	}
}

static void on_connecting(regclient *c)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr) {
		pilot_loop_del_fd(c->loop, c->fd);
		close(c->fd);
		c->fd = -1;
		try_next_addr(c);
		return;
	}
	connected(c);
}

static void conn_event(pilot_loop *l, int fd, int events, void *arg)
{
	regclient *c = arg;

	(void)l, (void)fd;
	enter(c);
	if (c->state == RC_CONNECTING)
		on_connecting(c);
	else if (c->state == RC_HANDSHAKE)
		drive_handshake(c);
	else if (c->state == RC_UP) {
		if ((events & PILOT_EV_WRITE) && c->wbuf)
			flush(c);
		if (c->state == RC_UP && (events & PILOT_EV_READ))
			on_readable(c);
	}
	leave(c);
}

/* Expire from the head: the in-flight request takes the connection with it
 * (a late reply would be taken for the next request's). */
static int64_t deadline_fire(pilot_loop *l, uint64_t id, void *arg)
{
	regclient *c = arg;
	uint64_t now = pilot_now_ms();

	(void)l, (void)id;
	c->dl_timer = 0;
	enter(c);
	while (c->head && c->head->deadline <= now && !c->dying) {
		bool was_inflight = c->inflight;

		if (was_inflight && now < c->head->expire) {
			/* No answer on this connection (a dead path, a stalled server):
			 * a late reply would be taken for the next request's, so drop
			 * it and send again at once on a fresh one. */
			log_warn("registry request unanswered; retrying on a fresh connection addr=%s:%s type=%s",
				 c->host, c->port, jw_get_str(c->head->req, "type"));
			c->st.retries++;
			conn_close(c);
			next_addr(c, "request unanswered");
			c->inflight = false;
			c->head->deadline = c->head->expire;
			c->backoff = 0;
			pilot_loop_del_timer(c->loop, c->retry_timer);
			c->retry_timer = 0;
			start_connect(c);
			break;
		}
		c->st.timeouts++;
		if (was_inflight) {
			log_warn("registry request timed out addr=%s:%s type=%s", c->host, c->port,
				 jw_get_str(c->head->req, "type"));
			conn_close(c);
		}
		complete_head(c, NULL, -ETIMEDOUT);
		if (was_inflight && !c->dying)
			kick(c);
	}
	if (!c->dying)
		arm_deadline(c);
	leave(c);
	return 0;
}

/* ---- life cycle ---- */
static int split_hostport(const char *addr, char **host, char **port)
{
	const char *colon;

	if (!addr || !*addr)
		return -EINVAL;
	if (addr[0] == '[') {
		const char *rb = strchr(addr, ']');

		if (!rb || rb[1] != ':' || !rb[2])
			return -EINVAL;
		*host = strndup(addr + 1, (size_t)(rb - addr - 1));
		*port = strdup(rb + 2);
	} else {
		if (!(colon = strrchr(addr, ':')) || !colon[1] || colon == addr)
			return -EINVAL;
		if (memchr(addr, ':', (size_t)(colon - addr)))
			return -EINVAL; /* bare IPv6 needs brackets */
		*host = strndup(addr, (size_t)(colon - addr));
		*port = strdup(colon + 1);
	}
	return *host && *port ? 0 : -ENOMEM;
}

/* "a:9000,b:9000": up to RC_ADDR_MAX addresses, tried in this order. */
static int split_list(regclient *c, const char *list, char *err, size_t errlen)
{
	const char *p = list ? list : "";

	do {
		const char *end;
		size_t len;
		char *one;
		int r;

		while (*p == ' ')
			p++;
		end = strchr(p, ',');
		len = end ? (size_t)(end - p) : strlen(p);
		while (len && p[len - 1] == ' ')
			len--;
		if (!(one = strndup(p, len))) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}

		if (c->naddr == RC_ADDR_MAX) {
			snprintf(err, errlen, "more than %d registry addresses", RC_ADDR_MAX);
			free(one);
			return -E2BIG;
		}
		r = split_hostport(one, &c->hosts[c->naddr], &c->ports[c->naddr]);
		if (r == 0) {
			c->addrs[c->naddr++] = one;
		} else {
			free(c->hosts[c->naddr]);
			free(c->ports[c->naddr]);
			c->hosts[c->naddr] = c->ports[c->naddr] = NULL;
			snprintf(err, errlen,
				 "registry address \"%s\" is not host:port (IPv6 as [addr]:port)", one);
			free(one);
			return r;
		}
		p = end ? end + 1 : NULL;
	} while (p);
	c->host = c->hosts[0];
	c->port = c->ports[0];
	return 0;
}

const char *regclient_addr(const regclient *c)
{
	return c->addrs[c->cur];
}

size_t regclient_naddr(const regclient *c)
{
	return c->naddr;
}

regclient *regclient_new(pilot_loop *l, const regclient_config *cfg, char *err, size_t errlen)
{
	regclient *c = calloc(1, sizeof(*c));

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->fd = -1;
	if (split_list(c, cfg->addr, err, errlen) < 0) {
		regclient_free(c);
		return NULL;
	}
	c->loop = l;
	c->id = cfg->id;
	c->queue_max = cfg->queue_max ? cfg->queue_max : RC_QUEUE_DEFAULT;
	c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : RC_TIMEOUT_DEFAULT;
	c->attempt_ms = cfg->attempt_timeout_ms > 0 ? cfg->attempt_timeout_ms : RC_ATTEMPT_DEFAULT;
	if (c->attempt_ms > c->timeout_ms)
		c->attempt_ms = c->timeout_ms;
	c->bmin = cfg->backoff_min_ms > 0 ? cfg->backoff_min_ms : RC_BACKOFF_MIN;
	c->bmax = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : RC_BACKOFF_MAX;
	if (c->bmax < c->bmin)
		c->bmax = c->bmin;
	c->tp = cfg->transport ? cfg->transport : &regclient_tcp;
	c->tp_cfg = cfg->transport_cfg;
	c->skew_s = cfg->clock_skew_s;
	c->on_send = cfg->on_send;
	c->on_send_arg = cfg->on_send_arg;
	c->on_reconnect = cfg->on_reconnect;
	c->on_reconnect_arg = cfg->on_reconnect_arg;
	c->on_switch = cfg->on_switch;
	c->on_switch_arg = cfg->on_switch_arg;
	return c;
}

static void destroy(regclient *c)
{
	pilot_loop_del_timer(c->loop, c->retry_timer);
	pilot_loop_del_timer(c->loop, c->kick_timer);
	pilot_loop_del_timer(c->loop, c->dl_timer);
	pilot_loop_del_timer(c->loop, c->busy_timer);
	conn_close(c);
	free(c->rbuf);
	for (size_t i = 0; i < c->naddr; i++) {
		free(c->hosts[i]);
		free(c->ports[i]);
		free(c->addrs[i]);
	}
	free(c);
}

void regclient_free(regclient *c)
{
	if (!c || c->dying)
		return;
	c->dying = true;
	enter(c);
	/* Callbacks may queue more (refused with -ESHUTDOWN now). */
	while (c->head)
		complete_head(c, NULL, -ECANCELED);
	leave(c);
}

void regclient_get_stats(const regclient *c, regclient_stats *st)
{
	*st = c->st;
	st->queued = c->n;
}
