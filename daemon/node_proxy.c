/* pilotd -tun=userspace: the SOCKS5 server, the HTTP proxy, the forwards and the
 * exposed ports (daemon/proxy.c, daemon/tunbridge_sock.c), and the resolver
 * they use: a name through the registry, a Pilot address as is, a mapped IP
 * through the address map; then the registry's resolve tells whether this node
 * may reach the target at all (a private node that shares no trust or network
 * answers "forbidden"), so a client hears "not allowed" at once instead of
 * waiting for a dial that the peer drops silently.
 *
 * Both answers are cached for NP_TTL_MS when positive (a name's node, "may
 * reach node N"), in small fixed tables (the oldest entry makes room), so a
 * client opening many connections to one name costs the registry two
 * requests, not two per connection (one of them signed). Refusals and unknown
 * names are not cached: a trust just made or a name just registered works at
 * once. An entry is dropped when trust with its node changes either way
 * (node_proxy_forget, from the trust events) and when a dial to its node
 * fails. */
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
#include "lib/fileutil.h"
#include "lib/jsonwire.h"
#include "lib/log.h"

#define NP_MAX     64
#define NP_TTL_MS  10000
#define NP_NAMES   128
#define NP_ALLOWED 256

typedef struct np_entry {
	bool used, flag;
	bool expose;
	uint16_t port;    /* expose: the Pilot port */
	char listen[128]; /* forward: the local listener */
	char target[300];
} np_entry;

typedef struct np_name {
	char name[PX_HOST_MAX + 1];
	uint32_t node; /* 0 = free */
	uint64_t until_ms;
} np_name;

typedef struct np_allowed {
	uint32_t node; /* 0 = free */
	uint64_t until_ms;
} np_allowed;

/* Forwards and exposed ports (below), and the resolver's cache. */
struct node_px {
	np_entry e[NP_MAX];
	char path[4096]; /* "" = nothing persisted (no -identity) */
	np_name names[NP_NAMES];
	np_allowed allowed[NP_ALLOWED];
	uint64_t hits, misses; /* registry requests saved / made by the resolver */
};

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

/* ---- the positive cache (see the top) ---- */
static np_allowed *allowed_find(struct node_px *px, uint32_t id, uint64_t now)
{
	for (size_t i = 0; i < NP_ALLOWED; i++)
		if (px->allowed[i].node == id && px->allowed[i].until_ms > now)
			return &px->allowed[i];
	return NULL;
}

static void allowed_put(struct node_px *px, uint32_t id)
{
	uint64_t now = pilot_now_ms();
	np_allowed *a = allowed_find(px, id, now), *old = &px->allowed[0];

	for (size_t i = 0; !a && i < NP_ALLOWED; i++) /* free or expired first, else the oldest */
		if (px->allowed[i].until_ms < old->until_ms)
			old = &px->allowed[i];
	if (!a)
		a = old;
	a->node = id;
	a->until_ms = now + NP_TTL_MS;
}

static np_name *name_find(struct node_px *px, const char *name, uint64_t now)
{
	for (size_t i = 0; i < NP_NAMES; i++)
		if (px->names[i].node && px->names[i].until_ms > now && !strcmp(px->names[i].name, name))
			return &px->names[i];
	return NULL;
}

static void name_put(struct node_px *px, const char *name, uint32_t id)
{
	uint64_t now = pilot_now_ms();
	np_name *e = name_find(px, name, now), *old = &px->names[0];

	for (size_t i = 0; !e && i < NP_NAMES; i++)
		if (px->names[i].until_ms < old->until_ms)
			old = &px->names[i];
	if (!e)
		e = old;
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->node = id;
	e->until_ms = now + NP_TTL_MS;
}

void node_proxy_forget(node *n, uint32_t id)
{
	struct node_px *px = n->px;

	if (!px || !id)
		return;
	for (size_t i = 0; i < NP_ALLOWED; i++)
		if (px->allowed[i].node == id)
			px->allowed[i] = (np_allowed){ 0 };
	for (size_t i = 0; i < NP_NAMES; i++)
		if (px->names[i].node == id)
			px->names[i] = (np_name){ 0 };
}

/* proxy.c: a dial to a resolved target failed; ask the registry next time. */
static void dial_failed(void *ctx, pilot_addr a, int err)
{
	(void)err;
	node_proxy_forget(ctx, a.node);
}

static void checked(void *arg, json_object *reply, int err)
{
	px_resolve *q = arg;

	if (!err && q->n->px)
		allowed_put(q->n->px, q->addr.node);
	finish(q, err ? reg_err(reply, err) : 0);
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
	if (n->px && allowed_find(n->px, q->addr.node, pilot_now_ms())) {
		n->px->hits++;
		finish(q, 0);
		return;
	}
	if (n->px)
		n->px->misses++;
	if (!n->reg || registration_resolve(n->reg, q->addr.node, checked, q) < 0)
		finish(q, -EAGAIN);
}

