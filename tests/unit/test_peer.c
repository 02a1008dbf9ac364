/* Peer tables over real UDP transports on loopback, one pilot_loop: key exchange,
 * encrypted flow (checked on the wire through a forwarding sniffer), the reference
 * pathologies of tunnel.md §13 (duplicate PILA, forged counter, replay, PILT,
 * restart wedge, spoofed Src) and the relay path through the real beacon. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/unit/test_regreq.h"
#include "daemon/peer_internal.h"
#include "daemon/transport.h"
#include "lib/crypto.h"
#include "lib/loop.h"
#include "rendezvous/beacon.h"
#include "rendezvous/registry.h"

#define NNODES 3
#define MARKER "plaintext-marker-0123456789"
#define CAP_MAX 256

typedef struct tnode {
	uint32_t node;
	pilot_identity id;
	transport *t;
	peer_table *pt;
	uint16_t port;
	enum pilot_kdf kdf;
	char resolve_to[64];   /* what resolve() answers for this node */
	unsigned delivered;
	char last[256];
	uint32_t last_from;
	/* key binding (issue 12) */
	bool require_auth;
	bool reg_gone;          /* the registry has no such node (-ENOENT) */
	bool reg_alt_set;       /* the registry answers reg_alt instead of id.pk */
	uint8_t reg_alt[PROTO_ED25519_LEN];
	struct { uint32_t node; enum peer_pin st; uint8_t pk[PROTO_ED25519_LEN]; } pins[4];
	int npins;
	unsigned key_changes;   /* key_pinned calls with an old key */
} tnode;

/* A UDP forwarder between two fixed ends that records what passes. */
typedef struct sniffer {
	int fd;
	uint16_t port;
	struct sockaddr_in a, b; /* the two ends */
	bool drop;
	bool drop_to_a; /* one-way: b's frames to a are dropped, a's pass */
	unsigned n;
	uint8_t *frames[CAP_MAX];
	size_t lens[CAP_MAX];
	bool from_a[CAP_MAX];
} sniffer;

typedef struct fx {
	pilot_loop *loop;
	tnode n[NNODES];
	sniffer sn;
	registry *reg;
	beacon *bcn;
	char beacon_addr[64];
	peer_resolve_done held_done;
	void *held_arg;
	unsigned resolves[NNODES];  /* resolve() calls per target */
	uint32_t relay_probe_ms;    /* node_start override (0 = 300) */
	/* a fake beacon (a bare UDP socket) and two silent fake peers */
	int fb, fp[2];
	uint16_t fb_port, fp_port[2];
	unsigned npr;              /* PunchRequests the fake beacon received */
	uint32_t pr_target[64];
	uint64_t pr_ms[64];
	unsigned lookups;           /* lookup_key calls */
	unsigned lookup_fail_n;     /* the next n lookups fail with -EAGAIN (rate limited) */
	/* hold_asker's lookup of hold_node's key stays unanswered (held_key_*) */
	uint32_t hold_asker, hold_node;
	peer_key_done held_key_done;
	void *held_key_arg;
} fx;

static fx *G;

static tnode *by_node(fx *f, uint32_t node)
{
	for (int i = 0; i < NNODES; i++)
		if (f->n[i].node == node)
			return &f->n[i];
	return NULL;
}

static void deliver(void *ctx, uint32_t from, const uint8_t *pkt, size_t len)
{
	tnode *t = ctx;
	size_t pl = len - PROTO_HDR_SIZE;

	assert_true(len >= PROTO_HDR_SIZE);
	if (pl >= sizeof(t->last))
		pl = sizeof(t->last) - 1;
	memcpy(t->last, pkt + PROTO_HDR_SIZE, pl);
	t->last[pl] = 0;
	t->last_from = from;
	t->delivered++;
}

static void lookup_key(void *ctx, uint32_t node, peer_key_done done, void *arg)
{
	tnode *t = by_node(G, node);

	G->lookups++;
	if (G->hold_asker && ((tnode *)ctx)->node == G->hold_asker && node == G->hold_node &&
	    !G->held_key_done) {
		G->held_key_done = done;
		G->held_key_arg = arg;
	} else if (G->lookup_fail_n) {
		G->lookup_fail_n--;
		done(arg, -EAGAIN, NULL);
	} else if (!t || t->reg_gone) {
		done(arg, -ENOENT, NULL);
	} else {
		done(arg, 0, t->reg_alt_set ? t->reg_alt : t->id.pk);
	}
}

static int pin_idx(const tnode *t, uint32_t node)
{
	for (int i = 0; i < t->npins; i++)
		if (t->pins[i].node == node)
			return i;
	return -1;
}

static enum peer_pin pinned_key(void *ctx, uint32_t node, uint8_t pk[PROTO_ED25519_LEN])
{
	tnode *t = ctx;
	int i = pin_idx(t, node);

	if (i < 0)
		return PEER_PIN_NONE;
	memcpy(pk, t->pins[i].pk, PROTO_ED25519_LEN);
	return t->pins[i].st;
}

static void set_pin(tnode *t, uint32_t node, enum peer_pin st, const uint8_t *pk)
{
	int i = pin_idx(t, node);

	if (i < 0) {
		assert_true(t->npins < 4);
		i = t->npins++;
	}
	t->pins[i].node = node;
	t->pins[i].st = st;
	if (pk)
		memcpy(t->pins[i].pk, pk, PROTO_ED25519_LEN);
}

static void key_pinned(void *ctx, uint32_t node, const uint8_t pk[PROTO_ED25519_LEN],
		       const uint8_t *old)
{
	tnode *t = ctx;

	if (old)
		t->key_changes++;
	set_pin(t, node, PEER_PIN_KEY, pk);
}

static void resolve(void *ctx, uint32_t node, peer_resolve_done done, void *arg)
{
	tnode *t = by_node(G, node);

	if (t)
		G->resolves[t - G->n]++;
	if (t && !strcmp(t->resolve_to, "hold")) {
		G->held_done = done;
		G->held_arg = arg;
		return;
	}
	if (t && !strncmp(t->resolve_to, "relay_only ", 11)) { /* the registry's relay_only answer */
		done(arg, t->resolve_to + 11, PEER_RESOLVE_RELAY_ONLY);
		return;
	}
	if (t && !strcmp(t->resolve_to, "refused")) { /* private, no trust yet */
		done(arg, NULL, PEER_RESOLVE_REFUSED);
		return;
	}
	done(arg, t && t->resolve_to[0] ? t->resolve_to : NULL, PEER_RESOLVE_OK);
}

static uint16_t local_port(transport *t)
{
	transport_ep ep;

	assert_int_equal(transport_local_ep(t, &ep), 0);
	return ntohs(((struct sockaddr_in *)&ep.ss)->sin_port);
}

static void node_start(fx *f, tnode *t, uint16_t port)
{
	char addr[64], err[256] = "";
	peer_config c = {
		.node = t->node, .identity = &t->id, .encrypt = true, .kdf = t->kdf,
		.beacon = f->beacon_addr[0] ? f->beacon_addr : NULL, .ctx = t,
		.deliver = deliver, .lookup_key = lookup_key, .resolve = resolve,
		.require_auth = t->require_auth, .pinned_key = pinned_key, .key_pinned = key_pinned,
		.key_retry_ms = 50,
		.tick_ms = 20, .kx_retry_ms = 200, .direct_timeout_ms = 300,
		.relay_probe_ms = f->relay_probe_ms ? f->relay_probe_ms : 300,
		.silence_ms = 2000, .reresolve_ms = 400,
		.punch_gap_ms = 150,
	};

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	t->t = udp_transport_new(f->loop, addr, NULL, NULL, err, sizeof(err));
	if (!t->t)
		fail_msg("udp: %s", err);
	t->port = local_port(t->t);
	t->pt = peer_table_new(f->loop, t->t, &c, err, sizeof(err));
	if (!t->pt)
		fail_msg("peer table: %s", err);
	snprintf(t->resolve_to, sizeof(t->resolve_to), "127.0.0.1:%u", t->port);
}

static void node_stop(tnode *t)
{
	peer_table_free(t->pt);
	transport_close(t->t);
	t->pt = NULL;
	t->t = NULL;
}

