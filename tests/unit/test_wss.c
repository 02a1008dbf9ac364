/* Compat mode end to end on one pilot_loop on 127.0.0.1: a real registry, the UDP
 * beacon, the WSS bridge (plain ws:// and TLS with a CA from rendezvous/ca.c), two
 * daemon-side wss transports, a UDP node and a hand-rolled raw WebSocket client
 * for the misbehaving cases. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include "tests/unit/test_regreq.h"
#include "daemon/wss.h"
#include "lib/crypto.h"
#include "lib/loop.h"
#include "lib/lwsloop.h"
#include "lib/proto.h"
#include "rendezvous/beacon.h"
#include "rendezvous/ca.h"
#include "rendezvous/registry.h"
#include "rendezvous/wss.h"

#define LWS_PRE_TEST 64 /* at least libwebsockets' LWS_PRE */

typedef struct rxlog {
	unsigned n;
	uint8_t last[70000];
	size_t len;
	transport_ep ep;
	uint32_t crc; /* over every datagram received, in order */
} rxlog;

typedef struct tnode {
	pilot_identity id;
	uint32_t node;
} tnode;

typedef struct fx {
	pilot_loop *loop;
	registry *reg;
	beacon *b;
	rdv_wss *w;
	int port;
	tnode a, bb, u, stranger_unreg;
	int ufd;
	struct sockaddr_in baddr;
	transport *ta, *tb;
	rxlog ra, rb;
	char dir[64];
} fx;

/* ---- helpers ---------------------------------------------------------------- */

static void node_register(fx *f, tnode *t)
{
	char pk[48], msg[64], sig64[96];
	uint8_t sig[64];
	json_object *o;

	pilot_identity_generate(&t->id);
	pilot_b64_encode(t->id.pk, 32, pk, sizeof(pk));
	o = t_reg_req(f->reg, "127.0.0.1",
		      "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:4000\"}", pk);
	t->node = (uint32_t)json_object_get_int64(json_object_object_get(o, "node_id"));
	assert_true(t->node != 0);
	json_object_put(o);
	snprintf(msg, sizeof(msg), "set_visibility:%u", t->node);
	pilot_ed25519_sign(&t->id, msg, strlen(msg), sig);
	pilot_b64_encode(sig, sizeof(sig), sig64, sizeof(sig64));
	o = t_reg_req(f->reg, "127.0.0.1",
		      "{\"type\":\"set_visibility\",\"node_id\":%u,\"public\":true,\"signature\":\"%s\"}",
		      t->node, sig64);
	json_object_put(o);
}

static void on_rx(void *ctx, transport_dgram *dg, size_t n)
{
	rxlog *l = ctx;

	for (size_t i = 0; i < n; i++) {
		l->n++;
		l->len = dg[i].len < sizeof(l->last) ? dg[i].len : sizeof(l->last);
		memcpy(l->last, dg[i].data, l->len);
		l->ep = dg[i].ep;
		l->crc = proto_crc32_update(l->crc, dg[i].data, dg[i].len);
	}
}

static void pump(fx *f, int ms)
{
	uint64_t end = pilot_now_ms() + (uint64_t)ms;

	while (pilot_now_ms() < end)
		pilot_loop_run_once(f->loop, 5);
}

#define PUMP_UNTIL(f, ms, cond)                                              \
	do {                                                                 \
		uint64_t end_ = pilot_now_ms() + (ms);                       \
		while (!(cond) && pilot_now_ms() < end_)                     \
			pilot_loop_run_once((f)->loop, 5);                   \
	} while (0)

static long g_max_queued;  /* bridge_start: rdv_wss_config.max_queued */
static int64_t g_idle_ms;  /* bridge_start: rdv_wss_config.idle_ms (0 = default) */
static int g_raw_rcvbuf;   /* raw_open: SO_RCVBUF before connect (0 = default) */

static void bridge_start(fx *f, int port, const char *cert, const char *key, long max_peers)
{
	char addr[64], err[256] = "";
	rdv_wss_config wc = { .addr = addr,
			      .reg = f->reg,
			      .bcn = f->b,
			      .tls_cert = cert,
			      .tls_key = key,
			      .max_peers = max_peers,
			      .rate_burst = -1,
			      .auth_ms = 600,
			      .max_queued = g_max_queued,
			      .idle_ms = g_idle_ms };

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	f->w = rdv_wss_new(f->loop, &wc, err, sizeof(err));
	if (!f->w)
		fail_msg("rdv_wss_new: %s", err);
	f->port = rdv_wss_port(f->w);
}

