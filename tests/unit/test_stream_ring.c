/* stream/ring.c: in-order append/consume, reassembly, overlaps, window accounting. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "stream/ring.h"

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

/* Storage grows only as data needs it, in powers of two, and re-lays both the
 * in-order bytes and the out-of-order intervals (here across a wrap). */
static void test_lazy_growth_relayout(void **state)
{
	ring r;
	size_t adv, mem0 = ring_mem_in_use();
	(void)state;
	assert_int_equal(ring_init(&r, 1u << 20), 0);
	assert_null(r.buf);
	assert_int_equal(ring_mem(&r), 0);
	assert_int_equal(ring_space(&r), 1u << 20); /* the window does not depend on storage */
	/* in order, then consume so that the data wraps the first 4 KiB buffer */
	assert_int_equal(ins(&r, 0, 3000, &adv), 3000);
	assert_int_equal(r.alloc, RING_MIN_ALLOC);
	assert_null(r.ival);
	ring_consume(&r, 2500);
	assert_int_equal(ins(&r, 3000, 3000, &adv), 3000); /* [2500, 6000): wraps */
	assert_int_equal(r.alloc, RING_MIN_ALLOC);
	/* out of order far ahead: grows to cover base + 20000, keeps the wrapped bytes */
	assert_int_equal(ins(&r, 9000, 1000, &adv), 1000);
	assert_int_equal(ins(&r, 20000, 2000, &adv), 2000);
	assert_int_equal(r.alloc, 32768);
	assert_non_null(r.ival);
	assert_int_equal(r.nival, 2);
	check(&r, 2500, 3500);
	/* grow again while holding both intervals */
	assert_int_equal(ins(&r, 40000, 500, &adv), 500);
	assert_int_equal(r.alloc, 65536);
	/* fill the holes: everything arrives intact */
	for (uint64_t off = 6000; off < 40500; off += 1500) {
		size_t n = 40500 - off < 1500 ? (size_t)(40500 - off) : 1500;
		assert_true(ins(&r, off, n, &adv) >= 0);
	}
	assert_int_equal(r.nival, 0);
	assert_int_equal(ring_end(&r), 40500);
	for (uint64_t off = 2500; off < 40500; off += 4000)
		check(&r, off, 40500 - off < 4000 ? (size_t)(40500 - off) : 4000);
	assert_int_equal(ring_mem_in_use() - mem0, ring_mem(&r));
	/* release only when empty */
	assert_false(ring_release(&r));
	ring_consume(&r, r.len);
	assert_true(ring_release(&r));
	assert_int_equal(ring_mem(&r), 0);
	assert_int_equal(ring_mem_in_use(), mem0);
	/* offsets survive a release: the next append continues at the same offset */
	{
		uint8_t b[100];
		fill(b, 40500, sizeof(b));
		assert_int_equal(ring_append(&r, b, sizeof(b)), sizeof(b));
		check(&r, 40500, 100);
	}
	/* the last size class is the capacity itself (not a power of two) */
	ring_destroy(&r);
	assert_int_equal(ring_init(&r, 10000), 0);
	assert_int_equal(ins(&r, 5000, 4000, &adv), 4000);
	assert_int_equal(r.alloc, 10000);
	assert_int_equal(ins(&r, 9500, 1000, &adv), 500); /* trimmed at base + cap */
	ring_destroy(&r);
	assert_int_equal(ring_mem_in_use(), mem0);
}

/* Random inserts / consumes / releases against a flat model. */
static void test_random_against_model(void **state)
{
	enum { CAP = 70000, SPAN = 1u << 20 };
	static uint8_t have[SPAN];
	ring r;
	uint64_t x = 88172645463325252ull;
	size_t adv;
	(void)state;
	memset(have, 0, sizeof(have));
	assert_int_equal(ring_init(&r, CAP), 0);
	for (int it = 0; it < 20000 && ring_end(&r) + CAP + 4096 < SPAN; it++) {
		uint64_t off, end_before = ring_end(&r);
		size_t n;
		int k;
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		off = ring_end(&r) + (x >> 8) % (CAP + 2000) - 1000 * ((x >> 40) & 1);
		if (off < r.base)
			off = r.base;
		n = 1 + (size_t)((x >> 20) % 3000);
		k = ins(&r, off, n, &adv);
		if (k == -ENOBUFS)
			continue;
		assert_true(k >= 0);
		for (uint64_t o = off; o < off + n && o < ring_limit(&r); o++)
			if (o >= end_before)
				have[o] = 1;
		/* in-order end = first offset not yet held */
		{
			uint64_t e = end_before;
			while (have[e])
				e++;
			assert_int_equal(ring_end(&r), e);
			assert_int_equal(adv, e - end_before);
		}
		if (r.len)
			check(&r, r.base, r.len < 4096 ? r.len : 4096);
		if ((x >> 50) % 4 == 0) {
			size_t c = (size_t)((x >> 30) % (r.len + 1));
			ring_consume(&r, c);
		}
		if ((x >> 55) % 16 == 0) {
			ring_consume(&r, r.len);
			ring_release(&r); /* only takes effect without intervals */
		}
		assert_true(r.alloc <= CAP);
	}
	ring_destroy(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_consume_wrap),
		cmocka_unit_test(test_reassembly),
		cmocka_unit_test(test_partial_overlap_and_window),
		cmocka_unit_test(test_interval_limit),
		cmocka_unit_test(test_lazy_growth_relayout),
		cmocka_unit_test(test_random_against_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
