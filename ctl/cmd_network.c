/* network create|join|leave|list|members|invite|invites|accept-invite. */
#include <string.h>

#include "ctl/ctl.h"

static int net_id(pctl *c, int i, long *id)
{
	return pctl_arg_long(c, i, "network id", 1, 65535, id);
}

/* The verbs that only take a network id. */
static int net_call(pctl *c, const char *cmd, pctl_render_fn render)
{
	json_object *args;
	long id;

	if (net_id(c, 0, &id) < 0)
		return PCTL_EXIT_ERR;
	args = pctl_obj();
	pctl_set_int(args, "network_id", id);
	return pctl_call(c, cmd, args, render);
}

static const pctl_col net_cols[] = {
	{ "ID", "id", PCTL_STR },
	{ "NAME", "name", PCTL_STR },
	{ "JOIN RULE", "join_rule", PCTL_STR },
	{ "MEMBERS", "members", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_networks(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "networks", net_cols, "no networks");
}

/* --admin-token T: for registries started with -admin-token (else pilotd's own -admin-token). */
static int set_admin_token(pctl *c, json_object *args)
{
	const char *t = pctl_flag_get(c, "admin-token");

	if (!t)
		return 0;
	if (!t[0] || !strcmp(t, "true")) {
		json_object_put(args);
		return pctl_usage_fail(c, "--admin-token needs a value");
	}
	pctl_set_str(args, "admin_token", t);
	return 0;
}

int pctl_cmd_network_list(pctl *c)
{
	return pctl_call(c, "network-list", NULL, render_networks);
}

int pctl_cmd_network_create(pctl *c)
{
	const char *rule = pctl_flag_get(c, "join-rule"), *token = pctl_flag_get(c, "token");
	json_object *args;
	int bad;

	if (!rule)
		rule = "open";
	if (strcmp(rule, "open") && strcmp(rule, "token") && strcmp(rule, "invite"))
		return pctl_usage_fail(c, "invalid --join-rule \"%s\": want open, token or invite", rule);
	if (!strcmp(rule, "token") && (!token || !token[0] || !strcmp(token, "true")))
		return pctl_usage_fail(c, "--join-rule token needs --token TOKEN");
	args = pctl_obj();
	pctl_set_str(args, "name", c->pos[0]);
	pctl_set_str(args, "join_rule", rule);
	if (token)
		pctl_set_str(args, "token", token);
	if ((bad = set_admin_token(c, args)))
		return bad;
	return pctl_call(c, "network-create", args, NULL);
}

int pctl_cmd_network_join(pctl *c)
{
	const char *token = pctl_flag_get(c, "token");
	json_object *args;
	long id;
	int bad;

	if (net_id(c, 0, &id) < 0)
		return PCTL_EXIT_ERR;
	args = pctl_obj();
	pctl_set_int(args, "network_id", id);
	if (token)
		pctl_set_str(args, "token", token);
	if ((bad = set_admin_token(c, args)))
		return bad;
	return pctl_call(c, "network-join", args, NULL);
}

int pctl_cmd_network_leave(pctl *c)
{
	json_object *args;
	long id;
	int bad;

	if (net_id(c, 0, &id) < 0)
		return PCTL_EXIT_ERR;
	args = pctl_obj();
	pctl_set_int(args, "network_id", id);
	if ((bad = set_admin_token(c, args)))
		return bad;
	return pctl_call(c, "network-leave", args, NULL);
}

static const pctl_col member_cols[] = {
	{ "NODE", "node_id", PCTL_STR },
	{ "ADDRESS", "address", PCTL_STR },
	{ "HOSTNAME", "hostname", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_members(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "nodes", member_cols, "no members");
}

int pctl_cmd_network_members(pctl *c)
{
	return net_call(c, "network-members", render_members);
}

int pctl_cmd_network_invite(pctl *c)
{
	json_object *args;
	long id;

	if (net_id(c, 0, &id) < 0)
		return PCTL_EXIT_ERR;
	args = pctl_obj();
	pctl_set_int(args, "network_id", id);
	pctl_set_str(args, "target", c->pos[1]);
	return pctl_call(c, "network-invite", args, NULL);
}

static const pctl_col invite_cols[] = {
	{ "NETWORK", "network_id", PCTL_STR },
	{ "NAME", "name", PCTL_STR },
	{ "FROM", "inviter_id", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_invites(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "invites", invite_cols, "no invitations");
}

int pctl_cmd_network_invites(pctl *c)
{
	return pctl_call(c, "network-invites", NULL, render_invites);
}

int pctl_cmd_network_accept_invite(pctl *c)
{
	return net_call(c, "network-accept-invite", NULL);
}
