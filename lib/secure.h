/* The port-443 secure channel (services.md §3), sans-IO: handshake, key
 * derivation, record seal/open. The caller moves bytes; this file only computes.
 *
 * Two variants, chosen during the handshake:
 *
 *  reference  the reference's exchange byte for byte: the client writes its
 *             32-byte X25519 ephemeral key, the server answers with its own, key
 *             = SHA-256("pilot-secure-v1:" || shared), AES-256-GCM records
 *             [u32 BE L][12-byte nonce][ciphertext||tag], nonce = role prefix
 *             (server 00000001, client 00000002) || u64 BE counter from 1.
 *
 *  auth       between two of our nodes: the same bytes on the wire, but bound to
 *             both Ed25519 node identities. A side that can authenticate sets
 *             the top bit of the last byte of its ephemeral key (X25519 ignores
 *             that bit, RFC 7748 §5, so a reference peer computes the same secret
 *             and never sets it: its keys come out of the scalar multiplication
 *             with the bit clear). The server sets it in its answer only when the
 *             client set it. Then key = SHA-256("pilot-secure-auth-v1:" || shared
 *             || client hello || server hello) (hellos as sent), and each side's
 *             first record is PSEC_AUTH_LEN bytes: "PSA1" || u32 BE node ||
 *             Ed25519 public key || signature over "pilot-secure-auth-v1" ||
 *             role ('C' or 'S') || u32 BE node || client hello || server hello.
 *             The receiver checks node and key against the stream's
 *             tunnel-authenticated peer (peer_node, peer_pk) and the signature;
 *             nothing is delivered or may be sent before that (psec_ready).
 *
 * Both variants: the receiver enforces the nonce order (the peer's role prefix,
 * counter exactly one more than the last record's), so a replayed, reordered or
 * reflected record ends the channel; the reference accepted them. Records are
 * at most max_record (16 MiB, the reference's bound). Downgrade: a client with
 * require_auth refuses a server that does not authenticate; a server with
 * require_auth refuses the reference handshake (the daemon also refuses it from
 * a node that authenticated before). */
#ifndef PILOT_SECURE_H
#define PILOT_SECURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/crypto.h"

#define PSEC_HELLO_LEN  32
#define PSEC_OVERHEAD   32          /* u32 length + 12 nonce + 16 tag */
#define PSEC_MAX_RECORD (16u << 20) /* L bound (the reference's) */
#define PSEC_AUTH_LEN   104         /* "PSA1" + node + key + signature */

enum psec_state {
	PSEC_HELLO = 0,
	PSEC_OPEN,
	PSEC_FAILED
};

typedef struct psec_config {
	bool server;
	const pilot_identity *id; /* our node identity; NULL = reference variant only */
	uint32_t own_node;
	uint32_t peer_node;      /* the stream's authenticated remote node */
	const uint8_t *peer_pk;  /* its Ed25519 key (copied); NULL = unknown: no auth */
	bool require_auth;       /* refuse the reference variant */
	bool plain;              /* behave like a reference peer (tests, interop) */
	uint32_t max_record;     /* 0 = PSEC_MAX_RECORD */
	const uint8_t *eph_priv; /* fixed X25519 private key (test vectors); NULL = random */
	void *arg;
	/* Handshake bytes to send (hello, auth record). 0 or -errno (fatal). */
	int (*emit)(void *arg, const uint8_t *p, size_t n);
	/* Plaintext of one record (n may be 0). 0 or -errno (fatal). */
	int (*deliver)(void *arg, const uint8_t *p, size_t n);
} psec_config;

typedef struct psec {
	psec_config cfg;
	enum psec_state state;
	bool auth;          /* the auth variant was negotiated */
	bool peer_verified; /* its auth record checked (auth variant) */
	pilot_x25519 eph;
	uint8_t hello[2][PSEC_HELLO_LEN]; /* [0] client's, [1] server's, as sent */
	uint8_t peer_pk[32];
	bool have_peer_pk;
	uint8_t key[PILOT_KEY_LEN];
	uint64_t tx_ctr, rx_ctr;
	uint8_t *rbuf; /* the record being received: length, nonce, ciphertext */
	size_t rlen, rcap, rneed;
	const char *why; /* why the channel failed */
} psec;

/* Set up s (cfg copied, its pointers must outlive s except peer_pk and
 * eph_priv). A client emits its hello at once. 0 or -errno (emit's). */
int psec_init(psec *s, const psec_config *cfg);
/* Wipe keys, free the receive buffer. NULL-safe. */
void psec_free(psec *s);
/* Feed received bytes (all are consumed). 0, or -errno with s->why set once the
 * channel failed: -EPROTO handshake or downgrade, -EBADMSG authentication,
 * -EALREADY nonce out of order, -EMSGSIZE record length, -EACCES wrong identity,
 * -ENOMEM, or a callback's error. Every later call fails the same way. */
int psec_input(psec *s, const uint8_t *in, size_t len);
/* Handshake over and (auth variant) the peer proved its identity. */
bool psec_ready(const psec *s);
/* Seal n bytes of plaintext as one record into out (n + PSEC_OVERHEAD bytes).
 * Returns the record length, -EAGAIN before psec_ready, -EMSGSIZE (cap or
 * max_record), -EOVERFLOW (counter exhausted). */
int64_t psec_seal(psec *s, const uint8_t *pt, size_t n, uint8_t *out, size_t cap);

#endif
