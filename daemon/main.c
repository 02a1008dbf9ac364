/* pilotd: the Pilot Protocol node daemon (pilotd(8)). This file is the option
 * table and the checks that can be made before anything is opened; node.c
 * brings the daemon up and down. */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/ctlsrv.h"
#include "daemon/node.h"
#include "daemon/peer.h"
#include "daemon/regclient.h"
#include "daemon/node_ns.h"
#include "daemon/transport.h"
#include "lib/log.h"
#include "lib/memstat.h"
#include "lib/opts.h"
#include "lib/sockpath.h"

#define PROG "pilotd"
#define NOPTS 75

#define OPT PILOT_OPT

static void options_table(node_options *o, pilot_opt *t)
{
	pilot_opt tab[] = {
		PILOT_OPT_CONFIG(&o->config),
		OPT("registry", PILOT_OPT_STRING, &o->registry, NULL,
		    "registry address (required; there is no built-in default); several "
		    "separated by commas fail over in turn",
		    "host:port[,host:port...]"),
		OPT("beacon", PILOT_OPT_STRING, &o->beacon, NULL,
		    "beacon for endpoint discovery, hole punching and relay; empty = none; several "
		    "separated by commas fail over in turn",
		    "ip:port[,ip:port...]"),
		OPT("listen", PILOT_OPT_STRING, &o->listen, ":0",
		    "UDP tunnel listen address (:0 = a free port)", "host:port"),
		OPT("socket", PILOT_OPT_STRING, &o->socket, NULL,
		    "control socket (default /run/pilot/pilotd.sock for root, else "
		    "$XDG_RUNTIME_DIR/pilot/pilotd.sock or /tmp/pilot-UID/pilotd.sock)",
		    "path"),
		OPT("endpoint", PILOT_OPT_STRING, &o->endpoint, NULL,
		    "fixed public endpoint to register; skips beacon discovery", "host:port"),
		OPT("encrypt", PILOT_OPT_BOOL, &o->encrypt, "true",
		    "encrypt tunnels (X25519 + AES-256-GCM); -encrypt=false = plaintext", NULL),
		OPT("identity", PILOT_OPT_STRING, &o->identity, NULL,
		    "identity file, loaded or created; trust.json lives beside it (default "
		    "/var/lib/pilot/identity.json for root, else ~/.pilot/identity.json); "
		    "-identity= (empty) = ephemeral identity, no persistence",
		    "path"),
		OPT("owner", PILOT_OPT_STRING, &o->owner, NULL, "owner identifier sent at registration",
		    "string"),
		OPT("keepalive", PILOT_OPT_DURATION, &o->keepalive, "30s",
		    "registry heartbeat and connection keepalive interval", "duration"),
		OPT("idle-timeout", PILOT_OPT_DURATION, &o->idle_timeout, "120s",
		    "close connections after this long without a packet from the peer", "duration"),
		OPT("syn-rate-limit", PILOT_OPT_INT, &o->syn_rate_limit, "100",
		    "incoming connection attempts accepted per second", "n", 1, 1000000),
		OPT("syn-rate-limit-peer", PILOT_OPT_INT, &o->syn_rate_limit_peer, "10",
		    "incoming connection attempts accepted per second from one node "
		    "(burst: the larger of 64 and n)",
		    "n", 1, 1000000),
		OPT("syn-rate-limit-untrusted", PILOT_OPT_INT, &o->syn_rate_limit_untrusted, "100",
		    "incoming connection attempts accepted per second from untrusted or anonymous "
		    "nodes together (their own budget: they cannot use up -syn-rate-limit, which "
		    "is kept for trusted peers with an authenticated session)",
		    "n", 1, 1000000),
		OPT("max-conns-per-port", PILOT_OPT_INT, &o->max_conns_per_port, "1024",
		    "connections per local port", "n", 1, 1000000),
		OPT("max-conns-total", PILOT_OPT_INT, &o->max_conns_total, "4096", "connections in total",
		    "n", 1, 1000000),
		OPT("time-wait", PILOT_OPT_DURATION, &o->time_wait, "10s",
		    "TIME_WAIT duration of closed connections", "duration"),
		OPT("public", PILOT_OPT_BOOL, &o->public_node, NULL,
		    "public node: every peer may connect to every port (default: private, "
		    "untrusted peers reach only port 444)",
		    NULL),
		OPT("hostname", PILOT_OPT_STRING, &o->hostname, NULL,
		    "hostname to register (default pilot- and the first 8 hex digits of SHA-256 of "
		    "the public key; pilotctl clear-hostname removes it)",
		    "name"),
		OPT("admin-token", PILOT_OPT_STRING, &o->admin_token, NULL,
		    "admin token sent with network create/join/leave when pilotctl gives none "
		    "(for registries started with -admin-token); empty = none",
		    "secret"),
		OPT("no-echo", PILOT_OPT_BOOL, &o->no_echo, NULL, "disable the echo service (port 7)", NULL),
		OPT("no-dataexchange", PILOT_OPT_BOOL, &o->no_dataexchange, NULL,
		    "disable the data exchange service (port 1001)", NULL),
		OPT("no-eventstream", PILOT_OPT_BOOL, &o->no_eventstream, NULL,
		    "disable the event stream service (port 1002)", NULL),
		OPT("webhook", PILOT_OPT_STRING, &o->webhook, NULL,
		    "POST every event as JSON to this http:// or https:// URL (pilotctl set-webhook "
		    "changes it at run time)",
		    "URL"),
		OPT("webhook-secret", PILOT_OPT_STRING, &o->webhook_secret, NULL,
		    "sign webhook bodies: header X-Pilot-Signature: sha256=<hex HMAC-SHA256>", "SECRET"),
		OPT("no-tasks", PILOT_OPT_BOOL, &o->no_tasks, NULL,
		    "disable the task submit service (port 1003)", NULL),
		OPT("secure-forward", PILOT_OPT_STRING, &o->secure_forward, NULL,
		    "terminate the secure channel on Pilot port 443 and forward the plaintext to "
		    "this local TCP host:port (stunnel-style)",
		    "HOST:PORT"),
		OPT("secure-require-auth", PILOT_OPT_BOOL, &o->secure_require_auth, NULL,
		    "with -secure-forward: refuse the reference (unauthenticated) handshake; "
		    "without it, a node that authenticated once may not downgrade",
		    NULL),
		OPT("require-auth", PILOT_OPT_BOOL, &o->require_auth, "true",
		    "accept only identity-signed key exchanges (PILA); -require-auth=false also "
		    "lets anonymous peers (PILK) in, to port 444 only and never under a trusted "
		    "or known node's ID",
		    NULL),
		OPT("kdf", PILOT_OPT_STRING, &o->kdf, "ref",
		    "tunnel key derivation offered first: ref (SHA-256) or new (HKDF); "
		    "the peer's variant is learned either way",
		    "ref|new"),
		OPT("dataexchange-quota", PILOT_OPT_INT, &o->dx_quota, "1024",
		    "disk space the data exchange service (port 1001) may fill with received "
		    "files and messages; 0 = no quota",
		    "MiB", 0, 1 << 30),
		OPT("dataexchange-peer-quota", PILOT_OPT_INT, &o->dx_peer_quota, "256",
		    "of that, what one peer may fill (counted since start; cleared with "
		    "pilotctl received/inbox --clear); 0 = no per-peer quota",
		    "MiB", 0, 1 << 30),
		OPT("dataexchange-min-free", PILOT_OPT_INT, &o->dx_min_free, "256",
		    "refuse received data that would leave less free space than this on the "
		    "file system of ~/.pilot; 0 = no floor",
		    "MiB", 0, 1 << 30),
		OPT("deregister-on-exit", PILOT_OPT_BOOL, &o->deregister_on_exit, NULL,
		    "deregister from the registry on SIGTERM/SIGINT (waits at most 2 s)", NULL),
		OPT("user", PILOT_OPT_STRING, &o->user, NULL,
		    "when started as root: switch to this user once the sockets are open", "name"),
		OPT("tun", PILOT_OPT_STRING, &o->tun, "pilot0",
		    "TUN device name; -tun=off runs without a TUN device (no IP access); "
		    "-tun=userspace needs no device and no privilege: IP access through "
		    "-socks5, -http-proxy, -forward and -expose",
		    "name|off|userspace"),
		OPT("socks5", PILOT_OPT_STRING, &o->socks5, NULL,
		    "with -tun=userspace: SOCKS5 server (CONNECT) on this address; targets "
		    "name.pilot, a Pilot address or a mapped IP, port = Pilot port",
		    "host:port"),
		OPT("http-proxy", PILOT_OPT_STRING, &o->http_proxy, NULL,
		    "with -tun=userspace: HTTP proxy (CONNECT and http:// requests) on this address",
		    "host:port"),
		OPT("forward", PILOT_OPT_STRING, &o->forward, NULL,
		    "with -tun=userspace: local listeners forwarded to peers' ports, comma-separated "
		    "listen=target pairs (127.0.0.1:5432=db:5432)",
		    "list"),
		OPT("expose", PILOT_OPT_STRING, &o->expose, NULL,
		    "with -tun=userspace: local TCP servers published on Pilot ports, comma-separated "
		    "port=host:port pairs (80=127.0.0.1:8080); trust rules apply",
		    "list"),
		OPT("proxy-auth", PILOT_OPT_STRING, &o->proxy_auth, NULL,
		    "username:password the SOCKS5 server (RFC 1929) and the HTTP proxy (Basic) require",
		    "user:pass"),
		OPT("proxy-max-pending", PILOT_OPT_INT, &o->proxy_max_pending, "64",
		    "clients of one SOCKS5 / HTTP proxy / forward listener still in their request phase", "n",
		    1, 65536),
		OPT("proxy-rate", PILOT_OPT_INT, &o->proxy_rate, "100",
		    "new connections per second one client IP may open on a userspace listener (burst 2x)",
		    "n", 1, 1000000),
		OPT("tun-subnet", PILOT_OPT_STRING, &o->tun_subnet, "10.4.0.0/16",
		    "IPv4 subnet of the TUN (/16 to /30); own IP = its first host", "cidr"),
		OPT("tun-mtu", PILOT_OPT_INT, &o->tun_mtu, "65535", "TUN device MTU", "bytes", 1280, 65535),
		OPT("tun-offload", PILOT_OPT_BOOL, &o->tun_offload, "true",
		    "TUN with vnet headers and offloads (checksum, TSO): the kernel hands over and "
		    "takes TCP segments of up to 64 KiB whatever the MTU and finishes their "
		    "checksums; falls back to a plain TUN when the kernel refuses",
		    NULL),
		OPT("tun-max-flows", PILOT_OPT_INT, &o->tun_max_flows, "4096",
		    "TCP connections bridged through the TUN at once", "n", 1, 1 << 24),
		OPT("udp-gso", PILOT_OPT_BOOL, &o->udp_gso, "true",
		    "send runs of datagrams to one peer as one UDP GSO super-packet (Linux "
		    "UDP_SEGMENT); -udp-gso=false sends one datagram per entry (paths or "
		    "firewalls that judge a whole GSO packet at once)",
		    NULL),
		OPT("underlay-mtu", PILOT_OPT_INT, &o->underlay_mtu, "0",
		    "cap on the underlay path MTU that stream segments are sized to so the "
		    "tunnel's UDP packets are never fragmented; 0 = the kernel's route MTU "
		    "towards each peer",
		    "bytes", 0, 65535),
		OPT("map-file", PILOT_OPT_STRING, &o->map_file, NULL,
		    "IP <-> address map file (default: addrmap.json beside the identity; "
		    "in memory with -identity=)",
		    "path"),
		OPT("no-dns", PILOT_OPT_BOOL, &o->no_dns, NULL,
		    "no DNS responder for .pilot names on the TUN address", NULL),
		OPT("dns-rate", PILOT_OPT_INT, &o->dns_rate, "2",
		    "registry lookups per second the DNS responder makes for one client "
		    "(burst: 5 times that; all clients together: 5 times that, burst 10 times); "
		    "more get SERVFAIL",
		    "n", 1, 100000),
		OPT("dns-neg-cache", PILOT_OPT_DURATION, &o->dns_neg_cache, "30s",
		    "how long the DNS responder remembers that a hostname does not exist", "duration"),
		OPT("nameserver", PILOT_OPT_STRING, &o->nameserver, NULL,
		    "pilot-nameserver node (ID or address) the DNS responder asks before the registry, "
		    "also for _port._pilot.<network>.pilot SRV; pilotctl's name commands use it too",
		    "addr"),
		OPT("transport", PILOT_OPT_STRING, &o->transport, "udp",
		    "tunnel transport: udp, compat (WebSocket over TLS to -compat-beacon, "
		    "for networks that block UDP) or auto (UDP if -beacon answers within 2 s, "
		    "else compat)",
		    "udp|compat|auto"),
		OPT("compat-beacon", PILOT_OPT_STRING, &o->compat_beacon, NULL,
		    "the beacon's compat WebSocket URL (required for compat and auto; no default)",
		    "wss://host[:port]/v1/compat"),
		OPT("tls-trust", PILOT_OPT_STRING, &o->tls_trust, "system",
		    "TLS trust for -compat-beacon and -registry-tls: the OS CA store, or only "
		    "the -tls-root CAs",
		    "system|pinned"),
		OPT("tls-root", PILOT_OPT_STRING, &o->tls_root, NULL,
		    "CA certificates (PEM) trusted with -tls-trust=pinned", "file[,file...]"),
		OPT("registry-tls", PILOT_OPT_BOOL, &o->registry_tls, NULL,
		    "talk to the registry over TLS (trust per -tls-trust, or -registry-fingerprint)", NULL),
		OPT("registry-trust", PILOT_OPT_STRING, &o->registry_trust, NULL,
		    "the newer reference's registry trust flag: system = -registry-tls with the OS CA "
		    "store, pinned = -registry-tls accepting only -registry-fingerprint",
		    "system|pinned"),
		OPT("registry-fingerprint", PILOT_OPT_STRING, &o->registry_fingerprint, NULL,
		    "with -registry-tls: accept only this registry certificate (lowercase hex "
		    "SHA-256 of its DER)",
		    "hex"),
		PILOT_OPTS_LOG(&o->log_level, &o->log_format, &o->log_file),
		OPT("metrics", PILOT_OPT_STRING, &o->metrics, NULL,
		    "serve Prometheus /metrics and /healthz over HTTP here; a bare :port binds "
		    "127.0.0.1; empty = off",
		    "host:port"),
		OPT("test-ref-peer", PILOT_OPT_BOOL, &o->test_ref_peer, NULL,
		    "testing only: behave like the reference daemon on the wire (no window "
		    "update when a reader drains, no answer to a pure ACK, no key exchange "
		    "in answer to a frame it cannot decrypt, a peer once reached through the "
		    "relay stays on the relay)",
		    NULL),
		OPT("test-task-expiry", PILOT_OPT_DURATION, &o->test_task_expiry, "1h",
		    "testing only: the task queue's head expires after this long (services.md "
		    "§8: 1 hour)",
		    "duration"),
		OPT("n", PILOT_OPT_BOOL, &o->check, NULL, "check the configuration and exit", NULL),
		{ .name = NULL },
	};

	_Static_assert(sizeof(tab) <= sizeof(pilot_opt) * (NOPTS + 1), "raise NOPTS");
	memcpy(t, tab, sizeof(tab));
}

