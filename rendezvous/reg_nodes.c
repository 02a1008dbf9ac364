/* Node records and the node handlers: register, heartbeat, lookup, resolve,
 * resolve_hostname, deregister, the attribute setters, rotate_key, polo score,
 * punch, beacon_register/beacon_list, and reaping (registry.md §5, §6). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/crypto.h"
#include "lib/jsonwire.h"
#include "lib/log.h"
#include "rendezvous/reg_internal.h"

/* ---- validation ---- */
/* ^[a-z0-9]([a-z0-9-]{0,maxlen-2}[a-z0-9])?$ ; NULL when valid */
const char *reg_validate_label(const char *s, size_t maxlen)
{
	size_t n = strlen(s);

	if (n == 0 || n > maxlen)
		return "must be 1-63 lowercase letters, digits or hyphens";
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return "may contain only lowercase letters, digits and hyphens";
	}
	if (s[0] == '-' || s[n - 1] == '-')
		return "must not start or end with a hyphen";
	return NULL;
}

const char *reg_validate_hostname(const char *h)
{
	static const char *reserved[] = { "localhost", "backbone", "broadcast" };
	const char *why = reg_validate_label(h, 63);

	if (why)
		return strlen(h) > 63 ? "hostname too long (max 63 characters)" : why;
	for (size_t i = 0; i < 3; i++)
		if (strcmp(h, reserved[i]) == 0)
			return "hostname is reserved";
	return NULL;
}

/* ---- node record lifecycle ---- */
reg_node *reg_node_new(registry *r, uint32_t id)
{
	reg_node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->id = id;
	if (rmap_put(&r->nodes, id, (uintptr_t)n) < 0) {
		free(n);
		return NULL;
	}
	return n;
}

static void free_tags(reg_node *n)
{
	for (size_t i = 0; i < n->ntags; i++)
		free(n->tags[i]);
	free(n->tags);
	n->tags = NULL;
	n->ntags = 0;
}

void reg_node_free(reg_node *n)
{
	if (!n)
		return;
	free(n->owner);
	free(n->hostname);
	free_tags(n);
	free(n->nets);
	for (size_t i = 0; i < n->ninbox; i++)
		free(n->inbox[i].justification);
	free(n->inbox);
	free(n->resp);
	free(n->inv);
	free(n);
}

int reg_tags_set(reg_node *n, char **tags, size_t ntags)
{
	free_tags(n);
	n->tags = tags;
	n->ntags = ntags;
	return 0;
}

int reg_node_set_hostname(registry *r, reg_node *n, const char *h)
{
	char *dup = NULL;

	if (h && *h && !(dup = strdup(h)))
		return -ENOMEM;
	if (dup && rmap_put(&r->hostidx, reg_hash_str(r, dup), n->id) < 0) {
		free(dup);
		return -ENOMEM;
	}
	if (n->hostname) {
		if (reg_node_by_hostname(r, n->hostname) == n && !(dup && strcmp(dup, n->hostname) == 0))
			rmap_del(&r->hostidx, reg_hash_str(r, n->hostname));
		free(n->hostname);
	}
	n->hostname = dup;
	return 0;
}

int reg_node_set_key(registry *r, reg_node *n, const uint8_t pk[32])
{
	if (reg_node_by_key(r, n->pk) == n)
		rmap_del(&r->keyidx, reg_hash(r, n->pk, 32));
	memcpy(n->pk, pk, 32);
	pilot_b64_encode(pk, 32, n->pk_b64, sizeof(n->pk_b64));
	return rmap_put(&r->keyidx, reg_hash(r, pk, 32), n->id);
}

int reg_node_set_owner(registry *r, reg_node *n, const char *owner)
{
	char *dup = NULL;

	if (owner && *owner) {
		dup = strdup(owner);
		if (!dup || rmap_put(&r->owneridx, reg_hash_str(r, owner), n->id) < 0) {
			free(dup);
			return -ENOMEM;
		}
	}
	free(n->owner);
	n->owner = dup;
	return 0;
}

void reg_node_clear_attrs(registry *r, reg_node *n)
{
	reg_node_set_hostname(r, n, NULL);
	free_tags(n);
	n->pub = false;
	n->task_exec = false;
	n->relay_only = false;
	n->polo = 0;
}

void reg_node_kill(registry *r, reg_node *n)
{
	if (!n->live)
		return;
	reg_node_clear_attrs(r, n);
	n->live = false;
	n->real_addr[0] = 0;
	r->live_count--;
}

static void revive(registry *r, reg_node *n)
{
	if (n->live)
		return;
	n->live = true;
	r->live_count++;
}

void reg_reap(registry *r, uint64_t now_ms)
{
	size_t reaped = 0;

	st_begin(r);
	for (size_t i = 0; i < r->nodes.cap; i++) {
		reg_node *n;

		if (!r->nodes.e[i].used)
			continue;
		n = (reg_node *)(uintptr_t)r->nodes.e[i].val;
		if (!n->live || n->last_seen_ms + (uint64_t)r->cfg.stale_ms >= now_ms)
			continue;
		reg_node_kill(r, n);
		st_node(r, n);
		reaped++;
	}
	if (!reaped) {
		st_rollback(r);
		return;
	}
	if (st_commit(r) < 0)
		log_warn("registry: saving reaped nodes failed count=%zu", reaped);
	if (reaped)
		log_info("registry: reaped stale nodes count=%zu", reaped);
}

/* ---- shared handler pieces ---- */
static uint32_t u32(json_object *req, const char *k)
{
	return jw_get_u32(req, k);
}

