/* Fuzz stream/conn.c: arbitrary packets into conn_input of a table (node 1) with an
 * echo service (7), a discarding listener (80), a datagram binding (53) and
 * admission refusing port 99, driven by a fake clock (no loop). The input is a
 * sequence of records:
 *   op & 7 == 0: packet, CRC fixed up (so the fuzzer gets past the checksum)
 *   op & 7 == 1: packet as is
 *   op & 7 == 2: answer the table's last packet (swapped addresses and ports, Seq =
 *                its Ack, Ack = its Seq + length) with the given flags and payload
 *   op & 7 == 3: advance the clock by a 16-bit number of ms and run the timers
 *   op & 7 == 4: dial / write / shutdown / close our own connections
 *   op & 7 == 5: datagram send, ping
 * followed by a 16-bit big-endian length and that many bytes. The sender node is
 * 1 + (op >> 3 & 3); with op & 0x20 the packet's Src node is forced to it.
 * Must never crash, leak, or hold more connections than the caps allow. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream/conn.h"
#include "lib/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEADROOM 29
#define MAXOWN 8

static uint64_t now_us;
static uint8_t last[PROTO_MAX_PACKET];
static size_t last_len;
static conn *own[MAXOWN];

static uint64_t fclock(void *ctx)
{
	return now_us;
}

static int fsend(void *ctx, uint32_t node, uint8_t *pkt, size_t len)
{
	proto_hdr h;

	memset(pkt - HEADROOM, 0, HEADROOM);
	memset(pkt + len, 0, 16);
	if (proto_packet_decode(pkt, len, 1, &h, NULL) != 0)
		abort(); /* everything we send must decode */
	memcpy(last, pkt, len);
	last_len = len;
	return node == 9 ? -EHOSTUNREACH : 0;
}

static bool fadmit(void *ctx, uint32_t from, uint16_t port, int proto)
{
	return port != 99;
}

static void own_forget(conn *c)
{
	for (int i = 0; i < MAXOWN; i++)
		if (own[i] == c)
			own[i] = NULL;
}

static void own_read(void *arg, conn *c)
{
	uint8_t buf[4096];

	while (conn_read(c, buf, sizeof(buf)) > 0)
		;
}

static void own_state(void *arg, conn *c, enum stream_state o, enum stream_state n, int err)
{
	if (n == STREAM_CLOSED) {
		own_forget(c);
		conn_close(c);
	}
}

static const conn_cbs own_cbs = { own_read, NULL, own_state };

static void sink_read(void *arg, conn *c)
{
	own_read(arg, c);
	if (conn_eof(c))
		conn_close(c);
}

static const conn_cbs sink_cbs = { sink_read, NULL, own_state };

static bool sink_accept(void *arg, conn *c)
{
	conn_set_cbs(c, &sink_cbs, NULL);
	return conn_id(c) % 5 != 0; /* refuse some: RST after the SYN-ACK */
}

static const conn_listener_cbs sink_listener = { sink_accept };

static void on_dgram(void *arg, pilot_addr src, uint16_t sport, uint16_t dport,
		     const uint8_t *d, size_t len)
{
	if (!len)
		abort(); /* empty datagrams are dropped before */
}

static void on_ping(void *arg, int err, uint32_t rtt, const uint8_t *pl, size_t len)
{
}

static void run_timers(conn_table *t)
{
	for (int i = 0; i < 64 && conn_table_next_deadline(t) <= now_us; i++)
		conn_table_tick(t);
}

static void fix_crc(uint8_t *p, size_t len)
{
	proto_hdr h;

	if (proto_hdr_decode(p, len, &h) < 0 || len - PROTO_HDR_SIZE < h.payload_len)
		return;
	memset(p + 30, 0, 4);
	proto_put32(p + 30, proto_crc32(p, PROTO_HDR_SIZE + h.payload_len));
}

