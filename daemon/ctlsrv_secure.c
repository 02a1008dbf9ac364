/* pilotctl secure-connect / secure-listen: one message over the port-443 secure
 * channel (daemon/secure.h), the way connect / recv do it in the clear. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/ctlsrv_op.h"
#include "daemon/ctlsrv_verbs.h"
#include "daemon/secure.h"

#define MSG_MAX 65535

/* ---- secure-connect ---- */
typedef struct sdial_op {
	cop o;
	ssess *s;
	int port;
	char *msg;
	bool compat, plain, half_close, replied;
	uint8_t *buf;
	size_t got;
} sdial_op;

static void sdial_release(cop *o)
{
	sdial_op *d = (sdial_op *)o;

	ssess_free(d->s, false);
	d->s = NULL;
	free(d->msg);
	free(d->buf);
}

static void sdial_reply(sdial_op *d, bool eof)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "target", json_object_new_string(d->o.addr));
	json_object_object_add(o, "port", json_object_new_int(d->port));
	json_object_object_add(o, "authenticated", json_object_new_boolean(ssess_authenticated(d->s)));
	json_object_object_add(o, "sent", json_object_new_string(d->msg));
	json_object_object_add(o, "response",
			       json_object_new_string_len((const char *)d->buf, (int)d->got));
	json_object_object_add(o, "eof", json_object_new_boolean(eof));
	cop_ok(&d->o, o);
}

static void sdial_ready(void *arg, ssess *s)
{
	sdial_op *d = arg;
	size_t len = strlen(d->msg);

	if (ssess_write(s, d->msg, len) != len) {
		cop_err(&d->o, "connection_failed", "%s:%d: message larger than the send buffer", d->o.addr,
			d->port);
		return;
	}
	if (d->half_close)
		ssess_shutdown(s);
}

static void sdial_data(void *arg, ssess *s, const uint8_t *p, size_t n)
{
	sdial_op *d = arg;
	size_t take = n < MSG_MAX - d->got ? n : MSG_MAX - d->got;

	(void)s;
	memcpy(d->buf + d->got, p, take);
	d->got += take;
	if (!d->half_close || d->got == MSG_MAX)
		sdial_reply(d, false);
}

static void sdial_end(void *arg, ssess *s, int err, const char *why)
{
	sdial_op *d = arg;

	(void)s;
	if (!err) {
		sdial_reply(d, true);
		return;
	}
	cop_err(&d->o, abs(err) == ETIMEDOUT ? "timeout" : "connection_failed", "%s:%d: secure channel: %s",
		d->o.addr, d->port, why ? why : cop_errname(err));
}

static const ssess_cbs sdial_cbs = { .on_ready = sdial_ready, .on_data = sdial_data, .on_end = sdial_end };

static void sdial_timeout(cop *o)
{
	cop_err(o, "timeout", "%s:%d: no reply over the secure channel", o->addr, ((sdial_op *)o)->port);
}

static void sdial_start(cop *o)
{
	sdial_op *d = (sdial_op *)o;
	int err = 0;
	conn *c = conn_dial(o->n->conns, pilot_addr_make(0, o->target), (uint16_t)d->port, NULL, NULL, &err);

	if (!c) {
		cop_err(o, "connection_failed", "%s:%d: %s", o->addr, d->port, strerror(-err));
		return;
	}
	if (!(d->s = ssess_new(o->n, c, false, !d->compat && !d->plain, d->plain, &sdial_cbs, d, &err))) {
		conn_abort(c);
		cop_err(o, "internal", "secure channel: %s", strerror(-err));
	}
}

void verb_secure_connect(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *msg = ctlsrv_arg_str(args, "message");
	int64_t port = ctlsrv_arg_int(args, "port", SECURE_PORT), timeout = ctlsrv_arg_timeout(args, 30000);
	sdial_op *d;

	if (!msg)
		msg = ctlsrv_arg_str(args, "data");
	if (!msg || !*msg || strlen(msg) > MSG_MAX || timeout <= 0) {
		ctlsrv_reply_err(r, "invalid_argument",
				 "want a message (at most 65535 bytes) and a positive timeout", NULL);
		return;
	}
	if (!cop_port_ok(r, port, false) || !cop_can_start(r, n))
		return;
	if (!(d = cop_new(n, r, sizeof(*d), timeout, sdial_release)))
		return;
	d->o.on_timeout = sdial_timeout;
	d->port = (int)port;
	d->compat = ctlsrv_arg_bool(args, "compat");
	d->plain = ctlsrv_arg_bool(args, "plain");
	d->half_close = ctlsrv_arg_bool(args, "half_close");
	if (!(d->msg = strdup(msg)) || !(d->buf = malloc(MSG_MAX))) {
		cop_err(&d->o, "internal", "out of memory");
		return;
	}
	cop_resolve(&d->o, args, sdial_start);
}

/* ---- secure-listen ---- */
typedef struct slisten_op slisten_op;
typedef struct slisten_conn {
	slisten_op *op;
	ssess *s;
	int seq;
	bool done;
	struct slisten_conn *next;
} slisten_conn;

struct slisten_op {
	cop o;
	int port;
	int64_t count, accepted, done;
	bool listening, streaming, require_auth;
	char *reply;
	slisten_conn *conns;
	json_object *msgs;
};

