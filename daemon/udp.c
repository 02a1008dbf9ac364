/* The UDP tunnel transport: one non-blocking socket on the pilot_loop, recvmmsg into
 * a fixed pool of buffers allocated once, sendmmsg batches from a bounded queue.
 * When the socket is full the batch is kept and EPOLLOUT awaited; beyond the queue's
 * bound new datagrams are dropped and counted.
 *
 * UDP GSO: consecutive queued datagrams to one destination that lie back to back in
 * the arena, all of one size but the last (which may be shorter), go out as one
 * sendmmsg entry with a UDP_SEGMENT cmsg; the kernel cuts it into the same
 * datagrams, one route lookup and one skb for up to GSO_SEGS of them. A kernel or
 * device that refuses it (EINVAL, EIO, ENOPROTOOPT, EOPNOTSUPP) turns GSO off for the
 * socket and the batch is resent one datagram per entry; after any other error the
 * refused group is resent one datagram per entry and GSO stays on.
 *
 * UDP GRO on receive: with UDP_GRO set, one recvmmsg entry may hold a run of
 * datagrams of one source that the kernel kept together (a GSO super-packet that
 * crossed a veth whole, or a NIC's GRO), with a UDP_GRO cmsg giving the segment
 * size; the run is cut into datagrams here, back to back in the slot, without a
 * copy. Only the first datagram of a run has headroom in front; each has
 * cap == len. A kernel without UDP_GRO delivers datagrams one per entry. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PILOT_UDP_INTERNAL
#include "daemon/transport.h"
#include "lib/log.h"
#include "lib/loop.h"

#define RX_N        64
#define RX_SLOT     (TRANSPORT_HEADROOM + TRANSPORT_MAX_DGRAM + 64)
#define RX_ROUNDS   16                /* recvmmsg calls per wake-up (fairness) */
#define TX_N        256
#define TX_ARENA    (2u << 20)
#define SOCK_BUF    (8 << 20)
#define GSO_SEGS    64                /* UDP_MAX_SEGMENTS of older kernels */
#define GSO_BYTES   65000u            /* under the 65507-byte UDP payload limit */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define RX_DG_N (RX_N * 16) /* datagrams handed over per callback, at most */

typedef struct udp {
	transport base;
	pilot_loop *loop;
	int fd, family;
	bool in_recv, waiting_out;
	uint64_t flush_timer;
	uint8_t *rxmem;
	struct mmsghdr rxmsg[RX_N];
	struct iovec rxiov[RX_N];
	struct sockaddr_storage rxaddr[RX_N];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} rxctl[RX_N];
	bool gro;
	transport_dgram rxdg[RX_DG_N];
	uint8_t *arena;
	size_t arena_used, tx_head, tx_count;
	struct mmsghdr txmsg[TX_N];
	struct iovec txiov[TX_N];
	struct sockaddr_storage txaddr[TX_N];
	/* GSO groups of the queue, rebuilt per flush (gn[i] datagrams in group i) */
	bool gso_off;
	struct mmsghdr gmsg[TX_N];
	struct iovec giov[TX_N];
	uint16_t gn[TX_N];
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} gctl[TX_N];
	transport_stats st;
} udp;

static void udp_flush(transport *t);

static void set_buf(int fd, int force_opt, int opt)
{
	int v = SOCK_BUF;

	if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v)) == 0)
		return;
	(void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v)); /* best effort */
}

/* A destination in the socket's family: IPv4 on a dual-stack socket becomes
 * IPv4-mapped IPv6. false if it cannot be reached from this socket. */
