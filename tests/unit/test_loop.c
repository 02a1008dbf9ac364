#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/loop.h"

struct rec {
	int order[16];
	int n;
	uint64_t ids[4];
	pilot_loop *l;
	int count;
};

static int64_t record_cb(pilot_loop *l, uint64_t id, void *arg)
{
	struct rec *r = arg;

	for (int i = 0; i < 4; i++)
		if (r->ids[i] == id)
			r->order[r->n++] = i;
	if (r->n == 3)
		pilot_loop_stop(l);
	return 0;
}

static void test_timers_fire_in_order(void **state)
{
	pilot_loop *l = pilot_loop_new();
	struct rec r = { 0 };
	uint64_t t0 = pilot_now_ms();

	assert_non_null(l);
	r.ids[2] = pilot_loop_add_timer(l, 30, record_cb, &r);
	r.ids[0] = pilot_loop_add_timer(l, 5, record_cb, &r);
	r.ids[1] = pilot_loop_add_timer(l, 15, record_cb, &r);
	assert_true(r.ids[0] && r.ids[1] && r.ids[2]);
	assert_true(r.ids[0] != r.ids[1] && r.ids[1] != r.ids[2]);
	assert_int_equal(pilot_loop_run(l), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.order[0], 0);
	assert_int_equal(r.order[1], 1);
	assert_int_equal(r.order[2], 2);
	assert_true(pilot_now_ms() - t0 >= 30);
	assert_true(pilot_loop_now_ms(l) >= t0 + 30);
	pilot_loop_free(l);
}

static int64_t rearm_cb(pilot_loop *l, uint64_t id, void *arg)
{
	struct rec *r = arg;

	if (++r->count == 3) {
		pilot_loop_stop(l);
		return 0;
	}
	return 2;
}

static void test_timer_rearm(void **state)
{
	pilot_loop *l = pilot_loop_new();
	struct rec r = { 0 };
	int i;

	pilot_loop_add_timer(l, 1, rearm_cb, &r);
	assert_int_equal(pilot_loop_run(l), 0);
	assert_int_equal(r.count, 3);
	/* It stopped itself: no more firing. */
	for (i = 0; i < 3; i++)
		pilot_loop_run_once(l, 5);
	assert_int_equal(r.count, 3);
	pilot_loop_free(l);
}

/* The first timer deletes the second (due in the same round) and itself. */
static int64_t deleter_cb(pilot_loop *l, uint64_t id, void *arg)
{
	struct rec *r = arg;

	r->count++;
	pilot_loop_del_timer(l, r->ids[1]);
	pilot_loop_del_timer(l, id);
	return 100; /* ignored: it deleted itself */
}

static int64_t count_cb(pilot_loop *l, uint64_t id, void *arg)
{
	((struct rec *)arg)->n++;
	return 0;
}

static void test_timer_delete_during_dispatch(void **state)
{
	pilot_loop *l = pilot_loop_new();
	struct rec r = { 0 };
	int i;

	r.ids[0] = pilot_loop_add_timer(l, 0, deleter_cb, &r);
	r.ids[1] = pilot_loop_add_timer(l, 0, count_cb, &r);
	r.ids[2] = pilot_loop_add_timer(l, 1, count_cb, &r);
	for (i = 0; i < 5; i++)
		assert_int_equal(pilot_loop_run_once(l, 5), 0);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.n, 1); /* only ids[2] */
	/* Deleting fired / unknown ids is harmless. */
	pilot_loop_del_timer(l, r.ids[0]);
	pilot_loop_del_timer(l, r.ids[2]);
	pilot_loop_del_timer(l, 0);
	pilot_loop_del_timer(l, 12345678);
	pilot_loop_free(l);
}

struct fifo {
	uint64_t ids[1000];
	int fired[1000], n;
};

static int64_t fifo_cb(pilot_loop *l, uint64_t id, void *arg)
{
	struct fifo *f = arg;

	(void)l;
	for (int i = 0; i < 1000; i++)
		if (f->ids[i] == id)
			f->fired[f->n++] = i;
	return 0;
}

/* Timers due in the same millisecond run in the order they were armed, also
 * across the slot table's growth (1000 timers: four chunks) and with some
 * deleted in between. */
