/* Registry handlers: every message type, validation, privacy gating, consent-based
 * trust, owner reclaim, signatures v1/v2, rate limits, standby. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tests/unit/test_registry_util.h"
#include "rendezvous/reg_internal.h"

static int setup(void **state)
{
	t_now = 1700000000000ULL;
	t_ip = "198.18.0.2";
	*state = t_open(NULL, false, NULL);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	reg_close(*state);
	return 0;
}

static void test_register_basic(void **state)
{
	registry *r = *state;
	tid a;
	json_object *o;

	tid_new(&a);
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"1.2.3.4:4000\"}", a.pk);
	assert_string_equal(t_type(o), "register_ok");
	assert_int_equal(t_int(o, "node_id"), 1);
	assert_int_equal(t_int(o, "network_id"), 0);
	assert_string_equal(t_str(o, "address"), "0:0000.0000.0001");
	assert_string_equal(t_str(o, "public_key"), a.pk);
	assert_true(json_object_get_boolean(json_object_object_get(o, "sig_v2")));
	assert_int_equal(t_int(o, "time"), t_ts());
	assert_null(t_str(o, "hostname"));
	json_object_put(o);
	a.node = 1;
	/* listen_addr host is replaced by the TCP source IP */
	assert_true(t_set_public(r, &a, true));
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":1}");
	assert_string_equal(t_str(o, "real_addr"), "198.18.0.2:4000");
	json_object_put(o);
	/* same key again: same ID; a second key: next ID */
	assert_int_equal(t_register(r, &a, NULL), 1);
	tid_new(&a);
	assert_int_equal(t_register(r, &a, NULL), 2);
}

static void test_register_addr_sanitise(void **state)
{
	registry *r = *state;
	tid a;
	json_object *o;

	tid_new(&a);
	json_object_put(t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"junk\"}", a.pk));
	a.node = 1;
	assert_true(t_set_public(r, &a, true));
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":1}");
	assert_string_equal(t_str(o, "real_addr"), "198.18.0.2:40000");
	json_object_put(o);
	t_ip = "2001:db8::7";
	json_object_put(t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"[::]:4001\"}", a.pk));
	assert_true(t_hb(r, &a)); /* the key's proof applies the re-register */
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":1}");
	assert_string_equal(t_str(o, "real_addr"), "[2001:db8::7]:4001");
	json_object_put(o);
	assert_string_equal(reg_node_src_ip(r, 1), "2001:db8::7");
	/* a non-numeric port is not trusted either */
	json_object_put(t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"1.1.1.1:http\"}", a.pk));
	assert_true(t_hb(r, &a));
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":1}");
	assert_string_equal(t_str(o, "real_addr"), "[2001:db8::7]:40000");
	json_object_put(o);
}

static void test_register_invalid(void **state)
{
	registry *r = *state;

	assert_true(t_err(t_req(r, "{\"type\":\"register\"}"), "invalid_argument"));
	assert_true(t_err(t_req(r, "{\"type\":\"register\",\"public_key\":\"\"}"), "invalid_argument"));
	assert_true(t_err(t_req(r, "{\"type\":\"register\",\"public_key\":\"AAAA\"}"), "invalid_argument"));
	assert_true(t_err(t_req(r, "{\"type\":\"register\",\"public_key\":\"!!notbase64!!\"}"), "invalid_argument"));
	assert_true(t_err(t_req(r, "{\"type\":\"nope\"}"), "unknown_type"));
	assert_true(t_err(t_req(r, "{\"no_type\":1}"), "unknown_type"));
	assert_true(t_err(t_req(r, "{\"type\":7}"), "unknown_type"));
}

static void test_register_hostname(void **state)
{
	registry *r = *state;
	tid a, b;
	json_object *o;

	tid_new(&a);
	tid_new(&b);
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"hostname\":\"alpha\"}", a.pk);
	assert_string_equal(t_str(o, "hostname"), "alpha");
	json_object_put(o);
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"hostname\":\"alpha\"}", b.pk);
	assert_string_equal(t_type(o), "register_ok");
	assert_null(t_str(o, "hostname")); /* taken: silently ignored */
	assert_null(t_str(o, "hostname_error"));
	json_object_put(o);
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"hostname\":\"Bad_Name\"}", b.pk);
	assert_string_equal(t_type(o), "register_ok");
	assert_non_null(t_str(o, "hostname_error"));
	json_object_put(o);
	o = t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"alpha\"}");
	assert_string_equal(t_type(o), "resolve_hostname_ok");
	assert_int_equal(t_int(o, "node_id"), 1);
	assert_string_equal(t_str(o, "address"), "0:0000.0000.0001");
	assert_false(json_object_get_boolean(json_object_object_get(o, "public")));
	json_object_put(o);
	assert_true(t_err(t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"zzz\"}"), "not_found"));
	assert_true(t_err(t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"\"}"), "invalid_argument"));
}

static void test_heartbeat(void **state)
{
	registry *r = *state;
	tid a, b;
	json_object *o;

	tid_new(&a);
	tid_new(&b);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	o = t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
		  t_sign(&a, "heartbeat:%u", a.node));
	assert_string_equal(t_type(o), "heartbeat_ok");
	assert_int_equal(t_int(o, "time"), t_ts());
	json_object_put(o);
	/* b's key cannot sign for a */
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
				t_sign(&b, "heartbeat:%u", a.node)), "bad_signature"));
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u}", a.node), "bad_signature"));
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"xx\"}", a.node), "bad_signature"));
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":99,\"signature\":\"%s\"}",
				t_sign(&a, "heartbeat:99")), "not_found"));
}

