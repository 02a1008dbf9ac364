/* rdvbench: load generator for pilot-rendezvous (scripts/bench rendezvous).
 *
 *   rdvbench -registry 127.0.0.1:PORT[,127.0.0.1:PORT2] [-beacon 127.0.0.1:PORT] [-pid PID]
 *            [-nodes 100000] [-clients 1,16,256] [-duration 5] [-runs 3]
 *            [-beacon-duration 5] [-payload 1200] [-reg-keys N]
 *   rdvbench -registry 127.0.0.1:PORT -latency SECONDS
 *
 * Two registry addresses (two instances on one database): the connections
 * alternate between them. A `busy` reply to a register sends the same key again.
 * Registry: pre-loads -nodes registrations (real Ed25519 keys), then for every
 * client count measures lookups/s (random pre-loaded IDs) and registrations/s
 * (keys never registered before) with that many concurrent connections, each a
 * closed loop with one request in flight, -runs times for -duration seconds; the
 * median run is reported. RSS per stored node = (VmRSS of -pid after the pre-load
 * − VmRSS before) / nodes. Beacon: two nodes registered over TCP from 127.0.0.1
 * prove their IDs with a Discover from 127.0.0.1 (BEACON.md (a)); one blasts
 * Relay messages of -payload bytes at the other for -beacon-duration seconds and
 * the receiver counts RelayDelivers.
 *
 * -latency: instead of all that, for SECONDS one client registers a new key every
 * 10 ms and another looks a node up every 5 ms (each on its own connection,
 * blocking, on a fixed schedule); prints p50/p99/max of each (issue 21's probe,
 * run by scripts/bench with and without four direct-I/O writers on the disk).
 *
 * One thread drives every connection with epoll (the rendezvous is
 * single-threaded, so one client core is enough on a 2-core machine). Prints one
 * JSON object on stdout; progress goes to stderr. Loopback benchmarking tool,
 * not a test: it asserts nothing beyond "the server answered". */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "lib/proto.h"

#define MAX_CLIENTS 1024
#define MAX_RUNS 9
#define IN_CAP 16384

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "rdvbench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)atoi(colon + 1));
	return inet_pton(AF_INET, host[0] ? host : "127.0.0.1", &sa->sin_addr) == 1 ? 0 : -1;
}

/* ---- keys ----------------------------------------------------------------------- */

struct keys {
	char (*b64)[48]; /* base64 of the public key */
	uint8_t (*sk)[64];
	size_t n, next;
};

struct keygen_job {
	struct keys *k;
	size_t from, to;
	int keep_sk;
};

static void *keygen(void *arg)
{
	struct keygen_job *j = arg;
	uint8_t pk[32], sk[64];

	for (size_t i = j->from; i < j->to; i++) {
		crypto_sign_keypair(pk, sk);
		sodium_bin2base64(j->k->b64[i], sizeof(j->k->b64[i]), pk, 32,
				  sodium_base64_VARIANT_ORIGINAL);
		if (j->keep_sk)
			memcpy(j->k->sk[i], sk, 64);
	}
	return NULL;
}

/* Two threads: the rendezvous is idle while keys are made. */
static void keys_make(struct keys *k, size_t n, int keep_sk)
{
	pthread_t t;
	struct keygen_job a = { k, 0, n / 2, keep_sk }, b = { k, n / 2, n, keep_sk };

	k->b64 = calloc(n ? n : 1, sizeof(*k->b64));
	k->sk = keep_sk ? calloc(n ? n : 1, sizeof(*k->sk)) : NULL;
	if (!k->b64 || (keep_sk && !k->sk))
		die("calloc");
	k->n = n;
	k->next = 0;
	if (pthread_create(&t, NULL, keygen, &a) != 0)
		die("pthread_create");
	keygen(&b);
	pthread_join(t, NULL);
}

/* ---- registry connections ---------------------------------------------------------- */

enum mode { M_REGISTER, M_LOOKUP };

struct conn {
	int fd;
	int busy;            /* a request is in flight */
	int again;           /* M_REGISTER: the registry said busy: send the same key again */
	size_t key;          /* M_REGISTER: key index of the request in flight */
	size_t ilen;
	uint8_t in[IN_CAP];
};

