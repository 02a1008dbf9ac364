/* Event stream broker and clients (services.md §7); see events.h for the bounds. */
#define PILOT_EVENTS_INTERNAL
#include "daemon/events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stream/conn.h"
#include "lib/log.h"

#define EVS_MAX_PAYLOAD_DEFAULT (1u << 20)
#define EVS_MAX_QUEUE_DEFAULT   (4u << 20)
#define EVS_MAX_CONNS_DEFAULT   256
#define EVS_MAX_MEM_DEFAULT     (64ull << 20)

/* ---- codec ------------------------------------------------------------------------ */

int evs_hdr_decode(const uint8_t *buf, size_t len, uint32_t max_payload, const uint8_t **topic,
		  size_t *tlen, uint32_t *plen)
{
	size_t t;
	const uint8_t *q;

	if (len < 2)
		return 0;
	t = (size_t)buf[0] << 8 | buf[1];
	if (t > EVS_MAX_TOPIC)
		return -EMSGSIZE;
	if (len < 2 + t + 4)
		return 0;
	q = buf + 2 + t;
	*plen = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
	if (*plen > max_payload || *plen > EVS_MAX_PAYLOAD)
		return -EMSGSIZE;
	*topic = buf + 2;
	*tlen = t;
	return (int)(2 + t + 4);
}

int64_t evs_encode(const void *topic, size_t tlen, const void *data, size_t len, uint8_t **out)
{
	uint8_t *b;

	*out = NULL;
	if (tlen > EVS_MAX_TOPIC || len > EVS_MAX_PAYLOAD)
		return -EMSGSIZE;
	b = malloc(2 + tlen + 4 + len + 1);
	if (!b)
		return -ENOMEM;
	b[0] = (uint8_t)(tlen >> 8);
	b[1] = (uint8_t)tlen;
	if (tlen)
		memcpy(b + 2, topic, tlen);
	b[2 + tlen] = (uint8_t)(len >> 24);
	b[3 + tlen] = (uint8_t)(len >> 16);
	b[4 + tlen] = (uint8_t)(len >> 8);
	b[5 + tlen] = (uint8_t)len;
	if (len)
		memcpy(b + 6 + tlen, data, len);
	*out = b;
	return (int64_t)(6 + tlen + len);
}

/* ---- an incremental event reader (broker sessions and subscribers) ------------------ */

/* One encoded event, shared by every subscriber queue that holds it. */
typedef struct evs_msg {
	uint32_t refs;
	size_t len;
	uint8_t data[];             /* the whole encoding: topic length, topic, length, payload */
} evs_msg;

typedef struct evs_reader {
	uint8_t hdr[EVS_HDR_MAX];
	size_t hlen, hwant;         /* hwant: 2, then 2 + T + 4 */
	size_t tlen;
	uint32_t plen;
	evs_msg *msg;                /* being filled; NULL while skipping the payload */
	uint64_t left;              /* payload bytes still to come */
} evs_reader;

enum { RD_MORE = 0, RD_EVENT = 1, RD_HEADER = 2, RD_BAD = -1 };

static void rd_reset(evs_reader *r)
{
	r->hlen = 0;
	r->hwant = 2;
	r->msg = NULL;
	r->left = 0;
}

/* Consume from p into the header; RD_HEADER once it is whole (the caller then
 * sets r->msg or leaves it NULL to skip the payload), RD_BAD on a bad length. */
static int rd_header(evs_reader *r, const uint8_t *p, size_t n, size_t *used, uint32_t maxp)
{
	const uint8_t *topic;
	int h;

	while (*used < n && r->hlen < r->hwant) {
		size_t k = r->hwant - r->hlen;
		if (k > n - *used)
			k = n - *used;
		memcpy(r->hdr + r->hlen, p + *used, k);
		r->hlen += k;
		*used += k;
		if (r->hlen == 2) {
			size_t t = (size_t)r->hdr[0] << 8 | r->hdr[1];
			if (t > EVS_MAX_TOPIC)
				return RD_BAD;
			r->hwant = 2 + t + 4;
		}
	}
	if (r->hlen < r->hwant)
		return RD_MORE;
	h = evs_hdr_decode(r->hdr, r->hlen, maxp, &topic, &r->tlen, &r->plen);
	if (h < 0)
		return RD_BAD;
	r->left = r->plen;
	return RD_HEADER;
}

