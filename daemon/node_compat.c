/* Compat mode (tunnel.md §11) and the registry over TLS (registry.md §2.1).
 *
 * -transport=udp     the UDP tunnel (default).
 * -transport=compat  no UDP socket at all: register first (over -registry-tls
 *                    normally, with relay_only=true and listen_addr 0.0.0.0:0),
 *                    then, on the first register_ok (the WSS authentication needs
 *                    the node ID), open the WebSocket to -compat-beacon and bring
 *                    the data plane up on it. Every peer is relay from the start
 *                    (the registry resolve is skipped: the peer table falls back
 *                    to the relay at once), the beacon is the synthetic endpoint
 *                    of wss.h and the peer table's periodic Discover (every 25 s)
 *                    keeps the bridge's 90 s idle limit from firing.
 * -transport=auto    UDP first: the start-up Discover(0) to -beacon over the
 *                    tunnel socket (3 tries, 0.67 s apart, AUTO_BOUND_MS in all);
 *                    no DiscoverReply → close the UDP socket and continue as
 *                    compat. Decided once at start-up and logged; `pilotctl info`
 *                    shows transport and transport_reason.
 *
 * TLS trust for both the beacon and the registry: -tls-trust=system (the OS
 * store; any public CA can then impersonate them, said at start-up) or pinned
 * (-tls-root FILE[,FILE...]: only these CAs). -registry-fingerprint pins the registry's leaf certificate the
 * reference's way instead. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/node.h"
#include "daemon/regclient.h"
#include "daemon/registration.h"
#include "daemon/transport.h"
#include "daemon/wss.h"
#include "lib/log.h"

#define AUTO_BOUND_MS 2000     /* node.c: DISCOVER_WAIT_MS (3 tries) */
#define COMPAT_BEACON_EP "192.0.2.2:0" /* wss_beacon_ep() */
#define MAX_ROOTS 16

enum ncm_mode { NCM_UDP, NCM_COMPAT, NCM_AUTO };

struct node_compat {
	enum ncm_mode mode;
	bool on;                     /* the tunnel runs over WSS (decided) */
	char reason[160];
	char *roots[MAX_ROOTS + 1];  /* -tls-root split; NULL-terminated */
	size_t nroots;
	char bundle[256];            /* several roots → one temporary PEM for lws */
	regclient_tls_config *rtls;
};

static int empty(const char *s)
{
	return !s || !s[0];
}

static enum ncm_mode mode_of(const node_options *o)
{
	if (!empty(o->transport) && !strcmp(o->transport, "compat"))
		return NCM_COMPAT;
	if (!empty(o->transport) && !strcmp(o->transport, "auto"))
		return NCM_AUTO;
	return NCM_UDP;
}

static bool pinned(const node_options *o)
{
	return !empty(o->tls_trust) && !strcmp(o->tls_trust, "pinned");
}

/* Split "a,b,c". Returns the count or -1 (too many). */
static int split_roots(const char *list, char **out, size_t max)
{
	char *dup = strdup(list ? list : ""), *save = NULL, *tok;
	int n = 0;

	if (!dup)
		return -1;
	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (!*tok)
			continue;
		if ((size_t)n >= max) {
			while (n > 0)
				free(out[--n]);
			free(dup);
			return -1;
		}
		out[n++] = strdup(tok);
	}
	out[n] = NULL;
	free(dup);
	return n;
}

static void free_roots(char **r)
{
	for (size_t i = 0; r[i]; i++) {
		free(r[i]);
		r[i] = NULL;
	}
}

/* Every item of the -compat-beacon list is a ws:// or wss:// URL. */
static bool urls_ok(const char *list)
{
	int n = 0;

	do {
		while (*list == ' ')
			list++;
		if ((strncmp(list, "wss://", 6) && strncmp(list, "ws://", 5)) || ++n > WSS_URLS_MAX)
			return false;
		list = strchr(list, ',');
		list = list ? list + 1 : NULL;
	} while (list);
	return true;
}