static bool dest_addr(const udp *u, const transport_ep *ep, struct sockaddr_storage *out,
		      socklen_t *len)
{
	if (ep->ss.ss_family == u->family) {
		memcpy(out, &ep->ss, ep->len);
		*len = ep->len;
		return true;
	}
	if (u->family == AF_INET6 && ep->ss.ss_family == AF_INET) {
		const struct sockaddr_in *v4 = (const void *)&ep->ss;
		struct sockaddr_in6 v6 = { .sin6_family = AF_INET6, .sin6_port = v4->sin_port };
		v6.sin6_addr.s6_addr[10] = 0xff;
		v6.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&v6.sin6_addr.s6_addr[12], &v4->sin_addr, 4);
		memcpy(out, &v6, sizeof(v6));
		*len = sizeof(v6);
		return true;
	}
	if (u->family == AF_INET && ep->ss.ss_family == AF_INET6) {
		transport_ep c = *ep;
		transport_ep_canon(&c);
		if (c.ss.ss_family != AF_INET)
			return false;
		memcpy(out, &c.ss, c.len);
		*len = c.len;
		return true;
	}
	return false;
}

static int64_t flush_timer_cb(pilot_loop *l, uint64_t id, void *arg)
{
	udp *u = arg;

	u->flush_timer = 0;
	udp_flush(&u->base);
	return 0;
}

static void schedule_flush(udp *u)
{
	if (u->in_recv || u->flush_timer || u->waiting_out)
		return;
	u->flush_timer = pilot_loop_add_timer(u->loop, 0, flush_timer_cb, u);
}

static bool queue_one(udp *u, const transport_dgram *d)
{
	size_t i = u->tx_count;
	socklen_t alen;

	if (d->len > TRANSPORT_MAX_DGRAM || !dest_addr(u, &d->ep, &u->txaddr[i], &alen)) {
		u->st.tx_errors++;
		return true; /* unsendable: counted, not a queue-full condition */
	}
	memcpy(u->arena + u->arena_used, d->data, d->len);
	u->txiov[i] = (struct iovec){ u->arena + u->arena_used, d->len };
	u->txmsg[i] = (struct mmsghdr){ .msg_hdr = {
		.msg_name = &u->txaddr[i], .msg_namelen = alen,
		.msg_iov = &u->txiov[i], .msg_iovlen = 1 } };
	u->arena_used += d->len;
	u->tx_count++;
	return true;
}

static bool has_room(const udp *u, size_t len)
{
	return u->tx_count < TX_N && u->arena_used + len <= TX_ARENA;
}

static size_t udp_send(transport *t, const transport_dgram *dg, size_t n)
{
	udp *u = (udp *)t;
	size_t i;

	for (i = 0; i < n; i++) {
		if (!has_room(u, dg[i].len) && !u->waiting_out)
			udp_flush(t);
		if (!has_room(u, dg[i].len)) {
			u->st.tx_dropped += n - i;
			break;
		}
		queue_one(u, &dg[i]);
	}
	if (u->tx_count)
		schedule_flush(u);
	return i;
}

static void tx_reset(udp *u)
{
	u->tx_head = u->tx_count = u->arena_used = 0;
	if (u->waiting_out) {
		u->waiting_out = false;
		pilot_loop_mod_fd(u->loop, u->fd, PILOT_EV_READ);
	}
}

static bool same_dest(const struct msghdr *a, const struct msghdr *b)
{
	return a->msg_namelen == b->msg_namelen && !memcmp(a->msg_name, b->msg_name, a->msg_namelen);
}

