/* "host:port" splitting for listen and connect addresses; see hostport.h. */
#include "lib/hostport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pilot_split_hostport(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon, *h = addr;
	size_t hl;

	if (!addr)
		return -EINVAL;
	if (addr[0] == '[') {
		const char *rb = strchr(addr, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = addr + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
			return -EINVAL; /* no port, or an unbracketed IPv6 address */
		hl = (size_t)(colon - addr);
	}
	if (hl >= hostlen || strlen(colon + 1) >= portlen || colon[1] == '\0')
		return -EINVAL;
	for (const char *p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	if (strtol(colon + 1, NULL, 10) > 65535) /* digits only, checked above */
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, portlen, "%s", colon + 1);
	return 0;
}
