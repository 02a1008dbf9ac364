/* pilotd's client of a pilot-nameserver (-nameserver ADDR, pilot-nameserver(8)):
 * one request per Pilot stream to port 53, the reply read until EOF. The DNS
 * responder asks it before the registry (node_tun.c). */
#ifndef PILOT_NODE_NS_H
#define PILOT_NODE_NS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"

struct node;

#define NODE_NS_TIMEOUT_MS 1500 /* leaves the registry time within the DNS's 3 s */
#define NODE_NS_REPLY_MAX  4096 /* enough for TUN_DNS_MAX_ANS providers */

/* "1234" or "N:NNNN.HHHH.LLLL" -> node ID. 0 or -EINVAL. */
int node_ns_parse(const char *s, uint32_t *id);
/* reply: NUL-terminated text (valid during the call) when err == 0. */
typedef void (*node_ns_cb)(void *arg, int err, const char *reply);
/* Send req to the configured nameserver. 0 (cb is called later, exactly once)
 * or -errno (-ENOENT: no nameserver, or it is this node; cb not called). */
int node_ns_ask(struct node *n, const char *req, node_ns_cb cb, void *arg);

/* Reply parsers: "A <name> <address>", "N <name> <id>", S lines. 0 or -ENOENT. */
int node_ns_reply_a(const char *reply, pilot_addr *out);
int node_ns_reply_n(const char *reply, uint16_t *out);
/* Up to max providers; returns how many. */
size_t node_ns_reply_s(const char *reply, pilot_addr *addrs, uint16_t *ports, size_t max);

#endif
