/* libFuzzer: the data-exchange frame codec (daemon/dataxchg_codec.c) alone. The
 * input is a frame as a peer would send it: the header decodes or is refused,
 * a FILE payload splits into spans inside the input, the peer's name reduces to
 * a safe base name (no separator, no leading '.', no control character, at most
 * DX_NAME_MAX bytes) or is refused, and a decoded frame re-encodes to the same
 * bytes. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/dataxchg_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_name(const uint8_t *p, size_t n)
{
	char out[DX_NAME_MAX + 1];
	int r = dx_safe_name(p, n, out);
	size_t len;

	CHECK(r == 0 || r == -EINVAL || r == -ENAMETOOLONG);
	if (r)
		return;
	len = strlen(out);
	CHECK(len > 0 && len <= DX_NAME_MAX && out[0] != '.');
	for (size_t i = 0; i < len; i++)
		CHECK(out[i] != '/' && out[i] != '\\' && (uint8_t)out[i] >= 0x20 && out[i] != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char tn[DX_TYPENAME_MAX];
	uint32_t type, plen;
	const uint8_t *name, *body, *pl;
	size_t nlen, dlen, have;
	uint8_t *frame = NULL;
	int64_t n;
	int r = dx_hdr_decode(data, size, &type, &plen);

	check_name(data, size);
	if (r == -EAGAIN) {
		CHECK(size < DX_HDR_SIZE);
		return 0;
	}
	if (r == -EMSGSIZE) {
		CHECK(plen > DX_MAX_PAYLOAD);
		return 0;
	}
	CHECK(r == 0 && plen <= DX_MAX_PAYLOAD);
	CHECK(strlen(dx_type_name(type, tn)) < DX_TYPENAME_MAX);
	pl = data + DX_HDR_SIZE;
	have = size - DX_HDR_SIZE < plen ? size - DX_HDR_SIZE : plen;
	if (type != DX_FILE) {
		/* a whole frame re-encodes to the same bytes */
		if (have == plen) {
			n = dx_frame_encode(type, NULL, 0, pl, plen, &frame);
			CHECK(n == (int64_t)(DX_HDR_SIZE + plen));
			CHECK(!memcmp(frame, data, (size_t)n));
			free(frame);
		}
		return 0;
	}
	dx_file_split(pl, have, &name, &nlen, &body, &dlen);
	CHECK(body >= pl && body + dlen == pl + have);
	if (nlen) {
		CHECK(name >= pl && name + nlen <= body);
		check_name(name, nlen);
		if (have == plen) {
			n = dx_frame_encode(DX_FILE, (const char *)name, nlen, body, dlen, &frame);
			CHECK(n == (int64_t)(DX_HDR_SIZE + plen));
			CHECK(!memcmp(frame, data, (size_t)n));
			free(frame);
		}
	}
	return 0;
}
