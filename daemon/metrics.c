/* pilotd's Prometheus endpoint (-metrics host:port; off unless configured).
 * The HTTP listener is lib/httpd.c, shared with pilot-rendezvous; this file
 * only reads the modules' counters at scrape time, so nothing here is on the
 * packet path. Names: pilot_<subsystem>_<what>[_unit][_total], the scheme the
 * rendezvous uses (pilotd(8), METRICS). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "stream/conn.h"
#include "daemon/ctlsrv_op.h"
#include "daemon/dataxchg.h"
#include "daemon/node.h"
#include "daemon/peer.h"
#include "daemon/regclient.h"
#include "daemon/registration.h"
#include "daemon/trust.h"
#include "lib/addr.h"
#include "lib/httpd.h"
#include "lib/log.h"
#include "lib/memstat.h"

#define PEERS_MAX 4096
#define NSTATES (STREAM_TIME_WAIT + 1)

typedef struct live_sums {
	uint64_t states[NSTATES];
	uint64_t sent, rcvd, retx, fast, rto;
} live_sums;

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	pilot_prom_head(f, name, type, help);
}

static void labelled(FILE *f, const char *name, const char *key, const char *val, double v)
{
	const char *l[] = { key, val, NULL };

	pilot_prom_sample(f, name, l, v);
}

static void node_series(node *n, FILE *f)
{
	char id[16];
	const char *l[] = { "address", n->address, "node_id", id, "hostname", n->hostname, NULL };

	snprintf(id, sizeof(id), "%u", n->node_id);
	head(f, "pilot_node_info", "gauge", "This node (1); labels name it.");
	pilot_prom_sample(f, "pilot_node_info", l, 1);
	pilot_prom_metric(f, "pilot_node_registered", "gauge", "1 while registered with the registry.",
			  n->reg && registration_registered(n->reg));
	pilot_prom_metric(f, "pilot_uptime_seconds", "gauge", "Seconds since start.",
			  (pilot_now_ms() - n->start_ms) / 1000);
	if (n->trust) {
		pilot_prom_metric(f, "pilot_trust_trusted_peers", "gauge", "Trusted peers.",
				  trust_count_trusted(n->trust));
		pilot_prom_metric(f, "pilot_trust_pending_requests", "gauge",
				  "Trust requests waiting for approve/reject.", trust_count_pending(n->trust));
	}
}

static void registry_series(node *n, FILE *f)
{
	static const uint64_t bounds[REGCLIENT_RTT_NB] = REGCLIENT_RTT_BOUNDS_US;
	regclient *rc = n->reg ? registration_client(n->reg) : NULL;
	regclient_stats st = { 0 };
	uint64_t cum = 0;
	char le[32];

	if (rc)
		regclient_get_stats(rc, &st);
	pilot_prom_metric(f, "pilot_registry_client_connected", "gauge", "1 while the registry connection is up.",
			  (uint64_t)st.connected);
	pilot_prom_metric(f, "pilot_registry_client_connects_total", "counter", "Registry connections established.",
			  st.connects);
	pilot_prom_metric(f, "pilot_registry_client_connect_failures_total", "counter",
			  "Registry connection attempts that failed.", st.connect_fails);
	pilot_prom_metric(f, "pilot_registry_client_failovers_total", "counter",
			  "Moves to the next of several -registry addresses.", st.failovers);
	pilot_prom_metric(f, "pilot_registry_client_requests_total", "counter", "Registry requests written.", st.sent);
	pilot_prom_metric(f, "pilot_registry_client_errors_total", "counter", "Registry error replies.", st.errors);
	pilot_prom_metric(
		f, "pilot_registry_client_malformed_replies_total", "counter",
		"Registry replies refused: not the answer to the request, or without what it must carry.",
		st.malformed);
	pilot_prom_metric(f, "pilot_registry_client_timeouts_total", "counter", "Registry requests that timed out.",
			  st.timeouts);
	head(f, "pilot_registry_client_request_duration_seconds", "histogram",
	     "Registry round trip: request written to reply read.");
	for (int i = 0; i <= REGCLIENT_RTT_NB; i++) {
		cum += st.rtt_le[i];
		if (i < REGCLIENT_RTT_NB)
			snprintf(le, sizeof(le), "%g", bounds[i] / 1e6);
		else
			snprintf(le, sizeof(le), "+Inf");
		labelled(f, "pilot_registry_client_request_duration_seconds_bucket", "le", le, (double)cum);
	}
	fprintf(f, "pilot_registry_client_request_duration_seconds_sum %.6f\n", st.rtt_sum_us / 1e6);
	fprintf(f, "pilot_registry_client_request_duration_seconds_count %llu\n", (unsigned long long)cum);
}

static void peer_rows(FILE *f, const peer_info *pi, size_t cnt, const char *name, int what)
{
	char addr[PILOT_ADDR_STRLEN];

	for (size_t i = 0; i < cnt; i++) {
		const char *l[] = { "peer", pilot_addr_format(pilot_addr_make(0, pi[i].node), addr),
				    "path", peer_path_name(pi[i].path), NULL };
		uint64_t v = what == 0 ? pi[i].rx_bytes : what == 1 ? pi[i].tx_bytes
			     : what == 2 ? pi[i].rx_packets : pi[i].tx_packets;

		if (what >= 0)
			l[2] = NULL; /* only pilot_peer_info carries the path */
		pilot_prom_sample(f, name, l, what >= 0 ? (double)v : 1);
	}
}

