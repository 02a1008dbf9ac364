/* Registry internals shared by registry.c and the reg_*.c files. Nothing outside
 * rendezvous/reg*.c and the registry's own tests includes this. */
#ifndef RDV_REG_INTERNAL_H
#define RDV_REG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <sodium.h>

#include "rendezvous/registry.h"

/* ---- limits and timings (documented in SIGNATURES.md and the handlers file) ---- */
#define REG_MAX_TAGS          10
#define REG_INBOX_CAP         100   /* pending handshake requests per target (reference) */
#define REG_RESP_CAP          256   /* handshake responses per requester */
#define REG_HSREC_CAP         1000  /* remembered handshake requests per target */
#define REG_HSREC_TTL_S       (30 * 86400)
#define REG_HSREC_RELAY_S     600 /* how long a pending request opens the beacon relay */
#define REG_INVITE_CAP        64    /* pending invites per target node */
#define REG_JUSTIFY_MAX       4096  /* bytes of justification accepted */
#define REG_OWNER_MAX         256
#define REG_SIG_WINDOW_S      120   /* |now - sig_ts| accepted for v2 signatures */
#define REG_REPLAY_CAP        (1u << 20)
#define REG_RECLAIM_GAP_MS    (10 * 60 * 1000) /* owner reclaims: 1 per owner per 10 min */
#define REG_PENDING_CAP       65536 /* registers waiting for proof, in all */
#define REG_PENDING_PER_CONN  16    /* ... per connection (one per node) */
#define REG_BEACON_CAP        1024
#define REG_BEACON_TTL_MS     60000
#define REG_REAP_EVERY_MS     60000
#define REG_NET_PER_CREATOR   16
#define REG_RL_MAX_BUCKETS    65536
#define REG_RL_IDLE_MS        (4 * 60 * 1000)

/* Machine-readable error codes carried in the "code" field. */
#define E_NOT_FOUND     "not_found"
#define E_BAD_SIG       "bad_signature"
#define E_STALE_SIG     "stale_signature"
#define E_REPLAY_SIG    "replayed_signature"
#define E_RATE          "rate_limited"
#define E_INVALID       "invalid_argument"
#define E_CONFLICT      "conflict"
#define E_FORBIDDEN     "forbidden"
#define E_READ_ONLY     "read_only"
#define E_UNKNOWN_TYPE  "unknown_type"
#define E_LIMIT         "limit"
#define E_INTERNAL      "internal"
#define E_BUSY          "busy"
#define E_UNAVAILABLE   "unavailable"

/* ---- open-addressing hash map: u64 key -> u64 value (reg_map.c) ---- */
typedef struct rmap_ent {
	uint64_t key, val;
	uint8_t used;
} rmap_ent;

typedef struct rmap {
	rmap_ent *e;
	size_t cap, len; /* cap is 0 or a power of two */
} rmap;

bool rmap_get(const rmap *m, uint64_t key, uint64_t *val);
int rmap_put(rmap *m, uint64_t key, uint64_t val); /* insert or replace: 0 / -ENOMEM */
bool rmap_del(rmap *m, uint64_t key);
void rmap_free(rmap *m);
void rmap_clear(rmap *m);
/* Keys of every entry (malloc'd, *n set); NULL with *n = 0 when empty. */
uint64_t *rmap_keys(const rmap *m, size_t *n);

static inline uint64_t pair_key(uint32_t a, uint32_t b)
{
	return ((uint64_t)a << 32) | b;
}

static inline uint64_t upair_key(uint32_t a, uint32_t b)
{
	return a < b ? pair_key(a, b) : pair_key(b, a);
}

/* ---- records ---- */
typedef struct reg_hsreq {
	uint32_t from;
	int64_t ts;          /* unix seconds */
	char *justification;
} reg_hsreq;

typedef struct reg_hsresp {
	uint32_t from;
	bool accept;
	int64_t ts;
} reg_hsresp;

typedef struct reg_invite {
	uint16_t net;
	uint32_t inviter;
	int64_t ts;
} reg_invite;

