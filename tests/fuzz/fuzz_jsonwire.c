/* libFuzzer: registry frame decoding on arbitrary bytes, then the getters and a
 * re-encode of whatever decoded. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "lib/jsonwire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *o = NULL;
	uint8_t *out = NULL;
	int n = jw_decode(data, size, &o);

	if (n <= 0)
		return 0;
	(void)jw_get_u32(o, "node_id");
	(void)jw_get_u16(o, "port");
	(void)jw_get_i64(o, "delta");
	(void)jw_get_bool(o, "public");
	(void)jw_get_str(o, "type");
	(void)jw_has(o, "error");
	if (jw_encode(o, &out) > 0) {
		json_object *back = NULL;

		/* What we encode must decode again. */
		if (jw_decode(out, (size_t)(out[0] << 24 | out[1] << 16 | out[2] << 8 | out[3]) + 4, &back) <= 0)
			abort();
		json_object_put(back);
	}
	free(out);
	json_object_put(o);
	return 0;
}