/* Group the queue from tx_head; returns the number of groups. */
static unsigned gso_build(udp *u)
{
	unsigned g = 0;
	size_t i = u->tx_head;

	while (i < u->tx_count) {
		const struct iovec *first = &u->txiov[i];
		size_t seg = first->iov_len, total = seg, j = i + 1;
		uint8_t *end = (uint8_t *)first->iov_base + seg;

		while (j < u->tx_count && j - i < GSO_SEGS && u->txiov[j].iov_base == end &&
		       u->txiov[j].iov_len <= seg && total + u->txiov[j].iov_len <= GSO_BYTES &&
		       same_dest(&u->txmsg[i].msg_hdr, &u->txmsg[j].msg_hdr)) {
			total += u->txiov[j].iov_len;
			end += u->txiov[j].iov_len;
			if (u->txiov[j++].iov_len < seg)
				break; /* a shorter datagram ends a group */
		}
		u->giov[g] = (struct iovec){ first->iov_base, total };
		u->gmsg[g] = (struct mmsghdr){ .msg_hdr = {
			.msg_name = u->txmsg[i].msg_hdr.msg_name,
			.msg_namelen = u->txmsg[i].msg_hdr.msg_namelen,
			.msg_iov = &u->giov[g], .msg_iovlen = 1 } };
		if (j - i > 1) {
			struct msghdr *m = &u->gmsg[g].msg_hdr;
			struct cmsghdr *cm;
			uint16_t sz = (uint16_t)seg;

			m->msg_control = u->gctl[g].buf;
			m->msg_controllen = sizeof(u->gctl[g].buf);
			cm = CMSG_FIRSTHDR(m);
			cm->cmsg_level = SOL_UDP;
			cm->cmsg_type = UDP_SEGMENT;
			cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
			memcpy(CMSG_DATA(cm), &sz, sizeof(sz));
		}
		u->gn[g++] = (uint16_t)(j - i);
		i = j;
	}
	return g;
}

static void tx_counted(udp *u, size_t n)
{
	for (size_t i = 0; i < n; i++)
		u->st.tx_bytes += u->txiov[u->tx_head + i].iov_len;
	u->st.tx_dgrams += (uint64_t)n;
	u->tx_head += n;
}

static void wait_out(udp *u)
{
	u->st.tx_eagain++;
	if (!u->waiting_out) {
		u->waiting_out = true;
		pilot_loop_mod_fd(u->loop, u->fd, PILOT_EV_READ | PILOT_EV_WRITE);
	}
}

/* One datagram per entry for entries [tx_head, end): each gets its own verdict
 * (a refused one is counted and skipped). false = the socket is full: wait. */
static bool send_plain(udp *u, size_t end)
{
	while (u->tx_head < end) {
		int r = sendmmsg(u->fd, u->txmsg + u->tx_head, (unsigned)(end - u->tx_head), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
			wait_out(u);
			return false;
		}
		if (r < 0) { /* this datagram was refused (EMSGSIZE, unreachable...): skip it */
			u->st.tx_errors++;
			u->tx_head++;
			continue;
		}
		tx_counted(u, (size_t)r);
	}
	return true;
}

/* Errors that mean this kernel, socket or device cannot send UDP GSO: EIO (no
 * checksum offload on the device), ENOPROTOOPT / EOPNOTSUPP (UDP_SEGMENT not
 * known), EINVAL (the cmsg not understood, or a segment the path cannot carry).
 * Anything else (EACCES, EPERM from a firewall, unreachable, EMSGSIZE) is about
 * the destination and would refuse its datagrams one by one just the same. */
static bool gso_unsupported(int err)
{
	return err == EIO || err == EINVAL || err == ENOPROTOOPT || err == EOPNOTSUPP;
}

/* The GSO path; false = fall back to one datagram per entry for what is left. */
static bool flush_gso(udp *u)
{
	while (u->tx_head < u->tx_count) {
		unsigned g = gso_build(u), k = 0;
		int r = sendmmsg(u->fd, u->gmsg, g, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
			wait_out(u);
			return true;
		}
		if (r < 0 && u->gn[0] > 1 && gso_unsupported(errno)) {
			log_info("udp: GSO refused (%s): one datagram per send from now on", strerror(errno));
			u->gso_off = true;
			return false;
		}
		if (r < 0 && u->gn[0] > 1) {
			/* Refused for its destination or by a filter (EPERM, unreachable...):
			 * not a verdict on GSO. Its datagrams go one by one, each with its
			 * own verdict, as they would without GSO; GSO stays on. */
			if (!send_plain(u, u->tx_head + u->gn[0]))
				return true;
			continue;
		}
		if (r < 0) { /* this datagram was refused (EMSGSIZE, unreachable...): skip it */
			u->st.tx_errors++;
			u->tx_head++;
			continue;
		}
		for (int i = 0; i < r; i++)
			k += u->gn[i];
		tx_counted(u, k);
	}
	tx_reset(u);
	return true;
}

