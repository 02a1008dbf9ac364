/* The UDP beacon (tunnel.md §9) with identity checks; the rules are in BEACON.md.
 *
 * Hot path: one recvmmsg fills BCN_BATCH fixed buffers; each datagram is handled in
 * place (a Relay's 9-byte header is rewritten into the 5-byte RelayDeliver header
 * that ends where the frame starts, so the frame never moves) and replies are
 * queued into a fixed sendmmsg batch that is flushed once per receive batch.
 * UDP GSO on send: consecutive queued datagrams to one destination, all of one
 * size but the last (which may be shorter), go out as one sendmmsg entry (their
 * iovecs) with a UDP_SEGMENT cmsg: one route lookup and one skb through the stack
 * for up to BCN_GSO_SEGS datagrams; on the wire the same datagrams. Segments are
 * kept to BCN_GSO_SEG_MAX (an Ethernet path carries them unfragmented: the kernel
 * refuses a GSO segment over the path MTU). A kernel or device that cannot
 * (EIO, ENOPROTOOPT, EOPNOTSUPP, or EINVAL BCN_GSO_EINVAL_MAX times) turns GSO
 * off; a group refused otherwise goes again one datagram per entry.
 * Nothing is allocated per packet; the node table only reallocates when it grows,
 * shrinks or sheds expired entries.
 *
 * Signed Discover extension (wire-compatible: a reference beacon reads 5 bytes, a
 * newer one 37, both ignore the rest):
 *   01 ‖ node (4) ‖ Ed25519 public key (32) ‖ ts (8, unix seconds, BE) ‖ sig (64)
 * sig = Ed25519 over the ASCII string "discover:<node>:<ts>" (both decimal). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "lib/crypto.h"
#include "lib/log.h"
#include "lib/proto.h"
#include "rendezvous/beacon.h"
#include "rendezvous/beacon_internal.h"

#define BCN_BATCH        64
#define BCN_BUFSZ        (65536 + 64)
#define BCN_SENDQ        (2 * BCN_BATCH)   /* a datagram queues at most 2 sends */
#define BCN_REPLY_MAX    24                /* 02 ‖ 16 ‖ IPv6 ‖ port = 20 */
#define BCN_SOCKBUF      (8 << 20)
#define BCN_SWEEP_MS     60000
#define BCN_MAX_NODES    1000000
#define BCN_TABLE_MIN    1024
#define BCN_PUNCH_PAIR_MS 1000              /* PunchRequests per (requester, target) pair: 1/s */
#define BCN_PUNCH_PER_S  20                /* PunchRequests per requester per second */
#define BCN_PUNCH_SETS   4096              /* pair cache: sets x BCN_FLOW_WAYS entries */
#define BCN_KX_PER_S     10                /* key exchanges/s to peers it may not talk to */
#define BCN_FLOW_SETS    16384
#define BCN_FLOW_WAYS    4
#define BCN_READS_PER_WAKE 16              /* batches per wake-up, then let others run */
#define BCN_NOTIFY_Q     1024              /* nodes with a deferred Notify */
#define BCN_SYNC_MS        10000             /* full Sync to every peer beacon (tunnel.md §9.1) */
#define BCN_LEARN_MS       (3 * BCN_SYNC_MS) /* a learned holder not re-announced: forgotten */
#define BCN_LEARN_SETS     16384             /* learned holders: sets x BCN_FLOW_WAYS entries */
#define BCN_SYNC_IDS       256               /* node IDs per Sync datagram (1 KiB + header) */
#define BCN_TAG_LEN        16                /* keyed BLAKE2b tag on beacon-to-beacon messages */
#define BCN_GSO_SEGS       64                /* UDP_MAX_SEGMENTS of older kernels */
#define BCN_GSO_BYTES      65000u            /* under the 65507-byte UDP payload limit */
#define BCN_GSO_SEG_MAX    1452              /* 1500 - IPv6 40 - UDP 8: unfragmented on Ethernet */
#define BCN_GSO_EINVAL_MAX 16
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

/* An endpoint, always as IPv6 (IPv4 as ::ffff:a.b.c.d); port in host order. */
typedef struct bcn_ep {
	uint8_t ip[16];
	uint16_t port;
} bcn_ep;

enum { SLOT_FREE = 0, SLOT_USED, SLOT_DEAD };

/* One verified node. Only verified endpoints are stored: an unproven claim is of
 * no use for punch or relay, and refusing it keeps strangers from filling the table. */
typedef struct bcn_node {
	uint32_t node;
	uint8_t state;
	uint8_t has_key;      /* standalone: key bound by the first signed Discover */
	uint8_t no_ep;        /* a WSS node: entry for relay bookkeeping only, ep unused */
	uint16_t kx_count;    /* key-exchange frames in the current 1 s window */
	bcn_ep ep;
	uint64_t seen_ms;     /* last proof or refresh (monotonic) */
	uint64_t last_ts;     /* newest accepted signed-Discover ts: replays must be newer */
	uint16_t punch_count; /* PunchRequests in the current 1 s window */
	uint64_t punch_ms;    /* start of the PunchRequest window */
	uint64_t kx_ms;       /* start of the key-exchange window */
	uint64_t notify_ms;   /* last Notify sent (0 = never) */
	uint8_t notify_due;   /* kind of a deferred Notify, 0 = none */
	uint8_t key[PROTO_ED25519_LEN];
} bcn_node;

/* "from relayed something to to at ms": the reply rule of BEACON.md. */
typedef struct bcn_flow {
	uint32_t from, to;
	uint64_t ms;
} bcn_flow;

struct beacon {
	pilot_loop *loop;
	registry *reg;
	int fd, family, port;
	uint64_t sweep_timer;
	int64_t skew_ms;
	uint64_t now_ms;
	uint8_t hkey[crypto_shorthash_KEYBYTES];

	bcn_node *tab;
	size_t cap, used, dead;
	bcn_flow *flows;
	bcn_flow *punches;    /* last PunchRequest per (requester, target) */
	beacon_wss_sink sink;
	bool has_sink;

	uint8_t *rbuf;
	struct mmsghdr rmsg[BCN_BATCH];
	struct iovec riov[BCN_BATCH];
	struct sockaddr_storage rsrc[BCN_BATCH];

	struct mmsghdr smsg[BCN_SENDQ];
	struct iovec siov[BCN_SENDQ];
	struct sockaddr_storage sdst[BCN_SENDQ];
	uint8_t sreply[BCN_SENDQ][BCN_REPLY_MAX];
	unsigned nsend;
	/* GSO groups of the send queue: entries [i, i + gn) share one sendmmsg entry */
	struct mmsghdr gmsg[BCN_SENDQ];
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} gctl[BCN_SENDQ];
	uint16_t gn[BCN_SENDQ];
	bool gso_off;
	unsigned gso_einval;

	uint32_t notify_q[BCN_NOTIFY_Q]; /* nodes whose Notify waits for its gap */
	unsigned nnotify;
	uint64_t notify_timer;

	/* cluster (BEACON.md "Several beacons"): peers, who holds which node */
	bcn_ep peers[BEACON_PEERS_MAX];
	unsigned npeers;
	uint32_t self_id; /* our beacon ID in Sync (random) */
	bool has_secret;
	uint8_t secret[crypto_generichash_KEYBYTES];
	bcn_flow *learned; /* from = node, to = peer index + 1, ms = last announced */
	uint8_t *fwdbuf;   /* an injected (WSS) Relay forwarded to a peer, with its tag */
	uint64_t sync_timer;

	beacon_stats st;
};

