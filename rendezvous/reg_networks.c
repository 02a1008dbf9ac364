/* Networks (registry.md §5.6-5.7, §5.12, enabled here; §16 names and strings).
 *   create_network: signed by a live creator ("create_network:<node_id>:<name>",
 *     v2 fields node_id:name:join_rule); when the server has an admin token it
 *     is required as well. join_rule open|token|invite ("" = open; token needs a
 *     non-empty token). At most REG_NET_PER_CREATOR networks per creator.
 *   join_network / leave_network: the node's signature, or the admin token.
 *     open: anyone; token: constant-time token match; invite: a pending invite
 *     (from invite_to_network). The admin token bypasses the join rule.
 *   invite_to_network: by a member (signed) or the admin token; poll_invites
 *     lists pending invites; respond_invite(accept) joins.
 * Memberships survive reaping and deregistration (a restarted daemon keeps its
 * networks); only leave_network or an owner recovery removes them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jsonwire.h"
#include "rendezvous/reg_internal.h"

static json_object *commit_or_fail(registry *r, json_object *resp)
{
	if (st_commit(r) == 0)
		return resp;
	json_object_put(resp);
	return reg_store_fail(r);
}

/* ---- membership bookkeeping ---- */
int reg_node_add_net(reg_node *n, uint16_t net)
{
	uint16_t *g;

	if (net == 0 || reg_node_in_net(n, net))
		return 0;
	g = realloc(n->nets, (n->nnets + 1) * sizeof(*g));
	if (!g)
		return -1;
	n->nets = g;
	n->nets[n->nnets++] = net;
	return 0;
}

void reg_node_del_net(reg_node *n, uint16_t net)
{
	for (size_t i = 0; i < n->nnets; i++) {
		if (n->nets[i] == net) {
			n->nets[i] = n->nets[--n->nnets];
			return;
		}
	}
}

int reg_net_add_member(reg_net *nt, uint32_t id)
{
	if (nt->nmembers == nt->capmembers) {
		size_t cap = nt->capmembers ? nt->capmembers * 2 : 8;
		uint32_t *g = realloc(nt->members, cap * sizeof(*g));

		if (!g)
			return -1;
		nt->members = g;
		nt->capmembers = cap;
	}
	nt->members[nt->nmembers++] = id;
	return 0;
}

void reg_net_del_member(reg_net *nt, uint32_t id)
{
	if (!nt)
		return;
	for (size_t i = 0; i < nt->nmembers; i++) {
		if (nt->members[i] == id) {
			nt->members[i] = nt->members[--nt->nmembers];
			return;
		}
	}
}

reg_net *reg_net_new(registry *r, uint16_t id, const char *name, const char *rule)
{
	reg_net *nt = calloc(1, sizeof(*nt));

	if (!nt)
		return NULL;
	nt->id = id;
	snprintf(nt->name, sizeof(nt->name), "%s", name);
	snprintf(nt->join_rule, sizeof(nt->join_rule), "%s", rule && *rule ? rule : "open");
	if (rmap_put(&r->nets, id, (uintptr_t)nt) < 0 ||
	    rmap_put(&r->netnames, reg_hash_str(r, nt->name), id) < 0) {
		rmap_del(&r->nets, id);
		free(nt);
		return NULL;
	}
	return nt;
}

void reg_net_free(reg_net *nt)
{
	if (!nt)
		return;
	if (nt->token)
		sodium_memzero(nt->token, strlen(nt->token));
	free(nt->token);
	free(nt->members);
	free(nt);
}

static int join(registry *r, reg_net *nt, reg_node *n)
{
	if (reg_node_add_net(n, nt->id) < 0 || reg_net_add_member(nt, n->id) < 0)
		return -1;
	st_member(r, nt->id, n->id, true);
	return 0;
}

/* ---- listing ---- */
json_object *h_list_networks(registry *r, json_object *req, const reg_ctx *ctx)
{
	json_object *resp = reg_ok("list_networks"), *a = json_object_new_array();

	for (size_t i = 0; i < r->nets.cap; i++) {
		reg_net *nt;
		json_object *o;

		if (!r->nets.e[i].used)
			continue;
		nt = (reg_net *)(uintptr_t)r->nets.e[i].val;
		o = json_object_new_object();
		jadd_int(o, "id", nt->id);
		jadd_str(o, "name", nt->name);
		jadd_int(o, "members", nt->id == 0 ? (int64_t)r->live_count : (int64_t)nt->nmembers);
		jadd_str(o, "join_rule", nt->join_rule);
		json_object_array_add(a, o);
	}
	json_object_object_add(resp, "networks", a);
	return resp;
}

