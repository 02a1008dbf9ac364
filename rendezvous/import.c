/* pilot-rendezvous import-json: a reference registry.json snapshot (registry.md §7:
 * next_node, next_net, nodes, networks, trust_pairs, pub_key_idx, handshake_inbox,
 * handshake_responses) into the store, so an operator of the reference can move over.
 *
 * Strict where the standby path (reg_apply_snapshot) is tolerant: every entry is
 * checked first and the first bad one is named with its place in the file; nothing is
 * written unless the whole file is good. The store's registry state is then replaced
 * in ONE store transaction (st_save_all: wipe + every row), so a crash leaves the old
 * state or the new one. Importing the same file again changes nothing (the store
 * already holds exactly its nodes and networks); a store holding anything else is
 * refused unless -replace. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "lib/crypto.h"
#include "lib/fileutil.h"
#include "lib/jsonwire.h"
#include "rendezvous/import.h"
#include "rendezvous/reg_internal.h"

#define IMPORT_MAX_BYTES (512u << 20) /* the reference keeps the whole file in memory too */

static int bad(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* An integer JSON number in [min, max]. */
static bool int_in(json_object *v, int64_t min, int64_t max, int64_t *out)
{
	int64_t x;

	if (!v || !json_object_is_type(v, json_type_int))
		return false;
	errno = 0;
	x = json_object_get_int64(v);
	if (errno || x < min || x > max)
		return false;
	if (out)
		*out = x;
	return true;
}

/* A decimal map key with no sign, no leading zero, in [min, max]. */
static bool key_num(const char *k, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	unsigned long long x;

	if (!k[0] || k[0] < '0' || k[0] > '9' || (k[0] == '0' && k[1]))
		return false;
	errno = 0;
	x = strtoull(k, &end, 10);
	if (errno || *end || x < (unsigned long long)min || x > (unsigned long long)max)
		return false;
	*out = (int64_t)x;
	return true;
}

static bool is_type_or_absent(json_object *v, json_type t)
{
	return !v || json_object_is_type(v, t) || json_object_is_type(v, json_type_null);
}

static bool b64_key(const char *s, uint8_t pk[32])
{
	return s && pilot_b64_decode(s, strlen(s), pk, 32) == 32;
}

static int check_node(const char *k, json_object *o, json_object *seen_keys, json_object *seen_hosts,
		      char *err, size_t errlen)
{
	json_object *v;
	const char *s;
	uint8_t pk[32];
	int64_t id, x;

	if (!json_object_is_type(o, json_type_object))
		return bad(err, errlen, "nodes[\"%s\"]: not an object", k);
	if (!key_num(k, 1, 0xFFFFFFFEll, &id))
		return bad(err, errlen, "nodes[\"%s\"]: the key is not a node ID (1..4294967294)", k);
	if (!int_in(json_object_object_get(o, "id"), id, id, NULL))
		return bad(err, errlen, "nodes[\"%s\"].id: missing or not %s", k, k);
	s = jw_get_str(o, "public_key");
	if (!b64_key(s, pk))
		return bad(err, errlen, "nodes[\"%s\"].public_key: missing or not base64 of 32 bytes", k);
	if (json_object_object_get_ex(seen_keys, s, NULL))
		return bad(err, errlen, "nodes[\"%s\"].public_key: also the key of another node", k);
	json_object_object_add(seen_keys, s, json_object_new_int64(id));
	s = jw_get_str(o, "hostname");
	if (!is_type_or_absent(json_object_object_get(o, "hostname"), json_type_string))
		return bad(err, errlen, "nodes[\"%s\"].hostname: not a string", k);
	if (s && *s) {
		if (reg_validate_hostname(s))
			return bad(err, errlen, "nodes[\"%s\"].hostname \"%s\": %s", k, s,
				   reg_validate_hostname(s));
		if (json_object_object_get_ex(seen_hosts, s, NULL))
			return bad(err, errlen, "nodes[\"%s\"].hostname \"%s\": also another node's", k, s);
		json_object_object_add(seen_hosts, s, NULL);
	}
	if (!is_type_or_absent(json_object_object_get(o, "owner"), json_type_string) ||
	    !is_type_or_absent(json_object_object_get(o, "real_addr"), json_type_string) ||
	    !is_type_or_absent(json_object_object_get(o, "last_seen"), json_type_string))
		return bad(err, errlen, "nodes[\"%s\"]: owner, real_addr and last_seen must be strings", k);
	if ((v = json_object_object_get(o, "polo_score")) && !int_in(v, INT32_MIN, INT32_MAX, NULL))
		return bad(err, errlen, "nodes[\"%s\"].polo_score: not an integer", k);
	v = json_object_object_get(o, "tags");
	if (!is_type_or_absent(v, json_type_array))
		return bad(err, errlen, "nodes[\"%s\"].tags: not an array", k);
	for (size_t i = 0; v && json_object_is_type(v, json_type_array) && i < json_object_array_length(v);
	     i++) {
		json_object *t = json_object_array_get_idx(v, i);

		if (!json_object_is_type(t, json_type_string) ||
		    reg_validate_label(json_object_get_string(t), 32))
			return bad(err, errlen, "nodes[\"%s\"].tags[%zu]: not a valid tag", k, i);
	}
	v = json_object_object_get(o, "networks");
	if (!is_type_or_absent(v, json_type_array))
		return bad(err, errlen, "nodes[\"%s\"].networks: not an array", k);
	for (size_t i = 0; v && json_object_is_type(v, json_type_array) && i < json_object_array_length(v);
	     i++)
		if (!int_in(json_object_array_get_idx(v, i), 0, 65535, &x))
			return bad(err, errlen, "nodes[\"%s\"].networks[%zu]: not a network ID", k, i);
	return 0;
}

static int check_network(const char *k, json_object *o, json_object *nodes, json_object *seen_names,
			 char *err, size_t errlen)
{
	json_object *m;
	const char *name, *rule;
	int64_t id, x;
	char key[16];

	if (!json_object_is_type(o, json_type_object))
		return bad(err, errlen, "networks[\"%s\"]: not an object", k);
	if (!key_num(k, 0, 65535, &id))
		return bad(err, errlen, "networks[\"%s\"]: the key is not a network ID (0..65535)", k);
	if (!int_in(json_object_object_get(o, "id"), id, id, NULL))
		return bad(err, errlen, "networks[\"%s\"].id: missing or not %s", k, k);
	name = jw_get_str(o, "name");
	if (!name || (id && reg_validate_label(name, 63)))
		return bad(err, errlen, "networks[\"%s\"].name: missing or not a valid network name", k);
	if (id && json_object_object_get_ex(seen_names, name, NULL))
		return bad(err, errlen, "networks[\"%s\"].name \"%s\": also another network's", k, name);
	json_object_object_add(seen_names, name, NULL);
	rule = jw_get_str(o, "join_rule");
	if (!is_type_or_absent(json_object_object_get(o, "join_rule"), json_type_string) ||
	    !is_type_or_absent(json_object_object_get(o, "token"), json_type_string) ||
	    !is_type_or_absent(json_object_object_get(o, "created"), json_type_string))
		return bad(err, errlen, "networks[\"%s\"]: join_rule, token and created must be strings", k);
	(void)rule;
	m = json_object_object_get(o, "members");
	if (!is_type_or_absent(m, json_type_array))
		return bad(err, errlen, "networks[\"%s\"].members: not an array", k);
	for (size_t i = 0;
	     id && m && json_object_is_type(m, json_type_array) && i < json_object_array_length(m); i++) {
		if (!int_in(json_object_array_get_idx(m, i), 1, 0xFFFFFFFEll, &x))
			return bad(err, errlen, "networks[\"%s\"].members[%zu]: not a node ID", k, i);
		snprintf(key, sizeof(key), "%lld", (long long)x);
		if (!json_object_object_get_ex(nodes, key, NULL))
			return bad(err, errlen, "networks[\"%s\"].members[%zu]: node %s is not in nodes", k,
				   i, key);
	}
	return 0;
}

static int check_pairs(json_object *a, char *err, size_t errlen)
{
	if (!is_type_or_absent(a, json_type_array))
		return bad(err, errlen, "trust_pairs: not an array");
	for (size_t i = 0; a && json_object_is_type(a, json_type_array) && i < json_object_array_length(a);
	     i++) {
		json_object *p = json_object_array_get_idx(a, i);
		const char *s = json_object_is_type(p, json_type_string) ? json_object_get_string(p) : NULL;
		const char *c = s ? strchr(s, ':') : NULL;
		char left[16];
		int64_t x, y;

		if (!c || (size_t)(c - s) >= sizeof(left))
			return bad(err, errlen, "trust_pairs[%zu]: not \"<node>:<node>\"", i);
		memcpy(left, s, (size_t)(c - s));
		left[c - s] = 0;
		if (!key_num(left, 1, 0xFFFFFFFEll, &x) || !key_num(c + 1, 1, 0xFFFFFFFEll, &y) || x == y)
			return bad(err, errlen, "trust_pairs[%zu] \"%s\": not two different node IDs", i, s);
	}
	return 0;
}

static int check_snapshot(json_object *snap, char *err, size_t errlen)
{
	json_object *nodes, *nets, *v, *keys, *names;
	int rc = 0;

	if (!json_object_is_type(snap, json_type_object))
		return bad(err, errlen, "not a JSON object");
	nodes = json_object_object_get(snap, "nodes");
	nets = json_object_object_get(snap, "networks");
	if (!nodes || !json_object_is_type(nodes, json_type_object))
		return bad(err, errlen, "no \"nodes\" object: not a registry snapshot");
	if (!is_type_or_absent(nets, json_type_object))
		return bad(err, errlen, "\"networks\": not an object");
	if (!int_in(json_object_object_get(snap, "next_node"), 0, 0xFFFFFFFFll, NULL))
		return bad(err, errlen, "next_node: missing or not a node ID");
	if ((v = json_object_object_get(snap, "next_net")) && !int_in(v, 0, 65535, NULL))
		return bad(err, errlen, "next_net: not a network ID");
	keys = json_object_new_object();
	names = json_object_new_object();
	if (!keys || !names) {
		json_object_put(keys);
		json_object_put(names);
		return bad(err, errlen, "out of memory");
	}
	{
		json_object_object_foreach(nodes, k, o)
		{
			if ((rc = check_node(k, o, keys, names, err, errlen)) < 0)
				break;
		}
	}
	json_object_put(names);
	names = json_object_new_object();
	if (rc == 0 && nets && json_object_is_type(nets, json_type_object)) {
		json_object_object_foreach(nets, k, o)
		{
			if ((rc = check_network(k, o, nodes, names, err, errlen)) < 0)
				break;
		}
	}
	if (rc == 0)
		rc = check_pairs(json_object_object_get(snap, "trust_pairs"), err, errlen);
	v = json_object_object_get(snap, "pub_key_idx");
	if (rc == 0 && !is_type_or_absent(v, json_type_object))
		rc = bad(err, errlen, "pub_key_idx: not an object");
	if (rc == 0 && v && json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, b64, id)
		{
			uint8_t pk[32];
			json_object *owner;

			if (!b64_key(b64, pk) || !int_in(id, 1, 0xFFFFFFFEll, NULL)) {
				rc = bad(err, errlen, "pub_key_idx[\"%.60s\"]: not a key and a node ID", b64);
				break;
			}
			if (json_object_object_get_ex(keys, b64, &owner) &&
			    json_object_get_int64(owner) != json_object_get_int64(id)) {
				rc = bad(err, errlen, "pub_key_idx[\"%.60s\"]: names another node than nodes",
					 b64);
				break;
			}
		}
	}
	if (rc == 0 &&
	    (!is_type_or_absent(json_object_object_get(snap, "handshake_inbox"), json_type_object) ||
	     !is_type_or_absent(json_object_object_get(snap, "handshake_responses"), json_type_object)))
		rc = bad(err, errlen, "handshake_inbox / handshake_responses: not objects");
	json_object_put(keys);
	json_object_put(names);
	return rc;
}

