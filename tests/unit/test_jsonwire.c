#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jsonwire.h"

/* Frame a body given as text. */
static size_t frame(uint8_t *out, const char *body, size_t n)
{
	out[0] = (uint8_t)(n >> 24);
	out[1] = (uint8_t)(n >> 16);
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)n;
	memcpy(out + 4, body, n);
	return 4 + n;
}

static int decode_text(const char *body)
{
	uint8_t buf[256];
	size_t n = frame(buf, body, strlen(body));
	json_object *o = (json_object *)1;
	int r = jw_decode(buf, n, &o);

	if (r > 0)
		json_object_put(o);
	else
		assert_null(o);
	return r;
}

static void test_round_trip(void **state)
{
	json_object *o = json_object_new_object(), *back = NULL;
	uint8_t *buf = NULL;
	int n;

	json_object_object_add(o, "type", json_object_new_string("lookup"));
	json_object_object_add(o, "node_id", json_object_new_int64(42));
	json_object_object_add(o, "path", json_object_new_string("a/b <&>"));
	n = jw_encode(o, &buf);
	assert_true(n > 4);
	assert_int_equal(buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3], n - 4);
	/* Compact, and '/' is not escaped. */
	assert_memory_equal(buf + 4, "{\"type\":\"lookup\",\"node_id\":42,\"path\":\"a/b <&>\"}", (size_t)n - 4);
	assert_int_equal(jw_decode(buf, (size_t)n, &back), n);
	assert_string_equal(jw_get_str(back, "type"), "lookup");
	assert_int_equal(jw_get_u32(back, "node_id"), 42);
	assert_string_equal(jw_get_str(back, "path"), "a/b <&>");
	json_object_put(back);
	free(buf);
	json_object_put(o);
}

static void test_partial_and_pipelined(void **state)
{
	uint8_t buf[64];
	size_t a = frame(buf, "{\"a\":1}", 7), b, i;
	json_object *o;

	b = frame(buf + a, "{}", 2);
	/* Every strict prefix of the first frame needs more bytes. */
	for (i = 0; i < a; i++) {
		assert_int_equal(jw_decode(buf, i, &o), 0);
		assert_null(o);
	}
	assert_int_equal(jw_decode(buf, a + b, &o), (int)a);
	assert_int_equal(jw_get_u32(o, "a"), 1);
	json_object_put(o);
	assert_int_equal(jw_decode(buf + a, b, &o), (int)b);
	json_object_put(o);
}

static void test_size_limit(void **state)
{
	uint8_t hdr[4] = { 0x00, 0x10, 0x00, 0x01 }; /* 2^20 + 1 */
	uint8_t max[4] = { 0x00, 0x10, 0x00, 0x00 }; /* 2^20: allowed, so wait */
	uint8_t huge[4] = { 0xff, 0xff, 0xff, 0xff };
	json_object *o, *big;
	uint8_t *out;
	char *s;

	assert_int_equal(jw_decode(hdr, 4, &o), -EMSGSIZE);
	assert_int_equal(jw_decode(huge, 4, &o), -EMSGSIZE);
	assert_int_equal(jw_decode(max, 4, &o), 0);

	s = malloc(JW_MAX_BODY + 1);
	assert_non_null(s);
	memset(s, 'x', JW_MAX_BODY);
	s[JW_MAX_BODY] = '\0';
	big = json_object_new_object();
	json_object_object_add(big, "k", json_object_new_string(s));
	assert_int_equal(jw_encode(big, &out), -EMSGSIZE);
	assert_null(out);
	json_object_put(big);
	free(s);
}