static int usage_error(const char *msg)
{
	fprintf(stderr, "%s: %s\nRun '%s -help' for the list of flags.\n", PROG, msg, PROG);
	return 2;
}

static int empty(const char *s)
{
	return !s || !s[0];
}

static int valid_hostport(const char *s)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (!colon)
		return 0;
	port = strtol(colon + 1, &end, 10);
	return colon[1] && !*end && port >= 0 && port <= 65535;
}

/* A comma-separated list of at most max items, each accepted by ok. */
static int valid_list(const char *s, int (*ok)(const char *), int max)
{
	char item[300];
	int n = 0;

	do {
		const char *end = strchr(s, ',');
		size_t len = end ? (size_t)(end - s) : strlen(s);

		while (len && *s == ' ')
			s++, len--;
		while (len && s[len - 1] == ' ')
			len--;
		if (!len || len >= sizeof(item) || ++n > max)
			return 0;
		memcpy(item, s, len);
		item[len] = '\0';
		if (!ok(item))
			return 0;
		s = end ? end + 1 : NULL;
	} while (s);
	return 1;
}

static int valid_ep(const char *s)
{
	transport_ep ep;

	return transport_ep_parse(s, &ep) == 0;
}

/* -registry-trust (cli.md §12.2, the newer reference's compat command line):
 * the registry over TLS, trusted through the OS store (system) or by its pinned
 * certificate fingerprint (pinned). NULL or why it is refused. */
