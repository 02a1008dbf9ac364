/* The trust handshake of port 444 (services.md §4): trusted / pending /
 * outgoing state, trust.json persistence (§4.5), the message codec (§4.2),
 * receiver validation (§4.3) and the processing rules (§4.4). It does no I/O
 * of its own: the stream layer, the registry client and the peer table are
 * reached through trust_ops callbacks, so the whole machine runs in unit tests.
 *
 * Hardening over the reference (see the report in trust.c's header comment):
 *   - a direct message counts only if its node_id is the authenticated tunnel
 *     sender and its public_key is the registry's key for that node, and the
 *     signature verifies under that key; unsigned/keyless messages are refused;
 *   - replay cache over the raw bytes (10 min), freshness 5 min / +30 s;
 *   - handshake_accept counts only when we have an outgoing request to the peer;
 *   - approve/reject of a node that is not pending and untrust of a node that is
 *     not trusted return -ENOENT.
 *
 * Callback contract (every "op" callback below):
 *   - An op returns 0 and later calls its completion exactly once, from the
 *     event loop, never from inside the op call; or it returns -errno at once
 *     and never calls the completion.
 *   - A completion may arrive after trust_free (the op context is then simply
 *     released), so the node may free trust and its providers in any order as
 *     long as each provider still completes (e.g. -ECANCELED) what it accepted. */
#ifndef PILOT_TRUST_H
#define PILOT_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "lib/crypto.h"

#define TRUST_PORT          444
#define TRUST_MAX_PENDING   1024   /* oldest evicted */
#define TRUST_MAX_TRUSTED   65536  /* further approvals refused */
#define TRUST_MAX_OUTGOING  1024   /* oldest evicted */
#define TRUST_MAX_JUSTIFY   1024   /* bytes; keeps a message well inside one segment */
#define TRUST_MAX_MSG       4096   /* bytes of one encoded message we accept */
#define TRUST_FRESH_PAST_S  300
#define TRUST_FRESH_FUTURE_S 30
#define TRUST_REPLAY_TTL_S  600
#define TRUST_REPLAY_SLOTS  4096
#define TRUST_MAX_INFLIGHT  256    /* direct messages waiting for a key lookup */
#define TRUST_FILE_MAX      (64u << 20)
#define TRUST_MAX_KEYS      16384  /* pinned keys of untrusted nodes (least recently seen evicted) */

typedef struct trust trust;

/* ---- completions the node calls ---- */
/* A registry write (report_trust, revoke_trust, request_handshake,
 * respond_handshake): same signature as regclient_cb, so the node can pass it
 * straight to registration_*: reply borrowed, err 0 / -EREMOTEIO / -errno. */
typedef void (*trust_reply_cb)(void *op, json_object *reply, int err);
/* The message was written on a port-444 stream (0) or could not be (-errno). */
typedef void (*trust_sent_cb)(void *op, int err);
/* The registry's Ed25519 key of a node (err 0) or -ENOENT / -errno. */
typedef void (*trust_key_cb)(void *op, int err, const uint8_t pk[PROTO_ED25519_LEN]);
/* The lowest network other than 0 that we and the peer are both members of,
 * 0 if none (err 0), or -errno when it could not be found out. */
typedef void (*trust_net_cb)(void *op, int err, uint16_t network);

typedef struct trust_ops {
	/* Dial <peer>:444, write buf once, close about 500 ms later. */
	int (*send_direct)(void *arg, uint32_t peer, const uint8_t *buf, size_t len,
			   trust_sent_cb done, void *op);
	/* Registry key of node (the node's peer table usually has it cached). */
	int (*lookup_key)(void *arg, uint32_t node, trust_key_cb done, void *op);
	/* Two registry lookups (ours and the peer's), intersect "networks". */
	int (*shares_network)(void *arg, uint32_t peer, trust_net_cb done, void *op);
	/* Signed registry calls: registration_report_trust & co. */
	int (*report_trust)(void *arg, uint32_t peer, trust_reply_cb done, void *op);
	int (*revoke_trust)(void *arg, uint32_t peer, trust_reply_cb done, void *op);
	int (*request_handshake)(void *arg, uint32_t peer, const char *justification,
				 trust_reply_cb done, void *op);
	int (*respond_handshake)(void *arg, uint32_t peer, bool accept,
				 trust_reply_cb done, void *op);
	/* Something waits in a registry inbox: run poll_handshakes soon (optional). */
	void (*poll_soon)(void *arg);
	/* Trust with peer ended: close its streams and tunnel (optional). */
	void (*torn_down)(void *arg, uint32_t peer);
	void *arg;
	/* A webhook-worthy change (services.md §9 names: handshake.received,
	 * handshake.pending, handshake.approved, handshake.auto_approved,
	 * handshake.rejected, trust.revoked, trust.revoked_by_peer); key/value
	 * is the event's extra field ("justification" or "reason") or NULL
	 * (optional; after arg so positional initialisers stay valid). */
	void (*event)(void *arg, const char *event, uint32_t peer, const char *key, const char *value);
} trust_ops;

