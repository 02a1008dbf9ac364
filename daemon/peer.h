/* The peer table: one entry per remote node with its tunnel session, path and
 * key-exchange state (tunnel.md §3-§10), fixing the reference's defects (§13):
 * no plaintext copies while encrypting, PILT refused while encrypting, duplicate
 * same-key exchanges never reset a session, replay state moves only after
 * authentication, undecryptable frames trigger a rate-limited re-key, our key
 * exchange is retransmitted until the peer proves it has it, relay is left again
 * once a direct path works, beacon messages only from the configured beacon, inner
 * Src bound to the tunnel sender, no blocking registry lookups (async callbacks).
 * Sessions are bound to keys (issue 12): a pinned or trusted node ID never gets
 * an anonymous (PILK) session, a pinned key changes only when the registry holds
 * the new one, a registry error is never taken for "no key" (see pinned_key).
 *
 * Everything runs on one pilot_loop and one transport. */
#ifndef PILOT_PEER_H
#define PILOT_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/transport.h"
#include "lib/crypto.h"
#include "lib/proto.h"

typedef struct peer_table peer_table;
struct pilot_loop;

/* Headroom contract of peer_send_packet: the packet buffer must have
 * PEER_HEADROOM writable bytes in front of it and PEER_TAILROOM after it; the
 * frame (relay header + PILS header + ciphertext + tag) is built in place there. */
#define PEER_HEADROOM (BEACON_RELAY_HDR + PROTO_PILS_HDR) /* 29 */
#define PEER_TAILROOM PROTO_TAG_LEN                      /* 16 */

#define PEER_PENDING_PER_PEER 64
#define PEER_PENDING_PEERS    256

/* Answer to a key lookup: err 0 and pk = the node's registry Ed25519 key;
 * -ENOENT = the registry has no such node; any other -errno = the registry could
 * not be asked or did not answer (rate limited, timeout, disconnected), which is
 * never taken for "no key": the lookup is retried (PEER_KEY_TRIES), then the
 * exchange fails. */
typedef void (*peer_key_done)(void *arg, int err, const uint8_t pk[PROTO_ED25519_LEN]);
/* What the node keeps about a peer's key beyond this process (trust.json). */
enum peer_pin {
	PEER_PIN_NONE = 0,  /* nothing */
	PEER_PIN_TRUSTED,   /* a trusted node whose key is not known yet */
	PEER_PIN_KEY,       /* pinned key */
};
/* Answer to a resolve: "host:port" of the node's endpoint, NULL = failure;
 * how: PEER_RESOLVE_RELAY_ONLY: the registry says the node is reachable only
 * through the beacon relay (a compat node, tunnel.md §10): relay pinned, no
 * punch, no direct probe. PEER_RESOLVE_REFUSED: the registry refused (a private
 * node that does not trust us yet): no tunnel at all, not even relayed (a
 * reference peer pins a relayed sender to the relay for good, issue 15); the
 * trust handshake goes through the registry (cfg.unreachable). */
enum {
	PEER_RESOLVE_OK = 0,
	PEER_RESOLVE_RELAY_ONLY = 1,
	PEER_RESOLVE_REFUSED = 2
};
typedef void (*peer_resolve_done)(void *arg, const char *hostport, int how);

#define PEER_BEACONS_MAX 8

/* Tunnel events for an observer (the daemon's webhooks, services.md §9). */
enum peer_event {
	PEER_EV_ADDED,        /* first session with a node: ep (NULL when relayed) */
	PEER_EV_ESTABLISHED,  /* a session installed: authenticated (PILA), relay, rekeyed */
	PEER_EV_RELAY,        /* the node's path switched to the beacon relay */
	PEER_EV_NONCE_REPLAY, /* a PILS frame refused as replayed: counter */
};

typedef struct peer_event_info {
	const transport_ep *ep;
	bool authenticated, relay, rekeyed;
	uint64_t counter;
} peer_event_info;

