/* stream/cubic.c: slow start, HyStart++ exit, beta = 0.7, concave/convex growth. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "stream/cubic.h"

#define MSS 1000u

static void test_slow_start_doubles(void **state)
{
	cubic c;
	uint32_t seq = 0;
	(void)state;
	cubic_init(&c, MSS, 10 * MSS, 1u << 30, 1u << 30);
	/* one round: 10 segments acked one by one, constant RTT */
	for (int i = 0; i < 10; i++) {
		seq += MSS;
		cubic_on_ack(&c, MSS, 1000 + (uint64_t)i, 10000, 10000, seq, seq + 10 * MSS, true);
	}
	assert_int_equal(c.cwnd, 20 * MSS);
	assert_int_equal(c.phase, CUBIC_SS);
	/* application-limited: no growth */
	cubic_on_ack(&c, MSS, 2000, 10000, 10000, seq + MSS, seq + 2 * MSS, false);
	assert_int_equal(c.cwnd, 20 * MSS);
}

static void test_hystart_exit(void **state)
{
	cubic c;
	uint32_t ack = 0, nxt = 0;
	uint64_t t = 0;
	(void)state;
	cubic_init(&c, MSS, 10 * MSS, 1u << 30, 1u << 30);
	/* rounds with RTT 10 ms, then a round whose min RTT is 10 ms + 5 ms (> 4 ms thresh) */
	for (int round = 0; round < 12 && c.phase != CUBIC_CA; round++) {
		uint32_t rtt = round < 3 ? 10000 : 10000 + 5000 * (uint32_t)(round - 2);
		uint32_t n = (uint32_t)(c.cwnd / MSS);
		nxt = ack + n * MSS;
		for (uint32_t i = 0; i < n; i++) {
			ack += MSS;
			cubic_on_ack(&c, MSS, t++, rtt, rtt, ack, nxt, true);
		}
	}
	assert_int_equal(c.phase, CUBIC_CA);
	assert_int_equal(c.hystart_exits, 1);
	assert_true(c.ssthresh <= c.cwnd && c.cwnd - c.ssthresh < 2 * MSS);
	/* exit well before an overshoot: 3 doubling rounds (80 segments) + slow CSS growth */
	assert_true(c.cwnd < 200 * MSS);
}

/* The per-ACK rule: a queue that starts building in the middle of a round ends slow
 * start within that round (the per-round rule would wait for the next round's
 * minimum); isolated jitter spikes do not. */
static void test_hystart_per_ack(void **state)
{
	cubic c;
	uint32_t ack = 0, nxt;
	uint64_t t = 0, at_exit = 0;
	(void)state;
	cubic_init(&c, MSS, 10 * MSS, 1u << 30, 1u << 30);
	/* rounds at a 20 ms base with a 3 ms spike on every 5th sample: no exit */
	for (int round = 0; round < 4; round++) {
		uint32_t n = (uint32_t)(c.cwnd / MSS);
		nxt = ack + n * MSS;
		for (uint32_t i = 0; i < n; i++) {
			ack += MSS;
			cubic_on_ack(&c, MSS, t++, i % 5 == 4 ? 23000 : 20000, 20000, ack, nxt, true);
		}
	}
	assert_int_equal(c.phase, CUBIC_SS);
	assert_int_equal(c.cwnd, 160 * MSS);
	/* next round: from its 50th ACK on, the RTT climbs 50 us per ACK (a queue) */
	nxt = ack + 160 * MSS;
	for (uint32_t i = 0; i < 160 && c.phase == CUBIC_SS; i++) {
		uint32_t rtt = i < 50 ? 20000 : 20000 + 50 * (i - 50);
		ack += MSS;
		cubic_on_ack(&c, MSS, t++, rtt, 20000, ack, nxt, true);
		at_exit = i;
	}
	assert_int_equal(c.phase, CUBIC_CA);
	assert_int_equal(c.hystart_exits, 1);
	assert_int_equal(c.delay_exits, 1);
	/* eta = 20 ms / 8 = 2.5 ms: the 4-sample minimum passes it 50 + 50 + 3 ACKs in */
	assert_true(at_exit >= 100 && at_exit <= 104);
	assert_true(c.ssthresh <= c.cwnd && c.cwnd - c.ssthresh < 2 * MSS);
	assert_true(c.cwnd < 270 * MSS);
}

static void test_loss_beta(void **state)
{
	cubic c;
	(void)state;
	cubic_init(&c, MSS, 100 * MSS, 1u << 30, 1u << 30);
	cubic_on_loss(&c, 1000);
	assert_int_equal(c.cwnd, 70 * MSS);
	assert_int_equal(c.ssthresh, 70 * MSS);
	assert_int_equal(c.phase, CUBIC_CA);
	/* second loss below the previous w_max: fast convergence lowers w_max */
	cubic_on_loss(&c, 2000);
	assert_int_equal(c.cwnd, 49 * MSS);
	assert_true(c.w_max < 70.0 && c.w_max > 59.0);
	cubic_on_rto(&c, true);
	assert_int_equal(c.cwnd, MSS);
	assert_int_equal(c.phase, CUBIC_SS);
}

static void test_concave_then_convex(void **state)
{
	cubic c;
	uint64_t t = 1000000, cw_at_k = 0, prev;
	uint32_t ack = 0;
	double k;
	(void)state;
	cubic_init(&c, MSS, 100 * MSS, 1u << 30, 1u << 30);
	cubic_on_loss(&c, t); /* w_max = 100, cwnd = 70 */
	/* ACK one window per 100 ms RTT for a while and watch growth */
	uint64_t growth_early = 0, growth_plateau = 0, growth_late = 0;
	k = 0;
	for (int r = 0; r < 80; r++) {
		uint32_t n = (uint32_t)(c.cwnd / MSS);
		prev = c.cwnd;
		for (uint32_t i = 0; i < n; i++) {
			ack += MSS;
			cubic_on_ack(&c, MSS, t, 100000, 100000, ack, ack + n * MSS, true);
		}
		t += 100000;
		if (r == 0)
			k = c.k;
		if (r < 3)
			growth_early += c.cwnd - prev;
		if (c.cwnd >= 98 * MSS && c.cwnd <= 102 * MSS && !cw_at_k) {
			cw_at_k = c.cwnd;
			growth_plateau = c.cwnd - prev;
		}
		if (r >= 77)
			growth_late += c.cwnd - prev;
	}
	/* K = cbrt(30 / 0.4) = 4.2 s */
	assert_true(k > 4.1 && k < 4.3);
	assert_true(cw_at_k != 0);
	/* concave: fast far below w_max, slow near it; convex: fast again beyond it */
	assert_true(growth_early > 3 * growth_plateau);
	assert_true(growth_late > 3 * growth_plateau);
	assert_true(c.cwnd > 100 * MSS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slow_start_doubles),
		cmocka_unit_test(test_hystart_exit),
		cmocka_unit_test(test_hystart_per_ack),
		cmocka_unit_test(test_loss_beta),
		cmocka_unit_test(test_concave_then_convex),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
