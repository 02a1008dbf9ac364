/* libFuzzer: arbitrary bytes -> jw_decode -> reg_handle on an in-memory
 * registry. A few identities are registered first so handlers get past the
 * "not registered" checks; state persists across inputs (bounded by the
 * registry's own limits), and is reset every 4096 runs to bound memory. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lib/jsonwire.h"
#include "lib/log.h"
#include "rendezvous/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static registry *reg;
static unsigned runs;

static void reset(void)
{
	reg_config c;
	char err[128];
	static const char *keys[] = {
		"{\"type\":\"register\",\"public_key\":\"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\",\"owner\":\"o1\",\"hostname\":\"h1\"}",
		"{\"type\":\"register\",\"public_key\":\"pbzSPfhKvHZ1rNjuQQtmWF4AUDhIe6krBqRFvdz6Y0k=\",\"owner\":\"o2\"}",
		"{\"type\":\"register\",\"public_key\":\"PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=\"}",
	};

	reg_close(reg);
	pilot_log_init("fuzz", PILOT_LOG_ERROR, PILOT_LOG_TEXT);
	memset(&c, 0, sizeof(c));
	reg = reg_open(&c, err, sizeof(err));
	for (size_t i = 0; reg && i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_object *q = json_tokener_parse(keys[i]);
		reg_ctx ctx = { "198.18.0.9", 1234, 1700000000000ULL, 1 };

		json_object_put(reg_handle(reg, q, &ctx));
		json_object_put(q);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *q = NULL, *resp, *snap;
	uint8_t hdr[4];
	uint8_t *buf;
	reg_ctx ctx = { "198.18.0.9", 1234, 1700000000000ULL, 1 };

	if (!reg || ++runs % 4096 == 0)
		reset();
	if (!reg)
		return 0;
	/* Frame the bytes so jw_decode sees a well-formed length. */
	if (size > 65536)
		return 0;
	hdr[0] = (uint8_t)(size >> 24);
	hdr[1] = (uint8_t)(size >> 16);
	hdr[2] = (uint8_t)(size >> 8);
	hdr[3] = (uint8_t)size;
	buf = malloc(size + 4);
	if (!buf)
		return 0;
	memcpy(buf, hdr, 4);
	memcpy(buf + 4, data, size);
	if (jw_decode(buf, size + 4, &q) > 0 && q) {
		ctx.now_ms += runs * 1000ULL;
		resp = reg_handle(reg, q, &ctx);
		json_object_put(resp);
		if (size && data[0] == '{' && size % 7 == 0) {
			/* Also exercise snapshot apply with the same object. */
			snap = reg_snapshot(reg);
			reg_apply_snapshot(reg, q);
			reg_apply_snapshot(reg, snap);
			json_object_put(snap);
		}
		reg_tick(reg, ctx.now_ms);
		json_object_put(q);
	}
	free(buf);
	return 0;
}
