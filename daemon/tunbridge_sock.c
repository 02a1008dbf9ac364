/* Userspace mode: sockets instead of the TUN's kernel TCP endpoints (see
 * tunbridge.h). A flow here is a tb_flow of the bridge's table with sock set and
 * ep NULL: the same key (own IP:Pilot port <-> the peer's mapped IP:port), the
 * same max_flows bound, the same listing. The pumps mirror tunbridge_tcp.c:
 *   socket -> Pilot  read only as much as conn_writable() takes, so the Pilot
 *                    send window is the backpressure (the socket is not read
 *                    while it is full; on_writable resumes);
 *   Pilot -> socket  conn_peek -> send -> conn_consume, so a client that does
 *                    not read closes the Pilot receive window.
 * FIN <-> shutdown(SHUT_WR) both ways; a reset either way is a reset the other
 * way (SO_LINGER 0 on the socket). No buffer per flow: reads go through the
 * bridge's scratch buffer. */
#include "daemon/tunbridge_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "lib/log.h"

#include <sodium.h>

#define SOCK_CHUNK  TB_PKT_CAP /* one read into the scratch buffer (txbuf) */
#define SOCK_ROUNDS 16         /* reads per event before yielding */

static const conn_cbs sock_conn_cbs;
static void on_fd(pilot_loop *l, int fd, int events, void *arg);

/* ---- the socket's registration ------------------------------------------------------ */

static void watch(tb_flow *f)
{
	int m = 0;

	if (f->fd < 0 || !f->b->loop)
		return;
	if (f->connecting)
		m = PILOT_EV_WRITE;
	else if (f->c && !f->dial_cb) { /* nothing before the dial settles: early data first */
		if (!f->c_shut && !f->rd_blocked)
			m |= PILOT_EV_READ;
		if (f->wr_blocked)
			m |= PILOT_EV_WRITE;
	}
	if (f->fd_added && m == f->fd_mask)
		return;
	if (!m) {
		if (f->fd_added)
			pilot_loop_del_fd(f->b->loop, f->fd);
		f->fd_added = false;
	} else if (pilot_loop_add_fd(f->b->loop, f->fd, m, on_fd, f) == 0) {
		f->fd_added = true;
	}
	f->fd_mask = m;
}

static void close_fd(tb_flow *f, bool reset)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (f->fd < 0)
		return;
	if (f->fd_added && f->b->loop)
		pilot_loop_del_fd(f->b->loop, f->fd);
	f->fd_added = false;
	if (reset)
		(void)setsockopt(f->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(f->fd);
	f->fd = -1;
}

static void release(tb_flow *f, bool graceful)
{
	conn *c = f->c;

	if (!c)
		return;
	f->c = NULL;
	if (graceful)
		conn_close(c);
	else
		conn_abort(c);
}

/* A dial that never became established: the front end answers the client. */
static void dial_failed(tb_flow *f, int err)
{
	tunbridge_dial_cb cb = f->dial_cb;

	if (!cb)
		return;
	f->dial_cb = NULL;
	f->b->st.sock_refused++;
	cb(f->dial_arg, err ? -err : -ECONNREFUSED, f->fd);
}

/* ---- the two pumps ------------------------------------------------------------------- */

static void sock_fail(tb_flow *f)
{
	release(f, false);
	close_fd(f, true);
}

static void pump_s2p(tb_flow *f)
{
	for (int i = 0; i < SOCK_ROUNDS && f->c && !f->c_shut && f->fd >= 0; i++) {
		size_t room = conn_writable(f->c);
		ssize_t n;

		if (!room) {
			f->rd_blocked = true;
			conn_want_writable(f->c);
			return;
		}
		n = read(f->fd, f->b->txbuf, room < SOCK_CHUNK ? room : SOCK_CHUNK);
		if (n > 0) {
			f->to_peer += conn_write(f->c, f->b->txbuf, (size_t)n); /* n <= room */
			continue;
		}
		if (n == 0) {
			f->c_shut = true;
			conn_shutdown(f->c);
		} else if (errno == EINTR) {
			continue;
		} else if (errno != EAGAIN) {
			sock_fail(f);
		}
		return;
	}
}