static size_t count_nodes(const registry *r)
{
	size_t n = 0;

	for (size_t i = 0; i < r->nodes.cap; i++)
		n += r->nodes.e[i].used;
	return n;
}

static size_t count_nets(const registry *r) /* without the backbone */
{
	size_t n = 0;

	for (size_t i = 0; i < r->nets.cap; i++)
		n += r->nets.e[i].used && r->nets.e[i].key;
	return n;
}

/* Same nodes (ID, key, hostname, networks) and networks (ID, name, members)? */
static bool same_state(const registry *a, const registry *b)
{
	if (count_nodes(a) != count_nodes(b) || count_nets(a) != count_nets(b))
		return false;
	for (size_t i = 0; i < a->nodes.cap; i++) {
		const reg_node *x, *y;

		if (!a->nodes.e[i].used)
			continue;
		x = (const reg_node *)(uintptr_t)a->nodes.e[i].val;
		if (!(y = reg_node_get(b, x->id)) || memcmp(x->pk, y->pk, 32) || x->nnets != y->nnets ||
		    strcmp(x->hostname ? x->hostname : "", y->hostname ? y->hostname : ""))
			return false;
		for (size_t k = 0; k < x->nnets; k++)
			if (!reg_node_in_net(y, x->nets[k]))
				return false;
	}
	for (size_t i = 0; i < a->nets.cap; i++) {
		const reg_net *x, *y;

		if (!a->nets.e[i].used || !a->nets.e[i].key)
			continue;
		x = (const reg_net *)(uintptr_t)a->nets.e[i].val;
		if (!(y = reg_net_get(b, x->id)) || strcmp(x->name, y->name))
			return false;
	}
	return true;
}

