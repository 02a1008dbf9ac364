/* Trust with consent (registry.md §5.10-5.11, hardened per §15 #3):
 *   - report_trust(a->b) alone records a one-sided "half"; the pair {a,b}
 *     exists only once b also reports a, or b accepted a's handshake request.
 *   - respond_handshake(accept) creates the pair only if a request_handshake
 *     from peer_id to node_id was recorded (pending or already polled).
 *   - revoke_trust by either side removes the pair, both halves and requests.
 * Pairs, halves and request records survive deregistration and reaping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/jsonwire.h"
#include "rendezvous/reg_internal.h"

static json_object *commit_or_fail(registry *r, json_object *resp)
{
	if (st_commit(r) == 0)
		return resp;
	json_object_put(resp);
	return reg_store_fail(r);
}

/* Commit; on success tell whoever listens that to's inbox has something. */
static json_object *commit_and_notify(registry *r, json_object *resp, uint32_t to)
{
	if (st_commit(r) < 0) {
		json_object_put(resp);
		return reg_store_fail(r);
	}
	if (r->inbox_cb)
		r->inbox_cb(r->inbox_arg, to);
	return resp;
}

void reg_set_inbox_cb(registry *r, reg_inbox_cb cb, void *arg)
{
	r->inbox_cb = cb;
	r->inbox_arg = arg;
}

static void drop_key(rmap *m, uint64_t k, registry *r, int kind)
{
	uint32_t a = (uint32_t)(k >> 32), b = (uint32_t)k;

	rmap_del(m, k);
	if (kind == 0) {
		st_pair(r, a, b, false);
	} else if (kind == 1) {
		st_half(r, a, b, 0, false);
	} else {
		reg_node *t = reg_node_get(r, b);

		if (t && t->hsrec_in)
			t->hsrec_in--;
		st_hsrec(r, a, b, 0, false);
	}
}

void reg_trust_forget(registry *r, uint32_t id)
{
	rmap *maps[3] = { &r->pairs, &r->halves, &r->hsrec };

	for (int m = 0; m < 3; m++) {
		size_t n;
		uint64_t *k = rmap_keys(maps[m], &n);

		for (size_t i = 0; i < n; i++)
			if ((uint32_t)(k[i] >> 32) == id || (uint32_t)k[i] == id)
				drop_key(maps[m], k[i], r, m);
		free(k);
	}
}

/* Forget handshake requests nobody answered within REG_HSREC_TTL_S, so the
 * per-target cap cannot be filled for good. Called from the reaper. */
void reg_hsrec_expire(registry *r, int64_t now_s)
{
	size_t n, dropped = 0;
	uint64_t *k = rmap_keys(&r->hsrec, &n);

	st_begin(r);
	for (size_t i = 0; i < n; i++) {
		uint64_t ts;

		rmap_get(&r->hsrec, k[i], &ts);
		if ((int64_t)ts + REG_HSREC_TTL_S < now_s) {
			drop_key(&r->hsrec, k[i], r, 2);
			dropped++;
		}
	}
	if (dropped)
		st_commit(r);
	else
		st_rollback(r);
	free(k);
}

bool reg_handshake_pending(registry *r, uint32_t a, uint32_t b)
{
	struct timespec now;
	uint64_t ts;

	if (!r || a == b)
		return false;
	/* The record itself lives REG_HSREC_TTL_S (30 days) so a late approve still
	 * forms the pair, but it opens the beacon relay only for a short while: a
	 * stranger's request must not buy a month of relayed traffic to a private node. */
	clock_gettime(CLOCK_REALTIME, &now);
	return (rmap_get(&r->hsrec, pair_key(a, b), &ts) && (int64_t)ts + REG_HSREC_RELAY_S >= now.tv_sec)
	       || (rmap_get(&r->hsrec, pair_key(b, a), &ts) && (int64_t)ts + REG_HSREC_RELAY_S >= now.tv_sec);
}

