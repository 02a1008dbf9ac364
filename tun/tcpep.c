/* Userspace TCP endpoint facing the kernel through the TUN device (see tcpep.h).
 *
 * Sequence numbers are kept as 64-bit offsets from the initial sequence numbers
 * (ours: iss, the kernel's: irs): offset 0 is the SYN, data byte d is at 1 + d, our
 * FIN at fin_off = 1 + all data written. 32-bit wire values are unwrapped relative
 * to snd_una / rcv_nxt, so wrap-around needs no special cases. */
#include "tun/tcpep.h"
#include "lib/rtt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT64_MAX
#define MIN_MSS 64u

/* A byte ring allocated once. */
typedef struct bring {
	uint8_t *buf;
	size_t cap, head, len;
} bring;

struct tcpep {
	tcpep_params p;
	tcpep_cbs cbs;
	void *ctx;
	enum tcpep_state state;
	tun_ipaddr laddr, raddr;
	uint16_t lport, rport;
	uint16_t ip_id;

	/* send side (toward the kernel) */
	uint32_t iss;
	uint64_t snd_una, snd_nxt, snd_max;
	uint64_t snd_base;           /* data bytes acknowledged (ring front) */
	bring snd;
	uint64_t snd_wnd;            /* bytes */
	uint32_t snd_wl1, snd_wl2;
	bool fin_queued;
	uint64_t fin_off;
	uint32_t snd_mss;
	uint8_t snd_wscale, rcv_wscale; /* shifts in use (0 when not negotiated) */
	bool ws_ok;                  /* both SYNs carry window scale */
	uint8_t ws_offer;

	/* receive side (from the kernel) */
	uint32_t irs;
	uint64_t rcv_nxt, rcv_adv;   /* rcv_adv: right edge we advertised */
	bring rcv;
	size_t rcv_space;            /* cap set by the bridge */
	bool fin_rcvd;
	uint32_t rcv_mss;
	uint32_t segs_unacked;
	bool ack_now;

	/* timers and recovery */
	uint64_t rtx_deadline, delack_deadline, tw_deadline;
	rtt_est rtt;              /* lib/rtt.h, G = 1 ms, no backoff jitter */
	bool rtt_active;
	uint64_t rtt_seq, rtt_ts;
	uint32_t retries;
	uint32_t dupacks;
	bool in_recovery;
	uint64_t recover;

	bool pend_rd, pend_wr;
	tcpep_stats st;
	uint8_t *scratch;
	size_t scratch_cap;
	uint32_t gso_mss; /* payload of one GSO data segment (params.gso) */
};

/* A segment without payload: IPv6 header + TCP header with every option we send. */
#define TCPEP_CTL_PKT (TUN_IP6_HDR + TUN_TCP_HDR + TUN_TCP_MAX_OPTS)

static const char *const state_names[] = {
	"CLOSED", "SYN_HELD", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "FIN_WAIT_1",
	"FIN_WAIT_2", "CLOSING", "TIME_WAIT", "CLOSE_WAIT", "LAST_ACK",
};

const char *tcpep_state_name(enum tcpep_state s)
{
	if ((unsigned)s >= sizeof(state_names) / sizeof(state_names[0]))
		return "?";
	return state_names[s];
}

void tcpep_params_default(tcpep_params *p)
{
	memset(p, 0, sizeof(*p));
	p->mtu = 65535;
	p->sndbuf = 4u << 20;
	p->rcvbuf = 4u << 20;
	p->wscale = 7;
	p->rto_init_us = 1000000;
	p->rto_min_us = 200000;
	p->rto_max_us = 30000000;
	p->max_rexmit = 8;
	p->delack_us = 1000;
	p->time_wait_us = 1000000;
	p->ttl = 64;
}

/* ---- ring ---- */

/* Storage is allocated on the first append (an idle flow holds none: 10,000 idle
 * flows would otherwise keep 20,000 buffer mappings and a resident page each). */
static void bring_init(bring *r, size_t cap)
{
	r->buf = NULL;
	r->cap = cap;
	r->head = r->len = 0;
}

static size_t bring_append(bring *r, const uint8_t *p, size_t n)
{
	size_t tail, first;

	if (!n)
		return 0;
	if (!r->buf && !(r->buf = malloc(r->cap)))
		return 0; /* out of memory: nothing taken (backpressure, retransmission) */
	if (n > r->cap - r->len)
		n = r->cap - r->len;
	tail = (r->head + r->len) % r->cap;
	first = n < r->cap - tail ? n : r->cap - tail;
	memcpy(r->buf + tail, p, first);
	memcpy(r->buf, p + first, n - first);
	r->len += n;
	return n;
}

/* Copy n bytes starting off bytes after the front. */
static void bring_copy(const bring *r, size_t off, uint8_t *dst, size_t n)
{
	size_t pos = (r->head + off) % r->cap;
	size_t first = n < r->cap - pos ? n : r->cap - pos;

	memcpy(dst, r->buf + pos, first);
	memcpy(dst + first, r->buf, n - first);
}

static size_t bring_peek(const bring *r, const uint8_t **p)
{
	size_t n = r->cap - r->head;

	if (!r->len) {
		*p = r->buf;
		return 0;
	}
	*p = r->buf + r->head;
	return r->len < n ? r->len : n;
}

