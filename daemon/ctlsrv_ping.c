/* Control verb ping (control-protocol echo, RTT per sample; the target is a
 * node ID, an address or a hostname resolved through the registry). The stream,
 * datagram and service verbs are in ctlsrv_comm.c and ctlsrv_svc.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/conn.h"
#include "daemon/ctlsrv_args.h"
#include "daemon/ctlsrv_verbs.h"
#include "daemon/ctlsrv.h"
#include "daemon/node.h"
#include "lib/addr.h"
#include "lib/jsonwire.h"

#define PING_COUNT 4
#define PING_MAX_COUNT 1000
#define PING_INTERVAL_MS 200
#define PING_TIMEOUT_MS 30000
#define PING_PAYLOAD_MAX 1024

/* ---- ping ---- */
typedef struct ping_op {
	ctlsrv_reply *r;
	node *n;
	ctlsrv_resolve *rq; /* hostname resolve in flight */
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
	ctlsrv_reply_ok(p->r, o);
	free(p);
}

static void ping_send(ping_op *p);

static void ping_fail(ping_op *p, const char *code, const char *msg)
{
	ctlsrv_reply_err(p->r, code, msg, NULL);
	json_object_put(p->results);
	free(p);
}

static void ping_start(ping_op *p, uint32_t id)
{
	p->target = id;
	pilot_addr_format(pilot_addr_make(0, id), p->addr);
	ping_send(p);
}

static void ping_resolved(void *arg, uint32_t id, int err, json_object *reply)
{
	ping_op *p = arg;
	char msg[160];

	p->rq = NULL;
	if (err == -ENOENT) {
		ping_fail(p, "not_found", "hostname not found");
	} else if (err) {
		snprintf(msg, sizeof(msg), "registry: %s", strerror(-err));
		ping_fail(p, err == -ETIMEDOUT ? "timeout" : "connection_failed", msg);
	} else {
		ping_start(p, id);
	}
}

/* Not a node ID or address: ask the registry whose hostname it is. */
static void ping_resolve(ping_op *p, const char *name)
{
	char msg[160];
	int rc;

	if (!name || !*name || strlen(name) > 63) {
		ping_fail(p, "not_found", "want a node ID, an address (N:NNNN.HHHH.LLLL) or a hostname");
		return;
	}
	if ((p->rq = ctlsrv_resolve_start(p->n, name, ping_resolved, p, &rc)))
		return;
	if (rc == -ENOMEM) {
		ping_fail(p, "internal", "out of memory");
		return;
	}
	snprintf(msg, sizeof(msg), "registry request not sent: %s", strerror(-rc));
	ping_fail(p, "connection_failed", msg);
}

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

static void ping_cancel(ctlsrv_reply *r, void *arg)
{
	ping_op *p = arg;

	ctlsrv_resolve_cancel(p->rq); /* its answer finds nobody to tell */
	p->rq = NULL;
	if (p->ping_id && p->n->conns)
		conn_ping_cancel(p->n->conns, p->ping_id);
	p->ping_id = 0;
	ping_finish(p);
}

void verb_ping(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	ping_op *p;
	const char *payload = ctlsrv_arg_str(args, "payload");
	int64_t count = ctlsrv_arg_int(args, "count", PING_COUNT),
		timeout = ctlsrv_arg_timeout(args, PING_TIMEOUT_MS);
	uint32_t id;

	if (count < 1 || count > PING_MAX_COUNT || timeout <= 0
	    || (payload && strlen(payload) > PING_PAYLOAD_MAX)) {
		ctlsrv_reply_err(r, "invalid_argument",
				 "count must be 1..1000, timeout positive, payload <= 1024 bytes", NULL);
		return;
	}
	if (!(p = ctlsrv_up_alloc(r, n, sizeof(*p))))
		return;
	p->r = r;
	p->n = n;
	p->count = (int)count;
	p->results = json_object_new_array();
	p->deadline_ms = pilot_now_ms() + (uint64_t)timeout;
	p->plen = payload ? strlen(payload) : 9;
	memcpy(p->payload, payload ? payload : "pilotping", p->plen);
	if (ctlsrv_arg_node(args, &id) == 0) {
		ctlsrv_reply_on_cancel(r, ping_cancel, p);
		ping_start(p, id);
		return;
	}
	ctlsrv_reply_on_cancel(r, ping_cancel, p); /* before: ping_fail may finish r */
	ping_resolve(p, ctlsrv_arg_str(args, "target"));
}
