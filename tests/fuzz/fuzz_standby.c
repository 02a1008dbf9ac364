/* libFuzzer: the hot standby's input (rendezvous/standby.c, reg_snapshot.c). The
 * bytes arrive as if read from the primary's replication stream and go through
 * the standby's framing into reg_apply_snapshot on an in-memory registry.
 *
 * First byte: bit 0 set = the rest is the raw stream (length prefixes from the
 * input); clear = the rest is one message body, framed here so the JSON is what
 * gets mutated. Bits 1-7 = chunk size of the feed (0 = all at once).
 *
 * After an applied snapshot the state must round-trip: snapshot -> apply on a
 * second registry -> snapshot gives the same state (arrays compared as sets, as
 * their order follows hash tables), and queries on it must answer. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lib/log.h"
#include "lib/loop.h"
#include "rendezvous/registry.h"
#include "rendezvous/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pilot_loop *loop;
static registry *reg, *reg2;
static rdv_standby *sb;

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A copy with every array sorted by the text of its elements. */
static json_object *norm(json_object *o)
{
	if (json_object_is_type(o, json_type_object)) {
		json_object *c = json_object_new_object();

		json_object_object_foreach(o, k, v)
			json_object_object_add(c, k, norm(v));
		return c;
	}
	if (json_object_is_type(o, json_type_array)) {
		size_t n = json_object_array_length(o);
		char **t = calloc(n + 1, sizeof(*t));
		json_object *c = json_object_new_array();

		for (size_t i = 0; t && i < n; i++) {
			json_object *e = norm(json_object_array_get_idx(o, i));

			t[i] = strdup(json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN));
			json_object_put(e);
		}
		if (t) {
			qsort(t, n, sizeof(*t), cmp_str);
			for (size_t i = 0; i < n; i++) {
				json_object_array_add(c, json_object_new_string(t[i] ? t[i] : ""));
				free(t[i]);
			}
		}
		free(t);
		return c;
	}
	return json_object_get(o);
}

static void query(registry *r, const char *type, const char *k, uint32_t v)
{
	json_object *q = json_object_new_object(), *resp;
	reg_ctx ctx = { .src_ip = "198.18.0.9", .src_port = 1234, .now_ms = 1767225600000ULL };

	json_object_object_add(q, "type", json_object_new_string(type));
	if (k)
		json_object_object_add(q, k, json_object_new_int64(v));
	resp = reg_handle(r, q, &ctx);
	if (!resp)
		__builtin_trap();
	json_object_put(resp);
	json_object_put(q);
}

static void check_state(void)
{
	json_object *s1 = reg_snapshot(reg), *s2, *n1, *n2, *nodes;

	if (reg_apply_snapshot(reg2, s1) < 0)
		__builtin_trap();
	s2 = reg_snapshot(reg2);
	n1 = norm(s1);
	n2 = norm(s2);
	if (!json_object_equal(n1, n2)) {
		fprintf(stderr, "round trip differs:\n%s\n%s\n",
			json_object_to_json_string_ext(n1, JSON_C_TO_STRING_PLAIN),
			json_object_to_json_string_ext(n2, JSON_C_TO_STRING_PLAIN));
		__builtin_trap();
	}
	/* Every node and network the snapshot names can be queried. */
	if (json_object_object_get_ex(s1, "nodes", &nodes)) {
		int k = 0;

		json_object_object_foreach(nodes, id, o) {
			uint32_t node = (uint32_t)strtoul(id, NULL, 10);

			(void)o;
			if (k++ == 8)
				break;
			query(reg, "lookup", "node_id", node);
			query(reg, "list_nodes", "network_id", 0);
		}
	}
	query(reg, "list_networks", NULL, 0);
	reg_tick(reg, 1767225600000ULL);
	json_object_put(n1);
	json_object_put(n2);
	json_object_put(s1);
	json_object_put(s2);
}

static void setup(void)
{
	reg_config c = { 0 };
	char err[256];

	pilot_log_init("fuzz", (enum pilot_log_level)(PILOT_LOG_ERROR + 1), PILOT_LOG_TEXT);
	loop = pilot_loop_new();
	reg = reg_open(&c, err, sizeof(err));
	reg2 = reg_open(&c, err, sizeof(err));
	/* The loop never runs: the standby never dials, it only parses what it is fed. */
	sb = rdv_standby_new(loop, "127.0.0.1:9", "tok", NULL, reg, err, sizeof(err));
	if (!loop || !reg || !reg2 || !sb)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rdv_standby_stats before, after;
	uint8_t *buf;
	size_t len, step, off = 0;

	if (!sb)
		setup();
	if (size < 1 || size > (1u << 20))
		return 0;
	step = data[0] >> 1;
	if (data[0] & 1) {
		buf = malloc(size - 1 + 1);
		if (!buf)
			return 0;
		memcpy(buf, data + 1, size - 1);
		len = size - 1;
	} else {
		len = size - 1 + 4;
		buf = malloc(len);
		if (!buf)
			return 0;
		buf[0] = (uint8_t)((size - 1) >> 24);
		buf[1] = (uint8_t)((size - 1) >> 16);
		buf[2] = (uint8_t)((size - 1) >> 8);
		buf[3] = (uint8_t)(size - 1);
		memcpy(buf + 4, data + 1, size - 1);
	}
	rdv_standby_get_stats(sb, &before);
	while (off < len) {
		size_t n = step && step < len - off ? step : len - off;

		if (rdv_standby_feed(sb, buf + off, n) < 0)
			break;
		off += n;
	}
	free(buf);
	rdv_standby_get_stats(sb, &after);
	if (after.snapshots != before.snapshots)
		check_state();
	/* A fresh connection for the next input (the reader drops a partial frame). */
	rdv_standby_free(sb);
	{
		char err[256];

		sb = rdv_standby_new(loop, "127.0.0.1:9", "tok", NULL, reg, err, sizeof(err));
		if (!sb)
			abort();
	}
	return 0;
}