static void reflect(conn_table *t, uint8_t flags, const uint8_t *pl, size_t n)
{
	static uint8_t out[PROTO_HDR_SIZE + 4096];
	proto_hdr h, r;
	int len;

	if (!last_len || proto_hdr_decode(last, last_len, &h) < 0)
		return;
	r = h;
	r.flags = flags & 0x0F;
	r.src = h.dst;
	r.dst = h.src;
	r.src_port = h.dst_port;
	r.dst_port = h.src_port;
	r.seq = h.ack;
	r.ack = h.seq + h.payload_len + ((h.flags & (PROTO_SYN | PROTO_FIN)) ? 1 : 0);
	r.window = 64;
	if (n > 4096)
		n = 4096;
	len = proto_packet_encode(&r, pl, n, out, sizeof(out));
	if (len > 0)
		conn_input(t, h.dst.node, out, (size_t)len);
}

static void app(conn_table *t, const uint8_t *d, size_t n)
{
	uint8_t what = n ? d[0] : 0, slot = n > 1 ? d[1] % MAXOWN : 0;
	uint16_t port = n > 3 ? proto_get16(d + 2) : 7;
	int err;

	switch (what % 5) {
	case 0:
		if (!own[slot])
			own[slot] = conn_dial(t, pilot_addr_make(0, 2 + (what >> 4 & 1)), port, &own_cbs,
					      NULL, &err);
		break;
	case 1:
		conn_write(own[slot], d, n);
		break;
	case 2:
		conn_shutdown(own[slot]);
		break;
	case 3:
		if (own[slot]) {
			conn *c = own[slot];
			own_forget(c);
			if (what & 0x10)
				conn_abort(c);
			else
				conn_close(c);
		}
		break;
	default:
		conn_set_nodelay(own[slot], what & 0x10);
		break;
	}
}

static void svc(conn_table *t, const uint8_t *d, size_t n)
{
	uint8_t what = n ? d[0] : 0;

	if (what & 1)
		conn_ping(t, what & 2 ? 9 : 2, n > 4 ? proto_get32(d + 1) : 0, d, n, on_ping, NULL);
	else
		conn_dgram_send(t, pilot_addr_make(0, 2), 53, d, n);
}

static void record(conn_table *t, uint8_t op, uint8_t *p, size_t n)
{
	uint32_t from = 1 + (op >> 3 & 3);

	switch (op & 7) {
	case 0:
	case 1:
		if ((op & 0x20) && n >= 10)
			proto_put32(p + 6, from);
		if ((op & 7) == 0)
			fix_crc(p, n);
		conn_input(t, from, p, n);
		break;
	case 2:
		reflect(t, n ? p[0] : PROTO_ACK, p + (n ? 1 : 0), n ? n - 1 : 0);
		break;
	case 3:
		now_us += (uint64_t)(n >= 2 ? proto_get16(p) : 1) * 1000;
		break;
	case 4:
		app(t, p, n);
		break;
	default:
		svc(t, p, n);
		break;
	}
	run_timers(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[PROTO_MAX_PACKET];
	conn_config cfg = { 0 };
	conn_table_stats st;
	conn_table *t;

	stream_params_default(&cfg.stream);
	cfg.stream.sndbuf = cfg.stream.rcvbuf = 16384;
	cfg.headroom = HEADROOM;
	cfg.send_packet = fsend;
	cfg.admit = fadmit;
	cfg.clock = fclock;
	cfg.max_per_port = 16;
	cfg.max_total = 24;
	cfg.eph_min = 65500;
	cfg.max_pings = 4;
	cfg.eph_max = 65535;
	now_us = 1000000;
	last_len = 0;
	memset(own, 0, sizeof(own));
	t = conn_table_new(&cfg);
	if (!t)
		abort();
	conn_set_local_addr(t, pilot_addr_make(0, 1));
	conn_echo_enable(t);
	conn_listen(t, 80, &sink_listener, NULL);
	conn_dgram_bind(t, 53, on_dgram, NULL);
	while (size >= 3) {
		uint8_t op = data[0];
		size_t n = proto_get16(data + 1);
		data += 3;
		size -= 3;
		if (n > size)
			n = size;
		memcpy(buf, data, n);
		record(t, op, buf, n);
		data += n;
		size -= n;
		conn_get_stats(t, &st);
		if (st.active > cfg.max_total)
			abort();
	}
	conn_table_free(t);
	return 0;
}
