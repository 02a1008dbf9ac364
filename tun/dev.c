/* TUN device: /dev/net/tun plus rtnetlink set-up through libnl-route-3. */
#include <net/if.h>

#include "tun/dev.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>

#include "lib/log.h"

#ifndef IFA_F_NODAD
#define IFA_F_NODAD 0x02
#endif

_Static_assert(TUN_DEV_F_CSUM == TUN_F_CSUM && TUN_DEV_F_TSO4 == TUN_F_TSO4 && TUN_DEV_F_TSO6 == TUN_F_TSO6,
	       "TUN_DEV_F_* are the kernel's TUN_F_*");

struct tun_dev {
	int fd;
	int ifindex;
	unsigned mtu;
	bool vnet;
	unsigned offloads; /* TUN_F_* the kernel took (vnet only) */
	char name[IFNAMSIZ];
	uint64_t tx_rejected;
};

int tun_dev_fd(const tun_dev *d) { return d->fd; }
const char *tun_dev_name(const tun_dev *d) { return d->name; }
int tun_dev_ifindex(const tun_dev *d) { return d->ifindex; }
unsigned tun_dev_mtu(const tun_dev *d) { return d->mtu; }
bool tun_dev_has_vnet_hdr(const tun_dev *d) { return d->vnet; }
unsigned tun_dev_offloads(const tun_dev *d)
{
	return d->vnet ? d->offloads : 0;
}
uint64_t tun_dev_tx_rejected(const tun_dev *d) { return d->tx_rejected; }

/* libnl reports its own NLE_* codes; callers of this module get -errno. */
static int nl_to_errno(int nle)
{
	switch (nle < 0 ? -nle : nle) {
	case NLE_EXIST: return -EEXIST;
	case NLE_PERM: return -EPERM;
	case NLE_NODEV: return -ENODEV;
	case NLE_NOMEM: return -ENOMEM;
	case NLE_INVAL: return -EINVAL;
	case NLE_NOADDR: return -EADDRNOTAVAIL;
	case NLE_OPNOTSUPP: return -EOPNOTSUPP;
	case NLE_BUSY: return -EBUSY;
	case NLE_RANGE: return -ERANGE;
	case NLE_AF_NOSUPPORT: return -EAFNOSUPPORT;
	default: return -EIO;
	}
}

/* ---- /dev/net/tun --------------------------------------------------------------- */

static int tun_attach(const char *name, bool vnet, int *fd_out, char *got_name)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	snprintf(got_name, IFNAMSIZ, "%s", ifr.ifr_name);
	*fd_out = fd;
	return 0;
}

/* A leftover of the same name: attach to it, drop its persistence and let go,
 * which makes the kernel delete it with every stale address and route. */
static int release_leftover(const char *name, char *err, size_t errlen)
{
	char got[IFNAMSIZ];
	int fd, rc = tun_attach(name, false, &fd, got);

	if (rc == -EBUSY) {
		snprintf(err, errlen, "TUN device %s is in use by another process (is another pilotd running?)", name);
		return rc;
	}
	if (rc == -EINVAL) {
		snprintf(err, errlen, "interface %s exists but is not a single-queue TUN device; "
			 "remove it (ip link del %s) or choose another name", name, name);
		return rc;
	}
	if (rc < 0) {
		snprintf(err, errlen, "TUN device %s: attach to leftover: %s", name, strerror(-rc));
		return rc;
	}
	if (ioctl(fd, TUNSETPERSIST, 0) < 0) {
		rc = -errno;
		snprintf(err, errlen, "TUN device %s: TUNSETPERSIST 0 on leftover: %s", name, strerror(-rc));
	}
	close(fd);
	if (rc == 0)
		log_info("tun: removed leftover device dev=%s", name);
	return rc;
}

/* The offloads asked for, most first: the kernel refuses a flag it does not know
 * (EINVAL), so an older kernel still gets checksum offload alone. */
static int tun_set_vnet(tun_dev *d, unsigned long want)
{
	int sz = TUN_VNET_HDR_LEN, le = 1;
	unsigned long tries[2] = { want, want & TUN_F_CSUM };

	if (ioctl(d->fd, TUNSETVNETHDRSZ, &sz) < 0)
		return -errno;
	/* The header is little-endian everywhere we care about; make it explicit. */
	if (ioctl(d->fd, TUNSETVNETLE, &le) < 0 && errno != EINVAL)
		return -errno;
	for (size_t i = 0; i < 2; i++) {
		if (tries[i] && ioctl(d->fd, TUNSETOFFLOAD, tries[i]) == 0) {
			d->offloads = (unsigned)tries[i];
			return 0;
		}
	}
	return errno ? -errno : -EINVAL;
}

