/* Signature checks (v1 reference challenges and v2 bound, timestamped ones; see
 * SIGNATURES.md), the v2 replay cache, and constant-time secret comparison. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/crypto.h"
#include "lib/jsonwire.h"
#include "rendezvous/reg_internal.h"

bool reg_secret_eq(const char *a, const char *b)
{
	uint8_t ha[32], hb[32];

	if (!a || !b)
		return false;
	/* Hash first so the comparison does not depend on where or whether the
	 * lengths differ. */
	crypto_generichash(ha, sizeof(ha), (const uint8_t *)a, strlen(a), NULL, 0);
	crypto_generichash(hb, sizeof(hb), (const uint8_t *)b, strlen(b), NULL, 0);
	return sodium_memcmp(ha, hb, sizeof(ha)) == 0;
}

bool reg_admin_ok(const registry *r, json_object *req)
{
	const char *t = jw_get_str(req, "admin_token");

	return r->admin_token && t && *t && reg_secret_eq(r->admin_token, t);
}

static bool replay_seen(registry *r, const uint8_t sig[64], int64_t now_s)
{
	uint64_t exp;

	return rmap_get(&r->replay, reg_hash(r, sig, 64), &exp) && (int64_t)exp >= now_s;
}

static int replay_add(registry *r, const uint8_t sig[64], int64_t sig_ts)
{
	/* Keep it until the timestamp can no longer pass the window check. */
	return rmap_put(&r->replay, reg_hash(r, sig, 64), (uint64_t)(sig_ts + REG_SIG_WINDOW_S + 1));
}

void reg_replay_gc(registry *r, int64_t now_s)
{
	size_t n;
	uint64_t *k;

	if (r->replay.len < 4096 && now_s % 30)
		return;
	k = rmap_keys(&r->replay, &n);
	for (size_t i = 0; i < n; i++) {
		uint64_t exp;

		rmap_get(&r->replay, k[i], &exp);
		if ((int64_t)exp < now_s)
			rmap_del(&r->replay, k[i]);
	}
	free(k);
}

static json_object *check_v2(registry *r, const reg_node *signer, json_object *req,
			     const uint8_t sig[64], const char *fields, const reg_ctx *ctx)
{
	int64_t ts = jw_get_i64(req, "sig_ts"), now = reg_now_s(ctx);
	const char *type = jw_get_str(req, "type");
	size_t need;
	char *msg;
	int ok;

	if (!json_object_is_type(json_object_object_get(req, "sig_ts"), json_type_int) &&
	    !json_object_is_type(json_object_object_get(req, "sig_ts"), json_type_double))
		return reg_err(r, E_INVALID, "sig_ts must be an integer (unix seconds)");
	if (ts > now + REG_SIG_WINDOW_S || ts < now - REG_SIG_WINDOW_S)
		return reg_err(r, E_STALE_SIG, "sig_ts %lld is more than %d s from server time %lld; check the clock",
			       (long long)ts, REG_SIG_WINDOW_S, (long long)now);
	need = strlen(type) + strlen(fields) + 40;
	msg = malloc(need);
	if (!msg)
		return reg_err(r, E_INTERNAL, "out of memory");
	snprintf(msg, need, "pilot2:%s:%lld:%s", type, (long long)ts, fields);
	ok = pilot_ed25519_verify(signer->pk, msg, strlen(msg), sig) == 0;
	free(msg);
	if (!ok)
		return reg_err(r, E_BAD_SIG, "signature does not verify for node %u", signer->id);
	if (replay_seen(r, sig, now))
		return reg_err(r, E_REPLAY_SIG, "signature was already used; sign each request afresh");
	if (r->replay.len >= REG_REPLAY_CAP)
		return reg_err(r, E_RATE, "too many signed requests; retry shortly");
	if (replay_add(r, sig, ts) < 0)
		return reg_err(r, E_INTERNAL, "out of memory");
	/* Shared with the other instances through the database if this request
	 * writes (st_commit): a replay there conflicts on the signature's key. */
	r->sig_pend = true;
	memcpy(r->sig_pend_sig, sig, 64);
	r->sig_pend_exp = ts + REG_SIG_WINDOW_S + 1;
	return NULL;
}

void reg_replay_note(registry *r, const uint8_t sig[64], int64_t expires)
{
	if (r->replay.len < REG_REPLAY_CAP)
		rmap_put(&r->replay, reg_hash(r, sig, 64), (uint64_t)expires);
}

static json_object *verified(registry *r, const reg_node *signer, bool v2)
{
	r->sig_node = signer->id;
	memcpy(r->sig_pk, signer->pk, 32);
	r->sig_was_v2 = v2;
	return NULL;
}

json_object *reg_check_sig(registry *r, const reg_node *signer, json_object *req,
			   const char *v1, const char *fields, const reg_ctx *ctx)
{
	const char *s = jw_get_str(req, "signature");
	uint8_t sig[64];

	if (!s || !*s)
		return reg_err(r, E_BAD_SIG, "missing signature");
	if (pilot_b64_decode(s, strlen(s), sig, sizeof(sig)) != 64)
		return reg_err(r, E_BAD_SIG, "signature is not base64 of 64 bytes");
	if (jw_has(req, "sig_ts")) {
		json_object *e = check_v2(r, signer, req, sig, fields, ctx);

		return e ? e : verified(r, signer, true);
	}
	if (r->cfg.strict_signatures || !v1)
		return reg_err(r, E_BAD_SIG, "reference-format signatures are refused; sign \"pilot2:<type>:<sig_ts>:...\" with sig_ts");
	/* No downgrade: a v1 signature is replayable forever, a v2 one is not. */
	if (signer->sig_v2)
		return reg_err(r, E_BAD_SIG, "node %u has signed with v2; reference-format (v1) signatures are refused for it",
			       signer->id);
	if (pilot_ed25519_verify(signer->pk, v1, strlen(v1), sig) != 0)
		return reg_err(r, E_BAD_SIG, "signature does not verify for node %u", signer->id);
	return verified(r, signer, false);
}
