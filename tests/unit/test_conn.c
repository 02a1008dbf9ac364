/* stream/conn.c: two connection tables (node 1 and node 2) joined back to back
 * through their send_packet callbacks. Packets go through a queue drained by a
 * 0 ms timer of a real pilot_loop (never recursively), optionally with seeded
 * random loss and reordering. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "stream/conn.h"
#include "lib/loop.h"
#include "lib/proto.h"

#define HEADROOM 29
#define CAP_MAX 8192

typedef struct qpkt {
	struct qpkt *next;
	int to;
	uint32_t from;
	size_t len;
	uint8_t data[];
} qpkt;

typedef struct caphdr {
	uint8_t flags, protocol;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint16_t plen;
} caphdr;

typedef struct net net;

typedef struct endp {
	net *n;
	int idx;
} endp;

struct net {
	pilot_loop *loop;
	conn_table *t[2];
	endp ep[2];
	qpkt *head, *tail;
	uint64_t timer;
	uint64_t rng;
	uint32_t loss_ppm, reorder_ppm;
	caphdr cap[2][CAP_MAX];
	size_t ncap[2];
	bool refuse_all;          /* admit() of table 1 refuses everything */
	uint32_t trusted_node;    /* trusted(): the only trusted source */
	uint16_t refuse_port;     /* ... or only this port (0 = none) */
	uint64_t admit_calls;
	uint16_t admit_port;      /* last admit() question */
	int admit_proto;
	struct { /* cfg.event of table 1 */
		enum conn_event ev;
		conn_event_info e;
	} evs[64];
	size_t nevs;
};

/* ---- the wire ---------------------------------------------------------------------- */

static uint32_t rnd(net *n)
{
	n->rng ^= n->rng << 13;
	n->rng ^= n->rng >> 7;
	n->rng ^= n->rng << 17;
	return (uint32_t)(n->rng >> 11);
}

static int64_t drain(pilot_loop *l, uint64_t id, void *arg)
{
	net *n = arg;
	qpkt *q = n->head;

	n->timer = 0;
	n->head = n->tail = NULL;
	while (q) {
		qpkt *next = q->next;
		if (n->reorder_ppm && next && rnd(n) % 1000000 < n->reorder_ppm) {
			/* swap with the next one */
			q->next = next->next;
			next->next = q;
			q = next;
			next = q->next;
		}
		if (!(n->loss_ppm && rnd(n) % 1000000 < n->loss_ppm) && n->t[q->to])
			conn_input(n->t[q->to], q->from, q->data, q->len);
		free(q);
		q = next;
	}
	return 0;
}

static int send_packet(void *ctx, uint32_t node, uint8_t *pkt, size_t len)
{
	endp *e = ctx;
	net *n = e->n;
	proto_hdr h;
	qpkt *q;

	/* the headroom contract: all of it is ours to scribble on */
	memset(pkt - HEADROOM, 0xAA, HEADROOM);
	assert_int_equal(proto_hdr_decode(pkt, len, &h), 0);
	if (n->ncap[e->idx] < CAP_MAX)
		n->cap[e->idx][n->ncap[e->idx]++] = (caphdr){ h.flags, h.protocol, h.src_port,
			h.dst_port, h.seq, h.ack, h.payload_len };
	if (node != 1 && node != 2)
		return -EHOSTUNREACH;
	q = malloc(sizeof(*q) + len);
	assert_non_null(q);
	q->next = NULL;
	q->to = (int)node - 1;
	q->from = (uint32_t)e->idx + 1;
	q->len = len;
	memcpy(q->data, pkt, len);
	if (n->tail)
		n->tail->next = q;
	else
		n->head = q;
	n->tail = q;
	if (!n->timer)
		n->timer = pilot_loop_add_timer(n->loop, 0, drain, n);
	/* trailing room is writable too */
	memset(pkt + len, 0x55, 16);
	return 0;
}

static bool admit(void *ctx, uint32_t from, uint16_t port, int proto)
{
	endp *e = ctx;

	e->n->admit_calls++;
	e->n->admit_port = port;
	e->n->admit_proto = proto;
	if (e->idx != 1)
		return true;
	return !e->n->refuse_all && !(e->n->refuse_port && port == e->n->refuse_port);
}

static void test_params(conn_config *c)
{
	stream_params_default(&c->stream);
	c->stream.sndbuf = c->stream.rcvbuf = 256 * 1024;
	c->stream.time_wait_us = 200000;
	c->stream.syn_rto_us = 50000;
	c->stream.syn_tries = 3;
	/* 200 simultaneous dials from one node: above the default SYN limits */
	c->syn_rate = c->syn_rate_peer = c->syn_burst_peer = 10000;
}

static net *net_new(const conn_config *over)
{
	net *n = calloc(1, sizeof(*n));

	assert_non_null(n);
	n->loop = pilot_loop_new();
	n->rng = 0x1234567;
	for (int i = 0; i < 2; i++) {
		conn_config c = { 0 };
		if (over)
			c = *over;
		else
			test_params(&c);
		n->ep[i] = (endp){ n, i };
		c.loop = n->loop;
		c.headroom = HEADROOM;
		c.ctx = &n->ep[i];
		c.send_packet = send_packet;
		c.admit = admit;
		n->t[i] = conn_table_new(&c);
		assert_non_null(n->t[i]);
		conn_set_local_addr(n->t[i], pilot_addr_make(0, (uint32_t)i + 1));
	}
	return n;
}

static void net_free(net *n)
{
	conn_table_free(n->t[0]);
	conn_table_free(n->t[1]);
	n->t[0] = n->t[1] = NULL;
	drain(n->loop, 0, n);
	if (n->timer)
		pilot_loop_del_timer(n->loop, n->timer);
	pilot_loop_free(n->loop);
	free(n);
}

typedef bool (*pred_fn)(void *arg);

static bool run_until(net *n, pred_fn p, void *arg, int ms)
{
	uint64_t end = pilot_now_ms() + (uint64_t)ms;

	while (!p(arg)) {
		if (pilot_now_ms() > end)
			return false;
		pilot_loop_run_once(n->loop, 5);
	}
	return true;
}

static void run_for(net *n, int ms)
{
	uint64_t end = pilot_now_ms() + (uint64_t)ms;

	while (pilot_now_ms() < end)
		pilot_loop_run_once(n->loop, 5);
}

static conn_table_stats stats(conn_table *t)
{
	conn_table_stats s;

	conn_get_stats(t, &s);
	return s;
}

static bool both_empty(void *arg)
{
	net *n = arg;

	return stats(n->t[0]).active == 0 && stats(n->t[1]).active == 0;
}

static size_t count_sent(net *n, int idx, uint8_t proto, uint8_t flags)
{
	size_t k = 0;

	for (size_t i = 0; i < n->ncap[idx]; i++)
		if (n->cap[idx][i].protocol == proto && n->cap[idx][i].flags == flags)
			k++;
	return k;
}

