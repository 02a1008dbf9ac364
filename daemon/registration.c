/* Registry life cycle of the node: see registration.h.
 *
 * One timer drives everything: while unregistered it retries register every
 * register_retry_ms; once registered it sends a heartbeat every keepalive_ms.
 * The hostname, visibility and tags we asked for are remembered as the wanted
 * state (at the time of asking) so a re-registration can put them back. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <sodium.h>

#include "daemon/registration.h"
#include "lib/addr.h"
#include "lib/jsonwire.h"
#include "lib/log.h"

#define REG_KEEPALIVE_DEFAULT 30000
#define REG_RETRY_DEFAULT 2000
#define REG_MAX_FAILURES 3
#define REG_TRUST_BATCH 1024

struct registration {
	pilot_loop *loop;
	regclient *rc;
	const pilot_identity *id;
	char pk_b64[48];
	char *listen_addr, *owner, *hostname;
	char **tags;
	size_t ntags;
	bool tags_set, pub, task_exec_set, task_exec;
	bool relay_only;
	int64_t keepalive_ms, retry_ms;
	int max_failures;
	registration_callbacks cbs;

	uint32_t node;
	char address[32];
	bool registered, ever_registered, started, stopping;
	bool reg_inflight, hb_inflight, sign_register, stale_retried;
	bool readdr; /* listen_addr changed while a register was in flight */
	int failures;
	uint64_t last_hb_ms;
	uint64_t timer;
};

static int send_register(registration *r);

static uint64_t wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* ---- request building ---- */
static json_object *new_req(const char *type)
{
	json_object *o = json_object_new_object();

	if (o)
		json_object_object_add(o, "type", json_object_new_string(type));
	return o;
}

/* {"type": type, "node_id": ours}; NULL with *err = -ENOTCONN (not registered)
 * or -ENOMEM. */
static json_object *node_req(registration *r, const char *type, int *err)
{
	json_object *q;

	*err = -ENOTCONN;
	if (!r->node)
		return NULL;
	*err = -ENOMEM;
	if (!(q = new_req(type)))
		return NULL;
	jw_set_int(q, "node_id", r->node);
	return q;
}

static const char *tf(bool v)
{
	return v ? "true" : "false";
}

