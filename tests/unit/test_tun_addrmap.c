#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fileutil.h"
#include "tun/addrmap.h"

#define IP(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))

static char dir[64];
static char path[128];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/test_tun_addrmap.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/state/ipmap.json", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static tun_addrmap *open_map(const char *p, int prefix, uint32_t dns_ip)
{
	tun_addrmap_cfg cfg = { .prefix_len = prefix, .dns_ip = dns_ip, .path = p };
	tun_addrmap *m = NULL;
	char err[256] = "";

	assert_int_equal(tun_addrmap_open(&cfg, &m, err, sizeof(err)), 0);
	return m;
}

static void test_alloc_lowest_free(void **state)
{
	tun_addrmap *m = open_map(NULL, 0, IP(10, 4, 0, 3));
	uint32_t ip;
	pilot_addr a;

	assert_int_equal(tun_addrmap_own_ip(m), IP(10, 4, 0, 1));
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(0, 7), &ip), 0);
	assert_int_equal(ip, IP(10, 4, 0, 2));
	/* .3 is the DNS address: skipped */
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(0, 8), &ip), 0);
	assert_int_equal(ip, IP(10, 4, 0, 4));
	/* the same address keeps its IP */
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(0, 7), &ip), 0);
	assert_int_equal(ip, IP(10, 4, 0, 2));
	assert_int_equal(tun_addrmap_lookup_ip(m, IP(10, 4, 0, 4), &a), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(0, 8)));
	assert_int_equal(tun_addrmap_lookup_ip(m, IP(10, 4, 0, 5), &a), -ENOENT);
	assert_int_equal(tun_addrmap_lookup_ip(m, IP(10, 5, 0, 2), &a), -ENOENT);
	assert_int_equal(tun_addrmap_count(m), 2);
	/* unmap frees the lowest slot for the next peer */
	assert_int_equal(tun_addrmap_unmap(m, pilot_addr_make(0, 7)), 0);
	assert_int_equal(tun_addrmap_unmap(m, pilot_addr_make(0, 7)), -ENOENT);
	assert_int_equal(tun_addrmap_lookup_addr(m, pilot_addr_make(0, 7), &ip), -ENOENT);
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(1, 9), &ip), 0);
	assert_int_equal(ip, IP(10, 4, 0, 2));
	/* zero and broadcast addresses never get an IP */
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(0, 0), &ip), -EINVAL);
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(1, 0xFFFFFFFF), &ip), -EINVAL);
	tun_addrmap_free(m);
}

static void test_own_address(void **state)
{
	tun_addrmap *m = open_map(NULL, 0, 0);
	uint32_t ip;
	pilot_addr a;

	assert_int_equal(tun_addrmap_lookup_ip(m, IP(10, 4, 0, 1), &a), -ENOENT);
	tun_addrmap_set_own(m, pilot_addr_make(1, 0x10));
	assert_int_equal(tun_addrmap_lookup_ip(m, IP(10, 4, 0, 1), &a), 0);
	assert_true(pilot_addr_eq(a, pilot_addr_make(1, 0x10)));
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(1, 0x10), &ip), 0);
	assert_int_equal(ip, IP(10, 4, 0, 1));
	assert_int_equal(tun_addrmap_count(m), 0);
	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(1, 0x10), IP(10, 4, 9, 9)), -EINVAL);
	tun_addrmap_free(m);
}

static void test_requested_ip(void **state)
{
	tun_addrmap *m = open_map(NULL, 0, 0);
	uint32_t ip;

	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(0, 7), IP(10, 4, 1, 7)), 0);
	assert_int_equal(tun_addrmap_lookup_addr(m, pilot_addr_make(0, 7), &ip), 0);
	assert_int_equal(ip, IP(10, 4, 1, 7));
	/* idempotent; taken by another; reserved; outside */
	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(0, 7), IP(10, 4, 1, 7)), 0);
	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(0, 8), IP(10, 4, 1, 7)), -EEXIST);
	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(0, 8), IP(10, 4, 0, 0)), -EINVAL);
	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(0, 8), IP(10, 4, 0, 1)), -EINVAL);
	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(0, 8), IP(10, 4, 255, 255)), -EINVAL);
	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(0, 8), IP(10, 5, 0, 9)), -EINVAL);
	/* moving an address frees its old IP */
	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(0, 7), IP(10, 4, 2, 2)), 0);
	assert_int_equal(tun_addrmap_count(m), 1);
	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(0, 8), IP(10, 4, 1, 7)), 0);
	/* allocation goes around requested IPs */
	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(0, 9), IP(10, 4, 0, 2)), 0);
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(0, 10), &ip), 0);
	assert_int_equal(ip, IP(10, 4, 0, 3));
	tun_addrmap_free(m);
}

