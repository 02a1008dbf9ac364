/* Tunnel crypto (tunnel.md §3-5, §12): X25519, Ed25519, hashes on libsodium;
 * AES-256-GCM on OpenSSL's EVP (its VAES/AVX-512 and AES-NI code, ~4x libsodium's
 * AES-NI-only implementation on 1408-byte records here: 665 vs 2,784 ns), with one
 * encrypt and one decrypt context per session, keyed once (the AES key schedule
 * and GHASH table are computed in pilot_session_new, not per packet). */
#include <errno.h>
#include <limits.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "lib/crypto.h"

/* Fetched once: an implicit fetch (EVP_aes_256_gcm()) would look the provider up
 * on every context initialisation. */
static EVP_CIPHER *aes_gcm;

static EVP_CIPHER *gcm_cipher(void)
{
	if (!aes_gcm)
		aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	return aes_gcm;
}

int pilot_crypto_init(const char **why)
{
	if (sodium_init() < 0) {
		if (why)
			*why = "libsodium failed to initialise (no entropy source?)";
		return -EIO;
	}
	if (!gcm_cipher()) {
		if (why)
			*why = "OpenSSL has no AES-256-GCM; tunnel encryption is unavailable";
		return -ENOTSUP;
	}
	return 0;
}

/* ---- X25519 ---- */

void pilot_x25519_generate(pilot_x25519 *kp)
{
	crypto_box_keypair(kp->pub, kp->priv);
}

void pilot_x25519_from_private(pilot_x25519 *kp, const uint8_t priv[PROTO_X25519_LEN])
{
	memcpy(kp->priv, priv, PROTO_X25519_LEN);
	crypto_scalarmult_base(kp->pub, kp->priv);
}

int pilot_x25519_shared(const pilot_x25519 *kp, const uint8_t peer_pub[PROTO_X25519_LEN],
			uint8_t shared[PILOT_KEY_LEN])
{
	/* crypto_scalarmult fails exactly when the result is all zero (a low-order
	 * peer point), the case Go's crypto/ecdh rejects too. */
	if (crypto_scalarmult(shared, kp->priv, peer_pub) != 0) {
		sodium_memzero(shared, PILOT_KEY_LEN);
		return -EINVAL;
	}
	return 0;
}

void pilot_x25519_wipe(pilot_x25519 *kp)
{
	sodium_memzero(kp, sizeof(*kp));
}

/* ---- Session keys ---- */

static void sha256_prefixed(const char *label, const uint8_t shared[PILOT_KEY_LEN],
			    uint8_t key[PILOT_KEY_LEN])
{
	crypto_hash_sha256_state st;

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)label, strlen(label));
	crypto_hash_sha256_update(&st, shared, PILOT_KEY_LEN);
	crypto_hash_sha256_final(&st, key);
	sodium_memzero(&st, sizeof(st));
}

void pilot_kdf_ref(const uint8_t shared[PILOT_KEY_LEN], uint8_t key[PILOT_KEY_LEN])
{
	sha256_prefixed("pilot-tunnel-v1:", shared, key);
}

void pilot_kdf_secure(const uint8_t shared[PILOT_KEY_LEN], uint8_t key[PILOT_KEY_LEN])
{
	sha256_prefixed("pilot-secure-v1:", shared, key);
}

void pilot_hkdf_prk(const uint8_t shared[PILOT_KEY_LEN], uint8_t prk[PILOT_KEY_LEN])
{
	/* RFC 5869: an absent salt is HashLen zero bytes. */
	static const uint8_t zero_salt[crypto_auth_hmacsha256_KEYBYTES];

	crypto_auth_hmacsha256(prk, shared, PILOT_KEY_LEN, zero_salt);
}

void pilot_kdf_hkdf(const uint8_t shared[PILOT_KEY_LEN], uint8_t key[PILOT_KEY_LEN])
{
	static const char info[] = "pilot-tunnel-v1";
	uint8_t prk[PILOT_KEY_LEN];
	uint8_t t1_input[sizeof(info)]; /* info (15 bytes) || 0x01 */

	pilot_hkdf_prk(shared, prk);
	memcpy(t1_input, info, sizeof(info) - 1);
	t1_input[sizeof(info) - 1] = 0x01;
	/* L = 32 = HashLen, so the output is the single block T(1). */
	crypto_auth_hmacsha256(key, t1_input, sizeof(t1_input), prk);
	sodium_memzero(prk, sizeof(prk));
}

