/* IPv4 / IPv6 / TCP / UDP / ICMP parsing and building for packets read from and
 * written to the TUN device (IFF_TUN | IFF_NO_PI: every buffer starts at the IP header).
 *
 * Parsers are pure (buf, len) functions: they check every length before reading it,
 * never write, and return 0 or one distinct negative TUN_IP_E* code per kind of
 * malformation so the caller can count drops by reason (tun_ip_strerror names them).
 * These codes are NOT errno values. Parsed views point into the caller's buffer.
 *
 * Builders write into caller buffers (no allocation) and return the bytes written or
 * TUN_IP_ENOSPACE. Checksum values in this API are numbers as they read big-endian
 * from the packet (proto_get16), so they compare with known-answer tables directly. */
#ifndef PILOT_TUN_IP_H
#define PILOT_TUN_IP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tun_ip_err {
	TUN_IP_ESHORT = -1,     /* buffer shorter than a header or a declared length */
	TUN_IP_EVERSION = -2,   /* IP version neither 4 nor 6 */
	TUN_IP_EHDRLEN = -3,    /* IPv4 IHL < 5, TCP data offset < 5, UDP length < 8 */
	TUN_IP_ETOTLEN = -4,    /* IPv4 total length < header length */
	TUN_IP_ECSUM = -5,      /* IPv4 header checksum (L4 checksums: tun_l4_csum_ok) */
	TUN_IP_EFRAG = -6,      /* fragment (IPv4 MF/offset, IPv6 fragment header): refused */
	TUN_IP_EOPT = -7,       /* malformed IPv4 or TCP option */
	TUN_IP_EEXTHDR = -8,    /* IPv6: too many / malformed extension headers, ESP, jumbo */
	TUN_IP_EPROTO = -9,     /* parser asked for the wrong L4 protocol */
	TUN_IP_ENOSPACE = -10,  /* builder: output buffer too small or payload too big */
	TUN_IP_EINVAL = -11,    /* builder: bad argument (family, type) */
};
#define TUN_IP_NERR 11

const char *tun_ip_strerror(int code); /* "short", "frag", ...; "ok" for 0 */

#define TUN_IPPROTO_ICMP   1
#define TUN_IPPROTO_TCP    6
#define TUN_IPPROTO_UDP    17
#define TUN_IPPROTO_ICMPV6 58

#define TUN_IP4_HDR 20
#define TUN_IP6_HDR 40
#define TUN_TCP_HDR 20
#define TUN_UDP_HDR 8
#define TUN_ICMP_HDR 8
#define TUN_IP6_MAX_EXT 8       /* extension headers skipped before refusing */
#define TUN_IP_MAX_PACKET 65535 /* IPv4 total length / IPv6 payload length field */

/* An IPv4 (first 4 bytes, rest zero) or IPv6 address. */
typedef struct tun_ipaddr {
	uint8_t family; /* 4 or 6 */
	uint8_t b[16];
} tun_ipaddr;

void tun_ipaddr_v4(tun_ipaddr *a, uint32_t host_order);
void tun_ipaddr_v6(tun_ipaddr *a, const uint8_t b[16]);
bool tun_ipaddr_eq(const tun_ipaddr *x, const tun_ipaddr *y);
uint32_t tun_ipaddr_v4_host(const tun_ipaddr *a); /* b[0..3] as a host-order number */

/* A parsed IP packet (the first header and, for IPv6, the skipped extension chain). */
typedef struct tun_ip {
	uint8_t version;     /* 4 or 6 */
	uint8_t proto;       /* L4 protocol after extension headers */
	uint8_t ttl;         /* TTL / hop limit */
	uint8_t tos;         /* TOS / traffic class */
	uint16_t id;         /* IPv4 identification (0 for IPv6) */
	uint32_t flow_label; /* IPv6 only */
	uint16_t hdr_len;    /* IP header incl. options / extension headers */
	uint32_t pkt_len;    /* IP total length (bytes after it in buf are ignored) */
	tun_ipaddr src, dst;
	const uint8_t *l4;   /* buf + hdr_len */
	size_t l4_len;       /* pkt_len - hdr_len */
} tun_ip;

