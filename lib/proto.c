/* The Pilot wire format: packet header + CRC32, SACK reports, tunnel frames and beacon
 * messages (packet.md §3-5.8, tunnel.md §1-5, §9). Pure (buf, len) functions: every
 * length is checked before the bytes it covers are read, and nothing allocates. */
#include <errno.h>
#include <string.h>

#include "lib/crc32.h"
#include "lib/proto.h"

/* ---- CRC-32/IEEE (packet.md §4) ---- */

/* The work is in crc32.c (slicing-by-8, or PCLMULQDQ folding where the CPU has it). */
uint32_t proto_crc32_update(uint32_t crc, const void *buf, size_t len)
{
	return crc32_ieee_update(crc, buf, len);
}

uint32_t proto_crc32(const void *buf, size_t len)
{
	return proto_crc32_update(0, buf, len);
}

/* ---- packet header (packet.md §3) ---- */

void proto_hdr_encode(const proto_hdr *h, uint8_t out[PROTO_HDR_SIZE])
{
	out[0] = (uint8_t)((h->version & 0x0F) << 4 | (h->flags & 0x0F));
	out[1] = h->protocol;
	proto_put16(out + 2, h->payload_len);
	pilot_addr_encode(h->src, out + 4);
	pilot_addr_encode(h->dst, out + 10);
	proto_put16(out + 16, h->src_port);
	proto_put16(out + 18, h->dst_port);
	proto_put32(out + 20, h->seq);
	proto_put32(out + 24, h->ack);
	proto_put16(out + 28, h->window);
	proto_put32(out + 30, h->checksum);
}

int proto_hdr_decode(const uint8_t *buf, size_t len, proto_hdr *h)
{
	if (len < PROTO_HDR_SIZE)
		return -EMSGSIZE;
	h->version = buf[0] >> 4;
	h->flags = buf[0] & 0x0F;
	h->protocol = buf[1];
	h->payload_len = proto_get16(buf + 2);
	pilot_addr_decode(buf + 4, 6, &h->src);
	pilot_addr_decode(buf + 10, 6, &h->dst);
	h->src_port = proto_get16(buf + 16);
	h->dst_port = proto_get16(buf + 18);
	h->seq = proto_get32(buf + 20);
	h->ack = proto_get32(buf + 24);
	h->window = proto_get16(buf + 28);
	h->checksum = proto_get32(buf + 30);
	return 0;
}

/* CRC of header (checksum field read as zero) + plen payload bytes, in place: one
 * running CRC over bytes 0-29, four zero bytes and the payload, so buf is neither
 * written nor copied; the caller has checked that 34 + plen bytes exist. */
static uint32_t packet_crc(const uint8_t *buf, size_t plen)
{
	static const uint8_t zero[4];
	uint32_t crc;

	crc = crc32_ieee_update(0, buf, 30);
	crc = crc32_ieee_update(crc, zero, sizeof(zero));
	return crc32_ieee_update(crc, buf + PROTO_HDR_SIZE, plen);
}

int proto_packet_encode(const proto_hdr *h, const void *payload, size_t plen,
			uint8_t *out, size_t outcap)
{
	proto_hdr hh = *h;

	if (plen > PROTO_MAX_PAYLOAD || outcap < PROTO_HDR_SIZE + plen)
		return -EMSGSIZE;
	if (plen && !payload)
		return -EINVAL;
	/* Move the payload first: it may already sit at (or overlap) out + 34. */
	if (plen && payload != out + PROTO_HDR_SIZE)
		memmove(out + PROTO_HDR_SIZE, payload, plen);
	hh.payload_len = (uint16_t)plen;
	hh.checksum = 0;
	proto_hdr_encode(&hh, out);
	/* Bytes 30-33 are zero now: one pass over the contiguous 34 + plen bytes. */
	proto_put32(out + 30, crc32_ieee_update(0, out, PROTO_HDR_SIZE + plen));
	return (int)(PROTO_HDR_SIZE + plen);
}

