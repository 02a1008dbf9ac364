/* The nameserver's records (services.md §2.4): A name -> address, N network
 * name -> network ID, S (network, port) -> providers. Every record lives ttl
 * from its (re-)registration; records loaded from disk restart their clock, as
 * in the reference. One flat array, searched linearly: the store is bounded
 * (max records) and a lookup costs microseconds at the default bound. Saved
 * after every change, atomically (temp + fsync + rename), in the reference's
 * JSON format so its -store files can be moved over. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lib/fileutil.h"
#include "lib/jsonwire.h"
#include "lib/log.h"
#include "nameserver/ns.h"

#define STORE_FILE_MAX (64u << 20)

typedef struct rec {
	enum ns_type type;
	char *name;
	pilot_addr addr;    /* A, S */
	uint16_t net, port; /* N: net; S: both */
	uint64_t expires_ms;
} rec;

struct ns_store {
	char *path;
	uint64_t ttl_ms;
	size_t max, n, cap;
	rec *r;
};

ns_store *ns_store_new(const char *path, uint64_t ttl_ms, size_t max)
{
	ns_store *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if (path && !(s->path = strdup(path))) {
		free(s);
		return NULL;
	}
	s->ttl_ms = ttl_ms;
	s->max = max;
	return s;
}

static void rec_drop(ns_store *s, size_t i)
{
	free(s->r[i].name);
	memmove(&s->r[i], &s->r[i + 1], (s->n - i - 1) * sizeof(rec));
	s->n--;
}

void ns_store_free(ns_store *s)
{
	if (!s)
		return;
	while (s->n)
		rec_drop(s, s->n - 1);
	free(s->r);
	free(s->path);
	free(s);
}

size_t ns_store_count(const ns_store *s)
{
	return s->n;
}

/* ---- persistence ---- */
static json_object *list_or_null(json_object *arr)
{
	if (json_object_array_length(arr))
		return arr;
	json_object_put(arr);
	return NULL;
}

static json_object *to_json(const ns_store *s)
{
	json_object *root = json_object_new_object(), *a = json_object_new_array(),
		    *nn = json_object_new_array(), *sv = json_object_new_array(), *o;
	char as[PILOT_ADDR_STRLEN];
	size_t i;

	for (i = 0; i < s->n; i++) {
		const rec *r = &s->r[i];

		o = json_object_new_object();
		jw_set_str(o, "name", r->name);
		if (r->type != NS_N)
			jw_set_str(o, "address", pilot_addr_format(r->addr, as));
		if (r->type != NS_A)
			jw_set_int(o, "network_id", r->net);
		if (r->type == NS_S)
			jw_set_int(o, "port", r->port);
		json_object_array_add(r->type == NS_A ? a : r->type == NS_N ? nn : sv, o);
	}
	json_object_object_add(root, "a_records", list_or_null(a));
	json_object_object_add(root, "n_records", list_or_null(nn));
	json_object_object_add(root, "s_records", list_or_null(sv));
	return root;
}

static int save(ns_store *s)
{
	json_object *root;
	const char *txt;
	int rc;

	if (!s->path)
		return 0;
	root = to_json(s);
	txt = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	rc = pilot_write_atomic(s->path, txt, strlen(txt), 0600);
	json_object_put(root);
	if (rc < 0) {
		log_error("nameserver: cannot save %s: %s", s->path, strerror(-rc));
		return -EIO;
	}
	return 0;
}

static int push(ns_store *s, const rec *r)
{
	rec *nr;

	if (s->n >= s->max)
		return -ENOSPC;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;

		if (!(nr = realloc(s->r, cap * sizeof(rec))))
			return -ENOMEM;
		s->r = nr;
		s->cap = cap;
	}
	s->r[s->n] = *r;
	if (!(s->r[s->n].name = strdup(r->name)))
		return -ENOMEM;
	s->n++;
	return 0;
}

/* One entry of a loaded list: name (1..NS_NAME_MAX bytes) and the type's fields. */
static int load_one(ns_store *s, enum ns_type t, json_object *o, uint64_t now_ms)
{
	const char *name = jw_get_str(o, "name"), *addr = jw_get_str(o, "address");
	rec r = { .type = t, .expires_ms = now_ms + s->ttl_ms };

	if (!json_object_is_type(o, json_type_object) || !name || !*name || strlen(name) > NS_NAME_MAX)
		return -EINVAL;
	if (t != NS_N && (!addr || pilot_addr_parse(addr, strlen(addr), &r.addr) < 0))
		return -EINVAL;
	r.net = t == NS_A ? 0 : jw_get_u16(o, "network_id");
	r.port = t == NS_S ? jw_get_u16(o, "port") : 0;
	r.name = (char *)name;
	return push(s, &r);
}

static int load_list(ns_store *s, json_object *root, const char *key, enum ns_type t, uint64_t now_ms)
{
	json_object *arr;
	size_t i;
	int rc;

	if (!json_object_object_get_ex(root, key, &arr) || !arr)
		return 0; /* absent or null: empty */
	if (!json_object_is_type(arr, json_type_array))
		return -EINVAL;
	for (i = 0; i < json_object_array_length(arr); i++)
		if ((rc = load_one(s, t, json_object_array_get_idx(arr, i), now_ms)) < 0)
			return rc;
	return 0;
}

