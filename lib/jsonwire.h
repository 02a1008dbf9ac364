/* The registry's framing: 4-byte big-endian length + one JSON object
 * (registry.md §3), and typed getters with the reference's decoding rules. */
#ifndef PILOT_JSONWIRE_H
#define PILOT_JSONWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define JW_MAX_BODY (1u << 20) /* 1 MiB */

/* Try to decode one frame from buf. Returns:
 *   > 0  bytes consumed, *obj set (caller puts it),
 *   0    need more bytes,
 *   -EMSGSIZE  declared length > JW_MAX_BODY (close the connection),
 *   -EINVAL    invalid JSON, or JSON that is not an object. */
int jw_decode(const uint8_t *buf, size_t len, json_object **obj);
/* Parse exactly one JSON value (any type) from s[0..n) as strictly as Go's
 * decoder: no comments, single quotes, NaN/Infinity, trailing commas or raw
 * control characters in strings; only whitespace may follow. Returns a new
 * reference, or NULL with *bad_offset (if not NULL) near the first bad byte. */
json_object *jw_parse(const char *s, size_t n, size_t *bad_offset);
/* Serialise obj as compact JSON with a length prefix into a malloc'd buffer.
 * Returns total length or -ENOMEM/-EMSGSIZE (-EINVAL if obj is not an object). */
int jw_encode(json_object *obj, uint8_t **out);

/* Reference decoding (registry.md §3): numbers are doubles truncated; negative,
 * out of range or non-numbers become 0; booleans must be real JSON booleans. */
uint32_t jw_get_u32(json_object *o, const char *key);
uint16_t jw_get_u16(json_object *o, const char *key);
int64_t jw_get_i64(json_object *o, const char *key);
int jw_get_bool(json_object *o, const char *key);
/* String value or NULL if absent / not a string (the pointer lives as long as o). */
const char *jw_get_str(json_object *o, const char *key);
/* 1 if the key is present with any type. */
int jw_has(json_object *o, const char *key);

/* Building replies: o[key] = value (a NULL string is stored as ""). */
void jw_set_int(json_object *o, const char *key, int64_t v);
void jw_set_num(json_object *o, const char *key, double v);
void jw_set_bool(json_object *o, const char *key, bool v);
void jw_set_str(json_object *o, const char *key, const char *v);

#endif
