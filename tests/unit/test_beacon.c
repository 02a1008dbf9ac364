/* The beacon on a real loop and socket with a real in-memory registry: nodes are
 * registered with real Ed25519 keys, UDP clients on loopback drive it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "tests/unit/test_regreq.h"
#include <sodium.h>

#include "lib/crypto.h"
#include "lib/loop.h"
#include "lib/proto.h"
#include "rendezvous/beacon.h"
#include "rendezvous/beacon_internal.h"
#include "rendezvous/registry.h"

typedef struct tnode {
	pilot_identity id;
	uint32_t node;
	int fd;          /* its UDP socket */
	uint16_t port;   /* that socket's port */
	const char *ip;  /* where its registry requests come from */
} tnode;

typedef struct fx {
	pilot_loop *loop;
	registry *reg;
	beacon *b;
	struct sockaddr_in baddr;
	tnode a, b_, c, d; /* a, b_, c register from 127.0.0.1; d from 198.18.0.9 */
	int x;             /* a stranger's socket on 127.0.0.2 */
	uint16_t xport;
} fx;

/* ---- helpers ---------------------------------------------------------------- */

static const char *jtype(json_object *o)
{
	return json_object_get_string(json_object_object_get(o, "type"));
}

static void sign_b64(const tnode *t, const char *msg, char out[96])
{
	uint8_t sig[64];

	pilot_ed25519_sign(&t->id, msg, strlen(msg), sig);
	pilot_b64_encode(sig, sizeof(sig), out, 96);
}

static int udp_socket(const char *ip, uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	inet_pton(AF_INET, ip, &sa.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void node_register(fx *f, tnode *t, const char *ip)
{
	char pk[48];
	json_object *o;

	t->ip = ip;
	pilot_identity_generate(&t->id);
	pilot_b64_encode(t->id.pk, 32, pk, sizeof(pk));
	o = t_reg_req(f->reg, ip,
		      "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:4000\"}", pk);
	assert_string_equal(jtype(o), "register_ok");
	t->node = (uint32_t)json_object_get_int64(json_object_object_get(o, "node_id"));
	json_object_put(o);
	t->fd = udp_socket("127.0.0.1", &t->port);
}

static void set_public(fx *f, tnode *t)
{
	char msg[64], sig[96];
	json_object *o;

	snprintf(msg, sizeof(msg), "set_visibility:%u", t->node);
	sign_b64(t, msg, sig);
	o = t_reg_req(f->reg, t->ip,
		      "{\"type\":\"set_visibility\",\"node_id\":%u,\"public\":true,\"signature\":\"%s\"}",
		      t->node, sig);
	assert_string_equal(jtype(o), "set_visibility_ok");
	json_object_put(o);
}

static void report_trust(fx *f, tnode *a, tnode *b)
{
	char msg[64], sig[96];
	json_object *o;

	snprintf(msg, sizeof(msg), "report_trust:%u:%u", a->node, b->node);
	sign_b64(a, msg, sig);
	o = t_reg_req(f->reg, a->ip,
		      "{\"type\":\"report_trust\",\"node_id\":%u,\"peer_id\":%u,\"signature\":\"%s\"}",
		      a->node, b->node, sig);
	assert_string_equal(jtype(o), "report_trust_ok");
	json_object_put(o);
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	reg_config rc = { .ratelimit_disabled = true };
	char err[256] = "";

	assert_non_null(f);
	assert_non_null(f->loop = pilot_loop_new());
	f->reg = reg_open(&rc, err, sizeof(err));
	assert_non_null(f->reg);
	f->b = beacon_new(f->loop, "127.0.0.1:0", f->reg, err, sizeof(err));
	if (!f->b)
		fail_msg("beacon_new: %s", err);
	f->baddr.sin_family = AF_INET;
	f->baddr.sin_port = htons((uint16_t)beacon_local_port(f->b));
	inet_pton(AF_INET, "127.0.0.1", &f->baddr.sin_addr);
	node_register(f, &f->a, "127.0.0.1");
	node_register(f, &f->b_, "127.0.0.1");
	node_register(f, &f->c, "127.0.0.1");
	node_register(f, &f->d, "198.18.0.9");
	f->x = udp_socket("127.0.0.2", &f->xport);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;

	beacon_free(f->b);
	reg_close(f->reg);
	pilot_loop_free(f->loop);
	close(f->a.fd);
	close(f->b_.fd);
	close(f->c.fd);
	close(f->d.fd);
	close(f->x);
	free(f);
	return 0;
}

/* Send to the beacon and let it handle (and flush) the datagram. */
static void tx(fx *f, int fd, const void *buf, size_t len)
{
	assert_int_equal(sendto(fd, buf, len, 0, (struct sockaddr *)&f->baddr, sizeof(f->baddr)),
			 (ssize_t)len);
	pilot_loop_run_once(f->loop, 200);
}

/* Receive one datagram (waiting up to ms); -1 if none. */
static ssize_t rx(int fd, uint8_t *buf, size_t cap, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, ms) <= 0)
		return -1;
	return recv(fd, buf, cap, 0);
}

static void drain(int fd)
{
	uint8_t buf[2048];

	while (rx(fd, buf, sizeof(buf), 20) >= 0)
		;
}

static void expect_nothing(int fd)
{
	uint8_t buf[2048];

	assert_true(rx(fd, buf, sizeof(buf), 50) < 0);
}

static beacon_stats stats(fx *f)
{
	beacon_stats st;

	beacon_get_stats(f->b, &st);
	return st;
}

static void discover(fx *f, int fd, uint32_t node)
{
	uint8_t m[5];

	m[0] = BEACON_DISCOVER;
	proto_put32(m + 1, node);
	tx(f, fd, m, sizeof(m));
	drain(fd);
}

static void signed_discover(fx *f, int fd, const tnode *t, uint64_t ts)
{
	uint8_t m[BEACON_SIGNED_DISCOVER_LEN];

	beacon_signed_discover(&t->id, t->node, ts, m);
	tx(f, fd, m, sizeof(m));
	drain(fd);
}

