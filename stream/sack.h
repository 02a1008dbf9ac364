/* Sender-side retransmission queue and SACK scoreboard (RFC 6675-style loss
 * recovery plus a RACK-style time rule for lost retransmissions).
 *
 * One descriptor per transmitted segment, in sequence order, held in a ring whose
 * storage is lazy: nothing at init, then a power of two from SACK_MIN_ALLOC up to
 * max (the segment limit) as segments are pushed (sack_reserve), released by
 * sack_release while the table is empty. Segment boundaries are kept
 * for retransmission, as the peers expect (packet.md §5.9). Counters are maintained
 * incrementally so that pipe = out - sacked - lost is O(1). */
#ifndef PILOT_SACK_H
#define PILOT_SACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/proto.h"

#define SACK_F_SACKED 0x1 /* covered by a SACK block: never retransmitted */
#define SACK_F_LOST   0x2 /* deemed lost */
#define SACK_F_RETX   0x4 /* retransmitted since it was marked lost (in the pipe again) */
#define SACK_F_FIN    0x8 /* the FIN's sequence number */

#define SACK_DUPTHRESH 3
#define SACK_MIN_ALLOC 16u

typedef struct sack_seg {
	uint32_t seq, len;  /* sequence space covered (FIN: len 1) */
	uint64_t sent_us;   /* last transmission */
	uint8_t flags, tx;  /* tx = transmissions so far */
} sack_seg;

typedef struct sack_sb {
	sack_seg *seg;          /* NULL while nothing is allocated */
	uint32_t cap, head, count; /* cap = allocated descriptors */
	uint32_t max;           /* the table's limit */
	uint64_t out_bytes;     /* sequence space in the table */
	uint64_t sacked_bytes;  /* SACKED */
	uint64_t lost_bytes;    /* LOST, not yet retransmitted, not SACKED */
	uint32_t sacked_segs;
	uint32_t retx_segs;     /* segments with SACK_F_RETX (the only ones whose sent_us
	                         * moved since sack_push; without them, and without SACKed
	                         * ones, sent_us grows along the table) */
	uint32_t lost_hint;     /* no lost-and-unsent segment below this index */
	uint32_t high_sacked;   /* right edge of the highest SACKed segment (if sacked_segs) */
	uint64_t rack_ts;       /* latest send time of a segment known delivered */
	uint64_t lying_blocks;  /* SACK blocks outside [snd_una, snd_nxt] or empty: ignored */
	uint64_t blocks_rcvd;
} sack_sb;

/* max = segment limit (> 0); allocates nothing. */
int sack_init(sack_sb *sb, uint32_t max);
void sack_destroy(sack_sb *sb);
/* Make room for one more sack_push: 0, -ENOBUFS (full) or -ENOMEM. */
int sack_reserve(sack_sb *sb);
/* Free the storage while the table is empty; returns true when something was freed. */
bool sack_release(sack_sb *sb);
static inline size_t sack_mem(const sack_sb *sb) { return (size_t)sb->cap * sizeof(sack_seg); }

static inline bool sack_full(const sack_sb *sb) { return sb->count == sb->max; }
static inline sack_seg *sack_at(const sack_sb *sb, uint32_t i)
{
	return &sb->seg[(sb->head + i) % sb->cap];
}
/* Bytes believed in the network (RFC 6675 "pipe"). */
static inline uint64_t sack_pipe(const sack_sb *sb)
{
	return sb->out_bytes - sb->sacked_bytes - sb->lost_bytes;
}

/* Record a first transmission (after a successful sack_reserve; ignored otherwise). */
void sack_push(sack_sb *sb, uint32_t seq, uint32_t len, uint8_t flags, uint64_t now);

/* Cumulative ACK: drop everything below ack. *rtt_us = a Karn-valid RTT sample
 * (segment sent once, never SACKed) or 0. Returns sequence space acknowledged. */
uint64_t sack_on_ack(sack_sb *sb, uint32_t ack, uint64_t now, uint32_t min_rtt, uint32_t *rtt_us);

/* Apply SACK blocks. Blocks that are empty or fall outside [snd_una, snd_nxt] are
 * ignored and counted in lying_blocks. A segment is SACKed when it lies entirely
 * inside a block. Returns newly SACKed bytes. */
uint64_t sack_on_blocks(sack_sb *sb, const proto_sack_block *b, int n, uint32_t snd_una,
			uint32_t snd_nxt, uint64_t now, uint32_t min_rtt);

/* Mark lost: (a) DupThresh rule — >= SACK_DUPTHRESH SACKed segments above a
 * never-retransmitted hole; (b) time rule — anything (also a retransmission) sent more
 * than reo_wnd before the latest delivered transmission. Returns segments newly lost. */
uint32_t sack_detect_loss(sack_sb *sb, uint32_t reo_wnd_us);
/* RACK reordering timeout: every segment below the highest SACKed one that is
 * neither SACKed nor already lost is lost. Returns segments newly lost. */
uint32_t sack_mark_holes_lost(sack_sb *sb);
/* Pure-dupack fallback (peer without SACK): mark the first segment lost. */
uint32_t sack_mark_first_lost(sack_sb *sb);
/* RTO: every non-SACKed segment is lost (clear_sacked: forget SACK marks too,
 * for peers that renege). */
void sack_mark_all_lost(sack_sb *sb, bool clear_sacked);

/* Index of the first segment awaiting retransmission, or -1. */
int64_t sack_next_lost(sack_sb *sb);
/* Record a retransmission of segment i. */
void sack_on_retransmit(sack_sb *sb, uint32_t i, uint64_t now);

#endif
