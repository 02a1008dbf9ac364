/* One request -> one reply (services.md §2), with the ownership rules the
 * reference meant to have but disabled (its caller parser fails on the Pilot
 * address format, services.md §2.4): A and S records only for the caller's own
 * node, N records only by a member of that network, and a live name held by one
 * node cannot be taken over by another. The caller is the authenticated source
 * node of the stream (main.c), never a field of the request. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nameserver/ns.h"

typedef struct outbuf {
	char *p;
	size_t len, cap;
	bool full;
} outbuf;

static size_t put(outbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t put(outbuf *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->p, o->cap, fmt, ap);
	va_end(ap);
	o->len = n < 0 ? 0 : (size_t)n >= o->cap ? o->cap - 1 : (size_t)n;
	return o->len;
}

/* S lines, whole lines only: a list that does not fit is cut at a line. */
static void put_svc(void *arg, const ns_svc *v)
{
	outbuf *o = arg;
	char a[PILOT_ADDR_STRLEN];
	int n;

	if (o->full)
		return;
	n = snprintf(o->p + o->len, o->cap - o->len, "%sS %s %s %u", o->len ? "\n" : "", v->name,
		     pilot_addr_format(v->addr, a), v->port);
	if (n < 0 || (size_t)n >= o->cap - o->len) {
		o->p[o->len] = '\0';
		o->full = true;
		return;
	}
	o->len += (size_t)n;
}

static size_t query(ns_ctx *c, const ns_req *r, outbuf *o)
{
	char a[PILOT_ADDR_STRLEN];
	pilot_addr addr;
	uint16_t net;

	switch (r->type) {
	case NS_A:
		if (ns_store_get_a(c->st, r->name, &addr) == 0)
			return put(o, "A %s %s", r->name, pilot_addr_format(addr, a));
		/* Bootstrapping (whitepaper): a name not here is asked of the registry
		 * once; the answer is kept like a registration (TTL). */
		if (c->bootstrap && c->bootstrap(c->arg, r->name, &addr) == 0) {
			ns_store_set_a(c->st, r->name, addr, c->now_ms);
			return put(o, "A %s %s", r->name, pilot_addr_format(addr, a));
		}
		return put(o, "ERR name \"%s\" not found", r->name);
	case NS_N:
		if (ns_store_get_n(c->st, r->name, &net) == 0)
			return put(o, "N %s %u", r->name, net);
		return put(o, "ERR network \"%s\" not found", r->name);
	case NS_S:
		o->p[0] = '\0';
		if (!ns_store_each_s(c->st, r->net_id, r->port, put_svc, o))
			return put(o, "S");
		return o->len;
	}
	return put(o, "ERR internal");
}

static size_t stored(outbuf *o, int rc)
{
	if (rc == -ENOSPC)
		return put(o, "ERR nameserver full");
	if (rc < 0)
		return put(o, "ERR cannot store the record");
	return put(o, "OK");
}

static bool member(ns_ctx *c, uint16_t net, outbuf *o)
{
	int m = c->is_member ? c->is_member(c->arg, c->caller, net) : 0;

	if (m > 0)
		return true;
	put(o, m < 0 ? "ERR cannot check membership of network %u" : "ERR not a member of network %u", net);
	return false;
}

static size_t reg(ns_ctx *c, const ns_req *r, outbuf *o)
{
	pilot_addr held;

	switch (r->type) {
	case NS_A:
		if (r->addr.node != c->caller)
			return put(o, "ERR cannot register address for another node");
		if (ns_store_get_a(c->st, r->name, &held) == 0 && held.node != c->caller)
			return put(o, "ERR name \"%s\" is registered by another node", r->name);
		return stored(o, ns_store_set_a(c->st, r->name, r->addr, c->now_ms));
	case NS_N:
		if (!member(c, r->net_id, o))
			return o->len;
		return stored(o, ns_store_set_n(c->st, r->name, r->net_id, c->now_ms));
	case NS_S:
		if (r->addr.node != c->caller)
			return put(o, "ERR cannot register service for another node");
		return stored(o, ns_store_add_s(c->st, r->name, r->addr, r->net_id, r->port, c->now_ms));
	}
	return put(o, "ERR internal");
}

static size_t unreg(ns_ctx *c, const ns_req *r, outbuf *o)
{
	pilot_addr held;
	uint16_t net;

	switch (r->type) {
	case NS_A:
		if (ns_store_get_a(c->st, r->name, &held) < 0)
			return put(o, "ERR name \"%s\" not found", r->name);
		if (held.node != c->caller)
			return put(o, "ERR cannot unregister a name of another node");
		ns_store_del_a(c->st, r->name, c->caller);
		return put(o, "OK");
	case NS_N:
		if (ns_store_get_n(c->st, r->name, &net) < 0)
			return put(o, "ERR network \"%s\" not found", r->name);
		if (!member(c, net, o))
			return o->len;
		ns_store_del_n(c->st, r->name);
		return put(o, "OK");
	case NS_S:
		ns_store_del_s(c->st, r->net_id, r->port, c->caller);
		return put(o, "OK");
	}
	return put(o, "ERR internal");
}

size_t ns_handle(ns_ctx *c, const char *req, size_t len, char *out, size_t outlen)
{
	outbuf o = { .p = out, .cap = outlen };
	char err[160];
	ns_req r;

	if (ns_parse(req, len, &r, err, sizeof(err)) < 0)
		return put(&o, "ERR %s", err);
	if (r.op == NS_QUERY)
		return query(c, &r, &o);
	if (!c->caller)
		return put(&o, "ERR unknown caller: registrations need an authenticated Pilot source");
	return r.op == NS_REGISTER ? reg(c, &r, &o) : unreg(c, &r, &o);
}
