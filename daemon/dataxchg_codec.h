/* The data-exchange frame codec (port 1001, services.md §6.1): an 8-byte header
 * (type, payload length; big-endian), FILE payloads that start with a 2-byte
 * name length and the name, and the reduction of a peer's file name to a safe
 * base name. Pure functions: no I/O, no state; fuzzed by fuzz_dxcodec. The
 * server and client that use it are dataxchg.h. */
#ifndef PILOT_DATAXCHG_CODEC_H
#define PILOT_DATAXCHG_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define DX_HDR_SIZE    8
#define DX_MAX_PAYLOAD (1u << 24)  /* 16 MiB */
#define DX_NAME_MAX    200         /* bytes of a stored file name (before the stamp) */

enum dx_type {
	DX_TEXT = 1,
	DX_BINARY = 2,
	DX_JSON = 3,
	DX_FILE = 4,
};

/* "TEXT", "BINARY", "JSON", "FILE" or "UNKNOWN(<n>)" written into buf. */
#define DX_TYPENAME_MAX 24
const char *dx_type_name(uint32_t type, char buf[DX_TYPENAME_MAX]);
/* 0 on success and *type, *len set; -EAGAIN when len < 8; -EMSGSIZE when the
 * declared payload length exceeds DX_MAX_PAYLOAD (drop the connection). */
int dx_hdr_decode(const uint8_t *buf, size_t len, uint32_t *type, uint32_t *plen);
void dx_hdr_encode(uint32_t type, uint32_t plen, uint8_t out[DX_HDR_SIZE]);
/* One whole frame in a malloc'd buffer. For DX_FILE, name (nlen bytes) goes
 * first as §6.1 says. Returns the length or -EMSGSIZE / -EINVAL / -ENOMEM. */
int64_t dx_frame_encode(uint32_t type, const char *name, size_t nlen, const void *data,
			size_t len, uint8_t **out);
/* §6.1 on a whole FILE payload: 0 with name/data spans set (nlen 0 = the
 * "empty name" case, data = the whole payload). */
void dx_file_split(const uint8_t *p, size_t len, const uint8_t **name, size_t *nlen,
		   const uint8_t **data, size_t *dlen);
/* Reduce a peer-supplied name to a safe base name in out (NUL-terminated).
 * 0, or -EINVAL (empty, ".", "..", leading '.', control characters) or
 * -ENAMETOOLONG (> DX_NAME_MAX). */
int dx_safe_name(const uint8_t *in, size_t len, char out[DX_NAME_MAX + 1]);

#endif
