#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/loop.h"
#include "tun/dns.h"

/* ---- fixtures ---------------------------------------------------------------------- */

struct fx {
	tun_addrmap *map;
	tun_dns *dns;
	/* resolver calls */
	char host[8][64];
	uint64_t token[8];
	int ncalls;
	bool sync;              /* answer inside the callback */
	int sync_status;
	pilot_addr sync_addr;
	/* deferred replies */
	uint8_t sent[8][TUN_DNS_MAX_UDP];
	size_t sent_len[8];
	int nsent;
};

static void resolve_cb(void *ctx, const char *hostname, uint64_t token)
{
	struct fx *f = ctx;

	snprintf(f->host[f->ncalls % 8], sizeof(f->host[0]), "%s", hostname);
	f->token[f->ncalls++ % 8] = token;
	if (f->sync)
		tun_dns_resolve_done(f->dns, token, f->sync_status, f->sync_addr);
}

static void send_cb(void *ctx, const tun_dns_client *to, const uint8_t *buf, size_t len)
{
	struct fx *f = ctx;

	assert_true(len <= TUN_DNS_MAX_UDP);
	memcpy(f->sent[f->nsent % 8], buf, len);
	f->sent_len[f->nsent++ % 8] = len;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	tun_addrmap_cfg mc = { 0 };
	tun_dns_cfg dc = { .resolve = resolve_cb, .timeout_ms = 50, .max_pending = 4 };
	char err[128];

	if (!f || tun_addrmap_open(&mc, &f->map, err, sizeof(err)) < 0)
		return -1;
	dc.map = f->map;
	dc.ctx = f;
	if (tun_dns_new(&dc, &f->dns) < 0)
		return -1;
	tun_dns_set_sender(f->dns, send_cb, f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	tun_dns_free(f->dns);
	tun_addrmap_free(f->map);
	free(f);
	return 0;
}

/* A query: id, RD, one question, optional OPT with udp size 4096. */
static size_t build_query(uint8_t *b, uint16_t id, const char *name, uint16_t qtype, bool edns)
{
	size_t n = 12;

	memset(b, 0, 12);
	b[0] = (uint8_t)(id >> 8), b[1] = (uint8_t)id;
	b[2] = 0x01;            /* RD */
	b[5] = 1;               /* QDCOUNT */
	b[11] = edns ? 1 : 0;   /* ARCOUNT */
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);

		b[n++] = (uint8_t)l;
		memcpy(b + n, name, l);
		n += l;
		name += l + (dot ? 1 : 0);
	}
	b[n++] = 0;
	b[n++] = (uint8_t)(qtype >> 8), b[n++] = (uint8_t)qtype;
	b[n++] = 0, b[n++] = 1;
	if (edns) {
		static const uint8_t opt[] = { 0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0 };

		memcpy(b + n, opt, sizeof(opt));
		n += sizeof(opt);
	}
	return n;
}

static const tun_dns_client client = { .len = 0, .sock = -1 };

/* Handle a query and parse the immediate reply. Returns its length (0 = none). */
static size_t ask(struct fx *f, const char *name, uint16_t qtype, tun_dns_msg *m)
{
	uint8_t q[512], out[TUN_DNS_MAX_UDP];
	size_t n = tun_dns_handle(f->dns, &client, q, build_query(q, 0xBEEF, name, qtype, false), out, sizeof(out));

	if (n)
		assert_int_equal(tun_dns_parse_msg(out, n, m), 0);
	return n;
}

static int rcode(const tun_dns_msg *m) { return m->flags & 0xF; }

/* ---- the codec --------------------------------------------------------------------- */

/* A query for agent-alpha.pilot A, written out by hand. */
static const uint8_t hand_query[] = {
	0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	11, 'a', 'g', 'e', 'n', 't', '-', 'A', 'L', 'P', 'H', 'A',
	5, 'p', 'i', 'l', 'o', 't', 0,
	0x00, 0x01, 0x00, 0x01,
};

static void test_parse_hand_query(void **state)
{
	tun_dns_query q;
	uint8_t b[512];

	assert_int_equal(tun_dns_parse_query(hand_query, sizeof(hand_query), &q), 0);
	assert_int_equal(q.id, 0x1234);
	assert_int_equal(q.flags, 0x0100);
	assert_true(q.has_question);
	assert_string_equal(q.name, "agent-alpha.pilot");
	assert_int_equal(q.qtype, TUN_DNS_T_A);
	assert_int_equal(q.qclass, TUN_DNS_CLASS_IN);
	assert_false(q.edns);
	assert_int_equal(q.udp_size, 512);
	/* the wire form keeps the case (0x20 randomisation is echoed) */
	assert_int_equal(q.qwire_len, 19);
	assert_memory_equal(q.qwire, hand_query + 12, 19);
	/* the test's builder gives the same bytes */
	assert_int_equal(build_query(b, 0x1234, "agent-ALPHA.pilot", 1, false), sizeof(hand_query));
	assert_memory_equal(b, hand_query, sizeof(hand_query));
}

