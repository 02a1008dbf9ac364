/* The TUN virtual NIC of pilotd (DESIGN.md §3, tun/ADDRESSING.md): the device
 * with the own IPv4 and the ULA route, the persisted address map and the DNS
 * responder are set up in node_tun_open, before the privilege drop (both need
 * CAP_NET_ADMIN / port 53). The own ULA needs the node ID, so it and the bridge
 * come in node_tun_up on the first register_ok; until then pilotd keeps
 * CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (also after -user switched the uid
 * before any network input) and gives them up after it (node.c, at most
 * DROP_WAIT_MS). Tear-down: the bridge before the conn
 * table (node_tun_down), the DNS responder after the registration (its pending
 * lookups are answered with -ECANCELED), then the map and the device (closing
 * the fd removes the device, its addresses and routes). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/capability.h>

#include "stream/conn.h"
#include "daemon/node.h"
#include "daemon/node_tun.h"
#include "daemon/node_ns.h"
#include "daemon/broadcast.h"
#include "daemon/privs.h"
#include "daemon/registration.h"
#include "lib/jsonwire.h"
#include "lib/log.h"

#define TUN_STREAM_BUF (1u << 20) /* kernel-side TCP buffers of a bridged flow */

static int empty(const char *s)
{
	return !s || !s[0];
}

bool node_tun_enabled(const node_options *o)
{
	return !empty(o->tun) && strcmp(o->tun, "off") != 0;
}

bool node_tun_userspace(const node_options *o)
{
	return !empty(o->tun) && strcmp(o->tun, "userspace") == 0;
}

int node_tun_parse_subnet(const char *cidr, uint32_t *net, int *prefix)
{
	char ip[INET_ADDRSTRLEN], *end;
	const char *slash = cidr ? strchr(cidr, '/') : NULL;
	struct in_addr a;
	long p;

	if (!slash || (size_t)(slash - cidr) >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, cidr, (size_t)(slash - cidr));
	ip[slash - cidr] = '\0';
	p = strtol(slash + 1, &end, 10);
	if (inet_pton(AF_INET, ip, &a) != 1 || !slash[1] || *end || p < TUN_ADDRMAP_MIN_PREFIX
	    || p > TUN_ADDRMAP_MAX_PREFIX)
		return -EINVAL;
	*net = ntohl(a.s_addr);
	*prefix = (int)p;
	return (*net & ~(0xffffffffu << (32 - p))) ? -EINVAL : 0;
}

/* ---- the address map ---- */
static void map_path(node *n, node_tun *nt)
{
	const char *id = n->o.identity, *slash;

	if (!empty(n->o.map_file)) {
		snprintf(nt->map_path, sizeof(nt->map_path), "%s", n->o.map_file);
	} else if (!empty(id)) {
		slash = strrchr(id, '/');
		if (!slash)
			snprintf(nt->map_path, sizeof(nt->map_path), "addrmap.json");
		else
			snprintf(nt->map_path, sizeof(nt->map_path), "%.*s/addrmap.json",
				 slash == id ? 1 : (int)(slash - id), id);
	}
}

static void open_map(node *n, node_tun *nt)
{
	tun_addrmap_cfg mc = { 0 };
	char err[512];

	node_tun_parse_subnet(n->o.tun_subnet, &mc.subnet, &mc.prefix_len);
	map_path(n, nt);
	mc.path = nt->map_path[0] ? nt->map_path : NULL;
	if (tun_addrmap_open(&mc, &nt->map, err, sizeof(err)) < 0)
		pilot_fatal("%s", err);
}

/* ---- DNS: hostnames through the registry ---- */
typedef struct dns_req {
	node *n;
	uint64_t token;
} dns_req;

static void dns_answer(node *n, uint64_t token, int status, pilot_addr a)
{
	if (n->tun && n->tun->dns)
		tun_dns_resolve_done(n->tun->dns, token, status, a);
}

