/* Unit tests for lib/proto.c: vectors.md §1, §3, §4, §5.1, §5.3-5.7 and §8, plus
 * truncation, corruption, wrong-magic and round-trip cases. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/proto.h"

#include "tests/unit/test_hex.h"

/* Exact-size heap copy, so ASan flags any read past len. */
static uint8_t *dup_exact(const uint8_t *buf, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	assert_non_null(p);
	memcpy(p, buf, len);
	return p;
}

/* ---- §1 CRC-32 ---- */

static void test_crc_check_value(void **state)
{
	assert_int_equal(proto_crc32("123456789", 9), 0xCBF43926);
}

static void test_crc_empty(void **state)
{
	assert_int_equal(proto_crc32("", 0), 0);
	assert_int_equal(proto_crc32(NULL, 0), 0);
}

static void test_crc_update_chains(void **state)
{
	const char *s = "The quick brown fox jumps over the lazy dog";
	size_t n = strlen(s);

	assert_int_equal(proto_crc32(s, n), 0x414FA339);
	for (size_t cut = 0; cut <= n; cut++) {
		uint32_t c = proto_crc32_update(0, s, cut);

		assert_int_equal(proto_crc32_update(c, s + cut, n - cut), 0x414FA339);
	}
}

/* ---- §3/§4 packets ---- */

struct pkt_vec {
	const char *hex;
	uint8_t version, flags, protocol;
	uint16_t src_net;
	uint32_t src_node;
	uint16_t dst_net;
	uint32_t dst_node;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint16_t window;
	uint32_t crc;
	const char *payload_hex;
};

#define A 0, 1
#define B 0, 2

static const struct pkt_vec v_syn_ref = {
	"11 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02 C0 00 03 E8 00 00 00 00 00 00 00 00 02 00 14 5E D8 74",
	1, PROTO_SYN, PROTO_STREAM, A, B, 49152, 1000, 0, 0, 512, 0x145ED874, "" };
static const struct pkt_vec v_syn_new = {
	"11 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02 C0 00 03 E8 00 00 00 00 00 00 00 00 04 00 C2 07 3B 69",
	1, PROTO_SYN, PROTO_STREAM, A, B, 49152, 1000, 0, 0, 1024, 0xC2073B69, "" };
static const struct pkt_vec v_synack = {
	"13 01 00 00 00 00 00 00 00 02 00 00 00 00 00 01 03 E8 C0 00 00 00 00 00 00 00 00 01 02 00 24 F4 0F 8E",
	1, PROTO_SYN | PROTO_ACK, PROTO_STREAM, B, A, 1000, 49152, 0, 1, 512, 0x24F40F8E, "" };
static const struct pkt_vec v_ack = {
	"12 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02 C0 00 03 E8 00 00 00 01 00 00 00 01 02 00 1E 21 FF 5A",
	1, PROTO_ACK, PROTO_STREAM, A, B, 49152, 1000, 1, 1, 512, 0x1E21FF5A, "" };
static const struct pkt_vec v_hello = {
	"12 01 00 05 00 00 00 00 00 01 00 00 00 00 00 02 C0 00 03 E8 00 00 00 01 00 00 00 01 01 F6 5E E8"
	"72 C8 68 65 6C 6C 6F",
	1, PROTO_ACK, PROTO_STREAM, A, B, 49152, 1000, 1, 1, 502, 0x5EE872C8, "68 65 6C 6C 6F" };
static const struct pkt_vec v_sack = {
	"12 01 00 15 00 00 00 00 00 02 00 00 00 00 00 01 03 E8 C0 00 00 00 00 01 00 00 00 01 02 00 D9 49"
	"40 4E 53 41 43 4B 02 00 00 10 01 00 00 20 01 00 00 30 01 00 00 40 01",
	1, PROTO_ACK, PROTO_STREAM, B, A, 1000, 49152, 1, 1, 512, 0xD949404E,
	"53 41 43 4B 02 00 00 10 01 00 00 20 01 00 00 30 01 00 00 40 01" };
static const struct pkt_vec v_keepalive = {
	"12 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02 C0 00 03 E8 00 00 00 06 00 00 00 01 00 00 7A D2 4B D2",
	1, PROTO_ACK, PROTO_STREAM, A, B, 49152, 1000, 6, 1, 0, 0x7AD24BD2, "" };
static const struct pkt_vec v_fin = {
	"14 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02 C0 00 03 E8 00 00 00 06 00 00 00 00 00 00 07 A8 A6 D2",
	1, PROTO_FIN, PROTO_STREAM, A, B, 49152, 1000, 6, 0, 0, 0x07A8A6D2, "" };
static const struct pkt_vec v_finack = {
	"16 01 00 00 00 00 00 00 00 02 00 00 00 00 00 01 03 E8 C0 00 00 00 00 01 00 00 00 07 00 00 7D E9 51 91",
	1, PROTO_FIN | PROTO_ACK, PROTO_STREAM, B, A, 1000, 49152, 1, 7, 0, 0x7DE95191, "" };
static const struct pkt_vec v_rst = {
	"18 01 00 00 00 00 00 00 00 02 00 00 00 00 00 01 03 E8 C0 00 00 00 00 00 00 00 00 00 00 00 5D AE D9 9A",
	1, PROTO_RST, PROTO_STREAM, B, A, 1000, 49152, 0, 0, 0, 0x5DAED99A, "" };
static const struct pkt_vec v_syn_v0 = {
	"01 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02 C0 00 03 E8 00 00 00 00 00 00 00 00 02 00 31 E8 C1 D7",
	0, PROTO_SYN, PROTO_STREAM, A, B, 49152, 1000, 0, 0, 512, 0x31E8C1D7, "" };
/* §4 */
static const struct pkt_vec v_dgram = {
	"10 02 00 04 00 01 F2 91 00 04 00 01 00 00 00 02 C0 01 00 07 00 00 00 00 00 00 00 00 00 00 B7 39"
	"C7 32 70 69 6E 67",
	1, 0, PROTO_DATAGRAM, 1, 0xF2910004, 1, 2, 49153, 7, 0, 0, 0, 0xB739C732, "70 69 6E 67" };
static const struct pkt_vec v_ping = {
	"10 03 00 03 00 00 00 00 00 01 00 00 00 00 00 02 C0 02 00 00 00 00 00 2A 00 00 00 00 00 00 B9 C4"
	"03 AD 61 62 63",
	1, 0, PROTO_CONTROL, A, B, 49154, 0, 42, 0, 0, 0xB9C403AD, "61 62 63" };
static const struct pkt_vec v_pong = {
	"12 03 00 03 00 00 00 00 00 02 00 00 00 00 00 01 00 00 C0 02 00 00 00 2A 00 00 00 2B 00 00 31 1F"
	"80 B7 61 62 63",
	1, PROTO_ACK, PROTO_CONTROL, B, A, 0, 49154, 42, 43, 0, 0x311F80B7, "61 62 63" };
static const struct pkt_vec v_tun_keepalive = {
	"10 03 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 9A 5B 54 92",
	1, 0, PROTO_CONTROL, A, 0, 0, 0, 0, 0, 0, 0, 0x9A5B5492, "" };
