/* DNS responder for `pilot` (RFC 1035 wire format; see tun/dns.h). */
#include "tun/dns.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"

#define HDR_LEN 12
#define MAX_HOPS 64     /* compression pointers followed per name */
#define CTAB_MAX 32     /* names remembered for output compression */
#define READ_BATCH 64   /* datagrams per readable event */

extern char **environ;

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- names (input) ------------------------------------------------------------ */

static bool plain_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* Append one label as lower-case text; anything else becomes \DDD. */
static int text_label(char *text, size_t cap, size_t *tl, const uint8_t *lab, size_t n)
{
	if (*tl && *tl + 1 < cap)
		text[(*tl)++] = '.';
	for (size_t i = 0; i < n; i++) {
		uint8_t c = lab[i];

		if (*tl + 5 > cap)
			return -EINVAL;
		if (plain_char(c))
			text[(*tl)++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		else
			*tl += (size_t)snprintf(text + *tl, cap - *tl, "\\%03u", c);
	}
	text[*tl] = '\0';
	return 0;
}

/* Read a possibly compressed name at *pos (advanced past it). Every pointer
 * must point strictly before the previous one (or the name's start), so a
 * loop cannot exist; wire (uncompressed) and text are optional outputs. */
static int read_name(const uint8_t *msg, size_t len, size_t *pos, uint8_t *wire, size_t *wlen,
		     char *text, size_t tcap)
{
	/* cppcheck-suppress duplicateAssignExpression */
	size_t p = *pos, limit = *pos, wl = 0, tl = 0, end = 0;
	int hops = 0;

	if (text)
		text[0] = '\0';
	for (;;) {
		uint8_t c;

		if (p >= len)
			return -EINVAL;
		c = msg[p];
		if ((c & 0xC0) == 0xC0) {
			size_t target;

			if (p + 1 >= len)
				return -EINVAL;
			target = (size_t)(c & 0x3F) << 8 | msg[p + 1];
			if (!end)
				end = p + 2;
			if (target >= limit || ++hops > MAX_HOPS)
				return -EINVAL;
			limit = p = target;
			continue;
		}
		if (c & 0xC0) /* 0x40 / 0x80 label types are obsolete or unassigned */
			return -EINVAL;
		if (wl + 1 + c > TUN_DNS_MAX_WIRE || p + 1 + c > len)
			return -EINVAL;
		if (wire)
			memcpy(wire + wl, msg + p, 1 + (size_t)c);
		wl += 1 + (size_t)c;
		if (c == 0)
			break;
		if (text && text_label(text, tcap, &tl, msg + p + 1, c) < 0)
			return -EINVAL;
		p += 1 + (size_t)c;
	}
	*pos = end ? end : p + 1;
	if (wlen)
		*wlen = wl;
	return 0;
}

/* Plain dotted text (our own names: no escapes) to wire form. */
static int text_to_wire(const char *text, uint8_t *wire, size_t *wlen)
{
	size_t wl = 0;

	while (*text) {
		const char *dot = strchr(text, '.');
		size_t n = dot ? (size_t)(dot - text) : strlen(text);

		if (n == 0 || n > 63 || wl + 1 + n + 1 > TUN_DNS_MAX_WIRE)
			return -EINVAL;
		wire[wl] = (uint8_t)n;
		memcpy(wire + wl + 1, text, n);
		wl += 1 + n;
		text += n + (dot ? 1 : 0);
	}
	wire[wl++] = 0;
	*wlen = wl;
	return 0;
}

/* ---- records (input) ------------------------------------------------------------- */

/* One resource record at *pos; v (optional) receives its fields. */
static int read_rr(const uint8_t *msg, size_t len, size_t *pos, tun_dns_rr_view *v, size_t *owner_wlen)
{
	size_t p = *pos, wl = 0, rd;
	uint16_t type, rdlen;

	if (read_name(msg, len, &p, NULL, &wl, v ? v->name : NULL, TUN_DNS_MAX_TEXT) < 0)
		return -EINVAL;
	if (len - p < 10)
		return -EINVAL;
	type = get16(msg + p);
	rdlen = get16(msg + p + 8);
	rd = p + 10;
	if (len - rd < rdlen)
		return -EINVAL;
	if (v) {
		v->type = type;
		v->rclass = get16(msg + p + 2);
		v->ttl = get32(msg + p + 4);
		v->rdlen = rdlen;
		v->rdata = msg + rd;
		v->target[0] = '\0';
		if (type == TUN_DNS_T_PTR || type == TUN_DNS_T_NS || type == TUN_DNS_T_CNAME ||
		    type == TUN_DNS_T_SOA) {
			size_t tp = rd;

			/* The target may be compressed but must end inside the rdata. */
			if (read_name(msg, rd + rdlen, &tp, NULL, NULL, v->target, TUN_DNS_MAX_TEXT) < 0)
				return -EINVAL;
		}
	}
	if (owner_wlen)
		*owner_wlen = wl;
	*pos = rd + rdlen;
	return 0;
}

static int read_question(const uint8_t *buf, size_t len, size_t *pos, tun_dns_query *q)
{
	if (read_name(buf, len, pos, q->qwire, &q->qwire_len, q->name, sizeof(q->name)) < 0)
		return -EINVAL;
	if (len - *pos < 4)
		return -EINVAL;
	q->qtype = get16(buf + *pos);
	q->qclass = get16(buf + *pos + 2);
	*pos += 4;
	q->has_question = true;
	return 0;
}

/* Additional section: at most one OPT, owned by the root (RFC 6891 §6.1.1). */
static int read_additional(const uint8_t *buf, size_t len, size_t *pos, unsigned n, tun_dns_query *q)
{
	for (unsigned i = 0; i < n; i++) {
		size_t p = *pos, wl = 0;
		uint16_t type, cls, rdlen;

		if (read_name(buf, len, &p, NULL, &wl, NULL, 0) < 0 || len - p < 10)
			return -EINVAL;
		type = get16(buf + p);
		cls = get16(buf + p + 2);
		rdlen = get16(buf + p + 8);
		if (len - p - 10 < rdlen)
			return -EINVAL;
		*pos = p + 10 + rdlen;
		if (type != TUN_DNS_T_OPT)
			continue;
		if (q->edns || wl != 1)
			return -EINVAL;
		q->edns = true;
		q->udp_size = cls < 512 ? 512 : cls;
	}
	return 0;
}

int tun_dns_parse_query(const uint8_t *buf, size_t len, tun_dns_query *q)
{
	size_t pos = HDR_LEN;
	unsigned an, ns;

	q->has_question = false;
	q->edns = false;
	q->udp_size = 512;
	q->qwire_len = 0;
	q->name[0] = '\0';
	if (len < HDR_LEN)
		return -EINVAL;
	q->id = get16(buf);
	q->flags = get16(buf + 2);
	if (q->flags & TUN_DNS_F_QR)
		return -EINVAL; /* never answer a response: no loops between responders */
	if ((q->flags >> 11 & 0xF) != 0)
		return TUN_DNS_NOTIMP;
	if (get16(buf + 4) != 1)
		return TUN_DNS_FORMERR;
	if (read_question(buf, len, &pos, q) < 0)
		return TUN_DNS_FORMERR;
	an = get16(buf + 6);
	ns = get16(buf + 8);
	for (unsigned i = 0; i < an + ns; i++)
		if (read_rr(buf, len, &pos, NULL, NULL) < 0)
			return TUN_DNS_FORMERR;
	return read_additional(buf, len, &pos, get16(buf + 10), q) < 0 ? TUN_DNS_FORMERR : 0;
}

/* ---- whole messages (tests, fuzzer) ------------------------------------------------ */

int tun_dns_parse_msg(const uint8_t *buf, size_t len, tun_dns_msg *m)
{
	size_t pos = HDR_LEN;
	unsigned total;

	if (len < HDR_LEN)
		return -EINVAL;
	m->id = get16(buf);
	m->flags = get16(buf + 2);
	m->qdcount = get16(buf + 4);
	m->ancount = get16(buf + 6);
	m->nscount = get16(buf + 8);
	m->arcount = get16(buf + 10);
	m->qname[0] = '\0';
	m->qtype = m->qclass = 0;
	m->nrr = 0;
	for (unsigned i = 0; i < m->qdcount; i++) {
		if (read_name(buf, len, &pos, NULL, NULL, i ? NULL : m->qname, sizeof(m->qname)) < 0 ||
		    len - pos < 4)
			return -EINVAL;
		if (i == 0) {
			m->qtype = get16(buf + pos);
			m->qclass = get16(buf + pos + 2);
		}
		pos += 4;
	}
	total = (unsigned)m->ancount + m->nscount + m->arcount;
	for (unsigned i = 0; i < total; i++) {
		tun_dns_rr_view *v = m->nrr < TUN_DNS_MSG_MAX_RR ? &m->rr[m->nrr] : NULL;

		if (read_rr(buf, len, &pos, v, NULL) < 0)
			return -EINVAL;
		if (v)
			m->nrr++;
	}
	return 0;
}

/* ---- output ------------------------------------------------------------------------ */

struct wbuf {
	uint8_t *b;
	size_t cap, len;
	bool overflow;
	struct {
		const uint8_t *wire; /* a suffix of a name already written */
		size_t n;
		uint16_t off;
	} ct[CTAB_MAX];
	size_t nct;
};

static void put(struct wbuf *w, const void *p, size_t n)
{
	if (w->overflow || w->cap - w->len < n) {
		w->overflow = true;
		return;
	}
	memcpy(w->b + w->len, p, n);
	w->len += n;
}

static void put16(struct wbuf *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	put(w, b, 2);
}

static void put32(struct wbuf *w, uint32_t v)
{
	put16(w, (uint16_t)(v >> 16));
	put16(w, (uint16_t)v);
}

static bool wire_eq_ci(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t x = a[i], y = b[i];

		if (x >= 'A' && x <= 'Z')
			x += 32;
		if (y >= 'A' && y <= 'Z')
			y += 32;
		if (x != y)
			return false;
	}
	return true;
}

