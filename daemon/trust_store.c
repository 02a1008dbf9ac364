/* trust.json (services.md §4.5): the reference's layout exactly (Go
 * json.MarshalIndent, 2 spaces, "trusted" null when empty, "pending" omitted
 * when empty), written atomically with mode 0600; plus our "keys" list (pinned
 * keys of untrusted nodes, omitted when empty, ignored by the reference). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/trust_internal.h"
#include "lib/jsonwire.h"

#define GO_ZERO_TIME (-62135596800LL) /* 0001-01-01T00:00:00Z */

/* ---- RFC 3339 ---- */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

void trust_fmt_time(int64_t t, char out[40])
{
	time_t tt = (time_t)t;
	struct tm tm;
	long off;

	if (t == GO_ZERO_TIME || !localtime_r(&tt, &tm)) {
		snprintf(out, 40, "0001-01-01T00:00:00Z");
		return;
	}
	off = tm.tm_gmtoff / 60;
	int n = snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (n < 0 || n >= 30)
		snprintf(out, 40, "0001-01-01T00:00:00Z");
	else if (off == 0)
		snprintf(out + n, 40 - (size_t)n, "Z");
	else
		snprintf(out + n, 40 - (size_t)n, "%c%02ld:%02ld", off < 0 ? '-' : '+',
			 labs(off) / 60, labs(off) % 60);
}

static int digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)"; anything else is Go's zero time. */
int64_t trust_parse_time(const char *s)
{
	int y, mo, d, h, mi, se, oh = 0, om = 0, sign = 0;
	size_t n = strlen(s), i = 19;

	if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':')
		return GO_ZERO_TIME;
	y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
	h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 ||
	    mi > 59 || se < 0 || se > 59)
		return GO_ZERO_TIME;
	if (s[i] == '.') {
		for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == 20)
			return GO_ZERO_TIME;
	}
	if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
		sign = 0;
	} else if ((s[i] == '+' || s[i] == '-') && i + 6 == n && s[i + 3] == ':') {
		sign = s[i] == '-' ? -1 : 1;
		oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return GO_ZERO_TIME;
	} else {
		return GO_ZERO_TIME;
	}
	return days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se -
	       sign * (oh * 3600 + om * 60);
}

/* ---- dump ---- */
#define ADD(s) (rc = rc ? rc : trust_buf_add(&b, &len, &cap, s, strlen(s)))
#define PRINTF(...) (rc = rc ? rc : trust_buf_printf(&b, &len, &cap, __VA_ARGS__))
#define STR(s) (rc = rc ? rc : trust_json_str(&b, &len, &cap, s))

static void key_b64(const uint8_t *pk, bool has, char out[48])
{
	out[0] = '\0';
	if (has)
		pilot_b64_encode(pk, PROTO_ED25519_LEN, out, 48);
}

int trust_dump(const trust *t, char **out, size_t *outlen)
{
	char *b = NULL, key[48], ts[40];
	size_t len = 0, cap = 0;
	int rc = 0;

	ADD("{\n  \"trusted\": ");
	if (!t->ntrusted)
		ADD("null");
	for (size_t i = 0; i < t->ntrusted; i++) {
		const trust_peer *p = &t->trusted[i];

		ADD(i ? ",\n    {\n" : "[\n    {\n");
		key_b64(p->pk, p->has_key, key);
		trust_fmt_time(p->approved_at, ts);
		PRINTF("      \"node_id\": %" PRIu32 ",\n      \"public_key\": ", p->node);
		STR(key);
		PRINTF(",\n      \"approved_at\": \"%s\",\n      \"mutual\": %s", ts,
		       p->mutual ? "true" : "false");
		if (p->network)
			PRINTF(",\n      \"network\": %u", p->network);
		ADD("\n    }");
	}
	if (t->ntrusted)
		ADD("\n  ]");
	for (size_t i = 0; i < t->npending; i++) {
		const trust_pend *p = &t->pending[i];

		ADD(i ? ",\n    {\n" : ",\n  \"pending\": [\n    {\n");
		PRINTF("      \"node_id\": %" PRIu32, p->node);
		if (p->has_key) {
			key_b64(p->pk, true, key);
			ADD(",\n      \"public_key\": ");
			STR(key);
		}
		if (p->justification[0]) {
			ADD(",\n      \"justification\": ");
			STR(p->justification);
		}
		trust_fmt_time(p->received_at, ts);
		PRINTF(",\n      \"received_at\": \"%s\"\n    }", ts);
	}
	if (t->npending)
		ADD("\n  ]");
	for (size_t i = 0; i < t->nkeys; i++) {
		const trust_key *k = &t->keys[i];

		ADD(i ? ",\n    {\n" : ",\n  \"keys\": [\n    {\n");
		key_b64(k->pk, true, key);
		trust_fmt_time(k->seen_at, ts);
		PRINTF("      \"node_id\": %" PRIu32 ",\n      \"public_key\": \"%s\",\n"
		       "      \"seen_at\": \"%s\"\n    }", k->node, key, ts);
	}
	if (t->nkeys)
		ADD("\n  ]");
	ADD("\n}");
	if (rc) {
		free(b);
		return rc;
	}
	*out = b;
	*outlen = len;
	return 0;
}