static void bring_consume(bring *r, size_t n)
{
	r->head = (r->head + n) % r->cap;
	r->len -= n;
	if (r->len == 0)
		r->head = 0;
}

/* ---- helpers ---- */

static uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static uint64_t max64(uint64_t a, uint64_t b) { return a > b ? a : b; }

static bool synchronized(enum tcpep_state s)
{
	return s >= TCPEP_ESTABLISHED;
}

static uint64_t data_end(const tcpep *ep)
{
	return 1 + ep->snd_base + ep->snd.len;
}

static bool fin_sent(const tcpep *ep)
{
	return ep->fin_queued && ep->snd_max > ep->fin_off;
}

static bool has_unsent(const tcpep *ep)
{
	return ep->snd_nxt < data_end(ep) || (ep->fin_queued && ep->snd_nxt <= ep->fin_off);
}

/* Unwrap a 32-bit value against a 64-bit reference whose low bits are base32. */
static int64_t unwrap(uint64_t ref, uint32_t ref32, uint32_t v)
{
	return (int64_t)ref + (int32_t)(v - ref32);
}

static void set_state(tcpep *ep, enum tcpep_state s, int err, uint64_t now)
{
	enum tcpep_state old = ep->state;

	if (old == s)
		return;
	ep->state = s;
	if (s == TCPEP_CLOSED || s == TCPEP_TIME_WAIT)
		ep->rtx_deadline = ep->delack_deadline = NONE;
	if (s == TCPEP_TIME_WAIT)
		ep->tw_deadline = now + ep->p.time_wait_us;
	if (s == TCPEP_CLOSED)
		ep->tw_deadline = NONE;
	if (ep->cbs.on_state)
		ep->cbs.on_state(ep->ctx, ep, old, s, err);
}

static void notify(tcpep *ep)
{
	if (ep->pend_rd) {
		ep->pend_rd = false;
		if (ep->cbs.on_readable)
			ep->cbs.on_readable(ep->ctx, ep);
	}
	if (ep->pend_wr) {
		ep->pend_wr = false;
		if (ep->cbs.on_writable)
			ep->cbs.on_writable(ep->ctx, ep);
	}
}

/* ---- window ---- */

/* Bytes we may advertise now: ring room capped by rcv_space; never retracts the
 * right edge already advertised (that edge always lies within the ring's room). */
static uint64_t rcv_wnd_now(const tcpep *ep)
{
	uint64_t room = ep->rcv.cap - ep->rcv.len;
	uint64_t w = min64(room, ep->rcv_space);

	if (ep->rcv_nxt + w < ep->rcv_adv)
		w = ep->rcv_adv - ep->rcv_nxt;
	return w;
}

static uint16_t wnd_field(tcpep *ep, bool syn)
{
	uint64_t w = rcv_wnd_now(ep);
	uint8_t sh = syn ? 0 : ep->rcv_wscale;
	uint64_t f = min64(w >> sh, 65535);

	ep->rcv_adv = max64(ep->rcv_adv, ep->rcv_nxt + (f << sh));
	return (uint16_t)f;
}

/* ---- output ---- */

static void emit_seg(tcpep *ep, uint64_t o, size_t len, uint8_t flags)
{
	tun_ip_build ib = { .src = ep->laddr, .dst = ep->raddr, .ttl = ep->p.ttl, .id = ep->ip_id++ };
	tun_tcp_build tb = { .sport = ep->lport, .dport = ep->rport, .seq = ep->iss + (uint32_t)o,
			     .flags = flags, .wscale = -1 };
	uint8_t hdr[TCPEP_CTL_PKT];
	uint8_t *out = hdr;
	size_t at, cap = sizeof(hdr);
	bool gso = len && ep->p.gso && ep->cbs.emit_gso;
	int n;

	ib.csum_partial = gso;
	if (len) { /* the packet buffer, allocated with the first data segment */
		if (!ep->scratch && !(ep->scratch = malloc(ep->scratch_cap)))
			return; /* out of memory: as if lost, the timer resends */
		out = ep->scratch;
		cap = ep->scratch_cap;
	}
	if (flags & TUN_TCP_ACK)
		tb.ack = ep->irs + (uint32_t)ep->rcv_nxt;
	if (flags & TUN_TCP_SYN) {
		tb.mss = (uint16_t)ep->rcv_mss;
		if (ep->state == TCPEP_SYN_SENT || ep->ws_ok)
			tb.wscale = (int8_t)ep->ws_offer;
	}
	tb.window = (flags & TUN_TCP_RST) ? 0 : wnd_field(ep, flags & TUN_TCP_SYN);
	at = tun_ip_hdr_size(&ep->laddr) + tun_tcp_hdr_size(&tb);
	if (len)
		bring_copy(&ep->snd, (size_t)(o - 1 - ep->snd_base), out + at, len);
	n = tun_tcp_build_pkt(&ib, &tb, NULL, len, out, cap);
	if (n <= 0)
		return; /* cannot happen: mss fits the scratch buffer, headers fit hdr */
	ep->st.segs_sent++;
	if (flags & TUN_TCP_ACK) {
		ep->ack_now = false;
		ep->delack_deadline = NONE;
		ep->segs_unacked = 0;
	}
	if (gso)
		ep->cbs.emit_gso(ep->ctx, out, (size_t)n, len > ep->snd_mss ? (uint16_t)ep->snd_mss : 0);
	else
		ep->cbs.emit(ep->ctx, out, (size_t)n);
}

