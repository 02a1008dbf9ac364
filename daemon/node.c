/* pilotd start-up, registry glue and shutdown (see node.h for the order).
 * Start-up errors are fatal and name what failed; afterwards everything is
 * logged and survived. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/capability.h>
#include <netinet/in.h>

#include "daemon/ctlsrv_verbs.h"
#include "daemon/ctlsrv.h"
#include "daemon/node.h"
#include "daemon/webhook.h"
#include "daemon/peer.h"
#include "daemon/privs.h"
#include "daemon/registration.h"
#include "daemon/transport.h"
#include "lib/log.h"
#include "lib/proto.h"
#include "lib/sdnotify.h"

#define DISCOVER_WAIT_MS 2000
#define DISCOVER_TRIES 3
#define SHUTDOWN_WAIT_MS 2000
#define DROP_WAIT_MS 10000 /* -user with a TUN: the longest the drop waits for the ULA */

static int empty(const char *s)
{
	return !s || !s[0];
}

node *node_new(const node_options *o)
{
	node *n = calloc(1, sizeof(*n));

	if (!n || !(n->loop = pilot_loop_new()))
		pilot_fatal("out of memory");
	n->o = *o;
	n->start_ms = pilot_now_ms();
	snprintf(n->hostname, sizeof(n->hostname), "%s", o->hostname ? o->hostname : "");
	return n;
}

pilot_loop *node_loop(node *n) { return n->loop; }
const node_options *node_opts(const node *n) { return &n->o; }
uint32_t node_id(const node *n) { return n->node_id; }
bool node_up(const node *n) { return n->up; }

/* ---- identity ---- */
static void trust_path_beside(node *n, const char *identity)
{
	const char *slash = strrchr(identity, '/');
	int dirlen = slash ? (int)(slash - identity) : 0;

	if (!slash)
		snprintf(n->trust_path, sizeof(n->trust_path), "trust.json");
	else
		snprintf(n->trust_path, sizeof(n->trust_path), "%.*s/trust.json",
			 dirlen ? dirlen : 1, dirlen ? identity : "/");
}

/* A rotate-key whose outcome was never learnt leaves the new key beside the
 * identity (ctlsrv_registry.c); only the operator can tell which one the registry has. */
static void warn_rotation_leftover(const char *identity)
{
	char p[4200];

	snprintf(p, sizeof(p), "%s.rotating", identity);
	if (access(p, F_OK) == 0)
		log_warn("an interrupted rotate-key left %s: if this node registers under a new node "
			 "ID, stop it and move that file over %s", p, identity);
}

static void load_identity(node *n)
{
	char err[512];
	int created = 0, r;

	if (empty(n->o.identity)) {
		pilot_identity_generate(&n->id);
		log_info("ephemeral identity (-identity=): trust is not persisted");
	} else {
		r = pilot_identity_load_or_create(n->o.identity, &n->id, &created, err, sizeof(err));
		if (r < 0 && !created)
			pilot_fatal("%s", err);
		if (r < 0)
			log_warn("running with an unsaved identity: %s", err);
		else if (created)
			log_info("created identity path=%s", n->o.identity);
		n->have_identity_path = true;
		trust_path_beside(n, n->o.identity);
		warn_rotation_leftover(n->o.identity);
	}
	pilot_b64_encode(n->id.pk, sizeof(n->id.pk), n->pk_b64, sizeof(n->pk_b64));
	if (empty(n->o.hostname)) { /* no -hostname: pilot-XXXXXXXX */
		_Static_assert(sizeof(n->hostname) > PILOT_DEFAULT_HOSTNAME_LEN, "hostname buffer");
		pilot_default_hostname(n->id.pk, n->hostname);
	}
}

void node_set_identity(node *n, const pilot_identity *id)
{
	pilot_identity_wipe(&n->id);
	n->id = *id;
	pilot_b64_encode(n->id.pk, sizeof(n->id.pk), n->pk_b64, sizeof(n->pk_b64));
	if (n->reg)
		registration_identity_changed(n->reg);
	node_compat_identity_changed(n);
}