static void sniff_io(pilot_loop *l, int fd, int events, void *arg)
{
	sniffer *s = arg;
	uint8_t buf[70000];
	struct sockaddr_in src;
	socklen_t sl = sizeof(src);
	ssize_t n;

	while ((n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&src, &sl)) >= 0) {
		bool fa = src.sin_port == s->a.sin_port;
		if (s->n < CAP_MAX) {
			s->frames[s->n] = malloc((size_t)n);
			memcpy(s->frames[s->n], buf, (size_t)n);
			s->lens[s->n] = (size_t)n;
			s->from_a[s->n++] = fa;
		}
		if (!s->drop && !(s->drop_to_a && !fa))
			sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)(fa ? &s->b : &s->a), sizeof(s->a));
		sl = sizeof(src);
	}
}

static void sniffer_start(fx *f, tnode *a, tnode *b)
{
	sniffer *s = &f->sn;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(s->fd >= 0);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &len), 0);
	s->port = ntohs(sa.sin_port);
	s->a = s->b = sa;
	s->a.sin_port = htons(a->port);
	s->b.sin_port = htons(b->port);
	assert_int_equal(pilot_loop_add_fd(f->loop, s->fd, PILOT_EV_READ, sniff_io, s), 0);
	/* each side reaches the other through the sniffer */
	snprintf(a->resolve_to, sizeof(a->resolve_to), "127.0.0.1:%u", s->port);
	snprintf(b->resolve_to, sizeof(b->resolve_to), "127.0.0.1:%u", s->port);
}

static void sniffer_stop(fx *f)
{
	sniffer *s = &f->sn;

	if (s->fd > 0) {
		pilot_loop_del_fd(f->loop, s->fd);
		close(s->fd);
	}
	for (unsigned i = 0; i < s->n; i++)
		free(s->frames[i]);
	memset(s, 0, sizeof(*s));
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_non_null(f->loop = pilot_loop_new());
	for (int i = 0; i < NNODES; i++) {
		f->n[i].node = 100 * (uint32_t)(i + 1);
		pilot_identity_generate(&f->n[i].id);
	}
	G = f;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;

	for (int i = 0; i < NNODES; i++)
		node_stop(&f->n[i]);
	sniffer_stop(f);
	beacon_free(f->bcn);
	reg_close(f->reg);
	if (f->fb > 0) {
		pilot_loop_del_fd(f->loop, f->fb);
		close(f->fb);
	}
	for (int i = 0; i < 2; i++)
		if (f->fp[i] > 0)
			close(f->fp[i]);
	/* let zero-delay timers of closed transports go (they were deleted) */
	pilot_loop_free(f->loop);
	free(f);
	G = NULL;
	return 0;
}

static void spin(fx *f, int ms)
{
	uint64_t end = pilot_now_ms() + (uint64_t)ms;

	while (pilot_now_ms() < end)
		pilot_loop_run_once(f->loop, 5);
}

static bool wait_delivered(fx *f, tnode *t, unsigned n, int ms)
{
	uint64_t end = pilot_now_ms() + (uint64_t)ms;

	while (t->delivered < n && pilot_now_ms() < end)
		pilot_loop_run_once(f->loop, 5);
	return t->delivered >= n;
}

/* A datagram packet from -> to carrying text. */
static int send_text(tnode *from, tnode *to, const char *text, uint32_t src_node)
{
	uint8_t buf[PEER_HEADROOM + PROTO_HDR_SIZE + 256 + PEER_TAILROOM];
	proto_hdr h = { .version = PROTO_VERSION, .protocol = PROTO_DATAGRAM,
			.src = pilot_addr_make(0, src_node), .dst = pilot_addr_make(0, to->node),
			.src_port = 1000, .dst_port = 1000 };
	int n = proto_packet_encode(&h, text, strlen(text), buf + PEER_HEADROOM, PROTO_HDR_SIZE + 256);

	assert_true(n > 0);
	return peer_send_packet(from->pt, to->node, buf + PEER_HEADROOM, (size_t)n);
}

static peer_stats stats(tnode *t)
{
	peer_stats st;

	peer_get_stats(t->pt, &st);
	return st;
}

/* from sends text to `to` every 100 ms until `to` has n deliveries (ms at most). */
static bool send_until_delivered(fx *f, tnode *from, tnode *to, const char *text, unsigned n, int ms)
{
	uint64_t t0 = pilot_now_ms();

	while (to->delivered < n && pilot_now_ms() - t0 < (uint64_t)ms) {
		send_text(from, to, text, from->node);
		spin(f, 100);
	}
	return to->delivered >= n;
}

/* Spin until a's path to b is no longer the relay (ms at most); the path then. */
static enum peer_path wait_off_relay(fx *f, tnode *a, tnode *b, int ms)
{
	uint64_t t0 = pilot_now_ms();
	peer_info pi;

	do {
		spin(f, 50);
		peer_get(a->pt, b->node, &pi);
	} while (pi.path == PEER_PATH_RELAY && pilot_now_ms() - t0 < (uint64_t)ms);
	return pi.path;
}

/* Two nodes talking through the sniffer, session established both ways. */
static void establish(fx *f)
{
	tnode *a = &f->n[0], *b = &f->n[1];
	peer_info pi;

	node_start(f, a, 0);
	node_start(f, b, 0);
	sniffer_start(f, a, b);
	assert_int_equal(send_text(a, b, MARKER " a->b", a->node), 0);
	assert_true(wait_delivered(f, b, 1, 2000));
	assert_string_equal(b->last, MARKER " a->b");
	assert_int_equal(b->last_from, a->node);
	assert_int_equal(send_text(b, a, MARKER " b->a", b->node), 0);
	assert_true(wait_delivered(f, a, 1, 2000));
	assert_string_equal(a->last, MARKER " b->a");
	spin(f, 50);
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_true(pi.encrypted && pi.authenticated && pi.identity);
	assert_int_equal(pi.path, PEER_PATH_DIRECT);
	assert_int_equal(peer_get(b->pt, a->node, &pi), 0);
	assert_true(pi.encrypted && pi.authenticated);
}

static void inject(fx *f, const void *buf, size_t len, tnode *to)
{
	sendto(f->sn.fd, buf, len, 0, (struct sockaddr *)(to == &f->n[0] ? &f->sn.a : &f->sn.b),
	       sizeof(f->sn.a));
}

static const uint8_t *captured(fx *f, const char *magic, bool from_a, size_t *len)
{
	for (unsigned i = 0; i < f->sn.n; i++)
		if (f->sn.from_a[i] == from_a && f->sn.lens[i] >= 4 && !memcmp(f->sn.frames[i], magic, 4)) {
			*len = f->sn.lens[i];
			return f->sn.frames[i];
		}
	return NULL;
}

static void test_encrypted_flow(void **state)
{
	fx *f = *state;

	establish(f);
	for (unsigned i = 0; i < f->sn.n; i++) {
		assert_null(memmem(f->sn.frames[i], f->sn.lens[i], MARKER, strlen(MARKER)));
		assert_true(!memcmp(f->sn.frames[i], "PILA", 4) || !memcmp(f->sn.frames[i], "PILS", 4));
	}
	/* many packets both ways, no losses on loopback */
	for (int i = 0; i < 50; i++) {
		assert_int_equal(send_text(&f->n[0], &f->n[1], "x", f->n[0].node), 0);
		assert_int_equal(send_text(&f->n[1], &f->n[0], "y", f->n[1].node), 0);
	}
	assert_true(wait_delivered(f, &f->n[1], 51, 2000));
	assert_true(wait_delivered(f, &f->n[0], 51, 2000));
	assert_int_equal(stats(&f->n[0]).drop_replay + stats(&f->n[1]).drop_replay, 0);
	assert_int_equal(stats(&f->n[1]).rekeys, 0);
}

static void test_duplicate_pila(void **state)
{
	fx *f = *state;
	size_t len;
	const uint8_t *pila;
	tnode *a = &f->n[0], *b = &f->n[1];
	peer_stats before;

	establish(f);
	pila = captured(f, "PILA", true, &len);
	assert_non_null(pila);
	before = stats(b);
	for (int i = 0; i < 5; i++)
		inject(f, pila, len, b);
	spin(f, 50);
	assert_int_equal(stats(b).rekeys, before.rekeys);
	assert_int_equal(stats(b).kx_accepted, before.kx_accepted);
	/* the session kept its counters: both directions still flow */
	assert_int_equal(send_text(a, b, "after dup a", a->node), 0);
	assert_int_equal(send_text(b, a, "after dup b", b->node), 0);
	assert_true(wait_delivered(f, b, 2, 1000));
	assert_true(wait_delivered(f, a, 2, 1000));
	assert_string_equal(b->last, "after dup a");
	assert_string_equal(a->last, "after dup b");
	assert_int_equal(stats(a).drop_replay + stats(b).drop_replay, 0);
}