/* The node must be live; else a not_found error in *err. */
static reg_node *need_live(registry *r, uint32_t id, const char *what, json_object **err)
{
	reg_node *n = reg_live_node(r, id);

	if (!n)
		*err = reg_err(r, E_NOT_FOUND, "%s %u is not registered", what, id);
	return n;
}

/* A lookup that found nothing costs a token of the miss class too. */
static json_object *miss(registry *r, const reg_ctx *ctx, const char *fmt, uint32_t id, const char *s)
{
	if (!reg_rl_take(r, RL_MISS, ctx))
		return reg_err(r, E_RATE, "too many lookups of unknown names from %s; slow down", ctx->src_ip);
	if (s)
		return reg_err(r, E_NOT_FOUND, fmt, s);
	return reg_err(r, E_NOT_FOUND, fmt, id);
}

static json_object *commit_or_fail(registry *r, json_object *resp)
{
	if (st_commit(r) == 0)
		return resp;
	json_object_put(resp);
	return reg_store_fail(r);
}

static void add_addr(json_object *o, uint32_t id)
{
	char a[32];

	reg_fmt_addr(a, 0, id);
	jadd_str(o, "address", a);
}

static bool valid_port(const char *p)
{
	size_t n = strlen(p);
	unsigned long v;

	if (n == 0 || n > 5 || strspn(p, "0123456789") != n)
		return false;
	v = strtoul(p, NULL, 10);
	return v <= 65535;
}

/* Port from listen_addr as Go's net.SplitHostPort would split it, or NULL. */
static const char *listen_port(const char *la)
{
	const char *colon;

	if (!la || !*la)
		return NULL;
	if (la[0] == '[') {
		const char *end = strchr(la, ']');

		if (!end || end[1] != ':')
			return NULL;
		colon = end + 1;
	} else {
		colon = strrchr(la, ':');
		if (!colon || memchr(la, ':', (size_t)(colon - la)))
			return NULL;
	}
	return valid_port(colon + 1) ? colon + 1 : NULL;
}

static void sanitize_addr(char out[80], const char *la, const reg_ctx *ctx)
{
	const char *port = listen_port(la);
	bool v6 = strchr(ctx->src_ip, ':') != NULL;
	char pbuf[8];

	if (!port) {
		snprintf(pbuf, sizeof(pbuf), "%u", ctx->src_port);
		port = pbuf;
	}
	snprintf(out, 80, v6 ? "[%.60s]:%s" : "%.60s:%s", ctx->src_ip, port);
}

static json_object *get_key(registry *r, json_object *req, const char *field, uint8_t pk[32])
{
	const char *s = jw_get_str(req, field);

	if (!s || !*s)
		return reg_err(r, E_INVALID, "%s is required", field);
	if (pilot_b64_decode(s, strlen(s), pk, 32) != 32)
		return reg_err(r, E_INVALID, "%s must be base64 of a 32-byte Ed25519 key", field);
	return NULL;
}

/* ---- register ---- */
/* Proof of possession (SIGNATURES.md): a register changes what the network acts
 * on (real_addr, src_ip, relay_only, liveness, owner, hostname) only when the
 * key it names has signed — the register itself (v2) or, for an unsigned one,
 * a later request on the same connection (the reference's signed heartbeat).
 * Until then its values wait in a reg_pending keyed by the connection. */

/* true: the register carries a valid v2 signature by the key it names. */
static json_object *register_sig(registry *r, json_object *req, const uint8_t pk[32],
				 const reg_ctx *ctx, bool *is_signed)
{
	reg_node tmp;
	char *fields;
	json_object *e;
	const char *la = jw_get_str(req, "listen_addr");

	*is_signed = false;
	if (!jw_has(req, "sig_ts") && !r->cfg.strict_signatures)
		return NULL; /* reference daemons never sign register */
	memset(&tmp, 0, sizeof(tmp));
	memcpy(tmp.pk, pk, 32);
	if (asprintf(&fields, "%s:%s", jw_get_str(req, "public_key"), la ? la : "") < 0)
		return reg_err(r, E_INTERNAL, "out of memory");
	e = reg_check_sig(r, &tmp, req, NULL, fields, ctx);
	free(fields);
	r->sig_node = 0; /* tmp is no node: h_register applies this one itself */
	*is_signed = !e;
	return e;
}

static void pending_free(reg_pending *p)
{
	if (!p)
		return;
	free(p->owner);
	free(p->hostname);
	free(p);
}

static reg_pending *pending_head(registry *r, uint64_t conn)
{
	uint64_t v;

	return rmap_get(&r->pending, conn, &v) ? (reg_pending *)(uintptr_t)v : NULL;
}

static reg_pending *pending_get(registry *r, uint64_t conn, uint32_t node)
{
	reg_pending *p = pending_head(r, conn);

	while (p && p->node != node)
		p = p->next;
	return p;
}

static void pending_drop(registry *r, uint64_t conn, uint32_t node)
{
	reg_pending *head = pending_head(r, conn), **pp = &head, *p;

	while (*pp && (*pp)->node != node)
		pp = &(*pp)->next;
	if (!(p = *pp))
		return;
	*pp = p->next;
	pending_free(p);
	r->npending--;
	if (head)
		rmap_put(&r->pending, conn, (uintptr_t)head); /* replaces: cannot fail */
	else
		rmap_del(&r->pending, conn);
}

