/* libFuzzer target for tun/: (1) the IP/TCP/UDP/ICMP parsers on arbitrary bytes with
 * invariant and round-trip checks; (2) an established tcpep pair (small buffers) fed
 * the input as raw packets and as a script of crafted segments (seq/ack near the
 * live values), timer ticks, writes, reads, shutdowns and aborts. Must never crash;
 * the endpoints allocate only at creation, so memory cannot grow. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/proto.h"
#include "tun/ip.h"
#include "tun/tcpep.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "CHECK failed: %s (%s:%d)\n", #x, __FILE__, __LINE__); abort(); } } while (0)

static void fuzz_parsers(const uint8_t *d, size_t n)
{
	static uint8_t out[70000];
	tun_ip ip;
	tun_tcp t;
	tun_udp u;
	tun_icmp m;
	int r = tun_ip_parse(d, n, &ip);

	if (r < 0) {
		CHECK(r >= -TUN_IP_NERR);
		return;
	}
	CHECK(ip.pkt_len <= n && ip.hdr_len <= ip.pkt_len);
	CHECK(ip.l4 == d + ip.hdr_len && ip.l4_len == ip.pkt_len - ip.hdr_len);
	(void)tun_l4_csum_ok(&ip);
	if (tun_icmp_parse(ip.l4, ip.l4_len, ip.version == 6, &m) == 0)
		CHECK(m.data + m.data_len == ip.l4 + ip.l4_len);
	if (tun_udp_parse(ip.l4, ip.l4_len, &u) == 0)
		CHECK(u.payload + u.payload_len <= ip.l4 + ip.l4_len);
	if (tun_tcp_parse(ip.l4, ip.l4_len, &t) == 0) {
		tun_ip_build ib = { .src = ip.src, .dst = ip.dst, .ttl = ip.ttl };
		tun_tcp_build tb = { .sport = t.sport, .dport = t.dport, .seq = t.seq, .ack = t.ack,
				     .flags = t.flags, .window = t.window, .mss = t.has_mss ? t.mss : 0,
				     .wscale = t.has_wscale && t.wscale <= 14 ? (int8_t)t.wscale : -1,
				     .sack_ok = t.sack_ok };
		tun_ip ip2;
		tun_tcp t2;
		int k;

		CHECK(t.payload + t.payload_len == ip.l4 + ip.l4_len);
		k = tun_tcp_build_pkt(&ib, &tb, t.payload, t.payload_len, out, sizeof(out));
		if (k > 0) {
			CHECK(tun_ip_parse(out, (size_t)k, &ip2) == 0);
			CHECK(tun_l4_csum_ok(&ip2));
			CHECK(tun_tcp_parse(ip2.l4, ip2.l4_len, &t2) == 0);
			CHECK(t2.seq == t.seq && t2.ack == t.ack && t2.flags == t.flags &&
			      t2.payload_len == t.payload_len && t2.has_mss == (t.has_mss && t.mss != 0));
			CHECK(memcmp(t2.payload, t.payload, t.payload_len) == 0);
		}
		k = tcpep_reset_reply(&ip, &t, out, sizeof(out));
		CHECK(k >= 0);
	}
	if (n >= 2) {
		uint16_t c = tun_csum(d, n & ~(size_t)1);
		uint16_t o = proto_get16(d), nv = (uint16_t)(o ^ 0x5a5a);
		uint8_t tmp[2];
		/* incremental update of the first word equals recomputation */
		proto_put16(tmp, nv);
		CHECK(tun_csum_update16(c, o, nv) ==
		      tun_csum_fold(tun_csum_add(tun_csum_add(0, tmp, 2), d + 2, (n & ~(size_t)1) - 2)) ||
		      n < 2);
	}
}

/* ---- tcpep pair ---- */

#define QN 64
#define PMAX 2048

typedef struct q {
	uint8_t p[QN][PMAX];
	size_t len[QN];
	int n;
} q;

static q Q[2];
static tcpep *E[2];
static uint32_t last_seq[2], last_ack[2];
static uint64_t now;

static void emit(void *ctx, const uint8_t *p, size_t n)
{
	int d = (int)(intptr_t)ctx;
	tun_ip ip;
	tun_tcp t;

	CHECK(tun_ip_parse(p, n, &ip) == 0 && tun_l4_csum_ok(&ip));
	CHECK(tun_tcp_parse(ip.l4, ip.l4_len, &t) == 0);
	last_seq[d] = t.seq + (uint32_t)t.payload_len;
	last_ack[d] = t.ack;
	if (Q[d].n >= QN || n > PMAX)
		return;
	memcpy(Q[d].p[Q[d].n], p, n);
	Q[d].len[Q[d].n++] = n;
}

static void rd(void *ctx, tcpep *ep)
{
	uint8_t b[512];
	(void)ctx;
	while (tcpep_read(ep, b, sizeof(b), now) > 0)
		;
}

static const tcpep_cbs CB = { emit, rd, NULL, NULL, NULL };

static void deliver_all(void)
{
	for (int round = 0; round < 8 && (Q[0].n || Q[1].n); round++)
		for (int d = 0; d < 2; d++) {
			int n = Q[d].n;
			static uint8_t tmp[QN][PMAX];
			static size_t tl[QN];

			memcpy(tmp, Q[d].p, sizeof(tmp[0]) * (size_t)n);
			memcpy(tl, Q[d].len, sizeof(tl[0]) * (size_t)n);
			Q[d].n = 0;
			for (int i = 0; i < n; i++) {
				tun_ip ip;
				tun_tcp t;

				CHECK(tun_ip_parse(tmp[i], tl[i], &ip) == 0);
				CHECK(tun_tcp_parse(ip.l4, ip.l4_len, &t) == 0);
				now += 10;
				tcpep_input(E[d ^ 1], &ip, &t, now);
			}
		}
}

