/* daemon/events.c: the broker on node 2, subscribers and publishers on node 1,
 * two connection tables back to back on a real loop (conn_pair.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "daemon/events.h"
#include "tests/unit/conn_pair.h"

typedef struct fx {
	cp_net *n;
	evs_broker *b;
	int notes[3];
} fx;

static void on_note(void *ctx, enum evs_note what, const uint8_t *topic, size_t tlen,
		    pilot_addr remote, size_t size)
{
	fx *f = ctx;

	assert_int_equal(remote.node, 1);
	f->notes[what]++;
}

static fx *fx_new(const evs_config *over)
{
	fx *f = calloc(1, sizeof(*f));
	evs_config cfg = { 0 };
	int err = 0;

	if (over)
		cfg = *over;
	cfg.on_note = on_note;
	cfg.ctx = f;
	f->n = cp_new(64 * 1024);
	f->b = evs_broker_new(f->n->t[1], &cfg, &err);
	assert_non_null(f->b);
	return f;
}

static void fx_free(fx *f)
{
	evs_broker_free(f->b);
	cp_free(f->n);
	free(f);
}

static evs_broker_stats bstats(fx *f)
{
	evs_broker_stats st;

	evs_broker_get_stats(f->b, &st);
	return st;
}

typedef struct cnt {
	fx *f;
	uint64_t n;
} cnt;

static bool subs_at_least(void *arg)
{
	cnt *c = arg;

	return bstats(c->f).subscribes >= c->n;
}

static void wait_subs(fx *f, uint64_t n)
{
	cnt c = { f, n };

	assert_true(cp_run_until(f->n, subs_at_least, &c, 5000));
}

/* ---- a subscriber through evs_subscribe ------------------------------------------------ */

typedef struct sub {
	evs_sub *h;
	int events, ended, end_err;
	char topic[64];
	uint8_t data[256];
	size_t len;
	uint64_t bytes;
	bool cancel_in_cb;
} sub;

static void sub_event(void *arg, const uint8_t *topic, size_t tlen, const uint8_t *data, size_t len)
{
	sub *s = arg;

	s->events++;
	s->bytes += len;
	snprintf(s->topic, sizeof(s->topic), "%.*s", (int)tlen, (const char *)topic);
	s->len = len < sizeof(s->data) ? len : sizeof(s->data);
	memcpy(s->data, data, s->len);
	if (s->cancel_in_cb) {
		evs_sub_cancel(s->h);
		s->h = NULL;
	}
}

static void sub_end(void *arg, int err)
{
	sub *s = arg;

	s->ended++;
	s->end_err = err;
	s->h = NULL;
}

static void sub_start(fx *f, sub *s, const char *topic)
{
	int err = 0;

	memset(s, 0, sizeof(*s));
	s->h = evs_subscribe(f->n->t[0], pilot_addr_make(0, 2), topic, sub_event, sub_end, s, &err);
	assert_non_null(s->h);
}

static void sub_stop(sub *s)
{
	if (s->h)
		evs_sub_cancel(s->h);
	s->h = NULL;
}

/* ---- a publisher through evs_publish ------------------------------------------------------ */

typedef struct pubres {
	bool done;
	int err;
} pubres;

static void pub_done(void *arg, int err)
{
	pubres *p = arg;

	p->done = true;
	p->err = err;
}

static bool pub_finished(void *arg)
{
	return ((pubres *)arg)->done;
}