/* Payload bytes one data segment may carry: the kernel's MSS, or with GSO as much
 * as one IP packet holds (the kernel cuts it at the MSS). */
static uint64_t seg_max(const tcpep *ep)
{
	return ep->p.gso && ep->cbs.emit_gso ? ep->gso_mss : ep->snd_mss;
}

static void arm_rtx(tcpep *ep, uint64_t now)
{
	bool outstanding = ep->snd_max > ep->snd_una;
	bool probing = synchronized(ep->state) && !outstanding && ep->snd_wnd == 0 && has_unsent(ep);

	if (ep->state == TCPEP_CLOSED || ep->state == TCPEP_SYN_HELD || ep->state == TCPEP_TIME_WAIT ||
	    (!outstanding && !probing))
		ep->rtx_deadline = NONE;
	else if (ep->rtx_deadline == NONE)
		ep->rtx_deadline = now + ep->rtt.rto;
}

/* One segment starting at snd_nxt, or false when nothing may go. */
static bool send_one(tcpep *ep, uint64_t now)
{
	uint64_t end = data_end(ep), edge = ep->snd_una + ep->snd_wnd;
	uint64_t len = 0;
	uint8_t flags = TUN_TCP_ACK;
	bool fin;

	if (ep->snd_nxt < end && ep->snd_nxt < edge) {
		len = min64(min64(seg_max(ep), end - ep->snd_nxt), edge - ep->snd_nxt);
		if (ep->snd_nxt + len == end)
			flags |= TUN_TCP_PSH;
	}
	/* A FIN at the window's edge is accepted by Linux (and RFC 793 allows it). */
	fin = ep->fin_queued && ep->snd_nxt + len == ep->fin_off;
	if (!len && !fin)
		return false;
	if (fin)
		flags |= TUN_TCP_FIN;
	if (ep->snd_nxt < ep->snd_max) {
		ep->st.retransmits++;
	} else {
		ep->st.bytes_sent += len;
		if (!ep->rtt_active) {
			ep->rtt_active = true;
			ep->rtt_seq = ep->snd_nxt + len + fin;
			ep->rtt_ts = now;
		}
	}
	emit_seg(ep, ep->snd_nxt, (size_t)len, flags);
	ep->snd_nxt += len + fin;
	ep->snd_max = max64(ep->snd_max, ep->snd_nxt);
	return true;
}

static void output(tcpep *ep, uint64_t now)
{
	if (ep->state == TCPEP_SYN_SENT || ep->state == TCPEP_SYN_RCVD) {
		if (ep->snd_nxt == 0) {
			if (ep->snd_max > 0)
				ep->st.retransmits++;
			else
				ep->rtt_active = true, ep->rtt_seq = 1, ep->rtt_ts = now;
			emit_seg(ep, 0, 0, ep->state == TCPEP_SYN_SENT ? TUN_TCP_SYN
								       : TUN_TCP_SYN | TUN_TCP_ACK);
			ep->snd_nxt = 1;
			ep->snd_max = 1;
		}
	} else if (synchronized(ep->state)) {
		while (send_one(ep, now))
			;
		if (ep->ack_now)
			emit_seg(ep, ep->snd_nxt, 0, TUN_TCP_ACK);
	}
	arm_rtx(ep, now);
}

/* ---- creation ---- */

static uint32_t derive_iss(uint64_t now_us, uint16_t a, uint16_t b)
{
	uint64_t x = now_us ^ ((uint64_t)a << 32 | (uint64_t)b << 48);

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return (uint32_t)x;
}

static tcpep *ep_new(const tcpep_params *pp, const tun_ipaddr *local, uint16_t lport,
		     const tun_ipaddr *remote, uint16_t rport, const tcpep_cbs *cbs, void *ctx,
		     uint64_t now)
{
	tcpep_params p;
	tcpep *ep;
	uint32_t hdrs;

	if (pp)
		p = *pp;
	else
		tcpep_params_default(&p);
	if (!cbs || !cbs->emit || local->family != remote->family || p.sndbuf == 0 || p.rcvbuf == 0)
		return NULL;
	if (p.mtu < 1280)
		p.mtu = 1280;
	if (p.mtu > 65535)
		p.mtu = 65535;
	if (p.rto_min_us == 0)
		p.rto_min_us = 1000;
	if (p.rto_max_us < p.rto_min_us)
		p.rto_max_us = p.rto_min_us;
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return NULL;
	/* scratch and rings: allocated on first use */
	ep->scratch_cap = p.gso && cbs->emit_gso ? TUN_IP_MAX_PACKET : p.mtu;
	bring_init(&ep->snd, p.sndbuf);
	bring_init(&ep->rcv, p.rcvbuf);
	ep->p = p;
	ep->cbs = *cbs;
	ep->ctx = ctx;
	ep->laddr = *local;
	ep->raddr = *remote;
	ep->lport = lport;
	ep->rport = rport;
	ep->iss = p.iss ? p.iss : derive_iss(now, lport, rport);
	hdrs = local->family == 6 ? TUN_IP6_HDR + TUN_TCP_HDR : TUN_IP4_HDR + TUN_TCP_HDR;
	ep->rcv_mss = p.mtu - hdrs;
	ep->snd_mss = ep->rcv_mss;
	ep->gso_mss = TUN_IP_MAX_PACKET - hdrs;
	ep->ws_offer = p.wscale > 14 ? 14 : p.wscale;
	while (ep->ws_offer < 14 && ((uint64_t)p.rcvbuf >> ep->ws_offer) > 65535)
		ep->ws_offer++;
	ep->rcv_space = SIZE_MAX;
	rtt_init(&ep->rtt, p.rto_init_us, p.rto_min_us, p.rto_max_us, 1000);
	ep->rtx_deadline = ep->delack_deadline = ep->tw_deadline = NONE;
	return ep;
}

