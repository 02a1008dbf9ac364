/* The control-operation framework (ctlsrv_op.h) shared by the stream, datagram,
 * test and service verbs: allocation, timeout, target resolution, finishing
 * exactly once, and the shutdown that finishes every operation still open. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/conn.h"
#include "daemon/ctlsrv_op.h"
#include "daemon/trust.h"

/* ---- the operation framework ---- */

static void cop_cancelled(ctlsrv_reply *r, void *arg);

static void cop_unlink(cop *o)
{
	node_svc *s = o->n->svc;

	if (o->prev)
		o->prev->next = o->next;
	else if (s && s->ops == o)
		s->ops = o->next;
	if (o->next)
		o->next->prev = o->prev;
	o->prev = o->next = NULL;
}

static void cop_free(cop *o)
{
	cop_unlink(o);
	if (o->timer)
		pilot_loop_del_timer(o->n->loop, o->timer);
	o->timer = 0;
	ctlsrv_resolve_cancel(o->rq);
	if (o->release)
		o->release(o);
	free(o);
}

static int64_t cop_timer(pilot_loop *l, uint64_t id, void *arg)
{
	cop *o = arg;

	(void)l;
	(void)id;
	o->timer = 0;
	if (o->on_timeout)
		o->on_timeout(o);
	else
		cop_err(o, "timeout", "%s%soperation timed out", o->addr, *o->addr ? ": " : "");
	return 0;
}

void cop_set_timeout(cop *o, int64_t timeout_ms)
{
	if (o->timer)
		pilot_loop_del_timer(o->n->loop, o->timer);
	o->timer = timeout_ms > 0 ? pilot_loop_add_timer(o->n->loop, (uint64_t)timeout_ms, cop_timer, o) : 0;
}

void *cop_new(node *n, ctlsrv_reply *r, size_t size, int64_t timeout_ms, void (*release)(cop *o))
{
	cop *o = calloc(1, size);

	if (!o) {
		ctlsrv_reply_err(r, "internal", "out of memory", NULL);
		return NULL;
	}
	o->n = n;
	o->r = r;
	o->release = release;
	o->next = n->svc->ops;
	if (o->next)
		o->next->prev = o;
	n->svc->ops = o;
	cop_set_timeout(o, timeout_ms);
	ctlsrv_reply_on_cancel(r, cop_cancelled, o);
	return o;
}

void cop_ok(cop *o, json_object *data)
{
	ctlsrv_reply_ok(o->r, data);
	cop_free(o);
}

/* What to do about a failed or timed-out operation, only where it applies
 * (issue 15): the connection was up and the peer stopped answering; the registry
 * refused an untrusted target's endpoint (its reason); a trusted peer that does
 * not answer; otherwise (the node did not answer our first packets and we do not
 * trust it) most likely a private node that admits only trusted peers. */
static const char *cop_hint(const cop *o, const char *code, char *buf, size_t len)
{
	const node *n = o->n;
	bool trusted;

	if ((strcmp(code, "connection_failed") && strcmp(code, "timeout")) || !o->target)
		return NULL;
	if (o->established) {
		snprintf(buf, len,
			 "the connection was up, then %s stopped answering (restarted, offline or "
			 "unreachable now): try again; pilotctl ping %s",
			 o->addr, o->addr);
		return buf;
	}
	trusted = n->trust && trust_is_trusted(n->trust, o->target);
	if (!trusted && n->refusal.ms && n->refusal.node == o->target &&
	    pilot_now_ms() - n->refusal.ms < 120000) {
		snprintf(buf, len, "the registry refused to disclose %s's endpoint: %s", o->addr,
			 n->refusal.msg);
		return buf;
	}
	if (trusted) {
		snprintf(buf, len,
			 "%s is trusted but did not answer: it may be offline or unreachable; "
			 "pilotctl ping %s, pilotctl peers shows its path",
			 o->addr, o->addr);
		return buf;
	}
	return "a private node accepts connections only from trusted peers: pilotctl handshake <node>";
}

