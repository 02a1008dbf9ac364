/* pilotd -tun=userspace: the SOCKS5 server, the HTTP proxy, the forwards and the
 * exposed ports (daemon/proxy.c, daemon/tunbridge_sock.c), and the resolver
 * they use: a name through the registry, a Pilot address as is, a mapped IP
 * through the address map; then the registry's resolve tells whether this node
 * may reach the target at all (a private node that shares no trust or network
 * answers "forbidden"), so a client hears "not allowed" at once instead of
 * waiting for a dial that the peer drops silently. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/node.h"
#include "daemon/node_tun.h"
#include "daemon/proxy.h"
#include "daemon/registration.h"
#include "lib/jsonwire.h"
#include "lib/log.h"

typedef struct px_resolve {
	node *n;
	pilot_addr addr;
	proxy_resolved_fn done;
	void *arg;
} px_resolve;

static int reg_err(json_object *reply, int err)
{
	const char *code;

	if (err != -EREMOTEIO)
		return err ? err : -EAGAIN;
	code = reply ? jw_get_str(reply, "code") : NULL;
	if (code && !strcmp(code, "forbidden"))
		return -EACCES;
	return !code || !strcmp(code, "not_found") ? -ENOENT : -EAGAIN;
}

static void finish(px_resolve *q, int err)
{
	q->done(q->arg, err, q->addr);
	free(q);
}

static void checked(void *arg, json_object *reply, int err)
{
	finish(arg, err ? reg_err(reply, err) : 0);
}

/* May this node reach addr? Our own address always; else ask the registry. */
static void check(px_resolve *q)
{
	node *n = q->n;

	if (!q->addr.node || pilot_addr_is_broadcast(q->addr)) {
		finish(q, -ENOENT);
		return;
	}
	if (q->addr.node == n->node_id) {
		finish(q, 0);
		return;
	}
	if (!n->reg || registration_resolve(n->reg, q->addr.node, checked, q) < 0)
		finish(q, -EAGAIN);
}

static void named(void *arg, json_object *reply, int err)
{
	px_resolve *q = arg;
	int64_t id = 0;
	json_object *v;

	if (!err && json_object_object_get_ex(reply, "node_id", &v))
		id = json_object_get_int64(v);
	if (err || id <= 0 || id > UINT32_MAX) {
		finish(q, err ? reg_err(reply, err) : -ENOENT);
		return;
	}
	q->addr = pilot_addr_make(0, (uint32_t)id);
	check(q);
}

static void resolve(void *ctx, const px_target *t, proxy_resolved_fn done, void *arg)
{
	node *n = ctx;
	px_resolve *q = calloc(1, sizeof(*q));
	struct in6_addr a6;

	if (!q) {
		done(arg, -ENOMEM, pilot_addr_make(0, 0));
		return;
	}
	*q = (px_resolve){ .n = n, .done = done, .arg = arg, .addr = t->addr };
	switch (t->kind) {
	case PX_TARGET_ADDR:
		break;
	case PX_TARGET_IP4:
		if (!n->tun || tun_addrmap_lookup_ip(n->tun->map, t->ip4, &q->addr) < 0) {
			finish(q, -ENOENT);
			return;
		}
		break;
	case PX_TARGET_IP6:
		memcpy(a6.s6_addr, t->ip6, 16);
		if (tun_ula_to_addr(&a6, &q->addr) < 0) {
			finish(q, -ENOENT);
			return;
		}
		break;
	case PX_TARGET_NAME:
		if (!n->reg || registration_resolve_hostname(n->reg, t->name, named, q) < 0)
			finish(q, -EAGAIN);
		return;
	}
	check(q);
}

static tunbridge *bridge(void *ctx)
{
	node *n = ctx;

	return n->tun ? n->tun->bridge : NULL;
}

/* ---- start-up --------------------------------------------------------------------------- */

static char *next_item(char **s)
{
	char *item = *s, *comma;

	if (!item || !*item)
		return NULL;
	comma = strchr(item, ',');
	if (comma) {
		*comma = '\0';
		*s = comma + 1;
	} else {
		*s = item + strlen(item);
	}
	return item;
}

