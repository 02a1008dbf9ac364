/* libFuzzer: arbitrary bytes as nameserver requests (services.md §2) from a
 * few callers against one in-memory store, plus the bare parser and the
 * client formatter on what it accepts. Input: [caller byte][request...]
 * chunks separated by 0xff. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nameserver/ns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int member(void *arg, uint32_t node, uint16_t net)
{
	(void)arg;
	return (node + net) % 3 == 0 ? 1 : (node % 5 == 0 ? -1 : 0);
}

static int boot(void *arg, const char *name, pilot_addr *out)
{
	(void)arg;
	if (name[0] != 'r')
		return -2;
	*out = pilot_addr_make(0, (uint32_t)strlen(name));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[NS_MSG_MAX + 1];
	char err[160], fmt[NS_NAME_MAX + 128];
	ns_ctx c = { .st = ns_store_new(NULL, 1000, 64), .is_member = member, .bootstrap = boot };
	size_t i = 0;

	while (i < size && c.st) {
		const uint8_t *end = memchr(data + i, 0xff, size - i);
		size_t n = end ? (size_t)(end - data) - i : size - i;
		ns_req r;

		if (n) {
			c.caller = data[i] % 8;
			c.now_ms += 100;
			ns_store_reap(c.st, c.now_ms);
			ns_handle(&c, (const char *)data + i + 1, n - 1, out, sizeof(out));
			if (ns_parse((const char *)data + i + 1, n - 1, &r, err, sizeof(err)) == 0)
				ns_format_req(&r, fmt, sizeof(fmt));
		}
		i += n + 1;
	}
	ns_store_free(c.st);
	return 0;
}
