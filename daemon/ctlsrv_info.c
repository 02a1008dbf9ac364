/* Control verbs: info (cli.md §10.3 plus our counters), peers, connections,
 * disconnect. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stream/conn.h"
#include "daemon/ctlsrv_args.h"
#include "daemon/ctlsrv_op.h"
#include "daemon/ctlsrv_verbs.h"
#include "daemon/ctlsrv.h"
#include "daemon/dataxchg.h"
#include "daemon/node.h"
#include "daemon/peer.h"
#include "daemon/registration.h"
#include "daemon/transport.h"
#include "daemon/trust.h"
#include "lib/addr.h"
#include "lib/jsonwire.h"
#include "lib/memstat.h"

#define PEERS_MAX 4096

/* ---- peers ---- */
static json_object *peer_json(const node *n, const peer_info *pi)
{
	json_object *o = json_object_new_object();
	char addr[PILOT_ADDR_STRLEN];
	uint64_t now = pilot_loop_now_ms(n->loop);

	jw_set_int(o, "node_id", pi->node);
	jw_set_str(o, "address", pilot_addr_format(pilot_addr_make(0, pi->node), addr));
	jw_set_str(o, "endpoint", pi->endpoint);
	jw_set_str(o, "path", peer_path_name(pi->path));
	jw_set_str(o, "path_reason", pi->why);
	jw_set_bool(o, "encrypted", pi->encrypted);
	jw_set_bool(o, "authenticated", pi->authenticated);
	jw_set_bool(o, "identity", pi->identity);
	jw_set_str(o, "kdf", pi->kdf == PILOT_KDF_NEW ? "new" : "ref");
	jw_set_int(o, "last_rx_ms", pi->last_rx_ms ? (int64_t)(now - pi->last_rx_ms) : -1);
	jw_set_int(o, "last_tx_ms", pi->last_tx_ms ? (int64_t)(now - pi->last_tx_ms) : -1);
	jw_set_int(o, "rx_packets", (int64_t)pi->rx_packets);
	jw_set_int(o, "tx_packets", (int64_t)pi->tx_packets);
	jw_set_bool(o, "trusted", n->trust && trust_is_trusted(n->trust, pi->node));
	return o;
}

/* Peers matching search (node ID digits or endpoint substring; NULL = all). */
static json_object *peer_list_json(const node *n, const char *search, size_t *enc, size_t *auth)
{
	json_object *arr = json_object_new_array();
	peer_info *pi;
	size_t cnt, i;
	char id[16];

	*enc = *auth = 0;
	if (!n->peers || !(pi = calloc(PEERS_MAX, sizeof(*pi))))
		return arr;
	cnt = peer_list(n->peers, pi, PEERS_MAX);
	for (i = 0; i < cnt && i < PEERS_MAX; i++) {
		*enc += pi[i].encrypted;
		*auth += pi[i].authenticated;
		snprintf(id, sizeof(id), "%u", pi[i].node);
		if (search && *search && !strstr(id, search) && !strstr(pi[i].endpoint, search))
			continue;
		json_object_array_add(arr, peer_json(n, &pi[i]));
	}
	free(pi);
	return arr;
}

void verb_peers(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	json_object *s = NULL, *data = json_object_new_object(), *arr;
	size_t enc, auth;

	json_object_object_get_ex(args, "search", &s);
	arr = peer_list_json(n, s ? json_object_get_string(s) : NULL, &enc, &auth);
	jw_set_int(data, "total", (int64_t)json_object_array_length(arr));
	json_object_object_add(data, "peers", arr);
	ctlsrv_reply_ok(r, data);
}

