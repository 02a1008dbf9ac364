/* Tunnel crypto: every vector of vectors.md §5.2-5.5, §7, §9, §10, plus the
 * failure paths (tampering, replay, wrong AAD) and the replay window rules. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "lib/crypto.h"

/* ---- vectors.md §5.2 ---- */
#define A_X_PRIV "5f6f4f9f6e6954d8ce424a1a86fb0a1f44f8a63fcdb8def9d87ee436a4b7a73a"
#define A_X_PUB  "0d80901c6a3a4f58814fd005b3ec2529efe37e2454a66aafdced193a63d6784f"
#define B_X_PRIV "78ece184af00c47044ec376206e970ca42f7310d1147322e44c54de82fa83bc2"
#define B_X_PUB  "cdd1401b37a17ed2b97cf97e46e1559a01c0c6f8bd0fe6b33ce1ee7114ad756c"
#define A_ED_SEED "98a2833fdb31fe0e6d462c72710467f606f6d946c5a4557c29bda8d238380fcc"
#define A_ED_PUB "537a76ac332a282a76a493bb3f7f62049541b76676b45bdcb11773e1aec4cd7c"
#define SHARED   "1e2549d750c62db45ba78beac416ef4f2ffce6bf53226c4880b4bc151373a205"
#define REF_KEY  "78cfbf6f41fd0585955edb9086f53f75fbb6759c917ce11ddd6ce6f61694c43d"
#define HKDF_PRK "0ed98e6bc82e0d7bd31c5bb851fad8316681bee2d2e474ca909208d78986a922"
#define NEW_KEY  "8f5b597098ccd9daaa32d9cfa7ebf667d2d6dce3fabf2969a16204643dc25ba4"

/* vectors.md §3.1 */
#define SYN_31 \
	"11 01 00 00 00 00 00 00 00 01 00 00 00 00 00 02" \
	"C0 00 03 E8 00 00 00 00 00 00 00 00 02 00 14 5E" \
	"D8 74"

/* vectors.md §5.4 */
#define PILA_SIGNED \
	"61 75 74 68 00 00 00 01 0D 80 90 1C 6A 3A 4F 58" \
	"81 4F D0 05 B3 EC 25 29 EF E3 7E 24 54 A6 6A AF" \
	"DC ED 19 3A 63 D6 78 4F"
#define PILA_FRAME \
	"50 49 4C 41 00 00 00 01 0D 80 90 1C 6A 3A 4F 58" \
	"81 4F D0 05 B3 EC 25 29 EF E3 7E 24 54 A6 6A AF" \
	"DC ED 19 3A 63 D6 78 4F 53 7A 76 AC 33 2A 28 2A" \
	"76 A4 93 BB 3F 7F 62 04 95 41 B7 66 76 B4 5B DC" \
	"B1 17 73 E1 AE C4 CD 7C 5B 32 27 8A 68 78 F8 66" \
	"60 84 B5 67 DB 3B 3A FA 1B 84 81 2D 15 03 A6 1D" \
	"38 3B BF 2C 29 68 68 5F 03 ED 12 40 AA 47 CF 88" \
	"F3 4F 4B 16 C9 E9 FD 88 6F 03 1C 56 08 2E BC BE" \
	"47 DE 76 3F FF 26 95 04"

/* vectors.md §5.5 */
#define PILS_REF \
	"50 49 4C 53 00 00 00 01 A1 A2 A3 A4 00 00 00 00" \
	"00 00 00 01 AE DF 80 B4 F4 3E 61 26 90 6F 46 DF" \
	"B7 B6 31 4D 84 73 C4 03 FA 14 87 E8 25 5C 7D 78" \
	"70 ED 49 A2 63 A9 5D EB B5 CC AB 29 AC 25 5C B4" \
	"A5 58 B7 8E 65 C6"