static void test_lookup_fields(void **state)
{
	registry *r = *state;
	tid a;
	json_object *o;

	tid_new(&a);
	t_register(r, &a, NULL);
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", a.node);
	assert_string_equal(t_type(o), "lookup_ok");
	assert_string_equal(t_str(o, "public_key"), a.pk);
	assert_false(json_object_get_boolean(json_object_object_get(o, "public")));
	assert_int_equal(t_int(o, "polo_score"), 0);
	assert_int_equal(json_object_array_length(json_object_object_get(o, "networks")), 1);
	assert_null(t_str(o, "real_addr")); /* private */
	assert_null(json_object_object_get(o, "tags"));
	assert_null(json_object_object_get(o, "task_exec"));
	json_object_put(o);
	assert_true(t_ok(t_req(r, "{\"type\":\"set_tags\",\"node_id\":%u,\"tags\":[\"#gpu\",\"ml\"],\"signature\":\"%s\"}",
			       a.node, t_sign(&a, "set_tags:%u", a.node)), "set_tags"));
	assert_true(t_ok(t_req(r, "{\"type\":\"set_task_exec\",\"node_id\":%u,\"enabled\":true,\"signature\":\"%s\"}",
			       a.node, t_sign(&a, "set_task_exec:%u", a.node)), "set_task_exec"));
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", a.node);
	assert_string_equal(json_object_to_json_string(json_object_object_get(o, "tags")), "[ \"gpu\", \"ml\" ]");
	assert_true(json_object_get_boolean(json_object_object_get(o, "task_exec")));
	json_object_put(o);
	assert_true(t_err(t_req(r, "{\"type\":\"lookup\",\"node_id\":777}"), "not_found"));
	assert_true(t_err(t_req(r, "{\"type\":\"lookup\",\"node_id\":\"1\"}"), "not_found"));
}

static void test_setters(void **state)
{
	registry *r = *state;
	tid a, b;
	json_object *o;

	tid_new(&a);
	tid_new(&b);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	o = t_req(r, "{\"type\":\"set_hostname\",\"node_id\":%u,\"hostname\":\"web-1\",\"signature\":\"%s\"}",
		  a.node, t_sign(&a, "set_hostname:%u", a.node));
	assert_string_equal(t_type(o), "set_hostname_ok");
	assert_string_equal(t_str(o, "hostname"), "web-1");
	json_object_put(o);
	assert_true(t_err(t_req(r, "{\"type\":\"set_hostname\",\"node_id\":%u,\"hostname\":\"web-1\",\"signature\":\"%s\"}",
				b.node, t_sign(&b, "set_hostname:%u", b.node)), "conflict"));
	assert_true(t_err(t_req(r, "{\"type\":\"set_hostname\",\"node_id\":%u,\"hostname\":\"localhost\",\"signature\":\"%s\"}",
				b.node, t_sign(&b, "set_hostname:%u", b.node)), "invalid_argument"));
	assert_true(t_err(t_req(r, "{\"type\":\"set_hostname\",\"node_id\":%u,\"hostname\":\"-x\",\"signature\":\"%s\"}",
				b.node, t_sign(&b, "set_hostname:%u", b.node)), "invalid_argument"));
	assert_true(t_err(t_req(r, "{\"type\":\"set_hostname\",\"node_id\":%u,\"hostname\":\"%s\",\"signature\":\"%s\"}",
				b.node, "a123456789012345678901234567890123456789012345678901234567890123",
				t_sign(&b, "set_hostname:%u", b.node)), "invalid_argument"));
	/* clearing frees the name for b */
	assert_true(t_ok(t_req(r, "{\"type\":\"set_hostname\",\"node_id\":%u,\"hostname\":\"\",\"signature\":\"%s\"}",
			       a.node, t_sign(&a, "set_hostname:%u", a.node)), "set_hostname"));
	assert_true(t_ok(t_req(r, "{\"type\":\"set_hostname\",\"node_id\":%u,\"hostname\":\"web-1\",\"signature\":\"%s\"}",
			       b.node, t_sign(&b, "set_hostname:%u", b.node)), "set_hostname"));
	/* tags */
	assert_true(t_err(t_req(r, "{\"type\":\"set_tags\",\"node_id\":%u,\"tags\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\"],\"signature\":\"%s\"}",
				a.node, t_sign(&a, "set_tags:%u", a.node)), "invalid_argument"));
	assert_true(t_err(t_req(r, "{\"type\":\"set_tags\",\"node_id\":%u,\"tags\":[\"UP\"],\"signature\":\"%s\"}",
				a.node, t_sign(&a, "set_tags:%u", a.node)), "invalid_argument"));
	assert_true(t_err(t_req(r, "{\"type\":\"set_tags\",\"node_id\":%u,\"tags\":[\"\"],\"signature\":\"%s\"}",
				a.node, t_sign(&a, "set_tags:%u", a.node)), "invalid_argument"));
	o = t_req(r, "{\"type\":\"set_tags\",\"node_id\":%u,\"tags\":[1, \"ok\"],\"signature\":\"%s\"}",
		  a.node, t_sign(&a, "set_tags:%u", a.node));
	assert_int_equal(json_object_array_length(json_object_object_get(o, "tags")), 1);
	json_object_put(o);
	o = t_req(r, "{\"type\":\"set_tags\",\"node_id\":%u,\"tags\":[],\"signature\":\"%s\"}",
		  a.node, t_sign(&a, "set_tags:%u", a.node));
	assert_string_equal(t_type(o), "set_tags_ok");
	assert_true(json_object_object_get_ex(o, "tags", NULL));
	assert_null(json_object_object_get(o, "tags")); /* null when cleared, like the reference */
	json_object_put(o);
	o = t_req(r, "{\"type\":\"set_visibility\",\"node_id\":%u,\"public\":true,\"signature\":\"%s\"}",
		  a.node, t_sign(&a, "set_visibility:%u", a.node));
	assert_string_equal(t_str(o, "visibility"), "public");
	json_object_put(o);
	o = t_req(r, "{\"type\":\"set_task_exec\",\"node_id\":%u,\"enabled\":false,\"signature\":\"%s\"}",
		  a.node, t_sign(&a, "set_task_exec:%u", a.node));
	assert_false(json_object_get_boolean(json_object_object_get(o, "task_exec")));
	json_object_put(o);
}