static void test_forged_counter(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	uint8_t forged[80];

	establish(f);
	memset(forged, 0x5a, sizeof(forged));
	memcpy(forged, "PILS", 4);
	proto_put32(forged + 4, a->node);
	proto_put64(forged + 12, (uint64_t)1 << 63);
	inject(f, forged, sizeof(forged), b);
	spin(f, 30);
	assert_int_equal(stats(b).drop_auth, 1);
	assert_int_equal(send_text(a, b, "still here", a->node), 0);
	assert_true(wait_delivered(f, b, 2, 1000));
	assert_string_equal(b->last, "still here");
}

static void test_replay_dropped(void **state)
{
	fx *f = *state;
	tnode *b = &f->n[1];
	const uint8_t *pils;
	size_t len;

	establish(f);
	pils = captured(f, "PILS", true, &len);
	assert_non_null(pils);
	inject(f, pils, len, b);
	inject(f, pils, len, b);
	spin(f, 50);
	assert_int_equal(stats(b).drop_replay, 2);
	assert_int_equal(b->delivered, 1);
}

static void test_malformed_and_pilt(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	uint8_t buf[200];
	peer_stats st;
	int n;

	establish(f);
	memset(buf, 0, sizeof(buf));
	memcpy(buf, "PILS", 4);
	inject(f, buf, 30, b);          /* short PILS */
	memcpy(buf, "PILA", 4);
	inject(f, buf, 100, b);         /* short PILA */
	inject(f, "PIL", 3, b);
	inject(f, "XXXXXXXX", 8, b);    /* unknown magic */
	buf[0] = BEACON_PUNCH_COMMAND;  /* beacon message from a non-beacon */
	inject(f, buf, 8, b);
	/* PILT carrying a valid packet: refused while encrypting */
	proto_hdr h = { .version = PROTO_VERSION, .protocol = PROTO_DATAGRAM,
			.src = pilot_addr_make(0, a->node), .dst = pilot_addr_make(0, b->node) };
	n = proto_packet_encode(&h, "inject", 6, buf + 4, sizeof(buf) - 4);
	memcpy(buf, "PILT", 4);
	inject(f, buf, (size_t)n + 4, b);
	spin(f, 50);
	st = stats(b);
	assert_int_equal(st.drop_malformed, 2);
	assert_int_equal(st.drop_unknown_magic, 2);
	assert_int_equal(st.drop_not_beacon, 1);
	assert_int_equal(st.drop_pilt, 1);
	assert_int_equal(b->delivered, 1);
}

/* Configured for different KDF variants: the receiver learns the sender's. */
static void test_kdf_learned(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	peer_info pi;

	b->kdf = PILOT_KDF_NEW;
	establish(f);
	assert_int_equal(peer_get(b->pt, a->node, &pi), 0);
	assert_int_equal(pi.kdf, PILOT_KDF_REF);
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_int_equal(pi.kdf, PILOT_KDF_REF);
	for (int i = 0; i < 10; i++) {
		send_text(a, b, "k", a->node);
		send_text(b, a, "k", b->node);
	}
	assert_true(wait_delivered(f, b, 11, 1000));
	assert_true(wait_delivered(f, a, 11, 1000));
}

static void test_spoofed_src(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];

	establish(f);
	assert_int_equal(send_text(a, b, "from c?", 300), 0);
	spin(f, 50);
	assert_int_equal(stats(b).drop_spoofed_src, 1);
	assert_int_equal(b->delivered, 1);
}

/* Restart t on its port (same identity, new X25519 key) behind the sniffer; from,
 * still holding the old session, sends until t hears it (2.5 s at most). */
static bool restart_reached(fx *f, tnode *t, tnode *from)
{
	uint16_t port = t->port;

	node_stop(t);
	node_start(f, t, port);
	snprintf(t->resolve_to, sizeof(t->resolve_to), "127.0.0.1:%u", f->sn.port);
	snprintf(from->resolve_to, sizeof(from->resolve_to), "127.0.0.1:%u", f->sn.port);
	t->delivered = 0;
	return send_until_delivered(f, from, t, "after restart", 1, 2500);
}

static void test_restart_rekeys(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];

	establish(f);
	/* A still holds the old session; the restarted B must make it re-key. */
	assert_true(restart_reached(f, b, a));
	assert_string_equal(b->last, "after restart");
	assert_true(stats(a).rekeys >= 1);
	assert_int_equal(send_text(b, a, "reply", b->node), 0);
	assert_true(wait_delivered(f, a, 2, 1000));
}

/* ---- key binding (issue 12 §1-§2) ---- */
static int udp_sock(uint16_t *port);

/* Restart t on its port (new X25519 key) behind the sniffer and make from reach
 * it again (from still holds the old session). */
static void restart_and_rekey(fx *f, tnode *t, tnode *from)
{
	unsigned n0 = from->delivered;

	assert_true(restart_reached(f, t, from));
	assert_int_equal(send_text(t, from, "reply", t->node), 0);
	assert_true(wait_delivered(f, from, n0 + 1, 1000));
	spin(f, 300);
}

static void send_raw_from_other(tnode *to, const uint8_t *frame, size_t len, int times)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(to->port) };
	uint16_t eport;
	int fd = udp_sock(&eport);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	for (int i = 0; i < times; i++)
		sendto(fd, frame, len, 0, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
}

/* establish, and B's first key exchange to A as the sniffer saw it, in old. */
static void establish_captured(fx *f, uint8_t old[PROTO_PILA_LEN])
{
	const uint8_t *cap;
	size_t len;

	establish(f);
	cap = captured(f, "PILA", false, &len);
	assert_non_null(cap);
	assert_int_equal(len, PROTO_PILA_LEN);
	memcpy(old, cap, PROTO_PILA_LEN);
}

/* Both ends exchange a datagram within ms. */
static bool both_ways(fx *f, tnode *a, tnode *b, int ms)
{
	unsigned na = a->delivered, nb = b->delivered;

	send_text(a, b, "ping b", a->node);
	send_text(b, a, "ping a", b->node);
	return wait_delivered(f, b, nb + 1, ms) && wait_delivered(f, a, na + 1, ms);
}

/* The same replay when A never saw the old key (A restarted too since it was
 * captured): A cannot tell it from a restart of B and takes it, but B's real key
 * must not be refused afterwards (it is retired only when a frame proves the
 * key that replaced it), the pair recovers, and the old key is refused from then
 * on. */
static void test_unseen_old_key_replay(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	uint8_t old[PROTO_PILA_LEN];
	bool ok = false;
	uint64_t t0;
	peer_stats st;
	peer_info before, after;

	establish_captured(f, old);
	restart_and_rekey(f, b, a); /* B: new key */
	restart_and_rekey(f, a, b); /* A: forgets everything it saw */
	st = stats(a);
	assert_int_equal(peer_get(a->pt, b->node, &before), 0);
	send_raw_from_other(a, old, sizeof(old), 1);
	spin(f, 50);
	assert_true(stats(a).rekeys >= st.rekeys + 1); /* not detectable here */
	assert_int_equal(peer_get(a->pt, b->node, &after), 0);
	assert_string_equal(after.endpoint, before.endpoint); /* the proven one stays */
	/* recovery: B's real key is accepted again */
	t0 = pilot_now_ms();
	while (!ok && pilot_now_ms() - t0 < 15000)
		ok = both_ways(f, a, b, 200);
	assert_true(ok);
	assert_int_equal(stats(a).kx_stale, st.kx_stale);
	spin(f, 300);
	/* now proven replaced: the same replay is refused and changes nothing */
	st = stats(a);
	send_raw_from_other(a, old, sizeof(old), 2);
	spin(f, 50);
	assert_int_equal(stats(a).rekeys, st.rekeys);
	assert_true(stats(a).kx_stale > st.kx_stale);
	assert_true(both_ways(f, a, b, 300));
}

/* The soak finding: a key exchange of B captured before B restarted, replayed to
 * A from another address after A re-keyed with the restarted B, must neither
 * replace A's session nor move B's endpoint (B never goes back to an old
 * ephemeral X25519 key), and A keeps reaching B without a new re-key. */
