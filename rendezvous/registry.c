/* The registry core: state, dispatch and the queries the beacon asks.
 *
 * Wire compatibility (registry.md §3, §5): every response carries `type`
 * (`<request>_ok` or `error`); an error response carries `"error":"request
 * failed"` like the reference (or, for a refused resolve, the reference
 * handler's own text: reg_err_ref), plus our additions
 * `code` (machine-readable) and `message` (human):
 *   not_found, bad_signature, stale_signature, replayed_signature,
 *   rate_limited, invalid_argument, conflict, forbidden, read_only,
 *   unknown_type, limit, internal (store write failed), busy (the store's
 *   write queue is full, or another instance changed the same record first:
 *   nothing was changed; carries "retry_after_ms"), unavailable (the store's
 *   database is unreachable: writes are refused, reads answer from memory;
 *   carries "retry_after_ms").
 *
 * Signatures (full text in rendezvous/SIGNATURES.md):
 *   v1 (reference): Ed25519 over the challenge of registry.md §8, e.g.
 *       "heartbeat:<node_id>". Replayable; accepted unless strict_signatures.
 *   v2: the request also carries "sig_ts" (integer unix seconds) and
 *       "signature" = base64(Ed25519("pilot2:<type>:<sig_ts>:<fields>")):
 *         heartbeat, deregister, poll_handshakes, poll_invites: node_id
 *         set_visibility: node_id:true|false      set_hostname: node_id:hostname
 *         set_tags: node_id:<tags as sent joined with ','>
 *         set_task_exec: node_id:true|false       resolve: requester_id:node_id
 *         report_trust, revoke_trust: node_id:peer_id
 *         punch: requester_id:node_a:node_b
 *         request_handshake: from:to:<lowercase hex sha256(justification)>
 *         respond_handshake: node_id:peer_id:true|false
 *         rotate_key: node_id:new_public_key (base64 as sent; old key signs)
 *         join_network, leave_network: node_id:network_id
 *         create_network: node_id:name:join_rule (join_rule as sent, "" if absent)
 *         invite_to_network: inviter_id:network_id:target_node_id
 *         respond_invite: node_id:network_id:true|false
 *         register (optional; required in strict mode): public_key:listen_addr
 *       Accepted only when |now - sig_ts| <= 120 s and that exact signature was
 *       not seen before within the window (bounded replay cache).
 *   register_ok advertises "sig_v2":true and "time":<unix s>.
 *
 * Rate limits per source IP (IPv6 keyed by /64), token buckets:
 *   register  cap 10,  10/min, a known public key is exempt (reference §9)
 *   write     cap 120, 2/s   (every signed write, polls, polo writers, punch, beacon_register)
 *   read      cap 300, 10/s  (lookup, resolve, resolve_hostname, list_*, get_polo_score, beacon_list)
 *   miss      cap 20,  1/6 s (extra cost of a lookup/resolve of an unknown node or hostname)
 * A daemon sends ~4 requests/min in steady state, so none of these is reached
 * by normal use. At most 65536 buckets; idle ones (4 min) are dropped. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/jsonwire.h"
#include "lib/log.h"
#include "rendezvous/reg_internal.h"

struct handler_ent {
	const char *type;
	reg_handler fn;
	enum rl_class rl;
	bool standby_ok;
};

static const struct handler_ent handlers[] = {
	{ "register", h_register, RL_NONE, false }, /* limited inside (key exemption) */
	{ "heartbeat", h_heartbeat, RL_WRITE, true },
	{ "lookup", h_lookup, RL_READ, true },
	{ "resolve", h_resolve, RL_READ, true },
	{ "resolve_hostname", h_resolve_hostname, RL_READ, true },
	{ "list_networks", h_list_networks, RL_READ, true },
	{ "list_nodes", h_list_nodes, RL_READ, true },
	{ "deregister", h_deregister, RL_WRITE, false },
	{ "set_visibility", h_set_visibility, RL_WRITE, false },
	{ "set_hostname", h_set_hostname, RL_WRITE, false },
	{ "set_tags", h_set_tags, RL_WRITE, false },
	{ "set_task_exec", h_set_task_exec, RL_WRITE, false },
	{ "report_trust", h_report_trust, RL_WRITE, false },
	{ "revoke_trust", h_revoke_trust, RL_WRITE, false },
	{ "request_handshake", h_request_handshake, RL_WRITE, false },
	{ "poll_handshakes", h_poll_handshakes, RL_WRITE, true },
	{ "respond_handshake", h_respond_handshake, RL_WRITE, false },
	{ "rotate_key", h_rotate_key, RL_WRITE, false },
	{ "get_polo_score", h_get_polo, RL_READ, false },
	{ "update_polo_score", h_update_polo, RL_WRITE, false },
	{ "set_polo_score", h_set_polo, RL_WRITE, false },
	{ "punch", h_punch, RL_WRITE, false },
	{ "beacon_register", h_beacon_register, RL_WRITE, false },
	{ "beacon_list", h_beacon_list, RL_READ, true },
	{ "create_network", h_create_network, RL_WRITE, false },
	{ "join_network", h_join_network, RL_WRITE, false },
	{ "leave_network", h_leave_network, RL_WRITE, false },
	{ "invite_to_network", h_invite, RL_WRITE, false },
	{ "poll_invites", h_poll_invites, RL_WRITE, false },
	{ "respond_invite", h_respond_invite, RL_WRITE, false },
};

