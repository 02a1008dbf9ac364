/* The TUN bridge core: device I/O, packet dispatch, the flow deadline heap and
 * its loop timer, deferred frees, statistics. TCP flows live in tunbridge_tcp.c,
 * UDP and ICMP in tunbridge_dgram.c. See tunbridge.h for the contract. */
#include "daemon/tunbridge_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <sodium.h>

#define DEFAULT_BUF (1u << 20)
#define DEFAULT_FLOWS 4096
#define DEFAULT_PINGS 64

uint64_t tb_now(const tunbridge *b)
{
	return b->cfg.clock ? b->cfg.clock(b->cfg.clock_ctx) : pilot_now_us();
}

/* A TUN write is synchronous in the kernel, so packets go out as they are made:
 * no copy into a queue. EAGAIN (the kernel's backlog is full) drops: TCP
 * retransmits, UDP and ICMP are best effort anyway. */
void tb_out(tunbridge *b, const uint8_t *pkt, size_t len)
{
	if (b->cfg.dev) {
		tun_pkt p = { .data = (uint8_t *)pkt, .len = len };
		if (tun_dev_write_batch(b->cfg.dev, &p, 1) != 1) {
			b->st.tx_dropped++;
			return;
		}
	} else if (b->cfg.sink) {
		b->cfg.sink(b->cfg.sink_ctx, pkt, len);
	}
	b->st.pkts_out++;
	b->st.bytes_out += len;
}

/* A TCP data segment from an endpoint with params.gso (only with a vnet_hdr device):
 * its checksum is partial and the kernel completes it; gso_size > 0 asks the kernel
 * to cut it into segments of that payload size (the endpoint's packets carry no IP
 * options or extension headers). */
void tb_out_gso(tunbridge *b, const uint8_t *pkt, size_t len, uint16_t gso_size)
{
	size_t iph = (pkt[0] >> 4) == 4 ? (size_t)(pkt[0] & 0xf) * 4 : TUN_IP6_HDR;
	tun_pkt p = { .data = (uint8_t *)pkt, .len = len };

	p.vnet.flags = TUN_VNET_F_NEEDS_CSUM;
	p.vnet.csum_start = (uint16_t)iph;
	p.vnet.csum_offset = 16;
	p.vnet.hdr_len = (uint16_t)(iph + (size_t)(pkt[iph + 12] >> 4) * 4);
	if (gso_size) {
		p.vnet.gso_type = (pkt[0] >> 4) == 4 ? TUN_VNET_GSO_TCPV4 : TUN_VNET_GSO_TCPV6;
		p.vnet.gso_size = gso_size;
	}
	if (tun_dev_write_batch(b->cfg.dev, &p, 1) != 1) {
		b->st.tx_dropped++;
		return;
	}
	b->st.pkts_out++;
	b->st.bytes_out += len;
	b->st.gso_out += gso_size != 0;
}

/* tun_ipaddr.b sits at offset 1: copy before treating it as an in6_addr */
static struct in6_addr in6_of(const tun_ipaddr *ip)
{
	struct in6_addr a;

	memcpy(a.s6_addr, ip->b, sizeof(a.s6_addr));
	/* cppcheck-suppress uninitvar */
	return a;
}

int tb_peer_of(const tunbridge *b, const tun_ipaddr *ip, pilot_addr *out)
{
	struct in6_addr a;

	if (ip->family == 4)
		return tun_addrmap_lookup_ip(b->cfg.map, tun_ipaddr_v4_host(ip), out);
	a = in6_of(ip);
	if (tun_ula_to_addr(&a, out) < 0)
		return -ENOENT;
	if (b->has_own6 && tun_ipaddr_eq(ip, &b->own6))
		return -ENOENT;
	return out->node ? 0 : -ENOENT;
}

uint64_t tunbridge_next_deadline(const tunbridge *b)
{
	if (tun_flow_pending(b->flows) || b->p2k_head)
		return 0;
	return pilot_heap_top(&b->heap) ? pilot_heap_top(&b->heap)->key : UINT64_MAX;
}