static void reply_bytes(uint8_t type, uint16_t port, uint8_t out[8])
{
	const uint8_t v[8] = { type, 4, 127, 0, 0, 1, (uint8_t)(port >> 8), (uint8_t)port };

	memcpy(out, v, 8);
}

static void expect_punch(int fd, uint16_t port)
{
	uint8_t buf[64], want[8];

	reply_bytes(BEACON_PUNCH_COMMAND, port, want);
	assert_int_equal(rx(fd, buf, sizeof(buf), 500), 8);
	assert_memory_equal(buf, want, 8);
}

static size_t relay_msg(uint8_t *out, uint32_t from, uint32_t to, const uint8_t *frame, size_t flen)
{
	proto_beacon_relay_hdr(from, to, out);
	memcpy(out + BEACON_RELAY_HDR, frame, flen);
	return BEACON_RELAY_HDR + flen;
}

/* Relay a frame of kind magic and size flen from s to d; 1 if d got it byte-exact. */
static int relay_through(fx *f, int fd, uint32_t from, uint32_t to, int dfd, const char *magic,
			 size_t flen)
{
	uint8_t frame[256], msg[300], got[300];
	ssize_t n;

	for (size_t i = 0; i < flen; i++)
		frame[i] = (uint8_t)(i * 7);
	memcpy(frame, magic, 4);
	tx(f, fd, msg, relay_msg(msg, from, to, frame, flen));
	if ((n = rx(dfd, got, sizeof(got), 100)) < 0)
		return 0;
	assert_int_equal(n, BEACON_RELAY_DELIVER_HDR + flen);
	assert_int_equal(got[0], BEACON_RELAY_DELIVER);
	assert_int_equal(proto_get32(got + 1), from);
	assert_memory_equal(got + BEACON_RELAY_DELIVER_HDR, frame, flen);
	return 1;
}

/* ---- tests -------------------------------------------------------------------- */

/* vectors §8: DiscoverReply for an IPv4 source is 02 04 ip ip ip ip port port. */
static void test_beacon_discover_reply_bytes(void **state)
{
	fx *f = *state;
	uint8_t m[5] = { 0x01, 0, 0, 0, 0 }, buf[64], want[8];

	proto_put32(m + 1, f->a.node);
	tx(f, f->a.fd, m, sizeof(m));
	reply_bytes(BEACON_DISCOVER_REPLY, f->a.port, want);
	assert_int_equal(rx(f->a.fd, buf, sizeof(buf), 500), 8);
	assert_memory_equal(buf, want, 8);
	assert_int_equal(stats(f).discovers, 1);
	assert_int_equal(stats(f).discover_replies, 1);
}

/* Discover node 0 (vectors §8 "at start-up"): answered, nothing recorded. */
static void test_beacon_node0_query(void **state)
{
	fx *f = *state;
	const uint8_t m[5] = { 0x01, 0x00, 0x00, 0x00, 0x00 };
	uint8_t buf[64], want[8];

	tx(f, f->x, m, sizeof(m));
	assert_int_equal(rx(f->x, buf, sizeof(buf), 500), 8);
	want[0] = 0x02;
	want[1] = 4;
	inet_pton(AF_INET, "127.0.0.2", want + 2);
	want[6] = (uint8_t)(f->xport >> 8);
	want[7] = (uint8_t)f->xport;
	assert_memory_equal(buf, want, 8);
	assert_int_equal(stats(f).nodes, 0);
	assert_int_equal(stats(f).discovers_verified, 0);
}

/* A dual-stack ":port" beacon answers an IPv4 client (IPv4-mapped) with ip_len 4,
 * and an IPv6 client with ip_len 16 (vectors §8 second form). */
static void test_beacon_dual_stack(void **state)
{
	fx *f = *state;
	char err[256];
	beacon *b = beacon_new(f->loop, ":0", NULL, err, sizeof(err));
	uint16_t port;
	struct sockaddr_in6 to6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_in to4 = { .sin_family = AF_INET };
	uint8_t q[5] = { 1, 0, 0, 0, 0 }, buf[64], want[8];
	int fd6;

	if (!b)
		fail_msg("beacon_new: %s", err);
	to4.sin_port = to6.sin6_port = htons((uint16_t)beacon_local_port(b));
	inet_pton(AF_INET, "127.0.0.1", &to4.sin_addr);
	assert_int_equal(sendto(f->a.fd, q, 5, 0, (struct sockaddr *)&to4, sizeof(to4)), 5);
	pilot_loop_run_once(f->loop, 200);
	reply_bytes(BEACON_DISCOVER_REPLY, f->a.port, want);
	assert_int_equal(rx(f->a.fd, buf, sizeof(buf), 500), 8);
	assert_memory_equal(buf, want, 8);

	fd6 = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (fd6 >= 0 && sendto(fd6, q, 5, 0, (struct sockaddr *)&to6, sizeof(to6)) == 5) {
		struct sockaddr_in6 me;
		socklen_t len = sizeof(me);

		pilot_loop_run_once(f->loop, 200);
		assert_int_equal(getsockname(fd6, (struct sockaddr *)&me, &len), 0);
		port = ntohs(me.sin6_port);
		assert_int_equal(rx(fd6, buf, sizeof(buf), 500), 20);
		assert_int_equal(buf[0], 0x02);
		assert_int_equal(buf[1], 16);
		assert_memory_equal(buf + 2, &in6addr_loopback, 16);
		assert_int_equal(proto_get16(buf + 18), port);
	}
	if (fd6 >= 0)
		close(fd6);
	beacon_free(b);
}

/* (a) Source IP = the registry's IP for a live node → verified. */
static void test_beacon_verified_by_ip(void **state)
{
	fx *f = *state;

	discover(f, f->a.fd, f->a.node);
	assert_int_equal(stats(f).discovers_verified, 1);
	assert_int_equal(stats(f).nodes, 1);
	/* d registered from 198.18.0.9: an unsigned Discover from loopback proves nothing */
	discover(f, f->d.fd, f->d.node);
	assert_int_equal(stats(f).discovers_verified, 1);
	assert_int_equal(stats(f).nodes, 1);
	/* and unknown node IDs get a reply but no entry */
	discover(f, f->x, 424242);
	assert_int_equal(stats(f).nodes, 1);
	assert_int_equal(stats(f).discover_replies, 3);
}