static const struct pkt_vec v_probe = {
	"10 03 00 0C 00 00 00 00 00 01 00 00 00 00 00 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 D4 8A"
	"C5 B2 70 61 74 68 70 72 6F 62 65 2E 76 31",
	1, 0, PROTO_CONTROL, A, B, 0, 0, 0, 0, 0, 0xD48AC5B2, "70 61 74 68 70 72 6F 62 65 2E 76 31" };
static const struct pkt_vec v_probe_pong = {
	"12 03 00 0C 00 00 00 00 00 02 00 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 01 00 00 B5 B2"
	"74 DF 70 61 74 68 70 72 6F 62 65 2E 76 31",
	1, PROTO_ACK, PROTO_CONTROL, B, A, 0, 0, 0, 1, 0, 0xB5B274DF, "70 61 74 68 70 72 6F 62 65 2E 76 31" };

static const struct pkt_vec *const all_pkts[] = {
	&v_syn_ref, &v_syn_new, &v_synack, &v_ack, &v_hello, &v_sack, &v_keepalive, &v_fin,
	&v_finack, &v_rst, &v_syn_v0, &v_dgram, &v_ping, &v_pong, &v_tun_keepalive, &v_probe,
	&v_probe_pong,
};
#define N_PKTS (sizeof(all_pkts) / sizeof(all_pkts[0]))

static proto_hdr vec_hdr(const struct pkt_vec *v)
{
	proto_hdr h = {
		.version = v->version, .flags = v->flags, .protocol = v->protocol,
		.src = pilot_addr_make(v->src_net, v->src_node),
		.dst = pilot_addr_make(v->dst_net, v->dst_node),
		.src_port = v->sport, .dst_port = v->dport, .seq = v->seq, .ack = v->ack,
		.window = v->window,
	};

	return h;
}

static void assert_hdr_matches(const proto_hdr *h, const struct pkt_vec *v, size_t plen)
{
	assert_int_equal(h->version, v->version);
	assert_int_equal(h->flags, v->flags);
	assert_int_equal(h->protocol, v->protocol);
	assert_int_equal(h->payload_len, plen);
	assert_true(pilot_addr_eq(h->src, pilot_addr_make(v->src_net, v->src_node)));
	assert_true(pilot_addr_eq(h->dst, pilot_addr_make(v->dst_net, v->dst_node)));
	assert_int_equal(h->src_port, v->sport);
	assert_int_equal(h->dst_port, v->dport);
	assert_int_equal(h->seq, v->seq);
	assert_int_equal(h->ack, v->ack);
	assert_int_equal(h->window, v->window);
	assert_int_equal(h->checksum, v->crc);
}

/* One test per vector: fields → exact bytes, bytes → fields. */
static void test_packet_vector(void **state)
{
	const struct pkt_vec *v = *state;
	uint8_t want[128], payload[64], out[128];
	size_t n = unhex(v->hex, want, sizeof(want));
	size_t plen = unhex(v->payload_hex, payload, sizeof(payload));
	proto_hdr h = vec_hdr(v), got;
	const uint8_t *p = NULL;
	uint8_t *exact;

	assert_int_equal(n, PROTO_HDR_SIZE + plen);
	h.payload_len = 999;   /* encode must ignore these */
	h.checksum = 0xDEADBEEF;
	assert_int_equal(proto_packet_encode(&h, payload, plen, out, sizeof(out)), (int)n);
	assert_memory_equal(out, want, n);

	exact = dup_exact(want, n);
	assert_int_equal(proto_packet_decode(exact, n, 0, &got, &p), 0);
	assert_hdr_matches(&got, v, plen);
	assert_ptr_equal(p, exact + PROTO_HDR_SIZE);
	assert_memory_equal(p, payload, plen);
	/* new receivers refuse anything but version 1 (after the CRC check) */
	assert_int_equal(proto_packet_decode(exact, n, 1, &got, &p),
			 v->version == PROTO_VERSION ? 0 : -EPROTO);
	memset(&got, 0, sizeof(got));
	assert_int_equal(proto_hdr_decode(exact, PROTO_HDR_SIZE, &got), 0);
	assert_hdr_matches(&got, v, plen);
	free(exact);
}

/* 3.5: the SACK payload itself. */
static void test_sack_vector(void **state)
{
	uint8_t pkt[128], enc[PROTO_SACK_MAX_LEN];
	size_t n = unhex(v_sack.hex, pkt, sizeof(pkt));
	const uint8_t *payload = pkt + PROTO_HDR_SIZE;
	proto_sack_block b[PROTO_SACK_MAX_BLOCKS];

	assert_int_equal(proto_sack_decode(payload, n - PROTO_HDR_SIZE, b), 2);
	assert_int_equal(b[0].left, 4097);
	assert_int_equal(b[0].right, 8193);
	assert_int_equal(b[1].left, 12289);
	assert_int_equal(b[1].right, 16385);
	assert_int_equal(proto_sack_encode(b, 2, enc, sizeof(enc)), 21);
	assert_memory_equal(enc, payload, 21);
	assert_true(proto_sack_lookalike(payload, 21));
}

/* Every length short of the full packet is -EMSGSIZE. */
static void test_packet_truncated(void **state)
{
	uint8_t buf[128];
	proto_hdr h;
	const uint8_t *p;

	for (size_t i = 0; i < N_PKTS; i++) {
		size_t n = unhex(all_pkts[i]->hex, buf, sizeof(buf));

		for (size_t len = 0; len < n; len++) {
			uint8_t *exact = dup_exact(buf, len);

			assert_int_equal(proto_packet_decode(exact, len, 0, &h, &p), -EMSGSIZE);
			if (len < PROTO_HDR_SIZE)
				assert_int_equal(proto_hdr_decode(exact, len, &h), -EMSGSIZE);
			free(exact);
		}
	}
	assert_int_equal(proto_packet_decode(NULL, 0, 0, &h, &p), -EMSGSIZE);
}

/* Any single changed byte in the covered region is caught. Changing payload_len can
 * make the packet look truncated instead. */
static void test_packet_corrupt_each_byte(void **state)
{
	static const uint8_t xors[] = { 0x01, 0x80, 0xFF, 0x5A };
	uint8_t buf[128];
	proto_hdr h;
	const uint8_t *p;

	for (size_t i = 0; i < N_PKTS; i++) {
		size_t n = unhex(all_pkts[i]->hex, buf, sizeof(buf));

		for (size_t off = 0; off < n; off++) {
			for (size_t x = 0; x < sizeof(xors); x++) {
				int ret;

				buf[off] ^= xors[x];
				ret = proto_packet_decode(buf, n, 0, &h, &p);
				buf[off] ^= xors[x];
				if (off == 2 || off == 3)
					assert_true(ret == -EBADMSG || ret == -EMSGSIZE);
				else
					assert_int_equal(ret, -EBADMSG);
			}
		}
	}
}

