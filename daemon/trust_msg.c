/* Port-444 message codec (services.md §4.2): one compact JSON object, keys in
 * the reference's order, strings escaped like Go's encoding/json, signature
 * over "handshake:<sender>:<receiver>" for reference compatibility. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/trust_internal.h"
#include "lib/jsonwire.h"

static const char *const type_names[] = {
	[TRUST_MSG_REQUEST] = "handshake_request",
	[TRUST_MSG_ACCEPT] = "handshake_accept",
	[TRUST_MSG_REJECT] = "handshake_reject",
	[TRUST_MSG_REVOKE] = "handshake_revoke",
};

const char *trust_msg_type_name(enum trust_msg_type type)
{
	if (type <= TRUST_MSG_UNKNOWN || type > TRUST_MSG_REVOKE)
		return "unknown";
	return type_names[type];
}

static enum trust_msg_type type_from_name(const char *s)
{
	for (int i = TRUST_MSG_REQUEST; i <= TRUST_MSG_REVOKE; i++)
		if (!strcmp(s, type_names[i]))
			return (enum trust_msg_type)i;
	return TRUST_MSG_UNKNOWN;
}

/* ---- growable buffer ---- */
int trust_buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = *cap ? *cap : 256;
		char *g;

		while (nc < *len + n + 1)
			nc *= 2;
		if (!(g = realloc(*buf, nc)))
			return -ENOMEM;
		*buf = g;
		*cap = nc;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

int trust_buf_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -EINVAL;
	return trust_buf_add(buf, len, cap, tmp, (size_t)n);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t need;
	uint32_t c, min;

	if (s[0] < 0xC2 || s[0] > 0xF4)
		return 0;
	if (s[0] < 0xE0) {
		need = 2, c = s[0] & 0x1F, min = 0x80;
	} else if (s[0] < 0xF0) {
		need = 3, c = s[0] & 0x0F, min = 0x800;
	} else {
		need = 4, c = s[0] & 0x07, min = 0x10000;
	}
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return need;
}

/* Go's encodeState.string with HTML escaping: invalid UTF-8 becomes U+FFFD. */
int trust_json_str(char **buf, size_t *len, size_t *cap, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str);
	int rc = trust_buf_add(buf, len, cap, "\"", 1);

	for (size_t i = 0; i < n && rc == 0;) {
		unsigned char b = s[i];
		char esc[8];
		uint32_t cp;
		size_t k;

		if (b >= 0x80) {
			k = utf8_len(s + i, n - i, &cp);
			if (!k)
				rc = trust_buf_add(buf, len, cap, "\\ufffd", 6), i++;
			else if (cp == 0x2028 || cp == 0x2029)
				rc = trust_buf_printf(buf, len, cap, "\\u%04x", cp), i += k;
			else
				rc = trust_buf_add(buf, len, cap, (const char *)s + i, k), i += k;
			continue;
		}
		i++;
		if (b == '"' || b == '\\') {
			esc[0] = '\\', esc[1] = (char)b;
			rc = trust_buf_add(buf, len, cap, esc, 2);
		} else if (b == '\n' || b == '\r' || b == '\t') {
			esc[0] = '\\', esc[1] = b == '\n' ? 'n' : b == '\r' ? 'r' : 't';
			rc = trust_buf_add(buf, len, cap, esc, 2);
		} else if (b < 0x20 || b == '<' || b == '>' || b == '&') {
			rc = trust_buf_printf(buf, len, cap, "\\u%04x", b);
		} else {
			esc[0] = (char)b;
			rc = trust_buf_add(buf, len, cap, esc, 1);
		}
	}
	return rc ? rc : trust_buf_add(buf, len, cap, "\"", 1);
}

/* ---- decode ---- */
/* String member or "" when absent/null; -EBADMSG for another type or too long. */
static int get_str(json_object *o, const char *key, const char **out, size_t max)
{
	json_object *v;

	*out = "";
	if (!json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_string) || (size_t)json_object_get_string_len(v) > max)
		return -EBADMSG;
	*out = json_object_get_string(v);
	return strlen(*out) == (size_t)json_object_get_string_len(v) ? 0 : -EBADMSG; /* no NUL */
}