static void peer_syn_opts(tcpep *ep, const tun_tcp *t)
{
	uint32_t mss = t->has_mss ? t->mss : (ep->laddr.family == 6 ? 1220 : 536);

	if (mss < MIN_MSS)
		mss = MIN_MSS;
	ep->snd_mss = mss < ep->snd_mss ? mss : ep->snd_mss;
	ep->ws_ok = t->has_wscale;
	if (ep->ws_ok) {
		ep->snd_wscale = t->wscale > 14 ? 14 : t->wscale;
		ep->rcv_wscale = ep->ws_offer;
	}
}

tcpep *tcpep_from_syn(const tcpep_params *p, const tun_ip *ip, const tun_tcp *syn,
		      const tcpep_cbs *cbs, void *ctx, uint64_t now_us)
{
	tcpep *ep;

	if ((syn->flags & (TUN_TCP_SYN | TUN_TCP_ACK | TUN_TCP_RST | TUN_TCP_FIN)) != TUN_TCP_SYN)
		return NULL;
	ep = ep_new(p, &ip->dst, syn->dport, &ip->src, syn->sport, cbs, ctx, now_us);
	if (!ep)
		return NULL;
	ep->irs = syn->seq;
	ep->rcv_nxt = 1;
	ep->rcv_adv = 1;
	peer_syn_opts(ep, syn);
	ep->snd_wnd = syn->window;
	ep->snd_wl1 = syn->seq;
	ep->state = TCPEP_SYN_HELD;
	ep->st.segs_rcvd = 1;
	return ep;
}

int tcpep_accept(tcpep *ep, uint64_t now_us)
{
	if (ep->state != TCPEP_SYN_HELD)
		return -EINVAL;
	set_state(ep, TCPEP_SYN_RCVD, 0, now_us);
	output(ep, now_us);
	return 0;
}

int tcpep_refuse(tcpep *ep, uint64_t now_us)
{
	if (ep->state != TCPEP_SYN_HELD)
		return -EINVAL;
	emit_seg(ep, 0, 0, TUN_TCP_RST | TUN_TCP_ACK);
	ep->state = TCPEP_CLOSED;
	(void)now_us;
	return 0;
}

tcpep *tcpep_connect(const tcpep_params *p, const tun_ipaddr *local, uint16_t lport,
		     const tun_ipaddr *remote, uint16_t rport, const tcpep_cbs *cbs, void *ctx,
		     uint64_t now_us)
{
	tcpep *ep = ep_new(p, local, lport, remote, rport, cbs, ctx, now_us);

	if (!ep)
		return NULL;
	ep->state = TCPEP_SYN_SENT;
	output(ep, now_us);
	return ep;
}

void tcpep_free(tcpep *ep)
{
	if (!ep)
		return;
	free(ep->snd.buf);
	free(ep->rcv.buf);
	free(ep->scratch);
	free(ep);
}

/* ---- input ---- */

static void rtt_measured(tcpep *ep, uint64_t now)
{
	rtt_sample(&ep->rtt, (uint32_t)min64(now - ep->rtt_ts, UINT32_MAX / 8));
}

/* Retransmit one segment at snd_una (fast retransmit / partial ACK). */
static void retransmit_head(tcpep *ep, uint64_t now)
{
	uint64_t save = ep->snd_nxt;

	ep->snd_nxt = ep->snd_una;
	ep->rtt_active = false;
	if (send_one(ep, now))
		ep->st.fast_retransmits++;
	ep->snd_nxt = max64(save, ep->snd_nxt);
}

static void ack_advance(tcpep *ep, uint64_t a, uint64_t now)
{
	uint64_t dend = min64(a, data_end(ep));

	if (dend > 1 + ep->snd_base) {
		size_t n = (size_t)(dend - 1 - ep->snd_base);

		bring_consume(&ep->snd, n);
		ep->snd_base += n;
		ep->pend_wr = true;
	}
	ep->snd_una = a;
	ep->snd_nxt = max64(ep->snd_nxt, a);
	if (ep->rtt_active && a >= ep->rtt_seq) {
		ep->rtt_active = false;
		rtt_measured(ep, now);
	}
	ep->retries = 0;
	ep->dupacks = 0;
	ep->rtx_deadline = NONE; /* restarted by arm_rtx (RFC 6298 5.3) */
	if (ep->in_recovery) {
		if (a >= ep->recover)
			ep->in_recovery = false;
		else
			retransmit_head(ep, now);
	}
}

