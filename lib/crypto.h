/* Tunnel crypto on libsodium: X25519, the two session-key derivations of tunnel.md §4,
 * AES-256-GCM PILS seal/open in place (§5), the 256-entry replay window (§5.3),
 * Ed25519 and the PILA signature (§3.2). Keys are wiped on free. */
#ifndef PILOT_CRYPTO_H
#define PILOT_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "lib/proto.h"

#define PILOT_KEY_LEN 32

/* sodium_init + AES-NI check. Returns 0, or -ENOTSUP with *why set to a message
 * suitable for the user ("AES-256-GCM needs a CPU with AES-NI ..."). */
int pilot_crypto_init(const char **why);

/* ---- X25519 ---- */
typedef struct pilot_x25519 {
	uint8_t priv[PROTO_X25519_LEN];
	uint8_t pub[PROTO_X25519_LEN];
} pilot_x25519;

void pilot_x25519_generate(pilot_x25519 *kp);
/* Public key from a given private scalar (tests, vectors). */
void pilot_x25519_from_private(pilot_x25519 *kp, const uint8_t priv[PROTO_X25519_LEN]);
/* -EINVAL for an all-zero shared secret (low-order peer key), like Go crypto/ecdh. */
int pilot_x25519_shared(const pilot_x25519 *kp, const uint8_t peer_pub[PROTO_X25519_LEN],
			uint8_t shared[PILOT_KEY_LEN]);
void pilot_x25519_wipe(pilot_x25519 *kp);

/* ---- Session keys (tunnel.md §4) ---- */
enum pilot_kdf {
	PILOT_KDF_REF = 0, /* SHA-256("pilot-tunnel-v1:" || shared), no AAD */
	PILOT_KDF_NEW = 1, /* HKDF-SHA256(salt=none, info="pilot-tunnel-v1"), AAD = sender node */
};

void pilot_kdf_ref(const uint8_t shared[PILOT_KEY_LEN], uint8_t key[PILOT_KEY_LEN]);
void pilot_kdf_hkdf(const uint8_t shared[PILOT_KEY_LEN], uint8_t key[PILOT_KEY_LEN]);
/* The HKDF-Extract step alone, PRK = HMAC-SHA256(32 zero bytes, shared) (vectors §5.2). */
void pilot_hkdf_prk(const uint8_t shared[PILOT_KEY_LEN], uint8_t prk[PILOT_KEY_LEN]);
/* Port-443 secure channel: SHA-256("pilot-secure-v1:" || shared). */
void pilot_kdf_secure(const uint8_t shared[PILOT_KEY_LEN], uint8_t key[PILOT_KEY_LEN]);

/* ---- Replay window (tunnel.md §5.3) ---- */
#define PILOT_REPLAY_WINDOW 256
typedef struct pilot_replay {
	uint64_t max;       /* 0 = nothing received yet */
	uint64_t bits[PILOT_REPLAY_WINDOW / 64];
} pilot_replay;

/* check: 0 if counter would be accepted, -EALREADY replay, -ESTALE too old.
 * Never modifies the window. update: record an authenticated counter. */
int pilot_replay_check(const pilot_replay *w, uint64_t counter);
void pilot_replay_update(pilot_replay *w, uint64_t counter);

/* ---- AES-256-GCM session ---- */
typedef struct pilot_session pilot_session;

/* Derive the AES key from shared with kdf, and pick a fresh random send prefix.
 * own_node goes into every sealed frame (and the AAD for PILOT_KDF_NEW);
 * peer_node is the AAD expected on open for PILOT_KDF_NEW. Returns NULL on ENOMEM. */
pilot_session *pilot_session_new(const uint8_t shared[PILOT_KEY_LEN], enum pilot_kdf kdf,
				 uint32_t own_node, uint32_t peer_node);
/* Same with a given raw AES key and prefix (tests, vectors). */
pilot_session *pilot_session_new_raw(const uint8_t key[PILOT_KEY_LEN], enum pilot_kdf kdf,
				     uint32_t own_node, uint32_t peer_node,
				     const uint8_t prefix[4]);
void pilot_session_free(pilot_session *s); /* NULL-safe, wipes the key */
enum pilot_kdf pilot_session_kdf(const pilot_session *s);
uint64_t pilot_session_send_counter(const pilot_session *s);
/* The receive replay window (read-only: tests, fuzzers, diagnostics). */
const pilot_replay *pilot_session_replay(const pilot_session *s);