void reg_conn_closed(registry *r, uint64_t conn)
{
	reg_pending *p;

	if (!r || !(p = pending_head(r, conn)))
		return;
	rmap_del(&r->pending, conn);
	while (p) {
		reg_pending *next = p->next;

		pending_free(p);
		r->npending--;
		p = next;
	}
}

void reg_pending_free_all(registry *r)
{
	size_t n;
	uint64_t *k = rmap_keys(&r->pending, &n);

	for (size_t i = 0; i < n; i++)
		reg_conn_closed(r, k[i]);
	free(k);
	rmap_free(&r->pending);
}

static char *dup_opt(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

/* The values a register states. */
static reg_pending *regvals(json_object *req, const uint8_t pk[32], const char *owner,
			    const reg_ctx *ctx)
{
	reg_pending *p = calloc(1, sizeof(*p));
	const char *h = jw_get_str(req, "hostname");

	if (!p)
		return NULL;
	memcpy(p->pk, pk, 32);
	sanitize_addr(p->real_addr, jw_get_str(req, "listen_addr"), ctx);
	snprintf(p->src_ip, sizeof(p->src_ip), "%s", ctx->src_ip);
	p->relay_only = jw_get_bool(req, "relay_only");
	if ((owner && !(p->owner = strdup(owner))) || (h && *h && !(p->hostname = dup_opt(h)))) {
		pending_free(p);
		return NULL;
	}
	return p;
}

/* Keep p (p->node set) for conn, replacing what waited there for that node. */
static json_object *pending_put(registry *r, uint64_t conn, reg_pending *p)
{
	reg_pending *head;
	size_t n = 0;

	pending_drop(r, conn, p->node);
	head = pending_head(r, conn);
	for (reg_pending *q = head; q; q = q->next)
		n++;
	if (n >= REG_PENDING_PER_CONN || r->npending >= REG_PENDING_CAP) {
		pending_free(p);
		return reg_err(r, E_RATE, "too many registrations waiting for a signed request; retry shortly");
	}
	p->next = head;
	if (rmap_put(&r->pending, conn, (uintptr_t)p) < 0) {
		pending_free(p);
		return reg_err(r, E_INTERNAL, "out of memory");
	}
	r->npending++;
	return NULL;
}

static bool reclaim_too_soon(registry *r, const reg_node *n, const reg_ctx *ctx)
{
	uint64_t last;

	return rmap_get(&r->reclaims, reg_hash_str(r, n->owner), &last) &&
	       ctx->now_ms < last + REG_RECLAIM_GAP_MS;
}

/* Owner recovery of a dead node by a new key. The caller has checked that the
 * new key signed and that the owner was proven by the old key. */
static json_object *owner_reclaim(registry *r, reg_node *n, const uint8_t pk[32], const reg_ctx *ctx)
{
	uint64_t h = reg_hash_str(r, n->owner);

	if (n->live)
		return reg_err(r, E_CONFLICT, "owner's node %u is online; use rotate_key, or retry after it expires", n->id);
	if (reclaim_too_soon(r, n, ctx))
		return reg_err(r, E_RATE, "owner recovery is limited to once per 10 minutes");
	if (reg_node_by_key(r, pk))
		return reg_err(r, E_CONFLICT, "the new key is already bound to a node");
	if (rmap_put(&r->reclaims, h, ctx->now_ms) < 0 || reg_node_set_key(r, n, pk) < 0)
		return reg_err(r, E_INTERNAL, "out of memory");
	/* No proof of the old key: the new key does not inherit trust or memberships. */
	reg_trust_forget(r, n->id);
	while (n->nnets) {
		uint16_t net = n->nets[0];

		reg_net_del_member(reg_net_get(r, net), n->id);
		reg_node_del_net(n, net);
		st_member(r, net, n->id, false);
	}
	reg_node_clear_attrs(r, n);
	log_info("registry: owner recovery node=%u", n->id);
	return NULL;
}

static json_object *new_node(registry *r, const uint8_t pk[32], reg_node **out)
{
	reg_node *n;
	uint32_t id = r->next_node;
	int rc = st_alloc_node_id(r, &id);

	if (rc == -EAGAIN) {
		/* Several instances: this one's block of IDs is used up and the next
		 * is on its way from the database. Nothing changed yet. */
		json_object *e = reg_err(r, E_BUSY, "the registry is reserving node IDs; retry in 50 ms");

		jadd_int(e, "retry_after_ms", 50);
		return e;
	}
	if (id == 0 || id >= 0xFFFFFFFFu)
		return reg_err(r, E_LIMIT, "node ID space exhausted");
	n = reg_node_new(r, id);
	if (!n || reg_node_set_key(r, n, pk) < 0)
		return reg_err(r, E_INTERNAL, "out of memory");
	if (id >= r->next_node)
		r->next_node = id + 1;
	st_node_created(r, n->id);
	st_counters(r);
	*out = n;
	return NULL;
}

/* "" when set; else why not (hostname_error), or NULL when silently ignored. */
static const char *apply_hostname(registry *r, reg_node *n, const char *h)
{
	const char *why;
	reg_node *holder;

	if (!h || !*h)
		return NULL;
	if ((why = reg_validate_hostname(h)))
		return why;
	holder = reg_node_by_hostname(r, h);
	if (holder && holder != n)
		return NULL; /* taken: silently ignored, like the reference */
	return reg_node_set_hostname(r, n, h) == 0 ? "" : NULL;
}

/* Apply register values to n, whose key has signed (the caller's transaction).
 * Returns the hostname outcome as apply_hostname. */
static const char *apply_register(registry *r, reg_node *n, const reg_pending *p, const reg_ctx *ctx)
{
	if (!n->live) {
		/* a returning node states everything afresh, owner included */
		reg_node_clear_attrs(r, n);
		if (reg_node_set_owner(r, n, p->owner) == 0)
			n->owner_proven = p->owner != NULL;
		revive(r, n);
	} else if (p->owner && !n->owner) {
		if (reg_node_set_owner(r, n, p->owner) == 0)
			n->owner_proven = true;
	} else if (p->owner && n->owner && strcmp(p->owner, n->owner) == 0) {
		n->owner_proven = true; /* a legacy owner confirmed by the key */
	}
	memcpy(n->real_addr, p->real_addr, sizeof(n->real_addr));
	memcpy(n->src_ip, p->src_ip, sizeof(n->src_ip));
	/* Each register states it afresh: a node that left compat mode is direct again. */
	n->relay_only = p->relay_only;
	n->last_seen_ms = ctx->now_ms;
	return apply_hostname(r, n, p->hostname);
}

/* The dead node an owner may recover with a new key, or NULL. Only an owner
 * that the old key proved counts (SIGNATURES.md "Owner recovery"). */
static reg_node *recoverable(registry *r, const char *owner)
{
	reg_node *on = owner ? reg_node_by_owner(r, owner) : NULL;

	return on && on->owner && on->owner_proven ? on : NULL;
}

static json_object *register_resp(registry *r, const reg_node *n, const char *pk_b64,
				  const char *host, const char *hostname, bool pending,
				  const reg_ctx *ctx)
{
	json_object *resp = reg_ok("register");

	jadd_int(resp, "node_id", n->id);
	jadd_int(resp, "network_id", 0);
	add_addr(resp, n->id);
	jadd_str(resp, "public_key", pk_b64);
	if (host && *host)
		jadd_str(resp, "hostname_error", host);
	else if (host)
		jadd_str(resp, "hostname", hostname);
	jadd_bool(resp, "sig_v2", true);
	jadd_int(resp, "time", reg_now_s(ctx));
	/* Extension: nothing applies until a request signed by the key arrives on
	 * this connection; send one (a heartbeat) now. Reference daemons ignore it. */
	if (pending)
		jadd_bool(resp, "pending", true);
	return resp;
}

/* Unsigned register of a key the registry knows (or an unsigned owner recovery):
 * answer as the reference would, change nothing, keep the values for the proof. */
static json_object *register_pending(registry *r, reg_node *n, reg_pending *p, bool reclaim,
				     const reg_ctx *ctx)
{
	char b64[48];
	const char *host = NULL;
	json_object *e;

	p->node = n->id;
	p->reclaim = reclaim;
	memcpy(p->old_pk, n->pk, 32);
	if (p->hostname && reg_validate_hostname(p->hostname))
		host = reg_validate_hostname(p->hostname);
	else if (p->hostname && (!reg_node_by_hostname(r, p->hostname) || reg_node_by_hostname(r, p->hostname) == n))
		host = "";
	pilot_b64_encode(p->pk, 32, b64, sizeof(b64));
	if ((e = pending_put(r, ctx->conn, p)))
		return e;
	r->st.registrations++;
	return register_resp(r, n, b64, host, p->hostname, true, ctx);
}

json_object *h_register(registry *r, json_object *req, const reg_ctx *ctx)
{
	const char *owner = jw_get_str(req, "owner"), *host;
	uint8_t pk[32];
	bool is_signed;
	json_object *e;
	reg_node *n, *on;
	reg_pending *p;

	if ((e = get_key(r, req, "public_key", pk)))
		return e;
	if (!reg_rl_take(r, RL_REGISTER, ctx) && !reg_node_by_key(r, pk))
		return reg_err(r, E_RATE, "too many registrations from %s; retry in a minute", ctx->src_ip);
	if (owner && strlen(owner) > REG_OWNER_MAX)
		return reg_err(r, E_INVALID, "owner longer than %d bytes", REG_OWNER_MAX);
	if (owner && !*owner)
		owner = NULL;
	if ((e = register_sig(r, req, pk, ctx, &is_signed)))
		return e;
	if (!(p = regvals(req, pk, owner, ctx)))
		return reg_err(r, E_INTERNAL, "out of memory");
	n = reg_node_by_key(r, pk);
	on = !n ? recoverable(r, owner) : NULL;
	if (on && on->live) {
		pending_free(p);
		return reg_err(r, E_CONFLICT, "owner's node %u is online; use rotate_key, or retry after it expires", on->id);
	}
	if (on && reclaim_too_soon(r, on, ctx)) {
		pending_free(p);
		return reg_err(r, E_RATE, "owner recovery is limited to once per 10 minutes");
	}
	if (!is_signed && (n || on))
		return register_pending(r, n ? n : on, p, !n, ctx);
	st_begin(r);
	if (on) {
		if ((e = owner_reclaim(r, on, pk, ctx))) {
			st_rollback(r);
			pending_free(p);
			return e;
		}
		n = on;
	} else if (!n) {
		if ((e = new_node(r, pk, &n))) {
			st_rollback(r);
			pending_free(p);
			return e;
		}
		if (!is_signed && p->owner) {
			/* An owner only with the key's signature: it waits for one. */
			reg_pending *w = regvals(req, pk, owner, ctx);
			json_object *we = NULL;

			if (w) {
				w->node = n->id;
				memcpy(w->old_pk, pk, 32);
				we = pending_put(r, ctx->conn, w);
			}
			if (!w || we) {
				/* not fatal: the node registers without an owner */
				json_object_put(we);
				log_debug("registry: owner of new node %u not kept for proof", n->id);
			}
			free(p->owner);
			p->owner = NULL;
		}
	}
	host = apply_register(r, n, p, ctx);
	if (is_signed)
		n->sig_v2 = true;
	st_node(r, n);
	r->st.registrations++;
	e = register_resp(r, n, n->pk_b64, host, n->hostname, false, ctx);
	pending_free(p);
	if (is_signed)
		pending_drop(r, ctx->conn, n->id); /* superseded */
	return commit_or_fail(r, e);
}

/* Apply what an unsigned register left waiting on this connection for node id,
 * now that a request signed by pk (the key it named) arrived. Its own
 * transaction: call before the handler's. */
static void apply_proof(registry *r, const reg_ctx *ctx, uint32_t id, const uint8_t pk[32])
{
	reg_pending *p = pending_get(r, ctx->conn, id);
	reg_node *n = reg_node_get(r, id);
	json_object *e = NULL;

	if (!p || !n)
		return;
	if (memcmp(p->pk, pk, 32) || memcmp(p->old_pk, n->pk, 32)) {
		if (memcmp(p->old_pk, n->pk, 32)) /* the node's key changed meanwhile */
			pending_drop(r, ctx->conn, id);
		return;
	}
	st_begin(r);
	if (p->reclaim && (e = owner_reclaim(r, n, p->pk, ctx))) {
		log_info("registry: owner recovery refused node=%u reason=\"%s\"", n->id, jw_get_str(e, "message"));
		json_object_put(e);
		st_rollback(r);
		pending_drop(r, ctx->conn, id);
		return;
	}
	apply_register(r, n, p, ctx);
	pending_drop(r, ctx->conn, id);
	st_node(r, n);
	if (st_commit(r) < 0)
		log_warn("registry: saving node %u after its proof failed", n->id);
	else
		log_info("registry: register applied after proof node=%u addr=%s", n->id, n->real_addr);
}

/* After a handler: a verified signature by a node's key (r->sig_node, r->sig_pk)
 * applies what waited on this connection (if the handler did not already) and a
 * v2 one marks the node (no v1 from then on). */
void reg_after_signed(registry *r, const reg_ctx *ctx)
{
	reg_node *n;

	apply_proof(r, ctx, r->sig_node, r->sig_pk);
	n = reg_node_get(r, r->sig_node);
	if (!n || !r->sig_was_v2 || n->sig_v2)
		return;
	st_begin(r);
	n->sig_v2 = true;
	st_node(r, n);
	if (st_commit(r) < 0)
		log_warn("registry: saving node %u after its signed request failed", n->id);
}

/* ---- heartbeat / lookup / resolve ---- */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* Check a node-signed request with v1 = "<kw>:<id>" and v2 fields given. */
static json_object *sig_simple(registry *r, reg_node *n, json_object *req, const char *kw,
			       const char *fields, const reg_ctx *ctx)
{
	char v1[96], idf[16];

	snprintf(v1, sizeof(v1), "%s:%u", kw, n->id);
	snprintf(idf, sizeof(idf), "%u", n->id);
	return reg_check_sig(r, n, req, v1, fields ? fields : idf, ctx);
}

json_object *h_heartbeat(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint32_t id = u32(req, "node_id");
	json_object *e = NULL, *resp;
	reg_pending *p = pending_get(r, ctx->conn, id);
	reg_node *n = reg_node_get(r, id);

	/* A node with a register waiting on this connection may prove it with its
	 * heartbeat even while dead; an owner recovery signs with the new key. */
	if (!p || p->node != id || !n)
		n = need_live(r, id, "node", &e);
	if (!n)
		return e;
	if (p && p->node == id && p->reclaim) {
		reg_node tmp = *n;

		memcpy(tmp.pk, p->pk, 32);
		if ((e = sig_simple(r, &tmp, req, "heartbeat", NULL, ctx)))
			return e;
		resp = reg_ok("heartbeat"); /* reg_after_signed does the rest */
		jadd_int(resp, "time", reg_now_s(ctx));
		return resp;
	}
	if ((e = sig_simple(r, n, req, "heartbeat", NULL, ctx)))
		return e;
	n->last_seen_ms = ctx->now_ms;
	snprintf(n->src_ip, sizeof(n->src_ip), "%s", ctx->src_ip);
	resp = reg_ok("heartbeat");
	jadd_int(resp, "time", reg_now_s(ctx));
	return resp;
}

static json_object *nets_array(const reg_node *n)
{
	json_object *a = json_object_new_array();

	json_object_array_add(a, json_object_new_int(0));
	for (size_t i = 0; i < n->nnets; i++)
		json_object_array_add(a, json_object_new_int(n->nets[i]));
	return a;
}

static json_object *tags_array(const reg_node *n)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; i < n->ntags; i++)
		json_object_array_add(a, json_object_new_string(n->tags[i]));
	return a;
}

