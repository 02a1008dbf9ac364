/* daemon/udp.c: a sendmmsg batch (grouped for UDP GSO where the kernel takes it)
 * arrives as exactly the datagrams queued: same boundaries, same bytes, same order
 * per destination, also when sizes vary and destinations alternate. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PILOT_UDP_INTERNAL
#include "daemon/transport.h"
#include "lib/loop.h"

#define NDG 200

static int sink(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0), v = 8 << 20;

	assert_true(fd >= 0);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static void fill(uint8_t *p, size_t len, unsigned k)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(k * 31u + i);
}

/* Sizes: runs of equal sizes (GSO groups), a shorter one ending a run, a longer
 * one starting a new run, a few single bytes and one large datagram. */
static size_t size_of(unsigned k)
{
	if (k % 50 == 49)
		return 1;
	if (k == 77)
		return 9000;
	if (k % 17 == 16)
		return 700;
	return k < 100 ? 1400 : 1200;
}

static void test_batch_boundaries(void **state)
{
	pilot_loop *l = pilot_loop_new();
	char err[256];
	transport *t;
	uint16_t p1, p2;
	int s1 = sink(&p1), s2 = sink(&p2);
	static uint8_t data[NDG][9000], got[65536];
	transport_dgram dg[NDG];
	transport_ep e1, e2;
	transport_stats st;
	char a1[64], a2[64];
	unsigned next1 = 0, next2 = 0, seen = 0;

	(void)state;
	assert_non_null(l);
	t = udp_transport_new(l, "127.0.0.1:0", NULL, NULL, err, sizeof(err));
	assert_non_null(t);
	snprintf(a1, sizeof(a1), "127.0.0.1:%u", p1);
	snprintf(a2, sizeof(a2), "127.0.0.1:%u", p2);
	assert_int_equal(transport_ep_parse(a1, &e1), 0);
	assert_int_equal(transport_ep_parse(a2, &e2), 0);
	for (unsigned k = 0; k < NDG; k++) {
		size_t len = size_of(k);
		fill(data[k], len, k);
		/* mostly to the first sink, every 23rd to the second: splits the runs */
		dg[k] = (transport_dgram){ .data = data[k], .len = len, .ep = k % 23 == 22 ? e2 : e1 };
	}
	assert_int_equal(transport_send(t, dg, NDG), NDG);
	transport_flush(t);
	for (int round = 0; round < 200 && seen < NDG; round++) {
		struct pollfd pf[2] = { { .fd = s1, .events = POLLIN }, { .fd = s2, .events = POLLIN } };
		assert_true(poll(pf, 2, 50) >= 0);
		for (int i = 0; i < 2; i++) {
			ssize_t n;
			while ((n = recv(pf[i].fd, got, sizeof(got), MSG_DONTWAIT)) >= 0) {
				unsigned *next = i == 0 ? &next1 : &next2, k = *next;
				/* the next datagram queued for this destination */
				while (k < NDG && (k % 23 == 22) != (i == 1))
					k++;
				assert_true(k < NDG);
				assert_int_equal((size_t)n, size_of(k));
				assert_memory_equal(got, data[k], (size_t)n);
				*next = k + 1;
				seen++;
			}
			assert_int_equal(errno, EAGAIN);
		}
		pilot_loop_run_once(l, 0); /* EPOLLOUT, if the socket filled */
		transport_flush(t);
	}
	assert_int_equal(seen, NDG);
	transport_get_stats(t, &st);
	assert_int_equal(st.tx_dgrams, NDG);
	assert_int_equal(st.tx_errors, 0);
	transport_close(t);
	pilot_loop_free(l);
	close(s1);
	close(s2);
}

/* A GSO group the kernel refuses for its destination (here: broadcast without
 * SO_BROADCAST, EACCES, or no route) is that destination's problem: its datagrams
 * are counted as errors and GSO stays on for everyone else. */