static void dns_resolved(void *arg, json_object *reply, int err)
{
	dns_req *q = arg;
	json_object *v = NULL;
	int64_t id = 0;

	if (!err && json_object_object_get_ex(reply, "node_id", &v))
		id = json_object_get_int64(v);
	if (err == -EREMOTEIO || (!err && (id <= 0 || id > UINT32_MAX)))
		dns_answer(q->n, q->token, -ENOENT, pilot_addr_make(0, 0));
	else if (err)
		dns_answer(q->n, q->token, err, pilot_addr_make(0, 0));
	else
		dns_answer(q->n, q->token, 0, pilot_addr_make(0, (uint32_t)id));
	free(q);
}

static void dns_registry(node *n, const char *hostname, uint64_t token)
{
	dns_req *q = malloc(sizeof(*q));

	if (q) {
		*q = (dns_req){ .n = n, .token = token };
		if (n->reg && registration_resolve_hostname(n->reg, hostname, dns_resolved, q) == 0)
			return;
	}
	free(q);
	dns_answer(n, token, -EAGAIN, pilot_addr_make(0, 0));
}

/* ---- DNS: the nameserver first (-nameserver), then the registry ---- */
typedef struct ns_dns_req {
	node *n;
	uint64_t token;
	uint16_t port; /* SRV */
	char name[64];
} ns_dns_req;

static void ns_a_done(void *arg, int err, const char *reply)
{
	ns_dns_req *q = arg;
	pilot_addr a;

	if (!err && node_ns_reply_a(reply, &a) == 0)
		dns_answer(q->n, q->token, 0, a);
	else
		dns_registry(q->n, q->name, q->token);
	free(q);
}

static void dns_resolve(void *ctx, const char *hostname, uint64_t token)
{
	node *n = ctx;
	ns_dns_req *q;
	char req[96];

	if (n->o.nameserver && *n->o.nameserver && (q = calloc(1, sizeof(*q)))) {
		*q = (ns_dns_req){ .n = n, .token = token };
		snprintf(q->name, sizeof(q->name), "%s", hostname);
		snprintf(req, sizeof(req), "QUERY A %s", q->name);
		if (node_ns_ask(n, req, ns_a_done, q) == 0)
			return;
		free(q);
	}
	dns_registry(n, hostname, token);
}

static void srv_answer(node *n, uint64_t token, int status, const pilot_addr *a, const uint16_t *p, size_t k)
{
	if (n->tun && n->tun->dns)
		tun_dns_srv_done(n->tun->dns, token, status, a, p, k);
}

static void ns_s_done(void *arg, int err, const char *reply)
{
	ns_dns_req *q = arg;
	pilot_addr a[TUN_DNS_MAX_ANS];
	uint16_t p[TUN_DNS_MAX_ANS];
	size_t k = err ? 0 : node_ns_reply_s(reply, a, p, TUN_DNS_MAX_ANS);

	srv_answer(q->n, q->token, err ? err : k ? 0 : -ENOENT, a, p, k);
	free(q);
}

static void ask_services(ns_dns_req *q, uint16_t net)
{
	char req[64];
	int rc;

	snprintf(req, sizeof(req), "QUERY S %u %u", net, q->port);
	if ((rc = node_ns_ask(q->n, req, ns_s_done, q)) < 0) {
		srv_answer(q->n, q->token, rc, NULL, NULL, 0);
		free(q);
	}
}

static void ns_n_done(void *arg, int err, const char *reply)
{
	ns_dns_req *q = arg;
	uint16_t net;

	if (err || node_ns_reply_n(reply, &net) < 0) {
		srv_answer(q->n, q->token, err ? err : -ENOENT, NULL, NULL, 0);
		free(q);
		return;
	}
	ask_services(q, net);
}

/* _<port>._pilot.<network>.pilot: the network by ID, or by name (N record). */
static void dns_resolve_srv(void *ctx, const char *network, uint16_t port, uint64_t token)
{
	node *n = ctx;
	ns_dns_req *q = calloc(1, sizeof(*q));
	char req[96], *end;
	unsigned long net = strtoul(network, &end, 10);
	int rc;

	if (!q) {
		srv_answer(n, token, -ENOMEM, NULL, NULL, 0);
		return;
	}
	*q = (ns_dns_req){ .n = n, .token = token, .port = port };
	snprintf(q->name, sizeof(q->name), "%s", network);
	if (*network && !*end && net <= 65535) {
		ask_services(q, (uint16_t)net);
		return;
	}
	snprintf(req, sizeof(req), "QUERY N %s", q->name);
	if ((rc = node_ns_ask(n, req, ns_n_done, q)) < 0) {
		srv_answer(n, token, rc, NULL, NULL, 0);
		free(q);
	}
}

