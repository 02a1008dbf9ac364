/* -tun=userspace port forwards and exposed ports: forward add|list|remove,
 * expose add|list|remove (saved by the daemon across restarts). */
#include <stdlib.h>

#include "ctl/ctl.h"

int pctl_cmd_forward_add(pctl *c)
{
	json_object *args = pctl_obj();

	pctl_set_str(args, "listen", c->pos[0]);
	pctl_set_str(args, "target", c->pos[1]);
	return pctl_call(c, "forward-add", args, NULL);
}

int pctl_cmd_forward_remove(pctl *c)
{
	json_object *args = pctl_obj();

	pctl_set_str(args, "listen", c->pos[0]);
	return pctl_call(c, "forward-remove", args, NULL);
}

static const pctl_col forward_cols[] = {
	{ "LISTEN", "listen", PCTL_STR },
	{ "TARGET", "target", PCTL_STR },
	{ "SOURCE", "source", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_forwards(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "forwards", forward_cols, "no forwards");
}

int pctl_cmd_forward_list(pctl *c)
{
	return pctl_call(c, "forward-list", NULL, render_forwards);
}

int pctl_cmd_expose_add(pctl *c)
{
	json_object *args = pctl_obj();

	pctl_set_int(args, "port", strtol(c->pos[0], NULL, 10));
	pctl_set_str(args, "target", c->pos[1]);
	return pctl_call(c, "expose-add", args, NULL);
}

int pctl_cmd_expose_remove(pctl *c)
{
	json_object *args = pctl_obj();

	pctl_set_int(args, "port", strtol(c->pos[0], NULL, 10));
	return pctl_call(c, "expose-remove", args, NULL);
}

static const pctl_col expose_cols[] = {
	{ "PORT", "port", PCTL_STR },
	{ "TARGET", "target", PCTL_STR },
	{ "SOURCE", "source", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_expose(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "expose", expose_cols, "no exposed ports");
}

int pctl_cmd_expose_list(pctl *c)
{
	return pctl_call(c, "expose-list", NULL, render_expose);
}