static int get_int(json_object *o, const char *key, int64_t min, int64_t max, int64_t *out)
{
	json_object *v;

	*out = 0;
	if (!json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return -EBADMSG;
	errno = 0;
	*out = json_object_get_int64(v);
	if (errno || *out < min || *out > max)
		return -EBADMSG;
	return 0;
}

static int get_b64(json_object *o, const char *key, uint8_t *out, size_t want, bool *has)
{
	const char *s;
	int n;

	*has = false;
	if (get_str(o, key, &s, 128) < 0)
		return -EBADMSG;
	if (!*s)
		return 0;
	n = pilot_b64_decode(s, strlen(s), out, want);
	if (n != (int)want)
		return -EBADMSG;
	*has = true;
	return 0;
}

static int decode_obj(json_object *o, trust_msg *m)
{
	const char *type, *just, *reason;
	int64_t node, ts;

	if (!json_object_is_type(o, json_type_object))
		return -EBADMSG;
	if (get_str(o, "type", &type, 64) < 0 || !*type ||
	    get_int(o, "node_id", 0, UINT32_MAX, &node) < 0 ||
	    get_int(o, "timestamp", INT64_MIN, INT64_MAX, &ts) < 0 ||
	    get_str(o, "justification", &just, TRUST_MAX_JUSTIFY) < 0 ||
	    get_str(o, "reason", &reason, sizeof(m->reason) - 1) < 0 ||
	    get_b64(o, "public_key", m->public_key, PROTO_ED25519_LEN, &m->has_key) < 0 ||
	    get_b64(o, "signature", m->signature, PROTO_SIG_LEN, &m->has_sig) < 0)
		return -EBADMSG;
	m->type = type_from_name(type);
	m->node_id = (uint32_t)node;
	m->timestamp = ts;
	snprintf(m->justification, sizeof(m->justification), "%s", just);
	snprintf(m->reason, sizeof(m->reason), "%s", reason);
	return 0;
}

int trust_msg_decode(const uint8_t *buf, size_t len, trust_msg *m)
{
	json_object *o;
	int rc;

	memset(m, 0, sizeof(*m));
	if (!buf || len == 0 || len > TRUST_MAX_MSG)
		return -EBADMSG;
	if (!(o = jw_parse((const char *)buf, len, NULL)))
		return -EBADMSG;
	rc = decode_obj(o, m);
	json_object_put(o);
	if (rc < 0)
		memset(m, 0, sizeof(*m));
	return rc;
}

/* ---- encode ---- */
static int add_b64(char **b, size_t *len, size_t *cap, const uint8_t *raw, size_t n, bool has)
{
	char s[96] = "";

	if (has)
		pilot_b64_encode(raw, n, s, sizeof(s));
	return trust_json_str(b, len, cap, s);
}

int trust_msg_encode(const trust_msg *m, char **out, size_t *outlen)
{
	char *b = NULL;
	size_t len = 0, cap = 0;
	int rc;

	if (m->type <= TRUST_MSG_UNKNOWN || m->type > TRUST_MSG_REVOKE)
		return -EINVAL;
	rc = trust_buf_printf(&b, &len, &cap, "{\"type\":\"%s\",\"node_id\":%" PRIu32 ",\"public_key\":",
			      type_names[m->type], m->node_id);
	rc = rc ? rc : add_b64(&b, &len, &cap, m->public_key, PROTO_ED25519_LEN, m->has_key);
	rc = rc ? rc : trust_buf_add(&b, &len, &cap, ",\"justification\":", 17);
	rc = rc ? rc : trust_json_str(&b, &len, &cap, m->justification);
	rc = rc ? rc : trust_buf_add(&b, &len, &cap, ",\"signature\":", 13);
	rc = rc ? rc : add_b64(&b, &len, &cap, m->signature, PROTO_SIG_LEN, m->has_sig);
	rc = rc ? rc : trust_buf_add(&b, &len, &cap, ",\"reason\":", 10);
	rc = rc ? rc : trust_json_str(&b, &len, &cap, m->reason);
	rc = rc ? rc : trust_buf_printf(&b, &len, &cap, ",\"timestamp\":%" PRId64 "}", m->timestamp);
	if (rc) {
		free(b);
		return rc;
	}
	*out = b;
	*outlen = len;
	return 0;
}

/* ---- signature ---- */
static size_t challenge(char *s, size_t cap, uint32_t sender, uint32_t receiver)
{
	return (size_t)snprintf(s, cap, "handshake:%" PRIu32 ":%" PRIu32, sender, receiver);
}

void trust_msg_sign(trust_msg *m, const pilot_identity *id, uint32_t receiver)
{
	char s[64];
	size_t n = challenge(s, sizeof(s), m->node_id, receiver);

	memcpy(m->public_key, id->pk, PROTO_ED25519_LEN);
	m->has_key = true;
	pilot_ed25519_sign(id, s, n, m->signature);
	m->has_sig = true;
}

int trust_msg_verify(const trust_msg *m, const uint8_t pk[PROTO_ED25519_LEN], uint32_t receiver)
{
	char s[64];
	size_t n = challenge(s, sizeof(s), m->node_id, receiver);

	if (!m->has_sig)
		return -EBADMSG;
	return pilot_ed25519_verify(pk, s, n, m->signature) == 0 ? 0 : -EBADMSG;
}
