/* IPv4 <-> Pilot address map and the deterministic IPv6 ULA (tun/ADDRESSING.md).
 *
 * Storage: one slot per host offset in the subnet (at most 65536 for a /16) and
 * an open-addressing hash (linear probing, backward-shift deletion) from the
 * Pilot address to the offset. Both are allocated once at open, so nothing a
 * peer does can grow them. */
#include "tun/addrmap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lib/fileutil.h"
#include "lib/jsonwire.h"
#include "lib/log.h"

/* "PILOT" = 50 49 4c 4f 54 after the ULA's fd: a fixed Global ID on purpose. */
const uint8_t tun_ula_prefix[6] = { 0xfd, 0x50, 0x49, 0x4c, 0x4f, 0x54 };

struct slot {
	pilot_addr a;
	bool used;
};

struct tun_addrmap {
	uint32_t subnet;
	int plen;
	uint32_t size;      /* addresses in the subnet */
	uint32_t dns_off;   /* 0 = none (offset 0 is the network address anyway) */
	uint32_t hint;      /* no free offset below this one */
	pilot_addr own;
	bool has_own;
	struct slot *slots; /* [size] */
	uint32_t *hash;     /* offset + 1, 0 = empty; [hcap] */
	uint32_t hcap;
	size_t count;
	char *path;
};

/* ---- hash ------------------------------------------------------------------- */

static uint32_t addr_hash(pilot_addr a, uint32_t mask)
{
	uint64_t k = (uint64_t)a.net << 32 | a.node;

	k ^= k >> 29;
	k *= 0x9E3779B97F4A7C15ull;
	return (uint32_t)(k >> 32) & mask;
}

/* Index of a's bucket, or of the empty bucket where it would go. */
static uint32_t hash_find(const tun_addrmap *m, pilot_addr a)
{
	uint32_t mask = m->hcap - 1, i = addr_hash(a, mask);

	while (m->hash[i] && !pilot_addr_eq(m->slots[m->hash[i] - 1].a, a))
		i = (i + 1) & mask;
	return i;
}

static void hash_remove(tun_addrmap *m, uint32_t i)
{
	uint32_t mask = m->hcap - 1, j = i;

	m->hash[i] = 0;
	for (;;) {
		uint32_t k;

		j = (j + 1) & mask;
		if (!m->hash[j])
			return;
		k = addr_hash(m->slots[m->hash[j] - 1].a, mask);
		/* Move j back into the hole unless its home lies cyclically in (i, j]. */
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			m->hash[i] = m->hash[j];
			m->hash[j] = 0;
			i = j;
		}
	}
}

/* ---- offsets ------------------------------------------------------------------ */

static bool off_reserved(const tun_addrmap *m, uint32_t off)
{
	return off == 0 || off == 1 || off == m->size - 1 || (m->dns_off && off == m->dns_off);
}

static void put_entry(tun_addrmap *m, pilot_addr a, uint32_t off)
{
	m->slots[off].a = a;
	m->slots[off].used = true;
	m->hash[hash_find(m, a)] = off + 1;
	m->count++;
}

static void drop_entry(tun_addrmap *m, uint32_t off)
{
	hash_remove(m, hash_find(m, m->slots[off].a));
	m->slots[off].used = false;
	m->count--;
	if (off < m->hint)
		m->hint = off;
}

static bool is_peer_addr(pilot_addr a)
{
	return !pilot_addr_is_zero(a) && !pilot_addr_is_broadcast(a);
}

/* ---- public queries ---------------------------------------------------------------- */

uint32_t tun_addrmap_subnet(const tun_addrmap *m) { return m->subnet; }
int tun_addrmap_prefix_len(const tun_addrmap *m) { return m->plen; }
uint32_t tun_addrmap_own_ip(const tun_addrmap *m) { return m->subnet + 1; }
size_t tun_addrmap_count(const tun_addrmap *m) { return m->count; }

bool tun_addrmap_in_subnet(const tun_addrmap *m, uint32_t ip)
{
	return ip - m->subnet < m->size;
}

void tun_addrmap_set_own(tun_addrmap *m, pilot_addr own)
{
	m->own = own;
	m->has_own = !pilot_addr_is_zero(own);
}

int tun_addrmap_lookup_addr(const tun_addrmap *m, pilot_addr a, uint32_t *ip)
{
	uint32_t i;

	if (m->has_own && pilot_addr_eq(a, m->own)) {
		*ip = tun_addrmap_own_ip(m);
		return 0;
	}
	i = hash_find(m, a);
	if (!m->hash[i])
		return -ENOENT;
	*ip = m->subnet + m->hash[i] - 1;
	return 0;
}

int tun_addrmap_lookup_ip(const tun_addrmap *m, uint32_t ip, pilot_addr *a)
{
	uint32_t off = ip - m->subnet;

	if (off >= m->size)
		return -ENOENT;
	if (off == 1 && m->has_own) {
		*a = m->own;
		return 0;
	}
	if (!m->slots[off].used)
		return -ENOENT;
	*a = m->slots[off].a;
	return 0;
}

