/* Unit tests for daemon/proxy_parse.c: the SOCKS5 and HTTP proxy decoders and
 * the target forms of the userspace front ends. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "daemon/proxy_parse.h"

static void test_greeting(void **state)
{
	unsigned off;

	(void)state;
	assert_int_equal(socks5_parse_greeting((const uint8_t *)"\x05", 1, &off), 0);
	assert_int_equal(socks5_parse_greeting((const uint8_t *)"\x05\x02\x00", 3, &off), 0);
	assert_int_equal(socks5_parse_greeting((const uint8_t *)"\x05\x02\x00\x02", 4, &off), 4);
	assert_int_equal(off, 3u);
	assert_int_equal(socks5_parse_greeting((const uint8_t *)"\x04\x01\x00", 3, &off), -EPROTO);
	assert_int_equal(socks5_parse_greeting((const uint8_t *)"\x05\x00", 2, &off), -EPROTO);
	assert_int_equal(socks5_parse_greeting((const uint8_t *)"\x05\x01\x01", 3, &off), 3);
	assert_int_equal(off, 0u);
}

static void test_userpass(void **state)
{
	char u[256], p[256];

	(void)state;
	assert_int_equal(socks5_parse_userpass((const uint8_t *)"\x01\x03"
								"bob\x02"
								"pw",
					       8, u, p),
			 8);
	assert_string_equal(u, "bob");
	assert_string_equal(p, "pw");
	assert_int_equal(socks5_parse_userpass((const uint8_t *)"\x01\x03"
								"bob\x02"
								"p",
					       7, u, p),
			 0);
	assert_int_equal(socks5_parse_userpass((const uint8_t *)"\x02\x00\x00", 3, u, p), -EPROTO);
}

static void test_request(void **state)
{
	static const uint8_t dom[] = "\x05\x01\x00\x03\x0b"
				     "alpha.pilot\x00\x50";
	static const uint8_t ip4[] = { 5, 1, 0, 1, 10, 4, 0, 2, 0x1f, 0x90 };
	uint8_t cmd;
	px_dest d;

	(void)state;
	assert_int_equal(socks5_parse_request(dom, sizeof(dom) - 1, &cmd, &d), (int)sizeof(dom) - 1);
	assert_int_equal(cmd, SOCKS5_CMD_CONNECT);
	assert_string_equal(d.host, "alpha.pilot");
	assert_int_equal(d.port, 80);
	for (size_t k = 0; k < sizeof(dom) - 1; k++)
		assert_int_equal(socks5_parse_request(dom, k, &cmd, &d), 0);
	assert_int_equal(socks5_parse_request(ip4, sizeof(ip4), &cmd, &d), 10);
	assert_string_equal(d.host, "10.4.0.2");
	assert_int_equal(d.port, 8080);
	assert_int_equal(socks5_parse_request((const uint8_t *)"\x05\x01\x01\x01", 4, &cmd, &d), -EPROTO);
	assert_int_equal(socks5_parse_request((const uint8_t *)"\x05\x01\x00\x07\x00", 5, &cmd, &d), -EINVAL);
	assert_int_equal(socks5_parse_request((const uint8_t *)"\x05\x01\x00\x03\x00\x00\x50", 7, &cmd, &d),
			 -EINVAL);
}

static void test_udp(void **state)
{
	static const uint8_t pkt[] = { 0, 0, 0, 1, 10, 4, 0, 2, 0, 53, 'h', 'i' };
	uint8_t frag, hdr[10];
	px_dest d;

	(void)state;
	assert_int_equal(socks5_parse_udp(pkt, sizeof(pkt), &frag, &d), 10);
	assert_int_equal(frag, 0);
	assert_int_equal(d.port, 53);
	assert_int_equal(socks5_parse_udp(pkt, 8, &frag, &d), -EINVAL);
	assert_int_equal(socks5_parse_udp((const uint8_t *)"\x00\x01\x00\x01", 4, &frag, &d), -EPROTO);
	assert_int_equal(socks5_udp_header(0x0a040002, 53, hdr), 10u);
	assert_memory_equal(hdr, pkt, 10);
}

static void test_http(void **state)
{
	static const char c[] = "CONNECT alpha.pilot:443 HTTP/1.1\r\nHost: x\r\n"
				"Proxy-Authorization: Basic dTpw\r\n\r\nEXTRA";
	static const char g[] = "GET http://0:0000.0000.0002:8080/a/b?c HTTP/1.1\r\nHost: y\r\n\r\n";
	static const char g2[] = "GET http://bravo HTTP/1.0\r\n\r\n";
	px_http_req r;

	(void)state;
	assert_int_equal(px_http_parse(c, sizeof(c) - 1, &r), (int)sizeof(c) - 1 - 5);
	assert_true(r.connect);
	assert_string_equal(r.dest.host, "alpha.pilot");
	assert_int_equal(r.dest.port, 443);
	assert_int_equal(r.proxy_auth_len, 10u);
	assert_memory_equal(r.proxy_auth, "Basic dTpw", 10);
	assert_int_equal(px_http_parse(g, sizeof(g) - 1, &r), (int)sizeof(g) - 1);
	assert_false(r.connect);
	assert_string_equal(r.dest.host, "0:0000.0000.0002");
	assert_int_equal(r.dest.port, 8080);
	assert_memory_equal(g + r.path_off, "/a/b?c", r.path_len);
	assert_int_equal(px_http_parse(g2, sizeof(g2) - 1, &r), (int)sizeof(g2) - 1);
	assert_int_equal(r.dest.port, 80);
	assert_int_equal(r.path_len, 0u);
	assert_int_equal(px_http_parse(c, 20, &r), 0);
	assert_int_equal(px_http_parse("CONNECT a HTTP/1.1\r\n\r\n", 22, &r), -EINVAL);
	assert_int_equal(px_http_parse("CONNECT a:0 HTTP/1.1\r\n\r\n", 24, &r), -EINVAL);
	assert_int_equal(px_http_parse("GET https://a/ HTTP/1.1\r\n\r\n", 27, &r), -EINVAL);
	assert_int_equal(px_http_parse("get http://a/ HTTP/1.1\r\n\r\n", 26, &r), -EPROTO);
	assert_int_equal(px_http_parse("CONNECT a:1 SPDY/3\r\n\r\n", 22, &r), -EPROTO);
}

static void test_origin_form(void **state)
{
	static const char g[] = "POST http://alpha.pilot:8080/up?x=1 HTTP/1.1\r\nHost: alpha.pilot:8080\r\n"
				"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic dTpw\r\n"
				"Content-Length: 4\r\nconnection: Keep-Alive\r\n\r\nbody";
	static const char want[] = "POST /up?x=1 HTTP/1.1\r\nHost: alpha.pilot:8080\r\nContent-Length: 4\r\n"
				   "Connection: close\r\n\r\nbody";
	static const char bare[] = "GET http://bravo HTTP/1.0\r\n\r\n";
	char out[512];
	px_http_req r;
	size_t n;

	(void)state;
	assert_true(px_http_parse(g, sizeof(g) - 1, &r) > 0);
	n = px_http_origin_form(g, sizeof(g) - 1, &r, out, sizeof(out));
	assert_int_equal(n, sizeof(want) - 1);
	assert_memory_equal(out, want, n);
	assert_int_equal(px_http_origin_form(g, sizeof(g) - 1, &r, out, 20), 0u);
	assert_true(px_http_parse(bare, sizeof(bare) - 1, &r) > 0);
	n = px_http_origin_form(bare, sizeof(bare) - 1, &r, out, sizeof(out));
	assert_int_equal(n, strlen("GET / HTTP/1.0\r\nConnection: close\r\n\r\n"));
	assert_memory_equal(out, "GET / HTTP/1.0\r\nConnection: close\r\n\r\n", n);
	assert_int_equal(px_http_parse("GET http://a/ HTTP/1.10\r\n\r\n", 28, &r), -EPROTO);
}

static void test_targets(void **state)
{
	px_dest d = { .atyp = SOCKS5_ATYP_DOMAIN };
	px_target t;

	(void)state;
	strcpy(d.host, "alpha.pilot");
	assert_int_equal(px_target_parse(&d, &t), 0);
	assert_int_equal(t.kind, PX_TARGET_NAME);
	assert_string_equal(t.name, "alpha");
	strcpy(d.host, "0-0000-0000-0002.pilot");
	assert_int_equal(px_target_parse(&d, &t), 0);
	assert_int_equal(t.kind, PX_TARGET_ADDR);
	assert_int_equal(t.addr.node, 2u);
	strcpy(d.host, "1:0001.0000.0005");
	assert_int_equal(px_target_parse(&d, &t), 0);
	assert_int_equal(t.kind, PX_TARGET_ADDR);
	assert_int_equal(t.addr.net, 1);
	assert_int_equal(t.addr.node, 5u);
	strcpy(d.host, "10.4.0.9");
	assert_int_equal(px_target_parse(&d, &t), 0);
	assert_int_equal(t.kind, PX_TARGET_IP4);
	assert_int_equal(t.ip4, 0x0a040009u);
	strcpy(d.host, "bad name!");
	assert_int_equal(px_target_parse(&d, &t), -EINVAL);
	strcpy(d.host, ".pilot");
	assert_int_equal(px_target_parse(&d, &t), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting), cmocka_unit_test(test_userpass),
		cmocka_unit_test(test_request),  cmocka_unit_test(test_udp),
		cmocka_unit_test(test_http),     cmocka_unit_test(test_origin_form),
		cmocka_unit_test(test_targets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
