/* pilot-nameserver: the overlay's name service on Pilot port 53
 * (services.md §2; pilot-nameserver(8)).
 *
 * It is an ordinary TCP server on its node's TUN addresses, port 53: pilotd's
 * TUN bridge turns an inbound Pilot stream to port 53 into a kernel TCP
 * connection from the peer's mapped IP (DESIGN.md §3), so no driver is needed.
 * The caller of a request is the authenticated Pilot source of that stream:
 * the peer's ULA encodes its address, and a mapped IPv4 is looked up in the
 * node's address map through pilotd's control socket (the map is the bridge's,
 * which assigned the IP to the authenticated node). Connections from the node
 * itself (its TUN address or loopback) act as the node.
 *
 * With -attach (nodes without a TUN: -tun=off or userspace) pilotd binds Pilot
 * port 53 itself and hands each stream over the control socket (serve and
 * serve-send, daemon/ctlsrv_serve.c); the caller is the stream's source node as
 * pilotd reports it.
 *
 * One single-threaded loop; a request is answered synchronously (a registry
 * bootstrap or membership check waits at most -ctl-timeout). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib/crypto.h"
#include "lib/hostport.h"
#include "lib/jsonwire.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/opts.h"
#include "lib/sdnotify.h"
#include "lib/sockpath.h"
#include "nameserver/ns.h"
#include "nameserver/ns_ctl.h"

#define PROG       "pilot-nameserver"
#define MAX_LISTEN 8
#define MAX_MAPS   65536
#define MAPS_PER_S 20

struct options {
	char *config, *socket, *listen, *store, *log_level, *log_format;
	int64_t ttl, reap_interval, ctl_timeout, wait;
	long max_records, max_clients;
	int attach;
};

#define NOPTS            14
#define ATTACH_MAX_CONNS 4096 /* pilotd's serve limit */

typedef struct ipmap {
	uint32_t ip; /* host order */
	uint32_t node;
} ipmap;

/* A stream accepted through pilotd's serve (attach mode) waiting for its request. */
typedef struct pending {
	uint32_t id, caller;
} pending;

typedef struct app {
	struct options o;
	char sock[4096];
	pilot_loop *loop;
	ns_store *st;
	int lfd[MAX_LISTEN], nl;
	long clients;
	uint32_t own_node, own4, mask4; /* mask4: the TUN subnet's netmask */
	uint64_t maps_window_ms;        /* map refreshes: at most MAPS_PER_S per second */
	int maps_in_window;
	ipmap *maps;
	size_t nmaps;
	uint64_t requests, refused;
	/* attach mode: the serve request's connection and what it has sent so far */
	int afd;
	uint8_t *ain;
	size_t ainlen, aincap;
	pending *pend;
	size_t npend;
	long clients_max; /* attach mode: streams waiting for their request at most */
	uint64_t retry_timer;
} app;

typedef struct client {
	app *a;
	int fd;
	uint32_t caller;
	uint64_t timer;
} client;

static void build_opts(pilot_opt *t, struct options *o)
{
	pilot_opt opts[NOPTS + 1] = {
		{ "config", PILOT_OPT_STRING, &o->config, NULL, "JSON file with these options", "file", 0, 0,
		  0 },
		{ "socket", PILOT_OPT_STRING, &o->socket, NULL,
		  "pilotd's control socket (default: pilotd's default path)", "path", 0, 0, 0 },
		{ "listen", PILOT_OPT_STRING, &o->listen, NULL,
		  "comma-separated host:port to listen on (default: the node's TUN addresses, port 53)",
		  "addrs", 0, 0, 0 },
		{ "attach", PILOT_OPT_BOOL, &o->attach, "false",
		  "serve port 53 through pilotd's control socket (no TUN needed: -tun=off or userspace)",
		  NULL, 0, 0, 0 },
		{ "store", PILOT_OPT_STRING, &o->store, NULL,
		  "JSON file keeping the records across restarts (the reference's -store format; empty = "
		  "memory only)",
		  "file", 0, 0, 0 },
		{ "ttl", PILOT_OPT_DURATION, &o->ttl, "5m", "lifetime of a record after its registration",
		  "duration", 0, 0, 0 },
		{ "reap-interval", PILOT_OPT_DURATION, &o->reap_interval, "60s",
		  "how often expired records are removed", "duration", 0, 0, 0 },
		{ "max-records", PILOT_OPT_INT, &o->max_records, "65536", "records held at most (A + N + S)",
		  "n", 1, 1000000, 0 },
		{ "max-clients", PILOT_OPT_INT, &o->max_clients, "256", "connections served at once", "n", 1,
		  65536, 0 },
		{ "ctl-timeout", PILOT_OPT_DURATION, &o->ctl_timeout, "3s",
		  "longest wait for pilotd (address map, membership, registry bootstrap)", "duration", 0, 0,
		  0 },
		{ "wait", PILOT_OPT_DURATION, &o->wait, "60s",
		  "how long to wait at start-up for pilotd to be registered with a TUN", "duration", 0, 0,
		  0 },
		{ "log-level", PILOT_OPT_STRING, &o->log_level, "info", "debug, info, warn or error", "level",
		  0, 0, 0 },
		{ "log-format", PILOT_OPT_STRING, &o->log_format, "text", "text or json", "format", 0, 0, 0 },
		{ NULL, 0, NULL, NULL, NULL, NULL, 0, 0, 0 },
	};

	memcpy(t, opts, sizeof(opts));
}