/* Write an uncompressed wire name, replacing the longest suffix already in
 * the message with a pointer (RFC 1035 §4.1.4). The table points at wire, so
 * it must outlive the encode call. */
static void put_name(struct wbuf *w, const uint8_t *wire, size_t wlen)
{
	size_t i = 0;

	while (i < wlen && wire[i] != 0) {
		size_t rest = wlen - i;

		for (size_t k = 0; k < w->nct; k++)
			if (w->ct[k].n == rest && wire_eq_ci(w->ct[k].wire, wire + i, rest)) {
				put16(w, (uint16_t)(0xC000 | w->ct[k].off));
				return;
			}
		if (w->len <= 0x3FFF && w->nct < CTAB_MAX) {
			w->ct[w->nct].wire = wire + i;
			w->ct[w->nct].n = rest;
			w->ct[w->nct++].off = (uint16_t)w->len;
		}
		put(w, wire + i, 1 + (size_t)wire[i]);
		i += 1 + (size_t)wire[i];
	}
	put(w, "", 1);
}

/* Names built while encoding live here so the compression table stays valid. */
struct names {
	uint8_t wire[12][TUN_DNS_MAX_WIRE];
	size_t n;
};

static int put_text_name(struct wbuf *w, struct names *nm, const char *text)
{
	size_t wl;

	if (nm->n >= sizeof(nm->wire) / sizeof(nm->wire[0]) || text_to_wire(text, nm->wire[nm->n], &wl) < 0)
		return -EINVAL;
	put_name(w, nm->wire[nm->n++], wl);
	return 0;
}

/* rdata whose length is only known after writing it: patch rdlength. */
static void patch_rdlen(struct wbuf *w, size_t at)
{
	if (!w->overflow) {
		w->b[at] = (uint8_t)((w->len - at - 2) >> 8);
		w->b[at + 1] = (uint8_t)(w->len - at - 2);
	}
}

static int put_soa_rdata(struct wbuf *w, struct names *nm)
{
	size_t at = w->len;

	put16(w, 0);
	if (put_text_name(w, nm, "pilot") < 0 || put_text_name(w, nm, "hostmaster.pilot") < 0)
		return -EINVAL;
	put32(w, 1);      /* serial: the zone is synthesised, it never changes */
	put32(w, 3600);   /* refresh */
	put32(w, 600);    /* retry */
	put32(w, 86400);  /* expire */
	put32(w, TUN_DNS_NEG_TTL); /* minimum = negative-caching TTL */
	patch_rdlen(w, at);
	return 0;
}

