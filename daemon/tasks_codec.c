/* Task submit wire pieces; see tasks_codec.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "daemon/tasks_codec.h"
#include "lib/proto.h"

int ts_frame_hdr(const uint8_t *p, size_t len, uint32_t max, uint32_t *type, uint32_t *plen)
{
	if (len < TS_HDR)
		return -EAGAIN;
	*type = proto_get32(p);
	*plen = proto_get32(p + 4);
	if (*type < TS_SUBMIT || *type > TS_SEND_RESULTS)
		return -EPROTO;
	if (*plen > max || *plen > TS_MAX_FRAME)
		return -EMSGSIZE;
	return 0;
}

void ts_frame_put(uint8_t hdr[TS_HDR], uint32_t type, uint32_t plen)
{
	proto_put32(hdr, type);
	proto_put32(hdr + 4, plen);
}

bool ts_task_id_ok(const char *s)
{
	static const int dash[] = { 8, 13, 18, 23 };

	if (!s || strlen(s) != TS_ID_LEN)
		return false;
	for (int i = 0; i < TS_ID_LEN; i++) {
		bool d = i == dash[0] || i == dash[1] || i == dash[2] || i == dash[3];

		if (d ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

void ts_task_id_new(char out[TS_ID_LEN + 1])
{
	uint8_t b[16];

	randombytes_buf(b, sizeof(b));
	snprintf(out, TS_ID_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
}

static const char *const statuses[] = { "NEW",       "ACCEPTED",  "DECLINED",  "EXECUTING",
					"COMPLETED", "SUCCEEDED", "CANCELLED", "EXPIRED" };

bool ts_status_ok(const char *s)
{
	for (size_t i = 0; s && i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (!strcmp(s, statuses[i]))
			return true;
	return false;
}

bool ts_transition_ok(const char *from, const char *to)
{
	if (!from || !to)
		return false;
	if (!strcmp(from, "NEW"))
		return !strcmp(to, "ACCEPTED") || !strcmp(to, "DECLINED") || !strcmp(to, "CANCELLED");
	if (!strcmp(from, "ACCEPTED"))
		return !strcmp(to, "EXECUTING") || !strcmp(to, "EXPIRED") || !strcmp(to, "CANCELLED");
	return false;
}

static const char *const allowed_ext[] = {
	".md", ".txt", ".rtf", ".docx", ".pdf", ".pptx", ".pth", ".pt", ".onnx", ".h5", ".pb", ".ckpt",
	".safetensors", ".bin", ".csv", ".parquet", ".xlsx", ".xls", ".jpg", ".jpeg", ".png", ".svg",
	".gif", ".webp",
};

int ts_result_name(const char *in, char out[TS_NAME_MAX + 1])
{
	size_t n = in ? strlen(in) : 0;
	const char *dot;

	if (!n || n > TS_NAME_MAX || in[0] == '.')
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c < 0x20 || c == 0x7f || c == '/' || c == '\\' || c == ':')
			return -EINVAL;
	}
	if (!(dot = strrchr(in, '.')))
		return -EPERM;
	for (size_t i = 0; i < sizeof(allowed_ext) / sizeof(allowed_ext[0]); i++)
		if (!strcmp(dot, allowed_ext[i])) {
			memcpy(out, in, n + 1);
			return 0;
		}
	return -EPERM;
}

int ts_reward(int64_t idle_ms, int64_t staged_ms, int64_t cpu_ms)
{
	double cpu_min = (cpu_ms > 0 ? (double)cpu_ms : 0) / 60000.0;
	double idle_s = (idle_ms > 0 ? (double)idle_ms : 0) / 1000.0;
	double staged_s = (staged_ms > 0 ? (double)staged_ms : 0) / 1000.0;
	double idle_pen = fmin(idle_s / 60.0 * 0.3, 0.3), staged_pen = fmin(staged_s / 600.0 * 0.3, 0.3);
	double eff = fmax(0.4, 1.0 - idle_pen - staged_pen);
	long r = lround((1.0 + log2(1.0 + cpu_min)) * eff);

	return r < 1 ? 1 : (int)(r > 1000000 ? 1000000 : r);
}
