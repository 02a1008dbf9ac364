/* Built-in services (data exchange on 1001, event stream on 1002) and their
 * control verbs: send-file, send-message, received, inbox (data exchange),
 * subscribe, publish (event stream). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/conn.h"
#include "daemon/ctlsrv_op.h"
#include "daemon/secure.h"
#include "daemon/tasks.h"
#include "daemon/webhook.h"
#include "daemon/ctlsrv_verbs.h"
#include "daemon/dataxchg.h"
#include "daemon/events.h"
#include "lib/log.h"

/* dirname(identity)/received and /inbox; ~/.pilot/... without an identity path. */
void svc_dirs(const node *n, char *received, char *inbox, size_t len)
{
	const char *id = n->o.identity, *slash = id ? strrchr(id, '/') : NULL, *home = getenv("HOME");
	char base[4096];

	if (id && *id)
		snprintf(base, sizeof(base), "%.*s", slash ? (slash == id ? 1 : (int)(slash - id)) : 1,
			 slash ? id : ".");
	else
		snprintf(base, sizeof(base), "%s/.pilot", home && *home ? home : "/tmp");
	snprintf(received, len, "%s/received", base);
	snprintf(inbox, len, "%s/inbox", base);
}

/* file.received / message.received webhooks (services.md §9). */
static void dx_webhook(void *ctx, const dx_received *rcv)
{
	json_object *d = json_object_new_object();
	char a[PILOT_ADDR_STRLEN];

	if (rcv->filename) {
		json_object_object_add(d, "filename", json_object_new_string(rcv->filename));
		json_object_object_add(d, "size", json_object_new_int64((int64_t)rcv->size));
		json_object_object_add(d, "path", json_object_new_string(rcv->path ? rcv->path : ""));
		node_webhook(ctx, "file.received", d);
		return;
	}
	json_object_object_add(d, "type", json_object_new_string(rcv->type_name ? rcv->type_name : ""));
	json_object_object_add(d, "from", json_object_new_string(pilot_addr_format(rcv->from, a)));
	json_object_object_add(d, "size", json_object_new_int64((int64_t)rcv->size));
	node_webhook(ctx, "message.received", d);
}

/* pubsub.* webhooks. */
static void evs_webhook(void *ctx, enum evs_note what, const uint8_t *topic, size_t tlen, pilot_addr remote,
			size_t size)
{
	json_object *d = json_object_new_object();
	char a[PILOT_ADDR_STRLEN];

	json_object_object_add(d, "topic", json_object_new_string_len((const char *)topic, (int)tlen));
	pilot_addr_format(remote, a);
	if (what == EVS_PUBLISHED) {
		json_object_object_add(d, "size", json_object_new_int64((int64_t)size));
		json_object_object_add(d, "from", json_object_new_string(a));
	} else {
		json_object_object_add(d, "remote", json_object_new_string(a));
	}
	node_webhook(ctx,
		     what == EVS_SUBSCRIBED          ? "pubsub.subscribed"
			     : what == EVS_PUBLISHED ? "pubsub.published"
						     : "pubsub.unsubscribed",
		     d);
}

