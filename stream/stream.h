/* Pilot stream transport engine (packet.md §5): a pure, sans-IO state machine for
 * one connection. No sockets, no clock reads, no global state: the caller feeds
 * received packets and the current time in, the engine transmits through the xmit
 * callback and reports its next timer deadline. Buffers (send ring, receive ring
 * with in-place reassembly, segment table) are lazy: a new connection holds only
 * its struct; each buffer grows geometrically (powers of two up to sndbuf / rcvbuf /
 * the segment limit) when data needs room and is freed again after release_us
 * without buffer activity while it is empty. Allocation is rare and amortised,
 * never per packet (except with release_us = 0). The advertised window is always
 * computed from the configured rcvbuf, not from what is allocated.
 *
 * Calling pattern:
 *   c = stream_dial(...)            sends the SYN
 *   c = stream_accept(..., syn, ...) sends the SYN-ACK
 *   on every packet for the 4-tuple: stream_input(c, hdr, payload, len, now)
 *   when now >= stream_next_deadline(c): stream_on_timer(c, now)
 *   application: stream_write / stream_read (or peek/consume), stream_shutdown_write,
 *   stream_abort; stream_free when done (the engine never frees itself).
 * Callbacks may be invoked from any of these calls; a callback must not call
 * stream_free on the connection (defer it), but may call stream_read/stream_write.
 *
 * Wire choices (see stream.c for the reasoning):
 *  - ISN 0 both ways; SYN consumes 1; our FIN consumes 1 (new style) and is held until
 *    our data is acknowledged; a ref FIN (no seq consumed) is handled too.
 *  - Window field = free receive bytes / 4096, clamped to 65535; 0 means closed.
 *    A peer's Window is honoured as window x mss bytes and at most window segments.
 *    Except: a Window 0 on a pure ACK (flags ACK only, no payload) after an
 *    advertisement of W >= STREAM_REF_KA_MIN_SLOTS, when the segments acknowledged
 *    since W (this ACK included) x ceil(mss / 4096) < W - 1, is a ref keepalive
 *    probe (ref sends 0 meaning "no limit", packet.md §5.6/§5.13) and is ignored
 *    (counted in stats.ref_zero_windows): a real window closes only as data fills
 *    it, and that data is acknowledged by the closing ACK. An idle ref keepalive
 *    (Ack not advancing) is the typical case.
 *  - Simultaneous open: a SYN (no ACK) on a connection in SYN_SENT is a crossing SYN
 *    (RFC 793 §3.4): SYN_RECV, answer SYN-ACK; the peer's SYN-ACK acknowledging our
 *    SYN (or any ACK) then makes it ESTABLISHED. A ref peer answers a crossing SYN
 *    with RST unless it listens on the port (its listener re-sends a SYN-ACK with
 *    Ack 0, which we ignore; its ACK completes the handshake).
 *  - Zero-window probes carry one byte of new data past the window (TCP style): ref
 *    answers data only, never a pure ACK, and sends no window update of its own.
 *  - Keepalive probes: a pure ACK with Seq = next unsent - 1 (TCP style; ref and new
 *    ignore Seq on pure ACKs). A pure ACK whose Seq lies below what we acknowledge is
 *    answered with an ACK (at most every 100 ms), so idle connections between our
 *    nodes stay open (packet.md §9.10); ref/new never answer, as before.
 *  - RST: accepted in SYN_SENT, otherwise only with seq 0 (what ref and new send) or
 *    seq inside our receive window; never in TIME_WAIT.
 *  - SACK blocks: the block with the latest arrival first, then the highest others. */
#ifndef PILOT_STREAM_H
#define PILOT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "lib/proto.h"

typedef struct stream_conn stream_conn;

/* Names as in cli.md §10.3. */
enum stream_state {
	STREAM_CLOSED = 0,
	STREAM_LISTEN,
	STREAM_SYN_SENT,
	STREAM_SYN_RECV,
	STREAM_ESTABLISHED,
	STREAM_FIN_WAIT,   /* we sent (or queued) our FIN; the peer may still send */
	STREAM_CLOSE_WAIT, /* the peer's FIN arrived; we may still send */
	STREAM_TIME_WAIT,  /* both directions finished */
};

