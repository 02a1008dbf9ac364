/* A small open-addressing hash map (u64 -> u64) with linear probing and
 * backward-shift deletion, so there are no tombstones and lookups stay short
 * at 100k+ entries. Load factor kept below 1/2. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rendezvous/reg_internal.h"

static size_t slot(uint64_t k, size_t cap)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return (size_t)k & (cap - 1);
}

static void put_nogrow(rmap *m, uint64_t key, uint64_t val)
{
	size_t i = slot(key, m->cap);

	while (m->e[i].used) {
		if (m->e[i].key == key) {
			m->e[i].val = val;
			return;
		}
		i = (i + 1) & (m->cap - 1);
	}
	m->e[i].used = 1;
	m->e[i].key = key;
	m->e[i].val = val;
	m->len++;
}

static int grow(rmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 16;
	rmap_ent *old = m->e;
	size_t ocap = m->cap;

	m->e = calloc(ncap, sizeof(*m->e));
	if (!m->e) {
		m->e = old;
		return -ENOMEM;
	}
	m->cap = ncap;
	m->len = 0;
	for (size_t i = 0; i < ocap; i++)
		if (old[i].used)
			put_nogrow(m, old[i].key, old[i].val);
	free(old);
	return 0;
}

bool rmap_get(const rmap *m, uint64_t key, uint64_t *val)
{
	if (!m->cap)
		return false;
	for (size_t i = slot(key, m->cap); m->e[i].used; i = (i + 1) & (m->cap - 1)) {
		if (m->e[i].key == key) {
			if (val)
				*val = m->e[i].val;
			return true;
		}
	}
	return false;
}

int rmap_put(rmap *m, uint64_t key, uint64_t val)
{
	if ((m->len + 1) * 2 > m->cap && grow(m) < 0)
		return -ENOMEM;
	put_nogrow(m, key, val);
	return 0;
}

bool rmap_del(rmap *m, uint64_t key)
{
	size_t mask = m->cap - 1, i, j;

	if (!m->cap)
		return false;
	for (i = slot(key, m->cap); m->e[i].used; i = (i + 1) & mask)
		if (m->e[i].key == key)
			break;
	if (!m->e[i].used)
		return false;
	/* Backward shift: pull later entries of the cluster into the hole when
	 * their home slot does not lie cyclically in (hole, j]. */
	for (j = (i + 1) & mask; m->e[j].used; j = (j + 1) & mask) {
		size_t h = slot(m->e[j].key, m->cap);
		bool stays = (i <= j) ? (i < h && h <= j) : (i < h || h <= j);

		if (stays)
			continue;
		m->e[i] = m->e[j];
		i = j;
	}
	m->e[i].used = 0;
	m->len--;
	return true;
}

void rmap_clear(rmap *m)
{
	if (m->e)
		memset(m->e, 0, m->cap * sizeof(*m->e));
	m->len = 0;
}

void rmap_free(rmap *m)
{
	free(m->e);
	memset(m, 0, sizeof(*m));
}

uint64_t *rmap_keys(const rmap *m, size_t *n)
{
	uint64_t *k;
	size_t j = 0;

	*n = 0;
	if (!m->len)
		return NULL;
	k = malloc(m->len * sizeof(*k));
	if (!k)
		return NULL;
	for (size_t i = 0; i < m->cap; i++)
		if (m->e[i].used)
			k[j++] = m->e[i].key;
	*n = j;
	return k;
}
