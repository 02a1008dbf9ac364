/* lib/heap.c: the indexed min-heap against a brute-force model (random insert,
 * move, remove), the fixed-capacity limit, idempotent remove, and first-in
 * first-out order among equal keys. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include "lib/heap.h"

#define N 200

typedef struct item {
	int id;
	pilot_heap_node hn;
} item;

static void check_invariant(const pilot_heap *h)
{
	for (size_t i = 0; i < h->len; i++) {
		assert_int_equal(h->v[i]->idx, i);
		if (i) {
			const pilot_heap_node *p = h->v[(i - 1) / 2], *c = h->v[i];

			assert_true(p->key < c->key || (p->key == c->key && p->seq < c->seq));
		}
	}
}

static void test_random_against_model(void **state)
{
	pilot_heap h;
	item it[N];
	uint64_t seed = 12345;

	(void)state;
	assert_int_equal(pilot_heap_init(&h, 0), 0);
	for (int i = 0; i < N; i++) {
		it[i].id = i;
		pilot_heap_node_init(&it[i].hn);
	}
	for (int step = 0; step < 20000; step++) {
		item *x;
		uint64_t min = UINT64_MAX;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		x = &it[(seed >> 33) % N];
		if ((seed >> 20) % 4 == 0)
			pilot_heap_remove(&h, &x->hn);
		else
			assert_int_equal(pilot_heap_set(&h, &x->hn, (seed >> 40) % 1000), 0);
		check_invariant(&h);
		for (int i = 0; i < N; i++)
			if (pilot_heap_contains(&it[i].hn) && it[i].hn.key < min)
				min = it[i].hn.key;
		if (min == UINT64_MAX)
			assert_null(pilot_heap_top(&h));
		else
			assert_int_equal(pilot_heap_top(&h)->key, min);
	}
	/* drain in order */
	for (uint64_t last = 0; pilot_heap_top(&h);) {
		item *t = PILOT_HEAP_ENTRY(pilot_heap_top(&h), item, hn);

		assert_true(t->hn.key >= last);
		last = t->hn.key;
		pilot_heap_remove(&h, &t->hn);
		assert_false(pilot_heap_contains(&t->hn));
		check_invariant(&h);
	}
	pilot_heap_free(&h);
}

static void test_fixed_capacity(void **state)
{
	pilot_heap h;
	item it[3];

	(void)state;
	assert_int_equal(pilot_heap_init(&h, 2), 0);
	for (int i = 0; i < 3; i++)
		pilot_heap_node_init(&it[i].hn);
	assert_int_equal(pilot_heap_set(&h, &it[0].hn, 5), 0);
	assert_int_equal(pilot_heap_set(&h, &it[1].hn, 3), 0);
	assert_int_equal(pilot_heap_set(&h, &it[2].hn, 1), -ENOSPC);
	assert_false(pilot_heap_contains(&it[2].hn));
	/* moving a member needs no room */
	assert_int_equal(pilot_heap_set(&h, &it[0].hn, 1), 0);
	assert_ptr_equal(pilot_heap_top(&h), &it[0].hn);
	pilot_heap_remove(&h, &it[2].hn); /* not in: nothing */
	pilot_heap_remove(&h, &it[0].hn);
	pilot_heap_remove(&h, &it[0].hn); /* twice: nothing */
	assert_int_equal(pilot_heap_len(&h), 1);
	assert_ptr_equal(pilot_heap_top(&h), &it[1].hn);
	pilot_heap_free(&h);
}

/* Equal keys come out in the order they were set; moving a node to the key it
 * has keeps its place, moving it to a new key puts it behind that key's others. */
static void test_equal_keys_fifo(void **state)
{
	pilot_heap h;
	item it[64];

	(void)state;
	assert_int_equal(pilot_heap_init(&h, 0), 0);
	for (int i = 0; i < 64; i++) {
		it[i].id = i;
		pilot_heap_node_init(&it[i].hn);
		assert_int_equal(pilot_heap_set(&h, &it[i].hn, i % 2 ? 7 : 9), 0);
	}
	assert_int_equal(pilot_heap_set(&h, &it[1].hn, 7), 0); /* same key: stays first */
	assert_int_equal(pilot_heap_set(&h, &it[3].hn, 5), 0);
	assert_int_equal(pilot_heap_set(&h, &it[3].hn, 7), 0); /* back to 7: now last */
	pilot_heap_remove(&h, &it[5].hn);
	int want[64], n = 0;
	for (int i = 1; i < 64; i += 2)
		if (i != 3 && i != 5)
			want[n++] = i;
	want[n++] = 3;
	for (int i = 0; i < 64; i += 2)
		want[n++] = i;
	for (int k = 0; k < n; k++) {
		item *t = PILOT_HEAP_ENTRY(pilot_heap_top(&h), item, hn);

		assert_int_equal(t->id, want[k]);
		pilot_heap_remove(&h, &t->hn);
		check_invariant(&h);
	}
	assert_null(pilot_heap_top(&h));
	pilot_heap_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_fixed_capacity),
		cmocka_unit_test(test_equal_keys_fifo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
