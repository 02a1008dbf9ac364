/* A sans-IO userspace TCP endpoint that terminates ONE kernel TCP connection seen
 * through the TUN device (one kernel TCP flow == one Pilot stream). No sockets, no
 * clock reads, no global state: the caller feeds parsed packets and the time in, the
 * endpoint emits whole IP packets through cbs->emit and reports its next deadline.
 * The endpoint is allocated at creation; its send ring toward the kernel, receive
 * ring from the kernel and packet buffer of params.mtu bytes once each, on first
 * use (an idle flow holds none of them; segments without payload are built on the
 * stack); nothing per packet.
 *
 * Calling pattern (the bridge in daemon/):
 *   outbound: ep = tcpep_from_syn(kernel's SYN)     SYN held, nothing sent
 *             Pilot stream established → tcpep_accept(ep)   SYN-ACK
 *             Pilot RST / unreachable  → tcpep_refuse(ep)   RST (ECONNREFUSED at once)
 *   inbound:  ep = tcpep_connect(peer's mapped IP, Pilot remote port, our TUN IP, P)
 *             → SYN to the kernel; SYN-ACK → ESTABLISHED, RST → CLOSED(ECONNREFUSED)
 *   every TCP packet of the flow: tcpep_input(ep, ip, tcp, now)
 *   when now >= tcpep_next_deadline(ep): tcpep_on_timer(ep, now)
 *   data: tcpep_write (toward the kernel), tcpep_read / peek+consume (from it),
 *         tcpep_set_rcv_space (what the Pilot side can take: caps our window),
 *         tcpep_shutdown (FIN after queued data), tcpep_abort (RST).
 * Callbacks may run from any of these calls; they must not free the endpoint (defer
 * that), but may read and write. The endpoint never frees itself.
 *
 * Choices (the kernel is local: loss only when it drops on overload):
 *  - No congestion control; sending is limited by the kernel's window only.
 *  - Loss recovery: fast retransmit on 3 duplicate ACKs (NewReno-style partial ACKs),
 *    go-back-N on RTO (RFC 6298 estimator, Karn's rule; min RTO 200 ms because the
 *    kernel may delay an ACK up to 40+ ms).
 *  - Out-of-order data from the kernel is dropped (answered by a duplicate ACK): it
 *    only happens after we dropped a segment, and the kernel retransmits in order.
 *  - Window scale offered (>= 7, more if rcvbuf needs it); MSS from the TUN MTU;
 *    no SACK, no timestamps. Persist probes (seq = una - 1) on a zero window.
 *  - ACK every second full segment, at once on PSH/FIN/out-of-order, else after
 *    delack_us. TIME_WAIT lasts time_wait_us (the kernel keeps the real one). */
#ifndef PILOT_TUN_TCPEP_H
#define PILOT_TUN_TCPEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tun/ip.h"

typedef struct tcpep tcpep;

enum tcpep_state {
	TCPEP_CLOSED = 0,
	TCPEP_SYN_HELD,    /* the kernel's SYN is held until accept/refuse */
	TCPEP_SYN_SENT,    /* our SYN to the kernel (inbound Pilot connection) */
	TCPEP_SYN_RCVD,    /* SYN-ACK sent */
	TCPEP_ESTABLISHED,
	TCPEP_FIN_WAIT_1,  /* our FIN sent, not acknowledged */
	TCPEP_FIN_WAIT_2,  /* our FIN acknowledged; the kernel may still send */
	TCPEP_CLOSING,     /* both FINs sent, ours not acknowledged */
	TCPEP_TIME_WAIT,
	TCPEP_CLOSE_WAIT,  /* the kernel's FIN arrived; we may still send */
	TCPEP_LAST_ACK,    /* our FIN after theirs, not acknowledged */
};

const char *tcpep_state_name(enum tcpep_state s);

typedef struct tcpep_params {
	uint32_t mtu;           /* TUN MTU (65535): our MSS = mtu - 40 (IPv4) / - 60 (IPv6) */
	uint32_t sndbuf;        /* bytes queued toward the kernel (4 MiB) */
	uint32_t rcvbuf;        /* bytes received from the kernel, unread (4 MiB) */
	uint8_t wscale;         /* window scale we offer, at least (7) */
	uint32_t rto_init_us;   /* 1 s (RFC 6298) */
	uint32_t rto_min_us;    /* 200 ms */
	uint32_t rto_max_us;    /* 30 s */
	uint32_t max_rexmit;    /* RTOs in a row before ETIMEDOUT (8) */
	uint32_t delack_us;     /* delayed-ACK timer (1 ms) */
	uint32_t time_wait_us;  /* 1 s */
	uint32_t iss;           /* initial sequence number; 0 = derived from the time + tuple */
	uint8_t ttl;            /* IP TTL / hop limit of what we emit (64) */
	bool gso;               /* with cbs->emit_gso: data segments of up to 64 KiB, their
				 * TCP checksum left to the kernel (TUN vnet_hdr offloads) */
} tcpep_params;

void tcpep_params_default(tcpep_params *p);

