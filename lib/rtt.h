/* RFC 6298 round-trip estimator: SRTT/RTTVAR with alpha 1/8, beta 1/4,
 * RTO = SRTT + max(G, 4*RTTVAR) clamped to [min, max], first sample SRTT = R,
 * RTTVAR = R/2; exponential backoff x2 with 0-25 % jitter (packet.md §5.9).
 * Times in microseconds. Karn's rule is the caller's job (only feed samples from
 * segments transmitted once). */
#ifndef PILOT_RTT_H
#define PILOT_RTT_H

#include <stdint.h>

#define RTT_RTO_INIT_US 1000000u
#define RTT_RTO_MIN_US  200000u
#define RTT_RTO_MAX_US  10000000u
#define RTT_G_US        10000u

typedef struct rtt_est {
	uint32_t srtt, rttvar;    /* 0 until the first sample */
	uint32_t min_rtt;         /* smallest sample seen */
	uint32_t latest;          /* most recent sample */
	uint32_t rto;             /* current RTO including backoff */
	uint32_t rto_min, rto_max, g;
	uint32_t backoffs;        /* consecutive backoffs since the last sample */
} rtt_est;

void rtt_init(rtt_est *r, uint32_t rto_init, uint32_t rto_min, uint32_t rto_max, uint32_t g);
void rtt_sample(rtt_est *r, uint32_t sample_us);
/* Double the RTO (capped) and add jitter: rnd is any 32-bit random value, the
 * jitter is rnd * 25 % / 2^32 of the doubled RTO. */
void rtt_backoff(rtt_est *r, uint32_t rnd);
/* The RTO computed from SRTT/RTTVAR without backoff. */
uint32_t rtt_base_rto(const rtt_est *r);

#endif
