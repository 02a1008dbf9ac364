/* Path selection (tunnel.md §10), hole punching and the beacon client (§9.2).
 * Unlike the reference, relay is not sticky: relay peers are probed directly every
 * relay_probe_ms and go back to a direct path after PEER_UPGRADE_FRAMES
 * authenticated direct frames (not counting the peer's own probes); a direct
 * peer that falls silent is re-validated, and left for the relay when it does
 * not answer directly within direct_timeout_ms (also after a silent re-key). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon/peer_internal.h"
#include "lib/log.h"

#define DEF(v, d) ((v) ? (v) : (d))

static uint64_t cfg_ms(uint32_t v, uint32_t d) { return DEF(v, d); }

void peer_set_path(peer_table *pt, peer *p, enum peer_path path, const char *why)
{
	uint64_t now = peer_now(pt);

	/* -test-ref-peer: the reference marks a peer relay on any relayed frame or
	 * dial timeout and never clears it (tunnel.go handleRelayDeliver,
	 * SetRelayPeer): relay for the table's lifetime, no direct probe. */
	if (pt->cfg.ref_quirks && path == PEER_PATH_RELAY)
		p->ref_relay = true;
	if (p->ref_relay && path != PEER_PATH_RELAY)
		return;
	if (path == PEER_PATH_RELAY && p->path != PEER_PATH_RELAY) {
		pt->st.relay_switches++;
		p->next_probe_ms = now + cfg_ms(pt->cfg.relay_probe_ms, 15000);
		p->direct_count = 0;
		peer_emit(pt, PEER_EV_RELAY, p->node, &(peer_event_info){ .relay = true });
	}
	if (p->path == PEER_PATH_RELAY && path != PEER_PATH_RELAY)
		pt->st.direct_upgrades++;
	if (p->path != path)
		log_debug("peer path node=%u path=%s why=\"%s\"", p->node, peer_path_name(path), why);
	p->path = path;
	p->why = why;
}

/* ---- punch requests: queued, spaced punch_gap_ms apart ----
 * Beacons grant a requester only so many PunchRequests per second (the reference
 * and older pilot beacons: one), and all relay peers of a node come due for their
 * relay probe in the same tick when they went relay together: sent at once,
 * every request after the first would be refused, every cycle. */

static void send_punch_request(peer_table *pt, peer *p, uint64_t now)
{
	uint8_t msg[16];
	int n = proto_beacon_punch_request(pt->cfg.node, p->node, msg, sizeof(msg));

	if (n > 0)
		peer_send_frame_direct(pt, &pt->beacon, msg, (size_t)n);
	p->punch_req_ms = now;
	pt->st.punch_requests++;
}

void peer_punch_drain(peer_table *pt, uint64_t now)
{
	while (pt->punchq_n && now >= pt->punch_next_ms) {
		uint32_t node = pt->punchq[pt->punchq_head];
		peer *p = peer_find(pt, node);

		pt->punchq_head = (pt->punchq_head + 1) % PEER_PUNCHQ;
		pt->punchq_n--;
		if (!p || !p->punch_queued)
			continue; /* forgotten meanwhile (or a stale entry of a re-created peer) */
		p->punch_queued = false;
		if (p->direct_ok_ms > p->punch_queued_ms)
			continue; /* a direct path answered while it waited: no punch needed */
		send_punch_request(pt, p, now);
		pt->punch_next_ms = now + cfg_ms(pt->cfg.punch_gap_ms, 1100);
	}
}

void peer_punch_request(peer_table *pt, peer *p)
{
	uint64_t now = peer_now(pt);

	if (!pt->has_beacon || p->punch_queued || p->relay_pinned)
		return;
	if (pt->punchq_n == PEER_PUNCHQ) {
		pt->st.punch_queue_full++; /* the next relay probe asks again */
		return;
	}
	pt->punchq[(pt->punchq_head + pt->punchq_n++) % PEER_PUNCHQ] = p->node;
	p->punch_queued = true;
	p->punch_queued_ms = now;
	peer_punch_drain(pt, now);
}

void peer_direct_attempt(peer_table *pt, peer *p)
{
	uint64_t now = peer_now(pt);

	p->direct_since_ms = now;
	p->direct_deadline_ms = pt->has_beacon ? now + cfg_ms(pt->cfg.direct_timeout_ms, 1500) : 0;
}

