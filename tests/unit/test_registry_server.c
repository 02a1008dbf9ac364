/* The registry TCP server's own limits against hostile clients (issue 12 §5):
 * what the per-source connection cap counts (an IPv4 address, an IPv6 /64) and
 * the global cap on memory held by unfinished frames. The server runs in-process
 * on 127.0.0.1; the per-/64 cap with real IPv6 sources is in
 * tests/integration/rendezvous_caps.sh (it needs a namespace). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/jsonwire.h"
#include "lib/loop.h"
#include "rendezvous/registry.h"
#include "rendezvous/server.h"

static void test_conn_key(void **state)
{
	struct sockaddr_in s4 = { .sin_family = AF_INET };
	struct sockaddr_in6 a = { .sin6_family = AF_INET6 }, b = a, m = a;
	uint8_t k1[16], k2[16], k3[16];

	inet_pton(AF_INET, "198.18.0.7", &s4.sin_addr);
	inet_pton(AF_INET6, "::ffff:198.18.0.7", &m.sin6_addr);
	assert_false(rdv_conn_key((struct sockaddr *)&s4, k1));
	assert_false(rdv_conn_key((struct sockaddr *)&m, k2));
	assert_memory_equal(k1, k2, 16); /* dual-stack listener: the same client */
	inet_pton(AF_INET6, "2001:db8:1:2::1", &a.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:2:ffff:1234:5678:9abc", &b.sin6_addr);
	assert_true(rdv_conn_key((struct sockaddr *)&a, k1));
	assert_true(rdv_conn_key((struct sockaddr *)&b, k2));
	assert_memory_equal(k1, k2, 16); /* one /64 */
	inet_pton(AF_INET6, "2001:db8:1:3::1", &b.sin6_addr);
	rdv_conn_key((struct sockaddr *)&b, k3);
	assert_memory_not_equal(k1, k3, 16);
	inet_pton(AF_INET, "198.18.0.8", &s4.sin_addr);
	rdv_conn_key((struct sockaddr *)&s4, k3);
	assert_memory_not_equal(k2, k3, 16);
}

static int dial(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void pump(pilot_loop *l, int ms)
{
	uint64_t end = pilot_now_ms() + (uint64_t)ms;

	while (pilot_now_ms() < end)
		pilot_loop_run_once(l, 5);
}

/* Many clients each send the start of a large frame and stop: together they may
 * hold no more than max_partial_bytes; the ones that would pass it are closed,
 * counted, and a well-behaved client is still served. */
static void test_partial_frame_memory(void **state)
{
	pilot_loop *l = pilot_loop_new();
	reg_config rc = { .ratelimit_disabled = true };
	char err[256] = "";
	registry *reg = reg_open(&rc, err, sizeof(err));
	rdv_server_config sc = { .addr = "127.0.0.1:0", .max_partial_bytes = 512 * 1024 };
	rdv_server *s;
	rdv_server_stats st;
	static uint8_t junk[200 * 1024];
	int fds[16], port, closed = 0;
	uint64_t peak = 0;

	assert_non_null(reg);
	sc.reg = reg;
	assert_non_null(s = rdv_server_new(l, &sc, err, sizeof(err)));
	port = atoi(strrchr(rdv_server_addr(s), ':') + 1);
	memset(junk, ' ', sizeof(junk));
	junk[0] = 0x00, junk[1] = 0x0f, junk[2] = 0x00, junk[3] = 0x00; /* a 983040-byte frame */
	for (int i = 0; i < 16; i++) {
		fds[i] = dial(port);
		assert_int_equal(send(fds[i], junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
		for (int k = 0; k < 20; k++) {
			pilot_loop_run_once(l, 2);
			rdv_server_get_stats(s, &st);
			if (st.in_bytes > peak)
				peak = st.in_bytes;
			assert_true(st.in_bytes <= 512 * 1024);
		}
	}
	pump(l, 100);
	rdv_server_get_stats(s, &st);
	fprintf(stderr, "# 16 clients x 200 KiB of a 960 KiB frame: peak %llu bytes held, %llu closed\n",
		(unsigned long long)peak, (unsigned long long)st.partial_closed);
	assert_true(st.partial_closed >= 12);
	for (int i = 0; i < 16; i++) {
		uint8_t b;
		ssize_t n = recv(fds[i], &b, 1, MSG_DONTWAIT);

		closed += n == 0 || (n < 0 && errno == ECONNRESET);
		close(fds[i]);
	}
	assert_int_equal(closed, (int)st.partial_closed);
	pump(l, 50);
	/* a normal request still gets its answer */
	{
		const char *q = "{\"type\":\"list_networks\"}";
		uint8_t hdr[4] = { 0, 0, 0, (uint8_t)strlen(q) }, rep[4096];
		int fd = dial(port);
		ssize_t n = 0;

		assert_int_equal(send(fd, hdr, 4, 0), 4);
		assert_int_equal(send(fd, q, strlen(q), 0), (ssize_t)strlen(q));
		for (int i = 0; i < 200 && n <= 0; i++) {
			pilot_loop_run_once(l, 5);
			n = recv(fd, rep, sizeof(rep), MSG_DONTWAIT);
		}
		assert_true(n > 4);
		assert_non_null(memmem(rep, (size_t)n, "list_networks_ok", 16));
		close(fd);
	}
	pump(l, 50);
	rdv_server_get_stats(s, &st);
	assert_true(st.in_bytes <= 4096 * st.connections);
	rdv_server_free(s);
	reg_close(reg);
	pilot_loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conn_key),
		cmocka_unit_test(test_partial_frame_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