/* ---- small helpers ---- */
uint64_t reg_hash(const registry *r, const void *data, size_t len)
{
	uint8_t out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, data, len, r->hkey);
	memcpy(&h, out, sizeof(h));
	return h;
}

uint64_t reg_hash_str(const registry *r, const char *s)
{
	return reg_hash(r, s, strlen(s));
}

reg_node *reg_node_get(const registry *r, uint32_t id)
{
	uint64_t v;

	return rmap_get(&r->nodes, id, &v) ? (reg_node *)(uintptr_t)v : NULL;
}

reg_node *reg_live_node(const registry *r, uint32_t id)
{
	reg_node *n = reg_node_get(r, id);

	return n && n->live ? n : NULL;
}

reg_node *reg_node_by_key(const registry *r, const uint8_t pk[32])
{
	uint64_t id;
	reg_node *n;

	if (!rmap_get(&r->keyidx, reg_hash(r, pk, 32), &id))
		return NULL;
	n = reg_node_get(r, (uint32_t)id);
	return n && memcmp(n->pk, pk, 32) == 0 ? n : NULL;
}

reg_node *reg_node_by_hostname(const registry *r, const char *h)
{
	uint64_t id;
	reg_node *n;

	if (!h || !*h || !rmap_get(&r->hostidx, reg_hash_str(r, h), &id))
		return NULL;
	n = reg_live_node(r, (uint32_t)id);
	return n && n->hostname && strcmp(n->hostname, h) == 0 ? n : NULL;
}

reg_node *reg_node_by_owner(const registry *r, const char *owner)
{
	uint64_t id;
	reg_node *n;

	if (!owner || !*owner || !rmap_get(&r->owneridx, reg_hash_str(r, owner), &id))
		return NULL;
	n = reg_node_get(r, (uint32_t)id);
	return n && n->owner && strcmp(n->owner, owner) == 0 ? n : NULL;
}

reg_net *reg_net_get(const registry *r, uint16_t id)
{
	uint64_t v;

	return rmap_get(&r->nets, id, &v) ? (reg_net *)(uintptr_t)v : NULL;
}

reg_net *reg_net_by_name(const registry *r, const char *name)
{
	uint64_t id;
	reg_net *nt;

	if (!rmap_get(&r->netnames, reg_hash_str(r, name), &id))
		return NULL;
	nt = reg_net_get(r, (uint16_t)id);
	return nt && strcmp(nt->name, name) == 0 ? nt : NULL;
}

bool reg_node_in_net(const reg_node *n, uint16_t net)
{
	if (net == 0)
		return n->live;
	for (size_t i = 0; i < n->nnets; i++)
		if (n->nets[i] == net)
			return true;
	return false;
}

