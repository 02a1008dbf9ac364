/* CUBIC + HyStart++; see cubic.h. */
#include "stream/cubic.h"

#include <math.h>

#define HS_MIN_RTT_THRESH 4000u
#define HS_MAX_RTT_THRESH 16000u
#define HS_MIN_RTT_DIVISOR 8u
#define HS_N_RTT_SAMPLE 8u
#define HS_CSS_GROWTH_DIVISOR 4u
#define HS_CSS_ROUNDS 5u
#define HS_L 8u /* growth limit per ACK in segments */
#define HS_ACK_FILTER 4u     /* per-ACK rule: min over this many latest samples */
#define HS_ACK_MIN_ETA 1000u /* per-ACK rule: smallest delay increase (us) */

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

/* Per-ACK delay rule (in addition to RFC 9406's per-round one, which looks only at
 * the minimum of a whole round and so sees a queue one round late: at 100 Mbit/s,
 * 20 ms and a one-BDP buffer the queue overflows in the round in which it starts
 * to build). The minimum of the latest HS_ACK_FILTER samples (a single jittery
 * sample never counts) is compared with the smallest RTT ever seen; once it
 * exceeds that by eta = clamp(base / 8, 1 ms, 16 ms) a standing queue is building
 * and slow start ends at once (ssthresh = cwnd, straight to congestion avoidance).
 * Returns true when it fired. */
static bool hystart_delay(cubic *c, uint32_t rtt_us)
{
	uint32_t filt = UINT32_MAX, eta;

	if (!c->base_rtt || rtt_us < c->base_rtt)
		c->base_rtt = rtt_us;
	c->win[c->nwin++ % HS_ACK_FILTER] = rtt_us;
	if (c->phase == CUBIC_CA || c->nwin < HS_ACK_FILTER)
		return false;
	for (uint32_t i = 0; i < HS_ACK_FILTER; i++)
		if (c->win[i] < filt)
			filt = c->win[i];
	eta = c->base_rtt / HS_MIN_RTT_DIVISOR;
	if (eta < HS_ACK_MIN_ETA)
		eta = HS_ACK_MIN_ETA;
	if (eta > HS_MAX_RTT_THRESH)
		eta = HS_MAX_RTT_THRESH;
	if (filt < c->base_rtt + eta)
		return false;
	c->ssthresh = c->cwnd;
	c->phase = CUBIC_CA;
	c->hystart_exits++;
	c->delay_exits++;
	return true;
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
	if (hystart_delay(c, rtt_us))
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
