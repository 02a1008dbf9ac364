/* The /metrics listener's request-line parser (lib/httpd.c), shared by pilotd
 * and pilot-rendezvous, and the Prometheus label escaping. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/httpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The answer must agree with the bytes: GET, one space, the path, then a
 * space or a query. */
static int is_get(const uint8_t *d, size_t n, const char *path)
{
	size_t l = strlen(path);

	return n > 4 + l && !memcmp(d, "GET ", 4) && !memcmp(d + 4, path, l) && (d[4 + l] == ' ' || d[4 + l] == '?');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum pilot_httpd_route r = pilot_httpd_parse((const char *)data, size);
	char *val, *out = NULL;
	size_t olen = 0;
	FILE *f;

	if (r > PILOT_HTTPD_NOT_FOUND)
		abort();
	if ((r == PILOT_HTTPD_HEALTHZ && !is_get(data, size, "/healthz"))
	    || (r == PILOT_HTTPD_METRICS && !is_get(data, size, "/metrics")))
		abort();
	/* label values come from our own state, but must escape anything */
	if (!(val = malloc(size + 1)))
		return 0;
	memcpy(val, data, size);
	val[size] = '\0';
	if ((f = open_memstream(&out, &olen))) {
		const char *l[] = { "peer", val, NULL };

		pilot_prom_sample(f, "pilot_fuzz", l, (double)size);
		fclose(f);
		if (memchr(out, '\n', olen) != out + olen - 1) /* one line, newline last */
			abort();
	}
	free(out);
	free(val);
	return 0;
}