json_object *h_list_nodes(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint16_t id = jw_get_u16(req, "network_id");
	reg_net *nt;
	json_object *resp, *a;

	if (id == 0)
		return reg_err(r, E_FORBIDDEN, "listing backbone nodes is not permitted");
	if (!(nt = reg_net_get(r, id)))
		return reg_err(r, E_NOT_FOUND, "network %u does not exist", id);
	resp = reg_ok("list_nodes");
	a = json_object_new_array();
	for (size_t i = 0; i < nt->nmembers; i++) {
		reg_node *n = reg_live_node(r, nt->members[i]);
		json_object *o;
		char addr[32];

		if (!n)
			continue;
		o = json_object_new_object();
		jadd_int(o, "node_id", n->id);
		reg_fmt_addr(addr, id, n->id);
		jadd_str(o, "address", addr);
		if (n->hostname)
			jadd_str(o, "hostname", n->hostname);
		if (n->task_exec)
			jadd_bool(o, "task_exec", true);
		if (n->pub)
			jadd_str(o, "real_addr", n->real_addr);
		json_object_array_add(a, o);
	}
	json_object_object_add(resp, "nodes", a);
	return resp;
}

/* ---- create ---- */
static bool known_rule(const char *rule)
{
	return !strcmp(rule, "open") || !strcmp(rule, "token") || !strcmp(rule, "invite");
}

static json_object *create_checks(registry *r, json_object *req, const char *name, const char *rule)
{
	const char *why, *token = jw_get_str(req, "token");

	if (r->admin_token && !reg_admin_ok(r, req))
		return reg_err(r, E_FORBIDDEN, "network creation requires the admin token on this registry");
	if ((why = reg_validate_label(name, 63)))
		return reg_err(r, E_INVALID, "network name \"%.64s\" %s", name, why);
	if (!strcmp(name, "backbone"))
		return reg_err(r, E_INVALID, "network name \"backbone\" is reserved");
	if (!known_rule(rule))
		return reg_err(r, E_INVALID, "join_rule must be open, token or invite");
	if (!strcmp(rule, "token") && (!token || !*token))
		return reg_err(r, E_INVALID, "join_rule token needs a non-empty token");
	if (token && strlen(token) > 256)
		return reg_err(r, E_INVALID, "token longer than 256 bytes");
	return NULL;
}

json_object *h_create_network(registry *r, json_object *req, const reg_ctx *ctx)
{
	const char *name = jw_get_str(req, "name"), *rule_s = jw_get_str(req, "join_rule");
	const char *rule = rule_s && *rule_s ? rule_s : "open", *token = jw_get_str(req, "token");
	uint32_t id = jw_get_u32(req, "node_id");
	char *v1 = NULL, *fields = NULL;
	json_object *e, *resp;
	reg_node *n;
	reg_net *nt;

	if (!name)
		name = "";
	if ((e = create_checks(r, req, name, rule)))
		return e;
	if (!(n = reg_live_node(r, id)))
		return reg_err(r, E_NOT_FOUND, "node %u is not registered", id);
	if (asprintf(&v1, "create_network:%u:%s", id, name) < 0 ||
	    asprintf(&fields, "%u:%s:%s", id, name, rule_s ? rule_s : "") < 0) {
		free(v1);
		return reg_err(r, E_INTERNAL, "out of memory");
	}
	e = reg_check_sig(r, n, req, v1, fields, ctx);
	free(v1);
	free(fields);
	if (e)
		return e;
	if (reg_net_by_name(r, name))
		return reg_err(r, E_CONFLICT, "network \"%s\" already exists", name);
	if (r->next_net > 65535)
		return reg_err(r, E_LIMIT, "network ID space exhausted (max 65535 networks)");
	if (n->nets_created >= REG_NET_PER_CREATOR && !reg_admin_ok(r, req))
		return reg_err(r, E_LIMIT, "node %u already created %d networks", id, REG_NET_PER_CREATOR);
	if (!(nt = reg_net_new(r, (uint16_t)r->next_net, name, rule)))
		return reg_err(r, E_INTERNAL, "out of memory");
	nt->created = reg_now_s(ctx);
	nt->creator = id;
	if (token && *token)
		nt->token = strdup(token);
	r->next_net++;
	n->nets_created++;
	st_begin(r);
	st_net_created(r, nt->id);
	st_counters(r);
	st_net(r, nt);
	if (join(r, nt, n) < 0) {
		st_rollback(r);
		return reg_err(r, E_INTERNAL, "out of memory");
	}
	resp = reg_ok("create_network");
	jadd_int(resp, "network_id", nt->id);
	jadd_str(resp, "name", nt->name);
	return commit_or_fail(r, resp);
}

