/* Bridged TCP: one kernel TCP connection (tcpep) spliced to one Pilot stream (conn).
 *
 * Backpressure: data moves only as far as the next side takes it. Kernel -> Pilot:
 * tcpep_peek -> conn_write -> tcpep_consume, and the window we advertise to the
 * kernel is capped at the Pilot send space minus what we already hold; Pilot ->
 * kernel: conn_peek -> tcpep_write -> conn_consume, so an unread Pilot receive
 * buffer closes the Pilot window. Both pumps move everything that fits before
 * returning (big chunks when both sides are fast) and resume on the other side's
 * writable callback.
 *
 * Life: a flow ends when the kernel side is CLOSED and the Pilot handle is
 * released (conn_close once both directions finished, conn_abort on any reset).
 * Removal is deferred: the flow table keeps the record until tun_flow_reap after
 * the current dispatch. */
#include "daemon/tunbridge_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

static const conn_cbs flow_conn_cbs;
static const tcpep_cbs flow_ep_cbs;

/* ---- the two pumps ------------------------------------------------------------------ */

static void pump_k2p(tb_flow *f)
{
	uint64_t now = tb_now(f->b);
	const uint8_t *p;
	size_t n, w, room, held;

	if (!f->c || f->c_shut)
		return;
	while ((n = tcpep_peek(f->ep, &p)) > 0) {
		w = conn_write(f->c, p, n);
		if (!w)
			break;
		tcpep_consume(f->ep, w, now);
		f->to_peer += w;
		if (w < n)
			break;
	}
	if (tcpep_eof(f->ep)) {
		f->c_shut = true;
		conn_shutdown(f->c);
		return;
	}
	/* The window is the Pilot send space plus TB_K2P_SLACK, minus what we hold: the
	 * slack (bounded by the endpoint's receive ring) makes sure the kernel can
	 * always send enough for the next conn_write to come up short, which is what
	 * arms on_writable. Without it a small room (an ACK freed a few segments, the
	 * held bytes fit) left the window below the silly-window threshold with no
	 * callback pending, and the kernel waited for its persist timer (200 ms+). */
	room = conn_writable(f->c) + TB_K2P_SLACK;
	held = tcpep_readable(f->ep);
	/* A window this small may not make the kernel send (sender-side silly window
	 * avoidance: it waits for its persist timer, backed off to tens of seconds
	 * after a long stall), and with every conn_write complete no on_writable
	 * would come to widen it: ask for one when the Pilot side frees room. */
	if (room < held + 2 * (size_t)f->b->tp.mtu)
		conn_want_writable(f->c);
	tcpep_set_rcv_space(f->ep, room > held ? room - held : 0, now);
}

static void pump_p2k(tb_flow *f)
{
	uint64_t now = tb_now(f->b);
	const uint8_t *p;
	size_t n, w;

	if (!f->c || f->ep_shut)
		return;
	while ((n = conn_peek(f->c, &p)) > 0) {
		w = tcpep_write(f->ep, p, n, now);
		if (!w)
			break;
		conn_consume(f->c, w);
		f->from_peer += w;
		if (w < n)
			break;
	}
	if (conn_eof(f->c)) {
		f->ep_shut = true;
		tcpep_shutdown(f->ep, now);
	}
}

/* ---- ending --------------------------------------------------------------------------- */

static void release_conn(tb_flow *f, bool graceful)
{
	conn *c = f->c;

	if (!c)
		return;
	f->c = NULL; /* first: the calls below may come back through callbacks */
	if (graceful)
		conn_close(c);
	else
		conn_abort(c);
}

/* Remove once both sides are done. */
void tb_flow_check(tb_flow *f)
{
	enum tcpep_state s;

	if (f->sock) {
		tb_sock_check(f);
		return;
	}
	s = tcpep_state(f->ep);
	if (!f->c && !f->syn_pending && s == TCPEP_CLOSED)
		tb_flow_remove(f);
	else
		tb_flow_sched(f);
}

