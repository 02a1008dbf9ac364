/* State set-up/tear-down and the replication snapshot in the registry.md §7
 * schema. Unlike the reference, snapshots are never lossy: tags, polo_score,
 * task_exec and pub_key_idx are always written and always applied, and our
 * extra state travels in extra keys a reference standby ignores:
 *   "owner_idx"     {owner: node_id}   (includes owners of reaped nodes)
 *   "trust_halves"  ["<from>:<to>"]    one-sided trust reports
 *   "handshake_requests" ["<from>:<to>:<unix s>"] requests a respond may accept
 *   "invites"       {node_id: [{network_id, inviter_id, timestamp}]}
 *   network objects carry "creator"; node objects "relay_only", "sig_v2", "owner_proven" (omitted if false). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/crypto.h"
#include "lib/jsonwire.h"
#include "rendezvous/reg_internal.h"

static void free_ptr_map(rmap *m, int kind)
{
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->e[i].used)
			continue;
		if (kind == 0)
			reg_node_free((reg_node *)(uintptr_t)m->e[i].val);
		else
			reg_net_free((reg_net *)(uintptr_t)m->e[i].val);
	}
	rmap_free(m);
}

void reg_state_free(registry *r)
{
	free_ptr_map(&r->nodes, 0);
	free_ptr_map(&r->nets, 1);
	rmap_free(&r->keyidx);
	rmap_free(&r->hostidx);
	rmap_free(&r->owneridx);
	rmap_free(&r->pairs);
	rmap_free(&r->halves);
	rmap_free(&r->hsrec);
	rmap_free(&r->netnames);
	r->live_count = 0;
}

int reg_state_init(registry *r)
{
	r->next_node = 1;
	r->next_net = 1;
	r->live_count = 0;
	return reg_net_new(r, 0, "backbone", "open") ? 0 : -ENOMEM;
}

/* ---- time text ---- */
static void fmt_time(char out[40], int64_t s)
{
	struct tm tm;
	time_t t = (time_t)s;

	gmtime_r(&t, &tm);
	strftime(out, 40, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* RFC 3339 ("2025-01-02T15:04:05[.frac](Z|+hh:mm)") to unix seconds; -1 if bad. */
static int64_t parse_time(const char *s)
{
	struct tm tm;
	const char *p;
	int64_t t;

	if (!s)
		return -1;
	memset(&tm, 0, sizeof(tm));
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -1;
	t = (int64_t)timegm(&tm);
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	if (*p == 'Z' || *p == 'z')
		return p[1] ? -1 : t;
	if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;

		return *p == '+' ? t - off : t + off;
	}
	return -1;
}

/* ---- snapshot out ---- */
static json_object *node_obj(const reg_node *n)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();
	char ts[40];

	jadd_int(o, "id", n->id);
	if (n->owner)
		jadd_str(o, "owner", n->owner);
	jadd_str(o, "public_key", n->pk_b64);
	if (n->real_addr[0])
		jadd_str(o, "real_addr", n->real_addr);
	json_object_array_add(a, json_object_new_int(0));
	for (size_t i = 0; i < n->nnets; i++)
		json_object_array_add(a, json_object_new_int(n->nets[i]));
	json_object_object_add(o, "networks", a);
	if (n->pub)
		jadd_bool(o, "public", true);
	fmt_time(ts, (int64_t)(n->last_seen_ms / 1000));
	jadd_str(o, "last_seen", ts);
	if (n->hostname)
		jadd_str(o, "hostname", n->hostname);
	if (n->ntags) {
		json_object *t = json_object_new_array();

		for (size_t i = 0; i < n->ntags; i++)
			json_object_array_add(t, json_object_new_string(n->tags[i]));
		json_object_object_add(o, "tags", t);
	}
	if (n->polo)
		jadd_int(o, "polo_score", n->polo);
	if (n->task_exec)
		jadd_bool(o, "task_exec", true);
	if (n->relay_only)
		jadd_bool(o, "relay_only", true);
	if (n->sig_v2)
		jadd_bool(o, "sig_v2", true);
	if (n->owner_proven)
		jadd_bool(o, "owner_proven", true);
	return o;
}