typedef struct px_named {
	px_resolve *q;
	char name[PX_HOST_MAX + 1];
} px_named;

static void named(void *arg, json_object *reply, int err)
{
	px_named *m = arg;
	px_resolve *q = m->q;
	int64_t id = 0;
	json_object *v;

	if (!err && json_object_object_get_ex(reply, "node_id", &v))
		id = json_object_get_int64(v);
	if (err || id <= 0 || id >= PILOT_NODE_BROADCAST) {
		free(m);
		finish(q, err ? reg_err(reply, err) : -ENOENT);
		return;
	}
	if (q->n->px)
		name_put(q->n->px, m->name, (uint32_t)id);
	free(m);
	q->addr = pilot_addr_make(0, (uint32_t)id);
	check(q);
}

static void by_name(px_resolve *q, const char *name)
{
	node *n = q->n;
	np_name *e = n->px ? name_find(n->px, name, pilot_now_ms()) : NULL;
	px_named *m;

	if (e) {
		n->px->hits++;
		q->addr = pilot_addr_make(0, e->node);
		check(q);
		return;
	}
	if (n->px)
		n->px->misses++;
	if (!(m = malloc(sizeof(*m)))) {
		finish(q, -ENOMEM);
		return;
	}
	m->q = q;
	snprintf(m->name, sizeof(m->name), "%s", name);
	if (!n->reg || registration_resolve_hostname(n->reg, name, named, m) < 0) {
		free(m);
		finish(q, -EAGAIN);
	}
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
		by_name(q, t->name);
		return;
	}
	check(q);
}

static tunbridge *bridge(void *ctx)
{
	node *n = ctx;

	return n->tun ? n->tun->bridge : NULL;
}

/* ---- forwards and exposed ports: flags + pilotctl, persisted ------------------------------
 * -forward / -expose come from the configuration and are not written anywhere;
 * what pilotctl adds is saved to forwards.json beside the identity (mode 0600,
 * written atomically after every change) and comes back on the next start. */
static np_entry *find_entry(node *n, bool expose, const char *listen, uint16_t port)
{
	for (size_t i = 0; i < NP_MAX; i++) {
		np_entry *e = &n->px->e[i];
		if (e->used && e->expose == expose && (expose ? e->port == port : !strcmp(e->listen, listen)))
			return e;
	}
	return NULL;
}

static np_entry *free_entry(node *n)
{
	for (size_t i = 0; i < NP_MAX; i++)
		if (!n->px->e[i].used)
			return &n->px->e[i];
	return NULL;
}

static int save(node *n) /* 0 or -errno (logged) */
{
	json_object *o = json_object_new_object(), *fw = json_object_new_array(),
		    *ex = json_object_new_array();
	const char *txt;
	int r;

	for (size_t i = 0; i < NP_MAX; i++) {
		const np_entry *e = &n->px->e[i];
		json_object *j;
		if (!e->used || e->flag)
			continue;
		j = json_object_new_object();
		if (e->expose)
			jw_set_int(j, "port", e->port);
		else
			jw_set_str(j, "listen", e->listen);
		jw_set_str(j, "target", e->target);
		json_object_array_add(e->expose ? ex : fw, j);
	}
	json_object_object_add(o, "forwards", fw);
	json_object_object_add(o, "expose", ex);
	txt = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	r = n->px->path[0] ? pilot_write_atomic(n->px->path, txt, strlen(txt), 0600) : 0;
	json_object_put(o);
	if (r < 0)
		log_warn("forwards: cannot write %s: %s", n->px->path, strerror(-r));
	return r;
}

/* "80=..." style for -expose; port and ip:port for pilotctl */
static int expose_addr(const char *target, struct sockaddr_storage *ss, unsigned *sl)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	px_dest d;

	if (px_parse_authority(target, strlen(target), 0, &d) < 0)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	if (d.atyp == SOCKS5_ATYP_IPV4) {
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, d.ip, 4);
		s4->sin_port = htons(d.port);
		*sl = sizeof(*s4);
	} else if (d.atyp == SOCKS5_ATYP_IPV6) {
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, d.ip, 16);
		s6->sin6_port = htons(d.port);
		*sl = sizeof(*s6);
	} else {
		return -EINVAL;
	}
	return 0;
}

static int apply_expose(node *n, const np_entry *e)
{
	struct sockaddr_storage ss;
	unsigned sl;
	int r;

	if (!n->tun || !n->tun->bridge)
		return 0; /* node_proxy_up applies it */
	if ((r = expose_addr(e->target, &ss, &sl)) < 0)
		return r;
	if ((r = tunbridge_expose(n->tun->bridge, e->port, (struct sockaddr *)&ss, sl)) == 0)
		log_info("expose: Pilot port %u -> %s", e->port, e->target);
	return r;
}

