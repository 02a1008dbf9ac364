/* The IP <-> Pilot address map (see tun/ADDRESSING.md).
 *
 * IPv4: the node's own IP is the subnet's first host (10.4.0.1 in 10.4.0.0/16);
 * every peer gets an IP on demand (lowest free host, skipping the network and
 * broadcast addresses, the node's own IP and the DNS IP) or the IP an operator
 * asks for (`pilotctl map <addr> [ip]`). The map is persisted as JSON (mode 0600,
 * written atomically after every change) so a peer keeps its IP across restarts.
 * It is bounded by the subnet: prefixes /16 to /30 only, at most 65533 peers.
 *
 * IPv6 needs no table: the ULA address embeds the Pilot address,
 *     fd50:494c:4f54:NNNN::HHHH:LLLL  <->  N:NNNN.HHHH.LLLL
 * (tun_ula_*). IPv4 addresses here are in host byte order. */
#ifndef PILOT_TUN_ADDRMAP_H
#define PILOT_TUN_ADDRMAP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"

#define TUN_ADDRMAP_DEFAULT_SUBNET 0x0A040000u /* 10.4.0.0 */
#define TUN_ADDRMAP_DEFAULT_PREFIX 16
#define TUN_ADDRMAP_MIN_PREFIX 16
#define TUN_ADDRMAP_MAX_PREFIX 30
/* Largest map file we read (65533 entries of ~50 bytes fit easily). */
#define TUN_ADDRMAP_MAX_FILE (8u << 20)

typedef struct tun_addrmap tun_addrmap;

typedef struct tun_addrmap_cfg {
	uint32_t subnet;     /* network address, host order; 0 = 10.4.0.0 */
	int prefix_len;      /* 16..30; 0 = 16 */
	uint32_t dns_ip;     /* an extra address never given to a peer; 0 = none
	                      * (the responder normally listens on the own IP) */
	const char *path;    /* persistence file; NULL = memory only */
} tun_addrmap_cfg;

/* Create the map and load cfg->path if it exists (a missing file is an empty
 * map). Entries outside the subnet or on a reserved address are dropped with a
 * warning (the subnet may have been reconfigured); a file that is not valid map
 * JSON is an error naming the file. Returns 0 or -errno with err filled. */
int tun_addrmap_open(const tun_addrmap_cfg *cfg, tun_addrmap **out, char *err, size_t errlen);
void tun_addrmap_free(tun_addrmap *m); /* NULL-safe */

uint32_t tun_addrmap_subnet(const tun_addrmap *m);
int tun_addrmap_prefix_len(const tun_addrmap *m);
uint32_t tun_addrmap_own_ip(const tun_addrmap *m);
bool tun_addrmap_in_subnet(const tun_addrmap *m, uint32_t ip);

/* The node's own Pilot address (known once registered): lookups of it give
 * the own IP and vice versa. It is never stored in the file. */
void tun_addrmap_set_own(tun_addrmap *m, pilot_addr own);

/* 0 and *ip / *addr, or -ENOENT. */
int tun_addrmap_lookup_addr(const tun_addrmap *m, pilot_addr a, uint32_t *ip);
int tun_addrmap_lookup_ip(const tun_addrmap *m, uint32_t ip, pilot_addr *a);

/* The address's IP, allocating the lowest free one (and saving) when it has
 * none. 0, -ENOSPC (subnet full) or -EINVAL (zero or broadcast address). A
 * failed save is logged, not returned: the mapping works and the next change
 * retries the write. */
int tun_addrmap_get(tun_addrmap *m, pilot_addr a, uint32_t *ip);

/* Map a to exactly ip (moving a if it had another IP). 0, -EINVAL (outside the
 * subnet, reserved, or a bad address), -EEXIST (ip belongs to another address),
 * or a save error. */
int tun_addrmap_map(tun_addrmap *m, pilot_addr a, uint32_t ip);
/* 0, -ENOENT, or a save error. */
int tun_addrmap_unmap(tun_addrmap *m, pilot_addr a);

size_t tun_addrmap_count(const tun_addrmap *m);
/* Visit every peer entry in IP order; stop early when cb returns non-zero. */
typedef int (*tun_addrmap_visit_fn)(void *ctx, pilot_addr a, uint32_t ip);
void tun_addrmap_foreach(const tun_addrmap *m, tun_addrmap_visit_fn cb, void *ctx);

/* Write the file now (also done after every change). 0 or -errno. */
int tun_addrmap_save(tun_addrmap *m);

/* ---- IPv6: deterministic ULA, no table ------------------------------------ */

/* fd50:494c:4f54::/48 — "PILOT" in ASCII after the fd ULA byte. */
extern const uint8_t tun_ula_prefix[6];
#define TUN_ULA_PREFIX_LEN 48
#define TUN_ULA_NET_PREFIX_LEN 64

void tun_ula_from_addr(pilot_addr a, struct in6_addr *out);
/* 0, or -EINVAL when ip is not in the prefix or bytes 8..11 are not zero. */
int tun_ula_to_addr(const struct in6_addr *ip, pilot_addr *out);
bool tun_ula_in_prefix(const struct in6_addr *ip);

#endif