/* Marshal and feed a packet into table `to` as if it came from node `from`. */
static void inject(net *n, int to, uint32_t from, const proto_hdr *h, const void *pl, size_t len)
{
	uint8_t buf[PROTO_HDR_SIZE + 256];
	int r = proto_packet_encode(h, pl, len, buf, sizeof(buf));

	assert_true(r > 0);
	conn_input(n->t[to], from, buf, (size_t)r);
}

/* ---- a client: writes its message, reads into a buffer -------------------------------- */

typedef struct cli {
	conn *c;
	enum stream_state st;
	int err, closed;
	bool established, eof;
	const uint8_t *tx;
	size_t ntx, sent;
	bool shut_after;
	uint8_t *rx;
	size_t nrx, caprx;
	crypto_hash_sha256_state hs;
	bool hashing;
} cli;

static void cli_pump(void *arg, conn *c)
{
	cli *k = arg;

	while (k->sent < k->ntx) {
		size_t w = conn_write(c, k->tx + k->sent, k->ntx - k->sent);
		if (!w)
			return;
		k->sent += w;
	}
	if (k->shut_after && k->ntx) {
		k->shut_after = false;
		conn_shutdown(c);
	}
}

static void cli_read(void *arg, conn *c)
{
	cli *k = arg;
	uint8_t buf[8192];
	size_t n;

	for (;;) {
		if (k->rx && k->nrx < k->caprx) {
			n = conn_read(c, k->rx + k->nrx, k->caprx - k->nrx);
		} else {
			n = conn_read(c, buf, sizeof(buf));
			if (k->hashing)
				crypto_hash_sha256_update(&k->hs, buf, n);
		}
		if (!n)
			break;
		k->nrx += n;
	}
	if (conn_eof(c))
		k->eof = true;
}

static void cli_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	cli *k = arg;

	k->st = now;
	if (now == STREAM_ESTABLISHED) {
		k->established = true;
		cli_pump(arg, c);
	}
	if (now == STREAM_CLOSED) {
		k->closed++;
		k->err = err;
	}
}

static const conn_cbs cli_cbs = { cli_read, cli_pump, cli_state };

static bool cli_got(void *arg)
{
	cli *k = arg;

	return k->nrx >= k->caprx && k->caprx;
}

static bool cli_closed(void *arg)
{
	return ((cli *)arg)->closed > 0;
}

static bool cli_eof(void *arg)
{
	return ((cli *)arg)->eof;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_echo_round_trip(void **state)
{
	net *n = net_new(NULL);
	uint8_t rx[5];
	cli k = { .tx = (const uint8_t *)"hello", .ntx = 5, .rx = rx, .caprx = 5 };
	int err = 0;
	conn_info ci;

	assert_int_equal(conn_echo_enable(n->t[1]), 0);
	assert_int_equal(conn_echo_enable(n->t[1]), -EADDRINUSE);
	k.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 7, &cli_cbs, &k, &err);
	assert_non_null(k.c);
	conn_get_info(k.c, &ci);
	assert_true(ci.local_port >= PILOT_PORT_EPHEMERAL_MIN);
	assert_int_equal(ci.remote_port, 7);
	assert_true(ci.dialed);
	assert_ptr_equal(conn_lookup_id(n->t[0], conn_id(k.c)), k.c);
	assert_true(run_until(n, cli_got, &k, 2000));
	assert_memory_equal(rx, "hello", 5);
	assert_int_equal(conn_state(k.c), STREAM_ESTABLISHED);
	assert_int_equal(stats(n->t[1]).syn_accepted, 1);
	conn_close(k.c);
	assert_true(run_until(n, both_empty, n, 3000));
	assert_null(conn_lookup_id(n->t[0], ci.id));
	net_free(n);
}

typedef struct sink {
	crypto_hash_sha256_state hs;
	uint64_t n;
	bool done;
} sink;

static void sink_read(void *arg, conn *c)
{
	sink *s = arg;
	const uint8_t *p;
	size_t len;

	while ((len = conn_peek(c, &p)) > 0) {
		crypto_hash_sha256_update(&s->hs, p, len);
		s->n += len;
		conn_consume(c, len);
	}
	if (conn_eof(c)) {
		s->done = true;
		conn_close(c);
	}
}

static void sink_state(void *arg, conn *c, enum stream_state o, enum stream_state now, int err)
{
	if (now == STREAM_CLOSED)
		conn_close(c);
}

static const conn_cbs sink_cbs = { sink_read, NULL, sink_state };

static bool sink_accept(void *arg, conn *c)
{
	conn_set_cbs(c, &sink_cbs, arg);
	return true;
}

static const conn_listener_cbs sink_listener = { sink_accept };

static bool sink_done(void *arg)
{
	return ((sink *)arg)->done;
}

static void transfer(uint32_t loss_ppm, uint32_t reorder_ppm)
{
	net *n = net_new(NULL);
	size_t len = 1 << 20;
	uint8_t *data = malloc(len), want[32], got[32];
	sink s = { 0 };
	cli k = { 0 };
	int err;

	n->loss_ppm = loss_ppm;
	n->reorder_ppm = reorder_ppm;
	randombytes_buf(data, len);
	crypto_hash_sha256(want, data, len);
	crypto_hash_sha256_init(&s.hs);
	assert_int_equal(conn_listen(n->t[1], 1001, &sink_listener, &s), 0);
	k.tx = data;
	k.ntx = len;
	k.shut_after = true;
	k.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 1001, &cli_cbs, &k, &err);
	assert_non_null(k.c);
	assert_true(run_until(n, sink_done, &s, 30000));
	crypto_hash_sha256_final(&s.hs, got);
	assert_int_equal(s.n, len);
	assert_memory_equal(want, got, 32);
	assert_true(run_until(n, cli_eof, &k, 5000));
	conn_close(k.c);
	assert_true(run_until(n, both_empty, n, 5000));
	free(data);
	net_free(n);
}

static void test_transfer_1mb(void **state)
{
	transfer(0, 0);
}

static void test_transfer_1mb_lossy(void **state)
{
	transfer(20000, 20000); /* 2 % loss, 2 % reordering */
}

#define NSTREAMS 200

static bool all_got(void *arg)
{
	cli *k = arg;

	for (int i = 0; i < NSTREAMS; i++)
		if (k[i].nrx < k[i].caprx)
			return false;
	return true;
}

