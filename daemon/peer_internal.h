/* Internals of the peer table shared by peer.c, peer_path.c, the unit test and
 * the fuzzer. Nothing outside daemon/peer* and tests includes this. */
#ifndef PILOT_PEER_INTERNAL_H
#define PILOT_PEER_INTERNAL_H

#include "daemon/peer.h"
#include "lib/loop.h"

#define PEER_BUCKETS      1024
#define PEER_MAX          65536
#define PEER_KX_TRIES     6
#define PEER_KX_INFLIGHT  64        /* key lookups outstanding for unverified frames */
#define PEER_KEY_TRIES    4         /* lookups per exchange frame when the registry errs */
#define PEER_UNSOL_SLOTS  256       /* rate-limit table for re-keys to unknown nodes */
#define PEER_UNSOL_PER_S  50        /* global cap on such re-keys */
#define PEER_KX_PER_S     5         /* verified-or-not exchanges per claimed node */
#define PEER_NEG_CACHE_MS 3000
#define PEER_KDF_GRACE_MS 2000      /* keep the other KDF after pinning */
#define PEER_OLD_X                8         /* replaced peer keys remembered per peer */
#define PEER_PILK_MAX     1024      /* peers created by anonymous PILK */
#define PEER_UPGRADE_FRAMES 3
#define PEER_PROBE_PAYLOAD "pathprobe.v1"
#define PEER_PUNCHQ       256       /* queued PunchRequests (one entry per peer) */
#define PEER_PUNCH_RECENT 8         /* PunchCommand endpoints remembered (punched label) */
#define PEER_PUNCH_FRESH_MS 10000   /* a PunchCommand endpoint counts as punched this long */
#define PEER_PUNCH_OUTSTANDING_MS 5000 /* our PunchRequest awaits its PunchCommand */
#define PEER_TRUST_RESOLVES       5    /* re-resolves after trust while still refused ... */
#define PEER_TRUST_RESOLVE_MS     2000 /* ... this far apart */
#define BEACON_SIGNED_LEN 109 /* 01 node pk ts sig, rendezvous/BEACON.md */
#define PEER_FRAME_ROOM   (BEACON_RELAY_HDR + PROTO_PILS_HDR + PROTO_MAX_PACKET + PROTO_TAG_LEN + 16)
#define PEER_MTU_CACHE_MS 30000     /* re-ask the kernel (ICMP-learned PMTU) this often */
#define PEER_HELD                 4         /* PILS frames held per early-answered exchange ... */
#define PEER_HELD_LEN             512       /* ... of at most this size (a SYN, a ping) */

/* The kernel's MTU towards one endpoint, as last asked (peer_path_mtu). */
typedef struct peer_mtu {
	transport_ep ep;
	uint64_t ms;                   /* when asked; 0 = never */
	uint32_t mtu;                  /* 0 = unknown */
	bool ipv6;
} peer_mtu;

/* Our own X25519 key for one peer (see peer_forget), instead of the table's. */
typedef struct peer_ownkey {
	pilot_x25519 x;
	uint8_t frame[PROTO_PILA_LEN];
	size_t len;
} peer_ownkey;

typedef struct pending_pkt {
	struct pending_pkt *next;
	size_t len;
	uint8_t buf[]; /* PEER_HEADROOM + len + PEER_TAILROOM */
} pending_pkt;

