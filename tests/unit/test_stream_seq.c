/* stream/seq.h: serial-number arithmetic across the 2^32 wrap. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "stream/seq.h"

static void test_basic(void **state)
{
	(void)state;
	assert_true(seq_lt(1, 2));
	assert_true(seq_gt(2, 1));
	assert_true(seq_leq(5, 5));
	assert_true(seq_geq(5, 5));
	assert_false(seq_lt(5, 5));
	assert_int_equal(seq_diff(10, 3), 7);
	assert_int_equal(seq_diff(3, 10), -7);
}

static void test_wrap(void **state)
{
	(void)state;
	assert_true(seq_lt(0xFFFFFFF0u, 0x10u));
	assert_true(seq_gt(0x10u, 0xFFFFFFF0u));
	assert_int_equal(seq_diff(0x10u, 0xFFFFFFF0u), 0x20);
	assert_int_equal(seq_max(0xFFFFFFFFu, 0), 0);
	assert_int_equal(seq_min(0xFFFFFFFFu, 0), 0xFFFFFFFFu);
	assert_true(seq_in(0, 0xFFFFFF00u, 0x100u));
	assert_true(seq_in(0xFFFFFF00u, 0xFFFFFF00u, 0x100u));
	assert_false(seq_in(0x100u, 0xFFFFFF00u, 0x100u));
	/* just under half the space apart is still ordered */
	assert_true(seq_lt(0, 0x7FFFFFFFu));
	assert_true(seq_gt(0, 0x80000001u));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_wrap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