static void test_concurrent_streams(void **state)
{
	net *n = net_new(NULL);
	cli *k = calloc(NSTREAMS, sizeof(*k));
	uint8_t (*msg)[1000] = malloc(NSTREAMS * 1000), (*rx)[1000] = malloc(NSTREAMS * 1000);
	int err;

	assert_int_equal(conn_echo_enable(n->t[1]), 0);
	for (int i = 0; i < NSTREAMS; i++) {
		memset(msg[i], i, 1000);
		msg[i][0] = (uint8_t)(i >> 8);
		k[i] = (cli){ .tx = msg[i], .ntx = 1000, .rx = rx[i], .caprx = 1000 };
		k[i].c = conn_dial(n->t[0], pilot_addr_make(0, 2), 7, &cli_cbs, &k[i], &err);
		assert_non_null(k[i].c);
	}
	assert_int_equal(stats(n->t[0]).active, NSTREAMS);
	assert_true(run_until(n, all_got, k, 10000));
	assert_int_equal(stats(n->t[1]).active, NSTREAMS);
	for (int i = 0; i < NSTREAMS; i++) {
		assert_memory_equal(rx[i], msg[i], 1000);
		conn_close(k[i].c);
	}
	assert_true(run_until(n, both_empty, n, 5000));
	free(k);
	free(msg);
	free(rx);
	net_free(n);
}

static void test_rst_closed_port(void **state)
{
	net *n = net_new(NULL);
	cli k = { 0 };
	int err;
	uint64_t t0 = pilot_now_ms();

	k.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 99, &cli_cbs, &k, &err);
	assert_non_null(k.c);
	assert_true(run_until(n, cli_closed, &k, 2000));
	assert_true(pilot_now_ms() - t0 < 40); /* at once, not after SYN retries (50 ms) */
	assert_int_equal(k.err, ECONNREFUSED);
	assert_int_equal(stats(n->t[1]).drop_no_listener, 1);
	assert_int_equal(stats(n->t[1]).rst_sent, 1);
	assert_int_equal(count_sent(n, 1, PROTO_STREAM, PROTO_RST), 1);
	conn_close(k.c);
	assert_true(run_until(n, both_empty, n, 1000));
	net_free(n);
}

/* Simultaneous open through the connection table: each table has one ephemeral
 * port (50000), so node 1 dialing 2:50000 and node 2 dialing 1:50000 at once
 * make two SYNs on one 4-tuple that cross. The SYN reaches the SYN_SENT entry of
 * its tuple (not the listener logic): no RST, one established connection on each
 * side, data both ways, then a graceful close on both. */
static bool both_got(void *arg)
{
	cli *k = arg;

	return cli_got(&k[0]) && cli_got(&k[1]) && k[0].eof && k[1].eof;
}

static void test_simultaneous_open(void **state)
{
	conn_config cfg = { 0 };
	net *n;
	cli k[2];
	uint8_t msg[2][3000], rx[2][3000];
	int err;

	test_params(&cfg);
	cfg.eph_min = cfg.eph_max = 50000;
	n = net_new(&cfg);
	for (int i = 0; i < 2; i++) {
		for (size_t j = 0; j < sizeof(msg[i]); j++)
			msg[i][j] = (uint8_t)(j * 7 + (size_t)i);
		k[i] = (cli){ .tx = msg[i], .ntx = sizeof(msg[i]), .shut_after = true,
			      .rx = rx[i], .caprx = sizeof(rx[i]) };
	}
	/* both dial before either SYN is delivered */
	k[0].c = conn_dial(n->t[0], pilot_addr_make(0, 2), 50000, &cli_cbs, &k[0], &err);
	assert_non_null(k[0].c);
	k[1].c = conn_dial(n->t[1], pilot_addr_make(0, 1), 50000, &cli_cbs, &k[1], &err);
	assert_non_null(k[1].c);
	assert_true(run_until(n, both_got, k, 5000));
	for (int i = 0; i < 2; i++) {
		assert_true(k[i].established);
		assert_int_equal(k[i].closed, 0);
		assert_memory_equal(rx[i], msg[1 - i], sizeof(rx[i]));
		assert_int_equal(count_sent(n, i, PROTO_STREAM, PROTO_SYN), 1);
		assert_int_equal(count_sent(n, i, PROTO_STREAM, PROTO_SYN | PROTO_ACK), 1);
		assert_int_equal(count_sent(n, i, PROTO_STREAM, PROTO_RST), 0);
		assert_int_equal(stats(n->t[i]).active, 1);
		assert_int_equal(stats(n->t[i]).drop_no_listener, 0);
	}
	conn_close(k[0].c);
	conn_close(k[1].c);
	assert_true(run_until(n, both_empty, n, 5000));
	for (int i = 0; i < 2; i++)
		assert_int_equal(count_sent(n, i, PROTO_STREAM, PROTO_RST), 0);
	net_free(n);
}

/* half-close server: collects everything until EOF, then answers upper-cased */
typedef struct upper {
	uint8_t buf[64];
	size_t n;
	bool answered;
} upper;

static void upper_read(void *arg, conn *c)
{
	upper *u = arg;
	size_t r;

	while ((r = conn_read(c, u->buf + u->n, sizeof(u->buf) - u->n)) > 0)
		u->n += r;
	if (conn_eof(c) && !u->answered) {
		u->answered = true;
		assert_int_equal(conn_state(c), STREAM_CLOSE_WAIT);
		for (size_t i = 0; i < u->n; i++)
			u->buf[i] = (uint8_t)(u->buf[i] - 32);
		assert_int_equal(conn_write(c, u->buf, u->n), u->n);
		conn_close(c);
	}
}

static const conn_cbs upper_cbs = { upper_read, NULL, sink_state };

static bool upper_accept(void *arg, conn *c)
{
	conn_set_cbs(c, &upper_cbs, arg);
	return true;
}

static const conn_listener_cbs upper_listener = { upper_accept };

static void test_half_close(void **state)
{
	net *n = net_new(NULL);
	upper u = { 0 };
	uint8_t rx[3];
	cli k = { .tx = (const uint8_t *)"abc", .ntx = 3, .shut_after = true, .rx = rx, .caprx = 3 };
	int err;

	assert_int_equal(conn_listen(n->t[1], 1000, &upper_listener, &u), 0);
	k.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 1000, &cli_cbs, &k, &err);
	assert_true(run_until(n, cli_eof, &k, 3000));
	assert_int_equal(k.nrx, 3);
	assert_memory_equal(rx, "ABC", 3);
	assert_true(k.st == STREAM_TIME_WAIT || k.st == STREAM_FIN_WAIT);
	conn_close(k.c);
	assert_true(run_until(n, both_empty, n, 3000));
	assert_int_equal(conn_unlisten(n->t[1], 1000), 0);
	assert_int_equal(conn_unlisten(n->t[1], 1000), -ENOENT);
	net_free(n);
}