static void test_invalid(void **state)
{
	assert_int_equal(decode_text(""), -EINVAL);
	assert_int_equal(decode_text("{"), -EINVAL);
	assert_int_equal(decode_text("{\"a\":}"), -EINVAL);
	assert_int_equal(decode_text("[1,2]"), -EINVAL);
	assert_int_equal(decode_text("\"str\""), -EINVAL);
	assert_int_equal(decode_text("12"), -EINVAL);
	assert_int_equal(decode_text("null"), -EINVAL);
	assert_int_equal(decode_text("{} x"), -EINVAL);
	assert_int_equal(decode_text("{}{}"), -EINVAL);
	assert_int_equal(decode_text("{'a':1}"), -EINVAL);
	assert_int_equal(decode_text("{\"a\":1,}"), -EINVAL);
	assert_int_equal(decode_text("{\"a\":NaN}"), -EINVAL);
	assert_int_equal(decode_text("{/*c*/}"), -EINVAL);
	assert_int_equal(decode_text("{\"a\":Infinity}"), -EINVAL);
	assert_int_equal(decode_text("{\"a\":1.}"), -EINVAL);
	assert_int_equal(decode_text("{\"a\":.5}"), -EINVAL);
	assert_int_equal(decode_text("{\"a\":\"\x01\"}"), -EINVAL);
	assert_int_equal(decode_text("{\"a\":tru}"), -EINVAL);
	/* Escapes, numbers and literals Go accepts. */
	assert_true(decode_text("{\"a\":\"\\u00e9\\\"\\n\",\"b\":-0.5e-3,\"c\":[true,false,null],\"d\":1E+2}") > 0);
	/* Whitespace around the object is fine. */
	assert_true(decode_text(" {\"a\" : 1}\n") > 0);

	uint8_t nul[] = { 0, 0, 0, 3, '{', '}', 0 };
	json_object *o;

	assert_int_equal(jw_decode(nul, sizeof(nul), &o), -EINVAL);
}

static void test_encode_rejects_non_objects(void **state)
{
	json_object *a = json_object_new_array();
	uint8_t *out;

	assert_int_equal(jw_encode(a, &out), -EINVAL);
	assert_int_equal(jw_encode(NULL, &out), -EINVAL);
	json_object_put(a);
}

static void test_getters(void **state)
{
	json_object *o = json_tokener_parse(
		"{\"f\":1.9,\"neg\":-1,\"negf\":-0.5,\"big\":4294967296,\"max\":4294967295,"
		"\"s\":\"5\",\"t\":true,\"one\":1,\"fl\":false,\"n\":null,\"u16\":65535,"
		"\"u16big\":65536,\"huge\":1e300,\"ubig\":18446744073709551615,\"i\":-7.8,"
		"\"e\":5e3,\"arr\":[1],\"obj\":{}}");

	assert_non_null(o);
	assert_int_equal(jw_get_u32(o, "f"), 1);
	assert_int_equal(jw_get_u32(o, "neg"), 0);
	assert_int_equal(jw_get_u32(o, "negf"), 0);
	assert_int_equal(jw_get_u32(o, "big"), 0);
	assert_int_equal(jw_get_u32(o, "max"), 4294967295u);
	assert_int_equal(jw_get_u32(o, "s"), 0);
	assert_int_equal(jw_get_u32(o, "t"), 0);
	assert_int_equal(jw_get_u32(o, "missing"), 0);
	assert_int_equal(jw_get_u32(o, "huge"), 0);
	assert_int_equal(jw_get_u32(o, "ubig"), 0);
	assert_int_equal(jw_get_u32(o, "e"), 5000);
	assert_int_equal(jw_get_u32(o, "arr"), 0);
	assert_int_equal(jw_get_u16(o, "u16"), 65535);
	assert_int_equal(jw_get_u16(o, "u16big"), 0);
	assert_int_equal(jw_get_u16(o, "f"), 1);
	assert_int_equal(jw_get_i64(o, "neg"), -1);
	assert_int_equal(jw_get_i64(o, "i"), -7);
	assert_int_equal(jw_get_i64(o, "big"), 4294967296LL);
	assert_int_equal(jw_get_i64(o, "huge"), 0);
	assert_int_equal(jw_get_i64(o, "ubig"), 0);
	assert_int_equal(jw_get_i64(o, "s"), 0);
	assert_int_equal(jw_get_bool(o, "t"), 1);
	assert_int_equal(jw_get_bool(o, "fl"), 0);
	assert_int_equal(jw_get_bool(o, "one"), 0);
	assert_int_equal(jw_get_bool(o, "s"), 0);
	assert_int_equal(jw_get_bool(o, "missing"), 0);
	assert_string_equal(jw_get_str(o, "s"), "5");
	assert_null(jw_get_str(o, "one"));
	assert_null(jw_get_str(o, "n"));
	assert_null(jw_get_str(o, "missing"));
	assert_true(jw_has(o, "n"));
	assert_true(jw_has(o, "obj"));
	assert_false(jw_has(o, "missing"));
	/* Not an object / NULL: everything reads as absent. */
	assert_int_equal(jw_get_u32(NULL, "f"), 0);
	assert_null(jw_get_str(NULL, "s"));
	assert_false(jw_has(NULL, "s"));
	assert_int_equal(jw_get_u32(json_object_object_get(o, "arr"), "f"), 0);
	json_object_put(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_partial_and_pipelined),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_encode_rejects_non_objects),
		cmocka_unit_test(test_getters),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
