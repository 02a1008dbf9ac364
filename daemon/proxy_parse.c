/* SOCKS5 / HTTP proxy decoders (see proxy_parse.h). */
#include "daemon/proxy_parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <strings.h>

/* ---- SOCKS5 ------------------------------------------------------------------------ */

int socks5_parse_greeting(const uint8_t *buf, size_t len, unsigned *offered)
{
	size_t n;

	*offered = 0;
	if (len < 2)
		return len && buf[0] != SOCKS5_VER ? -EPROTO : 0;
	if (buf[0] != SOCKS5_VER || buf[1] == 0)
		return -EPROTO;
	n = 2 + (size_t)buf[1];
	if (len < n)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (buf[i] == SOCKS5_AUTH_NONE)
			*offered |= 1u;
		else if (buf[i] == SOCKS5_AUTH_USERPASS)
			*offered |= 2u;
	}
	return (int)n;
}

int socks5_parse_userpass(const uint8_t *buf, size_t len, char user[256], char pass[256])
{
	size_t ul, pl;

	if (len < 2)
		return len && buf[0] != 1 ? -EPROTO : 0;
	if (buf[0] != 1)
		return -EPROTO;
	ul = buf[1];
	if (len < 2 + ul + 1)
		return 0;
	pl = buf[2 + ul];
	if (len < 3 + ul + pl)
		return 0;
	memcpy(user, buf + 2, ul);
	user[ul] = '\0';
	memcpy(pass, buf + 3 + ul, pl);
	pass[pl] = '\0';
	return (int)(3 + ul + pl);
}

/* ATYP DST.ADDR DST.PORT at buf: bytes used, 0 = incomplete, -EINVAL. */
static int parse_addr(const uint8_t *buf, size_t len, px_dest *d)
{
	size_t alen;

	if (len < 1)
		return 0;
	d->atyp = buf[0];
	if (d->atyp == SOCKS5_ATYP_IPV4)
		alen = 4;
	else if (d->atyp == SOCKS5_ATYP_IPV6)
		alen = 16;
	else if (d->atyp == SOCKS5_ATYP_DOMAIN)
		alen = len < 2 ? 1 : 1 + (size_t)buf[1];
	else
		return -EINVAL;
	if (len < 1 + alen + 2)
		return 0;
	memset(d->ip, 0, sizeof(d->ip));
	if (d->atyp == SOCKS5_ATYP_DOMAIN) {
		if (alen == 1 || memchr(buf + 2, 0, alen - 1))
			return -EINVAL;
		memcpy(d->host, buf + 2, alen - 1);
		d->host[alen - 1] = '\0';
	} else {
		memcpy(d->ip, buf + 1, alen);
		inet_ntop(alen == 4 ? AF_INET : AF_INET6, d->ip, d->host, sizeof(d->host));
	}
	d->port = (uint16_t)(buf[1 + alen] << 8 | buf[2 + alen]);
	return (int)(1 + alen + 2);
}

int socks5_parse_request(const uint8_t *buf, size_t len, uint8_t *cmd, px_dest *d)
{
	int r;

	if (len >= 1 && buf[0] != SOCKS5_VER)
		return -EPROTO;
	if (len >= 3 && buf[2] != 0)
		return -EPROTO;
	if (len < 4)
		return 0;
	*cmd = buf[1];
	r = parse_addr(buf + 3, len - 3, d);
	return r <= 0 ? r : r + 3;
}

size_t socks5_reply(uint8_t rep, uint32_t bnd_ip, uint16_t bnd_port, uint8_t out[10])
{
	out[0] = SOCKS5_VER;
	out[1] = rep;
	out[2] = 0;
	out[3] = SOCKS5_ATYP_IPV4;
	out[4] = (uint8_t)(bnd_ip >> 24);
	out[5] = (uint8_t)(bnd_ip >> 16);
	out[6] = (uint8_t)(bnd_ip >> 8);
	out[7] = (uint8_t)bnd_ip;
	out[8] = (uint8_t)(bnd_port >> 8);
	out[9] = (uint8_t)bnd_port;
	return 10;
}

int socks5_parse_udp(const uint8_t *buf, size_t len, uint8_t *frag, px_dest *d)
{
	int r;

	if (len < 4)
		return -EINVAL;
	if (buf[0] || buf[1])
		return -EPROTO;
	*frag = buf[2];
	r = parse_addr(buf + 3, len - 3, d);
	if (r == 0)
		return -EINVAL;
	return r < 0 ? r : r + 3;
}

size_t socks5_udp_header(uint32_t src_ip, uint16_t src_port, uint8_t out[10])
{
	socks5_reply(0, src_ip, src_port, out);
	out[0] = out[1] = out[2] = 0;
	return 10;
}

/* ---- HTTP ---------------------------------------------------------------------------- */