static void test_admission_refused(void **state)
{
	net *n = net_new(NULL);
	cli k = { 0 };
	int err;

	n->refuse_port = 7;
	assert_int_equal(conn_echo_enable(n->t[1]), 0);
	k.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 7, &cli_cbs, &k, &err);
	run_for(n, 80);
	/* silently dropped: no RST, no SYN-ACK, the dialer keeps trying */
	assert_int_equal(k.closed, 0);
	assert_int_equal(conn_state(k.c), STREAM_SYN_SENT);
	assert_true(stats(n->t[1]).drop_refused >= 1);
	assert_int_equal(n->ncap[1], 0);
	/* the dial gives up after syn_tries (3 x 50 ms, doubling) */
	assert_true(run_until(n, cli_closed, &k, 3000));
	assert_int_equal(k.err, ETIMEDOUT);
	conn_close(k.c);
	/* datagrams too */
	assert_int_equal(conn_dgram_send(n->t[0], pilot_addr_make(0, 2), 7, "x", 1), 0);
	run_for(n, 20);
	assert_int_equal(stats(n->t[1]).dgrams_rcvd, 0);
	assert_true(stats(n->t[1]).drop_refused >= 4);
	assert_true(run_until(n, both_empty, n, 1000));
	net_free(n);
}

static bool accept_any(void *arg, conn *c)
{
	conn **slot = arg;

	while (*slot)
		slot++;
	*slot = c;
	return true;
}

static const conn_listener_cbs any_listener = { accept_any };

static void syn_from(net *n, uint32_t node, uint16_t sport, uint16_t dport)
{
	proto_hdr h = { .version = 1, .flags = PROTO_SYN, .protocol = PROTO_STREAM,
			.src = pilot_addr_make(0, node), .dst = pilot_addr_make(0, 2),
			.src_port = sport, .dst_port = dport, .window = 16 };

	inject(n, 1, node, &h, NULL, 0);
}

static void test_syn_rate_limit(void **state)
{
	conn_config c = { 0 };
	conn *acc[64] = { 0 };
	net *n;

	test_params(&c);
	c.syn_rate = 8;           /* global burst 8 */
	c.syn_rate_peer = 1;      /* refill negligible during the test */
	c.syn_burst_peer = 5;
	n = net_new(&c);
	assert_int_equal(conn_listen(n->t[1], 80, &any_listener, acc), 0);
	for (uint16_t i = 0; i < 10; i++)
		syn_from(n, 1, (uint16_t)(50000 + i), 80);
	assert_int_equal(stats(n->t[1]).syn_accepted, 5);
	assert_int_equal(stats(n->t[1]).drop_syn_rate, 5);
	/* a duplicate SYN of an accepted connection is the engine's business */
	syn_from(n, 1, 50000, 80);
	assert_int_equal(stats(n->t[1]).drop_syn_rate, 5);
	/* per-source: node 3 (spoofing nothing: from == src) still has its burst,
	 * until the global bucket (8) runs dry */
	for (uint16_t i = 0; i < 10; i++)
		syn_from(n, 3, (uint16_t)(50000 + i), 80);
	assert_int_equal(stats(n->t[1]).syn_accepted, 8);
	assert_int_equal(stats(n->t[1]).drop_syn_rate, 12);
	assert_int_equal(count_sent(n, 1, PROTO_STREAM, PROTO_RST), 0);
	for (int i = 0; acc[i]; i++)
		conn_abort(acc[i]);
	run_for(n, 20);
	assert_int_equal(stats(n->t[1]).active, 0);
	net_free(n);
}

static bool trusted_cb(void *ctx, uint32_t from)
{
	endp *e = ctx;

	return from == e->n->trusted_node;
}

/* Many untrusted sources, each within its own per-source burst, SYN together:
 * issue 12 §5, they must not starve the trusted peer's connection. */
static int syn_flood_then_trusted(bool budget)
{
	conn_config c = { 0 };
	conn *acc[64] = { 0 };
	net *n;
	int trusted_ok;

	test_params(&c);
	c.syn_rate = 8;           /* global burst 8, refill negligible during the test */
	c.syn_rate_peer = 1;
	c.syn_burst_peer = 5;
	if (budget) {
		c.trusted = trusted_cb;
		c.syn_rate_untrusted = 4;
	}
	n = net_new(&c);
	n->trusted_node = 1;
	assert_int_equal(conn_listen(n->t[1], 444, &any_listener, acc), 0);
	for (uint32_t node = 100; node < 150; node++)
		for (uint16_t i = 0; i < 2; i++)
			syn_from(n, node, (uint16_t)(50000 + i), 444);
	assert_int_equal(stats(n->t[1]).syn_accepted, budget ? 4 : 8);
	assert_int_equal(stats(n->t[1]).drop_syn_untrusted, budget ? 96 : 0);
	syn_from(n, 1, 40000, 444);
	trusted_ok = stats(n->t[1]).syn_accepted == (budget ? 5u : 9u);
	for (int i = 0; acc[i]; i++)
		conn_abort(acc[i]);
	run_for(n, 20);
	assert_int_equal(stats(n->t[1]).active, 0);
	net_free(n);
	return trusted_ok;
}

static void test_syn_budget(void **state)
{
	/* one shared budget (trusted == NULL, the behaviour before issue 12): starved */
	assert_false(syn_flood_then_trusted(false));
	/* untrusted sources on a budget of their own: the trusted SYN is accepted */
	assert_true(syn_flood_then_trusted(true));
}

static void test_caps(void **state)
{
	conn_config c = { 0 };
	conn *acc[64] = { 0 };
	net *n;

	test_params(&c);
	c.max_per_port = 3;
	c.max_total = 5;
	n = net_new(&c);
	assert_int_equal(conn_listen(n->t[1], 80, &any_listener, acc), 0);
	assert_int_equal(conn_listen(n->t[1], 81, &any_listener, acc), 0);
	for (uint16_t i = 0; i < 5; i++)
		syn_from(n, 1, (uint16_t)(50000 + i), 80);
	assert_int_equal(stats(n->t[1]).syn_accepted, 3);
	assert_int_equal(stats(n->t[1]).drop_cap, 2);
	assert_int_equal(count_sent(n, 1, PROTO_STREAM, PROTO_RST), 2);
	for (uint16_t i = 0; i < 3; i++)
		syn_from(n, 1, (uint16_t)(51000 + i), 81);
	assert_int_equal(stats(n->t[1]).syn_accepted, 5);
	assert_int_equal(stats(n->t[1]).drop_cap, 3); /* total 5 */
	/* freeing one makes room again (after the deferred free) */
	conn_abort(acc[0]);
	run_for(n, 10);
	syn_from(n, 1, 52000, 81);
	assert_int_equal(stats(n->t[1]).syn_accepted, 6);
	for (int i = 1; acc[i]; i++)
		conn_abort(acc[i]);
	run_for(n, 20);
	assert_int_equal(stats(n->t[1]).active, 0);
	net_free(n);
}

typedef struct pingres {
	int calls, err;
	uint32_t rtt;
	char payload[32];
} pingres;

