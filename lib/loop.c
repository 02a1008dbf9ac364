/* Single-threaded epoll loop (after Redis ae.c): per-fd handlers in an array
 * indexed by fd, timers in lib/heap's indexed min-heap (deleted at once, O(log n)),
 * signals through signalfd. Nothing is allocated per event; arrays only grow. */
#include "lib/loop.h"

#include "lib/heap.h"

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
 * 40-bit sequence makes ids unique for 2^40 timers. Slots live in chunks that
 * never move, because the heap points at the node inside each slot. */
#define SLOT_BITS 24
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define MAX_SLOTS (1u << SLOT_BITS)
#define CHUNK_BITS  8
#define CHUNK_SLOTS (1u << CHUNK_BITS)

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
	pilot_heap_node hn; /* key = deadline (ms); in the heap while armed */
};

struct pilot_loop {
	int epfd;
	int sigfd;
	int stop;
	uint64_t now;

	struct fd_ent *fds;
	int nfds;

	struct timer_slot **chunks; /* slot s: chunks[s >> CHUNK_BITS][s % CHUNK_SLOTS] */
	uint32_t nslots, free_head; /* free_head: slot index + 1, 0 = none */
	pilot_heap timers;
	uint64_t seq;

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
	for (uint32_t c = 0; c < l->nslots / CHUNK_SLOTS; c++)
		free(l->chunks[c]);
	free(l->chunks);
	pilot_heap_free(&l->timers);
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

static struct timer_slot *slot_at(pilot_loop *l, uint32_t s)
{
	return &l->chunks[s >> CHUNK_BITS][s & (CHUNK_SLOTS - 1)];
}

static struct timer_slot *live_slot(pilot_loop *l, uint64_t id)
{
	uint32_t s = (uint32_t)(id & SLOT_MASK);
	struct timer_slot *t;

	if (id == 0 || s >= l->nslots)
		return NULL;
	t = slot_at(l, s);
	return t->id == id ? t : NULL;
}

static int alloc_slot(pilot_loop *l, uint32_t *out)
{
	struct timer_slot **chunks, *c;
	uint32_t n = l->nslots / CHUNK_SLOTS;

	if (l->free_head) {
		*out = l->free_head - 1;
		l->free_head = slot_at(l, *out)->next_free;
		return 0;
	}
	if (l->nslots == MAX_SLOTS)
		return -ENOMEM;
	/* The chunk table doubles; chunks themselves never move. */
	if ((n & (n - 1)) == 0) {
		chunks = realloc(l->chunks, (size_t)(n ? 2 * n : 1) * sizeof(*chunks));
		if (!chunks)
			return -ENOMEM;
		l->chunks = chunks;
	}
	if (!(c = calloc(CHUNK_SLOTS, sizeof(*c))))
		return -ENOMEM;
	l->chunks[n] = c;
	/* Chain the new slots (except the first, returned now) onto the free list. */
	for (uint32_t i = CHUNK_SLOTS - 1; i > 0; i--) {
		pilot_heap_node_init(&c[i].hn);
		c[i].next_free = l->free_head;
		l->free_head = l->nslots + i + 1;
	}
	pilot_heap_node_init(&c[0].hn);
	*out = l->nslots;
	l->nslots += CHUNK_SLOTS;
	return 0;
}

static void free_slot(pilot_loop *l, struct timer_slot *t)
{
	uint32_t s = (uint32_t)(t->id & SLOT_MASK);

	pilot_heap_remove(&l->timers, &t->hn);
	t->id = 0;
	t->cb = NULL;
	t->arg = NULL;
	t->next_free = l->free_head;
	l->free_head = s + 1;
}

uint64_t pilot_loop_add_timer(pilot_loop *l, int64_t ms, pilot_timer_cb cb, void *arg)
{
	struct timer_slot *t;
	uint32_t s;

	if (!cb || alloc_slot(l, &s) < 0)
		return 0;
	t = slot_at(l, s);
	t->id = ++l->seq << SLOT_BITS | s;
	t->cb = cb;
	t->arg = arg;
	/* 0 ms: due at the loop's current time, so a timer added while the fd events
	 * are dispatched runs in this iteration's timer round, not after a 1 ms sleep
	 * when the millisecond clock ticked meanwhile (the UDP flush and the TUN
	 * bridge's deferred pump use this to run "after the batch"). */
	if (pilot_heap_set(&l->timers, &t->hn, ms > 0 ? pilot_now_ms() + (uint64_t)ms : l->now) < 0) {
		free_slot(l, t);
		return 0;
	}
	return t->id;
}

void pilot_loop_del_timer(pilot_loop *l, uint64_t id)
{
	struct timer_slot *t = live_slot(l, id);

	if (t)
		free_slot(l, t);
}

static struct timer_slot *top_timer(pilot_loop *l)
{
	pilot_heap_node *n = pilot_heap_top(&l->timers);

	return n ? PILOT_HEAP_ENTRY(n, struct timer_slot, hn) : NULL;
}

static void run_timers(pilot_loop *l)
{
	/* Timers added by callbacks in this round wait for the next one, so a
	 * callback adding 0 ms timers cannot starve the fds. */
	uint64_t last_seq = l->seq;
	struct timer_slot *t;

	while ((t = top_timer(l)) && t->hn.key <= l->now && t->id >> SLOT_BITS <= last_seq) {
		uint64_t id = t->id;
		int64_t again;

		/* Off the heap while it runs: a callback deleting itself only frees it. */
		pilot_heap_remove(&l->timers, &t->hn);
		again = t->cb(l, id, t->arg);
		/* The callback may have deleted itself (slot freed, maybe reused). */
		t = live_slot(l, id);
		if (!t)
			continue;
		if (again > 0 && pilot_heap_set(&l->timers, &t->hn, l->now + (uint64_t)again) == 0)
			continue;
		free_slot(l, t);
	}
}

static int next_timeout(pilot_loop *l, int timeout_ms)
{
	struct timer_slot *top = top_timer(l);
	uint64_t now, d;

	if (!top)
		return timeout_ms;
	now = pilot_now_ms();
	d = top->hn.key > now ? top->hn.key - now : 0;
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