/* ---- load ---- */
typedef struct loaded {
	trust_peer *tr;
	size_t ntr;
	trust_pend *pd;
	size_t npd;
	trust_key *ks;
	size_t nks;
} loaded;

static void loaded_free(loaded *l)
{
	for (size_t i = 0; i < l->npd; i++)
		trust_pend_clear(&l->pd[i]);
	free(l->tr);
	free(l->pd);
	free(l->ks);
}

static int fail(char *err, size_t errlen, const char *fmt, const char *what, size_t idx)
{
	snprintf(err, errlen, fmt, what, idx);
	return -EINVAL;
}

/* Optional typed members; "absent or null" gives the zero value. */
static int m_int(json_object *o, const char *k, int64_t max, int64_t *v)
{
	json_object *x;

	*v = 0;
	if (!json_object_object_get_ex(o, k, &x) || !x)
		return 0;
	if (!json_object_is_type(x, json_type_int))
		return -1;
	*v = json_object_get_int64(x);
	return *v < 0 || *v > max ? -1 : 0;
}

static int m_str(json_object *o, const char *k, const char **v)
{
	json_object *x;

	*v = "";
	if (!json_object_object_get_ex(o, k, &x) || !x)
		return 0;
	if (!json_object_is_type(x, json_type_string))
		return -1;
	*v = json_object_get_string(x);
	return 0;
}

static int m_key(json_object *o, uint8_t pk[PROTO_ED25519_LEN], bool *has)
{
	const char *s;

	*has = false;
	if (m_str(o, "public_key", &s) < 0)
		return -1;
	if (!*s)
		return 0;
	if (pilot_b64_decode(s, strlen(s), pk, PROTO_ED25519_LEN) != PROTO_ED25519_LEN)
		return -1;
	*has = true;
	return 0;
}

static int m_bool(json_object *o, const char *k, bool *v)
{
	json_object *x;

	*v = false;
	if (!json_object_object_get_ex(o, k, &x) || !x)
		return 0;
	if (!json_object_is_type(x, json_type_boolean))
		return -1;
	*v = json_object_get_boolean(x);
	return 0;
}

static int load_trusted(json_object *e, trust_peer *p)
{
	int64_t node, net;
	const char *at;

	memset(p, 0, sizeof(*p));
	if (!json_object_is_type(e, json_type_object) || m_int(e, "node_id", UINT32_MAX, &node) < 0 ||
	    node == 0 || m_key(e, p->pk, &p->has_key) < 0 || m_str(e, "approved_at", &at) < 0 ||
	    m_bool(e, "mutual", &p->mutual) < 0 || m_int(e, "network", UINT16_MAX, &net) < 0)
		return -1;
	p->node = (uint32_t)node;
	p->network = (uint16_t)net;
	p->approved_at = trust_parse_time(at);
	return 0;
}

