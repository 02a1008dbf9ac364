/* Control verb "broadcast": one datagram to every member of a network
 * (daemon/broadcast.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/broadcast.h"
#include "daemon/ctlsrv_args.h"
#include "daemon/ctlsrv_verbs.h"
#include "daemon/node.h"
#include "lib/jsonwire.h"

typedef struct bcast_req {
	ctlsrv_reply *r;
	uint16_t net, port;
	size_t bytes;
} bcast_req;

static void bcast_done(void *arg, int err, int members, int sent)
{
	bcast_req *q = arg;
	json_object *o;
	char msg[160];

	if (err == -EACCES) {
		snprintf(msg, sizeof(msg), "this node is not a member of network %u", q->net);
		ctlsrv_reply_err(q->r, "forbidden", msg, "pilotctl network join <network_id>");
	} else if (err) {
		snprintf(msg, sizeof(msg), "registry: cannot list network %u: %s", q->net,
			 err == -EREMOTEIO ? "refused (does the network exist?)" : strerror(-err));
		ctlsrv_reply_err(q->r, err == -ETIMEDOUT ? "timeout" : "connection_failed", msg, NULL);
	} else {
		o = json_object_new_object();
		jw_set_int(o, "network_id", q->net);
		jw_set_int(o, "port", q->port);
		jw_set_int(o, "bytes", (int64_t)q->bytes);
		jw_set_int(o, "members", members);
		jw_set_int(o, "sent", sent);
		ctlsrv_reply_ok(q->r, o);
	}
	free(q);
}

void verb_broadcast(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *data = ctlsrv_arg_str(args, "data");
	int64_t net = ctlsrv_arg_int(args, "network_id", -1), port = ctlsrv_arg_int(args, "port", -1);
	bcast_req *q;
	int rc;

	if (net < 1 || net > 65535 || port < 1 || port > 65535 || !data || !*data) {
		ctlsrv_reply_err(r, "invalid_argument",
				 "want network_id 1..65535 (the backbone cannot be broadcast to), port "
				 "1..65535 and data",
				 NULL);
		return;
	}
	if (!(q = ctlsrv_up_alloc(r, n, sizeof(*q))))
		return;
	*q = (bcast_req){ .r = r, .net = (uint16_t)net, .port = (uint16_t)port, .bytes = strlen(data) };
	rc = node_broadcast(n, q->net, 0, q->port, data, q->bytes, bcast_done, q);
	if (rc == 0)
		return;
	free(q);
	if (rc == -EAGAIN)
		ctlsrv_reply_err(r, "rate_limited", "too many broadcasts (10 a second, burst 20)",
				 "try again shortly");
	else if (rc == -EMSGSIZE)
		ctlsrv_reply_err(r, "invalid_argument", "data larger than one datagram (65535 bytes)", NULL);
	else
		ctlsrv_reg_refused(r, rc);
}
