/* tun/ip.c: known-answer packets (built by an independent Python implementation of
 * RFC 1071), parse and build round trips, incremental checksum updates, every
 * truncation rejected, fragments and malformed headers refused with distinct codes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/proto.h"
#include "tun/ip.h"

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;

	for (; hex[0] && hex[1]; hex += 2) {
		unsigned v;

		assert_int_equal(sscanf(hex, "%2x", &v), 1);
		assert_true(n < cap);
		out[n++] = (uint8_t)v;
	}
	return n;
}

/* 10.4.0.1:40000 -> 10.4.0.7:80 SYN, MSS 65495, WS 7, SACK-permitted. */
static const char SYN4[] =
	"4500003412344000400614810a0400010a0400079c40005001020304000000008002ffffc04700000204ffd70103030701010402";
/* fd00::1:5353 -> fd00::7:53 UDP "hello". */
static const char UDP6[] =
	"60000000000d1140fd000000000000000000000000000001fd00000000000000000000000000000714e90035000dacda68656c6c6f";
/* ICMP echo request id 0x4242 seq 1 "abcdefgh", IP id 0. */
static const char ICMP4[] =
	"4500002400004000400126ca0a0400010a04000708002427424200016162636465666768";
/* ICMPv6 echo request id 7 seq 9 "xyz". */
static const char ICMP6[] =
	"60000000000b3a40fd000000000000000000000000000001fd000000000000000000000000000007800093260007000978797a";

static void addrs4(tun_ip_build *b)
{
	memset(b, 0, sizeof(*b));
	tun_ipaddr_v4(&b->src, 0x0a040001);
	tun_ipaddr_v4(&b->dst, 0x0a040007);
}

static void addrs6(tun_ip_build *b)
{
	uint8_t a[16] = { 0xfd };

	memset(b, 0, sizeof(*b));
	a[15] = 1;
	tun_ipaddr_v6(&b->src, a);
	a[15] = 7;
	tun_ipaddr_v6(&b->dst, a);
}

static void test_rfc1071_header(void **state)
{
	uint8_t h[20];
	(void)state;
	/* The classic example header: checksum field zero → 0xb861. */
	unhex("450000730000400040110000c0a80001c0a800c7", h, sizeof(h));
	assert_int_equal(tun_csum(h, 20), 0xb861);
	proto_put16(h + 10, 0xb861);
	assert_int_equal(tun_csum(h, 20), 0);
	/* chaining at even lengths equals one pass; odd tail padded with zero */
	assert_int_equal(tun_csum_fold(tun_csum_add(tun_csum_add(0, h, 6), h + 6, 14)), 0);
	{
		uint8_t odd[3] = { 0x12, 0x34, 0x56 }, even[4] = { 0x12, 0x34, 0x56, 0 };
		assert_int_equal(tun_csum(odd, 3), tun_csum(even, 4));
		assert_int_equal(tun_csum(odd, 3), (uint16_t)~(0x1234 + 0x5600));
	}
}