/* After our FIN was acknowledged. */
static void fin_acked(tcpep *ep, uint64_t now)
{
	switch (ep->state) {
	case TCPEP_FIN_WAIT_1:
		set_state(ep, TCPEP_FIN_WAIT_2, 0, now);
		break;
	case TCPEP_CLOSING:
		set_state(ep, TCPEP_TIME_WAIT, 0, now);
		break;
	case TCPEP_LAST_ACK:
		set_state(ep, TCPEP_CLOSED, 0, now);
		break;
	default:
		break;
	}
}

/* The ACK field of a segment in a synchronized state. false = drop the segment. */
static bool process_ack(tcpep *ep, const tun_tcp *t, uint64_t now)
{
	int64_t a = unwrap(ep->snd_una, ep->iss + (uint32_t)ep->snd_una, t->ack);
	uint64_t old_wnd = ep->snd_wnd;
	bool was_fin_acked = fin_sent(ep) && ep->snd_una > ep->fin_off;

	if (a > (int64_t)ep->snd_max) {
		ep->ack_now = true; /* acks something we never sent */
		return false;
	}
	if ((int32_t)(t->seq - ep->snd_wl1) > 0 ||
	    (t->seq == ep->snd_wl1 && (int32_t)(t->ack - ep->snd_wl2) >= 0)) {
		ep->snd_wnd = (uint64_t)t->window << ep->snd_wscale;
		ep->snd_wl1 = t->seq;
		ep->snd_wl2 = t->ack;
	}
	if (a > (int64_t)ep->snd_una) {
		ack_advance(ep, (uint64_t)a, now);
	} else if (a == (int64_t)ep->snd_una && ep->snd_max > ep->snd_una && !t->payload_len &&
		   !(t->flags & (TUN_TCP_SYN | TUN_TCP_FIN)) && ep->snd_wnd == old_wnd) {
		ep->st.dup_acks++;
		if (++ep->dupacks == 3 && !ep->in_recovery) {
			ep->in_recovery = true;
			ep->recover = ep->snd_max;
			retransmit_head(ep, now);
		}
	}
	if (ep->snd_wnd > 0 && old_wnd == 0)
		ep->rtx_deadline = NONE; /* the window opened: stop probing */
	if (ep->snd_wnd == 0)
		ep->retries = 0; /* the kernel answered with a closed window: alive, waiting for its reader */
	if (!was_fin_acked && fin_sent(ep) && ep->snd_una > ep->fin_off)
		fin_acked(ep, now);
	return true;
}

static void kernel_fin(tcpep *ep, uint64_t now)
{
	ep->fin_rcvd = true;
	ep->rcv_nxt++;
	ep->ack_now = true;
	ep->pend_rd = true;
	switch (ep->state) {
	case TCPEP_ESTABLISHED:
		set_state(ep, TCPEP_CLOSE_WAIT, 0, now);
		break;
	case TCPEP_FIN_WAIT_1:
		set_state(ep, TCPEP_CLOSING, 0, now);
		break;
	case TCPEP_FIN_WAIT_2:
		set_state(ep, TCPEP_TIME_WAIT, 0, now);
		break;
	default:
		break;
	}
}

/* Data and FIN of an acceptable segment. */
static void process_data(tcpep *ep, const tun_tcp *t, uint64_t now)
{
	int64_t off = unwrap(ep->rcv_nxt, ep->irs + (uint32_t)ep->rcv_nxt, t->seq) +
		      ((t->flags & TUN_TCP_SYN) ? 1 : 0);
	size_t n = t->payload_len, skip, room, take;
	bool fin = t->flags & TUN_TCP_FIN;

	if (!n && !fin) {
		if (off < (int64_t)ep->rcv_nxt)
			ep->ack_now = true; /* keepalive / zero-window probe */
		return;
	}
	if (ep->fin_rcvd || off > (int64_t)ep->rcv_nxt) {
		/* after their FIN (a retransmission) or out of order: say where we are */
		if (off > (int64_t)ep->rcv_nxt)
			ep->st.ooo_dropped++;
		ep->ack_now = true;
		return;
	}
	if (off + (int64_t)n < (int64_t)ep->rcv_nxt ||
	    (off + (int64_t)n == (int64_t)ep->rcv_nxt && !fin)) {
		ep->st.dup_data++;
		ep->ack_now = true;
		return;
	}
	skip = (size_t)((int64_t)ep->rcv_nxt - off);
	room = ep->rcv.cap - ep->rcv.len;
	take = n - skip < room ? n - skip : room;
	if (take) {
		bring_append(&ep->rcv, t->payload + skip, take);
		ep->rcv_nxt += take;
		ep->st.bytes_rcvd += take;
		ep->pend_rd = true;
		if (skip)
			ep->st.dup_data++;
	}
	if (take < n - skip) {
		ep->ack_now = true; /* beyond our room: the kernel will retransmit */
		return;
	}
	if (fin) {
		kernel_fin(ep, now);
		return;
	}
	if ((t->flags & TUN_TCP_PSH) || ++ep->segs_unacked >= 2)
		ep->ack_now = true;
	else if (ep->delack_deadline == NONE)
		ep->delack_deadline = now + ep->p.delack_us;
}

static bool rst_acceptable(const tcpep *ep, const tun_tcp *t)
{
	int64_t off = unwrap(ep->rcv_nxt, ep->irs + (uint32_t)ep->rcv_nxt, t->seq);

	return off >= (int64_t)ep->rcv_nxt && off <= (int64_t)max64(ep->rcv_adv, ep->rcv_nxt);
}

