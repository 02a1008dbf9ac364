/* Control verbs that talk to the registry: lookup, find, set/clear-hostname,
 * set-public/private, set/clear-tags, deregister, rotate-key and the network
 * group. Replies are the registry's reply objects passed through (cli.md §3.3:
 * "raw registry reply"), except where cli.md gives a shape. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/ctlsrv_args.h"
#include "daemon/ctlsrv_verbs.h"
#include "daemon/webhook.h"
#include "daemon/ctlsrv.h"
#include "daemon/node.h"
#include "daemon/registration.h"
#include "lib/addr.h"
#include "lib/fileutil.h"
#include "lib/jsonwire.h"
#include "lib/log.h"

static void reg_raw(void *arg, json_object *reply, int err)
{
	ctlsrv_reply *r = arg;

	if (!ctlsrv_reg_failed(r, reply, err))
		ctlsrv_reply_ok(r, json_object_get(reply));
}

#define CALL(r, expr)                                                                                        \
	do {                                                                                                 \
		int rc_ = (expr);                                                                            \
		if (rc_ < 0)                                                                                 \
			ctlsrv_reg_refused((r), rc_);                                                        \
	} while (0)

static bool bad_node(ctlsrv_reply *r, json_object *args, uint32_t *id)
{
	if (ctlsrv_arg_node(args, id) == 0)
		return false;
	ctlsrv_reply_err(r, "invalid_argument", "want a node ID or address (N:NNNN.HHHH.LLLL)", NULL);
	return true;
}

/* ---- lookup / find ---- */
void verb_lookup(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	uint32_t id;

	if (bad_node(r, args, &id) || ctlsrv_need_up(r, n))
		return;
	CALL(r, registration_lookup(n->reg, id, reg_raw, r));
}

static void find_done(void *arg, json_object *reply, int err)
{
	ctlsrv_reply *r = arg;
	json_object *o, *v;
	char addr[PILOT_ADDR_STRLEN];
	int64_t id;

	if (err == -EREMOTEIO) {
		ctlsrv_reply_err(r, "not_found", "hostname not found (or the node is private to you)",
				 "a private node is found only after a handshake: pilotctl handshake <node>");
		return;
	}
	if (ctlsrv_reg_failed(r, reply, err))
		return;
	id = json_object_object_get_ex(reply, "node_id", &v) ? json_object_get_int64(v) : 0;
	o = json_object_new_object();
	json_object_object_add(o, "hostname",
			       json_object_new_string(jw_get_str(reply, "hostname") ? jw_get_str(reply, "hostname") : ""));
	json_object_object_add(o, "node_id", json_object_new_int64(id));
	json_object_object_add(o, "address",
			       json_object_new_string(pilot_addr_format(pilot_addr_make(0, (uint32_t)id), addr)));
	json_object_object_add(o, "public", json_object_new_boolean(
		json_object_object_get_ex(reply, "public", &v) && json_object_get_boolean(v)));
	ctlsrv_reply_ok(r, o);
}

void verb_find(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *h = ctlsrv_arg_str(args, "hostname");

	if (!h || !*h) {
		ctlsrv_reply_err(r, "invalid_argument", "hostname is required", NULL);
		return;
	}
	if (ctlsrv_need_up(r, n))
		return;
	CALL(r, registration_resolve_hostname(n->reg, h, find_done, r));
}

/* ---- our own record ---- */
typedef struct host_req {
	ctlsrv_reply *r;
	node *n;
	char name[64];
} host_req;

static void host_done(void *arg, json_object *reply, int err)
{
	host_req *q = arg;
	json_object *o;

	if (!ctlsrv_reg_failed(q->r, reply, err)) {
		snprintf(q->n->hostname, sizeof(q->n->hostname), "%s", q->name);
		o = json_object_new_object();
		json_object_object_add(o, "hostname", json_object_new_string(q->name));
		json_object_object_add(o, "node_id", json_object_new_int64(q->n->node_id));
		ctlsrv_reply_ok(q->r, o);
	}
	free(q);
}