/* Bridge teardown: RST both ways. */
void tb_flow_kill(tb_flow *f)
{
	uint64_t now = tb_now(f->b);

	if (f->sock) {
		tb_sock_kill(f);
		return;
	}
	if (f->syn_pending) {
		f->syn_pending = false;
		conn_refuse_syn(f->b->t, f->from, &f->syn);
	}
	release_conn(f, false);
	if (tcpep_state(f->ep) == TCPEP_SYN_HELD)
		tcpep_refuse(f->ep, now);
	else if (tcpep_state(f->ep) != TCPEP_CLOSED)
		tcpep_abort(f->ep, now);
	tb_flow_remove(f);
}

void tb_flow_free(void *val, void *arg)
{
	tb_flow *f = val;

	(void)arg;
	tb_p2k_unqueue(f);
	release_conn(f, false);
	if (f->sock)
		tb_sock_free(f);
	else
		tcpep_free(f->ep);
	free(f);
}

/* ---- Pilot side callbacks ------------------------------------------------------------ */

static void conn_closed(tb_flow *f, int err)
{
	uint64_t now = tb_now(f->b);
	enum tcpep_state s = tcpep_state(f->ep);

	if (err)
		log_debug("tun: flow ended by the Pilot side port=%u dir=%s err=%s kernel_state=%s to_peer=%llu from_peer=%llu",
			  f->pport, f->inbound ? "in" : "out", strerror(err), tcpep_state_name(s),
			  (unsigned long long)f->to_peer, (unsigned long long)f->from_peer);
	release_conn(f, true); /* a dead conn still needs its handle released */
	if (s == TCPEP_SYN_HELD) {
		f->b->st.tcp_refused++;
		tcpep_refuse(f->ep, now);
	} else if (err && s != TCPEP_CLOSED) {
		tcpep_abort(f->ep, now);
	} else if (!f->ep_shut) {
		f->ep_shut = true;
		tcpep_shutdown(f->ep, now);
	}
}

static void c_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	tb_flow *f = arg;

	(void)old;
	if (!f->c)
		f->c = c;
	if (now == STREAM_ESTABLISHED && tcpep_state(f->ep) == TCPEP_SYN_HELD)
		tcpep_accept(f->ep, tb_now(f->b));
	if (now == STREAM_CLOSED) {
		conn_closed(f, err);
	} else if (now == STREAM_TIME_WAIT) {
		pump_p2k(f); /* both directions over: pass the EOF on, let go */
		release_conn(f, true);
	} else {
		pump_p2k(f);
		pump_k2p(f);
	}
	tb_flow_check(f);
}

void tb_p2k_unqueue(tb_flow *f)
{
	if (!f->p2k_queued)
		return;
	if (f->p2k_prev)
		f->p2k_prev->p2k_next = f->p2k_next;
	else
		f->b->p2k_head = f->p2k_next;
	if (f->p2k_next)
		f->p2k_next->p2k_prev = f->p2k_prev;
	f->p2k_next = f->p2k_prev = NULL;
	f->p2k_queued = false;
}

/* Pump every flow whose Pilot data was deferred (from the bridge's timer, which the
 * loop runs after the fd events of the iteration). */
void tb_p2k_flush(tunbridge *b)
{
	tb_flow *f;

	while ((f = b->p2k_head)) {
		tb_p2k_unqueue(f);
		pump_p2k(f);
		tb_flow_check(f);
	}
}

static void c_readable(void *arg, conn *c)
{
	tb_flow *f = arg;

	(void)c;
	if (!f->b->loop) { /* no loop to come back on (the fuzzer): at once */
		pump_p2k(f);
		tb_flow_check(f);
		return;
	}
	if (!f->p2k_queued && !f->removed) {
		f->p2k_queued = true;
		f->p2k_prev = NULL;
		f->p2k_next = f->b->p2k_head;
		if (f->p2k_next)
			f->p2k_next->p2k_prev = f;
		f->b->p2k_head = f;
	}
	tb_after(f->b);
}

static void c_writable(void *arg, conn *c)
{
	tb_flow *f = arg;

	(void)c;
	pump_k2p(f);
	tb_flow_check(f);
}