static int put_answer(struct wbuf *w, struct names *nm, const tun_dns_query *q, const tun_dns_rr *rr)
{
	size_t at;

	put_name(w, q->qwire, q->qwire_len);
	put16(w, rr->type);
	put16(w, TUN_DNS_CLASS_IN);
	put32(w, rr->ttl);
	switch (rr->type) {
	case TUN_DNS_T_A:
		put16(w, 4);
		put(w, rr->addr, 4);
		return 0;
	case TUN_DNS_T_AAAA:
		put16(w, 16);
		put(w, rr->addr, 16);
		return 0;
	case TUN_DNS_T_PTR:
		at = w->len;
		put16(w, 0);
		if (put_text_name(w, nm, rr->target) < 0)
			return -EINVAL;
		patch_rdlen(w, at);
		return 0;
	case TUN_DNS_T_SOA:
		return put_soa_rdata(w, nm);
	case TUN_DNS_T_SRV: {
		uint8_t wire[TUN_DNS_MAX_WIRE];
		size_t wl;

		/* RFC 2782: the target is not compressed */
		if (text_to_wire(rr->target, wire, &wl) < 0)
			return -EINVAL;
		put16(w, (uint16_t)(6 + wl));
		put16(w, 0); /* priority */
		put16(w, 1); /* weight: all alike */
		put16(w, rr->port);
		put(w, wire, wl);
		return 0;
	}
	default:
		return -EINVAL;
	}
}

static int put_authority(struct wbuf *w, struct names *nm, const char *zone)
{
	if (put_text_name(w, nm, zone) < 0)
		return -EINVAL;
	put16(w, TUN_DNS_T_SOA);
	put16(w, TUN_DNS_CLASS_IN);
	put32(w, TUN_DNS_NEG_TTL);
	return put_soa_rdata(w, nm);
}

static void put_opt(struct wbuf *w)
{
	put(w, "", 1);
	put16(w, TUN_DNS_T_OPT);
	put16(w, TUN_DNS_EDNS_SIZE);
	put32(w, 0); /* extended rcode 0, version 0, no DO */
	put16(w, 0);
}

static int encode(const tun_dns_query *q, const tun_dns_reply *r, bool cut, uint8_t *out, size_t cap)
{
	struct wbuf w = { .b = out, .cap = cap };
	struct names nm;
	uint16_t flags = TUN_DNS_F_QR | (q->flags & (0x7800 | TUN_DNS_F_RD)) | (r->rcode & 0xF);
	bool auth = r->soa_zone && !cut;

	nm.n = 0;
	if (r->rcode == TUN_DNS_NOERROR || r->rcode == TUN_DNS_NXDOMAIN)
		flags |= TUN_DNS_F_AA;
	if (cut)
		flags |= TUN_DNS_F_TC;
	put16(&w, q->id);
	put16(&w, flags);
	put16(&w, q->has_question ? 1 : 0);
	put16(&w, cut ? 0 : (uint16_t)r->nans);
	put16(&w, auth ? 1 : 0);
	put16(&w, q->edns ? 1 : 0);
	if (q->has_question) {
		put_name(&w, q->qwire, q->qwire_len);
		put16(&w, q->qtype);
		put16(&w, q->qclass);
	}
	for (size_t i = 0; !cut && i < r->nans; i++)
		if (put_answer(&w, &nm, q, &r->ans[i]) < 0)
			return -EINVAL;
	if (auth && put_authority(&w, &nm, r->soa_zone) < 0)
		return -EINVAL;
	if (q->edns)
		put_opt(&w);
	return w.overflow ? -ENOSPC : (int)w.len;
}

int tun_dns_encode_reply(const tun_dns_query *q, const tun_dns_reply *r, uint8_t *out, size_t cap)
{
	size_t limit = q->edns ? q->udp_size : 512;
	int n;

	if (r->nans > sizeof(r->ans) / sizeof(r->ans[0]))
		return -EINVAL;
	if (limit > TUN_DNS_MAX_UDP)
		limit = TUN_DNS_MAX_UDP;
	if (limit > cap)
		limit = cap;
	n = encode(q, r, false, out, limit);
	if (n == -ENOSPC)
		n = encode(q, r, true, out, limit);
	return n;
}

/* ---- the responder ---------------------------------------------------------------- */

struct pending {
	bool used;
	bool srv; /* waits for tun_dns_srv_done, not tun_dns_resolve_done */
	uint64_t token;
	uint64_t deadline;
	tun_dns_client client;
	tun_dns_query q;
};

#define DNS_CACHE_N   256     /* hostnames remembered (positive and negative) */
#define DNS_BUCKETS_N 256     /* per-client lookup buckets, direct-mapped */
#define MILLI         1000u   /* bucket tokens are kept in thousandths */

struct cache_ent {
	bool used, neg;
	char host[64];
	pilot_addr addr;
	uint64_t expires;
};

struct bucket {
	bool used;
	uint8_t key[16];
	uint64_t tokens, ms;   /* thousandths of a lookup; last refill */
};

struct tun_dns {
	tun_addrmap *map;
	tun_dns_resolve_fn resolve;
	tun_dns_resolve_srv_fn resolve_srv;
	void *ctx;
	unsigned timeout_ms;
	size_t max_pending, npending;
	struct pending *pend;
	uint64_t next_token;
	tun_dns_send_fn send;
	void *send_ctx;
	pilot_loop *loop;
	uint64_t timer;
	int socks[2];
	struct sockaddr_storage bound[2];
	size_t nsocks;
	char zone4[64], zone6[64];
	int ifindex;
	unsigned client_rate, client_burst, total_rate, neg_cache_ms;
	uint64_t seed;
	struct bucket total, buckets[DNS_BUCKETS_N];
	struct cache_ent cache[DNS_CACHE_N];
	tun_dns_stats st;
	uint8_t in[TUN_DNS_MAX_UDP], out[TUN_DNS_MAX_UDP], late[TUN_DNS_MAX_UDP];
};

/* What to do with a query. */
enum verdict {
	V_REPLY,
	V_RESOLVE,
	V_RESOLVE_SRV
};