typedef struct tcpep_cbs {
	/* One complete IP packet for the TUN; valid only during the call. */
	void (*emit)(void *ctx, const uint8_t *pkt, size_t len);
	void (*on_readable)(void *ctx, tcpep *ep);   /* new data or EOF from the kernel */
	void (*on_writable)(void *ctx, tcpep *ep);   /* the kernel acknowledged data: room */
	/* err: 0, ECONNREFUSED (RST to our SYN, or refused), ECONNRESET, ETIMEDOUT */
	void (*on_state)(void *ctx, tcpep *ep, enum tcpep_state old, enum tcpep_state now, int err);
	/* With params.gso (else unused, may be NULL): a data segment whose TCP checksum
	 * field holds only the pseudo-header sum (the kernel completes it: NEEDS_CSUM at
	 * the TCP header, offset 16); gso_size > 0 when the payload is larger than the
	 * kernel's MSS: the kernel cuts it into segments of gso_size payload bytes. */
	void (*emit_gso)(void *ctx, const uint8_t *pkt, size_t len, uint16_t gso_size);
} tcpep_cbs;

typedef struct tcpep_stats {
	enum tcpep_state state;
	uint64_t bytes_sent, bytes_rcvd;   /* payload: first transmissions / new in-order */
	uint64_t segs_sent, segs_rcvd;     /* every packet emitted / accepted for input */
	uint64_t retransmits, fast_retransmits, rto_timeouts, probes_sent;
	uint64_t dup_acks, dup_data, ooo_dropped, dropped; /* dropped: unacceptable segments */
	uint64_t stale_resets;             /* RSTs to an older kernel connection our SYN met */
	uint32_t snd_mss, rcv_mss;         /* segment sizes each way */
	uint8_t snd_wscale, rcv_wscale;    /* 0xff = scaling not in use */
	uint64_t snd_wnd;                  /* the kernel's window, bytes */
	uint64_t rcv_wnd;                  /* our advertised window, bytes */
	uint64_t in_flight, snd_buffered, rcv_buffered;
	uint32_t srtt_us, rttvar_us, rto_us;
} tcpep_stats;

/* From a kernel SYN (ip/tcp as parsed; the checksum is the caller's business).
 * Nothing is sent. NULL if the packet is not a bare SYN or on ENOMEM. */
tcpep *tcpep_from_syn(const tcpep_params *p, const tun_ip *ip, const tun_tcp *syn,
		      const tcpep_cbs *cbs, void *ctx, uint64_t now_us);
/* Answer the held SYN with a SYN-ACK (0), or -EINVAL if not SYN_HELD. */
int tcpep_accept(tcpep *ep, uint64_t now_us);
/* Answer the held SYN with RST|ACK and go CLOSED (no on_state for a refusal). */
int tcpep_refuse(tcpep *ep, uint64_t now_us);

/* Send a SYN to the kernel: our packets go local:lport -> remote:rport. */
tcpep *tcpep_connect(const tcpep_params *p, const tun_ipaddr *local, uint16_t lport,
		     const tun_ipaddr *remote, uint16_t rport, const tcpep_cbs *cbs, void *ctx,
		     uint64_t now_us);

void tcpep_free(tcpep *ep); /* NULL-safe; sends nothing */

/* A TCP packet of this flow (ip->src/dst and ports must match; not re-checked).
 * Returns 0, or -EINVAL when the segment was unacceptable (counted in stats). */
int tcpep_input(tcpep *ep, const tun_ip *ip, const tun_tcp *tcp, uint64_t now_us);
uint64_t tcpep_next_deadline(const tcpep *ep); /* µs; UINT64_MAX = none */
void tcpep_on_timer(tcpep *ep, uint64_t now_us);

/* Toward the kernel. Returns bytes queued (0 when full, after shutdown, or closed).
 * Data queued before the handshake completes is sent once it does. */
size_t tcpep_write(tcpep *ep, const void *buf, size_t len, uint64_t now_us);
size_t tcpep_writable(const tcpep *ep);
/* Queue a FIN after the queued data (half-close). */
void tcpep_shutdown(tcpep *ep, uint64_t now_us);
/* Send RST (if the connection is synchronized or our SYN is out) and go CLOSED. */
void tcpep_abort(tcpep *ep, uint64_t now_us);

/* From the kernel. */
size_t tcpep_read(tcpep *ep, void *buf, size_t len, uint64_t now_us);
size_t tcpep_peek(const tcpep *ep, const uint8_t **p); /* contiguous span */
void tcpep_consume(tcpep *ep, size_t n, uint64_t now_us);
size_t tcpep_readable(const tcpep *ep);
bool tcpep_eof(const tcpep *ep); /* the kernel's FIN arrived and all data was read */
/* Cap our advertised window at bytes (what the Pilot side can still take); the right
 * edge never moves back. Default: no cap (the receive ring's room). */
void tcpep_set_rcv_space(tcpep *ep, size_t bytes, uint64_t now_us);

enum tcpep_state tcpep_state(const tcpep *ep);
void tcpep_get_stats(const tcpep *ep, tcpep_stats *st);
void *tcpep_ctx(const tcpep *ep);

/* A stateless RST answering a segment that matches no endpoint (RFC 793 "reset
 * generation"): nothing for an RST. Returns the packet length, 0 when no reply is
 * due, or a TUN_IP_E* code. */
int tcpep_reset_reply(const tun_ip *ip, const tun_tcp *tcp, uint8_t *out, size_t outcap);

#endif
