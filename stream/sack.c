/* Retransmission queue and SACK scoreboard; see sack.h. */
#include "stream/sack.h"

#include <errno.h>
#include <stdlib.h>

#include "stream/ring.h"
#include "stream/seq.h"

int sack_init(sack_sb *sb, uint32_t max)
{
	*sb = (sack_sb){ 0 };
	if (max == 0)
		return -EINVAL;
	sb->max = max;
	return 0;
}

void sack_destroy(sack_sb *sb)
{
	ring_mem_free(sb->seg, sack_mem(sb));
	sb->seg = NULL;
	sb->cap = sb->head = sb->count = 0;
	sb->retx_segs = 0;
}

int sack_reserve(sack_sb *sb)
{
	uint32_t n;
	sack_seg *ns;

	if (sb->count < sb->cap)
		return 0;
	if (sb->count >= sb->max)
		return -ENOBUFS;
	n = sb->cap ? sb->cap * 2 : SACK_MIN_ALLOC;
	if (n > sb->max)
		n = sb->max;
	ns = ring_mem_alloc((size_t)n * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	/* re-lay in order from index 0: indices relative to head stay valid */
	for (uint32_t i = 0; i < sb->count; i++)
		ns[i] = *sack_at(sb, i);
	ring_mem_free(sb->seg, sack_mem(sb));
	sb->seg = ns;
	sb->cap = n;
	sb->head = 0;
	return 0;
}

bool sack_release(sack_sb *sb)
{
	if (sb->count || !sb->seg)
		return false;
	sack_destroy(sb);
	return true;
}

void sack_push(sack_sb *sb, uint32_t seq, uint32_t len, uint8_t flags, uint64_t now)
{
	sack_seg *s;

	if (sb->count == sb->cap && sack_reserve(sb) < 0)
		return;
	s = sack_at(sb, sb->count++);
	*s = (sack_seg){ .seq = seq, .len = len, .sent_us = now, .flags = flags, .tx = 1 };
	sb->out_bytes += len;
}

/* Remove a segment's contribution to the counters. */
static void uncount(sack_sb *sb, const sack_seg *s)
{
	sb->out_bytes -= s->len;
	if (s->flags & SACK_F_RETX)
		sb->retx_segs--;
	if (s->flags & SACK_F_SACKED) {
		sb->sacked_bytes -= s->len;
		sb->sacked_segs--;
	} else if ((s->flags & (SACK_F_LOST | SACK_F_RETX)) == SACK_F_LOST) {
		sb->lost_bytes -= s->len;
	}
}

static void note_delivered(sack_sb *sb, const sack_seg *s, uint64_t now, uint32_t min_rtt)
{
	/* a retransmission only counts once it is older than min_rtt: otherwise the ACK
	 * may be for the original copy */
	if (s->tx == 1 || now - s->sent_us >= min_rtt)
		if (s->sent_us > sb->rack_ts)
			sb->rack_ts = s->sent_us;
}

uint64_t sack_on_ack(sack_sb *sb, uint32_t ack, uint64_t now, uint32_t min_rtt, uint32_t *rtt_us)
{
	uint64_t acked = 0;
	uint32_t removed = 0;

	*rtt_us = 0;
	while (sb->count) {
		sack_seg *s = sack_at(sb, 0);
		uint32_t end = s->seq + s->len;
		if (seq_leq(end, ack)) {
			if (s->tx == 1 && !(s->flags & SACK_F_SACKED))
				*rtt_us = (uint32_t)(now - s->sent_us ? now - s->sent_us : 1);
			note_delivered(sb, s, now, min_rtt);
			uncount(sb, s);
			acked += s->len;
			sb->head = (sb->head + 1) % sb->cap;
			sb->count--;
			removed++;
			continue;
		}
		if (seq_gt(ack, s->seq)) { /* partial: trim the front */
			uint32_t d = ack - s->seq;
			uncount(sb, s);
			s->seq = ack;
			s->len -= d;
			s->flags &= (uint8_t)~SACK_F_SACKED;
			sb->out_bytes += s->len;
			if ((s->flags & (SACK_F_LOST | SACK_F_RETX)) == SACK_F_LOST)
				sb->lost_bytes += s->len;
			acked += d;
		}
		break;
	}
	sb->lost_hint = sb->lost_hint > removed ? sb->lost_hint - removed : 0;
	return acked;
}

/* First index whose segment ends after seq (binary search; segments are sorted). */
static uint32_t find_seg(const sack_sb *sb, uint32_t seq)
{
	uint32_t lo = 0, hi = sb->count;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const sack_seg *s = sack_at(sb, mid);
		if (seq_leq(s->seq + s->len, seq))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static uint64_t mark_block(sack_sb *sb, uint32_t l, uint32_t r, uint64_t now, uint32_t min_rtt)
{
	uint64_t fresh = 0;

	for (uint32_t i = find_seg(sb, l); i < sb->count; i++) {
		sack_seg *s = sack_at(sb, i);
		if (seq_gt(s->seq + s->len, r))
			break;
		if (seq_lt(s->seq, l) || (s->flags & SACK_F_SACKED))
			continue;
		if ((s->flags & (SACK_F_LOST | SACK_F_RETX)) == SACK_F_LOST)
			sb->lost_bytes -= s->len;
		s->flags |= SACK_F_SACKED;
		sb->sacked_bytes += s->len;
		sb->sacked_segs++;
		fresh += s->len;
		note_delivered(sb, s, now, min_rtt);
		if (sb->sacked_segs == 1 || seq_gt(s->seq + s->len, sb->high_sacked))
			sb->high_sacked = s->seq + s->len;
	}
	return fresh;
}

uint64_t sack_on_blocks(sack_sb *sb, const proto_sack_block *b, int n, uint32_t snd_una,
			uint32_t snd_nxt, uint64_t now, uint32_t min_rtt)
{
	uint64_t fresh = 0;

	for (int i = 0; i < n; i++) {
		sb->blocks_rcvd++;
		/* offsets from snd_una: serial comparisons alone accept blocks straddling
		 * the half-space boundary */
		uint32_t l = b[i].left - snd_una, r = b[i].right - snd_una, w = snd_nxt - snd_una;
		if (l >= r || r > w) {
			/* a block below snd_una may be a stale report from reordering; either
			 * way it carries nothing usable */
			sb->lying_blocks++;
			continue;
		}
		fresh += mark_block(sb, b[i].left, b[i].right, now, min_rtt);
	}
	return fresh;
}

static void mark_lost(sack_sb *sb, sack_seg *s, uint32_t i)
{
	s->flags = (uint8_t)((s->flags | SACK_F_LOST) & ~SACK_F_RETX);
	sb->lost_bytes += s->len;
	if (i < sb->lost_hint)
		sb->lost_hint = i;
}

uint32_t sack_detect_loss(sack_sb *sb, uint32_t reo_wnd_us)
{
	uint32_t above = sb->sacked_segs, newly = 0;

	/* The common case (nothing SACKed, nothing retransmitted): every descriptor is a
	 * first transmission, sent in sequence order, so sent_us only grows along the
	 * table and the DupThresh rule has nothing above a hole. If the oldest segment is
	 * not timed out by the RACK rule, none is: O(1) instead of a walk over the whole
	 * window on every ACK (that walk was ~12 % of the sender's CPU). */
	if (!sb->sacked_segs && !sb->retx_segs &&
	    (!sb->count || !sb->rack_ts || sack_at(sb, 0)->sent_us + reo_wnd_us >= sb->rack_ts))
		return 0;
	for (uint32_t i = 0; i < sb->count; i++) {
		sack_seg *s = sack_at(sb, i);
		bool timed;
		if (s->flags & SACK_F_SACKED) {
			above--;
			continue;
		}
		if ((s->flags & (SACK_F_LOST | SACK_F_RETX)) == SACK_F_LOST)
			continue; /* already waiting for retransmission */
		timed = sb->rack_ts && s->sent_us + reo_wnd_us < sb->rack_ts;
		if (s->flags & SACK_F_RETX) {
			if (timed) {
				mark_lost(sb, s, i);
				newly++;
			}
			continue;
		}
		if (above >= SACK_DUPTHRESH || timed) {
			mark_lost(sb, s, i);
			newly++;
		}
	}
	return newly;
}

uint32_t sack_mark_holes_lost(sack_sb *sb)
{
	uint32_t newly = 0;

	if (!sb->sacked_segs)
		return 0;
	for (uint32_t i = 0; i < sb->count; i++) {
		sack_seg *s = sack_at(sb, i);
		if (seq_geq(s->seq, sb->high_sacked))
			break;
		if (s->flags & (SACK_F_SACKED | SACK_F_LOST))
			continue;
		mark_lost(sb, s, i);
		newly++;
	}
	return newly;
}

uint32_t sack_mark_first_lost(sack_sb *sb)
{
	sack_seg *s;

	if (!sb->count)
		return 0;
	s = sack_at(sb, 0);
	if (s->flags & (SACK_F_SACKED | SACK_F_LOST))
		return 0;
	mark_lost(sb, s, 0);
	return 1;
}

void sack_mark_all_lost(sack_sb *sb, bool clear_sacked)
{
	for (uint32_t i = 0; i < sb->count; i++) {
		sack_seg *s = sack_at(sb, i);
		if ((s->flags & SACK_F_SACKED) && clear_sacked) {
			s->flags &= (uint8_t)~SACK_F_SACKED;
			sb->sacked_bytes -= s->len;
			sb->sacked_segs--;
		}
		if (s->flags & SACK_F_SACKED)
			continue;
		if ((s->flags & (SACK_F_LOST | SACK_F_RETX)) == SACK_F_LOST)
			continue;
		mark_lost(sb, s, i);
	}
	sb->lost_hint = 0;
}

int64_t sack_next_lost(sack_sb *sb)
{
	if (sb->lost_bytes == 0)
		return -1;
	for (uint32_t i = sb->lost_hint; i < sb->count; i++) {
		const sack_seg *s = sack_at(sb, i);
		if ((s->flags & (SACK_F_LOST | SACK_F_RETX | SACK_F_SACKED)) == SACK_F_LOST) {
			sb->lost_hint = i;
			return i;
		}
	}
	sb->lost_hint = sb->count;
	return -1;
}

void sack_on_retransmit(sack_sb *sb, uint32_t i, uint64_t now)
{
	sack_seg *s = sack_at(sb, i);

	if ((s->flags & (SACK_F_LOST | SACK_F_RETX | SACK_F_SACKED)) == SACK_F_LOST)
		sb->lost_bytes -= s->len;
	if (!(s->flags & SACK_F_RETX))
		sb->retx_segs++;
	s->flags |= SACK_F_RETX;
	s->sent_us = now;
	if (s->tx < 255)
		s->tx++;
}
