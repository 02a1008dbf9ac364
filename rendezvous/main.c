/* pilot-rendezvous: the registry (TCP/TLS), the beacon (UDP) and an optional
 * HTTP health/metrics listener in one single-threaded process (cli.md §5.2).
 * Start-up is the only place that exits on error; afterwards everything is
 * logged and survived. Shutdown unwinds in reverse order of set-up. */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "lib/log.h"
#include "lib/loop.h"
#include "lib/memstat.h"
#include "lib/opts.h"
#include "lib/proto.h"
#include "lib/sdnotify.h"
#include "rendezvous/beacon.h"
#include "rendezvous/ca.h"
#include "rendezvous/http.h"
#include "rendezvous/import.h"
#include "rendezvous/registry.h"
#include "rendezvous/server.h"
#include "rendezvous/tls.h"
#include "rendezvous/wss.h"

#define PROG "pilot-rendezvous"

struct options {
	char *config, *registry_addr, *beacon_addr, *store, *store_url, *tls_cert, *tls_key;
	char *standby, *http, *log_level, *log_format, *log_file;
	char *admin_token, *replication_token, *store_sync;
	char *standby_tls_ca, *standby_tls_fpr;
	char *wss_addr, *wss_tls_cert, *wss_tls_key;
	char *beacon_peers, *beacon_peer_secret;
	long wss_max_peers, wss_rate, wss_max_queued;
	int tls, no_registry, no_beacon, strict_signatures, no_rate_limit, check, print_fpr;
	long max_conns, max_conns_per_ip, max_conns_per_v6net, max_partial_mb;
	int64_t frame_timeout, idle_timeout, store_fsync_delay, wss_idle;
	long store_queue;
};

#define NOPTS 60

struct app {
	struct options o;
	pilot_loop *loop;
	registry *reg;
	rdv_tls *tls;
	rdv_server *srv;
	rdv_standby *standby;
	rdv_tls *standby_tls;
	rdv_http *http;
	beacon *bcn;
	rdv_wss *wss;
	uint64_t tick_timer;
	char cert_path[4096], key_path[4096];
};

static bool st_url_ok(const char *s)
{
	return s && (!strncmp(s, "postgres://", 11) || !strncmp(s, "postgresql://", 13));
}

#define OPT PILOT_OPT