bool reg_share_net(const reg_node *a, const reg_node *b)
{
	for (size_t i = 0; i < a->nnets; i++)
		if (reg_node_in_net(b, a->nets[i]))
			return true;
	return false;
}

bool reg_has_pair(const registry *r, uint32_t a, uint32_t b)
{
	return rmap_get(&r->pairs, upair_key(a, b), NULL);
}

int64_t reg_now_s(const reg_ctx *ctx)
{
	return (int64_t)(ctx->now_ms / 1000);
}

void reg_fmt_addr(char out[32], uint16_t net, uint32_t node)
{
	snprintf(out, 32, "%u:%04X.%04X.%04X", (unsigned)net, (unsigned)net,
		 (unsigned)(node >> 16), (unsigned)(node & 0xFFFF));
}

void jadd_str(json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v ? v : ""));
}

void jadd_int(json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

void jadd_bool(json_object *o, const char *k, bool v)
{
	json_object_object_add(o, k, json_object_new_boolean(v));
}

json_object *reg_ok(const char *type)
{
	json_object *o = json_object_new_object();
	char t[64];

	snprintf(t, sizeof(t), "%s_ok", type);
	jadd_str(o, "type", t);
	return o;
}

json_object *reg_err(registry *r, const char *code, const char *fmt, ...)
{
	json_object *o = json_object_new_object();
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	jadd_str(o, "type", "error");
	jadd_str(o, "error", "request failed");
	jadd_str(o, "code", code);
	jadd_str(o, "message", msg);
	if (strcmp(code, E_RATE) == 0)
		r->st.rate_limited++;
	return o;
}

/* Same with the reference's own wording in `error` where its handler has one
 * (its server collapses every handler error into "request failed" on the wire;
 * a reference daemon prints `error` as "registry: <error>", so it says what
 * happened): resolve refusals (issue 15). */
json_object *reg_err_ref(registry *r, const char *code, const char *ref_error, const char *fmt, ...)
{
	json_object *o;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = reg_err(r, code, "%s", msg);
	json_object_object_add(o, "error", json_object_new_string(ref_error));
	return o;
}

json_object *reg_store_fail(registry *r)
{
	return reg_err(r, E_INTERNAL, "the registry could not save the change; try again");
}

/* ---- lifecycle ---- */
static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

registry *reg_open(const reg_config *cfg, char *err, size_t errlen)
{
	registry *r;

	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium initialisation failed");
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->cfg = *cfg;
	r->store_path = dup_or_null(cfg->store_path);
	r->admin_token = dup_or_null(cfg->admin_token);
	r->replication_token = dup_or_null(cfg->replication_token);
	r->cfg.store_path = r->store_path;
	r->cfg.admin_token = r->admin_token;
	r->cfg.replication_token = r->replication_token;
	if (r->cfg.stale_ms <= 0)
		r->cfg.stale_ms = 180000;
	randombytes_buf(r->hkey, sizeof(r->hkey));
	if (reg_state_init(r) < 0) {
		snprintf(err, errlen, "out of memory");
		reg_close(r);
		return NULL;
	}
	if (r->store_path && (st_open(r, r->store_path, err, errlen) < 0 ||
			      st_load(r, err, errlen) < 0 || st_start(r, err, errlen) < 0)) {
		reg_close(r);
		return NULL;
	}
	return r;
}

void reg_close(registry *r)
{
	size_t n;
	uint64_t *k;

	if (!r)
		return;
	st_close(r);
	reg_pending_free_all(r);
	reg_state_free(r);
	reg_rl_free(r);
	k = rmap_keys(&r->beacons, &n);
	for (size_t i = 0; i < n; i++) {
		uint64_t v;

		rmap_get(&r->beacons, k[i], &v);
		free((void *)(uintptr_t)v);
	}
	free(k);
	rmap_free(&r->beacons);
	rmap_free(&r->replay);
	rmap_free(&r->reclaims);
	free(r->store_path);
	if (r->admin_token)
		sodium_memzero(r->admin_token, strlen(r->admin_token));
	if (r->replication_token)
		sodium_memzero(r->replication_token, strlen(r->replication_token));
	free(r->admin_token);
	free(r->replication_token);
	free(r);
}

/* ---- dispatch ---- */
/* May this handler queue a store write? (Those are refused while the queue is
 * full; reads and heartbeats never are. get_polo_score may write once per node
 * and is let through: a bound exceeded by reads is still a bound.) */
static bool handler_writes(const struct handler_ent *h)
{
	return h->rl == RL_NONE || (h->rl == RL_WRITE && h->fn != h_heartbeat);
}

/* The write queue is full: the disk is behind. Tell the client when to retry:
 * about two commits from now, 50 ms .. 2 s. */
static json_object *busy(registry *r)
{
	reg_store_stats ss;
	json_object *o;
	int64_t ms;

	st_get_stats(r, &ss);
	ms = (int64_t)(2 * ss.last_commit_ms);
	ms = ms < 50 ? 50 : ms > 2000 ? 2000 : ms;
	r->busy++;
	o = reg_err(r, E_BUSY, "the registry is busy writing to its disk; retry in %lld ms", (long long)ms);
	jadd_int(o, "retry_after_ms", ms);
	return o;
}

/* The database does not answer (shared back ends): refuse writes before they
 * change anything; reads go on from memory. */
static json_object *unavailable(registry *r)
{
	json_object *o;

	r->busy++;
	o = reg_err(r, E_UNAVAILABLE, "the registry's database is unreachable; retry in 1000 ms");
	jadd_int(o, "retry_after_ms", 1000);
	return o;
}

static const struct handler_ent *find_handler(const char *type)
{
	for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (strcmp(handlers[i].type, type) == 0)
			return &handlers[i];
	return NULL;
}

json_object *reg_handle(registry *r, json_object *req, const reg_ctx *ctx_in)
{
	const struct handler_ent *h;
	const char *type = NULL;
	json_object *resp;
	reg_ctx ctx = { "", 0, 0, 0 };
	struct timespec ts;

	if (ctx_in)
		ctx = *ctx_in;
	if (!ctx.src_ip)
		ctx.src_ip = "";
	if (!ctx.now_ms) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ctx.now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	}
	r->st.requests++;
	if (req && json_object_is_type(req, json_type_object))
		type = jw_get_str(req, "type");
	h = find_handler(type ? type : "");
	if (!h)
		resp = reg_err(r, E_UNKNOWN_TYPE, "unknown message type \"%.64s\"", type ? type : "");
	else if (r->cfg.standby && !h->standby_ok)
		resp = reg_err(r, E_READ_ONLY, "this registry is a read-only standby; send %s to the primary", h->type);
	else if (h->rl != RL_NONE && !reg_rl_take(r, h->rl, &ctx))
		resp = reg_err(r, E_RATE, "too many requests from %s; slow down", ctx.src_ip);
	else if (handler_writes(h) && st_full(r))
		resp = busy(r);
	else if (handler_writes(h) && !st_db_up(r))
		resp = unavailable(r);
	else {
		r->sig_node = 0;
		r->sig_pend = false;
		r->sig_dep = 0;
		resp = h->fn(r, req, &ctx);
		if (r->sig_node)
			reg_after_signed(r, &ctx);
		r->sig_node = 0;
		r->sig_pend = false;
		r->sig_dep = 0;
	}
	if (strcmp(json_object_get_string(json_object_object_get(resp, "type")), "error") == 0)
		r->st.errors++;
	return resp;
}

