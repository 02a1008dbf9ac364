/* Control verbs of the TUN address map and bridge: map, unmap, maps, tun.
 * Field names follow the reference's gateway verbs (cli.md: local_ip,
 * pilot_addr, mappings, unmapped) plus node_id and the ULA. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/ctlsrv_args.h"
#include "daemon/ctlsrv_verbs.h"
#include "daemon/ctlsrv.h"
#include "daemon/node.h"
#include "daemon/node_tun.h"

static bool need_tun(ctlsrv_reply *r, node *n)
{
	if (n->tun)
		return false;
	ctlsrv_reply_err(r, "unavailable", "the TUN device is off (-tun=off)",
			 "restart pilotd without -tun=off, as root or with CAP_NET_ADMIN");
	return true;
}

static json_object *entry_json(node_tun *nt, pilot_addr a, uint32_t ip)
{
	json_object *o = json_object_new_object();
	char s[INET6_ADDRSTRLEN], as[PILOT_ADDR_STRLEN];
	struct in6_addr ula;

	node_tun_ip4_text(nt, ip, s);
	json_object_object_add(o, "local_ip", json_object_new_string(s));
	json_object_object_add(o, "pilot_addr", json_object_new_string(pilot_addr_format(a, as)));
	json_object_object_add(o, "node_id", json_object_new_int64(a.node));
	tun_ula_from_addr(a, &ula);
	json_object_object_add(o, "ipv6", json_object_new_string(inet_ntop(AF_INET6, &ula, s, sizeof(s))));
	return o;
}

/* "N:NNNN.HHHH.LLLL" or a decimal node ID (network 0). 0 or -EINVAL. */
static int parse_addr(const char *s, pilot_addr *a)
{
	char *end;
	unsigned long v;

	if (pilot_addr_parse(s, strlen(s), a) == 0)
		return 0;
	if (!*s || strspn(s, "0123456789") != strlen(s))
		return -EINVAL;
	v = strtoul(s, &end, 10);
	if (*end || v == 0 || v > UINT32_MAX)
		return -EINVAL;
	*a = pilot_addr_make(0, (uint32_t)v);
	return 0;
}

static int parse_ip(const char *s, uint32_t *ip)
{
	struct in_addr a;

	if (!s || inet_pton(AF_INET, s, &a) != 1)
		return -EINVAL;
	*ip = ntohl(a.s_addr);
	return 0;
}

/* ---- map ---- */
static void do_map(ctlsrv_reply *r, node *n, pilot_addr a, const char *ipstr)
{
	node_tun *nt = n->tun;
	uint32_t ip;
	char msg[160];
	int rc;

	if (!nt) {
		need_tun(r, n);
		return;
	}
	if (n->node_id && a.node == n->node_id) {
		ctlsrv_reply_err(r, "invalid_argument", "that is this node (its IP is the TUN's own)", NULL);
		return;
	}
	if (ipstr && parse_ip(ipstr, &ip) < 0) {
		snprintf(msg, sizeof(msg), "\"%.64s\" is not an IPv4 address", ipstr);
		ctlsrv_reply_err(r, "invalid_argument", msg, NULL);
		return;
	}
	rc = ipstr ? tun_addrmap_map(nt->map, a, ip) : tun_addrmap_get(nt->map, a, &ip);
	if (rc == -EEXIST) {
		snprintf(msg, sizeof(msg), "%.64s is mapped to another address", ipstr);
		ctlsrv_reply_err(r, "already_exists", msg, "free it first with: pilotctl unmap <ip>");
	} else if (rc == -EINVAL) {
		snprintf(msg, sizeof(msg), "%.64s is outside the TUN subnet or reserved", ipstr ? ipstr : "address");
		ctlsrv_reply_err(r, "invalid_argument", msg, "see: pilotctl info (tun.subnet)");
	} else if (rc == -ENOSPC) {
		ctlsrv_reply_err(r, "internal", "the TUN subnet is full",
				 "unmap unused addresses or widen -tun-subnet");
	} else if (rc < 0) {
		snprintf(msg, sizeof(msg), "map: %s", strerror(-rc));
		ctlsrv_reply_err(r, "internal", msg, NULL);
	} else {
		ctlsrv_reply_ok(r, entry_json(nt, a, ip));
	}
}

typedef struct map_req {
	ctlsrv_reply *r;
	node *n;
	char ip[64];
	bool has_ip;
} map_req;

