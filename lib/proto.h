/* The Pilot wire format: packet header + CRC32 (packet.md §3-4), SACK reports (§5.8),
 * tunnel frames (tunnel.md §1-5) and beacon messages (tunnel.md §9).
 * Every decoder is a pure (buf, len) function that checks each length before use and
 * returns 0 or a negative errno-style code (-EINVAL malformed, -EMSGSIZE too short/long,
 * -EBADMSG checksum mismatch, -EPROTO bad version/magic). */
#ifndef PILOT_PROTO_H
#define PILOT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"

#define PROTO_HDR_SIZE     34
#define PROTO_MAX_PAYLOAD  65535
#define PROTO_MAX_PACKET   (PROTO_HDR_SIZE + PROTO_MAX_PAYLOAD)
#define PROTO_VERSION      1

/* flags (low nibble of byte 0) */
#define PROTO_SYN 0x1
#define PROTO_ACK 0x2
#define PROTO_FIN 0x4
#define PROTO_RST 0x8

/* protocol byte */
#define PROTO_STREAM   0x01
#define PROTO_DATAGRAM 0x02
#define PROTO_CONTROL  0x03

/* well-known ports (packet.md §2) */
#define PILOT_PORT_PING       0
#define PILOT_PORT_ECHO       7
#define PILOT_PORT_NAMESERVER 53
#define PILOT_PORT_HTTP       80
#define PILOT_PORT_SECURE     443
#define PILOT_PORT_HANDSHAKE  444
#define PILOT_PORT_STDIO      1000
#define PILOT_PORT_DATAX      1001
#define PILOT_PORT_EVENTS     1002
#define PILOT_PORT_EPHEMERAL_MIN 49152

typedef struct proto_hdr {
	uint8_t version;    /* high nibble of byte 0 */
	uint8_t flags;      /* low nibble of byte 0 */
	uint8_t protocol;
	uint16_t payload_len;
	pilot_addr src, dst;
	uint16_t src_port, dst_port;
	uint32_t seq, ack;
	uint16_t window;
	uint32_t checksum;
} proto_hdr;

/* CRC-32/IEEE (zlib). crc32_update continues a running value (start from 0). */
uint32_t proto_crc32(const void *buf, size_t len);
uint32_t proto_crc32_update(uint32_t crc, const void *buf, size_t len);

/* Write header (version forced to h->version, usually PROTO_VERSION) with
 * payload_len = plen, followed by the payload, and fill in the checksum.
 * payload may already be in place at out + PROTO_HDR_SIZE (then pass it as payload;
 * memmove semantics). Returns the packet length or -EMSGSIZE if outcap is too small
 * or plen > PROTO_MAX_PAYLOAD. */
int proto_packet_encode(const proto_hdr *h, const void *payload, size_t plen,
			uint8_t *out, size_t outcap);

/* Parse a received packet: length checks, then CRC, then (if strict_version) version.
 * On success fills *h and points *payload into buf (h->payload_len bytes).
 * Bytes after the payload are ignored. */
int proto_packet_decode(const uint8_t *buf, size_t len, int strict_version,
			proto_hdr *h, const uint8_t **payload);
/* The same for a packet whose CRC was verified already (by proto_packet_decode on
 * the same bytes, e.g. the tunnel layer before it hands the packet up): lengths and
 * version only, so the CRC is computed once per received packet. */
int proto_packet_decode_checked(const uint8_t *buf, size_t len, int strict_version, proto_hdr *h,
				const uint8_t **payload);

/* Header only, no CRC check: needs len >= 34. */
int proto_hdr_decode(const uint8_t *buf, size_t len, proto_hdr *h);
void proto_hdr_encode(const proto_hdr *h, uint8_t out[PROTO_HDR_SIZE]);

/* ---- SACK report (packet.md §5.8) ---- */
#define PROTO_SACK_MAX_BLOCKS 4
#define PROTO_SACK_MAX_LEN    (5 + 8 * PROTO_SACK_MAX_BLOCKS)

typedef struct proto_sack_block {
	uint32_t left, right; /* [left, right) */
} proto_sack_block;