static void test_bounded_by_subnet(void **state)
{
	/* /29: 8 addresses, minus network, own, broadcast and DNS = 4 peers */
	tun_addrmap_cfg cfg = { .subnet = IP(10, 4, 7, 8), .prefix_len = 29, .dns_ip = IP(10, 4, 7, 10) };
	tun_addrmap *m = NULL;
	char err[256];
	uint32_t ip;

	assert_int_equal(tun_addrmap_open(&cfg, &m, err, sizeof(err)), 0);
	assert_int_equal(tun_addrmap_own_ip(m), IP(10, 4, 7, 9));
	for (uint32_t i = 1; i <= 4; i++) {
		assert_int_equal(tun_addrmap_get(m, pilot_addr_make(0, i), &ip), 0);
		assert_true(ip > IP(10, 4, 7, 10) && ip < IP(10, 4, 7, 15));
	}
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(0, 5), &ip), -ENOSPC);
	tun_addrmap_free(m);

	cfg.prefix_len = 8;
	assert_int_equal(tun_addrmap_open(&cfg, &m, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "/8"));
	cfg.prefix_len = 24;
	assert_int_equal(tun_addrmap_open(&cfg, &m, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "host bits"));
}

/* Many entries with hash collisions and deletions keep both directions right. */
static void test_many_entries(void **state)
{
	tun_addrmap *m = open_map(NULL, 0, 0);
	uint32_t ip;
	pilot_addr a;

	for (uint32_t i = 1; i <= 3000; i++)
		assert_int_equal(tun_addrmap_get(m, pilot_addr_make((uint16_t)(i % 3), i * 7919), &ip), 0);
	for (uint32_t i = 1; i <= 3000; i += 2)
		assert_int_equal(tun_addrmap_unmap(m, pilot_addr_make((uint16_t)(i % 3), i * 7919)), 0);
	assert_int_equal(tun_addrmap_count(m), 1500);
	for (uint32_t i = 2; i <= 3000; i += 2) {
		assert_int_equal(tun_addrmap_lookup_addr(m, pilot_addr_make((uint16_t)(i % 3), i * 7919), &ip), 0);
		assert_int_equal(tun_addrmap_lookup_ip(m, ip, &a), 0);
		assert_true(pilot_addr_eq(a, pilot_addr_make((uint16_t)(i % 3), i * 7919)));
	}
	tun_addrmap_free(m);
}

static void test_persistence_round_trip(void **state)
{
	tun_addrmap *m = open_map(path, 0, 0);
	uint32_t ip;
	struct stat st;

	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(0, 7), &ip), 0);
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(1, 0x00020003), &ip), 0);
	assert_int_equal(tun_addrmap_map(m, pilot_addr_make(2, 5), IP(10, 4, 200, 1)), 0);
	assert_int_equal(tun_addrmap_unmap(m, pilot_addr_make(0, 7)), 0);
	tun_addrmap_free(m);

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* restart: same IPs, and the freed .2 goes to the next new peer */
	m = open_map(path, 0, 0);
	assert_int_equal(tun_addrmap_count(m), 2);
	assert_int_equal(tun_addrmap_lookup_addr(m, pilot_addr_make(1, 0x00020003), &ip), 0);
	assert_int_equal(ip, IP(10, 4, 0, 3));
	assert_int_equal(tun_addrmap_lookup_addr(m, pilot_addr_make(2, 5), &ip), 0);
	assert_int_equal(ip, IP(10, 4, 200, 1));
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(3, 3), &ip), 0);
	assert_int_equal(ip, IP(10, 4, 0, 2));
	tun_addrmap_free(m);
}

static void test_file_format(void **state)
{
	const char *text = "{\"version\":1,\"subnet\":\"10.4.0.0/16\",\"map\":["
			   "{\"addr\":\"0:0000.0000.0007\",\"ip\":\"10.4.0.9\"},"
			   "{\"addr\":\"1:0001.0000.0008\",\"ip\":\"10.9.0.9\"}]}";
	tun_addrmap *m;
	uint32_t ip;
	char *back = NULL;

	assert_int_equal(pilot_write_atomic(path, text, strlen(text), 0600), 0);
	m = open_map(path, 0, 0);
	/* the entry outside the subnet is dropped (the subnet was reconfigured) */
	assert_int_equal(tun_addrmap_count(m), 1);
	assert_int_equal(tun_addrmap_lookup_addr(m, pilot_addr_make(0, 7), &ip), 0);
	assert_int_equal(ip, IP(10, 4, 0, 9));
	assert_int_equal(tun_addrmap_save(m), 0);
	tun_addrmap_free(m);
	assert_int_equal(pilot_read_file(path, 4096, &back, NULL), 0);
	assert_string_equal(back, "{\"version\":1,\"subnet\":\"10.4.0.0/16\",\"map\":[\n"
				  "{\"addr\":\"0:0000.0000.0007\",\"ip\":\"10.4.0.9\"}]}\n");
	free(back);
}

