/* IP/TCP/UDP/ICMP parsing, building and checksums for TUN packets (see ip.h). */
#include "tun/ip.h"

#include <arpa/inet.h>
#include <string.h>

#include "lib/proto.h"

static const char *const err_names[TUN_IP_NERR + 1] = {
	"ok", "short", "version", "hdrlen", "totlen", "csum", "frag", "opt", "exthdr",
	"proto", "nospace", "inval",
};

const char *tun_ip_strerror(int code)
{
	if (code > 0 || code < -TUN_IP_NERR)
		return "unknown";
	return err_names[-code];
}

void tun_ipaddr_v4(tun_ipaddr *a, uint32_t host_order)
{
	memset(a, 0, sizeof(*a));
	a->family = 4;
	proto_put32(a->b, host_order);
}

void tun_ipaddr_v6(tun_ipaddr *a, const uint8_t b[16])
{
	a->family = 6;
	memcpy(a->b, b, 16);
}

bool tun_ipaddr_eq(const tun_ipaddr *x, const tun_ipaddr *y)
{
	return x->family == y->family && memcmp(x->b, y->b, x->family == 6 ? 16 : 4) == 0;
}

uint32_t tun_ipaddr_v4_host(const tun_ipaddr *a)
{
	return proto_get32(a->b);
}

/* ---- checksums ---- */

/* Sums 32-bit words in native order into 64 bits (RFC 1071 §2(B): byte-order
 * independence, so the folded result is the checksum in memory order). */
uint64_t tun_csum_add(uint64_t acc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len >= 32) {
		uint32_t w[8];

		memcpy(w, p, 32);
		acc += (uint64_t)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
		p += 32;
		len -= 32;
	}
	while (len >= 4) {
		uint32_t w;

		memcpy(&w, p, 4);
		acc += w;
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		uint16_t h;

		memcpy(&h, p, 2);
		acc += h;
		p += 2;
		len -= 2;
	}
	if (len) {
		uint8_t t[2] = { p[0], 0 };
		uint16_t h;

		memcpy(&h, t, 2);
		acc += h;
	}
	return acc;
}

static uint16_t fold16(uint64_t acc)
{
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)acc;
}

uint16_t tun_csum_fold(uint64_t acc)
{
	return ntohs((uint16_t)~fold16(acc));
}

uint16_t tun_csum(const void *buf, size_t len)
{
	return tun_csum_fold(tun_csum_add(0, buf, len));
}

uint64_t tun_csum_pseudo(const tun_ipaddr *src, const tun_ipaddr *dst, uint8_t proto,
			 uint32_t l4_len)
{
	uint8_t tail[8] = { 0 };
	uint64_t acc;

	if (src->family == 6) {
		acc = tun_csum_add(0, src->b, 16);
		acc = tun_csum_add(acc, dst->b, 16);
		proto_put32(tail, l4_len);
		tail[7] = proto;
		return tun_csum_add(acc, tail, 8);
	}
	acc = tun_csum_add(0, src->b, 4);
	acc = tun_csum_add(acc, dst->b, 4);
	tail[1] = proto;
	proto_put16(tail + 2, (uint16_t)l4_len);
	return tun_csum_add(acc, tail, 4);
}

bool tun_l4_csum_ok(const tun_ip *ip)
{
	uint64_t acc = 0;

	if (ip->proto == TUN_IPPROTO_UDP && ip->version == 4 && ip->l4_len >= TUN_UDP_HDR &&
	    proto_get16(ip->l4 + 6) == 0)
		return true;
	if (ip->proto != TUN_IPPROTO_ICMP)
		acc = tun_csum_pseudo(&ip->src, &ip->dst, ip->proto, (uint32_t)ip->l4_len);
	return tun_csum_fold(tun_csum_add(acc, ip->l4, ip->l4_len)) == 0;
}

uint16_t tun_csum_update16(uint16_t csum, uint16_t old_v, uint16_t new_v)
{
	uint32_t s = (uint32_t)(uint16_t)~csum + (uint16_t)~old_v + new_v;

	return (uint16_t)~fold16(s);
}

uint16_t tun_csum_update32(uint16_t csum, uint32_t old_v, uint32_t new_v)
{
	csum = tun_csum_update16(csum, (uint16_t)(old_v >> 16), (uint16_t)(new_v >> 16));
	return tun_csum_update16(csum, (uint16_t)old_v, (uint16_t)new_v);
}