/* Order follows the ref receiver: sizes, then checksum, then (new only) version. */
static int packet_decode(const uint8_t *buf, size_t len, int strict_version, bool crc, proto_hdr *h,
			 const uint8_t **payload)
{
	proto_hdr hh;

	if (proto_hdr_decode(buf, len, &hh) < 0)
		return -EMSGSIZE;
	if (len - PROTO_HDR_SIZE < hh.payload_len)
		return -EMSGSIZE;
	if (crc && packet_crc(buf, hh.payload_len) != hh.checksum)
		return -EBADMSG;
	if (strict_version && hh.version != PROTO_VERSION)
		return -EPROTO;
	*h = hh;
	if (payload)
		*payload = buf + PROTO_HDR_SIZE;
	return 0;
}

int proto_packet_decode(const uint8_t *buf, size_t len, int strict_version, proto_hdr *h,
			const uint8_t **payload)
{
	return packet_decode(buf, len, strict_version, true, h, payload);
}

int proto_packet_decode_checked(const uint8_t *buf, size_t len, int strict_version, proto_hdr *h,
				const uint8_t **payload)
{
	return packet_decode(buf, len, strict_version, false, h, payload);
}

/* ---- SACK report (packet.md §5.8) ---- */

static const uint8_t sack_magic[4] = { 'S', 'A', 'C', 'K' };

/* The peers' rule, which also decides when data is swallowed as a SACK (§5.5). */
static int sack_count(const uint8_t *buf, size_t len)
{
	uint8_t n;

	if (len < 5 || memcmp(buf, sack_magic, 4) != 0)
		return 0;
	n = buf[4];
	if (n < 1 || n > PROTO_SACK_MAX_BLOCKS || len < 5 + 8 * (size_t)n)
		return 0;
	return n;
}

int proto_sack_decode(const uint8_t *buf, size_t len, proto_sack_block out[PROTO_SACK_MAX_BLOCKS])
{
	int n = sack_count(buf, len);

	for (int i = 0; i < n; i++) {
		out[i].left = proto_get32(buf + 5 + 8 * i);
		out[i].right = proto_get32(buf + 9 + 8 * i);
	}
	return n;
}

int proto_sack_encode(const proto_sack_block *blocks, int n, uint8_t *out, size_t outcap)
{
	size_t need;

	if (n < 1 || n > PROTO_SACK_MAX_BLOCKS)
		return -EINVAL;
	need = 5 + 8 * (size_t)n;
	if (outcap < need)
		return -EMSGSIZE;
	memcpy(out, sack_magic, 4);
	out[4] = (uint8_t)n;
	for (int i = 0; i < n; i++) {
		proto_put32(out + 5 + 8 * i, blocks[i].left);
		proto_put32(out + 9 + 8 * i, blocks[i].right);
	}
	return (int)need;
}

int proto_sack_lookalike(const uint8_t *buf, size_t len)
{
	return sack_count(buf, len) > 0;
}

/* ---- tunnel frames (tunnel.md §1-5) ---- */

enum proto_frame_kind proto_frame_classify(const uint8_t *buf, size_t len)
{
	if (len < 1)
		return PROTO_FRAME_INVALID;
	if (buf[0] < 0x10)
		return PROTO_FRAME_BEACON;
	if (len < 4)
		return PROTO_FRAME_INVALID;
	switch (proto_get32(buf)) {
	case PROTO_MAGIC_PILT:
		return len >= PROTO_PILT_OVERHEAD + PROTO_HDR_SIZE ? PROTO_FRAME_PILT : PROTO_FRAME_INVALID;
	case PROTO_MAGIC_PILS:
		return len >= PROTO_PILS_OVERHEAD ? PROTO_FRAME_PILS : PROTO_FRAME_INVALID;
	case PROTO_MAGIC_PILK:
		return len >= PROTO_PILK_LEN ? PROTO_FRAME_PILK : PROTO_FRAME_INVALID;
	case PROTO_MAGIC_PILA:
		return len >= PROTO_PILA_LEN ? PROTO_FRAME_PILA : PROTO_FRAME_INVALID;
	case PROTO_MAGIC_PILP:
		return PROTO_FRAME_PILP;
	default:
		return PROTO_FRAME_INVALID;
	}
}