/* (b) Signed Discover; the reply is still the plain DiscoverReply. */
static void test_beacon_verified_by_signature(void **state)
{
	fx *f = *state;
	uint8_t m[BEACON_SIGNED_DISCOVER_LEN], buf[64], want[8];

	beacon_signed_discover(&f->d.id, f->d.node, (uint64_t)time(NULL), m);
	tx(f, f->d.fd, m, sizeof(m));
	reply_bytes(BEACON_DISCOVER_REPLY, f->d.port, want);
	assert_int_equal(rx(f->d.fd, buf, sizeof(buf), 500), 8);
	assert_memory_equal(buf, want, 8);
	assert_int_equal(stats(f).discovers_verified, 1);
	assert_int_equal(stats(f).verify_failed, 0);
	assert_int_equal(stats(f).nodes, 1);
}

/* Replayed, stale, future, wrong-key and corrupted signed Discovers are refused,
 * and cannot move a verified endpoint. */
static void test_beacon_signature_rejections(void **state)
{
	fx *f = *state;
	uint64_t now = (uint64_t)time(NULL);
	uint8_t m[BEACON_SIGNED_DISCOVER_LEN], pr[9];
	tnode *d = &f->d;

	signed_discover(f, d->fd, d, now - 200);                        /* stale */
	signed_discover(f, d->fd, d, now + 200);                        /* future */
	assert_int_equal(stats(f).nodes, 0);
	beacon_signed_discover(&f->a.id, d->node, now, m);              /* a's key for d */
	tx(f, f->x, m, sizeof(m));
	beacon_signed_discover(&d->id, d->node, now, m);
	m[60] ^= 1;                                                     /* bad signature */
	tx(f, f->x, m, sizeof(m));
	assert_int_equal(stats(f).verify_failed, 4);
	assert_int_equal(stats(f).nodes, 0);

	beacon_signed_discover(&d->id, d->node, now, m);
	tx(f, d->fd, m, sizeof(m));                                     /* accepted */
	drain(d->fd);
	assert_int_equal(stats(f).discovers_verified, 1);
	tx(f, f->x, m, sizeof(m));                                      /* replay elsewhere */
	signed_discover(f, f->x, d, now - 1);                           /* older ts */
	assert_int_equal(stats(f).verify_failed, 6);
	discover(f, f->x, d->node);                                     /* unsigned claim */
	drain(f->x);

	/* d's endpoint did not move: a's PunchRequest learns d's real port */
	set_public(f, d);
	discover(f, f->a.fd, f->a.node);
	proto_beacon_punch_request(f->a.node, d->node, pr, sizeof(pr));
	tx(f, f->a.fd, pr, sizeof(pr));
	expect_punch(f->a.fd, d->port);
	expect_punch(d->fd, f->a.port);
	expect_nothing(f->x);

	/* a newer proof does move it */
	signed_discover(f, f->x, d, now + 1);
	assert_int_equal(stats(f).discovers_verified, 3);
}

/* vectors §5.6: 05 00 00 00 01 00 00 00 02 PILT… → 06 00 00 00 01 PILT… */
static void test_beacon_relay_vector(void **state)
{
	fx *f = *state;
	static const uint8_t relay[47] = {
		0x05, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x50, 0x49, 0x4C, 0x54, 0x11, 0x01, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xC0, 0x00, 0x03,
		0xE8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x14, 0x5E, 0xD8, 0x74,
	};
	static const uint8_t deliver[43] = {
		0x06, 0x00, 0x00, 0x00, 0x01, 0x50, 0x49, 0x4C, 0x54, 0x11, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xC0, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x14, 0x5E, 0xD8, 0x74,
	};
	uint8_t got[128];

	/* the registry numbers nodes from 1, so a and b are the vector's nodes 1 and 2 */
	assert_int_equal(f->a.node, 1);
	assert_int_equal(f->b_.node, 2);
	set_public(f, &f->b_);
	discover(f, f->a.fd, 1);
	discover(f, f->b_.fd, 2);
	tx(f, f->a.fd, relay, sizeof(relay));
	assert_int_equal(rx(f->b_.fd, got, sizeof(got), 500), sizeof(deliver));
	assert_memory_equal(got, deliver, sizeof(deliver));
	assert_int_equal(stats(f).relayed_packets, 1);
	assert_int_equal(stats(f).relayed_bytes, 38);
	assert_int_equal(stats(f).relay_denied, 0);
}

/* Unverified sender, spoofed sender ID, unknown destination. */
static void test_beacon_relay_denied_unverified(void **state)
{
	fx *f = *state;

	set_public(f, &f->a);
	set_public(f, &f->b_);
	discover(f, f->b_.fd, f->b_.node);
	/* a never proved its endpoint */
	assert_false(relay_through(f, f->a.fd, f->a.node, f->b_.node, f->b_.fd, "PILS", 64));
	discover(f, f->a.fd, f->a.node);
	assert_true(relay_through(f, f->a.fd, f->a.node, f->b_.node, f->b_.fd, "PILS", 64));
	/* someone else (another port, another IP) claiming to be a */
	assert_false(relay_through(f, f->c.fd, f->a.node, f->b_.node, f->b_.fd, "PILS", 64));
	assert_false(relay_through(f, f->x, f->a.node, f->b_.node, f->b_.fd, "PILS", 64));
	/* destination without a verified endpoint */
	assert_false(relay_through(f, f->a.fd, f->a.node, f->c.node, f->c.fd, "PILS", 64));
	assert_int_equal(stats(f).relay_denied, 4);
	assert_int_equal(stats(f).relayed_packets, 1);
	expect_nothing(f->b_.fd);
}

/* Issue 12 attack 2: with only a's public key, a stranger on 127.0.0.2 sends an
 * unsigned register naming that key from 127.0.0.2. Neither its unsigned Discover
 * for a (proof (a) by source IP) nor relayed frames for a may follow it. */
