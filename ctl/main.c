/* pilotctl: global parsing (cli.md §1.1), the verb table with its help text,
 * and dispatch. The verbs live in cmd_*.c; the socket in client.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "lib/sockpath.h"

/* Where pilotd.service (and a root pilotd) puts its socket. */
#define SYSTEM_SOCKET "/run/pilot/pilotd.sock"

static int cmd_completion(pctl *c);

static const pctl_cmd commands[] = {
	/* cmd_status.c */
	{ "status", pctl_cmd_status, "", "one screen: node, registry, beacon, path per peer, trust requests",
	  "", 0, 0 },
	/* cmd_info.c */
	{ "info", pctl_cmd_info, "", "show the daemon's node, counters, peers and connections", "", 0, 0 },
	{ "peers", pctl_cmd_peers, "[--search TEXT]", "list peer tunnels", "search", 0, 0 },
	{ "connections", pctl_cmd_connections, "", "list stream connections", "", 0, 0 },
	{ "disconnect", pctl_cmd_disconnect, "<conn_id>", "close a connection", "", 1, 1 },
	{ "daemon status", pctl_cmd_daemon_status, "[--check]", "is the daemon running and answering",
	  "check", 0, 0 },
	/* cmd_registry.c */
	{ "lookup", pctl_cmd_lookup, "<node_id>", "look a node up in the registry", "", 1, 1 },
	{ "find", pctl_cmd_find, "<hostname>", "resolve a hostname to a node", "", 1, 1 },
	{ "set-hostname", pctl_cmd_set_hostname, "<hostname>", "set this node's hostname", "", 1, 1 },
	{ "clear-hostname", pctl_cmd_clear_hostname, "", "remove this node's hostname", "", 0, 0 },
	{ "set-public", pctl_cmd_set_public, "", "make this node visible to everyone", "", 0, 0 },
	{ "set-private", pctl_cmd_set_private, "", "make this node visible to trusted peers only", "", 0, 0 },
	{ "set-tags", pctl_cmd_set_tags, "<tag> [tag] [tag]", "set 1 to 3 tags", "", 1, 3 },
	{ "clear-tags", pctl_cmd_clear_tags, "", "remove every tag", "", 0, 0 },
	{ "deregister", pctl_cmd_deregister, "", "remove this node from the registry", "", 0, 0 },
	{ "rotate-key", pctl_cmd_rotate_key, "", "replace this node's identity key", "", 0, 0 },
	/* cmd_trust.c */
	{ "handshake", pctl_cmd_handshake, "<address|hostname> [justification...]",
	  "ask a node for mutual trust", "", 1, -1 },
	{ "pending", pctl_cmd_pending, "", "list trust requests waiting for approval", "", 0, 0 },
	{ "approve", pctl_cmd_approve, "<node_id>", "approve a pending trust request", "", 1, 1 },
	{ "reject", pctl_cmd_reject, "<node_id> [reason...]", "reject a pending trust request", "", 1, -1 },
	{ "trust", pctl_cmd_trust, "", "list trusted nodes", "", 0, 0 },
	{ "untrust", pctl_cmd_untrust, "<node_id>", "revoke trust in a node", "", 1, 1 },
	/* cmd_network.c */
	{ "network list", pctl_cmd_network_list, "", "list networks", "", 0, 0 },
	{ "network create", pctl_cmd_network_create,
	  "<name> [--join-rule open|token|invite] [--token TOKEN] [--admin-token T]", "create a network",
	  "join-rule token admin-token", 1, 1 },
	{ "network join", pctl_cmd_network_join, "<network_id> [--token TOKEN] [--admin-token T]",
	  "join a network", "token admin-token", 1, 1 },
	{ "network leave", pctl_cmd_network_leave, "<network_id> [--admin-token T]", "leave a network",
	  "admin-token", 1, 1 },
	{ "network members", pctl_cmd_network_members, "<network_id>", "list a network's members", "", 1, 1 },
	{ "network invite", pctl_cmd_network_invite, "<network_id> <address|hostname>", "invite a node", "",
	  2, 2 },
	{ "network invites", pctl_cmd_network_invites, "", "list invitations to this node", "", 0, 0 },
	{ "network accept-invite", pctl_cmd_network_accept_invite, "<network_id>", "accept an invitation", "",
	  1, 1 },
	/* cmd_comm.c */
	{ "ping", pctl_cmd_ping, "<address|hostname> [--count N] [--timeout DUR]",
	  "echo round trips (port 7)", "count timeout", 1, 1 },
	{ "traceroute", pctl_cmd_traceroute, "<address> [--timeout DUR]",
	  "connection set-up time and 3 echo samples", "timeout", 1, 1 },
	{ "bench", pctl_cmd_bench, "<address|hostname> [size_mb] [--timeout DUR]",
	  "throughput through the echo port", "timeout", 1, 2 },
	{ "connect", pctl_cmd_connect, "<address|hostname> [port] [--message TEXT] [--timeout DUR]",
	  "send a message on a stream and print the first reply", "message timeout", 1, 2 },
	{ "send", pctl_cmd_send, "<address|hostname> <port> --data TEXT [--timeout DUR]",
	  "send data on a stream and print the first reply", "data timeout", 2, 2 },
	{ "recv", pctl_cmd_recv, "<port> [--count N] [--timeout DUR]",
	  "accept streams on a port and print what arrives", "count timeout", 1, 1 },
	{ "secure-connect", pctl_cmd_secure_connect,
	  "<address|hostname> [port] [--message TEXT] [--timeout DUR] [--compat] [--plain]",
	  "send a message over the secure channel (port 443) and print the first reply",
	  "message timeout compat plain", 1, 2 },
	{ "secure-listen", pctl_cmd_secure_listen,
	  "[port] [--count N] [--timeout DUR] [--reply TEXT] [--require-auth]",
	  "accept secure-channel streams (port 443) and print what arrives",
	  "count timeout reply require-auth", 0, 1 },
	{ "send-file", pctl_cmd_send_file, "<address|hostname> <path> [--timeout DUR]",
	  "send a file to the node's data exchange (port 1001)", "timeout", 2, 2 },
	{ "send-message", pctl_cmd_send_message, "<address|hostname> --data TEXT [--type text|json|binary]",
	  "send a message to the node's inbox (port 1001)", "data type", 1, 1 },
	{ "received", pctl_cmd_received, "[--clear]",
	  "files received over data exchange (port 1001); --clear deletes them", "clear", 0, 0 },
	{ "inbox", pctl_cmd_inbox, "[--clear]",
	  "messages received over data exchange (port 1001); --clear deletes them", "clear", 0, 0 },
	{ "subscribe", pctl_cmd_subscribe, "<address|hostname> <topic> [--count N] [--timeout DUR]",
	  "print events published on a topic (port 1002; * = all)", "count timeout", 2, 2 },
	{ "publish", pctl_cmd_publish, "<address|hostname> <topic> --data TEXT",
	  "publish an event (port 1002)", "data", 2, 2 },
	{ "listen", pctl_cmd_listen, "<port> [--count N] [--timeout DUR]",
	  "print datagrams arriving on a port", "count timeout", 1, 1 },
	/* cmd_tasks.c */
	{ "task submit", pctl_cmd_task_submit, "<address|hostname> --task DESCRIPTION",
	  "submit a task to a node (port 1003; its polo score must not exceed ours)", "task", 1, 1 },
	{ "task list", pctl_cmd_task_list, "[--type received|submitted]", "tasks received and submitted",
	  "type", 0, 0 },
	{ "task status", pctl_cmd_task_status, "<task_id>|--id ID", "one task", "id", 0, 1 },
	{ "task accept", pctl_cmd_task_accept, "<task_id>|--id ID",
	  "accept a received task (the submitter is told)", "id", 0, 1 },
	{ "task decline", pctl_cmd_task_decline, "<task_id>|--id ID [--justification TEXT]",
	  "decline a received task (the submitter is told)", "id justification", 0, 1 },
	{ "task execute", pctl_cmd_task_execute, "", "start the oldest accepted task and print it", "", 0,
	  0 },
	{ "task send-results", pctl_cmd_task_send_results, "<task_id>|--id ID --results TEXT | --file PATH",
	  "send an executing task's results to its submitter", "id results file", 0, 1 },
	{ "polo-score", pctl_cmd_polo_score, "[address|node_id]", "a node's polo score (default: this node)",
	  "", 0, 1 },
	{ "set-webhook", pctl_cmd_set_webhook, "[url]",
	  "POST every event to this http(s) URL (without url: the delivery counters)", "", 0, 1 },
	{ "clear-webhook", pctl_cmd_clear_webhook, "", "stop webhook deliveries", "", 0, 0 },
	{ "broadcast", pctl_cmd_broadcast, "<network_id> <port> --data TEXT",
	  "send one datagram to every member of a network (not the backbone)", "data", 2, 2 },
	/* cmd_tun.c */
	{ "map", pctl_cmd_map, "<address|hostname> [ip]", "give a node an IP on the TUN (or show its IP)", "",
	  1, 2 },
	{ "unmap", pctl_cmd_unmap, "<ip|address>", "release a node's TUN IP", "", 1, 1 },
	{ "maps", pctl_cmd_maps, "", "list the TUN address map", "", 0, 0 },
	{ "tun", pctl_cmd_tun, "", "the TUN device, bridge counters and bridged flows", "", 0, 0 },
	/* cmd_forward.c */
	{ "forward add", pctl_cmd_forward_add, "<listen host:port> <target name|address|ip:port>",
	  "-tun=userspace: forward a local port to a peer's port (kept across restarts)", "", 2, 2 },
	{ "forward list", pctl_cmd_forward_list, "", "-tun=userspace: list the forwards", "", 0, 0 },
	{ "forward remove", pctl_cmd_forward_remove, "<listen host:port>", "-tun=userspace: stop a forward",
	  "", 1, 1 },
	{ "expose add", pctl_cmd_expose_add, "<pilot port> <local ip:port>",
	  "-tun=userspace: publish a local TCP server on a Pilot port (kept across restarts)", "", 2, 2 },
	{ "expose list", pctl_cmd_expose_list, "", "-tun=userspace: list the exposed ports", "", 0, 0 },
	{ "expose remove", pctl_cmd_expose_remove, "<pilot port>",
	  "-tun=userspace: stop publishing a Pilot port", "", 1, 1 },
	/* cmd_names.c (pilot-nameserver(8)) */
	{ "name-register", pctl_cmd_name_register, "<name> [address] [--network ID] [--nameserver ADDR]",
	  "register a name for this node (or a network name) with the nameserver", "network nameserver", 1,
	  2 },
	{ "name-unregister", pctl_cmd_name_unregister, "<name> [--network] [--nameserver ADDR]",
	  "remove this node's name (or a network name) from the nameserver", "network nameserver", 1, 1 },
	{ "resolve", pctl_cmd_resolve, "<name> [--network] [--nameserver ADDR]",
	  "look a name (or a network name) up in the nameserver", "network nameserver", 1, 1 },
	{ "services", pctl_cmd_services, "<network> <port> [--nameserver ADDR]",
	  "list the providers of a service registered with the nameserver", "nameserver", 2, 2 },
	{ "service-register", pctl_cmd_service_register, "<name> <network> <port> [address] [--remove]",
	  "register (or --remove) this node as a provider of a service", "remove nameserver", 3, 4 },
	/* cmd_completion.c */
	{ "completion", cmd_completion, "bash|zsh|peers",
	  "print a shell completion script (or the known peers)", "", 1, 1 },
	{ NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

static int cmd_completion(pctl *c)
{
	return pctl_completion(c, commands);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: pilotctl [--json] [--socket PATH] <command> [args...]\n\ncommands:\n");
	for (const pctl_cmd *k = commands; k->name; k++) {
		char head[128];

		snprintf(head, sizeof(head), "%s %s", k->name, k->usage);
		if (strlen(head) > 40)
			fprintf(f, "  %s\n  %-40s %s\n", head, "", k->help);
		else
			fprintf(f, "  %-40s %s\n", head, k->help);
	}
	fprintf(f, "\nglobal options:\n"
		   "  --json           print {\"status\":\"ok\",\"data\":...} or the error object\n"
		   "  --socket PATH    control socket (default: $PILOT_SOCKET, else the daemon's default)\n"
		   "  -h, --help       this text; pilotctl help <command> for one command\n");
}

static void cmd_help(FILE *f, const pctl_cmd *k)
{
	fprintf(f, "usage: pilotctl %s%s%s\n  %s\n", k->name, k->usage[0] ? " " : "", k->usage, k->help);
}

/* "network create" matches two words, "peers" one. *words gets how many. */
static const pctl_cmd *find_cmd(char **pos, int npos, int *words)
{
	char two[128];

	if (npos >= 2) {
		snprintf(two, sizeof(two), "%s %s", pos[0], pos[1]);
		for (const pctl_cmd *k = commands; k->name; k++)
			if (!strcmp(k->name, two)) {
				*words = 2;
				return k;
			}
	}
	for (const pctl_cmd *k = commands; npos >= 1 && k->name; k++)
		if (!strcmp(k->name, pos[0])) {
			*words = 1;
			return k;
		}
	return NULL;
}

/* pos[0] names a group ("network", "daemon") without a known subcommand. */
static bool is_group(const char *word)
{
	size_t n = strlen(word);

	for (const pctl_cmd *k = commands; k->name; k++)
		if (!strncmp(k->name, word, n) && k->name[n] == ' ')
			return true;
	return false;
}

static bool flag_allowed(const pctl_cmd *k, const char *key)
{
	size_t n = strlen(key);

	for (const char *p = k->flags; (p = strstr(p, key)); p += n)
		if ((p == k->flags || p[-1] == ' ') && (p[n] == ' ' || !p[n]))
			return true;
	return false;
}

typedef struct parsed {
	char **pos;
	int npos;
	pctl_flag *flags;
	int nflags;
	bool json, help;
	const char *socket;
} parsed;

/* cli.md §1.1: --json anywhere; --key=value, --key value (unless the next token
 * starts with "--"), --key alone = "true"; "--" ends the flags. --socket is
 * global. */
static void parse_argv(int argc, char **argv, parsed *p)
{
	bool flags_done = false;

	for (int i = 1; i < argc; i++) {
		char *a = argv[i];

		if (!flags_done && !strcmp(a, "--json")) {
			p->json = true;
		} else if (!flags_done && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
			p->help = true;
		} else if (!flags_done && !strcmp(a, "--")) {
			flags_done = true;
		} else if (!flags_done && !strncmp(a, "--", 2)) {
			char *eq = strchr(a, '=');
			pctl_flag f = { a + 2, "true" };

			if (eq) {
				*eq = '\0';
				f.val = eq + 1;
			} else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) {
				f.val = argv[++i];
			}
			if (!strcmp(f.key, "socket"))
				p->socket = f.val;
			else
				p->flags[p->nflags++] = f;
		} else {
			p->pos[p->npos++] = a;
		}
	}
}

static int check_args(pctl *c)
{
	const pctl_cmd *k = c->cmd;

	for (int i = 0; i < c->nflags; i++)
		if (!flag_allowed(k, c->flags[i].key))
			return pctl_usage_fail(c, "unknown flag --%s for %s", c->flags[i].key, k->name);
	if (c->npos < k->min_args)
		return pctl_usage_fail(c, "missing arguments for %s", k->name);
	if (k->max_args >= 0 && c->npos > k->max_args)
		return pctl_usage_fail(c, "too many arguments for %s", k->name);
	return 0;
}

static int run(parsed *p, char *sock, size_t socklen)
{
	pctl c = { .prog = "pilotctl", .json = p->json, .socket = sock, .wait_ms = 0 };
	int words = 0;
	const pctl_cmd *k;
	bool help = p->help;
	int skip = 0;

	if (p->npos && !strcmp(p->pos[0], "help")) {
		help = true;
		skip = 1;
	}
	k = find_cmd(p->pos + skip, p->npos - skip, &words);
	if (help) {
		if (k)
			cmd_help(stdout, k);
		else
			usage(stdout);
		return PCTL_EXIT_OK;
	}
	if (!p->npos) {
		usage(stderr);
		return PCTL_EXIT_USAGE;
	}
	if (!k) {
		bool group = is_group(p->pos[0]);

		if (c.json || group)
			return pctl_fail(&c, "invalid_argument", "run pilotctl help", "unknown %s \"%s%s%s\"",
					 group ? "subcommand" : "command", p->pos[0], p->npos > 1 && group ? " " : "",
					 p->npos > 1 && group ? p->pos[1] : "");
		fprintf(stderr, "error: unknown command \"%s\"\n", p->pos[0]);
		usage(stderr);
		return PCTL_EXIT_USAGE;
	}
	c.cmd = k;
	c.pos = p->pos + words;
	c.npos = p->npos - words;
	c.flags = p->flags;
	c.nflags = p->nflags;
	if (check_args(&c))
		return PCTL_EXIT_ERR;
	if (p->socket)
		snprintf(sock, socklen, "%s", p->socket);
	else if (getenv("PILOT_SOCKET") && getenv("PILOT_SOCKET")[0])
		snprintf(sock, socklen, "%s", getenv("PILOT_SOCKET"));
	else if (pilot_default_socket_path(sock, socklen) < 0)
		return pctl_fail(&c, "internal", "set PILOT_SOCKET", "default socket path is too long");
	else if (access(sock, F_OK) < 0 && access(SYSTEM_SOCKET, F_OK) == 0)
		snprintf(sock, socklen, "%s", SYSTEM_SOCKET); /* the packaged daemon (pilotd.service) */
	return k->fn(&c);
}

int main(int argc, char **argv)
{
	char sock[4096];
	parsed p = { 0 };
	int rc;

	p.pos = calloc((size_t)argc + 1, sizeof(*p.pos));
	p.flags = calloc((size_t)argc + 1, sizeof(*p.flags));
	if (!p.pos || !p.flags) {
		fprintf(stderr, "error: out of memory\n");
		free(p.pos);
		free(p.flags);
		return PCTL_EXIT_ERR;
	}
	parse_argv(argc, argv, &p);
	rc = run(&p, sock, sizeof(sock));
	free(p.pos);
	free(p.flags);
	return rc;
}
