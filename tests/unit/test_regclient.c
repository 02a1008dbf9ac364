/* The daemon's registry client and registration life cycle against the real
 * rendezvous registry server, in-process on the same loop, on 127.0.0.1. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "daemon/registration.h"
#include "daemon/regclient.h"
#include "lib/crypto.h"
#include "lib/jsonwire.h"
#include "lib/log.h"
#include "rendezvous/registry.h"
#include "rendezvous/server.h"

typedef struct env {
	pilot_loop *l;
	registry *reg;
	rdv_server *srv;
	char addr[64];
	const char *list; /* node_start: registries to use instead of addr */
	/* a raw listener standing in for a broken server */
	int raw_fd, raw_mode; /* 0 = accept and close, 1 = accept and hold,
			       * 2 = hold the first, answer on later ones with replies[] */
	int held[16];
	int nheld;
	int accepted;
	const char *replies[8]; /* mode 2: one per request, in order */
	int nreplies, replied;
	/* on_send trace */
	int sent_heartbeats, heartbeats_with_ts, report_trust_sent;
	char kill_on[32];
	int killed;
} env;

static env *E;

static registry *open_reg(bool strict)
{
	reg_config c;
	char err[256] = "";
	registry *r;

	memset(&c, 0, sizeof(c));
	c.strict_signatures = strict;
	c.ratelimit_disabled = true;
	r = reg_open(&c, err, sizeof(err));
	if (!r)
		fprintf(stderr, "reg_open: %s\n", err);
	return r;
}

static rdv_server *start_srv(env *e, const char *addr)
{
	rdv_server_config sc;
	char err[256] = "";
	rdv_server *s;

	memset(&sc, 0, sizeof(sc));
	sc.addr = addr;
	sc.reg = e->reg;
	s = rdv_server_new(e->l, &sc, err, sizeof(err));
	if (!s)
		fprintf(stderr, "rdv_server_new: %s\n", err);
	return s;
}

static int env_setup(env *e, bool strict)
{
	memset(e, 0, sizeof(*e));
	e->raw_fd = -1;
	E = e;
	if (!(e->l = pilot_loop_new()) || !(e->reg = open_reg(strict)) ||
	    !(e->srv = start_srv(e, "127.0.0.1:0")))
		return -1;
	snprintf(e->addr, sizeof(e->addr), "%s", rdv_server_addr(e->srv));
	return 0;
}

static int setup(void **state)
{
	env *e = calloc(1, sizeof(*e));

	*state = e;
	return env_setup(e, false);
}

static int setup_strict(void **state)
{
	env *e = calloc(1, sizeof(*e));

	*state = e;
	return env_setup(e, true);
}

static int teardown(void **state)
{
	env *e = *state;

	rdv_server_free(e->srv);
	reg_close(e->reg);
	if (e->raw_fd >= 0) {
		pilot_loop_del_fd(e->l, e->raw_fd);
		close(e->raw_fd);
	}
	for (int i = 0; i < e->nheld; i++) {
		pilot_loop_del_fd(e->l, e->held[i]);
		close(e->held[i]);
	}
	pilot_loop_free(e->l);
	free(e);
	E = NULL;
	return 0;
}

/* Run the loop until *flag is non-zero or ms pass. */
static int run_until(env *e, const int *flag, int ms)
{
	uint64_t end = pilot_now_ms() + (uint64_t)ms;

	while (!*flag && pilot_now_ms() < end)
		pilot_loop_run_once(e->l, 10);
	return *flag;
}

static void run_for(env *e, int ms)
{
	int never = 0;

	run_until(e, &never, ms);
}

/* ---- a reply collector ---- */
typedef struct result {
	int done, err;
	json_object *reply;
} result;

static void collect(void *arg, json_object *reply, int err)
{
	result *r = arg;

	r->done++;
	r->err = err;
	json_object_put(r->reply);
	r->reply = reply ? json_object_get(reply) : NULL;
}

static void result_clear(result *r)
{
	json_object_put(r->reply);
	memset(r, 0, sizeof(*r));
}

static const char *rstr(const result *r, const char *k)
{
	return r->reply ? jw_get_str(r->reply, k) : NULL;
}

/* rc, a request's return, is 0 and its reply comes within 3 s. */
static void answered(env *e, int rc, result *res)
{
	assert_int_equal(rc, 0);
	assert_true(run_until(e, &res->done, 3000));
}

/* ---- trace hook ---- */
static void trace(void *arg, json_object *req)
{
	env *e = arg;
	const char *type = jw_get_str(req, "type");

	if (!strcmp(type, "heartbeat")) {
		e->sent_heartbeats++;
		if (jw_has(req, "sig_ts"))
			e->heartbeats_with_ts++;
	}
	if (!strcmp(type, "report_trust"))
		e->report_trust_sent++;
	if (e->kill_on[0] && !strcmp(type, e->kill_on) && !e->killed) {
		/* The server dies with the request on its way: restart it on the same
		 * port so the client's reconnect finds it. */
		e->killed = 1;
		rdv_server_free(e->srv);
		e->srv = start_srv(e, e->addr);
	}
}

/* ---- registration helpers ---- */
typedef struct node {
	pilot_identity id;
	registration *r;
	int registered, again, handshakes;
	uint32_t trusted[4];
	size_t ntrusted;
} node;

static void on_registered(void *arg, uint32_t id, const char *address, bool again)
{
	node *n = arg;

	(void)id, (void)address;
	n->registered++;
	if (again)
		n->again++;
}

static void on_handshakes(void *arg, json_object *reply)
{
	node *n = arg;

	(void)reply;
	n->handshakes++;
}

static size_t on_trusted(void *arg, uint32_t *ids, size_t cap)
{
	node *n = arg;

	for (size_t i = 0; i < n->ntrusted && i < cap; i++)
		ids[i] = n->trusted[i];
	return n->ntrusted;
}

static registration *node_start(env *e, node *n, const char *hostname, bool pub, int64_t keepalive)
{
	registration_config c;
	registration_callbacks cb = { on_registered, on_handshakes, on_trusted, n };
	char err[256] = "";

	memset(&c, 0, sizeof(c));
	c.registry = e->list ? e->list : e->addr;
	c.id = &n->id;
	c.listen_addr = "0.0.0.0:4000";
	c.hostname = hostname;
	c.public_node = pub;
	c.keepalive_ms = keepalive;
	c.register_retry_ms = 50;
	c.client.timeout_ms = 2000;
	c.client.backoff_min_ms = 20;
	c.client.backoff_max_ms = 100;
	c.client.on_send = trace;
	c.client.on_send_arg = e;
	n->r = registration_new(e->l, &c, &cb, err, sizeof(err));
	assert_non_null(n->r);
	assert_int_equal(registration_start(n->r), 0);
	return n->r;
}

static void node_new(node *n)
{
	memset(n, 0, sizeof(*n));
	pilot_identity_generate(&n->id);
}

static regclient *client_new(env *e, const char *addr, size_t qmax, int64_t timeout)
{
	regclient_config c;
	char err[256] = "";
	regclient *rc;

	memset(&c, 0, sizeof(c));
	c.addr = addr;
	c.queue_max = qmax;
	c.timeout_ms = timeout;
	c.backoff_min_ms = 20;
	c.backoff_max_ms = 100;
	c.on_send = trace;
	c.on_send_arg = e;
	rc = regclient_new(e->l, &c, err, sizeof(err));
	assert_non_null(rc);
	return rc;
}

