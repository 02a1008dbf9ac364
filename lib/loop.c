/* Single-threaded epoll loop (after Redis ae.c): per-fd handlers in an array
 * indexed by fd, timers in a binary min-heap with lazy deletion, signals through
 * signalfd. Nothing is allocated per event; arrays only grow. */
#include "lib/loop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
/* A timer id is (sequence << SLOT_BITS) | slot: O(1) lookup on delete, and the
 * 40-bit sequence makes ids unique for 2^40 timers. */
#define SLOT_BITS 24
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define MAX_SLOTS (1u << SLOT_BITS)

struct fd_ent {
	pilot_fd_cb cb;
	void *arg;
	int mask;
	int used;
	uint32_t gen; /* bumped on delete so stale events of a reused fd are dropped */
};

struct timer_slot {
	uint64_t id; /* 0 = free */
	pilot_timer_cb cb;
	void *arg;
	uint32_t next_free;
};

struct heap_ent {
	uint64_t when;
	uint64_t id;
};

struct pilot_loop {
	int epfd;
	int sigfd;
	int stop;
	uint64_t now;

	struct fd_ent *fds;
	int nfds;

	struct timer_slot *slots;
	uint32_t nslots, free_head; /* free_head: slot index + 1, 0 = none */
	struct heap_ent *heap;
	size_t heap_len, heap_cap, stale;
	uint64_t seq;
	uint64_t firing; /* id of the timer whose callback runs now */

	pilot_hook_cb before_sleep;
	void *before_sleep_arg;

	sigset_t sigmask;
	struct {
		pilot_signal_cb cb;
		void *arg;
	} sig[_NSIG];

	struct epoll_event events[MAX_EVENTS];
};

static uint64_t clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t pilot_now_us(void)
{
	return clock_us();
}

uint64_t pilot_now_ms(void)
{
	return clock_us() / 1000u;
}

uint64_t pilot_loop_now_ms(const pilot_loop *l)
{
	return l->now;
}

pilot_loop *pilot_loop_new(void)
{
	pilot_loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	l->sigfd = -1;
	sigemptyset(&l->sigmask);
	l->now = pilot_now_ms();
	return l;
}

void pilot_loop_free(pilot_loop *l)
{
	if (!l)
		return;
	/* Signals stay blocked: unblocking could deliver a pending SIGTERM with its
	 * default action after the loop is gone. */
	if (l->sigfd >= 0)
		close(l->sigfd);
	close(l->epfd);
	free(l->fds);
	free(l->slots);
	free(l->heap);
	free(l);
}

/* ---- fds -------------------------------------------------------------------- */