void tun_addrmap_foreach(const tun_addrmap *m, tun_addrmap_visit_fn cb, void *ctx)
{
	for (uint32_t off = 0; off < m->size; off++)
		if (m->slots[off].used && cb(ctx, m->slots[off].a, m->subnet + off))
			return;
}

/* ---- changes ------------------------------------------------------------------------ */

int tun_addrmap_get(tun_addrmap *m, pilot_addr a, uint32_t *ip)
{
	uint32_t off;

	if (!is_peer_addr(a))
		return -EINVAL;
	if (tun_addrmap_lookup_addr(m, a, ip) == 0)
		return 0;
	for (off = m->hint; off < m->size; off++)
		if (!m->slots[off].used && !off_reserved(m, off))
			break;
	m->hint = off;
	if (off >= m->size)
		return -ENOSPC;
	put_entry(m, a, off);
	*ip = m->subnet + off;
	/* The mapping works even if the file cannot be written (save logged it);
	 * the next change retries. */
	(void)tun_addrmap_save(m);
	return 0;
}

int tun_addrmap_map(tun_addrmap *m, pilot_addr a, uint32_t ip)
{
	uint32_t off = ip - m->subnet, i;

	if (!is_peer_addr(a) || off >= m->size || off_reserved(m, off))
		return -EINVAL;
	if (m->has_own && pilot_addr_eq(a, m->own))
		return -EINVAL;
	if (m->slots[off].used)
		return pilot_addr_eq(m->slots[off].a, a) ? 0 : -EEXIST;
	i = hash_find(m, a);
	if (m->hash[i])
		drop_entry(m, m->hash[i] - 1);
	put_entry(m, a, off);
	return tun_addrmap_save(m);
}

int tun_addrmap_unmap(tun_addrmap *m, pilot_addr a)
{
	uint32_t i = hash_find(m, a);

	if (!m->hash[i])
		return -ENOENT;
	drop_entry(m, m->hash[i] - 1);
	return tun_addrmap_save(m);
}

/* ---- persistence -------------------------------------------------------------------- */

static void ip_str(uint32_t ip, char out[INET_ADDRSTRLEN])
{
	struct in_addr in = { htonl(ip) };

	inet_ntop(AF_INET, &in, out, INET_ADDRSTRLEN);
}

/* {"version":1,"subnet":"10.4.0.0/16","map":[{"addr":"0:0000.0000.0007","ip":"10.4.0.2"}]} */
int tun_addrmap_save(tun_addrmap *m)
{
	/* Each entry is at most 64 bytes: fixed-width fields, no escaping needed. */
	size_t cap = 128 + m->count * 64, len;
	char *buf, net[INET_ADDRSTRLEN], ip[INET_ADDRSTRLEN], as[PILOT_ADDR_STRLEN];
	int rc;

	if (!m->path)
		return 0;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	ip_str(m->subnet, net);
	len = (size_t)snprintf(buf, cap, "{\"version\":1,\"subnet\":\"%s/%d\",\"map\":[", net, m->plen);
	for (uint32_t off = 0, n = 0; off < m->size; off++) {
		if (!m->slots[off].used)
			continue;
		ip_str(m->subnet + off, ip);
		len += (size_t)snprintf(buf + len, cap - len, "%s\n{\"addr\":\"%s\",\"ip\":\"%s\"}",
					n++ ? "," : "", pilot_addr_format(m->slots[off].a, as), ip);
	}
	len += (size_t)snprintf(buf + len, cap - len, "]}\n");
	rc = pilot_write_atomic(m->path, buf, len, 0600);
	free(buf);
	if (rc < 0)
		log_warn("addrmap: cannot write map file=%s err=\"%s\"", m->path, strerror(-rc));
	return rc;
}

static int load_entry(tun_addrmap *m, json_object *e, size_t idx, char *err, size_t errlen)
{
	const char *as = json_object_is_type(e, json_type_object) ? jw_get_str(e, "addr") : NULL;
	const char *is = as ? jw_get_str(e, "ip") : NULL;
	struct in_addr in;
	pilot_addr a;
	uint32_t off;

	if (!is || pilot_addr_parse(as, strlen(as), &a) < 0 || !is_peer_addr(a) ||
	    inet_pton(AF_INET, is, &in) != 1) {
		snprintf(err, errlen, "map[%zu] needs \"addr\" (N:NNNN.HHHH.LLLL) and \"ip\" (IPv4)", idx);
		return -EINVAL;
	}
	off = ntohl(in.s_addr) - m->subnet;
	if (off >= m->size || off_reserved(m, off)) {
		log_warn("addrmap: dropping entry outside the subnet or reserved file=%s addr=%s ip=%s",
			 m->path, as, is);
		return 0;
	}
	if (m->slots[off].used || m->hash[hash_find(m, a)]) {
		snprintf(err, errlen, "map[%zu]: %s or %s appears twice", idx, as, is);
		return -EINVAL;
	}
	put_entry(m, a, off);
	return 0;
}