static int64_t on_timer(pilot_loop *l, uint64_t id, void *arg);

static void arm(tunbridge *b)
{
	uint64_t want, now, ms;

	if (!b->loop || b->in_timer)
		return;
	want = tunbridge_next_deadline(b);
	if (want == UINT64_MAX)
		return; /* a pending timer fires harmlessly */
	/* Compared in the bridge's clock, rounded up to the loop's ms, before reading
	 * the clock: called per packet, this is mostly a no-op. */
	if (b->timer_id && (b->timer_want + 999) / 1000 <= (want + 999) / 1000)
		return;
	now = tb_now(b);
	ms = want > now ? (want - now + 999) / 1000 : 0;
	if (b->timer_id)
		pilot_loop_del_timer(b->loop, b->timer_id);
	b->timer_id = pilot_loop_add_timer(b->loop, (int64_t)ms, on_timer, b);
	b->timer_want = want;
}

void tb_flow_sched(tb_flow *f)
{
	uint64_t d;

	if (f->removed)
		return;
	d = tcpep_next_deadline(f->ep);
	if (d == UINT64_MAX)
		pilot_heap_remove(&f->b->heap, &f->hn);
	else
		(void)pilot_heap_set(&f->b->heap, &f->hn, d); /* room for max_flows */
	arm(f->b);
}

void tb_flow_remove(tb_flow *f)
{
	tunbridge *b = f->b;

	if (f->removed)
		return;
	f->removed = true;
	if (!f->sock && f->ep) {
		tcpep_stats es;

		tcpep_get_stats(f->ep, &es);
		b->st.tcp_stale_resets += es.stale_resets;
	}
	tb_p2k_unqueue(f);
	pilot_heap_remove(&b->heap, &f->hn);
	tun_flow_remove(b->flows, &f->key);
	arm(b);
}

static void reap(tunbridge *b)
{
	tun_flow_reap(b->flows, tb_flow_free, b);
}

void tb_after(tunbridge *b)
{
	arm(b);
}

void tunbridge_tick(tunbridge *b)
{
	uint64_t now = tb_now(b);
	size_t budget = pilot_heap_len(&b->heap);

	b->in_timer = true;
	tb_p2k_flush(b);
	/* each due flow runs once; a deadline that stays in the past waits 1 ms */
	while (budget-- && pilot_heap_top(&b->heap) && pilot_heap_top(&b->heap)->key <= now) {
		tb_flow *f = PILOT_HEAP_ENTRY(pilot_heap_top(&b->heap), tb_flow, hn);
		tcpep_on_timer(f->ep, now);
		tb_flow_check(f);
		if (pilot_heap_contains(&f->hn) && f->hn.key <= now)
			(void)pilot_heap_set(&b->heap, &f->hn, now + 1000);
	}
	reap(b);
	b->in_timer = false;
	arm(b);
}

static int64_t on_timer(pilot_loop *l, uint64_t id, void *arg)
{
	tunbridge *b = arg;

	(void)l;
	if (b->timer_id == id)
		b->timer_id = 0;
	tunbridge_tick(b);
	return 0;
}

/* ---- packets from the kernel ------------------------------------------------------- */

static bool from_us(const tunbridge *b, const tun_ip *ip)
{
	struct in6_addr a;

	if (ip->version == 4)
		return tun_ipaddr_eq(&ip->src, &b->own4);
	if (b->has_own6)
		return tun_ipaddr_eq(&ip->src, &b->own6);
	a = in6_of(&ip->src);
	return tun_ula_in_prefix(&a);
}