static void options_table(struct options *o, pilot_opt *t)
{
	pilot_opt tab[] = {
		PILOT_OPT_CONFIG(&o->config),
		OPT("registry-addr", PILOT_OPT_STRING, &o->registry_addr, ":9000",
		    "registry TCP listen address", "host:port"),
		OPT("beacon-addr", PILOT_OPT_STRING, &o->beacon_addr, ":9001", "beacon UDP listen address",
		    "host:port"),
		OPT("beacon-peers", PILOT_OPT_STRING, &o->beacon_peers, NULL,
		    "other beacons of the cluster: Sync who holds which node and relay between "
		    "them (rendezvous/BEACON.md); empty = none",
		    "ip:port[,ip:port...]"),
		OPT("beacon-peer-secret", PILOT_OPT_STRING, &o->beacon_peer_secret, NULL,
		    "shared secret of the beacon cluster: beacon-to-beacon messages carry a tag "
		    "keyed with it, others are refused",
		    "secret"),
		OPT("store", PILOT_OPT_STRING, &o->store, NULL,
		    "registry database: an SQLite file, or a postgres:// URL (several instances may "
		    "share one PostgreSQL database); empty = in memory only",
		    "path|url"),
		OPT("store-url", PILOT_OPT_STRING, &o->store_url, NULL,
		    "PostgreSQL connection URL (postgres://user@host/db); the same as -store URL", "url"),
		OPT("store-sync", PILOT_OPT_STRING, &o->store_sync, "normal",
		    "normal: an acknowledged write survives a crash of this process, not a power cut; "
		    "full: it is on the disk (an fsync per commit batch)",
		    "mode"),
		OPT("store-queue", PILOT_OPT_INT, &o->store_queue, "4096",
		    "writes waiting for the disk before new ones are answered busy", "n", 1, 1000000),
		OPT("store-fsync-delay", PILOT_OPT_DURATION, &o->store_fsync_delay, "0",
		    "testing only: every fsync of the store sleeps this long first (a slow disk)",
		    "duration"),
		OPT("tls", PILOT_OPT_BOOL, &o->tls, NULL, "serve the registry over TLS", NULL),
		OPT("tls-cert", PILOT_OPT_STRING, &o->tls_cert, NULL,
		    "TLS certificate (PEM); empty = generated once beside -store", "file"),
		OPT("tls-key", PILOT_OPT_STRING, &o->tls_key, NULL, "TLS private key (PEM) for -tls-cert",
		    "file"),
		OPT("standby", PILOT_OPT_STRING, &o->standby, NULL,
		    "run as a read-only hot standby replicating from this primary", "host:port"),
		OPT("standby-tls-ca", PILOT_OPT_STRING, &o->standby_tls_ca, NULL,
		    "standby: replicate over TLS, trusting a primary certificate issued by this CA "
		    "for the -standby host",
		    "file"),
		OPT("standby-tls-fingerprint", PILOT_OPT_STRING, &o->standby_tls_fpr, NULL,
		    "standby: replicate over TLS, trusting the primary certificate with this SHA-256 "
		    "fingerprint (-print-fingerprint)",
		    "hex"),
		OPT("http", PILOT_OPT_STRING, &o->http, NULL,
		    "HTTP /healthz and /metrics listen address; no host = 127.0.0.1; empty = off",
		    "host:port"),
		PILOT_OPTS_LOG(&o->log_level, &o->log_format, &o->log_file),
		OPT("no-registry", PILOT_OPT_BOOL, &o->no_registry, NULL,
		    "do not serve the registry over TCP (beacon only)", NULL),
		OPT("no-beacon", PILOT_OPT_BOOL, &o->no_beacon, NULL, "do not run the beacon", NULL),
		OPT("admin-token", PILOT_OPT_STRING, &o->admin_token, NULL,
		    "secret that authorises network administration; empty = disabled", "secret"),
		OPT("replication-token", PILOT_OPT_STRING, &o->replication_token, NULL,
		    "secret a standby must present (primary) or presents (standby)", "secret"),
		OPT("strict-signatures", PILOT_OPT_BOOL, &o->strict_signatures, NULL,
		    "refuse reference-format (replayable) signatures; accept only v2", NULL),
		OPT("no-rate-limit", PILOT_OPT_BOOL, &o->no_rate_limit, NULL,
		    "no per-source request limits (for benchmarks and trusted private deployments)", NULL),
		OPT("max-conns", PILOT_OPT_INT, &o->max_conns, "4096", "registry connections in total", "n",
		    1, 1000000),
		OPT("max-conns-per-ip", PILOT_OPT_INT, &o->max_conns_per_ip, "64",
		    "registry connections per source IPv4 address", "n", 1, 1000000),
		OPT("max-conns-per-prefix", PILOT_OPT_INT, &o->max_conns_per_v6net, "64",
		    "registry connections per source IPv6 /64 (one host usually holds a whole /64)", "n", 1,
		    1000000),
		OPT("max-partial-memory", PILOT_OPT_INT, &o->max_partial_mb, "64",
		    "memory all registry connections together may hold in unfinished request frames; "
		    "a frame that would need more closes its connection",
		    "MiB", 1, 1 << 20),
		OPT("idle-timeout", PILOT_OPT_DURATION, &o->idle_timeout, "5m",
		    "close a registry connection idle this long", "duration"),
		OPT("frame-timeout", PILOT_OPT_DURATION, &o->frame_timeout, "10s",
		    "a started request frame must arrive completely within this", "duration"),
		OPT("wss-addr", PILOT_OPT_STRING, &o->wss_addr, NULL,
		    "compat WebSocket bridge (path /v1/compat) listen address; empty = off", "host:port"),
		OPT("wss-tls-cert", PILOT_OPT_STRING, &o->wss_tls_cert, NULL,
		    "terminate TLS on -wss-addr with this certificate (PEM); empty = plain WS "
		    "behind a TLS proxy",
		    "file"),
		OPT("wss-tls-key", PILOT_OPT_STRING, &o->wss_tls_key, NULL,
		    "private key (PEM) for -wss-tls-cert", "file"),
		OPT("wss-max-peers", PILOT_OPT_INT, &o->wss_max_peers, "10000",
		    "compat WebSocket connections; beyond: HTTP 503", "n", 1, 1000000),
		OPT("wss-max-queued", PILOT_OPT_INT, &o->wss_max_queued, "256",
		    "bytes queued for all compat WebSocket peers together (each peer: at most "
		    "4 MiB); messages beyond are dropped and counted",
		    "MiB", 1, 1 << 20),
		OPT("wss-idle-timeout", PILOT_OPT_DURATION, &o->wss_idle, "90s",
		    "close a compat connection after this long without a data message or a pong; "
		    "a peer quiet for a third of it is pinged (short values are for tests)",
		    "duration"),
		OPT("wss-rate", PILOT_OPT_INT, &o->wss_rate, "60",
		    "compat connections per source IP per minute (burst 20); 0 = no limit", "n", 0, 1000000),
		OPT("n", PILOT_OPT_BOOL, &o->check, NULL, "check the configuration and exit", NULL),
		OPT("print-fingerprint", PILOT_OPT_BOOL, &o->print_fpr, NULL,
		    "print the TLS certificate fingerprint (generating it if needed) and exit", NULL),
		{ .name = NULL },
	};

	_Static_assert(sizeof(tab) <= sizeof(pilot_opt) * (NOPTS + 1), "raise NOPTS");
	memcpy(t, tab, sizeof(tab));
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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

/* Cross-flag rules; returns 0 or 2 (usage error) after printing the reason. */
static int validate(struct app *a)
{
	struct options *o = &a->o;
	const char *why;
	char host[256], port[8];

	if ((why = pilot_log_opts_error(o->log_level, o->log_format)))
		return usage_error(why);
	if (!empty(o->store_sync) && strcmp(o->store_sync, "full") && strcmp(o->store_sync, "normal"))
		return usage_error("invalid -store-sync (want full or normal)");
	if (o->wss_idle < 1000)
		return usage_error("invalid -wss-idle-timeout (want at least 1s)");
	if (!empty(o->store_url)) {
		if (!st_url_ok(o->store_url))
			return usage_error("invalid -store-url (want postgres://... or postgresql://...)");
		if (!empty(o->store) && strcmp(o->store, o->store_url))
			return usage_error("-store and -store-url name different stores (give one)");
		char *dup = strdup(o->store_url);

		if (!dup)
			return usage_error("out of memory");
		free(o->store);
		o->store = dup;
	}
	if (st_url_ok(o->store) && !empty(o->standby))
		return usage_error("-standby replicates into SQLite; with PostgreSQL run several instances "
				   "on the database instead (its own replication keeps the database available)");
	if (st_url_ok(o->store) && (o->tls || o->print_fpr) && empty(o->tls_cert))
		return usage_error("-tls with a PostgreSQL store needs -tls-cert and -tls-key (every "
				   "instance serves the same certificate)");
	if (o->no_registry && o->no_beacon)
		return usage_error("-no-registry and -no-beacon together leave nothing to run");
	if (o->no_registry && !empty(o->standby))
		return usage_error("-standby needs the registry (drop -no-registry)");
	if (!o->no_registry && pilot_split_hostport(o->registry_addr, host, sizeof(host), port, sizeof(port)) < 0)
		return usage_error("invalid -registry-addr (want host:port, :port or [v6]:port)");
	if (!o->no_beacon && pilot_split_hostport(o->beacon_addr, host, sizeof(host), port, sizeof(port)) < 0)
		return usage_error("invalid -beacon-addr (want host:port, :port or [v6]:port)");
	if (!empty(o->http) && pilot_split_hostport(o->http, host, sizeof(host), port, sizeof(port)) < 0)
		return usage_error("invalid -http (want host:port or :port)");
	if (!empty(o->standby)
	    && (pilot_split_hostport(o->standby, host, sizeof(host), port, sizeof(port)) < 0 || !host[0]))
		return usage_error("invalid -standby (want the primary's host:port)");
	if (empty(o->standby) && (!empty(o->standby_tls_ca) || !empty(o->standby_tls_fpr)))
		return usage_error("-standby-tls-ca and -standby-tls-fingerprint need -standby");
	if (!empty(o->wss_addr) && pilot_split_hostport(o->wss_addr, host, sizeof(host), port, sizeof(port)) < 0)
		return usage_error("invalid -wss-addr (want host:port, :port or [v6]:port)");
	if (empty(o->wss_tls_cert) != empty(o->wss_tls_key))
		return usage_error("-wss-tls-cert and -wss-tls-key go together");
	if (!empty(o->wss_addr) && o->no_beacon)
		return usage_error("-wss-addr bridges into the beacon (drop -no-beacon)");
	if (o->no_beacon && !empty(o->beacon_peers))
		return usage_error("-beacon-peers needs the beacon (drop -no-beacon)");
	if (empty(o->beacon_peers) && !empty(o->beacon_peer_secret))
		return usage_error("-beacon-peer-secret needs -beacon-peers");
	if (empty(o->tls_cert) != empty(o->tls_key))
		return usage_error("-tls-cert and -tls-key go together");
	if ((o->tls || o->print_fpr) && empty(o->tls_cert) && empty(o->store))
		return usage_error("-tls without -tls-cert needs -store: the generated certificate is kept "
				   "beside the store so its fingerprint survives restarts");
	return 0;
}

static void cert_paths(struct app *a)
{
	if (!empty(a->o.tls_cert)) {
		snprintf(a->cert_path, sizeof(a->cert_path), "%s", a->o.tls_cert);
		snprintf(a->key_path, sizeof(a->key_path), "%s", a->o.tls_key);
	} else if (rdv_tls_default_paths(a->o.store, a->cert_path, sizeof(a->cert_path),
					 a->key_path, sizeof(a->key_path)) < 0) {
		pilot_fatal("store path too long: %s", a->o.store);
	}
}

/* Generated certificates only: a given -tls-cert must exist. */
static int setup_cert(struct app *a, char *err, size_t errlen)
{
	int created = 0;

	cert_paths(a);
	if (!empty(a->o.tls_cert))
		return 0;
	if (rdv_tls_ensure_cert(a->cert_path, a->key_path, &created, err, errlen) < 0)
		return -1;
	if (created)
		log_info("generated TLS certificate cert=%s key=%s", a->cert_path, a->key_path);
	return 0;
}

static int print_fingerprint(struct app *a)
{
	char err[512], fpr[RDV_TLS_FPR_LEN];

	if (setup_cert(a, err, sizeof(err)) < 0
	    || rdv_tls_fingerprint_file(a->cert_path, fpr, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", PROG, err);
		return 1;
	}
	printf("%s\n", fpr);
	return 0;
}

/* A listen/peer address whose host must resolve (numeric or a name); no bind. */
static int check_addr(const char *flag, const char *addr, int passive)
{
	char host[256], port[8];
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_flags = AI_NUMERICSERV }, *res = NULL;
	int rc;

	if (pilot_split_hostport(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		fprintf(stderr, "%s: invalid -%s \"%s\"\n", PROG, flag, addr);
		return -1;
	}
	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "%s: -%s \"%s\": %s\n", PROG, flag, addr, gai_strerror(rc));
		return -1;
	}
	freeaddrinfo(res);
	return 0;
}

