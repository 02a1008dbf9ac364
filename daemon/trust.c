/* The trust state machine (services.md §4.3-4.4) on top of trust_ops.
 *
 * Differences from the reference, and why:
 *   - Direct messages are bound to the tunnel: node_id must be the authenticated
 *     sender, public_key must be the registry's key for it, and the signature
 *     must verify under that key. Keyless/unsigned messages are refused. (The
 *     reference trusted the key inside the message: anyone could claim any ID.)
 *   - The replay cache hashes the raw bytes and is bounded (ring of
 *     TRUST_REPLAY_SLOTS; the oldest entry is overwritten).
 *   - handshake_accept (direct or relayed) counts only when we asked.
 *   - Shared-network auto-approval also applies to relayed requests.
 *   - approve/reject of a non-pending node and untrust of a non-trusted node
 *     are -ENOENT (the reference silently succeeded on approve).
 *   - An already-trusted re-request also re-reports trust (our registry needs
 *     both sides' report_trust for a pair; a lost pair is restored).
 *   - Our registry refuses respond_handshake(accept) unless a request was
 *     recorded there, so an accept that cannot be delivered directly for a
 *     request that came directly is relayed as request_handshake (the
 *     requester, holding an outgoing request, auto-approves it as mutual).
 *   - Bounded sets (pending, trusted, outgoing) and in-flight verifications. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "daemon/trust_internal.h"
#include "lib/fileutil.h"
#include "lib/jsonwire.h"
#include "lib/log.h"

#define TRUST_POLL_FAST_S 600 /* fast polling for an unanswered request this long */

enum op_kind { OP_VERIFY, OP_NET, OP_BACKFILL, OP_SEND, OP_REG };

typedef struct trust_op {
	struct trust_op *prev, *next;
	trust *t;             /* NULL once trust_free ran */
	enum op_kind kind;
	uint32_t peer;
	trust_msg *msg;       /* OP_VERIFY, OP_NET (request), OP_SEND */
	uint8_t hash[32];     /* OP_VERIFY: replay key */
	bool relayed;         /* OP_NET: came through the registry */
	bool fallback;        /* OP_SEND: relay when the direct send fails */
	const char *what;     /* OP_REG: for the log */
} trust_op;

/* ---- small helpers ---- */
int64_t trust_now(const trust *t)
{
	return t->now ? t->now(t->now_arg) : (int64_t)time(NULL);
}

void trust_pend_clear(trust_pend *p)
{
	free(p->justification);
	p->justification = NULL;
}

void trust_state_clear(trust *t)
{
	for (size_t i = 0; i < t->npending; i++)
		trust_pend_clear(&t->pending[i]);
	free(t->pending);
	free(t->trusted);
	free(t->keys);
	t->pending = NULL, t->trusted = NULL, t->keys = NULL;
	t->npending = t->ntrusted = t->cappending = t->captrusted = 0;
	t->nkeys = t->capkeys = 0;
}

/* Binary search over an array of structs whose first member is uint32_t node. */
size_t trust_find_idx(const void *base, size_t n, size_t sz, uint32_t node, bool *found)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t v = *(const uint32_t *)((const char *)base + mid * sz);

		if (v < node)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < n && *(const uint32_t *)((const char *)base + lo * sz) == node;
	return lo;
}

/* Make room at idx in a sorted array; 0 or -ENOMEM. */
int trust_insert_at(void **base, size_t *n, size_t *cap, size_t sz, size_t idx)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		void *g = realloc(*base, nc * sz);

		if (!g)
			return -ENOMEM;
		*base = g, *cap = nc;
	}
	char *b = *base;

	memmove(b + (idx + 1) * sz, b + idx * sz, (*n - idx) * sz);
	memset(b + idx * sz, 0, sz);
	(*n)++;
	return 0;
}

void trust_remove_at(void *base, size_t *n, size_t sz, size_t idx)
{
	char *b = base;

	memmove(b + idx * sz, b + (idx + 1) * sz, (*n - idx - 1) * sz);
	(*n)--;
}

static trust_peer *get_trusted(const trust *t, uint32_t node)
{
	bool f;
	size_t i = trust_find_idx(t->trusted, t->ntrusted, sizeof(*t->trusted), node, &f);

	return f ? &t->trusted[i] : NULL;
}