static void test_old_key_replay(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	uint8_t old[PROTO_PILA_LEN];
	peer_info before, after;
	peer_stats st;

	establish_captured(f, old);
	assert_int_equal(a->delivered, 1);
	restart_and_rekey(f, b, a); /* B: new X25519 key; A hears B's reply (2 delivered) */
	assert_int_equal(peer_get(a->pt, b->node, &before), 0);
	assert_true(before.authenticated);
	st = stats(a);

	/* the replay, from an address that is not B's */
	send_raw_from_other(a, old, sizeof(old), 3);
	spin(f, 100);
	assert_int_equal(stats(a).rekeys, st.rekeys);
	assert_int_equal(stats(a).kx_accepted, st.kx_accepted);
	assert_true(stats(a).kx_rejected > st.kx_rejected);
	assert_true(stats(a).kx_stale > st.kx_stale);
	assert_int_equal(peer_get(a->pt, b->node, &after), 0);
	assert_string_equal(after.endpoint, before.endpoint);
	assert_true(after.authenticated);
	/* both directions still flow at once, under the session that was there */
	b->delivered = a->delivered = 0;
	assert_int_equal(send_text(a, b, "still b", a->node), 0);
	assert_int_equal(send_text(b, a, "still a", b->node), 0);
	assert_true(wait_delivered(f, b, 1, 300));
	assert_true(wait_delivered(f, a, 1, 300));
	assert_string_equal(b->last, "still b");
	assert_string_equal(a->last, "still a");
	assert_int_equal(stats(a).rekeys, st.rekeys);
}

/* An anonymous key exchange claiming node `claim`, sent to `to` from a bare socket. */
static void send_pilk(int fd, tnode *to, uint32_t claim)
{
	proto_pilk k = { .node = claim };
	uint8_t frame[PROTO_PILK_LEN];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(to->port) };
	pilot_x25519 x;

	pilot_x25519_generate(&x);
	memcpy(k.x25519, x.pub, PROTO_X25519_LEN);
	pilot_x25519_wipe(&x);
	assert_int_equal(proto_pilk_encode(&k, frame, sizeof(frame)), PROTO_PILK_LEN);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	sendto(fd, frame, sizeof(frame), 0, (struct sockaddr *)&sa, sizeof(sa));
}

/* A PILA for node `claim` signed by `signer` (any identity), sent to `to`. */
static void send_pila(int fd, tnode *to, uint32_t claim, const pilot_identity *signer)
{
	uint8_t frame[PROTO_PILA_LEN];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(to->port) };
	pilot_x25519 x;

	pilot_x25519_generate(&x);
	assert_int_equal(pilot_pila_build(signer, claim, x.pub, frame, sizeof(frame)), PROTO_PILA_LEN);
	pilot_x25519_wipe(&x);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	sendto(fd, frame, sizeof(frame), 0, (struct sockaddr *)&sa, sizeof(sa));
}

static bool has_session(tnode *t, uint32_t node)
{
	peer_info pi;

	return peer_get(t->pt, node, &pi) == 0 && pi.encrypted;
}

/* The impersonation of the issue: a PILK claiming a trusted node's ID while its
 * registry lookup fails (node offline = not found; victim rate limited = error)
 * gets no session, pinned or only trusted, anonymous peers allowed or not. */
static void test_pilk_claiming_trusted_id(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	uint16_t port;
	int fd = udp_sock(&port);

	a->require_auth = false; /* anonymous peers allowed: the weakest setting */
	node_start(f, a, 0);
	set_pin(a, b->node, PEER_PIN_KEY, b->id.pk);
	set_pin(a, 300, PEER_PIN_TRUSTED, NULL); /* trusted, key not known yet (old trust.json) */
	b->reg_gone = true;                      /* (a) b deregistered */
	send_pilk(fd, a, b->node);
	send_pilk(fd, a, 300);
	spin(f, 100);
	assert_false(has_session(a, b->node));
	assert_false(has_session(a, 300));
	assert_int_equal(stats(a).kx_pilk_refused, 2);
	assert_int_equal(f->lookups, 0); /* refused without asking anyone */
	b->reg_gone = false;
	f->lookup_fail_n = 100;                  /* (b) a's registry allowance exhausted */
	send_pilk(fd, a, b->node);
	spin(f, 100);
	assert_false(has_session(a, b->node));
	assert_int_equal(stats(a).kx_pilk_refused, 3);
	assert_int_equal(peer_session_key(a->pt, b->node, (uint8_t[32]){ 0 }), -ENOENT);
	close(fd);
}

/* A registry error is never "no key": retried within a bound, then the
 * exchange fails; an answer within the bound decides. require-auth refuses PILK
 * without a lookup, and an anonymous session has no key (admission: 444 only). */
static void test_pilk_registry_errors(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0];
	uint16_t port;
	int fd = udp_sock(&port);
	uint8_t pk[PROTO_ED25519_LEN];

	a->require_auth = false;
	node_start(f, a, 0);
	f->lookup_fail_n = 100;
	send_pilk(fd, a, 999);
	spin(f, 600); /* 50 + 100 + 200 ms of retries */
	assert_false(has_session(a, 999));
	assert_int_equal(f->lookups, PEER_KEY_TRIES);
	assert_int_equal(stats(a).kx_lookup_errors, PEER_KEY_TRIES);
	assert_int_equal(stats(a).kx_lookup_failed, 1);
	/* the registry answers on the third try: node 998 unknown, anonymous allowed */
	f->lookups = 0;
	f->lookup_fail_n = 2;
	send_pilk(fd, a, 998);
	spin(f, 400);
	assert_int_equal(f->lookups, 3);
	assert_true(has_session(a, 998));
	assert_int_equal(peer_session_key(a->pt, 998, pk), -ENOENT); /* anonymous */
	node_stop(a);

	/* require-auth (the default in pilotd): no PILK ever, no lookup for it */
	a->require_auth = true;
	node_start(f, a, 0);
	f->lookups = 0;
	f->lookup_fail_n = 0;
	send_pilk(fd, a, 997);
	spin(f, 100);
	assert_false(has_session(a, 997));
	assert_int_equal(f->lookups, 0);
	assert_int_equal(stats(a).kx_pilk_refused, 1);
	close(fd);
}

/* An unverified PILA (a valid signature, but not by the node's key) neither
 * gets a session nor clears the cached key, even when the registry lookup it
 * causes fails; after it a PILK for the node is still refused, and the real
 * session keeps working. */
static void test_unverified_pila_keeps_key(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	pilot_identity mallory;
	uint16_t port;
	int fd = udp_sock(&port);
	peer *p;
	uint8_t pk[PROTO_ED25519_LEN];

	a->require_auth = false;
	establish(f);
	assert_int_equal(a->npins, 1); /* the session pinned b's key */
	assert_memory_equal(a->pins[0].pk, b->id.pk, PROTO_ED25519_LEN);
	assert_int_equal(peer_session_key(a->pt, b->node, pk), 0);
	assert_memory_equal(pk, b->id.pk, PROTO_ED25519_LEN);
	pilot_identity_generate(&mallory);
	send_pila(fd, a, b->node, &mallory); /* registry still says b's key */
	spin(f, 100);
	f->lookup_fail_n = 100;
	send_pila(fd, a, b->node, &mallory); /* ... and now the registry errs */
	spin(f, 600);
	p = peer_find(a->pt, b->node);
	assert_non_null(p);
	assert_true(p->has_ed);
	assert_memory_equal(p->ed, b->id.pk, PROTO_ED25519_LEN);
	assert_memory_equal(a->pins[0].pk, b->id.pk, PROTO_ED25519_LEN);
	assert_true(stats(a).kx_rejected >= 1);
	send_pilk(fd, a, b->node);
	spin(f, 100);
	assert_true(stats(a).kx_pilk_refused >= 1);
	assert_int_equal(peer_session_key(a->pt, b->node, pk), 0);
	assert_memory_equal(pk, b->id.pk, PROTO_ED25519_LEN);
	f->lookup_fail_n = 0;
	assert_int_equal(send_text(b, a, "still b", b->node), 0);
	assert_true(wait_delivered(f, a, 2, 1000));
	assert_string_equal(a->last, "still b");
	pilot_identity_wipe(&mallory);
	close(fd);
}

/* Key rotation: b's new key is accepted once the registry holds it (rotate_key),
 * logged and re-pinned; before that the new key is refused. */