/* Payload bytes into r->msg (or dropped); RD_EVENT when the event is complete. */
static int rd_payload(evs_reader *r, const uint8_t *p, size_t n, size_t *used)
{
	size_t k = n - *used < r->left ? n - *used : (size_t)r->left;

	if (r->msg && k)
		memcpy(r->msg->data + r->msg->len - r->left, p + *used, k);
	*used += k;
	r->left -= k;
	return r->left == 0 ? RD_EVENT : RD_MORE;
}

static evs_msg *msg_new(const evs_reader *r)
{
	size_t len = r->hlen + r->plen;
	evs_msg *m = malloc(sizeof(*m) + len);

	if (!m)
		return NULL;
	m->refs = 1;
	m->len = len;
	memcpy(m->data, r->hdr, r->hlen);
	return m;
}

/* ---- broker ------------------------------------------------------------------------- */

typedef struct qnode {
	struct qnode *next;
	evs_msg *m;
} qnode;

struct evs_session {
	evs_broker *b;
	conn *c;
	pilot_addr from;
	evs_session *prev, *next;
	evs_reader rd;
	bool subscribed, dead, in_pump;
	uint8_t topic[EVS_MAX_TOPIC];
	size_t tlen;
	qnode *qh, *qt;
	size_t qoff;                /* bytes of the head event already written */
	uint64_t qbytes;
};

struct evs_broker {
	conn_table *t;
	evs_config cfg;
	evs_session *head;
	evs_broker_stats st;
};

static void msg_put(evs_broker *b, evs_msg *m)
{
	if (m && --m->refs == 0) {
		b->st.mem -= m->len;
		free(m);
	}
}

static void note(evs_session *ss, enum evs_note what, const uint8_t *topic, size_t tlen, size_t size)
{
	if (ss->b->cfg.on_note)
		ss->b->cfg.on_note(ss->b->cfg.ctx, what, topic, tlen, ss->from, size);
}

static void queue_clear(evs_session *ss)
{
	while (ss->qh) {
		qnode *q = ss->qh;
		ss->qh = q->next;
		msg_put(ss->b, q->m);
		free(q);
	}
	ss->qt = NULL;
	ss->qoff = 0;
	ss->qbytes = 0;
}

/* Let go of everything a session holds (idempotent); it stays listed until freed. */
static void sess_release(evs_session *ss)
{
	if (ss->subscribed)
		note(ss, EVS_UNSUBSCRIBED, ss->topic, ss->tlen, 0);
	ss->subscribed = false;
	queue_clear(ss);
	if (ss->rd.msg) {
		ss->b->st.mem -= ss->rd.msg->len;
		free(ss->rd.msg);
		ss->rd.msg = NULL;
	}
	ss->dead = true;
}

void evs_session_free(evs_session *ss)
{
	evs_broker *b;

	if (!ss)
		return;
	b = ss->b;
	sess_release(ss); /* idempotent: a session may be marked dead without it */
	if (ss->prev)
		ss->prev->next = ss->next;
	else
		b->head = ss->next;
	if (ss->next)
		ss->next->prev = ss->prev;
	b->st.active--;
	free(ss);
}

/* Drop a session: a conn is aborted and the session freed; a conn-less one
 * (fuzzers) only released. Never called on the session whose pump is running. */
static void sess_drop(evs_session *ss)
{
	conn *c = ss->c;

	if (!c) {
		sess_release(ss);
		return;
	}
	ss->c = NULL;
	conn_abort(c);
	evs_session_free(ss);
}

