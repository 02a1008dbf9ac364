/* Control verbs on the connection table: ping (control-protocol echo, RTT per
 * sample) and connect (dial, write one message, return the first chunk read).
 * The other stream verbs belong to the streams work and answer "unavailable". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/conn.h"
#include "daemon/ctlsock.h"
#include "daemon/node.h"
#include "lib/addr.h"

#define PING_COUNT 4
#define PING_MAX_COUNT 1000
#define PING_INTERVAL_MS 200
#define PING_TIMEOUT_MS 30000
#define PING_PAYLOAD_MAX 1024
#define CONNECT_TIMEOUT_MS 30000
#define CONNECT_PORT 1000
#define CONNECT_RESP_MAX 65535

static int64_t arg_int(json_object *args, const char *key, int64_t def)
{
	json_object *v;

	if (!json_object_object_get_ex(args, key, &v))
		return def;
	return json_object_get_int64(v);
}

/* "timeout_ms", or "timeout" in seconds (may be fractional). */
static int64_t arg_timeout(json_object *args, int64_t def)
{
	json_object *v;

	if (json_object_object_get_ex(args, "timeout_ms", &v))
		return json_object_get_int64(v);
	if (json_object_object_get_ex(args, "timeout", &v))
		return (int64_t)(json_object_get_double(v) * 1000);
	return def;
}

static bool target_arg(ctl_reply *r, node *n, json_object *args, uint32_t *id, char addr[PILOT_ADDR_STRLEN])
{
	if (ctl_arg_node(args, id) < 0) {
		ctl_reply_err(r, "not_found", "want a node ID or address (N:NNNN.HHHH.LLLL)",
			      "find a hostname's node with: pilotctl find <hostname>");
		return false;
	}
	if (ctl_need_up(r, n))
		return false;
	pilot_addr_format(pilot_addr_make(0, *id), addr);
	return true;
}

/* ---- ping ---- */
typedef struct ping_op {
	ctl_reply *r;
	node *n;
	uint32_t target;
	char addr[PILOT_ADDR_STRLEN];
	int count, seq;
	int64_t ping_id;
	uint64_t timer, deadline_ms;
	json_object *results;
	size_t plen;
	uint8_t payload[PING_PAYLOAD_MAX];
	bool timed_out;
} ping_op;

static void ping_finish(ping_op *p)
{
	json_object *o = json_object_new_object();

	if (p->timer)
		pilot_loop_del_timer(p->n->loop, p->timer);
	json_object_object_add(o, "target", json_object_new_string(p->addr));
	json_object_object_add(o, "results", p->results);
	json_object_object_add(o, "timeout", json_object_new_boolean(p->timed_out));
	ctl_reply_ok(p->r, o);
	free(p);
}

static void ping_send(ping_op *p);

static int64_t ping_next(pilot_loop *l, uint64_t id, void *arg)
{
	ping_op *p = arg;

	p->timer = 0;
	ping_send(p);
	return 0;
}

static void ping_done(void *arg, int err, uint32_t rtt_us, const uint8_t *payload, size_t len)
{
	ping_op *p = arg;
	json_object *o = json_object_new_object();

	p->ping_id = 0;
	json_object_object_add(o, "seq", json_object_new_int(p->seq));
	if (err) {
		json_object_object_add(o, "error", json_object_new_string(
			err == -ETIMEDOUT ? "timeout" : strerror(-err)));
	} else {
		json_object_object_add(o, "rtt_ms", json_object_new_double(rtt_us / 1000.0));
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)len));
	}
	json_object_array_add(p->results, o);
	if (++p->seq >= p->count || err == -ECANCELED || p->n->stopping) {
		ping_finish(p);
		return;
	}
	p->timer = pilot_loop_add_timer(p->n->loop, PING_INTERVAL_MS, ping_next, p);
}

static void ping_send(ping_op *p)
{
	int64_t id;

	if (pilot_now_ms() >= p->deadline_ms) {
		p->timed_out = true;
		ping_finish(p);
		return;
	}
	id = conn_ping(p->n->conns, p->target, (uint32_t)p->seq, p->payload, p->plen, ping_done, p);
	if (id < 0) {
		ping_done(p, (int)id, 0, NULL, 0);
		return;
	}
	p->ping_id = id;
}

static void ping_cancel(ctl_reply *r, void *arg)
{
	ping_op *p = arg;

	if (p->ping_id && p->n->conns)
		conn_ping_cancel(p->n->conns, p->ping_id);
	p->ping_id = 0;
	ping_finish(p);
}

static void h_ping(ctl_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	ping_op *p;
	const char *payload = ctl_arg_str(args, "payload");
	int64_t count = arg_int(args, "count", PING_COUNT), timeout = arg_timeout(args, PING_TIMEOUT_MS);
	uint32_t id;
	char addr[PILOT_ADDR_STRLEN];

	if (count < 1 || count > PING_MAX_COUNT || timeout <= 0
	    || (payload && strlen(payload) > PING_PAYLOAD_MAX)) {
		ctl_reply_err(r, "invalid_argument", "count must be 1..1000, timeout positive, payload <= 1024 bytes",
			      NULL);
		return;
	}
	if (!target_arg(r, n, args, &id, addr))
		return;
	if (!(p = calloc(1, sizeof(*p)))) {
		ctl_reply_err(r, "internal", "out of memory", NULL);
		return;
	}
	p->r = r;
	p->n = n;
	p->target = id;
	memcpy(p->addr, addr, sizeof(addr));
	p->count = (int)count;
	p->results = json_object_new_array();
	p->deadline_ms = pilot_now_ms() + (uint64_t)timeout;
	p->plen = payload ? strlen(payload) : 9;
	memcpy(p->payload, payload ? payload : "pilotping", p->plen);
	ctl_reply_on_cancel(r, ping_cancel, p);
	ping_send(p);
}