static void peer_series(node *n, FILE *f)
{
	peer_info *pi;
	size_t cnt;

	if (!n->peers || !(pi = calloc(PEERS_MAX, sizeof(*pi))))
		return;
	cnt = peer_list(n->peers, pi, PEERS_MAX);
	if (cnt > PEERS_MAX)
		cnt = PEERS_MAX;
	pilot_prom_metric(f, "pilot_peers", "gauge", "Peers in the tunnel table.", cnt);
	head(f, "pilot_peer_info", "gauge", "One per peer; path is direct, punched, relay or none.");
	peer_rows(f, pi, cnt, "pilot_peer_info", -1);
	head(f, "pilot_peer_receive_bytes_total", "counter",
	     "Pilot packet bytes (header + payload) received from the peer through the tunnel.");
	peer_rows(f, pi, cnt, "pilot_peer_receive_bytes_total", 0);
	head(f, "pilot_peer_transmit_bytes_total", "counter",
	     "Pilot packet bytes (header + payload) sent to the peer through the tunnel.");
	peer_rows(f, pi, cnt, "pilot_peer_transmit_bytes_total", 1);
	head(f, "pilot_peer_receive_packets_total", "counter", "Pilot packets received from the peer.");
	peer_rows(f, pi, cnt, "pilot_peer_receive_packets_total", 2);
	head(f, "pilot_peer_transmit_packets_total", "counter", "Pilot packets sent to the peer.");
	peer_rows(f, pi, cnt, "pilot_peer_transmit_packets_total", 3);
	free(pi);
}

static void sum_conn(void *arg, const conn_info *ci)
{
	live_sums *s = arg;

	if ((unsigned)ci->state < NSTATES)
		s->states[ci->state]++;
	s->sent += ci->stats.bytes_sent;
	s->rcvd += ci->stats.bytes_rcvd;
	s->retx += ci->stats.retransmits;
	s->fast += ci->stats.fast_retransmits;
	s->rto += ci->stats.rto_timeouts;
}