static int readable(const char *what, const char *path)
{
	if (access(path, R_OK) == 0)
		return 0;
	fprintf(stderr, "%s: %s %s: %s\n", PROG, what, path, strerror(errno));
	return -1;
}

/* -n: everything start() would need, without binding or writing anything: the
 * flags (validate, done), the addresses (parse and resolve), the store (openable,
 * writable, a schema we know; or a writable directory to create it in), the TLS
 * certificate and key (readable, loadable, matching; a generated pair that does
 * not exist yet needs the store directory, checked with the store). */
static int check_config(struct app *a)
{
	struct options *o = &a->o;
	char err[512];

	if ((!o->no_registry && check_addr("registry-addr", o->registry_addr, 1) < 0)
	    || (!o->no_beacon && check_addr("beacon-addr", o->beacon_addr, 1) < 0)
	    || (!empty(o->http) && check_addr("http", o->http, 1) < 0)
	    || (!empty(o->standby) && check_addr("standby", o->standby, 0) < 0)
	    || (!empty(o->wss_addr) && check_addr("wss-addr", o->wss_addr, 1) < 0))
		return 1;
	if (!empty(o->wss_tls_cert)
	    && (readable("WSS TLS certificate", o->wss_tls_cert) < 0
		|| readable("WSS TLS key", o->wss_tls_key) < 0))
		return 1;
	if (reg_store_check(o->store, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", PROG, err);
		return 1;
	}
	if (!empty(o->tls_cert) || ((o->tls && !o->no_registry) && !empty(o->store))) {
		cert_paths(a);
		if (!empty(o->tls_cert) || access(a->cert_path, F_OK) == 0 || access(a->key_path, F_OK) == 0) {
			rdv_tls *t;

			if (readable("TLS certificate", a->cert_path) < 0 || readable("TLS key", a->key_path) < 0)
				return 1;
			if (!(t = rdv_tls_new(a->cert_path, a->key_path, err, sizeof(err)))) {
				fprintf(stderr, "%s: %s\n", PROG, err);
				return 1;
			}
			rdv_tls_free(t);
		}
	}
	printf("configuration OK\n");
	return 0;
}

/* ---- running ---------------------------------------------------------------------- */

/* The signals the loop handles, blocked as the first thing main does. Until a
 * signal is blocked, its disposition decides what happens to it, and the loop only
 * blocks it in pilot_loop_add_signal, at the end of start(), after the store is
 * loaded (seconds for a large one) and the listeners are bound. In that window a
 * SIGTERM was lost whenever its disposition discards it: inherited SIG_IGN
 * (e.g. a parent shell's trap '' TERM; ignored dispositions survive exec), or
 * pid 1 of a PID namespace (a container without an init), where the kernel drops
 * SIG_DFL signals it would otherwise act on — "ignored the first SIGTERM, exited on
 * the second". A blocked signal is never discarded (even if ignored): it stays
 * pending and the signalfd created later reads it on the loop's first round. */
static void block_loop_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

static void on_signal(pilot_loop *l, int signo, void *arg)
{
	if (signo == SIGHUP) {
		int r = pilot_log_reopen();

		if (r < 0)
			log_warn("SIGHUP: cannot reopen the log file err=\"%s\"", strerror(-r));
		else
			log_info("SIGHUP: log file reopened");
		return;
	}
	log_info("shutting down signal=%s", signo == SIGTERM ? "SIGTERM" : "SIGINT");
	pilot_sd_notify("STOPPING=1");
	pilot_loop_stop(l);
}

/* A relayed handshake landed in node's registry inbox: the beacon tells the node. */
static void on_inbox(void *arg, uint32_t node)
{
	beacon_notify(arg, node, BEACON_NOTIFY_HANDSHAKE);
}

static int64_t tick(pilot_loop *l, uint64_t id, void *arg)
{
	struct app *a = arg;

	reg_tick(a->reg, wall_ms());
	return 1000;
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v, int gauge)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name,
		gauge ? "gauge" : "counter", name, (unsigned long long)v);
}