/* ---- who is calling ---- */
static int refresh_maps(app *a)
{
	json_object *d = NULL, *arr;
	size_t i, n;

	if (ns_ctl_call(a->sock, "maps", NULL, (int)a->o.ctl_timeout, &d) < 0)
		return -EIO;
	if (!json_object_object_get_ex(d, "mappings", &arr) || !json_object_is_type(arr, json_type_array)) {
		json_object_put(d);
		return -EPROTO;
	}
	n = json_object_array_length(arr);
	free(a->maps);
	a->nmaps = 0;
	a->maps = calloc(n ? n : 1, sizeof(ipmap));
	for (i = 0; a->maps && i < n && i < MAX_MAPS; i++) {
		json_object *m = json_object_array_get_idx(arr, i);
		const char *ip = jw_get_str(m, "local_ip");
		struct in_addr in;

		if (!ip || inet_pton(AF_INET, ip, &in) != 1)
			continue;
		a->maps[a->nmaps].ip = ntohl(in.s_addr);
		a->maps[a->nmaps++].node = jw_get_u32(m, "node_id");
	}
	json_object_put(d);
	return 0;
}

static uint32_t map_lookup(const app *a, uint32_t ip)
{
	size_t i;

	for (i = 0; i < a->nmaps; i++)
		if (a->maps[i].ip == ip)
			return a->maps[i].node;
	return 0;
}

static const uint8_t ula_prefix[6] = { 0xfd, 0x50, 0x49, 0x4c, 0x4f, 0x54 };

