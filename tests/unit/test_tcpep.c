/* tun/tcpep.c: (a) two endpoints back to back over a simulated link (one of them
 * plays the kernel): 16 MB both ways with SHA-256, sequence wrap, half-close, RST,
 * refusal, backpressure and zero window (also with data in flight), loss recovery; (b) the real Linux TCP stack
 * through a TUN device inside a private network namespace (forked child; skipped
 * when not root). 10.4.0.0/16 is configured only inside that namespace. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "tun/ip.h"
#include "tun/tcpep.h"

/* ---------------------------------------------------------------------------
 * (a) simulated link
 * ------------------------------------------------------------------------- */

#define QCAP 512
#define PKTMAX 65536

typedef struct side {
	tcpep *ep;
	int id;
	/* sending: pattern bytes, total to send, shutdown when done */
	uint64_t to_send, sent;
	bool shut_when_done, shut;
	/* receiving */
	crypto_hash_sha256_state rx_hash;
	uint64_t rcvd;
	bool reading;      /* false: leave data in the endpoint (backpressure) */
	bool eof;
	/* state changes */
	enum tcpep_state last;
	int err;
	int nstate;
} side;

typedef struct simlink {
	uint8_t *pkt[2][QCAP];
	size_t len[2][QCAP];
	int head[2], n[2];
	uint64_t now;
	side s[2];
	/* loss: drop the k-th packet (1-based) sent by side d when it carries data */
	uint64_t data_pkts[2];
	uint64_t drop_at[2][4];
	uint64_t dropped;
	int cap_pkts; /* queue limit (≤ QCAP): overflow is dropped like a busy kernel */
	uint64_t delivered;
} simlink;

static simlink *L;

static uint8_t pattern(uint64_t off, int id)
{
	return (uint8_t)((off * 131 + (off >> 9) * 7 + (unsigned)id * 101) & 0xff);
}

static void sha_of_pattern(uint64_t n, int id, uint8_t out[32])
{
	crypto_hash_sha256_state st;
	uint8_t buf[4096];

	crypto_hash_sha256_init(&st);
	for (uint64_t off = 0; off < n;) {
		size_t k = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = pattern(off + i, id);
		crypto_hash_sha256_update(&st, buf, k);
		off += k;
	}
	crypto_hash_sha256_final(&st, out);
}

static bool carries_data(const uint8_t *p, size_t n)
{
	tun_ip ip;
	tun_tcp t;

	return tun_ip_parse(p, n, &ip) == 0 && tun_tcp_parse(ip.l4, ip.l4_len, &t) == 0 &&
	       t.payload_len > 0;
}

static void link_emit(void *ctx, const uint8_t *p, size_t n)
{
	int d = ((side *)ctx)->id;
	int slot;

	assert_true(n <= PKTMAX);
	if (carries_data(p, n)) {
		uint64_t k = ++L->data_pkts[d];
		for (int i = 0; i < 4; i++)
			if (L->drop_at[d][i] == k) {
				L->dropped++;
				return;
			}
	}
	if (L->n[d] >= L->cap_pkts) {
		L->dropped++;
		return;
	}
	slot = (L->head[d] + L->n[d]++) % QCAP;
	memcpy(L->pkt[d][slot], p, n);
	L->len[d][slot] = n;
}

static void drain(side *s)
{
	uint8_t buf[8192];
	size_t n;

	if (!s->reading)
		return;
	while ((n = tcpep_read(s->ep, buf, sizeof(buf), L->now)) > 0) {
		for (size_t i = 0; i < n; i++)
			assert_int_equal(buf[i], pattern(s->rcvd + i, s->id ^ 1));
		crypto_hash_sha256_update(&s->rx_hash, buf, n);
		s->rcvd += n;
	}
	if (tcpep_eof(s->ep))
		s->eof = true;
}

static void pump(side *s)
{
	uint8_t buf[16384];

	if (!s->ep || s->shut)
		return;
	while (s->sent < s->to_send) {
		size_t k = s->to_send - s->sent < sizeof(buf) ? (size_t)(s->to_send - s->sent) : sizeof(buf);
		size_t w;

		for (size_t i = 0; i < k; i++)
			buf[i] = pattern(s->sent + i, s->id);
		w = tcpep_write(s->ep, buf, k, L->now);
		s->sent += w;
		if (w < k)
			break;
	}
	if (s->sent == s->to_send && s->shut_when_done && tcpep_state(s->ep) >= TCPEP_ESTABLISHED) {
		s->shut = true;
		tcpep_shutdown(s->ep, L->now);
	}
}

static void cb_readable(void *ctx, tcpep *ep)
{
	(void)ep;
	drain(ctx);
}

static void cb_writable(void *ctx, tcpep *ep)
{
	(void)ep;
	pump(ctx);
}

static void cb_state(void *ctx, tcpep *ep, enum tcpep_state old, enum tcpep_state now, int err)
{
	side *s = ctx;

	(void)ep;
	(void)old;
	s->last = now;
	s->nstate++;
	if (err)
		s->err = err;
	if (now == TCPEP_ESTABLISHED)
		pump(s);
}

static const tcpep_cbs CBS = { link_emit, cb_readable, cb_writable, cb_state, NULL };

static void link_new(void)
{
	L = calloc(1, sizeof(*L));
	assert_non_null(L);
	for (int d = 0; d < 2; d++)
		for (int i = 0; i < QCAP; i++) {
			L->pkt[d][i] = malloc(PKTMAX);
			assert_non_null(L->pkt[d][i]);
		}
	for (int i = 0; i < 2; i++) {
		L->s[i].id = i;
		L->s[i].reading = true;
		crypto_hash_sha256_init(&L->s[i].rx_hash);
	}
	L->cap_pkts = QCAP;
	L->now = 1000000;
}

static void link_free(void)
{
	for (int i = 0; i < 2; i++)
		tcpep_free(L->s[i].ep);
	for (int d = 0; d < 2; d++)
		for (int i = 0; i < QCAP; i++)
			free(L->pkt[d][i]);
	free(L);
	L = NULL;
}

static void addr(tun_ipaddr *a, uint32_t v) { tun_ipaddr_v4(a, v); }