static int input_syn_sent(tcpep *ep, const tun_tcp *t, uint64_t now)
{
	bool ack_ok = (t->flags & TUN_TCP_ACK) && t->ack == ep->iss + 1;

	if ((t->flags & TUN_TCP_ACK) && !ack_ok)
		return -EINVAL;
	if (t->flags & TUN_TCP_RST) {
		if (!ack_ok)
			return -EINVAL;
		set_state(ep, TCPEP_CLOSED, ECONNREFUSED, now);
		return 0;
	}
	if (!(t->flags & TUN_TCP_SYN) || !ack_ok)
		return -EINVAL; /* no simultaneous open: the kernel never initiates to us here */
	ep->irs = t->seq;
	ep->rcv_nxt = ep->rcv_adv = 1;
	peer_syn_opts(ep, t);
	if (!ep->ws_ok)
		ep->rcv_wscale = ep->snd_wscale = 0;
	ep->snd_wnd = t->window; /* never scaled in a SYN */
	ep->snd_wl1 = t->seq;
	ep->snd_wl2 = t->ack;
	ack_advance(ep, 1, now);
	ep->ack_now = true;
	set_state(ep, TCPEP_ESTABLISHED, 0, now);
	if (ep->fin_queued && ep->state == TCPEP_ESTABLISHED)
		set_state(ep, TCPEP_FIN_WAIT_1, 0, now);
	return 0;
}

/* SYN_RCVD: the ACK of our SYN-ACK moves us to ESTABLISHED. false = drop. */
static bool syn_rcvd_ack(tcpep *ep, const tun_tcp *t, uint64_t now)
{
	if (!(t->flags & TUN_TCP_ACK) || t->ack != ep->iss + 1)
		return false;
	ep->snd_wl1 = t->seq - 1; /* take this segment's window */
	set_state(ep, TCPEP_ESTABLISHED, 0, now);
	if (ep->fin_queued && ep->state == TCPEP_ESTABLISHED)
		set_state(ep, TCPEP_FIN_WAIT_1, 0, now);
	return true;
}

static int input_sync(tcpep *ep, const tun_tcp *t, uint64_t now)
{
	if (t->flags & TUN_TCP_RST) {
		if (!rst_acceptable(ep, t) || ep->state == TCPEP_TIME_WAIT)
			return -EINVAL; /* RFC 1337: no reset of TIME_WAIT */
		set_state(ep, TCPEP_CLOSED, ECONNRESET, now);
		return 0;
	}
	if (t->flags & TUN_TCP_SYN) {
		if (ep->state == TCPEP_SYN_RCVD && t->seq == ep->irs && !(t->flags & TUN_TCP_ACK)) {
			emit_seg(ep, 0, 0, TUN_TCP_SYN | TUN_TCP_ACK); /* our SYN-ACK was lost */
			ep->st.retransmits++;
			return 0;
		}
		if (!(t->flags & TUN_TCP_ACK) || t->seq != ep->irs) {
			ep->ack_now = true; /* RFC 5961 challenge ACK */
			return -EINVAL;
		}
	}
	if (ep->state == TCPEP_SYN_RCVD && !syn_rcvd_ack(ep, t, now))
		return -EINVAL;
	if (!(t->flags & TUN_TCP_ACK))
		return -EINVAL;
	if (!process_ack(ep, t, now))
		return -EINVAL;
	if (ep->state == TCPEP_CLOSED)
		return 0;
	if (ep->state == TCPEP_TIME_WAIT) {
		if (t->flags & TUN_TCP_FIN) {
			ep->ack_now = true; /* our last ACK was lost */
			ep->tw_deadline = now + ep->p.time_wait_us;
		}
		return 0;
	}
	process_data(ep, t, now);
	return 0;
}

/* SYN_SENT and an ACK that is not for our SYN: the kernel still holds a connection
 * on this 4-tuple (TIME_WAIT of an earlier flow whose sequence space our ISN is
 * below, or one a restarted pilotd never reset) and answered our SYN with an ACK
 * of that one. RFC 9293 3.10.7.3: reset it (<SEQ=SEG.ACK><CTL=RST> is exactly in
 * its window; it ends a TIME_WAIT too) and send the SYN again at once: the
 * retransmission counts against max_rexmit, so a kernel that keeps answering so
 * cannot loop us. Without it the SYN only went again on its timer and met the
 * same answer: the flow never opened. */
static void syn_sent_bad_ack(tcpep *ep, const tun_ip *ip, const tun_tcp *t, uint64_t now)
{
	uint8_t rst[TCPEP_CTL_PKT];
	int n;

	if (!(t->flags & TUN_TCP_ACK) || (t->flags & TUN_TCP_RST) || t->ack == ep->iss + 1)
		return;
	n = tcpep_reset_reply(ip, t, rst, sizeof(rst));
	if (n <= 0)
		return;
	ep->cbs.emit(ep->ctx, rst, (size_t)n);
	ep->st.stale_resets++;
	if (ep->rtx_deadline != NONE)
		ep->rtx_deadline = now;
}