/* ---- periodic work ---- */
static void beacons_gc(registry *r, uint64_t now_ms)
{
	size_t n;
	uint64_t *k = rmap_keys(&r->beacons, &n);

	for (size_t i = 0; i < n; i++) {
		uint64_t v;
		reg_beacon *b;

		rmap_get(&r->beacons, k[i], &v);
		b = (reg_beacon *)(uintptr_t)v;
		if (now_ms - b->seen_ms > REG_BEACON_TTL_MS || b->seen_ms > now_ms + REG_BEACON_TTL_MS) {
			rmap_del(&r->beacons, k[i]);
			free(b);
		}
	}
	free(k);
}

static void reclaims_gc(registry *r, uint64_t now_ms)
{
	size_t n;
	uint64_t *k = rmap_keys(&r->reclaims, &n);

	for (size_t i = 0; i < n; i++) {
		uint64_t t;

		rmap_get(&r->reclaims, k[i], &t);
		if (now_ms > t + REG_RECLAIM_GAP_MS)
			rmap_del(&r->reclaims, k[i]);
	}
	free(k);
}

void reg_tick(registry *r, uint64_t now_ms)
{
	if (!r)
		return;
	if (!r->last_reap_ms)
		r->last_reap_ms = now_ms;
	if (now_ms - r->last_gc_ms >= 1000 || now_ms < r->last_gc_ms) {
		r->last_gc_ms = now_ms;
		reg_replay_gc(r, (int64_t)(now_ms / 1000));
		st_flush_seen(r, now_ms);
		st_flush_rl(r);
	}
	if (now_ms < r->last_reap_ms + REG_REAP_EVERY_MS && now_ms >= r->last_reap_ms)
		return;
	r->last_reap_ms = now_ms;
	reg_reap(r, now_ms);
	reg_hsrec_expire(r, (int64_t)(now_ms / 1000));
	reg_rl_gc(r, now_ms);
	beacons_gc(r, now_ms);
	reclaims_gc(r, now_ms);
}

