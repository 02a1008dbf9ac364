/* Unit tests for lib/crc32.c (CRC-32/IEEE, packet.md §4, vectors.md §1): known answers,
 * every path (bytewise table, slicing-by-8, PCLMULQDQ, the dispatcher and the public
 * proto_crc32*) against a bitwise reference on random buffers of every length
 * 0..4096 at random alignments and on 64 KiB buffers, incremental == one-shot, and
 * packet checksums computed in place against a zeroed-checksum copy. If the CPU has
 * no PCLMULQDQ, crc32_ieee_pclmul is slicing-by-8 and the same checks still run. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/crc32.h"
#include "lib/proto.h"

typedef uint32_t (*crc_fn)(uint32_t crc, const void *buf, size_t len);

static const struct {
	const char *name;
	crc_fn fn;
} paths[] = {
	{ "bytewise", crc32_ieee_bytewise },
	{ "slice8", crc32_ieee_slice8 },
	{ "pclmul", crc32_ieee_pclmul },
	{ "update", crc32_ieee_update },
	{ "proto_crc32_update", proto_crc32_update },
};
#define NPATHS (sizeof(paths) / sizeof(paths[0]))

/* The definition, one bit at a time: no table that could share a bug with crc32.c. */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

static void fill_random(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(rng() >> 56);
}

/* Exact-size heap buffer of len bytes starting at offset align, so ASan flags any
 * read before or past the bytes a path was given. */
static uint8_t *alloc_at(size_t align, size_t len, uint8_t **base)
{
	*base = malloc(align + len ? align + len : 1);
	assert_non_null(*base);
	return *base + align;
}

/* Checks every path on (crc, p, len) against the reference. */
static void check_all(uint32_t crc, const uint8_t *p, size_t len)
{
	uint32_t want = crc_ref(crc, p, len);

	for (size_t i = 0; i < NPATHS; i++) {
		uint32_t got = paths[i].fn(crc, p, len);

		if (got != want)
			fail_msg("%s(0x%08x, len %zu, addr&63 %zu) = 0x%08x, want 0x%08x", paths[i].name,
				 crc, len, (size_t)((uintptr_t)p & 63), got, want);
	}
}

/* ---- known answers ---- */

static void test_known_answers(void **state)
{
	static const struct {
		const char *s;
		size_t len;
		uint32_t crc;
	} kat[] = {
		{ "", 0, 0x00000000 },
		{ "a", 1, 0xE8B7BE43 },
		{ "123456789", 9, 0xCBF43926 }, /* vectors.md §1 */
		{ "The quick brown fox jumps over the lazy dog", 43, 0x414FA339 },
	};
	uint8_t buf[32];

	for (size_t i = 0; i < NPATHS; i++) {
		for (size_t k = 0; k < sizeof(kat) / sizeof(kat[0]); k++)
			assert_int_equal(paths[i].fn(0, kat[k].s, kat[k].len), kat[k].crc);
		assert_int_equal(paths[i].fn(0, NULL, 0), 0);
		assert_int_equal(paths[i].fn(0x12345678, NULL, 0), 0x12345678);
		/* zlib.crc32 of 32 zero bytes, 32 0xFF bytes, bytes 0..31 */
		memset(buf, 0, sizeof(buf));
		assert_int_equal(paths[i].fn(0, buf, 32), 0x190A55AD);
		memset(buf, 0xFF, sizeof(buf));
		assert_int_equal(paths[i].fn(0, buf, 32), 0xFF6CAB0B);
		for (int b = 0; b < 32; b++)
			buf[b] = (uint8_t)b;
		assert_int_equal(paths[i].fn(0, buf, 32), 0x91267E8A);
	}
	assert_int_equal(proto_crc32("123456789", 9), 0xCBF43926);
	assert_int_equal(proto_crc32(NULL, 0), 0);
}

/* zlib.crc32 of 64 KiB: big enough for many 64-byte folds on the PCLMUL path. */
static void test_known_answers_64k(void **state)
{
	uint8_t *buf = malloc(65536);

	assert_non_null(buf);
	memset(buf, 0, 65536);
	for (size_t i = 0; i < NPATHS; i++)
		assert_int_equal(paths[i].fn(0, buf, 65536), 0xD7978EEB);
	for (size_t j = 0; j < 65536; j++)
		buf[j] = (uint8_t)j;
	for (size_t i = 0; i < NPATHS; i++)
		assert_int_equal(paths[i].fn(0, buf, 65536), 0xB11DE6A1);
	free(buf);
}

/* ---- every path against the reference ---- */

static void test_every_length_random_alignment(void **state)
{
	print_message("PCLMULQDQ path %s\n", crc32_ieee_have_pclmul() ?
		      "in use (checked)" : "not available: checking slicing-by-8 only");
	for (size_t len = 0; len <= 4096; len++) {
		size_t align = (size_t)(rng() % 64);
		uint32_t crc = (len & 1) ? (uint32_t)rng() : 0;
		uint8_t *base, *p = alloc_at(align, len, &base);

		fill_random(p, len);
		check_all(crc, p, len);
		free(base);
	}
}

