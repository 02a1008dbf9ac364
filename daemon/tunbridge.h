/* The TUN bridge: the kernel's TCP/UDP/ICMP flows to mapped IPs (10.4.0.0/16 and
 * the ULA prefix, tun/ADDRESSING.md) become Pilot streams / datagrams / echoes on
 * the node's conn table, and inbound Pilot connections and datagrams arrive at
 * ordinary sockets on the node's own TUN address (DESIGN.md §3).
 *
 *   outbound TCP  kernel SYN to IP:P  -> tcpep holds it, conn_dial(peer, P);
 *                 Pilot ESTABLISHED -> SYN-ACK; Pilot RST / dial failure /
 *                 unmapped IP -> TCP RST (ECONNREFUSED at once)
 *   inbound TCP   Pilot SYN to a port without a conn listener (conn_listen_default)
 *                 -> SYN from the peer's mapped IP:sport to own IP:P; kernel SYN-ACK
 *                 -> conn_accept_syn; kernel RST -> conn_refuse_syn (ECONNREFUSED)
 *   data          spliced both ways with backpressure: the kernel's advertised
 *                 window is capped by the Pilot send space; Pilot data is consumed
 *                 only as the kernel's window takes it. FIN <-> FIN (half-close),
 *                 RST <-> RST, Pilot timeouts -> RST to the kernel.
 *   UDP           stateless both ways: the kernel's source port is the Pilot
 *                 source port (conn_dgram_send_from), so replies find the socket;
 *                 every admitted Pilot datagram (conn_dgram_observe) becomes a UDP
 *                 packet peerIP:sport -> ownIP:dport.
 *   ICMP echo     conn_ping(peer) -> echo reply with id/seq/payload when the pong
 *                 arrives (the real RTT); a lost ping stays unanswered.
 *   unmapped IP   TCP: RST; UDP: ICMP port unreachable (ECONNREFUSED on a
 *                 connected socket); ICMP echo: ICMP host unreachable.
 *   DNS           tun/dns on own IP:53 (and the own ULA when known).
 *
 * One event loop, no threads; nothing allocated per packet (one tcpep + one flow
 * record per TCP connection, bounded by max_flows). Packets to the TUN are
 * written as they are produced (a TUN write is synchronous in the kernel); a
 * packet the kernel cannot take now (EAGAIN) is dropped and counted, TCP
 * retransmits it. */
#ifndef PILOT_TUNBRIDGE_H
#define PILOT_TUNBRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stream/conn.h"
#include "lib/addr.h"
#include "lib/loop.h"
#include "tun/addrmap.h"
#include "tun/dev.h"
#include "tun/dns.h"
#include "tun/ip.h"

typedef struct tunbridge tunbridge;
struct json_object;
struct sockaddr;

typedef struct tunbridge_config {
	tun_dev *dev;            /* opened by the node (not owned); NULL = no device:
	                          * packets go to sink (tests, fuzzers) */
	void (*sink)(void *ctx, const uint8_t *pkt, size_t len); /* when dev is NULL */
	void *sink_ctx;
	tun_addrmap *map;        /* required (not owned); own IPv4 = tun_addrmap_own_ip */
	pilot_addr own;          /* own Pilot address (0 = not yet: tunbridge_set_own) */
	/* Kernel-facing TCP endpoints: 0 = defaults (mtu from dev or 65535, sndbuf and
	 * rcvbuf 1 MiB, time_wait 1 s). The Pilot side uses the conn table's stream
	 * params: the node should bound them too (sndbuf/rcvbuf 1 MiB). */
	uint32_t mtu;
	uint32_t sndbuf, rcvbuf;
	uint32_t max_flows;      /* TCP connections bridged at once (0 = 4096) */
	uint32_t max_pings;      /* ICMP echoes in flight (0 = 64) */
	/* DNS: when dns_resolve is set (or dns_enable), tun/dns listens on own IP:53
	 * with this hostname resolver (the registry's resolve_hostname); the node
	 * answers with tun_dns_resolve_done(tunbridge_dns(b), token, ...). Address
	 * names (0-0000-0000-0002.pilot) are decoded locally. */
	bool dns_enable;
	tun_dns_resolve_fn dns_resolve;
	void *dns_ctx;
	uint16_t dns_port;       /* 0 = 53 (tests may pick another) */
	/* A UDP datagram to a network's broadcast address (the ULA
	 * fd50:494c:4f54:NNNN::ffff:ffff = NNNN:NNNN.FFFF.FFFF): the node fans it
	 * out (daemon/broadcast.h). NULL = dropped (counted in udp_errors).
	 * Returns 0 or -errno (counted). */
	int (*broadcast)(void *ctx, uint16_t net, uint16_t sport, uint16_t dport, const uint8_t *data,
			 size_t len);
	void *broadcast_ctx;
	/* µs monotonic clock; NULL = pilot_now_us (fuzzers pass a fake one). */
	uint64_t (*clock)(void *ctx);
	void *clock_ctx;
	/* Userspace mode (pilotd -tun=userspace, tunbridge_sock.c): no device and no
	 * packets; the front ends hand sockets to tunbridge_sock_dial and inbound
	 * Pilot SYNs reach the ports published with tunbridge_expose. */
	bool userspace;
} tunbridge_config;

