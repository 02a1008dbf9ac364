/* daemon/tunbridge.c against the REAL kernel: every case forks a child that
 * unshare(CLONE_NEWNET)s (skipped when not root or when that fails), so
 * 10.4.0.0/16 and the ULA are only configured inside a throw-away namespace
 * (DESIGN.md §7). In the child: a TUN (10.4.0.1/16, MTU 65535) bridged to conn
 * table A (node 1); conn table B (node 2, mapped to 10.4.0.2) joined to A back to
 * back in-process (a queue drained by a 0 ms loop timer) runs small servers on
 * the conn API; kernel sockets (non-blocking, driven between loop iterations)
 * talk to it through the bridge. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <net/if.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "stream/conn.h"
#include "daemon/tunbridge_internal.h"
#include "lib/loop.h"
#include "lib/proto.h"
#include "tun/addrmap.h"
#include "tun/dev.h"
#include "tun/dns.h"

#define SKIP_RC 77
#define HEADROOM 29
#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))

#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "child: %s:%d: check failed: %s (errno %s)\n", __FILE__, __LINE__, #cond, \
		strerror(errno)); \
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

/* ---- the environment: TUN + bridge + two conn tables ------------------------------- */

typedef struct qpkt {
	struct qpkt *next;
	int to;
	uint32_t from;
	size_t len;
	uint8_t data[];
} qpkt;

typedef struct srv srv;

typedef struct env {
	pilot_loop *loop;
	conn_table *t[2];
	int idx[2];
	qpkt *head, *tail;
	uint64_t timer;
	tun_dev *dev;
	tun_addrmap *map;
	tunbridge *br;
	srv *servers;
} env;

static env E;

static int64_t drain(pilot_loop *l, uint64_t id, void *arg)
{
	qpkt *q = E.head;

	(void)l;
	(void)id;
	(void)arg;
	E.timer = 0;
	E.head = E.tail = NULL;
	while (q) {
		qpkt *next = q->next;
		if (E.t[q->to])
			conn_input(E.t[q->to], q->from, q->data, q->len);
		free(q);
		q = next;
	}
	return 0;
}

