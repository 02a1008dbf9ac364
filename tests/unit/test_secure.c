/* Port-443 secure channel codec (lib/secure.h): the reference exchange against
 * vectors.md §10, our authenticated variant (forged and mismatched identities
 * fail), nonce order (replayed, reordered, reflected records refused), the
 * downgrade rules and the record length bounds. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lib/proto.h"
#include "lib/secure.h"
#include "test_hex.h"

#define A_X_PRIV "5f6f4f9f6e6954d8ce424a1a86fb0a1f44f8a63fcdb8def9d87ee436a4b7a73a"
#define A_X_PUB  "0d80901c6a3a4f58814fd005b3ec2529efe37e2454a66aafdced193a63d6784f"
#define B_X_PRIV "78ece184af00c47044ec376206e970ca42f7310d1147322e44c54de82fa83bc2"
#define B_X_PUB  "cdd1401b37a17ed2b97cf97e46e1559a01c0c6f8bd0fe6b33ce1ee7114ad756c"
#define HI_RECORD                                                                                            \
	"00 00 00 1E 00 00 00 02 00 00 00 00 00 00 00 01"                                                    \
	"76 6F FF 5F 16 F3 0C FE 96 45 75 F3 E0 54 43 E1"                                                    \
	"A7 EF"

/* One side: what it emitted (wire bytes towards the other) and what it delivered. */
typedef struct side {
	psec s;
	uint8_t out[4096];
	size_t outlen;
	uint8_t got[4096];
	size_t gotlen;
	int records;
} side;

static int emit(void *arg, const uint8_t *p, size_t n)
{
	side *sd = arg;

	assert_true(sd->outlen + n <= sizeof(sd->out));
	memcpy(sd->out + sd->outlen, p, n);
	sd->outlen += n;
	return 0;
}

static int deliver(void *arg, const uint8_t *p, size_t n)
{
	side *sd = arg;

	assert_true(sd->gotlen + n <= sizeof(sd->got));
	memcpy(sd->got + sd->gotlen, p, n);
	sd->gotlen += n;
	sd->records++;
	return 0;
}

/* Move everything a emitted into b. */
static int pump(side *a, side *b)
{
	size_t n = a->outlen;

	a->outlen = 0;
	return psec_input(&b->s, a->out, n);
}

static pilot_identity id_a, id_b, id_c;

static int setup(void **state)
{
	(void)state;
	if (sodium_init() < 0 || !crypto_aead_aes256gcm_is_available())
		return -1;
	pilot_identity_generate(&id_a);
	pilot_identity_generate(&id_b);
	pilot_identity_generate(&id_c);
	return 0;
}

static void cfg_of(psec_config *c, side *sd, bool server, const pilot_identity *own, uint32_t own_node,
		   uint32_t peer_node, const pilot_identity *peer)
{
	memset(c, 0, sizeof(*c));
	c->server = server;
	c->id = own;
	c->own_node = own_node;
	c->peer_node = peer_node;
	c->peer_pk = peer ? peer->pk : NULL;
	c->arg = sd;
	c->emit = emit;
	c->deliver = deliver;
}

/* Client A (node 1) and server B (node 2), both with identities. */
static void pair(side *cl, side *sv, const pilot_identity *cl_id, const pilot_identity *sv_id,
		 const pilot_identity *cl_thinks_sv, const pilot_identity *sv_thinks_cl)
{
	psec_config c;

	memset(cl, 0, sizeof(*cl));
	memset(sv, 0, sizeof(*sv));
	cfg_of(&c, sv, true, sv_id, 2, 1, sv_thinks_cl);
	assert_int_equal(psec_init(&sv->s, &c), 0);
	cfg_of(&c, cl, false, cl_id, 1, 2, cl_thinks_sv);
	assert_int_equal(psec_init(&cl->s, &c), 0);
}

static int64_t send_msg(side *sd, const char *m)
{
	uint8_t rec[256];
	int64_t n = psec_seal(&sd->s, (const uint8_t *)m, strlen(m), rec, sizeof(rec));

	if (n > 0)
		emit(sd, rec, (size_t)n);
	return n;
}

/* ---- reference variant: vectors.md §10 ---- */