static json_object *lookup_req(uint32_t id)
{
	json_object *q = json_object_new_object();

	json_object_object_add(q, "type", json_object_new_string("lookup"));
	json_object_object_add(q, "node_id", json_object_new_int64(id));
	return q;
}

/* Ask the registry directly (no client) and return the reply. */
static json_object *direct(env *e, const char *json)
{
	json_object *q = json_tokener_parse(json), *resp;
	struct timeval tv;
	reg_ctx ctx = { "127.0.0.1", 40000, 0, 0 };

	gettimeofday(&tv, NULL);
	ctx.now_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
	assert_non_null(q);
	resp = reg_handle(e->reg, q, &ctx);
	json_object_put(q);
	return resp;
}

/* ---- tests ---- */
static void test_register_same_id(void **state)
{
	env *e = *state;
	node a;
	uint32_t id;

	node_new(&a);
	node_start(e, &a, NULL, false, 10000);
	assert_true(run_until(e, &a.registered, 3000));
	id = registration_node_id(a.r);
	assert_true(id > 0);
	assert_true(registration_registered(a.r));
	assert_string_equal(registration_address(a.r), "0:0000.0000.0001");
	/* v2 is advertised and the client picked it up */
	assert_true(regclient_sig_v2(registration_client(a.r)));
	registration_free(a.r);

	/* a restart with the same identity gets the same ID back; the registry holds
	 * the new values until our key signs on that connection ("pending"), so the
	 * heartbeat goes out at once, not after the 10 s keep-alive */
	a.registered = 0;
	node_start(e, &a, NULL, false, 10000);
	assert_true(run_until(e, &a.registered, 3000));
	assert_int_equal(registration_node_id(a.r), id);
	for (uint64_t end = pilot_now_ms() + 3000; !registration_last_heartbeat(a.r) && pilot_now_ms() < end;)
		pilot_loop_run_once(e->l, 10);
	assert_true(registration_last_heartbeat(a.r) != 0);
	registration_free(a.r);
}

static void test_heartbeat_v2_skewed_strict(void **state)
{
	env *e = *state;
	registration_config c;
	registration_callbacks cb;
	node a;
	char err[256];
	int hb = 0;

	/* A strict registry refuses v1 and unsigned registers; our clock is an
	 * hour off. The client must learn both and still heartbeat. */
	node_new(&a);
	memset(&c, 0, sizeof(c));
	memset(&cb, 0, sizeof(cb));
	cb.registered = on_registered;
	cb.handshakes = on_handshakes;
	cb.arg = &a;
	c.registry = e->addr;
	c.id = &a.id;
	c.listen_addr = "0.0.0.0:4000";
	c.keepalive_ms = 50;
	c.register_retry_ms = 50;
	c.client.clock_skew_s = -3600;
	c.client.on_send = trace;
	c.client.on_send_arg = e;
	a.r = registration_new(e->l, &c, &cb, err, sizeof(err));
	assert_non_null(a.r);
	assert_int_equal(registration_start(a.r), 0);
	assert_true(run_until(e, &a.registered, 3000));
	for (uint64_t end = pilot_now_ms() + 3000; !hb && pilot_now_ms() < end;) {
		pilot_loop_run_once(e->l, 10);
		hb = registration_last_heartbeat(a.r) != 0;
	}
	assert_true(hb);
	assert_true(e->heartbeats_with_ts > 0);
	assert_int_equal(e->heartbeats_with_ts, e->sent_heartbeats);
	assert_true(registration_clock_offset(a.r) >= 3590 && registration_clock_offset(a.r) <= 3610);
	/* several heartbeats in a row (fresh signatures, no replay refusals) */
	run_for(e, 300);
	assert_true(e->sent_heartbeats >= 3);
	assert_int_equal(registration_heartbeat_failures(a.r), 0);
	registration_free(a.r);
}

static void test_signed_setters(void **state)
{
	env *e = *state;
	node a;
	result res = { 0 };
	const char *tags[] = { "web", "gpu" };
	json_object *t;

	node_new(&a);
	node_start(e, &a, "alpha", true, 10000);
	assert_true(run_until(e, &a.registered, 3000));
	/* the configured hostname and visibility were applied after register */
	answered(e, registration_lookup(a.r, registration_node_id(a.r), collect, &res), &res);
	assert_int_equal(res.err, 0);
	assert_string_equal(rstr(&res, "hostname"), "alpha");
	assert_true(jw_get_bool(res.reply, "public"));
	result_clear(&res);

	answered(e, registration_set_hostname(a.r, "beta", collect, &res), &res);
	assert_int_equal(res.err, 0);
	assert_string_equal(rstr(&res, "hostname"), "beta");
	result_clear(&res);
	answered(e, registration_set_tags(a.r, tags, 2, collect, &res), &res);
	assert_int_equal(res.err, 0);
	result_clear(&res);
	answered(e, registration_set_visibility(a.r, false, collect, &res), &res);
	assert_int_equal(res.err, 0);
	assert_string_equal(rstr(&res, "visibility"), "private");
	result_clear(&res);

	/* the reference (v1) format: refused for a node that has signed v2 (no
	 * downgrade, SIGNATURES.md); test_handshake_relay covers v1 from the start */
	regclient_set_sig_v2(registration_client(a.r), false);
	answered(e, registration_set_hostname(a.r, "delta", collect, &res), &res);
	assert_int_equal(res.err, -EREMOTEIO);
	assert_string_equal(rstr(&res, "code"), "bad_signature");
	result_clear(&res);
	regclient_set_sig_v2(registration_client(a.r), true);
	answered(e, registration_set_hostname(a.r, "gamma", collect, &res), &res);
	assert_int_equal(res.err, 0);
	result_clear(&res);

	answered(e, registration_resolve_hostname(a.r, "gamma", collect, &res), &res);
	assert_int_equal(res.err, 0);
	assert_int_equal(jw_get_u32(res.reply, "node_id"), registration_node_id(a.r));
	result_clear(&res);
	answered(e, registration_lookup(a.r, registration_node_id(a.r), collect, &res), &res);
	t = json_object_object_get(res.reply, "tags");
	assert_int_equal(json_object_array_length(t), 2);
	assert_false(jw_get_bool(res.reply, "public"));
	result_clear(&res);
	registration_free(a.r);
}

/* Two private nodes registered (10 s keep-alive). */
static void two_nodes(env *e, node *a, node *b)
{
	node_new(a);
	node_new(b);
	node_start(e, a, NULL, false, 10000);
	node_start(e, b, NULL, false, 10000);
	assert_true(run_until(e, &a->registered, 3000));
	assert_true(run_until(e, &b->registered, 3000));
}

static void call_ok(env *e, int rc, result *res)
{
	answered(e, rc, res);
	if (res->err)
		fprintf(stderr, "unexpected error: %s\n",
			res->reply ? json_object_to_json_string(res->reply) : strerror(-res->err));
	assert_int_equal(res->err, 0);
	result_clear(res);
}