static void flush(evs_session *ss)
{
	while (ss->c && ss->qh) {
		qnode *q = ss->qh;
		size_t want = q->m->len - ss->qoff;
		size_t w = conn_write(ss->c, q->m->data + ss->qoff, want);
		ss->qoff += w;
		ss->qbytes -= w;
		if (w < want)
			return;
		ss->qh = q->next;
		if (!ss->qh)
			ss->qt = NULL;
		ss->qoff = 0;
		msg_put(ss->b, q->m);
		free(q);
	}
}

/* false: the subscriber is too slow (or out of memory) and must be dropped. */
static bool enqueue(evs_session *ss, evs_msg *m)
{
	qnode *q;

	if (ss->qbytes + m->len > ss->b->cfg.max_queue)
		return false;
	q = malloc(sizeof(*q));
	if (!q)
		return false;
	q->next = NULL;
	q->m = m;
	m->refs++;
	if (ss->qt)
		ss->qt->next = q;
	else
		ss->qh = q;
	ss->qt = q;
	ss->qbytes += m->len;
	flush(ss);
	return true;
}

static bool wants(const evs_session *s, const uint8_t *topic, size_t tlen)
{
	bool star = s->tlen == 1 && s->topic[0] == '*';

	if (tlen == 1 && topic[0] == '*')
		return star;
	return star || (s->tlen == tlen && memcmp(s->topic, topic, tlen) == 0);
}

static void deliver(evs_session *pub, evs_msg *m)
{
	evs_broker *b = pub->b;
	const uint8_t *topic = m->data + 2;
	size_t tlen = pub->rd.tlen;
	evs_session *s, *next;

	b->st.published++;
	for (s = b->head; s; s = next) {
		next = s->next;
		if (s == pub || !s->subscribed || s->dead || !wants(s, topic, tlen))
			continue;
		if (enqueue(s, m)) {
			b->st.delivered++;
			continue;
		}
		b->st.slow_dropped++;
		sess_drop(s); /* s is gone; next is still valid */
	}
	note(pub, EVS_PUBLISHED, topic, tlen, m->len - pub->rd.hlen);
}

/* Make room for need bytes: evict the subscribers with the longest queues. */
static bool mem_room(evs_session *pub, size_t need)
{
	evs_broker *b = pub->b;

	while (b->st.mem + need > b->cfg.max_mem) {
		evs_session *worst = NULL;
		for (evs_session *s = b->head; s; s = s->next)
			if (s != pub && !s->dead && s->qbytes && (!worst || s->qbytes > worst->qbytes))
				worst = s;
		if (!worst)
			return false;
		b->st.evicted++;
		sess_drop(worst);
	}
	return true;
}

/* Header complete: subscription (payload skipped) or a publication to hold. */
static bool sess_header(evs_session *ss)
{
	evs_reader *r = &ss->rd;
	size_t len = r->hlen + r->plen;

	if (!ss->subscribed)
		return true;
	if (!mem_room(ss, len) || !(r->msg = msg_new(r))) {
		ss->b->st.mem_dropped++;
		return false;
	}
	ss->b->st.mem += len;
	return true;
}

static void sess_event(evs_session *ss)
{
	evs_reader *r = &ss->rd;

	if (!ss->subscribed) {
		memcpy(ss->topic, r->hdr + 2, r->tlen);
		ss->tlen = r->tlen;
		ss->subscribed = true;
		ss->b->st.subscribes++;
		note(ss, EVS_SUBSCRIBED, ss->topic, ss->tlen, 0);
	} else {
		evs_msg *m = r->msg;
		r->msg = NULL;
		deliver(ss, m);
		msg_put(ss->b, m);
	}
	rd_reset(r);
}

size_t evs_session_feed(evs_session *ss, const uint8_t *p, size_t len)
{
	size_t used = 0;
	int r;

	while (!ss->dead && used < len) {
		if (ss->rd.hlen < ss->rd.hwant) {
			r = rd_header(&ss->rd, p, len, &used, ss->b->cfg.max_payload);
			if (r == RD_BAD) {
				ss->b->st.oversize_dropped++;
				ss->dead = true;
				break;
			}
			if (r == RD_MORE)
				break;
			if (!sess_header(ss)) {
				ss->dead = true;
				break;
			}
		}
		if (rd_payload(&ss->rd, p, len, &used) == RD_EVENT)
			sess_event(ss);
	}
	return used;
}