/* ---- IP parsing ---- */

/* IPv4 and TCP share the option layout: EOL, NOP, then kind/length/value. */
static int walk_opts(const uint8_t *o, size_t n, void (*each)(const uint8_t *opt, void *arg),
		     void *arg)
{
	size_t i = 0;

	while (i < n) {
		uint8_t kind = o[i], ol;

		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (n - i < 2)
			return TUN_IP_EOPT;
		ol = o[i + 1];
		if (ol < 2 || ol > n - i)
			return TUN_IP_EOPT;
		if (each)
			each(o + i, arg);
		i += ol;
	}
	return 0;
}

static int ip4_parse(const uint8_t *buf, size_t len, tun_ip *ip)
{
	size_t ihl, tot;
	uint16_t frag;
	int ret;

	if (len < TUN_IP4_HDR)
		return TUN_IP_ESHORT;
	ihl = (size_t)(buf[0] & 0x0f) * 4;
	if (ihl < TUN_IP4_HDR)
		return TUN_IP_EHDRLEN;
	if (len < ihl)
		return TUN_IP_ESHORT;
	tot = proto_get16(buf + 2);
	if (tot < ihl)
		return TUN_IP_ETOTLEN;
	if (tot > len)
		return TUN_IP_ESHORT;
	if (tun_csum(buf, ihl) != 0)
		return TUN_IP_ECSUM;
	frag = proto_get16(buf + 6);
	if (frag & 0x3fff) /* MF or a fragment offset */
		return TUN_IP_EFRAG;
	ret = walk_opts(buf + TUN_IP4_HDR, ihl - TUN_IP4_HDR, NULL, NULL);
	if (ret < 0)
		return ret;
	memset(ip, 0, sizeof(*ip));
	ip->version = 4;
	ip->tos = buf[1];
	ip->id = proto_get16(buf + 4);
	ip->ttl = buf[8];
	ip->proto = buf[9];
	ip->hdr_len = (uint16_t)ihl;
	ip->pkt_len = (uint32_t)tot;
	ip->src.family = ip->dst.family = 4;
	memcpy(ip->src.b, buf + 12, 4);
	memcpy(ip->dst.b, buf + 16, 4);
	ip->l4 = buf + ihl;
	ip->l4_len = tot - ihl;
	return 0;
}

/* Skips IPv6 extension headers from *off (bounded by end); sets *nh to the L4 proto. */
static int ip6_skip_ext(const uint8_t *buf, size_t end, size_t *off, uint8_t *nh)
{
	for (int i = 0; i <= TUN_IP6_MAX_EXT; i++) {
		size_t hl;

		switch (*nh) {
		case 0:  /* hop-by-hop: only right after the fixed header */
			if (i != 0)
				return TUN_IP_EEXTHDR;
			/* fall through */
		case 43: /* routing */
		case 60: /* destination options */
			if (end - *off < 8)
				return TUN_IP_ESHORT;
			hl = ((size_t)buf[*off + 1] + 1) * 8;
			break;
		case 51: /* AH */
			if (end - *off < 8)
				return TUN_IP_ESHORT;
			hl = ((size_t)buf[*off + 1] + 2) * 4;
			break;
		case 44:
			return TUN_IP_EFRAG;
		case 50: /* ESP: nothing we can look into */
			return TUN_IP_EEXTHDR;
		default:
			return 0;
		}
		if (hl > end - *off)
			return TUN_IP_ESHORT;
		*nh = buf[*off];
		*off += hl;
	}
	return TUN_IP_EEXTHDR;
}

static int ip6_parse(const uint8_t *buf, size_t len, tun_ip *ip)
{
	size_t plen, off = TUN_IP6_HDR;
	uint8_t nh;
	int ret;

	if (len < TUN_IP6_HDR)
		return TUN_IP_ESHORT;
	plen = proto_get16(buf + 4);
	nh = buf[6];
	if (plen == 0 && nh != 59) /* a jumbogram (RFC 2675) */
		return TUN_IP_EEXTHDR;
	if (TUN_IP6_HDR + plen > len)
		return TUN_IP_ESHORT;
	ret = ip6_skip_ext(buf, TUN_IP6_HDR + plen, &off, &nh);
	if (ret < 0)
		return ret;
	memset(ip, 0, sizeof(*ip));
	ip->version = 6;
	ip->tos = (uint8_t)(proto_get16(buf) >> 4);
	ip->flow_label = proto_get32(buf) & 0xfffff;
	ip->ttl = buf[7];
	ip->proto = nh;
	ip->hdr_len = (uint16_t)off;
	ip->pkt_len = (uint32_t)(TUN_IP6_HDR + plen);
	tun_ipaddr_v6(&ip->src, buf + 8);
	tun_ipaddr_v6(&ip->dst, buf + 24);
	ip->l4 = buf + off;
	ip->l4_len = TUN_IP6_HDR + plen - off;
	return 0;
}

