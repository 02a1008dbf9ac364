/* /healthz and /metrics over HTTP/1.1, one request per connection (moved here
 * from rendezvous/http.c so pilotd serves the same code). Requests are capped
 * at 8 KiB and the whole exchange at a timeout; anything else is 404. */
#include "lib/httpd.h"
#include "lib/hostport.h"

#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"

#define REQ_MAX   8192
#define MAX_CONNS 64

struct hconn {
	pilot_httpd *h;
	struct hconn *prev, *next;
	int fd;
	char req[REQ_MAX];
	size_t len;
	char *out;
	size_t out_len, out_off;
	uint64_t timer;
};

struct pilot_httpd {
	pilot_loop *loop;
	pilot_httpd_metrics_cb metrics;
	int (*cfg_health)(char *body, size_t cap, void *arg);
	void *arg;
	int64_t timeout_ms;
	int lfd;
	char bound[64];
	struct hconn *conns;
	int nconns;
};

/* ---- Prometheus text ---- */
void pilot_prom_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void pilot_prom_metric(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	pilot_prom_head(f, name, type, help);
	fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void label_value(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"') {
			fputc('\\', f);
			fputc(*v, f);
		} else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

void pilot_prom_sample(FILE *f, const char *name, const char *const *labels, double v)
{
	fputs(name, f);
	for (int i = 0; labels && labels[i]; i += 2) {
		fprintf(f, "%s%s=\"", i ? "," : "{", labels[i]);
		label_value(f, labels[i + 1] ? labels[i + 1] : "");
		fputc('"', f);
		if (!labels[i + 2])
			fputc('}', f);
	}
	if (v >= 0 && v < 1e19 && v == (double)(uint64_t)v) /* counters print as integers */
		fprintf(f, " %llu\n", (unsigned long long)v);
	else
		fprintf(f, " %.9g\n", v);
}

/* ---- the listener ---- */
static int listen_one(const struct addrinfo *ai)
{
	int fd, one = 1;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static void bound_text(int fd, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?";

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		snprintf(out, outlen, "?");
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(out, outlen, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const void *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(out, outlen, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

/* No host = loopback only: metrics are for the operator, not the world. */
static int http_listen(const char *addr, char *bound, size_t boundlen, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	char host[256], port[8];
	int fd = -EADDRNOTAVAIL, r;

	if (pilot_split_hostport(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "invalid listen address \"%s\" (want host:port, :port or [v6]:port)",
			 addr ? addr : "");
		return -EINVAL;
	}
	if (!host[0])
		snprintf(host, sizeof(host), "127.0.0.1");
	if ((r = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "listen address \"%s\": %s", addr, gai_strerror(r));
		return -EINVAL;
	}
	for (ai = res; ai && (fd = listen_one(ai)) < 0; ai = ai->ai_next)
		;
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "listen on \"%s\": %s", addr, strerror(-fd));
		return fd;
	}
	bound_text(fd, bound, boundlen);
	return fd;
}

/* ---- connections ---- */
static void hconn_close(struct hconn *c)
{
	pilot_httpd *h = c->h;

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

static char *metrics_body(pilot_httpd *h, size_t *len)
{
	char *body = NULL;
	FILE *f = open_memstream(&body, len);

	if (!f)
		return NULL;
	if (h->metrics)
		h->metrics(f, h->arg);
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

enum pilot_httpd_route pilot_httpd_parse(const char *req, size_t len)
{
	char method[8], path[256];
	const char *sp1 = memchr(req, ' ', len), *sp2;
	size_t ml, pl;

	sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - req)) : NULL;
	if (!sp1 || !sp2 || (ml = (size_t)(sp1 - req)) >= sizeof(method)
	    || (pl = (size_t)(sp2 - sp1 - 1)) >= sizeof(path) || memchr(req, '\0', (size_t)(sp2 - req)))
		return PILOT_HTTPD_BAD;
	memcpy(method, req, ml);
	method[ml] = '\0';
	memcpy(path, sp1 + 1, pl);
	path[pl] = '\0';
	path[strcspn(path, "?")] = '\0';
	if (strcmp(method, "GET") != 0)
		return PILOT_HTTPD_METHOD;
	if (strcmp(path, "/healthz") == 0)
		return PILOT_HTTPD_HEALTHZ;
	if (strcmp(path, "/metrics") == 0)
		return PILOT_HTTPD_METRICS;
	return PILOT_HTTPD_NOT_FOUND;
}

static void route(struct hconn *c)
{
	enum pilot_httpd_route r = pilot_httpd_parse(c->req, c->len);

	if (r == PILOT_HTTPD_BAD) {
		respond(c, 400, "Bad Request", "text/plain", "bad request\n", 12);
	} else if (r == PILOT_HTTPD_METHOD) {
		respond(c, 405, "Method Not Allowed", "text/plain", "method not allowed\n", 19);
	} else if (r == PILOT_HTTPD_HEALTHZ && c->h->cfg_health) {
		char body[256] = "";
		int st = c->h->cfg_health(body, sizeof(body), c->h->arg);

		respond(c, st == 200 ? 200 : 503, st == 200 ? "OK" : "Service Unavailable", "text/plain",
			body, strlen(body));
	} else if (r == PILOT_HTTPD_HEALTHZ) {
		respond(c, 200, "OK", "text/plain", "ok\n", 3);
	} else if (r == PILOT_HTTPD_METRICS) {
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
	pilot_httpd *h = arg;

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

pilot_httpd *pilot_httpd_new(pilot_loop *l, const pilot_httpd_config *cfg, char *err, size_t errlen)
{
	pilot_httpd *h = calloc(1, sizeof(*h));

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = l;
	h->metrics = cfg->metrics;
	h->cfg_health = cfg->health;
	h->arg = cfg->arg;
	h->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 10000;
	h->lfd = http_listen(cfg->addr, h->bound, sizeof(h->bound), err, errlen);
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

void pilot_httpd_free(pilot_httpd *h)
{
	if (!h)
		return;
	while (h->conns)
		hconn_close(h->conns);
	pilot_loop_del_fd(h->loop, h->lfd);
	close(h->lfd);
	free(h);
}

const char *pilot_httpd_addr(const pilot_httpd *h)
{
	return h->bound;
}