static void test_resolve_needs_trust(void **state)
{
	env *e = *state;
	node a, b;
	result res = { 0 };
	uint32_t ida, idb;

	two_nodes(e, &a, &b);
	ida = registration_node_id(a.r);
	idb = registration_node_id(b.r);

	answered(e, registration_resolve(a.r, idb, collect, &res), &res);
	assert_int_equal(res.err, -EREMOTEIO);
	assert_non_null(rstr(&res, "code"));
	result_clear(&res);

	/* one side alone is not consent */
	call_ok(e, registration_report_trust(a.r, idb, collect, &res), &res);
	answered(e, registration_resolve(a.r, idb, collect, &res), &res);
	assert_int_equal(res.err, -EREMOTEIO);
	result_clear(&res);

	call_ok(e, registration_report_trust(b.r, ida, collect, &res), &res);
	answered(e, registration_resolve(a.r, idb, collect, &res), &res);
	assert_int_equal(res.err, 0);
	assert_string_equal(rstr(&res, "real_addr"), "127.0.0.1:4000");
	result_clear(&res);

	call_ok(e, registration_revoke_trust(a.r, idb, collect, &res), &res);
	registration_free(a.r);
	registration_free(b.r);
}

static void test_handshake_relay(void **state)
{
	env *e = *state;
	node a, b;
	result res = { 0 };
	uint32_t ida, idb;

	node_new(&a);
	node_new(&b);
	node_start(e, &a, NULL, false, 10000);
	node_start(e, &b, NULL, false, 50);
	assert_true(run_until(e, &a.registered, 3000));
	assert_true(run_until(e, &b.registered, 3000));
	ida = registration_node_id(a.r);
	idb = registration_node_id(b.r);

	call_ok(e, registration_request_handshake(a.r, idb, "let me in", collect, &res), &res);
	/* b's heartbeat is followed by poll_handshakes, which delivers the request */
	assert_true(run_until(e, &b.handshakes, 3000));
	call_ok(e, registration_respond_handshake(b.r, ida, true, collect, &res), &res);
	call_ok(e, registration_resolve(a.r, idb, collect, &res), &res);

	registration_free(a.r);
	registration_free(b.r);

	/* the same through the reference (v1) strings, by nodes that never signed v2
	 * (v1 after v2 is refused); the long keep-alive sends no heartbeat meanwhile */
	two_nodes(e, &a, &b);
	regclient_set_sig_v2(registration_client(a.r), false);
	regclient_set_sig_v2(registration_client(b.r), false);
	ida = registration_node_id(a.r);
	idb = registration_node_id(b.r);
	call_ok(e, registration_request_handshake(b.r, ida, "", collect, &res), &res);
	call_ok(e, registration_poll_handshakes(a.r, collect, &res), &res);
	call_ok(e, registration_respond_handshake(a.r, idb, true, collect, &res), &res);
	call_ok(e, registration_resolve(a.r, idb, collect, &res), &res);
	call_ok(e, registration_revoke_trust(a.r, idb, collect, &res), &res);
	registration_free(a.r);
	registration_free(b.r);
}

static void test_networks(void **state)
{
	env *e = *state;
	node a, b;
	result res = { 0 };
	uint16_t net;
	json_object *inv;

	two_nodes(e, &a, &b);

	answered(e, registration_create_network(a.r, "lab", "invite", NULL, NULL, collect, &res), &res);
	assert_int_equal(res.err, 0);
	net = jw_get_u16(res.reply, "network_id");
	assert_true(net > 0);
	result_clear(&res);

	answered(e, registration_join_network(b.r, net, NULL, NULL, collect, &res), &res);
	assert_int_equal(res.err, -EREMOTEIO);
	assert_string_equal(rstr(&res, "code"), "forbidden");
	result_clear(&res);

	call_ok(e, registration_invite(a.r, net, registration_node_id(b.r), collect, &res), &res);
	answered(e, registration_poll_invites(b.r, collect, &res), &res);
	inv = json_object_object_get(res.reply, "invites");
	assert_int_equal(json_object_array_length(inv), 1);
	result_clear(&res);
	call_ok(e, registration_respond_invite(b.r, net, true, collect, &res), &res);

	answered(e, registration_list_nodes(a.r, net, collect, &res), &res);
	assert_int_equal(json_object_array_length(json_object_object_get(res.reply, "nodes")), 2);
	result_clear(&res);
	answered(e, registration_list_networks(a.r, collect, &res), &res);
	assert_int_equal(json_object_array_length(json_object_object_get(res.reply, "networks")), 2);
	result_clear(&res);
	call_ok(e, registration_leave_network(b.r, net, NULL, collect, &res), &res);

	registration_free(a.r);
	registration_free(b.r);

	/* v1 forms of the network strings, by a node that never signed v2 */
	node_new(&a);
	node_start(e, &a, NULL, false, 10000);
	assert_true(run_until(e, &a.registered, 3000));
	regclient_set_sig_v2(registration_client(a.r), false);
	call_ok(e, registration_create_network(a.r, "lab2", NULL, NULL, NULL, collect, &res), &res);
	registration_free(a.r);
}

/* Connection migration (issue 20): a new endpoint is registered again at once,
 * also when it changes twice while the first register is in flight, and peers
 * resolving the node get the last one. */
static void test_set_listen_addr(void **state)
{
	env *e = *state;
	node a, b;
	result res = { 0 };
	uint32_t ida, idb;

	two_nodes(e, &a, &b);
	ida = registration_node_id(a.r);
	idb = registration_node_id(b.r);
	call_ok(e, registration_report_trust(a.r, idb, collect, &res), &res);
	call_ok(e, registration_report_trust(b.r, ida, collect, &res), &res);

	a.again = 0;
	assert_int_equal(registration_set_listen_addr(a.r, "0.0.0.0:4100"), 0);
	assert_int_equal(registration_set_listen_addr(a.r, "0.0.0.0:4200"), 0); /* in flight */
	assert_true(run_until(e, &a.again, 3000));
	assert_int_equal(registration_node_id(a.r), ida);
	for (uint64_t end = pilot_now_ms() + 3000; pilot_now_ms() < end;) {
		assert_int_equal(registration_resolve(b.r, ida, collect, &res), 0);
		assert_true(run_until(e, &res.done, 3000));
		assert_int_equal(res.err, 0);
		if (!strcmp(rstr(&res, "real_addr"), "127.0.0.1:4200"))
			break;
		result_clear(&res);
		pilot_loop_run_once(e->l, 50);
	}
	assert_string_equal(rstr(&res, "real_addr"), "127.0.0.1:4200");
	result_clear(&res);
	registration_free(a.r);
	registration_free(b.r);
}

static void test_error_code(void **state)
{
	env *e = *state;
	regclient *rc = client_new(e, e->addr, 0, 0);
	result res = { 0 };
	regclient_stats st;

	answered(e, regclient_request(rc, lookup_req(4242), collect, &res), &res);
	assert_int_equal(res.err, -EREMOTEIO);
	assert_string_equal(rstr(&res, "error"), "request failed");
	assert_string_equal(rstr(&res, "code"), "not_found");
	assert_non_null(rstr(&res, "message"));
	result_clear(&res);
	/* the connection stays usable after an error reply */
	answered(e, regclient_request(rc, lookup_req(4243), collect, &res), &res);
	regclient_get_stats(rc, &st);
	assert_int_equal(st.connects, 1);
	assert_int_equal(st.errors, 2);
	result_clear(&res);
	/* bad requests are refused up front (and consumed) */
	assert_int_equal(regclient_request(rc, json_object_new_object(), collect, &res), -EINVAL);
	assert_int_equal(regclient_request_signed(rc, lookup_req(1), "1", collect, &res), -ENOKEY);
	regclient_free(rc);
}