int tun_ip_parse(const uint8_t *buf, size_t len, tun_ip *ip)
{
	if (len < 1)
		return TUN_IP_ESHORT;
	switch (buf[0] >> 4) {
	case 4:
		return ip4_parse(buf, len, ip);
	case 6:
		return ip6_parse(buf, len, ip);
	default:
		return TUN_IP_EVERSION;
	}
}

/* ---- L4 parsing ---- */

/* Known kinds with a wrong length are ignored, as Linux does (tcp_parse_options). */
static void tcp_opt(const uint8_t *o, void *arg)
{
	tun_tcp *t = arg;

	switch (o[0]) {
	case 2:
		if (o[1] == 4) {
			t->has_mss = true;
			t->mss = proto_get16(o + 2);
		}
		break;
	case 3:
		if (o[1] == 3) {
			t->has_wscale = true;
			t->wscale = o[2];
		}
		break;
	case 4:
		if (o[1] == 2)
			t->sack_ok = true;
		break;
	case 8:
		if (o[1] == 10) {
			t->has_ts = true;
			t->ts_val = proto_get32(o + 2);
			t->ts_ecr = proto_get32(o + 6);
		}
		break;
	}
}

int tun_tcp_parse(const uint8_t *l4, size_t len, tun_tcp *t)
{
	size_t doff;
	int ret;

	if (len < TUN_TCP_HDR)
		return TUN_IP_ESHORT;
	doff = (size_t)(l4[12] >> 4) * 4;
	if (doff < TUN_TCP_HDR)
		return TUN_IP_EHDRLEN;
	if (doff > len)
		return TUN_IP_ESHORT;
	memset(t, 0, sizeof(*t));
	ret = walk_opts(l4 + TUN_TCP_HDR, doff - TUN_TCP_HDR, tcp_opt, t);
	if (ret < 0)
		return ret;
	t->sport = proto_get16(l4);
	t->dport = proto_get16(l4 + 2);
	t->seq = proto_get32(l4 + 4);
	t->ack = proto_get32(l4 + 8);
	t->flags = l4[13];
	t->window = proto_get16(l4 + 14);
	t->csum = proto_get16(l4 + 16);
	t->urg = proto_get16(l4 + 18);
	t->hdr_len = (uint16_t)doff;
	t->payload = l4 + doff;
	t->payload_len = len - doff;
	return 0;
}

int tun_udp_parse(const uint8_t *l4, size_t len, tun_udp *u)
{
	uint16_t ulen;

	if (len < TUN_UDP_HDR)
		return TUN_IP_ESHORT;
	ulen = proto_get16(l4 + 4);
	if (ulen < TUN_UDP_HDR)
		return TUN_IP_EHDRLEN;
	if (ulen > len)
		return TUN_IP_ESHORT;
	u->sport = proto_get16(l4);
	u->dport = proto_get16(l4 + 2);
	u->len = ulen;
	u->csum = proto_get16(l4 + 6);
	u->payload = l4 + TUN_UDP_HDR;
	u->payload_len = (size_t)ulen - TUN_UDP_HDR;
	return 0;
}

static bool is_echo(uint8_t type, bool v6)
{
	if (v6)
		return type == TUN_ICMP6_ECHO_REQUEST || type == TUN_ICMP6_ECHO_REPLY;
	return type == TUN_ICMP4_ECHO_REQUEST || type == TUN_ICMP4_ECHO_REPLY;
}

int tun_icmp_parse(const uint8_t *l4, size_t len, bool v6, tun_icmp *m)
{
	if (len < TUN_ICMP_HDR)
		return TUN_IP_ESHORT;
	memset(m, 0, sizeof(*m));
	m->type = l4[0];
	m->code = l4[1];
	m->csum = proto_get16(l4 + 2);
	if (is_echo(m->type, v6)) {
		m->id = proto_get16(l4 + 4);
		m->seq = proto_get16(l4 + 6);
	}
	m->data = l4 + TUN_ICMP_HDR;
	m->data_len = len - TUN_ICMP_HDR;
	return 0;
}