static int load_pending(json_object *e, trust_pend *p)
{
	int64_t node;
	const char *at, *just;

	memset(p, 0, sizeof(*p));
	if (!json_object_is_type(e, json_type_object) || m_int(e, "node_id", UINT32_MAX, &node) < 0 ||
	    node == 0 || m_key(e, p->pk, &p->has_key) < 0 || m_str(e, "received_at", &at) < 0 ||
	    m_str(e, "justification", &just) < 0)
		return -1;
	if (!(p->justification = strndup(just, TRUST_MAX_JUSTIFY)))
		return -1;
	p->node = (uint32_t)node;
	p->received_at = trust_parse_time(at);
	return 0;
}

/* A "keys" entry: node_id and public_key required (it is nothing without them). */
static int load_key(json_object *e, trust_key *k)
{
	int64_t node;
	const char *at;
	bool has;

	memset(k, 0, sizeof(*k));
	if (!json_object_is_type(e, json_type_object) || m_int(e, "node_id", UINT32_MAX, &node) < 0 ||
	    node == 0 || m_key(e, k->pk, &has) < 0 || !has || m_str(e, "seen_at", &at) < 0)
		return -1;
	k->node = (uint32_t)node;
	k->seen_at = trust_parse_time(at);
	return 0;
}

/* The member as an array (NULL when absent or null); -1 for another type. */
static int get_array(json_object *o, const char *k, json_object **a)
{
	*a = NULL;
	if (!json_object_object_get_ex(o, k, a) || !*a)
		return 0;
	return json_object_is_type(*a, json_type_array) ? 0 : -1;
}

static int cmp_peer(const void *a, const void *b)
{
	uint32_t x = ((const trust_peer *)a)->node, y = ((const trust_peer *)b)->node;

	return x < y ? -1 : x > y;
}

static int cmp_peer_key(const void *a, const void *b)
{
	uint32_t x = ((const trust_key *)a)->node, y = ((const trust_key *)b)->node;

	return x < y ? -1 : x > y;
}

/* Newest first within a node, so dedup keeps the newest entry. */
static int cmp_pend_node(const void *a, const void *b)
{
	const trust_pend *x = a, *y = b;

	if (x->node != y->node)
		return x->node < y->node ? -1 : 1;
	return x->received_at > y->received_at ? -1 : x->received_at < y->received_at;
}

static int cmp_pend_age(const void *a, const void *b)
{
	int64_t x = ((const trust_pend *)a)->received_at, y = ((const trust_pend *)b)->received_at;

	return x > y ? -1 : x < y; /* newest first */
}

static void dedup_trusted(loaded *l)
{
	size_t w = 0;

	/* qsort is not stable: the file's later entry wins only by chance; both are
	 * the same node, and the reference keeps one arbitrarily (a map) too. */
	qsort(l->tr, l->ntr, sizeof(*l->tr), cmp_peer);
	for (size_t i = 0; i < l->ntr; i++)
		if (!w || l->tr[w - 1].node != l->tr[i].node)
			l->tr[w++] = l->tr[i];
	l->ntr = w;
}

/* One entry per node; a trusted node's key lives in its trusted entry. */
static void dedup_keys(loaded *l)
{
	size_t w = 0;
	bool f;

	qsort(l->ks, l->nks, sizeof(*l->ks), cmp_peer_key);
	for (size_t i = 0; i < l->nks; i++) {
		trust_find_idx(l->tr, l->ntr, sizeof(*l->tr), l->ks[i].node, &f);
		if (!f && (!w || l->ks[w - 1].node != l->ks[i].node))
			l->ks[w++] = l->ks[i];
	}
	l->nks = w;
}

static void dedup_pending(loaded *l)
{
	size_t w = 0;

	qsort(l->pd, l->npd, sizeof(*l->pd), cmp_pend_node);
	for (size_t i = 0; i < l->npd; i++) {
		if (w && l->pd[w - 1].node == l->pd[i].node)
			trust_pend_clear(&l->pd[i]);
		else
			l->pd[w++] = l->pd[i];
	}
	l->npd = w;
	if (l->npd > TRUST_MAX_PENDING) {
		qsort(l->pd, l->npd, sizeof(*l->pd), cmp_pend_age);
		for (size_t i = TRUST_MAX_PENDING; i < l->npd; i++)
			trust_pend_clear(&l->pd[i]);
		l->npd = TRUST_MAX_PENDING;
		qsort(l->pd, l->npd, sizeof(*l->pd), cmp_pend_node);
	}
}

