/* Control verb "status": what pilotctl status puts on one screen (node,
 * registry and beacon reachability, the path to each peer, trust requests
 * waiting), gathered in one round trip. The full counters stay in "info". */
#include <stdlib.h>
#include <string.h>

#include "daemon/ctlsrv_verbs.h"
#include "daemon/ctlsrv.h"
#include "daemon/node.h"
#include "daemon/peer.h"
#include "daemon/regclient.h"
#include "daemon/registration.h"
#include "daemon/trust.h"
#include "lib/addr.h"
#include "lib/jsonwire.h"

#define STATUS_PEERS_MAX 4096

static json_object *registry_json(node *n)
{
	json_object *o = json_object_new_object();
	regclient *rc = n->reg ? registration_client(n->reg) : NULL;
	regclient_stats st = { 0 };
	uint64_t replies = 0;

	if (rc)
		regclient_get_stats(rc, &st);
	for (int i = 0; i <= REGCLIENT_RTT_NB; i++)
		replies += st.rtt_le[i];
	jw_set_str(o, "address", rc ? regclient_addr(rc) : n->o.registry); /* in use */
	jw_set_str(o, "configured", n->o.registry);
	jw_set_int(o, "failovers", (int64_t)st.failovers);
	jw_set_bool(o, "connected", st.connected);
	jw_set_bool(o, "registered", n->reg && registration_registered(n->reg));
	jw_set_bool(o, "tls", n->o.registry_tls);
	jw_set_int(o, "timeouts", (int64_t)st.timeouts);
	jw_set_int(o, "requests", (int64_t)st.sent);
	jw_set_int(o, "malformed_replies", (int64_t)st.malformed);
	json_object_object_add(o, "mean_rtt_ms",
			       json_object_new_double(replies ? st.rtt_sum_us / 1000.0 / replies : 0));
	return o;
}

static json_object *beacon_json(node *n)
{
	json_object *o = json_object_new_object();
	peer_stats ps = { 0 };

	if (n->peers)
		peer_get_stats(n->peers, &ps);
	jw_set_str(o, "address", ps.beacon[0] ? ps.beacon : n->o.beacon); /* in use */
	jw_set_str(o, "configured", n->o.beacon);
	jw_set_int(o, "failovers", (int64_t)ps.beacon_failovers);
	/* A DiscoverReply told us our public endpoint: the beacon answers. */
	jw_set_bool(o, "reachable", ps.have_public_ep || n->st.discover_replies > 0);
	jw_set_str(o, "public_endpoint", ps.have_public_ep ? ps.public_ep : "");
	return o;
}

static json_object *peers_json(node *n)
{
	json_object *arr = json_object_new_array();
	char addr[PILOT_ADDR_STRLEN];
	uint64_t now = pilot_loop_now_ms(n->loop);
	peer_info *pi;
	size_t cnt;

	if (!n->peers || !(pi = calloc(STATUS_PEERS_MAX, sizeof(*pi))))
		return arr;
	cnt = peer_list(n->peers, pi, STATUS_PEERS_MAX);
	for (size_t i = 0; i < cnt && i < STATUS_PEERS_MAX; i++) {
		json_object *o = json_object_new_object();

		jw_set_int(o, "node_id", pi[i].node);
		jw_set_str(o, "address", pilot_addr_format(pilot_addr_make(0, pi[i].node), addr));
		jw_set_str(o, "path", peer_path_name(pi[i].path));
		jw_set_str(o, "endpoint", pi[i].endpoint);
		jw_set_bool(o, "encrypted", pi[i].encrypted);
		jw_set_bool(o, "trusted", n->trust && trust_is_trusted(n->trust, pi[i].node));
		jw_set_int(o, "last_rx_ms", pi[i].last_rx_ms ? (int64_t)(now - pi[i].last_rx_ms) : -1);
		jw_set_int(o, "rx_bytes", (int64_t)pi[i].rx_bytes);
		jw_set_int(o, "tx_bytes", (int64_t)pi[i].tx_bytes);
		json_object_array_add(arr, o);
	}
	free(pi);
	return arr;
}

void verb_status(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	json_object *o = json_object_new_object(), *tun = node_tun_info_json(n), *v;
	char addr[PILOT_ADDR_STRLEN];

	jw_set_int(o, "node_id", n->node_id);
	jw_set_str(o, "address", n->node_id ? pilot_addr_format(pilot_addr_make(0, n->node_id), addr) : "");
	jw_set_str(o, "hostname", n->hostname);
	jw_set_int(o, "uptime_secs", (int64_t)((pilot_now_ms() - n->start_ms) / 1000));
	node_compat_info(n, o); /* transport, transport_reason (+ beacon in compat mode) */
	json_object_object_add(o, "registry", registry_json(n));
	json_object_object_add(o, "beacon", beacon_json(n));
	jw_set_str(o, "tun_device",
		   json_object_object_get_ex(tun, "device", &v) ? json_object_get_string(v) : "off");
	jw_set_str(o, "tun_ipv4",
		   json_object_object_get_ex(tun, "ipv4", &v) ? json_object_get_string(v) : "");
	json_object_put(tun);
	json_object_object_add(o, "peers", peers_json(n));
	json_object_object_add(o, "pending", n->trust ? trust_pending_json(n->trust) : json_object_new_array());
	ctlsrv_reply_ok(r, o);
}
