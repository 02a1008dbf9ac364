/* libFuzzer: identity JSON parsing (cli.md §8) from an arbitrary buffer.
 * Invariants: no crash; an accepted identity is self-consistent (its public key
 * is the one its seed derives) and the error message is always a C string. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lib/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	pilot_identity id, derived;
	char err[128];
	char *buf;
	int rc;

	if (!ready) {
		if (sodium_init() < 0)
			abort();
		ready = 1;
	}
	/* Exact-size copy without a NUL: the parser must honour the length. */
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	memset(err, 'x', sizeof(err));
	rc = pilot_identity_parse(buf, size, &id, err, sizeof(err));
	if (rc == 0) {
		pilot_identity_from_seed(&derived, id.sk);
		if (memcmp(&derived, &id, sizeof(id)) != 0)
			abort();
	} else if (rc != -EINVAL && rc != -ENOMEM) {
		abort();
	} else if (memchr(err, '\0', sizeof(err)) == NULL) {
		abort();
	}
	free(buf);
	return 0;
}