static uint32_t caller_v6(const app *a, const struct in6_addr *in)
{
	const uint8_t *b = in->s6_addr;

	if (IN6_IS_ADDR_LOOPBACK(in))
		return a->own_node;
	if (memcmp(b, ula_prefix, 6) || b[8] || b[9] || b[10] || b[11])
		return 0;
	return (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
}

static uint32_t caller_of(app *a, const struct sockaddr_storage *ss)
{
	uint32_t ip, node;

	if (ss->ss_family == AF_INET6)
		return caller_v6(a, &((const struct sockaddr_in6 *)ss)->sin6_addr);
	if (ss->ss_family != AF_INET)
		return 0;
	ip = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
	if (ip == a->own4 || ip >> 24 == 127)
		return a->own_node;
	if ((node = map_lookup(a, ip)))
		return node;
	/* Mapped just now (the bridge maps a peer before its SYN): ask again, but
	 * only for the TUN subnet and at most MAPS_PER_S times a second (a flood of
	 * foreign sources must not turn into a flood of control requests). */
	if (!a->mask4 || (ip & a->mask4) != (a->own4 & a->mask4))
		return 0;
	if (pilot_now_ms() >= a->maps_window_ms + 1000) {
		a->maps_window_ms = pilot_now_ms();
		a->maps_in_window = 0;
	}
	if (a->maps_in_window++ >= MAPS_PER_S || refresh_maps(a) < 0)
		return 0;
	return map_lookup(a, ip);
}

/* ---- callbacks of the request handler ---- */
static int is_member(void *arg, uint32_t node, uint16_t net)
{
	app *a = arg;
	json_object *args, *d = NULL, *nets;
	size_t i;
	int yes = 0;

	if (net == 0)
		return 1; /* every registered node is in the backbone */
	args = json_object_new_object();
	jw_set_int(args, "node_id", node);
	if (ns_ctl_call(a->sock, "lookup", args, (int)a->o.ctl_timeout, &d) < 0)
		return -1;
	if (!json_object_object_get_ex(d, "networks", &nets) || !json_object_is_type(nets, json_type_array)) {
		json_object_put(d);
		return -1;
	}
	for (i = 0; i < json_object_array_length(nets); i++)
		if (json_object_get_int64(json_object_array_get_idx(nets, i)) == net)
			yes = 1;
	json_object_put(d);
	return yes;
}

static int bootstrap(void *arg, const char *name, pilot_addr *out)
{
	app *a = arg;
	json_object *args = json_object_new_object(), *d = NULL;
	uint32_t id;

	jw_set_str(args, "hostname", name);
	if (ns_ctl_call(a->sock, "find", args, (int)a->o.ctl_timeout, &d) < 0)
		return -ENOENT;
	id = jw_get_u32(d, "node_id");
	json_object_put(d);
	if (!id)
		return -ENOENT;
	*out = pilot_addr_make(0, id);
	log_info("bootstrapped name=%s node=%u from the registry", name, id);
	return 0;
}

/* ---- connections ---- */
static void client_close(client *c)
{
	pilot_loop_del_fd(c->a->loop, c->fd);
	pilot_loop_del_timer(c->a->loop, c->timer);
	close(c->fd);
	c->a->clients--;
	free(c);
}

static int64_t client_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	client *c = arg;

	c->timer = 0;
	client_close(c);
	return 0;
}

/* One request from caller: the reply text in rep (NS_MSG_MAX + 1), its length. */
static size_t answer(app *a, uint32_t caller, const char *req, size_t len, char *rep)
{
	ns_ctx ctx = { .st = a->st,
		       .now_ms = pilot_now_ms(),
		       .caller = caller,
		       .is_member = is_member,
		       .bootstrap = bootstrap,
		       .arg = a };
	size_t n;

	ns_store_reap(a->st, ctx.now_ms);
	n = ns_handle(&ctx, req, len, rep, NS_MSG_MAX + 1);
	a->requests++;
	if (!strncmp(rep, "ERR", 3))
		a->refused++;
	log_debug("request from node %u: %.*s -> %.*s", caller, (int)(len > 80 ? 80 : len), req,
		  (int)(n > 80 ? 80 : n), rep);
	return n;
}

/* One read, one reply, close (services.md §2.1). The reply is written with a
 * bounded blocking send: it is at most 64 KiB. */
static void client_read(pilot_loop *l, int fd, int events, void *arg)
{
	static char req[NS_MSG_MAX + 1], rep[NS_MSG_MAX + 1];
	client *c = arg;
	struct timeval tv = { .tv_sec = 2 };
	ssize_t r = read(fd, req, NS_MSG_MAX);
	size_t n;

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r > 0) {
		n = answer(c->a, c->caller, req, (size_t)r, rep);
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (send(fd, rep, n, MSG_NOSIGNAL) < 0)
			log_debug("reply to node %u: %s", c->caller, strerror(errno));
	}
	client_close(c);
}

static void on_accept(pilot_loop *l, int lfd, int events, void *arg)
{
	app *a = arg;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	client *c;
	int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (a->clients >= a->o.max_clients || !(c = calloc(1, sizeof(*c)))) {
		close(fd);
		return;
	}
	c->a = a;
	c->fd = fd;
	c->caller = caller_of(a, &ss);
	a->clients++;
	c->timer = pilot_loop_add_timer(l, 5000, client_timeout, c);
	if (pilot_loop_add_fd(l, fd, PILOT_EV_READ, client_read, c) < 0)
		client_close(c);
}

/* ---- attach mode: port 53 through pilotd's control socket ----
 * pilotd binds Pilot port 53 for us (its "serve" verb) and reports each stream
 * on one control connection: accept (with the stream's authenticated source
 * node: the caller), data (the request), eof, closed. The reply goes back with
 * "serve-send" on a second connection (one call at a time), which also closes
 * the stream. No TUN device is involved. */
