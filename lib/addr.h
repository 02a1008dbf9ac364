/* Pilot virtual addresses: 16-bit network + 32-bit node (packet.md §1). */
#ifndef PILOT_ADDR_H
#define PILOT_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PILOT_ADDR_SIZE 6
/* "65535:FFFF.FFFF.FFFF" + NUL */
#define PILOT_ADDR_STRLEN 21
/* address + ":65535" + NUL */
#define PILOT_SOCKADDR_STRLEN 27

#define PILOT_NODE_REGISTRY   1u
#define PILOT_NODE_BEACON     2u
#define PILOT_NODE_NAMESERVER 3u
#define PILOT_NODE_BROADCAST  0xFFFFFFFFu

typedef struct pilot_addr {
	uint16_t net;
	uint32_t node;
} pilot_addr;

static inline pilot_addr pilot_addr_make(uint16_t net, uint32_t node)
{
	pilot_addr a = { net, node };
	return a;
}

static inline bool pilot_addr_eq(pilot_addr a, pilot_addr b)
{
	return a.net == b.net && a.node == b.node;
}

static inline bool pilot_addr_is_zero(pilot_addr a)
{
	return a.net == 0 && a.node == 0;
}

/* Broadcast tests only the node part, on any network (packet.md §1.3). */
static inline bool pilot_addr_is_broadcast(pilot_addr a)
{
	return a.node == PILOT_NODE_BROADCAST;
}

/* 6-byte big-endian form. decode needs len >= 6; returns 0 or -EINVAL. */
void pilot_addr_encode(pilot_addr a, uint8_t out[PILOT_ADDR_SIZE]);
int pilot_addr_decode(const uint8_t *buf, size_t len, pilot_addr *out);

/* Text form N:NNNN.HHHH.LLLL. parse takes (s, len) so it never reads past len;
 * returns 0 or -EINVAL. format always writes upper-case hex and a NUL. */
int pilot_addr_parse(const char *s, size_t len, pilot_addr *out);
char *pilot_addr_format(pilot_addr a, char out[PILOT_ADDR_STRLEN]);

/* Socket address text "<addr>:<port>", split at the last ':'. */
int pilot_sockaddr_parse(const char *s, size_t len, pilot_addr *addr, uint16_t *port);
char *pilot_sockaddr_format(pilot_addr a, uint16_t port, char out[PILOT_SOCKADDR_STRLEN]);

#endif
