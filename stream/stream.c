/* Pilot stream transport engine; see stream.h for the API and packet.md §5 for
 * the wire.
 *
 * Choices worth knowing:
 *  - Window units. The Window field counts free slots. We advertise
 *    floor(free receive bytes / 4096): a ref peer converts slots back with x4096 and a
 *    new peer with x1152, so both stay inside our buffer. 0 means closed, never
 *    "unlimited". The true window goes on every packet we send (keepalives, FIN).
 *    A peer's Window 0 on a pure ACK that acknowledges too few segments to have
 *    filled the previous advertisement (>= STREAM_REF_KA_MIN_SLOTS) is a ref
 *    keepalive and is ignored (see ref_keepalive_window); every other 0 closes it.
 *    A peer's window is honoured as slots x our mss bytes and at most `slots` segments
 *    in flight, because ref/new peers spend one slot per segment whatever its size.
 *  - RST validation. Ref and new send RST with Seq 0, so RFC 5961 style checking
 *    against the sequence space is impossible with them. Rule: in SYN_SENT any RST
 *    is accepted (connection refused); otherwise an RST is accepted when its Seq is 0
 *    (what real peers send) or inside [rcv_nxt, rcv_nxt + receive window); anything
 *    else is dropped and counted. TIME_WAIT ignores RSTs (RFC 1337).
 *  - SACK blocks. We send the block holding the most recent arrival first (RFC 2018),
 *    then the remaining ones highest first. The highest blocks give the sender the
 *    most loss evidence (every hole below the highest SACKed byte); the low holes are
 *    already being repaired; and both ref and new consumers mark per block, so order
 *    only matters for which 4 are reported.
 *  - FIN. Ours is new-style: it consumes one sequence number, is retransmitted by the
 *    RTO machinery and is only sent once all our data has been acknowledged. A
 *    received FIN takes effect only when everything before FIN.seq has arrived (no
 *    truncation); we then acknowledge FIN.seq + 1, which suits ref (no sequence
 *    consumed) and new (consumed) peers alike. The first FIN is answered with FIN+ACK
 *    if our own FIN is out, else with an ACK (half-close: we may keep sending).
 *    Repeated FINs are answered at most every 100 ms, and a FIN+ACK that acknowledges
 *    our FIN is never answered, which ends the ref FIN+ACK ping-pong (§9.2).
 *  - Simultaneous open (not in the reference, which dials from ephemeral ports and
 *    answers a SYN without a listener with RST): crossing SYNs on one 4-tuple move
 *    both ends SYN_SENT -> SYN_RECV -> ESTABLISHED as in RFC 793, see on_syn.
 *  - Give-up. After max_tx consecutive retransmission timeouts without any ACK
 *    progress (cumulative or SACK) we send RST and close with ETIMEDOUT. */
#include "stream/stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stream/cubic.h"
#include "stream/ring.h"
#include "lib/rtt.h"
#include "stream/sack.h"
#include "stream/seq.h"

#define ZWP_INIT_US 500000u
#define ZWP_MAX_US 30000000u
#define FIN_ANSWER_GAP_US 100000u
#define HANDSHAKE_ANSWER_GAP_US 100000u
#define KA_ANSWER_GAP_US 100000u
#define PACING_QUANTUM_US 1000u
#define TLP_MAX 2u                /* loss probes per tail before the RTO takes over */
#define TLP_MIN_US 10000u         /* PTO floor: timer granularity, peer scheduling */
#define TLP_DELACK_MAX_US 200000u /* cap of the learnt peer ACK delay */

struct stream_conn {
	stream_params p;
	stream_cbs cbs;
	void *ctx;
	pilot_addr laddr, raddr;
	uint16_t lport, rport;
	enum stream_state st;
	uint64_t now;

	/* send side: data offset o has sequence number snd_isn + 1 + o */
	ring snd;                /* base = first unacknowledged byte */
	uint64_t snd_nxt_off;    /* next new byte to send */
	uint32_t snd_isn, snd_una, snd_nxt;
	sack_sb sb;
	cubic cc;
	rtt_est rtt;
	bool fin_queued, fin_sent, fin_acked;
	uint32_t fin_seq;
	uint32_t peer_slots;
	uint32_t segs_since_wnd; /* segments acknowledged since peer_slots was set */
	uint32_t recover;
	enum stream_recovery recov;
	uint64_t rto_at;
	uint32_t rto_stalls;     /* consecutive RTOs without progress */
	uint64_t pace_next;
	bool cwnd_blocked;
	/* tail-loss probe (RFC 8985 §7) */
	uint64_t tlp_at;         /* PTO deadline; 0 = not armed */
	uint32_t tlp_count;      /* probes since the last ACK progress */
	bool tlp_restart;        /* new data sent / ACK progress: re-arm the PTO */
	bool tlp_episode, tlp_retx; /* a probe is out; it was a retransmission */
	bool tlp_lone;           /* ... of the only segment in flight */
	uint32_t tlp_high;       /* snd_nxt when the probe went out */
	uint64_t tlp_sent, tlp_orig_sent; /* the probe's send time, the probed copy's */
	uint32_t peer_delack;    /* learnt delay of the peer's ACK for a lone segment */
	uint64_t zwp_at;
	uint32_t zwp_count, zwp_gap;
	bool zwp_probe; /* a zero-window probe byte (at snd_nxt) may be answered */
	bool want_write;

	/* receive side: data offset o has sequence number rcv_isn + 1 + o */
	ring rcv;
	uint32_t rcv_isn;
	bool peer_fin_known, fin_rcvd;
	uint32_t peer_fin_seq;
	uint32_t last_wnd;       /* slots in our last ACK-bearing packet */
	uint32_t unacked_segs, quickack, rcv_mss;
	uint64_t delack_at;
	bool ack_now, small_seg;
	uint64_t last_rx, last_ka, last_fin_answer, last_hs_answer, last_ka_answer, tw_at;

	/* handshake */
	bool hs_resent;          /* SYN-ACK re-sent on a duplicate SYN (Karn) */
	uint32_t syn_tries, syn_gap;
	uint64_t syn_at, syn_first;

	/* deferred callbacks while inside stream_input */
	int in_input;
	bool cb_readable, cb_writable;

	uint64_t rng;
	stream_stats s;
	uint8_t *tx;             /* one segment of scratch for payloads that wrap the ring */
	uint32_t sb_max;         /* segment table limit */

	/* lazy buffers: released after p.release_us without buffer activity */
	uint64_t buf_used_at;    /* last append/insert/consume on either ring */
	uint64_t rel_at;         /* when to look at releasing; 0 = nothing to release */
};

static const char *const state_names[] = {
	"CLOSED", "LISTEN", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "TIME_WAIT",
};

