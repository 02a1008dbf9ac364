/* A deliberately small HTTP/1.1 listener for health checks and Prometheus:
 * GET /healthz and GET /metrics, one request per connection. No header is ever
 * used for an access decision (the reference trusted X-Real-IP, registry.md §15
 * #7): who may reach it is decided by the address it binds, 127.0.0.1 unless a
 * host is given explicitly. */
#ifndef RDV_HTTP_H
#define RDV_HTTP_H

#include <stddef.h>
#include <stdio.h>

#include "lib/loop.h"
#include "rendezvous/registry.h"

typedef struct rdv_http rdv_http;

/* Appends further series (connection counts, beacon) to the /metrics body. */
typedef void (*rdv_http_metrics_cb)(FILE *out, void *arg);

typedef struct rdv_http_config {
	const char *addr;              /* ":9100" binds 127.0.0.1; "0.0.0.0:9100" all */
	registry *reg;
	rdv_http_metrics_cb extra;     /* may be NULL */
	void *extra_arg;
	int64_t timeout_ms;            /* whole request/response (default 10 s) */
} rdv_http_config;

rdv_http *rdv_http_new(pilot_loop *l, const rdv_http_config *cfg, char *err, size_t errlen);
void rdv_http_free(rdv_http *h); /* NULL-safe */
const char *rdv_http_addr(const rdv_http *h);

#endif