static void on_ping(void *arg, int err, uint32_t rtt_us, const uint8_t *pl, size_t len)
{
	pingres *p = arg;

	p->calls++;
	p->err = err;
	p->rtt = rtt_us;
	if (len < sizeof(p->payload)) {
		memcpy(p->payload, pl ? (const char *)pl : "", len);
		p->payload[len] = 0;
	}
}

static void test_ephemeral_exhaustion(void **state)
{
	conn_config c = { 0 };
	cli k[5] = { 0 };
	net *n;
	int err = 0;

	test_params(&c);
	c.eph_min = 60000;
	c.eph_max = 60003;
	n = net_new(&c);
	n->refuse_all = true; /* dials stay in SYN_SENT */
	for (int i = 0; i < 4; i++) {
		k[i].c = conn_dial(n->t[0], pilot_addr_make(0, 2), 80, &cli_cbs, &k[i], &err);
		assert_non_null(k[i].c);
	}
	assert_null(conn_dial(n->t[0], pilot_addr_make(0, 2), 80, &cli_cbs, &k[4], &err));
	assert_int_equal(err, -EADDRINUSE);
	assert_int_equal(conn_dgram_send(n->t[0], pilot_addr_make(0, 2), 80, "x", 1), -EADDRINUSE);
	{
		pingres p = { 0 };
		assert_true(conn_ping(n->t[0], 2, 1, NULL, 0, on_ping, &p) == -EADDRINUSE);
	}
	conn_abort(k[1].c);
	k[4].c = conn_dial(n->t[0], pilot_addr_make(0, 2), 80, &cli_cbs, &k[4], &err);
	assert_non_null(k[4].c);
	for (int i = 0; i < 5; i++)
		if (i != 1)
			conn_abort(k[i].c);
	assert_true(run_until(n, both_empty, n, 1000));
	net_free(n);
}

typedef struct twcount {
	int time_wait, other;
} twcount;

static void count_tw(void *arg, const conn_info *ci)
{
	twcount *c = arg;

	if (ci->state == STREAM_TIME_WAIT)
		c->time_wait++;
	else
		c->other++;
}

static bool both_time_wait(void *arg)
{
	net *n = arg;
	twcount a = { 0 }, b = { 0 };

	conn_foreach(n->t[0], count_tw, &a);
	conn_foreach(n->t[1], count_tw, &b);
	return a.time_wait == 1 && b.time_wait == 1 && !a.other && !b.other;
}

/* One ephemeral port: the second dial reuses the tuple still in TIME_WAIT on
 * both sides; lookups prefer the new connection, the listener treats the SYN as
 * a new connection (§5.1, §5.4). */
static void test_time_wait_reuse(void **state)
{
	conn_config c = { 0 };
	uint8_t rx[2][4];
	cli k[2] = {
		{ .tx = (const uint8_t *)"one!", .ntx = 4, .rx = rx[0], .caprx = 4 },
		{ .tx = (const uint8_t *)"two!", .ntx = 4, .rx = rx[1], .caprx = 4 },
	};
	conn_info ci[2];
	twcount tw = { 0 };
	net *n;
	int err;

	test_params(&c);
	c.stream.time_wait_us = 2000000;
	c.eph_min = c.eph_max = 60000;
	n = net_new(&c);
	assert_int_equal(conn_echo_enable(n->t[1]), 0);
	k[0].c = conn_dial(n->t[0], pilot_addr_make(0, 2), 7, &cli_cbs, &k[0], &err);
	assert_true(run_until(n, cli_got, &k[0], 2000));
	conn_get_info(k[0].c, &ci[0]);
	conn_close(k[0].c);
	assert_true(run_until(n, both_time_wait, n, 2000));
	k[1].c = conn_dial(n->t[0], pilot_addr_make(0, 2), 7, &cli_cbs, &k[1], &err);
	assert_non_null(k[1].c);
	conn_get_info(k[1].c, &ci[1]);
	assert_int_equal(ci[0].local_port, ci[1].local_port);
	assert_true(run_until(n, cli_got, &k[1], 2000));
	assert_memory_equal(rx[1], "two!", 4);
	conn_foreach(n->t[1], count_tw, &tw);
	assert_int_equal(tw.time_wait, 0); /* the old incarnation ended at the SYN */
	assert_int_equal(tw.other, 1);
	conn_abort(k[1].c);
	net_free(n);
}

typedef struct dgrams {
	int n;
	uint16_t sport[8], dport[8];
	char data[8][16];
	pilot_addr src;
} dgrams;

static void on_dgram(void *arg, pilot_addr src, uint16_t sport, uint16_t dport,
		     const uint8_t *data, size_t len)
{
	dgrams *d = arg;

	if (d->n >= 8 || len >= 16)
		return;
	d->src = src;
	d->sport[d->n] = sport;
	d->dport[d->n] = dport;
	memcpy(d->data[d->n], data, len);
	d->data[d->n++][len] = 0;
}

static bool three(void *arg)
{
	return ((dgrams *)arg)->n >= 3;
}

static void test_datagrams(void **state)
{
	net *n = net_new(NULL);
	dgrams d = { 0 }, o = { 0 };
	proto_hdr h = { .version = 1, .protocol = PROTO_DATAGRAM, .src = pilot_addr_make(0, 1),
			.dst = pilot_addr_make(0, 2), .src_port = 50000, .dst_port = 2000 };

	assert_int_equal(conn_dgram_bind(n->t[1], 2000, on_dgram, &d), 0);
	assert_int_equal(conn_dgram_bind(n->t[1], 2000, on_dgram, &d), -EADDRINUSE);
	conn_dgram_observe(n->t[1], on_dgram, &o);
	assert_int_equal(conn_dgram_send(n->t[0], pilot_addr_make(0, 2), 2000, "one", 3), 0);
	assert_int_equal(conn_dgram_send(n->t[0], pilot_addr_make(0, 2), 2000, "two", 3), 0);
	assert_int_equal(conn_dgram_send(n->t[0], pilot_addr_make(0, 2), 2000, "three", 5), 0);
	assert_int_equal(conn_dgram_send(n->t[0], pilot_addr_make(0, 2), 2000, "", 0), -EINVAL);
	assert_int_equal(conn_dgram_send(n->t[0], pilot_addr_make(1, PILOT_NODE_BROADCAST), 2000, "x", 1),
			 -EINVAL);
	assert_true(run_until(n, three, &d, 1000));
	assert_string_equal(d.data[0], "one");
	assert_string_equal(d.data[2], "three");
	assert_true(pilot_addr_eq(d.src, pilot_addr_make(0, 1)));
	assert_true(d.sport[0] != d.sport[1] && d.sport[1] != d.sport[2] && d.sport[0] != d.sport[2]);
	assert_true(d.sport[0] >= PILOT_PORT_EPHEMERAL_MIN);
	assert_int_equal(d.dport[1], 2000);
	assert_int_equal(o.n, 3); /* the observer saw them too */
	assert_int_equal(count_sent(n, 0, PROTO_DATAGRAM, 0), 3);
	/* empty datagram from the wire: dropped */
	inject(n, 1, 1, &h, NULL, 0);
	assert_int_equal(stats(n->t[1]).drop_empty_dgram, 1);
	/* unbound port without observer: dropped */
	conn_dgram_observe(n->t[1], NULL, NULL);
	h.dst_port = 2001;
	inject(n, 1, 1, &h, "x", 1);
	assert_int_equal(stats(n->t[1]).drop_no_port, 1);
	assert_int_equal(stats(n->t[1]).dgrams_rcvd, 3);
	assert_int_equal(conn_dgram_unbind(n->t[1], 2000), 0);
	assert_int_equal(conn_dgram_unbind(n->t[1], 2000), -ENOENT);
	net_free(n);
}


