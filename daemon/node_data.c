/* The data plane of pilotd: peer table (tunnels), connection table, trust, and
 * the callbacks that join them. Created on the first register_ok, because the
 * tunnel frames and packets carry our node ID. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "stream/conn.h"
#include "daemon/node.h"
#include "daemon/webhook.h"
#include "daemon/peer.h"
#include "stream/pmtu.h"
#include "daemon/registration.h"
#include "daemon/transport.h"
#include "daemon/trust.h"
#include "lib/jsonwire.h"
#include "lib/log.h"

#define POLL_PROMPT_MS 2000
#define NOTIFY_POLL_GAP_MS 1000 /* beacon Notify -> poll_handshakes at most once a second */
#define FORGET_POLL_MS 200      /* untrust: is the revoke's port-444 stream done yet? */
#define FORGET_MAX_MS 5000      /* ... forget the tunnel after this whatever it is doing */

/* ---- registry key and endpoint lookups (shared by the peer table and trust) ---- */
typedef void (*key_cb)(void *arg, int err, const uint8_t pk[PROTO_ED25519_LEN]);

typedef struct key_req {
	key_cb cb;
	void *arg;
} key_req;

/* An error reply means "no such node" only when it says so: our registry's
 * not_found, or a reference registry's code-less "request failed" (it refuses a
 * lookup for nothing else). rate_limited, busy, internal, a timeout or a lost
 * connection are not an answer (issue 12 §2: never "no key"). */
static int lookup_err(json_object *reply, int err)
{
	const char *code;

	if (err != -EREMOTEIO)
		return err;
	code = reply ? jw_get_str(reply, "code") : NULL;
	return !code || !strcmp(code, "not_found") ? -ENOENT : -EAGAIN;
}

static void key_reply(void *arg, json_object *reply, int err)
{
	key_req *q = arg;
	uint8_t pk[PROTO_ED25519_LEN];
	const char *s = reply ? jw_get_str(reply, "public_key") : NULL;

	if (!err && (!s || pilot_b64_decode(s, strlen(s), pk, sizeof(pk)) != (int)sizeof(pk)))
		err = -ENOENT;
	err = lookup_err(reply, err);
	q->cb(q->arg, err, err ? NULL : pk);
	free(q);
}

/* 0 (cb later) or -errno (cb never called). */
static int node_key_lookup(node *n, uint32_t id, key_cb cb, void *arg)
{
	key_req *q = malloc(sizeof(*q));
	int r;

	if (!q)
		return -ENOMEM;
	q->cb = cb;
	q->arg = arg;
	if ((r = registration_lookup(n->reg, id, key_reply, q)) < 0)
		free(q);
	return r;
}

/* peer table: lookup_key */
typedef struct peer_key_req {
	peer_key_done done;
	void *arg;
} peer_key_req;

static void peer_key_reply(void *arg, int err, const uint8_t pk[PROTO_ED25519_LEN])
{
	peer_key_req *q = arg;

	q->done(q->arg, err, err ? NULL : pk);
	free(q);
}

static void peer_lookup_key(void *ctx, uint32_t id, peer_key_done done, void *arg)
{
	node *n = ctx;
	peer_key_req *q = malloc(sizeof(*q));
	int r = -ENOMEM;

	if (!q || (r = node_key_lookup(n, id, peer_key_reply, q)) < 0) {
		free(q);
		done(arg, r, NULL); /* not sent (queue full, not connected): not "no key" */
		return;
	}
	q->done = done;
	q->arg = arg;
}

/* peer table: resolve */
typedef struct peer_res_req {
	peer_resolve_done done;
	void *arg;
	node *n;
	uint32_t id;
} peer_res_req;

/* The registry refused to disclose a private node: our code "forbidden", or
 * the reference registry's "resolve denied: node N is private ...". */
static bool resolve_refused(json_object *reply, int err)
{
	const char *code = reply ? jw_get_str(reply, "code") : NULL;
	const char *e = reply ? jw_get_str(reply, "error") : NULL;

	if (err != -EREMOTEIO || !reply)
		return false;
	return (code && !strcmp(code, "forbidden")) || (e && strstr(e, "is private"));
}

