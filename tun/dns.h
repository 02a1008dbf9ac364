/* The node's DNS responder for the `pilot` domain (tun/ADDRESSING.md), bound on
 * the node's TUN addresses, UDP port 53.
 *
 *   <hostname>.pilot          A (IPv4 map entry, allocated on demand), AAAA (ULA)
 *   N-NNNN-HHHH-LLLL.pilot    same, for an address (0-0000-0000-0007.pilot)
 *   y.x.4.10.in-addr.arpa     PTR for a mapped IPv4 address
 *   <32 nibbles>.ip6.arpa     PTR for a ULA address
 *
 * Hostnames are resolved asynchronously through the node's callback (the
 * registry's resolve_hostname): the query waits in a bounded table until
 * tun_dns_resolve_done, or gets SERVFAIL after the timeout. Unknown names under
 * .pilot get NXDOMAIN, everything else REFUSED. Positive TTL 60 s, negative 5 s
 * (SOA minimum in the authority section, RFC 2308).
 *
 * Abuse (issue 12 §4): the sockets are bound to the TUN's addresses, but with
 * the weak host model a neighbour on the underlay could still route a query to
 * them; with cfg.ifindex set, only queries that arrived through the TUN device
 * (IP_PKTINFO / IPV6_PKTINFO; a query from this host itself counts, the kernel
 * reports the device owning the address) are answered, others are dropped and
 * counted. Each hostname lookup costs the node's registry allowance, so
 * lookups are rate limited per client address and in total (over the limit:
 * SERVFAIL, counted), and answers are cached: NXDOMAIN for neg_cache_ms, an
 * address for TUN_DNS_TTL.
 *
 * The wire codec (tun_dns_parse_query, tun_dns_encode_reply, tun_dns_parse_msg)
 * is pure (buf, len) and fuzzed; tun_dns_handle is the sans-IO core; only
 * tun_dns_listen touches sockets and the loop. */
#ifndef PILOT_TUN_DNS_H
#define PILOT_TUN_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "lib/addr.h"
#include "lib/loop.h"
#include "tun/addrmap.h"

#define TUN_DNS_PORT 53
#define TUN_DNS_MAX_WIRE 255    /* a name in wire form, root label included */
#define TUN_DNS_MAX_TEXT 1024   /* the same as text, \DDD-escaped worst case */
#define TUN_DNS_MAX_UDP 4096    /* largest reply we build */
#define TUN_DNS_EDNS_SIZE 1232  /* the payload size we advertise */
#define TUN_DNS_TTL 60
#define TUN_DNS_NEG_TTL 5

enum {
	TUN_DNS_T_A = 1, TUN_DNS_T_NS = 2, TUN_DNS_T_CNAME = 5, TUN_DNS_T_SOA = 6,
	TUN_DNS_T_PTR = 12,
	TUN_DNS_T_AAAA = 28,
	TUN_DNS_T_SRV = 33,
	TUN_DNS_T_OPT = 41,
	TUN_DNS_T_ANY = 255,
};
enum {
	TUN_DNS_NOERROR = 0, TUN_DNS_FORMERR = 1, TUN_DNS_SERVFAIL = 2,
	TUN_DNS_NXDOMAIN = 3, TUN_DNS_NOTIMP = 4, TUN_DNS_REFUSED = 5,
};
#define TUN_DNS_CLASS_IN 1
#define TUN_DNS_F_QR 0x8000
#define TUN_DNS_F_AA 0x0400
#define TUN_DNS_F_TC 0x0200
#define TUN_DNS_F_RD 0x0100
#define TUN_DNS_F_RA 0x0080

/* ---- wire codec (pure) ------------------------------------------------------ */

typedef struct tun_dns_query {
	uint16_t id;
	uint16_t flags;                 /* header flags as received */
	bool has_question;
	uint16_t qtype, qclass;
	uint8_t qwire[TUN_DNS_MAX_WIRE]; /* question name, uncompressed, case kept */
	size_t qwire_len;
	char name[TUN_DNS_MAX_TEXT];    /* lower-case text, no trailing dot; "" = root */
	bool edns;
	uint16_t udp_size;              /* client's EDNS payload size (512 without) */
} tun_dns_query;