typedef struct trust_config {
	const char *path;               /* trust.json; NULL = not persisted */
	const pilot_identity *id;       /* borrowed; signs our messages */
	trust_ops ops;
	int64_t (*now)(void *arg);      /* Unix seconds; NULL = time() (tests) */
	void *now_arg;
} trust_config;

/* Create and load cfg->path if it exists. A missing file is an empty state; a
 * corrupt or unreadable one is an error (-EINVAL / -errno) with a message naming
 * the file in err, and NULL is returned: the file is never silently emptied. */
trust *trust_new(const trust_config *cfg, char *err, size_t errlen);
void trust_free(trust *t); /* NULL-safe */

/* Our node ID, once registered (messages are refused before). */
void trust_set_node_id(trust *t, uint32_t node);

/* ---- input ---- */
/* The first data chunk of an inbound port-444 stream; from_node is the
 * authenticated tunnel sender. 0 when accepted for (async) verification, or
 * -EBADMSG undecodable, -EPERM node_id is not the sender / unsigned,
 * -ESTALE too old or in the future, -EALREADY replay, -EAGAIN too many in
 * flight, -ENOTCONN no node ID yet. The key check completes later. */
int trust_on_message(trust *t, uint32_t from_node, const uint8_t *buf, size_t len);
/* A poll_handshakes_ok reply's "requests" and "responses" arrays (either may
 * be NULL). Items were authenticated by the registry (signed by their sender). */
void trust_on_poll(trust *t, json_object *requests, json_object *responses);

/* ---- operator actions (pilotctl handshake / approve / reject / untrust) ---- */
/* 0 sent (direct, relay fallback in the background), -EALREADY already
 * trusted (nothing sent; the reference reports "sent"), -EINVAL bad peer or
 * justification longer than TRUST_MAX_JUSTIFY, -ENOTCONN no node ID yet. */
int trust_request(trust *t, uint32_t peer, const char *justification);
/* -ENOENT if peer is not pending, -ENOSPC at TRUST_MAX_TRUSTED. */
int trust_approve(trust *t, uint32_t peer);
int trust_reject(trust *t, uint32_t peer, const char *reason); /* -ENOENT if not pending */
int trust_untrust(trust *t, uint32_t peer);                     /* -ENOENT if not trusted */

/* ---- keys: trust is bound to a key, not to an ID (issue 12) ----
 * Every node we completed an authenticated exchange (PILA) with has its Ed25519
 * key pinned: a trusted node's in its trust.json entry ("public_key"), any other
 * node's in trust.json's "keys" list (our extension; the reference ignores it).
 * The peer table accepts a session for a pinned node only with that key, and a
 * trusted node (pinned or not yet) never anonymously. A trust.json entry written
 * without a key (older files, relayed handshakes) picks the key up from the
 * registry back-fill or the first authenticated session, whichever comes first. */
enum trust_pin {
	TRUST_PIN_NONE = 0,  /* nothing known: not trusted, no key ever held */
	TRUST_PIN_TRUSTED,   /* trusted, key not known yet */
	TRUST_PIN_KEY,       /* pk filled */
};
enum trust_pin trust_pinned_key(const trust *t, uint32_t node, uint8_t pk[PROTO_ED25519_LEN]);
/* An authenticated exchange with pk was accepted for node (the caller checked a
 * key change against the registry, see peer.h): pin pk. A trusted entry is saved
 * at once; the key list by trust_flush. 1 pinned or changed (logged), 0 same
 * key (last-seen time refreshed), -errno. */
