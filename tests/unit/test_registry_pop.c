/* Registry proof of possession (issue 12 §3): an unsigned register naming a key
 * that is already registered moves nothing the network acts on; owners are set
 * only by the node's key; owner recovery needs the new key's signature and an
 * owner proven by the old key; no v1 signatures after a v2 one. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/unit/test_registry_util.h"
#include "rendezvous/reg_internal.h"

#define VICTIM_IP   "198.18.0.2"
#define ATTACKER_IP "198.18.0.66"

static int setup(void **state)
{
	t_now = 1700000000000ULL;
	t_ip = VICTIM_IP;
	*state = t_open(NULL, false, NULL);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	reg_close(*state);
	return 0;
}

static void lookup_is(registry *r, uint32_t id, const char *addr, const char *host, bool relay_only)
{
	json_object *o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", id);

	assert_string_equal(t_type(o), "lookup_ok");
	assert_string_equal(t_str(o, "real_addr"), addr);
	if (host)
		assert_string_equal(t_str(o, "hostname"), host);
	else
		assert_null(t_str(o, "hostname"));
	assert_int_equal(json_object_get_boolean(json_object_object_get(o, "relay_only")), relay_only);
	json_object_put(o);
}

/* The record's endpoint, also of a private node (lookup shows it only if public). */
static void addr_is(registry *r, uint32_t id, const char *addr)
{
	reg_node *n = reg_node_get(r, id);

	assert_non_null(n);
	assert_string_equal(n->real_addr, addr);
}

/* The attacker has only the victim's public key and a TCP connection. */
static json_object *attacker_register(registry *r, const tid *victim, const char *owner)
{
	const char *saved = t_ip;
	json_object *o;

	t_ip = ATTACKER_IP;
	t_conn = 66;
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:6666\","
		  "\"relay_only\":true,\"owner\":\"%s\",\"hostname\":\"evil\"}", victim->pk, owner);
	t_ip = saved;
	t_conn = 1;
	return o;
}

/* Attack 2 of issue 12: an unsigned register with another node's key, sent from
 * elsewhere, used to move real_addr, src_ip, relay_only and the hostname. */
static void test_pop_unsigned_register_moves_nothing(void **state)
{
	registry *r = *state;
	tid v, q;
	json_object *o;

	tid_new(&v);
	tid_new(&q);
	t_register(r, &v, NULL);
	t_register(r, &q, NULL);
	assert_true(t_set_public(r, &v, true));
	assert_true(t_ok(t_req(r, "{\"type\":\"set_hostname\",\"node_id\":%u,\"hostname\":\"victim\",\"signature\":\"%s\"}",
			       v.node, t_sign(&v, "set_hostname:%u", v.node)), "set_hostname"));
	lookup_is(r, v.node, VICTIM_IP ":4000", "victim", false);

	/* answered as today: the node, so a restarted daemon keeps its ID */
	o = attacker_register(r, &v, "evil@example.com");
	assert_string_equal(t_type(o), "register_ok");
	assert_int_equal(t_int(o, "node_id"), v.node);
	json_object_put(o);

	lookup_is(r, v.node, VICTIM_IP ":4000", "victim", false);
	assert_string_equal(reg_node_src_ip(r, v.node), VICTIM_IP);
	assert_true(t_err(t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"evil\"}"), "not_found"));
	o = t_resolve(r, &q, v.node);
	assert_string_equal(t_type(o), "resolve_ok");
	assert_string_equal(t_str(o, "real_addr"), VICTIM_IP ":4000");
	assert_null(json_object_object_get(o, "relay_only"));
	json_object_put(o);
}