static json_object *net_obj(const registry *r, const reg_net *nt)
{
	json_object *o = json_object_new_object(), *m = json_object_new_array();
	char ts[40];

	jadd_int(o, "id", nt->id);
	jadd_str(o, "name", nt->name);
	jadd_str(o, "join_rule", nt->join_rule);
	if (nt->token)
		jadd_str(o, "token", nt->token);
	if (nt->id == 0) {
		for (size_t i = 0; i < r->nodes.cap; i++) {
			reg_node *n = r->nodes.e[i].used ? (reg_node *)(uintptr_t)r->nodes.e[i].val : NULL;

			if (n && n->live)
				json_object_array_add(m, json_object_new_int64(n->id));
		}
	} else {
		for (size_t i = 0; i < nt->nmembers; i++)
			json_object_array_add(m, json_object_new_int64(nt->members[i]));
	}
	json_object_object_add(o, "members", m);
	fmt_time(ts, nt->created);
	jadd_str(o, "created", ts);
	if (nt->creator)
		jadd_int(o, "creator", nt->creator);
	return o;
}

static void add_node_extras(json_object *snap, const reg_node *n, json_object *pki,
			    json_object *inbox, json_object *resps, json_object *invites)
{
	char key[16], ts[40];

	snprintf(key, sizeof(key), "%u", n->id);
	jadd_int(pki, n->pk_b64, n->id);
	if (n->ninbox) {
		json_object *a = json_object_new_array();

		for (size_t i = 0; i < n->ninbox; i++) {
			json_object *o = json_object_new_object();

			jadd_int(o, "from_node_id", n->inbox[i].from);
			jadd_str(o, "justification", n->inbox[i].justification);
			fmt_time(ts, n->inbox[i].ts);
			jadd_str(o, "timestamp", ts);
			json_object_array_add(a, o);
		}
		json_object_object_add(inbox, key, a);
	}
	if (n->nresp) {
		json_object *a = json_object_new_array();

		for (size_t i = 0; i < n->nresp; i++) {
			json_object *o = json_object_new_object();

			jadd_int(o, "from_node_id", n->resp[i].from);
			jadd_bool(o, "accept", n->resp[i].accept);
			fmt_time(ts, n->resp[i].ts);
			jadd_str(o, "timestamp", ts);
			json_object_array_add(a, o);
		}
		json_object_object_add(resps, key, a);
	}
	if (n->ninv) {
		json_object *a = json_object_new_array();

		for (size_t i = 0; i < n->ninv; i++) {
			json_object *o = json_object_new_object();

			jadd_int(o, "network_id", n->inv[i].net);
			jadd_int(o, "inviter_id", n->inv[i].inviter);
			jadd_int(o, "timestamp", n->inv[i].ts);
			json_object_array_add(a, o);
		}
		json_object_object_add(invites, key, a);
	}
	(void)snap;
}

static json_object *pair_list(const rmap *m, bool with_ts)
{
	json_object *a = json_object_new_array();
	char buf[48];

	for (size_t i = 0; i < m->cap; i++) {
		if (!m->e[i].used)
			continue;
		if (with_ts)
			snprintf(buf, sizeof(buf), "%u:%u:%llu", (unsigned)(m->e[i].key >> 32),
				 (unsigned)m->e[i].key, (unsigned long long)m->e[i].val);
		else
			snprintf(buf, sizeof(buf), "%u:%u", (unsigned)(m->e[i].key >> 32),
				 (unsigned)m->e[i].key);
		json_object_array_add(a, json_object_new_string(buf));
	}
	return a;
}

static void add_nonempty(json_object *snap, const char *k, json_object *v)
{
	bool empty = json_object_is_type(v, json_type_array) ? json_object_array_length(v) == 0
							    : json_object_object_length(v) == 0;

	if (empty)
		json_object_put(v);
	else
		json_object_object_add(snap, k, v);
}

json_object *reg_snapshot(registry *r)
{
	json_object *snap = json_object_new_object(), *nodes = json_object_new_object();
	json_object *nets = json_object_new_object(), *pki = json_object_new_object();
	json_object *inbox = json_object_new_object(), *resps = json_object_new_object();
	json_object *invites = json_object_new_object(), *owners = json_object_new_object();
	char key[16];

	jadd_int(snap, "next_node", r->next_node);
	jadd_int(snap, "next_net", r->next_net > 65535 ? 0 : r->next_net);
	for (size_t i = 0; i < r->nodes.cap; i++) {
		reg_node *n;

		if (!r->nodes.e[i].used)
			continue;
		n = (reg_node *)(uintptr_t)r->nodes.e[i].val;
		snprintf(key, sizeof(key), "%u", n->id);
		if (n->live)
			json_object_object_add(nodes, key, node_obj(n));
		if (n->owner && reg_node_by_owner(r, n->owner) == n)
			jadd_int(owners, n->owner, n->id);
		add_node_extras(snap, n, pki, inbox, resps, invites);
	}
	for (size_t i = 0; i < r->nets.cap; i++) {
		reg_net *nt;

		if (!r->nets.e[i].used)
			continue;
		nt = (reg_net *)(uintptr_t)r->nets.e[i].val;
		snprintf(key, sizeof(key), "%u", nt->id);
		json_object_object_add(nets, key, net_obj(r, nt));
	}
	json_object_object_add(snap, "nodes", nodes);
	json_object_object_add(snap, "networks", nets);
	add_nonempty(snap, "trust_pairs", pair_list(&r->pairs, false));
	add_nonempty(snap, "pub_key_idx", pki);
	add_nonempty(snap, "handshake_inbox", inbox);
	add_nonempty(snap, "handshake_responses", resps);
	add_nonempty(snap, "owner_idx", owners);
	add_nonempty(snap, "trust_halves", pair_list(&r->halves, false));
	add_nonempty(snap, "handshake_requests", pair_list(&r->hsrec, true));
	add_nonempty(snap, "invites", invites);
	return snap;
}

