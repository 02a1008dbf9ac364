/* Peer table, key exchange and the PILS receive/send path (tunnel.md §3-§8).
 * Path selection, punching and the beacon client live in peer_path.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "daemon/peer_internal.h"
#include "lib/log.h"

#define DEF(v, d) ((v) ? (v) : (d))

static void handle_frame(peer_table *pt, uint8_t *buf, size_t len, const transport_ep *src,
			 uint32_t relay_sender);
static int build_kx(const peer_table *pt, const pilot_x25519 *x, uint8_t *frame, size_t *len);
static void install_session(peer_table *pt, peer *p, const uint8_t x[PROTO_X25519_LEN]);

uint64_t peer_now(const peer_table *pt)
{
	return pilot_loop_now_ms(pt->loop);
}

static size_t bucket(uint32_t node)
{
	return (node * 2654435761u) >> 22; /* 10 bits: PEER_BUCKETS */
}

peer *peer_find(const peer_table *pt, uint32_t node)
{
	peer *p;

	for (p = pt->buckets[bucket(node)]; p; p = p->next)
		if (p->node == node)
			return p;
	return NULL;
}

/* node was peer_forget'ed (a direct-mapped set: an overwritten entry only means
 * the table key is used again). */
static bool forgotten(const peer_table *pt, uint32_t node)
{
	return node && pt->forgot[bucket(node)] == node;
}

/* A forgotten node gets its own X25519 key: the node may still hold the session
 * derived from the table key, and re-deriving that one on our side only would
 * restart our send counter under its replay window (tunnel.md §6.1 counter reset).
 * A new key makes it replace its session too: both sides start from scratch. */
static int own_key(peer_table *pt, peer *p)
{
	peer_ownkey *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	pilot_x25519_generate(&k->x);
	if (build_kx(pt, &k->x, k->frame, &k->len) < 0) {
		pilot_x25519_wipe(&k->x);
		free(k);
		return -EINVAL;
	}
	p->own = k;
	return 0;
}

static const uint8_t *kx_frame_of(const peer_table *pt, const peer *p, size_t *len)
{
	if (p && p->own) {
		*len = p->own->len;
		return p->own->frame;
	}
	*len = pt->kx_frame_len;
	return pt->kx_frame;
}

peer *peer_get_or_create(peer_table *pt, uint32_t node)
{
	peer *p = peer_find(pt, node);

	if (p)
		return p;
	if (pt->npeers >= PEER_MAX || !(p = calloc(1, sizeof(*p))))
		return NULL;
	if (forgotten(pt, node) && own_key(pt, p) < 0) {
		free(p);
		return NULL;
	}
	p->node = node;
	p->kdf = pt->cfg.kdf;
	p->why = "new";
	p->next = pt->buckets[bucket(node)];
	pt->buckets[bucket(node)] = p;
	pt->npeers++;
	return p;
}

void peer_pending_drop(peer_table *pt, peer *p)
{
	pending_pkt *q, *n;

	for (q = p->pend_head; q; q = n) {
		n = q->next;
		free(q);
	}
	if (p->npend)
		pt->npend_peers--;
	p->pend_head = p->pend_tail = NULL;
	p->npend = 0;
}

static void peer_free(peer_table *pt, peer *p)
{
	peer_pending_drop(pt, p);
	pilot_session_free(p->sess);
	pilot_session_free(p->alt);
	if (p->own) {
		pilot_x25519_wipe(&p->own->x);
		free(p->own);
	}
	sodium_memzero(p, sizeof(*p));
	free(p);
}

/* ---- sending ---- */

void peer_send_frame_direct(peer_table *pt, const transport_ep *ep, const uint8_t *frame, size_t len)
{
	transport_dgram d = { .data = (uint8_t *)frame, .len = len, .ep = *ep };

	transport_send(pt->t, &d, 1);
}

void peer_send_frame_relay(peer_table *pt, uint32_t dest, uint8_t *frame, size_t len)
{
	if (!pt->has_beacon) {
		pt->st.drop_no_route++;
		return;
	}
	proto_beacon_relay_hdr(pt->cfg.node, dest, frame - BEACON_RELAY_HDR);
	peer_send_frame_direct(pt, &pt->beacon, frame - BEACON_RELAY_HDR, len + BEACON_RELAY_HDR);
}

static void send_via(peer_table *pt, peer *p, uint8_t *frame, size_t len, int via)
{
	if (via == PEER_VIA_PATH)
		via = p->path == PEER_PATH_RELAY || !p->has_ep ? PEER_VIA_RELAY : PEER_VIA_DIRECT;
	if (via == PEER_VIA_RELAY)
		peer_send_frame_relay(pt, p->node, frame, len);
	else if (p->has_ep)
		peer_send_frame_direct(pt, &p->ep, frame, len);
	else
		pt->st.drop_no_route++;
	p->last_tx_ms = peer_now(pt);
}

void peer_send_frame(peer_table *pt, peer *p, uint8_t *frame, size_t len)
{
	send_via(pt, p, frame, len, PEER_VIA_PATH);
}

void peer_send_kx(peer_table *pt, peer *p, int via)
{
	uint8_t buf[BEACON_RELAY_HDR + PROTO_PILA_LEN];
	size_t len;
	const uint8_t *kx = kx_frame_of(pt, p, &len);

	memcpy(buf + BEACON_RELAY_HDR, kx, len);
	send_via(pt, p, buf + BEACON_RELAY_HDR, len, via);
	p->kx_sent_ms = peer_now(pt);
	pt->st.kx_sent++;
}

/* Retransmit our exchange (1 s, x2, 6 tries) until a frame from p authenticates. */
void peer_kx_arm(peer_table *pt, peer *p)
{
	if (p->authenticated)
		return;
	p->kx_tries = 1;
	p->kx_backoff_ms = DEF(pt->cfg.kx_retry_ms, 1000);
	p->kx_next_ms = peer_now(pt) + p->kx_backoff_ms;
}

void peer_seal_send(peer_table *pt, peer *p, uint8_t *pkt, size_t len, int via)
{
	int n;

	if (!pt->cfg.encrypt) {
		memcpy(pkt - 4, "PILT", 4);
		send_via(pt, p, pkt - 4, len + 4, via);
		return;
	}
	n = pilot_session_seal(p->sess, pkt - PROTO_PILS_HDR, len,
			       len + PROTO_PILS_OVERHEAD);
	if (n < 0) { /* counter exhausted: start over with a new exchange */
		pt->st.drop_no_route++;
		return;
	}
	send_via(pt, p, pkt - PROTO_PILS_HDR, (size_t)n, via);
}

static void build_control(const peer_table *pt, const proto_hdr *h, const void *payload,
			  size_t plen, uint8_t **pkt, size_t *len)
{
	uint8_t *out = (uint8_t *)pt->scratch + PEER_HEADROOM;
	int n = proto_packet_encode(h, payload, plen, out, PROTO_HDR_SIZE + plen);

	*pkt = out;
	*len = n < 0 ? 0 : (size_t)n;
}

/* Tunnel keepalive (packet.md §7): control, Src {0, own}, everything else 0. */
/* A control header from us, if p can be sent to (a session, or no encryption). */
static bool control_hdr(const peer_table *pt, const peer *p, proto_hdr *h)
{
	if (!p->sess && pt->cfg.encrypt)
		return false;
	*h = (proto_hdr){ .version = PROTO_VERSION,
			  .protocol = PROTO_CONTROL,
			  .src = pilot_addr_make(0, pt->cfg.node) };
	return true;
}

