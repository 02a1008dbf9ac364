/* Argument helpers, refusals and the hostname resolve shared by every control
 * handler file; see ctlsrv_args.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/ctlsrv_args.h"
#include "daemon/node.h"
#include "daemon/registration.h"
#include "lib/addr.h"
#include "lib/jsonwire.h"

/* ---- arguments ---- */
int ctlsrv_parse_node(json_object *v, uint32_t *out)
{
	const char *s;
	pilot_addr a;
	char *end;
	unsigned long long x;

	if (!v)
		return -EINVAL;
	if (json_object_is_type(v, json_type_int)) {
		int64_t i = json_object_get_int64(v);

		if (i <= 0 || i > UINT32_MAX)
			return -EINVAL;
		*out = (uint32_t)i;
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	s = json_object_get_string(v);
	if (pilot_addr_parse(s, strlen(s), &a) == 0 && a.node) {
		*out = a.node;
		return 0;
	}
	errno = 0;
	x = strtoull(s, &end, 10);
	if (!*s || *end || errno || x == 0 || x > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)x;
	return 0;
}

/* The node argument under any of the names pilotctl uses for it. */
int ctlsrv_arg_node(json_object *args, uint32_t *out)
{
	static const char *const keys[] = { "node_id", "target", "node", "address", NULL };
	json_object *v;
	int i;

	for (i = 0; keys[i]; i++)
		if (json_object_object_get_ex(args, keys[i], &v))
			return ctlsrv_parse_node(v, out);
	return -EINVAL;
}

const char *ctlsrv_arg_str(json_object *args, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(args, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int64_t ctlsrv_arg_int(json_object *args, const char *key, int64_t def)
{
	json_object *v;

	if (!json_object_object_get_ex(args, key, &v))
		return def;
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return INT64_MIN;
	return json_object_get_int64(v);
}

int64_t ctlsrv_arg_timeout(json_object *args, int64_t def)
{
	json_object *v;

	if (json_object_object_get_ex(args, "timeout_ms", &v))
		return json_object_get_int64(v);
	if (json_object_object_get_ex(args, "timeout", &v))
		return (int64_t)(json_object_get_double(v) * 1000);
	return def;
}

bool ctlsrv_arg_bool(json_object *args, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(args, key, &v) && json_object_get_boolean(v);
}

/* ---- refusals ---- */
bool ctlsrv_reg_failed(ctlsrv_reply *r, json_object *reply, int err)
{
	const char *m;
	char msg[512];

	if (!err)
		return false;
	if (err == -EREMOTEIO && reply) {
		m = jw_get_str(reply, "message");
		if (!m)
			m = jw_get_str(reply, "error");
		snprintf(msg, sizeof(msg), "registry: %s", m ? m : "request failed");
	} else {
		snprintf(msg, sizeof(msg), "registry: %s", strerror(-err));
	}
	ctlsrv_reply_err(r, err == -ETIMEDOUT ? "timeout" : "connection_failed", msg, NULL);
	return true;
}

bool ctlsrv_need_up(ctlsrv_reply *r, node *n)
{
	if (n->up && registration_registered(n->reg))
		return false;
	ctlsrv_reply_err(r, "connection_failed", "not registered with the registry yet",
			 "check the daemon log and the -registry address; it retries on its own");
	return true;
}

void *ctlsrv_up_alloc(ctlsrv_reply *r, node *n, size_t size)
{
	void *p;

	if (ctlsrv_need_up(r, n))
		return NULL;
	if (!(p = calloc(1, size)))
		ctlsrv_reply_err(r, "internal", "out of memory", NULL);
	return p;
}

/* A registry call returned -errno at once. */
void ctlsrv_reg_refused(ctlsrv_reply *r, int err)
{
	char msg[160];

	snprintf(msg, sizeof(msg), "registry request not sent: %s", strerror(-err));
	ctlsrv_reply_err(r, err == -EINVAL ? "invalid_argument" : "connection_failed", msg, NULL);
}

/* ---- a hostname through the registry ---- */
struct ctlsrv_resolve {
	ctlsrv_resolve_cb cb; /* NULL once cancelled */
	void *arg;
};

static void resolve_answer(void *arg, json_object *reply, int err)
{
	ctlsrv_resolve *q = arg;
	ctlsrv_resolve_cb cb = q->cb;
	void *cb_arg = q->arg;
	json_object *v = NULL;
	int64_t id = 0;

	free(q);
	if (!cb)
		return;
	if (!err && json_object_object_get_ex(reply, "node_id", &v))
		id = json_object_get_int64(v);
	if (err == -EREMOTEIO || (!err && (id <= 0 || id > UINT32_MAX)))
		cb(cb_arg, 0, -ENOENT, reply);
	else
		cb(cb_arg, err ? 0 : (uint32_t)id, err, reply);
}

ctlsrv_resolve *ctlsrv_resolve_start(node *n, const char *name, ctlsrv_resolve_cb cb, void *arg, int *err)
{
	ctlsrv_resolve *q;
	int rc;

	if (!n->reg) {
		*err = -ENOTCONN;
		return NULL;
	}
	if (!(q = calloc(1, sizeof(*q)))) {
		*err = -ENOMEM;
		return NULL;
	}
	*q = (ctlsrv_resolve){ .cb = cb, .arg = arg };
	if ((rc = registration_resolve_hostname(n->reg, name, resolve_answer, q)) < 0) {
		free(q);
		*err = rc;
		return NULL;
	}
	*err = 0;
	return q;
}

void ctlsrv_resolve_cancel(ctlsrv_resolve *q)
{
	if (q)
		q->cb = NULL;
}
