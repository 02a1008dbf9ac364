/* The TUN address map and bridge: map, unmap, maps, tun. */
#include <string.h>

#include "ctl/ctl.h"

int pctl_cmd_map(pctl *c)
{
	json_object *args = pctl_obj();

	pctl_set_str(args, "target", c->pos[0]);
	if (c->npos > 1)
		pctl_set_str(args, "ip", c->pos[1]);
	return pctl_call(c, "map", args, NULL);
}

int pctl_cmd_unmap(pctl *c)
{
	json_object *args = pctl_obj();

	pctl_set_str(args, "target", c->pos[0]);
	return pctl_call(c, "unmap", args, NULL);
}

static const pctl_col map_cols[] = {
	{ "IP", "local_ip", PCTL_STR },
	{ "ADDRESS", "pilot_addr", PCTL_STR },
	{ "NODE", "node_id", PCTL_STR },
	{ "IPV6", "ipv6", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_maps(pctl *c, json_object *data)
{
	json_object *dev = NULL, *v4 = NULL, *v6 = NULL;

	(void)c;
	json_object_object_get_ex(data, "device", &dev);
	json_object_object_get_ex(data, "ipv4", &v4);
	json_object_object_get_ex(data, "ipv6", &v6);
	if (dev && v4)
		printf("own: %s %s %s\n", json_object_get_string(dev), json_object_get_string(v4),
		       v6 ? json_object_get_string(v6) : "");
	pctl_render_list(data, "mappings", map_cols, "no mapped addresses");
}

int pctl_cmd_maps(pctl *c)
{
	return pctl_call(c, "maps", NULL, render_maps);
}

static const pctl_col flow_cols[] = {
	{ "DIR", "dir", PCTL_STR },
	{ "KERNEL", "kernel", PCTL_STR },
	{ "MAPPED", "mapped", PCTL_STR },
	{ "PEER", "peer", PCTL_STR },
	{ "PORT", "port", PCTL_STR },
	{ "STATE", "state", PCTL_STR },
	{ "PILOT", "pilot_state", PCTL_STR },
	{ "TO PEER", "bytes_to_peer", PCTL_STR },
	{ "FROM PEER", "bytes_from_peer", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_tun(pctl *c, json_object *data)
{
	char buf[256];

	(void)c;
	if (data) { /* NULL when the reply had no object "data" */
		json_object_object_foreach(data, k, v) {
			if (!strcmp(k, "flows"))
				continue;
			printf("%s: %s\n", k, pctl_format(v, PCTL_STR, buf, sizeof(buf)));
		}
	}
	pctl_render_list(data, "flows", flow_cols, "no bridged TCP flows");
}

int pctl_cmd_tun(pctl *c)
{
	return pctl_call(c, "tun", NULL, render_tun);
}