int rdv_import_parse(const char *buf, size_t len, json_object **snap, char *err, size_t errlen)
{
	json_tokener *tok;
	int rc = 0;

	*snap = NULL;
	if (len > INT32_MAX) {
		snprintf(err, errlen, "too large");
		return -EBADMSG;
	}
	if (!(tok = json_tokener_new())) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*snap = json_tokener_parse_ex(tok, buf, (int)len);
	if (!*snap && json_tokener_get_error(tok) == json_tokener_continue) {
		snprintf(err, errlen, "not JSON (ends in the middle of a value)");
		rc = -EBADMSG;
	} else if (!*snap || json_tokener_get_error(tok) != json_tokener_success) {
		snprintf(err, errlen, "not JSON (%s at byte %zu)",
			 json_tokener_error_desc(json_tokener_get_error(tok)),
			 json_tokener_get_parse_end(tok));
		rc = -EBADMSG;
	}
	for (size_t i = json_tokener_get_parse_end(tok); rc == 0 && i < len; i++)
		if (buf[i] != ' ' && buf[i] != '\n' && buf[i] != '\r' && buf[i] != '\t') {
			snprintf(err, errlen, "data after the JSON object at byte %zu", i);
			rc = -EBADMSG;
		}
	json_tokener_free(tok);
	if (rc == 0)
		rc = check_snapshot(*snap, err, errlen);
	if (rc < 0) {
		json_object_put(*snap);
		*snap = NULL;
	}
	return rc;
}