static int load_json(tun_addrmap *m, const char *text, size_t len, char *err, size_t errlen)
{
	size_t bad = 0;
	json_object *root = jw_parse(text, len, &bad), *arr = NULL;
	int rc = -EINVAL;

	if (!root) {
		snprintf(err, errlen, "invalid JSON near byte %zu", bad);
		return -EINVAL;
	}
	if (!json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "map", &arr) || !json_object_is_type(arr, json_type_array)) {
		snprintf(err, errlen, "not an address map (no \"map\" array)");
		goto out;
	}
	if (jw_get_u32(root, "version") != 1) {
		snprintf(err, errlen, "unsupported \"version\" (want 1)");
		goto out;
	}
	rc = 0;
	for (size_t i = 0; i < json_object_array_length(arr) && rc == 0; i++)
		rc = load_entry(m, json_object_array_get_idx(arr, i), i, err, errlen);
out:
	json_object_put(root);
	return rc;
}

static int load_file(tun_addrmap *m, char *err, size_t errlen)
{
	char *text = NULL, why[160];
	size_t len = 0;
	int rc = pilot_read_file(m->path, TUN_ADDRMAP_MAX_FILE, &text, &len);

	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		snprintf(err, errlen, "address map %s: %s", m->path, strerror(-rc));
		return rc;
	}
	rc = load_json(m, text, len, why, sizeof(why));
	free(text);
	if (rc < 0)
		snprintf(err, errlen, "address map %s is corrupt: %s (fix or remove it)", m->path, why);
	return rc;
}

/* ---- life cycle --------------------------------------------------------------------- */

static int check_cfg(const tun_addrmap_cfg *cfg, uint32_t *subnet, int *plen, char *err, size_t errlen)
{
	*subnet = cfg && cfg->subnet ? cfg->subnet : TUN_ADDRMAP_DEFAULT_SUBNET;
	*plen = cfg && cfg->prefix_len ? cfg->prefix_len : TUN_ADDRMAP_DEFAULT_PREFIX;
	if (*plen < TUN_ADDRMAP_MIN_PREFIX || *plen > TUN_ADDRMAP_MAX_PREFIX) {
		snprintf(err, errlen, "address map: prefix /%d not supported (use /%d to /%d)", *plen,
			 TUN_ADDRMAP_MIN_PREFIX, TUN_ADDRMAP_MAX_PREFIX);
		return -EINVAL;
	}
	if (*subnet & ((1u << (32 - *plen)) - 1)) {
		snprintf(err, errlen, "address map: subnet has host bits set for /%d", *plen);
		return -EINVAL;
	}
	return 0;
}

int tun_addrmap_open(const tun_addrmap_cfg *cfg, tun_addrmap **out, char *err, size_t errlen)
{
	tun_addrmap *m;
	uint32_t subnet;
	int plen, rc = check_cfg(cfg, &subnet, &plen, err, errlen);

	if (rc < 0)
		return rc;
	m = calloc(1, sizeof(*m));
	if (!m)
		goto nomem;
	m->subnet = subnet;
	m->plen = plen;
	m->size = 1u << (32 - plen);
	m->hcap = m->size * 2;
	m->hint = 2;
	if (cfg && cfg->dns_ip - subnet < m->size)
		m->dns_off = cfg->dns_ip - subnet;
	m->slots = calloc(m->size, sizeof(*m->slots));
	m->hash = calloc(m->hcap, sizeof(*m->hash));
	m->path = cfg && cfg->path ? strdup(cfg->path) : NULL;
	if (!m->slots || !m->hash || (cfg && cfg->path && !m->path))
		goto nomem;
	if (m->path && (rc = load_file(m, err, errlen)) < 0) {
		tun_addrmap_free(m);
		return rc;
	}
	*out = m;
	return 0;
nomem:
	tun_addrmap_free(m);
	snprintf(err, errlen, "address map: out of memory");
	return -ENOMEM;
}

void tun_addrmap_free(tun_addrmap *m)
{
	if (!m)
		return;
	free(m->slots);
	free(m->hash);
	free(m->path);
	free(m);
}

/* ---- ULA ------------------------------------------------------------------------------ */

/* fd50:494c:4f54:NNNN:0000:0000:HHHH:LLLL */
void tun_ula_from_addr(pilot_addr a, struct in6_addr *out)
{
	uint8_t *b = out->s6_addr;

	memset(out, 0, sizeof(*out));
	memcpy(b, tun_ula_prefix, sizeof(tun_ula_prefix));
	b[6] = (uint8_t)(a.net >> 8);
	b[7] = (uint8_t)a.net;
	b[12] = (uint8_t)(a.node >> 24);
	b[13] = (uint8_t)(a.node >> 16);
	b[14] = (uint8_t)(a.node >> 8);
	b[15] = (uint8_t)a.node;
}

bool tun_ula_in_prefix(const struct in6_addr *ip)
{
	return memcmp(ip->s6_addr, tun_ula_prefix, sizeof(tun_ula_prefix)) == 0;
}

int tun_ula_to_addr(const struct in6_addr *ip, pilot_addr *out)
{
	const uint8_t *b = ip->s6_addr;

	if (!tun_ula_in_prefix(ip) || b[8] || b[9] || b[10] || b[11])
		return -EINVAL;
	out->net = (uint16_t)(b[6] << 8 | b[7]);
	out->node = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
	return 0;
}
