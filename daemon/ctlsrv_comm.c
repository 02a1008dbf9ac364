/* Stream and datagram control verbs over the connection table: connect, send,
 * recv, listen and the hidden dgram-send. The framework they run in is
 * ctlsrv_op.c; bench, traceroute and the test verbs are ctlsrv_bench.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/conn.h"
#include "daemon/ctlsrv_op.h"
#include "daemon/ctlsrv_verbs.h"
#include "lib/crypto.h"

#define CONNECT_PORT 1000
#define CHUNK_MAX 65535

static uint8_t scratch[1 << 16];

/* Finish recv or listen: a stream ends with {"items": n}; otherwise
 * {"messages": [...], "timeout": bool}. */
static void msgs_finish(cop *o, bool streaming, json_object *msgs, bool timed_out)
{
	json_object *r;

	if (streaming) {
		cop_end(o);
		return;
	}
	r = json_object_new_object();
	json_object_object_add(r, "messages", json_object_get(msgs));
	json_object_object_add(r, "timeout", json_object_new_boolean(timed_out));
	cop_ok(o, r);
}

/* recv and listen: count and timeout not negative, a port, the daemon up. */
static bool port_count_ok(ctlsrv_reply *r, node *n, int64_t port, int64_t count, int64_t timeout)
{
	if (count < 0 || timeout < 0) {
		ctlsrv_reply_err(r, "invalid_argument", "count and timeout must not be negative", NULL);
		return false;
	}
	return cop_port_ok(r, port, false) && cop_can_start(r, n);
}

/* ---- connect / send ---- */
typedef struct dial_op {
	cop o;
	conn *c;
	int port;
	char *msg;
	size_t msglen; /* msg may hold NULs (data_b64) */
	bool sent, half_close;
	size_t got;
	uint8_t *buf; /* half-close: everything until EOF, <= CHUNK_MAX */
} dial_op;

static void dial_release(cop *o)
{
	dial_op *d = (dial_op *)o;

	cop_drop_conn(&d->c, false);
	free(d->msg);
	free(d->buf);
}

static void dial_reply(dial_op *d, const uint8_t *buf, size_t len, bool eof)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "target", json_object_new_string(d->o.addr));
	json_object_object_add(o, "port", json_object_new_int(d->port));
	json_object_object_add(o, "sent", json_object_new_string_len(d->msg, (int)d->msglen));
	json_object_object_add(o, "response", json_object_new_string_len((const char *)buf, (int)len));
	if (d->half_close)
		json_object_object_add(o, "eof", json_object_new_boolean(eof));
	cop_ok(&d->o, o);
}

static void dial_readable(void *arg, conn *c)
{
	dial_op *d = arg;
	size_t len;

	if (!d->half_close) {
		len = conn_read(c, scratch, CHUNK_MAX);
		if (len || conn_eof(c))
			dial_reply(d, scratch, len, conn_eof(c));
		return;
	}
	while ((len = conn_read(c, d->buf + d->got, CHUNK_MAX - d->got)) > 0)
		d->got += len;
	if (conn_eof(c) || d->got == CHUNK_MAX)
		dial_reply(d, d->buf, d->got, conn_eof(c));
}

static void dial_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	dial_op *d = arg;
	size_t len = d->msglen;

	(void)old;
	if (now == STREAM_ESTABLISHED && !d->sent) {
		d->sent = true;
		d->o.established = true;
		if (conn_write(c, d->msg, len) != len) {
			cop_err(&d->o, "connection_failed", "%s:%d: message larger than the send buffer",
				d->o.addr, d->port);
			return;
		}
		if (d->half_close)
			conn_shutdown(c);
	} else if (now == STREAM_CLOSED) {
		if (d->half_close && d->got && !err) {
			dial_reply(d, d->buf, d->got, true);
			return;
		}
		cop_err(&d->o, abs(err) == ETIMEDOUT ? "timeout" : "connection_failed", "%s:%d: %s",
			d->o.addr, d->port, cop_errname(err));
	}
}

static const conn_cbs dial_cbs = { .on_readable = dial_readable, .on_state = dial_state };