/* ---- privileges (issue 12 §7) ----
 * Sockets, the TUN and the DNS socket on the own IPv4 are opened as root; then,
 * before the loop reads anything from the network, pilotd keeps only what the
 * rest of start-up needs: with -user it switches to that user keeping
 * CAP_NET_ADMIN (the own ULA, which needs the node ID, is added to the TUN on
 * the first register_ok) and CAP_NET_BIND_SERVICE (the DNS socket on that ULA,
 * port 53), plus CAP_SETPCAP to shrink the bounding set later; without -user, started as root, it stays uid 0 with those two.
 * Once the ULA is up (or after DROP_WAIT_MS without registration) the last
 * step: -user keeps nothing, root keeps CAP_NET_ADMIN for the TUN. The bounding
 * set is cut down too, so nothing pilotd runs regains the rest. */
static uint64_t startup_caps(const node *n)
{
	if (!node_tun_enabled(&n->o) || node_tun_userspace(&n->o))
		return 0;
	/* CAP_SETPCAP: the last step can then cut the bounding set down too */
	return PRIVS_CAP(CAP_NET_ADMIN) | PRIVS_CAP(CAP_SETPCAP)
	       | (n->o.no_dns ? 0 : PRIVS_CAP(CAP_NET_BIND_SERVICE));
}

static uint64_t final_caps(const node *n)
{
	return empty(n->o.user) && node_tun_enabled(&n->o) && !node_tun_userspace(&n->o)
		? PRIVS_CAP(CAP_NET_ADMIN)
		: 0;
}

/* Before any network input: switch user / limit root's capabilities. */
static void privileges_startup(node *n)
{
	struct passwd *pw;
	char caps[96];
	int r;

	if (empty(n->o.user)) {
		if (geteuid() != 0)
			return;
		if ((r = privs_limit(startup_caps(n))) < 0)
			pilot_fatal("cannot limit capabilities: %s", strerror(-r));
		log_info("running as root with capabilities=%s", privs_text(privs_effective(), caps, sizeof(caps)));
		return;
	}
	if (!(pw = getpwnam(n->o.user)))
		pilot_fatal("-user %s: no such user", n->o.user);
	if ((r = privs_switch_user(pw->pw_uid, pw->pw_gid, startup_caps(n))) < 0)
		pilot_fatal("cannot switch to user %s: %s", n->o.user, strerror(-r));
	log_info("switched to user=%s uid=%u capabilities=%s", n->o.user, (unsigned)pw->pw_uid,
		 privs_text(privs_effective(), caps, sizeof(caps)));
}

/* After start-up (the own ULA configured, or given up on). */
static void drop_privileges(node *n)
{
	char caps[96];
	int r;

	pilot_loop_del_timer(n->loop, n->drop_timer);
	n->drop_timer = 0;
	if (n->dropped || (empty(n->o.user) && geteuid() != 0))
		return;
	node_tun_before_drop(n);
	if ((r = privs_limit(final_caps(n))) < 0)
		pilot_fatal("cannot drop capabilities: %s", strerror(-r));
	n->dropped = true;
	log_info("dropped privileges user=%s capabilities=%s", empty(n->o.user) ? "root" : n->o.user,
		 privs_text(privs_effective(), caps, sizeof(caps)));
}

static int64_t drop_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	node *n = arg;

	n->drop_timer = 0;
	log_warn("not registered after %d s: dropping privileges without the own ULA",
		 DROP_WAIT_MS / 1000);
	drop_privileges(n);
	return 0;
}

/* ---- registry glue ---- */
static void on_registered(void *arg, uint32_t id, const char *address, bool again)
{
	node *n = arg;

	n->node_id = id;
	snprintf(n->address, sizeof(n->address), "%s", address);
	if (!n->up && !n->stopping) {
		node_compat_up(n);
		node_data_up(n);
		node_tun_up(n);
		node_proxy_up(n);
		drop_privileges(n);
		node_move_start(n);
	}
	{
		json_object *d = json_object_new_object();

		json_object_object_add(d, "address", json_object_new_string(address));
		if (!again)
			json_object_object_add(d, "endpoint", json_object_new_string(n->endpoint));
		node_webhook(n, again ? "node.reregistered" : "node.registered", d);
	}
	if (!n->notified_ready && !n->stopping) { /* systemd Type=notify: ready once registered */
		n->notified_ready = true;
		pilot_sd_notify("READY=1\nSTATUS=registered");
	}
}