static void peer_resolve_reply(void *arg, json_object *reply, int err)
{
	peer_res_req *q = arg;
	const char *s = !err && reply ? jw_get_str(reply, "real_addr") : NULL;

	if (!err && q->n->refusal.node == q->id)
		q->n->refusal.ms = 0;
	if (err == -EREMOTEIO && reply) { /* kept for the hint of a failed connect (ctlsrv_op.c) */
		const char *m = jw_get_str(reply, "message"), *e = jw_get_str(reply, "error");
		q->n->refusal.node = q->id;
		q->n->refusal.ms = pilot_now_ms();
		snprintf(q->n->refusal.msg, sizeof(q->n->refusal.msg), "%s",
			 m           ? m
				 : e ? e
				     : "request failed");
	}

	q->done(q->arg, s && *s ? s : NULL,
		!err && reply && jw_get_bool(reply, "relay_only") ? PEER_RESOLVE_RELAY_ONLY
			: resolve_refused(reply, err)             ? PEER_RESOLVE_REFUSED
								  : PEER_RESOLVE_OK);
	free(q);
}

static void peer_unreachable(void *ctx, uint32_t id)
{
	node_hs_unreachable(ctx, id);
}

static void peer_resolve(void *ctx, uint32_t id, peer_resolve_done done, void *arg)
{
	node *n = ctx;
	peer_res_req *q;

	if (node_compat_on(n)) { /* compat: every peer is relay, pinned (tunnel.md §11.4) */
		done(arg, NULL, PEER_RESOLVE_RELAY_ONLY);
		return;
	}
	if (!(q = malloc(sizeof(*q)))) {
		done(arg, NULL, PEER_RESOLVE_OK);
		return;
	}
	q->done = done;
	q->arg = arg;
	q->n = n;
	q->id = id;
	if (registration_resolve(n->reg, id, peer_resolve_reply, q) < 0) {
		free(q);
		done(arg, NULL, PEER_RESOLVE_OK);
	}
}

/* The peer layer delivers only packets whose CRC it checked (handle_packet). */
static void peer_deliver(void *ctx, uint32_t from, const uint8_t *pkt, size_t len)
{
	node *n = ctx;

	if (n->conns)
		conn_input_checked(n->conns, from, pkt, len);
}

/* ---- connection table glue ---- */
static int conn_send(void *ctx, uint32_t to, uint8_t *pkt, size_t len)
{
	node *n = ctx;

	return peer_send_packet(n->peers, to, pkt, len);
}

/* Stream segments sized to the peer's underlay path (issue 5): never fragmented. */
static uint32_t conn_path_mss(void *ctx, uint32_t to)
{
	node *n = ctx;
	bool v6 = false;
	uint32_t mtu = n->peers ? peer_path_mtu(n->peers, to, &v6) : 0;

	if (n->o.underlay_mtu && (!mtu || mtu > (uint32_t)n->o.underlay_mtu))
		mtu = (uint32_t)n->o.underlay_mtu;
	return mtu ? pmtu_mss(mtu, v6, n->o.encrypt) : 0;
}

/* Private by default: an untrusted peer reaches only the handshake port. Trust
 * is bound to a key: beyond port 444 the session must have been made by a PILA
 * (an anonymous PILK session reaches port 444 only, public node or not), and for
 * a private node with the trusted entry's key. Plaintext networks (-encrypt=false)
 * authenticate nothing: IDs only, as before. */
static bool conn_admit(void *ctx, uint32_t from, uint16_t port, int protocol)
{
	node *n = ctx;
	uint8_t pk[PROTO_ED25519_LEN];
	bool keyed = !n->o.encrypt || (n->peers && peer_session_key(n->peers, from, pk) == 0);

	if (port == TRUST_PORT)
		return true;
	if (!keyed) {
		n->st.refused_anon++;
		n->st.refused++;
		return false;
	}
	if (n->o.public_node)
		return true;
	if (n->trust && (n->o.encrypt ? trust_admits(n->trust, from, pk) : trust_is_trusted(n->trust, from)))
		return true;
	n->st.refused++;
	return false;
}

/* The SYN budget of trusted peers (conn.h): trusted, and the session proved the
 * peer's Ed25519 identity with the trusted entry's key (as conn_admit); anonymous
 * (PILK) and plaintext sessions share the untrusted sources' budget whatever ID
 * they claim. */
static bool conn_trusted(void *ctx, uint32_t from)
{
	node *n = ctx;
	uint8_t pk[PROTO_ED25519_LEN];

	return n->trust && n->peers && peer_session_key(n->peers, from, pk) == 0
	       && trust_admits(n->trust, from, pk);
}

/* ---- key pins (trust.json) for the peer table ---- */
static enum peer_pin peer_pinned_key(void *ctx, uint32_t id, uint8_t pk[PROTO_ED25519_LEN])
{
	node *n = ctx;

