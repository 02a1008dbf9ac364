/* Unit tests for lib/addr.c: vectors.md §2 plus rejection and round-trip cases. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"

#include "tests/unit/test_hex.h"

/* Parse from an exact-size heap copy without a NUL, so ASan catches any over-read. */
static int parse_exact(const char *s, size_t len, pilot_addr *a)
{
	char *copy = malloc(len ? len : 1);
	int ret;

	assert_non_null(copy);
	memcpy(copy, s, len);
	ret = pilot_addr_parse(copy, len, a);
	free(copy);
	return ret;
}

static int sockparse_exact(const char *s, size_t len, pilot_addr *a, uint16_t *port)
{
	char *copy = malloc(len ? len : 1);
	int ret;

	assert_non_null(copy);
	memcpy(copy, s, len);
	ret = pilot_sockaddr_parse(copy, len, a, port);
	free(copy);
	return ret;
}

static int parse_str(const char *s, pilot_addr *a)
{
	return parse_exact(s, strlen(s), a);
}

/* ---- vectors.md §2 table ---- */

struct addr_vec {
	const char *text;
	const char *hex;
	uint16_t net;
	uint32_t node;
};

static const struct addr_vec v_zero = { "0:0000.0000.0000", "00 00 00 00 00 00", 0, 0 };
static const struct addr_vec v_reg = { "0:0000.0000.0001", "00 00 00 00 00 01", 0, 1 };
static const struct addr_vec v_2a = { "0:0000.0000.002A", "00 00 00 00 00 2A", 0, 0x2A };
static const struct addr_vec v_net1 = { "1:0001.F291.0004", "00 01 F2 91 00 04", 1, 0xF2910004 };
static const struct addr_vec v_net163 = { "163:00A3.F291.0004", "00 A3 F2 91 00 04", 163, 0xF2910004 };
static const struct addr_vec v_bcast = { "65535:FFFF.FFFF.FFFF", "FF FF FF FF FF FF", 65535, 0xFFFFFFFF };
static const struct addr_vec v_bb_bcast = { "0:0000.FFFF.FFFF", "00 00 FF FF FF FF", 0, 0xFFFFFFFF };
/* binary → text vectors */
static const struct addr_vec v_b2t_1 = { "1:0001.0002.0003", "00 01 00 02 00 03", 1, 0x00020003 };
static const struct addr_vec v_b2t_2 = { "51966:CAFE.DEAD.BEEF", "CA FE DE AD BE EF", 51966, 0xDEADBEEF };

static void test_addr_vector(void **state)
{
	const struct addr_vec *v = *state;
	uint8_t want[6], got[6];
	char text[PILOT_ADDR_STRLEN];
	pilot_addr a;

	assert_int_equal(unhex(v->hex, want, sizeof(want)), 6);
	assert_int_equal(parse_str(v->text, &a), 0);
	assert_int_equal(a.net, v->net);
	assert_int_equal(a.node, v->node);
	pilot_addr_encode(a, got);
	assert_memory_equal(got, want, 6);
	memset(&a, 0xAA, sizeof(a));
	assert_int_equal(pilot_addr_decode(want, 6, &a), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(v->net, v->node)));
	assert_ptr_equal(pilot_addr_format(a, text), text);
	assert_string_equal(text, v->text);
}

static void test_addr_special(void **state)
{
	pilot_addr a;

	assert_int_equal(parse_str(v_zero.text, &a), 0);
	assert_true(pilot_addr_is_zero(a));
	assert_false(pilot_addr_is_broadcast(a));
	assert_int_equal(parse_str(v_bcast.text, &a), 0);
	assert_true(pilot_addr_is_broadcast(a));
	assert_int_equal(parse_str(v_bb_bcast.text, &a), 0);
	assert_true(pilot_addr_is_broadcast(a));
	assert_false(pilot_addr_is_zero(pilot_addr_make(0, 1)));
	assert_false(pilot_addr_is_zero(pilot_addr_make(1, 0)));
	assert_false(pilot_addr_eq(pilot_addr_make(0, 1), pilot_addr_make(1, 1)));
}

/* ---- vectors.md §2 parser cases ---- */

