/* Small file helpers every program shares. */
#ifndef PILOT_FILEUTIL_H
#define PILOT_FILEUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Write data to path atomically: create parent directories (mode 0700) when
 * missing, write a temp file with the given mode in the same directory, fsync it,
 * rename over path, fsync the directory. Returns 0 or -errno. */
/* write(2) until all of data is written (EINTR retried). 0 or -errno. */
int pilot_write_all(int fd, const void *data, size_t len);

int pilot_write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* rename(from, to) within one directory, then fsync that directory so the
 * rename survives a crash. 0 or -errno. */
int pilot_rename_durable(const char *from, const char *to);
/* mkdir -p with mode for every created component. 0 or -errno. */
int pilot_mkdirs(const char *dir, mode_t mode);
/* Read a whole file (at most maxlen bytes, else -EFBIG). *out is malloc'd and
 * NUL-terminated; caller frees. Returns 0 or -errno. */
int pilot_read_file(const char *path, size_t maxlen, char **out, size_t *len);

#endif