static void test_key_rotation(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	uint8_t old[PROTO_ED25519_LEN], pk[PROTO_ED25519_LEN];
	uint16_t port;
	unsigned before;

	establish(f);
	memcpy(old, b->id.pk, sizeof(old));
	port = b->port;
	node_stop(b);
	pilot_identity_generate(&b->id); /* the new key, registry not told yet */
	b->reg_alt_set = true;
	memcpy(b->reg_alt, old, sizeof(old));
	node_start(f, b, port);
	snprintf(b->resolve_to, sizeof(b->resolve_to), "127.0.0.1:%u", f->sn.port);
	before = a->delivered;
	send_text(b, a, "new key, not rotated", b->node);
	spin(f, 600);
	assert_int_equal(a->delivered, before);
	assert_int_equal(a->key_changes, 0);
	assert_memory_equal(a->pins[0].pk, old, sizeof(old));
	b->reg_alt_set = false; /* rotate_key done: the registry answers the new key */
	for (int i = 0; i < 20 && a->delivered == before; i++) {
		send_text(b, a, "rotated", b->node);
		spin(f, 100);
	}
	assert_true(a->delivered > before);
	assert_int_equal(a->key_changes, 1);
	assert_int_equal(stats(a).kx_key_changes, 1);
	assert_memory_equal(a->pins[0].pk, b->id.pk, PROTO_ED25519_LEN);
	assert_int_equal(peer_session_key(a->pt, b->node, pk), 0);
	assert_memory_equal(pk, b->id.pk, PROTO_ED25519_LEN);
}

/* Start a and b (sniffing between them), hold b's registry lookup of a's key
 * and send a's first packet: b's lookup is then waiting in f->held_key_done. */
static void first_contact_held(fx *f, tnode *a, tnode *b)
{
	node_start(f, a, 0);
	node_start(f, b, 0);
	sniffer_start(f, a, b);
	f->hold_asker = b->node;
	f->hold_node = a->node;
	assert_int_equal(send_text(a, b, "first", a->node), 0);
	spin(f, 100);
	assert_non_null(f->held_key_done);
}

/* First contact from a to b while b's registry lookup of a's key is slow: b
 * answers with its PILA at once (early_reply), a's session comes up and its
 * first packet is sealed; b holds that frame and delivers nothing until the
 * registry's answer accepts a's exchange, then opens it; b sends no second
 * PILA. A resend of a's exchange meanwhile costs no second lookup. */
static void test_early_reply_holds_pils(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	peer_info pi;
	const uint8_t *pila;
	size_t len;
	unsigned lookups;

	first_contact_held(f, a, b);
	assert_int_equal(b->delivered, 0);
	assert_int_equal(stats(b).kx_early, 1);
	assert_int_equal(stats(b).pils_held, 1);
	assert_non_null(captured(f, "PILA", false, &len)); /* b's, before the answer */
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_true(pi.encrypted);
	assert_true(peer_get(b->pt, a->node, &pi) < 0 || !pi.encrypted);
	/* a's exchange again (a resend): it joins the waiting lookup */
	pila = captured(f, "PILA", true, &len);
	assert_non_null(pila);
	lookups = f->lookups;
	inject(f, pila, len, b);
	spin(f, 30);
	assert_int_equal(f->lookups, lookups);
	assert_int_equal(stats(b).kx_dup_waiting, 1);
	assert_int_equal(b->delivered, 0);
	f->held_key_done(f->held_key_arg, 0, a->id.pk);
	spin(f, 50);
	assert_int_equal(b->delivered, 1);
	assert_string_equal(b->last, "first");
	assert_int_equal(b->last_from, a->node);
	assert_int_equal(stats(b).kx_sent, 1); /* the early one only */
	assert_int_equal(stats(b).drop_no_session, 0);
	assert_int_equal(send_text(b, a, "back", b->node), 0);
	assert_true(wait_delivered(f, a, 1, 1000));
	assert_string_equal(a->last, "back");
	assert_int_equal(peer_get(b->pt, a->node, &pi), 0);
	assert_true(pi.encrypted && pi.authenticated);
}

/* The same, but the registry holds another key for a: the held frame is
 * dropped unopened and b gets no session for a. */
static void test_early_reply_wrong_key(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	pilot_identity other;
	peer_info pi;

	pilot_identity_generate(&other);
	first_contact_held(f, a, b);
	assert_int_equal(stats(b).pils_held, 1);
	f->held_key_done(f->held_key_arg, 0, other.pk);
	spin(f, 50);
	assert_int_equal(b->delivered, 0);
	assert_int_equal(stats(b).kx_accepted, 0);
	assert_true(stats(b).kx_rejected >= 1);
	assert_true(stats(b).drop_no_session >= 1);
	assert_true(peer_get(b->pt, a->node, &pi) < 0 || !pi.encrypted);
	pilot_identity_wipe(&other);
}

static void test_pending_bound(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1], *c = &f->n[2];
	int rc = 0, i, nobufs = 0;

	node_start(f, a, 0);
	c->resolve_to[0] = 0; /* unknown: resolve fails, no beacon */
	for (i = 0; i < 5; i++)
		rc = send_text(a, c, "queued", a->node);
	assert_int_equal(rc, 0);
	/* resolve failed synchronously: dropped and counted, nothing sent */
	assert_int_equal(stats(a).kx_sent, 0);
	assert_int_equal(stats(a).drop_no_route, 5);
	/* while the resolve is outstanding the queue is bounded: newest dropped */
	snprintf(b->resolve_to, sizeof(b->resolve_to), "hold");
	for (i = 0; i < PEER_PENDING_PER_PEER + 6; i++)
		nobufs += send_text(a, b, "queued", a->node) == -ENOBUFS;
	assert_int_equal(nobufs, 6);
	assert_int_equal(stats(a).drop_pending_full, 6);
	assert_non_null(f->held_done);
	f->held_done(f->held_arg, NULL, false);
	f->held_done = NULL;
	peer_info pi;
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_int_equal(pi.pending, 0);
	assert_int_equal(stats(a).drop_no_route, 5 + PEER_PENDING_PER_PEER);
}

/* ---- relay through the real beacon ---- */

static void reg_node_vis(fx *f, tnode *t, bool public)
{
	char pk[48], msg[64], sig64[96];
	uint8_t sig[64];
	json_object *o;

	pilot_b64_encode(t->id.pk, 32, pk, sizeof(pk));
	o = t_reg_req(f->reg, "127.0.0.1",
		      "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"127.0.0.1:4000\"}", pk);
	assert_string_equal(json_object_get_string(json_object_object_get(o, "type")), "register_ok");
	t->node = (uint32_t)json_object_get_int64(json_object_object_get(o, "node_id"));
	json_object_put(o);
	if (!public)
		return;
	snprintf(msg, sizeof(msg), "set_visibility:%u", t->node);
	pilot_ed25519_sign(&t->id, msg, strlen(msg), sig);
	pilot_b64_encode(sig, sizeof(sig), sig64, sizeof(sig64));
	o = t_reg_req(f->reg, "127.0.0.1",
		      "{\"type\":\"set_visibility\",\"node_id\":%u,\"public\":true,\"signature\":\"%s\"}",
		      t->node, sig64);
	assert_string_equal(json_object_get_string(json_object_object_get(o, "type")), "set_visibility_ok");
	json_object_put(o);
}

/* The real registry and beacon on loopback (the nodes started from now on use
 * it); a and b (f->n[0], f->n[1]) registered, public or private, and started.
 * Returns the beacon's port. */
static int beacon_pair(fx *f, bool public)
{
	reg_config rc = { .ratelimit_disabled = true };
	char err[256] = "";
	int port;

	assert_non_null(f->reg = reg_open(&rc, err, sizeof(err)));
	f->bcn = beacon_new(f->loop, "127.0.0.1:0", f->reg, err, sizeof(err));
	if (!f->bcn)
		fail_msg("beacon: %s", err);
	port = beacon_local_port(f->bcn);
	snprintf(f->beacon_addr, sizeof(f->beacon_addr), "127.0.0.1:%d", port);
	reg_node_vis(f, &f->n[0], public);
	reg_node_vis(f, &f->n[1], public);
	node_start(f, &f->n[0], 0);
	node_start(f, &f->n[1], 0);
	return port;
}

