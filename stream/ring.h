/* Byte ring addressed by absolute 64-bit stream offsets, used for both the send
 * buffer (in-order append, consume on ACK) and the receive buffer (reassembly in
 * place: out-of-order bytes are stored at their offset and tracked in a small
 * sorted interval list).
 *
 * Layout: [base, base+len) is contiguous in-order data; out-of-order intervals lie
 * inside (base+len, base+cap). Nothing is ever stored at or beyond base+cap.
 *
 * Storage is lazy: cap is the logical capacity (what ring_space and ring_limit, and
 * so the advertised window, are computed from) while the physical buffer (alloc
 * bytes, byte at offset o stored at o % alloc) starts empty and grows geometrically,
 * a power of two from RING_MIN_ALLOC up to cap, whenever a write needs storage at
 * or beyond base + alloc. Growing re-lays the in-order bytes and every out-of-order
 * interval into the new buffer. The interval list is allocated on the first
 * out-of-order insert. ring_release frees both while the ring is empty. All heap
 * use goes through ring_mem_alloc/ring_mem_free and is counted engine-wide. */
#ifndef PILOT_RING_H
#define PILOT_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RING_MAX_IVALS 64
#define RING_MIN_ALLOC 4096u /* smallest buffer size class (or cap when smaller) */

typedef struct ring_ival {
	uint64_t start, end; /* [start, end) */
} ring_ival;

typedef struct ring {
	uint8_t *buf;   /* NULL while nothing is allocated */
	size_t cap;     /* logical capacity */
	size_t alloc;   /* physical bytes at buf (0, or RING_MIN_ALLOC * 2^k, or cap) */
	uint64_t base;  /* absolute offset of the first byte held */
	size_t len;     /* in-order bytes from base */
	int nival;
	ring_ival *ival; /* RING_MAX_IVALS entries once an out-of-order insert happened */
	ring_ival last; /* interval holding the most recent out-of-order insert */
} ring;

/* 0 or -EINVAL (cap == 0). base starts at 0. Allocates nothing. */
int ring_init(ring *r, size_t cap);
void ring_destroy(ring *r);

static inline uint64_t ring_end(const ring *r) { return r->base + r->len; }
static inline uint64_t ring_limit(const ring *r) { return r->base + r->cap; }
/* Room for in-order data (out-of-order bytes live inside this room). */
static inline size_t ring_space(const ring *r) { return r->cap - r->len; }
static inline bool ring_empty(const ring *r) { return r->len == 0 && r->nival == 0; }
/* Bytes held out of order. */
uint64_t ring_ooo_bytes(const ring *r);

/* Append in order at ring_end; returns the number of bytes accepted (backpressure:
 * limited by ring_space, or by a failed allocation). Only for rings without
 * out-of-order intervals (the send ring). */
size_t ring_append(ring *r, const void *p, size_t n);

/* Store bytes at absolute offset off (receive side). Bytes before ring_end and at or
 * beyond ring_limit are trimmed away; a partial overlap keeps the new bytes.
 * *advanced (may be NULL) = how far ring_end moved. Returns the number of bytes that
 * were new, or -ENOBUFS when the segment would need a 65th interval, or -ENOMEM
 * when storage could not grow (then nothing is stored). */
int ring_insert(ring *r, uint64_t off, const void *p, size_t n, size_t *advanced);

/* Contiguous readable span starting at off (base <= off <= ring_end): returns its
 * length and sets *p. Length 0 at the end of the in-order data. */
size_t ring_peek(const ring *r, uint64_t off, const uint8_t **p);
/* Copy n in-order bytes starting at absolute offset off; returns bytes copied. */
size_t ring_copy_out(const ring *r, uint64_t off, void *dst, size_t n);
/* Drop n bytes from the front (n <= len). */
void ring_consume(ring *r, size_t n);

/* Free the storage and the interval list if the ring holds nothing; returns true
 * when something was freed. The offsets (base) are kept. */
bool ring_release(ring *r);
/* Heap bytes this ring holds now. */
size_t ring_mem(const ring *r);

/* Engine-wide heap accounting (ring, scoreboard and stream engine allocations):
 * malloc/calloc/free that keep a relaxed atomic count of the bytes requested. */
void *ring_mem_alloc(size_t n);
void *ring_mem_calloc(size_t n);
void ring_mem_free(void *p, size_t n);
size_t ring_mem_in_use(void);

#endif