bool evs_session_alive(const evs_session *ss)
{
	return !ss->dead;
}

void evs_session_drain(evs_session *ss)
{
	queue_clear(ss);
}

evs_session *evs_session_new(evs_broker *b, pilot_addr from)
{
	evs_session *ss = calloc(1, sizeof(*ss));

	if (!ss)
		return NULL;
	ss->b = b;
	ss->from = from;
	rd_reset(&ss->rd);
	ss->next = b->head;
	if (b->head)
		b->head->prev = ss;
	b->head = ss;
	b->st.active++;
	return ss;
}

/* ---- broker: the conn glue -------------------------------------------------------------- */

static void sess_pump(void *arg, conn *c)
{
	evs_session *ss = arg;
	const uint8_t *p;
	size_t n, used;

	if (ss->in_pump)
		return;
	ss->in_pump = true;
	flush(ss);
	while (!ss->dead && (n = conn_peek(c, &p)) > 0) {
		used = evs_session_feed(ss, p, n);
		conn_consume(c, used);
	}
	ss->in_pump = false;
	if (ss->dead) {
		sess_drop(ss);
	} else if (conn_eof(c)) {
		ss->c = NULL;
		conn_close(c);
		evs_session_free(ss);
	}
}

static void sess_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	evs_session *ss = arg;

	if (now == STREAM_CLOSED) {
		ss->c = NULL;
		conn_close(c);
		evs_session_free(ss);
	}
}

static void sess_writable(void *arg, conn *c)
{
	flush(arg);
}

static const conn_cbs sess_cbs = { sess_pump, sess_writable, sess_state };

static bool srv_accept(void *arg, conn *c)
{
	evs_broker *b = arg;
	evs_session *ss;
	conn_info ci;

	if (b->st.active >= b->cfg.max_conns) {
		b->st.refused++;
		return false;
	}
	conn_get_info(c, &ci);
	ss = evs_session_new(b, ci.remote);
	if (!ss)
		return false;
	ss->c = c;
	b->st.conns++;
	conn_set_cbs(c, &sess_cbs, ss);
	return true;
}

static const conn_listener_cbs srv_listener = { srv_accept };

evs_broker *evs_broker_new(conn_table *t, const evs_config *cfg, int *err)
{
	evs_broker *b = calloc(1, sizeof(*b));
	int r;

	if (!b) {
		if (err)
			*err = -ENOMEM;
		return NULL;
	}
	b->t = t;
	if (cfg)
		b->cfg = *cfg;
	if (!b->cfg.max_payload || b->cfg.max_payload > EVS_MAX_PAYLOAD)
		b->cfg.max_payload = b->cfg.max_payload ? EVS_MAX_PAYLOAD : EVS_MAX_PAYLOAD_DEFAULT;
	if (!b->cfg.max_queue)
		b->cfg.max_queue = EVS_MAX_QUEUE_DEFAULT;
	if (b->cfg.max_queue < b->cfg.max_payload + EVS_HDR_MAX) /* one whole event always fits */
		b->cfg.max_queue = b->cfg.max_payload + EVS_HDR_MAX;
	if (!b->cfg.max_conns)
		b->cfg.max_conns = EVS_MAX_CONNS_DEFAULT;
	if (!b->cfg.max_mem)
		b->cfg.max_mem = EVS_MAX_MEM_DEFAULT;
	if (b->cfg.max_mem < b->cfg.max_queue)
		b->cfg.max_mem = b->cfg.max_queue;
	if (t && (r = conn_listen(t, EVS_PORT, &srv_listener, b)) < 0) {
		free(b);
		if (err)
			*err = r;
		return NULL;
	}
	return b;
}

