/* Private to daemon/tunbridge*.c, the unit test and the fuzzer: the bridge's
 * layout and its packet entry point. */
#ifndef PILOT_TUNBRIDGE_INTERNAL_H
#define PILOT_TUNBRIDGE_INTERNAL_H

#include "daemon/tunbridge.h"
#include "tun/flow.h"
#include "tun/tcpep.h"
#include "lib/heap.h"

#include <sys/socket.h>

#define TB_BATCH 16           /* packets per tun_dev_read_batch */
#define TB_READ_ROUNDS 64     /* batches per readable event before yielding */
#define TB_K2P_SLACK (256u * 1024) /* kernel bytes let in beyond the Pilot send space */
#define TB_PKT_CAP (TUN_IP_MAX_PACKET + 64 * 1024) /* room for a vnet_hdr GSO packet */

/* One bridged TCP connection: the kernel side (tcpep) and the Pilot side (conn).
 * key is the kernel's view: its packets go key.src:sport -> key.dst:dport. */
typedef struct tb_flow {
	tunbridge *b;
	tcpep *ep;
	conn *c;                  /* NULL once released (or not yet accepted) */
	tun_flow_key key;
	pilot_addr peer;
	uint16_t pport;           /* the Pilot port on our side (inbound) / theirs (outbound) */
	bool inbound;
	bool syn_pending;         /* inbound: the Pilot SYN waits for the kernel's answer */
	bool c_shut, ep_shut;     /* FIN passed on to the Pilot side / to the kernel */
	bool removed;
	uint32_t from;            /* inbound: tunnel node of the SYN */
	proto_hdr syn;            /* inbound: the held SYN */
	pilot_heap_node hn;       /* in the bridge's deadline heap (key = deadline, µs) */
	uint64_t to_peer, from_peer;
	/* Pilot -> kernel data that arrived during this dispatch (tb_p2k_defer): pumped
	 * once at its end, so the segments of one recvmmsg batch become one large TCP
	 * segment to the kernel instead of one per Pilot packet. */
	struct tb_flow *p2k_next, *p2k_prev;
	bool p2k_queued;
	/* userspace mode (tunbridge_sock.c): a socket instead of the tcpep (ep NULL) */
	bool sock;
	bool connecting; /* inbound: connect() to the exposed target pending */
	bool rd_blocked; /* the Pilot send space is full: not reading fd */
	bool wr_blocked; /* fd's send buffer is full */
	bool fd_added;
	int fd, fd_mask;
	tunbridge_dial_cb dial_cb; /* outbound, until the dial settles */
	void *dial_arg;
	uint8_t *early;
	size_t early_len;
} tb_flow;

typedef struct tb_expose {
	uint16_t port; /* 0 = free slot */
	struct sockaddr_storage target;
	unsigned target_len;
} tb_expose;

typedef struct tb_ping {
	tunbridge *b;
	int64_t id;               /* conn_ping id, 0 = free slot */
	tun_ipaddr src, dst;      /* of the request */
	uint16_t echo_id, seq;
} tb_ping;

struct tunbridge {
	pilot_loop *loop;
	conn_table *t;
	tunbridge_config cfg;
	tun_ipaddr own4, own6;
	bool has_own6;
	tcpep_params tp;
	tun_flow_table *flows;
	pilot_heap heap;              /* flows by deadline; room for max_flows */
	uint64_t timer_id, timer_want; /* loop timer, the deadline it is for (bridge clock, µs) */
	uint64_t reap_timer;
	bool in_timer;
	tb_flow *p2k_head;            /* flows with deferred Pilot -> kernel data */
	tb_ping *pings;
	tun_pkt rx[TB_BATCH];
	uint8_t *rxbuf;
	uint8_t *txbuf;               /* UDP / ICMP / RST packets we build */
	/* Pilot datagrams to the kernel, coalesced (vnet_hdr device): consecutive
	 * payloads of one flow and one size go out as one UDP GSO packet at the end
	 * of the loop turn (tb_udp_flush), not one TUN write each. */
	uint8_t *ubuf;         /* IPv4 + UDP header room, then the payloads */
	size_t ulen;           /* payload bytes queued */
	uint16_t useg, ucount; /* payload size of each, how many (0: none) */
	uint16_t usport, udport;
	tun_ipaddr usrc;
	uint64_t utimer;
	tun_dns *dns;
	bool fd_added;
	tb_expose expose[TB_MAX_EXPOSE];
	tunbridge_stats st;
};

/* One IP packet "from the TUN" (the kernel). pkt is not modified. */
void tunbridge_input(tunbridge *b, const uint8_t *pkt, size_t len);
/* Without a loop: run due timers and deferred frees. */
void tunbridge_tick(tunbridge *b);
uint64_t tunbridge_next_deadline(const tunbridge *b);

/* tunbridge_dgram.c: write the coalesced datagrams now (no-op when none) */
void tb_udp_flush(tunbridge *b);

/* tunbridge.c */
uint64_t tb_now(const tunbridge *b);
void tb_out(tunbridge *b, const uint8_t *pkt, size_t len);
void tb_out_gso(tunbridge *b, const uint8_t *pkt, size_t len, uint16_t gso_size);
int tb_peer_of(const tunbridge *b, const tun_ipaddr *ip, pilot_addr *out);
void tb_flow_sched(tb_flow *f);
void tb_flow_remove(tb_flow *f);
void tb_after(tunbridge *b);

/* tunbridge_tcp.c */
void tb_tcp_input(tunbridge *b, const tun_ip *ip);
void tb_p2k_unqueue(tb_flow *f);
void tb_p2k_flush(tunbridge *b);
void tb_tcp_syn_cb(void *arg, uint32_t from, const proto_hdr *syn);
void tb_flow_free(void *val, void *arg);
void tb_flow_kill(tb_flow *f);
void tb_flow_check(tb_flow *f); /* remove when both sides are done, else reschedule */
tb_flow *tb_flow_new(tunbridge *b, const tun_flow_key *k, pilot_addr peer);

/* tunbridge_sock.c */
void tb_sock_syn(tunbridge *b, uint32_t from, const proto_hdr *syn);
void tb_sock_check(tb_flow *f);
void tb_sock_kill(tb_flow *f);
void tb_sock_free(tb_flow *f);
const char *tb_sock_state_name(const tb_flow *f);

/* tunbridge_dgram.c */
void tb_udp_input(tunbridge *b, const tun_ip *ip);
void tb_icmp_input(tunbridge *b, const tun_ip *ip);
void tb_dgram_observe(void *arg, pilot_addr src, uint16_t sport, uint16_t dport,
		      const uint8_t *data, size_t len);
void tb_unreach(tunbridge *b, const tun_ip *ip, const uint8_t *pkt, bool port);
void tb_pings_cancel(tunbridge *b);

#endif