/* A dead node is not revived (nor its liveness refreshed) by an unsigned register. */
static void test_pop_unsigned_register_no_revive(void **state)
{
	registry *r = *state;
	tid v;

	tid_new(&v);
	t_register(r, &v, NULL);
	assert_true(t_ok(t_req(r, "{\"type\":\"deregister\",\"node_id\":%u,\"signature\":\"%s\"}",
			       v.node, t_sign(&v, "deregister:%u", v.node)), "deregister"));
	json_object_put(attacker_register(r, &v, "evil@example.com"));
	assert_false(reg_node_live(r, v.node));
	assert_true(t_err(t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", v.node), "not_found"));
}

/* The chain: set an owner on the victim with an unsigned register, wait for the
 * victim to be reaped, recover the ID with the attacker's own key. */
static void test_pop_owner_chain(void **state)
{
	registry *r = *state;
	tid v, k, k2;
	uint8_t pk[32];
	long long ts;
	json_object *o;

	tid_new(&v);
	tid_new(&k);
	tid_new(&k2);
	t_register(r, &v, NULL);
	reg_tick(r, t_now);
	json_object_put(attacker_register(r, &v, "evil@example.com"));
	t_now += 400000; /* the victim goes offline and is reaped */
	reg_tick(r, t_now);
	assert_false(reg_node_live(r, v.node));

	/* unsigned recovery with the attacker's key */
	t_ip = ATTACKER_IP;
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:6666\","
		  "\"owner\":\"evil@example.com\"}", k.pk);
	assert_string_equal(t_type(o), "register_ok");
	json_object_put(o);
	assert_int_equal(reg_node_key(r, v.node, pk), 0);
	assert_memory_equal(pk, v.id.pk, 32);
	/* and signed by the attacker's (new) key: still no proof the owner was the victim's */
	ts = t_ts();
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:6666\","
		  "\"owner\":\"evil@example.com\",\"sig_ts\":%lld,\"signature\":\"%s\"}",
		  k2.pk, ts, t_sign(&k2, "pilot2:register:%lld:%s:0.0.0.0:6666", ts, k2.pk));
	assert_string_equal(t_type(o), "register_ok");
	assert_int_not_equal(t_int(o, "node_id"), v.node);
	json_object_put(o);
	t_ip = VICTIM_IP;
	assert_int_equal(reg_node_key(r, v.node, pk), 0);
	assert_memory_equal(pk, v.id.pk, 32);
}

/* No downgrade: once a node signed v2, its v1 signatures are refused, also
 * after a restart of the registry (the mark is persisted). */
static void test_pop_no_v1_after_v2(void **state)
{
	registry *r;
	char path[] = "/tmp/pilot-regpop-XXXXXX";
	char db[64], side[80];
	int fd = mkstemp(path);
	tid v;
	long long ts = t_ts();

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	snprintf(db, sizeof(db), "%s.db", path);
	assert_non_null(r = t_open(db, false, NULL));
	tid_new(&v);
	t_register(r, &v, NULL);
	/* v1 works before any v2 */
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", v.node,
			       t_sign(&v, "heartbeat:%u", v.node)), "heartbeat"));
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       v.node, ts, t_sign(&v, "pilot2:heartbeat:%lld:%u", ts, v.node)), "heartbeat"));
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", v.node,
				t_sign(&v, "heartbeat:%u", v.node)), "bad_signature"));
	assert_true(t_err(t_req(r, "{\"type\":\"set_visibility\",\"node_id\":%u,\"public\":true,\"signature\":\"%s\"}",
				v.node, t_sign(&v, "set_visibility:%u", v.node)), "bad_signature"));
	reg_close(r);

	assert_non_null(r = t_open(db, false, NULL));
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", v.node,
				t_sign(&v, "heartbeat:%u", v.node)), "bad_signature"));
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       v.node, ts + 1, t_sign(&v, "pilot2:heartbeat:%lld:%u", ts + 1, v.node)), "heartbeat"));
	reg_close(r);
	unlink(db);
	snprintf(side, sizeof(side), "%s-wal", db);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", db);
	unlink(side);
}

static json_object *reg_from(registry *r, const tid *t, const char *ip, uint64_t conn, const char *la)
{
	const char *saved = t_ip;
	json_object *o;

	t_ip = ip;
	t_conn = conn;
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"%s\"}", t->pk, la);
	t_ip = saved;
	t_conn = 1;
	return o;
}

static int hb_from(registry *r, tid *t, const char *ip, uint64_t conn)
{
	const char *saved = t_ip;
	int ok;

	t_ip = ip;
	t_conn = conn;
	ok = t_hb(r, t);
	t_ip = saved;
	t_conn = 1;
	return ok;
}