static void test_syn4_parse_build(void **state)
{
	uint8_t p[128], out[128];
	size_t n = unhex(SYN4, p, sizeof(p));
	tun_ip ip;
	tun_tcp t;
	tun_ip_build ib;
	tun_tcp_build tb = { .sport = 40000, .dport = 80, .seq = 0x01020304, .flags = TUN_TCP_SYN,
			     .window = 65535, .mss = 65495, .wscale = 7, .sack_ok = true };
	(void)state;

	assert_int_equal(tun_ip_parse(p, n, &ip), 0);
	assert_int_equal(ip.version, 4);
	assert_int_equal(ip.proto, TUN_IPPROTO_TCP);
	assert_int_equal(ip.hdr_len, 20);
	assert_int_equal(ip.pkt_len, n);
	assert_int_equal(ip.id, 0x1234);
	assert_int_equal(tun_ipaddr_v4_host(&ip.src), 0x0a040001);
	assert_int_equal(tun_ipaddr_v4_host(&ip.dst), 0x0a040007);
	assert_true(tun_l4_csum_ok(&ip));
	assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
	assert_int_equal(t.sport, 40000);
	assert_int_equal(t.dport, 80);
	assert_int_equal(t.seq, 0x01020304);
	assert_int_equal(t.flags, TUN_TCP_SYN);
	assert_int_equal(t.window, 65535);
	assert_int_equal(t.csum, 0xc047);
	assert_int_equal(t.hdr_len, 32);
	assert_true(t.has_mss && t.has_wscale && t.sack_ok && !t.has_ts);
	assert_int_equal(t.mss, 65495);
	assert_int_equal(t.wscale, 7);
	assert_int_equal(t.payload_len, 0);

	addrs4(&ib);
	ib.id = 0x1234;
	assert_int_equal(tun_tcp_build_pkt(&ib, &tb, NULL, 0, out, sizeof(out)), (int)n);
	assert_memory_equal(out, p, n);
	/* one byte short of room */
	assert_int_equal(tun_tcp_build_pkt(&ib, &tb, NULL, 0, out, n - 1), TUN_IP_ENOSPACE);
	/* a corrupted payload byte breaks the L4 checksum */
	p[n - 1] ^= 1;
	assert_int_equal(tun_ip_parse(p, n, &ip), 0);
	assert_false(tun_l4_csum_ok(&ip));
}

static void test_udp6_parse_build(void **state)
{
	uint8_t p[128], out[128];
	size_t n = unhex(UDP6, p, sizeof(p));
	tun_ip ip;
	tun_udp u;
	tun_ip_build ib;
	(void)state;

	assert_int_equal(tun_ip_parse(p, n, &ip), 0);
	assert_int_equal(ip.version, 6);
	assert_int_equal(ip.proto, TUN_IPPROTO_UDP);
	assert_int_equal(ip.ttl, 64);
	assert_true(tun_l4_csum_ok(&ip));
	assert_int_equal(tun_udp_parse(ip.l4, ip.l4_len, &u), 0);
	assert_int_equal(u.sport, 5353);
	assert_int_equal(u.dport, 53);
	assert_int_equal(u.csum, 0xacda);
	assert_int_equal(u.payload_len, 5);
	assert_memory_equal(u.payload, "hello", 5);
	addrs6(&ib);
	assert_int_equal(tun_udp_build_pkt(&ib, 5353, 53, "hello", 5, out, sizeof(out)), (int)n);
	assert_memory_equal(out, p, n);
	/* payload already in place (memmove semantics) */
	memset(out, 0, sizeof(out));
	memcpy(out + 48, "hello", 5);
	assert_int_equal(tun_udp_build_pkt(&ib, 5353, 53, out + 48, 5, out, sizeof(out)), (int)n);
	assert_memory_equal(out, p, n);
}