void peer_start_contact(peer_table *pt, peer *p)
{
	if (p->path == PEER_PATH_NONE) {
		peer_start_resolve(pt, p);
		peer_prefetch_key(pt, p);
		return;
	}
	if (pt->cfg.encrypt && !p->sess && !p->kx_tries) {
		peer_send_kx(pt, p, PEER_VIA_PATH);
		peer_kx_arm(pt, p);
	}
}

/* Relay peer: try its endpoint directly (an authenticated probe, or our key
 * exchange while there is no session) and ask the beacon for a punch. */
static void relay_direct_attempt(peer_table *pt, peer *p)
{
	p->direct_count = 0;
	peer_punch_request(pt, p);
	if (!p->has_ep)
		return;
	if (p->sess || !pt->cfg.encrypt)
		for (int i = 0; i < PEER_UPGRADE_FRAMES; i++)
			peer_send_probe(pt, p, PEER_VIA_DIRECT);
	else
		peer_send_kx(pt, p, PEER_VIA_DIRECT);
}

/* First contact: try direct and ask the beacon to coordinate a punch; the relay
 * only after direct_timeout_ms without an answer (direct_deadline). Later answers
 * (re-resolves of relay peers) refresh the endpoint of a relay peer and try it
 * at once when it is new. relay_only (the registry's word for a compat node,
 * whose endpoint cannot answer): the relay at once and pinned, no punch, no
 * direct attempt, until a later resolve says otherwise. */
void peer_resolved(peer_table *pt, peer *p, const transport_ep *ep, bool relay_only)
{
	bool fresh = false, first = p->path == PEER_PATH_NONE;

	if (relay_only && pt->has_beacon) {
		p->relay_pinned = true;
		p->direct_deadline_ms = 0;
		peer_set_path(pt, p, PEER_PATH_RELAY, "registry: relay_only");
		if (!first)
			return;
		if (!pt->cfg.encrypt || p->sess) {
			peer_pending_flush(pt, p);
		} else {
			peer_send_kx(pt, p, PEER_VIA_PATH);
			peer_kx_arm(pt, p);
		}
		return;
	}
	p->relay_pinned = false;
	if (ep && !(pt->has_beacon && transport_ep_eq(ep, &pt->beacon))) {
		p->reg_ep = *ep;
		p->has_reg_ep = true;
		/* never replace an endpoint that authenticated frames proved */
		if (!p->has_ep || p->path == PEER_PATH_NONE || p->path == PEER_PATH_RELAY ||
		    !p->direct_ok_ms) {
			fresh = !p->has_ep || !transport_ep_eq(&p->ep, ep);
			p->ep = *ep;
			p->has_ep = true;
		}
	}
	if (p->path == PEER_PATH_RELAY && fresh && !p->ref_relay) {
		relay_direct_attempt(pt, p);
		return;
	}
	if (p->path != PEER_PATH_NONE)
		return; /* already reached us (e.g. via relay); probes use the endpoint */
	if (!ep && p->refused_ms && !p->has_ep) {
		/* A private node that does not trust us (yet): nothing it would accept
		 * but the trust handshake, which then goes through the registry; and a
		 * reference peer pins a node it hears through the relay to the relay
		 * for good. So no relayed first contact: once trust exists, the resolve
		 * works and the contact starts direct (issue 15). */
		log_debug("peer node=%u: resolve refused, no tunnel before trust", p->node);
		pt->st.drop_no_route += p->npend;
		peer_pending_drop(pt, p);
		if (pt->cfg.unreachable)
			pt->cfg.unreachable(pt->cfg.ctx, p->node);
		return;
	}
	if (p->has_ep) {
		peer_set_path(pt, p, PEER_PATH_DIRECT, "resolved");
		peer_direct_attempt(pt, p);
		peer_punch_request(pt, p);
	} else if (pt->has_beacon) {
		peer_set_path(pt, p, PEER_PATH_RELAY, "resolve failed");
	} else {
		pt->st.drop_no_route += p->npend;
		peer_pending_drop(pt, p);
		return;
	}
	if (!pt->cfg.encrypt || p->sess) {
		peer_pending_flush(pt, p);
		return;
	}
	/* Direct only: a reference daemon that receives anything through the relay
	 * pins the sender to the relay for its lifetime (tunnel.md §10 ref 3), so a
	 * relayed copy here would route all its traffic to us through the beacon even
	 * on a LAN. No direct answer within direct_timeout_ms: direct_deadline()
	 * switches to the relay and sends the key exchange there. */
	peer_send_kx(pt, p, PEER_VIA_PATH);
	peer_kx_arm(pt, p);
}