static void set_hostname(ctlsrv_reply *r, node *n, const char *name)
{
	host_req *q;
	int rc;

	if (strlen(name) >= sizeof(q->name)) {
		ctlsrv_reply_err(r, "invalid_argument", "hostname longer than 63 characters", NULL);
		return;
	}
	if (!(q = ctlsrv_up_alloc(r, n, sizeof(*q))))
		return;
	q->r = r;
	q->n = n;
	snprintf(q->name, sizeof(q->name), "%s", name);
	if ((rc = registration_set_hostname(n->reg, name, host_done, q)) < 0) {
		free(q);
		ctlsrv_reg_refused(r, rc);
	}
}

/* "" clears (pilotctl clear-hostname sends that). */
void verb_set_hostname(ctlsrv_reply *r, json_object *args, void *arg)
{
	const char *h = ctlsrv_arg_str(args, "hostname");

	if (!h) {
		ctlsrv_reply_err(r, "invalid_argument", "hostname is required", NULL);
		return;
	}
	set_hostname(r, arg, h);
}

void verb_clear_hostname(ctlsrv_reply *r, json_object *args, void *arg)
{
	set_hostname(r, arg, "");
}

typedef struct vis_req {
	ctlsrv_reply *r;
	node *n;
	bool pub;
} vis_req;

static void vis_done(void *arg, json_object *reply, int err)
{
	vis_req *q = arg;

	if (!ctlsrv_reg_failed(q->r, reply, err)) {
		q->n->o.public_node = q->pub; /* the admission rule follows the registry */
		ctlsrv_reply_ok(q->r, json_object_get(reply));
	}
	free(q);
}

static void set_visibility(ctlsrv_reply *r, node *n, bool pub)
{
	vis_req *q;
	int rc;

	if (ctlsrv_need_up(r, n))
		return;
	if (!(q = malloc(sizeof(*q)))) {
		ctlsrv_reply_err(r, "internal", "out of memory", NULL);
		return;
	}
	*q = (vis_req){ .r = r, .n = n, .pub = pub };
	if ((rc = registration_set_visibility(n->reg, pub, vis_done, q)) < 0) {
		free(q);
		ctlsrv_reg_refused(r, rc);
	}
}

void verb_set_public(ctlsrv_reply *r, json_object *args, void *arg)
{
	set_visibility(r, arg, true);
}
void verb_set_private(ctlsrv_reply *r, json_object *args, void *arg)
{
	set_visibility(r, arg, false);
}

void verb_set_visibility(ctlsrv_reply *r, json_object *args, void *arg)
{
	json_object *v;

	if (!json_object_object_get_ex(args, "public", &v) || !json_object_is_type(v, json_type_boolean)) {
		ctlsrv_reply_err(r, "invalid_argument", "public must be true or false", NULL);
		return;
	}
	set_visibility(r, arg, json_object_get_boolean(v));
}

static void tags(ctlsrv_reply *r, node *n, json_object *arr)
{
	const char *t[3];
	size_t cnt = arr ? json_object_array_length(arr) : 0, i;

	if (cnt > 3) {
		ctlsrv_reply_err(r, "invalid_argument", "at most 3 tags", NULL);
		return;
	}
	for (i = 0; i < cnt; i++) {
		json_object *v = json_object_array_get_idx(arr, i);

		if (!json_object_is_type(v, json_type_string)) {
			ctlsrv_reply_err(r, "invalid_argument", "tags must be strings", NULL);
			return;
		}
		t[i] = json_object_get_string(v);
		if (t[i][0] == '#')
			t[i]++;
	}
	if (ctlsrv_need_up(r, n))
		return;
	CALL(r, registration_set_tags(n->reg, t, cnt, reg_raw, r));
}

void verb_set_tags(ctlsrv_reply *r, json_object *args, void *arg)
{
	json_object *arr = NULL;

	/* An empty array clears (pilotctl clear-tags). */
	if (!json_object_object_get_ex(args, "tags", &arr) || !json_object_is_type(arr, json_type_array)) {
		ctlsrv_reply_err(r, "invalid_argument", "give up to 3 tags", NULL);
		return;
	}
	tags(r, arg, arr);
}