static void test_reference_vector(void **state)
{
	uint8_t apriv[32], bpriv[32], bpub[32], rec[64], want[64];
	side cl, sv;
	psec_config c;

	(void)state;
	unhex(A_X_PRIV, apriv, 32);
	unhex(B_X_PRIV, bpriv, 32);
	unhex(B_X_PUB, bpub, 32);
	memset(&cl, 0, sizeof(cl));
	memset(&sv, 0, sizeof(sv));
	/* Client A without an identity: exactly the reference client. */
	cfg_of(&c, &cl, false, NULL, 1, 2, NULL);
	c.eph_priv = apriv;
	assert_int_equal(psec_init(&cl.s, &c), 0);
	assert_int_equal(cl.outlen, 32);
	{
		uint8_t apub[32];

		unhex(A_X_PUB, apub, 32);
		assert_memory_equal(cl.out, apub, 32); /* no auth bit without an identity */
	}
	cl.outlen = 0;
	/* The server's hello as a reference server sends it. */
	assert_int_equal(psec_input(&cl.s, bpub, 32), 0);
	assert_true(psec_ready(&cl.s));
	assert_false(cl.s.auth);
	assert_int_equal(psec_seal(&cl.s, (const uint8_t *)"hi", 2, rec, sizeof(rec)), 34);
	assert_int_equal(unhex(HI_RECORD, want, sizeof(want)), 34);
	assert_memory_equal(rec, want, 34);

	/* Our server (with an identity, but the client offered nothing) answers
	 * with the plain key and decrypts the vector. */
	cfg_of(&c, &sv, true, &id_b, 2, 1, &id_a);
	c.eph_priv = bpriv;
	assert_int_equal(psec_init(&sv.s, &c), 0);
	{
		uint8_t apub[32];

		unhex(A_X_PUB, apub, 32);
		assert_int_equal(psec_input(&sv.s, apub, 32), 0);
	}
	assert_int_equal(sv.outlen, 32);
	assert_memory_equal(sv.out, bpub, 32); /* bit clear: reference answer */
	/* The record split at every byte still decrypts. */
	for (size_t i = 0; i < 34; i++)
		assert_int_equal(psec_input(&sv.s, want + i, 1), 0);
	assert_int_equal(sv.gotlen, 2);
	assert_memory_equal(sv.got, "hi", 2);
	psec_free(&cl.s);
	psec_free(&sv.s);
}

/* ---- authenticated variant ---- */

static void test_auth_ok(void **state)
{
	side cl, sv;

	(void)state;
	pair(&cl, &sv, &id_a, &id_b, &id_b, &id_a);
	assert_true(cl.out[31] & 0x80);
	assert_false(psec_ready(&cl.s));
	assert_int_equal(send_msg(&cl, "early"), -EAGAIN); /* nothing before the server proved itself */
	assert_int_equal(pump(&cl, &sv), 0);
	assert_true(sv.s.auth);
	assert_true(sv.out[31] & 0x80);
	assert_int_equal(sv.outlen, 32 + PSEC_AUTH_LEN + PSEC_OVERHEAD);
	assert_false(psec_ready(&sv.s)); /* the client's auth record is still to come */
	assert_int_equal(pump(&sv, &cl), 0);
	assert_true(psec_ready(&cl.s));
	assert_true(cl.s.auth);
	assert_int_equal(send_msg(&cl, "hello"), 5 + PSEC_OVERHEAD);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_true(psec_ready(&sv.s));
	assert_int_equal(sv.gotlen, 5);
	assert_memory_equal(sv.got, "hello", 5);
	assert_int_equal(send_msg(&sv, "back"), 4 + PSEC_OVERHEAD);
	assert_int_equal(send_msg(&sv, "again"), 5 + PSEC_OVERHEAD);
	assert_int_equal(pump(&sv, &cl), 0);
	assert_int_equal(cl.gotlen, 9);
	assert_memory_equal(cl.got, "backagain", 9);
	/* The auth record was not delivered as data. */
	assert_int_equal(cl.records, 2);
	psec_free(&cl.s);
	psec_free(&sv.s);
}

/* The server is really C (a forger holding its own key) while the client
 * expects B's key for node 2: the client refuses. */