static void test_beacon_unsigned_register_moves_nothing(void **state)
{
	fx *f = *state;
	char pk[48];
	json_object *o;

	set_public(f, &f->a);
	set_public(f, &f->b_);
	discover(f, f->a.fd, f->a.node);
	discover(f, f->b_.fd, f->b_.node);
	assert_int_equal(stats(f).discovers_verified, 2);
	pilot_b64_encode(f->a.id.pk, 32, pk, sizeof(pk));
	o = t_reg_req(f->reg, "127.0.0.2",
		      "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:%u\"}", pk,
		      f->xport);
	assert_string_equal(jtype(o), "register_ok");
	json_object_put(o);
	discover(f, f->x, f->a.node);
	assert_int_equal(stats(f).discovers_verified, 2);
	/* frames for a still go to a, not to the stranger */
	assert_true(relay_through(f, f->b_.fd, f->b_.node, f->a.node, f->a.fd, "PILS", 64));
	expect_nothing(f->x);
	/* nor may the stranger send as a */
	assert_false(relay_through(f, f->x, f->a.node, f->b_.node, f->b_.fd, "PILS", 64));
}

/* Private nodes without trust: key exchange yes (exact size only), data only as
 * an answer to the other side within 60 s, everything once they trust each other. */
static void test_beacon_relay_privacy(void **state)
{
	fx *f = *state;
	tnode *a = &f->a, *b = &f->b_;

	discover(f, a->fd, a->node);
	discover(f, b->fd, b->node);
	assert_false(relay_through(f, a->fd, a->node, b->node, b->fd, "PILS", 70));
	assert_false(relay_through(f, a->fd, a->node, b->node, b->fd, "PILT", 38));
	assert_false(relay_through(f, a->fd, a->node, b->node, b->fd, "PILA", 137)); /* padded */
	assert_true(relay_through(f, a->fd, a->node, b->node, b->fd, "PILK", 40));
	assert_true(relay_through(f, a->fd, a->node, b->node, b->fd, "PILA", 136));
	/* a's key exchange does not open b to a's data */
	assert_false(relay_through(f, a->fd, a->node, b->node, b->fd, "PILS", 70));
	/* b answers: now both may exchange frames (the port-444 handshake) */
	assert_true(relay_through(f, b->fd, b->node, a->node, a->fd, "PILA", 136));
	assert_true(relay_through(f, a->fd, a->node, b->node, b->fd, "PILS", 70));
	assert_true(relay_through(f, b->fd, b->node, a->node, a->fd, "PILS", 90));
	/* ... for 60 s after the last frame */
	beacon_advance_clock(f->b, BEACON_FLOW_MS + 1000);
	discover(f, a->fd, a->node);
	discover(f, b->fd, b->node);
	assert_false(relay_through(f, a->fd, a->node, b->node, b->fd, "PILS", 70));
	/* a third node cannot ride on that */
	discover(f, f->c.fd, f->c.node);
	assert_false(relay_through(f, f->c.fd, f->c.node, b->node, b->fd, "PILS", 70));
	/* mutual trust: allowed */
	report_trust(f, a, b);
	report_trust(f, b, a);
	assert_true(relay_through(f, a->fd, a->node, b->node, b->fd, "PILS", 70));
	assert_true(relay_through(f, a->fd, a->node, b->node, b->fd, "PILT", 38));
	assert_int_equal(stats(f).relay_denied, 6);
}

static void handshake_call(fx *f, tnode *from, const char *fmt, const char *v1)
{
	char sig[96], body[512];
	json_object *o;

	sign_b64(from, v1, sig);
	snprintf(body, sizeof(body), fmt, sig);
	o = t_reg_req(f->reg, from->ip, "%s", body);
	assert_string_not_equal(jtype(o), "error");
	json_object_put(o);
}

/* Rule 4, fourth case: a handshake request on record (either direction, until it
 * is answered) lets any frame through between the two nodes. */
static void test_beacon_relay_handshake_pending(void **state)
{
	fx *f = *state;
	tnode *a = &f->a, *b = &f->b_, *c = &f->c;
	char body[256], v1[64];

	discover(f, a->fd, a->node);
	discover(f, b->fd, b->node);
	discover(f, c->fd, c->node);
	assert_false(reg_handshake_pending(f->reg, a->node, b->node));
	assert_false(relay_through(f, a->fd, a->node, b->node, b->fd, "PILS", 70));
	/* a asks b for a handshake through the registry */
	snprintf(body, sizeof(body), "{\"type\":\"request_handshake\",\"from_node_id\":%u,"
		 "\"to_node_id\":%u,\"justification\":\"hi\",\"signature\":\"%%s\"}", a->node, b->node);
	snprintf(v1, sizeof(v1), "handshake:%u:%u", a->node, b->node);
	handshake_call(f, a, body, v1);
	assert_true(reg_handshake_pending(f->reg, a->node, b->node));
	assert_true(reg_handshake_pending(f->reg, b->node, a->node));
	assert_false(reg_handshake_pending(f->reg, a->node, c->node));
	/* both directions, any frame kind, beyond the key-exchange budget */
	for (int i = 0; i < 12; i++)
		assert_true(relay_through(f, a->fd, a->node, b->node, b->fd, "PILS", 70));
	assert_true(relay_through(f, b->fd, b->node, a->node, a->fd, "PILT", 38));
	/* not a third node */
	assert_false(relay_through(f, c->fd, c->node, b->node, b->fd, "PILS", 70));
	/* b declines: the record goes, and with it the permission */
	snprintf(body, sizeof(body), "{\"type\":\"respond_handshake\",\"node_id\":%u,"
		 "\"peer_id\":%u,\"accept\":false,\"signature\":\"%%s\"}", b->node, a->node);
	snprintf(v1, sizeof(v1), "respond:%u:%u", b->node, a->node);
	handshake_call(f, b, body, v1);
	assert_false(reg_handshake_pending(f->reg, a->node, b->node));
	assert_false(relay_through(f, a->fd, a->node, b->node, b->fd, "PILS", 70));
	assert_int_equal(stats(f).relay_denied, 3);
}

static void on_inbox(void *arg, uint32_t node)
{
	beacon_notify(arg, node, BEACON_NOTIFY_HANDSHAKE);
}