static void test_hostname_addr(void **state)
{
	env *e = *state;
	char addr[80];
	regclient *rc;
	result res = { 0 };

	/* "localhost" may resolve to ::1 first (refused here): the next address wins */
	snprintf(addr, sizeof(addr), "localhost%s", strrchr(e->addr, ':'));
	rc = client_new(e, addr, 0, 0);
	answered(e, regclient_request(rc, lookup_req(1), collect, &res), &res);
	assert_int_equal(res.err, -EREMOTEIO);
	assert_string_equal(rstr(&res, "code"), "not_found");
	result_clear(&res);
	regclient_free(rc);
}

static void test_reconnect_resend(void **state)
{
	env *e = *state;
	regclient *rc = client_new(e, e->addr, 0, 0);
	result res = { 0 };
	regclient_stats st;

	/* first a good exchange, so the connection is up */
	assert_int_equal(regclient_request(rc, lookup_req(1),
					   collect, &res), 0);
	assert_true(run_until(e, &res.done, 3000));
	result_clear(&res);
	/* list_networks: the server is killed as the request goes out */
	snprintf(e->kill_on, sizeof(e->kill_on), "list_networks");
	{
		json_object *q = json_object_new_object();

		json_object_object_add(q, "type", json_object_new_string("list_networks"));
		assert_int_equal(regclient_request(rc, q, collect, &res), 0);
	}
	assert_true(run_until(e, &res.done, 3000));
	assert_true(e->killed);
	assert_int_equal(res.err, 0);
	assert_string_equal(rstr(&res, "type"), "list_networks_ok");
	regclient_get_stats(rc, &st);
	assert_int_equal(st.resends, 1);
	assert_int_equal(st.connects, 2);
	result_clear(&res);
	regclient_free(rc);
}

/* Mode 2: read whole frames (small, on loopback) and answer each with the next
 * canned reply. */
static void canned_event(pilot_loop *l, int fd, int events, void *arg)
{
	env *e = arg;
	uint8_t buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));
	size_t off = 0;

	(void)l, (void)events;
	while (n > 0 && off + 4 <= (size_t)n) {
		size_t len = (size_t)buf[off] << 24 | (size_t)buf[off + 1] << 16 | (size_t)buf[off + 2] << 8 | buf[off + 3];
		const char *rep = e->replied < e->nreplies ? e->replies[e->replied++] : "{\"type\":\"error\",\"error\":\"x\"}";
		uint8_t out[512];
		size_t rl = strlen(rep);

		off += 4 + len;
		out[0] = (uint8_t)(rl >> 24), out[1] = (uint8_t)(rl >> 16), out[2] = (uint8_t)(rl >> 8), out[3] = (uint8_t)rl;
		memcpy(out + 4, rep, rl);
		assert_int_equal(write(fd, out, 4 + rl), (ssize_t)(4 + rl));
	}
}

static void raw_accept(pilot_loop *l, int fd, int events, void *arg)
{
	env *e = arg;
	int c;

	(void)l, (void)events;
	while ((c = accept(fd, NULL, NULL)) >= 0) {
		e->accepted++;
		if (e->raw_mode == 0 || e->nheld == 16) {
			close(c);
			continue;
		}
		e->held[e->nheld++] = c;
		if (e->raw_mode == 2 && e->accepted > 1)
			assert_int_equal(pilot_loop_add_fd(l, c, PILOT_EV_READ, canned_event, e), 0);
	}
}