static void on_handshakes(void *arg, json_object *reply)
{
	node *n = arg;

	if (n->up)
		node_data_relayed_handshakes(n, reply);
}

static size_t trusted_peers(void *arg, uint32_t *ids, size_t cap)
{
	node *n = arg;

	return n->up ? node_data_trusted(n, ids, cap) : 0;
}

/* The registry came back after a lost connection: it (and the beacon, which
 * usually runs beside it) may have restarted and forgotten our verified
 * endpoint, without which it relays nothing to or from us: Discover again now
 * rather than at the next periodic Discover (25 s). */
static void registry_reconnected(void *arg)
{
	node *n = arg;

	if (n->peers)
		peer_table_rediscover(n->peers);
}

/* True for a registry on this host: 127.0.0.0/8, ::1, [::1], localhost. */
static bool registry_is_loopback(const char *hostport)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	size_t len = colon ? (size_t)(colon - hostport) : strlen(hostport);
	struct in_addr a4;
	struct in6_addr a6;

	if (len && hostport[0] == '[' && hostport[len - 1] == ']')
		hostport++, len -= 2;
	if (len >= sizeof(host))
		return false;
	memcpy(host, hostport, len);
	host[len] = '\0';
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return strcmp(host, "localhost") == 0;
}

/* Issue 12 §6: node IDs, endpoints, keys and trust requests travel to the
 * registry; in plaintext anyone on the path reads and can change them. */
static void warn_plaintext_registry(node *n)
{
	if (!n->o.registry_tls && !registry_is_loopback(n->o.registry))
		log_warn("the registry %s is reached in plaintext: anyone on the path can read and "
			 "alter what this node registers and looks up; use -registry-tls", n->o.registry);
}

static void start_registration(node *n)
{
	char err[512];
	registration_config rc = {
		.registry = n->o.registry,
		.id = &n->id,
		.listen_addr = n->endpoint,
		.owner = n->o.owner,
		.hostname = n->hostname,
		.public_node = n->o.public_node,
		.keepalive_ms = n->o.keepalive,
	};
	registration_callbacks cbs = {
		.registered = on_registered,
		.handshakes = on_handshakes,
		.trusted_peers = trusted_peers,
		.arg = n,
	};
	int r;

	rc.client.on_reconnect = registry_reconnected;
	rc.client.on_reconnect_arg = n;
	node_compat_registration(n, &rc);
	warn_plaintext_registry(n);
	n->discovering = false;
	log_info("registering registry=%s listen_addr=%s", n->o.registry, n->endpoint);
	if (!(n->reg = registration_new(n->loop, &rc, &cbs, err, sizeof(err))))
		pilot_fatal("registry: %s", err);
	if ((r = registration_start(n->reg)) < 0)
		pilot_fatal("registry: cannot start registration: %s", strerror(-r));
}

/* ---- endpoint discovery over the tunnel socket itself (tunnel.md §9.2 NOTE:
 * the reference used a temporary socket and registered the wrong port) ---- */
static void local_endpoint(node *n)
{
	transport_ep ep;
	char s[TRANSPORT_EP_STRLEN];

	if (transport_local_ep(n->t, &ep) < 0)
		pilot_fatal("cannot read the tunnel socket's address");
	transport_ep_format(&ep, s);
	snprintf(n->endpoint, sizeof(n->endpoint), "%s", s);
}

static bool usable_ip(const proto_endpoint *ep)
{
	static const uint8_t zero[16];

	if (ep->ip_len == 4)
		return ep->ip[0] != 127 && memcmp(ep->ip, zero, 4) != 0;
	return memcmp(ep->ip, zero, 16) != 0 && !(memcmp(ep->ip, zero, 15) == 0 && ep->ip[15] == 1);
}

/* Item i of the -beacon list into ep; how many items there are (0 on error). */
static unsigned beacon_item(const char *list, unsigned i, transport_ep *ep)
{
	char item[TRANSPORT_EP_STRLEN + 8];
	unsigned n = 0;

	do {
		const char *end = strchr(list, ',');
		size_t len = end ? (size_t)(end - list) : strlen(list);

		while (len && *list == ' ')
			list++, len--;
		while (len && list[len - 1] == ' ')
			len--;
		if (len >= sizeof(item))
			return 0;
		if (n++ == i) {
			memcpy(item, list, len);
			item[len] = '\0';
			if (transport_ep_parse(item, ep) < 0)
				return 0;
		}
		list = end ? end + 1 : NULL;
	} while (list);
	return n;
}