static void test_deregister_and_reclaim_by_key(void **state)
{
	registry *r = *state;
	tid a;
	json_object *o;

	tid_new(&a);
	t_register(r, &a, "me@x");
	assert_true(t_ok(t_req(r, "{\"type\":\"deregister\",\"node_id\":4242}"), "deregister"));
	assert_true(t_set_public(r, &a, true));
	assert_true(t_ok(t_req(r, "{\"type\":\"deregister\",\"node_id\":%u,\"signature\":\"%s\"}",
			       a.node, t_sign(&a, "deregister:%u", a.node)), "deregister"));
	assert_false(reg_node_live(r, a.node));
	assert_true(t_err(t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", a.node), "not_found"));
	/* the identity is kept: same key gets the same ID back, attributes reset */
	assert_int_equal(t_register(r, &a, NULL), 1);
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":1}");
	assert_false(json_object_get_boolean(json_object_object_get(o, "public")));
	json_object_put(o);
}

static void test_reaping(void **state)
{
	registry *r = *state;
	tid a, b;
	uint8_t pk[32];

	tid_new(&a);
	tid_new(&b);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	assert_true(t_ok(t_req(r, "{\"type\":\"set_hostname\",\"node_id\":%u,\"hostname\":\"gone\",\"signature\":\"%s\"}",
			       a.node, t_sign(&a, "set_hostname:%u", a.node)), "set_hostname"));
	reg_tick(r, t_now);
	t_now += 120000;
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", b.node,
			       t_sign(&b, "heartbeat:%u", b.node)), "heartbeat"));
	t_now += 100000; /* a silent 220 s, b 100 s */
	reg_tick(r, t_now);
	assert_false(reg_node_live(r, a.node));
	assert_true(reg_node_live(r, b.node));
	assert_int_equal(reg_node_key(r, a.node, pk), 0); /* identity kept */
	assert_memory_equal(pk, a.id.pk, 32);
	assert_int_equal(reg_node_key(r, 999, pk), -ENOENT);
	assert_true(t_err(t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"gone\"}"), "not_found"));
	assert_int_equal(t_register(r, &a, NULL), 1);
}

static void test_owner_reclaim(void **state)
{
	registry *r = *state;
	tid a, a2, a3;
	json_object *o;

	tid_new(&a);
	tid_new(&a2);
	tid_new(&a3);
	t_register(r, &a, "alice@example.com");
	assert_true(t_hb(r, &a)); /* the owner is set once a's key has signed */
	/* live node: an unknown key with the same owner may not take it over */
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"owner\":\"alice@example.com\"}", a2.pk);
	assert_true(t_err(o, "conflict"));
	assert_true(t_ok(t_req(r, "{\"type\":\"deregister\",\"node_id\":%u,\"signature\":\"%s\"}",
			       a.node, t_sign(&a, "deregister:%u", a.node)), "deregister"));
	/* dead node: recovered with the new key, same ID, once the new key signs */
	assert_int_equal(t_register(r, &a2, "alice@example.com"), a.node);
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", a.node);
	assert_true(t_err(o, "not_found"));
	assert_true(t_hb(r, &a2));
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", a.node);
	assert_string_equal(t_str(o, "public_key"), a2.pk);
	json_object_put(o);
	/* the old key no longer signs for the node */
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
				t_sign(&a, "heartbeat:%u", a.node)), "bad_signature"));
	/* and a second recovery within 10 minutes is refused */
	assert_true(t_ok(t_req(r, "{\"type\":\"deregister\",\"node_id\":%u,\"signature\":\"%s\"}",
			       a.node, t_sign(&a2, "deregister:%u", a.node)), "deregister"));
	assert_true(t_err(t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"owner\":\"alice@example.com\"}", a3.pk),
			  "rate_limited"));
	t_now += 11 * 60 * 1000;
	assert_int_equal(t_register(r, &a3, "alice@example.com"), a.node);
	assert_true(t_hb(r, &a3));
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", a.node);
	assert_string_equal(t_str(o, "public_key"), a3.pk);
	json_object_put(o);
}

static void test_resolve_privacy(void **state)
{
	registry *r = *state;
	tid a, b, c;
	json_object *o;

	tid_new(&a);
	tid_new(&b);
	tid_new(&c);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	t_register(r, &c, NULL);
	/* issue 15: the reference handler's text in `error`, what to do in `message` */
	o = t_resolve(r, &a, b.node);
	{
		char want[96];
		snprintf(want, sizeof(want),
			 "resolve denied: node %u is private (establish mutual trust first)", b.node);
		assert_string_equal(t_type(o), "error");
		assert_string_equal(t_str(o, "error"), want);
		assert_string_equal(t_code(o), "forbidden");
		assert_non_null(strstr(t_str(o, "message"), "pilotctl handshake"));
	}
	json_object_put(o);
	assert_true(t_err(t_resolve(r, &a, 555), "not_found"));
	assert_false(reg_may_talk(r, a.node, b.node));
	/* one-sided trust is not enough */
	assert_true(t_report(r, &a, &b));
	assert_true(t_err_ref(t_resolve(r, &a, b.node), "forbidden"));
	assert_false(reg_may_talk(r, a.node, b.node));
	/* both sides: pair */
	assert_true(t_report(r, &b, &a));
	o = t_resolve(r, &a, b.node);
	assert_string_equal(t_type(o), "resolve_ok");
	assert_string_equal(t_str(o, "real_addr"), "198.18.0.2:4000");
	json_object_put(o);
	assert_true(reg_may_talk(r, a.node, b.node));
	/* public targets resolve for anyone */
	assert_true(t_set_public(r, &c, true));
	assert_true(t_ok(t_resolve(r, &a, c.node), "resolve"));
	assert_true(reg_may_talk(r, a.node, c.node));
	/* a requester cannot sign as someone else */
	assert_true(t_err(t_req(r, "{\"type\":\"resolve\",\"node_id\":%u,\"requester_id\":%u,\"signature\":\"%s\"}",
				b.node, c.node, t_sign(&a, "resolve:%u:%u", c.node, b.node)), "bad_signature"));
	assert_true(t_err_ref(
		t_req(r, "{\"type\":\"resolve\",\"node_id\":%u,\"requester_id\":99,\"signature\":\"%s\"}",
		      b.node, t_sign(&a, "resolve:99:%u", b.node)),
		"not_found"));
}

/* relay_only (tunnel.md §10, §11): stored per registration, returned by lookup
 * and resolve, cleared by a register without it and by deregistration. */
static bool t_has_relay_only(json_object *o)
{
	json_object *v = json_object_object_get(o, "relay_only");
	bool yes = v && json_object_get_boolean(v);

	json_object_put(o);
	return yes;
}

static uint32_t t_register_relay_only(registry *r, tid *t)
{
	json_object *o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:0\","
			       "\"relay_only\":true}", t->pk);

	t->node = strcmp(t_type(o), "register_ok") ? 0 : (uint32_t)t_int(o, "node_id");
	json_object_put(o);
	return t->node;
}

