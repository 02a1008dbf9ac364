/* pilot-nameserver: the wire grammar and its error texts (services.md §2.2),
 * the records with TTL and persistence, and the ownership rules of handle.c. */
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

#include "lib/fileutil.h"
#include "nameserver/ns.h"

static ns_req parse_ok(const char *s)
{
	ns_req r;
	char err[160] = "";

	assert_int_equal(ns_parse(s, strlen(s), &r, err, sizeof(err)), 0);
	return r;
}

static const char *parse_err(const char *s)
{
	static char err[160];
	ns_req r;

	assert_int_equal(ns_parse(s, strlen(s), &r, err, sizeof(err)), -EINVAL);
	return err;
}

static void test_parse(void **state)
{
	ns_req r = parse_ok("query a alpha");
	char buf[128];

	(void)state;
	assert_int_equal(r.op, NS_QUERY);
	assert_int_equal(r.type, NS_A);
	assert_string_equal(r.name, "alpha");
	r = parse_ok("  REGISTER\tS web 0:0000.0000.0007 3 80 extra\n");
	assert_int_equal(r.type, NS_S);
	assert_int_equal(r.addr.node, 7);
	assert_int_equal(r.net_id, 3);
	assert_int_equal(r.port, 80);
	r = parse_ok("QUERY S 65535 0");
	assert_int_equal(r.net_id, 65535);
	r = parse_ok("UNREGISTER S 1 2");
	assert_int_equal(r.op, NS_UNREGISTER);
	assert_string_equal(parse_err("QUERY"), "too few fields");
	assert_string_equal(parse_err("FOO A x"), "unknown command: FOO");
	assert_string_equal(parse_err("QUERY X x"), "unknown record type: X");
	assert_string_equal(parse_err("QUERY A"), "QUERY A requires <name>");
	assert_string_equal(parse_err("QUERY S 65536 1"),
			    "invalid net_id: strconv.ParseUint: parsing \"65536\": value out of range");
	assert_string_equal(parse_err("QUERY S -1 1"),
			    "invalid net_id: strconv.ParseUint: parsing \"-1\": invalid syntax");
	assert_string_equal(parse_err("REGISTER A x 1.2.3.4"), "invalid address: 1.2.3.4");
	assert_string_equal(parse_err("REGISTER S x 0:0000.0000.0001 1"),
			    "REGISTER S requires <name> <address> <net_id> <port>");
	assert_string_equal(parse_err("QUERY A a\x01"), "invalid name: a\x01");
	/* round trip through the client formatter */
	r = parse_ok("REGISTER S web 1:0001.0000.0007 1 443");
	assert_true(ns_format_req(&r, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "REGISTER S web 1:0001.0000.0007 1 443");
}

static int member_of_1(void *arg, uint32_t node, uint16_t net)
{
	(void)arg;
	return node == 7 && net == 1;
}

static int boot(void *arg, const char *name, pilot_addr *out)
{
	(*(int *)arg)++;
	if (strcmp(name, "reg-host"))
		return -ENOENT;
	*out = pilot_addr_make(0, 42);
	return 0;
}

static const char *ask(ns_ctx *c, uint32_t caller, const char *req)
{
	static char out[NS_MSG_MAX + 1];

	c->caller = caller;
	ns_handle(c, req, strlen(req), out, sizeof(out));
	return out;
}

static void test_ownership(void **state)
{
	int boots = 0;
	ns_ctx c = { .st = ns_store_new(NULL, 300000, 100),
		     .now_ms = 1000,
		     .is_member = member_of_1,
		     .bootstrap = boot,
		     .arg = &boots };

	(void)state;
	assert_string_equal(ask(&c, 7, "REGISTER A alpha 0:0000.0000.0007"), "OK");
	assert_string_equal(ask(&c, 9, "QUERY A alpha"), "A alpha 0:0000.0000.0007");
	/* another node's address, another node's name, an unknown caller */
	assert_string_equal(ask(&c, 9, "REGISTER A evil 0:0000.0000.0007"),
			    "ERR cannot register address for another node");
	assert_string_equal(ask(&c, 9, "REGISTER A alpha 0:0000.0000.0009"),
			    "ERR name \"alpha\" is registered by another node");
	assert_string_equal(ask(&c, 0, "REGISTER A x 0:0000.0000.0000"),
			    "ERR unknown caller: registrations need an authenticated Pilot source");
	assert_string_equal(ask(&c, 9, "UNREGISTER A alpha"), "ERR cannot unregister a name of another node");
	/* S: own address only; repeat refreshes */
	assert_string_equal(ask(&c, 9, "REGISTER S web 0:0000.0000.0007 1 80"),
			    "ERR cannot register service for another node");
	assert_string_equal(ask(&c, 7, "REGISTER S web 0:0000.0000.0007 1 80"), "OK");
	assert_string_equal(ask(&c, 7, "REGISTER S web 0:0000.0000.0007 1 80"), "OK");
	assert_string_equal(ask(&c, 9, "REGISTER S web2 0:0000.0000.0009 1 80"), "OK");
	assert_string_equal(ask(&c, 1, "QUERY S 1 80"),
			    "S web 0:0000.0000.0007 80\nS web2 0:0000.0000.0009 80");
	assert_string_equal(ask(&c, 1, "QUERY S 1 81"), "S");
	assert_string_equal(ask(&c, 9, "UNREGISTER S 1 80"), "OK");
	assert_string_equal(ask(&c, 1, "QUERY S 1 80"), "S web 0:0000.0000.0007 80");
	/* N: members only */
	assert_string_equal(ask(&c, 9, "REGISTER N lab 1"), "ERR not a member of network 1");
	assert_string_equal(ask(&c, 7, "REGISTER N lab 1"), "OK");
	assert_string_equal(ask(&c, 9, "QUERY N lab"), "N lab 1");
	assert_string_equal(ask(&c, 9, "QUERY N nope"), "ERR network \"nope\" not found");
	/* bootstrap from the registry, once */
	assert_string_equal(ask(&c, 9, "QUERY A reg-host"), "A reg-host 0:0000.0000.002A");
	assert_string_equal(ask(&c, 9, "QUERY A reg-host"), "A reg-host 0:0000.0000.002A");
	assert_int_equal(boots, 1);
	assert_string_equal(ask(&c, 9, "QUERY A ghost"), "ERR name \"ghost\" not found");
	assert_string_equal(ask(&c, 7, "UNREGISTER A alpha"), "OK");
	assert_string_equal(ask(&c, 9, "QUERY A alpha"), "ERR name \"alpha\" not found");
	ns_store_free(c.st);
}

static void test_ttl_and_persist(void **state)
{
	char dir[] = "/tmp/test-ns-XXXXXX", path[64];
	ns_store *s, *t;
	pilot_addr a;
	uint16_t net;
	char *txt;
	size_t len;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ns.json", dir);
	s = ns_store_new(path, 1000, 3);
	assert_int_equal(ns_store_load(s, 0), 0); /* missing file: empty */
	assert_int_equal(ns_store_set_a(s, "a", pilot_addr_make(0, 5), 0), 0);
	assert_int_equal(ns_store_set_n(s, "n", 4, 500), 0);
	assert_int_equal(ns_store_add_s(s, "s", pilot_addr_make(0, 5), 4, 80, 0), 0);
	assert_int_equal(ns_store_add_s(s, "t", pilot_addr_make(0, 6), 4, 80, 0), -ENOSPC);
	assert_int_equal(ns_store_add_s(s, "s", pilot_addr_make(0, 5), 4, 80, 600), 1); /* refresh */
	assert_int_equal(pilot_read_file(path, 1 << 20, &txt, &len), 0);
	assert_non_null(strstr(txt, "\"a_records\""));
	assert_non_null(strstr(txt, "\"network_id\""));
	free(txt);
	/* a restart keeps every record */
	t = ns_store_new(path, 1000, 10);
	assert_int_equal(ns_store_load(t, 0), 0);
	assert_int_equal(ns_store_count(t), 3);
	assert_int_equal(ns_store_get_a(t, "a", &a), 0);
	assert_int_equal(a.node, 5);
	ns_store_free(t);
	/* TTL: a at 1000, n at 1500, s refreshed to 1600 */
	assert_int_equal(ns_store_reap(s, 999), 0);
	assert_int_equal(ns_store_reap(s, 1000), 1);
	assert_int_equal(ns_store_get_a(s, "a", &a), -ENOENT);
	assert_int_equal(ns_store_get_n(s, "n", &net), 0);
	assert_int_equal(ns_store_reap(s, 1600), 2);
	assert_int_equal(ns_store_count(s), 0);
	ns_store_free(s);
	/* the reference's empty store (null lists) and a broken file */
	assert_int_equal(pilot_write_atomic(path,
					    "{\"a_records\":null,\"n_records\":null,\"s_records\":null}", 52,
					    0600),
			 0);
	s = ns_store_new(path, 1000, 10);
	assert_int_equal(ns_store_load(s, 0), 0);
	ns_store_free(s);
	assert_int_equal(pilot_write_atomic(path, "{\"a_records\":[{\"name\":\"x\"}]}", 29, 0600), 0);
	s = ns_store_new(path, 1000, 10);
	assert_int_equal(ns_store_load(s, 0), -EINVAL);
	ns_store_free(s);
	unlink(path);
	rmdir(dir);
}

static void test_reply_bounded(void **state)
{
	ns_ctx c = { .st = ns_store_new(NULL, 300000, 5000), .now_ms = 1 };
	char req[128], out[256];
	int i;
	size_t n;

	(void)state;
	for (i = 1; i <= 300; i++) {
		c.caller = (uint32_t)i;
		snprintf(req, sizeof(req), "REGISTER S svc%d 0:0000.0000.%04X 1 80", i, i);
		n = ns_handle(&c, req, strlen(req), out, sizeof(out));
		assert_string_equal(out, "OK");
		assert_int_equal(n, 2);
	}
	/* 300 lines do not fit 256 bytes: whole lines only */
	n = ns_handle(&c, "QUERY S 1 80", 12, out, sizeof(out));
	assert_true(n < sizeof(out));
	assert_int_equal(strlen(out), n);
	assert_int_equal(out[n - 1], '0');
	ns_store_free(c.st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_ownership),
		cmocka_unit_test(test_ttl_and_persist),
		cmocka_unit_test(test_reply_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