/* ---- builders ---- */

int tun_ip_build_hdr(const tun_ip_build *b, uint8_t proto, size_t l4_len,
		     uint8_t *out, size_t outcap)
{
	uint8_t ttl = b->ttl ? b->ttl : 64;

	if (b->src.family != b->dst.family || (b->src.family != 4 && b->src.family != 6))
		return TUN_IP_EINVAL;
	if (b->src.family == 6) {
		if (outcap < TUN_IP6_HDR || l4_len > TUN_IP_MAX_PACKET)
			return TUN_IP_ENOSPACE;
		proto_put32(out, 6u << 28 | (uint32_t)b->tos << 20);
		proto_put16(out + 4, (uint16_t)l4_len);
		out[6] = proto;
		out[7] = ttl;
		memcpy(out + 8, b->src.b, 16);
		memcpy(out + 24, b->dst.b, 16);
		return TUN_IP6_HDR;
	}
	if (outcap < TUN_IP4_HDR || l4_len > TUN_IP_MAX_PACKET - TUN_IP4_HDR)
		return TUN_IP_ENOSPACE;
	out[0] = 0x45;
	out[1] = b->tos;
	proto_put16(out + 2, (uint16_t)(TUN_IP4_HDR + l4_len));
	proto_put16(out + 4, b->id);
	proto_put16(out + 6, 0x4000); /* DF */
	out[8] = ttl;
	out[9] = proto;
	proto_put16(out + 10, 0);
	memcpy(out + 12, b->src.b, 4);
	memcpy(out + 16, b->dst.b, 4);
	proto_put16(out + 10, tun_csum(out, TUN_IP4_HDR));
	return TUN_IP4_HDR;
}

/* Checks room for IP header + l4_len and places the payload at out + off. */
static int place(const tun_ip_build *ib, size_t l4_hdr, const void *payload, size_t plen,
		 uint8_t *out, size_t outcap)
{
	size_t iph, l4_len = l4_hdr + plen;

	if (ib->src.family != ib->dst.family || (ib->src.family != 4 && ib->src.family != 6))
		return TUN_IP_EINVAL;
	iph = tun_ip_hdr_size(&ib->src);
	if (plen > TUN_IP_MAX_PACKET || l4_len > outcap || iph > outcap - l4_len)
		return TUN_IP_ENOSPACE;
	if (l4_len > TUN_IP_MAX_PACKET - (ib->src.family == 4 ? TUN_IP4_HDR : 0))
		return TUN_IP_ENOSPACE;
	if (plen && payload && payload != out + iph + l4_hdr)
		memmove(out + iph + l4_hdr, payload, plen);
	return (int)iph;
}

/* Writes the L4 checksum at l4 + at, then the IP header. */
static int finish(const tun_ip_build *ib, uint8_t proto, uint8_t *out, size_t iph,
		  size_t l4_len, size_t at, bool udp)
{
	uint8_t *l4 = out + iph;
	uint64_t acc = 0;
	uint16_t c;

	if (proto != TUN_IPPROTO_ICMP)
		acc = tun_csum_pseudo(&ib->src, &ib->dst, proto, (uint32_t)l4_len);
	if (ib->csum_partial && (proto == TUN_IPPROTO_TCP || proto == TUN_IPPROTO_UDP))
		c = (uint16_t)~tun_csum_fold(acc); /* the kernel adds the rest (CHECKSUM_PARTIAL) */
	else
		c = tun_csum_fold(tun_csum_add(acc, l4, l4_len));
	if (udp && c == 0 && !ib->csum_partial)
		c = 0xffff;
	proto_put16(l4 + at, c);
	return tun_ip_build_hdr(ib, proto, l4_len, out, iph) < 0 ? TUN_IP_EINVAL
								 : (int)(iph + l4_len);
}

size_t tun_tcp_hdr_size(const tun_tcp_build *tb)
{
	return TUN_TCP_HDR + (tb->mss ? 4 : 0) + (tb->wscale >= 0 ? 4 : 0) + (tb->sack_ok ? 4 : 0);
}