static const char *find_crlf(const char *p, const char *end)
{
	for (; p + 1 < end; p++)
		if (p[0] == '\r' && p[1] == '\n')
			return p;
	return NULL;
}

/* "host:port", "[v6]:port", "host" (port = def; 0 = port required); the host of
 * a Pilot address "0:0000.0000.0002:80" keeps its own colon (the last one splits). */
int px_parse_authority(const char *s, size_t n, uint16_t def, px_dest *d)
{
	const char *colon = NULL, *h = s;
	size_t hl = n;
	unsigned long port = def;

	if (n && s[0] == '[') {
		const char *rb = memchr(s, ']', n);
		if (!rb)
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(rb - h);
		if ((size_t)(rb + 1 - s) < n) {
			if (rb[1] != ':')
				return -EINVAL;
			colon = rb + 1;
		}
	} else {
		for (size_t i = n; i-- > 0;)
			if (s[i] == ':') {
				colon = s + i;
				break;
			}
		if (colon)
			hl = (size_t)(colon - s);
	}
	if (colon) {
		const char *p = colon + 1, *end = s + n;
		if (p == end || end - p > 5)
			return -EINVAL;
		port = 0;
		for (; p < end; p++) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			port = port * 10 + (unsigned long)(*p - '0');
		}
	}
	if (!hl || hl > PX_HOST_MAX || port == 0 || port > 65535 || memchr(h, 0, hl))
		return -EINVAL;
	memcpy(d->host, h, hl);
	d->host[hl] = '\0';
	d->port = (uint16_t)port;
	memset(d->ip, 0, sizeof(d->ip));
	if (inet_pton(AF_INET, d->host, d->ip) == 1)
		d->atyp = SOCKS5_ATYP_IPV4;
	else if (inet_pton(AF_INET6, d->host, d->ip) == 1)
		d->atyp = SOCKS5_ATYP_IPV6;
	else
		d->atyp = SOCKS5_ATYP_DOMAIN;
	return 0;
}

static int parse_target(const char *t, size_t n, px_http_req *r, const char *buf)
{
	const char *slash;
	size_t al;

	if (r->connect)
		return px_parse_authority(t, n, 0, &r->dest);
	if (n < 7 || strncasecmp(t, "http://", 7) != 0)
		return -EINVAL; /* https:// goes through CONNECT */
	t += 7;
	n -= 7;
	slash = memchr(t, '/', n);
	al = slash ? (size_t)(slash - t) : n;
	r->path_off = slash ? (size_t)(slash - buf) : 0;
	r->path_len = slash ? n - al : 0;
	return px_parse_authority(t, al, 80, &r->dest);
}

static int parse_request_line(const char *buf, const char *eol, px_http_req *r)
{
	const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf)), *sp2;

	if (!sp1 || sp1 == buf)
		return -EPROTO;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1 || eol - sp2 != 9 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return -EPROTO;
	for (const char *p = buf; p < sp1; p++)
		if (*p < 'A' || *p > 'Z')
			return -EPROTO;
	r->method_len = (size_t)(sp1 - buf);
	r->connect = r->method_len == 7 && !memcmp(buf, "CONNECT", 7);
	return parse_target(sp1 + 1, (size_t)(sp2 - sp1 - 1), r, buf);
}

static void header(const char *p, const char *eol, px_http_req *r)
{
	static const char name[] = "proxy-authorization:";
	size_t nl = sizeof(name) - 1;

	if ((size_t)(eol - p) < nl || strncasecmp(p, name, nl) != 0)
		return;
	p += nl;
	while (p < eol && (*p == ' ' || *p == '\t'))
		p++;
	r->proxy_auth = p;
	r->proxy_auth_len = (size_t)(eol - p);
}

int px_http_parse(const char *buf, size_t len, px_http_req *r)
{
	const char *end = buf + (len > PX_HTTP_HEAD_MAX ? PX_HTTP_HEAD_MAX : len), *p, *eol;
	int e;

	memset(r, 0, sizeof(*r));
	eol = find_crlf(buf, end);
	if (!eol)
		return len >= PX_HTTP_HEAD_MAX ? -EMSGSIZE : 0;
	if ((e = parse_request_line(buf, eol, r)) < 0)
		return e;
	r->line_end = (size_t)(eol - buf);
	for (p = eol + 2;; p = eol + 2) {
		if (!(eol = find_crlf(p, end)))
			return len >= PX_HTTP_HEAD_MAX ? -EMSGSIZE : 0;
		if (eol == p)
			break;
		header(p, eol, r);
	}
	r->head_len = (size_t)(eol + 2 - buf);
	return (int)r->head_len;
}

/* ---- targets ------------------------------------------------------------------------- */