int tcpep_input(tcpep *ep, const tun_ip *ip, const tun_tcp *t, uint64_t now_us)
{
	int ret = 0;

	if (ep->state == TCPEP_CLOSED) {
		uint8_t rst[TCPEP_CTL_PKT];
		int n = tcpep_reset_reply(ip, t, rst, sizeof(rst));

		if (n > 0)
			ep->cbs.emit(ep->ctx, rst, (size_t)n);
		ep->st.dropped++;
		return -EINVAL;
	}
	ep->st.segs_rcvd++;
	switch (ep->state) {
	case TCPEP_SYN_HELD:
		/* the kernel retransmits its SYN while the Pilot side dials: keep holding */
		if ((t->flags & TUN_TCP_RST) && t->seq == ep->irs + 1)
			set_state(ep, TCPEP_CLOSED, ECONNRESET, now_us);
		else if (!((t->flags & TUN_TCP_SYN) && t->seq == ep->irs))
			ret = -EINVAL;
		break;
	case TCPEP_SYN_SENT:
		ret = input_syn_sent(ep, t, now_us);
		if (ret < 0)
			syn_sent_bad_ack(ep, ip, t, now_us);
		break;
	default:
		ret = input_sync(ep, t, now_us);
		break;
	}
	if (ret < 0)
		ep->st.dropped++;
	output(ep, now_us);
	notify(ep);
	return ret;
}

/* ---- timers ---- */

uint64_t tcpep_next_deadline(const tcpep *ep)
{
	return min64(min64(ep->rtx_deadline, ep->delack_deadline), ep->tw_deadline);
}

/* The first unacknowledged segment (or our FIN), whatever the kernel's window. */
static void probe_head(tcpep *ep)
{
	uint64_t end = data_end(ep), len = 0;
	uint8_t flags = TUN_TCP_ACK;

	if (ep->snd_una < end)
		len = min64(seg_max(ep), end - ep->snd_una);
	if (ep->snd_una + len == end)
		flags |= TUN_TCP_PSH;
	if (!len) {
		if (!ep->fin_queued || ep->snd_una != ep->fin_off)
			return;
		flags = TUN_TCP_ACK | TUN_TCP_FIN;
	}
	ep->st.retransmits++;
	emit_seg(ep, ep->snd_una, (size_t)len, flags);
	ep->snd_nxt = ep->snd_una + len + ((flags & TUN_TCP_FIN) ? 1 : 0);
}

static void on_rtx(tcpep *ep, uint64_t now)
{
	ep->rtx_deadline = NONE;
	if (++ep->retries > ep->p.max_rexmit) {
		if (synchronized(ep->state) || ep->state == TCPEP_SYN_RCVD)
			emit_seg(ep, ep->snd_max, 0, TUN_TCP_RST | TUN_TCP_ACK);
		set_state(ep, TCPEP_CLOSED, ETIMEDOUT, now);
		return;
	}
	rtt_backoff(&ep->rtt, 0); /* x2, capped; no jitter */
	ep->rtt_active = false;
	if (synchronized(ep->state) && ep->snd_wnd == 0 && ep->snd_max == ep->snd_una) {
		/* persist probe: an old sequence number makes the kernel answer with an ACK */
		emit_seg(ep, ep->snd_una - 1, 0, TUN_TCP_ACK);
		ep->st.probes_sent++;
	} else if (synchronized(ep->state) && ep->snd_wnd == 0) {
		/* Closed window with our data outstanding (the window update that would
		 * reopen it was lost, or the kernel shrank it): output() would send
		 * nothing and every RTO would count towards the reset. Like Linux
		 * (tcp_retransmit_timer), the head segment goes anyway; the kernel
		 * answers it with an ACK carrying its current window. */
		ep->st.rto_timeouts++;
		ep->st.probes_sent++;
		ep->snd_nxt = ep->snd_una;
		ep->in_recovery = false;
		ep->dupacks = 0;
		probe_head(ep);
	} else {
		ep->st.rto_timeouts++;
		ep->snd_nxt = ep->snd_una; /* go back N */
		ep->in_recovery = false;
		ep->dupacks = 0;
	}
	output(ep, now);
	arm_rtx(ep, now);
}

void tcpep_on_timer(tcpep *ep, uint64_t now_us)
{
	if (ep->tw_deadline <= now_us) {
		ep->tw_deadline = NONE;
		set_state(ep, TCPEP_CLOSED, 0, now_us);
	}
	if (ep->delack_deadline <= now_us) {
		ep->delack_deadline = NONE;
		if (synchronized(ep->state))
			emit_seg(ep, ep->snd_nxt, 0, TUN_TCP_ACK);
	}
	if (ep->rtx_deadline <= now_us)
		on_rtx(ep, now_us);
	notify(ep);
}

/* ---- application side ---- */

size_t tcpep_write(tcpep *ep, const void *buf, size_t len, uint64_t now_us)
{
	size_t n;

	if (ep->fin_queued || ep->state == TCPEP_CLOSED ||
	    (ep->state > TCPEP_ESTABLISHED && ep->state != TCPEP_CLOSE_WAIT))
		return 0;
	n = bring_append(&ep->snd, buf, len);
	if (n && synchronized(ep->state))
		output(ep, now_us);
	return n;
}

size_t tcpep_writable(const tcpep *ep)
{
	if (ep->fin_queued || ep->state == TCPEP_CLOSED)
		return 0;
	return ep->snd.cap - ep->snd.len;
}