/* ---- connections ---- */
static void conn_json(void *arg, const conn_info *ci)
{
	json_object *arr = arg, *o = json_object_new_object();
	char addr[PILOT_ADDR_STRLEN];
	const stream_stats *s = &ci->stats;

	jw_set_int(o, "id", ci->id);
	jw_set_int(o, "local_port", ci->local_port);
	jw_set_str(o, "remote_addr", pilot_addr_format(ci->remote, addr));
	jw_set_int(o, "remote_port", ci->remote_port);
	jw_set_str(o, "state", stream_state_name(ci->state));
	jw_set_bool(o, "dialed", ci->dialed);
	jw_set_int(o, "cong_win", (int64_t)s->cwnd);
	jw_set_int(o, "ssthresh", (int64_t)s->ssthresh);
	jw_set_int(o, "in_flight", (int64_t)s->in_flight);
	jw_set_num(o, "srtt_ms", s->srtt_us / 1000.0);
	jw_set_num(o, "rttvar_ms", s->rttvar_us / 1000.0);
	jw_set_int(o, "unacked", (int64_t)s->snd_buffered);
	jw_set_int(o, "ooo_buf", s->ooo_intervals);
	jw_set_int(o, "peer_recv_win", (int64_t)s->peer_window);
	jw_set_int(o, "recv_win", (int64_t)s->our_window * STREAM_WINDOW_UNIT);
	jw_set_int(o, "mss", s->mss);
	jw_set_bool(o, "in_recovery", s->recovery != STREAM_RECOV_OPEN);
	jw_set_str(o, "recovery",
		   s->recovery == STREAM_RECOV_FAST          ? "fast"
			   : s->recovery == STREAM_RECOV_RTO ? "rto"
							     : "open");
	jw_set_num(o, "min_rtt_ms", s->min_rtt_us / 1000.0);
	jw_set_num(o, "rto_ms", s->rto_us / 1000.0);
	jw_set_int(o, "bytes_sent", (int64_t)s->bytes_sent);
	jw_set_int(o, "bytes_recv", (int64_t)s->bytes_rcvd);
	jw_set_int(o, "segs_sent", (int64_t)s->segs_sent);
	jw_set_int(o, "segs_recv", (int64_t)s->segs_rcvd);
	jw_set_int(o, "retransmits", (int64_t)s->retransmits);
	jw_set_int(o, "fast_retx", (int64_t)s->fast_retransmits);
	jw_set_int(o, "rto_timeouts", (int64_t)s->rto_timeouts);
	jw_set_int(o, "tlp_probes", (int64_t)s->tlp_probes);
	jw_set_int(o, "tlp_recoveries", (int64_t)s->tlp_recoveries);
	jw_set_int(o, "reo_timeouts", (int64_t)s->reo_timeouts);
	jw_set_int(o, "sack_recv", (int64_t)s->sack_blocks_rcvd);
	jw_set_int(o, "sack_sent", (int64_t)s->sack_blocks_sent);
	jw_set_int(o, "dup_acks", (int64_t)s->dup_acks);
	jw_set_int(o, "zwp_sent", (int64_t)s->zwp_sent);
	json_object_array_add(arr, o);
}

static json_object *conn_list_json(node *n)
{
	json_object *arr = json_object_new_array();

	if (n->conns)
		conn_foreach(n->conns, conn_json, arr);
	return arr;
}

void verb_connections(ctlsrv_reply *r, json_object *args, void *arg)
{
	json_object *data = json_object_new_object(), *arr = conn_list_json(arg);

	jw_set_int(data, "total", (int64_t)json_object_array_length(arr));
	json_object_object_add(data, "connections", arr);
	ctlsrv_reply_ok(r, data);
}

void verb_disconnect(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	json_object *v = NULL;
	int64_t id;
	conn *c;
	char msg[80];

	if (!json_object_object_get_ex(args, "conn_id", &v) || !json_object_is_type(v, json_type_int)
	    || (id = json_object_get_int64(v)) < 0 || id > UINT32_MAX) {
		ctlsrv_reply_err(r, "invalid_argument", "conn_id must be a connection id", NULL);
		return;
	}
	if (!n->conns || !(c = conn_lookup_id(n->conns, (uint32_t)id))) {
		snprintf(msg, sizeof(msg), "no connection %lld", (long long)id);
		ctlsrv_reply_err(r, "not_found", msg, "list them with: pilotctl connections");
		return;
	}
	conn_reset(c);
	v = json_object_new_object();
	jw_set_int(v, "conn_id", id);
	ctlsrv_reply_ok(r, v);
}

/* ---- info ---- */
static int active_conn(const conn_info *ci)
{
	return ci->state == STREAM_SYN_SENT || ci->state == STREAM_SYN_RECV
	       || ci->state == STREAM_ESTABLISHED;
}

static void count_conn(void *arg, const conn_info *ci)
{
	int64_t *cnt = arg;

	cnt[0] += active_conn(ci);
}

/* Data exchange refusals (issue 12 §5): what a hostile peer tried to store. */
static void add_dx_counters(node *n, json_object *o)
{
	dx_server_stats ds = { 0 };

	if (n->svc && n->svc->dx)
		dx_server_get_stats(n->svc->dx, &ds);
	jw_set_int(o, "dx_quota_refused", (int64_t)ds.quota_refused);
	jw_set_int(o, "dx_peer_quota_refused", (int64_t)ds.peer_quota_refused);
	jw_set_int(o, "dx_min_free_refused", (int64_t)ds.min_free_refused);
}