/* A listener that accepts and closes (mode 0) or accepts and never answers. */
static void raw_listen(env *e, int mode, char *addr, size_t len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);

	e->raw_mode = mode;
	e->raw_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(e->raw_fd >= 0);
	assert_int_equal(bind(e->raw_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(e->raw_fd, 16), 0);
	assert_int_equal(getsockname(e->raw_fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(addr, len, "127.0.0.1:%u", ntohs(sa.sin_port));
	assert_int_equal(pilot_loop_add_fd(e->l, e->raw_fd, PILOT_EV_READ, raw_accept, e), 0);
}

static void test_resend_only_once(void **state)
{
	env *e = *state;
	char addr[64];
	regclient *rc;
	result res = { 0 };
	regclient_stats st;

	raw_listen(e, 0, addr, sizeof(addr));
	rc = client_new(e, addr, 0, 3000);
	answered(e, regclient_request(rc, lookup_req(1), collect, &res), &res);
	assert_null(res.reply);
	assert_true(res.err == -ECONNRESET || res.err == -EPIPE);
	regclient_get_stats(rc, &st);
	assert_int_equal(st.sent, 2);
	assert_int_equal(st.resends, 1);
	assert_int_equal(st.queued, 0);
	result_clear(&res);
	regclient_free(rc);
}

static void test_timeout(void **state)
{
	env *e = *state;
	char addr[64];
	regclient *rc;
	result res = { 0 };
	regclient_stats st;
	uint64_t t0;

	raw_listen(e, 1, addr, sizeof(addr));
	rc = client_new(e, addr, 0, 200);
	t0 = pilot_now_ms();
	answered(e, regclient_request(rc, lookup_req(1), collect, &res), &res);
	assert_int_equal(res.err, -ETIMEDOUT);
	assert_true(pilot_now_ms() - t0 >= 190);
	regclient_get_stats(rc, &st);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.queued, 0);
	regclient_free(rc);
}

/* Issue 21 §5: an attempt the registry never answers is sent again at once on a
 * fresh connection, and the request succeeds there, well within its timeout. */
static void test_unanswered_retried_on_fresh_connection(void **state)
{
	env *e = *state;
	char addr[64];
	regclient *rc;
	regclient_config c;
	char err[256] = "";
	result res = { 0 };
	regclient_stats st;
	uint64_t t0, dt;

	raw_listen(e, 2, addr, sizeof(addr));
	e->replies[0] = "{\"type\":\"lookup_ok\",\"node_id\":1,\"public_key\":"
			"\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}";
	e->nreplies = 1;
	memset(&c, 0, sizeof(c));
	c.addr = addr;
	c.timeout_ms = 10000;
	c.attempt_timeout_ms = 300;
	rc = regclient_new(e->l, &c, err, sizeof(err));
	assert_non_null(rc);
	t0 = pilot_now_ms();
	assert_int_equal(regclient_request(rc, lookup_req(1), collect, &res), 0);
	assert_true(run_until(e, &res.done, 5000));
	dt = pilot_now_ms() - t0;
	assert_int_equal(res.err, 0);
	assert_string_equal(rstr(&res, "type"), "lookup_ok");
	assert_true(dt >= 290 && dt < 1500);
	assert_int_equal(e->accepted, 2);
	regclient_get_stats(rc, &st);
	assert_int_equal(st.retries, 1);
	assert_int_equal(st.timeouts, 0);
	assert_int_equal(st.sent, 2);
	result_clear(&res);
	regclient_free(rc);
}

/* A busy reply is retried on the same connection after retry_after_ms (plus
 * jitter up to 50 %), and the caller sees only the final answer. */
static void test_busy_retried_after_hint(void **state)
{
	env *e = *state;
	char addr[64];
	regclient *rc;
	result res = { 0 };
	regclient_stats st;
	uint64_t t0, dt;

	raw_listen(e, 2, addr, sizeof(addr));
	e->accepted = 1; /* answer on the first connection already */
	e->replies[0] = "{\"type\":\"error\",\"error\":\"request failed\",\"code\":\"busy\",\"retry_after_ms\":200}";
	e->replies[1] = "{\"type\":\"lookup_ok\",\"node_id\":1,\"public_key\":"
			"\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}";
	e->nreplies = 2;
	rc = client_new(e, addr, 0, 5000);
	t0 = pilot_now_ms();
	answered(e, regclient_request(rc, lookup_req(1), collect, &res), &res);
	dt = pilot_now_ms() - t0;
	assert_int_equal(res.err, 0);
	assert_string_equal(rstr(&res, "type"), "lookup_ok");
	assert_true(dt >= 195 && dt < 1000);
	regclient_get_stats(rc, &st);
	assert_int_equal(st.busy, 1);
	assert_int_equal(st.connects, 1);
	assert_int_equal(st.sent, 2);
	result_clear(&res);
	regclient_free(rc);
}

struct sig_trace {
	int64_t ts[4];
	int n;
};

static void trace_sig_ts(void *arg, json_object *req)
{
	struct sig_trace *t = arg;

	if (t->n < 4)
		t->ts[t->n++] = jw_get_i64(req, "sig_ts");
}

/* A node restarted within the second it last signed the same request (a resolve
 * of the same peer) signs it identically: the registry's replay cache refuses it
 * as replayed_signature, and a forward through the userspace proxy failed. The
 * client signs it again with a later sig_ts; the caller sees the answer. */
static void test_replayed_signature_signed_again(void **state)
{
	env *e = *state;
	char addr[64], err[64];
	regclient_config c;
	regclient *rc;
	result res = { 0 };
	regclient_stats st;
	pilot_identity id;
	struct sig_trace t = { 0 };
	json_object *q = json_object_new_object();

	raw_listen(e, 2, addr, sizeof(addr));
	e->accepted = 1;
	e->replies[0] =
		"{\"type\":\"error\",\"error\":\"replayed signature\",\"code\":\"replayed_signature\"}";
	e->replies[1] = "{\"type\":\"resolve_ok\",\"node_id\":1,\"real_addr\":\"198.18.0.9:4000\"}";
	e->nreplies = 2;
	pilot_identity_generate(&id);
	memset(&c, 0, sizeof(c));
	c.addr = addr;
	c.id = &id;
	c.timeout_ms = 5000;
	c.backoff_min_ms = 20;
	c.backoff_max_ms = 100;
	c.on_send = trace_sig_ts;
	c.on_send_arg = &t;
	rc = regclient_new(e->l, &c, err, sizeof(err));
	assert_non_null(rc);
	regclient_set_sig_v2(rc, true);
	json_object_object_add(q, "type", json_object_new_string("resolve"));
	json_object_object_add(q, "node_id", json_object_new_int64(1));
	answered(e, regclient_request_signed(rc, q, "3:1", collect, &res), &res);
	assert_int_equal(res.err, 0);
	assert_string_equal(rstr(&res, "type"), "resolve_ok");
	assert_int_equal(t.n, 2);
	assert_true(t.ts[1] > t.ts[0]); /* a new signature, not the refused one */
	regclient_get_stats(rc, &st);
	assert_int_equal(st.resigned, 1);
	result_clear(&res);
	regclient_free(rc);
}

/* Many identical signed requests in a burst (a resolve of one peer per proxied
 * connection) move sig_ts a second ahead per request, since Ed25519 signs the
 * same message the same way. A restart then signs the same request from "now",
 * and every second up to the burst's end is in the registry's replay cache: 32
 * re-signs one second apart did not get past a 60-request burst, and the
 * request failed as replayed_signature (found with the proxy's resolve cache
 * off: forward_after_restart). Re-signs now move sig_ts by growing steps. */
static json_object *private_req(uint32_t id)
{
	json_object *q = json_object_new_object();

	json_object_object_add(q, "type", json_object_new_string("set_visibility"));
	json_object_object_add(q, "node_id", json_object_new_int64(id));
	json_object_object_add(q, "public", json_object_new_boolean(false));
	return q;
}

static void test_resign_after_burst_restart(void **state)
{
	env *e = *state;
	node a;
	char fields[32], err[64];
	regclient_config c;
	regclient *rc;
	regclient_stats st;
	result res = { 0 };
	uint32_t id;

	node_new(&a);
	node_start(e, &a, NULL, false, 0);
	assert_true(run_until(e, &a.registered, 3000));
	id = registration_node_id(a.r);
	rc = registration_client(a.r);
	regclient_set_sig_v2(rc, true);
	snprintf(fields, sizeof(fields), "%u:false", id);
	for (int i = 0; i < 60; i++) {
		answered(e, regclient_request_signed(rc, private_req(id), fields, collect, &res), &res);
		assert_int_equal(res.err, 0);
		result_clear(&res);
	}
	/* the same identity in a new process: no memory of the burst */
	memset(&c, 0, sizeof(c));
	c.addr = e->addr;
	c.id = &a.id;
	c.timeout_ms = 3000;
	c.backoff_min_ms = 20;
	c.backoff_max_ms = 100;
	rc = regclient_new(e->l, &c, err, sizeof(err));
	assert_non_null(rc);
	regclient_set_sig_v2(rc, true);
	answered(e, regclient_request_signed(rc, private_req(id), fields, collect, &res), &res);
	if (res.err)
		fprintf(stderr, "restart: err %d code %s\n", res.err, rstr(&res, "code"));
	assert_int_equal(res.err, 0);
	regclient_get_stats(rc, &st);
	assert_true(st.resigned >= 1 && st.resigned <= 12);
	result_clear(&res);
	regclient_free(rc);
	registration_free(a.r);
}

/* A node whose registry was unreachable for a while registers within about 2 s
 * of it coming back (default backoff: no 10 s waits). */
static void test_register_retries_at_short_interval(void **state)
{
	env *e = *state;
	node a;
	registration_config c;
	registration_callbacks cb = { on_registered, on_handshakes, on_trusted, &a };
	char err[256] = "", addr[64];
	uint64_t t0;

	/* the registry goes away; the node starts against its (now closed) port */
	snprintf(addr, sizeof(addr), "%s", e->addr);
	rdv_server_free(e->srv);
	e->srv = NULL;
	node_new(&a);
	memset(&c, 0, sizeof(c));
	c.registry = addr;
	c.id = &a.id;
	c.listen_addr = "0.0.0.0:4000";
	a.r = registration_new(e->l, &c, &cb, err, sizeof(err));
	assert_non_null(a.r);
	assert_int_equal(registration_start(a.r), 0);
	run_for(e, 6000); /* many failed attempts: an exponential backoff would be long now */
	assert_int_equal(a.registered, 0);
	e->srv = start_srv(e, addr);
	assert_non_null(e->srv);
	t0 = pilot_now_ms();
	assert_true(run_until(e, &a.registered, 5000));
	assert_true(pilot_now_ms() - t0 <= 2600);
	registration_free(a.r);
}

static void test_queue_bound_and_cancel(void **state)
{
	env *e = *state;
	char addr[64];
	regclient *rc;
	result res[5];

	memset(res, 0, sizeof(res));
	raw_listen(e, 1, addr, sizeof(addr));
	rc = client_new(e, addr, 4, 10000);
	for (int i = 0; i < 4; i++)
		assert_int_equal(regclient_request(rc, lookup_req(1), collect, &res[i]), 0);
	assert_int_equal(regclient_request(rc, lookup_req(1), collect, &res[4]), -ENOBUFS);
	run_for(e, 50); /* one in flight, three queued */
	regclient_free(rc);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(res[i].done, 1);
		assert_int_equal(res[i].err, -ECANCELED);
	}
	assert_int_equal(res[4].done, 0);
}