static void request_hs(fx *f, tnode *from, tnode *to)
{
	char body[256], v1[64];

	snprintf(body, sizeof(body), "{\"type\":\"request_handshake\",\"from_node_id\":%u,"
		 "\"to_node_id\":%u,\"justification\":\"hi\",\"signature\":\"%%s\"}",
		 from->node, to->node);
	snprintf(v1, sizeof(v1), "handshake:%u:%u", from->node, to->node);
	handshake_call(f, from, body, v1);
}

static void expect_notify(int fd)
{
	uint8_t buf[64];

	assert_int_equal(rx(fd, buf, sizeof(buf), 500), 2);
	assert_int_equal(buf[0], BEACON_NOTIFY);
	assert_int_equal(buf[1], BEACON_NOTIFY_HANDSHAKE);
}

/* A handshake filed in a node's registry inbox makes the beacon send it Notify at
 * its verified endpoint at once; more within a second wait for the gap and
 * coalesce; nodes without a verified endpoint get nothing (they poll). */
static void test_beacon_notify_inbox(void **state)
{
	fx *f = *state;
	tnode *a = &f->a, *b = &f->b_, *c = &f->c, *d = &f->d;
	char body[256], v1[64];

	reg_set_inbox_cb(f->reg, on_inbox, f->b);
	discover(f, a->fd, a->node);
	discover(f, b->fd, b->node);
	request_hs(f, b, a);
	expect_notify(a->fd);
	assert_int_equal(stats(f).notifies_sent, 1);
	/* a second request within the gap: deferred, a third coalesces into it */
	request_hs(f, c, a);
	request_hs(f, d, a);
	expect_nothing(a->fd);
	assert_int_equal(stats(f).notifies_deferred, 1);
	assert_int_equal(stats(f).notifies_coalesced, 1);
	beacon_notify_due(f->b); /* not due yet */
	expect_nothing(a->fd);
	beacon_advance_clock(f->b, BEACON_NOTIFY_GAP_MS);
	beacon_notify_due(f->b);
	expect_notify(a->fd);
	expect_nothing(a->fd);
	assert_int_equal(stats(f).notifies_sent, 2);
	/* a's answer lands in b's inbox: b is told too */
	snprintf(body, sizeof(body), "{\"type\":\"respond_handshake\",\"node_id\":%u,"
		 "\"peer_id\":%u,\"accept\":true,\"signature\":\"%%s\"}", a->node, b->node);
	snprintf(v1, sizeof(v1), "respond:%u:%u", a->node, b->node);
	handshake_call(f, a, body, v1);
	expect_notify(b->fd);
	/* c never proved its endpoint: nothing to send to */
	request_hs(f, a, c);
	assert_int_equal(stats(f).notifies_unreachable, 1);
	assert_int_equal(stats(f).notifies_sent, 3);
	expect_nothing(c->fd);
	reg_set_inbox_cb(f->reg, NULL, NULL);
}

typedef struct fake_sink {
	uint32_t node, got_node;
	uint8_t msg[8];
	size_t len;
	int calls;
} fake_sink;

static bool sink_has(void *ctx, uint32_t node)
{
	return node == ((fake_sink *)ctx)->node;
}

static void sink_deliver(void *ctx, uint32_t node, const uint8_t *msg, size_t len)
{
	fake_sink *k = ctx;

	k->got_node = node;
	k->len = len < sizeof(k->msg) ? len : sizeof(k->msg);
	memcpy(k->msg, msg, k->len);
	k->calls++;
}

/* A node with a compat (WSS) connection gets its Notify there, rate-limited alike. */
static void test_beacon_notify_wss(void **state)
{
	fx *f = *state;
	fake_sink k = { .node = f->c.node };

	beacon_set_wss_sink(f->b, &(beacon_wss_sink){ .has = sink_has, .deliver = sink_deliver, .ctx = &k });
	beacon_notify(f->b, f->c.node, BEACON_NOTIFY_HANDSHAKE);
	assert_int_equal(k.calls, 1);
	assert_int_equal(k.got_node, f->c.node);
	assert_int_equal(k.len, 2);
	assert_int_equal(k.msg[0], BEACON_NOTIFY);
	assert_int_equal(k.msg[1], BEACON_NOTIFY_HANDSHAKE);
	beacon_notify(f->b, f->c.node, BEACON_NOTIFY_HANDSHAKE);
	assert_int_equal(k.calls, 1);
	beacon_advance_clock(f->b, BEACON_NOTIFY_GAP_MS);
	beacon_notify_due(f->b);
	assert_int_equal(k.calls, 2);
	expect_nothing(f->c.fd);
	assert_int_equal(stats(f).notifies_sent, 2);
	beacon_set_wss_sink(f->b, NULL);
}

/* Key exchanges toward nodes one may not talk to are limited to 10/s per sender. */
static void test_beacon_relay_kx_rate(void **state)
{
	fx *f = *state;
	int ok = 0;

	discover(f, f->a.fd, f->a.node);
	discover(f, f->b_.fd, f->b_.node);
	for (int i = 0; i < 15; i++)
		ok += relay_through(f, f->a.fd, f->a.node, f->b_.node, f->b_.fd, "PILK", 40);
	assert_int_equal(ok, 10);
	beacon_advance_clock(f->b, 1000);
	assert_true(relay_through(f, f->a.fd, f->a.node, f->b_.node, f->b_.fd, "PILK", 40));
}