static void test_icmp_parse_build(void **state)
{
	uint8_t p[128], out[128];
	size_t n = unhex(ICMP4, p, sizeof(p));
	tun_ip ip;
	tun_icmp m;
	tun_ip_build ib;
	(void)state;

	assert_int_equal(tun_ip_parse(p, n, &ip), 0);
	assert_int_equal(ip.proto, TUN_IPPROTO_ICMP);
	assert_true(tun_l4_csum_ok(&ip));
	assert_int_equal(tun_icmp_parse(ip.l4, ip.l4_len, false, &m), 0);
	assert_int_equal(m.type, TUN_ICMP4_ECHO_REQUEST);
	assert_int_equal(m.id, 0x4242);
	assert_int_equal(m.seq, 1);
	assert_int_equal(m.csum, 0x2427);
	assert_int_equal(m.data_len, 8);
	addrs4(&ib);
	assert_int_equal(tun_icmp_build_echo(&ib, TUN_ICMP4_ECHO_REQUEST, 0x4242, 1, "abcdefgh", 8,
					     out, sizeof(out)), (int)n);
	assert_memory_equal(out, p, n);
	assert_int_equal(tun_icmp_build_echo(&ib, TUN_ICMP6_ECHO_REQUEST, 1, 1, NULL, 0, out,
					     sizeof(out)), TUN_IP_EINVAL);

	n = unhex(ICMP6, p, sizeof(p));
	assert_int_equal(tun_ip_parse(p, n, &ip), 0);
	assert_int_equal(ip.proto, TUN_IPPROTO_ICMPV6);
	assert_true(tun_l4_csum_ok(&ip));
	assert_int_equal(tun_icmp_parse(ip.l4, ip.l4_len, true, &m), 0);
	assert_int_equal(m.type, TUN_ICMP6_ECHO_REQUEST);
	assert_int_equal(m.id, 7);
	assert_int_equal(m.seq, 9);
	assert_int_equal(m.csum, 0x9326);
	addrs6(&ib);
	assert_int_equal(tun_icmp_build_echo(&ib, TUN_ICMP6_ECHO_REQUEST, 7, 9, "xyz", 3, out,
					     sizeof(out)), (int)n);
	assert_memory_equal(out, p, n);
}

static void test_unreach(void **state)
{
	uint8_t orig[1400], out[1600];
	tun_ip ip, q;
	tun_icmp m;
	tun_ip_build ib;
	int n;
	(void)state;

	size_t on = unhex(SYN4, orig, sizeof(orig));
	addrs4(&ib);
	ib.src = ib.dst;
	tun_ipaddr_v4(&ib.dst, 0x0a040001);
	n = tun_icmp_build_unreach(&ib, TUN_ICMP4_UNREACH_PORT, orig, on, out, sizeof(out));
	assert_int_equal(n, 20 + 8 + (int)on);
	assert_int_equal(tun_ip_parse(out, (size_t)n, &ip), 0);
	assert_true(tun_l4_csum_ok(&ip));
	assert_int_equal(tun_icmp_parse(ip.l4, ip.l4_len, false, &m), 0);
	assert_int_equal(m.type, TUN_ICMP4_UNREACH);
	assert_int_equal(m.code, TUN_ICMP4_UNREACH_PORT);
	assert_int_equal(m.data_len, on);
	assert_int_equal(tun_ip_parse(m.data, m.data_len, &q), 0);
	assert_int_equal(q.proto, TUN_IPPROTO_TCP);

	/* long originals are clipped: 576 bytes for IPv4, 1280 for IPv6 */
	memset(orig, 0x45, sizeof(orig));
	n = tun_icmp_build_unreach(&ib, TUN_ICMP4_UNREACH_HOST, orig, sizeof(orig), out, sizeof(out));
	assert_int_equal(n, 576);
	addrs6(&ib);
	n = tun_icmp_build_unreach(&ib, TUN_ICMP6_UNREACH_PORT, orig, sizeof(orig), out, sizeof(out));
	assert_int_equal(n, 1280);
	assert_int_equal(tun_ip_parse(out, (size_t)n, &ip), 0);
	assert_true(tun_l4_csum_ok(&ip));
	/* and to the output buffer */
	n = tun_icmp_build_unreach(&ib, TUN_ICMP6_UNREACH_PORT, orig, sizeof(orig), out, 100);
	assert_int_equal(n, 100);
	assert_int_equal(tun_icmp_build_unreach(&ib, 0, orig, 10, out, 47), TUN_IP_ENOSPACE);
}