/* First contact through the relay: relay, and ask the registry now (not at the
 * first relay probe) for the endpoint, so a relay_only (compat) node is pinned
 * before we punch for it and any other node gets its direct attempt early. */
void peer_relay_first_contact(peer_table *pt, peer *p, const char *why)
{
	peer_set_path(pt, p, PEER_PATH_RELAY, why);
	if (p->resolving || p->has_reg_ep || !pt->cfg.resolve)
		return;
	p->next_resolve_ms = peer_now(pt) + cfg_ms(pt->cfg.reresolve_ms, 30000);
	peer_start_resolve(pt, p);
}

/* src is the endpoint of a recent PunchCommand (whichever peer it was for). */
static bool was_punched(const peer_table *pt, const transport_ep *src, uint64_t now)
{
	for (unsigned i = 0; i < PEER_PUNCH_RECENT; i++)
		if (pt->punched[i].ms && now - pt->punched[i].ms < PEER_PUNCH_FRESH_MS &&
		    transport_ep_eq(src, &pt->punched[i].ep))
			return true;
	return false;
}

void peer_path_rx(peer_table *pt, peer *p, const transport_ep *src, bool via_relay, bool probe)
{
	uint64_t now = peer_now(pt);
	bool punched;

	if (via_relay) {
		if (p->path == PEER_PATH_NONE)
			peer_relay_first_contact(pt, p, "relay deliver");
		else if (p->path != PEER_PATH_RELAY)
			peer_set_path(pt, p, PEER_PATH_RELAY, "relay deliver");
		return;
	}
	if (pt->has_beacon && transport_ep_eq(src, &pt->beacon))
		return;
	if (p->relay_pinned || p->ref_relay)
		return; /* the registry said relay_only; a later resolve may unpin it */
	p->direct_ok_ms = now;
	p->direct_deadline_ms = 0;
	/* NAT rebinding follow: the source of an authenticated frame is the endpoint. */
	p->ep = *src;
	p->has_ep = true;
	punched = was_punched(pt, src, now);
	if (p->path == PEER_PATH_NONE)
		peer_set_path(pt, p, PEER_PATH_DIRECT, "inbound");
	/* A relay peer goes direct on frames that show our direct sends arrive: not
	 * on its probes, which show only that its own do (a NAT flow stuck without
	 * its mapping carries them to us and nothing back, issue 20): we answer
	 * those, and the answers to our own probes count. */
	else if (p->path == PEER_PATH_RELAY && !probe && ++p->direct_count >= PEER_UPGRADE_FRAMES)
		peer_set_path(pt, p, punched ? PEER_PATH_PUNCHED : PEER_PATH_DIRECT, "direct probe ok");
	else if (p->path == PEER_PATH_DIRECT && punched)
		peer_set_path(pt, p, PEER_PATH_PUNCHED, "hole punched");
}

static void kx_retransmit(peer_table *pt, peer *p, uint64_t now)
{
	if (!pt->cfg.encrypt || !p->kx_tries || p->authenticated || now < p->kx_next_ms)
		return;
	if (p->kx_tries >= PEER_KX_TRIES) {
		p->kx_tries = 0; /* give up until the next send or frame from the peer */
		return;
	}
	/* A relayed exchange with no answer: the beacon may have restarted and forgotten
	 * our verified endpoint (it relays only for nodes whose signed Discover it has
	 * seen), which the periodic Discover would repair only 25 s later. */
	if (p->path == PEER_PATH_RELAY)
		peer_discover_soon(pt, now);
	peer_send_kx(pt, p, PEER_VIA_PATH);
	p->kx_tries++;
	p->kx_backoff_ms *= 2;
	p->kx_next_ms = now + p->kx_backoff_ms;
}

