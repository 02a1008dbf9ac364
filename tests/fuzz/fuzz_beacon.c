/* libFuzzer target: the beacon's datagram handler, stateful across a sequence of
 * datagrams from a handful of loopback sources, with a real in-memory registry
 * (nodes 1-4 prove themselves by source IP, 5 only by a signed Discover, which the
 * harness can synthesise since a fuzzer cannot forge one).
 *
 * Input: records of  ctl (1) ‖ len (2, BE) ‖ data (len, clipped to what is left)
 *   ctl bits 0-2  source: 127.0.0.1:1/2/3, 127.0.0.2:1 (a peer beacon), [::1]:1, [::ffff:127.0.0.1]:4,
 *                 127.0.0.1:5, or an AF_UNIX address (must be refused)
 *   ctl bit 3     advance the beacon clock by data[0] seconds first
 *   ctl bit 4     instead of data, send a valid signed Discover for node data[0] % 6
 *                 with ts = now + (int8)data[1]
 *   ctl bit 5     run the stale sweep first
 * Replies go to ports 1-5 on loopback, where nothing listens (errors are ignored). */
#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <json-c/json.h>

#include "lib/crypto.h"
#include "lib/loop.h"
#include "lib/proto.h"
#include "rendezvous/beacon.h"
#include "rendezvous/beacon_internal.h"
#include "rendezvous/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "CHECK failed: %s (%s:%d)\n", #x, __FILE__, __LINE__); abort(); } } while (0)
#define NIDS 6

static pilot_loop *g_loop;
static registry *g_reg;
static beacon *g_bcn;
static pilot_identity g_ids[NIDS];
static struct sockaddr_storage g_src[8];
static uint8_t g_buf[65536 + 64];

static void reg_call(const char *ip, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reg_call(const char *ip, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	reg_ctx ctx = { ip, 40000, (uint64_t)time(NULL) * 1000, 0 };
	json_object *q, *r;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	CHECK((q = json_tokener_parse(text)) != NULL);
	r = reg_handle(g_reg, q, &ctx);
	json_object_put(q);
	json_object_put(r);
}

static void sig_b64(int n, const char *msg, char out[96])
{
	uint8_t sig[64];

	pilot_ed25519_sign(&g_ids[n], msg, strlen(msg), sig);
	pilot_b64_encode(sig, sizeof(sig), out, 96);
}

/* Nodes 1..5: 1-3 from 127.0.0.1, 4 from ::1, 5 from elsewhere; 2 public; 1<->3 trusted. */
static void setup_registry(void)
{
	static const char *ips[NIDS] = { NULL, "127.0.0.1", "127.0.0.1", "127.0.0.1", "::1", "198.18.0.5" };
	char pk[48], msg[64], sig[96];

	for (int n = 1; n < NIDS; n++) {
		uint8_t seed[32] = { (uint8_t)n };

		pilot_identity_from_seed(&g_ids[n], seed);
		pilot_b64_encode(g_ids[n].pk, 32, pk, sizeof(pk));
		reg_call(ips[n], "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"0.0.0.0:4000\"}", pk);
	}
	sig_b64(2, "set_visibility:2", sig);
	reg_call(ips[2], "{\"type\":\"set_visibility\",\"node_id\":2,\"public\":true,\"signature\":\"%s\"}", sig);
	for (int i = 0; i < 2; i++) {
		int a = i ? 3 : 1, b = i ? 1 : 3;

		snprintf(msg, sizeof(msg), "report_trust:%d:%d", a, b);
		sig_b64(a, msg, sig);
		reg_call(ips[a], "{\"type\":\"report_trust\",\"node_id\":%d,\"peer_id\":%d,\"signature\":\"%s\"}",
			 a, b, sig);
	}
}

static void set_v4(int i, const char *ip, uint16_t port)
{
	struct sockaddr_in *s = (struct sockaddr_in *)&g_src[i];

	s->sin_family = AF_INET;
	s->sin_port = htons(port);
	inet_pton(AF_INET, ip, &s->sin_addr);
}

static void set_v6(int i, const char *ip, uint16_t port)
{
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)&g_src[i];

	s->sin6_family = AF_INET6;
	s->sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &s->sin6_addr);
}

static void cleanup(void)
{
	beacon_free(g_bcn);
	reg_close(g_reg);
	pilot_loop_free(g_loop);
}

static void setup(void)
{
	reg_config rc = { .ratelimit_disabled = true };
	char err[256];
	const char *why;

	CHECK(pilot_crypto_init(&why) == 0);
	CHECK((g_loop = pilot_loop_new()) != NULL);
	CHECK((g_reg = reg_open(&rc, err, sizeof(err))) != NULL);
	CHECK((g_bcn = beacon_new(g_loop, "127.0.0.1:0", g_reg, err, sizeof(err))) != NULL);
	setup_registry();
	/* 127.0.0.2:1 is a peer beacon (cluster, no secret: its Syncs and forwarded
	 * Relays reach on_peer_msg as the fuzzer writes them) */
	CHECK(beacon_set_peers(g_bcn, "127.0.0.2:1", NULL, err, sizeof(err)) == 0);
	set_v4(0, "127.0.0.1", 1);
	set_v4(1, "127.0.0.1", 2);
	set_v4(2, "127.0.0.1", 3);
	set_v4(3, "127.0.0.2", 1);
	set_v6(4, "::1", 1);
	set_v6(5, "::ffff:127.0.0.1", 4);
	set_v4(6, "127.0.0.1", 5);
	g_src[7].ss_family = AF_UNIX;
	atexit(cleanup);
}

static size_t synth_signed(const uint8_t *d, size_t len)
{
	int n = len ? d[0] % NIDS : 0;
	int8_t off = len > 1 ? (int8_t)d[1] : 0;
	uint64_t ts = (uint64_t)((int64_t)time(NULL) + off);

	beacon_signed_discover(&g_ids[n], (uint32_t)n, ts, g_buf);
	return BEACON_SIGNED_DISCOVER_LEN;
}

static void one(uint8_t ctl, const uint8_t *d, size_t len)
{
	beacon_stats before, after;
	size_t n = len;
	uint32_t sender;

	if ((ctl & 0x08) && len)
		beacon_advance_clock(g_bcn, (int64_t)d[0] * 1000);
	if (ctl & 0x20)
		beacon_expire(g_bcn);
	if (ctl & 0x10)
		n = synth_signed(d, len);
	else
		memcpy(g_buf, d, len);
	sender = n >= 5 ? proto_get32(g_buf + 1) : 0;
	beacon_get_stats(g_bcn, &before);
	beacon_handle_datagram(g_bcn, g_buf, n, &g_src[ctl & 7]);
	beacon_get_stats(g_bcn, &after);
	beacon_flush(g_bcn);
	/* a delivered relay is the same frame behind a 06 ‖ sender header */
	if (after.relayed_packets != before.relayed_packets) {
		CHECK(n > BEACON_RELAY_HDR && g_buf[4] == BEACON_RELAY_DELIVER);
		CHECK(proto_get32(g_buf + 5) == sender);
		CHECK(after.relayed_bytes - before.relayed_bytes == n - BEACON_RELAY_HDR);
	}
	CHECK(after.nodes < NIDS);
	if ((ctl & 7) == 7)
		CHECK(after.dropped_malformed == before.dropped_malformed + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!g_bcn)
		setup();
	while (size >= 3) {
		uint8_t ctl = data[0];
		size_t len = proto_get16(data + 1);

		data += 3;
		size -= 3;
		if (len > size)
			len = size;
		one(ctl, data, len);
		data += len;
		size -= len;
	}
	return 0;
}
