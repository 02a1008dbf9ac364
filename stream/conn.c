/* Connection table: demultiplexing, listeners, dials, timers and deferred frees
 * for the stream engine; see conn.h for the contract.
 *
 * Choices worth knowing:
 *  - The 4-tuple hash may hold two entries with the same key (a TIME_WAIT one and a
 *    newer one after ephemeral reuse); lookup prefers the non-TIME_WAIT entry (§5.1
 *    NOTE). A SYN on a tuple in TIME_WAIT ends the old entry at once (no RST) and
 *    opens a new connection.
 *  - SYN checks in order: admission (silent), rate limit (silent), listener (RST),
 *    caps (RST). Silent ones first, so nothing answers an untrusted or flooding
 *    source. The rate limit is per source, then a global budget: one for
 *    trusted sources and one of their own for the others (conn.h).
 *  - An ephemeral port is busy until its connection reaches TIME_WAIT or CLOSED
 *    (ref semantics; the hash tolerates the overlap above), and never reused
 *    while busy: exhaustion is -EADDRINUSE (new semantics).
 *  - One loop timer per table: armed for the earliest of the heap's top, the
 *    earliest ping deadline and "now" when frees are pending. */
#include "stream/conn_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/loop.h"

#define TOMB ((conn *)&tomb_mark)
static const char tomb_mark;

#define TOKEN 1000000ull

static const stream_cbs engine_cbs;

/* ---- clock, timer ------------------------------------------------------------------ */

uint64_t conn_now(const conn_table *t)
{
	return t->cfg.clock ? t->cfg.clock(t->cfg.ctx) : pilot_now_us();
}

uint64_t conn_table_next_deadline(const conn_table *t)
{
	uint64_t d = conn_pings_deadline(t);

	if (t->reap)
		return 0;
	pilot_heap_node *top = pilot_heap_top(&t->heap);

	if (top && top->key < d)
		d = top->key;
	return d;
}

static int64_t on_loop_timer(pilot_loop *l, uint64_t id, void *arg)
{
	conn_table *t = arg;

	if (t->timer_id == id)
		t->timer_id = 0;
	conn_table_tick(t);
	return 0;
}

void conn_arm(conn_table *t)
{
	uint64_t want, now, ms;

	if (!t->cfg.loop || t->in_tick || t->shut)
		return;
	want = conn_table_next_deadline(t);
	if (want == UINT64_MAX) {
		if (t->timer_id)
			pilot_loop_del_timer(t->cfg.loop, t->timer_id);
		t->timer_id = 0;
		return;
	}
	/* Compared in the table's clock, rounded up to the loop's ms, before reading
	 * the clock: called after every engine call, this is mostly a no-op. */
	if (t->timer_id && (t->timer_want + 999) / 1000 <= (want + 999) / 1000)
		return; /* fires earlier (or in the same ms): the tick re-arms */
	now = conn_now(t);
	ms = want > now ? (want - now + 999) / 1000 : 0;
	if (t->timer_id)
		pilot_loop_del_timer(t->cfg.loop, t->timer_id);
	t->timer_id = pilot_loop_add_timer(t->cfg.loop, (int64_t)ms, on_loop_timer, t);
	t->timer_want = want;
}

/* After every engine call: move the conn to its new deadline. */
static void resched(conn *c)
{
	uint64_t d = stream_next_deadline(c->s);

	if (d == UINT64_MAX || pilot_heap_set(&c->t->heap, &c->hn, d) < 0)
		pilot_heap_remove(&c->t->heap, &c->hn);
	conn_arm(c->t);
}