static void test_incremental(void **state)
{
	uint8_t b[256];
	(void)state;

	srand(7);
	for (int round = 0; round < 2000; round++) {
		size_t off;
		uint16_t c0, o16, n16;
		uint32_t o32, n32;

		for (size_t i = 0; i < sizeof(b); i++)
			b[i] = (uint8_t)rand();
		if (round % 10 == 0)
			memset(b, round % 20 ? 0xff : 0, sizeof(b)); /* one's-complement corner cases */
		c0 = tun_csum(b, sizeof(b));
		off = (size_t)(rand() % 127) * 2;
		o16 = proto_get16(b + off);
		n16 = round % 7 ? (uint16_t)rand() : (uint16_t)(round % 2 ? 0 : 0xffff);
		proto_put16(b + off, n16);
		assert_int_equal(tun_csum_update16(c0, o16, n16), tun_csum(b, sizeof(b)));
		c0 = tun_csum(b, sizeof(b));
		off = (size_t)(rand() % 63) * 4;
		o32 = proto_get32(b + off);
		n32 = (uint32_t)rand() << 1 ^ (uint32_t)rand();
		proto_put32(b + off, n32);
		assert_int_equal(tun_csum_update32(c0, o32, n32), tun_csum(b, sizeof(b)));
	}
}

/* Every prefix of a valid packet must be refused by the IP parser, and every
 * prefix of its L4 header by the L4 parser. */
static void test_truncations(void **state)
{
	const char *pkts[] = { SYN4, UDP6, ICMP4, ICMP6 };
	(void)state;

	for (size_t k = 0; k < sizeof(pkts) / sizeof(pkts[0]); k++) {
		uint8_t p[128];
		size_t n = unhex(pkts[k], p, sizeof(p));
		tun_ip ip;

		for (size_t len = 0; len < n; len++) {
			int r = tun_ip_parse(p, len, &ip);
			assert_int_equal(r, TUN_IP_ESHORT);
		}
		assert_int_equal(tun_ip_parse(p, n, &ip), 0);
		for (size_t len = 0; len < ip.l4_len; len++) {
			tun_tcp t;
			tun_udp u;
			tun_icmp m;

			if (ip.proto == TUN_IPPROTO_TCP && len < 32)
				assert_true(tun_tcp_parse(ip.l4, len, &t) < 0);
			if (ip.proto == TUN_IPPROTO_UDP && len < 13)
				assert_int_equal(tun_udp_parse(ip.l4, len, &u), TUN_IP_ESHORT);
			if (len < 8)
				assert_int_equal(tun_icmp_parse(ip.l4, len, ip.version == 6, &m),
						 TUN_IP_ESHORT);
		}
	}
}

static void fix_ip4_csum(uint8_t *p)
{
	proto_put16(p + 10, 0);
	proto_put16(p + 10, tun_csum(p, (size_t)(p[0] & 0xf) * 4));
}

static void test_ip4_refused(void **state)
{
	uint8_t p[128], q[128];
	size_t n = unhex(SYN4, p, sizeof(p));
	tun_ip ip;
	(void)state;

	memcpy(q, p, n);
	q[0] = 0x55;
	assert_int_equal(tun_ip_parse(q, n, &ip), TUN_IP_EVERSION);
	memcpy(q, p, n);
	q[0] = 0x44;
	fix_ip4_csum(q);
	assert_int_equal(tun_ip_parse(q, n, &ip), TUN_IP_EHDRLEN);
	memcpy(q, p, n);
	proto_put16(q + 2, 19);
	fix_ip4_csum(q);
	assert_int_equal(tun_ip_parse(q, n, &ip), TUN_IP_ETOTLEN);
	memcpy(q, p, n);
	q[11] ^= 1;
	assert_int_equal(tun_ip_parse(q, n, &ip), TUN_IP_ECSUM);
	memcpy(q, p, n);
	proto_put16(q + 6, 0x2000); /* MF */
	fix_ip4_csum(q);
	assert_int_equal(tun_ip_parse(q, n, &ip), TUN_IP_EFRAG);
	proto_put16(q + 6, 0x0001); /* offset 8 */
	fix_ip4_csum(q);
	assert_int_equal(tun_ip_parse(q, n, &ip), TUN_IP_EFRAG);
	/* trailing bytes past the total length are ignored */
	memcpy(q, p, n);
	assert_int_equal(tun_ip_parse(q, n + 10, &ip), 0);
	assert_int_equal(ip.pkt_len, n);

	/* options: NOP NOP NOP EOL is fine; a length byte of 0 or past the end is not */
	{
		uint8_t o[128];
		o[0] = 0x46;
		memcpy(o + 1, p + 1, 19);
		proto_put16(o + 2, (uint16_t)(n + 4));
		memcpy(o + 20, "\x01\x01\x01\x00", 4);
		memcpy(o + 24, p + 20, n - 20);
		fix_ip4_csum(o);
		assert_int_equal(tun_ip_parse(o, n + 4, &ip), 0);
		assert_int_equal(ip.hdr_len, 24);
		assert_int_equal(ip.l4_len, n - 20);
		memcpy(o + 20, "\x01\x07\x00\x00", 4);
		fix_ip4_csum(o);
		assert_int_equal(tun_ip_parse(o, n + 4, &ip), TUN_IP_EOPT);
		memcpy(o + 20, "\x01\x07\x05\x00", 4);
		fix_ip4_csum(o);
		assert_int_equal(tun_ip_parse(o, n + 4, &ip), TUN_IP_EOPT);
		memcpy(o + 20, "\x01\x01\x01\x07", 4);
		fix_ip4_csum(o);
		assert_int_equal(tun_ip_parse(o, n + 4, &ip), TUN_IP_EOPT);
	}
}

