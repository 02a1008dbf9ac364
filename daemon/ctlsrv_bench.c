/* Measuring control verbs over the connection table: bench, traceroute, and the
 * hidden verbs the integration tests and scripts/bench use (echo-rtt, echo-many,
 * test-source, test-sink). Every stream carries the same byte pattern so the
 * receiving side can check what it got. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "stream/conn.h"
#include "daemon/ctlsrv_op.h"
#include "daemon/ctlsrv_verbs.h"

#define PROGRESS_MS 250

static uint8_t scratch[1 << 16];
static uint8_t pattern[1 << 16]; /* byte i = i % 251, continued by offset */

/* pattern bytes for stream offset off (the pattern repeats every 251 bytes) */
static const uint8_t *pattern_at(uint64_t off, size_t *len)
{
	size_t start = (size_t)(off % 251);

	if (!pattern[1]) /* first use */
		for (size_t i = 0; i < sizeof(pattern); i++)
			pattern[i] = (uint8_t)(i % 251);
	if (*len > sizeof(pattern) - start)
		*len = sizeof(pattern) - start;
	return pattern + start;
}

/* ---- bench: size bytes through the echo port ---- */
typedef struct bench_op {
	cop o;
	conn *c;
	uint64_t total, sent, recvd;
	uint64_t t0, t_sent, t_done;
	uint64_t progress_timer;
	bool progress;
} bench_op;

static void bench_release(cop *o)
{
	bench_op *b = (bench_op *)o;

	if (b->progress_timer)
		pilot_loop_del_timer(o->n->loop, b->progress_timer);
	cop_drop_conn(&b->c, b->recvd < b->total);
}

static double mibps(uint64_t bytes, uint64_t us)
{
	return us ? (double)bytes / 1048576.0 / ((double)us / 1e6) : 0;
}

static void bench_finish(bench_op *b)
{
	json_object *o = json_object_new_object();
	uint64_t send_us = b->t_sent - b->t0, total_us = b->t_done - b->t0;

	json_object_object_add(o, "target", json_object_new_string(b->o.addr));
	json_object_object_add(o, "sent_bytes", json_object_new_int64((int64_t)b->sent));
	json_object_object_add(o, "recv_bytes", json_object_new_int64((int64_t)b->recvd));
	json_object_object_add(o, "send_duration_ms", json_object_new_double(send_us / 1000.0));
	json_object_object_add(o, "total_duration_ms", json_object_new_double(total_us / 1000.0));
	json_object_object_add(o, "send_mbps", json_object_new_double(mibps(b->sent, send_us)));
	json_object_object_add(o, "total_mbps", json_object_new_double(mibps(b->recvd, total_us)));
	json_object_object_add(o, "stats", cop_conn_stats(b->c));
	cop_ok(&b->o, o);
}

static void bench_pump(void *arg, conn *c)
{
	bench_op *b = arg;

	while (b->sent < b->total) {
		size_t len = b->total - b->sent > sizeof(pattern) ? sizeof(pattern) : (size_t)(b->total - b->sent);
		const uint8_t *p = pattern_at(b->sent, &len);
		size_t w = conn_write(c, p, len);

		b->sent += w;
		if (w < len)
			return;
	}
	if (!b->t_sent)
		b->t_sent = pilot_now_us();
}

static void bench_readable(void *arg, conn *c)
{
	bench_op *b = arg;
	size_t len;

	while ((len = conn_read(c, scratch, sizeof(scratch))) > 0)
		b->recvd += len;
	if (b->recvd >= b->total) {
		b->t_done = pilot_now_us();
		if (!b->t_sent)
			b->t_sent = b->t_done;
		bench_finish(b);
	} else if (conn_eof(c)) {
		cop_err(&b->o, "connection_failed", "%s: echo closed after %llu of %llu bytes", b->o.addr,
			(unsigned long long)b->recvd, (unsigned long long)b->total);
	}
}

static void bench_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	bench_op *b = arg;

	(void)old;
	if (now == STREAM_ESTABLISHED && !b->t0) {
		b->t0 = pilot_now_us();
		bench_pump(b, c);
	} else if (now == STREAM_CLOSED) {
		cop_err(&b->o, abs(err) == ETIMEDOUT ? "timeout" : "connection_failed", "%s:7: %s", b->o.addr,
			cop_errname(err));
	}
}

static const conn_cbs bench_cbs = { bench_readable, bench_pump, bench_state };

