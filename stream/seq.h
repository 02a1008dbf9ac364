/* 32-bit stream sequence arithmetic with wrap-around (RFC 1982 serial numbers,
 * packet.md §5.3: a after b <=> (int32)(a - b) > 0). Valid while the two values
 * are less than 2^31 apart, which the bounded windows guarantee. */
#ifndef PILOT_SEQ_H
#define PILOT_SEQ_H

#include <stdbool.h>
#include <stdint.h>

static inline int32_t seq_diff(uint32_t a, uint32_t b) { return (int32_t)(a - b); }
static inline bool seq_lt(uint32_t a, uint32_t b) { return seq_diff(a, b) < 0; }
static inline bool seq_leq(uint32_t a, uint32_t b) { return seq_diff(a, b) <= 0; }
static inline bool seq_gt(uint32_t a, uint32_t b) { return seq_diff(a, b) > 0; }
static inline bool seq_geq(uint32_t a, uint32_t b) { return seq_diff(a, b) >= 0; }
static inline uint32_t seq_max(uint32_t a, uint32_t b) { return seq_gt(a, b) ? a : b; }
static inline uint32_t seq_min(uint32_t a, uint32_t b) { return seq_lt(a, b) ? a : b; }
/* lo <= s < hi in serial order. */
static inline bool seq_in(uint32_t s, uint32_t lo, uint32_t hi)
{
	return seq_geq(s, lo) && seq_lt(s, hi);
}

#endif