/* ---- 4-tuple hash ------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static size_t key_hash(const conn_table *t, uint16_t lport, pilot_addr ra, uint16_t rport)
{
	uint64_t k = (uint64_t)ra.node << 32 | (uint64_t)ra.net << 16 | lport;

	return (size_t)mix64(k ^ mix64((uint64_t)rport ^ t->cfg.seed));
}

static bool key_eq(const conn *c, uint16_t lport, pilot_addr ra, uint16_t rport)
{
	return c->lport == lport && c->rport == rport && pilot_addr_eq(c->raddr, ra);
}

static conn *hash_find(const conn_table *t, uint16_t lport, pilot_addr ra, uint16_t rport)
{
	conn *best = NULL;
	size_t m = t->hcap - 1, i;

	if (!t->hcap)
		return NULL;
	for (i = key_hash(t, lport, ra, rport) & m; t->hash[i]; i = (i + 1) & m) {
		conn *c = t->hash[i];
		if (c == TOMB || !key_eq(c, lport, ra, rport))
			continue;
		if (stream_state(c->s) != STREAM_TIME_WAIT)
			return c;
		best = c;
	}
	return best;
}

static void hash_put(conn_table *t, conn *c)
{
	size_t m = t->hcap - 1, i = key_hash(t, c->lport, c->raddr, c->rport) & m;

	while (t->hash[i] && t->hash[i] != TOMB)
		i = (i + 1) & m;
	if (!t->hash[i])
		t->hused++;
	t->hash[i] = c;
	t->hlive++;
	c->hashed = true;
}

static int hash_grow(conn_table *t)
{
	size_t n = 64, old = t->hcap;
	conn **oh = t->hash;

	while (n < (t->hlive + 1) * 4)
		n *= 2;
	t->hash = calloc(n, sizeof(*t->hash));
	if (!t->hash) {
		t->hash = oh;
		return -ENOMEM;
	}
	t->hcap = n;
	t->hused = t->hlive = 0;
	for (size_t i = 0; i < old; i++)
		if (oh[i] && oh[i] != TOMB)
			hash_put(t, oh[i]);
	free(oh);
	return 0;
}

static int hash_insert(conn_table *t, conn *c)
{
	if ((t->hused + 1) * 2 > t->hcap && hash_grow(t) < 0)
		return -ENOMEM;
	hash_put(t, c);
	return 0;
}

static void hash_remove(conn_table *t, conn *c)
{
	size_t m = t->hcap - 1, i;

	if (!c->hashed)
		return;
	for (i = key_hash(t, c->lport, c->raddr, c->rport) & m; t->hash[i]; i = (i + 1) & m) {
		if (t->hash[i] == c) {
			t->hash[i] = TOMB;
			t->hlive--;
			break;
		}
	}
	c->hashed = false;
}

/* ---- ephemeral ports ------------------------------------------------------------------ */

static bool eph_busy(const conn_table *t, uint32_t i)
{
	return t->eph_bits[i / 64] >> (i % 64) & 1;
}

static int eph_find(conn_table *t, bool take)
{
	for (uint32_t n = 0; n < t->eph_range; n++) {
		uint32_t i = t->eph_cursor;
		t->eph_cursor = (t->eph_cursor + 1) % t->eph_range;
		if (eph_busy(t, i))
			continue;
		if (take) {
			t->eph_bits[i / 64] |= 1ull << (i % 64);
			t->eph_used++;
		}
		return t->cfg.eph_min + (int)i;
	}
	return -EADDRINUSE;
}

int conn_eph_get(conn_table *t)
{
	return eph_find(t, true);
}

int conn_eph_peek(conn_table *t)
{
	return eph_find(t, false);
}

void conn_eph_put(conn_table *t, uint16_t port)
{
	uint32_t i;

	if (port < t->cfg.eph_min || port > t->cfg.eph_max)
		return;
	i = (uint32_t)(port - t->cfg.eph_min);
	if (eph_busy(t, i)) {
		t->eph_bits[i / 64] &= ~(1ull << (i % 64));
		t->eph_used--;
	}
}

/* ---- sending ------------------------------------------------------------------------ */

int conn_send_hdr(conn_table *t, uint32_t node, const proto_hdr *h, const uint8_t *pl, size_t n)
{
	proto_hdr hh = *h;
	uint8_t *out = t->scratch + t->cfg.headroom;
	int len, r;

	if (t->in_send) { /* send_packet re-entered us: the scratch is in use */
		t->st.tx_errors++;
		return -EBUSY;
	}
	hh.version = PROTO_VERSION;
	len = proto_packet_encode(&hh, pl, n, out, PROTO_MAX_PACKET);
	if (len < 0) {
		t->st.tx_errors++;
		return len;
	}
	t->st.tx_packets++;
	if (!t->cfg.send_packet)
		return 0;
	t->in_send = true;
	r = t->cfg.send_packet(t->cfg.ctx, node, out, (size_t)len);
	t->in_send = false;
	if (r < 0)
		t->st.tx_errors++;
	return r < 0 ? r : 0;
}

bool conn_local_ok(const conn_table *t, pilot_addr dst)
{
	return t->local.node == 0 || dst.node == t->local.node;
}

pilot_addr conn_src_for(const conn_table *t, pilot_addr dst)
{
	return pilot_addr_make(dst.net, t->local.node);
}

static void send_rst(conn_table *t, uint32_t from, const proto_hdr *h)
{
	proto_hdr r = {
		.flags = PROTO_RST, .protocol = PROTO_STREAM, .src = h->dst, .dst = h->src,
		.src_port = h->dst_port, .dst_port = h->src_port,
	};

	t->st.rst_sent++;
	conn_send_hdr(t, from, &r, NULL, 0);
}