static int make_pair(registry *r, uint32_t a, uint32_t b)
{
	if (rmap_put(&r->pairs, upair_key(a, b), 1) < 0)
		return -1;
	st_pair(r, a, b, true);
	if (rmap_del(&r->halves, pair_key(a, b)))
		st_half(r, a, b, 0, false);
	if (rmap_del(&r->halves, pair_key(b, a)))
		st_half(r, b, a, 0, false);
	return 0;
}

static void forget_request(registry *r, uint32_t from, uint32_t to)
{
	if (rmap_get(&r->hsrec, pair_key(from, to), NULL))
		drop_key(&r->hsrec, pair_key(from, to), r, 2);
}

/* Two live, distinct nodes a (the signer) and b, signature over kw:a:b. */
static json_object *signed_pair(registry *r, json_object *req, const char *ka, const char *kb,
				const char *kw, const char *extra, const reg_ctx *ctx,
				reg_node **pa, reg_node **pb)
{
	uint32_t a = jw_get_u32(req, ka), b = jw_get_u32(req, kb);
	char v1[64], fields[128];

	if (!(*pa = reg_live_node(r, a)))
		return reg_err(r, E_NOT_FOUND, "node %u is not registered", a);
	snprintf(v1, sizeof(v1), "%s:%u:%u", kw, a, b);
	snprintf(fields, sizeof(fields), "%u:%u%s%s", a, b, extra ? ":" : "", extra ? extra : "");
	if (!(*pb = reg_live_node(r, b)))
		return reg_err(r, E_NOT_FOUND, "node %u is not registered", b);
	if (a == b)
		return reg_err(r, E_INVALID, "a node cannot trust itself");
	return reg_check_sig(r, *pa, req, v1, fields, ctx);
}

json_object *h_report_trust(registry *r, json_object *req, const reg_ctx *ctx)
{
	reg_node *a, *b;
	json_object *e, *resp;
	const char *status = "paired";

	if ((e = signed_pair(r, req, "node_id", "peer_id", "report_trust", NULL, ctx, &a, &b)))
		return e;
	st_begin(r);
	if (reg_has_pair(r, a->id, b->id)) {
		status = "paired";
	} else if (rmap_get(&r->halves, pair_key(b->id, a->id), NULL) ||
		   rmap_get(&r->hsrec, pair_key(b->id, a->id), NULL)) {
		if (make_pair(r, a->id, b->id) < 0)
			goto oom;
		forget_request(r, b->id, a->id);
	} else {
		if (rmap_put(&r->halves, pair_key(a->id, b->id), (uint64_t)reg_now_s(ctx)) < 0)
			goto oom;
		st_half(r, a->id, b->id, reg_now_s(ctx), true);
		status = "pending";
	}
	resp = reg_ok("report_trust");
	jadd_str(resp, "status", status);
	return commit_or_fail(r, resp);
oom:
	st_rollback(r);
	return reg_err(r, E_INTERNAL, "out of memory");
}

json_object *h_revoke_trust(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint32_t a = jw_get_u32(req, "node_id"), b = jw_get_u32(req, "peer_id");
	reg_node *na = reg_live_node(r, a);
	char v1[64], fields[64];
	json_object *e;
	bool had;

	if (!na)
		return reg_err(r, E_NOT_FOUND, "node %u is not registered", a);
	snprintf(v1, sizeof(v1), "revoke_trust:%u:%u", a, b);
	snprintf(fields, sizeof(fields), "%u:%u", a, b);
	if ((e = reg_check_sig(r, na, req, v1, fields, ctx)))
		return e;
	had = reg_has_pair(r, a, b) || rmap_get(&r->halves, pair_key(a, b), NULL) ||
	      rmap_get(&r->halves, pair_key(b, a), NULL);
	if (!had)
		return reg_err(r, E_NOT_FOUND, "no trust between %u and %u", a, b);
	st_begin(r);
	if (rmap_del(&r->pairs, upair_key(a, b)))
		st_pair(r, a, b, false);
	if (rmap_del(&r->halves, pair_key(a, b)))
		st_half(r, a, b, 0, false);
	if (rmap_del(&r->halves, pair_key(b, a)))
		st_half(r, b, a, 0, false);
	forget_request(r, a, b);
	forget_request(r, b, a);
	return commit_or_fail(r, reg_ok("revoke_trust"));
}