static int64_t attach_retry(pilot_loop *l, uint64_t id, void *arg);

static pending *pend_find(app *a, uint32_t id)
{
	for (size_t i = 0; i < a->npend; i++)
		if (a->pend[i].id == id)
			return &a->pend[i];
	return NULL;
}

static void pend_del(app *a, pending *p)
{
	*p = a->pend[--a->npend];
}

/* Write len bytes on stream id and close it (reset: RST instead, nothing written). */
static void serve_send(app *a, uint32_t id, const char *data, size_t len, bool reset)
{
	json_object *args = json_object_new_object(), *d = NULL;
	char *b64 = NULL;
	int rc;

	jw_set_int(args, "port", NS_PORT);
	jw_set_int(args, "id", id);
	if (len && !reset) {
		if (!(b64 = malloc(pilot_b64_len(len)))) {
			json_object_put(args);
			return;
		}
		pilot_b64_encode((const uint8_t *)data, len, b64, pilot_b64_len(len));
		jw_set_str(args, "data_b64", b64);
	}
	jw_set_bool(args, reset ? "reset" : "close", true);
	if ((rc = ns_ctl_call(a->sock, "serve-send", args, (int)a->o.ctl_timeout, &d)) < 0)
		log_debug("serve-send stream=%u: %s", id,
			  rc == -EREMOTEIO ? "refused (gone)" : strerror(-rc));
	else if (jw_get_i64(d, "written") != (int64_t)(reset ? 0 : len))
		log_warn("reply to stream %u cut short: %lld of %zu bytes", id,
			 (long long)jw_get_i64(d, "written"), len);
	json_object_put(d);
	free(b64);
}

static void attach_event(app *a, json_object *d)
{
	static char rep[NS_MSG_MAX + 1];
	static uint8_t req[NS_MSG_MAX + 1];
	const char *ev = jw_get_str(d, "event"), *b;
	uint32_t id = jw_get_u32(d, "id"), caller;
	pending *p = pend_find(a, id);
	int n;

	if (!ev)
		return;
	if (!strcmp(ev, "listening")) {
		log_info("serving Pilot port %u through pilotd's control socket %s", NS_PORT, a->sock);
	} else if (!strcmp(ev, "accept") && id && !p) {
		if (a->npend >= (size_t)a->clients_max) {
			serve_send(a, id, NULL, 0, true);
			return;
		}
		a->pend[a->npend].id = id;
		a->pend[a->npend++].caller = jw_get_u32(d, "src_node");
	} else if (!strcmp(ev, "data") && p) {
		/* The first chunk is the request (services.md §2.1: one read). */
		caller = p->caller;
		pend_del(a, p);
		b = jw_get_str(d, "data_b64");
		n = b ? pilot_b64_decode(b, strlen(b), req, NS_MSG_MAX) : -1;
		if (n <= 0) {
			serve_send(a, id, NULL, 0, true);
			return;
		}
		serve_send(a, id, rep, answer(a, caller, (const char *)req, (size_t)n, rep), false);
	} else if ((!strcmp(ev, "eof") || !strcmp(ev, "closed")) && p) {
		pend_del(a, p); /* no request: nothing to answer */
		if (!strcmp(ev, "eof"))
			serve_send(a, id, NULL, 0, false);
	}
}

static void attach_lost(app *a, const char *why)
{
	log_warn("pilotd stopped serving port %u for us (%s); trying again every second", NS_PORT, why);
	pilot_loop_del_fd(a->loop, a->afd);
	close(a->afd);
	a->afd = -1;
	a->ainlen = 0;
	a->npend = 0;
	a->retry_timer = pilot_loop_add_timer(a->loop, 1000, attach_retry, a);
}

/* Read what is there (blocking: wait up to wait_ms for it; < 0 = do not wait).
 * 0, or -errno (-ECONNRESET on EOF). */
