/* stream/sack.c: scoreboard marking, pipe, DupThresh loss, lying blocks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "stream/sack.h"

#define L 100u

static void push_n(sack_sb *sb, uint32_t first, int n, uint64_t t)
{
	for (int i = 0; i < n; i++)
		sack_push(sb, first + (uint32_t)i * L, L, 0, t + (uint64_t)i);
}

static void test_ack_and_rtt(void **state)
{
	sack_sb sb;
	uint32_t rtt;
	(void)state;
	assert_int_equal(sack_init(&sb, 16), 0);
	push_n(&sb, 1, 10, 1000);
	assert_int_equal(sack_pipe(&sb), 10 * L);
	assert_int_equal(sack_on_ack(&sb, 1 + 3 * L, 6000, 0, &rtt), 3 * L);
	assert_int_equal(rtt, 6000 - 1002);
	assert_int_equal(sb.count, 7);
	/* partial ACK inside a segment trims it */
	assert_int_equal(sack_on_ack(&sb, 1 + 3 * L + 40, 6000, 0, &rtt), 40);
	assert_int_equal(sack_at(&sb, 0)->len, L - 40);
	assert_int_equal(sack_pipe(&sb), 7 * L - 40);
	sack_destroy(&sb);
}

static void test_dupthresh_loss(void **state)
{
	sack_sb sb;
	proto_sack_block b[1];
	(void)state;
	assert_int_equal(sack_init(&sb, 16), 0);
	push_n(&sb, 1, 8, 1000);
	/* segment 0 lost; 1..2 SACKed: not enough evidence yet */
	b[0] = (proto_sack_block){ 1 + L, 1 + 3 * L };
	assert_int_equal(sack_on_blocks(&sb, b, 1, 1, 1 + 8 * L, 2000, 0), 2 * L);
	assert_int_equal(sack_detect_loss(&sb, 1000000), 0);
	/* third SACKed segment above the hole: lost */
	b[0] = (proto_sack_block){ 1 + L, 1 + 4 * L };
	assert_int_equal(sack_on_blocks(&sb, b, 1, 1, 1 + 8 * L, 2000, 0), L);
	assert_int_equal(sack_detect_loss(&sb, 1000000), 1);
	assert_int_equal(sb.lost_bytes, L);
	assert_int_equal(sack_pipe(&sb), 8 * L - 3 * L - L);
	assert_int_equal(sack_next_lost(&sb), 0);
	sack_on_retransmit(&sb, 0, 3000);
	assert_int_equal(sack_next_lost(&sb), -1);
	assert_int_equal(sack_pipe(&sb), 5 * L);
	assert_int_equal(sack_at(&sb, 0)->tx, 2);
	sack_destroy(&sb);
}

static void test_time_rule_and_rto(void **state)
{
	sack_sb sb;
	proto_sack_block b[1];
	uint32_t rtt;
	(void)state;
	assert_int_equal(sack_init(&sb, 16), 0);
	push_n(&sb, 1, 4, 1000);
	sack_mark_all_lost(&sb, false);
	assert_int_equal(sb.lost_bytes, 4 * L);
	assert_int_equal(sack_pipe(&sb), 0);
	sack_on_retransmit(&sb, 0, 5000);
	sack_on_retransmit(&sb, 1, 5001);
	/* seg 1's retransmission delivered (SACK), seg 0's retransmission not: once a
	 * later transmission is delivered beyond the reordering window, seg 0 is lost again */
	b[0] = (proto_sack_block){ 1 + L, 1 + 2 * L };
	sack_on_blocks(&sb, b, 1, 1, 1 + 4 * L, 5001 + 20000, 10000);
	assert_int_equal(sack_detect_loss(&sb, 0), 1);
	assert_int_equal(sack_next_lost(&sb), 0);
	/* a cumulative ACK over everything empties the table */
	assert_int_equal(sack_on_ack(&sb, 1 + 4 * L, 9000, 0, &rtt), 4 * L);
	/* Karn: segments 0/1 were retransmitted, but 2 and 3 were sent once */
	assert_int_equal(rtt, 9000 - 1003);
	assert_int_equal(sb.count, 0);
	assert_int_equal(sack_pipe(&sb), 0);
	assert_int_equal(sb.lost_bytes, 0);
	assert_int_equal(sb.sacked_bytes, 0);
	sack_destroy(&sb);
}

static void test_lying_blocks(void **state)
{
	sack_sb sb;
	proto_sack_block b[4] = {
		{ 1 + 20 * L, 1 + 30 * L },     /* beyond snd_nxt */
		{ 0xF0000000u, 0xF0001000u },   /* far away */
		{ 1 + 5 * L, 1 + 2 * L },       /* inverted */
		{ 1 + 2 * L, 1 + 3 * L },       /* valid */
	};
	(void)state;
	assert_int_equal(sack_init(&sb, 16), 0);
	push_n(&sb, 1, 10, 1000);
	assert_int_equal(sack_on_blocks(&sb, b, 4, 1, 1 + 10 * L, 2000, 0), L);
	assert_int_equal(sb.lying_blocks, 3);
	assert_int_equal(sb.blocks_rcvd, 4);
	assert_int_equal(sb.sacked_bytes, L);
	/* a block that only partly covers a segment marks nothing */
	b[0] = (proto_sack_block){ 1 + 4 * L + 10, 1 + 6 * L };
	assert_int_equal(sack_on_blocks(&sb, b, 1, 1, 1 + 10 * L, 2000, 0), L);
	sack_destroy(&sb);
}