void verb_clear_tags(ctlsrv_reply *r, json_object *args, void *arg)
{
	tags(r, arg, NULL);
}

typedef struct dereg_op {
	ctlsrv_reply *r;
	node *n;
} dereg_op;

static void dereg_done(void *arg, json_object *reply, int err)
{
	dereg_op *d = arg;

	if (!err)
		node_webhook(d->n, "node.deregistered", NULL);
	reg_raw(d->r, reply, err);
	free(d);
}

void verb_deregister(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	dereg_op *d;
	int rc;

	if (ctlsrv_need_up(r, n))
		return;
	if (!(d = malloc(sizeof(*d)))) {
		ctlsrv_reply_err(r, "internal", "out of memory", NULL);
		return;
	}
	d->r = r;
	d->n = n;
	if ((rc = registration_deregister(n->reg, dereg_done, d)) < 0) {
		free(d);
		ctlsrv_reg_refused(r, rc);
	}
}

/* ---- rotate-key ----
 * The new key is written to <identity>.rotating before the registry hears of it
 * and moved over the identity file once the registry accepted it, so a crash in
 * between never loses the key the registry now holds. Sessions with peers stay
 * up (their keys came from the exchange, not from the identity); the next key
 * exchange is signed with the new key, and peers that cached the old one ask the
 * registry again (peer.c). */
typedef struct rotate_op {
	node *n;
	ctlsrv_reply *r;
	pilot_identity id;
	char pending[4200];   /* "" without -identity */
} rotate_op;

static void rotate_free(rotate_op *op)
{
	op->n->rotating = false;
	pilot_identity_wipe(&op->id);
	free(op);
}

static void rotate_failed(rotate_op *op, json_object *reply, int err)
{
	if (op->pending[0] && err == -EREMOTEIO) {
		unlink(op->pending); /* the registry said no: nothing changed */
	} else if (op->pending[0]) {
		log_warn("rotate-key: outcome unknown err=\"%s\"; the new key stays in %s: if the "
			 "registry shows it for node %u, move it over %s", strerror(-err), op->pending,
			 op->n->node_id, op->n->o.identity);
	}
	ctlsrv_reg_failed(op->r, reply, err);
	rotate_free(op);
}

static void rotate_done(void *arg, json_object *reply, int err)
{
	rotate_op *op = arg;
	node *n = op->n;
	json_object *d;
	char old[48];
	bool saved = false;
	int rc;

	if (err) {
		rotate_failed(op, reply, err);
		return;
	}
	if (op->pending[0] && (rc = pilot_rename_durable(op->pending, n->o.identity)) < 0)
		log_error("rotate-key: cannot move %s over %s: %s; the registry has the new key, "
			  "move it by hand before restarting", op->pending, n->o.identity, strerror(-rc));
	else if (op->pending[0])
		saved = true;
	snprintf(old, sizeof(old), "%s", n->pk_b64);
	node_set_identity(n, &op->id);
	log_info("rotate-key: identity replaced node_id=%u public_key=%s previous=%s saved=%d",
		 n->node_id, n->pk_b64, old, saved);
	d = json_object_new_object();
	json_object_object_add(d, "node_id", json_object_new_int64(n->node_id));
	json_object_object_add(d, "address", json_object_new_string(n->address));
	json_object_object_add(d, "public_key", json_object_new_string(n->pk_b64));
	json_object_object_add(d, "previous_public_key", json_object_new_string(old));
	json_object_object_add(d, "saved", json_object_new_boolean(saved));
	ctlsrv_reply_ok(op->r, d);
	rotate_free(op);
}

