/* libFuzzer target: tunnel frame classification, every frame decoder and the beacon
 * decoder; decoders must agree with the classifier and re-encode what they decoded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "CHECK failed: %s (%s:%d)\n", #x, __FILE__, __LINE__); abort(); } } while (0)

static void fuzz_pilt(const uint8_t *data, size_t size, enum proto_frame_kind kind)
{
	static uint8_t out[PROTO_MAX_PACKET + PROTO_PILT_OVERHEAD];
	const uint8_t *pkt;
	size_t pkt_len;
	proto_hdr h;
	int ret = proto_pilt_decode(data, size, &pkt, &pkt_len);

	CHECK((ret == 0) == (kind == PROTO_FRAME_PILT));
	if (ret < 0)
		return;
	CHECK(pkt == data + 4 && pkt_len == size - 4);
	if (proto_packet_decode(pkt, pkt_len, 0, &h, NULL) == 0) {
		size_t n = PROTO_HDR_SIZE + h.payload_len;

		CHECK(proto_pilt_wrap(pkt, n, out, sizeof(out)) == (int)(n + 4));
		CHECK(memcmp(out, data, n + 4) == 0);
	}
}

/* PILS takes a writable buffer (decryption happens in place), so decode a copy. */
static void fuzz_pils(const uint8_t *data, size_t size, enum proto_frame_kind kind)
{
	uint8_t *copy = malloc(size ? size : 1);
	proto_pils s;
	int ret;

	CHECK(copy != NULL);
	memcpy(copy, data, size);
	ret = proto_pils_decode(copy, size, &s);
	CHECK((ret == 0) == (kind == PROTO_FRAME_PILS));
	if (ret == 0) {
		CHECK(s.nonce == copy + 8 && s.ct == copy + PROTO_PILS_HDR);
		CHECK(s.ct_len + PROTO_PILS_OVERHEAD == size);
		CHECK(s.counter == proto_get64(copy + 12));
	}
	free(copy);
}

static void fuzz_pilk(const uint8_t *data, size_t size, enum proto_frame_kind kind)
{
	uint8_t out[PROTO_PILK_LEN];
	proto_pilk k;
	int ret = proto_pilk_decode(data, size, &k);

	CHECK((ret == 0) == (kind == PROTO_FRAME_PILK));
	if (ret < 0)
		return;
	CHECK(proto_pilk_encode(&k, out, sizeof(out)) == PROTO_PILK_LEN);
	CHECK(memcmp(out, data, PROTO_PILK_LEN) == 0);
}

static void fuzz_pila(const uint8_t *data, size_t size, enum proto_frame_kind kind)
{
	uint8_t out[PROTO_PILA_LEN], msg[PROTO_PILA_SIGNED_LEN];
	proto_pila a;
	int ret = proto_pila_decode(data, size, &a);

	CHECK((ret == 0) == (kind == PROTO_FRAME_PILA));
	if (ret < 0)
		return;
	CHECK(proto_pila_encode(&a, out, sizeof(out)) == PROTO_PILA_LEN);
	CHECK(memcmp(out, data, PROTO_PILA_LEN) == 0);
	proto_pila_signed_msg(a.node, a.x25519, msg);
	CHECK(memcmp(msg + 4, data + 4, PROTO_PILA_SIGNED_LEN - 4) == 0);
}

/* Re-encode a decoded beacon message and compare with the bytes it came from. */
static void beacon_reencode(const uint8_t *data, const proto_beacon_msg *m)
{
	static uint8_t out[7 + 4 * 65535];
	int n = -1;

	switch (m->type) {
	case BEACON_DISCOVER:
		n = proto_beacon_discover(m->node, m->has_key ? m->key : NULL, out, sizeof(out));
		break;
	case BEACON_DISCOVER_REPLY:
	case BEACON_PUNCH_COMMAND:
		n = proto_beacon_endpoint_msg(m->type, &m->ep, out, sizeof(out));
		break;
	case BEACON_PUNCH_REQUEST:
		n = proto_beacon_punch_request(m->node, m->target, out, sizeof(out));
		break;
	case BEACON_RELAY:
		proto_beacon_relay_hdr(m->node, m->target, out);
		n = BEACON_RELAY_HDR;
		CHECK(m->rest == data + n && m->rest_len > 0);
		break;
	case BEACON_RELAY_DELIVER:
		proto_beacon_deliver_hdr(m->node, out);
		n = BEACON_RELAY_DELIVER_HDR;
		CHECK(m->rest == data + n && m->rest_len > 0);
		break;
	case BEACON_SYNC: {
		static uint32_t nodes[65535];

		CHECK(m->rest_len == 4 * (size_t)m->count);
		for (size_t i = 0; i < m->count; i++)
			nodes[i] = proto_get32(m->rest + 4 * i);
		n = proto_beacon_sync(m->node, nodes, m->count, out, sizeof(out));
		break;
	}
	case BEACON_NOTIFY:
		out[0] = m->type;
		out[1] = m->kind;
		n = 2;
		break;
	default:
		CHECK(0);
	}
	CHECK(n > 0);
	CHECK(memcmp(out, data, (size_t)n) == 0);
}

static void fuzz_beacon(const uint8_t *data, size_t size, enum proto_frame_kind kind)
{
	proto_beacon_msg m;
	int ret = proto_beacon_decode(data, size, &m);

	if (ret < 0) {
		CHECK(ret == -EMSGSIZE || ret == -EPROTO || ret == -EINVAL);
		return;
	}
	CHECK(kind == PROTO_FRAME_BEACON);
	beacon_reencode(data, &m);
	/* relayed frames are classified again by the receiver */
	if (m.type == BEACON_RELAY || m.type == BEACON_RELAY_DELIVER)
		(void)proto_frame_classify(m.rest, m.rest_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum proto_frame_kind kind = proto_frame_classify(data, size);

	CHECK((kind == PROTO_FRAME_BEACON) == (size >= 1 && data[0] < 0x10));
	fuzz_pilt(data, size, kind);
	fuzz_pils(data, size, kind);
	fuzz_pilk(data, size, kind);
	fuzz_pila(data, size, kind);
	fuzz_beacon(data, size, kind);
	return 0;
}