static void test_relay_only(void **state)
{
	registry *r = *state;
	tid a, b;
	json_object *o;

	tid_new(&a);
	tid_new(&b);
	assert_true(t_register_relay_only(r, &a) > 0);
	t_register(r, &b, NULL);
	assert_true(t_set_public(r, &a, true));
	assert_true(t_set_public(r, &b, true));
	/* lookup: only the relay_only node says so */
	assert_true(t_has_relay_only(t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", a.node)));
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", b.node);
	assert_null(json_object_object_get(o, "relay_only"));
	json_object_put(o);
	/* resolve: relay_only with the (unusable) endpoint, port 0 */
	o = t_resolve(r, &b, a.node);
	assert_string_equal(t_type(o), "resolve_ok");
	assert_string_equal(t_str(o, "real_addr"), "198.18.0.2:0");
	assert_true(t_has_relay_only(o));
	assert_false(t_has_relay_only(t_resolve(r, &a, b.node)));
	/* a heartbeat keeps it; a register without it (the node left compat mode) clears it */
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
			       t_sign(&a, "heartbeat:%u", a.node)), "heartbeat"));
	assert_true(t_has_relay_only(t_resolve(r, &b, a.node)));
	assert_int_equal(t_register(r, &a, NULL), a.node);
	assert_true(t_hb(r, &a));
	assert_false(t_has_relay_only(t_resolve(r, &b, a.node)));
	assert_int_equal(t_register_relay_only(r, &a), a.node);
	assert_true(t_hb(r, &a));
	assert_true(t_has_relay_only(t_resolve(r, &b, a.node)));
	/* deregistered and back without it: cleared */
	assert_true(t_ok(t_req(r, "{\"type\":\"deregister\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
			       t_sign(&a, "deregister:%u", a.node)), "deregister"));
	assert_int_equal(t_register(r, &a, NULL), a.node);
	assert_true(t_hb(r, &a));
	assert_false(t_has_relay_only(t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", a.node)));
}

static void test_trust_revoke(void **state)
{
	registry *r = *state;
	tid a, b;
	json_object *o;

	tid_new(&a);
	tid_new(&b);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	assert_true(t_err(t_req(r, "{\"type\":\"revoke_trust\",\"node_id\":%u,\"peer_id\":%u,\"signature\":\"%s\"}",
				a.node, b.node, t_sign(&a, "revoke_trust:%u:%u", a.node, b.node)), "not_found"));
	o = t_req(r, "{\"type\":\"report_trust\",\"node_id\":%u,\"peer_id\":%u,\"signature\":\"%s\"}",
		  a.node, b.node, t_sign(&a, "report_trust:%u:%u", a.node, b.node));
	assert_string_equal(t_str(o, "status"), "pending");
	json_object_put(o);
	o = t_req(r, "{\"type\":\"report_trust\",\"node_id\":%u,\"peer_id\":%u,\"signature\":\"%s\"}",
		  b.node, a.node, t_sign(&b, "report_trust:%u:%u", b.node, a.node));
	assert_string_equal(t_str(o, "status"), "paired");
	json_object_put(o);
	/* revoked by the other side */
	assert_true(t_ok(t_req(r, "{\"type\":\"revoke_trust\",\"node_id\":%u,\"peer_id\":%u,\"signature\":\"%s\"}",
			       b.node, a.node, t_sign(&b, "revoke_trust:%u:%u", b.node, a.node)), "revoke_trust"));
	assert_false(reg_may_talk(r, a.node, b.node));
	/* and a's old half is gone too: b reporting alone does not pair again */
	assert_true(t_report(r, &b, &a));
	assert_false(reg_may_talk(r, a.node, b.node));
	assert_true(t_err(t_req(r, "{\"type\":\"report_trust\",\"node_id\":%u,\"peer_id\":%u,\"signature\":\"%s\"}",
				a.node, a.node, t_sign(&a, "report_trust:%u:%u", a.node, a.node)), "invalid_argument"));
	assert_true(t_err(t_req(r, "{\"type\":\"report_trust\",\"node_id\":%u,\"peer_id\":77,\"signature\":\"%s\"}",
				a.node, t_sign(&a, "report_trust:%u:77", a.node)), "not_found"));
}

static void test_handshake_consent(void **state)
{
	registry *r = *state;
	tid a, b, c;
	json_object *o, *reqs;

	tid_new(&a);
	tid_new(&b);
	tid_new(&c);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	t_register(r, &c, NULL);
	/* b cannot accept a handshake a never asked for */
	assert_true(t_err(t_req(r, "{\"type\":\"respond_handshake\",\"node_id\":%u,\"peer_id\":%u,\"accept\":true,\"signature\":\"%s\"}",
				b.node, a.node, t_sign(&b, "respond:%u:%u", b.node, a.node)), "forbidden"));
	o = t_req(r, "{\"type\":\"request_handshake\",\"from_node_id\":%u,\"to_node_id\":%u,\"justification\":\"hi\",\"signature\":\"%s\"}",
		  a.node, b.node, t_sign(&a, "handshake:%u:%u", a.node, b.node));
	assert_string_equal(t_str(o, "status"), "delivered");
	json_object_put(o);
	assert_true(t_err(t_req(r, "{\"type\":\"request_handshake\",\"from_node_id\":%u,\"to_node_id\":%u,\"justification\":\"again\",\"signature\":\"%s\"}",
				a.node, b.node, t_sign(&a, "handshake:%u:%u", a.node, b.node)), "conflict"));
	o = t_req(r, "{\"type\":\"poll_handshakes\",\"node_id\":%u,\"signature\":\"%s\"}", b.node,
		  t_sign(&b, "poll_handshakes:%u", b.node));
	assert_string_equal(t_type(o), "poll_handshakes_ok");
	reqs = json_object_object_get(o, "requests");
	assert_int_equal(json_object_array_length(reqs), 1);
	assert_int_equal(t_int(json_object_array_get_idx(reqs, 0), "from_node_id"), a.node);
	assert_string_equal(t_str(json_object_array_get_idx(reqs, 0), "justification"), "hi");
	assert_int_equal(t_int(json_object_array_get_idx(reqs, 0), "timestamp"), t_ts());
	assert_int_equal(json_object_array_length(json_object_object_get(o, "responses")), 0);
	json_object_put(o);
	/* polled requests can still be accepted (the record is kept) */
	o = t_req(r, "{\"type\":\"respond_handshake\",\"node_id\":%u,\"peer_id\":%u,\"accept\":true,\"signature\":\"%s\"}",
		  b.node, a.node, t_sign(&b, "respond:%u:%u", b.node, a.node));
	assert_string_equal(t_type(o), "respond_handshake_ok");
	assert_true(json_object_get_boolean(json_object_object_get(o, "accept")));
	assert_int_equal(t_int(o, "peer_id"), a.node);
	json_object_put(o);
	assert_true(reg_may_talk(r, a.node, b.node));
	o = t_req(r, "{\"type\":\"poll_handshakes\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
		  t_sign(&a, "poll_handshakes:%u", a.node));
	reqs = json_object_object_get(o, "responses");
	assert_int_equal(json_object_array_length(reqs), 1);
	assert_int_equal(t_int(json_object_array_get_idx(reqs, 0), "from_node_id"), b.node);
	json_object_put(o);
	/* a request does not let c make itself trusted by answering for b */
	assert_true(t_err(t_req(r, "{\"type\":\"respond_handshake\",\"node_id\":%u,\"peer_id\":%u,\"accept\":true,\"signature\":\"%s\"}",
				c.node, a.node, t_sign(&c, "respond:%u:%u", c.node, a.node)), "forbidden"));
	/* a reject without a request is harmless and succeeds */
	assert_true(t_ok(t_req(r, "{\"type\":\"respond_handshake\",\"node_id\":%u,\"peer_id\":%u,\"accept\":false,\"signature\":\"%s\"}",
			       c.node, a.node, t_sign(&c, "respond:%u:%u", c.node, a.node)), "respond_handshake"));
	assert_false(reg_may_talk(r, a.node, c.node));
	/* a request followed by the target's report_trust also pairs */
	assert_true(t_ok(t_req(r, "{\"type\":\"request_handshake\",\"from_node_id\":%u,\"to_node_id\":%u,\"justification\":\"\",\"signature\":\"%s\"}",
			       a.node, c.node, t_sign(&a, "handshake:%u:%u", a.node, c.node)), "request_handshake"));
	assert_true(t_report(r, &c, &a));
	assert_true(reg_may_talk(r, a.node, c.node));
}

static void test_handshake_inbox_cap(void **state)
{
	registry *r = *state;
	tid t, s;

	tid_new(&t);
	t_register(r, &t, NULL);
	reg_close(r);
	reg_config c = { 0 };
	char err[128];

	c.ratelimit_disabled = true;
	*state = r = reg_open(&c, err, sizeof(err));
	t_register(r, &t, NULL);
	for (int i = 0; i < 101; i++) {
		json_object *o;

		tid_new(&s);
		t_register(r, &s, NULL);
		o = t_req(r, "{\"type\":\"request_handshake\",\"from_node_id\":%u,\"to_node_id\":%u,\"signature\":\"%s\"}",
			  s.node, t.node, t_sign(&s, "handshake:%u:%u", s.node, t.node));
		if (i < 100)
			assert_true(t_ok(o, "request_handshake"));
		else
			assert_true(t_err(o, "limit"));
	}
}

static void test_rotate_key(void **state)
{
	registry *r = *state;
	tid a, b, n;
	json_object *o;

	tid_new(&a);
	tid_new(&b);
	tid_new(&n);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	assert_true(t_err(t_req(r, "{\"type\":\"rotate_key\",\"node_id\":%u,\"new_public_key\":\"%s\"}", a.node, n.pk),
			  "bad_signature"));
	assert_true(t_err(t_req(r, "{\"type\":\"rotate_key\",\"node_id\":%u,\"new_public_key\":\"junk\",\"signature\":\"%s\"}",
				a.node, t_sign(&a, "rotate:%u", a.node)), "invalid_argument"));
	/* a key already bound to another node is refused */
	assert_true(t_err(t_req(r, "{\"type\":\"rotate_key\",\"node_id\":%u,\"new_public_key\":\"%s\",\"signature\":\"%s\"}",
				a.node, b.pk, t_sign(&a, "rotate:%u", a.node)), "conflict"));
	o = t_req(r, "{\"type\":\"rotate_key\",\"node_id\":%u,\"new_public_key\":\"%s\",\"signature\":\"%s\"}",
		  a.node, n.pk, t_sign(&a, "rotate:%u", a.node));
	assert_string_equal(t_type(o), "rotate_key_ok");
	assert_string_equal(t_str(o, "public_key"), n.pk);
	assert_string_equal(t_str(o, "address"), "0:0000.0000.0001");
	json_object_put(o);
	n.node = a.node;
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
				t_sign(&a, "heartbeat:%u", a.node)), "bad_signature"));
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
			       t_sign(&n, "heartbeat:%u", a.node)), "heartbeat"));
	/* registering with the new key finds the node */
	assert_int_equal(t_register(r, &n, NULL), a.node);
}