static void open_forwards(node *n)
{
	char *list, *cur, *item, *eq, err[512];

	if (!n->o.forward || !(list = strdup(n->o.forward)))
		return;
	for (cur = list; (item = next_item(&cur));) {
		if (!(eq = strchr(item, '=')))
			pilot_fatal("-forward %s: want listen=target (127.0.0.1:5432=db:5432)", item);
		*eq = '\0';
		if (proxy_listen(n->proxy, PROXY_FORWARD, item, eq + 1, err, sizeof(err)) < 0)
			pilot_fatal("-forward: %s", err);
	}
	free(list);
}

/* "80=127.0.0.1:8080" -> port and address; 0 or -EINVAL */
static int parse_expose(char *item, uint16_t *port, struct sockaddr_storage *ss, unsigned *sl)
{
	char *eq = strchr(item, '='), *end;
	px_dest d;
	long p;

	if (!eq)
		return -EINVAL;
	*eq = '\0';
	p = strtol(item, &end, 10);
	if (*end || p < 1 || p > 65535 || px_parse_authority(eq + 1, strlen(eq + 1), 0, &d) < 0)
		return -EINVAL;
	*port = (uint16_t)p;
	memset(ss, 0, sizeof(*ss));
	if (d.atyp == SOCKS5_ATYP_IPV4) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, d.ip, 4);
		s4->sin_port = htons(d.port);
		*sl = sizeof(*s4);
	} else if (d.atyp == SOCKS5_ATYP_IPV6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, d.ip, 16);
		s6->sin6_port = htons(d.port);
		*sl = sizeof(*s6);
	} else {
		return -EINVAL;
	}
	return 0;
}

static void expose_all(node *n, bool apply)
{
	char *list, *cur, *item, copy[256];
	struct sockaddr_storage ss;
	uint16_t port;
	unsigned sl;
	int r;

	if (!n->o.expose || !(list = strdup(n->o.expose)))
		return;
	for (cur = list; (item = next_item(&cur));) {
		snprintf(copy, sizeof(copy), "%s", item);
		if (parse_expose(item, &port, &ss, &sl) < 0)
			pilot_fatal("-expose %s: want port=ip:port (80=127.0.0.1:8080)", copy);
		if (apply && (r = tunbridge_expose(n->tun->bridge, port, (struct sockaddr *)&ss, sl)) < 0)
			log_warn("-expose %s: %s", copy, strerror(-r));
		else if (apply)
			log_info("expose: Pilot port %u -> %s", port, strchr(copy, '=') + 1);
	}
	free(list);
}

void node_proxy_open(node *n)
{
	proxy_config pc = {
		.loop = n->loop,
		.resolve = resolve,
		.ctx = n,
		.bridge = bridge,
		.max_pending = (unsigned)n->o.proxy_max_pending,
		.rate = (unsigned)n->o.proxy_rate,
	};
	static char user[256], pass[256];
	char err[512];
	const char *colon;

	if (!node_tun_userspace(&n->o))
		return;
	if (n->o.proxy_auth && (colon = strchr(n->o.proxy_auth, ':'))) {
		snprintf(user, sizeof(user), "%.*s", (int)(colon - n->o.proxy_auth), n->o.proxy_auth);
		snprintf(pass, sizeof(pass), "%s", colon + 1);
		pc.user = user;
		pc.pass = pass;
	}
	if (!(n->proxy = proxy_new(&pc)))
		pilot_fatal("out of memory");
	if (n->o.socks5 && proxy_listen(n->proxy, PROXY_SOCKS5, n->o.socks5, NULL, err, sizeof(err)) < 0)
		pilot_fatal("-socks5: %s", err);
	if (n->o.http_proxy &&
	    proxy_listen(n->proxy, PROXY_HTTP, n->o.http_proxy, NULL, err, sizeof(err)) < 0)
		pilot_fatal("-http-proxy: %s", err);
	open_forwards(n);
	expose_all(n, false); /* refuse a bad -expose before going on line */
}

void node_proxy_up(node *n)
{
	if (n->proxy && n->tun && n->tun->bridge)
		expose_all(n, true);
}

void node_proxy_close(node *n)
{
	proxy_close(n->proxy);
}

void node_proxy_free(node *n)
{
	proxy_free(n->proxy);
	n->proxy = NULL;
}

json_object *node_proxy_info_json(node *n)
{
	return n->proxy ? proxy_json(n->proxy) : json_object_new_object();
}
