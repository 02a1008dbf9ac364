/* The data-exchange frame codec (services.md §6.1); see dataxchg_codec.h. */
#include "daemon/dataxchg_codec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

const char *dx_type_name(uint32_t type, char buf[DX_TYPENAME_MAX])
{
	static const char *const names[] = { NULL, "TEXT", "BINARY", "JSON", "FILE" };

	if (type >= 1 && type <= 4)
		snprintf(buf, DX_TYPENAME_MAX, "%s", names[type]);
	else
		snprintf(buf, DX_TYPENAME_MAX, "UNKNOWN(%" PRIu32 ")", type);
	return buf;
}

int dx_hdr_decode(const uint8_t *buf, size_t len, uint32_t *type, uint32_t *plen)
{
	if (len < DX_HDR_SIZE)
		return -EAGAIN;
	*type = get32(buf);
	*plen = get32(buf + 4);
	return *plen > DX_MAX_PAYLOAD ? -EMSGSIZE : 0;
}

void dx_hdr_encode(uint32_t type, uint32_t plen, uint8_t out[DX_HDR_SIZE])
{
	put32(out, type);
	put32(out + 4, plen);
}

int64_t dx_frame_encode(uint32_t type, const char *name, size_t nlen, const void *data,
			size_t len, uint8_t **out)
{
	size_t pre = type == DX_FILE ? 2 + nlen : 0;
	size_t plen = pre + len;
	uint8_t *b;

	*out = NULL;
	if ((len && !data) || (nlen && !name) || nlen > UINT16_MAX)
		return -EINVAL;
	if (plen > DX_MAX_PAYLOAD)
		return -EMSGSIZE;
	b = malloc(DX_HDR_SIZE + plen + 1);
	if (!b)
		return -ENOMEM;
	dx_hdr_encode(type, (uint32_t)plen, b);
	if (type == DX_FILE) {
		b[8] = (uint8_t)(nlen >> 8);
		b[9] = (uint8_t)nlen;
		if (nlen)
			memcpy(b + 10, name, nlen);
	}
	if (len)
		memcpy(b + DX_HDR_SIZE + pre, data, len);
	*out = b;
	return (int64_t)(DX_HDR_SIZE + plen);
}

void dx_file_split(const uint8_t *p, size_t len, const uint8_t **name, size_t *nlen,
		   const uint8_t **data, size_t *dlen)
{
	size_t k = len >= 2 ? (size_t)p[0] << 8 | p[1] : 0;

	if (len < 2 || k + 2 > len) { /* §6.1: empty name, the whole payload is data */
		*name = NULL;
		*nlen = 0;
		*data = p;
		*dlen = len;
		return;
	}
	*name = p + 2;
	*nlen = k;
	*data = p + 2 + k;
	*dlen = len - 2 - k;
}

int dx_safe_name(const uint8_t *in, size_t len, char out[DX_NAME_MAX + 1])
{
	size_t start = 0;

	out[0] = '\0';
	for (size_t i = 0; i < len; i++) /* last element after either separator */
		if (in[i] == '/' || in[i] == '\\')
			start = i + 1;
	in += start;
	len -= start;
	if (len == 0 || in[0] == '.') /* also ".", ".." and hidden names */
		return -EINVAL;
	if (len > DX_NAME_MAX)
		return -ENAMETOOLONG;
	for (size_t i = 0; i < len; i++)
		if (in[i] < 0x20 || in[i] == 0x7f)
			return -EINVAL;
	memcpy(out, in, len);
	out[len] = '\0';
	return 0;
}
