/* Registry framing (registry.md §3): u32 BE length + one JSON object. */
#include "lib/jsonwire.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* json-c's strict mode still takes what Go's decoder refuses: single-quoted
 * keys, NaN/Infinity, "1." and raw control characters in strings. Outside
 * strings valid JSON only has structure, numbers and true/false/null, so a
 * byte scan catches all of them. Returns the offset of the first bad byte or n. */
static size_t lenient_bytes(const char *s, size_t n)
{
	int in_str = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (in_str) {
			if (c < 0x20)
				return i;
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = 0;
		} else if (c == '"') {
			in_str = 1;
		} else if (!is_ws((char)c) && (!c || !strchr("{}[],:0123456789-+.eEtrufalsn", c))) {
			return i;
		} else if (c == '.' && (i + 1 == n || s[i + 1] < '0' || s[i + 1] > '9')) {
			return i;
		}
	}
	return n;
}

json_object *jw_parse(const char *s, size_t n, size_t *bad_offset)
{
	json_tokener *tok;
	json_object *o = NULL;
	size_t end = lenient_bytes(s, n);

	if (end == n && n <= INT_MAX && (tok = json_tokener_new())) {
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
		o = json_tokener_parse_ex(tok, s, (int)n);
		end = json_tokener_get_parse_end(tok);
		json_tokener_free(tok);
		while (o && end < n && is_ws(s[end]))
			end++;
		if (o && end < n) {
			json_object_put(o);
			o = NULL;
		}
	}
	if (!o && bad_offset)
		*bad_offset = end;
	return o;
}

int jw_decode(const uint8_t *buf, size_t len, json_object **obj)
{
	uint32_t n;

	*obj = NULL;
	if (len < 4)
		return 0;
	n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	if (n > JW_MAX_BODY)
		return -EMSGSIZE;
	if (len - 4 < n)
		return 0;
	*obj = jw_parse((const char *)buf + 4, n, NULL);
	if (*obj && !json_object_is_type(*obj, json_type_object)) {
		json_object_put(*obj);
		*obj = NULL;
	}
	return *obj ? (int)(4 + n) : -EINVAL;
}

/* Returns -EINVAL for a NULL or non-object obj: the peer would drop it anyway. */
int jw_encode(json_object *obj, uint8_t **out)
{
	const char *s;
	size_t n;
	uint8_t *p;

	*out = NULL;
	if (!json_object_is_type(obj, json_type_object))
		return -EINVAL;
	s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
					      &n);
	if (!s)
		return -ENOMEM;
	if (n > JW_MAX_BODY)
		return -EMSGSIZE;
	p = malloc(4 + n);
	if (!p)
		return -ENOMEM;
	p[0] = (uint8_t)(n >> 24);
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
	memcpy(p + 4, s, n);
	*out = p;
	return (int)(4 + n);
}

static json_object *field(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* A number truncated toward zero if it lies in [lo, hi]; anything else → 0.
 * json-c keeps integers exact, so only doubles need the range check. */
static int64_t get_num(json_object *o, const char *key, int64_t lo, int64_t hi)
{
	json_object *v = field(o, key);
	double d;
	int64_t i;

	if (json_object_is_type(v, json_type_int)) {
		i = json_object_get_int64(v);
		/* INT64_MAX also stands for values json-c clamped. */
		return i >= lo && i <= hi && i != INT64_MAX ? i : 0;
	}
	if (!json_object_is_type(v, json_type_double))
		return 0;
	d = trunc(json_object_get_double(v));
	/* -0x1p63 is exact; 0x1p63 is one past INT64_MAX. (cppcheck misreads hex floats.) */
	/* cppcheck-suppress incorrectLogicOperator */
	if (!(d >= -0x1p63 && d < 0x1p63))
		return 0;
	i = (int64_t)d;
	return i >= lo && i <= hi ? i : 0;
}

uint32_t jw_get_u32(json_object *o, const char *key)
{
	return (uint32_t)get_num(o, key, 0, UINT32_MAX);
}

uint16_t jw_get_u16(json_object *o, const char *key)
{
	return (uint16_t)get_num(o, key, 0, UINT16_MAX);
}

/* Signed: negatives are kept (polo score deltas); only out-of-range → 0. */
int64_t jw_get_i64(json_object *o, const char *key)
{
	return get_num(o, key, INT64_MIN, INT64_MAX);
}

int jw_get_bool(json_object *o, const char *key)
{
	json_object *v = field(o, key);

	return json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

const char *jw_get_str(json_object *o, const char *key)
{
	json_object *v = field(o, key);

	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

int jw_has(json_object *o, const char *key)
{
	return o && json_object_object_get_ex(o, key, NULL);
}

void jw_set_int(json_object *o, const char *key, int64_t v)
{
	json_object_object_add(o, key, json_object_new_int64(v));
}

void jw_set_num(json_object *o, const char *key, double v)
{
	json_object_object_add(o, key, json_object_new_double(v));
}

void jw_set_bool(json_object *o, const char *key, bool v)
{
	json_object_object_add(o, key, json_object_new_boolean(v));
}

void jw_set_str(json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, json_object_new_string(v ? v : ""));
}