	switch (n->trust ? trust_pinned_key(n->trust, id, pk) : TRUST_PIN_NONE) {
	case TRUST_PIN_KEY:
		return PEER_PIN_KEY;
	case TRUST_PIN_TRUSTED:
		return PEER_PIN_TRUSTED;
	default:
		return PEER_PIN_NONE;
	}
}

static void peer_key_pinned(void *ctx, uint32_t id, const uint8_t pk[PROTO_ED25519_LEN],
			    const uint8_t *old)
{
	node *n = ctx;

	if (n->trust && trust_pin_key(n->trust, id, pk) < 0)
		log_warn("trust: cannot pin the key of node=%u (out of memory)", id);
}

/* ---- trust ops ---- */
typedef struct trust_key_req {
	trust_key_cb done;
	void *op;
} trust_key_req;

static void trust_key_reply(void *arg, int err, const uint8_t pk[PROTO_ED25519_LEN])
{
	trust_key_req *q = arg;

	q->done(q->op, err, pk);
	free(q);
}

static int op_lookup_key(void *arg, uint32_t id, trust_key_cb done, void *op)
{
	node *n = arg;
	trust_key_req *q = malloc(sizeof(*q));
	int r;

	if (!q)
		return -ENOMEM;
	q->done = done;
	q->op = op;
	if ((r = node_key_lookup(n, id, trust_key_reply, q)) < 0)
		free(q);
	return r;
}

/* shares_network: look both nodes up and intersect their "networks". */
typedef struct net_req {
	trust_net_cb done;
	void *op;
	json_object *mine;
	int err, got, expected;
} net_req;

static bool in_list(json_object *arr, int64_t v)
{
	size_t i;

	for (i = 0; arr && i < json_object_array_length(arr); i++)
		if (json_object_get_int64(json_object_array_get_idx(arr, i)) == v)
			return true;
	return false;
}

static uint16_t lowest_shared(json_object *a, json_object *b)
{
	int64_t best = 0, v;
	size_t i;

	if (!json_object_is_type(a, json_type_array) || !json_object_is_type(b, json_type_array))
		return 0;
	for (i = 0; i < json_object_array_length(a); i++) {
		v = json_object_get_int64(json_object_array_get_idx(a, i));
		if (v > 0 && v <= 65535 && in_list(b, v) && (!best || v < best))
			best = v;
	}
	return (uint16_t)best;
}

/* Replies come in request order (one registry connection): ours, then the peer's. */
static void net_reply(void *arg, json_object *reply, int err)
{
	net_req *q = arg;
	json_object *nets = NULL;

	if (err && !q->err)
		q->err = err;
	if (!err)
		json_object_object_get_ex(reply, "networks", &nets);
	if (q->got++ == 0)
		q->mine = json_object_get(nets);
	else if (!q->err)
		q->done(q->op, 0, lowest_shared(q->mine, nets));
	if (q->got < q->expected)
		return;
	if (q->err)
		q->done(q->op, q->err, 0);
	json_object_put(q->mine);
	free(q);
}

static int op_shares_network(void *arg, uint32_t peer, trust_net_cb done, void *op)
{
	node *n = arg;
	net_req *q = calloc(1, sizeof(*q));
	int r;

	if (!q)
		return -ENOMEM;
	*q = (net_req){ .done = done, .op = op, .expected = 2 };
	if ((r = registration_lookup(n->reg, n->node_id, net_reply, q)) < 0) {
		free(q);
		return r;
	}
	if (registration_lookup(n->reg, peer, net_reply, q) < 0) {
		q->err = -ENOBUFS;
		q->expected = 1;
	}
	return 0;
}

typedef struct report_req {
	node *n;
	uint32_t peer;
	trust_reply_cb done;
	void *op;
} report_req;

/* Our side of a trust is on the registry: a private peer it refused to resolve
 * before may resolve now, so its path can leave the relay (peer_table_trusted). */
static void report_reply(void *arg, json_object *reply, int err)
{
	report_req *q = arg;

	if (!err && q->n->peers)
		peer_table_trusted(q->n->peers, q->peer);
	q->done(q->op, reply, err);
	free(q);
}

static int op_report_trust(void *arg, uint32_t peer, trust_reply_cb done, void *op)
{
	node *n = arg;
	report_req *q = malloc(sizeof(*q));
	int r;

	if (!q)
		return -ENOMEM;
	*q = (report_req){ .n = n, .peer = peer, .done = done, .op = op };
	if ((r = registration_report_trust(n->reg, peer, report_reply, q)) < 0)
		free(q);
	return r;
}