static trust_pend *get_pending(const trust *t, uint32_t node)
{
	bool f;
	size_t i = trust_find_idx(t->pending, t->npending, sizeof(*t->pending), node, &f);

	return f ? &t->pending[i] : NULL;
}

static bool del_pending(trust *t, uint32_t node)
{
	bool f;
	size_t i = trust_find_idx(t->pending, t->npending, sizeof(*t->pending), node, &f);

	if (f) {
		trust_pend_clear(&t->pending[i]);
		trust_remove_at(t->pending, &t->npending, sizeof(*t->pending), i);
	}
	return f;
}

/* An untrusted node keeps its key pinned (in the key list). */
static bool del_trusted(trust *t, uint32_t node)
{
	bool f;
	size_t i = trust_find_idx(t->trusted, t->ntrusted, sizeof(*t->trusted), node, &f);

	if (f && t->trusted[i].has_key)
		trust_key_put(t, node, t->trusted[i].pk);
	if (f)
		trust_remove_at(t->trusted, &t->ntrusted, sizeof(*t->trusted), i);
	return f;
}

static bool del_outgoing(trust *t, uint32_t node)
{
	bool f;
	size_t i = trust_find_idx(t->outgoing, t->noutgoing, sizeof(*t->outgoing), node, &f);

	if (f)
		trust_remove_at(t->outgoing, &t->noutgoing, sizeof(*t->outgoing), i);
	return f;
}

void trust_save(trust *t)
{
	char *buf;
	size_t len;
	int rc;

	if (!t->path)
		return;
	rc = trust_dump(t, &buf, &len);
	if (rc == 0) {
		rc = pilot_write_atomic(t->path, buf, len, 0600);
		free(buf);
	}
	if (rc == 0)
		t->keys_dirty = false;
	if (rc < 0) {
		t->st.save_errors++;
		log_warn("trust: cannot write file=%s err=\"%s\"", t->path, strerror(-rc));
	}
}

/* ---- op contexts ---- */
static trust_op *op_new(trust *t, enum op_kind kind, uint32_t peer)
{
	trust_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->t = t, op->kind = kind, op->peer = peer;
	op->next = t->ops_head;
	if (op->next)
		op->next->prev = op;
	t->ops_head = op;
	return op;
}

/* Unlink (unless trust_free orphaned it) and free. */
static void op_free(trust_op *op)
{
	trust *t = op->t;

	if (t) {
		if (op->prev)
			op->prev->next = op->next;
		else
			t->ops_head = op->next;
		if (op->next)
			op->next->prev = op->prev;
	}
	free(op->msg);
	free(op);
}

/* ---- registry writes (fire and forget, logged) ---- */
static void on_reg(void *arg, json_object *reply, int err)
{
	trust_op *op = arg;

	if (op->t && err)
		log_info("trust: registry %s peer=%" PRIu32 " failed err=\"%s\" reply=%s", op->what,
			 op->peer, strerror(-err), reply ? json_object_to_json_string(reply) : "-");
	else if (op->t && !strcmp(op->what, "request_handshake") && op->t->ops.poll_soon)
		op->t->ops.poll_soon(op->t->ops.arg);
	op_free(op);
}

enum reg_kind { REG_REPORT, REG_REVOKE, REG_REQUEST, REG_RESPOND };

static void reg_call(trust *t, const char *what, uint32_t peer, enum reg_kind kind, bool accept,
		     const char *justification)
{
	trust_op *op = op_new(t, OP_REG, peer);
	const trust_ops *o = &t->ops;
	int rc = -ENOSYS;

	if (!op)
		return;
	op->what = what;
	if (kind == REG_REPORT && o->report_trust)
		rc = o->report_trust(o->arg, peer, on_reg, op);
	else if (kind == REG_REVOKE && o->revoke_trust)
		rc = o->revoke_trust(o->arg, peer, on_reg, op);
	else if (kind == REG_REQUEST && o->request_handshake)
		rc = o->request_handshake(o->arg, peer, justification, on_reg, op);
	else if (kind == REG_RESPOND && o->respond_handshake)
		rc = o->respond_handshake(o->arg, peer, accept, on_reg, op);
	if (rc < 0) {
		log_info("trust: registry %s peer=%" PRIu32 " not sent err=\"%s\"", what, peer,
			 strerror(-rc));
		op_free(op);
	}
}