/* The table starts unallocated, grows in powers of two up to its limit while
 * keeping segment order and marks (also from a wrapped head), and is released
 * only when empty. */
static void test_lazy_growth(void **state)
{
	sack_sb sb;
	proto_sack_block b[1];
	uint32_t rtt;
	(void)state;
	assert_int_equal(sack_init(&sb, 40), 0);
	assert_null(sb.seg);
	assert_int_equal(sack_mem(&sb), 0);
	assert_false(sack_full(&sb));
	push_n(&sb, 1, 12, 1000);
	assert_int_equal(sb.cap, SACK_MIN_ALLOC);
	/* move the head so the next growth copies a wrapped table */
	assert_int_equal(sack_on_ack(&sb, 1 + 10 * L, 5000, 0, &rtt), 10 * L);
	push_n(&sb, 1 + 12 * L, 14, 2000); /* 16 in the table, head at 10 */
	assert_int_equal(sb.count, 16);
	b[0] = (proto_sack_block){ 1 + 13 * L, 1 + 17 * L };
	assert_int_equal(sack_on_blocks(&sb, b, 1, 1 + 10 * L, 1 + 26 * L, 6000, 0), 4 * L);
	push_n(&sb, 1 + 26 * L, 1, 3000); /* grows to 32 */
	assert_int_equal(sb.cap, 32);
	assert_int_equal(sb.head, 0);
	for (uint32_t i = 0; i < sb.count; i++) {
		assert_int_equal(sack_at(&sb, i)->seq, 1 + (10 + i) * L);
		assert_int_equal(!!(sack_at(&sb, i)->flags & SACK_F_SACKED), i >= 3 && i < 7);
	}
	assert_int_equal(sack_detect_loss(&sb, 1000000), 3); /* 10..12 below 4 SACKed */
	push_n(&sb, 1 + 27 * L, 30, 4000); /* up to the limit of 40, not beyond */
	assert_int_equal(sb.count, 40);
	assert_int_equal(sb.cap, 40);
	assert_true(sack_full(&sb));
	assert_int_equal(sack_reserve(&sb), -ENOBUFS);
	assert_false(sack_release(&sb));
	assert_int_equal(sack_on_ack(&sb, 1 + 50 * L, 9000, 0, &rtt), 40 * L);
	assert_int_equal(sack_pipe(&sb), 0);
	assert_true(sack_release(&sb));
	assert_int_equal(sack_mem(&sb), 0);
	push_n(&sb, 1 + 50 * L, 1, 10000); /* usable again */
	assert_int_equal(sb.count, 1);
	sack_destroy(&sb);
}

/* The O(1) exit of sack_detect_loss (nothing SACKed, nothing retransmitted) must
 * give what the walk gives: nothing while the oldest segment is not timed out, the
 * timed-out prefix once it is; retx_segs follows retransmissions and their ACK. */
static void test_detect_fast_path(void **state)
{
	sack_sb sb;
	uint32_t rtt;
	(void)state;
	assert_int_equal(sack_init(&sb, 16), 0);
	push_n(&sb, 1, 6, 1000); /* sent at 1000..1005 */
	assert_int_equal(sack_detect_loss(&sb, 10), 0);
	sb.rack_ts = 1012; /* delivered at 1012: 1000, 1001 are older than reo_wnd 10 */
	assert_int_equal(sack_detect_loss(&sb, 10), 2);
	assert_int_equal(sb.lost_bytes, 2 * L);
	assert_int_equal(sack_next_lost(&sb), 0);
	sack_on_retransmit(&sb, 0, 2000);
	assert_int_equal(sb.retx_segs, 1);
	/* with a retransmission in the table the walk runs: 1002 and 1003 now timed */
	sb.rack_ts = 1014;
	assert_int_equal(sack_detect_loss(&sb, 10), 2);
	sack_on_retransmit(&sb, 0, 2001); /* a second copy: still one RETX segment */
	assert_int_equal(sb.retx_segs, 1);
	assert_int_equal(sack_on_ack(&sb, 1 + L, 3000, 0, &rtt), L);
	assert_int_equal(sb.retx_segs, 0);
	sack_destroy(&sb);
	assert_int_equal(sb.retx_segs, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lazy_growth),
		cmocka_unit_test(test_ack_and_rtt),
		cmocka_unit_test(test_dupthresh_loss),
		cmocka_unit_test(test_time_rule_and_rto),
		cmocka_unit_test(test_lying_blocks),
		cmocka_unit_test(test_detect_fast_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