void cop_err(cop *o, const char *code, const char *fmt, ...)
{
	char msg[512], hint[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ctlsrv_reply_err(o->r, code, msg, cop_hint(o, code, hint, sizeof(hint)));
	cop_free(o);
}

void cop_end(cop *o)
{
	ctlsrv_reply_end(o->r);
	cop_free(o);
}

static void cop_cancelled(ctlsrv_reply *r, void *arg)
{
	cop *o = arg;

	ctlsrv_reply_err(r, "internal", "cancelled", NULL);
	cop_free(o);
}

static void cop_target(cop *o, uint32_t id)
{
	o->target = id;
	pilot_addr_format(pilot_addr_make(0, id), o->addr);
	if (id == o->n->node_id) {
		cop_err(o, "invalid_argument", "%s is this node", o->addr);
		return;
	}
	o->start(o);
}

static void resolved(void *arg, uint32_t id, int err, json_object *reply)
{
	cop *o = arg;

	o->rq = NULL;
	if (err == -ENOENT)
		cop_err(o, "not_found", "hostname not found");
	else if (err)
		cop_err(o, "connection_failed", "registry: %s", strerror(-err));
	else
		cop_target(o, id);
}

void cop_resolve(cop *o, json_object *args, void (*start)(cop *o))
{
	const char *t = ctlsrv_arg_str(args, "target");
	uint32_t id;
	int rc;

	o->start = start;
	if (ctlsrv_arg_node(args, &id) == 0) {
		cop_target(o, id);
		return;
	}
	if (!t || !*t || strlen(t) > 63 || !o->n->reg) {
		cop_err(o, "not_found", "want a node ID, an address (N:NNNN.HHHH.LLLL) or a hostname");
		return;
	}
	if ((o->rq = ctlsrv_resolve_start(o->n, t, resolved, o, &rc)))
		return;
	if (rc == -ENOMEM)
		cop_err(o, "internal", "out of memory");
	else
		cop_err(o, "connection_failed", "registry: %s", strerror(-rc));
}

const char *cop_errname(int err)
{
	err = abs(err);
	if (err == ECONNREFUSED)
		return "connection refused";
	if (err == ETIMEDOUT)
		return "timeout";
	if (err == ECONNRESET)
		return "connection reset";
	return err ? strerror(err) : "connection closed";
}

bool cop_can_start(ctlsrv_reply *r, node *n)
{
	if (ctlsrv_need_up(r, n))
		return false;
	if (n->stopping || !n->svc || !n->conns) {
		ctlsrv_reply_err(r, "unavailable", "the daemon is shutting down", NULL);
		return false;
	}
	return true;
}

static const char *recovery_name(enum stream_recovery r)
{
	return r == STREAM_RECOV_FAST ? "fast" : r == STREAM_RECOV_RTO ? "rto" : "open";
}

json_object *cop_stats_json(const stream_stats *s)
{
	json_object *o = json_object_new_object();

#define I(k, v) json_object_object_add(o, k, json_object_new_int64((int64_t)(v)))
#define D(k, v) json_object_object_add(o, k, json_object_new_double(v))
	I("bytes_sent", s->bytes_sent);
	I("bytes_recv", s->bytes_rcvd);
	I("segs_sent", s->segs_sent);
	I("segs_recv", s->segs_rcvd);
	I("retransmits", s->retransmits);
	I("fast_retx", s->fast_retransmits);
	I("rto_timeouts", s->rto_timeouts);
	I("tlp_probes", s->tlp_probes);
	I("tlp_recoveries", s->tlp_recoveries);
	I("reo_timeouts", s->reo_timeouts);
	I("random_losses", s->random_losses);
	I("sack_sent", s->sack_blocks_sent);
	I("sack_recv", s->sack_blocks_rcvd);
	I("dup_acks", s->dup_acks);
	I("dup_data", s->dup_data);
	I("ooo_segs", s->ooo_segs);
	I("zwp_sent", s->zwp_sent);
	I("cong_win", s->cwnd);
	I("ssthresh", s->ssthresh);
	I("in_flight", s->in_flight);
	D("srtt_ms", s->srtt_us / 1000.0);
	D("rttvar_ms", s->rttvar_us / 1000.0);
	D("min_rtt_ms", s->min_rtt_us / 1000.0);
	D("rto_ms", s->rto_us / 1000.0);
	json_object_object_add(o, "recovery", json_object_new_string(recovery_name(s->recovery)));
	I("hystart_exits", s->hystart_exits);
	I("peer_recv_win", s->peer_window);
	I("mss", s->mss);
#undef I
#undef D
	return o;
}

json_object *cop_conn_stats(const conn *c)
{
	conn_info ci;

	conn_get_info(c, &ci);
	return cop_stats_json(&ci.stats);
}

static const conn_cbs no_cbs;

void cop_drop_conn(conn **cp, bool abort_it)
{
	if (!*cp)
		return;
	conn_set_cbs(*cp, &no_cbs, NULL);
	if (abort_it)
		conn_abort(*cp);
	else
		conn_close(*cp);
	*cp = NULL;
}

bool cop_port_ok(ctlsrv_reply *r, int64_t port, bool allow0)
{
	if (port < (allow0 ? 0 : 1) || port > 65535) {
		ctlsrv_reply_err(r, "invalid_argument", "want a port 1..65535", NULL);
		return false;
	}
	return true;
}

/* ---- shutdown ---- */
void node_svc_down(node *n)
{
	node_svc *s = n->svc;

	if (!s)
		return;
	while (s->ops) {
		ctlsrv_reply_err(s->ops->r, "unavailable", "the daemon is shutting down", NULL);
		cop_free(s->ops);
	}
	svc_services_free(n);
	n->svc = NULL;
	free(s);
}
