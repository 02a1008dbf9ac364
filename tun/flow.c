/* Flow table (see flow.h). */
#include "tun/flow.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SLOT_EMPTY 0u
#define SLOT_TOMB  UINT32_MAX

typedef struct flow_entry {
	tun_flow_key key;
	void *val;
	uint32_t hash;
	uint32_t next_free; /* index + 1, 0 = end */
	bool live;
} flow_entry;

struct tun_flow_table {
	uint32_t max, mask;
	uint32_t *slots;    /* SLOT_EMPTY, SLOT_TOMB or entry index + 1 */
	flow_entry *e;
	uint32_t free_head; /* index + 1 */
	uint32_t *dying;
	uint32_t ndying;
	uint32_t live, tombs;
	uint64_t seed;
};

void tun_flow_key_make(tun_flow_key *k, uint8_t proto, const tun_ipaddr *src, uint16_t sport,
		       const tun_ipaddr *dst, uint16_t dport)
{
	memset(k, 0, sizeof(*k));
	k->proto = proto;
	k->src = *src;
	k->dst = *dst;
	k->sport = sport;
	k->dport = dport;
}

static uint64_t mix(uint64_t h, uint64_t w)
{
	h ^= w;
	h *= 0x9e3779b97f4a7c15ull;
	return h ^ (h >> 31);
}

static uint32_t key_hash(const tun_flow_table *t, const tun_flow_key *k)
{
	uint64_t w[5], h = t->seed;

	memcpy(&w[0], k->src.b, 8);
	memcpy(&w[1], k->src.b + 8, 8);
	memcpy(&w[2], k->dst.b, 8);
	memcpy(&w[3], k->dst.b + 8, 8);
	w[4] = (uint64_t)k->proto | (uint64_t)k->src.family << 8 | (uint64_t)k->dst.family << 16 |
	       (uint64_t)k->sport << 24 | (uint64_t)k->dport << 40;
	for (int i = 0; i < 5; i++)
		h = mix(h, w[i]);
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (uint32_t)h;
}

static bool key_eq(const tun_flow_key *a, const tun_flow_key *b)
{
	return a->proto == b->proto && a->sport == b->sport && a->dport == b->dport &&
	       tun_ipaddr_eq(&a->src, &b->src) && tun_ipaddr_eq(&a->dst, &b->dst);
}

tun_flow_table *tun_flow_table_new(uint32_t max_flows, uint64_t seed)
{
	tun_flow_table *t;
	uint32_t n = 4;

	if (max_flows == 0 || max_flows > (1u << 24))
		return NULL;
	while (n < 2 * max_flows)
		n <<= 1;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->max = max_flows;
	t->mask = n - 1;
	t->seed = seed;
	t->slots = calloc(n, sizeof(*t->slots));
	t->e = calloc(max_flows, sizeof(*t->e));
	t->dying = calloc(max_flows, sizeof(*t->dying));
	if (!t->slots || !t->e || !t->dying) {
		tun_flow_table_free(t);
		return NULL;
	}
	for (uint32_t i = 0; i < max_flows; i++)
		t->e[i].next_free = i + 2 <= max_flows ? i + 2 : 0;
	t->free_head = 1;
	return t;
}

void tun_flow_table_free(tun_flow_table *t)
{
	if (!t)
		return;
	free(t->slots);
	free(t->e);
	free(t->dying);
	free(t);
}

/* Slot holding k, or UINT32_MAX. */
static uint32_t find_slot(const tun_flow_table *t, const tun_flow_key *k, uint32_t h)
{
	for (uint32_t i = h & t->mask, n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
		uint32_t s = t->slots[i];

		if (s == SLOT_EMPTY)
			return UINT32_MAX;
		if (s != SLOT_TOMB && t->e[s - 1].hash == h && key_eq(&t->e[s - 1].key, k))
			return i;
	}
	return UINT32_MAX;
}

static void place_slot(tun_flow_table *t, uint32_t idx)
{
	uint32_t i = t->e[idx].hash & t->mask;

	while (t->slots[i] != SLOT_EMPTY && t->slots[i] != SLOT_TOMB)
		i = (i + 1) & t->mask;
	if (t->slots[i] == SLOT_TOMB)
		t->tombs--;
	t->slots[i] = idx + 1;
}

/* Rebuild the index without tombstones (entries do not move). */
static void rebuild(tun_flow_table *t)
{
	memset(t->slots, 0, ((size_t)t->mask + 1) * sizeof(*t->slots));
	t->tombs = 0;
	for (uint32_t i = 0; i < t->max; i++)
		if (t->e[i].live)
			place_slot(t, i);
}

void *tun_flow_lookup(const tun_flow_table *t, const tun_flow_key *k)
{
	uint32_t s = find_slot(t, k, key_hash(t, k));

	return s == UINT32_MAX ? NULL : t->e[t->slots[s] - 1].val;
}

int tun_flow_insert(tun_flow_table *t, const tun_flow_key *k, void *val)
{
	uint32_t h = key_hash(t, k), idx;

	if (!val)
		return -EINVAL;
	if (find_slot(t, k, h) != UINT32_MAX)
		return -EEXIST;
	if (!t->free_head)
		return -ENOSPC;
	if ((uint64_t)t->live + t->tombs + 1 > (uint64_t)(t->mask + 1) * 3 / 4)
		rebuild(t);
	idx = t->free_head - 1;
	t->free_head = t->e[idx].next_free;
	t->e[idx].key = *k;
	t->e[idx].val = val;
	t->e[idx].hash = h;
	t->e[idx].live = true;
	place_slot(t, idx);
	t->live++;
	return 0;
}

int tun_flow_remove(tun_flow_table *t, const tun_flow_key *k)
{
	uint32_t s = find_slot(t, k, key_hash(t, k)), idx;

	if (s == UINT32_MAX)
		return -ENOENT;
	idx = t->slots[s] - 1;
	t->slots[s] = SLOT_TOMB;
	t->tombs++;
	t->e[idx].live = false;
	t->live--;
	t->dying[t->ndying++] = idx;
	return 0;
}

void tun_flow_reap(tun_flow_table *t, void (*free_val)(void *val, void *arg), void *arg)
{
	while (t->ndying) {
		uint32_t idx = t->dying[--t->ndying];

		if (free_val)
			free_val(t->e[idx].val, arg);
		t->e[idx].val = NULL;
		t->e[idx].next_free = t->free_head;
		t->free_head = idx + 1;
	}
	if (t->tombs > (t->mask + 1) / 4)
		rebuild(t);
}

uint32_t tun_flow_count(const tun_flow_table *t)
{
	return t->live;
}

uint32_t tun_flow_pending(const tun_flow_table *t)
{
	return t->ndying;
}

int tun_flow_next(const tun_flow_table *t, uint32_t *pos, const tun_flow_key **k, void **val)
{
	while (*pos < t->max) {
		const flow_entry *e = &t->e[(*pos)++];

		if (e->live) {
			*k = &e->key;
			*val = e->val;
			return 1;
		}
	}
	return 0;
}