void peer_send_keepalive(peer_table *pt, peer *p)
{
	proto_hdr h;
	uint8_t *pkt;
	size_t len;

	if (!control_hdr(pt, p, &h))
		return;
	build_control(pt, &h, NULL, 0, &pkt, &len);
	peer_seal_send(pt, p, pkt, len, PEER_VIA_PATH);
	pt->st.keepalives_sent++;
}

void peer_send_probe(peer_table *pt, peer *p, int via)
{
	proto_hdr h;
	uint8_t *pkt;
	size_t len;

	if (!control_hdr(pt, p, &h))
		return;
	h.dst = pilot_addr_make(0, p->node);
	build_control(pt, &h, PEER_PROBE_PAYLOAD, strlen(PEER_PROBE_PAYLOAD), &pkt, &len);
	peer_seal_send(pt, p, pkt, len, via);
}

/* Answer a path probe straight back where it came from (that is what it tests). */
static void answer_probe(peer_table *pt, peer *p, const proto_hdr *ph, const transport_ep *src,
			 bool via_relay)
{
	proto_hdr h = { .version = PROTO_VERSION, .flags = PROTO_ACK, .protocol = PROTO_CONTROL };
	uint8_t *pkt;
	size_t len;

	h.src = pilot_addr_is_zero(ph->dst) ? pilot_addr_make(0, pt->cfg.node) : ph->dst;
	h.dst = ph->src;
	h.dst_port = ph->src_port;
	h.seq = ph->seq;
	h.ack = ph->seq + 1;
	build_control(pt, &h, PEER_PROBE_PAYLOAD, strlen(PEER_PROBE_PAYLOAD), &pkt, &len);
	if (via_relay) {
		peer_seal_send(pt, p, pkt, len, PEER_VIA_RELAY);
		return;
	}
	int n = pilot_session_seal(p->sess, pkt - PROTO_PILS_HDR, len, len + PROTO_PILS_OVERHEAD);
	if (n > 0)
		peer_send_frame_direct(pt, src, pkt - PROTO_PILS_HDR, (size_t)n);
}

static int pending_push(peer_table *pt, peer *p, const uint8_t *pkt, size_t len)
{
	pending_pkt *q;

	if (p->npend >= PEER_PENDING_PER_PEER || (!p->npend && pt->npend_peers >= PEER_PENDING_PEERS) ||
	    !(q = malloc(sizeof(*q) + PEER_HEADROOM + len + PEER_TAILROOM))) {
		pt->st.drop_pending_full++;
		return -ENOBUFS;
	}
	q->next = NULL;
	q->len = len;
	memcpy(q->buf + PEER_HEADROOM, pkt, len);
	if (!p->npend++)
		pt->npend_peers++;
	if (p->pend_tail)
		p->pend_tail->next = q;
	else
		p->pend_head = q;
	p->pend_tail = q;
	return 0;
}

void peer_pending_flush(peer_table *pt, peer *p)
{
	pending_pkt *q = p->pend_head;

	p->pend_head = p->pend_tail = NULL;
	if (p->npend)
		pt->npend_peers--;
	p->npend = 0;
	while (q) {
		pending_pkt *n = q->next;
		peer_seal_send(pt, p, q->buf + PEER_HEADROOM, q->len, PEER_VIA_PATH);
		free(q);
		q = n;
	}
}

/* A packet a live peer holding our session answers: a stream SYN, FIN or data
 * segment (not a pure ACK or RST), a ping (control to port 0 without ACK, from a
 * port: tunnel keepalives and path probes use port 0). */
static bool expects_answer(const uint8_t *pkt)
{
	uint8_t flags = pkt[0] & 0x0F;

	if (pkt[1] == PROTO_STREAM)
		return !(flags & PROTO_RST) &&
			((flags & (PROTO_SYN | PROTO_FIN)) || proto_get16(pkt + 2) > 0);
	return pkt[1] == PROTO_CONTROL && !(flags & PROTO_ACK) && proto_get16(pkt + 16) != 0 &&
		proto_get16(pkt + 18) == 0;
}

/* Silent peer (issue 15): packets that expect an answer went out for a while and
 * nothing came back. A reference node that restarted (same identity) drops our
 * frames as "no key" and never says so; a live one may hold a session we lost
 * track of. A fresh X25519 key of our own makes either replace its session and
 * answer with its key (a changed key always gets a reply, and a same-key exchange
 * would only restart a ref peer's send counter under our replay window, tunnel.md
 * §6.1), so both sides start from scratch. Sent along the path. */
void peer_silent_rekey(peer_table *pt, peer *p)
{
	peer_ownkey *old = p->own;
	uint64_t now = peer_now(pt);

	p->own = NULL;
	if (own_key(pt, p) < 0) {
		p->own = old;
		return;
	}
	if (old) {
		pilot_x25519_wipe(&old->x);
		free(old);
	}
	p->silent_rekey_at_ms = now;
	p->unans_n = 0;
	pt->st.silent_rekeys++;
	log_info("tunnel rekey node=%u why=\"silent while we send\"", p->node);
	if (p->has_x)
		install_session(pt, p, p->x25519);
	peer_send_kx(pt, p, PEER_VIA_PATH);
	peer_kx_arm(pt, p);
	/* The node may listen elsewhere now: the registry's endpoint replaces the one
	 * its frames proved before (peer_resolved keeps a proved one). Never a relay
	 * copy to a direct peer: one relayed frame makes a reference node send to us
	 * through the relay for the rest of its life (it never leaves relay mode).
	 * But the direct path is on trial, as at first contact: no authenticated
	 * direct frame within direct_timeout_ms moves the peer to the relay
	 * (direct_deadline, which sends the exchange there). Without that, a path
	 * that carries our frames but not the answers (a NAT flow stuck without its
	 * mapping, kept alive by our own sends) stayed direct for good: the new
	 * session is unauthenticated, so silence_check never ran (the soak finding,
	 * docs/SOAK.md). */
	if (!p->relay_pinned) {
		p->direct_ok_ms = 0;
		peer_start_resolve(pt, p);
		if (p->path == PEER_PATH_DIRECT || p->path == PEER_PATH_PUNCHED)
			peer_direct_attempt(pt, p);
	}
}

static bool can_send_now(const peer_table *pt, const peer *p)
{
	if (p->path == PEER_PATH_NONE)
		return false;
	return !pt->cfg.encrypt || p->sess;
}

int peer_send_packet(peer_table *pt, uint32_t node, uint8_t *pkt, size_t len)
{
	peer *p;
	int rc = 0;

	if (len < PROTO_HDR_SIZE || len > PROTO_MAX_PACKET)
		return -EMSGSIZE;
	if (node == pt->cfg.node || node == 0 || !(p = peer_get_or_create(pt, node)))
		return node == pt->cfg.node || node == 0 ? -EINVAL : -ENOMEM;
	pt->st.tx_packets++;
	p->tx_packets++;
	p->tx_bytes += len;
	if (expects_answer(pkt) && !p->unans_n++)
		p->unans_first_ms = peer_now(pt);
	if (can_send_now(pt, p)) {
		peer_seal_send(pt, p, pkt, len, PEER_VIA_PATH);
		return 0;
	}
	if (p->path == PEER_PATH_NONE && p->refused_ms && peer_now(pt) - p->refused_ms < PEER_NEG_CACHE_MS) {
		pt->st.drop_no_route++; /* private, not trusting us yet (peer_resolved) */
		return -EHOSTUNREACH;
	}
	/* Never a plaintext copy: queue until the session exists (tunnel.md §7). */
	rc = pending_push(pt, p, pkt, len);
	peer_start_contact(pt, p);
	return rc;
}

