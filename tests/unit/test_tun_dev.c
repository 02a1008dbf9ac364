/* The TUN device and the DNS responder end to end. Needs root: everything runs
 * in a child that unshare(CLONE_NEWNET)s, so 10.4.0.0/16 and the ULA are only
 * ever configured inside that throw-away namespace (DESIGN.md §7). Skipped when
 * not root or when the namespace cannot be created. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <net/if.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include "lib/loop.h"
#include "tun/addrmap.h"
#include "tun/dev.h"
#include "tun/dns.h"

#define SKIP_RC 77
#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))

/* In the child a cmocka assert would unwind into the child's copy of the
 * runner: report and exit instead. */
#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "child: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
	exit(1); } } while (0)

static void run_in_netns(int (*fn)(void))
{
	pid_t pid;
	int status;

	if (geteuid() != 0)
		skip();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (unshare(CLONE_NEWNET) < 0) {
			fprintf(stderr, "unshare(CLONE_NEWNET): %s\n", strerror(errno));
			exit(SKIP_RC);
		}
		exit(fn());
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == SKIP_RC)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- helpers (child side) ------------------------------------------------------------- */

static void own_ula(struct in6_addr *ip)
{
	tun_ula_from_addr(pilot_addr_make(1, 1), ip);
}

static tun_dev *open_pilot0(bool vnet, const char *name)
{
	tun_dev_cfg cfg = { .name = name, .ip4 = IP4(10, 4, 0, 1), .ip4_prefix = 16, .has_ip6 = true,
			    .has_route6 = true, .vnet_hdr = vnet };
	tun_dev *d = NULL;
	char err[256] = "";
	int rc;

	own_ula(&cfg.ip6);
	memcpy(cfg.route6.s6_addr, tun_ula_prefix, sizeof(tun_ula_prefix));
	rc = tun_dev_open(&cfg, &d, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "child: tun_dev_open: %s\n", err);
	CHECK(rc == 0);
	return d;
}

static int ifreq_get(const char *name, unsigned long req, struct ifreq *ifr)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc;

	memset(ifr, 0, sizeof(*ifr));
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", name);
	rc = ioctl(s, req, ifr);
	close(s);
	return rc;
}

static void lo_up(void)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	CHECK(ioctl(s, SIOCGIFFLAGS, &ifr) == 0);
	ifr.ifr_flags |= IFF_UP;
	CHECK(ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
	close(s);
}

/* Does getifaddrs list addr (text) on name? */
static bool has_addr(const char *name, int family, const char *want, const char *want_mask)
{
	struct ifaddrs *ifa, *i;
	bool found = false;

	CHECK(getifaddrs(&ifa) == 0);
	for (i = ifa; i && !found; i = i->ifa_next) {
		char text[INET6_ADDRSTRLEN], mask[INET6_ADDRSTRLEN] = "";
		const void *p, *m = NULL;

		if (!i->ifa_addr || i->ifa_addr->sa_family != family || strcmp(i->ifa_name, name) != 0)
			continue;
		if (family == AF_INET) {
			p = &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr;
			if (i->ifa_netmask)
				m = &((struct sockaddr_in *)(void *)i->ifa_netmask)->sin_addr;
		} else {
			p = &((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr;
			if (i->ifa_netmask)
				m = &((struct sockaddr_in6 *)(void *)i->ifa_netmask)->sin6_addr;
		}
		inet_ntop(family, p, text, sizeof(text));
		if (m)
			inet_ntop(family, m, mask, sizeof(mask));
		found = strcmp(text, want) == 0 && (!want_mask || strcmp(mask, want_mask) == 0);
	}
	freeifaddrs(ifa);
	return found;
}

/* The source address the kernel picks towards dst: proves the route. */
static bool source_for(int family, const char *dst, const char *want_src)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char text[INET6_ADDRSTRLEN];
	int s = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool ok;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (void *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(9);
		inet_pton(AF_INET, dst, &a->sin_addr);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (void *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(9);
		inet_pton(AF_INET6, dst, &a->sin6_addr);
		sl = sizeof(*a);
	}
	CHECK(connect(s, (struct sockaddr *)&ss, sl) == 0);
	sl = sizeof(ss);
	CHECK(getsockname(s, (struct sockaddr *)&ss, &sl) == 0);
	inet_ntop(family, family == AF_INET ? (void *)&((struct sockaddr_in *)(void *)&ss)->sin_addr
					    : (void *)&((struct sockaddr_in6 *)(void *)&ss)->sin6_addr,
		  text, sizeof(text));
	close(s);
	ok = strcmp(text, want_src) == 0;
	if (!ok)
		fprintf(stderr, "child: source towards %s is %s, want %s\n", dst, text, want_src);
	return ok;
}

static void send_udp4(const char *dst, uint16_t port, const char *payload)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, dst, &a.sin_addr);
	CHECK(sendto(s, payload, strlen(payload), 0, (struct sockaddr *)&a, sizeof(a)) == (ssize_t)strlen(payload));
	close(s);
}

