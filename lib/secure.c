/* Port-443 secure channel codec; see secure.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lib/proto.h"
#include "lib/secure.h"

#define AUTH_BIT   0x80
#define NONCE_LEN  12
#define TAG_LEN    16
#define CTX_AUTH   "pilot-secure-auth-v1"
#define SIGMSG_LEN (sizeof(CTX_AUTH) - 1 + 1 + 4 + 2 * PSEC_HELLO_LEN)

static int fail(psec *s, int err, const char *why)
{
	if (s->state != PSEC_FAILED) {
		s->state = PSEC_FAILED;
		s->why = why;
		sodium_memzero(s->key, sizeof(s->key));
	}
	return err;
}

static uint32_t max_record(const psec *s)
{
	return s->cfg.max_record ? s->cfg.max_record : PSEC_MAX_RECORD;
}

/* The signed transcript for role ('C' or 'S') and node. */
static void sig_msg(const psec *s, char role, uint32_t node, uint8_t out[SIGMSG_LEN])
{
	size_t o = sizeof(CTX_AUTH) - 1;

	memcpy(out, CTX_AUTH, o);
	out[o++] = (uint8_t)role;
	proto_put32(out + o, node);
	o += 4;
	memcpy(out + o, s->hello[0], PSEC_HELLO_LEN);
	memcpy(out + o + PSEC_HELLO_LEN, s->hello[1], PSEC_HELLO_LEN);
}

int psec_init(psec *s, const psec_config *cfg)
{
	memset(s, 0, sizeof(*s));
	s->cfg = *cfg;
	s->cfg.peer_pk = NULL;
	s->cfg.eph_priv = NULL;
	if (cfg->peer_pk) {
		memcpy(s->peer_pk, cfg->peer_pk, 32);
		s->have_peer_pk = true;
	}
	if (cfg->eph_priv)
		pilot_x25519_from_private(&s->eph, cfg->eph_priv);
	else
		pilot_x25519_generate(&s->eph);
	s->rneed = 4;
	if (cfg->server)
		return 0;
	memcpy(s->hello[0], s->eph.pub, PSEC_HELLO_LEN);
	if (!cfg->plain && cfg->id && s->have_peer_pk)
		s->hello[0][31] |= AUTH_BIT;
	return cfg->emit(cfg->arg, s->hello[0], PSEC_HELLO_LEN);
}

void psec_free(psec *s)
{
	if (!s)
		return;
	pilot_x25519_wipe(&s->eph);
	sodium_memzero(s->key, sizeof(s->key));
	free(s->rbuf);
	s->rbuf = NULL;
	s->rcap = 0;
}

bool psec_ready(const psec *s)
{
	return s->state == PSEC_OPEN && (!s->auth || s->peer_verified);
}

static int64_t seal(psec *s, const uint8_t *pt, size_t n, uint8_t *out, size_t cap)
{
	unsigned long long clen = 0;
	uint8_t *nonce = out + 4;

	if (n > max_record(s) - NONCE_LEN - TAG_LEN || cap < n + PSEC_OVERHEAD)
		return -EMSGSIZE;
	if (s->tx_ctr == UINT64_MAX)
		return -EOVERFLOW;
	proto_put32(out, (uint32_t)(NONCE_LEN + n + TAG_LEN));
	proto_put32(nonce, s->cfg.server ? 1 : 2);
	proto_put64(nonce + 4, ++s->tx_ctr);
	crypto_aead_aes256gcm_encrypt(out + 4 + NONCE_LEN, &clen, pt, n, NULL, 0, NULL, nonce, s->key);
	return (int64_t)(n + PSEC_OVERHEAD);
}

int64_t psec_seal(psec *s, const uint8_t *pt, size_t n, uint8_t *out, size_t cap)
{
	if (!psec_ready(s))
		return -EAGAIN;
	return seal(s, pt, n, out, cap);
}

static void derive(psec *s, const uint8_t shared[32])
{
	crypto_hash_sha256_state st;
	static const char label[] = CTX_AUTH ":";

	if (!s->auth) {
		pilot_kdf_secure(shared, s->key);
		return;
	}
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)label, sizeof(label) - 1);
	crypto_hash_sha256_update(&st, shared, 32);
	crypto_hash_sha256_update(&st, s->hello[0], PSEC_HELLO_LEN);
	crypto_hash_sha256_update(&st, s->hello[1], PSEC_HELLO_LEN);
	crypto_hash_sha256_final(&st, s->key);
	sodium_memzero(&st, sizeof(st));
}

/* Our auth record (first record of the auth variant). */
static int send_auth(psec *s)
{
	uint8_t pt[PSEC_AUTH_LEN], msg[SIGMSG_LEN], rec[PSEC_AUTH_LEN + PSEC_OVERHEAD];
	int64_t n;

	memcpy(pt, "PSA1", 4);
	proto_put32(pt + 4, s->cfg.own_node);
	memcpy(pt + 8, s->cfg.id->pk, 32);
	sig_msg(s, s->cfg.server ? 'S' : 'C', s->cfg.own_node, msg);
	pilot_ed25519_sign(s->cfg.id, msg, sizeof(msg), pt + 40);
	if ((n = seal(s, pt, sizeof(pt), rec, sizeof(rec))) < 0)
		return fail(s, (int)n, "cannot seal the auth record");
	return s->cfg.emit(s->cfg.arg, rec, (size_t)n);
}