json_object *h_lookup(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint32_t id = u32(req, "node_id");
	reg_node *n = reg_live_node(r, id);
	json_object *resp;

	if (!n)
		return miss(r, ctx, "node %u is not registered", id, NULL);
	resp = reg_ok("lookup");
	jadd_int(resp, "node_id", n->id);
	add_addr(resp, n->id);
	json_object_object_add(resp, "networks", nets_array(n));
	jadd_str(resp, "public_key", n->pk_b64);
	jadd_bool(resp, "public", n->pub);
	jadd_int(resp, "polo_score", n->polo);
	if (n->hostname)
		jadd_str(resp, "hostname", n->hostname);
	if (n->ntags)
		json_object_object_add(resp, "tags", tags_array(n));
	if (n->task_exec)
		jadd_bool(resp, "task_exec", true);
	if (n->relay_only)
		jadd_bool(resp, "relay_only", true);
	if (n->pub)
		jadd_str(resp, "real_addr", n->real_addr);
	return resp;
}

/* The privacy rule for disclosing target's endpoint to asker. */
static bool may_disclose(registry *r, const reg_node *asker, const reg_node *target)
{
	return asker == target || target->pub || reg_has_pair(r, asker->id, target->id) ||
	       reg_share_net(asker, target);
}

json_object *h_resolve(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint32_t id = u32(req, "node_id");
	json_object *e = NULL, *resp;
	reg_node *q = need_live(r, u32(req, "requester_id"), "requester", &e), *t;
	char *fields, ref[96];

	if (!q) {
		snprintf(ref, sizeof(ref), "resolve denied: requester node %u is not registered",
			 u32(req, "requester_id"));
		json_object_object_add(e, "error", json_object_new_string(ref));
		return e;
	}
	if (!(fields = fmt("%u:%u", q->id, id)))
		return reg_err(r, E_INTERNAL, "out of memory");
	{
		char v1[48];

		snprintf(v1, sizeof(v1), "resolve:%u:%u", q->id, id);
		e = reg_check_sig(r, q, req, v1, fields, ctx);
	}
	free(fields);
	if (e)
		return e;
	if (!(t = reg_live_node(r, id)))
		return miss(r, ctx, "node %u is not registered", id, NULL);
	if (!may_disclose(r, q, t)) {
		snprintf(ref, sizeof(ref),
			 "resolve denied: node %u is private (establish mutual trust first)", id);
		return reg_err_ref(r, E_FORBIDDEN, ref,
				   "node %u is private and shares no trust or network with %u: establish "
				   "mutual trust first (pilotctl handshake %u, accepted on both sides)",
				   id, q->id, id);
	}
	resp = reg_ok("resolve");
	jadd_int(resp, "node_id", t->id);
	jadd_str(resp, "real_addr", t->real_addr);
	/* tunnel.md §10: the endpoint cannot answer (a compat node's is <ip>:0);
	 * the asker pins the relay and sends no PunchRequest. */
	if (t->relay_only)
		jadd_bool(resp, "relay_only", true);
	return resp;
}