struct bench {
	struct sockaddr_in reg, reg2; /* -registry a[,b]: connections alternate */
	int nreg;
	uint64_t busy_replies;
	int ep;
	struct conn *c;
	int nc;
	enum mode mode;
	struct keys *keys;
	uint32_t *ids;       /* registered node IDs (pre-load) */
	size_t nids, ids_cap;
	uint64_t done, errors, sent;
	int stopping;
	uint32_t rng;
};

static uint32_t xorshift(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

static int tcp_connect(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		die("socket");
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0)
		die("connect to the registry");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void conns_open(struct bench *b, int n)
{
	b->c = calloc((size_t)n, sizeof(*b->c));
	if (!b->c)
		die("calloc");
	b->nc = n;
	for (int i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };

		b->c[i].fd = tcp_connect(b->nreg > 1 && (i & 1) ? &b->reg2 : &b->reg);
		fcntl(b->c[i].fd, F_SETFL, O_NONBLOCK);
		if (epoll_ctl(b->ep, EPOLL_CTL_ADD, b->c[i].fd, &ev) < 0)
			die("epoll_ctl");
	}
}

static void conns_close(struct bench *b)
{
	for (int i = 0; i < b->nc; i++)
		close(b->c[i].fd);
	free(b->c);
	b->c = NULL;
	b->nc = 0;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct timespec ts = { 0, 100000 };

			nanosleep(&ts, NULL); /* requests are ~100 bytes: never in practice */
			continue;
		}
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Frame one JSON body (4-byte big-endian length) and send it. */
static void send_json(struct bench *b, struct conn *c, const char *body, int len)
{
	char buf[512];

	proto_put32((uint8_t *)buf, (uint32_t)len);
	memcpy(buf + 4, body, (size_t)len);
	if (write_all(c->fd, buf, (size_t)len + 4) < 0)
		die("write to the registry");
	c->busy = 1;
	b->sent++;
}

static int issue(struct bench *b, struct conn *c)
{
	char body[256];
	int len;

	if (b->mode == M_REGISTER) {
		if (c->again)
			c->again = 0;
		else if (b->keys->next >= b->keys->n)
			return -1; /* key pool used up: this connection stops */
		else
			c->key = b->keys->next++;
		len = snprintf(body, sizeof(body),
			       "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"127.0.0.1:4000\"}",
			       b->keys->b64[c->key]);
	} else {
		uint32_t id = b->ids[xorshift(&b->rng) % b->nids];

		len = snprintf(body, sizeof(body), "{\"type\":\"lookup\",\"node_id\":%u}", id);
	}
	send_json(b, c, body, len);
	return 0;
}

static void on_response(struct bench *b, struct conn *c, const char *json, size_t len)
{
	const char *want = b->mode == M_REGISTER ? "\"register_ok\"" : "\"lookup_ok\"";

	c->busy = 0;
	if (b->mode == M_REGISTER && memmem(json, len, "\"busy\"", 6)) {
		c->again = 1; /* nothing changed: the same key once more */
		b->busy_replies++;
		return;
	}
	if (!memmem(json, len, want, strlen(want))) {
		b->errors++;
		if (b->errors <= 3)
			fprintf(stderr, "rdvbench: error reply: %.*s\n", (int)(len > 300 ? 300 : len), json);
		return;
	}
	b->done++;
	if (b->mode == M_REGISTER && b->ids) {
		const char *p = memmem(json, len, "\"node_id\":", 10);

		if (p && b->nids < b->ids_cap)
			b->ids[b->nids++] = (uint32_t)strtoul(p + 10, NULL, 10);
	}
}

static void on_readable(struct bench *b, struct conn *c)
{
	for (;;) {
		ssize_t n = read(c->fd, c->in + c->ilen, IN_CAP - c->ilen);
		size_t off = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			fprintf(stderr, "rdvbench: the registry closed a connection\n");
			exit(1);
		}
		c->ilen += (size_t)n;
		while (c->ilen - off >= 4) {
			uint32_t fl = proto_get32(c->in + off);

			if (fl > IN_CAP - 4) {
				fprintf(stderr, "rdvbench: reply of %u bytes too large\n", fl);
				exit(1);
			}
			if (c->ilen - off < 4 + (size_t)fl)
				break;
			on_response(b, c, (const char *)c->in + off + 4, fl);
			off += 4 + fl;
			if (!b->stopping)
				issue(b, c);
		}
		memmove(c->in, c->in + off, c->ilen - off);
		c->ilen -= off;
	}
}

