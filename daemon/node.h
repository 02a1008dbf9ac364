/* pilotd's glue: the node owns every module of the daemon (identity, tunnel
 * transport, peer table, registration, connection table, trust, control
 * socket, built-in services) and wires their callbacks together. Nothing
 * outside daemon/main.c, daemon/node*.c and daemon/ctlsrv_*.c includes this.
 *
 * Start-up order (node_start): crypto, identity, UDP transport, beacon
 * discovery of our public endpoint over the tunnel socket itself, control
 * socket, registration; the data plane (peer table, connection table, trust,
 * echo on 7, handshake service on 444) comes up on the first register_ok,
 * because the tunnel needs our node ID. Shutdown unwinds in reverse. */
#ifndef PILOT_NODE_H
#define PILOT_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "lib/crypto.h"
#include "daemon/transport.h"
#include "lib/loop.h"

struct ctlsrv_reply;

typedef struct node_options {
	char *config, *registry, *beacon, *listen, *socket, *endpoint, *identity, *owner;
	char *hostname, *log_level, *log_format, *log_file, *kdf, *user;
	char *admin_token;                   /* -admin-token: network requests' default (ctlsrv_registry.c) */
	char *metrics;                       /* -metrics host:port, NULL = off (metrics.c) */
	char *tun, *tun_subnet, *map_file;   /* -tun NAME|off (node_tun.c) */
	long tun_mtu, tun_max_flows;
	long underlay_mtu;                   /* cap on the path MTU, 0 = none (node_data.c) */
	int no_dns;
	char *transport, *compat_beacon, *tls_trust, *tls_root, *registry_fingerprint; /* node_compat.c */
	char *registry_trust; /* the newer reference's flag: system|pinned (main.c) */
	int registry_tls;
	int encrypt, public_node, no_echo, no_dataexchange, no_eventstream;
	int require_auth, deregister_on_exit, check, udp_gso, tun_offload;
	int test_ref_peer; /* testing only: reference quirks (issue 15) */
	int64_t test_task_expiry; /* testing only: queue-head timeout, ms (1 h; tasks.c) */
	int64_t keepalive, idle_timeout, time_wait;
	long syn_rate_limit, syn_rate_limit_peer, max_conns_per_port, max_conns_total;
	long syn_rate_limit_untrusted;       /* SYN budget of untrusted/anonymous sources */
	long dns_rate;                       /* DNS registry lookups/s per client (node_tun.c) */
	int64_t dns_neg_cache;               /* NXDOMAIN remembered (ms) */
	char *nameserver;                    /* -nameserver node, asked before the registry (node_ns.c) */
	long dx_quota, dx_peer_quota, dx_min_free; /* data exchange disk limits, MiB (ctlsrv_svc.c) */
	/* -tun=userspace front ends (node_proxy.c) */
	char *socks5, *http_proxy, *forward, *expose, *proxy_auth;
	long proxy_max_pending, proxy_rate;
	char *secure_forward;                      /* -secure-forward host:port (secure.c) */
	int secure_require_auth;
	int no_tasks; /* -no-tasks: no task submit on 1003 (tasks.c) */
	char *webhook, *webhook_secret; /* webhook.c */
} node_options;

/* Counters of the glue itself (the modules keep their own). */
typedef struct node_stats {
	uint64_t hs_conns, hs_msgs, hs_bad;   /* port-444 service */
	uint64_t echo_conns;
	uint64_t discover_replies;
	uint64_t refused;                     /* admit() said no: untrusted peer, private port */
	uint64_t refused_anon;                /* ... of which: anonymous (PILK) session, port != 444 */
	uint64_t notify_polls;                /* poll_handshakes run for a beacon Notify */
	uint64_t endpoint_updates;            /* re-registered with a new endpoint (node_move.c) */
} node_stats;

struct transport;
struct peer_table;
struct registration;
struct ctlsrv;
struct conn_table;
struct trust;
struct node_hs;
struct node_tun;
struct node_compat;
struct registration_config;

/* The whole daemon. Handlers in ctlsrv_*.c read it directly: it is the glue's
 * private state, not an interface to other folders. */