/* ---- conn life cycle ------------------------------------------------------------------ */

static void queue_reap(conn *c)
{
	if (c->reaping)
		return;
	c->reaping = true;
	c->reap_next = c->t->reap;
	c->t->reap = c;
	conn_arm(c->t);
}

static void uncount(conn_table *t, conn *c)
{
	if (!c->counted)
		return;
	c->counted = false;
	for (size_t i = 0; i < t->nls; i++)
		if (t->ls[i].port == c->lport && t->ls[i].count)
			t->ls[i].count--;
}

static void release_port(conn *c)
{
	if (c->eph) {
		c->eph = false;
		conn_eph_put(c->t, c->lport);
	}
}

static conn *conn_alloc(conn_table *t)
{
	conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->t = t;
	pilot_heap_node_init(&c->hn);
	if (++t->next_id == 0)
		t->next_id = 1;
	c->id = t->next_id;
	c->prev = t->tail;
	if (t->tail)
		t->tail->next = c;
	else
		t->head = c;
	t->tail = c;
	t->nconns++;
	return c;
}

/* Closed connections' totals, so counters summed over the table never go back
 * (the metrics add the live connections to these). */
static void retire_stats(conn_table *t, conn *c)
{
	stream_stats s;

	if (!c->s)
		return;
	stream_get_stats(c->s, &s);
	t->st.closed_bytes_sent += s.bytes_sent;
	t->st.closed_bytes_rcvd += s.bytes_rcvd;
	t->st.closed_retransmits += s.retransmits;
	t->st.closed_fast_retransmits += s.fast_retransmits;
	t->st.closed_rto_timeouts += s.rto_timeouts;
}

static void conn_destroy(conn *c)
{
	conn_table *t = c->t;

	hash_remove(t, c);
	pilot_heap_remove(&t->heap, &c->hn);
	release_port(c);
	uncount(t, c);
	if (c->prev)
		c->prev->next = c->next;
	else
		t->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		t->tail = c->prev;
	t->nconns--;
	retire_stats(t, c);
	stream_free(c->s);
	free(c);
}

static void reap_all(conn_table *t)
{
	while (t->reap) {
		conn *c = t->reap;
		t->reap = c->reap_next;
		conn_destroy(c);
	}
}

/* The configured MSS, lowered to what node's underlay path carries unfragmented. */
static uint32_t path_mss(const conn_table *t, uint32_t node, uint32_t mss)
{
	uint32_t m = t->cfg.path_mss ? t->cfg.path_mss(t->cfg.ctx, node) : 0;

	return m >= 64 && m < mss ? m : mss;
}

static stream_params conn_params(const conn_table *t, uint32_t id, uint32_t node)
{
	stream_params p = t->cfg.stream;

	if (!p.mss)
		stream_params_default(&p);
	p.mss = path_mss(t, node, p.mss);
	p.seed = mix64(t->cfg.seed ^ ((uint64_t)id << 17 | 1));
	return p;
}

/* ---- engine callbacks ------------------------------------------------------------------- */

static void eng_xmit(void *ctx, stream_conn *s, const proto_hdr *h, const uint8_t *pl, size_t n)
{
	conn *c = ctx;

	conn_send_hdr(c->t, c->raddr.node, h, pl, n);
}

static void drain(conn *c)
{
	const uint8_t *p;
	size_t n;

	while ((n = stream_peek(c->s, &p)) > 0)
		stream_consume(c->s, n, conn_now(c->t));
}

static void eng_readable(void *ctx, stream_conn *s)
{
	conn *c = ctx;

	if (c->released || c->t->shut)
		drain(c);
	else if (c->cbs.on_readable)
		c->cbs.on_readable(c->arg, c);
}

static void eng_writable(void *ctx, stream_conn *s)
{
	conn *c = ctx;

	if (!c->released && !c->t->shut && c->cbs.on_writable)
		c->cbs.on_writable(c->arg, c);
}

void conn_emit(conn_table *t, enum conn_event ev, pilot_addr remote, uint16_t rport, uint16_t lport,
	       uint32_t id, size_t len)
{
	conn_event_info e = { .remote = remote, .rport = rport, .lport = lport, .conn_id = id, .len = len };

	if (t->cfg.event && !t->shut)
		t->cfg.event(t->cfg.ctx, ev, &e);
}

