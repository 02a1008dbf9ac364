/* Registry persistence (SQLite) and snapshots: mutate, close or "crash" (reopen
 * without reg_close), reopen and compare; file modes; schema version; snapshot
 * round trip and a reference-format snapshot. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tests/unit/test_registry_util.h"

static char dir[64], path[128];

static int setup(void **state)
{
	t_now = 1700000000000ULL;
	t_ip = "198.18.0.2";
	snprintf(dir, sizeof(dir), "/tmp/regstore-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/sub/registry.db", dir);
	*state = NULL;
	return 0;
}

static int teardown(void **state)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A populated state: 4 nodes, a network with members and a token, trust pair and
 * half, pending handshake, response, invite, owner of a reaped node. */
static void populate(registry *r, tid *k)
{
	json_object *o;

	for (int i = 0; i < 5; i++)
		tid_new(&k[i]);
	t_register(r, &k[0], "zero@x");
	t_register(r, &k[1], NULL);
	t_register(r, &k[2], NULL);
	t_register(r, &k[3], "three@x");
	assert_true(t_set_public(r, &k[0], true));
	assert_true(t_ok(t_req(r, "{\"type\":\"set_hostname\",\"node_id\":%u,\"hostname\":\"zero\",\"signature\":\"%s\"}",
			       k[0].node, t_sign(&k[0], "set_hostname:%u", k[0].node)), "set_hostname"));
	assert_true(t_ok(t_req(r, "{\"type\":\"set_tags\",\"node_id\":%u,\"tags\":[\"gpu\",\"eu\"],\"signature\":\"%s\"}",
			       k[0].node, t_sign(&k[0], "set_tags:%u", k[0].node)), "set_tags"));
	assert_true(t_ok(t_req(r, "{\"type\":\"set_task_exec\",\"node_id\":%u,\"enabled\":true,\"signature\":\"%s\"}",
			       k[0].node, t_sign(&k[0], "set_task_exec:%u", k[0].node)), "set_task_exec"));
	assert_true(t_ok(t_req(r, "{\"type\":\"set_polo_score\",\"node_id\":%u,\"polo_score\":17}", k[0].node), "set_polo_score"));
	assert_true(t_report(r, &k[0], &k[1]));
	assert_true(t_report(r, &k[1], &k[0]));
	assert_true(t_report(r, &k[2], &k[0])); /* half */
	assert_true(t_ok(t_req(r, "{\"type\":\"request_handshake\",\"from_node_id\":%u,\"to_node_id\":%u,\"justification\":\"please\",\"signature\":\"%s\"}",
			       k[2].node, k[1].node, t_sign(&k[2], "handshake:%u:%u", k[2].node, k[1].node)), "request_handshake"));
	assert_true(t_ok(t_req(r, "{\"type\":\"request_handshake\",\"from_node_id\":%u,\"to_node_id\":%u,\"justification\":\"x\",\"signature\":\"%s\"}",
			       k[3].node, k[1].node, t_sign(&k[3], "handshake:%u:%u", k[3].node, k[1].node)), "request_handshake"));
	assert_true(t_ok(t_req(r, "{\"type\":\"respond_handshake\",\"node_id\":%u,\"peer_id\":%u,\"accept\":false,\"signature\":\"%s\"}",
			       k[1].node, k[3].node, t_sign(&k[1], "respond:%u:%u", k[1].node, k[3].node)), "respond_handshake"));
	o = t_req(r, "{\"type\":\"create_network\",\"node_id\":%u,\"name\":\"lab\",\"join_rule\":\"token\",\"token\":\"tkn\",\"signature\":\"%s\"}",
		  k[0].node, t_sign(&k[0], "create_network:%u:lab", k[0].node));
	assert_int_equal(t_int(o, "network_id"), 1);
	json_object_put(o);
	assert_true(t_ok(t_req(r, "{\"type\":\"join_network\",\"node_id\":%u,\"network_id\":1,\"token\":\"tkn\",\"signature\":\"%s\"}",
			       k[2].node, t_sign(&k[2], "join_network:%u:1", k[2].node)), "join_network"));
	assert_true(t_ok(t_req(r, "{\"type\":\"invite_to_network\",\"inviter_id\":%u,\"network_id\":1,\"target_node_id\":%u,\"signature\":\"%s\"}",
			       k[0].node, k[1].node, t_sign(&k[0], "invite:%u:1:%u", k[0].node, k[1].node)), "invite_to_network"));
	/* node 2 re-registers in compat mode: relay_only must survive a restart */
	o = t_req(r, "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:0\",\"relay_only\":true}",
		  k[2].pk);
	assert_int_equal(t_int(o, "node_id"), k[2].node);
	json_object_put(o);
	assert_true(t_hb(r, &k[2])); /* k[2]'s key applies it */
	/* node 3 deregisters: its key and owner must survive a restart */
	assert_true(t_ok(t_req(r, "{\"type\":\"deregister\",\"node_id\":%u,\"signature\":\"%s\"}",
			       k[3].node, t_sign(&k[3], "deregister:%u", k[3].node)), "deregister"));
}