#define REPORT(t, p)        reg_call(t, "report_trust", p, REG_REPORT, false, NULL)
#define REVOKE(t, p)        reg_call(t, "revoke_trust", p, REG_REVOKE, false, NULL)
#define RELAY_REQ(t, p, j)  reg_call(t, "request_handshake", p, REG_REQUEST, false, j)
#define RESPOND(t, p, a)    reg_call(t, "respond_handshake", p, REG_RESPOND, a, NULL)

/* ---- sending ---- */
static void send_failed(trust *t, const trust_op *op)
{
	if (!op->fallback)
		return;
	/* A request, or an accept the peer's outgoing request turns into mutual trust. */
	RELAY_REQ(t, op->peer, op->msg->type == TRUST_MSG_REQUEST ? op->msg->justification : "");
}

static void on_sent(void *arg, int err)
{
	trust_op *op = arg;

	if (op->t && err) {
		log_info("trust: direct %s to peer=%" PRIu32 " failed err=\"%s\"%s",
			 trust_msg_type_name(op->msg->type), op->peer, strerror(-err),
			 op->fallback ? ", relaying through the registry" : "");
		send_failed(op->t, op);
	}
	op_free(op);
}

static void send_msg(trust *t, uint32_t peer, enum trust_msg_type type, const char *just,
		     const char *reason, bool fallback)
{
	trust_op *op = op_new(t, OP_SEND, peer);
	char *buf = NULL;
	size_t len;
	int rc = -ENOMEM;

	if (!op || !(op->msg = calloc(1, sizeof(*op->msg))))
		goto fail;
	op->fallback = fallback;
	op->msg->type = type;
	op->msg->node_id = t->me;
	op->msg->timestamp = trust_now(t);
	snprintf(op->msg->justification, sizeof(op->msg->justification), "%s", just ? just : "");
	snprintf(op->msg->reason, sizeof(op->msg->reason), "%s", reason ? reason : "");
	trust_msg_sign(op->msg, t->id, peer);
	rc = trust_msg_encode(op->msg, &buf, &len);
	if (rc == 0)
		rc = t->ops.send_direct ? t->ops.send_direct(t->ops.arg, peer, (uint8_t *)buf, len,
							      on_sent, op)
					: -ENOSYS;
	free(buf);
	if (rc == 0)
		return;
fail:
	if (op && op->msg)
		send_failed(t, op);
	if (op)
		op_free(op);
}

/* ---- state changes ---- */
static void start_backfill(trust *t, uint32_t peer);

static void event(trust *t, const char *name, uint32_t peer, const char *key, const char *value)
{
	if (t->ops.event)
		t->ops.event(t->ops.arg, name, peer, key, value);
}

/* peer becomes trusted: out of pending and outgoing, saved, reported. */
static int make_trusted(trust *t, uint32_t peer, const uint8_t *pk, bool mutual, uint16_t net)
{
	bool f;
	size_t i = trust_find_idx(t->trusted, t->ntrusted, sizeof(*t->trusted), peer, &f);
	trust_peer *p;

	if (!f) {
		if (t->ntrusted >= TRUST_MAX_TRUSTED) {
			log_warn("trust: %d trusted peers already, refusing peer=%" PRIu32,
				 TRUST_MAX_TRUSTED, peer);
			return -ENOSPC;
		}
		if (trust_insert_at((void **)&t->trusted, &t->ntrusted, &t->captrusted,
			      sizeof(*t->trusted), i) < 0)
			return -ENOMEM;
	}
	p = &t->trusted[i];
	p->node = peer;
	if (!pk && trust_key_get(t, peer)) /* pinned before it was trusted */
		pk = trust_key_get(t, peer)->pk;
	if (pk) {
		memcpy(p->pk, pk, PROTO_ED25519_LEN);
		p->has_key = true;
	}
	p->approved_at = trust_now(t);
	p->mutual = mutual;
	p->network = net;
	trust_key_del(t, peer); /* the entry holds the key now */
	del_pending(t, peer);
	del_outgoing(t, peer);
	trust_save(t);
	log_info("trust: peer=%" PRIu32 " trusted mutual=%d network=%u", peer, mutual, net);
	if (mutual || net)
		event(t, "handshake.auto_approved", peer, "reason", mutual ? "mutual" : "same_network");
	else
		event(t, "handshake.approved", peer, NULL, NULL);
	REPORT(t, peer);
	if (!p->has_key)
		start_backfill(t, peer);
	return 0;
}