/* The peer's 32-byte hello is in; answer (server) and derive the key. */
static int on_hello(psec *s, const uint8_t *peer)
{
	uint8_t pub[32], shared[32];
	bool peer_bit = peer[31] & AUTH_BIT;
	int rc;

	if (s->cfg.server) {
		memcpy(s->hello[0], peer, PSEC_HELLO_LEN);
		memcpy(s->hello[1], s->eph.pub, PSEC_HELLO_LEN);
		s->auth = peer_bit && !s->cfg.plain && s->cfg.id && s->have_peer_pk;
		if (!s->auth && s->cfg.require_auth)
			return fail(s, -EPROTO,
				    peer_bit ? "the client's identity is unknown"
					     : "the client did not authenticate");
		if (s->auth)
			s->hello[1][31] |= AUTH_BIT;
		if ((rc = s->cfg.emit(s->cfg.arg, s->hello[1], PSEC_HELLO_LEN)) < 0)
			return fail(s, rc, "cannot send the server hello");
	} else {
		memcpy(s->hello[1], peer, PSEC_HELLO_LEN);
		if (peer_bit && !(s->hello[0][31] & AUTH_BIT))
			return fail(s, -EPROTO, "the server answered an authentication we did not offer");
		s->auth = peer_bit;
		if (!s->auth && s->cfg.require_auth)
			return fail(s, -EPROTO,
				    "the server did not authenticate (a reference peer, or a downgrade)");
	}
	memcpy(pub, peer, 32);
	pub[31] &= (uint8_t)~AUTH_BIT;
	if (pilot_x25519_shared(&s->eph, pub, shared) < 0)
		return fail(s, -EPROTO, "low-order X25519 key");
	derive(s, shared);
	sodium_memzero(shared, sizeof(shared));
	pilot_x25519_wipe(&s->eph);
	s->state = PSEC_OPEN;
	if (s->auth && (rc = send_auth(s)) < 0)
		return fail(s, rc, "cannot send the auth record");
	return 0;
}

static int check_auth(psec *s, const uint8_t *pt, size_t n)
{
	uint8_t msg[SIGMSG_LEN];
	uint32_t node;

	if (n != PSEC_AUTH_LEN || memcmp(pt, "PSA1", 4) != 0)
		return fail(s, -EPROTO, "the first record is not an auth record");
	node = proto_get32(pt + 4);
	if (node != s->cfg.peer_node || sodium_memcmp(pt + 8, s->peer_pk, 32) != 0)
		return fail(s, -EACCES, "the peer's identity is not the stream's node");
	sig_msg(s, s->cfg.server ? 'C' : 'S', node, msg);
	if (pilot_ed25519_verify(pt + 8, msg, sizeof(msg), pt + 40) < 0)
		return fail(s, -EACCES, "bad identity signature");
	s->peer_verified = true;
	return 0;
}

/* One whole record in s->rbuf (4 + L bytes). */
static int on_record(psec *s)
{
	uint8_t *nonce = s->rbuf + 4, *ct = nonce + NONCE_LEN;
	size_t clen = s->rlen - 4 - NONCE_LEN;
	unsigned long long plen = 0;
	int rc;

	if (clen < TAG_LEN)
		return fail(s, -EBADMSG, "record shorter than its tag");
	if (proto_get32(nonce) != (s->cfg.server ? 2u : 1u))
		return fail(s, -EALREADY, "record with the wrong role prefix (reflected)");
	if (s->rx_ctr == UINT64_MAX || proto_get64(nonce + 4) != s->rx_ctr + 1)
		return fail(s, -EALREADY, "record out of order (replayed or reordered)");
	if (crypto_aead_aes256gcm_decrypt(ct, &plen, NULL, ct, clen, NULL, 0, nonce, s->key) != 0)
		return fail(s, -EBADMSG, "record authentication failed");
	s->rx_ctr++;
	if (s->auth && !s->peer_verified)
		return check_auth(s, ct, (size_t)plen);
	if ((rc = s->cfg.deliver(s->cfg.arg, ct, (size_t)plen)) < 0)
		return fail(s, rc, "the receiver failed");
	return 0;
}

int psec_input(psec *s, const uint8_t *in, size_t len)
{
	int rc;

	while (len) {
		size_t take;

		if (s->state == PSEC_FAILED)
			return -EPIPE;
		take = s->rneed - s->rlen < len ? s->rneed - s->rlen : len;
		/* Grow with what arrived, not with what the length field claims:
		 * 5 bytes from a peer never cost 16 MiB. */
		if (s->rcap < s->rlen + take) {
			size_t cap = s->rcap ? s->rcap * 2 : 256;
			uint8_t *b;

			if (cap < s->rlen + take)
				cap = s->rlen + take;
			if (cap > s->rneed)
				cap = s->rneed;
			if (!(b = realloc(s->rbuf, cap)))
				return fail(s, -ENOMEM, "out of memory");
			s->rbuf = b;
			s->rcap = cap;
		}
		memcpy(s->rbuf + s->rlen, in, take);
		s->rlen += take;
		in += take;
		len -= take;
		if (s->rlen < s->rneed)
			break;
		if (s->state == PSEC_HELLO) {
			if (s->rneed < PSEC_HELLO_LEN) {
				s->rneed = PSEC_HELLO_LEN; /* rneed started as 4 for records */
				continue;
			}
			s->rlen = 0;
			s->rneed = 4;
			if ((rc = on_hello(s, s->rbuf)) < 0)
				return rc;
			continue;
		}
		if (s->rneed == 4) {
			uint32_t l = proto_get32(s->rbuf);

			if (l < NONCE_LEN || l > max_record(s))
				return fail(s, -EMSGSIZE,
					    l < NONCE_LEN ? "encrypted message too short"
							  : "encrypted message too large");
			s->rneed = 4 + (size_t)l;
			continue;
		}
		rc = on_record(s);
		s->rlen = 0;
		s->rneed = 4;
		if (rc < 0)
			return rc;
	}
	return s->state == PSEC_FAILED ? -EPIPE : 0;
}
