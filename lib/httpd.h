/* A deliberately small HTTP/1.1 listener for health checks and Prometheus,
 * shared by pilot-rendezvous and pilotd: GET /healthz and GET /metrics, one
 * request per connection, requests capped at 8 KiB and the whole exchange at a
 * timeout. No header is ever used for an access decision (the reference
 * trusted X-Real-IP, registry.md §15 #7): who may reach it is decided by the
 * address it binds, 127.0.0.1 unless a host is given explicitly. */
#ifndef PILOT_HTTPD_H
#define PILOT_HTTPD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/loop.h"

typedef struct pilot_httpd pilot_httpd;

/* Writes the whole /metrics body (Prometheus text format 0.0.4) to out. */
typedef void (*pilot_httpd_metrics_cb)(FILE *out, void *arg);

typedef struct pilot_httpd_config {
	const char *addr;              /* ":9100" binds 127.0.0.1; "0.0.0.0:9100" all */
	pilot_httpd_metrics_cb metrics;
	/* Optional /healthz: writes a one-line body (at most cap bytes, NUL-
	 * terminated) and returns the status, 200 or 503. NULL = always "ok". */
	int (*health)(char *body, size_t cap, void *arg);
	void *arg;
	int64_t timeout_ms;            /* whole request/response (default 10 s) */
} pilot_httpd_config;

pilot_httpd *pilot_httpd_new(pilot_loop *l, const pilot_httpd_config *cfg, char *err, size_t errlen);
void pilot_httpd_free(pilot_httpd *h); /* NULL-safe */
const char *pilot_httpd_addr(const pilot_httpd *h); /* "127.0.0.1:9102" as bound */

/* The request line of a complete request head (req, len; not NUL-terminated):
 * what to answer. Pure, for the listener and the fuzzer. */
enum pilot_httpd_route {
	PILOT_HTTPD_BAD,        /* 400: no "METHOD PATH VERSION" line we can read */
	PILOT_HTTPD_METHOD,     /* 405: not GET */
	PILOT_HTTPD_HEALTHZ,
	PILOT_HTTPD_METRICS,
	PILOT_HTTPD_NOT_FOUND,
};
enum pilot_httpd_route pilot_httpd_parse(const char *req, size_t len);

/* Prometheus text helpers. Label values are escaped (\\, \", \n). */
void pilot_prom_head(FILE *f, const char *name, const char *type, const char *help);
void pilot_prom_metric(FILE *f, const char *name, const char *type, const char *help, uint64_t v);
/* name{k1="v1",k2="v2"} value: labels is a NULL-terminated list of key, value. */
void pilot_prom_sample(FILE *f, const char *name, const char *const *labels, double v);

#endif