static void direct_deadline(peer_table *pt, peer *p, uint64_t now)
{
	if (!p->direct_deadline_ms || now < p->direct_deadline_ms)
		return;
	p->direct_deadline_ms = 0;
	if (p->direct_ok_ms >= p->direct_since_ms || !pt->has_beacon || p->path == PEER_PATH_RELAY)
		return;
	peer_set_path(pt, p, PEER_PATH_RELAY, "no direct reply");
	if (pt->cfg.encrypt && !p->authenticated)
		peer_send_kx(pt, p, PEER_VIA_RELAY);
}

/* A relay peer's endpoint may be unknown (reached us through the relay first)
 * or wrong (registered before its NAT mapping existed, or the registry would not
 * say before trust): ask the registry again, at most every reresolve_ms, unless
 * an authenticated direct frame confirmed the endpoint within that time. */
static void maybe_reresolve(peer_table *pt, peer *p, uint64_t now)
{
	uint64_t iv = cfg_ms(pt->cfg.reresolve_ms, 30000);

	if (p->resolving || !pt->cfg.resolve || now < p->next_resolve_ms)
		return;
	if (p->has_ep && p->direct_ok_ms && now - p->direct_ok_ms < iv)
		return;
	p->next_resolve_ms = now + iv;
	pt->st.reresolves++;
	peer_start_resolve(pt, p); /* a new endpoint is tried at once (peer_resolved) */
}

/* Trust just reached the registry (peer_table_trusted): resolve again soon,
 * whatever reresolve_ms says, until an endpoint comes back or the tries run out. */
static void trust_reresolve(peer_table *pt, peer *p, uint64_t now)
{
	if (!p->trust_resolves || p->resolving || !pt->cfg.resolve || now < p->next_resolve_ms)
		return;
	if (p->path != PEER_PATH_RELAY || p->relay_pinned || p->has_reg_ep) {
		p->trust_resolves = 0;
		return;
	}
	p->trust_resolves--;
	p->next_resolve_ms = now + PEER_TRUST_RESOLVE_MS;
	pt->st.reresolves++;
	peer_start_resolve(pt, p);
}

void peer_table_trusted(peer_table *pt, uint32_t node)
{
	peer *p = peer_find(pt, node);

	if (p)
		p->refused_ms = 0; /* the next packet resolves again at once */
	if (!p || p->path != PEER_PATH_RELAY || p->relay_pinned || p->ref_relay || p->has_reg_ep)
		return;
	p->trust_resolves = PEER_TRUST_RESOLVES;
	p->next_resolve_ms = 0;
	trust_reresolve(pt, p, peer_now(pt));
}

static void relay_probe(peer_table *pt, peer *p, uint64_t now)
{
	if (p->path != PEER_PATH_RELAY || now < p->next_probe_ms)
		return;
	p->next_probe_ms = now + cfg_ms(pt->cfg.relay_probe_ms, 15000);
	if (!p->relay_pinned && !p->ref_relay)
		relay_direct_attempt(pt, p);
	if (p->path == PEER_PATH_RELAY)
		maybe_reresolve(pt, p, now);
}

/* Traffic stopped arriving on a direct path while we keep sending: probe it and
 * fall back to relay if the probe is not answered in time. */
static void silence_check(peer_table *pt, peer *p, uint64_t now)
{
	uint64_t silence = cfg_ms(pt->cfg.silence_ms, 8000);

	if (p->path == PEER_PATH_RELAY || p->path == PEER_PATH_NONE || !p->authenticated ||
	    p->direct_deadline_ms || p->last_tx_ms <= p->last_rx_ms ||
	    now - p->last_rx_ms <= silence || now - p->last_tx_ms >= silence)
		return;
	peer_send_probe(pt, p, PEER_VIA_DIRECT);
	peer_direct_attempt(pt, p);
}

/* Packets expecting an answer (stream, ping) unanswered for silent_rekey_ms: a
 * fresh key exchange, at most every 10 s per peer (peer_silent_rekey). Not while
 * our own exchange is still being retransmitted. */