/* Side 0 ("kernel") dials side 1 ("daemon"), which is created from the SYN. */
static void link_open(const tcpep_params *pk, const tcpep_params *pd, bool accept)
{
	tun_ipaddr a, b;
	tun_ip ip;
	tun_tcp t;

	addr(&a, 0x0a040001);
	addr(&b, 0x0a040007);
	L->s[0].ep = tcpep_connect(pk, &a, 40000, &b, 80, &CBS, &L->s[0], L->now);
	assert_non_null(L->s[0].ep);
	assert_int_equal(L->n[0], 1);
	assert_int_equal(tun_ip_parse(L->pkt[0][0], L->len[0][0], &ip), 0);
	assert_true(tun_l4_csum_ok(&ip));
	assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
	assert_true(t.flags == TUN_TCP_SYN && t.has_mss && t.has_wscale);
	L->head[0] = 1, L->n[0] = 0;
	L->s[1].ep = tcpep_from_syn(pd, &ip, &t, &CBS, &L->s[1], L->now);
	assert_non_null(L->s[1].ep);
	assert_int_equal(tcpep_state(L->s[1].ep), TCPEP_SYN_HELD);
	assert_int_equal(L->n[1], 0); /* held: nothing sent */
	if (accept)
		assert_int_equal(tcpep_accept(L->s[1].ep, L->now), 0);
}

/* Deliver one packet from direction d to the other side. */
static void deliver(int d)
{
	int slot = L->head[d];
	tun_ip ip;
	tun_tcp t;
	side *to = &L->s[d ^ 1];

	L->head[d] = (L->head[d] + 1) % QCAP;
	L->n[d]--;
	assert_int_equal(tun_ip_parse(L->pkt[d][slot], L->len[d][slot], &ip), 0);
	assert_true(tun_l4_csum_ok(&ip));
	assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
	L->now += 5;
	L->delivered++;
	if (to->ep)
		tcpep_input(to->ep, &ip, &t, L->now);
}

static uint64_t min_deadline(void)
{
	uint64_t m = UINT64_MAX;

	for (int i = 0; i < 2; i++)
		if (L->s[i].ep && tcpep_next_deadline(L->s[i].ep) < m)
			m = tcpep_next_deadline(L->s[i].ep);
	return m;
}

/* Run until done() or nothing is left to happen (no packets, no timers) or until. */
static void run(bool (*done)(void), uint64_t until)
{
	for (uint64_t steps = 0; steps < 50000000; steps++) {
		uint64_t dl;

		if (done && done())
			return;
		for (int i = 0; i < 2; i++)
			pump(&L->s[i]);
		if (L->n[0] || L->n[1]) {
			int d = L->n[0] && (!L->n[1] || steps % 2) ? 0 : 1;
			deliver(d);
			for (int i = 0; i < 2; i++)
				if (L->s[i].ep && tcpep_next_deadline(L->s[i].ep) <= L->now)
					tcpep_on_timer(L->s[i].ep, L->now);
			continue;
		}
		dl = min_deadline();
		if (dl == UINT64_MAX || dl > until)
			return;
		if (dl > L->now)
			L->now = dl;
		for (int i = 0; i < 2; i++)
			if (L->s[i].ep && tcpep_next_deadline(L->s[i].ep) <= L->now)
				tcpep_on_timer(L->s[i].ep, L->now);
	}
	fail_msg("simulation did not settle");
}

static void check_hash(int rx, uint64_t n)
{
	uint8_t got[32], want[32];

	assert_int_equal(L->s[rx].rcvd, n);
	crypto_hash_sha256_final(&L->s[rx].rx_hash, got);
	sha_of_pattern(n, rx ^ 1, want);
	assert_memory_equal(got, want, 32);
}

static bool both_closed(void)
{
	return tcpep_state(L->s[0].ep) == TCPEP_CLOSED && tcpep_state(L->s[1].ep) == TCPEP_CLOSED;
}

static void test_bulk_16mb_wrap(void **state)
{
	tcpep_params pk, pd;
	tcpep_stats st;
	(void)state;

	link_new();
	tcpep_params_default(&pk);
	tcpep_params_default(&pd);
	pk.iss = 0xfffff000u; /* both sequence spaces wrap during the transfer */
	pd.iss = 0xffff0000u;
	L->s[0].to_send = L->s[1].to_send = 16u << 20;
	L->s[0].shut_when_done = L->s[1].shut_when_done = true;
	link_open(&pk, &pd, true);
	run(both_closed, UINT64_MAX);
	assert_true(both_closed());
	check_hash(0, 16u << 20);
	check_hash(1, 16u << 20);
	assert_true(L->s[0].eof && L->s[1].eof);
	assert_int_equal(L->s[0].err, 0);
	assert_int_equal(L->s[1].err, 0);
	tcpep_get_stats(L->s[1].ep, &st);
	assert_int_equal(st.snd_mss, 65495);
	assert_int_equal(st.rcv_wscale, 7);
	assert_int_equal(st.snd_wscale, 7);
	assert_int_equal(st.bytes_sent, 16u << 20);
	assert_int_equal(st.bytes_rcvd, 16u << 20);
	assert_int_equal(st.retransmits, 0);
	assert_int_equal(L->dropped, 0);
	link_free();
}

static bool half_done(void)
{
	return L->s[1].eof && L->s[1].rcvd == 100000 && L->s[0].rcvd == (1u << 20);
}

static void test_half_close(void **state)
{
	(void)state;
	link_new();
	L->s[0].to_send = 100000;
	L->s[0].shut_when_done = true;
	link_open(NULL, NULL, true);
	/* the kernel side half-closes; the daemon keeps sending afterwards */
	run(NULL, L->now + 100000);
	assert_true(L->s[1].eof);
	assert_int_equal(tcpep_state(L->s[0].ep), TCPEP_FIN_WAIT_2);
	assert_int_equal(tcpep_state(L->s[1].ep), TCPEP_CLOSE_WAIT);
	L->s[1].to_send = 1u << 20;
	L->s[1].shut_when_done = true;
	run(half_done, UINT64_MAX);
	run(NULL, L->now + 10000);
	assert_int_equal(tcpep_state(L->s[1].ep), TCPEP_CLOSED);   /* LAST_ACK -> CLOSED */
	assert_int_equal(tcpep_state(L->s[0].ep), TCPEP_TIME_WAIT);
	run(both_closed, UINT64_MAX); /* TIME_WAIT is short */
	assert_true(both_closed());
	check_hash(1, 100000);
	check_hash(0, 1u << 20);
	link_free();
}

static bool rx1_some(void) { return L->s[1].rcvd >= (1u << 20); }

