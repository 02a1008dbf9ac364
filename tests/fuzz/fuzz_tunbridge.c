/* Fuzz daemon/tunbridge*.c: packets "from the TUN" into tunbridge_input of a bridge
 * without a device (a capture sink instead), on conn table A (node 1), joined back
 * to back with conn table B (node 2: a sink listener on 80, an abort listener on
 * 81, a datagram echo on 53), all on a fake clock. 10.4.0.2 maps to node 2. The
 * input is a sequence of records: op, a 16-bit big-endian length, that many bytes.
 *   op % 6 == 0: the bytes as one IP packet
 *   op % 6 == 1: a well-formed TCP/UDP/ICMP packet from 10.4.0.1 (or the own ULA)
 *                to 10.4.0.x / the ULA of node 2, fields and payload from the bytes
 *   op % 6 == 2: the kernel's answer to the bridge's last TCP packet (addresses and
 *                ports swapped, seq = its ack, ack = its seq + length) with the
 *                flags and payload given, so handshakes and transfers happen
 *   op % 6 == 3: advance the clock (16-bit ms) and run every timer
 *   op % 6 == 4: deliver the queued Pilot packets
 *   op % 6 == 5: B acts: dial node 1 (inbound through the bridge), write, close,
 *                send a datagram, ping
 * Must never crash, leak, or hold more flows than max_flows. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream/conn.h"
#include "daemon/tunbridge_internal.h"
#include "lib/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEADROOM 29
#define MAXQ 256
#define MAXB 8
#define MAX_FLOWS 16
#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))

typedef struct qpkt {
	int to;
	uint32_t from;
	size_t len;
	uint8_t *data;
} qpkt;

static uint64_t now_us;
static conn_table *T[2];
static int idx[2] = { 0, 1 };
static qpkt q[MAXQ];
static size_t nq;
static uint8_t last_tcp[TUN_IP_MAX_PACKET];
static size_t last_tcp_len;
static conn *bc[MAXB];

static uint64_t fclock(void *ctx)
{
	(void)ctx;
	return now_us;
}

static int fsend(void *ctx, uint32_t node, uint8_t *pkt, size_t len)
{
	int from = *(int *)ctx;

	if ((node != 1 && node != 2) || nq == MAXQ)
		return 0; /* lost */
	q[nq].data = malloc(len);
	if (!q[nq].data)
		return -ENOMEM;
	memcpy(q[nq].data, pkt, len);
	q[nq].len = len;
	q[nq].to = (int)node - 1;
	q[nq].from = (uint32_t)from + 1;
	nq++;
	return 0;
}

static void deliver(void)
{
	qpkt cur[MAXQ];
	size_t n = nq;

	memcpy(cur, q, n * sizeof(*cur));
	nq = 0;
	for (size_t i = 0; i < n; i++) {
		if (T[cur[i].to])
			conn_input(T[cur[i].to], cur[i].from, cur[i].data, cur[i].len);
		free(cur[i].data);
	}
}

/* Everything the bridge sends the kernel must parse. */
static void sink(void *ctx, const uint8_t *pkt, size_t len)
{
	tun_ip ip;

	(void)ctx;
	if (tun_ip_parse(pkt, len, &ip) != 0)
		abort();
	if (ip.proto == TUN_IPPROTO_TCP && len <= sizeof(last_tcp)) {
		memcpy(last_tcp, pkt, len);
		last_tcp_len = len;
	}
}

/* ---- B: servers and its own dials ---------------------------------------------------- */

static void b_forget(conn *c)
{
	for (int i = 0; i < MAXB; i++)
		if (bc[i] == c)
			bc[i] = NULL;
}

static void b_read(void *arg, conn *c)
{
	uint8_t buf[4096];

	(void)arg;
	while (conn_read(c, buf, sizeof(buf)) > 0)
		;
	if (conn_eof(c) && arg) {
		b_forget(c);
		conn_close(c);
	}
}

static void b_state(void *arg, conn *c, enum stream_state o, enum stream_state now, int err)
{
	(void)arg;
	(void)o;
	(void)err;
	if (now == STREAM_CLOSED) {
		b_forget(c);
		conn_close(c);
	}
}

static const conn_cbs b_cbs = { b_read, NULL, b_state };

static bool b_accept(void *arg, conn *c)
{
	conn_set_cbs(c, &b_cbs, (void *)1);
	if (arg) {
		conn_write(c, "hello from B", 12);
		conn_shutdown(c);
	}
	return true;
}