static void add_rr(tun_dns_reply *r, uint16_t type, const void *data, size_t n)
{
	tun_dns_rr *rr = &r->ans[r->nans++];

	rr->type = type;
	rr->ttl = TUN_DNS_TTL;
	if (type == TUN_DNS_T_PTR || type == TUN_DNS_T_SOA || type == TUN_DNS_T_SRV)
		snprintf(rr->target, sizeof(rr->target), "%s", (const char *)data);
	else
		memcpy(rr->addr, data, n);
}

static void set_rcode(tun_dns_reply *r, uint8_t rcode, const char *soa_zone)
{
	r->rcode = rcode;
	r->soa_zone = soa_zone;
}

/* N-NNNN-HHHH-LLLL.pilot, lower-case hex. */
static void addr_name(pilot_addr a, char out[64])
{
	snprintf(out, 64, "%u-%04x-%04x-%04x.pilot", (unsigned)a.net, (unsigned)a.net,
		 (unsigned)(a.node >> 16), (unsigned)(a.node & 0xFFFF));
}

static bool want(const tun_dns_query *q, uint16_t type)
{
	return q->qtype == type || q->qtype == TUN_DNS_T_ANY;
}

static void answer_addr(tun_dns *d, const tun_dns_query *q, pilot_addr a, tun_dns_reply *r)
{
	set_rcode(r, TUN_DNS_NOERROR, NULL);
	if (want(q, TUN_DNS_T_A)) {
		uint32_t ip;
		uint8_t b[4];

		if (tun_addrmap_get(d->map, a, &ip) < 0) {
			set_rcode(r, TUN_DNS_SERVFAIL, NULL); /* the subnet is full */
			return;
		}
		b[0] = (uint8_t)(ip >> 24), b[1] = (uint8_t)(ip >> 16), b[2] = (uint8_t)(ip >> 8), b[3] = (uint8_t)ip;
		add_rr(r, TUN_DNS_T_A, b, 4);
	}
	if (want(q, TUN_DNS_T_AAAA)) {
		struct in6_addr ula;

		tun_ula_from_addr(a, &ula);
		add_rr(r, TUN_DNS_T_AAAA, ula.s6_addr, 16);
	}
	if (r->nans == 0)
		r->soa_zone = "pilot"; /* NODATA */
}

/* "0-0000-0000-0007" (exactly four hex digits per group) -> address. */
static int parse_addr_label(const char *s, pilot_addr *a)
{
	char buf[PILOT_ADDR_STRLEN];
	const char *d1 = strchr(s, '-');
	size_t n = strlen(s);

	if (!d1 || d1 == s || (size_t)(d1 - s) > 5 || n != (size_t)(d1 - s) + 15)
		return -EINVAL;
	if (d1[5] != '-' || d1[10] != '-')
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%.*s:%.4s.%.4s.%.4s", (int)(d1 - s), s, d1 + 1, d1 + 6, d1 + 11);
	if (pilot_addr_parse(buf, strlen(buf), a) < 0)
		return -EINVAL;
	return pilot_addr_is_zero(*a) || pilot_addr_is_broadcast(*a) ? -EINVAL : 0;
}

/* Registry hostnames: letters, digits, '-', '_' (already lower-cased). */
static bool hostname_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!plain_char((uint8_t)s[i]))
			return false;
	return true;
}

static bool under(const char *name, const char *zone, size_t *prefix_len)
{
	size_t n = strlen(name), z = strlen(zone);

	if (n == z && strcmp(name, zone) == 0) {
		*prefix_len = 0;
		return true;
	}
	if (n > z + 1 && name[n - z - 1] == '.' && strcmp(name + n - z, zone) == 0) {
		*prefix_len = n - z - 1;
		return true;
	}
	return false;
}

/* "_<port>._pilot.<network>" (network: a decimal ID or a name, one label). */
static int srv_label(const char *s, char net[64], uint16_t *port)
{
	unsigned long v = 0;
	const char *p = s + 1;

	if (strlen(s) >= 64 || s[0] != '_' || !isdigit((unsigned char)*p))
		return -EINVAL;
	while (isdigit((unsigned char)*p) && v <= 65535)
		v = v * 10 + (unsigned long)(*p++ - '0');
	if (v == 0 || v > 65535 || strncmp(p, "._pilot.", 8))
		return -EINVAL;
	p += 8;
	if (!*p || strlen(p) >= 64 || strchr(p, '.'))
		return -EINVAL;
	for (const char *c = p; *c; c++)
		if (!plain_char((uint8_t)*c))
			return -EINVAL;
	snprintf(net, 64, "%s", p);
	*port = (uint16_t)v;
	return 0;
}

static enum verdict answer_pilot(tun_dns *d, const tun_dns_query *q, size_t plen, tun_dns_reply *r)
{
	char net[64];
	uint16_t port;
	char label[TUN_DNS_MAX_TEXT];
	pilot_addr a;

	if (plen == 0) { /* the apex: only SOA exists */
		set_rcode(r, TUN_DNS_NOERROR, want(q, TUN_DNS_T_SOA) ? NULL : "pilot");
		if (want(q, TUN_DNS_T_SOA))
			add_rr(r, TUN_DNS_T_SOA, "pilot", 0);
		return V_REPLY;
	}
	snprintf(label, sizeof(label), "%.*s", (int)plen, q->name);
	if (!strchr(label, '.') && parse_addr_label(label, &a) == 0) {
		answer_addr(d, q, a, r);
		return V_REPLY;
	}
	if (!strchr(label, '.') && hostname_ok(label) && d->resolve)
		return V_RESOLVE;
	if (d->resolve_srv && srv_label(label, net, &port) == 0) {
		if (want(q, TUN_DNS_T_SRV))
			return V_RESOLVE_SRV;
		set_rcode(r, TUN_DNS_NOERROR, "pilot"); /* only SRV lives there */
		return V_REPLY;
	}
	set_rcode(r, TUN_DNS_NXDOMAIN, "pilot");
	return V_REPLY;
}

static void answer_ptr(const tun_dns_query *q, pilot_addr a, tun_dns_reply *r, const char *zone)
{
	char target[64];

	set_rcode(r, TUN_DNS_NOERROR, NULL);
	if (!want(q, TUN_DNS_T_PTR)) {
		r->soa_zone = zone;
		return;
	}
	addr_name(a, target);
	add_rr(r, TUN_DNS_T_PTR, target, 0);
}