static int send_packet(void *ctx, uint32_t node, uint8_t *pkt, size_t len)
{
	int from = *(int *)ctx;
	qpkt *q;

	if (node != 1 && node != 2)
		return -EHOSTUNREACH;
	q = malloc(sizeof(*q) + len);
	CHECK(q);
	q->next = NULL;
	q->to = (int)node - 1;
	q->from = (uint32_t)from + 1;
	q->len = len;
	memcpy(q->data, pkt, len);
	if (E.tail)
		E.tail->next = q;
	else
		E.head = q;
	E.tail = q;
	if (!E.timer)
		E.timer = pilot_loop_add_timer(E.loop, 0, drain, NULL);
	return 0;
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

static void ptab_init(void);

static void env_up(uint32_t bufsize)
{
	tun_dev_cfg dc = { .ip4 = IP4(10, 4, 0, 1), .ip4_prefix = 16, .mtu = 65535, .has_ip6 = true,
			   .has_route6 = true };
	tun_addrmap_cfg mc = { 0 };
	tunbridge_config bc = { 0 };
	char err[256] = "";

	memset(&E, 0, sizeof(E));
	ptab_init();
	lo_up();
	tun_ula_from_addr(pilot_addr_make(0, 1), &dc.ip6);
	memcpy(dc.route6.s6_addr, tun_ula_prefix, sizeof(tun_ula_prefix));
	if (tun_dev_open(&dc, &E.dev, err, sizeof(err)) < 0) {
		fprintf(stderr, "child: tun_dev_open: %s\n", err);
		exit(SKIP_RC);
	}
	CHECK(tun_addrmap_open(&mc, &E.map, err, sizeof(err)) == 0);
	tun_addrmap_set_own(E.map, pilot_addr_make(0, 1));
	CHECK(tun_addrmap_map(E.map, pilot_addr_make(0, 2), IP4(10, 4, 0, 2)) == 0);
	E.loop = pilot_loop_new();
	for (int i = 0; i < 2; i++) {
		conn_config c = { 0 };
		stream_params_default(&c.stream);
		c.stream.sndbuf = c.stream.rcvbuf = bufsize;
		c.stream.time_wait_us = 200000;
		c.syn_rate = c.syn_rate_peer = c.syn_burst_peer = 10000;
		E.idx[i] = i;
		c.loop = E.loop;
		c.headroom = HEADROOM;
		c.ctx = &E.idx[i];
		c.send_packet = send_packet;
		E.t[i] = conn_table_new(&c);
		CHECK(E.t[i]);
		conn_set_local_addr(E.t[i], pilot_addr_make(0, (uint32_t)i + 1));
	}
	bc.dev = E.dev;
	bc.map = E.map;
	bc.own = pilot_addr_make(0, 1);
	bc.sndbuf = bc.rcvbuf = bufsize;
	bc.dns_enable = true;
	E.br = tunbridge_new(E.loop, E.t[0], &bc, err, sizeof(err));
	if (!E.br)
		fprintf(stderr, "child: tunbridge_new: %s\n", err);
	CHECK(E.br);
}

static void srv_free_all(void);

static void env_down(void)
{
	tunbridge_free(E.br);
	conn_table_free(E.t[0]);
	conn_table_free(E.t[1]);
	E.t[0] = E.t[1] = NULL;
	srv_free_all();
	drain(E.loop, 0, NULL);
	if (E.timer)
		pilot_loop_del_timer(E.loop, E.timer);
	tun_addrmap_free(E.map);
	tun_dev_close(E.dev);
	pilot_loop_free(E.loop);
}

typedef bool (*pred_fn)(void *arg);

static bool spin(pred_fn p, void *arg, int ms)
{
	uint64_t end = pilot_now_ms() + (uint64_t)ms;

	while (!p(arg)) {
		if (pilot_now_ms() > end)
			return false;
		pilot_loop_run_once(E.loop, 1);
	}
	return true;
}

static bool fd_ready(int fd, short ev)
{
	struct pollfd p = { .fd = fd, .events = ev };

	return poll(&p, 1, 0) > 0;
}

typedef struct fdwait {
	int fd;
	short ev;
} fdwait;

static bool fdwait_ok(void *arg)
{
	fdwait *w = arg;

	return fd_ready(w->fd, w->ev);
}

static bool wait_fd(int fd, short ev, int ms)
{
	fdwait w = { fd, ev };

	return spin(fdwait_ok, &w, ms);
}

/* ---- B's servers on the conn API ------------------------------------------------------ */

/* Served bytes: a pseudo-random table with a prime period, so the server writes
 * straight from it and a shifted or repeated chunk does not match. */
#define PERIOD 65521u
static uint8_t ptab[2 * PERIOD];


static void ptab_init(void)
{
	uint32_t x = 0x9E3779B9u;

	for (size_t i = 0; i < PERIOD; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		ptab[i] = ptab[i + PERIOD] = (uint8_t)x;
	}
}

/* HTTP-ish: "GET /<n>" ... "\r\n" -> n pattern bytes, then close. "/abort<n>":
 * n bytes, then RST. */
struct srv {
	srv *next;
	conn *c;
	char req[256];
	size_t nreq;
	bool answering, abort_after, done;
	uint64_t total, sent;
};

static void srv_finish(srv *s, bool rst)
{
	if (s->done)
		return;
	s->done = true;
	if (rst)
		conn_abort(s->c);
	else
		conn_close(s->c);
}

static void srv_pump(void *arg, conn *c)
{
	srv *s = arg;

	while (s->answering && !s->done && s->sent < s->total) {
		size_t n = s->total - s->sent < PERIOD ? (size_t)(s->total - s->sent) : PERIOD;
		size_t w = conn_write(c, ptab + s->sent % PERIOD, n);
		s->sent += w;
		if (w < n)
			return;
	}
	if (s->answering && s->sent >= s->total)
		srv_finish(s, s->abort_after);
}

static void srv_read(void *arg, conn *c)
{
	srv *s = arg;
	char *eol;
	size_t r;

	while (!s->answering && (r = conn_read(c, s->req + s->nreq, sizeof(s->req) - 1 - s->nreq)) > 0) {
		s->nreq += r;
		s->req[s->nreq] = 0;
		eol = strstr(s->req, "\r\n");
		if (!eol)
			continue;
		s->answering = true;
		s->abort_after = strncmp(s->req, "GET /abort", 10) == 0;
		s->total = strtoull(s->req + (s->abort_after ? 10 : 5), NULL, 10);
	}
	if (s->answering) {
		uint8_t junk[4096];
		while (conn_read(c, junk, sizeof(junk)) > 0)
			;
		srv_pump(s, c);
	} else if (conn_eof(c) || s->nreq >= sizeof(s->req) - 1) {
		srv_finish(s, false);
	}
}

static void srv_state(void *arg, conn *c, enum stream_state o, enum stream_state now, int err)
{
	(void)c;
	(void)o;
	(void)err;
	if (now == STREAM_CLOSED)
		srv_finish(arg, false);
}

static const conn_cbs srv_cbs = { srv_read, srv_pump, srv_state };

static bool srv_accept(void *arg, conn *c)
{
	srv *s = calloc(1, sizeof(*s));

	(void)arg;
	CHECK(s);
	s->c = c;
	s->next = E.servers;
	E.servers = s;
	conn_set_cbs(c, &srv_cbs, s);
	return true;
}

static const conn_listener_cbs http_listener = { srv_accept };

static void srv_free_all(void)
{
	while (E.servers) {
		srv *s = E.servers;
		E.servers = s->next;
		free(s);
	}
}

/* UDP echo on B port 5353: answers from 5353 to the sender's port */
static void b_udp_echo(void *arg, pilot_addr src, uint16_t sport, uint16_t dport,
		       const uint8_t *data, size_t len)
{
	(void)arg;
	CHECK(conn_dgram_send_from(E.t[1], dport, src, sport, data, len) == 0);
}

/* ---- kernel clients ------------------------------------------------------------------- */

static int tcp_connect(const char *ip, uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	inet_pton(AF_INET, ip, &sa.sin_addr);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EINPROGRESS);
	return fd;
}