#define PILS_NEW \
	"50 49 4C 53 00 00 00 01 A1 A2 A3 A4 00 00 00 00" \
	"00 00 00 01 A0 0F F8 42 A3 D7 F4 F4 BF 2F 1F 3C" \
	"18 91 76 39 4B F5 0F F6 53 92 45 85 91 75 26 7A" \
	"5F 9E C4 0B 8F 3D 4A 3E D0 CE A3 73 43 04 C1 62" \
	"61 AA BD 90 A5 C9"

static const uint8_t PREFIX[4] = {0xA1, 0xA2, 0xA3, 0xA4};

/* Hex with optional spaces → bytes; returns the byte count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	const char *end;

	assert_int_equal(sodium_hex2bin(out, cap, hex, strlen(hex), " ", &n, &end), 0);
	assert_true(*end == '\0');
	return n;
}

static void unhex32(const char *hex, uint8_t out[32])
{
	assert_int_equal(unhex(hex, out, 32), 32);
}

static void assert_hex(const uint8_t *got, size_t len, const char *hex)
{
	uint8_t want[512];
	size_t n = unhex(hex, want, sizeof(want));

	assert_int_equal(len, n);
	assert_memory_equal(got, want, n);
}

static int setup(void **state)
{
	const char *why = NULL;

	(void)state;
	if (pilot_crypto_init(&why) != 0) {
		print_error("crypto init: %s\n", why);
		return -1;
	}
	return 0;
}

static void keypairs(pilot_x25519 *a, pilot_x25519 *b)
{
	uint8_t priv[32];

	unhex32(A_X_PRIV, priv);
	pilot_x25519_from_private(a, priv);
	unhex32(B_X_PRIV, priv);
	pilot_x25519_from_private(b, priv);
}

static void vector_identity(pilot_identity *id)
{
	uint8_t seed[32];

	unhex32(A_ED_SEED, seed);
	pilot_identity_from_seed(id, seed);
}

/* ---- §5.2 ---- */

static void test_vec_x25519_public(void **state)
{
	pilot_x25519 a, b;

	(void)state;
	keypairs(&a, &b);
	assert_hex(a.pub, 32, A_X_PUB);
	assert_hex(b.pub, 32, B_X_PUB);
	pilot_x25519_wipe(&a);
	assert_hex(a.priv, 32, "0000000000000000000000000000000000000000000000000000000000000000");
}

static void test_vec_x25519_shared(void **state)
{
	pilot_x25519 a, b;
	uint8_t s1[32], s2[32];

	(void)state;
	keypairs(&a, &b);
	assert_int_equal(pilot_x25519_shared(&a, b.pub, s1), 0);
	assert_int_equal(pilot_x25519_shared(&b, a.pub, s2), 0);
	assert_hex(s1, 32, SHARED);
	assert_hex(s2, 32, SHARED);
}

static void test_x25519_low_order_rejected(void **state)
{
	static const uint8_t zero[32];
	pilot_x25519 a, b;
	uint8_t s[32];

	(void)state;
	keypairs(&a, &b);
	assert_int_equal(pilot_x25519_shared(&a, zero, s), -EINVAL);
}

static void test_x25519_generate(void **state)
{
	pilot_x25519 a, b, c;
	uint8_t s1[32], s2[32];

	(void)state;
	pilot_x25519_generate(&a);
	pilot_x25519_generate(&b);
	pilot_x25519_from_private(&c, a.priv);
	assert_memory_equal(c.pub, a.pub, 32);
	assert_int_equal(pilot_x25519_shared(&a, b.pub, s1), 0);
	assert_int_equal(pilot_x25519_shared(&b, a.pub, s2), 0);
	assert_memory_equal(s1, s2, 32);
}

static void test_vec_kdf_ref(void **state)
{
	uint8_t shared[32], key[32];

	(void)state;
	unhex32(SHARED, shared);
	pilot_kdf_ref(shared, key);
	assert_hex(key, 32, REF_KEY);
}

static void test_vec_kdf_hkdf(void **state)
{
	uint8_t shared[32], prk[32], key[32];

	(void)state;
	unhex32(SHARED, shared);
	pilot_hkdf_prk(shared, prk);
	assert_hex(prk, 32, HKDF_PRK);
	pilot_kdf_hkdf(shared, key);
	assert_hex(key, 32, NEW_KEY);
}

