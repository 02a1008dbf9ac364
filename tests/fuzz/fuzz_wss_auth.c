/* The compat auth parsers on arbitrary bytes: the bridge's auth_reply check (parse,
 * key lookup, freshness, Ed25519) and the client's challenge parser. A reply built
 * from a parsed challenge must verify. Also the bridge's text-message check (bye). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "daemon/wss.h"
#include "lib/crypto.h"
#include "rendezvous/wss.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pilot_identity fz_id;

static int key_of(void *ctx, uint32_t node, uint8_t pk[32])
{
	if (node != 1234)
		return -1;
	memcpy(pk, fz_id.pk, 32);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char nonce[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
	uint8_t seed[32] = { 7 };
	char n2[65], reply[512];
	uint64_t ts;
	uint32_t node;
	int len;

	pilot_identity_from_seed(&fz_id, seed);
	(void)rdv_wss_check_reply((const char *)data, size, nonce, 1767225600, 1767225610, key_of,
				  NULL, &node);
	(void)rdv_wss_is_bye((const char *)data, size);
	if (wss_parse_challenge((const char *)data, size, n2, &ts) == 0 && ts <= UINT64_MAX - 30) {
		len = wss_auth_reply(reply, sizeof(reply), &fz_id, 1234, ts, n2);
		if (len < 0 || rdv_wss_check_reply(reply, (size_t)len, n2, ts, ts, key_of, NULL, &node) != 0
		    || node != 1234)
			__builtin_trap();
	}
	return 0;
}