static int so_error(int fd)
{
	int e = 0;
	socklen_t l = sizeof(e);

	CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) == 0);
	return e;
}

static void send_all(int fd, const void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t w = send(fd, (const char *)buf + off, len - off, MSG_NOSIGNAL);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		CHECK(w < 0 && errno == EAGAIN);
		CHECK(wait_fd(fd, POLLOUT, 5000));
	}
}

/* A download: bytes checked against the pattern as they come. */
typedef struct dl {
	int fd;
	uint64_t got, want;
	bool eof, bad;
	int err;
} dl;

static void dl_poll(dl *d)
{
	static uint8_t buf[1 << 18];

	while (!d->eof && !d->err) {
		ssize_t r = recv(d->fd, buf, sizeof(buf), 0);
		if (r > 0) {
			for (size_t off = 0; off < (size_t)r;) {
				size_t at = (size_t)((d->got + off) % PERIOD), k = (size_t)r - off;
				if (k > PERIOD)
					k = PERIOD;
				if (memcmp(buf + off, ptab + at, k) != 0)
					d->bad = true;
				off += k;
			}
			d->got += (uint64_t)r;
		} else if (r == 0) {
			d->eof = true;
		} else {
			if (errno != EAGAIN)
				d->err = errno;
			return;
		}
	}
}

static bool dl_done(void *arg)
{
	dl *d = arg;

	dl_poll(d);
	return d->eof || d->err;
}

static void http_get(dl *d, const char *path, uint64_t want, bool half_close)
{
	char req[128];
	int n;

	memset(d, 0, sizeof(*d));
	d->fd = tcp_connect("10.4.0.2", 80);
	d->want = want;
	CHECK(wait_fd(d->fd, POLLOUT, 3000));
	CHECK(so_error(d->fd) == 0);
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	send_all(d->fd, req, (size_t)n);
	if (half_close)
		CHECK(shutdown(d->fd, SHUT_WR) == 0);
}