int peer_send_packet_copy(peer_table *pt, uint32_t node, const uint8_t *pkt, size_t len)
{
	if (len > PROTO_MAX_PACKET)
		return -EMSGSIZE;
	memcpy(pt->scratch + PEER_HEADROOM, pkt, len);
	return peer_send_packet(pt, node, pt->scratch + PEER_HEADROOM, len);
}

/* ---- key exchange ---- */

static void install_session(peer_table *pt, peer *p, const uint8_t x[PROTO_X25519_LEN])
{
	uint8_t shared[PILOT_KEY_LEN];
	enum pilot_kdf other = p->kdf == PILOT_KDF_REF ? PILOT_KDF_NEW : PILOT_KDF_REF;

	if (pilot_x25519_shared(p->own ? &p->own->x : &pt->x, x, shared) < 0) {
		pt->st.kx_rejected++;
		return;
	}
	pilot_session_free(p->sess);
	pilot_session_free(p->alt);
	p->sess = pilot_session_new(shared, p->kdf, pt->cfg.node, p->node);
	p->alt = pilot_session_new(shared, other, pt->cfg.node, p->node);
	sodium_memzero(shared, sizeof(shared));
	if (!p->sess) {
		pilot_session_free(p->alt);
		p->alt = NULL;
		return;
	}
	memcpy(p->x25519, x, PROTO_X25519_LEN);
	p->authenticated = false;
}

/* Key-exchange replies to one peer: at most one per second (counted when refused). */
static bool kx_reply_due(peer_table *pt, peer *p)
{
	uint64_t now = peer_now(pt);

	if (p->reply_ms && now - p->reply_ms < 1000) {
		pt->st.kx_rate_limited++;
		return false;
	}
	p->reply_ms = now;
	return true;
}

/* A valid exchange repeating the key we already use: never reset the session
 * (tunnel.md §6.1 counter reset / PILA replay). Prove ours instead, 1 per s. */
static void same_key(peer_table *pt, peer *p)
{
	if (!kx_reply_due(pt, p))
		return;
	if (!p->authenticated)
		peer_send_kx(pt, p, PEER_VIA_PATH);
	peer_send_keepalive(pt, p);
}

void peer_emit(peer_table *pt, enum peer_event ev, uint32_t node, const peer_event_info *e)
{
	if (pt->cfg.event)
		pt->cfg.event(pt->cfg.ctx, ev, node, e);
}

/* x is a key of p that a key change replaced: the peer's exchange was captured
 * before it re-keyed (restart, silent re-key) and is replayed now. */
static bool stale_key(const peer *p, const uint8_t x[PROTO_X25519_LEN])
{
	for (unsigned i = 0; i < p->old_x_n; i++)
		if (!sodium_memcmp(p->old_x[i], x, PROTO_X25519_LEN))
			return true;
	return false;
}

/* x, the peer's key until now, was replaced: remember it (the oldest one goes). */
static void retire_key(peer *p, const uint8_t x[PROTO_X25519_LEN])
{
	if (p->old_x_n == PEER_OLD_X) {
		memmove(p->old_x[0], p->old_x[1], (PEER_OLD_X - 1) * PROTO_X25519_LEN);
		p->old_x_n--;
	}
	memcpy(p->old_x[p->old_x_n++], x, PROTO_X25519_LEN);
}

/* A verified exchange (the signature binds node and key, nothing fresh: any
 * captured one verifies for ever, tunnel.md §3.2). A key the peer already
 * replaced is refused before anything moves: neither the session nor the
 * endpoint (the soak finding: a replayed pre-restart exchange from another
 * address cut the real peer off until it re-keyed). */
static void kx_accept(peer_table *pt, uint32_t node, const uint8_t x[PROTO_X25519_LEN],
		      const uint8_t *frame, size_t flen, const transport_ep *src, uint32_t relay,
		      const uint8_t *ed)
{
	peer *p = peer_get_or_create(pt, node);
	uint8_t prev[PROTO_X25519_LEN];
	transport_ep other;
	bool changed, recent, proven, held = false;

	if (!p)
		return;
	if (stale_key(p, x)) {
		pt->st.kx_rejected++;
		pt->st.kx_stale++;
		return;
	}
	memcpy(p->last_kx, frame, flen);
	p->last_kx_len = flen;
	if (p->sess && p->has_x && !sodium_memcmp(p->x25519, x, PROTO_X25519_LEN)) {
		same_key(pt, p);
		return;
	}
	changed = p->has_x;
	if (changed)
		memcpy(prev, p->x25519, PROTO_X25519_LEN);
	proven = changed && p->authenticated && p->has_ep &&
		(p->path == PEER_PATH_DIRECT || p->path == PEER_PATH_PUNCHED);
	p->unans_n = 0;
	install_session(pt, p, x);
	if (!p->sess || sodium_memcmp(p->x25519, x, PROTO_X25519_LEN))
		return; /* refused (low-order key) or out of memory */
	/* retired once a frame proves the new key (authenticated) */
	if (changed && sodium_memcmp(prev, x, PROTO_X25519_LEN)) {
		memcpy(p->prev_x, prev, PROTO_X25519_LEN);
		p->has_prev_x = true;
	}
	p->has_x = true;
	p->identity = ed != NULL;
	if (ed)
		memcpy(p->sess_ed, ed, PROTO_ED25519_LEN);
	pt->st.kx_accepted++;
	if (changed)
		pt->st.rekeys++;
	if (pt->cfg.event) {
		peer_event_info e = { .ep = relay ? NULL : src,
				      .authenticated = ed != NULL,
				      .relay = relay != 0,
				      .rekeyed = changed };

		if (!changed)
			peer_emit(pt, PEER_EV_ADDED, node, &e);
		peer_emit(pt, PEER_EV_ESTABLISHED, node, &e);
	}
	if (!relay && !(pt->has_beacon && transport_ep_eq(src, &pt->beacon))) {
		/* A key change never moves a proven endpoint (the exchange may be a
		 * replay): the new source gets our answer too, and becomes the endpoint
		 * when a frame authenticates from it (peer_path_rx). */
		if (proven && !transport_ep_eq(src, &p->ep)) {
			other = *src;
			held = true;
		} else {
			p->ep = *src;
			p->has_ep = true;
		}
		if (p->path == PEER_PATH_NONE)
			peer_set_path(pt, p, PEER_PATH_DIRECT, "key exchange");
	} else if (p->path == PEER_PATH_NONE) {
		/* learns its endpoint for later upgrades, or that it is relay_only */
		peer_relay_first_contact(pt, p, "key via relay");
	}
	/* Our answer goes back through the relay, which the beacon forwards only for a
	 * node whose Discover it has verified: after a beacon restart that is not yet
	 * us, so re-verify first (rate-limited; sent before the answer, in order). */
	if (relay)
		peer_discover_soon(pt, peer_now(pt));
	/* The peer needs ours unless we sent it just now (our first contact). */
	recent = p->kx_sent_ms && peer_now(pt) - p->kx_sent_ms < 1000 && !changed;
	if (!recent) {
		peer_send_kx(pt, p, PEER_VIA_PATH);
		peer_kx_arm(pt, p);
	}
	if (held) {
		size_t klen;
		const uint8_t *kx = kx_frame_of(pt, p, &klen);

		peer_send_frame_direct(pt, &other, kx, klen);
		pt->st.kx_sent++;
	}
	if (p->npend)
		peer_pending_flush(pt, p);
	else
		peer_send_keepalive(pt, p); /* lets the peer authenticate us at once */
}

static enum peer_pin pin_of(const peer_table *pt, uint32_t node, uint8_t pk[PROTO_ED25519_LEN])
{
	return pt->cfg.pinned_key ? pt->cfg.pinned_key(pt->cfg.ctx, node, pk) : PEER_PIN_NONE;
}