const char *node_compat_validate(const node_options *o)
{
	static char msg[600];
	char *roots[MAX_ROOTS + 1] = { 0 };
	enum ncm_mode m = mode_of(o);
	int n;

	if (!empty(o->transport) && strcmp(o->transport, "udp") && strcmp(o->transport, "compat")
	    && strcmp(o->transport, "auto"))
		return "invalid -transport (want udp, compat or auto)";
	if (m != NCM_UDP && empty(o->compat_beacon))
		return "-transport=compat and -transport=auto need -compat-beacon "
		       "wss://HOST[:PORT]/v1/compat (there is no built-in default)";
	if (!empty(o->compat_beacon) && !urls_ok(o->compat_beacon))
		return "invalid -compat-beacon (want wss://HOST[:PORT]/PATH, e.g. "
		       "wss://beacon.example.org/v1/compat, or up to 8 separated by commas)";
	if (m == NCM_AUTO && empty(o->beacon))
		return "-transport=auto needs -beacon HOST:PORT (the UDP beacon it probes first)";
	if (m == NCM_AUTO && !empty(o->endpoint))
		return "-transport=auto probes the beacon and cannot be combined with -endpoint";
	if (!empty(o->tls_trust) && strcmp(o->tls_trust, "system") && strcmp(o->tls_trust, "pinned"))
		return "invalid -tls-trust (want system or pinned)";
	if (pinned(o) && empty(o->tls_root))
		return "-tls-trust=pinned needs -tls-root FILE (PEM CA certificates; several: "
		       "a comma list)";
	if (!pinned(o) && !empty(o->tls_root))
		return "-tls-root is only used with -tls-trust=pinned (system trust uses the OS store)";
	if (!empty(o->registry_fingerprint) && !o->registry_tls)
		return "-registry-fingerprint needs -registry-tls";
	if (!empty(o->registry_fingerprint) && !regclient_tls_fingerprint_ok(o->registry_fingerprint))
		return "invalid -registry-fingerprint (want the 64 lowercase hex digits of the "
		       "SHA-256 of the registry's leaf certificate, DER)";
	if (pinned(o)) {
		if ((n = split_roots(o->tls_root, roots, MAX_ROOTS)) <= 0)
			return n < 0 ? "too many -tls-root files (at most 16)" : "empty -tls-root";
		for (int i = 0; i < n; i++)
			if (access(roots[i], R_OK) < 0) {
				snprintf(msg, sizeof(msg), "-tls-root %s: %s", roots[i], strerror(errno));
				free_roots(roots);
				return msg;
			}
		free_roots(roots);
	}
	return NULL;
}

static struct node_compat *state(node *n)
{
	if (!n->compat && !(n->compat = calloc(1, sizeof(*n->compat))))
		pilot_fatal("out of memory");
	return n->compat;
}

static void trust_warning(node *n, const char *what)
{
	if (!pinned(&n->o))
		log_warn("%s: TLS trust is the system CA store (-tls-trust=system): any public CA "
			 "can issue a certificate for it and impersonate it; pin your own CA with "
			 "-tls-trust=pinned -tls-root FILE", what);
}

static void go_compat(node *n, const char *why)
{
	struct node_compat *c = state(n);

	c->on = true;
	snprintf(c->reason, sizeof(c->reason), "%s", why);
	/* The registry keeps the source IP and this port: 0 = nothing to dial. */
	snprintf(n->endpoint, sizeof(n->endpoint), "0.0.0.0:0");
	log_info("transport=compat beacon=%s reason=\"%s\"", n->o.compat_beacon, why);
	if (!n->o.registry_tls)
		log_warn("compat mode with the registry over plain TCP: UDP-blocking networks "
			 "usually block that too; use -registry-tls with the registry on port 443");
	if (!strncmp(n->o.compat_beacon, "ws://", 5) || strstr(n->o.compat_beacon, ",ws://") ||
	    strstr(n->o.compat_beacon, ", ws://"))
		log_warn("compat: -compat-beacon is ws:// (no TLS): the tunnel is still encrypted "
			 "end to end, but the beacon is not authenticated");
	else
		trust_warning(n, "compat beacon");
}

