/* serve and serve-send: a local program serves a Pilot stream port through the
 * control socket, the way the reference's driver attaches a service to its
 * daemon, for nodes without a TUN device (pilot-nameserver -attach).
 *
 * serve {port, max_conns 64, conn_timeout_ms 10000, timeout_ms 0} binds the port
 * and streams what happens on it, each event one "stream" frame:
 *   {"event":"listening","port":P}
 *   {"event":"accept","id":I,"src_addr":"N:NNNN.HHHH.LLLL","src_node":N,"src_port":S}
 *   {"event":"data","id":I,"data_b64":"...","bytes":n}     (at most 48 KiB each)
 *   {"event":"eof","id":I}                                  (the peer half-closed)
 *   {"event":"closed","id":I,"error":"..."}                 (reset, timeout, ...)
 * I is the daemon's connection ID (pilotctl connections). src_node is the
 * stream's authenticated source: the node whose tunnel key carried the SYN.
 * The port stays bound until the request ends (the client closes its control
 * connection, or timeout_ms); its streams are reset then. A stream not closed
 * by serve-send within conn_timeout_ms is reset ("closed", error "timeout").
 *
 * serve-send {port, id, data | data_b64, close, reset} writes on a stream that
 * the port's serve accepted (no other connection), then optionally closes it
 * (FIN after the data) or resets it. It is sent on another control connection:
 * one connection answers one request at a time and serve never ends by itself. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/ctlsrv_op.h"
#include "daemon/ctlsrv_verbs.h"
#include "lib/crypto.h"
#include "lib/log.h"

#define SERVE_CHUNK        (48 * 1024) /* bytes per data event (64 KiB of base64) */
#define SERVE_SEND_MAX     65535       /* bytes per serve-send */
#define SERVE_MAX_CONNS    64
#define SERVE_CONN_TIMEOUT 10000

typedef struct serve_op serve_op;

typedef struct serve_conn {
	serve_op *op;
	conn *c;
	uint32_t id;
	uint64_t timer;
	bool eof;
	struct serve_conn *next;
} serve_conn;

struct serve_op {
	cop o;
	uint16_t port;
	int64_t max_conns, nconns, conn_timeout;
	bool listening;
	serve_conn *conns;
	serve_op *snext; /* node_svc.serves */
};

static uint8_t chunk[SERVE_CHUNK];
static char b64[SERVE_CHUNK / 3 * 4 + 8];

static serve_op *serve_find(node_svc *s, uint16_t port)
{
	serve_op *p;

	for (p = s ? s->serves : NULL; p && p->port != port; p = p->snext)
		;
	return p;
}

/* One stream frame; < 0 when it could not be queued (the client reads too slowly:
 * more than the control socket's output limit is waiting). */
static int event(serve_op *p, const char *what, uint32_t id, json_object *o)
{
	if (!o)
		o = json_object_new_object();
	json_object_object_add(o, "event", json_object_new_string(what));
	if (id)
		json_object_object_add(o, "id", json_object_new_int64(id));
	return ctlsrv_reply_stream(p->o.r, o);
}

/* Forget sc: its handle is dropped (reset if abort_it, else closed). */
static void sconn_drop(serve_conn *sc, bool abort_it)
{
	serve_op *p = sc->op;
	serve_conn **pp;

	for (pp = &p->conns; *pp && *pp != sc; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = sc->next;
	if (sc->timer)
		pilot_loop_del_timer(p->o.n->loop, sc->timer);
	cop_drop_conn(&sc->c, abort_it);
	p->nconns--;
	free(sc);
}

/* Report sc's end (why NULL = a clean close by the peer) and forget it. */
static void sconn_fail(serve_conn *sc, const char *why, bool abort_it)
{
	json_object *o = json_object_new_object();

	if (why)
		json_object_object_add(o, "error", json_object_new_string(why));
	event(sc->op, "closed", sc->id, o);
	sconn_drop(sc, abort_it);
}

static int64_t sconn_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	serve_conn *sc = arg;

	(void)l;
	(void)id;
	sc->timer = 0;
	sconn_fail(sc, "timeout", true);
	return 0;
}

static void sconn_readable(void *arg, conn *c)
{
	serve_conn *sc = arg;
	serve_op *p = sc->op;
	size_t len;

	while ((len = conn_read(c, chunk, sizeof(chunk))) > 0) {
		json_object *o = json_object_new_object();
		int n = pilot_b64_encode(chunk, len, b64, sizeof(b64));

		if (n < 0) {
			json_object_put(o);
			sconn_fail(sc, "internal", true);
			return;
		}
		json_object_object_add(o, "data_b64", json_object_new_string_len(b64, n));
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)len));
		if (event(p, "data", sc->id, o) < 0) {
			/* Data that cannot be delivered: the stream must not go on without it. */
			log_debug("serve port=%u: client too slow, resetting stream id=%u", p->port, sc->id);
			sconn_drop(sc, true);
			return;
		}
	}
	if (conn_eof(c) && !sc->eof) {
		sc->eof = true;
		event(p, "eof", sc->id, NULL);
	}
}

static void sconn_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	(void)c;
	(void)old;
	if (now == STREAM_CLOSED)
		sconn_fail(arg, err ? cop_errname(err) : NULL, false);
}

static const conn_cbs sconn_cbs = { .on_readable = sconn_readable, .on_state = sconn_state };

