/* pilotctl forward / expose: the userspace front ends' port forwards and exposed
 * ports (daemon/node_proxy.c keeps them and persists what is added here). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/ctlsrv_args.h"
#include "daemon/ctlsrv_verbs.h"
#include "daemon/node.h"

static bool need_userspace(ctlsrv_reply *r, node *n)
{
	if (n->proxy)
		return false;
	ctlsrv_reply_err(r, "unavailable", "forwards and exposed ports need -tun=userspace",
			 "restart pilotd with -tun=userspace (a TUN node reaches peers' ports directly)");
	return true;
}

static void done(ctlsrv_reply *r, int rc, const char *err, json_object *ok)
{
	if (rc == 0) {
		ctlsrv_reply_ok(r, ok);
		return;
	}
	json_object_put(ok);
	ctlsrv_reply_err(r, rc == -EEXIST ? "already_exists" : rc == -ENOENT ? "not_found" : "invalid_argument", err,
			 NULL);
}

void verb_forward_add(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *listen = ctlsrv_arg_str(args, "listen"), *target = ctlsrv_arg_str(args, "target");
	char err[512] = "";
	json_object *o;
	int rc;

	if (need_userspace(r, n))
		return;
	if (!listen || !target) {
		ctlsrv_reply_err(r, "invalid_argument", "want a local listen address and a target",
				 "pilotctl forward add 127.0.0.1:5432 db:5432");
		return;
	}
	rc = node_proxy_forward_add(n, listen, target, false, err, sizeof(err));
	if (rc < 0 && !err[0])
		snprintf(err, sizeof(err), "%s", strerror(-rc));
	o = json_object_new_object();
	json_object_object_add(o, "listen", json_object_new_string(listen));
	json_object_object_add(o, "target", json_object_new_string(target));
	done(r, rc, err, o);
}

void verb_forward_remove(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *listen = ctlsrv_arg_str(args, "listen");
	json_object *o;
	int rc;

	if (need_userspace(r, n))
		return;
	rc = listen ? node_proxy_forward_remove(n, listen) : -EINVAL;
	o = json_object_new_object();
	json_object_object_add(o, "removed", json_object_new_string(listen ? listen : ""));
	done(r, rc, rc == -ENOENT ? "no forward listens there" : "want the forward's listen address", o);
}

void verb_forward_list(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;

	(void)args;
	if (!need_userspace(r, n))
		ctlsrv_reply_ok(r, node_proxy_list_json(n, false));
}

void verb_expose_add(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *target = ctlsrv_arg_str(args, "target");
	int64_t port = ctlsrv_arg_int(args, "port", 0);
	char err[512] = "";
	json_object *o;
	int rc;

	if (need_userspace(r, n))
		return;
	if (!target || port <= 0 || port > 65535) {
		ctlsrv_reply_err(r, "invalid_argument", "want a Pilot port and a local ip:port",
				 "pilotctl expose add 80 127.0.0.1:8080");
		return;
	}
	rc = node_proxy_expose_add(n, (long)port, target, false, err, sizeof(err));
	o = json_object_new_object();
	json_object_object_add(o, "port", json_object_new_int64(port));
	json_object_object_add(o, "target", json_object_new_string(target));
	done(r, rc, err, o);
}

void verb_expose_remove(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	int64_t port = ctlsrv_arg_int(args, "port", 0);
	json_object *o;
	int rc;

	if (need_userspace(r, n))
		return;
	rc = node_proxy_expose_remove(n, (long)port);
	o = json_object_new_object();
	json_object_object_add(o, "removed", json_object_new_int64(port));
	done(r, rc, "no such exposed Pilot port", o);
}

void verb_expose_list(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;

	(void)args;
	if (!need_userspace(r, n))
		ctlsrv_reply_ok(r, node_proxy_list_json(n, true));
}