void evs_broker_free(evs_broker *b)
{
	if (!b)
		return;
	while (b->head) {
		evs_session *ss = b->head;
		if (ss->c) {
			conn_abort(ss->c);
			ss->c = NULL;
		}
		evs_session_free(ss);
	}
	if (b->t)
		conn_unlisten(b->t, EVS_PORT);
	free(b);
}

void evs_broker_get_stats(const evs_broker *b, evs_broker_stats *st)
{
	*st = b->st;
}

/* ---- client: subscribe ------------------------------------------------------------------- */

struct evs_sub {
	conn *c;
	evs_event_cb on_event;
	evs_end_cb on_end;
	void *arg;
	uint8_t *tx;                /* the subscription event */
	size_t ntx, sent;
	evs_reader rd;
	bool in_cb, cancelled;
};

static void sub_free(evs_sub *s)
{
	free(s->rd.msg);
	free(s->tx);
	free(s);
}

static void sub_end(evs_sub *s, int err)
{
	conn *c = s->c;

	s->c = NULL;
	if (err)
		conn_abort(c);
	else
		conn_close(c);
	s->on_end(s->arg, err);
	sub_free(s);
}

static void sub_writable(void *arg, conn *c)
{
	evs_sub *s = arg;

	while (s->sent < s->ntx) {
		size_t w = conn_write(c, s->tx + s->sent, s->ntx - s->sent);
		if (!w)
			return;
		s->sent += w;
	}
}

/* true when the subscriber is gone (ended or cancelled from the callback). */
static bool sub_event(evs_sub *s)
{
	evs_msg *m = s->rd.msg;
	size_t h = s->rd.hlen;

	s->rd.msg = NULL;
	s->in_cb = true;
	s->on_event(s->arg, m->data + 2, s->rd.tlen, m->data + h, m->len - h);
	s->in_cb = false;
	free(m);
	rd_reset(&s->rd);
	if (s->cancelled) {
		conn_abort(s->c);
		sub_free(s);
		return true;
	}
	return false;
}

static void sub_readable(void *arg, conn *c)
{
	evs_sub *s = arg;
	const uint8_t *p;
	size_t n, used;
	int r;

	/* one step per span: header bytes and/or payload bytes */
	while ((n = conn_peek(c, &p)) > 0) {
		used = 0;
		if (s->rd.hlen < s->rd.hwant) {
			r = rd_header(&s->rd, p, n, &used, EVS_MAX_PAYLOAD);
			if (r == RD_BAD) {
				sub_end(s, -EMSGSIZE);
				return;
			}
			if (r == RD_HEADER && !(s->rd.msg = msg_new(&s->rd))) {
				sub_end(s, -ENOMEM);
				return;
			}
		}
		r = s->rd.hlen == s->rd.hwant ? rd_payload(&s->rd, p, n, &used) : RD_MORE;
		conn_consume(c, used);
		if (r == RD_EVENT && sub_event(s))
			return;
	}
	if (conn_eof(c))
		sub_end(s, 0);
}

static void sub_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	evs_sub *s = arg;

	if (now == STREAM_ESTABLISHED)
		sub_writable(s, c);
	else if (now == STREAM_CLOSED)
		sub_end(s, err ? -err : -ECONNRESET);
}

static const conn_cbs sub_cbs = { sub_readable, sub_writable, sub_state };

evs_sub *evs_subscribe(conn_table *t, pilot_addr dst, const char *topic, evs_event_cb on_event,
		     evs_end_cb on_end, void *arg, int *err)
{
	size_t tlen = topic ? strlen(topic) : 0;
	evs_sub *s;
	int64_t n;
	int e = -EINVAL;

	if (!on_event || !on_end || tlen == 0 || tlen > EVS_MAX_TOPIC)
		goto fail;
	e = -ENOMEM;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto fail;
	s->on_event = on_event;
	s->on_end = on_end;
	s->arg = arg;
	rd_reset(&s->rd);
	n = evs_encode(topic, tlen, NULL, 0, &s->tx);
	if (n < 0) {
		sub_free(s);
		goto fail;
	}
	s->ntx = (size_t)n;
	s->c = conn_dial(t, dst, EVS_PORT, &sub_cbs, s, &e);
	if (!s->c) {
		sub_free(s);
		goto fail;
	}
	return s;
fail:
	if (err)
		*err = e;
	return NULL;
}