/* ---- §5.2 Ed25519 + §5.4 PILA ---- */

static void test_vec_ed25519_keys(void **state)
{
	pilot_identity id;

	(void)state;
	vector_identity(&id);
	assert_hex(id.pk, 32, A_ED_PUB);
	/* Go layout: seed || public. */
	assert_hex(id.sk, 32, A_ED_SEED);
	assert_hex(id.sk + 32, 32, A_ED_PUB);
	pilot_identity_wipe(&id);
}

static void test_vec_pila_signed_msg(void **state)
{
	uint8_t xpub[32], msg[PROTO_PILA_SIGNED_LEN];

	(void)state;
	unhex32(A_X_PUB, xpub);
	proto_pila_signed_msg(1, xpub, msg);
	assert_hex(msg, sizeof(msg), PILA_SIGNED);
}

static void test_vec_pila_build(void **state)
{
	pilot_identity id;
	uint8_t xpub[32], frame[PROTO_PILA_LEN + 8];

	(void)state;
	vector_identity(&id);
	unhex32(A_X_PUB, xpub);
	assert_int_equal(pilot_pila_build(&id, 1, xpub, frame, sizeof(frame)), PROTO_PILA_LEN);
	assert_hex(frame, PROTO_PILA_LEN, PILA_FRAME);
	assert_true(pilot_pila_build(&id, 1, xpub, frame, PROTO_PILA_LEN - 1) < 0);
}

static void test_vec_pila_verify(void **state)
{
	uint8_t frame[PROTO_PILA_LEN];
	proto_pila a, bad;

	(void)state;
	unhex(PILA_FRAME, frame, sizeof(frame));
	assert_int_equal(proto_pila_decode(frame, sizeof(frame), &a), 0);
	assert_int_equal(pilot_pila_verify(&a), 0);
	bad = a;
	bad.node = 2; /* the node is signed */
	assert_int_equal(pilot_pila_verify(&bad), -EBADMSG);
	bad = a;
	bad.x25519[31] ^= 1;
	assert_int_equal(pilot_pila_verify(&bad), -EBADMSG);
	bad = a;
	bad.sig[0] ^= 1;
	assert_int_equal(pilot_pila_verify(&bad), -EBADMSG);
	bad = a;
	bad.ed25519[5] ^= 1;
	assert_int_equal(pilot_pila_verify(&bad), -EBADMSG);
}

static void test_ed25519_sign_verify(void **state)
{
	pilot_identity id;
	uint8_t sig[64];
	static const char msg[] = "hello";

	(void)state;
	pilot_identity_generate(&id);
	pilot_ed25519_sign(&id, msg, 5, sig);
	assert_int_equal(pilot_ed25519_verify(id.pk, msg, 5, sig), 0);
	assert_int_equal(pilot_ed25519_verify(id.pk, msg, 4, sig), -EBADMSG);
	sig[63] ^= 0x80;
	assert_int_equal(pilot_ed25519_verify(id.pk, msg, 5, sig), -EBADMSG);
	pilot_identity_wipe(&id);
}

/* ---- §5.5 PILS ---- */

/* Seal the SYN of §3.1 with a vector key as node 1 → 2 and compare with want. */
static void seal_vector(const char *keyhex, enum pilot_kdf kdf, const char *want)
{
	uint8_t key[32], buf[128];
	size_t pt_len;
	pilot_session *s;

	unhex32(keyhex, key);
	s = pilot_session_new_raw(key, kdf, 1, 2, PREFIX);
	assert_non_null(s);
	assert_int_equal(pilot_session_kdf(s), kdf);
	assert_int_equal(pilot_session_send_counter(s), 0);
	pt_len = unhex(SYN_31, buf + PROTO_PILS_HDR, sizeof(buf) - PROTO_PILS_HDR);
	assert_int_equal(pilot_session_seal(s, buf, pt_len, pt_len + PROTO_PILS_OVERHEAD), 70);
	assert_hex(buf, 70, want);
	assert_int_equal(pilot_session_send_counter(s), 1);
	pilot_session_free(s);
}

