/* Communication verbs. The daemon does the work (dial, echo, data exchange,
 * event stream); pilotctl validates, sends the request and renders the reply
 * or the stream. Targets are passed through as given: the daemon resolves a
 * full address, a bare decimal node ID (network 0) or a hostname. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "lib/addr.h"
#include "lib/jsonwire.h"

#define STDIN_MAX 65535 /* one message; what connect sends in one write */

/* How long pilotctl waits for the final reply: the daemon's own timeout plus
 * a margin, or forever for an unbounded stream. */
static void wait_for(pctl *c, int64_t timeout_ms)
{
	c->wait_ms = timeout_ms > 0 ? timeout_ms + 5000 : -1;
}

static json_object *target_args(pctl *c)
{
	json_object *args = pctl_obj();

	pctl_set_str(args, "target", c->pos[0]);
	return args;
}

static int port_arg(pctl *c, int i, long *port)
{
	return pctl_arg_long(c, i, "port", 0, 65535, port);
}

/* ---- ping ---- */

static void render_ping(pctl *c, json_object *data)
{
	json_object *res = data ? json_object_object_get(data, "results") : NULL;
	size_t n = res && json_object_is_type(res, json_type_array) ? json_object_array_length(res) : 0, ok = 0;

	(void)c;
	printf("PING %s\n", data ? jw_get_str(data, "target") ?: "" : "");
	for (size_t i = 0; i < n; i++) {
		json_object *r = json_object_array_get_idx(res, i);
		const char *err = jw_get_str(r, "error");

		if (err) {
			printf("seq=%lld error: %s\n", (long long)jw_get_i64(r, "seq"), err);
			continue;
		}
		ok++;
		printf("seq=%lld bytes=%lld time=%.3f ms\n", (long long)jw_get_i64(r, "seq"),
		       (long long)jw_get_i64(r, "bytes"), json_object_get_double(json_object_object_get(r, "rtt_ms")));
	}
	printf("%zu sent, %zu received%s\n", n, ok, data && jw_get_bool(data, "timeout") ? ", timed out" : "");
}

int pctl_cmd_ping(pctl *c)
{
	json_object *args;
	int64_t timeout;
	long count;

	if (pctl_flag_long(c, "count", 4, 1, 1000, &count) < 0 ||
	    pctl_flag_duration(c, "timeout", 30000, &timeout) < 0)
		return PCTL_EXIT_ERR;
	args = target_args(c);
	pctl_set_int(args, "count", count);
	pctl_set_int(args, "timeout_ms", timeout);
	wait_for(c, timeout);
	return pctl_call(c, "ping", args, render_ping);
}

/* ---- traceroute, bench ---- */

static void render_trace(pctl *c, json_object *data)
{
	json_object *s = data ? json_object_object_get(data, "rtt_samples") : NULL;
	size_t n = s && json_object_is_type(s, json_type_array) ? json_object_array_length(s) : 0;

	(void)c;
	if (!data)
		return;
	printf("%s: connection set-up %.3f ms\n", jw_get_str(data, "target") ?: "",
	       json_object_get_double(json_object_object_get(data, "setup_ms")));
	if (jw_get_str(data, "error"))
		printf("error: %s\n", jw_get_str(data, "error"));
	for (size_t i = 0; i < n; i++) {
		json_object *r = json_object_array_get_idx(s, i);

		if (jw_get_str(r, "error"))
			printf("  %zu  error: %s\n", i + 1, jw_get_str(r, "error"));
		else
			printf("  %zu  %.3f ms\n", i + 1, json_object_get_double(json_object_object_get(r, "rtt_ms")));
	}
}

int pctl_cmd_traceroute(pctl *c)
{
	json_object *args;
	pilot_addr a;
	int64_t timeout;

	if (pilot_addr_parse(c->pos[0], strlen(c->pos[0]), &a) < 0)
		return pctl_usage_fail(c, "invalid address \"%s\": traceroute takes a full address N:NNNN.HHHH.LLLL",
				       c->pos[0]);
	if (pctl_flag_duration(c, "timeout", 30000, &timeout) < 0)
		return PCTL_EXIT_ERR;
	args = target_args(c);
	pctl_set_int(args, "timeout_ms", timeout);
	wait_for(c, timeout);
	return pctl_call(c, "traceroute", args, render_trace);
}