/* conn.* events of a state change (services.md §9). */
static void state_event(conn *c, enum stream_state old, enum stream_state now, int err)
{
	int ev = -1;

	if (old == STREAM_SYN_RECV && now > STREAM_SYN_RECV && !c->dialed)
		conn_emit(c->t, CONN_EV_ESTABLISHED, c->raddr, c->rport, c->lport, c->id, 0);
	if (now == STREAM_CLOSE_WAIT || (now == STREAM_TIME_WAIT && old == STREAM_FIN_WAIT))
		ev = CONN_EV_FIN;
	else if (now == STREAM_CLOSED && (err == ECONNRESET || err == ECONNREFUSED))
		ev = CONN_EV_RST;
	else if (now == STREAM_CLOSED && err == ETIMEDOUT && old >= STREAM_ESTABLISHED)
		ev = CONN_EV_IDLE_TIMEOUT;
	if (ev >= 0)
		conn_emit(c->t, (enum conn_event)ev, c->raddr, c->rport, c->lport, c->id, 0);
}

static void eng_state(void *ctx, stream_conn *s, enum stream_state old, enum stream_state now,
		      int err)
{
	conn *c = ctx;

	if (c->t->cfg.event)
		state_event(c, old, now, err);

	if (now == STREAM_ESTABLISHED && c->dialed)
		stream_set_mss(s, path_mss(c->t, c->raddr.node, c->t->cfg.stream.mss ?
					    c->t->cfg.stream.mss : STREAM_DEFAULT_MSS));
	if (now == STREAM_TIME_WAIT || now == STREAM_CLOSED)
		release_port(c);
	if (now == STREAM_CLOSED) {
		hash_remove(c->t, c);
		uncount(c->t, c);
		if (c->released)
			queue_reap(c);
	}
	if (!c->released && !c->t->shut && c->cbs.on_state)
		c->cbs.on_state(c->arg, c, old, now, err);
}

static const stream_cbs engine_cbs = { eng_xmit, eng_readable, eng_writable, eng_state };

/* ---- table ------------------------------------------------------------------------------- */

static void fill_defaults(conn_config *c)
{
	if (!c->syn_rate)
		c->syn_rate = 100;
	if (!c->syn_rate_peer)
		c->syn_rate_peer = 10;
	if (!c->syn_burst_peer)
		c->syn_burst_peer = 64;
	if (!c->syn_rate_untrusted)
		c->syn_rate_untrusted = c->syn_rate;
	if (!c->max_per_port)
		c->max_per_port = 1024;
	if (!c->max_total)
		c->max_total = 65536;
	if (!c->eph_min && !c->eph_max) {
		c->eph_min = PILOT_PORT_EPHEMERAL_MIN;
		c->eph_max = 65535;
	}
	if (!c->ping_timeout_ms)
		c->ping_timeout_ms = 3000;
	if (!c->max_pings)
		c->max_pings = 256;
	if (!c->seed)
		c->seed = 0x5DEECE66Dull;
}

conn_table *conn_table_new(const conn_config *cfg)
{
	conn_table *t;

	if (!cfg || cfg->eph_min > cfg->eph_max || (cfg->eph_min == 0 && cfg->eph_max != 0))
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->cfg = *cfg;
	fill_defaults(&t->cfg);
	t->scratch_cap = t->cfg.headroom + PROTO_MAX_PACKET + CONN_TAILROOM;
	t->eph_range = (uint32_t)(t->cfg.eph_max - t->cfg.eph_min) + 1;
	t->scratch = malloc(t->scratch_cap);
	t->eph_bits = calloc((t->eph_range + 63) / 64, sizeof(uint64_t));
	t->pbuckets = calloc(CONN_PEER_BUCKETS, sizeof(*t->pbuckets));
	t->pings = calloc(t->cfg.max_pings, sizeof(*t->pings));
	if (!t->scratch || !t->eph_bits || !t->pbuckets || !t->pings || hash_grow(t) < 0) {
		conn_table_free(t);
		return NULL;
	}
	return t;
}

static void shutdown_conn(conn *c, uint64_t now)
{
	enum stream_state st = stream_state(c->s);
	stream_stats ss;

	stream_get_stats(c->s, &ss);
	if ((st == STREAM_ESTABLISHED || st == STREAM_CLOSE_WAIT) && ss.snd_buffered == 0)
		stream_shutdown_write(c->s, now); /* all acknowledged: the FIN goes now */
	else if (st != STREAM_TIME_WAIT && st != STREAM_CLOSED &&
		 !(st == STREAM_FIN_WAIT && ss.snd_buffered == 0))
		stream_abort(c->s, now);
}

