/* slowfsync.so: LD_PRELOAD shim for scripts/bench: every fsync/fdatasync of the
 * process sleeps SLOWFSYNC_MS (default 200) milliseconds first, a disk whose
 * flushes are slow. Works on any build (the bench runs it under the old and the
 * new pilot-rendezvous alike). Benchmark tool, not part of any program.
 *   cc -shared -fPIC -O2 -o slowfsync.so tests/tools/preload/slowfsync.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

static void slow(void)
{
	const char *e = getenv("SLOWFSYNC_MS");
	long ms = e ? atol(e) : 200;
	struct timespec d = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&d, &d) < 0 && errno == EINTR)
		;
}

int fsync(int fd)
{
	static int (*real)(int);

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	slow();
	return real(fd);
}

int fdatasync(int fd)
{
	static int (*real)(int);

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	slow();
	return real(fd);
}