/* A node that never gets an anonymous session again: trusted or pinned (this
 * process or an earlier one), or the registry gave us its key, or it proved an
 * identity to us in this process. */
static bool keyed(const peer_table *pt, const peer *p, uint32_t node)
{
	uint8_t pk[PROTO_ED25519_LEN];

	return pin_of(pt, node, pk) != PEER_PIN_NONE || (p && (p->has_ed || p->identity));
}

/* PILK refused: a node we know must prove its identity, so answer with our PILA
 * (also what a newer reference's PILK "key request" asks for, tunnel.md §3.2). */
static void refuse_pilk(peer_table *pt, peer *p)
{
	pt->st.kx_rejected++;
	pt->st.kx_pilk_refused++;
	if (p && (!p->reply_ms || peer_now(pt) - p->reply_ms >= 1000)) {
		p->reply_ms = peer_now(pt);
		peer_send_kx(pt, p, PEER_VIA_PATH);
	}
}

static void key_b64(const uint8_t *pk, char out[48])
{
	pilot_b64_encode(pk, PROTO_ED25519_LEN, out, 48);
}

/* A PILA whose signature verified, with regkey the registry's key for its node
 * (NULL: none); fresh: regkey was asked for after this frame arrived (not the
 * cached one). The key must be the registry's. A pinned key other than the
 * frame's moves only on a fresh answer naming the frame's key: the registry
 * changes a node's key only through rotate_key, signed by the old key. */
static void pila_decide(peer_table *pt, const proto_pila *a, const uint8_t *frame,
			const transport_ep *src, uint32_t relay, const uint8_t *regkey, bool fresh)
{
	uint8_t pin[PROTO_ED25519_LEN];
	char o[48], n[48];
	enum peer_pin ps = pin_of(pt, a->node, pin);
	bool change = ps == PEER_PIN_KEY && sodium_memcmp(pin, a->ed25519, PROTO_ED25519_LEN);

	if (!regkey || sodium_memcmp(regkey, a->ed25519, PROTO_ED25519_LEN) || (change && !fresh)) {
		pt->st.kx_rejected++;
		return;
	}
	if (change) {
		key_b64(pin, o);
		key_b64(a->ed25519, n);
		log_warn("tunnel: key of node=%u changed old=%s new=%s: the registry holds the new "
			 "key (rotate_key), accepted", a->node, o, n);
		pt->st.kx_key_changes++;
	}
	if (pt->cfg.key_pinned)
		pt->cfg.key_pinned(pt->cfg.ctx, a->node, a->ed25519, change ? pin : NULL);
	kx_accept(pt, a->node, a->x25519, frame, PROTO_PILA_LEN, src, relay, a->ed25519);
}

/* A PILK; err: the registry's answer for its node (0 a key, -ENOENT none). An
 * anonymous session only where allowed, and only for a node nobody knows. */
static void pilk_decide(peer_table *pt, const proto_pilk *k, const uint8_t *frame,
			const transport_ep *src, uint32_t relay, int err)
{
	peer *p = peer_find(pt, k->node);

	if (pt->cfg.require_auth || err != -ENOENT || keyed(pt, p, k->node)) {
		refuse_pilk(pt, p);
		return;
	}
	if (!p && pt->pilk_peers >= PEER_PILK_MAX) {
		pt->st.kx_rate_limited++; /* anonymous nodes must not fill the table */
		return;
	}
	if (!p) {
		if (!(p = peer_get_or_create(pt, k->node)))
			return;
		p->pilk = true;
		pt->pilk_peers++;
	}
	kx_accept(pt, k->node, k->x25519, frame, PROTO_PILK_LEN, src, relay, NULL);
}

/* The registry answered (err 0 / -ENOENT) for a frame that waited for it. */
static void kx_decide(peer_table *pt, const uint8_t *frame, size_t len, const transport_ep *src,
		      uint32_t relay, int err, const uint8_t *regkey)
{
	proto_pila a;
	proto_pilk k;

	if (proto_get32(frame) == PROTO_MAGIC_PILA) {
		if (proto_pila_decode(frame, len, &a) == 0) /* verified before the lookup */
			pila_decide(pt, &a, frame, src, relay, err ? NULL : regkey, true);
		return;
	}
	if (proto_pilk_decode(frame, len, &k) == 0)
		pilk_decide(pt, &k, frame, src, relay, err);
}

static void req_unlink(peer_table *pt, peer_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		pt->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
}

static peer_req *req_new(peer_table *pt, uint32_t node, bool is_resolve)
{
	peer_req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->pt = pt;
	r->node = node;
	r->is_resolve = is_resolve;
	r->next = pt->reqs;
	if (pt->reqs)
		pt->reqs->prev = r;
	pt->reqs = r;
	return r;
}

static void req_done(peer_table *pt, peer_req *r)
{
	req_unlink(pt, r);
	pt->kx_inflight--;
	free(r);
}

/* The registry did not answer: ask again later (peer_tick), PEER_KEY_TRIES in
 * all, then drop the frame. Never "no key". */
static void key_retry(peer_table *pt, peer_req *r, int err)
{
	pt->st.kx_lookup_errors++;
	if (r->frame_len && ++r->tries < PEER_KEY_TRIES) {
		r->waiting = true;
		r->retry_ms = peer_now(pt) + ((uint64_t)DEF(pt->cfg.key_retry_ms, 500) << (r->tries - 1));
		return;
	}
	if (r->frame_len) {
		pt->st.kx_lookup_failed++;
		pt->st.kx_rejected++;
		pt->st.drop_no_session += r->nheld;
		log_info("tunnel: key exchange from node=%u dropped: the registry did not answer its "
			 "key lookup (%d tries, err=\"%s\")", r->node, PEER_KEY_TRIES, strerror(-err));
	}
	req_done(pt, r);
}

static void handle_pils(peer_table *pt, uint8_t *buf, size_t len, const transport_ep *src, uint32_t relay);

/* The PILS frames r held (hold_pils), in arrival order, now that its exchange is
 * decided: opened if it made a session, else dropped. r is unlinked already. */
static void open_held(peer_table *pt, peer_req *r)
{
	for (unsigned i = 0; i < r->nheld; i++) {
		peer *p = peer_find(pt, r->node);

		if (p && p->sess) {
			handle_pils(pt, r->held[i], r->held_len[i], &r->src, 0);
		} else {
			pt->st.drop_no_session++;
		}
	}
	r->nheld = 0;
}

static void key_done(void *arg, int err, const uint8_t pk[PROTO_ED25519_LEN])
{
	peer_req *r = arg;
	peer_table *pt = r->pt;
	peer *p;

	if (!pt) {
		free(r);
		return;
	}
	if (r->forgotten) { /* a frame from before peer_forget: start from scratch */
		req_done(pt, r);
		return;
	}
	if (err && err != -ENOENT) {
		key_retry(pt, r, err);
		return;
	}
	if (!err && !pk)
		err = -ENOENT;
	if ((p = peer_find(pt, r->node)) || (!err && (p = peer_get_or_create(pt, r->node)))) {
		if (!err) {
			memcpy(p->ed, pk, PROTO_ED25519_LEN);
			p->has_ed = true;
		} else {
			p->ed_neg_until = peer_now(pt) + PEER_NEG_CACHE_MS;
		}
		if (r->early_ms && !p->kx_sent_ms)
			p->kx_sent_ms = r->early_ms; /* kx_accept: ours went out already */
	}
	if (r->frame_len) /* 0: a prefetch (peer_prefetch_key) no frame has joined */
		kx_decide(pt, r->frame, r->frame_len, &r->src, r->relay_sender, err, pk);
	req_unlink(pt, r);
	pt->kx_inflight--;
	open_held(pt, r);
	free(r);
}