/* Returns 0 (a standard query with one question), a positive rcode to answer
 * with (FORMERR, NOTIMP; q->id and flags set, has_question when it parsed), or
 * -EINVAL to drop silently (shorter than a header, or a response). */
int tun_dns_parse_query(const uint8_t *buf, size_t len, tun_dns_query *q);

typedef struct tun_dns_rr {
	uint16_t type; /* A, AAAA, PTR, SOA or SRV (owner: the question name) */
	uint32_t ttl;
	uint8_t addr[16];       /* A: 4 bytes, AAAA: 16, network order */
	char target[256];       /* PTR / SRV target, SOA zone, plain text (no escapes) */
	uint16_t port;          /* SRV */
} tun_dns_rr;

#define TUN_DNS_MAX_ANS 8 /* answers in one reply (SRV: providers listed) */

typedef struct tun_dns_reply {
	uint8_t rcode;
	size_t nans;
	tun_dns_rr ans[TUN_DNS_MAX_ANS];
	const char *soa_zone;   /* authority SOA for negative answers; NULL = none */
} tun_dns_reply;

/* Build the reply to q into out. Names are compressed; an OPT record is added
 * when the query had one; a reply larger than the client's limit (512 or its
 * EDNS size) is cut to header + question with TC set. Returns the length, or
 * -ENOSPC when not even that fits in cap, -EINVAL for a bad rr. */
int tun_dns_encode_reply(const tun_dns_query *q, const tun_dns_reply *r, uint8_t *out, size_t cap);

/* A whole message, for tests and the fuzzer: the first few RRs of every section. */
#define TUN_DNS_MSG_MAX_RR 8
typedef struct tun_dns_rr_view {
	char name[TUN_DNS_MAX_TEXT];
	uint16_t type, rclass;
	uint32_t ttl;
	uint16_t rdlen;
	const uint8_t *rdata;   /* points into the parsed buffer */
	char target[TUN_DNS_MAX_TEXT]; /* PTR/NS/CNAME target or SOA mname */
} tun_dns_rr_view;

typedef struct tun_dns_msg {
	uint16_t id, flags, qdcount, ancount, nscount, arcount;
	char qname[TUN_DNS_MAX_TEXT];
	uint16_t qtype, qclass;
	size_t nrr;             /* stored in rr[], answers first */
	tun_dns_rr_view rr[TUN_DNS_MSG_MAX_RR];
} tun_dns_msg;

/* 0 or -EINVAL; checks every length and every compression pointer. */
int tun_dns_parse_msg(const uint8_t *buf, size_t len, tun_dns_msg *m);

/* ---- the responder ------------------------------------------------------------------ */

typedef struct tun_dns tun_dns;

/* Resolve hostname (valid only during the call) and later call
 * tun_dns_resolve_done(d, token, ...) — possibly from inside this callback. */
typedef void (*tun_dns_resolve_fn)(void *ctx, const char *hostname, uint64_t token);
/* Services: _<port>._pilot.<network>.pilot SRV, network as a decimal ID or a
 * name; answer with tun_dns_srv_done(d, token, ...). */
typedef void (*tun_dns_resolve_srv_fn)(void *ctx, const char *network, uint16_t port, uint64_t token);

typedef struct tun_dns_client {
	struct sockaddr_storage ss;
	socklen_t len;
	int sock;               /* the socket the query came in on; -1 in tests */
	int ifindex;            /* the device it arrived through; 0 = unknown */
} tun_dns_client;

/* Where deferred replies go (default: sendto on client->sock). */
typedef void (*tun_dns_send_fn)(void *ctx, const tun_dns_client *to, const uint8_t *buf, size_t len);