/* Returns the number of blocks (1..4) if payload is a SACK report by the
 * reference's rule ("SACK", n in 1..4, len >= 5 + 8n), else 0. */
int proto_sack_decode(const uint8_t *buf, size_t len, proto_sack_block out[PROTO_SACK_MAX_BLOCKS]);
/* n must be 1..4; returns bytes written or -EINVAL/-EMSGSIZE. */
int proto_sack_encode(const proto_sack_block *blocks, int n, uint8_t *out, size_t outcap);
/* True if a data payload would be mistaken for a SACK report by a peer (§5.5). */
int proto_sack_lookalike(const uint8_t *buf, size_t len);

/* ---- Tunnel frames (tunnel.md §1-5) ---- */
#define PROTO_MAGIC_PILT 0x50494C54u
#define PROTO_MAGIC_PILS 0x50494C53u
#define PROTO_MAGIC_PILK 0x50494C4Bu
#define PROTO_MAGIC_PILA 0x50494C41u
#define PROTO_MAGIC_PILP 0x50494C50u

#define PROTO_X25519_LEN   32
#define PROTO_ED25519_LEN  32
#define PROTO_SIG_LEN      64
#define PROTO_NONCE_LEN    12
#define PROTO_TAG_LEN      16
#define PROTO_PILT_OVERHEAD 4
#define PROTO_PILS_HDR     (4 + 4 + PROTO_NONCE_LEN)        /* 20 */
#define PROTO_PILS_OVERHEAD (PROTO_PILS_HDR + PROTO_TAG_LEN) /* 36 */
#define PROTO_PILK_LEN     (4 + 4 + PROTO_X25519_LEN)        /* 40 */
#define PROTO_PILA_LEN     (4 + 4 + PROTO_X25519_LEN + PROTO_ED25519_LEN + PROTO_SIG_LEN) /* 136 */
#define PROTO_PILA_SIGNED_LEN (4 + 4 + PROTO_X25519_LEN)     /* "auth" || node || x25519 */

enum proto_frame_kind {
	PROTO_FRAME_INVALID = 0, /* unknown magic or too short: drop silently */
	PROTO_FRAME_BEACON,      /* byte 0 < 0x10 */
	PROTO_FRAME_PILT,
	PROTO_FRAME_PILS,
	PROTO_FRAME_PILK,
	PROTO_FRAME_PILA,
	PROTO_FRAME_PILP,
};

/* Classify a UDP datagram by its first bytes, applying the minimum lengths of
 * tunnel.md §1 (PILT 38, PILS 36, PILK 40, PILA 136, PILP 4, beacon 1). */
enum proto_frame_kind proto_frame_classify(const uint8_t *buf, size_t len);

typedef struct proto_pilk {
	uint32_t node;
	uint8_t x25519[PROTO_X25519_LEN];
} proto_pilk;

typedef struct proto_pila {
	uint32_t node;
	uint8_t x25519[PROTO_X25519_LEN];
	uint8_t ed25519[PROTO_ED25519_LEN];
	uint8_t sig[PROTO_SIG_LEN];
} proto_pila;

typedef struct proto_pils {
	uint32_t node;                  /* sender node ID */
	const uint8_t *nonce;           /* 12 bytes inside the frame */
	uint64_t counter;               /* nonce bytes 4..11 */
	uint8_t *ct;                    /* ciphertext (ct_len bytes) followed by the tag */
	size_t ct_len;                  /* without the tag */
} proto_pils;

int proto_pilk_encode(const proto_pilk *k, uint8_t *out, size_t outcap);
int proto_pilk_decode(const uint8_t *buf, size_t len, proto_pilk *k);
int proto_pila_encode(const proto_pila *a, uint8_t *out, size_t outcap);
int proto_pila_decode(const uint8_t *buf, size_t len, proto_pila *a);
/* The 40 bytes a PILA signature covers: "auth" || node (BE) || x25519. */
void proto_pila_signed_msg(uint32_t node, const uint8_t x25519[PROTO_X25519_LEN],
			   uint8_t out[PROTO_PILA_SIGNED_LEN]);
