/* The Ed25519 identity file (cli.md §8): load, save atomically, load-or-create. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <sodium.h>

#include "lib/crypto.h"
#include "lib/fileutil.h"

/* A real file is about 170 bytes; anything far larger is not an identity. */
#define IDENTITY_MAX_FILE 65536
#define SK_B64_LEN 88 /* strlen of base64(64 bytes) */
#define PK_B64_LEN 44 /* strlen of base64(32 bytes) */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* json-c keeps the last parsed string in the tokener's scratch buffer; it held
 * the base64 private key, so clear it before the tokener is freed. */
static void tokener_wipe_free(json_tokener *tok)
{
	if (tok->pb && tok->pb->buf)
		sodium_memzero(tok->pb->buf, (size_t)tok->pb->size);
	json_tokener_free(tok);
}

/* Overwrite a json-c string in place before the object is released. */
static void json_string_wipe(json_object *o)
{
	if (o && json_object_is_type(o, json_type_string))
		sodium_memzero((char *)json_object_get_string(o),
			       (size_t)json_object_get_string_len(o));
}

static int only_space(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return 0;
	return 1;
}

/* Strict JSON, exactly one value, nothing but whitespace after it. */
static int parse_object(const char *json, size_t len, json_object **root,
			char *err, size_t errlen)
{
	json_tokener *tok;
	json_object *o;
	size_t end;

	if (len > IDENTITY_MAX_FILE) {
		set_err(err, errlen, "too large (%zu bytes)", len);
		return -EINVAL;
	}
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
	o = json_tokener_parse_ex(tok, json, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (!o) {
		set_err(err, errlen, "not valid JSON (%s at byte %zu)",
			json_tokener_get_error(tok) == json_tokener_continue ? "unexpected end"
			: json_tokener_error_desc(json_tokener_get_error(tok)), end);
	} else if (!only_space(json + end, len - end)) {
		set_err(err, errlen, "not valid JSON (trailing data at byte %zu)", end);
	} else if (!json_object_is_type(o, json_type_object)) {
		set_err(err, errlen, "not a JSON object");
	} else {
		tokener_wipe_free(tok);
		*root = o;
		return 0;
	}
	tokener_wipe_free(tok);
	json_object_put(o);
	return -EINVAL;
}

/* Decode root[name] from base64 into exactly want bytes. */
static int get_key(json_object *root, const char *name, uint8_t *out, size_t want,
		   char *err, size_t errlen)
{
	uint8_t tmp[PILOT_ED25519_SK_LEN + 4];
	json_object *v;
	int n;

	if (!json_object_object_get_ex(root, name, &v) || !v) {
		set_err(err, errlen, "missing %s", name);
		return -EINVAL;
	}
	if (!json_object_is_type(v, json_type_string)) {
		set_err(err, errlen, "%s is not a string", name);
		return -EINVAL;
	}
	n = pilot_b64_decode(json_object_get_string(v), (size_t)json_object_get_string_len(v),
			     tmp, sizeof(tmp));
	if (n == -EINVAL)
		set_err(err, errlen, "%s is not valid base64", name);
	else if (n < 0 || (size_t)n != want)
		set_err(err, errlen, "%s must be %zu bytes, got %s%d", name, want,
			n < 0 ? "more than " : "", n < 0 ? (int)sizeof(tmp) : n);
	else
		memcpy(out, tmp, want);
	sodium_memzero(tmp, sizeof(tmp));
	return n >= 0 && (size_t)n == want ? 0 : -EINVAL;
}

/* Both public halves (inside the private key, and public_key) must be the key the
 * seed derives: a mismatch means a hand-edited or corrupted file. */
static int check_keys(const pilot_identity *file, char *err, size_t errlen)
{
	pilot_identity derived;
	int rc = 0;

	pilot_identity_from_seed(&derived, file->sk);
	if (memcmp(derived.pk, file->sk + 32, PROTO_ED25519_LEN) != 0) {
		set_err(err, errlen, "private_key is inconsistent (its public half does not match its seed)");
		rc = -EINVAL;
	} else if (memcmp(derived.pk, file->pk, PROTO_ED25519_LEN) != 0) {
		set_err(err, errlen, "public_key does not match private_key");
		rc = -EINVAL;
	}
	pilot_identity_wipe(&derived);
	return rc;
}

int pilot_identity_parse(const char *json, size_t len, pilot_identity *id,
			 char *err, size_t errlen)
{
	json_object *root = NULL, *sk = NULL;
	pilot_identity tmp;
	int rc;

	rc = parse_object(json, len, &root, err, errlen);
	if (rc < 0)
		return rc;
	json_object_object_get_ex(root, "private_key", &sk);
	rc = get_key(root, "private_key", tmp.sk, PILOT_ED25519_SK_LEN, err, errlen);
	if (rc == 0)
		rc = get_key(root, "public_key", tmp.pk, PROTO_ED25519_LEN, err, errlen);
	if (rc == 0)
		rc = check_keys(&tmp, err, errlen);
	if (rc == 0)
		*id = tmp;
	pilot_identity_wipe(&tmp);
	json_string_wipe(sk);
	json_object_put(root);
	return rc;
}

int pilot_identity_load(const char *path, pilot_identity *id, char *err, size_t errlen)
{
	char msg[160];
	char *buf = NULL;
	size_t len = 0;
	int rc;

	rc = pilot_read_file(path, IDENTITY_MAX_FILE, &buf, &len);
	if (rc == -ENOENT) {
		set_err(err, errlen, "identity file %s: does not exist", path);
		return rc;
	}
	if (rc == -EFBIG) {
		set_err(err, errlen, "identity file %s: too large to be an identity file", path);
		return -EINVAL;
	}
	if (rc < 0) {
		set_err(err, errlen, "identity file %s: cannot read: %s", path, strerror(-rc));
		return rc;
	}
	msg[0] = '\0';
	rc = pilot_identity_parse(buf, len, id, msg, sizeof(msg));
	if (rc < 0)
		set_err(err, errlen, "identity file %s: %s", path, msg);
	sodium_memzero(buf, len);
	free(buf);
	return rc;
}

/* cli.md §8 layout, byte for byte what Go's json.MarshalIndent(v, "", "  ") writes. */
static int identity_format(const pilot_identity *id, char *out, size_t cap)
{
	char sk[SK_B64_LEN + 1], pk[PK_B64_LEN + 1];
	int n;

	pilot_b64_encode(id->sk, PILOT_ED25519_SK_LEN, sk, sizeof(sk));
	pilot_b64_encode(id->pk, PROTO_ED25519_LEN, pk, sizeof(pk));
	n = snprintf(out, cap, "{\n  \"private_key\": \"%s\",\n  \"public_key\": \"%s\"\n}", sk, pk);
	sodium_memzero(sk, sizeof(sk));
	return n > 0 && (size_t)n < cap ? n : -EMSGSIZE;
}

int pilot_identity_save(const char *path, const pilot_identity *id, char *err, size_t errlen)
{
	char buf[256];
	int n, rc;

	n = identity_format(id, buf, sizeof(buf));
	if (n < 0) {
		set_err(err, errlen, "identity file %s: cannot format", path);
		rc = n;
		goto cleanup;
	}
	rc = pilot_write_atomic(path, buf, (size_t)n, 0600);
	if (rc < 0)
		set_err(err, errlen, "identity file %s: cannot save: %s", path, strerror(-rc));
cleanup:
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

int pilot_identity_load_or_create(const char *path, pilot_identity *id, int *created,
				  char *err, size_t errlen)
{
	int rc;

	*created = 0;
	rc = pilot_identity_load(path, id, err, errlen);
	/* Only a missing file means "first start"; anything else (corrupt, unreadable)
	 * must stop the caller rather than silently change the node's identity. */
	if (rc != -ENOENT)
		return rc;
	pilot_identity_generate(id);
	*created = 1;
	rc = pilot_identity_save(path, id, err, errlen);
	if (rc == 0)
		set_err(err, errlen, "%s", "");
	return rc;
}

void pilot_default_hostname(const uint8_t pk[PROTO_ED25519_LEN], char out[PILOT_DEFAULT_HOSTNAME_LEN + 1])
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, pk, PROTO_ED25519_LEN);
	snprintf(out, PILOT_DEFAULT_HOSTNAME_LEN + 1, "pilot-%02x%02x%02x%02x", h[0], h[1], h[2], h[3]);
}