/* Common prologue of the frame decoders: length first, then magic. */
static int frame_check(const uint8_t *buf, size_t len, size_t min, uint32_t magic)
{
	if (len < min)
		return -EMSGSIZE;
	if (proto_get32(buf) != magic)
		return -EPROTO;
	return 0;
}

int proto_pilk_encode(const proto_pilk *k, uint8_t *out, size_t outcap)
{
	if (outcap < PROTO_PILK_LEN)
		return -EMSGSIZE;
	proto_put32(out, PROTO_MAGIC_PILK);
	proto_put32(out + 4, k->node);
	memcpy(out + 8, k->x25519, PROTO_X25519_LEN);
	return PROTO_PILK_LEN;
}

int proto_pilk_decode(const uint8_t *buf, size_t len, proto_pilk *k)
{
	int ret = frame_check(buf, len, PROTO_PILK_LEN, PROTO_MAGIC_PILK);

	if (ret < 0)
		return ret;
	k->node = proto_get32(buf + 4);
	memcpy(k->x25519, buf + 8, PROTO_X25519_LEN);
	return 0;
}

int proto_pila_encode(const proto_pila *a, uint8_t *out, size_t outcap)
{
	if (outcap < PROTO_PILA_LEN)
		return -EMSGSIZE;
	proto_put32(out, PROTO_MAGIC_PILA);
	proto_put32(out + 4, a->node);
	memcpy(out + 8, a->x25519, PROTO_X25519_LEN);
	memcpy(out + 40, a->ed25519, PROTO_ED25519_LEN);
	memcpy(out + 72, a->sig, PROTO_SIG_LEN);
	return PROTO_PILA_LEN;
}

int proto_pila_decode(const uint8_t *buf, size_t len, proto_pila *a)
{
	int ret = frame_check(buf, len, PROTO_PILA_LEN, PROTO_MAGIC_PILA);

	if (ret < 0)
		return ret;
	a->node = proto_get32(buf + 4);
	memcpy(a->x25519, buf + 8, PROTO_X25519_LEN);
	memcpy(a->ed25519, buf + 40, PROTO_ED25519_LEN);
	memcpy(a->sig, buf + 72, PROTO_SIG_LEN);
	return 0;
}

/* "auth" has no colon, whatever the ref source comment says (tunnel.md §3.2). */
void proto_pila_signed_msg(uint32_t node, const uint8_t x25519[PROTO_X25519_LEN],
			   uint8_t out[PROTO_PILA_SIGNED_LEN])
{
	memcpy(out, "auth", 4);
	proto_put32(out + 4, node);
	memcpy(out + 8, x25519, PROTO_X25519_LEN);
}

int proto_pils_decode(uint8_t *buf, size_t len, proto_pils *s)
{
	int ret = frame_check(buf, len, PROTO_PILS_OVERHEAD, PROTO_MAGIC_PILS);

	if (ret < 0)
		return ret;
	s->node = proto_get32(buf + 4);
	s->nonce = buf + 8;
	/* nonce = prefix (4) || counter (8); the counter drives the replay window. */
	s->counter = proto_get64(buf + 12);
	s->ct = buf + PROTO_PILS_HDR;
	s->ct_len = len - PROTO_PILS_OVERHEAD;
	return 0;
}

/* memmove: the caller may have encoded the packet at out + 4 already. */
int proto_pilt_wrap(const uint8_t *pkt, size_t pkt_len, uint8_t *out, size_t outcap)
{
	if (pkt_len < PROTO_HDR_SIZE)
		return -EINVAL;
	if (pkt_len > PROTO_MAX_PACKET || outcap < PROTO_PILT_OVERHEAD + pkt_len)
		return -EMSGSIZE;
	if (pkt != out + PROTO_PILT_OVERHEAD)
		memmove(out + PROTO_PILT_OVERHEAD, pkt, pkt_len);
	proto_put32(out, PROTO_MAGIC_PILT);
	return (int)(PROTO_PILT_OVERHEAD + pkt_len);
}