static void pump_p2s(tb_flow *f)
{
	const uint8_t *p;
	size_t n;

	while (f->c && !f->ep_shut && f->fd >= 0 && (n = conn_peek(f->c, &p)) > 0) {
		ssize_t w = send(f->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN) {
			sock_fail(f);
			return;
		}
		if (w > 0) {
			conn_consume(f->c, (size_t)w);
			f->from_peer += (uint64_t)w;
		}
		if (w < 0 || (size_t)w < n) {
			f->wr_blocked = true;
			return;
		}
	}
	if (f->c && !f->ep_shut && f->fd >= 0 && conn_eof(f->c)) {
		f->ep_shut = true;
		(void)shutdown(f->fd, SHUT_WR);
	}
}

/* ---- ending ----------------------------------------------------------------------------- */

/* Done when the Pilot handle is released and the socket closed. A Pilot side
 * that is gone leaves nothing for the socket to do. */
void tb_sock_check(tb_flow *f)
{
	if (f->removed)
		return;
	if (f->c && f->ep_shut && (f->c_shut || conn_state(f->c) == STREAM_CLOSED))
		release(f, true);
	if (!f->c && !f->syn_pending && !f->connecting && !f->dial_cb)
		close_fd(f, false);
	if (f->fd < 0 && !f->c && !f->syn_pending) {
		tb_flow_remove(f);
		return;
	}
	watch(f);
	tb_after(f->b);
}

void tb_sock_kill(tb_flow *f)
{
	if (f->syn_pending) {
		f->syn_pending = false;
		conn_refuse_syn(f->b->t, f->from, &f->syn);
	}
	dial_failed(f, ECONNABORTED);
	release(f, false);
	close_fd(f, true);
	tb_flow_remove(f);
}

void tb_sock_free(tb_flow *f)
{
	close_fd(f, true);
	free(f->early);
	f->early = NULL;
}

const char *tb_sock_state_name(const tb_flow *f)
{
	if (f->connecting)
		return "CONNECTING";
	if (f->dial_cb)
		return "DIALING";
	if (f->fd < 0)
		return "CLOSED";
	if (f->c_shut && f->ep_shut)
		return "CLOSING";
	return f->c_shut || f->ep_shut ? "HALF_CLOSED" : "ESTABLISHED";
}

/* ---- Pilot side callbacks ----------------------------------------------------------------- */

static void established(tb_flow *f)
{
	tunbridge_dial_cb cb = f->dial_cb;

	f->dial_cb = NULL;
	cb(f->dial_arg, 0, f->fd);
	if (f->early_len && f->c)
		conn_write(f->c, f->early, f->early_len); /* fits: a fresh send buffer */
	free(f->early);
	f->early = NULL;
	f->early_len = 0;
}

static void c_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	tb_flow *f = arg;

	(void)old;
	(void)c;
	if (now == STREAM_ESTABLISHED && f->dial_cb)
		established(f);
	if (now == STREAM_CLOSED) {
		if (f->dial_cb) {
			release(f, false);
			dial_failed(f, err);
			close_fd(f, false);
		} else if (err) {
			sock_fail(f);
		} else {
			pump_p2s(f);
			if (f->ep_shut || f->fd < 0)
				release(f, true);
		}
	} else if (now == STREAM_TIME_WAIT) {
		pump_p2s(f);
		if (f->ep_shut)
			release(f, true);
	} else {
		pump_p2s(f);
		pump_s2p(f);
	}
	tb_sock_check(f);
}

static void c_readable(void *arg, conn *c)
{
	tb_flow *f = arg;

	(void)c;
	pump_p2s(f);
	tb_sock_check(f);
}

static void c_writable(void *arg, conn *c)
{
	tb_flow *f = arg;

	(void)c;
	f->rd_blocked = false;
	pump_s2p(f);
	tb_sock_check(f);
}

