/* /healthz and /metrics over HTTP/1.1, one request per connection. Requests are
 * capped at 8 KiB and the whole exchange at a timeout; anything else is 404. */
#include "rendezvous/http.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "rendezvous/server.h"

#define REQ_MAX   8192
#define MAX_CONNS 64

struct hconn {
	rdv_http *h;
	struct hconn *prev, *next;
	int fd;
	char req[REQ_MAX];
	size_t len;
	char *out;
	size_t out_len, out_off;
	uint64_t timer;
};

struct rdv_http {
	pilot_loop *loop;
	registry *reg;
	rdv_http_metrics_cb extra;
	void *extra_arg;
	int64_t timeout_ms;
	int lfd;
	char bound[64];
	struct hconn *conns;
	int nconns;
	uint64_t started_ms;
};

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void hconn_close(struct hconn *c)
{
	rdv_http *h = c->h;

	pilot_loop_del_fd(h->loop, c->fd);
	pilot_loop_del_timer(h->loop, c->timer);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->nconns--;
	free(c->out);
	free(c);
}

static void metric(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
		(unsigned long long)v);
}

static char *metrics_body(rdv_http *h, size_t *len)
{
	char *body = NULL;
	FILE *f = open_memstream(&body, len);
	reg_stats st;

	if (!f)
		return NULL;
	reg_get_stats(h->reg, wall_ms(), &st);
	metric(f, "pilot_nodes_total", "gauge", "Registered nodes.", st.nodes_total);
	metric(f, "pilot_nodes_online", "gauge", "Nodes seen in the last 3 minutes.", st.nodes_online);
	metric(f, "pilot_trust_links", "gauge", "Trust pairs.", st.trust_links);
	metric(f, "pilot_networks", "gauge", "Networks including the backbone.", st.networks);
	metric(f, "pilot_requests_total", "counter", "Registry requests handled.", st.requests);
	metric(f, "pilot_errors_total", "counter", "Registry requests answered with an error.", st.errors);
	metric(f, "pilot_rate_limited_total", "counter", "Registrations refused by the rate limit.",
	       st.rate_limited);
	metric(f, "pilot_registrations_total", "counter", "Successful registrations.", st.registrations);
	metric(f, "pilot_deregistrations_total", "counter", "Deregistrations.", st.deregistrations);
	if (h->extra)
		h->extra(f, h->extra_arg);
	metric(f, "pilot_uptime_seconds", "gauge", "Seconds since start.",
	       (pilot_loop_now_ms(h->loop) - h->started_ms) / 1000);
	if (fclose(f) != 0) {
		free(body);
		return NULL;
	}
	return body;
}

static void respond(struct hconn *c, int code, const char *reason, const char *ctype,
		    const char *body, size_t blen)
{
	char *out = NULL;
	size_t olen = 0;
	FILE *f = open_memstream(&out, &olen);

	if (!f)
		return;
	fprintf(f, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		   "Cache-Control: no-store\r\nConnection: close\r\n\r\n", code, reason, ctype, blen);
	fwrite(body, 1, blen, f);
	if (fclose(f) != 0) {
		free(out);
		return;
	}
	c->out = out;
	c->out_len = olen;
}

static void route(struct hconn *c)
{
	char method[8], path[256];
	const char *sp1 = memchr(c->req, ' ', c->len), *sp2;
	size_t ml, pl;

	sp2 = sp1 ? memchr(sp1 + 1, ' ', c->len - (size_t)(sp1 + 1 - c->req)) : NULL;
	if (!sp1 || !sp2 || (ml = (size_t)(sp1 - c->req)) >= sizeof(method)
	    || (pl = (size_t)(sp2 - sp1 - 1)) >= sizeof(path)) {
		respond(c, 400, "Bad Request", "text/plain", "bad request\n", 12);
		return;
	}
	memcpy(method, c->req, ml);
	method[ml] = '\0';
	memcpy(path, sp1 + 1, pl);
	path[pl] = '\0';
	path[strcspn(path, "?")] = '\0';
	if (strcmp(method, "GET") != 0) {
		respond(c, 405, "Method Not Allowed", "text/plain", "method not allowed\n", 19);
	} else if (strcmp(path, "/healthz") == 0) {
		respond(c, 200, "OK", "text/plain", "ok\n", 3);
	} else if (strcmp(path, "/metrics") == 0) {
		size_t blen = 0;
		char *body = metrics_body(c->h, &blen);

		if (body)
			respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, blen);
		else
			respond(c, 500, "Internal Server Error", "text/plain", "error\n", 6);
		free(body);
	} else {
		respond(c, 404, "Not Found", "text/plain", "not found\n", 10);
	}
}

