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
	trust_replay_slot *replay; /* ring, TRUST_REPLAY_SLOTS */
	size_t replay_head;
	struct trust_op *ops_head; /* in-flight op contexts */
	size_t inflight;           /* direct messages waiting for a key */
	trust_stats st;
};

int64_t trust_now(const trust *t);
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