static void evict_oldest_pending(trust *t)
{
	size_t old = 0;

	for (size_t i = 1; i < t->npending; i++)
		if (t->pending[i].received_at < t->pending[old].received_at)
			old = i;
	log_info("trust: pending list full, dropping peer=%" PRIu32, t->pending[old].node);
	trust_pend_clear(&t->pending[old]);
	trust_remove_at(t->pending, &t->npending, sizeof(*t->pending), old);
}

static void add_pending(trust *t, uint32_t peer, const uint8_t *pk, const char *just, bool relayed)
{
	char *j = strndup(just ? just : "", TRUST_MAX_JUSTIFY);
	bool f;
	size_t i;

	if (!j)
		return;
	if (!get_pending(t, peer) && t->npending >= TRUST_MAX_PENDING)
		evict_oldest_pending(t);
	i = trust_find_idx(t->pending, t->npending, sizeof(*t->pending), peer, &f);
	if (f) {
		trust_pend_clear(&t->pending[i]);
	} else if (trust_insert_at((void **)&t->pending, &t->npending, &t->cappending,
			     sizeof(*t->pending), i) < 0) {
		free(j);
		return;
	}
	trust_pend *p = &t->pending[i];

	p->node = peer;
	p->has_key = pk != NULL;
	if (pk)
		memcpy(p->pk, pk, PROTO_ED25519_LEN);
	p->justification = j;
	p->received_at = trust_now(t);
	p->relayed = relayed;
	trust_save(t);
	log_info("trust: handshake request from peer=%" PRIu32 " pending relayed=%d", peer, relayed);
	event(t, "handshake.received", peer, "justification", j);
	event(t, "handshake.pending", peer, "justification", j);
	if (!pk)
		start_backfill(t, peer);
}

static void add_outgoing(trust *t, uint32_t peer)
{
	bool f;
	size_t i;

	if (!trust_is_outgoing(t, peer) && t->noutgoing >= TRUST_MAX_OUTGOING) {
		size_t old = 0;

		for (size_t k = 1; k < t->noutgoing; k++)
			if (t->outgoing[k].sent_at < t->outgoing[old].sent_at)
				old = k;
		trust_remove_at(t->outgoing, &t->noutgoing, sizeof(*t->outgoing), old);
	}
	i = trust_find_idx(t->outgoing, t->noutgoing, sizeof(*t->outgoing), peer, &f);
	if (!f && trust_insert_at((void **)&t->outgoing, &t->noutgoing, &t->capoutgoing,
			    sizeof(*t->outgoing), i) < 0)
		return;
	t->outgoing[i].node = peer;
	t->outgoing[i].sent_at = trust_now(t);
}

/* ---- key back-fill for relayed peers ---- */
static void on_backfill(void *arg, int err, const uint8_t pk[PROTO_ED25519_LEN])
{
	trust_op *op = arg;
	trust *t = op->t;
	trust_peer *p;
	trust_pend *q;

	if (t && !err && pk) {
		if ((p = get_trusted(t, op->peer)) && !p->has_key) {
			memcpy(p->pk, pk, PROTO_ED25519_LEN), p->has_key = true;
			trust_save(t);
		} else if ((q = get_pending(t, op->peer)) && !q->has_key) {
			memcpy(q->pk, pk, PROTO_ED25519_LEN), q->has_key = true;
			trust_save(t);
		}
	}
	op_free(op);
}

static void start_backfill(trust *t, uint32_t peer)
{
	trust_op *op = op_new(t, OP_BACKFILL, peer);

	if (op && (!t->ops.lookup_key || t->ops.lookup_key(t->ops.arg, peer, on_backfill, op) < 0))
		op_free(op);
}

/* ---- processing rules (§4.4) ---- */
/* Accept an approved peer's request: directly (fallback: relay a request) or,
 * for a relayed request, through respond_handshake. */
static void answer_accept(trust *t, uint32_t peer, bool relayed)
{
	if (relayed)
		RESPOND(t, peer, true);
	else
		send_msg(t, peer, TRUST_MSG_ACCEPT, "", "", true);
}