static void slisten_release(cop *o)
{
	slisten_op *p = (slisten_op *)o;
	slisten_conn *sc;

	if (p->listening)
		conn_unlisten(o->n->conns, (uint16_t)p->port);
	while ((sc = p->conns)) {
		p->conns = sc->next;
		ssess_free(sc->s, !sc->done);
		free(sc);
	}
	json_object_put(p->msgs);
	free(p->reply);
}

static void slisten_finish(slisten_op *p, bool timed_out)
{
	json_object *r;

	if (p->streaming) {
		cop_end(&p->o);
		return;
	}
	r = json_object_new_object();
	json_object_object_add(r, "messages", json_object_get(p->msgs));
	json_object_object_add(r, "timeout", json_object_new_boolean(timed_out));
	cop_ok(&p->o, r);
}

static void slisten_timeout(cop *o)
{
	slisten_finish((slisten_op *)o, true);
}

/* One connection is over: report it; the session stays until the op ends
 * (its reply and FIN still have to leave). */
static void slisten_report(slisten_conn *sc, const uint8_t *buf, size_t len, const char *err)
{
	slisten_op *p = sc->op;
	json_object *m = json_object_new_object();
	char a[PILOT_ADDR_STRLEN];

	if (sc->done)
		return;
	sc->done = true;
	json_object_object_add(m, "seq", json_object_new_int(sc->seq));
	json_object_object_add(m, "port", json_object_new_int(p->port));
	json_object_object_add(m, "from", json_object_new_string(
					       pilot_addr_format(pilot_addr_make(0, ssess_peer(sc->s)), a)));
	json_object_object_add(m, "node_id", json_object_new_int64(ssess_peer(sc->s)));
	json_object_object_add(m, "authenticated", json_object_new_boolean(ssess_authenticated(sc->s)));
	if (err) {
		json_object_object_add(m, "error", json_object_new_string(err));
	} else {
		json_object_object_add(m, "data", json_object_new_string_len((const char *)buf, (int)len));
		json_object_object_add(m, "bytes", json_object_new_int64((int64_t)len));
	}
	if (p->streaming)
		ctlsrv_reply_stream(p->o.r, m);
	else
		json_object_array_add(p->msgs, m);
	if (p->count && ++p->done >= p->count)
		slisten_finish(p, false);
}

static void slisten_data(void *arg, ssess *s, const uint8_t *buf, size_t n)
{
	slisten_conn *sc = arg;

	if (sc->done)
		return;
	if (sc->op->reply) {
		size_t len = strlen(sc->op->reply);

		(void)ssess_write(s, sc->op->reply, len);
	}
	ssess_shutdown(s);
	slisten_report(sc, buf, n, NULL);
}

static void slisten_end(void *arg, ssess *s, int err, const char *why)
{
	(void)s;
	slisten_report(arg, NULL, 0, err ? (why ? why : cop_errname(err)) : "closed without data");
}

static const ssess_cbs slisten_cbs = { .on_data = slisten_data, .on_end = slisten_end };

static bool slisten_accept(void *arg, conn *c)
{
	slisten_op *p = arg;
	slisten_conn *sc;
	int err = 0;

	if ((p->count && p->accepted >= p->count) || !(sc = calloc(1, sizeof(*sc))))
		return false;
	sc->op = p;
	sc->seq = (int)p->accepted;
	if (!(sc->s = ssess_new(p->o.n, c, true, p->require_auth, false, &slisten_cbs, sc, &err))) {
		free(sc);
		return false;
	}
	p->accepted++;
	sc->next = p->conns;
	p->conns = sc;
	return true;
}

static const conn_listener_cbs slisten_listener = { slisten_accept };

void verb_secure_listen(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	int64_t port = ctlsrv_arg_int(args, "port", SECURE_PORT), count = ctlsrv_arg_int(args, "count", 1),
		timeout = ctlsrv_arg_timeout(args, 30000);
	const char *reply = ctlsrv_arg_str(args, "reply");
	slisten_op *p;
	int rc;

	if (count < 0 || timeout < 0) {
		ctlsrv_reply_err(r, "invalid_argument", "count and timeout must not be negative", NULL);
		return;
	}
	if ((reply && strlen(reply) > MSG_MAX) || !cop_port_ok(r, port, false) || !cop_can_start(r, n)) {
		if (reply && strlen(reply) > MSG_MAX)
			ctlsrv_reply_err(r, "invalid_argument", "the reply is longer than 65535 bytes", NULL);
		return;
	}
	if (!(p = cop_new(n, r, sizeof(*p), timeout, slisten_release)))
		return;
	p->o.on_timeout = slisten_timeout;
	p->port = (int)port;
	p->count = count;
	p->streaming = count == 0;
	p->require_auth = ctlsrv_arg_bool(args, "require_auth");
	p->msgs = json_object_new_array();
	if (reply && !(p->reply = strdup(reply))) {
		cop_err(&p->o, "internal", "out of memory");
		return;
	}
	if ((rc = conn_listen(n->conns, (uint16_t)port, &slisten_listener, p)) < 0) {
		cop_err(&p->o, rc == -EADDRINUSE ? "invalid_argument" : "connection_failed", "port %d: %s",
			p->port, rc == -EADDRINUSE ? "already has a listener (-secure-forward?)" : strerror(-rc));
		return;
	}
	p->listening = true;
}