/* ---- snapshot in ---- */
static uint32_t num_u32(json_object *v)
{
	double d;

	if (!v || !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
		return 0;
	d = json_object_get_double(v);
	return d >= 0 && d <= 4294967295.0 ? (uint32_t)d : 0;
}

static reg_node *apply_key(registry *r, uint32_t id, const char *b64)
{
	uint8_t pk[32];
	reg_node *n;

	if (!id || !b64 || pilot_b64_decode(b64, strlen(b64), pk, 32) != 32)
		return NULL;
	if (reg_node_by_key(r, pk))
		return NULL; /* a key binds one node */
	n = reg_node_get(r, id);
	if (!n && !(n = reg_node_new(r, id)))
		return NULL;
	if (reg_node_set_key(r, n, pk) < 0)
		return NULL;
	return n;
}

static void apply_node_attrs(registry *r, reg_node *n, json_object *o, uint64_t now_ms)
{
	const char *s;
	json_object *a;
	int64_t ls;

	reg_node_set_owner(r, n, jw_get_str(o, "owner"));
	s = jw_get_str(o, "real_addr");
	snprintf(n->real_addr, sizeof(n->real_addr), "%s", s ? s : "");
	n->pub = jw_get_bool(o, "public");
	n->task_exec = jw_get_bool(o, "task_exec");
	n->relay_only = jw_get_bool(o, "relay_only");
	n->sig_v2 = jw_get_bool(o, "sig_v2");
	n->owner_proven = n->owner && jw_get_bool(o, "owner_proven");
	n->polo = jw_get_i64(o, "polo_score");
	ls = parse_time(jw_get_str(o, "last_seen"));
	n->last_seen_ms = ls < 0 ? now_ms : (uint64_t)ls * 1000;
	s = jw_get_str(o, "hostname");
	if (s && *s && !reg_validate_hostname(s) && !reg_node_by_hostname(r, s))
		reg_node_set_hostname(r, n, s);
	a = json_object_object_get(o, "tags");
	if (a && json_object_is_type(a, json_type_array)) {
		size_t len = json_object_array_length(a), k = 0;
		char **v = calloc(len + 1, sizeof(*v));

		for (size_t i = 0; v && i < len && k < REG_MAX_TAGS; i++) {
			json_object *t = json_object_array_get_idx(a, i);

			if (json_object_is_type(t, json_type_string) &&
			    !reg_validate_label(json_object_get_string(t), 32))
				v[k++] = strdup(json_object_get_string(t));
		}
		if (v && k)
			reg_tags_set(n, v, k);
		else
			free(v);
	}
	if (!n->live) {
		n->live = true;
		r->live_count++;
	}
}

static void apply_nodes(registry *r, json_object *snap, uint64_t now_ms)
{
	json_object *nodes = json_object_object_get(snap, "nodes");
	json_object *pki = json_object_object_get(snap, "pub_key_idx");

	if (nodes && json_object_is_type(nodes, json_type_object)) {
		json_object_object_foreach(nodes, k, o) {
			uint32_t id = num_u32(json_object_object_get(o, "id"));
			reg_node *n;

			if (!json_object_is_type(o, json_type_object))
				continue;
			if (!id)
				id = (uint32_t)strtoul(k, NULL, 10);
			if ((n = apply_key(r, id, jw_get_str(o, "public_key"))))
				apply_node_attrs(r, n, o, now_ms);
		}
	}
	if (pki && json_object_is_type(pki, json_type_object)) {
		json_object_object_foreach(pki, b64, v) {
			uint32_t id = num_u32(v);

			if (id && !reg_node_get(r, id))
				apply_key(r, id, b64);
		}
	}
}

static void apply_networks(registry *r, json_object *snap)
{
	json_object *nets = json_object_object_get(snap, "networks");

	if (!nets || !json_object_is_type(nets, json_type_object))
		return;
	json_object_object_foreach(nets, k, o) {
		uint32_t id = num_u32(json_object_object_get(o, "id"));
		const char *name = jw_get_str(o, "name"), *tok;
		json_object *m;
		reg_net *nt;

		(void)k;
		if (!json_object_is_type(o, json_type_object) || id > 65535 || !name)
			continue;
		if (id == 0) {
			nt = reg_net_get(r, 0);
		} else {
			if (reg_net_get(r, (uint16_t)id) || reg_validate_label(name, 63) || reg_net_by_name(r, name))
				continue;
			if (!(nt = reg_net_new(r, (uint16_t)id, name, jw_get_str(o, "join_rule"))))
				continue;
		}
		tok = jw_get_str(o, "token");
		if (id && tok && *tok)
			nt->token = strdup(tok);
		nt->created = parse_time(jw_get_str(o, "created"));
		if (nt->created < 0)
			nt->created = 0;
		nt->creator = num_u32(json_object_object_get(o, "creator"));
		m = json_object_object_get(o, "members");
		if (id == 0 || !m || !json_object_is_type(m, json_type_array))
			continue;
		for (size_t i = 0; i < json_object_array_length(m); i++) {
			reg_node *n = reg_node_get(r, num_u32(json_object_array_get_idx(m, i)));

			if (n && !reg_node_in_net(n, nt->id) && reg_node_add_net(n, nt->id) == 0)
				reg_net_add_member(nt, n->id);
		}
		if (nt->creator && reg_node_get(r, nt->creator))
			reg_node_get(r, nt->creator)->nets_created++;
	}
}

static void apply_pairs(registry *r, json_object *a, rmap *m, bool ordered, bool with_ts)
{
	if (!a || !json_object_is_type(a, json_type_array))
		return;
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		const char *s = json_object_get_string(json_object_array_get_idx(a, i));
		unsigned long x, y;
		unsigned long long ts = 0;
		char *end;

		if (!s)
			continue;
		x = strtoul(s, &end, 10);
		if (*end != ':')
			continue;
		y = strtoul(end + 1, &end, 10);
		if (with_ts && *end == ':')
			ts = strtoull(end + 1, &end, 10);
		if (*end || x == y || x > 0xFFFFFFFFul || y > 0xFFFFFFFFul)
			continue;
		rmap_put(m, ordered ? pair_key((uint32_t)x, (uint32_t)y) : upair_key((uint32_t)x, (uint32_t)y),
			 with_ts ? ts : 1);
		if (with_ts && reg_node_get(r, (uint32_t)y))
			reg_node_get(r, (uint32_t)y)->hsrec_in++;
	}
}

