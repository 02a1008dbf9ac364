/* libFuzzer: the port-443 secure channel receiver (lib/secure.c). Mode 0: the
 * input is what a peer sends a server, hello first, then records: every length
 * is checked, nothing is delivered that did not authenticate, and a failed
 * channel stays failed. Mode 1: a real client/server pair (auth variant); the
 * input is a script of records the client seals, with replays, reorders, bit
 * flips and raw bytes mixed in: the server delivers exactly the in-order,
 * untouched records' plaintext, in order, and nothing after a failure. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lib/secure.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                             \
	do {                                                                                                 \
		if (!(c))                                                                                    \
			abort();                                                                             \
	} while (0)

typedef struct sink {
	uint8_t out[1024];
	size_t outlen;
	uint8_t got[1 << 16];
	size_t gotlen;
} sink;

static int emit(void *arg, const uint8_t *p, size_t n)
{
	sink *k = arg;

	CHECK(k->outlen + n <= sizeof(k->out));
	memcpy(k->out + k->outlen, p, n);
	k->outlen += n;
	return 0;
}

static int deliver(void *arg, const uint8_t *p, size_t n)
{
	sink *k = arg;

	CHECK(k->gotlen + n <= sizeof(k->got));
	memcpy(k->got + k->gotlen, p, n);
	k->gotlen += n;
	return 0;
}

static pilot_identity ida, idb;
static sink ks, kc;
static uint8_t want[1 << 16], rec[512], last[512];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	psec sv, cl;
	psec_config c;
	size_t wantlen = 0, lastlen = 0;
	bool dead = false;

	if (!init) {
		if (sodium_init() < 0 || !crypto_aead_aes256gcm_is_available())
			abort();
		pilot_identity_generate(&ida);
		pilot_identity_generate(&idb);
		init = 1;
	}
	if (size < 1)
		return 0;
	memset(&ks, 0, sizeof(ks));
	memset(&kc, 0, sizeof(kc));
	memset(&c, 0, sizeof(c));
	c.server = true;
	c.id = &idb;
	c.own_node = 2;
	c.peer_node = 1;
	c.peer_pk = ida.pk;
	c.max_record = 4096;
	c.arg = &ks;
	c.emit = emit;
	c.deliver = deliver;
	CHECK(psec_init(&sv, &c) == 0);
	if (data[0] & 1) {
		int rc = psec_input(&sv, data + 1, size - 1);

		CHECK(rc == 0 || rc == -EPROTO || rc == -EBADMSG || rc == -EALREADY || rc == -EMSGSIZE ||
		      rc == -EACCES || rc == -EPIPE);
		/* Forging an AEAD tag is out of reach: nothing can be delivered. */
		CHECK(ks.gotlen == 0);
		if (rc < 0)
			CHECK(psec_input(&sv, data, 1) == -EPIPE && !psec_ready(&sv));
		psec_free(&sv);
		return 0;
	}
	c.server = false;
	c.id = &ida;
	c.own_node = 1;
	c.peer_node = 2;
	c.peer_pk = idb.pk;
	c.arg = &kc;
	CHECK(psec_init(&cl, &c) == 0);
	CHECK(psec_input(&sv, kc.out, kc.outlen) == 0);
	kc.outlen = 0;
	CHECK(psec_input(&cl, ks.out, ks.outlen) == 0 && psec_ready(&cl));
	ks.outlen = 0;
	CHECK(psec_input(&sv, kc.out, kc.outlen) == 0); /* the client's auth record */
	kc.outlen = 0;
	for (size_t i = 1; i + 1 < size;) {
		uint8_t op = data[i] >> 6, n = data[i] & 0x3f;
		int64_t r;
		int rc;

		i++;
		if (n > size - i)
			n = (uint8_t)(size - i);
		switch (op) {
		case 0: /* a fresh record, delivered intact */
		case 1: /* a fresh record with one bit flipped (dropped from the stream) */
			r = psec_seal(&cl, data + i, n, rec, sizeof(rec));
			CHECK(r == n + PSEC_OVERHEAD);
			if (op == 1)
				rec[(size_t)data[i - 1] % (size_t)r] ^= 0x01;
			rc = psec_input(&sv, rec, (size_t)r);
			if (op == 0) {
				CHECK(rc == 0);
				memcpy(want + wantlen, data + i, n);
				wantlen += n;
			} else {
				/* refused, or (a flipped length bit) waiting for bytes
				 * that would only misalign the stream: over either way */
				dead = true;
			}
			memcpy(last, rec, (size_t)r);
			lastlen = (size_t)r;
			break;
		case 2: /* replay the last record */
			if (lastlen) {
				CHECK(psec_input(&sv, last, lastlen) < 0);
				dead = true;
			}
			break;
		default: /* raw bytes */
			rc = psec_input(&sv, data + i, n);
			if (n && rc < 0)
				dead = true;
			if (n && rc == 0 && !dead) {
				/* partial header or record: the stream is now misaligned */
				dead = true;
			}
			break;
		}
		i += n;
		if (dead)
			break;
	}
	CHECK(ks.gotlen == wantlen && memcmp(ks.got, want, wantlen) == 0);
	psec_free(&sv);
	psec_free(&cl);
	return 0;
}