static void check_populated(registry *r, tid *k)
{
	json_object *o, *a;
	uint8_t pk[32];

	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", k[0].node);
	assert_string_equal(t_type(o), "lookup_ok");
	assert_string_equal(t_str(o, "hostname"), "zero");
	assert_string_equal(t_str(o, "real_addr"), "198.18.0.2:4000");
	assert_int_equal(t_int(o, "polo_score"), 17);
	assert_true(json_object_get_boolean(json_object_object_get(o, "task_exec")));
	assert_int_equal(json_object_array_length(json_object_object_get(o, "tags")), 2);
	assert_int_equal(json_object_array_length(json_object_object_get(o, "networks")), 2);
	assert_null(json_object_object_get(o, "relay_only"));
	json_object_put(o);
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", k[2].node);
	assert_true(json_object_get_boolean(json_object_object_get(o, "relay_only")));
	json_object_put(o);
	assert_true(reg_may_talk(r, k[0].node, k[1].node) && reg_may_talk(r, k[0].node, k[2].node));
	assert_false(reg_may_talk(r, k[1].node, k[2].node));
	assert_false(reg_node_live(r, k[3].node));
	assert_int_equal(reg_node_key(r, k[3].node, pk), 0);
	assert_memory_equal(pk, k[3].id.pk, 32);
	/* the half survives: k0 reporting k2 now pairs */
	o = t_req(r, "{\"type\":\"report_trust\",\"node_id\":%u,\"peer_id\":%u,\"signature\":\"%s\"}",
		  k[0].node, k[2].node, t_sign(&k[0], "report_trust:%u:%u", k[0].node, k[2].node));
	assert_string_equal(t_str(o, "status"), "paired");
	json_object_put(o);
	/* inbox and responses */
	o = t_req(r, "{\"type\":\"poll_handshakes\",\"node_id\":%u,\"signature\":\"%s\"}", k[1].node,
		  t_sign(&k[1], "poll_handshakes:%u", k[1].node));
	a = json_object_object_get(o, "requests");
	assert_int_equal(json_object_array_length(a), 1);
	assert_string_equal(t_str(json_object_array_get_idx(a, 0), "justification"), "please");
	json_object_put(o);
	/* the request record survives: k1 can still accept k2's request */
	assert_true(t_ok(t_req(r, "{\"type\":\"respond_handshake\",\"node_id\":%u,\"peer_id\":%u,\"accept\":true,\"signature\":\"%s\"}",
			       k[1].node, k[2].node, t_sign(&k[1], "respond:%u:%u", k[1].node, k[2].node)), "respond_handshake"));
	/* invites */
	o = t_req(r, "{\"type\":\"poll_invites\",\"node_id\":%u,\"signature\":\"%s\"}", k[1].node,
		  t_sign(&k[1], "poll_invites:%u", k[1].node));
	assert_int_equal(json_object_array_length(json_object_object_get(o, "invites")), 1);
	json_object_put(o);
	/* network and token */
	assert_true(t_err(t_req(r, "{\"type\":\"join_network\",\"node_id\":%u,\"network_id\":1,\"token\":\"bad\",\"signature\":\"%s\"}",
				k[1].node, t_sign(&k[1], "join_network:%u:1", k[1].node)), "forbidden"));
	o = t_req(r, "{\"type\":\"list_nodes\",\"network_id\":1}");
	assert_int_equal(json_object_array_length(json_object_object_get(o, "nodes")), 2);
	json_object_put(o);
	/* hostname index rebuilt */
	assert_true(t_ok(t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"zero\"}"), "resolve_hostname"));
	/* key index of the dead node: same ID back */
	assert_int_equal(t_register(r, &k[3], NULL), 4);
	/* counters: the next new node is 5, the next network 2 */
	assert_int_equal(t_register(r, &k[4], NULL), 5);
	o = t_req(r, "{\"type\":\"create_network\",\"node_id\":%u,\"name\":\"lab2\",\"signature\":\"%s\"}",
		  k[0].node, t_sign(&k[0], "create_network:%u:lab2", k[0].node));
	assert_int_equal(t_int(o, "network_id"), 2);
	json_object_put(o);
}