static void test_polo(void **state)
{
	registry *r = *state;
	tid a;
	json_object *o;

	tid_new(&a);
	t_register(r, &a, NULL);
	o = t_req(r, "{\"type\":\"update_polo_score\",\"node_id\":%u,\"delta\":5.9}", a.node);
	assert_int_equal(t_int(o, "polo_score"), 5);
	assert_string_equal(t_str(o, "address"), "0:0000.0000.0001");
	json_object_put(o);
	o = t_req(r, "{\"type\":\"update_polo_score\",\"node_id\":%u,\"delta\":-7}", a.node);
	assert_int_equal(t_int(o, "polo_score"), -2);
	json_object_put(o);
	assert_true(t_err(t_req(r, "{\"type\":\"update_polo_score\",\"node_id\":%u}", a.node), "invalid_argument"));
	assert_true(t_err(t_req(r, "{\"type\":\"set_polo_score\",\"node_id\":%u,\"polo_score\":\"9\"}", a.node), "invalid_argument"));
	assert_true(t_ok(t_req(r, "{\"type\":\"set_polo_score\",\"node_id\":%u,\"polo_score\":42}", a.node), "set_polo_score"));
	o = t_req(r, "{\"type\":\"get_polo_score\",\"node_id\":%u}", a.node);
	assert_string_equal(t_type(o), "get_polo_score_ok");
	assert_int_equal(t_int(o, "polo_score"), 42);
	json_object_put(o);
	assert_true(t_err(t_req(r, "{\"type\":\"get_polo_score\",\"node_id\":88}"), "not_found"));
}