static void on_net(void *arg, int err, uint16_t net)
{
	trust_op *op = arg;
	trust *t = op->t;
	const trust_msg *m = op->msg;

	if (!t)
		goto out;
	if (get_trusted(t, op->peer) || trust_is_outgoing(t, op->peer)) {
		/* settled meanwhile (our own request went out, or an operator approved) */
		if (!get_trusted(t, op->peer) &&
		    make_trusted(t, op->peer, m->has_key ? m->public_key : NULL, true, 0) < 0)
			goto out;
		answer_accept(t, op->peer, op->relayed);
	} else if (!err && net) {
		if (make_trusted(t, op->peer, m->has_key ? m->public_key : NULL, false, net) == 0)
			answer_accept(t, op->peer, op->relayed);
	} else {
		if (err)
			log_info("trust: network check for peer=%" PRIu32 " failed err=\"%s\"", op->peer,
				 strerror(-err));
		add_pending(t, op->peer, m->has_key ? m->public_key : NULL, m->justification,
			    op->relayed);
	}
out:
	op_free(op);
}

/* m is copied; for relayed requests it carries no key. */
static void on_request(trust *t, uint32_t peer, const trust_msg *m, bool relayed)
{
	const uint8_t *pk = m->has_key ? m->public_key : NULL;
	trust_op *op;

	if (get_trusted(t, peer)) {
		log_info("trust: peer=%" PRIu32 " already trusted, accepting again", peer);
		REPORT(t, peer);
		answer_accept(t, peer, relayed);
		return;
	}
	if (trust_is_outgoing(t, peer)) {
		if (make_trusted(t, peer, pk, true, 0) == 0)
			answer_accept(t, peer, relayed);
		return;
	}
	op = op_new(t, OP_NET, peer);
	if (op && (op->msg = malloc(sizeof(*m)))) {
		*op->msg = *m;
		op->relayed = relayed;
		if (t->ops.shares_network &&
		    t->ops.shares_network(t->ops.arg, peer, on_net, op) == 0)
			return;
	}
	if (op)
		op_free(op);
	add_pending(t, peer, pk, m->justification, relayed);
}

static void on_accept(trust *t, uint32_t peer, const uint8_t *pk)
{
	if (trust_is_outgoing(t, peer)) {
		make_trusted(t, peer, pk, true, 0);
	} else if (!get_trusted(t, peer)) {
		t->st.unsolicited_accepts++;
		log_info("trust: ignoring handshake_accept from peer=%" PRIu32 " (no request of ours)",
			 peer);
	}
}

static void on_revoke(trust *t, uint32_t peer)
{
	bool was = del_trusted(t, peer), had = del_pending(t, peer);

	del_outgoing(t, peer);
	if (was || had)
		trust_save(t);
	if (!was)
		return;
	log_info("trust: peer=%" PRIu32 " revoked trust", peer);
	event(t, "trust.revoked_by_peer", peer, NULL, NULL);
	REVOKE(t, peer);
	if (t->ops.torn_down)
		t->ops.torn_down(t->ops.arg, peer);
}

static void dispatch(trust *t, uint32_t peer, const trust_msg *m)
{
	switch (m->type) {
	case TRUST_MSG_REQUEST:
		on_request(t, peer, m, false);
		break;
	case TRUST_MSG_ACCEPT:
		on_accept(t, peer, m->public_key);
		break;
	case TRUST_MSG_REJECT:
		if (del_outgoing(t, peer)) {
			log_info("trust: peer=%" PRIu32 " rejected our request reason=\"%s\"", peer,
				 m->reason);
			event(t, "handshake.rejected", peer, "reason", m->reason);
		}
		break;
	case TRUST_MSG_REVOKE:
		on_revoke(t, peer);
		break;
	default:
		break; /* unknown types are ignored (§4.3) */
	}
}

/* ---- receiver validation (§4.3, bound to the tunnel and the registry) ---- */
static bool replay_seen(const trust *t, const uint8_t h[32], int64_t now)
{
	for (size_t i = 0; i < TRUST_REPLAY_SLOTS; i++) {
		const trust_replay_slot *s = &t->replay[i];

		if (s->at && s->at + TRUST_REPLAY_TTL_S >= now && !memcmp(s->hash, h, 32))
			return true;
	}
	return false;
}

static void replay_add(trust *t, const uint8_t h[32], int64_t now)
{
	trust_replay_slot *s = &t->replay[t->replay_head];

	memcpy(s->hash, h, 32);
	s->at = now ? now : 1;
	t->replay_head = (t->replay_head + 1) % TRUST_REPLAY_SLOTS;
}

/* A message must carry the node's pinned key, if it has one (the registry's
 * answer alone does not move a pin: the peer table does, after a confirmed
 * rotation, before any message of the new key can arrive). */
