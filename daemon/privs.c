/* See privs.h. capset/capget have no glibc wrapper: raw syscalls, version 3
 * (two 32-bit words per set). */
#include "daemon/privs.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int cap_get(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };

	memset(d, 0, 2 * sizeof(*d)); /* valgrind sees only the first word written */
	return syscall(SYS_capget, &h, d) < 0 ? -errno : 0;
}

static int cap_set(uint64_t perm, uint64_t eff, uint64_t inh)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = {
		{ (uint32_t)eff, (uint32_t)perm, (uint32_t)inh },
		{ (uint32_t)(eff >> 32), (uint32_t)(perm >> 32), (uint32_t)(inh >> 32) },
	};

	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

static uint64_t permitted(void)
{
	struct __user_cap_data_struct d[2];

	if (cap_get(d) < 0)
		return 0;
	return (uint64_t)d[1].permitted << 32 | d[0].permitted;
}

uint64_t privs_effective(void)
{
	struct __user_cap_data_struct d[2];

	if (cap_get(d) < 0)
		return 0;
	return (uint64_t)d[1].effective << 32 | d[0].effective;
}

/* Needs CAP_SETPCAP, so before the capset that gives it up. */
static int drop_bounding(uint64_t mask)
{
	for (int c = 0; c < 64; c++) {
		if (mask & PRIVS_CAP(c) || prctl(PR_CAPBSET_READ, c, 0, 0, 0) != 1)
			continue; /* kept, already gone, or beyond the kernel's last one */
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
			return -errno;
	}
	return 0;
}

int privs_limit(uint64_t mask)
{
	int r;

	mask &= permitted();
	if (privs_effective() & PRIVS_CAP(CAP_SETPCAP) && (r = drop_bounding(mask)) < 0)
		return r;
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	return cap_set(mask, mask, mask);
}

int privs_switch_user(uid_t uid, gid_t gid, uint64_t mask)
{
	int r;

	if ((r = drop_bounding(mask)) < 0)
		return r;
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return -errno;
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
		return -errno;
	prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	if ((r = privs_limit(mask)) < 0)
		return r;
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
		return -EPERM;
	return 0;
}

int privs_ambient(int cap, bool on)
{
	if (prctl(PR_CAP_AMBIENT, on ? PR_CAP_AMBIENT_RAISE : PR_CAP_AMBIENT_LOWER, cap, 0, 0) < 0)
		return -errno;
	return 0;
}

const char *privs_text(uint64_t mask, char *buf, size_t len)
{
	static const struct {
		int cap;
		const char *name;
	} names[] = {
		{ CAP_NET_ADMIN, "CAP_NET_ADMIN" },
		{ CAP_NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE" },
		{ CAP_SETPCAP, "CAP_SETPCAP" },
	};
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (mask & PRIVS_CAP(names[i].cap))
			n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s", n ? "," : "", names[i].name);
	if (!mask)
		snprintf(buf, len, "none");
	else if (mask & ~(PRIVS_CAP(CAP_NET_ADMIN) | PRIVS_CAP(CAP_NET_BIND_SERVICE) | PRIVS_CAP(CAP_SETPCAP)))
		snprintf(buf + n, n < len ? len - n : 0, "%s(more)", n ? "," : "");
	return buf;
}