static void test_parse_lower_case(void **state)
{
	char text[PILOT_ADDR_STRLEN];
	pilot_addr a;

	assert_int_equal(parse_str("1:0001.f291.0004", &a), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(1, 0xF2910004)));
	assert_string_equal(pilot_addr_format(a, text), "1:0001.F291.0004");
	assert_int_equal(parse_str("51966:cAfE.dEaD.bEeF", &a), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(51966, 0xDEADBEEF)));
}

static void test_parse_leading_zero(void **state)
{
	pilot_addr a;

	assert_int_equal(parse_str("01:0001.F291.0004", &a), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(1, 0xF2910004)));
	assert_int_equal(parse_str("0000000000000000000000000001:0001.0000.0000", &a), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(1, 0)));
	assert_int_equal(parse_str("065535:FFFF.0000.0000", &a), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(65535, 0)));
	assert_int_equal(parse_str("00:0000.0000.0001", &a), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(0, 1)));
}

static void expect_reject(const char *s)
{
	pilot_addr a = pilot_addr_make(7, 7);

	if (parse_str(s, &a) != -EINVAL)
		fail_msg("accepted \"%s\"", s);
	/* A refused parse must not touch the output. */
	assert_true(pilot_addr_eq(a, pilot_addr_make(7, 7)));
}

static void test_parse_net_mismatch_spec_example(void **state)
{
	expect_reject("1:00A3.F291.0004");
}

static void test_parse_net_mismatch(void **state)
{
	expect_reject("1:0002.0000.0000");
}

static void test_parse_group_3_chars(void **state)
{
	expect_reject("1:000.0000.0000");
}

static void test_parse_two_groups(void **state)
{
	expect_reject("1:0000.0000");
}

static void test_parse_bad_decimal(void **state)
{
	expect_reject("abc:0000.0000.0000");
}

static void test_parse_0x_group(void **state)
{
	expect_reject("1:0x01.0000.0000");
}

static void test_parse_net_too_big(void **state)
{
	expect_reject("65536:0000.0000.0000");
}

static void test_parse_with_port(void **state)
{
	const char *s = "1:0001.F291.0004:1000";
	pilot_addr a;
	uint16_t port = 0;

	expect_reject(s);
	assert_int_equal(sockparse_exact(s, strlen(s), &a, &port), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(1, 0xF2910004)));
	assert_int_equal(port, 1000);
}

/* ---- more rejections ---- */

static void test_parse_reject_misc(void **state)
{
	static const char *bad[] = {
		"", ":", "1", "1:", ":0000.0000.0000", "0000.0000.0000",
		"-1:0001.0000.0000", "+1:0001.0000.0000", " 1:0001.0000.0000",
		"1 :0001.0000.0000", "1: 0001.0000.0000", "1:0001.0000.0000 ",
		"1:0001.0000.0000\n", "\t1:0001.0000.0000", "1:0001. 000.0000",
		"1:0001.0000.0000.", "1:0001.0000.0000.0000", "1:.0001.0000.0000",
		"1:0001..0000.0000", "1:0001.0000..0000", "1:0001.0000.00000",
		"1:00001.0000.0000", "1:0001.00000.000", "1:0001.-000.0000",
		"1:+001.0000.0000", "1:0001.0000.000g", "1:0001.0000.000G",
		"1:0001,0000.0000", "1::0001.0000.0000", "1:0001.0000:0000",
		"1_0:000A.0000.0000", "1e0:0001.0000.0000", "0x1:0001.0000.0000",
		"1:0X01.0000.0000", "1:0001.0000.0x00", "99999999999:0000.0000.0000",
		/* would be accepted if the decimal wrapped at 2^16 or 2^32 */
		"65537:0001.0000.0000", "4294967297:0001.0000.0000",
		"18446744073709551617:0001.0000.0000", "1:0001.F291.0004:80",
		"0:0000.0000.0000:", "0:0000.0000", "0:0000.0000.0000.", "\xd9\xa3:0000.0000.0000",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_reject(bad[i]);
}

static void test_parse_embedded_nul(void **state)
{
	static const char s[] = "1:0001.00\0000.0000";
	pilot_addr a;

	assert_int_equal(parse_exact(s, sizeof(s) - 1, &a), -EINVAL);
	assert_int_equal(parse_exact("1:0001.0000.0000\0", 17, &a), -EINVAL);
}

/* Every proper prefix of a valid address is invalid, and the parser must not read past
 * the given length (the exact-size heap copy makes ASan check that). */
static void test_parse_truncated(void **state)
{
	static const char *good[] = {
		"1:0001.F291.0004", "65535:FFFF.FFFF.FFFF", "0:0000.0000.0000",
		"163:00A3.F291.0004",
	};
	pilot_addr a;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		size_t n = strlen(good[i]);

		for (size_t len = 0; len < n; len++)
			assert_int_equal(parse_exact(good[i], len, &a), -EINVAL);
		assert_int_equal(parse_exact(good[i], n, &a), 0);
	}
}