static void silent_rekey_check(peer_table *pt, peer *p, uint64_t now)
{
	if (!pt->cfg.encrypt || !p->sess || p->unans_n < 2 || (p->kx_tries && !p->authenticated) ||
	    now - p->unans_first_ms < cfg_ms(pt->cfg.silent_rekey_ms, 1000) ||
	    (p->silent_rekey_at_ms && now - p->silent_rekey_at_ms < 10000))
		return;
	peer_silent_rekey(pt, p);
}

void peer_path_tick(peer_table *pt, peer *p, uint64_t now)
{
	kx_retransmit(pt, p, now);
	silent_rekey_check(pt, p, now);
	trust_reresolve(pt, p, now);
	direct_deadline(pt, p, now);
	relay_probe(pt, p, now);
	silence_check(pt, p, now);
	if (p->sess && p->authenticated && p->path != PEER_PATH_NONE &&
	    now - p->last_tx_ms >= cfg_ms(pt->cfg.keepalive_ms, 25000))
		peer_send_keepalive(pt, p);
}

/* Our underlay address changed (the node noticed, node_move.c). Sessions are
 * keyed by node and key, not by endpoint, so nothing is torn down: tell the
 * beacon our new endpoint now, and prove the new source to every peer on a
 * direct path with authenticated probes (a pilot peer moves a path only on an
 * authenticated frame, peer_path_rx, and answers the probe). A peer that does
 * not answer within direct_timeout_ms is reached through the relay
 * (direct_deadline): so is a reference daemon, which learns endpoints only from
 * key exchanges and pins a relayed sender to the relay. No key exchange is sent
 * here: a reference peer replaces its session on any exchange and restarts its
 * send counter, whose frames our replay window would then drop (tunnel.md §6.1).
 * Relay peers are probed directly again soon, once the beacon knows where we are. */
void peer_table_migrated(peer_table *pt)
{
	uint64_t now = peer_now(pt);

	pt->st.migrations++;
	if (pt->has_beacon)
		peer_send_discover(pt);
	for (size_t b = 0; b < PEER_BUCKETS; b++)
		for (peer *p = pt->buckets[b]; p; p = p->next) {
			if (p->path == PEER_PATH_RELAY) {
				if (p->next_probe_ms > now + 2000)
					p->next_probe_ms = now + 2000;
				continue;
			}
			if (p->path == PEER_PATH_NONE || !p->has_ep)
				continue;
			if (p->sess || !pt->cfg.encrypt)
				for (int i = 0; i < PEER_UPGRADE_FRAMES; i++)
					peer_send_probe(pt, p, PEER_VIA_DIRECT);
			peer_direct_attempt(pt, p);
		}
}

/* ---- beacon client ---- */

void peer_table_rediscover(peer_table *pt)
{
	peer_discover_soon(pt, peer_now(pt));
}

void peer_discover_soon(peer_table *pt, uint64_t now)
{
	if (!pt->has_beacon || (pt->last_discover_ms && now - pt->last_discover_ms < 2000))
		return;
	peer_send_discover(pt);
	pt->next_discover_ms = now + DEF(pt->cfg.discover_ms, 25000);
}

void peer_send_discover(peer_table *pt)
{
	uint8_t msg[BEACON_SIGNED_LEN];
	char text[64];
	uint64_t ts = (uint64_t)time(NULL);
	int n;

	pt->last_discover_ms = peer_now(pt);
	if (!pt->discover_wait_ms)
		pt->discover_wait_ms = pt->last_discover_ms ? pt->last_discover_ms : 1;
	if (!pt->cfg.identity) {
		n = proto_beacon_discover(pt->cfg.node, NULL, msg, sizeof(msg));
		if (n > 0)
			peer_send_frame_direct(pt, &pt->beacon, msg, (size_t)n);
		return;
	}
	/* The beacon refuses a timestamp it has seen: keep them strictly increasing. */
	if (ts <= pt->last_discover_ts)
		ts = pt->last_discover_ts + 1;
	pt->last_discover_ts = ts;
	n = snprintf(text, sizeof(text), "discover:%u:%llu", pt->cfg.node, (unsigned long long)ts);
	msg[0] = BEACON_DISCOVER;
	proto_put32(msg + 1, pt->cfg.node);
	memcpy(msg + 5, pt->cfg.identity->pk, PROTO_ED25519_LEN);
	proto_put64(msg + 37, ts);
	pilot_ed25519_sign(pt->cfg.identity, text, (size_t)n, msg + 45);
	peer_send_frame_direct(pt, &pt->beacon, msg, BEACON_SIGNED_LEN);
}

