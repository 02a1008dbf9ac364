/* Control verbs of the trust handshake (cli.md §3.7): handshake, pending,
 * approve, reject, trust, untrust. Unlike the reference, approving a node that
 * is not pending, untrusting one that is not trusted, and handshaking an
 * already trusted node say so (cli.md §11 #5). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/ctlsrv_args.h"
#include "daemon/ctlsrv_verbs.h"
#include "daemon/ctlsrv.h"
#include "daemon/node.h"
#include "daemon/trust.h"
#include "lib/jsonwire.h"

static json_object *status_obj(const char *status, uint32_t id)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "status", json_object_new_string(status));
	json_object_object_add(o, "node_id", json_object_new_int64(id));
	return o;
}

static void trust_err(ctlsrv_reply *r, int err, uint32_t id, const char *what)
{
	char msg[160];

	switch (err) {
	case -ENOENT:
		snprintf(msg, sizeof(msg), "node %u %s", id, what);
		ctlsrv_reply_err(r, "not_found", msg, "see: pilotctl pending / pilotctl trust");
		break;
	case -EINVAL:
		ctlsrv_reply_err(r, "invalid_argument", "bad node or justification too long", NULL);
		break;
	case -ENOTCONN:
		ctlsrv_reply_err(r, "connection_failed", "not registered with the registry yet", NULL);
		break;
	default:
		snprintf(msg, sizeof(msg), "trust: %s", strerror(-err));
		ctlsrv_reply_err(r, "internal", msg, NULL);
	}
}

static void do_handshake(ctlsrv_reply *r, node *n, uint32_t id, const char *just)
{
	int err;

	if (id == n->node_id) {
		ctlsrv_reply_err(r, "invalid_argument", "that is this node", NULL);
		return;
	}
	err = trust_request(n->trust, id, just ? just : "");
	if (err == -EALREADY)
		ctlsrv_reply_ok(r, status_obj("already_trusted", id));
	else if (err < 0)
		trust_err(r, err, id, "");
	else
		ctlsrv_reply_ok(r, status_obj("sent", id));
}

typedef struct hs_req {
	ctlsrv_reply *r;
	node *n;
	char just[TRUST_MAX_JUSTIFY + 1];
} hs_req;

static void hs_resolved(void *arg, uint32_t id, int err, json_object *reply)
{
	hs_req *q = arg;

	if (err == -ENOENT)
		ctlsrv_reply_err(q->r, "not_found", "hostname not found", NULL);
	else if (!ctlsrv_reg_failed(q->r, reply, err))
		do_handshake(q->r, q->n, id, q->just);
	free(q);
}

void verb_handshake(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *just = ctlsrv_arg_str(args, "justification"), *target = ctlsrv_arg_str(args, "target");
	hs_req *q;
	uint32_t id;
	int rc;

	if (ctlsrv_need_up(r, n))
		return;
	if (just && strlen(just) > TRUST_MAX_JUSTIFY) {
		ctlsrv_reply_err(r, "invalid_argument", "justification longer than 1024 bytes", NULL);
		return;
	}
	if (ctlsrv_arg_node(args, &id) == 0) {
		do_handshake(r, n, id, just);
		return;
	}
	if (!target || !*target || !(q = calloc(1, sizeof(*q)))) {
		ctlsrv_reply_err(r, "invalid_argument", "want a node ID, address or hostname", NULL);
		return;
	}
	q->r = r;
	q->n = n;
	snprintf(q->just, sizeof(q->just), "%s", just ? just : "");
	if (!ctlsrv_resolve_start(n, target, hs_resolved, q, &rc)) {
		free(q);
		ctlsrv_reg_refused(r, rc);
	}
}

static bool node_arg(ctlsrv_reply *r, json_object *args, uint32_t *id)
{
	if (ctlsrv_arg_node(args, id) == 0)
		return true;
	ctlsrv_reply_err(r, "invalid_argument", "want a node ID", NULL);
	return false;
}

void verb_approve(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	uint32_t id;
	int err;

	if (!node_arg(r, args, &id) || ctlsrv_need_up(r, n))
		return;
	if ((err = trust_approve(n->trust, id)) < 0)
		trust_err(r, err, id, "has no pending handshake request");
	else
		ctlsrv_reply_ok(r, status_obj("approved", id));
}

void verb_reject(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *reason = ctlsrv_arg_str(args, "reason");
	uint32_t id;
	int err;

	if (!node_arg(r, args, &id) || ctlsrv_need_up(r, n))
		return;
	if ((err = trust_reject(n->trust, id, reason ? reason : "")) < 0)
		trust_err(r, err, id, "has no pending handshake request");
	else
		ctlsrv_reply_ok(r, status_obj("rejected", id));
}

void verb_untrust(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	uint32_t id;
	int err;

	if (!node_arg(r, args, &id) || ctlsrv_need_up(r, n))
		return;
	if ((err = trust_untrust(n->trust, id)) < 0)
		trust_err(r, err, id, "was not trusted");
	else
		ctlsrv_reply_ok(r, status_obj("revoked", id));
}

void verb_pending(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	json_object *o = json_object_new_object();

	json_object_object_add(o, "pending", n->trust ? trust_pending_json(n->trust) : json_object_new_array());
	ctlsrv_reply_ok(r, o);
}

void verb_trust(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	json_object *o = json_object_new_object();

	json_object_object_add(o, "trusted", n->trust ? trust_trusted_json(n->trust) : json_object_new_array());
	ctlsrv_reply_ok(r, o);
}