static void free_in_cb(void *arg, json_object *reply, int err)
{
	regclient **rc = arg;

	(void)reply, (void)err;
	regclient_free(*rc);
	*rc = NULL;
}

static void test_free_inside_callback(void **state)
{
	env *e = *state;
	regclient *rc = client_new(e, e->addr, 0, 0);
	result res = { 0 };

	assert_int_equal(regclient_request(rc, lookup_req(1), free_in_cb, &rc), 0);
	assert_int_equal(regclient_request(rc, lookup_req(1), collect, &res), 0);
	for (int i = 0; i < 300 && rc; i++)
		pilot_loop_run_once(e->l, 10);
	assert_null(rc);
	assert_int_equal(res.done, 1);
	assert_int_equal(res.err, -ECANCELED);
}

static void test_reregister_restores(void **state)
{
	env *e = *state;
	node a, b;
	pilot_identity p;
	char pk[48], q[256], sigb[96];
	uint8_t sig[64];
	json_object *o;
	uint32_t pid, idb;
	result res = { 0 };

	node_new(&a);
	node_new(&b);
	node_start(e, &a, "alpha", true, 50);
	node_start(e, &b, NULL, false, 50);
	assert_true(run_until(e, &a.registered, 3000));
	assert_true(run_until(e, &b.registered, 3000));

	/* The registry restarts empty (state lost): heartbeats get not_found. */
	rdv_server_free(e->srv);
	reg_close(e->reg);
	e->reg = open_reg(false);
	assert_non_null(e->reg);
	/* a peer p that b trusts is registered first in the new registry */
	pilot_identity_generate(&p);
	pilot_b64_encode(p.pk, 32, pk, sizeof(pk));
	snprintf(q, sizeof(q), "{\"type\":\"register\",\"public_key\":\"%s\"}", pk);
	o = direct(e, q);
	pid = jw_get_u32(o, "node_id");
	json_object_put(o);
	b.trusted[0] = pid;
	b.ntrusted = 1;
	e->srv = start_srv(e, e->addr);
	assert_non_null(e->srv);

	assert_true(run_until(e, &a.again, 5000));
	assert_true(run_until(e, &b.again, 5000));
	run_for(e, 200); /* let the restoring requests through */
	assert_true(e->report_trust_sent > 0);

	/* hostname and visibility are back */
	answered(e, registration_resolve_hostname(a.r, "alpha", collect, &res), &res);
	assert_int_equal(res.err, 0);
	assert_int_equal(jw_get_u32(res.reply, "node_id"), registration_node_id(a.r));
	assert_true(jw_get_bool(res.reply, "public"));
	result_clear(&res);

	/* b re-reported its trust in p: once p agrees, the pair exists */
	idb = registration_node_id(b.r);
	assert_false(reg_may_talk(e->reg, pid, idb));
	snprintf(q, sizeof(q), "report_trust:%u:%u", pid, idb);
	pilot_ed25519_sign(&p, q, strlen(q), sig);
	pilot_b64_encode(sig, 64, sigb, sizeof(sigb));
	snprintf(q, sizeof(q), "{\"type\":\"report_trust\",\"node_id\":%u,\"peer_id\":%u,\"signature\":\"%s\"}",
		 pid, idb, sigb);
	o = direct(e, q);
	assert_string_equal(jw_get_str(o, "type"), "report_trust_ok");
	json_object_put(o);
	assert_true(reg_may_talk(e->reg, pid, idb));
	assert_true(registration_registered(a.r));
	registration_free(a.r);
	registration_free(b.r);
}

/* ---- failover between several registries (issue 18) ---- */
static regclient *client_list(env *e, const char *list, int64_t attempt_ms)
{
	regclient_config c;
	char err[256] = "";
	regclient *rc;

	memset(&c, 0, sizeof(c));
	c.addr = list;
	c.timeout_ms = 5000;
	c.attempt_timeout_ms = attempt_ms;
	c.backoff_min_ms = 20;
	c.backoff_max_ms = 100;
	rc = regclient_new(e->l, &c, err, sizeof(err));
	assert_non_null(rc);
	return rc;
}

/* A port nobody listens on (bound, then closed). */
static void dead_addr(char *addr, size_t len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	snprintf(addr, len, "127.0.0.1:%u", ntohs(sa.sin_port));
}

/* Refused, then silent (accepts, never answers): the request is answered by
 * the third registry, and the client stays there. */
static void test_failover_next_address(void **state)
{
	env *e = *state;
	char dead[64], silent[64], list[256];
	regclient *rc;
	result res = { 0 };
	regclient_stats st;

	dead_addr(dead, sizeof(dead));
	raw_listen(e, 1, silent, sizeof(silent));
	snprintf(list, sizeof(list), "%s, %s,%s", dead, silent, e->addr);
	rc = client_list(e, list, 200);
	assert_string_equal(regclient_addr(rc), dead);
	assert_int_equal(regclient_naddr(rc), 3);
	assert_int_equal(regclient_request(rc, lookup_req(1), collect, &res), 0);
	assert_true(run_until(e, &res.done, 4000));
	assert_non_null(res.reply); /* not_found from the live registry */
	assert_string_equal(regclient_addr(rc), e->addr);
	regclient_get_stats(rc, &st);
	assert_int_equal(st.failovers, 2);
	assert_int_equal(st.in_use, 2);
	assert_true(e->accepted >= 1);
	result_clear(&res);
	/* the next request goes to the same one */
	answered(e, regclient_request(rc, lookup_req(1), collect, &res), &res);
	regclient_get_stats(rc, &st);
	assert_int_equal(st.failovers, 2);
	result_clear(&res);
	regclient_free(rc);
}

/* A read-only standby first: reads are served there; a write refused as
 * read_only sends the client on to the writable registry. */