/* Builds fd00::1 -> fd00::7 with the given extension chain in front of UDP "hello". */
static size_t ip6_with_ext(uint8_t *p, const uint8_t *ext, size_t elen, uint8_t first)
{
	uint8_t u[128];
	size_t un = unhex(UDP6, u, sizeof(u));

	memcpy(p, u, 40);
	p[6] = first;
	memcpy(p + 40, ext, elen);
	memcpy(p + 40 + elen, u + 40, un - 40);
	proto_put16(p + 4, (uint16_t)(elen + un - 40));
	return un + elen;
}

static void test_ip6_ext(void **state)
{
	uint8_t p[256], ext[160] = { 0 };
	tun_ip ip;
	size_t n;
	(void)state;

	/* hop-by-hop (8) -> destination options (16) -> UDP */
	ext[0] = 60, ext[1] = 0;
	ext[8] = 17, ext[9] = 1;
	n = ip6_with_ext(p, ext, 24, 0);
	assert_int_equal(tun_ip_parse(p, n, &ip), 0);
	assert_int_equal(ip.proto, TUN_IPPROTO_UDP);
	assert_int_equal(ip.hdr_len, 64);
	assert_true(tun_l4_csum_ok(&ip)); /* the pseudo-header length is the UDP length */
	/* AH (len field 1 → 12 bytes) -> UDP */
	memset(ext, 0, sizeof(ext));
	ext[0] = 17, ext[1] = 1;
	n = ip6_with_ext(p, ext, 12, 51);
	assert_int_equal(tun_ip_parse(p, n, &ip), 0);
	assert_int_equal(ip.hdr_len, 52);
	/* fragment header refused */
	ext[0] = 17;
	n = ip6_with_ext(p, ext, 8, 44);
	assert_int_equal(tun_ip_parse(p, n, &ip), TUN_IP_EFRAG);
	/* ESP refused */
	n = ip6_with_ext(p, ext, 8, 50);
	assert_int_equal(tun_ip_parse(p, n, &ip), TUN_IP_EEXTHDR);
	/* hop-by-hop after another header */
	memset(ext, 0, sizeof(ext));
	ext[0] = 0;
	ext[8] = 17;
	n = ip6_with_ext(p, ext, 16, 60);
	assert_int_equal(tun_ip_parse(p, n, &ip), TUN_IP_EEXTHDR);
	/* a chain of 9 routing headers is too long */
	memset(ext, 0, sizeof(ext));
	for (int i = 0; i < 9; i++)
		ext[i * 8] = i == 8 ? 17 : 43;
	n = ip6_with_ext(p, ext, 72, 43);
	assert_int_equal(tun_ip_parse(p, n, &ip), TUN_IP_EEXTHDR);
	/* 8 is fine */
	for (int i = 0; i < 8; i++)
		ext[i * 8] = i == 7 ? 17 : 43;
	n = ip6_with_ext(p, ext, 64, 43);
	assert_int_equal(tun_ip_parse(p, n, &ip), 0);
	/* an extension header longer than the payload */
	memset(ext, 0, sizeof(ext));
	ext[0] = 17, ext[1] = 5;
	n = ip6_with_ext(p, ext, 8, 60);
	assert_int_equal(tun_ip_parse(p, n, &ip), TUN_IP_ESHORT);
	/* jumbogram (payload length 0) refused; no-next-header with length 0 is fine */
	n = ip6_with_ext(p, ext, 0, 17);
	proto_put16(p + 4, 0);
	assert_int_equal(tun_ip_parse(p, n, &ip), TUN_IP_EEXTHDR);
	p[6] = 59;
	assert_int_equal(tun_ip_parse(p, n, &ip), 0);
	assert_int_equal(ip.l4_len, 0);
}