/* Lookups whose retry time has come (collected first: an answer may arrive
 * synchronously and change the list). */
static void key_retries(peer_table *pt, uint64_t now)
{
	peer_req *due[PEER_KX_INFLIGHT];
	size_t n = 0;

	for (peer_req *r = pt->reqs; r && n < PEER_KX_INFLIGHT; r = r->next)
		if (r->waiting && now >= r->retry_ms)
			due[n++] = r;
	for (size_t i = 0; i < n; i++) {
		due[i]->waiting = false;
		if (due[i]->forgotten)
			req_done(pt, due[i]);
		else
			pt->cfg.lookup_key(pt->cfg.ctx, due[i]->node, key_done, due[i]);
	}
}

/* The outstanding key lookup for node, if any. */
static peer_req *key_req_of(peer_table *pt, uint32_t node)
{
	for (peer_req *r = pt->reqs; r; r = r->next)
		if (!r->is_resolve && !r->forgotten && r->node == node)
			return r;
	return NULL;
}

/* First contact from our side: ask the registry for the peer's Ed25519 key
 * together with its endpoint, not after its exchange frame arrives, so that frame
 * is verified at once (one registry round trip less before the session). The
 * answer is cached like any other lookup's; a frame arriving before it waits on
 * this request (kx_input). */
void peer_prefetch_key(peer_table *pt, peer *p)
{
	peer_req *r;

	if (!pt->cfg.encrypt || !pt->cfg.lookup_key || p->has_ed || p->ed_neg_until > peer_now(pt) ||
	    pt->kx_inflight >= PEER_KX_INFLIGHT || key_req_of(pt, p->node) ||
	    !(r = req_new(pt, p->node, false)))
		return;
	pt->kx_inflight++;
	pt->cfg.lookup_key(pt->cfg.ctx, p->node, key_done, r);
}

static bool kx_rate_ok(peer_table *pt, peer *p)
{
	uint64_t now = peer_now(pt);

	if (!p)
		return pt->kx_inflight < PEER_KX_INFLIGHT;
	if (now - p->kx_rate_ms >= 1000) {
		p->kx_rate_ms = now;
		p->kx_rate_n = 0;
	}
	return ++p->kx_rate_n <= PEER_KX_PER_S;
}

/* Decide without the registry where we can; false: the frame needs a lookup.
 * A PILA is verified first (a forged one costs no lookup); when its key is not
 * the cached registry key (or not the pinned one) the registry is asked again:
 * the node may have rotated its key, and an unverified frame never clears what
 * we know. A PILK is refused outright where it can never be accepted. */
static bool kx_fast(peer_table *pt, peer *p, const uint8_t *buf, size_t flen,
		    const transport_ep *src, uint32_t relay)
{
	uint8_t pin[PROTO_ED25519_LEN];
	proto_pila a;
	proto_pilk k;

	if (proto_get32(buf) == PROTO_MAGIC_PILA) {
		if (proto_pila_decode(buf, flen, &a) < 0 || pilot_pila_verify(&a) < 0) {
			pt->st.kx_rejected++;
			return true;
		}
		if (!p || !p->has_ed || sodium_memcmp(p->ed, a.ed25519, PROTO_ED25519_LEN) ||
		    (pin_of(pt, a.node, pin) == PEER_PIN_KEY && sodium_memcmp(pin, a.ed25519, PROTO_ED25519_LEN)))
			return false;
		pila_decide(pt, &a, buf, src, relay, p->ed, false);
		return true;
	}
	if (proto_pilk_decode(buf, flen, &k) < 0)
		return true;
	if (pt->cfg.require_auth || keyed(pt, p, k.node)) {
		refuse_pilk(pt, p);
		return true;
	}
	if (p && p->ed_neg_until > peer_now(pt)) {
		pilk_decide(pt, &k, buf, src, relay, -ENOENT);
		return true;
	}
	return false;
}

/* Our exchange to a node we hold nothing for (no session, maybe no peer): at
 * most 1 per s per node and PEER_UNSOL_PER_S in all (counted when refused). */
static bool unsol_ok(peer_table *pt, uint32_t node)
{
	uint64_t now = peer_now(pt);
	size_t slot = bucket(node) % PEER_UNSOL_SLOTS;

	if (pt->unsol[slot].node == node && now - pt->unsol[slot].ms < 1000) {
		pt->st.kx_rate_limited++;
		return false;
	}
	if (now - pt->unsol_window_ms >= 1000) {
		pt->unsol_window_ms = now;
		pt->unsol_n = 0;
	}
	if (++pt->unsol_n > PEER_UNSOL_PER_S) {
		pt->st.kx_rate_limited++;
		return false;
	}
	pt->unsol[slot].node = node;
	pt->unsol[slot].ms = now;
	return true;
}

/* First contact from the other side: a direct PILA from a node we hold nothing
 * for. Our own PILA goes back now, before the frame's signature is checked and
 * before the registry's key for the node arrives (lookup in flight), so the
 * sender's session (and its first packets) come one round trip earlier. Our
 * PILA is what we send to anyone we contact (and to any unknown sender of a
 * PILS, rekey_unknown), under the same limits. Nothing from the node is
 * accepted before the exchange is verified and the registry's key confirms it:
 * its PILS frames wait in the lookup request (hold_pils) and are opened only
 * then (key_done). Returns when it was sent (0: not sent). */
static uint64_t early_reply(peer_table *pt, uint32_t node, const transport_ep *src)
{
	uint8_t buf[BEACON_RELAY_HDR + PROTO_PILA_LEN];

	if (!unsol_ok(pt, node))
		return 0;
	memcpy(buf + BEACON_RELAY_HDR, pt->kx_frame, pt->kx_frame_len);
	peer_send_frame_direct(pt, src, buf + BEACON_RELAY_HDR, pt->kx_frame_len);
	pt->st.kx_sent++;
	pt->st.kx_early++;
	return peer_now(pt) ? peer_now(pt) : 1;
}

/* A PILS from a node without a session whose exchange we answered early
 * (early_reply): kept until the registry's answer decides that exchange. Only
 * from the exchange's source, only a few small ones (a SYN, a ping). */
static bool hold_pils(peer_table *pt, uint32_t node, const uint8_t *buf, size_t len, const transport_ep *src,
		      uint32_t relay)
{
	peer_req *r = key_req_of(pt, node);

	if (!r || !r->early_ms || relay || !transport_ep_eq(src, &r->src) || len > PEER_HELD_LEN ||
	    r->nheld >= PEER_HELD)
		return false;
	memcpy(r->held[r->nheld], buf, len);
	r->held_len[r->nheld++] = len;
	pt->st.pils_held++;
	return true;
}