json_object *h_resolve_hostname(registry *r, json_object *req, const reg_ctx *ctx)
{
	const char *h = jw_get_str(req, "hostname");
	json_object *resp;
	reg_node *n;

	if (!h || !*h)
		return reg_err(r, E_INVALID, "hostname is required");
	if (!(n = reg_node_by_hostname(r, h)))
		return miss(r, ctx, "hostname \"%.64s\" is not registered", 0, h);
	resp = reg_ok("resolve_hostname");
	jadd_int(resp, "node_id", n->id);
	add_addr(resp, n->id);
	jadd_bool(resp, "public", n->pub);
	jadd_str(resp, "hostname", n->hostname);
	return resp;
}

json_object *h_deregister(registry *r, json_object *req, const reg_ctx *ctx)
{
	reg_node *n = reg_live_node(r, u32(req, "node_id"));
	json_object *e;

	if (!n)
		return reg_ok("deregister");
	if ((e = sig_simple(r, n, req, "deregister", NULL, ctx)))
		return e;
	st_begin(r);
	reg_node_kill(r, n);
	st_node(r, n);
	r->st.deregistrations++;
	return commit_or_fail(r, reg_ok("deregister"));
}

/* ---- setters ---- */
static json_object *setter_node(registry *r, json_object *req, const char *kw,
				const char *val, const reg_ctx *ctx, reg_node **out)
{
	uint32_t id = u32(req, "node_id");
	json_object *e = NULL;
	reg_node *n = reg_node_get(r, id);
	char *fields;
	bool waiting = n && !n->live && pending_get(r, ctx->conn, id);

	/* A returning node's register waits on this connection: its signed setter
	 * (the reference sends set_visibility right after register) proves it. */
	if (!waiting && !(n = need_live(r, id, "node", &e)))
		return e;
	if (waiting && pending_get(r, ctx->conn, id)->reclaim)
		return reg_err(r, E_NOT_FOUND, "node %u is not registered; send heartbeat first", id);
	if (!(fields = fmt("%u:%s", n->id, val)))
		return reg_err(r, E_INTERNAL, "out of memory");
	e = sig_simple(r, n, req, kw, fields, ctx);
	free(fields);
	if (!e && waiting) {
		apply_proof(r, ctx, n->id, n->pk);
		if (!n->live)
			return reg_err(r, E_NOT_FOUND, "node %u is not registered", id);
	}
	*out = n;
	return e;
}