static void dns_listen4(node *n, node_tun *nt)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(TUN_DNS_PORT) };
	tun_dns_cfg dc = {
		.map = nt->map,
		.resolve = dns_resolve,
		.ctx = n,
		.resolve_srv = n->o.nameserver && *n->o.nameserver ? dns_resolve_srv : NULL,
		.ifindex = tun_dev_ifindex(nt->dev), /* queries through the TUN only (issue 12) */
		.client_rate = (unsigned)n->o.dns_rate,
		.client_burst = (unsigned)n->o.dns_rate * 5,
		.total_rate = (unsigned)n->o.dns_rate * 5,
		.neg_cache_ms = (unsigned)n->o.dns_neg_cache,
	};
	char err[512];
	int r;

	if (n->o.no_dns)
		return;
	if ((r = tun_dns_new(&dc, &nt->dns)) < 0)
		pilot_fatal("DNS responder: %s", strerror(-r));
	sa.sin_addr.s_addr = htonl(tun_addrmap_own_ip(nt->map));
	if (tun_dns_listen(nt->dns, n->loop, (struct sockaddr *)&sa, sizeof(sa), err, sizeof(err)) < 0)
		pilot_fatal("%s (or run with -no-dns)", err);
}

static void dns_listen6(node *n, node_tun *nt)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_port = htons(TUN_DNS_PORT) };
	char err[512];

	if (!nt->dns)
		return;
	sa.sin6_addr = nt->own6;
	if (tun_dns_listen(nt->dns, n->loop, (struct sockaddr *)&sa, sizeof(sa), err, sizeof(err)) < 0)
		log_warn("tun: no DNS on the own ULA: %s", err);
}

/* resolvectl talks to the system's resolved, which knows interfaces by index
 * in its own namespace: registering from another network namespace would
 * configure an unrelated link, so it is done only in the initial one. */
static bool in_init_netns(void)
{
	struct stat self, init;

	if (stat("/proc/self/ns/net", &self) < 0 || stat("/proc/1/ns/net", &init) < 0)
		return false;
	return self.st_ino == init.st_ino && self.st_dev == init.st_dev;
}

static void register_resolved(node *n, node_tun *nt)
{
	char err[512];
	int r;

	if (!nt->dns || nt->resolved_tried)
		return;
	nt->resolved_tried = true;
	if (!in_init_netns()) {
		log_debug("tun: not in the initial network namespace: systemd-resolved left alone");
		return;
	}
	/* resolved lets a sender with CAP_NET_ADMIN configure links: after -user,
	 * resolvectl gets it only through the ambient set (privs.h) */
	privs_ambient(CAP_NET_ADMIN, true);
	r = tun_dns_register_resolved(nt->dns, tun_dev_name(nt->dev), NULL, err, sizeof(err));
	privs_ambient(CAP_NET_ADMIN, false);
	if (r < 0)
		log_warn("tun: systemd-resolved registration failed: %s", err);
	else if (r > 0)
		log_info("tun: registered with systemd-resolved dev=%s domain=~pilot", tun_dev_name(nt->dev));
}

/* ---- life cycle ---- */
static void open_dev(node *n, node_tun *nt)
{
	tun_dev_cfg dc = {
		.name = n->o.tun,
		.mtu = (unsigned)n->o.tun_mtu,
		.ip4 = tun_addrmap_own_ip(nt->map),
		.ip4_prefix = tun_addrmap_prefix_len(nt->map),
		.has_route6 = true,
		.route6_prefix = TUN_ULA_PREFIX_LEN,
		.vnet_hdr = n->o.tun_offload != 0,
	};
	char err[512];

	memcpy(dc.route6.s6_addr, tun_ula_prefix, sizeof(tun_ula_prefix));
	if (tun_dev_open(&dc, &nt->dev, err, sizeof(err)) < 0)
		pilot_fatal("%s (run as root or with CAP_NET_ADMIN, or pass -tun=off)", err);
}