static void beacon_metrics(FILE *f, const beacon *b)
{
	beacon_stats st;

	beacon_get_stats(b, &st);
	counter(f, "pilot_beacon_discovers_total", "Beacon Discover messages received.", st.discovers, 0);
	counter(f, "pilot_beacon_discovers_verified_total", "Discovers that proved the node's identity.",
		st.discovers_verified, 0);
	counter(f, "pilot_beacon_verify_failed_total", "Signed Discovers refused.", st.verify_failed, 0);
	counter(f, "pilot_beacon_punch_requests_total", "Hole-punch requests.", st.punch_requests, 0);
	counter(f, "pilot_beacon_punch_denied_total", "Hole-punch requests refused.", st.punch_denied, 0);
	counter(f, "pilot_beacon_relayed_packets_total", "Packets relayed.", st.relayed_packets, 0);
	counter(f, "pilot_beacon_relayed_bytes_total", "Tunnel bytes relayed.", st.relayed_bytes, 0);
	counter(f, "pilot_beacon_relay_denied_total", "Relay attempts refused.", st.relay_denied, 0);
	counter(f, "pilot_beacon_notifies_total",
		"Notify messages sent to nodes (a relayed handshake waits in the registry).",
		st.notifies_sent, 0);
	counter(f, "pilot_beacon_malformed_total", "Malformed beacon datagrams dropped.",
		st.dropped_malformed, 0);
	counter(f, "pilot_beacon_send_errors_total", "Datagrams the kernel refused.", st.send_errors, 0);
	counter(f, "pilot_beacon_gso_sends_total",
		"Sends of several datagrams to one destination as one UDP GSO super-packet.", st.gso_sends,
		0);
	counter(f, "pilot_beacon_nodes", "Verified endpoints known to the beacon.", st.nodes, 1);
	counter(f, "pilot_beacon_syncs_sent_total", "Sync messages sent to peer beacons.", st.syncs_sent, 0);
	counter(f, "pilot_beacon_syncs_received_total", "Sync messages from peer beacons.", st.syncs_received,
		0);
	counter(f, "pilot_beacon_relay_forwarded_total",
		"Relays sent on to the peer beacon holding the destination.", st.relay_forwarded, 0);
	counter(f, "pilot_beacon_relay_from_peer_total", "Relays from peer beacons delivered to a node here.",
		st.relay_from_peer, 0);
	counter(f, "pilot_beacon_peer_refused_total",
		"Peer-beacon messages refused (bad tag, malformed, destination not here).", st.peer_refused,
		0);
	fprintf(f, "# HELP pilot_bridge_relayed_total Packets relayed across the compat bridge, by direction.\n"
		   "# TYPE pilot_bridge_relayed_total counter\n"
		   "pilot_bridge_relayed_total{direction=\"udp_wss\"} %llu\n"
		   "pilot_bridge_relayed_total{direction=\"wss_udp\"} %llu\n"
		   "pilot_bridge_relayed_total{direction=\"wss_wss\"} %llu\n",
		(unsigned long long)st.relay_udp_wss, (unsigned long long)st.relay_wss_udp,
		(unsigned long long)st.relay_wss_wss);
	counter(f, "pilot_bridge_spoofed_total", "Compat datagrams naming another sender (dropped).",
		st.inject_spoofed, 0);
}