static void test_parse_not_nul_terminated(void **state)
{
	const char s[] = "1:0001.F291.0004XYZ";
	pilot_addr a;

	assert_int_equal(pilot_addr_parse(s, 16, &a), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(1, 0xF2910004)));
	assert_int_equal(pilot_addr_parse(s, 17, &a), -EINVAL);
	assert_int_equal(pilot_addr_parse(NULL, 0, &a), -EINVAL);
}

static void test_decode_short(void **state)
{
	const uint8_t buf[8] = { 0, 1, 0xF2, 0x91, 0, 4, 0xEE, 0xEE };
	pilot_addr a;

	for (size_t len = 0; len < PILOT_ADDR_SIZE; len++)
		assert_int_equal(pilot_addr_decode(buf, len, &a), -EINVAL);
	assert_int_equal(pilot_addr_decode(NULL, 6, &a), -EINVAL);
	/* trailing bytes ignored */
	assert_int_equal(pilot_addr_decode(buf, sizeof(buf), &a), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(1, 0xF2910004)));
}

/* Cheap deterministic generator so the round-trips cover more than the vectors. */
static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s;
}

static void test_round_trip(void **state)
{
	uint32_t seed = 12345;
	char text[PILOT_ADDR_STRLEN];
	uint8_t bin[6];
	pilot_addr a, b;

	for (int i = 0; i < 20000; i++) {
		a = pilot_addr_make((uint16_t)lcg(&seed), lcg(&seed));
		if (i < 4)
			a.net = (uint16_t)(i == 0 ? 0 : i == 1 ? 65535 : i == 2 ? 9 : 10);
		pilot_addr_format(a, text);
		assert_true(strlen(text) < PILOT_ADDR_STRLEN);
		assert_int_equal(parse_str(text, &b), 0);
		assert_true(pilot_addr_eq(a, b));
		pilot_addr_encode(a, bin);
		assert_int_equal(pilot_addr_decode(bin, 6, &b), 0);
		assert_true(pilot_addr_eq(a, b));
	}
}

/* ---- socket addresses ---- */

static void test_sockaddr_parse(void **state)
{
	static const struct {
		const char *s;
		uint16_t net;
		uint32_t node;
		uint16_t port;
	} ok[] = {
		{ "1:0001.F291.0004:1000", 1, 0xF2910004, 1000 },
		{ "0:0000.0000.0001:0", 0, 1, 0 },
		{ "65535:FFFF.FFFF.FFFF:65535", 65535, 0xFFFFFFFF, 65535 },
		{ "0:0000.0000.0002:00080", 0, 2, 80 },
		{ "01:0001.abcd.0004:443", 1, 0xABCD0004, 443 },
	};
	pilot_addr a;
	uint16_t port;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(sockparse_exact(ok[i].s, strlen(ok[i].s), &a, &port), 0);
		assert_true(pilot_addr_eq(a, pilot_addr_make(ok[i].net, ok[i].node)));
		assert_int_equal(port, ok[i].port);
	}
}

