/* Fuzz stream/stream.c: an established pair; the input is a sequence of segments
 * (flags, seq/ack deltas, window, payload) injected into one side, interleaved with
 * timer ticks, while the engines' own packets are exchanged. Must never crash, leak
 * or grow memory without bound. The buffers are lazy: side 0 releases them after
 * the default idle time, side 1 as soon as they are empty (release_us 0), so growth,
 * re-layout with out-of-order data and release are all exercised; at the end the
 * engine-wide accounting must be back where it started. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream/stream.h"
#include "lib/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define QMAX 256

typedef struct fpkt {
	proto_hdr h;
	uint8_t pl[2048];
	size_t n;
} fpkt;

typedef struct fz {
	stream_conn *c[2];
	fpkt q[2][QMAX];
	int nq[2];
	uint64_t now;
} fz;

static fz F;

static void fx(void *ctx, stream_conn *c, const proto_hdr *h, const uint8_t *pl, size_t n)
{
	int to = (int)(intptr_t)ctx ^ 1;
	fpkt *p;

	(void)c;
	if (F.nq[to] >= QMAX || n > sizeof(p->pl))
		return;
	p = &F.q[to][F.nq[to]++];
	p->h = *h;
	if (n)
		memcpy(p->pl, pl, n);
	p->n = n;
}

static void frd(void *ctx, stream_conn *c)
{
	uint8_t buf[4096];

	(void)ctx;
	while (stream_read(c, buf, sizeof(buf), F.now) > 0)
		;
}

static const stream_cbs fcbs = { fx, frd, NULL, NULL };

static void exchange(void)
{
	static fpkt batch[QMAX];

	for (int round = 0; round < 8; round++) {
		for (int to = 0; to < 2; to++) {
			int n = F.nq[to];
			memcpy(batch, F.q[to], (size_t)n * sizeof(fpkt));
			F.nq[to] = 0;
			for (int i = 0; i < n; i++) {
				if (F.c[to])
					stream_input(F.c[to], &batch[i].h, batch[i].pl, batch[i].n, F.now);
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	stream_params p;
	pilot_addr a = { 0, 1 }, b = { 0, 2 };
	size_t off = 0;
	uint8_t junk[3000];

	size_t mem0 = stream_mem_in_use();

	memset(&F, 0, sizeof(F));
	F.now = 1000000;
	stream_params_default(&p);
	p.sndbuf = p.rcvbuf = 64 * 1024;
	F.c[0] = stream_dial(&p, a, 49152, b, 1000, &fcbs, (void *)(intptr_t)0, F.now);
	p.release_us = 0;
	if (!F.c[0])
		return 0;
	/* the SYN sits in q[1]: accept it */
	if (F.nq[1] == 1) {
		F.nq[1] = 0;
		F.c[1] = stream_accept(&p, &F.q[1][0].h, &fcbs, (void *)(intptr_t)1, F.now);
	}
	exchange();
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 131);
	stream_write(F.c[0], junk, sizeof(junk), F.now);
	stream_write(F.c[1], junk, 1000, F.now);
	exchange();
	/* segment: [side flags][seq delta 4][ack delta 4][window 2][len 1][time 1][payload] */
	while (off + 13 <= size) {
		const uint8_t *d = data + off;
		int side = d[0] >> 7, kind = (d[0] >> 4) & 7;
		proto_hdr h = { 0 };
		size_t n = d[11];
		stream_conn *c = F.c[side];

		off += 13;
		if (n > size - off)
			n = size - off;
		F.now += (uint64_t)d[12] * 1000;
		if (!c)
			break;
		h.version = 1;
		h.flags = d[0] & 0x0F;
		h.protocol = kind == 7 ? PROTO_DATAGRAM : PROTO_STREAM;
		h.src = side ? a : b;
		h.dst = side ? b : a;
		h.src_port = side ? 49152 : 1000;
		h.dst_port = side ? 1000 : 49152;
		/* seq/ack near the live values most of the time, anywhere otherwise */
		h.seq = proto_get32(d + 1) + (kind < 4 ? 1u + (uint32_t)(kind * 1368) : 0);
		h.ack = proto_get32(d + 5) + (kind < 6 ? 1u : 0);
		if (kind < 4) {
			h.seq = (proto_get32(d + 1) & 0xFFFF) + 1;
			h.ack = (proto_get32(d + 5) & 0x1FFF) + 1;
		}
		h.window = proto_get16(d + 9);
		h.payload_len = (uint16_t)n;
		stream_input(c, &h, data + off, n, F.now);
		off += n;
		if (d[12] & 1)
			stream_on_timer(c, F.now);
		if (d[12] == 0xFF)
			stream_shutdown_write(F.c[side ^ 1], F.now);
		if (d[12] == 0xFE)
			stream_write(c, junk, sizeof(junk), F.now);
		exchange();
	}
	/* drain: let timers run for a while */
	for (int i = 0; i < 50; i++) {
		F.now += 200000;
		for (int s = 0; s < 2; s++)
			if (F.c[s] && stream_next_deadline(F.c[s]) <= F.now)
				stream_on_timer(F.c[s], F.now);
		exchange();
	}
	for (int s = 0; s < 2; s++)
		if (F.c[s] && stream_mem(F.c[s]) > 2 * 64 * 1024 + 64 * 1024)
			abort(); /* more than both rings, the table and the struct */
	stream_free(F.c[0]);
	stream_free(F.c[1]);
	if (stream_mem_in_use() != mem0)
		abort();
	return 0;
}