/* Read the next IPv4 packet from the TUN, polling a little (the kernel also
 * sends IPv6 router solicitations and MLD reports once the link is up). */
static size_t read_pkt(tun_dev *d, uint8_t *buf, size_t cap, tun_vnet_hdr *vh)
{
	tun_pkt p = { .data = buf, .cap = cap };

	for (int i = 0; i < 200; i++) {
		ssize_t n = tun_dev_read_batch(d, &p, 1);

		CHECK(n >= 0);
		if (n == 1 && p.len > 0 && buf[0] >> 4 == 4) {
			if (vh)
				*vh = p.vnet;
			return p.len;
		}
		if (n == 0)
			usleep(5000);
	}
	return 0;
}

static uint16_t ip_csum(const uint8_t *p, size_t n)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xFFFF) + (sum >> 16);
	return (uint16_t)~sum;
}

/* IPv4/UDP from 10.4.0.7:9 to 10.4.0.1:port (UDP checksum 0 = none). */
static size_t build_udp4(uint8_t *b, uint16_t port, const char *payload)
{
	size_t pl = strlen(payload), tot = 28 + pl;
	uint16_t c;

	memset(b, 0, 28);
	b[0] = 0x45;
	b[2] = (uint8_t)(tot >> 8), b[3] = (uint8_t)tot;
	b[8] = 64;
	b[9] = 17;
	b[12] = 10, b[13] = 4, b[14] = 0, b[15] = 7;
	b[16] = 10, b[17] = 4, b[18] = 0, b[19] = 1;
	c = ip_csum(b, 20);
	b[10] = (uint8_t)(c >> 8), b[11] = (uint8_t)c;
	b[20] = 0, b[21] = 9;
	b[22] = (uint8_t)(port >> 8), b[23] = (uint8_t)port;
	b[24] = (uint8_t)((8 + pl) >> 8), b[25] = (uint8_t)(8 + pl);
	memcpy(b + 28, payload, pl);
	return tot;
}

/* ---- the children --------------------------------------------------------------------------- */