/* Seal in place. buf holds PROTO_PILS_HDR bytes of room, then the plaintext packet
 * (pt_len bytes), then at least PROTO_TAG_LEN bytes of room: buf = [20 free][pt][16 free].
 * Writes magic, own node, nonce (prefix || ++counter) and the tag.
 * Returns the frame length (pt_len + 36) or -EMSGSIZE / -EOVERFLOW (counter exhausted). */
int pilot_session_seal(pilot_session *s, uint8_t *buf, size_t pt_len, size_t cap);

/* Open a PILS frame in place: replay check (no update), AES-GCM open, then and
 * only then replay update. On success *pt points at the plaintext inside buf and
 * *pt_len is its length. Errors: -EMSGSIZE short, -EALREADY replay, -ESTALE too old,
 * -EBADMSG authentication failed (window untouched). */
int pilot_session_open(pilot_session *s, uint8_t *buf, size_t len,
		       uint8_t **pt, size_t *pt_len);

/* ---- Ed25519 ---- */
#define PILOT_ED25519_SK_LEN 64 /* seed || public, the Go/NaCl layout */

typedef struct pilot_identity {
	uint8_t sk[PILOT_ED25519_SK_LEN];
	uint8_t pk[PROTO_ED25519_LEN];
} pilot_identity;

void pilot_identity_generate(pilot_identity *id);
void pilot_identity_from_seed(pilot_identity *id, const uint8_t seed[32]);
void pilot_identity_wipe(pilot_identity *id);
/* The hostname a node registers when none is configured: "pilot-" and the first
 * 8 lowercase hex digits of SHA-256(public key). */
#define PILOT_DEFAULT_HOSTNAME_LEN 15
void pilot_default_hostname(const uint8_t pk[PROTO_ED25519_LEN], char out[PILOT_DEFAULT_HOSTNAME_LEN + 1]);
void pilot_ed25519_sign(const pilot_identity *id, const void *msg, size_t len,
			uint8_t sig[PROTO_SIG_LEN]);
/* 0 if valid, -EBADMSG otherwise. */
int pilot_ed25519_verify(const uint8_t pk[PROTO_ED25519_LEN], const void *msg, size_t len,
			 const uint8_t sig[PROTO_SIG_LEN]);

/* Fill a PILA frame for (node, x25519 public) signed by id; returns PROTO_PILA_LEN. */
int pilot_pila_build(const pilot_identity *id, uint32_t node,
		     const uint8_t x25519_pub[PROTO_X25519_LEN], uint8_t *out, size_t outcap);
/* Verify a decoded PILA's signature under its own ed25519 field (the caller must
 * also compare that key to the registry's). 0 or -EBADMSG. */
int pilot_pila_verify(const proto_pila *a);

/* ---- Base64 (standard alphabet, with padding) ---- */
/* Returns decoded length, or -EINVAL on bad input / -EMSGSIZE if it does not fit. */
int pilot_b64_decode(const char *s, size_t len, uint8_t *out, size_t outcap);
/* Writes a NUL-terminated string; outcap must be >= pilot_b64_len(len). Returns strlen. */
int pilot_b64_encode(const uint8_t *buf, size_t len, char *out, size_t outcap);
size_t pilot_b64_len(size_t len);

/* ---- Identity file (cli.md §8) ---- */
/* Load {"private_key": b64(64), "public_key": b64(32)}. Errors name the file in *err
 * (a static or caller-owned buffer of errlen bytes): -ENOENT missing, -EINVAL corrupt
 * (bad JSON, bad base64, wrong lengths, public key not matching the private key). */
int pilot_identity_load(const char *path, pilot_identity *id, char *err, size_t errlen);
/* Parse identity JSON from a buffer (the load step after reading; fuzz target).
 * Messages in *err name the problem only ("public_key does not match private_key");
 * -EINVAL for every kind of corruption. */
int pilot_identity_parse(const char *json, size_t len, pilot_identity *id,
			 char *err, size_t errlen);
/* Write atomically: parent dirs 0700, temp file 0600 in the same dir, fsync,
 * rename, fsync the directory. */
int pilot_identity_save(const char *path, const pilot_identity *id, char *err, size_t errlen);
/* Load, or if the file does not exist generate and save a new identity.
 * A corrupt file is an error, never replaced. *created set to 1 when generated.
 * If the new identity cannot be saved, id and *created are still set and the save
 * error (-errno) is returned, so a caller may choose to run with it unsaved. */
int pilot_identity_load_or_create(const char *path, pilot_identity *id, int *created,
				  char *err, size_t errlen);

#endif