static void ep_from_proto(const proto_endpoint *e, transport_ep *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (e->ip_len == 4) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&ep->ss;
		v4->sin_family = AF_INET;
		v4->sin_port = htons(e->port);
		memcpy(&v4->sin_addr, e->ip, 4);
		ep->len = sizeof(*v4);
	} else {
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ep->ss;
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(e->port);
		memcpy(&v6->sin6_addr, e->ip, 16);
		ep->len = sizeof(*v6);
		transport_ep_canon(ep);
	}
}

static bool ep_ip_eq(const transport_ep *a, const transport_ep *b)
{
	transport_ep x = *a, y = *b;

	transport_ep_canon(&x);
	transport_ep_canon(&y);
	if (x.ss.ss_family != y.ss.ss_family)
		return false;
	if (x.ss.ss_family == AF_INET)
		return ((struct sockaddr_in *)&x.ss)->sin_addr.s_addr ==
		       ((struct sockaddr_in *)&y.ss)->sin_addr.s_addr;
	if (x.ss.ss_family == AF_INET6)
		return !memcmp(&((struct sockaddr_in6 *)&x.ss)->sin6_addr,
			       &((struct sockaddr_in6 *)&y.ss)->sin6_addr, sizeof(struct in6_addr));
	return false;
}

/* 2: one of p's endpoints (current or registry) is ep; 1: same IP; 0: neither. */
static int ep_match(const peer *p, const transport_ep *ep)
{
	int m = 0;

	if (p->has_ep)
		m = transport_ep_eq(&p->ep, ep) ? 2 : ep_ip_eq(&p->ep, ep);
	if (p->has_reg_ep && m < 2) {
		int r = transport_ep_eq(&p->reg_ep, ep) ? 2 : ep_ip_eq(&p->reg_ep, ep);
		m = r > m ? r : m;
	}
	return m;
}

enum { PUNCH_NONE, PUNCH_BY_EP, PUNCH_BY_RECENT };

/* Which peer a PunchCommand is about. It carries only the other side's endpoint
 * as the beacon sees it, and comes either for our own outstanding PunchRequest
 * or because a peer asked to punch us. Ranking: an outstanding request whose peer
 * has exactly this endpoint; any peer with exactly this endpoint; an outstanding
 * request whose peer has this IP; the most recent outstanding request. Ties go
 * to the most recent request. An IP match alone without a request of ours is
 * no evidence (several peers may share a NAT). */
static peer *punch_attribute(peer_table *pt, const transport_ep *ep, uint64_t now, int *how)
{
	peer *best = NULL;
	int bs = 0;

	for (size_t b = 0; b < PEER_BUCKETS; b++)
		for (peer *p = pt->buckets[b]; p; p = p->next) {
			bool out = p->punch_req_ms && now - p->punch_req_ms < PEER_PUNCH_OUTSTANDING_MS;
			int m = ep_match(p, ep);
			int sc = m == 2 ? (out ? 5 : 4) : m == 1 && out ? 3 : out ? 1 : 0;

			if (sc > bs || (sc && sc == bs && p->punch_req_ms > best->punch_req_ms)) {
				best = p;
				bs = sc;
			}
		}
	*how = bs >= 3 ? PUNCH_BY_EP : bs ? PUNCH_BY_RECENT : PUNCH_NONE;
	return best;
}

/* Send p a probe (session) or our key exchange at ep, whatever p's endpoint. */
static void try_endpoint(peer_table *pt, peer *p, const transport_ep *ep)
{
	transport_ep saved = p->ep;
	bool had = p->has_ep;

	p->ep = *ep;
	p->has_ep = true;
	if (p->sess || !pt->cfg.encrypt)
		peer_send_probe(pt, p, PEER_VIA_DIRECT);
	else
		peer_send_kx(pt, p, PEER_VIA_DIRECT);
	p->ep = saved;
	p->has_ep = had;
}