static void store_metrics(FILE *f, registry *reg)
{
	reg_store_stats ss;

	reg_get_store_stats(reg, &ss);
	fprintf(f, "# HELP pilot_store_commit_seconds Time to commit one batch of writes (incl. fsync).\n"
		   "# TYPE pilot_store_commit_seconds histogram\n");
	for (int i = 0; i < ST_LAT_BUCKETS; i++)
		fprintf(f, "pilot_store_commit_seconds_bucket{le=\"%g\"} %llu\n", reg_commit_le_ms[i] / 1000.0,
			(unsigned long long)ss.commit_le[i]);
	fprintf(f, "pilot_store_commit_seconds_bucket{le=\"+Inf\"} %llu\n"
		   "pilot_store_commit_seconds_sum %.6f\npilot_store_commit_seconds_count %llu\n",
		(unsigned long long)ss.batches, ss.commit_seconds, (unsigned long long)ss.batches);
	fprintf(f, "# HELP pilot_store_commit_max_seconds Longest batch commit since start.\n"
		   "# TYPE pilot_store_commit_max_seconds gauge\npilot_store_commit_max_seconds %.6f\n",
		ss.max_commit_ms / 1000.0);
	fprintf(f, "# HELP pilot_store_write_wait_seconds_total Sum over batches of the wait of its oldest write (queued to durable).\n"
		   "# TYPE pilot_store_write_wait_seconds_total counter\npilot_store_write_wait_seconds_total %.6f\n",
		ss.wait_seconds);
	counter(f, "pilot_store_writes_total", "Writes committed or failed (batch size = this / pilot_store_commit_seconds_count).",
		ss.txns, 0);
	counter(f, "pilot_store_write_failures_total", "Writes the store refused (answered internal).", ss.failed, 0);
	counter(f, "pilot_store_batch_size_last", "Writes in the newest commit.", ss.last_batch, 1);
	counter(f, "pilot_store_batch_size_max", "Most writes in one commit since start.", ss.max_batch, 1);
	counter(f, "pilot_store_queue_depth", "Writes waiting for the disk now (incl. the commit in flight).",
		ss.queue_depth, 1);
	counter(f, "pilot_store_queue_limit", "-store-queue.", ss.queue_max, 1);
	counter(f, "pilot_store_queue_depth_max", "Deepest the write queue has been since start.", ss.queue_max_seen, 1);
	counter(f, "pilot_store_busy_total", "Writes answered busy (queue full) or unavailable (database down).",
		ss.busy, 0);
	counter(f, "pilot_store_up", "1 while the store's database answers.", ss.db_up, 1);
	counter(f, "pilot_store_rows_refused_total",
		"Store rows (at load, or in another instance's changes) refused or loaded without a bad "
		"column.",
		ss.rows_refused, 0);
	if (!ss.shared)
		return;
	counter(f, "pilot_store_conflicts_total", "Writes another instance won in the database (answered busy).",
		ss.conflicts, 0);
	counter(f, "pilot_store_changes_total", "Change batches received from other instances.", ss.changes, 0);
	fprintf(f, "# HELP pilot_store_change_lag_seconds Commit on another instance to delivery here, newest.\n"
		   "# TYPE pilot_store_change_lag_seconds gauge\npilot_store_change_lag_seconds %.6f\n"
		   "# HELP pilot_store_change_lag_seconds_max Longest commit-to-delivery lag since start.\n"
		   "# TYPE pilot_store_change_lag_seconds_max gauge\npilot_store_change_lag_seconds_max %.6f\n"
		   "# HELP pilot_store_change_lag_seconds_sum Sum of the lags (mean = this / pilot_store_changes_total).\n"
		   "# TYPE pilot_store_change_lag_seconds_sum counter\npilot_store_change_lag_seconds_sum %.6f\n",
		ss.change_lag_last_ms / 1000.0, ss.change_lag_max_ms / 1000.0, ss.change_lag_seconds);
}