static const conn_cbs sock_conn_cbs = { c_readable, c_writable, c_state };

/* ---- socket events ---------------------------------------------------------------------- */

static void inbound_connected(tb_flow *f)
{
	int err = 0, r;
	socklen_t el = sizeof(err);

	f->connecting = false;
	r = getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &el);
	f->syn_pending = false;
	if (r < 0 || err) {
		f->b->st.sock_refused++;
		conn_refuse_syn(f->b->t, f->from, &f->syn);
		close_fd(f, false);
		return;
	}
	f->c = conn_accept_syn(f->b->t, f->from, &f->syn, &sock_conn_cbs, f, &err);
	if (!f->c)
		close_fd(f, true);
}

static void on_fd(pilot_loop *l, int fd, int events, void *arg)
{
	tb_flow *f = arg;

	(void)l;
	(void)fd;
	if (f->connecting) {
		inbound_connected(f);
	} else {
		if (events & PILOT_EV_WRITE) {
			f->wr_blocked = false;
			pump_p2s(f);
		}
		if (events & (PILOT_EV_READ | PILOT_EV_ERROR))
			pump_s2p(f);
	}
	tb_sock_check(f);
	tun_flow_reap(f->b->flows, tb_flow_free, f->b); /* f may be gone from here */
}

/* ---- opening -------------------------------------------------------------------------------- */

static int flow_key(tunbridge *b, pilot_addr peer, uint16_t own_port, uint16_t peer_port, tun_flow_key *k)
{
	tun_ipaddr pip;
	uint32_t ip4;
	int r = tun_addrmap_get(b->cfg.map, peer, &ip4);

	if (r < 0)
		return r;
	tun_ipaddr_v4(&pip, ip4);
	tun_flow_key_make(k, TUN_IPPROTO_TCP, &b->own4, own_port, &pip, peer_port);
	return 0;
}

static tb_flow *sock_flow(tunbridge *b, const tun_flow_key *k, pilot_addr peer, int fd)
{
	tb_flow *f = tb_flow_new(b, k, peer);

	if (!f)
		return NULL;
	f->sock = true;
	f->fd = fd;
	return f;
}

int tunbridge_sock_dial(tunbridge *b, int fd, pilot_addr peer, uint16_t port, const void *early,
			size_t early_len, tunbridge_dial_cb cb, void *arg)
{
	tun_flow_key k;
	conn_info ci;
	tb_flow *f;
	int err, r;

	if ((r = flow_key(b, peer, 0, port, &k)) < 0)
		return r;
	if (!(f = sock_flow(b, &k, peer, fd)))
		return -EAGAIN;
	if (early_len && !(f->early = malloc(early_len))) {
		free(f);
		return -ENOMEM;
	}
	if (early_len)
		memcpy(f->early, early, early_len);
	f->early_len = early_len;
	f->dial_cb = cb;
	f->dial_arg = arg;
	f->pport = port;
	if (!(f->c = conn_dial(b->t, peer, port, &sock_conn_cbs, f, &err))) {
		free(f->early);
		free(f);
		return err;
	}
	conn_get_info(f->c, &ci);
	f->key.sport = ci.local_port;
	if (tun_flow_insert(b->flows, &f->key, f) < 0) {
		conn_abort(f->c);
		free(f->early);
		free(f);
		return -EEXIST;
	}
	b->st.sock_outbound++;
	return 0;
}

static const tb_expose *find_expose(const tunbridge *b, uint16_t port)
{
	for (size_t i = 0; i < TB_MAX_EXPOSE; i++)
		if (b->expose[i].port == port)
			return &b->expose[i];
	return NULL;
}

static int connect_target(const tb_expose *e, bool *in_progress)
{
	int fd = socket(e->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

	*in_progress = false;
	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&e->target, e->target_len) == 0)
		return fd;
	if (errno == EINPROGRESS) {
		*in_progress = true;
		return fd;
	}
	close(fd);
	return -ECONNREFUSED;
}