static void test_tcp_refused(void **state)
{
	uint8_t p[128], t4[64];
	size_t n = unhex(SYN4, p, sizeof(p));
	tun_tcp t;
	(void)state;

	memcpy(t4, p + 20, n - 20);
	t4[12] = 0x40; /* data offset 4 */
	assert_int_equal(tun_tcp_parse(t4, n - 20, &t), TUN_IP_EHDRLEN);
	t4[12] = 0xf0; /* 60 > 32 */
	assert_int_equal(tun_tcp_parse(t4, n - 20, &t), TUN_IP_ESHORT);
	memcpy(t4, p + 20, n - 20);
	t4[21] = 0; /* MSS option with length 0 */
	assert_int_equal(tun_tcp_parse(t4, n - 20, &t), TUN_IP_EOPT);
	t4[21] = 13; /* past the header */
	assert_int_equal(tun_tcp_parse(t4, n - 20, &t), TUN_IP_EOPT);
	/* a known kind with the wrong length is ignored (as Linux does) */
	memcpy(t4, p + 20, n - 20);
	t4[24] = 8, t4[25] = 3, t4[26] = 1, t4[27] = 1; /* TS with length 3 replaces NOP WS */
	assert_int_equal(tun_tcp_parse(t4, n - 20, &t), 0);
	assert_false(t.has_ts);
	assert_false(t.has_wscale);
	assert_true(t.has_mss);
	/* UDP length below 8 */
	{
		uint8_t u[8] = { 0, 1, 0, 2, 0, 7, 0, 0 };
		tun_udp ud;
		assert_int_equal(tun_udp_parse(u, 8, &ud), TUN_IP_EHDRLEN);
		u[5] = 9;
		assert_int_equal(tun_udp_parse(u, 8, &ud), TUN_IP_ESHORT);
	}
}

static void test_builder_limits(void **state)
{
	static uint8_t big[70000];
	tun_ip_build ib;
	tun_tcp_build tb = { .wscale = -1 };
	tun_ip ip;
	tun_tcp t;
	(void)state;

	addrs4(&ib);
	/* 65535 - 40 = 65495 bytes of TCP payload fit an IPv4 packet, one more does not */
	assert_int_equal(tun_tcp_build_pkt(&ib, &tb, NULL, 65495, big, sizeof(big)), 65535);
	assert_int_equal(tun_tcp_build_pkt(&ib, &tb, NULL, 65496, big, sizeof(big)), TUN_IP_ENOSPACE);
	assert_int_equal(tun_ip_parse(big, 65535, &ip), 0);
	assert_true(tun_l4_csum_ok(&ip));
	assert_int_equal(tun_tcp_parse(ip.l4, ip.l4_len, &t), 0);
	assert_int_equal(t.payload_len, 65495);
	addrs6(&ib);
	assert_int_equal(tun_tcp_build_pkt(&ib, &tb, NULL, 65515, big, sizeof(big)), 65575);
	assert_int_equal(tun_tcp_build_pkt(&ib, &tb, NULL, 65516, big, sizeof(big)), TUN_IP_ENOSPACE);
	assert_int_equal(tun_ip_parse(big, 65575, &ip), 0);
	assert_true(tun_l4_csum_ok(&ip));
	/* mixed families */
	tun_ipaddr_v4(&ib.dst, 1);
	assert_int_equal(tun_tcp_build_pkt(&ib, &tb, NULL, 0, big, sizeof(big)), TUN_IP_EINVAL);
	tb.wscale = 15;
	addrs4(&ib);
	assert_int_equal(tun_tcp_build_pkt(&ib, &tb, NULL, 0, big, sizeof(big)), TUN_IP_EINVAL);
}