static void test_packet_trailing_ignored(void **state)
{
	uint8_t buf[160];
	proto_hdr h;
	const uint8_t *p;

	for (size_t i = 0; i < N_PKTS; i++) {
		size_t n = unhex(all_pkts[i]->hex, buf, sizeof(buf));

		memset(buf + n, 0xA5, 20);
		assert_int_equal(proto_packet_decode(buf, n + 20, 0, &h, &p), 0);
		assert_hdr_matches(&h, all_pkts[i], n - PROTO_HDR_SIZE);
		assert_ptr_equal(p, buf + PROTO_HDR_SIZE);
	}
}

static void test_packet_oversize_payload_len(void **state)
{
	uint8_t buf[200];
	size_t n = unhex(v_hello.hex, buf, sizeof(buf));
	proto_hdr h;
	const uint8_t *p;

	memset(buf + n, 0, sizeof(buf) - n);
	proto_put16(buf + 2, 0xFFFF);
	assert_int_equal(proto_packet_decode(buf, sizeof(buf), 0, &h, &p), -EMSGSIZE);
	proto_put16(buf + 2, (uint16_t)(sizeof(buf) - PROTO_HDR_SIZE + 1));
	assert_int_equal(proto_packet_decode(buf, sizeof(buf), 0, &h, &p), -EMSGSIZE);
	/* fits, but the CRC no longer matches */
	proto_put16(buf + 2, (uint16_t)(sizeof(buf) - PROTO_HDR_SIZE));
	assert_int_equal(proto_packet_decode(buf, sizeof(buf), 0, &h, &p), -EBADMSG);
}

/* Order: size, then CRC, then version. A v0 packet with a bad CRC is -EBADMSG. */
static void test_packet_check_order(void **state)
{
	uint8_t buf[64];
	size_t n = unhex(v_syn_v0.hex, buf, sizeof(buf));
	proto_hdr h;
	const uint8_t *p;

	buf[n - 1] ^= 1;
	assert_int_equal(proto_packet_decode(buf, n, 1, &h, &p), -EBADMSG);
	/* _checked skips only the CRC (verified before by the caller): version next */
	assert_int_equal(proto_packet_decode_checked(buf, n, 1, &h, &p), -EPROTO);
	assert_int_equal(proto_packet_decode_checked(buf, n, 0, &h, &p), 0);
	/* a bad CRC and a short payload: the size check wins */
	proto_put16(buf + 2, 1);
	assert_int_equal(proto_packet_decode(buf, n, 1, &h, &p), -EMSGSIZE);
	assert_int_equal(proto_packet_decode_checked(buf, n, 1, &h, &p), -EMSGSIZE);
}

static void test_packet_encode_limits(void **state)
{
	static uint8_t big[PROTO_MAX_PACKET + 1];
	proto_hdr h = vec_hdr(&v_hello), got;
	const uint8_t *p;

	assert_int_equal(proto_packet_encode(&h, big, PROTO_MAX_PAYLOAD + 1, big, sizeof(big)),
			 -EMSGSIZE);
	assert_int_equal(proto_packet_encode(&h, "hello", 5, big, 38), -EMSGSIZE);
	assert_int_equal(proto_packet_encode(&h, NULL, 0, big, 33), -EMSGSIZE);
	assert_int_equal(proto_packet_encode(&h, NULL, 5, big, 64), -EINVAL);
	assert_int_equal(proto_packet_encode(&h, NULL, 0, big, 34), 34);
	/* the largest packet, payload already in place */
	memset(big + PROTO_HDR_SIZE, 0x3C, PROTO_MAX_PAYLOAD);
	assert_int_equal(proto_packet_encode(&h, big + PROTO_HDR_SIZE, PROTO_MAX_PAYLOAD, big,
					     PROTO_MAX_PACKET), PROTO_MAX_PACKET);
	assert_int_equal(proto_packet_decode(big, PROTO_MAX_PACKET, 1, &got, &p), 0);
	assert_int_equal(got.payload_len, PROTO_MAX_PAYLOAD);
	assert_int_equal(p[PROTO_MAX_PAYLOAD - 1], 0x3C);
}

static void test_packet_encode_in_place(void **state)
{
	uint8_t want[64], out[64];
	size_t n = unhex(v_hello.hex, want, sizeof(want));
	proto_hdr h = vec_hdr(&v_hello);

	memset(out, 0xEE, sizeof(out));
	memcpy(out + PROTO_HDR_SIZE, "hello", 5);
	assert_int_equal(proto_packet_encode(&h, out + PROTO_HDR_SIZE, 5, out, sizeof(out)), (int)n);
	assert_memory_equal(out, want, n);
}

/* Payload overlapping the header area of out (memmove semantics). */
static void test_packet_encode_overlap(void **state)
{
	uint8_t want[64], out[64];
	size_t n = unhex(v_probe.hex, want, sizeof(want));
	proto_hdr h = vec_hdr(&v_probe);

	memcpy(out + 10, "pathprobe.v1", 12);
	assert_int_equal(proto_packet_encode(&h, out + 10, 12, out, sizeof(out)), (int)n);
	assert_memory_equal(out, want, n);
	memcpy(out + 40, "pathprobe.v1", 12);
	assert_int_equal(proto_packet_encode(&h, out + 40, 12, out, sizeof(out)), (int)n);
	assert_memory_equal(out, want, n);
}

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s;
}

static void test_packet_round_trip(void **state)
{
	static uint8_t payload[2048], out[PROTO_HDR_SIZE + 2048], again[PROTO_HDR_SIZE + 2048];
	uint32_t seed = 99;

	for (int i = 0; i < 2000; i++) {
		proto_hdr h = {
			.version = (uint8_t)(lcg(&seed) & 0xF), .flags = (uint8_t)(lcg(&seed) & 0xF),
			.protocol = (uint8_t)lcg(&seed),
			.src = pilot_addr_make((uint16_t)lcg(&seed), lcg(&seed)),
			.dst = pilot_addr_make((uint16_t)lcg(&seed), lcg(&seed)),
			.src_port = (uint16_t)lcg(&seed), .dst_port = (uint16_t)lcg(&seed),
			.seq = lcg(&seed), .ack = lcg(&seed), .window = (uint16_t)lcg(&seed),
		}, got;
		size_t plen = lcg(&seed) % sizeof(payload);
		const uint8_t *p;
		int n;

		for (size_t j = 0; j < plen; j++)
			payload[j] = (uint8_t)lcg(&seed);
		n = proto_packet_encode(&h, payload, plen, out, sizeof(out));
		assert_int_equal(n, (int)(PROTO_HDR_SIZE + plen));
		assert_int_equal(proto_packet_decode(out, (size_t)n, 0, &got, &p), 0);
		assert_int_equal(got.version, h.version);
		assert_int_equal(got.flags, h.flags);
		assert_int_equal(got.protocol, h.protocol);
		assert_int_equal(got.payload_len, plen);
		assert_true(pilot_addr_eq(got.src, h.src) && pilot_addr_eq(got.dst, h.dst));
		assert_int_equal(got.seq, h.seq);
		assert_int_equal(got.ack, h.ack);
		assert_int_equal(got.window, h.window);
		assert_memory_equal(p, payload, plen);
		/* decode → encode gives the same bytes */
		assert_int_equal(proto_packet_encode(&got, p, got.payload_len, again, sizeof(again)), n);
		assert_memory_equal(again, out, (size_t)n);
	}
}