/* Interop: a reference daemon (unsigned register, v1 heartbeat) restarts from a
 * new address; reachable there once its heartbeat signed on that connection. */
static void test_pop_reference_restart(void **state)
{
	registry *r = *state;
	tid v;
	json_object *o;

	tid_new(&v);
	t_register(r, &v, NULL);
	assert_true(t_hb(r, &v));
	assert_true(t_set_public(r, &v, true));
	o = reg_from(r, &v, "198.18.0.77", 2, "0.0.0.0:5000");
	assert_string_equal(t_type(o), "register_ok");
	assert_int_equal(t_int(o, "node_id"), v.node);
	assert_true(json_object_get_boolean(json_object_object_get(o, "pending")));
	json_object_put(o);
	lookup_is(r, v.node, VICTIM_IP ":4000", NULL, false);
	/* a signed request on another connection does not apply it */
	assert_true(hb_from(r, &v, VICTIM_IP, 3));
	lookup_is(r, v.node, VICTIM_IP ":4000", NULL, false);
	/* on the same one it does */
	assert_true(hb_from(r, &v, "198.18.0.77", 2));
	lookup_is(r, v.node, "198.18.0.77:5000", NULL, false);
	assert_string_equal(reg_node_src_ip(r, v.node), "198.18.0.77");
	/* and only once: a later heartbeat from elsewhere moves only src_ip, as always */
	o = reg_from(r, &v, "198.18.0.78", 4, "0.0.0.0:5001");
	json_object_put(o);
	reg_conn_closed(r, 4);
	assert_true(hb_from(r, &v, "198.18.0.78", 4));
	lookup_is(r, v.node, "198.18.0.77:5000", NULL, false);
}

/* The reference daemon deregisters when it stops; restarted elsewhere it sends
 * register then set_visibility (signed): that proves it, and it is public again. */
static void test_pop_reference_restart_after_deregister(void **state)
{
	registry *r = *state;
	tid v;

	tid_new(&v);
	t_register(r, &v, NULL);
	assert_true(t_set_public(r, &v, true));
	assert_true(t_ok(t_req(r, "{\"type\":\"deregister\",\"node_id\":%u,\"signature\":\"%s\"}",
			       v.node, t_sign(&v, "deregister:%u", v.node)), "deregister"));
	json_object_put(reg_from(r, &v, "198.18.0.77", 2, "0.0.0.0:5000"));
	assert_false(reg_node_live(r, v.node));
	/* a setter on another connection proves nothing and finds no live node */
	assert_true(t_err(t_req(r, "{\"type\":\"set_visibility\",\"node_id\":%u,\"public\":true,\"signature\":\"%s\"}",
				v.node, t_sign(&v, "set_visibility:%u", v.node)), "not_found"));
	t_ip = "198.18.0.77";
	t_conn = 2;
	assert_true(t_set_public(r, &v, true));
	t_ip = VICTIM_IP;
	t_conn = 1;
	assert_true(reg_node_live(r, v.node));
	lookup_is(r, v.node, "198.18.0.77:5000", NULL, false);
}

/* A reaped reference daemon comes back (its heartbeat revives it). */
static void test_pop_reference_return_after_reap(void **state)
{
	registry *r = *state;
	tid v;

	tid_new(&v);
	t_register(r, &v, "vee@example.com");
	assert_true(t_hb(r, &v));
	reg_tick(r, t_now);
	t_now += 400000;
	reg_tick(r, t_now);
	assert_false(reg_node_live(r, v.node));
	json_object_put(reg_from(r, &v, "198.18.0.77", 2, "0.0.0.0:5000"));
	assert_false(reg_node_live(r, v.node));
	assert_true(hb_from(r, &v, "198.18.0.77", 2));
	assert_true(reg_node_live(r, v.node));
	addr_is(r, v.node, "198.18.0.77:5000");
}