static int attach_fill(app *a, int wait_ms)
{
	ssize_t r;

	if (a->aincap - a->ainlen < 65536) {
		size_t cap = a->aincap ? a->aincap * 2 : 131072;
		uint8_t *nb;

		if (cap > 4 + (size_t)JW_MAX_BODY + 131072 || !(nb = realloc(a->ain, cap)))
			return -EMSGSIZE;
		a->ain = nb;
		a->aincap = cap;
	}
	if (wait_ms >= 0) {
		struct pollfd pf = { .fd = a->afd, .events = POLLIN };

		if (poll(&pf, 1, wait_ms) <= 0)
			return -ETIMEDOUT;
	}
	r = read(a->afd, a->ain + a->ainlen, a->aincap - a->ainlen);
	if (r > 0)
		a->ainlen += (size_t)r;
	else if (r == 0)
		return -ECONNRESET;
	else if (errno != EAGAIN && errno != EINTR)
		return -errno;
	return 0;
}

/* The next whole frame in the buffer: 1 with *f, 0 need more, < 0 bad. */
static int attach_frame(app *a, json_object **f)
{
	int n = jw_decode(a->ain, a->ainlen, f);

	if (n <= 0)
		return n;
	a->ainlen -= (size_t)n;
	memmove(a->ain, a->ain + n, a->ainlen);
	return 1;
}

/* Every whole frame: stream events are handled; an end (ok/error) is lost. */
static void attach_process(app *a)
{
	json_object *f, *d;
	int rc;

	while ((rc = attach_frame(a, &f)) > 0) {
		const char *st = jw_get_str(f, "status");

		if (!st || strcmp(st, "stream") || !json_object_object_get_ex(f, "data", &d)) {
			char why[256];

			snprintf(why, sizeof(why), "%s",
				 jw_get_str(f, "message") ? jw_get_str(f, "message")
							  : "the serve request ended");
			json_object_put(f);
			attach_lost(a, why);
			return;
		}
		attach_event(a, d);
		json_object_put(f);
	}
	if (rc < 0)
		attach_lost(a, "bad frame from pilotd");
}

static void attach_io(pilot_loop *l, int fd, int events, void *arg)
{
	app *a = arg;
	int rc = attach_fill(a, -1);

	if (rc < 0) {
		attach_lost(a, rc == -ECONNRESET ? "pilotd closed the connection" : strerror(-rc));
		return;
	}
	attach_process(a);
}

/* Send serve and wait (-ctl-timeout) for "listening". 0, or -errno with why. */
static int attach_open(app *a, char *why, size_t whylen)
{
	json_object *args = json_object_new_object(), *f = NULL, *d = NULL;
	int64_t end = (int64_t)pilot_now_ms() + a->o.ctl_timeout;
	int rc = 0;

	jw_set_int(args, "port", NS_PORT);
	jw_set_int(args, "max_conns", a->clients_max);
	jw_set_int(args, "conn_timeout_ms", 5000);
	if ((a->afd = ns_ctl_send(a->sock, "serve", args)) < 0) {
		rc = a->afd;
		a->afd = -1;
		snprintf(why, whylen, "control socket %.200s: %s", a->sock, strerror(-rc));
		return rc;
	}
	fcntl(a->afd, F_SETFL, fcntl(a->afd, F_GETFL) | O_NONBLOCK);
	a->ainlen = 0;
	while ((rc = attach_frame(a, &f)) == 0) {
		int64_t left = end - (int64_t)pilot_now_ms();

		if (left <= 0 || (rc = attach_fill(a, (int)left)) < 0) {
			rc = rc < 0 ? rc : -ETIMEDOUT;
			break;
		}
	}
	if (rc > 0 &&
	    (!json_object_object_get_ex(f, "data", &d) || !jw_get_str(d, "event") ||
	     strcmp(jw_get_str(d, "event"), "listening"))) {
		snprintf(why, whylen, "pilotd: %s",
			 jw_get_str(f, "message") ? jw_get_str(f, "message") : "unexpected reply to serve");
		rc = -EREMOTEIO;
	} else if (rc <= 0) {
		snprintf(why, whylen, "no answer to serve from pilotd: %s", strerror(-rc));
		rc = rc < 0 ? rc : -EPROTO;
	}
	if (rc < 0) {
		json_object_put(f);
		close(a->afd);
		a->afd = -1;
		return rc;
	}
	attach_event(a, d);
	json_object_put(f);
	if ((rc = pilot_loop_add_fd(a->loop, a->afd, PILOT_EV_READ, attach_io, a)) < 0) {
		snprintf(why, whylen, "cannot watch the control connection: %s", strerror(-rc));
		close(a->afd);
		a->afd = -1;
		return rc;
	}
	attach_process(a); /* frames that came with the first */
	return 0;
}