/* ---- cases ------------------------------------------------------------------------------- */

static bool flows_gone(void *arg);

static int child_http(void)
{
	dl d;
	uint64_t t0, us;
	tunbridge_stats st;
	struct json_object *j;

	env_up(1u << 20);
	CHECK(conn_listen(E.t[1], 80, &http_listener, NULL) == 0);
	/* small, half-closed after the request */
	http_get(&d, "/1000", 1000, true);
	CHECK(spin(dl_done, &d, 5000));
	CHECK(d.eof && !d.err && !d.bad && d.got == 1000);
	close(d.fd);
	/* 64 MB: throughput through the kernel, the TUN and both conn tables */
	t0 = pilot_now_us();
	http_get(&d, "/67108864", 64u << 20, false);
	CHECK(spin(dl_done, &d, 120000));
	us = pilot_now_us() - t0;
	CHECK(d.eof && !d.err && !d.bad);
	CHECK(d.got == 64u << 20);
	fprintf(stderr, "tunbridge: 64 MiB in %.3f s = %.1f MB/s (kernel -> TUN -> conn A -> conn B)\n",
		(double)us / 1e6, (double)d.got / (double)us);
	j = tunbridge_flows_json(E.br);
	CHECK(j && json_object_array_length(json_object_object_get(j, "flows")) >= 1);
	json_object_put(j);
	close(d.fd);
	tunbridge_get_stats(E.br, &st);
	CHECK(st.tcp_outbound == 2 && st.tcp_refused == 0);
	CHECK(spin(flows_gone, NULL, 5000));
	env_down();
	return 0;
}

static int child_refused(void)
{
	uint64_t t0;
	int fd;
	tunbridge_stats st;

	env_up(256 * 1024);
	/* port 81: no listener on B -> Pilot RST -> TCP RST */
	t0 = pilot_now_ms();
	fd = tcp_connect("10.4.0.2", 81);
	CHECK(wait_fd(fd, POLLOUT, 3000));
	CHECK(so_error(fd) == ECONNREFUSED);
	CHECK(pilot_now_ms() - t0 < 100);
	close(fd);
	/* an unmapped IP: RST at once */
	t0 = pilot_now_ms();
	fd = tcp_connect("10.4.9.9", 80);
	CHECK(wait_fd(fd, POLLOUT, 3000));
	CHECK(so_error(fd) == ECONNREFUSED);
	CHECK(pilot_now_ms() - t0 < 100);
	close(fd);
	tunbridge_get_stats(E.br, &st);
	CHECK(st.tcp_refused == 2 && st.no_peer == 1);
	env_down();
	return 0;
}

/* ---- inbound ---- */

typedef struct bcli {
	conn *c;
	bool established, closed, eof;
	int err;
	char rx[64];
	size_t nrx;
} bcli;

static void bcli_read(void *arg, conn *c)
{
	bcli *k = arg;
	size_t r;

	while ((r = conn_read(c, k->rx + k->nrx, sizeof(k->rx) - 1 - k->nrx)) > 0)
		k->nrx += r;
	if (conn_eof(c))
		k->eof = true;
}

static void bcli_state(void *arg, conn *c, enum stream_state o, enum stream_state now, int err)
{
	bcli *k = arg;

	(void)c;
	(void)o;
	if (now == STREAM_ESTABLISHED)
		k->established = true;
	if (now == STREAM_CLOSED) {
		k->closed = true;
		k->err = err;
	}
}

static const conn_cbs bcli_cbs = { bcli_read, NULL, bcli_state };

static bool bcli_closed(void *arg) { return ((bcli *)arg)->closed; }
static bool bcli_est(void *arg) { return ((bcli *)arg)->established; }
static bool bcli_has5(void *arg) { return ((bcli *)arg)->nrx >= 5; }
static bool bcli_eof(void *arg) { return ((bcli *)arg)->eof; }