static int tun_create(tun_dev *d, const char *name, unsigned long offloads, char *err, size_t errlen)
{
	int rc;

	if (if_nametoindex(name) && (rc = release_leftover(name, err, errlen)) < 0)
		return rc;
	rc = tun_attach(name, d->vnet, &d->fd, d->name);
	if (rc == 0 && d->vnet && (rc = tun_set_vnet(d, offloads)) < 0) {
		/* The kernel refused the vnet header or every offload: plain TUN, where
		 * each packet is a whole one and userspace fills in every checksum. */
		log_warn("tun: offloads refused, running without dev=%s err=\"%s\"", d->name, strerror(-rc));
		close(d->fd);
		d->fd = -1;
		d->vnet = false;
		rc = tun_attach(name, false, &d->fd, d->name);
	}
	if (rc < 0) {
		snprintf(err, errlen, "TUN device %s: open /dev/net/tun + TUNSETIFF: %s%s", name, strerror(-rc),
			 rc == -EPERM || rc == -EACCES ? " (needs CAP_NET_ADMIN)" : "");
		return rc;
	}
	d->ifindex = (int)if_nametoindex(d->name);
	if (!d->ifindex) {
		rc = -errno;
		snprintf(err, errlen, "TUN device %s: no ifindex after TUNSETIFF: %s", d->name, strerror(-rc));
		return rc;
	}
	return 0;
}

/* ---- rtnetlink ------------------------------------------------------------------- */

static int link_up(struct nl_sock *sk, tun_dev *d, char *err, size_t errlen)
{
	struct rtnl_link *orig = NULL, *chg = rtnl_link_alloc();
	int rc = chg ? rtnl_link_get_kernel(sk, d->ifindex, NULL, &orig) : -NLE_NOMEM;

	if (rc >= 0) {
		rtnl_link_set_mtu(chg, d->mtu);
		rtnl_link_set_txqlen(chg, TUN_DEV_TXQLEN);
		rtnl_link_set_flags(chg, IFF_UP);
		rc = rtnl_link_change(sk, orig, chg, 0);
	}
	if (rc < 0)
		snprintf(err, errlen, "TUN device %s: rtnetlink set mtu %u, txqueuelen and up: %s", d->name,
			 d->mtu, nl_geterror(rc));
	rtnl_link_put(orig);
	rtnl_link_put(chg);
	return rc < 0 ? nl_to_errno(rc) : 0;
}

static int addr_add(struct nl_sock *sk, tun_dev *d, int family, const void *ip, int plen,
		    char *err, size_t errlen)
{
	struct rtnl_addr *a = rtnl_addr_alloc();
	struct nl_addr *local = nl_addr_build(family, ip, family == AF_INET ? 4 : 16);
	char text[INET6_ADDRSTRLEN] = "?";
	int rc = -NLE_NOMEM;

	if (a && local) {
		nl_addr_set_prefixlen(local, plen);
		rtnl_addr_set_ifindex(a, d->ifindex);
		rc = rtnl_addr_set_local(a, local);
	}
	if (rc >= 0) {
		rtnl_addr_set_prefixlen(a, plen);
		/* Without DAD an IPv6 address is usable at once (bind() would fail
		 * with EADDRNOTAVAIL while it is tentative); it is ours by construction. */
		if (family == AF_INET6)
			rtnl_addr_set_flags(a, IFA_F_NODAD);
		rc = rtnl_addr_add(sk, a, 0);
	}
	if (rc == -NLE_EXIST)
		rc = 0;
	if (rc < 0) {
		inet_ntop(family, ip, text, sizeof(text));
		snprintf(err, errlen, "TUN device %s: rtnetlink add address %s/%d: %s", d->name, text, plen,
			 nl_geterror(rc));
	}
	nl_addr_put(local);
	rtnl_addr_put(a);
	return rc < 0 ? nl_to_errno(rc) : 0;
}