/* conn_listen_default: SYNs to ports without a listener wait for the owner's
 * answer (accept or RST); datagrams from a chosen source port */
typedef struct held {
	int calls;
	uint32_t from;
	proto_hdr syn;
} held;

static void on_held_syn(void *arg, uint32_t from, const proto_hdr *syn)
{
	held *h = arg;

	h->calls++;
	h->from = from;
	h->syn = *syn;
}

static bool held_one(void *arg)
{
	return ((held *)arg)->calls > 0;
}

static bool cli_established(void *arg)
{
	return ((cli *)arg)->established;
}

static void test_listen_default(void **state)
{
	net *n = net_new(NULL);
	held h = { 0 };
	cli k = { .tx = (const uint8_t *)"abc", .ntx = 3, .shut_after = true }, r = { 0 };
	sink s = { 0 };
	dgrams d = { 0 };
	int err;
	uint64_t t0;

	conn_listen_default(n->t[1], on_held_syn, &h);
	crypto_hash_sha256_init(&s.hs);
	k.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 5000, &cli_cbs, &k, &err);
	assert_true(run_until(n, held_one, &h, 1000));
	assert_int_equal(h.from, 1);
	assert_int_equal(h.syn.dst_port, 5000);
	assert_int_equal(stats(n->t[1]).rst_sent, 0);
	assert_null(conn_accept_syn(n->t[1], 1, &(proto_hdr){ .protocol = PROTO_STREAM }, &sink_cbs,
				    &s, &err));
	assert_int_equal(err, -EINVAL);
	assert_non_null(conn_accept_syn(n->t[1], 1, &h.syn, &sink_cbs, &s, &err));
	assert_null(conn_accept_syn(n->t[1], 1, &h.syn, &sink_cbs, &s, &err));
	assert_int_equal(err, -EEXIST);
	assert_true(run_until(n, sink_done, &s, 2000));
	assert_int_equal(s.n, 3);
	assert_true(k.established);
	/* refused: RST at once, not after SYN retries */
	h.calls = 0;
	t0 = pilot_now_ms();
	r.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 5001, &cli_cbs, &r, &err);
	assert_true(run_until(n, held_one, &h, 1000));
	conn_refuse_syn(n->t[1], h.from, &h.syn);
	assert_true(run_until(n, cli_closed, &r, 1000));
	assert_true(pilot_now_ms() - t0 < 40);
	assert_int_equal(r.err, ECONNREFUSED);
	assert_false(cli_established(&r));
	conn_close(r.c);
	conn_close(k.c);
	/* off again: RST from the table */
	conn_listen_default(n->t[1], NULL, NULL);
	memset(&r, 0, sizeof(r));
	r.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 5002, &cli_cbs, &r, &err);
	assert_true(run_until(n, cli_closed, &r, 1000));
	assert_int_equal(r.err, ECONNREFUSED);
	conn_close(r.c);
	/* datagram from a chosen port */
	assert_int_equal(conn_dgram_bind(n->t[1], 2000, on_dgram, &d), 0);
	assert_int_equal(conn_dgram_send_from(n->t[0], 1234, pilot_addr_make(0, 2), 2000, "x", 1), 0);
	run_for(n, 20);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.sport[0], 1234);
	assert_true(run_until(n, both_empty, n, 3000));
	net_free(n);
}

static bool ping_done(void *arg)
{
	return ((pingres *)arg)->calls > 0;
}

static void test_ping_pong(void **state)
{
	conn_config c = { 0 };
	pingres p = { 0 }, q = { 0 }, r = { 0 };
	proto_hdr h = { .version = 1, .protocol = PROTO_CONTROL, .src = pilot_addr_make(0, 1),
			.dst = pilot_addr_make(0, 2), .src_port = 0, .dst_port = 0 };
	size_t t1_tx;
	net *n;

	test_params(&c);
	c.ping_timeout_ms = 100;
	n = net_new(&c);
	assert_true(conn_ping(n->t[0], 2, 7, "ping-7", 6, on_ping, &p) > 0);
	assert_true(run_until(n, ping_done, &p, 1000));
	assert_int_equal(p.err, 0);
	assert_true(p.rtt > 0);
	assert_string_equal(p.payload, "ping-7");
	assert_int_equal(stats(n->t[1]).pings_answered, 1);
	assert_int_equal(stats(n->t[0]).pongs_matched, 1);
	/* the ping left from an ephemeral port, the pong came from port 0 */
	assert_true(n->cap[0][0].sport >= PILOT_PORT_EPHEMERAL_MIN);
	assert_int_equal(n->cap[1][0].sport, 0);
	assert_int_equal(n->cap[1][0].flags, PROTO_ACK);
	assert_int_equal(n->cap[1][0].seq, 7);
	assert_int_equal(n->cap[1][0].ack, 8);
	/* a pong is never answered */
	t1_tx = n->ncap[1];
	h.flags = PROTO_ACK;
	h.src_port = 0;
	h.dst_port = 0;
	inject(n, 1, 1, &h, "x", 1);
	assert_int_equal(n->ncap[1], t1_tx);
	assert_int_equal(stats(n->t[1]).drop_control, 1);
	/* keepalive: consumed silently (also with the old Src node 0) */
	h.flags = 0;
	h.src = pilot_addr_make(0, 1);
	h.dst = pilot_addr_make(0, 0);
	inject(n, 1, 1, &h, NULL, 0);
	h.src = pilot_addr_make(0, 0);
	inject(n, 1, 1, &h, NULL, 0);
	assert_int_equal(stats(n->t[1]).keepalives_rcvd, 2);
	assert_int_equal(n->ncap[1], t1_tx);
	/* path probe: answered (Src = own address since Dst node 0) */
	inject(n, 1, 1, &h, "pathprobe.v1", 12);
	assert_int_equal(stats(n->t[1]).pings_answered, 2);
	assert_int_equal(n->ncap[1], t1_tx + 1);
	run_for(n, 10);
	assert_int_equal(stats(n->t[0]).drop_control, 1); /* unmatched pong on node 1 */
	/* timeout: node 3 is unreachable in this net */
	assert_true(conn_ping(n->t[0], 3, 1, NULL, 0, on_ping, &q) == -EHOSTUNREACH);
	n->loss_ppm = 1000000;
	assert_true(conn_ping(n->t[0], 2, 9, NULL, 0, on_ping, &q) > 0);
	{
		int64_t id = conn_ping(n->t[0], 2, 10, NULL, 0, on_ping, &r);
		assert_true(id > 0);
		conn_ping_cancel(n->t[0], id);
	}
	assert_true(run_until(n, ping_done, &q, 1000));
	assert_int_equal(q.err, -ETIMEDOUT);
	assert_int_equal(r.calls, 0);
	assert_int_equal(stats(n->t[0]).ping_timeouts, 1);
	net_free(n);
}

