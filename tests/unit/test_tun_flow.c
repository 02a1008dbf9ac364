/* tun/flow.c: insert/lookup/remove for IPv4 and IPv6 keys, bounds, deferred free,
 * iteration, and a random workload against a shadow model (tombstone rebuilds). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tun/flow.h"

static void key_n(tun_flow_key *k, uint32_t n)
{
	tun_ipaddr s, d;

	if (n & 1) {
		uint8_t a[16] = { 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
		uint8_t b[16] = { 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
		b[12] = (uint8_t)(n >> 24), b[13] = (uint8_t)(n >> 16), b[14] = (uint8_t)(n >> 8), b[15] = (uint8_t)n;
		tun_ipaddr_v6(&s, a);
		tun_ipaddr_v6(&d, b);
	} else {
		tun_ipaddr_v4(&s, 0x0a040001);
		tun_ipaddr_v4(&d, 0x0a040000 | (n >> 16 & 0xffff));
	}
	tun_flow_key_make(k, n % 3 ? TUN_IPPROTO_TCP : TUN_IPPROTO_UDP, &s, (uint16_t)(40000 + n % 7), &d,
			  (uint16_t)n);
}

static void *val_of(uint32_t n) { return (void *)(uintptr_t)(n + 1); }

static void test_basic(void **state)
{
	tun_flow_table *t = tun_flow_table_new(4, 1);
	tun_flow_key k, k2;
	(void)state;

	assert_non_null(t);
	key_n(&k, 1);
	assert_null(tun_flow_lookup(t, &k));
	assert_int_equal(tun_flow_insert(t, &k, val_of(1)), 0);
	assert_int_equal(tun_flow_insert(t, &k, val_of(1)), -EEXIST);
	assert_int_equal(tun_flow_insert(t, &k, NULL), -EINVAL);
	assert_ptr_equal(tun_flow_lookup(t, &k), val_of(1));
	/* same ports, other family: a different flow */
	k2 = k;
	k2.src.family = 4;
	assert_null(tun_flow_lookup(t, &k2));
	/* padding bytes in a hand-made key do not matter */
	memset(&k2, 0xaa, sizeof(k2));
	k2.proto = k.proto, k2.src = k.src, k2.dst = k.dst, k2.sport = k.sport, k2.dport = k.dport;
	assert_ptr_equal(tun_flow_lookup(t, &k2), val_of(1));
	for (uint32_t i = 2; i <= 4; i++) {
		key_n(&k2, i);
		assert_int_equal(tun_flow_insert(t, &k2, val_of(i)), 0);
	}
	key_n(&k2, 5);
	assert_int_equal(tun_flow_insert(t, &k2, val_of(5)), -ENOSPC);
	assert_int_equal(tun_flow_count(t), 4);
	tun_flow_table_free(t);
	tun_flow_table_free(NULL);
	assert_null(tun_flow_table_new(0, 0));
}

static int reaped;
static void reap_cb(void *val, void *arg)
{
	(void)arg;
	assert_non_null(val);
	reaped++;
}

static void test_deferred_free(void **state)
{
	tun_flow_table *t = tun_flow_table_new(2, 7);
	tun_flow_key a, b, c;
	(void)state;

	key_n(&a, 10), key_n(&b, 11), key_n(&c, 12);
	assert_int_equal(tun_flow_insert(t, &a, val_of(10)), 0);
	assert_int_equal(tun_flow_insert(t, &b, val_of(11)), 0);
	assert_int_equal(tun_flow_remove(t, &a), 0);
	assert_int_equal(tun_flow_remove(t, &a), -ENOENT);
	assert_null(tun_flow_lookup(t, &a));
	assert_int_equal(tun_flow_pending(t), 1);
	/* the removed entry is not recycled before the reap */
	assert_int_equal(tun_flow_insert(t, &c, val_of(12)), -ENOSPC);
	reaped = 0;
	tun_flow_reap(t, reap_cb, NULL);
	assert_int_equal(reaped, 1);
	assert_int_equal(tun_flow_pending(t), 0);
	assert_int_equal(tun_flow_insert(t, &c, val_of(12)), 0);
	assert_int_equal(tun_flow_insert(t, &a, val_of(10)), -ENOSPC);
	assert_ptr_equal(tun_flow_lookup(t, &c), val_of(12));
	assert_ptr_equal(tun_flow_lookup(t, &b), val_of(11));
	tun_flow_table_free(t);
}