static bool pin_matches(const trust *t, uint32_t node, const uint8_t pk[PROTO_ED25519_LEN])
{
	uint8_t pin[PROTO_ED25519_LEN];

	return trust_pinned_key(t, node, pin) != TRUST_PIN_KEY ||
	       !memcmp(pin, pk, PROTO_ED25519_LEN);
}

static void on_key(void *arg, int err, const uint8_t pk[PROTO_ED25519_LEN])
{
	trust_op *op = arg;
	trust *t = op->t;
	const trust_msg *m = op->msg;

	if (!t)
		goto out;
	t->inflight--;
	if (err || !pk || memcmp(pk, m->public_key, PROTO_ED25519_LEN) || !pin_matches(t, op->peer, pk)) {
		t->st.refused_key++;
		log_info("trust: %s from peer=%" PRIu32 " refused: key is not the registry's%s",
			 trust_msg_type_name(m->type), op->peer, err ? " (lookup failed)" : "");
	} else if (trust_msg_verify(m, pk, t->me) < 0) {
		t->st.refused_signature++;
		log_info("trust: %s from peer=%" PRIu32 " refused: bad signature",
			 trust_msg_type_name(m->type), op->peer);
	} else if (replay_seen(t, op->hash, trust_now(t))) {
		t->st.refused_replay++;
	} else {
		replay_add(t, op->hash, trust_now(t));
		dispatch(t, op->peer, m);
	}
out:
	op_free(op);
}

static int precheck(trust *t, uint32_t from, const trust_msg *m, const uint8_t h[32])
{
	int64_t now = trust_now(t);

	if (m->node_id != from || from == 0 || from == t->me) {
		t->st.refused_sender++;
		return -EPERM;
	}
	if (!m->has_key || !m->has_sig) {
		t->st.refused_unsigned++;
		return -EPERM;
	}
	if (m->timestamp < now - TRUST_FRESH_PAST_S || m->timestamp > now + TRUST_FRESH_FUTURE_S) {
		t->st.refused_stale++;
		return -ESTALE;
	}
	if (replay_seen(t, h, now)) {
		t->st.refused_replay++;
		return -EALREADY;
	}
	if (t->inflight >= TRUST_MAX_INFLIGHT) {
		t->st.refused_busy++;
		return -EAGAIN;
	}
	return 0;
}

int trust_on_message(trust *t, uint32_t from_node, const uint8_t *buf, size_t len)
{
	trust_msg m;
	uint8_t h[32];
	trust_op *op;
	int rc;

	t->st.received++;
	if (!t->me)
		return -ENOTCONN;
	if (trust_msg_decode(buf, len, &m) < 0) {
		t->st.refused_decode++;
		return -EBADMSG;
	}
	crypto_hash_sha256(h, buf, len);
	if ((rc = precheck(t, from_node, &m, h)) < 0) {
		log_info("trust: %s from peer=%" PRIu32 " refused err=\"%s\"",
			 trust_msg_type_name(m.type), from_node, strerror(-rc));
		return rc;
	}
	if (!(op = op_new(t, OP_VERIFY, from_node)) || !(op->msg = malloc(sizeof(m)))) {
		if (op)
			op_free(op);
		return -ENOMEM;
	}
	*op->msg = m;
	memcpy(op->hash, h, 32);
	t->inflight++;
	rc = t->ops.lookup_key ? t->ops.lookup_key(t->ops.arg, from_node, on_key, op) : -ENOSYS;
	if (rc < 0) {
		t->inflight--;
		t->st.refused_key++;
		op_free(op);
	}
	return rc;
}

/* ---- relayed items (poll_handshakes) ---- */
static void relayed_request(trust *t, json_object *it)
{
	trust_msg m;
	uint32_t from = jw_get_u32(it, "from_node_id");
	const char *j = jw_get_str(it, "justification");

	if (!from || from == t->me)
		return;
	memset(&m, 0, sizeof(m));
	m.type = TRUST_MSG_REQUEST;
	m.node_id = from;
	snprintf(m.justification, sizeof(m.justification), "%s", j ? j : "");
	on_request(t, from, &m, true);
}

