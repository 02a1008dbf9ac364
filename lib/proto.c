/* The Pilot wire format: packet header + CRC32, SACK reports, tunnel frames and beacon
 * messages (packet.md §3-5.8, tunnel.md §1-5, §9). Pure (buf, len) functions: every
 * length is checked before the bytes it covers are read, and nothing allocates. */
#include <errno.h>
#include <string.h>

#include "proto.h"

/* ---- CRC-32/IEEE (packet.md §4) ---- */

/* Reflected polynomial 0xEDB88320, the table zlib and Go's hash/crc32 use. */
static const uint32_t crc_table[256] = {
	0x00000000, 0x77073096, 0xee0e612c, 0x990951ba, 0x076dc419, 0x706af48f,
	0xe963a535, 0x9e6495a3, 0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988,
	0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91, 0x1db71064, 0x6ab020f2,
	0xf3b97148, 0x84be41de, 0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
	0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec, 0x14015c4f, 0x63066cd9,
	0xfa0f3d63, 0x8d080df5, 0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172,
	0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b, 0x35b5a8fa, 0x42b2986c,
	0xdbbbc9d6, 0xacbcf940, 0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
	0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116, 0x21b4f4b5, 0x56b3c423,
	0xcfba9599, 0xb8bda50f, 0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924,
	0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d, 0x76dc4190, 0x01db7106,
	0x98d220bc, 0xefd5102a, 0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
	0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818, 0x7f6a0dbb, 0x086d3d2d,
	0x91646c97, 0xe6635c01, 0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e,
	0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457, 0x65b0d9c6, 0x12b7e950,
	0x8bbeb8ea, 0xfcb9887c, 0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
	0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2, 0x4adfa541, 0x3dd895d7,
	0xa4d1c46d, 0xd3d6f4fb, 0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0,
	0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9, 0x5005713c, 0x270241aa,
	0xbe0b1010, 0xc90c2086, 0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
	0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4, 0x59b33d17, 0x2eb40d81,
	0xb7bd5c3b, 0xc0ba6cad, 0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a,
	0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683, 0xe3630b12, 0x94643b84,
	0x0d6d6a3e, 0x7a6a5aa8, 0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
	0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe, 0xf762575d, 0x806567cb,
	0x196c3671, 0x6e6b06e7, 0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc,
	0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5, 0xd6d6a3e8, 0xa1d1937e,
	0x38d8c2c4, 0x4fdff252, 0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
	0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60, 0xdf60efc3, 0xa867df55,
	0x316e8eef, 0x4669be79, 0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236,
	0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f, 0xc5ba3bbe, 0xb2bd0b28,
	0x2bb45a92, 0x5cb36a04, 0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
	0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a, 0x9c0906a9, 0xeb0e363f,
	0x72076785, 0x05005713, 0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38,
	0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21, 0x86d3d2d4, 0xf1d4e242,
	0x68ddb3f8, 0x1fda836e, 0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
	0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c, 0x8f659eff, 0xf862ae69,
	0x616bffd3, 0x166ccf45, 0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2,
	0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db, 0xaed16a4a, 0xd9d65adc,
	0x40df0b66, 0x37d83bf0, 0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
	0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6, 0xbad03605, 0xcdd70693,
	0x54de5729, 0x23d967bf, 0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94,
	0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d,
};

uint32_t proto_crc32_update(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return ~crc;
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

/* CRC of header (checksum field read as zero) + plen payload bytes, without
 * touching buf; the caller has checked that 34 + plen bytes exist. */
static uint32_t packet_crc(const uint8_t *buf, size_t plen)
{
	static const uint8_t zero[4];
	uint32_t crc;

	crc = proto_crc32_update(0, buf, 30);
	crc = proto_crc32_update(crc, zero, sizeof(zero));
	return proto_crc32_update(crc, buf + PROTO_HDR_SIZE, plen);
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
	proto_put32(out + 30, packet_crc(out, plen));
	return (int)(PROTO_HDR_SIZE + plen);
}

/* Order follows the ref receiver: sizes, then checksum, then (new only) version. */
int proto_packet_decode(const uint8_t *buf, size_t len, int strict_version,
			proto_hdr *h, const uint8_t **payload)
{
	proto_hdr hh;

	if (proto_hdr_decode(buf, len, &hh) < 0)
		return -EMSGSIZE;
	if (len - PROTO_HDR_SIZE < hh.payload_len)
		return -EMSGSIZE;
	if (packet_crc(buf, hh.payload_len) != hh.checksum)
		return -EBADMSG;
	if (strict_version && hh.version != PROTO_VERSION)
		return -EPROTO;
	*h = hh;
	if (payload)
		*payload = buf + PROTO_HDR_SIZE;
	return 0;
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