/* Up to max dot-separated labels of name[0..plen), in order. */
static int split_labels(const char *name, size_t plen, char lab[][4], int max)
{
	int k = 0;
	size_t i = 0;

	while (i < plen) {
		size_t j = i;

		while (j < plen && name[j] != '.')
			j++;
		if (k >= max || j == i || j - i > 3)
			return -EINVAL;
		memcpy(lab[k], name + i, j - i);
		lab[k++][j - i] = '\0';
		i = j + 1;
	}
	return k;
}

/* Bad labels under our own reverse zone: NXDOMAIN there, REFUSED elsewhere. */
static void refuse_or_nx(const tun_dns_query *q, const char *zone, tun_dns_reply *r)
{
	size_t pl;

	if (under(q->name, zone, &pl))
		set_rcode(r, TUN_DNS_NXDOMAIN, zone);
	else
		set_rcode(r, TUN_DNS_REFUSED, NULL);
}

/* Labels of y.x.4.10 -> 10.4.x.y (k labels fill the top k octets). */
static int rev4_parse(const char *name, size_t plen, uint32_t *ip)
{
	char lab[4][4];
	int k = split_labels(name, plen, lab, 4);

	*ip = 0;
	for (int i = 0; i < k; i++) {
		char *end;
		unsigned long v;

		if (lab[i][0] < '0' || lab[i][0] > '9')
			return -EINVAL;
		v = strtoul(lab[i], &end, 10);
		if (*end || v > 255)
			return -EINVAL;
		*ip |= (uint32_t)v << (8 * (3 - (k - 1 - i)));
	}
	return k;
}

static void answer_rev4(tun_dns *d, const tun_dns_query *q, size_t plen, tun_dns_reply *r)
{
	int sub = tun_addrmap_prefix_len(d->map);
	uint32_t ip, bits;
	int k = rev4_parse(q->name, plen, &ip);
	pilot_addr a;

	if (k < 0) {
		refuse_or_nx(q, d->zone4, r);
		return;
	}
	bits = (uint32_t)(8 * k < sub ? 8 * k : sub);
	if (k < sub / 8 || ((ip ^ tun_addrmap_subnet(d->map)) & (bits ? ~0u << (32 - bits) : 0))) {
		set_rcode(r, TUN_DNS_REFUSED, NULL); /* not our subnet */
		return;
	}
	if (k < 4)
		set_rcode(r, TUN_DNS_NOERROR, d->zone4); /* an empty non-terminal */
	else if (tun_addrmap_lookup_ip(d->map, ip, &a) < 0)
		set_rcode(r, TUN_DNS_NXDOMAIN, d->zone4);
	else
		answer_ptr(q, a, r, d->zone4);
}

/* Nibble labels "7.0.0...f.d" -> up to 32 nibbles, most significant first. */
static int rev6_parse(const char *name, size_t plen, uint8_t nib[32])
{
	int k = 0;

	for (size_t i = 0; i < plen; i += 2) {
		char c = name[i];

		if (k >= 32 || (i + 1 < plen && name[i + 1] != '.'))
			return -EINVAL;
		if (c >= '0' && c <= '9')
			nib[k++] = (uint8_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			nib[k++] = (uint8_t)(c - 'a' + 10);
		else
			return -EINVAL;
	}
	for (int i = 0; i < k / 2; i++) { /* labels come least significant first */
		uint8_t t = nib[i];

		nib[i] = nib[k - 1 - i];
		nib[k - 1 - i] = t;
	}
	return k;
}

static void answer_rev6(tun_dns *d, const tun_dns_query *q, size_t plen, tun_dns_reply *r)
{
	uint8_t nib[32];
	int k = rev6_parse(q->name, plen, nib);
	struct in6_addr ip;
	pilot_addr a;

	if (k < 0) {
		refuse_or_nx(q, d->zone6, r);
		return;
	}
	memset(&ip, 0, sizeof(ip));
	for (int i = 0; i < k; i++)
		ip.s6_addr[i / 2] |= (uint8_t)(nib[i] << (i % 2 ? 0 : 4));
	if (k < TUN_ULA_PREFIX_LEN / 4 || memcmp(ip.s6_addr, tun_ula_prefix, sizeof(tun_ula_prefix)) != 0) {
		set_rcode(r, TUN_DNS_REFUSED, NULL);
		return;
	}
	if (k < 32)
		set_rcode(r, TUN_DNS_NOERROR, d->zone6);
	else if (tun_ula_to_addr(&ip, &a) < 0)
		set_rcode(r, TUN_DNS_NXDOMAIN, d->zone6);
	else
		answer_ptr(q, a, r, d->zone6);
}

static enum verdict decide(tun_dns *d, const tun_dns_query *q, tun_dns_reply *r)
{
	size_t plen;

	memset(r, 0, sizeof(*r));
	if (q->qclass != TUN_DNS_CLASS_IN && q->qclass != TUN_DNS_T_ANY) {
		set_rcode(r, TUN_DNS_REFUSED, NULL);
		return V_REPLY;
	}
	if (q->qtype >= 251 && q->qtype <= 254) { /* IXFR, AXFR, MAILB, MAILA */
		set_rcode(r, TUN_DNS_NOTIMP, NULL);
		return V_REPLY;
	}
	if (under(q->name, "pilot", &plen))
		return answer_pilot(d, q, plen, r);
	if (under(q->name, "in-addr.arpa", &plen))
		answer_rev4(d, q, plen, r);
	else if (under(q->name, "ip6.arpa", &plen))
		answer_rev6(d, q, plen, r);
	else
		set_rcode(r, TUN_DNS_REFUSED, NULL);
	return V_REPLY;
}

/* ---- the answer cache and the lookup rate limits --------------------------------------- */

/* The hostname of a query under .pilot (validated by answer_pilot: < 64 bytes). */
static void query_host(const tun_dns_query *q, char out[64])
{
	snprintf(out, 64, "%.*s", (int)(strlen(q->name) - strlen(".pilot")), q->name);
}

static struct cache_ent *cache_find(tun_dns *d, const char *host, uint64_t now)
{
	for (size_t i = 0; i < DNS_CACHE_N; i++) {
		struct cache_ent *e = &d->cache[i];

		if (e->used && e->expires <= now)
			e->used = false;
		else if (e->used && e->host[0] == host[0] && strcmp(e->host, host) == 0)
			return e;
	}
	return NULL;
}

/* Remember an answer; a full cache gives up the entry closest to expiry. */
static void cache_put(tun_dns *d, const char *host, bool neg, pilot_addr a, uint64_t ttl_ms)
{
	uint64_t now = pilot_now_ms();
	struct cache_ent *e = cache_find(d, host, now);

	for (size_t i = 0; i < DNS_CACHE_N && !e; i++)
		if (!d->cache[i].used)
			e = &d->cache[i];
	for (size_t i = 0; i < DNS_CACHE_N && !e; i++)
		if (i == 0 || d->cache[i].expires < e->expires)
			e = &d->cache[i];
	if (!e)
		e = &d->cache[0];
	*e = (struct cache_ent){ .used = true, .neg = neg, .addr = a, .expires = now + ttl_ms };
	snprintf(e->host, sizeof(e->host), "%s", host);
}

/* true when q was answered from the cache into r */
static bool cache_answer(tun_dns *d, const tun_dns_query *q, tun_dns_reply *r)
{
	char host[64];
	struct cache_ent *e;

	query_host(q, host);
	if (!(e = cache_find(d, host, pilot_now_ms())))
		return false;
	memset(r, 0, sizeof(*r));
	if (e->neg) {
		d->st.neg_cache_hits++;
		set_rcode(r, TUN_DNS_NXDOMAIN, "pilot");
	} else {
		d->st.cache_hits++;
		answer_addr(d, q, e->addr, r);
	}
	return true;
}

static bool bucket_take(struct bucket *b, unsigned rate, unsigned burst, uint64_t now)
{
	uint64_t cap = (uint64_t)burst * MILLI;

	if (!b->used) {
		b->used = true;
		b->tokens = cap;
		b->ms = now;
	}
	if (now > b->ms) {
		uint64_t add = (now - b->ms) * rate; /* rate per s = rate thousandths per ms */
		b->tokens = add >= cap || b->tokens + add > cap ? cap : b->tokens + add;
		b->ms = now;
	}
	if (b->tokens < MILLI)
		return false;
	b->tokens -= MILLI;
	return true;
}

static void client_key(const tun_dns_client *c, uint8_t key[16])
{
	const struct sockaddr_in *s4 = (const void *)&c->ss;
	const struct sockaddr_in6 *s6 = (const void *)&c->ss;

	memset(key, 0, 16);
	if (c->len && c->ss.ss_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &s4->sin_addr, 4);
	} else if (c->len && c->ss.ss_family == AF_INET6) {
		memcpy(key, &s6->sin6_addr, 16);
	}
}