int node_proxy_forward_add(node *n, const char *listen, const char *target, bool flag, char *err,
			   size_t errlen)
{
	np_entry *e;
	int r;

	if (!n->proxy)
		return -ENOTSUP;
	if (find_entry(n, false, listen, 0)) {
		snprintf(err, errlen, "%s: a forward listens there already", listen);
		return -EEXIST;
	}
	if (!(e = free_entry(n))) {
		snprintf(err, errlen, "at most %d forwards and exposed ports", NP_MAX);
		return -ENOSPC;
	}
	if ((r = proxy_listen(n->proxy, PROXY_FORWARD, listen, target, err, errlen)) < 0)
		return r;
	*e = (np_entry){ .used = true, .flag = flag };
	snprintf(e->listen, sizeof(e->listen), "%s", listen);
	snprintf(e->target, sizeof(e->target), "%s", target);
	if (!flag)
		(void)save(n); /* a failed write is logged; the next change retries */
	return 0;
}

int node_proxy_forward_remove(node *n, const char *listen)
{
	np_entry *e = n->proxy ? find_entry(n, false, listen, 0) : NULL;

	if (!e)
		return -ENOENT;
	(void)proxy_unlisten(n->proxy, PROXY_FORWARD, listen);
	e->used = false;
	if (!e->flag)
		(void)save(n);
	return 0;
}

int node_proxy_expose_add(node *n, long port, const char *target, bool flag, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	np_entry *e;
	unsigned sl;
	int r;

	if (!n->proxy)
		return -ENOTSUP;
	if (port < 1 || port > 65535 || expose_addr(target, &ss, &sl) < 0) {
		snprintf(err, errlen, "want a Pilot port 1-65535 and a local ip:port (80 127.0.0.1:8080)");
		return -EINVAL;
	}
	if (find_entry(n, true, NULL, (uint16_t)port)) {
		snprintf(err, errlen, "Pilot port %ld is exposed already", port);
		return -EEXIST;
	}
	if (!(e = free_entry(n))) {
		snprintf(err, errlen, "at most %d forwards and exposed ports", NP_MAX);
		return -ENOSPC;
	}
	*e = (np_entry){ .used = true, .flag = flag, .expose = true, .port = (uint16_t)port };
	snprintf(e->target, sizeof(e->target), "%s", target);
	if ((r = apply_expose(n, e)) < 0) {
		snprintf(err, errlen, "Pilot port %ld: %s", port, strerror(-r));
		e->used = false;
		return r;
	}
	if (!flag)
		(void)save(n); /* a failed write is logged; the next change retries */
	return 0;
}

int node_proxy_expose_remove(node *n, long port)
{
	np_entry *e = n->proxy && port > 0 && port <= 65535 ? find_entry(n, true, NULL, (uint16_t)port)
							    : NULL;

	if (!e)
		return -ENOENT;
	if (n->tun && n->tun->bridge)
		(void)tunbridge_unexpose(n->tun->bridge, e->port);
	e->used = false;
	if (!e->flag)
		(void)save(n);
	return 0;
}

json_object *node_proxy_list_json(node *n, bool expose)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();

	for (size_t i = 0; n->px && i < NP_MAX; i++) {
		const np_entry *e = &n->px->e[i];
		json_object *j;
		if (!e->used || e->expose != expose)
			continue;
		j = json_object_new_object();
		if (expose)
			jw_set_int(j, "port", e->port);
		else
			jw_set_str(j, "listen", e->listen);
		jw_set_str(j, "target", e->target);
		jw_set_str(j, "source", e->flag ? "flag" : "pilotctl");
		json_object_array_add(a, j);
	}
	json_object_object_add(o, expose ? "expose" : "forwards", a);
	jw_set_str(o, "file", n->px ? n->px->path : "");
	return o;
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

/* -forward listen=target,... and -expose port=ip:port,...: a bad one is fatal */
static void flag_entries(node *n, const char *list_s, bool expose)
{
	char *list, *cur, *item, *eq, err[512];

	if (!list_s || !(list = strdup(list_s)))
		return;
	for (cur = list; (item = next_item(&cur));) {
		if (!(eq = strchr(item, '=')))
			pilot_fatal("-%s %s: want %s", expose ? "expose" : "forward", item,
				    expose ? "port=ip:port (80=127.0.0.1:8080)"
					   : "listen=target (127.0.0.1:5432=db:5432)");
		*eq = '\0';
		if (expose ? node_proxy_expose_add(n, strtol(item, NULL, 10), eq + 1, true, err,
						   sizeof(err)) < 0
			   : node_proxy_forward_add(n, item, eq + 1, true, err, sizeof(err)) < 0)
			pilot_fatal("-%s: %s", expose ? "expose" : "forward", err);
	}
	free(list);
}

