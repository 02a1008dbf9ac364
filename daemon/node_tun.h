/* Private to daemon/node_tun.c and daemon/ctlsrv_tun.c: the node's TUN state. */
#ifndef PILOT_NODE_TUN_H
#define PILOT_NODE_TUN_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/tunbridge.h"
#include "tun/addrmap.h"
#include "tun/dev.h"
#include "tun/dns.h"

typedef struct node_tun {
	tun_dev *dev;
	tun_addrmap *map;
	tun_dns *dns;           /* NULL with -no-dns */
	tunbridge *bridge;      /* from the first register_ok */
	char map_path[4096];    /* "" = in memory */
	struct in6_addr own6;
	bool has_own6;
	bool resolved_tried;
} node_tun;

/* Dotted quad of a host-order IPv4 address. */
void node_tun_ip4_text(const node_tun *nt, uint32_t ip, char out[INET_ADDRSTRLEN]);

#endif