static void test_persist_close_reopen(void **state)
{
	registry *r = t_open(path, false, NULL);
	tid k[5];
	struct stat st;
	char side[160];

	assert_non_null(r);
	populate(r, k);
	reg_close(r);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	r = t_open(path, false, NULL);
	assert_non_null(r);
	snprintf(side, sizeof(side), "%s-wal", path);
	assert_int_equal(stat(side, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	check_populated(r, k);
	reg_close(r);
}

static void test_persist_crash(void **state)
{
	registry *r = t_open(path, false, NULL), *r2;
	tid k[5];

	assert_non_null(r);
	populate(r, k);
	/* "kill -9": never close r; a second registry opens the same files */
	r2 = t_open(path, false, NULL);
	assert_non_null(r2);
	check_populated(r2, k);
	reg_close(r2);
	reg_close(r); /* only to free memory for the leak checker */
}

static void test_owner_of_reaped_survives(void **state)
{
	registry *r = t_open(path, false, NULL);
	tid a, a2;

	tid_new(&a);
	tid_new(&a2);
	t_register(r, &a, "bob@x");
	assert_true(t_hb(r, &a)); /* the owner is proven by a's key */
	reg_tick(r, t_now);
	t_now += 300000;
	reg_tick(r, t_now);
	assert_false(reg_node_live(r, a.node));
	reg_close(r);
	r = t_open(path, false, NULL);
	/* owner recovery of the reaped node still works after a restart */
	assert_int_equal(t_register(r, &a2, "bob@x"), a.node);
	assert_true(t_hb(r, &a2));
	assert_true(reg_node_live(r, a.node));
	reg_close(r);
}

static void test_rotate_and_reclaim_persist(void **state)
{
	registry *r = t_open(path, false, NULL);
	tid a, n;

	tid_new(&a);
	tid_new(&n);
	t_register(r, &a, NULL);
	assert_true(t_ok(t_req(r, "{\"type\":\"rotate_key\",\"node_id\":%u,\"new_public_key\":\"%s\",\"signature\":\"%s\"}",
			       a.node, n.pk, t_sign(&a, "rotate:%u", a.node)), "rotate_key"));
	reg_close(r);
	r = t_open(path, false, NULL);
	assert_int_equal(t_register(r, &n, NULL), a.node);
	assert_int_equal(t_register(r, &a, NULL), a.node + 1); /* the old key is a stranger now */
	reg_close(r);
}

static void test_schema_version(void **state)
{
	registry *r = t_open(path, false, NULL);
	sqlite3 *db;
	char err[256] = "";
	reg_config c = { 0 };

	reg_close(r);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE schema_version SET version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	c.store_path = path;
	assert_null(reg_open(&c, err, sizeof(err)));
	assert_non_null(strstr(err, "schema version 99"));
	c.store_path = "/proc/nope/registry.db";
	assert_null(reg_open(&c, err, sizeof(err)));
	assert_non_null(strstr(err, "/proc/nope"));
}

/* Handle without waiting for the store (what the server sees); *seq = the write
 * it queued, 0 if none. */
static json_object *req_nowait(registry *r, uint64_t *seq, const char *json)
{
	json_object *q = json_tokener_parse(json), *o;
	reg_ctx ctx = { t_ip, 40000, t_now, t_conn };
	uint64_t before = reg_write_seq(r);

	assert_non_null(q);
	o = reg_handle(r, q, &ctx);
	json_object_put(q);
	*seq = reg_write_seq(r) > before ? reg_write_seq(r) : 0;
	return o;
}

/* A write the store refuses fails alone: the write queued right after it (maybe
 * in the same batch) is committed, and it is reported failed by sequence. */
static void test_write_failure_isolated(void **state)
{
	registry *r = t_open(path, false, NULL), *r2;
	tid a, b, c;
	sqlite3 *db;
	char buf[512];
	uint64_t sb, sh, sc;
	json_object *o;
	reg_store_stats ss;

	tid_new(&a);
	tid_new(&b);
	tid_new(&c);
	t_register(r, &a, NULL);
	t_register(r, &b, NULL);
	/* From now on the disk refuses new node rows (another connection adds a trigger). */
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA busy_timeout=5000; CREATE TRIGGER nope BEFORE INSERT ON nodes"
				      " BEGIN SELECT RAISE(ABORT, 'refused'); END;", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	snprintf(buf, sizeof(buf), "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:4000\"}", c.pk);
	o = req_nowait(r, &sc, buf);
	assert_string_equal(t_type(o), "register_ok"); /* the server would hold this reply */
	c.node = (uint32_t)t_int(o, "node_id");
	json_object_put(o);
	snprintf(buf, sizeof(buf), "{\"type\":\"report_trust\",\"node_id\":%u,\"peer_id\":%u,\"signature\":\"%s\"}",
		 a.node, b.node, t_sign(&a, "report_trust:%u:%u", a.node, b.node));
	o = req_nowait(r, &sh, buf);
	assert_string_equal(t_type(o), "report_trust_ok");
	json_object_put(o);
	sb = sc;
	assert_true(sb > 0 && sh == sb + 1);
	assert_int_equal(reg_sync(r), 0); /* the newest (the trust half) committed */
	assert_true(reg_durable_seq(r) >= sh);
	assert_true(reg_write_failed(r, sb));
	assert_false(reg_write_failed(r, sh));
	reg_get_store_stats(r, &ss);
	assert_int_equal(ss.failed, 1);
	/* on disk: the half is there, node c is not */
	r2 = t_open(path, false, NULL);
	assert_non_null(r2);
	assert_true(c.node > 0);
	assert_false(reg_node_live(r2, c.node));
	assert_true(t_report(r2, &b, &a)); /* completes the pair only if a's half survived */
	assert_true(reg_may_talk(r2, a.node, b.node));
	reg_close(r2);
	reg_close(r);
}

/* With the write queue full, writes are refused busy (with a retry hint) before
 * they change anything; reads and heartbeats are still answered. */
static void test_busy_when_queue_full(void **state)
{
	reg_config cf = { 0 };
	char err[256] = "", buf[512];
	registry *r;
	tid a, b, c;
	uint64_t s1, s2;
	json_object *o;
	reg_store_stats ss;

	tid_new(&a);
	tid_new(&b);
	tid_new(&c);
	cf.store_path = path;
	cf.store_queue_max = 1;
	cf.store_fsync_delay_ms = 300; /* each commit takes >= 300 ms */
	cf.store_sync_full = true; /* so every commit fsyncs, slowly */
	r = reg_open(&cf, err, sizeof(err));
	assert_non_null(r);
	t_register(r, &a, NULL);
	snprintf(buf, sizeof(buf), "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:4000\"}", b.pk);
	o = req_nowait(r, &s1, buf);
	assert_string_equal(t_type(o), "register_ok");
	b.node = (uint32_t)t_int(o, "node_id");
	json_object_put(o);
	snprintf(buf, sizeof(buf), "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:4000\"}", c.pk);
	o = req_nowait(r, &s2, buf);
	assert_string_equal(t_code(o), "busy");
	assert_true(t_int(o, "retry_after_ms") >= 50 && t_int(o, "retry_after_ms") <= 2000);
	assert_int_equal(s2, 0); /* nothing queued, nothing changed */
	assert_false(reg_node_live(r, b.node + 1)); /* c was not given an ID */
	json_object_put(o);
	snprintf(buf, sizeof(buf), "{\"type\":\"lookup\",\"node_id\":%u}", a.node);
	o = req_nowait(r, &s2, buf);
	assert_string_equal(t_type(o), "lookup_ok");
	json_object_put(o);
	snprintf(buf, sizeof(buf), "{\"type\":\"heartbeat\",\"node_id\":%u,\"signature\":\"%s\"}", a.node,
		 t_sign(&a, "heartbeat:%u", a.node));
	o = req_nowait(r, &s2, buf);
	assert_string_equal(t_type(o), "heartbeat_ok");
	json_object_put(o);
	assert_int_equal(reg_sync(r), 0);
	assert_true(reg_durable_seq(r) >= s1);
	reg_get_store_stats(r, &ss);
	assert_int_equal(ss.busy, 1);
	assert_true(ss.max_commit_ms >= 290);
	/* the queue drained: the same write goes through now */
	assert_true(t_register(r, &c, NULL) > 0);
	reg_close(r);
}

/* A version-1 store (no nodes.relay_only) is upgraded in place at open. */
static void test_schema_v1_upgrade(void **state)
{
	registry *r = t_open(path, false, NULL);
	sqlite3 *db;
	sqlite3_stmt *s;
	tid k[5];

	populate(r, k);
	reg_close(r);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "ALTER TABLE nodes DROP COLUMN relay_only;"
				      " ALTER TABLE nodes DROP COLUMN flags;"
				      " UPDATE schema_version SET version = 1", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	r = t_open(path, false, NULL);
	assert_non_null(r);
	reg_close(r);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), 3);
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM nodes WHERE relay_only = 0 AND flags = 0", -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), 4); /* every node, the flag defaulted */
	sqlite3_finalize(s);
	sqlite3_close(db);
	/* and the rest of the state came through */
	r = t_open(path, false, NULL);
	assert_true(t_ok(t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"zero\"}"), "resolve_hostname"));
	reg_close(r);
}