int pctl_cmd_bench(pctl *c)
{
	json_object *args;
	double mb = 1.0;
	int64_t timeout;

	if (c->npos > 1) {
		char *end;

		errno = 0;
		mb = strtod(c->pos[1], &end);
		if (!c->pos[1][0] || *end || errno || !isfinite(mb) || mb <= 0 || mb > 4096)
			return pctl_usage_fail(c, "invalid size \"%s\": want MiB above 0, at most 4096", c->pos[1]);
	}
	if (pctl_flag_duration(c, "timeout", 120000, &timeout) < 0)
		return PCTL_EXIT_ERR;
	args = target_args(c);
	json_object_object_add(args, "size_mb", json_object_new_double(mb));
	pctl_set_int(args, "timeout_ms", timeout);
	wait_for(c, timeout);
	return pctl_call(c, "bench", args, NULL);
}

/* ---- streams: connect, send, recv ---- */

/* cli.md §3.5: stdin lines re-joined with \n, the final newline dropped. */
static int read_stdin(pctl *c, char **out)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap + 1);
	ssize_t n;

	if (!buf)
		return pctl_fail(c, "internal", NULL, "out of memory");
	while ((n = read(0, buf + len, cap - len)) > 0) {
		len += (size_t)n;
		if (len == cap && cap < STDIN_MAX + 1) {
			char *b = realloc(buf, 2 * cap + 1);

			if (!b) {
				free(buf);
				return pctl_fail(c, "internal", NULL, "out of memory");
			}
			buf = b;
			cap *= 2;
		} else if (len == cap) {
			break;
		}
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	if (n < 0 || !len || len > STDIN_MAX) {
		free(buf);
		return pctl_usage_fail(c, n < 0 ? "cannot read stdin" : !len ? "empty message on stdin"
					  : "message on stdin is larger than %d bytes", STDIN_MAX);
	}
	*out = buf;
	return 0;
}

static void render_exchange(pctl *c, json_object *data)
{
	(void)c;
	if (data && jw_get_str(data, "response"))
		printf("%s\n", jw_get_str(data, "response"));
}

int pctl_cmd_connect(pctl *c)
{
	const char *msg = pctl_flag_get(c, "message");
	char *in = NULL;
	json_object *args;
	int64_t timeout;
	long port = 1000;

	if ((c->npos > 1 && port_arg(c, 1, &port) < 0) || pctl_flag_duration(c, "timeout", 30000, &timeout) < 0)
		return PCTL_EXIT_ERR;
	if (!msg) {
		if (isatty(0))
			return pctl_usage_fail(c, "no --message and stdin is a terminal");
		if (read_stdin(c, &in))
			return PCTL_EXIT_ERR;
		msg = in;
	}
	args = target_args(c);
	pctl_set_int(args, "port", port);
	pctl_set_str(args, "message", msg);
	pctl_set_int(args, "timeout_ms", timeout);
	free(in);
	wait_for(c, timeout);
	return pctl_call(c, "connect", args, render_exchange);
}

int pctl_cmd_send(pctl *c)
{
	const char *data = pctl_flag_get(c, "data");
	json_object *args;
	int64_t timeout;
	long port;

	if (port_arg(c, 1, &port) < 0 || pctl_flag_duration(c, "timeout", 30000, &timeout) < 0)
		return PCTL_EXIT_ERR;
	if (!data)
		return pctl_usage_fail(c, "send needs --data");
	args = target_args(c);
	pctl_set_int(args, "port", port);
	pctl_set_str(args, "data", data);
	pctl_set_int(args, "timeout_ms", timeout);
	wait_for(c, timeout);
	return pctl_call(c, "send", args, render_exchange);
}