static void apply_inboxes(registry *r, json_object *snap)
{
	json_object *in = json_object_object_get(snap, "handshake_inbox");
	json_object *rs = json_object_object_get(snap, "handshake_responses");
	json_object *iv = json_object_object_get(snap, "invites");

	if (in && json_object_is_type(in, json_type_object)) {
		json_object_object_foreach(in, k, a) {
			reg_node *n = reg_node_get(r, (uint32_t)strtoul(k, NULL, 10));

			for (size_t i = 0; n && json_object_is_type(a, json_type_array) &&
					   i < json_object_array_length(a) && n->ninbox < REG_INBOX_CAP; i++) {
				json_object *o = json_object_array_get_idx(a, i);
				const char *j = jw_get_str(o, "justification");
				reg_hsreq *g = realloc(n->inbox, (n->ninbox + 1) * sizeof(*g));

				if (!g)
					break;
				n->inbox = g;
				g[n->ninbox].from = jw_get_u32(o, "from_node_id");
				g[n->ninbox].ts = parse_time(jw_get_str(o, "timestamp"));
				g[n->ninbox].justification = strdup(j ? j : "");
				if (g[n->ninbox].justification)
					n->ninbox++;
			}
		}
	}
	if (rs && json_object_is_type(rs, json_type_object)) {
		json_object_object_foreach(rs, k, a) {
			reg_node *n = reg_node_get(r, (uint32_t)strtoul(k, NULL, 10));

			for (size_t i = 0; n && json_object_is_type(a, json_type_array) &&
					   i < json_object_array_length(a) && n->nresp < REG_RESP_CAP; i++) {
				json_object *o = json_object_array_get_idx(a, i);
				reg_hsresp *g = realloc(n->resp, (n->nresp + 1) * sizeof(*g));

				if (!g)
					break;
				n->resp = g;
				g[n->nresp].from = jw_get_u32(o, "from_node_id");
				g[n->nresp].accept = jw_get_bool(o, "accept");
				g[n->nresp].ts = parse_time(jw_get_str(o, "timestamp"));
				n->nresp++;
			}
		}
	}
	if (iv && json_object_is_type(iv, json_type_object)) {
		json_object_object_foreach(iv, k, a) {
			reg_node *n = reg_node_get(r, (uint32_t)strtoul(k, NULL, 10));

			for (size_t i = 0; n && json_object_is_type(a, json_type_array) &&
					   i < json_object_array_length(a) && n->ninv < REG_INVITE_CAP; i++) {
				json_object *o = json_object_array_get_idx(a, i);
				reg_invite *g;
				uint16_t net = jw_get_u16(o, "network_id");

				if (!net || !reg_net_get(r, net))
					continue;
				if (!(g = realloc(n->inv, (n->ninv + 1) * sizeof(*g))))
					break;
				n->inv = g;
				g[n->ninv].net = net;
				g[n->ninv].inviter = jw_get_u32(o, "inviter_id");
				g[n->ninv].ts = jw_get_i64(o, "timestamp");
				n->ninv++;
			}
		}
	}
}

