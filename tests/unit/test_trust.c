/* Trust handshake (daemon/trust.c): two or three trust instances wired through
 * test callbacks. Direct messages go to the other side's trust_on_message with
 * the sender's node ID (the authenticated tunnel sender); every registry call
 * is answered by a real in-memory registry (rendezvous/registry.h), signed v1
 * with the node's identity, so report_trust consent, request/respond and poll
 * semantics are the real ones. Completions run from a FIFO pump, never from
 * inside the op call (the trust_ops contract). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/trust.h"
#include "daemon/trust_internal.h"
#include "lib/fileutil.h"
#include "lib/log.h"
#include "tests/unit/test_registry_util.h"

/* ---- the world ---- */
enum ev_kind { EV_DELIVER, EV_REG, EV_KEY, EV_NET };

typedef struct tnode tnode;

typedef struct ev {
	enum ev_kind kind;
	tnode *src;
	uint32_t peer;
	uint8_t *buf;
	size_t len;
	json_object *req;
	trust_sent_cb sent;
	trust_reply_cb reply;
	trust_key_cb key;
	trust_net_cb net;
	void *op;
} ev;

struct tnode {
	tid id;
	trust *t;
	bool unreachable;  /* direct sends to this node fail */
	int poll_soon;
	uint32_t torn[16];
	int ntorn;
	int last_rc;       /* trust_on_message result of the last delivery to us */
	int deliveries;
	char path[256];
};

static struct world {
	registry *reg;
	tnode n[3];
	ev *q;
	size_t nq, capq, head;
	int64_t now;
} W;

static int64_t w_now(void *arg)
{
	return W.now;
}

static tnode *by_node(uint32_t node)
{
	for (int i = 0; i < 3; i++)
		if (W.n[i].id.node == node)
			return &W.n[i];
	return NULL;
}

static void push(const ev *e)
{
	if (W.nq == W.capq) {
		W.capq = W.capq ? W.capq * 2 : 64;
		W.q = realloc(W.q, W.capq * sizeof(*W.q));
		assert_non_null(W.q);
	}
	W.q[W.nq++] = *e;
}

/* ---- trust_ops on top of the registry ---- */
static int op_send(void *arg, uint32_t peer, const uint8_t *buf, size_t len, trust_sent_cb done, void *op)
{
	ev e = { .kind = EV_DELIVER, .src = arg, .peer = peer, .len = len, .sent = done, .op = op };

	e.buf = malloc(len);
	memcpy(e.buf, buf, len);
	push(&e);
	return 0;
}

static int op_key(void *arg, uint32_t node, trust_key_cb done, void *op)
{
	ev e = { .kind = EV_KEY, .src = arg, .peer = node, .key = done, .op = op };

	push(&e);
	return 0;
}

static int op_net(void *arg, uint32_t peer, trust_net_cb done, void *op)
{
	ev e = { .kind = EV_NET, .src = arg, .peer = peer, .net = done, .op = op };

	push(&e);
	return 0;
}

static void sign_into(tnode *n, json_object *req, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sign_into(tnode *n, json_object *req, const char *fmt, ...)
{
	char msg[128], b64[96];
	uint8_t sig[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pilot_ed25519_sign(&n->id.id, msg, strlen(msg), sig);
	pilot_b64_encode(sig, 64, b64, sizeof(b64));
	json_object_object_add(req, "signature", json_object_new_string(b64));
}

static json_object *req_new(const char *type)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "type", json_object_new_string(type));
	return o;
}