static void publish(fx *f, const char *topic, const char *data)
{
	pubres p = { 0 };
	int err = 0;

	assert_non_null(evs_publish(f->n->t[0], pilot_addr_make(0, 2), topic, data, strlen(data),
				   pub_done, &p, &err));
	assert_true(cp_run_until(f->n, pub_finished, &p, 5000));
	assert_int_equal(p.err, 0);
	cp_run_for(f->n, 30); /* deliveries to the subscribers */
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_codec(void **state)
{
	uint8_t *b;
	const uint8_t *topic;
	size_t tlen;
	uint32_t plen;
	uint8_t bad[] = { 0x04, 0x01 };         /* T = 1025 */
	uint8_t big[] = { 0x00, 0x01, 'a', 0x01, 0x00, 0x00, 0x01 };
	int64_t n = evs_encode("top", 3, "payload", 7, &b);

	assert_int_equal(n, 2 + 3 + 4 + 7);
	assert_int_equal(evs_hdr_decode(b, 1, EVS_MAX_PAYLOAD, &topic, &tlen, &plen), 0);
	assert_int_equal(evs_hdr_decode(b, 8, EVS_MAX_PAYLOAD, &topic, &tlen, &plen), 0);
	assert_int_equal(evs_hdr_decode(b, (size_t)n, EVS_MAX_PAYLOAD, &topic, &tlen, &plen), 9);
	assert_int_equal(tlen, 3);
	assert_memory_equal(topic, "top", 3);
	assert_int_equal(plen, 7);
	assert_int_equal(evs_hdr_decode(b, (size_t)n, 6, &topic, &tlen, &plen), -EMSGSIZE);
	free(b);
	assert_int_equal(evs_hdr_decode(bad, 2, EVS_MAX_PAYLOAD, &topic, &tlen, &plen), -EMSGSIZE);
	assert_int_equal(evs_hdr_decode(big, sizeof(big), EVS_MAX_PAYLOAD, &topic, &tlen, &plen), -EMSGSIZE);
	assert_int_equal(evs_encode("x", EVS_MAX_TOPIC + 1, NULL, 0, &b), -EMSGSIZE);
}

static void test_exact_star_no_echo(void **state)
{
	fx *f = fx_new(NULL);
	sub a, b, star;

	sub_start(f, &a, "t");
	sub_start(f, &b, "u");
	sub_start(f, &star, "*");
	wait_subs(f, 3);
	publish(f, "t", "hello");
	assert_int_equal(a.events, 1);
	assert_string_equal(a.topic, "t");
	assert_int_equal(a.len, 5);
	assert_memory_equal(a.data, "hello", 5);
	assert_int_equal(b.events, 0);
	assert_int_equal(star.events, 1);
	assert_string_equal(star.topic, "t");
	/* the publisher was subscribed to "t" itself and saw nothing: no echo */
	assert_int_equal(bstats(f).delivered, 2);

	/* a publication on "*" reaches only "*" subscribers */
	publish(f, "*", "all");
	assert_int_equal(a.events, 1);
	assert_int_equal(b.events, 0);
	assert_int_equal(star.events, 2);
	assert_string_equal(star.topic, "*");

	/* a topic nobody subscribed to: only "*" */
	publish(f, "zzz", "z");
	assert_int_equal(star.events, 3);
	assert_int_equal(a.events + b.events, 1);
	assert_int_equal(f->notes[EVS_PUBLISHED], 3);
	sub_stop(&a);
	sub_stop(&b);
	sub_stop(&star);
	cp_run_for(f->n, 50);
	assert_int_equal(bstats(f).active, 0);
	assert_int_equal(f->notes[EVS_SUBSCRIBED], 6);
	assert_int_equal(f->notes[EVS_UNSUBSCRIBED], 6);
	fx_free(f);
}

static void test_multiple_subscribers(void **state)
{
	fx *f = fx_new(NULL);
	sub s[8];

	for (int i = 0; i < 8; i++)
		sub_start(f, &s[i], i < 6 ? "news" : "other");
	wait_subs(f, 8);
	publish(f, "news", "n1");
	publish(f, "news", "n2");
	for (int i = 0; i < 8; i++) {
		assert_int_equal(s[i].events, i < 6 ? 2 : 0);
		if (i < 6)
			assert_memory_equal(s[i].data, "n2", 2);
	}
	/* cancel from inside the callback */
	s[0].cancel_in_cb = true;
	publish(f, "news", "n3");
	assert_int_equal(s[0].events, 3);
	assert_null(s[0].h);
	assert_int_equal(s[0].ended, 0);
	for (int i = 0; i < 8; i++)
		sub_stop(&s[i]);
	fx_free(f);
}

/* A raw publisher: subscribes to "other", then publishes n events of size sz on "t". */
static uint8_t *raw_events(const char *topic, int n, size_t sz, size_t *len)
{
	uint8_t *se, *ev, *all;
	int64_t a = evs_encode("other", 5, NULL, 0, &se);
	uint8_t *payload = calloc(1, sz);
	int64_t b = evs_encode(topic, strlen(topic), payload, sz, &ev);

	*len = (size_t)a + (size_t)n * (size_t)b;
	all = malloc(*len);
	memcpy(all, se, (size_t)a);
	for (int i = 0; i < n; i++)
		memcpy(all + a + (size_t)i * (size_t)b, ev, (size_t)b);
	free(se);
	free(ev);
	free(payload);
	return all;
}

static bool raw_sent(void *arg)
{
	cp_cli *k = arg;

	return k->sent == k->ntx;
}

static void test_slow_subscriber_dropped(void **state)
{
	/* Room for the fast subscriber to fall behind for a while (a loaded machine
	 * deschedules this process and its timers fire late), none for the one
	 * that never reads: 3.2 MB pass through. */
	evs_config cfg = { .max_payload = 16384, .max_queue = 512 * 1024, .max_mem = 2 << 20 };
	fx *f = fx_new(&cfg);
	uint8_t *subev, *tx;
	size_t ntx;
	int64_t ns = evs_encode("t", 1, NULL, 0, &subev);
	cp_cli slow, pub;
	sub fast;
	evs_broker_stats st;

	assert_true(cp_cli_dial(f->n, &slow, EVS_PORT, subev, (size_t)ns));
	slow.noread = true; /* never reads: its window closes, then the broker's queue fills */
	sub_start(f, &fast, "t");
	wait_subs(f, 2);
	tx = raw_events("t", 200, 16000, &ntx);        /* 3.2 MB through the broker */
	assert_true(cp_cli_dial(f->n, &pub, EVS_PORT, tx, ntx));
	assert_true(cp_run_until(f->n, raw_sent, &pub, 30000));
	cp_run_for(f->n, 200);
	st = bstats(f);
	assert_int_equal(st.slow_dropped, 1);
	assert_true(slow.closed);
	assert_int_equal(slow.err, ECONNRESET);
	assert_int_equal(fast.events, 200);             /* the fast one missed nothing */
	assert_int_equal(fast.bytes, 200 * 16000);
	assert_true(st.mem <= cfg.max_mem);
	assert_int_equal(st.published, 200);
	cp_cli_done(&pub);
	cp_cli_done(&slow);
	sub_stop(&fast);
	cp_run_for(f->n, 50);
	assert_int_equal(bstats(f).mem, 0);
	free(subev);
	free(tx);
	fx_free(f);
}

static bool raw_closed(void *arg)
{
	return ((cp_cli *)arg)->closed;
}

static void test_malformed_dropped(void **state)
{
	evs_config cfg = { .max_payload = 1000 };
	fx *f = fx_new(&cfg);
	static const uint8_t bad_topic[] = { 0xff, 0xff, 'x', 'y' };
	uint8_t *se, *ev, *tx;
	int64_t a = evs_encode("t", 1, NULL, 0, &se);
	uint8_t payload[1001] = { 0 };
	int64_t b = evs_encode("t", 1, payload, sizeof(payload), &ev);
	cp_cli k1, k2;
	sub good;

	sub_start(f, &good, "t");
	wait_subs(f, 1);
	assert_true(cp_cli_dial(f->n, &k1, EVS_PORT, bad_topic, sizeof(bad_topic)));
	assert_true(cp_run_until(f->n, raw_closed, &k1, 5000));
	assert_int_equal(k1.err, ECONNRESET);

	/* a payload over max_payload after a valid subscription */
	tx = malloc((size_t)(a + b));
	memcpy(tx, se, (size_t)a);
	memcpy(tx + a, ev, (size_t)b);
	assert_true(cp_cli_dial(f->n, &k2, EVS_PORT, tx, (size_t)(a + b)));
	assert_true(cp_run_until(f->n, raw_closed, &k2, 5000));
	assert_int_equal(bstats(f).oversize_dropped, 2);
	assert_int_equal(good.events, 0);
	assert_int_equal(bstats(f).mem, 0);
	cp_cli_done(&k1);
	cp_cli_done(&k2);
	sub_stop(&good);
	free(se);
	free(ev);
	free(tx);
	fx_free(f);
}

static bool sub_ended(void *arg)
{
	return ((sub *)arg)->ended > 0;
}

static void test_client_errors(void **state)
{
	fx *f = fx_new(NULL);
	char topic[EVS_MAX_TOPIC + 2];
	sub s;
	pubres p = { 0 };
	int err = 0;

	assert_null(evs_subscribe(f->n->t[0], pilot_addr_make(0, 2), "", sub_event, sub_end, &s, &err));
	assert_int_equal(err, -EINVAL);
	memset(topic, 'a', sizeof(topic) - 1);
	topic[sizeof(topic) - 1] = '\0';
	assert_null(evs_publish(f->n->t[0], pilot_addr_make(0, 2), topic, "x", 1, pub_done, &p, &err));
	assert_int_equal(err, -EINVAL);

	/* the broker goes away: the subscriber ends with an error */
	sub_start(f, &s, "t");
	wait_subs(f, 1);
	evs_broker_free(f->b);
	f->b = NULL;
	assert_true(cp_run_until(f->n, sub_ended, &s, 5000));
	assert_int_equal(s.end_err, -ECONNRESET);

	/* nothing listens any more: refused */
	assert_non_null(evs_publish(f->n->t[0], pilot_addr_make(0, 2), "t", "x", 1, pub_done, &p, &err));
	assert_true(cp_run_until(f->n, pub_finished, &p, 5000));
	assert_int_equal(p.err, -ECONNREFUSED);
	cp_free(f->n);
	free(f);
}

static void test_max_conns(void **state)
{
	evs_config cfg = { .max_conns = 2 };
	fx *f = fx_new(&cfg);
	sub s[3];

	for (int i = 0; i < 3; i++)
		sub_start(f, &s[i], "t");
	assert_true(cp_run_until(f->n, sub_ended, &s[2], 5000));
	assert_int_equal(s[2].end_err, -ECONNRESET); /* SYN-ACK sent, then RST */
	assert_int_equal(bstats(f).refused, 1);
	sub_stop(&s[0]);
	sub_stop(&s[1]);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codec),
		cmocka_unit_test(test_exact_star_no_echo),
		cmocka_unit_test(test_multiple_subscribers),
		cmocka_unit_test(test_slow_subscriber_dropped),
		cmocka_unit_test(test_malformed_dropped),
		cmocka_unit_test(test_client_errors),
		cmocka_unit_test(test_max_conns),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