typedef struct tunbridge_stats {
	uint64_t pkts_in, bytes_in;          /* read from the TUN */
	uint64_t pkts_out, bytes_out;        /* written to the TUN */
	uint64_t tx_dropped;                 /* TUN write EAGAIN / error */
	uint64_t gso_out;                    /* TCP super-packets the kernel cut (vnet_hdr) */
	uint64_t malformed[TUN_IP_NERR + 1]; /* by -TUN_IP_E* code (index 1..NERR) */
	uint64_t not_ours;                   /* source not own IP / dest not mapped range */
	uint64_t unsupported;                /* other protocols, ICMP types */
	uint64_t no_peer;                    /* unmapped destination IP */
	uint64_t tcp_refused;                /* RST for a kernel SYN */
	uint64_t tcp_outbound, tcp_inbound;  /* flows opened */
	uint64_t tcp_inbound_refused;        /* kernel RST to an inbound SYN */
	uint64_t tcp_flow_limit;             /* max_flows reached */
	uint64_t tcp_stray;                  /* segments for no flow (RST answered) */
	uint64_t tcp_stale_resets;           /* kernel conns on a flow's 4-tuple reset (ended flows) */
	uint64_t udp_out, udp_in, udp_errors;
	uint64_t udp_broadcast; /* datagrams to a broadcast address, fanned out */
	uint64_t echo_out, echo_replies, echo_timeouts, echo_limit;
	uint64_t icmp_unreach_sent;
	uint64_t sock_outbound, sock_inbound; /* userspace flows opened */
	uint64_t sock_refused;                /* dial failed / exposed target refused */
	uint64_t sock_no_expose;              /* inbound SYN to a port nobody exposes */
	uint64_t flows_active;
} tunbridge_stats;

/* Create the bridge on conn table t (not owned): registers the TUN fd on l,
 * conn_listen_default and conn_dgram_observe on t, and the DNS responder.
 * NULL with err filled. */
tunbridge *tunbridge_new(pilot_loop *l, conn_table *t, const tunbridge_config *cfg, char *err,
			 size_t errlen);
/* RST every bridged connection (both sides), cancel pings, unregister. NULL-safe. */
void tunbridge_free(tunbridge *b);

/* The own Pilot address once registered (ULA source/destination, DNS AAAA). */
void tunbridge_set_own(tunbridge *b, pilot_addr own);
/* The DNS responder (NULL when disabled), for tun_dns_resolve_done. */
tun_dns *tunbridge_dns(tunbridge *b);

void tunbridge_get_stats(const tunbridge *b, tunbridge_stats *st);
/* pilotctl: {"flows":[{"dir","proto","kernel","peer","port","state","pilot_state",
 * "bytes_to_peer","bytes_from_peer"}...],"stats":{...}} as a json-c object (the
 * caller puts it). */
struct json_object *tunbridge_flows_json(const tunbridge *b);

/* ---- userspace mode (tunbridge_sock.c) -----------------------------------------------
 * A socket front end (SOCKS5, HTTP proxy, port forward) feeds the same flow
 * table as the TUN: each connection is a flow keyed like a kernel one (own IP,
 * Pilot port, the peer's mapped IP, its port), counted against max_flows and
 * listed by tunbridge_flows_json; the socket is spliced to the Pilot stream
 * with the same backpressure (data moves only as the other side takes it). */

/* The dial settled: err 0 = established (the front end writes its success reply
 * to fd now; the bridge then splices it), else -ECONNREFUSED / -ETIMEDOUT /
 * -ECONNRESET / ... (the front end writes its error reply; the bridge closes fd
 * after the call). Called once, never from inside tunbridge_sock_dial. */
typedef void (*tunbridge_dial_cb)(void *arg, int err, int fd);

/* Hand a connected, non-blocking socket over (fd is the bridge's from a 0
 * return: the caller must have removed it from the loop) and dial peer:port.
 * early (copied) is written to the Pilot stream once established: bytes the
 * front end read past its request. 0, or -EAGAIN (max_flows), -ENOSPC (the
 * address map is full), conn_dial's errors; then fd stays the caller's. */
int tunbridge_sock_dial(tunbridge *b, int fd, pilot_addr peer, uint16_t port, const void *early,
			size_t early_len, tunbridge_dial_cb cb, void *arg);

/* Publish a local TCP server on a Pilot port: a Pilot SYN to port (trust rules
 * applied by the conn table before) makes the bridge connect to target; the
 * dialer gets its SYN-ACK once that connect succeeded, RST when it failed. 0,
 * -EEXIST, -ENOSPC (TB_MAX_EXPOSE), -EINVAL. */
#define TB_MAX_EXPOSE 64
int tunbridge_expose(tunbridge *b, uint16_t port, const struct sockaddr *target, unsigned len);
int tunbridge_unexpose(tunbridge *b, uint16_t port); /* 0 or -ENOENT */

/* UDP for the SOCKS5 UDP ASSOCIATE relay: a fresh Pilot datagram port bound to
 * cb (*port), datagrams sent from it, and the mapped IPv4 (host order) of a
 * peer for the reply header. 0 or -errno. */
int tunbridge_udp_bind(tunbridge *b, conn_dgram_cb cb, void *arg, uint16_t *port);
void tunbridge_udp_unbind(tunbridge *b, uint16_t port);
int tunbridge_udp_send(tunbridge *b, uint16_t sport, pilot_addr dst, uint16_t dport, const void *data,
		       size_t len);
int tunbridge_ip_of(tunbridge *b, pilot_addr a, uint32_t *ip4);

/* The Pilot address behind a mapped IPv4 (host order) or a Pilot ULA: 0 or -ENOENT. */
int tunbridge_peer_of_ip(const tunbridge *b, int family, const uint8_t *ip, pilot_addr *out);

#endif
