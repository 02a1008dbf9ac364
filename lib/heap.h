/* An indexed binary min-heap of intrusive nodes keyed by a uint64_t (a deadline).
 *
 * Each element embeds a pilot_heap_node; the node remembers its slot, so moving an
 * element to a new key or removing it is O(log n) without a search. Equal keys
 * come out first in, first out (in the order they were inserted or last given a
 * new key), so a loop's timers due in the same millisecond run in the order they
 * were armed. Used by the event loop (lib/loop.c) for its timers, the connection
 * table (stream/conn.c) and the TUN bridge (daemon/tunbridge.c) for their
 * per-element deadlines.
 *
 *   struct flow { pilot_heap_node hn; ... };
 *   pilot_heap_set(&h, &f->hn, deadline);           insert or move
 *   f = PILOT_HEAP_ENTRY(pilot_heap_top(&h), struct flow, hn);
 *
 * A heap created with a capacity never grows (pilot_heap_set fails with -ENOSPC
 * when full); one created with capacity 0 doubles on demand (-ENOMEM). */
#ifndef PILOT_HEAP_H
#define PILOT_HEAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct pilot_heap_node {
	uint64_t key;
	uint64_t seq; /* order among equal keys: the heap's counter when key was set */
	size_t idx;   /* slot in the heap; PILOT_HEAP_NONE = not in it */
} pilot_heap_node;

#define PILOT_HEAP_NONE SIZE_MAX
#define PILOT_HEAP_ENTRY(node, type, member) \
	((type *)(void *)((char *)(node) - offsetof(type, member)))

typedef struct pilot_heap {
	pilot_heap_node **v;
	size_t len, cap;
	uint64_t seq; /* next node's order among equal keys */
	int fixed;    /* created with a capacity: never grows */
} pilot_heap;

/* cap > 0: room for exactly cap nodes, allocated now. 0 or -ENOMEM. */
int pilot_heap_init(pilot_heap *h, size_t cap);
void pilot_heap_free(pilot_heap *h); /* the array; nodes are the caller's */
static inline void pilot_heap_node_init(pilot_heap_node *n) { n->idx = PILOT_HEAP_NONE; }
static inline int pilot_heap_contains(const pilot_heap_node *n) { return n->idx != PILOT_HEAP_NONE; }
/* Insert n with key, or move it there if it is in already (a move to the key it
 * has keeps its place among equal keys). 0, -ENOMEM or -ENOSPC (then n is
 * unchanged). */
int pilot_heap_set(pilot_heap *h, pilot_heap_node *n, uint64_t key);
/* Take n out; nothing if it is not in. */
void pilot_heap_remove(pilot_heap *h, pilot_heap_node *n);
/* The node with the smallest key, or NULL. */
static inline pilot_heap_node *pilot_heap_top(const pilot_heap *h) { return h->len ? h->v[0] : NULL; }
static inline size_t pilot_heap_len(const pilot_heap *h) { return h->len; }

#endif
