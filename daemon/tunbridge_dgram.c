/* Bridged UDP and ICMP echo.
 *
 * UDP keeps no table: the kernel's source port is used as the Pilot source port
 * (conn_dgram_send_from), so a peer's reply to that port comes back as UDP to
 * the same kernel socket, and every admitted Pilot datagram becomes a UDP packet
 * from the peer's mapped IP (allocated on demand) and its source port to the own
 * IP and the destination port. (The reference uses a fresh ephemeral source port
 * per datagram; that would need a table mapping it back and breaks request /
 * response for the kernel's connected sockets.)
 *
 * ICMP echo: one conn_ping per request, from a bounded slot table; the pong's
 * payload (the request's) goes back with the request's id and seq. */
#include "daemon/tunbridge_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void tb_unreach(tunbridge *b, const tun_ip *ip, const uint8_t *pkt, bool port)
{
	tun_ip_build ib = { .src = ip->dst, .dst = ip->src };
	uint8_t code;
	int n;

	if (ip->version == 4)
		code = port ? TUN_ICMP4_UNREACH_PORT : TUN_ICMP4_UNREACH_HOST;
	else
		code = port ? TUN_ICMP6_UNREACH_PORT : TUN_ICMP6_UNREACH_ADDR;
	n = tun_icmp_build_unreach(&ib, code, pkt, ip->pkt_len, b->txbuf, TB_PKT_CAP);
	if (n > 0) {
		b->st.icmp_unreach_sent++;
		tb_out(b, b->txbuf, (size_t)n);
	}
}

static const uint8_t *ip_start(const tun_ip *ip)
{
	return ip->l4 - ip->hdr_len;
}

/* ---- UDP ------------------------------------------------------------------------- */

void tb_udp_input(tunbridge *b, const tun_ip *ip)
{
	pilot_addr peer;
	tun_udp u;
	int r = tun_udp_parse(ip->l4, ip->l4_len, &u);

	if (r < 0) {
		b->st.malformed[r >= -TUN_IP_NERR ? -r : 0]++;
		return;
	}
	if (tb_peer_of(b, &ip->dst, &peer) < 0) {
		b->st.no_peer++;
		/* port unreachable: a connected UDP socket reports only hard errors
		 * (ECONNREFUSED), host unreachable would be silent without IP_RECVERR */
		tb_unreach(b, ip, ip_start(ip), true);
		return;
	}
	if (pilot_addr_is_broadcast(peer)) {
		/* a Pilot broadcast: one datagram per member, by the node */
		r = b->cfg.broadcast ? b->cfg.broadcast(b->cfg.broadcast_ctx, peer.net, u.sport, u.dport,
							u.payload, u.payload_len)
				     : -EINVAL;
		if (r < 0)
			b->st.udp_errors++;
		else
			b->st.udp_broadcast++;
		return;
	}
	r = conn_dgram_send_from(b->t, u.sport, peer, u.dport, u.payload, u.payload_len);
	if (r < 0)
		b->st.udp_errors++;
	else
		b->st.udp_out++;
}

#define UDP_GSO_MAX_SEGS 64 /* the kernel takes up to UDP_MAX_SEGMENTS (128) */
#define UDP_OFF          (TUN_IP4_HDR + TUN_UDP_HDR)

/* One packet, or one UDP GSO packet (gso_size = useg) when several are queued;
 * the checksum is partial either way: the kernel's local delivery takes it as
 * checked, and segmentation completes it per datagram. */
void tb_udp_flush(tunbridge *b)
{
	tun_ip_build ib = { .src = b->usrc, .dst = b->own4, .csum_partial = true };
	tun_pkt p = { 0 };
	int n;

	if (!b->ucount)
		return;
	n = tun_udp_build_pkt(&ib, b->usport, b->udport, b->ubuf + UDP_OFF, b->ulen, b->ubuf, TB_PKT_CAP);
	if (n < 0) {
		b->st.udp_errors += b->ucount;
		b->ucount = 0;
		return;
	}
	p.data = b->ubuf;
	p.len = (size_t)n;
	p.vnet.flags = TUN_VNET_F_NEEDS_CSUM;
	p.vnet.csum_start = TUN_IP4_HDR;
	p.vnet.csum_offset = 6;
	p.vnet.hdr_len = UDP_OFF;
	if (b->ucount > 1) {
		p.vnet.gso_type = TUN_VNET_GSO_UDP_L4;
		p.vnet.gso_size = b->useg;
	}
	if (tun_dev_write_batch(b->cfg.dev, &p, 1) != 1) {
		b->st.tx_dropped += b->ucount;
	} else {
		b->st.pkts_out += b->ucount;
		b->st.bytes_out += (size_t)n + (size_t)(b->ucount - 1) * UDP_OFF;
		b->st.gso_out += b->ucount > 1;
	}
	b->ucount = 0;
	b->ulen = 0;
}

static int64_t udp_flush_timer(pilot_loop *l, uint64_t id, void *arg)
{
	tunbridge *b = arg;

	(void)l;
	(void)id;
	b->utimer = 0;
	tb_udp_flush(b);
	return 0;
}

/* Queues the payload behind the ones of the same flow and size; true if it was
 * taken (else the caller writes it on its own). */
