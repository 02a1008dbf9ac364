/* Shared between trust.c, trust_msg.c and trust_store.c. */
#ifndef PILOT_TRUST_INTERNAL_H
#define PILOT_TRUST_INTERNAL_H

#include "daemon/trust.h"

typedef struct trust_peer {
	uint32_t node;
	bool has_key;
	uint8_t pk[PROTO_ED25519_LEN];
	int64_t approved_at;
	bool mutual;
	uint16_t network;
} trust_peer;

typedef struct trust_pend {
	uint32_t node;
	bool has_key;
	uint8_t pk[PROTO_ED25519_LEN];
	char *justification;  /* never NULL */
	int64_t received_at;
	bool relayed;         /* came through the registry inbox */
} trust_pend;

/* A pinned key of a node that is not trusted (trust_keys.c); a trusted node's
 * key lives in its trust_peer. */
typedef struct trust_key {
	uint32_t node;
	uint8_t pk[PROTO_ED25519_LEN];
	int64_t seen_at;      /* last authenticated exchange (eviction order) */
} trust_key;

typedef struct trust_out {
	uint32_t node;
	int64_t sent_at;
} trust_out;

typedef struct trust_replay_slot {
	uint8_t hash[32];
	int64_t at;
} trust_replay_slot;

struct trust_op;

struct trust {
	char *path;
	const pilot_identity *id;
	trust_ops ops;
	int64_t (*now)(void *arg);
	void *now_arg;
	uint32_t me;
	/* sorted by node */
	trust_peer *trusted;
	size_t ntrusted, captrusted;
	trust_pend *pending;
	size_t npending, cappending;
	trust_out *outgoing;
	size_t noutgoing, capoutgoing;
	trust_key *keys;           /* sorted by node, at most TRUST_MAX_KEYS */
	size_t nkeys, capkeys;
	bool keys_dirty;           /* keys changed since the last save (trust_flush) */
	trust_replay_slot *replay; /* ring, TRUST_REPLAY_SLOTS */
	size_t replay_head;
	struct trust_op *ops_head; /* in-flight op contexts */
	size_t inflight;           /* direct messages waiting for a key */
	trust_stats st;
};

int64_t trust_now(const trust *t);
/* Binary search / insert / remove in arrays sorted by a leading uint32_t node. */
size_t trust_find_idx(const void *base, size_t n, size_t sz, uint32_t node, bool *found);
int trust_insert_at(void **base, size_t *n, size_t *cap, size_t sz, size_t idx);
void trust_remove_at(void *base, size_t *n, size_t sz, size_t idx);
/* Write trust.json now (atomic, 0600); errors are counted and logged. */
void trust_save(trust *t);
/* trust_keys.c: the key list entry of node, or NULL; remove it (true if it was there). */
trust_key *trust_key_get(const trust *t, uint32_t node);
bool trust_key_del(trust *t, uint32_t node);
/* Pin pk for an untrusted node in the key list (evicting the least recently seen
 * entry when full); no save. */
int trust_key_put(trust *t, uint32_t node, const uint8_t pk[PROTO_ED25519_LEN]);
void trust_pend_clear(trust_pend *p);
void trust_state_clear(trust *t);
/* RFC 3339 (seconds, local offset) <-> Unix seconds. */
void trust_fmt_time(int64_t t, char out[40]);
int64_t trust_parse_time(const char *s);
/* Go encoding/json string escaping (with HTML escapes), appended to *buf. */
int trust_json_str(char **buf, size_t *len, size_t *cap, const char *s);
int trust_buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n);
int trust_buf_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