/* ---- clock and hashing ---------------------------------------------------- */

static uint64_t bcn_now(const beacon *b)
{
	return (uint64_t)((int64_t)pilot_loop_now_ms(b->loop) + b->skew_ms);
}

static uint64_t bcn_hash(const beacon *b, const uint8_t *in, size_t len)
{
	uint8_t out[crypto_shorthash_BYTES];
	uint64_t h;

	/* keyed SipHash: a client choosing node IDs cannot aim them at one bucket */
	crypto_shorthash(out, in, len, b->hkey);
	memcpy(&h, out, sizeof(h));
	return h;
}

static size_t node_slot(const beacon *b, uint32_t node)
{
	uint8_t in[4];

	proto_put32(in, node);
	return (size_t)bcn_hash(b, in, sizeof(in)) & (b->cap - 1);
}

/* ---- node table: open addressing, linear probing, tombstones --------------- */

static bcn_node *node_find(const beacon *b, uint32_t node)
{
	size_t mask = b->cap - 1, i = node_slot(b, node);

	/* load (used + dead) stays <= 1/2, so a free slot always ends the probe */
	for (;; i = (i + 1) & mask) {
		bcn_node *e = &b->tab[i];

		if (e->state == SLOT_FREE)
			return NULL;
		if (e->state == SLOT_USED && e->node == node)
			return e;
	}
}

static bool node_fresh(const beacon *b, const bcn_node *e)
{
	return e && e->seen_ms + BEACON_STALE_MS >= b->now_ms;
}

static bcn_node *node_find_fresh(const beacon *b, uint32_t node)
{
	bcn_node *e = node_find(b, node);

	return node_fresh(b, e) ? e : NULL;
}

/* A fresh entry with a verified UDP endpoint (not a WSS node's bookkeeping entry). */
static bcn_node *node_find_udp(const beacon *b, uint32_t node)
{
	bcn_node *e = node_find_fresh(b, node);

	return e && !e->no_ep ? e : NULL;
}

static bcn_node *slot_for_insert(beacon *b, uint32_t node)
{
	size_t mask = b->cap - 1, i = node_slot(b, node);

	while (b->tab[i].state == SLOT_USED)
		i = (i + 1) & mask;
	return &b->tab[i];
}

/* Reallocate to a power of two holding used + extra at load <= 1/4, dropping tombstones. */
static int table_rebuild(beacon *b, size_t extra)
{
	size_t ncap = BCN_TABLE_MIN, ocap = b->cap;
	bcn_node *old = b->tab, *nt;

	while (ncap < (b->used + extra) * 4)
		ncap *= 2;
	if (!(nt = calloc(ncap, sizeof(*nt))))
		return -ENOMEM;
	b->tab = nt;
	b->cap = ncap;
	b->dead = 0;
	for (size_t i = 0; i < ocap; i++)
		if (old[i].state == SLOT_USED)
			*slot_for_insert(b, old[i].node) = old[i];
	free(old);
	return 0;
}

/* Caller checked node_find returned NULL. May move every entry (rebuild). */
static bcn_node *node_insert(beacon *b, uint32_t node)
{
	bcn_node *e;

	if (b->used >= BCN_MAX_NODES
	    || ((b->used + b->dead + 1) * 2 > b->cap && table_rebuild(b, 1) < 0)) {
		b->st.table_full++;
		return NULL;
	}
	e = slot_for_insert(b, node);
	if (e->state == SLOT_DEAD)
		b->dead--;
	memset(e, 0, sizeof(*e));
	e->node = node;
	e->state = SLOT_USED;
	b->used++;
	return e;
}

void beacon_expire(beacon *b)
{
	size_t n = 0;

	b->now_ms = bcn_now(b);
	for (size_t i = 0; i < b->cap; i++) {
		bcn_node *e = &b->tab[i];

		if (e->state == SLOT_USED && !node_fresh(b, e)) {
			e->state = SLOT_DEAD;
			b->used--;
			b->dead++;
			n++;
		}
	}
	/* shed the tombstones (and shrink after a mass expiry); on ENOMEM keep them */
	if (n && table_rebuild(b, 0) < 0)
		log_warn("beacon: cannot compact the node table error=ENOMEM");
	if (n)
		log_debug("beacon: expired stale endpoints count=%zu remaining=%zu", n, b->used);
}

static int64_t sweep_cb(pilot_loop *l, uint64_t id, void *arg)
{
	beacon_expire(arg);
	return BCN_SWEEP_MS;
}

/* ---- endpoints --------------------------------------------------------------- */

