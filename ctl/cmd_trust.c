/* Trust: handshake requests, approval, the trusted list. */
#include <stdlib.h>

#include "ctl/ctl.h"

static int node_call(pctl *c, const char *cmd, const char *extra_key)
{
	json_object *args;
	long id;

	if (pctl_arg_long(c, 0, "node id", 1, UINT32_MAX, &id) < 0)
		return PCTL_EXIT_ERR;
	args = pctl_obj();
	pctl_set_int(args, "node_id", id);
	if (extra_key) {
		char *s = pctl_args_join(c, 1);

		pctl_set_str(args, extra_key, s);
		free(s);
	}
	return pctl_call(c, cmd, args, NULL);
}

int pctl_cmd_handshake(pctl *c)
{
	json_object *args = pctl_obj();
	char *why = pctl_args_join(c, 1);

	pctl_set_str(args, "target", c->pos[0]);
	pctl_set_str(args, "justification", why);
	free(why);
	return pctl_call(c, "handshake", args, NULL);
}

static const pctl_col pending_cols[] = {
	{ "NODE", "node_id", PCTL_STR },
	{ "PUBLIC KEY", "public_key", PCTL_STR },
	{ "RECEIVED", "received_at", PCTL_TIME },
	{ "JUSTIFICATION", "justification", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_pending(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "pending", pending_cols, "no pending trust requests");
}

int pctl_cmd_pending(pctl *c)
{
	return pctl_call(c, "pending", NULL, render_pending);
}

int pctl_cmd_approve(pctl *c)
{
	return node_call(c, "approve", NULL);
}

int pctl_cmd_reject(pctl *c)
{
	return node_call(c, "reject", "reason");
}

static const pctl_col trust_cols[] = {
	{ "NODE", "node_id", PCTL_STR },
	{ "PUBLIC KEY", "public_key", PCTL_STR },
	{ "KEY FINGERPRINT", "key_fingerprint", PCTL_STR },
	{ "APPROVED", "approved_at", PCTL_TIME },
	{ "MUTUAL", "mutual", PCTL_BOOL },
	{ "NETWORK", "network", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_trust(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "trusted", trust_cols, "no trusted nodes");
}

int pctl_cmd_trust(pctl *c)
{
	return pctl_call(c, "trust", NULL, render_trust);
}

int pctl_cmd_untrust(pctl *c)
{
	return node_call(c, "untrust", NULL);
}