static const conn_listener_cbs b_listener = { b_accept };

static bool b_abort_accept(void *arg, conn *c)
{
	(void)arg;
	(void)c;
	return false;
}

static const conn_listener_cbs b_abort_listener = { b_abort_accept };

static void b_dgram(void *arg, pilot_addr src, uint16_t sport, uint16_t dport, const uint8_t *d,
		    size_t len)
{
	(void)arg;
	conn_dgram_send_from(T[1], dport, src, sport, d, len);
}

static void b_ping(void *arg, int err, uint32_t rtt, const uint8_t *p, size_t len)
{
	(void)arg;
	(void)err;
	(void)rtt;
	(void)p;
	(void)len;
}

static void b_act(const uint8_t *d, size_t n)
{
	uint8_t op = n ? d[0] : 0;
	int slot = (op >> 3) % MAXB, err;
	uint16_t port = n >= 3 ? (uint16_t)(d[1] << 8 | d[2]) : 8080;

	switch (op & 7) {
	case 0:
		if (!bc[slot])
			bc[slot] = conn_dial(T[1], pilot_addr_make(0, 1), port, &b_cbs, NULL, &err);
		break;
	case 1:
		if (bc[slot] && n > 3)
			conn_write(bc[slot], d + 3, n - 3);
		break;
	case 2:
		if (bc[slot])
			conn_shutdown(bc[slot]);
		break;
	case 3:
		if (bc[slot]) {
			conn *c = bc[slot];
			bc[slot] = NULL;
			if (op & 0x40)
				conn_abort(c);
			else
				conn_close(c);
		}
		break;
	case 4:
		if (n > 3)
			conn_dgram_send_from(T[1], port, pilot_addr_make(0, 1), (uint16_t)(port + 1), d + 3, n - 3);
		break;
	default:
		conn_ping(T[1], 1, port, d, n, b_ping, NULL);
		break;
	}
}

/* ---- packets as the kernel would send them ------------------------------------------ */