static int child_open_configure_close(void)
{
	struct ifreq ifr;
	struct in6_addr ula;
	char ula_text[INET6_ADDRSTRLEN];
	tun_dev *d;

	lo_up();
	d = open_pilot0(false, NULL);
	CHECK(strcmp(tun_dev_name(d), "pilot0") == 0);
	CHECK(tun_dev_fd(d) >= 0);
	CHECK(tun_dev_ifindex(d) == (int)if_nametoindex("pilot0"));
	CHECK((fcntl(tun_dev_fd(d), F_GETFL) & O_NONBLOCK) != 0);
	CHECK(ifreq_get("pilot0", SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP));
	CHECK(ifreq_get("pilot0", SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu == TUN_DEV_DEFAULT_MTU);
	CHECK(ifreq_get("pilot0", SIOCGIFTXQLEN, &ifr) == 0 && ifr.ifr_qlen == TUN_DEV_TXQLEN);
	CHECK(has_addr("pilot0", AF_INET, "10.4.0.1", "255.255.0.0"));
	own_ula(&ula);
	inet_ntop(AF_INET6, &ula, ula_text, sizeof(ula_text));
	CHECK(strcmp(ula_text, "fd50:494c:4f54:1::1") == 0);
	CHECK(has_addr("pilot0", AF_INET6, ula_text, "ffff:ffff:ffff:ffff::"));
	/* the connected /16 and the ULA /48 lead to pilot0 */
	CHECK(source_for(AF_INET, "10.4.3.3", "10.4.0.1"));
	CHECK(source_for(AF_INET6, "fd50:494c:4f54:2::5", ula_text));
	/* one more address later (another network) */
	{
		struct in6_addr more;
		char err[256];

		tun_ula_from_addr(pilot_addr_make(7, 1), &more);
		CHECK(tun_dev_add_addr6(d, &more, 64, err, sizeof(err)) == 0);
		CHECK(has_addr("pilot0", AF_INET6, "fd50:494c:4f54:7::1", NULL));
	}
	tun_dev_close(d);
	CHECK(if_nametoindex("pilot0") == 0);
	return 0;
}

static int child_packets(void)
{
	uint8_t buf[70000], pkt[128];
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(4000) };
	tun_pkt out = { .data = pkt };
	tun_dev *d;
	size_t n;
	int s;
	char got[16] = "";

	lo_up();
	d = open_pilot0(false, NULL);
	/* kernel -> TUN: a datagram to a peer IP comes out as an IPv4 packet */
	send_udp4("10.4.0.7", 9, "hello");
	n = read_pkt(d, buf, sizeof(buf), NULL);
	CHECK(n == 28 + 5);
	CHECK(buf[0] == 0x45 && buf[9] == 17);
	CHECK(memcmp(buf + 16, "\x0a\x04\x00\x07", 4) == 0);
	CHECK(memcmp(buf + 28, "hello", 5) == 0);
	/* TUN -> kernel: a datagram "from the peer" reaches a socket on 10.4.0.1 */
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "10.4.0.1", &a.sin_addr);
	CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
	out.len = build_udp4(pkt, 4000, "pong");
	CHECK(tun_dev_write_batch(d, &out, 1) == 1);
	/* a malformed packet is refused by the kernel, counted and skipped */
	{
		tun_pkt two[2] = { { .data = pkt, .len = 3 }, out };
		ssize_t w = tun_dev_write_batch(d, two, 2);

		CHECK(w == 2 || w == 1);
	}
	CHECK(recv(s, got, sizeof(got) - 1, 0) == 4);
	CHECK(strcmp(got, "pong") == 0);
	close(s);
	tun_dev_close(d);
	return 0;
}

static int child_vnet_hdr(void)
{
	uint8_t buf[70000];
	tun_vnet_hdr vh;
	tun_dev *d;
	size_t n;

	lo_up();
	d = open_pilot0(true, "pilot1");
	CHECK(tun_dev_has_vnet_hdr(d));
	send_udp4("10.4.0.9", 9, "hello vnet");
	n = read_pkt(d, buf, sizeof(buf), &vh);
	CHECK(n == 28 + 10);
	CHECK(buf[0] == 0x45);
	CHECK(vh.gso_type == TUN_VNET_GSO_NONE);
	/* with TUN_F_CSUM the kernel may leave the UDP checksum to us */
	if (vh.flags & TUN_VNET_F_NEEDS_CSUM)
		CHECK(vh.csum_start == 20 && vh.csum_offset == 6);
	tun_dev_close(d);
	CHECK(if_nametoindex("pilot1") == 0);
	return 0;
}

/* The kernel refuses offloads it does not know (EINVAL): asked for checksum plus
 * an unknown flag, the device keeps its vnet header with checksum offload alone;
 * asked for an unknown flag only, it falls back to a plain TUN that still works. */
static int child_vnet_fallback(void)
{
	uint8_t buf[70000];
	tun_dev_cfg cfg = { .name = "pilot2",
			    .ip4 = IP4(10, 4, 0, 1),
			    .ip4_prefix = 16,
			    .vnet_hdr = true,
			    .offloads = TUN_DEV_F_CSUM | 0x40000000u };
	tun_dev *d = NULL;
	char err[256] = "";

	lo_up();
	CHECK(tun_dev_open(&cfg, &d, err, sizeof(err)) == 0);
	CHECK(tun_dev_has_vnet_hdr(d) && tun_dev_offloads(d) == TUN_DEV_F_CSUM);
	tun_dev_close(d);
	cfg.offloads = 0x40000000u;
	CHECK(tun_dev_open(&cfg, &d, err, sizeof(err)) == 0);
	CHECK(!tun_dev_has_vnet_hdr(d) && tun_dev_offloads(d) == 0);
	send_udp4("10.4.0.9", 9, "plain");
	CHECK(read_pkt(d, buf, sizeof(buf), NULL) == 28 + 5);
	CHECK(memcmp(buf + 28, "plain", 5) == 0);
	tun_dev_close(d);
	/* the default asks for checksum and TSO: this kernel has them */
	d = open_pilot0(true, "pilot3");
	CHECK(tun_dev_offloads(d) == TUN_DEV_DEFAULT_OFFLOADS);
	tun_dev_close(d);
	return 0;
}