typedef struct peer_config {
	uint32_t node;                    /* own node ID */
	const pilot_identity *identity;   /* NULL = no identity: PILK instead of PILA */
	bool encrypt;                     /* PILS; false = plaintext PILT network */
	bool require_auth;                /* never accept PILK (pilotd's default) */
	enum pilot_kdf kdf;               /* default variant (PILOT_KDF_REF) */
	/* "host:port", several comma-separated (failover: a Discover unanswered
	 * for beacon_dead_ms moves to the next one), or NULL. */
	const char *beacon;
	unsigned beacon_first; /* index of the one to start with */
	void *ctx;
	/* Decoded, CRC-checked packet from from_node (inner Src checked). */
	void (*deliver)(void *ctx, uint32_t from_node, const uint8_t *pkt, size_t len);
	/* Both must call done exactly once, now or later (even after peer_table_free,
	 * when the answer is discarded). */
	void (*lookup_key)(void *ctx, uint32_t node, peer_key_done done, void *arg);
	void (*resolve)(void *ctx, uint32_t node, peer_resolve_done done, void *arg);
	/* Optional: packets for node were dropped because the registry refused to
	 * resolve it (PEER_RESOLVE_REFUSED); whatever waits for an answer may give up. */
	void (*unreachable)(void *ctx, uint32_t node);
	/* Key binding (issue 12), both optional. pinned_key: the node's pinned key
	 * (filled for PEER_PIN_KEY). A pinned or trusted node gets a session only
	 * through a PILA with its pinned key, never through PILK; a PILA with another
	 * key is accepted only when a registry lookup made for it returns that key
	 * (the registry changes a node's key only through its signed rotate_key):
	 * then it is logged and key_pinned gets old. key_pinned: a PILA session with
	 * pk was accepted (pin it; old = the replaced pin, else NULL). */
	enum peer_pin (*pinned_key)(void *ctx, uint32_t node, uint8_t pk[PROTO_ED25519_LEN]);
	void (*key_pinned)(void *ctx, uint32_t node, const uint8_t pk[PROTO_ED25519_LEN],
			   const uint8_t *old);
	/* Optional observer, called synchronously (also per replayed frame: it must
	 * be cheap and do its own rate limiting). */
	void (*event)(void *ctx, enum peer_event ev, uint32_t node, const peer_event_info *e);
	/* A Notify (tunnel.md §9, 0x0A) from the configured beacon; optional. */
	void (*beacon_notify)(void *ctx, uint8_t kind);
	/* Timing in ms; 0 = default (tests shorten them). */
	uint32_t tick_ms;             /* housekeeping period (200) */
	uint32_t kx_retry_ms;         /* first key-exchange retransmission (1000, x2, 6 tries) */
	uint32_t key_retry_ms;        /* failed key lookup: first retry (500, x2, PEER_KEY_TRIES) */
	uint32_t direct_timeout_ms;   /* no authenticated direct frame → relay (1500) */
	uint32_t relay_probe_ms;      /* relay peers: punch + direct probes (15000); relay_only
				       * peers: only the re-resolve */
	uint32_t reresolve_ms;        /* relay peers without a working direct path:
				       * registry resolve again at most this often (30000) */
	uint32_t punch_gap_ms;        /* PunchRequests leave at least this far apart (1100) */
	uint32_t silence_ms;          /* peer silent while we send → re-validate (8000) */
	uint32_t keepalive_ms;        /* send silence → keepalive (25000) */
	uint32_t discover_ms;         /* beacon Discover period (25000) */
	uint32_t beacon_dead_ms;      /* Discover unanswered: next beacon (3000) */
	uint32_t silent_rekey_ms;     /* stream packets or pings that expect an answer went
				       * out for this long with nothing from the peer → fresh
				       * key exchange (1000; then at most every 10 s) */
	bool ref_quirks;              /* testing only: like the reference, never answer an
				       * undecryptable frame with a key exchange, and a peer
				       * once on the relay stays there (issue 15) */
} peer_config;

/* Creates the table and points the transport's receive callback at it. The
 * transport stays the caller's (close it after peer_table_free). NULL on error. */
peer_table *peer_table_new(struct pilot_loop *loop, transport *t, const peer_config *cfg,
			   char *err, size_t errlen);
void peer_table_free(peer_table *pt); /* NULL-safe */

/* Tear down everything about node (untrust, revocation): its session and key
 * state, pending queue, path, endpoint and punch state. Nothing is sent. A later
 * packet to or from node starts from scratch (resolve, new key exchange).
 * Answers to lookups still outstanding for it are discarded. 0 or -ENOENT. */
int peer_forget(peer_table *pt, uint32_t node);

/* Send one marshalled Pilot packet (34-byte header + payload) to node. pkt must
 * honour the headroom contract above; its bytes are overwritten (sealed in place).
 * Without a session the packet is copied to the peer's bounded pending queue and
 * the key exchange starts. 0, -ENOBUFS (pending queue full: dropped and counted),
 * -EMSGSIZE, -EHOSTUNREACH (resolve failed and no beacon). */
int peer_send_packet(peer_table *pt, uint32_t node, uint8_t *pkt, size_t len);
/* Same for a buffer without headroom (one copy). */
int peer_send_packet_copy(peer_table *pt, uint32_t node, const uint8_t *pkt, size_t len);

/* The underlay MTU (IP packet bytes) towards node's current path: its endpoint
 * when direct, else the beacon's (relayed, or not resolved yet: an estimate).
 * Cached per endpoint and re-asked when the endpoint changes or the answer is
 * older than 30 s; never per packet. 0 = unknown (no endpoint and no beacon, a
 * relay-only transport). *ipv6: the IP header that applies (IPv4-mapped = IPv4). */
uint32_t peer_path_mtu(peer_table *pt, uint32_t node, bool *ipv6);

enum peer_path { PEER_PATH_NONE = 0, PEER_PATH_DIRECT, PEER_PATH_PUNCHED, PEER_PATH_RELAY };
const char *peer_path_name(enum peer_path p);