static void test_hdr_encode_raw(void **state)
{
	uint8_t want[64], out[PROTO_HDR_SIZE];
	proto_hdr h = vec_hdr(&v_hello);

	unhex(v_hello.hex, want, sizeof(want));
	h.payload_len = 5;
	h.checksum = v_hello.crc;
	proto_hdr_encode(&h, out);
	assert_memory_equal(out, want, PROTO_HDR_SIZE);
}

/* ---- SACK (packet.md §5.8) ---- */

static void test_sack_round_trip(void **state)
{
	proto_sack_block in[4] = { { 1, 2 }, { 0xFFFFFFFF, 0 }, { 100, 200 }, { 7, 0x80000000 } };
	proto_sack_block out[4];
	uint8_t buf[PROTO_SACK_MAX_LEN + 8];

	for (int n = 1; n <= 4; n++) {
		int len = proto_sack_encode(in, n, buf, sizeof(buf));

		assert_int_equal(len, 5 + 8 * n);
		assert_memory_equal(buf, "SACK", 4);
		assert_int_equal(buf[4], n);
		memset(out, 0, sizeof(out));
		assert_int_equal(proto_sack_decode(buf, (size_t)len, out), n);
		assert_memory_equal(out, in, sizeof(out[0]) * (size_t)n);
		/* extra bytes after the blocks are ignored */
		assert_int_equal(proto_sack_decode(buf, sizeof(buf), out), n);
		for (int cut = 0; cut < len; cut++) {
			uint8_t *exact = dup_exact(buf, (size_t)cut);

			assert_int_equal(proto_sack_decode(exact, (size_t)cut, out), 0);
			assert_false(proto_sack_lookalike(exact, (size_t)cut));
			free(exact);
		}
	}
}

static void test_sack_reject(void **state)
{
	uint8_t buf[64] = "SACK";
	proto_sack_block out[4];

	buf[4] = 0;
	assert_int_equal(proto_sack_decode(buf, sizeof(buf), out), 0);
	for (int n = 5; n < 256; n++) {
		buf[4] = (uint8_t)n;
		assert_int_equal(proto_sack_decode(buf, sizeof(buf), out), 0);
		assert_false(proto_sack_lookalike(buf, sizeof(buf)));
	}
	buf[4] = 1;
	buf[0] = 's';
	assert_int_equal(proto_sack_decode(buf, sizeof(buf), out), 0);
	assert_int_equal(proto_sack_decode(NULL, 0, out), 0);
}

