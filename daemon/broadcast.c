/* Broadcast fan-out: see broadcast.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/broadcast.h"
#include "daemon/node.h"
#include "daemon/registration.h"
#include "lib/jsonwire.h"
#include "lib/log.h"
#include "lib/proto.h"
#include "stream/conn.h"

typedef struct bcast {
	node *n;
	uint16_t net, sport, port;
	node_bcast_cb cb;
	void *arg;
	size_t len;
	uint8_t data[];
} bcast;

/* Token bucket in thousandths of a broadcast. */
static bool take_token(node *n)
{
	uint64_t now = pilot_now_ms(), cap = BCAST_BURST * 1000ull;

	if (n->bcast_last_ms == 0)
		n->bcast_milli = cap;
	else
		n->bcast_milli += (now - n->bcast_last_ms) * BCAST_RATE;
	if (n->bcast_milli > cap)
		n->bcast_milli = cap;
	n->bcast_last_ms = now;
	if (n->bcast_milli < 1000)
		return false;
	n->bcast_milli -= 1000;
	return true;
}

static bool is_member(json_object *nodes, uint32_t id)
{
	size_t i;

	for (i = 0; i < json_object_array_length(nodes); i++)
		if (jw_get_u32(json_object_array_get_idx(nodes, i), "node_id") == id)
			return true;
	return false;
}

static void members_done(void *arg, json_object *reply, int err)
{
	bcast *b = arg;
	node *n = b->n;
	json_object *nodes = NULL;
	int members = 0, sent = 0;
	size_t i;

	if (!err &&
	    (!json_object_object_get_ex(reply, "nodes", &nodes) ||
	     !json_object_is_type(nodes, json_type_array)))
		err = -EPROTO;
	if (!err && !is_member(nodes, n->node_id))
		err = -EACCES; /* only a member reaches the others */
	for (i = 0; !err && i < json_object_array_length(nodes); i++) {
		uint32_t id = jw_get_u32(json_object_array_get_idx(nodes, i), "node_id");

		members++;
		if (!id || id == n->node_id || sent >= BCAST_MAX_FANOUT)
			continue;
		if (conn_dgram_send_from(n->conns, b->sport, pilot_addr_make(b->net, id), b->port, b->data,
					 b->len) == 0)
			sent++;
	}
	if (!err) {
		n->bcast_sent++;
		n->bcast_dgrams += (uint64_t)sent;
		if (members - 1 > BCAST_MAX_FANOUT)
			log_warn("broadcast on network %u: %d members, sent to the first %d", b->net, members,
				 BCAST_MAX_FANOUT);
	}
	if (b->cb)
		b->cb(b->arg, err, members, sent);
	free(b);
}

int node_broadcast(node *n, uint16_t net, uint16_t sport, uint16_t port, const void *data, size_t len,
		   node_bcast_cb cb, void *arg)
{
	bcast *b;
	int rc;

	if (net == 0 || !len || !port)
		return -EINVAL;
	if (len > PROTO_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (!n->reg || !n->node_id || !n->conns)
		return -ENOTCONN;
	if (!take_token(n)) {
		n->bcast_limited++;
		return -EAGAIN;
	}
	if (!(b = malloc(sizeof(*b) + len)))
		return -ENOMEM;
	*b = (bcast){ .n = n, .net = net, .sport = sport, .port = port, .cb = cb, .arg = arg, .len = len };
	memcpy(b->data, data, len);
	if ((rc = registration_list_nodes(n->reg, net, members_done, b)) < 0)
		free(b);
	return rc;
}