static void tcp_write_hdr(const tun_tcp_build *tb, uint8_t *th, size_t hl)
{
	uint8_t *o = th + TUN_TCP_HDR;

	proto_put16(th, tb->sport);
	proto_put16(th + 2, tb->dport);
	proto_put32(th + 4, tb->seq);
	proto_put32(th + 8, tb->ack);
	th[12] = (uint8_t)(hl / 4 << 4);
	th[13] = tb->flags;
	proto_put16(th + 14, tb->window);
	proto_put32(th + 16, 0); /* checksum, urgent pointer */
	if (tb->mss) {
		o[0] = 2, o[1] = 4;
		proto_put16(o + 2, tb->mss);
		o += 4;
	}
	if (tb->wscale >= 0) {
		o[0] = 1, o[1] = 3, o[2] = 3, o[3] = (uint8_t)tb->wscale;
		o += 4;
	}
	if (tb->sack_ok)
		o[0] = 1, o[1] = 1, o[2] = 4, o[3] = 2;
}

int tun_tcp_build_pkt(const tun_ip_build *ib, const tun_tcp_build *tb, const void *payload,
		      size_t plen, uint8_t *out, size_t outcap)
{
	size_t hl = tun_tcp_hdr_size(tb);
	int iph;

	if (tb->wscale > 14)
		return TUN_IP_EINVAL;
	iph = place(ib, hl, payload, plen, out, outcap);
	if (iph < 0)
		return iph;
	tcp_write_hdr(tb, out + iph, hl);
	return finish(ib, TUN_IPPROTO_TCP, out, (size_t)iph, hl + plen, 16, false);
}

int tun_udp_build_pkt(const tun_ip_build *ib, uint16_t sport, uint16_t dport, const void *payload,
		      size_t plen, uint8_t *out, size_t outcap)
{
	int iph = place(ib, TUN_UDP_HDR, payload, plen, out, outcap);
	uint8_t *u;

	if (iph < 0)
		return iph;
	if (plen > 0xffff - TUN_UDP_HDR)
		return TUN_IP_ENOSPACE;
	u = out + iph;
	proto_put16(u, sport);
	proto_put16(u + 2, dport);
	proto_put16(u + 4, (uint16_t)(TUN_UDP_HDR + plen));
	proto_put16(u + 6, 0);
	return finish(ib, TUN_IPPROTO_UDP, out, (size_t)iph, TUN_UDP_HDR + plen, 6, true);
}

static uint8_t icmp_proto(const tun_ip_build *ib)
{
	return ib->src.family == 6 ? TUN_IPPROTO_ICMPV6 : TUN_IPPROTO_ICMP;
}

int tun_icmp_build_echo(const tun_ip_build *ib, uint8_t type, uint16_t id, uint16_t seq,
			const void *payload, size_t plen, uint8_t *out, size_t outcap)
{
	int iph;
	uint8_t *m;

	if (!is_echo(type, ib->src.family == 6))
		return TUN_IP_EINVAL;
	iph = place(ib, TUN_ICMP_HDR, payload, plen, out, outcap);
	if (iph < 0)
		return iph;
	m = out + iph;
	m[0] = type;
	m[1] = 0;
	proto_put16(m + 2, 0);
	proto_put16(m + 4, id);
	proto_put16(m + 6, seq);
	return finish(ib, icmp_proto(ib), out, (size_t)iph, TUN_ICMP_HDR + plen, 2, false);
}

int tun_icmp_build_unreach(const tun_ip_build *ib, uint8_t code, const uint8_t *orig,
			   size_t orig_len, uint8_t *out, size_t outcap)
{
	bool v6 = ib->src.family == 6;
	size_t iph = v6 ? TUN_IP6_HDR : TUN_IP4_HDR;
	size_t q = orig_len, max = v6 ? 1280 - TUN_IP6_HDR - TUN_ICMP_HDR : 576 - TUN_IP4_HDR - TUN_ICMP_HDR;
	int ret;
	uint8_t *m;

	if (q > max)
		q = max;
	if (outcap >= iph + TUN_ICMP_HDR && q > outcap - iph - TUN_ICMP_HDR)
		q = outcap - iph - TUN_ICMP_HDR;
	ret = place(ib, TUN_ICMP_HDR, orig, q, out, outcap);
	if (ret < 0)
		return ret;
	m = out + iph;
	m[0] = v6 ? TUN_ICMP6_UNREACH : TUN_ICMP4_UNREACH;
	m[1] = code;
	proto_put16(m + 2, 0);
	proto_put32(m + 4, 0); /* unused */
	return finish(ib, icmp_proto(ib), out, iph, TUN_ICMP_HDR + q, 2, false);
}