static void test_relay_and_upgrade(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	peer_stats sa;

	/* private and untrusted: the beacon refuses to coordinate a punch (which
	 * would find the real loopback endpoints) but relays the key exchanges */
	beacon_pair(f, false);
	sniffer_start(f, a, b);
	f->sn.drop = true; /* the direct path is a black hole */
	spin(f, 100);      /* Discovers verify both endpoints */
	assert_true(stats(a).have_public_ep);
	assert_true(send_until_delivered(f, a, b, "via relay", 1, 3000));
	assert_string_equal(b->last, "via relay");
	/* (a beacon-coordinated punch may already have found the real endpoints) */
	assert_true(stats(a).relay_switches >= 1);
	assert_int_equal(send_text(b, a, "relay back", b->node), 0);
	assert_true(wait_delivered(f, a, 1, 1000));
	beacon_stats bs;
	beacon_get_stats(f->bcn, &bs);
	assert_true(bs.relayed_packets > 0);
	/* nothing readable crossed the beacon either: the sniffer saw only drops */
	f->sn.drop = false; /* direct starts working: probes upgrade both sides */
	assert_int_not_equal(wait_off_relay(f, a, b, 3000), PEER_PATH_RELAY);
	sa = stats(a);
	assert_true(sa.direct_upgrades >= 1);
	beacon_get_stats(f->bcn, &bs);
	uint64_t relayed = bs.relayed_packets;
	assert_int_equal(send_text(a, b, "direct again", a->node), 0);
	assert_true(wait_delivered(f, b, b->delivered + 1, 1000));
	assert_string_equal(b->last, "direct again");
	beacon_get_stats(f->bcn, &bs);
	assert_int_equal(bs.relayed_packets, relayed); /* not through the relay */
}

/* First contact with a reachable endpoint and a beacon: the key exchange and the
 * data go direct only. A reference daemon pins any node it hears through the
 * relay to the relay for its lifetime (tunnel.md §10), so a relayed copy of the
 * first PILA would route all its traffic to us through the beacon. */
static void test_first_contact_direct_only(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	beacon_stats bs;
	peer_info pi;

	beacon_pair(f, true);
	spin(f, 100); /* Discovers verify both endpoints */
	assert_int_equal(send_text(a, b, "hello", a->node), 0);
	assert_true(wait_delivered(f, b, 1, 2000));
	assert_int_equal(send_text(b, a, "back", b->node), 0);
	assert_true(wait_delivered(f, a, 1, 2000));
	spin(f, 500); /* past direct_timeout_ms (300): nothing falls back */
	beacon_get_stats(f->bcn, &bs);
	assert_int_equal(bs.relayed_packets, 0);
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_int_not_equal(pi.path, PEER_PATH_RELAY);
	assert_int_equal(peer_get(b->pt, a->node, &pi), 0);
	assert_int_not_equal(pi.path, PEER_PATH_RELAY);
}

/* ---- punch requests, attribution, re-resolve, forget ---- */

static int udp_sock(uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* The fake beacon records the PunchRequests it gets (and ignores the rest). */
static void fake_beacon_io(pilot_loop *l, int fd, int events, void *arg)
{
	fx *f = arg;
	uint8_t buf[2048];
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), 0)) >= 0)
		if (n == 9 && buf[0] == BEACON_PUNCH_REQUEST && f->npr < 64) {
			f->pr_target[f->npr] = proto_get32(buf + 5);
			f->pr_ms[f->npr++] = pilot_now_ms();
		}
}

static void fake_beacon(fx *f)
{
	f->fb = udp_sock(&f->fb_port);
	snprintf(f->beacon_addr, sizeof(f->beacon_addr), "127.0.0.1:%u", f->fb_port);
	assert_int_equal(pilot_loop_add_fd(f->loop, f->fb, PILOT_EV_READ, fake_beacon_io, f), 0);
}

/* The fake beacon tells t to punch 127.0.0.<host>:port. */
static void punch_cmd(fx *f, tnode *t, uint8_t host, uint16_t port)
{
	proto_endpoint e = { .ip_len = 4, .ip = { 127, 0, 0, host }, .port = port };
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(t->port) };
	uint8_t msg[32];
	int n = proto_beacon_endpoint_msg(BEACON_PUNCH_COMMAND, &e, msg, sizeof(msg));

	assert_true(n > 0);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	assert_int_equal(sendto(f->fb, msg, (size_t)n, 0, (struct sockaddr *)&to, sizeof(to)), n);
	spin(f, 40);
}

/* What a silent fake peer received: count of PILP and of PILA frames. */
static void drain_fake(int fd, unsigned *pilp, unsigned *pila)
{
	uint8_t buf[2048];
	ssize_t n;

	*pilp = *pila = 0;
	while ((n = recv(fd, buf, sizeof(buf), 0)) >= 0) {
		if (n >= 4 && !memcmp(buf, "PILP", 4))
			(*pilp)++;
		if (n >= 4 && !memcmp(buf, "PILA", 4))
			(*pila)++;
	}
}

/* Two silent fake peers (f->fp): x resolves to the first, y to the second, the
 * endpoint after the prefix how ("" or the registry's "relay_only "). */
static void fake_peers(fx *f, tnode *x, tnode *y, const char *how)
{
	f->fp[0] = udp_sock(&f->fp_port[0]);
	f->fp[1] = udp_sock(&f->fp_port[1]);
	snprintf(x->resolve_to, sizeof(x->resolve_to), "%s127.0.0.1:%u", how, f->fp_port[0]);
	snprintf(y->resolve_to, sizeof(y->resolve_to), "%s127.0.0.1:%u", how, f->fp_port[1]);
}

/* Three peers go relay in the same tick: their relay-probe PunchRequests must
 * leave punch_gap_ms apart (the beacon grants a requester only so many per
 * second), and every peer gets its turn. */
static void test_punch_requests_spread(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0];
	bool seen[3] = { false };

	fake_beacon(f);
	node_start(f, a, 0);
	for (uint32_t i = 0; i < 3; i++) /* unknown nodes: resolve fails, relay */
		assert_int_equal(send_text(a, &(tnode){ .node = 4000 + i }, "x", a->node), 0);
	spin(f, 1500);
	assert_true(f->npr >= 4);
	for (unsigned i = 0; i < f->npr; i++) {
		assert_true(f->pr_target[i] >= 4000 && f->pr_target[i] < 4003);
		seen[f->pr_target[i] - 4000] = true;
		if (i)
			assert_true(f->pr_ms[i] - f->pr_ms[i - 1] >= 140);
	}
	assert_true(seen[0] && seen[1] && seen[2]);
	/* round robin: the first three requests name three different peers */
	assert_int_not_equal(f->pr_target[0], f->pr_target[1]);
	assert_int_not_equal(f->pr_target[1], f->pr_target[2]);
	assert_int_not_equal(f->pr_target[0], f->pr_target[2]);
	/* the last request may still be on its way to the fake beacon when spin ends */
	assert_in_range(stats(a).punch_requests, f->npr, f->npr + 1);
}

/* A PunchCommand names only an endpoint: it is matched to the peer with that
 * endpoint, not to whichever request went out last; PILP x3 goes out whatever. */
static void test_punch_attribution(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1], *c = &f->n[2];
	unsigned pilp, pila;
	peer_stats st;

	f->relay_probe_ms = 10000; /* no relay probes during the test */
	fake_beacon(f);
	node_start(f, a, 0);
	fake_peers(f, b, c, "");
	assert_int_equal(send_text(a, b, "to b", a->node), 0);
	assert_int_equal(send_text(a, c, "to c", a->node), 0);
	spin(f, 400); /* both requests out (b first, c 150 ms later), both gone relay */
	assert_int_equal(f->npr, 2);
	assert_int_equal(f->pr_target[0], b->node);
	assert_int_equal(f->pr_target[1], c->node);
	drain_fake(f->fp[0], &pilp, &pila);
	drain_fake(f->fp[1], &pilp, &pila);
	/* the beacon answers b's request last: attributed to b by its endpoint */
	punch_cmd(f, a, 1, f->fp_port[0]);
	st = stats(a);
	assert_int_equal(st.punches, 1);
	assert_int_equal(st.punch_by_endpoint, 1);
	assert_int_equal(st.punch_by_recent, 0);
	drain_fake(f->fp[0], &pilp, &pila);
	assert_int_equal(pilp, 3);
	assert_int_equal(pila, 1); /* b (no session yet) gets our key exchange there */
	drain_fake(f->fp[1], &pilp, &pila);
	assert_int_equal(pilp + pila, 0);
	/* an endpoint (and IP) matching nobody: the outstanding request (c's) */
	punch_cmd(f, a, 5, 9);
	st = stats(a);
	assert_int_equal(st.punches, 2);
	assert_int_equal(st.punch_by_endpoint, 1);
	assert_int_equal(st.punch_by_recent, 1);
	drain_fake(f->fp[1], &pilp, &pila);
	assert_int_equal(pilp + pila, 0); /* c's own endpoint is not where the beacon pointed */
	/* no request outstanding any more and no endpoint match: nobody's, but PILP
	 * still goes out (it opens our NAT for whoever asked) */
	punch_cmd(f, a, 5, 7);
	assert_int_equal(stats(a).punch_unattributed, 1);
	/* c asked to punch us (no request of ours): exact endpoint match */
	punch_cmd(f, a, 1, f->fp_port[1]);
	st = stats(a);
	assert_int_equal(st.punches, 4);
	assert_int_equal(st.punch_by_endpoint, 2);
	drain_fake(f->fp[1], &pilp, &pila);
	assert_int_equal(pilp, 3);
	assert_int_equal(pila, 1);
}

