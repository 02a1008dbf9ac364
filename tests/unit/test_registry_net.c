/* Registry networks: create (signature, name rules, admin token gating, ID
 * exhaustion), join rules open/token/invite, leave, invites, list_nodes, and
 * membership granting resolve rights. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tests/unit/test_registry_util.h"

static int setup(void **state)
{
	t_now = 1700000000000ULL;
	*state = t_open(NULL, false, NULL);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	reg_close(*state);
	return 0;
}

static json_object *create(registry *r, tid *a, const char *name, const char *rule, const char *token)
{
	return t_req(r, "{\"type\":\"create_network\",\"node_id\":%u,\"name\":\"%s\",\"join_rule\":\"%s\",\"token\":\"%s\",\"signature\":\"%s\"}",
		     a->node, name, rule, token, t_sign(a, "create_network:%u:%s", a->node, name));
}

static uint16_t create_ok(registry *r, tid *a, const char *name, const char *rule, const char *token)
{
	json_object *o = create(r, a, name, rule, token);
	uint16_t id = 0;

	if (!strcmp(t_type(o), "create_network_ok"))
		id = (uint16_t)t_int(o, "network_id");
	else
		fprintf(stderr, "create failed: %s\n", json_object_to_json_string(o));
	json_object_put(o);
	return id;
}

static json_object *join(registry *r, tid *a, uint16_t net, const char *extra)
{
	return t_req(r, "{\"type\":\"join_network\",\"node_id\":%u,\"network_id\":%u,%s\"signature\":\"%s\"}",
		     a->node, net, extra ? extra : "", t_sign(a, "join_network:%u:%u", a->node, net));
}

/* The same in v2, for nodes that have signed v2 (no v1 from then on). */
static json_object *join2(registry *r, tid *a, uint16_t net)
{
	long long ts = t_ts();

	return t_req(r, "{\"type\":\"join_network\",\"node_id\":%u,\"network_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
		     a->node, net, ts, t_sign(a, "pilot2:join_network:%lld:%u:%u", ts, a->node, net));
}

