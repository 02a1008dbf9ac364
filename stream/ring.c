/* Byte ring with in-place reassembly and lazy, geometrically growing storage;
 * see ring.h. */
#include "stream/ring.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_size_t mem_in_use;

void *ring_mem_alloc(size_t n)
{
	void *p = malloc(n);

	if (p)
		atomic_fetch_add_explicit(&mem_in_use, n, memory_order_relaxed);
	return p;
}

void *ring_mem_calloc(size_t n)
{
	void *p = calloc(1, n);

	if (p)
		atomic_fetch_add_explicit(&mem_in_use, n, memory_order_relaxed);
	return p;
}

void ring_mem_free(void *p, size_t n)
{
	if (!p)
		return;
	atomic_fetch_sub_explicit(&mem_in_use, n, memory_order_relaxed);
	free(p);
}

size_t ring_mem_in_use(void)
{
	return atomic_load_explicit(&mem_in_use, memory_order_relaxed);
}

int ring_init(ring *r, size_t cap)
{
	memset(r, 0, sizeof(*r));
	if (cap == 0)
		return -EINVAL;
	r->cap = cap;
	return 0;
}

void ring_destroy(ring *r)
{
	ring_mem_free(r->buf, r->alloc);
	ring_mem_free(r->ival, RING_MAX_IVALS * sizeof(*r->ival));
	r->buf = NULL;
	r->ival = NULL;
	r->alloc = 0;
	r->nival = 0;
}

bool ring_release(ring *r)
{
	bool freed = r->buf || r->ival;

	if (!ring_empty(r) || !freed)
		return false;
	ring_destroy(r);
	return true;
}

size_t ring_mem(const ring *r)
{
	return r->alloc + (r->ival ? RING_MAX_IVALS * sizeof(*r->ival) : 0);
}

/* Copy [s, e) from storage (ob, on) to storage (nb, nn), both indexed by offset
 * modulo their size. */
static void relay(const uint8_t *ob, size_t on, uint8_t *nb, size_t nn, uint64_t s, uint64_t e)
{
	while (s < e) {
		size_t po = (size_t)(s % on), pn = (size_t)(s % nn), k = (size_t)(e - s);
		if (k > on - po)
			k = on - po;
		if (k > nn - pn)
			k = nn - pn;
		memcpy(nb + pn, ob + po, k);
		s += k;
	}
}

/* Make sure [base, end) has physical storage (end <= ring_limit). 0 or -ENOMEM. */
static int grow(ring *r, uint64_t end)
{
	size_t span = (size_t)(end - r->base), n;
	uint8_t *nb;

	if (span <= r->alloc)
		return 0;
	n = r->alloc ? r->alloc : RING_MIN_ALLOC;
	while (n < span && n < r->cap)
		n *= 2;
	if (n > r->cap)
		n = r->cap;
	nb = ring_mem_alloc(n);
	if (!nb)
		return -ENOMEM;
	if (r->buf) {
		relay(r->buf, r->alloc, nb, n, r->base, ring_end(r));
		for (int i = 0; i < r->nival; i++)
			relay(r->buf, r->alloc, nb, n, r->ival[i].start, r->ival[i].end);
		ring_mem_free(r->buf, r->alloc);
	}
	r->buf = nb;
	r->alloc = n;
	return 0;
}

uint64_t ring_ooo_bytes(const ring *r)
{
	uint64_t n = 0;

	for (int i = 0; i < r->nival; i++)
		n += r->ival[i].end - r->ival[i].start;
	return n;
}

/* Copy into the storage at absolute offset off, wrapping as needed. */
static void put(ring *r, uint64_t off, const uint8_t *p, size_t n)
{
	size_t pos = (size_t)(off % r->alloc);
	size_t first = r->alloc - pos < n ? r->alloc - pos : n;

	memcpy(r->buf + pos, p, first);
	if (n > first)
		memcpy(r->buf, p + first, n - first);
}

size_t ring_append(ring *r, const void *p, size_t n)
{
	size_t room = ring_space(r);

	if (n > room)
		n = room;
	if (n && grow(r, ring_end(r) + n) < 0) {
		/* no memory for all of it: take what fits the current storage */
		n = r->alloc - r->len;
	}
	if (n) {
		put(r, ring_end(r), p, n);
		r->len += n;
	}
	return n;
}

