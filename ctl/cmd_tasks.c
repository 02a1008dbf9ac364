/* Task submit (port 1003) and polo-score verbs. The daemon keeps the tasks and
 * the execution queue; pilotctl validates and renders. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "lib/jsonwire.h"

static const pctl_col task_cols[] = {
	{ "TASK_ID", "task_id", PCTL_STR },
	{ "TYPE", "type", PCTL_STR },
	{ "STATUS", "status", PCTL_STR },
	{ "FROM", "from", PCTL_STR },
	{ "TO", "to", PCTL_STR },
	{ "DESCRIPTION", "task_description", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_tasks(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "tasks", task_cols, "no tasks");
}

/* The task ID: positional, or --id as the reference's pilotctl takes it. */
static json_object *id_args(pctl *c)
{
	json_object *a = pctl_obj();
	const char *id = pctl_flag_get(c, "id");

	pctl_set_str(a, "task_id", id ? id : c->npos > 0 ? c->pos[0] : "");
	return a;
}

int pctl_cmd_task_submit(pctl *c)
{
	const char *desc = pctl_flag_get(c, "task");
	json_object *a;

	if (!desc || !*desc)
		return pctl_usage_fail(c, "task submit needs --task DESCRIPTION");
	a = pctl_obj();
	pctl_set_str(a, "target", c->pos[0]);
	pctl_set_str(a, "description", desc);
	c->wait_ms = 40000;
	return pctl_call(c, "task-submit", a, NULL);
}

int pctl_cmd_task_list(pctl *c)
{
	const char *type = pctl_flag_get(c, "type");
	json_object *a = pctl_obj();

	if (type)
		pctl_set_str(a, "type", type);
	return pctl_call(c, "task-list", a, render_tasks);
}

int pctl_cmd_task_status(pctl *c)
{
	return pctl_call(c, "task-status", id_args(c), NULL);
}

int pctl_cmd_task_accept(pctl *c)
{
	c->wait_ms = 40000;
	return pctl_call(c, "task-accept", id_args(c), NULL);
}

int pctl_cmd_task_decline(pctl *c)
{
	json_object *a = id_args(c);
	const char *why = pctl_flag_get(c, "justification");

	if (why)
		pctl_set_str(a, "justification", why);
	c->wait_ms = 40000;
	return pctl_call(c, "task-decline", a, NULL);
}

int pctl_cmd_task_execute(pctl *c)
{
	c->wait_ms = 40000;
	return pctl_call(c, "task-execute", pctl_obj(), NULL);
}

int pctl_cmd_task_send_results(pctl *c)
{
	const char *text = pctl_flag_get(c, "results"), *file = pctl_flag_get(c, "file");
	char path[PATH_MAX];
	json_object *a;

	if (!!text == !!file)
		return pctl_usage_fail(c, "task send-results needs --results TEXT or --file PATH (one)");
	a = id_args(c);
	if (text) {
		pctl_set_str(a, "results", text);
	} else {
		if (!realpath(file, path)) {
			json_object_put(a);
			return pctl_fail(c, errno == ENOENT ? "not_found" : "internal", NULL, "%s: %s", file,
					 strerror(errno));
		}
		pctl_set_str(a, "path", path);
	}
	c->wait_ms = 40000;
	return pctl_call(c, "task-send-results", a, NULL);
}

int pctl_cmd_polo_score(pctl *c)
{
	json_object *a = pctl_obj();

	if (c->npos > 0)
		pctl_set_str(a, "target", c->pos[0]);
	return pctl_call(c, "polo-score", a, NULL);
}

/* ---- received / inbox: what the data exchange service (port 1001) stored ---- */

static const pctl_col file_cols[] = {
	{ "NAME", "name", PCTL_STR }, { "BYTES", "bytes", PCTL_STR }, { "MODIFIED", "modified", PCTL_STR },
	{ "PATH", "path", PCTL_STR }, { NULL, NULL, PCTL_STR },
};

static const pctl_col msg_cols[] = {
	{ "RECEIVED", "received_at", PCTL_STR },
	{ "FROM", "from", PCTL_STR },
	{ "TYPE", "type", PCTL_STR },
	{ "DATA", "data", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_files(pctl *c, json_object *data)
{
	(void)c;
	if (data && json_object_object_get(data, "cleared")) {
		printf("cleared %lld file(s)\n", (long long)jw_get_i64(data, "cleared"));
		return;
	}
	pctl_render_list(data, "files", file_cols, "no files received");
}

static void render_inbox(pctl *c, json_object *data)
{
	(void)c;
	if (data && json_object_object_get(data, "cleared")) {
		printf("cleared %lld message(s)\n", (long long)jw_get_i64(data, "cleared"));
		return;
	}
	pctl_render_list(data, "messages", msg_cols, "no messages");
}

static int mailbox(pctl *c, const char *cmd, pctl_render_fn render)
{
	json_object *a = pctl_obj();

	if (pctl_flag_bool(c, "clear"))
		json_object_object_add(a, "clear", json_object_new_boolean(1));
	return pctl_call(c, cmd, a, render);
}

int pctl_cmd_received(pctl *c)
{
	return mailbox(c, "received", render_files);
}

int pctl_cmd_inbox(pctl *c)
{
	return mailbox(c, "inbox", render_inbox);
}

/* ---- webhooks ---- */

int pctl_cmd_set_webhook(pctl *c)
{
	json_object *a = pctl_obj();

	if (c->npos > 0) {
		if (strncmp(c->pos[0], "http://", 7) && strncmp(c->pos[0], "https://", 8)) {
			json_object_put(a);
			return pctl_usage_fail(c, "the webhook URL must start with http:// or https://");
		}
		pctl_set_str(a, "url", c->pos[0]);
	}
	return pctl_call(c, "set-webhook", a, NULL);
}

int pctl_cmd_clear_webhook(pctl *c)
{
	return pctl_call(c, "clear-webhook", pctl_obj(), NULL);
}
