#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "lib/log.h"

static char path[64];
static char buf[8192];

static int setup(void **state)
{
	int fd;

	strcpy(path, "/tmp/pilot-test-log-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	return pilot_log_open(path);
}

static int teardown(void **state)
{
	pilot_log_open(NULL);
	unlink(path);
	pilot_log_init("pilot", PILOT_LOG_INFO, PILOT_LOG_TEXT);
	return 0;
}

/* Everything logged since the last call. */
static const char *take(void)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	assert_int_equal(truncate(path, 0), 0);
	return buf;
}

static void assert_matches(const char *s, const char *pattern)
{
	regex_t re;
	int r;

	assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	r = regexec(&re, s, 0, NULL, 0);
	regfree(&re);
	if (r != 0)
		fail_msg("\"%s\" does not match /%s/", s, pattern);
}

static void test_text_line(void **state)
{
	pilot_log_init("pilotd", PILOT_LOG_INFO, PILOT_LOG_TEXT);
	pilot_log(PILOT_LOG_INFO, "listening addr=%s port=%d", "0.0.0.0", 4000);
	assert_matches(take(), "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
			       "pilotd INFO listening addr=0.0.0.0 port=4000\n$");
	log_warn("two\nlines");
	assert_matches(take(), "Z pilotd WARN two\\\\nlines\n$");
	log_error("bad");
	assert_matches(take(), " pilotd ERROR bad\n$");
}

static json_object *take_json(void)
{
	const char *s = take();
	json_object *o;

	assert_non_null(strchr(s, '\n'));
	assert_int_equal(strchr(s, '\n')[1], '\0');
	o = json_tokener_parse(s);
	if (!o)
		fail_msg("not JSON: %s", s);
	return o;
}

static const char *str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return json_object_get_string(v);
}

static void test_json_line(void **state)
{
	json_object *o;

	pilot_log_init("pilotd", PILOT_LOG_DEBUG, PILOT_LOG_JSON);
	log_info("peer connected node=%u addr=%s reason=\"%s\" err=%s", 42u, "1.2.3.4:9",
		 "timed out", "Connection refused");
	o = take_json();
	assert_string_equal(str(o, "prog"), "pilotd");
	assert_string_equal(str(o, "level"), "info");
	assert_string_equal(str(o, "msg"), "peer connected");
	assert_string_equal(str(o, "node"), "42");
	assert_string_equal(str(o, "addr"), "1.2.3.4:9");
	assert_string_equal(str(o, "reason"), "timed out");
	assert_string_equal(str(o, "err"), "Connection refused");
	assert_matches(str(o, "ts"), "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{3}Z$");
	json_object_put(o);

	/* Leading key order: ts, prog, level, msg. */
	log_debug("x");
	assert_matches(take(), "^\\{\"ts\":\"[^\"]+\",\"prog\":\"pilotd\",\"level\":\"debug\",\"msg\":\"x\"\\}\n$");
}

static void test_json_msg_split(void **state)
{
	json_object *o;

	pilot_log_init("pilotd", PILOT_LOG_INFO, PILOT_LOG_JSON);
	/* '=' with an invalid key before the first field stays in msg. */
	log_info("GET /a?b=c done code=200 msg=hi");
	o = take_json();
	assert_string_equal(str(o, "msg"), "GET /a?b=c done");
	assert_string_equal(str(o, "code"), "200");
	assert_string_equal(str(o, "_msg"), "hi");
	json_object_put(o);

	log_info("k=v");
	o = take_json();
	assert_string_equal(str(o, "msg"), "");
	assert_string_equal(str(o, "k"), "v");
	json_object_put(o);

	log_info("q=\"a \\\"b\\\" c\" empty= tail=\"open");
	o = take_json();
	assert_string_equal(str(o, "q"), "a \"b\" c");
	assert_string_equal(str(o, "empty"), "");
	assert_string_equal(str(o, "tail"), "\"open");
	json_object_put(o);
}

static void test_json_escaping(void **state)
{
	json_object *o;

	pilot_log_init("pilotd", PILOT_LOG_INFO, PILOT_LOG_JSON);
	log_info("quote\" back\\ nl\n tab\t bell\a bad\xff utf8=\xc3\xa9 k=\x01");
	o = take_json();
	assert_string_equal(str(o, "msg"), "quote\" back\\ nl\n tab\t bell\a bad\xef\xbf\xbd");
	assert_string_equal(str(o, "utf8"), "\xc3\xa9");
	assert_string_equal(str(o, "k"), "\x01");
	json_object_put(o);
}

