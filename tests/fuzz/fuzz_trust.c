/* libFuzzer: arbitrary bytes into trust_on_message and into the trust.json
 * loader. Completions are queued and run by a tiny pump after each call (never
 * inside the op, as the trust_ops contract says). The first byte picks the
 * target (bit 0: loader) and options: bit 3 re-signs the decoded message with
 * the peer's real key so the processing rules run; bits 1, 2, 4, 5 follow with
 * untrust / approve / request / reject. Bit 6 (without bit 0): the rest is a
 * poll_handshakes_ok reply for trust_on_poll, then bits 2 and 5 approve /
 * reject. Dump -> load must round-trip. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/trust.h"
#include "lib/jsonwire.h"
#include "lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pilot_identity me, peer;
static trust *T;

typedef struct pend {
	int kind; /* 0 key, 1 net, 2 reg, 3 sent */
	void *op;
	union {
		trust_key_cb key;
		trust_net_cb net;
		trust_reply_cb reply;
		trust_sent_cb sent;
	} cb;
} pend;

static pend Q[4096];
static size_t NQ;

static int q(int kind, void *op, void *cb)
{
	if (NQ == sizeof(Q) / sizeof(Q[0]))
		return -ENOBUFS;
	Q[NQ].kind = kind;
	Q[NQ].op = op;
	memcpy(&Q[NQ].cb, &cb, sizeof(cb));
	NQ++;
	return 0;
}

static int f_send(void *a, uint32_t p, const uint8_t *b, size_t l, trust_sent_cb d, void *op)
{
	return q(3, op, (void *)d);
}
static int f_key(void *a, uint32_t n, trust_key_cb d, void *op) { return q(0, op, (void *)d); }
static int f_net(void *a, uint32_t p, trust_net_cb d, void *op) { return q(1, op, (void *)d); }
static int f_rep(void *a, uint32_t p, trust_reply_cb d, void *op) { return q(2, op, (void *)d); }
static int f_req(void *a, uint32_t p, const char *j, trust_reply_cb d, void *op) { return q(2, op, (void *)d); }
static int f_resp(void *a, uint32_t p, bool acc, trust_reply_cb d, void *op) { return q(2, op, (void *)d); }

static void pump(void)
{
	for (size_t i = 0; i < NQ; i++) {
		pend *p = &Q[i];

		switch (p->kind) {
		case 0: p->cb.key(p->op, 0, peer.pk); break;
		case 1: p->cb.net(p->op, 0, (uint16_t)(i & 1)); break;
		case 2: p->cb.reply(p->op, NULL, -ETIMEDOUT); break;
		default: p->cb.sent(p->op, (i & 1) ? -EHOSTUNREACH : 0); break;
		}
	}
	NQ = 0;
}

static int64_t fixed_now(void *a)
{
	return 1700000000;
}

static void init(void)
{
	uint8_t s1[32] = { 1 }, s2[32] = { 2 };
	char err[128];
	trust_config c = {
		.id = &me,
		.now = fixed_now,
		.ops = { f_send, f_key, f_net, f_rep, f_rep, f_req, f_resp, NULL, NULL, NULL, NULL },
	};

	pilot_log_init("fuzz", PILOT_LOG_ERROR, PILOT_LOG_TEXT);
	pilot_identity_from_seed(&me, s1);
	pilot_identity_from_seed(&peer, s2);
	T = trust_new(&c, err, sizeof(err));
	if (!T)
		abort();
	trust_set_node_id(T, 1);
}

static bool non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned runs;
	char err[256];

	if (!T)
		init();
	if (size < 1)
		return 0;
	if (data[0] & 1) {
		trust_load_buf(T, (const char *)data + 1, size - 1, err, sizeof(err));
		char *out;
		size_t len;

		if (trust_dump(T, &out, &len) == 0) {
			/* what we write we must read back */
			if (trust_load_buf(T, out, len, err, sizeof(err)) != 0)
				abort();
			free(out);
		}
	} else if (data[0] & 64) {
		/* A poll_handshakes_ok reply from the registry (requests and responses
		 * relayed for peers that could not reach us directly). */
		json_object *o = jw_parse((const char *)data + 1, size - 1, NULL);

		if (json_object_is_type(o, json_type_object))
			trust_on_poll(T, json_object_object_get(o, "requests"), json_object_object_get(o, "responses"));
		json_object_put(o);
		pump();
		if (data[0] & 4)
			trust_approve(T, 2);
		if (data[0] & 32)
			trust_reject(T, 2, "fuzz");
	} else {
		trust_msg m;

		trust_on_message(T, 2, data + 1, size - 1);
		/* The same content made authentic, to reach the processing rules. */
		if ((data[0] & 8) && trust_msg_decode(data + 1, size - 1, &m) == 0) {
			char *out;
			size_t len;

			m.node_id = 2;
			m.timestamp = fixed_now(NULL) - (m.timestamp & 0xff);
			trust_msg_sign(&m, &peer, 1);
			if (m.type != TRUST_MSG_UNKNOWN && trust_msg_encode(&m, &out, &len) == 0) {
				trust_on_message(T, 2, (uint8_t *)out, len);
				free(out);
			}
		}
		if (trust_msg_decode(data + 1, size - 1, &m) == 0 && m.type != TRUST_MSG_UNKNOWN) {
			char *out;
			size_t len;

			if (trust_msg_encode(&m, &out, &len) == 0) {
				trust_msg d;

				/* Invalid UTF-8 is re-encoded as U+FFFD (3 bytes), which
				 * may push a string over its limit; anything else must
				 * read back the same. */
				int rc = trust_msg_decode((uint8_t *)out, len, &d);

				if (rc != 0 && !non_ascii(m.justification) && !non_ascii(m.reason))
					abort();
				if (rc == 0 && (d.node_id != m.node_id || d.timestamp != m.timestamp ||
						d.type != m.type || d.has_key != m.has_key))
					abort();
				free(out);
			}
		}
		pump();
		if (data[0] & 2)
			trust_untrust(T, 2);
		if (data[0] & 4)
			trust_approve(T, 2);
		if (data[0] & 16)
			trust_request(T, 2, "fuzz");
		if (data[0] & 32)
			trust_reject(T, 2, "fuzz");
	}
	pump();
	if (++runs % 4096 == 0) {
		trust_free(T);
		T = NULL;
	}
	return 0;
}
