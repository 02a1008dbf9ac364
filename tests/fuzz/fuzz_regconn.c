/* libFuzzer: the registry's connection pump (rendezvous/server.c: reading,
 * framing and reassembly of a client's bytes, the per-pump frame budget, reply
 * back-pressure, replication subscribe) on the real event loop. Each input is one
 * client connection: one end of a socketpair is adopted by the server as if
 * accepted from 198.18.0.9, the input is written to the other end in chunks with
 * loop turns in between, replies are read and dropped, then the client closes
 * and the server must have closed its end too.
 *
 * First byte: bit 0 set = the rest is the raw byte stream; clear = the rest is
 * newline-separated JSON requests, each framed here (so the JSON gets mutated).
 * Bits 1-7 = write chunk size (0 = all at once). The registry keeps its state
 * across inputs and is recreated every 2048 inputs to bound memory. */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "tests/fuzz/fuzz_frame.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "rendezvous/registry.h"
#include "rendezvous/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pilot_loop *loop;
static registry *reg;
static rdv_server *srv;
static unsigned runs;

static void reset(void)
{
	reg_config rc = { 0 };
	rdv_server_config sc = { 0 };
	char err[256];

	rdv_server_free(srv);
	reg_close(reg);
	if (!loop) {
		pilot_log_init("fuzz", (enum pilot_log_level)(PILOT_LOG_ERROR + 1), PILOT_LOG_TEXT);
		loop = pilot_loop_new();
	}
	reg = reg_open(&rc, err, sizeof(err));
	sc.addr = "127.0.0.1:0";
	sc.reg = reg;
	sc.replication_token = "tok";
	srv = reg ? rdv_server_new(loop, &sc, err, sizeof(err)) : NULL;
	if (!loop || !srv) {
		fprintf(stderr, "setup: %s\n", err);
		abort();
	}
}

/* Turn the loop without sleeping and drain whatever the server wrote. */
static void turn(int fd)
{
	uint8_t sink[65536];

	for (int i = 0; i < 4; i++) {
		pilot_loop_run_once(loop, 0);
		while (read(fd, sink, sizeof(sink)) > 0)
			;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(40000) };
	rdv_server_stats st;
	uint8_t *buf;
	size_t len, step, off = 0;
	int sv[2], spins = 0;

	if (!srv || ++runs % 2048 == 0)
		reset();
	if (size < 1 || size > 65536)
		return 0;
	step = data[0] >> 1;
	if (data[0] & 1) {
		len = size - 1;
		buf = malloc(len + 1);
		if (buf)
			memcpy(buf, data + 1, len);
	} else {
		buf = frame_lines(data + 1, size - 1, &len);
	}
	if (!buf)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	inet_pton(AF_INET, "198.18.0.9", &sa.sin_addr);
	rdv_server_adopt(srv, sv[0], (const struct sockaddr *)&sa);
	while (off < len && spins++ < 4096) {
		size_t n = step && step < len - off ? step : len - off;
		ssize_t w = send(sv[1], buf + off, n, MSG_NOSIGNAL);

		if (w < 0 && errno != EAGAIN)
			break; /* the server closed the connection (bad frame) */
		if (w > 0)
			off += (size_t)w;
		turn(sv[1]);
	}
	free(buf);
	shutdown(sv[1], SHUT_WR);
	for (int i = 0; i < 64; i++) {
		rdv_server_get_stats(srv, &st);
		if (st.connections == 0)
			break;
		turn(sv[1]);
	}
	close(sv[1]);
	rdv_server_get_stats(srv, &st);
	if (st.connections != 0) {
		/* Replies not read by a closed client: the next turn must close it. */
		for (int i = 0; i < 64 && st.connections; i++) {
			pilot_loop_run_once(loop, 0);
			rdv_server_get_stats(srv, &st);
		}
		if (st.connections != 0)
			__builtin_trap();
	}
	return 0;
}