/* Per client first, so one client cannot drain the total. */
static bool lookup_allowed(tun_dns *d, const tun_dns_client *from)
{
	uint8_t key[16];
	uint64_t h = d->seed, now = pilot_now_ms();
	struct bucket *b;

	client_key(from, key);
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 0x100000001b3ull;
	b = &d->buckets[(h ^ h >> 29) % DNS_BUCKETS_N];
	if (b->used && memcmp(b->key, key, 16) != 0)
		b->used = false; /* direct-mapped: a colliding client starts afresh */
	memcpy(b->key, key, 16);
	if (!bucket_take(b, d->client_rate, d->client_burst, now))
		return false;
	return bucket_take(&d->total, d->total_rate, d->total_rate * 2, now);
}

void tun_dns_get_stats(const tun_dns *d, tun_dns_stats *st)
{
	*st = d->st;
}

/* ---- pending hostname lookups ---------------------------------------------------------- */

static void send_late(tun_dns *d, const struct pending *p, const tun_dns_reply *r)
{
	int n = tun_dns_encode_reply(&p->q, r, d->late, sizeof(d->late));

	if (n > 0)
		d->send(d->send_ctx, &p->client, d->late, (size_t)n);
}

static void finish(tun_dns *d, struct pending *p, const tun_dns_reply *r)
{
	send_late(d, p, r);
	p->used = false;
	d->npending--;
}

static int64_t expire_timer(pilot_loop *l, uint64_t id, void *arg)
{
	tun_dns *d = arg;

	tun_dns_expire(d, pilot_loop_now_ms(l));
	if (d->npending)
		return d->timeout_ms < 200 ? d->timeout_ms : 200;
	d->timer = 0;
	return 0;
}

void tun_dns_expire(tun_dns *d, uint64_t now_ms)
{
	tun_dns_reply r;

	memset(&r, 0, sizeof(r));
	r.rcode = TUN_DNS_SERVFAIL;
	for (size_t i = 0; i < d->max_pending && d->npending; i++)
		if (d->pend[i].used && d->pend[i].deadline <= now_ms)
			finish(d, &d->pend[i], &r);
}

size_t tun_dns_pending(const tun_dns *d) { return d->npending; }

void tun_dns_resolve_done(tun_dns *d, uint64_t token, int status, pilot_addr addr)
{
	tun_dns_reply r;
	char host[64];

	for (size_t i = 0; i < d->max_pending; i++) {
		struct pending *p = &d->pend[i];

		if (!p->used || p->token != token || p->srv)
			continue;
		memset(&r, 0, sizeof(r));
		query_host(&p->q, host);
		if (status == 0 && !pilot_addr_is_zero(addr) && !pilot_addr_is_broadcast(addr)) {
			answer_addr(d, &p->q, addr, &r);
			cache_put(d, host, false, addr, TUN_DNS_TTL * 1000ull);
		} else if (status == -ENOENT || status == 0) {
			set_rcode(&r, TUN_DNS_NXDOMAIN, "pilot");
			cache_put(d, host, true, addr, d->neg_cache_ms);
		} else {
			set_rcode(&r, TUN_DNS_SERVFAIL, NULL); /* registry trouble: not remembered */
		}
		finish(d, p, &r);
		return;
	}
}

