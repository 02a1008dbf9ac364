/* Name service verbs (pilot-nameserver(8), services.md §2): name-register,
 * name-unregister, resolve, services, service-register. Each sends one request
 * to the nameserver node's port 53 through the daemon's "connect" verb and
 * renders the text reply. The nameserver is --nameserver ADDR, else
 * $PILOT_NAMESERVER, else the daemon's -nameserver (info "nameserver"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "lib/jsonwire.h"
#include "nameserver/ns.h"

#define NS_HINT "give --nameserver ADDR, set PILOT_NAMESERVER, or start pilotd with -nameserver ADDR"

/* The node's info (own address, configured nameserver). NULL after an error
 * was printed. */
static json_object *daemon_info(pctl *c)
{
	json_object *reply = NULL, *data;
	int r = pctl_request(c, "info", NULL, &reply);

	if (r < 0 || !json_object_object_get_ex(reply, "data", &data)) {
		json_object_put(reply);
		pctl_fail(c, "not_running", NULL, "cannot ask the daemon for its node (%s)",
			  r < 0 ? strerror(-r) : "no data");
		return NULL;
	}
	data = json_object_get(data);
	json_object_put(reply);
	return data;
}

/* Is ns (node ID, address or hostname) this node? */
static bool is_self(json_object *info, const char *ns)
{
	uint32_t id = jw_get_u32(info, "node_id");
	const char *h = jw_get_str(info, "hostname");
	pilot_addr a;
	char *end;
	unsigned long v = strtoul(ns, &end, 10);

	if (!id)
		return false;
	if (*ns && !*end)
		return v == id;
	if (pilot_addr_parse(ns, strlen(ns), &a) == 0)
		return a.node == id;
	return h && *h && !strcmp(h, ns);
}

/* The nameserver to ask; local4 gets this node's TUN IPv4 when the nameserver
 * is this node (the daemon does not dial itself: ask it over local TCP). */
static int nameserver_of(pctl *c, char *out, size_t len, char *local4, size_t l4len)
{
	const char *ns = pctl_flag_get(c, "nameserver");
	json_object *info, *tun;

	if (!ns || !*ns)
		ns = getenv("PILOT_NAMESERVER");
	if (!(info = daemon_info(c)))
		return -1;
	if (!ns || !*ns)
		ns = jw_get_str(info, "nameserver");
	snprintf(out, len, "%s", ns ? ns : "");
	local4[0] = '\0';
	if (*out && is_self(info, out) && json_object_object_get_ex(info, "tun", &tun))
		snprintf(local4, l4len, "%s", jw_get_str(tun, "ipv4") ? jw_get_str(tun, "ipv4") : "");
	json_object_put(info);
	if (!*out) {
		pctl_fail(c, "invalid_argument", NS_HINT, "no nameserver configured");
		return -1;
	}
	return 0;
}

/* One exchange with the nameserver on this node: TCP to its TUN IPv4, port 53,
 * request, half-close, everything until EOF (at most NS_MSG_MAX, 10 s). */
static char *local_exchange(pctl *c, const char *ip, const char *text)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(NS_PORT) };
	char *buf = malloc(NS_MSG_MAX + 1);
	size_t got = 0;
	int fd = -1;
	ssize_t r = -1;

	if (!buf || inet_pton(AF_INET, ip, &sa.sin_addr) != 1 ||
	    (fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    send(fd, text, strlen(text), MSG_NOSIGNAL) < 0) {
		pctl_fail(c, "connection_failed", "is pilot-nameserver running on this node?",
			  "nameserver on this node (%s:53): %s", ip, strerror(errno));
		goto fail;
	}
	shutdown(fd, SHUT_WR);
	while (got < NS_MSG_MAX) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 10000) <= 0 || (r = read(fd, buf + got, NS_MSG_MAX - got)) <= 0)
			break;
		got += (size_t)r;
	}
	if (r < 0 || !got) {
		pctl_fail(c, "connection_failed", NULL, "no reply from the nameserver on this node (%s:53)",
			  ip);
		goto fail;
	}
	close(fd);
	buf[got] = '\0';
	return buf;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

/* Local or remote exchange; ERR replies are printed as refusals. */
static char *exchange_remote(pctl *c, const char *ns, const char *text);

static char *checked(pctl *c, const char *ns, char *resp)
{
	if (resp && !strncmp(resp, "ERR", 3)) {
		pctl_fail(c, "refused", NULL, "nameserver %s: %s", ns, resp[3] ? resp + 4 : "error");
		free(resp);
		return NULL;
	}
	return resp;
}

/* Send req, return the reply text (malloc'd) or NULL after printing the error.
 * "ERR ..." replies are printed as refusals. */
static char *exchange(pctl *c, const ns_req *req)
{
	char ns[128], local4[64], text[NS_NAME_MAX + 128];

	if (nameserver_of(c, ns, sizeof(ns), local4, sizeof(local4)) < 0)
		return NULL;
	if (ns_format_req(req, text, sizeof(text)) < 0) {
		pctl_usage_fail(c, "name too long");
		return NULL;
	}
	return checked(c, ns, *local4 ? local_exchange(c, local4, text) : exchange_remote(c, ns, text));
}