typedef struct reg_node {
	uint32_t id;
	bool live;            /* false: reaped/deregistered, identity kept for reclaim */
	bool pub, task_exec;
	bool relay_only;      /* registered with relay_only: reachable only via the beacon relay */
	bool sig_v2;          /* has signed with v2: v1 signatures refused (no downgrade) */
	bool owner_proven;    /* owner set by a request its key signed (may recover the ID) */
	uint8_t pk[32];
	char pk_b64[48];
	char *owner;          /* NULL = none */
	char *hostname;       /* NULL = none (only live nodes have one) */
	char **tags;
	size_t ntags;
	int64_t polo;
	char real_addr[80];
	char src_ip[48];
	uint64_t last_seen_ms;
	uint16_t *nets;       /* memberships other than the backbone */
	size_t nnets;
	reg_hsreq *inbox;
	size_t ninbox;
	reg_hsresp *resp;
	size_t nresp;
	reg_invite *inv;
	size_t ninv;
	uint32_t hsrec_in;    /* remembered handshake requests targeting this node */
	uint32_t nets_created;
} reg_node;

enum reg_join_rule { JR_OPEN = 0, JR_TOKEN, JR_INVITE };

typedef struct reg_net {
	uint16_t id;
	char name[64];
	char join_rule[16];   /* as given at create time (the reference accepts any) */
	char *token;          /* NULL = none */
	int64_t created;      /* unix seconds */
	uint32_t creator;
	uint32_t *members;    /* unsorted; backbone keeps none (every live node) */
	size_t nmembers, capmembers;
} reg_net;

typedef struct reg_beacon {
	uint32_t id;
	char addr[128];
	uint64_t seen_ms;
} reg_beacon;

/* What an unsigned register of a known key (or an owner recovery) would set,
 * waiting for a request signed by that key on the same connection. */
typedef struct reg_pending {
	struct reg_pending *next; /* same connection */
	uint32_t node;
	bool reclaim;         /* owner recovery: pk is the new key, old_pk the node's */
	uint8_t pk[32], old_pk[32];
	char real_addr[80];
	char src_ip[48];
	bool relay_only;
	char *owner, *hostname;
} reg_pending;

typedef struct reg_bucket {
	char ip[48];          /* rate-limit key (an IPv4 address or an IPv6 /64) */
	double tok[4];
	uint64_t last_ms;
	uint16_t spent[4]; /* tokens taken here since the last reg_rl_spent (shared stores) */
} reg_bucket;

enum rl_class { RL_REGISTER = 0, RL_WRITE, RL_READ, RL_MISS, RL_NONE };

typedef struct reg_store reg_store;

struct registry {
	reg_config cfg;
	char *store_path, *admin_token, *replication_token;
	uint8_t hkey[crypto_shorthash_KEYBYTES];

	rmap nodes;       /* id -> reg_node* (live and reaped) */
	rmap keyidx;      /* H(public key) -> id */
	rmap hostidx;     /* H(hostname) -> id (live nodes) */
	rmap owneridx;    /* H(owner) -> id (live and reaped) */
	rmap pairs;       /* upair(a,b) -> 1 */
	rmap halves;      /* pair(from,to) -> unix s: one-sided trust */
	rmap hsrec;       /* pair(from,to) -> unix s: handshake requests ever made */
	rmap nets;        /* id -> reg_net* (incl. backbone) */
	rmap netnames;    /* H(name) -> id */
	rmap replay;      /* H(signature) -> expiry (unix s) */
	rmap reclaims;    /* H(owner) -> ms of last owner reclaim */
	rmap buckets;     /* H(ip key) -> reg_bucket* */
	rmap beacons;     /* beacon id -> reg_beacon* */
	rmap pending;     /* connection id -> reg_pending* (list) */
	size_t npending;

	/* Set by reg_check_sig for the request being handled: the node whose key
	 * verified its signature (0 = none), that key, and whether it was v2. */
	uint32_t sig_node;
	uint8_t sig_pk[32];
	bool sig_was_v2;
	/* ... and its v2 signature with the expiry of its replay-cache entry:
	 * st_commit adds them to the request's write for a shared back end. */
	bool sig_pend;
	uint8_t sig_pend_sig[64];
	int64_t sig_pend_exp;
	uint64_t sig_dep; /* the write that carried it: later writes of the request depend on it */

	uint32_t next_node;
	uint32_t next_net;  /* 16-bit space; 65536 = exhausted */
	size_t live_count;

	uint64_t last_reap_ms, last_gc_ms;
	uint64_t generation;  /* see reg_generation() */
	uint64_t busy;        /* writes refused: store queue full */
	reg_stats st;
	reg_store *db;
	reg_inbox_cb inbox_cb;  /* see reg_set_inbox_cb() */
	void *inbox_arg;
};

