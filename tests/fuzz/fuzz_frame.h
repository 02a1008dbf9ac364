/* Shared by the fuzz targets that feed length-framed messages (fuzz_ctlreply,
 * fuzz_regconn, fuzz_regreply): the input's lines become frames of a 4-byte
 * big-endian length and the line, so a corpus stays readable text. */
#ifndef PILOT_FUZZ_FRAME_H
#define PILOT_FUZZ_FRAME_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A malloc'd buffer (NULL when out of memory) holding one frame per line of p. */
static uint8_t *frame_lines(const uint8_t *p, size_t n, size_t *len)
{
	uint8_t *out = malloc(n + 4 * (n + 1));
	size_t o = 0;

	if (!out)
		return NULL;
	while (n) {
		const uint8_t *nl = memchr(p, '\n', n);
		size_t l = nl ? (size_t)(nl - p) : n;

		out[o++] = (uint8_t)(l >> 24);
		out[o++] = (uint8_t)(l >> 16);
		out[o++] = (uint8_t)(l >> 8);
		out[o++] = (uint8_t)l;
		memcpy(out + o, p, l);
		o += l;
		p += l + (nl ? 1 : 0);
		n -= l + (nl ? 1 : 0);
	}
	*len = o;
	return out;
}

#endif