static void test_beacon_punch(void **state)
{
	fx *f = *state;
	uint8_t pr[9], rev[9], pc[9];

	set_public(f, &f->b_);
	set_public(f, &f->c);
	discover(f, f->a.fd, f->a.node);
	discover(f, f->b_.fd, f->b_.node);
	discover(f, f->c.fd, f->c.node);
	proto_beacon_punch_request(f->a.node, f->b_.node, pr, sizeof(pr));
	tx(f, f->a.fd, pr, sizeof(pr));
	expect_punch(f->a.fd, f->b_.port);
	expect_punch(f->b_.fd, f->a.port);
	assert_int_equal(stats(f).punch_commands, 2);
	/* 1/s per (requester, target) pair */
	tx(f, f->a.fd, pr, sizeof(pr));
	expect_nothing(f->a.fd);
	expect_nothing(f->b_.fd);
	/* ... but another target in the same second is granted (a daemon asks for
	 * all its relay peers in one tick) */
	proto_beacon_punch_request(f->a.node, f->c.node, pc, sizeof(pc));
	tx(f, f->a.fd, pc, sizeof(pc));
	expect_punch(f->a.fd, f->c.port);
	expect_punch(f->c.fd, f->a.port);
	beacon_advance_clock(f->b, 1000);
	tx(f, f->a.fd, pr, sizeof(pr));
	expect_punch(f->a.fd, f->b_.port);
	expect_punch(f->b_.fd, f->a.port);
	/* the reverse direction has its own budget */
	proto_beacon_punch_request(f->b_.node, f->a.node, rev, sizeof(rev));
	tx(f, f->b_.fd, rev, sizeof(rev));
	expect_punch(f->b_.fd, f->a.port);
	expect_punch(f->a.fd, f->b_.port);
	assert_int_equal(stats(f).punch_requests, 5);
	assert_int_equal(stats(f).punch_commands, 8);
	assert_int_equal(stats(f).punch_denied, 1);
}

/* A requester gets at most 20 PunchRequests per second over all targets. */
static void test_beacon_punch_requester_cap(void **state)
{
	fx *f = *state;
	tnode t[21];
	uint8_t pr[9];

	set_public(f, &f->a);
	discover(f, f->a.fd, f->a.node);
	for (int i = 0; i < 21; i++) {
		node_register(f, &t[i], "127.0.0.1");
		discover(f, t[i].fd, t[i].node);
	}
	for (int i = 0; i < 21; i++) {
		proto_beacon_punch_request(f->a.node, t[i].node, pr, sizeof(pr));
		tx(f, f->a.fd, pr, sizeof(pr));
	}
	assert_int_equal(stats(f).punch_commands, 40);
	assert_int_equal(stats(f).punch_denied, 1);
	for (int i = 0; i < 20; i++)
		expect_punch(t[i].fd, f->a.port);
	expect_nothing(t[20].fd);
	drain(f->a.fd);
	/* the next second: the refused one is granted */
	beacon_advance_clock(f->b, 1000);
	tx(f, f->a.fd, pr, sizeof(pr));
	expect_punch(t[20].fd, f->a.port);
	assert_int_equal(stats(f).punch_commands, 42);
	for (int i = 0; i < 21; i++)
		close(t[i].fd);
}

static void test_beacon_punch_denied(void **state)
{
	fx *f = *state;
	uint8_t pr[9];

	discover(f, f->a.fd, f->a.node);
	discover(f, f->c.fd, f->c.node);
	/* private target, no trust */
	proto_beacon_punch_request(f->a.node, f->c.node, pr, sizeof(pr));
	tx(f, f->a.fd, pr, sizeof(pr));
	expect_nothing(f->a.fd);
	expect_nothing(f->c.fd);
	/* target without an endpoint */
	set_public(f, &f->b_);
	beacon_advance_clock(f->b, 1000);
	proto_beacon_punch_request(f->a.node, f->b_.node, pr, sizeof(pr));
	tx(f, f->a.fd, pr, sizeof(pr));
	expect_nothing(f->a.fd);
	/* requester spoofed from another IP */
	discover(f, f->b_.fd, f->b_.node);
	proto_beacon_punch_request(f->a.node, f->b_.node, pr, sizeof(pr));
	tx(f, f->x, pr, sizeof(pr));
	expect_nothing(f->x);
	expect_nothing(f->b_.fd);
	assert_int_equal(stats(f).punch_denied, 3);
	assert_int_equal(stats(f).punch_commands, 0);
}

/* A requester whose registry IP matches may punch without a prior Discover (a). */
static void test_beacon_punch_proves_by_ip(void **state)
{
	fx *f = *state;
	uint8_t pr[9];

	set_public(f, &f->b_);
	discover(f, f->b_.fd, f->b_.node);
	proto_beacon_punch_request(f->a.node, f->b_.node, pr, sizeof(pr));
	tx(f, f->a.fd, pr, sizeof(pr));
	expect_punch(f->a.fd, f->b_.port);
	expect_punch(f->b_.fd, f->a.port);
	assert_int_equal(stats(f).nodes, 2);
}