void verb_rotate_key(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	rotate_op *op;
	char e[512];
	int rc;

	if (ctlsrv_need_up(r, n))
		return;
	if (n->rotating) {
		ctlsrv_reply_err(r, "invalid_state", "a key rotation is already running", NULL);
		return;
	}
	if (!(op = calloc(1, sizeof(*op)))) {
		ctlsrv_reply_err(r, "internal", "out of memory", NULL);
		return;
	}
	op->n = n;
	op->r = r;
	n->rotating = true;
	pilot_identity_generate(&op->id);
	if (n->have_identity_path) {
		snprintf(op->pending, sizeof(op->pending), "%s.rotating", n->o.identity);
		if (pilot_identity_save(op->pending, &op->id, e, sizeof(e)) < 0) {
			ctlsrv_reply_err(r, "internal", e, "the identity's directory must be writable");
			op->pending[0] = '\0';
			rotate_free(op);
			return;
		}
	}
	if ((rc = registration_rotate_key(n->reg, op->id.pk, rotate_done, op)) < 0) {
		if (op->pending[0])
			unlink(op->pending);
		ctlsrv_reg_refused(r, rc);
		rotate_free(op);
	}
}

/* ---- networks ---- */
static int arg_net(ctlsrv_reply *r, json_object *args, uint16_t *net)
{
	json_object *v;
	int64_t x;

	if (!json_object_object_get_ex(args, "network_id", &v)
	    || (x = json_object_get_int64(v)) <= 0 || x > 65535) {
		ctlsrv_reply_err(r, "invalid_argument", "network_id must be 1..65535", NULL);
		return -1;
	}
	*net = (uint16_t)x;
	return 0;
}

/* The request's admin_token, else pilotd's -admin-token (NULL = none). */
static const char *admin_token(node *n, json_object *args)
{
	const char *t = ctlsrv_arg_str(args, "admin_token");

	if (t && *t)
		return t;
	return n->o.admin_token && *n->o.admin_token ? n->o.admin_token : NULL;
}

void verb_net_create(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *name = ctlsrv_arg_str(args, "name");

	if (!name || !*name) {
		ctlsrv_reply_err(r, "invalid_argument", "network name is required", NULL);
		return;
	}
	if (ctlsrv_need_up(r, n))
		return;
	CALL(r,
	     registration_create_network(n->reg, name, ctlsrv_arg_str(args, "join_rule"),
					 ctlsrv_arg_str(args, "token"), admin_token(n, args), reg_raw, r));
}

void verb_net_join(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	uint16_t net;

	if (arg_net(r, args, &net) < 0 || ctlsrv_need_up(r, n))
		return;
	CALL(r,
	     registration_join_network(n->reg, net, ctlsrv_arg_str(args, "token"), admin_token(n, args),
				       reg_raw, r));
}

void verb_net_leave(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	uint16_t net;

	if (arg_net(r, args, &net) < 0 || ctlsrv_need_up(r, n))
		return;
	CALL(r, registration_leave_network(n->reg, net, admin_token(n, args), reg_raw, r));
}

void verb_net_list(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;

	if (ctlsrv_need_up(r, n))
		return;
	CALL(r, registration_list_networks(n->reg, reg_raw, r));
}

void verb_net_members(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	uint16_t net;

	if (arg_net(r, args, &net) < 0 || ctlsrv_need_up(r, n))
		return;
	CALL(r, registration_list_nodes(n->reg, net, reg_raw, r));
}

void verb_net_invite(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	uint16_t net;
	uint32_t id;

	if (arg_net(r, args, &net) < 0 || bad_node(r, args, &id) || ctlsrv_need_up(r, n))
		return;
	CALL(r, registration_invite(n->reg, net, id, reg_raw, r));
}

void verb_net_invites(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;

	if (ctlsrv_need_up(r, n))
		return;
	CALL(r, registration_poll_invites(n->reg, reg_raw, r));
}

void verb_net_accept(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	json_object *v;
	uint16_t net;
	bool accept = true;

	if (json_object_object_get_ex(args, "accept", &v))
		accept = json_object_get_boolean(v);
	if (arg_net(r, args, &net) < 0 || ctlsrv_need_up(r, n))
		return;
	CALL(r, registration_respond_invite(n->reg, net, accept, reg_raw, r));
}