int trust_pin_key(trust *t, uint32_t node, const uint8_t pk[PROTO_ED25519_LEN]);
/* Trusted, and its pinned key (if known yet) is pk. */
bool trust_admits(const trust *t, uint32_t node, const uint8_t pk[PROTO_ED25519_LEN]);
/* Save trust.json if the key list changed since the last save (a timer calls it). */
void trust_flush(trust *t);
size_t trust_count_keys(const trust *t);
/* "sha256:" and the first 16 hex digits of SHA-256(pk), NUL-terminated: short
 * enough to compare by eye (pilotctl trust here, pilotctl info there). */
#define TRUST_FPR_LEN 24
void trust_key_fingerprint(const uint8_t pk[PROTO_ED25519_LEN], char out[TRUST_FPR_LEN]);

/* ---- queries ---- */
bool trust_is_trusted(const trust *t, uint32_t node);
bool trust_is_pending(const trust *t, uint32_t node);
bool trust_is_outgoing(const trust *t, uint32_t node);
size_t trust_count_trusted(const trust *t);
size_t trust_count_pending(const trust *t);
/* True while an outgoing request is unanswered: poll_handshakes every few
 * seconds then, not only after the 30 s heartbeat. */
bool trust_wants_poll(const trust *t);
/* For registration_callbacks.trusted_peers: up to cap IDs, returns the total. */
size_t trust_trusted_ids(const trust *t, uint32_t *ids, size_t cap);
void trust_foreach_trusted(const trust *t, void (*fn)(void *arg, uint32_t node), void *arg);
/* cli.md §3.7 shapes (new references, caller puts):
 * [{node_id, public_key, justification, received_at}] and
 * [{node_id, public_key, key_fingerprint, approved_at, mutual, network}]
 * (key_fingerprint: "sha256:" + 16 hex digits of the pinned key's SHA-256, ""
 * while no key is pinned). */
json_object *trust_pending_json(const trust *t);
json_object *trust_trusted_json(const trust *t);

typedef struct trust_stats {
	uint64_t received, refused_decode, refused_sender, refused_unsigned, refused_key,
		 refused_signature, refused_stale, refused_replay, refused_busy,
		 unsolicited_accepts, save_errors;
} trust_stats;
void trust_get_stats(const trust *t, trust_stats *st);

/* ---- codec (pure; exposed for tests and the fuzzer) ---- */
enum trust_msg_type {
	TRUST_MSG_UNKNOWN = 0,
	TRUST_MSG_REQUEST,
	TRUST_MSG_ACCEPT,
	TRUST_MSG_REJECT,
	TRUST_MSG_REVOKE,
};

typedef struct trust_msg {
	enum trust_msg_type type;
	uint32_t node_id;
	bool has_key;
	uint8_t public_key[PROTO_ED25519_LEN];
	bool has_sig;
	uint8_t signature[PROTO_SIG_LEN];
	char justification[TRUST_MAX_JUSTIFY + 1];
	char reason[256];
	int64_t timestamp;
} trust_msg;

/* Decode one message: -EBADMSG for anything that is not a JSON object with a
 * string "type", numeric node_id/timestamp, a 32-byte key or "", a 64-byte
 * signature or "", and strings no longer than the fields above. Unknown types
 * decode as TRUST_MSG_UNKNOWN. */
int trust_msg_decode(const uint8_t *buf, size_t len, trust_msg *m);
/* Compact JSON in the reference's key order and escaping; *out malloc'd. */
int trust_msg_encode(const trust_msg *m, char **out, size_t *len);
/* Fill key and signature over "handshake:<m->node_id>:<receiver>". */
void trust_msg_sign(trust_msg *m, const pilot_identity *id, uint32_t receiver);
/* 0 if m's signature verifies under pk for receiver, else -EBADMSG. */
int trust_msg_verify(const trust_msg *m, const uint8_t pk[PROTO_ED25519_LEN], uint32_t receiver);
const char *trust_msg_type_name(enum trust_msg_type type);

/* ---- persistence (exposed for the fuzzer) ---- */
/* Replace t's trusted/pending sets from trust.json text. -EINVAL with a
 * message in err (naming the problem, not the file); t is unchanged then. */
int trust_load_buf(trust *t, const char *buf, size_t len, char *err, size_t errlen);
/* The trust.json text for the current state (malloc'd, NUL-terminated). */
int trust_dump(const trust *t, char **out, size_t *len);

#endif