static void handle_kx(peer_table *pt, const uint8_t *buf, size_t len, const transport_ep *src,
		      uint32_t relay)
{
	bool pila = proto_get32(buf) == PROTO_MAGIC_PILA;
	size_t flen = pila ? PROTO_PILA_LEN : PROTO_PILK_LEN;
	uint32_t node = proto_get32(buf + 4);
	peer *p;
	peer_req *r;
	uint64_t early = 0;

	if (!pt->cfg.encrypt)
		return;
	if (node == 0 || node == pt->cfg.node || (relay && node != relay)) {
		pt->st.drop_malformed++;
		return;
	}
	p = peer_find(pt, node);
	/* The very frame we verified before: no crypto, it is a duplicate. */
	if (p && p->sess && p->last_kx_len == flen && !memcmp(p->last_kx, buf, flen)) {
		same_key(pt, p);
		return;
	}
	/* A key the peer replaced: a replay, refused before any crypto or lookup. */
	if (p && stale_key(p, buf + 8)) {
		pt->st.kx_rejected++;
		pt->st.kx_stale++;
		return;
	}
	/* The very frame already waiting for its key (a resend, or a reference
	 * node's answer to our early PILA): that lookup decides it. */
	if ((r = key_req_of(pt, node)) && r->frame_len == flen && !memcmp(r->frame, buf, flen)) {
		pt->st.kx_dup_waiting++;
		return;
	}
	if (!kx_rate_ok(pt, p)) {
		pt->st.kx_rate_limited++;
		return;
	}
	if (pila && !p && !r && !relay && !pt->cfg.ref_quirks && !forgotten(pt, node) && pt->cfg.lookup_key &&
	    !(pt->has_beacon && transport_ep_eq(src, &pt->beacon)))
		early = early_reply(pt, node, src);
	if (kx_fast(pt, p, buf, flen, src, relay))
		return;
	/* Our own first contact already asked for this key (peer_prefetch_key): the
	 * frame waits for that answer instead of a second lookup behind it. */
	if ((r = key_req_of(pt, node)) && r->frame_len == 0) {
		memcpy(r->frame, buf, flen);
		r->frame_len = flen;
		r->src = *src;
		r->relay_sender = relay;
		return;
	}
	if (!pt->cfg.lookup_key || pt->kx_inflight >= PEER_KX_INFLIGHT || !(r = req_new(pt, node, false))) {
		pt->st.kx_rate_limited++; /* dropped, not decided: the sender retransmits */
		return;
	}
	memcpy(r->frame, buf, flen);
	r->frame_len = flen;
	r->src = *src;
	r->relay_sender = relay;
	r->early_ms = early;
	pt->kx_inflight++;
	pt->cfg.lookup_key(pt->cfg.ctx, node, key_done, r);
}

/* Undecryptable frame or PILS without a session: tell the sender our key so a
 * restarted node is never wedged (tunnel.md §8). 1 per s per node, global cap. */
static void rekey_unknown(peer_table *pt, uint32_t node, const transport_ep *src, uint32_t relay)
{
	size_t len;
	uint8_t buf[BEACON_RELAY_HDR + PROTO_PILA_LEN];
	const uint8_t *kx;

	if (!unsol_ok(pt, node))
		return;
	/* a forgotten node still holding our old session: answer with a new key */
	kx = kx_frame_of(pt, forgotten(pt, node) ? peer_get_or_create(pt, node) : NULL, &len);
	memcpy(buf + BEACON_RELAY_HDR, kx, len);
	if (relay)
		peer_send_frame_relay(pt, node, buf + BEACON_RELAY_HDR, len);
	else
		peer_send_frame_direct(pt, src, buf + BEACON_RELAY_HDR, len);
	pt->st.kx_sent++;
}

static void rekey_known(peer_table *pt, peer *p)
{
	if (!kx_reply_due(pt, p))
		return;
	peer_send_kx(pt, p, PEER_VIA_PATH);
}

/* ---- receiving ---- */

static bool is_probe(const proto_hdr *h, const uint8_t *pl)
{
	size_t n = strlen(PEER_PROBE_PAYLOAD);

	return h->payload_len == n && !memcmp(pl, PEER_PROBE_PAYLOAD, n);
}

/* A path probe that asks for an answer (the answer has PROTO_ACK). */
static bool probe_request(const uint8_t *pkt, size_t len)
{
	size_t n = strlen(PEER_PROBE_PAYLOAD);

	return len == PROTO_HDR_SIZE + n && pkt[1] == PROTO_CONTROL && !(pkt[0] & PROTO_ACK) &&
		!memcmp(pkt + PROTO_HDR_SIZE, PEER_PROBE_PAYLOAD, n);
}

/* Consume tunnel keepalives and path probes; true if consumed. */
static bool control_consumed(peer_table *pt, peer *p, const proto_hdr *h, const uint8_t *pl,
			     const transport_ep *src, bool via_relay)
{
	if (h->protocol != PROTO_CONTROL || h->dst_port != 0 || h->src_port != 0)
		return false;
	if (h->payload_len == 0 && h->flags == 0 && pilot_addr_is_zero(h->dst))
		return true; /* keepalive: liveness only */
	if (!is_probe(h, pl))
		return false;
	if (!(h->flags & PROTO_ACK))
		answer_probe(pt, p, h, src, via_relay);
	return true;
}

static void handle_packet(peer_table *pt, peer *p, const uint8_t *pkt, size_t len,
			  const transport_ep *src, bool via_relay)
{
	proto_hdr h;
	const uint8_t *pl;
	int rc = proto_packet_decode(pkt, len, 0, &h, &pl);

	if (rc < 0) {
		if (rc == -EBADMSG)
			pt->st.drop_bad_crc++;
		else
			pt->st.drop_malformed++;
		return;
	}
	/* Bind the inner source to the tunnel sender (pre-v1.12.1 keepalives used 0). */
	if (h.src.node != p->node &&
	    !(h.src.node == 0 && h.protocol == PROTO_CONTROL && h.payload_len == 0)) {
		pt->st.drop_spoofed_src++;
		return;
	}
	p->rx_packets++;
	p->rx_bytes += PROTO_HDR_SIZE + h.payload_len;
	if (control_consumed(pt, p, &h, pl, src, via_relay))
		return;
	pt->st.rx_delivered++;
	if (pt->cfg.deliver)
		pt->cfg.deliver(pt->cfg.ctx, p->node, pkt, PROTO_HDR_SIZE + h.payload_len);
}

/* First authenticated frame of a session: pin the KDF that opened it, keeping the
 * other one for a grace period in case the peer is flexible too (see open_frame). */
static void authenticated(peer_table *pt, peer *p)
{
	if (p->authenticated)
		return;
	p->authenticated = true;
	if (p->has_prev_x) { /* the peer proved its new key: the old one is gone */
		retire_key(p, p->prev_x);
		p->has_prev_x = false;
	}
	p->kdf = pilot_session_kdf(p->sess);
	p->kdf_grace_until = peer_now(pt) + PEER_KDF_GRACE_MS;
	p->kx_tries = 0;
}

static void swap_kdf(peer_table *pt, peer *p)
{
	pilot_session *t = p->sess;

	p->sess = p->alt;
	p->alt = t;
	p->kdf = pilot_session_kdf(p->sess);
	if (p->authenticated)
		p->kdf_grace_until = peer_now(pt) + PEER_KDF_GRACE_MS;
}

/* Until a frame authenticates both variants are tried and the one that opens is
 * the peer's (a Go peer speaks exactly one). Two flexible C peers configured
 * differently may each learn the other's variant; a frame opening under the
 * other variant after pinning reveals that, and the lower node ID's configured
 * variant wins (the higher one follows what it receives). */
static int open_frame(peer_table *pt, peer *p, uint8_t *buf, size_t len, uint8_t **pl, size_t *pl_len)
{
	int rc;

	if (p->alt && p->authenticated && peer_now(pt) > p->kdf_grace_until) {
		pilot_session_free(p->alt);
		p->alt = NULL;
	}
	if (!p->alt)
		return pilot_session_open(p->sess, buf, len, pl, pl_len);
	/* A failed open may clobber the buffer: keep a copy for the other KDF. */
	memcpy(pt->scratch2, buf, len);
	rc = pilot_session_open(p->sess, buf, len, pl, pl_len);
	if (rc != -EBADMSG && rc != -EALREADY && rc != -ESTALE)
		return rc;
	if (pilot_session_open(p->alt, pt->scratch2, len, pl, pl_len) < 0)
		return rc;
	if (!p->authenticated || pt->cfg.node > p->node ||
	    pilot_session_kdf(p->alt) == pt->cfg.kdf)
		swap_kdf(pt, p);
	return 0;
}