bool node_compat_start(node *n)
{
	struct node_compat *c = state(n);
	char err[512];
	int nr;

	c->mode = mode_of(&n->o);
	if (pinned(&n->o)) {
		if ((nr = split_roots(n->o.tls_root, c->roots, MAX_ROOTS)) <= 0)
			pilot_fatal("-tls-root: no usable file list");
		c->nroots = (size_t)nr;
	}
	if (n->o.registry_tls) {
		/* A fingerprint alone replaces the chain check (the reference's pinning);
		 * with pinned roots both must pass. */
		c->rtls = regclient_tls_config_new((const char *const *)c->roots,
						   !pinned(&n->o) && empty(n->o.registry_fingerprint),
						   n->o.registry_fingerprint, err, sizeof(err));
		if (!c->rtls)
			pilot_fatal("%s", err);
		if (empty(n->o.registry_fingerprint))
			trust_warning(n, "registry");
		log_info("registry over TLS trust=%s%s", pinned(&n->o) ? "pinned" : "system",
			 empty(n->o.registry_fingerprint) ? "" : " fingerprint=pinned");
	}
	switch (c->mode) {
	case NCM_COMPAT:
		go_compat(n, "-transport=compat");
		return true;
	case NCM_AUTO:
		snprintf(c->reason, sizeof(c->reason), "auto: probing UDP beacon %s", n->o.beacon);
		log_info("transport=auto: probing the UDP beacon %s (at most %d ms), then compat %s",
			 n->o.beacon, AUTO_BOUND_MS, n->o.compat_beacon);
		return false;
	default:
		snprintf(c->reason, sizeof(c->reason), "-transport=udp");
		return false;
	}
}

void node_compat_udp_ok(node *n)
{
	struct node_compat *c = n->compat;

	if (!c || c->mode != NCM_AUTO || c->on)
		return;
	snprintf(c->reason, sizeof(c->reason), "auto: UDP beacon %s answered Discover",
		 n->o.beacon);
	log_info("transport=udp reason=\"%s\"", c->reason);
	c->mode = NCM_UDP;
}

bool node_compat_fallback(node *n)
{
	struct node_compat *c = n->compat;
	char why[160];

	if (!c || c->mode != NCM_AUTO)
		return false;
	snprintf(why, sizeof(why), "auto: no DiscoverReply from UDP beacon %s within %d ms",
		 n->o.beacon, AUTO_BOUND_MS);
	transport_close(n->t);
	n->t = NULL;
	go_compat(n, why);
	return true;
}

void node_compat_registration(node *n, struct registration_config *rc)
{
	struct node_compat *c = n->compat;

	if (!c)
		return;
	rc->relay_only = c->on;
	if (c->rtls) {
		rc->client.transport = &regclient_tls;
		rc->client.transport_cfg = c->rtls;
	}
}

static void drop_early(void *ctx, transport_dgram *dg, size_t cnt)
{
	(void)ctx, (void)dg, (void)cnt; /* before the peer table exists */
}

/* Several pinned roots: lws takes one CA file, so concatenate them. */
static const char *wss_roots(struct node_compat *c)
{
	const char *tmp = getenv("TMPDIR");
	char buf[8192];
	FILE *out, *in;
	size_t k;
	int fd;

	if (!c->nroots)
		return NULL;
	if (c->nroots == 1)
		return c->roots[0];
	snprintf(c->bundle, sizeof(c->bundle), "%s/pilotd-roots-XXXXXX", empty(tmp) ? "/tmp" : tmp);
	if ((fd = mkstemp(c->bundle)) < 0 || !(out = fdopen(fd, "w")))
		pilot_fatal("compat: cannot write the -tls-root bundle %s: %s", c->bundle, strerror(errno));
	for (size_t i = 0; i < c->nroots; i++) {
		if (!(in = fopen(c->roots[i], "r")))
			pilot_fatal("-tls-root %s: %s", c->roots[i], strerror(errno));
		while ((k = fread(buf, 1, sizeof(buf), in)) > 0)
			fwrite(buf, 1, k, out);
		fputc('\n', out);
		fclose(in);
	}
	if (fclose(out) != 0)
		pilot_fatal("compat: cannot write the -tls-root bundle %s", c->bundle);
	return c->bundle;
}