/* Parse a PILS frame in place (buf is not modified; ct points into it). */
int proto_pils_decode(uint8_t *buf, size_t len, proto_pils *s);
/* PILT: 4 magic + packet. Returns frame length. decode points *pkt at the packet. */
int proto_pilt_wrap(const uint8_t *pkt, size_t pkt_len, uint8_t *out, size_t outcap);
int proto_pilt_decode(const uint8_t *buf, size_t len, const uint8_t **pkt, size_t *pkt_len);
/* PILP: bare 4 bytes, or with a sender node when node != 0 (new SPEC.md form). */
int proto_pilp_encode(uint32_t node, uint8_t *out, size_t outcap);

/* ---- Beacon messages (tunnel.md §9) ---- */
#define BEACON_DISCOVER       0x01
#define BEACON_DISCOVER_REPLY 0x02
#define BEACON_PUNCH_REQUEST  0x03
#define BEACON_PUNCH_COMMAND  0x04
#define BEACON_RELAY          0x05
#define BEACON_RELAY_DELIVER  0x06
#define BEACON_SYNC           0x07
#define BEACON_NOTIFY         0x0A

#define BEACON_RELAY_HDR         9  /* type + sender + dest */
#define BEACON_RELAY_DELIVER_HDR 5  /* type + sender */
#define BEACON_NOTIFY_HANDSHAKE  0x01

/* An IP endpoint as carried by the beacon: ip_len 4 or 16. */
typedef struct proto_endpoint {
	uint8_t ip_len;
	uint8_t ip[16];
	uint16_t port;
} proto_endpoint;

typedef struct proto_beacon_msg {
	uint8_t type;
	uint32_t node;            /* Discover: node; PunchRequest/Relay/RelayDeliver: sender/requester; Sync: beacon ID */
	uint32_t target;          /* PunchRequest target / Relay destination */
	int has_key;              /* Discover: optional Ed25519 key present */
	uint8_t key[PROTO_ED25519_LEN];
	proto_endpoint ep;        /* DiscoverReply / PunchCommand */
	const uint8_t *rest;      /* Relay/RelayDeliver: tunnel frame; PunchRequest: grant trailer; Sync: node list */
	size_t rest_len;
	uint16_t count;           /* Sync: number of node IDs in rest (count * 4 bytes) */
	uint8_t kind;             /* Notify */
} proto_beacon_msg;

/* Decode any beacon message; unknown type → -EPROTO, short → -EMSGSIZE,
 * ip_len not 4/16 → -EINVAL. */
int proto_beacon_decode(const uint8_t *buf, size_t len, proto_beacon_msg *m);
int proto_beacon_discover(uint32_t node, const uint8_t *key_or_null, uint8_t *out, size_t outcap);
int proto_beacon_endpoint_msg(uint8_t type, const proto_endpoint *ep, uint8_t *out, size_t outcap);
int proto_beacon_punch_request(uint32_t requester, uint32_t target, uint8_t *out, size_t outcap);
/* Relay header: writes the 9 (or 5) header bytes only; caller places the frame after it. */
void proto_beacon_relay_hdr(uint32_t sender, uint32_t dest, uint8_t out[BEACON_RELAY_HDR]);
void proto_beacon_deliver_hdr(uint32_t sender, uint8_t out[BEACON_RELAY_DELIVER_HDR]);
int proto_beacon_sync(uint32_t beacon_id, const uint32_t *nodes, uint16_t count,
		      uint8_t *out, size_t outcap);
/* Notify (beacon -> node): 0A ‖ kind. Returns 2 or -EMSGSIZE. */
int proto_beacon_notify(uint8_t kind, uint8_t *out, size_t outcap);

/* Big-endian helpers shared by every wire module. */
static inline uint16_t proto_get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t proto_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t proto_get64(const uint8_t *p)
{
	return (uint64_t)proto_get32(p) << 32 | proto_get32(p + 4);
}
static inline void proto_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void proto_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void proto_put64(uint8_t *p, uint64_t v)
{
	proto_put32(p, (uint32_t)(v >> 32)); proto_put32(p + 4, (uint32_t)v);
}

#endif