static int op_revoke_trust(void *arg, uint32_t peer, trust_reply_cb done, void *op)
{
	return registration_revoke_trust(((node *)arg)->reg, peer, done, op);
}

static int op_request_handshake(void *arg, uint32_t peer, const char *just, trust_reply_cb done,
				void *op)
{
	return registration_request_handshake(((node *)arg)->reg, peer, just, done, op);
}

static int op_respond_handshake(void *arg, uint32_t peer, bool accept, trust_reply_cb done,
				void *op)
{
	return registration_respond_handshake(((node *)arg)->reg, peer, accept, done, op);
}

static void poll_now(node *n);

static void poll_reply(void *arg, json_object *reply, int err)
{
	node *n = arg;

	n->poll_inflight = false;
	if (!err && reply && n->trust)
		node_data_relayed_handshakes(n, reply);
	if (n->poll_again && err != -ECANCELED) {
		n->poll_again = false;
		poll_now(n);
	}
}

static void poll_now(node *n)
{
	if (!n->reg)
		return;
	if (n->poll_inflight) {
		/* what we were told about may have landed after the registry answered it */
		n->poll_again = true;
		return;
	}
	if (registration_poll_handshakes(n->reg, poll_reply, n) == 0)
		n->poll_inflight = true;
}

static int64_t poll_soon_timer(pilot_loop *l, uint64_t id, void *arg)
{
	node *n = arg;

	n->poll_soon_timer = 0;
	poll_now(n);
	return 0;
}

static void op_poll_soon(void *arg)
{
	node *n = arg;

	if (!n->poll_soon_timer)
		n->poll_soon_timer = pilot_loop_add_timer(n->loop, 0, poll_soon_timer, n);
}

/* The beacon says a relayed handshake waits in our registry inbox: poll now, or
 * when a second has passed since the last Notify-driven poll (a burst of Notifies
 * costs one poll per second; none is lost, the last one always gets its poll). */
static void peer_beacon_notify(void *ctx, uint8_t kind)
{
	node *n = ctx;
	uint64_t now = pilot_loop_now_ms(n->loop), at;

	if (kind != BEACON_NOTIFY_HANDSHAKE || n->poll_soon_timer)
		return; /* unknown kind, or a poll is already coming */
	at = n->notify_poll_ms ? n->notify_poll_ms + NOTIFY_POLL_GAP_MS : now;
	if (at < now)
		at = now;
	n->notify_poll_ms = at;
	n->st.notify_polls++;
	n->poll_soon_timer = pilot_loop_add_timer(n->loop, (int64_t)(at - now), poll_soon_timer, n);
}

typedef struct reset_ctx {
	node *n;
	uint32_t peer;
	uint32_t ids[256];
	size_t nids;
} reset_ctx;

static void collect_peer_conns(void *arg, const conn_info *ci)
{
	reset_ctx *x = arg;

	/* Not the handshake streams: one may be carrying our handshake_revoke. */
	if (ci->remote.node == x->peer && ci->local_port != TRUST_PORT && ci->remote_port != TRUST_PORT
	    && x->nids < 256)
		x->ids[x->nids++] = ci->id;
}

/* ---- forgetting an untrusted peer's tunnel ----
 * Untrust (ours or the peer's revoke) ends the tunnel session too, but not before
 * the port-444 stream carrying the revoke is done: the peer needs the session to
 * receive it (ours) or to get its ACKs and FIN (theirs). */
typedef struct node_forget {
	struct node_forget *next;
	node *n;
	uint32_t peer;
	int64_t left_ms;
	uint64_t timer;
} node_forget;

typedef struct hs_live {
	uint32_t peer;
	bool live;
} hs_live;

static void hs_conn_live(void *arg, const conn_info *ci)
{
	hs_live *x = arg;

	if (ci->remote.node != x->peer || (ci->local_port != TRUST_PORT && ci->remote_port != TRUST_PORT))
		return;
	/* Done only when both FINs were exchanged: a stream still sending anything
	 * (data, FIN, the ACK of the peer's FIN) would start a new session at once. */
	if (ci->state != STREAM_CLOSED && ci->state != STREAM_TIME_WAIT)
		x->live = true;
}

static void forget_unlink(node *n, node_forget *f)
{
	for (node_forget **pp = &n->forgets; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	}
	free(f);
}