static void test_vec_pils_ref_seal(void **state)
{
	(void)state;
	seal_vector(REF_KEY, PILOT_KDF_REF, PILS_REF);
}

static void test_vec_pils_new_seal(void **state)
{
	(void)state;
	seal_vector(NEW_KEY, PILOT_KDF_NEW, PILS_NEW);
}

/* Receiver side: node 2 opening node 1's frame. */
static pilot_session *receiver(const char *keyhex, enum pilot_kdf kdf, uint32_t peer)
{
	uint8_t key[32];
	pilot_session *s;

	unhex32(keyhex, key);
	s = pilot_session_new_raw(key, kdf, 2, peer, PREFIX);
	assert_non_null(s);
	return s;
}

static void open_vector(const char *keyhex, enum pilot_kdf kdf, const char *frame_hex)
{
	uint8_t buf[128], *pt = NULL;
	size_t len, pt_len = 0;
	pilot_session *s = receiver(keyhex, kdf, 1);

	len = unhex(frame_hex, buf, sizeof(buf));
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), 0);
	assert_ptr_equal(pt, buf + PROTO_PILS_HDR);
	assert_hex(pt, pt_len, SYN_31);
	assert_int_equal(pilot_session_replay(s)->max, 1);
	/* The same frame again is a replay. */
	len = unhex(frame_hex, buf, sizeof(buf));
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), -EALREADY);
	pilot_session_free(s);
}

static void test_vec_pils_ref_open(void **state)
{
	(void)state;
	open_vector(REF_KEY, PILOT_KDF_REF, PILS_REF);
}

static void test_vec_pils_new_open(void **state)
{
	(void)state;
	open_vector(NEW_KEY, PILOT_KDF_NEW, PILS_NEW);
}

/* Ref and new frames are mutually undecryptable (tunnel.md §13.1). */
static void test_pils_ref_new_incompatible(void **state)
{
	uint8_t buf[128], *pt;
	size_t len, pt_len;
	pilot_session *s = receiver(REF_KEY, PILOT_KDF_NEW, 1);

	(void)state;
	len = unhex(PILS_REF, buf, sizeof(buf));
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), -EBADMSG);
	pilot_session_free(s);
	s = receiver(NEW_KEY, PILOT_KDF_REF, 1);
	len = unhex(PILS_NEW, buf, sizeof(buf));
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), -EBADMSG);
	pilot_session_free(s);
}

static void test_pils_new_wrong_aad(void **state)
{
	uint8_t buf[128], *pt;
	size_t len, pt_len;
	pilot_session *s = receiver(NEW_KEY, PILOT_KDF_NEW, 3); /* expects node 3 */

	(void)state;
	len = unhex(PILS_NEW, buf, sizeof(buf));
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), -EBADMSG);
	assert_int_equal(pilot_session_replay(s)->max, 0);
	pilot_session_free(s);
	/* A frame rewritten to claim node 3 does not authenticate under node 1's session. */
	s = receiver(NEW_KEY, PILOT_KDF_NEW, 1);
	len = unhex(PILS_NEW, buf, sizeof(buf));
	buf[7] = 3;
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), -EBADMSG);
	pilot_session_free(s);
}

/* Ref has no AAD: the sender field only selects the session (tunnel.md §5). */
static void test_pils_ref_sender_not_authenticated(void **state)
{
	uint8_t buf[128], *pt;
	size_t len, pt_len;
	pilot_session *s = receiver(REF_KEY, PILOT_KDF_REF, 1);

	(void)state;
	len = unhex(PILS_REF, buf, sizeof(buf));
	buf[7] = 3;
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), 0);
	pilot_session_free(s);
}

/* Flip one bit at off; the open must fail with -EBADMSG and leave the window as it was. */
static void tamper_one(pilot_session *s, const char *frame_hex, size_t off)
{
	uint8_t buf[128], *pt = NULL;
	size_t len, pt_len = 0;
	pilot_replay before = *pilot_session_replay(s);

	len = unhex(frame_hex, buf, sizeof(buf));
	buf[off] ^= 0x01;
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), -EBADMSG);
	assert_memory_equal(pilot_session_replay(s), &before, sizeof(before));
}

