/* pilotd's client of a pilot-nameserver: see node_ns.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/node.h"
#include "daemon/node_ns.h"
#include "lib/log.h"
#include "stream/conn.h"

#define NS_PORT 53

typedef struct nsq {
	node *n;
	conn *c;
	uint64_t timer;
	node_ns_cb cb;
	void *arg;
	bool sent;
	size_t got;
	char req[320];
	char buf[NODE_NS_REPLY_MAX + 1];
} nsq;

static const conn_cbs no_cbs;

int node_ns_parse(const char *s, uint32_t *id)
{
	pilot_addr a;
	char *end;
	unsigned long v;

	if (!s || !*s)
		return -EINVAL;
	if (pilot_addr_parse(s, strlen(s), &a) == 0) {
		*id = a.node;
		return a.node && !pilot_addr_is_broadcast(a) ? 0 : -EINVAL;
	}
	v = strtoul(s, &end, 10);
	if (*end || v == 0 || v >= UINT32_MAX)
		return -EINVAL;
	*id = (uint32_t)v;
	return 0;
}

static void finish(nsq *q, int err)
{
	node_ns_cb cb = q->cb;
	void *arg = q->arg;

	pilot_loop_del_timer(q->n->loop, q->timer);
	if (q->c) {
		conn_set_cbs(q->c, &no_cbs, NULL);
		if (err)
			conn_abort(q->c);
		else
			conn_close(q->c);
	}
	q->buf[q->got] = '\0';
	if (err)
		log_debug("nameserver: %s: %s", q->req, strerror(-err));
	cb(arg, err, q->buf);
	free(q);
}

static void on_readable(void *arg, conn *c)
{
	nsq *q = arg;
	size_t len;

	while (q->got < NODE_NS_REPLY_MAX &&
	       (len = conn_read(c, q->buf + q->got, NODE_NS_REPLY_MAX - q->got)) > 0)
		q->got += len;
	if (conn_eof(c) || q->got == NODE_NS_REPLY_MAX)
		finish(q, 0);
}

static void on_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	nsq *q = arg;
	size_t len = strlen(q->req);

	(void)old;
	if (now == STREAM_ESTABLISHED && !q->sent) {
		q->sent = true;
		if (conn_write(c, q->req, len) != len) {
			finish(q, -EMSGSIZE);
			return;
		}
		conn_shutdown(c);
	} else if (now == STREAM_CLOSED) {
		q->c = NULL; /* closed on its own: still needs conn_close */
		conn_set_cbs(c, &no_cbs, NULL);
		conn_close(c);
		finish(q, q->got && !err ? 0 : err ? -abs(err) : -ECONNRESET);
	}
}

static const conn_cbs ns_cbs = { .on_readable = on_readable, .on_state = on_state };

static int64_t on_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	nsq *q = arg;

	(void)l;
	(void)id;
	q->timer = 0;
	finish(q, -ETIMEDOUT);
	return 0;
}

int node_ns_ask(node *n, const char *req, node_ns_cb cb, void *arg)
{
	uint32_t ns;
	nsq *q;
	int err = 0;

	if (node_ns_parse(n->o.nameserver, &ns) < 0 || ns == n->node_id || !n->conns)
		return -ENOENT;
	if (strlen(req) >= sizeof(q->req) || !(q = calloc(1, sizeof(*q))))
		return -ENOMEM;
	*q = (nsq){ .n = n, .cb = cb, .arg = arg };
	snprintf(q->req, sizeof(q->req), "%s", req);
	q->c = conn_dial(n->conns, pilot_addr_make(0, ns), NS_PORT, &ns_cbs, q, &err);
	if (!q->c) {
		free(q);
		return err ? err : -EIO;
	}
	q->timer = pilot_loop_add_timer(n->loop, NODE_NS_TIMEOUT_MS, on_timeout, q);
	return 0;
}

/* ---- replies ---- */
static const char *field(const char *s, int i, size_t *len)
{
	while (i-- > 0) {
		s += strcspn(s, " \n");
		if (*s != ' ')
			return NULL;
		s++;
	}
	*len = strcspn(s, " \n");
	return s;
}

int node_ns_reply_a(const char *reply, pilot_addr *out)
{
	const char *f;
	size_t n;

	if (strncmp(reply, "A ", 2) || !(f = field(reply, 2, &n)) || pilot_addr_parse(f, n, out) < 0)
		return -ENOENT;
	return 0;
}

int node_ns_reply_n(const char *reply, uint16_t *out)
{
	const char *f;
	char *end;
	size_t n;
	unsigned long v;

	if (strncmp(reply, "N ", 2) || !(f = field(reply, 2, &n)))
		return -ENOENT;
	v = strtoul(f, &end, 10);
	if (end != f + n || n == 0 || v > 65535)
		return -ENOENT;
	*out = (uint16_t)v;
	return 0;
}

size_t node_ns_reply_s(const char *reply, pilot_addr *addrs, uint16_t *ports, size_t max)
{
	const char *line = reply, *f, *p;
	size_t k = 0, n, pn;
	char *end;
	unsigned long v;

	while (line && *line && k < max) {
		if (!strncmp(line, "S ", 2) && (f = field(line, 2, &n)) && (p = field(line, 3, &pn)) &&
		    pilot_addr_parse(f, n, &addrs[k]) == 0) {
			v = strtoul(p, &end, 10);
			if (end == p + pn && pn && v <= 65535)
				ports[k++] = (uint16_t)v;
		}
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	return k;
}