static void test_rst_both_ways(void **state)
{
	tun_ip ip;
	tun_tcp t;
	(void)state;

	/* the daemon aborts mid-transfer: the kernel side sees ECONNRESET */
	link_new();
	L->s[0].to_send = 8u << 20;
	link_open(NULL, NULL, true);
	run(rx1_some, UINT64_MAX);
	assert_true(L->s[1].rcvd > 0 && L->s[1].rcvd < (8u << 20));
	tcpep_abort(L->s[1].ep, L->now);
	assert_int_equal(tcpep_state(L->s[1].ep), TCPEP_CLOSED);
	run(NULL, L->now + 10000);
	assert_int_equal(tcpep_state(L->s[0].ep), TCPEP_CLOSED);
	assert_int_equal(L->s[0].err, ECONNRESET);
	link_free();

	/* refusing a held SYN: ECONNREFUSED at once */
	link_new();
	link_open(NULL, NULL, false);
	assert_int_equal(tcpep_refuse(L->s[1].ep, L->now), 0);
	assert_int_equal(L->n[1], 1);
	assert_int_equal(tun_ip_parse(L->pkt[1][L->head[1]], L->len[1][L->head[1]], &ip), 0);
	assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
	assert_int_equal(t.flags, TUN_TCP_RST | TUN_TCP_ACK);
	run(NULL, L->now + 1000);
	assert_int_equal(tcpep_state(L->s[0].ep), TCPEP_CLOSED);
	assert_int_equal(L->s[0].err, ECONNREFUSED);
	assert_int_equal(tcpep_accept(L->s[1].ep, L->now), -EINVAL);
	link_free();

	/* the kernel aborts: the daemon side sees ECONNRESET */
	link_new();
	L->s[1].to_send = 1u << 20;
	link_open(NULL, NULL, true);
	run(NULL, L->now + 500);
	tcpep_abort(L->s[0].ep, L->now);
	run(NULL, L->now + 10000);
	assert_int_equal(tcpep_state(L->s[1].ep), TCPEP_CLOSED);
	assert_int_equal(L->s[1].err, ECONNRESET);
	link_free();
}

static void test_held_syn(void **state)
{
	(void)state;

	link_new();
	link_open(NULL, NULL, false);
	/* the kernel retransmits its SYN (our side dials the Pilot peer meanwhile) */
	run(NULL, L->now + 1500000);
	assert_int_equal(tcpep_state(L->s[1].ep), TCPEP_SYN_HELD);
	assert_true(L->s[0].nstate == 0);
	assert_true(L->delivered >= 1); /* the SYN retransmission was delivered and ignored */
	assert_int_equal(tcpep_accept(L->s[1].ep, L->now), 0);
	L->s[1].to_send = 1000;
	L->s[1].shut_when_done = true;
	run(NULL, L->now + 100000);
	assert_int_equal(L->s[0].rcvd, 1000);
	assert_true(L->s[0].eof);
	link_free();
}

static bool rx1_done(void) { return L->s[1].rcvd == L->s[0].to_send; }

static void test_backpressure(void **state)
{
	tcpep_params pd;
	tcpep_stats st;
	(void)state;

	link_new();
	tcpep_params_default(&pd);
	pd.rcvbuf = 256 * 1024;
	L->s[0].to_send = 4u << 20;
	L->s[1].reading = false;
	link_open(NULL, &pd, true);
	run(NULL, L->now + 3000000); /* 3 s without reading */
	/* full up to less than one window-scale unit (128 bytes) */
	assert_in_range(tcpep_readable(L->s[1].ep), 256 * 1024 - 127, 256 * 1024);
	tcpep_get_stats(L->s[1].ep, &st);
	assert_int_equal(st.rcv_wnd, 0);
	tcpep_get_stats(L->s[0].ep, &st);
	assert_int_equal(st.snd_wnd, 0);
	assert_true(st.probes_sent >= 2); /* persist probes kept the connection alive */
	assert_int_equal(tcpep_state(L->s[0].ep), TCPEP_ESTABLISHED);
	/* the Pilot side can take only 1000 bytes: the window stays that small */
	tcpep_set_rcv_space(L->s[1].ep, 1000, L->now);
	L->s[1].reading = true;
	drain(&L->s[1]);
	run(NULL, L->now + 1000);
	tcpep_get_stats(L->s[1].ep, &st);
	assert_true(st.rcv_wnd <= 1000 + 127); /* rounded to the window scale */
	tcpep_get_stats(L->s[0].ep, &st);
	assert_true(st.snd_wnd <= 1000 + 127);
	/* room again: the window opens with an update and the transfer completes */
	tcpep_set_rcv_space(L->s[1].ep, SIZE_MAX, L->now);
	run(rx1_done, UINT64_MAX);
	check_hash(1, 4u << 20);
	link_free();
}

static bool rx_done(void)
{
	return L->s[1].rcvd == L->s[0].to_send && L->s[0].rcvd == L->s[1].to_send;
}

static void test_loss_recovery(void **state)
{
	tcpep_params pk, pd;
	tcpep_stats st;
	(void)state;

	/* a lost segment mid-stream: duplicate ACKs → fast retransmit */
	link_new();
	tcpep_params_default(&pk);
	tcpep_params_default(&pd);
	pk.mtu = pd.mtu = 9000;
	L->s[0].to_send = 2u << 20;
	L->s[1].to_send = 2u << 20;
	L->drop_at[0][0] = 5;
	L->drop_at[1][0] = 7;
	L->drop_at[1][1] = 8;
	link_open(&pk, &pd, true);
	run(rx_done, UINT64_MAX);
	check_hash(1, 2u << 20);
	check_hash(0, 2u << 20);
	tcpep_get_stats(L->s[0].ep, &st);
	assert_true(st.fast_retransmits >= 1);
	tcpep_get_stats(L->s[1].ep, &st);
	assert_true(st.retransmits >= 2);
	link_free();

	/* the last segment lost: only the RTO can recover it */
	link_new();
	L->s[0].to_send = 10000;
	L->drop_at[0][0] = 1;
	link_open(NULL, NULL, true);
	run(rx1_done, UINT64_MAX);
	check_hash(1, 10000);
	tcpep_get_stats(L->s[0].ep, &st);
	assert_int_equal(st.rto_timeouts, 1);
	assert_true(st.retransmits >= 1);
	link_free();

	/* a small queue (an overloaded kernel) drops bursts: still everything arrives */
	link_new();
	tcpep_params_default(&pk);
	pk.mtu = 1500;
	L->cap_pkts = 40;
	L->s[0].to_send = 4u << 20;
	link_open(&pk, NULL, true);
	run(rx1_done, UINT64_MAX);
	check_hash(1, 4u << 20);
	assert_true(L->dropped > 0);
	link_free();
}

