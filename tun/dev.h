/* The TUN device: open /dev/net/tun (IFF_TUN | IFF_NO_PI, non-blocking,
 * optionally IFF_VNET_HDR with checksum/TSO offloads) and configure it through
 * rtnetlink (libnl-route-3, no `ip` subprocess): MTU, link up, the node's IPv4
 * address with its connected subnet route, the node's IPv6 ULA address (/64,
 * no DAD) and the ULA /48 route.
 *
 * The device is never persistent: closing the fd removes it together with its
 * addresses and routes. A leftover device of the same name (a crash while it
 * was persistent, or a test) is attached, made non-persistent, released and
 * created afresh, so no stale address survives. A device in use by a live
 * process is an error (EBUSY), never taken over.
 *
 * MTU: the default is 65535, the largest a TUN device takes. The kernel's TCP
 * then sends segments of up to ~64 KiB to the TUN, so one read() moves 40 times
 * the bytes of a 1500-byte MTU; the daemon segments streams to the underlay's
 * path MTU itself. With vnet_hdr and TSO the kernel hands over GSO packets of
 * up to 64 KiB even with a small MTU. */
#ifndef PILOT_TUN_DEV_H
#define PILOT_TUN_DEV_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TUN_DEV_DEFAULT_NAME "pilot0"
#define TUN_DEV_DEFAULT_MTU 65535
#define TUN_DEV_MIN_MTU 1280 /* IPv6 minimum */
/* Transmit queue (kernel -> daemon) in packets. The kernel's default for a TUN
 * is 500: a burst of datagrams (iperf3 -u at 500 Mbit/s is ~52,000 a second)
 * arriving while the daemon waits for a CPU overflows it and the kernel drops
 * them ("TX dropped" on the device). TCP is unaffected: TSQ bounds each
 * socket's queued bytes. */
#define TUN_DEV_TXQLEN  4096
#define TUN_DEV_MAX_MTU 65535

typedef struct tun_dev tun_dev;

typedef struct tun_dev_cfg {
	const char *name;       /* NULL = "pilot0"; at most IFNAMSIZ-1 bytes */
	unsigned mtu;           /* 0 = TUN_DEV_DEFAULT_MTU */
	uint32_t ip4;           /* node's IPv4, host order; 0 = none */
	int ip4_prefix;         /* e.g. 16 */
	bool has_ip6;
	struct in6_addr ip6;    /* node's ULA (added /64 with IFA_F_NODAD) */
	int ip6_prefix;         /* 0 = 64 */
	bool has_route6;
	struct in6_addr route6; /* e.g. fd50:494c:4f54:: */
	int route6_prefix;      /* 0 = 48 */
	bool vnet_hdr;          /* IFF_VNET_HDR + offloads (below) */
	unsigned offloads;      /* TUN_F_* asked for with vnet_hdr; 0 = TUN_DEV_DEFAULT_OFFLOADS */
} tun_dev_cfg;

/* TUN_F_* of <linux/if_tun.h> */
#define TUN_DEV_F_CSUM           0x01
#define TUN_DEV_F_TSO4           0x02
#define TUN_DEV_F_TSO6           0x04
#define TUN_DEV_DEFAULT_OFFLOADS (TUN_DEV_F_CSUM | TUN_DEV_F_TSO4 | TUN_DEV_F_TSO6)

/* Open and configure. 0 or -errno; err names the device and the step that failed.
 * With vnet_hdr, a kernel that refuses the header or the offloads (TUNSETOFFLOAD
 * with what was asked, then checksum alone) gets a plain TUN device instead, logged
 * at warn: tun_dev_has_vnet_hdr() says which one it is. */
int tun_dev_open(const tun_dev_cfg *cfg, tun_dev **out, char *err, size_t errlen);
/* Close the fd (the kernel removes the device, its addresses and routes) and
 * free. NULL-safe. */
void tun_dev_close(tun_dev *d);
int tun_dev_fd(const tun_dev *d);
const char *tun_dev_name(const tun_dev *d);
int tun_dev_ifindex(const tun_dev *d);
unsigned tun_dev_mtu(const tun_dev *d);
bool tun_dev_has_vnet_hdr(const tun_dev *d);
/* TUN_DEV_F_* the kernel accepted (0 without vnet_hdr). */
unsigned tun_dev_offloads(const tun_dev *d);
/* Packets the kernel refused in tun_dev_write_batch (bad header). */
uint64_t tun_dev_tx_rejected(const tun_dev *d);

/* Add one more IPv6 address later (e.g. once the registry assigned the node
 * its address, or for another network). 0, or -errno with err filled. */
int tun_dev_add_addr6(tun_dev *d, const struct in6_addr *ip, int prefix, char *err, size_t errlen);

/* ---- virtio_net_hdr (with vnet_hdr; little-endian on the wire, TUNSETVNETLE) ---- */

#define TUN_VNET_HDR_LEN 10
#define TUN_VNET_F_NEEDS_CSUM 1
#define TUN_VNET_F_DATA_VALID 2
#define TUN_VNET_GSO_NONE  0
#define TUN_VNET_GSO_TCPV4 1
#define TUN_VNET_GSO_UDP   3
#define TUN_VNET_GSO_TCPV6 4
#define TUN_VNET_GSO_UDP_L4   5 /* UDP GSO (USO): gso_size = payload per datagram */
#define TUN_VNET_GSO_ECN   0x80

typedef struct tun_vnet_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;     /* Ethernet-less: IP + transport header length */
	uint16_t gso_size;    /* payload bytes per segment */
	uint16_t csum_start;  /* from the start of the IP packet */
	uint16_t csum_offset; /* from csum_start */
} tun_vnet_hdr;

/* Pure (buf, len): decode needs len >= TUN_VNET_HDR_LEN (else -EINVAL); encode
 * writes exactly TUN_VNET_HDR_LEN bytes. */
int tun_vnet_hdr_decode(const uint8_t *buf, size_t len, tun_vnet_hdr *out);
void tun_vnet_hdr_encode(const tun_vnet_hdr *h, uint8_t out[TUN_VNET_HDR_LEN]);

/* ---- batch I/O ------------------------------------------------------------------- */

typedef struct tun_pkt {
	uint8_t *data;     /* the IP packet (without the vnet header) */
	size_t len;        /* read: bytes received; write: bytes to send */
	size_t cap;        /* read: room at data */
	tun_vnet_hdr vnet; /* read: parsed; write: emitted (vnet_hdr only) */
} tun_pkt;

/* Read up to n packets (one readv each; TUN has no recvmmsg). Returns how many
 * were read (0 when nothing is waiting), or -errno if the first read failed.
 * A packet larger than cap is truncated by the kernel: size cap >= mtu (+64 KiB
 * with vnet_hdr TSO). */
ssize_t tun_dev_read_batch(tun_dev *d, tun_pkt *pkts, size_t n);
/* Write up to n packets. Returns how many were consumed (written, or refused
 * by the kernel as malformed — EINVAL/EIO — which are counted and skipped);
 * stops at the first EAGAIN (0 if it was the first; retry the rest on EPOLLOUT).
 * -errno if the first packet failed with anything else. */
ssize_t tun_dev_write_batch(tun_dev *d, const tun_pkt *pkts, size_t n);

#endif