json_object *h_set_visibility(registry *r, json_object *req, const reg_ctx *ctx)
{
	bool pub = jw_get_bool(req, "public");
	json_object *e, *resp;
	reg_node *n;

	if ((e = setter_node(r, req, "set_visibility", pub ? "true" : "false", ctx, &n)))
		return e;
	st_begin(r);
	n->pub = pub;
	st_node(r, n);
	resp = reg_ok("set_visibility");
	jadd_int(resp, "node_id", n->id);
	jadd_str(resp, "visibility", pub ? "public" : "private");
	return commit_or_fail(r, resp);
}

json_object *h_set_hostname(registry *r, json_object *req, const reg_ctx *ctx)
{
	const char *h = jw_get_str(req, "hostname"), *why;
	json_object *e, *resp;
	reg_node *n, *holder;

	if (!h)
		h = "";
	if (*h && (why = reg_validate_hostname(h)))
		return reg_err(r, E_INVALID, "hostname \"%.64s\" %s", h, why);
	if ((e = setter_node(r, req, "set_hostname", h, ctx, &n)))
		return e;
	holder = reg_node_by_hostname(r, h);
	if (holder && holder != n)
		return reg_err(r, E_CONFLICT, "hostname \"%s\" is taken by another node", h);
	st_begin(r);
	if (reg_node_set_hostname(r, n, h) < 0) {
		st_rollback(r);
		return reg_err(r, E_INTERNAL, "out of memory");
	}
	st_node(r, n);
	resp = reg_ok("set_hostname");
	jadd_int(resp, "node_id", n->id);
	jadd_str(resp, "hostname", h);
	return commit_or_fail(r, resp);
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Validate the tags array; *raw gets the as-sent strings joined with ','. */
static json_object *parse_tags(registry *r, json_object *req, char ***out, size_t *nout, char **raw)
{
	json_object *a = json_object_object_get(req, "tags");
	size_t len = a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
	char **v = calloc(len + 1, sizeof(*v));
	size_t n = 0, rawlen = 1;

	*raw = NULL;
	if (!v)
		return reg_err(r, E_INTERNAL, "out of memory");
	for (size_t i = 0; i < len; i++) {
		json_object *t = json_object_array_get_idx(a, i);
		const char *s, *why;

		if (!json_object_is_type(t, json_type_string))
			continue;
		s = json_object_get_string(t);
		rawlen += strlen(s) + 1;
		if (n >= REG_MAX_TAGS) {
			free_strv(v, n);
			return reg_err(r, E_INVALID, "too many tags (max %d)", REG_MAX_TAGS);
		}
		if ((why = reg_validate_label(s[0] == '#' ? s + 1 : s, 32))) {
			free_strv(v, n);
			return reg_err(r, E_INVALID, "tag \"%.40s\" %s (max 32 characters)", s, why);
		}
		v[n++] = strdup(s[0] == '#' ? s + 1 : s);
	}
	*raw = calloc(1, rawlen);
	for (size_t i = 0, first = 1; *raw && i < len; i++) {
		json_object *t = json_object_array_get_idx(a, i);

		if (!json_object_is_type(t, json_type_string))
			continue;
		if (!first)
			strcat(*raw, ",");
		strcat(*raw, json_object_get_string(t));
		first = 0;
	}
	for (size_t i = 0; i < n; i++)
		if (!v[i] || !*raw) {
			free_strv(v, n);
			free(*raw);
			*raw = NULL;
			return reg_err(r, E_INTERNAL, "out of memory");
		}
	*out = v;
	*nout = n;
	return NULL;
}

json_object *h_set_tags(registry *r, json_object *req, const reg_ctx *ctx)
{
	char **tags = NULL, *raw = NULL;
	size_t ntags = 0;
	json_object *e, *resp;
	reg_node *n;

	if ((e = parse_tags(r, req, &tags, &ntags, &raw)))
		return e;
	e = setter_node(r, req, "set_tags", raw, ctx, &n);
	free(raw);
	if (e) {
		free_strv(tags, ntags);
		return e;
	}
	st_begin(r);
	if (ntags == 0) {
		free(tags);
		tags = NULL;
	}
	reg_tags_set(n, tags, ntags);
	st_node(r, n);
	resp = reg_ok("set_tags");
	jadd_int(resp, "node_id", n->id);
	json_object_object_add(resp, "tags", ntags ? tags_array(n) : NULL);
	return commit_or_fail(r, resp);
}

json_object *h_set_task_exec(registry *r, json_object *req, const reg_ctx *ctx)
{
	bool en = jw_get_bool(req, "enabled");
	json_object *e, *resp;
	reg_node *n;

	if ((e = setter_node(r, req, "set_task_exec", en ? "true" : "false", ctx, &n)))
		return e;
	st_begin(r);
	n->task_exec = en;
	st_node(r, n);
	resp = reg_ok("set_task_exec");
	jadd_int(resp, "node_id", n->id);
	jadd_bool(resp, "task_exec", en);
	return commit_or_fail(r, resp);
}

json_object *h_rotate_key(registry *r, json_object *req, const reg_ctx *ctx)
{
	const char *nk = jw_get_str(req, "new_public_key"), *sig = jw_get_str(req, "signature");
	uint8_t pk[32];
	json_object *e = NULL, *resp;
	reg_node *n, *other;

	if (!sig || !*sig)
		return reg_err(r, E_BAD_SIG, "missing signature");
	if ((e = get_key(r, req, "new_public_key", pk)))
		return e;
	if ((e = setter_node(r, req, "rotate", nk, ctx, &n)))
		return e;
	other = reg_node_by_key(r, pk);
	if (other && other != n)
		return reg_err(r, E_CONFLICT, "new_public_key is already bound to node %u", other->id);
	st_begin(r);
	if (reg_node_set_key(r, n, pk) < 0) {
		st_rollback(r);
		return reg_err(r, E_INTERNAL, "out of memory");
	}
	n->last_seen_ms = ctx->now_ms;
	st_node(r, n);
	resp = reg_ok("rotate_key");
	jadd_int(resp, "node_id", n->id);
	add_addr(resp, n->id);
	jadd_str(resp, "public_key", n->pk_b64);
	return commit_or_fail(r, resp);
}

/* ---- polo score (unauthenticated, like the reference; rate-limited) ---- */
static json_object *polo_resp(reg_node *n, const char *type)
{
	json_object *resp = reg_ok(type);

	jadd_int(resp, "node_id", n->id);
	add_addr(resp, n->id);
	jadd_int(resp, "polo_score", n->polo);
	return resp;
}

static bool get_num(json_object *req, const char *k, int64_t *out)
{
	json_object *v = json_object_object_get(req, k);
	double d;

	if (!v || !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
		return false;
	d = json_object_get_double(v);
	if (d != d)
		return false;
	if (d > 1e15)
		d = 1e15;
	if (d < -1e15)
		d = -1e15;
	*out = (int64_t)d;
	return true;
}

json_object *h_get_polo(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint32_t id = u32(req, "node_id");
	reg_node *n = reg_live_node(r, id);

	if (!n)
		return miss(r, ctx, "node %u is not registered", id, NULL);
	return polo_resp(n, "get_polo_score");
}

static json_object *polo_write(registry *r, json_object *req, const reg_ctx *ctx, bool set)
{
	int64_t v;
	json_object *e = NULL;
	reg_node *n = need_live(r, u32(req, "node_id"), "node", &e);

	if (!n)
		return e;
	if (!get_num(req, set ? "polo_score" : "delta", &v))
		return reg_err(r, E_INVALID, "%s (number) is required", set ? "polo_score" : "delta");
	st_begin(r);
	n->polo = set ? v : n->polo + v;
	if (n->polo > 1000000000000000LL)
		n->polo = 1000000000000000LL;
	if (n->polo < -1000000000000000LL)
		n->polo = -1000000000000000LL;
	n->last_seen_ms = ctx->now_ms;
	st_node(r, n);
	return commit_or_fail(r, polo_resp(n, set ? "set_polo_score" : "update_polo_score"));
}

json_object *h_update_polo(registry *r, json_object *req, const reg_ctx *ctx)
{
	return polo_write(r, req, ctx, false);
}

json_object *h_set_polo(registry *r, json_object *req, const reg_ctx *ctx)
{
	return polo_write(r, req, ctx, true);
}

/* ---- punch ---- */
json_object *h_punch(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint32_t a = u32(req, "node_a"), b = u32(req, "node_b");
	json_object *e = NULL, *resp;
	reg_node *q = need_live(r, u32(req, "requester_id"), "requester", &e), *na, *nb;
	char v1[48], fields[48];

	if (!q)
		return e;
	if (q->id != a && q->id != b)
		return reg_err(r, E_FORBIDDEN, "requester %u must be node_a or node_b", q->id);
	snprintf(v1, sizeof(v1), "punch:%u:%u", a, b);
	snprintf(fields, sizeof(fields), "%u:%u:%u", q->id, a, b);
	if ((e = reg_check_sig(r, q, req, v1, fields, ctx)))
		return e;
	if (!(na = need_live(r, a, "node_a", &e)) || !(nb = need_live(r, b, "node_b", &e)))
		return e;
	if (!may_disclose(r, q, q == na ? nb : na))
		return reg_err(r, E_FORBIDDEN, "node %u is private and shares no trust or network with %u",
			       q == na ? b : a, q->id);
	resp = reg_ok("punch");
	jadd_int(resp, "node_a", a);
	jadd_str(resp, "node_a_addr", na->real_addr);
	jadd_int(resp, "node_b", b);
	jadd_str(resp, "node_b_addr", nb->real_addr);
	return resp;
}

/* ---- beacons (memory only) ---- */
json_object *h_beacon_register(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint32_t id = u32(req, "beacon_id");
	const char *addr = jw_get_str(req, "addr");
	uint64_t v;
	reg_beacon *b;
	json_object *resp;

	if (!id)
		return reg_err(r, E_INVALID, "beacon_id must be non-zero");
	if (!addr || !*addr || strlen(addr) >= sizeof(b->addr))
		return reg_err(r, E_INVALID, "addr (host:port) is required");
	if (rmap_get(&r->beacons, id, &v)) {
		b = (reg_beacon *)(uintptr_t)v;
	} else {
		if (r->beacons.len >= REG_BEACON_CAP)
			return reg_err(r, E_LIMIT, "too many beacons registered");
		if (!(b = calloc(1, sizeof(*b))) || rmap_put(&r->beacons, id, (uintptr_t)b) < 0) {
			free(b);
			return reg_err(r, E_INTERNAL, "out of memory");
		}
	}
	b->id = id;
	snprintf(b->addr, sizeof(b->addr), "%s", addr);
	b->seen_ms = ctx->now_ms;
	resp = reg_ok("beacon_register");
	jadd_int(resp, "beacon_id", id);
	return resp;
}

json_object *h_beacon_list(registry *r, json_object *req, const reg_ctx *ctx)
{
	json_object *resp = reg_ok("beacon_list"), *a = json_object_new_array();

	for (size_t i = 0; i < r->beacons.cap; i++) {
		reg_beacon *b;
		json_object *o;

		if (!r->beacons.e[i].used)
			continue;
		b = (reg_beacon *)(uintptr_t)r->beacons.e[i].val;
		if (b->seen_ms + REG_BEACON_TTL_MS < ctx->now_ms)
			continue;
		o = json_object_new_object();
		jadd_int(o, "id", b->id);
		jadd_str(o, "addr", b->addr);
		json_object_array_add(a, o);
	}
	json_object_object_add(resp, "beacons", a);
	return resp;
}