typedef struct peer {
	struct peer *next;             /* hash chain */
	uint32_t node;
	transport_ep ep;
	bool has_ep, resolving;
	transport_ep reg_ep;           /* last endpoint the registry resolved */
	bool has_reg_ep;
	bool pilk;                     /* created by an anonymous PILK (pilk_peers) */
	bool relay_pinned;             /* the registry said relay_only: relay, no punch/probe */
	uint64_t refused_ms;           /* the last resolve was refused (private peer), 0 */
	bool ref_relay;                /* ref_quirks: relay once, relay for good (reference) */
	enum peer_path path;
	const char *why;
	/* crypto */
	pilot_session *sess, *alt;     /* alt: the other KDF until a frame authenticates */
	peer_ownkey *own;              /* NULL = the table's key (pt->x, pt->kx_frame) */
	enum pilot_kdf kdf;            /* learned variant (cfg default until then) */
	bool has_x, authenticated, identity, has_ed;
	uint8_t x25519[PROTO_X25519_LEN];
	/* X25519 keys of the peer that a proven key change replaced, newest last: a
	 * genuine peer never goes back to one (a fresh key per process, tunnel.md
	 * §3.2), so an exchange bringing one back is a replay (kx_stale). The key
	 * replaced by an unproven change waits in prev_x: a replayed exchange with a
	 * key we never saw must not get the peer's real key refused. */
	uint8_t old_x[PEER_OLD_X][PROTO_X25519_LEN];
	unsigned old_x_n;
	uint8_t prev_x[PROTO_X25519_LEN];
	bool has_prev_x;
	uint8_t ed[PROTO_ED25519_LEN]; /* registry key, cached (only a registry answer moves it) */
	uint8_t sess_ed[PROTO_ED25519_LEN]; /* key of the PILA that made the session (identity) */
	uint64_t ed_neg_until, kdf_grace_until;
	uint8_t last_kx[PROTO_PILA_LEN]; /* last accepted exchange frame (skip re-verify) */
	size_t last_kx_len;
	/* our key exchange retransmission */
	unsigned kx_tries;
	uint64_t kx_next_ms, kx_backoff_ms, kx_sent_ms;
	uint64_t reply_ms;             /* last rate-limited reply (same-key, re-key) */
	uint64_t kx_rate_ms;
	unsigned kx_rate_n;
	/* path */
	uint64_t direct_ok_ms, direct_deadline_ms, direct_since_ms, next_probe_ms;
	unsigned direct_count;
	/* punching: punch_req_ms = our PunchRequest went out (0 = none outstanding:
	 * cleared when a PunchCommand is attributed to it) */
	uint64_t punch_req_ms, punch_queued_ms, punch_cmd_ms, next_resolve_ms;
	bool punch_queued;
	unsigned trust_resolves;       /* fast re-resolves left since trust (peer_table_trusted) */
	transport_ep punch_ep;         /* endpoint of the PunchCommand attributed to us */
	/* liveness */
	uint64_t last_rx_ms, last_tx_ms, rx_packets, tx_packets;
	/* silent peer (issue 15): the first packet that expects an answer (stream SYN,
	 * FIN or data, ping) since the last frame from the peer, how many since, and
	 * the last re-key it caused */
	uint64_t unans_first_ms, silent_rekey_at_ms;
	unsigned unans_n;
	uint64_t rx_bytes, tx_bytes;
	pending_pkt *pend_head, *pend_tail;
	unsigned npend;
	peer_mtu mtu;                  /* towards ep (direct paths) */
} peer;

/* An outstanding async lookup/resolve; survives the table (pt = NULL after free). */
typedef struct peer_req {
	struct peer_req *next, *prev;
	struct peer_table *pt;
	uint32_t node;
	bool is_resolve;
	bool forgotten;                /* peer_forget(node) since: discard the answer */
	/* key lookup for an unverified exchange frame */
	uint8_t frame[PROTO_PILA_LEN];
	size_t frame_len;
	transport_ep src;
	uint32_t relay_sender;
	/* Our exchange went back to src before the registry confirmed the frame's
	 * key (handle_kx, early_reply): when. PILS frames from the node arriving
	 * from src meanwhile wait here and are opened once the frame is accepted. */
	uint64_t early_ms;
	unsigned nheld;
	size_t held_len[PEER_HELD];
	uint8_t held[PEER_HELD][PEER_HELD_LEN];
	/* the registry did not answer: ask again at retry_ms (peer_tick) */
	unsigned tries;
	bool waiting;
	uint64_t retry_ms;
} peer_req;

struct peer_table {
	pilot_loop *loop;
	transport *t;
	peer_config cfg;
	peer *buckets[PEER_BUCKETS];
	size_t npeers;
	unsigned npend_peers, kx_inflight, pilk_peers;
	pilot_x25519 x;
	uint8_t kx_frame[PROTO_PILA_LEN];
	size_t kx_frame_len;
	bool has_beacon;
	transport_ep beacon; /* in use: beacons[beacon_i] */
	transport_ep beacons[PEER_BEACONS_MAX];
	unsigned nbeacons, beacon_i;
	uint64_t discover_wait_ms;     /* peer_now() of the oldest unanswered Discover, 0 */
	peer_mtu beacon_mtu;           /* towards the beacon (relayed and unknown paths) */
	uint64_t tick_timer, next_discover_ms, last_discover_ts;
	uint64_t last_discover_ms;          /* peer_now() of the last Discover sent */
	peer_req *reqs;
	uint32_t forgot[PEER_BUCKETS]; /* peer_forget'ed nodes, direct-mapped by bucket */
	struct { uint32_t node; uint64_t ms; } unsol[PEER_UNSOL_SLOTS];
	uint64_t unsol_window_ms;
	unsigned unsol_n;
	/* PunchRequests wait here and leave >= punch_gap_ms apart (a beacon grants a
	 * requester only so many per second): a ring of node IDs, one per peer. */
	uint32_t punchq[PEER_PUNCHQ];
	unsigned punchq_head, punchq_n;
	uint64_t punch_next_ms;
	/* Endpoints of recent PunchCommands, whoever they were for: an authenticated
	 * direct frame from one of them is a punched path (independent of attribution). */
	struct { transport_ep ep; uint64_t ms; } punched[PEER_PUNCH_RECENT];
	unsigned punched_i;
	peer_stats st;
	uint8_t scratch[PEER_FRAME_ROOM];  /* control packets, copy-sends */
	uint8_t scratch2[PEER_FRAME_ROOM]; /* second-KDF trial decrypt */
};