/* A persistent leftover (a crash while persistent) with a stale address. */
static int make_leftover(const char *name)
{
	struct ifreq ifr;
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&ifr.ifr_addr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), s;

	CHECK(fd >= 0);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	CHECK(ioctl(fd, TUNSETIFF, &ifr) == 0);
	CHECK(ioctl(fd, TUNSETPERSIST, 1) == 0);
	close(fd);
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, "10.4.9.9", &sin->sin_addr);
	CHECK(ioctl(s, SIOCSIFADDR, &ifr) == 0);
	close(s);
	return (int)if_nametoindex(name);
}

static int child_leftover_and_busy(void)
{
	tun_dev_cfg cfg = { .name = "pilot0" };
	tun_dev *d, *d2 = NULL;
	char err[256] = "";

	lo_up();
	CHECK(make_leftover("pilot0") > 0);
	CHECK(has_addr("pilot0", AF_INET, "10.4.9.9", NULL));
	d = open_pilot0(false, NULL);
	CHECK(!has_addr("pilot0", AF_INET, "10.4.9.9", NULL)); /* replaced, not reused stale */
	CHECK(has_addr("pilot0", AF_INET, "10.4.0.1", NULL));
	/* a second daemon on the same name is refused, the first keeps its device */
	CHECK(tun_dev_open(&cfg, &d2, err, sizeof(err)) == -EBUSY);
	CHECK(d2 == NULL);
	CHECK(strstr(err, "pilot0") && strstr(err, "in use"));
	CHECK(has_addr("pilot0", AF_INET, "10.4.0.1", NULL));
	tun_dev_close(d);
	CHECK(if_nametoindex("pilot0") == 0); /* non-persistent now */
	/* bad configurations name the problem */
	cfg.name = "this-name-is-far-too-long";
	CHECK(tun_dev_open(&cfg, &d2, err, sizeof(err)) == -EINVAL && strstr(err, "invalid"));
	cfg.name = "pilot0";
	cfg.mtu = 100;
	CHECK(tun_dev_open(&cfg, &d2, err, sizeof(err)) == -EINVAL && strstr(err, "mtu"));
	return 0;
}

