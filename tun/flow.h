/* Flow table: (proto, src ip, src port, dst ip, dst port) -> caller's pointer, for
 * IPv4 and IPv6. Open addressing (linear probing) over an index of 32-bit slots,
 * entries in a dense array with a free list; bounded at creation (max_flows), nothing
 * allocated afterwards. O(1) lookup per packet; the hash is keyed by a caller seed
 * (take it from randombytes) so peers cannot aim collisions at one chain.
 *
 * Deferred free: tun_flow_remove unlinks an entry at once (lookups miss it) but the
 * entry and its value stay valid until tun_flow_reap, which the caller runs after the
 * current dispatch (the packet handler may still be using the value). */
#ifndef PILOT_TUN_FLOW_H
#define PILOT_TUN_FLOW_H

#include <stddef.h>
#include <stdint.h>

#include "tun/ip.h"

typedef struct tun_flow_key {
	uint8_t proto;     /* TUN_IPPROTO_TCP / UDP / ICMP / ICMPV6 */
	tun_ipaddr src, dst;
	uint16_t sport, dport; /* ICMP echo: the identifier in sport, 0 in dport */
} tun_flow_key;

typedef struct tun_flow_table tun_flow_table;

/* Fill k from a parsed packet's addresses and the given ports. */
void tun_flow_key_make(tun_flow_key *k, uint8_t proto, const tun_ipaddr *src, uint16_t sport,
		       const tun_ipaddr *dst, uint16_t dport);

/* max_flows 1..(1<<24). NULL on ENOMEM or a bad size. */
tun_flow_table *tun_flow_table_new(uint32_t max_flows, uint64_t seed);
/* NULL-safe. Values (live and awaiting reap) are not freed: reap first if needed. */
void tun_flow_table_free(tun_flow_table *t);

/* 0, -EEXIST (key present), -ENOSPC (max_flows live + awaiting reap), -EINVAL (val NULL). */
int tun_flow_insert(tun_flow_table *t, const tun_flow_key *k, void *val);
void *tun_flow_lookup(const tun_flow_table *t, const tun_flow_key *k);
/* Unlink; the value goes to the reap list. 0 or -ENOENT. */
int tun_flow_remove(tun_flow_table *t, const tun_flow_key *k);
/* Call free_val (may be NULL) on every removed value and recycle the entries. */
void tun_flow_reap(tun_flow_table *t, void (*free_val)(void *val, void *arg), void *arg);

uint32_t tun_flow_count(const tun_flow_table *t);   /* live flows */
uint32_t tun_flow_pending(const tun_flow_table *t); /* removed, not yet reaped */

/* Iteration over live flows: start with *pos = 0; returns 0 at the end. Insertions
 * and removals during iteration are allowed (a removed flow is not visited later). */
int tun_flow_next(const tun_flow_table *t, uint32_t *pos, const tun_flow_key **k, void **val);

#endif