static int ep_from_sa(const struct sockaddr_storage *ss, bcn_ep *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		ep->ip[10] = ep->ip[11] = 0xff;
		memcpy(ep->ip + 12, &s4->sin_addr, 4);
		ep->port = ntohs(s4->sin_port);
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		memcpy(ep->ip, &s6->sin6_addr, 16);
		ep->port = ntohs(s6->sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

static bool ep_v4(const bcn_ep *e)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

	return memcmp(e->ip, mapped, sizeof(mapped)) == 0;
}

static bool ep_eq(const bcn_ep *a, const bcn_ep *b)
{
	return a->port == b->port && memcmp(a->ip, b->ip, 16) == 0;
}

/* Destination address for the socket's family; 0 if it cannot be reached from it. */
static socklen_t ep_to_sa(const beacon *b, const bcn_ep *e, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (b->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		if (!ep_v4(e))
			return 0;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, e->ip + 12, 4);
		s4->sin_port = htons(e->port);
		return sizeof(*s4);
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	s6->sin6_family = AF_INET6;
	memcpy(&s6->sin6_addr, e->ip, 16);
	s6->sin6_port = htons(e->port);
	return sizeof(*s6);
}

/* The wire form: IPv4 and IPv4-mapped IPv6 both go out as ip_len 4. */
static void ep_to_proto(const bcn_ep *e, proto_endpoint *p)
{
	memset(p, 0, sizeof(*p));
	if (ep_v4(e)) {
		p->ip_len = 4;
		memcpy(p->ip, e->ip + 12, 4);
	} else {
		p->ip_len = 16;
		memcpy(p->ip, e->ip, 16);
	}
	p->port = e->port;
}

/* A numeric IP string (as the registry keeps it) in the bcn_ep form. */
static int ip_parse(const char *s, uint8_t ip[16])
{
	char tmp[INET6_ADDRSTRLEN + 8];
	size_t n = strcspn(s, "%");

	if (n >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	memset(ip, 0, 16);
	if (inet_pton(AF_INET, tmp, ip + 12) == 1) {
		ip[10] = ip[11] = 0xff;
		return 0;
	}
	return inet_pton(AF_INET6, tmp, ip) == 1 ? 0 : -EINVAL;
}

/* ---- send queue ------------------------------------------------------------------ */

/* One datagram per entry for [*off, end); false = the socket is full (the rest
 * of the batch, to nsend, is then dropped and counted by the caller). */
static bool flush_plain(beacon *b, unsigned *off, unsigned end)
{
	while (*off < end) {
		int n = sendmmsg(b->fd, b->smsg + *off, end - *off, 0);

		if (n > 0) {
			*off += (unsigned)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
			/* the first message was refused (unreachable, bad family...): skip it */
			b->st.send_errors++;
			(*off)++;
		} else {
			return false; /* socket buffer full: UDP drops, like a router would */
		}
	}
	return true;
}

static bool same_dest(const beacon *b, unsigned i, unsigned j)
{
	return b->smsg[i].msg_hdr.msg_namelen == b->smsg[j].msg_hdr.msg_namelen &&
		!memcmp(&b->sdst[i], &b->sdst[j], b->smsg[i].msg_hdr.msg_namelen);
}

/* Group the queue from off (see the top of the file); returns the groups. */
static unsigned gso_build(beacon *b, unsigned off)
{
	unsigned g = 0, i = off;

	while (i < b->nsend) {
		size_t seg = b->siov[i].iov_len, total = seg;
		unsigned j = i + 1;

		while (seg <= BCN_GSO_SEG_MAX && j < b->nsend && j - i < BCN_GSO_SEGS &&
		       b->siov[j].iov_len <= seg && b->siov[j].iov_len &&
		       total + b->siov[j].iov_len <= BCN_GSO_BYTES && same_dest(b, i, j)) {
			total += b->siov[j].iov_len;
			if (b->siov[j++].iov_len < seg)
				break; /* a shorter datagram ends a group */
		}
		b->gmsg[g] = (struct mmsghdr){ .msg_hdr = { .msg_name = b->smsg[i].msg_hdr.msg_name,
							    .msg_namelen = b->smsg[i].msg_hdr.msg_namelen,
							    .msg_iov = &b->siov[i],
							    .msg_iovlen = j - i } };
		if (j - i > 1) {
			struct msghdr *m = &b->gmsg[g].msg_hdr;
			struct cmsghdr *cm;
			uint16_t sz = (uint16_t)seg;

			m->msg_control = b->gctl[g].buf;
			m->msg_controllen = sizeof(b->gctl[g].buf);
			cm = CMSG_FIRSTHDR(m);
			cm->cmsg_level = SOL_UDP;
			cm->cmsg_type = UDP_SEGMENT;
			cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
			memcpy(CMSG_DATA(cm), &sz, sizeof(sz));
		}
		b->gn[g++] = (uint16_t)(j - i);
		i = j;
	}
	return g;
}

/* Errors that mean this kernel, socket or device cannot send UDP GSO (as in the
 * daemon's udp.c); EINVAL also comes for a segment over the path MTU, so it only
 * turns GSO off when it keeps coming. */
static bool gso_unsupported(beacon *b, int err)
{
	if (err == EINVAL)
		return ++b->gso_einval >= BCN_GSO_EINVAL_MAX;
	return err == EIO || err == ENOPROTOOPT || err == EOPNOTSUPP;
}

void beacon_flush(beacon *b)
{
	unsigned off = 0;

	while (!b->gso_off && off < b->nsend) {
		unsigned g = gso_build(b, off), k = 0;
		int n = sendmmsg(b->fd, b->gmsg, g, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
			goto full;
		if (n < 0 && b->gn[0] > 1) {
			if (gso_unsupported(b, errno)) {
				log_info("beacon: UDP GSO refused (%s): one datagram per send from now on",
					 strerror(errno));
				b->gso_off = true;
				break;
			}
			/* refused for its destination: one by one, each its own verdict */
			if (!flush_plain(b, &off, off + b->gn[0]))
				goto full;
			continue;
		}
		if (n < 0) { /* the first datagram was refused (unreachable, bad family...): skip it */
			b->st.send_errors++;
			off++;
			continue;
		}
		for (int i = 0; i < n; i++)
			k += b->gn[i];
		for (int i = 0; i < n; i++)
			b->st.gso_sends += b->gn[i] > 1;
		off += k;
	}
	if (flush_plain(b, &off, b->nsend)) {
		b->nsend = 0;
		return;
	}
full:
	b->st.send_errors += b->nsend - off;
	b->nsend = 0;
}

/* Queue data (which must live until the flush) to dst. */
static int q_send(beacon *b, const bcn_ep *dst, uint8_t *data, size_t len)
{
	struct mmsghdr *m;
	socklen_t salen;
	unsigned i;

	if (b->nsend == BCN_SENDQ)
		beacon_flush(b);
	i = b->nsend;
	if (!(salen = ep_to_sa(b, dst, &b->sdst[i]))) {
		b->st.send_errors++;
		return -EAFNOSUPPORT;
	}
	b->siov[i].iov_base = data;
	b->siov[i].iov_len = len;
	m = &b->smsg[i];
	memset(m, 0, sizeof(*m));
	m->msg_hdr.msg_name = &b->sdst[i];
	m->msg_hdr.msg_namelen = salen;
	m->msg_hdr.msg_iov = &b->siov[i];
	m->msg_hdr.msg_iovlen = 1;
	b->nsend++;
	return 0;
}

/* Queue a DiscoverReply / PunchCommand carrying ep to dst. */
static int q_endpoint(beacon *b, uint8_t type, const bcn_ep *dst, const bcn_ep *ep)
{
	proto_endpoint p;
	uint8_t *out;
	int n;

	if (b->nsend == BCN_SENDQ)
		beacon_flush(b);
	out = b->sreply[b->nsend];
	ep_to_proto(ep, &p);
	n = proto_beacon_endpoint_msg(type, &p, out, BCN_REPLY_MAX);
	if (n < 0)
		return n;
	return q_send(b, dst, out, (size_t)n);
}

/* ---- identity proofs ------------------------------------------------------------- */

static bool may_talk(beacon *b, uint32_t x, uint32_t y)
{
	/* standalone: no privacy data; both ends are verified by the time we ask */
	return !b->reg || reg_may_talk(b->reg, x, y);
}

/* (a) The node is live and its registry requests came from this IP. */
static bool proof_by_ip(beacon *b, uint32_t node, const bcn_ep *src)
{
	const char *s;
	uint8_t ip[16];

	if (!b->reg || !reg_node_live(b->reg, node) || !(s = reg_node_src_ip(b->reg, node)))
		return false;
	return ip_parse(s, ip) == 0 && memcmp(ip, src->ip, 16) == 0;
}

static uint64_t wall_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec;
}

/* (b) A signed Discover: key = the registry's (or the one bound standalone),
 * ts within ±BEACON_TS_WINDOW_S and newer than the last accepted, signature valid. */
static bool proof_by_sig(beacon *b, const uint8_t *buf, uint32_t node, uint64_t *ts_out)
{
	const uint8_t *pk = buf + 5, *sig = buf + 45;
	uint64_t ts = proto_get64(buf + 37), now = wall_seconds();
	uint8_t regpk[PROTO_ED25519_LEN];
	const bcn_node *e = node_find(b, node);
	char msg[64];
	int n;

	if (b->reg) {
		if (reg_node_key(b->reg, node, regpk) < 0 || sodium_memcmp(regpk, pk, sizeof(regpk)) != 0)
			return false;
	} else if (e && e->has_key && sodium_memcmp(e->key, pk, PROTO_ED25519_LEN) != 0) {
		return false;
	}
	if (ts > now + BEACON_TS_WINDOW_S || ts + BEACON_TS_WINDOW_S < now)
		return false;
	if (e && ts <= e->last_ts)
		return false;
	n = snprintf(msg, sizeof(msg), "discover:%" PRIu32 ":%" PRIu64, node, ts);
	if (pilot_ed25519_verify(pk, msg, (size_t)n, sig) < 0)
		return false;
	*ts_out = ts;
	return true;
}

static void sync_send_ids(beacon *b, const uint32_t *ids, unsigned n);

/* Record node at src as verified. May rebuild the table: earlier entry pointers die. */
static bcn_node *record_verified(beacon *b, uint32_t node, const bcn_ep *src)
{
	bcn_node *e = node_find(b, node);

	if (!e && !(e = node_insert(b, node)))
		return NULL;
	if (!ep_eq(&e->ep, src) || e->no_ep || !node_fresh(b, e)) {
		log_debug("beacon: endpoint verified node=%" PRIu32 " port=%u", node, src->port);
		if (b->npeers) /* tell the other beacons at once, not at the next full Sync */
			sync_send_ids(b, &node, 1);
	}
	e->ep = *src;
	e->no_ep = 0;
	e->seen_ms = b->now_ms;
	return e;
}

/* ---- message handlers ------------------------------------------------------------ */

static void on_discover(beacon *b, const uint8_t *buf, size_t len, uint32_t node,
			const bcn_ep *src)
{
	uint64_t ts = 0;
	bool signed_ok = false;
	bcn_node *e;

	b->st.discovers++;
	if (q_endpoint(b, BEACON_DISCOVER_REPLY, src, src) == 0)
		b->st.discover_replies++;
	if (node == 0)
		return; /* a pure "what is my address" query */
	if (len >= BEACON_SIGNED_DISCOVER_LEN) {
		signed_ok = proof_by_sig(b, buf, node, &ts);
		if (!signed_ok)
			b->st.verify_failed++;
	}
	if (signed_ok || proof_by_ip(b, node, src)) {
		if (!(e = record_verified(b, node, src)))
			return;
		if (signed_ok) {
			e->last_ts = ts;
			if (!e->has_key) {
				memcpy(e->key, buf + 5, PROTO_ED25519_LEN);
				e->has_key = 1;
			}
		}
		b->st.discovers_verified++;
		return;
	}
	/* unproven: refreshes a live verified endpoint it matches, never moves one */
	e = node_find_udp(b, node);
	if (e && ep_eq(&e->ep, src))
		e->seen_ms = b->now_ms;
}

/* The requester, if src is its verified endpoint or its registry IP proves it now. */
static bcn_node *punch_requester(beacon *b, uint32_t node, const bcn_ep *src)
{
	bcn_node *e = node_find_udp(b, node);

	if (e && ep_eq(&e->ep, src))
		return e;
	return proof_by_ip(b, node, src) ? record_verified(b, node, src) : NULL;
}

/* Set-associative (requester, target) → last PunchRequest cache; the oldest
 * entry of a set is evicted (which can only grant a request early, and the
 * per-requester cap still holds). */
static bcn_flow *punch_set(const beacon *b, uint32_t from, uint32_t to)
{
	uint8_t in[9];

	in[0] = BEACON_PUNCH_REQUEST; /* another hash domain than the relay flows */
	proto_put32(in + 1, from);
	proto_put32(in + 5, to);
	return &b->punches[(bcn_hash(b, in, sizeof(in)) % BCN_PUNCH_SETS) * BCN_FLOW_WAYS];
}

/* At most one PunchRequest per second per (requester, target) and BCN_PUNCH_PER_S
 * per requester: a daemon with several relay peers may ask for all of them in
 * the same second, but cannot flood one target or the beacon. */
static bool punch_rate_ok(beacon *b, bcn_node *r, uint32_t target)
{
	bcn_flow *set = punch_set(b, r->node, target), *e = NULL, *victim = set;

	for (int i = 0; i < BCN_FLOW_WAYS; i++) {
		if (set[i].from == r->node && set[i].to == target && set[i].ms) {
			e = &set[i];
			break;
		}
		if (set[i].ms < victim->ms)
			victim = &set[i];
	}
	if (e && e->ms + BCN_PUNCH_PAIR_MS > b->now_ms)
		return false;
	if (!r->punch_ms || r->punch_ms + 1000 <= b->now_ms) {
		r->punch_ms = b->now_ms;
		r->punch_count = 0;
	}
	if (r->punch_count >= BCN_PUNCH_PER_S)
		return false;
	r->punch_count++;
	if (!e) {
		e = victim;
		e->from = r->node;
		e->to = target;
	}
	e->ms = b->now_ms;
	return true;
}

static void on_punch(beacon *b, const proto_beacon_msg *m, const bcn_ep *src)
{
	bcn_node *r, *t;

	b->st.punch_requests++;
	if (!(r = punch_requester(b, m->node, src)) || !punch_rate_ok(b, r, m->target)) {
		b->st.punch_denied++;
		return;
	}
	t = node_find_udp(b, m->target);
	if (!t || t == r || !may_talk(b, m->node, m->target)) {
		b->st.punch_denied++;
		return;
	}
	if (q_endpoint(b, BEACON_PUNCH_COMMAND, &r->ep, &t->ep) == 0)
		b->st.punch_commands++;
	if (q_endpoint(b, BEACON_PUNCH_COMMAND, &t->ep, &r->ep) == 0)
		b->st.punch_commands++;
}

static bcn_flow *flow_set(const beacon *b, uint32_t from, uint32_t to)
{
	uint8_t in[8];

	proto_put32(in, from);
	proto_put32(in + 4, to);
	return &b->flows[(bcn_hash(b, in, sizeof(in)) % BCN_FLOW_SETS) * BCN_FLOW_WAYS];
}

static void flow_note(beacon *b, uint32_t from, uint32_t to)
{
	bcn_flow *set = flow_set(b, from, to), *victim = set;

	for (int i = 0; i < BCN_FLOW_WAYS; i++) {
		if (set[i].from == from && set[i].to == to) {
			set[i].ms = b->now_ms;
			return;
		}
		if (set[i].ms < victim->ms)
			victim = &set[i];
	}
	victim->from = from;
	victim->to = to;
	victim->ms = b->now_ms;
}

static bool flow_recent(const beacon *b, uint32_t from, uint32_t to)
{
	const bcn_flow *set = flow_set(b, from, to);

	for (int i = 0; i < BCN_FLOW_WAYS; i++)
		if (set[i].from == from && set[i].to == to && set[i].ms + BEACON_FLOW_MS >= b->now_ms)
			return true;
	return false;
}

/* A bare key exchange (exact PILK/PILA length, so it cannot smuggle data), at most
 * BCN_KX_PER_S per second per sender. */
static bool kx_allowed(beacon *b, bcn_node *s, enum proto_frame_kind kind, size_t flen)
{
	if (!(kind == PROTO_FRAME_PILK && flen == PROTO_PILK_LEN)
	    && !(kind == PROTO_FRAME_PILA && flen == PROTO_PILA_LEN))
		return false;
	if (s->kx_ms + 1000 <= b->now_ms) {
		s->kx_ms = b->now_ms;
		s->kx_count = 0;
	}
	if (s->kx_count >= BCN_KX_PER_S)
		return false;
	s->kx_count++;
	return true;
}

/* The relay rule of BEACON.md, once both ends are verified. */
static bool relay_allowed(beacon *b, bcn_node *s, uint32_t dest, enum proto_frame_kind kind,
			  size_t flen)
{
	if (may_talk(b, s->node, dest))
		return true;
	/* A trust handshake the registry has on record (either direction): its
	 * frames pass whatever their kind, without the key-exchange budget. */
	if (b->reg && reg_handshake_pending(b->reg, s->node, dest))
		return true;
	if (!kx_allowed(b, s, kind, flen) && !flow_recent(b, dest, s->node))
		return false;
	flow_note(b, s->node, dest);
	return true;
}

/* The bookkeeping entry of a WSS-authenticated sender (kx budget, flows): its
 * fresh entry if any, else a new one without endpoint. May rebuild the table. */
static bcn_node *wss_sender(beacon *b, uint32_t node)
{
	bcn_node *e = node_find(b, node);

	if (e && !node_fresh(b, e))
		e->no_ep = 1; /* an old UDP endpoint must not come back to life */
	if (!e && (e = node_insert(b, node)))
		e->no_ep = 1;
	if (e)
		e->seen_ms = b->now_ms;
	return e;
}

/* Tier 0: a WSS connection (via the sink); tier 1: a verified UDP endpoint (*d). */
static bool dest_reachable(beacon *b, uint32_t dest, bcn_node **d)
{
	*d = NULL;
	if (b->has_sink && b->sink.has(b->sink.ctx, dest))
		return true;
	*d = node_find_udp(b, dest);
	return *d != NULL;
}

static void count_relay(beacon *b, bool from_wss, bool to_wss, size_t flen)
{
	b->st.relayed_packets++;
	b->st.relayed_bytes += flen;
	if (from_wss && to_wss)
		b->st.relay_wss_wss++;
	else if (from_wss)
		b->st.relay_wss_udp++;
	else if (to_wss)
		b->st.relay_udp_wss++;
}

/* ---- cluster (BEACON.md "Several beacons") ---------------------------------------- */

static int split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen);

static int peer_index(const beacon *b, const bcn_ep *src)
{
	for (unsigned i = 0; i < b->npeers; i++)
		if (ep_eq(&b->peers[i], src))
			return (int)i;
	return -1;
}

static void peer_tag(const beacon *b, const uint8_t *msg, size_t len, uint8_t tag[BCN_TAG_LEN])
{
	crypto_generichash(tag, BCN_TAG_LEN, msg, len, b->secret, sizeof(b->secret));
}

static bcn_flow *learn_set(const beacon *b, uint32_t node)
{
	uint8_t in[5] = { 'L' };

	proto_put32(in + 1, node);
	return &b->learned[(bcn_hash(b, in, sizeof(in)) % BCN_LEARN_SETS) * BCN_FLOW_WAYS];
}

static void learn_note(beacon *b, uint32_t node, unsigned peer)
{
	bcn_flow *set = learn_set(b, node), *victim = set;

	for (int i = 0; i < BCN_FLOW_WAYS; i++) {
		if (set[i].to && set[i].from == node) {
			victim = &set[i];
			break;
		}
		if (set[i].ms < victim->ms)
			victim = &set[i];
	}
	victim->from = node;
	victim->to = peer + 1;
	victim->ms = b->now_ms;
}

/* The peer that announced node in the last BCN_LEARN_MS, or -1. */
static int learned_peer(const beacon *b, uint32_t node)
{
	const bcn_flow *set = learn_set(b, node);

	for (int i = 0; i < BCN_FLOW_WAYS; i++)
		if (set[i].to && set[i].from == node && set[i].ms + BCN_LEARN_MS >= b->now_ms)
			return (int)set[i].to - 1;
	return -1;
}

/* Send the original Relay on to the beacon that holds its destination. A UDP
 * datagram sits in a receive slot with tail room for the tag; an injected (WSS)
 * one is copied out and sent at once. */
static void forward_to_peer(beacon *b, uint8_t *buf, size_t len, unsigned peer, bool in_slot)
{
	uint8_t *out = buf;

	if (!in_slot) {
		if (len > BCN_BUFSZ - BCN_TAG_LEN)
			return;
		memcpy(b->fwdbuf, buf, len);
		out = b->fwdbuf;
	}
	if (b->has_secret) {
		peer_tag(b, out, len, out + len);
		len += BCN_TAG_LEN;
	}
	if (q_send(b, &b->peers[peer], out, len) == 0)
		b->st.relay_forwarded++;
	if (!in_slot)
		beacon_flush(b);
}

/* Sync (tunnel.md §9, 07 ‖ beacon ID ‖ count ‖ IDs) to every peer, sent now. */
static void sync_send_ids(beacon *b, const uint32_t *ids, unsigned n)
{
	uint8_t msg[7 + 4 * BCN_SYNC_IDS + BCN_TAG_LEN];
	struct sockaddr_storage ss;
	int len = proto_beacon_sync(b->self_id, ids, (uint16_t)n, msg, sizeof(msg) - BCN_TAG_LEN);

	if (len < 0)
		return;
	if (b->has_secret) {
		peer_tag(b, msg, (size_t)len, msg + len);
		len += BCN_TAG_LEN;
	}
	for (unsigned i = 0; i < b->npeers; i++) {
		socklen_t sl = ep_to_sa(b, &b->peers[i], &ss);

		if (!sl || sendto(b->fd, msg, (size_t)len, 0, (struct sockaddr *)&ss, sl) < 0)
			b->st.send_errors++;
		else
			b->st.syncs_sent++;
	}
}

/* Every node held here (fresh, a verified UDP endpoint or a WSS connection). */
static void sync_all(beacon *b)
{
	uint32_t ids[BCN_SYNC_IDS];
	unsigned n = 0;

	for (size_t i = 0; i < b->cap; i++) {
		const bcn_node *e = &b->tab[i];

		if (e->state != SLOT_USED || !node_fresh(b, e))
			continue;
		if (e->no_ep && !(b->has_sink && b->sink.has(b->sink.ctx, e->node)))
			continue;
		ids[n++] = e->node;
		if (n == BCN_SYNC_IDS) {
			sync_send_ids(b, ids, n);
			n = 0;
		}
	}
	if (n)
		sync_send_ids(b, ids, n);
}

static int64_t sync_cb(pilot_loop *l, uint64_t id, void *arg)
{
	beacon *b = arg;

	(void)l, (void)id;
	b->now_ms = bcn_now(b);
	sync_all(b);
	return BCN_SYNC_MS;
}

int beacon_set_peers(beacon *b, const char *list, const char *secret, char *err, size_t errlen)
{
	char item[300], host[INET6_ADDRSTRLEN + 8], port[8];

	if (b->npeers || !list || !*list) {
		snprintf(err, errlen, "beacon peers: %s", b->npeers ? "already set" : "empty list");
		return -EINVAL;
	}
	if (!(b->learned = calloc((size_t)BCN_LEARN_SETS * BCN_FLOW_WAYS, sizeof(*b->learned))) ||
	    !(b->fwdbuf = malloc(BCN_BUFSZ))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	do {
		const char *end = strchr(list, ',');
		size_t len = end ? (size_t)(end - list) : strlen(list);
		char *e;
		long v;

		while (len && *list == ' ')
			list++, len--;
		while (len && list[len - 1] == ' ')
			len--;
		if (!len || len >= sizeof(item) || b->npeers == BEACON_PEERS_MAX) {
			snprintf(err, errlen,
				 "beacon peers: want up to %d numeric ip:port separated by commas",
				 BEACON_PEERS_MAX);
			b->npeers = 0;
			return -EINVAL;
		}
		memcpy(item, list, len);
		item[len] = '\0';
		if (split_addr(item, host, sizeof(host), port, sizeof(port)) < 0 ||
		    ip_parse(host, b->peers[b->npeers].ip) < 0 || (v = strtol(port, &e, 10)) < 1 ||
		    v > 65535 || *e) {
			snprintf(err, errlen, "beacon peer %s: want a numeric ip:port or [v6]:port", item);
			b->npeers = 0;
			return -EINVAL;
		}
		b->peers[b->npeers++].port = (uint16_t)v;
		list = end ? end + 1 : NULL;
	} while (list);
	if (secret && *secret) {
		crypto_generichash(b->secret, sizeof(b->secret), (const uint8_t *)secret, strlen(secret),
				   NULL, 0);
		b->has_secret = true;
	}
	b->self_id = randombytes_random();
	if (!(b->sync_timer = pilot_loop_add_timer(b->loop, BCN_SYNC_MS, sync_cb, b))) {
		snprintf(err, errlen, "out of memory");
		b->npeers = 0;
		return -ENOMEM;
	}
	return 0;
}

/* src NULL: injected by the WSS bridge, sender already authenticated. */
static void on_relay(beacon *b, uint8_t *buf, size_t len, const proto_beacon_msg *m,
		     const bcn_ep *src)
{
	enum proto_frame_kind kind = proto_frame_classify(m->rest, m->rest_len);
	bcn_node *s, *d;

	if (kind == PROTO_FRAME_INVALID || kind == PROTO_FRAME_BEACON) {
		b->st.dropped_malformed++;
		return;
	}
	bool here;
	int peer = -1;

	if (src) {
		s = node_find_udp(b, m->node);
		if (s && !ep_eq(&s->ep, src))
			s = NULL;
	} else {
		s = wss_sender(b, m->node); /* before any d: an insert may move entries */
	}
	here = s && dest_reachable(b, m->target, &d);
	/* Not here, or here but silent for longer than another beacon has been
	 * announcing it (the node moved): the beacon that holds it relays. */
	if (s && b->npeers && (!here || (d && d->seen_ms + BCN_LEARN_MS < b->now_ms)))
		peer = learned_peer(b, m->target);
	if (!s || m->target == m->node || (!here && peer < 0) ||
	    !relay_allowed(b, s, m->target, kind, m->rest_len)) {
		b->st.relay_denied++;
		return;
	}
	s->seen_ms = b->now_ms;
	if (peer >= 0) {
		forward_to_peer(b, buf, len, (unsigned)peer, src != NULL);
		return;
	}
	/* 05 S S S S D D D D frame → __ __ __ __ 06 S S S S frame: move the header, not the frame */
	memcpy(buf + 5, buf + 1, 4);
	buf[4] = BEACON_RELAY_DELIVER;
	if (!d) {
		b->sink.deliver(b->sink.ctx, m->target, buf + 4, len - 4);
		count_relay(b, !src, true, m->rest_len);
	} else if (q_send(b, &d->ep, buf + 4, len - 4) == 0) {
		count_relay(b, !src, false, m->rest_len);
	}
}

/* A message from peer beacon p: its tag checked (with a secret), then a Sync
 * (who holds which node) or a Relay it forwards for one of our nodes. */
static void on_peer_msg(beacon *b, uint8_t *buf, size_t len, unsigned p)
{
	proto_beacon_msg m;
	enum proto_frame_kind kind;
	bcn_node *d;

	if (b->has_secret) {
		uint8_t tag[BCN_TAG_LEN];

		if (len < 1 + BCN_TAG_LEN) {
			b->st.peer_refused++;
			return;
		}
		len -= BCN_TAG_LEN;
		peer_tag(b, buf, len, tag);
		if (sodium_memcmp(tag, buf + len, BCN_TAG_LEN) != 0) {
			b->st.peer_refused++;
			return;
		}
	}
	if (proto_beacon_decode(buf, len, &m) < 0) {
		b->st.peer_refused++;
		return;
	}
	if (m.type == BEACON_SYNC) {
		b->st.syncs_received++;
		for (size_t i = 0; i < m.count; i++) {
			uint32_t node = proto_get32(m.rest + 4 * i);

			if (node && !node_find_fresh(b, node))
				learn_note(b, node, p);
		}
		return;
	}
	if (m.type != BEACON_RELAY) {
		b->st.peer_refused++;
		return;
	}
	/* The sending beacon verified the sender and applied the relay rule; we
	 * deliver only to a node of ours (never a second hop: no loops) and note
	 * the flow so the answer passes here under the reply rule. */
	kind = proto_frame_classify(m.rest, m.rest_len);
	if (kind == PROTO_FRAME_INVALID || kind == PROTO_FRAME_BEACON || m.target == m.node ||
	    !dest_reachable(b, m.target, &d)) {
		b->st.peer_refused++;
		return;
	}
	flow_note(b, m.node, m.target);
	b->st.relay_from_peer++;
	memcpy(buf + 5, buf + 1, 4);
	buf[4] = BEACON_RELAY_DELIVER;
	if (!d) {
		b->sink.deliver(b->sink.ctx, m.target, buf + 4, len - 4);
		count_relay(b, false, true, m.rest_len);
	} else if (q_send(b, &d->ep, buf + 4, len - 4) == 0) {
		count_relay(b, false, false, m.rest_len);
	}
}

void beacon_handle_datagram(beacon *b, uint8_t *buf, size_t len, const struct sockaddr_storage *ss)
{
	proto_beacon_msg m;
	bcn_ep src;
	int p;

	b->now_ms = bcn_now(b);
	if (ep_from_sa(ss, &src) < 0) {
		b->st.dropped_malformed++;
		return;
	}
	if (b->npeers && (p = peer_index(b, &src)) >= 0) {
		on_peer_msg(b, buf, len, (unsigned)p);
		return;
	}
	if (proto_beacon_decode(buf, len, &m) < 0) {
		b->st.dropped_malformed++;
		return;
	}
	switch (m.type) {
	case BEACON_DISCOVER:
		on_discover(b, buf, len, m.node, &src);
		break;
	case BEACON_PUNCH_REQUEST:
		on_punch(b, &m, &src);
		break;
	case BEACON_RELAY:
		on_relay(b, buf, len, &m, &src);
		break;
	default:
		/* Sync, Notify, and replies meant for nodes: nothing for us to do */
		b->st.ignored++;
		break;
	}
}

/* ---- socket ------------------------------------------------------------------------ */

static void on_readable(pilot_loop *l, int fd, int events, void *arg)
{
	beacon *b = arg;

	for (int round = 0; round < BCN_READS_PER_WAKE; round++) {
		int n;

		for (int i = 0; i < BCN_BATCH; i++) {
			b->rmsg[i].msg_hdr.msg_namelen = sizeof(b->rsrc[i]);
			b->rmsg[i].msg_hdr.msg_flags = 0;
		}
		n = recvmmsg(fd, b->rmsg, BCN_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++) {
			if (b->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) {
				b->st.dropped_malformed++;
				continue;
			}
			beacon_handle_datagram(b, b->riov[i].iov_base, b->rmsg[i].msg_len, &b->rsrc[i]);
		}
		beacon_flush(b);
		if (n < BCN_BATCH)
			break;
	}
}

/* "host:port", "[v6]:port" or ":port" → host (may be empty) and port strings. */
static int split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon = strrchr(addr, ':');
	size_t hl;

	if (!colon || !colon[1] || strlen(colon + 1) >= portlen)
		return -EINVAL;
	hl = (size_t)(colon - addr);
	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
		addr++;
		hl -= 2;
	} else if (memchr(addr, ':', hl)) {
		return -EINVAL; /* a bare IPv6 address needs brackets */
	}
	if (hl >= hostlen)
		return -EINVAL;
	memcpy(host, addr, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static void set_bufsize(int fd, int force_opt, int opt)
{
	int v = BCN_SOCKBUF;

	/* FORCE ignores rmem_max/wmem_max but needs CAP_NET_ADMIN */
	if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v));
}

