/* Shared helpers for the registry unit tests: a registry driven with JSON text,
 * real Ed25519 identities, v1 and v2 signatures. Included by test_registry*.c. */
#ifndef TEST_REGISTRY_UTIL_H
#define TEST_REGISTRY_UTIL_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <sodium.h>

#include "lib/crypto.h"
#include "lib/jsonwire.h"
#include "rendezvous/registry.h"

static uint64_t t_now = 1700000000000ULL; /* ms */
static const char *t_ip = "198.18.0.2";
static uint64_t t_conn = 1; /* the "connection" of t_req */

typedef struct tid {
	pilot_identity id;
	char pk[48];
	uint32_t node;
} tid;

static __attribute__((unused)) void tid_new(tid *t)
{
	pilot_identity_generate(&t->id);
	pilot_b64_encode(t->id.pk, 32, t->pk, sizeof(t->pk));
	t->node = 0;
}

static registry *t_open(const char *store, bool strict, const char *admin)
{
	reg_config c;
	char err[256] = "";
	registry *r;

	memset(&c, 0, sizeof(c));
	c.store_path = store;
	c.strict_signatures = strict;
	c.admin_token = admin;
	r = reg_open(&c, err, sizeof(err));
	if (!r)
		fprintf(stderr, "reg_open: %s\n", err);
	return r;
}

/* Handle a request given as printf-formatted JSON text. */
static json_object *t_req(registry *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_object *t_req(registry *r, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	json_object *q, *resp;
	reg_ctx ctx = { t_ip, 40000, t_now, t_conn };

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	q = json_tokener_parse(s);
	if (!q) {
		fprintf(stderr, "bad test JSON: %s\n", s);
		abort();
	}
	free(s);
	resp = reg_handle(r, q, &ctx);
	json_object_put(q);
	/* Like the server: a reply that wrote is seen only once that write is durable. */
	reg_sync(r);
	return resp;
}

static const char *t_type(json_object *o)
{
	return json_object_get_string(json_object_object_get(o, "type"));
}

static __attribute__((unused)) const char *t_code(json_object *o)
{
	json_object *c = json_object_object_get(o, "code");

	return c ? json_object_get_string(c) : "";
}

static __attribute__((unused)) int64_t t_int(json_object *o, const char *k)
{
	return json_object_get_int64(json_object_object_get(o, k));
}

static const char *t_str(json_object *o, const char *k)
{
	json_object *v = json_object_object_get(o, k);

	return v ? json_object_get_string(v) : NULL;
}

/* Check then free. */
static __attribute__((unused)) int t_ok(json_object *o, const char *type)
{
	char want[64];
	int ok;

	snprintf(want, sizeof(want), "%s_ok", type);
	ok = strcmp(t_type(o), want) == 0;
	if (!ok)
		fprintf(stderr, "expected %s, got %s\n", want, json_object_to_json_string(o));
	json_object_put(o);
	return ok;
}

/* A refusal carrying the reference handler's own text in `error` (resolve). */
static __attribute__((unused)) int t_err_ref(json_object *o, const char *code)
{
	int ok = strcmp(t_type(o), "error") == 0 && strncmp(t_str(o, "error"), "resolve denied: ", 16) == 0 &&
		strcmp(t_code(o), code) == 0 && t_str(o, "message") != NULL;

	if (!ok)
		fprintf(stderr, "expected error %s, got %s\n", code, json_object_to_json_string(o));
	json_object_put(o);
	return ok;
}

static __attribute__((unused)) int t_err(json_object *o, const char *code)
{
	int ok = strcmp(t_type(o), "error") == 0 && strcmp(t_str(o, "error"), "request failed") == 0 &&
		 strcmp(t_code(o), code) == 0 && t_str(o, "message") != NULL;

	if (!ok)
		fprintf(stderr, "expected error %s, got %s\n", code, json_object_to_json_string(o));
	json_object_put(o);
	return ok;
}

/* Signature as base64 (static rotating buffers so two can be used at once). */
static const char *t_sign(const tid *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *t_sign(const tid *t, const char *fmt, ...)
{
	static char out[4][96];
	static int k;
	char msg[2048];
	uint8_t sig[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pilot_ed25519_sign(&t->id, msg, strlen(msg), sig);
	k = (k + 1) % 4;
	pilot_b64_encode(sig, 64, out[k], sizeof(out[k]));
	return out[k];
}

static __attribute__((unused)) long long t_ts(void)
{
	return (long long)(t_now / 1000);
}

static __attribute__((unused)) uint32_t t_register(registry *r, tid *t, const char *owner)
{
	json_object *o;

	if (owner)
		o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:4000\",\"owner\":\"%s\"}",
			  t->pk, owner);
	else
		o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:4000\"}", t->pk);
	if (strcmp(t_type(o), "register_ok") != 0) {
		fprintf(stderr, "register failed: %s\n", json_object_to_json_string(o));
		json_object_put(o);
		return 0;
	}
	t->node = (uint32_t)t_int(o, "node_id");
	json_object_put(o);
	return t->node;
}

/* v1 heartbeat: the signed request that applies a pending register (proof of
 * possession on the same connection). */
static __attribute__((unused)) int t_hb(registry *r, tid *t)
{
	return t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", t->node,
			  t_sign(t, "heartbeat:%u", t->node)), "heartbeat");
}

/* v1 setters */
static __attribute__((unused)) int t_set_public(registry *r, tid *t, bool pub)
{
	return t_ok(t_req(r, "{\"type\":\"set_visibility\",\"node_id\":%u,\"public\":%s,\"signature\":\"%s\"}",
			  t->node, pub ? "true" : "false", t_sign(t, "set_visibility:%u", t->node)),
		    "set_visibility");
}

static __attribute__((unused)) int t_report(registry *r, tid *a, tid *b)
{
	return t_ok(t_req(r, "{\"type\":\"report_trust\",\"node_id\":%u,\"peer_id\":%u,\"signature\":\"%s\"}",
			  a->node, b->node, t_sign(a, "report_trust:%u:%u", a->node, b->node)),
		    "report_trust");
}

static __attribute__((unused)) json_object *t_resolve(registry *r, tid *q, uint32_t target)
{
	return t_req(r, "{\"type\":\"resolve\",\"node_id\":%u,\"requester_id\":%u,\"signature\":\"%s\"}",
		     target, q->node, t_sign(q, "resolve:%u:%u", q->node, target));
}

#endif