static void metrics_extra(FILE *f, void *arg)
{
	struct app *a = arg;
	rdv_server_stats st = { 0 };

	if (a->srv)
		rdv_server_get_stats(a->srv, &st);
	fprintf(f, "# HELP pilot_registry_connections Open registry connections.\n"
		   "# TYPE pilot_registry_connections gauge\npilot_registry_connections %llu\n",
		(unsigned long long)st.connections);
	fprintf(f, "# HELP pilot_registry_replication_subscribers Standbys following this registry.\n"
		   "# TYPE pilot_registry_replication_subscribers gauge\npilot_registry_replication_subscribers %llu\n",
		(unsigned long long)st.subscribers);
	fprintf(f, "# HELP pilot_registry_connections_refused_total Connections refused by -max-conns, -max-conns-per-ip or -max-conns-per-prefix.\n"
		   "# TYPE pilot_registry_connections_refused_total counter\npilot_registry_connections_refused_total %llu\n",
		(unsigned long long)st.refused);
	fprintf(f, "# HELP pilot_registry_connections_refused_per_source_total Connections refused by "
		   "-max-conns-per-ip (IPv4 address) or -max-conns-per-prefix (IPv6 /64).\n"
		   "# TYPE pilot_registry_connections_refused_per_source_total counter\n"
		   "pilot_registry_connections_refused_per_source_total %llu\n",
		(unsigned long long)st.refused_per_source);
	fprintf(f, "# HELP pilot_registry_partial_frame_bytes Memory held by registry connection input buffers.\n"
		   "# TYPE pilot_registry_partial_frame_bytes gauge\npilot_registry_partial_frame_bytes %llu\n",
		(unsigned long long)st.in_bytes);
	fprintf(f, "# HELP pilot_registry_partial_frame_closed_total Connections closed: their unfinished "
		   "frame would pass -max-partial-memory.\n"
		   "# TYPE pilot_registry_partial_frame_closed_total counter\npilot_registry_partial_frame_closed_total %llu\n",
		(unsigned long long)st.partial_closed);
	fprintf(f, "# HELP pilot_registry_connection_timeouts_total Connections closed idle or with a stalled frame.\n"
		   "# TYPE pilot_registry_connection_timeouts_total counter\npilot_registry_connection_timeouts_total %llu\n",
		(unsigned long long)st.timeouts);
	fprintf(f, "# HELP pilot_registry_bad_frames_total Connections closed for an oversize or invalid frame.\n"
		   "# TYPE pilot_registry_bad_frames_total counter\npilot_registry_bad_frames_total %llu\n",
		(unsigned long long)st.bad_frames);
	if (a->reg && !empty(a->o.store))
		store_metrics(f, a->reg);
	if (a->standby) {
		rdv_standby_stats ss;

		rdv_standby_get_stats(a->standby, &ss);
		fprintf(f, "# HELP pilot_standby_connected 1 while subscribed to the primary.\n"
			   "# TYPE pilot_standby_connected gauge\npilot_standby_connected %d\n"
			   "# HELP pilot_standby_snapshots_total Snapshots applied from the primary.\n"
			   "# TYPE pilot_standby_snapshots_total counter\npilot_standby_snapshots_total %llu\n",
			ss.connected, (unsigned long long)ss.snapshots);
	}
	if (a->bcn)
		beacon_metrics(f, a->bcn);
	if (a->wss)
		rdv_wss_metrics(a->wss, f);
}

static reg_config reg_config_of(const struct options *o)
{
	reg_config rc = {
		.store_path = o->store,
		.admin_token = o->admin_token,
		.replication_token = o->replication_token,
		.standby = !empty(o->standby),
		.strict_signatures = o->strict_signatures,
		.ratelimit_disabled = o->no_rate_limit,
		.store_queue_max = o->store_queue,
		.store_sync_full = o->store_sync && !strcmp(o->store_sync, "full"),
		.store_fsync_delay_ms = o->store_fsync_delay,
	};

	return rc;
}