static int child_inbound(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(8080) }, peer;
	socklen_t pl = sizeof(peer);
	bcli k = { 0 }, r = { 0 };
	char buf[16], ip[32];
	int lfd, fd, err, one = 1;
	uint64_t t0;

	env_up(256 * 1024);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "10.4.0.1", &sa.sin_addr);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(lfd, 16) == 0);
	k.c = conn_dial(E.t[1], pilot_addr_make(0, 1), 8080, &bcli_cbs, &k, &err);
	CHECK(k.c);
	CHECK(wait_fd(lfd, POLLIN, 3000));
	fd = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK);
	CHECK(fd >= 0);
	inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
	CHECK(strcmp(ip, "10.4.0.2") == 0);
	CHECK(spin(bcli_est, &k, 3000));
	/* data both ways */
	CHECK(conn_write(k.c, "hello", 5) == 5);
	CHECK(wait_fd(fd, POLLIN, 3000));
	CHECK(recv(fd, buf, sizeof(buf), 0) == 5 && memcmp(buf, "hello", 5) == 0);
	send_all(fd, "world", 5);
	CHECK(spin(bcli_has5, &k, 3000));
	CHECK(memcmp(k.rx, "world", 5) == 0);
	/* kernel half-close -> Pilot EOF; Pilot FIN -> kernel EOF */
	CHECK(shutdown(fd, SHUT_WR) == 0);
	CHECK(spin(bcli_eof, &k, 3000));
	conn_shutdown(k.c);
	CHECK(wait_fd(fd, POLLIN, 3000));
	CHECK(recv(fd, buf, sizeof(buf), 0) == 0);
	close(fd);
	conn_close(k.c);
	/* no kernel listener on 8081: the dialer gets ECONNREFUSED, not a timeout */
	t0 = pilot_now_ms();
	r.c = conn_dial(E.t[1], pilot_addr_make(0, 1), 8081, &bcli_cbs, &r, &err);
	CHECK(r.c);
	CHECK(spin(bcli_closed, &r, 3000));
	CHECK(r.err == ECONNREFUSED && !r.established);
	CHECK(pilot_now_ms() - t0 < 100);
	conn_close(r.c);
	close(lfd);
	CHECK(spin(flows_gone, NULL, 5000));
	env_down();
	return 0;
}

/* ---- UDP ---- */

static int child_udp(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(5353) };
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(6000) }, from;
	socklen_t fl = sizeof(from);
	char buf[64], ip[32];
	int fd, fd2;
	ssize_t n;

	env_up(256 * 1024);
	CHECK(conn_dgram_bind(E.t[1], 5353, b_udp_echo, NULL) == 0);
	/* kernel -> B -> kernel: the reply finds the connected socket */
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "10.4.0.2", &sa.sin_addr);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(send(fd, "ping", 4, 0) == 4);
	CHECK(wait_fd(fd, POLLIN, 3000));
	CHECK(recv(fd, buf, sizeof(buf), 0) == 4 && memcmp(buf, "ping", 4) == 0);
	close(fd);
	/* B -> kernel socket on 10.4.0.1:6000 */
	fd2 = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "10.4.0.1", &me.sin_addr);
	CHECK(bind(fd2, (struct sockaddr *)&me, sizeof(me)) == 0);
	CHECK(conn_dgram_send_from(E.t[1], 7777, pilot_addr_make(0, 1), 6000, "hi", 2) == 0);
	CHECK(wait_fd(fd2, POLLIN, 3000));
	n = recvfrom(fd2, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
	CHECK(n == 2 && memcmp(buf, "hi", 2) == 0);
	inet_ntop(AF_INET, &from.sin_addr, ip, sizeof(ip));
	CHECK(strcmp(ip, "10.4.0.2") == 0 && ntohs(from.sin_port) == 7777);
	close(fd2);
	/* unmapped: ICMP port unreachable -> ECONNREFUSED on the connected socket */
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "10.4.9.9", &sa.sin_addr);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(send(fd, "x", 1, 0) == 1);
	CHECK(wait_fd(fd, POLLIN | POLLERR, 3000));
	CHECK(recv(fd, buf, sizeof(buf), 0) < 0 && errno == ECONNREFUSED);
	close(fd);
	env_down();
	return 0;
}