/* ---- handshake relay inbox ---- */
static void sha256_hex(const char *s, char out[65])
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, (const uint8_t *)s, strlen(s));
	sodium_bin2hex(out, 65, h, sizeof(h));
}

json_object *h_request_handshake(registry *r, json_object *req, const reg_ctx *ctx)
{
	const char *just = jw_get_str(req, "justification");
	char hex[65];
	reg_node *from, *to;
	reg_hsreq q;
	json_object *e, *resp;
	bool known;

	if (!just)
		just = "";
	if (strlen(just) > REG_JUSTIFY_MAX)
		return reg_err(r, E_INVALID, "justification longer than %d bytes", REG_JUSTIFY_MAX);
	sha256_hex(just, hex);
	if ((e = signed_pair(r, req, "from_node_id", "to_node_id", "handshake", hex, ctx, &from, &to)))
		return e;
	if (to->ninbox >= REG_INBOX_CAP)
		return reg_err(r, E_LIMIT, "node %u's handshake inbox is full", to->id);
	for (size_t i = 0; i < to->ninbox; i++)
		if (to->inbox[i].from == from->id)
			return reg_err(r, E_CONFLICT, "a request from %u to %u is already pending", from->id, to->id);
	known = rmap_get(&r->hsrec, pair_key(from->id, to->id), NULL);
	if (!known && to->hsrec_in >= REG_HSREC_CAP)
		return reg_err(r, E_LIMIT, "node %u has too many open handshake requests", to->id);
	q.from = from->id;
	q.ts = reg_now_s(ctx);
	q.justification = strdup(just);
	reg_hsreq *grown = q.justification ? realloc(to->inbox, (to->ninbox + 1) * sizeof(*grown)) : NULL;
	if (!grown || rmap_put(&r->hsrec, pair_key(from->id, to->id), (uint64_t)q.ts) < 0) {
		if (grown)
			to->inbox = grown;
		free(q.justification);
		return reg_err(r, E_INTERNAL, "out of memory");
	}
	to->inbox = grown;
	to->inbox[to->ninbox++] = q;
	if (!known)
		to->hsrec_in++;
	st_begin(r);
	st_inbox_add(r, to->id, &q);
	st_hsrec(r, from->id, to->id, q.ts, true);
	resp = reg_ok("request_handshake");
	jadd_str(resp, "status", "delivered");
	return commit_and_notify(r, resp, to->id);
}

json_object *h_poll_handshakes(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint32_t id = jw_get_u32(req, "node_id");
	reg_node *n = reg_live_node(r, id);
	json_object *e, *resp, *qa, *pa;
	char v1[48], f[16];

	if (!n)
		return reg_err(r, E_NOT_FOUND, "node %u is not registered", id);
	snprintf(v1, sizeof(v1), "poll_handshakes:%u", id);
	snprintf(f, sizeof(f), "%u", id);
	if ((e = reg_check_sig(r, n, req, v1, f, ctx)))
		return e;
	qa = json_object_new_array();
	pa = json_object_new_array();
	for (size_t i = 0; i < n->ninbox; i++) {
		json_object *o = json_object_new_object();

		jadd_int(o, "from_node_id", n->inbox[i].from);
		jadd_str(o, "justification", n->inbox[i].justification);
		jadd_int(o, "timestamp", n->inbox[i].ts);
		json_object_array_add(qa, o);
		free(n->inbox[i].justification);
	}
	for (size_t i = 0; i < n->nresp; i++) {
		json_object *o = json_object_new_object();

		jadd_int(o, "from_node_id", n->resp[i].from);
		jadd_bool(o, "accept", n->resp[i].accept);
		jadd_int(o, "timestamp", n->resp[i].ts);
		json_object_array_add(pa, o);
	}
	st_begin(r);
	if (n->ninbox)
		st_inbox_clear(r, id);
	if (n->nresp)
		st_resp_clear(r, id);
	free(n->inbox);
	free(n->resp);
	n->inbox = NULL;
	n->resp = NULL;
	n->ninbox = n->nresp = 0;
	resp = reg_ok("poll_handshakes");
	json_object_object_add(resp, "requests", qa);
	json_object_object_add(resp, "responses", pa);
	return commit_or_fail(r, resp);
}