void tcpep_shutdown(tcpep *ep, uint64_t now_us)
{
	if (ep->fin_queued || ep->state == TCPEP_CLOSED || ep->state == TCPEP_TIME_WAIT)
		return;
	ep->fin_queued = true;
	ep->fin_off = data_end(ep);
	if (ep->state == TCPEP_ESTABLISHED)
		set_state(ep, TCPEP_FIN_WAIT_1, 0, now_us);
	else if (ep->state == TCPEP_CLOSE_WAIT)
		set_state(ep, TCPEP_LAST_ACK, 0, now_us);
	output(ep, now_us);
}

void tcpep_abort(tcpep *ep, uint64_t now_us)
{
	if (ep->state == TCPEP_CLOSED)
		return;
	if (ep->state == TCPEP_SYN_HELD) {
		tcpep_refuse(ep, now_us);
		return;
	}
	if (ep->state == TCPEP_SYN_SENT)
		emit_seg(ep, ep->snd_max, 0, TUN_TCP_RST);
	else if (ep->state != TCPEP_TIME_WAIT)
		emit_seg(ep, ep->snd_max, 0, TUN_TCP_RST | TUN_TCP_ACK);
	ep->state = TCPEP_CLOSED;
	ep->rtx_deadline = ep->delack_deadline = ep->tw_deadline = NONE;
}

/* After the reader made room: a window update when it grew enough to matter
 * (receiver-side silly window avoidance, RFC 1122 4.2.3.3). */
static void maybe_window_update(tcpep *ep, uint64_t now)
{
	uint64_t old = ep->rcv_adv > ep->rcv_nxt ? ep->rcv_adv - ep->rcv_nxt : 0;
	uint64_t w = rcv_wnd_now(ep);
	uint64_t thresh = min64(ep->rcv.cap / 2, 2ull * ep->rcv_mss);

	if (!synchronized(ep->state) || ep->fin_rcvd || w <= old)
		return;
	if (w - old >= thresh || (old < ep->rcv_mss && w >= min64(ep->rcv_mss, ep->rcv.cap / 2))) {
		ep->ack_now = true;
		output(ep, now);
	}
}

size_t tcpep_read(tcpep *ep, void *buf, size_t len, uint64_t now_us)
{
	size_t n = len < ep->rcv.len ? len : ep->rcv.len;

	if (!n)
		return 0;
	bring_copy(&ep->rcv, 0, buf, n);
	tcpep_consume(ep, n, now_us);
	return n;
}

size_t tcpep_peek(const tcpep *ep, const uint8_t **p)
{
	return bring_peek(&ep->rcv, p);
}

void tcpep_consume(tcpep *ep, size_t n, uint64_t now_us)
{
	if (n > ep->rcv.len)
		n = ep->rcv.len;
	bring_consume(&ep->rcv, n);
	maybe_window_update(ep, now_us);
}

size_t tcpep_readable(const tcpep *ep)
{
	return ep->rcv.len;
}

bool tcpep_eof(const tcpep *ep)
{
	return ep->fin_rcvd && ep->rcv.len == 0;
}

void tcpep_set_rcv_space(tcpep *ep, size_t bytes, uint64_t now_us)
{
	ep->rcv_space = bytes;
	maybe_window_update(ep, now_us);
}

enum tcpep_state tcpep_state(const tcpep *ep)
{
	return ep->state;
}

void *tcpep_ctx(const tcpep *ep)
{
	return ep->ctx;
}

void tcpep_get_stats(const tcpep *ep, tcpep_stats *st)
{
	*st = ep->st;
	st->state = ep->state;
	st->snd_mss = ep->snd_mss;
	st->rcv_mss = ep->rcv_mss;
	st->snd_wscale = ep->ws_ok ? ep->snd_wscale : 0xff;
	st->rcv_wscale = ep->ws_ok ? ep->rcv_wscale : 0xff;
	st->snd_wnd = ep->snd_wnd;
	st->rcv_wnd = ep->rcv_adv > ep->rcv_nxt ? ep->rcv_adv - ep->rcv_nxt : 0;
	st->in_flight = ep->snd_max - ep->snd_una;
	st->snd_buffered = ep->snd.len;
	st->rcv_buffered = ep->rcv.len;
	st->srtt_us = ep->rtt.srtt;
	st->rttvar_us = ep->rtt.rttvar;
	st->rto_us = ep->rtt.rto;
}

int tcpep_reset_reply(const tun_ip *ip, const tun_tcp *t, uint8_t *out, size_t outcap)
{
	tun_ip_build ib = { .src = ip->dst, .dst = ip->src };
	tun_tcp_build tb = { .sport = t->dport, .dport = t->sport, .wscale = -1 };

	if (t->flags & TUN_TCP_RST)
		return 0;
	if (t->flags & TUN_TCP_ACK) {
		tb.seq = t->ack;
		tb.flags = TUN_TCP_RST;
	} else {
		tb.ack = t->seq + (uint32_t)t->payload_len + ((t->flags & TUN_TCP_SYN) ? 1 : 0) +
			 ((t->flags & TUN_TCP_FIN) ? 1 : 0);
		tb.flags = TUN_TCP_RST | TUN_TCP_ACK;
	}
	return tun_tcp_build_pkt(&ib, &tb, NULL, 0, out, outcap);
}