/* A relay peer that becomes resolvable later (e.g. after trust) is resolved
 * again on the relay probe and reached directly. */
static void test_relay_peer_reresolved(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	peer_info pi;
	unsigned r0;

	/* private and untrusted: the beacon relays key exchanges and answers but
	 * refuses punches, so only the resolve can give a a direct path */
	beacon_pair(f, false);
	a->resolve_to[0] = 0;
	b->resolve_to[0] = 0;
	spin(f, 100);
	assert_true(send_until_delivered(f, a, b, "via relay", 1, 3000));
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_int_equal(pi.path, PEER_PATH_RELAY);
	r0 = f->resolves[1];
	spin(f, 1300);
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_int_equal(pi.path, PEER_PATH_RELAY);
	/* re-resolved while relay, rate-limited (relay probe 300 ms, reresolve 400 ms) */
	assert_true(f->resolves[1] - r0 >= 1);
	assert_true(f->resolves[1] - r0 <= 3);
	assert_true(stats(a).reresolves >= 1);
	/* the registry now answers */
	snprintf(b->resolve_to, sizeof(b->resolve_to), "127.0.0.1:%u", b->port);
	assert_int_equal(wait_off_relay(f, a, b, 3000), PEER_PATH_DIRECT);
	assert_true(stats(a).direct_upgrades >= 1);
	assert_true(f->resolves[0] >= 1); /* b tried a too (in vain) */
}

/* The registry says relay_only (compat nodes): the relay at once and pinned, no
 * PunchRequest, nothing to the endpoint it named, through several relay-probe
 * periods, also on the side first contacted through the relay (it resolves the
 * sender at once); re-resolves go on, and when the nodes are resolvable
 * normally again they are unpinned and reach each other directly. */
static void test_relay_only_pinned(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	peer_info pi;
	unsigned pilp, pila, r0;
	enum peer_path path;

	beacon_pair(f, true);
	/* the endpoints the registry names: must hear nothing */
	fake_peers(f, b, a, "relay_only ");
	spin(f, 100);
	/* b dials: relay at once, not after direct_timeout_ms */
	assert_int_equal(send_text(b, a, "first", b->node), 0);
	spin(f, 20);
	assert_int_equal(peer_get(b->pt, a->node, &pi), 0);
	assert_int_equal(pi.path, PEER_PATH_RELAY);
	assert_string_equal(pi.why, "registry: relay_only");
	assert_true(wait_delivered(f, a, 1, 3000));
	/* a heard b first through the relay and asked the registry at once */
	assert_true(f->resolves[1] >= 1);
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_int_equal(pi.path, PEER_PATH_RELAY);
	assert_string_equal(pi.why, "registry: relay_only");
	assert_int_equal(send_text(a, b, "answer", a->node), 0);
	assert_true(wait_delivered(f, b, 1, 3000));
	r0 = f->resolves[1];
	spin(f, 1300); /* four relay-probe periods (300 ms), three re-resolve periods (400 ms) */
	for (int i = 0; i < 2; i++) {
		tnode *x = &f->n[i], *y = &f->n[1 - i];

		assert_int_equal(peer_get(x->pt, y->node, &pi), 0);
		assert_int_equal(pi.path, PEER_PATH_RELAY);
		assert_int_equal(stats(x).punch_requests, 0);
		drain_fake(f->fp[i], &pilp, &pila);
		assert_int_equal(pilp + pila, 0);
	}
	assert_true(f->resolves[1] - r0 >= 1); /* re-resolves go on, rate-limited */
	assert_true(f->resolves[1] - r0 <= 4);
	/* both left compat mode: the next re-resolve unpins, the relay probe goes direct */
	snprintf(a->resolve_to, sizeof(a->resolve_to), "127.0.0.1:%u", a->port);
	snprintf(b->resolve_to, sizeof(b->resolve_to), "127.0.0.1:%u", b->port);
	path = wait_off_relay(f, a, b, 3000);
	assert_true(path == PEER_PATH_DIRECT || path == PEER_PATH_PUNCHED);
}

/* The registry refuses to resolve b for a (private, no trust yet): a sends b
 * nothing, not even through the beacon relay (a reference peer would pin a to
 * the relay for good, issue 15), and further sends fail at once. Once trust
 * reaches the registry (peer_table_trusted), the next send resolves and goes
 * direct. */
static void test_refused_no_relay(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	peer_info pi;

	beacon_pair(f, true);
	snprintf(b->resolve_to, sizeof(b->resolve_to), "refused");
	spin(f, 100);
	assert_int_equal(send_text(a, b, "first", a->node), 0); /* queued, resolving */
	spin(f, 1000);
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_int_equal(pi.path, PEER_PATH_NONE);
	assert_int_equal(pi.pending, 0);
	assert_int_equal(peer_get(b->pt, a->node, &pi), -ENOENT); /* b heard nothing */
	assert_int_equal(b->delivered, 0);
	assert_int_equal(send_text(a, b, "again", a->node), -EHOSTUNREACH);
	assert_int_equal(f->resolves[1], 1);
	/* trust: the registry resolves b now */
	snprintf(b->resolve_to, sizeof(b->resolve_to), "127.0.0.1:%u", b->port);
	peer_table_trusted(a->pt, b->node);
	assert_int_equal(send_text(a, b, "trusted", a->node), 0);
	assert_true(wait_delivered(f, b, 1, 3000));
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_true(pi.path == PEER_PATH_DIRECT || pi.path == PEER_PATH_PUNCHED);
}

/* The beacon restarts after both nodes' Discover and forgets their verified
 * endpoints (it relays only from and to nodes it has verified). The destination
 * learns of it as the pilotd glue does (its registry connection came back:
 * peer_table_rediscover); the sender's relayed key exchange gets no answer and
 * sends a Discover itself; so the exchange completes within a few retries
 * instead of waiting for the periodic Discover (25 s). */
static void test_relay_after_beacon_restart(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	char err[256] = "", addr[64];
	peer_info pi;
	uint64_t t0;
	int port;

	port = beacon_pair(f, true);
	fake_peers(f, b, a, "relay_only ");
	spin(f, 100); /* both Discovers verified */
	beacon_free(f->bcn);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	f->bcn = beacon_new(f->loop, addr, f->reg, err, sizeof(err));
	assert_non_null(f->bcn);
	spin(f, 2100); /* past the 2 s Discover rate limit; the periodic one is 25 s off */
	peer_table_rediscover(a->pt);
	assert_int_equal(send_text(b, a, "after restart", b->node), 0);
	t0 = pilot_now_ms();
	assert_true(wait_delivered(f, a, 1, 4000));
	assert_true(pilot_now_ms() - t0 < 4000);
	assert_int_equal(peer_get(b->pt, a->node, &pi), 0);
	assert_int_equal(pi.path, PEER_PATH_RELAY);
}