static int64_t bench_progress(pilot_loop *l, uint64_t id, void *arg)
{
	bench_op *b = arg;
	json_object *o = json_object_new_object();

	(void)l;
	(void)id;
	json_object_object_add(o, "sent_bytes", json_object_new_int64((int64_t)b->sent));
	json_object_object_add(o, "recv_bytes", json_object_new_int64((int64_t)b->recvd));
	json_object_object_add(o, "elapsed_ms",
			       json_object_new_double(b->t0 ? (pilot_now_us() - b->t0) / 1000.0 : 0));
	ctlsrv_reply_stream(b->o.r, o);
	return PROGRESS_MS;
}

static void bench_start(cop *o)
{
	bench_op *b = (bench_op *)o;
	int err = 0;

	b->c = conn_dial(o->n->conns, pilot_addr_make(0, o->target), PILOT_PORT_ECHO, &bench_cbs, b, &err);
	if (!b->c) {
		cop_err(o, "connection_failed", "%s:7: %s", o->addr, strerror(-err));
		return;
	}
	if (b->progress)
		b->progress_timer = pilot_loop_add_timer(o->n->loop, PROGRESS_MS, bench_progress, b);
}

static void bench_timeout(cop *o)
{
	bench_op *b = (bench_op *)o;

	cop_err(o, "timeout", "%s: bench timed out after sending %llu and receiving %llu of %llu bytes",
		o->addr, (unsigned long long)b->sent, (unsigned long long)b->recvd,
		(unsigned long long)b->total);
}

void verb_bench(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	json_object *v;
	double mb = 1.0;
	int64_t timeout = ctlsrv_arg_timeout(args, 120000);
	bench_op *b;

	if (json_object_object_get_ex(args, "size_mb", &v))
		mb = json_object_get_double(v);
	if (!(mb > 0 && mb <= 4096) || timeout <= 0) {
		ctlsrv_reply_err(r, "invalid_argument",
				 "size_mb must be above 0 and at most 4096, timeout positive", NULL);
		return;
	}
	if (!cop_can_start(r, n))
		return;
	if (!(b = cop_new(n, r, sizeof(*b), timeout, bench_release)))
		return;
	b->o.on_timeout = bench_timeout;
	b->total = (uint64_t)(mb * 1048576.0);
	if (!b->total)
		b->total = 1;
	b->progress = ctlsrv_arg_bool(args, "progress") || ctlsrv_arg_bool(args, "stream");
	cop_resolve(&b->o, args, bench_start);
}

/* ---- traceroute / echo-rtt: sequential round trips on one echo stream ---- */
typedef struct rtt_op {
	cop o;
	conn *c;
	bool trace;
	int count, done;
	size_t size, got;
	uint64_t t_dial, t_send;
	double setup_ms, min_ms, max_ms, sum_ms;
	json_object *samples;
} rtt_op;

static void rtt_release(cop *o)
{
	rtt_op *p = (rtt_op *)o;

	cop_drop_conn(&p->c, p->done < p->count);
	json_object_put(p->samples);
}

static json_object *rtt_base(rtt_op *p)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "target", json_object_new_string(p->o.addr));
	json_object_object_add(o, "setup_ms", json_object_new_double(p->setup_ms));
	return o;
}

static void rtt_finish(rtt_op *p, const char *error)
{
	json_object *o = rtt_base(p);

	if (p->trace) {
		json_object_object_add(o, "rtt_samples", json_object_get(p->samples));
	} else {
		json_object_object_add(o, "count", json_object_new_int(p->done));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)p->size));
		json_object_object_add(o, "min_ms", json_object_new_double(p->done ? p->min_ms : 0));
		json_object_object_add(o, "mean_ms", json_object_new_double(p->done ? p->sum_ms / p->done : 0));
		json_object_object_add(o, "max_ms", json_object_new_double(p->max_ms));
		if (p->c)
			json_object_object_add(o, "stats", cop_conn_stats(p->c));
	}
	if (error)
		json_object_object_add(o, "error", json_object_new_string(error));
	cop_ok(&p->o, o);
}

static void rtt_send(rtt_op *p)
{
	size_t len = p->size;

	const uint8_t *b = pattern_at(0, &len);

	p->got = 0;
	p->t_send = pilot_now_us();
	if (conn_write(p->c, b, len) != p->size)
		rtt_finish(p, "send buffer full");
}

