/* Registry operations, all carried out (and signed) by the daemon. */
#include <string.h>

#include "ctl/ctl.h"

static int call_str(pctl *c, const char *cmd, const char *key, const char *val)
{
	json_object *args = pctl_obj();

	pctl_set_str(args, key, val);
	return pctl_call(c, cmd, args, NULL);
}

int pctl_cmd_lookup(pctl *c)
{
	json_object *args;
	long id;

	if (pctl_arg_long(c, 0, "node id", 0, UINT32_MAX, &id) < 0)
		return PCTL_EXIT_ERR;
	args = pctl_obj();
	pctl_set_int(args, "node_id", id);
	return pctl_call(c, "lookup", args, NULL);
}

int pctl_cmd_find(pctl *c)
{
	return call_str(c, "find", "hostname", c->pos[0]);
}

int pctl_cmd_set_hostname(pctl *c)
{
	if (!c->pos[0][0])
		return pctl_usage_fail(c, "empty hostname (use clear-hostname)");
	return call_str(c, "set-hostname", "hostname", c->pos[0]);
}

/* One daemon command for both: "" clears. */
int pctl_cmd_clear_hostname(pctl *c)
{
	return call_str(c, "set-hostname", "hostname", "");
}

static int set_visibility(pctl *c, bool pub)
{
	json_object *args = pctl_obj();

	json_object_object_add(args, "public", json_object_new_boolean(pub));
	return pctl_call(c, "set-visibility", args, NULL);
}

int pctl_cmd_set_public(pctl *c)
{
	return set_visibility(c, true);
}

int pctl_cmd_set_private(pctl *c)
{
	return set_visibility(c, false);
}

static void render_tags(pctl *c, json_object *data)
{
	json_object *tags = data ? json_object_object_get(data, "tags") : NULL;
	size_t n = tags && json_object_is_type(tags, json_type_array) ? json_object_array_length(tags) : 0;

	(void)c;
	printf("tags:");
	for (size_t i = 0; i < n; i++)
		printf(" #%s", json_object_get_string(json_object_array_get_idx(tags, i)));
	printf("%s\n", n ? "" : " (none)");
}

int pctl_cmd_set_tags(pctl *c)
{
	json_object *args, *tags = json_object_new_array();

	for (int i = 0; i < c->npos; i++) {
		const char *t = c->pos[i][0] == '#' ? c->pos[i] + 1 : c->pos[i];

		if (!t[0]) {
			json_object_put(tags);
			return pctl_usage_fail(c, "empty tag \"%s\"", c->pos[i]);
		}
		json_object_array_add(tags, json_object_new_string(t));
	}
	args = pctl_obj();
	json_object_object_add(args, "tags", tags);
	return pctl_call(c, "set-tags", args, render_tags);
}

int pctl_cmd_clear_tags(pctl *c)
{
	json_object *args = pctl_obj();

	json_object_object_add(args, "tags", json_object_new_array());
	return pctl_call(c, "set-tags", args, render_tags);
}

int pctl_cmd_deregister(pctl *c)
{
	return pctl_call(c, "deregister", NULL, NULL);
}

int pctl_cmd_rotate_key(pctl *c)
{
	return pctl_call(c, "rotate-key", NULL, NULL);
}
