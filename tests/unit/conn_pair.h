/* Test helper (services tests only): two connection tables, node 1 and node 2,
 * joined back to back on a real pilot_loop (the wiring of test_conn.c: packets
 * queued and delivered by a 0 ms timer, never recursively), plus a raw stream
 * client that writes a buffer and collects what comes back. */
#ifndef PILOT_TEST_CONN_PAIR_H
#define PILOT_TEST_CONN_PAIR_H

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "stream/conn.h"
#include "lib/loop.h"
#include "lib/proto.h"

#define CP_HEADROOM 29

typedef struct cp_pkt {
	struct cp_pkt *next;
	int to;
	uint32_t from;
	size_t len;
	uint8_t data[];
} cp_pkt;

typedef struct cp_net cp_net;

typedef struct cp_endp {
	cp_net *n;
	int idx;
} cp_endp;

struct cp_net {
	pilot_loop *loop;
	conn_table *t[2];
	cp_endp ep[2];
	cp_pkt *head, *tail;
	uint64_t timer;
};

static inline int64_t cp_drain(pilot_loop *l, uint64_t id, void *arg)
{
	cp_net *n = arg;
	cp_pkt *q = n->head;

	n->timer = 0;
	n->head = n->tail = NULL;
	while (q) {
		cp_pkt *next = q->next;
		if (n->t[q->to])
			conn_input(n->t[q->to], q->from, q->data, q->len);
		free(q);
		q = next;
	}
	return 0;
}

static inline int cp_send(void *ctx, uint32_t node, uint8_t *pkt, size_t len)
{
	cp_endp *e = ctx;
	cp_net *n = e->n;
	cp_pkt *q;

	if (node != 1 && node != 2)
		return -EHOSTUNREACH;
	q = malloc(sizeof(*q) + len);
	if (!q)
		return -ENOMEM;
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
		n->timer = pilot_loop_add_timer(n->loop, 0, cp_drain, n);
	return 0;
}

/* Small buffers: every conn reserves sndbuf + rcvbuf. */
static inline cp_net *cp_new(uint32_t bufsize)
{
	cp_net *n = calloc(1, sizeof(*n));

	if (!n)
		abort();
	n->loop = pilot_loop_new();
	for (int i = 0; i < 2; i++) {
		conn_config c = { 0 };
		stream_params_default(&c.stream);
		c.stream.sndbuf = c.stream.rcvbuf = bufsize;
		c.stream.time_wait_us = 100000;
		c.stream.syn_rto_us = 50000;
		c.stream.syn_tries = 3;
		c.syn_rate = c.syn_rate_peer = c.syn_burst_peer = 10000;
		n->ep[i] = (cp_endp){ n, i };
		c.loop = n->loop;
		c.headroom = CP_HEADROOM;
		c.ctx = &n->ep[i];
		c.send_packet = cp_send;
		n->t[i] = conn_table_new(&c);
		if (!n->t[i])
			abort();
		conn_set_local_addr(n->t[i], pilot_addr_make(0, (uint32_t)i + 1));
	}
	return n;
}

static inline void cp_free(cp_net *n)
{
	conn_table_free(n->t[0]);
	conn_table_free(n->t[1]);
	n->t[0] = n->t[1] = NULL;
	cp_drain(n->loop, 0, n);
	if (n->timer)
		pilot_loop_del_timer(n->loop, n->timer);
	pilot_loop_free(n->loop);
	free(n);
}

typedef bool (*cp_pred)(void *arg);

static inline bool cp_run_until(cp_net *n, cp_pred p, void *arg, int ms)
{
	uint64_t end = pilot_now_ms() + (uint64_t)ms;

	while (!p(arg)) {
		if (pilot_now_ms() > end)
			return false;
		pilot_loop_run_once(n->loop, 5);
	}
	return true;
}

static inline void cp_run_for(cp_net *n, int ms)
{
	uint64_t end = pilot_now_ms() + (uint64_t)ms;

	while (pilot_now_ms() < end)
		pilot_loop_run_once(n->loop, 5);
}

/* ---- a raw client ------------------------------------------------------------------ */

typedef struct cp_cli {
	conn *c;
	const uint8_t *tx;
	size_t ntx, sent;
	uint8_t *rx;
	size_t nrx, caprx;
	bool established, eof, closed, noread;
	int err;
} cp_cli;

static inline void cp_cli_pump(void *arg, conn *c)
{
	cp_cli *k = arg;

	while (k->sent < k->ntx) {
		size_t w = conn_write(c, k->tx + k->sent, k->ntx - k->sent);
		if (!w)
			return;
		k->sent += w;
	}
}

static inline void cp_cli_read(void *arg, conn *c)
{
	cp_cli *k = arg;
	size_t n;

	if (k->noread)
		return;
	for (;;) {
		if (k->nrx == k->caprx) {
			k->caprx = k->caprx ? k->caprx * 2 : 4096;
			k->rx = realloc(k->rx, k->caprx);
		}
		n = conn_read(c, k->rx + k->nrx, k->caprx - k->nrx);
		if (!n)
			break;
		k->nrx += n;
	}
	if (conn_eof(c))
		k->eof = true;
}

static inline void cp_cli_state(void *arg, conn *c, enum stream_state old, enum stream_state now,
				int err)
{
	cp_cli *k = arg;

	if (now == STREAM_ESTABLISHED) {
		k->established = true;
		cp_cli_pump(arg, c);
	}
	if (now == STREAM_CLOSED) {
		k->closed = true;
		k->err = err;
	}
}

static const conn_cbs cp_cli_cbs = { cp_cli_read, cp_cli_pump, cp_cli_state };

/* Dial from table 0 (node 1) to node 2:port and send tx (kept by the caller). */
static inline bool cp_cli_dial(cp_net *n, cp_cli *k, uint16_t port, const uint8_t *tx, size_t ntx)
{
	int err = 0;

	memset(k, 0, sizeof(*k));
	k->tx = tx;
	k->ntx = ntx;
	k->c = conn_dial(n->t[0], pilot_addr_make(0, 2), port, &cp_cli_cbs, k, &err);
	return k->c != NULL;
}

/* Append more to send (tx must stay valid until sent). */
static inline void cp_cli_send(cp_cli *k, const uint8_t *tx, size_t ntx)
{
	k->tx = tx;
	k->ntx = ntx;
	k->sent = 0;
	if (k->established)
		cp_cli_pump(k, k->c);
}

static inline void cp_cli_done(cp_cli *k)
{
	if (k->c)
		conn_close(k->c);
	k->c = NULL;
	free(k->rx);
	k->rx = NULL;
}

#endif