static const char *registry_trust(node_options *o)
{
	if (empty(o->registry_trust))
		return NULL;
	if (strcmp(o->registry_trust, "system") && strcmp(o->registry_trust, "pinned"))
		return "invalid -registry-trust (want system or pinned)";
	o->registry_tls = 1;
	if (!strcmp(o->registry_trust, "pinned") && empty(o->registry_fingerprint))
		return "-registry-trust=pinned needs -registry-fingerprint HEX (the registry certificate's "
		       "SHA-256)";
	if (!strcmp(o->registry_trust, "system") && !empty(o->tls_trust) && strcmp(o->tls_trust, "system"))
		return "-registry-trust=system conflicts with -tls-trust=pinned";
	return NULL;
}

/* Cross-flag rules; returns 0 or 2 (usage error) after printing the reason. */
static int validate(node_options *o)
{
	transport_ep ep;
	const char *why;

	if (empty(o->registry))
		return usage_error("no registry configured: pass -registry HOST:PORT "
				   "(or \"registry\" in the -config file)");
	if (!valid_list(o->registry, valid_hostport, REGCLIENT_ADDR_MAX))
		return usage_error("invalid -registry (want host:port, or up to 8 separated by commas)");
	if (!empty(o->beacon) && !valid_list(o->beacon, valid_ep, PEER_BEACONS_MAX))
		return usage_error("invalid -beacon (want a numeric ip:port or [v6]:port, or up to 8 "
				   "separated by commas)");
	if (!empty(o->endpoint) && transport_ep_parse(o->endpoint, &ep) < 0)
		return usage_error("invalid -endpoint (want a numeric ip:port or [v6]:port)");
	if (empty(o->listen) || !valid_hostport(o->listen))
		return usage_error("invalid -listen (want host:port, :port or [v6]:port)");
	if (!empty(o->metrics) && !valid_hostport(o->metrics))
		return usage_error("invalid -metrics (want host:port or :port; :port = 127.0.0.1)");
	if ((why = pilot_log_opts_error(o->log_level, o->log_format)))
		return usage_error(why);
	if (strcmp(o->kdf, "ref") != 0 && strcmp(o->kdf, "new") != 0)
		return usage_error("invalid -kdf (want ref or new)");
	if (o->keepalive <= 0 || o->idle_timeout <= 0 || o->time_wait < 0)
		return usage_error("-keepalive and -idle-timeout must be positive, -time-wait not negative");
	if (!node_tun_userspace(o) &&
	    (!empty(o->socks5) || !empty(o->http_proxy) || !empty(o->forward) || !empty(o->expose)))
		return usage_error("-socks5, -http-proxy, -forward and -expose need -tun=userspace");
	if (!empty(o->proxy_auth) && !strchr(o->proxy_auth, ':'))
		return usage_error("invalid -proxy-auth (want user:password)");
	if (node_tun_enabled(o) && (strlen(o->tun) >= 16 || strchr(o->tun, '/')))
		return usage_error("invalid -tun (want a device name of at most 15 bytes, or off)");
	if (node_tun_enabled(o) && node_tun_parse_subnet(o->tun_subnet, &(uint32_t){ 0 }, &(int){ 0 }) < 0)
		return usage_error("invalid -tun-subnet (want an IPv4 network /16 to /30, e.g. 10.4.0.0/16)");
	if (o->nameserver && *o->nameserver && node_ns_parse(o->nameserver, &(uint32_t){ 0 }) < 0)
		return usage_error("invalid -nameserver (want a node ID or an address N:NNNN.HHHH.LLLL)");
	if (o->dns_neg_cache < 1000 || o->dns_neg_cache > 3600 * 1000)
		return usage_error("invalid -dns-neg-cache (want 1s to 1h)");
	if (o->underlay_mtu && o->underlay_mtu < 576)
		return usage_error("invalid -underlay-mtu (want 0 = auto, or 576 to 65535)");
	if ((why = registry_trust(o)))
		return usage_error(why);
	if ((why = node_compat_validate(o)))
		return usage_error(why);
	if (!empty(o->user) && !getpwnam(o->user))
		return usage_error("-user names no such user");
	if (!empty(o->user) && geteuid() != 0)
		return usage_error("-user needs pilotd to be started as root");
	return 0;
}