static const conn_cbs flow_conn_cbs = { c_readable, c_writable, c_state };

/* ---- kernel side callbacks ---------------------------------------------------------- */

static void ep_emit(void *ctx, const uint8_t *pkt, size_t len)
{
	tb_flow *f = ctx;

	tb_out(f->b, pkt, len);
}

static void ep_emit_gso(void *ctx, const uint8_t *pkt, size_t len, uint16_t gso_size)
{
	tb_flow *f = ctx;

	tb_out_gso(f->b, pkt, len, gso_size);
}

static void ep_readable(void *ctx, tcpep *ep)
{
	(void)ep;
	pump_k2p(ctx);
}

static void ep_writable(void *ctx, tcpep *ep)
{
	(void)ep;
	pump_p2k(ctx);
}

/* Inbound: the kernel took the connection, now the Pilot side gets its SYN-ACK. */
static void inbound_established(tb_flow *f)
{
	int err;

	f->syn_pending = false;
	f->c = conn_accept_syn(f->b->t, f->from, &f->syn, &flow_conn_cbs, f, &err);
	if (!f->c)
		tcpep_abort(f->ep, tb_now(f->b));
}

static void ep_closed(tb_flow *f, int err)
{
	if (err)
		log_debug("tun: flow ended by the kernel side port=%u dir=%s err=%s pending_syn=%d to_peer=%llu from_peer=%llu",
			  f->pport, f->inbound ? "in" : "out", strerror(err), (int)f->syn_pending,
			  (unsigned long long)f->to_peer, (unsigned long long)f->from_peer);
	if (f->syn_pending) {
		f->syn_pending = false;
		if (err == ECONNREFUSED) { /* no kernel listener: the dialer hears RST */
			f->b->st.tcp_inbound_refused++;
			conn_refuse_syn(f->b->t, f->from, &f->syn);
		}
		return;
	}
	release_conn(f, err == 0);
}

static void ep_state(void *ctx, tcpep *ep, enum tcpep_state old, enum tcpep_state now, int err)
{
	tb_flow *f = ctx;

	(void)ep;
	(void)old;
	if (now == TCPEP_ESTABLISHED && f->syn_pending)
		inbound_established(f);
	else if (now == TCPEP_CLOSED)
		ep_closed(f, err);
	/* tb_flow_check runs after the call that caused this (input / timer) */
}

static const tcpep_cbs flow_ep_cbs = { ep_emit, ep_readable, ep_writable, ep_state, ep_emit_gso };

/* ---- opening ----------------------------------------------------------------------------- */