static void rtt_readable(void *arg, conn *c)
{
	rtt_op *p = arg;
	size_t len;

	while ((len = conn_read(c, scratch, sizeof(scratch))) > 0)
		p->got += len;
	if (p->got >= p->size) {
		double ms = (pilot_now_us() - p->t_send) / 1000.0;

		if (p->trace) {
			json_object *s = json_object_new_object();

			json_object_object_add(s, "rtt_ms", json_object_new_double(ms));
			json_object_object_add(s, "bytes", json_object_new_int64((int64_t)p->size));
			json_object_array_add(p->samples, s);
		}
		if (!p->done || ms < p->min_ms)
			p->min_ms = ms;
		if (ms > p->max_ms)
			p->max_ms = ms;
		p->sum_ms += ms;
		if (++p->done >= p->count)
			rtt_finish(p, NULL);
		else
			rtt_send(p);
	} else if (conn_eof(c)) {
		rtt_finish(p, "echo closed the stream");
	}
}

static void rtt_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	rtt_op *p = arg;

	(void)c;
	(void)old;
	if (now == STREAM_ESTABLISHED && !p->setup_ms) {
		p->setup_ms = (pilot_now_us() - p->t_dial) / 1000.0;
		rtt_send(p);
	} else if (now == STREAM_CLOSED) {
		cop_drop_conn(&p->c, true);
		if (!p->setup_ms)
			cop_err(&p->o, abs(err) == ETIMEDOUT ? "timeout" : "connection_failed", "%s:7: %s",
				p->o.addr, cop_errname(err));
		else
			rtt_finish(p, cop_errname(err));
	}
}

static const conn_cbs rtt_cbs = { .on_readable = rtt_readable, .on_state = rtt_state };

static void rtt_timeout(cop *o)
{
	rtt_op *p = (rtt_op *)o;

	if (!p->setup_ms) {
		cop_err(o, "timeout", "%s:7: connection not established", o->addr);
		return;
	}
	if (p->trace) {
		json_object *s = json_object_new_object();

		json_object_object_add(s, "error", json_object_new_string("timeout"));
		json_object_array_add(p->samples, s);
	}
	rtt_finish(p, "timeout");
}

static void rtt_start(cop *o)
{
	rtt_op *p = (rtt_op *)o;
	int err = 0;

	p->t_dial = pilot_now_us();
	p->c = conn_dial(o->n->conns, pilot_addr_make(0, o->target), PILOT_PORT_ECHO, &rtt_cbs, p, &err);
	if (!p->c) {
		cop_err(o, "connection_failed", "%s:7: %s", o->addr, strerror(-err));
		return;
	}
	conn_set_nodelay(p->c, true);
}

static void rtt_begin(ctlsrv_reply *r, json_object *args, node *n, bool trace)
{
	int64_t timeout = ctlsrv_arg_timeout(args, 30000);
	int64_t count = trace ? 3 : ctlsrv_arg_int(args, "count", 200);
	int64_t size = trace ? 64 : ctlsrv_arg_int(args, "size", 100);
	rtt_op *p;

	if (timeout <= 0 || count < 1 || count > 100000 || size < 1 || size > 65536) {
		ctlsrv_reply_err(r, "invalid_argument",
				 "want a positive timeout, count 1..100000, size 1..65536", NULL);
		return;
	}
	if (!cop_can_start(r, n))
		return;
	if (!(p = cop_new(n, r, sizeof(*p), timeout, rtt_release)))
		return;
	p->o.on_timeout = rtt_timeout;
	p->trace = trace;
	p->count = (int)count;
	p->size = (size_t)size;
	p->samples = json_object_new_array();
	cop_resolve(&p->o, args, rtt_start);
}

void verb_traceroute(ctlsrv_reply *r, json_object *args, void *arg)
{
	rtt_begin(r, args, arg, true);
}

void verb_echo_rtt(ctlsrv_reply *r, json_object *args, void *arg)
{
	rtt_begin(r, args, arg, false);
}

/* ---- echo-many: N concurrent echo streams, each verified ---- */
typedef struct many_op many_op;
typedef struct many_conn {
	many_op *op;
	conn *c;
	uint64_t sent, got;
	bool ok, failed, est;
} many_conn;

struct many_op {
	cop o;
	int streams, dialed, open, max_open, ok, failed, burst;
	int64_t interval_ms;
	size_t bytes;
	uint64_t t0, dial_timer;
	many_conn *mc;
	json_object *errors;
};

