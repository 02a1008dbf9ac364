/* Indexed binary min-heap; see heap.h. */
#include "lib/heap.h"

#include <errno.h>
#include <stdlib.h>

int pilot_heap_init(pilot_heap *h, size_t cap)
{
	*h = (pilot_heap){ 0 };
	if (!cap)
		return 0;
	if (!(h->v = calloc(cap, sizeof(*h->v))))
		return -ENOMEM;
	h->cap = cap;
	h->fixed = 1;
	return 0;
}

void pilot_heap_free(pilot_heap *h)
{
	free(h->v);
	*h = (pilot_heap){ 0 };
}

/* a before b: smaller key, or equal key and set earlier. */
static int before(const pilot_heap_node *a, const pilot_heap_node *b)
{
	return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}

static void place(pilot_heap *h, size_t i, pilot_heap_node *n)
{
	h->v[i] = n;
	n->idx = i;
}

static void sift_up(pilot_heap *h, size_t i)
{
	pilot_heap_node *n = h->v[i];

	while (i > 0 && before(n, h->v[(i - 1) / 2])) {
		place(h, i, h->v[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	place(h, i, n);
}

static void sift_down(pilot_heap *h, size_t i)
{
	pilot_heap_node *n = h->v[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->len)
			break;
		if (c + 1 < h->len && before(h->v[c + 1], h->v[c]))
			c++;
		if (!before(h->v[c], n))
			break;
		place(h, i, h->v[c]);
		i = c;
	}
	place(h, i, n);
}

int pilot_heap_set(pilot_heap *h, pilot_heap_node *n, uint64_t key)
{
	if (n->idx == PILOT_HEAP_NONE) {
		if (h->len == h->cap) {
			size_t cap = h->cap ? h->cap * 2 : 64;
			pilot_heap_node **v;

			if (h->fixed)
				return -ENOSPC;
			if (!(v = realloc(h->v, cap * sizeof(*v))))
				return -ENOMEM;
			h->v = v;
			h->cap = cap;
		}
		n->key = key;
		n->seq = h->seq++;
		place(h, h->len++, n);
		sift_up(h, n->idx);
		return 0;
	}
	if (n->key == key)
		return 0;
	n->key = key;
	n->seq = h->seq++;
	sift_down(h, n->idx);
	sift_up(h, n->idx);
	return 0;
}

void pilot_heap_remove(pilot_heap *h, pilot_heap_node *n)
{
	size_t i = n->idx;

	if (i == PILOT_HEAP_NONE)
		return;
	n->idx = PILOT_HEAP_NONE;
	if (i != --h->len) {
		pilot_heap_node *m = h->v[h->len];

		place(h, i, m);
		sift_down(h, i);
		sift_up(h, m->idx);
	}
}