static char *exchange_remote(pctl *c, const char *ns, const char *text)
{
	json_object *args, *reply = NULL, *data;
	const char *resp, *status;
	char *out = NULL;
	int r;

	args = pctl_obj();
	pctl_set_str(args, "target", ns);
	pctl_set_int(args, "port", NS_PORT);
	pctl_set_str(args, "message", text);
	json_object_object_add(args, "half_close", json_object_new_boolean(1));
	pctl_set_int(args, "timeout_ms", 10000);
	c->wait_ms = 15000;
	r = pctl_request(c, "connect", args, &reply);
	status = reply ? jw_get_str(reply, "status") : NULL;
	if (r < 0) {
		pctl_fail(c, "connection_failed", NULL, "cannot reach the daemon: %s", strerror(-r));
	} else if (!status || strcmp(status, "ok")) {
		pctl_fail(c, jw_get_str(reply, "code") ? jw_get_str(reply, "code") : "connection_failed",
			  NS_HINT, "nameserver %s: %s", ns,
			  jw_get_str(reply, "message") ? jw_get_str(reply, "message") : "?");
	} else if (!json_object_object_get_ex(reply, "data", &data) ||
		   !(resp = jw_get_str(data, "response"))) {
		pctl_fail(c, "internal", NULL, "no reply from nameserver %s", ns);
	} else if (!(out = strdup(resp))) {
		pctl_fail(c, "internal", NULL, "out of memory");
	}
	json_object_put(reply);
	return out;
}