/* DNS over real sockets inside the namespace. */
static size_t dns_exchange(pilot_loop *l, int family, const char *server, const uint8_t *q, size_t qlen,
			   uint8_t *r, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int s = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ssize_t n = -1;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (void *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(53);
		inet_pton(AF_INET, server, &a->sin_addr);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (void *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(53);
		inet_pton(AF_INET6, server, &a->sin6_addr);
		sl = sizeof(*a);
	}
	/* Resent every 100 ms, as a resolver would: a new IPv6 address becomes
	 * local (its host route installed) from the kernel's DAD work, a moment
	 * after it is added even with IFA_F_NODAD; a query sent in that window
	 * leaves through pilot0, which nobody reads here. */
	for (int i = 0; i < 300 && n < 0; i++) {
		if (i % 10 == 0)
			CHECK(sendto(s, q, qlen, 0, (struct sockaddr *)&ss, sl) == (ssize_t)qlen);
		pilot_loop_run_once(l, 10);
		n = recv(s, r, cap, 0);
	}
	close(s);
	if (n <= 0)
		fprintf(stderr, "child: no answer from %s (errno %d)\n", server, errno);
	CHECK(n > 0);
	return (size_t)n;
}

static const uint8_t query_a[] = {
	0xAB, 0xCD, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	16, '0', '-', '0', '0', '0', '0', '-', '0', '0', '0', '0', '-', '0', '0', '0', '7',
	5, 'p', 'i', 'l', 'o', 't', 0, 0x00, 0x01, 0x00, 0x01,
};

static int child_dns(void)
{
	pilot_loop *l = pilot_loop_new();
	tun_addrmap_cfg mc = { 0 };
	tun_addrmap *map = NULL;
	tun_dns_cfg dc = { 0 };
	tun_dns *dns = NULL;
	struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(53) };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(53) };
	uint8_t q[sizeof(query_a)], r[TUN_DNS_MAX_UDP];
	tun_dns_msg *m = malloc(sizeof(*m));
	char err[256] = "", text[INET6_ADDRSTRLEN];
	tun_dev *d;
	size_t n;

	lo_up();
	d = open_pilot0(false, NULL);
	CHECK(l && m && tun_addrmap_open(&mc, &map, err, sizeof(err)) == 0);
	dc.map = map;
	CHECK(tun_dns_new(&dc, &dns) == 0);
	s4.sin_addr.s_addr = htonl(tun_addrmap_own_ip(map));
	own_ula(&s6.sin6_addr);
	if (tun_dns_listen(dns, l, (struct sockaddr *)&s4, sizeof(s4), err, sizeof(err)) < 0 ||
	    tun_dns_listen(dns, l, (struct sockaddr *)&s6, sizeof(s6), err, sizeof(err)) < 0)
		fprintf(stderr, "child: %s\n", err);
	CHECK(err[0] == '\0');

	n = dns_exchange(l, AF_INET, "10.4.0.1", query_a, sizeof(query_a), r, sizeof(r));
	CHECK(tun_dns_parse_msg(r, n, m) == 0);
	CHECK(m->id == 0xABCD && (m->flags & 0xF) == TUN_DNS_NOERROR && m->ancount == 1);
	CHECK(m->rr[0].type == TUN_DNS_T_A && memcmp(m->rr[0].rdata, "\x0a\x04\x00\x02", 4) == 0);

	/* AAAA over IPv6 to the ULA */
	memcpy(q, query_a, sizeof(q));
	q[sizeof(q) - 3] = TUN_DNS_T_AAAA;
	n = dns_exchange(l, AF_INET6, "fd50:494c:4f54:1::1", q, sizeof(q), r, sizeof(r));
	CHECK(tun_dns_parse_msg(r, n, m) == 0);
	CHECK(m->ancount == 1 && m->rr[0].type == TUN_DNS_T_AAAA);
	inet_ntop(AF_INET6, m->rr[0].rdata, text, sizeof(text));
	CHECK(strcmp(text, "fd50:494c:4f54::7") == 0);

	/* the responder is not reachable on other addresses (bound to the TUN IP) */
	tun_dns_free(dns);
	tun_addrmap_free(map);
	tun_dev_close(d);
	pilot_loop_free(l);
	free(m);
	return 0;
}

static void test_open_configure_close(void **state) { run_in_netns(child_open_configure_close); }
static void test_packets(void **state) { run_in_netns(child_packets); }
static void test_vnet_hdr(void **state) { run_in_netns(child_vnet_hdr); }
static void test_vnet_fallback(void **state)
{
	run_in_netns(child_vnet_fallback);
}
static void test_leftover_and_busy(void **state) { run_in_netns(child_leftover_and_busy); }
static void test_dns_end_to_end(void **state) { run_in_netns(child_dns); }

static void test_vnet_hdr_codec(void **state)
{
	static const uint8_t wire[TUN_VNET_HDR_LEN] = { 1, 4, 60, 0, 0xA8, 0x05, 40, 0, 16, 0 };
	tun_vnet_hdr h;
	uint8_t back[TUN_VNET_HDR_LEN];

	assert_int_equal(tun_vnet_hdr_decode(wire, sizeof(wire) - 1, &h), -EINVAL);
	assert_int_equal(tun_vnet_hdr_decode(wire, sizeof(wire), &h), 0);
	assert_int_equal(h.flags, TUN_VNET_F_NEEDS_CSUM);
	assert_int_equal(h.gso_type, TUN_VNET_GSO_TCPV6);
	assert_int_equal(h.hdr_len, 60);
	assert_int_equal(h.gso_size, 1448);
	assert_int_equal(h.csum_start, 40);
	assert_int_equal(h.csum_offset, 16);
	tun_vnet_hdr_encode(&h, back);
	assert_memory_equal(back, wire, sizeof(wire));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vnet_hdr_codec), cmocka_unit_test(test_open_configure_close),
		cmocka_unit_test(test_packets),        cmocka_unit_test(test_vnet_hdr),
		cmocka_unit_test(test_vnet_fallback),  cmocka_unit_test(test_leftover_and_busy),
		cmocka_unit_test(test_dns_end_to_end),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