tb_flow *tb_flow_new(tunbridge *b, const tun_flow_key *k, pilot_addr peer)
{
	tb_flow *f;

	if (tun_flow_count(b->flows) + tun_flow_pending(b->flows) >= b->cfg.max_flows) {
		b->st.tcp_flow_limit++;
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->b = b;
	f->key = *k;
	f->peer = peer;
	pilot_heap_node_init(&f->hn);
	return f;
}

static int flow_insert(tb_flow *f)
{
	if (tun_flow_insert(f->b->flows, &f->key, f) < 0) {
		tcpep_free(f->ep);
		free(f);
		return -1;
	}
	return 0;
}

static void send_rst(tunbridge *b, const tun_ip *ip, const tun_tcp *tcp)
{
	int n = tcpep_reset_reply(ip, tcp, b->txbuf, TB_PKT_CAP);

	if (n > 0)
		tb_out(b, b->txbuf, (size_t)n);
}

/* Outbound: the kernel's SYN is held until the Pilot dial settles. */
static void open_outbound(tunbridge *b, const tun_ip *ip, const tun_tcp *tcp, const tun_flow_key *k)
{
	uint64_t now = tb_now(b);
	pilot_addr peer;
	tb_flow *f;
	int err;

	if (tb_peer_of(b, &ip->dst, &peer) < 0) {
		b->st.no_peer++;
		b->st.tcp_refused++;
		send_rst(b, ip, tcp);
		return;
	}
	f = tb_flow_new(b, k, peer);
	if (f)
		f->ep = tcpep_from_syn(&b->tp, ip, tcp, &flow_ep_cbs, f, now);
	if (!f || !f->ep) {
		free(f);
		b->st.tcp_refused++;
		send_rst(b, ip, tcp);
		return;
	}
	f->pport = tcp->dport;
	if (flow_insert(f) < 0)
		return;
	b->st.tcp_outbound++;
	f->c = conn_dial(b->t, peer, tcp->dport, &flow_conn_cbs, f, &err);
	if (!f->c) {
		b->st.tcp_refused++;
		tcpep_refuse(f->ep, now);
	}
	tb_flow_check(f);
}

void tb_tcp_input(tunbridge *b, const tun_ip *ip)
{
	tun_flow_key k;
	tun_tcp tcp;
	tb_flow *f;
	int r = tun_tcp_parse(ip->l4, ip->l4_len, &tcp);

	if (r < 0) {
		b->st.malformed[r >= -TUN_IP_NERR ? -r : 0]++;
		return;
	}
	tun_flow_key_make(&k, TUN_IPPROTO_TCP, &ip->src, tcp.sport, &ip->dst, tcp.dport);
	f = tun_flow_lookup(b->flows, &k);
	if (f) {
		tcpep_input(f->ep, ip, &tcp, tb_now(b));
		tb_flow_check(f);
		return;
	}
	if ((tcp.flags & (TUN_TCP_SYN | TUN_TCP_ACK | TUN_TCP_RST | TUN_TCP_FIN)) == TUN_TCP_SYN) {
		open_outbound(b, ip, &tcp, &k);
		return;
	}
	b->st.tcp_stray++;
	send_rst(b, ip, &tcp);
}

/* Inbound: a Pilot SYN to a port without a conn listener. The kernel is asked
 * first (our SYN from the peer's mapped IP); the Pilot SYN-ACK or RST follows its
 * answer. A retransmitted Pilot SYN for a pending flow is ignored. */
static tb_flow *inbound_lookup(tunbridge *b, const tun_flow_key *k, bool *busy)
{
	tb_flow *f = tun_flow_lookup(b->flows, k);

	*busy = false;
	if (!f)
		return NULL;
	if (f->syn_pending || f->c || tcpep_state(f->ep) != TCPEP_TIME_WAIT) {
		*busy = true;
		return f;
	}
	tcpep_abort(f->ep, tb_now(b)); /* an old incarnation in TIME_WAIT: replaced */
	tb_flow_remove(f);
	return NULL;
}

void tb_tcp_syn_cb(void *arg, uint32_t from, const proto_hdr *syn)
{
	tunbridge *b = arg;
	tun_ipaddr peer_ip;
	tun_flow_key k;
	uint32_t ip4;
	tb_flow *f;
	bool busy;

	if (b->cfg.userspace) {
		tb_sock_syn(b, from, syn);
		return;
	}
	if (tun_addrmap_get(b->cfg.map, syn->src, &ip4) < 0) {
		b->st.no_peer++;
		conn_refuse_syn(b->t, from, syn);
		return;
	}
	tun_ipaddr_v4(&peer_ip, ip4);
	tun_flow_key_make(&k, TUN_IPPROTO_TCP, &b->own4, syn->dst_port, &peer_ip, syn->src_port);
	inbound_lookup(b, &k, &busy);
	if (busy)
		return;
	f = tb_flow_new(b, &k, syn->src);
	if (!f) {
		conn_refuse_syn(b->t, from, syn);
		return;
	}
	f->inbound = f->syn_pending = true;
	f->from = from;
	f->syn = *syn;
	f->pport = syn->dst_port;
	f->ep = tcpep_connect(&b->tp, &peer_ip, syn->src_port, &b->own4, syn->dst_port, &flow_ep_cbs,
			      f, tb_now(b));
	if (!f->ep) {
		free(f);
		conn_refuse_syn(b->t, from, syn);
		return;
	}
	if (flow_insert(f) < 0) {
		conn_refuse_syn(b->t, from, syn);
		return;
	}
	b->st.tcp_inbound++;
	tb_flow_check(f);
}