static void udp_flush(transport *t)
{
	udp *u = (udp *)t;

	if (!u->gso_off && flush_gso(u))
		return;
	if (send_plain(u, u->tx_count))
		tx_reset(u);
}

static void rx_arm(udp *u)
{
	for (size_t i = 0; i < RX_N; i++) {
		u->rxiov[i] = (struct iovec){ u->rxmem + i * RX_SLOT + TRANSPORT_HEADROOM, TRANSPORT_MAX_DGRAM };
		u->rxmsg[i] = (struct mmsghdr){ .msg_hdr = {
			.msg_name = &u->rxaddr[i], .msg_namelen = sizeof(u->rxaddr[i]),
			.msg_iov = &u->rxiov[i], .msg_iovlen = 1 } };
		if (u->gro) {
			u->rxmsg[i].msg_hdr.msg_control = u->rxctl[i].buf;
			u->rxmsg[i].msg_hdr.msg_controllen = sizeof(u->rxctl[i].buf);
		}
	}
}

int udp_gro_seg_size(const struct msghdr *mh)
{
	const uint8_t *ctl = mh->msg_control;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR((struct msghdr *)mh, c)) {
		size_t off = (size_t)((const uint8_t *)c - ctl);
		int v;

		if (c->cmsg_level != SOL_UDP || c->cmsg_type != UDP_GRO)
			continue;
		if (c->cmsg_len < CMSG_LEN(sizeof(int)) || off + CMSG_LEN(sizeof(int)) > mh->msg_controllen)
			return 0;
		memcpy(&v, CMSG_DATA(c), sizeof(v));
		return v > 0 && v <= TRANSPORT_MAX_DGRAM ? v : 0;
	}
	return 0;
}

static void rx_deliver(udp *u, size_t *nd)
{
	if (*nd && u->base.on_recv)
		u->base.on_recv(u->base.ctx, u->rxdg, *nd);
	*nd = 0;
}

static int rx_round(udp *u)
{
	size_t nd = 0;
	int n;

	rx_arm(u);
	n = recvmmsg(u->fd, u->rxmsg, RX_N, 0, NULL);
	if (n <= 0) {
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			u->st.rx_errors++;
		return n < 0 && errno == EINTR ? 1 : 0;
	}
	for (int i = 0; i < n; i++) {
		const struct msghdr *mh = &u->rxmsg[i].msg_hdr;
		uint8_t *p = u->rxiov[i].iov_base;
		size_t len = u->rxmsg[i].msg_len, seg = u->gro ? (size_t)udp_gro_seg_size(mh) : 0;
		transport_ep ep;

		memcpy(&ep.ss, &u->rxaddr[i], sizeof(ep.ss));
		ep.len = mh->msg_namelen;
		transport_ep_canon(&ep);
		u->st.rx_bytes += len;
		if (mh->msg_flags & MSG_TRUNC)
			u->st.rx_errors++; /* cannot happen (the slot holds 64 KiB); whole segments go on */
		if (!seg || seg >= len) {
			seg = len;
		} else {
			u->st.rx_gro_runs++;
		}
		do {
			transport_dgram *d = &u->rxdg[nd];
			size_t k = len < seg ? len : seg;

			d->data = p;
			d->len = k;
			d->cap = seg == len && p == u->rxiov[i].iov_base ? RX_SLOT - TRANSPORT_HEADROOM : k;
			d->ep = ep;
			u->st.rx_dgrams++;
			p += k;
			len -= k;
			if (++nd == RX_DG_N)
				rx_deliver(u, &nd);
		} while (len);
	}
	rx_deliver(u, &nd);
	return n == RX_N;
}

static void udp_io(pilot_loop *l, int fd, int events, void *arg)
{
	udp *u = arg;

	if (events & PILOT_EV_WRITE)
		udp_flush(&u->base);
	if (!(events & PILOT_EV_READ))
		return;
	u->in_recv = true;
	for (int i = 0; i < RX_ROUNDS && rx_round(u) > 0; i++)
		;
	u->in_recv = false;
	if (!u->waiting_out)
		udp_flush(&u->base);
}

