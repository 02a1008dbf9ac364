/* lib/rtt.c: RFC 6298 estimator values, granularity floor, backoff with jitter. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "lib/rtt.h"

static void test_first_and_next_samples(void **state)
{
	rtt_est r;
	(void)state;
	rtt_init(&r, RTT_RTO_INIT_US, RTT_RTO_MIN_US, RTT_RTO_MAX_US, RTT_G_US);
	assert_int_equal(r.rto, 1000000);
	rtt_sample(&r, 100000);
	assert_int_equal(r.srtt, 100000);
	assert_int_equal(r.rttvar, 50000);
	assert_int_equal(r.rto, 300000); /* 100 ms + 4 * 50 ms */
	rtt_sample(&r, 200000);
	/* rttvar = 3/4*50 + 1/4*|100-200| = 62.5 ms; srtt = 7/8*100 + 1/8*200 = 112.5 ms */
	assert_int_equal(r.rttvar, 62500);
	assert_int_equal(r.srtt, 112500);
	assert_int_equal(r.rto, 112500 + 250000);
	assert_int_equal(r.min_rtt, 100000);
}

static void test_floor_and_min(void **state)
{
	rtt_est r;
	(void)state;
	rtt_init(&r, RTT_RTO_INIT_US, 0, RTT_RTO_MAX_US, RTT_G_US);
	for (int i = 0; i < 200; i++)
		rtt_sample(&r, 5000); /* rttvar decays to ~0: G = 10 ms floors it */
	assert_true(r.rttvar < 100);
	assert_int_equal(r.rto, 5000 + RTT_G_US);
	rtt_init(&r, RTT_RTO_INIT_US, RTT_RTO_MIN_US, RTT_RTO_MAX_US, RTT_G_US);
	rtt_sample(&r, 1000);
	assert_int_equal(r.rto, RTT_RTO_MIN_US);
}

static void test_backoff(void **state)
{
	rtt_est r;
	(void)state;
	rtt_init(&r, RTT_RTO_INIT_US, RTT_RTO_MIN_US, RTT_RTO_MAX_US, RTT_G_US);
	rtt_sample(&r, 100000);
	rtt_backoff(&r, 0);
	assert_int_equal(r.rto, 600000);
	rtt_backoff(&r, 0xFFFFFFFFu); /* max jitter: just under +25 % */
	assert_true(r.rto >= 1200000 && r.rto < 1500000);
	for (int i = 0; i < 10; i++)
		rtt_backoff(&r, 12345);
	assert_int_equal(r.rto, RTT_RTO_MAX_US);
	assert_int_equal(r.backoffs, 12);
	rtt_sample(&r, 100000); /* a fresh sample ends the backoff */
	assert_int_equal(r.backoffs, 0);
	assert_true(r.rto < 1000000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_and_next_samples),
		cmocka_unit_test(test_floor_and_min),
		cmocka_unit_test(test_backoff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