/* A version-2 store (no nodes.flags) is upgraded in place: owners stored before
 * are not known to be proven by their key, so they get no recovery. */
static void test_schema_v2_upgrade(void **state)
{
	registry *r = t_open(path, false, NULL);
	sqlite3 *db;
	sqlite3_stmt *s;
	tid k[5];
	long long ts = t_ts();

	(void)state;
	populate(r, k);
	assert_true(t_ok(t_req(r, "{\"type\":\"heartbeat\",\"node_id\":%u,\"sig_ts\":%lld,\"signature\":\"%s\"}",
			       k[0].node, ts, t_sign(&k[0], "pilot2:heartbeat:%lld:%u", ts, k[0].node)), "heartbeat"));
	reg_close(r);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT flags FROM nodes WHERE id = ?1", -1, &s, NULL), SQLITE_OK);
	sqlite3_bind_int64(s, 1, k[0].node);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0) & 1, 1); /* v2 used: persisted */
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_exec(db, "ALTER TABLE nodes DROP COLUMN flags;"
				      " UPDATE schema_version SET version = 2", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_non_null(r = t_open(path, false, NULL));
	reg_close(r);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), 3);
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM nodes WHERE flags = 0", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), 4);
	sqlite3_finalize(s);
	sqlite3_close(db);
	r = t_open(path, false, NULL);
	assert_true(t_ok(t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"zero\"}"), "resolve_hostname"));
	reg_close(r);
}