const char *stream_state_name(enum stream_state s);

#define STREAM_DEFAULT_MSS 1368u /* fits IPv6 + UDP + relay + PILS + header in 1500 */
#define STREAM_WINDOW_UNIT 4096u /* bytes per advertised slot */
#define STREAM_REF_KA_MIN_SLOTS 4u /* see the ref keepalive window rule above */

typedef struct stream_params {
	uint32_t mss;           /* payload bytes per segment (default 1368) */
	uint32_t sndbuf;        /* send buffer bytes (default 4 MiB) */
	uint32_t rcvbuf;        /* receive buffer bytes (default 4 MiB) */
	bool nodelay;           /* disable Nagle */
	bool pacing;            /* pace transmissions at gain * cwnd / srtt (default on) */
	uint32_t delack_us;     /* delayed-ACK timer (default 5 ms) */
	uint32_t quickack;      /* segments acknowledged at once at the start (32) */
	uint32_t keepalive_us;  /* idle time before a keepalive probe; 0 = off (60 s) */
	uint32_t idle_us;       /* idle time before closing; 0 = off (120 s) */
	uint32_t time_wait_us;  /* TIME_WAIT duration (10 s) */
	uint32_t syn_rto_us;    /* first SYN retry (250 ms), doubling */
	uint32_t syn_rto_max_us;/* cap (8 s) */
	uint32_t syn_tries;     /* SYN transmissions before ETIMEDOUT (7) */
	uint32_t max_tx;        /* transmissions of one segment before giving up (8) */
	uint32_t zwp_max;       /* zero-window probes before RST (30) */
	uint32_t init_cwnd;     /* bytes (10 * mss) */
	uint32_t max_cwnd;      /* bytes (sndbuf) */
	uint64_t seed;          /* jitter PRNG seed */
	uint32_t release_us;    /* free empty buffers after this long without buffer
				 * activity (1 s); 0 = as soon as they are empty */
	bool ref_quirks;        /* testing only: receive like the reference daemon (no
				 * window update when the reader drains, no answer to a
				 * pure ACK), so tests can reproduce its peers (issue 15) */
} stream_params;

/* Fill p with the defaults above. */
void stream_params_default(stream_params *p);

typedef struct stream_cbs {
	/* Transmit one packet: every header field is filled in (version 1, flags,
	 * protocol 1, payload_len, addresses, ports, seq, ack, window; checksum 0).
	 * The caller adds the checksum and tunnel framing. payload is valid only for
	 * the duration of the call. */
	void (*xmit)(void *ctx, stream_conn *c, const proto_hdr *h, const uint8_t *payload, size_t len);
	void (*on_readable)(void *ctx, stream_conn *c);  /* new data or EOF */
	void (*on_writable)(void *ctx, stream_conn *c);  /* send buffer space freed */
	/* err: 0, ECONNRESET, ETIMEDOUT, ECONNREFUSED */
	void (*on_state)(void *ctx, stream_conn *c, enum stream_state old, enum stream_state now, int err);
} stream_cbs;

enum stream_recovery { STREAM_RECOV_OPEN = 0, STREAM_RECOV_FAST, STREAM_RECOV_RTO };