static void tamper_all(const char *keyhex, enum pilot_kdf kdf, const char *frame_hex)
{
	pilot_session *s = receiver(keyhex, kdf, 1);
	uint8_t buf[128], *pt;
	size_t len, pt_len;

	/* Nonce prefix (8..11), counter low byte (19) changes the counter to 0 → stale,
	 * so tamper counter byte 18 instead; ciphertext (20..53); tag (54..69). */
	for (size_t off = 8; off < 70; off++) {
		if (off == 19)
			continue;
		tamper_one(s, frame_hex, off);
	}
	if (kdf == PILOT_KDF_NEW)
		tamper_one(s, frame_hex, 7);
	/* The untouched frame still opens: nothing above consumed its counter. */
	len = unhex(frame_hex, buf, sizeof(buf));
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), 0);
	pilot_session_free(s);
}

static void test_pils_tamper_ref(void **state)
{
	(void)state;
	tamper_all(REF_KEY, PILOT_KDF_REF, PILS_REF);
}

static void test_pils_tamper_new(void **state)
{
	(void)state;
	tamper_all(NEW_KEY, PILOT_KDF_NEW, PILS_NEW);
}

/* The reference records the counter before authenticating, so one forged frame
 * with a huge counter blocks the peer (tunnel.md §8). We must not. */
static void test_pils_forged_huge_counter(void **state)
{
	pilot_session *s = receiver(NEW_KEY, PILOT_KDF_NEW, 1);
	uint8_t buf[128], *pt;
	size_t len, pt_len;

	(void)state;
	len = unhex(PILS_NEW, buf, sizeof(buf));
	proto_put64(buf + 12, UINT64_MAX);
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), -EBADMSG);
	assert_int_equal(pilot_session_replay(s)->max, 0);
	len = unhex(PILS_NEW, buf, sizeof(buf));
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), 0);
	assert_int_equal(pilot_session_replay(s)->max, 1);
	pilot_session_free(s);
}

static void test_pils_short_and_magic(void **state)
{
	pilot_session *s = receiver(REF_KEY, PILOT_KDF_REF, 1);
	uint8_t buf[128], *pt;
	size_t len, pt_len;

	(void)state;
	len = unhex(PILS_REF, buf, sizeof(buf));
	assert_int_equal(pilot_session_open(s, buf, 35, &pt, &pt_len), -EMSGSIZE);
	assert_int_equal(pilot_session_open(s, buf, 0, &pt, &pt_len), -EMSGSIZE);
	/* Truncation by one byte breaks the tag. */
	assert_int_equal(pilot_session_open(s, buf, len - 1, &pt, &pt_len), -EBADMSG);
	buf[3] = 'T';
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), -EPROTO);
	/* Counter 0 is never sent. */
	len = unhex(PILS_REF, buf, sizeof(buf));
	buf[19] = 0;
	assert_int_equal(pilot_session_open(s, buf, len, &pt, &pt_len), -ESTALE);
	assert_int_equal(pilot_session_replay(s)->max, 0);
	pilot_session_free(s);
}