/* Lengths around the PCLMUL thresholds (64, 16-byte steps) at every alignment 0..63. */
static void test_thresholds_all_alignments(void **state)
{
	for (size_t len = 0; len <= 200; len++) {
		for (size_t align = 0; align < 64; align++) {
			uint8_t *base, *p = alloc_at(align, len, &base);

			fill_random(p, len);
			check_all((uint32_t)rng(), p, len);
			free(base);
		}
	}
}

static void test_64k_buffers(void **state)
{
	static const size_t lens[] = { 65535, 65536, 65537, 65569 /* max packet */ };

	for (int round = 0; round < 4; round++) {
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			size_t align = (size_t)(rng() % 64);
			uint8_t *base, *p = alloc_at(align, lens[l], &base);

			fill_random(p, lens[l]);
			check_all(round ? (uint32_t)rng() : 0, p, lens[l]);
			free(base);
		}
	}
}

/* ---- incremental == one-shot ---- */

static void test_incremental(void **state)
{
	const size_t len = 9000;
	uint8_t *buf = malloc(len);

	assert_non_null(buf);
	fill_random(buf, len);
	uint32_t whole = crc_ref(0, buf, len);

	for (size_t i = 0; i < NPATHS; i++) {
		/* every single cut in the first 300 bytes, then random cuts */
		for (size_t cut = 0; cut <= len; cut = cut < 300 ? cut + 1 : cut + 1 + rng() % 700) {
			uint32_t c = paths[i].fn(0, buf, cut);

			assert_int_equal(paths[i].fn(c, buf + cut, len - cut), whole);
		}
		/* many random pieces, including empty ones */
		for (int round = 0; round < 50; round++) {
			uint32_t c = 0;
			size_t off = 0;

			while (off < len) {
				size_t n = (size_t)(rng() % 400);

				if (n > len - off)
					n = len - off;
				c = paths[i].fn(c, buf + off, n);
				off += n;
			}
			assert_int_equal(c, whole);
		}
	}
	/* paths mixed piece by piece */
	for (int round = 0; round < 200; round++) {
		uint32_t c = 0;
		size_t off = 0;

		while (off < len) {
			size_t n = (size_t)(rng() % 3000);

			if (n > len - off)
				n = len - off;
			c = paths[rng() % NPATHS].fn(c, buf + off, n);
			off += n;
		}
		assert_int_equal(c, whole);
	}
	free(buf);
}

/* ---- packets: in-place checksum == CRC over a zeroed-checksum copy ---- */

static void test_packet_checksum_in_place(void **state)
{
	static const size_t plens[] = { 0, 1, 29, 30, 31, 63, 64, 65, 1152, 1366, 4096, 65535 };
	uint8_t *out = malloc(PROTO_MAX_PACKET), *copy = malloc(PROTO_MAX_PACKET);
	uint8_t *payload = malloc(PROTO_MAX_PAYLOAD);

	assert_non_null(out);
	assert_non_null(copy);
	assert_non_null(payload);
	for (size_t i = 0; i < sizeof(plens) / sizeof(plens[0]); i++) {
		size_t plen = plens[i], n = PROTO_HDR_SIZE + plen;
		proto_hdr h = { .version = PROTO_VERSION, .flags = (uint8_t)(rng() & 0x0F),
				.protocol = 1, .src_port = (uint16_t)rng(), .dst_port = 80,
				.seq = (uint32_t)rng(), .ack = (uint32_t)rng(), .window = 512 };
		const uint8_t *pl = NULL;
		proto_hdr d;

		h.src.net = 1;
		h.src.node = (uint32_t)rng();
		h.dst.net = 1;
		h.dst.node = (uint32_t)rng();
		fill_random(payload, plen);
		assert_int_equal(proto_packet_encode(&h, payload, plen, out, PROTO_MAX_PACKET), (int)n);

		memcpy(copy, out, n);
		memset(copy + 30, 0, 4);
		assert_int_equal(proto_get32(out + 30), crc_ref(0, copy, n));

		/* decode from an exact-size buffer (ASan: no read past the packet) */
		uint8_t *exact = malloc(n);

		assert_non_null(exact);
		memcpy(exact, out, n);
		assert_int_equal(proto_packet_decode(exact, n, 1, &d, &pl), 0);
		assert_int_equal(d.checksum, crc_ref(0, copy, n));
		assert_ptr_equal(pl, exact + PROTO_HDR_SIZE);
		assert_memory_equal(exact, out, n); /* decode did not write */
		/* any single flipped bit (header, checksum or payload) is caught */
		for (int k = 0; k < 64; k++) {
			size_t bit = (size_t)(rng() % (n * 8));

			if (bit / 8 == 2 || bit / 8 == 3)
				continue; /* payload length: a size error, not a CRC one */
			exact[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			assert_int_equal(proto_packet_decode(exact, n, 1, &d, &pl), -EBADMSG);
			exact[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		free(exact);
	}
	free(payload);
	free(copy);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_known_answers_64k),
		cmocka_unit_test(test_every_length_random_alignment),
		cmocka_unit_test(test_thresholds_all_alignments),
		cmocka_unit_test(test_64k_buffers),
		cmocka_unit_test(test_incremental),
		cmocka_unit_test(test_packet_checksum_in_place),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