static void test_auth_forged_server(void **state)
{
	side cl, sv;

	(void)state;
	pair(&cl, &sv, &id_a, &id_c, &id_b, &id_a);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_int_equal(pump(&sv, &cl), -EACCES);
	assert_false(psec_ready(&cl.s));
	assert_int_equal(send_msg(&cl, "secret"), -EAGAIN);
	psec_free(&cl.s);
	psec_free(&sv.s);
}

/* A client claiming node 1 but signing with C's key: the server refuses and
 * never delivers the data that follows. */
static void test_auth_forged_client(void **state)
{
	side cl, sv;

	(void)state;
	pair(&cl, &sv, &id_c, &id_b, &id_b, &id_a);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_int_equal(pump(&sv, &cl), 0);
	assert_true(psec_ready(&cl.s));
	assert_int_equal(send_msg(&cl, "data"), 4 + PSEC_OVERHEAD);
	assert_int_equal(pump(&cl, &sv), -EACCES);
	assert_int_equal(sv.gotlen, 0);
	psec_free(&cl.s);
	psec_free(&sv.s);
}

/* A signature made for another transcript (a man in the middle replaying the
 * genuine server's auth record over its own DH) fails. */
static void test_auth_transcript_bound(void **state)
{
	side cl1, sv1, cl2, sv2;

	(void)state;
	pair(&cl1, &sv1, &id_a, &id_b, &id_b, &id_a);
	pair(&cl2, &sv2, &id_a, &id_b, &id_b, &id_a);
	assert_int_equal(pump(&cl1, &sv1), 0);
	assert_int_equal(pump(&cl2, &sv2), 0);
	/* Give client 1 server 2's hello and auth record. */
	assert_int_equal(pump(&sv2, &cl1), -EBADMSG);
	psec_free(&cl1.s);
	psec_free(&sv1.s);
	psec_free(&cl2.s);
	psec_free(&sv2.s);
}

/* ---- downgrade ---- */

static void test_downgrade_client_requires_auth(void **state)
{
	side cl, sv;
	psec_config c;

	(void)state;
	memset(&cl, 0, sizeof(cl));
	memset(&sv, 0, sizeof(sv));
	/* A reference server (plain) against our client that requires auth. */
	cfg_of(&c, &sv, true, NULL, 2, 1, NULL);
	c.plain = true;
	assert_int_equal(psec_init(&sv.s, &c), 0);
	cfg_of(&c, &cl, false, &id_a, 1, 2, &id_b);
	c.require_auth = true;
	assert_int_equal(psec_init(&cl.s, &c), 0);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_false(sv.s.auth);
	assert_int_equal(pump(&sv, &cl), -EPROTO);
	/* A man in the middle stripping the bit on the way to the server then
	 * setting it on the answer: the client waits for an auth record that
	 * never comes and the server's first data record is refused. */
	psec_free(&cl.s);
	psec_free(&sv.s);
	pair(&cl, &sv, &id_a, &id_b, &id_b, &id_a);
	cl.out[31] &= 0x7f;
	assert_int_equal(pump(&cl, &sv), 0);
	assert_false(sv.s.auth);
	sv.out[31] |= 0x80;
	assert_int_equal(pump(&sv, &cl), 0);
	assert_int_equal(send_msg(&sv, "plaintext-keyed"), 15 + PSEC_OVERHEAD);
	assert_true(pump(&sv, &cl) < 0);
	assert_false(psec_ready(&cl.s));
	psec_free(&cl.s);
	psec_free(&sv.s);
}

static void test_downgrade_server_requires_auth(void **state)
{
	side cl, sv;
	psec_config c;

	(void)state;
	memset(&cl, 0, sizeof(cl));
	memset(&sv, 0, sizeof(sv));
	cfg_of(&c, &sv, true, &id_b, 2, 1, &id_a);
	c.require_auth = true;
	assert_int_equal(psec_init(&sv.s, &c), 0);
	cfg_of(&c, &cl, false, NULL, 1, 2, NULL); /* a reference client */
	assert_int_equal(psec_init(&cl.s, &c), 0);
	assert_int_equal(pump(&cl, &sv), -EPROTO);
	assert_int_equal(sv.outlen, 0); /* not even a hello */
	psec_free(&cl.s);
	psec_free(&sv.s);
}