static void discover_recv(void *ctx, transport_dgram *dg, size_t cnt)
{
	node *n = ctx;
	proto_beacon_msg m;
	char ip[INET6_ADDRSTRLEN];
	size_t i;

	for (i = 0; i < cnt && n->discovering; i++) {
		if (proto_beacon_decode(dg[i].data, dg[i].len, &m) < 0 || m.type != BEACON_DISCOVER_REPLY)
			continue;
		n->st.discover_replies++;
		for (unsigned b = 0, nb = 1; b < nb; b++) {
			transport_ep ep;

			nb = beacon_item(n->o.beacon, b, &ep);
			if (nb && transport_ep_eq(&ep, &dg[i].ep)) {
				n->beacon_first = b; /* the peer table starts with the one that answered */
				break;
			}
		}
		inet_ntop(m.ep.ip_len == 4 ? AF_INET : AF_INET6, m.ep.ip, ip, sizeof(ip));
		/* A loopback or unspecified answer says nothing about the outside:
		 * keep the local endpoint (the registry substitutes our source IP). */
		if (usable_ip(&m.ep))
			snprintf(n->endpoint, sizeof(n->endpoint), m.ep.ip_len == 4 ? "%s:%u" : "[%s]:%u",
				 ip, m.ep.port);
		log_info("beacon reports our endpoint observed=%s%s%u listen_addr=%s", ip,
			 m.ep.ip_len == 4 ? ":" : "]:", m.ep.port, n->endpoint);
		pilot_loop_del_timer(n->loop, n->discover_timer);
		n->discover_timer = 0;
		node_compat_udp_ok(n);
		start_registration(n);
	}
}

static void send_discover(node *n)
{
	transport_dgram dg = { 0 };
	uint8_t msg[64];
	int len = proto_beacon_discover(0, NULL, msg, sizeof(msg));
	unsigned nb = beacon_item(n->o.beacon, 0, &dg.ep);

	/* Several beacons: each try goes to the next one. */
	if (len < 0 || !nb || !beacon_item(n->o.beacon, (unsigned)n->discover_tries % nb, &dg.ep))
		return;
	dg.data = msg;
	dg.len = (size_t)len;
	transport_send(n->t, &dg, 1);
	transport_flush(n->t);
}

static int64_t discover_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	node *n = arg;

	if (++n->discover_tries < DISCOVER_TRIES) {
		send_discover(n);
		return DISCOVER_WAIT_MS / DISCOVER_TRIES;
	}
	n->discover_timer = 0;
	if (!node_compat_fallback(n))
		log_warn("no DiscoverReply from beacon %s; registering the local endpoint %s",
			 n->o.beacon, n->endpoint);
	start_registration(n);
	return 0;
}

static void find_endpoint(node *n)
{
	if (!n->t) { /* compat: no tunnel socket, nothing to discover */
		start_registration(n);
		return;
	}
	local_endpoint(n);
	if (!empty(n->o.endpoint)) {
		snprintf(n->endpoint, sizeof(n->endpoint), "%s", n->o.endpoint);
		start_registration(n);
		return;
	}
	if (empty(n->o.beacon)) {
		start_registration(n);
		return;
	}
	n->discovering = true;
	send_discover(n);
	n->discover_timer = pilot_loop_add_timer(n->loop, DISCOVER_WAIT_MS / DISCOVER_TRIES,
						 discover_timeout, n);
}

/* ---- signals and shutdown ---- */
static int64_t shutdown_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	log_warn("shutdown: deregister did not finish in time");
	pilot_loop_stop(l);
	return 0;
}

static void deregistered(void *arg, json_object *reply, int err)
{
	node *n = arg;

	if (err)
		log_warn("shutdown: deregister failed err=%d", err);
	else
		log_info("deregistered");
	if (n->loop)
		pilot_loop_stop(n->loop);
}