/* ---- ICMP echo ---- */

static uint16_t csum16(const uint8_t *p, size_t n)
{
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* Send an echo request to ip; return the ICMP type of the first answer for it
 * (0 echo reply with our id/seq/payload, 3 unreachable), -1 on timeout. */
static int ping_once(const char *ip, uint16_t id, uint16_t seq, uint8_t *code)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	uint8_t req[8 + 16], buf[1500];
	int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
	uint64_t end = pilot_now_ms() + 3000;
	uint16_t c;

	CHECK(fd >= 0);
	inet_pton(AF_INET, ip, &sa.sin_addr);
	memset(req, 0, sizeof(req));
	req[0] = 8;
	req[4] = (uint8_t)(id >> 8), req[5] = (uint8_t)id;
	req[6] = (uint8_t)(seq >> 8), req[7] = (uint8_t)seq;
	memcpy(req + 8, "pilot-echo-data!", 16);
	c = csum16(req, sizeof(req));
	req[2] = (uint8_t)(c >> 8), req[3] = (uint8_t)c;
	CHECK(sendto(fd, req, sizeof(req), 0, (struct sockaddr *)&sa, sizeof(sa)) == (ssize_t)sizeof(req));
	while (pilot_now_ms() < end) {
		ssize_t n;
		size_t ihl;
		if (!wait_fd(fd, POLLIN, (int)(end - pilot_now_ms())))
			break;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 20)
			continue;
		ihl = (size_t)(buf[0] & 0xf) * 4;
		if ((size_t)n < ihl + 8)
			continue;
		if (buf[ihl] == 0 && (size_t)n == ihl + sizeof(req) &&
		    memcmp(buf + ihl + 4, req + 4, sizeof(req) - 4) == 0) {
			close(fd);
			return 0;
		}
		if (buf[ihl] == 3) {
			*code = buf[ihl + 1];
			close(fd);
			return 3;
		}
	}
	close(fd);
	return -1;
}

static int child_icmp(void)
{
	uint8_t code = 0xff;
	tunbridge_stats st;

	env_up(256 * 1024);
	CHECK(ping_once("10.4.0.2", 0x1234, 1, &code) == 0);
	CHECK(ping_once("10.4.0.2", 0x1234, 2, &code) == 0);
	CHECK(ping_once("10.4.9.9", 0x1234, 3, &code) == 3 && code == 1);
	tunbridge_get_stats(E.br, &st);
	CHECK(st.echo_out == 2 && st.echo_replies == 2);
	env_down();
	return 0;
}

/* ---- DNS ---- */

static const uint8_t query_a[] = {
	0xAB, 0xCD, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	16, '0', '-', '0', '0', '0', '0', '-', '0', '0', '0', '0', '-', '0', '0', '0', '2',
	5, 'p', 'i', 'l', 'o', 't', 0, 0x00, 0x01, 0x00, 0x01,
};

static int child_dns(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(53) };
	tun_dns_msg *m = malloc(sizeof(*m));
	uint8_t r[TUN_DNS_MAX_UDP];
	int fd;
	ssize_t n;

	env_up(256 * 1024);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "10.4.0.1", &sa.sin_addr);
	CHECK(m && sendto(fd, query_a, sizeof(query_a), 0, (struct sockaddr *)&sa, sizeof(sa)) > 0);
	CHECK(wait_fd(fd, POLLIN, 3000));
	n = recv(fd, r, sizeof(r), 0);
	CHECK(n > 0 && tun_dns_parse_msg(r, (size_t)n, m) == 0);
	CHECK(m->id == 0xABCD && (m->flags & 0xF) == TUN_DNS_NOERROR && m->ancount == 1);
	CHECK(m->rr[0].type == TUN_DNS_T_A && memcmp(m->rr[0].rdata, "\x0a\x04\x00\x02", 4) == 0);
	close(fd);
	free(m);
	env_down();
	return 0;
}

/* ---- the remote dies mid-download ---- */

static bool got_some(void *arg)
{
	dl *d = arg;

	dl_poll(d);
	return d->got >= (1u << 20) || d->eof || d->err;
}