static void test_snapshot_roundtrip(void **state)
{
	registry *r = t_open(NULL, false, NULL), *r2 = t_open(path, false, NULL);
	json_object *snap, *snap2;
	tid k[5];

	populate(r, k);
	snap = reg_snapshot(r);
	assert_non_null(json_object_object_get(snap, "pub_key_idx"));
	assert_non_null(json_object_object_get(snap, "trust_pairs"));
	assert_int_equal(reg_apply_snapshot(r2, snap), 0);
	snap2 = reg_snapshot(r2);
	assert_int_equal(json_object_equal(json_object_object_get(snap, "nodes"), json_object_object_get(snap2, "nodes")), 1);
	json_object_put(snap);
	json_object_put(snap2);
	reg_close(r);
	check_populated(r2, k);
	reg_close(r2);
	/* the applied state was saved to the store */
	r2 = t_open(path, false, NULL);
	assert_true(t_ok(t_req(r2, "{\"type\":\"resolve_hostname\",\"hostname\":\"zero\"}"), "resolve_hostname"));
	reg_close(r2);
}

static void test_snapshot_reference_format(void **state)
{
	registry *r = t_open(NULL, false, NULL);
	tid a, b;
	char buf[2048];
	json_object *snap, *o;

	(void)state;
	tid_new(&a);
	tid_new(&b);
	snprintf(buf, sizeof(buf),
		 "{\"next_node\":8,\"next_net\":1,"
		 "\"nodes\":{\"5\":{\"id\":5,\"owner\":\"o@x\",\"public_key\":\"%s\",\"real_addr\":\"1.2.3.4:4000\","
		 "\"networks\":[0],\"public\":true,\"last_seen\":\"2023-11-14T22:13:20+01:00\",\"hostname\":\"five\"}},"
		 "\"networks\":{\"0\":{\"id\":0,\"name\":\"backbone\",\"join_rule\":\"open\",\"members\":[5],"
		 "\"created\":\"2023-01-01T00:00:00Z\"}},"
		 "\"trust_pairs\":[\"5:7\"],\"pub_key_idx\":{\"%s\":5,\"%s\":7},"
		 "\"handshake_inbox\":{\"5\":[{\"from_node_id\":7,\"justification\":\"j\",\"timestamp\":\"2023-11-14T22:13:20.123456789Z\"}]}}",
		 a.pk, a.pk, b.pk);
	snap = json_tokener_parse(buf);
	assert_non_null(snap);
	assert_int_equal(reg_apply_snapshot(r, snap), 0);
	json_object_put(snap);
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":5}");
	assert_string_equal(t_str(o, "hostname"), "five");
	assert_string_equal(t_str(o, "real_addr"), "1.2.3.4:4000");
	json_object_put(o);
	assert_true(reg_may_talk(r, 5, 7));
	assert_false(reg_node_live(r, 7));
	/* reaped node 7's key still reclaims ID 7; a new key gets next_node */
	assert_int_equal(t_register(r, &b, NULL), 7);
	tid_new(&b);
	assert_int_equal(t_register(r, &b, NULL), 8);
	assert_int_equal(reg_apply_snapshot(r, NULL), -EINVAL);
	snap = json_object_new_array();
	assert_int_equal(reg_apply_snapshot(r, snap), -EINVAL);
	json_object_put(snap);
	reg_close(r);
}