static void many_release(cop *o)
{
	many_op *p = (many_op *)o;

	if (p->dial_timer)
		pilot_loop_del_timer(o->n->loop, p->dial_timer);
	for (int i = 0; i < p->dialed; i++)
		cop_drop_conn(&p->mc[i].c, !p->mc[i].ok);
	free(p->mc);
	json_object_put(p->errors);
}

static void many_finish(many_op *p, bool timed_out)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "target", json_object_new_string(p->o.addr));
	json_object_object_add(o, "streams", json_object_new_int(p->streams));
	json_object_object_add(o, "ok", json_object_new_int(p->ok));
	json_object_object_add(o, "failed", json_object_new_int(p->failed));
	json_object_object_add(o, "max_open", json_object_new_int(p->max_open));
	json_object_object_add(o, "duration_ms", json_object_new_double((pilot_now_us() - p->t0) / 1000.0));
	json_object_object_add(o, "timeout", json_object_new_boolean(timed_out));
	json_object_object_add(o, "errors", json_object_get(p->errors));
	cop_ok(&p->o, o);
}

static void many_timeout(cop *o)
{
	many_finish((many_op *)o, true);
}

static void many_settle(many_conn *m, const char *err)
{
	many_op *p = m->op;

	if (m->ok || m->failed)
		return;
	if (err) {
		m->failed = true;
		p->failed++;
		if (json_object_array_length(p->errors) < 10)
			json_object_array_add(p->errors, json_object_new_string(err));
	} else {
		m->ok = true;
		p->ok++;
	}
	/* streams stay open until the end: all of them are concurrent */
	if (p->ok + p->failed >= p->streams)
		many_finish(p, false);
}

static void many_pump(void *arg, conn *c)
{
	many_conn *m = arg;
	size_t len, w;
	const uint8_t *b;

	while (m->sent < m->op->bytes) {
		len = m->op->bytes - m->sent;
		b = pattern_at(m->sent + (size_t)(m - m->op->mc), &len);
		w = conn_write(c, b, len);
		m->sent += w;
		if (w < len)
			return;
	}
}

static void many_readable(void *arg, conn *c)
{
	many_conn *m = arg;
	size_t len;
	uint64_t idx = (uint64_t)(m - m->op->mc);

	while ((len = conn_read(c, scratch, sizeof(scratch))) > 0) {
		size_t plen = len;
		const uint8_t *want = pattern_at(m->got + idx, &plen);

		if (plen < len || memcmp(scratch, want, len)) {
			many_settle(m, "echoed data differs");
			return;
		}
		m->got += len;
	}
	if (m->got >= m->op->bytes)
		many_settle(m, NULL);
	else if (conn_eof(c))
		many_settle(m, "echo closed early");
}

static void many_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	many_conn *m = arg;
	many_op *p = m->op;

	(void)old;
	if (now == STREAM_ESTABLISHED) {
		m->est = true;
		if (++p->open > p->max_open)
			p->max_open = p->open;
		many_pump(m, c);
	} else if (now == STREAM_CLOSED) {
		if (m->est)
			p->open--;
		m->est = false;
		cop_drop_conn(&m->c, true);
		many_settle(m, cop_errname(err));
	}
}

static const conn_cbs many_cbs = { many_readable, many_pump, many_state };

static int64_t many_dial(pilot_loop *l, uint64_t id, void *arg)
{
	many_op *p = arg;
	int n = p->dialed ? 1 : p->burst, err;

	(void)l;
	(void)id;
	p->dial_timer = 0;
	while (n-- > 0 && p->dialed < p->streams) {
		many_conn *m = &p->mc[p->dialed++];

		m->op = p;
		err = 0;
		m->c = conn_dial(p->o.n->conns, pilot_addr_make(0, p->o.target), PILOT_PORT_ECHO, &many_cbs, m, &err);
		if (!m->c) {
			bool last = p->ok + p->failed + 1 >= p->streams;

			many_settle(m, strerror(-err));
			if (last)
				return 0; /* p finished */
		}
	}
	if (p->dialed < p->streams)
		p->dial_timer = pilot_loop_add_timer(p->o.n->loop, (uint64_t)p->interval_ms, many_dial, p);
	return 0;
}