static void test_sockaddr_reject(void **state)
{
	static const char *bad[] = {
		"", ":", "1", ":80", "1:0001.F291.0004", "1:0001.F291.0004:",
		"1:0001.F291.0004:65536", "1:0001.F291.0004:-1", "1:0001.F291.0004:+80",
		"1:0001.F291.0004: 80", "1:0001.F291.0004:80 ", "1:0001.F291.0004:0x50",
		"1:0001.F291.0004::80", "1:00A3.F291.0004:80", "1:0001.F291.0004:80:80",
		"1:0001.F291.0004:99999999999999999999", "1:0001.F291:80",
	};
	pilot_addr a = pilot_addr_make(7, 7);
	uint16_t port = 7;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (sockparse_exact(bad[i], strlen(bad[i]), &a, &port) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	assert_true(pilot_addr_eq(a, pilot_addr_make(7, 7)));
	assert_int_equal(port, 7);
	assert_int_equal(pilot_sockaddr_parse(NULL, 0, &a, &port), -EINVAL);
}

/* Prefixes of "A:port" are valid exactly when they still hold the address, ':' and at
 * least one port digit. */
static void test_sockaddr_truncated(void **state)
{
	const char *s = "1:0001.F291.0004:1000";
	size_t alen = strlen("1:0001.F291.0004"), n = strlen(s);
	pilot_addr a;
	uint16_t port;

	for (size_t len = 0; len <= n; len++) {
		int want = len >= alen + 2 ? 0 : -EINVAL;

		assert_int_equal(sockparse_exact(s, len, &a, &port), want);
	}
}

static void test_sockaddr_format(void **state)
{
	char text[PILOT_SOCKADDR_STRLEN];
	pilot_addr a;
	uint16_t port;

	assert_ptr_equal(pilot_sockaddr_format(pilot_addr_make(1, 0xF2910004), 1000, text), text);
	assert_string_equal(text, "1:0001.F291.0004:1000");
	pilot_sockaddr_format(pilot_addr_make(65535, 0xFFFFFFFF), 65535, text);
	assert_string_equal(text, "65535:FFFF.FFFF.FFFF:65535");
	assert_int_equal(strlen(text) + 1, PILOT_SOCKADDR_STRLEN);
	pilot_sockaddr_format(pilot_addr_make(0, 0), 0, text);
	assert_string_equal(text, "0:0000.0000.0000:0");
	assert_int_equal(sockparse_exact(text, strlen(text), &a, &port), 0);
	assert_true(pilot_addr_is_zero(a));
	assert_int_equal(port, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_addr_vector, (void *)&v_zero),
		cmocka_unit_test_prestate(test_addr_vector, (void *)&v_reg),
		cmocka_unit_test_prestate(test_addr_vector, (void *)&v_2a),
		cmocka_unit_test_prestate(test_addr_vector, (void *)&v_net1),
		cmocka_unit_test_prestate(test_addr_vector, (void *)&v_net163),
		cmocka_unit_test_prestate(test_addr_vector, (void *)&v_bcast),
		cmocka_unit_test_prestate(test_addr_vector, (void *)&v_bb_bcast),
		cmocka_unit_test_prestate(test_addr_vector, (void *)&v_b2t_1),
		cmocka_unit_test_prestate(test_addr_vector, (void *)&v_b2t_2),
		cmocka_unit_test(test_addr_special),
		cmocka_unit_test(test_parse_lower_case),
		cmocka_unit_test(test_parse_leading_zero),
		cmocka_unit_test(test_parse_net_mismatch_spec_example),
		cmocka_unit_test(test_parse_net_mismatch),
		cmocka_unit_test(test_parse_group_3_chars),
		cmocka_unit_test(test_parse_two_groups),
		cmocka_unit_test(test_parse_bad_decimal),
		cmocka_unit_test(test_parse_0x_group),
		cmocka_unit_test(test_parse_net_too_big),
		cmocka_unit_test(test_parse_with_port),
		cmocka_unit_test(test_parse_reject_misc),
		cmocka_unit_test(test_parse_embedded_nul),
		cmocka_unit_test(test_parse_truncated),
		cmocka_unit_test(test_parse_not_nul_terminated),
		cmocka_unit_test(test_decode_short),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_sockaddr_parse),
		cmocka_unit_test(test_sockaddr_reject),
		cmocka_unit_test(test_sockaddr_truncated),
		cmocka_unit_test(test_sockaddr_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
