#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/opts.h"

static struct {
	char *config, *registry, *log_level;
	int encrypt, public_;
	long conns, port;
	int64_t keepalive, idle;
} c;

static pilot_opt table[] = {
	{ "config", PILOT_OPT_STRING, &c.config, NULL, "JSON config file", "file", 0, 0, 0 },
	{ "registry", PILOT_OPT_STRING, &c.registry, "127.0.0.1:9000", "registry", "host:port", 0, 0, 0 },
	{ "log-level", PILOT_OPT_STRING, &c.log_level, "info", "log level", "level", 0, 0, 0 },
	{ "encrypt", PILOT_OPT_BOOL, &c.encrypt, "true", "encrypt tunnels", NULL, 0, 0, 0 },
	{ "public", PILOT_OPT_BOOL, &c.public_, NULL, "public node", NULL, 0, 0, 0 },
	{ "max-conns", PILOT_OPT_INT, &c.conns, "4096", "connection limit", "n", 0, 0, 0 },
	{ "port", PILOT_OPT_INT, &c.port, "0", "port", NULL, 0, 65535, 0 },
	{ "keepalive", PILOT_OPT_DURATION, &c.keepalive, "30s", "keepalive", "dur", 0, 0, 0 },
	{ "idle-timeout", PILOT_OPT_DURATION, &c.idle, NULL, "idle", NULL, 0, 0, 0 },
	{ NULL, 0, NULL, NULL, NULL, NULL, 0, 0, 0 },
};

static char err[512];
static int first;