/* pilot-rendezvous [flags] import-json [-replace] FILE: the flags (or -config) name the store. */
static int import_json(const struct options *o, int argc, char **argv)
{
	reg_config rc = reg_config_of(o);
	bool replace = false;
	char msg[1024];
	int i = 1;

	if (i < argc && (!strcmp(argv[i], "-replace") || !strcmp(argv[i], "--replace"))) {
		replace = true;
		i++;
	}
	if (i + 1 != argc)
		return usage_error("usage: pilot-rendezvous [flags] import-json [-replace] registry.json");
	if (rdv_import_json(&rc, argv[i], replace, msg, sizeof(msg)) < 0) {
		fprintf(stderr, "%s: import-json: %s\n", PROG, msg);
		return 1;
	}
	printf("%s\n", msg);
	return 0;
}

static int import_json_run(struct app *a, int argc, char **argv)
{
	int r = validate(a);

	if (r != 0)
		return r;
	pilot_log_init(PROG, PILOT_LOG_WARN, PILOT_LOG_TEXT);
	if (sodium_init() < 0)
		pilot_fatal("libsodium failed to initialise");
	return import_json(&a->o, argc, argv);
}

/* pilot-rendezvous import-json [flags] [-replace] FILE: argv without the verb and
 * -replace goes through the ordinary flag parser; what is left is FILE. */
static int import_json_main(struct app *a, pilot_opt *opts, int argc, char **argv)
{
	char **v = calloc((size_t)argc + 2, sizeof(*v)), err[512];
	int n = 0, first, r;
	bool replace = false;

	if (!v)
		return 1;
	options_table(&a->o, opts);
	v[n++] = argv[0];
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "-replace") || !strcmp(argv[i], "--replace"))
			replace = true;
		else
			v[n++] = argv[i];
	}
	first = n;
	r = pilot_opts_parse(opts, n, v, &first, err, sizeof(err));
	if (r == 0) {
		char verb[] = "import-json", flag[] = "-replace";
		char *rest[3] = { verb, flag, NULL };

		if (first + 1 != n) {
			r = usage_error(
				"usage: pilot-rendezvous import-json [flags] [-replace] registry.json");
		} else {
			rest[replace ? 2 : 1] = v[first];
			r = import_json_run(a, replace ? 3 : 2, rest);
		}
	} else {
		r = r == 1 ? 0 : usage_error(err);
		if (r == 0)
			printf("usage: pilot-rendezvous import-json [flags] [-replace] registry.json\n");
	}
	pilot_opts_free(opts);
	free(v);
	return r;
}

static void start(struct app *a)
{
	struct options *o = &a->o;
	char err[512];
	reg_config rc = reg_config_of(o);

	if (!(a->loop = pilot_loop_new()))
		pilot_fatal("cannot create the event loop");
	if (!(a->reg = reg_open(&rc, err, sizeof(err))))
		pilot_fatal("%s", err);
	if (o->tls && !o->no_registry) {
		if (setup_cert(a, err, sizeof(err)) < 0
		    || !(a->tls = rdv_tls_new(a->cert_path, a->key_path, err, sizeof(err))))
			pilot_fatal("%s", err);
	}
	if (!o->no_registry) {
		rdv_server_config sc = {
			.addr = o->registry_addr, .reg = a->reg, .tls = a->tls,
			.replication_token = o->replication_token,
			.max_conns = o->max_conns, .max_conns_per_ip = o->max_conns_per_ip,
			.max_conns_per_v6net = o->max_conns_per_v6net,
			.max_partial_bytes = o->max_partial_mb << 20,
			.idle_ms = o->idle_timeout, .frame_ms = o->frame_timeout,
		};

		if (!(a->srv = rdv_server_new(a->loop, &sc, err, sizeof(err))))
			pilot_fatal("registry: %s", err);
	}
	if (!o->no_beacon && !(a->bcn = beacon_new(a->loop, o->beacon_addr, a->reg, err, sizeof(err))))
		pilot_fatal("beacon: %s", err);
	if (a->bcn)
		reg_set_inbox_cb(a->reg, on_inbox, a->bcn);
	if (a->bcn && !empty(o->beacon_peers)) {
		if (beacon_set_peers(a->bcn, o->beacon_peers, o->beacon_peer_secret, err, sizeof(err)) < 0)
			pilot_fatal("beacon: %s", err);
		if (empty(o->beacon_peer_secret))
			log_warn("beacon: -beacon-peers without -beacon-peer-secret: anyone who can send "
				 "UDP from a peer beacon's address can have relay frames delivered here");
	}
	if (!empty(o->wss_addr)) {
		rdv_wss_config wc = {
			.addr = o->wss_addr,
			.tls_cert = o->wss_tls_cert,
			.tls_key = o->wss_tls_key,
			.reg = a->reg,
			.bcn = a->bcn,
			.max_peers = o->wss_max_peers,
			.rate_burst = o->wss_rate ? 0 : -1,
			.rate_per_min = o->wss_rate,
			.max_queued = o->wss_max_queued << 20,
			.idle_ms = o->wss_idle,
		};

		if (!(a->wss = rdv_wss_new(a->loop, &wc, err, sizeof(err))))
			pilot_fatal("wss: %s", err);
	}
	if (!empty(o->standby) && (!empty(o->standby_tls_ca) || !empty(o->standby_tls_fpr))
	    && !(a->standby_tls = rdv_tls_client_new(o->standby_tls_ca, o->standby_tls_fpr, err, sizeof(err))))
		pilot_fatal("standby: %s", err);
	if (!empty(o->standby)
	    && !(a->standby = rdv_standby_new(a->loop, o->standby, o->replication_token, a->standby_tls,
					      a->reg, err, sizeof(err))))
		pilot_fatal("%s", err);
	if (!empty(o->http)) {
		rdv_http_config hc = { .addr = o->http, .reg = a->reg, .extra = metrics_extra,
				       .extra_arg = a };

		if (!(a->http = rdv_http_new(a->loop, &hc, err, sizeof(err))))
			pilot_fatal("http: %s", err);
	}
	if (pilot_loop_add_signal(a->loop, SIGTERM, on_signal, a) < 0
	    || pilot_loop_add_signal(a->loop, SIGINT, on_signal, a) < 0
	    || pilot_loop_add_signal(a->loop, SIGHUP, on_signal, a) < 0
	    || !(a->tick_timer = pilot_loop_add_timer(a->loop, 1000, tick, a)))
		pilot_fatal("cannot set up signal handling");
}