static void many_start(cop *o)
{
	many_op *p = (many_op *)o;

	p->t0 = pilot_now_us();
	many_dial(o->n->loop, 0, p);
}

void verb_echo_many(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	int64_t timeout = ctlsrv_arg_timeout(args, 60000), streams = ctlsrv_arg_int(args, "streams", 200),
		bytes = ctlsrv_arg_int(args, "bytes", 4096), burst = ctlsrv_arg_int(args, "burst", 50),
		interval = ctlsrv_arg_int(args, "interval_ms", 100);
	many_op *p;

	if (timeout <= 0 || streams < 1 || streams > 4096 || bytes < 1 || bytes > (1 << 24) || burst < 1
	    || interval < 1) {
		ctlsrv_reply_err(r, "invalid_argument",
				 "want streams 1..4096, bytes 1..16 MiB, burst >= 1, interval_ms >= 1", NULL);
		return;
	}
	if (!cop_can_start(r, n))
		return;
	if (!(p = cop_new(n, r, sizeof(*p), timeout, many_release)))
		return;
	p->o.on_timeout = many_timeout;
	p->streams = (int)streams;
	p->bytes = (size_t)bytes;
	p->burst = (int)burst;
	p->interval_ms = interval;
	p->errors = json_object_new_array();
	if (!(p->mc = calloc((size_t)streams, sizeof(*p->mc)))) {
		cop_err(&p->o, "internal", "out of memory");
		return;
	}
	cop_resolve(&p->o, args, many_start);
}

/* ---- test-source / test-sink: a stream of pattern bytes to a reader that pauses ---- */
typedef struct src_op {
	cop o;
	conn *c;
	int port;
	uint64_t total, sent, t0, t_end;
	bool fin;
} src_op;

static void src_release(cop *o)
{
	src_op *p = (src_op *)o;

	cop_drop_conn(&p->c, !p->fin);
}

static void src_finish(src_op *p)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "target", json_object_new_string(p->o.addr));
	json_object_object_add(o, "port", json_object_new_int(p->port));
	json_object_object_add(o, "sent", json_object_new_int64((int64_t)p->sent));
	json_object_object_add(o, "duration_ms", json_object_new_double((pilot_now_us() - p->t0) / 1000.0));
	json_object_object_add(o, "stats", cop_conn_stats(p->c));
	cop_ok(&p->o, o);
}

static void src_pump(void *arg, conn *c)
{
	src_op *p = arg;

	while (p->sent < p->total) {
		size_t len = p->total - p->sent > sizeof(pattern) ? sizeof(pattern) : (size_t)(p->total - p->sent);
		const uint8_t *b = pattern_at(p->sent, &len);
		size_t w = conn_write(c, b, len);

		p->sent += w;
		if (w < len)
			return;
	}
	if (!p->fin) {
		p->fin = true;
		conn_shutdown(c);
	}
}

static void src_readable(void *arg, conn *c)
{
	src_op *p = arg;

	while (conn_read(c, scratch, sizeof(scratch)) > 0)
		;
	if (conn_eof(c) && p->fin)
		src_finish(p); /* the sink read everything and closed */
}

static void src_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	src_op *p = arg;

	(void)old;
	if (now == STREAM_ESTABLISHED && !p->t0) {
		p->t0 = pilot_now_us();
		p->o.established = true;
		src_pump(p, c);
	} else if (now == STREAM_CLOSED) {
		if (p->fin && !err)
			src_finish(p);
		else
			cop_err(&p->o, "connection_failed", "%s:%d: %s after %llu bytes", p->o.addr, p->port,
				cop_errname(err), (unsigned long long)p->sent);
	}
}

static const conn_cbs src_cbs = { src_readable, src_pump, src_state };

static void src_start(cop *o)
{
	src_op *p = (src_op *)o;
	int err = 0;

	p->c = conn_dial(o->n->conns, pilot_addr_make(0, o->target), (uint16_t)p->port, &src_cbs, p, &err);
	if (!p->c)
		cop_err(o, "connection_failed", "%s:%d: %s", o->addr, p->port, strerror(-err));
}