static void conn_series(node *n, FILE *f)
{
	conn_table_stats cs = { 0 };
	live_sums s = { 0 };

	if (n->conns) {
		conn_get_stats(n->conns, &cs);
		conn_foreach(n->conns, sum_conn, &s);
	}
	head(f, "pilot_connections", "gauge", "Stream connections by state.");
	for (int i = STREAM_SYN_SENT; i < NSTATES; i++) {
		char st[32];
		size_t k;

		for (k = 0; k + 1 < sizeof(st) && stream_state_name(i)[k]; k++)
			st[k] = (char)tolower((unsigned char)stream_state_name(i)[k]);
		st[k] = '\0';
		labelled(f, "pilot_connections", "state", st, (double)s.states[i]);
	}
	pilot_prom_metric(f, "pilot_stream_sent_bytes_total", "counter",
			  "Stream payload bytes sent (first transmissions).", cs.closed_bytes_sent + s.sent);
	pilot_prom_metric(f, "pilot_stream_received_bytes_total", "counter",
			  "Stream payload bytes received in order.", cs.closed_bytes_rcvd + s.rcvd);
	pilot_prom_metric(f, "pilot_stream_retransmits_total", "counter", "Stream segments retransmitted.",
			  cs.closed_retransmits + s.retx);
	pilot_prom_metric(f, "pilot_stream_fast_retransmits_total", "counter", "Fast retransmissions.",
			  cs.closed_fast_retransmits + s.fast);
	pilot_prom_metric(f, "pilot_stream_rto_timeouts_total", "counter", "Retransmission timeouts.",
			  cs.closed_rto_timeouts + s.rto);
	pilot_prom_metric(f, "pilot_stream_syn_accepted_total", "counter", "Incoming connections accepted.",
			  cs.syn_accepted);
	head(f, "pilot_packets_dropped_total", "counter", "Pilot packets dropped by the connection table, by reason.");
	labelled(f, "pilot_packets_dropped_total", "reason", "short", (double)cs.drop_short);
	labelled(f, "pilot_packets_dropped_total", "reason", "bad_crc", (double)cs.drop_bad_crc);
	labelled(f, "pilot_packets_dropped_total", "reason", "spoofed", (double)cs.drop_spoofed);
	labelled(f, "pilot_packets_dropped_total", "reason", "refused", (double)cs.drop_refused);
	labelled(f, "pilot_packets_dropped_total", "reason", "no_listener", (double)cs.drop_no_listener);
	labelled(f, "pilot_packets_dropped_total", "reason", "cap", (double)cs.drop_cap);
	labelled(f, "pilot_packets_dropped_total", "reason", "no_conn", (double)cs.drop_no_conn);
	head(f, "pilot_rate_limit_drops_total", "counter", "Drops by a rate limit, by limit.");
	labelled(f, "pilot_rate_limit_drops_total", "limit", "syn", (double)cs.drop_syn_rate);
	labelled(f, "pilot_rate_limit_drops_total", "limit", "syn_untrusted", (double)cs.drop_syn_untrusted);
	if (n->peers) {
		peer_stats ps;

		peer_get_stats(n->peers, &ps);
		labelled(f, "pilot_rate_limit_drops_total", "limit", "key_exchange", (double)ps.kx_rate_limited);
	}
}