static void dial_timeout(cop *o)
{
	dial_op *d = (dial_op *)o;

	cop_err(o, "timeout", "%s:%d: %s", o->addr, d->port, d->sent ? "no reply" : "connection not established");
}

static void dial_start(cop *o)
{
	dial_op *d = (dial_op *)o;
	int err = 0;

	d->c = conn_dial(o->n->conns, pilot_addr_make(0, o->target), (uint16_t)d->port, &dial_cbs, d, &err);
	if (!d->c)
		cop_err(o, "connection_failed", "%s:%d: %s", o->addr, d->port, strerror(-err));
}

void verb_connect(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *msg = ctlsrv_arg_str(args, "message");
	int64_t port = ctlsrv_arg_int(args, "port", CONNECT_PORT), timeout = ctlsrv_arg_timeout(args, 30000);
	dial_op *d;

	const char *b64 = ctlsrv_arg_str(args, "data_b64");
	uint8_t bin[CHUNK_MAX];
	int blen = -1;

	if (!msg)
		msg = ctlsrv_arg_str(args, "data");
	/* hidden (tests): binary bytes as base64 */
	if (!msg && b64 && (blen = pilot_b64_decode(b64, strlen(b64), bin, sizeof(bin))) > 0)
		msg = "";
	if (!msg || (blen < 0 && (!*msg || strlen(msg) > CHUNK_MAX)) || timeout <= 0) {
		ctlsrv_reply_err(r, "invalid_argument",
				 "want a message (at most 65535 bytes) and a positive timeout", NULL);
		return;
	}
	if (!cop_port_ok(r, port, true) || !cop_can_start(r, n))
		return;
	if (!(d = cop_new(n, r, sizeof(*d), timeout, dial_release)))
		return;
	d->o.on_timeout = dial_timeout;
	d->port = (int)port;
	d->half_close = ctlsrv_arg_bool(args, "half_close");
	d->msglen = blen >= 0 ? (size_t)blen : strlen(msg);
	if (!(d->msg = malloc(d->msglen + 1)) || (d->half_close && !(d->buf = malloc(CHUNK_MAX)))) {
		cop_err(&d->o, "internal", "out of memory");
		return;
	}
	memcpy(d->msg, blen >= 0 ? (const char *)bin : msg, d->msglen);
	d->msg[d->msglen] = '\0';
	cop_resolve(&d->o, args, dial_start);
}

/* ---- recv: accept count streams on a port, one chunk each ---- */
typedef struct recv_op recv_op;
typedef struct recv_conn {
	recv_op *op;
	conn *c;
	int seq;
	struct recv_conn *next;
} recv_conn;

struct recv_op {
	cop o;
	int port;
	int64_t count, accepted, done;
	bool listening, streaming;
	recv_conn *conns;
	json_object *msgs;
};

static void recv_release(cop *o)
{
	recv_op *p = (recv_op *)o;
	recv_conn *rc;

	if (p->listening)
		conn_unlisten(o->n->conns, (uint16_t)p->port);
	while ((rc = p->conns)) {
		p->conns = rc->next;
		cop_drop_conn(&rc->c, true);
		free(rc);
	}
	json_object_put(p->msgs);
}

static void recv_finish(recv_op *p, bool timed_out)
{
	msgs_finish(&p->o, p->streaming, p->msgs, timed_out);
}

static void recv_timeout(cop *o)
{
	recv_finish((recv_op *)o, true);
}

static void recv_conn_done(recv_conn *rc, const uint8_t *buf, size_t len, const char *err)
{
	recv_op *p = rc->op;
	json_object *m = json_object_new_object();
	recv_conn **pp;

	json_object_object_add(m, "seq", json_object_new_int(rc->seq));
	json_object_object_add(m, "port", json_object_new_int(p->port));
	if (err) {
		json_object_object_add(m, "error", json_object_new_string(err));
	} else {
		json_object_object_add(m, "data", json_object_new_string_len((const char *)buf, (int)len));
		json_object_object_add(m, "bytes", json_object_new_int64((int64_t)len));
	}
	for (pp = &p->conns; *pp != rc; pp = &(*pp)->next)
		;
	*pp = rc->next;
	cop_drop_conn(&rc->c, false);
	free(rc);
	if (p->streaming)
		ctlsrv_reply_stream(p->o.r, m);
	else
		json_object_array_add(p->msgs, m);
	if (p->count && ++p->done >= p->count)
		recv_finish(p, false);
}