/* 1 when the request head is complete. Bodies are never read: GET only. */
static int head_complete(const struct hconn *c)
{
	return memmem(c->req, c->len, "\r\n\r\n", 4) || memmem(c->req, c->len, "\n\n", 2);
}

static void hconn_event(pilot_loop *l, int fd, int events, void *arg)
{
	struct hconn *c = arg;

	if (!c->out) {
		ssize_t n = read(fd, c->req + c->len, sizeof(c->req) - c->len);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			hconn_close(c);
			return;
		}
		c->len += (size_t)n;
		if (head_complete(c))
			route(c);
		else if (c->len == sizeof(c->req))
			respond(c, 431, "Request Header Fields Too Large", "text/plain", "too large\n", 10);
		if (!c->out) {
			if (c->len == sizeof(c->req))
				hconn_close(c); /* could not even build an error reply */
			return;
		}
	}
	while (c->out_off < c->out_len) {
		ssize_t n = send(fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			pilot_loop_mod_fd(l, fd, PILOT_EV_WRITE);
			return;
		}
		if (n <= 0)
			break;
		c->out_off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	hconn_close(c);
}

static int64_t hconn_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	struct hconn *c = arg;

	c->timer = 0;
	hconn_close(c);
	return 0;
}

static void http_accept(pilot_loop *l, int fd, int events, void *arg)
{
	rdv_http *h = arg;

	for (int i = 0; i < 16; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct hconn *c;

		if (cfd < 0)
			return;
		if (h->nconns >= MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
			close(cfd);
			continue;
		}
		c->h = h;
		c->fd = cfd;
		if (pilot_loop_add_fd(l, cfd, PILOT_EV_READ, hconn_event, c) < 0
		    || !(c->timer = pilot_loop_add_timer(l, h->timeout_ms, hconn_timeout, c))) {
			pilot_loop_del_fd(l, cfd);
			close(cfd);
			free(c);
			continue;
		}
		c->next = h->conns;
		if (h->conns)
			h->conns->prev = c;
		h->conns = c;
		h->nconns++;
	}
}

rdv_http *rdv_http_new(pilot_loop *l, const rdv_http_config *cfg, char *err, size_t errlen)
{
	rdv_http *h = calloc(1, sizeof(*h));

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = l;
	h->reg = cfg->reg;
	h->extra = cfg->extra;
	h->extra_arg = cfg->extra_arg;
	h->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 10000;
	h->started_ms = pilot_loop_now_ms(l);
	/* No host = loopback only: metrics are for the operator, not the world. */
	h->lfd = rdv_listen_tcp(cfg->addr, "127.0.0.1", h->bound, sizeof(h->bound), err, errlen);
	if (h->lfd < 0) {
		free(h);
		return NULL;
	}
	if (pilot_loop_add_fd(l, h->lfd, PILOT_EV_READ, http_accept, h) < 0) {
		snprintf(err, errlen, "HTTP listener: cannot register with the event loop");
		close(h->lfd);
		free(h);
		return NULL;
	}
	return h;
}

void rdv_http_free(rdv_http *h)
{
	if (!h)
		return;
	while (h->conns)
		hconn_close(h->conns);
	pilot_loop_del_fd(h->loop, h->lfd);
	close(h->lfd);
	free(h);
}

const char *rdv_http_addr(const rdv_http *h)
{
	return h->bound;
}