static void test_create_rules(void **state)
{
	registry *r = *state;
	tid a;
	json_object *o;

	tid_new(&a);
	t_register(r, &a, NULL);
	o = create(r, &a, "lab", "open", "");
	assert_string_equal(t_type(o), "create_network_ok");
	assert_int_equal(t_int(o, "network_id"), 1);
	assert_string_equal(t_str(o, "name"), "lab");
	json_object_put(o);
	assert_true(t_err(create(r, &a, "lab", "open", ""), "conflict"));
	assert_true(t_err(create(r, &a, "backbone", "open", ""), "invalid_argument"));
	assert_true(t_err(create(r, &a, "Bad", "open", ""), "invalid_argument"));
	assert_true(t_err(create(r, &a, "", "open", ""), "invalid_argument"));
	assert_true(t_err(create(r, &a, "x", "weird", ""), "invalid_argument"));
	assert_true(t_err(create(r, &a, "tok", "token", ""), "invalid_argument"));
	/* unsigned / wrongly signed */
	assert_true(t_err(t_req(r, "{\"type\":\"create_network\",\"node_id\":%u,\"name\":\"n2\"}", a.node), "bad_signature"));
	assert_true(t_err(t_req(r, "{\"type\":\"create_network\",\"node_id\":%u,\"name\":\"n2\",\"signature\":\"%s\"}",
				a.node, t_sign(&a, "create_network:%u:other", a.node)), "bad_signature"));
	/* v2 binds the join rule */
	long long ts = t_ts();

	assert_true(t_err(t_req(r, "{\"type\":\"create_network\",\"node_id\":%u,\"name\":\"n2\",\"join_rule\":\"open\",\"sig_ts\":%lld,\"signature\":\"%s\"}",
				a.node, ts, t_sign(&a, "pilot2:create_network:%lld:%u:n2:invite", ts, a.node)), "bad_signature"));
	assert_true(t_ok(t_req(r, "{\"type\":\"create_network\",\"node_id\":%u,\"name\":\"n2\",\"join_rule\":\"invite\",\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       a.node, ts, t_sign(&a, "pilot2:create_network:%lld:%u:n2:invite", ts, a.node)), "create_network"));
	o = t_req(r, "{\"type\":\"list_networks\"}");
	assert_int_equal(json_object_array_length(json_object_object_get(o, "networks")), 3);
	json_object_put(o);
	/* the creator is a member: list_nodes shows it in that network's address form */
	o = t_req(r, "{\"type\":\"list_nodes\",\"network_id\":1}");
	assert_string_equal(t_type(o), "list_nodes_ok");
	assert_int_equal(json_object_array_length(json_object_object_get(o, "nodes")), 1);
	assert_string_equal(t_str(json_object_array_get_idx(json_object_object_get(o, "nodes"), 0), "address"),
			    "1:0001.0000.0001");
	json_object_put(o);
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", a.node);
	assert_int_equal(json_object_array_length(json_object_object_get(o, "networks")), 3);
	json_object_put(o);
}

static void test_create_limit_per_creator(void **state)
{
	registry *r = *state;
	tid a;
	char name[16];

	tid_new(&a);
	t_register(r, &a, NULL);
	for (int i = 0; i < 16; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		assert_int_not_equal(create_ok(r, &a, name, "open", ""), 0);
	}
	assert_true(t_err(create(r, &a, "n16", "open", ""), "limit"));
}

static void test_admin_token_gating(void **state)
{
	registry *r = t_open(NULL, false, "s3cret");
	tid a, b;
	uint16_t net;

	(void)state;
	tid_new(&a);
	tid_new(&b);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	/* creation needs the admin token in addition to the signature */
	assert_true(t_err(create(r, &a, "ops", "invite", ""), "forbidden"));
	assert_true(t_err(t_req(r, "{\"type\":\"create_network\",\"node_id\":%u,\"name\":\"ops\",\"join_rule\":\"invite\",\"admin_token\":\"wrong\",\"signature\":\"%s\"}",
				a.node, t_sign(&a, "create_network:%u:ops", a.node)), "forbidden"));
	assert_true(t_err(t_req(r, "{\"type\":\"create_network\",\"node_id\":%u,\"name\":\"ops\",\"join_rule\":\"invite\",\"admin_token\":\"s3cret\"}",
				a.node), "bad_signature"));
	json_object *o = t_req(r, "{\"type\":\"create_network\",\"node_id\":%u,\"name\":\"ops\",\"join_rule\":\"invite\",\"admin_token\":\"s3cret\",\"signature\":\"%s\"}",
			       a.node, t_sign(&a, "create_network:%u:ops", a.node));

	assert_string_equal(t_type(o), "create_network_ok");
	net = (uint16_t)t_int(o, "network_id");
	json_object_put(o);
	/* the admin token is a fallback for join: it bypasses the invite rule, no signature */
	assert_true(t_err(join(r, &b, net, NULL), "forbidden"));
	o = t_req(r, "{\"type\":\"join_network\",\"node_id\":%u,\"network_id\":%u,\"admin_token\":\"s3cret\"}", b.node, net);
	assert_string_equal(t_type(o), "join_network_ok");
	assert_string_equal(t_str(o, "address"), "1:0001.0000.0002");
	json_object_put(o);
	assert_true(t_ok(t_req(r, "{\"type\":\"leave_network\",\"node_id\":%u,\"network_id\":%u,\"admin_token\":\"s3cret\"}",
			       b.node, net), "leave_network"));
	assert_true(t_err(t_req(r, "{\"type\":\"leave_network\",\"node_id\":%u,\"network_id\":%u,\"admin_token\":\"nope\"}",
				a.node, net), "bad_signature"));
	reg_close(r);
}

static void test_join_open_and_privacy(void **state)
{
	registry *r = *state;
	tid a, b;
	uint16_t net;
	json_object *o;

	tid_new(&a);
	tid_new(&b);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	net = create_ok(r, &a, "team", "", "");
	assert_int_equal(net, 1);
	assert_true(t_err_ref(t_resolve(r, &b, a.node), "forbidden"));
	assert_false(reg_may_talk(r, a.node, b.node));
	assert_true(t_err(t_req(r, "{\"type\":\"join_network\",\"node_id\":%u,\"network_id\":%u,\"signature\":\"%s\"}",
				b.node, net, t_sign(&b, "join_network:%u:%u", b.node, net + 1)), "bad_signature"));
	o = join(r, &b, net, NULL);
	assert_string_equal(t_type(o), "join_network_ok");
	assert_int_equal(t_int(o, "network_id"), net);
	json_object_put(o);
	assert_true(t_err(join(r, &b, net, NULL), "conflict"));
	/* shared non-backbone network grants resolve */
	assert_true(reg_may_talk(r, a.node, b.node));
	assert_true(t_ok(t_resolve(r, &b, a.node), "resolve"));
	o = t_req(r, "{\"type\":\"list_nodes\",\"network_id\":%u}", net);
	assert_int_equal(json_object_array_length(json_object_object_get(o, "nodes")), 2);
	assert_null(t_str(json_object_array_get_idx(json_object_object_get(o, "nodes"), 0), "real_addr"));
	json_object_put(o);
	/* leave (v2) */
	long long ts = t_ts();

	assert_true(t_ok(t_req(r, "{\"type\":\"leave_network\",\"node_id\":%u,\"network_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       b.node, net, ts, t_sign(&b, "pilot2:leave_network:%lld:%u:%u", ts, b.node, net)), "leave_network"));
	assert_false(reg_may_talk(r, a.node, b.node));
	/* b has signed v2 now: v1 is refused for it (no downgrade) */
	assert_true(t_err(t_req(r, "{\"type\":\"leave_network\",\"node_id\":%u,\"network_id\":%u,\"signature\":\"%s\"}",
				b.node, net, t_sign(&b, "leave_network:%u:%u", b.node, net)), "bad_signature"));
	assert_true(t_err(t_req(r, "{\"type\":\"leave_network\",\"node_id\":%u,\"network_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
				b.node, net, ts + 1, t_sign(&b, "pilot2:leave_network:%lld:%u:%u", ts + 1, b.node, net)), "not_found"));
	assert_true(t_err(t_req(r, "{\"type\":\"leave_network\",\"node_id\":%u,\"network_id\":0,\"sig_ts\":%lld,\"signature\":\"%s\"}",
				b.node, ts, t_sign(&b, "pilot2:leave_network:%lld:%u:0", ts, b.node)), "forbidden"));
	assert_true(t_err(join2(r, &b, 0), "forbidden"));
	assert_true(t_err(join(r, &b, 77, NULL), "not_found"));
}

static void test_join_token(void **state)
{
	registry *r = *state;
	tid a, b;
	uint16_t net;

	tid_new(&a);
	tid_new(&b);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	net = create_ok(r, &a, "vault", "token", "open-sesame");
	assert_true(t_err(join(r, &b, net, NULL), "forbidden"));
	assert_true(t_err(join(r, &b, net, "\"token\":\"open-sesam\","), "forbidden"));
	assert_true(t_err(join(r, &b, net, "\"token\":\"open-sesame!\","), "forbidden"));
	assert_true(t_ok(join(r, &b, net, "\"token\":\"open-sesame\","), "join_network"));
	/* the token never leaks through list_networks */
	json_object *o = t_req(r, "{\"type\":\"list_networks\"}");

	assert_null(strstr(json_object_to_json_string(o), "sesame"));
	json_object_put(o);
}

static void test_invites(void **state)
{
	registry *r = *state;
	tid a, b, c;
	uint16_t net;
	json_object *o, *inv;

	tid_new(&a);
	tid_new(&b);
	tid_new(&c);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	t_register(r, &c, NULL);
	net = create_ok(r, &a, "club", "invite", "");
	/* no invite: refused; the reference's unsigned inviter_id is not enough */
	assert_true(t_err(join(r, &b, net, NULL), "forbidden"));
	o = t_req(r, "{\"type\":\"join_network\",\"node_id\":%u,\"network_id\":%u,\"inviter_id\":%u,\"signature\":\"%s\"}",
		  b.node, net, a.node, t_sign(&b, "join_network:%u:%u", b.node, net));
	assert_true(t_err(o, "forbidden"));
	/* non-members cannot invite */
	assert_true(t_err(t_req(r, "{\"type\":\"invite_to_network\",\"inviter_id\":%u,\"network_id\":%u,\"target_node_id\":%u,\"signature\":\"%s\"}",
				c.node, net, b.node, t_sign(&c, "invite:%u:%u:%u", c.node, net, b.node)), "forbidden"));
	assert_true(t_err(t_req(r, "{\"type\":\"invite_to_network\",\"inviter_id\":%u,\"network_id\":%u,\"target_node_id\":%u,\"signature\":\"%s\"}",
				a.node, net, b.node, t_sign(&a, "invite:%u:%u:%u", a.node, net, c.node)), "bad_signature"));
	o = t_req(r, "{\"type\":\"invite_to_network\",\"inviter_id\":%u,\"network_id\":%u,\"target_node_id\":%u,\"signature\":\"%s\"}",
		  a.node, net, b.node, t_sign(&a, "invite:%u:%u:%u", a.node, net, b.node));
	assert_string_equal(t_type(o), "invite_to_network_ok");
	json_object_put(o);
	assert_true(t_ok(t_req(r, "{\"type\":\"invite_to_network\",\"inviter_id\":%u,\"network_id\":%u,\"target_node_id\":%u,\"signature\":\"%s\"}",
			       a.node, net, c.node, t_sign(&a, "invite:%u:%u:%u", a.node, net, c.node)), "invite_to_network"));
	o = t_req(r, "{\"type\":\"poll_invites\",\"node_id\":%u,\"signature\":\"%s\"}", b.node,
		  t_sign(&b, "poll_invites:%u", b.node));
	assert_string_equal(t_type(o), "poll_invites_ok");
	inv = json_object_object_get(o, "invites");
	assert_int_equal(json_object_array_length(inv), 1);
	assert_int_equal(t_int(json_object_array_get_idx(inv, 0), "network_id"), net);
	assert_int_equal(t_int(json_object_array_get_idx(inv, 0), "inviter_id"), a.node);
	assert_string_equal(t_str(json_object_array_get_idx(inv, 0), "name"), "club");
	json_object_put(o);
	/* accept → member */
	o = t_req(r, "{\"type\":\"respond_invite\",\"node_id\":%u,\"network_id\":%u,\"accept\":true,\"signature\":\"%s\"}",
		  b.node, net, t_sign(&b, "respond_invite:%u:%u", b.node, net));
	assert_string_equal(t_type(o), "respond_invite_ok");
	assert_string_equal(t_str(o, "address"), "1:0001.0000.0002");
	json_object_put(o);
	assert_true(reg_may_talk(r, a.node, b.node));
	assert_true(t_err(t_req(r, "{\"type\":\"respond_invite\",\"node_id\":%u,\"network_id\":%u,\"accept\":true,\"signature\":\"%s\"}",
				b.node, net, t_sign(&b, "respond_invite:%u:%u", b.node, net)), "not_found"));
	/* c declines (v2), then cannot join */
	long long ts = t_ts();

	assert_true(t_ok(t_req(r, "{\"type\":\"respond_invite\",\"node_id\":%u,\"network_id\":%u,\"accept\":false,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       c.node, net, ts, t_sign(&c, "pilot2:respond_invite:%lld:%u:%u:false", ts, c.node, net)), "respond_invite"));
	assert_true(t_err(join2(r, &c, net), "forbidden"));
	/* an invite can also be used through join_network */
	assert_true(t_ok(t_req(r, "{\"type\":\"invite_to_network\",\"inviter_id\":%u,\"network_id\":%u,\"target_node_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       b.node, net, c.node, ts, t_sign(&b, "pilot2:invite_to_network:%lld:%u:%u:%u", ts, b.node, net, c.node)),
		    "invite_to_network"));
	t_now += 1000; /* a fresh sig_ts: the same join signed in the same second is a replay */
	assert_true(t_ok(join2(r, &c, net), "join_network"));
	assert_true(t_err(t_req(r, "{\"type\":\"invite_to_network\",\"inviter_id\":%u,\"network_id\":%u,\"target_node_id\":%u,\"signature\":\"%s\"}",
				a.node, net, c.node, t_sign(&a, "invite:%u:%u:%u", a.node, net, c.node)), "conflict"));
}

static void test_id_exhaustion(void **state)
{
	registry *r = *state;
	json_object *snap = reg_snapshot(r);
	tid a;

	/* a reference snapshot whose next_net wrapped to 0 means "exhausted" */
	json_object_object_add(snap, "next_net", json_object_new_int(0));
	assert_int_equal(reg_apply_snapshot(r, snap), 0);
	json_object_put(snap);
	tid_new(&a);
	t_register(r, &a, NULL);
	assert_true(t_err(create(r, &a, "late", "open", ""), "limit"));
}

static void test_members_survive_reap(void **state)
{
	registry *r = *state;
	tid a, b;
	uint16_t net;
	json_object *o;

	tid_new(&a);
	tid_new(&b);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	net = create_ok(r, &a, "keep", "open", "");
	assert_true(t_ok(join(r, &b, net, NULL), "join_network"));
	assert_true(t_ok(t_req(r, "{\"type\":\"deregister\",\"node_id\":%u,\"signature\":\"%s\"}",
			       b.node, t_sign(&b, "deregister:%u", b.node)), "deregister"));
	o = t_req(r, "{\"type\":\"list_nodes\",\"network_id\":%u}", net);
	assert_int_equal(json_object_array_length(json_object_object_get(o, "nodes")), 1);
	json_object_put(o);
	t_register(r, &b, NULL);
	assert_true(t_hb(r, &b)); /* back once b's key has signed */
	o = t_req(r, "{\"type\":\"list_nodes\",\"network_id\":%u}", net);
	assert_int_equal(json_object_array_length(json_object_object_get(o, "nodes")), 2);
	json_object_put(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_create_rules), T(test_create_limit_per_creator), T(test_admin_token_gating),
		T(test_join_open_and_privacy), T(test_join_token), T(test_invites),
		T(test_id_exhaustion), T(test_members_survive_reap),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