static void recv_readable(void *arg, conn *c)
{
	recv_conn *rc = arg;
	size_t len = conn_read(c, scratch, CHUNK_MAX);

	if (len || conn_eof(c))
		recv_conn_done(rc, scratch, len, NULL);
}

static void recv_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	(void)c;
	(void)old;
	if (now == STREAM_CLOSED)
		recv_conn_done(arg, NULL, 0, cop_errname(err));
}

static const conn_cbs recv_cbs = { .on_readable = recv_readable, .on_state = recv_state };

static bool recv_accept(void *arg, conn *c)
{
	recv_op *p = arg;
	recv_conn *rc;

	if ((p->count && p->accepted >= p->count) || !(rc = calloc(1, sizeof(*rc))))
		return false;
	rc->op = p;
	rc->c = c;
	rc->seq = (int)p->accepted++;
	rc->next = p->conns;
	p->conns = rc;
	conn_set_cbs(c, &recv_cbs, rc);
	return true;
}

static const conn_listener_cbs recv_listener = { recv_accept };

void verb_recv(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	int64_t port = ctlsrv_arg_int(args, "port", -1), count = ctlsrv_arg_int(args, "count", 1),
		timeout = ctlsrv_arg_timeout(args, 30000);
	recv_op *p;
	int rc;

	if (!port_count_ok(r, n, port, count, timeout))
		return;
	if (!(p = cop_new(n, r, sizeof(*p), timeout, recv_release)))
		return;
	p->o.on_timeout = recv_timeout;
	p->port = (int)port;
	p->count = count;
	p->streaming = count == 0;
	p->msgs = json_object_new_array();
	if ((rc = conn_listen(n->conns, (uint16_t)port, &recv_listener, p)) < 0) {
		cop_err(&p->o, rc == -EADDRINUSE ? "invalid_argument" : "connection_failed",
			"port %d: %s", p->port, rc == -EADDRINUSE ? "already has a listener" : strerror(-rc));
		return;
	}
	p->listening = true;
}

/* ---- listen: datagrams on a port ---- */
typedef struct listen_op {
	cop o;
	int port;
	int64_t count, got;
	bool streaming;
	json_object *msgs;
	struct listen_op *pnext; /* on the port's list */
} listen_op;

typedef struct dgram_port {
	node *n;
	uint16_t port;
	listen_op *ops;
	struct dgram_port *next;
} dgram_port;

static dgram_port *port_find(node_svc *s, uint16_t port)
{
	dgram_port *dp;

	for (dp = s->ports; dp && dp->port != port; dp = dp->next)
		;
	return dp;
}

static void listen_release(cop *o)
{
	listen_op *p = (listen_op *)o, **pp;
	node_svc *s = o->n->svc;
	dgram_port *dp = s ? port_find(s, (uint16_t)p->port) : NULL, **dpp;

	json_object_put(p->msgs);
	if (!dp)
		return;
	for (pp = &dp->ops; *pp && *pp != p; pp = &(*pp)->pnext)
		;
	if (*pp)
		*pp = p->pnext;
	if (dp->ops)
		return;
	if (o->n->conns)
		conn_dgram_unbind(o->n->conns, dp->port);
	for (dpp = &s->ports; *dpp != dp; dpp = &(*dpp)->next)
		;
	*dpp = dp->next;
	free(dp);
}

static void listen_finish(listen_op *p, bool timed_out)
{
	msgs_finish(&p->o, p->streaming, p->msgs, timed_out);
}

static void listen_timeout(cop *o)
{
	listen_finish((listen_op *)o, true);
}