void node_tun_open(node *n)
{
	node_tun *nt;
	char ip[INET_ADDRSTRLEN];
	struct in_addr a;

	if (!node_tun_enabled(&n->o))
		return;
	if (!(nt = calloc(1, sizeof(*nt))))
		pilot_fatal("out of memory");
	n->tun = nt;
	open_map(n, nt);
	if (node_tun_userspace(&n->o)) { /* no device, no DNS socket: the front ends */
		log_info("tun: userspace mode map=%s mapped=%zu", nt->map_path[0] ? nt->map_path : "memory",
			 tun_addrmap_count(nt->map));
		return;
	}
	open_dev(n, nt);
	dns_listen4(n, nt);
	a.s_addr = htonl(tun_addrmap_own_ip(nt->map));
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	log_info("tun: device up dev=%s ip=%s/%d mtu=%u offloads=%s map=%s mapped=%zu dns=%s",
		 tun_dev_name(nt->dev), ip, tun_addrmap_prefix_len(nt->map), tun_dev_mtu(nt->dev),
		 tun_dev_offloads(nt->dev) ? "on" : "off", nt->map_path[0] ? nt->map_path : "memory",
		 tun_addrmap_count(nt->map), nt->dns ? "on" : "off");
}

static void add_own6(node *n, node_tun *nt, pilot_addr own)
{
	char err[512], s[INET6_ADDRSTRLEN];

	tun_ula_from_addr(own, &nt->own6);
	inet_ntop(AF_INET6, &nt->own6, s, sizeof(s));
	if (tun_dev_add_addr6(nt->dev, &nt->own6, TUN_ULA_NET_PREFIX_LEN, err, sizeof(err)) < 0) {
		log_warn("tun: own ULA %s not configured: %s", s, err);
		return;
	}
	nt->has_own6 = true;
	log_info("tun: own ULA ip6=%s/%d", s, TUN_ULA_NET_PREFIX_LEN);
	dns_listen6(n, nt);
}

/* UDP to a network's broadcast ULA: fanned out like pilotctl broadcast. */
static int tun_broadcast(void *ctx, uint16_t net, uint16_t sport, uint16_t dport, const uint8_t *data,
			 size_t len)
{
	return node_broadcast(ctx, net, sport, dport, data, len, NULL, NULL);
}

void node_tun_up(node *n)
{
	node_tun *nt = n->tun;
	pilot_addr own = pilot_addr_make(0, n->node_id);
	tunbridge_config bc = {
		.sndbuf = TUN_STREAM_BUF,
		.rcvbuf = TUN_STREAM_BUF,
		.max_flows = (uint32_t)n->o.tun_max_flows,
	};
	char err[512];

	if (!nt || nt->bridge)
		return;
	tun_addrmap_set_own(nt->map, own);
	if (!nt->dev) {
		bc.userspace = true;
		bc.map = nt->map;
		bc.own = own;
		if (!(nt->bridge = tunbridge_new(n->loop, n->conns, &bc, err, sizeof(err))))
			pilot_fatal("%s", err);
		log_info("tun: userspace bridge up own=%s", n->address);
		return;
	}
	add_own6(n, nt, own);
	register_resolved(n, nt);
	bc.dev = nt->dev;
	bc.map = nt->map;
	bc.broadcast = tun_broadcast;
	bc.broadcast_ctx = n;
	bc.own = own;
	if (!(nt->bridge = tunbridge_new(n->loop, n->conns, &bc, err, sizeof(err))))
		pilot_fatal("%s", err);
	log_info("tun: bridge up dev=%s own=%s", tun_dev_name(nt->dev), n->address);
}

void node_tun_before_drop(node *n)
{
	if (n->tun)
		register_resolved(n, n->tun);
}

