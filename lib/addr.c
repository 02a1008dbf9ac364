/* Pilot virtual addresses: binary and text forms (packet.md §1). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/addr.h"

void pilot_addr_encode(pilot_addr a, uint8_t out[PILOT_ADDR_SIZE])
{
	out[0] = (uint8_t)(a.net >> 8);
	out[1] = (uint8_t)a.net;
	out[2] = (uint8_t)(a.node >> 24);
	out[3] = (uint8_t)(a.node >> 16);
	out[4] = (uint8_t)(a.node >> 8);
	out[5] = (uint8_t)a.node;
}

int pilot_addr_decode(const uint8_t *buf, size_t len, pilot_addr *out)
{
	if (!buf || len < PILOT_ADDR_SIZE)
		return -EINVAL;
	out->net = (uint16_t)(buf[0] << 8 | buf[1]);
	out->node = (uint32_t)buf[2] << 24 | (uint32_t)buf[3] << 16 |
		    (uint32_t)buf[4] << 8 | buf[5];
	return 0;
}

/* Like Go's strconv.ParseUint(s, 10, 16): digits only, at least one, any number of
 * leading zeros, no sign or whitespace. */
static int parse_dec16(const char *s, size_t len, uint16_t *out)
{
	uint32_t v = 0;

	if (len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint32_t)(s[i] - '0');
		if (v > 0xFFFF)
			return -EINVAL;
	}
	*out = (uint16_t)v;
	return 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* One group of exactly four hex characters; four digits cannot exceed 0xFFFF. */
static int parse_hex_group(const char *s, size_t len, uint16_t *out)
{
	uint16_t v = 0;

	if (len != 4)
		return -EINVAL;
	for (size_t i = 0; i < 4; i++) {
		int d = hex_digit(s[i]);

		if (d < 0)
			return -EINVAL;
		v = (uint16_t)(v << 4 | d);
	}
	*out = v;
	return 0;
}

static const char *find_char(const char *s, size_t len, char c)
{
	return len ? memchr(s, c, len) : NULL;
}

/* Part 2 "NNNN.HHHH.LLLL": split at every '.', exactly three groups. */
static int parse_groups(const char *s, size_t len, uint16_t g[3])
{
	const char *end = s + len;

	for (int i = 0; i < 3; i++) {
		const char *dot = find_char(s, (size_t)(end - s), '.');
		const char *stop = dot ? dot : end;

		if ((i < 2) != (dot != NULL))
			return -EINVAL;
		if (parse_hex_group(s, (size_t)(stop - s), &g[i]) < 0)
			return -EINVAL;
		s = dot ? dot + 1 : end;
	}
	return 0;
}

int pilot_addr_parse(const char *s, size_t len, pilot_addr *out)
{
	const char *colon;
	uint16_t net, g[3];

	if (!s)
		return -EINVAL;
	colon = find_char(s, len, ':');
	if (!colon)
		return -EINVAL;
	if (parse_dec16(s, (size_t)(colon - s), &net) < 0)
		return -EINVAL;
	if (parse_groups(colon + 1, len - (size_t)(colon - s) - 1, g) < 0)
		return -EINVAL;
	/* The network appears twice; the ref parser refuses a mismatch. */
	if (g[0] != net)
		return -EINVAL;
	out->net = net;
	out->node = (uint32_t)g[1] << 16 | g[2];
	return 0;
}

char *pilot_addr_format(pilot_addr a, char out[PILOT_ADDR_STRLEN])
{
	snprintf(out, PILOT_ADDR_STRLEN, "%u:%04X.%04X.%04X", (unsigned)a.net,
		 (unsigned)a.net, (unsigned)(a.node >> 16), (unsigned)(a.node & 0xFFFF));
	return out;
}

int pilot_sockaddr_parse(const char *s, size_t len, pilot_addr *addr, uint16_t *port)
{
	size_t i = len;
	pilot_addr a;
	uint16_t p;

	if (!s)
		return -EINVAL;
	/* The address itself contains a ':', so the port is after the last one. */
	while (i > 0 && s[i - 1] != ':')
		i--;
	if (i == 0)
		return -EINVAL;
	if (parse_dec16(s + i, len - i, &p) < 0)
		return -EINVAL;
	if (pilot_addr_parse(s, i - 1, &a) < 0)
		return -EINVAL;
	*addr = a;
	*port = p;
	return 0;
}

char *pilot_sockaddr_format(pilot_addr a, uint16_t port, char out[PILOT_SOCKADDR_STRLEN])
{
	char as[PILOT_ADDR_STRLEN];

	snprintf(out, PILOT_SOCKADDR_STRLEN, "%s:%u", pilot_addr_format(a, as), (unsigned)port);
	return out;
}