static void map_resolved(void *arg, uint32_t id, int err, json_object *reply)
{
	map_req *q = arg;

	if (err == -ENOENT)
		ctlsrv_reply_err(q->r, "not_found", "hostname not found",
				 "a private node is found only once it trusts you");
	else if (!ctlsrv_reg_failed(q->r, reply, err))
		do_map(q->r, q->n, pilot_addr_make(0, id), q->has_ip ? q->ip : NULL);
	free(q);
}

void verb_map(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *target = ctlsrv_arg_str(args, "target"), *ip = ctlsrv_arg_str(args, "ip");
	pilot_addr a;
	map_req *q;
	int rc;

	if (need_tun(r, n))
		return;
	if (!target || !*target) {
		ctlsrv_reply_err(r, "invalid_argument", "want an address, node ID or hostname", NULL);
		return;
	}
	if (parse_addr(target, &a) == 0) {
		do_map(r, n, a, ip);
		return;
	}
	if (!(q = ctlsrv_up_alloc(r, n, sizeof(*q))))
		return;
	*q = (map_req){ .r = r, .n = n, .has_ip = ip != NULL };
	snprintf(q->ip, sizeof(q->ip), "%s", ip ? ip : "");
	if (!ctlsrv_resolve_start(n, target, map_resolved, q, &rc)) {
		free(q);
		ctlsrv_reg_refused(r, rc);
	}
}

/* ---- unmap ---- */
void verb_unmap(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	const char *target = ctlsrv_arg_str(args, "target");
	json_object *o;
	pilot_addr a;
	uint32_t ip;
	char msg[160];
	int rc;

	if (need_tun(r, n))
		return;
	if (!target || (parse_ip(target, &ip) < 0 && parse_addr(target, &a) < 0)) {
		ctlsrv_reply_err(r, "invalid_argument", "want a mapped IPv4 address or a Pilot address",
				 NULL);
		return;
	}
	if (parse_ip(target, &ip) == 0 ? tun_addrmap_lookup_ip(n->tun->map, ip, &a) < 0
				       : tun_addrmap_lookup_addr(n->tun->map, a, &ip) < 0) {
		snprintf(msg, sizeof(msg), "%.64s is not mapped", target);
		ctlsrv_reply_err(r, "not_found", msg, "list them with: pilotctl maps");
		return;
	}
	if (n->node_id && a.node == n->node_id) {
		ctlsrv_reply_err(r, "invalid_argument", "the own IP cannot be unmapped", NULL);
		return;
	}
	o = entry_json(n->tun, a, ip);
	if ((rc = tun_addrmap_unmap(n->tun->map, a)) < 0) {
		json_object_put(o);
		snprintf(msg, sizeof(msg), "unmap: %s", strerror(-rc));
		ctlsrv_reply_err(r, "internal", msg, NULL);
		return;
	}
	json_object_object_add(o, "unmapped", json_object_new_boolean(1));
	ctlsrv_reply_ok(r, o);
}

/* ---- maps, tun ---- */
typedef struct list_ctx {
	node_tun *nt;
	json_object *arr;
} list_ctx;

static int add_entry(void *ctx, pilot_addr a, uint32_t ip)
{
	list_ctx *x = ctx;

	json_object_array_add(x->arr, entry_json(x->nt, a, ip));
	return 0;
}

void verb_maps(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	json_object *o;
	list_ctx x;

	if (need_tun(r, n))
		return;
	o = node_tun_info_json(n);
	x = (list_ctx){ .nt = n->tun, .arr = json_object_new_array() };
	tun_addrmap_foreach(n->tun->map, add_entry, &x);
	json_object_object_add(o, "map_file", json_object_new_string(n->tun->map_path));
	json_object_object_add(o, "total", json_object_new_int64((int64_t)json_object_array_length(x.arr)));
	json_object_object_add(o, "mappings", x.arr);
	ctlsrv_reply_ok(r, o);
}

void verb_tun(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	json_object *o, *b;

	if (need_tun(r, n))
		return;
	o = node_tun_info_json(n);
	if (n->tun->bridge) {
		b = tunbridge_flows_json(n->tun->bridge);
		json_object_object_foreach(b, k, v)
			json_object_object_add(o, k, json_object_get(v));
		json_object_put(b);
	} else {
		json_object_object_add(o, "flows", json_object_new_array());
	}
	ctlsrv_reply_ok(r, o);
}