static bool ends_with_pilot(const char *s, size_t *stem)
{
	size_t n = strlen(s);

	if (n && s[n - 1] == '.')
		n--; /* a fully qualified "name.pilot." */
	if (n > 6 && !strncasecmp(s + n - 6, ".pilot", 6)) {
		*stem = n - 6;
		return true;
	}
	*stem = n;
	return false;
}

/* "0-0000-0000-0002" (the DNS form of a Pilot address) -> 0 and *a */
static int dashed_addr(const char *s, size_t n, pilot_addr *a)
{
	char txt[32];

	if (n >= sizeof(txt))
		return -EINVAL;
	memcpy(txt, s, n);
	txt[n] = '\0';
	for (size_t i = 0, dashes = 0; i < n; i++)
		if (txt[i] == '-')
			txt[i] = dashes++ == 0 ? ':' : '.';
	return pilot_addr_parse(txt, n, a);
}

int px_target_parse(const px_dest *d, px_target *t)
{
	size_t stem, n = strlen(d->host);

	memset(t, 0, sizeof(*t));
	if (d->atyp == SOCKS5_ATYP_IPV4) {
		t->kind = PX_TARGET_IP4;
		t->ip4 = (uint32_t)d->ip[0] << 24 | (uint32_t)d->ip[1] << 16 | (uint32_t)d->ip[2] << 8 |
			d->ip[3];
		return 0;
	}
	if (d->atyp == SOCKS5_ATYP_IPV6) {
		t->kind = PX_TARGET_IP6;
		memcpy(t->ip6, d->ip, 16);
		return 0;
	}
	if (!n)
		return -EINVAL;
	if (inet_pton(AF_INET, d->host, &t->ip4) == 1) { /* curl --socks5-hostname 10.4.0.2 */
		t->kind = PX_TARGET_IP4;
		t->ip4 = ntohl(t->ip4);
		return 0;
	}
	if (inet_pton(AF_INET6, d->host, t->ip6) == 1) {
		t->kind = PX_TARGET_IP6;
		return 0;
	}
	if (pilot_addr_parse(d->host, n, &t->addr) == 0) {
		t->kind = PX_TARGET_ADDR;
		return 0;
	}
	ends_with_pilot(d->host, &stem);
	if (stem && stem <= 10 && strspn(d->host, "0123456789") == stem) { /* a node ID */
		unsigned long long id = strtoull(d->host, NULL, 10);
		if (!id || id >= 0xffffffffull)
			return -EINVAL;
		t->kind = PX_TARGET_ADDR;
		t->addr = pilot_addr_make(0, (uint32_t)id);
		return 0;
	}
	if (!stem || d->host[0] == '.' || d->host[0] == '-')
		return -EINVAL;
	if (dashed_addr(d->host, stem, &t->addr) == 0) {
		t->kind = PX_TARGET_ADDR;
		return 0;
	}
	for (size_t i = 0; i < stem; i++) {
		char c = d->host[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_'))
			return -EINVAL;
	}
	t->kind = PX_TARGET_NAME;
	memcpy(t->name, d->host, stem);
	t->name[stem] = '\0';
	return 0;
}

/* ---- absolute form -> origin form -------------------------------------------------------- */

static bool hop_header(const char *p, size_t n)
{
	static const char *const drop[] = { "connection:", "proxy-connection:", "keep-alive:",
					    "proxy-authorization:" };

	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
		size_t dl = strlen(drop[i]);
		if (n >= dl && !strncasecmp(p, drop[i], dl))
			return true;
	}
	return false;
}

static bool put(char *out, size_t cap, size_t *at, const char *p, size_t n)
{
	if (cap - *at < n)
		return false;
	memcpy(out + *at, p, n);
	*at += n;
	return true;
}

size_t px_http_origin_form(const char *buf, size_t len, const px_http_req *r, char *out, size_t cap)
{
	const char *end = buf + r->head_len - 2, *p, *eol;
	size_t at = 0;

	if (r->connect || r->head_len > len || r->line_end < 8)
		return 0;
	if (!put(out, cap, &at, buf, r->method_len + 1) ||
	    !put(out, cap, &at, r->path_len ? buf + r->path_off : "/", r->path_len ? r->path_len : 1) ||
	    !put(out, cap, &at, buf + r->line_end - 9, 11)) /* " HTTP/1.x\r\n" */
		return 0;
	for (p = buf + r->line_end + 2; p < end; p = eol + 2) {
		eol = find_crlf(p, end + 2);
		if (!eol)
			return 0;
		if (!hop_header(p, (size_t)(eol - p)) && !put(out, cap, &at, p, (size_t)(eol + 2 - p)))
			return 0;
	}
	if (!put(out, cap, &at, "Connection: close\r\n\r\n", 21) ||
	    !put(out, cap, &at, buf + r->head_len, len - r->head_len))
		return 0;
	return at;
}