void tunbridge_input(tunbridge *b, const uint8_t *pkt, size_t len)
{
	tun_ip ip;
	int r;

	b->st.pkts_in++;
	b->st.bytes_in += len;
	r = tun_ip_parse(pkt, len, &ip);
	if (r < 0) {
		b->st.malformed[r >= -TUN_IP_NERR ? -r : 0]++;
		return;
	}
	if (!from_us(b, &ip)) {
		b->st.not_ours++;
		return;
	}
	if (ip.proto == TUN_IPPROTO_TCP)
		tb_tcp_input(b, &ip);
	else if (ip.proto == TUN_IPPROTO_UDP)
		tb_udp_input(b, &ip);
	else if (ip.proto == (ip.version == 4 ? TUN_IPPROTO_ICMP : TUN_IPPROTO_ICMPV6))
		tb_icmp_input(b, &ip);
	else
		b->st.unsupported++;
}

static void on_tun(pilot_loop *l, int fd, int events, void *arg)
{
	tunbridge *b = arg;

	(void)l;
	(void)fd;
	(void)events;
	for (int round = 0; round < TB_READ_ROUNDS; round++) {
		ssize_t n = tun_dev_read_batch(b->cfg.dev, b->rx, TB_BATCH);
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			tunbridge_input(b, b->rx[i].data, b->rx[i].len);
		if (n < TB_BATCH)
			break;
	}
	reap(b);
	arm(b);
}

/* ---- set-up ---------------------------------------------------------------------- */

static void fill_tcp_params(tunbridge *b)
{
	tcpep_params_default(&b->tp);
	b->tp.mtu = b->cfg.mtu ? b->cfg.mtu : b->cfg.dev ? tun_dev_mtu(b->cfg.dev) : TUN_DEV_DEFAULT_MTU;
	b->tp.sndbuf = b->cfg.sndbuf ? b->cfg.sndbuf : DEFAULT_BUF;
	b->tp.rcvbuf = b->cfg.rcvbuf ? b->cfg.rcvbuf : DEFAULT_BUF;
	/* vnet_hdr: the kernel finishes our TCP checksums and cuts large segments */
	b->tp.gso = b->cfg.dev && tun_dev_has_vnet_hdr(b->cfg.dev);
}

static int alloc_buffers(tunbridge *b)
{
	b->flows = tun_flow_table_new(b->cfg.max_flows, randombytes_random() | (uint64_t)randombytes_random() << 32);
	if (pilot_heap_init(&b->heap, b->cfg.max_flows) < 0)
		return -ENOMEM;
	b->pings = calloc(b->cfg.max_pings, sizeof(*b->pings));
	b->txbuf = malloc(TB_PKT_CAP);
	if (!b->flows || !b->pings || !b->txbuf)
		return -ENOMEM;
	if (!b->cfg.dev)
		return 0;
	b->rxbuf = malloc((size_t)TB_BATCH * TB_PKT_CAP);
	if (!b->rxbuf)
		return -ENOMEM;
	for (size_t i = 0; i < TB_BATCH; i++)
		b->rx[i] = (tun_pkt){ .data = b->rxbuf + i * TB_PKT_CAP, .cap = TB_PKT_CAP };
	return 0;
}

static int start_dns(tunbridge *b, char *err, size_t errlen)
{
	tun_dns_cfg dc = { .map = b->cfg.map, .resolve = b->cfg.dns_resolve, .ctx = b->cfg.dns_ctx };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int r;

	if (!b->cfg.dns_enable && !b->cfg.dns_resolve)
		return 0;
	if (!b->loop) {
		snprintf(err, errlen, "tunbridge: the DNS responder needs an event loop");
		return -EINVAL;
	}
	r = tun_dns_new(&dc, &b->dns);
	if (r < 0) {
		snprintf(err, errlen, "tunbridge: DNS responder: %s", strerror(-r));
		return r;
	}
	sa.sin_port = htons(b->cfg.dns_port ? b->cfg.dns_port : TUN_DNS_PORT);
	sa.sin_addr.s_addr = htonl(tun_ipaddr_v4_host(&b->own4));
	return tun_dns_listen(b->dns, b->loop, (const struct sockaddr *)&sa, sizeof(sa), err, errlen);
}