static void addi(json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

static int reg_push(tnode *n, json_object *req, trust_reply_cb done, void *op)
{
	ev e = { .kind = EV_REG, .src = n, .req = req, .reply = done, .op = op };

	push(&e);
	return 0;
}

static int op_pair(void *arg, uint32_t peer, trust_reply_cb done, void *op, const char *type)
{
	tnode *n = arg;
	json_object *o = req_new(type);

	addi(o, "node_id", n->id.node);
	addi(o, "peer_id", peer);
	sign_into(n, o, "%s:%u:%u", type, n->id.node, peer);
	return reg_push(n, o, done, op);
}

static int op_report(void *arg, uint32_t peer, trust_reply_cb done, void *op)
{
	return op_pair(arg, peer, done, op, "report_trust");
}

static int op_revoke(void *arg, uint32_t peer, trust_reply_cb done, void *op)
{
	return op_pair(arg, peer, done, op, "revoke_trust");
}

static int op_request(void *arg, uint32_t peer, const char *just, trust_reply_cb done, void *op)
{
	tnode *n = arg;
	json_object *o = req_new("request_handshake");

	addi(o, "from_node_id", n->id.node);
	addi(o, "to_node_id", peer);
	json_object_object_add(o, "justification", json_object_new_string(just));
	sign_into(n, o, "handshake:%u:%u", n->id.node, peer);
	return reg_push(n, o, done, op);
}

static int op_respond(void *arg, uint32_t peer, bool accept, trust_reply_cb done, void *op)
{
	tnode *n = arg;
	json_object *o = req_new("respond_handshake");

	addi(o, "node_id", n->id.node);
	addi(o, "peer_id", peer);
	json_object_object_add(o, "accept", json_object_new_boolean(accept));
	sign_into(n, o, "respond:%u:%u", n->id.node, peer);
	return reg_push(n, o, done, op);
}

static void op_poll_soon(void *arg)
{
	((tnode *)arg)->poll_soon++;
}

static void op_torn(void *arg, uint32_t peer)
{
	tnode *n = arg;

	if (n->ntorn < 16)
		n->torn[n->ntorn++] = peer;
}

static json_object *reg_do(json_object *req)
{
	reg_ctx ctx = { t_ip, 40000, t_now, 1 };
	json_object *resp = reg_handle(W.reg, req, &ctx);

	json_object_put(req);
	return resp;
}

/* Lowest shared network other than 0 from two lookups. */
static int shared_net(uint32_t a, uint32_t b, uint16_t *net)
{
	json_object *qa = req_new("lookup"), *qb = req_new("lookup"), *ra, *rb, *na, *nb;
	int rc = 0;

	addi(qa, "node_id", a);
	addi(qb, "node_id", b);
	ra = reg_do(qa), rb = reg_do(qb);
	*net = 0;
	if (!json_object_object_get_ex(ra, "networks", &na) || !json_object_object_get_ex(rb, "networks", &nb))
		rc = -ENOENT;
	for (size_t i = 0; !rc && i < json_object_array_length(na); i++) {
		int x = json_object_get_int(json_object_array_get_idx(na, i));

		for (size_t k = 0; x && k < json_object_array_length(nb); k++)
			if (json_object_get_int(json_object_array_get_idx(nb, k)) == x && (!*net || x < *net))
				*net = (uint16_t)x;
	}
	json_object_put(ra);
	json_object_put(rb);
	return rc;
}

static void run_ev(ev *e)
{
	tnode *to;
	uint8_t pk[32];
	uint16_t net;
	int rc;

	switch (e->kind) {
	case EV_DELIVER:
		to = by_node(e->peer);
		if (!to || to->unreachable || !to->t) {
			e->sent(e->op, -EHOSTUNREACH);
		} else {
			to->deliveries++;
			to->last_rc = trust_on_message(to->t, e->src->id.node, e->buf, e->len);
			e->sent(e->op, 0);
		}
		free(e->buf);
		break;
	case EV_REG: {
		json_object *resp = reg_do(e->req);

		e->reply(e->op, resp, strcmp(t_type(resp), "error") ? 0 : -EREMOTEIO);
		json_object_put(resp);
		break;
	}
	case EV_KEY:
		rc = reg_node_key(W.reg, e->peer, pk);
		e->key(e->op, rc, rc ? NULL : pk);
		break;
	case EV_NET:
		rc = shared_net(e->src->id.node, e->peer, &net);
		e->net(e->op, rc, net);
		break;
	}
}

static void pump(void)
{
	while (W.head < W.nq) {
		ev e = W.q[W.head++];

		run_ev(&e);
	}
	W.head = W.nq = 0;
}

static void poll_node(tnode *n)
{
	json_object *o = req_new("poll_handshakes"), *resp, *rq, *rs;

	addi(o, "node_id", n->id.node);
	sign_into(n, o, "poll_handshakes:%u", n->id.node);
	resp = reg_do(o);
	assert_string_equal(t_type(resp), "poll_handshakes_ok");
	json_object_object_get_ex(resp, "requests", &rq);
	json_object_object_get_ex(resp, "responses", &rs);
	trust_on_poll(n->t, rq, rs);
	json_object_put(resp);
	pump();
}

static trust *open_trust(tnode *n, const char *path, char *err, size_t errlen)
{
	trust_config c = {
		.path = path,
		.id = &n->id.id,
		.now = w_now,
		.ops = { op_send, op_key, op_net, op_report, op_revoke, op_request, op_respond, op_poll_soon,
			 op_torn, n, NULL },
	};
	trust *t = trust_new(&c, err, errlen);

	if (t)
		trust_set_node_id(t, n->id.node);
	return t;
}

static char tmpdir[] = "/tmp/test_trust.XXXXXX";

static int setup(void **state)
{
	char err[256];

	memset(&W, 0, sizeof(W));
	W.now = 1700000000;
	t_now = 1700000000000ULL;
	W.reg = t_open(NULL, false, NULL);
	if (!W.reg)
		return -1;
	for (int i = 0; i < 3; i++) {
		tnode *n = &W.n[i];

		tid_new(&n->id);
		if (!t_register(W.reg, &n->id, NULL))
			return -1;
		snprintf(n->path, sizeof(n->path), "%s/n%d/trust.json", tmpdir, i);
		unlink(n->path);
		n->t = open_trust(n, n->path, err, sizeof(err));
		if (!n->t)
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	pump();
	for (int i = 0; i < 3; i++)
		trust_free(W.n[i].t);
	reg_close(W.reg);
	free(W.q);
	return 0;
}

#define A (&W.n[0])
#define B (&W.n[1])
#define C (&W.n[2])

static bool paired(tnode *a, tnode *b)
{
	return reg_may_talk(W.reg, a->id.node, b->id.node);
}

/* ---- scenarios ---- */
static void test_mutual(void **state)
{
	assert_false(paired(A, B));
	assert_int_equal(trust_request(A->t, B->id.node, "hi from A"), 0);
	pump();
	assert_true(trust_is_pending(B->t, A->id.node));
	assert_true(trust_is_outgoing(A->t, B->id.node));
	assert_false(paired(A, B)); /* nobody consented on B's side yet */

	assert_int_equal(trust_request(B->t, A->id.node, "hi from B"), 0);
	pump();
	assert_true(trust_is_trusted(A->t, B->id.node));
	assert_true(trust_is_trusted(B->t, A->id.node));
	assert_false(trust_is_pending(B->t, A->id.node));
	assert_false(trust_is_outgoing(A->t, B->id.node));
	assert_false(trust_is_outgoing(B->t, A->id.node));
	assert_true(paired(A, B));
	assert_false(trust_wants_poll(A->t));

	json_object *l = trust_trusted_json(A->t), *e = json_object_array_get_idx(l, 0);
	assert_int_equal(json_object_array_length(l), 1);
	assert_int_equal(t_int(e, "node_id"), B->id.node);
	assert_string_equal(t_str(e, "public_key"), B->id.pk);
	assert_true(json_object_get_boolean(json_object_object_get(e, "mutual")));
	assert_int_equal(t_int(e, "network"), 0);
	assert_int_equal(t_int(e, "approved_at"), W.now);
	json_object_put(l);
	/* already trusted: nothing sent */
	assert_int_equal(trust_request(A->t, B->id.node, ""), -EALREADY);
}

static void test_approve(void **state)
{
	assert_int_equal(trust_approve(B->t, A->id.node), -ENOENT);
	assert_int_equal(trust_request(A->t, B->id.node, "please <&>"), 0);
	pump();
	json_object *l = trust_pending_json(B->t), *e = json_object_array_get_idx(l, 0);
	assert_int_equal(json_object_array_length(l), 1);
	assert_int_equal(t_int(e, "node_id"), A->id.node);
	assert_string_equal(t_str(e, "public_key"), A->id.pk);
	assert_string_equal(t_str(e, "justification"), "please <&>");
	assert_int_equal(t_int(e, "received_at"), W.now);
	json_object_put(l);

	assert_int_equal(trust_approve(B->t, A->id.node), 0);
	pump();
	assert_true(trust_is_trusted(B->t, A->id.node));
	assert_true(trust_is_trusted(A->t, B->id.node));
	assert_true(paired(A, B));
	l = trust_trusted_json(B->t);
	assert_false(json_object_get_boolean(json_object_object_get(json_object_array_get_idx(l, 0), "mutual")));
	json_object_put(l);
	assert_int_equal(trust_approve(B->t, A->id.node), -ENOENT);
	assert_int_equal(trust_untrust(A->t, B->id.node), 0);
	pump(); /* B hears the revoke */
	assert_false(trust_is_trusted(B->t, A->id.node));
}

static void test_retrust_rerequest(void **state)
{
	trust_stats st;

	trust_request(A->t, B->id.node, "");
	pump();
	trust_approve(B->t, A->id.node);
	pump();
	assert_true(trust_is_trusted(A->t, B->id.node));
	/* A forgets (e.g. lost its file), asks again: B accepts at once */
	B->unreachable = false;
	assert_int_equal(trust_untrust(A->t, B->id.node), 0);
	B->unreachable = true; /* B misses the revoke */
	pump();
	B->unreachable = false;
	assert_true(trust_is_trusted(B->t, A->id.node));
	assert_false(paired(A, B));
	W.now += 5; /* the same accept within one second would be a replay */
	assert_int_equal(trust_request(A->t, B->id.node, ""), 0);
	pump();
	assert_true(trust_is_trusted(A->t, B->id.node));
	assert_true(paired(A, B));
	trust_get_stats(A->t, &st);
	assert_int_equal(st.unsolicited_accepts, 0);
}

static void test_reject(void **state)
{
	assert_int_equal(trust_reject(B->t, A->id.node, "no"), -ENOENT);
	trust_request(A->t, B->id.node, "let me in");
	pump();
	assert_int_equal(trust_reject(B->t, A->id.node, "no thanks"), 0);
	pump();
	assert_false(trust_is_pending(B->t, A->id.node));
	assert_false(trust_is_outgoing(A->t, B->id.node));
	assert_false(trust_is_trusted(A->t, B->id.node));
	assert_false(paired(A, B));
}

static void test_shared_network(void **state)
{
	json_object *o;
	uint16_t net;

	o = t_req(W.reg, "{\"type\":\"create_network\",\"node_id\":%u,\"name\":\"lab\",\"signature\":\"%s\"}",
		  B->id.node, t_sign(&B->id, "create_network:%u:lab", B->id.node));
	assert_string_equal(t_type(o), "create_network_ok");
	net = (uint16_t)t_int(o, "network_id");
	json_object_put(o);
	assert_true(t_ok(t_req(W.reg, "{\"type\":\"join_network\",\"node_id\":%u,\"network_id\":%u,\"signature\":\"%s\"}",
			       A->id.node, net, t_sign(&A->id, "join_network:%u:%u", A->id.node, net)),
			 "join_network"));
	trust_request(A->t, B->id.node, "colleague");
	pump();
	assert_true(trust_is_trusted(B->t, A->id.node));
	assert_true(trust_is_trusted(A->t, B->id.node));
	json_object *l = trust_trusted_json(B->t);
	assert_int_equal(t_int(json_object_array_get_idx(l, 0), "network"), net);
	json_object_put(l);
	/* C shares nothing with B: pending */
	trust_request(C->t, B->id.node, "");
	pump();
	assert_true(trust_is_pending(B->t, C->id.node));
}

static void test_revoke(void **state)
{
	trust_request(A->t, B->id.node, "");
	pump();
	trust_approve(B->t, A->id.node);
	pump();
	assert_true(paired(A, B));
	assert_int_equal(trust_untrust(A->t, B->id.node), 0);
	pump();
	assert_false(trust_is_trusted(A->t, B->id.node));
	assert_false(trust_is_trusted(B->t, A->id.node));
	assert_int_equal(A->ntorn, 1);
	assert_int_equal(A->torn[0], B->id.node);
	assert_int_equal(B->ntorn, 1);
	assert_int_equal(B->torn[0], A->id.node);
	assert_false(paired(A, B));
	assert_int_equal(trust_untrust(A->t, B->id.node), -ENOENT);
	assert_int_equal(trust_untrust(A->t, 0), -EINVAL);
}

static void test_relay(void **state)
{
	B->unreachable = true;
	assert_int_equal(trust_request(A->t, B->id.node, "via the inbox"), 0);
	pump();
	assert_int_equal(A->poll_soon, 1);
	assert_true(trust_wants_poll(A->t));
	assert_int_equal(B->deliveries, 0);
	poll_node(B);
	assert_true(trust_is_pending(B->t, A->id.node));
	json_object *l = trust_pending_json(B->t);
	/* the key was back-filled from the registry */
	assert_string_equal(t_str(json_object_array_get_idx(l, 0), "public_key"), A->id.pk);
	assert_string_equal(t_str(json_object_array_get_idx(l, 0), "justification"), "via the inbox");
	json_object_put(l);

	A->unreachable = true; /* both private: only the inbox works */
	assert_int_equal(trust_approve(B->t, A->id.node), 0);
	pump();
	assert_true(paired(A, B));
	assert_false(trust_is_trusted(A->t, B->id.node));
	poll_node(A);
	assert_true(trust_is_trusted(A->t, B->id.node));
	assert_false(trust_wants_poll(A->t));
	l = trust_trusted_json(A->t);
	assert_string_equal(t_str(json_object_array_get_idx(l, 0), "public_key"), B->id.pk);
	json_object_put(l);
}

/* A direct request whose accept cannot go back directly: the accept is relayed
 * as a request, which the requester's outgoing request turns into trust. */
static void test_accept_relayed_as_request(void **state)
{
	trust_request(A->t, B->id.node, "");
	pump();
	assert_true(trust_is_pending(B->t, A->id.node));
	A->unreachable = true;
	assert_int_equal(trust_approve(B->t, A->id.node), 0);
	pump();
	assert_false(trust_is_trusted(A->t, B->id.node));
	poll_node(A);
	assert_true(trust_is_trusted(A->t, B->id.node));
	assert_true(paired(A, B));
	poll_node(B); /* A's respond_handshake(accept): B is trusted already, ignored quietly */
	trust_stats st;
	trust_get_stats(B->t, &st);
	assert_int_equal(st.unsolicited_accepts, 0);
}

/* ---- hostile messages ---- */
static int craft(tnode *signer, uint32_t claim, uint32_t receiver, enum trust_msg_type type,
		 int64_t ts, bool sign, char **out, size_t *len)
{
	trust_msg m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.node_id = claim;
	m.timestamp = ts;
	if (sign)
		trust_msg_sign(&m, &signer->id.id, receiver);
	return trust_msg_encode(&m, out, len);
}

static int deliver(tnode *to, uint32_t from, const char *buf, size_t len)
{
	int rc = trust_on_message(to->t, from, (const uint8_t *)buf, len);

	pump();
	return rc;
}

static void test_impersonation(void **state)
{
	char *buf;
	size_t len;
	trust_stats st;

	/* C claims to be A over its own tunnel */
	craft(C, A->id.node, B->id.node, TRUST_MSG_REQUEST, W.now, true, &buf, &len);
	assert_int_equal(deliver(B, C->id.node, buf, len), -EPERM);
	/* same bytes as if they came over A's tunnel: C's key is not A's */
	assert_int_equal(deliver(B, A->id.node, buf, len), 0);
	free(buf);
	assert_false(trust_is_pending(B->t, A->id.node));
	trust_get_stats(B->t, &st);
	assert_int_equal(st.refused_sender, 1);
	assert_int_equal(st.refused_key, 1);

	/* A's key in the message but C's signature */
	trust_msg m;
	memset(&m, 0, sizeof(m));
	m.type = TRUST_MSG_REQUEST;
	m.node_id = A->id.node;
	m.timestamp = W.now;
	trust_msg_sign(&m, &C->id.id, B->id.node);
	memcpy(m.public_key, A->id.id.pk, 32);
	trust_msg_encode(&m, &buf, &len);
	assert_int_equal(deliver(B, A->id.node, buf, len), 0);
	free(buf);
	trust_get_stats(B->t, &st);
	assert_int_equal(st.refused_signature, 1);
	/* signed for another receiver */
	craft(A, A->id.node, C->id.node, TRUST_MSG_REQUEST, W.now, true, &buf, &len);
	assert_int_equal(deliver(B, A->id.node, buf, len), 0);
	free(buf);
	trust_get_stats(B->t, &st);
	assert_int_equal(st.refused_signature, 2);
	/* unsigned, keyless */
	craft(A, A->id.node, B->id.node, TRUST_MSG_REQUEST, W.now, false, &buf, &len);
	assert_int_equal(deliver(B, A->id.node, buf, len), -EPERM);
	free(buf);
	/* stale and future */
	craft(A, A->id.node, B->id.node, TRUST_MSG_REQUEST, W.now - 301, true, &buf, &len);
	assert_int_equal(deliver(B, A->id.node, buf, len), -ESTALE);
	free(buf);
	craft(A, A->id.node, B->id.node, TRUST_MSG_REQUEST, W.now + 31, true, &buf, &len);
	assert_int_equal(deliver(B, A->id.node, buf, len), -ESTALE);
	free(buf);
	craft(A, A->id.node, B->id.node, TRUST_MSG_REQUEST, 0, true, &buf, &len);
	assert_int_equal(deliver(B, A->id.node, buf, len), -ESTALE);
	free(buf);
	assert_int_equal(deliver(B, A->id.node, "{\"type\":", 8), -EBADMSG);
	assert_false(trust_is_pending(B->t, A->id.node));

	/* a good one, then its replay */
	craft(A, A->id.node, B->id.node, TRUST_MSG_REQUEST, W.now - 299, true, &buf, &len);
	assert_int_equal(deliver(B, A->id.node, buf, len), 0);
	assert_true(trust_is_pending(B->t, A->id.node));
	trust_reject(B->t, A->id.node, "");
	pump();
	assert_int_equal(deliver(B, A->id.node, buf, len), -EALREADY);
	assert_false(trust_is_pending(B->t, A->id.node));
	/* a C-sent revoke "from A" cannot tear A's trust down */
	free(buf);
}

static void test_forged_revoke_and_accept(void **state)
{
	char *buf;
	size_t len;
	trust_stats st;

	trust_request(A->t, B->id.node, "");
	pump();
	trust_approve(B->t, A->id.node);
	pump();
	/* C replays A's signature pattern: must come from A's tunnel with A's key */
	craft(C, A->id.node, B->id.node, TRUST_MSG_REVOKE, W.now, true, &buf, &len);
	deliver(B, C->id.node, buf, len);
	deliver(B, A->id.node, buf, len);
	free(buf);
	assert_true(trust_is_trusted(B->t, A->id.node));

	/* an accept nobody asked for */
	craft(C, C->id.node, B->id.node, TRUST_MSG_ACCEPT, W.now, true, &buf, &len);
	assert_int_equal(deliver(B, C->id.node, buf, len), 0);
	free(buf);
	assert_false(trust_is_trusted(B->t, C->id.node));
	trust_get_stats(B->t, &st);
	assert_int_equal(st.unsolicited_accepts, 1);
	/* nor through the inbox */
	json_object *rs = json_tokener_parse("[{\"from_node_id\":0,\"accept\":true,\"timestamp\":1}]");
	json_object_int_inc(json_object_object_get(json_object_array_get_idx(rs, 0), "from_node_id"),
			    C->id.node);
	trust_on_poll(B->t, NULL, rs);
	pump();
	json_object_put(rs);
	assert_false(trust_is_trusted(B->t, C->id.node));
	trust_get_stats(B->t, &st);
	assert_int_equal(st.unsolicited_accepts, 2);
}

/* ---- persistence ---- */
static void test_persistence(void **state)
{
	char err[512], *text;
	size_t len;
	struct stat sb;

	trust_request(A->t, B->id.node, "");
	pump();
	trust_approve(B->t, A->id.node);
	pump();
	trust_request(C->t, B->id.node, "pending one");
	pump();
	assert_int_equal(stat(B->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(pilot_read_file(B->path, 1 << 20, &text, &len), 0);
	assert_non_null(strstr(text, "{\n  \"trusted\": [\n    {\n      \"node_id\": "));
	assert_non_null(strstr(text, "\"mutual\": false\n    }\n  ],\n  \"pending\": [\n    {\n"));
	assert_non_null(strstr(text, "\"justification\": \"pending one\",\n      \"received_at\": \""));
	assert_null(strstr(text, "\"network\""));
	free(text);

	trust_free(B->t);
	B->t = open_trust(B, B->path, err, sizeof(err));
	assert_non_null(B->t);
	assert_true(trust_is_trusted(B->t, A->id.node));
	assert_true(trust_is_pending(B->t, C->id.node));
	json_object *l = trust_trusted_json(B->t);
	assert_string_equal(t_str(json_object_array_get_idx(l, 0), "public_key"), A->id.pk);
	assert_int_equal(t_int(json_object_array_get_idx(l, 0), "approved_at"), W.now);
	json_object_put(l);
	/* the pending one can still be approved after the restart */
	assert_int_equal(trust_approve(B->t, C->id.node), 0);
	pump();
	assert_true(trust_is_trusted(C->t, B->id.node));

	/* empty state: "trusted": null, no "pending" */
	trust_untrust(A->t, B->id.node);
	trust_untrust(C->t, B->id.node);
	pump();
	assert_int_equal(trust_count_trusted(B->t), 0);
	assert_int_equal(pilot_read_file(B->path, 1 << 20, &text, &len), 0);
	/* "trusted": null, and the untrusted nodes' keys stay pinned (issue 12) */
	assert_non_null(strstr(text, "{\n  \"trusted\": null,\n  \"keys\": [\n    {\n"));
	assert_non_null(strstr(text, A->id.pk));
	assert_non_null(strstr(text, C->id.pk));
	free(text);

	/* corrupt file: an error naming the file, and the file is left alone */
	assert_int_equal(pilot_write_atomic(B->path, "{\"trusted\": [", 13, 0600), 0);
	trust_free(B->t);
	B->t = open_trust(B, B->path, err, sizeof(err));
	assert_null(B->t);
	assert_non_null(strstr(err, B->path));
	assert_int_equal(pilot_read_file(B->path, 1 << 20, &text, &len), 0);
	assert_string_equal(text, "{\"trusted\": [");
	free(text);
}

static void test_load_formats(void **state)
{
	char err[256], *out;
	size_t len;
	trust *t = B->t;
	const char *ref =
		"{\n  \"trusted\": [\n    {\n      \"node_id\": 7,\n      \"public_key\": \"\",\n"
		"      \"approved_at\": \"2024-03-01T10:00:00.123456789+01:00\",\n      \"mutual\": true,\n"
		"      \"network\": 3\n    }\n  ],\n  \"pending\": [\n    {\n      \"node_id\": 9,\n"
		"      \"received_at\": \"garbage\"\n    }\n  ]\n}";

	assert_int_equal(trust_load_buf(t, ref, strlen(ref), err, sizeof(err)), 0);
	assert_true(trust_is_trusted(t, 7));
	assert_true(trust_is_pending(t, 9));
	json_object *l = trust_trusted_json(t);
	assert_int_equal(t_int(json_object_array_get_idx(l, 0), "approved_at"), 1709283600);
	assert_int_equal(t_int(json_object_array_get_idx(l, 0), "network"), 3);
	json_object_put(l);
	assert_int_equal(trust_dump(t, &out, &len), 0);
	assert_non_null(strstr(out, "\"received_at\": \"0001-01-01T00:00:00Z\""));
	assert_non_null(strstr(out, "\"network\": 3\n"));
	free(out);
	assert_int_equal(trust_load_buf(t, "{\"trusted\":null}", 16, err, sizeof(err)), 0);
	assert_int_equal(trust_count_trusted(t), 0);
	assert_int_equal(trust_count_pending(t), 0);
	assert_int_equal(trust_load_buf(t, "{}", 2, err, sizeof(err)), 0);
	static const char *bad[] = {
		"[]", "{\"trusted\":{}}", "{\"trusted\":[{\"node_id\":0}]}",
		"{\"trusted\":[{\"node_id\":\"7\"}]}", "{\"trusted\":[{\"node_id\":7,\"public_key\":\"AAAA\"}]}",
		"{\"pending\":[1]}", "{\"trusted\":[{\"node_id\":7,\"network\":70000}]}",
		"{\"trusted\":[{\"node_id\":7,\"mutual\":1}]}", "{\"trusted\":[],}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(trust_load_buf(t, bad[i], strlen(bad[i]), err, sizeof(err)), -EINVAL);
		assert_true(err[0] != '\0');
	}
}

/* ---- keys bound to trust (issue 12 §1) ---- */
/* An old trust.json (a trusted entry without a key) loads; the ID is protected
 * at once and picks up its key from the first authenticated session, saved at
 * once; a different key then no longer admits. */
static void test_key_migration(void **state)
{
	char err[256], *text;
	size_t len;
	uint8_t pk[PROTO_ED25519_LEN];
	const char *old = "{\n  \"trusted\": [\n    {\n      \"node_id\": 7,\n      \"public_key\": \"\",\n"
			  "      \"approved_at\": \"2024-03-01T10:00:00Z\",\n      \"mutual\": true\n    }\n  ]\n}";

	assert_int_equal(pilot_write_atomic(B->path, old, strlen(old), 0600), 0);
	trust_free(B->t);
	B->t = open_trust(B, B->path, err, sizeof(err));
	assert_non_null(B->t);
	assert_int_equal(trust_pinned_key(B->t, 7, pk), TRUST_PIN_TRUSTED);
	assert_true(trust_admits(B->t, 7, A->id.id.pk)); /* no key yet: any (registry-checked) key */
	assert_int_equal(trust_pin_key(B->t, 7, A->id.id.pk), 1);
	assert_int_equal(trust_pinned_key(B->t, 7, pk), TRUST_PIN_KEY);
	assert_memory_equal(pk, A->id.id.pk, PROTO_ED25519_LEN);
	assert_true(trust_admits(B->t, 7, A->id.id.pk));
	assert_false(trust_admits(B->t, 7, C->id.id.pk));
	assert_int_equal(trust_pin_key(B->t, 7, A->id.id.pk), 0);
	assert_int_equal(pilot_read_file(B->path, 1 << 20, &text, &len), 0); /* saved at once */
	assert_non_null(strstr(text, A->id.pk));
	free(text);
	trust_free(B->t);
	B->t = open_trust(B, B->path, err, sizeof(err));
	assert_non_null(B->t);
	assert_int_equal(trust_pinned_key(B->t, 7, pk), TRUST_PIN_KEY);
	assert_memory_equal(pk, A->id.id.pk, PROTO_ED25519_LEN);
}

/* Untrusted nodes are pinned in "keys" (batched: saved by trust_flush), survive
 * a restart, move into the trusted entry when the node becomes trusted and back
 * on untrust; a confirmed rotation replaces the pin. */
static void test_key_list(void **state)
{
	char err[256], *text;
	size_t len;
	uint8_t pk[PROTO_ED25519_LEN];

	assert_int_equal(trust_pinned_key(B->t, A->id.node, pk), TRUST_PIN_NONE);
	assert_int_equal(trust_pin_key(B->t, A->id.node, A->id.id.pk), 1);
	assert_int_equal(trust_pinned_key(B->t, A->id.node, pk), TRUST_PIN_KEY);
	assert_false(trust_admits(B->t, A->id.node, A->id.id.pk)); /* pinned, not trusted */
	assert_int_equal(pilot_read_file(B->path, 1 << 20, &text, &len), -ENOENT);
	trust_flush(B->t);
	assert_int_equal(pilot_read_file(B->path, 1 << 20, &text, &len), 0);
	assert_non_null(strstr(text, "\"keys\": [\n    {\n      \"node_id\": "));
	assert_non_null(strstr(text, A->id.pk));
	free(text);
	trust_free(B->t);
	B->t = open_trust(B, B->path, err, sizeof(err));
	assert_non_null(B->t);
	assert_int_equal(trust_count_keys(B->t), 1);
	/* a handshake message with another key than the pinned one is refused */
	assert_int_equal(trust_pin_key(B->t, C->id.node, A->id.id.pk), 1);
	trust_request(C->t, B->id.node, "");
	pump();
	assert_false(trust_is_pending(B->t, C->id.node));
	trust_stats st;
	trust_get_stats(B->t, &st);
	assert_int_equal(st.refused_key, 1);
	/* trusted: the key moves into the entry; untrusted: back into the list */
	trust_request(A->t, B->id.node, "");
	pump();
	assert_int_equal(trust_approve(B->t, A->id.node), 0);
	pump();
	assert_int_equal(trust_count_keys(B->t), 1); /* C's */
	assert_int_equal(trust_pinned_key(B->t, A->id.node, pk), TRUST_PIN_KEY);
	assert_true(trust_admits(B->t, A->id.node, A->id.id.pk));
	assert_int_equal(trust_untrust(B->t, A->id.node), 0);
	pump();
	assert_int_equal(trust_count_keys(B->t), 2);
	assert_int_equal(trust_pinned_key(B->t, A->id.node, pk), TRUST_PIN_KEY);
	assert_memory_equal(pk, A->id.id.pk, PROTO_ED25519_LEN);
	/* rotation (confirmed by the caller) */
	assert_int_equal(trust_pin_key(B->t, A->id.node, C->id.id.pk), 1);
	assert_int_equal(trust_pinned_key(B->t, A->id.node, pk), TRUST_PIN_KEY);
	assert_memory_equal(pk, C->id.id.pk, PROTO_ED25519_LEN);
}

/* The list is bounded: the least recently seen key goes. Bad entries refuse the file. */
static void test_key_list_bounds(void **state)
{
	char err[256];
	uint8_t pk[PROTO_ED25519_LEN] = { 1 };

	for (uint32_t i = 1; i <= TRUST_MAX_KEYS + 1; i++) {
		W.now++;
		assert_true(trust_pin_key(B->t, i, pk) >= 0);
	}
	assert_int_equal(trust_count_keys(B->t), TRUST_MAX_KEYS);
	assert_int_equal(trust_pinned_key(B->t, 1, pk), TRUST_PIN_NONE);
	assert_int_equal(trust_pinned_key(B->t, TRUST_MAX_KEYS + 1, pk), TRUST_PIN_KEY);
	static const char *bad[] = {
		"{\"keys\":{}}", "{\"keys\":[{\"node_id\":5}]}", "{\"keys\":[{\"node_id\":0,\"public_key\":\"AAAA\"}]}",
		"{\"keys\":[{\"node_id\":5,\"public_key\":\"AAAA\"}]}", "{\"keys\":[1]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(trust_load_buf(B->t, bad[i], strlen(bad[i]), err, sizeof(err)), -EINVAL);
	char ok[256];
	snprintf(ok, sizeof(ok), "{\"trusted\":[{\"node_id\":5,\"public_key\":\"%s\"}],\"keys\":"
		 "[{\"node_id\":5,\"public_key\":\"%s\"},{\"node_id\":6,\"public_key\":\"%s\"}]}",
		 A->id.pk, C->id.pk, C->id.pk);
	assert_int_equal(trust_load_buf(B->t, ok, strlen(ok), err, sizeof(err)), 0);
	assert_int_equal(trust_count_keys(B->t), 1); /* the trusted entry's key wins */
	assert_int_equal(trust_pinned_key(B->t, 5, pk), TRUST_PIN_KEY);
	assert_memory_equal(pk, A->id.id.pk, PROTO_ED25519_LEN);
}

/* ---- codec ---- */
static void test_codec(void **state)
{
	trust_msg m, d;
	char *buf;
	size_t len;

	memset(&m, 0, sizeof(m));
	m.type = TRUST_MSG_REJECT;
	m.node_id = 42;
	m.timestamp = 1700000000;
	snprintf(m.reason, sizeof(m.reason), "a\"b\\c\n<&>\x01\xff\xe2\x80\xa8ü");
	assert_int_equal(trust_msg_encode(&m, &buf, &len), 0);
	assert_string_equal(buf, "{\"type\":\"handshake_reject\",\"node_id\":42,\"public_key\":\"\","
				 "\"justification\":\"\",\"signature\":\"\",\"reason\":"
				 "\"a\\\"b\\\\c\\n\\u003c\\u0026\\u003e\\u0001\\ufffd\\u2028ü\","
				 "\"timestamp\":1700000000}");
	assert_int_equal(trust_msg_decode((uint8_t *)buf, len, &d), 0);
	assert_int_equal(d.type, TRUST_MSG_REJECT);
	assert_int_equal(d.node_id, 42);
	assert_int_equal(d.timestamp, 1700000000);
	free(buf);

	trust_msg_sign(&m, &A->id.id, 5);
	assert_int_equal(trust_msg_encode(&m, &buf, &len), 0);
	assert_int_equal(trust_msg_decode((uint8_t *)buf, len, &d), 0);
	assert_int_equal(trust_msg_verify(&d, A->id.id.pk, 5), 0);
	assert_int_equal(trust_msg_verify(&d, A->id.id.pk, 6), -EBADMSG);
	free(buf);

	static const char *bad[] = {
		"", "[]", "{}", "{\"type\":1}", "{\"type\":\"handshake_request\",\"node_id\":-1}",
		"{\"type\":\"handshake_request\",\"node_id\":4294967296}",
		"{\"type\":\"handshake_request\",\"node_id\":1.5}",
		"{\"type\":\"handshake_request\",\"public_key\":\"AAAA\"}",
		"{\"type\":\"handshake_request\",\"timestamp\":\"1\"}",
		"{\"type\":\"handshake_request\",\"justification\":\"a\\u0000b\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(trust_msg_decode((const uint8_t *)bad[i], strlen(bad[i]), &d), -EBADMSG);
	assert_int_equal(trust_msg_decode((const uint8_t *)"{\"type\":\"x\"}", 12, &d), 0);
	assert_int_equal(d.type, TRUST_MSG_UNKNOWN);
}

/* RFC 3339 with the local offset, and back. */
static void test_times(void **state)
{
	char s[40];
	const char *tz = getenv("TZ");
	char *old = tz ? strdup(tz) : NULL;

	setenv("TZ", "XXX-5:30", 1); /* UTC+05:30 */
	tzset();
	trust_fmt_time(1700000000, s);
	assert_string_equal(s, "2023-11-15T03:43:20+05:30");
	assert_int_equal(trust_parse_time(s), 1700000000);
	setenv("TZ", "UTC0", 1);
	tzset();
	trust_fmt_time(1700000000, s);
	assert_string_equal(s, "2023-11-14T22:13:20Z");
	if (old)
		setenv("TZ", old, 1);
	else
		unsetenv("TZ");
	tzset();
	free(old);
	assert_int_equal(trust_parse_time("2023-11-14T17:13:20.5-05:00"), 1700000000);
	assert_int_equal(trust_parse_time("2023-11-14 22:13:20Z"), -62135596800LL);
	assert_int_equal(trust_parse_time("2023-11-14T22:13:20"), -62135596800LL);
	trust_fmt_time(-62135596800LL, s);
	assert_string_equal(s, "0001-01-01T00:00:00Z");
}

/* ---- bounds ---- */
static void test_bounds(void **state)
{
	char err[256], *big;
	size_t len = 0, cap = 1 << 23;
	json_object *rq = json_object_new_array();

	/* 1025 relayed requests from unknown nodes: pending, oldest evicted */
	for (uint32_t i = 0; i < TRUST_MAX_PENDING + 1; i++) {
		json_object *o = json_object_new_object();

		addi(o, "from_node_id", 100000 + i);
		json_object_object_add(o, "justification", json_object_new_string("x"));
		json_object_array_add(rq, o);
	}
	/* one at a time so received_at grows */
	for (size_t i = 0; i < json_object_array_length(rq); i++) {
		json_object *one = json_object_new_array();

		json_object_array_add(one, json_object_get(json_object_array_get_idx(rq, i)));
		W.now++;
		trust_on_poll(B->t, one, NULL);
		pump();
		json_object_put(one);
	}
	json_object_put(rq);
	assert_int_equal(trust_count_pending(B->t), TRUST_MAX_PENDING);
	assert_false(trust_is_pending(B->t, 100000));
	assert_true(trust_is_pending(B->t, 100001));
	assert_true(trust_is_pending(B->t, 100000 + TRUST_MAX_PENDING));

	/* a full trusted set refuses one more */
	big = malloc(cap);
	len += (size_t)sprintf(big + len, "{\"trusted\":[");
	for (uint32_t i = 1; i <= TRUST_MAX_TRUSTED; i++)
		len += (size_t)sprintf(big + len, "%s{\"node_id\":%u}", i > 1 ? "," : "", 200000 + i);
	len += (size_t)sprintf(big + len, "],\"pending\":[{\"node_id\":5}]}");
	assert_int_equal(trust_load_buf(B->t, big, len, err, sizeof(err)), 0);
	assert_int_equal(trust_count_trusted(B->t), TRUST_MAX_TRUSTED);
	assert_true(trust_is_trusted(B->t, 200001));
	assert_true(trust_is_trusted(B->t, 200000 + TRUST_MAX_TRUSTED));
	assert_int_equal(trust_approve(B->t, 5), -ENOSPC);
	/* and a file with more is refused */
	len -= strlen("],\"pending\":[{\"node_id\":5}]}");
	len += (size_t)sprintf(big + len, ",{\"node_id\":1}]}");
	assert_int_equal(trust_load_buf(B->t, big, len, err, sizeof(err)), -EINVAL);
	free(big);
	assert_int_equal(trust_count_trusted(B->t), TRUST_MAX_TRUSTED);
	assert_int_equal(trust_count_pending(B->t), 1);
}

static void test_replay_cache_expiry(void **state)
{
	char *buf;
	size_t len;

	craft(A, A->id.node, B->id.node, TRUST_MSG_REJECT, W.now, true, &buf, &len);
	assert_int_equal(deliver(B, A->id.node, buf, len), 0);
	assert_int_equal(deliver(B, A->id.node, buf, len), -EALREADY);
	W.now += 20; /* still fresh, still remembered */
	assert_int_equal(deliver(B, A->id.node, buf, len), -EALREADY);
	W.now += TRUST_REPLAY_TTL_S; /* forgotten, but stale by now */
	assert_int_equal(deliver(B, A->id.node, buf, len), -ESTALE);
	free(buf);
}

/* Free trust while a completion is still outstanding. */
static void test_free_with_ops_in_flight(void **state)
{
	trust_request(A->t, B->id.node, "");
	trust_free(A->t);
	A->t = NULL;
	pump(); /* the send completion arrives after the free */
	assert_true(trust_is_pending(B->t, A->id.node));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_mutual),
		T(test_approve),
		T(test_retrust_rerequest),
		T(test_reject),
		T(test_shared_network),
		T(test_revoke),
		T(test_relay),
		T(test_accept_relayed_as_request),
		T(test_impersonation),
		T(test_forged_revoke_and_accept),
		T(test_persistence),
		T(test_load_formats),
		T(test_codec),
		T(test_times),
		T(test_bounds),
		T(test_replay_cache_expiry),
		T(test_free_with_ops_in_flight),
		T(test_key_migration),
		T(test_key_list),
		T(test_key_list_bounds),
	};
	int rc;

	if (sodium_init() < 0 || !mkdtemp(tmpdir))
		return 1;
	pilot_log_init("test_trust", PILOT_LOG_WARN, PILOT_LOG_TEXT);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		rc = rc ? rc : 1;
	return rc;
}