static void test_timers_same_deadline_fifo(void **state)
{
	pilot_loop *l = pilot_loop_new();
	struct fifo *f = calloc(1, sizeof(*f));
	int i, k = 0;

	(void)state;
	assert_non_null(f);
	for (i = 0; i < 1000; i++)
		assert_true((f->ids[i] = pilot_loop_add_timer(l, 0, fifo_cb, f)) != 0);
	for (i = 0; i < 1000; i += 7)
		pilot_loop_del_timer(l, f->ids[i]);
	assert_int_equal(pilot_loop_run_once(l, 5), 0);
	for (i = 0; i < 1000; i++)
		if (i % 7)
			assert_int_equal(f->fired[k++], i);
	assert_int_equal(f->n, k);
	free(f);
	pilot_loop_free(l);
}

static void test_timer_delete_many(void **state)
{
	pilot_loop *l = pilot_loop_new();
	struct rec r = { 0 };
	uint64_t last = 0, id;
	int i;

	/* Re-armed idle timers: the heap must not keep the stale ones forever. */
	for (i = 0; i < 10000; i++) {
		id = pilot_loop_add_timer(l, 100000, count_cb, &r);
		assert_true(id > last); /* never reused */
		pilot_loop_del_timer(l, last);
		last = id;
	}
	pilot_loop_add_timer(l, 0, count_cb, &r);
	pilot_loop_run_once(l, 10);
	assert_int_equal(r.n, 1);
	pilot_loop_free(l);
}

static void on_readable(pilot_loop *l, int fd, int events, void *arg)
{
	struct rec *r = arg;
	uint64_t v;

	assert_true(events & PILOT_EV_READ);
	assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
	r->count += (int)v;
	pilot_loop_stop(l);
}