static int hook_up(tunbridge *b, char *err, size_t errlen)
{
	int r;

	if (b->cfg.dev && b->loop) {
		r = pilot_loop_add_fd(b->loop, tun_dev_fd(b->cfg.dev), PILOT_EV_READ, on_tun, b);
		if (r < 0) {
			snprintf(err, errlen, "tunbridge: watching %s: %s", tun_dev_name(b->cfg.dev),
				 strerror(-r));
			return r;
		}
		b->fd_added = true;
	}
	conn_listen_default(b->t, tb_tcp_syn_cb, b);
	if (!b->cfg.userspace) /* userspace: datagrams go to the bound UDP relays only */
		conn_dgram_observe(b->t, tb_dgram_observe, b);
	return start_dns(b, err, errlen);
}

tunbridge *tunbridge_new(pilot_loop *l, conn_table *t, const tunbridge_config *cfg, char *err,
			 size_t errlen)
{
	tunbridge *b;

	if (!t || !cfg || !cfg->map) {
		snprintf(err, errlen, "tunbridge: a conn table and an address map are required");
		return NULL;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "tunbridge: out of memory");
		return NULL;
	}
	b->loop = l;
	b->t = t;
	b->cfg = *cfg;
	if (!b->cfg.max_flows)
		b->cfg.max_flows = DEFAULT_FLOWS;
	if (!b->cfg.max_pings)
		b->cfg.max_pings = DEFAULT_PINGS;
	tun_ipaddr_v4(&b->own4, tun_addrmap_own_ip(cfg->map));
	tunbridge_set_own(b, cfg->own);
	fill_tcp_params(b);
	if (alloc_buffers(b) < 0) {
		snprintf(err, errlen, "tunbridge: out of memory (%u flows)", b->cfg.max_flows);
		tunbridge_free(b);
		return NULL;
	}
	if (hook_up(b, err, errlen) < 0) {
		tunbridge_free(b);
		return NULL;
	}
	return b;
}

void tunbridge_free(tunbridge *b)
{
	uint32_t pos = 0;
	const tun_flow_key *k;
	void *v;

	if (!b)
		return;
	if (b->fd_added)
		pilot_loop_del_fd(b->loop, tun_dev_fd(b->cfg.dev));
	if (b->t) {
		conn_listen_default(b->t, NULL, NULL);
		conn_dgram_observe(b->t, NULL, NULL);
	}
	if (b->timer_id)
		pilot_loop_del_timer(b->loop, b->timer_id);
	if (b->utimer)
		pilot_loop_del_timer(b->loop, b->utimer);
	b->in_timer = true; /* no re-arming from here on */
	if (b->flows) {
		while (tun_flow_next(b->flows, &pos, &k, &v))
			tb_flow_kill(v);
		reap(b);
	}
	if (b->pings)
		tb_pings_cancel(b);
	tun_dns_free(b->dns);
	tun_flow_table_free(b->flows);
	pilot_heap_free(&b->heap);
	free(b->pings);
	free(b->txbuf);
	free(b->ubuf);
	free(b->rxbuf);
	free(b);
}

void tunbridge_set_own(tunbridge *b, pilot_addr own)
{
	struct in6_addr a;

	b->cfg.own = own;
	b->has_own6 = own.node != 0;
	if (b->has_own6) {
		tun_ula_from_addr(own, &a);
		tun_ipaddr_v6(&b->own6, a.s6_addr);
	}
}

tun_dns *tunbridge_dns(tunbridge *b)
{
	return b->dns;
}

void tunbridge_get_stats(const tunbridge *b, tunbridge_stats *st)
{
	*st = b->st;
	st->flows_active = tun_flow_count(b->flows);
}

/* ---- pilotctl ---------------------------------------------------------------------- */

static void add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

static struct json_object *ip_port(const tun_ipaddr *a, uint16_t port)
{
	char ip[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 16];

	inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->b, ip, sizeof(ip));
	snprintf(buf, sizeof(buf), a->family == 4 ? "%s:%u" : "[%s]:%u", ip, port);
	return json_object_new_string(buf);
}

static struct json_object *flow_json(const tb_flow *f)
{
	struct json_object *o = json_object_new_object();
	char peer[PILOT_ADDR_STRLEN];

