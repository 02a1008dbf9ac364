/* pilotctl status: one screen in the spirit of `wg show` / `tailscale status`
 * (node, registry and beacon reachability, the path to each peer, trust
 * requests waiting), each problem line ending in the command that helps. */
#include <inttypes.h>
#include <string.h>

#include "ctl/ctl.h"

#define SHOW_PEERS 12

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
	       ? json_object_get_string(v) : "";
}

static int64_t jint(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

static bool jbool(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

static const char *bytes(int64_t n, char *buf, size_t len)
{
	static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
	return buf;
}

static const char *duration(int64_t s, char *buf, size_t len)
{
	if (s < 120)
		snprintf(buf, len, "%" PRId64 "s", s);
	else if (s < 7200)
		snprintf(buf, len, "%" PRId64 "m", s / 60);
	else if (s < 172800)
		snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", s / 3600, s / 60 % 60);
	else
		snprintf(buf, len, "%" PRId64 "d", s / 86400);
	return buf;
}

static void render_head(json_object *d)
{
	json_object *reg = json_object_object_get(d, "registry"), *bcn = json_object_object_get(d, "beacon");
	char up[32];

	printf("node      %-18s %s  up %s  transport %s\n", jstr(d, "address")[0] ? jstr(d, "address") : "-",
	       jstr(d, "hostname")[0] ? jstr(d, "hostname") : "(no hostname)",
	       duration(jint(d, "uptime_secs"), up, sizeof(up)), jstr(d, "transport"));
	if (jbool(reg, "connected"))
		printf("registry  %-18s connected, %s, mean rtt %.1f ms\n", jstr(reg, "address"),
		       jbool(reg, "registered") ? "registered" : "not registered yet",
		       json_object_get_double(json_object_object_get(reg, "mean_rtt_ms")));
	else
		printf("registry  %-18s UNREACHABLE (retrying); check the address and firewall, then: "
		       "pilotctl daemon status\n", jstr(reg, "address"));
	if (!jstr(bcn, "address")[0])
		printf("beacon    -                  none configured (no NAT traversal or relay)\n");
	else if (jbool(bcn, "reachable"))
		printf("beacon    %-18s reachable, public endpoint %s\n", jstr(bcn, "address"),
		       jstr(bcn, "public_endpoint")[0] ? jstr(bcn, "public_endpoint") : "-");
	else
		printf("beacon    %-18s no reply yet (UDP blocked? try -transport=auto)\n", jstr(bcn, "address"));
	if (strcmp(jstr(d, "tun_device"), "off"))
		printf("tun       %-18s %s\n", jstr(d, "tun_device"), jstr(d, "tun_ipv4"));
}

static void render_peers(json_object *peers)
{
	size_t n = peers ? json_object_array_length(peers) : 0;
	char rx[32], tx[32], age[32];

	printf("peers     %zu\n", n);
	for (size_t i = 0; i < n && i < SHOW_PEERS; i++) {
		json_object *p = json_object_array_get_idx(peers, i);
		int64_t last = jint(p, "last_rx_ms");

		printf("  %-18s %-8s %-22s %-9s rx %-10s tx %-10s last %s\n", jstr(p, "address"), jstr(p, "path"),
		       jstr(p, "endpoint"), jbool(p, "trusted") ? "trusted" : "untrusted",
		       bytes(jint(p, "rx_bytes"), rx, sizeof(rx)), bytes(jint(p, "tx_bytes"), tx, sizeof(tx)),
		       last < 0 ? "never" : duration(last / 1000, age, sizeof(age)));
	}
	if (n > SHOW_PEERS)
		printf("  ... and %zu more: pilotctl peers\n", n - SHOW_PEERS);
}

static void render_pending(json_object *pending)
{
	size_t n = pending ? json_object_array_length(pending) : 0;

	if (!n)
		return;
	printf("trust requests waiting: %zu\n", n);
	for (size_t i = 0; i < n && i < 4; i++) {
		json_object *p = json_object_array_get_idx(pending, i);

		printf("  node %" PRId64 " \"%.40s\": pilotctl approve %" PRId64 " (or reject)\n",
		       jint(p, "node_id"), jstr(p, "justification"), jint(p, "node_id"));
	}
	if (n > 4)
		printf("  ... and %zu more: pilotctl pending\n", n - 4);
}

static void render_status(pctl *c, json_object *d)
{
	(void)c;
	if (!d)
		return;
	render_head(d);
	render_peers(json_object_object_get(d, "peers"));
	render_pending(json_object_object_get(d, "pending"));
}

int pctl_cmd_status(pctl *c)
{
	return pctl_call(c, "status", NULL, render_status);
}