/* Two endpoints deriving from their own X25519 halves talk in both directions. */
static void roundtrip(enum pilot_kdf kdf)
{
	pilot_x25519 a, b;
	uint8_t sa[32], sb[32], buf[PROTO_PILS_OVERHEAD + 300], *pt;
	size_t pt_len;
	pilot_session *ab, *ba;

	keypairs(&a, &b);
	assert_int_equal(pilot_x25519_shared(&a, b.pub, sa), 0);
	assert_int_equal(pilot_x25519_shared(&b, a.pub, sb), 0);
	ab = pilot_session_new(sa, kdf, 1, 2);
	ba = pilot_session_new(sb, kdf, 2, 1);
	assert_non_null(ab);
	assert_non_null(ba);
	for (size_t i = 0; i < 300; i += 7) {
		pilot_session *tx = i % 2 ? ab : ba, *rx = i % 2 ? ba : ab;
		int n;

		memset(buf + PROTO_PILS_HDR, (int)i, i);
		n = pilot_session_seal(tx, buf, i, sizeof(buf));
		assert_int_equal(n, (int)i + PROTO_PILS_OVERHEAD);
		assert_int_equal(proto_get32(buf + 4), tx == ab ? 1 : 2);
		assert_int_equal(pilot_session_open(rx, buf, (size_t)n, &pt, &pt_len), 0);
		assert_int_equal(pt_len, i);
		for (size_t j = 0; j < i; j++)
			assert_int_equal(pt[j], (uint8_t)i);
	}
	assert_int_equal(pilot_session_send_counter(ab) + pilot_session_send_counter(ba), 43);
	pilot_session_free(ab);
	pilot_session_free(ba);
	pilot_session_free(NULL);
}

static void test_pils_roundtrip_ref(void **state)
{
	(void)state;
	roundtrip(PILOT_KDF_REF);
}

static void test_pils_roundtrip_new(void **state)
{
	(void)state;
	roundtrip(PILOT_KDF_NEW);
}

static void test_pils_seal_no_room(void **state)
{
	uint8_t key[32], buf[64];
	pilot_session *s;

	(void)state;
	unhex32(REF_KEY, key);
	s = pilot_session_new_raw(key, PILOT_KDF_REF, 1, 2, PREFIX);
	assert_int_equal(pilot_session_seal(s, buf, 29, sizeof(buf)), -EMSGSIZE);
	assert_int_equal(pilot_session_seal(s, buf, SIZE_MAX - 10, sizeof(buf)), -EMSGSIZE);
	assert_int_equal(pilot_session_send_counter(s), 0);
	assert_int_equal(pilot_session_seal(s, buf, 28, sizeof(buf)), 64);
	assert_int_equal(pilot_session_send_counter(s), 1);
	pilot_session_free(s);
}

/* Fresh sessions choose fresh random prefixes. */
static void test_pils_random_prefix(void **state)
{
	uint8_t shared[32], b1[64], b2[64];
	pilot_session *s1, *s2;

	(void)state;
	unhex32(SHARED, shared);
	s1 = pilot_session_new(shared, PILOT_KDF_NEW, 1, 2);
	s2 = pilot_session_new(shared, PILOT_KDF_NEW, 1, 2);
	assert_int_equal(pilot_session_seal(s1, b1, 0, sizeof(b1)), 36);
	assert_int_equal(pilot_session_seal(s2, b2, 0, sizeof(b2)), 36);
	assert_memory_not_equal(b1 + 8, b2 + 8, 4);
	assert_int_equal(proto_get64(b1 + 12), 1);
	pilot_session_free(s1);
	pilot_session_free(s2);
}

/* ---- §7 replay window ---- */

static void test_vec_replay_walkthrough(void **state)
{
	static const struct { uint64_t ctr; int verdict; uint64_t max; } steps[] = {
		{1, 0, 1}, {3, 0, 3}, {2, 0, 3}, {2, -EALREADY, 3}, {300, 0, 300},
		{44, -ESTALE, 300}, {45, 0, 300}, {299, 0, 300}, {1000, 0, 1000},
		{744, -ESTALE, 1000},
	};
	pilot_replay w;

	(void)state;
	memset(&w, 0, sizeof(w));
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		int rc = pilot_replay_check(&w, steps[i].ctr);

		assert_int_equal(rc, steps[i].verdict);
		if (rc == 0)
			pilot_replay_update(&w, steps[i].ctr);
		assert_int_equal(w.max, steps[i].max);
	}
}

static void test_replay_check_is_pure(void **state)
{
	pilot_replay w, copy;

	(void)state;
	memset(&w, 0, sizeof(w));
	pilot_replay_update(&w, 5);
	copy = w;
	assert_int_equal(pilot_replay_check(&w, 1000), 0);
	assert_int_equal(pilot_replay_check(&w, 4), 0);
	assert_int_equal(pilot_replay_check(&w, 5), -EALREADY);
	assert_memory_equal(&w, &copy, sizeof(w));
}