int proto_pilt_decode(const uint8_t *buf, size_t len, const uint8_t **pkt, size_t *pkt_len)
{
	int ret = frame_check(buf, len, PROTO_PILT_OVERHEAD + PROTO_HDR_SIZE, PROTO_MAGIC_PILT);

	if (ret < 0)
		return ret;
	*pkt = buf + PROTO_PILT_OVERHEAD;
	*pkt_len = len - PROTO_PILT_OVERHEAD;
	return 0;
}

int proto_pilp_encode(uint32_t node, uint8_t *out, size_t outcap)
{
	size_t need = node ? 8 : 4;

	if (outcap < need)
		return -EMSGSIZE;
	proto_put32(out, PROTO_MAGIC_PILP);
	if (node)
		proto_put32(out + 4, node);
	return (int)need;
}

/* ---- beacon messages (tunnel.md §9) ---- */

static int beacon_discover_decode(const uint8_t *buf, size_t len, proto_beacon_msg *m)
{
	if (len < 5)
		return -EMSGSIZE;
	m->node = proto_get32(buf + 1);
	/* new nodes may append their Ed25519 key; anything shorter is ignored. */
	if (len >= 5 + PROTO_ED25519_LEN) {
		m->has_key = 1;
		memcpy(m->key, buf + 5, PROTO_ED25519_LEN);
	}
	return 0;
}

/* DiscoverReply and PunchCommand: ip_len (1) IP (4|16) port (2). */
static int beacon_endpoint_decode(const uint8_t *buf, size_t len, proto_beacon_msg *m)
{
	uint8_t ip_len;

	if (len < 2)
		return -EMSGSIZE;
	ip_len = buf[1];
	if (ip_len != 4 && ip_len != 16)
		return -EINVAL;
	if (len < 2 + (size_t)ip_len + 2)
		return -EMSGSIZE;
	m->ep.ip_len = ip_len;
	memcpy(m->ep.ip, buf + 2, ip_len);
	m->ep.port = proto_get16(buf + 2 + ip_len);
	return 0;
}

/* PunchRequest (rest = optional grant) and Relay (rest = frame). */
static int beacon_pair_decode(const uint8_t *buf, size_t len, proto_beacon_msg *m)
{
	if (len < BEACON_RELAY_HDR)
		return -EMSGSIZE;
	m->node = proto_get32(buf + 1);
	m->target = proto_get32(buf + 5);
	m->rest = buf + BEACON_RELAY_HDR;
	m->rest_len = len - BEACON_RELAY_HDR;
	/* A relay with no frame carries nothing to deliver. */
	if (m->type == BEACON_RELAY && m->rest_len == 0)
		return -EMSGSIZE;
	return 0;
}

static int beacon_deliver_decode(const uint8_t *buf, size_t len, proto_beacon_msg *m)
{
	if (len <= BEACON_RELAY_DELIVER_HDR)
		return -EMSGSIZE;
	m->node = proto_get32(buf + 1);
	m->rest = buf + BEACON_RELAY_DELIVER_HDR;
	m->rest_len = len - BEACON_RELAY_DELIVER_HDR;
	return 0;
}

static int beacon_sync_decode(const uint8_t *buf, size_t len, proto_beacon_msg *m)
{
	if (len < 7)
		return -EMSGSIZE;
	m->node = proto_get32(buf + 1);
	m->count = proto_get16(buf + 5);
	if (len - 7 < 4 * (size_t)m->count)
		return -EMSGSIZE;
	m->rest = buf + 7;
	m->rest_len = 4 * (size_t)m->count;
	return 0;
}