typedef struct stream_stats {
	uint64_t bytes_sent, bytes_rcvd;       /* payload bytes, first transmissions / new in-order */
	uint64_t segs_sent, segs_rcvd;         /* all packets */
	uint64_t retransmits, fast_retransmits, rto_timeouts;
	uint64_t random_losses;                /* loss episodes without RTT inflation: no cwnd cut */
	uint64_t sack_blocks_sent, sack_blocks_rcvd, sack_blocks_ignored;
	uint64_t dup_acks, dup_data;
	uint64_t ooo_segs, ooo_dropped;
	uint64_t dropped;                      /* malformed / out-of-window / unexpected */
	uint64_t rst_ignored, fin_ignored, syn_ignored;
	uint64_t zwp_sent, keepalives_sent;
	uint64_t tlp_probes;                   /* tail-loss probes sent (RFC 8985 §7) */
	uint64_t tlp_recoveries;               /* ... whose ACK shows they repaired a loss */
	uint64_t reo_timeouts;                 /* RACK reordering timer marked holes lost */
	uint64_t cwnd, ssthresh, in_flight;    /* bytes */
	uint32_t srtt_us, rttvar_us, rto_us, min_rtt_us;
	enum stream_recovery recovery;
	uint32_t hystart_exits;
	uint64_t peer_window;                  /* bytes we may still send by the peer's window */
	uint32_t our_window;                   /* slots we advertise */
	uint32_t ooo_intervals;
	uint64_t snd_buffered, rcv_buffered;
	uint64_t mem_bytes;                    /* heap held by this connection now (stream_mem) */
	uint64_t ref_zero_windows;             /* Window 0 ignored as a ref keepalive */
	uint32_t mss;                          /* payload bytes per segment we send */
} stream_stats;

/* Change the segment size (64..65535) before the first data segment leaves (a
 * dialer learns its peer's path only once the handshake is done). 0, -EBUSY (data
 * already sent), -EINVAL. */
int stream_set_mss(stream_conn *c, uint32_t mss);

stream_conn *stream_dial(const stream_params *p, pilot_addr local, uint16_t lport,
			 pilot_addr remote, uint16_t rport, const stream_cbs *cbs, void *ctx,
			 uint64_t now_us);
/* Listener side: syn is the received SYN (its dst is our address). Sends the SYN-ACK. */
stream_conn *stream_accept(const stream_params *p, const proto_hdr *syn, const stream_cbs *cbs,
			   void *ctx, uint64_t now_us);
void stream_free(stream_conn *c);

/* A received stream packet for this connection (checksum already verified).
 * Returns 0, or -EINVAL when the packet was dropped (counted in stats). */
int stream_input(stream_conn *c, const proto_hdr *h, const uint8_t *payload, size_t len,
		 uint64_t now_us);
uint64_t stream_next_deadline(const stream_conn *c); /* µs; UINT64_MAX = none */
void stream_on_timer(stream_conn *c, uint64_t now_us);

/* Queue data; returns bytes accepted (0 when full: wait for on_writable), or 0 after
 * shutdown_write / in a closed state. */
size_t stream_write(stream_conn *c, const void *buf, size_t len, uint64_t now_us);
/* Copy out in-order data. Returns bytes; 0 with stream_eof() = end of stream. */
size_t stream_read(stream_conn *c, void *buf, size_t len, uint64_t now_us);
/* Zero-copy: contiguous readable span (may be shorter than stream_readable()). */
size_t stream_peek(stream_conn *c, const uint8_t **p);
void stream_consume(stream_conn *c, size_t n, uint64_t now_us);
size_t stream_readable(const stream_conn *c);
size_t stream_writable(const stream_conn *c);
/* on_writable once an acknowledgement frees send room, even without a short write */
void stream_want_writable(stream_conn *c);
bool stream_eof(const stream_conn *c); /* peer's FIN reached and all data read */

void stream_shutdown_write(stream_conn *c, uint64_t now_us); /* FIN after our data */
void stream_abort(stream_conn *c, uint64_t now_us);          /* RST, CLOSED */
void stream_set_nodelay(stream_conn *c, bool on);

enum stream_state stream_state(const stream_conn *c);
void stream_get_stats(const stream_conn *c, stream_stats *st);
void *stream_ctx(const stream_conn *c);

/* Heap bytes held by one connection now (struct, rings, interval list, segment
 * table, scratch), and by all connections of the process (bytes requested from
 * malloc, without malloc's own overhead; relaxed atomic counter). */
size_t stream_mem(const stream_conn *c);
size_t stream_mem_in_use(void);

#endif