static transport *client(fx *f, tnode *t, rxlog *log, const char *scheme, const char *root)
{
	char url[128], err[256] = "";
	wss_config c = { .url = url, .node = t->node, .id = &t->id, .tls_root = root, .proxy = "",
			 .backoff_min_ms = 50, .backoff_max_ms = 400 };
	transport *tr;

	snprintf(url, sizeof(url), "%s://127.0.0.1:%d/v1/compat", scheme, f->port);
	tr = wss_transport_new(f->loop, &c, on_rx, log, err, sizeof(err));
	if (!tr)
		fail_msg("wss_transport_new: %s", err);
	return tr;
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	reg_config rc = { .ratelimit_disabled = true };
	char err[256] = "";
	struct sockaddr_in sa = { .sin_family = AF_INET };

	assert_non_null(f);
	unsetenv("http_proxy");
	assert_non_null(f->loop = pilot_loop_new());
	assert_non_null(f->reg = reg_open(&rc, err, sizeof(err)));
	f->b = beacon_new(f->loop, "127.0.0.1:0", f->reg, err, sizeof(err));
	assert_non_null(f->b);
	f->baddr.sin_family = AF_INET;
	f->baddr.sin_port = htons((uint16_t)beacon_local_port(f->b));
	inet_pton(AF_INET, "127.0.0.1", &f->baddr.sin_addr);
	node_register(f, &f->a);
	node_register(f, &f->bb);
	node_register(f, &f->u);
	f->ufd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_int_equal(bind(f->ufd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	pilot_identity_generate(&f->stranger_unreg.id);
	f->stranger_unreg.node = 999999;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_wss.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	char cmd[128];

	transport_close(f->ta);
	transport_close(f->tb);
	rdv_wss_free(f->w);
	beacon_free(f->b);
	reg_close(f->reg);
	close(f->ufd);
	pilot_loop_free(f->loop);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void connect_both(fx *f, const char *scheme, const char *root)
{
	f->ta = client(f, &f->a, &f->ra, scheme, root);
	f->tb = client(f, &f->bb, &f->rb, scheme, root);
	PUMP_UNTIL(f, 3000, wss_transport_connected(f->ta) && wss_transport_connected(f->tb));
	assert_true(wss_transport_connected(f->ta));
	assert_true(wss_transport_connected(f->tb));
}

/* A PILT frame of len bytes with a recognisable body. */
static size_t make_frame(uint8_t *out, size_t len, uint8_t seed)
{
	memcpy(out, "PILT", 4);
	for (size_t i = 4; i < len; i++)
		out[i] = (uint8_t)(i * 13 + seed);
	return len;
}

/* Send a Relay(from→to) over a wss transport; the receiver log must get RelayDeliver. */
static void relay_ws(fx *f, transport *t, uint32_t from, uint32_t to, rxlog *dst, size_t flen)
{
	static uint8_t msg[70000], frame[70000];
	transport_dgram d = { .data = msg };
	unsigned before = dst->n;

	make_frame(frame, flen, (uint8_t)to);
	proto_beacon_relay_hdr(from, to, msg);
	memcpy(msg + BEACON_RELAY_HDR, frame, flen);
	d.len = BEACON_RELAY_HDR + flen;
	wss_beacon_ep(&d.ep);
	assert_int_equal(transport_send(t, &d, 1), 1);
	PUMP_UNTIL(f, 2000, dst->n > before);
	assert_int_equal(dst->n, before + 1);
	assert_int_equal(dst->len, BEACON_RELAY_DELIVER_HDR + flen);
	assert_int_equal(dst->last[0], BEACON_RELAY_DELIVER);
	assert_int_equal(proto_get32(dst->last + 1), from);
	assert_memory_equal(dst->last + BEACON_RELAY_DELIVER_HDR, frame, flen);
}

/* ---- a raw WebSocket client (client frames masked, as RFC 6455 requires) ---- */

typedef struct raw {
	int fd;
	uint8_t buf[200000];
	size_t len;
} raw;

static void raw_fill(fx *f, raw *r)
{
	ssize_t n;

	pilot_loop_run_once(f->loop, 5);
	n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, MSG_DONTWAIT);
	if (n > 0)
		r->len += (size_t)n;
}

static void raw_write(fx *f, raw *r, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = send(r->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN) {
			return;
		}
		pilot_loop_run_once(f->loop, 1);
	}
}

/* Returns the HTTP status of the upgrade answer (101 on success). */
static int raw_open(fx *f, raw *r, const char *path)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port) };
	char rq[512];
	uint64_t end = pilot_now_ms() + 2000;
	uint8_t *eoh = NULL;
	int code = 0;

	memset(r, 0, sizeof(*r));
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (g_raw_rcvbuf)
		setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &g_raw_rcvbuf, sizeof(g_raw_rcvbuf));
	assert_int_equal(connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(rq, sizeof(rq), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: pilot.v1\r\n\r\n", path);
	raw_write(f, r, (const uint8_t *)rq, strlen(rq));
	while (!eoh && pilot_now_ms() < end) {
		raw_fill(f, r);
		eoh = memmem(r->buf, r->len, "\r\n\r\n", 4);
	}
	if (!eoh)
		return -1;
	if (sscanf((const char *)r->buf, "HTTP/1.%*d %d", &code) != 1)
		fprintf(stderr, "raw_open: %.*s\n", (int)(eoh - r->buf), r->buf);
	eoh += 4;
	r->len -= (size_t)(eoh - r->buf);
	memmove(r->buf, eoh, r->len);
	return code;
}

static void raw_send(fx *f, raw *r, int op, const void *data, size_t len)
{
	static uint8_t fr[200000];
	const uint8_t mask[4] = { 1, 2, 3, 4 };
	size_t h = 2;

	fr[0] = (uint8_t)(0x80 | op);
	if (len < 126) {
		fr[1] = (uint8_t)(0x80 | len);
	} else if (len < 65536) {
		fr[1] = 0x80 | 126;
		fr[2] = (uint8_t)(len >> 8);
		fr[3] = (uint8_t)len;
		h = 4;
	} else {
		fr[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			fr[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		h = 10;
	}
	memcpy(fr + h, mask, 4);
	h += 4;
	for (size_t i = 0; i < len; i++)
		fr[h + i] = ((const uint8_t *)data)[i] ^ mask[i % 4];
	raw_write(f, r, fr, h + len);
}

/* One frame: its length (payload in out) and *op; -1 timeout; -2 connection closed. */
static int raw_recv(fx *f, raw *r, int *op, uint8_t *out, size_t cap, int ms)
{
	uint64_t end = pilot_now_ms() + (uint64_t)ms;

	for (;;) {
		if (r->len >= 2) {
			size_t h = 2, plen = r->buf[1] & 0x7f;

			if (plen == 126 && r->len >= 4) {
				plen = (size_t)r->buf[2] << 8 | r->buf[3];
				h = 4;
			}
			if (plen < 126 && r->len >= h + plen) {
				*op = r->buf[0] & 0x0f;
				assert_true(plen <= cap);
				memcpy(out, r->buf + h, plen);
				r->len -= h + plen;
				memmove(r->buf, r->buf + h + plen, r->len);
				return (int)plen;
			}
			if (h == 4 && r->len >= h + plen) {
				*op = r->buf[0] & 0x0f;
				memcpy(out, r->buf + h, plen);
				r->len -= h + plen;
				memmove(r->buf, r->buf + h + plen, r->len);
				return (int)plen;
			}
		}
		if (pilot_now_ms() >= end)
			return -1;
		{
			ssize_t n;

			pilot_loop_run_once(f->loop, 5);
			n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, MSG_DONTWAIT);
			if (n > 0)
				r->len += (size_t)n;
			else if (n == 0)
				return -2;
		}
	}
}

/* Wait for a close frame; returns its status code (or -1). */
static int raw_close_code(fx *f, raw *r, int ms)
{
	uint8_t buf[256];
	int op = 0, n;

	while ((n = raw_recv(f, r, &op, buf, sizeof(buf), ms)) >= 0)
		if (op == 8)
			return n >= 2 ? buf[0] << 8 | buf[1] : 0;
	return -1;
}

/* Open and authenticate as t (sign with key, so a wrong key gives a bad signature). */
static int raw_auth(fx *f, raw *r, uint32_t node, const pilot_identity *key, int64_t skew_s)
{
	uint8_t buf[512];
	char nonce[65], reply[512];
	uint64_t ts;
	int op, n;

	assert_int_equal(raw_open(f, r, "/v1/compat"), 101);
	n = raw_recv(f, r, &op, buf, sizeof(buf) - 1, 2000);
	assert_true(n > 0);
	assert_int_equal(op, 1);
	assert_int_equal(wss_parse_challenge((const char *)buf, (size_t)n, nonce, &ts), 0);
	if (skew_s)
		rdv_wss_advance_clock(f->w, skew_s);
	n = wss_auth_reply(reply, sizeof(reply), key, node, ts, nonce);
	raw_send(f, r, 1, reply, (size_t)n);
	n = raw_recv(f, r, &op, buf, sizeof(buf) - 1, 2000);
	if (n > 0 && op == 1) {
		buf[n] = 0;
		return strstr((const char *)buf, "auth_ok") ? 0 : -1;
	}
	return n > 0 && op == 8 ? buf[0] << 8 | buf[1] : -1;
}

static beacon_stats bstats(fx *f)
{
	beacon_stats st;

	beacon_get_stats(f->b, &st);
	return st;
}

static rdv_wss_stats wstats(fx *f)
{
	rdv_wss_stats st;

	rdv_wss_get_stats(f->w, &st);
	return st;
}

/* ---- tests -------------------------------------------------------------------- */

/* vectors §9: challenge parse, signing string, reply bytes, server-side check. */
static int vec_key(void *ctx, uint32_t node, uint8_t pk[32])
{
	if (node != 1234)
		return -ENOENT;
	memcpy(pk, ctx, 32);
	return 0;
}

static void test_wss_vector(void **state)
{
	const char *chal = "{\"type\":\"auth_challenge\",\"nonce\":\"000102030405060708090a0b0c0d0e0f"
			   "101112131415161718191a1b1c1d1e1f\",\"ts\":1767225600}";
	const char *want = "{\"type\":\"auth_reply\",\"node_id\":1234,\"public_key\":"
			   "\"U3p2rDMqKCp2pJO7P39iBJVBt2Z2tFvcsRdz4a7EzXw=\",\"sig\":\"FImvA7pFAES/"
			   "3WQVk+GPWzoJOdF3T1EVCEYVim+0Fs32i7NsE5zb2gwNIZxCDWMI0rvdrRp/M+K4Qx1aI0tuBg==\"}";
	uint8_t seed[32];
	pilot_identity id;
	char nonce[65], s[256], reply[512], ch2[256];
	uint64_t ts;
	uint32_t node = 0;

	crypto_hash_sha256(seed, (const uint8_t *)"pilot-vector-ed25519-A", 22);
	pilot_identity_from_seed(&id, seed);
	assert_int_equal(wss_parse_challenge(chal, strlen(chal), nonce, &ts), 0);
	assert_int_equal(ts, 1767225600);
	wss_auth_string(s, sizeof(s), 1234, ts, nonce);
	assert_string_equal(s, "compat_auth:1234:1767225600:000102030405060708090a0b0c0d0e0f"
			       "101112131415161718191a1b1c1d1e1f");
	wss_auth_reply(reply, sizeof(reply), &id, 1234, ts, nonce);
	assert_string_equal(reply, want);
	rdv_wss_challenge(ch2, sizeof(ch2), nonce, ts);
	assert_string_equal(ch2, chal);
	assert_int_equal(rdv_wss_check_reply(want, strlen(want), nonce, ts, ts + 5, vec_key, id.pk, &node), 0);
	assert_int_equal(node, 1234);
	assert_int_equal(rdv_wss_check_reply(want, strlen(want), nonce, ts, ts + 31, vec_key, id.pk, &node),
			 -ESTALE);
	nonce[0] = '1';
	assert_int_equal(rdv_wss_check_reply(want, strlen(want), nonce, ts, ts, vec_key, id.pk, &node),
			 -EBADMSG);
	assert_int_equal(rdv_wss_check_reply("{\"type\":\"auth_reply\"}", 21, nonce, ts, ts, vec_key,
					     id.pk, &node), -EINVAL);
	assert_int_equal(wss_parse_challenge("{\"type\":\"auth_challenge\",\"nonce\":\"00\",\"ts\":1}", 45,
					     nonce, &ts), -EINVAL);
}

static void test_wss_relay_ws_to_ws(void **state)
{
	fx *f = *state;
	transport_ep bep;

	bridge_start(f, 0, NULL, NULL, 0);
	connect_both(f, "ws", NULL);
	assert_true(transport_is_relay_only(f->ta));
	relay_ws(f, f->ta, f->a.node, f->bb.node, &f->rb, 100);
	wss_beacon_ep(&bep);
	assert_true(transport_ep_eq(&f->rb.ep, &bep));
	relay_ws(f, f->tb, f->bb.node, f->a.node, &f->ra, 40000); /* fragmented on the wire */
	/* a bare tunnel frame to a synthetic peer endpoint is wrapped here */
	{
		uint8_t frame[64];
		transport_dgram d = { .data = frame, .len = make_frame(frame, sizeof(frame), 9) };
		unsigned before = f->rb.n;

		wss_peer_ep(f->bb.node, &d.ep);
		assert_int_equal(transport_send(f->ta, &d, 1), 1);
		PUMP_UNTIL(f, 2000, f->rb.n > before);
		assert_int_equal(f->rb.len, 5 + sizeof(frame));
		assert_memory_equal(f->rb.last + 5, frame, sizeof(frame));
	}
	assert_int_equal(bstats(f).relay_wss_wss, 3);
	assert_int_equal(wstats(f).auth_ok, 2);
	assert_int_equal(wstats(f).peers, 2);
}

static void test_wss_bridge_udp(void **state)
{
	fx *f = *state;
	uint8_t msg[300], frame[200], got[400];
	ssize_t n = -1;

	bridge_start(f, 0, NULL, NULL, 0);
	connect_both(f, "ws", NULL);
	/* the UDP node proves its ID by IP (registered from 127.0.0.1) */
	proto_beacon_discover(f->u.node, NULL, msg, sizeof(msg));
	sendto(f->ufd, msg, 5, 0, (struct sockaddr *)&f->baddr, sizeof(f->baddr));
	pump(f, 50);
	recv(f->ufd, got, sizeof(got), MSG_DONTWAIT); /* DiscoverReply */
	assert_int_equal(bstats(f).discovers_verified, 1);
	/* UDP → WSS */
	make_frame(frame, sizeof(frame), 1);
	proto_beacon_relay_hdr(f->u.node, f->a.node, msg);
	memcpy(msg + 9, frame, sizeof(frame));
	sendto(f->ufd, msg, 9 + sizeof(frame), 0, (struct sockaddr *)&f->baddr, sizeof(f->baddr));
	PUMP_UNTIL(f, 2000, f->ra.n > 0);
	assert_int_equal(f->ra.len, 5 + sizeof(frame));
	assert_int_equal(proto_get32(f->ra.last + 1), f->u.node);
	assert_memory_equal(f->ra.last + 5, frame, sizeof(frame));
	/* WSS → UDP */
	{
		transport_dgram d = { .data = msg, .len = 9 + sizeof(frame) };

		proto_beacon_relay_hdr(f->a.node, f->u.node, msg);
		wss_beacon_ep(&d.ep);
		assert_int_equal(transport_send(f->ta, &d, 1), 1);
		for (int i = 0; i < 400 && n < 0; i++) {
			pilot_loop_run_once(f->loop, 5);
			n = recv(f->ufd, got, sizeof(got), MSG_DONTWAIT);
		}
	}
	assert_int_equal(n, 5 + sizeof(frame));
	assert_int_equal(got[0], BEACON_RELAY_DELIVER);
	assert_int_equal(proto_get32(got + 1), f->a.node);
	assert_memory_equal(got + 5, frame, sizeof(frame));
	assert_int_equal(bstats(f).relay_udp_wss, 1);
	assert_int_equal(bstats(f).relay_wss_udp, 1);
}

static void test_wss_auth_failures(void **state)
{
	fx *f = *state;
	pilot_identity other;
	raw r;
	uint8_t buf[512];
	int op;

	bridge_start(f, 0, NULL, NULL, 0);
	pilot_identity_generate(&other);
	assert_int_equal(raw_auth(f, &r, f->a.node, &other, 0), 1008); /* wrong key */
	close(r.fd);
	assert_int_equal(raw_auth(f, &r, f->stranger_unreg.node, &f->stranger_unreg.id, 0), 1008);
	close(r.fd);
	assert_int_equal(raw_auth(f, &r, f->a.node, &f->a.id, 31), 1008); /* stale challenge */
	close(r.fd);
	rdv_wss_advance_clock(f->w, -31);
	assert_int_equal(rdv_wss_check_reply("x", 1, "", 0, 0, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(wstats(f).auth_failed, 3);
	/* no reply in time (auth_ms 600 here) */
	assert_int_equal(raw_open(f, &r, "/v1/compat"), 101);
	assert_true(raw_recv(f, &r, &op, buf, sizeof(buf), 1000) > 0);
	assert_int_equal(raw_close_code(f, &r, 2000), 1008);
	close(r.fd);
	assert_int_equal(wstats(f).auth_timeout, 1);
	assert_int_equal(wstats(f).peers, 0);
	/* wrong path → 404, no upgrade */
	assert_int_equal(raw_open(f, &r, "/elsewhere"), 404);
	close(r.fd);
}

static void test_wss_misbehaving_peer(void **state)
{
	fx *f = *state;
	uint8_t msg[80000], frame[64];
	raw r;

	bridge_start(f, 0, NULL, NULL, 0);
	f->tb = client(f, &f->bb, &f->rb, "ws", NULL);
	PUMP_UNTIL(f, 3000, wss_transport_connected(f->tb));
	assert_int_equal(raw_auth(f, &r, f->a.node, &f->a.id, 0), 0);
	/* spoofed sender: a Relay from A's connection claiming to be U */
	make_frame(frame, sizeof(frame), 3);
	proto_beacon_relay_hdr(f->u.node, f->bb.node, msg);
	memcpy(msg + 9, frame, sizeof(frame));
	raw_send(f, &r, 2, msg, 9 + sizeof(frame));
	pump(f, 100);
	assert_int_equal(bstats(f).inject_spoofed, 1);
	assert_int_equal(f->rb.n, 0);
	/* the honest form passes */
	proto_beacon_relay_hdr(f->a.node, f->bb.node, msg);
	raw_send(f, &r, 2, msg, 9 + sizeof(frame));
	PUMP_UNTIL(f, 2000, f->rb.n == 1);
	assert_int_equal(f->rb.n, 1);
	/* text after auth: ignored, connection stays */
	raw_send(f, &r, 1, "{\"type\":\"hello\"}", 16);
	pump(f, 50);
	assert_int_equal(wstats(f).text_ignored, 1);
	raw_send(f, &r, 2, msg, 9 + sizeof(frame));
	PUMP_UNTIL(f, 2000, f->rb.n == 2);
	assert_int_equal(f->rb.n, 2);
	/* oversize closes (1009) */
	memset(msg, 0, sizeof(msg));
	raw_send(f, &r, 2, msg, RDV_WSS_MAX_MSG + 1);
	assert_int_equal(raw_close_code(f, &r, 2000), 1009);
	close(r.fd);
	assert_int_equal(wstats(f).oversize, 1);
}

static void test_wss_replaced(void **state)
{
	fx *f = *state;
	uint8_t buf[256];
	int op, n;
	raw r;

	bridge_start(f, 0, NULL, NULL, 0);
	assert_int_equal(raw_auth(f, &r, f->a.node, &f->a.id, 0), 0);
	f->ta = client(f, &f->a, &f->ra, "ws", NULL);
	PUMP_UNTIL(f, 3000, wss_transport_connected(f->ta));
	assert_true(wss_transport_connected(f->ta));
	while ((n = raw_recv(f, &r, &op, buf, sizeof(buf), 2000)) >= 0 && op != 8)
		;
	assert_int_equal(op, 8);
	assert_true(n >= 10);
	assert_int_equal(buf[0] << 8 | buf[1], 1000);
	assert_memory_equal(buf + 2, "replaced", 8);
	close(r.fd);
	assert_int_equal(wstats(f).replaced, 1);
	/* traffic for A goes to the new connection */
	f->tb = client(f, &f->bb, &f->rb, "ws", NULL);
	PUMP_UNTIL(f, 3000, wss_transport_connected(f->tb));
	relay_ws(f, f->tb, f->bb.node, f->a.node, &f->ra, 80);
}

static void test_wss_restart_reconnects(void **state)
{
	fx *f = *state;
	int port;
	wss_stats st;
	transport_dgram d = { .data = (uint8_t *)"\x01\x00\x00\x00\x01", .len = 5 };

	bridge_start(f, 0, NULL, NULL, 0);
	port = f->port;
	connect_both(f, "ws", NULL);
	rdv_wss_free(f->w);
	f->w = NULL;
	PUMP_UNTIL(f, 2000, !wss_transport_connected(f->ta) && !wss_transport_connected(f->tb));
	assert_false(wss_transport_connected(f->ta));
	/* while down, sends fail fast */
	wss_beacon_ep(&d.ep);
	assert_int_equal(transport_send(f->ta, &d, 1), 0);
	pump(f, 300); /* a few failed dials: the backoff grows */
	wss_transport_get_stats(f->ta, &st);
	assert_true(st.tx_notconn >= 1);
	assert_true(st.backoff_ms > 50);
	bridge_start(f, port, NULL, NULL, 0);
	PUMP_UNTIL(f, 3000, wss_transport_connected(f->ta) && wss_transport_connected(f->tb));
	assert_true(wss_transport_connected(f->ta));
	assert_true(wss_transport_connected(f->tb));
	wss_transport_get_stats(f->ta, &st);
	assert_true(st.dials >= 2);
	assert_int_equal(st.disconnects, 1);
	assert_int_equal(st.backoff_ms, 50); /* reset after success */
	relay_ws(f, f->ta, f->a.node, f->bb.node, &f->rb, 100);
}

static void test_wss_peers_cap(void **state)
{
	fx *f = *state;
	raw r;

	bridge_start(f, 0, NULL, NULL, 2);
	connect_both(f, "ws", NULL);
	assert_int_equal(raw_open(f, &r, "/v1/compat"), 503);
	close(r.fd);
	assert_int_equal(wstats(f).refused_full, 1);
}

/* issue 12 §5: peers that stop reading hold at most max_queued bytes together
 * (before: 4 MiB each, times up to 10,000 peers). */
static void test_wss_global_queue_cap(void **state)
{
	fx *f = *state;
	static uint8_t msg[60000];
	raw ra, rb, ru;
	uint64_t peak = 0;
	rdv_wss_stats st;

	g_max_queued = 1 << 20;
	bridge_start(f, 0, NULL, NULL, 0);
	g_max_queued = 0;
	g_raw_rcvbuf = 4096; /* A and B never read: their queues fill */
	assert_int_equal(raw_auth(f, &ra, f->a.node, &f->a.id, 0), 0);
	assert_int_equal(raw_auth(f, &rb, f->bb.node, &f->bb.id, 0), 0);
	g_raw_rcvbuf = 0;
	assert_int_equal(raw_auth(f, &ru, f->u.node, &f->u.id, 0), 0);
	make_frame(msg + 9, sizeof(msg) - 9, 5);
	for (int i = 0; i < 400; i++) { /* 24 MB of relays from U to A and B */
		uint32_t to = i % 2 ? f->a.node : f->bb.node;

		proto_beacon_relay_hdr(f->u.node, to, msg);
		raw_send(f, &ru, 2, msg, sizeof(msg));
		pilot_loop_run_once(f->loop, 1);
		st = wstats(f);
		if (st.queued_bytes > peak)
			peak = st.queued_bytes;
		assert_true(st.queued_bytes <= 1 << 20);
	}
	pump(f, 100);
	st = wstats(f);
	fprintf(stderr, "# queued peak %llu bytes, dropped at the global cap %llu, per peer %llu\n",
		(unsigned long long)peak, (unsigned long long)st.queue_dropped_total,
		(unsigned long long)st.queue_dropped);
	assert_true(st.queue_dropped_total > 0);
	assert_true(peak > (1 << 20) - 2 * (LWS_PRE_TEST + sizeof(msg)));
	close(ra.fd);
	close(rb.fd);
	close(ru.fd);
	PUMP_UNTIL(f, 2000, wstats(f).queued_bytes == 0);
	assert_int_equal(wstats(f).queued_bytes, 0);
}

static void test_wss_tls_pinned(void **state)
{
	fx *f = *state;
	char root[128], cert[128], key[128], err[256], other[128];
	transport *bad;
	rxlog rl = { 0 };
	wss_stats st;

	assert_int_equal(rdv_ca_init_root(f->dir, err, sizeof(err)), 0);
	assert_int_equal(rdv_ca_issue(f->dir, "127.0.0.1", err, sizeof(err)), 0);
	snprintf(root, sizeof(root), "%s/root.crt", f->dir);
	snprintf(cert, sizeof(cert), "%s/127.0.0.1.crt", f->dir);
	snprintf(key, sizeof(key), "%s/127.0.0.1.key", f->dir);
	assert_int_equal(rdv_ca_verify(f->dir, cert, err, sizeof(err)), 0);
	bridge_start(f, 0, cert, key, 0);
	connect_both(f, "wss", root);
	relay_ws(f, f->ta, f->a.node, f->bb.node, &f->rb, 1000);
	/* a client pinned to another root never gets through */
	snprintf(other, sizeof(other), "%s/other", f->dir);
	mkdir(other, 0700);
	assert_int_equal(rdv_ca_init_root(other, err, sizeof(err)), 0);
	snprintf(other, sizeof(other), "%s/other/root.crt", f->dir);
	bad = client(f, &f->a, &rl, "wss", other);
	pump(f, 500);
	assert_false(wss_transport_connected(bad));
	wss_transport_get_stats(bad, &st);
	assert_true(st.dials >= 2);
	transport_close(bad);
	assert_true(wss_transport_connected(f->ta)); /* never replaced */
}

/* RFC 6455 §5.7's examples and both extended lengths, as pilot_ws_frame writes them. */
static void test_wss_frame_encoding(void **state)
{
	static uint8_t big[70000], out[70000 + PILOT_WS_HDR_MAX];
	const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };
	const uint8_t hello[] = { 0x81, 0x05, 'H', 'e', 'l', 'l', 'o' };
	const uint8_t hello_m[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	const uint8_t h256[] = { 0x82, 0x7e, 0x01, 0x00 };
	const uint8_t h64k[] = { 0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0 };

	assert_int_equal(pilot_ws_frame(out, (const uint8_t *)"Hello", 5, true, NULL), sizeof(hello));
	assert_memory_equal(out, hello, sizeof(hello));
	assert_int_equal(pilot_ws_frame(out, (const uint8_t *)"Hello", 5, true, key), sizeof(hello_m));
	assert_memory_equal(out, hello_m, sizeof(hello_m));
	make_frame(big, sizeof(big), 1);
	assert_int_equal(pilot_ws_frame(out, big, 125, false, NULL), 2 + 125);
	assert_int_equal(out[0], 0x82);
	assert_int_equal(out[1], 125);
	assert_int_equal(pilot_ws_frame(out, big, 256, false, NULL), sizeof(h256) + 256);
	assert_memory_equal(out, h256, sizeof(h256));
	assert_memory_equal(out + sizeof(h256), big, 256);
	assert_int_equal(pilot_ws_frame(out, big, 65535, false, NULL), 4 + 65535);
	assert_int_equal(out[1], 126);
	assert_int_equal(out[2], 0xff);
	assert_int_equal(out[3], 0xff);
	assert_int_equal(pilot_ws_frame(out, big, 65536, false, key), sizeof(h64k) + 4 + 65536);
	assert_int_equal(out[1], 0xff); /* mask bit + 127 */
	assert_memory_equal(out + 2, h64k + 2, 8);
	assert_memory_equal(out + 10, key, 4);
	for (size_t i = 0; i < 65536; i++)
		assert_int_equal(out[14 + i] ^ key[i & 3], big[i]);
	/* every tail length of the word-at-a-time masking */
	for (size_t len = 0; len < 40; len++) {
		assert_int_equal(pilot_ws_frame(out, big + 3, len, false, key), 2 + 4 + len);
		for (size_t i = 0; i < len; i++)
			assert_int_equal(out[6 + i] ^ key[i & 3], big[3 + i]);
	}
}

/* A burst queued at once goes out several frames per write on both ends (the
 * daemon's masked, the bridge's not), with messages too big to batch among them:
 * all arrive, whole and in order. */
static void test_wss_relay_burst(void **state)
{
	static uint8_t msg[40000], frame[40000];
	static const size_t lens[] = { 100, 1400, 64, 20000, 1400, 1400, 16000, 700, 15980, 1400 };
	fx *f = *state;
	uint32_t crc = 0;
	unsigned before;

	bridge_start(f, 0, NULL, NULL, 0);
	connect_both(f, "ws", NULL);
	before = f->rb.n;
	f->rb.crc = 0;
	for (unsigned i = 0; i < 200; i++) {
		size_t flen = lens[i % 10];
		transport_dgram d = { .data = msg };
		uint8_t deliver[BEACON_RELAY_DELIVER_HDR];

		make_frame(frame, flen, (uint8_t)i);
		proto_beacon_relay_hdr(f->a.node, f->bb.node, msg);
		memcpy(msg + BEACON_RELAY_HDR, frame, flen);
		d.len = BEACON_RELAY_HDR + flen;
		wss_beacon_ep(&d.ep);
		assert_int_equal(transport_send(f->ta, &d, 1), 1);
		deliver[0] = BEACON_RELAY_DELIVER;
		proto_put32(deliver + 1, f->a.node);
		crc = proto_crc32_update(crc, deliver, sizeof(deliver));
		crc = proto_crc32_update(crc, frame, flen);
	}
	PUMP_UNTIL(f, 5000, f->rb.n >= before + 200);
	assert_int_equal(f->rb.n, before + 200);
	assert_int_equal(f->rb.crc, crc);
	assert_int_equal(bstats(f).relay_wss_wss, 200);
	{ /* the receiver's frames were parsed by wss.c's own reader, not lws */
		wss_stats ws;

		wss_transport_get_stats(f->tb, &ws);
		assert_true(ws.own_reader);
	}
}

/* Bursts over TLS between the UDP node and a compat node, both ways: the bridge
 * services an up connection per event (lws_service_fd) and drains the TLS bytes
 * it decrypted beyond its 4096-byte reads; the datagrams a compat node sent go
 * to UDP in one sendmmsg per round (UDP GSO for runs of one size); the client
 * writes its queue without asking for POLLOUT. All arrive, whole and in order. */
static void test_wss_burst_tls_udp(void **state)
{
	enum {
		N = 120,
		FLEN = 1000
	};
	static uint8_t msg[BEACON_RELAY_HDR + FLEN], frame[FLEN], got[2048];
	fx *f = *state;
	char root[128], cert[128], key[128], err[256];
	uint32_t crc = 0, gcrc = 0;
	unsigned got_n = 0, ok = 0;
	int big = 1 << 20;

	assert_int_equal(rdv_ca_init_root(f->dir, err, sizeof(err)), 0);
	assert_int_equal(rdv_ca_issue(f->dir, "127.0.0.1", err, sizeof(err)), 0);
	snprintf(root, sizeof(root), "%s/root.crt", f->dir);
	snprintf(cert, sizeof(cert), "%s/127.0.0.1.crt", f->dir);
	snprintf(key, sizeof(key), "%s/127.0.0.1.key", f->dir);
	bridge_start(f, 0, cert, key, 0);
	connect_both(f, "wss", root);
	setsockopt(f->ufd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	proto_beacon_discover(f->u.node, NULL, msg, sizeof(msg));
	sendto(f->ufd, msg, 5, 0, (struct sockaddr *)&f->baddr, sizeof(f->baddr));
	pump(f, 50);
	recv(f->ufd, got, sizeof(got), MSG_DONTWAIT); /* DiscoverReply */
	/* UDP → compat: N datagrams at once */
	f->ra.crc = 0;
	for (unsigned i = 0; i < N; i++) {
		uint8_t hdr[BEACON_RELAY_DELIVER_HDR] = { BEACON_RELAY_DELIVER };

		make_frame(frame, FLEN, (uint8_t)i);
		proto_beacon_relay_hdr(f->u.node, f->a.node, msg);
		memcpy(msg + BEACON_RELAY_HDR, frame, FLEN);
		assert_int_equal(
			sendto(f->ufd, msg, sizeof(msg), 0, (struct sockaddr *)&f->baddr, sizeof(f->baddr)),
			(ssize_t)sizeof(msg));
		proto_put32(hdr + 1, f->u.node);
		crc = proto_crc32_update(crc, hdr, sizeof(hdr));
		crc = proto_crc32_update(crc, frame, FLEN);
	}
	PUMP_UNTIL(f, 5000, f->ra.n >= N);
	assert_int_equal(f->ra.n, N);
	assert_int_equal(f->ra.crc, crc);
	/* compat → UDP: N datagrams queued at once */
	crc = 0;
	for (unsigned i = 0; i < N; i++) {
		transport_dgram d = { .data = msg, .len = sizeof(msg) };
		uint8_t hdr[BEACON_RELAY_DELIVER_HDR] = { BEACON_RELAY_DELIVER };

		make_frame(frame, FLEN, (uint8_t)(i + 7));
		proto_beacon_relay_hdr(f->a.node, f->u.node, msg);
		memcpy(msg + BEACON_RELAY_HDR, frame, FLEN);
		wss_beacon_ep(&d.ep);
		assert_int_equal(transport_send(f->ta, &d, 1), 1);
		proto_put32(hdr + 1, f->a.node);
		crc = proto_crc32_update(crc, hdr, sizeof(hdr));
		crc = proto_crc32_update(crc, frame, FLEN);
	}
	for (int i = 0; i < 2000 && got_n < N; i++) {
		ssize_t n;

		pilot_loop_run_once(f->loop, 5);
		while (got_n < N && (n = recv(f->ufd, got, sizeof(got), MSG_DONTWAIT)) > 0) {
			got_n++;
			ok += n == BEACON_RELAY_DELIVER_HDR + FLEN;
			gcrc = proto_crc32_update(gcrc, got, (size_t)n);
		}
	}
	assert_int_equal(got_n, N);
	assert_int_equal(ok, N);
	assert_int_equal(gcrc, crc);
	assert_int_equal(bstats(f).relay_udp_wss, N);
	assert_int_equal(bstats(f).relay_wss_udp, N);
	/* runs of equal-size datagrams to the UDP node left as GSO super-packets (the
	 * kernel cut them: each arrived above as its own datagram) */
	assert_true(bstats(f).gso_sends > 0);
	{ /* over TLS too, the client's own reader (SSL_read) parsed the frames */
		wss_stats ws;

		wss_transport_get_stats(f->ta, &ws);
		assert_true(ws.own_reader);
	}
}

/* The daemon's own frame reader (wss_frame_parse): RFC 6455 §5.2 headers a
 * server may send, and what it may not. */
static void test_wss_frame_parse(void **state)
{
	wss_frame f;

	(void)state;
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x81\x05Hello", 7, &f), 2);
	assert_int_equal(f.opcode, 1);
	assert_true(f.fin);
	assert_int_equal(f.len, 5);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x81", 1, &f), 0);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x82\x7e\x01", 3, &f), 0);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x82\x7e\x01\x00", 4, &f), 4);
	assert_int_equal(f.len, 256);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x02\x7f\0\0\0\0\0\x01\0", 9, &f), 0);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x02\x7f\0\0\0\0\0\x01\0\0", 10, &f), 10);
	assert_int_equal(f.len, 65536);
	assert_false(f.fin);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x00\x03", 2, &f), 2); /* continuation */
	assert_int_equal(f.opcode, 0);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x89\x04ping", 6, &f), 2);
	assert_int_equal(f.opcode, 9);
	/* refused: masked (a server's frames are not), RSV bits, reserved opcodes, a
	 * control frame fragmented or over 125 bytes, a length with its top bit */
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x81\x85\x37\xfa\x21\x3d", 6, &f), -1);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\xc1\x00", 2, &f), -1);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x83\x00", 2, &f), -1);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x8b\x00", 2, &f), -1);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x09\x00", 2, &f), -1);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x89\x7e\x00\x7e", 4, &f), -1);
	assert_int_equal(wss_frame_parse((const uint8_t *)"\x82\x7f\x80\0\0\0\0\0\0\0", 10, &f), -1);
}