static void state_path(node *n)
{
	const char *id = n->o.identity, *slash;

	if (!id || !*id)
		return;
	slash = strrchr(id, '/');
	if (!slash)
		snprintf(n->px->path, sizeof(n->px->path), "forwards.json");
	else
		snprintf(n->px->path, sizeof(n->px->path), "%.*s/forwards.json",
			 slash == id ? 1 : (int)(slash - id), id);
}

/* pilotctl's entries from the last run; one that no longer works is logged and dropped */
static void load_state(node *n)
{
	char *txt = NULL, err[512];
	size_t len = 0;
	json_object *o, *a;
	int r = n->px->path[0] ? pilot_read_file(n->px->path, 1 << 20, &txt, &len) : -ENOENT;

	if (r < 0) {
		if (r != -ENOENT)
			log_warn("forwards: cannot read %s: %s", n->px->path, strerror(-r));
		return;
	}
	if (!(o = json_tokener_parse(txt))) {
		log_warn("forwards: %s is not JSON: ignored", n->px->path);
		free(txt);
		return;
	}
	if (json_object_object_get_ex(o, "forwards", &a) && json_object_is_type(a, json_type_array))
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *e = json_object_array_get_idx(a, i);
			const char *l = jw_get_str(e, "listen"), *t = jw_get_str(e, "target");
			if (!l || !t || node_proxy_forward_add(n, l, t, false, err, sizeof(err)) < 0)
				log_warn("forwards: %s: entry %zu dropped: %s", n->px->path, i,
					 l && t ? err : "incomplete");
		}
	if (json_object_object_get_ex(o, "expose", &a) && json_object_is_type(a, json_type_array))
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *e = json_object_array_get_idx(a, i), *p = NULL;
			const char *t = jw_get_str(e, "target");
			long port = json_object_object_get_ex(e, "port", &p) ? (long)json_object_get_int64(p)
									     : 0;
			if (!t || node_proxy_expose_add(n, port, t, false, err, sizeof(err)) < 0)
				log_warn("forwards: %s: exposed entry %zu dropped: %s", n->px->path, i,
					 t ? err : "incomplete");
		}
	json_object_put(o);
	free(txt);
}

void node_proxy_open(node *n)
{
	proxy_config pc = {
		.loop = n->loop,
		.resolve = resolve,
		.dial_failed = dial_failed,
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
	if (n->o.proxy_auth && *n->o.proxy_auth && (colon = strchr(n->o.proxy_auth, ':'))) {
		snprintf(user, sizeof(user), "%.*s", (int)(colon - n->o.proxy_auth), n->o.proxy_auth);
		snprintf(pass, sizeof(pass), "%s", colon + 1);
		pc.user = user;
		pc.pass = pass;
	}
	if (!(n->proxy = proxy_new(&pc)) || !(n->px = calloc(1, sizeof(*n->px))))
		pilot_fatal("out of memory");
	state_path(n);
	if (n->o.socks5 && *n->o.socks5 &&
	    proxy_listen(n->proxy, PROXY_SOCKS5, n->o.socks5, NULL, err, sizeof(err)) < 0)
		pilot_fatal("-socks5: %s", err);
	if (n->o.http_proxy && *n->o.http_proxy &&
	    proxy_listen(n->proxy, PROXY_HTTP, n->o.http_proxy, NULL, err, sizeof(err)) < 0)
		pilot_fatal("-http-proxy: %s", err);
	flag_entries(n, n->o.forward, false);
	flag_entries(n, n->o.expose, true);
	load_state(n);
}

void node_proxy_up(node *n)
{
	char err[128];

	for (size_t i = 0; n->px && i < NP_MAX; i++) {
		np_entry *e = &n->px->e[i];
		int r;
		if (e->used && e->expose && (r = apply_expose(n, e)) < 0) {
			snprintf(err, sizeof(err), "%s", strerror(-r));
			log_warn("expose: Pilot port %u -> %s: %s", e->port, e->target, err);
		}
	}
}

void node_proxy_close(node *n)
{
	proxy_close(n->proxy);
}

void node_proxy_free(node *n)
{
	proxy_free(n->proxy);
	n->proxy = NULL;
	free(n->px);
	n->px = NULL;
}

json_object *node_proxy_info_json(node *n)
{
	json_object *o = n->proxy ? proxy_json(n->proxy) : json_object_new_object();

	if (n->px) {
		json_object_object_add(o, "resolve_cached", json_object_new_int64((int64_t)n->px->hits));
		json_object_object_add(o, "resolve_asked", json_object_new_int64((int64_t)n->px->misses));
	}
	return o;
}