static void test_malformed(void **state)
{
	net *n = net_new(NULL);
	uint8_t buf[128];
	proto_hdr h = { .version = 1, .flags = PROTO_ACK, .protocol = PROTO_STREAM,
			.src = pilot_addr_make(0, 1), .dst = pilot_addr_make(0, 2),
			.src_port = 1, .dst_port = 2 };
	int len = proto_packet_encode(&h, "abcd", 4, buf, sizeof(buf));
	conn_table_stats s;

	conn_input(n->t[1], 1, buf, 10);                     /* short */
	conn_input(n->t[1], 1, buf, (size_t)len - 1);        /* truncated payload */
	buf[len - 1] ^= 1;
	conn_input(n->t[1], 1, buf, (size_t)len);            /* bad CRC */
	buf[len - 1] ^= 1;
	conn_input(n->t[1], 3, buf, (size_t)len);            /* Src node 1 from node 3 */
	conn_input(n->t[1], 1, buf, (size_t)len);            /* no connection */
	h.version = 2;
	inject(n, 1, 1, &h, NULL, 0);                        /* bad version */
	h.version = 1;
	h.protocol = 9;
	inject(n, 1, 1, &h, NULL, 0);                        /* unknown protocol */
	h.protocol = PROTO_STREAM;
	h.dst = pilot_addr_make(0, 7);
	inject(n, 1, 1, &h, NULL, 0);                        /* not for us */
	h.protocol = PROTO_CONTROL;
	h.dst_port = 1;
	inject(n, 1, 1, &h, NULL, 0);                        /* control to port 1 */
	s = stats(n->t[1]);
	assert_int_equal(s.drop_short, 2);
	assert_int_equal(s.drop_bad_crc, 1);
	assert_int_equal(s.drop_spoofed, 1);
	assert_int_equal(s.drop_no_conn, 1);
	assert_int_equal(s.drop_bad_version, 1);
	assert_int_equal(s.drop_unknown_proto, 1);
	assert_int_equal(s.drop_not_local, 1);
	assert_int_equal(s.drop_control, 1);
	assert_int_equal(s.rx_packets, 9);
	assert_int_equal(n->ncap[1], 0);
	net_free(n);
}

static void test_shutdown_sends_fin(void **state)
{
	net *n = net_new(NULL);
	upper u = { 0 };
	cli k = { 0 }, k2 = { 0 };
	int err;

	assert_int_equal(conn_listen(n->t[1], 1000, &upper_listener, &u), 0);
	k.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 1000, &cli_cbs, &k, &err);
	k2.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 1000, &cli_cbs, &k2, &err);
	run_for(n, 30);
	assert_true(k.established && k2.established);
	assert_int_equal(stats(n->t[1]).active, 2);
	conn_table_shutdown(n->t[0]);
	assert_int_equal(count_sent(n, 0, PROTO_STREAM, PROTO_FIN), 2);
	assert_int_equal(stats(n->t[0]).active, 2); /* held handles stay valid */
	assert_null(conn_dial(n->t[0], pilot_addr_make(0, 2), 1000, &cli_cbs, &k, &err));
	assert_int_equal(err, -ESHUTDOWN);
	/* the peer sees the FINs: upper answers and closes */
	run_for(n, 50);
	assert_true(u.answered);
	net_free(n);
}

/* A handle its owner still holds across the table's shutdown (pilotd: the TUN
 * bridge's flows, released only in node_free after SIGTERM) stays a valid, dead
 * handle: no I/O, no callbacks, and releasing it later frees it. Before, the
 * shutdown freed it and the owner's conn_abort was a use-after-free. */
static void test_shutdown_keeps_held_handles(void **state)
{
	net *n = net_new(NULL);
	upper u = { 0 };
	cli k = { 0 }, k2 = { 0 };
	int err;

	assert_int_equal(conn_listen(n->t[1], 1000, &upper_listener, &u), 0);
	k.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 1000, &cli_cbs, &k, &err);
	k2.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 1000, &cli_cbs, &k2, &err);
	run_for(n, 30);
	assert_true(k.established && k2.established);
	assert_int_equal(conn_write(k2.c, "x", 1), 1); /* unacknowledged: RST */
	conn_table_shutdown(n->t[0]);
	assert_int_equal(stats(n->t[0]).active, 2);
	assert_int_equal(conn_write(k.c, "abc", 3), 0);
	assert_int_equal(conn_writable(k.c), 0);
	conn_abort(k.c);
	assert_int_equal(stats(n->t[0]).active, 1);
	conn_close(k2.c);
	assert_int_equal(stats(n->t[0]).active, 0);
	run_for(n, 50);
	net_free(n);
}

/* ---- the event observer (webhooks) ---- */

static void on_event(void *ctx, enum conn_event ev, const conn_event_info *e)
{
	endp *p = ctx;
	net *n = p->n;

	if (p->idx == 1 && n->nevs < sizeof(n->evs) / sizeof(n->evs[0])) {
		n->evs[n->nevs].ev = ev;
		n->evs[n->nevs].e = *e;
		n->nevs++;
	}
}

static size_t evcount(const net *n, enum conn_event ev, uint32_t id)
{
	size_t k = 0;

	for (size_t i = 0; i < n->nevs; i++)
		if (n->evs[i].ev == ev && (!id || n->evs[i].e.conn_id == id))
			k++;
	return k;
}