static void test_full_64k(void **state)
{
	const uint32_t N = 65536;
	tun_flow_table *t = tun_flow_table_new(N, 0x1234);
	tun_flow_key k;
	const tun_flow_key *kp;
	void *v;
	uint32_t pos = 0, seen = 0;
	struct timespec t0, t1;
	(void)state;

	for (uint32_t i = 0; i < N; i++) {
		key_n(&k, i);
		assert_int_equal(tun_flow_insert(t, &k, val_of(i)), 0);
	}
	key_n(&k, N);
	assert_int_equal(tun_flow_insert(t, &k, val_of(N)), -ENOSPC);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int r = 0; r < 4; r++)
		for (uint32_t i = 0; i < N; i++) {
			key_n(&k, i);
			assert_ptr_equal(tun_flow_lookup(t, &k), val_of(i));
		}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "flow lookups: %.0f ns each (sanitizer build, 64k flows)\n",
		((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (4.0 * N));
	while (tun_flow_next(t, &pos, &kp, &v)) {
		assert_ptr_equal(tun_flow_lookup(t, kp), v);
		seen++;
	}
	assert_int_equal(seen, N);
	for (uint32_t i = 0; i < N; i += 2) {
		key_n(&k, i);
		assert_int_equal(tun_flow_remove(t, &k), 0);
	}
	tun_flow_reap(t, NULL, NULL);
	assert_int_equal(tun_flow_count(t), N / 2);
	for (uint32_t i = 0; i < N; i++) {
		key_n(&k, i);
		if (i % 2)
			assert_ptr_equal(tun_flow_lookup(t, &k), val_of(i));
		else
			assert_null(tun_flow_lookup(t, &k));
	}
	tun_flow_table_free(t);
}

/* Random insert/remove/reap against a bitmap model over 4096 keys, max 1000 flows. */
static void test_random_model(void **state)
{
	enum { KEYS = 4096, MAX = 1000 };
	static uint8_t in[KEYS];
	tun_flow_table *t = tun_flow_table_new(MAX, 99);
	uint32_t live = 0, pend = 0;
	(void)state;

	memset(in, 0, sizeof(in));
	srand(3);
	for (int step = 0; step < 300000; step++) {
		uint32_t n = (uint32_t)rand() % KEYS;
		tun_flow_key k;
		int op = rand() % 10, r;

		key_n(&k, n);
		if (op < 5) {
			r = tun_flow_insert(t, &k, val_of(n));
			if (in[n])
				assert_int_equal(r, -EEXIST);
			else if (live + pend >= MAX)
				assert_int_equal(r, -ENOSPC);
			else
				assert_int_equal(r, 0), in[n] = 1, live++;
		} else if (op < 9) {
			r = tun_flow_remove(t, &k);
			assert_int_equal(r, in[n] ? 0 : -ENOENT);
			if (in[n])
				in[n] = 0, live--, pend++;
		} else if (rand() % 20 == 0) {
			tun_flow_reap(t, NULL, NULL);
			pend = 0;
		}
		assert_ptr_equal(tun_flow_lookup(t, &k), in[n] ? val_of(n) : NULL);
	}
	assert_int_equal(tun_flow_count(t), live);
	for (uint32_t n = 0; n < KEYS; n++) {
		tun_flow_key k;
		key_n(&k, n);
		assert_ptr_equal(tun_flow_lookup(t, &k), in[n] ? val_of(n) : NULL);
	}
	tun_flow_table_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_deferred_free),
		cmocka_unit_test(test_full_64k),
		cmocka_unit_test(test_random_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