void conn_table_shutdown(conn_table *t)
{
	uint64_t now;

	if (!t || t->shut)
		return;
	t->shut = true;
	now = conn_now(t);
	for (conn *c = t->head; c; c = c->next)
		if (c->s)
			shutdown_conn(c, now);
	/* A handle its owner still holds stays valid (dead: released, so no I/O and
	 * no callbacks) until the owner lets go (conn_close / conn_abort free it at
	 * once) or the table is freed: owners released after the shutdown (the TUN
	 * bridge in node_free) must not touch freed memory. */
	for (conn *c = t->head, *next; c; c = next) {
		next = c->next;
		if (c->released) {
			conn_destroy(c);
			continue;
		}
		c->released = c->orphan = true;
		hash_remove(t, c);
		pilot_heap_remove(&t->heap, &c->hn);
		release_port(c);
		uncount(t, c);
	}
	t->reap = NULL;
	conn_pings_cancel_all(t);
	if (t->cfg.loop && t->timer_id)
		pilot_loop_del_timer(t->cfg.loop, t->timer_id);
	t->timer_id = 0;
	t->dflt = NULL;
	free(t->ls);
	t->ls = NULL;
	t->nls = t->capls = 0;
	conn_svc_free(t);
}

void conn_table_free(conn_table *t)
{
	if (!t)
		return;
	conn_table_shutdown(t);
	while (t->head) /* handles never released */
		conn_destroy(t->head);
	free(t->hash);
	pilot_heap_free(&t->heap);
	free(t->scratch);
	free(t->eph_bits);
	free(t->pbuckets);
	free(t->pings);
	free(t);
}

void conn_set_local_addr(conn_table *t, pilot_addr a)
{
	t->local = a;
}

pilot_addr conn_local_addr(const conn_table *t)
{
	return t->local;
}

void conn_table_tick(conn_table *t)
{
	uint64_t now = conn_now(t);
	size_t budget;

	if (t->shut)
		return;
	t->in_tick = true;
	/* each conn whose deadline passed runs once; a deadline that stays in the
	 * past (engine bug) waits for the next tick instead of spinning */
	budget = pilot_heap_len(&t->heap);
	while (budget-- && pilot_heap_top(&t->heap) && pilot_heap_top(&t->heap)->key <= now) {
		conn *c = PILOT_HEAP_ENTRY(pilot_heap_top(&t->heap), conn, hn);
		stream_on_timer(c->s, now);
		resched(c);
		if (pilot_heap_contains(&c->hn) && c->hn.key <= now)
			pilot_heap_set(&t->heap, &c->hn, now + 1000);
	}
	conn_pings_expire(t, now);
	reap_all(t);
	t->in_tick = false;
	conn_arm(t);
}

void conn_get_stats(const conn_table *t, conn_table_stats *st)
{
	*st = t->st;
	st->active = t->nconns;
	st->listeners = t->nls;
}

/* ---- listeners ---------------------------------------------------------------------------- */

static conn_listener *listener_find(conn_table *t, uint16_t port)
{
	for (size_t i = 0; i < t->nls; i++)
		if (t->ls[i].port == port)
			return &t->ls[i];
	return NULL;
}