static void test_forget(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1], *c = &f->n[2];
	peer_info pi;
	peer_stats sb;

	establish(f);
	assert_int_equal(peer_forget(a->pt, b->node), 0);
	assert_int_equal(peer_get(a->pt, b->node, &pi), -ENOENT);
	assert_int_equal(peer_forget(a->pt, b->node), -ENOENT);
	assert_int_equal(peer_list(a->pt, &pi, 1), 0);
	/* b still holds the session and keeps sending: a answers with a new key
	 * (a forgotten node gets its own), b replaces its session, traffic resumes
	 * without b's old replay window swallowing a's restarted counters */
	sb = stats(b);
	assert_true(send_until_delivered(f, b, a, "after forget", 2, 3000));
	assert_string_equal(a->last, "after forget");
	assert_true(stats(b).rekeys > sb.rekeys);
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_true(pi.authenticated);
	assert_int_equal(send_text(a, b, "again", a->node), 0);
	assert_true(wait_delivered(f, b, 2, 1000));
	assert_string_equal(b->last, "again");
	/* forgotten again, a speaks first this time */
	assert_int_equal(peer_forget(a->pt, b->node), 0);
	sb = stats(b);
	assert_int_equal(send_text(a, b, "third", a->node), 0);
	assert_true(wait_delivered(f, b, 3, 2000));
	assert_string_equal(b->last, "third");
	assert_true(stats(b).rekeys > sb.rekeys);
	assert_int_equal(stats(a).drop_replay + stats(b).drop_replay, 0);
	/* forgotten while its resolve is outstanding, with packets queued */
	snprintf(c->resolve_to, sizeof(c->resolve_to), "hold");
	assert_int_equal(send_text(a, c, "queued", a->node), 0);
	assert_int_equal(send_text(a, c, "queued", a->node), 0);
	assert_int_equal(peer_forget(a->pt, c->node), 0);
	assert_non_null(f->held_done);
	f->held_done(f->held_arg, "127.0.0.1:9", false); /* discarded */
	f->held_done = NULL;
	assert_int_equal(peer_get(a->pt, c->node, &pi), -ENOENT);
	/* and b still works */
	assert_int_equal(send_text(a, b, "still", a->node), 0);
	assert_true(wait_delivered(f, b, 4, 1000));
}

/* A control packet that expects an answer (a ping: port 0 from a port). */
static int send_ping(tnode *from, tnode *to)
{
	uint8_t buf[PEER_HEADROOM + PROTO_HDR_SIZE + 8 + PEER_TAILROOM];
	proto_hdr h = { .version = PROTO_VERSION,
			.protocol = PROTO_CONTROL,
			.src = pilot_addr_make(0, from->node),
			.dst = pilot_addr_make(0, to->node),
			.src_port = 7,
			.dst_port = 0 };
	int n = proto_packet_encode(&h, "ping", 4, buf + PEER_HEADROOM, PROTO_HDR_SIZE + 8);

	assert_true(n > 0);
	return peer_send_packet(from->pt, to->node, buf + PEER_HEADROOM, (size_t)n);
}

/* The 60-minute soak's unreachable pair (issue 20): a direct path that carries
 * a's frames to b but none of b's back (a NAT flow stuck without its mapping,
 * kept alive by a's own sends). a's pings go unanswered, a re-keys (silent
 * re-key), and must then reach b through the relay within direct_timeout_ms;
 * the old code re-keyed on the dead path for good (the new session is
 * unauthenticated, which the silence check skips). */
static void test_oneway_path_to_relay(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	reg_config rc = { .ratelimit_disabled = true };
	char err[256] = "";
	peer_info pi;
	unsigned got;
	uint64_t t0;

	assert_non_null(f->reg = reg_open(&rc, err, sizeof(err)));
	f->bcn = beacon_new(f->loop, "127.0.0.1:0", f->reg, err, sizeof(err));
	if (!f->bcn)
		fail_msg("beacon: %s", err);
	snprintf(f->beacon_addr, sizeof(f->beacon_addr), "127.0.0.1:%d", beacon_local_port(f->bcn));
	/* private and untrusted: no beacon punch (it would find the loopback
	 * endpoints around the sniffer), but relayed frames */
	reg_node_vis(f, a, false);
	reg_node_vis(f, b, false);
	f->relay_probe_ms = 5000;
	node_start(f, a, 0);
	node_start(f, b, 0);
	sniffer_start(f, a, b);
	spin(f, 100); /* Discovers verify both endpoints */
	assert_int_equal(send_text(a, b, "direct", a->node), 0);
	assert_true(wait_delivered(f, b, 1, 2000));
	assert_int_equal(send_text(b, a, "direct back", b->node), 0);
	assert_true(wait_delivered(f, a, 1, 2000));
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_int_equal(pi.path, PEER_PATH_DIRECT);
	assert_true(pi.authenticated);

	f->sn.drop_to_a = true;
	t0 = pilot_now_ms();
	do {
		send_ping(a, b);
		spin(f, 100);
		peer_get(a->pt, b->node, &pi);
	} while (pi.path != PEER_PATH_RELAY && pilot_now_ms() - t0 < 4000);
	assert_true(stats(a).silent_rekeys >= 1);
	assert_int_equal(pi.path, PEER_PATH_RELAY); /* old code: direct for good */
	/* both ways again, around the dead direct path */
	got = a->delivered;
	t0 = pilot_now_ms();
	while (a->delivered == got && pilot_now_ms() - t0 < 3000) {
		send_ping(a, b); /* b hears a through the relay: b answers there */
		send_text(b, a, "back via relay", b->node);
		spin(f, 100);
	}
	assert_true(a->delivered > got);
	assert_string_equal(a->last, "back via relay");
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_true(pi.authenticated);
	got = b->delivered;
	assert_int_equal(send_text(a, b, "over the relay", a->node), 0);
	assert_true(wait_delivered(f, b, got + 1, 1000));
	assert_string_equal(b->last, "over the relay");
	/* a's direct probes (its relay probe) still reach b, which answers them; they
	 * show only that a's sends arrive, so b stays on the relay (old code: b went
	 * direct on them and its own sends were lost until a's next relayed frame) */
	assert_int_equal(peer_get(b->pt, a->node, &pi), 0);
	assert_int_equal(pi.path, PEER_PATH_RELAY);
	for (int i = 0; i < PEER_UPGRADE_FRAMES; i++)
		peer_send_probe(a->pt, peer_find(a->pt, b->node), PEER_VIA_DIRECT);
	spin(f, 100);
	assert_int_equal(peer_get(b->pt, a->node, &pi), 0);
	assert_int_equal(pi.path, PEER_PATH_RELAY);
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_int_equal(pi.path, PEER_PATH_RELAY); /* no answers came back */
}

/* Our underlay address changed (issue 20): authenticated probes go to every
 * direct peer, which answers them; no key exchange (a reference peer would
 * restart its send counter, tunnel.md §6.1); the session and path stay. */
static void test_migrated_probes(void **state)
{
	fx *f = *state;
	tnode *a = &f->n[0], *b = &f->n[1];
	unsigned n0, pils = 0, pila = 0;
	peer_info pi;
	uint64_t ok0;

	establish(f);
	n0 = f->sn.n;
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	ok0 = peer_find(a->pt, b->node)->direct_ok_ms;
	spin(f, 20);
	peer_table_migrated(a->pt);
	spin(f, 200);
	for (unsigned i = n0; i < f->sn.n; i++)
		if (f->sn.from_a[i]) {
			pils += !memcmp(f->sn.frames[i], "PILS", 4);
			pila += !memcmp(f->sn.frames[i], "PILA", 4);
		}
	assert_int_equal(pils, PEER_UPGRADE_FRAMES);
	assert_int_equal(pila, 0);
	assert_int_equal(stats(a).migrations, 1);
	/* b answered: the direct path is proven again, no switch to the relay */
	assert_true(peer_find(a->pt, b->node)->direct_ok_ms > ok0);
	spin(f, 1600);
	assert_int_equal(peer_get(a->pt, b->node, &pi), 0);
	assert_int_equal(pi.path, PEER_PATH_DIRECT);
	assert_int_equal(stats(a).relay_switches, 0);
	assert_int_equal(stats(a).rekeys + stats(b).rekeys, 0);
	assert_int_equal(send_text(a, b, "after move", a->node), 0);
	assert_true(wait_delivered(f, b, 2, 1000));
	assert_string_equal(b->last, "after move");
}

int main(void)
{
	const char *why;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_encrypted_flow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_pila, setup, teardown),
		cmocka_unit_test_setup_teardown(test_early_reply_holds_pils, setup, teardown),
		cmocka_unit_test_setup_teardown(test_early_reply_wrong_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forged_counter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_and_pilt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spoofed_src, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kdf_learned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_rekeys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oneway_path_to_relay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_key_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unseen_old_key_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pending_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relay_and_upgrade, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_contact_direct_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_punch_requests_spread, setup, teardown),
		cmocka_unit_test_setup_teardown(test_punch_attribution, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relay_peer_reresolved, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relay_only_pinned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_no_relay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relay_after_beacon_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pilk_claiming_trusted_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pilk_registry_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unverified_pila_keeps_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrated_probes, setup, teardown),
	};

	if (pilot_crypto_init(&why) < 0) {
		fprintf(stderr, "skipping: %s\n", why);
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