static int child_remote_death(void)
{
	dl d;
	uint64_t t0;

	env_up(1u << 20);
	CHECK(conn_listen(E.t[1], 80, &http_listener, NULL) == 0);
	/* B resets its side after 100 kB: RST to the kernel */
	http_get(&d, "/abort100000", 100000, false);
	CHECK(spin(dl_done, &d, 5000));
	CHECK(d.err == ECONNRESET || (d.eof && d.got < 100000) || d.got == 100000);
	close(d.fd);
	/* B's whole table goes away mid-download */
	http_get(&d, "/67108864", 64u << 20, false);
	CHECK(spin(got_some, &d, 10000));
	CHECK(!d.eof && !d.err);
	t0 = pilot_now_ms();
	conn_table_free(E.t[1]);
	E.t[1] = NULL;
	CHECK(spin(dl_done, &d, 5000));
	CHECK(d.err == ECONNRESET || (d.eof && d.got < (64u << 20)));
	fprintf(stderr, "tunbridge: remote death noticed after %llu ms (%s)\n",
		(unsigned long long)(pilot_now_ms() - t0), d.err ? strerror(d.err) : "EOF");
	close(d.fd);
	env_down();
	return 0;
}

/* ---- many at once ---- */

#define NCONC 100

typedef struct many {
	dl d[NCONC];
} many;

static bool many_done(void *arg)
{
	many *m = arg;
	bool all = true;

	for (int i = 0; i < NCONC; i++)
		if (!m->d[i].eof && !m->d[i].err) {
			dl_poll(&m->d[i]);
			all = all && (m->d[i].eof || m->d[i].err);
		}
	return all;
}

static bool flows_gone(void *arg)
{
	tunbridge_stats st;

	(void)arg;
	tunbridge_get_stats(E.br, &st);
	return st.flows_active == 0;
}

static int child_concurrent(void)
{
	many *m = calloc(1, sizeof(*m));
	tunbridge_stats st;

	env_up(128 * 1024);
	CHECK(m);
	CHECK(conn_listen(E.t[1], 80, &http_listener, NULL) == 0);
	for (int i = 0; i < NCONC; i++) {
		m->d[i].fd = tcp_connect("10.4.0.2", 80);
		m->d[i].want = 200000;
	}
	for (int i = 0; i < NCONC; i++) {
		CHECK(wait_fd(m->d[i].fd, POLLOUT, 5000));
		CHECK(so_error(m->d[i].fd) == 0);
		send_all(m->d[i].fd, "GET /200000 HTTP/1.0\r\n\r\n", 24);
	}
	CHECK(spin(many_done, m, 60000));
	for (int i = 0; i < NCONC; i++) {
		CHECK(m->d[i].eof && !m->d[i].err && !m->d[i].bad && m->d[i].got == 200000);
		close(m->d[i].fd);
	}
	tunbridge_get_stats(E.br, &st);
	CHECK(st.tcp_outbound == NCONC);
	CHECK(spin(flows_gone, NULL, 10000)); /* every flow removed after TIME_WAIT */
	free(m);
	env_down();
	return 0;
}

static void test_http(void **state) { (void)state; run_in_netns(child_http); }
static void test_refused(void **state) { (void)state; run_in_netns(child_refused); }
static void test_inbound(void **state) { (void)state; run_in_netns(child_inbound); }
static void test_udp(void **state) { (void)state; run_in_netns(child_udp); }
static void test_icmp(void **state) { (void)state; run_in_netns(child_icmp); }
static void test_dns(void **state) { (void)state; run_in_netns(child_dns); }
static void test_remote_death(void **state) { (void)state; run_in_netns(child_remote_death); }
static void test_concurrent(void **state) { (void)state; run_in_netns(child_concurrent); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_http),
		cmocka_unit_test(test_inbound),
		cmocka_unit_test(test_udp),
		cmocka_unit_test(test_icmp),
		cmocka_unit_test(test_dns),
		cmocka_unit_test(test_remote_death),
		cmocka_unit_test(test_concurrent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