/* ---- Replay window (tunnel.md §5.3) ---- */

static int replay_bit(const pilot_replay *w, uint64_t counter)
{
	unsigned idx = (unsigned)(counter % PILOT_REPLAY_WINDOW);

	return (int)(w->bits[idx / 64] >> (idx % 64) & 1);
}

static void replay_set(pilot_replay *w, uint64_t counter, int on)
{
	unsigned idx = (unsigned)(counter % PILOT_REPLAY_WINDOW);
	uint64_t mask = (uint64_t)1 << (idx % 64);

	if (on)
		w->bits[idx / 64] |= mask;
	else
		w->bits[idx / 64] &= ~mask;
}

int pilot_replay_check(const pilot_replay *w, uint64_t counter)
{
	/* Senders increment before use, so counter 0 is never sent. The reference
	 * would accept it as a first frame (max == 0 case), but then max stays 0 and
	 * the window never leaves its "empty" state; refusing it costs nothing. */
	if (counter == 0)
		return -ESTALE;
	if (w->max == 0 || counter > w->max)
		return 0;
	if (w->max - counter >= PILOT_REPLAY_WINDOW)
		return -ESTALE;
	return replay_bit(w, counter) ? -EALREADY : 0;
}

void pilot_replay_update(pilot_replay *w, uint64_t counter)
{
	if (counter > w->max) {
		uint64_t diff = counter - w->max;

		if (w->max == 0 || diff >= PILOT_REPLAY_WINDOW) {
			memset(w->bits, 0, sizeof(w->bits));
		} else {
			/* The slots of max+1 .. counter now stand for new counters. */
			for (uint64_t c = w->max + 1; c <= counter; c++)
				replay_set(w, c, 0);
		}
		w->max = counter;
	}
	replay_set(w, counter, 1);
}

/* ---- AES-256-GCM session ---- */

struct pilot_session {
	EVP_CIPHER_CTX *enc, *dec; /* keyed once; per frame only the nonce changes */
	enum pilot_kdf kdf;
	uint32_t own_node;
	uint32_t peer_node;
	uint8_t prefix[4];
	uint64_t send_ctr;               /* last counter used; 0 = nothing sent */
	pilot_replay rx;
};

pilot_session *pilot_session_new_raw(const uint8_t key[PILOT_KEY_LEN], enum pilot_kdf kdf,
				     uint32_t own_node, uint32_t peer_node,
				     const uint8_t prefix[4])
{
	pilot_session *s = calloc(1, sizeof(*s));
	EVP_CIPHER *c = gcm_cipher();

	if (!s)
		return NULL;
	if (!c || !(s->enc = EVP_CIPHER_CTX_new()) || !(s->dec = EVP_CIPHER_CTX_new()) ||
	    EVP_EncryptInit_ex(s->enc, c, NULL, key, NULL) != 1 ||
	    EVP_DecryptInit_ex(s->dec, c, NULL, key, NULL) != 1) {
		pilot_session_free(s);
		return NULL;
	}
	s->kdf = kdf;
	s->own_node = own_node;
	s->peer_node = peer_node;
	memcpy(s->prefix, prefix, sizeof(s->prefix));
	return s;
}

pilot_session *pilot_session_new(const uint8_t shared[PILOT_KEY_LEN], enum pilot_kdf kdf,
				 uint32_t own_node, uint32_t peer_node)
{
	uint8_t key[PILOT_KEY_LEN];
	uint8_t prefix[4];
	pilot_session *s;

	if (kdf == PILOT_KDF_NEW)
		pilot_kdf_hkdf(shared, key);
	else
		pilot_kdf_ref(shared, key);
	randombytes_buf(prefix, sizeof(prefix));
	s = pilot_session_new_raw(key, kdf, own_node, peer_node, prefix);
	sodium_memzero(key, sizeof(key));
	return s;
}