static int64_t attach_retry(pilot_loop *l, uint64_t id, void *arg)
{
	app *a = arg;
	char why[512];

	a->retry_timer = 0;
	if (attach_open(a, why, sizeof(why)) < 0) {
		log_debug("attach: %s", why);
		a->retry_timer = id; /* re-armed */
		return 1000;
	}
	return 0;
}

/* ---- start-up ---- */
static int listen_on(app *a, const char *host, uint16_t port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int fd, one = 1;

	if (a->nl >= MAX_LISTEN)
		return -ENOSPC;
	if (strchr(host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		sl = sizeof(*s6);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return -EINVAL;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		sl = sizeof(*s4);
		if (*host && inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return -EINVAL;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 128) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	a->lfd[a->nl++] = fd;
	log_info("listening on %s%s%s:%u", ss.ss_family == AF_INET6 ? "[" : "", host,
		 ss.ss_family == AF_INET6 ? "]" : "", port);
	return pilot_loop_add_fd(a->loop, fd, PILOT_EV_READ, on_accept, a);
}

/* The node's address and TUN addresses; waits (-wait) for pilotd to be up and
 * registered. */
static int learn_node(app *a, char *ip4, char *ip6, size_t len)
{
	uint64_t end = pilot_now_ms() + (uint64_t)a->o.wait;
	json_object *d = NULL, *tun;
	struct in_addr in;

	for (;;) {
		if (ns_ctl_call(a->sock, "info", NULL, (int)a->o.ctl_timeout, &d) == 0 &&
		    (a->own_node = jw_get_u32(d, "node_id")) != 0)
			break;
		json_object_put(d);
		d = NULL;
		if (pilot_now_ms() >= end)
			return -ETIMEDOUT;
		usleep(500 * 1000);
	}
	ip4[0] = ip6[0] = '\0';
	if (json_object_object_get_ex(d, "tun", &tun)) {
		const char *sub = jw_get_str(tun, "subnet"), *slash = sub ? strchr(sub, '/') : NULL;
		unsigned long plen = slash ? strtoul(slash + 1, NULL, 10) : 0;

		snprintf(ip4, len, "%s", jw_get_str(tun, "ipv4") ? jw_get_str(tun, "ipv4") : "");
		snprintf(ip6, len, "%s", jw_get_str(tun, "ipv6") ? jw_get_str(tun, "ipv6") : "");
		if (plen >= 1 && plen <= 32)
			a->mask4 = plen == 32 ? 0xFFFFFFFFu : ~(0xFFFFFFFFu >> plen);
	}
	if (*ip4 && inet_pton(AF_INET, ip4, &in) == 1)
		a->own4 = ntohl(in.s_addr);
	json_object_put(d);
	return 0;
}

static int listen_all(app *a)
{
	char ip4[64], ip6[64], host[256], port[8], *list, *tok, *save = NULL;
	int rc = 0;

	if ((rc = learn_node(a, ip4, ip6, sizeof(ip4))) < 0)
		pilot_fatal("pilotd at %s did not report a registered node within -wait", a->sock);
	log_info("node %u, TUN %s %s", a->own_node, *ip4 ? ip4 : "-", *ip6 ? ip6 : "-");
	if (a->o.attach && (!a->o.listen || !*a->o.listen))
		return 0; /* port 53 through the control socket only */
	if (!a->o.listen || !*a->o.listen) {
		if (!*ip4 && !*ip6)
			pilot_fatal("the node has no TUN address: give -attach or -listen");
		if (*ip4 && (rc = listen_on(a, ip4, NS_PORT)) < 0)
			return rc;
		if (*ip6 && (rc = listen_on(a, ip6, NS_PORT)) < 0)
			return rc;
		return 0;
	}
	if (!(list = strdup(a->o.listen)))
		return -ENOMEM;
	for (tok = strtok_r(list, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
		if (pilot_split_hostport(tok, host, sizeof(host), port, sizeof(port)) < 0) {
			log_error("-listen: bad address %s (want host:port)", tok);
			rc = -EINVAL;
		} else {
			rc = listen_on(a, host, (uint16_t)strtoul(port, NULL, 10));
		}
	}
	free(list);
	return rc;
}

static int64_t reap_tick(pilot_loop *l, uint64_t id, void *arg)
{
	app *a = arg;
	size_t n = ns_store_reap(a->st, pilot_now_ms());

	if (n)
		log_info("reaped %zu expired records, %zu left", n, ns_store_count(a->st));
	return a->o.reap_interval;
}

static void on_signal(pilot_loop *l, int signo, void *arg)
{
	log_info("shutting down signal=%s", signo == SIGTERM ? "SIGTERM" : "SIGINT");
	pilot_loop_stop(l);
}

static int run(app *a)
{
	int rc, i;

	signal(SIGPIPE, SIG_IGN);
	if (a->o.socket && *a->o.socket)
		snprintf(a->sock, sizeof(a->sock), "%s", a->o.socket);
	else if (pilot_default_socket_path(a->sock, sizeof(a->sock)) < 0)
		pilot_fatal("no default control socket path: give -socket");
	if (!(a->loop = pilot_loop_new()) ||
	    !(a->st = ns_store_new(a->o.store && *a->o.store ? a->o.store : NULL, (uint64_t)a->o.ttl,
				   (size_t)a->o.max_records)))
		pilot_fatal("out of memory");
	if ((rc = ns_store_load(a->st, pilot_now_ms())) < 0)
		pilot_fatal("cannot load %s: %s (fix or remove it)", a->o.store,
			    rc == -EINVAL ? "not a nameserver store" : strerror(-rc));
	log_info("store %s: %zu records", a->o.store && *a->o.store ? a->o.store : "(memory)",
		 ns_store_count(a->st));
	if ((rc = listen_all(a)) < 0)
		pilot_fatal("cannot listen: %s", strerror(-rc));
	a->afd = -1;
	if (a->o.attach) {
		char why[512];

		a->clients_max = a->o.max_clients < ATTACH_MAX_CONNS ? a->o.max_clients : ATTACH_MAX_CONNS;
		if (!(a->pend = calloc((size_t)a->clients_max, sizeof(*a->pend))))
			pilot_fatal("out of memory");
		if (attach_open(a, why, sizeof(why)) < 0)
			pilot_fatal("-attach: %s", why);
	}
	pilot_loop_add_signal(a->loop, SIGTERM, on_signal, a);
	pilot_loop_add_signal(a->loop, SIGINT, on_signal, a);
	pilot_loop_add_timer(a->loop, a->o.reap_interval, reap_tick, a);
	pilot_sd_notify("READY=1"); /* systemd Type=notify: port 53 is served */
	rc = pilot_loop_run(a->loop);
	pilot_sd_notify("STOPPING=1");
	log_info("served %llu requests, %llu refused", (unsigned long long)a->requests,
		 (unsigned long long)a->refused);
	for (i = 0; i < a->nl; i++)
		close(a->lfd[i]);
	if (a->afd >= 0)
		close(a->afd);
	pilot_loop_del_timer(a->loop, a->retry_timer);
	free(a->ain);
	free(a->pend);
	ns_store_free(a->st);
	free(a->maps);
	pilot_loop_free(a->loop);
	return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	static app a;
	pilot_opt opts[NOPTS + 1];
	enum pilot_log_level lv;
	enum pilot_log_format lf;
	char err[512];
	int first = argc, r;

	build_opts(opts, &a.o);
	r = pilot_opts_parse(opts, argc, argv, &first, err, sizeof(err));
	if (r == 1) {
		pilot_opts_usage(opts, PROG, "[flags]", stdout);
		pilot_opts_free(opts);
		return 0;
	}
	if (r < 0 || first < argc || pilot_log_parse_level(a.o.log_level, &lv) < 0 ||
	    pilot_log_parse_format(a.o.log_format, &lf) < 0 || a.o.ttl <= 0 || a.o.reap_interval <= 0 ||
	    a.o.ctl_timeout <= 0) {
		fprintf(stderr, "%s: %s\n", PROG,
			r < 0                  ? err
				: first < argc ? "unexpected argument (flags only)"
					       : "bad -log-*, -ttl, -reap-interval or -ctl-timeout");
		pilot_opts_free(opts);
		return 2;
	}
	pilot_log_init(PROG, lv, lf);
	r = run(&a);
	pilot_opts_free(opts);
	return r;
}