static int route6_add(struct nl_sock *sk, tun_dev *d, const struct in6_addr *dst_ip, int plen,
		      char *err, size_t errlen)
{
	struct rtnl_route *r = rtnl_route_alloc();
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	struct nl_addr *dst = nl_addr_build(AF_INET6, dst_ip, 16);
	char text[INET6_ADDRSTRLEN];
	int rc = -NLE_NOMEM;

	if (r && nh && dst) {
		nl_addr_set_prefixlen(dst, plen);
		rtnl_route_set_family(r, AF_INET6);
		rtnl_route_set_table(r, RT_TABLE_MAIN);
		rtnl_route_set_protocol(r, RTPROT_STATIC);
		rtnl_route_set_scope(r, RT_SCOPE_UNIVERSE);
		rc = rtnl_route_set_dst(r, dst);
	}
	if (rc >= 0) {
		rtnl_route_nh_set_ifindex(nh, d->ifindex);
		rtnl_route_add_nexthop(r, nh); /* the route owns nh from here */
		nh = NULL;
		rc = rtnl_route_add(sk, r, NLM_F_REPLACE);
	}
	if (rc < 0) {
		inet_ntop(AF_INET6, dst_ip, text, sizeof(text));
		snprintf(err, errlen, "TUN device %s: rtnetlink add route %s/%d: %s", d->name, text, plen,
			 nl_geterror(rc));
	}
	if (nh)
		rtnl_route_nh_free(nh);
	nl_addr_put(dst);
	rtnl_route_put(r);
	return rc < 0 ? nl_to_errno(rc) : 0;
}

static struct nl_sock *nl_open(const tun_dev *d, int *rc, char *err, size_t errlen)
{
	struct nl_sock *sk = nl_socket_alloc();

	*rc = sk ? nl_connect(sk, NETLINK_ROUTE) : -NLE_NOMEM;
	if (*rc < 0) {
		snprintf(err, errlen, "TUN device %s: rtnetlink socket: %s", d->name, nl_geterror(*rc));
		nl_socket_free(sk);
		*rc = nl_to_errno(*rc);
		return NULL;
	}
	return sk;
}

static int tun_configure(tun_dev *d, const tun_dev_cfg *cfg, char *err, size_t errlen)
{
	int rc;
	struct nl_sock *sk = nl_open(d, &rc, err, errlen);

	if (!sk)
		return rc;
	rc = link_up(sk, d, err, errlen);
	if (rc == 0 && cfg->ip4) {
		struct in_addr in = { htonl(cfg->ip4) };

		rc = addr_add(sk, d, AF_INET, &in, cfg->ip4_prefix, err, errlen);
	}
	if (rc == 0 && cfg->has_ip6)
		rc = addr_add(sk, d, AF_INET6, &cfg->ip6, cfg->ip6_prefix ? cfg->ip6_prefix : 64, err, errlen);
	if (rc == 0 && cfg->has_route6)
		rc = route6_add(sk, d, &cfg->route6, cfg->route6_prefix ? cfg->route6_prefix : 48, err, errlen);
	nl_socket_free(sk);
	return rc;
}

int tun_dev_add_addr6(tun_dev *d, const struct in6_addr *ip, int prefix, char *err, size_t errlen)
{
	int rc;
	struct nl_sock *sk = nl_open(d, &rc, err, errlen);

	if (!sk)
		return rc;
	rc = addr_add(sk, d, AF_INET6, ip, prefix, err, errlen);
	nl_socket_free(sk);
	return rc;
}

/* ---- life cycle ------------------------------------------------------------------- */

static int check_cfg(const tun_dev_cfg *cfg, const char *name, unsigned mtu, char *err, size_t errlen)
{
	if (!*name || strlen(name) >= IFNAMSIZ || strchr(name, '/') || strchr(name, '%')) {
		snprintf(err, errlen, "TUN device name \"%s\" is invalid (1-%d characters, no '/' or '%%')",
			 name, IFNAMSIZ - 1);
		return -EINVAL;
	}
	if (mtu < TUN_DEV_MIN_MTU || mtu > TUN_DEV_MAX_MTU) {
		snprintf(err, errlen, "TUN device %s: mtu %u out of range %u..%u", name, mtu,
			 (unsigned)TUN_DEV_MIN_MTU, (unsigned)TUN_DEV_MAX_MTU);
		return -EINVAL;
	}
	if (cfg->ip4 && (cfg->ip4_prefix < 1 || cfg->ip4_prefix > 32)) {
		snprintf(err, errlen, "TUN device %s: IPv4 prefix /%d invalid", name, cfg->ip4_prefix);
		return -EINVAL;
	}
	return 0;
}