void node_svc_up(node *n)
{
	char rdir[4096], idir[4096];
	node_svc *s;
	int err = 0;

	if (n->svc || !(s = calloc(1, sizeof(*s)))) {
		if (!n->svc)
			log_warn("services: out of memory");
		return;
	}
	n->svc = s;
	svc_dirs(n, rdir, idir, sizeof(rdir));
	if (n->o.webhook && *n->o.webhook) {
		char werr[256] = "";

		if (!(s->wh = webhook_new(n)) || webhook_set(s->wh, n->o.webhook, werr, sizeof(werr)) < 0)
			log_warn("webhook not started url=%s err=\"%s\"", n->o.webhook, werr);
	}
	if (!n->o.no_dataexchange) {
		dx_config dc = {
			.received_dir = rdir,
			.inbox_dir = idir,
			.quota_bytes = (uint64_t)n->o.dx_quota << 20,
			.peer_quota_bytes = (uint64_t)n->o.dx_peer_quota << 20,
			.min_free_bytes = (uint64_t)n->o.dx_min_free << 20,
			.on_received = dx_webhook,
			.ctx = n,
		};

		if (!(s->dx = dx_server_new(n->conns, &dc, &err)))
			log_warn("data exchange (port %d) not started err=\"%s\"", DX_PORT, strerror(-err));
	}
	if (!n->o.no_eventstream) {
		evs_config ec = { .on_note = evs_webhook, .ctx = n };

		if (!(s->ev = evs_broker_new(n->conns, &ec, &err)))
			log_warn("event stream (port %d) not started err=\"%s\"", EVS_PORT, strerror(-err));
	}
	if (!n->o.no_tasks) {
		char base[4096];
		char *sl;

		snprintf(base, sizeof(base), "%s", rdir);
		if ((sl = strrchr(base, '/')))
			*sl = '\0';
		if (!(s->tasks = tasks_new(n, base, &err)))
			log_warn("task submit (port 1003) not started err=\"%s\"", strerror(-err));
	}
	if (n->o.secure_forward && *n->o.secure_forward) {
		if ((err = secure_forward_start(n, n->o.secure_forward, n->o.secure_require_auth)) < 0)
			log_warn("secure channel (port %d) not started target=%s err=\"%s\"", SECURE_PORT,
				 n->o.secure_forward, strerror(-err));
		else
			log_info("secure channel port=%d forward=%s require_auth=%d", SECURE_PORT,
				 n->o.secure_forward, n->o.secure_require_auth);
	}
	log_info("services dataexchange=%s eventstream=%s tasks=%s received=%s inbox=%s",
		 s->dx ? "on" : "off", s->ev ? "on" : "off", s->tasks ? "on" : "off", rdir, idir);
}

void svc_services_free(node *n)
{
	node_svc *s = n->svc;

	tasks_free(s->tasks);
	s->tasks = NULL;
	webhook_free(s->wh);
	s->wh = NULL;
	secure_forward_stop(n);
	free(s->sec);
	s->sec = NULL;
	dx_server_free(s->dx);
	s->dx = NULL;
	evs_broker_free(s->ev);
	s->ev = NULL;
}

/* ---- send-file / send-message ---- */
typedef struct dx_cop {
	cop o;
	dx_op *op;
	char *path;
	uint32_t type;
	char *data;
	size_t len;
} dx_cop;

static void dxc_release(cop *o)
{
	dx_cop *d = (dx_cop *)o;

	if (d->op)
		dx_op_cancel(d->op);
	free(d->path);
	free(d->data);
}

static void dxc_done(void *arg, const dx_result *res)
{
	dx_cop *d = arg;
	json_object *o;
	char tn[DX_TYPENAME_MAX];

	d->op = NULL;
	if (res->err) {
		cop_err(&d->o, res->err == -ETIMEDOUT ? "timeout" : "connection_failed", "%s:%d: %s", d->o.addr,
			DX_PORT, cop_errname(res->err));
		return;
	}
	if (res->reply && !res->acked) {
		cop_err(&d->o, "connection_failed", "%s:%d: %s", d->o.addr, DX_PORT, res->reply);
		return;
	}
	o = json_object_new_object();
	if (d->path) {
		json_object_object_add(o, "filename", json_object_new_string(res->filename ? res->filename : ""));
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)res->bytes));
		json_object_object_add(o, "destination", json_object_new_string(d->o.addr));
	} else {
		json_object_object_add(o, "target", json_object_new_string(d->o.addr));
		dx_type_name(d->type, tn);
		for (char *c = tn; *c; c++)
			*c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
		json_object_object_add(o, "type", json_object_new_string(tn));
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)res->bytes));
	}
	if (res->reply)
		json_object_object_add(o, "ack", json_object_new_string(res->reply));
	cop_ok(&d->o, o);
}

static void dxc_start(cop *o)
{
	dx_cop *d = (dx_cop *)o;
	pilot_addr dst = pilot_addr_make(0, o->target);
	int err = 0;

	if (d->path)
		d->op = dx_send_file(o->n->conns, dst, d->path, dxc_done, d, &err);
	else
		d->op = dx_send_message(o->n->conns, dst, d->type, d->data, d->len, dxc_done, d, &err);
	if (d->op)
		return;
	switch (-err) {
	case ENOENT:
		cop_err(o, "not_found", "%s: %s", d->path ? d->path : "", strerror(-err));
		break;
	case EACCES: case EISDIR: case EFBIG: case EINVAL:
		cop_err(o, d->path ? "internal" : "invalid_argument", "%s: %s", d->path ? d->path : "message",
			strerror(-err));
		break;
	default:
		cop_err(o, "connection_failed", "%s:%d: %s", o->addr, DX_PORT, strerror(-err));
	}
}