/* IPv4 or IPv6 by the version nibble. IPv4: IHL, total length vs buffer, header
 * checksum, options well formed, fragments refused. IPv6: payload length vs buffer,
 * hop-by-hop / routing / destination options / AH skipped (at most TUN_IP6_MAX_EXT),
 * fragment header refused, ESP and jumbograms refused. */
int tun_ip_parse(const uint8_t *buf, size_t len, tun_ip *ip);

/* ---- TCP ---- */
#define TUN_TCP_FIN 0x01
#define TUN_TCP_SYN 0x02
#define TUN_TCP_RST 0x04
#define TUN_TCP_PSH 0x08
#define TUN_TCP_ACK 0x10
#define TUN_TCP_URG 0x20
#define TUN_TCP_ECE 0x40
#define TUN_TCP_CWR 0x80

#define TUN_TCP_MAX_OPTS 40

typedef struct tun_tcp {
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;       /* FIN..CWR */
	uint16_t window;     /* raw field (unscaled) */
	uint16_t csum, urg;
	uint16_t hdr_len;    /* data offset * 4 */
	/* options (has_* = present and well formed) */
	bool has_mss, has_wscale, sack_ok, has_ts;
	uint16_t mss;
	uint8_t wscale;      /* as sent; callers clamp to 14 (RFC 7323) */
	uint32_t ts_val, ts_ecr;
	const uint8_t *payload;
	size_t payload_len;
} tun_tcp;

/* l4/len as found in tun_ip. Options: EOL, NOP, MSS, WS, SACK-permitted, SACK, TS are
 * length-checked; unknown kinds need a length byte >= 2 that fits. */
int tun_tcp_parse(const uint8_t *l4, size_t len, tun_tcp *t);

/* ---- UDP ---- */
typedef struct tun_udp {
	uint16_t sport, dport, len, csum;
	const uint8_t *payload;
	size_t payload_len;  /* len - 8 (bytes past the UDP length are ignored) */
} tun_udp;

int tun_udp_parse(const uint8_t *l4, size_t len, tun_udp *u);

/* ---- ICMP / ICMPv6 ---- */
#define TUN_ICMP4_ECHO_REPLY   0
#define TUN_ICMP4_UNREACH      3
#define TUN_ICMP4_ECHO_REQUEST 8
#define TUN_ICMP6_UNREACH      1
#define TUN_ICMP6_ECHO_REQUEST 128
#define TUN_ICMP6_ECHO_REPLY   129

/* Unreachable codes */
#define TUN_ICMP4_UNREACH_NET   0
#define TUN_ICMP4_UNREACH_HOST  1
#define TUN_ICMP4_UNREACH_PORT  3
#define TUN_ICMP4_UNREACH_ADMIN 13
#define TUN_ICMP6_UNREACH_NOROUTE 0
#define TUN_ICMP6_UNREACH_ADMIN   1
#define TUN_ICMP6_UNREACH_ADDR    3
#define TUN_ICMP6_UNREACH_PORT    4

typedef struct tun_icmp {
	uint8_t type, code;
	uint16_t csum;
	uint16_t id, seq;        /* echo only */
	const uint8_t *data;     /* echo: payload after id/seq; unreach: the quoted packet */
	size_t data_len;
} tun_icmp;

/* v6 selects ICMPv6 numbering. Any type parses (8-byte header); id/seq are filled
 * for echo request/reply only. */
int tun_icmp_parse(const uint8_t *l4, size_t len, bool v6, tun_icmp *m);

/* ---- checksums (RFC 1071 / RFC 1624) ---- */
/* Running sum over bytes in memory order; 64-bit accumulator. Chain calls only at even
 * lengths (all but the last piece). */