static void crafted(tunbridge *b, const uint8_t *d, size_t n)
{
	static uint8_t pkt[TUN_IP_MAX_PACKET];
	uint8_t hdr[16] = { 0 };
	tun_ip_build ib = { 0 };
	tun_tcp_build tb = { 0 };
	int len = -1;

	memcpy(hdr, d, n < sizeof(hdr) ? n : sizeof(hdr));
	d += n < sizeof(hdr) ? n : sizeof(hdr);
	n -= n < sizeof(hdr) ? n : sizeof(hdr);
	if (hdr[0] & 0x80) {
		struct in6_addr a;
		tun_ula_from_addr(pilot_addr_make(0, 1), &a);
		tun_ipaddr_v6(&ib.src, a.s6_addr);
		tun_ula_from_addr(pilot_addr_make(0, hdr[1] & 3), &a);
		tun_ipaddr_v6(&ib.dst, a.s6_addr);
	} else {
		tun_ipaddr_v4(&ib.src, IP4(10, 4, 0, 1));
		tun_ipaddr_v4(&ib.dst, IP4(10, 4, hdr[1] & 1 ? 9 : 0, 2));
	}
	switch (hdr[0] & 3) {
	case 0:
		tb = (tun_tcp_build){ .sport = (uint16_t)(40000 + (hdr[2] & 7)), .dport = (uint16_t)(78 + (hdr[3] & 3)),
				      .seq = (uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16, .ack = (uint32_t)hdr[6] << 8,
				      .flags = hdr[7], .window = (uint16_t)(hdr[8] << 8 | hdr[9]),
				      .mss = (uint16_t)(hdr[10] << 8 | hdr[11]), .wscale = (int8_t)(hdr[12] % 20 - 2) };
		len = tun_tcp_build_pkt(&ib, &tb, d, n, pkt, sizeof(pkt));
		break;
	case 1:
		len = tun_udp_build_pkt(&ib, (uint16_t)(hdr[2] << 8 | hdr[3]), (uint16_t)(hdr[4] << 8 | hdr[5]), d, n,
					pkt, sizeof(pkt));
		break;
	default:
		len = tun_icmp_build_echo(&ib, ib.src.family == 4 ? TUN_ICMP4_ECHO_REQUEST : TUN_ICMP6_ECHO_REQUEST,
					  (uint16_t)(hdr[2] << 8 | hdr[3]), hdr[4], d, n, pkt, sizeof(pkt));
		break;
	}
	if (len > 0)
		tunbridge_input(b, pkt, (size_t)len);
}

/* The kernel's answer to the last TCP packet the bridge sent it. */
static void answer(tunbridge *b, const uint8_t *d, size_t n)
{
	static uint8_t pkt[TUN_IP_MAX_PACKET];
	tun_ip ip;
	tun_tcp t;
	tun_ip_build ib = { 0 };
	tun_tcp_build tb = { 0 };
	int len;

	if (!last_tcp_len || tun_ip_parse(last_tcp, last_tcp_len, &ip) || tun_tcp_parse(ip.l4, ip.l4_len, &t))
		return;
	ib.src = ip.dst;
	ib.dst = ip.src;
	tb.sport = t.dport;
	tb.dport = t.sport;
	tb.seq = t.ack;
	tb.ack = t.seq + (uint32_t)t.payload_len + !!(t.flags & TUN_TCP_SYN) + !!(t.flags & TUN_TCP_FIN);
	tb.flags = n ? d[0] : TUN_TCP_ACK;
	tb.window = 0xffff;
	tb.wscale = -1;
	if (tb.flags & TUN_TCP_SYN) {
		tb.mss = 1400;
		tb.wscale = 7;
	}
	len = tun_tcp_build_pkt(&ib, &tb, n > 1 ? d + 1 : NULL, n > 1 ? n - 1 : 0, pkt, sizeof(pkt));
	if (len > 0)
		tunbridge_input(b, pkt, (size_t)len);
}

static void tick_all(tunbridge *b)
{
	for (int i = 0; i < 4; i++) {
		conn_table_tick(T[0]);
		conn_table_tick(T[1]);
		tunbridge_tick(b);
		deliver();
	}
}

static void setup(tun_addrmap **map, tunbridge **b)
{
	tun_addrmap_cfg mc = { 0 };
	tunbridge_config bcfg = { 0 };
	char err[256];

	now_us = 1000000;
	nq = 0;
	last_tcp_len = 0;
	memset(bc, 0, sizeof(bc));
	for (int i = 0; i < 2; i++) {
		conn_config c = { 0 };
		stream_params_default(&c.stream);
		c.stream.sndbuf = c.stream.rcvbuf = 64 * 1024;
		c.headroom = HEADROOM;
		c.ctx = &idx[i];
		c.send_packet = fsend;
		c.clock = fclock;
		c.seed = 1;
		T[i] = conn_table_new(&c);
		conn_set_local_addr(T[i], pilot_addr_make(0, (uint32_t)i + 1));
	}
	conn_listen(T[1], 80, &b_listener, (void *)1);
	conn_listen(T[1], 81, &b_abort_listener, NULL);
	conn_dgram_bind(T[1], 53, b_dgram, NULL);
	if (tun_addrmap_open(&mc, map, err, sizeof(err)) < 0)
		abort();
	tun_addrmap_set_own(*map, pilot_addr_make(0, 1));
	tun_addrmap_map(*map, pilot_addr_make(0, 2), IP4(10, 4, 0, 2));
	bcfg.sink = sink;
	bcfg.map = *map;
	bcfg.own = pilot_addr_make(0, 1);
	bcfg.mtu = 9000;
	bcfg.sndbuf = bcfg.rcvbuf = 64 * 1024;
	bcfg.max_flows = MAX_FLOWS;
	bcfg.max_pings = 4;
	bcfg.clock = fclock;
	*b = tunbridge_new(NULL, T[0], &bcfg, err, sizeof(err));
	if (!*b)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tun_addrmap *map;
	tunbridge *b;
	tunbridge_stats st;

	setup(&map, &b);
	while (size >= 3) {
		uint8_t op = data[0];
		size_t n = (size_t)data[1] << 8 | data[2];
		data += 3;
		size -= 3;
		if (n > size)
			n = size;
		switch (op % 6) {
		case 0: tunbridge_input(b, data, n); break;
		case 1: crafted(b, data, n); break;
		case 2: answer(b, data, n); break;
		case 3:
			now_us += (uint64_t)(n >= 2 ? (data[0] << 8 | data[1]) : 1) * 1000;
			tick_all(b);
			break;
		case 4: deliver(); break;
		default: b_act(data, n); break;
		}
		tunbridge_get_stats(b, &st);
		if (st.flows_active > MAX_FLOWS)
			abort();
		data += n;
		size -= n;
	}
	tick_all(b);
	tunbridge_free(b);
	conn_table_free(T[0]);
	conn_table_free(T[1]);
	T[0] = T[1] = NULL;
	deliver();
	tun_addrmap_free(map);
	return 0;
}
