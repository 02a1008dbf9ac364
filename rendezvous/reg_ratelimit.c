/* Per-source token buckets (numbers in registry.c's header comment). IPv4 is keyed
 * by address, IPv6 by its /64 so one host cannot spread over 2^64 buckets. The
 * bucket table is bounded: idle buckets are dropped every minute, and when it is
 * full the least recently used of a few random candidates is evicted. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rendezvous/reg_internal.h"

static const struct {
	double cap, per_ms;
} classes[4] = {
	[RL_REGISTER] = { 10, 10.0 / 60000 },
	[RL_WRITE] = { 120, 2.0 / 1000 },
	[RL_READ] = { 300, 10.0 / 1000 },
	[RL_MISS] = { 20, 1.0 / 6000 },
};

static void ip_key(const char *ip, char out[48])
{
	struct in6_addr a6;
	struct in_addr a4;

	if (inet_pton(AF_INET, ip, &a4) == 1) {
		inet_ntop(AF_INET, &a4, out, 48);
	} else if (inet_pton(AF_INET6, ip, &a6) == 1) {
		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			inet_ntop(AF_INET, &a6.s6_addr[12], out, 48);
			return;
		}
		memset(&a6.s6_addr[8], 0, 8);
		inet_ntop(AF_INET6, &a6, out, 44);
		strcat(out, "/64");
	} else {
		snprintf(out, 48, "%.47s", ip);
	}
}

static void evict_one(registry *r)
{
	uint64_t victim = 0, oldest = UINT64_MAX;
	bool found = false;

	for (int tries = 0; tries < 64 && r->buckets.cap; tries++) {
		size_t i = randombytes_uniform((uint32_t)r->buckets.cap);
		reg_bucket *b;

		if (!r->buckets.e[i].used)
			continue;
		b = (reg_bucket *)(uintptr_t)r->buckets.e[i].val;
		if (b->last_ms < oldest) {
			oldest = b->last_ms;
			victim = r->buckets.e[i].key;
			found = true;
		}
		if (found && tries >= 8)
			break;
	}
	if (found) {
		uint64_t v;

		rmap_get(&r->buckets, victim, &v);
		rmap_del(&r->buckets, victim);
		free((void *)(uintptr_t)v);
	}
}

static reg_bucket *bucket_get(registry *r, const char *ip, uint64_t now_ms)
{
	char key[48];
	uint64_t h, v;
	reg_bucket *b;

	ip_key(ip, key);
	h = reg_hash_str(r, key);
	if (rmap_get(&r->buckets, h, &v))
		return (reg_bucket *)(uintptr_t)v;
	if (r->buckets.len >= REG_RL_MAX_BUCKETS) {
		reg_rl_gc(r, now_ms);
		if (r->buckets.len >= REG_RL_MAX_BUCKETS)
			evict_one(r);
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	snprintf(b->ip, sizeof(b->ip), "%s", key);
	for (int c = 0; c < 4; c++)
		b->tok[c] = classes[c].cap;
	b->last_ms = now_ms;
	if (rmap_put(&r->buckets, h, (uintptr_t)b) < 0) {
		free(b);
		return NULL;
	}
	return b;
}

static void refill(reg_bucket *b, uint64_t now_ms)
{
	double dt = now_ms > b->last_ms ? (double)(now_ms - b->last_ms) : 0;

	for (int i = 0; i < 4; i++) {
		b->tok[i] += dt * classes[i].per_ms;
		if (b->tok[i] > classes[i].cap)
			b->tok[i] = classes[i].cap;
	}
	if (now_ms > b->last_ms)
		b->last_ms = now_ms;
}

bool reg_rl_take(registry *r, enum rl_class c, const reg_ctx *ctx)
{
	reg_bucket *b;

	if (r->cfg.ratelimit_disabled || c == RL_NONE)
		return true;
	b = bucket_get(r, ctx->src_ip, ctx->now_ms);
	if (!b)
		return false;
	refill(b, ctx->now_ms);
	if (b->tok[c] < 1)
		return false;
	b->tok[c] -= 1;
	if (b->spent[c] < UINT16_MAX)
		b->spent[c]++;
	return true;
}

size_t reg_rl_spent(registry *r, uint8_t *out, size_t cap)
{
	size_t off = 0;

	for (size_t i = 0; i < r->buckets.cap; i++) {
		reg_bucket *b;
		size_t kl;

		if (!r->buckets.e[i].used)
			continue;
		b = (reg_bucket *)(uintptr_t)r->buckets.e[i].val;
		if (!(b->spent[0] | b->spent[1] | b->spent[2] | b->spent[3]))
			continue;
		kl = strlen(b->ip);
		if (off + 1 + kl + 8 > cap)
			break;
		out[off++] = (uint8_t)kl;
		memcpy(out + off, b->ip, kl);
		off += kl;
		for (int c = 0; c < 4; c++) {
			out[off++] = (uint8_t)(b->spent[c] >> 8);
			out[off++] = (uint8_t)b->spent[c];
			b->spent[c] = 0;
		}
	}
	return off;
}

void reg_rl_charge(registry *r, const uint8_t *p, size_t len, uint64_t now_ms)
{
	size_t off = 0;

	if (r->cfg.ratelimit_disabled)
		return;
	while (off < len) {
		size_t kl = p[off];
		char key[48];
		reg_bucket *b;

		if (!kl || kl >= sizeof(key) || off + 1 + kl + 8 > len)
			return; /* malformed: the rest too */
		memcpy(key, p + off + 1, kl);
		key[kl] = 0;
		off += 1 + kl;
		if (memchr(key, 0, kl) || !(b = bucket_get(r, key, now_ms))) {
			off += 8;
			continue;
		}
		refill(b, now_ms);
		for (int c = 0; c < 4; c++, off += 2) {
			b->tok[c] -= (double)((unsigned)p[off] << 8 | p[off + 1]);
			if (b->tok[c] < -classes[c].cap)
				b->tok[c] = -classes[c].cap;
		}
	}
}

void reg_rl_gc(registry *r, uint64_t now_ms)
{
	size_t n;
	uint64_t *k = rmap_keys(&r->buckets, &n);

	for (size_t i = 0; i < n; i++) {
		uint64_t v;
		reg_bucket *b;

		rmap_get(&r->buckets, k[i], &v);
		b = (reg_bucket *)(uintptr_t)v;
		if (now_ms > b->last_ms + REG_RL_IDLE_MS) {
			rmap_del(&r->buckets, k[i]);
			free(b);
		}
	}
	free(k);
}

void reg_rl_free(registry *r)
{
	for (size_t i = 0; i < r->buckets.cap; i++)
		if (r->buckets.e[i].used)
			free((void *)(uintptr_t)r->buckets.e[i].val);
	rmap_free(&r->buckets);
}
