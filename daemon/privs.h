/* Process privileges of pilotd (issue 12 §7), straight on the kernel's
 * interfaces (capset, prctl): no libcap. Capabilities are given as a mask of
 * PRIVS_CAP(CAP_...) bits. */
#ifndef PILOT_PRIVS_H
#define PILOT_PRIVS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define PRIVS_CAP(c) (1ull << (c))

/* Keep only mask: permitted, effective and inheritable become mask, the
 * bounding set loses every other capability (so nothing exec'd regains them)
 * and the ambient set is cleared. 0 or -errno. */
int privs_limit(uint64_t mask);
/* Switch to uid/gid (supplementary groups dropped) keeping mask across the
 * switch (PR_SET_KEEPCAPS), then privs_limit(mask). 0 or -errno; fails when
 * root could be regained. */
int privs_switch_user(uid_t uid, gid_t gid, uint64_t mask);
/* Raise (or lower) cap in the ambient set, so a program we spawn keeps it
 * (it must be permitted and inheritable). 0 or -errno. */
int privs_ambient(int cap, bool on);
/* The effective set now (0 when it cannot be read). */
uint64_t privs_effective(void);
/* "CAP_NET_ADMIN,CAP_NET_BIND_SERVICE" or "none" for the few pilotd uses. */
const char *privs_text(uint64_t mask, char *buf, size_t len);

#endif
