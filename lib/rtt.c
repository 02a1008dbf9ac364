/* RFC 6298 estimator; see rtt.h. */
#include "lib/rtt.h"

void rtt_init(rtt_est *r, uint32_t rto_init, uint32_t rto_min, uint32_t rto_max, uint32_t g)
{
	*r = (rtt_est){ .rto = rto_init, .rto_min = rto_min, .rto_max = rto_max, .g = g };
}

static uint32_t clamp_rto(const rtt_est *r, uint64_t v)
{
	if (v < r->rto_min)
		return r->rto_min;
	if (v > r->rto_max)
		return r->rto_max;
	return (uint32_t)v;
}

uint32_t rtt_base_rto(const rtt_est *r)
{
	uint32_t var4 = r->rttvar * 4u;

	if (r->srtt == 0)
		return r->rto;
	return clamp_rto(r, (uint64_t)r->srtt + (var4 > r->g ? var4 : r->g));
}

void rtt_sample(rtt_est *r, uint32_t m)
{
	if (m == 0)
		m = 1;
	if (r->srtt == 0) {
		r->srtt = m;
		r->rttvar = m / 2;
		r->min_rtt = m;
	} else {
		uint32_t err = r->srtt > m ? r->srtt - m : m - r->srtt;
		/* RTTVAR first (uses the old SRTT), then SRTT */
		r->rttvar = (uint32_t)(((uint64_t)r->rttvar * 3 + err) / 4);
		r->srtt = (uint32_t)(((uint64_t)r->srtt * 7 + m) / 8);
		if (m < r->min_rtt)
			r->min_rtt = m;
	}
	r->latest = m;
	r->backoffs = 0;
	r->rto = rtt_base_rto(r);
}

void rtt_backoff(rtt_est *r, uint32_t rnd)
{
	uint64_t v = (uint64_t)r->rto * 2;

	v += (v * (rnd >> 2)) >> 32; /* 0..25 % jitter */
	r->rto = clamp_rto(r, v);
	r->backoffs++;
}