static void test_beacon_malformed(void **state)
{
	fx *f = *state;
	static const struct { uint8_t b[12]; size_t len; } bad[] = {
		{ { 0x01, 0x00, 0x00 }, 3 },                         /* short Discover */
		{ { 0x03, 0, 0, 0, 1, 0, 0, 0 }, 8 },                 /* short PunchRequest */
		{ { 0x05, 0, 0, 0, 1, 0, 0, 0, 2 }, 9 },              /* Relay without frame */
		{ { 0x05, 0, 0, 0, 1, 0, 0, 0, 2, 'P', 'I', 'L' }, 12 }, /* frame too short */
		{ { 0x02, 0x05, 1, 2, 3, 4, 5, 0, 1 }, 9 },           /* ip_len 5 */
		{ { 0x0F, 1, 2, 3 }, 4 },                            /* unknown type */
		{ { 0x08 }, 1 },                                     /* unknown type */
		{ { 'P', 'I', 'L', 'T' }, 4 },                       /* a tunnel frame */
		{ { 0 }, 0 },                                        /* empty datagram */
	};
	const uint8_t sync[15] = { 0x07, 0, 0, 0, 7, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2 };
	const uint8_t notify[2] = { 0x0A, 0x01 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		tx(f, f->x, bad[i].b, bad[i].len);
	assert_int_equal(stats(f).dropped_malformed, sizeof(bad) / sizeof(bad[0]));
	tx(f, f->x, sync, sizeof(sync));
	tx(f, f->x, notify, sizeof(notify));
	assert_int_equal(stats(f).ignored, 2);
	expect_nothing(f->x);
	/* still serving */
	discover(f, f->a.fd, f->a.node);
	assert_int_equal(stats(f).nodes, 1);
}

static void test_beacon_expiry(void **state)
{
	fx *f = *state;

	discover(f, f->a.fd, f->a.node);
	discover(f, f->b_.fd, f->b_.node);
	beacon_advance_clock(f->b, 5 * 60 * 1000);
	discover(f, f->a.fd, f->a.node); /* refresh a only */
	beacon_advance_clock(f->b, 6 * 60 * 1000);
	beacon_expire(f->b);
	assert_int_equal(stats(f).nodes, 1);
	/* b is gone for relay purposes too */
	set_public(f, &f->b_);
	assert_false(relay_through(f, f->a.fd, f->a.node, f->b_.node, f->b_.fd, "PILS", 64));
	discover(f, f->b_.fd, f->b_.node);
	assert_true(relay_through(f, f->a.fd, f->a.node, f->b_.node, f->b_.fd, "PILS", 64));
}

/* Many nodes: the table grows, survives expiry compaction and finds everyone. */
static void test_beacon_table_growth(void **state)
{
	fx *f = *state;
	char err[256];
	beacon *b = beacon_new(f->loop, "127.0.0.1:0", NULL, err, sizeof(err));
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	pilot_identity id;
	uint8_t m[BEACON_SIGNED_DISCOVER_LEN];
	beacon_stats st;
	uint64_t now = (uint64_t)time(NULL);

	assert_non_null(b);
	pilot_identity_generate(&id);
	memset(&ss, 0, sizeof(ss));
	s4->sin_family = AF_INET;
	s4->sin_port = htons(9);
	inet_pton(AF_INET, "127.0.0.1", &s4->sin_addr);
	for (uint32_t n = 1; n <= 3000; n++) {
		beacon_signed_discover(&id, n, now, m);
		beacon_handle_datagram(b, m, sizeof(m), &ss);
		beacon_flush(b);
		if (n == 1500)
			beacon_advance_clock(b, 6 * 60 * 1000);
	}
	beacon_get_stats(b, &st);
	assert_int_equal(st.nodes, 3000);
	assert_int_equal(st.discovers_verified, 3000);
	beacon_advance_clock(b, 5 * 60 * 1000);
	beacon_expire(b);
	beacon_get_stats(b, &st);
	assert_int_equal(st.nodes, 1500);
	/* standalone: the first key binds the ID; another key for it is refused */
	beacon_signed_discover(&id, 2000, now + 1, m);
	beacon_handle_datagram(b, m, sizeof(m), &ss);
	pilot_identity_generate(&id);
	beacon_signed_discover(&id, 2000, now + 2, m);
	beacon_handle_datagram(b, m, sizeof(m), &ss);
	beacon_flush(b);
	beacon_get_stats(b, &st);
	assert_int_equal(st.discovers_verified, 3001);
	assert_int_equal(st.verify_failed, 1);
	beacon_free(b);
}

static void test_beacon_bad_addr(void **state)
{
	fx *f = *state;
	char err[256];

	assert_null(beacon_new(f->loop, "nonsense", NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "nonsense"));
	assert_null(beacon_new(f->loop, "::1:9001", NULL, err, sizeof(err)));
	assert_null(beacon_new(f->loop, ":99999", NULL, err, sizeof(err)));
	beacon_free(NULL);
}

/* ---- cluster (BEACON.md "Several beacons") ---------------------------------- */

/* A second beacon on the same registry; both peered with secret "s3cret". */
static beacon *peer_beacon(fx *f, struct sockaddr_in *addr)
{
	char err[256] = "", list[64];
	beacon *b2 = beacon_new(f->loop, "127.0.0.1:0", f->reg, err, sizeof(err));

	assert_non_null(b2);
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_port = htons((uint16_t)beacon_local_port(b2));
	inet_pton(AF_INET, "127.0.0.1", &addr->sin_addr);
	snprintf(list, sizeof(list), "127.0.0.1:%d", beacon_local_port(b2));
	assert_int_equal(beacon_set_peers(f->b, list, "s3cret", err, sizeof(err)), 0);
	snprintf(list, sizeof(list), "127.0.0.1:%d", beacon_local_port(f->b));
	assert_int_equal(beacon_set_peers(b2, list, "s3cret", err, sizeof(err)), 0);
	return b2;
}

static void pump(fx *f)
{
	for (int i = 0; i < 5; i++)
		pilot_loop_run_once(f->loop, 20);
}

/* a verified at beacon 1, b_ at beacon 2: beacon 2 announces b_ (Sync, at
 * once), and a's Relay to b_ goes a -> 1 -> 2 -> b_; b_'s answer goes back the
 * same way under the reply rule (private nodes with a key exchange first). */
static void test_beacon_cluster_relay(void **state)
{
	fx *f = *state;
	struct sockaddr_in b2addr;
	beacon *b2 = peer_beacon(f, &b2addr);
	uint8_t m[BEACON_SIGNED_DISCOVER_LEN], frame[PROTO_PILA_LEN], msg[300], got[300];
	beacon_stats s1, s2;
	ssize_t n;

	discover(f, f->a.fd, f->a.node);
	beacon_signed_discover(&f->b_.id, f->b_.node, (uint64_t)time(NULL), m);
	assert_int_equal(sendto(f->b_.fd, m, sizeof(m), 0, (struct sockaddr *)&b2addr, sizeof(b2addr)),
			 (ssize_t)sizeof(m));
	pump(f);
	drain(f->b_.fd);
	beacon_get_stats(f->b, &s1);
	assert_true(s1.syncs_received >= 1);

	/* private a and b_: a key exchange passes (exact PILA), through both beacons */
	memset(frame, 0x5a, sizeof(frame));
	memcpy(frame, "PILA", 4);
	assert_int_equal(sendto(f->a.fd, msg, relay_msg(msg, f->a.node, f->b_.node, frame, sizeof(frame)), 0,
				(struct sockaddr *)&f->baddr, sizeof(f->baddr)),
			 (ssize_t)(9 + sizeof(frame)));
	pump(f);
	n = rx(f->b_.fd, got, sizeof(got), 500);
	assert_int_equal(n, BEACON_RELAY_DELIVER_HDR + sizeof(frame));
	assert_int_equal(got[0], BEACON_RELAY_DELIVER);
	assert_int_equal(proto_get32(got + 1), f->a.node);
	assert_memory_equal(got + BEACON_RELAY_DELIVER_HDR, frame, sizeof(frame));
	/* b_ answers with data (not a key exchange): the reply rule, at beacon 2 */
	memcpy(frame, "PILS", 4);
	assert_int_equal(sendto(f->b_.fd, msg, relay_msg(msg, f->b_.node, f->a.node, frame, 100), 0,
				(struct sockaddr *)&b2addr, sizeof(b2addr)),
			 109);
	pump(f);
	assert_int_equal(rx(f->a.fd, got, sizeof(got), 500), BEACON_RELAY_DELIVER_HDR + 100);
	assert_int_equal(proto_get32(got + 1), f->b_.node);
	beacon_get_stats(f->b, &s1);
	beacon_get_stats(b2, &s2);
	assert_int_equal(s1.relay_forwarded, 1);
	assert_int_equal(s2.relay_from_peer, 1);
	assert_int_equal(s2.relay_forwarded, 1);
	assert_int_equal(s1.relay_from_peer, 1);
	/* a stranger's data frame for b_ still does not pass (no flow, not a kx) */
	assert_int_equal(sendto(f->c.fd, msg, relay_msg(msg, f->c.node, f->b_.node, frame, 100), 0,
				(struct sockaddr *)&f->baddr, sizeof(f->baddr)),
			 109);
	pump(f);
	expect_nothing(f->b_.fd);
	beacon_free(b2);
}

/* From the peer's address but without the secret's tag (or with a wrong one):
 * refused, nothing learned or delivered; a valid peer Relay for a node that is
 * not here is not sent on (no second hop). */
static void test_beacon_cluster_forged_peer(void **state)
{
	fx *f = *state;
	struct sockaddr_in b2addr;
	struct sockaddr_storage ss;
	beacon *b2 = peer_beacon(f, &b2addr);
	uint8_t buf[400], frame[64];
	size_t len;
	beacon_stats st;
	uint32_t ids[1] = { f->b_.node };

	memcpy(&ss, &b2addr, sizeof(b2addr));
	discover(f, f->a.fd, f->a.node);
	set_public(f, &f->a);
	/* forged Sync announcing b_ at the "peer": untagged, then a wrong tag */
	len = (size_t)proto_beacon_sync(7, ids, 1, buf, sizeof(buf));
	beacon_handle_datagram(f->b, buf, len, &ss);
	memset(buf + len, 0xab, 16);
	beacon_handle_datagram(f->b, buf, len + 16, &ss);
	/* forged Relay "from the peer" for a: would be delivered to a if accepted */
	memset(frame, 1, sizeof(frame));
	memcpy(frame, "PILS", 4);
	len = relay_msg(buf, f->c.node, f->a.node, frame, sizeof(frame));
	memset(buf + len, 0xcd, 16);
	beacon_handle_datagram(f->b, buf, len + 16, &ss);
	beacon_flush(f->b);
	expect_nothing(f->a.fd);
	beacon_get_stats(f->b, &st);
	assert_int_equal(st.peer_refused, 3);
	assert_int_equal(st.syncs_received, 0);
	assert_int_equal(st.relay_from_peer, 0);
	/* correctly tagged, from the peer, for c (not here): no second hop */
	{
		uint8_t key[crypto_generichash_KEYBYTES];

		crypto_generichash(key, sizeof(key), (const uint8_t *)"s3cret", 6, NULL, 0);
		len = relay_msg(buf, f->a.node, f->c.node, frame, sizeof(frame));
		crypto_generichash(buf + len, 16, buf, len, key, sizeof(key));
		beacon_handle_datagram(f->b, buf, len + 16, &ss);
		beacon_flush(f->b);
		beacon_get_stats(f->b, &st);
		assert_int_equal(st.peer_refused, 4);
		assert_int_equal(st.relay_forwarded, 0);
		/* the same tag scheme on a Sync is accepted */
		len = (size_t)proto_beacon_sync(7, ids, 1, buf, sizeof(buf));
		crypto_generichash(buf + len, 16, buf, len, key, sizeof(key));
		beacon_handle_datagram(f->b, buf, len + 16, &ss);
		beacon_get_stats(f->b, &st);
		assert_int_equal(st.syncs_received, 1);
	}
	/* b_ is announced but has no endpoint anywhere: a relay from a to b_ is
	 * forwarded to the peer, which refuses it (not here) */
	memcpy(frame, "PILS", 4);
	len = relay_msg(buf, f->a.node, f->b_.node, frame, sizeof(frame));
	assert_int_equal(sendto(f->a.fd, buf, len, 0, (struct sockaddr *)&f->baddr, sizeof(f->baddr)),
			 (ssize_t)len);
	pump(f);
	beacon_get_stats(f->b, &st);
	assert_int_equal(st.relay_forwarded, 1);
	beacon_get_stats(b2, &st);
	assert_int_equal(st.peer_refused, 1);
	assert_int_equal(st.relay_from_peer, 0);
	beacon_free(b2);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_beacon_discover_reply_bytes),
		T(test_beacon_node0_query),
		T(test_beacon_dual_stack),
		T(test_beacon_verified_by_ip),
		T(test_beacon_verified_by_signature),
		T(test_beacon_signature_rejections),
		T(test_beacon_relay_vector),
		T(test_beacon_relay_denied_unverified),
		T(test_beacon_unsigned_register_moves_nothing),
		T(test_beacon_relay_privacy),
		T(test_beacon_relay_handshake_pending),
		T(test_beacon_notify_inbox),
		T(test_beacon_notify_wss),
		T(test_beacon_relay_kx_rate),
		T(test_beacon_punch),
		T(test_beacon_punch_requester_cap),
		T(test_beacon_punch_denied),
		T(test_beacon_punch_proves_by_ip),
		T(test_beacon_malformed),
		T(test_beacon_expiry),
		T(test_beacon_table_growth),
		T(test_beacon_bad_addr),
		T(test_beacon_cluster_relay),
		T(test_beacon_cluster_forged_peer),
	};

	const char *why = NULL;

	if (pilot_crypto_init(&why) < 0) {
		fprintf(stderr, "crypto: %s\n", why);
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