static int udp_local_ep(transport *t, transport_ep *ep)
{
	udp *u = (udp *)t;

	ep->len = sizeof(ep->ss);
	if (getsockname(u->fd, (struct sockaddr *)&ep->ss, &ep->len) < 0)
		return -errno;
	transport_ep_canon(ep);
	return 0;
}

static void udp_stats(transport *t, transport_stats *st)
{
	*st = ((udp *)t)->st;
}

static void udp_close(transport *t)
{
	udp *u = (udp *)t;

	if (!u)
		return;
	if (u->flush_timer)
		pilot_loop_del_timer(u->loop, u->flush_timer);
	if (u->fd >= 0) {
		pilot_loop_del_fd(u->loop, u->fd);
		close(u->fd);
	}
	free(u->rxmem);
	free(u->arena);
	free(u);
}

static const struct transport_ops udp_ops = {
	.send = udp_send, .flush = udp_flush, .local_ep = udp_local_ep,
	.stats = udp_stats, .close = udp_close,
};

/* ":port" → dual-stack [::]:port (IPv4 fallback when IPv6 is unavailable). */
static int open_socket(const char *addr, int *family)
{
	transport_ep ep;
	int fd, off = 0;
	char buf[80];

	if (addr[0] == ':') {
		snprintf(buf, sizeof(buf), "[::]%s", addr);
		if (transport_ep_parse(buf, &ep) < 0)
			return -EINVAL;
		fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd >= 0)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
		if (fd < 0) {
			snprintf(buf, sizeof(buf), "0.0.0.0%s", addr);
			if (transport_ep_parse(buf, &ep) < 0)
				return -EINVAL;
		}
	} else {
		if (transport_ep_parse(addr, &ep) < 0)
			return -EINVAL;
		fd = -1;
	}
	if (fd < 0)
		fd = socket(ep.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&ep.ss, ep.len) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	*family = ep.ss.ss_family;
	return fd;
}

transport *udp_transport_new(pilot_loop *loop, const char *addr, transport_recv_cb cb,
			     void *ctx, char *err, size_t errlen)
{
	udp *u = calloc(1, sizeof(*u));
	int fd;

	if (u)
		u->fd = -1;
	if (!u || !(u->rxmem = malloc((size_t)RX_N * RX_SLOT)) || !(u->arena = malloc(TX_ARENA))) {
		snprintf(err, errlen, "udp %s: out of memory", addr);
		goto fail;
	}
	fd = open_socket(addr, &u->family);
	if (fd < 0) {
		snprintf(err, errlen, "udp %s: %s", addr, fd == -EINVAL ?
			 "not a numeric host:port or :port" : strerror(-fd));
		goto fail;
	}
	u->fd = fd;
	set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF);
	set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF);
	{
		int one = 1;

		u->gro = setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
	}
	u->loop = loop;
	u->base = (transport){ .ops = &udp_ops, .on_recv = cb, .ctx = ctx };
	int rc = pilot_loop_add_fd(loop, fd, PILOT_EV_READ, udp_io, u);
	if (rc < 0) {
		snprintf(err, errlen, "udp %s: epoll: %s", addr, strerror(-rc));
		goto fail;
	}
	return &u->base;
fail:
	if (u && u->fd >= 0)
		close(u->fd);
	if (u) {
		free(u->rxmem);
		free(u->arena);
	}
	free(u);
	return NULL;
}

void udp_transport_no_gso(transport *t)
{
	((udp *)t)->gso_off = true;
}

void udp_transport_no_gro(transport *t)
{
	udp *u = (udp *)t;
	int zero = 0;

	if (u->gro)
		(void)setsockopt(u->fd, SOL_UDP, UDP_GRO, &zero, sizeof(zero));
	u->gro = false;
}

bool udp_transport_gso_on(const transport *t)
{
	return !((const udp *)t)->gso_off;
}