static void log_started(const struct app *a)
{
	const struct options *o = &a->o;

	char bcn[300] = "off";

	if (a->bcn)
		snprintf(bcn, sizeof(bcn), "%s(udp/%d)", o->beacon_addr, beacon_local_port(a->bcn));
	log_info("started registry=%s%s beacon=%s wss=%s%s http=%s store=%s standby=%s",
		 a->srv ? rdv_server_addr(a->srv) : "off", a->tls ? " tls=on" : "", bcn,
		 a->wss ? o->wss_addr : "off", a->wss && !empty(o->wss_tls_cert) ? " wss-tls=on" : "",
		 a->http ? rdv_http_addr(a->http) : "off",
		 empty(o->store) ? "memory" : st_url_ok(o->store) ? "postgres" : o->store, empty(o->standby) ? "no" : o->standby);
	if (a->tls)
		log_info("TLS certificate cert=%s fingerprint=%s", a->cert_path, rdv_tls_fingerprint(a->tls));
}

static void stop(struct app *a)
{
	rdv_http_free(a->http);
	rdv_standby_free(a->standby);
	rdv_tls_free(a->standby_tls);
	rdv_server_free(a->srv);
	rdv_wss_free(a->wss);
	if (a->reg)
		reg_set_inbox_cb(a->reg, NULL, NULL);
	beacon_free(a->bcn);
	if (a->loop)
		pilot_loop_del_timer(a->loop, a->tick_timer);
	reg_close(a->reg);
	rdv_tls_free(a->tls);
	pilot_loop_free(a->loop);
}

int main(int argc, char **argv)
{
	static struct app a;
	pilot_opt opts[NOPTS + 1];
	char err[512];
	int first = argc, r;

	if (argc > 1 && !strcmp(argv[1], "ca"))
		return rdv_ca_main(argc - 2, argv + 2);
	if (argc > 1 && !strcmp(argv[1], "import-json")) /* flags may follow the verb too */
		return import_json_main(&a, opts, argc, argv);
	pilot_malloc_policy();
	block_loop_signals();
	options_table(&a.o, opts);
	r = pilot_opts_parse(opts, argc, argv, &first, err, sizeof(err));
	if (r == 1) {
		pilot_opts_usage(
			opts, PROG,
			"[flags]\n       pilot-rendezvous [flags] import-json [-replace] registry.json\n"
			"       pilot-rendezvous ca init-root|issue|verify ...",
			stdout);
		pilot_opts_free(opts);
		return 0;
	}
	if (r == 0 && first < argc && !strcmp(argv[first], "import-json")) {
		r = import_json_run(&a, argc - first, argv + first);
		pilot_opts_free(opts);
		return r;
	}
	if (r < 0 || first < argc) {
		r = usage_error(r < 0 ? err : "unexpected argument (flags only)");
		pilot_opts_free(opts);
		return r;
	}
	if ((r = validate(&a)) != 0) {
		pilot_opts_free(opts);
		return r;
	}
	pilot_log_init_opts(PROG, a.o.log_level, a.o.log_format);
	if (sodium_init() < 0)
		pilot_fatal("libsodium failed to initialise");
	if (a.o.print_fpr || a.o.check) {
		r = a.o.print_fpr ? print_fingerprint(&a) : check_config(&a);
		pilot_opts_free(opts);
		return r;
	}
	if (!empty(a.o.log_file) && (r = pilot_log_open(a.o.log_file)) < 0)
		pilot_fatal("cannot open -log-file \"%s\": %s", a.o.log_file, strerror(-r));
	signal(SIGPIPE, SIG_IGN); /* TLS writes go through write(2), not send(MSG_NOSIGNAL) */
	start(&a);
	log_started(&a);
	pilot_sd_notify("READY=1"); /* systemd Type=notify: every listener is open */
	r = pilot_loop_run(a.loop);
	if (r < 0)
		log_error("event loop failed err=\"%s\"", strerror(-r));
	stop(&a);
	log_info("stopped");
	pilot_opts_free(opts);
	return r < 0 ? 1 : 0;
}