static void apply_owners(registry *r, json_object *snap)
{
	json_object *o = json_object_object_get(snap, "owner_idx");

	if (!o || !json_object_is_type(o, json_type_object))
		return;
	json_object_object_foreach(o, owner, v) {
		reg_node *n = reg_node_get(r, num_u32(v));

		if (!n || !*owner || strlen(owner) > REG_OWNER_MAX)
			continue;
		if (!n->owner)
			reg_node_set_owner(r, n, owner);
		else if (!strcmp(n->owner, owner)) /* records sharing an owner: the primary's pick */
			rmap_put(&r->owneridx, reg_hash_str(r, owner), n->id);
	}
}

/* Move the state maps of src into dst (dst's must have been freed). */
static void state_move(registry *dst, registry *src)
{
	dst->nodes = src->nodes;
	dst->keyidx = src->keyidx;
	dst->hostidx = src->hostidx;
	dst->owneridx = src->owneridx;
	dst->pairs = src->pairs;
	dst->halves = src->halves;
	dst->hsrec = src->hsrec;
	dst->nets = src->nets;
	dst->netnames = src->netnames;
	dst->next_node = src->next_node;
	dst->next_net = src->next_net;
	dst->live_count = src->live_count;
}

int reg_apply_snapshot(registry *r, json_object *snap)
{
	registry *t;
	struct timespec ts;
	uint64_t now_ms;
	json_object *nn = json_object_object_get(snap, "next_node");
	json_object *nx = json_object_object_get(snap, "next_net");

	if (!r || !snap || !json_object_is_type(snap, json_type_object))
		return -EINVAL;
	clock_gettime(CLOCK_REALTIME, &ts);
	now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	memcpy(t->hkey, r->hkey, sizeof(t->hkey));
	t->cfg = r->cfg;
	if (reg_state_init(t) < 0) {
		reg_state_free(t);
		free(t);
		return -ENOMEM;
	}
	apply_nodes(t, snap, now_ms);
	apply_networks(t, snap);
	apply_pairs(t, json_object_object_get(snap, "trust_pairs"), &t->pairs, false, false);
	apply_pairs(t, json_object_object_get(snap, "trust_halves"), &t->halves, true, false);
	apply_pairs(t, json_object_object_get(snap, "handshake_requests"), &t->hsrec, true, true);
	apply_inboxes(t, snap);
	apply_owners(t, snap);
	t->next_node = num_u32(nn);
	t->next_net = nx ? num_u32(nx) : 1;
	if (t->next_net == 0 || t->next_net > 65535)
		t->next_net = 65536;
	for (size_t i = 0; i < t->nodes.cap; i++)
		if (t->nodes.e[i].used && t->nodes.e[i].key >= t->next_node)
			t->next_node = (uint32_t)t->nodes.e[i].key + 1;
	if (t->next_node == 0)
		t->next_node = 1;
	for (size_t i = 0; i < t->nets.cap; i++)
		if (t->nets.e[i].used && t->nets.e[i].key >= t->next_net && t->next_net <= 65535)
			t->next_net = (uint32_t)t->nets.e[i].key + 1;
	reg_state_free(r);
	state_move(r, t);
	free(t);
	r->generation++;
	return st_save_all(r);
}