/* csum_partial (vnet_hdr NEEDS_CSUM): the field holds the pseudo-header sum; what
 * the kernel then does (checksum from the L4 header on, stored at the field) gives
 * the packet a full build makes. UDP likewise; ICMP is never partial. */
static void partial_case(bool v6, bool udp)
{
	static uint8_t full[2048], part[2048];
	tun_ip_build ib;
	tun_tcp_build tb = { .sport = 40000,
			     .dport = 80,
			     .seq = 7,
			     .ack = 9,
			     .flags = TUN_TCP_ACK,
			     .window = 512,
			     .wscale = -1 };
	const char *pl = "partial checksums, finished by the kernel";
	size_t plen = strlen(pl), iph = v6 ? TUN_IP6_HDR : TUN_IP4_HDR, at = udp ? 6 : 16;
	int n, m;
	uint16_t c;
	tun_ip ip;

	if (v6)
		addrs6(&ib);
	else
		addrs4(&ib);
	n = udp ? tun_udp_build_pkt(&ib, 5353, 53, pl, plen, full, sizeof(full))
		: tun_tcp_build_pkt(&ib, &tb, pl, plen, full, sizeof(full));
	ib.csum_partial = true;
	m = udp ? tun_udp_build_pkt(&ib, 5353, 53, pl, plen, part, sizeof(part))
		: tun_tcp_build_pkt(&ib, &tb, pl, plen, part, sizeof(part));
	assert_true(n > 0);
	assert_int_equal(m, n);
	assert_int_equal(tun_ip_parse(part, (size_t)m, &ip), 0);
	assert_false(tun_l4_csum_ok(&ip));
	c = tun_csum(part + iph, (size_t)m - iph);
	part[iph + at] = (uint8_t)(c >> 8);
	part[iph + at + 1] = (uint8_t)c;
	assert_memory_equal(part, full, (size_t)n);
}

static void test_csum_partial(void **state)
{
	(void)state;
	partial_case(false, false);
	partial_case(true, false);
	partial_case(false, true);
	partial_case(true, true);
}

static void test_strerror(void **state)
{
	(void)state;
	for (int i = 1; i <= TUN_IP_NERR; i++)
		for (int j = 1; j < i; j++)
			assert_string_not_equal(tun_ip_strerror(-i), tun_ip_strerror(-j));
	assert_string_equal(tun_ip_strerror(TUN_IP_EFRAG), "frag");
	assert_string_equal(tun_ip_strerror(-99), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc1071_header),   cmocka_unit_test(test_syn4_parse_build),
		cmocka_unit_test(test_udp6_parse_build), cmocka_unit_test(test_icmp_parse_build),
		cmocka_unit_test(test_unreach),          cmocka_unit_test(test_incremental),
		cmocka_unit_test(test_truncations),      cmocka_unit_test(test_ip4_refused),
		cmocka_unit_test(test_ip6_ext),          cmocka_unit_test(test_tcp_refused),
		cmocka_unit_test(test_builder_limits),   cmocka_unit_test(test_csum_partial),
		cmocka_unit_test(test_strerror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