static void test_punch(void **state)
{
	registry *r = *state;
	tid a, b, c;
	json_object *o;

	tid_new(&a);
	tid_new(&b);
	tid_new(&c);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	t_register(r, &c, NULL);
	/* private b, no trust: refused */
	assert_true(t_err(t_req(r, "{\"type\":\"punch\",\"requester_id\":%u,\"node_a\":%u,\"node_b\":%u,\"signature\":\"%s\"}",
				a.node, a.node, b.node, t_sign(&a, "punch:%u:%u", a.node, b.node)), "forbidden"));
	/* not a participant */
	assert_true(t_err(t_req(r, "{\"type\":\"punch\",\"requester_id\":%u,\"node_a\":%u,\"node_b\":%u,\"signature\":\"%s\"}",
				c.node, a.node, b.node, t_sign(&c, "punch:%u:%u", a.node, b.node)), "forbidden"));
	assert_true(t_report(r, &a, &b));
	assert_true(t_report(r, &b, &a));
	o = t_req(r, "{\"type\":\"punch\",\"requester_id\":%u,\"node_a\":%u,\"node_b\":%u,\"signature\":\"%s\"}",
		  a.node, a.node, b.node, t_sign(&a, "punch:%u:%u", a.node, b.node));
	assert_string_equal(t_type(o), "punch_ok");
	assert_string_equal(t_str(o, "node_a_addr"), "198.18.0.2:4000");
	assert_string_equal(t_str(o, "node_b_addr"), "198.18.0.2:4000");
	assert_int_equal(t_int(o, "node_b"), b.node);
	json_object_put(o);
	assert_true(t_err(t_req(r, "{\"type\":\"punch\",\"requester_id\":%u,\"node_a\":%u,\"node_b\":99,\"signature\":\"%s\"}",
				a.node, a.node, t_sign(&a, "punch:%u:99", a.node)), "not_found"));
}

static void test_beacons(void **state)
{
	registry *r = *state;
	json_object *o;

	assert_true(t_err(t_req(r, "{\"type\":\"beacon_register\",\"beacon_id\":0,\"addr\":\"1.2.3.4:9001\"}"), "invalid_argument"));
	assert_true(t_err(t_req(r, "{\"type\":\"beacon_register\",\"beacon_id\":3}"), "invalid_argument"));
	o = t_req(r, "{\"type\":\"beacon_register\",\"beacon_id\":3,\"addr\":\"1.2.3.4:9001\"}");
	assert_int_equal(t_int(o, "beacon_id"), 3);
	json_object_put(o);
	o = t_req(r, "{\"type\":\"beacon_list\"}");
	assert_int_equal(json_object_array_length(json_object_object_get(o, "beacons")), 1);
	assert_string_equal(t_str(json_object_array_get_idx(json_object_object_get(o, "beacons"), 0), "addr"), "1.2.3.4:9001");
	json_object_put(o);
	t_now += 61000;
	reg_tick(r, t_now);
	o = t_req(r, "{\"type\":\"beacon_list\"}");
	assert_int_equal(json_object_array_length(json_object_object_get(o, "beacons")), 0);
	json_object_put(o);
}

static void test_list_networks_backbone(void **state)
{
	registry *r = *state;
	tid a;
	json_object *o, *n0;

	tid_new(&a);
	t_register(r, &a, NULL);
	o = t_req(r, "{\"type\":\"list_networks\"}");
	n0 = json_object_array_get_idx(json_object_object_get(o, "networks"), 0);
	assert_string_equal(t_str(n0, "name"), "backbone");
	assert_string_equal(t_str(n0, "join_rule"), "open");
	assert_int_equal(t_int(n0, "members"), 1);
	json_object_put(o);
	assert_true(t_err(t_req(r, "{\"type\":\"list_nodes\",\"network_id\":0}"), "forbidden"));
	assert_true(t_err(t_req(r, "{\"type\":\"list_nodes\"}"), "forbidden"));
	assert_true(t_err(t_req(r, "{\"type\":\"list_nodes\",\"network_id\":9}"), "not_found"));
}

