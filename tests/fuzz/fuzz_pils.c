/* libFuzzer: pilot_session_open on arbitrary frames, both KDF variants.
 * Byte 0 picks the mode, the rest is the frame (or, in seal mode, a plaintext):
 *   bit 0  KDF: 0 = ref, 1 = new
 *   bit 1  prime the window with the valid vectors.md §5.5 frame first
 *   bit 2  seal mode: seal the rest as node 1, then open it as node 2
 * Invariants: no crash; on failure the replay window is unchanged; on success the
 * plaintext lies inside the frame and the window has recorded the counter. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lib/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t ref_key[32] = {
	0x78, 0xcf, 0xbf, 0x6f, 0x41, 0xfd, 0x05, 0x85, 0x95, 0x5e, 0xdb, 0x90, 0x86, 0xf5, 0x3f, 0x75,
	0xfb, 0xb6, 0x75, 0x9c, 0x91, 0x7c, 0xe1, 0x1d, 0xdd, 0x6c, 0xe6, 0xf6, 0x16, 0x94, 0xc4, 0x3d,
};
static const uint8_t new_key[32] = {
	0x8f, 0x5b, 0x59, 0x70, 0x98, 0xcc, 0xd9, 0xda, 0xaa, 0x32, 0xd9, 0xcf, 0xa7, 0xeb, 0xf6, 0x67,
	0xd2, 0xd6, 0xdc, 0xe3, 0xfa, 0xbf, 0x29, 0x69, 0xa1, 0x62, 0x04, 0x64, 0x3d, 0xc2, 0x5b, 0xa4,
};
static const uint8_t prefix[4] = {0xA1, 0xA2, 0xA3, 0xA4};
/* The SYN of vectors.md §3.1. */
static const uint8_t syn[34] = {
	0x11, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
	0xC0, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x14, 0x5E,
	0xD8, 0x74,
};

static void prime(pilot_session *rx, enum pilot_kdf kdf)
{
	pilot_session *tx = pilot_session_new_raw(kdf ? new_key : ref_key, kdf, 1, 2, prefix);
	uint8_t buf[sizeof(syn) + PROTO_PILS_OVERHEAD], *pt;
	size_t pt_len;
	int n;

	memcpy(buf + PROTO_PILS_HDR, syn, sizeof(syn));
	n = pilot_session_seal(tx, buf, sizeof(syn), sizeof(buf));
	if (n < 0 || pilot_session_open(rx, buf, (size_t)n, &pt, &pt_len) != 0)
		abort();
	pilot_session_free(tx);
}

static void open_frame(pilot_session *rx, const uint8_t *frame, size_t len)
{
	/* An exact-size heap copy, so ASan sees any read past the frame. */
	uint8_t *buf = malloc(len ? len : 1), *pt = NULL;
	pilot_replay before = *pilot_session_replay(rx);
	size_t pt_len = 0;
	int rc;

	if (!buf)
		return;
	memcpy(buf, frame, len);
	rc = pilot_session_open(rx, buf, len, &pt, &pt_len);
	if (rc < 0 && memcmp(&before, pilot_session_replay(rx), sizeof(before)) != 0)
		abort();
	if (rc == 0 && (pt != buf + PROTO_PILS_HDR || pt_len != len - PROTO_PILS_OVERHEAD ||
			pilot_replay_check(pilot_session_replay(rx), proto_get64(buf + 12)) != -EALREADY))
		abort();
	free(buf);
}

static void seal_open(pilot_session *rx, enum pilot_kdf kdf, const uint8_t *pt_in, size_t len)
{
	pilot_session *tx = pilot_session_new_raw(kdf ? new_key : ref_key, kdf, 1, 2, prefix);
	uint8_t *buf = malloc(len + PROTO_PILS_OVERHEAD), *pt = NULL;
	size_t pt_len = 0;
	int n;

	if (!tx || !buf)
		abort();
	memcpy(buf + PROTO_PILS_HDR, pt_in, len);
	n = pilot_session_seal(tx, buf, len, len + PROTO_PILS_OVERHEAD);
	if (n != (int)(len + PROTO_PILS_OVERHEAD))
		abort();
	/* A primed window has seen counter 1 already: this is then a replay. */
	n = pilot_session_open(rx, buf, (size_t)n, &pt, &pt_len);
	if (n == 0 ? (pt_len != len || memcmp(pt, pt_in, len) != 0) : n != -EALREADY)
		abort();
	free(buf);
	pilot_session_free(tx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	enum pilot_kdf kdf;
	pilot_session *rx;

	if (!ready) {
		if (pilot_crypto_init(NULL) != 0)
			abort();
		ready = 1;
	}
	if (size < 1 || size > 4096)
		return 0;
	kdf = data[0] & 1 ? PILOT_KDF_NEW : PILOT_KDF_REF;
	rx = pilot_session_new_raw(kdf ? new_key : ref_key, kdf, 2, 1, prefix);
	if (!rx)
		return 0;
	if (data[0] & 2)
		prime(rx, kdf);
	if (data[0] & 4)
		seal_open(rx, kdf, data + 1, size - 1);
	else
		open_frame(rx, data + 1, size - 1);
	pilot_session_free(rx);
	return 0;
}