static int beacon_notify_decode(const uint8_t *buf, size_t len, proto_beacon_msg *m)
{
	if (len < 2)
		return -EMSGSIZE;
	m->kind = buf[1];
	return 0;
}

int proto_beacon_decode(const uint8_t *buf, size_t len, proto_beacon_msg *m)
{
	memset(m, 0, sizeof(*m));
	if (len < 1)
		return -EMSGSIZE;
	m->type = buf[0];
	switch (m->type) {
	case BEACON_DISCOVER:
		return beacon_discover_decode(buf, len, m);
	case BEACON_DISCOVER_REPLY:
	case BEACON_PUNCH_COMMAND:
		return beacon_endpoint_decode(buf, len, m);
	case BEACON_PUNCH_REQUEST:
	case BEACON_RELAY:
		return beacon_pair_decode(buf, len, m);
	case BEACON_RELAY_DELIVER:
		return beacon_deliver_decode(buf, len, m);
	case BEACON_SYNC:
		return beacon_sync_decode(buf, len, m);
	case BEACON_NOTIFY:
		return beacon_notify_decode(buf, len, m);
	default:
		return -EPROTO;
	}
}

int proto_beacon_discover(uint32_t node, const uint8_t *key_or_null, uint8_t *out, size_t outcap)
{
	size_t need = 5 + (key_or_null ? PROTO_ED25519_LEN : 0);

	if (outcap < need)
		return -EMSGSIZE;
	out[0] = BEACON_DISCOVER;
	proto_put32(out + 1, node);
	if (key_or_null)
		memcpy(out + 5, key_or_null, PROTO_ED25519_LEN);
	return (int)need;
}

int proto_beacon_endpoint_msg(uint8_t type, const proto_endpoint *ep, uint8_t *out, size_t outcap)
{
	size_t need;

	if (type != BEACON_DISCOVER_REPLY && type != BEACON_PUNCH_COMMAND)
		return -EINVAL;
	if (ep->ip_len != 4 && ep->ip_len != 16)
		return -EINVAL;
	need = 2 + (size_t)ep->ip_len + 2;
	if (outcap < need)
		return -EMSGSIZE;
	out[0] = type;
	out[1] = ep->ip_len;
	memcpy(out + 2, ep->ip, ep->ip_len);
	proto_put16(out + 2 + ep->ip_len, ep->port);
	return (int)need;
}

int proto_beacon_punch_request(uint32_t requester, uint32_t target, uint8_t *out, size_t outcap)
{
	if (outcap < 9)
		return -EMSGSIZE;
	out[0] = BEACON_PUNCH_REQUEST;
	proto_put32(out + 1, requester);
	proto_put32(out + 5, target);
	return 9;
}

void proto_beacon_relay_hdr(uint32_t sender, uint32_t dest, uint8_t out[BEACON_RELAY_HDR])
{
	out[0] = BEACON_RELAY;
	proto_put32(out + 1, sender);
	proto_put32(out + 5, dest);
}

void proto_beacon_deliver_hdr(uint32_t sender, uint8_t out[BEACON_RELAY_DELIVER_HDR])
{
	out[0] = BEACON_RELAY_DELIVER;
	proto_put32(out + 1, sender);
}

int proto_beacon_sync(uint32_t beacon_id, const uint32_t *nodes, uint16_t count,
		      uint8_t *out, size_t outcap)
{
	size_t need = 7 + 4 * (size_t)count;

	if (outcap < need)
		return -EMSGSIZE;
	out[0] = BEACON_SYNC;
	proto_put32(out + 1, beacon_id);
	proto_put16(out + 5, count);
	for (size_t i = 0; i < count; i++)
		proto_put32(out + 7 + 4 * i, nodes[i]);
	return (int)need;
}

int proto_beacon_notify(uint8_t kind, uint8_t *out, size_t outcap)
{
	if (outcap < 2)
		return -EMSGSIZE;
	out[0] = BEACON_NOTIFY;
	out[1] = kind;
	return 2;
}