/* The complete reply to 0-0000-0000-0007.pilot A, byte for byte. */
static void test_address_name_reply_bytes(void **state)
{
	struct fx *f = *state;
	uint8_t q[512], out[TUN_DNS_MAX_UDP];
	static const uint8_t want[] = {
		0xBE, 0xEF, 0x85, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
		16, '0', '-', '0', '0', '0', '0', '-', '0', '0', '0', '0', '-', '0', '0', '0', '7',
		5, 'p', 'i', 'l', 'o', 't', 0, 0x00, 0x01, 0x00, 0x01,
		0xC0, 0x0C, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3C, 0x00, 0x04, 10, 4, 0, 2,
	};
	size_t n = tun_dns_handle(f->dns, &client, q, build_query(q, 0xBEEF, "0-0000-0000-0007.pilot", 1, false),
				  out, sizeof(out));

	assert_int_equal(n, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	assert_int_equal(f->ncalls, 0); /* address names never ask the registry */
}

static void test_aaaa_for_address_name(void **state)
{
	struct fx *f = *state;
	tun_dns_msg m;
	char text[INET6_ADDRSTRLEN];

	assert_true(ask(f, "1-0001-0a0b-0c0d.pilot", TUN_DNS_T_AAAA, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.ancount, 1);
	assert_int_equal(m.rr[0].type, TUN_DNS_T_AAAA);
	assert_int_equal(m.rr[0].ttl, TUN_DNS_TTL);
	assert_int_equal(m.rr[0].rdlen, 16);
	inet_ntop(AF_INET6, m.rr[0].rdata, text, sizeof(text));
	assert_string_equal(text, "fd50:494c:4f54:1::a0b:c0d");
	/* AAAA allocates no IPv4 entry */
	assert_int_equal(tun_addrmap_count(f->map), 0);
	/* a type we have nothing for: NODATA with the SOA (negative TTL) */
	assert_true(ask(f, "1-0001-0a0b-0c0d.pilot", 16 /* TXT */, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.ancount, 0);
	assert_int_equal(m.nscount, 1);
	assert_int_equal(m.rr[0].type, TUN_DNS_T_SOA);
	assert_int_equal(m.rr[0].ttl, TUN_DNS_NEG_TTL);
	/* ANY gives both */
	assert_true(ask(f, "1-0001-0a0b-0c0d.pilot", TUN_DNS_T_ANY, &m) > 0);
	assert_int_equal(m.ancount, 2);
}

/* Compressed input: a hand-written response whose answer owner points at the
 * question and whose PTR target reuses the question's "pilot" suffix. */
static void test_compression_input(void **state)
{
	static const uint8_t msg[] = {
		0x00, 0x01, 0x84, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
		1, 'x', 5, 'p', 'i', 'l', 'o', 't', 0, 0x00, 0x0C, 0x00, 0x01,   /* 12..24 */
		0xC0, 0x0C, 0x00, 0x0C, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3C, 0x00, 0x05,
		2, 'h', 'i', 0xC0, 0x0E,                                          /* hi.<pilot> */
	};
	tun_dns_msg m;
	uint8_t bad[sizeof(msg)];

	assert_int_equal(tun_dns_parse_msg(msg, sizeof(msg), &m), 0);
	assert_string_equal(m.qname, "x.pilot");
	assert_int_equal(m.nrr, 1);
	assert_string_equal(m.rr[0].name, "x.pilot");
	assert_string_equal(m.rr[0].target, "hi.pilot");

	/* a pointer to itself, a forward pointer, a pointer past the end */
	memcpy(bad, msg, sizeof(msg));
	bad[25] = 0xC0, bad[26] = 25;
	assert_int_equal(tun_dns_parse_msg(bad, sizeof(bad), &m), -EINVAL);
	bad[26] = 30;
	assert_int_equal(tun_dns_parse_msg(bad, sizeof(bad), &m), -EINVAL);
	memcpy(bad, msg, sizeof(msg));
	bad[sizeof(msg) - 1] = 0xFF;
	assert_int_equal(tun_dns_parse_msg(bad, sizeof(bad), &m), -EINVAL);
	/* rdata shorter than the name inside it */
	memcpy(bad, msg, sizeof(msg));
	bad[36] = 4;
	assert_int_equal(tun_dns_parse_msg(bad, sizeof(bad) - 1, &m), -EINVAL);
}

/* Compressed output: NXDOMAIN's SOA names point into the question. */
static void test_compression_output(void **state)
{
	struct fx *f = *state;
	uint8_t q[512], out[TUN_DNS_MAX_UDP];
	size_t qlen = build_query(q, 7, "no.such.pilot", TUN_DNS_T_A, false);
	size_t n = tun_dns_handle(f->dns, &client, q, qlen, out, sizeof(out));
	tun_dns_msg m;
	size_t pilot_off = 12 + 3 + 5; /* "\2no\4such" then "\5pilot" */

	assert_true(n > 0);
	assert_int_equal(out[3] & 0xF, TUN_DNS_NXDOMAIN);
	assert_true(out[2] & 0x04); /* AA */
	/* authority owner "pilot" = pointer to the question's suffix */
	assert_int_equal(out[qlen], 0xC0);
	assert_int_equal(out[qlen + 1], pilot_off);
	/* mname "pilot" the same; rname "hostmaster" + pointer */
	assert_int_equal(out[qlen + 12], 0xC0);
	assert_int_equal(out[qlen + 13], pilot_off);
	assert_int_equal(out[qlen + 14], 10);
	assert_memory_equal(out + qlen + 15, "hostmaster", 10);
	assert_int_equal(out[qlen + 25], 0xC0);
	assert_int_equal(out[qlen + 26], pilot_off);
	assert_int_equal(tun_dns_parse_msg(out, n, &m), 0);
	assert_string_equal(m.rr[0].name, "pilot");
	assert_string_equal(m.rr[0].target, "pilot");
	assert_int_equal(n, qlen + 27 + 20);
}

static void test_edns_opt(void **state)
{
	struct fx *f = *state;
	uint8_t q[512], out[TUN_DNS_MAX_UDP];
	size_t n = tun_dns_handle(f->dns, &client, q, build_query(q, 9, "0-0000-0000-0009.pilot", 28, true),
				  out, sizeof(out));
	tun_dns_msg m;

	assert_true(n > 0);
	assert_int_equal(tun_dns_parse_msg(out, n, &m), 0);
	assert_int_equal(m.ancount, 1);
	assert_int_equal(m.arcount, 1);
	assert_int_equal(m.rr[1].type, TUN_DNS_T_OPT);
	assert_int_equal(m.rr[1].rclass, TUN_DNS_EDNS_SIZE);
}

static void test_truncation(void **state)
{
	tun_dns_query q;
	tun_dns_reply r;
	uint8_t b[512], out[TUN_DNS_MAX_UDP];
	char target[256];
	tun_dns_msg m;
	int n;

	assert_int_equal(tun_dns_parse_query(b, build_query(b, 1, "big.pilot", TUN_DNS_T_PTR, false), &q), 0);
	memset(&r, 0, sizeof(r));
	r.nans = 3;
	for (int i = 0; i < 3; i++) {
		/* four 60-byte labels, different in every answer: nothing to compress */
		memset(target, 0, sizeof(target));
		for (int j = 0; j < 4; j++) {
			memset(target + 61 * j, 'a' + 4 * i + j, 60);
			target[61 * j + 60] = j < 3 ? '.' : '\0';
		}
		r.ans[i].type = TUN_DNS_T_PTR;
		r.ans[i].ttl = 60;
		snprintf(r.ans[i].target, sizeof(r.ans[i].target), "%s", target);
	}
	n = tun_dns_encode_reply(&q, &r, out, sizeof(out));
	assert_true(n > 0 && n <= 512);
	assert_int_equal(tun_dns_parse_msg(out, (size_t)n, &m), 0);
	assert_true(m.flags & TUN_DNS_F_TC);
	assert_int_equal(m.ancount, 0);
	assert_int_equal(m.qdcount, 1);
	/* with EDNS the same reply fits */
	q.edns = true;
	q.udp_size = 4096;
	n = tun_dns_encode_reply(&q, &r, out, sizeof(out));
	assert_true(n > 512);
	assert_int_equal(tun_dns_parse_msg(out, (size_t)n, &m), 0);
	assert_false(m.flags & TUN_DNS_F_TC);
	assert_int_equal(m.ancount, 3);
	assert_string_equal(m.rr[2].target, r.ans[2].target);
	/* a buffer too small for even the header */
	assert_int_equal(tun_dns_encode_reply(&q, &r, out, 8), -ENOSPC);
}

/* ---- malformed input ------------------------------------------------------------------ */

static size_t handle_raw(struct fx *f, const uint8_t *b, size_t n, tun_dns_msg *m)
{
	uint8_t out[TUN_DNS_MAX_UDP];
	size_t r = tun_dns_handle(f->dns, &client, b, n, out, sizeof(out));

	if (r)
		assert_int_equal(tun_dns_parse_msg(out, r, m), 0);
	return r;
}

static void test_malformed(void **state)
{
	struct fx *f = *state;
	uint8_t b[600];
	tun_dns_msg m;
	size_t n;

	/* shorter than a header, and responses: dropped silently */
	assert_int_equal(handle_raw(f, hand_query, 11, &m), 0);
	memcpy(b, hand_query, sizeof(hand_query));
	b[2] |= 0x80;
	assert_int_equal(handle_raw(f, b, sizeof(hand_query), &m), 0);
	/* question cut short: FORMERR without a question */
	assert_true(handle_raw(f, hand_query, sizeof(hand_query) - 2, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_FORMERR);
	assert_int_equal(m.id, 0x1234);
	assert_int_equal(m.qdcount, 0);
	/* two questions */
	memcpy(b, hand_query, sizeof(hand_query));
	b[5] = 2;
	assert_true(handle_raw(f, b, sizeof(hand_query), &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_FORMERR);
	/* opcode STATUS: NOTIMP, opcode echoed */
	memcpy(b, hand_query, sizeof(hand_query));
	b[2] = 0x10;
	assert_true(handle_raw(f, b, sizeof(hand_query), &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOTIMP);
	assert_int_equal(m.flags & 0x7800, 0x1000);
	/* label type 0x40 */
	memcpy(b, hand_query, sizeof(hand_query));
	b[12] = 0x41;
	assert_true(handle_raw(f, b, sizeof(hand_query), &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_FORMERR);
	/* the question name is a pointer to itself */
	memcpy(b, hand_query, 12);
	b[12] = 0xC0, b[13] = 12, b[14] = 0, b[15] = 1, b[16] = 0, b[17] = 1;
	assert_true(handle_raw(f, b, 18, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_FORMERR);
	/* a name longer than 255 bytes */
	memcpy(b, hand_query, 12);
	n = 12;
	for (int i = 0; i < 5; i++) {
		b[n++] = 60;
		memset(b + n, 'a', 60);
		n += 60;
	}
	b[n++] = 0, b[n++] = 0, b[n++] = 1, b[n++] = 0, b[n++] = 1;
	assert_true(handle_raw(f, b, n, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_FORMERR);
	/* two OPT records */
	n = build_query(b, 3, "x.pilot", 1, true);
	memcpy(b + n, b + n - 11, 11);
	b[11] = 2;
	assert_true(handle_raw(f, b, n + 11, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_FORMERR);
	/* an additional record running past the end */
	n = build_query(b, 3, "x.pilot", 1, true);
	b[n - 1] = 5;
	assert_true(handle_raw(f, b, n, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_FORMERR);
	assert_int_equal(f->ncalls, 0);
}

/* ---- names and answers ------------------------------------------------------------------ */

static void test_refused_and_nxdomain(void **state)
{
	struct fx *f = *state;
	tun_dns_msg m;

	assert_true(ask(f, "example.com", TUN_DNS_T_A, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_REFUSED);
	assert_false(m.flags & TUN_DNS_F_AA);
	assert_true(ask(f, "pilot.example", TUN_DNS_T_A, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_REFUSED);
	assert_true(ask(f, "", TUN_DNS_T_NS, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_REFUSED);
	/* more than one label under .pilot, or an invalid hostname */
	assert_true(ask(f, "a.b.pilot", TUN_DNS_T_A, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	assert_int_equal(m.nscount, 1);
	assert_int_equal(m.rr[0].ttl, TUN_DNS_NEG_TTL);
	assert_true(ask(f, "we!rd.pilot", TUN_DNS_T_A, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	/* the zero and broadcast addresses are not names */
	assert_true(ask(f, "0-0000-ffff-ffff.pilot", TUN_DNS_T_A, &m) == 0);
	assert_int_equal(f->ncalls, 1); /* it looked like a hostname: asked */
	assert_true(ask(f, "pilot", TUN_DNS_T_SOA, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.ancount, 1);
	assert_int_equal(m.rr[0].type, TUN_DNS_T_SOA);
	assert_true(ask(f, "pilot", TUN_DNS_T_A, &m) > 0);
	assert_int_equal(m.ancount, 0);
	assert_int_equal(m.nscount, 1);
	assert_true(ask(f, "0-0000-0000-0007.pilot", 252 /* AXFR */, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOTIMP);
}

static void test_hostname_async(void **state)
{
	struct fx *f = *state;
	tun_dns_msg m;
	char text[INET6_ADDRSTRLEN];

	assert_int_equal(ask(f, "Agent-Alpha.pilot", TUN_DNS_T_A, &m), 0);
	assert_int_equal(f->ncalls, 1);
	assert_string_equal(f->host[0], "agent-alpha");
	assert_int_equal(tun_dns_pending(f->dns), 1);
	assert_int_equal(ask(f, "agent-alpha.pilot", TUN_DNS_T_AAAA, &m), 0);
	assert_int_equal(tun_dns_pending(f->dns), 2);

	tun_dns_resolve_done(f->dns, f->token[0], 0, pilot_addr_make(1, 0x2A));
	assert_int_equal(f->nsent, 1);
	assert_int_equal(tun_dns_parse_msg(f->sent[0], f->sent_len[0], &m), 0);
	assert_int_equal(m.id, 0xBEEF);
	assert_string_equal(m.qname, "agent-alpha.pilot");
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.ancount, 1);
	assert_int_equal(m.rr[0].type, TUN_DNS_T_A);
	assert_memory_equal(m.rr[0].rdata, "\x0a\x04\x00\x02", 4);
	/* the question's case is echoed */
	assert_memory_equal(f->sent[0] + 13, "Agent-Alpha", 11);

	tun_dns_resolve_done(f->dns, f->token[1], 0, pilot_addr_make(1, 0x2A));
	assert_int_equal(f->nsent, 2);
	assert_int_equal(tun_dns_parse_msg(f->sent[1], f->sent_len[1], &m), 0);
	inet_ntop(AF_INET6, m.rr[0].rdata, text, sizeof(text));
	assert_string_equal(text, "fd50:494c:4f54:1::2a");
	assert_int_equal(tun_dns_pending(f->dns), 0);
	/* a late or unknown token is ignored */
	tun_dns_resolve_done(f->dns, f->token[1], 0, pilot_addr_make(1, 0x2A));
	assert_int_equal(f->nsent, 2);
}

static void test_hostname_sync_and_negative(void **state)
{
	struct fx *f = *state;
	tun_dns_msg m;

	f->sync = true;
	f->sync_status = -ENOENT;
	assert_int_equal(ask(f, "ghost.pilot", TUN_DNS_T_A, &m), 0);
	assert_int_equal(f->nsent, 1);
	assert_int_equal(tun_dns_parse_msg(f->sent[0], f->sent_len[0], &m), 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	assert_int_equal(m.nscount, 1);
	f->sync_status = -ETIMEDOUT;
	assert_int_equal(ask(f, "ghost2.pilot", TUN_DNS_T_A, &m), 0);
	assert_int_equal(tun_dns_parse_msg(f->sent[1], f->sent_len[1], &m), 0);
	assert_int_equal(rcode(&m), TUN_DNS_SERVFAIL);
	f->sync_status = 0;
	f->sync_addr = pilot_addr_make(0, 5);
	assert_int_equal(ask(f, "real.pilot", TUN_DNS_T_A, &m), 0);
	assert_int_equal(tun_dns_parse_msg(f->sent[2], f->sent_len[2], &m), 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_memory_equal(m.rr[0].rdata, "\x0a\x04\x00\x02", 4);
	assert_int_equal(tun_dns_pending(f->dns), 0);
}

static void test_pending_timeout_and_bound(void **state)
{
	struct fx *f = *state;
	tun_dns_msg m;

	for (int i = 0; i < 4; i++)
		assert_int_equal(ask(f, "slow.pilot", TUN_DNS_T_A, &m), 0);
	assert_int_equal(tun_dns_pending(f->dns), 4);
	/* the table is full: SERVFAIL at once, the registry is not asked */
	assert_true(ask(f, "slow.pilot", TUN_DNS_T_A, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_SERVFAIL);
	assert_int_equal(f->ncalls, 4);
	/* not yet expired */
	tun_dns_expire(f->dns, pilot_now_ms());
	assert_int_equal(f->nsent, 0);
	tun_dns_expire(f->dns, pilot_now_ms() + 1000);
	assert_int_equal(f->nsent, 4);
	assert_int_equal(tun_dns_pending(f->dns), 0);
	assert_int_equal(tun_dns_parse_msg(f->sent[3], f->sent_len[3], &m), 0);
	assert_int_equal(rcode(&m), TUN_DNS_SERVFAIL);
	assert_string_equal(m.qname, "slow.pilot");
	/* the registry answering after the timeout changes nothing */
	tun_dns_resolve_done(f->dns, f->token[0], 0, pilot_addr_make(0, 9));
	assert_int_equal(f->nsent, 4);
	assert_int_equal(tun_addrmap_count(f->map), 0);
}

/* issue 12 §4: a query that reached the TUN address through another device
 * (a neighbour routing to it over the underlay) gets nothing. */
static void test_only_through_tun(void **state)
{
	struct fx *f = *state;
	tun_addrmap_cfg mc = { 0 };
	tun_dns_cfg dc = { .resolve = resolve_cb, .ctx = f, .ifindex = 7 };
	tun_dns_client via_tun = { .sock = -1, .ifindex = 7 }, via_eth = { .sock = -1, .ifindex = 3 };
	uint8_t q[512], out[TUN_DNS_MAX_UDP];
	size_t qlen = build_query(q, 1, "0-0000-0000-0007.pilot", TUN_DNS_T_A, false);
	tun_dns *d;
	tun_dns_stats st;
	char err[128];

	tun_dns_free(f->dns);
	tun_addrmap_free(f->map);
	assert_int_equal(tun_addrmap_open(&mc, &f->map, err, sizeof(err)), 0);
	dc.map = f->map;
	assert_int_equal(tun_dns_new(&dc, &d), 0);
	f->dns = d;
	assert_int_equal(tun_dns_handle(d, &via_eth, q, qlen, out, sizeof(out)), 0);
	qlen = build_query(q, 2, "someone.pilot", TUN_DNS_T_A, false);
	assert_int_equal(tun_dns_handle(d, &via_eth, q, qlen, out, sizeof(out)), 0);
	assert_int_equal(f->ncalls, 0); /* the registry was not asked */
	assert_true(tun_dns_handle(d, &via_tun, q, build_query(q, 3, "0-0000-0000-0007.pilot", 1, false),
				   out, sizeof(out)) > 0);
	tun_dns_get_stats(d, &st);
	assert_int_equal(st.queries, 3);
	assert_int_equal(st.not_tun, 2);
}

/* issue 12 §4: one client asking for random names cannot spend more than its
 * share of registry lookups; others still get theirs until the total runs out. */
static void test_lookup_rate_limit(void **state)
{
	struct fx *f = *state;
	tun_addrmap_cfg mc = { 0 };
	tun_dns_cfg dc = { .resolve = resolve_cb, .ctx = f, .client_rate = 1, .client_burst = 5,
			   .total_rate = 4, .max_pending = 64 };
	tun_dns_client a = { .sock = -1, .len = sizeof(struct sockaddr_in) };
	tun_dns_client b = a;
	struct sockaddr_in *sa = (struct sockaddr_in *)&a.ss, *sb = (struct sockaddr_in *)&b.ss;
	uint8_t q[512], out[TUN_DNS_MAX_UDP];
	char name[64], err[128];
	tun_dns *d;
	tun_dns_stats st;
	tun_dns_msg m;
	int limited = 0;

	sa->sin_family = sb->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(0x0a040001);
	sb->sin_addr.s_addr = htonl(0x0a040002);
	f->sync = true;
	f->sync_status = -ENOENT;
	tun_dns_free(f->dns);
	tun_addrmap_free(f->map);
	assert_int_equal(tun_addrmap_open(&mc, &f->map, err, sizeof(err)), 0);
	dc.map = f->map;
	assert_int_equal(tun_dns_new(&dc, &d), 0);
	f->dns = d; /* resolve_cb answers through f->dns */
	for (int i = 0; i < 200; i++) {
		size_t n;

		snprintf(name, sizeof(name), "random%d.pilot", i);
		n = tun_dns_handle(d, &a, q, build_query(q, (uint16_t)i, name, 1, false), out, sizeof(out));
		if (n) {
			assert_int_equal(tun_dns_parse_msg(out, n, &m), 0);
			assert_int_equal(rcode(&m), TUN_DNS_SERVFAIL);
			limited++;
		}
	}
	assert_true(f->ncalls <= 6); /* the burst, maybe one refill */
	assert_true(limited >= 194);
	/* another client still gets lookups from the total (burst 2 x 4) */
	assert_int_equal(tun_dns_handle(d, &b, q, build_query(q, 1, "other.pilot", 1, false), out,
					sizeof(out)), 0);
	tun_dns_get_stats(d, &st);
	assert_int_equal(st.rate_limited, (uint64_t)limited);
	assert_int_equal(st.lookups, (uint64_t)f->ncalls);
}

/* issue 12 §4: a name that does not exist is asked once, then answered from the
 * negative cache; a found name is cached too; registry errors are not. */
static void test_answer_cache(void **state)
{
	struct fx *f = *state;
	tun_dns_stats st;
	tun_dns_msg m;

	f->sync = true;
	f->sync_status = -ENOENT;
	for (int i = 0; i < 50; i++) {
		uint8_t q[512], out[TUN_DNS_MAX_UDP];
		size_t n = tun_dns_handle(f->dns, &client, q, build_query(q, 5, "ghost.pilot", 1, false),
					  out, sizeof(out));

		if (i > 0) { /* the first answer went out through the sender */
			assert_true(n > 0);
			assert_int_equal(tun_dns_parse_msg(out, n, &m), 0);
			assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
			assert_int_equal(m.nscount, 1);
		}
	}
	assert_int_equal(f->ncalls, 1);
	f->sync_status = -ETIMEDOUT; /* not remembered: asked again */
	ask(f, "flaky.pilot", TUN_DNS_T_A, &m);
	ask(f, "flaky.pilot", TUN_DNS_T_A, &m);
	assert_int_equal(f->ncalls, 3);
	f->sync_status = 0;
	f->sync_addr = pilot_addr_make(0, 5);
	assert_int_equal(ask(f, "real.pilot", TUN_DNS_T_A, &m), 0);
	assert_true(ask(f, "real.pilot", TUN_DNS_T_AAAA, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.rr[0].type, TUN_DNS_T_AAAA);
	assert_true(ask(f, "REAL.pilot", TUN_DNS_T_A, &m) > 0);
	assert_memory_equal(m.rr[0].rdata, "\x0a\x04\x00\x02", 4);
	assert_int_equal(f->ncalls, 4);
	tun_dns_get_stats(f->dns, &st);
	assert_int_equal(st.neg_cache_hits, 49);
	assert_int_equal(st.cache_hits, 2);
	assert_int_equal(st.lookups, 4);
}

static void test_ptr_v4(void **state)
{
	struct fx *f = *state;
	tun_dns_msg m;
	char zone[64];

	tun_dns_zone4(f->map, zone);
	assert_string_equal(zone, "4.10.in-addr.arpa");
	assert_true(ask(f, "0-0000-0000-0007.pilot", TUN_DNS_T_A, &m) > 0);
	assert_true(ask(f, "2.0.4.10.in-addr.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.ancount, 1);
	assert_int_equal(m.rr[0].type, TUN_DNS_T_PTR);
	assert_string_equal(m.rr[0].name, "2.0.4.10.in-addr.arpa");
	assert_string_equal(m.rr[0].target, "0-0000-0000-0007.pilot");
	/* the own IP, once the own address is known */
	assert_true(ask(f, "1.0.4.10.in-addr.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	tun_addrmap_set_own(f->map, pilot_addr_make(1, 0xABCDEF01));
	assert_true(ask(f, "1.0.4.10.in-addr.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_string_equal(m.rr[0].target, "1-0001-abcd-ef01.pilot");
	/* unmapped, partial, outside, garbage */
	assert_true(ask(f, "3.0.4.10.in-addr.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	assert_string_equal(m.rr[0].name, "4.10.in-addr.arpa");
	assert_true(ask(f, "0.4.10.in-addr.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.ancount, 0);
	assert_true(ask(f, "4.10.in-addr.arpa", TUN_DNS_T_SOA, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_true(ask(f, "10.in-addr.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_REFUSED);
	assert_true(ask(f, "1.1.168.192.in-addr.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_REFUSED);
	assert_true(ask(f, "2.0.5.10.in-addr.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_REFUSED);
	assert_true(ask(f, "x.0.4.10.in-addr.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	assert_true(ask(f, "256.0.4.10.in-addr.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	assert_true(ask(f, "1.2.0.4.10.in-addr.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	/* A for a reverse name: NODATA */
	assert_true(ask(f, "2.0.4.10.in-addr.arpa", TUN_DNS_T_A, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.ancount, 0);
}

static void test_ptr_v6(void **state)
{
	struct fx *f = *state;
	tun_dns_msg m;
	char zone[64], name[128];
	/* fd50:494c:4f54:0001:0000:0000:0a0b:0c0d */
	static const char *nibbles = "d.0.c.0.b.0.a.0.0.0.0.0.0.0.0.0.1.0.0.0.4.5.f.4.c.4.9.4.0.5.d.f";

	tun_dns_zone6(zone);
	assert_string_equal(zone, "4.5.f.4.c.4.9.4.0.5.d.f.ip6.arpa");
	snprintf(name, sizeof(name), "%s.ip6.arpa", nibbles);
	assert_true(ask(f, name, TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.ancount, 1);
	assert_string_equal(m.rr[0].target, "1-0001-0a0b-0c0d.pilot");
	/* upper-case nibbles are the same name */
	snprintf(name, sizeof(name), "D.0.C.0.B.0.A.0.0.0.0.0.0.0.0.0.1.0.0.0.4.5.F.4.C.4.9.4.0.5.D.F.IP6.ARPA");
	assert_true(ask(f, name, TUN_DNS_T_PTR, &m) > 0);
	assert_string_equal(m.rr[0].target, "1-0001-0a0b-0c0d.pilot");
	/* non-zero bytes 8..11: not a Pilot address */
	snprintf(name, sizeof(name), "d.0.c.0.b.0.a.0.0.0.0.0.1.0.0.0.1.0.0.0.4.5.f.4.c.4.9.4.0.5.d.f.ip6.arpa");
	assert_true(ask(f, name, TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	/* partial inside the prefix, outside the prefix */
	assert_true(ask(f, "1.0.0.0.4.5.f.4.c.4.9.4.0.5.d.f.ip6.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.ancount, 0);
	assert_true(ask(f, "4.c.4.9.4.0.5.d.f.ip6.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_REFUSED);
	assert_true(ask(f, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
			TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_REFUSED);
	assert_true(ask(f, "zz.4.5.f.4.c.4.9.4.0.5.d.f.ip6.arpa", TUN_DNS_T_PTR, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
}

/* ---- sockets (loopback only) -------------------------------------------------------------- */

static void test_socket_loopback(void **state)
{
	struct fx *f = *state;
	pilot_loop *l = pilot_loop_new();
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int probe = socket(AF_INET, SOCK_DGRAM, 0), c = socket(AF_INET, SOCK_DGRAM, 0);
	uint8_t q[512], r[TUN_DNS_MAX_UDP];
	char err[256];
	tun_dns_msg m;
	ssize_t n = -1;
	struct timeval tv = { 0, 10000 };

	/* find a free port, then hand it to the responder */
	assert_int_equal(bind(probe, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(probe, (struct sockaddr *)&sa, &sl), 0);
	close(probe);
	tun_dns_set_sender(f->dns, NULL, NULL); /* real sendto for late replies */
	assert_int_equal(tun_dns_listen(f->dns, l, (struct sockaddr *)&sa, sizeof(sa), err, sizeof(err)), 0);
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	assert_true(sendto(c, q, build_query(q, 77, "0-0000-0000-0007.pilot", 1, false), 0,
			   (struct sockaddr *)&sa, sizeof(sa)) > 0);
	for (int i = 0; i < 100 && n < 0; i++) {
		pilot_loop_run_once(l, 10);
		n = recv(c, r, sizeof(r), 0);
	}
	assert_true(n > 0);
	assert_int_equal(tun_dns_parse_msg(r, (size_t)n, &m), 0);
	assert_int_equal(m.id, 77);
	assert_memory_equal(m.rr[0].rdata, "\x0a\x04\x00\x02", 4);

	/* a hostname nobody answers: SERVFAIL from the loop's timer (timeout 50 ms) */
	n = -1;
	assert_true(sendto(c, q, build_query(q, 78, "nobody.pilot", 1, false), 0,
			   (struct sockaddr *)&sa, sizeof(sa)) > 0);
	for (int i = 0; i < 100 && n < 0; i++) {
		pilot_loop_run_once(l, 10);
		n = recv(c, r, sizeof(r), 0);
	}
	assert_true(n > 0);
	assert_int_equal(tun_dns_parse_msg(r, (size_t)n, &m), 0);
	assert_int_equal(m.id, 78);
	assert_int_equal(rcode(&m), TUN_DNS_SERVFAIL);
	close(c);
	tun_dns_free(f->dns);
	f->dns = NULL;
	pilot_loop_free(l);
}

/* ---- systemd-resolved registration with a stand-in resolvectl ------------------------------ */

static void test_register_resolved(void **state)
{
	struct fx *f = *state;
	pilot_loop *l = pilot_loop_new();
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char dir[] = "/tmp/test_tun_dns.XXXXXX", script[128], log[128], cmd[512], rundir[160];
	char *oldpath = getenv("PATH") ? strdup(getenv("PATH")) : NULL, *got = NULL, err[256] = "", want[256];
	FILE *fp;
	size_t n;

	assert_non_null(mkdtemp(dir));
	snprintf(script, sizeof(script), "%s/resolvectl", dir);
	snprintf(log, sizeof(log), "%s/calls", dir);
	snprintf(rundir, sizeof(rundir), "%s/run", dir);
	fp = fopen(script, "w");
	assert_non_null(fp);
	fprintf(fp, "#!/bin/sh\necho \"$@\" >> %s\n", log);
	fclose(fp);
	chmod(script, 0755);
	setenv("PATH", dir, 1);

	/* resolved not running (no run directory): nothing to do */
	assert_int_equal(tun_dns_register_resolved(f->dns, "pilot0", rundir, err, sizeof(err)), 0);
	mkdir(rundir, 0755);
	/* not listening yet */
	assert_int_equal(tun_dns_register_resolved(f->dns, "pilot0", rundir, err, sizeof(err)), -EINVAL);
	{
		socklen_t sl = sizeof(sa);
		int probe = socket(AF_INET, SOCK_DGRAM, 0);

		assert_int_equal(bind(probe, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(getsockname(probe, (struct sockaddr *)&sa, &sl), 0);
		close(probe);
	}
	snprintf(want, sizeof(want), "dns pilot0 127.0.0.1:%u\n"
		 "domain pilot0 ~pilot ~4.10.in-addr.arpa ~4.5.f.4.c.4.9.4.0.5.d.f.ip6.arpa\n", ntohs(sa.sin_port));
	assert_int_equal(tun_dns_listen(f->dns, l, (struct sockaddr *)&sa, sizeof(sa), err, sizeof(err)), 0);
	{
		assert_int_equal(tun_dns_register_resolved(f->dns, "pilot0", rundir, err, sizeof(err)), 1);
		assert_non_null(fp = fopen(log, "r"));
		got = calloc(1, 1024);
		n = fread(got, 1, 1023, fp);
		fclose(fp);
		got[n] = '\0';
		assert_string_equal(got, want);
		free(got);
		/* a failing resolvectl is reported */
		fp = fopen(script, "w");
		fprintf(fp, "#!/bin/sh\nexit 3\n");
		fclose(fp);
		assert_int_equal(tun_dns_register_resolved(f->dns, "pilot0", rundir, err, sizeof(err)), -EIO);
		assert_non_null(strstr(err, "resolvectl dns pilot0"));
	}
	if (oldpath)
		setenv("PATH", oldpath, 1);
	free(oldpath);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	tun_dns_free(f->dns);
	f->dns = NULL;
	pilot_loop_free(l);
}

/* ---- SRV: _<port>._pilot.<network>.pilot (pilot-nameserver S records) ---- */
static char srv_net[64];
static uint16_t srv_port;
static uint64_t srv_token;

static void srv_cb(void *ctx, const char *network, uint16_t port, uint64_t token)
{
	snprintf(srv_net, sizeof(srv_net), "%s", network);
	srv_port = port;
	srv_token = token;
}

static void test_srv(void **state)
{
	struct fx *f = *state;
	tun_addrmap_cfg mc = { 0 };
	tun_dns_cfg dc = { .resolve = resolve_cb, .resolve_srv = srv_cb, .timeout_ms = 50, .max_pending = 4 };
	pilot_addr a[10];
	uint16_t p[10];
	tun_dns_msg m;
	char err[128];

	/* without a SRV resolver: NXDOMAIN */
	assert_true(ask(f, "_80._pilot.0.pilot", TUN_DNS_T_SRV, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	tun_dns_free(f->dns);
	tun_addrmap_free(f->map);
	assert_int_equal(tun_addrmap_open(&mc, &f->map, err, sizeof(err)), 0);
	dc.map = f->map;
	dc.ctx = f;
	assert_int_equal(tun_dns_new(&dc, &f->dns), 0);
	tun_dns_set_sender(f->dns, send_cb, f);

	assert_int_equal(ask(f, "_80._pilot.Lab.pilot", TUN_DNS_T_SRV, &m), 0);
	assert_string_equal(srv_net, "lab");
	assert_int_equal(srv_port, 80);
	for (int i = 0; i < 10; i++) {
		a[i] = pilot_addr_make(0, (uint32_t)i + 7);
		p[i] = 80;
	}
	tun_dns_srv_done(f->dns, srv_token, 0, a, p, 10);
	assert_int_equal(f->nsent, 1);
	assert_int_equal(tun_dns_parse_msg(f->sent[0], f->sent_len[0], &m), 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.ancount, TUN_DNS_MAX_ANS); /* bounded */
	assert_int_equal(m.rr[0].type, TUN_DNS_T_SRV);
	assert_int_equal(m.rr[0].rdlen, 6 + 24);
	assert_memory_equal(m.rr[0].rdata,
			    "\x00\x00\x00\x01\x00\x50\x10"
			    "0-0000-0000-0007"
			    "\x05"
			    "pilot",
			    30);
	/* no providers: NXDOMAIN; resolver trouble: SERVFAIL */
	assert_int_equal(ask(f, "_443._pilot.7.pilot", TUN_DNS_T_SRV, &m), 0);
	tun_dns_srv_done(f->dns, srv_token, 0, a, p, 0);
	assert_int_equal(tun_dns_parse_msg(f->sent[1], f->sent_len[1], &m), 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	assert_int_equal(ask(f, "_443._pilot.7.pilot", TUN_DNS_T_ANY, &m), 0);
	tun_dns_srv_done(f->dns, srv_token, -ETIMEDOUT, NULL, NULL, 0);
	assert_int_equal(tun_dns_parse_msg(f->sent[2], f->sent_len[2], &m), 0);
	assert_int_equal(rcode(&m), TUN_DNS_SERVFAIL);
	/* other types on a service name: empty NOERROR; bad service names: NXDOMAIN */
	assert_true(ask(f, "_80._pilot.0.pilot", TUN_DNS_T_A, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NOERROR);
	assert_int_equal(m.ancount, 0);
	assert_true(ask(f, "_0._pilot.0.pilot", TUN_DNS_T_SRV, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	assert_true(ask(f, "_65536._pilot.0.pilot", TUN_DNS_T_SRV, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	assert_true(ask(f, "_80._pilot.a.b.pilot", TUN_DNS_T_SRV, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
	assert_true(ask(f, "_80._tcp.0.pilot", TUN_DNS_T_SRV, &m) > 0);
	assert_int_equal(rcode(&m), TUN_DNS_NXDOMAIN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_hand_query),
		cmocka_unit_test_setup_teardown(test_address_name_reply_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_aaaa_for_address_name, setup, teardown),
		cmocka_unit_test(test_compression_input),
		cmocka_unit_test_setup_teardown(test_compression_output, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edns_opt, setup, teardown),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_and_nxdomain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostname_async, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostname_sync_and_negative, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pending_timeout_and_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_only_through_tun, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_rate_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ptr_v4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ptr_v6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_resolved, setup, teardown),
		cmocka_unit_test_setup_teardown(test_srv, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