void tun_dns_srv_done(tun_dns *d, uint64_t token, int status, const pilot_addr *addrs, const uint16_t *ports,
		      size_t n)
{
	tun_dns_reply r;

	for (size_t i = 0; i < d->max_pending; i++) {
		struct pending *p = &d->pend[i];

		if (!p->used || p->token != token || !p->srv)
			continue;
		memset(&r, 0, sizeof(r));
		if (status == 0 && n > 0) {
			set_rcode(&r, TUN_DNS_NOERROR, NULL);
			for (size_t k = 0; k < n && r.nans < TUN_DNS_MAX_ANS; k++) {
				char target[64];

				if (pilot_addr_is_zero(addrs[k]) || pilot_addr_is_broadcast(addrs[k]))
					continue;
				addr_name(addrs[k], target);
				add_rr(&r, TUN_DNS_T_SRV, target, 0);
				r.ans[r.nans - 1].port = ports[k];
			}
		}
		if (r.nans == 0 && (status == 0 || status == -ENOENT))
			set_rcode(&r, TUN_DNS_NXDOMAIN, "pilot");
		else if (r.nans == 0)
			set_rcode(&r, TUN_DNS_SERVFAIL, NULL);
		finish(d, p, &r);
		return;
	}
}

/* Park q and ask the resolver. Returns false when the table is full. */
static bool start_lookup(tun_dns *d, const tun_dns_client *from, const tun_dns_query *q, bool srv)
{
	char net[64], host[64];
	uint16_t port = 0;
	struct pending *p = NULL;

	for (size_t i = 0; i < d->max_pending && !p; i++)
		if (!d->pend[i].used)
			p = &d->pend[i];
	if (!p)
		return false;
	p->used = true;
	p->token = ++d->next_token;
	p->deadline = pilot_now_ms() + d->timeout_ms;
	p->client = *from;
	p->q = *q;
	d->npending++;
	d->st.lookups++;
	if (d->loop && !d->timer)
		d->timer = pilot_loop_add_timer(d->loop, d->timeout_ms < 200 ? d->timeout_ms : 200, expire_timer, d);
	query_host(q, host);
	p->srv = srv;
	if (!srv)
		d->resolve(d->ctx, host, p->token); /* may answer at once */
	else if (srv_label(host, net, &port) == 0)  /* decide() checked it */
		d->resolve_srv(d->ctx, net, port, p->token);
	return true;
}

size_t tun_dns_handle(tun_dns *d, const tun_dns_client *from, const uint8_t *pkt, size_t len,
		      uint8_t *out, size_t cap)
{
	tun_dns_query q;
	tun_dns_reply r;
	enum verdict v;
	int rc, n;

	d->st.queries++;
	if (d->ifindex && from->ifindex != d->ifindex) {
		d->st.not_tun++; /* routed to the TUN address from outside: not ours to answer */
		return 0;
	}
	rc = tun_dns_parse_query(pkt, len, &q);
	if (rc < 0)
		return 0;
	if (rc > 0) {
		memset(&r, 0, sizeof(r));
		r.rcode = (uint8_t)rc;
	} else if ((v = decide(d, &q, &r)) != V_REPLY && (v == V_RESOLVE_SRV || !cache_answer(d, &q, &r))) {
		if (!lookup_allowed(d, from))
			d->st.rate_limited++;
		else if (start_lookup(d, from, &q, v == V_RESOLVE_SRV))
			return 0;
		memset(&r, 0, sizeof(r));
		r.rcode = TUN_DNS_SERVFAIL; /* rate limited, or too many lookups in flight */
	}
	n = tun_dns_encode_reply(&q, &r, out, cap);
	return n > 0 ? (size_t)n : 0;
}

/* ---- sockets ----------------------------------------------------------------------------- */

static void send_udp(void *ctx, const tun_dns_client *to, const uint8_t *buf, size_t len)
{
	(void)ctx;
	if (to->sock >= 0 && sendto(to->sock, buf, len, 0, (const struct sockaddr *)&to->ss, to->len) < 0)
		log_debug("dns: sendto failed err=\"%s\"", strerror(errno));
}

/* One datagram into d->in, with the sender and the device it arrived through. */
static ssize_t recv_query(tun_dns *d, int fd, tun_dns_client *c)
{
	union {
		struct cmsghdr align;
		uint8_t buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
	} ctl;
	struct iovec iov = { .iov_base = d->in, .iov_len = sizeof(d->in) };
	struct msghdr m = { .msg_name = &c->ss, .msg_namelen = sizeof(c->ss), .msg_iov = &iov,
			    .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
	ssize_t n = recvmsg(fd, &m, 0);

	if (n < 0)
		return n;
	c->len = m.msg_namelen;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
		if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			c->ifindex = pi.ipi_ifindex;
		} else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;
			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			c->ifindex = (int)pi.ipi6_ifindex;
		}
	}
	return n;
}

static void on_readable(pilot_loop *l, int fd, int events, void *arg)
{
	tun_dns *d = arg;

	for (int i = 0; i < READ_BATCH; i++) {
		tun_dns_client c = { .sock = fd };
		ssize_t n = recv_query(d, fd, &c);
		size_t out;

		if (n < 0)
			return;
		out = tun_dns_handle(d, &c, d->in, (size_t)n, d->out, sizeof(d->out));
		if (out)
			send_udp(NULL, &c, d->out, out);
	}
}

static const void *sa_ip(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET6)
		return &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	return &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
}

static unsigned sa_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
}