/* Absorb intervals that now touch the in-order end. */
static void absorb(ring *r)
{
	int k = 0;

	while (k < r->nival && r->ival[k].start <= ring_end(r)) {
		if (r->ival[k].end > ring_end(r))
			r->len = (size_t)(r->ival[k].end - r->base);
		k++;
	}
	if (k) {
		memmove(r->ival, r->ival + k, (size_t)(r->nival - k) * sizeof(r->ival[0]));
		r->nival -= k;
	}
}

/* Merge [s, e) into the sorted interval list; -ENOBUFS if it needs a new slot
 * while the list is full. Returns the number of bytes not already covered. */
static int add_ival(ring *r, uint64_t s, uint64_t e)
{
	int lo = 0, hi, n = r->nival;
	uint64_t covered = 0, ms = s, me = e;

	while (lo < n && r->ival[lo].end < s)
		lo++;
	hi = lo;
	while (hi < n && r->ival[hi].start <= e) {
		uint64_t a = r->ival[hi].start > s ? r->ival[hi].start : s;
		uint64_t b = r->ival[hi].end < e ? r->ival[hi].end : e;
		if (b > a)
			covered += b - a;
		if (r->ival[hi].start < ms)
			ms = r->ival[hi].start;
		if (r->ival[hi].end > me)
			me = r->ival[hi].end;
		hi++;
	}
	if (hi == lo && n == RING_MAX_IVALS)
		return -ENOBUFS;
	/* replace ival[lo, hi) by the merged one */
	if (hi == lo) {
		memmove(r->ival + lo + 1, r->ival + lo, (size_t)(n - lo) * sizeof(r->ival[0]));
		r->nival++;
	} else if (hi - lo > 1) {
		memmove(r->ival + lo + 1, r->ival + hi, (size_t)(n - hi) * sizeof(r->ival[0]));
		r->nival -= hi - lo - 1;
	}
	r->ival[lo].start = ms;
	r->ival[lo].end = me;
	r->last = r->ival[lo];
	return (int)((e - s) - covered);
}

int ring_insert(ring *r, uint64_t off, const void *p, size_t n, size_t *advanced)
{
	const uint8_t *b = p;
	uint64_t s = off, e = off + n, old_end = ring_end(r);
	int fresh;

	if (advanced)
		*advanced = 0;
	if (e > ring_limit(r))
		e = ring_limit(r);
	if (s < old_end)
		s = old_end;
	if (s >= e)
		return 0;
	if (grow(r, e) < 0)
		return -ENOMEM;
	if (s == old_end) {
		uint64_t covered = 0;
		for (int i = 0; i < r->nival && r->ival[i].start < e; i++)
			covered += (r->ival[i].end < e ? r->ival[i].end : e) - r->ival[i].start;
		put(r, s, b + (s - off), (size_t)(e - s));
		r->len = (size_t)(e - r->base);
		absorb(r);
		if (advanced)
			*advanced = (size_t)(ring_end(r) - old_end);
		return (int)((e - s) - covered);
	}
	if (!r->ival && !(r->ival = ring_mem_alloc(RING_MAX_IVALS * sizeof(*r->ival))))
		return -ENOMEM;
	fresh = add_ival(r, s, e);
	if (fresh < 0)
		return fresh;
	put(r, s, b + (s - off), (size_t)(e - s));
	return fresh;
}

size_t ring_peek(const ring *r, uint64_t off, const uint8_t **p)
{
	size_t pos, n;

	if (off < r->base || off >= ring_end(r))
		return 0;
	pos = (size_t)(off % r->alloc);
	n = (size_t)(ring_end(r) - off);
	if (n > r->alloc - pos)
		n = r->alloc - pos;
	*p = r->buf + pos;
	return n;
}

size_t ring_copy_out(const ring *r, uint64_t off, void *dst, size_t n)
{
	uint8_t *d = dst;
	size_t done = 0;

	while (done < n) {
		const uint8_t *p;
		size_t k = ring_peek(r, off + done, &p);
		if (k == 0)
			break;
		if (k > n - done)
			k = n - done;
		memcpy(d + done, p, k);
		done += k;
	}
	return done;
}

void ring_consume(ring *r, size_t n)
{
	if (n > r->len)
		n = r->len;
	r->base += n;
	r->len -= n;
}