/* ---- signatures v2 ---- */
static void test_sig_v2(void **state)
{
	registry *r = *state;
	tid a;
	long long ts = t_ts();

	tid_new(&a);
	t_register(r, &a, NULL);
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       a.node, ts, t_sign(&a, "pilot2:heartbeat:%lld:%u", ts, a.node)), "heartbeat"));
	/* exact replay */
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
				a.node, ts, t_sign(&a, "pilot2:heartbeat:%lld:%u", ts, a.node)), "replayed_signature"));
	/* stale, in both directions */
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
				a.node, ts - 121, t_sign(&a, "pilot2:heartbeat:%lld:%u", ts - 121, a.node)), "stale_signature"));
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
				a.node, ts + 121, t_sign(&a, "pilot2:heartbeat:%lld:%u", ts + 121, a.node)), "stale_signature"));
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       a.node, ts - 120, t_sign(&a, "pilot2:heartbeat:%lld:%u", ts - 120, a.node)), "heartbeat"));
	/* values are bound: a signature for public=true does not set public=false */
	assert_true(t_err(t_req(r, "{\"type\":\"set_visibility\",\"node_id\":%u,\"public\":false,\"sig_ts\":%lld,\"signature\":\"%s\"}",
				a.node, ts, t_sign(&a, "pilot2:set_visibility:%lld:%u:true", ts, a.node)), "bad_signature"));
	assert_true(t_ok(t_req(r, "{\"type\":\"set_visibility\",\"node_id\":%u,\"public\":true,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       a.node, ts, t_sign(&a, "pilot2:set_visibility:%lld:%u:true", ts, a.node)), "set_visibility"));
	/* operation is bound: a heartbeat signature is not a deregister one */
	assert_true(t_err(t_req(r, "{\"type\":\"deregister\",\"node_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
				a.node, ts + 1, t_sign(&a, "pilot2:heartbeat:%lld:%u", ts + 1, a.node)), "bad_signature"));
	assert_true(t_ok(t_req(r, "{\"type\":\"set_hostname\",\"node_id\":%u,\"hostname\":\"v2host\",\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       a.node, ts, t_sign(&a, "pilot2:set_hostname:%lld:%u:v2host", ts, a.node)), "set_hostname"));
	assert_true(t_ok(t_req(r, "{\"type\":\"set_tags\",\"node_id\":%u,\"tags\":[\"#a\",\"b\"],\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       a.node, ts, t_sign(&a, "pilot2:set_tags:%lld:%u:#a,b", ts, a.node)), "set_tags"));
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"sig_ts\":\"x\",\"signature\":\"%s\"}",
				a.node, t_sign(&a, "pilot2:heartbeat:0:%u", a.node)), "invalid_argument"));
	/* the replay cache forgets signatures once they are stale anyway */
	t_now += 300000;
	reg_tick(r, t_now);
}

static void test_sig_v2_handshake_rotate(void **state)
{
	registry *r = *state;
	tid a, b, n;
	long long ts = t_ts();
	uint8_t h[32];
	char hex[65];

	tid_new(&a);
	tid_new(&b);
	tid_new(&n);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	crypto_hash_sha256(h, (const uint8_t *)"let me in", 9);
	sodium_bin2hex(hex, sizeof(hex), h, 32);
	assert_true(t_ok(t_req(r, "{\"type\":\"request_handshake\",\"from_node_id\":%u,\"to_node_id\":%u,\"justification\":\"let me in\",\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       a.node, b.node, ts, t_sign(&a, "pilot2:request_handshake:%lld:%u:%u:%s", ts, a.node, b.node, hex)),
		    "request_handshake"));
	/* accept=false signature cannot be turned into accept=true */
	assert_true(t_err(t_req(r, "{\"type\":\"respond_handshake\",\"node_id\":%u,\"peer_id\":%u,\"accept\":true,\"sig_ts\":%lld,\"signature\":\"%s\"}",
				b.node, a.node, ts, t_sign(&b, "pilot2:respond_handshake:%lld:%u:%u:false", ts, b.node, a.node)),
			  "bad_signature"));
	assert_true(t_ok(t_req(r, "{\"type\":\"respond_handshake\",\"node_id\":%u,\"peer_id\":%u,\"accept\":true,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       b.node, a.node, ts, t_sign(&b, "pilot2:respond_handshake:%lld:%u:%u:true", ts, b.node, a.node)),
		    "respond_handshake"));
	assert_true(reg_may_talk(r, a.node, b.node));
	/* a has signed with v2: its v1 signatures are refused from now on (no downgrade) */
	assert_true(t_err(t_resolve(r, &a, b.node), "bad_signature"));
	assert_true(t_ok(t_req(r, "{\"type\":\"resolve\",\"node_id\":%u,\"requester_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       b.node, a.node, ts, t_sign(&a, "pilot2:resolve:%lld:%u:%u", ts, a.node, b.node)), "resolve"));
	assert_true(t_ok(t_req(r, "{\"type\":\"punch\",\"requester_id\":%u,\"node_a\":%u,\"node_b\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       a.node, a.node, b.node, ts, t_sign(&a, "pilot2:punch:%lld:%u:%u:%u", ts, a.node, a.node, b.node)), "punch"));
	/* rotate_key binds the new key */
	assert_true(t_err(t_req(r, "{\"type\":\"rotate_key\",\"node_id\":%u,\"new_public_key\":\"%s\",\"sig_ts\":%lld,\"signature\":\"%s\"}",
				a.node, n.pk, ts, t_sign(&a, "pilot2:rotate_key:%lld:%u:%s", ts, a.node, b.pk)), "bad_signature"));
	assert_true(t_ok(t_req(r, "{\"type\":\"rotate_key\",\"node_id\":%u,\"new_public_key\":\"%s\",\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       a.node, n.pk, ts, t_sign(&a, "pilot2:rotate_key:%lld:%u:%s", ts, a.node, n.pk)), "rotate_key"));
	assert_true(t_ok(t_req(r, "{\"type\":\"revoke_trust\",\"node_id\":%u,\"peer_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       b.node, a.node, ts, t_sign(&b, "pilot2:revoke_trust:%lld:%u:%u", ts, b.node, a.node)), "revoke_trust"));
	assert_false(reg_may_talk(r, a.node, b.node));
}

static void test_strict_mode(void **state)
{
	registry *r = t_open(NULL, true, NULL);
	tid a;
	json_object *o;
	long long ts = t_ts();

	(void)state;
	tid_new(&a);
	/* register must be signed in strict mode */
	assert_true(t_err(t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\":4000\"}", a.pk),
			  "bad_signature"));
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\":4000\",\"sig_ts\":%lld,\"signature\":\"%s\"}",
		  a.pk, ts, t_sign(&a, "pilot2:register:%lld:%s::4000", ts, a.pk));
	assert_string_equal(t_type(o), "register_ok");
	a.node = (uint32_t)t_int(o, "node_id");
	json_object_put(o);
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
				t_sign(&a, "heartbeat:%u", a.node)), "bad_signature"));
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       a.node, ts, t_sign(&a, "pilot2:heartbeat:%lld:%u", ts, a.node)), "heartbeat"));
	reg_close(r);
}

/* ---- rate limits ---- */
static void test_ratelimit_register(void **state)
{
	registry *r = *state;
	tid keys[12];

	for (int i = 0; i < 10; i++) {
		tid_new(&keys[i]);
		assert_int_not_equal(t_register(r, &keys[i], NULL), 0);
	}
	tid_new(&keys[10]);
	assert_true(t_err(t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\"}", keys[10].pk), "rate_limited"));
	/* a known key is exempt */
	assert_int_equal(t_register(r, &keys[3], NULL), keys[3].node);
	/* another source is unaffected */
	t_ip = "198.18.0.3";
	assert_int_not_equal(t_register(r, &keys[10], NULL), 0);
	/* refill: 10 per minute */
	t_ip = "198.18.0.2";
	t_now += 6100;
	tid_new(&keys[11]);
	assert_int_not_equal(t_register(r, &keys[11], NULL), 0);
}

/* Instances on one database share per-source budgets (reg_rl_spent on one,
 * through the change feed, reg_rl_charge on the other): a source that used its
 * register budget on A has none left on B; others keep theirs. A truncated or
 * bogus feed entry is ignored. */
static void test_ratelimit_shared(void **state)
{
	registry *a = *state, *b = t_open(NULL, false, NULL);
	uint8_t blob[4096];
	size_t n;
	tid keys[12];

	assert_non_null(b);
	for (int i = 0; i < 10; i++) {
		tid_new(&keys[i]);
		assert_int_not_equal(t_register(a, &keys[i], NULL), 0);
	}
	n = reg_rl_spent(a, blob, sizeof(blob));
	assert_true(n > 0);
	assert_int_equal(reg_rl_spent(a, blob + n, sizeof(blob) - n), 0); /* taken once */
	for (size_t cut = 0; cut < n; cut++)                              /* never read past len */
		reg_rl_charge(b, blob, cut, t_now);
	tid_new(&keys[11]); /* the cut entries charged nothing: the source registers on b */
	assert_int_not_equal(t_register(b, &keys[11], NULL), 0);
	reg_rl_charge(b, blob, n, t_now);
	tid_new(&keys[10]);
	assert_true(t_err(t_req(b, "{\"type\":\"register\",\"public_key\":\"%s\"}", keys[10].pk),
			  "rate_limited"));
	t_ip = "198.18.0.3";
	assert_int_not_equal(t_register(b, &keys[10], NULL), 0);
	t_ip = "198.18.0.2";
	blob[0] = 0; /* a zero-length key ends the list */
	reg_rl_charge(b, blob, n, t_now);
	reg_close(b);
}

static void test_ratelimit_misses(void **state)
{
	registry *r = *state;
	int limited = 0;

	for (int i = 0; i < 40; i++) {
		json_object *o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%d}", 1000 + i);

		if (!strcmp(t_code(o), "rate_limited"))
			limited++;
		json_object_put(o);
	}
	assert_int_equal(limited, 20);
	/* IPv6 sources share a bucket per /64 */
	t_ip = "2001:db8::1";
	for (int i = 0; i < 20; i++)
		json_object_put(t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"h%d\"}", i));
	t_ip = "2001:db8::2";
	assert_true(t_err(t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"x\"}"), "rate_limited"));
	t_ip = "2001:db8:1::2";
	assert_true(t_err(t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"x\"}"), "not_found"));
}

static void test_ratelimit_writes(void **state)
{
	registry *r = *state;
	tid a;
	int ok = 0;

	tid_new(&a);
	t_register(r, &a, NULL);
	for (int i = 0; i < 200; i++) {
		json_object *o = t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
				       t_sign(&a, "heartbeat:%u", a.node));

		ok += strcmp(t_type(o), "heartbeat_ok") == 0;
		json_object_put(o);
	}
	assert_int_equal(ok, 120);
	t_now += 1000; /* 2 per second */
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
			       t_sign(&a, "heartbeat:%u", a.node)), "heartbeat"));
	reg_stats st;

	reg_get_stats(r, t_now, &st);
	assert_true(st.rate_limited >= 80);
	assert_int_equal(st.nodes_total, 1);
	assert_int_equal(st.nodes_online, 1);
}

static void test_standby(void **state)
{
	reg_config c = { 0 };
	char err[128];
	registry *r;

	(void)state;
	c.standby = true;
	r = reg_open(&c, err, sizeof(err));
	assert_non_null(r);
	assert_true(t_err(t_req(r, "{\"type\":\"register\",\"public_key\":\"x\"}"), "read_only"));
	assert_true(t_err(t_req(r, "{\"type\":\"get_polo_score\",\"node_id\":1}"), "read_only"));
	assert_true(t_err(t_req(r, "{\"type\":\"create_network\",\"node_id\":1}"), "read_only"));
	assert_true(t_ok(t_req(r, "{\"type\":\"list_networks\"}"), "list_networks"));
	assert_true(t_ok(t_req(r, "{\"type\":\"beacon_list\"}"), "beacon_list"));
	assert_true(t_err(t_req(r, "{\"type\":\"lookup\",\"node_id\":1}"), "not_found"));
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":1}"), "not_found"));
	reg_close(r);
}