void verb_test_source(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	int64_t timeout = ctlsrv_arg_timeout(args, 60000), port = ctlsrv_arg_int(args, "port", -1),
		bytes = ctlsrv_arg_int(args, "bytes", 1 << 20);
	src_op *p;

	if (timeout <= 0 || bytes < 1) {
		ctlsrv_reply_err(r, "invalid_argument", "want bytes >= 1 and a positive timeout", NULL);
		return;
	}
	if (!cop_port_ok(r, port, false) || !cop_can_start(r, n))
		return;
	if (!(p = cop_new(n, r, sizeof(*p), timeout, src_release)))
		return;
	p->port = (int)port;
	p->total = (uint64_t)bytes;
	cop_resolve(&p->o, args, src_start);
}

typedef struct sink_op {
	cop o;
	conn *c;
	int port;
	bool listening, paused, accepted, done;
	int64_t pause_ms;
	uint64_t bytes, buffered_max, pause_timer;
	crypto_hash_sha256_state h;
} sink_op;

static void sink_release(cop *o)
{
	sink_op *p = (sink_op *)o;

	if (p->pause_timer)
		pilot_loop_del_timer(o->n->loop, p->pause_timer);
	if (p->listening)
		conn_unlisten(o->n->conns, (uint16_t)p->port);
	cop_drop_conn(&p->c, !p->done);
}

static void sink_finish(sink_op *p)
{
	json_object *o = json_object_new_object();
	uint8_t d[crypto_hash_sha256_BYTES];
	char hex[2 * sizeof(d) + 1];

	crypto_hash_sha256_final(&p->h, d);
	sodium_bin2hex(hex, sizeof(hex), d, sizeof(d));
	json_object_object_add(o, "port", json_object_new_int(p->port));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)p->bytes));
	json_object_object_add(o, "sha256", json_object_new_string(hex));
	json_object_object_add(o, "buffered_max", json_object_new_int64((int64_t)p->buffered_max));
	json_object_object_add(o, "stats", cop_conn_stats(p->c));
	p->done = true;
	cop_ok(&p->o, o);
}

static void sink_readable(void *arg, conn *c)
{
	sink_op *p = arg;
	size_t len;

	if (conn_readable(c) > p->buffered_max)
		p->buffered_max = conn_readable(c);
	if (p->paused)
		return;
	while ((len = conn_read(c, scratch, sizeof(scratch))) > 0) {
		crypto_hash_sha256_update(&p->h, scratch, len);
		p->bytes += len;
	}
	if (conn_eof(c))
		sink_finish(p);
}

static void sink_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	sink_op *p = arg;

	(void)c;
	(void)old;
	if (now == STREAM_CLOSED)
		cop_err(&p->o, "connection_failed", "port %d: %s after %llu bytes", p->port, cop_errname(err),
			(unsigned long long)p->bytes);
}

static const conn_cbs sink_cbs = { .on_readable = sink_readable, .on_state = sink_state };

static int64_t sink_resume(pilot_loop *l, uint64_t id, void *arg)
{
	sink_op *p = arg;

	(void)l;
	(void)id;
	p->pause_timer = 0;
	p->paused = false;
	if (p->c)
		sink_readable(p, p->c);
	return 0;
}

static bool sink_accept(void *arg, conn *c)
{
	sink_op *p = arg;

	if (p->accepted)
		return false;
	p->accepted = true;
	p->c = c;
	conn_set_cbs(c, &sink_cbs, p);
	if (p->pause_ms > 0) {
		p->paused = true;
		p->pause_timer = pilot_loop_add_timer(p->o.n->loop, (uint64_t)p->pause_ms, sink_resume, p);
	}
	return true;
}

static const conn_listener_cbs sink_listener = { sink_accept };

void verb_test_sink(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	int64_t timeout = ctlsrv_arg_timeout(args, 60000), port = ctlsrv_arg_int(args, "port", -1),
		pause = ctlsrv_arg_int(args, "pause_ms", 0);
	sink_op *p;
	int rc;

	if (timeout <= 0 || pause < 0) {
		ctlsrv_reply_err(r, "invalid_argument", "want pause_ms >= 0 and a positive timeout", NULL);
		return;
	}
	if (!cop_port_ok(r, port, false) || !cop_can_start(r, n))
		return;
	if (!(p = cop_new(n, r, sizeof(*p), timeout, sink_release)))
		return;
	p->port = (int)port;
	p->pause_ms = pause;
	crypto_hash_sha256_init(&p->h);
	if ((rc = conn_listen(n->conns, (uint16_t)port, &sink_listener, p)) < 0) {
		cop_err(&p->o, "invalid_argument", "port %d: %s", p->port, strerror(-rc));
		return;
	}
	p->listening = true;
}
