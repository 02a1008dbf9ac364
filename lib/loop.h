/* A small single-threaded epoll event loop with millisecond timers and a
 * before-sleep hook (after Redis ae.c). Signal handling goes through the loop
 * (signalfd), so handlers never run asynchronously. */
#ifndef PILOT_LOOP_H
#define PILOT_LOOP_H

#include <stdint.h>

typedef struct pilot_loop pilot_loop;

#define PILOT_EV_READ  0x1
#define PILOT_EV_WRITE 0x2
#define PILOT_EV_ERROR 0x4 /* EPOLLERR/EPOLLHUP, reported with READ */

typedef void (*pilot_fd_cb)(pilot_loop *l, int fd, int events, void *arg);
/* Return 0 to stop the timer, or a positive number of ms to re-arm it. */
typedef int64_t (*pilot_timer_cb)(pilot_loop *l, uint64_t id, void *arg);
typedef void (*pilot_hook_cb)(pilot_loop *l, void *arg);
typedef void (*pilot_signal_cb)(pilot_loop *l, int signo, void *arg);

pilot_loop *pilot_loop_new(void);
void pilot_loop_free(pilot_loop *l); /* NULL-safe; does not close registered fds */

/* Register fd for events (mask of READ/WRITE); re-adding an fd replaces its mask,
 * callback and arg. 0 or -errno. */
int pilot_loop_add_fd(pilot_loop *l, int fd, int events, pilot_fd_cb cb, void *arg);
int pilot_loop_mod_fd(pilot_loop *l, int fd, int events);
void pilot_loop_del_fd(pilot_loop *l, int fd);

/* One-shot (or re-armed by the callback's return value) timer after ms.
 * Returns an id > 0, or 0 on ENOMEM. Deleting an unknown/fired id is harmless. */
uint64_t pilot_loop_add_timer(pilot_loop *l, int64_t ms, pilot_timer_cb cb, void *arg);
void pilot_loop_del_timer(pilot_loop *l, uint64_t id);

/* Called once per iteration just before epoll_wait. */
void pilot_loop_set_before_sleep(pilot_loop *l, pilot_hook_cb cb, void *arg);

/* Block signo (sigprocmask) and deliver it through the loop. 0 or -errno. */
int pilot_loop_add_signal(pilot_loop *l, int signo, pilot_signal_cb cb, void *arg);

/* Run until pilot_loop_stop. Returns 0, or -errno if epoll_wait fails. */
int pilot_loop_run(pilot_loop *l);
/* Run one iteration waiting at most timeout_ms (-1 = until something happens). */
int pilot_loop_run_once(pilot_loop *l, int timeout_ms);
void pilot_loop_stop(pilot_loop *l);

/* Monotonic clock in ms / µs, cached once per iteration by the loop, and fresh. */
uint64_t pilot_loop_now_ms(const pilot_loop *l);
uint64_t pilot_now_ms(void);
uint64_t pilot_now_us(void);

#endif