static void handle_pils(peer_table *pt, uint8_t *buf, size_t len, const transport_ep *src,
			uint32_t relay)
{
	proto_pils s;
	peer *p;
	uint8_t *pl;
	size_t pl_len;
	int rc;

	if (proto_pils_decode(buf, len, &s) < 0 || s.node == 0 || s.node == pt->cfg.node ||
	    (relay && s.node != relay)) {
		pt->st.drop_malformed++;
		return;
	}
	p = peer_find(pt, s.node);
	if (!p && hold_pils(pt, s.node, buf, len, src, relay))
		return;
	if (!p || !p->sess) {
		pt->st.drop_no_session++;
		if (pt->cfg.ref_quirks)
			return; /* "encrypted packet from node but no key" */
		if (p)
			rekey_known(pt, p);
		else
			rekey_unknown(pt, s.node, src, relay);
		return;
	}
	rc = open_frame(pt, p, buf, len, &pl, &pl_len);
	if (rc == -EALREADY || rc == -ESTALE) {
		peer_event_info e = { .counter = s.counter };

		pt->st.drop_replay++;
		peer_emit(pt, PEER_EV_NONCE_REPLAY, s.node, &e);
		return;
	}
	if (rc < 0) {
		pt->st.drop_auth++;
		if (!pt->cfg.ref_quirks)
			rekey_known(pt, p);
		return;
	}
	authenticated(pt, p);
	p->last_rx_ms = peer_now(pt);
	p->unans_n = 0;
	peer_path_rx(pt, p, src, relay != 0, probe_request(pl, pl_len));
	handle_packet(pt, p, pl, pl_len, src, relay != 0);
}

static void handle_pilt(peer_table *pt, uint8_t *buf, size_t len, const transport_ep *src,
			uint32_t relay)
{
	const uint8_t *pkt;
	size_t plen;
	proto_hdr h;
	peer *p;

	if (pt->cfg.encrypt) { /* plaintext injection (tunnel.md §2, §13.3) */
		pt->st.drop_pilt++;
		return;
	}
	if (proto_pilt_decode(buf, len, &pkt, &plen) < 0 || proto_hdr_decode(pkt, plen, &h) < 0 ||
	    h.src.node == 0 || h.src.node == pt->cfg.node || (relay && h.src.node != relay)) {
		pt->st.drop_malformed++;
		return;
	}
	if (!(p = peer_get_or_create(pt, h.src.node)))
		return;
	p->last_rx_ms = peer_now(pt);
	peer_path_rx(pt, p, src, relay != 0, probe_request(pkt, plen));
	if (p->npend)
		peer_pending_flush(pt, p);
	handle_packet(pt, p, pkt, plen, src, relay != 0);
}

static void handle_frame(peer_table *pt, uint8_t *buf, size_t len, const transport_ep *src,
			 uint32_t relay_sender)
{
	pt->st.rx_frames++;
	switch (proto_frame_classify(buf, len)) {
	case PROTO_FRAME_PILS:
		handle_pils(pt, buf, len, src, relay_sender);
		break;
	case PROTO_FRAME_PILA:
	case PROTO_FRAME_PILK:
		handle_kx(pt, buf, len, src, relay_sender);
		break;
	case PROTO_FRAME_PILT:
		handle_pilt(pt, buf, len, src, relay_sender);
		break;
	case PROTO_FRAME_PILP:
		break; /* punch packets only open NAT mappings */
	case PROTO_FRAME_BEACON:
		if (relay_sender) /* no beacon messages inside a relay */
			pt->st.drop_malformed++;
		else if (pt->has_beacon && transport_ep_eq(src, &pt->beacon))
			peer_handle_beacon(pt, buf, len);
		else
			pt->st.drop_not_beacon++;
		break;
	default:
		if (len >= 4 && !memcmp(buf, "PIL", 3))
			pt->st.drop_malformed++;
		else
			pt->st.drop_unknown_magic++;
	}
}

void peer_handle_datagram(peer_table *pt, uint8_t *buf, size_t len, const transport_ep *src)
{
	handle_frame(pt, buf, len, src, 0);
}

/* Inner frame of a RelayDeliver from the beacon. */
void peer_handle_relayed(peer_table *pt, uint8_t *frame, size_t len, uint32_t sender)
{
	if (sender == 0 || sender == pt->cfg.node) {
		pt->st.drop_malformed++;
		return;
	}
	handle_frame(pt, frame, len, &pt->beacon, sender);
}

static void on_recv(void *ctx, transport_dgram *dg, size_t n)
{
	for (size_t i = 0; i < n; i++)
		peer_handle_datagram(ctx, dg[i].data, dg[i].len, &dg[i].ep);
}

/* ---- resolve ---- */

static void resolve_done(void *arg, const char *hostport, int how)
{
	bool relay_only = how == PEER_RESOLVE_RELAY_ONLY;
	peer_req *r = arg;
	peer_table *pt = r->pt;
	peer *p;
	transport_ep ep;

	if (!pt) {
		free(r);
		return;
	}
	req_unlink(pt, r);
	p = r->forgotten ? NULL : peer_find(pt, r->node);
	free(r);
	if (!p)
		return;
	p->resolving = false;
	p->refused_ms = how == PEER_RESOLVE_REFUSED ? peer_now(pt) : 0;
	if (!relay_only && hostport && transport_ep_parse(hostport, &ep) == 0)
		peer_resolved(pt, p, &ep, false);
	else
		peer_resolved(pt, p, NULL, relay_only);
}

void peer_start_resolve(peer_table *pt, peer *p)
{
	peer_req *r;

	if (p->resolving || !pt->cfg.resolve || !(r = req_new(pt, p->node, true))) {
		if (!pt->cfg.resolve && !p->resolving)
			peer_resolved(pt, p, NULL, false);
		return;
	}
	p->resolving = true;
	pt->cfg.resolve(pt->cfg.ctx, p->node, resolve_done, r);
}

/* ---- table ---- */

static int64_t tick_cb(pilot_loop *l, uint64_t id, void *arg)
{
	peer_table *pt = arg;

	peer_tick(pt);
	return DEF(pt->cfg.tick_ms, 200);
}

/* Several beacons (issue 18): the one in use left a Discover unanswered for
 * beacon_dead_ms: move to the next and Discover there at once (sessions stay;
 * relayed frames go to the new beacon, which learns our endpoint from it). */
static void beacon_failover(peer_table *pt, uint64_t now)
{
	char from[TRANSPORT_EP_STRLEN];

	if (pt->nbeacons < 2 || !pt->discover_wait_ms ||
	    now - pt->discover_wait_ms < DEF(pt->cfg.beacon_dead_ms, 3000))
		return;
	transport_ep_format(&pt->beacon, from);
	pt->beacon_i = (pt->beacon_i + 1) % pt->nbeacons;
	pt->beacon = pt->beacons[pt->beacon_i];
	memset(&pt->beacon_mtu, 0, sizeof(pt->beacon_mtu));
	transport_ep_format(&pt->beacon, pt->st.beacon);
	pt->st.beacon_failovers++;
	pt->st.have_public_ep = false;
	pt->discover_wait_ms = 0;
	log_warn("beacon failover from=%s to=%s reason=\"Discover unanswered\"", from, pt->st.beacon);
	peer_send_discover(pt);
	pt->next_discover_ms = now + DEF(pt->cfg.discover_ms, 25000);
}