/* ---- join / leave ---- */
/* node live, network exists and is not the backbone, signer = node or admin. */
static json_object *member_op(registry *r, json_object *req, const char *kw, const reg_ctx *ctx,
			      reg_node **pn, reg_net **pnet, bool *admin)
{
	uint32_t id = jw_get_u32(req, "node_id");
	uint16_t net = jw_get_u16(req, "network_id");
	char v1[64], fields[32];

	if (!(*pn = reg_live_node(r, id)))
		return reg_err(r, E_NOT_FOUND, "node %u is not registered", id);
	if (net == 0)
		return reg_err(r, E_FORBIDDEN, "the backbone (network 0) cannot be joined or left");
	if (!(*pnet = reg_net_get(r, net)))
		return reg_err(r, E_NOT_FOUND, "network %u does not exist", net);
	*admin = reg_admin_ok(r, req);
	if (*admin)
		return NULL;
	snprintf(v1, sizeof(v1), "%s:%u:%u", kw, id, net);
	snprintf(fields, sizeof(fields), "%u:%u", id, net);
	return reg_check_sig(r, *pn, req, v1, fields, ctx);
}

static int invite_find(const reg_node *n, uint16_t net)
{
	for (size_t i = 0; i < n->ninv; i++)
		if (n->inv[i].net == net)
			return (int)i;
	return -1;
}

static void invite_drop(registry *r, reg_node *n, int i)
{
	st_invite(r, n->id, &n->inv[i], false);
	n->inv[i] = n->inv[--n->ninv];
}

static json_object *join_rule_check(registry *r, json_object *req, reg_net *nt, reg_node *n)
{
	const char *token = jw_get_str(req, "token");

	if (!strcmp(nt->join_rule, "open"))
		return NULL;
	if (!strcmp(nt->join_rule, "token")) {
		if (nt->token && token && reg_secret_eq(nt->token, token))
			return NULL;
		return reg_err(r, E_FORBIDDEN, "wrong or missing token for network %u", nt->id);
	}
	if (!strcmp(nt->join_rule, "invite")) {
		if (invite_find(n, nt->id) >= 0)
			return NULL;
		return reg_err(r, E_FORBIDDEN, "network %u is invite-only and node %u has no invite", nt->id, n->id);
	}
	return reg_err(r, E_FORBIDDEN, "network %u has unknown join rule \"%s\"", nt->id, nt->join_rule);
}

static json_object *joined_resp(const char *type, reg_net *nt, reg_node *n)
{
	json_object *resp = reg_ok(type);
	char addr[32];

	jadd_int(resp, "network_id", nt->id);
	reg_fmt_addr(addr, nt->id, n->id);
	jadd_str(resp, "address", addr);
	return resp;
}

json_object *h_join_network(registry *r, json_object *req, const reg_ctx *ctx)
{
	reg_node *n;
	reg_net *nt;
	bool admin;
	json_object *e;
	int iv;

	if ((e = member_op(r, req, "join_network", ctx, &n, &nt, &admin)))
		return e;
	if (reg_node_in_net(n, nt->id))
		return reg_err(r, E_CONFLICT, "node %u is already a member of network %u", n->id, nt->id);
	if (!admin && (e = join_rule_check(r, req, nt, n)))
		return e;
	st_begin(r);
	if ((iv = invite_find(n, nt->id)) >= 0)
		invite_drop(r, n, iv);
	if (join(r, nt, n) < 0) {
		st_rollback(r);
		return reg_err(r, E_INTERNAL, "out of memory");
	}
	return commit_or_fail(r, joined_resp("join_network", nt, n));
}

json_object *h_leave_network(registry *r, json_object *req, const reg_ctx *ctx)
{
	reg_node *n;
	reg_net *nt;
	bool admin;
	json_object *e, *resp;

	if ((e = member_op(r, req, "leave_network", ctx, &n, &nt, &admin)))
		return e;
	if (!reg_node_in_net(n, nt->id))
		return reg_err(r, E_NOT_FOUND, "node %u is not a member of network %u", n->id, nt->id);
	st_begin(r);
	reg_node_del_net(n, nt->id);
	reg_net_del_member(nt, n->id);
	st_member(r, nt->id, n->id, false);
	resp = reg_ok("leave_network");
	jadd_int(resp, "network_id", nt->id);
	return commit_or_fail(r, resp);
}

