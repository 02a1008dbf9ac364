/* The UDP beacon of pilot-rendezvous (tunnel.md §9): endpoint discovery, hole-punch
 * coordination and relay, with identity checks the reference beacon lacks: a node's
 * endpoint is only used for punch and relay once the node proved it owns its ID
 * (source IP = its registry IP, or a signed Discover; see rendezvous/BEACON.md).
 * Runs on the caller's loop; one socket, recvmmsg/sendmmsg, no allocation per packet. */
#ifndef RDV_BEACON_H
#define RDV_BEACON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/loop.h"
#include "rendezvous/registry.h"

typedef struct beacon beacon;

#define BEACON_PEERS_MAX 16

/* addr: "host:port", "[v6]:port" or ":port" (dual-stack, IPv4 and IPv6).
 * reg may be NULL (standalone): then only nodes that sent a signed Discover are
 * verified (key bound first-write-wins) and no privacy rules apply between them.
 * NULL on failure with a message naming addr in err. */
beacon *beacon_new(pilot_loop *loop, const char *addr, registry *reg, char *err, size_t errlen);
void beacon_free(beacon *b); /* NULL-safe; closes the socket */

/* The bound UDP port (useful with port 0). */
int beacon_local_port(const beacon *b);

typedef struct beacon_stats {
	uint64_t discovers;          /* Discover messages received (incl. node 0) */
	uint64_t discover_replies;   /* DiscoverReply sent */
	uint64_t discovers_verified; /* Discovers that proved identity (IP or signature) */
	uint64_t verify_failed;      /* signed Discovers refused: bad key/sig/ts/replay */
	uint64_t punch_requests;
	uint64_t punch_commands;     /* PunchCommand messages sent (2 per granted request) */
	uint64_t punch_denied;       /* unverified, not allowed to talk, unknown target, rate */
	uint64_t relayed_packets;
	uint64_t relayed_bytes;      /* tunnel-frame bytes delivered */
	uint64_t relay_denied;       /* unverified/spoofed sender, unknown dest, privacy */
	uint64_t ignored;            /* Sync / Notify / replies sent to us */
	uint64_t notifies_sent;      /* Notify messages sent to nodes (UDP or WSS) */
	uint64_t notifies_deferred;  /* held back by the per-node gap, sent later */
	uint64_t notifies_coalesced; /* asked for while one was already deferred */
	uint64_t notifies_unreachable; /* node without a fresh verified endpoint / WSS */
	uint64_t notifies_dropped;   /* deferred list full */
	uint64_t dropped_malformed;  /* short, bad ip_len, unknown type */
	uint64_t table_full;         /* new nodes refused at the table cap */
	uint64_t send_errors;        /* datagrams the kernel refused or a full socket dropped */
	uint64_t gso_sends;          /* sends of several datagrams as one UDP GSO super-packet */
	uint64_t nodes;              /* verified endpoints in the table now */
	/* compat (WSS) bridge, rendezvous/wss.c */
	uint64_t relay_udp_wss;      /* relayed UDP sender -> WSS peer */
	uint64_t relay_wss_udp;      /* relayed WSS sender -> UDP endpoint */
	uint64_t relay_wss_wss;      /* relayed WSS sender -> WSS peer */
	uint64_t inject_spoofed;     /* WSS datagrams naming another sender: dropped */
	/* cluster (beacon_set_peers) */
	uint64_t syncs_sent, syncs_received;
	uint64_t relay_forwarded; /* Relays sent on to the peer beacon holding the destination */
	uint64_t relay_from_peer; /* Relays from a peer beacon delivered to a node here */
	uint64_t peer_refused;    /* from a peer: bad tag, malformed, destination not here */
} beacon_stats;

void beacon_get_stats(const beacon *b, beacon_stats *st);

/* Cluster (BEACON.md "Several beacons"): the other beacons, numeric "ip:port"
 * separated by commas (at most BEACON_PEERS_MAX). Every 10 s, and at once for a
 * node newly verified here, each gets a Sync listing the nodes held here; a
 * Relay for a node a peer announced in the last 30 s (and not held here) is
 * sent on to that peer, which delivers it only to a node of its own. secret
 * (NULL/"" = none): every beacon-to-beacon message carries a 16-byte keyed
 * BLAKE2b tag and one without a valid tag is refused. Messages from a peer's
 * address are only taken as peer messages. 0 or -errno with err set. */
int beacon_set_peers(beacon *b, const char *list, const char *secret, char *err, size_t errlen);

/* Notify (tunnel.md §9, type 0x0A) node, e.g. kind BEACON_NOTIFY_HANDSHAKE: a
 * relayed trust handshake waits in its registry inbox, poll now. Sent over its
 * compat (WSS) connection if it has one, else to its fresh verified UDP endpoint,
 * else not at all (the node's heartbeat poll is the fallback). At most one per
 * node per second: a Notify asked for sooner is deferred to the end of the gap
 * and further ones coalesce into it. Connect it to reg_set_inbox_cb. */
void beacon_notify(beacon *b, uint32_t node, uint8_t kind);

/* ---- compat (WSS) bridge hooks ----
 * Tier 0 of the relay (tunnel.md §9.1): before the UDP node table the beacon asks
 * the sink whether the destination has a WSS connection; if so deliver() gets the
 * RelayDeliver message `06 ‖ sender ‖ frame` (valid only during the call: copy it). */
typedef struct beacon_wss_sink {
	bool (*has)(void *ctx, uint32_t node);
	void (*deliver)(void *ctx, uint32_t node, const uint8_t *msg, size_t len);
	void *ctx;
} beacon_wss_sink;
/* sink NULL = none. The beacon keeps a copy of the struct. */
void beacon_set_wss_sink(beacon *b, const beacon_wss_sink *sink);
/* One beacon-protocol datagram from a WSS connection authenticated as node. buf
 * may be rewritten in place; everything it causes is sent before this returns.
 * The node counts as verified for relay (it owns its ID), but no UDP endpoint is
 * recorded for it: a Relay must name node as its sender (else dropped and counted
 * in inject_spoofed), a Discover only keeps the node's entry fresh (no reply: the
 * connection's UDP address is not the node's), a PunchRequest is denied (a WSS
 * node has no endpoint to punch to). */
void beacon_inject(beacon *b, uint32_t node, uint8_t *buf, size_t len);
/* The same, but what it causes is only queued (buf, rewritten in place, must stay
 * valid until then) for the caller's beacon_flush: one sendmmsg for a batch of
 * injected datagrams instead of one each. */
void beacon_inject_queued(beacon *b, uint32_t node, uint8_t *buf, size_t len);
/* Send everything queued (sendmmsg); errors are counted, never reported. */
void beacon_flush(beacon *b);

#endif