static void test_failover_leaves_standby(void **state)
{
	env *e = *state;
	reg_config c;
	char err[256] = "", list[256], pk[48], q[256];
	registry *sreg;
	rdv_server *ssrv;
	rdv_server_config sc;
	regclient *rc;
	result res = { 0 };
	pilot_identity id;

	memset(&c, 0, sizeof(c));
	c.standby = true;
	c.ratelimit_disabled = true;
	assert_non_null(sreg = reg_open(&c, err, sizeof(err)));
	memset(&sc, 0, sizeof(sc));
	sc.addr = "127.0.0.1:0";
	sc.reg = sreg;
	assert_non_null(ssrv = rdv_server_new(e->l, &sc, err, sizeof(err)));
	snprintf(list, sizeof(list), "%s,%s", rdv_server_addr(ssrv), e->addr);
	rc = client_list(e, list, 0);

	answered(e, regclient_request(rc, lookup_req(1), collect, &res), &res);
	assert_string_equal(regclient_addr(rc), rdv_server_addr(ssrv));
	result_clear(&res);

	pilot_identity_generate(&id);
	pilot_b64_encode(id.pk, 32, pk, sizeof(pk));
	snprintf(q, sizeof(q), "{\"type\":\"register\",\"public_key\":\"%s\"}", pk);
	answered(e, regclient_request(rc, json_tokener_parse(q), collect, &res), &res);
	assert_int_equal(res.err, -EREMOTEIO);
	assert_string_equal(rstr(&res, "code"), "read_only");
	result_clear(&res);
	answered(e, regclient_request(rc, json_tokener_parse(q), collect, &res), &res);
	assert_int_equal(res.err, 0);
	assert_string_equal(rstr(&res, "type"), "register_ok");
	assert_string_equal(regclient_addr(rc), e->addr);
	result_clear(&res);
	regclient_free(rc);
	rdv_server_free(ssrv);
	reg_close(sreg);
}

/* Two registries with their own state: after the first dies the node's
 * heartbeat gets not_found from the second and it registers there at once
 * (not after 3 failed heartbeats), hostname restored. */
static void test_failover_registers_on_unknown(void **state)
{
	env *e = *state;
	registry *reg2;
	rdv_server *srv2;
	char list[256], first[64];
	node a;
	result res = { 0 };

	registry *reg1 = e->reg;

	assert_non_null(reg2 = open_reg(false));
	e->reg = reg2; /* start_srv serves e->reg */
	assert_non_null(srv2 = start_srv(e, "127.0.0.1:0"));
	e->reg = reg1;
	snprintf(first, sizeof(first), "%s", e->addr);
	snprintf(list, sizeof(list), "%s,%s", first, rdv_server_addr(srv2));
	e->list = list;
	node_new(&a);
	node_start(e, &a, "alpha", false, 1000);
	assert_true(run_until(e, &a.registered, 3000));
	assert_int_equal(a.again, 0);
	assert_string_equal(regclient_addr(registration_client(a.r)), first);

	rdv_server_free(e->srv);
	e->srv = NULL;
	/* the next heartbeat (1 s) fails over, is refused not_found, registers */
	assert_true(run_until(e, &a.again, 1200));
	assert_string_equal(regclient_addr(registration_client(a.r)), rdv_server_addr(srv2));
	assert_true(registration_registered(a.r));
	run_for(e, 200);
	answered(e, registration_resolve_hostname(a.r, "alpha", collect, &res), &res);
	assert_int_equal(res.err, 0);
	assert_int_equal(jw_get_u32(res.reply, "node_id"), registration_node_id(a.r));
	result_clear(&res);
	registration_free(a.r);
	rdv_server_free(srv2);
	reg_close(reg2);
}

static void dereg_done(void *arg, json_object *reply, int err)
{
	collect(arg, reply, err);
}

static void test_deregister(void **state)
{
	env *e = *state;
	node a;
	result res = { 0 };
	uint32_t id;

	node_new(&a);
	node_start(e, &a, NULL, false, 10000);
	assert_true(run_until(e, &a.registered, 3000));
	id = registration_node_id(a.r);
	answered(e, registration_deregister(a.r, dereg_done, &res), &res);
	assert_int_equal(res.err, 0);
	assert_false(registration_registered(a.r));
	result_clear(&res);
	answered(e, registration_lookup(a.r, id, collect, &res), &res);
	assert_string_equal(rstr(&res, "code"), "not_found");
	result_clear(&res);
	registration_free(a.r);
}

static void test_v1_strings(void **state)
{
	env *e = *state;
	regclient_config c;
	pilot_identity id;
	regclient *rc;
	char err[64];
	uint8_t sig[64];
	json_object *q = json_object_new_object();
	const char *s;

	assert_string_equal(regclient_v1_keyword("request_handshake"), "handshake");
	assert_string_equal(regclient_v1_keyword("respond_handshake"), "respond");
	assert_string_equal(regclient_v1_keyword("rotate_key"), "rotate");
	assert_string_equal(regclient_v1_keyword("invite_to_network"), "invite");
	assert_null(regclient_v1_keyword("register"));
	pilot_identity_generate(&id);
	memset(&c, 0, sizeof(c));
	c.addr = e->addr;
	c.id = &id;
	rc = regclient_new(e->l, &c, err, sizeof(err));
	assert_non_null(rc);
	json_object_object_add(q, "type", json_object_new_string("punch"));
	assert_int_equal(regclient_sign(rc, q, "7:7:9"), 0);
	s = jw_get_str(q, "signature");
	assert_int_equal(pilot_b64_decode(s, strlen(s), sig, 64), 64);
	assert_int_equal(pilot_ed25519_verify(id.pk, "punch:7:9", 9, sig), 0);
	assert_false(jw_has(q, "sig_ts"));
	json_object_object_add(q, "type", json_object_new_string("respond_handshake"));
	assert_int_equal(regclient_sign(rc, q, "3:4:true"), 0);
	s = jw_get_str(q, "signature");
	assert_int_equal(pilot_b64_decode(s, strlen(s), sig, 64), 64);
	assert_int_equal(pilot_ed25519_verify(id.pk, "respond:3:4", 11, sig), 0);
	json_object_object_add(q, "type", json_object_new_string("register"));
	assert_int_equal(regclient_sign(rc, q, "k:a"), -EINVAL);
	/* v2 binds type, time and every field */
	regclient_set_sig_v2(rc, true);
	json_object_object_add(q, "type", json_object_new_string("set_visibility"));
	assert_int_equal(regclient_sign(rc, q, "3:true"), 0);
	{
		char msg[96];

		snprintf(msg, sizeof(msg), "pilot2:set_visibility:%lld:3:true",
			 (long long)jw_get_i64(q, "sig_ts"));
		s = jw_get_str(q, "signature");
		assert_int_equal(pilot_b64_decode(s, strlen(s), sig, 64), 64);
		assert_int_equal(pilot_ed25519_verify(id.pk, msg, strlen(msg), sig), 0);
	}
	json_object_put(q);
	regclient_free(rc);
	/* bad addresses are refused with a message */
	c.addr = "no-port";
	assert_null(regclient_new(e->l, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "no-port"));
}

/* Found by fuzz_regreply: the "time" of register_ok/heartbeat_ok and the "server
 * time" of a stale_signature message became the clock offset unchecked, so an
 * absurd value overflowed int64 (time - now, then now + offset for every v2
 * sig_ts): undefined behaviour; and a "time" that is not an int64 (read as 0)
 * set the offset to minus the current time. Implausible server times are now
 * ignored. */