static void tunnel_series(node *n, FILE *f)
{
	peer_stats ps = { 0 };
	trust_stats ts = { 0 };

	if (n->peers)
		peer_get_stats(n->peers, &ps);
	if (n->trust)
		trust_get_stats(n->trust, &ts);
	pilot_prom_metric(f, "pilot_tunnel_received_frames_total", "counter", "Tunnel frames received.",
			  ps.rx_frames);
	pilot_prom_metric(f, "pilot_tunnel_sent_packets_total", "counter", "Packets sent into tunnels.",
			  ps.tx_packets);
	pilot_prom_metric(f, "pilot_tunnel_rekeys_total", "counter", "Tunnel session rekeys.", ps.rekeys);
	pilot_prom_metric(f, "pilot_tunnel_beacon_failovers_total", "counter",
			  "Moves to the next of several -beacon addresses.", ps.beacon_failovers);
	pilot_prom_metric(f, "pilot_tunnel_silent_rekeys_total", "counter",
			  "Fresh key exchanges with peers silent while we send.", ps.silent_rekeys);
	pilot_prom_metric(f, "pilot_tunnel_relay_switches_total", "counter", "Peers moved to the beacon relay.",
			  ps.relay_switches);
	pilot_prom_metric(f, "pilot_tunnel_direct_upgrades_total", "counter",
			  "Relayed peers upgraded to a direct path.", ps.direct_upgrades);
	head(f, "pilot_crypto_failures_total", "counter",
	     "Frames or messages refused by the cryptography, by reason.");
	labelled(f, "pilot_crypto_failures_total", "reason", "auth", (double)ps.drop_auth);
	labelled(f, "pilot_crypto_failures_total", "reason", "replay", (double)ps.drop_replay);
	labelled(f, "pilot_crypto_failures_total", "reason", "no_session", (double)ps.drop_no_session);
	labelled(f, "pilot_crypto_failures_total", "reason", "plaintext", (double)ps.drop_pilt);
	labelled(f, "pilot_crypto_failures_total", "reason", "key_exchange", (double)ps.kx_rejected);
	labelled(f, "pilot_crypto_failures_total", "reason", "trust_signature", (double)ts.refused_signature);
	labelled(f, "pilot_crypto_failures_total", "reason", "trust_replay", (double)ts.refused_replay);
	labelled(f, "pilot_crypto_failures_total", "reason", "trust_key", (double)ts.refused_key);
	labelled(f, "pilot_crypto_failures_total", "reason", "anonymous_refused", (double)ps.kx_pilk_refused);
	pilot_prom_metric(f, "pilot_tunnel_key_changes_total", "counter",
			  "Pinned peer keys replaced after the registry confirmed a rotation.", ps.kx_key_changes);
	head(f, "pilot_tunnel_key_lookups_failed_total", "counter",
	     "Registry key lookups for a key exchange that failed, by outcome.");
	labelled(f, "pilot_tunnel_key_lookups_failed_total", "outcome", "retried", (double)ps.kx_lookup_errors);
	labelled(f, "pilot_tunnel_key_lookups_failed_total", "outcome", "given_up", (double)ps.kx_lookup_failed);
	head(f, "pilot_tunnel_dropped_total", "counter", "Tunnel frames dropped before decryption, by reason.");
	labelled(f, "pilot_tunnel_dropped_total", "reason", "malformed", (double)ps.drop_malformed);
	labelled(f, "pilot_tunnel_dropped_total", "reason", "bad_crc", (double)ps.drop_bad_crc);
	labelled(f, "pilot_tunnel_dropped_total", "reason", "unknown_magic", (double)ps.drop_unknown_magic);
	labelled(f, "pilot_tunnel_dropped_total", "reason", "spoofed_src", (double)ps.drop_spoofed_src);
	labelled(f, "pilot_tunnel_dropped_total", "reason", "not_beacon", (double)ps.drop_not_beacon);
}