void verb_send_file(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *path = ctlsrv_arg_str(args, "path");
	int64_t timeout = ctlsrv_arg_timeout(args, 120000);
	dx_cop *d;

	if (!path || path[0] != '/' || timeout <= 0) {
		ctlsrv_reply_err(r, "invalid_argument", "want an absolute path and a positive timeout", NULL);
		return;
	}
	if (!cop_can_start(r, n) || !(d = cop_new(n, r, sizeof(*d), timeout, dxc_release)))
		return;
	if (!(d->path = strdup(path))) {
		cop_err(&d->o, "internal", "out of memory");
		return;
	}
	cop_resolve(&d->o, args, dxc_start);
}

void verb_send_message(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *data = ctlsrv_arg_str(args, "data"), *type = ctlsrv_arg_str(args, "type");
	int64_t timeout = ctlsrv_arg_timeout(args, 30000);
	uint32_t t;
	dx_cop *d;

	if (!type || !strcmp(type, "text"))
		t = DX_TEXT;
	else if (!strcmp(type, "json"))
		t = DX_JSON;
	else if (!strcmp(type, "binary"))
		t = DX_BINARY;
	else
		t = 0;
	if (!t || !data || timeout <= 0) {
		ctlsrv_reply_err(r, "invalid_argument",
				 "want data, a type text|json|binary and a positive timeout", NULL);
		return;
	}
	if (!cop_can_start(r, n) || !(d = cop_new(n, r, sizeof(*d), timeout, dxc_release)))
		return;
	d->type = t;
	d->len = strlen(data);
	if (!(d->data = strdup(data))) {
		cop_err(&d->o, "internal", "out of memory");
		return;
	}
	cop_resolve(&d->o, args, dxc_start);
}

/* received / inbox (not pilotctl verbs: scripts and tests), args {clear: bool}. */
static void mailbox(ctlsrv_reply *r, json_object *args, node *n, bool files)
{
	char rdir[4096], idir[4096];
	json_object *out = NULL;
	int rc;

	svc_dirs(n, rdir, idir, sizeof(rdir));
	if (ctlsrv_arg_bool(args, "clear"))
		rc = files ? dx_clear_received(rdir, &out) : dx_clear_inbox(idir, &out);
	else
		rc = files ? dx_list_received(rdir, &out) : dx_list_inbox(idir, &out);
	if (rc == -ENOENT)
		ctlsrv_reply_ok(r, NULL);
	else if (rc < 0)
		ctlsrv_reply_err(r, "internal", strerror(-rc), NULL);
	else
		ctlsrv_reply_ok(r, out);
}

void verb_received(ctlsrv_reply *r, json_object *args, void *arg)
{
	mailbox(r, args, arg, true);
}

void verb_inbox(ctlsrv_reply *r, json_object *args, void *arg)
{
	mailbox(r, args, arg, false);
}

/* ---- subscribe / publish ---- */
typedef struct evs_cop {
	cop o;
	evs_sub *sub;
	evs_pub *pub;
	char *topic, *data;
	int64_t count, got;
	bool streaming;
	json_object *events;
} evs_cop;

static void evc_release(cop *o)
{
	evs_cop *e = (evs_cop *)o;

	if (e->sub)
		evs_sub_cancel(e->sub);
	if (e->pub)
		evs_pub_cancel(e->pub);
	free(e->topic);
	free(e->data);
	json_object_put(e->events);
}

static void sub_finish(evs_cop *e, bool timed_out, const char *error)
{
	json_object *o;

	if (e->streaming) {
		cop_end(&e->o);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "events", json_object_get(e->events));
	json_object_object_add(o, "timeout", json_object_new_boolean(timed_out));
	if (error)
		json_object_object_add(o, "error", json_object_new_string(error));
	cop_ok(&e->o, o);
}

static void sub_timeout(cop *o)
{
	sub_finish((evs_cop *)o, true, NULL);
}

