/* The rendezvous' /healthz and /metrics: the HTTP listener is lib/httpd.c
 * (shared with pilotd); this file writes the registry's series. Names follow
 * the Prometheus conventions and the pilot_<subsystem>_ scheme pilotd uses
 * (man/pilot-rendezvous.8, METRICS). */
#include "rendezvous/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lib/httpd.h"

struct rdv_http {
	pilot_loop *loop;
	registry *reg;
	rdv_http_metrics_cb extra;
	void *extra_arg;
	pilot_httpd *srv;
	uint64_t started_ms;
};

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void metrics(FILE *f, void *arg)
{
	rdv_http *h = arg;
	reg_stats st;

	reg_get_stats(h->reg, wall_ms(), &st);
	pilot_prom_metric(f, "pilot_registry_nodes", "gauge", "Registered nodes.", st.nodes_total);
	pilot_prom_metric(f, "pilot_registry_nodes_online", "gauge", "Nodes seen in the last 3 minutes.",
			  st.nodes_online);
	pilot_prom_metric(f, "pilot_registry_trust_links", "gauge", "Trust pairs.", st.trust_links);
	pilot_prom_metric(f, "pilot_registry_networks", "gauge", "Networks including the backbone.",
			  st.networks);
	pilot_prom_metric(f, "pilot_registry_requests_total", "counter", "Registry requests handled.",
			  st.requests);
	pilot_prom_metric(f, "pilot_registry_errors_total", "counter",
			  "Registry requests answered with an error.", st.errors);
	pilot_prom_metric(f, "pilot_registry_rate_limited_total", "counter",
			  "Registrations refused by the rate limit.", st.rate_limited);
	pilot_prom_metric(f, "pilot_registry_registrations_total", "counter", "Successful registrations.",
			  st.registrations);
	pilot_prom_metric(f, "pilot_registry_deregistrations_total", "counter", "Deregistrations.",
			  st.deregistrations);
	if (h->extra)
		h->extra(f, h->extra_arg);
	pilot_prom_metric(f, "pilot_uptime_seconds", "gauge", "Seconds since start.",
			  (pilot_loop_now_ms(h->loop) - h->started_ms) / 1000);
}

/* "ok store=<back end> db=up", or 503 "degraded ... db=down" while the
 * database does not answer (writes are refused then; reads still work). */
static int health(char *body, size_t cap, void *arg)
{
	rdv_http *h = arg;
	bool up = !h->reg || reg_store_up(h->reg);

	snprintf(body, cap, "%s store=%s db=%s\n", up ? "ok" : "degraded",
		 h->reg ? reg_store_kind(h->reg) : "none", up ? "up" : "down");
	return up ? 200 : 503;
}

rdv_http *rdv_http_new(pilot_loop *l, const rdv_http_config *cfg, char *err, size_t errlen)
{
	rdv_http *h = calloc(1, sizeof(*h));
	pilot_httpd_config hc = {
		.addr = cfg->addr, .metrics = metrics, .health = health, .timeout_ms = cfg->timeout_ms
	};

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = l;
	h->reg = cfg->reg;
	h->extra = cfg->extra;
	h->extra_arg = cfg->extra_arg;
	h->started_ms = pilot_loop_now_ms(l);
	hc.arg = h;
	if (!(h->srv = pilot_httpd_new(l, &hc, err, errlen))) {
		free(h);
		return NULL;
	}
	return h;
}

void rdv_http_free(rdv_http *h)
{
	if (!h)
		return;
	pilot_httpd_free(h->srv);
	free(h);
}

const char *rdv_http_addr(const rdv_http *h)
{
	return pilot_httpd_addr(h->srv);
}