void node_tun_down(node *n)
{
	if (!n->tun)
		return;
	tunbridge_free(n->tun->bridge);
	n->tun->bridge = NULL;
}

void node_tun_free(node *n)
{
	node_tun *nt = n->tun;

	if (!nt)
		return;
	tunbridge_free(nt->bridge);
	tun_dns_free(nt->dns);
	tun_addrmap_free(nt->map);
	tun_dev_close(nt->dev);
	free(nt);
	n->tun = NULL;
}

/* ---- pilotctl info ---- */
void node_tun_ip4_text(const node_tun *nt, uint32_t ip, char out[INET_ADDRSTRLEN])
{
	struct in_addr a = { .s_addr = htonl(ip) };

	(void)nt;
	inet_ntop(AF_INET, &a, out, INET_ADDRSTRLEN);
}

static void add_dns_stats(node_tun *nt, json_object *o)
{
	tun_dns_stats ds = { 0 };

	if (nt->dns)
		tun_dns_get_stats(nt->dns, &ds);
	jw_set_int(o, "dns_queries", (int64_t)ds.queries);
	jw_set_int(o, "dns_not_tun", (int64_t)ds.not_tun);
	jw_set_int(o, "dns_lookups", (int64_t)ds.lookups);
	jw_set_int(o, "dns_rate_limited", (int64_t)ds.rate_limited);
	jw_set_int(o, "dns_cache_hits", (int64_t)ds.cache_hits);
	jw_set_int(o, "dns_neg_cache_hits", (int64_t)ds.neg_cache_hits);
}

json_object *node_tun_info_json(node *n)
{
	json_object *o = json_object_new_object();
	node_tun *nt = n->tun;
	char s[INET6_ADDRSTRLEN], sub[INET6_ADDRSTRLEN + 4];
	tunbridge_stats st = { 0 };
	uint64_t bad = 0;

	if (!nt) {
		jw_set_str(o, "device", "off");
		return o;
	}
	jw_set_str(o, "device", nt->dev ? tun_dev_name(nt->dev) : "userspace");
	node_tun_ip4_text(nt, tun_addrmap_own_ip(nt->map), s);
	jw_set_str(o, "ipv4", s);
	node_tun_ip4_text(nt, tun_addrmap_subnet(nt->map), s);
	snprintf(sub, sizeof(sub), "%s/%d", s, tun_addrmap_prefix_len(nt->map));
	jw_set_str(o, "subnet", sub);
	jw_set_str(o, "ipv6", nt->has_own6 ? inet_ntop(AF_INET6, &nt->own6, s, sizeof(s)) : "");
	jw_set_int(o, "mtu", nt->dev ? tun_dev_mtu(nt->dev) : 0);
	jw_set_bool(o, "offloads", nt->dev && tun_dev_offloads(nt->dev) != 0);
	jw_set_str(o, "dns", nt->dns ? "on" : "off");
	jw_set_int(o, "mapped", (int64_t)tun_addrmap_count(nt->map));
	if (nt->bridge)
		tunbridge_get_stats(nt->bridge, &st);
	for (int i = 0; i <= TUN_IP_NERR; i++)
		bad += st.malformed[i];
	jw_set_int(o, "flows_active", (int64_t)st.flows_active);
	jw_set_int(o, "tcp_outbound", (int64_t)st.tcp_outbound);
	jw_set_int(o, "tcp_inbound", (int64_t)st.tcp_inbound);
	jw_set_int(o, "udp_out", (int64_t)st.udp_out);
	jw_set_int(o, "udp_in", (int64_t)st.udp_in);
	jw_set_int(o, "malformed", (int64_t)bad);
	if (!nt->dev) {
		jw_set_int(o, "sock_outbound", (int64_t)st.sock_outbound);
		jw_set_int(o, "sock_inbound", (int64_t)st.sock_inbound);
		jw_set_int(o, "sock_refused", (int64_t)st.sock_refused);
		jw_set_int(o, "sock_no_expose", (int64_t)st.sock_no_expose);
		json_object_object_add(o, "proxy", node_proxy_info_json(n));
	}
	add_dns_stats(nt, o);
	return o;
}