static void relayed_response(trust *t, json_object *it)
{
	uint32_t from = jw_get_u32(it, "from_node_id");

	if (!from || from == t->me)
		return;
	if (jw_get_bool(it, "accept"))
		on_accept(t, from, NULL);
	else if (del_outgoing(t, from))
		log_info("trust: peer=%" PRIu32 " rejected our request (relayed)", from);
}

void trust_on_poll(trust *t, json_object *requests, json_object *responses)
{
	if (!t->me)
		return;
	if (requests && json_object_is_type(requests, json_type_array))
		for (size_t i = 0; i < json_object_array_length(requests); i++) {
			json_object *it = json_object_array_get_idx(requests, i);

			if (json_object_is_type(it, json_type_object))
				relayed_request(t, it);
		}
	if (responses && json_object_is_type(responses, json_type_array))
		for (size_t i = 0; i < json_object_array_length(responses); i++) {
			json_object *it = json_object_array_get_idx(responses, i);

			if (json_object_is_type(it, json_type_object))
				relayed_response(t, it);
		}
}

/* ---- operator actions ---- */
static int check_peer(const trust *t, uint32_t peer)
{
	if (!t->me)
		return -ENOTCONN;
	return peer == 0 || peer == t->me ? -EINVAL : 0;
}

int trust_request(trust *t, uint32_t peer, const char *justification)
{
	int rc = check_peer(t, peer);

	if (rc < 0)
		return rc;
	if (!justification)
		justification = "";
	if (strlen(justification) > TRUST_MAX_JUSTIFY)
		return -EINVAL;
	if (get_trusted(t, peer))
		return -EALREADY;
	add_outgoing(t, peer);
	send_msg(t, peer, TRUST_MSG_REQUEST, justification, "", true);
	return 0;
}

int trust_approve(trust *t, uint32_t peer)
{
	trust_pend *p = get_pending(t, peer);
	uint8_t pk[PROTO_ED25519_LEN];
	bool has, relayed;
	int rc;

	if ((rc = check_peer(t, peer)) < 0)
		return rc;
	if (!p)
		return -ENOENT;
	has = p->has_key, relayed = p->relayed;
	memcpy(pk, p->pk, sizeof(pk));
	if ((rc = make_trusted(t, peer, has ? pk : NULL, false, 0)) < 0)
		return rc;
	if (relayed)
		RESPOND(t, peer, true);
	/* Direct too (prompt when reachable); a relayed request is already answered. */
	send_msg(t, peer, TRUST_MSG_ACCEPT, "", "", !relayed);
	return 0;
}

int trust_reject(trust *t, uint32_t peer, const char *reason)
{
	int rc = check_peer(t, peer);

	if (rc < 0)
		return rc;
	if (!del_pending(t, peer))
		return -ENOENT;
	trust_save(t);
	RESPOND(t, peer, false);
	send_msg(t, peer, TRUST_MSG_REJECT, "", reason ? reason : "", false);
	return 0;
}

int trust_untrust(trust *t, uint32_t peer)
{
	int rc = check_peer(t, peer);

	if (rc < 0)
		return rc;
	if (!del_trusted(t, peer))
		return -ENOENT;
	del_pending(t, peer);
	del_outgoing(t, peer);
	trust_save(t);
	log_info("trust: peer=%" PRIu32 " untrusted", peer);
	event(t, "trust.revoked", peer, NULL, NULL);
	REVOKE(t, peer);
	send_msg(t, peer, TRUST_MSG_REVOKE, "", "trust revoked", false);
	if (t->ops.torn_down)
		t->ops.torn_down(t->ops.arg, peer);
	return 0;
}

/* ---- queries ---- */
bool trust_is_trusted(const trust *t, uint32_t node)
{
	return get_trusted(t, node) != NULL;
}

bool trust_is_pending(const trust *t, uint32_t node)
{
	return get_pending(t, node) != NULL;
}

bool trust_is_outgoing(const trust *t, uint32_t node)
{
	bool f;

	trust_find_idx(t->outgoing, t->noutgoing, sizeof(*t->outgoing), node, &f);
	return f;
}

size_t trust_count_trusted(const trust *t)
{
	return t->ntrusted;
}

size_t trust_count_pending(const trust *t)
{
	return t->npending;
}

bool trust_wants_poll(const trust *t)
{
	int64_t now = trust_now(t);

	for (size_t i = 0; i < t->noutgoing; i++)
		if (t->outgoing[i].sent_at + TRUST_POLL_FAST_S >= now)
			return true;
	return false;
}

