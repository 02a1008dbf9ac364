/* Arbitrary datagrams into a peer table that has one established session.
 * Two tables talk through in-memory transports; the first input byte picks the
 * claimed source (the peer, the beacon, a stranger; value % 3), anonymous peers
 * (bit 6) and failing key lookups (bit 7); the rest is the datagram. Bit 5: key
 * lookups are answered only after the datagram, and a valid PILA of node 40 from
 * the same source comes first (the early answer: the datagram may be a PILS that
 * waits for the lookup); bit 4 then makes the registry name another key. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/peer_internal.h"
#include "lib/crypto.h"
#include "lib/loop.h"

#define QMAX 64

typedef struct memtx {
	transport base;
	transport_ep self;
	size_t n;
	uint8_t *data[QMAX];
	size_t len[QMAX];
} memtx;

static size_t m_send(transport *t, const transport_dgram *dg, size_t n)
{
	memtx *m = (memtx *)t;
	size_t i;

	for (i = 0; i < n && m->n < QMAX; i++) {
		m->data[m->n] = malloc(dg[i].len + 1);
		memcpy(m->data[m->n], dg[i].data, dg[i].len);
		m->len[m->n++] = dg[i].len;
	}
	return i;
}
static void m_flush(transport *t) { (void)t; }
static int m_local(transport *t, transport_ep *ep) { *ep = ((memtx *)t)->self; return 0; }
static void m_stats(transport *t, transport_stats *st) { (void)t; memset(st, 0, sizeof(*st)); }
static void m_close(transport *t) { (void)t; }
static const struct transport_ops m_ops = { m_send, m_flush, m_local, m_stats, m_close, NULL };

static pilot_identity ida, idb, idc;
static uint8_t pila_c[PROTO_PILA_LEN];
static int inited, lookup_fails, defer, wrong_c;
static struct {
	peer_key_done done;
	void *arg;
	uint32_t node;
} deferred[8];
static unsigned ndeferred;

static const uint8_t *reg_key(uint32_t node)
{
	if (node == 40)
		return wrong_c ? ida.pk : idc.pk;
	return node == 10 ? ida.pk : node == 20 ? idb.pk : NULL;
}

static void lookup(void *ctx, uint32_t node, peer_key_done done, void *arg)
{
	const uint8_t *pk = reg_key(node);

	if (defer && ndeferred < 8) {
		deferred[ndeferred].done = done;
		deferred[ndeferred].arg = arg;
		deferred[ndeferred++].node = node;
		return;
	}
	if (lookup_fails)
		done(arg, -EAGAIN, NULL);
	else
		done(arg, pk ? 0 : -ENOENT, pk);
}

/* a pins b's key, node 30 is trusted without a key; bit 6 of the first byte
 * turns anonymous peers on (require_auth off) and bit 7 makes lookups fail. */
static enum peer_pin pinned(void *ctx, uint32_t node, uint8_t pk[PROTO_ED25519_LEN])
{
	if (node == 20) {
		memcpy(pk, idb.pk, PROTO_ED25519_LEN);
		return PEER_PIN_KEY;
	}
	return node == 30 ? PEER_PIN_TRUSTED : PEER_PIN_NONE;
}

static void key_pinned(void *ctx, uint32_t node, const uint8_t pk[PROTO_ED25519_LEN], const uint8_t *old)
{
	(void)ctx, (void)node, (void)pk, (void)old;
}

static void resolve(void *ctx, uint32_t node, peer_resolve_done done, void *arg)
{
	done(arg,
	     node == 20           ? "10.0.0.2:2000"
		     : node == 10 ? "10.0.0.1:1000"
				  : NULL,
	     node == 30 ? PEER_RESOLVE_REFUSED : PEER_RESOLVE_OK);
}

