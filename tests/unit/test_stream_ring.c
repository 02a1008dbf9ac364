/* daemon/ring.c: in-order append/consume, reassembly, overlaps, window accounting. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "daemon/ring.h"

static uint8_t pat(uint64_t off) { return (uint8_t)(off * 7 + 3); }

static void fill(uint8_t *b, uint64_t off, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = pat(off + i);
}

static void check(const ring *r, uint64_t off, size_t n)
{
	uint8_t b[4096];
	assert_true(n <= sizeof(b));
	assert_int_equal(ring_copy_out(r, off, b, n), n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(b[i], pat(off + i));
}

static int ins(ring *r, uint64_t off, size_t n, size_t *adv)
{
	uint8_t b[4096];
	fill(b, off, n);
	return ring_insert(r, off, b, n, adv);
}

static void test_append_consume_wrap(void **state)
{
	ring r;
	uint8_t b[100];
	(void)state;
	assert_int_equal(ring_init(&r, 100), 0);
	fill(b, 0, 100);
	assert_int_equal(ring_append(&r, b, 70), 70);
	assert_int_equal(ring_append(&r, b + 70, 50), 30); /* backpressure */
	assert_int_equal(ring_space(&r), 0);
	ring_consume(&r, 60);
	assert_int_equal(ring_space(&r), 60);
	fill(b, 100, 50);
	assert_int_equal(ring_append(&r, b, 50), 50); /* wraps */
	check(&r, 60, 90);
	{
		const uint8_t *p;
		size_t n = ring_peek(&r, 60, &p);
		assert_int_equal(n, 40); /* up to the physical end */
	}
	ring_destroy(&r);
}

static void test_reassembly(void **state)
{
	ring r;
	size_t adv;
	(void)state;
	assert_int_equal(ring_init(&r, 1000), 0);
	assert_int_equal(ins(&r, 200, 100, &adv), 100);
	assert_int_equal(adv, 0);
	assert_int_equal(r.nival, 1);
	assert_int_equal(ins(&r, 400, 100, &adv), 100);
	assert_int_equal(r.nival, 2);
	assert_int_equal(ring_ooo_bytes(&r), 200);
	/* duplicate of an OOO interval: nothing new */
	assert_int_equal(ins(&r, 200, 100, &adv), 0);
	/* bridge 300..400 merges both */
	assert_int_equal(ins(&r, 290, 120, &adv), 100);
	assert_int_equal(r.nival, 1);
	assert_int_equal(r.ival[0].start, 200);
	assert_int_equal(r.ival[0].end, 500);
	/* fill the front: everything becomes in order */
	assert_int_equal(ins(&r, 0, 200, &adv), 200);
	assert_int_equal(adv, 500);
	assert_int_equal(r.nival, 0);
	assert_int_equal(r.len, 500);
	check(&r, 0, 500);
	ring_destroy(&r);
}

static void test_partial_overlap_and_window(void **state)
{
	ring r;
	size_t adv;
	(void)state;
	assert_int_equal(ring_init(&r, 1000), 0);
	assert_int_equal(ins(&r, 0, 100, &adv), 100);
	/* partially old segment: only the new 50 bytes count */
	assert_int_equal(ins(&r, 50, 100, &adv), 50);
	assert_int_equal(adv, 50);
	assert_int_equal(r.len, 150);
	/* beyond the window limit (base + cap = 1000): trimmed */
	assert_int_equal(ins(&r, 950, 100, &adv), 50);
	assert_int_equal(r.ival[0].end, 1000);
	assert_int_equal(ins(&r, 1000, 10, &adv), 0);
	/* window accounting: OOO bytes live inside ring_space */
	assert_int_equal(ring_space(&r), 850);
	ring_consume(&r, 150);
	assert_int_equal(ring_space(&r), 1000);
	assert_int_equal(ring_limit(&r), 1150);
	check(&r, 150, 0);
	ring_destroy(&r);
}

static void test_interval_limit(void **state)
{
	ring r;
	size_t adv;
	(void)state;
	assert_int_equal(ring_init(&r, 100000), 0);
	for (int i = 0; i < RING_MAX_IVALS; i++)
		assert_int_equal(ins(&r, 100 + (uint64_t)i * 20, 10, &adv), 10);
	assert_int_equal(r.nival, RING_MAX_IVALS);
	/* a 65th separate interval is refused, a merging one is fine */
	assert_int_equal(ins(&r, 50000, 10, &adv), -ENOBUFS);
	assert_int_equal(ins(&r, 110, 10, &adv), 10);
	assert_int_equal(r.nival, RING_MAX_IVALS - 1);
	assert_int_equal(ins(&r, 0, 100, &adv), 100);
	assert_int_equal(adv, 130);
	ring_destroy(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_consume_wrap),
		cmocka_unit_test(test_reassembly),
		cmocka_unit_test(test_partial_overlap_and_window),
		cmocka_unit_test(test_interval_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