/* -identity not given at all (neither flag nor config key): the persistent default.
 * -identity= (given, empty) stays ephemeral. */
static int default_identity(node_options *o, const pilot_opt *opts)
{
	char path[PATH_MAX];
	const pilot_opt *p;
	char *copy;

	for (p = opts; p->name && strcmp(p->name, "identity"); p++)
		;
	if (!p->name || p->set)
		return 0;
	if (pilot_default_identity_path(path, sizeof(path)) < 0)
		return usage_error("no default identity path (HOME unset or relative); pass -identity "
				   "FILE, or -identity= for an ephemeral identity");
	if (!(copy = strdup(path)))
		return usage_error("out of memory");
	free(o->identity);
	o->identity = copy;
	return 0;
}

/* -n: the flags are valid (done) and the identity, if it exists, loads. */
static int check_config(const node_options *o)
{
	char err[512];
	pilot_identity id;
	int r;

	if (!empty(o->identity)) {
		r = pilot_identity_load(o->identity, &id, err, sizeof(err));
		pilot_identity_wipe(&id);
		if (r < 0 && r != -ENOENT) {
			fprintf(stderr, "%s: %s\n", PROG, err);
			return 1;
		}
	}
	printf("%s: configuration ok\n", PROG);
	return 0;
}

static void setup_log(const node_options *o)
{
	int r;

	pilot_log_init_opts(PROG, o->log_level, o->log_format);
	if (!empty(o->log_file) && (r = pilot_log_open(o->log_file)) < 0) {
		fprintf(stderr, "%s: cannot open -log-file %s: %s\n", PROG, o->log_file, strerror(-r));
		exit(1);
	}
}

