/* The daemons' allocator policy and memory figures (pilotd: `pilotctl info`
 * "memory" and the pilot_memory_* metrics).
 *
 * glibc raises its mmap threshold each time a large mmapped block is freed
 * (up to 32 MiB), after which blocks of that size come from the heap instead;
 * freed in the middle of the heap they are kept, not given back. A daemon
 * whose stream buffers grow to megabytes under load and shrink when idle then
 * holds its busiest moment in RSS for good (the 60-minute soak of issue 20:
 * +10 MiB on idle nodes). pilot_malloc_policy() fixes the thresholds so large
 * blocks are always mmapped and returned on free. */
#ifndef PILOT_LIB_MEMSTAT_H
#define PILOT_LIB_MEMSTAT_H

#include <stddef.h>
#include <stdint.h>

/* Blocks of at least this size are mmapped (and unmapped on free). */
#define PILOT_MMAP_THRESHOLD (128 * 1024)

typedef struct pilot_mem_stats {
	uint64_t rss;         /* resident set, bytes (/proc/self/statm) */
	uint64_t heap;        /* bytes the allocator holds from the heap (brk) */
	uint64_t heap_in_use; /* of those, in live blocks */
	uint64_t heap_free;   /* of those, free but kept */
	uint64_t mmapped;     /* bytes in mmapped blocks */
} pilot_mem_stats;

/* Call once at start-up, before any thread: fixed mmap and trim thresholds
 * (no effect where the allocator is not glibc's, e.g. under ASan). */
void pilot_malloc_policy(void);

/* Fill st; a figure that cannot be read (no /proc, another allocator) is 0. */
void pilot_mem_stats_get(pilot_mem_stats *st);

#endif