static void dgram_in(void *arg, pilot_addr src, uint16_t sport, uint16_t dport, const uint8_t *data, size_t len)
{
	dgram_port *dp = arg;
	listen_op *p, *next;
	char a[PILOT_ADDR_STRLEN];

	(void)dport;
	pilot_addr_format(src, a);
	for (p = dp->ops; p; p = next) {
		json_object *m = json_object_new_object();

		next = p->pnext; /* p may finish (and dp go) below */
		json_object_object_add(m, "src_addr", json_object_new_string(a));
		json_object_object_add(m, "src_port", json_object_new_int(sport));
		json_object_object_add(m, "data", json_object_new_string_len((const char *)data, (int)len));
		json_object_object_add(m, "bytes", json_object_new_int64((int64_t)len));
		if (p->streaming)
			ctlsrv_reply_stream(p->o.r, m);
		else
			json_object_array_add(p->msgs, m);
		if (p->count && ++p->got >= p->count) {
			bool last = dp->ops == p && !p->pnext;

			listen_finish(p, false);
			if (last)
				return; /* dp is gone */
		}
	}
}

void verb_listen(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	int64_t port = ctlsrv_arg_int(args, "port", -1), count = ctlsrv_arg_int(args, "count", 0),
		timeout = ctlsrv_arg_timeout(args, 0);
	listen_op *p;
	dgram_port *dp;
	int rc;

	if (!port_count_ok(r, n, port, count, timeout))
		return;
	if (!(p = cop_new(n, r, sizeof(*p), timeout, listen_release)))
		return;
	p->o.on_timeout = listen_timeout;
	p->port = (int)port;
	p->count = count;
	p->streaming = count == 0;
	p->msgs = json_object_new_array();
	if (!(dp = port_find(n->svc, (uint16_t)port))) {
		if (!(dp = calloc(1, sizeof(*dp)))) {
			cop_err(&p->o, "internal", "out of memory");
			return;
		}
		dp->n = n;
		dp->port = (uint16_t)port;
		if ((rc = conn_dgram_bind(n->conns, dp->port, dgram_in, dp)) < 0) {
			free(dp);
			cop_err(&p->o, rc == -EADDRINUSE ? "invalid_argument" : "connection_failed", "port %d: %s",
				p->port, rc == -EADDRINUSE ? "bound by another service" : strerror(-rc));
			return;
		}
		dp->next = n->svc->ports;
		n->svc->ports = dp;
	}
	p->pnext = dp->ops;
	dp->ops = p;
}

/* dgram-send (hidden): one datagram {target, port, data} from a fresh port. */
typedef struct dg_op {
	cop o;
	int port;
	char *data;
} dg_op;

static void dg_release(cop *o)
{
	free(((dg_op *)o)->data);
}

static void dg_start(cop *o)
{
	dg_op *d = (dg_op *)o;
	json_object *r;
	int rc = conn_dgram_send(o->n->conns, pilot_addr_make(0, o->target), (uint16_t)d->port, d->data,
				 strlen(d->data));

	if (rc < 0) {
		cop_err(o, "connection_failed", "%s:%d: %s", o->addr, d->port, strerror(-rc));
		return;
	}
	r = json_object_new_object();
	json_object_object_add(r, "target", json_object_new_string(o->addr));
	json_object_object_add(r, "port", json_object_new_int(d->port));
	json_object_object_add(r, "bytes", json_object_new_int64((int64_t)strlen(d->data)));
	cop_ok(o, r);
}

void verb_dgram_send(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *data = ctlsrv_arg_str(args, "data");
	int64_t port = ctlsrv_arg_int(args, "port", -1);
	dg_op *d;

	if (!data || !*data) {
		ctlsrv_reply_err(r, "invalid_argument", "want data", NULL);
		return;
	}
	if (!cop_port_ok(r, port, false) || !cop_can_start(r, n) || !(d = cop_new(n, r, sizeof(*d), 30000, dg_release)))
		return;
	d->port = (int)port;
	if (!(d->data = strdup(data))) {
		cop_err(&d->o, "internal", "out of memory");
		return;
	}
	cop_resolve(&d->o, args, dg_start);
}