/* PILP x3 to the endpoint whatever it is for: that is what opens our NAT mapping
 * toward it. Attribution is bookkeeping, plus one authenticated attempt for a
 * peer still without a working direct path. Success itself is recognised by
 * authenticated direct frames (peer_path_rx), whichever peer they come from. */
static void punch_command(peer_table *pt, const proto_endpoint *e)
{
	uint8_t pilp[8];
	transport_ep ep;
	uint64_t now = peer_now(pt);
	int n = proto_pilp_encode(0, pilp, sizeof(pilp)), how;
	peer *p;

	ep_from_proto(e, &ep);
	for (int i = 0; i < 3 && n > 0; i++)
		peer_send_frame_direct(pt, &ep, pilp, (size_t)n);
	pt->st.punches++;
	pt->punched[pt->punched_i].ep = ep;
	pt->punched[pt->punched_i].ms = now;
	pt->punched_i = (pt->punched_i + 1) % PEER_PUNCH_RECENT;
	p = punch_attribute(pt, &ep, now, &how);
	if (!p) {
		pt->st.punch_unattributed++;
		return;
	}
	if (how == PUNCH_BY_EP)
		pt->st.punch_by_endpoint++;
	else
		pt->st.punch_by_recent++;
	if (p->punch_req_ms && now - p->punch_req_ms < PEER_PUNCH_OUTSTANDING_MS)
		p->punch_req_ms = 0; /* answered */
	p->punch_ep = ep;
	p->punch_cmd_ms = now;
	if ((p->path == PEER_PATH_RELAY && !p->ref_relay) ||
	    (p->direct_deadline_ms && p->direct_ok_ms < p->direct_since_ms))
		try_endpoint(pt, p, &ep);
}

void peer_handle_beacon(peer_table *pt, uint8_t *buf, size_t len)
{
	proto_beacon_msg m;
	transport_ep ep;

	if (proto_beacon_decode(buf, len, &m) < 0) {
		pt->st.drop_malformed++;
		return;
	}
	switch (m.type) {
	case BEACON_DISCOVER_REPLY:
		pt->discover_wait_ms = 0; /* the beacon in use answers */
		ep_from_proto(&m.ep, &ep);
		transport_ep_format(&ep, pt->st.public_ep);
		pt->st.have_public_ep = true;
		break;
	case BEACON_PUNCH_COMMAND:
		punch_command(pt, &m.ep);
		break;
	case BEACON_RELAY_DELIVER:
		peer_handle_relayed(pt, buf + BEACON_RELAY_DELIVER_HDR, len - BEACON_RELAY_DELIVER_HDR, m.node);
		break;
	case BEACON_NOTIFY:
		pt->st.beacon_notifies++;
		if (pt->cfg.beacon_notify) /* for the registry client, not the tunnel */
			pt->cfg.beacon_notify(pt->cfg.ctx, m.kind);
		break;
	default:
		break; /* nothing for a node */
	}
}

/* ---- path MTU ---- */

static uint32_t mtu_towards(peer_table *pt, peer_mtu *m, const transport_ep *ep, bool *ipv6)
{
	uint64_t now = peer_now(pt);
	bool v6 = false;
	int r;

	if (!m->ms || !transport_ep_eq(&m->ep, ep) || now - m->ms >= PEER_MTU_CACHE_MS) {
		r = transport_route_mtu(ep, &v6);
		*m = (peer_mtu){ .ep = *ep, .ms = now ? now : 1, .mtu = r > 0 ? (uint32_t)r : 0,
				 .ipv6 = v6 };
	}
	*ipv6 = m->ipv6;
	return m->mtu;
}

uint32_t peer_path_mtu(peer_table *pt, uint32_t node, bool *ipv6)
{
	peer *p = peer_find(pt, node);

	*ipv6 = false;
	if (transport_is_relay_only(pt->t))
		return 0; /* a stream transport: nothing fragments */
	if (p && p->has_ep && p->path != PEER_PATH_RELAY)
		return mtu_towards(pt, &p->mtu, &p->ep, ipv6);
	if (pt->has_beacon)
		return mtu_towards(pt, &pt->beacon_mtu, &pt->beacon, ipv6);
	return 0;
}
