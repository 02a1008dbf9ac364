/* Allocator policy and memory figures: see memstat.h. */
#include "lib/memstat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void pilot_malloc_policy(void)
{
#if defined(__GLIBC__)
	/* Setting either threshold turns off glibc's dynamic adjustment of both. */
	mallopt(M_MMAP_THRESHOLD, PILOT_MMAP_THRESHOLD);
	mallopt(M_TRIM_THRESHOLD, PILOT_MMAP_THRESHOLD);
#endif
}

void pilot_mem_stats_get(pilot_mem_stats *st)
{
	long page = sysconf(_SC_PAGESIZE);
	char line[128], *p, *end;
	unsigned long long res;
	FILE *f;

	memset(st, 0, sizeof(*st));
	/* statm: "size resident shared ..." in pages */
	if ((f = fopen("/proc/self/statm", "re"))) {
		if (fgets(line, sizeof(line), f) && (p = strchr(line, ' '))) {
			errno = 0;
			res = strtoull(p + 1, &end, 10);
			if (!errno && end != p + 1 && page > 0)
				st->rss = (uint64_t)res * (uint64_t)page;
		}
		fclose(f);
	}
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	{
		struct mallinfo2 mi = mallinfo2();

		st->heap = mi.arena;
		st->heap_in_use = mi.uordblks;
		st->heap_free = mi.fordblks;
		st->mmapped = mi.hblkhd;
	}
#endif
}