static void test_events(void **state)
{
	conn_config c = { 0 };
	upper u = { 0 };
	uint8_t rx[3];
	cli k = { .tx = (const uint8_t *)"abc", .ntx = 3, .shut_after = true, .rx = rx, .caprx = 3 };
	cli k2 = { 0 };
	dgrams d = { 0 };
	net *n;
	uint32_t id;
	int err;

	test_params(&c);
	c.syn_rate = 4; /* global burst 4: the flood below is limited */
	c.event = on_event;
	n = net_new(&c);
	assert_int_equal(conn_listen(n->t[1], 1000, &upper_listener, &u), 0);
	/* accepted, established, the peer's FIN: each once, with the 4-tuple */
	k.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 1000, &cli_cbs, &k, &err);
	assert_true(run_until(n, cli_eof, &k, 3000));
	assert_int_equal(evcount(n, CONN_EV_SYN_RECEIVED, 0), 1);
	id = n->evs[0].e.conn_id;
	assert_true(id > 0);
	assert_true(pilot_addr_eq(n->evs[0].e.remote, pilot_addr_make(0, 1)));
	assert_int_equal(n->evs[0].e.lport, 1000);
	assert_true(n->evs[0].e.rport >= PILOT_PORT_EPHEMERAL_MIN);
	assert_int_equal(evcount(n, CONN_EV_ESTABLISHED, id), 1);
	assert_int_equal(evcount(n, CONN_EV_FIN, id), 1);
	assert_int_equal(evcount(n, CONN_EV_RST, 0), 0);
	conn_close(k.c);
	assert_true(run_until(n, both_empty, n, 3000));
	assert_int_equal(evcount(n, CONN_EV_FIN, id), 1); /* not again at the end */
	/* the peer's RST */
	k2.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 1000, &cli_cbs, &k2, &err);
	assert_true(run_until(n, cli_established, &k2, 3000));
	run_for(n, 20);
	conn_abort(k2.c);
	run_for(n, 20);
	assert_int_equal(evcount(n, CONN_EV_SYN_RECEIVED, 0), 2);
	assert_int_equal(evcount(n, CONN_EV_RST, 0), 1);
	/* datagrams: one event each, with the payload size */
	assert_int_equal(conn_dgram_bind(n->t[1], 2000, on_dgram, &d), 0);
	assert_int_equal(conn_dgram_send(n->t[0], pilot_addr_make(0, 2), 2000, "hello", 5), 0);
	run_for(n, 20);
	assert_int_equal(evcount(n, CONN_EV_DATAGRAM, 0), 1);
	assert_int_equal(n->evs[n->nevs - 1].e.len, 5);
	assert_int_equal(n->evs[n->nevs - 1].e.lport, 2000);
	/* a SYN flood past the global limit: one event per dropped SYN */
	for (uint16_t i = 0; i < 10; i++)
		syn_from(n, 3, (uint16_t)(50000 + i), 1000);
	assert_int_equal(evcount(n, CONN_EV_SYN_RATE_LIMITED, 0), stats(n->t[1]).drop_syn_rate);
	assert_true(stats(n->t[1]).drop_syn_rate >= 6);
	net_free(n);
}

static void test_table_free_with_open_conns(void **state)
{
	net *n = net_new(NULL);
	cli k = { 0 };
	pingres p = { 0 };
	int err;

	assert_int_equal(conn_echo_enable(n->t[1]), 0);
	k.c = conn_dial(n->t[0], pilot_addr_make(0, 2), 7, &cli_cbs, &k, &err);
	run_for(n, 20);
	assert_true(conn_ping(n->t[0], 2, 1, NULL, 0, on_ping, &p) > 0);
	conn_table_free(n->t[0]);
	n->t[0] = NULL;
	assert_int_equal(p.err, -ECANCELED);
	conn_table_free(n->t[1]);
	n->t[1] = NULL;
	net_free(n);
}


/* Pings need admission (a private node does not tell strangers it is up);
 * keepalives, path probes and pongs do not. */
static void test_ping_admission(void **state)
{
	conn_config c = { 0 };
	pingres p = { 0 }, q = { 0 }, r = { 0 };
	proto_hdr h = { .version = 1, .protocol = PROTO_CONTROL, .src = pilot_addr_make(0, 1),
			.dst = pilot_addr_make(0, 0), .src_port = 0, .dst_port = 0 };
	net *n;

	test_params(&c);
	c.ping_timeout_ms = 100;
	n = net_new(&c);
	n->refuse_all = true; /* table 2 trusts nobody */
	assert_true(conn_ping(n->t[0], 2, 1, "who", 3, on_ping, &p) > 0);
	assert_true(run_until(n, ping_done, &p, 1000));
	assert_int_equal(p.err, -ETIMEDOUT);
	assert_int_equal(stats(n->t[1]).pings_answered, 0);
	assert_int_equal(stats(n->t[1]).drop_refused, 1);
	assert_int_equal(n->admit_proto, PROTO_CONTROL);
	assert_int_equal(n->admit_port, PILOT_PORT_PING);
	assert_int_equal(n->ncap[1], 0); /* not a byte back */
	/* tunnel keepalive and path probe (port 0 -> 0): consumed / answered anyway */
	inject(n, 1, 1, &h, NULL, 0);
	assert_int_equal(stats(n->t[1]).keepalives_rcvd, 1);
	inject(n, 1, 1, &h, "pathprobe.v1", 12);
	assert_int_equal(stats(n->t[1]).pings_answered, 1);
	assert_int_equal(stats(n->t[1]).drop_refused, 1);
	/* the refusing side's own pings still get their pongs */
	assert_true(conn_ping(n->t[1], 1, 5, "mine", 4, on_ping, &q) > 0);
	assert_true(run_until(n, ping_done, &q, 1000));
	assert_int_equal(q.err, 0);
	assert_string_equal(q.payload, "mine");
	assert_int_equal(stats(n->t[1]).pongs_matched, 1);
	/* trusted again: answered */
	n->refuse_all = false;
	assert_true(conn_ping(n->t[0], 2, 2, "again", 5, on_ping, &r) > 0);
	assert_true(run_until(n, ping_done, &r, 1000));
	assert_int_equal(r.err, 0);
	assert_string_equal(r.payload, "again");
	net_free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_round_trip),
		cmocka_unit_test(test_transfer_1mb),
		cmocka_unit_test(test_transfer_1mb_lossy),
		cmocka_unit_test(test_concurrent_streams),
		cmocka_unit_test(test_rst_closed_port),
		cmocka_unit_test(test_simultaneous_open),
		cmocka_unit_test(test_half_close),
		cmocka_unit_test(test_admission_refused),
		cmocka_unit_test(test_syn_rate_limit),
		cmocka_unit_test(test_syn_budget),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_ephemeral_exhaustion),
		cmocka_unit_test(test_time_wait_reuse),
		cmocka_unit_test(test_datagrams),
		cmocka_unit_test(test_listen_default),
		cmocka_unit_test(test_ping_pong),
		cmocka_unit_test(test_ping_admission),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_shutdown_sends_fin),
		cmocka_unit_test(test_shutdown_keeps_held_handles),
		cmocka_unit_test(test_table_free_with_open_conns),
		cmocka_unit_test(test_events),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