static uint64_t jint(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

static void tun_series(node *n, FILE *f)
{
	json_object *t = node_tun_info_json(n);

	pilot_prom_metric(f, "pilot_tun_up", "gauge", "1 when the TUN device exists.", n->tun != NULL);
	pilot_prom_metric(f, "pilot_tun_flows", "gauge", "TCP flows bridged through the TUN now.",
			  jint(t, "flows_active"));
	head(f, "pilot_tun_flows_opened_total", "counter", "Flows opened through the TUN, by protocol and direction.");
	pilot_prom_sample(f, "pilot_tun_flows_opened_total",
			  (const char *[]){ "proto", "tcp", "direction", "outbound", NULL }, (double)jint(t, "tcp_outbound"));
	pilot_prom_sample(f, "pilot_tun_flows_opened_total",
			  (const char *[]){ "proto", "tcp", "direction", "inbound", NULL }, (double)jint(t, "tcp_inbound"));
	head(f, "pilot_tun_datagrams_total", "counter", "UDP datagrams bridged, by direction.");
	labelled(f, "pilot_tun_datagrams_total", "direction", "outbound", (double)jint(t, "udp_out"));
	labelled(f, "pilot_tun_datagrams_total", "direction", "inbound", (double)jint(t, "udp_in"));
	pilot_prom_metric(f, "pilot_tun_malformed_total", "counter", "Malformed IP packets read from the TUN.",
			  jint(t, "malformed"));
	pilot_prom_metric(f, "pilot_tun_mapped_addresses", "gauge", "Entries in the IP <-> address map.",
			  jint(t, "mapped"));
	pilot_prom_metric(f, "pilot_dns_queries_total", "counter", "DNS queries received by the .pilot responder.",
			  jint(t, "dns_queries"));
	head(f, "pilot_dns_refused_total", "counter", "DNS queries not answered, by reason.");
	labelled(f, "pilot_dns_refused_total", "reason", "not_tun", (double)jint(t, "dns_not_tun"));
	labelled(f, "pilot_dns_refused_total", "reason", "rate_limited", (double)jint(t, "dns_rate_limited"));
	pilot_prom_metric(f, "pilot_dns_registry_lookups_total", "counter",
			  "Registry lookups made for DNS queries.", jint(t, "dns_lookups"));
	head(f, "pilot_dns_cache_hits_total", "counter", "DNS answers served from the cache, by kind.");
	labelled(f, "pilot_dns_cache_hits_total", "kind", "found", (double)jint(t, "dns_cache_hits"));
	labelled(f, "pilot_dns_cache_hits_total", "kind", "negative", (double)jint(t, "dns_neg_cache_hits"));
	json_object_put(t);
}

/* What the process holds (pilotd(8) MEMORY), as pilotctl info's "memory". */
static void memory_series(FILE *f)
{
	pilot_mem_stats ms;

	pilot_mem_stats_get(&ms);
	pilot_prom_metric(f, "pilot_memory_rss_bytes", "gauge", "Resident set size.", ms.rss);
	pilot_prom_metric(f, "pilot_memory_heap_in_use_bytes", "gauge",
			  "Heap bytes in live allocations (malloc, not mmapped).", ms.heap_in_use);
	pilot_prom_metric(f, "pilot_memory_heap_free_bytes", "gauge",
			  "Heap bytes freed but kept by the allocator.", ms.heap_free);
	pilot_prom_metric(f, "pilot_memory_mmapped_bytes", "gauge", "Bytes in mmapped allocations.",
			  ms.mmapped);
	pilot_prom_metric(f, "pilot_memory_stream_buffer_bytes", "gauge",
			  "Bytes of stream send/receive buffers and their bookkeeping.", stream_mem_in_use());
}

/* Data exchange refusals (issue 12 §5), as pilotctl info's dx_*_refused. */
static void dx_series(node *n, FILE *f)
{
	dx_server_stats ds = { 0 };

	if (n->svc && n->svc->dx)
		dx_server_get_stats(n->svc->dx, &ds);
	head(f, "pilot_dataexchange_refused_total", "counter", "Data exchange frames refused by a disk limit, by limit.");
	labelled(f, "pilot_dataexchange_refused_total", "limit", "quota", (double)ds.quota_refused);
	labelled(f, "pilot_dataexchange_refused_total", "limit", "peer_quota", (double)ds.peer_quota_refused);
	labelled(f, "pilot_dataexchange_refused_total", "limit", "min_free", (double)ds.min_free_refused);
}

void node_metrics_write(node *n, FILE *f)
{
	node_series(n, f);
	registry_series(n, f);
	peer_series(n, f);
	conn_series(n, f);
	tunnel_series(n, f);
	tun_series(n, f);
	dx_series(n, f);
	memory_series(f);
}

static void scrape(FILE *f, void *arg)
{
	node_metrics_write(arg, f);
}

void node_metrics_start(node *n)
{
	pilot_httpd_config hc = { .addr = n->o.metrics, .metrics = scrape, .arg = n };
	char err[512];

	if (!n->o.metrics || !n->o.metrics[0])
		return;
	if (!(n->metrics = pilot_httpd_new(n->loop, &hc, err, sizeof(err))))
		pilot_fatal("-metrics: %s", err);
	log_info("metrics listening addr=%s path=/metrics", pilot_httpd_addr(n->metrics));
}

void node_metrics_free(node *n)
{
	pilot_httpd_free(n->metrics);
	n->metrics = NULL;
}
