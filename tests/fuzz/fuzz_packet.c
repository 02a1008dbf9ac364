/* libFuzzer target: packet decode, SACK decode, address text and socket address parse,
 * each with a round-trip check (what decodes must re-encode to the same bytes). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Not assert(): must stay active whatever NDEBUG says. */
#define CHECK(x) do { if (!(x)) { fprintf(stderr, "CHECK failed: %s (%s:%d)\n", #x, __FILE__, __LINE__); abort(); } } while (0)

static void fuzz_packet(const uint8_t *data, size_t size, int strict)
{
	static uint8_t out[PROTO_MAX_PACKET];
	const uint8_t *payload = NULL;
	proto_hdr h;
	int ret, n;

	ret = proto_packet_decode(data, size, strict, &h, &payload);
	if (ret < 0) {
		CHECK(ret == -EMSGSIZE || ret == -EBADMSG || ret == -EPROTO);
		CHECK(strict || ret != -EPROTO);
		return;
	}
	CHECK(payload == data + PROTO_HDR_SIZE);
	CHECK(size >= PROTO_HDR_SIZE + (size_t)h.payload_len);
	CHECK(!strict || h.version == PROTO_VERSION);
	n = proto_packet_encode(&h, payload, h.payload_len, out, sizeof(out));
	CHECK(n == (int)(PROTO_HDR_SIZE + h.payload_len));
	CHECK(memcmp(out, data, (size_t)n) == 0);
}

static void fuzz_sack(const uint8_t *data, size_t size)
{
	proto_sack_block b[PROTO_SACK_MAX_BLOCKS];
	uint8_t out[PROTO_SACK_MAX_LEN];
	int n = proto_sack_decode(data, size, b);

	CHECK(n >= 0 && n <= PROTO_SACK_MAX_BLOCKS);
	CHECK(proto_sack_lookalike(data, size) == (n > 0));
	if (n == 0)
		return;
	CHECK(proto_sack_encode(b, n, out, sizeof(out)) == 5 + 8 * n);
	CHECK(memcmp(out, data, 5 + 8 * (size_t)n) == 0);
}

static void fuzz_addr_text(const char *s, size_t size)
{
	char text[PILOT_ADDR_STRLEN];
	pilot_addr a, b;

	if (pilot_addr_parse(s, size, &a) < 0)
		return;
	pilot_addr_format(a, text);
	CHECK(pilot_addr_parse(text, strlen(text), &b) == 0);
	CHECK(pilot_addr_eq(a, b));
}

static void fuzz_sockaddr_text(const char *s, size_t size)
{
	char text[PILOT_SOCKADDR_STRLEN];
	pilot_addr a, b;
	uint16_t pa, pb;

	if (pilot_sockaddr_parse(s, size, &a, &pa) < 0)
		return;
	pilot_sockaddr_format(a, pa, text);
	CHECK(pilot_sockaddr_parse(text, strlen(text), &b, &pb) == 0);
	CHECK(pilot_addr_eq(a, b) && pa == pb);
}

static void fuzz_addr_binary(const uint8_t *data, size_t size)
{
	char text[PILOT_ADDR_STRLEN];
	uint8_t bin[PILOT_ADDR_SIZE];
	pilot_addr a, b;

	if (pilot_addr_decode(data, size, &a) < 0) {
		CHECK(size < PILOT_ADDR_SIZE);
		return;
	}
	pilot_addr_encode(a, bin);
	CHECK(memcmp(bin, data, PILOT_ADDR_SIZE) == 0);
	pilot_addr_format(a, text);
	CHECK(pilot_addr_parse(text, strlen(text), &b) == 0);
	CHECK(pilot_addr_eq(a, b));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_packet(data, size, 0);
	fuzz_packet(data, size, 1);
	/* a SACK report is the payload of a packet, but the rule stands on its own too */
	fuzz_sack(data, size);
	if (size >= PROTO_HDR_SIZE)
		fuzz_sack(data + PROTO_HDR_SIZE, size - PROTO_HDR_SIZE);
	fuzz_addr_text((const char *)data, size);
	fuzz_sockaddr_text((const char *)data, size);
	fuzz_addr_binary(data, size);
	return 0;
}