int rdv_import_json(const reg_config *cfg, const char *file, bool replace, char *msg, size_t msglen)
{
	reg_config mem_cfg = *cfg;
	registry *mem = NULL, *r = NULL;
	json_object *snap = NULL;
	char *buf = NULL, err[512] = "";
	size_t len = 0;
	int rc;

	if (!cfg->store_path || !cfg->store_path[0])
		return bad(msg, msglen,
			   "import-json needs a store: pass -store FILE or -store postgres://...");
	if ((rc = pilot_read_file(file, IMPORT_MAX_BYTES, &buf, &len)) < 0)
		return bad(msg, msglen, "%s: %s", file, rc == -EFBIG ? "larger than 512 MiB" : strerror(-rc));
	if ((rc = rdv_import_parse(buf, len, &snap, err, sizeof(err))) < 0) {
		rc = bad(msg, msglen, "%s: %s%s", file, err, rc == -EINVAL ? "; nothing imported" : "");
		goto out;
	}
	/* The state the import makes, built in memory first: compared with the store's. */
	mem_cfg.store_path = NULL;
	if (!(mem = reg_open(&mem_cfg, err, sizeof(err))) || reg_apply_snapshot(mem, snap) < 0) {
		rc = bad(msg, msglen, "%s", err[0] ? err : "cannot build the imported state");
		goto out;
	}
	if (!(r = reg_open(cfg, err, sizeof(err)))) {
		rc = bad(msg, msglen, "%s", err);
		goto out;
	}
	if (same_state(mem, r)) {
		snprintf(msg, msglen,
			 "%s: the store already holds this snapshot (%zu nodes, %zu networks); nothing to do",
			 file, count_nodes(r), count_nets(r));
		rc = 0;
		goto out;
	}
	if ((count_nodes(r) || count_nets(r)) && !replace) {
		rc = bad(msg, msglen,
			 "the store already holds %zu nodes and %zu networks that are not this snapshot; "
			 "import-json -replace overwrites them",
			 count_nodes(r), count_nets(r));
		goto out;
	}
	if ((rc = reg_apply_snapshot(r, snap)) < 0 || (rc = reg_sync(r)) < 0) {
		rc = bad(msg, msglen, "writing the store failed (%s); the store keeps its previous state",
			 strerror(-rc));
		goto out;
	}
	snprintf(msg, msglen, "imported %s: %zu nodes, %zu networks (next node %u, next network %u)", file,
		 count_nodes(r), count_nets(r), r->next_node, r->next_net);
	rc = 0;
out:
	reg_close(r);
	reg_close(mem);
	json_object_put(snap);
	free(buf);
	return rc;
}
