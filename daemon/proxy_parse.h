/* Wire decoders of the userspace front ends (daemon/proxy.c): SOCKS5 (RFC 1928,
 * RFC 1929 username/password), the HTTP proxy request head (CONNECT and
 * absolute-form requests) and the target forms a Pilot proxy accepts. Pure
 * (buf, len) functions: every length is checked before use; they never read past
 * len and never allocate. Return convention: > 0 = bytes consumed (a complete
 * message), 0 = incomplete (read more), < 0 = -EPROTO / -EINVAL / -EMSGSIZE
 * (refuse the client). */
#ifndef PILOT_PROXY_PARSE_H
#define PILOT_PROXY_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"

#define PX_HOST_MAX      255  /* SOCKS5 domain length byte; HTTP host likewise */
#define PX_HTTP_HEAD_MAX 8192 /* request head incl. the blank line */

/* SOCKS5 method and command codes (RFC 1928 §3, §4) */
#define SOCKS5_VER                5
#define SOCKS5_AUTH_NONE          0x00
#define SOCKS5_AUTH_USERPASS      0x02
#define SOCKS5_AUTH_NO_ACCEPTABLE 0xff
#define SOCKS5_CMD_CONNECT        0x01
#define SOCKS5_CMD_BIND           0x02
#define SOCKS5_CMD_UDP_ASSOCIATE  0x03
#define SOCKS5_ATYP_IPV4          0x01
#define SOCKS5_ATYP_DOMAIN        0x03
#define SOCKS5_ATYP_IPV6          0x04
/* reply codes (§6) */
#define SOCKS5_REP_OK               0x00
#define SOCKS5_REP_FAILURE          0x01
#define SOCKS5_REP_NOT_ALLOWED      0x02
#define SOCKS5_REP_NET_UNREACH      0x03
#define SOCKS5_REP_HOST_UNREACH     0x04
#define SOCKS5_REP_REFUSED          0x05
#define SOCKS5_REP_TTL_EXPIRED      0x06
#define SOCKS5_REP_CMD_UNSUPPORTED  0x07
#define SOCKS5_REP_ATYP_UNSUPPORTED 0x08

/* A destination as the client wrote it: a host text (domain, dotted IPv4, or
 * the text of an IPv6 address) and a port. */
typedef struct px_dest {
	uint8_t atyp; /* SOCKS5_ATYP_* (HTTP: DOMAIN or IPV4/IPV6 by form) */
	char host[PX_HOST_MAX + 1];
	uint8_t ip[16]; /* ATYP IPV4 (4 bytes) / IPV6 */
	uint16_t port;
} px_dest;

/* Greeting: VER NMETHODS METHODS. *offered gets bit 0 (no auth) and bit 1
 * (username/password) for the methods offered. */
int socks5_parse_greeting(const uint8_t *buf, size_t len, unsigned *offered);
/* RFC 1929: VER(1) ULEN UNAME PLEN PASSWD; user and pass are NUL-terminated. */
int socks5_parse_userpass(const uint8_t *buf, size_t len, char user[256], char pass[256]);
/* Request: VER CMD RSV ATYP DST.ADDR DST.PORT. -EPROTO for a bad version or
 * reserved byte, -EINVAL for an unknown address type (reply 0x08). */
int socks5_parse_request(const uint8_t *buf, size_t len, uint8_t *cmd, px_dest *d);
/* Reply VER REP RSV ATYP(IPv4) BND.ADDR BND.PORT into out (10 bytes). */
size_t socks5_reply(uint8_t rep, uint32_t bnd_ip, uint16_t bnd_port, uint8_t out[10]);
/* UDP request header (§7): RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA. Returns the
 * header length (data follows), -EPROTO (reserved bytes), -EINVAL. A datagram
 * without its whole header is -EINVAL (UDP has no "read more"). */
int socks5_parse_udp(const uint8_t *buf, size_t len, uint8_t *frag, px_dest *d);
/* The UDP header for a reply from an IPv4 source (10 bytes). */
size_t socks5_udp_header(uint32_t src_ip, uint16_t src_port, uint8_t out[10]);

/* HTTP proxy request head (up to the blank line, at most PX_HTTP_HEAD_MAX):
 *   CONNECT host:port HTTP/1.x               -> connect = true
 *   METHOD http://host[:port]/path HTTP/1.x  -> connect = false, port 80 by default,
 *     path_off/path_len point at the origin-form path in buf ("/" when empty:
 *     path_len 0), line_end at the end of the request line (its CRLF).
 * proxy_auth points at the Proxy-Authorization value (not terminated), or NULL. */
typedef struct px_http_req {
	bool connect;
	px_dest dest;
	size_t method_len;
	size_t path_off, path_len;
	size_t line_end; /* offset of the CRLF ending the request line */
	size_t head_len; /* bytes up to and including the blank line */
	const char *proxy_auth;
	size_t proxy_auth_len;
} px_http_req;

/* "host:port", "[v6]:port", or "host" with port def (0 = a port is required).
 * A Pilot address keeps its colon: "0:0000.0000.0002:80". 0 or -EINVAL. */
int px_parse_authority(const char *s, size_t n, uint16_t def, px_dest *d);

int px_http_parse(const char *buf, size_t len, px_http_req *r);

/* The absolute-form request r (parsed from buf) in origin form for the server:
 * "METHOD /path HTTP/1.x", the headers without the hop-by-hop and proxy ones
 * (Connection, Proxy-Connection, Keep-Alive, Proxy-Authorization), then
 * "Connection: close" (one request per proxied connection: a client reusing it
 * for another host must not reach this one), then the bytes after the head.
 * Returns the length, 0 if it does not fit in cap or r is a CONNECT. */
size_t px_http_origin_form(const char *buf, size_t len, const px_http_req *r, char *out, size_t cap);

/* What a destination names. */
enum px_target_kind {
	PX_TARGET_ADDR, /* a Pilot address: "0:0000.0000.0002" or "0-0000-0000-0002.pilot" */
	PX_TARGET_IP4,  /* dotted IPv4 (a mapped 10.4.x.y, looked up in the address map) */
	PX_TARGET_IP6,  /* an IPv6 address (the Pilot ULA embeds the address) */
	PX_TARGET_NAME, /* a hostname for the registry ("name" or "name.pilot", suffix cut) */
};

typedef struct px_target {
	enum px_target_kind kind;
	pilot_addr addr;
	uint32_t ip4; /* host order */
	uint8_t ip6[16];
	char name[PX_HOST_MAX + 1];
} px_target;

/* 0 or -EINVAL (empty, or not a hostname: characters outside [A-Za-z0-9.-_]). */
int px_target_parse(const px_dest *d, px_target *t);

#endif
