/* Datagrams (packet.md §6), the control protocol (§7: pong answers, keepalives,
 * our own pings) and the built-in echo service (services.md §1). */
#include "stream/conn_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- datagrams ------------------------------------------------------------------- */

static conn_dbind *dbind_find(conn_table *t, uint16_t port)
{
	for (size_t i = 0; i < t->ndb; i++)
		if (t->db[i].port == port)
			return &t->db[i];
	return NULL;
}

int conn_dgram_bind(conn_table *t, uint16_t port, conn_dgram_cb cb, void *arg)
{
	if (!cb || t->shut)
		return -EINVAL;
	if (dbind_find(t, port))
		return -EADDRINUSE;
	if (t->ndb == t->capdb) {
		size_t n = t->capdb ? t->capdb * 2 : 8;
		conn_dbind *p = realloc(t->db, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		t->db = p;
		t->capdb = n;
	}
	t->db[t->ndb++] = (conn_dbind){ port, cb, arg };
	t->st.dgram_bindings = t->ndb;
	return 0;
}

int conn_dgram_unbind(conn_table *t, uint16_t port)
{
	conn_dbind *b = dbind_find(t, port);

	if (!b)
		return -ENOENT;
	*b = t->db[--t->ndb];
	t->st.dgram_bindings = t->ndb;
	return 0;
}

void conn_dgram_observe(conn_table *t, conn_dgram_cb cb, void *arg)
{
	t->obs = cb;
	t->obs_arg = arg;
}

int conn_dgram_send(conn_table *t, pilot_addr dst, uint16_t dport, const void *data, size_t len)
{
	return conn_dgram_send_from(t, 0, dst, dport, data, len);
}

/* A payload of len bytes may go out from this table now: 0, -EMSGSIZE,
 * -ESHUTDOWN or -EADDRNOTAVAIL (no address yet). */
static int can_send(const conn_table *t, size_t len)
{
	if (len > PROTO_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (t->shut)
		return -ESHUTDOWN;
	if (t->local.node == 0)
		return -EADDRNOTAVAIL;
	return 0;
}

int conn_dgram_send_from(conn_table *t, uint16_t sport, pilot_addr dst, uint16_t dport,
			 const void *data, size_t len)
{
	proto_hdr h = { .protocol = PROTO_DATAGRAM, .dst = dst, .dst_port = dport };
	int port, r;

	if (!len || !data || pilot_addr_is_broadcast(dst)) /* fan-out is the caller's job */
		return -EINVAL;
	if ((r = can_send(t, len)) < 0)
		return r;
	port = sport ? sport : conn_eph_peek(t); /* fresh per datagram, free after the send */
	if (port < 0)
		return port;
	h.src = conn_src_for(t, dst);
	h.src_port = (uint16_t)port;
	r = conn_send_hdr(t, dst.node, &h, data, len);
	if (r == 0)
		t->st.dgrams_sent++;
	return r;
}

void conn_dgram_input(conn_table *t, uint32_t from, const proto_hdr *h, const uint8_t *pl, size_t n)
{
	conn_dbind *b;

	if (!conn_local_ok(t, h->dst)) {
		t->st.drop_not_local++;
		return;
	}
	if (n == 0) {
		t->st.drop_empty_dgram++;
		return;
	}
	if (t->cfg.admit && !t->cfg.admit(t->cfg.ctx, from, h->dst_port, PROTO_DATAGRAM)) {
		t->st.drop_refused++;
		return;
	}
	b = dbind_find(t, h->dst_port);
	if (!b && !t->obs) {
		t->st.drop_no_port++;
		return;
	}
	t->st.dgrams_rcvd++;
	conn_emit(t, CONN_EV_DATAGRAM, h->src, h->src_port, h->dst_port, 0, n);
	if (t->obs)
		t->obs(t->obs_arg, h->src, h->src_port, h->dst_port, pl, n);
	/* the observer may have unbound it */
	if (b && (b = dbind_find(t, h->dst_port)))
		b->cb(b->arg, h->src, h->src_port, h->dst_port, pl, n);
}

/* ---- control: pings and pongs ---------------------------------------------------------- */

static void answer_ping(conn_table *t, uint32_t from, const proto_hdr *h, const uint8_t *pl, size_t n)
{
	proto_hdr r = {
		.flags = PROTO_ACK, .protocol = PROTO_CONTROL,
		.src = h->dst.node ? h->dst : t->local, .dst = h->src,
		.src_port = 0, .dst_port = h->src_port, .seq = h->seq, .ack = h->seq + 1,
	};

	t->st.pings_answered++;
	conn_send_hdr(t, from, &r, pl, n);
}

static void ping_remove(conn_table *t, size_t i)
{
	conn_eph_put(t, t->pings[i].port);
	t->pings[i] = t->pings[--t->npings];
}

static void on_pong(conn_table *t, uint32_t from, const proto_hdr *h, const uint8_t *pl, size_t n)
{
	for (size_t i = 0; i < t->npings; i++) {
		conn_ping_ent p = t->pings[i];
		if (p.node != from || p.port != h->dst_port || p.seq != h->seq)
			continue;
		ping_remove(t, i);
		t->st.pongs_matched++;
		p.cb(p.arg, 0, (uint32_t)(conn_now(t) - p.sent), pl, n);
		conn_arm(t);
		return;
	}
	t->st.drop_control++;
}

void conn_control_input(conn_table *t, uint32_t from, const proto_hdr *h, const uint8_t *pl, size_t n)
{
	if (h->flags & PROTO_ACK) { /* a pong (to our ping's port): never answered */
		on_pong(t, from, h, pl, n);
		return;
	}
	if (h->dst_port != PILOT_PORT_PING) {
		t->st.drop_control++;
		return;
	}
	if (n == 0 && h->src_port == 0) { /* tunnel keepalive */
		t->st.keepalives_rcvd++;
		return;
	}
	if (h->dst.node != 0 && !conn_local_ok(t, h->dst)) {
		t->st.drop_not_local++;
		return;
	}
	answer_ping(t, from, h, pl, n); /* including pathprobe.v1 */
}

int64_t conn_ping(conn_table *t, uint32_t node, uint32_t seq, const void *payload, size_t len,
		  conn_ping_cb cb, void *arg)
{
	proto_hdr h = { .protocol = PROTO_CONTROL, .dst = pilot_addr_make(0, node),
			.dst_port = PILOT_PORT_PING, .seq = seq };
	conn_ping_ent *p;
	int port, r;

	if (!cb || (len && !payload))
		return -EINVAL;
	if ((r = can_send(t, len)) < 0)
		return r;
	if (t->npings >= t->cfg.max_pings)
		return -EAGAIN;
	port = conn_eph_get(t);
	if (port < 0)
		return port;
	h.src = pilot_addr_make(0, t->local.node);
	h.src_port = (uint16_t)port;
	p = &t->pings[t->npings++];
	*p = (conn_ping_ent){
		.id = ++t->ping_ids, .node = node, .seq = seq, .port = (uint16_t)port,
		.sent = conn_now(t), .cb = cb, .arg = arg,
	};
	p->deadline = p->sent + (uint64_t)t->cfg.ping_timeout_ms * 1000;
	r = conn_send_hdr(t, node, &h, payload, len);
	if (r < 0 && r != -ENOBUFS) {
		ping_remove(t, (size_t)(p - t->pings));
		return r;
	}
	conn_arm(t);
	return t->ping_ids;
}

void conn_ping_cancel(conn_table *t, int64_t id)
{
	for (size_t i = 0; i < t->npings; i++) {
		if (t->pings[i].id == id) {
			ping_remove(t, i);
			conn_arm(t);
			return;
		}
	}
}

uint64_t conn_pings_deadline(const conn_table *t)
{
	uint64_t d = UINT64_MAX;

	for (size_t i = 0; i < t->npings; i++)
		if (t->pings[i].deadline < d)
			d = t->pings[i].deadline;
	return d;
}

/* Callbacks may start or cancel pings: restart the scan after each one. */
static void pings_complete(conn_table *t, uint64_t now, bool all, int err)
{
	for (;;) {
		size_t i;
		conn_ping_ent p;

		for (i = 0; i < t->npings; i++)
			if (all || t->pings[i].deadline <= now)
				break;
		if (i == t->npings)
			return;
		p = t->pings[i];
		ping_remove(t, i);
		if (err == -ETIMEDOUT)
			t->st.ping_timeouts++;
		p.cb(p.arg, err, 0, NULL, 0);
	}
}

void conn_pings_expire(conn_table *t, uint64_t now)
{
	pings_complete(t, now, false, -ETIMEDOUT);
}

void conn_pings_cancel_all(conn_table *t)
{
	if (t->pings)
		pings_complete(t, 0, true, -ECANCELED);
}

void conn_svc_free(conn_table *t)
{
	free(t->db);
	t->db = NULL;
	t->ndb = t->capdb = 0;
	t->obs = NULL;
}

/* ---- echo (port 7) ------------------------------------------------------------------------ */

/* Write back what is readable; stop when the send buffer is full (on_writable
 * resumes), close once the peer's FIN has been echoed. */
static void echo_pump(void *arg, conn *c)
{
	const uint8_t *p;
	size_t n, w;

	while ((n = conn_peek(c, &p)) > 0) {
		w = conn_write(c, p, n);
		conn_consume(c, w);
		if (w < n)
			return;
	}
	if (conn_eof(c))
		conn_close(c);
}

static void echo_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	if (now == STREAM_CLOSED)
		conn_close(c);
}

static const conn_cbs echo_cbs = { echo_pump, echo_pump, echo_state };

static bool echo_accept(void *arg, conn *c)
{
	conn_set_cbs(c, &echo_cbs, arg);
	return true;
}

static const conn_listener_cbs echo_listener = { echo_accept };

int conn_echo_enable(conn_table *t)
{
	return conn_listen(t, PILOT_PORT_ECHO, &echo_listener, t);
}