static void test_level_filtering(void **state)
{
	pilot_log_init("pilotd", PILOT_LOG_WARN, PILOT_LOG_TEXT);
	assert_false(pilot_log_enabled(PILOT_LOG_INFO));
	assert_true(pilot_log_enabled(PILOT_LOG_WARN));
	log_debug("no");
	log_info("no");
	assert_string_equal(take(), "");
	log_warn("yes");
	assert_non_null(strstr(take(), "WARN yes"));
	pilot_log_set_level(PILOT_LOG_ERROR);
	log_warn("no");
	assert_string_equal(take(), "");
	pilot_log_set_level(PILOT_LOG_DEBUG);
	log_debug("dbg");
	assert_non_null(strstr(take(), "DEBUG dbg"));
}

static void test_long_message(void **state)
{
	char big[5000];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	pilot_log_init("pilotd", PILOT_LOG_INFO, PILOT_LOG_TEXT);
	log_info("%s end", big);
	assert_int_equal(strlen(take()), 24 + 13 + sizeof(big) - 1 + 4 + 1);
}

static void test_reopen(void **state)
{
	char moved[80];

	pilot_log_init("pilotd", PILOT_LOG_INFO, PILOT_LOG_TEXT);
	snprintf(moved, sizeof(moved), "%s.1", path);
	assert_int_equal(rename(path, moved), 0);
	log_info("old file");
	assert_int_equal(pilot_log_reopen(), 0);
	log_info("new file");
	assert_non_null(strstr(take(), "new file"));
	unlink(moved);
	assert_int_equal(pilot_log_open("/nonexistent-dir/x.log"), -ENOENT);
}

static void test_parse(void **state)
{
	enum pilot_log_level l;
	enum pilot_log_format f;

	assert_int_equal(pilot_log_parse_level("debug", &l), 0);
	assert_int_equal(l, PILOT_LOG_DEBUG);
	assert_int_equal(pilot_log_parse_level("info", &l), 0);
	assert_int_equal(l, PILOT_LOG_INFO);
	assert_int_equal(pilot_log_parse_level("warn", &l), 0);
	assert_int_equal(l, PILOT_LOG_WARN);
	l = PILOT_LOG_DEBUG;
	assert_int_equal(pilot_log_parse_level("warning", &l), 0);
	assert_int_equal(l, PILOT_LOG_WARN);
	assert_int_equal(pilot_log_parse_level("error", &l), 0);
	assert_int_equal(l, PILOT_LOG_ERROR);
	assert_int_equal(pilot_log_parse_level("verbose", &l), -EINVAL);
	assert_int_equal(pilot_log_parse_level("", &l), -EINVAL);
	assert_int_equal(pilot_log_parse_format("text", &f), 0);
	assert_int_equal(f, PILOT_LOG_TEXT);
	assert_int_equal(pilot_log_parse_format("json", &f), 0);
	assert_int_equal(f, PILOT_LOG_JSON);
	assert_int_equal(pilot_log_parse_format("xml", &f), -EINVAL);
}

/* The options every program shares: checked with a usage message naming the bad
 * one, applied with info/text where they do not parse. */
static void test_log_opts(void **state)
{
	json_object *o;

	assert_null(pilot_log_opts_error("debug", "json"));
	assert_string_equal(pilot_log_opts_error("verbose", "text"),
			    "invalid -log-level (want debug, info, warn or error)");
	assert_string_equal(pilot_log_opts_error(NULL, "xml"),
			    "invalid -log-level (want debug, info, warn or error)");
	assert_string_equal(pilot_log_opts_error("warn", "xml"), "invalid -log-format (want text or json)");
	assert_string_equal(pilot_log_opts_error("warn", NULL), "invalid -log-format (want text or json)");
	pilot_log_init_opts("nameless", "warn", "json");
	assert_false(pilot_log_enabled(PILOT_LOG_INFO));
	log_warn("w");
	o = take_json();
	assert_string_equal(str(o, "prog"), "nameless");
	assert_string_equal(str(o, "level"), "warn");
	json_object_put(o);
	pilot_log_init_opts("pilotd", "bogus", "bogus");
	assert_true(pilot_log_enabled(PILOT_LOG_INFO));
	assert_false(pilot_log_enabled(PILOT_LOG_DEBUG));
	log_info("i");
	assert_matches(take(), " pilotd INFO i\n$");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_text_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_msg_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_escaping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_filtering, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
		cmocka_unit_test(test_parse),
		cmocka_unit_test_setup_teardown(test_log_opts, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
