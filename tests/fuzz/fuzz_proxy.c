/* libFuzzer target for the userspace front ends' decoders (daemon/proxy_parse.c):
 * the SOCKS5 greeting, RFC 1929 sub-negotiation, request and UDP header, the
 * HTTP proxy request head, and the target forms, on arbitrary bytes and on every
 * prefix of them (a client's request arrives in pieces). Invariants: a complete
 * message never claims more bytes than it was given; a prefix of a complete
 * message is "incomplete" or an error, never a different complete message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/proxy_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                             \
	do {                                                                                                 \
		if (!(x)) {                                                                                  \
			fprintf(stderr, "CHECK failed: %s (%s:%d)\n", #x, __FILE__, __LINE__);               \
			abort();                                                                             \
		}                                                                                            \
	} while (0)

static void target(const px_dest *d)
{
	px_target t;

	if (px_target_parse(d, &t) == 0 && t.kind == PX_TARGET_NAME)
		CHECK(strlen(t.name) > 0 && strlen(t.name) <= PX_HOST_MAX);
}

static void socks(const uint8_t *d, size_t n)
{
	char user[256], pass[256];
	unsigned offered;
	uint8_t cmd, frag;
	px_dest dest;
	int r;

	r = socks5_parse_greeting(d, n, &offered);
	CHECK(r <= (int)n);
	r = socks5_parse_userpass(d, n, user, pass);
	CHECK(r <= (int)n);
	r = socks5_parse_request(d, n, &cmd, &dest);
	CHECK(r <= (int)n);
	if (r > 0) {
		CHECK(strlen(dest.host) <= PX_HOST_MAX);
		target(&dest);
		for (size_t k = 0; k < (size_t)r; k++) /* every prefix: incomplete */
			CHECK(socks5_parse_request(d, k, &cmd, &dest) == 0);
	}
	r = socks5_parse_udp(d, n, &frag, &dest);
	CHECK(r <= (int)n);
	if (r > 0)
		target(&dest);
}

static void http(const uint8_t *d, size_t n)
{
	char *buf = malloc(n ? n : 1);
	px_http_req req;
	int r;

	if (!buf)
		return;
	memcpy(buf, d, n); /* exact size: ASan sees any over-read */
	r = px_http_parse(buf, n, &req);
	CHECK(r <= (int)n && r <= PX_HTTP_HEAD_MAX);
	if (r > 0) {
		CHECK(req.head_len == (size_t)r && req.line_end < req.head_len);
		CHECK(req.line_end >= 8);
		CHECK(req.dest.port != 0);
		if (!req.connect && req.path_len)
			CHECK(req.path_off + req.path_len <= req.line_end);
		if (req.proxy_auth)
			CHECK(req.proxy_auth >= buf && req.proxy_auth + req.proxy_auth_len <= buf + n);
		target(&req.dest);
		if (!req.connect) {
			static char out[16384 + 64];
			size_t m = px_http_origin_form(buf, n, &req, out, sizeof(out));
			CHECK(m <= sizeof(out));
			CHECK(m == 0 || (m >= 20 && !memcmp(out, buf, req.method_len)));
		}
		CHECK(px_http_parse(buf, (size_t)r - 1, &req) <= 0);
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	socks(data, size);
	http(data, size);
	return 0;
}