static int open_socket(int family, const struct sockaddr *sa, socklen_t salen, bool dual)
{
	int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), zero = 0, err;

	if (fd < 0)
		return -errno;
	if (dual && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		goto fail;
	set_bufsize(fd, SO_RCVBUFFORCE, SO_RCVBUF);
	set_bufsize(fd, SO_SNDBUFFORCE, SO_SNDBUF);
	if (bind(fd, sa, salen) < 0)
		goto fail;
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

/* ":port" → dual-stack [::]:port (IPv4-only fallback where IPv6 is off). */
static int bind_any(beacon *b, const char *port)
{
	char *end;
	long p = strtol(port, &end, 10);
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };

	if (*end || p < 0 || p > 65535)
		return -EINVAL;
	s6.sin6_port = s4.sin_port = htons((uint16_t)p);
	b->family = AF_INET6;
	b->fd = open_socket(AF_INET6, (struct sockaddr *)&s6, sizeof(s6), true);
	if (b->fd == -EAFNOSUPPORT) {
		b->family = AF_INET;
		b->fd = open_socket(AF_INET, (struct sockaddr *)&s4, sizeof(s4), false);
	}
	return b->fd < 0 ? b->fd : 0;
}

static int bind_host(beacon *b, const char *host, const char *port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	int rc;

	if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0)
		return rc == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
	b->family = ai->ai_family;
	b->fd = open_socket(ai->ai_family, ai->ai_addr, ai->ai_addrlen, false);
	freeaddrinfo(ai);
	return b->fd < 0 ? b->fd : 0;
}