/* Found by fuzz_standby: two records naming the same owner (a primary can hold
 * that) left the standby's owner index to the order of the "nodes" object, not
 * to the primary's "owner_idx", so after a failover owner recovery would have
 * picked the other node. */
static void test_snapshot_owner_index(void **state)
{
	registry *r = t_open(NULL, false, NULL);
	tid a, b;
	char buf[2048];
	json_object *snap, *oi;

	(void)state;
	tid_new(&a);
	tid_new(&b);
	snprintf(buf, sizeof(buf),
		 "{\"next_node\":3,\"nodes\":{"
		 "\"1\":{\"id\":1,\"owner\":\"o@x\",\"public_key\":\"%s\",\"networks\":[0]},"
		 "\"2\":{\"id\":2,\"owner\":\"o@x\",\"public_key\":\"%s\",\"networks\":[0]}},"
		 "\"owner_idx\":{\"o@x\":1}}", a.pk, b.pk);
	snap = json_tokener_parse(buf);
	assert_non_null(snap);
	assert_int_equal(reg_apply_snapshot(r, snap), 0);
	json_object_put(snap);
	snap = reg_snapshot(r);
	assert_true(json_object_object_get_ex(snap, "owner_idx", &oi));
	assert_int_equal(json_object_get_int(json_object_object_get(oi, "o@x")), 1);
	json_object_put(snap);
	reg_close(r);
}