static int grow_fds(pilot_loop *l, int fd)
{
	int n = l->nfds ? l->nfds : 64;
	struct fd_ent *p;

	while (n <= fd)
		n *= 2;
	p = realloc(l->fds, (size_t)n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	memset(p + l->nfds, 0, (size_t)(n - l->nfds) * sizeof(*p));
	l->fds = p;
	l->nfds = n;
	return 0;
}

static uint32_t to_epoll(int events)
{
	return (events & PILOT_EV_READ ? EPOLLIN : 0) | (events & PILOT_EV_WRITE ? EPOLLOUT : 0);
}

static int ctl(pilot_loop *l, int op, int fd, int events)
{
	struct epoll_event ev = { .events = to_epoll(events) };

	ev.data.u64 = (uint64_t)l->fds[fd].gen << 32 | (uint32_t)fd;
	return epoll_ctl(l->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

int pilot_loop_add_fd(pilot_loop *l, int fd, int events, pilot_fd_cb cb, void *arg)
{
	struct fd_ent *e;
	int r;

	if (fd < 0 || !cb)
		return -EINVAL;
	if (fd >= l->nfds && (r = grow_fds(l, fd)) < 0)
		return r;
	e = &l->fds[fd];
	r = ctl(l, e->used ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, events);
	/* Closed without pilot_loop_del_fd and the number reused: epoll forgot it. */
	if (r == -ENOENT && e->used) {
		e->gen++;
		r = ctl(l, EPOLL_CTL_ADD, fd, events);
	}
	if (r < 0)
		return r;
	e->cb = cb;
	e->arg = arg;
	e->mask = events;
	e->used = 1;
	return 0;
}

int pilot_loop_mod_fd(pilot_loop *l, int fd, int events)
{
	int r;

	if (fd < 0 || fd >= l->nfds || !l->fds[fd].used)
		return -ENOENT;
	r = ctl(l, EPOLL_CTL_MOD, fd, events);
	if (r == 0)
		l->fds[fd].mask = events;
	return r;
}

void pilot_loop_del_fd(pilot_loop *l, int fd)
{
	struct fd_ent *e;

	if (fd < 0 || fd >= l->nfds || !l->fds[fd].used)
		return;
	e = &l->fds[fd];
	/* Fails harmlessly (EBADF) if the caller already closed fd. */
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	e->used = 0;
	e->mask = 0;
	e->cb = NULL;
	e->arg = NULL;
	e->gen++;
}

static void dispatch_fd(pilot_loop *l, const struct epoll_event *ev)
{
	int fd = (int)(uint32_t)ev->data.u64;
	struct fd_ent *e;
	int events = 0;

	if (fd >= l->nfds)
		return;
	e = &l->fds[fd];
	/* Deleted (or deleted and re-added) by an earlier callback this round. */
	if (!e->used || e->gen != (uint32_t)(ev->data.u64 >> 32))
		return;
	if (ev->events & EPOLLIN)
		events |= PILOT_EV_READ;
	if (ev->events & EPOLLOUT)
		events |= PILOT_EV_WRITE;
	events &= e->mask;
	if (ev->events & (EPOLLERR | EPOLLHUP))
		events |= PILOT_EV_ERROR | PILOT_EV_READ | (e->mask & PILOT_EV_WRITE);
	if (events)
		e->cb(l, fd, events, e->arg);
}

/* ---- timers ----------------------------------------------------------------- */

static int heap_less(const struct heap_ent *a, const struct heap_ent *b)
{
	return a->when < b->when || (a->when == b->when && a->id < b->id);
}

static void heap_up(struct heap_ent *h, size_t i)
{
	struct heap_ent x = h[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!heap_less(&x, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = x;
}

static void heap_down(struct heap_ent *h, size_t n, size_t i)
{
	struct heap_ent x = h[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && heap_less(&h[c + 1], &h[c]))
			c++;
		if (!heap_less(&h[c], &x))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = x;
}

static int heap_push(pilot_loop *l, uint64_t when, uint64_t id)
{
	if (l->heap_len == l->heap_cap) {
		size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
		struct heap_ent *h = realloc(l->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		l->heap = h;
		l->heap_cap = cap;
	}
	l->heap[l->heap_len] = (struct heap_ent){ when, id };
	heap_up(l->heap, l->heap_len++);
	return 0;
}

static void heap_pop(pilot_loop *l)
{
	l->heap[0] = l->heap[--l->heap_len];
	if (l->heap_len)
		heap_down(l->heap, l->heap_len, 0);
}

static struct timer_slot *live_slot(pilot_loop *l, uint64_t id)
{
	uint32_t s = (uint32_t)(id & SLOT_MASK);

	if (id == 0 || s >= l->nslots || l->slots[s].id != id)
		return NULL;
	return &l->slots[s];
}

/* Deleted timers leave their heap entry behind; drop them all once they
 * outnumber the live ones so re-armed idle timers cannot grow the heap. */
static void heap_compact(pilot_loop *l)
{
	size_t i, n = 0;

	for (i = 0; i < l->heap_len; i++)
		if (live_slot(l, l->heap[i].id))
			l->heap[n++] = l->heap[i];
	l->heap_len = n;
	l->stale = 0;
	for (i = n / 2; i-- > 0;)
		heap_down(l->heap, n, i);
}

static int alloc_slot(pilot_loop *l, uint32_t *out)
{
	struct timer_slot *p;
	uint32_t n;

	if (l->free_head) {
		*out = l->free_head - 1;
		l->free_head = l->slots[*out].next_free;
		return 0;
	}
	if (l->nslots == MAX_SLOTS)
		return -ENOMEM;
	n = l->nslots ? l->nslots * 2 : 64;
	p = realloc(l->slots, (size_t)n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	memset(p + l->nslots, 0, (size_t)(n - l->nslots) * sizeof(*p));
	l->slots = p;
	/* Chain the new slots (except the first, returned now) onto the free list. */
	for (uint32_t i = n - 1; i > l->nslots; i--) {
		p[i].next_free = l->free_head;
		l->free_head = i + 1;
	}
	*out = l->nslots;
	l->nslots = n;
	return 0;
}

static void free_slot(pilot_loop *l, struct timer_slot *t)
{
	uint32_t s = (uint32_t)(t->id & SLOT_MASK);

	t->id = 0;
	t->cb = NULL;
	t->arg = NULL;
	t->next_free = l->free_head;
	l->free_head = s + 1;
}

uint64_t pilot_loop_add_timer(pilot_loop *l, int64_t ms, pilot_timer_cb cb, void *arg)
{
	uint32_t s;
	uint64_t id;

	if (!cb || alloc_slot(l, &s) < 0)
		return 0;
	id = ++l->seq << SLOT_BITS | s;
	/* 0 ms: due at the loop's current time, so a timer added while the fd events
	 * are dispatched runs in this iteration's timer round, not after a 1 ms sleep
	 * when the millisecond clock ticked meanwhile (the UDP flush and the TUN
	 * bridge's deferred pump use this to run "after the batch"). */
	if (heap_push(l, ms > 0 ? pilot_now_ms() + (uint64_t)ms : l->now, id) < 0) {
		l->slots[s].id = id;
		free_slot(l, &l->slots[s]);
		return 0;
	}
	l->slots[s] = (struct timer_slot){ .id = id, .cb = cb, .arg = arg };
	return id;
}

void pilot_loop_del_timer(pilot_loop *l, uint64_t id)
{
	struct timer_slot *t = live_slot(l, id);

	if (!t)
		return;
	free_slot(l, t);
	if (id == l->firing) /* already off the heap */
		return;
	if (++l->stale > 64 && l->stale > l->heap_len / 2)
		heap_compact(l);
}

/* Pops deleted entries off the top; returns the first live one or NULL. */
static struct heap_ent *heap_top(pilot_loop *l)
{
	while (l->heap_len) {
		if (live_slot(l, l->heap[0].id))
			return &l->heap[0];
		heap_pop(l);
		if (l->stale)
			l->stale--;
	}
	return NULL;
}

static void run_timers(pilot_loop *l)
{
	/* Timers added by callbacks in this round wait for the next one, so a
	 * callback adding 0 ms timers cannot starve the fds. */
	uint64_t last_seq = l->seq;
	struct heap_ent *top;

	while ((top = heap_top(l)) && top->when <= l->now && top->id >> SLOT_BITS <= last_seq) {
		uint64_t id = top->id;
		struct timer_slot *t = live_slot(l, id);
		int64_t again;

		heap_pop(l);
		l->firing = id;
		again = t->cb(l, id, t->arg);
		l->firing = 0;
		/* The callback may have deleted itself (slot freed, maybe reused). */
		t = live_slot(l, id);
		if (!t)
			continue;
		if (again > 0 && heap_push(l, l->now + (uint64_t)again, id) == 0)
			continue;
		free_slot(l, t);
	}
}

static int next_timeout(pilot_loop *l, int timeout_ms)
{
	struct heap_ent *top = heap_top(l);
	uint64_t now, d;

	if (!top)
		return timeout_ms;
	now = pilot_now_ms();
	d = top->when > now ? top->when - now : 0;
	if (d > INT32_MAX)
		d = INT32_MAX;
	if (timeout_ms >= 0 && (uint64_t)timeout_ms < d)
		return timeout_ms;
	return (int)d;
}

void pilot_loop_set_before_sleep(pilot_loop *l, pilot_hook_cb cb, void *arg)
{
	l->before_sleep = cb;
	l->before_sleep_arg = arg;
}

/* ---- signals ------------------------------------------------------------------ */

static void on_signalfd(pilot_loop *l, int fd, int events, void *arg)
{
	struct signalfd_siginfo si[16];
	ssize_t n;

	while ((n = read(fd, si, sizeof(si))) > 0) {
		for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++) {
			int signo = (int)si[i].ssi_signo;

			if (signo > 0 && signo < _NSIG && l->sig[signo].cb)
				l->sig[signo].cb(l, signo, l->sig[signo].arg);
		}
	}
}

int pilot_loop_add_signal(pilot_loop *l, int signo, pilot_signal_cb cb, void *arg)
{
	sigset_t one;
	int fd, r;

	if (signo <= 0 || signo >= _NSIG || !cb)
		return -EINVAL;
	sigemptyset(&one);
	if (sigaddset(&one, signo) < 0 || sigaddset(&l->sigmask, signo) < 0)
		return -EINVAL;
	/* Per-thread mask: call before starting other threads so they inherit it. */
	if (sigprocmask(SIG_BLOCK, &one, NULL) < 0)
		return -errno;
	fd = signalfd(l->sigfd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (l->sigfd < 0) {
		r = pilot_loop_add_fd(l, fd, PILOT_EV_READ, on_signalfd, NULL);
		if (r < 0) {
			close(fd);
			return r;
		}
		l->sigfd = fd;
	}
	l->sig[signo].cb = cb;
	l->sig[signo].arg = arg;
	return 0;
}

/* ---- running ------------------------------------------------------------------ */

int pilot_loop_run_once(pilot_loop *l, int timeout_ms)
{
	int was_stopped = l->stop, n;

	if (l->before_sleep)
		l->before_sleep(l, l->before_sleep_arg);
	/* If the hook asked to stop, finish this iteration without sleeping. */
	n = epoll_wait(l->epfd, l->events, MAX_EVENTS,
		       l->stop && !was_stopped ? 0 : next_timeout(l, timeout_ms));
	if (n < 0 && errno != EINTR)
		return -errno;
	l->now = pilot_now_ms();
	for (int i = 0; i < n; i++)
		dispatch_fd(l, &l->events[i]);
	run_timers(l);
	return 0;
}

int pilot_loop_run(pilot_loop *l)
{
	l->stop = 0;
	while (!l->stop) {
		int r = pilot_loop_run_once(l, -1);

		if (r < 0)
			return r;
	}
	return 0;
}

void pilot_loop_stop(pilot_loop *l)
{
	l->stop = 1;
}