static int local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	bcn_ep ep;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || ep_from_sa(&ss, &ep) < 0)
		return -1;
	return ep.port;
}

static int bind_addr(beacon *b, const char *addr)
{
	char host[256], port[16];

	if (split_addr(addr, host, sizeof(host), port, sizeof(port)) < 0)
		return -EINVAL;
	return host[0] ? bind_host(b, host, port) : bind_any(b, port);
}

static void setup_batches(beacon *b)
{
	for (int i = 0; i < BCN_BATCH; i++) {
		b->riov[i].iov_base = b->rbuf + (size_t)i * BCN_BUFSZ;
		b->riov[i].iov_len = BCN_BUFSZ;
		b->rmsg[i].msg_hdr.msg_name = &b->rsrc[i];
		b->rmsg[i].msg_hdr.msg_iov = &b->riov[i];
		b->rmsg[i].msg_hdr.msg_iovlen = 1;
	}
}

beacon *beacon_new(pilot_loop *loop, const char *addr, registry *reg, char *err, size_t errlen)
{
	beacon *b;
	int rc;

	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium failed to initialise");
		return NULL;
	}
	if (!(b = calloc(1, sizeof(*b)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->loop = loop;
	b->reg = reg;
	b->fd = -1;
	b->cap = BCN_TABLE_MIN;
	randombytes_buf(b->hkey, sizeof(b->hkey));
	b->tab = calloc(b->cap, sizeof(*b->tab));
	b->flows = calloc((size_t)BCN_FLOW_SETS * BCN_FLOW_WAYS, sizeof(*b->flows));
	b->punches = calloc((size_t)BCN_PUNCH_SETS * BCN_FLOW_WAYS, sizeof(*b->punches));
	b->rbuf = malloc((size_t)BCN_BATCH * BCN_BUFSZ);
	if (!b->tab || !b->flows || !b->punches || !b->rbuf) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	setup_batches(b);
	if ((rc = bind_addr(b, addr)) < 0) {
		snprintf(err, errlen, "cannot listen on UDP %s: %s", addr,
			 rc == -EINVAL ? "want host:port, [v6]:port or :port" : strerror(-rc));
		goto fail;
	}
	b->port = local_port(b->fd);
	if ((rc = pilot_loop_add_fd(loop, b->fd, PILOT_EV_READ, on_readable, b)) < 0
	    || !(b->sweep_timer = pilot_loop_add_timer(loop, BCN_SWEEP_MS, sweep_cb, b))) {
		snprintf(err, errlen, "cannot watch UDP %s: %s", addr,
			 strerror(rc < 0 ? -rc : ENOMEM));
		goto fail;
	}
	b->now_ms = bcn_now(b);
	return b;
fail:
	beacon_free(b);
	return NULL;
}

void beacon_free(beacon *b)
{
	if (!b)
		return;
	if (b->fd >= 0) {
		pilot_loop_del_fd(b->loop, b->fd);
		close(b->fd);
	}
	if (b->sweep_timer)
		pilot_loop_del_timer(b->loop, b->sweep_timer);
	if (b->notify_timer)
		pilot_loop_del_timer(b->loop, b->notify_timer);
	if (b->sync_timer)
		pilot_loop_del_timer(b->loop, b->sync_timer);
	sodium_memzero(b->hkey, sizeof(b->hkey));
	sodium_memzero(b->secret, sizeof(b->secret));
	free(b->learned);
	free(b->fwdbuf);
	free(b->tab);
	free(b->flows);
	free(b->punches);
	free(b->rbuf);
	free(b);
}

int beacon_local_port(const beacon *b)
{
	return b->port;
}

void beacon_get_stats(const beacon *b, beacon_stats *st)
{
	*st = b->st;
	st->nodes = b->used;
}

/* ---- Notify (registry inbox -> node) -------------------------------------------- */

/* Now, to the WSS connection (tier 0) or the verified UDP endpoint. */
static void notify_send(beacon *b, bcn_node *e, uint8_t kind)
{
	uint8_t *out;
	int n;

	e->notify_ms = b->now_ms;
	e->notify_due = 0;
	if (b->has_sink && b->sink.has(b->sink.ctx, e->node)) {
		uint8_t msg[2];

		n = proto_beacon_notify(kind, msg, sizeof(msg));
		b->sink.deliver(b->sink.ctx, e->node, msg, (size_t)n); /* copies */
		b->st.notifies_sent++;
		return;
	}
	if (e->no_ep || !node_fresh(b, e)) {
		b->st.notifies_unreachable++;
		return;
	}
	if (b->nsend == BCN_SENDQ)
		beacon_flush(b);
	out = b->sreply[b->nsend];
	n = proto_beacon_notify(kind, out, BCN_REPLY_MAX);
	if (q_send(b, &e->ep, out, (size_t)n) == 0)
		b->st.notifies_sent++;
	beacon_flush(b);
}

/* Send the deferred Notifies whose gap has passed; ms until the next one, or 0. */
static int64_t notify_pass(beacon *b)
{
	unsigned keep = 0;
	int64_t next = 0;

	b->now_ms = bcn_now(b);
	for (unsigned i = 0; i < b->nnotify; i++) {
		bcn_node *e = node_find(b, b->notify_q[i]);
		int64_t wait;

		if (!e || !e->notify_due)
			continue; /* expired and compacted, or already sent */
		wait = (int64_t)(e->notify_ms + BEACON_NOTIFY_GAP_MS) - (int64_t)b->now_ms;
		if (wait > 0) {
			b->notify_q[keep++] = e->node;
			if (!next || wait < next)
				next = wait;
			continue;
		}
		notify_send(b, e, e->notify_due);
	}
	b->nnotify = keep;
	return next;
}

static int64_t notify_cb(pilot_loop *l, uint64_t id, void *arg)
{
	beacon *b = arg;
	int64_t next = notify_pass(b);

	if (!next)
		b->notify_timer = 0;
	return next;
}

void beacon_notify_due(beacon *b)
{
	if (!notify_pass(b) && b->notify_timer) {
		pilot_loop_del_timer(b->loop, b->notify_timer);
		b->notify_timer = 0;
	}
}

static void notify_defer(beacon *b, bcn_node *e, uint8_t kind)
{
	int64_t wait = (int64_t)(e->notify_ms + BEACON_NOTIFY_GAP_MS) - (int64_t)b->now_ms;

	if (e->notify_due) {
		b->st.notifies_coalesced++; /* the one already waiting covers this */
	} else if (b->nnotify == BCN_NOTIFY_Q) {
		b->st.notifies_dropped++; /* the node's heartbeat poll still finds it */
		return;
	} else {
		e->notify_due = kind;
		b->notify_q[b->nnotify++] = e->node;
		b->st.notifies_deferred++;
	}
	/* (re)arm here too: a timer that could not be added must not strand the list */
	if (!b->notify_timer)
		b->notify_timer = pilot_loop_add_timer(b->loop, wait > 0 ? wait : 1, notify_cb, b);
}

void beacon_notify(beacon *b, uint32_t node, uint8_t kind)
{
	bcn_node *e;

	b->now_ms = bcn_now(b);
	if (b->has_sink && b->sink.has(b->sink.ctx, node))
		e = wss_sender(b, node);
	else
		e = node_find_udp(b, node);
	if (!e) {
		b->st.notifies_unreachable++;
		return;
	}
	if (e->notify_ms && b->now_ms < e->notify_ms + BEACON_NOTIFY_GAP_MS)
		notify_defer(b, e, kind);
	else
		notify_send(b, e, kind);
}

void beacon_set_wss_sink(beacon *b, const beacon_wss_sink *sink)
{
	b->has_sink = sink != NULL;
	if (sink)
		b->sink = *sink;
}

void beacon_inject_queued(beacon *b, uint32_t node, uint8_t *buf, size_t len)
{
	proto_beacon_msg m;

	b->now_ms = bcn_now(b);
	if (proto_beacon_decode(buf, len, &m) < 0) {
		b->st.dropped_malformed++;
		return;
	}
	switch (m.type) {
	case BEACON_DISCOVER:
		b->st.discovers++;
		if (m.node == node)
			(void)wss_sender(b, node);
		break;
	case BEACON_PUNCH_REQUEST:
		b->st.punch_requests++;
		b->st.punch_denied++;
		break;
	case BEACON_RELAY:
		if (m.node != node) {
			b->st.inject_spoofed++;
			b->st.relay_denied++;
			break;
		}
		on_relay(b, buf, len, &m, NULL);
		break;
	default:
		b->st.ignored++;
		break;
	}
}

void beacon_inject(beacon *b, uint32_t node, uint8_t *buf, size_t len)
{
	beacon_inject_queued(b, node, buf, len);
	beacon_flush(b);
}

void beacon_advance_clock(beacon *b, int64_t ms)
{
	b->skew_ms += ms;
}

void beacon_signed_discover(const struct pilot_identity *id, uint32_t node, uint64_t ts,
			    uint8_t out[BEACON_SIGNED_DISCOVER_LEN])
{
	char msg[64];
	int n = snprintf(msg, sizeof(msg), "discover:%" PRIu32 ":%" PRIu64, node, ts);

	out[0] = BEACON_DISCOVER;
	proto_put32(out + 1, node);
	memcpy(out + 5, id->pk, PROTO_ED25519_LEN);
	proto_put64(out + 37, ts);
	pilot_ed25519_sign(id, msg, (size_t)n, out + 45);
}