uint64_t tun_csum_add(uint64_t acc, const void *buf, size_t len);
/* Fold and complement: the checksum value to store (as a big-endian number). */
uint16_t tun_csum_fold(uint64_t acc);
/* One's complement sum of the IPv4/IPv6 pseudo-header (not complemented). */
uint64_t tun_csum_pseudo(const tun_ipaddr *src, const tun_ipaddr *dst, uint8_t proto,
			 uint32_t l4_len);
/* Full Internet checksum of buf (complemented). */
uint16_t tun_csum(const void *buf, size_t len);
/* True when the TCP/UDP/ICMPv6 (pseudo-header) or ICMPv4 checksum of ip's L4 is right.
 * A UDP-over-IPv4 checksum of 0 ("none") counts as right. */
bool tun_l4_csum_ok(const tun_ip *ip);
/* RFC 1624 eqn. 3: checksum after a 16-bit field went from old to new. */
uint16_t tun_csum_update16(uint16_t csum, uint16_t old_v, uint16_t new_v);
uint16_t tun_csum_update32(uint16_t csum, uint32_t old_v, uint32_t new_v);

/* ---- builders ---- */
/* Everything a builder needs for the IP header. */
typedef struct tun_ip_build {
	tun_ipaddr src, dst; /* same family */
	uint8_t ttl;         /* 0 → 64 */
	uint8_t tos;
	uint16_t id;         /* IPv4 identification */
	bool csum_partial;   /* TCP/UDP: leave the L4 checksum to the kernel (vnet_hdr
			      * NEEDS_CSUM): its field holds the pseudo-header sum only */
} tun_ip_build;

/* Write the IPv4 (20 bytes, DF set, checksum filled) or IPv6 (40 bytes) header for an
 * L4 payload of l4_len bytes. Returns the header length, or TUN_IP_ENOSPACE when out
 * is too small or the total exceeds TUN_IP_MAX_PACKET, TUN_IP_EINVAL for a bad family. */
int tun_ip_build_hdr(const tun_ip_build *b, uint8_t proto, size_t l4_len,
		     uint8_t *out, size_t outcap);
static inline size_t tun_ip_hdr_size(const tun_ipaddr *a) { return a->family == 6 ? TUN_IP6_HDR : TUN_IP4_HDR; }

typedef struct tun_tcp_build {
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t window;      /* raw field */
	uint16_t mss;         /* 0 = no MSS option */
	int8_t wscale;        /* < 0 = no window scale option */
	bool sack_ok;
} tun_tcp_build;

/* A whole IP+TCP packet with checksums. payload may already sit where it belongs
 * (out + IP header + TCP header incl. options): memmove semantics; payload NULL means
 * the plen bytes are already there. Returns the packet length or a TUN_IP_E* code. */
int tun_tcp_build_pkt(const tun_ip_build *ib, const tun_tcp_build *tb, const void *payload,
		      size_t plen, uint8_t *out, size_t outcap);
/* TCP header length the options in tb need (20, 24, 28, ...). */
size_t tun_tcp_hdr_size(const tun_tcp_build *tb);

/* IP+UDP with checksum (memmove semantics for payload). */
int tun_udp_build_pkt(const tun_ip_build *ib, uint16_t sport, uint16_t dport, const void *payload,
		      size_t plen, uint8_t *out, size_t outcap);

/* IP+ICMP echo request/reply (ICMPv6 when ib is IPv6); type is the family's number. */
int tun_icmp_build_echo(const tun_ip_build *ib, uint8_t type, uint16_t id, uint16_t seq,
			const void *payload, size_t plen, uint8_t *out, size_t outcap);

/* ICMP destination unreachable (v4 type 3 / v6 type 1, code as given) quoting the
 * offending packet orig: IPv4 quotes its header + 8 bytes (RFC 792; we quote up to 548
 * bytes like Linux, keeping the reply <= 576), IPv6 as much as fits in 1280 (RFC 4443).
 * ib->src is who reports, ib->dst should be orig's source. */
int tun_icmp_build_unreach(const tun_ip_build *ib, uint8_t code, const uint8_t *orig,
			   size_t orig_len, uint8_t *out, size_t outcap);

#endif