static void test_gso_kept_on_destination_error(void **state)
{
	pilot_loop *l = pilot_loop_new();
	char err[256], a1[64];
	transport *t;
	uint16_t p1;
	int s1 = sink(&p1);
	static uint8_t data[10][1000], got[2048];
	transport_dgram dg[10];
	transport_ep bc, e1;
	transport_stats st;
	unsigned seen = 0;

	(void)state;
	assert_non_null(l);
	t = udp_transport_new(l, "0.0.0.0:0", NULL, NULL, err, sizeof(err));
	assert_non_null(t);
	assert_int_equal(transport_ep_parse("255.255.255.255:9", &bc), 0);
	for (unsigned k = 0; k < 10; k++) {
		fill(data[k], sizeof(data[k]), k);
		dg[k] = (transport_dgram){ .data = data[k], .len = sizeof(data[k]), .ep = bc };
	}
	assert_int_equal(transport_send(t, dg, 10), 10);
	transport_flush(t);
	transport_get_stats(t, &st);
	assert_int_equal(st.tx_errors, 10);
	assert_true(udp_transport_gso_on(t));
	/* and the next batch still goes out, in one group */
	snprintf(a1, sizeof(a1), "127.0.0.1:%u", p1);
	assert_int_equal(transport_ep_parse(a1, &e1), 0);
	for (unsigned k = 0; k < 10; k++)
		dg[k].ep = e1;
	assert_int_equal(transport_send(t, dg, 10), 10);
	transport_flush(t);
	for (int round = 0; round < 100 && seen < 10; round++) {
		struct pollfd pf = { .fd = s1, .events = POLLIN };
		ssize_t n;

		assert_true(poll(&pf, 1, 50) >= 0);
		while ((n = recv(s1, got, sizeof(got), MSG_DONTWAIT)) >= 0) {
			assert_int_equal((size_t)n, sizeof(data[seen]));
			assert_memory_equal(got, data[seen], (size_t)n);
			seen++;
		}
	}
	assert_int_equal(seen, 10);
	transport_get_stats(t, &st);
	assert_int_equal(st.tx_dgrams, 10);
	assert_true(udp_transport_gso_on(t));
	transport_close(t);
	pilot_loop_free(l);
	close(s1);
}

/* UDP GRO on receive: a GSO batch over loopback reaches the receiving transport
 * as runs (one recvmmsg entry each), cut back into exactly the datagrams sent, in
 * order, with their bytes; with GRO off, the same datagrams one per entry. */
typedef struct rx_log {
	unsigned n;
	bool bad;
	size_t len[NDG];
	uint8_t first[NDG], last[NDG];
} rx_log;

static void rx_cb(void *ctx, transport_dgram *dg, size_t n)
{
	rx_log *r = ctx;

	for (size_t i = 0; i < n; i++) {
		if (r->n >= NDG || dg[i].cap < dg[i].len) {
			r->bad = true;
			continue;
		}
		r->len[r->n] = dg[i].len;
		r->first[r->n] = dg[i].data[0];
		r->last[r->n] = dg[i].data[dg[i].len - 1];
		r->n++;
	}
}

static void gro_round(bool gro)
{
	pilot_loop *l = pilot_loop_new();
	char err[256];
	static uint8_t data[NDG][9000];
	static rx_log r;
	transport_dgram dg[NDG];
	transport *tx, *rx;
	transport_ep ep;
	transport_stats st;

	memset(&r, 0, sizeof(r));
	assert_non_null(l);
	tx = udp_transport_new(l, "127.0.0.1:0", NULL, NULL, err, sizeof(err));
	rx = udp_transport_new(l, "127.0.0.1:0", rx_cb, &r, err, sizeof(err));
	assert_non_null(tx);
	assert_non_null(rx);
	if (!gro)
		udp_transport_no_gro(rx);
	assert_int_equal(transport_local_ep(rx, &ep), 0);
	for (unsigned k = 0; k < NDG; k++) {
		size_t len = size_of(k);

		fill(data[k], len, k);
		dg[k] = (transport_dgram){ .data = data[k], .len = len, .ep = ep };
	}
	assert_int_equal(transport_send(tx, dg, NDG), NDG);
	transport_flush(tx);
	for (int round = 0; round < 200 && r.n < NDG; round++) {
		pilot_loop_run_once(l, 20);
		transport_flush(tx);
	}
	assert_false(r.bad);
	assert_int_equal(r.n, NDG);
	for (unsigned k = 0; k < NDG; k++) {
		assert_int_equal(r.len[k], size_of(k));
		assert_int_equal(r.first[k], data[k][0]);
		assert_int_equal(r.last[k], data[k][size_of(k) - 1]);
	}
	transport_get_stats(rx, &st);
	assert_int_equal(st.rx_dgrams, NDG);
	if (gro && udp_transport_gso_on(tx))
		assert_true(st.rx_gro_runs > 0);
	if (!gro)
		assert_int_equal(st.rx_gro_runs, 0);
	transport_close(tx);
	transport_close(rx);
	pilot_loop_free(l);
}

static void test_gro_runs(void **state)
{
	(void)state;
	gro_round(true);
	gro_round(false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batch_boundaries),
		cmocka_unit_test(test_gso_kept_on_destination_error),
		cmocka_unit_test(test_gro_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