/* Inbound: a Pilot SYN (admitted by trust) to a port without a conn listener. */
void tb_sock_syn(tunbridge *b, uint32_t from, const proto_hdr *syn)
{
	const tb_expose *e = find_expose(b, syn->dst_port);
	tun_flow_key k;
	bool pending;
	tb_flow *f;
	int fd;

	if (!e) {
		b->st.sock_no_expose++;
		conn_refuse_syn(b->t, from, syn);
		return;
	}
	if (flow_key(b, syn->src, syn->dst_port, syn->src_port, &k) < 0) {
		b->st.no_peer++;
		conn_refuse_syn(b->t, from, syn);
		return;
	}
	if (tun_flow_lookup(b->flows, &k))
		return; /* a retransmitted SYN while we connect (or an old incarnation) */
	if ((fd = connect_target(e, &pending)) < 0) {
		b->st.sock_refused++;
		conn_refuse_syn(b->t, from, syn);
		return;
	}
	if (!(f = sock_flow(b, &k, syn->src, fd)) || tun_flow_insert(b->flows, &k, f) < 0) {
		free(f);
		close(fd);
		conn_refuse_syn(b->t, from, syn);
		return;
	}
	f->inbound = f->syn_pending = f->connecting = true;
	f->from = from;
	f->syn = *syn;
	f->pport = syn->dst_port;
	b->st.sock_inbound++;
	if (!pending || !b->loop)
		inbound_connected(f);
	tb_sock_check(f);
}

/* ---- exposes and addresses ---------------------------------------------------------------- */

int tunbridge_expose(tunbridge *b, uint16_t port, const struct sockaddr *target, unsigned len)
{
	tb_expose *slot = NULL;

	if (!port || !target || len > sizeof(slot->target) ||
	    (target->sa_family != AF_INET && target->sa_family != AF_INET6))
		return -EINVAL;
	if (find_expose(b, port))
		return -EEXIST;
	for (size_t i = 0; i < TB_MAX_EXPOSE && !slot; i++)
		if (!b->expose[i].port)
			slot = &b->expose[i];
	if (!slot)
		return -ENOSPC;
	memcpy(&slot->target, target, len);
	slot->target_len = len;
	slot->port = port;
	return 0;
}

int tunbridge_unexpose(tunbridge *b, uint16_t port)
{
	tb_expose *e = port ? (tb_expose *)find_expose(b, port) : NULL;

	if (!e)
		return -ENOENT;
	e->port = 0;
	return 0;
}

int tunbridge_peer_of_ip(const tunbridge *b, int family, const uint8_t *ip, pilot_addr *out)
{
	tun_ipaddr a;

	if (family == 4)
		tun_ipaddr_v4(&a,
			      (uint32_t)ip[0] << 24 | (uint32_t)ip[1] << 16 | (uint32_t)ip[2] << 8 | ip[3]);
	else
		tun_ipaddr_v6(&a, ip);
	return tb_peer_of(b, &a, out);
}

/* ---- UDP relay ports -------------------------------------------------------------------------- */

int tunbridge_udp_bind(tunbridge *b, conn_dgram_cb cb, void *arg, uint16_t *port)
{
	for (int i = 0; i < 64; i++) {
		uint16_t p = (uint16_t)(49152 + randombytes_uniform(16384));
		if (conn_dgram_bind(b->t, p, cb, arg) == 0) {
			*port = p;
			return 0;
		}
	}
	return -EADDRINUSE;
}

void tunbridge_udp_unbind(tunbridge *b, uint16_t port)
{
	(void)conn_dgram_unbind(b->t, port);
}

int tunbridge_udp_send(tunbridge *b, uint16_t sport, pilot_addr dst, uint16_t dport, const void *data,
		       size_t len)
{
	int r = conn_dgram_send_from(b->t, sport, dst, dport, data, len);

	if (r < 0)
		b->st.udp_errors++;
	else
		b->st.udp_out++;
	return r;
}

int tunbridge_ip_of(tunbridge *b, pilot_addr a, uint32_t *ip4)
{
	return tun_addrmap_get(b->cfg.map, a, ip4);
}