int tun_dev_open(const tun_dev_cfg *cfg, tun_dev **out, char *err, size_t errlen)
{
	const char *name = cfg->name ? cfg->name : TUN_DEV_DEFAULT_NAME;
	unsigned mtu = cfg->mtu ? cfg->mtu : TUN_DEV_DEFAULT_MTU;
	int rc = check_cfg(cfg, name, mtu, err, errlen);
	tun_dev *d;

	if (rc < 0)
		return rc;
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "TUN device %s: out of memory", name);
		return -ENOMEM;
	}
	d->fd = -1;
	d->mtu = mtu;
	d->vnet = cfg->vnet_hdr;
	rc = tun_create(d, name, cfg->offloads ? cfg->offloads : TUN_DEV_DEFAULT_OFFLOADS, err, errlen);
	if (rc == 0)
		rc = tun_configure(d, cfg, err, errlen);
	if (rc < 0) {
		tun_dev_close(d);
		return rc;
	}
	*out = d;
	return 0;
}

void tun_dev_close(tun_dev *d)
{
	if (!d)
		return;
	if (d->fd >= 0)
		close(d->fd);
	free(d);
}

/* ---- virtio_net_hdr ------------------------------------------------------------------- */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

int tun_vnet_hdr_decode(const uint8_t *buf, size_t len, tun_vnet_hdr *out)
{
	if (len < TUN_VNET_HDR_LEN)
		return -EINVAL;
	out->flags = buf[0];
	out->gso_type = buf[1];
	out->hdr_len = le16(buf + 2);
	out->gso_size = le16(buf + 4);
	out->csum_start = le16(buf + 6);
	out->csum_offset = le16(buf + 8);
	return 0;
}

void tun_vnet_hdr_encode(const tun_vnet_hdr *h, uint8_t out[TUN_VNET_HDR_LEN])
{
	out[0] = h->flags;
	out[1] = h->gso_type;
	put_le16(out + 2, h->hdr_len);
	put_le16(out + 4, h->gso_size);
	put_le16(out + 6, h->csum_start);
	put_le16(out + 8, h->csum_offset);
}

/* ---- batch I/O ------------------------------------------------------------------------ */

static ssize_t read_one(tun_dev *d, tun_pkt *p)
{
	uint8_t hdr[TUN_VNET_HDR_LEN];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { p->data, p->cap } };
	ssize_t n;

	if (!d->vnet) {
		n = read(d->fd, p->data, p->cap);
		if (n >= 0)
			p->len = (size_t)n;
		return n < 0 ? -errno : n;
	}
	n = readv(d->fd, iov, 2);
	if (n < 0)
		return -errno;
	if ((size_t)n < sizeof(hdr))
		return -EPROTO;
	tun_vnet_hdr_decode(hdr, sizeof(hdr), &p->vnet);
	p->len = (size_t)n - sizeof(hdr);
	return n;
}

ssize_t tun_dev_read_batch(tun_dev *d, tun_pkt *pkts, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t rc = read_one(d, &pkts[got]);

		if (rc == -EPROTO)
			continue; /* a short vnet read cannot happen; skip it if it does */
		if (rc < 0) {
			if (got || rc == -EAGAIN)
				break;
			return rc;
		}
		got++;
	}
	return (ssize_t)got;
}

static ssize_t write_one(tun_dev *d, const tun_pkt *p)
{
	uint8_t hdr[TUN_VNET_HDR_LEN];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { p->data, p->len } };
	ssize_t n;

	if (d->vnet) {
		tun_vnet_hdr_encode(&p->vnet, hdr);
		n = writev(d->fd, iov, 2);
	} else {
		n = write(d->fd, p->data, p->len);
	}
	return n < 0 ? -errno : n;
}

ssize_t tun_dev_write_batch(tun_dev *d, const tun_pkt *pkts, size_t n)
{
	size_t done = 0;

	for (; done < n; done++) {
		ssize_t rc = write_one(d, &pkts[done]);

		if (rc == -EINVAL || rc == -EIO) {
			/* The kernel refused this packet (bad header): drop it, go on. */
			d->tx_rejected++;
			log_debug("tun: packet rejected dev=%s len=%zu err=\"%s\"", d->name, pkts[done].len,
				  strerror((int)-rc));
			continue;
		}
		if (rc < 0) {
			if (done || rc == -EAGAIN)
				break;
			return rc;
		}
	}
	return (ssize_t)done;
}
