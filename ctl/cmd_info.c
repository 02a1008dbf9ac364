/* info, peers, connections, disconnect, daemon status. */
#include <errno.h>
#include <string.h>

#include "ctl/ctl.h"

static void render_info(pctl *c, json_object *data)
{
	char buf[256];

	(void)c;
	if (!data)
		return;
	/* The lists have their own verbs; here they are the counts above. */
	json_object_object_foreach(data, k, v) {
		if (!strcmp(k, "peer_list") || !strcmp(k, "conn_list"))
			continue;
		printf("%s: %s\n", k, pctl_format(v, PCTL_STR, buf, sizeof(buf)));
	}
}

int pctl_cmd_info(pctl *c)
{
	return pctl_call(c, "info", NULL, render_info);
}

static const pctl_col peer_cols[] = {
	{ "NODE", "node_id", PCTL_STR },
	{ "ADDRESS", "address", PCTL_STR },
	{ "PATH", "path", PCTL_STR },
	{ "ENDPOINT", "endpoint", PCTL_STR },
	{ "ENCRYPTED", "encrypted", PCTL_BOOL },
	{ "AUTHENTICATED", "authenticated", PCTL_BOOL },
	{ "KDF", "kdf", PCTL_STR },
	{ "LAST RX", "last_rx_ms", PCTL_AGE_MS },
	{ NULL, NULL, PCTL_STR },
};

static void render_peers(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "peers", peer_cols, "no peers");
}

int pctl_cmd_peers(pctl *c)
{
	json_object *args = pctl_obj();
	const char *search = pctl_flag_get(c, "search");

	if (search)
		pctl_set_str(args, "search", search);
	return pctl_call(c, "peers", args, render_peers);
}

static const pctl_col conn_cols[] = {
	{ "ID", "id", PCTL_STR },
	{ "LOCAL", "local_port", PCTL_STR },
	{ "REMOTE", "remote_addr", PCTL_STR },
	{ "RPORT", "remote_port", PCTL_STR },
	{ "STATE", "state", PCTL_STR },
	{ "SRTT", "srtt_ms", PCTL_MS },
	{ "CWND", "cong_win", PCTL_STR },
	{ "INFLIGHT", "in_flight", PCTL_STR },
	{ "SENT", "bytes_sent", PCTL_STR },
	{ "RECV", "bytes_recv", PCTL_STR },
	{ "RETX", "retransmits", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_conns(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "connections", conn_cols, "no connections");
}

int pctl_cmd_connections(pctl *c)
{
	return pctl_call(c, "connections", NULL, render_conns);
}

static void render_disconnect(pctl *c, json_object *data)
{
	char buf[32];

	(void)c;
	printf("closed connection %s\n",
	       pctl_format(data ? json_object_object_get(data, "conn_id") : NULL, PCTL_STR, buf, sizeof(buf)));
}

int pctl_cmd_disconnect(pctl *c)
{
	json_object *args;
	long id;

	if (pctl_arg_long(c, 0, "connection id", 0, UINT32_MAX, &id) < 0)
		return PCTL_EXIT_ERR;
	args = pctl_obj();
	pctl_set_int(args, "conn_id", id);
	return pctl_call(c, "disconnect", args, render_disconnect);
}

/* cli.md §3.2: an unresponsive daemon is reported, not an error. */
static json_object *status_of(pctl *c, json_object *reply, int err)
{
	static const char *const copy[] = { "pid", "node_id", "address", "hostname", "uptime_secs", "peers",
					    "connections", NULL };
	json_object *st = pctl_obj(), *data = reply ? json_object_object_get(reply, "data") : NULL;
	const char *status = reply ? json_object_get_string(json_object_object_get(reply, "status")) : NULL;
	bool responsive = !err && status && !strcmp(status, "ok") && data;

	json_object_object_add(st, "running", json_object_new_boolean(err != -ENOENT && err != -ECONNREFUSED &&
								      err != -ENOTDIR));
	json_object_object_add(st, "responsive", json_object_new_boolean(responsive));
	pctl_set_str(st, "socket", c->socket);
	for (int i = 0; responsive && copy[i]; i++) {
		json_object *v = NULL;

		if (json_object_object_get_ex(data, copy[i], &v))
			json_object_object_add(st, copy[i], json_object_get(v));
	}
	return st;
}

int pctl_cmd_daemon_status(pctl *c)
{
	json_object *reply = NULL, *st;
	int err;

	c->wait_ms = 5000;
	err = pctl_request(c, "info", NULL, &reply);
	if (pctl_flag_bool(c, "check")) {
		const char *status = reply ? json_object_get_string(json_object_object_get(reply, "status")) : NULL;
		int rc = !err && status && !strcmp(status, "ok") ? PCTL_EXIT_OK : PCTL_EXIT_ERR;

		json_object_put(reply);
		return rc;
	}
	st = status_of(c, reply, err);
	json_object_put(reply);
	return pctl_ok(c, st, NULL);
}