typedef struct tun_dns_cfg {
	tun_addrmap *map;          /* required; the responder allocates A entries in it */
	tun_dns_resolve_fn resolve; /* NULL: hostnames get NXDOMAIN */
	tun_dns_resolve_srv_fn resolve_srv; /* NULL: service names get NXDOMAIN */
	void *ctx;
	unsigned timeout_ms;       /* pending hostname lookups; 0 = 3000 */
	size_t max_pending;        /* 0 = 256; beyond it: SERVFAIL at once */
	int ifindex;               /* answer only queries arriving on it; 0 = any */
	unsigned client_rate;      /* registry lookups per second per client (0 = 2) */
	unsigned client_burst;     /* ... in a burst (0 = 10) */
	unsigned total_rate;       /* registry lookups per second in total, burst twice that (0 = 10) */
	unsigned neg_cache_ms;     /* how long an NXDOMAIN is remembered (0 = 30000) */
} tun_dns_cfg;

typedef struct tun_dns_stats {
	uint64_t queries;          /* datagrams handled */
	uint64_t not_tun;          /* dropped: did not arrive through the TUN */
	uint64_t lookups;          /* hostname lookups sent to the resolver */
	uint64_t rate_limited;     /* lookups refused (SERVFAIL) by a rate limit */
	uint64_t cache_hits;       /* answered from the cache, positive */
	uint64_t neg_cache_hits;   /* answered from the cache, NXDOMAIN */
} tun_dns_stats;

int tun_dns_new(const tun_dns_cfg *cfg, tun_dns **out);
/* Closes the sockets and drops pending queries unanswered. NULL-safe. */
void tun_dns_free(tun_dns *d);
void tun_dns_set_sender(tun_dns *d, tun_dns_send_fn fn, void *ctx);

/* Bind a UDP socket on sa (the node's TUN IPv4 or IPv6 address, port 53) and
 * serve it on l. Up to two sockets. 0 or -errno with err filled. */
int tun_dns_listen(tun_dns *d, pilot_loop *l, const struct sockaddr *sa, socklen_t salen,
		   char *err, size_t errlen);

/* Sans-IO core: handle one datagram; returns the reply length to send now (in
 * out), or 0 when there is nothing to send now (dropped, or waiting for the
 * resolver). cap should be TUN_DNS_MAX_UDP. */
size_t tun_dns_handle(tun_dns *d, const tun_dns_client *from, const uint8_t *pkt, size_t len,
		      uint8_t *out, size_t cap);
/* The resolver's answer: status 0 with addr, -ENOENT (NXDOMAIN) or any other
 * negative value (SERVFAIL). Unknown or expired tokens are ignored. */
void tun_dns_resolve_done(tun_dns *d, uint64_t token, int status, pilot_addr addr);
/* The SRV resolver's answer: status 0 with n providers (at most
 * TUN_DNS_MAX_ANS are listed; targets are N-NNNN-HHHH-LLLL.pilot), -ENOENT
 * (NXDOMAIN, also for n == 0) or another negative value (SERVFAIL). */
void tun_dns_srv_done(tun_dns *d, uint64_t token, int status, const pilot_addr *addrs, const uint16_t *ports,
		      size_t n);
/* SERVFAIL every pending query older than the timeout (the loop timer calls it). */
void tun_dns_expire(tun_dns *d, uint64_t now_ms);
size_t tun_dns_pending(const tun_dns *d);
void tun_dns_get_stats(const tun_dns *d, tun_dns_stats *st);

/* Point systemd-resolved at this responder for `pilot` and the reverse zones
 * of the subnet and the ULA prefix: when rundir (NULL = /run/systemd/resolve)
 * exists and resolvectl is on PATH, runs `resolvectl dns <ifname> <ips>` and
 * `resolvectl domain <ifname> ~pilot ~<v4 zone> ~<v6 zone>` (posix_spawn).
 * Returns 1 when registered, 0 when resolved is not in use, -errno on failure. */
int tun_dns_register_resolved(const tun_dns *d, const char *ifname, const char *rundir,
			      char *err, size_t errlen);

/* The reverse zones the responder answers for ("4.10.in-addr.arpa",
 * "4.5.f.4.c.4.9.4.0.5.d.f.ip6.arpa"). */
void tun_dns_zone4(const tun_addrmap *m, char out[64]);
void tun_dns_zone6(char out[64]);

#endif
