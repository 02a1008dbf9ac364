/* CUBIC + HyStart++; see cubic.h. */
#include "cubic.h"

#include <math.h>

#define HS_MIN_RTT_THRESH 4000u
#define HS_MAX_RTT_THRESH 16000u
#define HS_MIN_RTT_DIVISOR 8u
#define HS_N_RTT_SAMPLE 8u
#define HS_CSS_GROWTH_DIVISOR 4u
#define HS_CSS_ROUNDS 5u
#define HS_L 8u /* growth limit per ACK in segments */

void cubic_init(cubic *c, uint32_t mss, uint64_t init_cwnd, uint64_t ssthresh, uint64_t max_cwnd)
{
	*c = (cubic){ .mss = mss, .cwnd = init_cwnd, .ssthresh = ssthresh, .max_cwnd = max_cwnd,
		      .last_round_min = UINT32_MAX, .cur_round_min = UINT32_MAX,
		      .css_baseline = UINT32_MAX };
}

static void clamp_cwnd(cubic *c)
{
	if (c->cwnd > c->max_cwnd)
		c->cwnd = c->max_cwnd;
	if (c->cwnd < c->mss)
		c->cwnd = c->mss;
}

/* HyStart++ (RFC 9406 §4.2): round bookkeeping and the CSS decisions. */
static void hystart_round(cubic *c, uint32_t rtt_us, uint32_t ack, uint32_t snd_nxt)
{
	if (!c->round_started || (int32_t)(ack - c->round_end) >= 0) {
		if (c->round_started && c->phase == CUBIC_CSS && ++c->css_rounds >= HS_CSS_ROUNDS) {
			c->ssthresh = c->cwnd;
			c->phase = CUBIC_CA;
			c->hystart_exits++;
		}
		c->round_started = true;
		c->round_end = snd_nxt;
		c->last_round_min = c->cur_round_min;
		c->cur_round_min = UINT32_MAX;
		c->rtt_count = 0;
	}
	if (rtt_us == 0)
		return;
	if (rtt_us < c->cur_round_min)
		c->cur_round_min = rtt_us;
	c->rtt_count++;
	if (c->rtt_count < HS_N_RTT_SAMPLE || c->cur_round_min == UINT32_MAX)
		return;
	if (c->phase == CUBIC_SS && c->last_round_min != UINT32_MAX) {
		uint32_t th = c->last_round_min / HS_MIN_RTT_DIVISOR;
		if (th < HS_MIN_RTT_THRESH)
			th = HS_MIN_RTT_THRESH;
		if (th > HS_MAX_RTT_THRESH)
			th = HS_MAX_RTT_THRESH;
		if (c->cur_round_min >= c->last_round_min + th) {
			c->css_baseline = c->cur_round_min;
			c->phase = CUBIC_CSS;
			c->css_rounds = 0;
		}
	} else if (c->phase == CUBIC_CSS && c->cur_round_min < c->css_baseline) {
		c->phase = CUBIC_SS; /* spurious: the RTT fell again */
	}
}

static void slow_start(cubic *c, uint64_t acked)
{
	uint64_t inc = acked < (uint64_t)HS_L * c->mss ? acked : (uint64_t)HS_L * c->mss;

	if (c->phase == CUBIC_CSS)
		inc /= HS_CSS_GROWTH_DIVISOR;
	c->cwnd += inc;
	if (c->cwnd >= c->ssthresh && c->phase != CUBIC_CA)
		c->phase = CUBIC_CA;
}

static void congestion_avoidance(cubic *c, uint64_t acked, uint64_t now, uint32_t srtt)
{
	double seg = c->mss, cw = (double)c->cwnd / seg, t, target, wc;
	double alpha = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);

	if (c->epoch_start == 0) {
		c->epoch_start = now ? now : 1;
		c->cwnd_epoch = cw;
		c->w_est = cw;
		if (c->w_max < cw) {
			c->w_max = cw;
			c->k = 0;
		} else {
			c->k = cbrt((c->w_max - cw) / CUBIC_C);
		}
	}
	t = (double)(now - c->epoch_start) / 1e6;
	target = CUBIC_C * pow(t + srtt / 1e6 - c->k, 3) + c->w_max;
	if (target < cw)
		target = cw;
	if (target > 1.5 * cw)
		target = 1.5 * cw;
	if (c->w_est >= c->w_max)
		alpha = 1.0;
	c->w_est += alpha * ((double)acked / seg) / cw;
	wc = CUBIC_C * pow(t - c->k, 3) + c->w_max;
	if (wc < c->w_est) {
		if (c->w_est > cw)
			cw = c->w_est;
	} else {
		cw += (target - cw) / cw * ((double)acked / seg);
	}
	c->cwnd = (uint64_t)(cw * seg);
}

void cubic_on_ack(cubic *c, uint64_t acked, uint64_t now_us, uint32_t rtt_us,
		  uint32_t srtt_us, uint32_t ack, uint32_t snd_nxt, bool cwnd_limited)
{
	if (c->phase != CUBIC_CA)
		hystart_round(c, rtt_us, ack, snd_nxt);
	if (!cwnd_limited || acked == 0)
		return;
	if (c->phase != CUBIC_CA && c->cwnd < c->ssthresh)
		slow_start(c, acked);
	else
		congestion_avoidance(c, acked, now_us, srtt_us);
	clamp_cwnd(c);
}

static void reduce(cubic *c)
{
	double cw = (double)c->cwnd / c->mss;
	uint64_t ss;

	c->epoch_start = 0;
	if (cw < c->w_max)
		c->w_max = cw * (1.0 + CUBIC_BETA) / 2.0; /* fast convergence */
	else
		c->w_max = cw;
	ss = (uint64_t)((double)c->cwnd * CUBIC_BETA);
	if (ss < 2ull * c->mss)
		ss = 2ull * c->mss;
	c->ssthresh = ss;
	c->phase = CUBIC_CA;
}

void cubic_on_loss(cubic *c, uint64_t now_us)
{
	(void)now_us;
	reduce(c);
	c->cwnd = c->ssthresh;
	clamp_cwnd(c);
}

void cubic_on_rto(cubic *c, bool also_reduce)
{
	if (also_reduce)
		reduce(c);
	c->epoch_start = 0;
	c->cwnd = c->mss;
	c->phase = CUBIC_SS; /* slow start back up to ssthresh, then CA */
}