static json_object *counters_json(node *n)
{
	json_object *o = json_object_new_object();
	peer_stats ps = { 0 };
	conn_table_stats cs = { 0 };
	trust_stats ts = { 0 };
	ctlsrv_stats ks = { 0 };

	if (n->peers)
		peer_get_stats(n->peers, &ps);
	if (n->conns)
		conn_get_stats(n->conns, &cs);
	if (n->trust)
		trust_get_stats(n->trust, &ts);
	if (n->ctlsrv)
		ctlsrv_get_stats(n->ctlsrv, &ks);
	jw_set_int(o, "tunnel_rx_frames", (int64_t)ps.rx_frames);
	jw_set_int(o, "tunnel_drop_malformed", (int64_t)ps.drop_malformed);
	jw_set_int(o, "tunnel_drop_bad_crc", (int64_t)ps.drop_bad_crc);
	jw_set_int(o, "tunnel_drop_replay", (int64_t)ps.drop_replay);
	jw_set_int(o, "tunnel_drop_auth", (int64_t)ps.drop_auth);
	jw_set_int(o, "tunnel_drop_no_session", (int64_t)ps.drop_no_session);
	jw_set_int(o, "tunnel_drop_unknown_magic", (int64_t)ps.drop_unknown_magic);
	jw_set_int(o, "tunnel_drop_plaintext", (int64_t)ps.drop_pilt);
	jw_set_int(o, "tunnel_drop_spoofed_src", (int64_t)ps.drop_spoofed_src);
	jw_set_int(o, "tunnel_drop_not_beacon", (int64_t)ps.drop_not_beacon);
	jw_set_int(o, "beacon_notifies", (int64_t)ps.beacon_notifies);
	jw_set_int(o, "notify_polls", (int64_t)n->st.notify_polls);
	jw_set_int(o, "tunnel_kx_rejected", (int64_t)ps.kx_rejected);
	jw_set_int(o, "tunnel_kx_stale", (int64_t)ps.kx_stale);
	jw_set_int(o, "tunnel_kx_rate_limited", (int64_t)ps.kx_rate_limited);
	jw_set_int(o, "tunnel_kx_pilk_refused", (int64_t)ps.kx_pilk_refused);
	jw_set_int(o, "tunnel_kx_key_changes", (int64_t)ps.kx_key_changes);
	jw_set_int(o, "tunnel_kx_lookup_errors", (int64_t)ps.kx_lookup_errors);
	jw_set_int(o, "tunnel_kx_lookup_failed", (int64_t)ps.kx_lookup_failed);
	jw_set_int(o, "tunnel_kx_early", (int64_t)ps.kx_early);
	jw_set_int(o, "tunnel_kx_dup_waiting", (int64_t)ps.kx_dup_waiting);
	jw_set_int(o, "tunnel_pils_held", (int64_t)ps.pils_held);
	jw_set_int(o, "refused_anonymous", (int64_t)n->st.refused_anon);
	jw_set_int(o, "tunnel_rekeys", (int64_t)ps.rekeys);
	jw_set_int(o, "tunnel_silent_rekeys", (int64_t)ps.silent_rekeys);
	jw_set_int(o, "tunnel_relay_switches", (int64_t)ps.relay_switches);
	jw_set_int(o, "tunnel_direct_upgrades", (int64_t)ps.direct_upgrades);
	jw_set_int(o, "tunnel_punches", (int64_t)ps.punches);
	jw_set_int(o, "underlay_moves", (int64_t)ps.migrations);
	jw_set_int(o, "endpoint_updates", (int64_t)n->st.endpoint_updates);
	jw_set_int(o, "pkt_drop_short", (int64_t)cs.drop_short);
	jw_set_int(o, "pkt_drop_bad_crc", (int64_t)cs.drop_bad_crc);
	jw_set_int(o, "pkt_drop_spoofed", (int64_t)cs.drop_spoofed);
	jw_set_int(o, "pkt_drop_refused", (int64_t)cs.drop_refused);
	jw_set_int(o, "pkt_drop_syn_rate", (int64_t)cs.drop_syn_rate);
	jw_set_int(o, "pkt_drop_syn_untrusted", (int64_t)cs.drop_syn_untrusted);
	jw_set_int(o, "pkt_drop_no_listener", (int64_t)cs.drop_no_listener);
	jw_set_int(o, "pings_answered", (int64_t)cs.pings_answered);
	jw_set_int(o, "handshake_msgs", (int64_t)n->st.hs_msgs);
	jw_set_int(o, "handshake_refused", (int64_t)n->st.hs_bad);
	jw_set_int(o, "trust_refused_signature", (int64_t)ts.refused_signature);
	jw_set_int(o, "trust_refused_replay", (int64_t)ts.refused_replay);
	jw_set_int(o, "trust_refused_key", (int64_t)ts.refused_key);
	jw_set_int(o, "trust_pinned_keys", (int64_t)(n->trust ? trust_count_keys(n->trust) : 0));
	add_dx_counters(n, o);
	jw_set_int(o, "ctl_bad_frames", (int64_t)ks.bad_frames);
	jw_set_int(o, "ctl_bad_requests", (int64_t)ks.bad_requests);
	return o;
}

