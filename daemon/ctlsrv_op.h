/* Shared by daemon/ctlsrv_op.c (the framework), ctlsrv_comm.c (stream and datagram
 * verbs), ctlsrv_bench.c (measurements, test verbs) and ctlsrv_svc.c (built-in
 * services and their verbs): the node's service state and the
 * asynchronous control operation ("cop") every communication verb runs as.
 *
 * A cop owns one control reply. It has a timeout, resolves its target (node ID,
 * address, or hostname through the registry), and is finished exactly once: by
 * its own completion, its timeout, the client going away (ctlsrv_reply_on_cancel)
 * or daemon shutdown (node_svc_down, before the connection table goes). Its
 * release callback drops every resource (conn handles, service ops) without
 * replying. Nothing outside those files includes this. */
#ifndef PILOT_CTLSRV_COMM_H
#define PILOT_CTLSRV_COMM_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "daemon/ctlsrv_args.h"
#include "daemon/ctlsrv.h"
#include "daemon/node.h"
#include "stream/conn.h"
#include "stream/stream.h"
#include "lib/addr.h"

typedef struct cop cop;
struct dgram_port;
struct serve_op;

typedef struct node_svc {
	struct dx_server *dx;
	struct evs_broker *ev;
	cop *ops;                   /* every unfinished operation */
	struct dgram_port *ports;   /* datagram ports bound for listen */
	struct serve_op *serves;    /* stream ports served by control clients (ctlsrv_serve.c) */
	struct secure_state *sec;   /* port 443 sessions, -secure-forward (secure.c) */
	struct tasks *tasks;        /* task submit, port 1003 (tasks.c) */
	struct webhook *wh;         /* -webhook / set-webhook (webhook.c) */
} node_svc;

struct cop {
	node *n;
	ctlsrv_reply *r;
	cop *prev, *next;
	uint64_t timer;
	uint32_t target;
	char addr[PILOT_ADDR_STRLEN];
	ctlsrv_resolve *rq;
	void (*start)(cop *o);      /* target resolved */
	void (*release)(cop *o);    /* drop resources; never replies */
	void (*on_timeout)(cop *o); /* must finish o; NULL = "timeout" error */
	bool established;           /* its connection was up once: a later failure is a
				     * stall, not a refusal (the hint of cop_err) */
};

/* Allocate size bytes (cop first) bound to r, with a timeout (<= 0: none).
 * NULL after replying "internal" when out of memory. */
void *cop_new(node *n, ctlsrv_reply *r, size_t size, int64_t timeout_ms, void (*release)(cop *o));
/* Resolve args' target and call start (maybe at once). On failure o is finished. */
void cop_resolve(cop *o, json_object *args, void (*start)(cop *o));
void cop_ok(cop *o, json_object *data);
void cop_err(cop *o, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Finish a streaming op: {"items": n}. */
void cop_end(cop *o);
/* Re-arm the timeout (ms from now; <= 0 = none). */
void cop_set_timeout(cop *o, int64_t timeout_ms);

/* Helpers. */
/* A connection's stream_stats as JSON. */
json_object *cop_conn_stats(const conn *c);
/* Release a conn handle: graceful close or RST, never calling back; *cp = NULL. */
void cop_drop_conn(conn **cp, bool abort_it);
/* A port argument in 1..65535 (0 too if allow0), else reply invalid_argument. */
bool cop_port_ok(ctlsrv_reply *r, int64_t port, bool allow0);
/* The whole stream_stats as a JSON object. */
json_object *cop_stats_json(const stream_stats *s);
const char *cop_errname(int err); /* "connection refused", "timeout", strerror */
/* The shutdown/up gate for a new operation: replies and returns false when the
 * data plane is not (or no longer) there. */
bool cop_can_start(ctlsrv_reply *r, node *n);

/* ctlsrv_svc.c */
void svc_dirs(const node *n, char *received, char *inbox, size_t len);
void svc_services_free(node *n);

#endif
