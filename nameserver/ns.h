/* pilot-nameserver: the overlay's name service on Pilot port 53 (services.md §2).
 *
 *   wire.c   request parser and reply formatting (pure (buf, len) functions)
 *   store.c  the records (A, N, S) with their TTL, saved atomically as JSON in
 *            the reference's format
 *   handle.c one request -> one reply, with the ownership rules
 *   ctl.c    a synchronous client of pilotd's control socket (who is the caller,
 *            network membership, registry bootstrap)
 *   main.c   the program: TCP server on the node's TUN address
 * Every exported name is ns_*. */
#ifndef PILOT_NS_H
#define PILOT_NS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"

#define NS_PORT     53
#define NS_MSG_MAX  65535 /* one request and one reply (services.md §2.1) */
#define NS_NAME_MAX 253   /* longest name accepted (the reference has no limit) */

/* ---- wire.c ---- */
enum ns_op {
	NS_QUERY,
	NS_REGISTER,
	NS_UNREGISTER
};
enum ns_type {
	NS_A,
	NS_N,
	NS_S
};

typedef struct ns_req {
	enum ns_op op;
	enum ns_type type;
	char name[NS_NAME_MAX + 1]; /* A, N; S on REGISTER */
	pilot_addr addr;            /* REGISTER A, REGISTER S */
	uint16_t net_id, port;      /* N (net_id), S */
} ns_req;

/* Parse one request (whitespace separated fields, keywords case-insensitive,
 * extra fields ignored). 0, or -EINVAL with the reply's error text (without
 * "ERR ") in err. Grammar: services.md §2.2 plus the UNREGISTER extension:
 *   UNREGISTER A <name> | UNREGISTER N <name> | UNREGISTER S <net_id> <port> */
int ns_parse(const char *buf, size_t len, ns_req *r, char *err, size_t errlen);
/* Format a request (the client side): bytes written (without NUL) or -ENOSPC. */
int ns_format_req(const ns_req *r, char *out, size_t outlen);

/* ---- store.c ---- */
typedef struct ns_store ns_store;

typedef struct ns_svc {
	const char *name;
	pilot_addr addr;
	uint16_t port;
} ns_svc;

/* path NULL = memory only. ttl_ms: lifetime of a record from its registration;
 * max: records held at most (A + N + S entries). */
ns_store *ns_store_new(const char *path, uint64_t ttl_ms, size_t max);
void ns_store_free(ns_store *s);
/* Load path (a missing file is an empty store); records loaded restart their
 * clock at now_ms. 0, or -errno / -EINVAL (not the expected JSON). */
int ns_store_load(ns_store *s, uint64_t now_ms);
size_t ns_store_count(const ns_store *s);

/* Registrations: 0 stored (and saved), 1 refreshed only (S repeat), -ENOSPC
 * full, -EIO the save failed (the record is kept in memory). */
int ns_store_set_a(ns_store *s, const char *name, pilot_addr a, uint64_t now_ms);
int ns_store_set_n(ns_store *s, const char *name, uint16_t net, uint64_t now_ms);
int ns_store_add_s(ns_store *s, const char *name, pilot_addr a, uint16_t net, uint16_t port, uint64_t now_ms);
/* Lookups: 0 or -ENOENT. */
int ns_store_get_a(const ns_store *s, const char *name, pilot_addr *out);
int ns_store_get_n(const ns_store *s, const char *name, uint16_t *out);
/* Calls fn for each provider of (net, port), in registration order; returns
 * how many. */
size_t ns_store_each_s(const ns_store *s, uint16_t net, uint16_t port,
		       void (*fn)(void *arg, const ns_svc *svc), void *arg);
/* Removals return how many records went (0 = none). A: only when its address
 * node is owner (0 = any); S: the providers of (net, port) on node owner. */
int ns_store_del_a(ns_store *s, const char *name, uint32_t owner);
int ns_store_del_n(ns_store *s, const char *name);
int ns_store_del_s(ns_store *s, uint16_t net, uint16_t port, uint32_t owner);
/* Drop every record whose TTL has passed; returns how many (saved if any). */
size_t ns_store_reap(ns_store *s, uint64_t now_ms);

/* ---- handle.c ---- */
typedef struct ns_ctx {
	ns_store *st;
	uint64_t now_ms;
	/* The stream's authenticated source node (0 = unknown: no registration). */
	uint32_t caller;
	/* Is node a member of network net? 1 yes, 0 no, < 0 cannot tell. NULL = no. */
	int (*is_member)(void *arg, uint32_t node, uint16_t net);
	/* Registry lookup of a hostname missing from the store. 0 or -errno. */
	int (*bootstrap)(void *arg, const char *name, pilot_addr *out);
	void *arg;
} ns_ctx;

/* Answer one request: the reply text in out (NUL-terminated, no newline).
 * Returns its length. outlen >= 64. */
size_t ns_handle(ns_ctx *c, const char *req, size_t len, char *out, size_t outlen);

#endif