void evs_sub_cancel(evs_sub *s)
{
	if (!s)
		return;
	if (s->in_cb) {
		s->cancelled = true;
		return;
	}
	conn_abort(s->c);
	sub_free(s);
}

/* ---- client: publish ------------------------------------------------------------------------ */

struct evs_pub {
	conn *c;
	evs_pub_cb cb;
	void *arg;
	uint8_t *tx;                /* subscription event + publication */
	size_t ntx, sent;
	bool shut;
};

static void pub_end(evs_pub *p, int err)
{
	conn *c = p->c;

	p->c = NULL;
	if (err)
		conn_abort(c);
	else
		conn_close(c);
	p->cb(p->arg, err);
	free(p->tx);
	free(p);
}

static void pub_writable(void *arg, conn *c)
{
	evs_pub *p = arg;

	while (p->sent < p->ntx) {
		size_t w = conn_write(c, p->tx + p->sent, p->ntx - p->sent);
		if (!w)
			return;
		p->sent += w;
	}
	if (!p->shut) {
		p->shut = true;
		conn_shutdown(c);  /* the broker closes after reading our FIN */
	}
}

static void pub_readable(void *arg, conn *c)
{
	evs_pub *p = arg;
	const uint8_t *d;
	size_t n;

	while ((n = conn_peek(c, &d)) > 0) /* events others published meanwhile */
		conn_consume(c, n);
	if (conn_eof(c))
		pub_end(p, p->shut ? 0 : -ECONNRESET);
}

static void pub_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	evs_pub *p = arg;

	if (now == STREAM_ESTABLISHED)
		pub_writable(p, c);
	else if (now == STREAM_TIME_WAIT && p->shut)
		pub_end(p, 0);
	else if (now == STREAM_CLOSED)
		pub_end(p, err ? -err : -ECONNRESET);
}

static const conn_cbs pub_cbs = { pub_readable, pub_writable, pub_state };

evs_pub *evs_publish(conn_table *t, pilot_addr dst, const char *topic, const void *data,
		   size_t len, evs_pub_cb cb, void *arg, int *err)
{
	size_t tlen = topic ? strlen(topic) : 0;
	uint8_t *sub = NULL, *pubev = NULL;
	int64_t a, b;
	evs_pub *p;
	int e = -EINVAL;

	if (!cb || tlen == 0 || tlen > EVS_MAX_TOPIC || (len && !data))
		goto fail;
	a = evs_encode(topic, tlen, NULL, 0, &sub);
	b = evs_encode(topic, tlen, data, len, &pubev);
	p = calloc(1, sizeof(*p));
	e = a < 0 ? (int)a : b < 0 ? (int)b : -ENOMEM;
	if (a < 0 || b < 0 || !p || !(p->tx = malloc((size_t)(a + b)))) {
		free(p);
		goto fail;
	}
	memcpy(p->tx, sub, (size_t)a);
	memcpy(p->tx + a, pubev, (size_t)b);
	free(sub);
	free(pubev);
	sub = pubev = NULL;
	p->ntx = (size_t)(a + b);
	p->cb = cb;
	p->arg = arg;
	p->c = conn_dial(t, dst, EVS_PORT, &pub_cbs, p, &e);
	if (!p->c) {
		free(p->tx);
		free(p);
		goto fail;
	}
	return p;
fail:
	free(sub);
	free(pubev);
	if (err)
		*err = e;
	return NULL;
}

void evs_pub_cancel(evs_pub *p)
{
	if (!p)
		return;
	conn_abort(p->c);
	free(p->tx);
	free(p);
}