size_t trust_trusted_ids(const trust *t, uint32_t *ids, size_t cap)
{
	for (size_t i = 0; i < t->ntrusted && i < cap; i++)
		ids[i] = t->trusted[i].node;
	return t->ntrusted;
}

void trust_foreach_trusted(const trust *t, void (*fn)(void *arg, uint32_t node), void *arg)
{
	for (size_t i = 0; i < t->ntrusted; i++)
		fn(arg, t->trusted[i].node);
}

static json_object *key_json(const uint8_t *pk, bool has)
{
	char s[48] = "";

	if (has)
		pilot_b64_encode(pk, PROTO_ED25519_LEN, s, sizeof(s));
	return json_object_new_string(s);
}

json_object *trust_pending_json(const trust *t)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; a && i < t->npending; i++) {
		const trust_pend *p = &t->pending[i];
		json_object *o = json_object_new_object();

		json_object_object_add(o, "node_id", json_object_new_int64(p->node));
		json_object_object_add(o, "public_key", key_json(p->pk, p->has_key));
		json_object_object_add(o, "justification", json_object_new_string(p->justification));
		json_object_object_add(o, "received_at", json_object_new_int64(p->received_at));
		json_object_array_add(a, o);
	}
	return a;
}

void trust_key_fingerprint(const uint8_t pk[PROTO_ED25519_LEN], char out[TRUST_FPR_LEN])
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, pk, PROTO_ED25519_LEN);
	memcpy(out, "sha256:", 7);
	sodium_bin2hex(out + 7, TRUST_FPR_LEN - 7, h, 8);
}

static json_object *fpr_json(const uint8_t *pk, bool has)
{
	char s[TRUST_FPR_LEN] = "";

	if (has)
		trust_key_fingerprint(pk, s);
	return json_object_new_string(s);
}

json_object *trust_trusted_json(const trust *t)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; a && i < t->ntrusted; i++) {
		const trust_peer *p = &t->trusted[i];
		json_object *o = json_object_new_object();

		json_object_object_add(o, "node_id", json_object_new_int64(p->node));
		json_object_object_add(o, "public_key", key_json(p->pk, p->has_key));
		json_object_object_add(o, "key_fingerprint", fpr_json(p->pk, p->has_key));
		json_object_object_add(o, "approved_at", json_object_new_int64(p->approved_at));
		json_object_object_add(o, "mutual", json_object_new_boolean(p->mutual));
		json_object_object_add(o, "network", json_object_new_int(p->network));
		json_object_array_add(a, o);
	}
	return a;
}

void trust_get_stats(const trust *t, trust_stats *st)
{
	*st = t->st;
}

/* ---- life cycle ---- */
static int load_file(trust *t, char *err, size_t errlen)
{
	char *buf = NULL, why[200];
	size_t len;
	int rc = pilot_read_file(t->path, TRUST_FILE_MAX, &buf, &len);

	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", t->path, strerror(-rc));
		return rc;
	}
	rc = trust_load_buf(t, buf, len, why, sizeof(why));
	free(buf);
	if (rc < 0)
		snprintf(err, errlen, "%s: corrupt trust file: %s", t->path, why);
	return rc;
}

trust *trust_new(const trust_config *cfg, char *err, size_t errlen)
{
	trust *t;

	if (!cfg->id) {
		snprintf(err, errlen, "trust needs an identity");
		return NULL;
	}
	if (!(t = calloc(1, sizeof(*t))) ||
	    !(t->replay = calloc(TRUST_REPLAY_SLOTS, sizeof(*t->replay))) ||
	    (cfg->path && !(t->path = strdup(cfg->path)))) {
		snprintf(err, errlen, "out of memory");
		trust_free(t);
		return NULL;
	}
	t->id = cfg->id;
	t->ops = cfg->ops;
	t->now = cfg->now;
	t->now_arg = cfg->now_arg;
	if (t->path && load_file(t, err, errlen) < 0) {
		trust_free(t);
		return NULL;
	}
	return t;
}

void trust_set_node_id(trust *t, uint32_t node)
{
	t->me = node;
}

void trust_free(trust *t)
{
	if (!t)
		return;
	/* In-flight ops are released by their completions. */
	for (trust_op *op = t->ops_head; op; op = op->next)
		op->t = NULL;
	trust_state_clear(t);
	free(t->outgoing);
	free(t->replay);
	free(t->path);
	free(t);
}