int tun_dns_listen(tun_dns *d, pilot_loop *l, const struct sockaddr *sa, socklen_t salen,
		   char *err, size_t errlen)
{
	int fd, one = 1, rc = 0;
	char host[INET6_ADDRSTRLEN] = "?";

	if (d->nsocks >= 2 || (d->loop && d->loop != l) || salen > sizeof(d->bound[0]) ||
	    (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) {
		snprintf(err, errlen, "DNS responder: at most two IPv4/IPv6 sockets on one loop");
		return -EINVAL;
	}
	inet_ntop(sa->sa_family, sa_ip(sa), host, sizeof(host));
	fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || (sa->sa_family == AF_INET6 &&
		       (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0 ||
			setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) < 0)) ||
	    (sa->sa_family == AF_INET && setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0) ||
	    bind(fd, sa, salen) < 0)
		rc = -errno;
	else
		rc = pilot_loop_add_fd(l, fd, PILOT_EV_READ, on_readable, d);
	if (rc < 0) {
		snprintf(err, errlen, "DNS responder: bind UDP %s port %u: %s", host, sa_port(sa), strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	d->loop = l;
	memset(&d->bound[d->nsocks], 0, sizeof(d->bound[0]));
	memcpy(&d->bound[d->nsocks], sa, salen);
	d->socks[d->nsocks++] = fd;
	return 0;
}

/* ---- life cycle --------------------------------------------------------------------------- */

void tun_dns_zone4(const tun_addrmap *m, char out[64])
{
	uint32_t s = tun_addrmap_subnet(m);
	int k = tun_addrmap_prefix_len(m) / 8;
	size_t n = 0;

	out[0] = '\0';
	for (int i = k - 1; i >= 0; i--)
		n += (size_t)snprintf(out + n, 64 - n, "%u.", (unsigned)(s >> (24 - 8 * i)) & 0xFF);
	snprintf(out + n, 64 - n, "in-addr.arpa");
}

void tun_dns_zone6(char out[64])
{
	size_t n = 0;

	for (int i = (int)sizeof(tun_ula_prefix) * 2 - 1; i >= 0; i--)
		n += (size_t)snprintf(out + n, 64 - n, "%x.",
				      (unsigned)(tun_ula_prefix[i / 2] >> (i % 2 ? 0 : 4)) & 0xF);
	snprintf(out + n, 64 - n, "ip6.arpa");
}

int tun_dns_new(const tun_dns_cfg *cfg, tun_dns **out)
{
	tun_dns *d;

	if (!cfg->map)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->map = cfg->map;
	d->resolve = cfg->resolve;
	d->resolve_srv = cfg->resolve_srv;
	d->ctx = cfg->ctx;
	d->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 3000;
	d->max_pending = cfg->max_pending ? cfg->max_pending : 256;
	d->send = send_udp;
	d->ifindex = cfg->ifindex;
	d->client_rate = cfg->client_rate ? cfg->client_rate : 2;
	d->client_burst = cfg->client_burst ? cfg->client_burst : 10;
	d->total_rate = cfg->total_rate ? cfg->total_rate : 10;
	d->neg_cache_ms = cfg->neg_cache_ms ? cfg->neg_cache_ms : 30000;
	if (getrandom(&d->seed, sizeof(d->seed), GRND_NONBLOCK) != (ssize_t)sizeof(d->seed))
		d->seed = pilot_now_us() ^ (uintptr_t)d;
	d->pend = calloc(d->max_pending, sizeof(*d->pend));
	if (!d->pend) {
		free(d);
		return -ENOMEM;
	}
	tun_dns_zone4(d->map, d->zone4);
	tun_dns_zone6(d->zone6);
	*out = d;
	return 0;
}

void tun_dns_set_sender(tun_dns *d, tun_dns_send_fn fn, void *ctx)
{
	d->send = fn ? fn : send_udp;
	d->send_ctx = ctx;
}

void tun_dns_free(tun_dns *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->nsocks; i++) {
		pilot_loop_del_fd(d->loop, d->socks[i]);
		close(d->socks[i]);
	}
	if (d->timer)
		pilot_loop_del_timer(d->loop, d->timer);
	free(d->pend);
	free(d);
}

/* ---- systemd-resolved ---------------------------------------------------------------------- */

static int find_in_path(const char *prog, char *out, size_t cap)
{
	const char *path = getenv("PATH");

	while (path && *path) {
		const char *colon = strchr(path, ':');
		size_t n = colon ? (size_t)(colon - path) : strlen(path);

		if (n && (size_t)snprintf(out, cap, "%.*s/%s", (int)n, path, prog) < cap && access(out, X_OK) == 0)
			return 0;
		path += n + (colon ? 1 : 0);
	}
	return -ENOENT;
}

static int run(const char *exe, char *const argv[], char *err, size_t errlen)
{
	pid_t pid;
	int status, rc = posix_spawn(&pid, exe, NULL, NULL, argv, environ);

	if (rc != 0) {
		snprintf(err, errlen, "cannot run %s: %s", exe, strerror(rc));
		return -rc;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			rc = -errno;
			snprintf(err, errlen, "waitpid %s: %s", exe, strerror(-rc));
			return rc;
		}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(err, errlen, "`resolvectl %s %s ...` failed (status %d)", argv[1], argv[2],
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return -EIO;
	}
	return 0;
}

/* "10.4.0.1", "fd50:...::1", or "ip:port" / "[ip]:port" off port 53. */
static void server_text(const struct sockaddr_storage *ss, char out[64])
{
	const struct sockaddr *sa = (const void *)ss;
	char host[INET6_ADDRSTRLEN];
	unsigned port = sa_port(sa);

	inet_ntop(sa->sa_family, sa_ip(sa), host, sizeof(host));
	if (port == TUN_DNS_PORT)
		snprintf(out, 64, "%s", host);
	else if (sa->sa_family == AF_INET6)
		snprintf(out, 64, "[%s]:%u", host, port);
	else
		snprintf(out, 64, "%s:%u", host, port);
}

int tun_dns_register_resolved(const tun_dns *d, const char *ifname, const char *rundir,
			      char *err, size_t errlen)
{
	char exe[512], srv[2][64], z4[66], z6[66];
	char *dns_argv[6] = { "resolvectl", "dns", (char *)ifname, NULL, NULL, NULL };
	char *dom_argv[] = { "resolvectl", "domain", (char *)ifname, "~pilot", z4, z6, NULL };
	struct stat st;
	int rc;

	if (stat(rundir ? rundir : "/run/systemd/resolve", &st) < 0 ||
	    find_in_path("resolvectl", exe, sizeof(exe)) < 0)
		return 0;
	if (d->nsocks == 0) {
		snprintf(err, errlen, "DNS responder is not listening yet");
		return -EINVAL;
	}
	for (size_t i = 0; i < d->nsocks; i++) {
		server_text(&d->bound[i], srv[i]);
		dns_argv[3 + i] = srv[i];
	}
	snprintf(z4, sizeof(z4), "~%s", d->zone4);
	snprintf(z6, sizeof(z6), "~%s", d->zone6);
	rc = run(exe, dns_argv, err, errlen);
	if (rc == 0)
		rc = run(exe, dom_argv, err, errlen);
	return rc < 0 ? rc : 1;
}