const char *stream_state_name(enum stream_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

void stream_params_default(stream_params *p)
{
	*p = (stream_params){
		.mss = STREAM_DEFAULT_MSS, .sndbuf = 4u << 20, .rcvbuf = 4u << 20, .nodelay = false,
		.pacing = true, .delack_us = 5000, .quickack = 32, .keepalive_us = 60000000,
		.idle_us = 120000000, .time_wait_us = 10000000, .syn_rto_us = 250000,
		.syn_rto_max_us = 8000000, .syn_tries = 7, .max_tx = 8, .zwp_max = 30,
		.init_cwnd = 0, .max_cwnd = 0, .seed = 0x9E3779B97F4A7C15ull,
		.release_us = 1000000,
	};
}

/* ---- small helpers ---------------------------------------------------------- */

static uint32_t rnd32(stream_conn *c)
{
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	return (uint32_t)(c->rng >> 16);
}

static bool can_send_data(const stream_conn *c)
{
	return c->st == STREAM_SYN_RECV || c->st == STREAM_ESTABLISHED ||
	       c->st == STREAM_FIN_WAIT || c->st == STREAM_CLOSE_WAIT;
}

static bool can_recv_data(const stream_conn *c)
{
	return (c->st == STREAM_SYN_RECV || c->st == STREAM_ESTABLISHED ||
		c->st == STREAM_FIN_WAIT) && !c->fin_rcvd;
}

static uint32_t rcv_seq_at(const stream_conn *c, uint64_t off)
{
	return c->rcv_isn + 1 + (uint32_t)off;
}

static uint32_t rcv_nxt(const stream_conn *c)
{
	return rcv_seq_at(c, ring_end(&c->rcv));
}

static uint32_t rcv_ack(const stream_conn *c)
{
	return c->fin_rcvd ? c->peer_fin_seq + 1 : rcv_nxt(c);
}

static uint32_t our_window(const stream_conn *c)
{
	size_t slots = ring_space(&c->rcv) / STREAM_WINDOW_UNIT;

	return slots > 65535 ? 65535 : (uint32_t)slots;
}

static void set_state(stream_conn *c, enum stream_state ns, int err)
{
	enum stream_state old = c->st;

	if (old == ns)
		return;
	c->st = ns;
	if (ns == STREAM_CLOSED || ns == STREAM_TIME_WAIT) {
		c->rto_at = c->delack_at = c->zwp_at = c->syn_at = c->tlp_at = 0;
		c->ack_now = false;
	}
	if (ns == STREAM_TIME_WAIT)
		c->tw_at = c->now + c->p.time_wait_us;
	if (c->cbs.on_state)
		c->cbs.on_state(c->ctx, c, old, ns, err);
}

static void notify_readable(stream_conn *c)
{
	if (c->in_input)
		c->cb_readable = true;
	else if (c->cbs.on_readable)
		c->cbs.on_readable(c->ctx, c);
}

static void notify_writable(stream_conn *c)
{
	if (!c->want_write)
		return;
	c->want_write = false;
	if (c->in_input)
		c->cb_writable = true;
	else if (c->cbs.on_writable)
		c->cbs.on_writable(c->ctx, c);
}

static void enter_recovery(stream_conn *c);
static bool congestive(const stream_conn *c);

/* ---- transmission -------------------------------------------------------------- */

static void emit(stream_conn *c, uint8_t flags, uint32_t seq, uint32_t ack,
		 const uint8_t *pl, size_t n)
{
	proto_hdr h = {
		.version = PROTO_VERSION, .flags = flags, .protocol = PROTO_STREAM,
		.payload_len = (uint16_t)n, .src = c->laddr, .dst = c->raddr,
		.src_port = c->lport, .dst_port = c->rport, .seq = seq, .ack = ack,
	};

	if (!(flags & PROTO_RST)) {
		h.window = (uint16_t)our_window(c);
		c->last_wnd = h.window;
	}
	if (flags & PROTO_ACK) {
		/* every ACK-bearing packet carries the current Ack */
		c->ack_now = false;
		c->small_seg = false;
		c->delack_at = 0;
		c->unacked_segs = 0;
	}
	c->s.segs_sent++;
	if (c->cbs.xmit)
		c->cbs.xmit(c->ctx, c, &h, pl, n);
}

/* SACK report for the out-of-order intervals: latest arrival first, then highest. */
static size_t build_sack(stream_conn *c, uint8_t *out)
{
	proto_sack_block b[PROTO_SACK_MAX_BLOCKS];
	int n = 0, last = -1;
	const ring *r = &c->rcv;

	for (int i = 0; i < r->nival; i++)
		if (r->ival[i].start <= r->last.start && r->last.start < r->ival[i].end)
			last = i;
	if (last >= 0) {
		b[n].left = rcv_seq_at(c, r->ival[last].start);
		b[n++].right = rcv_seq_at(c, r->ival[last].end);
	}
	for (int i = r->nival - 1; i >= 0 && n < PROTO_SACK_MAX_BLOCKS; i--) {
		if (i == last)
			continue;
		b[n].left = rcv_seq_at(c, r->ival[i].start);
		b[n++].right = rcv_seq_at(c, r->ival[i].end);
	}
	if (n == 0)
		return 0;
	c->s.sack_blocks_sent += (uint64_t)n;
	return (size_t)proto_sack_encode(b, n, out, PROTO_SACK_MAX_LEN);
}

static void send_ack(stream_conn *c)
{
	uint8_t sack[PROTO_SACK_MAX_LEN];
	size_t n = c->rcv.nival ? build_sack(c, sack) : 0;

	emit(c, PROTO_ACK, c->snd_nxt, rcv_ack(c), n ? sack : NULL, n);
}

static void send_rst(stream_conn *c)
{
	emit(c, PROTO_RST, 0, 0, NULL, 0);
}

static void send_syn(stream_conn *c)
{
	if (c->st == STREAM_SYN_SENT)
		emit(c, PROTO_SYN, c->snd_isn, 0, NULL, 0);
	else
		emit(c, PROTO_SYN | PROTO_ACK, c->snd_isn, rcv_ack(c), NULL, 0);
}

static void fail(stream_conn *c, int err, bool rst)
{
	if (rst)
		send_rst(c);
	set_state(c, STREAM_CLOSED, err);
	c->cb_writable = c->cb_readable = false;
}

static void arm_rto(stream_conn *c)
{
	if (c->sb.count && !c->rto_at)
		c->rto_at = c->now + c->rtt.rto;
}

static uint64_t pacing_gap(const stream_conn *c, size_t len)
{
	uint64_t cwnd = c->cc.cwnd, srtt = c->rtt.srtt;

	if (!c->p.pacing || srtt == 0 || cwnd == 0)
		return 0;
	/* rate = gain * cwnd / srtt, gain 2 in slow start, 1.25 after */
	if (c->cc.phase == CUBIC_CA)
		return (uint64_t)len * srtt * 4 / (cwnd * 5);
	return (uint64_t)len * srtt / (cwnd * 2);
}

static bool pacing_blocked(const stream_conn *c)
{
	return c->p.pacing && c->pace_next > c->now;
}

static void paced(stream_conn *c, size_t len)
{
	uint64_t floor = c->now > PACING_QUANTUM_US ? c->now - PACING_QUANTUM_US : 0;

	if (c->pace_next < floor)
		c->pace_next = floor;
	c->pace_next += pacing_gap(c, len);
}


/* n send-ring bytes at off, contiguous: straight from the ring, or copied into the
 * scratch segment when they wrap (NULL if the scratch cannot be allocated). */
static const uint8_t *snd_bytes(stream_conn *c, uint64_t off, size_t n)
{
	const uint8_t *p;

	if (ring_peek(&c->snd, off, &p) >= n)
		return p;
	if (!c->tx && !(c->tx = ring_mem_alloc(c->p.mss)))
		return NULL;
	ring_copy_out(&c->snd, off, c->tx, n);
	return c->tx;
}

static bool retransmit(stream_conn *c, uint32_t i)
{
	sack_seg *s = sack_at(&c->sb, i);

	if (s->flags & SACK_F_FIN) {
		emit(c, PROTO_FIN, s->seq, rcv_ack(c), NULL, 0);
	} else {
		uint64_t off = c->snd.base + (uint32_t)(s->seq - c->snd_una);
		const uint8_t *pl = snd_bytes(c, off, s->len);
		if (!pl)
			return false;
		emit(c, PROTO_ACK, s->seq, rcv_ack(c), pl, s->len);
	}
	sack_on_retransmit(&c->sb, i, c->now);
	c->s.retransmits++;
	if (c->recov == STREAM_RECOV_FAST)
		c->s.fast_retransmits++;
	paced(c, s->len);
	arm_rto(c);
	return true;
}

static uint64_t peer_window_bytes(const stream_conn *c)
{
	return (uint64_t)c->peer_slots * c->p.mss;
}

static void arm_zwp(stream_conn *c)
{
	if (c->zwp_at || c->sb.count)
		return;
	if (!c->zwp_gap)
		c->zwp_gap = ZWP_INIT_US;
	c->zwp_at = c->now + c->zwp_gap;
}

/* Send one new data segment if every limit allows it (a loss probe may pass the
 * congestion window and Nagle, never the peer's window). */
static bool send_new_seg(stream_conn *c, bool probe)
{
	uint64_t avail = ring_end(&c->snd) - c->snd_nxt_off;
	uint64_t outstanding = (uint32_t)(c->snd_nxt - c->snd_una), pipe = sack_pipe(&c->sb);
	uint32_t len;
	const uint8_t *pl;

	if (!avail || c->fin_sent || sack_full(&c->sb))
		return false;
	len = avail < c->p.mss ? (uint32_t)avail : c->p.mss;
	if (outstanding + len > peer_window_bytes(c) || c->sb.count >= c->peer_slots) {
		arm_zwp(c);
		return false;
	}
	if (!probe && pipe > 0 && pipe + len > c->cc.cwnd) {
		c->cwnd_blocked = true;
		return false;
	}
	if (!probe && len < c->p.mss && !c->p.nodelay && c->sb.count && !c->fin_queued)
		return false; /* Nagle: hold the sub-MSS tail while data is unacknowledged */
	if (sack_reserve(&c->sb) < 0 || !(pl = snd_bytes(c, c->snd_nxt_off, len)))
		return false; /* out of memory: try again on the next event */
	if (proto_sack_lookalike(pl, len))
		len = 4; /* "SACK" alone is never a report (needs >= 13 bytes) */
	emit(c, PROTO_ACK, c->snd_nxt, rcv_ack(c), pl, len);
	sack_push(&c->sb, c->snd_nxt, len, 0, c->now);
	c->zwp_probe = false;
	c->snd_nxt += len;
	c->snd_nxt_off += len;
	c->s.bytes_sent += len;
	paced(c, len);
	arm_rto(c);
	if (!probe)
		c->tlp_restart = true;
	return true;
}

static bool send_new(stream_conn *c)
{
	return send_new_seg(c, false);
}

static void maybe_send_fin(stream_conn *c)
{
	if (!c->fin_queued || c->fin_sent || c->snd_nxt_off != ring_end(&c->snd) || c->sb.count)
		return;
	if (sack_reserve(&c->sb) < 0)
		return;
	c->fin_seq = c->snd_nxt;
	c->fin_sent = true;
	emit(c, PROTO_FIN, c->fin_seq, rcv_ack(c), NULL, 0);
	sack_push(&c->sb, c->fin_seq, 1, SACK_F_FIN, c->now);
	c->snd_nxt++;
	arm_rto(c);
	c->tlp_restart = true;
}

/* ---- tail-loss probe (RFC 8985 §7) ------------------------------------------------
 * A loss at the tail of a flight (a lone request, the last segments of a burst)
 * produces no SACK and no duplicate ACK: without a probe it waits for the RTO
 * (>= 200 ms). While the flight is open (no recovery, nothing SACKed) a probe
 * timer runs PTO after the last new transmission or ACK progress:
 *   PTO = max(2 SRTT, 10 ms), + the peer's ACK delay for a lone segment when
 *         one segment is in flight (RFC 8985's WCDelAckT, learnt instead of a
 *         fixed 200 ms: ours ACK a lone request at once, ref peers delay up to
 *         40 ms); no probe when the RTO comes first.
 * On expiry it sends one new segment if the peer's window allows (congestion
 * window and Nagle aside), else retransmits the highest unacknowledged segment;
 * its ACK or SACK then triggers normal recovery for anything else missing. At most
 * TLP_MAX probes without ACK progress, then the RTO (re-armed at each probe) acts.
 * When the probed segment's ACK comes back later than the probe's own RTT could
 * explain, the probe repaired a loss and the congestion response of an ordinary
 * loss follows; when it comes back too early to be the probe's, the probe was
 * spurious and the ACK delay it revealed is learnt.
 * With SACKed data above a hole, the same timer is RACK's reordering timer
 * (RFC 8985 §6.3): holes below the highest SACKed segment still open at expiry are
 * lost, and recovery starts without waiting for more ACKs. */

static uint64_t pto_us(const stream_conn *c)
{
	uint64_t srtt = c->rtt.srtt, pto = 2 * srtt;

	if (pto < TLP_MIN_US)
		pto = TLP_MIN_US;
	if (c->sb.count == 1)
		pto += c->peer_delack;
	return pto;
}

static void tlp_update(stream_conn *c)
{
	uint64_t at;

	if (!c->sb.count || c->recov != STREAM_RECOV_OPEN || !c->rtt.srtt ||
	    c->tlp_count >= TLP_MAX || !can_send_data(c)) {
		c->tlp_at = 0;
		c->tlp_restart = false;
		return;
	}
	if (c->tlp_at && !c->tlp_restart)
		return;
	c->tlp_restart = false;
	at = c->now + pto_us(c);
	c->tlp_at = c->rto_at && at >= c->rto_at ? 0 : at;
}

/* The probe's episode ends when everything up to tlp_high is acknowledged. The
 * ACK is for the original or for the probe; which one is unknowable without
 * DSACK (neither ref nor new sends it). For a lone segment, the time since the
 * original went out, less min_rtt, is then taken as the peer's ACK delay: right
 * when the probe was spurious (a delaying peer: no more spurious probes), an
 * overestimate by about one PTO when it repaired a loss (the next lone probe
 * waits longer, until clean samples bring the estimate down again). */
static void tlp_on_ack(stream_conn *c, uint32_t ack)
{
	uint64_t orig_rtt;

	if (!c->tlp_episode || seq_lt(ack, c->tlp_high))
		return;
	c->tlp_episode = false;
	if (!c->tlp_retx)
		return; /* new data probed: its ACK proves nothing was lost */
	orig_rtt = c->now - c->tlp_orig_sent;
	if (c->tlp_lone) {
		uint64_t d = orig_rtt > c->rtt.min_rtt ? orig_rtt - c->rtt.min_rtt : 0;
		if (d > TLP_DELACK_MAX_US)
			d = TLP_DELACK_MAX_US;
		if (d > c->peer_delack)
			c->peer_delack = (uint32_t)d;
	}
	if (c->rtt.min_rtt && c->now - c->tlp_sent < (uint64_t)c->rtt.min_rtt * 3 / 4)
		return; /* too early for the probe: the original arrived, nothing was lost */
	c->s.tlp_recoveries++;
	if (congestive(c))
		cubic_on_loss(&c->cc, c->now);
	else
		c->s.random_losses++;
}

/* A lone segment's RTT sample: its excess over min_rtt is the peer's ACK delay. */
static void learn_delack(stream_conn *c, uint32_t rtt_us, bool lone)
{
	uint32_t d;

	if (!lone || !rtt_us)
		return;
	d = rtt_us > c->rtt.min_rtt ? rtt_us - c->rtt.min_rtt : 0;
	if (d > TLP_DELACK_MAX_US)
		d = TLP_DELACK_MAX_US;
	c->peer_delack -= c->peer_delack / 8;
	if (d > c->peer_delack)
		c->peer_delack = d;
}

static void on_tlp(stream_conn *c)
{
	uint32_t last;
	sack_seg *s;

	c->tlp_at = 0;
	if (!c->sb.count || c->recov != STREAM_RECOV_OPEN || !can_send_data(c))
		return;
	if (c->sb.sacked_segs) {
		/* RACK reordering timeout: the holes below the highest SACK are lost */
		if (sack_mark_holes_lost(&c->sb)) {
			c->s.reo_timeouts++;
			enter_recovery(c);
			return; /* output() retransmits */
		}
	}
	c->tlp_count++;
	c->s.tlp_probes++;
	c->tlp_episode = true;
	c->tlp_sent = c->now;
	c->tlp_retx = false;
	if (!send_new_seg(c, true)) {
		for (last = c->sb.count; last > 0; last--)
			if (!(sack_at(&c->sb, last - 1)->flags & SACK_F_SACKED))
				break;
		if (!last) {
			c->tlp_episode = false;
			return;
		}
		s = sack_at(&c->sb, last - 1);
		c->tlp_orig_sent = s->sent_us;
		c->tlp_retx = true;
		c->tlp_lone = c->sb.count == 1;
		if (!retransmit(c, last - 1)) {
			c->tlp_episode = false;
			return;
		}
	}
	c->tlp_high = c->snd_nxt;
	c->rto_at = c->now + c->rtt.rto; /* RFC 8985 §7.3: the RTO follows the probe */
	c->tlp_restart = true;           /* the next probe, if any, PTO later */
}

static void output(stream_conn *c)
{
	if (!can_send_data(c)) {
		c->tlp_at = 0;
		return;
	}
	for (;;) {
		int64_t i;
		if (pacing_blocked(c))
			break;
		i = sack_next_lost(&c->sb);
		if (i >= 0) {
			uint64_t pipe = sack_pipe(&c->sb);
			if (pipe > 0 && pipe + sack_at(&c->sb, (uint32_t)i)->len > c->cc.cwnd) {
				c->cwnd_blocked = true;
				break;
			}
			if (!retransmit(c, (uint32_t)i))
				break;
			continue;
		}
		if (!send_new(c))
			break;
	}
	maybe_send_fin(c);
	if (c->ack_now)
		send_ack(c);
	tlp_update(c);
}

/* ---- construction --------------------------------------------------------------- */

/* one descriptor per segment: enough for a full buffer of MSS segments plus slack
 * for small (Nagle-off) segments; more small segments just wait */
static uint32_t seg_limit(const stream_params *p)
{
	return p->sndbuf / p->mss * 2 + 64;
}

static stream_conn *conn_new(const stream_params *pp, const stream_cbs *cbs, void *ctx, uint64_t now)
{
	stream_params p;
	stream_conn *c;
	uint32_t segs;

	stream_params_default(&p);
	if (pp)
		p = *pp;
	if (p.mss < 64 || p.mss > PROTO_MAX_PAYLOAD || p.sndbuf < p.mss || p.rcvbuf < STREAM_WINDOW_UNIT)
		return NULL;
	if (!p.init_cwnd)
		p.init_cwnd = 10 * p.mss;
	if (!p.max_cwnd)
		p.max_cwnd = p.sndbuf;
	if (!p.max_tx)
		p.max_tx = 8;
	c = ring_mem_calloc(sizeof(*c));
	if (!c)
		return NULL;
	c->p = p;
	if (cbs)
		c->cbs = *cbs;
	c->ctx = ctx;
	c->now = now;
	c->rng = p.seed ? p.seed : 1;
	segs = seg_limit(&p);
	c->sb_max = segs;
	/* nothing is allocated here: the rings and the segment table grow on use */
	if (ring_init(&c->snd, p.sndbuf) || ring_init(&c->rcv, p.rcvbuf) || sack_init(&c->sb, segs)) {
		stream_free(c);
		return NULL;
	}
	rtt_init(&c->rtt, RTT_RTO_INIT_US, RTT_RTO_MIN_US, RTT_RTO_MAX_US, RTT_G_US);
	cubic_init(&c->cc, p.mss, p.init_cwnd, UINT64_MAX / 4, p.max_cwnd);
	c->quickack = p.quickack;
	c->last_rx = now;
	c->syn_gap = p.syn_rto_us;
	c->syn_first = now;
	c->syn_tries = 1;
	c->syn_at = now + c->syn_gap;
	c->rcv_mss = p.mss;
	return c;
}

/* Everything sized by the MSS is still untouched before the first data segment:
 * the scratch segment is unallocated, the segment table empty, cubic unfed. */
int stream_set_mss(stream_conn *c, uint32_t mss)
{
	if (mss < 64 || mss > PROTO_MAX_PAYLOAD || mss > c->p.sndbuf)
		return -EINVAL;
	if (mss == c->p.mss)
		return 0;
	if (c->snd_nxt_off || c->sb.count || c->tx || c->fin_sent)
		return -EBUSY;
	if (c->rcv_mss == c->p.mss)
		c->rcv_mss = mss;
	c->p.mss = mss;
	c->sb_max = seg_limit(&c->p);
	sack_destroy(&c->sb);
	sack_init(&c->sb, c->sb_max);
	cubic_init(&c->cc, mss, c->p.init_cwnd, UINT64_MAX / 4, c->p.max_cwnd);
	return 0;
}

stream_conn *stream_dial(const stream_params *p, pilot_addr local, uint16_t lport,
			 pilot_addr remote, uint16_t rport, const stream_cbs *cbs, void *ctx,
			 uint64_t now_us)
{
	stream_conn *c = conn_new(p, cbs, ctx, now_us);

	if (!c)
		return NULL;
	c->laddr = local;
	c->lport = lport;
	c->raddr = remote;
	c->rport = rport;
	c->snd_una = c->snd_isn;
	c->snd_nxt = c->snd_isn + 1;
	c->st = STREAM_SYN_SENT;
	send_syn(c);
	return c;
}

stream_conn *stream_accept(const stream_params *p, const proto_hdr *syn, const stream_cbs *cbs,
			   void *ctx, uint64_t now_us)
{
	stream_conn *c;

	if (!syn || (syn->flags & (PROTO_SYN | PROTO_ACK | PROTO_RST)) != PROTO_SYN ||
	    syn->protocol != PROTO_STREAM)
		return NULL;
	c = conn_new(p, cbs, ctx, now_us);
	if (!c)
		return NULL;
	c->laddr = syn->dst;
	c->lport = syn->dst_port;
	c->raddr = syn->src;
	c->rport = syn->src_port;
	c->rcv_isn = syn->seq;
	c->peer_slots = syn->window;
	/* the SYN-ACK is not tracked as a segment: a ref dialer never acknowledges it in
	 * a way that differs from its first ACK, so SYN_RECV ends with any ACK */
	c->snd_una = c->snd_nxt = c->snd_isn + 1;
	c->st = STREAM_SYN_RECV;
	c->s.segs_rcvd++;
	send_syn(c);
	return c;
}

void stream_free(stream_conn *c)
{
	if (!c)
		return;
	ring_destroy(&c->snd);
	ring_destroy(&c->rcv);
	sack_destroy(&c->sb);
	ring_mem_free(c->tx, c->p.mss);
	ring_mem_free(c, sizeof(*c));
}

/* ---- lazy buffers --------------------------------------------------------------
 * The send ring, the receive ring (with its interval list), the segment table and
 * the scratch segment start unallocated and grow geometrically as data needs room
 * (ring.h, sack.h). Whatever is empty is freed again once the connection has gone
 * p.release_us without buffer activity (append, insert, ACK, read); at once when
 * release_us is 0 or the connection is CLOSED / in TIME_WAIT (where the send side
 * is dropped whole). An idle connection holds only its struct. */

static void free_send_side(stream_conn *c)
{
	ring_release(&c->snd);
	ring_mem_free(c->tx, c->p.mss);
	c->tx = NULL;
}

static bool releasable(const stream_conn *c)
{
	return ((c->snd.buf || c->tx) && c->snd.len == 0) || (c->sb.seg && !c->sb.count) ||
	       ((c->rcv.buf || c->rcv.ival) && ring_empty(&c->rcv));
}

static void release_now(stream_conn *c)
{
	if (c->snd.len == 0)
		free_send_side(c);
	sack_release(&c->sb);
	ring_release(&c->rcv);
}

/* At the end of every entry point (not while inside stream_input's processing). */
static void housekeep(stream_conn *c)
{
	if (c->in_input)
		return;
	if (c->st == STREAM_CLOSED || c->st == STREAM_TIME_WAIT) {
		if (c->st == STREAM_CLOSED) {
			/* nothing will be sent again */
			c->snd.len = 0;
			sack_destroy(&c->sb);
			sack_init(&c->sb, c->sb_max);
		}
		release_now(c);
		c->rel_at = 0;
		return;
	}
	if (!releasable(c)) {
		c->rel_at = 0;
		return;
	}
	if (!c->p.release_us) {
		release_now(c);
		c->rel_at = 0;
	} else if (!c->rel_at) {
		c->rel_at = c->buf_used_at + c->p.release_us;
		if (c->rel_at <= c->now)
			c->rel_at = c->now + 1;
	}
}

static void on_release_timer(stream_conn *c)
{
	uint64_t due = c->buf_used_at + c->p.release_us;

	c->rel_at = 0;
	if (c->now >= due)
		release_now(c);
	else
		c->rel_at = due;
}

/* ---- receive path ------------------------------------------------------------ */

static void established(stream_conn *c)
{
	c->syn_at = 0;
	if (c->st == STREAM_SYN_SENT || c->st == STREAM_SYN_RECV)
		set_state(c, STREAM_ESTABLISHED, 0);
}

/* SYN_RECV ends: an RTT sample from our first SYN / SYN-ACK when it went out
 * once, so that a listener has an SRTT (for the loss probe) before its first
 * data is acknowledged. */
static void handshake_rtt(stream_conn *c)
{
	if (c->st == STREAM_SYN_RECV && c->syn_tries == 1 && !c->hs_resent && !c->rtt.srtt)
		rtt_sample(&c->rtt, (uint32_t)(c->now - c->syn_first ? c->now - c->syn_first : 1));
}

static void maybe_time_wait(stream_conn *c)
{
	if (c->fin_rcvd && c->fin_acked && c->st != STREAM_CLOSED)
		set_state(c, STREAM_TIME_WAIT, 0);
}

static void on_syn_ack(stream_conn *c, const proto_hdr *h)
{
	if (c->st == STREAM_SYN_RECV && h->ack == c->snd_isn + 1 && h->seq == c->rcv_isn) {
		/* simultaneous open: the peer's SYN-ACK acknowledges our SYN */
		c->peer_slots = h->window;
		handshake_rtt(c);
		established(c);
		send_ack(c);
		return;
	}
	if (c->st != STREAM_SYN_SENT) {
		/* our final ACK was lost: answer, rate-limited */
		c->s.syn_ignored++;
		if (c->st != STREAM_CLOSED && c->now - c->last_hs_answer >= HANDSHAKE_ANSWER_GAP_US) {
			c->last_hs_answer = c->now;
			send_ack(c);
		}
		return;
	}
	if (h->ack != c->snd_isn + 1) {
		c->s.dropped++;
		return;
	}
	c->rcv_isn = h->seq;
	c->peer_slots = h->window;
	c->snd_una = h->ack;
	if (c->syn_tries == 1)
		rtt_sample(&c->rtt, (uint32_t)(c->now - c->syn_first));
	established(c);
	send_ack(c);
	output(c);
}

static void on_syn(stream_conn *c, const proto_hdr *h)
{
	if (c->st == STREAM_SYN_SENT) {
		/* simultaneous open (RFC 793 §3.4): crossing SYNs on one 4-tuple. Take the
		 * peer's ISN, answer with a SYN-ACK and wait in SYN_RECV for the peer's
		 * SYN-ACK or ACK; our SYN stays unacknowledged until then, so it is not
		 * tracked as a segment (like the listener's SYN-ACK) and the handshake
		 * timer keeps re-sending the SYN-ACK. */
		c->rcv_isn = h->seq;
		c->peer_slots = h->window;
		c->snd_una = c->snd_nxt = c->snd_isn + 1;
		c->last_hs_answer = c->now;
		set_state(c, STREAM_SYN_RECV, 0);
		send_syn(c);
		return;
	}
	/* a duplicate SYN: re-send the SYN-ACK (original seq, current Ack) */
	if ((c->st == STREAM_SYN_RECV || c->st == STREAM_ESTABLISHED) && h->seq == c->rcv_isn &&
	    c->now - c->last_hs_answer >= HANDSHAKE_ANSWER_GAP_US && c->cbs.xmit) {
		c->last_hs_answer = c->now;
		c->hs_resent = true;
		emit(c, PROTO_SYN | PROTO_ACK, c->snd_isn, rcv_ack(c), NULL, 0);
		return;
	}
	c->s.syn_ignored++;
}

static void on_rst(stream_conn *c, const proto_hdr *h)
{
	int32_t rel = seq_diff(h->seq, rcv_nxt(c));

	if (c->st == STREAM_CLOSED || c->st == STREAM_TIME_WAIT) {
		c->s.rst_ignored++;
		return;
	}
	if (c->st == STREAM_SYN_SENT) {
		fail(c, ECONNREFUSED, false);
		return;
	}
	if (h->seq == 0 || (rel >= 0 && (uint64_t)rel < (ring_space(&c->rcv) ? ring_space(&c->rcv) : 1))) {
		fail(c, ECONNRESET, false);
		return;
	}
	c->s.rst_ignored++;
}

/* Loss discrimination: a loss while the path shows no standing queue (latest RTT
 * within max(2 ms, min_rtt/8) of the minimum) is taken as random (radio, policer,
 * corruption), not congestion: it is repaired without the multiplicative decrease.
 * Queue-overflow losses always come with an inflated RTT and still reduce cwnd, so
 * the sender stays fair and does not fill buffers (the cwnd keeps growing only
 * until the queue builds, which turns the next loss into a congestive one). */
static bool congestive(const stream_conn *c)
{
	uint32_t min = c->rtt.min_rtt, thr;

	if (!min)
		return true;
	thr = min / 8 > 2000 ? min / 8 : 2000;
	return c->rtt.latest >= min + thr;
}

static void enter_recovery(stream_conn *c)
{
	if (c->recov != STREAM_RECOV_OPEN)
		return;
	c->recov = STREAM_RECOV_FAST;
	c->recover = c->snd_nxt;
	if (congestive(c))
		cubic_on_loss(&c->cc, c->now);
	else
		c->s.random_losses++;
}

static uint32_t reo_wnd(const stream_conn *c)
{
	uint32_t m = c->rtt.min_rtt ? c->rtt.min_rtt : c->rtt.srtt;

	return m ? m / 4 : 1000;
}

/* Ref keepalive window (packet.md §5.6, §5.13): ref sends its keepalive probes with
 * Window 0 meaning nothing (ref reads 0 as "unlimited" and never advertises a real
 * closed window). Rule: a Window 0 is ignored (the previous advertisement W stays)
 * when it comes on a pure ACK — flags exactly ACK, no payload (no data, no SACK
 * report) — while W >= STREAM_REF_KA_MIN_SLOTS and the segments acknowledged since
 * W was advertised (this ACK included: acked_segs) could not have filled it:
 * acked_segs * ceil(mss / 4096) < W - 1.
 * Why a real window never closes that way: it shrinks only as in-order data fills
 * the buffer, and that data is acknowledged by the ACK that closes it. Going from W
 * slots to 0 takes more than (W - 1) x 4096 bytes with 4096-byte slots (ours, ref:
 * at most ceil(mss / 4096) slots per segment), or W - 1 segments with one slot per
 * segment (new). So an idle ref keepalive (Ack not advancing) and one sent in the
 * middle of a transfer (Ack ahead by a few segments) are both recognised, while a
 * real close — also a sudden one when a retransmission fills a hole ahead of much
 * out-of-order data — and the answers to our zero-window probes (W already 0) are
 * honoured. */
static bool ref_keepalive_window(const stream_conn *c, const proto_hdr *h, bool has_data, int nb,
				 uint32_t acked_segs)
{
	uint64_t k = (c->p.mss + STREAM_WINDOW_UNIT - 1) / STREAM_WINDOW_UNIT;

	return h->window == 0 && (h->flags & 0x0F) == PROTO_ACK && !has_data && nb == 0 &&
	       c->peer_slots >= STREAM_REF_KA_MIN_SLOTS &&
	       (uint64_t)acked_segs * k + 1 < c->peer_slots;
}

/* Segments (partly) acknowledged by ack, counted generously (+1 for a partial). */
static uint32_t segs_acked_by(const stream_conn *c, uint32_t ack)
{
	uint32_t lo = 0, hi = c->sb.count;

	if (!seq_gt(ack, c->snd_una))
		return 0;
	while (lo < hi) { /* first segment not wholly below ack */
		uint32_t mid = lo + (hi - lo) / 2;
		const sack_seg *s = sack_at(&c->sb, mid);
		if (seq_leq(s->seq + s->len, ack))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo + 1;
}

/* The peer accepted our zero-window probe byte (its Ack is snd_nxt + 1 while
 * nothing else is in flight): it becomes sent and acknowledged data. */
static void zwp_commit(stream_conn *c)
{
	if (!c->zwp_probe || c->sb.count || c->snd_una != c->snd_nxt || c->fin_sent ||
	    ring_end(&c->snd) == c->snd_nxt_off)
		return;
	c->zwp_probe = false;
	c->snd_nxt++;
	c->snd_nxt_off++;
	c->snd_una = c->snd_nxt;
	c->s.bytes_sent++;
	ring_consume(&c->snd, 1);
	c->buf_used_at = c->now;
	notify_writable(c);
}

/* Returns false when the packet must be dropped (acknowledges unsent data). */
static bool process_ack(stream_conn *c, const proto_hdr *h, const proto_sack_block *b, int nb,
			bool has_data, bool update_window)
{
	uint32_t ack = h->ack, rtt_us = 0, old_slots = c->peer_slots;
	uint64_t acked = 0, pipe_before = sack_pipe(&c->sb), fresh_sack = 0;

	if (ack == c->snd_nxt + 1)
		zwp_commit(c);
	if (seq_gt(ack, c->snd_nxt)) {
		c->s.dropped++;
		c->ack_now = true;
		return false;
	}
	if (seq_lt(ack, c->snd_una))
		return true; /* old, reordered: nothing to learn from its Ack */
	{
		uint32_t segs = segs_acked_by(c, ack);
		if (update_window && ref_keepalive_window(c, h, has_data, nb, c->segs_since_wnd + segs)) {
			c->s.ref_zero_windows++;
			c->segs_since_wnd += segs;
		} else if (update_window) {
			c->peer_slots = h->window;
			c->segs_since_wnd = 0;
		} else {
			c->segs_since_wnd += segs;
		}
	}
	if (c->peer_slots) {
		c->zwp_at = 0;
		c->zwp_count = 0;
		c->zwp_gap = 0;
	}
	if (seq_gt(ack, c->snd_una)) {
		uint64_t data;
		bool lone = c->sb.count == 1;
		acked = sack_on_ack(&c->sb, ack, c->now, c->rtt.min_rtt, &rtt_us);
		data = acked;
		if (c->fin_sent && seq_gt(ack, c->fin_seq)) {
			if (!c->fin_acked)
				data--;
			c->fin_acked = true;
		}
		ring_consume(&c->snd, (size_t)data);
		if (data)
			c->buf_used_at = c->now;
		c->snd_una = ack;
		if (rtt_us)
			rtt_sample(&c->rtt, rtt_us);
		learn_delack(c, rtt_us, lone);
		tlp_on_ack(c, ack);
		c->rto_stalls = 0;
		c->rto_at = 0;
		if (data)
			notify_writable(c);
	} else if (!has_data && nb == 0 && c->sb.count && h->window == old_slots) {
		c->s.dup_acks++;
	}
	if (nb) {
		uint64_t lying = c->sb.lying_blocks;
		fresh_sack = sack_on_blocks(&c->sb, b, nb, c->snd_una, c->snd_nxt, c->now, c->rtt.min_rtt);
		c->s.sack_blocks_rcvd += (uint64_t)nb;
		c->s.sack_blocks_ignored += c->sb.lying_blocks - lying;
		if (fresh_sack)
			c->rto_stalls = 0;
	}
	if (acked || fresh_sack) {
		c->tlp_count = 0;
		c->tlp_restart = true;
	}
	if (c->sb.sacked_segs || c->recov != STREAM_RECOV_OPEN || c->sb.rack_ts) {
		if (sack_detect_loss(&c->sb, reo_wnd(c)))
			enter_recovery(c);
	}
	if (c->recov != STREAM_RECOV_OPEN && seq_geq(c->snd_una, c->recover) && !c->sb.lost_bytes)
		c->recov = STREAM_RECOV_OPEN;
	if (acked && c->recov != STREAM_RECOV_FAST) {
		bool limited = c->cwnd_blocked || pipe_before + c->p.mss >= c->cc.cwnd;
		cubic_on_ack(&c->cc, acked, c->now, rtt_us, c->rtt.srtt, ack, c->snd_nxt, limited);
		c->cwnd_blocked = false;
	}
	if (c->fin_acked)
		maybe_time_wait(c);
	arm_rto(c);
	return true;
}

static void check_fin(stream_conn *c)
{
	if (!c->peer_fin_known || c->fin_rcvd || rcv_nxt(c) != c->peer_fin_seq)
		return;
	c->fin_rcvd = true;
	c->last_fin_answer = c->now;
	if (c->fin_sent)
		emit(c, PROTO_FIN | PROTO_ACK, c->fin_seq, rcv_ack(c), NULL, 0);
	else
		send_ack(c);
	if (c->st == STREAM_ESTABLISHED || c->st == STREAM_SYN_RECV)
		set_state(c, STREAM_CLOSE_WAIT, 0);
	maybe_time_wait(c);
	notify_readable(c);
}

static void process_data(stream_conn *c, uint32_t seq, const uint8_t *pl, size_t len)
{
	int32_t rel = seq_diff(seq, rcv_nxt(c));
	uint64_t end = ring_end(&c->rcv), off;
	size_t adv = 0;
	bool had_ooo = c->rcv.nival > 0;
	int r;

	if (!can_recv_data(c)) {
		c->s.dropped++;
		return;
	}
	if ((int64_t)rel + (int64_t)len <= 0) {
		c->s.dup_data++;
		c->ack_now = true; /* the sender may have missed our ACK */
		return;
	}
	if (rel >= 0 && (uint64_t)rel >= ring_space(&c->rcv)) {
		c->s.dropped++;
		c->ack_now = true;
		return;
	}
	off = end + (int64_t)rel; /* wraps harmlessly when rel < 0: ring_insert trims */
	if (rel < 0)
		off = end - (uint64_t)(-(int64_t)rel);
	if (c->peer_fin_known) {
		uint64_t fin_off = end + (uint32_t)(c->peer_fin_seq - rcv_nxt(c));
		if (off >= fin_off) {
			c->s.dropped++;
			return;
		}
		if (off + len > fin_off)
			len = (size_t)(fin_off - off);
	}
	r = ring_insert(&c->rcv, off, pl, len, &adv);
	if (r < 0) {
		c->s.ooo_dropped++;
		c->ack_now = true;
		return;
	}
	if (r == 0)
		c->s.dup_data++;
	else
		c->buf_used_at = c->now;
	if (len > c->rcv_mss)
		c->rcv_mss = (uint32_t)len;
	if (adv) {
		c->s.bytes_rcvd += adv;
		notify_readable(c);
	}
	if (off > end) {
		c->s.ooo_segs++;
		c->ack_now = true;
	} else if (had_ooo || c->rcv.nival) {
		c->ack_now = true; /* filled (part of) a hole */
	} else if (++c->unacked_segs >= 2 || c->quickack) {
		if (c->quickack)
			c->quickack--;
		c->ack_now = true;
	} else if (len < c->rcv_mss) {
		c->small_seg = true; /* a request's tail: ACK after the app had its chance */
	} else if (!c->delack_at) {
		c->delack_at = c->now + c->p.delack_us;
	}
	check_fin(c);
}

static void on_fin(stream_conn *c, const proto_hdr *h)
{
	bool acks_our_fin = (h->flags & PROTO_ACK) && c->fin_sent && seq_gt(h->ack, c->fin_seq);

	if (c->st == STREAM_SYN_SENT || c->st == STREAM_CLOSED) {
		c->s.fin_ignored++;
		return;
	}
	if (h->flags & PROTO_ACK)
		process_ack(c, h, NULL, 0, false, false);
	if (c->peer_fin_known) {
		if (h->seq != c->peer_fin_seq || acks_our_fin || !c->fin_rcvd ||
		    c->now - c->last_fin_answer < FIN_ANSWER_GAP_US) {
			c->s.fin_ignored++;
			return;
		}
		c->last_fin_answer = c->now; /* our answer was lost: repeat it */
		if (c->fin_sent)
			emit(c, PROTO_FIN | PROTO_ACK, c->fin_seq, rcv_ack(c), NULL, 0);
		else
			send_ack(c);
		return;
	}
	{
		int32_t rel = seq_diff(h->seq, rcv_nxt(c));
		if (rel < 0 || (uint64_t)rel > ring_space(&c->rcv) || c->st == STREAM_TIME_WAIT) {
			c->s.fin_ignored++;
			return;
		}
		/* data already held beyond the FIN would contradict it */
		if (c->rcv.nival && c->rcv.ival[c->rcv.nival - 1].end > ring_end(&c->rcv) + (uint32_t)rel) {
			c->s.fin_ignored++;
			return;
		}
	}
	c->peer_fin_known = true;
	c->peer_fin_seq = h->seq;
	if (rcv_nxt(c) != h->seq)
		c->ack_now = true; /* data missing before the FIN: tell the sender (SACK) */
	check_fin(c);
}

static void flush_deferred(stream_conn *c)
{
	if (c->cb_readable) {
		c->cb_readable = false;
		if (c->cbs.on_readable)
			c->cbs.on_readable(c->ctx, c);
	}
	if (c->cb_writable) {
		c->cb_writable = false;
		if (c->cbs.on_writable)
			c->cbs.on_writable(c->ctx, c);
	}
}

static void on_ack_packet(stream_conn *c, const proto_hdr *h, const uint8_t *pl, size_t len)
{
	proto_sack_block b[PROTO_SACK_MAX_BLOCKS];
	int nb = len ? proto_sack_decode(pl, len, b) : 0;
	bool data = len && nb == 0;

	if (c->st == STREAM_SYN_SENT) {
		c->s.dropped++;
		return;
	}
	if (c->st == STREAM_SYN_RECV) {
		handshake_rtt(c);
		established(c);
	}
	if (!process_ack(c, h, b, nb, data, true))
		return;
	if (!len && (h->flags & 0x0F) == PROTO_ACK && seq_lt(h->seq, rcv_ack(c)) && !c->p.ref_quirks &&
	    c->st != STREAM_SYN_RECV && c->now - c->last_ka_answer >= KA_ANSWER_GAP_US) {
		/* a keepalive probe (Seq below what we acknowledged): answer it, so that
		 * the prober sees us alive; our answer carries the current Seq and is
		 * never answered in turn */
		c->last_ka_answer = c->now;
		c->ack_now = true;
	}
	if (data)
		process_data(c, h->seq, pl, len);
	else if (!len && c->last_wnd == 0 && our_window(c) > 0 && can_recv_data(c) && !c->p.ref_quirks)
		c->ack_now = true; /* a probe while our advertised window is stale */
}

int stream_input(stream_conn *c, const proto_hdr *h, const uint8_t *payload, size_t len,
		 uint64_t now_us)
{
	uint8_t f;

	if (!c || !h)
		return -EINVAL;
	if (now_us > c->now)
		c->now = now_us;
	c->s.segs_rcvd++;
	if (h->protocol != PROTO_STREAM || (len && !payload) || h->dst_port != c->lport ||
	    h->src_port != c->rport || c->st == STREAM_CLOSED) {
		c->s.dropped++;
		return -EINVAL;
	}
	f = h->flags & 0x0F;
	c->in_input++;
	if (f & (PROTO_SYN | PROTO_ACK | PROTO_FIN))
		c->last_rx = c->now;
	/* classification order of packet.md §5.1 */
	if ((f & PROTO_SYN) && !(f & PROTO_ACK))
		on_syn(c, h);
	else if (f & PROTO_SYN)
		on_syn_ack(c, h);
	else if (f & PROTO_FIN)
		on_fin(c, h);
	else if (f & PROTO_RST)
		on_rst(c, h);
	else if (f & PROTO_ACK)
		on_ack_packet(c, h, payload, len);
	else
		c->s.dropped++;
	output(c);
	c->in_input--;
	if (c->st != STREAM_CLOSED)
		flush_deferred(c);
	/* a small segment's ACK goes now unless the application answered already */
	if (c->small_seg && c->st != STREAM_CLOSED) {
		c->small_seg = false;
		send_ack(c);
	}
	housekeep(c);
	return 0;
}

/* ---- timers -------------------------------------------------------------------- */

static uint64_t min_dl(uint64_t a, uint64_t b)
{
	if (!b)
		return a;
	return a < b ? a : b;
}

uint64_t stream_next_deadline(const stream_conn *c)
{
	uint64_t d = UINT64_MAX;

	if (!c || c->st == STREAM_CLOSED)
		return UINT64_MAX;
	if (c->st == STREAM_TIME_WAIT)
		return c->tw_at;
	d = min_dl(d, c->syn_at);
	d = min_dl(d, c->rto_at);
	d = min_dl(d, c->tlp_at);
	d = min_dl(d, c->delack_at);
	d = min_dl(d, c->zwp_at);
	d = min_dl(d, c->rel_at);
	if (c->st == STREAM_ESTABLISHED || c->st == STREAM_CLOSE_WAIT || c->st == STREAM_FIN_WAIT) {
		if (c->p.keepalive_us)
			d = min_dl(d, (c->last_rx > c->last_ka ? c->last_rx : c->last_ka) + c->p.keepalive_us);
		if (c->p.idle_us && !c->zwp_at)
			d = min_dl(d, c->last_rx + c->p.idle_us);
	}
	if (c->pace_next > c->now && can_send_data(c) &&
	    (sack_next_lost((sack_sb *)&c->sb) >= 0 || ring_end(&c->snd) > c->snd_nxt_off))
		d = min_dl(d, c->pace_next);
	return d;
}

static void on_rto(stream_conn *c)
{
	c->rto_at = 0;
	if (!c->sb.count)
		return;
	if (++c->rto_stalls >= c->p.max_tx) {
		fail(c, ETIMEDOUT, true);
		return;
	}
	c->s.rto_timeouts++;
	c->tlp_episode = false;
	cubic_on_rto(&c->cc, c->recov == STREAM_RECOV_OPEN);
	rtt_backoff(&c->rtt, rnd32(c));
	/* forget SACK marks after repeated timeouts: the peer may have reneged */
	sack_mark_all_lost(&c->sb, c->rto_stalls >= 3);
	c->recov = STREAM_RECOV_RTO;
	c->recover = c->snd_nxt;
	c->pace_next = c->now;
	output(c);
	arm_rto(c);
}

static void on_handshake_timer(stream_conn *c)
{
	if (c->syn_tries >= c->p.syn_tries) {
		fail(c, ETIMEDOUT, false);
		return;
	}
	c->syn_tries++;
	send_syn(c);
	c->syn_gap = c->syn_gap * 2 > c->p.syn_rto_max_us ? c->p.syn_rto_max_us : c->syn_gap * 2;
	c->syn_at = c->now + c->syn_gap;
}

/* A zero-window probe carries the next unsent byte, one past the window, as TCP's
 * does (RFC 9293 §3.8.6.1): a receiver answers data, while a ref receiver never
 * answers a pure ACK and never sends a window update when its reader drains
 * (issue 15). Ref accepts in-order data whatever its window (it blocks until its
 * reader frees a slot, the way its own sender overruns a closed window) and
 * acknowledges it with its current window; ours drops a byte its buffer cannot
 * hold and answers with its window at once. The byte stays unsent (no segment,
 * no RTO) until an Ack of snd_nxt + 1 takes it (zwp_commit). */
static void zwp_send(stream_conn *c)
{
	const uint8_t *pl = snd_bytes(c, c->snd_nxt_off, 1);

	if (!pl) {
		send_ack(c);
		return;
	}
	c->zwp_probe = true;
	emit(c, PROTO_ACK, c->snd_nxt, rcv_ack(c), pl, 1);
}

static void on_zwp(stream_conn *c)
{
	c->zwp_at = 0;
	if (c->peer_slots || c->sb.count || ring_end(&c->snd) == c->snd_nxt_off)
		return;
	if (++c->zwp_count > c->p.zwp_max) {
		fail(c, ETIMEDOUT, true);
		return;
	}
	c->s.zwp_sent++;
	zwp_send(c);
	c->zwp_gap = c->zwp_gap * 2 > ZWP_MAX_US ? ZWP_MAX_US : c->zwp_gap * 2;
	c->zwp_at = c->now + c->zwp_gap;
}

static void on_idle_timers(stream_conn *c)
{
	if (c->st != STREAM_ESTABLISHED && c->st != STREAM_CLOSE_WAIT && c->st != STREAM_FIN_WAIT)
		return;
	/* Not while probing a closed peer window: the peer acknowledged everything and
	 * answers probes only once its window opens (pure ACKs are never acknowledged),
	 * so a reader that pauses longer than the idle timeout would get its connection
	 * reset. The probe give-up (zwp_max) bounds that state instead. */
	if (c->p.idle_us && !c->zwp_at && c->now >= c->last_rx + c->p.idle_us) {
		if (!c->fin_sent)
			emit(c, PROTO_FIN, c->snd_nxt, rcv_ack(c), NULL, 0);
		fail(c, ETIMEDOUT, false);
		return;
	}
	if (c->p.keepalive_us &&
	    c->now >= (c->last_rx > c->last_ka ? c->last_rx : c->last_ka) + c->p.keepalive_us) {
		c->last_ka = c->now;
		c->s.keepalives_sent++;
		/* Seq one below the next unsent byte (already acknowledged): our peers
		 * answer it (on_ack_packet); ref and new ignore Seq on a pure ACK */
		emit(c, PROTO_ACK, c->snd_nxt - 1, rcv_ack(c), NULL, 0);
	}
}

void stream_on_timer(stream_conn *c, uint64_t now_us)
{
	if (!c || c->st == STREAM_CLOSED)
		return;
	if (now_us > c->now)
		c->now = now_us;
	if (c->st == STREAM_TIME_WAIT) {
		if (c->now >= c->tw_at)
			set_state(c, STREAM_CLOSED, 0);
		housekeep(c);
		return;
	}
	if (c->rel_at && c->now >= c->rel_at)
		on_release_timer(c);
	if (c->syn_at && c->now >= c->syn_at)
		on_handshake_timer(c);
	if (c->rto_at && c->now >= c->rto_at && c->st != STREAM_CLOSED)
		on_rto(c);
	if (c->tlp_at && c->now >= c->tlp_at && c->st != STREAM_CLOSED)
		on_tlp(c);
	if (c->zwp_at && c->now >= c->zwp_at && c->st != STREAM_CLOSED)
		on_zwp(c);
	if (c->st != STREAM_CLOSED)
		on_idle_timers(c);
	if (c->delack_at && c->now >= c->delack_at && c->st != STREAM_CLOSED)
		send_ack(c);
	if (c->st != STREAM_CLOSED)
		output(c);
	housekeep(c);
}

/* ---- application side ------------------------------------------------------------ */

size_t stream_write(stream_conn *c, const void *buf, size_t len, uint64_t now_us)
{
	size_t n;

	if (!c || c->fin_queued || !(can_send_data(c) || c->st == STREAM_SYN_SENT))
		return 0;
	if (now_us > c->now)
		c->now = now_us;
	n = ring_append(&c->snd, buf, len);
	if (n)
		c->buf_used_at = c->now;
	if (n < len)
		c->want_write = true;
	if (!c->in_input)
		output(c);
	housekeep(c);
	return n;
}

static void after_read(stream_conn *c)
{
	uint32_t w = our_window(c);

	if (!can_recv_data(c) || c->p.ref_quirks)
		return;
	/* window update when it re-opens or grew by half the buffer */
	if ((c->last_wnd == 0 && w > 0) || w >= c->last_wnd + c->p.rcvbuf / STREAM_WINDOW_UNIT / 2)
		send_ack(c);
}

size_t stream_read(stream_conn *c, void *buf, size_t len, uint64_t now_us)
{
	size_t n;

	if (!c)
		return 0;
	if (now_us > c->now)
		c->now = now_us;
	n = ring_copy_out(&c->rcv, c->rcv.base, buf, len);
	ring_consume(&c->rcv, n);
	if (n) {
		c->buf_used_at = c->now;
		after_read(c);
		housekeep(c);
	}
	return n;
}

size_t stream_peek(stream_conn *c, const uint8_t **p)
{
	return c ? ring_peek(&c->rcv, c->rcv.base, p) : 0;
}

void stream_consume(stream_conn *c, size_t n, uint64_t now_us)
{
	if (!c)
		return;
	if (now_us > c->now)
		c->now = now_us;
	ring_consume(&c->rcv, n);
	if (n) {
		c->buf_used_at = c->now;
		after_read(c);
		housekeep(c);
	}
}

size_t stream_readable(const stream_conn *c)
{
	return c ? c->rcv.len : 0;
}

size_t stream_writable(const stream_conn *c)
{
	return c && !c->fin_queued ? ring_space(&c->snd) : 0;
}

void stream_want_writable(stream_conn *c)
{
	if (c && !c->fin_queued)
		c->want_write = true;
}

bool stream_eof(const stream_conn *c)
{
	return c && c->fin_rcvd && c->rcv.len == 0;
}

void stream_shutdown_write(stream_conn *c, uint64_t now_us)
{
	if (!c || c->fin_queued)
		return;
	if (now_us > c->now)
		c->now = now_us;
	c->fin_queued = true;
	if (c->st == STREAM_ESTABLISHED || c->st == STREAM_SYN_RECV)
		set_state(c, STREAM_FIN_WAIT, 0);
	if (!c->in_input)
		output(c);
	housekeep(c);
}

void stream_abort(stream_conn *c, uint64_t now_us)
{
	if (!c || c->st == STREAM_CLOSED)
		return;
	if (now_us > c->now)
		c->now = now_us;
	fail(c, 0, c->st != STREAM_TIME_WAIT);
	housekeep(c);
}

void stream_set_nodelay(stream_conn *c, bool on)
{
	if (!c)
		return;
	c->p.nodelay = on;
	if (on && !c->in_input)
		output(c);
}

enum stream_state stream_state(const stream_conn *c)
{
	return c ? c->st : STREAM_CLOSED;
}

void *stream_ctx(const stream_conn *c)
{
	return c ? c->ctx : NULL;
}

void stream_get_stats(const stream_conn *c, stream_stats *st)
{
	uint64_t out = (uint32_t)(c->snd_nxt - c->snd_una), wnd = peer_window_bytes(c);

	*st = c->s;
	st->cwnd = c->cc.cwnd;
	st->ssthresh = c->cc.ssthresh;
	st->in_flight = sack_pipe(&c->sb);
	st->srtt_us = c->rtt.srtt;
	st->rttvar_us = c->rtt.rttvar;
	st->rto_us = c->rtt.rto;
	st->min_rtt_us = c->rtt.min_rtt;
	st->recovery = c->recov;
	st->hystart_exits = c->cc.hystart_exits;
	st->peer_window = wnd > out ? wnd - out : 0;
	st->our_window = our_window(c);
	st->ooo_intervals = (uint32_t)c->rcv.nival;
	st->snd_buffered = c->snd.len;
	st->rcv_buffered = c->rcv.len;
	st->mem_bytes = stream_mem(c);
	st->mss = c->p.mss;
}

size_t stream_mem(const stream_conn *c)
{
	if (!c)
		return 0;
	return sizeof(*c) + ring_mem(&c->snd) + ring_mem(&c->rcv) + sack_mem(&c->sb) +
	       (c->tx ? c->p.mss : 0);
}

size_t stream_mem_in_use(void)
{
	return ring_mem_in_use();
}
