/* pilotctl's one output path (STYLE.md 12): every result is a json-c object,
 * printed raw in the envelope for --json or rendered here for people. */
#include "ctl/ctl.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static int fail_v(pctl *c, const char *code, const char *hint, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (c->json) {
		json_object *e = pctl_obj();

		pctl_set_str(e, "status", "error");
		pctl_set_str(e, "code", code);
		pctl_set_str(e, "message", msg);
		if (hint && hint[0])
			pctl_set_str(e, "hint", hint);
		fprintf(stderr, "%s\n", json_object_to_json_string_ext(e, JSON_FLAGS));
		json_object_put(e);
	} else {
		fprintf(stderr, "error: %s\n", msg);
		if (hint && hint[0])
			fprintf(stderr, "hint: %s\n", hint);
	}
	return PCTL_EXIT_ERR;
}

int pctl_fail(pctl *c, const char *code, const char *hint, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = fail_v(c, code, hint, fmt, ap);
	va_end(ap);
	return r;
}

int pctl_usage_fail(pctl *c, const char *fmt, ...)
{
	char hint[512] = "";
	va_list ap;
	int r;

	if (c->cmd)
		snprintf(hint, sizeof(hint), "usage: pilotctl %s%s%s", c->cmd->name, c->cmd->usage[0] ? " " : "",
			 c->cmd->usage);
	va_start(ap, fmt);
	r = fail_v(c, "invalid_argument", hint, fmt, ap);
	va_end(ap);
	return r;
}

int pctl_ok(pctl *c, json_object *data, pctl_render_fn render)
{
	if (c->json) {
		json_object *env = pctl_obj();

		pctl_set_str(env, "status", "ok");
		json_object_object_add(env, "data", data);
		printf("%s\n", json_object_to_json_string_ext(env, JSON_FLAGS));
		json_object_put(env);
		return PCTL_EXIT_OK;
	}
	(render ? render : pctl_render_kv)(c, data);
	json_object_put(data);
	return PCTL_EXIT_OK;
}

/* ---- values ---- */

static const char *fmt_age(int64_t ms, char *buf, size_t len)
{
	if (ms < 0)
		return "never";
	if (ms < 1000)
		snprintf(buf, len, "%lldms", (long long)ms);
	else if (ms < 120000)
		snprintf(buf, len, "%llds", (long long)(ms / 1000));
	else if (ms < 7200000)
		snprintf(buf, len, "%lldm", (long long)(ms / 60000));
	else
		snprintf(buf, len, "%lldh", (long long)(ms / 3600000));
	return buf;
}

static const char *fmt_time(int64_t secs, char *buf, size_t len)
{
	time_t t = (time_t)secs;
	struct tm tm;

	if (secs <= 0 || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		return "-";
	return buf;
}

const char *pctl_format(json_object *v, enum pctl_fmt fmt, char *buf, size_t len)
{
	if (!v)
		return "-";
	switch (fmt) {
	case PCTL_BOOL:
		return json_object_get_boolean(v) ? "yes" : "no";
	case PCTL_AGE_MS:
		return fmt_age(json_object_get_int64(v), buf, len);
	case PCTL_TIME:
		return fmt_time(json_object_get_int64(v), buf, len);
	case PCTL_MS:
		snprintf(buf, len, "%.3f ms", json_object_get_double(v));
		return buf;
	case PCTL_STR:
		break;
	}
	if (json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);

		snprintf(buf, len, d == floor(d) && fabs(d) < 1e15 ? "%.0f" : "%.3f", d);
		return buf;
	}
	snprintf(buf, len, "%s", json_object_to_json_string_ext(v, JSON_FLAGS));
	return buf;
}

/* ---- tables ---- */

#define MAX_COLS 32

/* Columns from the first object's keys: "node_id" → "NODE ID". */
static size_t auto_cols(json_object *arr, pctl_col *cols, char hdr[][32])
{
	json_object *first = json_object_array_length(arr) ? json_object_array_get_idx(arr, 0) : NULL;
	size_t n = 0;

	if (!first || !json_object_is_type(first, json_type_object))
		return 0;
	json_object_object_foreach(first, k, v) {
		(void)v;
		if (n == MAX_COLS - 1)
			break;
		snprintf(hdr[n], 32, "%s", k);
		for (char *p = hdr[n]; *p; p++)
			*p = *p == '_' ? ' ' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
		cols[n] = (pctl_col){ hdr[n], k, PCTL_STR };
		n++;
	}
	cols[n] = (pctl_col){ NULL, NULL, PCTL_STR };
	return n;
}

static const char *cell(json_object *row, const pctl_col *col, char *buf, size_t len)
{
	json_object *v = NULL;

	if (!json_object_is_type(row, json_type_object) || !json_object_object_get_ex(row, col->key, &v))
		return "-";
	return pctl_format(v, col->fmt, buf, len);
}

void pctl_table(FILE *f, json_object *arr, const pctl_col *cols)
{
	pctl_col autoc[MAX_COLS];
	char hdr[MAX_COLS][32];
	size_t w[MAX_COLS], ncols = 0, rows;
	char buf[256];

	if (!arr || !json_object_is_type(arr, json_type_array))
		return;
	if (!cols) {
		auto_cols(arr, autoc, hdr);
		cols = autoc;
	}
	rows = json_object_array_length(arr);
	for (; ncols < MAX_COLS && cols[ncols].header; ncols++)
		w[ncols] = strlen(cols[ncols].header);
	for (size_t r = 0; r < rows; r++)
		for (size_t k = 0; k < ncols; k++) {
			size_t l = strlen(cell(json_object_array_get_idx(arr, r), &cols[k], buf, sizeof(buf)));

			if (l > w[k])
				w[k] = l;
		}
	for (size_t k = 0; k < ncols; k++)
		fprintf(f, "%-*s%s", k + 1 < ncols ? (int)w[k] : 0, cols[k].header, k + 1 < ncols ? "  " : "\n");
	for (size_t r = 0; r < rows; r++)
		for (size_t k = 0; k < ncols; k++)
			fprintf(f, "%-*s%s", k + 1 < ncols ? (int)w[k] : 0,
				cell(json_object_array_get_idx(arr, r), &cols[k], buf, sizeof(buf)),
				k + 1 < ncols ? "  " : "\n");
}

static bool is_object_array(json_object *v)
{
	return json_object_is_type(v, json_type_array) && json_object_array_length(v) &&
	       json_object_is_type(json_object_array_get_idx(v, 0), json_type_object);
}

void pctl_render_kv(pctl *c, json_object *data)
{
	char buf[512];

	(void)c;
	if (!data)
		return;
	json_object_object_foreach(data, k, v) {
		if (is_object_array(v)) {
			printf("%s:\n", k);
			pctl_table(stdout, v, NULL);
		} else {
			printf("%s: %s\n", k, pctl_format(v, PCTL_STR, buf, sizeof(buf)));
		}
	}
}

void pctl_render_list(json_object *data, const char *key, const pctl_col *cols, const char *empty)
{
	json_object *arr = data ? json_object_object_get(data, key) : NULL;

	if (!arr || !json_object_is_type(arr, json_type_array) || !json_object_array_length(arr)) {
		printf("%s\n", empty);
		return;
	}
	pctl_table(stdout, arr, cols);
}