/* ---- invites ---- */
json_object *h_invite(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint32_t iid = jw_get_u32(req, "inviter_id"), tid = jw_get_u32(req, "target_node_id");
	uint16_t net = jw_get_u16(req, "network_id");
	reg_node *inv = reg_live_node(r, iid), *t = reg_live_node(r, tid);
	reg_net *nt = reg_net_get(r, net);
	bool admin = reg_admin_ok(r, req);
	char v1[80], fields[64];
	reg_invite iv;
	json_object *e, *resp;
	int i;

	if (!inv || !t)
		return reg_err(r, E_NOT_FOUND, "node %u is not registered", inv ? tid : iid);
	if (net == 0 || !nt)
		return reg_err(r, net ? E_NOT_FOUND : E_FORBIDDEN, "network %u cannot take invites", net);
	snprintf(v1, sizeof(v1), "invite:%u:%u:%u", iid, net, tid);
	snprintf(fields, sizeof(fields), "%u:%u:%u", iid, net, tid);
	if (!admin && (e = reg_check_sig(r, inv, req, v1, fields, ctx)))
		return e;
	if (!admin && !reg_node_in_net(inv, net))
		return reg_err(r, E_FORBIDDEN, "inviter %u is not a member of network %u", iid, net);
	if (reg_node_in_net(t, net))
		return reg_err(r, E_CONFLICT, "node %u is already a member of network %u", tid, net);
	i = invite_find(t, net);
	if (i < 0 && t->ninv >= REG_INVITE_CAP)
		return reg_err(r, E_LIMIT, "node %u has too many pending invites", tid);
	iv.net = net;
	iv.inviter = iid;
	iv.ts = reg_now_s(ctx);
	if (i < 0) {
		reg_invite *g = realloc(t->inv, (t->ninv + 1) * sizeof(*g));

		if (!g)
			return reg_err(r, E_INTERNAL, "out of memory");
		t->inv = g;
		i = (int)t->ninv++;
	}
	t->inv[i] = iv;
	st_begin(r);
	st_invite(r, tid, &iv, true);
	resp = reg_ok("invite_to_network");
	jadd_int(resp, "network_id", net);
	jadd_int(resp, "target_node_id", tid);
	return commit_or_fail(r, resp);
}

json_object *h_poll_invites(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint32_t id = jw_get_u32(req, "node_id");
	reg_node *n = reg_live_node(r, id);
	char v1[48], f[16];
	json_object *e, *resp, *a;

	if (!n)
		return reg_err(r, E_NOT_FOUND, "node %u is not registered", id);
	snprintf(v1, sizeof(v1), "poll_invites:%u", id);
	snprintf(f, sizeof(f), "%u", id);
	if ((e = reg_check_sig(r, n, req, v1, f, ctx)))
		return e;
	resp = reg_ok("poll_invites");
	a = json_object_new_array();
	for (size_t i = 0; i < n->ninv; i++) {
		json_object *o = json_object_new_object();
		reg_net *nt = reg_net_get(r, n->inv[i].net);

		jadd_int(o, "network_id", n->inv[i].net);
		jadd_str(o, "name", nt ? nt->name : "");
		jadd_int(o, "inviter_id", n->inv[i].inviter);
		jadd_int(o, "timestamp", n->inv[i].ts);
		json_object_array_add(a, o);
	}
	json_object_object_add(resp, "invites", a);
	return resp;
}

json_object *h_respond_invite(registry *r, json_object *req, const reg_ctx *ctx)
{
	uint32_t id = jw_get_u32(req, "node_id");
	uint16_t net = jw_get_u16(req, "network_id");
	bool accept = jw_get_bool(req, "accept");
	reg_node *n = reg_live_node(r, id);
	reg_net *nt = reg_net_get(r, net);
	char v1[64], f[48];
	json_object *e, *resp;
	int i;

	if (!n)
		return reg_err(r, E_NOT_FOUND, "node %u is not registered", id);
	snprintf(v1, sizeof(v1), "respond_invite:%u:%u", id, net);
	snprintf(f, sizeof(f), "%u:%u:%s", id, net, accept ? "true" : "false");
	if ((e = reg_check_sig(r, n, req, v1, f, ctx)))
		return e;
	if ((i = invite_find(n, net)) < 0 || !nt)
		return reg_err(r, E_NOT_FOUND, "node %u has no invite to network %u", id, net);
	st_begin(r);
	invite_drop(r, n, i);
	if (accept && !reg_node_in_net(n, net) && join(r, nt, n) < 0) {
		st_rollback(r);
		return reg_err(r, E_INTERNAL, "out of memory");
	}
	resp = accept ? joined_resp("respond_invite", nt, n) : reg_ok("respond_invite");
	if (!accept)
		jadd_int(resp, "network_id", net);
	jadd_bool(resp, "accept", accept);
	return commit_or_fail(r, resp);
}