uint64_t reg_write_seq(registry *r)
{
	return st_submitted(r);
}

uint64_t reg_durable_seq(registry *r)
{
	return st_durable(r);
}

bool reg_write_failed(registry *r, uint64_t seq)
{
	return st_failed(r, seq);
}

int reg_commit_fd(registry *r)
{
	return st_fd(r);
}

bool reg_write_conflict(registry *r, uint64_t seq)
{
	return st_failed_conflict(r, seq);
}

const char *reg_store_kind(registry *r)
{
	return st_backend_name(r);
}

bool reg_store_up(registry *r)
{
	return st_db_up(r);
}

uint64_t reg_commit_poll(registry *r)
{
	st_fd_clear(r);
	st_apply_changes(r);
	return st_durable(r);
}

void reg_commit_forget(registry *r, uint64_t upto)
{
	st_failed_forget(r, upto);
}

int reg_sync(registry *r)
{
	return st_wait(r, st_submitted(r));
}

void reg_get_store_stats(registry *r, reg_store_stats *st)
{
	st_get_stats(r, st);
	st->busy = r->busy;
}

uint64_t reg_generation(registry *r)
{
	return r ? r->generation : 0;
}

/* ---- beacon queries ---- */
int reg_node_key(registry *r, uint32_t node, uint8_t pk[32])
{
	reg_node *n = reg_node_get(r, node);

	if (!n)
		return -ENOENT;
	memcpy(pk, n->pk, 32);
	return 0;
}

bool reg_node_live(registry *r, uint32_t node)
{
	return reg_live_node(r, node) != NULL;
}

const char *reg_node_src_ip(registry *r, uint32_t node)
{
	reg_node *n = reg_live_node(r, node);

	return n && n->src_ip[0] ? n->src_ip : NULL;
}

bool reg_may_talk(registry *r, uint32_t a, uint32_t b)
{
	reg_node *na = reg_node_get(r, a), *nb = reg_node_get(r, b);

	if (!na || !nb)
		return false;
	if (a == b || (na->live && na->pub) || (nb->live && nb->pub))
		return true;
	return reg_has_pair(r, a, b) || reg_share_net(na, nb);
}

void reg_get_stats(registry *r, uint64_t now_ms, reg_stats *st)
{
	size_t online = 0;

	*st = r->st;
	for (size_t i = 0; i < r->nodes.cap; i++) {
		reg_node *n;

		if (!r->nodes.e[i].used)
			continue;
		n = (reg_node *)(uintptr_t)r->nodes.e[i].val;
		if (n->live && n->last_seen_ms + (uint64_t)r->cfg.stale_ms >= now_ms)
			online++;
	}
	st->nodes_total = r->live_count;
	st->nodes_online = online;
	st->trust_links = r->pairs.len;
	st->networks = r->nets.len;
}