/* Process one datagram as if received from src (the transport callback calls it
 * per datagram). buf may be modified in place. */
void peer_handle_datagram(peer_table *pt, uint8_t *buf, size_t len, const transport_ep *src);
/* Housekeeping now (normally the tick timer). */
void peer_tick(peer_table *pt);

/* shared between peer.c and peer_path.c */
uint64_t peer_now(const peer_table *pt);
peer *peer_find(const peer_table *pt, uint32_t node);
peer *peer_get_or_create(peer_table *pt, uint32_t node);
/* Send a frame built at frame[0..len) (with BEACON_RELAY_HDR writable bytes in
 * front) along p's path (relay = wrap and send to the beacon). */
void peer_send_frame(peer_table *pt, peer *p, uint8_t *frame, size_t len);
void peer_send_frame_direct(peer_table *pt, const transport_ep *ep, const uint8_t *frame, size_t len);
void peer_send_frame_relay(peer_table *pt, uint32_t dest, uint8_t *frame, size_t len);
enum { PEER_VIA_PATH, PEER_VIA_DIRECT, PEER_VIA_RELAY };
void peer_send_kx(peer_table *pt, peer *p, int via);
/* Fresh own key and exchange for a peer silent while we send (peer.c). */
void peer_silent_rekey(peer_table *pt, peer *p);
void peer_kx_arm(peer_table *pt, peer *p);
/* Seal (or PILT-wrap) the packet at pkt (headroom contract) and send it. */
void peer_seal_send(peer_table *pt, peer *p, uint8_t *pkt, size_t len, int via);
/* Control packets: keepalive / path probe / probe answer. */
void peer_send_keepalive(peer_table *pt, peer *p);
void peer_send_probe(peer_table *pt, peer *p, int via);
void peer_start_contact(peer_table *pt, peer *p);
/* The direct path is on trial: no authenticated direct frame from p within
 * direct_timeout_ms (and a beacon) moves p to the relay (peer_path.c). */
void peer_direct_attempt(peer_table *pt, peer *p);
void peer_set_path(peer_table *pt, peer *p, enum peer_path path, const char *why);
/* Path accounting for an authenticated frame from p (src = UDP source; probe:
 * the frame is a path probe asking for an answer). */
void peer_path_rx(peer_table *pt, peer *p, const transport_ep *src, bool via_relay, bool probe);
void peer_handle_beacon(peer_table *pt, uint8_t *buf, size_t len);
/* Queue a PunchRequest for p (no-op without a beacon or when already queued);
 * sent now if the gap allows, else from the tick. */
void peer_punch_request(peer_table *pt, peer *p);
void peer_punch_drain(peer_table *pt, uint64_t now);
void peer_send_discover(peer_table *pt);
/* Discover now unless there is no beacon or one went out in the last 2 s
 * (peer_path.c). */
void peer_discover_soon(peer_table *pt, uint64_t now);
void peer_path_tick(peer_table *pt, peer *p, uint64_t now);
void peer_pending_flush(peer_table *pt, peer *p);
void peer_pending_drop(peer_table *pt, peer *p);
void peer_start_resolve(peer_table *pt, peer *p);
void peer_prefetch_key(peer_table *pt, peer *p);
/* A peer (path none) first heard through the relay: relay, and resolve it now. */
void peer_relay_first_contact(peer_table *pt, peer *p, const char *why);
/* Resolve answer: ep NULL = failed; relay_only: pin the relay (ep ignored). */
void peer_resolved(peer_table *pt, peer *p, const transport_ep *ep, bool relay_only);
/* Inner frame of a RelayDeliver from the beacon. */
void peer_handle_relayed(peer_table *pt, uint8_t *frame, size_t len, uint32_t sender);

/* cfg.event when set (webhooks). */
void peer_emit(peer_table *pt, enum peer_event ev, uint32_t node, const peer_event_info *e);

#endif