static void test_replay_counter_zero(void **state)
{
	pilot_replay w;

	(void)state;
	memset(&w, 0, sizeof(w));
	assert_int_equal(pilot_replay_check(&w, 0), -ESTALE);
	pilot_replay_update(&w, 7);
	assert_int_equal(pilot_replay_check(&w, 0), -ESTALE);
}

/* A new max less than 256 ahead clears only the newly covered slots. */
static void test_replay_slide(void **state)
{
	pilot_replay w;

	(void)state;
	memset(&w, 0, sizeof(w));
	for (uint64_t c = 1; c <= 10; c++)
		pilot_replay_update(&w, c);
	assert_int_equal(pilot_replay_check(&w, 265), 0);
	pilot_replay_update(&w, 265); /* window [10, 265] */
	assert_int_equal(pilot_replay_check(&w, 10), -EALREADY);
	assert_int_equal(pilot_replay_check(&w, 9), -ESTALE);
	assert_int_equal(pilot_replay_check(&w, 11), 0);
	assert_int_equal(pilot_replay_check(&w, 264), 0);
	assert_int_equal(pilot_replay_check(&w, 265), -EALREADY);
	/* Slot 265 % 256 = 9 was reused; the old 9 is out of the window anyway. */
	pilot_replay_update(&w, 266); /* window [11, 266]: 10 drops out */
	assert_int_equal(pilot_replay_check(&w, 10), -ESTALE);
	assert_int_equal(pilot_replay_check(&w, UINT64_MAX), 0);
	pilot_replay_update(&w, UINT64_MAX);
	assert_int_equal(pilot_replay_check(&w, UINT64_MAX), -EALREADY);
	assert_int_equal(pilot_replay_check(&w, UINT64_MAX - 255), 0);
	assert_int_equal(pilot_replay_check(&w, UINT64_MAX - 256), -ESTALE);
	assert_int_equal(pilot_replay_check(&w, 266), -ESTALE);
}

/* ---- §9 compat auth ---- */

static void test_vec_compat_auth(void **state)
{
	static const char msg[] = "compat_auth:1234:1767225600:"
				  "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
	pilot_identity id;
	uint8_t sig[64];
	char b64[128];

	(void)state;
	vector_identity(&id);
	assert_int_equal(pilot_b64_encode(id.pk, 32, b64, sizeof(b64)), 44);
	assert_string_equal(b64, "U3p2rDMqKCp2pJO7P39iBJVBt2Z2tFvcsRdz4a7EzXw=");
	pilot_ed25519_sign(&id, msg, strlen(msg), sig);
	assert_int_equal(pilot_b64_encode(sig, 64, b64, sizeof(b64)), 88);
	assert_string_equal(b64, "FImvA7pFAES/3WQVk+GPWzoJOdF3T1EVCEYVim+0Fs32i7NsE5zb2gwNIZxC"
				 "DWMI0rvdrRp/M+K4Qx1aI0tuBg==");
	assert_int_equal(pilot_ed25519_verify(id.pk, msg, strlen(msg), sig), 0);
	pilot_identity_wipe(&id);
}

/* ---- §10 port-443 secure channel ---- */

static void test_vec_secure_channel(void **state)
{
	uint8_t shared[32], key[32], nonce[12] = {0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1};
	uint8_t msg[4 + 12 + 2 + 16];
	unsigned long long clen = 0;

	(void)state;
	unhex32(SHARED, shared);
	pilot_kdf_secure(shared, key);
	assert_hex(key, 32, "00848a0968f7d983e4ced63696b0edfb150660ba62f26ec92f053821b12563cd");
	proto_put32(msg, 30);
	memcpy(msg + 4, nonce, 12);
	assert_int_equal(crypto_aead_aes256gcm_encrypt(msg + 16, &clen, (const uint8_t *)"hi", 2,
						       NULL, 0, NULL, nonce, key), 0);
	assert_int_equal(clen, 18);
	assert_hex(msg, sizeof(msg),
		   "00 00 00 1E 00 00 00 02 00 00 00 00 00 00 00 01"
		   "76 6F FF 5F 16 F3 0C FE 96 45 75 F3 E0 54 43 E1"
		   "A7 EF");
}