static bool udp_coalesce(tunbridge *b, const tun_ipaddr *src, uint16_t sport, uint16_t dport,
			 const uint8_t *data, size_t len)
{
	if (!b->cfg.dev || !b->loop || !tun_dev_has_vnet_hdr(b->cfg.dev) || !len ||
	    len > TUN_IP_MAX_PACKET - UDP_OFF)
		return false;
	if (b->ucount &&
	    (b->ucount >= UDP_GSO_MAX_SEGS || len > b->useg || b->usport != sport || b->udport != dport ||
	     memcmp(&b->usrc, src, sizeof(*src)) != 0 || b->ulen + len > TUN_IP_MAX_PACKET - UDP_OFF ||
	     b->ulen != (size_t)b->useg * b->ucount))
		tb_udp_flush(b); /* another flow, a larger one, or after a short last one */
	if (!b->ubuf && !(b->ubuf = malloc(TB_PKT_CAP)))
		return false;
	if (!b->ucount) {
		b->usrc = *src;
		b->usport = sport;
		b->udport = dport;
		b->useg = (uint16_t)len;
	}
	memcpy(b->ubuf + UDP_OFF + b->ulen, data, len);
	b->ulen += len;
	b->ucount++;
	b->st.udp_in++;
	if (!b->utimer && !(b->utimer = pilot_loop_add_timer(b->loop, 0, udp_flush_timer, b)))
		tb_udp_flush(b);
	return true;
}

void tb_dgram_observe(void *arg, pilot_addr src, uint16_t sport, uint16_t dport,
		      const uint8_t *data, size_t len)
{
	tunbridge *b = arg;
	tun_ip_build ib = { .dst = b->own4 };
	uint32_t ip4;
	int n;

	if (tun_addrmap_get(b->cfg.map, src, &ip4) < 0) {
		b->st.udp_errors++;
		return;
	}
	tun_ipaddr_v4(&ib.src, ip4);
	if (udp_coalesce(b, &ib.src, sport, dport, data, len))
		return;
	tb_udp_flush(b); /* keep the order of one flow */
	n = tun_udp_build_pkt(&ib, sport, dport, data, len, b->txbuf, TB_PKT_CAP);
	if (n < 0) {
		b->st.udp_errors++;
		return;
	}
	b->st.udp_in++;
	tb_out(b, b->txbuf, (size_t)n);
}

/* ---- ICMP echo -------------------------------------------------------------------- */

static void on_pong(void *arg, int err, uint32_t rtt_us, const uint8_t *payload, size_t len)
{
	tb_ping *p = arg;
	tunbridge *b = p->b;
	tun_ip_build ib = { .src = p->dst, .dst = p->src };
	int n;

	(void)rtt_us; /* the kernel's ping measures it itself */
	p->id = 0;
	if (err) {
		if (err == -ETIMEDOUT)
			b->st.echo_timeouts++;
		return;
	}
	n = tun_icmp_build_echo(&ib, p->src.family == 4 ? TUN_ICMP4_ECHO_REPLY : TUN_ICMP6_ECHO_REPLY,
				p->echo_id, p->seq, payload, len, b->txbuf, TB_PKT_CAP);
	if (n > 0) {
		b->st.echo_replies++;
		tb_out(b, b->txbuf, (size_t)n);
	}
}

static tb_ping *ping_slot(tunbridge *b)
{
	for (uint32_t i = 0; i < b->cfg.max_pings; i++)
		if (!b->pings[i].id)
			return &b->pings[i];
	return NULL;
}

void tb_icmp_input(tunbridge *b, const tun_ip *ip)
{
	bool v6 = ip->version == 6;
	pilot_addr peer;
	tun_icmp m;
	tb_ping *p;
	int64_t id;
	int r = tun_icmp_parse(ip->l4, ip->l4_len, v6, &m);

	if (r < 0) {
		b->st.malformed[r >= -TUN_IP_NERR ? -r : 0]++;
		return;
	}
	if (m.type != (v6 ? TUN_ICMP6_ECHO_REQUEST : TUN_ICMP4_ECHO_REQUEST)) {
		b->st.unsupported++; /* e.g. the kernel's port unreachable for our UDP */
		return;
	}
	if (tb_peer_of(b, &ip->dst, &peer) < 0) {
		b->st.no_peer++;
		tb_unreach(b, ip, ip_start(ip), false);
		return;
	}
	p = ping_slot(b);
	if (!p) {
		b->st.echo_limit++;
		return;
	}
	*p = (tb_ping){ .b = b, .src = ip->src, .dst = ip->dst, .echo_id = m.id, .seq = m.seq };
	id = conn_ping(b->t, peer.node, m.seq, m.data, m.data_len, on_pong, p);
	if (id < 0) {
		p->id = 0;
		b->st.echo_limit += id == -EAGAIN;
		if (id != -EAGAIN)
			tb_unreach(b, ip, ip_start(ip), false);
		return;
	}
	p->id = id;
	b->st.echo_out++;
}

void tb_pings_cancel(tunbridge *b)
{
	for (uint32_t i = 0; i < b->cfg.max_pings; i++)
		if (b->pings[i].id) {
			conn_ping_cancel(b->t, b->pings[i].id);
			b->pings[i].id = 0;
		}
}