int conn_listen(conn_table *t, uint16_t port, const conn_listener_cbs *cbs, void *arg)
{
	if (!cbs || !cbs->accept || t->shut)
		return -EINVAL;
	if (listener_find(t, port))
		return -EADDRINUSE;
	if (t->nls == t->capls) {
		size_t n = t->capls ? t->capls * 2 : 8;
		conn_listener *p = realloc(t->ls, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		t->ls = p;
		t->capls = n;
	}
	t->ls[t->nls++] = (conn_listener){ .port = port, .cbs = *cbs, .arg = arg };
	return 0;
}

int conn_unlisten(conn_table *t, uint16_t port)
{
	conn_listener *l = listener_find(t, port);

	if (!l)
		return -ENOENT;
	*l = t->ls[--t->nls];
	for (conn *c = t->head; c; c = c->next)
		if (c->counted && c->lport == port)
			c->counted = false;
	return 0;
}

/* ---- SYN admission ---------------------------------------------------------------------------- */

static bool bucket_take(conn_bucket *b, uint32_t rate, uint32_t burst, uint64_t now)
{
	uint64_t cap = (uint64_t)burst * TOKEN;

	if (!b->used) {
		b->used = true;
		b->tokens = cap;
		b->last = now;
	}
	if (now > b->last) {
		uint64_t dt = now - b->last;
		b->tokens = dt > cap ? cap : b->tokens + dt * rate; /* rate tokens/s = rate/µs millionths */
		if (b->tokens > cap)
			b->tokens = cap;
		b->last = now;
	}
	if (b->tokens < TOKEN)
		return false;
	b->tokens -= TOKEN;
	return true;
}

static bool syn_rate_ok(conn_table *t, uint32_t node, uint64_t now)
{
	conn_bucket *b = &t->pbuckets[mix64(node ^ t->cfg.seed) % CONN_PEER_BUCKETS];

	if (b->used && b->node != node)
		b->used = false; /* direct-mapped: a colliding node starts afresh */
	b->node = node;
	/* per source first, so one flooding node cannot drain the global bucket */
	if (!bucket_take(b, t->cfg.syn_rate_peer, t->cfg.syn_burst_peer, now))
		return false;
	/* many untrusted sources together spend only their own budget */
	if (t->cfg.trusted && !t->cfg.trusted(t->cfg.ctx, node)) {
		if (bucket_take(&t->ubucket, t->cfg.syn_rate_untrusted, t->cfg.syn_rate_untrusted, now))
			return true;
		t->st.drop_syn_untrusted++;
		return false;
	}
	return bucket_take(&t->gbucket, t->cfg.syn_rate, t->cfg.syn_rate, now);
}

/* A conn for an inbound SYN h: addresses from h, the engine accepting, in the
 * 4-tuple hash. NULL when out of memory. */
static conn *accept_alloc(conn_table *t, const proto_hdr *h, uint64_t now)
{
	stream_params p;
	conn *c = conn_alloc(t);

	if (!c)
		return NULL;
	c->laddr = h->dst;
	c->lport = h->dst_port;
	c->raddr = h->src;
	c->rport = h->src_port;
	p = conn_params(t, c->id, c->raddr.node);
	c->s = stream_accept(&p, h, &engine_cbs, c, now);
	if (!c->s || hash_insert(t, c) < 0) {
		c->released = true;
		conn_destroy(c);
		return NULL;
	}
	conn_emit(t, CONN_EV_SYN_RECEIVED, c->raddr, c->rport, c->lport, c->id, 0);
	return c;
}

static conn *accept_new(conn_table *t, conn_listener *l, const proto_hdr *h, uint64_t now)
{
	conn *c = accept_alloc(t, h, now);

	if (!c)
		return NULL;
	c->counted = true;
	l->count++;
	t->st.syn_accepted++;
	return c;
}

static void new_syn(conn_table *t, uint32_t from, const proto_hdr *h, conn *tw, uint64_t now)
{
	conn_listener *l;
	conn_listener_cbs cbs;
	void *arg;
	conn *c;

	if (t->cfg.admit && !t->cfg.admit(t->cfg.ctx, from, h->dst_port, PROTO_STREAM)) {
		t->st.drop_refused++;
		return;
	}
	if (!syn_rate_ok(t, from, now)) {
		t->st.drop_syn_rate++;
		conn_emit(t, CONN_EV_SYN_RATE_LIMITED, h->src, h->src_port, h->dst_port, 0, 0);
		return;
	}
	l = listener_find(t, h->dst_port);
	if (!l && t->dflt) {
		t->dflt(t->dflt_arg, from, h);
		return;
	}
	if (!l) {
		t->st.drop_no_listener++;
		send_rst(t, from, h);
		return;
	}
	if (l->count >= t->cfg.max_per_port || t->nconns - (tw ? 1 : 0) >= t->cfg.max_total) {
		t->st.drop_cap++;
		send_rst(t, from, h);
		return;
	}
	if (tw) { /* the old incarnation is over: end it without an RST */
		stream_abort(tw->s, now);
		resched(tw);
	}
	cbs = l->cbs;
	arg = l->arg;
	c = accept_new(t, l, h, now);
	if (!c) {
		send_rst(t, from, h);
		return;
	}
	if (!cbs.accept(arg, c))
		conn_abort(c);
	else
		resched(c);
}

void conn_listen_default(conn_table *t, conn_syn_cb cb, void *arg)
{
	t->dflt = t->shut ? NULL : cb;
	t->dflt_arg = arg;
}

static conn *accept_deferred(conn_table *t, const proto_hdr *h, int *err)
{
	uint64_t now = conn_now(t);
	conn *tw = hash_find(t, h->dst_port, h->src, h->src_port);
	conn *c;

	if (tw && stream_state(tw->s) != STREAM_TIME_WAIT) {
		*err = -EEXIST;
		return NULL;
	}
	if (t->nconns - (tw ? 1 : 0) >= t->cfg.max_total) {
		*err = -ENOBUFS;
		return NULL;
	}
	if (tw) {
		stream_abort(tw->s, now);
		resched(tw);
	}
	*err = -ENOMEM;
	if (!(c = accept_alloc(t, h, now)))
		return NULL;
	t->st.syn_accepted++;
	return c;
}

conn *conn_accept_syn(conn_table *t, uint32_t from_node, const proto_hdr *syn,
		      const conn_cbs *cbs, void *arg, int *err)
{
	int e = -EINVAL;
	conn *c = NULL;

	(void)from_node; /* replies go to syn->src.node, like every accepted conn */
	if (t->shut)
		e = -ESHUTDOWN;
	else if (syn && syn->protocol == PROTO_STREAM &&
		 (syn->flags & (PROTO_SYN | PROTO_ACK | PROTO_RST)) == PROTO_SYN)
		c = accept_deferred(t, syn, &e);
	if (err)
		*err = c ? 0 : e;
	if (!c)
		return NULL;
	c->cbs = cbs ? *cbs : (conn_cbs){ 0 };
	c->arg = arg;
	resched(c);
	return c;
}

void conn_refuse_syn(conn_table *t, uint32_t from_node, const proto_hdr *syn)
{
	if (t->shut || !syn)
		return;
	t->st.drop_no_listener++;
	send_rst(t, from_node, syn);
}

static void stream_rx(conn_table *t, uint32_t from, const proto_hdr *h, const uint8_t *pl, size_t n)
{
	uint64_t now = conn_now(t);
	conn *c;

	if (!conn_local_ok(t, h->dst)) {
		t->st.drop_not_local++;
		return;
	}
	c = hash_find(t, h->dst_port, h->src, h->src_port);
	if ((h->flags & (PROTO_SYN | PROTO_ACK | PROTO_RST)) == PROTO_SYN &&
	    (!c || stream_state(c->s) == STREAM_TIME_WAIT)) {
		new_syn(t, from, h, c, now);
		return;
	}
	if (!c) {
		t->st.drop_no_conn++;
		return;
	}
	stream_input(c->s, h, pl, n, now);
	resched(c);
}

/* A ping (a control request from a non-zero port to port 0) needs admission
 * like a datagram: a private node must not confirm to strangers that it is up.
 * Tunnel keepalives and path probes (port 0 to port 0) pass whatever the trust:
 * the tunnel layer lives on them. Pongs answer our own pings (matched by port). */
static bool control_refused(conn_table *t, uint32_t from, const proto_hdr *h)
{
	if ((h->flags & PROTO_ACK) || h->dst_port != PILOT_PORT_PING || h->src_port == 0)
		return false;
	return t->cfg.admit && !t->cfg.admit(t->cfg.ctx, from, PILOT_PORT_PING, PROTO_CONTROL);
}

static void input(conn_table *t, uint32_t from_node, const uint8_t *pkt, size_t len, bool crc_checked)
{
	proto_hdr h;
	const uint8_t *pl;
	int r;

	if (!t || t->shut)
		return;
	t->st.rx_packets++;
	r = crc_checked ? proto_packet_decode_checked(pkt, len, 1, &h, &pl)
			: proto_packet_decode(pkt, len, 1, &h, &pl);
	if (r < 0) {
		if (r == -EBADMSG)
			t->st.drop_bad_crc++;
		else if (r == -EPROTO)
			t->st.drop_bad_version++;
		else
			t->st.drop_short++;
		return;
	}
	if (h.src.node != from_node && !(h.protocol == PROTO_CONTROL && h.src.node == 0)) {
		t->st.drop_spoofed++;
		return;
	}
	if (h.protocol == PROTO_STREAM)
		stream_rx(t, from_node, &h, pl, h.payload_len);
	else if (h.protocol == PROTO_DATAGRAM)
		conn_dgram_input(t, from_node, &h, pl, h.payload_len);
	else if (h.protocol == PROTO_CONTROL && control_refused(t, from_node, &h))
		t->st.drop_refused++;
	else if (h.protocol == PROTO_CONTROL)
		conn_control_input(t, from_node, &h, pl, h.payload_len);
	else
		t->st.drop_unknown_proto++;
}

void conn_input(conn_table *t, uint32_t from_node, const uint8_t *pkt, size_t len)
{
	input(t, from_node, pkt, len, false);
}

void conn_input_checked(conn_table *t, uint32_t from_node, const uint8_t *pkt, size_t len)
{
	input(t, from_node, pkt, len, true);
}

/* ---- dial and the application side ---------------------------------------------------------- */

conn *conn_dial(conn_table *t, pilot_addr dst, uint16_t port, const conn_cbs *cbs, void *arg,
		int *err)
{
	stream_params p;
	conn *c = NULL;
	int e = 0, lp = -1;

	if (t->shut)
		e = -ESHUTDOWN;
	else if (pilot_addr_is_broadcast(dst) || dst.node == 0)
		e = -EINVAL;
	else if (t->local.node == 0)
		e = -EADDRNOTAVAIL;
	else if (t->nconns >= t->cfg.max_total)
		e = -ENOBUFS;
	else if ((lp = conn_eph_get(t)) < 0)
		e = lp;
	else if (!(c = conn_alloc(t)))
		e = -ENOMEM;
	if (e) {
		if (e == -ENOMEM)
			conn_eph_put(t, (uint16_t)lp);
		if (err)
			*err = e;
		return NULL;
	}
	c->laddr = conn_src_for(t, dst);
	c->lport = (uint16_t)lp;
	c->raddr = dst;
	c->rport = port;
	c->eph = c->dialed = true;
	if (cbs)
		c->cbs = *cbs;
	c->arg = arg;
	p = conn_params(t, c->id, c->raddr.node);
	c->s = stream_dial(&p, c->laddr, c->lport, dst, port, &engine_cbs, c, conn_now(t));
	if (!c->s || hash_insert(t, c) < 0) {
		c->released = true;
		conn_destroy(c);
		if (err)
			*err = -ENOMEM;
		return NULL;
	}
	resched(c);
	return c;
}

void conn_set_cbs(conn *c, const conn_cbs *cbs, void *arg)
{
	if (cbs)
		c->cbs = *cbs;
	else
		memset(&c->cbs, 0, sizeof(c->cbs));
	c->arg = arg;
}

size_t conn_write(conn *c, const void *buf, size_t len)
{
	size_t n;

	if (!c || c->released)
		return 0;
	n = stream_write(c->s, buf, len, conn_now(c->t));
	resched(c);
	return n;
}

size_t conn_read(conn *c, void *buf, size_t len)
{
	size_t n;

	if (!c || c->released)
		return 0;
	n = stream_read(c->s, buf, len, conn_now(c->t));
	resched(c);
	return n;
}

size_t conn_peek(conn *c, const uint8_t **p)
{
	return c && !c->released ? stream_peek(c->s, p) : 0;
}

void conn_consume(conn *c, size_t n)
{
	if (!c || c->released)
		return;
	stream_consume(c->s, n, conn_now(c->t));
	resched(c);
}

size_t conn_readable(const conn *c)
{
	return c ? stream_readable(c->s) : 0;
}

size_t conn_writable(const conn *c)
{
	return c && !c->released ? stream_writable(c->s) : 0;
}

void conn_want_writable(conn *c)
{
	if (c && !c->released)
		stream_want_writable(c->s);
}

bool conn_eof(const conn *c)
{
	return c && stream_eof(c->s);
}

void conn_shutdown(conn *c)
{
	if (!c || c->released)
		return;
	stream_shutdown_write(c->s, conn_now(c->t));
	resched(c);
}

void conn_close(conn *c)
{
	enum stream_state st;

	if (c && c->orphan) {
		conn_destroy(c);
		return;
	}
	if (!c || c->released)
		return;
	c->released = true;
	st = stream_state(c->s);
	if (st == STREAM_SYN_SENT)
		stream_abort(c->s, conn_now(c->t));
	else if (st == STREAM_SYN_RECV || st == STREAM_ESTABLISHED || st == STREAM_CLOSE_WAIT)
		stream_shutdown_write(c->s, conn_now(c->t));
	drain(c);
	if (stream_state(c->s) == STREAM_CLOSED)
		queue_reap(c);
	resched(c);
}

void conn_abort(conn *c)
{
	if (c && c->orphan) {
		conn_destroy(c);
		return;
	}
	if (!c)
		return;
	c->released = true;
	stream_abort(c->s, conn_now(c->t));
	queue_reap(c);
	resched(c);
}

void conn_reset(conn *c)
{
	if (!c || c->orphan)
		return;
	stream_abort(c->s, conn_now(c->t));
	resched(c);
}

void conn_set_nodelay(conn *c, bool on)
{
	if (!c || c->released)
		return;
	stream_set_nodelay(c->s, on);
	resched(c);
}

uint32_t conn_id(const conn *c)
{
	return c->id;
}

enum stream_state conn_state(const conn *c)
{
	return stream_state(c->s);
}

void conn_get_info(const conn *c, conn_info *out)
{
	*out = (conn_info){
		.id = c->id, .local_port = c->lport, .remote_port = c->rport, .local = c->laddr,
		.remote = c->raddr, .state = stream_state(c->s), .dialed = c->dialed,
	};
	stream_get_stats(c->s, &out->stats);
}

conn *conn_lookup_id(conn_table *t, uint32_t id)
{
	for (conn *c = t->head; c; c = c->next)
		if (c->id == id && !c->reaping)
			return c;
	return NULL;
}

void conn_foreach(conn_table *t, void (*fn)(void *arg, const conn_info *ci), void *arg)
{
	conn_info ci;

	for (conn *c = t->head; c; c = c->next) {
		if (c->reaping)
			continue;
		conn_get_info(c, &ci);
		fn(arg, &ci);
	}
}