static void expect_corrupt(const char *text, const char *why)
{
	tun_addrmap_cfg cfg = { .path = path };
	tun_addrmap *m = NULL;
	char err[512] = "";

	assert_int_equal(pilot_write_atomic(path, text, strlen(text), 0600), 0);
	assert_int_equal(tun_addrmap_open(&cfg, &m, err, sizeof(err)), -EINVAL);
	assert_null(m);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "corrupt"));
	assert_non_null(strstr(err, why));
}

static void test_corrupt_file(void **state)
{
	expect_corrupt("{\"version\":1,\"map\":[", "invalid JSON");
	expect_corrupt("[1,2]", "no \"map\" array");
	expect_corrupt("{\"version\":2,\"map\":[]}", "version");
	expect_corrupt("{\"version\":1,\"map\":[{\"addr\":\"zz\",\"ip\":\"10.4.0.2\"}]}", "map[0]");
	expect_corrupt("{\"version\":1,\"map\":[{\"addr\":\"0:0000.0000.0002\",\"ip\":\"10.4.0.300\"}]}", "map[0]");
	expect_corrupt("{\"version\":1,\"map\":[{\"addr\":\"0:0000.0000.0002\",\"ip\":\"10.4.0.2\"},"
		       "{\"addr\":\"0:0000.0000.0002\",\"ip\":\"10.4.0.3\"}]}", "twice");
	expect_corrupt("{\"version\":1,\"map\":[{\"addr\":\"0:0000.0000.0002\",\"ip\":\"10.4.0.2\"},"
		       "{\"addr\":\"0:0000.0000.0003\",\"ip\":\"10.4.0.2\"}]}", "twice");
}

static void test_missing_dir_created(void **state)
{
	char p[192];
	tun_addrmap *m;
	uint32_t ip;

	snprintf(p, sizeof(p), "%s/a/b/map.json", dir);
	m = open_map(p, 0, 0);
	assert_int_equal(tun_addrmap_get(m, pilot_addr_make(0, 7), &ip), 0);
	assert_int_equal(access(p, R_OK), 0);
	tun_addrmap_free(m);
}

/* ---- ULA vectors ---------------------------------------------------------------- */

struct ula_vec {
	uint16_t net;
	uint32_t node;
	const char *text;
};

static const struct ula_vec ula_vecs[] = {
	{ 0, 7, "fd50:494c:4f54::7" },
	{ 1, 0x00000002, "fd50:494c:4f54:1::2" },
	{ 258, 0x0A0B0C0D, "fd50:494c:4f54:102::a0b:c0d" },
	{ 65535, 0xFFFFFFFE, "fd50:494c:4f54:ffff::ffff:fffe" },
	{ 0, 0x00010000, "fd50:494c:4f54::1:0" },
};

static void test_ula_vectors(void **state)
{
	for (size_t i = 0; i < sizeof(ula_vecs) / sizeof(ula_vecs[0]); i++) {
		struct in6_addr ip, want;
		char text[INET6_ADDRSTRLEN];
		pilot_addr a;

		tun_ula_from_addr(pilot_addr_make(ula_vecs[i].net, ula_vecs[i].node), &ip);
		inet_ntop(AF_INET6, &ip, text, sizeof(text));
		assert_string_equal(text, ula_vecs[i].text);
		assert_int_equal(inet_pton(AF_INET6, ula_vecs[i].text, &want), 1);
		assert_int_equal(tun_ula_to_addr(&want, &a), 0);
		assert_int_equal(a.net, ula_vecs[i].net);
		assert_int_equal(a.node, ula_vecs[i].node);
	}
}

static void test_ula_rejects(void **state)
{
	static const char *bad[] = { "fd50:494c:4f54:1:0:1::2", "fd50:494c:4f54:1:1::2",
				     "fd00::7", "fd50:494c:4f55::7", "2001:db8::1" };
	struct in6_addr ip;
	pilot_addr a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(inet_pton(AF_INET6, bad[i], &ip), 1);
		assert_int_equal(tun_ula_to_addr(&ip, &a), -EINVAL);
	}
	assert_int_equal(inet_pton(AF_INET6, "fd50:494c:4f54:1:1::2", &ip), 1);
	assert_true(tun_ula_in_prefix(&ip));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alloc_lowest_free),
		cmocka_unit_test(test_own_address),
		cmocka_unit_test(test_requested_ip),
		cmocka_unit_test(test_bounded_by_subnet),
		cmocka_unit_test(test_many_entries),
		cmocka_unit_test_setup_teardown(test_persistence_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_dir_created, setup, teardown),
		cmocka_unit_test(test_ula_vectors),
		cmocka_unit_test(test_ula_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