static void test_absurd_server_time(void **state)
{
	static const char *const replies[] = {
		"{\"type\":\"register_ok\",\"node_id\":5,\"address\":\"0:0000.0000.0005\",\"sig_v2\":true,"
		"\"time\":-9223372036854775807}",
		"{\"type\":\"heartbeat_ok\",\"time\":9223372036854775807}",
		"{\"type\":\"error\",\"error\":\"request failed\",\"code\":\"stale_signature\","
		"\"message\":\"too old; server time -9223372036854775808\"}",
	};
	static const char *const types[] = { "register", "heartbeat", "lookup" };
	env *e = *state;
	uint8_t seed[32] = { 3 };
	pilot_identity id;
	regclient_config c;
	char addr[64], err[256] = "";
	regclient *rc;
	result res = { 0 };
	json_object *q;
	int64_t ts;

	pilot_identity_from_seed(&id, seed);
	raw_listen(e, 1, addr, sizeof(addr));
	memset(&c, 0, sizeof(c));
	c.addr = addr;
	c.id = &id;
	rc = regclient_new(e->l, &c, err, sizeof(err));
	assert_non_null(rc);
	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		size_t n = strlen(replies[i]);
		uint8_t hdr[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };

		q = lookup_req(1);
		json_object_object_add(q, "type", json_object_new_string(types[i])); /* its answer's */
		assert_int_equal(regclient_request(rc, q, collect, &res), 0);
		run_for(e, 50); /* connected, request written */
		assert_int_equal(e->nheld, 1);
		assert_int_equal(write(e->held[0], hdr, 4), 4);
		assert_int_equal(write(e->held[0], replies[i], n), (ssize_t)n);
		assert_true(run_until(e, &res.done, 3000));
		assert_int_equal(regclient_clock_offset(rc), 0);
		result_clear(&res);
	}
	/* v2 (learnt from register_ok) signs with a sane sig_ts */
	assert_true(regclient_sig_v2(rc));
	q = lookup_req(1);
	assert_int_equal(regclient_sign(rc, q, "1"), 0);
	ts = jw_get_i64(q, "sig_ts");
	assert_true(ts > (int64_t)time(NULL) - 60 && ts < (int64_t)time(NULL) + 60);
	json_object_put(q);
	regclient_free(rc);
}

/* A register_ok without a node_id made the node "registered" as node 0 (and
 * {"type":"error"} without an error text was a success too). Every success
 * reply that cannot be the answer to the request, or lacks what its user takes
 * from it, is refused (-EBADMSG, counted) and the register is sent again. */
static void test_register_reply_checked(void **state)
{
	env *e = *state;
	node a;
	regclient_stats st;

	raw_listen(e, 2, e->addr, sizeof(e->addr));
	e->accepted = 1; /* answer on the first connection already */
	e->replies[0] = "{\"type\":\"register_ok\",\"network_id\":0,\"address\":\"0:0000.0000.0000\"}";
	e->replies[1] = "{\"type\":\"register_ok\",\"node_id\":0,\"address\":\"0:0000.0000.0000\"}";
	e->replies[2] = "{\"type\":\"register_ok\",\"node_id\":4294967295,\"address\":\"0:0000.FFFF.FFFF\"}";
	e->replies[3] = "{\"type\":\"register_ok\",\"node_id\":7,\"address\":\"0:0000.0000.0008\"}";
	e->replies[4] = "{\"type\":\"error\"}";
	e->replies[5] = "{\"type\":\"lookup_ok\",\"node_id\":7,\"address\":\"0:0000.0000.0007\"}";
	e->replies[6] = "{\"type\":\"register_ok\",\"node_id\":\"7\",\"address\":\"0:0000.0000.0007\"}";
	e->replies[7] =
		"{\"type\":\"register_ok\",\"node_id\":7,\"network_id\":0,\"address\":\"0:0000.0000.0007\"}";
	e->nreplies = 8;
	node_new(&a);
	node_start(e, &a, NULL, false, 60000);
	assert_true(run_until(e, &a.registered, 5000));
	assert_int_equal(a.registered, 1);
	assert_int_equal(registration_node_id(a.r), 7);
	assert_string_equal(registration_address(a.r), "0:0000.0000.0007");
	regclient_get_stats(registration_client(a.r), &st);
	assert_int_equal(st.malformed, 7);
	registration_free(a.r);
}

/* The same for the replies of lookups and resolves: one about another node, a
 * lookup_ok without a key, a resolve_ok without an endpoint, or a reply of the
 * wrong type never reaches the caller as an answer. */
static void test_reply_fields_checked(void **state)
{
	env *e = *state;
	char addr[64];
	regclient *rc;
	result res[6];
	regclient_stats st;
	json_object *q;

	memset(res, 0, sizeof(res));
	raw_listen(e, 2, addr, sizeof(addr));
	e->accepted = 1;
	e->replies[0] = "{\"type\":\"lookup_ok\",\"node_id\":2,\"public_key\":"
			"\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}";
	e->replies[1] = "{\"type\":\"lookup_ok\",\"node_id\":1}";
	e->replies[2] = "{\"type\":\"error\"}";
	e->replies[3] = "{\"type\":\"resolve_ok\",\"node_id\":1}";
	e->replies[4] = "{\"type\":\"resolve_ok\",\"node_id\":1,\"real_addr\":\"198.18.0.9:4000\"}";
	e->replies[5] = "{\"type\":\"lookup_ok\",\"node_id\":1,\"public_key\":"
			"\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}";
	e->nreplies = 6;
	rc = client_new(e, addr, 0, 3000);
	for (int i = 0; i < 6; i++) {
		q = lookup_req(1);
		if (i == 3 || i == 4)
			json_object_object_add(q, "type", json_object_new_string("resolve"));
		assert_int_equal(regclient_request(rc, q, collect, &res[i]), 0);
	}
	assert_true(run_until(e, &res[5].done, 3000));
	for (int i = 0; i < 4; i++) {
		assert_int_equal(res[i].err, -EBADMSG);
		assert_null(res[i].reply);
	}
	assert_int_equal(res[4].err, 0);
	assert_string_equal(rstr(&res[4], "real_addr"), "198.18.0.9:4000");
	assert_int_equal(res[5].err, 0);
	regclient_get_stats(rc, &st);
	assert_int_equal(st.malformed, 4);
	assert_int_equal(st.connects, 1); /* the connection stays */
	for (int i = 0; i < 6; i++)
		result_clear(&res[i]);
	regclient_free(rc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_register_same_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat_v2_skewed_strict, setup_strict, teardown),
		cmocka_unit_test_setup_teardown(test_signed_setters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolve_needs_trust, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshake_relay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_networks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_code, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostname_addr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconnect_resend, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resend_only_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_bound_and_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unanswered_retried_on_fresh_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_retried_after_hint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replayed_signature_signed_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resign_after_burst_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_retries_at_short_interval, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reregister_restores, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deregister, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1_strings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_absurd_server_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_reply_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reply_fields_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failover_next_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failover_leaves_standby, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failover_registers_on_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_listen_addr, setup, teardown),
	};

	pilot_log_init("test_regclient", PILOT_LOG_WARN, PILOT_LOG_TEXT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