/* Queue a request signed with printf-formatted v2 fields. */
static int send_signed(registration *r, json_object *req, regclient_cb cb, void *arg,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int send_signed(registration *r, json_object *req, regclient_cb cb, void *arg,
		       const char *fmt, ...)
{
	char *fields = NULL;
	va_list ap;
	int n;

	if (!req)
		return -ENOMEM;
	va_start(ap, fmt);
	n = vasprintf(&fields, fmt, ap);
	va_end(ap);
	if (n < 0) {
		json_object_put(req);
		return -ENOMEM;
	}
	n = regclient_request_signed(r->rc, req, fields, cb, arg);
	free(fields);
	return n;
}

static int send_plain(registration *r, json_object *req, regclient_cb cb, void *arg)
{
	if (!req)
		return -ENOMEM;
	return regclient_request(r->rc, req, cb, arg);
}

/* Internal follow-up requests: nobody waits, so just say what failed. */
static void log_result(void *arg, json_object *reply, int err)
{
	const char *what = arg;

	if (err == 0 || err == -ECANCELED)
		return;
	log_warn("registry request failed type=%s code=%s message=\"%s\" err=\"%s\"", what,
		 reply ? jw_get_str(reply, "code") : "-", reply ? jw_get_str(reply, "message") : "",
		 strerror(-err));
}

/* ---- timer ---- */
static int64_t tick(pilot_loop *l, uint64_t id, void *arg);

static void rearm(registration *r, int64_t ms)
{
	pilot_loop_del_timer(r->loop, r->timer);
	r->timer = r->stopping ? 0 : pilot_loop_add_timer(r->loop, ms, tick, r);
}

/* ---- restoring our record ---- */
static int do_set_visibility(registration *r, regclient_cb cb, void *arg)
{
	json_object *q = new_req("set_visibility");

	jw_set_int(q, "node_id", r->node);
	jw_set_bool(q, "public", r->pub);
	return send_signed(r, q, cb, arg, "%u:%s", r->node, tf(r->pub));
}

static int do_set_hostname(registration *r, regclient_cb cb, void *arg)
{
	json_object *q = new_req("set_hostname");
	const char *h = r->hostname ? r->hostname : "";

	jw_set_int(q, "node_id", r->node);
	jw_set_str(q, "hostname", h);
	return send_signed(r, q, cb, arg, "%u:%s", r->node, h);
}

static char *join_tags(registration *r)
{
	size_t len = 1;
	char *s;

	for (size_t i = 0; i < r->ntags; i++)
		len += strlen(r->tags[i]) + 1;
	if (!(s = calloc(1, len)))
		return NULL;
	for (size_t i = 0; i < r->ntags; i++) {
		if (i)
			strcat(s, ",");
		strcat(s, r->tags[i]);
	}
	return s;
}

static int do_set_tags(registration *r, regclient_cb cb, void *arg)
{
	json_object *q = new_req("set_tags"), *a = json_object_new_array();
	char *joined = join_tags(r);
	int n;

	if (!joined) {
		json_object_put(q);
		json_object_put(a);
		return -ENOMEM;
	}
	for (size_t i = 0; i < r->ntags; i++)
		json_object_array_add(a, json_object_new_string(r->tags[i]));
	jw_set_int(q, "node_id", r->node);
	json_object_object_add(q, "tags", a);
	n = send_signed(r, q, cb, arg, "%u:%s", r->node, joined);
	free(joined);
	return n;
}

static int do_set_task_exec(registration *r, regclient_cb cb, void *arg)
{
	json_object *q = new_req("set_task_exec");

	jw_set_int(q, "node_id", r->node);
	jw_set_bool(q, "enabled", r->task_exec);
	return send_signed(r, q, cb, arg, "%u:%s", r->node, tf(r->task_exec));
}

static void restore_trust(registration *r)
{
	uint32_t *ids;
	size_t n;

	if (!r->cbs.trusted_peers || !(ids = calloc(REG_TRUST_BATCH, sizeof(*ids))))
		return;
	n = r->cbs.trusted_peers(r->cbs.arg, ids, REG_TRUST_BATCH);
	if (n > REG_TRUST_BATCH) {
		log_warn("registry: only the first %d trusted peers are re-reported count=%zu",
			 REG_TRUST_BATCH, n);
		n = REG_TRUST_BATCH;
	}
	for (size_t i = 0; i < n; i++)
		if (registration_report_trust(r, ids[i], log_result, "report_trust") < 0)
			log_warn("registry: cannot queue report_trust peer=%u", ids[i]);
	free(ids);
}

/* registry.md §13 step 4, and §2.2 after a re-registration. */
static void after_register(registration *r, bool again)
{
	if (r->pub && do_set_visibility(r, log_result, "set_visibility") < 0)
		log_warn("registry: cannot queue set_visibility");
	if (r->hostname && do_set_hostname(r, log_result, "set_hostname") < 0)
		log_warn("registry: cannot queue set_hostname");
	if (r->tags_set && do_set_tags(r, log_result, "set_tags") < 0)
		log_warn("registry: cannot queue set_tags");
	if (r->task_exec_set && do_set_task_exec(r, log_result, "set_task_exec") < 0)
		log_warn("registry: cannot queue set_task_exec");
	if (again)
		restore_trust(r);
}

/* ---- register ---- */
static bool is_code(json_object *reply, const char *code)
{
	const char *c = reply ? jw_get_str(reply, "code") : NULL;

	return c && !strcmp(c, code);
}

static int send_heartbeat(registration *r);

static void registered_ok(registration *r, json_object *reply)
{
	const char *addr = jw_get_str(reply, "address");
	bool again = r->ever_registered;
	char own[PILOT_ADDR_STRLEN];

	/* regclient_reply_problem checked both (never node 0 or broadcast). */
	r->node = jw_get_u32(reply, "node_id");
	snprintf(r->address, sizeof(r->address), "%s",
		 addr ? addr : pilot_addr_format(pilot_addr_make(0, r->node), own));
	r->registered = r->ever_registered = true;
	r->failures = 0;
	log_info("registered with the registry node_id=%u address=%s again=%d", r->node, r->address, again);
	if (jw_get_str(reply, "hostname_error"))
		log_warn("registry refused the hostname message=\"%s\"", jw_get_str(reply, "hostname_error"));
	after_register(r, again);
	rearm(r, r->keepalive_ms);
	/* The registry knew our key and applies the new address only once the key
	 * has signed on this connection (rendezvous/SIGNATURES.md): heartbeat now
	 * instead of a keep-alive later. */
	if (jw_get_bool(reply, "pending") && !r->hb_inflight && send_heartbeat(r) < 0)
		log_warn("registry: cannot queue heartbeat");
	if (r->cbs.registered)
		r->cbs.registered(r->cbs.arg, r->node, r->address, again);
}

static void on_register(void *arg, json_object *reply, int err)
{
	registration *r = arg;

	if (err == -ECANCELED)
		return;
	r->reg_inflight = false;
	if (r->stopping)
		return;
	if (r->readdr) { /* it carried the old endpoint: register again */
		r->readdr = false;
		if (send_register(r) == 0)
			return;
	}
	if (err == 0) {
		r->stale_retried = false;
		registered_ok(r, reply);
		return;
	}
	/* A strict registry wants register signed (v2); say so once and retry. */
	if (err == -EREMOTEIO && !r->sign_register &&
	    (is_code(reply, "bad_signature") || is_code(reply, "stale_signature"))) {
		r->sign_register = true;
		regclient_set_sig_v2(r->rc, true);
		if (send_register(r) == 0)
			return;
	} else if (err == -EREMOTEIO && is_code(reply, "stale_signature") && !r->stale_retried) {
		r->stale_retried = true; /* the clock offset was just learnt from the message */
		if (send_register(r) == 0)
			return;
	}
	log_result("register", reply, err);
}

static int send_register(registration *r)
{
	json_object *q = new_req("register");
	const char *la = r->listen_addr ? r->listen_addr : "";
	int n;

	if (!q)
		return -ENOMEM;
	jw_set_str(q, "public_key", r->pk_b64);
	if (r->listen_addr)
		jw_set_str(q, "listen_addr", la);
	if (r->owner)
		jw_set_str(q, "owner", r->owner);
	if (r->relay_only)
		jw_set_bool(q, "relay_only", true);
	if (r->sign_register && regclient_sig_v2(r->rc))
		n = send_signed(r, q, on_register, r, "%s:%s", r->pk_b64, la);
	else
		n = send_plain(r, q, on_register, r);
	if (n == 0)
		r->reg_inflight = true;
	return n;
}

/* ---- heartbeat ---- */
static void on_poll(void *arg, json_object *reply, int err)
{
	registration *r = arg;
	json_object *rq, *rs;

	if (err) {
		log_result("poll_handshakes", reply, err);
		return;
	}
	rq = json_object_object_get(reply, "requests");
	rs = json_object_object_get(reply, "responses");
	if (r->cbs.handshakes && ((json_object_is_type(rq, json_type_array) && json_object_array_length(rq)) ||
				  (json_object_is_type(rs, json_type_array) && json_object_array_length(rs))))
		r->cbs.handshakes(r->cbs.arg, reply);
}

static void heartbeat_failed(registration *r, json_object *reply, int err)
{
	log_result("heartbeat", reply, err);
	/* A registry that does not know us (another one after a failover, or one
	 * that lost its state): register at once, the key keeps the ID where the
	 * state is shared. */
	if (is_code(reply, "not_found"))
		r->failures = r->max_failures;
	else if (++r->failures < r->max_failures)
		return;
	log_warn("registry: %d heartbeats failed in a row; registering again node_id=%u",
		 r->failures, r->node);
	r->registered = false;
	r->failures = 0;
	rearm(r, r->retry_ms);
	if (!r->reg_inflight && send_register(r) < 0)
		log_warn("registry: cannot queue register");
}

static void on_heartbeat(void *arg, json_object *reply, int err)
{
	registration *r = arg;

	if (err == -ECANCELED)
		return;
	r->hb_inflight = false;
	if (r->stopping || !r->registered)
		return;
	if (err) {
		heartbeat_failed(r, reply, err);
		return;
	}
	r->failures = 0;
	r->last_hb_ms = wall_ms();
	if (registration_poll_handshakes(r, on_poll, r) < 0)
		log_warn("registry: cannot queue poll_handshakes");
}

static int send_heartbeat(registration *r)
{
	json_object *q = new_req("heartbeat");
	int n;

	if (!q)
		return -ENOMEM;
	jw_set_int(q, "node_id", r->node);
	n = send_signed(r, q, on_heartbeat, r, "%u", r->node);
	if (n == 0)
		r->hb_inflight = true;
	return n;
}

/* The registry client moved to another registry (failover): prove we are
 * alive there now rather than at the next keepalive; a heartbeat refused as
 * not_found registers again (heartbeat_failed). */
static void on_switch(void *arg, const char *addr)
{
	registration *r = arg;

	log_info("registry: now using registry=%s node_id=%u", addr, r->node);
	if (r->stopping)
		return;
	if (r->registered && !r->hb_inflight && send_heartbeat(r) < 0)
		log_warn("registry: cannot queue heartbeat");
	else if (!r->registered && !r->reg_inflight && send_register(r) < 0)
		log_warn("registry: cannot queue register");
}

static int64_t tick(pilot_loop *l, uint64_t id, void *arg)
{
	registration *r = arg;

	(void)l, (void)id;
	if (r->stopping) {
		r->timer = 0;
		return 0;
	}
	if (!r->registered) {
		if (!r->reg_inflight && send_register(r) < 0)
			log_warn("registry: cannot queue register");
		return r->retry_ms;
	}
	if (!r->hb_inflight && send_heartbeat(r) < 0)
		heartbeat_failed(r, NULL, -ENOBUFS);
	return r->registered ? r->keepalive_ms : r->retry_ms;
}

/* ---- life cycle ---- */
static char *dup_opt(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

registration *registration_new(pilot_loop *l, const registration_config *cfg,
			       const registration_callbacks *cbs, char *err, size_t errlen)
{
	registration *r;
	regclient_config cc = cfg->client;

	if (!cfg->id) {
		snprintf(err, errlen, "registration needs an identity");
		return NULL;
	}
	if (!(r = calloc(1, sizeof(*r)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	cc.addr = cfg->registry;
	cc.id = cfg->id;
	cc.on_switch = on_switch;
	cc.on_switch_arg = r;
	if (!(r->rc = regclient_new(l, &cc, err, errlen))) {
		free(r);
		return NULL;
	}
	r->loop = l;
	r->id = cfg->id;
	pilot_b64_encode(cfg->id->pk, sizeof(cfg->id->pk), r->pk_b64, sizeof(r->pk_b64));
	r->listen_addr = dup_opt(cfg->listen_addr);
	r->owner = dup_opt(cfg->owner);
	r->hostname = dup_opt(cfg->hostname);
	r->pub = cfg->public_node;
	r->relay_only = cfg->relay_only;
	r->keepalive_ms = cfg->keepalive_ms > 0 ? cfg->keepalive_ms : REG_KEEPALIVE_DEFAULT;
	r->retry_ms = cfg->register_retry_ms > 0 ? cfg->register_retry_ms : REG_RETRY_DEFAULT;
	if (r->retry_ms > r->keepalive_ms)
		r->retry_ms = r->keepalive_ms;
	r->max_failures = cfg->max_failures > 0 ? cfg->max_failures : REG_MAX_FAILURES;
	if (cbs)
		r->cbs = *cbs;
	return r;
}

int registration_start(registration *r)
{
	int n;

	if (r->started)
		return -EALREADY;
	if ((n = send_register(r)) < 0)
		return n;
	r->started = true;
	rearm(r, r->retry_ms);
	return r->timer ? 0 : -ENOMEM;
}

static void free_tags(registration *r)
{
	for (size_t i = 0; i < r->ntags; i++)
		free(r->tags[i]);
	free(r->tags);
	r->tags = NULL;
	r->ntags = 0;
}

void registration_free(registration *r)
{
	if (!r)
		return;
	r->stopping = true;
	pilot_loop_del_timer(r->loop, r->timer);
	regclient_free(r->rc);
	free(r->listen_addr);
	free(r->owner);
	free(r->hostname);
	free_tags(r);
	free(r);
}

struct dereg_ctx {
	registration *r;
	regclient_cb cb;
	void *arg;
};

static void on_deregister(void *arg, json_object *reply, int err)
{
	struct dereg_ctx *d = arg;

	if (err == 0) {
		d->r->registered = false;
		log_info("deregistered from the registry node_id=%u", d->r->node);
	}
	if (d->cb)
		d->cb(d->arg, reply, err);
	free(d);
}

int registration_deregister(registration *r, regclient_cb cb, void *arg)
{
	struct dereg_ctx *d;
	json_object *q;
	int n;

	if (!r->node)
		return -ENOTCONN;
	if (!(d = malloc(sizeof(*d))) || !(q = new_req("deregister"))) {
		free(d);
		return -ENOMEM;
	}
	r->stopping = true;
	pilot_loop_del_timer(r->loop, r->timer);
	r->timer = 0;
	d->r = r;
	d->cb = cb;
	d->arg = arg;
	jw_set_int(q, "node_id", r->node);
	if ((n = send_signed(r, q, on_deregister, d, "%u", r->node)) < 0)
		free(d);
	return n;
}

/* ---- state ---- */
bool registration_registered(const registration *r)
{
	return r->registered;
}

uint32_t registration_node_id(const registration *r)
{
	return r->node;
}

const char *registration_address(const registration *r)
{
	return r->address;
}

uint64_t registration_last_heartbeat(const registration *r)
{
	return r->last_hb_ms;
}

int64_t registration_clock_offset(const registration *r)
{
	return regclient_clock_offset(r->rc);
}

int registration_heartbeat_failures(const registration *r)
{
	return r->failures;
}

regclient *registration_client(registration *r)
{
	return r->rc;
}

/* ---- our endpoint ---- */
int registration_set_listen_addr(registration *r, const char *addr)
{
	char *s = strdup(addr);

	if (!s)
		return -ENOMEM;
	free(r->listen_addr);
	r->listen_addr = s;
	if (!r->started || r->stopping)
		return 0;
	if (r->reg_inflight) {
		r->readdr = true;
		return 0;
	}
	return send_register(r);
}

/* ---- lookups ---- */
int registration_lookup(registration *r, uint32_t node, regclient_cb cb, void *arg)
{
	json_object *q = new_req("lookup");

	if (q)
		jw_set_int(q, "node_id", node);
	return send_plain(r, q, cb, arg);
}

int registration_resolve(registration *r, uint32_t node, regclient_cb cb, void *arg)
{
	json_object *q;

	if (!r->node)
		return -ENOTCONN;
	if (!(q = new_req("resolve")))
		return -ENOMEM;
	jw_set_int(q, "node_id", node);
	jw_set_int(q, "requester_id", r->node);
	return send_signed(r, q, cb, arg, "%u:%u", r->node, node);
}

int registration_resolve_hostname(registration *r, const char *hostname, regclient_cb cb, void *arg)
{
	json_object *q;

	if (!hostname || !*hostname)
		return -EINVAL;
	if (!(q = new_req("resolve_hostname")))
		return -ENOMEM;
	jw_set_str(q, "hostname", hostname);
	return send_plain(r, q, cb, arg);
}

/* ---- our own record ---- */
int registration_set_hostname(registration *r, const char *hostname, regclient_cb cb, void *arg)
{
	char *h = NULL;

	if (!r->node)
		return -ENOTCONN;
	if (hostname && *hostname && !(h = strdup(hostname)))
		return -ENOMEM;
	free(r->hostname);
	r->hostname = h;
	return do_set_hostname(r, cb, arg);
}

int registration_set_visibility(registration *r, bool public_node, regclient_cb cb, void *arg)
{
	if (!r->node)
		return -ENOTCONN;
	r->pub = public_node;
	return do_set_visibility(r, cb, arg);
}

int registration_set_tags(registration *r, const char *const *tags, size_t n,
			  regclient_cb cb, void *arg)
{
	char **t;

	if (!r->node)
		return -ENOTCONN;
	if (n > 64 || (n && !tags))
		return -EINVAL;
	if (!(t = calloc(n ? n : 1, sizeof(*t))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!tags[i] || !(t[i] = strdup(tags[i]))) {
			while (i--)
				free(t[i]);
			free(t);
			return tags[i] ? -ENOMEM : -EINVAL;
		}
	}
	free_tags(r);
	r->tags = t;
	r->ntags = n;
	r->tags_set = true;
	return do_set_tags(r, cb, arg);
}

int registration_set_task_exec(registration *r, bool enabled, regclient_cb cb, void *arg)
{
	if (!r->node)
		return -ENOTCONN;
	r->task_exec = enabled;
	r->task_exec_set = true;
	return do_set_task_exec(r, cb, arg);
}

/* ---- trust and the handshake relay ---- */
static int trust_op(registration *r, const char *type, uint32_t peer, regclient_cb cb, void *arg)
{
	json_object *q;
	int err;

	if (!(q = node_req(r, type, &err)))
		return err;
	jw_set_int(q, "peer_id", peer);
	return send_signed(r, q, cb, arg, "%u:%u", r->node, peer);
}

int registration_report_trust(registration *r, uint32_t peer, regclient_cb cb, void *arg)
{
	return trust_op(r, "report_trust", peer, cb, arg);
}

int registration_revoke_trust(registration *r, uint32_t peer, regclient_cb cb, void *arg)
{
	return trust_op(r, "revoke_trust", peer, cb, arg);
}

int registration_request_handshake(registration *r, uint32_t to, const char *justification,
				   regclient_cb cb, void *arg)
{
	uint8_t h[crypto_hash_sha256_BYTES];
	char hex[2 * sizeof(h) + 1];
	const char *j = justification ? justification : "";
	json_object *q;

	if (!r->node)
		return -ENOTCONN;
	if (!(q = new_req("request_handshake")))
		return -ENOMEM;
	crypto_hash_sha256(h, (const uint8_t *)j, strlen(j));
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	jw_set_int(q, "from_node_id", r->node);
	jw_set_int(q, "to_node_id", to);
	jw_set_str(q, "justification", j);
	return send_signed(r, q, cb, arg, "%u:%u:%s", r->node, to, hex);
}

/* respond_handshake / respond_invite: accept or reject what id offered. */
static int respond(registration *r, const char *type, const char *key, uint32_t id, bool accept,
		   regclient_cb cb, void *arg)
{
	json_object *q;
	int err;

	if (!(q = node_req(r, type, &err)))
		return err;
	jw_set_int(q, key, id);
	jw_set_bool(q, "accept", accept);
	return send_signed(r, q, cb, arg, "%u:%u:%s", r->node, id, tf(accept));
}

int registration_respond_handshake(registration *r, uint32_t peer, bool accept, regclient_cb cb, void *arg)
{
	return respond(r, "respond_handshake", "peer_id", peer, accept, cb, arg);
}

static int self_op(registration *r, const char *type, regclient_cb cb, void *arg)
{
	json_object *q;
	int err;

	if (!(q = node_req(r, type, &err)))
		return err;
	return send_signed(r, q, cb, arg, "%u", r->node);
}

int registration_rotate_key(registration *r, const uint8_t new_pk[32], regclient_cb cb, void *arg)
{
	json_object *q;
	char nk[48];

	if (!r->node)
		return -ENOTCONN;
	pilot_b64_encode(new_pk, 32, nk, sizeof(nk));
	if (!(q = new_req("rotate_key")))
		return -ENOMEM;
	jw_set_int(q, "node_id", r->node);
	jw_set_str(q, "new_public_key", nk);
	return send_signed(r, q, cb, arg, "%u:%s", r->node, nk);
}

void registration_identity_changed(registration *r)
{
	pilot_b64_encode(r->id->pk, sizeof(r->id->pk), r->pk_b64, sizeof(r->pk_b64));
}

int registration_poll_handshakes(registration *r, regclient_cb cb, void *arg)
{
	return self_op(r, "poll_handshakes", cb, arg);
}

/* ---- networks ---- */
static void add_opt_str(json_object *q, const char *k, const char *v)
{
	if (v && *v)
		jw_set_str(q, k, v);
}

int registration_create_network(registration *r, const char *name, const char *join_rule,
				const char *token, const char *admin_token,
				regclient_cb cb, void *arg)
{
	json_object *q;

	if (!r->node)
		return -ENOTCONN;
	if (!name || !*name || strchr(name, ':'))
		return -EINVAL;
	if (!(q = new_req("create_network")))
		return -ENOMEM;
	jw_set_int(q, "node_id", r->node);
	jw_set_str(q, "name", name);
	add_opt_str(q, "join_rule", join_rule);
	add_opt_str(q, "token", token);
	add_opt_str(q, "admin_token", admin_token);
	return send_signed(r, q, cb, arg, "%u:%s:%s", r->node, name,
			   join_rule && *join_rule ? join_rule : "");
}

static int member_op(registration *r, const char *type, uint16_t net, const char *token,
		     const char *admin_token, regclient_cb cb, void *arg)
{
	json_object *q;
	int err;

	if (!(q = node_req(r, type, &err)))
		return err;
	jw_set_int(q, "network_id", net);
	add_opt_str(q, "token", token);
	add_opt_str(q, "admin_token", admin_token);
	return send_signed(r, q, cb, arg, "%u:%u", r->node, net);
}

int registration_join_network(registration *r, uint16_t net, const char *token,
			      const char *admin_token, regclient_cb cb, void *arg)
{
	return member_op(r, "join_network", net, token, admin_token, cb, arg);
}

int registration_leave_network(registration *r, uint16_t net, const char *admin_token,
			       regclient_cb cb, void *arg)
{
	return member_op(r, "leave_network", net, NULL, admin_token, cb, arg);
}

int registration_invite(registration *r, uint16_t net, uint32_t target, regclient_cb cb, void *arg)
{
	json_object *q;

	if (!r->node)
		return -ENOTCONN;
	if (!(q = new_req("invite_to_network")))
		return -ENOMEM;
	jw_set_int(q, "inviter_id", r->node);
	jw_set_int(q, "network_id", net);
	jw_set_int(q, "target_node_id", target);
	return send_signed(r, q, cb, arg, "%u:%u:%u", r->node, net, target);
}

int registration_poll_invites(registration *r, regclient_cb cb, void *arg)
{
	return self_op(r, "poll_invites", cb, arg);
}

int registration_respond_invite(registration *r, uint16_t net, bool accept,
				regclient_cb cb, void *arg)
{
	return respond(r, "respond_invite", "network_id", net, accept, cb, arg);
}

int registration_list_networks(registration *r, regclient_cb cb, void *arg)
{
	return send_plain(r, new_req("list_networks"), cb, arg);
}

int registration_list_nodes(registration *r, uint16_t net, regclient_cb cb, void *arg)
{
	json_object *q = new_req("list_nodes");

	if (q)
		jw_set_int(q, "network_id", net);
	return send_plain(r, q, cb, arg);
}