static const pctl_col recv_cols[] = {
	{ "SEQ", "seq", PCTL_STR },
	{ "PORT", "port", PCTL_STR },
	{ "BYTES", "bytes", PCTL_STR },
	{ "DATA", "data", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_recv(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "messages", recv_cols, "no messages");
	if (data && jw_get_bool(data, "timeout"))
		printf("(timed out)\n");
}

/* count/timeout/port triple shared by recv and listen. */
static int port_count_args(pctl *c, long def_count, int64_t def_timeout, json_object **out)
{
	int64_t timeout;
	long port, count;

	if (port_arg(c, 0, &port) < 0 || pctl_flag_long(c, "count", def_count, 0, 1000000, &count) < 0 ||
	    pctl_flag_duration(c, "timeout", def_timeout, &timeout) < 0)
		return -1;
	*out = pctl_obj();
	pctl_set_int(*out, "port", port);
	pctl_set_int(*out, "count", count);
	pctl_set_int(*out, "timeout_ms", timeout);
	wait_for(c, count || timeout ? timeout : -1);
	return 0;
}

int pctl_cmd_recv(pctl *c)
{
	json_object *args;

	if (port_count_args(c, 1, 30000, &args) < 0)
		return PCTL_EXIT_ERR;
	return pctl_call(c, "recv", args, render_recv);
}

/* ---- secure channel (port 443) ---- */

int pctl_cmd_secure_connect(pctl *c)
{
	const char *msg = pctl_flag_get(c, "message");
	char *in = NULL;
	json_object *args;
	int64_t timeout;
	long port = 443;

	if ((c->npos > 1 && port_arg(c, 1, &port) < 0) ||
	    pctl_flag_duration(c, "timeout", 30000, &timeout) < 0)
		return PCTL_EXIT_ERR;
	if (!msg) {
		if (isatty(0))
			return pctl_usage_fail(c, "no --message and stdin is a terminal");
		if (read_stdin(c, &in))
			return PCTL_EXIT_ERR;
		msg = in;
	}
	args = target_args(c);
	pctl_set_int(args, "port", port);
	pctl_set_str(args, "message", msg);
	pctl_set_int(args, "timeout_ms", timeout);
	if (pctl_flag_bool(c, "compat"))
		json_object_object_add(args, "compat", json_object_new_boolean(1));
	if (pctl_flag_bool(c, "plain"))
		json_object_object_add(args, "plain", json_object_new_boolean(1));
	free(in);
	wait_for(c, timeout);
	return pctl_call(c, "secure-connect", args, render_exchange);
}

static const pctl_col slisten_cols[] = {
	{ "SEQ", "seq", PCTL_STR },
	{ "FROM", "from", PCTL_STR },
	{ "AUTHENTICATED", "authenticated", PCTL_STR },
	{ "BYTES", "bytes", PCTL_STR },
	{ "DATA", "data", PCTL_STR },
	{ "ERROR", "error", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_slisten(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "messages", slisten_cols, "no messages");
	if (data && jw_get_bool(data, "timeout"))
		printf("(timed out)\n");
}

int pctl_cmd_secure_listen(pctl *c)
{
	const char *reply = pctl_flag_get(c, "reply");
	json_object *args;
	int64_t timeout;
	long port = 443, count;

	if ((c->npos > 0 && port_arg(c, 0, &port) < 0) ||
	    pctl_flag_long(c, "count", 1, 0, 1000000, &count) < 0 ||
	    pctl_flag_duration(c, "timeout", 30000, &timeout) < 0)
		return PCTL_EXIT_ERR;
	args = pctl_obj();
	pctl_set_int(args, "port", port);
	pctl_set_int(args, "count", count);
	pctl_set_int(args, "timeout_ms", timeout);
	if (reply)
		pctl_set_str(args, "reply", reply);
	if (pctl_flag_bool(c, "require-auth"))
		json_object_object_add(args, "require_auth", json_object_new_boolean(1));
	wait_for(c, count || timeout ? timeout : -1);
	return pctl_call(c, "secure-listen", args, render_slisten);
}

/* ---- data exchange and event stream ---- */

int pctl_cmd_send_file(pctl *c)
{
	char path[PATH_MAX];
	json_object *args;
	int64_t timeout;

	if (!realpath(c->pos[1], path))
		return pctl_fail(c, errno == ENOENT ? "not_found" : "internal", NULL, "%s: %s", c->pos[1],
				 strerror(errno));
	if (access(path, R_OK) < 0)
		return pctl_fail(c, "internal", NULL, "%s: %s", path, strerror(errno));
	if (pctl_flag_duration(c, "timeout", 120000, &timeout) < 0)
		return PCTL_EXIT_ERR;
	args = target_args(c);
	pctl_set_str(args, "path", path);
	pctl_set_int(args, "timeout_ms", timeout);
	wait_for(c, timeout);
	return pctl_call(c, "send-file", args, NULL);
}

int pctl_cmd_send_message(pctl *c)
{
	const char *data = pctl_flag_get(c, "data"), *type = pctl_flag_get(c, "type");
	json_object *args, *probe;

	if (!type)
		type = "text";
	if (strcmp(type, "text") && strcmp(type, "json") && strcmp(type, "binary"))
		return pctl_usage_fail(c, "invalid --type \"%s\": want text, json or binary", type);
	if (!data)
		return pctl_usage_fail(c, "send-message needs --data");
	if (!strcmp(type, "json")) {
		if (!(probe = jw_parse(data, strlen(data), NULL)))
			return pctl_usage_fail(c, "--data is not valid JSON");
		json_object_put(probe);
	}
	args = target_args(c);
	pctl_set_str(args, "data", data);
	pctl_set_str(args, "type", type);
	return pctl_call(c, "send-message", args, NULL);
}

static void render_event(pctl *c, json_object *ev)
{
	(void)c;
	printf("[%s] %s\n", jw_get_str(ev, "topic") ?: "", jw_get_str(ev, "data") ?: "");
}

static void render_events(pctl *c, json_object *data)
{
	json_object *evs = data ? json_object_object_get(data, "events") : NULL;
	size_t n = evs && json_object_is_type(evs, json_type_array) ? json_object_array_length(evs) : 0;

	for (size_t i = 0; i < n; i++)
		render_event(c, json_object_array_get_idx(evs, i));
	if (data && jw_get_str(data, "error"))
		printf("error: %s\n", jw_get_str(data, "error"));
	if (data && jw_get_bool(data, "timeout"))
		printf("(timed out)\n");
}

int pctl_cmd_subscribe(pctl *c)
{
	json_object *args;
	int64_t timeout;
	long count;

	if (pctl_flag_long(c, "count", 0, 0, 1000000, &count) < 0 ||
	    pctl_flag_duration(c, "timeout", 0, &timeout) < 0)
		return PCTL_EXIT_ERR;
	args = target_args(c);
	pctl_set_str(args, "topic", c->pos[1]);
	pctl_set_int(args, "count", count);
	pctl_set_int(args, "timeout_ms", timeout);
	wait_for(c, count || timeout ? timeout : -1);
	c->stream = render_event;
	return pctl_call(c, "subscribe", args, render_events);
}

int pctl_cmd_publish(pctl *c)
{
	const char *data = pctl_flag_get(c, "data");
	json_object *args;

	if (!data)
		return pctl_usage_fail(c, "publish needs --data");
	args = target_args(c);
	pctl_set_str(args, "topic", c->pos[1]);
	pctl_set_str(args, "data", data);
	return pctl_call(c, "publish", args, NULL);
}

static void render_datagram(pctl *c, json_object *m)
{
	(void)c;
	printf("%s:%lld: %s\n", jw_get_str(m, "src_addr") ?: "?", (long long)jw_get_i64(m, "src_port"),
	       jw_get_str(m, "data") ?: "");
}

static void render_listen(pctl *c, json_object *data)
{
	json_object *ms = data ? json_object_object_get(data, "messages") : NULL;
	size_t n = ms && json_object_is_type(ms, json_type_array) ? json_object_array_length(ms) : 0;

	for (size_t i = 0; i < n; i++)
		render_datagram(c, json_object_array_get_idx(ms, i));
	if (data && jw_get_bool(data, "timeout"))
		printf("(timed out)\n");
}

int pctl_cmd_listen(pctl *c)
{
	json_object *args;

	if (port_count_args(c, 0, 0, &args) < 0)
		return PCTL_EXIT_ERR;
	c->stream = render_datagram;
	return pctl_call(c, "listen", args, render_listen);
}

/* ---- broadcast ---- */
static void render_broadcast(pctl *c, json_object *data)
{
	(void)c;
	printf("broadcast %lld bytes to port %lld of network %lld: sent to %lld of %lld members\n",
	       (long long)json_object_get_int64(json_object_object_get(data, "bytes")),
	       (long long)json_object_get_int64(json_object_object_get(data, "port")),
	       (long long)json_object_get_int64(json_object_object_get(data, "network_id")),
	       (long long)json_object_get_int64(json_object_object_get(data, "sent")),
	       (long long)json_object_get_int64(json_object_object_get(data, "members")));
}

int pctl_cmd_broadcast(pctl *c)
{
	const char *data = pctl_flag_get(c, "data");
	json_object *args;
	long net, port;

	if (pctl_arg_long(c, 0, "network", 1, 65535, &net) < 0 || port_arg(c, 1, &port) < 0)
		return PCTL_EXIT_ERR;
	if (!data || !*data)
		return pctl_usage_fail(c, "broadcast needs --data");
	args = pctl_obj();
	pctl_set_int(args, "network_id", net);
	pctl_set_int(args, "port", port);
	pctl_set_str(args, "data", data);
	return pctl_call(c, "broadcast", args, render_broadcast);
}