static bool serve_accept(void *arg, conn *c)
{
	serve_op *p = arg;
	serve_conn *sc;
	conn_info ci;
	json_object *o;
	char a[PILOT_ADDR_STRLEN];

	if (p->nconns >= p->max_conns || !ctlsrv_reply_alive(p->o.r) || !(sc = calloc(1, sizeof(*sc))))
		return false;
	conn_get_info(c, &ci);
	sc->op = p;
	sc->c = c;
	sc->id = ci.id;
	sc->next = p->conns;
	p->conns = sc;
	p->nconns++;
	conn_set_cbs(c, &sconn_cbs, sc);
	if (p->conn_timeout > 0)
		sc->timer = pilot_loop_add_timer(p->o.n->loop, (uint64_t)p->conn_timeout, sconn_timeout, sc);
	o = json_object_new_object();
	pilot_addr_format(ci.remote, a);
	json_object_object_add(o, "src_addr", json_object_new_string(a));
	json_object_object_add(o, "src_node", json_object_new_int64(ci.remote.node));
	json_object_object_add(o, "src_port", json_object_new_int(ci.remote_port));
	event(p, "accept", sc->id, o);
	return true;
}

static const conn_listener_cbs serve_listener = { serve_accept };

static void serve_release(cop *o)
{
	serve_op *p = (serve_op *)o, **pp;
	node_svc *s = o->n->svc;

	if (p->listening && o->n->conns)
		conn_unlisten(o->n->conns, p->port);
	while (p->conns)
		sconn_drop(p->conns, true);
	for (pp = s ? &s->serves : NULL; pp && *pp && *pp != p; pp = &(*pp)->snext)
		;
	if (pp && *pp)
		*pp = p->snext;
}

static void serve_timeout(cop *o)
{
	cop_end(o);
}

void verb_serve(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	int64_t port = ctlsrv_arg_int(args, "port", -1),
		max = ctlsrv_arg_int(args, "max_conns", SERVE_MAX_CONNS),
		ct = ctlsrv_arg_int(args, "conn_timeout_ms", SERVE_CONN_TIMEOUT),
		timeout = ctlsrv_arg_timeout(args, 0);
	serve_op *p;
	json_object *o;
	int rc;

	if (max < 1 || max > 4096 || ct < 0 || timeout < 0) {
		ctlsrv_reply_err(r, "invalid_argument",
				 "max_conns 1..4096, conn_timeout_ms and timeout not negative", NULL);
		return;
	}
	if (!cop_port_ok(r, port, false) || !cop_can_start(r, n))
		return;
	if (!(p = cop_new(n, r, sizeof(*p), timeout, serve_release)))
		return;
	p->o.on_timeout = serve_timeout;
	p->port = (uint16_t)port;
	p->max_conns = max;
	p->conn_timeout = ct;
	if ((rc = conn_listen(n->conns, p->port, &serve_listener, p)) < 0) {
		cop_err(&p->o, rc == -EADDRINUSE ? "invalid_argument" : "connection_failed", "port %d: %s",
			p->port, rc == -EADDRINUSE ? "already has a listener" : strerror(-rc));
		return;
	}
	p->listening = true;
	p->snext = n->svc->serves;
	n->svc->serves = p;
	log_info("control client serves port=%u", p->port);
	o = json_object_new_object();
	json_object_object_add(o, "port", json_object_new_int(p->port));
	event(p, "listening", 0, o);
}

void verb_serve_send(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	int64_t port = ctlsrv_arg_int(args, "port", -1), id = ctlsrv_arg_int(args, "id", -1);
	const char *data = ctlsrv_arg_str(args, "data"), *d64 = ctlsrv_arg_str(args, "data_b64");
	bool close_it = ctlsrv_arg_bool(args, "close"), reset = ctlsrv_arg_bool(args, "reset");
	static uint8_t bin[SERVE_SEND_MAX];
	const uint8_t *buf = (const uint8_t *)"";
	size_t len = 0, wrote = 0;
	serve_op *p;
	serve_conn *sc = NULL;
	json_object *o;
	int b;

	if (!cop_port_ok(r, port, false))
		return;
	if (d64) {
		if ((b = pilot_b64_decode(d64, strlen(d64), bin, sizeof(bin))) < 0) {
			ctlsrv_reply_err(r, "invalid_argument", "data_b64: not base64 of at most 65535 bytes",
					 NULL);
			return;
		}
		buf = bin;
		len = (size_t)b;
	} else if (data) {
		buf = (const uint8_t *)data;
		len = strlen(data);
	}
	if (len > SERVE_SEND_MAX) {
		ctlsrv_reply_err(r, "invalid_argument", "at most 65535 bytes per serve-send", NULL);
		return;
	}
	if (!n->svc || !(p = serve_find(n->svc, (uint16_t)port))) {
		ctlsrv_reply_err(r, "not_found", "no serve request on this port", "send serve first");
		return;
	}
	for (sc = p->conns; sc && (int64_t)sc->id != id; sc = sc->next)
		;
	if (!sc) {
		ctlsrv_reply_err(r, "not_found", "no such stream on this port (closed, reset or timed out)",
				 NULL);
		return;
	}
	if (len)
		wrote = conn_write(sc->c, buf, len);
	o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_int64(id));
	json_object_object_add(o, "written", json_object_new_int64((int64_t)wrote));
	if (reset || close_it)
		sconn_drop(sc, reset);
	ctlsrv_reply_ok(r, o);
}