static void begin_shutdown(node *n, const char *why)
{
	if (n->stopping)
		return;
	n->stopping = true;
	pilot_sd_notify("STOPPING=1");
	log_info("shutting down signal=%s", why);
	if (n->up)
		node_data_shutdown(n);
	if (n->o.deregister_on_exit && n->reg && registration_registered(n->reg)
	    && registration_deregister(n->reg, deregistered, n) == 0) {
		pilot_loop_add_timer(n->loop, SHUTDOWN_WAIT_MS, shutdown_timeout, n);
		return;
	}
	pilot_loop_stop(n->loop);
}

static void on_signal(pilot_loop *l, int signo, void *arg)
{
	node *n = arg;
	int r;

	if (signo == SIGHUP) {
		if ((r = pilot_log_reopen()) < 0)
			log_warn("SIGHUP: cannot reopen the log file err=\"%s\"", strerror(-r));
		else
			log_info("SIGHUP: log file reopened");
		return;
	}
	begin_shutdown(n, signo == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void open_ctlsrv(node *n)
{
	char err[512];
	ctlsrv_config cc = { .path = n->o.socket };
	int r;

	if ((r = ctlsrv_open(n->loop, &cc, &n->ctlsrv, err, sizeof(err))) < 0)
		pilot_fatal("%s", err);
	if ((r = ctlsrv_verbs_register(n->ctlsrv, n)) < 0)
		pilot_fatal("control verbs: %s", strerror(-r));
}

static void before_sleep(pilot_loop *l, void *arg)
{
	node *n = arg;

	if (n->t)
		transport_flush(n->t);
}

void node_start(node *n)
{
	const char *why = NULL;
	char err[512];

	signal(SIGPIPE, SIG_IGN);
	if (pilot_crypto_init(&why) < 0)
		pilot_fatal("%s", why);
	load_identity(n);
	node_data_load_trust(n);
	open_ctlsrv(n);
	node_metrics_start(n);
	if (!node_compat_start(n)) {
		if (!(n->t = udp_transport_new(n->loop, n->o.listen, discover_recv, n, err, sizeof(err))))
			pilot_fatal("tunnel: %s", err);
		if (!n->o.udp_gso)
			udp_transport_no_gso(n->t);
	}
	node_tun_open(n);
	node_proxy_open(n);
	privileges_startup(n); /* nothing has been read from the network yet */
	if (n->tun && !node_tun_userspace(&n->o) &&
	    (!empty(n->o.user) || geteuid() == 0)) /* the ULA needs the node ID */
		n->drop_timer = pilot_loop_add_timer(n->loop, DROP_WAIT_MS, drop_timeout, n);
	else
		drop_privileges(n);
	if (pilot_loop_add_signal(n->loop, SIGTERM, on_signal, n) < 0
	    || pilot_loop_add_signal(n->loop, SIGINT, on_signal, n) < 0
	    || pilot_loop_add_signal(n->loop, SIGHUP, on_signal, n) < 0)
		pilot_fatal("cannot set up signal handling");
	pilot_loop_set_before_sleep(n->loop, before_sleep, n);
	find_endpoint(n);
	log_info("started socket=%s listen=%s encrypt=%d public=%d identity=%s", ctlsrv_path(n->ctlsrv),
		 n->endpoint, n->o.encrypt, n->o.public_node,
		 empty(n->o.identity) ? "ephemeral" : n->o.identity);
}

int node_run(node *n)
{
	int r = pilot_loop_run(n->loop);

	if (r < 0)
		log_error("event loop failed err=\"%s\"", strerror(-r));
	log_info("stopped");
	return 0;
}

void node_free(node *n)
{
	if (!n)
		return;
	ctlsrv_free(n->ctlsrv);
	n->ctlsrv = NULL;
	node_metrics_free(n);
	node_proxy_close(n);
	node_tun_down(n);
	node_data_free(n);
	registration_free(n->reg);
	node_proxy_free(n);
	node_tun_free(n);
	transport_close(n->t);
	node_compat_free(n);
	pilot_loop_del_timer(n->loop, n->discover_timer);
	pilot_loop_del_timer(n->loop, n->drop_timer);
	pilot_identity_wipe(&n->id);
	pilot_loop_free(n->loop);
	free(n);
}