void peer_tick(peer_table *pt)
{
	uint64_t now = peer_now(pt);

	beacon_failover(pt, now);
	if (pt->has_beacon && now >= pt->next_discover_ms) {
		peer_send_discover(pt);
		pt->next_discover_ms = now + DEF(pt->cfg.discover_ms, 25000);
	}
	for (size_t b = 0; b < PEER_BUCKETS; b++)
		for (peer *p = pt->buckets[b]; p; p = p->next)
			peer_path_tick(pt, p, now);
	peer_punch_drain(pt, now);
	key_retries(pt, now);
}

int peer_forget(peer_table *pt, uint32_t node)
{
	peer **pp = &pt->buckets[bucket(node)], *p;

	while (*pp && (*pp)->node != node)
		pp = &(*pp)->next;
	if (!(p = *pp))
		return -ENOENT;
	*pp = p->next;
	pt->npeers--;
	pt->forgot[bucket(node)] = node;
	if (p->pilk)
		pt->pilk_peers--;
	/* Answers to outstanding resolves/key lookups are discarded; a queued
	 * PunchRequest is skipped (peer_punch_drain). */
	for (peer_req *r = pt->reqs; r; r = r->next)
		if (r->node == node)
			r->forgotten = true;
	log_debug("peer forgotten node=%u path=%s", node, peer_path_name(p->path));
	peer_free(pt, p);
	return 0;
}

static int build_kx(const peer_table *pt, const pilot_x25519 *x, uint8_t *frame, size_t *len)
{
	proto_pilk k = { .node = pt->cfg.node };

	if (pt->cfg.identity) {
		*len = PROTO_PILA_LEN;
		return pilot_pila_build(pt->cfg.identity, pt->cfg.node, x->pub, frame, PROTO_PILA_LEN);
	}
	memcpy(k.x25519, x->pub, PROTO_X25519_LEN);
	*len = PROTO_PILK_LEN;
	return proto_pilk_encode(&k, frame, PROTO_PILA_LEN);
}

/* "a:1,b:2" into pt->beacons. */
static int parse_beacons(peer_table *pt, const char *list)
{
	char item[TRANSPORT_EP_STRLEN + 8];

	do {
		const char *end = strchr(list, ',');
		size_t len = end ? (size_t)(end - list) : strlen(list);

		while (len && *list == ' ')
			list++, len--;
		while (len && list[len - 1] == ' ')
			len--;
		if (!len || len >= sizeof(item) || pt->nbeacons == PEER_BEACONS_MAX)
			return -EINVAL;
		memcpy(item, list, len);
		item[len] = '\0';
		if (transport_ep_parse(item, &pt->beacons[pt->nbeacons]) < 0)
			return -EINVAL;
		pt->nbeacons++;
		list = end ? end + 1 : NULL;
	} while (list);
	return 0;
}

peer_table *peer_table_new(pilot_loop *loop, transport *t, const peer_config *cfg,
			   char *err, size_t errlen)
{
	peer_table *pt;

	if (!cfg->node) {
		snprintf(err, errlen, "peer table: own node ID is 0 (not registered?)");
		return NULL;
	}
	if (!(pt = calloc(1, sizeof(*pt)))) {
		snprintf(err, errlen, "peer table: out of memory");
		return NULL;
	}
	pt->loop = loop;
	pt->t = t;
	pt->cfg = *cfg;
	if (cfg->beacon && *cfg->beacon) {
		if (parse_beacons(pt, cfg->beacon) < 0) {
			snprintf(err, errlen,
				 "beacon %s: not a numeric host:port (or up to %d, "
				 "separated by commas)",
				 cfg->beacon, PEER_BEACONS_MAX);
			free(pt);
			return NULL;
		}
		pt->beacon_i = cfg->beacon_first < pt->nbeacons ? cfg->beacon_first : 0;
		pt->beacon = pt->beacons[pt->beacon_i];
		transport_ep_format(&pt->beacon, pt->st.beacon);
		pt->has_beacon = true;
	}
	pt->cfg.beacon = NULL; /* not kept: the caller's string */
	pilot_x25519_generate(&pt->x);
	if (build_kx(pt, &pt->x, pt->kx_frame, &pt->kx_frame_len) < 0) {
		snprintf(err, errlen, "peer table: cannot build key exchange frame");
		free(pt);
		return NULL;
	}
	transport_set_recv(t, on_recv, pt);
	pt->tick_timer = pilot_loop_add_timer(loop, DEF(cfg->tick_ms, 200), tick_cb, pt);
	if (pt->has_beacon) {
		peer_send_discover(pt);
		pt->next_discover_ms = peer_now(pt) + DEF(cfg->discover_ms, 25000);
	}
	return pt;
}

void peer_table_free(peer_table *pt)
{
	if (!pt)
		return;
	pilot_loop_del_timer(pt->loop, pt->tick_timer);
	transport_set_recv(pt->t, NULL, NULL);
	for (peer_req *r = pt->reqs, *n; r; r = n) {
		n = r->next;
		if (r->waiting) /* no callback will come */
			free(r);
		else
			r->pt = NULL; /* freed by their done callbacks */
	}
	for (size_t b = 0; b < PEER_BUCKETS; b++) {
		peer *p = pt->buckets[b], *n;
		for (; p; p = n) {
			n = p->next;
			peer_free(pt, p);
		}
	}
	pilot_x25519_wipe(&pt->x);
	sodium_memzero(pt, sizeof(*pt));
	free(pt);
}

const char *peer_path_name(enum peer_path p)
{
	static const char *const names[] = { "none", "direct", "punched", "relay" };

	return (unsigned)p < 4 ? names[p] : "?";
}

static void fill_info(const peer *p, peer_info *o)
{
	memset(o, 0, sizeof(*o));
	o->node = p->node;
	o->path = p->path;
	o->why = p->why;
	if (p->has_ep)
		transport_ep_format(&p->ep, o->endpoint);
	else
		snprintf(o->endpoint, sizeof(o->endpoint), "-");
	o->encrypted = p->sess != NULL;
	o->authenticated = p->authenticated;
	o->identity = p->identity;
	o->kdf = p->sess ? pilot_session_kdf(p->sess) : p->kdf;
	o->last_rx_ms = p->last_rx_ms;
	o->last_tx_ms = p->last_tx_ms;
	o->rx_packets = p->rx_packets;
	o->tx_packets = p->tx_packets;
	o->rx_bytes = p->rx_bytes;
	o->tx_bytes = p->tx_bytes;
	o->pending = p->npend;
}

size_t peer_list(const peer_table *pt, peer_info *out, size_t max)
{
	size_t n = 0;

	for (size_t b = 0; b < PEER_BUCKETS; b++)
		for (const peer *p = pt->buckets[b]; p; p = p->next, n++)
			if (n < max)
				fill_info(p, &out[n]);
	return n;
}

int peer_session_key(const peer_table *pt, uint32_t node, uint8_t pk[PROTO_ED25519_LEN])
{
	const peer *p = peer_find(pt, node);

	if (!p || !p->sess || !p->identity)
		return -ENOENT;
	memcpy(pk, p->sess_ed, PROTO_ED25519_LEN);
	return 0;
}

int peer_get(const peer_table *pt, uint32_t node, peer_info *out)
{
	const peer *p = peer_find(pt, node);

	if (!p)
		return -ENOENT;
	fill_info(p, out);
	return 0;
}

void peer_get_stats(const peer_table *pt, peer_stats *st)
{
	*st = pt->st;
}