/* Parse a NULL-terminated argument list after argv[0]. */
static int parse_v(const char *a, ...)
{
	char *argv[32] = { "prog" };
	int argc = 1;
	va_list ap;

	va_start(ap, a);
	for (; a; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	pilot_opts_free(table);
	err[0] = '\0';
	return pilot_opts_parse(table, argc, argv, &first, err, sizeof(err));
}

static int teardown(void **state)
{
	pilot_opts_free(table);
	return 0;
}

static void test_defaults(void **state)
{
	assert_int_equal(parse_v(NULL), 0);
	assert_int_equal(first, 1);
	assert_string_equal(c.registry, "127.0.0.1:9000");
	assert_string_equal(c.config, "");
	assert_int_equal(c.encrypt, 1);
	assert_int_equal(c.public_, 0);
	assert_int_equal(c.conns, 4096);
	assert_int_equal(c.keepalive, 30000);
	assert_int_equal(c.idle, 0);
	assert_int_equal(table[1].set, 0);
}

static void test_flag_syntax(void **state)
{
	assert_int_equal(parse_v("-registry", "a:1", NULL), 0);
	assert_string_equal(c.registry, "a:1");
	assert_int_equal(table[1].set, 1);
	assert_int_equal(parse_v("-registry=b:2", NULL), 0);
	assert_string_equal(c.registry, "b:2");
	assert_int_equal(parse_v("--registry", "c:3", NULL), 0);
	assert_string_equal(c.registry, "c:3");
	assert_int_equal(parse_v("--registry=d:4", "-max-conns", "7", "--keepalive=1m30s", NULL), 0);
	assert_string_equal(c.registry, "d:4");
	assert_int_equal(c.conns, 7);
	assert_int_equal(c.keepalive, 90000);
	/* Repeated flags: the last wins (and the first copy is freed). */
	assert_int_equal(parse_v("-registry", "x", "-registry", "y", NULL), 0);
	assert_string_equal(c.registry, "y");
	/* The value of a non-bool flag is taken even if it looks like a flag. */
	assert_int_equal(parse_v("-registry", "-public", NULL), 0);
	assert_string_equal(c.registry, "-public");
	assert_int_equal(c.public_, 0);
	assert_int_equal(parse_v("-registry=", NULL), 0);
	assert_string_equal(c.registry, "");
	assert_int_equal(parse_v("-max-conns", "0x10", NULL), 0);
	assert_int_equal(c.conns, 16);
	assert_int_equal(parse_v("-max-conns", "-5", NULL), 0);
	assert_int_equal(c.conns, -5);
}

static void test_positional(void **state)
{
	assert_int_equal(parse_v("-public", "send", "-encrypt=false", NULL), 0);
	assert_int_equal(first, 2);
	assert_int_equal(c.public_, 1);
	assert_int_equal(c.encrypt, 1); /* after the first positional: not parsed */
	assert_int_equal(parse_v("--", "-public", NULL), 0);
	assert_int_equal(first, 2);
	assert_int_equal(c.public_, 0);
	assert_int_equal(parse_v("-", "x", NULL), 0);
	assert_int_equal(first, 1);
}

static void test_bools(void **state)
{
	assert_int_equal(parse_v("-encrypt=false", NULL), 0);
	assert_int_equal(c.encrypt, 0);
	assert_int_equal(parse_v("--encrypt=0", "-public=T", NULL), 0);
	assert_int_equal(c.encrypt, 0);
	assert_int_equal(c.public_, 1);
	assert_int_equal(parse_v("-public", NULL), 0);
	assert_int_equal(c.public_, 1);
	/* Go: "-encrypt false" sets encrypt and leaves "false" as a positional. */
	assert_int_equal(parse_v("-encrypt", "false", "-public", NULL), 0);
	assert_int_equal(c.encrypt, 1);
	assert_int_equal(c.public_, 0);
	assert_int_equal(first, 2);
	assert_int_equal(parse_v("-public=yes", NULL), -EINVAL);
	assert_non_null(strstr(err, "-public"));
	assert_non_null(strstr(err, "yes"));
}

static void test_flag_errors(void **state)
{
	assert_int_equal(parse_v("-nope", NULL), -EINVAL);
	assert_string_equal(err, "unknown flag -nope");
	assert_int_equal(parse_v("--nope=1", NULL), -EINVAL);
	assert_string_equal(err, "unknown flag -nope");
	assert_int_equal(parse_v("-registry", NULL), -EINVAL);
	assert_non_null(strstr(err, "-registry"));
	assert_int_equal(parse_v("---x", NULL), -EINVAL);
	assert_int_equal(parse_v("-=x", NULL), -EINVAL);
	assert_int_equal(parse_v("-max-conns", "12x", NULL), -EINVAL);
	assert_non_null(strstr(err, "12x"));
	assert_non_null(strstr(err, "-max-conns"));
	assert_int_equal(parse_v("-max-conns", " 1", NULL), -EINVAL);
	assert_int_equal(parse_v("-max-conns", "99999999999999999999", NULL), -EINVAL);
	assert_int_equal(parse_v("-port", "65536", NULL), -EINVAL);
	assert_non_null(strstr(err, "between 0 and 65535"));
	assert_int_equal(parse_v("-port", "65535", NULL), 0);
	assert_int_equal(parse_v("-port", "-1", NULL), -EINVAL);
	assert_int_equal(parse_v("-keepalive", "30", NULL), -EINVAL);
	assert_non_null(strstr(err, "-keepalive"));
}

static void test_help(void **state)
{
	assert_int_equal(parse_v("-h", NULL), 1);
	assert_int_equal(parse_v("-help", NULL), 1);
	assert_int_equal(parse_v("--help", NULL), 1);
	assert_int_equal(parse_v("-public", "--help", NULL), 1);
	assert_int_equal(parse_v("-hx", NULL), -EINVAL);
}

static void test_durations(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;
	} ok[] = {
		{ "0", 0 },	       { "0s", 0 },	     { "1s", 1000 },
		{ "1.5s", 1500 },      { "1m30s", 90000 },   { "250ms", 250 },
		{ "1h", 3600000 },     { "2h45m", 9900000 }, { "1.5h", 5400000 },
		{ ".5s", 500 },	       { "5.s", 5000 },	     { "+3s", 3000 },
		{ "1500us", 1 },       { "1999us", 1 },	     { "2000\xc2\xb5s", 2 },
		{ "3000\xce\xbcs", 3 }, { "1ns", 1 },	     { "999999ns", 1 },
		{ "1000000ns", 1 },    { "1ms1ns", 1 },	     { "10m", 600000 },
		{ "0.0001s", 1 },      { "100h", 360000000 }, { "0h0m0s", 0 },
		{ "2562047h", 9223369200000LL },
	};
	static const char *const bad[] = {
		"",	"-1s", "-0", "1",  "1.5", "s",	 ".s",	 "1 s",	 "1sec", "1d",
		"1s ", " 1s", "1.2.3s", "1e3s", "abc", "2562048h", "9223372036854775808ns",
		"99999999999999999999s",
	};
	int64_t ms;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ms = -1;
		if (pilot_parse_duration(ok[i].s, &ms) != 0 || ms != ok[i].ms)
			fail_msg("\"%s\": got %lld, want %lld", ok[i].s, (long long)ms, (long long)ok[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (pilot_parse_duration(bad[i], &ms) != -EINVAL)
			fail_msg("\"%s\" accepted as %lld", bad[i], (long long)ms);
}

static void test_parse_bool(void **state)
{
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };
	int v;

	for (int i = 0; i < 6; i++) {
		assert_int_equal(pilot_parse_bool(yes[i], &v), 0);
		assert_int_equal(v, 1);
		assert_int_equal(pilot_parse_bool(no[i], &v), 0);
		assert_int_equal(v, 0);
	}
	assert_int_equal(pilot_parse_bool("yes", &v), -EINVAL);
	assert_int_equal(pilot_parse_bool("tRUE", &v), -EINVAL);
	assert_int_equal(pilot_parse_bool("", &v), -EINVAL);
}

static char cfg_path[64];

static void write_cfg(const char *json)
{
	FILE *f;

	strcpy(cfg_path, "/tmp/pilot-test-opts-XXXXXX");
	close(mkstemp(cfg_path));
	f = fopen(cfg_path, "w");
	assert_non_null(f);
	fputs(json, f);
	fclose(f);
}

static int parse_cfg(const char *json, const char *flag1, const char *flag2)
{
	int r;

	write_cfg(json);
	r = parse_v("-config", cfg_path, flag1, flag2, NULL);
	unlink(cfg_path);
	return r;
}

static void test_config_keys(void **state)
{
	assert_int_equal(parse_cfg("{\"registry\":\"r:1\",\"log_level\":\"debug\",\"max-conns\":12,"
				   "\"idle_timeout\":\"2m\",\"public\":true,\"encrypt\":\"false\"}",
				   NULL, NULL), 0);
	assert_string_equal(c.registry, "r:1");
	assert_string_equal(c.log_level, "debug");
	assert_int_equal(c.conns, 12);
	assert_int_equal(c.idle, 120000);
	assert_int_equal(c.public_, 1);
	assert_int_equal(c.encrypt, 0);
	assert_int_equal(table[1].set, 2);
	assert_int_equal(table[0].set, 1);
	assert_int_equal(table[7].set, 0);
	assert_int_equal(c.keepalive, 30000);
	/* Both spellings: the hyphen form wins whatever the order. */
	assert_int_equal(parse_cfg("{\"log_level\":\"debug\",\"log-level\":\"warn\"}", NULL, NULL), 0);
	assert_string_equal(c.log_level, "warn");
	assert_int_equal(parse_cfg("{\"log-level\":\"warn\",\"log_level\":\"debug\"}", NULL, NULL), 0);
	assert_string_equal(c.log_level, "warn");
	/* Numeric strings for ints; whitespace around the object. */
	assert_int_equal(parse_cfg(" \n{\"max_conns\":\"99\", \"port\": 80}\n ", NULL, NULL), 0);
	assert_int_equal(c.conns, 99);
	assert_int_equal(c.port, 80);
	assert_int_equal(parse_cfg("{}", NULL, NULL), 0);
}

static void test_config_flags_win(void **state)
{
	assert_int_equal(parse_cfg("{\"registry\":\"from-file\",\"public\":true,\"keepalive\":\"1s\"}",
				   "-registry=from-flag", "-public=false"), 0);
	assert_string_equal(c.registry, "from-flag");
	assert_int_equal(c.public_, 0);
	assert_int_equal(c.keepalive, 1000);
	assert_int_equal(table[1].set, 1);
	assert_int_equal(table[7].set, 2);
	/* The flag wins even when it comes before -config. */
	write_cfg("{\"registry\":\"from-file\"}");
	assert_int_equal(parse_v("-registry", "flag", "-config", cfg_path, NULL), 0);
	unlink(cfg_path);
	assert_string_equal(c.registry, "flag");
	/* ... but a bad value in the file is still an error. */
	assert_int_equal(parse_cfg("{\"registry\":5}", "-registry=x", NULL), -EINVAL);
	assert_non_null(strstr(err, "\"registry\""));
	assert_int_equal(parse_cfg("{\"port\":\"99999\"}", "-port=1", NULL), -EINVAL);
	assert_int_equal(parse_cfg("{\"registry\":\"file\",\"port\":\"9\"}", "-registry=x", "-port=1"), 0);
	assert_string_equal(c.registry, "x");
	assert_int_equal(c.port, 1);
	/* -config "" means no file. */
	assert_int_equal(parse_v("-config", "", NULL), 0);
}

static void test_config_unknown_keys(void **state)
{
	assert_int_equal(parse_cfg("{\"registry\":\"x\",\"registy\":\"y\",\"log__level\":1}", NULL, NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "\"registy\""));
	assert_non_null(strstr(err, "\"log__level\""));
	assert_non_null(strstr(err, cfg_path));
	/* log-level matches only "log-level" / "log_level", not other spellings. */
	assert_int_equal(parse_cfg("{\"log.level\":\"x\"}", NULL, NULL), -EINVAL);
	assert_int_equal(parse_cfg("{\"Registry\":\"x\"}", NULL, NULL), -EINVAL);
	assert_non_null(strstr(err, "Registry"));
}

static void expect_cfg_error(const char *json, const char *needle)
{
	assert_int_equal(parse_cfg(json, NULL, NULL), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("%s: error \"%s\" does not mention %s", json, err, needle);
}

static void test_config_types(void **state)
{
	expect_cfg_error("{\"registry\":5}", "\"registry\"");
	expect_cfg_error("{\"registry\":null}", "\"registry\"");
	expect_cfg_error("{\"registry\":[\"a\"]}", "\"registry\"");
	expect_cfg_error("{\"registry\":{}}", "\"registry\"");
	expect_cfg_error("{\"public\":1}", "\"public\"");
	expect_cfg_error("{\"public\":\"yes\"}", "\"public\"");
	expect_cfg_error("{\"max_conns\":1.5}", "\"max_conns\"");
	expect_cfg_error("{\"max-conns\":1e6}", "\"max-conns\"");
	expect_cfg_error("{\"max-conns\":\"1e6\"}", "\"max-conns\"");
	expect_cfg_error("{\"max-conns\":true}", "\"max-conns\"");
	expect_cfg_error("{\"max-conns\":99999999999999999999}", "\"max-conns\"");
	expect_cfg_error("{\"keepalive\":30}", "\"keepalive\"");
	expect_cfg_error("{\"keepalive\":\"30\"}", "\"keepalive\"");
	expect_cfg_error("{\"idle_timeout\":\"-1s\"}", "\"idle_timeout\"");
	expect_cfg_error("{\"registry\":\"a\\u0000b\"}", "\"registry\"");
	/* bounds */
	expect_cfg_error("{\"port\":70000}", "between 0 and 65535");
	expect_cfg_error("{\"port\":-1}", "\"port\"");
	assert_int_equal(parse_cfg("{\"port\":65535}", NULL, NULL), 0);
	assert_int_equal(c.port, 65535);
}

static void test_config_bad_files(void **state)
{
	expect_cfg_error("[1]", "not a JSON object");
	expect_cfg_error("\"x\"", "not a JSON object");
	expect_cfg_error("{\"registry\":\"x\"} x", "offset 17");
	expect_cfg_error("{\"registry\":\"x\"}{}", "not valid JSON");
	expect_cfg_error("{\"registry\":", "not valid JSON");
	expect_cfg_error("", "not valid JSON");
	expect_cfg_error("{'registry':'x'}", "not valid JSON");
	expect_cfg_error("{\"registry\":\"x\",}", "not valid JSON");
	expect_cfg_error("{\"keepalive\":NaN}", "not valid JSON");
	expect_cfg_error("{\"registry\":\"tab\there\"}", "not valid JSON");
	assert_int_equal(parse_v("-config", "/nonexistent/pilot.json", NULL), -EINVAL);
	assert_non_null(strstr(err, "/nonexistent/pilot.json"));
}

static void test_config_too_big(void **state)
{
	size_t n = (1u << 20) + 16;
	char *big = malloc(n + 1);

	assert_non_null(big);
	memset(big, ' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	big[n] = '\0';
	expect_cfg_error(big, "1 MiB");
	assert_int_equal(pilot_opts_apply_json(table, big, n, err, sizeof(err)), -EINVAL);
	free(big);
}

static void test_apply_json_direct(void **state)
{
	const char *j = "{\"registry\":\"direct\",\"max-conns\":3}";

	assert_int_equal(parse_v("-max-conns", "8", NULL), 0);
	assert_int_equal(pilot_opts_apply_json(table, j, strlen(j), err, sizeof(err)), 0);
	assert_string_equal(c.registry, "direct");
	assert_int_equal(c.conns, 8);
	/* Explicit length: bytes after len are not read. */
	assert_int_equal(pilot_opts_apply_json(table, "{}garbage", 2, err, sizeof(err)), 0);
	assert_int_equal(pilot_opts_apply_json(table, "{}", 1, err, sizeof(err)), -EINVAL);
}

static void test_usage(void **state)
{
	char out[4096] = { 0 };
	FILE *f = fmemopen(out, sizeof(out) - 1, "w");

	assert_non_null(f);
	pilot_opts_usage(table, "pilotd", "[options]", f);
	fclose(f);
	assert_non_null(strstr(out, "Usage: pilotd [options]\n"));
	assert_non_null(strstr(out, "\n  -registry host:port      registry (default: 127.0.0.1:9000)\n"));
	assert_non_null(strstr(out, "\n  -encrypt                 encrypt tunnels (default: true)\n"));
	assert_non_null(strstr(out, "\n  -public                  public node\n"));
	assert_non_null(strstr(out, "\n  -idle-timeout duration   idle\n"));
	assert_non_null(strstr(out, "\n  -port int                port (default: 0)\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_defaults, teardown),
		cmocka_unit_test_teardown(test_flag_syntax, teardown),
		cmocka_unit_test_teardown(test_positional, teardown),
		cmocka_unit_test_teardown(test_bools, teardown),
		cmocka_unit_test_teardown(test_flag_errors, teardown),
		cmocka_unit_test_teardown(test_help, teardown),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_parse_bool),
		cmocka_unit_test_teardown(test_config_keys, teardown),
		cmocka_unit_test_teardown(test_config_flags_win, teardown),
		cmocka_unit_test_teardown(test_config_unknown_keys, teardown),
		cmocka_unit_test_teardown(test_config_types, teardown),
		cmocka_unit_test_teardown(test_config_bad_files, teardown),
		cmocka_unit_test_teardown(test_config_too_big, teardown),
		cmocka_unit_test_teardown(test_apply_json_direct, teardown),
		cmocka_unit_test(test_usage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