/* ---- nonce order ---- */

static void test_replay_reorder_reflect(void **state)
{
	side cl, sv;
	uint8_t r1[64], r2[64];
	size_t n1, n2;

	(void)state;
	/* Replay: the same record twice. */
	pair(&cl, &sv, NULL, NULL, NULL, NULL);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_int_equal(pump(&sv, &cl), 0);
	assert_true(psec_ready(&cl.s) && psec_ready(&sv.s));
	send_msg(&cl, "one");
	n1 = cl.outlen;
	memcpy(r1, cl.out, n1);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_int_equal(psec_input(&sv.s, r1, n1), -EALREADY);
	assert_int_equal(sv.gotlen, 3);
	assert_non_null(sv.s.why);
	psec_free(&cl.s);
	psec_free(&sv.s);

	/* Reorder: records 2 then 1. */
	pair(&cl, &sv, NULL, NULL, NULL, NULL);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_int_equal(pump(&sv, &cl), 0);
	send_msg(&cl, "one");
	n1 = cl.outlen;
	memcpy(r1, cl.out, n1);
	cl.outlen = 0;
	send_msg(&cl, "two");
	n2 = cl.outlen;
	memcpy(r2, cl.out, n2);
	cl.outlen = 0;
	assert_int_equal(psec_input(&sv.s, r2, n2), -EALREADY);
	assert_int_equal(sv.gotlen, 0);
	assert_int_equal(psec_input(&sv.s, r1, n1), -EPIPE); /* failed for good */
	psec_free(&cl.s);
	psec_free(&sv.s);

	/* Reflection: the client's own record sent back to it. */
	pair(&cl, &sv, NULL, NULL, NULL, NULL);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_int_equal(pump(&sv, &cl), 0);
	send_msg(&cl, "me");
	assert_int_equal(psec_input(&cl.s, cl.out, cl.outlen), -EALREADY);
	psec_free(&cl.s);
	psec_free(&sv.s);
}

/* ---- record bounds and tampering ---- */

static void test_bounds(void **state)
{
	side cl, sv;
	uint8_t hdr[4];

	(void)state;
	pair(&cl, &sv, NULL, NULL, NULL, NULL);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_int_equal(pump(&sv, &cl), 0);
	proto_put32(hdr, 11);
	assert_int_equal(psec_input(&sv.s, hdr, 4), -EMSGSIZE);
	assert_string_equal(sv.s.why, "encrypted message too short");
	psec_free(&sv.s);
	psec_free(&cl.s);

	pair(&cl, &sv, NULL, NULL, NULL, NULL);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_int_equal(pump(&sv, &cl), 0);
	proto_put32(hdr, PSEC_MAX_RECORD + 1);
	assert_int_equal(psec_input(&sv.s, hdr, 4), -EMSGSIZE);
	psec_free(&sv.s);
	psec_free(&cl.s);

	/* L = 12: a nonce and no tag. */
	pair(&cl, &sv, NULL, NULL, NULL, NULL);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_int_equal(pump(&sv, &cl), 0);
	{
		uint8_t rec[16] = { 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1 };

		assert_int_equal(psec_input(&sv.s, rec, sizeof(rec)), -EBADMSG);
	}
	psec_free(&sv.s);
	psec_free(&cl.s);

	/* A flipped ciphertext bit. */
	pair(&cl, &sv, NULL, NULL, NULL, NULL);
	assert_int_equal(pump(&cl, &sv), 0);
	assert_int_equal(pump(&sv, &cl), 0);
	send_msg(&cl, "abc");
	cl.out[17] ^= 1;
	assert_int_equal(pump(&cl, &sv), -EBADMSG);
	assert_int_equal(sv.gotlen, 0);
	psec_free(&sv.s);
	psec_free(&cl.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_vector),
		cmocka_unit_test(test_auth_ok),
		cmocka_unit_test(test_auth_forged_server),
		cmocka_unit_test(test_auth_forged_client),
		cmocka_unit_test(test_auth_transcript_bound),
		cmocka_unit_test(test_downgrade_client_requires_auth),
		cmocka_unit_test(test_downgrade_server_requires_auth),
		cmocka_unit_test(test_replay_reorder_reflect),
		cmocka_unit_test(test_bounds),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