	pilot_addr_format(f->peer, peer);
	json_object_object_add(o, "dir", json_object_new_string(f->inbound ? "in" : "out"));
	json_object_object_add(o, "proto", json_object_new_string(f->sock ? "tcp-socket" : "tcp"));
	json_object_object_add(o, "kernel", ip_port(&f->key.src, f->key.sport));
	json_object_object_add(o, "mapped", ip_port(&f->key.dst, f->key.dport));
	json_object_object_add(o, "peer", json_object_new_string(peer));
	json_object_object_add(o, "port", json_object_new_int(f->pport));
	json_object_object_add(o, "state",
			       json_object_new_string(f->sock ? tb_sock_state_name(f)
							      : tcpep_state_name(tcpep_state(f->ep))));
	json_object_object_add(o, "pilot_state",
			       json_object_new_string(f->c ? stream_state_name(conn_state(f->c)) : "-"));
	add_u64(o, "bytes_to_peer", f->to_peer);
	add_u64(o, "bytes_from_peer", f->from_peer);
	return o;
}

static struct json_object *stats_json(const tunbridge *b)
{
	struct json_object *o = json_object_new_object(), *m = json_object_new_object();
	tunbridge_stats s;

	tunbridge_get_stats(b, &s);
	add_u64(o, "pkts_in", s.pkts_in);
	add_u64(o, "bytes_in", s.bytes_in);
	add_u64(o, "pkts_out", s.pkts_out);
	add_u64(o, "bytes_out", s.bytes_out);
	add_u64(o, "tx_dropped", s.tx_dropped);
	add_u64(o, "gso_out", s.gso_out);
	json_object_object_add(o, "offloads", json_object_new_boolean(b->tp.gso));
	for (int i = 1; i <= TUN_IP_NERR; i++)
		if (s.malformed[i])
			add_u64(m, tun_ip_strerror(-i), s.malformed[i]);
	json_object_object_add(o, "malformed", m);
	add_u64(o, "not_ours", s.not_ours);
	add_u64(o, "unsupported", s.unsupported);
	add_u64(o, "no_peer", s.no_peer);
	add_u64(o, "tcp_outbound", s.tcp_outbound);
	add_u64(o, "tcp_inbound", s.tcp_inbound);
	add_u64(o, "tcp_refused", s.tcp_refused);
	add_u64(o, "tcp_inbound_refused", s.tcp_inbound_refused);
	add_u64(o, "tcp_flow_limit", s.tcp_flow_limit);
	add_u64(o, "tcp_stray", s.tcp_stray);
	add_u64(o, "tcp_stale_resets", s.tcp_stale_resets);
	add_u64(o, "udp_out", s.udp_out);
	add_u64(o, "udp_in", s.udp_in);
	add_u64(o, "udp_errors", s.udp_errors);
	add_u64(o, "udp_broadcast", s.udp_broadcast);
	add_u64(o, "echo_out", s.echo_out);
	add_u64(o, "echo_replies", s.echo_replies);
	add_u64(o, "echo_timeouts", s.echo_timeouts);
	add_u64(o, "icmp_unreach_sent", s.icmp_unreach_sent);
	add_u64(o, "sock_outbound", s.sock_outbound);
	add_u64(o, "sock_inbound", s.sock_inbound);
	add_u64(o, "sock_refused", s.sock_refused);
	add_u64(o, "sock_no_expose", s.sock_no_expose);
	add_u64(o, "flows_active", s.flows_active);
	return o;
}

struct json_object *tunbridge_flows_json(const tunbridge *b)
{
	struct json_object *o = json_object_new_object(), *a = json_object_new_array();
	uint32_t pos = 0;
	const tun_flow_key *k;
	void *v;

	while (tun_flow_next(b->flows, &pos, &k, &v))
		json_object_array_add(a, flow_json(v));
	json_object_object_add(o, "flows", a);
	json_object_object_add(o, "stats", stats_json(b));
	return o;
}