static void test_null_ctx_and_stats(void **state)
{
	registry *r = *state;
	json_object *q = json_tokener_parse("{\"type\":\"list_networks\"}"), *o;
	reg_stats st;

	o = reg_handle(r, q, NULL);
	assert_string_equal(t_type(o), "list_networks_ok");
	json_object_put(o);
	json_object_put(q);
	o = reg_handle(r, NULL, NULL);
	assert_string_equal(t_code(o), "unknown_type");
	json_object_put(o);
	reg_get_stats(r, t_now, &st);
	assert_int_equal(st.requests, 2);
	assert_int_equal(st.errors, 1);
	assert_int_equal(st.networks, 1);
	reg_close(NULL);
}

static void test_generation(void **state)
{
	registry *r = *state;
	tid a;
	uint64_t g0 = reg_generation(r), g1;

	tid_new(&a);
	t_register(r, &a, NULL);
	g1 = reg_generation(r);
	assert_true(g1 > g0);
	/* heartbeats, lookups and quiet reaper runs do not change it */
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
			       t_sign(&a, "heartbeat:%u", a.node)), "heartbeat"));
	assert_true(t_ok(t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", a.node), "lookup"));
	reg_tick(r, t_now);
	reg_tick(r, t_now + 61000);
	assert_int_equal(reg_generation(r), g1);
	assert_true(t_set_public(r, &a, true));
	assert_true(reg_generation(r) > g1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_register_basic),
		T(test_register_addr_sanitise),
		T(test_register_invalid),
		T(test_register_hostname),
		T(test_heartbeat),
		T(test_lookup_fields),
		T(test_setters),
		T(test_deregister_and_reclaim_by_key),
		T(test_reaping),
		T(test_owner_reclaim),
		T(test_resolve_privacy),
		T(test_relay_only),
		T(test_trust_revoke),
		T(test_handshake_consent),
		T(test_handshake_inbox_cap),
		T(test_rotate_key),
		T(test_polo),
		T(test_punch),
		T(test_beacons),
		T(test_list_networks_backbone),
		T(test_sig_v2),
		T(test_sig_v2_handshake_rotate),
		T(test_strict_mode),
		T(test_ratelimit_register),
		T(test_ratelimit_shared),
		T(test_ratelimit_misses),
		T(test_ratelimit_writes),
		T(test_standby),
		T(test_null_ctx_and_stats),
		T(test_generation),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