static void add_tunnel_totals(node *n, json_object *o)
{
	transport_stats ts = { 0 };

	if (n->t)
		transport_get_stats(n->t, &ts);
	jw_set_int(o, "bytes_sent", (int64_t)ts.tx_bytes);
	jw_set_int(o, "bytes_recv", (int64_t)ts.rx_bytes);
	jw_set_int(o, "pkts_sent", (int64_t)ts.tx_dgrams);
	jw_set_int(o, "pkts_recv", (int64_t)ts.rx_dgrams);
	jw_set_int(o, "recv_gro_runs", (int64_t)ts.rx_gro_runs);
}

static void add_registry(node *n, json_object *o)
{
	peer_stats ps = { 0 };

	jw_set_bool(o, "registered", n->reg && registration_registered(n->reg));
	if (n->peers)
		peer_get_stats(n->peers, &ps);
	/* The one in use (several configured: failover, issue 18), and the list. */
	jw_set_str(o, "registry", n->reg ? regclient_addr(registration_client(n->reg)) : n->o.registry);
	jw_set_str(o, "registries", n->o.registry);
	jw_set_str(o, "beacon", n->peers && ps.beacon[0] ? ps.beacon : n->o.beacon);
	jw_set_str(o, "beacons", n->o.beacon);
	jw_set_str(o, "listen_addr", n->endpoint);
	jw_set_str(o, "public_endpoint", ps.have_public_ep ? ps.public_ep : "");
	jw_set_bool(o, "public", n->o.public_node);
}

static uint64_t listeners(node *n)
{
	conn_table_stats cs = { 0 };

	if (n->conns)
		conn_get_stats(n->conns, &cs);
	return cs.listeners;
}

/* What the process holds, to tell live data from what the allocator keeps. */
static json_object *memory_json(void)
{
	json_object *o = json_object_new_object();
	pilot_mem_stats ms;

	pilot_mem_stats_get(&ms);
	jw_set_int(o, "rss_bytes", (int64_t)ms.rss);
	jw_set_int(o, "heap_in_use_bytes", (int64_t)ms.heap_in_use);
	jw_set_int(o, "heap_free_bytes", (int64_t)ms.heap_free);
	jw_set_int(o, "mmapped_bytes", (int64_t)ms.mmapped);
	jw_set_int(o, "stream_buffer_bytes", (int64_t)stream_mem_in_use());
	return o;
}

void verb_info(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	json_object *o = json_object_new_object(), *peers;
	char addr[PILOT_ADDR_STRLEN], fpr[TRUST_FPR_LEN];
	int64_t conns = 0;
	size_t enc, auth;

	peers = peer_list_json(n, NULL, &enc, &auth);
	if (n->conns)
		conn_foreach(n->conns, count_conn, &conns);
	jw_set_int(o, "node_id", n->node_id);
	jw_set_str(o, "address", n->node_id ? pilot_addr_format(pilot_addr_make(0, n->node_id), addr) : "");
	jw_set_str(o, "hostname", n->hostname);
	jw_set_num(o, "uptime_secs", (pilot_now_ms() - n->start_ms) / 1000.0);
	jw_set_int(o, "connections", conns);
	jw_set_int(o, "ports", (int64_t)listeners(n));
	jw_set_int(o, "peers", (int64_t)json_object_array_length(peers));
	jw_set_int(o, "encrypted_peers", (int64_t)enc);
	jw_set_int(o, "authenticated_peers", (int64_t)auth);
	jw_set_bool(o, "encrypt", n->o.encrypt);
	jw_set_bool(o, "identity", n->have_identity_path);
	jw_set_str(o, "public_key", n->pk_b64);
	trust_key_fingerprint(n->id.pk, fpr);
	jw_set_str(o, "key_fingerprint", fpr);
	jw_set_str(o, "owner", n->o.owner);
	jw_set_str(o, "nameserver", n->o.nameserver);
	add_tunnel_totals(n, o);
	json_object_object_add(o, "peer_list", peers);
	json_object_object_add(o, "conn_list", conn_list_json(n));
	jw_set_int(o, "pid", getpid());
	jw_set_int(o, "trusted", n->trust ? (int64_t)trust_count_trusted(n->trust) : 0);
	jw_set_int(o, "pending", n->trust ? (int64_t)trust_count_pending(n->trust) : 0);
	add_registry(n, o);
	node_compat_info(n, o);
	json_object_object_add(o, "tun", node_tun_info_json(n));
	json_object_object_add(o, "counters", counters_json(n));
	json_object_object_add(o, "memory", memory_json());
	ctlsrv_reply_ok(r, o);
}