void pilot_session_free(pilot_session *s)
{
	if (!s)
		return;
	EVP_CIPHER_CTX_free(s->enc); /* clears the key schedule */
	EVP_CIPHER_CTX_free(s->dec);
	sodium_memzero(s, sizeof(*s));
	free(s);
}

enum pilot_kdf pilot_session_kdf(const pilot_session *s)
{
	return s->kdf;
}

uint64_t pilot_session_send_counter(const pilot_session *s)
{
	return s->send_ctr;
}

const pilot_replay *pilot_session_replay(const pilot_session *s)
{
	return &s->rx;
}

/* In place: p[0..len) is encrypted and the 16-byte tag written at p + len. */
static bool gcm_seal(EVP_CIPHER_CTX *x, const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
		     uint8_t *p, size_t len)
{
	int l = 0, l2 = 0;

	return EVP_EncryptInit_ex(x, NULL, NULL, NULL, nonce) == 1 &&
		(!aad_len || EVP_EncryptUpdate(x, NULL, &l, aad, (int)aad_len) == 1) &&
		EVP_EncryptUpdate(x, p, &l, p, (int)len) == 1 && EVP_EncryptFinal_ex(x, p + l, &l2) == 1 &&
		EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, PROTO_TAG_LEN, p + len) == 1;
}

/* In place: p[0..len) is decrypted when the tag at p + len is right (else false;
 * the bytes are then garbage). */
static bool gcm_open(EVP_CIPHER_CTX *x, const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
		     uint8_t *p, size_t len)
{
	int l = 0, l2 = 0;

	return EVP_DecryptInit_ex(x, NULL, NULL, NULL, nonce) == 1 &&
		(!aad_len || EVP_DecryptUpdate(x, NULL, &l, aad, (int)aad_len) == 1) &&
		EVP_DecryptUpdate(x, p, &l, p, (int)len) == 1 &&
		EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, PROTO_TAG_LEN, p + len) == 1 &&
		EVP_DecryptFinal_ex(x, p + l, &l2) == 1;
}

/* AAD for PILOT_KDF_NEW: the sender's node ID (4 bytes BE); none for ref. */
static size_t session_aad(const pilot_session *s, uint32_t sender, uint8_t aad[4])
{
	if (s->kdf != PILOT_KDF_NEW)
		return 0;
	proto_put32(aad, sender);
	return 4;
}

int pilot_session_seal(pilot_session *s, uint8_t *buf, size_t pt_len, size_t cap)
{
	uint8_t aad[4];
	size_t aad_len;
	uint8_t *nonce = buf + 8;

	if (pt_len > (size_t)INT_MAX - PROTO_PILS_OVERHEAD ||
	    cap < pt_len + PROTO_PILS_OVERHEAD)
		return -EMSGSIZE;
	if (s->send_ctr == UINT64_MAX)
		return -EOVERFLOW;
	s->send_ctr++; /* before use: the first frame carries counter 1 */
	proto_put32(buf, PROTO_MAGIC_PILS);
	proto_put32(buf + 4, s->own_node);
	memcpy(nonce, s->prefix, 4);
	proto_put64(nonce + 4, s->send_ctr);
	aad_len = session_aad(s, s->own_node, aad);
	if (!gcm_seal(s->enc, nonce, aad, aad_len, buf + PROTO_PILS_HDR, pt_len))
		return -EIO;
	return (int)(pt_len + PROTO_PILS_OVERHEAD);
}