int main(int argc, char **argv)
{
	static node_options o;
	pilot_opt opts[NOPTS + 1];
	char err[512], sock[256];
	node *n;
	int first = argc, r;

	pilot_malloc_policy();
	options_table(&o, opts);
	r = pilot_opts_parse(opts, argc, argv, &first, err, sizeof(err));
	if (r == 1) {
		pilot_opts_usage(opts, PROG, "-registry host:port [flags]", stdout);
		pilot_opts_free(opts);
		return 0;
	}
	if (r < 0 || first < argc || (r = validate(&o)) != 0) {
		r = r > 0 ? r : usage_error(r < 0 ? err : "unexpected argument (flags only)");
		pilot_opts_free(opts);
		return r;
	}
	if (empty(o.socket)) {
		if (pilot_default_socket_path(sock, sizeof(sock)) < 0) {
			pilot_opts_free(opts);
			return usage_error("default control socket path too long; pass -socket");
		}
		free(o.socket);
		o.socket = strdup(sock);
	}
	if ((r = default_identity(&o, opts)) != 0) {
		pilot_opts_free(opts);
		return r;
	}
	if (o.check) {
		r = check_config(&o);
		pilot_opts_free(opts);
		return r;
	}
	setup_log(&o);
	n = node_new(&o);
	node_start(n);
	r = node_run(n);
	node_free(n);
	pilot_opts_free(opts);
	return r;
}