static void drain(memtx *from, peer_table *to)
{
	uint8_t buf[TRANSPORT_HEADROOM + 70000];

	for (size_t i = 0; i < from->n; i++) {
		if (to && from->len[i] <= 70000) {
			memcpy(buf + TRANSPORT_HEADROOM, from->data[i], from->len[i]);
			peer_handle_datagram(to, buf + TRANSPORT_HEADROOM, from->len[i], &from->self);
		}
		free(from->data[i]);
	}
	from->n = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);
int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	static uint8_t buf[TRANSPORT_HEADROOM + 70000];
	memtx ta = { .base = { &m_ops, NULL, NULL } }, tb = { .base = { &m_ops, NULL, NULL } };
	peer_config ca = { .node = 10, .identity = &ida, .encrypt = true, .lookup_key = lookup,
			   .resolve = resolve, .beacon = "10.0.0.9:9001" };
	peer_config cb = ca;
	transport_ep beacon, stranger;
	char err[128];
	pilot_loop *l;
	peer_table *a, *b;
	uint8_t pkt[PEER_HEADROOM + 64 + PEER_TAILROOM];
	proto_hdr h = { .version = 1, .protocol = PROTO_DATAGRAM, .src = { 0, 20 }, .dst = { 0, 10 } };

	if (!inited) {
		const char *why;
		if (pilot_crypto_init(&why) < 0)
			abort();
		pilot_x25519 xc;

		pilot_identity_generate(&ida);
		pilot_identity_generate(&idb);
		pilot_identity_generate(&idc);
		pilot_x25519_generate(&xc);
		if (pilot_pila_build(&idc, 40, xc.pub, pila_c, sizeof(pila_c)) < 0)
			abort();
		inited = 1;
	}
	if (len < 1 || len > 70000)
		return 0;
	ca.pinned_key = pinned;
	ca.key_pinned = key_pinned;
	ca.require_auth = !(in[0] & 0x40);
	lookup_fails = 0;
	cb.node = 20;
	cb.identity = &idb;
	transport_ep_parse("10.0.0.1:1000", &ta.self);
	transport_ep_parse("10.0.0.2:2000", &tb.self);
	transport_ep_parse("10.0.0.9:9001", &beacon);
	transport_ep_parse("10.0.0.7:7000", &stranger);
	l = pilot_loop_new();
	a = peer_table_new(l, &ta.base, &ca, err, sizeof(err));
	b = peer_table_new(l, &tb.base, &cb, err, sizeof(err));
	drain(&ta, NULL); /* Discovers */
	drain(&tb, NULL);
	/* b sends to a: key exchange both ways, then the queued packet */
	int n = proto_packet_encode(&h, "hi", 2, pkt + PEER_HEADROOM, 64);
	peer_send_packet(b, 10, pkt + PEER_HEADROOM, (size_t)n);
	for (int round = 0; round < 4; round++) {
		drain(&tb, a);
		drain(&ta, b);
	}
	lookup_fails = in[0] & 0x80;
	defer = in[0] & 0x20;
	wrong_c = in[0] & 0x10;
	ndeferred = 0;
	if (defer) {
		memcpy(buf + TRANSPORT_HEADROOM, pila_c, sizeof(pila_c));
		peer_handle_datagram(a, buf + TRANSPORT_HEADROOM, sizeof(pila_c),
				     in[0] % 3 == 0           ? &tb.self
					     : in[0] % 3 == 1 ? &beacon
							      : &stranger);
	}
	memcpy(buf + TRANSPORT_HEADROOM, in + 1, len - 1);
	peer_handle_datagram(a, buf + TRANSPORT_HEADROOM, len - 1,
			     in[0] % 3 == 0 ? &tb.self : in[0] % 3 == 1 ? &beacon : &stranger);
	defer = 0;
	for (unsigned i = 0; i < ndeferred; i++) {
		const uint8_t *pk = reg_key(deferred[i].node);

		deferred[i].done(deferred[i].arg, pk ? 0 : -ENOENT, pk);
	}
	peer_tick(a);
	lookup_fails = 0;
	drain(&ta, b);
	drain(&tb, NULL);
	peer_table_free(a);
	peer_table_free(b);
	pilot_loop_free(l);
	return 0;
}