/* A signed (v2) register applies at once, and marks the node v2. */
static void test_pop_signed_register(void **state)
{
	registry *r = *state;
	tid v;
	long long ts = t_ts();
	json_object *o;

	tid_new(&v);
	t_register(r, &v, NULL);
	assert_true(t_set_public(r, &v, true));
	t_ip = "198.18.0.77";
	t_conn = 2;
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:5000\","
		  "\"owner\":\"v@example.com\",\"sig_ts\":%lld,\"signature\":\"%s\"}",
		  v.pk, ts, t_sign(&v, "pilot2:register:%lld:%s:0.0.0.0:5000", ts, v.pk));
	assert_string_equal(t_type(o), "register_ok");
	assert_null(json_object_object_get(o, "pending"));
	json_object_put(o);
	t_ip = VICTIM_IP;
	t_conn = 1;
	lookup_is(r, v.node, "198.18.0.77:5000", NULL, false);
	assert_true(t_err(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", v.node,
				t_sign(&v, "heartbeat:%u", v.node)), "bad_signature"));
}

/* Owner recovery done right: the owner was set by the old key (proven), the new
 * key signs on the same connection; nothing changes before that. */
static void test_pop_owner_recovery(void **state)
{
	registry *r = *state;
	tid v, k;
	uint8_t pk[32];
	json_object *o;

	tid_new(&v);
	tid_new(&k);
	t_register(r, &v, "alice@example.com");
	assert_true(t_hb(r, &v));
	assert_true(t_ok(t_req(r, "{\"type\":\"deregister\",\"node_id\":%u,\"signature\":\"%s\"}",
			       v.node, t_sign(&v, "deregister:%u", v.node)), "deregister"));
	o = reg_from(r, &k, "198.18.0.77", 2, "0.0.0.0:5000");
	json_object_put(o); /* no owner: a new node */
	tid_new(&k);
	t_ip = "198.18.0.77";
	t_conn = 3;
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:5000\","
		  "\"owner\":\"alice@example.com\"}", k.pk);
	assert_int_equal(t_int(o, "node_id"), v.node);
	assert_string_equal(t_str(o, "public_key"), k.pk);
	json_object_put(o);
	assert_int_equal(reg_node_key(r, v.node, pk), 0);
	assert_memory_equal(pk, v.id.pk, 32); /* not yet */
	k.node = v.node;
	assert_true(t_hb(r, &k));
	t_ip = VICTIM_IP;
	t_conn = 1;
	assert_int_equal(reg_node_key(r, v.node, pk), 0);
	assert_memory_equal(pk, k.id.pk, 32);
	assert_true(reg_node_live(r, v.node));
	addr_is(r, v.node, "198.18.0.77:5000");
}

/* What waits is bounded per connection and dropped when it closes. */
static void test_pop_pending_bounds(void **state)
{
	registry *r = *state;
	tid k[17];
	json_object *o;

	for (int i = 0; i < 17; i++) {
		char ip[32];

		snprintf(ip, sizeof(ip), "198.18.1.%d", i + 1);
		tid_new(&k[i]);
		json_object_put(reg_from(r, &k[i], ip, 1, "0.0.0.0:4000"));
		k[i].node = (uint32_t)i + 1;
	}
	for (int i = 0; i < 16; i++)
		assert_true(t_ok(reg_from(r, &k[i], ATTACKER_IP, 9, "0.0.0.0:6666"), "register"));
	o = reg_from(r, &k[16], ATTACKER_IP, 9, "0.0.0.0:6666");
	assert_true(t_err(o, "rate_limited"));
	reg_conn_closed(r, 9);
	assert_true(t_ok(reg_from(r, &k[16], ATTACKER_IP, 9, "0.0.0.0:6666"), "register"));
	reg_conn_closed(r, 9);
	assert_true(hb_from(r, &k[16], ATTACKER_IP, 9));
	addr_is(r, k[16].node, "198.18.1.17:4000");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_pop_unsigned_register_moves_nothing),
		T(test_pop_unsigned_register_no_revive),
		T(test_pop_owner_chain),
		cmocka_unit_test(test_pop_no_v1_after_v2),
		T(test_pop_reference_restart),
		T(test_pop_reference_return_after_reap),
		T(test_pop_reference_restart_after_deregister),
		T(test_pop_signed_register),
		T(test_pop_owner_recovery),
		T(test_pop_pending_bounds),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