typedef struct node {
	node_options o;
	pilot_loop *loop;
	pilot_identity id;
	bool have_identity_path;
	char trust_path[4096];
	char pk_b64[48];
	struct transport *t;
	struct peer_table *peers;
	struct registration *reg;
	struct ctlsrv *ctlsrv;
	struct conn_table *conns;
	struct trust *trust;
	struct node_hs *hs;         /* port-444 service state (node_hs.c) */
	struct node_tun *tun;       /* TUN device, address map, DNS, bridge (node_tun.c) */
	struct proxy *proxy;        /* -tun=userspace: SOCKS5, HTTP proxy, forwards (node_proxy.c) */
	struct node_px *px;         /* forwards and exposed ports, persisted (node_proxy.c) */
	uint64_t drop_timer;        /* -user with a TUN: the drop waits for the own ULA */
	bool dropped;
	struct node_compat *compat; /* -transport, registry TLS (node_compat.c) */
	uint32_t node_id;
	char address[32];
	char hostname[64];
	char endpoint[64];          /* what we registered as listen_addr */
	uint64_t start_ms;
	uint64_t discover_timer, poll_timer;
	uint64_t poll_soon_timer;
	uint64_t notify_poll_ms;    /* loop time of the last Notify-driven poll */
	bool poll_again;            /* asked to poll while one was in flight */
	int discover_tries;
	unsigned beacon_first; /* which -beacon answered the first Discover */
	bool discovering, up, stopping, poll_inflight;
	bool rotating;              /* rotate-key waits for the registry */
	struct node_forget *forgets; /* untrusted peers whose tunnel goes soon (node_data.c) */
	struct {                     /* the registry's last refused resolve (error hints) */
		uint32_t node;
		uint64_t ms; /* pilot_now_ms() when refused; 0 = none */
		char msg[200];
	} refusal;
	node_stats st;
	struct node_svc *svc;        /* services 1001/1002, control operations (ctlsrv_op.h) */
	struct pilot_httpd *metrics; /* -metrics listener (metrics.c) */
	bool notified_ready;        /* sd_notify READY=1 sent */
	uint64_t bcast_milli, bcast_last_ms; /* broadcast token bucket (broadcast.c) */
	uint64_t bcast_sent, bcast_dgrams, bcast_limited;
	/* connection migration (node_move.c) */
	uint64_t move_timer;
	transport_ep route_src; /* our source address towards the beacon/registry */
	bool has_route_src;
} node;

node *node_new(const node_options *o);
/* Bring everything up (fatal on start-up errors). */
void node_start(node *n);
/* Run the loop until SIGTERM/SIGINT, then shut down gracefully. Returns 0. */
int node_run(node *n);
void node_free(node *n); /* NULL-safe */

/* ---- for the control handlers (daemon/ctlsrv_*.c) ---- */
pilot_loop *node_loop(node *n);
/* Key rotation accepted by the registry: id (copied) replaces our identity in
 * place for every module that borrows it, and what derives from it is refreshed. */
void node_set_identity(node *n, const pilot_identity *id);
const node_options *node_opts(const node *n);
uint32_t node_id(const node *n);
bool node_up(const node *n); /* the data plane exists (registered once) */

/* ---- connection migration (node_move.c) ---- */
/* Once registered: every second, notice a change of our source address towards
 * the beacon (or registry) and of the endpoint the beacon observes; re-register
 * the new endpoint and move the peers' paths (peer_table_migrated). */
void node_move_start(node *n);

/* ---- the data plane (node_data.c): peer table, connections, trust, services ---- */
void node_data_load_trust(node *n);    /* at start-up: a corrupt trust.json is fatal */
void node_data_up(node *n);            /* on the first register_ok */
void node_data_relayed_handshakes(node *n, json_object *reply);
size_t node_data_trusted(node *n, uint32_t *ids, size_t cap);
void node_data_shutdown(node *n);      /* FIN/RST every connection */
void node_data_free(node *n);          /* NULL-safe parts */
/* built-in services and control operations (ctlsrv_svc.c, ctlsrv_comm.c) */
void node_svc_up(node *n);             /* data exchange 1001, event stream 1002 */
void node_svc_down(node *n);           /* before the conn table goes; idempotent */

