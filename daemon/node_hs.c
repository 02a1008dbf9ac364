/* The trust handshake service on port 444 (services.md §4.1): inbound, the
 * first data chunk of each stream (waited for at most 10 s) goes to
 * trust_on_message with the tunnel-authenticated sender; outbound, trust's
 * send_direct dials <peer>:444, writes the message once and closes 500 ms later. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stream/conn.h"
#include "daemon/node.h"
#include "daemon/trust.h"
#include "lib/log.h"

#define HS_FIRST_CHUNK_MS 10000
#define HS_DIAL_MS 10000
#define HS_LINGER_MS 500

typedef struct hs_op {
	struct hs_op *prev, *next;
	node *n;
	conn *c;
	uint64_t timer;
	bool outbound, written;
	uint32_t peer;
	/* outbound */
	void (*done)(void *op, int err);
	void *op;
	size_t len;
	uint8_t buf[];
} hs_op;

struct node_hs {
	hs_op *ops;
};

static const conn_cbs no_cbs;

static struct node_hs *hs_of(node *n)
{
	if (!n->hs)
		n->hs = calloc(1, sizeof(*n->hs));
	return n->hs;
}

static hs_op *op_new(node *n, size_t len)
{
	struct node_hs *h = hs_of(n);
	hs_op *o = h ? calloc(1, sizeof(*o) + len) : NULL;

	if (!o)
		return NULL;
	o->n = n;
	o->next = h->ops;
	if (h->ops)
		h->ops->prev = o;
	h->ops = o;
	return o;
}

static void op_free(hs_op *o)
{
	struct node_hs *h = o->n->hs;

	pilot_loop_del_timer(o->n->loop, o->timer);
	if (o->prev)
		o->prev->next = o->next;
	else
		h->ops = o->next;
	if (o->next)
		o->next->prev = o->prev;
	free(o);
}

/* Release the connection (gracefully or not) and forget the op. */
static void op_end(hs_op *o, bool abort)
{
	if (o->c) {
		conn_set_cbs(o->c, &no_cbs, NULL);
		if (abort)
			conn_abort(o->c);
		else
			conn_close(o->c);
	}
	op_free(o);
}

static void op_complete(hs_op *o, int err)
{
	void (*done)(void *, int) = o->done;

	o->done = NULL;
	if (done)
		done(o->op, err);
}

/* ---- inbound ---- */
static void in_readable(void *arg, conn *c)
{
	hs_op *o = arg;
	uint8_t buf[TRUST_MAX_MSG];
	conn_info ci;
	size_t len;
	int r;

	len = conn_read(c, buf, sizeof(buf));
	if (len == 0) {
		if (conn_eof(c))
			op_end(o, false);
		return;
	}
	conn_get_info(c, &ci);
	o->n->st.hs_msgs++;
	r = trust_on_message(o->n->trust, ci.remote.node, buf, len);
	if (r < 0) {
		o->n->st.hs_bad++;
		log_info("handshake message refused from=%u err=%d", ci.remote.node, r);
	}
	op_end(o, false);
}

static void in_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	if (now == STREAM_CLOSED)
		op_end(arg, false);
}

static const conn_cbs in_cbs = { .on_readable = in_readable, .on_state = in_state };

static int64_t in_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	hs_op *o = arg;

	o->timer = 0;
	o->n->st.hs_bad++;
	op_end(o, true);
	return 0;
}

static bool hs_accept(void *arg, conn *c)
{
	node *n = arg;
	hs_op *o = op_new(n, 0);

	if (!o)
		return false;
	n->st.hs_conns++;
	o->c = c;
	o->timer = pilot_loop_add_timer(n->loop, HS_FIRST_CHUNK_MS, in_timeout, o);
	conn_set_cbs(c, &in_cbs, o);
	return true;
}

int node_hs_listen(node *n)
{
	static const conn_listener_cbs lcbs = { .accept = hs_accept };

	return conn_listen(n->conns, TRUST_PORT, &lcbs, n);
}

/* ---- outbound ---- */
static int64_t out_linger(pilot_loop *l, uint64_t id, void *arg)
{
	hs_op *o = arg;

	o->timer = 0;
	op_end(o, false);
	return 0;
}

static int64_t out_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	hs_op *o = arg;

	o->timer = 0;
	op_complete(o, -ETIMEDOUT);
	op_end(o, true);
	return 0;
}

static void out_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	hs_op *o = arg;

	if (now == STREAM_ESTABLISHED && !o->written) {
		o->written = true;
		if (conn_write(c, o->buf, o->len) != o->len) {
			op_complete(o, -EMSGSIZE);
			op_end(o, true);
			return;
		}
		op_complete(o, 0);
		pilot_loop_del_timer(o->n->loop, o->timer);
		o->timer = pilot_loop_add_timer(o->n->loop, HS_LINGER_MS, out_linger, o);
	} else if (now == STREAM_CLOSED) {
		op_complete(o, err ? -abs(err) : -ECONNRESET);
		op_end(o, false);
	}
}

static const conn_cbs out_cbs = { .on_state = out_state };

int node_hs_send_direct(void *arg, uint32_t peer, const uint8_t *buf, size_t len,
			void (*done)(void *op, int err), void *op)
{
	node *n = arg;
	hs_op *o;
	int err = 0;

	if (!n->conns)
		return -ENOTCONN;
	if (!(o = op_new(n, len)))
		return -ENOMEM;
	memcpy(o->buf, buf, len);
	o->len = len;
	o->outbound = true;
	o->peer = peer;
	o->done = done;
	o->op = op;
	o->c = conn_dial(n->conns, pilot_addr_make(0, peer), TRUST_PORT, &out_cbs, o, &err);
	if (!o->c) {
		op_free(o);
		return err ? err : -ENOMEM;
	}
	o->timer = pilot_loop_add_timer(n->loop, HS_DIAL_MS, out_timeout, o);
	return 0;
}

/* The registry refused to resolve peer (private, no trust yet) and the tunnel
 * sends nothing to it: dials to its port 444 fail now, so trust relays the
 * message through the registry at once instead of after HS_DIAL_MS. */
void node_hs_unreachable(node *n, uint32_t peer)
{
	struct node_hs *h = n->hs;
	hs_op *o, *next;

	for (o = h ? h->ops : NULL; o; o = next) {
		next = o->next;
		if (!o->outbound || o->written || o->peer != peer)
			continue;
		op_complete(o, -EHOSTUNREACH);
		op_end(o, true);
	}
}

/* Shutdown: the connection table is (being) torn down, so only the ops go;
 * trust gets its outstanding completions. */
void node_hs_free(node *n)
{
	struct node_hs *h = n->hs;

	if (!h)
		return;
	while (h->ops) {
		hs_op *o = h->ops;

		op_complete(o, -ECANCELED);
		op_free(o);
	}
	free(h);
	n->hs = NULL;
}
