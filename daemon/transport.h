/* Tunnel transports: what carries tunnel frames and beacon messages between this
 * daemon and the world. UDP (udp.c) is one; the compat WebSocket transport is
 * another, so nothing above this interface may assume UDP: endpoints are opaque
 * `struct sockaddr_storage` + length (compat uses a synthetic endpoint).
 *
 * Receive: the transport hands batches of datagrams to one callback. Each datagram
 * sits in a transport-owned buffer with TRANSPORT_HEADROOM writable bytes in front
 * of data and `cap - len` writable bytes after it, valid only during the callback,
 * so a receiver may decrypt in place or strip a header by moving the pointer.
 *
 * Send: transport_send queues copies of the datagrams (the caller's buffers are
 * free again on return) and the transport flushes them in batches: when its queue
 * is full, at the end of a receive batch, from a zero-delay loop timer, or when
 * the owner calls transport_flush (e.g. from the loop's before-sleep hook). */
#ifndef PILOT_TRANSPORT_H
#define PILOT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define TRANSPORT_HEADROOM 64
#define TRANSPORT_MAX_DGRAM 65536

typedef struct transport_ep {
	struct sockaddr_storage ss;
	socklen_t len;
} transport_ep;

typedef struct transport_dgram {
	uint8_t *data;
	size_t len;
	size_t cap;        /* writable bytes from data (receive only) */
	transport_ep ep;   /* source (receive) or destination (send) */
} transport_dgram;

typedef struct transport transport;

typedef void (*transport_recv_cb)(void *ctx, transport_dgram *dg, size_t n);

typedef struct transport_stats {
	uint64_t rx_dgrams, rx_bytes, tx_dgrams, tx_bytes;
	uint64_t tx_dropped;   /* queue bound reached while the socket was full */
	uint64_t tx_errors;    /* datagrams the kernel refused (other than EAGAIN) */
	uint64_t rx_errors;
	uint64_t tx_eagain;    /* times the socket was full and we waited for EPOLLOUT */
	uint64_t rx_gro_runs;  /* receive entries that held a run of datagrams (UDP GRO) */
} transport_stats;

struct transport_ops {
	/* Queue n datagrams (data/len/ep used). Returns how many were queued
	 * (< n when the bounded queue is full: the rest are dropped and counted). */
	size_t (*send)(transport *t, const transport_dgram *dg, size_t n);
	void (*flush)(transport *t);
	int (*local_ep)(transport *t, transport_ep *ep);
	void (*stats)(transport *t, transport_stats *st);
	void (*close)(transport *t); /* frees t */
	/* Optional (NULL = false): the transport reaches peers only through the beacon
	 * relay (compat WSS). The node must then pre-mark every peer as relay before
	 * dialling, wrap tunnel frames in Relay to the beacon endpoint, and register
	 * with relay_only=true (tunnel.md §10, §11.4). */
	bool (*relay_only)(transport *t);
};

struct transport {
	const struct transport_ops *ops;
	transport_recv_cb on_recv;
	void *ctx;
};

static inline size_t transport_send(transport *t, const transport_dgram *dg, size_t n)
{
	return t->ops->send(t, dg, n);
}
static inline void transport_flush(transport *t) { t->ops->flush(t); }
static inline int transport_local_ep(transport *t, transport_ep *ep) { return t->ops->local_ep(t, ep); }
static inline void transport_get_stats(transport *t, transport_stats *st) { t->ops->stats(t, st); }
static inline bool transport_is_relay_only(transport *t)
{
	return t->ops->relay_only && t->ops->relay_only(t);
}
/* NULL-safe. */
static inline void transport_close(transport *t)
{
	if (t)
		t->ops->close(t);
}
/* (Re)point the receive callback, e.g. once the peer table exists. */
static inline void transport_set_recv(transport *t, transport_recv_cb cb, void *ctx)
{
	t->on_recv = cb;
	t->ctx = ctx;
}

/* ---- endpoint helpers ---- */
/* "host:port", "[v6]:port" (numeric only). 0 or -EINVAL. */
int transport_ep_parse(const char *s, transport_ep *ep);
/* "1.2.3.4:5" / "[::1]:5"; always NUL-terminates. */
#define TRANSPORT_EP_STRLEN 64
char *transport_ep_format(const transport_ep *ep, char out[TRANSPORT_EP_STRLEN]);
/* Same family, address and port (IPv4-mapped IPv6 equals its IPv4 form). */
bool transport_ep_eq(const transport_ep *a, const transport_ep *b);
/* Rewrite an IPv4-mapped IPv6 endpoint as plain IPv4 (canonical form). */
void transport_ep_canon(transport_ep *ep);
/* The kernel's MTU towards ep (a connected UDP socket's IP_MTU / IPV6_MTU: the
 * route or interface MTU, lowered by any path MTU learned from ICMP; IPv4-mapped
 * IPv6 counts as IPv4); *ipv6 says which IP header applies. MTU > 0 or -errno.
 * A few syscalls: cache the answer. stream/pmtu.h turns it into a segment size. */
int transport_route_mtu(const transport_ep *ep, bool *ipv6);

/* ---- UDP (udp.c) ---- */
struct pilot_loop;
/* addr: "host:port", "[v6]:port" or ":port" (dual-stack). NULL on failure with a
 * message naming addr in err. */
transport *udp_transport_new(struct pilot_loop *loop, const char *addr,
			     transport_recv_cb cb, void *ctx, char *err, size_t errlen);
/* -udp-gso=false: one datagram per send from now on (GSO is on by default and
 * turns itself off where the kernel refuses it). */
void udp_transport_no_gso(transport *t);
/* One datagram per receive entry from now on (UDP GRO is on where the kernel has it). */
void udp_transport_no_gro(transport *t);
#ifdef PILOT_UDP_INTERNAL
/* The segment size of a UDP_GRO cmsg in mh (a received run of datagrams of that
 * size, the last one shorter), or 0 when there is none or it is malformed. */
int udp_gro_seg_size(const struct msghdr *mh);
/* Tests: whether the socket still sends with UDP GSO. */
bool udp_transport_gso_on(const transport *t);
#endif

#endif