static void test_fd_readiness(void **state)
{
	pilot_loop *l = pilot_loop_new();
	struct rec r = { 0 };
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t v = 7;

	assert_true(efd >= 0);
	assert_int_equal(pilot_loop_add_fd(l, efd, PILOT_EV_READ, on_readable, &r), 0);
	/* Nothing to read yet: run_once returns after the timeout. */
	assert_int_equal(pilot_loop_run_once(l, 10), 0);
	assert_int_equal(r.count, 0);
	assert_int_equal(write(efd, &v, sizeof(v)), sizeof(v));
	assert_int_equal(pilot_loop_run(l), 0);
	assert_int_equal(r.count, 7);
	assert_int_equal(pilot_loop_mod_fd(l, efd, PILOT_EV_READ | PILOT_EV_WRITE), 0);
	pilot_loop_del_fd(l, efd);
	assert_int_equal(pilot_loop_mod_fd(l, efd, PILOT_EV_READ), -ENOENT);
	assert_int_equal(write(efd, &v, sizeof(v)), sizeof(v));
	assert_int_equal(pilot_loop_run_once(l, 10), 0);
	assert_int_equal(r.count, 7);
	assert_int_equal(pilot_loop_add_fd(l, -1, PILOT_EV_READ, on_readable, &r), -EINVAL);
	/* Closed without del_fd, number reused: adding it again still works. */
	assert_int_equal(pilot_loop_add_fd(l, efd, PILOT_EV_READ, on_readable, &r), 0);
	close(efd);
	efd = eventfd(3, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_int_equal(pilot_loop_add_fd(l, efd, PILOT_EV_READ, on_readable, &r), 0);
	assert_int_equal(pilot_loop_run(l), 0);
	assert_int_equal(r.count, 10);
	pilot_loop_del_fd(l, efd);
	close(efd);
	pilot_loop_free(l);
}

struct pair {
	int fd[2];
	int calls[2];
};

/* Whichever of two ready fds runs first deletes the other. */
static void on_pair(pilot_loop *l, int fd, int events, void *arg)
{
	struct pair *p = arg;
	int me = fd == p->fd[0] ? 0 : 1;

	p->calls[me]++;
	pilot_loop_del_fd(l, p->fd[!me]);
	pilot_loop_del_fd(l, fd);
}

static void test_fd_delete_during_dispatch(void **state)
{
	pilot_loop *l = pilot_loop_new();
	struct pair p = { 0 };
	uint64_t v = 1;

	p.fd[0] = eventfd(0, EFD_NONBLOCK);
	p.fd[1] = eventfd(0, EFD_NONBLOCK);
	assert_int_equal(pilot_loop_add_fd(l, p.fd[0], PILOT_EV_READ, on_pair, &p), 0);
	assert_int_equal(pilot_loop_add_fd(l, p.fd[1], PILOT_EV_READ, on_pair, &p), 0);
	assert_int_equal(write(p.fd[0], &v, sizeof(v)), sizeof(v));
	assert_int_equal(write(p.fd[1], &v, sizeof(v)), sizeof(v));
	assert_int_equal(pilot_loop_run_once(l, 10), 0);
	assert_int_equal(p.calls[0] + p.calls[1], 1);
	close(p.fd[0]);
	close(p.fd[1]);
	pilot_loop_free(l);
}

static void on_writable(pilot_loop *l, int fd, int events, void *arg)
{
	*(int *)arg = events;
}

static void test_fd_hangup(void **state)
{
	pilot_loop *l = pilot_loop_new();
	int p[2], ev = 0;

	assert_int_equal(pipe(p), 0);
	assert_int_equal(pilot_loop_add_fd(l, p[1], PILOT_EV_WRITE, on_writable, &ev), 0);
	assert_int_equal(pilot_loop_run_once(l, 10), 0);
	assert_int_equal(ev, PILOT_EV_WRITE);
	close(p[0]);
	ev = 0;
	assert_int_equal(pilot_loop_run_once(l, 10), 0);
	assert_true(ev & PILOT_EV_ERROR);
	assert_true(ev & PILOT_EV_READ);
	pilot_loop_del_fd(l, p[1]);
	close(p[1]);
	pilot_loop_free(l);
}

static void on_signal(pilot_loop *l, int signo, void *arg)
{
	*(int *)arg = signo;
	pilot_loop_stop(l);
}

static void test_signal(void **state)
{
	pilot_loop *l = pilot_loop_new();
	int got = 0;

	assert_int_equal(pilot_loop_add_signal(l, SIGUSR1, on_signal, &got), 0);
	assert_int_equal(pilot_loop_add_signal(l, SIGUSR2, on_signal, &got), 0);
	assert_int_equal(raise(SIGUSR1), 0);
	assert_int_equal(pilot_loop_run(l), 0);
	assert_int_equal(got, SIGUSR1);
	assert_int_equal(raise(SIGUSR2), 0);
	assert_int_equal(pilot_loop_run(l), 0);
	assert_int_equal(got, SIGUSR2);
	assert_int_equal(pilot_loop_add_signal(l, 0, on_signal, &got), -EINVAL);
	pilot_loop_free(l);
}

static void before_sleep(pilot_loop *l, void *arg)
{
	if (++*(int *)arg == 3)
		pilot_loop_stop(l);
}

static int64_t tick_cb(pilot_loop *l, uint64_t id, void *arg)
{
	return 1;
}

static void test_before_sleep_and_stop(void **state)
{
	pilot_loop *l = pilot_loop_new();
	int calls = 0;

	/* A far timer: the hook's stop must not wait for it. */
	pilot_loop_add_timer(l, 1, tick_cb, NULL);
	pilot_loop_add_timer(l, 60000, tick_cb, NULL);
	pilot_loop_set_before_sleep(l, before_sleep, &calls);
	assert_int_equal(pilot_loop_run(l), 0);
	assert_int_equal(calls, 3);
	pilot_loop_set_before_sleep(l, NULL, NULL);
	assert_int_equal(pilot_loop_run_once(l, 0), 0);
	assert_int_equal(calls, 3);
	pilot_loop_free(l);
	pilot_loop_free(NULL);
}

static void test_clock(void **state)
{
	uint64_t a = pilot_now_us(), b;

	usleep(2000);
	b = pilot_now_us();
	assert_true(b - a >= 2000);
	assert_true(pilot_now_ms() >= a / 1000 + 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timers_fire_in_order),
		cmocka_unit_test(test_timers_same_deadline_fifo),
		cmocka_unit_test(test_timer_rearm),
		cmocka_unit_test(test_timer_delete_during_dispatch),
		cmocka_unit_test(test_timer_delete_many),
		cmocka_unit_test(test_fd_readiness),
		cmocka_unit_test(test_fd_delete_during_dispatch),
		cmocka_unit_test(test_fd_hangup),
		cmocka_unit_test(test_signal),
		cmocka_unit_test(test_before_sleep_and_stop),
		cmocka_unit_test(test_clock),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