static int load_keys(json_object *ka, loaded *l, char *err, size_t errlen)
{
	size_t nk = ka ? json_object_array_length(ka) : 0;

	if (nk > TRUST_MAX_KEYS)
		return fail(err, errlen, "%s: more than %zu entries", "keys", TRUST_MAX_KEYS);
	if (!(l->ks = calloc(nk ? nk : 1, sizeof(*l->ks))))
		return -ENOMEM;
	for (size_t i = 0; i < nk; i++, l->nks++)
		if (load_key(json_object_array_get_idx(ka, i), &l->ks[i]) < 0)
			return fail(err, errlen, "bad %s entry %zu", "keys", i);
	dedup_keys(l);
	return 0;
}

static int load_arrays(json_object *ta, json_object *pa, loaded *l, char *err, size_t errlen)
{
	size_t nt = ta ? json_object_array_length(ta) : 0, np = pa ? json_object_array_length(pa) : 0;

	if (nt > TRUST_MAX_TRUSTED)
		return fail(err, errlen, "%s: more than %zu entries", "trusted", TRUST_MAX_TRUSTED);
	if (np > 1u << 20)
		return fail(err, errlen, "%s: more than %zu entries", "pending", 1u << 20);
	l->tr = calloc(nt ? nt : 1, sizeof(*l->tr));
	l->pd = calloc(np ? np : 1, sizeof(*l->pd));
	if (!l->tr || !l->pd)
		return -ENOMEM;
	for (size_t i = 0; i < nt; i++, l->ntr++)
		if (load_trusted(json_object_array_get_idx(ta, i), &l->tr[i]) < 0)
			return fail(err, errlen, "bad %s entry %zu", "trusted", i);
	for (size_t i = 0; i < np; i++, l->npd++)
		if (load_pending(json_object_array_get_idx(pa, i), &l->pd[i]) < 0) {
			trust_pend_clear(&l->pd[i]);
			return fail(err, errlen, "bad %s entry %zu", "pending", i);
		}
	dedup_trusted(l);
	dedup_pending(l);
	return 0;
}

int trust_load_buf(trust *t, const char *buf, size_t len, char *err, size_t errlen)
{
	json_object *o, *ta, *pa, *ka;
	loaded l = { 0 };
	size_t bad = 0;
	int rc;

	if (!(o = jw_parse(buf, len, &bad))) {
		snprintf(err, errlen, "invalid JSON near byte %zu", bad);
		return -EINVAL;
	}
	if (!json_object_is_type(o, json_type_object) || get_array(o, "trusted", &ta) < 0 ||
	    get_array(o, "pending", &pa) < 0 || get_array(o, "keys", &ka) < 0) {
		snprintf(err, errlen, "not an object with \"trusted\", \"pending\" and \"keys\" arrays");
		rc = -EINVAL;
		goto cleanup;
	}
	rc = load_arrays(ta, pa, &l, err, errlen);
	if (rc == 0)
		rc = load_keys(ka, &l, err, errlen);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	if (rc < 0)
		goto cleanup;
	trust_state_clear(t);
	t->trusted = l.tr, t->ntrusted = l.ntr, t->captrusted = l.ntr ? l.ntr : 1;
	t->pending = l.pd, t->npending = l.npd, t->cappending = l.npd ? l.npd : 1;
	t->keys = l.ks, t->nkeys = l.nks, t->capkeys = l.nks ? l.nks : 1;
	t->keys_dirty = false;
	l.tr = NULL, l.pd = NULL, l.ks = NULL, l.ntr = l.npd = l.nks = 0;
cleanup:
	loaded_free(&l);
	json_object_put(o);
	return rc;
}