void node_compat_up(node *n)
{
	struct node_compat *c = n->compat;
	char err[512];
	wss_config wc = { 0 };

	if (!c || !c->on || n->t)
		return;
	wc.url = n->o.compat_beacon;
	wc.node = n->node_id;
	wc.id = &n->id;
	wc.tls_root = wss_roots(c);
	if (!(n->t = wss_transport_new(n->loop, &wc, drop_early, n, err, sizeof(err))))
		pilot_fatal("compat: %s", err);
	log_info("compat: WebSocket transport to %s node=%u", n->o.compat_beacon, n->node_id);
}

void node_compat_identity_changed(node *n)
{
	if (node_compat_on(n) && n->t)
		wss_transport_set_identity(n->t, &n->id);
}

bool node_compat_on(const node *n)
{
	return n->compat && n->compat->on;
}

const char *node_compat_peer_beacon(const node *n)
{
	if (node_compat_on(n))
		return COMPAT_BEACON_EP;
	return !empty(n->o.beacon) ? n->o.beacon : NULL;
}

void node_compat_info(node *n, json_object *o)
{
	struct node_compat *c = n->compat;
	json_object *w;
	wss_stats ws;

	json_object_object_add(o, "transport", json_object_new_string(
		node_compat_on(n) ? "compat" : c && c->mode == NCM_AUTO ? "deciding" : "udp"));
	json_object_object_add(o, "transport_reason",
			       json_object_new_string(c ? c->reason : "-transport=udp"));
	json_object_object_add(o, "registry_tls", json_object_new_boolean(n->o.registry_tls));
	json_object_object_add(o, "tls_trust", json_object_new_string(pinned(&n->o) ? "pinned" : "system"));
	if (!node_compat_on(n))
		return;
	/* The URL in use (several: failover), and the list. */
	json_object_object_add(o, "beacon",
			       json_object_new_string(n->t ? wss_transport_url(n->t) : n->o.compat_beacon));
	json_object_object_add(o, "compat_beacons", json_object_new_string(n->o.compat_beacon));
	w = json_object_new_object();
	if (n->t) {
		wss_transport_get_stats(n->t, &ws);
		json_object_object_add(w, "failovers", json_object_new_int64((int64_t)ws.url_failovers));
		json_object_object_add(w, "connected", json_object_new_boolean(ws.connected));
		json_object_object_add(w, "dials", json_object_new_int64((int64_t)ws.dials));
		json_object_object_add(w, "auth_ok", json_object_new_int64((int64_t)ws.auth_ok));
		json_object_object_add(w, "auth_failed", json_object_new_int64((int64_t)ws.auth_failed));
		json_object_object_add(w, "disconnects", json_object_new_int64((int64_t)ws.disconnects));
		json_object_object_add(w, "tx_notconn", json_object_new_int64((int64_t)ws.tx_notconn));
		json_object_object_add(w, "tx_oversize", json_object_new_int64((int64_t)ws.tx_oversize));
		json_object_object_add(w, "ping_timeouts", json_object_new_int64((int64_t)ws.ping_timeouts));
		json_object_object_add(w, "backoff_ms", json_object_new_int64(ws.backoff_ms));
		json_object_object_add(w, "own_reader", json_object_new_boolean(ws.own_reader));
	} else {
		json_object_object_add(w, "connected", json_object_new_boolean(false));
	}
	json_object_object_add(o, "compat", w);
}

void node_compat_free(node *n)
{
	struct node_compat *c = n->compat;

	if (!c)
		return;
	if (c->bundle[0])
		unlink(c->bundle);
	free_roots(c->roots);
	regclient_tls_config_free(c->rtls);
	free(c);
	n->compat = NULL;
}