int pilot_session_open(pilot_session *s, uint8_t *buf, size_t len,
		       uint8_t **pt, size_t *pt_len)
{
	uint8_t aad[4];
	size_t aad_len, ct_len;
	uint64_t counter;
	int rc;

	if (len < PROTO_PILS_OVERHEAD)
		return -EMSGSIZE;
	if (proto_get32(buf) != PROTO_MAGIC_PILS)
		return -EPROTO;
	counter = proto_get64(buf + 12);
	rc = pilot_replay_check(&s->rx, counter);
	if (rc < 0)
		return rc;
	/* New authenticates the sender field (AAD = bytes 4-7); a frame naming another
	 * node than this session's peer cannot be genuine, so fail it the same way. */
	if (s->kdf == PILOT_KDF_NEW && proto_get32(buf + 4) != s->peer_node)
		return -EBADMSG;
	aad_len = session_aad(s, s->peer_node, aad);
	ct_len = len - PROTO_PILS_OVERHEAD;
	if (!gcm_open(s->dec, buf + 8, aad, aad_len, buf + PROTO_PILS_HDR, ct_len))
		return -EBADMSG;
	/* Only an authenticated counter may move the window (unlike the reference,
	 * where one forged frame with a huge counter blocks the peer, tunnel.md §8). */
	pilot_replay_update(&s->rx, counter);
	*pt = buf + PROTO_PILS_HDR;
	*pt_len = ct_len;
	return 0;
}

/* ---- Ed25519 ---- */

void pilot_identity_generate(pilot_identity *id)
{
	crypto_sign_keypair(id->pk, id->sk);
}

void pilot_identity_from_seed(pilot_identity *id, const uint8_t seed[32])
{
	crypto_sign_seed_keypair(id->pk, id->sk, seed);
}

void pilot_identity_wipe(pilot_identity *id)
{
	sodium_memzero(id, sizeof(*id));
}

void pilot_ed25519_sign(const pilot_identity *id, const void *msg, size_t len,
			uint8_t sig[PROTO_SIG_LEN])
{
	crypto_sign_detached(sig, NULL, msg, len, id->sk);
}

int pilot_ed25519_verify(const uint8_t pk[PROTO_ED25519_LEN], const void *msg, size_t len,
			 const uint8_t sig[PROTO_SIG_LEN])
{
	return crypto_sign_verify_detached(sig, msg, len, pk) == 0 ? 0 : -EBADMSG;
}

int pilot_pila_build(const pilot_identity *id, uint32_t node,
		     const uint8_t x25519_pub[PROTO_X25519_LEN], uint8_t *out, size_t outcap)
{
	uint8_t msg[PROTO_PILA_SIGNED_LEN];
	proto_pila a;

	a.node = node;
	memcpy(a.x25519, x25519_pub, PROTO_X25519_LEN);
	memcpy(a.ed25519, id->pk, PROTO_ED25519_LEN);
	proto_pila_signed_msg(node, x25519_pub, msg);
	pilot_ed25519_sign(id, msg, sizeof(msg), a.sig);
	return proto_pila_encode(&a, out, outcap);
}

int pilot_pila_verify(const proto_pila *a)
{
	uint8_t msg[PROTO_PILA_SIGNED_LEN];

	proto_pila_signed_msg(a->node, a->x25519, msg);
	return pilot_ed25519_verify(a->ed25519, msg, sizeof(msg), a->sig);
}

/* ---- Base64 ---- */

size_t pilot_b64_len(size_t len)
{
	return sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
}

int pilot_b64_encode(const uint8_t *buf, size_t len, char *out, size_t outcap)
{
	size_t need = pilot_b64_len(len);

	if (len > (size_t)INT_MAX / 2 || outcap < need)
		return -EMSGSIZE;
	sodium_bin2base64(out, outcap, buf, len, sodium_base64_VARIANT_ORIGINAL);
	return (int)(need - 1);
}

int pilot_b64_decode(const char *s, size_t len, uint8_t *out, size_t outcap)
{
	size_t n = 0;

	if (len > (size_t)INT_MAX)
		return -EMSGSIZE;
	/* Canonical length check first, so "does not fit" and "malformed" are told
	 * apart without relying on errno from libsodium. */
	if (len % 4 != 0)
		return -EINVAL;
	if (len / 4 * 3 - (len && s[len - 1] == '=') - (len > 1 && s[len - 2] == '=') > outcap)
		return -EMSGSIZE;
	/* No ignore set and no end pointer: the whole input must be valid base64
	 * with correct padding, trailing garbage included. */
	if (sodium_base642bin(out, outcap, s, len, NULL, &n, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0)
		return -EINVAL;
	return (int)n;
}