/* ---- connect ---- */
typedef struct dial_op {
	ctl_reply *r;
	node *n;
	conn *c;
	uint64_t timer;
	char addr[PILOT_ADDR_STRLEN];
	int port;
	char *msg;
	bool sent;
} dial_op;

static const conn_cbs no_cbs;

static void dial_end(dial_op *d)
{
	if (d->c) {
		conn_set_cbs(d->c, &no_cbs, NULL);
		conn_close(d->c);
	}
	if (d->timer)
		pilot_loop_del_timer(d->n->loop, d->timer);
	free(d->msg);
	free(d);
}

static void dial_fail(dial_op *d, const char *code, const char *what)
{
	char msg[200];

	snprintf(msg, sizeof(msg), "%s:%d: %s", d->addr, d->port, what);
	ctl_reply_err(d->r, code, msg, !strcmp(code, "connection_failed")
		      ? "a private node accepts connections only from trusted peers: pilotctl handshake <node>"
		      : NULL);
	dial_end(d);
}

static void dial_reply(dial_op *d, const uint8_t *buf, size_t len)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "target", json_object_new_string(d->addr));
	json_object_object_add(o, "port", json_object_new_int(d->port));
	json_object_object_add(o, "sent", json_object_new_string(d->msg));
	json_object_object_add(o, "response", json_object_new_string_len((const char *)buf, (int)len));
	ctl_reply_ok(d->r, o);
	dial_end(d);
}

static void dial_readable(void *arg, conn *c)
{
	dial_op *d = arg;
	static uint8_t buf[CONNECT_RESP_MAX];
	size_t len = conn_read(c, buf, sizeof(buf));

	if (len || conn_eof(c))
		dial_reply(d, buf, len);
}

static void dial_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	dial_op *d = arg;
	size_t len = strlen(d->msg);

	if (now == STREAM_ESTABLISHED && !d->sent) {
		d->sent = true;
		if (conn_write(c, d->msg, len) != len)
			dial_fail(d, "connection_failed", "message larger than the send buffer");
	} else if (now == STREAM_CLOSED) {
		dial_fail(d, err == ETIMEDOUT || err == -ETIMEDOUT ? "timeout" : "connection_failed",
			  err ? strerror(abs(err)) : "connection closed");
	}
}

static const conn_cbs dial_cbs = { .on_readable = dial_readable, .on_state = dial_state };

static int64_t dial_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	dial_op *d = arg;

	d->timer = 0;
	dial_fail(d, "timeout", d->sent ? "no reply" : "connection not established");
	return 0;
}

static void dial_cancel(ctl_reply *r, void *arg)
{
	dial_op *d = arg;

	ctl_reply_err(r, "internal", "cancelled", NULL);
	dial_end(d);
}

static void h_connect(ctl_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *msg = ctl_arg_str(args, "message");
	int64_t port = arg_int(args, "port", CONNECT_PORT), timeout = arg_timeout(args, CONNECT_TIMEOUT_MS);
	uint32_t id;
	char addr[PILOT_ADDR_STRLEN];
	dial_op *d;
	int err = 0;

	if (!msg)
		msg = ctl_arg_str(args, "data");
	if (!msg || !*msg || port < 0 || port > 65535 || timeout <= 0) {
		ctl_reply_err(r, "invalid_argument", "want a message, a port 0..65535 and a positive timeout",
			      NULL);
		return;
	}
	if (!target_arg(r, n, args, &id, addr))
		return;
	if (!(d = calloc(1, sizeof(*d))) || !(d->msg = strdup(msg))) {
		free(d);
		ctl_reply_err(r, "internal", "out of memory", NULL);
		return;
	}
	d->r = r;
	d->n = n;
	d->port = (int)port;
	memcpy(d->addr, addr, sizeof(addr));
	d->c = conn_dial(n->conns, pilot_addr_make(0, id), (uint16_t)port, &dial_cbs, d, &err);
	if (!d->c) {
		dial_fail(d, "connection_failed", strerror(-err));
		return;
	}
	d->timer = pilot_loop_add_timer(n->loop, timeout, dial_timeout, d);
	ctl_reply_on_cancel(r, dial_cancel, d);
}

static void h_unavailable(ctl_reply *r, json_object *args, void *arg)
{
	ctl_reply_err(r, "unavailable", "not implemented yet", NULL);
}

void ctl_register_conn(node *n)
{
	static const char *const later[] = {
		"bench", "traceroute", "send", "recv", "send-file", "send-message",
		"subscribe", "publish", "listen", NULL,
	};
	int i;

	ctlsock_register(n->ctl, "ping", h_ping, n);
	ctlsock_register(n->ctl, "connect", h_connect, n);
	for (i = 0; later[i]; i++)
		ctlsock_register(n->ctl, later[i], h_unavailable, n);
}
