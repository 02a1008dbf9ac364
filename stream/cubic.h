/* CUBIC congestion control (RFC 9438, C = 0.4, beta = 0.7, fast convergence,
 * Reno-friendly region) with HyStart++ slow-start exit (RFC 9406) so slow start
 * leaves on RTT rise instead of overshooting into mass loss, plus a per-ACK delay
 * rule (min of the latest 4 samples >= smallest RTT + clamp(smallest / 8, 1 ms,
 * 16 ms): exit to congestion avoidance at once) that catches a queue building
 * within a round, before a one-BDP buffer overflows. cwnd and ssthresh are
 * in bytes; the cubic function works in segments of mss bytes. Pure: the caller
 * passes time, RTT samples and sequence numbers in. */
#ifndef PILOT_CUBIC_H
#define PILOT_CUBIC_H

#include <stdbool.h>
#include <stdint.h>

#define CUBIC_C    0.4
#define CUBIC_BETA 0.7

enum cubic_phase { CUBIC_SS = 0, CUBIC_CSS, CUBIC_CA };

typedef struct cubic {
	uint32_t mss;
	uint64_t cwnd, ssthresh, max_cwnd;
	enum cubic_phase phase;
	/* cubic epoch (segments / seconds) */
	uint64_t epoch_start;     /* us; 0 = no epoch */
	double w_max, k, cwnd_epoch, w_est;
	/* HyStart++ per-round state */
	uint32_t round_end;       /* round ends when an ACK reaches this seq */
	bool round_started;
	uint32_t last_round_min, cur_round_min, css_baseline; /* us; UINT32_MAX = none */
	uint32_t rtt_count;
	uint32_t css_rounds;
	uint32_t hystart_exits;   /* times HyStart++ ended slow start */
	/* per-ACK delay detection */
	uint32_t base_rtt;        /* smallest sample seen; 0 = none */
	uint32_t win[4];          /* latest samples (min filter, HS_ACK_FILTER) */
	uint32_t nwin;
	uint32_t delay_exits;     /* of hystart_exits: by the per-ACK rule */
} cubic;

void cubic_init(cubic *c, uint32_t mss, uint64_t init_cwnd, uint64_t ssthresh, uint64_t max_cwnd);
/* acked bytes newly acknowledged; rtt_us = RTT sample of this ACK or 0;
 * ack/snd_nxt = sequence numbers (HyStart++ rounds); cwnd_limited = the sender
 * was limited by cwnd (no growth while application-limited); srtt_us for the
 * cubic target W(t + RTT). */
void cubic_on_ack(cubic *c, uint64_t acked, uint64_t now_us, uint32_t rtt_us,
		  uint32_t srtt_us, uint32_t ack, uint32_t snd_nxt, bool cwnd_limited);
/* A congestion event (loss detected by SACK/dupacks): multiplicative decrease. */
void cubic_on_loss(cubic *c, uint64_t now_us);
/* Retransmission timeout: cwnd = 1 MSS; also_reduce = this timeout starts a new
 * congestion event (not already in recovery). */
void cubic_on_rto(cubic *c, bool also_reduce);

#endif