static int name_arg(pctl *c, int i, char *out)
{
	const char *s = c->pos[i];

	if (!*s || strlen(s) > NS_NAME_MAX || strpbrk(s, " \t\r\n")) {
		pctl_usage_fail(c, "bad name '%s'", s);
		return -1;
	}
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

/* The address argument i, or the node's own address when absent. */
static int addr_arg(pctl *c, int i, pilot_addr *a)
{
	json_object *info;
	const char *s;
	int r;

	if (c->npos > i) {
		if (pilot_addr_parse(c->pos[i], strlen(c->pos[i]), a) == 0)
			return 0;
		pctl_usage_fail(c, "bad address '%s' (want N:NNNN.HHHH.LLLL)", c->pos[i]);
		return -1;
	}
	if (!(info = daemon_info(c)))
		return -1;
	s = jw_get_str(info, "address");
	r = s && *s ? pilot_addr_parse(s, strlen(s), a) : -EINVAL;
	json_object_put(info);
	if (r == 0)
		return 0;
	pctl_fail(c, "not_registered", NULL, "the node has no address yet");
	return -1;
}

static int ok_reply(pctl *c, json_object *o, const char *text)
{
	if (!c->json)
		printf("%s\n", text);
	if (c->json)
		return pctl_ok(c, o, NULL);
	json_object_put(o);
	return PCTL_EXIT_OK;
}

int pctl_cmd_name_register(pctl *c)
{
	ns_req q = { .op = NS_REGISTER, .type = NS_A };
	char as[PILOT_ADDR_STRLEN], line[NS_NAME_MAX + 64], *rep;
	json_object *o;
	long net;

	if (name_arg(c, 0, q.name) < 0)
		return PCTL_EXIT_ERR;
	if (pctl_flag_get(c, "network")) {
		/* an N record: the network's name -> its ID */
		if (pctl_flag_long(c, "network", 0, 0, 65535, &net) < 0)
			return PCTL_EXIT_ERR;
		q.type = NS_N;
		q.net_id = (uint16_t)net;
	} else if (addr_arg(c, 1, &q.addr) < 0) {
		return PCTL_EXIT_ERR;
	}
	if (!(rep = exchange(c, &q)))
		return PCTL_EXIT_ERR;
	free(rep);
	o = pctl_obj();
	pctl_set_str(o, "name", q.name);
	if (q.type == NS_N) {
		pctl_set_int(o, "network_id", q.net_id);
		snprintf(line, sizeof(line), "registered network name %s -> %u", q.name, q.net_id);
	} else {
		pctl_set_str(o, "address", pilot_addr_format(q.addr, as));
		snprintf(line, sizeof(line), "registered %s -> %s", q.name, as);
	}
	return ok_reply(c, o, line);
}

int pctl_cmd_name_unregister(pctl *c)
{
	ns_req q = { .op = NS_UNREGISTER, .type = pctl_flag_bool(c, "network") ? NS_N : NS_A };
	char line[NS_NAME_MAX + 64], *rep;
	json_object *o;

	if (name_arg(c, 0, q.name) < 0 || !(rep = exchange(c, &q)))
		return PCTL_EXIT_ERR;
	free(rep);
	o = pctl_obj();
	pctl_set_str(o, "name", q.name);
	json_object_object_add(o, "unregistered", json_object_new_boolean(1));
	snprintf(line, sizeof(line), "unregistered %s", q.name);
	return ok_reply(c, o, line);
}

/* "A <name> <address>" / "N <name> <id>" -> the third field. */
static const char *third(const char *rep)
{
	const char *p = strchr(rep, ' ');

	return p && (p = strchr(p + 1, ' ')) ? p + 1 : "";
}

int pctl_cmd_resolve(pctl *c)
{
	ns_req q = { .op = NS_QUERY, .type = pctl_flag_bool(c, "network") ? NS_N : NS_A };
	char *rep;
	json_object *o;

	if (name_arg(c, 0, q.name) < 0 || !(rep = exchange(c, &q)))
		return PCTL_EXIT_ERR;
	o = pctl_obj();
	pctl_set_str(o, "name", q.name);
	if (q.type == NS_N)
		pctl_set_int(o, "network_id", strtol(third(rep), NULL, 10));
	else
		pctl_set_str(o, "address", third(rep));
	if (!c->json)
		printf("%s\n", third(rep));
	free(rep);
	if (c->json)
		return pctl_ok(c, o, NULL);
	json_object_put(o);
	return PCTL_EXIT_OK;
}

/* <network>: a decimal ID, or a name looked up as an N record. */
static int network_arg(pctl *c, int i, uint16_t *net)
{
	ns_req q = { .op = NS_QUERY, .type = NS_N };
	char *end, *rep;
	long v = strtol(c->pos[i], &end, 10);

	if (*c->pos[i] && !*end) {
		if (v < 0 || v > 65535) {
			pctl_usage_fail(c, "network ID %s out of range", c->pos[i]);
			return -1;
		}
		*net = (uint16_t)v;
		return 0;
	}
	if (name_arg(c, i, q.name) < 0 || !(rep = exchange(c, &q)))
		return -1;
	*net = (uint16_t)strtol(third(rep), NULL, 10);
	free(rep);
	return 0;
}

static const pctl_col svc_cols[] = {
	{ "NAME", "name", PCTL_STR },
	{ "ADDRESS", "address", PCTL_STR },
	{ "PORT", "port", PCTL_STR },
	{ NULL, NULL, PCTL_STR },
};

static void render_services(pctl *c, json_object *data)
{
	(void)c;
	pctl_render_list(data, "services", svc_cols, "no providers");
}

/* "S <name> <address> <port>" lines. */
static json_object *parse_services(const char *rep)
{
	json_object *arr = json_object_new_array();
	char name[NS_NAME_MAX + 1], addr[32], *end;
	unsigned long port;
	const char *p = rep;
	int off;

	while (p && *p) {
		off = 0;
		if (sscanf(p, "S %253s %31s %n", name, addr, &off) == 2 && off > 0 &&
		    (port = strtoul(p + off, &end, 10)) <= 65535 && end != p + off) {
			json_object *o = pctl_obj();

			pctl_set_str(o, "name", name);
			pctl_set_str(o, "address", addr);
			pctl_set_int(o, "port", (int64_t)port);
			json_object_array_add(arr, o);
		}
		if ((p = strchr(p, '\n')))
			p++;
	}
	return arr;
}

int pctl_cmd_services(pctl *c)
{
	ns_req q = { .op = NS_QUERY, .type = NS_S };
	json_object *o, *arr;
	long port;
	char *rep;

	if (network_arg(c, 0, &q.net_id) < 0 || pctl_arg_long(c, 1, "port", 0, 65535, &port) < 0)
		return PCTL_EXIT_ERR;
	q.port = (uint16_t)port;
	if (!(rep = exchange(c, &q)))
		return PCTL_EXIT_ERR;
	arr = parse_services(rep);
	free(rep);
	o = pctl_obj();
	pctl_set_int(o, "network_id", q.net_id);
	pctl_set_int(o, "port", q.port);
	pctl_set_int(o, "total", (int64_t)json_object_array_length(arr));
	json_object_object_add(o, "services", arr);
	return pctl_ok(c, o, render_services);
}

int pctl_cmd_service_register(pctl *c)
{
	ns_req q = { .op = NS_REGISTER, .type = NS_S };
	char as[PILOT_ADDR_STRLEN], line[NS_NAME_MAX + 96], *rep;
	json_object *o;
	long port;

	if (name_arg(c, 0, q.name) < 0 || network_arg(c, 1, &q.net_id) < 0 ||
	    pctl_arg_long(c, 2, "port", 0, 65535, &port) < 0 || addr_arg(c, 3, &q.addr) < 0)
		return PCTL_EXIT_ERR;
	q.port = (uint16_t)port;
	if (pctl_flag_bool(c, "remove"))
		q.op = NS_UNREGISTER;
	if (!(rep = exchange(c, &q)))
		return PCTL_EXIT_ERR;
	free(rep);
	o = pctl_obj();
	pctl_set_str(o, "name", q.name);
	pctl_set_str(o, "address", pilot_addr_format(q.addr, as));
	pctl_set_int(o, "network_id", q.net_id);
	pctl_set_int(o, "port", q.port);
	snprintf(line, sizeof(line), "%s %s %s:%u on network %u",
		 q.op == NS_UNREGISTER ? "unregistered" : "registered", q.name, as, q.port, q.net_id);
	return ok_reply(c, o, line);
}