static void test_sack_encode_errors(void **state)
{
	proto_sack_block b[5] = { { 0 } };
	uint8_t buf[64];

	assert_int_equal(proto_sack_encode(b, 0, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(proto_sack_encode(b, 5, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(proto_sack_encode(b, -1, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(proto_sack_encode(b, 2, buf, 20), -EMSGSIZE);
	assert_int_equal(proto_sack_encode(b, 2, buf, 21), 21);
}

/* Data that a peer would swallow as a SACK report (§5.5). */
static void test_sack_lookalike(void **state)
{
	uint8_t d[16] = { 'S', 'A', 'C', 'K', 1 };

	assert_true(proto_sack_lookalike(d, 13));
	assert_true(proto_sack_lookalike(d, 16));
	assert_false(proto_sack_lookalike(d, 12));
	assert_false(proto_sack_lookalike((const uint8_t *)"SACK is great", 13));
	assert_false(proto_sack_lookalike((const uint8_t *)"hello", 5));
}

/* ---- tunnel frames ---- */

static const char syn_hex[] =
	"11 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02 C0 00 03 E8 00 00 00 00 00 00 00 00 02 00 14 5E D8 74";
static const char pilt_hex[] =
	"50 49 4C 54 11 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02 C0 00 03 E8 00 00 00 00 00 00 00 00"
	"02 00 14 5E D8 74";
static const char x25519_a_hex[] =
	"0d80901c6a3a4f58814fd005b3ec2529efe37e2454a66aafdced193a63d6784f";
static const char ed25519_a_hex[] =
	"537a76ac332a282a76a493bb3f7f62049541b76676b45bdcb11773e1aec4cd7c";
static const char pilk_hex[] =
	"50 49 4C 4B 00 00 00 01 0D 80 90 1C 6A 3A 4F 58 81 4F D0 05 B3 EC 25 29 EF E3 7E 24 54 A6 6A AF"
	"DC ED 19 3A 63 D6 78 4F";
static const char pila_msg_hex[] =
	"61 75 74 68 00 00 00 01 0D 80 90 1C 6A 3A 4F 58 81 4F D0 05 B3 EC 25 29 EF E3 7E 24 54 A6 6A AF"
	"DC ED 19 3A 63 D6 78 4F";
static const char pila_hex[] =
	"50 49 4C 41 00 00 00 01 0D 80 90 1C 6A 3A 4F 58 81 4F D0 05 B3 EC 25 29 EF E3 7E 24 54 A6 6A AF"
	"DC ED 19 3A 63 D6 78 4F 53 7A 76 AC 33 2A 28 2A 76 A4 93 BB 3F 7F 62 04 95 41 B7 66 76 B4 5B DC"
	"B1 17 73 E1 AE C4 CD 7C 5B 32 27 8A 68 78 F8 66 60 84 B5 67 DB 3B 3A FA 1B 84 81 2D 15 03 A6 1D"
	"38 3B BF 2C 29 68 68 5F 03 ED 12 40 AA 47 CF 88 F3 4F 4B 16 C9 E9 FD 88 6F 03 1C 56 08 2E BC BE"
	"47 DE 76 3F FF 26 95 04";
static const char pils_ref_hex[] =
	"50 49 4C 53 00 00 00 01 A1 A2 A3 A4 00 00 00 00 00 00 00 01 AE DF 80 B4 F4 3E 61 26 90 6F 46 DF"
	"B7 B6 31 4D 84 73 C4 03 FA 14 87 E8 25 5C 7D 78 70 ED 49 A2 63 A9 5D EB B5 CC AB 29 AC 25 5C B4"
	"A5 58 B7 8E 65 C6";
static const char pils_new_hex[] =
	"50 49 4C 53 00 00 00 01 A1 A2 A3 A4 00 00 00 00 00 00 00 01 A0 0F F8 42 A3 D7 F4 F4 BF 2F 1F 3C"
	"18 91 76 39 4B F5 0F F6 53 92 45 85 91 75 26 7A 5F 9E C4 0B 8F 3D 4A 3E D0 CE A3 73 43 04 C1 62"
	"61 AA BD 90 A5 C9";
static const char relay_hex[] =
	"05 00 00 00 01 00 00 00 02 50 49 4C 54 11 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02 C0 00 03"
	"E8 00 00 00 00 00 00 00 00 02 00 14 5E D8 74";
static const char deliver_hex[] =
	"06 00 00 00 01 50 49 4C 54 11 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02 C0 00 03 E8 00 00 00"
	"00 00 00 00 00 02 00 14 5E D8 74";

/* 5.1 */
static void test_pilt_vector(void **state)
{
	uint8_t frame[64], syn[64], out[64];
	size_t n = unhex(pilt_hex, frame, sizeof(frame));
	size_t sn = unhex(syn_hex, syn, sizeof(syn));
	const uint8_t *pkt;
	size_t pkt_len;
	proto_hdr h;

	assert_int_equal(n, 38);
	assert_int_equal(proto_frame_classify(frame, n), PROTO_FRAME_PILT);
	assert_int_equal(proto_pilt_decode(frame, n, &pkt, &pkt_len), 0);
	assert_ptr_equal(pkt, frame + 4);
	assert_int_equal(pkt_len, sn);
	assert_memory_equal(pkt, syn, sn);
	assert_int_equal(proto_packet_decode(pkt, pkt_len, 1, &h, NULL), 0);
	assert_int_equal(h.flags, PROTO_SYN);
	assert_int_equal(proto_pilt_wrap(syn, sn, out, sizeof(out)), 38);
	assert_memory_equal(out, frame, 38);
	/* the packet may already be in place after the magic */
	memset(out, 0, sizeof(out));
	memcpy(out + 4, syn, sn);
	assert_int_equal(proto_pilt_wrap(out + 4, sn, out, sizeof(out)), 38);
	assert_memory_equal(out, frame, 38);
}

static void test_pilt_errors(void **state)
{
	uint8_t frame[64], out[64];
	size_t n = unhex(pilt_hex, frame, sizeof(frame));
	const uint8_t *pkt;
	size_t pkt_len;

	assert_int_equal(proto_pilt_wrap(frame + 4, 34, out, 37), -EMSGSIZE);
	assert_int_equal(proto_pilt_wrap(frame + 4, 33, out, sizeof(out)), -EINVAL);
	/* trailing bytes stay with the packet; the packet decoder ignores them */
	frame[n] = 0xAB;
	assert_int_equal(proto_pilt_decode(frame, n + 1, &pkt, &pkt_len), 0);
	assert_int_equal(pkt_len, 35);
	frame[3] = 'X';
	assert_int_equal(proto_pilt_decode(frame, n, &pkt, &pkt_len), -EPROTO);
}

/* 5.3 */
static void test_pilk_vector(void **state)
{
	uint8_t frame[64], key[32], out[64];
	size_t n = unhex(pilk_hex, frame, sizeof(frame));
	proto_pilk k;

	unhex(x25519_a_hex, key, sizeof(key));
	assert_int_equal(n, PROTO_PILK_LEN);
	assert_int_equal(proto_frame_classify(frame, n), PROTO_FRAME_PILK);
	assert_int_equal(proto_pilk_decode(frame, n, &k), 0);
	assert_int_equal(k.node, 1);
	assert_memory_equal(k.x25519, key, 32);
	assert_int_equal(proto_pilk_encode(&k, out, sizeof(out)), PROTO_PILK_LEN);
	assert_memory_equal(out, frame, n);
	assert_int_equal(proto_pilk_encode(&k, out, PROTO_PILK_LEN - 1), -EMSGSIZE);
}

/* 5.4 */
static void test_pila_vector(void **state)
{
	uint8_t frame[160], x[32], ed[32], msg[40], out[160];
	size_t n = unhex(pila_hex, frame, sizeof(frame));
	proto_pila a;

	unhex(x25519_a_hex, x, sizeof(x));
	unhex(ed25519_a_hex, ed, sizeof(ed));
	assert_int_equal(unhex(pila_msg_hex, msg, sizeof(msg)), PROTO_PILA_SIGNED_LEN);
	assert_int_equal(n, PROTO_PILA_LEN);
	assert_int_equal(proto_frame_classify(frame, n), PROTO_FRAME_PILA);
	assert_int_equal(proto_pila_decode(frame, n, &a), 0);
	assert_int_equal(a.node, 1);
	assert_memory_equal(a.x25519, x, 32);
	assert_memory_equal(a.ed25519, ed, 32);
	assert_memory_equal(a.sig, frame + 72, 64);
	assert_int_equal(a.sig[0], 0x5B);
	assert_int_equal(a.sig[63], 0x04);
	proto_pila_signed_msg(a.node, a.x25519, out);
	assert_memory_equal(out, msg, PROTO_PILA_SIGNED_LEN);
	assert_int_equal(proto_pila_encode(&a, out, sizeof(out)), PROTO_PILA_LEN);
	assert_memory_equal(out, frame, n);
	assert_int_equal(proto_pila_encode(&a, out, PROTO_PILA_LEN - 1), -EMSGSIZE);
}

/* 5.5: layout only; decryption is tested with the crypto module. */
static void check_pils_layout(const char *hex)
{
	uint8_t frame[80];
	static const uint8_t nonce[12] = { 0xA1, 0xA2, 0xA3, 0xA4, 0, 0, 0, 0, 0, 0, 0, 1 };
	size_t n = unhex(hex, frame, sizeof(frame));
	uint8_t *exact = dup_exact(frame, n);
	proto_pils s;

	assert_int_equal(n, 70);
	assert_int_equal(proto_frame_classify(exact, n), PROTO_FRAME_PILS);
	assert_int_equal(proto_pils_decode(exact, n, &s), 0);
	assert_int_equal(s.node, 1);
	assert_ptr_equal(s.nonce, exact + 8);
	assert_memory_equal(s.nonce, nonce, 12);
	assert_int_equal(s.counter, 1);
	assert_ptr_equal(s.ct, exact + 20);
	assert_int_equal(s.ct_len, 34);
	assert_memory_equal(exact, frame, n); /* not modified */
	free(exact);
}

static void test_pils_ref_vector(void **state)
{
	check_pils_layout(pils_ref_hex);
}

static void test_pils_new_vector(void **state)
{
	check_pils_layout(pils_new_hex);
}

static void test_pils_counter_and_empty(void **state)
{
	uint8_t f[PROTO_PILS_OVERHEAD] = { 'P', 'I', 'L', 'S', 0xFF, 0xFF, 0xFF, 0xFE };
	proto_pils s;

	proto_put64(f + 12, 0x0102030405060708ull);
	assert_int_equal(proto_pils_decode(f, sizeof(f), &s), 0);
	assert_int_equal(s.node, 0xFFFFFFFE);
	assert_true(s.counter == 0x0102030405060708ull);
	assert_int_equal(s.ct_len, 0);
	f[0] = 'Q';
	assert_int_equal(proto_pils_decode(f, sizeof(f), &s), -EPROTO);
}

/* 5.6 */
static void test_relay_vector(void **state)
{
	uint8_t msg[64], frame[64], out[64];
	size_t n = unhex(relay_hex, msg, sizeof(msg));
	size_t fn = unhex(pilt_hex, frame, sizeof(frame));
	proto_beacon_msg m;

	assert_int_equal(n, 47);
	assert_int_equal(proto_frame_classify(msg, n), PROTO_FRAME_BEACON);
	assert_int_equal(proto_beacon_decode(msg, n, &m), 0);
	assert_int_equal(m.type, BEACON_RELAY);
	assert_int_equal(m.node, 1);
	assert_int_equal(m.target, 2);
	assert_ptr_equal(m.rest, msg + 9);
	assert_int_equal(m.rest_len, fn);
	assert_memory_equal(m.rest, frame, fn);
	assert_int_equal(proto_frame_classify(m.rest, m.rest_len), PROTO_FRAME_PILT);
	proto_beacon_relay_hdr(1, 2, out);
	memcpy(out + BEACON_RELAY_HDR, frame, fn);
	assert_memory_equal(out, msg, n);
}

static void test_relay_deliver_vector(void **state)
{
	uint8_t msg[64], frame[64], out[64];
	size_t n = unhex(deliver_hex, msg, sizeof(msg));
	size_t fn = unhex(pilt_hex, frame, sizeof(frame));
	proto_beacon_msg m;

	assert_int_equal(n, 43);
	assert_int_equal(proto_beacon_decode(msg, n, &m), 0);
	assert_int_equal(m.type, BEACON_RELAY_DELIVER);
	assert_int_equal(m.node, 1);
	assert_ptr_equal(m.rest, msg + 5);
	assert_int_equal(m.rest_len, fn);
	assert_memory_equal(m.rest, frame, fn);
	proto_beacon_deliver_hdr(1, out);
	memcpy(out + BEACON_RELAY_DELIVER_HDR, frame, fn);
	assert_memory_equal(out, msg, n);
}

static void test_relay_pils(void **state)
{
	uint8_t frame[80], msg[96];
	size_t fn = unhex(pils_ref_hex, frame, sizeof(frame));
	proto_beacon_msg m;
	proto_pils s;

	proto_beacon_relay_hdr(1, 2, msg);
	memcpy(msg + 9, frame, fn);
	assert_int_equal(proto_beacon_decode(msg, 9 + fn, &m), 0);
	assert_int_equal(9 + fn, 79);
	assert_int_equal(m.rest_len, 70);
	proto_beacon_deliver_hdr(1, msg);
	memcpy(msg + 5, frame, fn);
	assert_int_equal(proto_beacon_decode(msg, 5 + fn, &m), 0);
	assert_int_equal(5 + fn, 75);
	assert_int_equal(proto_frame_classify(m.rest, m.rest_len), PROTO_FRAME_PILS);
	assert_int_equal(proto_pils_decode(msg + 5, m.rest_len, &s), 0);
	assert_int_equal(s.counter, 1);
}

/* 5.7 */
static void test_pilp_vector(void **state)
{
	static const uint8_t bare[] = { 0x50, 0x49, 0x4C, 0x50 };
	static const uint8_t with_node[] = { 0x50, 0x49, 0x4C, 0x50, 0, 0, 0, 1 };
	uint8_t out[8];

	assert_int_equal(proto_pilp_encode(0, out, sizeof(out)), 4);
	assert_memory_equal(out, bare, 4);
	assert_int_equal(proto_pilp_encode(1, out, sizeof(out)), 8);
	assert_memory_equal(out, with_node, 8);
	assert_int_equal(proto_frame_classify(bare, 4), PROTO_FRAME_PILP);
	assert_int_equal(proto_frame_classify(with_node, 8), PROTO_FRAME_PILP);
	assert_int_equal(proto_pilp_encode(0, out, 3), -EMSGSIZE);
	assert_int_equal(proto_pilp_encode(1, out, 7), -EMSGSIZE);
}

/* tunnel.md §1 minimum lengths, at every length up to the minimum. */
static void test_classify_min_lengths(void **state)
{
	static const struct {
		const char *magic;
		size_t min;
		enum proto_frame_kind kind;
	} k[] = {
		{ "PILT", 38, PROTO_FRAME_PILT }, { "PILS", 36, PROTO_FRAME_PILS },
		{ "PILK", 40, PROTO_FRAME_PILK }, { "PILA", 136, PROTO_FRAME_PILA },
		{ "PILP", 4, PROTO_FRAME_PILP },
	};
	uint8_t buf[200] = { 0 };

	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
		memcpy(buf, k[i].magic, 4);
		for (size_t len = 0; len <= k[i].min + 4; len++) {
			uint8_t *exact = dup_exact(buf, len);
			enum proto_frame_kind want = len >= k[i].min ? k[i].kind : PROTO_FRAME_INVALID;

			assert_int_equal(proto_frame_classify(exact, len), want);
			free(exact);
		}
	}
}

static void test_classify_other(void **state)
{
	uint8_t buf[200] = { 0 };

	assert_int_equal(proto_frame_classify(buf, 0), PROTO_FRAME_INVALID);
	assert_int_equal(proto_frame_classify(NULL, 0), PROTO_FRAME_INVALID);
	for (int b = 0; b < 0x10; b++) {
		buf[0] = (uint8_t)b;
		assert_int_equal(proto_frame_classify(buf, 1), PROTO_FRAME_BEACON);
	}
	for (int b = 0x10; b < 0x100; b++) {
		buf[0] = (uint8_t)b;
		assert_int_equal(proto_frame_classify(buf, sizeof(buf)), PROTO_FRAME_INVALID);
	}
	memcpy(buf, "PILX", 4);
	assert_int_equal(proto_frame_classify(buf, sizeof(buf)), PROTO_FRAME_INVALID);
	memcpy(buf, "pilt", 4);
	assert_int_equal(proto_frame_classify(buf, sizeof(buf)), PROTO_FRAME_INVALID);
	memcpy(buf, "PIL", 3);
	assert_int_equal(proto_frame_classify(buf, 3), PROTO_FRAME_INVALID);
}

/* Each frame decoder: -EMSGSIZE below its minimum, -EPROTO on another frame's magic. */
static void test_frame_decoders_truncated_and_magic(void **state)
{
	uint8_t pilt[64], pils[80], pilk[64], pila[160];
	size_t nt = unhex(pilt_hex, pilt, sizeof(pilt));
	size_t ns = unhex(pils_ref_hex, pils, sizeof(pils));
	size_t nk = unhex(pilk_hex, pilk, sizeof(pilk));
	size_t na = unhex(pila_hex, pila, sizeof(pila));
	const uint8_t *pkt;
	size_t pkt_len;
	proto_pilk k;
	proto_pila a;
	proto_pils s;

	for (size_t len = 0; len < na; len++) {
		uint8_t *t = dup_exact(pilt, len < nt ? len : nt);
		uint8_t *e = dup_exact(pils, len < ns ? len : ns);
		uint8_t *kk = dup_exact(pilk, len < nk ? len : nk);
		uint8_t *aa = dup_exact(pila, len);

		if (len < nt)
			assert_int_equal(proto_pilt_decode(t, len, &pkt, &pkt_len), -EMSGSIZE);
		if (len < 36)
			assert_int_equal(proto_pils_decode(e, len, &s), -EMSGSIZE);
		if (len < nk)
			assert_int_equal(proto_pilk_decode(kk, len, &k), -EMSGSIZE);
		assert_int_equal(proto_pila_decode(aa, len, &a), -EMSGSIZE);
		free(t);
		free(e);
		free(kk);
		free(aa);
	}
	/* the PILA frame is long enough for every decoder; only the magic is wrong */
	assert_int_equal(proto_pilt_decode(pila, na, &pkt, &pkt_len), -EPROTO);
	assert_int_equal(proto_pils_decode(pila, na, &s), -EPROTO);
	assert_int_equal(proto_pilk_decode(pila, na, &k), -EPROTO);
	memcpy(pila, "PILK", 4);
	assert_int_equal(proto_pila_decode(pila, na, &a), -EPROTO);
	/* trailing bytes ignored */
	assert_int_equal(proto_pilk_decode(pila, na, &k), 0);
	assert_int_equal(k.node, 1);
}

/* ---- §8 beacon messages ---- */

static void test_beacon_discover(void **state)
{
	static const uint8_t want1[] = { 0x01, 0, 0, 0, 1 };
	static const uint8_t want0[] = { 0x01, 0, 0, 0, 0 };
	uint8_t out[64];
	proto_beacon_msg m;

	assert_int_equal(proto_beacon_discover(1, NULL, out, sizeof(out)), 5);
	assert_memory_equal(out, want1, 5);
	assert_int_equal(proto_beacon_decode(want1, 5, &m), 0);
	assert_int_equal(m.type, BEACON_DISCOVER);
	assert_int_equal(m.node, 1);
	assert_false(m.has_key);
	assert_int_equal(proto_beacon_discover(0, NULL, out, sizeof(out)), 5);
	assert_memory_equal(out, want0, 5);
	assert_int_equal(proto_beacon_decode(want0, 5, &m), 0);
	assert_int_equal(m.node, 0);
	assert_int_equal(proto_beacon_discover(0, NULL, out, 4), -EMSGSIZE);
}

/* new: optional Ed25519 key; shorter trailing bytes are ignored. */
static void test_beacon_discover_key(void **state)
{
	uint8_t key[32], out[64];
	proto_beacon_msg m;

	unhex(ed25519_a_hex, key, sizeof(key));
	assert_int_equal(proto_beacon_discover(1, key, out, 36), -EMSGSIZE);
	assert_int_equal(proto_beacon_discover(1, key, out, sizeof(out)), 37);
	assert_int_equal(proto_beacon_decode(out, 37, &m), 0);
	assert_int_equal(m.node, 1);
	assert_true(m.has_key);
	assert_memory_equal(m.key, key, 32);
	for (size_t len = 6; len < 37; len++) {
		assert_int_equal(proto_beacon_decode(out, len, &m), 0);
		assert_false(m.has_key);
	}
	out[37] = 0xEE;
	assert_int_equal(proto_beacon_decode(out, 38, &m), 0);
	assert_true(m.has_key);
}

struct ep_vec {
	const char *hex;
	uint8_t type, ip_len;
	const char *ip_hex;
	uint16_t port;
};

static const struct ep_vec v_reply4 = { "02 04 CB 00 71 07 9C 41", BEACON_DISCOVER_REPLY, 4,
					"CB 00 71 07", 40001 };
static const struct ep_vec v_reply6 = {
	"02 10 20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 01 9C 41", BEACON_DISCOVER_REPLY, 16,
	"20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 01", 40001 };
static const struct ep_vec v_punch_cmd = { "04 04 C6 33 64 14 CA 6C", BEACON_PUNCH_COMMAND, 4,
					   "C6 33 64 14", 51820 };

static void test_beacon_endpoint_vector(void **state)
{
	const struct ep_vec *v = *state;
	uint8_t want[32], out[32];
	size_t n = unhex(v->hex, want, sizeof(want));
	proto_endpoint ep = { .ip_len = v->ip_len, .port = v->port };
	proto_beacon_msg m;

	unhex(v->ip_hex, ep.ip, sizeof(ep.ip));
	assert_int_equal(proto_beacon_endpoint_msg(v->type, &ep, out, sizeof(out)), (int)n);
	assert_memory_equal(out, want, n);
	assert_int_equal(proto_beacon_endpoint_msg(v->type, &ep, out, n - 1), -EMSGSIZE);
	for (size_t len = 0; len < n; len++) {
		uint8_t *exact = dup_exact(want, len);

		assert_int_equal(proto_beacon_decode(exact, len, &m), -EMSGSIZE);
		free(exact);
	}
	want[n] = 0x77; /* trailing bytes ignored */
	assert_int_equal(proto_beacon_decode(want, n + 1, &m), 0);
	assert_int_equal(m.type, v->type);
	assert_int_equal(m.ep.ip_len, v->ip_len);
	assert_memory_equal(m.ep.ip, ep.ip, v->ip_len);
	assert_int_equal(m.ep.port, v->port);
}

static void test_beacon_endpoint_bad_ip_len(void **state)
{
	uint8_t buf[40] = { BEACON_PUNCH_COMMAND };
	proto_endpoint ep = { .ip_len = 5 };
	proto_beacon_msg m;

	for (int l = 0; l < 256; l++) {
		if (l == 4 || l == 16)
			continue;
		buf[1] = (uint8_t)l;
		assert_int_equal(proto_beacon_decode(buf, sizeof(buf), &m), -EINVAL);
	}
	assert_int_equal(proto_beacon_endpoint_msg(BEACON_DISCOVER_REPLY, &ep, buf, sizeof(buf)),
			 -EINVAL);
	ep.ip_len = 4;
	assert_int_equal(proto_beacon_endpoint_msg(BEACON_RELAY, &ep, buf, sizeof(buf)), -EINVAL);
}

static void test_beacon_punch_request(void **state)
{
	static const uint8_t want[] = { 0x03, 0, 0, 0, 1, 0, 0, 0, 2 };
	uint8_t out[9 + 72 + 1];
	proto_beacon_msg m;

	assert_int_equal(proto_beacon_punch_request(1, 2, out, sizeof(out)), 9);
	assert_memory_equal(out, want, 9);
	assert_int_equal(proto_beacon_punch_request(1, 2, out, 8), -EMSGSIZE);
	assert_int_equal(proto_beacon_decode(want, 9, &m), 0);
	assert_int_equal(m.type, BEACON_PUNCH_REQUEST);
	assert_int_equal(m.node, 1);
	assert_int_equal(m.target, 2);
	assert_int_equal(m.rest_len, 0);
	for (size_t len = 0; len < 9; len++)
		assert_int_equal(proto_beacon_decode(want, len, &m), -EMSGSIZE);
	/* new: optional 72-byte punch grant */
	memset(out + 9, 0x42, 72);
	assert_int_equal(proto_beacon_decode(out, 81, &m), 0);
	assert_ptr_equal(m.rest, out + 9);
	assert_int_equal(m.rest_len, 72);
}

static void test_beacon_sync(void **state)
{
	static const uint8_t want[] = { 0x07, 0, 0, 0, 7, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2 };
	static const uint32_t nodes[] = { 1, 2 };
	uint8_t out[32];
	proto_beacon_msg m;

	assert_int_equal(proto_beacon_sync(7, nodes, 2, out, sizeof(out)), 15);
	assert_memory_equal(out, want, 15);
	assert_int_equal(proto_beacon_sync(7, nodes, 2, out, 14), -EMSGSIZE);
	assert_int_equal(proto_beacon_decode(want, 15, &m), 0);
	assert_int_equal(m.type, BEACON_SYNC);
	assert_int_equal(m.node, 7);
	assert_int_equal(m.count, 2);
	assert_ptr_equal(m.rest, want + 7);
	assert_int_equal(m.rest_len, 8);
	assert_int_equal(proto_get32(m.rest + 4), 2);
	for (size_t len = 0; len < 15; len++) {
		uint8_t *exact = dup_exact(want, len);

		assert_int_equal(proto_beacon_decode(exact, len, &m), -EMSGSIZE);
		free(exact);
	}
}

static void test_beacon_sync_count(void **state)
{
	uint8_t buf[16] = { 0x07, 0, 0, 0, 7, 0xFF, 0xFF };
	proto_beacon_msg m;

	assert_int_equal(proto_beacon_decode(buf, sizeof(buf), &m), -EMSGSIZE);
	proto_put16(buf + 5, 0);
	assert_int_equal(proto_beacon_decode(buf, 7, &m), 0);
	assert_int_equal(m.count, 0);
	assert_int_equal(m.rest_len, 0);
	/* extra bytes beyond count × 4 ignored */
	proto_put16(buf + 5, 1);
	assert_int_equal(proto_beacon_decode(buf, sizeof(buf), &m), 0);
	assert_int_equal(m.rest_len, 4);
	assert_int_equal(proto_beacon_sync(7, NULL, 0, buf, 7), 7);
}

static void test_beacon_notify(void **state)
{
	static const uint8_t want[] = { 0x0A, 0x01, 0xEE };
	proto_beacon_msg m;

	assert_int_equal(proto_beacon_decode(want, 2, &m), 0);
	assert_int_equal(m.type, BEACON_NOTIFY);
	assert_int_equal(m.kind, BEACON_NOTIFY_HANDSHAKE);
	assert_int_equal(proto_beacon_decode(want, 3, &m), 0);
	assert_int_equal(proto_beacon_decode(want, 1, &m), -EMSGSIZE);
	assert_int_equal(proto_beacon_decode(want, 0, &m), -EMSGSIZE);
}

static void test_beacon_notify_encode(void **state)
{
	uint8_t out[4] = { 0 };
	proto_beacon_msg m;

	assert_int_equal(proto_beacon_notify(BEACON_NOTIFY_HANDSHAKE, out, 1), -EMSGSIZE);
	assert_int_equal(proto_beacon_notify(BEACON_NOTIFY_HANDSHAKE, out, sizeof(out)), 2);
	assert_int_equal(out[0], 0x0A);
	assert_int_equal(out[1], 0x01);
	assert_int_equal(proto_beacon_decode(out, 2, &m), 0);
	assert_int_equal(m.type, BEACON_NOTIFY);
	assert_int_equal(m.kind, BEACON_NOTIFY_HANDSHAKE);
}

static void test_beacon_relay_short(void **state)
{
	uint8_t buf[16] = { BEACON_RELAY, 0, 0, 0, 1, 0, 0, 0, 2, 'P' };
	proto_beacon_msg m;

	for (size_t len = 0; len <= 9; len++)
		assert_int_equal(proto_beacon_decode(buf, len, &m), -EMSGSIZE);
	assert_int_equal(proto_beacon_decode(buf, 10, &m), 0);
	assert_int_equal(m.rest_len, 1);
	buf[0] = BEACON_RELAY_DELIVER;
	for (size_t len = 0; len <= 5; len++)
		assert_int_equal(proto_beacon_decode(buf, len, &m), -EMSGSIZE);
	assert_int_equal(proto_beacon_decode(buf, 6, &m), 0);
	assert_int_equal(m.rest_len, 1);
}

static void test_beacon_unknown_type(void **state)
{
	static const uint8_t unknown[] = { 0x00, 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x50 };
	uint8_t buf[64] = { 0 };
	proto_beacon_msg m;

	for (size_t i = 0; i < sizeof(unknown); i++) {
		buf[0] = unknown[i];
		assert_int_equal(proto_beacon_decode(buf, sizeof(buf), &m), -EPROTO);
		assert_int_equal(proto_beacon_decode(buf, 1, &m), -EPROTO);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc_check_value),
		cmocka_unit_test(test_crc_empty),
		cmocka_unit_test(test_crc_update_chains),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_syn_ref),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_syn_new),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_synack),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_ack),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_hello),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_sack),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_keepalive),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_fin),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_finack),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_rst),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_syn_v0),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_dgram),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_ping),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_pong),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_tun_keepalive),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_probe),
		cmocka_unit_test_prestate(test_packet_vector, (void *)&v_probe_pong),
		cmocka_unit_test(test_sack_vector),
		cmocka_unit_test(test_packet_truncated),
		cmocka_unit_test(test_packet_corrupt_each_byte),
		cmocka_unit_test(test_packet_trailing_ignored),
		cmocka_unit_test(test_packet_oversize_payload_len),
		cmocka_unit_test(test_packet_check_order),
		cmocka_unit_test(test_packet_encode_limits),
		cmocka_unit_test(test_packet_encode_in_place),
		cmocka_unit_test(test_packet_encode_overlap),
		cmocka_unit_test(test_packet_round_trip),
		cmocka_unit_test(test_hdr_encode_raw),
		cmocka_unit_test(test_sack_round_trip),
		cmocka_unit_test(test_sack_reject),
		cmocka_unit_test(test_sack_encode_errors),
		cmocka_unit_test(test_sack_lookalike),
		cmocka_unit_test(test_pilt_vector),
		cmocka_unit_test(test_pilt_errors),
		cmocka_unit_test(test_pilk_vector),
		cmocka_unit_test(test_pila_vector),
		cmocka_unit_test(test_pils_ref_vector),
		cmocka_unit_test(test_pils_new_vector),
		cmocka_unit_test(test_pils_counter_and_empty),
		cmocka_unit_test(test_relay_vector),
		cmocka_unit_test(test_relay_deliver_vector),
		cmocka_unit_test(test_relay_pils),
		cmocka_unit_test(test_pilp_vector),
		cmocka_unit_test(test_classify_min_lengths),
		cmocka_unit_test(test_classify_other),
		cmocka_unit_test(test_frame_decoders_truncated_and_magic),
		cmocka_unit_test(test_beacon_discover),
		cmocka_unit_test(test_beacon_discover_key),
		cmocka_unit_test_prestate(test_beacon_endpoint_vector, (void *)&v_reply4),
		cmocka_unit_test_prestate(test_beacon_endpoint_vector, (void *)&v_reply6),
		cmocka_unit_test_prestate(test_beacon_endpoint_vector, (void *)&v_punch_cmd),
		cmocka_unit_test(test_beacon_endpoint_bad_ip_len),
		cmocka_unit_test(test_beacon_punch_request),
		cmocka_unit_test(test_beacon_sync),
		cmocka_unit_test(test_beacon_sync_count),
		cmocka_unit_test(test_beacon_notify),
		cmocka_unit_test(test_beacon_notify_encode),
		cmocka_unit_test(test_beacon_relay_short),
		cmocka_unit_test(test_beacon_unknown_type),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
