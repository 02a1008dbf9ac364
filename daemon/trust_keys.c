/* Pinned keys (issue 12 §1): trust.json's trusted entries keep their node's
 * Ed25519 key, and every other node we completed an authenticated exchange with
 * is pinned in the "keys" list, so a later session under that ID needs that key
 * (or a rotation the registry confirms, checked by the peer table). The list is
 * bounded (TRUST_MAX_KEYS, least recently seen evicted) and saved with the rest of
 * trust.json, batched by trust_flush: a busy public node meets many new peers. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <sodium.h>

#include "daemon/trust_internal.h"
#include "lib/log.h"

static trust_peer *trusted_of(const trust *t, uint32_t node)
{
	bool f;
	size_t i = trust_find_idx(t->trusted, t->ntrusted, sizeof(*t->trusted), node, &f);

	return f ? &t->trusted[i] : NULL;
}

trust_key *trust_key_get(const trust *t, uint32_t node)
{
	bool f;
	size_t i = trust_find_idx(t->keys, t->nkeys, sizeof(*t->keys), node, &f);

	return f ? &t->keys[i] : NULL;
}

bool trust_key_del(trust *t, uint32_t node)
{
	bool f;
	size_t i = trust_find_idx(t->keys, t->nkeys, sizeof(*t->keys), node, &f);

	if (f) {
		trust_remove_at(t->keys, &t->nkeys, sizeof(*t->keys), i);
		t->keys_dirty = true;
	}
	return f;
}

static void evict_oldest_key(trust *t)
{
	size_t old = 0;

	for (size_t i = 1; i < t->nkeys; i++)
		if (t->keys[i].seen_at < t->keys[old].seen_at)
			old = i;
	log_info("trust: key list full, forgetting the key of node=%" PRIu32, t->keys[old].node);
	trust_remove_at(t->keys, &t->nkeys, sizeof(*t->keys), old);
}

int trust_key_put(trust *t, uint32_t node, const uint8_t pk[PROTO_ED25519_LEN])
{
	bool f;
	size_t i;

	if (!trust_key_get(t, node) && t->nkeys >= TRUST_MAX_KEYS)
		evict_oldest_key(t);
	i = trust_find_idx(t->keys, t->nkeys, sizeof(*t->keys), node, &f);
	if (!f && trust_insert_at((void **)&t->keys, &t->nkeys, &t->capkeys, sizeof(*t->keys), i) < 0)
		return -ENOMEM;
	t->keys[i].node = node;
	memcpy(t->keys[i].pk, pk, PROTO_ED25519_LEN);
	t->keys[i].seen_at = trust_now(t);
	t->keys_dirty = true;
	return 0;
}

enum trust_pin trust_pinned_key(const trust *t, uint32_t node, uint8_t pk[PROTO_ED25519_LEN])
{
	const trust_peer *p = trusted_of(t, node);
	const trust_key *k;

	if (p && p->has_key) {
		memcpy(pk, p->pk, PROTO_ED25519_LEN);
		return TRUST_PIN_KEY;
	}
	if (p)
		return TRUST_PIN_TRUSTED;
	if ((k = trust_key_get(t, node))) {
		memcpy(pk, k->pk, PROTO_ED25519_LEN);
		return TRUST_PIN_KEY;
	}
	return TRUST_PIN_NONE;
}

static void key_b64(const uint8_t *pk, char out[48])
{
	pilot_b64_encode(pk, PROTO_ED25519_LEN, out, 48);
}

/* A trusted entry: learn its first key (migration) or take the confirmed new one. */
static int pin_trusted(trust *t, trust_peer *p, const uint8_t pk[PROTO_ED25519_LEN])
{
	char a[48], b[48];

	if (p->has_key && !sodium_memcmp(p->pk, pk, PROTO_ED25519_LEN))
		return 0;
	key_b64(pk, b);
	if (p->has_key) {
		key_b64(p->pk, a);
		log_warn("trust: key of trusted peer=%" PRIu32 " changed old=%s new=%s (registry "
			 "confirms the rotation)", p->node, a, b);
	} else {
		log_info("trust: key of trusted peer=%" PRIu32 " pinned key=%s", p->node, b);
	}
	memcpy(p->pk, pk, PROTO_ED25519_LEN);
	p->has_key = true;
	trust_key_del(t, p->node);
	trust_save(t);
	return 1;
}

int trust_pin_key(trust *t, uint32_t node, const uint8_t pk[PROTO_ED25519_LEN])
{
	trust_peer *p = trusted_of(t, node);
	trust_key *k;
	char a[48], b[48];
	int rc;

	if (p)
		return pin_trusted(t, p, pk);
	if ((k = trust_key_get(t, node)) && !sodium_memcmp(k->pk, pk, PROTO_ED25519_LEN)) {
		k->seen_at = trust_now(t); /* saved with the next change */
		return 0;
	}
	key_b64(pk, b);
	if (k) {
		key_b64(k->pk, a);
		log_warn("trust: key of node=%" PRIu32 " changed old=%s new=%s (registry confirms the "
			 "rotation)", node, a, b);
	} else {
		log_debug("trust: key of node=%" PRIu32 " pinned key=%s", node, b);
	}
	rc = trust_key_put(t, node, pk);
	return rc < 0 ? rc : 1;
}

bool trust_admits(const trust *t, uint32_t node, const uint8_t pk[PROTO_ED25519_LEN])
{
	const trust_peer *p = trusted_of(t, node);

	return p && (!p->has_key || !sodium_memcmp(p->pk, pk, PROTO_ED25519_LEN));
}

void trust_flush(trust *t)
{
	if (t->keys_dirty)
		trust_save(t);
}

size_t trust_count_keys(const trust *t)
{
	return t->nkeys;
}