static int64_t forget_tick(pilot_loop *l, uint64_t id, void *arg)
{
	node_forget *f = arg;
	node *n = f->n;
	hs_live x = { .peer = f->peer };

	if (n->conns)
		conn_foreach(n->conns, hs_conn_live, &x);
	f->left_ms -= FORGET_POLL_MS;
	if (x.live && f->left_ms > 0)
		return FORGET_POLL_MS;
	if (n->peers && !(n->trust && trust_is_trusted(n->trust, f->peer))
	    && peer_forget(n->peers, f->peer) == 0)
		log_info("tunnel: forgot peer=%u (trust ended)", f->peer);
	forget_unlink(n, f);
	return 0;
}

static void forget_later(node *n, uint32_t peer)
{
	node_forget *f;

	for (f = n->forgets; f; f = f->next)
		if (f->peer == peer)
			return;
	if (!(f = calloc(1, sizeof(*f))))
		return;
	f->n = n;
	f->peer = peer;
	f->left_ms = FORGET_MAX_MS;
	if (!(f->timer = pilot_loop_add_timer(n->loop, FORGET_POLL_MS, forget_tick, f))) {
		free(f);
		return;
	}
	f->next = n->forgets;
	n->forgets = f;
}

static void forget_free_all(node *n)
{
	while (n->forgets) {
		node_forget *f = n->forgets;

		n->forgets = f->next;
		pilot_loop_del_timer(n->loop, f->timer);
		free(f);
	}
}

/* Trust ended: the peer's connections (other than the handshake port) end too,
 * and its tunnel session a little later. A public node serves everyone, so it
 * keeps both. */
/* handshake.* / trust.* webhooks (services.md §9). Trust with peer changed
 * either way: what the proxy's resolver cached about it no longer holds. */
static void op_event(void *arg, const char *event, uint32_t peer, const char *key, const char *value)
{
	json_object *d = json_object_new_object();

	node_proxy_forget(arg, peer);

	json_object_object_add(d, "peer_node_id", json_object_new_int64(peer));
	if (key)
		json_object_object_add(d, key, json_object_new_string(value ? value : ""));
	node_webhook(arg, event, d);
}

static void op_torn_down(void *arg, uint32_t peer)
{
	node *n = arg;
	reset_ctx x = { .n = n, .peer = peer };
	size_t i;
	conn *c;

	if (n->o.public_node || !n->conns)
		return;
	conn_foreach(n->conns, collect_peer_conns, &x);
	for (i = 0; i < x.nids; i++)
		if ((c = conn_lookup_id(n->conns, x.ids[i])))
			conn_reset(c);
	forget_later(n, peer);
}

/* Heartbeat-driven polls come from registration; this one runs every 2 s while
 * an outgoing request is unanswered, so a relayed accept lands promptly. */
static int64_t poll_tick(pilot_loop *l, uint64_t id, void *arg)
{
	node *n = arg;

	if (n->trust && trust_wants_poll(n->trust))
		poll_now(n);
	if (n->trust)
		trust_flush(n->trust); /* newly pinned keys, batched */
	return POLL_PROMPT_MS;
}

/* ---- bring-up ---- */
static void peers_up(node *n)
{
	char err[512];
	peer_config pc = {
		.node = n->node_id,
		.identity = &n->id,
		.encrypt = n->o.encrypt,
		.require_auth = n->o.require_auth,
		.kdf = strcmp(n->o.kdf, "new") == 0 ? PILOT_KDF_NEW : PILOT_KDF_REF,
		.beacon = node_compat_peer_beacon(n),
		.beacon_first = node_compat_on(n) ? 0 : n->beacon_first,
		.ctx = n,
		.deliver = peer_deliver,
		.lookup_key = peer_lookup_key,
		.pinned_key = peer_pinned_key,
		.key_pinned = peer_key_pinned,
		.resolve = peer_resolve,
		.unreachable = peer_unreachable,
		.beacon_notify = peer_beacon_notify,
		.event = webhook_peer_event,
		.ref_quirks = n->o.test_ref_peer,
	};

	if (!(n->peers = peer_table_new(n->loop, n->t, &pc, err, sizeof(err))))
		pilot_fatal("tunnel: %s", err);
}