bool reg_inbox_remove(reg_node *n, uint32_t from)
{
	for (size_t i = 0; i < n->ninbox; i++) {
		if (n->inbox[i].from != from)
			continue;
		free(n->inbox[i].justification);
		memmove(&n->inbox[i], &n->inbox[i + 1], (n->ninbox - i - 1) * sizeof(*n->inbox));
		n->ninbox--;
		return true;
	}
	return false;
}

bool reg_resp_remove(reg_node *n, uint32_t from)
{
	for (size_t i = 0; i < n->nresp; i++) {
		if (n->resp[i].from != from)
			continue;
		memmove(&n->resp[i], &n->resp[i + 1], (n->nresp - i - 1) * sizeof(*n->resp));
		n->nresp--;
		return true;
	}
	return false;
}

static void inbox_remove(registry *r, reg_node *n, uint32_t from)
{
	if (reg_inbox_remove(n, from))
		st_inbox_del(r, n->id, from);
}

static int deliver_response(registry *r, reg_node *to, const reg_hsresp *p)
{
	reg_resp_remove(to, p->from);
	if (to->nresp >= REG_RESP_CAP) {
		st_resp_del(r, to->id, to->resp[0].from);
		memmove(&to->resp[0], &to->resp[1], (to->nresp - 1) * sizeof(*to->resp));
		to->nresp--;
	}
	reg_hsresp *g = realloc(to->resp, (to->nresp + 1) * sizeof(*g));
	if (!g)
		return -1;
	to->resp = g;
	to->resp[to->nresp++] = *p;
	st_resp_add(r, to->id, p);
	return 0;
}

json_object *h_respond_handshake(registry *r, json_object *req, const reg_ctx *ctx)
{
	bool accept = jw_get_bool(req, "accept");
	reg_node *n, *p;
	json_object *e, *resp;
	reg_hsresp rp;
	bool requested, paired;

	if ((e = signed_pair(r, req, "node_id", "peer_id", "respond", accept ? "true" : "false",
			     ctx, &n, &p)))
		return e;
	requested = rmap_get(&r->hsrec, pair_key(p->id, n->id), NULL);
	paired = reg_has_pair(r, n->id, p->id);
	if (accept && !requested && !paired)
		return reg_err(r, E_FORBIDDEN, "node %u never requested a handshake with %u", p->id, n->id);
	st_begin(r);
	if (accept && !paired && make_pair(r, n->id, p->id) < 0)
		goto oom;
	inbox_remove(r, n, p->id);
	if (requested || paired) {
		rp.from = n->id;
		rp.accept = accept;
		rp.ts = reg_now_s(ctx);
		if (deliver_response(r, p, &rp) < 0)
			goto oom;
	}
	forget_request(r, p->id, n->id);
	resp = reg_ok("respond_handshake");
	jadd_bool(resp, "accept", accept);
	jadd_int(resp, "peer_id", p->id);
	if (requested || paired) /* the requester's inbox got the response */
		return commit_and_notify(r, resp, p->id);
	return commit_or_fail(r, resp);
oom:
	st_rollback(r);
	return reg_err(r, E_INTERNAL, "out of memory");
}