typedef struct peer_info {
	uint32_t node;
	enum peer_path path;
	const char *why;              /* static string: why this path */
	char endpoint[TRANSPORT_EP_STRLEN];
	bool encrypted;               /* a session exists */
	bool authenticated;           /* a frame from the peer authenticated under it */
	bool identity;                /* the peer proved an Ed25519 identity (PILA) */
	enum pilot_kdf kdf;
	uint64_t last_rx_ms, last_tx_ms; /* loop clock, 0 = never */
	uint64_t rx_packets, tx_packets;
	uint64_t rx_bytes, tx_bytes;  /* Pilot packets (header + payload) */
	unsigned pending;
} peer_info;

/* Fill up to max entries; returns the number of peers (may exceed max). */
size_t peer_list(const peer_table *pt, peer_info *out, size_t max);
int peer_get(const peer_table *pt, uint32_t node, peer_info *out); /* 0 or -ENOENT */
/* The Ed25519 key that authenticated node's current session (PILA): 0 and pk,
 * or -ENOENT (no session, or an anonymous PILK one). Cheap: for admission. */
int peer_session_key(const peer_table *pt, uint32_t node, uint8_t pk[PROTO_ED25519_LEN]);
/* We now trust node and said so to the registry: if it is on the relay because
 * the registry refused to resolve it (a private node before trust), resolve it
 * now and, while still refused (the peer's own report may be on its way), every
 * 2 s a few times; an endpoint is tried directly at once. No-op otherwise. */
void peer_table_trusted(peer_table *pt, uint32_t node);
/* Send a Discover to the beacon now (at most one per 2 s): the beacon may have
 * restarted and forgotten our verified endpoint (e.g. the registry beside it
 * reconnected). No-op without a beacon. */
void peer_table_rediscover(peer_table *pt);
/* Our underlay address changed: Discover now and prove the new source to every
 * peer on a direct path (key exchange + authenticated probes); sessions stay. */
void peer_table_migrated(peer_table *pt);

typedef struct peer_stats {
	uint64_t rx_frames, rx_delivered, tx_packets;
	uint64_t drop_malformed;      /* short/invalid frames, bad beacon messages */
	uint64_t drop_bad_crc;
	uint64_t drop_replay;
	uint64_t drop_auth;           /* PILS that failed to authenticate */
	uint64_t drop_no_session;
	uint64_t drop_unknown_magic;
	uint64_t drop_pilt;           /* PILT refused (encryption on) */
	uint64_t drop_spoofed_src;    /* inner Src != tunnel sender */
	uint64_t drop_not_beacon;     /* beacon messages from another source */
	uint64_t beacon_notifies;     /* Notify messages from the beacon */
	uint64_t drop_pending_full;
	uint64_t drop_no_route;
	uint64_t kx_rate_limited;
	uint64_t kx_rejected;         /* bad signature, key mismatch, PILK refused, stale */
	uint64_t kx_stale;            /* ... of which a replaced key of the peer (replay) */
	uint64_t kx_pilk_refused;     /* ... of which PILK (require-auth, trusted or keyed node) */
	uint64_t kx_key_changes;      /* pinned key replaced (registry-confirmed rotation) */
	uint64_t kx_lookup_errors;    /* key lookups the registry did not answer (retried) */
	uint64_t kx_lookup_failed;    /* exchanges dropped: no answer after PEER_KEY_TRIES */
	uint64_t kx_sent, kx_accepted, rekeys;
	uint64_t kx_early;       /* exchanges answered before the registry's key came */
	uint64_t kx_dup_waiting; /* exchange frames identical to one awaiting its key */
	uint64_t pils_held;      /* PILS held for such an exchange, opened after it */
	uint64_t silent_rekeys; /* fresh exchanges with peers silent while we send */
	uint64_t relay_switches, direct_upgrades;
	uint64_t punches;             /* PunchCommands obeyed (PILP x3 sent) */
	uint64_t punch_requests;      /* PunchRequests sent to the beacon */
	uint64_t punch_queue_full;    /* PunchRequests dropped: queue full (retried later) */
	uint64_t punch_by_endpoint;   /* PunchCommands attributed by endpoint (IP) match */
	uint64_t punch_by_recent;     /* ... to the most recent outstanding request */
	uint64_t punch_unattributed;  /* ... to no peer (someone else asked to punch us) */
	uint64_t reresolves;          /* registry resolves for relay peers */
	uint64_t keepalives_sent;
	uint64_t beacon_failovers; /* moves to the next configured beacon */
	uint64_t migrations; /* peer_table_migrated calls (underlay moves) */
	bool have_public_ep;
	char public_ep[TRANSPORT_EP_STRLEN]; /* from DiscoverReply */
	char beacon[TRANSPORT_EP_STRLEN];    /* the beacon in use, "" = none */
} peer_stats;

void peer_get_stats(const peer_table *pt, peer_stats *st);

#endif