static void conns_up(node *n)
{
	conn_config cc = {
		.loop = n->loop,
		.headroom = PEER_HEADROOM,
		.ctx = n,
		.send_packet = conn_send,
		.admit = conn_admit,
		.path_mss = conn_path_mss,
		.syn_rate = (uint32_t)n->o.syn_rate_limit,
		.syn_rate_peer = (uint32_t)n->o.syn_rate_limit_peer,
		.syn_burst_peer = n->o.syn_rate_limit_peer > 64 ? (uint32_t)n->o.syn_rate_limit_peer : 64,
		.trusted = conn_trusted,
		.syn_rate_untrusted = (uint32_t)n->o.syn_rate_limit_untrusted,
		.max_per_port = (uint32_t)n->o.max_conns_per_port,
		.max_total = (uint32_t)n->o.max_conns_total,
		.event = webhook_conn_event,
	};

	_Static_assert(PEER_TAILROOM <= CONN_TAILROOM, "tunnel tailroom");
	stream_params_default(&cc.stream);
	cc.stream.keepalive_us = (uint32_t)(n->o.keepalive * 1000);
	cc.stream.idle_us = (uint32_t)(n->o.idle_timeout * 1000);
	cc.stream.time_wait_us = (uint32_t)(n->o.time_wait * 1000);
	cc.stream.ref_quirks = n->o.test_ref_peer;
	if (n->o.test_ref_peer) /* ref holds 512 segments: about 700 KB of ours */
		cc.stream.rcvbuf = 1u << 20;
	randombytes_buf(&cc.seed, sizeof(cc.seed));
	if (!(n->conns = conn_table_new(&cc)))
		pilot_fatal("cannot create the connection table");
	conn_set_local_addr(n->conns, pilot_addr_make(0, n->node_id));
}

static void trust_up(node *n)
{
	char err[512];
	trust_config tc = {
		.path = n->have_identity_path ? n->trust_path : NULL,
		.id = &n->id,
		.ops = {
			.send_direct = node_hs_send_direct,
			.lookup_key = op_lookup_key,
			.shares_network = op_shares_network,
			.report_trust = op_report_trust,
			.revoke_trust = op_revoke_trust,
			.request_handshake = op_request_handshake,
			.respond_handshake = op_respond_handshake,
			.poll_soon = op_poll_soon,
			.torn_down = op_torn_down,
			.event = op_event,
			.arg = n,
		},
	};

	if (!(n->trust = trust_new(&tc, err, sizeof(err))))
		pilot_fatal("%s", err);
}

/* trust.json is loaded before registration so a corrupt file stops start-up. */
void node_data_load_trust(node *n)
{
	trust_up(n);
}

void node_data_up(node *n)
{
	int r;

	if (!n->trust)
		trust_up(n);
	trust_set_node_id(n->trust, n->node_id);
	peers_up(n);
	conns_up(n);
	if (!n->o.no_echo && (r = conn_echo_enable(n->conns)) < 0)
		log_warn("echo service not started err=%d", r);
	node_svc_up(n);
	if ((r = node_hs_listen(n)) < 0)
		pilot_fatal("cannot listen on the handshake port %d: %s", TRUST_PORT, strerror(-r));
	n->poll_timer = pilot_loop_add_timer(n->loop, POLL_PROMPT_MS, poll_tick, n);
	n->up = true;
	log_info("data plane up node_id=%u address=%s echo=%s", n->node_id, n->address,
		 n->o.no_echo ? "off" : "on");
}

void node_data_relayed_handshakes(node *n, json_object *reply)
{
	json_object *req = NULL, *resp = NULL;

	json_object_object_get_ex(reply, "requests", &req);
	json_object_object_get_ex(reply, "responses", &resp);
	if (n->trust)
		trust_on_poll(n->trust, req, resp);
}

size_t node_data_trusted(node *n, uint32_t *ids, size_t cap)
{
	return n->trust ? trust_trusted_ids(n->trust, ids, cap) : 0;
}

void node_data_shutdown(node *n)
{
	node_svc_down(n); /* control operations and services hold conn handles */
	node_hs_free(n); /* its timers must not touch conns after the shutdown */
	if (n->trust)
		trust_flush(n->trust);
	if (n->conns)
		conn_table_shutdown(n->conns);
	if (n->t)
		transport_flush(n->t);
}

void node_data_free(node *n)
{
	forget_free_all(n);
	if (n->loop) {
		pilot_loop_del_timer(n->loop, n->poll_timer);
		pilot_loop_del_timer(n->loop, n->poll_soon_timer);
	}
	node_svc_down(n);
	node_hs_free(n);
	conn_table_free(n->conns);
	n->conns = NULL;
	trust_free(n->trust);
	n->trust = NULL;
	peer_table_free(n->peers);
	n->peers = NULL;
	n->up = false;
}