static void inject(int to, const uint8_t *d, size_t n)
{
	static uint8_t pkt[PMAX + 100];
	tcpep_stats st;
	tun_ip_build ib;
	tun_tcp_build tb = { .wscale = -1 };
	tun_ip ip;
	tun_tcp t;
	size_t plen;
	int k;

	if (n < 8)
		return;
	/* from side to^1 toward side to, addresses and ports of the flow */
	memset(&ib, 0, sizeof(ib));
	tun_ipaddr_v4(&ib.src, to ? 0x0a040001 : 0x0a040007);
	tun_ipaddr_v4(&ib.dst, to ? 0x0a040007 : 0x0a040001);
	tb.sport = to ? 40000 : 80;
	tb.dport = to ? 80 : 40000;
	tb.flags = d[0];
	tb.seq = last_ack[to] + (uint32_t)(int32_t)(int16_t)proto_get16(d + 1);
	tb.ack = last_seq[to] + (uint32_t)(int32_t)(int16_t)proto_get16(d + 3);
	tb.window = proto_get16(d + 5);
	if (d[7] & 1)
		tb.mss = proto_get16(d + 1);
	if (d[7] & 2)
		tb.wscale = (int8_t)(d[7] >> 4);
	plen = (size_t)(d[7] >> 2) * 37 % 1500;
	if (plen > n - 8)
		plen = n - 8;
	k = tun_tcp_build_pkt(&ib, &tb, d + 8, plen, pkt, sizeof(pkt));
	if (k <= 0)
		return;
	CHECK(tun_ip_parse(pkt, (size_t)k, &ip) == 0 && tun_tcp_parse(ip.l4, ip.l4_len, &t) == 0);
	tcpep_input(E[to], &ip, &t, now);
	tcpep_get_stats(E[to], &st);
	CHECK(st.snd_buffered <= 65536 && st.rcv_buffered <= 65536);
}

static void fuzz_tcpep(const uint8_t *d, size_t n)
{
	tcpep_params p;
	tun_ipaddr a, b;
	tun_ip ip;
	tun_tcp t;
	uint8_t junk[2048];

	memset(Q, 0, sizeof(Q[0].n)); /* counts only */
	Q[0].n = Q[1].n = 0;
	now = 1000000;
	tcpep_params_default(&p);
	p.mtu = 1500;
	p.sndbuf = p.rcvbuf = 65536;
	p.iss = 0xfffffff0u;
	tun_ipaddr_v4(&a, 0x0a040001);
	tun_ipaddr_v4(&b, 0x0a040007);
	E[0] = tcpep_connect(&p, &a, 40000, &b, 80, &CB, (void *)(intptr_t)0, now);
	CHECK(E[0] && Q[0].n == 1);
	CHECK(tun_ip_parse(Q[0].p[0], Q[0].len[0], &ip) == 0 && tun_tcp_parse(ip.l4, ip.l4_len, &t) == 0);
	Q[0].n = 0;
	p.iss = 0x7ffffff0u;
	E[1] = tcpep_from_syn(&p, &ip, &t, &CB, (void *)(intptr_t)1, now);
	CHECK(E[1]);
	tcpep_accept(E[1], now);
	deliver_all();
	CHECK(tcpep_state(E[0]) == TCPEP_ESTABLISHED && tcpep_state(E[1]) == TCPEP_ESTABLISHED);
	memset(junk, 0x61, sizeof(junk));

	while (n >= 2) {
		uint8_t op = d[0], arg = d[1];
		size_t take = 2;
		int s = op & 1;

		d += 2, n -= 2;
		switch ((op >> 1) % 10) {
		case 0: /* a crafted segment with the next bytes */
			take = arg < n ? arg : n;
			inject(s, d, take);
			break;
		case 1: /* raw bytes as a packet */
			take = arg < n ? arg : n;
			if (tun_ip_parse(d, take, &ip) == 0 && ip.proto == TUN_IPPROTO_TCP &&
			    tun_tcp_parse(ip.l4, ip.l4_len, &t) == 0)
				tcpep_input(E[s], &ip, &t, now);
			break;
		case 2:
			tcpep_write(E[s], junk, (size_t)arg * 8, now);
			take = 0;
			break;
		case 3:
			deliver_all();
			take = 0;
			break;
		case 4:
			Q[s].n = 0; /* loss */
			take = 0;
			break;
		case 5: {
			uint64_t dl = tcpep_next_deadline(E[s]);
			now += (uint64_t)arg * 1000;
			if (dl != UINT64_MAX && dl > now && arg > 200)
				now = dl;
			tcpep_on_timer(E[s], now);
			take = 0;
			break;
		}
		case 6:
			tcpep_set_rcv_space(E[s], (size_t)arg * 64, now);
			take = 0;
			break;
		case 7:
			if (arg == 0x55)
				tcpep_abort(E[s], now);
			else if (arg < 16)
				tcpep_shutdown(E[s], now);
			take = 0;
			break;
		default: {
			tcpep_stats st;
			tcpep_get_stats(E[s], &st);
			CHECK(st.in_flight <= 65536 + 2);
			take = 0;
			break;
		}
		}
		d += take, n -= take;
	}
	deliver_all();
	tcpep_free(E[0]);
	tcpep_free(E[1]);
	E[0] = E[1] = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_parsers(data, size);
	fuzz_tcpep(data, size);
	return 0;
}