/* ---- registry.c helpers used by handlers ---- */
uint64_t reg_hash(const registry *r, const void *data, size_t len);
uint64_t reg_hash_str(const registry *r, const char *s);
reg_node *reg_node_get(const registry *r, uint32_t id);
reg_node *reg_live_node(const registry *r, uint32_t id);
reg_node *reg_node_by_key(const registry *r, const uint8_t pk[32]);
reg_node *reg_node_by_hostname(const registry *r, const char *h);
reg_node *reg_node_by_owner(const registry *r, const char *owner);
reg_net *reg_net_get(const registry *r, uint16_t id);
reg_net *reg_net_by_name(const registry *r, const char *name);
/* Take from's entry out of n's handshake inbox / response list in memory (the
 * store is the caller's business). true if there was one. (reg_trust.c) */
bool reg_inbox_remove(reg_node *n, uint32_t from);
bool reg_resp_remove(reg_node *n, uint32_t from);
bool reg_node_in_net(const reg_node *n, uint16_t net);
bool reg_share_net(const reg_node *a, const reg_node *b);
bool reg_has_pair(const registry *r, uint32_t a, uint32_t b);
int64_t reg_now_s(const reg_ctx *ctx);

json_object *reg_err(registry *r, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
json_object *reg_err_ref(registry *r, const char *code, const char *ref_error, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
json_object *reg_ok(const char *type);
/* Fails a request whose store transaction failed: rolls back and reports. */
json_object *reg_store_fail(registry *r);
void reg_fmt_addr(char out[32], uint16_t net, uint32_t node);
void jadd_str(json_object *o, const char *k, const char *v);
void jadd_int(json_object *o, const char *k, int64_t v);
void jadd_bool(json_object *o, const char *k, bool v);

/* node record lifecycle (reg_nodes.c) */
reg_node *reg_node_new(registry *r, uint32_t id);
void reg_node_free(reg_node *n);
void reg_node_clear_attrs(registry *r, reg_node *n);
int reg_node_set_hostname(registry *r, reg_node *n, const char *h);
int reg_node_set_key(registry *r, reg_node *n, const uint8_t pk[32]);
int reg_node_set_owner(registry *r, reg_node *n, const char *owner);
void reg_node_kill(registry *r, reg_node *n);
int reg_node_add_net(reg_node *n, uint16_t net);
void reg_node_del_net(reg_node *n, uint16_t net);
int reg_net_add_member(reg_net *nt, uint32_t id);
void reg_net_del_member(reg_net *nt, uint32_t id);
reg_net *reg_net_new(registry *r, uint16_t id, const char *name, const char *rule);
void reg_net_free(reg_net *nt);
void reg_reap(registry *r, uint64_t now_ms);
const char *reg_validate_hostname(const char *h);
const char *reg_validate_label(const char *s, size_t maxlen);
int reg_tags_set(reg_node *n, char **tags, size_t ntags);
/* Drop every trust pair, half and handshake record involving id (reg_trust.c). */
void reg_trust_forget(registry *r, uint32_t id);
void reg_hsrec_expire(registry *r, int64_t now_s);

/* ---- signatures (reg_sig.c) ---- */
/* Check the request's signature by signer. v1 is the reference challenge string;
 * fields are the v2 values (see SIGNATURES.md). Returns NULL when valid, else an
 * error response. */
json_object *reg_check_sig(registry *r, const reg_node *signer, json_object *req,
			   const char *v1, const char *fields, const reg_ctx *ctx);
void reg_replay_gc(registry *r, int64_t now_s);
/* A v2 signature another instance accepted for a write (change feed). */
void reg_replay_note(registry *r, const uint8_t sig[64], int64_t expires);
/* After a handler: a verified signature by a node's key applies what waited on
 * this connection for it and marks v2 use (reg_nodes.c). */
void reg_after_signed(registry *r, const reg_ctx *ctx);
void reg_pending_free_all(registry *r);
bool reg_admin_ok(const registry *r, json_object *req);
bool reg_secret_eq(const char *a, const char *b);

/* ---- rate limits (reg_ratelimit.c) ---- */
/* true if a token of class c was taken for ctx's source */
bool reg_rl_take(registry *r, enum rl_class c, const reg_ctx *ctx);
void reg_rl_gc(registry *r, uint64_t now_ms);
void reg_rl_free(registry *r);
/* Several instances on one database share the budgets: the tokens this instance
 * took since the last call, per source, as [u8 len][key][4 x u16 big-endian]
 * entries into out (at most cap bytes; what does not fit stays for the next
 * call). Returns the bytes written. */
size_t reg_rl_spent(registry *r, uint8_t *out, size_t cap);
/* Another instance's reg_rl_spent: take the same tokens from the same sources
 * here (a budget may go below zero, down to minus its capacity). */
void reg_rl_charge(registry *r, const uint8_t *p, size_t len, uint64_t now_ms);

/* ---- handlers ---- */
typedef json_object *(*reg_handler)(registry *r, json_object *req, const reg_ctx *ctx);
#define H(name) json_object *name(registry *r, json_object *req, const reg_ctx *ctx)
H(h_register); H(h_heartbeat); H(h_lookup); H(h_resolve); H(h_resolve_hostname);
H(h_deregister); H(h_set_visibility); H(h_set_hostname); H(h_set_tags);
H(h_set_task_exec); H(h_rotate_key); H(h_get_polo); H(h_update_polo); H(h_set_polo);
H(h_punch); H(h_beacon_register); H(h_beacon_list);
H(h_report_trust); H(h_revoke_trust); H(h_request_handshake); H(h_poll_handshakes);
H(h_respond_handshake);
H(h_list_nodes); H(h_list_networks); H(h_create_network); H(h_join_network);
H(h_leave_network); H(h_invite); H(h_poll_invites); H(h_respond_invite);
#undef H

/* ---- persistence (reg_store.c); every function is a no-op without a store ---- */
int st_open(registry *r, const char *path, char *err, size_t errlen);
int st_load(registry *r, char *err, size_t errlen);
int st_start(registry *r, char *err, size_t errlen); /* the writer thread, after st_load */
void st_close(registry *r);   /* commits what is queued first */
void st_begin(registry *r);
/* Queue the rows written since st_begin for the writer thread: 0 (the change
 * gets the next sequence number, st_submitted()), or -EIO when they could not
 * even be collected (out of memory; nothing queued). Never waits for the disk. */
int st_commit(registry *r);
void st_rollback(registry *r);
uint64_t st_submitted(registry *r);  /* newest sequence number handed out (0 = none) */
uint64_t st_durable(registry *r);    /* every seq <= this is committed or failed */
size_t st_pending(registry *r);      /* queued or being committed */
bool st_full(registry *r);           /* pending >= the queue bound */
bool st_failed(registry *r, uint64_t seq);
bool st_failed_conflict(registry *r, uint64_t seq);
void st_node_created(registry *r, uint32_t id);   /* the transaction being built allocated id */
void st_net_created(registry *r, uint16_t id);    /* ... or this network ID */
int st_alloc_node_id(registry *r, uint32_t *id);  /* shared back ends; see reg_store.c */
void st_apply_changes(registry *r);               /* other instances' changes (loop thread) */
void st_flush_seen(registry *r, uint64_t now_ms); /* heartbeats heard, to the other instances */
void st_flush_rl(registry *r);                    /* rate-limit tokens taken, to the other instances */
bool st_db_up(registry *r);
const char *st_backend_name(registry *r);
void st_failed_forget(registry *r, uint64_t upto);
int st_fd(registry *r);              /* eventfd, readable when st_durable moved; -1 = no store */
void st_fd_clear(registry *r);
int st_wait(registry *r, uint64_t seq); /* block until durable >= seq: 0 or -EIO (it failed) */
void st_get_stats(registry *r, reg_store_stats *out);
void st_node(registry *r, const reg_node *n);
void st_counters(registry *r);
void st_member(registry *r, uint16_t net, uint32_t node, bool add);
void st_net(registry *r, const reg_net *nt);
void st_pair(registry *r, uint32_t a, uint32_t b, bool add);
void st_half(registry *r, uint32_t from, uint32_t to, int64_t ts, bool add);
void st_hsrec(registry *r, uint32_t from, uint32_t to, int64_t ts, bool add);
void st_inbox_add(registry *r, uint32_t to, const reg_hsreq *q);
void st_inbox_clear(registry *r, uint32_t to);
void st_inbox_del(registry *r, uint32_t to, uint32_t from);
void st_resp_add(registry *r, uint32_t to, const reg_hsresp *p);
void st_resp_del(registry *r, uint32_t to, uint32_t from);
void st_resp_clear(registry *r, uint32_t to);
void st_invite(registry *r, uint32_t target, const reg_invite *iv, bool add);
/* Rewrite everything (only after reg_apply_snapshot). */
int st_save_all(registry *r);

/* ---- snapshots (reg_snapshot.c) ---- */
void reg_state_free(registry *r);  /* drop all state maps (not config/limits) */
int reg_state_init(registry *r);   /* empty state with the backbone */

#endif
