/* libFuzzer: the task submit wire pieces (daemon/tasks_codec.c) on peer input:
 * the frame header decodes within its bounds or is refused; a task ID that
 * passes has exactly the 8-4-4-4-12 lowercase-hex shape; a result name that
 * passes is a base name (no separator, no leading '.', no control byte) with
 * an allowed extension, copied unchanged. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/tasks_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t type = 0, len = 0;
	char s[512], out[TS_NAME_MAX + 1];
	size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
	int rc = ts_frame_hdr(data, size, (1u << 20), &type, &len);

	CHECK(rc == 0 || rc == -EAGAIN || rc == -EMSGSIZE || rc == -EPROTO);
	if (rc == 0)
		CHECK(type >= 1 && type <= 4 && len <= (1u << 20));
	memcpy(s, data, n);
	s[n] = '\0';
	if (ts_task_id_ok(s)) {
		CHECK(strlen(s) == TS_ID_LEN && !strchr(s, '/') && !strchr(s, '.'));
		CHECK(s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-');
	}
	rc = ts_result_name(s, out);
	CHECK(rc == 0 || rc == -EINVAL || rc == -EPERM);
	if (rc == 0) {
		CHECK(!strcmp(out, s) && out[0] != '.' && !strchr(out, '/') && !strchr(out, '\\'));
		for (const char *p = out; *p; p++)
			CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
	}
	(void)ts_transition_ok(s, s + n / 2);
	return 0;
}