static void test_syn_loss_and_timeout(void **state)
{
	tun_ipaddr a, b;
	(void)state;

	link_new();
	addr(&a, 0x0a040007);
	addr(&b, 0x0a040001);
	/* nobody answers our SYN: retries with backoff, then ETIMEDOUT */
	L->s[0].ep = tcpep_connect(NULL, &a, 5555, &b, 8080, &CBS, &L->s[0], L->now);
	L->cap_pkts = 0; /* every packet is lost */
	run(NULL, UINT64_MAX);
	assert_int_equal(tcpep_state(L->s[0].ep), TCPEP_CLOSED);
	assert_int_equal(L->s[0].err, ETIMEDOUT);
	link_free();
}

/* Our SYN meets a connection the kernel still holds on the 4-tuple (TIME_WAIT of
 * the previous flow with a higher sequence space, as after a pilotd restart reused
 * the Pilot port): the kernel answers with a bare ACK of that connection. We reset
 * it (<SEQ=SEG.ACK><CTL=RST>) and send the SYN again at once; the kernel then
 * takes it. Before, the ACK was dropped and every SYN retransmission met the same
 * ACK: the flow never opened (iperf3 through the TUN stalled). */
static void test_syn_meets_stale_connection(void **state)
{
	uint8_t buf[128];
	tun_ipaddr a, b;
	tun_ip_build ib = { .ttl = 64 };
	tun_tcp_build tb = { .sport = 80,
			     .dport = 40000,
			     .seq = 777777,
			     .ack = 123456789,
			     .flags = TUN_TCP_ACK,
			     .window = 1000,
			     .wscale = -1 };
	tun_ip ip;
	tun_tcp t;
	uint32_t iss;
	tcpep_stats st;
	int n;
	(void)state;

	link_new();
	addr(&a, 0x0a040001);
	addr(&b, 0x0a040007);
	L->s[0].ep = tcpep_connect(NULL, &a, 40000, &b, 80, &CBS, &L->s[0], L->now);
	assert_int_equal(L->n[0], 1);
	assert_int_equal(tun_ip_parse(L->pkt[0][0], L->len[0][0], &ip), 0);
	assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
	iss = t.seq;
	L->head[0] = 1, L->n[0] = 0;

	ib.src = b;
	ib.dst = a;
	n = tun_tcp_build_pkt(&ib, &tb, NULL, 0, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(tun_ip_parse(buf, (size_t)n, &ip), 0);
	assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
	L->now += 100;
	tcpep_input(L->s[0].ep, &ip, &t, L->now);
	assert_int_equal(tcpep_state(L->s[0].ep), TCPEP_SYN_SENT);
	assert_int_equal(L->n[0], 1); /* the RST */
	assert_int_equal(tun_ip_parse(L->pkt[0][1], L->len[0][1], &ip), 0);
	assert_true(tun_l4_csum_ok(&ip));
	assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
	assert_int_equal(t.flags, TUN_TCP_RST);
	assert_int_equal(t.seq, 123456789u);
	L->head[0] = 2, L->n[0] = 0;
	tcpep_get_stats(L->s[0].ep, &st);
	assert_int_equal(st.stale_resets, 1);

	/* the SYN goes again now, not after the RTO */
	assert_true(tcpep_next_deadline(L->s[0].ep) <= L->now);
	tcpep_on_timer(L->s[0].ep, L->now);
	assert_int_equal(L->n[0], 1);
	assert_int_equal(tun_ip_parse(L->pkt[0][2], L->len[0][2], &ip), 0);
	assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
	assert_int_equal(t.flags, TUN_TCP_SYN);
	assert_int_equal(t.seq, iss);
	L->head[0] = 3, L->n[0] = 0;

	/* the kernel, its old connection gone, takes it */
	L->s[1].ep = tcpep_from_syn(NULL, &ip, &t, &CBS, &L->s[1], L->now);
	assert_non_null(L->s[1].ep);
	assert_int_equal(tcpep_accept(L->s[1].ep, L->now), 0);
	run(NULL, L->now + 1000);
	assert_int_equal(tcpep_state(L->s[0].ep), TCPEP_ESTABLISHED);
	assert_int_equal(tcpep_state(L->s[1].ep), TCPEP_ESTABLISHED);
	link_free();
}

/* ---- the kernel closes its window with our data outstanding ---- */

/* A segment from the "kernel" (side 0's address and port) into side 1. */
static void k_ack(uint32_t seq, uint32_t ack, uint16_t window)
{
	uint8_t buf[128];
	tun_ip_build ib = { .ttl = 64 };
	tun_tcp_build tb = { .sport = 40000, .dport = 80, .seq = seq, .ack = ack, .flags = TUN_TCP_ACK,
			     .window = window, .wscale = -1 };
	tun_ip ip;
	tun_tcp t;
	int n;

	addr(&ib.src, 0x0a040001);
	addr(&ib.dst, 0x0a040007);
	n = tun_tcp_build_pkt(&ib, &tb, NULL, 0, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(tun_ip_parse(buf, (size_t)n, &ip), 0);
	assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
	tcpep_input(L->s[1].ep, &ip, &t, L->now);
}

/* Take what side 1 emitted (nothing reaches side 0); returns the number of packets,
 * the first data segment's sequence number and length in *seq / *len (len 0: none). */
static int take_out(uint32_t *seq, uint32_t *ack, size_t *len)
{
	int k = L->n[1];

	*len = 0;
	for (int i = 0; i < k; i++) {
		int slot = (L->head[1] + i) % QCAP;
		tun_ip ip;
		tun_tcp t;

		assert_int_equal(tun_ip_parse(L->pkt[1][slot], L->len[1][slot], &ip), 0);
		assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
		assert_false(t.flags & TUN_TCP_RST);
		*ack = t.ack;
		if (t.payload_len && !*len) {
			*seq = t.seq;
			*len = t.payload_len;
		}
	}
	L->head[1] = (L->head[1] + k) % QCAP;
	L->n[1] = 0;
	return k;
}

/* The kernel acknowledges part of our data with a zero window (it shrank the window,
 * or the update that reopens it gets lost): every RTO sends the head segment anyway,
 * the kernel's answers keep the connection alive far beyond max_rexmit RTOs (it used
 * to be reset: a zero window with data in flight sent nothing and only counted), the
 * answer that reopens the window lets the rest go; a kernel that stops answering
 * still times out. */
#define M 1240u
static void test_zero_window_outstanding(void **state)
{
	tcpep_params pk, pd;
	tcpep_stats st;
	uint8_t data[3 * M];
	uint32_t s0 = 0, kseq = 0, seq = 0;
	size_t len;
	int i;
	(void)state;

	link_new();
	tcpep_params_default(&pd);
	pd.mtu = 1280; /* the smallest: MSS M both ways */
	pk = pd;
	link_open(&pk, &pd, true);
	run(NULL, L->now + 100000);
	assert_int_equal(tcpep_state(L->s[1].ep), TCPEP_ESTABLISHED);
	memset(data, 0x5a, sizeof(data));
	assert_int_equal(tcpep_write(L->s[1].ep, data, sizeof(data), L->now), sizeof(data));
	assert_int_equal(take_out(&s0, &kseq, &len), 3);
	assert_int_equal(len, M);
	k_ack(kseq, s0 + M, 0);
	tcpep_get_stats(L->s[1].ep, &st);
	assert_int_equal(st.snd_wnd, 0);
	assert_int_equal(st.in_flight, 2 * M);
	for (i = 0; i < 3 * (int)pd.max_rexmit; i++) {
		L->now = tcpep_next_deadline(L->s[1].ep);
		tcpep_on_timer(L->s[1].ep, L->now);
		assert_int_equal(tcpep_state(L->s[1].ep), TCPEP_ESTABLISHED);
		take_out(&seq, &kseq, &len);
		assert_int_equal(len, M);      /* the head segment, */
		assert_int_equal(seq, s0 + M); /* not a bare ACK */
		k_ack(kseq, s0 + M, 0);        /* alive, window still closed */
	}
	tcpep_get_stats(L->s[1].ep, &st);
	assert_true(st.probes_sent >= 3 * pd.max_rexmit);
	/* the answer to a probe takes it and opens the window: the rest goes at once */
	L->now = tcpep_next_deadline(L->s[1].ep);
	tcpep_on_timer(L->s[1].ep, L->now);
	take_out(&seq, &kseq, &len);
	k_ack(kseq, s0 + 2 * M, 100);
	take_out(&seq, &kseq, &len);
	assert_int_equal(len, M);
	assert_int_equal(seq, s0 + 2 * M);
	k_ack(kseq, s0 + 3 * M, 100);
	tcpep_get_stats(L->s[1].ep, &st);
	assert_int_equal(st.in_flight, 0);
	/* a kernel that stops answering: ETIMEDOUT after max_rexmit RTOs, RST last */
	assert_int_equal(tcpep_write(L->s[1].ep, data, 2 * M, L->now), 2 * M);
	take_out(&seq, &kseq, &len);
	k_ack(kseq, s0 + 4 * M, 0);
	for (i = 0; i <= (int)pd.max_rexmit && tcpep_state(L->s[1].ep) != TCPEP_CLOSED; i++) {
		L->now = tcpep_next_deadline(L->s[1].ep);
		tcpep_on_timer(L->s[1].ep, L->now);
		if (tcpep_state(L->s[1].ep) != TCPEP_CLOSED)
			take_out(&seq, &kseq, &len);
	}
	assert_int_equal(tcpep_state(L->s[1].ep), TCPEP_CLOSED);
	assert_int_equal(L->s[1].err, ETIMEDOUT);
	assert_int_equal(i, (int)pd.max_rexmit + 1);
	link_free();
}
#undef M

static void test_reset_reply(void **state)
{
	uint8_t in[128], out[128];
	tun_ip_build ib;
	tun_tcp_build tb = { .sport = 1, .dport = 2, .seq = 100, .flags = TUN_TCP_SYN, .wscale = -1 };
	tun_ip ip, rip;
	tun_tcp t, rt;
	int n;
	(void)state;

	memset(&ib, 0, sizeof(ib));
	addr(&ib.src, 0x0a040001);
	addr(&ib.dst, 0x0a040009);
	n = tun_tcp_build_pkt(&ib, &tb, NULL, 0, in, sizeof(in));
	assert_true(n > 0);
	assert_int_equal(tun_ip_parse(in, (size_t)n, &ip), 0);
	assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
	n = tcpep_reset_reply(&ip, &t, out, sizeof(out));
	assert_true(n > 0);
	assert_int_equal(tun_ip_parse(out, (size_t)n, &rip), 0);
	assert_true(tun_l4_csum_ok(&rip));
	assert_int_equal(tun_tcp_parse(rip.l4, rip.l4_len, &rt), 0);
	assert_int_equal(rt.flags, TUN_TCP_RST | TUN_TCP_ACK);
	assert_int_equal(rt.ack, 101);
	assert_int_equal(rt.sport, 2);
	assert_true(tun_ipaddr_eq(&rip.dst, &ib.src));
	t.flags = TUN_TCP_ACK;
	t.ack = 777;
	n = tcpep_reset_reply(&ip, &t, out, sizeof(out));
	assert_int_equal(tun_ip_parse(out, (size_t)n, &rip), 0);
	assert_int_equal(tun_tcp_parse(rip.l4, rip.l4_len, &rt), 0);
	assert_int_equal(rt.flags, TUN_TCP_RST);
	assert_int_equal(rt.seq, 777);
	t.flags = TUN_TCP_RST;
	assert_int_equal(tcpep_reset_reply(&ip, &t, out, sizeof(out)), 0);
}

/* ---------------------------------------------------------------------------
 * (b) the real kernel, in a private network namespace (forked child)
 * ------------------------------------------------------------------------- */

#define KCHECK(x) do { if (!(x)) { fprintf(stderr, "kernel test: CHECK failed: %s (%s:%d) errno=%d\n", \
	#x, __FILE__, __LINE__, errno); _exit(1); } } while (0)

#define KT_MAXEP 4

typedef struct kside {
	tcpep *ep;
	crypto_hash_sha256_state h;
	uint64_t rcvd, sent, to_send;
	bool eof, shut;
	int err;
	enum tcpep_state st;
} kside;

static struct {
	int tun;
	bool vnet; /* IFF_VNET_HDR + offloads, MTU 1400, endpoints with params.gso */
	tcpep_params par;
	uint64_t gso_writes, gso_reads;
	uint8_t *buf;
	kside k[KT_MAXEP];
	int nk;
	size_t max_in, max_out;
	uint64_t tun_write_err;
} K;

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* virtio_net_hdr, little-endian: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset */
static void k_write(const uint8_t *p, size_t n, uint8_t flags, uint8_t gso_type, uint16_t gso_size)
{
	size_t iph = (size_t)(p[0] & 0xf) * 4;
	uint8_t h[10] = {
		flags,        gso_type, (uint8_t)(iph + 20), 0, (uint8_t)gso_size, (uint8_t)(gso_size >> 8),
		(uint8_t)iph, 0,        flags ? 16 : 0,      0
	};
	struct iovec iov[2] = { { h, sizeof(h) }, { (void *)p, n } };

	if (n > K.max_out)
		K.max_out = n;
	if (!K.vnet) {
		if (write(K.tun, p, n) != (ssize_t)n)
			K.tun_write_err++;
		return;
	}
	if (writev(K.tun, iov, 2) != (ssize_t)(n + sizeof(h)))
		K.tun_write_err++;
}

static void k_emit(void *ctx, const uint8_t *p, size_t n)
{
	(void)ctx;
	k_write(p, n, 0, 0, 0);
}

/* A data segment with a partial checksum, cut by the kernel when gso_size > 0. */
static void k_emit_gso(void *ctx, const uint8_t *p, size_t n, uint16_t gso_size)
{
	(void)ctx;
	KCHECK(K.vnet && p[0] == 0x45);
	K.gso_writes += gso_size != 0;
	k_write(p, n, 1 /* NEEDS_CSUM */, gso_size ? 1 /* TCPV4 */ : 0, gso_size);
}

static void k_drain(kside *s)
{
	uint8_t b[65536];
	size_t n;

	while ((n = tcpep_read(s->ep, b, sizeof(b), mono_us())) > 0) {
		for (size_t i = 0; i < n; i++)
			KCHECK(b[i] == pattern(s->rcvd + i, 0));
		crypto_hash_sha256_update(&s->h, b, n);
		s->rcvd += n;
	}
	if (tcpep_eof(s->ep))
		s->eof = true;
}

static void k_pump(kside *s)
{
	uint8_t b[65536];

	if (!s->ep || tcpep_state(s->ep) < TCPEP_ESTABLISHED)
		return;
	while (s->sent < s->to_send) {
		size_t k = s->to_send - s->sent < sizeof(b) ? (size_t)(s->to_send - s->sent) : sizeof(b), w;

		for (size_t i = 0; i < k; i++)
			b[i] = pattern(s->sent + i, 1);
		w = tcpep_write(s->ep, b, k, mono_us());
		s->sent += w;
		if (w < k)
			break;
	}
}

static void k_readable(void *ctx, tcpep *ep) { (void)ep; k_drain(ctx); }
static void k_writable(void *ctx, tcpep *ep) { (void)ep; k_pump(ctx); }
static void k_state(void *ctx, tcpep *ep, enum tcpep_state o, enum tcpep_state n, int err)
{
	kside *s = ctx;

	(void)ep;
	(void)o;
	s->st = n;
	if (err)
		s->err = err;
	if (n == TCPEP_ESTABLISHED)
		k_pump(s);
}

static const tcpep_cbs KCBS = { k_emit, k_readable, k_writable, k_state, k_emit_gso };

static int if_ioctl(int fd, unsigned long req, struct ifreq *ifr)
{
	return ioctl(fd, req, ifr);
}

/* Child only: a private namespace with lo and a TUN holding 10.4.0.1/16 (MTU
 * 65535; with vnet: a vnet header, checksum and TSO offloads and MTU 1400). */
static int k_setup(bool vnet)
{
	struct ifreq ifr;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	int s;

	if (unshare(CLONE_NEWNET) < 0)
		return -errno;
	s = socket(AF_INET, SOCK_DGRAM, 0);
	KCHECK(s >= 0);
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	KCHECK(if_ioctl(s, SIOCGIFFLAGS, &ifr) == 0);
	ifr.ifr_flags |= IFF_UP;
	KCHECK(if_ioctl(s, SIOCSIFFLAGS, &ifr) == 0);

	K.tun = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (K.tun < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
	strcpy(ifr.ifr_name, "ptest0");
	KCHECK(ioctl(K.tun, TUNSETIFF, &ifr) == 0);
	K.vnet = vnet;
	tcpep_params_default(&K.par);
	if (vnet) {
		int sz = 10, le = 1;

		KCHECK(ioctl(K.tun, TUNSETVNETHDRSZ, &sz) == 0);
		KCHECK(ioctl(K.tun, TUNSETVNETLE, &le) == 0 || errno == EINVAL);
		KCHECK(ioctl(K.tun, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == 0);
		K.par.mtu = 1400;
		K.par.gso = true;
	}
	ifr.ifr_mtu = (int)K.par.mtu;
	KCHECK(if_ioctl(s, SIOCSIFMTU, &ifr) == 0);
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(0x0a040001);
	KCHECK(if_ioctl(s, SIOCSIFADDR, &ifr) == 0);
	sin->sin_addr.s_addr = htonl(0xffff0000);
	KCHECK(if_ioctl(s, SIOCSIFNETMASK, &ifr) == 0);
	KCHECK(if_ioctl(s, SIOCGIFFLAGS, &ifr) == 0);
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	KCHECK(if_ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
	close(s);
	K.buf = malloc(70000);
	KCHECK(K.buf);
	return 0;
}

/* Endpoints are keyed by the kernel-side port, recorded here. */
static uint16_t k_port[KT_MAXEP];

/* Read every packet the kernel queued on the TUN; a SYN to 10.4.0.7 with no
 * endpoint is copied into synbuf (*synlen bytes) and true returned. */
static bool k_read_tun(uint8_t *synbuf, size_t *synlen)
{
	bool got_syn = false;

	for (;;) {
		uint8_t h[10] = { 0 };
		struct iovec iov[2] = { { h, sizeof(h) }, { K.buf, 70000 } };
		ssize_t n = K.vnet ? readv(K.tun, iov, 2) - (ssize_t)sizeof(h) : read(K.tun, K.buf, 70000);
		tun_ip ip;
		tun_tcp t;
		int i;

		if (n < 0) {
			KCHECK(errno == EAGAIN);
			return got_syn;
		}
		if ((size_t)n > K.max_in)
			K.max_in = (size_t)n;
		if (tun_ip_parse(K.buf, (size_t)n, &ip) < 0 || ip.proto != TUN_IPPROTO_TCP)
			continue; /* IPv6 router solicitations and the like */
		K.gso_reads += h[1] != 0;
		if (!(h[0] & 1)) /* NEEDS_CSUM: the kernel left the checksum to the device */
			KCHECK(tun_l4_csum_ok(&ip));
		KCHECK(tun_tcp_parse(ip.l4, ip.l4_len, &t) == 0);
		for (i = 0; i < K.nk; i++)
			if (k_port[i] == t.sport && K.k[i].ep)
				break;
		if (i < K.nk) {
			tcpep_input(K.k[i].ep, &ip, &t, mono_us());
			continue;
		}
		if (t.flags == TUN_TCP_SYN && synbuf) {
			memcpy(synbuf, K.buf, (size_t)n);
			*synlen = (size_t)n;
			got_syn = true;
		}
	}
}

static void k_timers(void)
{
	uint64_t now = mono_us();

	for (int i = 0; i < K.nk; i++)
		if (K.k[i].ep && tcpep_next_deadline(K.k[i].ep) <= now)
			tcpep_on_timer(K.k[i].ep, now);
}

static int k_wait_ms(void)
{
	uint64_t now = mono_us(), dl = UINT64_MAX;

	for (int i = 0; i < K.nk; i++)
		if (K.k[i].ep && tcpep_next_deadline(K.k[i].ep) < dl)
			dl = tcpep_next_deadline(K.k[i].ep);
	if (dl == UINT64_MAX)
		return 20;
	return dl <= now ? 0 : (int)((dl - now) / 1000 + 1 > 20 ? 20 : (dl - now) / 1000 + 1);
}

typedef struct ksock {
	int fd;
	uint64_t sent, rcvd, to_send;
	crypto_hash_sha256_state h;
	bool eof;
} ksock;

/* One loop step: poll TUN + socket, move bytes both ways, run timers. */
static void k_step(ksock *ks, uint8_t *synbuf, size_t *synlen, bool *got_syn)
{
	struct pollfd pf[2] = { { K.tun, POLLIN, 0 }, { ks ? ks->fd : -1, POLLIN, 0 } };
	uint8_t b[65536];

	if (ks && ks->sent < ks->to_send)
		pf[1].events |= POLLOUT;
	poll(pf, 2, k_wait_ms());
	if (pf[0].revents & POLLIN) {
		bool g = k_read_tun(synbuf, synlen);
		if (got_syn)
			*got_syn |= g;
	}
	if (ks && ks->fd >= 0) {
		while (ks->sent < ks->to_send) {
			size_t k = ks->to_send - ks->sent < sizeof(b) ? (size_t)(ks->to_send - ks->sent) : sizeof(b);
			ssize_t w;

			for (size_t i = 0; i < k; i++)
				b[i] = pattern(ks->sent + i, 0);
			w = send(ks->fd, b, k, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w <= 0)
				break;
			ks->sent += (uint64_t)w;
		}
		for (;;) {
			ssize_t r = recv(ks->fd, b, sizeof(b), MSG_DONTWAIT);

			if (r == 0)
				ks->eof = true;
			if (r <= 0)
				break;
			for (ssize_t i = 0; i < r; i++)
				KCHECK(b[i] == pattern(ks->rcvd + (uint64_t)i, 1));
			crypto_hash_sha256_update(&ks->h, b, (size_t)r);
			ks->rcvd += (uint64_t)r;
		}
	}
	for (int i = 0; i < K.nk; i++)
		if (K.k[i].ep)
			k_pump(&K.k[i]);
	k_timers();
}

static void k_check_hash(crypto_hash_sha256_state *h, uint64_t n, int id)
{
	uint8_t got[32], want[32];

	crypto_hash_sha256_final(h, got);
	sha_of_pattern(n, id, want);
	KCHECK(memcmp(got, want, 32) == 0);
}

#define KBYTES (1u << 20)

static kside *k_new_side(uint16_t kport)
{
	kside *s = &K.k[K.nk];

	memset(s, 0, sizeof(*s));
	crypto_hash_sha256_init(&s->h);
	s->to_send = KBYTES;
	k_port[K.nk++] = kport;
	return s;
}

/* The kernel connect()s to 10.4.0.7:80; we accept; 1 MB each way; close. */
static void k_outbound(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(80) };
	uint8_t syn[70000];
	size_t synlen = 0;
	bool got = false;
	ksock ks = { .to_send = KBYTES };
	tun_ip ip;
	tun_tcp t;
	kside *s;
	struct sockaddr_in me;
	socklen_t ml = sizeof(me);
	int err = -1;
	uint64_t t0;

	crypto_hash_sha256_init(&ks.h);
	sa.sin_addr.s_addr = htonl(0x0a040007);
	ks.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	KCHECK(ks.fd >= 0);
	KCHECK(connect(ks.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == EINPROGRESS);
	KCHECK(getsockname(ks.fd, (struct sockaddr *)&me, &ml) == 0);
	t0 = mono_us();
	while (!got && mono_us() - t0 < 3000000)
		k_step(NULL, syn, &synlen, &got);
	KCHECK(got);
	KCHECK(tun_ip_parse(syn, synlen, &ip) == 0);
	KCHECK(tun_tcp_parse(ip.l4, ip.l4_len, &t) == 0);
	KCHECK(t.sport == ntohs(me.sin_port) && t.has_mss && t.mss == K.par.mtu - 40 && t.has_wscale);
	s = k_new_side(t.sport);
	s->ep = tcpep_from_syn(&K.par, &ip, &t, &KCBS, s, mono_us());
	KCHECK(s->ep);
	KCHECK(tcpep_accept(s->ep, mono_us()) == 0);
	while (mono_us() - t0 < 20000000 && (s->rcvd < KBYTES || ks.rcvd < KBYTES))
		k_step(&ks, NULL, NULL, NULL);
	{
		socklen_t el = sizeof(err);
		KCHECK(getsockopt(ks.fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0);
	}
	KCHECK(s->rcvd == KBYTES && ks.rcvd == KBYTES);
	/* the kernel half-closes: EOF at the endpoint; then we close our side */
	KCHECK(shutdown(ks.fd, SHUT_WR) == 0);
	while (mono_us() - t0 < 20000000 && !s->eof)
		k_step(&ks, NULL, NULL, NULL);
	KCHECK(s->eof);
	KCHECK(tcpep_state(s->ep) == TCPEP_CLOSE_WAIT);
	tcpep_shutdown(s->ep, mono_us());
	while (mono_us() - t0 < 20000000 && (!ks.eof || tcpep_state(s->ep) != TCPEP_CLOSED))
		k_step(&ks, NULL, NULL, NULL);
	KCHECK(ks.eof);
	KCHECK(tcpep_state(s->ep) == TCPEP_CLOSED && s->err == 0);
	k_check_hash(&s->h, KBYTES, 0);
	k_check_hash(&ks.h, KBYTES, 1);
	{
		tcpep_stats st;
		tcpep_get_stats(s->ep, &st);
		fprintf(stderr, "kernel outbound: %.1f ms, snd_mss %u, max packet in %zu out %zu, "
			"segs %llu/%llu, retransmits %llu\n", (double)(mono_us() - t0) / 1000.0,
			st.snd_mss, K.max_in, K.max_out, (unsigned long long)st.segs_sent,
			(unsigned long long)st.segs_rcvd, (unsigned long long)st.retransmits);
		KCHECK(st.snd_mss == K.par.mtu - 40);
	}
	close(ks.fd);
}

/* A kernel listener on 10.4.0.1:8080; tcpep_connect from 10.4.0.7:5555. */
static void k_inbound(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(8080) };
	int one = 1, lfd;
	ksock ks = { .fd = -1, .to_send = KBYTES };
	tun_ipaddr a, b;
	kside *s;
	uint64_t t0 = mono_us();

	crypto_hash_sha256_init(&ks.h);
	sa.sin_addr.s_addr = htonl(0x0a040001);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	KCHECK(lfd >= 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	KCHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	KCHECK(listen(lfd, 4) == 0);
	tun_ipaddr_v4(&a, 0x0a040007);
	tun_ipaddr_v4(&b, 0x0a040001);
	s = k_new_side(8080);
	s->ep = tcpep_connect(&K.par, &a, 5555, &b, 8080, &KCBS, s, mono_us());
	KCHECK(s->ep);
	while (ks.fd < 0 && mono_us() - t0 < 3000000) {
		k_step(NULL, NULL, NULL, NULL);
		ks.fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
	}
	KCHECK(ks.fd >= 0);
	KCHECK(tcpep_state(s->ep) == TCPEP_ESTABLISHED);
	while (mono_us() - t0 < 20000000 && (s->rcvd < KBYTES || ks.rcvd < KBYTES))
		k_step(&ks, NULL, NULL, NULL);
	KCHECK(s->rcvd == KBYTES && ks.rcvd == KBYTES);
	/* we close first (the Pilot peer sent FIN): the kernel app reads EOF, closes */
	tcpep_shutdown(s->ep, mono_us());
	while (mono_us() - t0 < 20000000 && !ks.eof)
		k_step(&ks, NULL, NULL, NULL);
	KCHECK(ks.eof);
	close(ks.fd);
	ks.fd = -1;
	while (mono_us() - t0 < 20000000 && !s->eof)
		k_step(NULL, NULL, NULL, NULL);
	KCHECK(s->eof);
	KCHECK(tcpep_state(s->ep) == TCPEP_TIME_WAIT);
	k_check_hash(&s->h, KBYTES, 0);
	k_check_hash(&ks.h, KBYTES, 1);
	fprintf(stderr, "kernel inbound: %.1f ms\n", (double)(mono_us() - t0) / 1000.0);
	close(lfd);
}

/* tcpep_refuse: the kernel's connect() fails with ECONNREFUSED at once. */
static void k_refused(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(81) };
	uint8_t syn[70000];
	size_t synlen = 0;
	bool got = false;
	tun_ip ip;
	tun_tcp t;
	tcpep *ep;
	struct pollfd pf;
	int fd, err = 0;
	socklen_t el = sizeof(err);
	uint64_t t0, t1;

	sa.sin_addr.s_addr = htonl(0x0a040007);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	KCHECK(fd >= 0);
	KCHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == EINPROGRESS);
	t0 = mono_us();
	while (!got && mono_us() - t0 < 3000000)
		k_step(NULL, syn, &synlen, &got);
	KCHECK(got);
	KCHECK(tun_ip_parse(syn, synlen, &ip) == 0);
	KCHECK(tun_tcp_parse(ip.l4, ip.l4_len, &t) == 0);
	KCHECK(t.dport == 81);
	ep = tcpep_from_syn(&K.par, &ip, &t, &KCBS, NULL, mono_us());
	KCHECK(ep);
	t1 = mono_us();
	KCHECK(tcpep_refuse(ep, t1) == 0);
	pf.fd = fd;
	pf.events = POLLOUT;
	KCHECK(poll(&pf, 1, 1000) == 1);
	KCHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0);
	KCHECK(err == ECONNREFUSED);
	KCHECK(mono_us() - t1 < 100000);
	fprintf(stderr, "kernel refused: ECONNREFUSED after %.2f ms\n", (double)(mono_us() - t1) / 1000.0);
	tcpep_free(ep);
	close(fd);
}

static void real_kernel(bool vnet)
{
	pid_t pid;
	int status;

	if (geteuid() != 0) {
		fprintf(stderr, "test_real_kernel: skipped (needs root for a network namespace)\n");
		skip();
	}
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int r = k_setup(vnet);

		if (r < 0) {
			fprintf(stderr, "test_real_kernel: namespace/TUN set-up failed: %s\n", strerror(-r));
			_exit(77);
		}
		k_refused();
		k_outbound();
		k_inbound();
		for (int i = 0; i < K.nk; i++)
			tcpep_free(K.k[i].ep);
		free(K.buf);
		if (vnet) {
			/* large segments both ways through a 1400-byte MTU */
			fprintf(stderr,
				"kernel with offloads: %llu GSO writes, %llu GSO reads, max in %zu out %zu\n",
				(unsigned long long)K.gso_writes, (unsigned long long)K.gso_reads, K.max_in,
				K.max_out);
			KCHECK(K.gso_writes > 0 && K.gso_reads > 0 && K.max_out > 1400 && K.max_in > 1400);
		}
		KCHECK(K.tun_write_err == 0);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_real_kernel(void **state)
{
	(void)state;
	real_kernel(false);
}

/* The TUN offloads (vnet header): the endpoint hands the kernel 64 KiB segments
 * with partial checksums cut at a 1400-byte MTU's MSS, and takes the kernel's TSO
 * super-packets, both ways intact. */
static void test_real_kernel_gso(void **state)
{
	(void)state;
	real_kernel(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bulk_16mb_wrap),
		cmocka_unit_test(test_half_close),
		cmocka_unit_test(test_rst_both_ways),
		cmocka_unit_test(test_held_syn),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_loss_recovery),
		cmocka_unit_test(test_syn_loss_and_timeout),
		cmocka_unit_test(test_syn_meets_stale_connection),
		cmocka_unit_test(test_zero_window_outstanding),
		cmocka_unit_test(test_reset_reply),
		cmocka_unit_test(test_real_kernel),
		cmocka_unit_test(test_real_kernel_gso),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