/* ---- base64 ---- */

static void test_b64_roundtrip(void **state)
{
	uint8_t in[70], out[70];
	char s[128];

	(void)state;
	for (size_t n = 0; n < sizeof(in); n++) {
		randombytes_buf(in, n);
		assert_int_equal(pilot_b64_encode(in, n, s, pilot_b64_len(n)), (n + 2) / 3 * 4);
		assert_int_equal(pilot_b64_decode(s, strlen(s), out, n), (int)n);
		assert_memory_equal(in, out, n);
	}
	assert_int_equal(pilot_b64_len(32), 45);
	assert_int_equal(pilot_b64_encode(in, 32, s, 44), -EMSGSIZE);
}

static void test_b64_reject(void **state)
{
	static const char *bad[] = {
		"QQ",        /* missing padding */
		"QQ=",       /* short padding */
		"QQ==x",     /* trailing garbage */
		"QQ==QQ==",  /* padding in the middle */
		"Q Q=",      /* whitespace */
		"QQ==\n",    /* trailing newline */
		"Q-_A",      /* URL alphabet */
		"====",
		"QR==",      /* non-zero unused bits (Go's non-strict decoder would accept) */
	};
	uint8_t out[16];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(pilot_b64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -EINVAL);
	assert_int_equal(pilot_b64_decode("QUJD", 4, out, 2), -EMSGSIZE);
	assert_int_equal(pilot_b64_decode("QUJD", 4, out, 3), 3);
	assert_memory_equal(out, "ABC", 3);
	assert_int_equal(pilot_b64_decode("QQ==", 4, out, 1), 1);
	assert_int_equal(pilot_b64_decode("", 0, out, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vec_x25519_public),
		cmocka_unit_test(test_vec_x25519_shared),
		cmocka_unit_test(test_x25519_low_order_rejected),
		cmocka_unit_test(test_x25519_generate),
		cmocka_unit_test(test_vec_kdf_ref),
		cmocka_unit_test(test_vec_kdf_hkdf),
		cmocka_unit_test(test_vec_ed25519_keys),
		cmocka_unit_test(test_vec_pila_signed_msg),
		cmocka_unit_test(test_vec_pila_build),
		cmocka_unit_test(test_vec_pila_verify),
		cmocka_unit_test(test_ed25519_sign_verify),
		cmocka_unit_test(test_vec_pils_ref_seal),
		cmocka_unit_test(test_vec_pils_new_seal),
		cmocka_unit_test(test_vec_pils_ref_open),
		cmocka_unit_test(test_vec_pils_new_open),
		cmocka_unit_test(test_pils_ref_new_incompatible),
		cmocka_unit_test(test_pils_new_wrong_aad),
		cmocka_unit_test(test_pils_ref_sender_not_authenticated),
		cmocka_unit_test(test_pils_tamper_ref),
		cmocka_unit_test(test_pils_tamper_new),
		cmocka_unit_test(test_pils_forged_huge_counter),
		cmocka_unit_test(test_pils_short_and_magic),
		cmocka_unit_test(test_pils_roundtrip_ref),
		cmocka_unit_test(test_pils_roundtrip_new),
		cmocka_unit_test(test_pils_seal_no_room),
		cmocka_unit_test(test_pils_random_prefix),
		cmocka_unit_test(test_vec_replay_walkthrough),
		cmocka_unit_test(test_replay_check_is_pure),
		cmocka_unit_test(test_replay_counter_zero),
		cmocka_unit_test(test_replay_slide),
		cmocka_unit_test(test_vec_compat_auth),
		cmocka_unit_test(test_vec_secure_channel),
		cmocka_unit_test(test_b64_roundtrip),
		cmocka_unit_test(test_b64_reject),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