/* ---- port-444 handshake service and trust's send_direct (node_hs.c) ---- */
int node_hs_listen(node *n);
void node_hs_free(node *n);
void node_hs_unreachable(node *n, uint32_t peer);
int node_hs_send_direct(void *arg, uint32_t peer, const uint8_t *buf, size_t len,
			void (*done)(void *op, int err), void *op);

/* ---- the TUN virtual NIC (node_tun.c) ---- */
/* -tun-subnet: "10.4.0.0/16" -> network (host order) and prefix. 0 or -EINVAL. */
int node_tun_parse_subnet(const char *cidr, uint32_t *net, int *prefix);
bool node_tun_enabled(const node_options *o);   /* -tun is not "off" */
void node_tun_open(node *n);     /* before the privilege drop: device, IPv4, map, DNS */
void node_tun_up(node *n);       /* first register_ok: own ULA, the bridge */
void node_tun_before_drop(node *n); /* systemd-resolved, while still privileged */
void node_tun_down(node *n);     /* the bridge; before the conn table goes */
void node_tun_free(node *n);     /* the rest; after the registration. NULL-safe parts */
json_object *node_tun_info_json(node *n); /* for info: device, IPs, flow counts */
bool node_tun_userspace(const node_options *o); /* -tun=userspace: no device, socket front ends */

/* ---- userspace front ends (node_proxy.c) ---- */
void node_proxy_open(node *n);  /* listeners of -socks5 / -http-proxy / -forward (fatal if busy) */
void node_proxy_up(node *n);    /* -expose once the bridge is up */
void node_proxy_close(node *n); /* listeners and talking clients; before the bridge goes */
void node_proxy_free(node *n);  /* after the bridge and the registration */
json_object *node_proxy_info_json(node *n);
/* Drop what the resolver cached about node (trust with it changed). */
void node_proxy_forget(node *n, uint32_t id);
/* Runtime changes (pilotctl forward / expose); flag = from the configuration
 * (not saved). 0 or -errno with err filled; -ENOTSUP without -tun=userspace. */
int node_proxy_forward_add(node *n, const char *listen, const char *target, bool flag, char *err,
			   size_t errlen);
int node_proxy_forward_remove(node *n, const char *listen); /* 0 or -ENOENT */
int node_proxy_expose_add(node *n, long port, const char *target, bool flag, char *err, size_t errlen);
int node_proxy_expose_remove(node *n, long port); /* 0 or -ENOENT */
json_object *node_proxy_list_json(node *n, bool expose);

/* ---- compat mode (WSS tunnel) and registry TLS (node_compat.c) ---- */
const char *node_compat_validate(const node_options *o); /* NULL or a usage error */
bool node_compat_start(node *n);    /* before the UDP transport; true = compat: no UDP */
void node_compat_udp_ok(node *n);   /* a DiscoverReply arrived (auto: UDP it is) */
bool node_compat_fallback(node *n); /* auto, no DiscoverReply: now compat (UDP closed) */
void node_compat_registration(node *n, struct registration_config *rc); /* TLS, relay_only */
void node_compat_up(node *n);       /* first register_ok, before node_data_up: the WSS */
bool node_compat_on(const node *n); /* the tunnel runs over the WebSocket */
const char *node_compat_peer_beacon(const node *n); /* the peer table's beacon or NULL */
void node_compat_identity_changed(node *n);         /* key rotation: the WSS auth key */
void node_compat_info(node *n, json_object *o);    /* info: transport, transport_reason */
void node_compat_free(node *n);     /* after the registration and the transport */

/* ---- Prometheus /metrics (metrics.c) ---- */
void node_metrics_start(node *n);   /* -metrics set: listen (fatal on error) */
void node_metrics_write(node *n, FILE *f); /* the whole exposition */
void node_metrics_free(node *n);    /* NULL-safe parts */

/* The control verbs: daemon/ctlsrv_verbs.h (one table). */
/* Helpers for handlers: daemon/ctlsrv_args.h. */

#endif