static void sub_event(void *arg, const uint8_t *topic, size_t tlen, const uint8_t *data, size_t len)
{
	evs_cop *e = arg;
	json_object *m = json_object_new_object();

	json_object_object_add(m, "topic", json_object_new_string_len((const char *)topic, (int)tlen));
	json_object_object_add(m, "data", json_object_new_string_len((const char *)data, (int)len));
	json_object_object_add(m, "bytes", json_object_new_int64((int64_t)len));
	if (e->streaming)
		ctlsrv_reply_stream(e->o.r, m);
	else
		json_object_array_add(e->events, m);
	e->got++;
	if (e->count && e->got >= e->count)
		sub_finish(e, false, NULL);
}

static void sub_end(void *arg, int err)
{
	evs_cop *e = arg;

	e->sub = NULL;
	if (err && !e->got)
		cop_err(&e->o, err == -ETIMEDOUT ? "timeout" : "connection_failed", "%s:%d: %s", e->o.addr, EVS_PORT,
			cop_errname(err));
	else
		sub_finish(e, false, err ? cop_errname(err) : NULL);
}

static void sub_start(cop *o)
{
	evs_cop *e = (evs_cop *)o;
	int err = 0;

	e->sub = evs_subscribe(o->n->conns, pilot_addr_make(0, o->target), e->topic, sub_event, sub_end, e, &err);
	if (!e->sub)
		cop_err(o, "connection_failed", "%s:%d: %s", o->addr, EVS_PORT, strerror(-err));
}

static bool topic_ok(ctlsrv_reply *r, const char *topic)
{
	if (!topic || !*topic || strlen(topic) > EVS_MAX_TOPIC) {
		ctlsrv_reply_err(r, "invalid_argument", "want a topic of 1 to 1024 bytes", NULL);
		return false;
	}
	return true;
}

void verb_subscribe(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *topic = ctlsrv_arg_str(args, "topic");
	int64_t count = ctlsrv_arg_int(args, "count", 0), timeout = ctlsrv_arg_timeout(args, 0);
	evs_cop *e;

	if (count < 0 || timeout < 0) {
		ctlsrv_reply_err(r, "invalid_argument", "count and timeout must not be negative", NULL);
		return;
	}
	if (!topic_ok(r, topic) || !cop_can_start(r, n) || !(e = cop_new(n, r, sizeof(*e), timeout, evc_release)))
		return;
	e->o.on_timeout = sub_timeout;
	e->count = count;
	e->streaming = count == 0;
	e->events = json_object_new_array();
	if (!(e->topic = strdup(topic))) {
		cop_err(&e->o, "internal", "out of memory");
		return;
	}
	cop_resolve(&e->o, args, sub_start);
}

static void pub_done(void *arg, int err)
{
	evs_cop *e = arg;
	json_object *o;

	e->pub = NULL;
	if (err) {
		cop_err(&e->o, err == -ETIMEDOUT ? "timeout" : "connection_failed", "%s:%d: %s", e->o.addr, EVS_PORT,
			cop_errname(err));
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "target", json_object_new_string(e->o.addr));
	json_object_object_add(o, "topic", json_object_new_string(e->topic));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)strlen(e->data)));
	cop_ok(&e->o, o);
}

static void pub_start(cop *o)
{
	evs_cop *e = (evs_cop *)o;
	int err = 0;

	e->pub = evs_publish(o->n->conns, pilot_addr_make(0, o->target), e->topic, e->data, strlen(e->data),
			    pub_done, e, &err);
	if (!e->pub)
		cop_err(o, "connection_failed", "%s:%d: %s", o->addr, EVS_PORT, strerror(-err));
}

void verb_publish(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *topic = ctlsrv_arg_str(args, "topic"), *data = ctlsrv_arg_str(args, "data");
	int64_t timeout = ctlsrv_arg_timeout(args, 30000);
	evs_cop *e;

	if (!data || timeout <= 0) {
		ctlsrv_reply_err(r, "invalid_argument", "publish needs data and a positive timeout", NULL);
		return;
	}
	if (!topic_ok(r, topic) || !cop_can_start(r, n) || !(e = cop_new(n, r, sizeof(*e), timeout, evc_release)))
		return;
	if (!(e->topic = strdup(topic)) || !(e->data = strdup(data))) {
		cop_err(&e->o, "internal", "out of memory");
		return;
	}
	cop_resolve(&e->o, args, pub_start);
}