int ns_store_load(ns_store *s, uint64_t now_ms)
{
	json_object *root;
	char *txt;
	size_t len;
	int rc;

	if (!s->path)
		return 0;
	rc = pilot_read_file(s->path, STORE_FILE_MAX, &txt, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	root = jw_parse(txt, len, NULL);
	free(txt);
	if (!root || !json_object_is_type(root, json_type_object))
		rc = -EINVAL;
	else if ((rc = load_list(s, root, "a_records", NS_A, now_ms)) == 0 &&
		 (rc = load_list(s, root, "n_records", NS_N, now_ms)) == 0)
		rc = load_list(s, root, "s_records", NS_S, now_ms);
	json_object_put(root);
	return rc;
}

/* ---- records ---- */
static rec *find_named(const ns_store *s, enum ns_type t, const char *name)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (s->r[i].type == t && !strcmp(s->r[i].name, name))
			return &s->r[i];
	return NULL;
}

static int set_named(ns_store *s, const rec *nr)
{
	rec *r = find_named(s, nr->type, nr->name);
	int rc;

	if (r) {
		r->addr = nr->addr;
		r->net = nr->net;
		r->expires_ms = nr->expires_ms;
	} else if ((rc = push(s, nr)) < 0) {
		return rc;
	}
	return save(s);
}

int ns_store_set_a(ns_store *s, const char *name, pilot_addr a, uint64_t now_ms)
{
	rec r = { .type = NS_A, .name = (char *)name, .addr = a, .expires_ms = now_ms + s->ttl_ms };

	return set_named(s, &r);
}

int ns_store_set_n(ns_store *s, const char *name, uint16_t net, uint64_t now_ms)
{
	rec r = { .type = NS_N, .name = (char *)name, .net = net, .expires_ms = now_ms + s->ttl_ms };

	return set_named(s, &r);
}

int ns_store_add_s(ns_store *s, const char *name, pilot_addr a, uint16_t net, uint16_t port, uint64_t now_ms)
{
	rec r = { .type = NS_S,
		  .name = (char *)name,
		  .addr = a,
		  .net = net,
		  .port = port,
		  .expires_ms = now_ms + s->ttl_ms };
	size_t i;
	int rc;

	/* A repeat (same address and port) refreshes the TTL only (reference). */
	for (i = 0; i < s->n; i++) {
		rec *o = &s->r[i];

		if (o->type == NS_S && o->net == net && o->port == port && pilot_addr_eq(o->addr, a)) {
			o->expires_ms = r.expires_ms;
			return 1;
		}
	}
	if ((rc = push(s, &r)) < 0)
		return rc;
	return save(s);
}

int ns_store_get_a(const ns_store *s, const char *name, pilot_addr *out)
{
	const rec *r = find_named(s, NS_A, name);

	if (!r)
		return -ENOENT;
	*out = r->addr;
	return 0;
}

int ns_store_get_n(const ns_store *s, const char *name, uint16_t *out)
{
	const rec *r = find_named(s, NS_N, name);

	if (!r)
		return -ENOENT;
	*out = r->net;
	return 0;
}

size_t ns_store_each_s(const ns_store *s, uint16_t net, uint16_t port,
		       void (*fn)(void *arg, const ns_svc *svc), void *arg)
{
	size_t i, n = 0;

	for (i = 0; i < s->n; i++) {
		const rec *r = &s->r[i];
		ns_svc v;

		if (r->type != NS_S || r->net != net || r->port != port)
			continue;
		v.name = r->name;
		v.addr = r->addr;
		v.port = r->port;
		fn(arg, &v);
		n++;
	}
	return n;
}

/* Remove the records keep() rejects; save when any went. */
static int remove_if(ns_store *s, bool (*match)(const rec *r, const void *key), const void *key)
{
	size_t i = 0;
	int n = 0;

	while (i < s->n) {
		if (match(&s->r[i], key)) {
			rec_drop(s, i);
			n++;
		} else {
			i++;
		}
	}
	if (n)
		save(s);
	return n;
}

typedef struct delkey {
	enum ns_type type;
	const char *name;
	uint32_t owner;
	uint16_t net, port;
	uint64_t now_ms;
} delkey;

static bool match_named(const rec *r, const void *key)
{
	const delkey *k = key;

	return r->type == k->type && !strcmp(r->name, k->name) && (!k->owner || r->addr.node == k->owner);
}

static bool match_svc(const rec *r, const void *key)
{
	const delkey *k = key;

	return r->type == NS_S && r->net == k->net && r->port == k->port && r->addr.node == k->owner;
}

static bool match_expired(const rec *r, const void *key)
{
	return r->expires_ms <= ((const delkey *)key)->now_ms;
}

int ns_store_del_a(ns_store *s, const char *name, uint32_t owner)
{
	delkey k = { .type = NS_A, .name = name, .owner = owner };

	return remove_if(s, match_named, &k);
}

int ns_store_del_n(ns_store *s, const char *name)
{
	delkey k = { .type = NS_N, .name = name };

	return remove_if(s, match_named, &k);
}

int ns_store_del_s(ns_store *s, uint16_t net, uint16_t port, uint32_t owner)
{
	delkey k = { .net = net, .port = port, .owner = owner };

	return remove_if(s, match_svc, &k);
}

size_t ns_store_reap(ns_store *s, uint64_t now_ms)
{
	delkey k = { .now_ms = now_ms };

	return (size_t)remove_if(s, match_expired, &k);
}