static void exec_sql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void exec_sql(const char *fmt, ...)
{
	char *q = NULL, *e = NULL;
	sqlite3 *db;
	va_list ap;

	va_start(ap, fmt);
	assert_true(vasprintf(&q, fmt, ap) > 0);
	va_end(ap);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, q, NULL, NULL, &e) != SQLITE_OK)
		fail_msg("%s: %s", q, e ? e : "?");
	sqlite3_close(db);
	free(q);
}

/* st_load took rows as they were: a node ID past 32 bits became another node
 * (and leaked the first), next_node -1 made the next node the broadcast ID, a
 * member row of network 65537 joined network 1, a trust pair with a truncated ID
 * paired two other nodes, an inbox was loaded past its cap. Bad rows are now
 * refused, bad columns of a node left out, all logged and counted. */
static void test_corrupt_rows_refused(void **state)
{
	registry *r = t_open(path, false, NULL);
	static const char cols[] = "id, public_key, owner, live, real_addr, src_ip, public, hostname, tags,"
				   " polo_score, task_exec, relay_only, flags";
	char owner[301];
	reg_store_stats ss;
	json_object *o;
	tid k[5], fresh;

	assert_non_null(r);
	populate(r, k);
	reg_close(r);
	memset(owner, 'o', sizeof(owner) - 1);
	owner[sizeof(owner) - 1] = 0;
	exec_sql(
		"INSERT INTO nodes(%s) VALUES(4294967297, randomblob(32), NULL, 1, NULL, NULL, 0, NULL, "
		"NULL, 0, 0, 0, 0);"
		"INSERT INTO nodes(%s) VALUES(4294967295, randomblob(32), NULL, 1, NULL, NULL, 0, NULL, "
		"NULL, 0, 0, 0, 0);"
		"INSERT INTO nodes(%s) VALUES(-5, randomblob(32), NULL, 1, NULL, NULL, 0, NULL, NULL, 0, 0, "
		"0, 0);"
		"INSERT INTO nodes(%s) VALUES(9, x'0102', NULL, 1, NULL, NULL, 0, NULL, NULL, 0, 0, 0, 0);"
		"INSERT INTO nodes(%s) SELECT 10, public_key, NULL, 1, NULL, NULL, 0, NULL, NULL, 0, 0, 0, 0"
		" FROM nodes WHERE id = %u;"
		"INSERT INTO nodes(%s) VALUES(11, randomblob(32), '%s', 1, 'not-an-endpoint', 'x', 1, 'zero',"
		" 'gpu,,NOPE', 0, 0, 0, 0);"
		"INSERT INTO networks(id, name, join_rule, token, created, creator) VALUES(70000, 'big', "
		"'open', NULL, 0, 0);"
		"INSERT INTO networks(id, name, join_rule, token, created, creator) VALUES(2, 'LAB!', "
		"'open', NULL, 0, 0);"
		"INSERT INTO networks(id, name, join_rule, token, created, creator) VALUES(3, 'lab', 'open', "
		"NULL, 0, 0);"
		"INSERT INTO members(net, node) VALUES(65537, %u);"
		"INSERT INTO trust_pairs(a, b) VALUES(%lld, %u);"
		"WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 101)"
		" INSERT INTO hs_inbox(dst, src, justification, ts) SELECT %u, 1000 + i, 'j', 1 FROM c;"
		"UPDATE meta SET value = -1 WHERE key = 'next_node';",
		cols, cols, cols, cols, cols, k[0].node, cols, owner, k[1].node,
		(long long)k[1].node + 4294967296ll, k[2].node, k[0].node);
	r = t_open(path, false, NULL);
	assert_non_null(r);
	reg_get_store_stats(r, &ss);
	/* nodes: 5 refused + 5 columns of node 11; networks 3; member, pair, inbox, meta 1 each */
	assert_int_equal(ss.rows_refused, 17);
	for (uint32_t id = 9; id <= 10; id++)
		assert_true(t_err(t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", id), "not_found"));
	assert_true(t_err(t_req(r, "{\"type\":\"lookup\",\"node_id\":4294967295}"), "not_found"));
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":11}");
	assert_string_equal(t_type(o), "lookup_ok");
	assert_string_equal(t_str(o, "real_addr"), "");
	assert_null(json_object_object_get(o, "hostname"));
	assert_null(json_object_object_get(o, "tags"));
	json_object_put(o);
	/* what was good is all there */
	o = t_req(r, "{\"type\":\"resolve_hostname\",\"hostname\":\"zero\"}");
	assert_int_equal(t_int(o, "node_id"), k[0].node);
	json_object_put(o);
	o = t_req(r, "{\"type\":\"lookup\",\"node_id\":%u}", k[0].node);
	assert_int_equal(json_object_array_length(json_object_object_get(o, "tags")), 2);
	json_object_put(o);
	assert_false(reg_may_talk(r, k[1].node, k[2].node));
	o = t_req(r, "{\"type\":\"list_nodes\",\"network_id\":1}");
	assert_int_equal(json_object_array_length(json_object_object_get(o, "nodes")), 2);
	json_object_put(o);
	o = t_req(r, "{\"type\":\"poll_handshakes\",\"node_id\":%u,\"signature\":\"%s\"}", k[0].node,
		  t_sign(&k[0], "poll_handshakes:%u", k[0].node));
	assert_int_equal(json_object_array_length(json_object_object_get(o, "requests")), 100);
	json_object_put(o);
	/* the next node is numbered after the highest loaded one, not broadcast */
	tid_new(&fresh);
	assert_int_equal(t_register(r, &fresh, NULL), 12);
	reg_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_persist_close_reopen),
		T(test_persist_crash),
		T(test_owner_of_reaped_survives),
		T(test_rotate_and_reclaim_persist),
		T(test_schema_version),
		T(test_schema_v1_upgrade),
		T(test_schema_v2_upgrade),
		T(test_snapshot_roundtrip),
		T(test_snapshot_reference_format),
		T(test_write_failure_isolated),
		T(test_busy_when_queue_full),
		T(test_snapshot_owner_index),
		T(test_corrupt_rows_refused),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