/* A quiet compat node is pinged by the bridge (a third of its idle limit); its own
 * reader answers each ping with a pong, which keeps the connection. */
static void test_wss_own_reader_pong(void **state)
{
	fx *f = *state;
	wss_stats ws;

	g_idle_ms = 600;
	bridge_start(f, 0, NULL, NULL, 0);
	g_idle_ms = 0;
	connect_both(f, "ws", NULL);
	wss_transport_get_stats(f->ta, &ws);
	assert_true(ws.own_reader);
	pump(f, 1500);
	assert_true(wstats(f).pings_sent > 0);
	assert_true(wstats(f).pongs > 0);
	assert_int_equal(wstats(f).idle_closed, 0);
	assert_true(wss_transport_connected(f->ta));
	wss_transport_get_stats(f->ta, &ws);
	assert_int_equal(ws.disconnects, 0);
}

/* The bridge closes a compat node's connection (another connection authenticated
 * as the node replaced it): the own reader takes the close frame, answers it, and
 * the connection ends at once (lws's reading is off: no wait for a close
 * acknowledgement it would read). */
static void test_wss_own_reader_close(void **state)
{
	fx *f = *state;
	wss_stats ws;
	uint64_t t0;
	raw r;

	bridge_start(f, 0, NULL, NULL, 0);
	f->ta = client(f, &f->a, &f->ra, "ws", NULL);
	PUMP_UNTIL(f, 3000, wss_transport_connected(f->ta));
	wss_transport_get_stats(f->ta, &ws);
	assert_true(ws.own_reader);
	assert_int_equal(raw_auth(f, &r, f->a.node, &f->a.id, 0), 0);
	t0 = pilot_now_ms();
	do {
		pilot_loop_run_once(f->loop, 5);
		wss_transport_get_stats(f->ta, &ws);
	} while (ws.disconnects == 0 && pilot_now_ms() < t0 + 4000);
	assert_int_equal(ws.disconnects, 1);
	assert_true(pilot_now_ms() - t0 < 1500);
	assert_int_equal(wstats(f).replaced, 1);
	close(r.fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wss_vector),
		cmocka_unit_test(test_wss_frame_encoding),
		cmocka_unit_test_setup_teardown(test_wss_relay_burst, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wss_relay_ws_to_ws, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wss_bridge_udp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wss_auth_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wss_misbehaving_peer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wss_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wss_restart_reconnects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wss_peers_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wss_global_queue_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wss_tls_pinned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wss_burst_tls_udp, setup, teardown),
		cmocka_unit_test(test_wss_frame_parse),
		cmocka_unit_test_setup_teardown(test_wss_own_reader_pong, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wss_own_reader_close, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
