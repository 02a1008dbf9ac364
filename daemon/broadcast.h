/* Broadcast to a network (issue 16; packet.md §1.3): the sender fans out one
 * ordinary unicast datagram per member of the network (dst = the member's
 * address on that network, never the broadcast address), so a receiver never
 * sees a broadcast destination. Only a member may broadcast, never on the
 * backbone (network 0); the fan-out is bounded (BCAST_MAX_FANOUT members) and
 * rate-limited (BCAST_RATE broadcasts a second, burst BCAST_BURST). The
 * receivers' usual admission applies (a private node takes datagrams only from
 * peers it trusts). */
#ifndef PILOT_BROADCAST_H
#define PILOT_BROADCAST_H

#include <stddef.h>
#include <stdint.h>

struct node;

#define BCAST_MAX_FANOUT 256
#define BCAST_RATE       10
#define BCAST_BURST      20

/* err 0: members = live members listed, sent = datagrams handed to the tunnel
 * (members other than this node, at most BCAST_MAX_FANOUT). err -EACCES: this
 * node is not a member; other -errno: the registry's. */
typedef void (*node_bcast_cb)(void *arg, int err, int members, int sent);

/* Start a broadcast of data to port on network net, from source port sport
 * (0 = ephemeral). 0 (cb later, exactly once, may be NULL) or -EINVAL
 * (network 0, empty), -EMSGSIZE, -EAGAIN (rate limited), -ENOTCONN (not
 * registered), -ENOMEM. */
int node_broadcast(struct node *n, uint16_t net, uint16_t sport, uint16_t port, const void *data, size_t len,
		   node_bcast_cb cb, void *arg);

#endif