static int inflight(const struct bench *b)
{
	int n = 0;

	for (int i = 0; i < b->nc; i++)
		n += b->c[i].busy;
	return n;
}

/* Run for dur seconds (or until the key pool is used up); completions per second. */
static double run(struct bench *b, double dur)
{
	struct epoll_event ev[256];
	double t0, t1, end;
	uint64_t done0;

	b->stopping = 0;
	done0 = b->done;
	t0 = now_s();
	end = t0 + dur;
	for (int i = 0; i < b->nc; i++)
		issue(b, &b->c[i]);
	for (;;) {
		int n;

		t1 = now_s();
		if (t1 >= end || inflight(b) == 0)
			break;
		n = epoll_wait(b->ep, ev, 256, (int)((end - t1) * 1000) + 1);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int i = 0; i < n; i++)
			on_readable(b, &b->c[ev[i].data.u32]);
	}
	t1 = now_s();
	{
		uint64_t got = b->done - done0;
		double drain_end = now_s() + 10;

		/* Let the requests in flight finish (not counted) so the next run
		 * starts from idle connections. */
		b->stopping = 1;
		while (inflight(b) && now_s() < drain_end) {
			int n = epoll_wait(b->ep, ev, 256, 100);

			for (int i = 0; i < n; i++)
				on_readable(b, &b->c[ev[i].data.u32]);
		}
		return (double)got / (t1 - t0);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double s[MAX_RUNS];

	memcpy(s, v, (size_t)n * sizeof(*v));
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static long rss_kb(int pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* ---- one blocking request (beacon set-up) ------------------------------------------ */

static void call(int fd, const char *body, char *reply, size_t cap)
{
	uint8_t hdr[4];
	uint32_t n;
	size_t got = 0;

	proto_put32(hdr, (uint32_t)strlen(body));
	if (write_all(fd, (const char *)hdr, 4) < 0 || write_all(fd, body, strlen(body)) < 0)
		die("write");
	while (got < 4) {
		ssize_t r = read(fd, hdr + got, 4 - got);

		if (r <= 0)
			die("read");
		got += (size_t)r;
	}
	n = proto_get32(hdr);
	if (n >= cap)
		die("reply too large");
	for (got = 0; got < n;) {
		ssize_t r = read(fd, reply + got, n - got);

		if (r <= 0)
			die("read");
		got += (size_t)r;
	}
	reply[n] = '\0';
}

/* Register key i over fd and make the node public (v2 signature): relay between
 * public nodes passes the beacon's "may talk" rule. */
static uint32_t beacon_node(int fd, struct keys *k, size_t i)
{
	char body[512], reply[4096], msg[128], sig64[128];
	uint8_t sig[64];
	const char *p;
	uint32_t id;
	long ts = (long)time(NULL);

	snprintf(body, sizeof(body),
		 "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"127.0.0.1:4000\"}", k->b64[i]);
	call(fd, body, reply, sizeof(reply));
	if (!strstr(reply, "register_ok") || !(p = strstr(reply, "\"node_id\":"))) {
		fprintf(stderr, "rdvbench: register failed: %s\n", reply);
		exit(1);
	}
	id = (uint32_t)strtoul(p + 10, NULL, 10);
	snprintf(msg, sizeof(msg), "pilot2:set_visibility:%ld:%u:true", ts, id);
	crypto_sign_detached(sig, NULL, (const uint8_t *)msg, strlen(msg), k->sk[i]);
	sodium_bin2base64(sig64, sizeof(sig64), sig, 64, sodium_base64_VARIANT_ORIGINAL);
	snprintf(body, sizeof(body),
		 "{\"type\":\"set_visibility\",\"node_id\":%u,\"public\":true,\"sig_ts\":%ld,\"signature\":\"%s\"}",
		 id, ts, sig64);
	call(fd, body, reply, sizeof(reply));
	if (!strstr(reply, "set_visibility_ok")) {
		fprintf(stderr, "rdvbench: set_visibility failed: %s\n", reply);
		exit(1);
	}
	return id;
}

static int udp_socket(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), sz = 8 << 20;

	if (fd < 0)
		die("socket");
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	return fd;
}

/* Discover from fd until a DiscoverReply comes back (the node is then verified). */
static void discover(int fd, const struct sockaddr_in *bcn, uint32_t id)
{
	uint8_t m[8], r[256];

	for (int tries = 0; tries < 50; tries++) {
		double until = now_s() + 0.1;

		proto_beacon_discover(id, NULL, m, sizeof(m));
		sendto(fd, m, 5, 0, (const struct sockaddr *)bcn, sizeof(*bcn));
		while (now_s() < until) {
			ssize_t n = recv(fd, r, sizeof(r), 0);

			if (n > 0 && r[0] == BEACON_DISCOVER_REPLY)
				return;
			if (n < 0) {
				struct timespec ts = { 0, 1000000 };

				nanosleep(&ts, NULL);
			}
		}
	}
	fprintf(stderr, "rdvbench: no DiscoverReply from the beacon\n");
	exit(1);
}

#define BURST 32

static uint64_t drain(int fd, uint8_t (*buf)[2048], struct mmsghdr *mm, struct iovec *iov)
{
	uint64_t got = 0;
	int n;

	do {
		for (int i = 0; i < 64; i++) {
			iov[i] = (struct iovec){ buf[i], 2048 };
			mm[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
		}
		n = recvmmsg(fd, mm, 64, MSG_DONTWAIT, NULL);
		for (int i = 0; i < n; i++)
			got += mm[i].msg_len > 0 && buf[i][0] == BEACON_RELAY_DELIVER;
	} while (n == 64);
	return got;
}

static void bench_beacon(const struct sockaddr_in *reg, const struct sockaddr_in *bcn, double dur,
			 size_t payload, FILE *out)
{
	struct keys k;
	int tfd = tcp_connect(reg), s_fd = udp_socket(), d_fd = udp_socket();
	uint32_t s_id, d_id;
	static uint8_t pkt[2048], rbuf[64][2048];
	struct mmsghdr smm[BURST], rmm[64];
	struct iovec siov[BURST], riov[64];
	uint64_t sent = 0, got = 0;
	double t0, t1;

	if (payload < BEACON_RELAY_HDR + PROTO_PILS_OVERHEAD || payload > sizeof(pkt)) {
		fprintf(stderr, "rdvbench: -payload out of range\n");
		exit(2);
	}
	keys_make(&k, 2, 1);
	s_id = beacon_node(tfd, &k, 0);
	d_id = beacon_node(tfd, &k, 1);
	if (connect(s_fd, (const struct sockaddr *)bcn, sizeof(*bcn)) < 0)
		die("connect udp");
	discover(s_fd, bcn, s_id);
	discover(d_fd, bcn, d_id);
	/* Relay(S → D) carrying a PILS-shaped frame (magic + sender + nonce + body + tag). */
	proto_beacon_relay_hdr(s_id, d_id, pkt);
	proto_put32(pkt + BEACON_RELAY_HDR, PROTO_MAGIC_PILS);
	proto_put32(pkt + BEACON_RELAY_HDR + 4, s_id);
	randombytes_buf(pkt + BEACON_RELAY_HDR + 8, payload - BEACON_RELAY_HDR - 8);
	for (int i = 0; i < BURST; i++) {
		siov[i] = (struct iovec){ pkt, payload };
		smm[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &siov[i], .msg_iovlen = 1 } };
	}
	fprintf(stderr, "rdvbench: beacon relay %zu-byte messages for %.0f s\n", payload, dur);
	t0 = now_s();
	while ((t1 = now_s()) < t0 + dur) {
		int n = sendmmsg(s_fd, smm, BURST, MSG_DONTWAIT);

		if (n > 0)
			sent += (uint64_t)n;
		got += drain(d_fd, rbuf, rmm, riov);
		/* Keep at most a few bursts in flight: a blast far beyond what the
		 * beacon can relay only measures drops in the socket buffers. */
		while (sent - got > 8 * BURST && now_s() < t0 + dur) {
			uint64_t g = drain(d_fd, rbuf, rmm, riov);

			got += g;
			if (!g) {
				struct timespec ts = { 0, 20000 };

				nanosleep(&ts, NULL);
				if (now_s() - t1 > 0.05)
					break; /* lost in flight: stop waiting */
			}
		}
	}
	t1 = now_s();
	{
		double end = t1 + 0.2;

		while (now_s() < end)
			got += drain(d_fd, rbuf, rmm, riov);
	}
	fprintf(out, "\"beacon\":{\"payload_bytes\":%zu,\"duration_s\":%.2f,\"sent\":%llu,\"delivered\":%llu,"
		     "\"pps\":%.0f,\"mbit_s\":%.1f,\"loss_pct\":%.2f}",
		payload, t1 - t0, (unsigned long long)sent, (unsigned long long)got,
		(double)got / (t1 - t0), (double)got * (double)payload * 8 / (t1 - t0) / 1e6,
		sent ? 100.0 * (double)(sent - (got > sent ? sent : got)) / (double)sent : 0.0);
	close(tfd);
	close(s_fd);
	close(d_fd);
	free(k.b64);
	free(k.sk);
}

/* ---- -latency: a writer every 10 ms and a reader every 5 ms ------------------------ */

struct probe {
	const struct sockaddr_in *reg;
	double dur;
	int write;          /* 1: register fresh keys; 0: lookups of node */
	uint32_t node;
	double *lat;        /* seconds */
	size_t n, cap;
	unsigned errors;
};

static void *probe_main(void *arg)
{
	struct probe *p = arg;
	int fd = tcp_connect(p->reg);
	double period = p->write ? 0.010 : 0.005, t0 = now_s(), next = t0;
	char body[256], reply[8192];

	while (next < t0 + p->dur && p->n < p->cap) {
		double t, wait = next - now_s();

		if (wait > 0) {
			struct timespec ts = { (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) };

			nanosleep(&ts, NULL);
		}
		if (p->write) {
			uint8_t pk[32], sk[64];
			char b64[48];

			crypto_sign_keypair(pk, sk);
			sodium_bin2base64(b64, sizeof(b64), pk, 32, sodium_base64_VARIANT_ORIGINAL);
			snprintf(body, sizeof(body),
				 "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"127.0.0.1:4000\"}", b64);
		} else {
			snprintf(body, sizeof(body), "{\"type\":\"lookup\",\"node_id\":%u}", p->node);
		}
		t = now_s();
		call(fd, body, reply, sizeof(reply));
		p->lat[p->n++] = now_s() - t;
		if (!strstr(reply, p->write ? "\"register_ok\"" : "\"lookup_ok\""))
			p->errors++;
		next += period;
		if (next < now_s() - period) /* fell behind (a stall): no burst to catch up */
			next = now_s();
	}
	close(fd);
	return NULL;
}

static void probe_print(FILE *out, const char *name, struct probe *p)
{
	qsort(p->lat, p->n, sizeof(*p->lat), cmp_double);
	fprintf(out, "\"%s\":{\"n\":%zu,\"errors\":%u,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f}",
		name, p->n, p->errors, p->n ? p->lat[p->n / 2] * 1e3 : -1.0,
		p->n ? p->lat[(size_t)((double)p->n * 0.99)] * 1e3 : -1.0, p->n ? p->lat[p->n - 1] * 1e3 : -1.0);
}

static void bench_latency(const struct sockaddr_in *reg, double dur, FILE *out)
{
	struct probe w = { reg, dur, 1, 0, NULL, 0, 0, 0 }, r = { reg, dur, 0, 0, NULL, 0, 0, 0 };
	pthread_t tw;
	uint8_t pk[32], sk[64];
	char b64[48], body[256], reply[8192];
	const char *p;
	int fd = tcp_connect(reg);

	/* the node the reader looks up */
	crypto_sign_keypair(pk, sk);
	sodium_bin2base64(b64, sizeof(b64), pk, 32, sodium_base64_VARIANT_ORIGINAL);
	snprintf(body, sizeof(body), "{\"type\":\"register\",\"public_key\":\"%s\",\"listen_addr\":\"127.0.0.1:4000\"}", b64);
	call(fd, body, reply, sizeof(reply));
	close(fd);
	if (!(p = strstr(reply, "\"node_id\":")))
		die("latency probe: register failed");
	r.node = (uint32_t)strtoul(p + 10, NULL, 10);
	w.cap = (size_t)(dur / 0.010) + 2;
	r.cap = (size_t)(dur / 0.005) + 2;
	w.lat = calloc(w.cap, sizeof(double));
	r.lat = calloc(r.cap, sizeof(double));
	if (!w.lat || !r.lat)
		die("calloc");
	if (pthread_create(&tw, NULL, probe_main, &w) != 0)
		die("pthread_create");
	probe_main(&r);
	pthread_join(tw, NULL);
	fprintf(out, "\"latency\":{\"duration_s\":%g,", dur);
	probe_print(out, "register", &w);
	fprintf(out, ",");
	probe_print(out, "lookup", &r);
	fprintf(out, "}");
	free(w.lat);
	free(r.lat);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: rdvbench -registry host:port[,host:port] [-beacon host:port] [-pid PID] [-nodes N]\n"
		"       [-clients 1,16,256] [-duration S] [-runs N] [-beacon-duration S]\n"
		"       [-payload BYTES] [-reg-keys N] [-no-registry-bench]\n"
		"       rdvbench -registry host:port -latency SECONDS\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *reg_s = NULL, *bcn_s = NULL, *clients_s = "1,16,256";
	int pid = 0, runs = 3, nclients = 0, clients[16], skip_reg = 0;
	size_t nodes = 100000, payload = 1200, reg_keys = 0;
	double dur = 5, bdur = 5, lat_s = 0;
	struct bench b = { .rng = 2463534242u };
	struct sockaddr_in bcn;
	FILE *out = stdout;

	for (int i = 1; i < argc; i++) {
		const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(f, "-no-registry-bench")) {
			skip_reg = 1;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(f, "-registry"))
			reg_s = v;
		else if (!strcmp(f, "-beacon"))
			bcn_s = v;
		else if (!strcmp(f, "-pid"))
			pid = atoi(v);
		else if (!strcmp(f, "-nodes"))
			nodes = strtoul(v, NULL, 10);
		else if (!strcmp(f, "-clients"))
			clients_s = v;
		else if (!strcmp(f, "-duration"))
			dur = atof(v);
		else if (!strcmp(f, "-beacon-duration"))
			bdur = atof(v);
		else if (!strcmp(f, "-runs"))
			runs = atoi(v);
		else if (!strcmp(f, "-payload"))
			payload = strtoul(v, NULL, 10);
		else if (!strcmp(f, "-reg-keys"))
			reg_keys = strtoul(v, NULL, 10);
		else if (!strcmp(f, "-latency"))
			lat_s = atof(v);
		else
			usage();
	}
	if (reg_s && strchr(reg_s, ',')) {
		static char first[128];

		snprintf(first, sizeof(first), "%.*s", (int)(strchr(reg_s, ',') - reg_s), reg_s);
		if (parse_addr(strchr(reg_s, ',') + 1, &b.reg2) < 0)
			usage();
		reg_s = first;
		b.nreg = 2;
	}
	if (!reg_s || parse_addr(reg_s, &b.reg) < 0 || (bcn_s && parse_addr(bcn_s, &bcn) < 0)
	    || runs < 1 || runs > MAX_RUNS || dur <= 0 || nodes < 1)
		usage();
	for (const char *p = clients_s; *p && nclients < 16;) {
		clients[nclients] = atoi(p);
		if (clients[nclients] < 1 || clients[nclients] > MAX_CLIENTS)
			usage();
		nclients++;
		p = strchr(p, ',');
		if (!p)
			break;
		p++;
	}
	if (sodium_init() < 0)
		die("sodium_init");

	if (lat_s > 0) {
		fprintf(out, "{");
		bench_latency(&b.reg, lat_s, out);
		fprintf(out, "}\n");
		return 0;
	}
	fprintf(out, "{");
	if (!skip_reg) {
		struct keys pre, fresh;
		long rss0, rss1;
		double t0, tl;

		/* Fresh keys for the registration runs: enough for ~15k registrations/s
		 * over every run unless -reg-keys says otherwise; a run that uses up its
		 * share stops early and its rate is taken over the time it ran. */
		if (!reg_keys)
			reg_keys = (size_t)(15000 * dur) * (size_t)runs * (size_t)nclients;
		fprintf(stderr, "rdvbench: generating %zu + %zu Ed25519 keys\n", nodes, reg_keys);
		t0 = now_s();
		keys_make(&pre, nodes, 0);
		keys_make(&fresh, reg_keys, 0);
		fprintf(stderr, "rdvbench: keys in %.1f s\n", now_s() - t0);

		b.ep = epoll_create1(EPOLL_CLOEXEC);
		if (b.ep < 0)
			die("epoll_create1");
		rss0 = rss_kb(pid);
		b.ids = calloc(nodes, sizeof(*b.ids));
		if (!b.ids)
			die("calloc");
		b.ids_cap = nodes;
		b.mode = M_REGISTER;
		b.keys = &pre;
		conns_open(&b, 32);
		t0 = now_s();
		run(&b, 1e9);
		tl = now_s() - t0;
		conns_close(&b);
		rss1 = rss_kb(pid);
		fprintf(stderr, "rdvbench: pre-loaded %zu nodes in %.1f s (%.0f/s), %llu errors\n",
			b.nids, tl, (double)b.nids / tl, (unsigned long long)b.errors);
		if (b.nids != nodes) {
			fprintf(stderr, "rdvbench: pre-load incomplete\n");
			return 1;
		}
		fprintf(out, "\"nodes\":%zu,\"preload_s\":%.2f,\"preload_per_s\":%.0f,\"rss_start_kb\":%ld,"
			     "\"rss_loaded_kb\":%ld,\"rss_per_node_bytes\":%.0f,\"duration_s\":%g,\"runs\":%d,"
			     "\"registry\":[",
			nodes, tl, (double)nodes / tl, rss0, rss1,
			rss0 > 0 && rss1 > 0 ? (double)(rss1 - rss0) * 1024 / (double)nodes : -1.0,
			dur, runs);
		b.ids_cap = 0; /* stop recording IDs */
		fresh.n = 0;   /* shares handed out per run below */
		/* Lookups first: pre-loaded nodes are reaped after 3 minutes of silence. */
		for (int ci = 0; ci < nclients; ci++) {
			double lk[MAX_RUNS], rg[MAX_RUNS];
			size_t share = reg_keys / (size_t)(runs * nclients);
			uint64_t errs0 = b.errors;

			conns_open(&b, clients[ci]);
			b.mode = M_LOOKUP;
			for (int r = 0; r < runs; r++) {
				lk[r] = run(&b, dur);
				fprintf(stderr, "rdvbench: %d clients lookups run %d: %.0f/s\n", clients[ci], r + 1, lk[r]);
			}
			b.mode = M_REGISTER;
			b.keys = &fresh;
			for (int r = 0; r < runs; r++) {
				fresh.n += share;
				rg[r] = run(&b, dur);
				fprintf(stderr, "rdvbench: %d clients registrations run %d: %.0f/s%s\n", clients[ci],
					r + 1, rg[r], fresh.next >= fresh.n ? " (key share used up early)" : "");
				fresh.next = fresh.n;
			}
			conns_close(&b);
			fprintf(out, "%s{\"clients\":%d,\"lookups_per_s\":%.0f,\"registrations_per_s\":%.0f,"
				     "\"errors\":%llu,\"lookup_runs\":[",
				ci ? "," : "", clients[ci], median(lk, runs), median(rg, runs),
				(unsigned long long)(b.errors - errs0));
			for (int r = 0; r < runs; r++)
				fprintf(out, "%s%.0f", r ? "," : "", lk[r]);
			fprintf(out, "],\"registration_runs\":[");
			for (int r = 0; r < runs; r++)
				fprintf(out, "%s%.0f", r ? "," : "", rg[r]);
			fprintf(out, "]}");
		}
		fprintf(out, "],\"rss_end_kb\":%ld,\"busy_replies\":%llu", rss_kb(pid),
			(unsigned long long)b.busy_replies);
		close(b.ep);
		free(b.ids);
		free(pre.b64);
		free(fresh.b64);
	}
	if (bcn_s) {
		if (!skip_reg)
			fprintf(out, ",");
		bench_beacon(&b.reg, &bcn, bdur, payload, out);
	}
	fprintf(out, "}\n");
	return 0;
}
